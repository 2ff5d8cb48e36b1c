// Package model reads hostwall policies (policy-format.md, version 1): TOML
// files decoded with positions, merged, validated and with references
// resolved, returning (Policy, Diags) with every problem at once.
package model

import (
	"net/netip"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// Policy is a whole, validated policy: every file of a load merged. Slices
// keep definition order (files in load order, then position in the file).
type Policy struct {
	Version  int
	Settings Settings
	Defaults Defaults
	Zones    []*Zone
	Groups   []*Group
	Services []*Service
	Nodes    []*Node
	Policies []*PolicyBlock
	Guards   []*Guard
	NATs     []*NAT
	MSS      []*MSS
	Tests    []*Test
	// Files are the policy files read, in load order.
	Files []string
}

// KeyPos maps a TOML key of a table (e.g. "service") to the position of that
// key's value, for diagnostics made after decoding.
type KeyPos map[string]Pos

// Settings is [settings].
type Settings struct {
	Table         string // default "hostwall"
	GuardPriority int    // default -110; always below -100
	// OnError is what `hostwall apply` does when the policy fails to load,
	// compile or apply (on_error; default keep).
	OnError OnError
	// FailsafeSSHFrom names the group the failsafe ruleset accepts ssh
	// (tcp/22) from (failsafe_ssh_from); "" means from anywhere.
	FailsafeSSHFrom string
	Keys            KeyPos
}

// OnError is settings.on_error: what apply leaves in the kernel when the
// policy cannot be loaded, compiled or applied.
type OnError uint8

const (
	// OnErrorKeep keeps the table that is loaded (the default).
	OnErrorKeep OnError = iota
	// OnErrorFailsafe loads the failsafe ruleset: established traffic,
	// loopback and ssh from settings.failsafe_ssh_from; other input dropped.
	OnErrorFailsafe
)

// Action is what a rule, guard, default or test verdict does.
type Action uint8

const (
	ActionAccept Action = iota // accept
	ActionDrop                 // drop
	ActionReject               // reject
)

// ICMPMode is [defaults] icmp.
type ICMPMode uint8

const (
	ICMPEssential ICMPMode = iota // RFC 4890 essentials (the default)
	ICMPAll                       // all ICMP and ICMPv6
	ICMPNone                      // nothing special for ICMP
)

// RejectWith is how a reject answers, in policy terms (reject_with).
type RejectWith uint8

const (
	RejectAdminProhibited RejectWith = iota // admin-prohibited (the default)
	RejectPortUnreachable                   // port-unreachable
	RejectHostUnreachable                   // host-unreachable
	RejectNetUnreachable                    // net-unreachable
	RejectHostProhibited                    // host-prohibited
	RejectNetProhibited                     // net-prohibited
	RejectTCPReset                          // tcp-reset
)

// Defaults is [defaults].
type Defaults struct {
	Input, Forward, Output Action // defaults drop, drop, accept
	Established            bool   // default true
	Invalid                Action // drop (default) or accept
	Loopback               bool   // default true
	ICMP                   ICMPMode
	RejectWith             RejectWith
	// Log, when set, logs what the default verdicts drop or reject.
	Log  *Log
	Keys KeyPos
}

// Log is a rule's or the defaults' logging: a prefix (may be empty) and an
// optional rate limit on the log itself.
type Log struct {
	Prefix string
	Limit  *ir.Limit
	Pos    Pos
}

// Zone is a named set of interfaces.
type Zone struct {
	Name       string
	Interfaces []Iface
	Pos        Pos
}

// Iface is an interface name; a trailing "*" makes it a prefix wildcard.
type Iface struct {
	Name string
	Pos  Pos
}

// Group is a named list of addresses.
type Group struct {
	Name    string
	Members []Member
	// File is the path of the `file =` list, if the group has one, and
	// FileSHA256 the digest of the bytes read from it (what the compiled
	// policy was made of; the compiled-policy cache checks it).
	File       string
	FileSHA256 [32]byte
	// Addrs is every address of the group, nested groups included.
	Addrs *netipx.IPSet
	Pos   Pos
}

// Member is one entry of a group: a literal (Range) or another group (Ref).
type Member struct {
	Ref   string         // a group name, or ""
	Range netipx.IPRange // the literal's addresses when Ref == ""
	Text  string         // as written
	Pos   Pos
}

// Service is a named list of protocol/port specs.
type Service struct {
	Name  string
	Specs []ServiceSpec
	Pos   Pos
}

// ServiceSpec is one protocol with optional ports ("tcp/80", "udp/1024-65535",
// "esp", table form) or ICMP type ("icmp/echo-request").
type ServiceSpec struct {
	Proto  ir.Proto
	DPorts []ir.PortRange // empty: every port
	SPorts []ir.PortRange // empty: every port
	// ICMPType is set for "icmp/TYPE" (Proto ir.ProtoICMP) and
	// "icmpv6/TYPE" (Proto ir.ProtoICMPv6).
	ICMPType *ir.ICMPType
	Text     string // as written, e.g. "tcp/22"
	Pos      Pos
}

// Node is one host of [nodes].
type Node struct {
	Name      string
	Addresses []netip.Addr
	Roles     []string
	Pos       Pos
}

// PolicyBlock is one [[policy]].
type PolicyBlock struct {
	Name    string
	Order   int // default 1000
	Roles   []string
	Zone    string // default zone of the rules below, or ""
	In      []*Rule
	Out     []*Rule
	Forward []*Rule
	Pos     Pos
	Keys    KeyPos
}

// Hook is where a rule runs.
type Hook uint8

const (
	HookIn      Hook = iota // [[policy.in]]: input
	HookOut                 // [[policy.out]]: output
	HookForward             // [[policy.forward]]: forward
)

// Rule is one [[policy.in]], [[policy.out]] or [[policy.forward]].
type Rule struct {
	Policy *PolicyBlock
	Hook   Hook
	// Index is the rule's 0-based index within its policy's list for Hook.
	Index int
	// Seq orders all rules of all files by position (load order of files,
	// then place in the file); rules are taken in (Policy.Order, Seq) order.
	Seq int
	// Zone is the rule's own zone key (in: input interface, out: output
	// interface), without the policy's default.
	Zone             string
	FromZone, ToZone string
	From, To         AddrSpec
	// Services are the resolved specs of the service key; empty: any.
	Services   []ServiceSpec
	State      ir.CtState // 0: any
	Action     Action
	RejectWith *RejectWith // nil: the defaults' reject_with
	Log        *Log
	Limit      *ir.Limit
	Counter    bool // default true
	Comment    string
	Roles      []string
	Pos        Pos
	Keys       KeyPos
}

// AddrKind is what an AddrItem names.
type AddrKind uint8

const (
	AddrAny     AddrKind = iota // any
	AddrGroup                   // a [groups] name
	AddrNodes                   // nodes
	AddrRole                    // role:NAME
	AddrLiteral                 // an address, CIDR or range
)

// AddrSpec is the value of from/to: empty (any) or a union of items.
type AddrSpec struct {
	Items []AddrItem
	Pos   Pos
}

// AddrItem is one group name, special name or literal, maybe negated.
type AddrItem struct {
	Kind   AddrKind
	Negate bool
	Name   string         // group or role name
	Range  netipx.IPRange // AddrLiteral
	Text   string         // as written
	Pos    Pos
}

// Guard is one [[guard]].
type Guard struct {
	Name     string
	Services []ServiceSpec
	From     AddrSpec
	Zone     string
	Action   Action // default drop
	Local    bool   // default true
	Output   bool   // default true
	State    ir.CtState
	Log      *Log
	Limit    *ir.Limit
	Counter  bool
	Comment  string
	Pos      Pos
	Keys     KeyPos
}

// NATType is the type of a [[nat]].
type NATType uint8

const (
	NATMasquerade NATType = iota // masquerade
	NATSNAT                      // snat
	NATDNAT                      // dnat
)

// NAT is one [[nat]].
type NAT struct {
	Type     NATType
	FromZone string
	ToZone   string
	From     AddrSpec
	Services []ServiceSpec
	// ToAddr and ToPort are the translation target (snat: ToAddr only;
	// dnat: ToAddr and an optional ToPort, 0 for none).
	ToAddr netip.Addr
	ToPort uint16
	Pos    Pos
	Keys   KeyPos
}

// MSS is one [[mss]].
type MSS struct {
	Zone string
	Size uint16 // 0 when PMTU
	PMTU bool
	Pos  Pos
	Keys KeyPos
}

// Test is one [[test]].
type Test struct {
	Name      string
	Node      string
	Direction Hook   // default HookIn
	IIF, OIF  string // "" when not given
	Proto     ir.Proto
	Src, Dst  netip.Addr // Dst may be invalid (not given)
	SPort     *uint16
	DPort     *uint16
	ICMPType  *ir.ICMPType // icmp/icmpv6: default echo-request
	State     ir.CtState   // default new
	Expect    Action
	// ExpectDNAT and ExpectSNAT, when set, are what the test expects of
	// address translation (expect_dnat, expect_snat; an addition to
	// policy-format.md).
	ExpectDNAT, ExpectSNAT *NATExpect
	Pos                    Pos
	Keys                   KeyPos
}

// NATExpect is a test's expect_dnat or expect_snat: "none" (no
// translation), "masquerade" (expect_snat only), or the new address with an
// optional port (expect_dnat only).
type NATExpect struct {
	None       bool
	Masquerade bool
	Addr       netip.Addr // valid unless None or Masquerade
	Port       uint16     // 0: the port is not checked
	Text       string     // as written
	Pos        Pos
}
