package main

import (
	"encoding/json"
	"io"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/nft"
)

// The JSON form of `hostwall compile --format json` (stable: fields are
// only ever added). Rules are given as the nft text of each rule, with the
// policy position they came from, so tools can map a kernel rule back to
// the TOML.
type (
	compiledJSON struct {
		Table  string      `json:"table"`
		Sets   []setJSON   `json:"sets"`
		Chains []chainJSON `json:"chains"`
	}
	setJSON struct {
		Name     string   `json:"name"`
		Family   string   `json:"family"` // "ipv4" | "ipv6"
		Interval bool     `json:"interval"`
		Comment  string   `json:"comment,omitempty"`
		Elements []string `json:"elements"`
	}
	chainJSON struct {
		Name string `json:"name"`
		// Base chains only: type ("filter" | "nat"), hook, priority (as
		// nft writes it) and policy ("accept" | "drop").
		Type     string     `json:"type,omitempty"`
		Hook     string     `json:"hook,omitempty"`
		Priority string     `json:"priority,omitempty"`
		Policy   string     `json:"policy,omitempty"`
		Rules    []ruleJSON `json:"rules"`
	}
	ruleJSON struct {
		Nft    string     `json:"nft"`
		Source sourceJSON `json:"source"`
		// Merged lists the policy rules an optimised rule stands for.
		Merged []sourceJSON `json:"merged,omitempty"`
	}
	sourceJSON struct {
		File string `json:"file,omitempty"`
		Line int    `json:"line,omitempty"`
		Col  int    `json:"col,omitempty"`
		What string `json:"what"`
	}
)

// writeCompiledJSON writes rs in the JSON form above.
func writeCompiledJSON(w io.Writer, rs *ir.Ruleset) error {
	out := compiledJSON{Table: rs.Table, Sets: []setJSON{}, Chains: []chainJSON{}}
	for _, s := range rs.Sets {
		elems, err := nft.FormatElements(s)
		if err != nil {
			return err
		}
		fam := "ipv4"
		if s.Family == ir.FamilyIPv6 {
			fam = "ipv6"
		}
		out.Sets = append(out.Sets, setJSON{Name: s.Name, Family: fam, Interval: s.Interval(), Comment: s.Comment, Elements: elems})
	}
	for _, c := range rs.Chains {
		cj := chainJSON{Name: c.Name, Rules: []ruleJSON{}}
		if b := c.Base; b != nil {
			cj.Type = "filter"
			if b.Type == ir.TypeNAT {
				cj.Type = "nat"
			}
			cj.Hook, cj.Priority, cj.Policy = nft.HookName(b.Hook), nft.Priority(b.Hook, b.Priority), ir.VerdictName(policyOf(b))
		}
		for _, r := range c.Rules {
			text, err := nft.FormatRule(r)
			if err != nil {
				return err
			}
			rj := ruleJSON{Nft: text, Source: sourceOf(r.Source)}
			for _, m := range r.Merged {
				rj.Merged = append(rj.Merged, sourceOf(m.Source))
			}
			cj.Rules = append(cj.Rules, rj)
		}
		out.Chains = append(out.Chains, cj)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func sourceOf(s ir.Source) sourceJSON {
	return sourceJSON{File: s.File, Line: s.Line, Col: s.Col, What: s.What}
}
