package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/hostwall/hostwall/model"
)

// strictModes is what `apply` checks before it loads a policy into the
// kernel, like sshd's StrictModes: whoever can write a policy file, a group
// file or the directory holding one decides what this host's firewall lets
// through. Each such file and its directory must be owned by root or by
// the user running hostwall, and not be writable by group or others.
type strictModes struct {
	// uid is the user running hostwall.
	uid uint32
	// stat is os.Stat; tests replace it.
	stat func(string) (os.FileInfo, error)
}

// insecurePolicyError is a policy file or directory that others could
// have written; apply refuses it unless --insecure-policy.
type insecurePolicyError struct {
	Path, Why string
}

func (e *insecurePolicyError) Error() string {
	return fmt.Sprintf("apply: refusing %s: %s; fix it (chown root, chmod go-w) or pass --insecure-policy", e.Path, e.Why)
}

// checkPolicyFiles checks every file the policy was read from (policy files
// and `file =` group lists) and each one's directory.
func checkPolicyFiles(pol *model.Policy) error {
	return checkFiles(policyFiles(pol))
}

// checkFiles checks files (in any order, repeats allowed) and their
// directories.
func checkFiles(files []string) error {
	files = slices.Clone(files)
	slices.Sort(files)
	s := strictModes{uid: uint32(os.Geteuid()), stat: os.Stat}
	return s.check(slices.Compact(files))
}

// policyFiles lists the files a loaded policy was read from.
func policyFiles(pol *model.Policy) []string {
	files := slices.Clone(pol.Files)
	for _, g := range pol.Groups {
		if g.File != "" {
			files = append(files, g.File)
		}
	}
	return files
}

// check checks each file and its directory; the first problem is returned.
func (s strictModes) check(files []string) error {
	seen := map[string]bool{}
	for _, f := range files {
		paths := []string{f, filepath.Dir(f)}
		// A symlink's target and the target's directory count too.
		if real, err := filepath.EvalSymlinks(f); err == nil && real != f {
			paths = append(paths, real, filepath.Dir(real))
		}
		for _, p := range paths {
			abs, err := filepath.Abs(p)
			if err != nil {
				return &insecurePolicyError{p, err.Error()}
			}
			if seen[abs] {
				continue
			}
			seen[abs] = true
			if err := s.checkOne(abs); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s strictModes) checkOne(path string) error {
	fi, err := s.stat(path)
	if err != nil {
		return &insecurePolicyError{path, fmt.Sprintf("cannot check its owner and mode: %v", err)}
	}
	what := "file"
	if fi.IsDir() {
		what = "directory"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &insecurePolicyError{path, "cannot read its owner"}
	}
	if st.Uid != 0 && st.Uid != s.uid {
		return &insecurePolicyError{path, fmt.Sprintf("the %s is owned by uid %d, neither root nor the user running hostwall (uid %d)", what, st.Uid, s.uid)}
	}
	perm := fi.Mode().Perm()
	// A sticky directory (like /tmp) still lets others add files, and a
	// file can be replaced by renaming over it: refuse group/other write
	// on directories whatever the sticky bit.
	if perm&0o022 != 0 {
		by := "group and others"
		switch perm & 0o022 {
		case 0o020:
			by = "its group"
		case 0o002:
			by = "others"
		}
		return &insecurePolicyError{path, fmt.Sprintf("the %s is writable by %s (mode %04o)", what, by, perm)}
	}
	return nil
}
