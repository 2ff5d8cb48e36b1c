package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/hostwall/hostwall/compiler/ir"
)

// This file is the nft text and netlink form of the gateway kinds of the
// IR: NAT statements, MSS clamping, `ct status` and `tcp flags`.

// tcpFlagsText is the comma-separated nft names of the bits of f, or an
// error for a bit hostwall does not name.
func tcpFlagsText(f uint8) (string, error) {
	names, rest := ir.TCPFlagNames(f)
	if rest != 0 {
		return "", fmt.Errorf("tcp flags match: unknown flag bits %#x", rest)
	}
	return strings.Join(names, ","), nil
}

// checkTCPFlags checks that a flags match is one nft writes as `tcp flags
// V / M`: V a non-empty subset of M.
func checkTCPFlags(m ir.TCPFlagsMatch) error {
	if m.Value == 0 || m.Mask == 0 || m.Value&^m.Mask != 0 {
		return fmt.Errorf("tcp flags match: value %#x must be a non-empty subset of mask %#x", m.Value, m.Mask)
	}
	return nil
}

// tcpFlagsMatchText is `tcp flags syn / syn,rst`.
func tcpFlagsMatchText(m ir.TCPFlagsMatch) (string, error) {
	if err := checkTCPFlags(m); err != nil {
		return "", err
	}
	v, err := tcpFlagsText(m.Value)
	if err != nil {
		return "", err
	}
	mask, err := tcpFlagsText(m.Mask)
	if err != nil {
		return "", err
	}
	return "tcp flags " + v + " / " + mask, nil
}

// ctStatusText is `ct status dnat`.
func ctStatusText(m ir.CtStatusMatch) (string, error) {
	if m.Status != ir.CtStatusDNAT {
		return "", fmt.Errorf("ct status match: only dnat is supported, not %#x", uint32(m.Status))
	}
	return "ct status dnat", nil
}

// natAddr checks a NAT statement's address against its family and returns
// nft's family word (ip or ip6).
func natAddr(f ir.Family, a netip.Addr) (string, error) {
	if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
		return "", fmt.Errorf("nat address %v is not a plain IPv4 or IPv6 address", a)
	}
	switch {
	case f == ir.FamilyIPv4 && a.Is4():
		return "ip", nil
	case f == ir.FamilyIPv6 && a.Is6():
		return "ip6", nil
	}
	return "", fmt.Errorf("nat address %v is not of the statement's family %s", a, familyWord(f))
}

// portProto returns the one protocol with ports a rule matches (what nft
// needs before a NAT statement rewrites a port, or before a tcp option),
// or 0.
func portProto(r *ir.Rule) ir.Proto {
	var p ir.Proto
	for _, m := range r.Matches {
		switch m := m.(type) {
		case ir.PortMatch:
			p = m.Proto
		case ir.TCPFlagsMatch:
			p = ir.ProtoTCP
		case ir.ProtoMatch:
			if len(m.Protos) == 1 && m.Protos[0].HasPorts() {
				p = m.Protos[0]
			}
		}
	}
	return p
}

// gatewayVerdict renders a NAT statement or MSS clamp; ok is false for
// other verdicts.
func gatewayVerdict(r *ir.Rule) (s string, ok bool, err error) {
	switch v := r.Verdict.(type) {
	case ir.SNAT:
		fam, err := natAddr(v.Family, v.Addr)
		if err != nil {
			return "", true, fmt.Errorf("snat: %w", err)
		}
		return "snat " + fam + " to " + v.Addr.String(), true, nil
	case ir.DNAT:
		fam, err := natAddr(v.Family, v.Addr)
		if err != nil {
			return "", true, fmt.Errorf("dnat: %w", err)
		}
		if v.Port == 0 {
			return "dnat " + fam + " to " + v.Addr.String(), true, nil
		}
		if portProto(r) == 0 {
			return "", true, errors.New("dnat to a port: the rule must match one protocol with ports (nft: transport protocol mapping is only valid after transport protocol match)")
		}
		return "dnat " + fam + " to " + netip.AddrPortFrom(v.Addr, v.Port).String(), true, nil
	case ir.Masquerade:
		return "masquerade", true, nil
	case ir.ClampMSS:
		if portProto(r) != ir.ProtoTCP {
			return "", true, errors.New("mss clamp: the rule must match tcp (tcp flags, a tcp port or meta l4proto tcp)")
		}
		if v.PMTU {
			return "tcp option maxseg size set rt mtu", true, nil
		}
		if v.Size == 0 {
			return "", true, errors.New("mss clamp: size 0")
		}
		return "tcp option maxseg size set " + strconv.Itoa(int(v.Size)), true, nil
	}
	return "", false, nil
}

// Netlink forms. Register numbers and encodings come from regs.go.

// lowerCtStatus is `ct status dnat`: load, mask, compare with zero.
func (c *ruleCtx) lowerCtStatus(m ir.CtStatusMatch) error {
	if _, err := ctStatusText(m); err != nil {
		return err
	}
	c.add(&expr.Ct{Key: expr.CtKeySTATUS, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: ctStatusLen, Mask: ctStatusBytes(uint32(m.Status)), Xor: make([]byte, ctStatusLen)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, ctStatusLen)})
	return nil
}

// lowerTCPFlags is `tcp flags V / M`, as nft 1.0.6 lowers it.
func (c *ruleCtx) lowerTCPFlags(m ir.TCPFlagsMatch) error {
	if err := checkTCPFlags(m); err != nil {
		return err
	}
	if _, err := tcpFlagsText(m.Mask); err != nil {
		return err
	}
	c.needL4(ir.ProtoTCP)
	c.add(&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: tcpFlagsOff, Len: tcpFlagsLen},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: tcpFlagsLen, Mask: []byte{m.Mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{m.Value}})
	return nil
}

// lowerGateway lowers a NAT statement or MSS clamp; ok is false for other
// verdicts.
func (c *ruleCtx) lowerGateway(r *ir.Rule) (ok bool, err error) {
	if _, isGW, err := gatewayVerdict(r); !isGW || err != nil {
		return isGW, err
	}
	if f := natFamilyOf(r.Verdict); f != ir.FamilyAny && c.fam != f {
		return true, fmt.Errorf("nat: a %s rule must match its family (a family or address match)", familyWord(f))
	}
	switch v := r.Verdict.(type) {
	case ir.SNAT:
		c.add(&expr.Immediate{Register: reg1, Data: addrBytes(v.Addr)},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: uint32(nfprotoOf(v.Family)), RegAddrMin: reg1, RegAddrMax: reg1})
	case ir.DNAT:
		c.add(&expr.Immediate{Register: reg1, Data: addrBytes(v.Addr)})
		n := &expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(nfprotoOf(v.Family)), RegAddrMin: reg1, RegAddrMax: reg1}
		if v.Port != 0 {
			c.add(&expr.Immediate{Register: reg2, Data: portBytes(v.Port)})
			n.RegProtoMin, n.RegProtoMax = reg2, reg2
		}
		c.add(n)
	case ir.Masquerade:
		c.add(&expr.Masq{})
	case ir.ClampMSS:
		if v.PMTU {
			c.add(&expr.Rt{Register: reg1, Key: expr.RtTCPMSS},
				&expr.Byteorder{SourceRegister: reg1, DestRegister: reg1, Op: expr.ByteorderHton, Len: mssLen, Size: mssLen})
		} else {
			c.add(&expr.Immediate{Register: reg1, Data: mssBytes(v.Size)})
		}
		c.add(&expr.Exthdr{SourceRegister: reg1, Type: tcpOptMaxseg, Offset: mssOff, Len: mssLen, Op: expr.ExthdrOpTcpopt})
	}
	return true, nil
}

// hasFamily reports whether a rule has a match that tests family f (a
// FamilyMatch or an address, ICMP or hop limit match of f).
func hasFamily(r *ir.Rule, f ir.Family) bool {
	for _, m := range r.Matches {
		if mf, _ := implied(m); mf == f {
			return true
		}
	}
	return false
}

// natFamilyOf is the family a snat or dnat translates, FamilyAny for other
// verdicts.
func natFamilyOf(v ir.Verdict) ir.Family {
	switch v := v.(type) {
	case ir.SNAT:
		return v.Family
	case ir.DNAT:
		return v.Family
	}
	return ir.FamilyAny
}
