package nft

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// Two transactions never interleave: while one holds the lock, another
// waits, and gives up with a clear error when its context ends.
func TestTransactionLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hostwall.lock")
	a := &Netlink{LockPath: path}
	b := &Netlink{LockPath: path}
	unlock, err := a.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held = %v, want a deadline error", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := b.lock(context.Background())
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second lock returned %v while the first was held", err)
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("second lock after release: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second lock not granted after release")
	}
}

// The fake refuses what netlink would refuse and changes nothing then.
func TestFakeFailReplaceKeepsPrevious(t *testing.T) {
	f := &Fake{}
	ctx := context.Background()
	first := basicRuleset(t)
	if err := f.Replace(ctx, first); err != nil {
		t.Fatal(err)
	}
	f.FailReplace = errors.New("boom")
	if err := f.Replace(ctx, jumpRuleset(t)); err == nil {
		t.Fatal("FailReplace ignored")
	}
	if f.Tables["hostwall"] != first || len(f.Tables) != 1 {
		t.Errorf("a failed Replace changed the tables: %v", f.Tables)
	}
	st, err := f.List(ctx, "hostwall")
	if err != nil || st == nil || len(st.Chains) != 1 || len(st.Chains[0].Rules) != len(first.Chains[0].Rules) {
		t.Errorf("List = %+v, %v", st, err)
	}
	if st, err := f.List(ctx, "absent"); st != nil || err != nil {
		t.Errorf("List of an absent table = %v, %v; want nil, nil", st, err)
	}
}
