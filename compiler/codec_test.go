package compiler

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hostwall/hostwall/bench"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/iptables"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	"go4.org/netipx"
)

// The tests of ir.Ruleset's binary codec on compiled policies: every
// example for every node, the random policies of the differential tests,
// and the benchmark's policy. The codec's own tests (every IR type, errors,
// fuzzing) are in compiler/ir/codec_test.go.

// addrCmp lets go-cmp compare the IR's address types (netip.Addr and
// netipx.IPRange have unexported fields).
var addrCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netipx.IPRange) bool { return a == b }),
}

// fastCmp adds comparers of rule and range lists element by element:
// go-cmp's own slice comparison looks for an edit script, which costs
// twice per level of nested slices (18 s on the benchmark's ruleset, 5 s
// with these). It tells nil from empty, as the codec must.
var fastCmp cmp.Options

func init() {
	fastCmp = cmp.Options{addrCmp,
		cmp.Comparer(func(a, b []netipx.IPRange) bool { return (a == nil) == (b == nil) && slices.Equal(a, b) }),
		cmp.Comparer(equalEach[*ir.Rule]),
	}
}

// equalEach compares slices element by element with fastCmp.
func equalEach[T any](a, b []T) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if !cmp.Equal(a[i], b[i], fastCmp) {
			return false
		}
	}
	return true
}

// graphKey is one pointer of a pointer graph.
type graphKey struct {
	typ reflect.Type
	p   uintptr
}

// graphPairs pairs the pointers of an original value graph with those of
// its decoded copy, both ways.
type graphPairs struct {
	fwd, back map[graphKey]uintptr
	errs      []string
}

func newGraphPairs() *graphPairs {
	return &graphPairs{fwd: map[graphKey]uintptr{}, back: map[graphKey]uintptr{}}
}

// same walks x and y in parallel and records where they differ: a value
// (of the IR's types, addresses and plain kinds), a nil, a length, or the
// sharing of a pointer (one met twice in x must be met with the same one
// of y each time, and the other way round).
func (g *graphPairs) same(x, y reflect.Value, path string) {
	if len(g.errs) > 10 {
		return
	}
	fail := func(format string, args ...any) { g.errs = append(g.errs, path+": "+fmt.Sprintf(format, args...)) }
	if x.Type() != y.Type() {
		fail("types %s and %s", x.Type(), y.Type())
		return
	}
	switch x.Kind() {
	case reflect.Pointer:
		if x.IsNil() != y.IsNil() {
			fail("nil in one only")
			return
		}
		if x.IsNil() {
			return
		}
		if x.Type() == reflect.TypeFor[*ir.Translation]() {
			// Each Eval makes its own: not part of the ruleset's graph.
			g.same(x.Elem(), y.Elem(), path)
			return
		}
		kx, ky := graphKey{x.Type(), x.Pointer()}, graphKey{y.Type(), y.Pointer()}
		p, okF := g.fwd[kx]
		q, okB := g.back[ky]
		switch {
		case okF && p != ky.p:
			fail("a pointer shared in the original is two after decoding")
		case okB && q != kx.p:
			fail("two pointers of the original are one after decoding")
		case !okF && !okB:
			g.fwd[kx], g.back[ky] = ky.p, kx.p
			g.same(x.Elem(), y.Elem(), path)
		}
	case reflect.Interface:
		if x.IsNil() != y.IsNil() {
			fail("nil in one only")
		} else if !x.IsNil() {
			g.same(x.Elem(), y.Elem(), path)
		}
	case reflect.Slice:
		if x.IsNil() != y.IsNil() || x.Len() != y.Len() {
			fail("lengths %d and %d (nil %v, %v)", x.Len(), y.Len(), x.IsNil(), y.IsNil())
			return
		}
		for i := range x.Len() {
			g.same(x.Index(i), y.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Struct:
		if x.Type().PkgPath() != reflect.TypeFor[ir.Ruleset]().PkgPath() {
			if x.Interface() != y.Interface() { // netip.Addr, netipx.IPRange
				fail("%v and %v", x.Interface(), y.Interface())
			}
			return
		}
		for i := range x.NumField() {
			g.same(x.Field(i), y.Field(i), path+"."+x.Type().Field(i).Name)
		}
	case reflect.Bool:
		if x.Bool() != y.Bool() {
			fail("%v and %v", x.Bool(), y.Bool())
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if x.Int() != y.Int() {
			fail("%d and %d", x.Int(), y.Int())
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if x.Uint() != y.Uint() {
			fail("%d and %d", x.Uint(), y.Uint())
		}
	case reflect.String:
		if x.String() != y.String() {
			fail("%q and %q", x.String(), y.String())
		}
	default:
		fail("cannot compare a %s", x.Kind())
	}
}

// checkCodec encodes rs, decodes it and checks the decoded ruleset is the
// same: equal (go-cmp), with the same pointer graph (Jump.Chain,
// AddrMatch.Set, shared Merged rules), printed by nft and iptables and
// lowered to netlink identically, and deciding every packet s draws alike
// (same verdict, same deciding rule and chain, same trace and
// translations). It returns the size of the encoding.
func checkCodec(t *testing.T, name string, rs *ir.Ruleset, s *sampler, addrs []netip.Addr, packets int) int {
	t.Helper()
	enc, err := rs.MarshalBinary()
	if err != nil {
		t.Errorf("%s: MarshalBinary: %v", name, err)
		return 0
	}
	var dec ir.Ruleset
	if err := dec.UnmarshalBinary(enc); err != nil {
		t.Errorf("%s: UnmarshalBinary: %v", name, err)
		return len(enc)
	}
	g := newGraphPairs()
	g.same(reflect.ValueOf(rs), reflect.ValueOf(&dec), "rs")
	for _, e := range g.errs {
		t.Errorf("%s: %s", name, e)
	}
	if !cmp.Equal(rs, &dec, fastCmp) {
		if len(enc) < 1<<16 {
			t.Errorf("%s: decoded ruleset differs (-original +decoded):\n%s", name, cmp.Diff(rs, &dec, addrCmp))
		} else {
			t.Errorf("%s: decoded ruleset differs (go-cmp)", name)
		}
		return len(enc)
	}
	// Every Jump and verdict map points at a chain of rs.Chains, every
	// AddrMatch.Set at a set of rs.Sets, checked by hand as well.
	sets, chains := map[*ir.Set]bool{}, map[*ir.Chain]bool{}
	for _, st := range dec.Sets {
		sets[st] = true
	}
	for _, c := range dec.Chains {
		chains[c] = true
	}
	walkRules(&dec, func(r *ir.Rule) {
		for _, m := range r.Matches {
			if a, ok := m.(ir.AddrMatch); ok && a.Set != nil && !sets[a.Set] {
				t.Errorf("%s: a decoded AddrMatch.Set is not one of the decoded rs.Sets", name)
			}
		}
		switch v := r.Verdict.(type) {
		case ir.Jump:
			if !chains[v.Chain] {
				t.Errorf("%s: a decoded Jump.Chain is not one of the decoded rs.Chains", name)
			}
		case ir.VerdictMap:
			for _, e := range v.Elems {
				if !chains[e.Chain] {
					t.Errorf("%s: a decoded verdict map chain is not one of the decoded rs.Chains", name)
				}
			}
		}
	})

	var a, b bytes.Buffer
	errA, errB := nft.Print(&a, rs), nft.Print(&b, &dec)
	if fmt.Sprint(errA) != fmt.Sprint(errB) || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("%s: nft.Print of the decoded ruleset differs (errors %v, %v)", name, errA, errB)
	}
	la, errA := nft.Lower(rs)
	lb, errB := nft.Lower(&dec)
	if fmt.Sprint(errA) != fmt.Sprint(errB) || !reflect.DeepEqual(la, lb) {
		t.Errorf("%s: nft.Lower of the decoded ruleset differs (errors %v, %v)", name, errA, errB)
	}
	for _, f := range []ir.Family{ir.FamilyIPv4, ir.FamilyIPv6} {
		a.Reset()
		b.Reset()
		errA, errB := iptables.Export(&a, rs, iptables.Options{Family: f}), iptables.Export(&b, &dec, iptables.Options{Family: f})
		if fmt.Sprint(errA) != fmt.Sprint(errB) || !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: iptables.Export (family %d) of the decoded ruleset differs (errors %v, %v)", name, f, errA, errB)
		}
	}

	for range packets {
		p := s.packet(addrs)
		ra, rb := ir.Eval(rs, p), ir.Eval(&dec, p)
		if fmt.Sprint(ra.Err) != fmt.Sprint(rb.Err) {
			t.Errorf("%s, packet %q: Eval errors %v and %v", name, p, ra.Err, rb.Err)
		}
		ra.Err, rb.Err = nil, nil
		// The results must be equal, their rules and chains the decoded
		// twins of the original's.
		n := len(g.errs)
		g.same(reflect.ValueOf(ra), reflect.ValueOf(rb), "result")
		for _, e := range g.errs[n:] {
			t.Errorf("%s, packet %q: Eval differs: %s", name, p, e)
		}
	}
	return len(enc)
}

// walkRules calls f for every rule of rs, Merged ones included, once.
func walkRules(rs *ir.Ruleset, f func(*ir.Rule)) {
	seen := map[*ir.Rule]bool{}
	var walk func(r *ir.Rule)
	walk = func(r *ir.Rule) {
		if r == nil || seen[r] {
			return
		}
		seen[r] = true
		f(r)
		for _, o := range r.Merged {
			walk(o)
		}
	}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			walk(r)
		}
	}
}

// TestCodecExamples round-trips every example compiled for every node.
func TestCodecExamples(t *testing.T) {
	n := 0
	for i, path := range exampleSources(t) {
		p, diags := model.Load(path)
		if err := diags.Err(); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, node := range p.CompileNodes() {
			rs, diags := Compile(p, Options{Node: node})
			if err := diags.Err(); err != nil {
				t.Fatalf("%s, node %q: %v", path, node, err)
			}
			var addrs []netip.Addr
			if nd := p.Node(node); nd != nil {
				addrs = nd.Addresses
			}
			r := rand.New(rand.NewPCG(uint64(i), 11))
			checkCodec(t, fmt.Sprintf("%s node %q", path, node), rs, newSampler(r, p), addrs, 300)
			n++
		}
	}
	if n < 10 {
		t.Errorf("only %d example rulesets", n)
	}
}

// TestCodecRandomPolicies round-trips the random policies of the
// differential tests (genPolicy) and of the optimiser's (genMergeable),
// optimised and not, so every merge and verdict map shape is encoded.
func TestCodecRandomPolicies(t *testing.T) {
	seeds, packets := 100, 100
	if testing.Short() {
		seeds, packets = 20, 50
	}
	merged, maps := 0, 0
	for _, gen := range []struct {
		name string
		gen  func(*rand.Rand) string
		seq  uint64
	}{{"random", genPolicy, 42}, {"mergeable", genMergeable, 8}} {
		for seed := range seeds {
			r := rand.New(rand.NewPCG(uint64(seed), gen.seq))
			text := gen.gen(r)
			p, diags := model.LoadSources([]model.Source{{Name: "rand.toml", Data: []byte(text)}})
			if err := diags.Err(); err != nil {
				t.Fatalf("%s policy seed %d does not load (a generator bug): %v", gen.name, seed, err)
			}
			for _, node := range p.CompileNodes() {
				for _, noOpt := range []bool{false, true} {
					rs, diags := Compile(p, Options{Node: node, NoOptimize: noOpt})
					if err := diags.Err(); err != nil {
						t.Fatalf("%s policy seed %d, node %q: %v", gen.name, seed, node, err)
					}
					walkRules(rs, func(r *ir.Rule) {
						if len(r.Merged) > 0 {
							merged++
						}
						if _, ok := r.Verdict.(ir.VerdictMap); ok {
							maps++
						}
					})
					var addrs []netip.Addr
					if nd := p.Node(node); nd != nil {
						addrs = nd.Addresses
					}
					name := fmt.Sprintf("%s policy seed %d node %q (no optimise %v)", gen.name, seed, node, noOpt)
					checkCodec(t, name, rs, newSampler(r, p), addrs, packets)
				}
			}
		}
	}
	t.Logf("%d merged rules, %d verdict maps round-tripped", merged, maps)
	if merged == 0 || maps == 0 {
		t.Errorf("the policies had %d merged rules and %d verdict maps: the test proves little", merged, maps)
	}
}

// compileBench compiles the benchmark's policy at n addresses and n rules
// (the shape bench measures: two named sets of n addresses together, and
// the n rules merged into rules of up to 16,384 each, one per port).
func compileBench(n int) (*ir.Ruleset, *model.Policy, error) {
	dir, err := os.MkdirTemp("", "hostwall-codec")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	path, err := bench.Write(dir, bench.Spec{Addrs: n, Rules: n})
	if err != nil {
		return nil, nil, err
	}
	p, diags := model.Load(path)
	if err := diags.Err(); err != nil {
		return nil, nil, err
	}
	rs, diags := Compile(p, Options{})
	return rs, p, diags.Err()
}

// benchSize is the benchmark's largest N.
const benchSize = 100_000

// benchRuleset is the ruleset at benchSize, compiled once for the
// benchmarks.
var benchRuleset = sync.OnceValues(func() (*ir.Ruleset, error) {
	rs, _, err := compileBench(benchSize)
	return rs, err
})

// TestCodecBenchSize round-trips the benchmark's policy at N=100,000
// (10,000 with -short) and checks it has the shape the cache's numbers
// assume.
func TestCodecBenchSize(t *testing.T) {
	n := benchSize
	if testing.Short() {
		n = 10_000
	}
	rs, p, err := compileBench(n)
	if err != nil {
		t.Fatal(err)
	}
	elems, merged := 0, 0
	for _, s := range rs.Sets {
		elems += len(s.Elems)
	}
	walkRules(rs, func(r *ir.Rule) { merged += len(r.Merged) })
	if elems < n || merged < n {
		t.Fatalf("the benchmark policy at N=%d has %d set elements and %d merged rules: not the shape measured", n, elems, merged)
	}
	start := time.Now()
	size := checkCodec(t, fmt.Sprintf("bench N=%d", n), rs, newSampler(rand.New(rand.NewPCG(1, 2)), p), nil, 20)
	t.Logf("N=%d: %d set elements, %d merged rules; encoding %d bytes; checks took %v", n, elems, merged, size, time.Since(start).Round(time.Millisecond))
}

// BenchmarkRulesetCodec measures encoding and decoding of the benchmark's
// ruleset at N=100,000, what the compiled-policy cache of hostwall apply
// does on a miss and on a hit.
func BenchmarkRulesetCodec(b *testing.B) {
	rs, err := benchRuleset()
	if err != nil {
		b.Fatal(err)
	}
	enc, err := rs.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("N=%d: %d bytes", benchSize, len(enc))
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rs.MarshalBinary(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var dec ir.Ruleset
			if err := dec.UnmarshalBinary(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
