package iptables

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
)

// ipsetName returns the ipset name of an IR set, registering it for the
// ipset file: `hostwall-` and the set's name, or `hostwall-<n>` when that
// is not a valid or unique ipset name.
func (x *exporter) ipsetName(r *ir.Rule, s *ir.Set) (string, bool) {
	if name, ok := x.sets[s]; ok {
		return name, true
	}
	if s.Family != ir.FamilyIPv4 && s.Family != ir.FamilyIPv6 {
		x.errorf(r.Source, "set %q has no family", s.Name)
		return "", false
	}
	name := "hostwall-" + s.Name
	if !validName(name, maxIPSetName) || x.setNames[name] != nil {
		name = fmt.Sprintf("hostwall-%d", len(x.setOrder)+1)
		if x.setNames[name] != nil { // a set literally named like that
			name = fmt.Sprintf("hostwall-%d-%d", len(x.setOrder)+1, len(x.setNames))
		}
	}
	x.sets[s] = name
	x.setNames[name] = s
	x.setOrder = append(x.setOrder, s)
	return name, true
}

// writeIPSet writes the `ipset restore` file of the sets the rules use:
// each set is created if missing (-exist), flushed and filled, so that
// loading the file again replaces the elements. Elements are CIDRs
// (hash:net); a range is split into the prefixes that cover it exactly, and
// /0, which hash:net refuses, into two halves.
func (x *exporter) writeIPSet(b *bytes.Buffer) {
	fmt.Fprintf(b, "# hostwall export (%s): load with `ipset restore` before the iptables rules. Generated; do not edit.\n", famName(x.fam))
	for _, s := range x.setOrder {
		name := x.sets[s]
		family := "inet"
		if s.Family == ir.FamilyIPv6 {
			family = "inet6"
		}
		var prefixes []netip.Prefix
		for _, e := range s.Elems {
			for _, p := range e.Prefixes() {
				if p.Bits() == 0 {
					prefixes = append(prefixes, splitZero(p)...)
				} else {
					prefixes = append(prefixes, p)
				}
			}
		}
		maxelem := max(65536, len(prefixes))
		if s.Comment != "" {
			fmt.Fprintf(b, "# %s\n", strings.Map(func(r rune) rune {
				if r < 0x20 || r > 0x7e {
					return '?'
				}
				return r
			}, s.Comment))
		}
		fmt.Fprintf(b, "create %s hash:net family %s maxelem %d -exist\n", name, family, maxelem)
		fmt.Fprintf(b, "flush %s\n", name)
		for _, p := range prefixes {
			fmt.Fprintf(b, "add %s %s\n", name, p)
		}
	}
}

// splitZero splits a /0 into its two /1 halves.
func splitZero(p netip.Prefix) []netip.Prefix {
	lo := p.Addr()
	var hi netip.Addr
	if lo.Is4() {
		hi = netip.AddrFrom4([4]byte{128})
	} else {
		hi = netip.AddrFrom16([16]byte{128})
	}
	return []netip.Prefix{netip.PrefixFrom(lo, 1), netip.PrefixFrom(hi, 1)}
}
