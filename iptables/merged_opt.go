package iptables

import "github.com/hostwall/hostwall/compiler/ir"

// unmerged returns the rules to write for r: the rules a merged rule
// stands for (ir.Rule.Merged), in order, or r itself. iptables has no
// concatenated sets or anonymous sets, so the export writes the plain
// first-match list, which decides every packet as the merged rule does.
func unmerged(r *ir.Rule) []*ir.Rule {
	if len(r.Merged) > 0 {
		return r.Merged
	}
	return []*ir.Rule{r}
}
