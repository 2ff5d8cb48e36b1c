package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorsCiteThePathAsGiven: every command that only reads a policy
// reports its errors with the path the operator typed (house style:
// "file:line:col"), as compile does, so the message can be pasted into an
// editor; export used to print absolute paths.
func TestErrorsCiteThePathAsGiven(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("p.toml", []byte("version = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "p.toml:1:11: " // then "version" must be 1 (lint adds severity and id)
	for _, args := range [][]string{
		{"compile", "p.toml"},
		{"test", "p.toml"},
		{"lint", "p.toml"},
		{"explain", "tcp 198.18.0.1:1 -> 198.18.0.2:2", "p.toml"},
		{"export", "--family", "ipv4", "p.toml"},
	} {
		t.Run(args[0], func(t *testing.T) {
			code, stdout, stderr := runCLI(args...)
			if code != exitPolicy {
				t.Errorf("exit %d, want %d", code, exitPolicy)
			}
			out := "\n" + stdout + "\n" + stderr // lint reports on stdout
			if !strings.Contains(out, "\n"+want) && !strings.Contains(out, "\nhostwall: "+want) || strings.Contains(out, filepath.Join(dir, "p.toml")) {
				t.Errorf("output = %q, want a line starting with %q", out, want)
			}
		})
	}
}
