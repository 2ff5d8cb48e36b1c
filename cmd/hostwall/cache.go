package main

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	"golang.org/x/sys/unix"
)

// policyCache is apply's cache of compiled policies, in the cache
// directory of the state directory. A re-apply of a policy whose files did
// not change (the same bytes, read now) with the same hostwall binary
// skips loading and compiling, which at 100,000 rules take several times
// as long as the kernel's transaction: the boot-time apply and the re-apply
// after a reload.
//
// An entry is made only from a policy that loaded, compiled and applied
// without error, and only says what that load and compile said: the
// compiled ruleset, its nft text, the warnings printed, the `file =` group
// lists read (with the digests of their bytes, checked on every hit), and
// the [nodes] addresses (a hit detects the node as a load would). Its key
// covers the policy files' names and bytes, the cache format and the
// binary's identity, so an edited file, a group list, another hostwall or
// another node all miss. Every file ends with the CRC-32C of its content
// (the cache guards against damage, not against root, who owns the state
// directory): a damaged or half-written entry is a miss, never an error. A policy
// that fails is never cached; its errors come from a full load, every
// time.
//
// The cache also keeps, per kernel release, the table as the kernel read
// back after the first apply of an entry (see snapshotMemo), so that a
// re-apply does not read back 100,000 set elements to store the same last
// known good table again.
type policyCache struct {
	dir string
	// build identifies this hostwall binary (see buildID).
	build string
}

// cacheFormat changes whenever what an entry holds, or how, changes.
const cacheFormat = "hostwall-cache 3"

// cacheKeep is how many policies (distinct sets of policy files) the cache
// keeps, the most recently used.
const cacheKeep = 4

// cacheMagic starts every cache file.
var cacheMagic = []byte("HWCACHE3")

// newPolicyCache returns the cache in stateDir, or nil when this binary
// cannot be identified (then apply always compiles).
func newPolicyCache(stateDir string) *policyCache {
	build, err := buildID()
	if err != nil {
		return nil
	}
	return &policyCache{dir: filepath.Join(stateDir, "cache"), build: build}
}

// buildID identifies the running binary by the Go build ID the linker
// wrote into it (a hash of what it was built from: another hostwall, even
// one built from one changed line, has another), read from its ELF note.
// A binary without one is identified by its file instead (inode, size and
// times, which a reinstall changes).
func buildID() (string, error) {
	f, err := elf.Open("/proc/self/exe")
	if err == nil {
		defer f.Close()
		if sec := f.Section(".note.go.buildid"); sec != nil {
			if note, err := sec.Data(); err == nil && len(note) > 16 {
				return "go:" + string(note[16:]), nil
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("file:%d:%d:%d.%d:%d.%d", st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// sourcesHash is the SHA-256 of the policy files' names and contents, in
// load order (the last known good table's policy_hash).
func sourcesHash(srcs []model.Source) string {
	h := sha256.New()
	for _, s := range srcs {
		fmt.Fprintf(h, "%s\x00%d\x00", s.Name, len(s.Data))
		h.Write(s.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// key is the cache key of the policy of srcs (policyHash, its
// sourcesHash) for this binary.
func (pc *policyCache) key(policyHash string) string {
	sum := sha256.Sum256([]byte(cacheFormat + "\x00" + pc.build + "\x00" + policyHash))
	return hex.EncodeToString(sum[:])
}

// cachedPolicy is what a hit needs of the loaded policy itself.
type cachedPolicy struct {
	// Nodes are [nodes], for detecting the node (the policy files alone
	// decide them).
	Nodes []cachedNode `json:"nodes,omitempty"`
}

type cachedNode struct {
	Name      string       `json:"name"`
	Addresses []netip.Addr `json:"addresses"`
}

// cachedRuleset is one node's compiled ruleset (node "" for a policy
// without [nodes]).
type cachedRuleset struct {
	// Groups are the `file =` group lists the load read, with the
	// digests of the bytes it read: each hit reads them again.
	Groups []cachedFile `json:"groups,omitempty"`
	// LoadWarnings and Warnings are the load's and the compile's
	// warnings, as printed.
	LoadWarnings []string `json:"load_warnings,omitempty"`
	Warnings     []string `json:"warnings,omitempty"`
	// Text is the ruleset as nft text.
	Text []byte `json:"-"`
	// RS is the ruleset's encoding (ir.Ruleset.MarshalBinary), decoded
	// only when needed; Tx its transaction, TxData Tx's encoding and
	// TxSum the SHA-256 of TxData (the key of the snapshot memo).
	RS     []byte           `json:"-"`
	Tx     *nft.Transaction `json:"-"`
	TxData []byte           `json:"-"`
	TxSum  string           `json:"tx_sum"`
}

// encodeTx fills TxData and TxSum from Tx (encoding rs first when Tx is
// nil), unless TxData is there already.
func (cr *cachedRuleset) encodeTx(rs *ir.Ruleset) error {
	if cr.TxData != nil {
		return nil
	}
	var err error
	if cr.Tx == nil {
		if cr.Tx, err = nft.Encode(rs); err != nil {
			return err
		}
	}
	if cr.TxData, err = cr.Tx.MarshalBinary(); err != nil {
		return err
	}
	sum := sha256.Sum256(cr.TxData)
	cr.TxSum = hex.EncodeToString(sum[:])
	return nil
}

type cachedFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// policyFile, rulesetFile and memoFile name an entry's files. A memo is
// named by the transaction it is the result of, and the kernel.
func (pc *policyCache) policyFile(key string) string {
	return filepath.Join(pc.dir, key+".policy")
}

func (pc *policyCache) rulesetFile(key, node string) string {
	return filepath.Join(pc.dir, key+"-"+shortHash(node)+".ruleset")
}

func (pc *policyCache) memoFile(key, txSum, kernel string) string {
	return filepath.Join(pc.dir, key+"-"+txSum[:16]+"-"+shortHash(kernel)+".snapshot")
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// lookupPolicy returns the cached policy of key, or nil on a miss.
func (pc *policyCache) lookupPolicy(key string) *cachedPolicy {
	body, ok := pc.read(pc.policyFile(key))
	if !ok {
		return nil
	}
	var cp cachedPolicy
	if err := json.Unmarshal(body, &cp); err != nil {
		return nil
	}
	// Mark the entry used, for pruning.
	now := time.Now()
	_ = os.Chtimes(pc.policyFile(key), now, now)
	return &cp
}

// lookupRuleset returns node's cached ruleset of key, or nil on a miss (no
// entry, a damaged one, or a group list whose bytes changed).
func (pc *policyCache) lookupRuleset(key, node string) *cachedRuleset {
	body, ok := pc.read(pc.rulesetFile(key, node))
	if !ok {
		return nil
	}
	var parts [4][]byte
	for i := range parts {
		n, w := binary.Uvarint(body)
		if w <= 0 || n > uint64(len(body)-w) {
			return nil
		}
		parts[i], body = body[w:w+int(n)], body[w+int(n):]
	}
	if len(body) != 0 {
		return nil
	}
	cr := &cachedRuleset{Text: parts[1], RS: parts[2], Tx: new(nft.Transaction)}
	if err := json.Unmarshal(parts[0], cr); err != nil || len(cr.TxSum) != 2*sha256.Size {
		return nil
	}
	for _, g := range cr.Groups {
		// As the load reads them: a regular file of bounded size.
		data, err := model.ReadListFile(g.Path)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != g.SHA256 {
			return nil
		}
	}
	if err := cr.Tx.UnmarshalBinary(parts[3]); err != nil {
		return nil
	}
	return cr
}

// store writes the entry of a policy that loaded and compiled for node:
// cr's warnings, text, ruleset rs and its transaction (encoded here when
// cr has no encoding yet), and the group lists pol read.
func (pc *policyCache) store(key string, pol *model.Policy, node string, cr *cachedRuleset, rs *ir.Ruleset) error {
	cp := cachedPolicy{}
	for _, n := range pol.Nodes {
		cp.Nodes = append(cp.Nodes, cachedNode{Name: n.Name, Addresses: n.Addresses})
	}
	cr.Groups = nil
	for _, g := range pol.Groups {
		if g.File != "" {
			cr.Groups = append(cr.Groups, cachedFile{Path: g.File, SHA256: hex.EncodeToString(g.FileSHA256[:])})
		}
	}
	pj, err := json.Marshal(&cp)
	if err != nil {
		return err
	}
	rsb, err := rs.MarshalBinary()
	if err != nil {
		return err
	}
	if err := cr.encodeTx(rs); err != nil {
		return err
	}
	meta, err := json.Marshal(cr)
	if err != nil {
		return err
	}
	var body []byte
	for _, part := range [][]byte{meta, cr.Text, rsb, cr.TxData} {
		body = binary.AppendUvarint(body, uint64(len(part)))
		body = append(body, part...)
	}
	if err := pc.write(pc.rulesetFile(key, node), body); err != nil {
		return err
	}
	// The policy file last: a hit reads it first.
	if err := pc.write(pc.policyFile(key), pj); err != nil {
		return err
	}
	pc.prune()
	return nil
}

// snapshotMemo returns the last known good table (JSON of the snapshot,
// counters zeroed) that the transaction with encoding digest txSum made in
// a kernel like this one, as an earlier apply read it back, or nil.
func (pc *policyCache) snapshotMemo(key, txSum, kernel string) []byte {
	body, ok := pc.read(pc.memoFile(key, txSum, kernel))
	if !ok {
		return nil
	}
	return body
}

// storeSnapshotMemo keeps snapJSON as the table the transaction with
// encoding digest txSum makes in a kernel like this one. Only a read-back
// of exactly that transaction's generation may be kept
// (nft.Netlink.ReplaceAndRead).
func (pc *policyCache) storeSnapshotMemo(key, txSum, kernel string, snapJSON []byte) error {
	return pc.write(pc.memoFile(key, txSum, kernel), snapJSON)
}

// castagnoli is CRC-32C's table (the CPU computes it where it can).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// read returns the content of a cache file whose magic and checksum hold.
func (pc *policyCache) read(path string) ([]byte, bool) {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < len(cacheMagic)+4 || !bytes.HasPrefix(b, cacheMagic) {
		return nil, false
	}
	body, sum := b[len(cacheMagic):len(b)-4], b[len(b)-4:]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sum) {
		return nil, false
	}
	return body, true
}

// write stores body in path (magic, body, checksum) through a temporary
// file and a rename. It does not fsync: a file a crash damaged fails its
// checksum and is a miss.
func (pc *policyCache) write(path string, body []byte) error {
	if err := os.MkdirAll(pc.dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(pc.dir, ".tmp*")
	if err != nil {
		return err
	}
	sum := binary.BigEndian.AppendUint32(nil, crc32.Checksum(body, castagnoli))
	_, err = f.Write(slices.Concat(cacheMagic, body, sum))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// prune removes all but the cacheKeep most recently used policies' files,
// and temporary files left by a writer that died.
func (pc *policyCache) prune() {
	ents, err := os.ReadDir(pc.dir)
	if err != nil {
		return
	}
	used := map[string]time.Time{}
	for _, e := range ents {
		name := e.Name()
		info, err := e.Info()
		if err != nil {
			continue
		}
		if strings.HasPrefix(name, ".tmp") {
			if time.Since(info.ModTime()) > time.Hour {
				os.Remove(filepath.Join(pc.dir, name))
			}
			continue
		}
		if key, ok := strings.CutSuffix(name, ".policy"); ok {
			used[key] = info.ModTime()
		}
	}
	keys := make([]string, 0, len(used))
	for k := range used {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return used[b].Compare(used[a]) })
	keep := map[string]bool{}
	for _, k := range keys[:min(len(keys), cacheKeep)] {
		keep[k] = true
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp") || len(name) < 64 || keep[name[:64]] {
			continue
		}
		os.Remove(filepath.Join(pc.dir, name))
	}
}

// kernelIdentity is uname -r and -v: a cached snapshot holds for the
// kernel that made it ("" when unknown: nothing is memoized).
func kernelIdentity() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
}
