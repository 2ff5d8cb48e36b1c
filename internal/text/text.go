// Package text is the one definition of the strings a policy can put into
// hostwall's outputs: names, comments, log prefixes, test names and
// interface names. The model refuses, with a position, every string that
// a check here refuses; the backends (nft text, netlink, iptables-restore)
// call the same checks again as a second line, so a Ruleset built by hand
// can't inject syntax either. Nothing is ever escaped: a string either is
// safe to write inside double quotes (or as a bare word) as it is, or it is
// refused.
//
// It is a leaf package: it imports only the standard library.
package text

import (
	"errors"
	"fmt"
	"strings"
)

// Limits, in bytes.
const (
	// MaxName is the longest name of a zone, group, service, node, role,
	// policy, guard or table.
	MaxName = 64
	// MaxComment is the longest comment: nft refuses more than 128 bytes
	// (iptables' xt_comment allows 255).
	MaxComment = 128
	// MaxLogPrefix is the longest log prefix the policy allows (the kernel
	// allows 127; iptables' LOG target 29, which the export checks).
	MaxLogPrefix = 64
	// MaxTestName is the longest name of a [[test]].
	MaxTestName = 128
	// MaxIface is the longest interface name (IFNAMSIZ 16 less the NUL).
	// A trailing `*` wildcard counts: nft and iptables both refuse a 16-byte
	// string, and a 15-byte prefix can only match the one name anyway.
	MaxIface = 15
)

// IsLetter reports whether c is an ASCII letter.
func IsLetter(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// IsDigit reports whether c is an ASCII digit.
func IsDigit(c byte) bool { return c >= '0' && c <= '9' }

// IsNameByte reports whether c may appear in a name: a letter, a digit,
// `_` or `-`.
func IsNameByte(c byte) bool {
	return IsLetter(c) || IsDigit(c) || c == '_' || c == '-'
}

// IsIfaceByte reports whether c may appear in an interface name: a name
// byte or `.`.
func IsIfaceByte(c byte) bool { return IsNameByte(c) || c == '.' }

// IsTextByte reports whether c may appear in a comment or log prefix:
// printable ASCII (0x20-0x7e) except `"` and `\`. Such bytes can't end a
// double-quoted string in nft or iptables-restore syntax, nor the line.
func IsTextByte(c byte) bool {
	return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'
}

// BadTextByte returns the offset of the first byte of s that IsTextByte
// refuses, or -1.
func BadTextByte(s string) int {
	for i := 0; i < len(s); i++ {
		if !IsTextByte(s[i]) {
			return i
		}
	}
	return -1
}

// Describe names a byte for an error message: `the character '#'` or
// `the byte 0x0a`.
func Describe(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("the character %q", rune(c))
	}
	return fmt.Sprintf("the byte 0x%02x", c)
}

// Name checks a name of a zone, group, service, node, role, policy or
// guard: a letter, then letters, digits, `_` or `-`, at most MaxName bytes.
// The error completes a sentence that starts with the name's key.
func Name(s string) error {
	switch {
	case s == "":
		return errors.New("is empty; a name starts with a letter, then letters, digits, _ or -")
	case len(s) > MaxName:
		return fmt.Errorf("is %d bytes long; a name has at most %d", len(s), MaxName)
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 { // "é" is a letter to its author, not to nft
			return fmt.Errorf("has %s (not ASCII); a name is ASCII letters, digits, _ or -, starting with a letter", Describe(s[i]))
		}
	}
	if !IsLetter(s[0]) {
		return errors.New("must start with a letter, then letters, digits, _ or -")
	}
	for i := 0; i < len(s); i++ {
		if !IsNameByte(s[i]) {
			return fmt.Errorf("has %s; a name is letters, digits, _ or -, starting with a letter", Describe(s[i]))
		}
	}
	return nil
}

// Table checks the name of hostwall's nft table: a Name that is not an nft
// keyword. nft writes the table name as a bare word, and its scanner turns
// keywords into tokens, so `table inet drop` does not parse. Every other
// object hostwall names (sets, chains) has a fixed prefix or a fixed name
// and can never be a keyword.
func Table(s string) error {
	if err := Name(s); err != nil {
		return err
	}
	if IsKeyword(s) {
		return fmt.Errorf("is an nft keyword, which nft can't read as a table name; choose another name (e.g. hostwall or hw-%s)", s)
	}
	return nil
}

// Ident checks a name hostwall writes into nft text as a bare word (table,
// chain or set): a letter, then letters, digits, `_` or `-`, at most max
// bytes, and not an nft keyword.
func Ident(s string, max int) error {
	switch {
	case s == "" || !IsLetter(s[0]):
		return errors.New("want a letter followed by letters, digits, '_' or '-'")
	case len(s) > max:
		return fmt.Errorf("%d bytes, longer than %d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if !IsNameByte(s[i]) {
			return errors.New("want a letter followed by letters, digits, '_' or '-'")
		}
	}
	if IsKeyword(s) {
		return errors.New("is an nft keyword, which nft cannot parse as a name")
	}
	return nil
}

// Iface checks an interface name: 1 to 15 bytes of letters, digits, `.`,
// `_` or `-`; with wildcard, a trailing `*` (a prefix match) is allowed
// and counts towards the 15 bytes.
func Iface(s string, wildcard bool) error {
	name := s
	star := false
	if wildcard {
		name, star = strings.CutSuffix(s, "*")
	}
	if name == "" {
		return errors.New("is empty; an interface name is 1 to 15 bytes of letters, digits, ., _ or -")
	}
	if len(name) > MaxIface {
		return fmt.Errorf("is %d bytes long; an interface name has at most %d", len(name), MaxIface)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !IsIfaceByte(c) {
			hint := ""
			if c == '*' && wildcard {
				hint = " (a * is only allowed at the end)"
			} else if c == '*' {
				hint = " (no wildcard here: name one interface)"
			}
			return fmt.Errorf("has %s%s; an interface name is letters, digits, ., _ or -", Describe(c), hint)
		}
	}
	if star && len(s) > MaxIface {
		return fmt.Errorf("is %d bytes with the *; nft and iptables take at most %d, and a %d-byte prefix matches only the interface %s: write it without the *", len(s), MaxIface, MaxIface, name)
	}
	return nil
}

// Printable checks a comment or log prefix: IsTextByte bytes only, at most
// max bytes.
func Printable(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("is %d bytes long; at most %d are allowed", len(s), max)
	}
	if i := BadTextByte(s); i >= 0 {
		return fmt.Errorf("has %s; only printable ASCII without \" or \\ is allowed", Describe(s[i]))
	}
	return nil
}

// Comment checks a comment: Printable, at most MaxComment bytes.
func Comment(s string) error { return Printable(s, MaxComment) }

// LogPrefix checks a log prefix: Printable, at most MaxLogPrefix bytes, and
// no `$`, which nft 1.0.6 reads as the start of a variable inside a log
// prefix.
func LogPrefix(s string) error {
	if err := Printable(s, MaxLogPrefix); err != nil {
		return err
	}
	if strings.Contains(s, "$") {
		return errors.New("has the character '$', which nft reads as a variable in a log prefix; leave it out")
	}
	return nil
}

// TestName checks the name of a [[test]]: 1 to MaxTestName bytes of
// printable ASCII. It is only ever printed by hostwall itself, never
// written into a ruleset.
func TestName(s string) error {
	if s == "" {
		return errors.New("is empty; give the test a name")
	}
	if len(s) > MaxTestName {
		return fmt.Errorf("is %d bytes long; at most %d are allowed", len(s), MaxTestName)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("has %s; only printable ASCII is allowed", Describe(c))
		}
	}
	return nil
}
