package iptables

import (
	"fmt"
	"strings"

	"github.com/hostwall/hostwall/internal/text"
)

// Limits of the iptables ABI (xtables) that the export checks instead of
// truncating silently.
const (
	maxComment    = 255           // xt_comment: 256 bytes with the NUL (the policy allows text.MaxComment, 128)
	maxLogPrefix  = 29            // ipt_LOG/ip6t_LOG: 30 bytes with the NUL
	maxChainName  = 28            // XT_EXTENSION_MAXNAMELEN - 1 for user chains
	maxIfaceName  = text.MaxIface // IFNAMSIZ - 1
	maxIPSetName  = 31            // IPSET_MAXNAMELEN - 1
	maxMultiport  = 15            // XT_MULTI_PORTS; a range takes two slots
	maxLimitBurst = 10000
)

// quote is the one quoting function of the iptables-restore output: it
// returns s in double quotes, or an error when s holds anything that could
// break out of the quoted word or the line (quotes, backslashes, control
// characters, non-ASCII). iptables-restore reads `"..."` as one argument, so
// `#`, `;` and spaces are harmless inside.
func quote(s string) (string, error) {
	if i := text.BadTextByte(s); i >= 0 {
		return "", fmt.Errorf("%q: byte %#02x at offset %d cannot be written in iptables-restore syntax", s, s[i], i)
	}
	return `"` + s + `"`, nil
}

// validName reports whether s is a safe chain or ipset name: letters,
// digits, `_`, `-` and `.`, starting with a letter, at most max bytes.
func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	if !text.IsLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !text.IsIfaceByte(s[i]) {
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
	if base == "" || len(name) > maxIfaceName {
		return "", fmt.Errorf("interface %q: must be 1 to %d bytes (a trailing * included)", name, maxIfaceName)
	}
	for i := 0; i < len(base); i++ {
		if c := base[i]; !text.IsIfaceByte(c) {
			return "", fmt.Errorf("interface %q: byte %q cannot be written for iptables", name, c)
		}
	}
	if err := text.Iface(name, true); err != nil { // the shared definition, checked last
		return "", fmt.Errorf("interface %q %v", name, err)
	}
	if wild {
		return base + "+", nil
	}
	return base, nil
}
