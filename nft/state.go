package nft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultStateDir is where hostwall keeps the last known good table and a
// pending confirmation.
const DefaultStateDir = "/var/lib/hostwall"

// Files of the state directory.
const (
	lastGoodFile     = "last-good.json"
	lastGoodTextFile = "last-good.nft"
	pendingFile      = "pending.json"
	rollbackFile     = "last-rollback.json"
	stateLockFile    = "state.lock"
	applyLockFile    = "apply.lock"
)

// State is hostwall's state directory: the last known good table (written
// after every successful apply) and the apply that awaits confirmation.
// Every file is written atomically (temporary file, fsync, rename, fsync of
// the directory); a lock file orders confirm against rollback.
type State struct {
	Dir string
}

// LastGood is the table of the last successful apply.
type LastGood struct {
	Time time.Time `json:"time"`
	// NetNS is the network namespace it was applied in ("" for the
	// host's own).
	NetNS string `json:"netns,omitempty"`
	Node  string `json:"node,omitempty"`
	// Policy lists the policy files, PolicyHash is the SHA-256 of their
	// names and contents.
	Policy     []string `json:"policy"`
	PolicyHash string   `json:"policy_hash"`
	// Snapshot is the table as the kernel held it after the apply,
	// counters zeroed.
	Snapshot *Snapshot `json:"snapshot"`
}

// Pending is an apply that awaits `hostwall confirm`.
type Pending struct {
	// ID names this apply; the rollback helper acts only on its own ID.
	ID string `json:"id"`
	// Deadline is when the previous table comes back without confirm.
	Deadline time.Time `json:"deadline"`
	NetNS    string    `json:"netns,omitempty"`
	LockPath string    `json:"lock_path,omitempty"`
	// Previous is the table as it was before the apply.
	Previous *Snapshot `json:"previous"`
	// Candidate becomes the last known good table on confirm.
	Candidate *LastGood `json:"candidate,omitempty"`
}

// Rollback records a rollback of a pending apply.
type Rollback struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Done is false while the rollback runs (TakePending writes the
	// record), true once it ended.
	Done  bool   `json:"done"`
	Error string `json:"error,omitempty"`
}

// ErrNoState is wrapped by the errors of reads of state that is not there.
var ErrNoState = errors.New("no such state")

func (s State) path(name string) string { return filepath.Join(s.Dir, name) }

// lock takes the state directory's exclusive lock (blocking).
func (s State) lock() (func(), error) { return s.lockFile(stateLockFile) }

// ApplyLock takes the state directory's apply lock (blocking). An apply
// --confirm holds it from recording its pending apply until it has set
// the real deadline (after its transaction); the rollback helper takes it
// before it rolls back at a deadline. So the helper never restores the
// previous table ahead of the apply's own transaction, which would then
// leave the new table in place with nothing pending to roll it back. The
// kernel drops the lock when its holder dies, so a dead apply does not
// hold the helper up.
func (s State) ApplyLock() (unlock func(), err error) { return s.lockFile(applyLockFile) }

// lockFile takes an exclusive flock on name in the state directory.
func (s State) lockFile(name string) (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	f, err := os.OpenFile(s.path(name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state lock: %w", err)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// writeAtomic writes data to name in the state directory: a temporary
// file, fsync, rename over name, fsync of the directory.
func (s State) writeAtomic(name string, data []byte) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	f, err := os.CreateTemp(s.Dir, "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	d, err := os.Open(s.Dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", name, err)
	}
	return nil
}

func (s State) writeJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return s.writeAtomic(name, append(b, '\n'))
}

// readJSON reads name into v; a missing file is ErrNoState.
func (s State) readJSON(name string, v any) error {
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", s.path(name), ErrNoState)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: damaged: %w", s.path(name), err)
	}
	return nil
}

// SaveLastGood stores lg (and text, the table as nft text for humans,
// when not nil) as the last known good table.
func (s State) SaveLastGood(lg *LastGood, text []byte) error {
	if lg == nil || lg.Snapshot == nil {
		return errors.New("save last known good: no table")
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return s.saveLastGoodLocked(lg, text)
}

func (s State) saveLastGoodLocked(lg *LastGood, text []byte) error {
	if text != nil {
		if err := s.writeAtomic(lastGoodTextFile, text); err != nil {
			return err
		}
	}
	return s.writeJSON(lastGoodFile, lg)
}

// SaveLastGoodJSON is SaveLastGood of lg with the table already encoded:
// snapshot is the JSON of a *Snapshot (as json.Marshal writes it), and
// lg.Snapshot is ignored. An apply that kept the encoding of an identical
// table stores it without decoding and encoding 100,000 set elements
// again.
func (s State) SaveLastGoodJSON(lg *LastGood, snapshot, text []byte) error {
	if !json.Valid(snapshot) || bytes.Equal(bytes.TrimSpace(snapshot), []byte("null")) {
		return errors.New("save last known good: no table")
	}
	meta := *lg
	meta.Snapshot = nil
	b, err := json.Marshal(&meta)
	if err != nil {
		return fmt.Errorf("write %s: %w", lastGoodFile, err)
	}
	// The snapshot is LastGood's last field: splice it in for the null.
	head, ok := bytes.CutSuffix(b, []byte(`"snapshot":null}`))
	if !ok {
		return fmt.Errorf("write %s: unexpected encoding", lastGoodFile)
	}
	data := slices.Concat(head, []byte(`"snapshot":`), snapshot, []byte("}\n"))
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if text != nil {
		if err := s.writeAtomic(lastGoodTextFile, text); err != nil {
			return err
		}
	}
	return s.writeAtomic(lastGoodFile, data)
}

// LastGood reads the last known good table; ErrNoState when there is none.
func (s State) LastGood() (*LastGood, error) {
	var lg LastGood
	if err := s.readJSON(lastGoodFile, &lg); err != nil {
		return nil, err
	}
	if lg.Snapshot == nil {
		return nil, fmt.Errorf("%s: damaged: no table", s.path(lastGoodFile))
	}
	return &lg, nil
}

// WritePending records an apply that awaits confirmation, replacing any
// earlier record.
func (s State) WritePending(p *Pending) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return s.writeJSON(pendingFile, p)
}

// UpdatePending changes the pending apply id with f; false when it is no
// longer pending.
func (s State) UpdatePending(id string, f func(*Pending)) (bool, error) {
	unlock, err := s.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	var p Pending
	if err := s.readJSON(pendingFile, &p); err != nil {
		if errors.Is(err, ErrNoState) {
			return false, nil
		}
		return false, err
	}
	if p.ID != id {
		return false, nil
	}
	f(&p)
	return true, s.writeJSON(pendingFile, &p)
}

// Pending reads the apply that awaits confirmation; ErrNoState when none.
func (s State) Pending() (*Pending, error) {
	var p Pending
	if err := s.readJSON(pendingFile, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Confirm ends the pending apply (id "" means whichever is pending): its
// candidate becomes the last known good table. It returns the confirmed
// record, or ErrNoState when nothing is pending (already rolled back).
func (s State) Confirm(id string) (*Pending, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var p Pending
	if err := s.readJSON(pendingFile, &p); err != nil {
		return nil, err
	}
	if id != "" && p.ID != id {
		return nil, fmt.Errorf("apply %s: %w", id, ErrNoState)
	}
	if err := os.Remove(s.path(pendingFile)); err != nil {
		return nil, fmt.Errorf("confirm: %w", err)
	}
	if p.Candidate != nil {
		if err := s.saveLastGoodLocked(p.Candidate, nil); err != nil {
			return &p, fmt.Errorf("confirmed, but the last known good table was not saved: %w", err)
		}
	}
	return &p, nil
}

// TakePending removes and returns the pending apply id (id "" means
// whichever is pending) for rolling it back, and records that a rollback
// of it runs (see Rollback.Done); ErrNoState when it is no longer pending
// (confirmed, or rolled back by someone else).
func (s State) TakePending(id string) (*Pending, error) {
	return s.removePending(id, true)
}

// DropPending removes the pending apply id without a rollback (its apply
// failed, so there is nothing to undo).
func (s State) DropPending(id string) error {
	_, err := s.removePending(id, false)
	return err
}

func (s State) removePending(id string, rollback bool) (*Pending, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	var p Pending
	if err := s.readJSON(pendingFile, &p); err != nil {
		return nil, err
	}
	if id != "" && p.ID != id {
		return nil, fmt.Errorf("apply %s: %w", id, ErrNoState)
	}
	if rollback {
		if err := s.writeJSON(rollbackFile, &Rollback{ID: p.ID, Time: time.Now().UTC()}); err != nil {
			return nil, err
		}
	}
	if err := os.Remove(s.path(pendingFile)); err != nil {
		return nil, err
	}
	return &p, nil
}

// RecordRollback stores what a rollback did.
func (s State) RecordRollback(r *Rollback) error { return s.writeJSON(rollbackFile, r) }

// LastRollback reads the record of the last rollback; ErrNoState when none.
func (s State) LastRollback() (*Rollback, error) {
	var r Rollback
	if err := s.readJSON(rollbackFile, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Reserve takes size bytes in the state directory for the last known good
// table, before the kernel is changed: an apply whose state cannot be
// written (a read-only or full file system) then fails while the previous
// firewall is still in place. release frees the space; call it just before
// SaveLastGood.
func (s State) Reserve(size int64) (release func(), err error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", s.Dir, err)
	}
	s.removeStale()
	f, err := os.CreateTemp(s.Dir, ".reserve.tmp*")
	if err != nil {
		return nil, fmt.Errorf("state directory %s is not writable: %w", s.Dir, err)
	}
	name := f.Name()
	// fallocate takes the blocks now or fails (ENOSPC); no sync is needed
	// for that, and the file is removed anyway.
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) {
		// Writing zeros makes the file system find the blocks instead;
		// a file system that allocates late does so at the sync.
		if _, err = f.Write(make([]byte, size)); err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("state directory %s cannot hold the last known good table (%d bytes): %w", s.Dir, size, err)
	}
	return func() { os.Remove(name) }, nil
}

// staleAfter is how old a temporary file of the state directory must be
// for removeStale to take it for one a killed hostwall left.
const staleAfter = 10 * time.Minute

// removeStale removes the temporary files (reservations, half-written
// state) that a hostwall killed during an apply left in the state
// directory; a reservation takes up to 16 times the ruleset's text.
func (s State) removeStale() {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, ".") || !strings.Contains(name, ".tmp") {
			continue
		}
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && time.Since(info.ModTime()) > staleAfter {
			os.Remove(filepath.Join(s.Dir, name))
		}
	}
}
