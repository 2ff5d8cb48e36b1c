package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	"golang.org/x/sys/unix"
)

// TestApplyKernelFaults: when the kernel can't take the table (no
// nf_tables, a batch refused in the middle), apply exits 3 with the
// operation and the errno, and the previous table stays.
func TestApplyKernelFaults(t *testing.T) {
	pol := writePolicy(t, "[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/22\"\n")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no nf_tables in the kernel", &nft.OpError{Op: "open nftables netlink socket", Err: unix.EPROTONOSUPPORT}, "protocol not supported"},
		{"nf_tables module missing", &nft.OpError{Op: "add table inet hostwall", Err: unix.EOPNOTSUPP}, "not supported"},
		{"batch refused mid-way", &nft.OpError{Op: "add rule to chain input (rule 7)", Err: unix.EINVAL}, "add rule to chain input (rule 7): netlink: invalid argument"},
		{"out of memory", &nft.OpError{Op: "add set g_big_v4", Err: unix.ENOMEM}, "cannot allocate memory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prev := &ir.Ruleset{Table: "hostwall"}
			f := &nft.Fake{Tables: map[string]*ir.Ruleset{"hostwall": prev}, FailReplace: tc.err}
			c := &ApplyCmd{Policy: []string{pol}, kernel: f}
			code, _, stderr := exitOf(t, c.Run)
			if code != exitSystem || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, exitSystem, tc.want)
			}
			if f.Tables["hostwall"] != prev {
				t.Error("the previous table was replaced")
			}
		})
	}
}

// TestApplyPolicyVanishes: policy files renamed away and back while apply
// runs again and again. Each apply either fails with a clear error, or
// loads one whole policy (with or without the vanishing file), never a
// part of one.
func TestApplyPolicyVanishes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy.d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a := "[[policy]]\nname = \"a\"\n  [[policy.in]]\n  service = \"tcp/22\"\n"
	b := "[groups]\nbig = { file = \"list.txt\" }\n[[policy]]\nname = \"b\"\n  [[policy.in]]\n  service = \"tcp/80\"\n  from = \"big\"\n"
	for name, text := range map[string]string{"a.toml": a, "b.toml": b, "list.txt": "198.18.0.1\n198.18.0.2\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	whole := func(files ...string) string {
		var srcs []string
		for _, f := range files {
			srcs = append(srcs, filepath.Join(dir, f))
		}
		p, d := model.Load(srcs...)
		if err := d.Err(); err != nil {
			t.Fatal(err)
		}
		rs, d := compiler.Compile(p, compiler.Options{})
		if err := d.Err(); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := nft.Print(&buf, rs); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	both, onlyA := whole("a.toml", "b.toml"), whole("a.toml")

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			name := []string{"b.toml", "list.txt"}[i%2]
			p := filepath.Join(dir, name)
			_ = os.Rename(p, p+".away")
			_ = os.Rename(p+".away", p)
		}
	}()
	counts := map[string]int{}
	for range 300 {
		f := &nft.Fake{}
		c := &ApplyCmd{Policy: []string{dir}, kernel: f}
		code, _, stderr := exitOf(t, c.Run)
		switch {
		case code == exitOK:
			var buf bytes.Buffer
			if err := nft.Print(&buf, f.Tables["hostwall"]); err != nil {
				t.Fatal(err)
			}
			switch buf.String() {
			case both:
				counts["applied a+b"]++
			case onlyA:
				counts["applied a (b.toml away)"]++
			default:
				t.Fatalf("applied a table that is neither whole policy:\n%s", buf.String())
			}
		case code == exitPolicy && (strings.Contains(stderr, "cannot read") || strings.Contains(stderr, "no such file or directory")):
			// read error while loading, or the file gone by the owner
			// and mode check right after
			counts["refused: a file vanished"]++
			if len(f.Tables) != 0 {
				t.Fatal("a refused apply changed the kernel")
			}
		default:
			t.Fatalf("exit %d: %s", code, stderr)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("300 applies while files vanish: %v", counts)
	if counts["applied a+b"] == 0 {
		t.Errorf("no apply loaded the whole policy: %v", counts)
	}
}
