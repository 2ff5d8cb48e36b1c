package iptables

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
)

// This file writes the gateway kinds of the IR: the nat table's targets
// (DNAT, SNAT, MASQUERADE), mangle's TCPMSS, and the conntrack status and
// TCP flags matches they go with.

// natFamily is the family a snat or dnat translates, FamilyAny for other
// verdicts.
func natFamily(v ir.Verdict) ir.Family {
	switch v := v.(type) {
	case ir.SNAT:
		return v.Family
	case ir.DNAT:
		return v.Family
	}
	return ir.FamilyAny
}

// natAddrOK checks a translation address against its family.
func natAddrOK(f ir.Family, a netip.Addr) error {
	if !a.IsValid() || a.Zone() != "" || a.Is4In6() || (f == ir.FamilyIPv4) != a.Is4() {
		return fmt.Errorf("nat address %v is not a plain %s address", a, famName(f))
	}
	return nil
}

// gatewayTarget is the target of a NAT statement or MSS clamp:
// `-j DNAT --to-destination 198.18.64.80:443` (IPv6 `[fd00::5]:443`),
// `-j SNAT --to-source ADDR`, `-j MASQUERADE`, `-j TCPMSS --set-mss N` or
// `--clamp-mss-to-pmtu`.
func gatewayTarget(r *ir.Rule) ([]string, error) {
	switch v := r.Verdict.(type) {
	case ir.SNAT:
		if err := natAddrOK(v.Family, v.Addr); err != nil {
			return nil, err
		}
		return []string{"-j", "SNAT", "--to-source", v.Addr.String()}, nil
	case ir.DNAT:
		if err := natAddrOK(v.Family, v.Addr); err != nil {
			return nil, err
		}
		to := v.Addr.String()
		if v.Port != 0 {
			to = netip.AddrPortFrom(v.Addr, v.Port).String()
		}
		return []string{"-j", "DNAT", "--to-destination", to}, nil
	case ir.Masquerade:
		return []string{"-j", "MASQUERADE"}, nil
	case ir.ClampMSS:
		if v.PMTU {
			return []string{"-j", "TCPMSS", "--clamp-mss-to-pmtu"}, nil
		}
		if v.Size == 0 {
			return nil, errors.New("mss clamp to size 0")
		}
		return []string{"-j", "TCPMSS", "--set-mss", strconv.Itoa(int(v.Size))}, nil
	}
	return nil, fmt.Errorf("verdict %T is not a gateway target", r.Verdict)
}

// ctStatusArgs is `-m conntrack --ctstate DNAT` (conntrack's virtual state
// DNAT: the connection's destination was translated; --ctstatus has no such
// value).
func ctStatusArgs(m ir.CtStatusMatch) (alt, error) {
	if m.Status != ir.CtStatusDNAT {
		return nil, fmt.Errorf("conntrack status %#x has no iptables equivalent here (only dnat)", uint32(m.Status))
	}
	return alt{"-m", "conntrack", "--ctstate", "DNAT"}, nil
}

// tcpFlagList is the comma-separated iptables names (FIN, SYN, ...) of
// the bits of f.
func tcpFlagList(f uint8) (string, error) {
	names, rest := ir.TCPFlagNames(f)
	if rest != 0 {
		return "", fmt.Errorf("tcp flag bits %#x have no iptables name here", rest)
	}
	return strings.ToUpper(strings.Join(names, ",")), nil
}

// tcpFlagsArgs is `-m tcp --tcp-flags SYN,RST SYN` (the rule's -p tcp is
// added by the protocol slot).
func tcpFlagsArgs(m ir.TCPFlagsMatch) (alt, error) {
	if m.Value == 0 || m.Mask == 0 || m.Value&^m.Mask != 0 {
		return nil, fmt.Errorf("tcp flags match: value %#x must be a non-empty subset of mask %#x", m.Value, m.Mask)
	}
	mask, err := tcpFlagList(m.Mask)
	if err != nil {
		return nil, err
	}
	val, err := tcpFlagList(m.Value)
	if err != nil {
		return nil, err
	}
	return alt{"-m", "tcp", "--tcp-flags", mask, val}, nil
}
