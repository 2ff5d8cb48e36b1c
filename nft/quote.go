package nft

import (
	"fmt"

	"github.com/hostwall/hostwall/internal/text"
)

// Limits on strings written into nft text, in bytes.
const (
	// MaxCommentLen is the longest rule or set comment (the policy's limit).
	MaxCommentLen = text.MaxComment
	// MaxLogPrefixLen is the longest log prefix (the policy's limit; the
	// kernel allows 127).
	MaxLogPrefixLen = text.MaxLogPrefix
	// MaxIfaceLen is the longest interface name nft accepts in a string
	// (IFNAMSIZ 16 less the terminating NUL), the wildcard `*` included.
	MaxIfaceLen = text.MaxIface
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
	if i := text.BadTextByte(s); i >= 0 {
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
		default: // unreachable: BadTextByte refuses no other byte
			return "", fmt.Errorf("%s %q: contains %s", kind, s, text.Describe(c))
		}
	}
	switch kind {
	case kindComment:
		if err := text.Comment(s); err != nil {
			return "", fmt.Errorf("comment %q: %d bytes, longer than %d", s, len(s), MaxCommentLen)
		}
	case kindLogPrefix:
		if err := text.LogPrefix(s); err != nil {
			if len(s) > MaxLogPrefixLen {
				return "", fmt.Errorf("log prefix %q: %d bytes, longer than %d", s, len(s), MaxLogPrefixLen)
			}
			return "", fmt.Errorf("log prefix %q: contains '$', which nft expands as a variable in log prefixes", s)
		}
	case kindIface:
		if err := checkIface(s); err != nil {
			return "", err
		}
	}
	return `"` + s + `"`, nil
}

// checkIface checks an interface name (with an optional trailing `*`).
func checkIface(s string) error {
	if err := text.Iface(s, true); err != nil {
		return fmt.Errorf("interface name %q %v", s, err)
	}
	return nil
}

// checkName checks a table, chain or set name: it is written into nft text
// unquoted (nft 1.0.6 takes no quoted names), so it must be a plain word
// that nft's scanner does not read as a keyword.
func checkName(what, s string) error {
	if err := text.Ident(s, MaxNameLen); err != nil {
		return fmt.Errorf("%s name %q: %v", what, s, err)
	}
	return nil
}
