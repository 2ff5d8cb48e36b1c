package text

import "testing"

// TestNameNonASCII: policy-format.md names are "letters, digits, _ and -,
// starting with a letter"; a name that starts with a non-ASCII letter was
// told it "must start with a letter". The error now names the byte.
func TestNameNonASCII(t *testing.T) {
	tests := []struct{ in, want string }{
		{"é", "has the byte 0xc3 (not ASCII); a name is ASCII letters, digits, _ or -, starting with a letter"},
		{"ünïcode", "has the byte 0xc3 (not ASCII); a name is ASCII letters, digits, _ or -, starting with a letter"},
		{"caf\u00e9", "has the byte 0xc3 (not ASCII); a name is ASCII letters, digits, _ or -, starting with a letter"},
		{"1x", "must start with a letter, then letters, digits, _ or -"},
		{"a b", "has the character ' '; a name is letters, digits, _ or -, starting with a letter"},
	}
	for _, tc := range tests {
		err := Name(tc.in)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Name(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	if err := Name("ok-name_1"); err != nil {
		t.Errorf("Name(ok-name_1) = %v", err)
	}
}
