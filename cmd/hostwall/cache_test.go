package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	"golang.org/x/sys/unix"
)

// cachePolicy has nodes, a group list file and a rule whose comment
// tells the tests which policy text a table came from.
const cachePolicy = `
[nodes]
node1 = { addresses = ["198.18.0.11"], roles = ["web"] }
node2 = { addresses = ["198.18.0.12"], roles = ["db"] }

[groups]
block = { file = "block.txt" }

[[policy]]
name = "web"
roles = ["web"]
  [[policy.in]]
  service = "tcp/80"
  comment = "COMMENT"

[[policy]]
name = "block"
  [[policy.in]]
  from = "block"
  action = "drop"
`

// cacheLab is a policy directory, a state directory and a fake kernel.
type cacheLab struct {
	dir, state string
	kernel     *nft.Fake
}

func newCacheLab(t *testing.T, comment string) *cacheLab {
	t.Helper()
	l := &cacheLab{dir: t.TempDir(), state: t.TempDir(), kernel: &nft.Fake{}}
	l.write(t, "policy.toml", strings.Replace(cachePolicy, "COMMENT", comment, 1))
	l.write(t, "block.txt", "198.18.99.1\n")
	return l
}

func (l *cacheLab) write(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// apply runs `hostwall apply` on node1's address with the given flags
// and returns the table it put into the fake kernel and stderr.
func (l *cacheLab) apply(t *testing.T, mod func(*ApplyCmd)) (*ir.Ruleset, string) {
	t.Helper()
	c := &ApplyCmd{Policy: []string{filepath.Join(l.dir, "policy.toml")}, State: l.state, kernel: l.kernel, addrs: addrsOf("198.18.0.11")}
	if mod != nil {
		mod(c)
	}
	code, _, stderr := exitOf(t, c.Run)
	if code != exitOK {
		t.Fatalf("apply: exit %d\n%s", code, stderr)
	}
	return l.kernel.Tables["hostwall"], stderr
}

// cacheFiles lists the cache directory's files by suffix.
func (l *cacheLab) cacheFiles(t *testing.T, suffix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(l.state, "cache", "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// compiled compiles the lab's policy now, for node.
func (l *cacheLab) compiled(t *testing.T, node string) *ir.Ruleset {
	t.Helper()
	pol, diags := model.Load(filepath.Join(l.dir, "policy.toml"))
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return rs
}

func printed(t *testing.T, rs *ir.Ruleset) string {
	t.Helper()
	var b bytes.Buffer
	if err := nft.Print(&b, rs); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestApplyCacheHit: the second apply of an unchanged policy takes the
// compiled ruleset from the cache: the same table as a compile, and (shown
// by planting a different ruleset under the same key) not compiled again.
func TestApplyCacheHit(t *testing.T) {
	l := newCacheLab(t, "first")
	cold, _ := l.apply(t, nil)
	if len(l.cacheFiles(t, ".policy")) != 1 || len(l.cacheFiles(t, ".ruleset")) != 1 {
		t.Fatalf("the first apply cached %v %v, want one policy and one ruleset", l.cacheFiles(t, ".policy"), l.cacheFiles(t, ".ruleset"))
	}
	warm, _ := l.apply(t, nil)
	if got, want := printed(t, warm), printed(t, l.compiled(t, "node1")); got != want {
		t.Errorf("the cached ruleset differs from a compile:\n%s", cmp.Diff(want, got))
	}
	if printed(t, warm) != printed(t, cold) {
		t.Error("the cached apply loaded another table than the first")
	}

	// Plant another policy's ruleset under this key: a hit applies it,
	// which a load and compile would not.
	other := newCacheLab(t, "planted")
	pc := newPolicyCache(l.state)
	key := pc.key(sourcesHash(mustRead(t, filepath.Join(l.dir, "policy.toml"))))
	rs := other.compiled(t, "node1")
	if err := pc.store(key, mustLoad(t, filepath.Join(l.dir, "policy.toml")), "node1", &cachedRuleset{Text: []byte(printed(t, rs))}, rs); err != nil {
		t.Fatal(err)
	}
	got, _ := l.apply(t, nil)
	if !strings.Contains(printed(t, got), `"planted"`) {
		t.Errorf("the apply did not take the cached ruleset:\n%s", printed(t, got))
	}
	got, _ = l.apply(t, func(c *ApplyCmd) { c.NoCache = true })
	if !strings.Contains(printed(t, got), `"first"`) {
		t.Errorf("--no-cache took the cached ruleset:\n%s", printed(t, got))
	}
}

// TestApplyCacheMisses: what the compiled ruleset depends on changes the
// table, cached or not: the policy file, a group list file, the node, a
// damaged entry.
func TestApplyCacheMisses(t *testing.T) {
	l := newCacheLab(t, "first")
	l.apply(t, nil)

	l.write(t, "policy.toml", strings.Replace(cachePolicy, "COMMENT", "edited", 1))
	if got, _ := l.apply(t, nil); !strings.Contains(printed(t, got), `"edited"`) {
		t.Errorf("an edited policy file applied the cached table:\n%s", printed(t, got))
	}

	l.write(t, "block.txt", "198.18.99.1\n198.18.99.7\n")
	if got, _ := l.apply(t, nil); !strings.Contains(printed(t, got), "198.18.99.7") {
		t.Errorf("an edited group list applied the cached table:\n%s", printed(t, got))
	}

	got, _ := l.apply(t, func(c *ApplyCmd) { c.addrs = addrsOf("198.18.0.12") })
	if want := printed(t, l.compiled(t, "node2")); printed(t, got) != want {
		t.Errorf("node2 got:\n%s", cmp.Diff(want, printed(t, got)))
	}
	got, _ = l.apply(t, func(c *ApplyCmd) { c.Node = "node2" })
	if want := printed(t, l.compiled(t, "node2")); printed(t, got) != want {
		t.Errorf("--node node2 got:\n%s", cmp.Diff(want, printed(t, got)))
	}
	if got, _ := l.apply(t, nil); printed(t, got) != printed(t, l.compiled(t, "node1")) {
		t.Errorf("back on node1 got:\n%s", printed(t, got))
	}

	// Both nodes are cached; a group list edit, applied on node1 (a
	// miss), must not leave node2's entry a hit.
	l.write(t, "block.txt", "198.18.99.1\n198.18.99.8\n")
	l.apply(t, nil)
	got, _ = l.apply(t, func(c *ApplyCmd) { c.Node = "node2" })
	if !strings.Contains(printed(t, got), "198.18.99.8") {
		t.Errorf("node2 after a group list edit applied on node1:\n%s", printed(t, got))
	}

	// Damage every cache file: each apply still loads the right table.
	for _, suffix := range []string{".ruleset", ".policy"} {
		for _, f := range l.cacheFiles(t, suffix) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := l.apply(t, nil); printed(t, got) != printed(t, l.compiled(t, "node1")) {
			t.Errorf("with damaged %s files got:\n%s", suffix, printed(t, got))
		}
	}
}

// TestApplyCacheStrictModes: a hit refuses a group list others can
// write, as a load does.
func TestApplyCacheStrictModes(t *testing.T) {
	l := newCacheLab(t, "first")
	l.apply(t, nil)
	l.apply(t, nil)
	if err := os.Chmod(filepath.Join(l.dir, "block.txt"), 0o666); err != nil {
		t.Fatal(err)
	}
	c := &ApplyCmd{Policy: []string{filepath.Join(l.dir, "policy.toml")}, State: l.state, kernel: l.kernel, addrs: addrsOf("198.18.0.11")}
	code, _, stderr := exitOf(t, c.Run)
	if code != exitPolicy || !strings.Contains(stderr, "block.txt") {
		t.Errorf("a group list others can write: exit %d\n%s", code, stderr)
	}
}

// TestApplyCachePrune: the cache keeps the most recently used policies
// only.
func TestApplyCachePrune(t *testing.T) {
	l := newCacheLab(t, "p0")
	for i := range cacheKeep + 3 {
		l.write(t, "policy.toml", strings.Replace(cachePolicy, "COMMENT", "p"+string(rune('a'+i)), 1))
		l.apply(t, nil)
	}
	if got := len(l.cacheFiles(t, ".policy")); got != cacheKeep {
		t.Errorf("%d policies cached, want %d", got, cacheKeep)
	}
	if got := len(l.cacheFiles(t, ".ruleset")); got != cacheKeep {
		t.Errorf("%d rulesets cached, want %d", got, cacheKeep)
	}
}

func mustRead(t *testing.T, paths ...string) []model.Source {
	t.Helper()
	srcs, diags := model.ReadSources(paths...)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return srcs
}

func mustLoad(t *testing.T, paths ...string) *model.Policy {
	t.Helper()
	pol, diags := model.Load(paths...)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return pol
}

// TestApplyCacheGroupFIFO: a hit reads the group lists as a load does: a
// FIFO in place of one is refused at once, not read (which would block).
func TestApplyCacheGroupFIFO(t *testing.T) {
	l := newCacheLab(t, "first")
	l.apply(t, nil)
	block := filepath.Join(l.dir, "block.txt")
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(block, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		c := &ApplyCmd{Policy: []string{filepath.Join(l.dir, "policy.toml")}, State: l.state, kernel: l.kernel, addrs: addrsOf("198.18.0.11")}
		code, _, _ := exitOf(t, c.Run)
		done <- code
	}()
	select {
	case code := <-done:
		if code != exitPolicy {
			t.Errorf("exit %d, want %d (not a regular file)", code, exitPolicy)
		}
	case <-time.After(10 * time.Second):
		// Unblock the reader so the test can end.
		f, _ := os.OpenFile(block, os.O_WRONLY, 0)
		f.Close()
		t.Fatal("apply blocked on a FIFO group list")
	}
}

// TestApplyCacheUndecodable: a ruleset entry whose checksum holds but
// whose ruleset does not decode (a codec bug) is compiled again when the
// ruleset is needed, never an error.
func TestApplyCacheUndecodable(t *testing.T) {
	l := newCacheLab(t, "first")
	l.apply(t, nil)
	pc := newPolicyCache(l.state)
	files := l.cacheFiles(t, ".ruleset")
	if len(files) != 1 {
		t.Fatalf("ruleset files: %v", files)
	}
	body, ok := pc.read(files[0])
	if !ok {
		t.Fatal("the entry does not read")
	}
	var parts [][]byte
	for len(body) > 0 {
		n, w := binary.Uvarint(body)
		parts, body = append(parts, body[w:w+int(n)]), body[w+int(n):]
	}
	parts[2] = []byte("HWIR\x01garbage")
	var out []byte
	for _, p := range parts {
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
	}
	if err := pc.write(files[0], out); err != nil {
		t.Fatal(err)
	}
	got, stderr := l.apply(t, nil) // the fake kernel needs the ruleset
	if printed(t, got) != printed(t, l.compiled(t, "node1")) {
		t.Errorf("got:\n%s\n%s", printed(t, got), stderr)
	}
}
