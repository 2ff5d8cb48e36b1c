package model

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/internal/text"
	"go4.org/netipx"
)

// Limits of names, comments and log prefixes (policy-format.md); the one
// definition is package text, which the backends check against too.
const (
	maxCommentLen = text.MaxComment
)

// checkName checks a name of a zone, group, service, node, role, policy or
// guard: a letter, then letters, digits, "_" or "-", at most 64 bytes.
func checkName(s string) error { return text.Name(s) }

// checkTable checks settings.table: a name that is not an nft keyword.
func checkTable(s string) error { return text.Table(s) }

// checkIface checks an interface name: 1-15 bytes of letters, digits, ".",
// "_" or "-", optionally followed by a "*" wildcard.
func checkIface(s string, wildcard bool) error { return text.Iface(s, wildcard) }

// zoneIface checks an interface of a zone and returns the name to match.
// policy-format.md allows 15 bytes plus the trailing *; nft and iptables
// take at most 15 bytes with the *, but interface names have at most 15
// bytes, so a 15-byte prefix matches exactly the interface of that name,
// and that is what it compiles to.
func zoneIface(s string) (string, error) {
	if n, ok := strings.CutSuffix(s, "*"); ok && len(n) == text.MaxIface {
		s = n
	}
	return s, checkIface(s, true)
}

// checkText checks a comment: printable ASCII without `"` or `\`, at most
// max bytes. Such text is never escaped, so it can never break out of a
// quoted string in any output.
func checkText(s string, max int) error { return text.Printable(s, max) }

// checkLogPrefix checks a log prefix: text as checkText, and no `$`, which
// nft 1.0.6 reads as the start of a variable inside a log prefix.
func checkLogPrefix(s string) error { return text.LogPrefix(s) }

// checkTestName checks a test name: free printable ASCII, at most 128 bytes.
func checkTestName(s string) error { return text.TestName(s) }

// parseAddr reads one IP address (no prefix, no zone).
//
// IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) are rejected rather than
// unmapped: nftables matches them as IPv6 addresses, which never appear on
// the wire for an IPv4 packet, so accepting them would silently mean
// something other than what was written. The error names the IPv4 form.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address (want e.g. 192.0.2.1 or 2001:db8::1)", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has an IPv6 zone; write the address without %%%s", s, a.Zone())
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address; write it as %s", s, a.Unmap())
	}
	return a, nil
}

// parseLiteral reads an address, a CIDR (without host bits) or a range
// "a-b" (same family, a <= b).
func parseLiteral(s string) (netipx.IPRange, error) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		if _, err := parseAddr(s[:i]); err != nil {
			return netipx.IPRange{}, fmt.Errorf("%q is not a CIDR: %v", s, err)
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			max := 32
			if strings.Contains(s[:i], ":") {
				max = 128
			}
			return netipx.IPRange{}, fmt.Errorf("%q is not a CIDR: the prefix length must be a number from 0 to %d", s, max)
		}
		if m := p.Masked(); m != p {
			return netipx.IPRange{}, fmt.Errorf("%s has host bits set; did you mean %s?", s, m)
		}
		return netipx.RangeOfPrefix(p), nil
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		a, err := parseAddr(strings.TrimSpace(s[:i]))
		if err != nil {
			return netipx.IPRange{}, fmt.Errorf("range %q: %v", s, err)
		}
		b, err := parseAddr(strings.TrimSpace(s[i+1:]))
		if err != nil {
			return netipx.IPRange{}, fmt.Errorf("range %q: %v", s, err)
		}
		if a.Is4() != b.Is4() {
			return netipx.IPRange{}, fmt.Errorf("range %q mixes IPv4 and IPv6; both ends must be of one family", s)
		}
		if b.Less(a) {
			return netipx.IPRange{}, fmt.Errorf("range %q is reversed; write %s-%s", s, b, a)
		}
		return netipx.IPRangeFrom(a, b), nil
	}
	a, err := parseAddr(s)
	if err != nil {
		if b, perr := netip.ParseAddr(s); perr == nil && (b.Zone() != "" || b.Is4In6()) {
			return netipx.IPRange{}, err // the specific reason
		}
		return netipx.IPRange{}, fmt.Errorf("%q is not an address, CIDR or range (want e.g. 192.0.2.1, 10.0.0.0/8, 10.0.0.5-10.0.0.9 or fd00::/64)", s)
	}
	return netipx.IPRangeFrom(a, a), nil
}

// looksLiteral reports whether s is meant as an address literal rather than
// a name (names never contain ":" or "/" and never start with a digit).
func looksLiteral(s string) bool {
	if s == "" {
		return false
	}
	if c := s[0]; c >= '0' && c <= '9' {
		return true
	}
	return strings.ContainsAny(s, ":/")
}

// parsePort reads a port number or "lo-hi" range.
func parsePort(s string) (ir.PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if lo == "" && isRange && hi != "" && strings.Trim(hi, "0123456789") == "" {
		// "-5" is a negative port, not a range with its low end missing.
		return ir.PortRange{}, fmt.Errorf("port %s is out of range 0-65535", s)
	}
	l, err := parsePortNum(lo)
	if err != nil {
		return ir.PortRange{}, err
	}
	if !isRange {
		return ir.PortRange{Lo: l, Hi: l}, nil
	}
	h, err := parsePortNum(hi)
	if err != nil {
		return ir.PortRange{}, err
	}
	if h < l {
		return ir.PortRange{}, fmt.Errorf("port range %s is reversed; write %d-%d", s, h, l)
	}
	return ir.PortRange{Lo: l, Hi: h}, nil
}

func parsePortNum(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("a port is missing; write a number 0-65535 or a range low-high")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %q is not a number; write a number 0-65535 or a range low-high", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range 0-65535", s)
	}
	return uint16(n), nil
}

// parseProto reads a protocol name or number, with a helpful error.
func parseProto(s string) (ir.Proto, error) {
	if p, ok := ir.ParseProto(s); ok {
		return p, nil
	}
	return 0, fmt.Errorf("unknown protocol %q; use a number 0-255 or one of %s", s, strings.Join(ir.ProtoNames(), ", "))
}

// icmpFamily returns the family whose ICMP types p carries, if any.
func icmpFamily(p ir.Proto) (ir.Family, bool) {
	switch p {
	case ir.ProtoICMP:
		return ir.FamilyIPv4, true
	case ir.ProtoICMPv6:
		return ir.FamilyIPv6, true
	}
	return ir.FamilyAny, false
}

// parseICMPType reads an ICMP type name of the family of p.
func parseICMPType(p ir.Proto, name string) (ir.ICMPType, error) {
	f, _ := icmpFamily(p)
	if t, ok := ir.ParseICMPType(f, name); ok {
		return t, nil
	}
	proto := "icmp"
	if f == ir.FamilyIPv6 {
		proto = "icmpv6"
	}
	return 0, fmt.Errorf("unknown %s type %q; use one of %s", proto, name, strings.Join(ir.ICMPTypeNames(f), ", "))
}

// parseServiceSpec reads an inline service spec: "proto", "proto/port",
// "proto/lo-hi", "icmp/TYPE" or "icmpv6/TYPE".
func parseServiceSpec(s string) (ServiceSpec, error) {
	wrap := func(err error) error { return fmt.Errorf("service %q: %v", s, err) }
	protoText, arg, hasArg := strings.Cut(s, "/")
	p, err := parseProto(protoText)
	if err != nil {
		return ServiceSpec{}, wrap(err)
	}
	spec := ServiceSpec{Proto: p, Text: s}
	if !hasArg {
		return spec, nil
	}
	if _, ok := icmpFamily(p); ok {
		t, err := parseICMPType(p, arg)
		if err != nil {
			return ServiceSpec{}, wrap(err)
		}
		spec.ICMPType = &t
		return spec, nil
	}
	if !p.HasPorts() {
		return ServiceSpec{}, wrap(fmt.Errorf("protocol %s has no ports; ports work with tcp, udp, sctp, dccp and udplite (write just %q)", p, protoText))
	}
	r, err := parsePort(arg)
	if err != nil {
		return ServiceSpec{}, wrap(err)
	}
	spec.DPorts = []ir.PortRange{r}
	return spec, nil
}

// limitSyntax describes the limit format for error messages.
const limitSyntax = `want "N/second|minute|hour|day" with an optional " burst B" (N, B > 0), e.g. "10/second" or "100/minute burst 20"`

// parseLimit reads "N/unit" or "N/unit burst B".
func parseLimit(s string) (ir.Limit, error) {
	bad := func(why string) error {
		return fmt.Errorf("limit %q %s; %s", s, why, limitSyntax)
	}
	f := strings.Fields(s)
	if len(f) != 1 && len(f) != 3 {
		return ir.Limit{}, bad("is malformed")
	}
	rate, unit, ok := strings.Cut(f[0], "/")
	if !ok {
		return ir.Limit{}, bad("has no unit")
	}
	n, err := strconv.ParseUint(rate, 10, 64)
	if err != nil || n == 0 || strings.HasPrefix(rate, "+") {
		return ir.Limit{}, bad("has no positive rate")
	}
	var l ir.Limit
	l.Rate = n
	switch unit {
	case "second":
		l.Unit = ir.PerSecond
	case "minute":
		l.Unit = ir.PerMinute
	case "hour":
		l.Unit = ir.PerHour
	case "day":
		l.Unit = ir.PerDay
	default:
		return ir.Limit{}, bad(fmt.Sprintf("has unknown unit %q", unit))
	}
	if len(f) == 3 {
		if f[1] != "burst" {
			return ir.Limit{}, bad(fmt.Sprintf("has %q where \"burst\" belongs", f[1]))
		}
		b, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || b == 0 || strings.HasPrefix(f[2], "+") {
			return ir.Limit{}, bad("has no positive burst")
		}
		l.Burst = uint32(b)
	}
	return l, nil
}

// parseDNATTarget reads "addr", "addr:port" (IPv4) or "[v6]:port".
func parseDNATTarget(s string) (netip.Addr, uint16, error) {
	bad := func(why string) error {
		return fmt.Errorf("to %q %s; write an address with an optional port: 10.8.0.5, 10.8.0.5:443, fd00::5 or [fd00::5]:443", s, why)
	}
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, 0, bad("is not an address:port")
		}
		a, err := parseAddr(ap.Addr().String())
		if err != nil || ap.Addr().Zone() != "" {
			return netip.Addr{}, 0, bad("has an address that can't be used")
		}
		if ap.Port() == 0 {
			return netip.Addr{}, 0, bad("has port 0; a port is 1-65535")
		}
		return a, ap.Port(), nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return netip.Addr{}, 0, bad("is not an address")
	}
	return a, 0, nil
}

// closest returns the candidate closest to s by edit distance, if it is
// close enough to be a likely typo.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD && d < len(c) {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
