package nft

import (
	"context"
	"strings"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// checkChunk catches an element list the encoder cut short, before
// anything is sent.
func TestCheckChunk(t *testing.T) {
	b, err := Lower(bigSetRuleset(3000))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := ReplaceOps(b)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []Op
	for _, op := range ops {
		if msgType(op.Msg) == unix.NFT_MSG_NEWSETELEM {
			msgs = append(msgs, op)
		}
	}
	if len(msgs) < 2 {
		t.Fatalf("%d element messages, want several", len(msgs))
	}
	_, counts := elemLists(t, msgs)
	for i, op := range msgs {
		if err := checkChunk(op.Msg.Data, counts[i]); err != nil {
			t.Errorf("message %d: %v", i, err)
		}
		if err := checkChunk(op.Msg.Data, counts[i]+1); err == nil || !strings.Contains(err.Error(), "elements into the message") {
			t.Errorf("message %d: one element short was not noticed: %v", i, err)
		}
		// A message whose list was cut (as a 16-bit length overflow does).
		cut := append([]byte(nil), op.Msg.Data[:len(op.Msg.Data)/2]...)
		if err := checkChunk(cut, counts[i]); err == nil {
			t.Errorf("message %d: a cut message passed", i)
		}
	}
	if err := checkChunk(nil, 0); err == nil {
		t.Error("an empty message passed")
	}
}

// The kernel's side of the check: the set counts the kernel reports match
// kernelCount for every kind of set hostwall makes (else every apply
// would fall back to reading the elements back), and a set holding fewer
// elements than the batch says is an error.
func TestVerifySetsRoot(t *testing.T) {
	needRoot(t)
	ns := testNetns(t, "verify")
	k := testKernel(t, ns)
	rs := bigSetRuleset(3000)
	if err := k.Replace(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	b, err := Lower(rs)
	if err != nil {
		t.Fatal(err)
	}
	fd, closeNS, err := k.nsHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer closeNS()
	conn, err := dialNetfilter(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer closeInBackground(conn)
	counts, err := setCounts(conn, rs.Table)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) == 0 {
		t.Log("this kernel does not report NFTA_SET_COUNT: verifyCounts reads every set back")
	}
	for _, s := range b.Sets {
		if n, ok := counts[s.Set.Name]; ok && n != kernelCount(s) {
			t.Errorf("set %s: the kernel reports %d elements, kernelCount says %d: every apply reads it back", s.Set.Name, n, kernelCount(s))
		}
	}
	if err := verifyCounts(conn, b.Table.Name, setChecks(b)); err != nil {
		t.Errorf("the sets as applied: %v", err)
	}
	for i := range b.Sets {
		short := *b.Sets[i]
		short.Elems = append(append([]nftables.SetElement(nil), short.Elems...), short.Elems[len(short.Elems)-1], short.Elems[len(short.Elems)-1])
		bad := *b
		bad.Sets = append([]*BatchSet(nil), b.Sets...)
		bad.Sets[i] = &short
		err := verifyCounts(conn, bad.Table.Name, setChecks(&bad))
		if err == nil || !strings.Contains(err.Error(), "were sent") {
			t.Errorf("set %s holds 2 elements fewer than sent: %v", short.Set.Name, err)
		}
	}
}
