package main

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/nft"
)

// mountTmpfs mounts a small tmpfs on a new temporary directory (root only)
// and unmounts it when the test ends.
func mountTmpfs(t *testing.T, flags uintptr, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("state directory faults: needs root to mount a tmpfs (run as root, as CI does)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "size="+size); err != nil {
		t.Skipf("state directory faults: cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestApplyStateDirFaults: a state directory that is read-only, or too full
// for the last known good table, fails the apply with exit 3 and a clear
// error before the kernel is touched: the previous table stays.
func TestApplyStateDirFaults(t *testing.T) {
	tests := []struct {
		name  string
		flags uintptr
		size  string
		want  string
	}{
		{"read-only", unix.MS_RDONLY, "1m", "read-only file system"},
		{"full", 0, "16k", "no space left on device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := mountTmpfs(t, tt.flags, tt.size)
			pol := writePolicy(t, nodesPolicy)
			previous := &ir.Ruleset{Table: "hostwall"}
			f := &nft.Fake{Tables: map[string]*ir.Ruleset{"hostwall": previous}}
			c := &ApplyCmd{Node: "node1", Policy: []string{pol}, kernel: f, State: dir}
			code, _, stderr := exitOf(t, c.Run)
			if code != exitSystem {
				t.Errorf("exit %d, want %d\n%s", code, exitSystem, stderr)
			}
			for _, want := range []string{"state directory " + dir, tt.want, "the firewall was not changed"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if len(f.Calls) != 0 || f.Tables["hostwall"] != previous {
				t.Errorf("the kernel was touched: calls %v", f.Calls)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("the reservation was left behind: %v", ents)
			}
		})
	}
	// The same apply with room in the state directory goes through.
	dir := mountTmpfs(t, 0, "8m")
	f := &nft.Fake{}
	c := &ApplyCmd{Node: "node1", Policy: []string{writePolicy(t, nodesPolicy)}, kernel: f, State: dir}
	if code, _, stderr := exitOf(t, c.Run); code != exitOK || len(f.Calls) != 1 {
		t.Errorf("apply with a usable state directory: exit %d, calls %v\n%s", code, f.Calls, stderr)
	}
	// The compiled policy's cache stays; nothing else does (the fake
	// kernel has no last known good table).
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "cache" {
		t.Errorf("the reservation was left behind: %v", ents)
	}
}
