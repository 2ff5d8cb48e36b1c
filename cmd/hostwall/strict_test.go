package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/nft"
)

// TestApplyStrictModes: apply refuses a policy that someone other than
// root or the running user could have written, unless --insecure-policy,
// and never touches the kernel then.
func TestApplyStrictModes(t *testing.T) {
	const pol = "[[policy]]\nname = \"p\"\n  [[policy.in]]\n  service = \"tcp/22\"\n"
	root := os.Geteuid() == 0
	tests := []struct {
		name     string
		fileMode os.FileMode
		dirMode  os.FileMode
		groupOK  bool // a group file with its own mode
		listMode os.FileMode
		owner    int // -1: keep
		insecure bool
		wantErr  string // "" = applied
	}{
		{"private", 0o600, 0o700, false, 0, -1, false, ""},
		{"world-readable is fine", 0o644, 0o755, false, 0, -1, false, ""},
		{"file writable by others", 0o646, 0o755, false, 0, -1, false, "file is writable by others (mode 0646)"},
		{"file writable by group", 0o664, 0o755, false, 0, -1, false, "file is writable by its group (mode 0664)"},
		{"file writable by all", 0o666, 0o755, false, 0, -1, false, "writable by group and others"},
		{"directory writable by group", 0o644, 0o775, false, 0, -1, false, "directory is writable by its group (mode 0775)"},
		{"sticky world-writable directory", 0o644, 0o1777, false, 0, -1, false, "directory is writable by group and others"},
		{"group file writable by others", 0o644, 0o755, true, 0o666, -1, false, "list.txt: the file is writable"},
		{"group file private", 0o644, 0o755, true, 0o600, -1, false, ""},
		{"owned by another user", 0o644, 0o755, false, 0, 4242, false, "owned by uid 4242"},
		{"--insecure-policy", 0o666, 0o777, false, 0, 4242, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.owner >= 0 && !root {
				t.Skip("needs root to chown a file to another user")
			}
			dir := filepath.Join(t.TempDir(), "policy.d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			text := pol
			if tc.groupOK {
				text += "[groups]\nlisted = { file = \"list.txt\" }\n[[policy]]\nname = \"q\"\n  [[policy.in]]\n  from = \"listed\"\n"
				list := filepath.Join(dir, "list.txt")
				if err := os.WriteFile(list, []byte("198.18.0.1\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(list, tc.listMode); err != nil {
					t.Fatal(err)
				}
			}
			file := filepath.Join(dir, "policy.toml")
			if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, tc.fileMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			if tc.owner >= 0 {
				if err := os.Chown(file, tc.owner, tc.owner); err != nil {
					t.Fatal(err)
				}
			}
			f := &nft.Fake{}
			c := &ApplyCmd{Policy: []string{dir}, kernel: f, InsecurePolicy: tc.insecure}
			code, _, stderr := exitOf(t, c.Run)
			tables := f.Tables
			if tc.wantErr == "" {
				if code != exitOK || len(tables) != 1 {
					t.Fatalf("exit %d, tables %v, stderr:\n%s", code, tables, stderr)
				}
				return
			}
			if code != exitPolicy || !strings.Contains(stderr, tc.wantErr) || !strings.Contains(stderr, "--insecure-policy") {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, exitPolicy, tc.wantErr)
			}
			if len(tables) != 0 {
				t.Errorf("the kernel was changed: %v", tables)
			}
		})
	}
}

// TestApplyStrictModesSymlink: a symlinked policy is checked at its target.
func TestApplyStrictModesSymlink(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(open, "policy.toml")
	if err := os.WriteFile(target, []byte("[defaults]\ninput = \"accept\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	safe := filepath.Join(dir, "safe")
	if err := os.Mkdir(safe, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(safe, "policy.toml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	c := &ApplyCmd{Policy: []string{link}, kernel: &nft.Fake{}}
	code, _, stderr := exitOf(t, c.Run)
	if code != exitPolicy || !strings.Contains(stderr, "directory is writable by group and others") {
		t.Errorf("exit %d, stderr %q; want the target's directory refused", code, stderr)
	}
}
