package bench

import (
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/model"
)

// BenchmarkLoadCompile loads and compiles the policy of 10,000 addresses
// and rules: the part of `hostwall apply` before the kernel.
func BenchmarkLoadCompile(b *testing.B) {
	dir := b.TempDir()
	path, err := Write(dir, Spec{Addrs: 10000, Rules: 10000})
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
