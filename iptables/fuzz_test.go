package iptables

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// FuzzExport runs any policy through the loader, the compiler and the
// iptables-restore export of both families, with and without ipset and
// --noflush. No input panics; an export either succeeds, the same bytes
// twice, or fails with an ErrorList whose every entry has a position and
// writes nothing.
func FuzzExport(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/*.toml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, policy []byte) {
		p, d := model.LoadSources([]model.Source{{Name: "testdata/fuzz-nonexistent/p.toml", Data: policy}})
		if d.HasErrors() {
			return
		}
		nodes := p.CompileNodes()
		for _, node := range nodes {
			rs, d := compiler.Compile(p, compiler.Options{Node: node})
			if d.HasErrors() {
				continue
			}
			for _, fam := range []ir.Family{ir.FamilyIPv4, ir.FamilyIPv6} {
				for _, opts := range []Options{{Family: fam}, {Family: fam, NoFlush: true, GuardReject: GuardRejectMark}, {Family: fam, GuardReject: GuardRejectDrop}} {
					var a, b, set bytes.Buffer
					if len(rs.Sets) > 0 && opts.NoFlush {
						opts.IPSet = &set
					}
					err := Export(&a, rs, opts)
					if err != nil {
						var el ErrorList
						if !errors.As(err, &el) {
							t.Fatalf("node %q: export error is not an ErrorList: %v", node, err)
						}
						for _, e := range el {
							if e.Source.File == "" {
								t.Errorf("node %q: export error without a position: %v", node, e)
							}
						}
						if a.Len() > 0 {
							t.Errorf("node %q: a failed export wrote %d bytes", node, a.Len())
						}
						continue
					}
					opts.IPSet = nil
					if set.Len() > 0 {
						opts.IPSet = &bytes.Buffer{}
					}
					if err := Export(&b, rs, opts); err != nil {
						t.Fatalf("node %q: second export: %v", node, err)
					}
					if !bytes.Equal(a.Bytes(), b.Bytes()) {
						t.Fatalf("node %q: two exports differ", node)
					}
				}
			}
		}
	})
}
