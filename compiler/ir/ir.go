// Package ir is hostwall's typed intermediate representation: the compiled
// ruleset that every backend (nft text, netlink, iptables) reads and that
// Eval gives its meaning. It holds no nft syntax; it is a leaf package.
package ir

import (
	"net/netip"

	"go4.org/netipx"
)

// Ruleset is everything hostwall puts into its one inet table.
type Ruleset struct {
	// Table is the name of the nft table (family inet) hostwall owns.
	Table string
	// Sets are the named sets, in the order they are declared.
	Sets []*Set
	// Chains are base chains and regular chains, in the order they are
	// declared. A Jump verdict points at one of them.
	Chains []*Chain
}

// Set is a named set of addresses of one family (nft `type ipv4_addr` or
// `type ipv6_addr`).
type Set struct {
	Name   string
	Family Family // IPv4 or IPv6, never FamilyAny
	// Elems are sorted, non-overlapping, non-adjacent ranges (as produced by
	// netipx.IPSet.Ranges). A set whose elements are not all single
	// addresses needs nft's `flags interval`: see Interval.
	Elems []netipx.IPRange
	// Comment says where the set came from (e.g. `group cluster`).
	Comment string
	Source  Source
}

// Interval reports whether the set needs `flags interval` (any element is
// more than one address).
func (s *Set) Interval() bool {
	for _, r := range s.Elems {
		if r.From() != r.To() {
			return true
		}
	}
	return false
}

// ChainType is the nft chain type of a base chain.
type ChainType uint8

const (
	// TypeFilter is nft `type filter`.
	TypeFilter ChainType = iota
	// TypeNAT is nft `type nat`.
	TypeNAT
)

// Hook is a netfilter hook a base chain attaches to.
type Hook uint8

const (
	HookPrerouting  Hook = iota // nft `hook prerouting`
	HookInput                   // nft `hook input`
	HookForward                 // nft `hook forward`
	HookOutput                  // nft `hook output`
	HookPostrouting             // nft `hook postrouting`
)

// Well-known base chain priorities (nft's named priorities in family inet).
const (
	PriorityRaw      = -300 // nft `raw`
	PriorityMangle   = -150 // nft `mangle`
	PriorityDstNAT   = -100 // nft `dstnat`
	PriorityFilter   = 0    // nft `filter`
	PrioritySecurity = 50   // nft `security`
	PrioritySrcNAT   = 100  // nft `srcnat`
)

// Base makes a chain a base chain: attached to a hook with a default policy.
type Base struct {
	Type     ChainType
	Hook     Hook
	Priority int
	// Policy is the chain's default policy: Accept or Drop only.
	Policy Verdict
	// Source is where the policy comes from (e.g. `defaults.input`), for
	// reports of packets that no rule decided.
	Source Source
}

// Chain is a base chain (Base != nil) or a regular chain reached by Jump.
type Chain struct {
	Name  string
	Base  *Base
	Rules []*Rule
}

// Rule is one nft rule: all Matches must hold; then, in this order, Limit
// (a packet over the rate does not match), Counter, Log and Verdict.
type Rule struct {
	Matches []Match
	// Limit, when set, makes the rule match only packets within the rate.
	Limit *Limit
	// Counter adds an nft `counter` statement.
	Counter bool
	// Log, when set, logs matching packets.
	Log *Log
	// Verdict decides the packet; nil means continue with the next rule
	// (a log-only rule).
	Verdict Verdict
	// Comment is the user's comment (printable ASCII, no `"` or `\`, at most
	// 128 bytes); empty for none.
	Comment string
	// Source is where in the policy this rule came from.
	Source Source
	// Merged, when set, lists the rules of the plain first-match list that
	// this rule stands for, in their order (the compiler's optimiser merged
	// them; see MergedRule). The rule matches exactly the packets that one
	// of them matches, all of them have its verdict, and the first of them
	// that matches a packet is the rule Eval reports as deciding. A backend
	// that cannot write the merged form may write these rules instead.
	Merged []*Rule
}

// Source ties a compiled rule back to the policy text that produced it.
type Source struct {
	File      string
	Line, Col int
	// What names the origin for humans, e.g. `policy "web" in[2]`,
	// `guard "nodeport-31002"`, `defaults.established`.
	What string
}

// Limit is nft `limit rate N/unit burst B packets`.
type Limit struct {
	Rate  uint64
	Unit  TimeUnit
	Burst uint32 // 0: nft's default
}

// TimeUnit is the unit of a Limit rate.
type TimeUnit uint8

const (
	PerSecond TimeUnit = iota // nft `second`
	PerMinute                 // nft `minute`
	PerHour                   // nft `hour`
	PerDay                    // nft `day`
)

// Log is nft `log` with an optional `prefix`.
type Log struct {
	Prefix string // printable ASCII, no `"` or `\`, at most 64 bytes; may be empty
}

// Family is an L3 protocol family (nft `meta nfproto`).
type Family uint8

const (
	FamilyAny  Family = iota // both IPv4 and IPv6
	FamilyIPv4               // nft `ipv4`
	FamilyIPv6               // nft `ipv6`
)

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return FamilyIPv4
	}
	return FamilyIPv6
}
