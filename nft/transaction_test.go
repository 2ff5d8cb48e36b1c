package nft

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTransactionEncoding: the encoding of a ruleset's transaction is the
// same every time (the cache of compiled policies relies on it), and
// decodes to what was encoded; any cut or damaged encoding is an error,
// never a panic.
func TestTransactionEncoding(t *testing.T) {
	for name, rs := range lowerCases(t) {
		t.Run(name, func(t *testing.T) {
			a, err := Encode(rs)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Encode(rs)
			if err != nil {
				t.Fatal(err)
			}
			ea, _ := a.MarshalBinary()
			eb, _ := b.MarshalBinary()
			if !bytes.Equal(ea, eb) {
				t.Fatal("two encodings of one ruleset differ")
			}
			var got Transaction
			if err := got.UnmarshalBinary(ea); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(a, &got); diff != "" {
				t.Errorf("decoded transaction differs:\n%s", diff)
			}
			for _, i := range offsets(len(ea)) {
				var tx Transaction
				if err := tx.UnmarshalBinary(ea[:i]); err == nil {
					t.Fatalf("cut at %d of %d bytes: no error", i, len(ea))
				}
			}
			if err := got.UnmarshalBinary(append(ea, 0)); err == nil {
				t.Error("a trailing byte: no error")
			}
			for _, i := range offsets(len(ea)) {
				bad := bytes.Clone(ea)
				bad[i] ^= 0xff
				var tx Transaction
				_ = tx.UnmarshalBinary(bad) // must not panic
			}
		})
	}
}

// TestReplaceTransactionRoot: a decoded transaction loads the same table
// as Replace, and its set check catches a set that holds fewer elements
// than the transaction says it sent.
func TestReplaceTransactionRoot(t *testing.T) {
	needRoot(t)
	ns := testNetns(t, "tx")
	k := testKernel(t, ns)
	rs := bigSetRuleset(3000)
	if err := k.Replace(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	want := listTable(t, ns, rs.Table)
	tx, err := Encode(rs)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := tx.MarshalBinary()
	var dec Transaction
	if err := dec.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	nftIn(t, ns, nil, "delete", "table", "inet", rs.Table)
	if err := k.ReplaceTransaction(context.Background(), &dec); err != nil {
		t.Fatal(err)
	}
	if got := listTable(t, ns, rs.Table); got != want {
		t.Errorf("the decoded transaction loaded another table:\n%s", cmp.Diff(want, got))
	}
	dec.Sets[0].Sent += 2
	dec.Sets[0].Count += 2
	if err := k.ReplaceTransaction(context.Background(), &dec); err == nil {
		t.Error("a set short of 2 elements passed the check")
	}
}

// offsets are the byte offsets the damage tests try in an encoding of n
// bytes: every one of the first 2,000 (the header, the table and the
// first messages), then 500 spread over the rest.
func offsets(n int) []int {
	var out []int
	for i := range min(n, 2000) {
		out = append(out, i)
	}
	for i := 2000; i < n; i += max(1, (n-2000)/500) {
		out = append(out, i)
	}
	return out
}

// TestReplaceAndReadRoot: the read-back taken under the transaction's lock
// is the table a separate read gives, and is exact (the generation right
// after the transaction's) when nothing else commits.
func TestReplaceAndReadRoot(t *testing.T) {
	needRoot(t)
	ns := testNetns(t, "txread")
	k := testKernel(t, ns)
	for name, rs := range lowerCases(t) {
		tx, err := Encode(rs)
		if err != nil {
			t.Fatal(err)
		}
		snap, exact, err := k.ReplaceAndRead(context.Background(), tx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !exact || snap == nil {
			t.Fatalf("%s: read-back exact %v, snapshot %v", name, exact, snap != nil)
		}
		again, err := k.Snapshot(context.Background(), rs.Table)
		if err != nil {
			t.Fatal(err)
		}
		if d := snap.ZeroCounters().Compare(again.ZeroCounters()); d != "" {
			t.Errorf("%s: the read-back differs from a later read: %s", name, d)
		}
	}
}
