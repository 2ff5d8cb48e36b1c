package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Kernel is what apply, flush and status need from the system; tests use
// Fake.
type Kernel interface {
	// Replace puts rs's table into the kernel in one transaction, replacing
	// the table of that name and touching nothing else.
	Replace(ctx context.Context, rs *ir.Ruleset) error
	// Delete removes table (family inet); an absent table is not an error.
	Delete(ctx context.Context, table string) error
	// List reads table back; it returns (nil, nil) when it does not exist.
	List(ctx context.Context, table string) (*Table, error)
}

// DefaultLockPath is the lock file that keeps two hostwall transactions
// from interleaving.
const DefaultLockPath = "/run/hostwall.lock"

// Netlink is the Kernel of a real network namespace, spoken to over
// netlink with google/nftables.
type Netlink struct {
	// NetNS is the network namespace: a name from `ip netns` (a file in
	// /run/netns), a path to a namespace file, or "" for the current one.
	NetNS string
	// LockPath is the file Replace and Delete hold an exclusive flock on;
	// "" means DefaultLockPath.
	LockPath string
}

// nsHandle opens the namespace; close it with the returned func. fd 0
// OpenNetNS opens a network namespace by its name in `ip netns` or, when
// name holds a '/', by path.
func OpenNetNS(name string) (netns.NsHandle, error) {
	if strings.ContainsRune(name, '/') {
		return netns.GetFromPath(name)
	}
	return netns.GetFromName(name)
}

// means the current namespace.
func (k *Netlink) nsHandle() (fd int, closeNS func(), err error) {
	if k.NetNS == "" {
		return 0, func() {}, nil
	}
	h, err := OpenNetNS(k.NetNS)
	if err != nil {
		return 0, nil, &OpError{Op: fmt.Sprintf("open network namespace %q", k.NetNS), Err: err}
	}
	return int(h), func() { h.Close() }, nil
}

// lock takes the exclusive transaction lock; unlock with the returned func.
func (k *Netlink) lock(ctx context.Context) (func(), error) {
	path := k.LockPath
	if path == "" {
		path = DefaultLockPath
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, &OpError{Op: "open lock " + path, Err: err}
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, &OpError{Op: "lock " + path, Err: err}
		}
		if err := sleepCtx(ctx); err != nil {
			f.Close()
			return nil, &OpError{Op: "wait for lock " + path + " (another hostwall apply or flush is running)", Err: err}
		}
	}
}

// Replace lowers rs, encodes the transaction, and only then opens the
// socket and sends it; then it checks that every named set holds exactly
// the elements sent.
func (k *Netlink) Replace(ctx context.Context, rs *ir.Ruleset) error {
	t, err := Encode(rs)
	if err != nil {
		return err
	}
	return k.ReplaceTransaction(ctx, t)
}

// send sends one encoded transaction under the apply lock, on a socket in
// the chosen namespace; before and after (when not nil) run on that socket
// before the batch is sent and after it was acknowledged, still under the
// lock.
func (k *Netlink) send(ctx context.Context, ops []Op, before, after func(conn *netlink.Conn) error) error {
	unlock, err := k.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	fd, closeNS, err := k.nsHandle()
	if err != nil {
		return err
	}
	defer closeNS()
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := dialNetfilter(fd)
	if err != nil {
		return err
	}
	defer closeInBackground(conn)
	if before != nil {
		if err := before(conn); err != nil {
			return err
		}
	}
	if err := sendOn(ctx, conn, ops); err != nil {
		return err
	}
	if after == nil {
		return nil
	}
	return after(conn)
}

// setChecks are the checks of b's named sets.
func setChecks(b *Batch) []SetCheck {
	sets := make([]SetCheck, 0, len(b.Sets))
	for _, s := range b.Sets {
		sets = append(sets, SetCheck{Name: s.Set.Name, Sent: uint32(len(s.Elems)), Count: kernelCount(s)})
	}
	return sets
}

// kernelCount is the NFTA_SET_COUNT a kernel that reports it gives for s
// holding exactly the elements sent: the kernel keeps an interval set of
// one field in an rbtree of start and end elements and reports half their
// number (Linux 6.18: three intervals sent as seven elements, the leading
// zero included, report 3); hash sets report every element.
func kernelCount(s *BatchSet) uint32 {
	if s.Set.Interval && !s.Set.Concatenation {
		return uint32(len(s.Elems) / 2)
	}
	return uint32(len(s.Elems))
}

// setCounts dumps the sets of table and returns the element count the
// kernel reports for each (sets without NFTA_SET_COUNT are left out).
func setCounts(conn *netlink.Conn, table string) (map[string]uint32, error) {
	d := &dumper{conn: conn}
	msgs, err := d.run(unix.NFT_MSG_GETSET, netlink.Dump, strAttr(unix.NFTA_SET_TABLE, table))
	if err != nil {
		return nil, err
	}
	out := map[string]uint32{}
	for _, m := range msgs {
		attrs, err := parseAttrs(m.Data[4:])
		if err != nil {
			return nil, err
		}
		if attrString(attrs, unix.NFTA_SET_TABLE) != table {
			continue
		}
		for _, a := range attrs {
			if a.typ == nftaSetCount && len(a.payload) == 4 {
				out[attrString(attrs, unix.NFTA_SET_NAME)] = binary.BigEndian.Uint32(a.payload)
			}
		}
	}
	return out, nil
}

// Delete removes table in one transaction (absent is fine).
func (k *Netlink) Delete(ctx context.Context, table string) error {
	if err := checkObjName("table", table); err != nil {
		return err
	}
	ops, err := DeleteOps(table)
	if err != nil {
		return &OpError{Op: "encode", Err: err}
	}
	return k.send(ctx, ops, nil, nil)
}

// reader opens a google/nftables connection for reads (large socket
// buffers) in the chosen namespace; closeNS ends it.
func (k *Netlink) reader(ctx context.Context) (c *nftables.Conn, closeNS func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	fd, closeNS, err := k.nsHandle()
	if err != nil {
		return nil, nil, err
	}
	c, err = nftables.New(nftables.WithNetNSFd(fd), nftables.WithSockOptions(sockOptions()...))
	if err != nil {
		closeNS()
		return nil, nil, &OpError{Op: "open netlink", Err: err}
	}
	return c, closeNS, nil
}

// List reads table back over netlink, with counters.
func (k *Netlink) List(ctx context.Context, table string) (*Table, error) {
	c, closeNS, err := k.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer closeNS()
	return readTable(c, table)
}

// Fake is an in-memory Kernel for tests: it keeps the last ruleset given to
// Replace per table, and can be told to fail.
type Fake struct {
	mu sync.Mutex
	// Tables are the tables "in the kernel", by name.
	Tables map[string]*ir.Ruleset
	// FailReplace, when set, makes Replace fail with it and change nothing.
	FailReplace error
	// Calls records the calls made, e.g. "replace hostwall".
	Calls []string
}

// Replace lowers rs (so that a ruleset netlink would refuse fails here
// too) and stores it.
func (f *Fake) Replace(ctx context.Context, rs *ir.Ruleset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := Lower(rs)
	if err != nil {
		return err
	}
	if _, err := ReplaceOps(b); err != nil {
		return &OpError{Op: "encode", Err: err}
	}
	f.Calls = append(f.Calls, "replace "+rs.Table)
	if f.FailReplace != nil {
		return f.FailReplace
	}
	if f.Tables == nil {
		f.Tables = map[string]*ir.Ruleset{}
	}
	f.Tables[rs.Table] = rs
	return nil
}

// Delete removes the table.
func (f *Fake) Delete(ctx context.Context, table string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, "delete "+table)
	delete(f.Tables, table)
	return nil
}

// List describes the stored ruleset as the kernel would (counters zero).
func (f *Fake) List(ctx context.Context, table string) (*Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, "list "+table)
	rs, ok := f.Tables[table]
	if !ok {
		return nil, nil
	}
	return describe(rs)
}
