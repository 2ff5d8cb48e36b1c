package bench

import (
	"bytes"
	"context"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/integration"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// -stages N runs TestApplyStages: the steps of `hostwall apply` in this
// process for a policy of size N, timed one by one, so that `go test
// -cpuprofile` or `-memprofile` shows where an apply spends its time.
var stagesN = flag.Int("stages", 0, "time the steps of hostwall apply for a policy of this size (0: skip)")

// stepNames are the steps of `hostwall apply` that applySteps times, in
// order.
var stepNames = []string{"load", "compile", "print", "reserve", "transaction", "snapshot", "save"}

// applySteps does what `hostwall apply` does (cmd/hostwall/apply.go), in
// this process, into the namespace of k with state directory state, and
// returns the time of each step of stepNames. The table is deleted first.
func applySteps(t *testing.T, ns *integration.Netns, k *nft.Netlink, state nft.State, path string) []time.Duration {
	t.Helper()
	deleteTable(ns)
	var steps []time.Duration
	last := time.Now()
	step := func() {
		now := time.Now()
		steps = append(steps, now.Sub(last))
		last = now
	}
	pol, diags := model.Load(path)
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	step()
	rs, diags := compiler.Compile(pol, compiler.Options{})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	step()
	var text bytes.Buffer
	if err := nft.Print(&text, rs); err != nil {
		t.Fatal(err)
	}
	step()
	release, err := state.Reserve(16*int64(text.Len()) + 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	step()
	if err := k.Replace(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	step()
	release()
	snap, err := k.Snapshot(context.Background(), rs.Table)
	if err != nil {
		t.Fatal(err)
	}
	step()
	lg := &nft.LastGood{Policy: pol.Files, Time: time.Now(), Snapshot: snap.ZeroCounters()}
	if err := state.SaveLastGood(lg, text.Bytes()); err != nil {
		t.Fatal(err)
	}
	step()
	return steps
}

func TestApplyStages(t *testing.T) {
	if *stagesN == 0 {
		t.Skip("bench: TestApplyStages runs only with -stages N")
	}
	needLab(t, "ip", "nft")
	dir := t.TempDir()
	path, err := Write(dir, Spec{Addrs: *stagesN, Rules: *stagesN})
	if err != nil {
		t.Fatal(err)
	}
	ns := integration.NewNetns(t, "benchstages")
	k := &nft.Netlink{NetNS: ns.Name, LockPath: filepath.Join(t.TempDir(), "lock")}
	state := nft.State{Dir: t.TempDir()}
	for i := range 3 {
		start := time.Now()
		steps := applySteps(t, ns, k, state, path)
		var parts []string
		for j, d := range steps {
			parts = append(parts, stepNames[j]+" "+ms(d))
		}
		t.Logf("run %d N=%d total %s ms: %v", i, *stagesN, ms(time.Since(start)), parts)
	}
}
