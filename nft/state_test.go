package nft

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStateConfirmAndTake(t *testing.T) {
	snap := &Snapshot{Table: "hostwall", Exists: true, TableMsg: []byte{1, 0, 0, 0}}
	cand := &LastGood{PolicyHash: "abc", Snapshot: &Snapshot{Table: "hostwall", Exists: true}}
	for _, tc := range []struct {
		name string
		act  func(s State) error
		// after: whether pending and last-good exist afterwards
		pending, lastGood bool
	}{
		{"confirm promotes the candidate", func(s State) error { _, err := s.Confirm("a1"); return err }, false, true},
		{"confirm of any pending", func(s State) error { _, err := s.Confirm(""); return err }, false, true},
		{"confirm of another id", func(s State) error {
			_, err := s.Confirm("zz")
			if !errors.Is(err, ErrNoState) {
				return errors.New("want ErrNoState")
			}
			return nil
		}, true, false},
		{"take for rollback", func(s State) error {
			p, err := s.TakePending("a1")
			if err == nil && p.Previous.Compare(snap) != "" {
				return errors.New("previous table changed on the way")
			}
			return err
		}, false, false},
		{"confirm after take is too late", func(s State) error {
			if _, err := s.TakePending("a1"); err != nil {
				return err
			}
			if _, err := s.Confirm("a1"); !errors.Is(err, ErrNoState) {
				return errors.New("want ErrNoState")
			}
			return nil
		}, false, false},
		{"deadline moves only while pending", func(s State) error {
			ok, err := s.UpdatePending("a1", func(p *Pending) { p.Deadline = time.Unix(100, 0) })
			if err != nil || !ok {
				return errors.New("update of the pending apply failed")
			}
			p, _ := s.Pending()
			if !p.Deadline.Equal(time.Unix(100, 0)) {
				return errors.New("deadline not moved")
			}
			if ok, _ := s.UpdatePending("other", func(p *Pending) { p.Deadline = time.Now() }); ok {
				return errors.New("moved another apply's deadline")
			}
			return nil
		}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := State{Dir: filepath.Join(t.TempDir(), "state")}
			if _, err := s.Pending(); !errors.Is(err, ErrNoState) {
				t.Fatalf("empty state: Pending: %v", err)
			}
			if err := s.WritePending(&Pending{ID: "a1", Deadline: time.Now(), Previous: snap, Candidate: cand}); err != nil {
				t.Fatal(err)
			}
			if err := tc.act(s); err != nil {
				t.Fatal(err)
			}
			_, err := s.Pending()
			if got := err == nil; got != tc.pending {
				t.Errorf("pending afterwards: %v (%v), want %v", got, err, tc.pending)
			}
			lg, err := s.LastGood()
			if got := err == nil; got != tc.lastGood {
				t.Errorf("last good afterwards: %v (%v), want %v", got, err, tc.lastGood)
			}
			if lg != nil && lg.PolicyHash != "abc" {
				t.Errorf("last good hash %q", lg.PolicyHash)
			}
			// Nothing but the state files: no temporary files left over.
			ents, _ := os.ReadDir(s.Dir)
			for _, e := range ents {
				if e.Name()[0] == '.' {
					t.Errorf("left over: %s", e.Name())
				}
			}
		})
	}
}

func TestStateDamaged(t *testing.T) {
	s := State{Dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(s.Dir, lastGoodFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LastGood(); err == nil || errors.Is(err, ErrNoState) {
		t.Errorf("damaged last good: got %v, want a damage error", err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, lastGoodFile), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LastGood(); err == nil {
		t.Error("last good without a table: no error")
	}
}

// TestSaveLastGoodJSON: the last known good table saved with its snapshot
// already encoded reads back as SaveLastGood's does.
func TestSaveLastGoodJSON(t *testing.T) {
	snap := &Snapshot{Table: "hostwall", Exists: true, TableMsg: []byte{1, 0, 0, 0},
		Chains: [][]byte{{2, 0, 0, 0, 9}}, Sets: []SnapshotSet{{Msg: []byte{3}, Elems: [][]byte{{4}, {5}}}}, Rules: [][]byte{{6, 7}}}
	lg := &LastGood{Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), NetNS: "lab", Node: "n1",
		Policy: []string{"/etc/hostwall/a.toml"}, PolicyHash: "abc", Snapshot: snap}
	plain, encoded := State{Dir: t.TempDir()}, State{Dir: t.TempDir()}
	if err := plain.SaveLastGood(lg, []byte("text")); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	meta := *lg
	meta.Snapshot = nil
	if err := encoded.SaveLastGoodJSON(&meta, raw, []byte("text")); err != nil {
		t.Fatal(err)
	}
	want, err := plain.LastGood()
	if err != nil {
		t.Fatal(err)
	}
	got, err := encoded.LastGood()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("last known good differs (-SaveLastGood +SaveLastGoodJSON):\n%s", diff)
	}
	if b, err := os.ReadFile(filepath.Join(encoded.Dir, lastGoodTextFile)); err != nil || string(b) != "text" {
		t.Errorf("text: %q, %v", b, err)
	}
	for _, bad := range []string{"", "null", "{", "[1,"} {
		if err := encoded.SaveLastGoodJSON(&meta, []byte(bad), nil); err == nil {
			t.Errorf("snapshot %q: saved", bad)
		}
	}
}

// TestReserveRemovesStale: the temporary files a killed apply left are
// removed by a later reservation once they are old; fresh ones (another
// apply's) and other files stay.
func TestReserveRemovesStale(t *testing.T) {
	s := State{Dir: t.TempDir()}
	old := time.Now().Add(-time.Hour)
	files := map[string]bool{ // name: removed
		".reserve.tmp123":        true,
		".last-good.json.tmp456": true,
		".reserve.tmp789-fresh":  false,
		"last-good.json":         false,
		".hidden-but-not-tmp":    false,
	}
	for name, stale := range files {
		p := filepath.Join(s.Dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if stale || name == "last-good.json" || name == ".hidden-but-not-tmp" {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	release, err := s.Reserve(4096)
	if err != nil {
		t.Fatal(err)
	}
	release()
	for name, removed := range files {
		_, err := os.Stat(filepath.Join(s.Dir, name))
		if gone := errors.Is(err, os.ErrNotExist); gone != removed {
			t.Errorf("%s: removed %v, want %v", name, gone, removed)
		}
	}
	if ents, _ := os.ReadDir(s.Dir); len(ents) != 3 {
		t.Errorf("left %d files, want 3", len(ents))
	}
}
