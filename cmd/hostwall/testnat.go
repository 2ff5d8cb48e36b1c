package main

import (
	"net/netip"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// setNAT records the translations the packet got and the test's NAT
// expectations, and reports whether they are met.
func (r *testResult) setNAT(x *model.Test, pkt ir.Packet, res ir.Result) bool {
	r.DNAT, r.SNAT = translationText(res.DNAT, pkt.DPort, pkt.Proto.HasPorts()), translationText(res.SNAT, 0, false)
	ok := true
	if e := x.ExpectDNAT; e != nil {
		r.ExpDNAT = e.Text
		switch {
		case e.None:
			ok = ok && res.DNAT == nil
		default:
			d := res.DNAT
			port := pkt.DPort
			if d != nil && d.Port != 0 {
				port = d.Port
			}
			ok = ok && d != nil && d.Addr == e.Addr && (e.Port == 0 || port == e.Port)
		}
	}
	if e := x.ExpectSNAT; e != nil {
		r.ExpSNAT = e.Text
		s := res.SNAT
		switch {
		case e.None:
			ok = ok && s == nil
		case e.Masquerade:
			ok = ok && s != nil && s.Masquerade
		default:
			ok = ok && s != nil && !s.Masquerade && s.Addr == e.Addr
		}
	}
	return ok
}

// translationText is "198.18.64.80:443" (a dnat, with the port the packet
// goes to when it has ports), "198.19.0.1" or "masquerade"; "" for none.
func translationText(t *ir.Translation, dport uint16, hasPorts bool) string {
	switch {
	case t == nil:
		return ""
	case t.Masquerade:
		return "masquerade"
	case t.Port != 0:
		return netip.AddrPortFrom(t.Addr, t.Port).String()
	case hasPorts:
		return netip.AddrPortFrom(t.Addr, dport).String()
	}
	return t.Addr.String()
}

// natWords is what a test line says about NAT: ` dnat X snat Y`, empty
// without translations.
func natWords(dnat, snat string) string {
	out := ""
	if dnat != "" {
		out += " dnat " + dnat
	}
	if snat != "" {
		out += " snat " + snat
	}
	return out
}
