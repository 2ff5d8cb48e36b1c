package nft

// This file is the only place in hostwall that knows nftables register
// numbers, payload offsets, key types and byte orders. Everything that turns
// a value into the bytes the kernel compares goes through a function here.

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/hostwall/hostwall/compiler/ir"
	"golang.org/x/sys/unix"
)

// reg1 is the general-purpose register every match loads into (nft uses
// NFT_REG_1 for single-field matches, as nft 1.0.6 does).
const reg1 = 1

// ifNameLen is IFNAMSIZ: interface names are compared as 16 bytes,
// NUL-padded.
const ifNameLen = 16

// nfproto values (meta nfproto, 1 byte).
const (
	nfprotoIPv4 = unix.NFPROTO_IPV4 // 2
	nfprotoIPv6 = unix.NFPROTO_IPV6 // 10
)

// rtnLocal is RTN_LOCAL, the fib address type of `fib daddr type local`
// (4 bytes, host byte order).
const rtnLocal = unix.RTN_LOCAL

// defaultBurst is the burst nft uses when a limit gives none.
const defaultBurst = 5

// Payload offsets (network header).
const (
	ip4SaddrOff   = 12
	ip4DaddrOff   = 16
	ip6SaddrOff   = 8
	ip6DaddrOff   = 24
	ip6HopLimOff  = 7
	portSrcOff    = 0 // transport header
	portDstOff    = 2
	icmpTypeOff   = 0 // transport header
	ip4AddrLen    = 4
	ip6AddrLen    = 16
	portLen       = 2
	icmpTypeLen   = 1
	protoLen      = 1
	ctStateLen    = 4
	hopLimitLen   = 1
	nfprotoValLen = 1
)

// Reject types (NFT_REJECT_*) and codes.
const (
	rejectICMPUnreach  = unix.NFT_REJECT_ICMP_UNREACH  // 0: code is an ICMP/ICMPv6 code
	rejectTCPRst       = unix.NFT_REJECT_TCP_RST       // 1
	rejectICMPXUnreach = unix.NFT_REJECT_ICMPX_UNREACH // 2: code is an icmpx code
)

// rejectSpec returns the NFT_REJECT type and code of t, and the family it
// needs (FamilyAny for icmpx and tcp reset).
func rejectSpec(t ir.RejectType) (typ uint32, code uint8, fam ir.Family, ok bool) {
	switch t {
	case ir.RejectICMPXAdminProhibited:
		return rejectICMPXUnreach, unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED, ir.FamilyAny, true
	case ir.RejectICMPXPortUnreachable:
		return rejectICMPXUnreach, unix.NFT_REJECT_ICMPX_PORT_UNREACH, ir.FamilyAny, true
	case ir.RejectICMPXHostUnreachable:
		return rejectICMPXUnreach, unix.NFT_REJECT_ICMPX_HOST_UNREACH, ir.FamilyAny, true
	case ir.RejectICMPXNoRoute:
		return rejectICMPXUnreach, unix.NFT_REJECT_ICMPX_NO_ROUTE, ir.FamilyAny, true
	case ir.RejectICMPNetUnreachable:
		return rejectICMPUnreach, 0, ir.FamilyIPv4, true // ICMP_NET_UNREACH
	case ir.RejectICMPHostProhibited:
		return rejectICMPUnreach, 10, ir.FamilyIPv4, true // ICMP_HOST_ANO
	case ir.RejectICMPNetProhibited:
		return rejectICMPUnreach, 9, ir.FamilyIPv4, true // ICMP_NET_ANO
	case ir.RejectICMPv6AdminProhibited:
		return rejectICMPUnreach, 1, ir.FamilyIPv6, true // ICMPV6_ADM_PROHIBITED
	case ir.RejectICMPv6NoRoute:
		return rejectICMPUnreach, 0, ir.FamilyIPv6, true // ICMPV6_NOROUTE
	case ir.RejectTCPReset:
		return rejectTCPRst, 0, ir.FamilyAny, true
	}
	return 0, 0, 0, false
}

// nfprotoOf returns the meta nfproto value of a family.
func nfprotoOf(f ir.Family) byte {
	if f == ir.FamilyIPv6 {
		return nfprotoIPv6
	}
	return nfprotoIPv4
}

// addrOffset returns the network-header offset and length of the source or
// destination address of a family.
func addrOffset(f ir.Family, field ir.Direction) (off, n uint32) {
	if f == ir.FamilyIPv6 {
		if field == ir.Src {
			return ip6SaddrOff, ip6AddrLen
		}
		return ip6DaddrOff, ip6AddrLen
	}
	if field == ir.Src {
		return ip4SaddrOff, ip4AddrLen
	}
	return ip4DaddrOff, ip4AddrLen
}

// portOffset returns the transport-header offset of the source or
// destination port.
func portOffset(field ir.Direction) uint32 {
	if field == ir.Src {
		return portSrcOff
	}
	return portDstOff
}

// portBytes encodes a port as nft compares it: 2 bytes, big-endian.
func portBytes(p uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, p)
}

// ctStateBytes encodes a ct state mask: 4 bytes, host byte order.
func ctStateBytes(s ir.CtState) []byte {
	return binary.NativeEndian.AppendUint32(nil, uint32(s))
}

// fibTypeBytes encodes a fib address type: 4 bytes, host byte order.
func fibTypeBytes(t uint32) []byte {
	return binary.NativeEndian.AppendUint32(nil, t)
}

// addrBytes encodes an address in network byte order (4 or 16 bytes).
func addrBytes(a netip.Addr) []byte {
	return a.Unmap().AsSlice()
}

// ifnameBytes encodes an exact interface name: 16 bytes, NUL-padded.
func ifnameBytes(name string) []byte {
	b := make([]byte, ifNameLen)
	copy(b, name)
	return b
}

// metaKey returns the meta key that loads the input or output interface
// name.
func ifnameKey(d ir.Direction) expr.MetaKey {
	if d == ir.Out {
		return expr.MetaKeyOIFNAME
	}
	return expr.MetaKeyIIFNAME
}

// Set key types (nft datatypes) hostwall uses.
var (
	keyIPv4     = nftables.TypeIPAddr
	keyIPv6     = nftables.TypeIP6Addr
	keyService  = nftables.TypeInetService
	keyProto    = nftables.TypeInetProto
	keyICMP     = nftables.TypeICMPType
	keyICMPv6   = nftables.TypeICMP6Type
	keyIfname   = nftables.TypeIFName
	keyCtState  = nftables.TypeCTState
	limitUnitOf = map[ir.TimeUnit]expr.LimitTime{
		ir.PerSecond: expr.LimitTimeSecond,
		ir.PerMinute: expr.LimitTimeMinute,
		ir.PerHour:   expr.LimitTimeHour,
		ir.PerDay:    expr.LimitTimeDay,
	}
)

// hookOf maps an IR hook to the netfilter hook number.
func hookOf(h ir.Hook) (*nftables.ChainHook, bool) {
	switch h {
	case ir.HookPrerouting:
		return nftables.ChainHookPrerouting, true
	case ir.HookInput:
		return nftables.ChainHookInput, true
	case ir.HookForward:
		return nftables.ChainHookForward, true
	case ir.HookOutput:
		return nftables.ChainHookOutput, true
	case ir.HookPostrouting:
		return nftables.ChainHookPostrouting, true
	}
	return nil, false
}

// incBE adds one to a big-endian number in place and reports whether it
// overflowed (the number was all 0xff).
func incBE(b []byte) (overflow bool) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return false
		}
	}
	return true
}

// logPrefixAttr is NFTA_LOG_PREFIX: the bit of expr.Log.Key that says a
// prefix is present.
const logPrefixAttr = unix.NFTA_LOG_PREFIX

// nfgenHeader is the nfgenmsg header of batch begin/end messages: family
// AF_UNSPEC, version NFNETLINK_V0, res_id NFNL_SUBSYS_NFTABLES (big-endian).
func nfgenHeader() []byte {
	return []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}
}

// nativeUint32 reads a host-byte-order uint32 (netlink headers and errno).
func nativeUint32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }

// keyIsHostOrder reports whether nft keeps a set key type in host byte
// order (its set userdata then says NFTNL_UDATA_SET_KEYBYTEORDER = 1, and
// nft lists the elements wrongly if it says big-endian). Of the key types
// hostwall uses, only interface names are.
func keyIsHostOrder(t nftables.SetDatatype) bool {
	return t.GetNFTMagic() == keyIfname.GetNFTMagic()
}

// hostByteOrderUserdata rewrites, in place, the NFTNL_UDATA_SET_KEYBYTEORDER
// value of a NEWSET message to host byte order (1). google/nftables v0.3.0
// always writes big-endian (2) for anonymous, constant and interval sets.
func hostByteOrderUserdata(data []byte) error {
	const nfgenLen = 4
	for off := nfgenLen; off+4 <= len(data); {
		alen := int(binary.NativeEndian.Uint16(data[off:]))
		atyp := binary.NativeEndian.Uint16(data[off+2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if alen < 4 || off+alen > len(data) {
			return errors.New("malformed set attributes")
		}
		if atyp == unix.NFTA_SET_USERDATA {
			ud := data[off+4 : off+alen]
			for u := 0; u+2 <= len(ud); {
				typ, n := ud[u], int(ud[u+1])
				if u+2+n > len(ud) {
					return errors.New("malformed set userdata")
				}
				if typ == byte(userdata.NFTNL_UDATA_SET_KEYBYTEORDER) && n == 4 {
					binary.NativeEndian.PutUint32(ud[u+2:], 1)
					return nil
				}
				u += 2 + n
			}
			return errors.New("set userdata without key byte order")
		}
		off += (alen + 3) &^ 3
	}
	return errors.New("set message without userdata")
}

// Gateway features (nat.go): the second register NAT statements read the
// port from, the TCP flags byte, the MSS option and ct status.
const (
	reg2         = 2  // NFT_REG_2: the port of a dnat (nft 1.0.6 uses it there)
	tcpFlagsOff  = 13 // transport header: the flags byte of TCP
	tcpFlagsLen  = 1
	tcpOptMaxseg = 2 // TCPOPT_MAXSEG, the MSS option
	mssOff       = 2 // the MSS value within the option (after kind and length)
	mssLen       = 2
	ctStatusLen  = 4
)

// ctStatusBytes encodes ct status bits: 4 bytes, host byte order.
func ctStatusBytes(s uint32) []byte {
	return binary.NativeEndian.AppendUint32(nil, s)
}

// mssBytes encodes an MSS as the option carries it: 2 bytes, big-endian.
func mssBytes(size uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, size)
}

// Concatenations (netlink_concat.go): nft loads the fields of a
// concatenation into consecutive 32-bit registers (NFT_REG32_00 is 8, and
// overlays NFT_REG_1), each field padded to 4 bytes, and names a register
// that starts a 16-byte one by its NFT_REG_n number.
const reg32First = 8 // NFT_REG32_00

// concatNextReg is the register of the field after a first field of n
// bytes loaded into register 1.
func concatNextReg(n uint32) uint32 {
	r32 := reg32First + (n+3)/4
	if (r32-reg32First)%4 == 0 {
		return 1 + (r32-reg32First)/4 // NFT_REG_2 for a 16-byte address
	}
	return r32 // NFT_REG32_01 after an IPv4 address
}

// concatKey encodes an address . port element: the address in network
// byte order, then the port big-endian padded to 4 bytes.
func concatKey(e ir.AddrPort) []byte {
	return append(addrBytes(e.Addr), portBytes(e.Port)[0], portBytes(e.Port)[1], 0, 0)
}
