package nft

import (
	"errors"
	"fmt"

	"github.com/hostwall/hostwall/compiler/ir"
)

// FormatRule renders one rule exactly as Print writes it inside its chain
// (one line, without indentation), for `hostwall explain`. The sets and
// the chain the rule refers to are taken as declared; their names are
// still checked, as Print checks them.
func FormatRule(r *ir.Rule) (string, error) {
	if r == nil {
		return "", errors.New("nft: format rule: nil rule")
	}
	p := &printer{sets: map[*ir.Set]bool{}, chains: map[*ir.Chain]bool{}}
	for _, m := range r.Matches {
		if am, ok := m.(ir.AddrMatch); ok && am.Set != nil {
			if err := checkName("set", am.Set.Name); err != nil {
				return "", fmt.Errorf("nft: format rule: %w", err)
			}
			p.sets[am.Set] = true
		}
	}
	var targets []*ir.Chain
	switch v := r.Verdict.(type) {
	case ir.Jump:
		targets = []*ir.Chain{v.Chain}
	case ir.VerdictMap:
		targets = v.Chains()
	}
	for _, c := range targets {
		if c == nil {
			continue
		}
		if err := checkName("chain", c.Name); err != nil {
			return "", fmt.Errorf("nft: format rule: %w", err)
		}
		p.chains[c] = true
	}
	s, err := p.rule(r)
	if err != nil {
		return "", fmt.Errorf("nft: format rule: %w", err)
	}
	return s, nil
}

// FormatElements returns the elements of a named set as nft writes them
// (an address, a prefix, or `a-b`), in order.
func FormatElements(s *ir.Set) ([]string, error) {
	return elements(s.Family, s.Elems)
}
