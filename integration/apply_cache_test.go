package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cachedPolicy accepts tcp/80 except from the addresses of block.txt.
const cachedPolicy = `
[groups]
block = { file = "block.txt" }

[[policy]]
name = "web"
  [[policy.in]]
  from = "block"
  action = "drop"
  comment = "blocked"
  [[policy.in]]
  service = "tcp/80"
  comment = "policy A"
`

// TestApplyCacheKernel: an apply from the cache of compiled policies loads
// the same table as one that compiled, and stores the same last known good
// table (its snapshot taken from the cache, not read back, on the third
// apply), which `rollback` restores; an edited group list misses.
func TestApplyCacheKernel(t *testing.T) {
	l := newSafeLab(t, "198.18.73.1", "198.18.73.2")
	ns := l.trafficLab.node.Name
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(policy, []byte(cachedPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	block := filepath.Join(dir, "block.txt")
	if err := os.WriteFile(block, []byte("198.18.73.9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	apply := func(stage string, flags ...string) (list string, lastGood []byte) {
		t.Helper()
		args := append([]string{"apply", "--netns", ns, "--state-dir", l.state}, flags...)
		if out, code := l.hostwall(t, nil, append(args, policy)...); code != 0 {
			t.Fatalf("%s: apply: exit %d\n%s", stage, code, out)
		}
		return l.list(t), lastGoodSnapshot(t, l.state)
	}
	flush := func() {
		t.Helper()
		if out, code := l.hostwall(t, nil, "flush", "--netns", ns); code != 0 {
			t.Fatalf("flush: exit %d\n%s", code, out)
		}
	}

	coldList, coldLG := apply("cold", "--no-cache")
	if m, _ := filepath.Glob(filepath.Join(l.state, "cache", "*")); len(m) != 0 {
		t.Errorf("--no-cache wrote the cache: %v", m)
	}
	// The first apply with the cache compiles and reads the table back;
	// the second takes both from the cache.
	for _, stage := range []string{"compiled, cached", "from the cache"} {
		flush()
		list, lg := apply(stage)
		if list != coldList {
			t.Errorf("%s: table differs from a compiled apply:\n%s", stage, cmp.Diff(coldList, list))
		}
		if !bytes.Equal(lg, coldLG) {
			t.Errorf("%s: last known good table differs from a compiled apply's read-back", stage)
		}
		l.verdicts(t, stage, Accepted, Dropped)
	}
	if m, _ := filepath.Glob(filepath.Join(l.state, "cache", "*.snapshot")); len(m) != 1 {
		t.Errorf("cached snapshots: %v, want one", m)
	}

	l.trafficLab.node.MustRun(t, "nft", "insert", "rule", "inet", "hostwall", "input", "tcp", "dport", "81", "accept")
	if out, code := l.hostwall(t, nil, "rollback", "--netns", ns, "--state-dir", l.state); code != 0 {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	if got := l.list(t); got != coldList {
		t.Errorf("rollback to the cached last known good table:\n%s", cmp.Diff(coldList, got))
	}

	if err := os.WriteFile(block, []byte("198.18.73.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The edited list is a miss; its last known good table must be the
	// new table, not the snapshot kept for the old one, on this apply
	// and the next (a hit).
	for _, stage := range []string{"group list edited", "group list edited, from the cache"} {
		list, lg := apply(stage)
		if !strings.Contains(list, "198.18.73.2") || strings.Contains(list, "198.18.73.9") {
			t.Errorf("%s: the kernel holds the old list:\n%s", stage, list)
		}
		flush()
		_, want := apply(stage+", compiled", "--no-cache")
		if !bytes.Equal(lg, want) {
			t.Errorf("%s: the last known good table is not the applied one", stage)
		}
	}
	l.trafficLab.node.MustRun(t, "nft", "flush", "table", "inet", "hostwall")
	if out, code := l.hostwall(t, nil, "rollback", "--netns", ns, "--state-dir", l.state); code != 0 {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	if list := l.list(t); !strings.Contains(list, "198.18.73.2") || strings.Contains(list, "198.18.73.9") {
		t.Errorf("rollback after the group list edit restored:\n%s", list)
	}
	l.verdicts(t, "client blocked", Dropped, Dropped)
}

// lastGoodSnapshot returns the snapshot of the state directory's last
// known good table, as JSON.
func lastGoodSnapshot(t *testing.T, state string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "last-good.json"))
	if err != nil {
		t.Fatal(err)
	}
	var lg struct {
		Snapshot json.RawMessage `json:"snapshot"`
	}
	if err := json.Unmarshal(b, &lg); err != nil {
		t.Fatal(err)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, lg.Snapshot); err != nil {
		t.Fatal(err)
	}
	return c.Bytes()
}
