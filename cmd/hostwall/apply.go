package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	vnl "github.com/vishvananda/netlink"
	"go4.org/netipx"
)

// ApplyCmd is `hostwall apply`: compile, then replace hostwall's table in
// one netlink transaction.
type ApplyCmd struct {
	Node    string        `help:"Node of [nodes] to compile for (default: found by matching this host's addresses against [nodes])." placeholder:"NAME"`
	Netns   string        `help:"Apply inside this network namespace (a name from 'ip netns' or a path)." placeholder:"NAME"`
	DryRun  bool          `help:"Compile and encode the transaction, print the ruleset, change nothing."`
	Confirm time.Duration `help:"Roll back to the previous table unless 'hostwall confirm' (or Enter on a terminal) comes within this time, e.g. 30s. A detached helper does the rollback, so it happens even if this process or its session dies." placeholder:"DURATION"`
	Keep    string        `help:"Refuse the apply if it would cut the ssh session from this client (as SSH_CONNECTION does when set)." placeholder:"CLIENT_IP:PORT"`
	Server  string        `name:"keep-server" help:"This host's end of the --keep session (default: the address that routes to the client, port 22)." placeholder:"ADDR[:PORT]"`
	Force   bool          `help:"Apply even if the new ruleset would cut the ssh session (SSH_CONNECTION or --keep)."`
	OnError string        `help:"When the policy fails to load, compile or apply: keep the loaded table, or load the failsafe ruleset (default: settings.on_error, else keep)." enum:",keep,failsafe" default:"" placeholder:"keep|failsafe"`
	State   string        `name:"state-dir" help:"Where the last known good table, a pending confirmation and the cache of compiled policies are kept." default:"/var/lib/hostwall" placeholder:"DIR"`
	NoCache bool          `help:"Load and compile the policy even when the cache of compiled policies has it (and do not add it)."`
	Policy  []string      `arg:"" name:"POLICY" help:"Policy files or directories." type:"path"`

	// InsecurePolicy skips the owner and mode checks of strict.go.
	InsecurePolicy bool `help:"Apply even when a policy file or its directory is writable by group or others, or owned by another user (see SECURITY.md)."`

	// SSHConnection is sshd's SSH_CONNECTION of the session running apply.
	SSHConnection string `name:"ssh-connection" env:"SSH_CONNECTION" hidden:"" help:"The ssh session to keep (set from SSH_CONNECTION)."`

	// kernel and addrs replace the system in tests; nil means netlink.
	kernel nft.Kernel
	addrs  func(netnsName string) ([]netip.Addr, error)
	// route finds this host's address and interface towards a client; nil
	// means a netlink route lookup in the namespace.
	route func(netnsName string, client netip.Addr) (netip.Addr, string, error)
	// startHelper starts the detached rollback helper; nil means re-exec
	// this binary.
	startHelper func(stateDir, id string) error
	// stdin is read for Enter on a terminal (nil: os.Stdin when it is one).
	stdin io.Reader
}

// Help shows an example.
func (c *ApplyCmd) Help() string {
	return "Example:\n  hostwall apply /etc/hostwall/policy.d\n  hostwall apply --confirm 30s /etc/hostwall/policy.d   # then: hostwall confirm\n  hostwall apply --netns lab --node node1 examples/cluster-roles.toml"
}

// Run loads and compiles the policy for the chosen or detected node (or
// takes both from the cache of compiled policies), checks that it keeps
// the ssh session, and applies it; with --confirm it then waits for
// confirmation. A policy that fails to load, compile or apply leaves the
// loaded table, or loads the failsafe ruleset (settings.on_error).
func (c *ApplyCmd) Run(env *Env) error {
	k := c.kernel
	if k == nil {
		k = &nft.Netlink{NetNS: c.Netns}
	}
	p, err := c.prepare(env, k)
	if err != nil {
		return err
	}
	if c.Keep != "" || c.SSHConnection != "" {
		rs, err := p.ruleset()
		if err != nil {
			return err
		}
		if err := c.checkLockout(env, rs); err != nil {
			return err
		}
	}
	if c.DryRun {
		rs := p.rs // a dry run always compiles
		b, err := nft.Lower(rs)
		if err != nil {
			return &policyError{fmt.Errorf("apply: %w", err)}
		}
		if _, err := nft.ReplaceOps(b); err != nil {
			return &policyError{fmt.Errorf("apply: encode: %w", err)}
		}
		var buf bytes.Buffer
		if err := nft.Print(&buf, rs); err != nil {
			return &policyError{err}
		}
		_, err = env.Stdout.Write(buf.Bytes())
		return err
	}
	where := ""
	if c.Netns != "" {
		where = " in network namespace " + c.Netns
	}
	if p.node != "" {
		where += " for node " + p.node
	}
	lg := &nft.LastGood{NetNS: c.Netns, Node: p.node, Policy: p.files, PolicyHash: p.hash}
	if c.Confirm > 0 {
		return c.applyConfirm(env, k, p, lg, where)
	}
	release, err := c.reserveState(p)
	if err != nil {
		return err
	}
	if err := c.replace(k, p); err != nil {
		release()
		return c.onError(env, k, p.policy(), err)
	}
	fmt.Fprintf(env.Stderr, "hostwall: applied table inet %s%s\n", p.table(), where)
	release()
	c.saveLastGood(env, k, p, lg)
	p.store(env)
	return nil
}

// prepared is a policy compiled for apply: loaded and compiled now, or
// taken from the cache.
type prepared struct {
	srcs []model.Source
	// files are the policy files, in load order; hash is their
	// sourcesHash.
	files []string
	hash  string
	node  string
	// rs is the compiled ruleset; on a cache hit nil until ruleset()
	// decodes rsData, which only a lockout check, --confirm or a kernel
	// other than netlink needs. tx is its encoded transaction, from the
	// cache or made by replace.
	rs     *ir.Ruleset
	rsData []byte
	tx     *nft.Transaction
	// txSum is the SHA-256 of tx's encoding txData, and kernel this kernel's
	// identity: together the key of the last known good snapshot in the
	// cache (memo), or else the table read back after the transaction
	// (readBack; exact when no other commit came between).
	txSum    string
	txData   []byte
	kernel   string
	memo     []byte
	readBack *nft.Snapshot
	exact    bool
	// text is rs as nft text (nil until reserveState prints it).
	text []byte
	// pol is the loaded policy; nil on a cache hit until policy() loads
	// it (only a failure needs it).
	pol *model.Policy
	// cache and key: the cache and this policy's key in it (nil: no
	// cache). fresh is set when this apply compiled what the cache
	// lacks; loadWarnings and warnings are the warnings it printed.
	cache        *policyCache
	key          string
	fresh        bool
	loadWarnings []string
	warnings     []string
}

// ruleset returns the compiled ruleset, decoding the cached one.
func (p *prepared) ruleset() (*ir.Ruleset, error) {
	if p.rs == nil {
		rs := new(ir.Ruleset)
		if err := rs.UnmarshalBinary(p.rsData); err != nil {
			// Only a codec bug gets here (the file's checksum held):
			// compile the bytes read, as a miss would.
			var diags model.Diags
			if rs, diags = compiler.Compile(p.policy(), compiler.Options{Node: p.node}); diags.Err() != nil {
				return nil, diags.Err()
			}
		}
		p.rs = rs
	}
	return p.rs, nil
}

// table is the name of the ruleset's table.
func (p *prepared) table() string {
	if p.tx != nil {
		return p.tx.Table
	}
	return p.rs.Table
}

// policy returns the loaded policy, loading it from the files' bytes read
// before when the cache gave the ruleset.
func (p *prepared) policy() *model.Policy {
	if p.pol == nil {
		p.pol, _ = model.LoadSources(p.srcs)
	}
	return p.pol
}

// prepare reads the policy files and takes their compiled ruleset from the
// cache, or loads and compiles them.
func (c *ApplyCmd) prepare(env *Env, k nft.Kernel) (*prepared, error) {
	srcs, readDiags := model.ReadSources(c.Policy...)
	p := &prepared{srcs: srcs, hash: sourcesHash(srcs)}
	for _, s := range srcs {
		p.files = append(p.files, s.Name)
	}
	if !c.NoCache && !c.DryRun && c.State != "" && len(readDiags) == 0 {
		p.cache = newPolicyCache(c.State)
		p.kernel = kernelIdentity()
	}
	if p.cache != nil {
		p.key = p.cache.key(p.hash)
		if ok, err := c.prepareCached(env, p); ok || err != nil {
			return p, err
		}
	}
	pol, diags := model.LoadSources(srcs)
	diags = append(readDiags, diags...)
	diags.Sort()
	p.pol = pol
	if err := diags.Err(); err != nil {
		return nil, c.onError(env, k, pol, err)
	}
	if !c.InsecurePolicy && !c.DryRun {
		if err := checkPolicyFiles(pol); err != nil {
			return nil, &policyError{err}
		}
	}
	p.loadWarnings = printWarnings(env, diags)
	node, err := c.node(pol)
	if err != nil {
		return nil, c.onError(env, k, pol, err)
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if err := diags.Err(); err != nil {
		return nil, c.onError(env, k, pol, err)
	}
	p.warnings = printWarnings(env, diags)
	p.node, p.rs, p.fresh = node, rs, true
	return p, nil
}

// prepareCached fills p from the cache; false on a miss (then nothing was
// printed). A hit checks the files' owners and modes, prints the warnings
// the load and compile printed, and detects the node, as a load would.
func (c *ApplyCmd) prepareCached(env *Env, p *prepared) (bool, error) {
	cp := p.cache.lookupPolicy(p.key)
	if cp == nil {
		return false, nil
	}
	nodes := &model.Policy{}
	for _, n := range cp.Nodes {
		nodes.Nodes = append(nodes.Nodes, &model.Node{Name: n.Name, Addresses: n.Addresses})
	}
	node, err := c.node(nodes)
	if err != nil {
		return false, nil // the load reports it, with on_error
	}
	cr := p.cache.lookupRuleset(p.key, node)
	if cr == nil {
		return false, nil
	}
	if !c.InsecurePolicy {
		files := slices.Clone(p.files)
		for _, g := range cr.Groups {
			files = append(files, g.Path)
		}
		if err := checkFiles(files); err != nil {
			return true, &policyError{err}
		}
	}
	for _, w := range slices.Concat(cr.LoadWarnings, cr.Warnings) {
		fmt.Fprintln(env.Stderr, w)
	}
	p.node, p.rsData, p.tx, p.txSum, p.text = node, cr.RS, cr.Tx, cr.TxSum, cr.Text
	return true, nil
}

// node returns --node, or the node of [nodes] that has one of this host's
// addresses.
func (c *ApplyCmd) node(pol *model.Policy) (string, error) {
	if c.Node != "" || len(pol.Nodes) == 0 {
		return c.Node, nil
	}
	addrs := c.addrs
	if addrs == nil {
		addrs = hostAddrs
	}
	own, err := addrs(c.Netns)
	if err != nil {
		return "", &systemError{fmt.Errorf("apply: find this host's addresses: %w", err)}
	}
	node, err := detectNode(pol, own)
	if err != nil {
		return "", &policyError{err}
	}
	return node, nil
}

// store puts what this apply compiled into the cache; a failure is only a
// warning.
func (p *prepared) store(env *Env) {
	if p.cache == nil || !p.fresh {
		return
	}
	cr := &cachedRuleset{LoadWarnings: p.loadWarnings, Warnings: p.warnings, Text: p.text, Tx: p.tx, TxData: p.txData, TxSum: p.txSum}
	if err := p.cache.store(p.key, p.pol, p.node, cr, p.rs); err != nil {
		fmt.Fprintf(env.Stderr, "hostwall: warning: the compiled policy was not cached (the next apply compiles it again): %v\n", err)
	}
}

// reserveState makes room in the state directory for the last known good
// table before the kernel is touched, so that a read-only or full state
// directory fails the apply with the previous firewall still in place. The
// estimate is generous: the saved table (a netlink snapshot as JSON, and
// the nft text) takes a few times the size of the nft text, which it
// prints into p.text unless the cache gave it (saveLastGood stores it).
func (c *ApplyCmd) reserveState(p *prepared) (release func(), err error) {
	if c.State == "" {
		return func() {}, nil
	}
	if p.text == nil {
		var buf bytes.Buffer
		rs, err := p.ruleset()
		if err != nil {
			return nil, err
		}
		if err := nft.Print(&buf, rs); err != nil {
			return nil, &policyError{fmt.Errorf("apply: %w", err)}
		}
		p.text = buf.Bytes()
	}
	release, err = nft.State{Dir: c.State}.Reserve(16*int64(len(p.text)) + 1<<20)
	if err != nil {
		return nil, &systemError{fmt.Errorf("apply: %w; the firewall was not changed", err)}
	}
	return release, nil
}

// replace applies p's ruleset and classifies a failure. Over netlink it
// sends the encoded transaction (the cached one, or encodes it and keeps
// it for the cache).
func (c *ApplyCmd) replace(k nft.Kernel, p *prepared) error {
	if err := send(k, p); err != nil {
		var le *nft.LowerError
		if errors.As(err, &le) {
			return &policyError{fmt.Errorf("apply: %w", err)}
		}
		return &systemError{fmt.Errorf("apply: %w", err)}
	}
	return nil
}

// send replaces the table with p's ruleset.
func send(k nft.Kernel, p *prepared) error {
	ctx := context.Background()
	nk, ok := k.(*nft.Netlink)
	if !ok {
		rs, err := p.ruleset()
		if err != nil {
			return err
		}
		return k.Replace(ctx, rs)
	}
	if p.tx == nil {
		tx, err := nft.Encode(p.rs)
		if err != nil {
			return err
		}
		p.tx = tx
	}
	if p.memo = p.snapshotMemo(); p.memo != nil {
		return nk.ReplaceTransaction(ctx, p.tx)
	}
	var err error
	p.readBack, p.exact, err = nk.ReplaceAndRead(ctx, p.tx)
	return err
}

// snapshotMemo returns the table (JSON) that an earlier apply read back
// after exactly p's transaction in a kernel like this one, or nil.
func (p *prepared) snapshotMemo() []byte {
	if p.cache == nil || p.kernel == "" {
		return nil
	}
	if p.txSum == "" {
		cr := &cachedRuleset{Tx: p.tx}
		if err := cr.encodeTx(nil); err != nil {
			return nil
		}
		p.txData, p.txSum = cr.TxData, cr.TxSum
	}
	return p.cache.snapshotMemo(p.key, p.txSum, p.kernel)
}

// saveLastGood stores what the kernel now holds as the last known good
// table, with p.text; a failure is only a warning (the apply itself
// succeeded). The table is read back from the kernel, unless an earlier
// apply of the same cached ruleset into a kernel of the same release read
// it back already: the same transaction makes the same table (handles and
// counters are not part of a snapshot).
func (c *ApplyCmd) saveLastGood(env *Env, k nft.Kernel, p *prepared, lg *nft.LastGood) {
	nk, ok := k.(*nft.Netlink)
	if !ok || c.State == "" {
		return
	}
	lg.Time = time.Now().UTC()
	snap := p.memo
	var err error
	if snap == nil {
		s := p.readBack
		if s == nil { // the read-back under the lock failed: try again
			s, err = nk.Snapshot(context.Background(), p.table())
		}
		if err == nil {
			snap, err = json.Marshal(s.ZeroCounters())
		}
		if err == nil && p.exact && p.cache != nil && p.kernel != "" && p.txSum != "" {
			// A failure here only costs the next apply a read-back.
			_ = p.cache.storeSnapshotMemo(p.key, p.txSum, p.kernel, snap)
		}
	}
	if err == nil {
		err = nft.State{Dir: c.State}.SaveLastGoodJSON(lg, snap, p.text)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "hostwall: warning: the last known good table was not saved: %v\n", err)
	}
}

// onError handles a policy that failed to load, compile or apply: with
// on_error = failsafe (flag, else settings) it loads the failsafe ruleset;
// either way the result says the policy failed (its exit code).
func (c *ApplyCmd) onError(env *Env, k nft.Kernel, pol *model.Policy, cause error) error {
	mode := c.OnError
	if mode == "" && pol != nil && pol.Settings.OnError == model.OnErrorFailsafe {
		mode = "failsafe"
	}
	if mode != "failsafe" || c.DryRun {
		return cause
	}
	table := "hostwall"
	var from *netipx.IPSet
	src := ir.Source{What: "settings.on_error"}
	who := "anywhere"
	if pol != nil {
		if pol.Settings.Table != "" {
			table = pol.Settings.Table
		}
		if p, ok := pol.Settings.Keys["on_error"]; ok {
			src.File, src.Line, src.Col = p.File, p.Line, p.Col
		}
		if name := pol.Settings.FailsafeSSHFrom; name != "" {
			if g := pol.Group(name); g != nil && g.Addrs != nil {
				from, who = g.Addrs, "group "+name
			} else {
				fmt.Fprintf(env.Stderr, "hostwall: warning: failsafe_ssh_from group %q could not be read from the broken policy; the failsafe ruleset accepts ssh from anywhere\n", name)
			}
		}
	}
	rs := compiler.Failsafe(table, from, src)
	if err := k.Replace(context.Background(), rs); err != nil {
		fmt.Fprintf(env.Stderr, "hostwall: the policy failed, and so did loading the failsafe ruleset: %v\n", err)
		return cause
	}
	fmt.Fprintf(env.Stderr, "hostwall: the policy failed: loaded the failsafe ruleset into table inet %s (on_error = failsafe: loopback, established, ssh from %s; all other input dropped)\n", table, who)
	return cause
}

// printWarnings prints the warnings of diags and returns them as printed.
func printWarnings(env *Env, diags model.Diags) []string {
	var out []string
	for _, d := range diags {
		if d.Severity == model.Warning {
			out = append(out, d.String())
			fmt.Fprintln(env.Stderr, out[len(out)-1])
		}
	}
	return out
}

// detectNode returns the one node of [nodes] that has one of own's
// addresses.
func detectNode(pol *model.Policy, own []netip.Addr) (string, error) {
	var names, matched []string
	for _, n := range pol.Nodes {
		names = append(names, n.Name)
		for _, a := range n.Addresses {
			if slices.Contains(own, a.Unmap()) {
				matched = append(matched, n.Name)
				break
			}
		}
	}
	switch len(matched) {
	case 1:
		return matched[0], nil
	case 0:
		return "", fmt.Errorf("apply: no node of [nodes] has an address of this host; choose one with --node (nodes: %s)", strings.Join(names, ", "))
	}
	return "", fmt.Errorf("apply: nodes %s all have addresses of this host; choose one with --node", strings.Join(matched, ", "))
}

// hostAddrs lists the addresses of every interface in the network namespace
// (the current one when name is "").
func hostAddrs(name string) ([]netip.Addr, error) {
	h, err := nsHandle(name)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	list, err := h.AddrList(nil, vnl.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}
