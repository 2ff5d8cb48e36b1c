package compiler

import (
	"cmp"
	"slices"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
)

// svcMatcher is one protocol alternative of a service key: the matches a
// packet must pass for that alternative.
type svcMatcher struct {
	matches []ir.Match
	// family is the only family the alternative exists in (icmp: IPv4,
	// icmpv6: IPv6), or FamilyAny.
	family ir.Family
	// impliesFamily is true when a match of the alternative already tests
	// the family (an ICMP type match).
	impliesFamily bool
	// proto is the one protocol every matching packet has, or 0.
	proto ir.Proto
}

// serviceMatchers groups the specs of a service key into as few
// alternatives as keep the meaning: destination ports of one protocol merge
// into one port set, bare protocols into one protocol set, ICMP types into
// one type set per family; specs with source ports stay on their own. No
// specs means any packet.
func serviceMatchers(specs []model.ServiceSpec) []svcMatcher {
	if len(specs) == 0 {
		return []svcMatcher{{}}
	}
	// bucketKey says which specs merge: a kind of spec and its protocol
	// (for sport buckets, the spec's index: those never merge).
	type bucketKey struct {
		kind uint8
		n    int
	}
	const (
		kindICMP = iota
		kindSport
		kindDport
		kindICMPProto
		kindProto
	)
	type bucket struct {
		key    bucketKey
		proto  ir.Proto
		ranges []ir.PortRange
		protos []ir.Proto
		icmp   []ir.ICMPType
		spec   *model.ServiceSpec
	}
	var buckets []*bucket
	find := func(key bucketKey) *bucket {
		for _, b := range buckets {
			if b.key == key {
				return b
			}
		}
		b := &bucket{key: key}
		buckets = append(buckets, b)
		return b
	}
	for i := range specs {
		s := &specs[i]
		switch {
		case s.ICMPType != nil:
			b := find(bucketKey{kindICMP, int(s.Proto)})
			b.proto = s.Proto
			b.icmp = append(b.icmp, *s.ICMPType)
		case len(s.SPorts) > 0:
			b := find(bucketKey{kindSport, i})
			b.proto, b.spec = s.Proto, s
		case len(s.DPorts) > 0:
			b := find(bucketKey{kindDport, int(s.Proto)})
			b.proto = s.Proto
			b.ranges = append(b.ranges, s.DPorts...)
		case s.Proto == ir.ProtoICMP || s.Proto == ir.ProtoICMPv6:
			b := find(bucketKey{kindICMPProto, int(s.Proto)})
			b.protos = append(b.protos, s.Proto)
		default:
			b := find(bucketKey{kind: kindProto})
			b.protos = append(b.protos, s.Proto)
		}
	}
	var out []svcMatcher
	for _, b := range buckets {
		var m svcMatcher
		switch {
		case len(b.icmp) > 0:
			fam := icmpFamily(b.proto)
			slices.Sort(b.icmp)
			m = svcMatcher{
				matches:       []ir.Match{ir.ICMPMatch{Family: fam, Types: slices.Compact(b.icmp)}},
				family:        fam,
				impliesFamily: true,
				proto:         b.proto,
			}
		case b.spec != nil:
			m.proto = b.proto
			m.matches = append(m.matches, ir.PortMatch{Proto: b.proto, Field: ir.Src, Ranges: mergeRanges(b.spec.SPorts)})
			if len(b.spec.DPorts) > 0 {
				m.matches = append(m.matches, ir.PortMatch{Proto: b.proto, Field: ir.Dst, Ranges: mergeRanges(b.spec.DPorts)})
			}
		case len(b.ranges) > 0:
			m.proto = b.proto
			m.matches = []ir.Match{ir.PortMatch{Proto: b.proto, Field: ir.Dst, Ranges: mergeRanges(b.ranges)}}
		default:
			slices.Sort(b.protos)
			protos := slices.Compact(b.protos)
			m.matches = []ir.Match{ir.ProtoMatch{Protos: protos}}
			if len(protos) == 1 {
				m.proto = protos[0]
				if protos[0] == ir.ProtoICMP || protos[0] == ir.ProtoICMPv6 {
					m.family = icmpFamily(protos[0])
				}
			}
		}
		out = append(out, m)
	}
	return out
}

// icmpFamily is the family ICMP (IPv4) or ICMPv6 (IPv6) belongs to.
func icmpFamily(p ir.Proto) ir.Family {
	if p == ir.ProtoICMPv6 {
		return ir.FamilyIPv6
	}
	return ir.FamilyIPv4
}

// mergeRanges sorts port ranges and merges overlapping and adjacent ones.
func mergeRanges(rs []ir.PortRange) []ir.PortRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b ir.PortRange) int { return cmp.Or(cmp.Compare(a.Lo, b.Lo), cmp.Compare(a.Hi, b.Hi)) })
	var out []ir.PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.Lo) <= uint32(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}
