package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/iptables"
)

// ExportCmd is `hostwall export`: the policy as iptables-restore files.
type ExportCmd struct {
	Node        string   `help:"Node of [nodes] to compile for (required when the policy has nodes)." placeholder:"NAME"`
	Family      string   `help:"ipv4 (rules.v4) or ipv6 (rules.v6); without it, -o DIR gets both." enum:"ipv4,ipv6," default:""`
	NoFlush     bool     `name:"noflush" help:"Declare only hostwall's chains, for 'iptables-restore --noflush' on hosts where Docker or kube-proxy own other rules; install the jumps once (see the file's header)."`
	Output      string   `short:"o" help:"Write to FILE, or rules.v4 and rules.v6 in DIR (default: standard output)." placeholder:"FILE|DIR" type:"path"`
	IPSet       string   `name:"ipset" help:"Write the groups as an 'ipset restore' file and match them with -m set (large groups need it)." placeholder:"FILE" type:"path"`
	GuardReject string   `help:"How a guard's reject is written (REJECT only exists in table filter, guards run in mangle): error, drop (the client times out), or mark (exact: the guard marks the packet with bits 0xf00000 and hostwall's filter chains reject it)." enum:"error,drop,mark" default:"error"`
	Policy      []string `arg:"" name:"POLICY" help:"Policy files or directories (a directory contributes its *.toml files in lexical order)."`
}

// Help shows an example.
func (c *ExportCmd) Help() string {
	return `Example:
  hostwall export --family ipv4 /etc/hostwall/policy.d > /etc/iptables/rules.v4
  hostwall export -o /etc/iptables --ipset /etc/iptables/ipsets /etc/hostwall/policy.d
  hostwall export --noflush --family ipv4 -o rules.v4 policy.toml && iptables-restore --noflush < rules.v4
With --noflush, jump to hostwall's chains once, e.g.
  iptables -C INPUT -j HOSTWALL-INPUT 2>/dev/null || iptables -I INPUT 1 -j HOSTWALL-INPUT`
}

// Run compiles the policy and writes the requested files.
func (c *ExportCmd) Run(env *Env) error {
	type file struct {
		fam  ir.Family
		name string
	}
	var files []file
	switch c.Family {
	case "ipv4":
		files = []file{{ir.FamilyIPv4, "rules.v4"}}
	case "ipv6":
		files = []file{{ir.FamilyIPv6, "rules.v6"}}
	default:
		files = []file{{ir.FamilyIPv4, "rules.v4"}, {ir.FamilyIPv6, "rules.v6"}}
	}
	dir := ""
	if c.Output != "" {
		if st, err := os.Stat(c.Output); err == nil && st.IsDir() {
			dir = c.Output
		}
	}
	if len(files) == 2 && dir == "" {
		return errors.New("export: without --family, -o must name a directory for rules.v4 and rules.v6")
	}
	mode := map[string]iptables.GuardReject{
		"": iptables.GuardRejectError, "error": iptables.GuardRejectError,
		"drop": iptables.GuardRejectDrop, "mark": iptables.GuardRejectMark,
	}[c.GuardReject]

	rs, err := loadAndCompile(c.Policy, c.Node)
	if err != nil {
		return err
	}
	outs := make([]bytes.Buffer, len(files))
	var sets bytes.Buffer
	var errs []error
	for i, f := range files {
		opts := iptables.Options{Family: f.fam, NoFlush: c.NoFlush, GuardReject: mode}
		if c.IPSet != "" {
			opts.IPSet = &sets
		}
		if err := iptables.Export(&outs[i], rs, opts); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &policyError{err}
	}
	// Nothing is written unless every file could be made.
	if c.IPSet != "" {
		if err := writeFileAtomic(c.IPSet, sets.Bytes()); err != nil {
			return &systemError{err}
		}
	}
	for i, f := range files {
		var err error
		switch {
		case dir != "":
			err = writeFileAtomic(filepath.Join(dir, f.name), outs[i].Bytes())
		case c.Output != "":
			err = writeFileAtomic(c.Output, outs[i].Bytes())
		default:
			_, err = env.Stdout.Write(outs[i].Bytes())
		}
		if err != nil {
			return &systemError{err}
		}
	}
	return nil
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory and a rename, so that a reader (netfilter-persistent at
// boot) never sees half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("export: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("export: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}
