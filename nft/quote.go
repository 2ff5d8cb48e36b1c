package nft

import (
	"fmt"
	"regexp"
	"strings"
)

// Limits on strings written into nft text, in bytes.
const (
	// MaxCommentLen is the longest rule or set comment (the policy's limit).
	MaxCommentLen = 128
	// MaxLogPrefixLen is the longest log prefix (the policy's limit; the
	// kernel allows 127).
	MaxLogPrefixLen = 64
	// MaxIfaceLen is the longest interface name nft accepts in a string
	// (IFNAMSIZ 16 less the terminating NUL), the wildcard `*` included.
	MaxIfaceLen = 15
	// MaxNameLen is the longest table, chain or set name (NFT_NAME_MAXLEN
	// 256 less the terminating NUL).
	MaxNameLen = 255
)

// stringKind says what a quoted string is for; each kind has its own
// limits on top of the common ones.
type stringKind uint8

const (
	kindComment stringKind = iota
	kindLogPrefix
	kindIface
)

func (k stringKind) String() string {
	switch k {
	case kindComment:
		return "comment"
	case kindLogPrefix:
		return "log prefix"
	}
	return "interface name"
}

// quote returns s as an nft double-quoted string, or an error naming what
// is wrong. It is the only function that writes a string literal into nft
// text. nft's scanner reads a quoted string up to the next `"` with no
// escapes, so anything that could end the string or the line is refused:
// `"`, `\`, control characters (newline included) and non-ASCII bytes.
// Inside the quotes `;`, `#`, `{` and `}` are plain text to nft, so
// comments may use them (the policy allows any printable ASCII but `"` and
// `\`). Log prefixes also refuse `$`: nft 1.0.6 expands `$name` inside a
// log prefix as a variable. Interface names are held to the policy's
// alphabet (letters, digits, `.`, `_`, `-`, and a trailing `*` wildcard).
func quote(kind stringKind, s string) (string, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return "", fmt.Errorf("%s %q: contains '\"', which would end the nft string", kind, s)
		case c == '\\':
			return "", fmt.Errorf("%s %q: contains '\\', which nft does not allow in a string", kind, s)
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("%s %q: contains control character %#02x (newlines and tabs are not allowed)", kind, s, c)
		case c >= 0x80:
			return "", fmt.Errorf("%s %q: contains a non-ASCII byte at %d (only printable ASCII is allowed)", kind, s, i)
		}
	}
	switch kind {
	case kindComment:
		if len(s) > MaxCommentLen {
			return "", fmt.Errorf("comment %q: %d bytes, longer than %d", s, len(s), MaxCommentLen)
		}
	case kindLogPrefix:
		if len(s) > MaxLogPrefixLen {
			return "", fmt.Errorf("log prefix %q: %d bytes, longer than %d", s, len(s), MaxLogPrefixLen)
		}
		if strings.Contains(s, "$") {
			return "", fmt.Errorf("log prefix %q: contains '$', which nft expands as a variable in log prefixes", s)
		}
	case kindIface:
		if err := checkIface(s); err != nil {
			return "", err
		}
	}
	return `"` + s + `"`, nil
}

var ifaceRE = regexp.MustCompile(`^[A-Za-z0-9._-]+\*?$`)

// checkIface checks an interface name (with an optional trailing `*`).
func checkIface(s string) error {
	if !ifaceRE.MatchString(s) {
		return fmt.Errorf("interface name %q: want 1 to %d bytes of letters, digits, '.', '_' and '-', optionally ending in '*'", s, MaxIfaceLen)
	}
	if len(s) > MaxIfaceLen {
		return fmt.Errorf("interface name %q: %d bytes, longer than nft's %d", s, len(s), MaxIfaceLen)
	}
	return nil
}

var identRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// checkName checks a table, chain or set name: it is written into nft text
// unquoted (nft 1.0.6 takes no quoted names), so it must be a plain word
// that nft's scanner does not read as a keyword.
func checkName(what, s string) error {
	if !identRE.MatchString(s) {
		return fmt.Errorf("%s name %q: want a letter followed by letters, digits, '_' or '-'", what, s)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s name %q: %d bytes, longer than %d", what, s, len(s), MaxNameLen)
	}
	if nftKeywords[s] {
		return fmt.Errorf("%s name %q: is an nft keyword, which nft cannot parse as a name", what, s)
	}
	return nil
}

// nftKeywords are the words nft's scanner (src/scanner.l) turns into
// keyword tokens wherever a name can stand: outside any scanner state, plus
// `ll` and `nh` right after `@`. A table, chain or set with one of these
// names makes `nft -f` fail with "unexpected ..., expecting string". Words
// that are keywords only inside one expression (`mss`, `state`, `dport`)
// are names to nft where hostwall writes names.
var nftKeywords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`
		eq ne le lt ge gt lshift rshift xor and or not vmap
		include define redefine undefine describe
		hook device devices table chain rule set element map flowtable handle ruleset
		socket tproxy accept drop continue jump goto return inet netdev
		add replace update create insert delete get list reset flush rename
		import export monitor destroy position index comment
		constant interval dynamic auto-merge timeout gc-interval elements expires
		policy size flow offload meter counter last log queue limit quota hour day
		reject snat dnat masquerade redirect random th bridge ether type typeof
		vlan arp ip ecn time icmp icmpv6 igmp ip6 priority ah esp comp flags
		udp udplite vxlan vni geneve gre gretap tcp dccp sctp rt rt0 rt2 srh hbh
		frag dst mh meta mark iif iifname iiftype oif oifname oiftype skuid skgid
		nftrace rtclassid ibriport ibrname obriport obrname pkttype cpu iifgroup
		oifgroup cgroup ct numgen jhash symhash dup fwd fib osf synproxy tunnel
		notrack all exists missing exthdr ipsec secmark xt
		ll nh`) {
		m[w] = true
	}
	return m
}()
