package model

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// typeName names the TOML type of a decoded value for error messages.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64, int, uint64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	}
	return fmt.Sprintf("a %T", v)
}

// tbl is one TOML table being decoded: where it is in the file, its value
// and how it is called in messages (e.g. "[[policy.in]]").
type tbl struct {
	l   *loader
	f   *fileCtx
	loc tblLoc
	// ref is the table's path in the file's position index.
	ref  pathRef
	m    map[string]any
	kind string
	// kp caches the value positions keys() found, for valPos.
	kp KeyPos
}

// tblLoc is where a table is: key (and, when index >= 0, that entry of the
// array at key) of the table up; the top level has no up. It spells the
// table's path only when a message or a name needs it.
type tblLoc struct {
	up    *tbl
	key   string
	index int
}

// path spells the table's path, e.g. `policy[1].in[0]`.
func (t *tbl) path() string {
	if t.loc.up == nil {
		return ""
	}
	p := joinPath(t.loc.up.path(), t.loc.key)
	if t.loc.index >= 0 {
		p = indexPath(p, t.loc.index)
	}
	return p
}

// top returns the top-level table of f.
func (l *loader) top(f *fileCtx) *tbl {
	return &tbl{l: l, f: f, ref: rootRef, m: f.root, kind: "the top level"}
}

// child returns the table m at key k of t (entry i of the array at k when
// i >= 0).
func (t *tbl) child(k string, i int, kind string, m map[string]any) *tbl {
	ref := t.f.idx.key(t.ref, k)
	if i >= 0 {
		ref = t.f.idx.index(ref, i)
	}
	return &tbl{l: t.l, f: t.f, loc: tblLoc{up: t, key: k, index: i}, ref: ref, m: m, kind: kind}
}

// sub returns the path of key k.
func (t *tbl) sub(k string) string { return joinPath(t.path(), k) }

// header is the position of the table itself (its [header] or "{").
func (t *tbl) header() Pos {
	return t.f.idx.valPos(t.ref)
}

// valPos is the position of the value of key k.
func (t *tbl) valPos(k string) Pos {
	if p, ok := t.kp[k]; ok {
		return p
	}
	return t.f.idx.valPos(t.f.idx.key(t.ref, k))
}

// itemPos is the position of entry i of the array at key k.
func (t *tbl) itemPos(k string, i int) Pos {
	return t.f.idx.valPos(t.f.idx.index(t.f.idx.key(t.ref, k), i))
}

// keyPos is the position of key k.
func (t *tbl) keyPos(k string) Pos { return t.f.idx.keyPos(t.f.idx.key(t.ref, k)) }

// keyOrder returns the keys of m in the order they appear in the file.
func (t *tbl) keyOrder() []string {
	type keyAt struct {
		k string
		p Pos
	}
	keys := make([]keyAt, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, keyAt{k, t.keyPos(k)})
	}
	slices.SortFunc(keys, func(a, b keyAt) int {
		if c := a.p.Compare(b.p); c != 0 {
			return c
		}
		return strings.Compare(a.k, b.k)
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.k
	}
	return out
}

// keys returns the value positions of every key.
func (t *tbl) keys() KeyPos {
	kp := make(KeyPos, len(t.m))
	for k := range t.m {
		kp[k] = t.f.idx.valPos(t.f.idx.key(t.ref, k))
	}
	t.kp = kp
	return kp
}

// checkKeys reports every key not in allowed.
func (t *tbl) checkKeys(allowed ...string) {
	for k := range t.m {
		if !slices.Contains(allowed, k) {
			s := slices.Clone(allowed)
			slices.Sort(s)
			t.l.errf(t.keyPos(k), "unknown key %q in %s; %sallowed: %s", k, t.kind, keyHint(t.kind, k), strings.Join(s, ", "))
		}
	}
}

// keyHint explains the mix-ups of zone keys between rule kinds.
func keyHint(kind, key string) string {
	switch {
	case kind == "[[policy.forward]]" && key == "zone":
		return "a forward rule names from_zone (input interface) and to_zone (output interface); "
	case (kind == "[[policy.in]]" || kind == "[[policy.out]]") && (key == "from_zone" || key == "to_zone"):
		return "from_zone and to_zone are for forward rules; an in rule's zone is its input interface, an out rule's its output interface; "
	}
	return ""
}

// require reports a missing key at the table's header.
func (t *tbl) require(k, example string) bool {
	if _, ok := t.m[k]; ok {
		return true
	}
	t.l.errf(t.header(), "%s needs %q (e.g. %s)", t.kind, k, example)
	return false
}

func (t *tbl) typeErr(k string, want string, v any) {
	t.l.errf(t.valPos(k), "%q must be %s, not %s", k, want, typeName(v))
}

// str returns the string value of k; ok is false when k is absent or not a
// string (then an error was reported).
func (t *tbl) str(k string) (string, bool) {
	v, ok := t.m[k]
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		t.typeErr(k, "a string", v)
	}
	return s, ok
}

// integer returns the integer value of k.
func (t *tbl) integer(k string) (int64, bool) {
	v, ok := t.m[k]
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		t.typeErr(k, "an integer", v)
	}
	return n, ok
}

// boolean returns the boolean value of k, or def when it is absent or wrong.
func (t *tbl) boolean(k string, def bool) bool {
	v, ok := t.m[k]
	if !ok {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		t.typeErr(k, "true or false", v)
		return def
	}
	return b
}

// item is one string of a "string or list of strings" value.
type item struct {
	s   string
	pos Pos
}

// strList reads a string or a list of strings. Wrong items are reported and
// left out; an empty list is reported when allowEmpty is false.
func (t *tbl) strList(k string, single, allowEmpty bool) ([]item, bool) {
	v, ok := t.m[k]
	if !ok {
		return nil, false
	}
	want := "a list of strings"
	if single {
		want = "a string or a list of strings"
	}
	switch v := v.(type) {
	case string:
		if single {
			return []item{{v, t.valPos(k)}}, true
		}
	case []any:
		if len(v) == 0 && !allowEmpty {
			t.l.errf(t.valPos(k), "%q is an empty list; list at least one item (leaving the key out means no restriction, not nothing)", k)
			return nil, false
		}
		var out []item
		good := true
		for i, x := range v {
			p := t.itemPos(k, i)
			s, ok := x.(string)
			if !ok {
				t.l.errf(p, "%q items must be strings, not %s", k, typeName(x))
				good = false
				continue
			}
			out = append(out, item{s, p})
		}
		return out, good
	}
	t.typeErr(k, want, v)
	return nil, false
}

// subTable returns the table value of k.
func (t *tbl) subTable(k, kind string) (*tbl, bool) {
	v, ok := t.m[k]
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.typeErr(k, "a table", v)
		return nil, false
	}
	return t.child(k, -1, kind, m), true
}

// tableList returns the entries of an array of tables at k.
func (t *tbl) tableList(k, kind string) []*tbl {
	v, ok := t.m[k]
	if !ok {
		return nil
	}
	var ms []map[string]any
	switch v := v.(type) {
	case []map[string]any:
		ms = v
	case []any:
		for i, x := range v {
			m, ok := x.(map[string]any)
			if !ok {
				t.l.errf(t.itemPos(k, i), "%s entries must be tables, not %s", kind, typeName(x))
				continue
			}
			for len(ms) < i {
				ms = append(ms, nil)
			}
			ms = append(ms, m)
		}
	default:
		t.typeErr(k, "an array of tables ("+kind+")", v)
		return nil
	}
	var out []*tbl
	for i, m := range ms {
		if m == nil {
			continue
		}
		out = append(out, t.child(k, i, kind, m))
	}
	return out
}
