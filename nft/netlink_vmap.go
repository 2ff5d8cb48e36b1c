package nft

import (
	"encoding/binary"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/hostwall/hostwall/compiler/ir"
	"golang.org/x/sys/unix"
)

// lowerVmap lowers a VerdictMap as nft 1.0.6 does: the interface name
// loaded into register 1, then a lookup in an anonymous constant map
// (`__map%d`, key ifname, data verdict) that writes the verdict register.
func (c *ruleCtx) lowerVmap(v ir.VerdictMap) error {
	if err := checkVerdictMap(v, c.l.chains); err != nil {
		return err
	}
	elems := make([]nftables.SetElement, len(v.Elems))
	for i, e := range v.Elems {
		elems[i] = nftables.SetElement{
			Key:         ifnameBytes(e.Name),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: e.Chain.Name},
		}
	}
	s := &nftables.Set{
		Table:     c.l.b.Table,
		Name:      "__map%d",
		ID:        c.l.id(),
		Anonymous: true,
		Constant:  true,
		IsMap:     true,
		KeyType:   keyIfname,
		DataType:  nftables.TypeVerdict,
	}
	c.br.AnonSets = append(c.br.AnonSets, &BatchSet{Set: s, Elems: elems})
	c.add(&expr.Meta{Key: ifnameKey(v.Dir), Register: reg1},
		&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID, IsDestRegSet: true, DestRegister: 0})
	return nil
}

// rawVerdict decodes the data of a verdict map element as google/nftables
// v0.3.0 reads it back (the NFTA_DATA_VERDICT attributes, undecoded, in
// SetElement.Val): NFTA_VERDICT_CODE, then NFTA_VERDICT_CHAIN for a jump.
func rawVerdict(b []byte) (*expr.Verdict, bool) {
	if len(b) == 0 {
		return nil, false
	}
	attrs, err := parseAttrs(b)
	if err != nil {
		return nil, false
	}
	v := &expr.Verdict{}
	code := false
	for _, a := range attrs {
		switch a.typ {
		case unix.NFTA_VERDICT_CODE:
			if len(a.payload) != 4 {
				return nil, false
			}
			v.Kind = expr.VerdictKind(int32(binary.BigEndian.Uint32(a.payload)))
			code = true
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = strings.TrimRight(string(a.payload), "\x00")
		}
	}
	return v, code
}
