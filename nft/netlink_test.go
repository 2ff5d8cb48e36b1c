package nft

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/mdlayher/netlink"
	"go4.org/netipx"
	"golang.org/x/sys/unix"
)

func msgType(m netlink.Message) int { return int(m.Header.Type) & 0xff }

// elemListSizes returns, for every NEWSETELEM message, the byte size of
// its NFTA_SET_ELEM_LIST_ELEMENTS attribute and the number of elements.
func elemLists(t *testing.T, ops []Op) (sizes, counts []int) {
	t.Helper()
	for _, op := range ops {
		if msgType(op.Msg) != unix.NFT_MSG_NEWSETELEM {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(op.Msg.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range attrs {
			if a.Type&^unix.NLA_F_NESTED != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			elems, err := netlink.UnmarshalAttributes(a.Data)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(a.Data))
			counts = append(counts, len(elems))
		}
	}
	return sizes, counts
}

// Trap (a): one element list over 64 KiB is silently truncated by the
// 16-bit attribute length. Elements must go out in chunks, all of them.
func TestSetElementsAreChunked(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
	}{{"small", 10}, {"one chunk edge", 1000}, {"100k", 100_000}} {
		t.Run(tc.name, func(t *testing.T) {
			rs := bigSetRuleset(tc.n)
			b, err := Lower(rs)
			if err != nil {
				t.Fatal(err)
			}
			ops, err := ReplaceOps(b)
			if err != nil {
				t.Fatal(err)
			}
			sizes, counts := elemLists(t, ops)
			total := 0
			for i, s := range sizes {
				if s+4 > 0xffff {
					t.Errorf("element list %d is %d bytes: over the 16-bit attribute limit", i, s)
				}
				total += counts[i]
			}
			want := 0
			for _, s := range b.Sets {
				want += len(s.Elems)
			}
			if total != want {
				t.Errorf("messages carry %d elements, the sets have %d", total, want)
			}
			// IPv4 interval: start and end per range, plus the leading zero.
			if got := len(b.Sets[0].Elems); got != 2*tc.n+1 {
				t.Errorf("v4 interval set has %d kernel elements, want %d", got, 2*tc.n+1)
			}
			if got := len(b.Sets[1].Elems); got != tc.n {
				t.Errorf("v6 plain set has %d kernel elements, want %d", got, tc.n)
			}
		})
	}
}

// Trap (d): interval encoding, byte orders and name padding.
func TestEncodeElems(t *testing.T) {
	r := func(a, b string) keyInterval {
		return keyInterval{lo: addrBytes(netip.MustParseAddr(a)), hi: addrBytes(netip.MustParseAddr(b))}
	}
	type el struct {
		key string
		end bool
	}
	for _, tc := range []struct {
		name     string
		in       []keyInterval
		interval bool
		want     []el
	}{
		{"leading zero and end+1", []keyInterval{r("10.0.0.1", "10.0.0.1"), r("10.0.0.5", "10.0.0.40")}, true,
			[]el{{"0.0.0.0", true}, {"10.0.0.1", false}, {"10.0.0.2", true}, {"10.0.0.5", false}, {"10.0.0.41", true}}},
		{"starts at zero: no leading element", []keyInterval{r("0.0.0.0", "0.255.255.255")}, true,
			[]el{{"0.0.0.0", false}, {"1.0.0.0", true}}},
		{"ends at the top: no end element", []keyInterval{r("255.255.255.0", "255.255.255.255")}, true,
			[]el{{"0.0.0.0", true}, {"255.255.255.0", false}}},
		{"overlap and adjacency merge, unsorted", []keyInterval{r("10.0.0.8", "10.0.0.9"), r("10.0.0.1", "10.0.0.5"), r("10.0.0.6", "10.0.0.7")}, true,
			[]el{{"0.0.0.0", true}, {"10.0.0.1", false}, {"10.0.0.10", true}}},
		{"plain set deduplicates", []keyInterval{r("10.0.0.2", "10.0.0.2"), r("10.0.0.1", "10.0.0.1"), r("10.0.0.2", "10.0.0.2")}, false,
			[]el{{"10.0.0.1", false}, {"10.0.0.2", false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := encodeElems(tc.in, tc.interval)
			if err != nil {
				t.Fatal(err)
			}
			var g []el
			for _, e := range got {
				a, _ := netip.AddrFromSlice(e.Key)
				g = append(g, el{a.String(), e.IntervalEnd})
			}
			if d := cmp.Diff(tc.want, g, cmp.AllowUnexported(el{})); d != "" {
				t.Errorf("elements (-want +got):\n%s", d)
			}
		})
	}
	if _, err := encodeElems([]keyInterval{r("10.0.0.9", "10.0.0.1")}, true); err == nil {
		t.Error("an upside-down range was accepted")
	}
}

func TestByteOrders(t *testing.T) {
	if got := portBytes(22); !bytes.Equal(got, []byte{0, 22}) {
		t.Errorf("port 22 = %x, want big-endian 0016", got)
	}
	want := make([]byte, 4)
	binary.NativeEndian.PutUint32(want, uint32(ir.CtEstablished|ir.CtRelated))
	if got := ctStateBytes(ir.CtEstablished | ir.CtRelated); !bytes.Equal(got, want) {
		t.Errorf("ct state = %x, want native-endian %x", got, want)
	}
	if got := ifnameBytes("eth0"); len(got) != 16 || string(got[:4]) != "eth0" || !allZero(got[4:]) {
		t.Errorf("ifname = %q, want 16 bytes NUL-padded", got)
	}
}

// exprsOf lowers one rule in an inet input chain and returns its
// expressions.
func exprsOf(t *testing.T, r *ir.Rule, sets ...*ir.Set) []expr.Any {
	t.Helper()
	rs := &ir.Ruleset{Table: "hostwall", Sets: sets, Chains: []*ir.Chain{{Name: "input",
		Base: &ir.Base{Hook: ir.HookInput, Policy: ir.Accept{}}, Rules: []*ir.Rule{r}}}}
	b, err := Lower(rs)
	if err != nil {
		t.Fatal(err)
	}
	return b.Rules[0].Rule.Exprs
}

// Trap (c): in an inet table every L3 match needs its own meta nfproto
// check, once per family, right before the payload it guards.
func TestInetFamilyDependencies(t *testing.T) {
	a4 := netipx.IPRangeFrom(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.1"))
	nfproto := func(f byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f}}}
	}
	l4 := func(p byte) []expr.Any {
		return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
	}
	cat := func(xs ...[]expr.Any) []expr.Any {
		var out []expr.Any
		for _, x := range xs {
			out = append(out, x...)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		r    *ir.Rule
		want []expr.Any
	}{
		{"ip saddr", &ir.Rule{Matches: []ir.Match{ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv4, Elems: []netipx.IPRange{a4}}}}, cat(nfproto(2),
			[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{198, 18, 0, 1}}})},
		{"two v4 matches share one check", &ir.Rule{Matches: []ir.Match{
			ir.FamilyMatch{Family: ir.FamilyIPv4},
			ir.AddrMatch{Field: ir.Src, Family: ir.FamilyIPv4, Elems: []netipx.IPRange{a4}},
			ir.AddrMatch{Field: ir.Dst, Family: ir.FamilyIPv4, Elems: []netipx.IPRange{a4}, Negate: true}}},
			cat(nfproto(2), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{198, 18, 0, 1}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{198, 18, 0, 1}}})},
		{"icmpv6 needs family and protocol", &ir.Rule{Matches: []ir.Match{ir.ICMPMatch{Family: ir.FamilyIPv6, Types: []ir.ICMPType{128}}}},
			cat(nfproto(10), l4(58), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{128}}})},
		{"hop limit", &ir.Rule{Matches: []ir.Match{ir.HopLimitMatch{Value: 255}}},
			cat(nfproto(10), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{255}}})},
		{"tcp dport needs l4proto, not family", &ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: 22, Hi: 22}}}}},
			cat(l4(6), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 22}}})},
		{"reject with icmp needs the family", &ir.Rule{Verdict: ir.Reject{With: ir.RejectICMPNetUnreachable}},
			cat(nfproto(2), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 0}})},
		{"tcp reset needs tcp", &ir.Rule{Verdict: ir.Reject{With: ir.RejectTCPReset}},
			cat(l4(6), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})},
		{"ct state mask", &ir.Rule{Matches: []ir.Match{ir.CtStateMatch{States: ir.CtEstablished | ir.CtRelated}}}, []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ctStateBytes(ir.CtEstablished | ir.CtRelated), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, exprsOf(t, tc.r)); d != "" {
				t.Errorf("expressions (-want +got):\n%s", d)
			}
		})
	}
}

// Trap (e): comments are limited to 128 bytes and the whole userdata to
// the kernel's 256; a long source is shortened, never the comment.
func TestRuleUserdata(t *testing.T) {
	long := strings.Repeat("c", maxComment)
	src := ir.Source{File: strings.Repeat("f", 400), Line: 1, Col: 2, What: "x"}
	ud, err := ruleUserdata(&ir.Rule{Comment: long, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	if len(ud) > maxUserdata {
		t.Errorf("userdata is %d bytes, over the kernel's %d", len(ud), maxUserdata)
	}
	if c, _ := userdata.GetString(ud, udataComment); c != long {
		t.Errorf("comment = %q, want it whole", c)
	}
	if s, ok := userdata.GetString(ud, udataSource); !ok || !strings.HasPrefix(s, "fff") {
		t.Errorf("source = %q, %v: want a shortened source", s, ok)
	}
	for _, bad := range []string{long + "c", "a\"b", "a\nb", "a\\b"} {
		if _, err := ruleUserdata(&ir.Rule{Comment: bad}); err == nil {
			t.Errorf("comment %q accepted", bad)
		}
	}
}

// Trap (f): a ruleset that cannot be lowered is refused before anything is
// encoded or sent, with the chain and rule named.
func TestLowerRefuses(t *testing.T) {
	other := &ir.Set{Name: "other", Family: ir.FamilyIPv4}
	for _, tc := range []struct {
		name string
		r    *ir.Rule
		want string
	}{
		{"unknown set", &ir.Rule{Matches: []ir.Match{ir.AddrMatch{Family: ir.FamilyIPv4, Set: other}}}, "not in the ruleset"},
		{"port on esp", &ir.Rule{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoESP, Ranges: []ir.PortRange{{Lo: 1, Hi: 1}}}}}, "no ports"},
		{"nil match", &ir.Rule{Matches: []ir.Match{nil}}, "nil match"},
		{"long iface", &ir.Rule{Matches: []ir.Match{ir.IfaceMatch{Names: []string{"abcdefghijklmnop"}}}}, "1 to 15 bytes"},
		{"reject family clash", &ir.Rule{Matches: []ir.Match{ir.FamilyMatch{Family: ir.FamilyIPv6}}, Verdict: ir.Reject{With: ir.RejectICMPNetUnreachable}}, "other family"},
		{"jump outside", &ir.Rule{Verdict: ir.Jump{Chain: &ir.Chain{Name: "x"}}}, "not in the ruleset"},
		{"long comment", &ir.Rule{Comment: strings.Repeat("c", 129)}, "more than 128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{{Name: "input", Rules: []*ir.Rule{tc.r}}}}
			_, err := Lower(rs)
			var le *LowerError
			if !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "chain input rule 1") {
				t.Fatalf("Lower = %v, want a LowerError naming chain input rule 1 and %q", err, tc.want)
			}
			f := &Fake{}
			if err := f.Replace(context.Background(), rs); err == nil || len(f.Tables) != 0 {
				t.Errorf("Fake.Replace = %v, tables %v: want refusal and nothing stored", err, f.Tables)
			}
		})
	}
}

// opBytes encodes rs and returns the concatenated messages.
func opBytes(t testing.TB, rs *ir.Ruleset) []byte {
	b, err := Lower(rs)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := ReplaceOps(b)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, op := range ops {
		buf.WriteString(op.Name)
		buf.Write(op.Msg.Data)
		binary.Write(&buf, binary.NativeEndian, op.Msg.Header.Type)
		binary.Write(&buf, binary.NativeEndian, op.Msg.Header.Flags)
	}
	return buf.Bytes()
}

// Trap (g) and determinism: set IDs are per batch, so batches built at the
// same time (or one after another) are byte-identical and independent of
// google/nftables' package-level ID counter.
func TestEncodingDeterministicAndConcurrent(t *testing.T) {
	rs := matchesRuleset(t)
	want := opBytes(t, rs)
	var wg sync.WaitGroup
	results := make([][]byte, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = opBytes(t, matchesRuleset(t))
		}()
	}
	wg.Wait()
	for i, got := range results {
		if !bytes.Equal(got, want) {
			t.Errorf("batch %d differs from the first", i)
		}
	}
}

// The transaction replaces only hostwall's table: create-if-missing,
// delete, add; no FlushRuleset, no message names another table.
func TestReplaceTouchesOnlyItsTable(t *testing.T) {
	b, err := Lower(basicRuleset(t))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := ReplaceOps(b)
	if err != nil {
		t.Fatal(err)
	}
	wantStart := []int{unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE, unix.NFT_MSG_NEWTABLE}
	for i, w := range wantStart {
		if got := msgType(ops[i].Msg); got != w {
			t.Errorf("message %d is type %d, want %d", i, got, w)
		}
	}
	for _, op := range ops {
		attrs, err := netlink.UnmarshalAttributes(op.Msg.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		// Attribute 1 is the table name in every message kind we send.
		named := 0
		for _, a := range attrs {
			if a.Type == 1 {
				named++
				if string(a.Data) != "hostwall\x00" {
					t.Errorf("%s: names table %q", op.Name, a.Data)
				}
			}
		}
		if named != 1 {
			t.Errorf("%s: %d table attributes, want 1", op.Name, named)
		}
		if op.Msg.Data[0] != byte(nftables.TableFamilyINet) {
			t.Errorf("%s: family %d, want inet", op.Name, op.Msg.Data[0])
		}
	}
	del, err := DeleteOps("hostwall")
	if err != nil {
		t.Fatal(err)
	}
	if len(del) != 2 || msgType(del[0].Msg) != unix.NFT_MSG_NEWTABLE || msgType(del[1].Msg) != unix.NFT_MSG_DELTABLE {
		t.Errorf("DeleteOps = %d messages, want create-if-missing then delete", len(del))
	}
}

// Trap (b): socket buffers grow with the batch.
func TestSocketBuffersGrow(t *testing.T) {
	small, err := Lower(basicRuleset(t))
	if err != nil {
		t.Fatal(err)
	}
	big, err := Lower(bigSetRuleset(100_000))
	if err != nil {
		t.Fatal(err)
	}
	sOps, _ := ReplaceOps(small)
	bOps, _ := ReplaceOps(big)
	total := 0
	for _, op := range bOps {
		total += len(op.Msg.Data) + 16
	}
	rd, wr := socketBufferBytes(bOps)
	if wr <= total {
		t.Errorf("write buffer %d does not hold the %d-byte batch", wr, total)
	}
	if rd < 512*len(bOps) {
		t.Errorf("read buffer %d is small for %d acknowledgements", rd, len(bOps))
	}
	if r0, _ := socketBufferBytes(sOps); r0 < 4<<20 {
		t.Errorf("minimum read buffer %d, want at least 4 MiB", r0)
	}
}

// hostByteOrderUserdata flips only the key byte order of an ifname set.
func TestIfnameSetHostByteOrder(t *testing.T) {
	rs := &ir.Ruleset{Table: "hostwall", Chains: []*ir.Chain{{Name: "input", Rules: []*ir.Rule{
		{Matches: []ir.Match{ir.IfaceMatch{Names: []string{"eth0", "eth1"}}}, Verdict: ir.Accept{}},
		{Matches: []ir.Match{ir.PortMatch{Proto: ir.ProtoTCP, Field: ir.Dst, Ranges: []ir.PortRange{{Lo: 1, Hi: 1}, {Lo: 3, Hi: 3}}}}, Verdict: ir.Accept{}},
	}}}}
	b, err := Lower(rs)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := ReplaceOps(b)
	if err != nil {
		t.Fatal(err)
	}
	var orders []uint32
	for _, op := range ops {
		if msgType(op.Msg) != unix.NFT_MSG_NEWSET {
			continue
		}
		attrs, _ := netlink.UnmarshalAttributes(op.Msg.Data[4:])
		for _, a := range attrs {
			if a.Type == unix.NFTA_SET_USERDATA {
				v, _ := userdata.GetUint32(a.Data, userdata.NFTNL_UDATA_SET_KEYBYTEORDER)
				orders = append(orders, v)
			}
		}
	}
	if d := cmp.Diff([]uint32{1, 2}, orders); d != "" {
		t.Errorf("key byte orders (ifname set, port set) (-want +got):\n%s", d)
	}
}
