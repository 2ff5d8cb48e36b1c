package model

import (
	"bytes"
	"strconv"
	"strings"
)

// posIndex records where every key and value of one TOML file is, by path.
// A path joins keys with "." and array indexes with "[i]", e.g.
// `policy[1].in[0].service`, `groups.cluster[2]`, `settings.table`.
// Keys that are not bare TOML keys are quoted (see joinPath).
type posIndex struct {
	file string
	// keys maps a path to the position of its (last) key.
	keys map[string]Pos
	// vals maps a path to the position of its value; for a table made by a
	// [table] or [[array]] header, the position of the header's "[".
	vals map[string]Pos
}

// joinPath appends key to path, quoting keys that are not bare.
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

// valPos returns the position of the value at path, or of its nearest
// ancestor that has one, or the file itself.
func (x *posIndex) valPos(path string) Pos {
	for {
		if p, ok := x.vals[path]; ok {
			return p
		}
		if p, ok := x.keys[path]; ok {
			return p
		}
		parent, ok := parentPath(path)
		if !ok {
			return Pos{File: x.file}
		}
		path = parent
	}
}

// keyPos returns the position of the key of path, falling back to valPos.
func (x *posIndex) keyPos(path string) Pos {
	if p, ok := x.keys[path]; ok {
		return p
	}
	return x.valPos(path)
}

// parentPath strips the last key or index of path.
func parentPath(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i], true
		}
	}
	// The last segment may be quoted and contain dots: scan from the start.
	last := -1
	inQuote := false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case c == '.' && !inQuote:
			last = i
		}
	}
	if last < 0 {
		return "", true
	}
	return path[:last], true
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
	// aot counts the entries of each array of tables, by resolved path.
	aot map[string]int
}

// scanPositions indexes the positions of every key and value in src.
func scanPositions(file string, src []byte) *posIndex {
	// About one key per line: sizing the maps up front spares the
	// rehashing that otherwise takes a tenth of a large load.
	n := bytes.Count(src, []byte{'\n'}) + 1
	s := &posScanner{
		src:  src,
		line: 1,
		idx:  &posIndex{file: file, keys: make(map[string]Pos, n), vals: make(map[string]Pos, n)},
		aot:  map[string]int{},
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

func (s *posScanner) setVal(path string, p Pos) {
	if _, ok := s.idx.vals[path]; !ok {
		s.idx.vals[path] = p
	}
}

func (s *posScanner) setKey(path string, p Pos) {
	if _, ok := s.idx.keys[path]; !ok {
		s.idx.keys[path] = p
	}
}

func (s *posScanner) document() {
	cur := ""
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
			arr := joinPath(prefix, last.name)
			s.setKey(arr, last.pos)
			s.setVal(arr, hpos)
			n := s.aot[arr]
			s.aot[arr] = n + 1
			cur = indexPath(arr, n)
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
func (s *posScanner) resolve(segs []keySeg) string {
	p := ""
	for _, k := range segs {
		p = joinPath(p, k.name)
		if n, ok := s.aot[p]; ok {
			p = indexPath(p, n-1)
		}
	}
	return p
}

type keySeg struct {
	name string
	pos  Pos
}

// keyPath reads a dotted key (bare, "basic" or 'literal' parts).
func (s *posScanner) keyPath() []keySeg {
	var segs []keySeg
	for {
		s.skipSpace(false)
		if s.eof() {
			return segs
		}
		p := s.pos()
		var name string
		switch c := s.src[s.i]; {
		case c == '"':
			name = s.basicString()
		case c == '\'':
			name = s.literalString()
		case isBareKeyByte(c):
			st := s.i
			for !s.eof() && isBareKeyByte(s.src[s.i]) {
				s.i++
			}
			name = string(s.src[st:s.i])
		default:
			return segs
		}
		segs = append(segs, keySeg{name, p})
		s.skipSpace(false)
		if s.eof() || s.src[s.i] != '.' {
			return segs
		}
		s.i++
	}
}

// keyValue reads `key = value` under the table path prefix.
func (s *posScanner) keyValue(prefix string) {
	segs := s.keyPath()
	if len(segs) == 0 {
		return
	}
	path := prefix
	for _, k := range segs {
		path = joinPath(path, k.name)
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
func (s *posScanner) value(path string) {
	if s.eof() {
		return
	}
	s.setVal(path, s.pos())
	switch c := s.src[s.i]; c {
	case '"':
		s.basicString()
	case '\'':
		s.literalString()
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
			s.value(indexPath(path, n))
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

// basicString reads a "basic" or """multi-line""" string and returns its
// value (escapes decoded where Go and TOML agree, raw otherwise).
func (s *posScanner) basicString() string {
	if s.peek(1) == '"' && s.peek(2) == '"' {
		s.i += 3
		st := s.i
		for !s.eof() {
			switch s.src[s.i] {
			case '\\':
				s.advance()
				s.advance()
				continue
			case '"':
				if s.peek(1) == '"' && s.peek(2) == '"' {
					// Up to two quotes may end the content: """"" is legal.
					for s.peek(3) == '"' {
						s.i++
					}
					raw := string(s.src[st:s.i])
					s.i += 3
					return raw
				}
			}
			s.advance()
		}
		return string(s.src[st:])
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
	raw := string(s.src[st:end])
	if v, err := strconv.Unquote(raw); err == nil {
		return v
	}
	return strings.Trim(raw, `"`)
}

// literalString reads a 'literal' or ”'multi-line”' string.
func (s *posScanner) literalString() string {
	if s.peek(1) == '\'' && s.peek(2) == '\'' {
		s.i += 3
		st := s.i
		for !s.eof() {
			if s.src[s.i] == '\'' && s.peek(1) == '\'' && s.peek(2) == '\'' {
				for s.peek(3) == '\'' {
					s.i++
				}
				raw := string(s.src[st:s.i])
				s.i += 3
				return raw
			}
			s.advance()
		}
		return string(s.src[st:])
	}
	s.i++
	st := s.i
	for !s.eof() && s.src[s.i] != '\'' && s.src[s.i] != '\n' {
		s.i++
	}
	v := string(s.src[st:s.i])
	if !s.eof() && s.src[s.i] == '\'' {
		s.i++
	}
	return v
}
