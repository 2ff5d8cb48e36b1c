package iptables

import (
	"fmt"
	"strings"
)

// Limits of the iptables ABI (xtables) that the export checks instead of
// truncating silently.
const (
	maxComment    = 255 // xt_comment: 256 bytes with the NUL
	maxLogPrefix  = 29  // ipt_LOG/ip6t_LOG: 30 bytes with the NUL
	maxChainName  = 28  // XT_EXTENSION_MAXNAMELEN - 1 for user chains
	maxIfaceName  = 15  // IFNAMSIZ - 1
	maxIPSetName  = 31  // IPSET_MAXNAMELEN - 1
	maxMultiport  = 15  // XT_MULTI_PORTS; a range takes two slots
	maxLimitBurst = 10000
)

// quote is the one quoting function of the iptables-restore output: it
// returns s in double quotes, or an error when s holds anything that could
// break out of the quoted word or the line (quotes, backslashes, control
// characters, non-ASCII). iptables-restore reads `"..."` as one argument, so
// `#`, `;` and spaces are harmless inside.
func quote(s string) (string, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return "", fmt.Errorf("%q: byte %#02x at offset %d cannot be written in iptables-restore syntax", s, c, i)
		}
	}
	return `"` + s + `"`, nil
}

// validName reports whether s is a safe chain or ipset name: letters,
// digits, `_`, `-` and `.`, starting with a letter, at most max bytes.
func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// ifaceArg turns an IR interface name into the iptables form: a trailing
// `*` (prefix wildcard) becomes `+`. It refuses names the kernel cannot
// have or that would change meaning in iptables (a literal `+`).
func ifaceArg(name string) (string, error) {
	base, wild := strings.CutSuffix(name, "*")
	if base == "" && !wild || len(base) > maxIfaceName {
		return "", fmt.Errorf("interface %q: must be 1 to %d bytes", name, maxIfaceName)
	}
	for i := 0; i < len(base); i++ {
		c := base[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return "", fmt.Errorf("interface %q: byte %q cannot be written for iptables", name, c)
		}
	}
	if wild {
		return base + "+", nil
	}
	return base, nil
}
