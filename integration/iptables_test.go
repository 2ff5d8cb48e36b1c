package integration

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/iptables"
)

// iptLegacyTools are the programs the iptables tests load files with. The
// lab uses iptables-legacy, so nothing here depends on the nft backend of
// iptables.
var iptLegacyTools = map[string]string{"v4": "iptables-legacy-restore", "v6": "ip6tables-legacy-restore"}

// iptSetsFile is the ipset file that goes with a golden rules file, or "".
func iptSetsFile(rules string) string {
	dir, base := filepath.Split(rules)
	switch {
	case strings.Contains(base, ".ipset.rules."): // examples/NAME.ipset.rules.v4
		return dir + strings.Replace(base, ".ipset.rules.", ".ipset.", 1)
	case strings.Contains(base, "-ipset.rules."): // CASE-ipset.rules.v4
		return dir + strings.Replace(base, ".rules.", ".ipset.", 1)
	}
	return ""
}

func iptRuleLines(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "-A ") {
			n++
		}
	}
	return n
}

// TestIptablesGoldens loads every golden file of package iptables (hand
// built cases and every example, both families, full, --noflush and
// --ipset) for real with iptables-legacy-restore / ip6tables-legacy-restore
// in a fresh namespace: the kernel, not `--test`, must take every rule
// (`--test` misses targets that are invalid in their table). Then
// iptables-save must list as many rules as the file has, and a --noflush
// file must load a second time without duplicating anything.
func TestIptablesGoldens(t *testing.T) {
	RequireRoot(t)
	for _, tool := range iptLegacyTools {
		RequireTool(t, tool)
	}
	var files []string
	for _, pat := range []string{"*.rules.v[46]", "examples/*.rules.v[46]"} {
		m, err := filepath.Glob(filepath.Join("..", "iptables", "testdata", pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("found %d golden files under ../iptables/testdata, want at least 20", len(files))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join("..", "iptables", "testdata"), f)
		t.Run(rel, func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			fam := f[len(f)-2:]
			tool := iptLegacyTools[fam]
			ns := NewNetns(t, "iptgold")
			if sets := iptSetsFile(f); sets != "" {
				RequireTool(t, "ipset")
				ns.MustRun(t, "ipset", "restore", "-file", sets)
			}
			args := []string{tool}
			noflush := strings.Contains(string(body), "--noflush`")
			if noflush {
				args = append(args, "--noflush")
			}
			args = append(args, f)
			ns.MustRun(t, args...)
			if noflush {
				ns.MustRun(t, args...) // again: chains are flushed, not doubled
			}
			saved := ns.MustRun(t, strings.TrimSuffix(tool, "-restore")+"-save")
			if got, want := iptRuleLines(saved), iptRuleLines(string(body)); got != want {
				t.Errorf("%s lists %d rules, the file has %d:\n%s", tool, got, want, saved)
			}
		})
	}
}

// iptLoad exports rs for both families (guard rejects written exactly, with
// marks) in a mode and loads the files into the node with iptables-legacy:
// "rules" (full files, groups expanded), "ipset" (full files, groups as
// ipsets) or "noflush" (only our chains, then the jumps from the file's
// header, run twice as an operator's script would be).
func iptLoad(t *testing.T, ns *Netns, rs *ir.Ruleset, mode string) {
	t.Helper()
	dir := t.TempDir()
	for _, fam := range []struct {
		f      ir.Family
		suffix string
	}{{ir.FamilyIPv4, "v4"}, {ir.FamilyIPv6, "v6"}} {
		opts := iptables.Options{Family: fam.f, GuardReject: iptables.GuardRejectMark, NoFlush: mode == "noflush"}
		var rules, sets bytes.Buffer
		if mode == "ipset" {
			opts.IPSet = &sets
		}
		if err := iptables.Export(&rules, rs, opts); err != nil {
			t.Fatalf("export %s: %v", fam.suffix, err)
		}
		path := filepath.Join(dir, "rules."+fam.suffix)
		if err := os.WriteFile(path, rules.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if mode == "ipset" && sets.Len() > 0 {
			sp := filepath.Join(dir, "ipset."+fam.suffix)
			if err := os.WriteFile(sp, sets.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			ns.MustRun(t, "ipset", "restore", "-file", sp)
		}
		if mode != "noflush" {
			ns.MustRun(t, iptLegacyTools[fam.suffix], path)
			continue
		}
		ns.MustRun(t, iptLegacyTools[fam.suffix], "--noflush", path)
		var jumps []string
		for _, l := range strings.Split(rules.String(), "\n") {
			if cmd, ok := strings.CutPrefix(l, "#   "); ok {
				cmd = strings.ReplaceAll(cmd, "ip6tables -", "ip6tables-legacy -")
				cmd = strings.ReplaceAll(cmd, "iptables -", "iptables-legacy -")
				jumps = append(jumps, cmd)
			}
		}
		if len(jumps) == 0 {
			t.Fatalf("the --noflush %s file names no jumps:\n%s", fam.suffix, rules.String())
		}
		for range 2 {
			for _, j := range jumps {
				ns.MustRun(t, "sh", "-c", j)
			}
		}
		saved := ns.MustRun(t, strings.TrimSuffix(iptLegacyTools[fam.suffix], "-restore")+"-save")
		if n := strings.Count(saved, " -j HOSTWALL-INPUT\n"); n != 1 {
			t.Fatalf("%d jumps to HOSTWALL-INPUT after installing them twice:\n%s", n, saved)
		}
	}
}

// TestIptablesTraffic sends every example's [[test]]s as real packets
// (in, out and forward; TCP, UDP, ICMP, ICMPv6, ESP, VRRP, IGMP;
// established and invalid state: see PacketSender) through labs whose
// node loaded the exported rules.v4 and rules.v6 into iptables-legacy:
// with groups expanded into rules, with --ipset, and with --noflush plus
// the jumps its header lists. Every verdict must be the one ir.Eval gives
// for the compiled ruleset (the meaning the nftables backend implements)
// and the one the test expects. Examples the export refuses (NAT) are
// logged and left out.
func TestIptablesTraffic(t *testing.T) {
	RequireRoot(t)
	for _, tool := range iptLegacyTools {
		RequireTool(t, tool)
	}
	for _, mode := range []string{"rules", "ipset", "noflush"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			if mode == "ipset" {
				RequireTool(t, "ipset")
			}
			load := func(t *testing.T, ns *Netns, rs *ir.Ruleset) { iptLoad(t, ns, rs, mode) }
			replayExamples(t, PacketSender{Load: load}, iptExportable)
		})
	}
}

// iptExportable says why an example cannot be exported (empty: it can).
func iptExportable(ex example) string {
	for _, fam := range []ir.Family{ir.FamilyIPv4, ir.FamilyIPv6} {
		if err := iptables.Export(io.Discard, ex.rs, iptables.Options{Family: fam, GuardReject: iptables.GuardRejectMark}); err != nil {
			return "the iptables export refuses it: " + err.Error()
		}
	}
	return ""
}
