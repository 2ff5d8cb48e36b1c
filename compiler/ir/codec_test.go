package ir

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/netip"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go4.org/netipx"
)

// codecFixture returns a ruleset in which every field of every IR type is
// set somewhere (TestCodecFixtureIsComplete checks it), every match and
// verdict kind occurs, nil and empty slices both occur, and sets, chains,
// bases, rules, limits and logs are shared, duplicated, nil or cyclic.
func codecFixture(t testing.TB) *Ruleset {
	src := func(line int, what string) Source {
		return Source{File: "/etc/hostwall/policy.toml", Line: line, Col: line%7 + 1, What: what}
	}
	zoned := netip.MustParseAddr("fe80::7").WithZone("mgmt0")
	mapped := netip.MustParseAddr("::ffff:198.18.0.9")
	s4 := &Set{Name: "block_v4", Family: FamilyIPv4, Elems: rngs(t, "198.18.0.0/24", "198.19.0.7", "198.19.3.0-198.19.9.255"),
		Comment: "group block", Source: src(3, "group block")}
	s6 := &Set{Name: "block_v6", Family: FamilyIPv6, Elems: rngs(t, "fd00::/64", "fd00:b::1"), Comment: "group block", Source: src(3, "group block")}
	odd := &Set{Name: "odd", Family: FamilyIPv6, Elems: []netipx.IPRange{
		netipx.IPRangeFrom(zoned, zoned), netipx.IPRangeFrom(mapped, mapped), {},
		netipx.IPRangeFrom(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("fd00::1")),
	}}
	empty := &Set{Name: "empty", Family: FamilyIPv4, Elems: []netipx.IPRange{}}
	none := &Set{Name: "none", Family: FamilyAny}

	lim := &Limit{Rate: 1 << 40, Unit: PerDay, Burst: 4_000_000_000}
	log := &Log{Prefix: "hostwall drop: "}
	filterIn := &Base{Type: TypeFilter, Hook: HookInput, Priority: PriorityFilter, Policy: Drop{}, Source: src(1, "defaults.input")}
	guard := &Base{Type: TypeFilter, Hook: HookPrerouting, Priority: PriorityRaw - 5, Policy: Accept{}}
	nat := &Base{Type: TypeNAT, Hook: HookPostrouting, Priority: PrioritySrcNAT, Policy: Accept{}}
	dnat := &Base{Type: TypeNAT, Hook: HookPrerouting, Priority: PriorityDstNAT, Policy: nil}
	mangle := &Base{Type: TypeFilter, Hook: HookForward, Priority: PriorityMangle, Policy: Accept{}}
	out := &Base{Type: TypeFilter, Hook: HookOutput, Priority: PrioritySecurity, Policy: Accept{}}

	zoneA := &Chain{Name: "input_iif_1"}
	zoneB := &Chain{Name: "input_iif_2"}
	ssh := PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{22, 22}, {1024, 65535}}}
	a1 := &Rule{Matches: []Match{IfaceMatch{Dir: In, Names: []string{"eth1"}}, ssh}, Verdict: Accept{}, Source: src(20, `policy "lan" in[0]`)}
	a2 := &Rule{Matches: []Match{IfaceMatch{Dir: In, Names: []string{"eth1"}}}, Verdict: Jump{Chain: zoneB}, Source: src(21, `policy "lan" in[1]`)}
	b1 := &Rule{Matches: []Match{IfaceMatch{Dir: In, Names: []string{"eth0", "eth2"}}}, Limit: lim, Log: log, Verdict: Drop{}, Source: src(22, `policy "wan" in[0]`)}
	zoneA.Rules = []*Rule{a1, a2}
	zoneB.Rules = []*Rule{b1, nil}
	vmap := &Rule{Verdict: VerdictMap{Dir: Out, Elems: []VmapElem{{"eth0", zoneB}, {"eth1", zoneA}, {"eth2", zoneB}, {"lost0", nil}}},
		Source: src(20, "zone dispatch of 3 rules"), Merged: []*Rule{a1, a2, b1}}

	m1 := &Rule{Matches: []Match{AddrMatch{Field: Src, Family: FamilyIPv4, Elems: rngs(t, "198.18.64.1")}, ssh}, Verdict: Accept{}, Source: src(30, "r1")}
	m2 := &Rule{Matches: []Match{AddrMatch{Field: Src, Family: FamilyIPv4, Elems: rngs(t, "198.18.64.2")}, ssh}, Verdict: Accept{}, Source: src(31, "r2")}
	merged := &Rule{Matches: []Match{ConcatMatch{Family: FamilyIPv4, AddrField: Src, Proto: ProtoTCP, PortField: Dst, Elems: []AddrPort{
		{netip.MustParseAddr("198.18.64.1"), 22}, {netip.MustParseAddr("198.18.64.2"), 22}}}},
		Counter: true, Verdict: Accept{}, Comment: "merged", Source: src(30, "r1 and 1 more merged rules"), Merged: []*Rule{m1, m2, nil}}
	cyclic := &Rule{Comment: "merges itself", Merged: []*Rule{}}
	cyclic.Merged = append(cyclic.Merged, cyclic)

	input := &Chain{Name: "input", Base: filterIn, Rules: []*Rule{
		{Matches: []Match{CtStateMatch{States: CtEstablished | CtRelated}}, Counter: true, Verdict: Accept{}, Source: src(1, "defaults.established")},
		{Matches: []Match{CtStateMatch{States: CtInvalid | CtUntracked | CtNew}}, Verdict: Drop{}},
		{Matches: []Match{FamilyMatch{Family: FamilyIPv6}, ICMPMatch{Family: FamilyIPv6, Types: []ICMPType{133, 135, 136}}, HopLimitMatch{Value: 255}}, Verdict: Accept{}},
		{Matches: []Match{ICMPMatch{Family: FamilyIPv4, Types: []ICMPType{}}}, Verdict: Accept{}},
		vmap,
		merged,
		{Matches: []Match{AddrMatch{Field: Src, Family: FamilyIPv4, Set: s4, Negate: true}, AddrMatch{Field: Dst, Family: FamilyIPv6, Set: odd}},
			Limit: lim, Log: log, Verdict: Reject{With: RejectTCPReset}, Comment: "blocklist", Source: src(40, `policy "x" in[3]`)},
		{Matches: []Match{AddrMatch{Field: Dst, Family: FamilyIPv6, Set: s6}, ProtoMatch{Protos: []Proto{ProtoTCP, ProtoUDP, ProtoSCTP, 253}}}, Verdict: Reject{With: RejectICMPv6NoRoute}},
		{Matches: []Match{IfaceMatch{Dir: Out, Names: []string{"vx*", "wg0"}, Negate: true}, FibLocalMatch{}, ProtoMatch{}}, Verdict: Return{}},
		{Matches: []Match{nil, AddrMatch{Family: FamilyIPv4, Elems: []netipx.IPRange{}}, AddrMatch{Family: FamilyIPv6, Set: empty}}, Log: &Log{}},
		{Matches: []Match{}, Verdict: Jump{Chain: zoneA}},
		{Verdict: Jump{}},
		{Limit: &Limit{Rate: 10, Unit: PerSecond}, Verdict: Accept{}, Comment: "max unicode é\x00\"", Source: Source{Line: -1, Col: 1 << 40}},
		cyclic,
		nil,
	}}
	pre := &Chain{Name: "guard_pre", Base: guard, Rules: []*Rule{
		{Matches: []Match{AddrMatch{Field: Src, Family: FamilyIPv6, Set: s6}, ConcatMatch{Family: FamilyIPv6, AddrField: Dst, Proto: ProtoUDP, PortField: Src,
			Elems: []AddrPort{{netip.MustParseAddr("fd00::1"), 53}, {netip.MustParseAddr("fd00::2"), 0}}}}, Verdict: Drop{}},
		{Matches: []Match{ConcatMatch{Family: FamilyIPv6, Elems: []AddrPort{{zoned, 1}, {mapped, 65535}, {}}}}, Verdict: Drop{}},
		{Matches: []Match{ConcatMatch{Family: FamilyIPv4, Elems: []AddrPort{}}, AddrMatch{Family: FamilyIPv4, Set: none}}, Verdict: Drop{}},
	}}
	post := &Chain{Name: "nat_post", Base: nat, Rules: []*Rule{
		{Matches: []Match{IfaceMatch{Dir: Out, Names: []string{"wan0"}}, FamilyMatch{Family: FamilyIPv4}}, Verdict: SNAT{Family: FamilyIPv4, Addr: netip.MustParseAddr("203.0.113.7")}},
		{Matches: []Match{IfaceMatch{Dir: Out, Names: []string{}}}, Verdict: SNAT{Family: FamilyIPv6, Addr: zoned}},
		{Verdict: Masquerade{}},
	}}
	prerouting := &Chain{Name: "nat_pre", Base: dnat, Rules: []*Rule{
		{Matches: []Match{PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{8080, 8080}}}}, Verdict: DNAT{Family: FamilyIPv6, Addr: netip.MustParseAddr("fd00::80"), Port: 80}},
		{Verdict: DNAT{Family: FamilyIPv4, Addr: netip.MustParseAddr("198.18.0.80")}},
		{Verdict: DNAT{Family: FamilyIPv4}},
	}}
	fwd := &Chain{Name: "mss", Base: mangle, Rules: []*Rule{
		{Matches: []Match{TCPFlagsMatch{Mask: TCPFlagSYN | TCPFlagRST, Value: TCPFlagSYN}, CtStatusMatch{Status: CtStatusDNAT | 1<<31}}, Verdict: ClampMSS{Size: 1400}},
		{Matches: []Match{TCPFlagsMatch{Mask: TCPFlagSYN, Value: TCPFlagSYN}, PortMatch{Proto: ProtoUDP, Field: Src, Ranges: []PortRange{}}, PortMatch{Proto: ProtoSCTP}}, Verdict: ClampMSS{PMTU: true}},
	}}
	output := &Chain{Name: "output", Base: out, Rules: []*Rule{}}
	output2 := &Chain{Name: "output_late", Base: out}
	return &Ruleset{
		Table:  "hostwall",
		Sets:   []*Set{s4, s6, odd, nil, empty, none, s4},
		Chains: []*Chain{pre, input, zoneA, zoneB, post, prerouting, fwd, output, nil, output2, zoneA},
	}
}

// TestCodecFixtureIsComplete keeps the fixture honest: every field of
// every IR struct type reachable from it is non-zero somewhere, and every
// type with an isMatch or isVerdict method in the package's sources
// occurs. A field or kind added to the IR fails here until the fixture
// (and so the round trip below) covers it.
func TestCodecFixtureIsComplete(t *testing.T) {
	seen := map[reflect.Type][]bool{} // struct type -> field set somewhere
	visited := map[uintptr]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() || visited[v.Pointer()] {
				return
			}
			visited[v.Pointer()] = true
			walk(v.Elem())
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Struct:
			typ := v.Type()
			if typ.PkgPath() != reflect.TypeFor[Ruleset]().PkgPath() {
				return // netip.Addr, netipx.IPRange: leaves
			}
			fields := seen[typ]
			if fields == nil {
				fields = make([]bool, typ.NumField())
				seen[typ] = fields
			}
			for i := range typ.NumField() {
				fields[i] = fields[i] || !v.Field(i).IsZero()
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(codecFixture(t)))
	for typ, fields := range seen {
		for i, set := range fields {
			if !set {
				t.Errorf("field %s.%s is zero everywhere in codecFixture: set it, so the round trip covers it", typ.Name(), typ.Field(i).Name)
			}
		}
	}
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	kinds := 0
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || (fn.Name.Name != "isMatch" && fn.Name.Name != "isVerdict") {
				continue
			}
			recv := fn.Recv.List[0].Type
			if star, ok := recv.(*ast.StarExpr); ok {
				recv = star.X
			}
			name := recv.(*ast.Ident).Name
			kinds++
			found := false
			for typ := range seen {
				found = found || typ.Name() == name
			}
			// Kinds without fields (Accept, FibLocalMatch, ...) are
			// walked too: seen holds every struct type met.
			if !found {
				t.Errorf("%s kind %s does not occur in codecFixture", strings.TrimPrefix(fn.Name.Name, "is"), name)
			}
		}
	}
	if kinds < 20 {
		t.Errorf("found only %d match and verdict kinds in the sources", kinds)
	}
}

// addrComparers let go-cmp compare the IR's address types.
var addrComparers = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netipx.IPRange) bool { return a == b }),
}

// ptrKey is one pointer of a pointer graph.
type ptrKey struct {
	typ reflect.Type
	p   uintptr
}

// samePointerGraph walks a and b in parallel and reports where their
// pointers are not shared alike: a pointer met twice in a must be met
// with the same pointer in b each time, and the other way round.
func samePointerGraph(a, b any) []string {
	fwd, back := map[ptrKey]uintptr{}, map[ptrKey]uintptr{}
	var errs []string
	var walk func(x, y reflect.Value, path string)
	walk = func(x, y reflect.Value, path string) {
		if len(errs) > 10 {
			return
		}
		if x.Type() != y.Type() {
			errs = append(errs, fmt.Sprintf("%s: types %s and %s", path, x.Type(), y.Type()))
			return
		}
		switch x.Kind() {
		case reflect.Pointer:
			if x.IsNil() != y.IsNil() {
				errs = append(errs, path+": nil in one only")
				return
			}
			if x.IsNil() {
				return
			}
			kx, ky := ptrKey{x.Type(), x.Pointer()}, ptrKey{y.Type(), y.Pointer()}
			p, okF := fwd[kx]
			q, okB := back[ky]
			switch {
			case okF && p != ky.p:
				errs = append(errs, path+": a shared pointer of the original is two pointers after decoding")
			case okB && q != kx.p:
				errs = append(errs, path+": two pointers of the original are one after decoding")
			case !okF && !okB:
				fwd[kx], back[ky] = ky.p, kx.p
				walk(x.Elem(), y.Elem(), path)
			}
		case reflect.Interface:
			if x.IsNil() != y.IsNil() {
				errs = append(errs, path+": nil in one only")
			} else if !x.IsNil() {
				walk(x.Elem(), y.Elem(), path)
			}
		case reflect.Slice:
			if x.Len() != y.Len() {
				errs = append(errs, path+": lengths differ")
				return
			}
			for i := range x.Len() {
				walk(x.Index(i), y.Index(i), path+"["+fmt.Sprint(i)+"]")
			}
		case reflect.Struct:
			if x.Type().PkgPath() != reflect.TypeFor[Ruleset]().PkgPath() {
				return
			}
			for i := range x.NumField() {
				walk(x.Field(i), y.Field(i), path+"."+x.Type().Field(i).Name)
			}
		}
	}
	walk(reflect.ValueOf(a), reflect.ValueOf(b), "rs")
	return errs
}

// roundTrip encodes rs, decodes it and checks the result is equal, with
// the same pointer graph, and encodes to the same bytes.
func roundTrip(t *testing.T, rs *Ruleset) *Ruleset {
	t.Helper()
	enc, err := rs.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	var dec Ruleset
	if err := dec.UnmarshalBinary(enc); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if diff := cmp.Diff(rs, &dec, addrComparers); diff != "" {
		t.Fatalf("decoded ruleset differs (-original +decoded):\n%s", diff)
	}
	for _, e := range samePointerGraph(rs, &dec) {
		t.Error(e)
	}
	again, err := dec.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary of the decoded ruleset: %v", err)
	}
	if !bytes.Equal(enc, again) {
		t.Errorf("the decoded ruleset encodes to other bytes (%d, was %d)", len(again), len(enc))
	}
	return &dec
}

func TestCodecRoundTrip(t *testing.T) {
	for name, rs := range map[string]*Ruleset{
		"fixture": codecFixture(t),
		"zero":    {},
		"empty":   {Table: "t", Sets: []*Set{}, Chains: []*Chain{}},
		"one":     inputOnly(Accept{}, &Rule{Matches: []Match{PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{22, 22}}}}, Verdict: Drop{}}),
		"nat":     natRuleset(t),
	} {
		t.Run(name, func(t *testing.T) { roundTrip(t, rs) })
	}
}

// TestCodecPointers checks by hand the sharing the fixture sets up, so a
// weakness of the generic graph walk cannot hide a lost pointer.
func TestCodecPointers(t *testing.T) {
	rs := roundTrip(t, codecFixture(t))
	pre, input, zoneA, zoneB := rs.Chains[0], rs.Chains[1], rs.Chains[2], rs.Chains[3]
	if rs.Sets[0] != rs.Sets[6] || rs.Sets[3] != nil || rs.Chains[2] != rs.Chains[10] || rs.Chains[8] != nil {
		t.Error("duplicate or nil entries of Sets or Chains are not kept")
	}
	if m := input.Rules[6].Matches[0].(AddrMatch); m.Set != rs.Sets[0] {
		t.Errorf("AddrMatch.Set points at %p, not at rs.Sets[0] %p", m.Set, rs.Sets[0])
	}
	if m := pre.Rules[0].Matches[0].(AddrMatch); m.Set != rs.Sets[1] {
		t.Error("AddrMatch.Set of guard_pre is not rs.Sets[1]")
	}
	if j := input.Rules[10].Verdict.(Jump); j.Chain != zoneA {
		t.Error("Jump.Chain is not rs.Chains[2]")
	}
	if j := zoneA.Rules[1].Verdict.(Jump); j.Chain != zoneB {
		t.Error("Jump.Chain inside a dispatch chain is not rs.Chains[3]")
	}
	vmap := input.Rules[4]
	v := vmap.Verdict.(VerdictMap)
	if v.Elems[0].Chain != zoneB || v.Elems[1].Chain != zoneA || v.Elems[2].Chain != zoneB || v.Elems[3].Chain != nil {
		t.Error("verdict map elements do not point at the decoded chains")
	}
	if vmap.Merged[0] != zoneA.Rules[0] || vmap.Merged[1] != zoneA.Rules[1] || vmap.Merged[2] != zoneB.Rules[0] {
		t.Error("the dispatch rule's Merged are not the rules of its chains")
	}
	if rs.Chains[7].Base != rs.Chains[9].Base {
		t.Error("a Base shared by two chains is two after decoding")
	}
	if input.Rules[6].Limit != zoneB.Rules[0].Limit || input.Rules[6].Log != zoneB.Rules[0].Log {
		t.Error("a Limit or Log shared by two rules is two after decoding")
	}
	if c := input.Rules[13]; c.Merged[0] != c {
		t.Error("a rule that merges itself lost its cycle")
	}
	if input.Rules[14] != nil || zoneB.Rules[1] != nil || input.Rules[5].Merged[2] != nil {
		t.Error("nil rules are not kept")
	}
	if input.Rules[8].Matches[2].(ProtoMatch).Protos != nil || input.Rules[3].Matches[0].(ICMPMatch).Types == nil {
		t.Error("nil and empty slices are not kept apart")
	}
}

// TestCodecFormat pins the header and checks the decoder follows what it
// is told: a string table shared by all rules, little space per rule.
func TestCodecFormat(t *testing.T) {
	rs := inputOnly(Drop{})
	for i := range 1000 {
		rs.Chains[0].Rules = append(rs.Chains[0].Rules, &Rule{
			Matches: []Match{PortMatch{Proto: ProtoTCP, Field: Dst, Ranges: []PortRange{{uint16(i), uint16(i)}}}},
			Verdict: Accept{}, Source: Source{File: "/etc/hostwall/policy.toml", Line: i, Col: 3, What: "same"},
		})
	}
	enc, err := rs.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(enc, []byte("HWIR\x01")) {
		t.Errorf("encoding starts with %q, want HWIR and version 1", enc[:5])
	}
	if n := bytes.Count(enc, []byte("/etc/hostwall/policy.toml")); n != 1 {
		t.Errorf("the file name is stored %d times, want once", n)
	}
	if len(enc) > 1000*24 {
		t.Errorf("%d bytes for 1000 small rules", len(enc))
	}
	roundTrip(t, rs)
}

// TestCodecEncodeErrors: what cannot be encoded exactly is an error that
// names the problem, never silently dropped.
func TestCodecEncodeErrors(t *testing.T) {
	type oddMatch struct{ Match }
	type oddVerdict struct{ Verdict }
	stray := &Set{Name: "stray", Family: FamilyIPv4}
	lost := &Chain{Name: "lost"}
	withBase := func(b Base) *Ruleset {
		rs := inputOnly(Accept{})
		*rs.Chains[0].Base = b
		return rs
	}
	for _, tc := range []struct {
		name string
		rs   *Ruleset
		want string
	}{
		{"nil", nil, "nil Ruleset"},
		{"match kind", inputOnly(Accept{}, &Rule{Matches: []Match{oddMatch{}}}), "unknown match kind ir.oddMatch"},
		{"pointer match", inputOnly(Accept{}, &Rule{Matches: []Match{&FamilyMatch{}}}), "unknown match kind *ir.FamilyMatch"},
		{"verdict kind", inputOnly(Accept{}, &Rule{Verdict: oddVerdict{}}), "unknown verdict kind ir.oddVerdict"},
		{"pointer verdict", inputOnly(Accept{}, &Rule{Verdict: &Accept{}}), "unknown verdict kind *ir.Accept"},
		{"policy kind", inputOnly(oddVerdict{}), "unknown verdict kind ir.oddVerdict"},
		{"stray set", inputOnly(Accept{}, &Rule{Matches: []Match{AddrMatch{Set: stray}}}), `set "stray", which is not one of the ruleset's sets`},
		{"stray jump", inputOnly(Accept{}, &Rule{Verdict: Jump{Chain: lost}}), `chain "lost", which is not one of the ruleset's chains`},
		{"stray vmap", inputOnly(Accept{}, &Rule{Verdict: VerdictMap{Elems: []VmapElem{{"eth0", lost}}}}), `chain "lost"`},
		{"stray merged jump", inputOnly(Accept{}, &Rule{Merged: []*Rule{{Verdict: Jump{Chain: lost}}}}), `chain "lost"`},
		{"family", inputOnly(Accept{}, &Rule{Matches: []Match{FamilyMatch{Family: 3}}}), "family 3 is out of range 0-2"},
		{"set family", &Ruleset{Sets: []*Set{{Name: "s", Family: 9}}}, `set "s" family 9 is out of range`},
		{"direction", inputOnly(Accept{}, &Rule{Matches: []Match{IfaceMatch{Dir: 2}}}), "direction 2 is out of range 0-1"},
		{"concat direction", inputOnly(Accept{}, &Rule{Matches: []Match{ConcatMatch{PortField: 7}}}), "direction 7"},
		{"ct state", inputOnly(Accept{}, &Rule{Matches: []Match{CtStateMatch{States: 1 << 5}}}), "ct state 0x20"},
		{"reject", inputOnly(Accept{}, &Rule{Verdict: Reject{With: 10}}), "reject type 10 is out of range 0-9"},
		{"hook", withBase(Base{Hook: 5}), "hook 5 is out of range 0-4"},
		{"chain type", withBase(Base{Type: 2}), "chain type 2 is out of range 0-1"},
		{"limit unit", inputOnly(Accept{}, &Rule{Limit: &Limit{Unit: 4}}), "limit unit 4 is out of range 0-3"},
		{"snat family", inputOnly(Accept{}, &Rule{Verdict: SNAT{Family: 3}}), "family 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.rs.MarshalBinary()
			if err == nil {
				t.Fatalf("no error (%d bytes)", len(b))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// encodeOK encodes rs or fails the test.
func encodeOK(t testing.TB, rs *Ruleset) []byte {
	t.Helper()
	b, err := rs.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replaceOnce replaces the one occurrence of old in b.
func replaceOnce(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	if n := bytes.Count(b, []byte(old)); n != 1 {
		t.Fatalf("%q occurs %d times in the encoding, want once", old, n)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// TestCodecDecodeErrors: malformed input is an error that says what is
// wrong, and leaves the ruleset as it was.
func TestCodecDecodeErrors(t *testing.T) {
	// The marker HopLimitMatch{0xAB} (tag 9) finds the bytes after it.
	marked := func(ms ...Match) []byte {
		return encodeOK(t, inputOnly(Accept{}, &Rule{Matches: append([]Match{HopLimitMatch{Value: 0xAB}}, ms...)}))
	}
	good := marked(FamilyMatch{Family: FamilyIPv6})
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no \"HWIR\" header"},
		{"magic", append([]byte("HWIX"), good[4:]...), "no \"HWIR\" header"},
		{"version", append([]byte("HWIR\x02"), good[5:]...), "encoding version 2; this hostwall reads version 1"},
		{"trailing", append(slices.Clone(good), 0), "1 bytes after the end"},
		{"truncated", good[:len(good)-3], "unexpected end of input"},
		{"same match first", replaceOnce(t, good, "\x03\x09\xab\x01\x02", "\x03\xff\x01\x02"), "match 1 repeats the previous rule's, which has 0"},
		{"family", replaceOnce(t, good, "\x09\xab\x01\x02", "\x09\xab\x01\x03"), "family 3 is out of range"},
		{"match tag", replaceOnce(t, good, "\x09\xab\x01\x02", "\x09\xab\x63\x02"), "unknown match tag 99"},
		{"ct state", replaceOnce(t, marked(CtStateMatch{States: CtNew}), "\x09\xab\x07\x08", "\x09\xab\x07\x10"), "ct state 0x10"},
		{"bool", replaceOnce(t, marked(IfaceMatch{Names: []string{}}), "\x09\xab\x02\x00\x01\x00", "\x09\xab\x02\x00\x01\x02"), "bool 2 is not 0 or 1"},
		{"list count", replaceOnce(t, marked(ProtoMatch{Protos: []Proto{6}}), "\x09\xab\x04\x02\x06", "\x09\xab\x04\x7f\x06"), "126 protocols cannot fit"},
		{"addr mode", replaceOnce(t, marked(AddrMatch{Elems: rngs(t, "198.18.0.1")}), "\x09\xab\x03\x00\x00\x00\x02\x01", "\x09\xab\x03\x00\x00\x00\x02\x05"), "unknown address list mode 5"},
		{"set ref", replaceOnce(t, marked(AddrMatch{}), "\x09\xab\x03\x00\x00\x00", "\x09\xab\x03\x00\x00\x01"), "set 1 does not exist (there are 0)"},
		{"huge count", append([]byte("HWIR\x01"), binary.AppendUvarint(nil, 1<<40)...), "cannot fit"},
		{"huge rules", append([]byte("HWIR\x01\x00\x00\x00"), binary.AppendUvarint(nil, 1<<20)...), "cannot fit"},
		{"overflow", append([]byte("HWIR\x01"), bytes.Repeat([]byte{0xff}, 11)...), "varint overflows"},
		{"long varint", append([]byte("HWIR\x01\x80\x00"), good[6:]...), "varint not in its shortest form"},
		{"unused set", append([]byte("HWIR\x01\x00\x01\x00\x00\x00\x00\x00"), 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0), "set 1 of the table is not in the ruleset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := Ruleset{Table: "keep"}
			err := rs.UnmarshalBinary(tc.data)
			if err == nil {
				t.Fatalf("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if rs.Table != "keep" {
				t.Error("a failed decode changed the ruleset")
			}
		})
	}
}

// TestCodecAllocationBound: what a decode allocates stays under 50 bytes
// per byte of input, for the inputs that make it allocate most: many
// empty chains, a long list of invalid address ranges (2 bytes each, 48 in
// memory), a header that promises more rules than follow.
func TestCodecAllocationBound(t *testing.T) {
	chains := &Ruleset{}
	for range 20000 {
		chains.Chains = append(chains.Chains, &Chain{})
	}
	ranges := &Ruleset{Sets: []*Set{{Elems: make([]netipx.IPRange, 50000)}}}
	promise := append([]byte("HWIR\x01\x00\x00\x00"), binary.AppendUvarint(nil, 10000)...)
	promise = append(promise, make([]byte, 4+11*10000)...)
	for name, data := range map[string][]byte{
		"chains":  encodeOK(t, chains),
		"ranges":  encodeOK(t, ranges),
		"promise": promise,
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var rs Ruleset
		err := rs.UnmarshalBinary(data)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes of input, %d allocated (%.1f per byte), error %v", name, len(data), alloc, float64(alloc)/float64(len(data)), err)
		if alloc > 50*uint64(len(data))+64<<10 {
			t.Errorf("%s: %d bytes of input made the decoder allocate %d", name, len(data), alloc)
		}
	}
}

// TestCodecTruncated: every proper prefix of an encoding is an error.
func TestCodecTruncated(t *testing.T) {
	enc := encodeOK(t, codecFixture(t))
	for n := range len(enc) {
		var rs Ruleset
		if err := rs.UnmarshalBinary(enc[:n]); err == nil {
			t.Fatalf("the first %d of %d bytes decode without an error", n, len(enc))
		}
	}
}

// TestCodecCorrupt flips bits of every byte: no panic, and what decodes
// encodes again (the property FuzzRulesetUnmarshal checks at random).
func TestCodecCorrupt(t *testing.T) {
	enc := encodeOK(t, codecFixture(t))
	decoded := 0
	for i := range enc {
		for _, x := range []byte{0x01, 0x02, 0x80, 0xff} {
			b := slices.Clone(enc)
			b[i] ^= x
			if checkDecoded(t, b) {
				decoded++
			}
		}
	}
	t.Logf("%d of %d corrupted encodings still decode (an address or number changed)", decoded, 4*len(enc))
}

// checkDecoded decodes b; when that works, the ruleset must encode and
// decode again to the same bytes. It reports whether b decoded.
func checkDecoded(t *testing.T, b []byte) bool {
	var rs Ruleset
	if err := rs.UnmarshalBinary(b); err != nil {
		return false
	}
	enc, err := rs.MarshalBinary()
	if err != nil {
		t.Fatalf("a decoded ruleset does not encode: %v\ninput %x", err, b)
	}
	var again Ruleset
	if err := again.UnmarshalBinary(enc); err != nil {
		t.Fatalf("a re-encoded ruleset does not decode: %v\ninput %x", err, b)
	}
	enc2, err := again.MarshalBinary()
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("decode and encode is not stable (%v)\ninput %x", err, b)
	}
	return true
}

// FuzzRulesetUnmarshal: no input panics the decoder, and whatever decodes
// encodes and decodes again to the same bytes.
func FuzzRulesetUnmarshal(f *testing.F) {
	f.Add(encodeOK(f, codecFixture(f)))
	f.Add(encodeOK(f, &Ruleset{}))
	f.Add(encodeOK(f, inputOnly(Drop{}, &Rule{Matches: []Match{AddrMatch{Field: Src, Family: FamilyIPv4, Elems: rngs(f, "198.18.0.0/15")}}, Verdict: Accept{}})))
	f.Fuzz(func(t *testing.T, b []byte) { checkDecoded(t, b) })
}
