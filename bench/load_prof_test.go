package bench

import (
	"flag"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/model"
)

var loadN = flag.Int("loadn", 10000, "the size of BenchmarkLoadCompile's policy")

// BenchmarkLoadCompile loads and compiles the policy of 10,000 addresses
// and rules (-loadn changes the size): the part of `hostwall apply` before
// the kernel.
func BenchmarkLoadCompile(b *testing.B) {
	dir := b.TempDir()
	path, err := Write(dir, Spec{Addrs: *loadN, Rules: *loadN})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		pol, diags := model.Load(path)
		if err := diags.Err(); err != nil {
			b.Fatal(err)
		}
		if _, diags := compiler.Compile(pol, compiler.Options{}); diags.Err() != nil {
			b.Fatal(diags.Err())
		}
	}
}
