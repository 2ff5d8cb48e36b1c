package ir

// This file holds hostwall's own binary form of a Ruleset, which the
// compiled-policy cache of `hostwall apply` stores, so that a re-apply of
// an unchanged policy skips loading and compiling it. It is exact: every
// field of every type reachable from a Ruleset survives, nil and empty
// slices stay apart, and so does the pointer graph: a Jump or a verdict
// map element points at the decoded chain of Ruleset.Chains, an AddrMatch
// at the decoded set of Ruleset.Sets, and a Rule, Base, Limit or Log that
// several places share (a zone dispatch rule's Merged and its chains' Rules,
// the halves of an expanded policy rule and their Limit and Log) is one
// object again after decoding. What it does not keep is which slices and
// match values shared memory: small decoded slices are cut, capacity
// limited, from shared allocations, and a match equal to the one at the
// same position of the rule before is that match again (see tagSameMatch;
// the compiler shares them the same way). Nothing writes into the slices
// of a compiled ruleset.
//
// Layout, version 1. uv is an unsigned varint (encoding/binary, in its
// shortest form), sv a zigzag varint, u8 a byte, u16 two bytes big endian.
// A str is a uv: 0 is "", k the k-th string of the string table. A ref is a
// uv: 0 is nil, k the k-th object of its table. A list is a uv n+1 and n
// items; uv 0 is a nil slice.
//
//	header  "HWIR" u8(version)
//	counts  uv strings, sets, chains, rules, bases, limits, logs
//	strings uv byte length of each string, then all their bytes
//	body    str Table
//	        sets:   (str Name, u8 Family, ranges Elems, str Comment, source) each
//	        list of set refs (Ruleset.Sets)
//	        chains: (str Name, base ref, list of rule refs) each
//	        list of chain refs (Ruleset.Chains)
//	        rules:  (list of matches, limit ref, u8 Counter, log ref,
//	                 verdict, str Comment, source, list of rule refs Merged) each
//	        bases:  (u8 Type, u8 Hook, sv Priority, verdict Policy, source) each
//	        limits: (uv Rate, u8 Unit, uv Burst) each
//	        logs:   (str Prefix) each
//
// A source is str File, sv Line, sv Col, str What. A match or verdict is a
// u8 tag (the tag* constants; 0 is nil) and its fields in declaration
// order; a match may also be tagSameMatch alone. An address is u8 0
// (invalid), 4 and 4 bytes, 6 and 16 bytes, or 7, 16 bytes and str zone. A
// list of ranges (or of AddrPorts) has, when not empty, a u8 mode after
// its count: 1 all IPv4 (4+4 bytes per range, 4+2 per AddrPort), 2 all
// IPv6 without zone (16+16, 16+2), 3 any (address, address; address, u16).
//
// The sets and chains tables hold the distinct sets and chains of
// Ruleset.Sets and Ruleset.Chains, so a match or verdict that points
// anywhere else cannot be encoded. The other tables hold every object
// reached, in the order the encoder first meets it. The string table holds
// every distinct string once, except Source.What, which is new for almost
// every rule and is stored unless it repeats the one before.
//
// Decoding checks every count against the bytes left before allocating, so
// what it allocates stays proportional to the input (under 50 bytes per
// byte, and a few shared chunks of 512 elements), every reference, enum
// value and bool, and refuses trailing bytes. It does not insist on the encoder's
// exact choices (an unused string, a string stored twice, a match written
// out that could have been tagSameMatch), which do not change the decoded
// ruleset.

// codecMagic starts every encoding; codecVersion is its layout's version,
// to be raised by any change of the layout or of a tag's meaning.
const (
	codecMagic   = "HWIR"
	codecVersion = 1
)

// Match tags. Append only: the numbers are the format.
const (
	tagMatchNil      = 0
	tagFamilyMatch   = 1
	tagIfaceMatch    = 2
	tagAddrMatch     = 3
	tagProtoMatch    = 4
	tagPortMatch     = 5
	tagICMPMatch     = 6
	tagCtStateMatch  = 7
	tagFibLocalMatch = 8
	tagHopLimitMatch = 9
	tagCtStatusMatch = 10
	tagTCPFlagsMatch = 11
	tagConcatMatch   = 12
	// tagSameMatch stands for a match equal to the one at the same
	// position of the previous rule (in table order), which the decoder
	// then shares: the thousands of rules of a merged run differ in one
	// match and repeat the others.
	tagSameMatch = 255
)

// Verdict tags. Append only: the numbers are the format.
const (
	tagVerdictNil = 0
	tagAccept     = 1
	tagDrop       = 2
	tagReject     = 3
	tagJump       = 4
	tagReturn     = 5
	tagVerdictMap = 6
	tagSNAT       = 7
	tagDNAT       = 8
	tagMasquerade = 9
	tagClampMSS   = 10
)

// Address list modes (see the layout).
const (
	modeIPv4 = 1
	modeIPv6 = 2
	modeAny  = 3
)

// Address kinds (see the layout).
const (
	addrInvalid = 0
	addrIPv4    = 4
	addrIPv6    = 6
	addrZoned   = 7
)

// The largest values of the enums the IR defines, and the conntrack state
// bits it names; anything else is refused both ways.
const (
	maxFamily     = FamilyIPv6
	maxDirection  = Out
	maxHook       = HookPostrouting
	maxChainType  = TypeNAT
	maxTimeUnit   = PerDay
	maxRejectType = RejectTCPReset
	ctStateBits   = CtInvalid | CtEstablished | CtRelated | CtNew | CtUntracked
)

// The fewest bytes an object of each table takes in the body (all its
// references nil, its strings empty, its lists nil), which bounds what a
// count can make the decoder allocate.
const (
	minSetLen   = 1 + 1 + 1 + 1 + 4
	minChainLen = 1 + 1 + 1
	minRuleLen  = 1 + 1 + 1 + 1 + 1 + 1 + 4 + 1
	minBaseLen  = 1 + 1 + 1 + 1 + 4
	minLimitLen = 1 + 1 + 1
	minLogLen   = 1
)
