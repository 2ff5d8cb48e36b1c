package ir

// This file holds the verdict map the compiler's optimiser makes for zone
// dispatch (nft `iifname vmap { "eth0" : jump input_iif_1, ... }`): a run
// of rules that each hold for one zone's interfaces becomes one lookup of
// the packet's interface that jumps to the chain of that zone's rules, so
// a packet crosses only the rules of its own zone.

// VerdictMap is nft `iifname vmap { NAME : jump CHAIN, ... }` (Dir In) or
// `oifname vmap { ... }` (Dir Out): the packet's input (or output)
// interface name is looked up among Elems; on a hit the rule jumps to
// that element's chain (as Jump does: if the chain ends without a
// verdict, the rule after this one runs), on a miss the rule does not
// match and the next rule runs. Names are exact (no `*` wildcards), 1 to
// 15 bytes, and distinct; several names may share a chain. The chains are
// regular chains of the ruleset.
//
// The rule's Merged lists the rules of the chains as the plain first-match
// list had them, in its order (each chain holds them with their interface
// match, and the chains' interface sets are disjoint, so that list decides
// every packet as the map does): a backend without verdict maps writes
// them instead. Eval runs the map itself, not Merged.
type VerdictMap struct {
	Dir   Direction
	Elems []VmapElem // sorted by Name, distinct names, at least one
}

// VmapElem is one element of a VerdictMap: an interface name and the
// chain the packet jumps to.
type VmapElem struct {
	Name  string
	Chain *Chain
}

func (VerdictMap) isVerdict() {}

// Lookup returns the chain of the element named name, or nil.
func (v VerdictMap) Lookup(name string) *Chain {
	for _, e := range v.Elems {
		if e.Name == name {
			return e.Chain
		}
	}
	return nil
}

// Chains returns the distinct chains of v, in the order of their first
// element.
func (v VerdictMap) Chains() []*Chain {
	var out []*Chain
	for _, e := range v.Elems {
		seen := false
		for _, c := range out {
			seen = seen || c == e.Chain
		}
		if !seen && e.Chain != nil {
			out = append(out, e.Chain)
		}
	}
	return out
}
