package compiler_test

import (
	"bytes"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// compilePlainText is compileText with the optimiser off, for tests that
// check the order of the rules as written.
func compilePlainText(t *testing.T, policy, node string) (string, *ir.Ruleset) {
	t.Helper()
	pol, diags := model.LoadSources([]model.Source{{Name: "policy.toml", Data: []byte(policy)}})
	if diags.HasErrors() {
		t.Fatalf("policy does not load:\n%v", diags.Err())
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node, NoOptimize: true})
	if diags.HasErrors() {
		return diags.Err().Error(), nil
	}
	var buf bytes.Buffer
	if err := nft.Print(&buf, rs); err != nil {
		t.Fatalf("print: %v", err)
	}
	return buf.String(), rs
}
