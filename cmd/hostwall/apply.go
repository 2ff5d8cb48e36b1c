package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
	State   string        `name:"state-dir" help:"Where the last known good table and a pending confirmation are kept." default:"/var/lib/hostwall" placeholder:"DIR"`
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

// Run loads and compiles the policy for the chosen or detected node,
// checks that it keeps the ssh session, and applies it; with --confirm it
// then waits for confirmation. A policy that fails to load, compile or
// apply leaves the loaded table, or loads the failsafe ruleset
// (settings.on_error).
func (c *ApplyCmd) Run(env *Env) error {
	k := c.kernel
	if k == nil {
		k = &nft.Netlink{NetNS: c.Netns}
	}
	pol, diags := model.Load(c.Policy...)
	if err := diags.Err(); err != nil {
		return c.onError(env, k, pol, err)
	}
	if !c.InsecurePolicy && !c.DryRun {
		if err := checkPolicyFiles(pol); err != nil {
			return &policyError{err}
		}
	}
	printWarnings(env, diags)
	node := c.Node
	if node == "" && len(pol.Nodes) > 0 {
		addrs := c.addrs
		if addrs == nil {
			addrs = hostAddrs
		}
		own, err := addrs(c.Netns)
		if err != nil {
			return c.onError(env, k, pol, &systemError{fmt.Errorf("apply: find this host's addresses: %w", err)})
		}
		node, err = detectNode(pol, own)
		if err != nil {
			return c.onError(env, k, pol, &policyError{err})
		}
	}
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if err := diags.Err(); err != nil {
		return c.onError(env, k, pol, err)
	}
	printWarnings(env, diags)
	if err := c.checkLockout(env, rs); err != nil {
		return err
	}
	if c.DryRun {
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
	if node != "" {
		where += " for node " + node
	}
	lg := &nft.LastGood{NetNS: c.Netns, Node: node, Policy: pol.Files, PolicyHash: policyHash(pol.Files)}
	if c.Confirm > 0 {
		return c.applyConfirm(env, k, pol, rs, lg, where)
	}
	text, release, err := c.reserveState(rs)
	if err != nil {
		return err
	}
	if err := c.replace(k, rs); err != nil {
		release()
		return c.onError(env, k, pol, err)
	}
	fmt.Fprintf(env.Stderr, "hostwall: applied table inet %s%s\n", rs.Table, where)
	release()
	c.saveLastGood(env, k, rs, lg, text)
	return nil
}

// reserveState makes room in the state directory for the last known good
// table before the kernel is touched, so that a read-only or full state
// directory fails the apply with the previous firewall still in place. The
// estimate is generous: the saved table (a netlink snapshot as JSON, and
// the nft text) takes a few times the size of the nft text. It returns
// that text, which saveLastGood stores (printed once per apply).
func (c *ApplyCmd) reserveState(rs *ir.Ruleset) (text []byte, release func(), err error) {
	if c.State == "" {
		return nil, func() {}, nil
	}
	var buf bytes.Buffer
	if err := nft.Print(&buf, rs); err != nil {
		return nil, nil, &policyError{fmt.Errorf("apply: %w", err)}
	}
	release, err = nft.State{Dir: c.State}.Reserve(16*int64(buf.Len()) + 1<<20)
	if err != nil {
		return nil, nil, &systemError{fmt.Errorf("apply: %w; the firewall was not changed", err)}
	}
	return buf.Bytes(), release, nil
}

// replace applies rs and classifies a failure.
func (c *ApplyCmd) replace(k nft.Kernel, rs *ir.Ruleset) error {
	if err := k.Replace(context.Background(), rs); err != nil {
		var le *nft.LowerError
		if errors.As(err, &le) {
			return &policyError{fmt.Errorf("apply: %w", err)}
		}
		return &systemError{fmt.Errorf("apply: %w", err)}
	}
	return nil
}

// saveLastGood stores what the kernel now holds as the last known good
// table, with text (rs as nft text, as reserveState printed it); a failure
// is only a warning (the apply itself succeeded).
func (c *ApplyCmd) saveLastGood(env *Env, k nft.Kernel, rs *ir.Ruleset, lg *nft.LastGood, text []byte) {
	nk, ok := k.(*nft.Netlink)
	if !ok || c.State == "" {
		return
	}
	snap, err := nk.Snapshot(context.Background(), rs.Table)
	if err == nil {
		lg.Time, lg.Snapshot = time.Now().UTC(), snap.ZeroCounters()
		err = nft.State{Dir: c.State}.SaveLastGood(lg, text)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "hostwall: warning: the last known good table was not saved: %v\n", err)
	}
}

// policyHash is the SHA-256 of the policy files' names and contents, in
// load order.
func policyHash(files []string) string {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			b = []byte("unreadable: " + err.Error())
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
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

func printWarnings(env *Env, diags model.Diags) {
	for _, d := range diags {
		if d.Severity == model.Warning {
			fmt.Fprintln(env.Stderr, d.String())
		}
	}
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
	var h *vnl.Handle
	var err error
	if name == "" {
		h, err = vnl.NewHandle()
	} else {
		var ns netns.NsHandle
		if strings.ContainsRune(name, '/') {
			ns, err = netns.GetFromPath(name)
		} else {
			ns, err = netns.GetFromName(name)
		}
		if err != nil {
			return nil, fmt.Errorf("open network namespace %q: %w", name, err)
		}
		defer ns.Close()
		h, err = vnl.NewHandleAt(ns)
	}
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
