package model

import (
	"bytes"
	"strconv"
	"strings"
)

// posIndex records where every key and value of one TOML file is. Its
// paths form a tree: node 0 is the document, and every other node is a key
// of its parent table or an entry of its parent array. A table's keys are
// a chain of siblings (most tables have a few, laid out next to each other,
// so finding one reads little memory), switched to a map when the table
// has many; an array's entries are a list by index.
type posIndex struct {
	file string
	// nodes holds every path seen; nodes[0] is the document.
	nodes []posNode
	// nameIDs numbers the key names of the file.
	nameIDs map[string]int32
	// bigKids finds the keys of tables with more than maxKeyChain keys.
	bigKids map[bigKey]int32
	// elems lists the entries of arrays, by posNode.elems.
	elems [][]int32
}

// maxKeyChain is how many keys a table's sibling chain holds before its
// keys move to posIndex.bigKids.
const maxKeyChain = 16

// bigKey is key name (by ID) of the table at parent.
type bigKey struct {
	parent, name int32
}

// posNode is one path: its parent, its place among its parent's keys and
// the positions of its (last) key and of its value; for a table made by a
// [table] or [[array]] header, the value is the position of the header's
// "[". A line of 0 means none.
type posNode struct {
	parent int32
	// name is the ID of the key name, for a key of a table.
	name int32
	// firstKey and nextKey chain the keys of a table; keys is how many
	// there are, or -1 when they moved to bigKids.
	firstKey, nextKey, keys int32
	// elems is 1 + the index of the node's entry list in posIndex.elems,
	// for an array; 0 for none.
	elems           int32
	keyLine, keyCol int32
	valLine, valCol int32
}

// pathRef is a path of the index: its node or, when the file has no such
// path (the position scan saw less than the decoder), the node of its
// nearest ancestor in the index, with missing set.
type pathRef struct {
	node    int32
	missing bool
}

// rootRef is the document itself.
var rootRef = pathRef{}

// key returns the path of key name under r.
func (x *posIndex) key(r pathRef, name string) pathRef {
	if r.missing {
		return r
	}
	if id, ok := x.nameIDs[name]; ok {
		if n := x.findKey(r.node, id); n > 0 {
			return pathRef{node: n}
		}
	}
	return pathRef{node: r.node, missing: true}
}

// findKey returns the node of key name under parent, or 0.
func (x *posIndex) findKey(parent, name int32) int32 {
	if x.nodes[parent].keys < 0 {
		return x.bigKids[bigKey{parent, name}]
	}
	for n := x.nodes[parent].firstKey; n > 0; n = x.nodes[n].nextKey {
		if x.nodes[n].name == name {
			return n
		}
	}
	return 0
}

// index returns the path of entry i of the array at r.
func (x *posIndex) index(r pathRef, i int) pathRef {
	if r.missing {
		return r
	}
	if e := x.nodes[r.node].elems; e > 0 && i >= 0 && i < len(x.elems[e-1]) && x.elems[e-1][i] > 0 {
		return pathRef{node: x.elems[e-1][i]}
	}
	return pathRef{node: r.node, missing: true}
}

// valPos returns the position of the value at r, or of its nearest
// ancestor that has one, or the file itself.
func (x *posIndex) valPos(r pathRef) Pos {
	for n := r.node; ; {
		nd := &x.nodes[n]
		if nd.valLine > 0 {
			return Pos{File: x.file, Line: int(nd.valLine), Col: int(nd.valCol)}
		}
		if nd.keyLine > 0 {
			return Pos{File: x.file, Line: int(nd.keyLine), Col: int(nd.keyCol)}
		}
		if n == 0 {
			return Pos{File: x.file}
		}
		n = nd.parent
	}
}

// keyPos returns the position of the key of r, falling back to valPos.
func (x *posIndex) keyPos(r pathRef) Pos {
	if nd := &x.nodes[r.node]; !r.missing && nd.keyLine > 0 {
		return Pos{File: x.file, Line: int(nd.keyLine), Col: int(nd.keyCol)}
	}
	return x.valPos(r)
}

// keyChild returns the node of key name under parent, adding it when it
// is new.
func (x *posIndex) keyChild(parent int32, name string) int32 {
	id, ok := x.nameIDs[name]
	if !ok {
		id = int32(len(x.nameIDs))
		x.nameIDs[name] = id
	} else if n := x.findKey(parent, id); n > 0 {
		return n
	}
	n := int32(len(x.nodes))
	x.nodes = append(x.nodes, posNode{parent: parent, name: id})
	p := &x.nodes[parent]
	switch {
	case p.keys < 0:
		x.bigKids[bigKey{parent, id}] = n
		return n
	case p.keys == maxKeyChain:
		if x.bigKids == nil {
			x.bigKids = map[bigKey]int32{}
		}
		for k := p.firstKey; k > 0; k = x.nodes[k].nextKey {
			x.bigKids[bigKey{parent, x.nodes[k].name}] = k
		}
		x.bigKids[bigKey{parent, id}] = n
		p.keys = -1
		return n
	}
	x.nodes[n].nextKey = p.firstKey
	p.firstKey = n
	p.keys++
	return n
}

// elemChild returns the node of entry i of the array at parent, adding it
// when it is new.
func (x *posIndex) elemChild(parent int32, i int) int32 {
	e := x.nodes[parent].elems
	if e == 0 {
		x.elems = append(x.elems, nil)
		e = int32(len(x.elems))
		x.nodes[parent].elems = e
	}
	list := x.elems[e-1]
	if i < len(list) && list[i] > 0 {
		return list[i]
	}
	for len(list) <= i {
		list = append(list, 0) // 0: no such entry (yet)
	}
	n := int32(len(x.nodes))
	x.nodes = append(x.nodes, posNode{parent: parent, name: -1})
	list[i] = n
	x.elems[e-1] = list
	return n
}

// joinPath appends key to path, quoting keys that are not bare. Paths
// written out join keys with "." and array indexes with "[i]", e.g.
// `policy[1].in[0].service`, `groups.cluster[2]`, `settings.table`.
func joinPath(path, key string) string {
	if !isBareKey(key) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends an array index to path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBareKeyByte(s[i]) {
			return false
		}
	}
	return true
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// posScanner walks a syntactically valid TOML document and records the
// positions of keys and values. It never fails: on anything unexpected it
// skips a byte and carries on, so a malformed input only yields fewer
// positions.
type posScanner struct {
	src       []byte
	i         int
	line      int
	lineStart int
	idx       *posIndex
	// segs is keyPath's buffer, reused from key to key.
	segs []keySeg
	// aot counts the entries of each array of tables, by node.
	aot map[int32]int
	// names interns key names: a large policy repeats a few.
	names map[string]string
}

// scanPositions indexes the positions of every key and value in src.
func scanPositions(file string, src []byte) *posIndex {
	// About one key per line: sizing the maps up front spares the
	// rehashing that otherwise takes a tenth of a large load.
	n := bytes.Count(src, []byte{'\n'}) + 1
	idx := &posIndex{file: file, nodes: make([]posNode, 1, n+1), nameIDs: map[string]int32{}}
	s := &posScanner{
		src:   src,
		line:  1,
		idx:   idx,
		aot:   map[int32]int{},
		names: map[string]string{},
	}
	s.document()
	return s.idx
}

func (s *posScanner) pos() Pos {
	return Pos{File: s.idx.file, Line: s.line, Col: s.i - s.lineStart + 1}
}

func (s *posScanner) eof() bool { return s.i >= len(s.src) }

func (s *posScanner) peek(off int) byte {
	if s.i+off < len(s.src) {
		return s.src[s.i+off]
	}
	return 0
}

// advance moves one byte forward, counting lines.
func (s *posScanner) advance() {
	if s.eof() {
		return
	}
	if s.src[s.i] == '\n' {
		s.line++
		s.lineStart = s.i + 1
	}
	s.i++
}

// skipSpace skips blanks and, with newlines, also newlines and comments.
func (s *posScanner) skipSpace(newlines bool) {
	for !s.eof() {
		switch c := s.src[s.i]; {
		case c == ' ' || c == '\t':
			s.i++
		case c == '#':
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		case newlines && (c == '\n' || c == '\r'):
			s.advance()
		default:
			return
		}
	}
}

func (s *posScanner) skipLine() {
	for !s.eof() && s.src[s.i] != '\n' {
		s.advance()
	}
}

// setVal records the position of the value of node n, unless it has one.
func (s *posScanner) setVal(n int32, p Pos) {
	if nd := &s.idx.nodes[n]; nd.valLine == 0 {
		nd.valLine, nd.valCol = int32(p.Line), int32(p.Col)
	}
}

// setKey records the position of the key of node n, unless it has one.
func (s *posScanner) setKey(n int32, p Pos) {
	if nd := &s.idx.nodes[n]; nd.keyLine == 0 {
		nd.keyLine, nd.keyCol = int32(p.Line), int32(p.Col)
	}
}

// keyNode returns the node of key name under parent.
func (s *posScanner) keyNode(parent int32, name string) int32 {
	return s.idx.keyChild(parent, name)
}

// indexNode returns the node of entry i of the array at parent.
func (s *posScanner) indexNode(parent int32, i int) int32 {
	return s.idx.elemChild(parent, i)
}

func (s *posScanner) document() {
	var cur int32 // the document
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		start := s.i
		switch {
		case s.src[s.i] == '[' && s.peek(1) == '[':
			hpos := s.pos()
			s.i += 2
			segs := s.keyPath()
			if len(segs) == 0 {
				s.skipLine()
				break
			}
			prefix := s.resolve(segs[:len(segs)-1])
			last := segs[len(segs)-1]
			arr := s.keyNode(prefix, last.name)
			s.setKey(arr, last.pos)
			s.setVal(arr, hpos)
			n := s.aot[arr]
			s.aot[arr] = n + 1
			cur = s.indexNode(arr, n)
			s.setKey(cur, hpos)
			s.setVal(cur, hpos)
			s.skipLine()
		case s.src[s.i] == '[':
			hpos := s.pos()
			s.i++
			segs := s.keyPath()
			if len(segs) == 0 {
				s.skipLine()
				break
			}
			cur = s.resolve(segs)
			s.setKey(cur, segs[len(segs)-1].pos)
			s.setVal(cur, hpos)
			s.skipLine()
		default:
			s.keyValue(cur)
			s.skipSpace(false)
			if !s.eof() && s.src[s.i] != '\n' && s.src[s.i] != '\r' {
				s.skipLine()
			}
		}
		if s.i == start {
			s.advance()
		}
	}
}

// resolve turns header keys into a path, entering the last entry of every
// array of tables on the way ([[policy.in]] after the second [[policy]] is
// under policy[1]).
func (s *posScanner) resolve(segs []keySeg) int32 {
	var p int32 // the document
	for _, k := range segs {
		p = s.keyNode(p, k.name)
		if n, ok := s.aot[p]; ok {
			p = s.indexNode(p, n-1)
		}
	}
	return p
}

type keySeg struct {
	name string
	pos  Pos
}

// keyPath reads a dotted key (bare, "basic" or 'literal' parts). The
// result is valid until the next call.
func (s *posScanner) keyPath() []keySeg {
	s.segs = s.segs[:0]
	for {
		s.skipSpace(false)
		if s.eof() {
			return s.segs
		}
		p := s.pos()
		var name string
		switch c := s.src[s.i]; {
		case c == '"':
			name = s.basicString(true)
		case c == '\'':
			name = s.literalString(true)
		case isBareKeyByte(c):
			st := s.i
			for !s.eof() && isBareKeyByte(s.src[s.i]) {
				s.i++
			}
			name = s.intern(s.src[st:s.i])
		default:
			return s.segs
		}
		s.segs = append(s.segs, keySeg{name, p})
		s.skipSpace(false)
		if s.eof() || s.src[s.i] != '.' {
			return s.segs
		}
		s.i++
	}
}

// intern returns b as a string, the same string for the same bytes.
func (s *posScanner) intern(b []byte) string {
	if name, ok := s.names[string(b)]; ok {
		return name
	}
	name := string(b)
	s.names[name] = name
	return name
}

// keyValue reads `key = value` under the table node prefix.
func (s *posScanner) keyValue(prefix int32) {
	segs := s.keyPath()
	if len(segs) == 0 {
		return
	}
	path := prefix
	for _, k := range segs {
		path = s.keyNode(path, k.name)
		s.setKey(path, k.pos)
	}
	s.skipSpace(false)
	if s.eof() || s.src[s.i] != '=' {
		return
	}
	s.i++
	s.skipSpace(false)
	s.value(path)
}

// value reads one value and records its position (and those inside it).
func (s *posScanner) value(path int32) {
	if s.eof() {
		return
	}
	s.setVal(path, s.pos())
	switch c := s.src[s.i]; c {
	case '"':
		s.basicString(false)
	case '\'':
		s.literalString(false)
	case '[':
		s.i++
		for n := 0; ; n++ {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.src[s.i] == ']' {
				s.i++
				return
			}
			start := s.i
			s.value(s.indexNode(path, n))
			s.skipSpace(true)
			if !s.eof() && s.src[s.i] == ',' {
				s.i++
			} else if s.i == start {
				s.advance()
			}
		}
	case '{':
		s.i++
		for {
			s.skipSpace(true)
			if s.eof() {
				return
			}
			if s.src[s.i] == '}' {
				s.i++
				return
			}
			start := s.i
			s.keyValue(path)
			s.skipSpace(true)
			if !s.eof() && s.src[s.i] == ',' {
				s.i++
			} else if s.i == start {
				s.advance()
			}
		}
	default:
		// Numbers, booleans, dates: up to the next delimiter.
		for !s.eof() {
			switch s.src[s.i] {
			case ',', ']', '}', '#', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

// basicString reads a "basic" or """multi-line""" string and, with decode,
// returns its value (escapes decoded where Go and TOML agree, raw
// otherwise); values are only skipped.
func (s *posScanner) basicString(decode bool) string {
	if s.peek(1) == '"' && s.peek(2) == '"' {
		return s.multiLine('"', true, decode)
	}
	st := s.i
	s.i++
	for !s.eof() && s.src[s.i] != '"' && s.src[s.i] != '\n' {
		if s.src[s.i] == '\\' {
			s.i++
		}
		s.i++
	}
	if s.i > len(s.src) {
		s.i = len(s.src)
	}
	end := s.i
	if !s.eof() && s.src[s.i] == '"' {
		s.i++
		end = s.i
	}
	if !decode {
		return ""
	}
	raw := string(s.src[st:end])
	if v, err := strconv.Unquote(raw); err == nil {
		return v
	}
	return strings.Trim(raw, `"`)
}

// multiLine reads a multi-line string opened by three q (the scanner is at
// the first of them); escapes (basic strings) skips the character after a
// backslash. With decode it returns the content, raw.
func (s *posScanner) multiLine(q byte, escapes, decode bool) string {
	s.i += 3
	st := s.i
	for !s.eof() {
		c := s.src[s.i]
		if escapes && c == '\\' {
			s.advance()
			s.advance()
			continue
		}
		if c == q && s.peek(1) == q && s.peek(2) == q {
			// Up to two quotes may end the content: """"" is legal.
			for s.peek(3) == q {
				s.i++
			}
			end := s.i
			s.i += 3
			if !decode {
				return ""
			}
			return string(s.src[st:end])
		}
		s.advance()
	}
	if !decode {
		return ""
	}
	return string(s.src[st:])
}

// literalString reads a 'literal' or a triple-quoted multi-line string and, with
// decode, returns its value.
func (s *posScanner) literalString(decode bool) string {
	if s.peek(1) == '\'' && s.peek(2) == '\'' {
		return s.multiLine('\'', false, decode)
	}
	s.i++
	st := s.i
	for !s.eof() && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
		s.i++
	}
	end := s.i
	if !s.eof() && s.src[s.i] == '\'' {
		s.i++
	}
	if !decode {
		return ""
	}
	return string(s.src[st:end])
}
