package nft

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
)

// concatText renders a ConcatMatch as nft 1.0.6 reads it:
// `ip saddr . tcp dport { 198.18.0.1 . 22, 198.18.0.2 . 443 }`, elemsPerLine
// elements a line.
func concatText(m ir.ConcatMatch) (string, error) {
	if err := checkConcat(m); err != nil {
		return "", err
	}
	key := "ip"
	if m.Family == ir.FamilyIPv6 {
		key = "ip6"
	}
	key += " " + map[ir.Direction]string{ir.Src: "saddr", ir.Dst: "daddr"}[m.AddrField]
	key += " . " + m.Proto.String() + " " + map[ir.Direction]string{ir.Src: "sport", ir.Dst: "dport"}[m.PortField]
	var b strings.Builder
	b.WriteString(key + " { ")
	for i, e := range m.Elems {
		switch {
		case i == 0:
		case i%elemsPerLine == 0:
			b.WriteString(",\n\t\t\t")
		default:
			b.WriteString(", ")
		}
		b.WriteString(e.Addr.String() + " . " + strconv.Itoa(int(e.Port)))
	}
	b.WriteString(" }")
	return b.String(), nil
}

// checkConcat refuses a ConcatMatch that nft could not take or that would
// mean something else: a family, fields and protocol it knows, elements of
// the family, sorted and distinct.
func checkConcat(m ir.ConcatMatch) error {
	if m.Family != ir.FamilyIPv4 && m.Family != ir.FamilyIPv6 {
		return errors.New("concatenation: family must be IPv4 or IPv6")
	}
	if (m.AddrField != ir.Src && m.AddrField != ir.Dst) || (m.PortField != ir.Src && m.PortField != ir.Dst) {
		return errors.New("concatenation: unknown address or port field")
	}
	if !m.Proto.HasPorts() {
		return fmt.Errorf("concatenation: protocol %s has no ports", m.Proto)
	}
	if len(m.Elems) == 0 {
		return errors.New("concatenation: no elements")
	}
	for i, e := range m.Elems {
		if !e.Addr.IsValid() || e.Addr.Is4In6() || ir.FamilyOf(e.Addr) != m.Family || e.Addr.Zone() != "" {
			return fmt.Errorf("concatenation: element %d: %v is not an %s address", i, e.Addr, familyWord(m.Family))
		}
		if i > 0 && ir.CompareAddrPort(m.Elems[i-1], e) >= 0 {
			return fmt.Errorf("concatenation: element %v . %d is out of order or repeated", e.Addr, e.Port)
		}
	}
	return nil
}
