package nft

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/hostwall/hostwall/compiler/ir"
)

// lowerConcat lowers a ConcatMatch as nft 1.0.6 does: the family and
// protocol dependencies, the address loaded into register 1 and the port
// into the next 32-bit register after it, and a lookup of the
// concatenation in an anonymous constant set whose elements are the
// address and the port each padded to 4 bytes.
func (c *ruleCtx) lowerConcat(m ir.ConcatMatch) error {
	if err := checkConcat(m); err != nil {
		return err
	}
	addrKey, err := addrKey(m.Family)
	if err != nil {
		return err
	}
	key, err := nftables.ConcatSetType(addrKey, keyService)
	if err != nil {
		return err
	}
	off, n := addrOffset(m.Family, m.AddrField)
	c.needFamily(m.Family)
	c.needL4(m.Proto)
	c.add(&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Payload{DestRegister: concatNextReg(n), Base: expr.PayloadBaseTransportHeader, Offset: portOffset(m.PortField), Len: portLen})
	elems := make([]nftables.SetElement, len(m.Elems))
	for i, e := range m.Elems {
		elems[i] = nftables.SetElement{Key: concatKey(e)}
	}
	s := &nftables.Set{
		Table:         c.l.b.Table,
		Name:          "__set%d",
		ID:            c.l.id(),
		Anonymous:     true,
		Constant:      true,
		Concatenation: true,
		KeyType:       key,
	}
	c.br.AnonSets = append(c.br.AnonSets, &BatchSet{Set: s, Elems: elems})
	c.add(&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID})
	return nil
}
