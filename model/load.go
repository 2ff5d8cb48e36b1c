package model

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Source is one policy file's name and content.
type Source struct {
	Name string
	Data []byte
}

// Load reads policy files and directories (a directory contributes its
// *.toml files in lexical order), merges them and validates; all problems
// at once, sorted. When the Diags have errors the Policy may be nil or
// partial.
func Load(paths ...string) (*Policy, Diags) {
	srcs, d := ReadSources(paths...)
	p, ld := LoadSources(srcs)
	d = append(d, ld...)
	d.Sort()
	return p, d
}

// ReadSources reads the policy files Load would read, in its order: each
// file named, and the *.toml files of each directory named in lexical
// order. It reports what it could not read (Load reports the same); the
// `file =` group lists are read later, by LoadSources.
func ReadSources(paths ...string) ([]Source, Diags) {
	var srcs []Source
	var d Diags
	total := 0
	// seen are the files read so far: a file named twice (directly and
	// through its directory, or twice on the command line) would only
	// report every name it defines as a duplicate of itself.
	type seenFile struct {
		path string
		st   os.FileInfo
	}
	var seen []seenFile
	readSource := func(path string, d *Diags) []Source {
		if total > maxTotalSize {
			return nil // reported once, at the file that crossed the limit
		}
		if st, err := os.Stat(path); err == nil {
			for _, f := range seen {
				if os.SameFile(f.st, st) {
					d.Errorf(Pos{File: path}, "policy file named twice: it is the same file as %s, already read; name each file (or its directory) once", f.path)
					return nil
				}
			}
			seen = append(seen, seenFile{path, st})
		}
		out := readSource(path, d)
		for _, s := range out {
			total += len(s.Data)
			if total > maxTotalSize {
				d.Errorf(Pos{File: path}, "the policy's files together are larger than the limit of %d bytes (256 MiB); hostwall stopped reading here", maxTotalSize)
				return nil
			}
		}
		return out
	}
	for _, path := range paths {
		st, err := os.Stat(path)
		if err != nil {
			d.Errorf(Pos{File: path}, "cannot read policy: %v", unwrapPathErr(err))
			continue
		}
		if !st.IsDir() {
			srcs = append(srcs, readSource(path, &d)...)
			continue
		}
		ents, err := os.ReadDir(path)
		if err != nil {
			d.Errorf(Pos{File: path}, "cannot read policy directory: %v", unwrapPathErr(err))
			continue
		}
		n := 0
		for _, e := range ents { // os.ReadDir sorts by name
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".toml") {
				continue
			}
			n++
			srcs = append(srcs, readSource(filepath.Join(path, e.Name()), &d)...)
		}
		if n == 0 {
			d.Errorf(Pos{File: path}, "policy directory has no *.toml files; put the policy in files ending in .toml")
		}
	}
	return srcs, d
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func readSource(path string, d *Diags) []Source {
	data, err := readLimited(path)
	if err != nil {
		d.Errorf(Pos{File: path}, "cannot read policy file: %v", err)
		return nil
	}
	return []Source{{Name: path, Data: data}}
}

// Limits that bound the memory one load can take, whatever the input.
const (
	// maxFileSize bounds every file hostwall reads (policies and group lists).
	maxFileSize = 64 << 20
	// maxTotalSize bounds the policy files of one load together, and
	// separately the group files of one load together.
	maxTotalSize = 256 << 20
	// maxGroupFileEntries bounds the addresses read from group files in
	// one load (ten times the 100,000-entry sets hostwall is tested with).
	maxGroupFileEntries = 1 << 20
	// maxFileErrors is how many errors one group file reports before
	// hostwall stops reading it.
	maxFileErrors = 50
)

// ReadListFile reads a `file =` group list as a load does: a regular file
// of at most 64 MiB (a FIFO or a device is refused, not read).
func ReadListFile(path string) ([]byte, error) { return readLimited(path) }

// readLimited reads a file of at most maxFileSize bytes.
func readLimited(path string) ([]byte, error) {
	// Stat before open: opening a FIFO or device could block forever.
	st, err := os.Stat(path)
	if err != nil {
		return nil, unwrapPathErr(err)
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file; name a file")
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("file is larger than the limit of %d bytes (64 MiB); split it into smaller files", maxFileSize)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, unwrapPathErr(err)
	}
	defer f.Close()
	// Read into a buffer of the size stat saw (one more byte shows a file
	// that grew): io.ReadAll alone would grow its buffer step by step.
	data := make([]byte, st.Size()+1)
	n, err := io.ReadFull(f, data)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		data = data[:n]
	case err != nil:
		return nil, err
	default: // the file grew since stat: read on, within the limit
		rest, err := io.ReadAll(io.LimitReader(f, maxFileSize+1-int64(n)))
		if err != nil {
			return nil, err
		}
		data = append(data, rest...)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("file is larger than the limit of %d bytes (64 MiB); split it into smaller files", maxFileSize)
	}
	return data, nil
}

// fileCtx is one parsed policy file.
type fileCtx struct {
	name string
	dir  string
	root map[string]any
	idx  *posIndex
}

// loader holds the state of one LoadSources.
type loader struct {
	d     Diags
	p     *Policy
	files []*fileCtx
	// first definitions, for duplicate errors
	first map[string]Pos
	// nodeAddrPos lists every node address, for the one-node-per-address
	// check.
	nodeAddrPos []nodeAddr
	// seq numbers rules across files.
	seq int
	// groupBytes and groupEntries count what group files brought in,
	// against maxTotalSize and maxGroupFileEntries.
	groupBytes, groupEntries int
}

func (l *loader) errf(p Pos, format string, args ...any) {
	l.d.Errorf(p, format, args...)
}

// define records the definition of a name of a kind ("zone", "group", ...)
// at p; it reports a duplicate and returns false when the name was defined
// before.
func (l *loader) define(kind, name string, p Pos) bool {
	k := kind + "\x00" + name
	if first, ok := l.first[k]; ok {
		l.errf(p, "duplicate %s %q (first defined at %s); names must be unique across all files", kind, name, first)
		return false
	}
	l.first[k] = p
	return true
}

// topKeys are the keys allowed at the top level of a policy file.
var topKeys = []string{"version", "settings", "defaults", "zones", "groups", "services", "nodes", "policy", "guard", "nat", "mss", "test"}

// LoadSources is Load over in-memory files (used by tests and fuzzing).
// `file =` group lists are read relative to the directory of Source.Name.
func LoadSources(srcs []Source) (*Policy, Diags) {
	l := &loader{
		p:     &Policy{Settings: Settings{Table: "hostwall", GuardPriority: -110, Keys: KeyPos{}}},
		first: map[string]Pos{},
	}
	l.p.Defaults = Defaults{
		Input: ActionDrop, Forward: ActionDrop, Output: ActionAccept,
		Established: true, Invalid: ActionDrop, Loopback: true,
		ICMP: ICMPEssential, RejectWith: RejectAdminProhibited, Keys: KeyPos{},
	}
	for _, src := range srcs {
		l.p.Files = append(l.p.Files, src.Name)
		if f := l.parse(src); f != nil {
			l.files = append(l.files, f)
		}
	}
	// Definitions first, references after: a rule may use a group of a
	// later file.
	for _, f := range l.files {
		t := l.top(f)
		t.checkKeys(topKeys...)
		l.version(t)
		l.settings(t)
		l.defaults(t)
		l.zones(t)
		l.groups(t)
		l.services(t)
		l.nodes(t)
	}
	l.checkNodeAddrs()
	l.resolveGroups()
	l.checkFailsafe()
	for _, f := range l.files {
		t := l.top(f)
		l.policies(t)
		l.guards(t)
		l.nats(t)
		l.msses(t)
		l.tests(t)
	}
	l.d.Sort()
	return l.p, l.d
}

// parse decodes one file; a syntax error is reported at its position. The
// position scan runs beside the decoding (they read the same bytes and
// share nothing else): at 100,000 rules each takes about a third of a
// load.
func (l *loader) parse(src Source) *fileCtx {
	idx := make(chan *posIndex, 1)
	go func() { idx <- scanPositions(src.Name, src.Data) }()
	var root map[string]any
	_, err := toml.Decode(string(src.Data), &root)
	positions := <-idx
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, col := pe.Position.Line, pe.Position.Col
			if line < 1 {
				line, col = 1, 1
			}
			if col < 1 {
				col = 1
			}
			msg := pe.Message
			l.errf(Pos{File: src.Name, Line: line, Col: col}, "TOML syntax error: %s", msg)
		} else {
			l.errf(Pos{File: src.Name}, "TOML syntax error: %v", err)
		}
		return nil
	}
	if root == nil {
		root = map[string]any{}
	}
	return &fileCtx{
		name: src.Name,
		dir:  filepath.Dir(src.Name),
		root: root,
		idx:  positions,
	}
}

// Zone returns the zone called name, or nil.
func (p *Policy) Zone(name string) *Zone {
	for _, z := range p.Zones {
		if z.Name == name {
			return z
		}
	}
	return nil
}

// Group returns the group called name, or nil.
func (p *Policy) Group(name string) *Group {
	for _, g := range p.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// Service returns the service called name, or nil.
func (p *Policy) Service(name string) *Service {
	for _, s := range p.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Node returns the node called name, or nil.
func (p *Policy) Node(name string) *Node {
	for _, n := range p.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// CompileNodes returns what the policy can be compiled for: the names of
// its nodes in definition order, or one "" (no node) when it has none.
func (p *Policy) CompileNodes() []string {
	if len(p.Nodes) == 0 {
		return []string{""}
	}
	out := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		out[i] = n.Name
	}
	return out
}

// RoleNodes returns the nodes that have role, in definition order.
func (p *Policy) RoleNodes(role string) []*Node {
	var out []*Node
	for _, n := range p.Nodes {
		if slices.Contains(n.Roles, role) {
			out = append(out, n)
		}
	}
	return out
}

// Roles returns every role some node has, sorted.
func (p *Policy) Roles() []string {
	var out []string
	for _, n := range p.Nodes {
		out = append(out, n.Roles...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
