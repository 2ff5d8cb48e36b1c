package text

import (
	"strings"
	"testing"
)

func TestChecks(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name  string
		check func(string) error
		in    string
		want  string // "" = accepted; else a fragment of the error
	}{
		{"name", Name, "web-1_x", ""},
		{"name", Name, "W", ""},
		{"name", Name, "", "is empty"},
		{"name", Name, "1web", "must start with a letter"},
		{"name", Name, "a;b", `has the character ';'`},
		{"name", Name, "a b", `has the character ' '`},
		{"name", Name, "a.b", `has the character '.'`},
		{"name", Name, "a\nb", "has the byte 0x0a"},
		{"name", Name, long(64), ""},
		{"name", Name, long(65), "is 65 bytes long"},
		{"table", Table, "hostwall", ""},
		{"table", Table, "drop", "nft keyword"},
		{"table", Table, "ip", "nft keyword"},
		{"table", Table, "a$b", `has the character '$'`},
		{"comment", Comment, `any printable ;#${}' text`, ""},
		{"comment", Comment, long(128), ""},
		{"comment", Comment, long(129), "is 129 bytes long"},
		{"comment", Comment, `a"b`, `has the character '"'`},
		{"comment", Comment, `a\b`, `has the character '\\'`},
		{"comment", Comment, "a\nb", "has the byte 0x0a"},
		{"comment", Comment, "a\x7f", "has the byte 0x7f"},
		{"comment", Comment, "é", "has the byte 0xc3"},
		{"log prefix", LogPrefix, "hostwall drop: ", ""},
		{"log prefix", LogPrefix, long(64), ""},
		{"log prefix", LogPrefix, long(65), "is 65 bytes long"},
		{"log prefix", LogPrefix, "a $x", "variable"},
		{"log prefix", LogPrefix, "a\"", `has the character '"'`},
		{"test name", TestName, `quotes "ok" here`, ""},
		{"test name", TestName, "", "is empty"},
		{"test name", TestName, "a\nb", "has the byte 0x0a"},
		{"iface", func(s string) error { return Iface(s, true) }, "vxlan*", ""},
		{"iface", func(s string) error { return Iface(s, true) }, "br-lan.10_x", ""},
		{"iface", func(s string) error { return Iface(s, true) }, "abcdefghijklmno", ""},
		{"iface", func(s string) error { return Iface(s, true) }, "abcdefghijklmn*", ""},
		{"iface", func(s string) error { return Iface(s, true) }, "abcdefghijklmno*", "write it without the *"},
		{"iface", func(s string) error { return Iface(s, true) }, "abcdefghijklmnop", "is 16 bytes long"},
		{"iface", func(s string) error { return Iface(s, true) }, "*", "is empty"},
		{"iface", func(s string) error { return Iface(s, true) }, "e*th", "only allowed at the end"},
		{"iface", func(s string) error { return Iface(s, false) }, "eth*", "no wildcard here"},
		{"iface", func(s string) error { return Iface(s, true) }, "eth0;", `has the character ';'`},
		{"iface", func(s string) error { return Iface(s, true) }, "eth0+", `has the character '+'`},
		{"ident", func(s string) error { return Ident(s, 255) }, "g_cluster_v4", ""},
		{"ident", func(s string) error { return Ident(s, 255) }, "accept", "nft keyword"},
		{"ident", func(s string) error { return Ident(s, 255) }, "_x", "want a letter"},
		{"ident", func(s string) error { return Ident(s, 3) }, "abcd", "longer than 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.in, func(t *testing.T) {
			err := tt.check(tt.in)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("%q refused: %v", tt.in, err)
			case tt.want != "" && err == nil:
				t.Errorf("%q accepted, want an error with %q", tt.in, tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("%q: error %q, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

// TestTextBytes pins the byte class every output relies on.
func TestTextBytes(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'
		if got := IsTextByte(byte(c)); got != want {
			t.Errorf("IsTextByte(%#02x) = %v, want %v", c, got, want)
		}
		if IsIfaceByte(byte(c)) && !IsTextByte(byte(c)) {
			t.Errorf("%#02x is an interface byte but not a text byte", c)
		}
		if IsNameByte(byte(c)) && !IsIfaceByte(byte(c)) {
			t.Errorf("%#02x is a name byte but not an interface byte", c)
		}
	}
	if BadTextByte("ok") != -1 || BadTextByte("o\"k") != 1 {
		t.Error("BadTextByte")
	}
}

// TestKeywordsAreNames: every keyword is a well-formed name, so Table and
// Ident refuse them for being keywords, not by accident.
func TestKeywordsAreNames(t *testing.T) {
	for w := range nftKeywords {
		if !IsLetter(w[0]) {
			t.Errorf("keyword %q does not start with a letter", w)
		}
		if err := Table(w); err == nil || !strings.Contains(err.Error(), "keyword") {
			t.Errorf("Table(%q) = %v", w, err)
		}
	}
}
