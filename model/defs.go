package model

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"go4.org/netipx"
)

// enum reads key k as one of options and returns its index (-1 when absent
// or wrong; a wrong value is reported).
func (t *tbl) enum(k string, options ...string) int {
	s, ok := t.str(k)
	if !ok {
		return -1
	}
	if i := slices.Index(options, s); i >= 0 {
		return i
	}
	t.l.errf(t.valPos(k), "%q must be one of %s; not %q", k, strings.Join(options, ", "), s)
	return -1
}

// setting records a [settings]/[defaults] key, which may be set in one file
// only.
func (l *loader) setting(t *tbl, k string) bool {
	return l.define("setting", t.sub(k), t.keyPos(k))
}

func (l *loader) version(t *tbl) {
	n, ok := t.integer("version")
	if !ok {
		return
	}
	if n != 1 {
		l.errf(t.valPos("version"), "\"version\" must be 1, the only version of the policy format; not %d", n)
		return
	}
	l.p.Version = 1
}

func (l *loader) settings(top *tbl) {
	t, ok := top.subTable("settings", "[settings]")
	if !ok {
		return
	}
	t.checkKeys("table", "guard_priority", "on_error", "failsafe_ssh_from")
	for k := range t.m {
		l.setting(t, k)
		l.p.Settings.Keys[k] = t.valPos(k)
	}
	if s, ok := t.str("table"); ok {
		if err := checkTable(s); err != nil {
			l.errf(t.valPos("table"), "table name %q %v", s, err)
		} else {
			l.p.Settings.Table = s
		}
	}
	if n, ok := t.integer("guard_priority"); ok {
		switch {
		case n >= -100:
			l.errf(t.valPos("guard_priority"), "\"guard_priority\" must be below -100 (dstnat), so guards run before DNAT; not %d (the default is -110)", n)
		case n < -1<<31:
			l.errf(t.valPos("guard_priority"), "\"guard_priority\" %d is out of range; it must be from %d to -101", n, -1<<31)
		default:
			l.p.Settings.GuardPriority = int(n)
		}
	}
	l.safeSettings(t)
}

var rejectNames = []string{"admin-prohibited", "port-unreachable", "host-unreachable", "net-unreachable", "host-prohibited", "net-prohibited", "tcp-reset"}

func (l *loader) defaults(top *tbl) {
	t, ok := top.subTable("defaults", "[defaults]")
	if !ok {
		return
	}
	d := &l.p.Defaults
	t.checkKeys("input", "forward", "output", "established", "invalid", "loopback", "icmp", "reject_with", "log")
	for k := range t.m {
		l.setting(t, k)
		d.Keys[k] = t.valPos(k)
	}
	verdicts := []Action{ActionDrop, ActionReject, ActionAccept}
	for k, dst := range map[string]*Action{"input": &d.Input, "forward": &d.Forward, "output": &d.Output} {
		if i := t.enum(k, "drop", "reject", "accept"); i >= 0 {
			*dst = verdicts[i]
		}
	}
	if i := t.enum("invalid", "drop", "accept"); i >= 0 {
		d.Invalid = []Action{ActionDrop, ActionAccept}[i]
	}
	d.Established = t.boolean("established", true)
	d.Loopback = t.boolean("loopback", true)
	if i := t.enum("icmp", "essential", "all", "none"); i >= 0 {
		d.ICMP = []ICMPMode{ICMPEssential, ICMPAll, ICMPNone}[i]
	}
	if i := t.enum("reject_with", rejectNames...); i >= 0 {
		d.RejectWith = RejectWith(i)
	}
	if lt, ok := t.subTable("log", "[defaults] log"); ok {
		lt.checkKeys("prefix", "rate")
		lg := &Log{Pos: t.valPos("log")}
		if s, ok := lt.str("prefix"); ok {
			if err := checkLogPrefix(s); err != nil {
				l.errf(lt.valPos("prefix"), "log prefix %q %v", s, err)
			}
			lg.Prefix = s
		}
		if s, ok := lt.str("rate"); ok {
			if lim, err := parseLimit(s); err != nil {
				l.errf(lt.valPos("rate"), "log rate: %v", err)
			} else {
				lg.Limit = &lim
			}
		}
		d.Log = lg
	}
}

// defName checks the name of a [zones]/[groups]/[services]/[nodes] entry
// and records it; false means skip the entry.
func (l *loader) defName(t *tbl, kind, name string) bool {
	if err := checkName(name); err != nil {
		l.errf(t.keyPos(name), "%s name %q %v", kind, name, err)
		return false
	}
	return l.define(kind, name, t.keyPos(name))
}

func (l *loader) zones(top *tbl) {
	t, ok := top.subTable("zones", "[zones]")
	if !ok {
		return
	}
	for _, name := range t.keyOrder() {
		if !l.defName(t, "zone", name) {
			continue
		}
		z := &Zone{Name: name, Pos: t.keyPos(name)}
		l.p.Zones = append(l.p.Zones, z)
		zt, ok := t.subTable(name, fmt.Sprintf("zone %q", name))
		if !ok {
			continue
		}
		zt.checkKeys("interfaces")
		if !zt.require("interfaces", `interfaces = ["eth0"]`) {
			continue
		}
		if v, ok := zt.m["interfaces"].([]any); ok && len(v) == 0 {
			l.errf(zt.valPos("interfaces"), "zone %q has no interfaces; list at least one (e.g. interfaces = [\"eth0\"])", name)
			continue
		}
		items, _ := zt.strList("interfaces", false, false)
		for _, it := range items {
			name, err := zoneIface(it.s)
			if err != nil {
				l.errf(it.pos, "interface %q %v", it.s, err)
				continue
			}
			z.Interfaces = append(z.Interfaces, Iface{Name: name, Pos: it.pos})
		}
	}
}

func (l *loader) groups(top *tbl) {
	t, ok := top.subTable("groups", "[groups]")
	if !ok {
		return
	}
	for _, name := range t.keyOrder() {
		if name == "any" || name == "nodes" {
			l.errf(t.keyPos(name), "group name %q is reserved (it means %s); choose another name", name,
				map[string]string{"any": "every address", "nodes": "the addresses of [nodes]"}[name])
			continue
		}
		if !l.defName(t, "group", name) {
			continue
		}
		g := &Group{Name: name, Pos: t.keyPos(name)}
		l.p.Groups = append(l.p.Groups, g)
		switch v := t.m[name].(type) {
		case []any:
			items, _ := t.strList(name, false, true)
			for _, it := range items {
				if m, ok := l.member(it.s, it.pos, true); ok {
					g.Members = append(g.Members, m)
				}
			}
		case map[string]any:
			gt := t.child(name, -1, fmt.Sprintf("group %q", name), v)
			gt.checkKeys("file")
			if !gt.require("file", `file = "blocklist.txt"`) {
				continue
			}
			if s, ok := gt.str("file"); ok {
				l.groupFile(g, t.f, s, gt.valPos("file"))
			}
		default:
			l.errf(t.valPos(name), "group %q must be a list of addresses and group names or { file = \"...\" }, not %s", name, typeName(v))
		}
	}
}

// member reads one group member: a literal or (when refs) a group name.
func (l *loader) member(s string, p Pos, refs bool) (Member, bool) {
	switch {
	case looksLiteral(s) && !strings.HasPrefix(s, "role:"):
		r, err := parseLiteral(s)
		if err != nil {
			l.errf(p, "%v", err)
			return Member{}, false
		}
		return Member{Range: r, Text: s, Pos: p}, true
	case !refs:
		l.errf(p, "%q is not an address, CIDR or range (want e.g. 192.0.2.1, 10.0.0.0/8 or 10.0.0.5-10.0.0.9)", s)
		return Member{}, false
	case s == "any" || s == "nodes" || strings.HasPrefix(s, "role:") || strings.HasPrefix(s, "!"):
		l.errf(p, "a group can't include %q; group members are addresses, CIDRs, ranges or other group names (use %q in a rule's from/to instead)", s, s)
		return Member{}, false
	}
	if err := checkName(s); err != nil {
		l.errf(p, "%q is neither an address nor a group name: the name %v", s, err)
		return Member{}, false
	}
	return Member{Ref: s, Text: s, Pos: p}, true
}

// groupFile reads a `file =` list: one address, CIDR or range per line, #
// comments, blank lines; errors point into that file.
func (l *loader) groupFile(g *Group, f *fileCtx, name string, p Pos) {
	if name == "" {
		l.errf(p, "group %q: \"file\" is empty; name a file of addresses, relative to %s", g.Name, f.name)
		return
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(f.dir, path)
	}
	g.File = path
	data, err := readLimited(path)
	if err != nil {
		l.errf(p, "group %q: cannot read %s: %v", g.Name, path, err)
		return
	}
	g.FileSHA256 = sha256.Sum256(data)
	if l.groupBytes += len(data); l.groupBytes > maxTotalSize {
		l.errf(p, "group %q: %s: the group files of the policy together are larger than the limit of %d bytes (256 MiB)", g.Name, path, maxTotalSize)
		return
	}
	line, nerr := 0, len(l.d)
	// About one address a line: growing Members step by step would copy
	// a 100,000-entry list many times over. The guess is capped, so that a
	// file of blank lines or comments cannot make it take much memory.
	g.Members = slices.Grow(g.Members, min(bytes.Count(data, []byte{'\n'})+1, 1<<17))
	for text := range strings.Lines(string(data)) {
		line++
		if len(l.d)-nerr >= maxFileErrors {
			l.errf(Pos{File: path, Line: line, Col: 1}, "group %q: too many errors in %s; stopped reading it here", g.Name, path)
			return
		}
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		trimmed := strings.TrimLeft(text, " \t")
		col := len(text) - len(trimmed) + 1
		trimmed = strings.TrimRight(trimmed, " \t\r\n")
		if trimmed == "" {
			continue
		}
		if l.groupEntries++; l.groupEntries > maxGroupFileEntries {
			l.errf(Pos{File: path, Line: line, Col: col}, "group %q: more than %d addresses in the policy's group files, hostwall's limit; merge them into CIDRs or ranges", g.Name, maxGroupFileEntries)
			return
		}
		if m, ok := l.member(trimmed, Pos{File: path, Line: line, Col: col}, false); ok {
			g.Members = append(g.Members, m)
		}
	}
}

// resolveGroups fills Group.Addrs, following nested groups; it reports
// unknown members and include cycles.
func (l *loader) resolveGroups() {
	byName := map[string]*Group{}
	for _, g := range l.p.Groups {
		byName[g.Name] = g
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var stack []string
	var visit func(g *Group) *netipx.IPSet
	visit = func(g *Group) *netipx.IPSet {
		switch state[g.Name] {
		case done:
			return g.Addrs
		case visiting:
			return nil
		}
		state[g.Name] = visiting
		stack = append(stack, g.Name)
		var b netipx.IPSetBuilder
		for _, m := range g.Members {
			if m.Ref == "" {
				b.AddRange(m.Range)
				continue
			}
			sub, ok := byName[m.Ref]
			if !ok {
				l.errf(m.Pos, "group %q includes undefined group %q%s", g.Name, m.Ref, l.groupHint(m.Ref))
				continue
			}
			if state[sub.Name] == visiting {
				i := slices.Index(stack, sub.Name)
				cycle := append(slices.Clone(stack[i:]), sub.Name)
				l.errf(m.Pos, "group %q includes itself: %s; remove one of these includes", sub.Name, strings.Join(cycle, " -> "))
				continue
			}
			if s := visit(sub); s != nil {
				b.AddSet(s)
			}
		}
		stack = stack[:len(stack)-1]
		s, _ := b.IPSet()
		g.Addrs = s
		state[g.Name] = done
		return s
	}
	for _, g := range l.p.Groups {
		visit(g)
	}
}

// groupHint suggests a close group name or lists the defined ones.
func (l *loader) groupHint(name string) string {
	var names []string
	for _, g := range l.p.Groups {
		names = append(names, g.Name)
	}
	return hint(name, names, "groups", "[groups]")
}

// hint returns "; did you mean X?" or a list of the defined names.
func hint(name string, names []string, what, section string) string {
	if c := closest(name, names); c != "" {
		return fmt.Sprintf("; did you mean %q?", c)
	}
	if len(names) == 0 {
		return fmt.Sprintf("; no %s are defined (add %s)", what, section)
	}
	names = slices.Clone(names)
	slices.Sort(names)
	if len(names) > 10 {
		names = append(names[:10], "...")
	}
	return fmt.Sprintf("; defined %s: %s", what, strings.Join(names, ", "))
}

func (l *loader) services(top *tbl) {
	t, ok := top.subTable("services", "[services]")
	if !ok {
		return
	}
	for _, name := range t.keyOrder() {
		if !l.defName(t, "service", name) {
			continue
		}
		s := &Service{Name: name, Pos: t.keyPos(name)}
		l.p.Services = append(l.p.Services, s)
		s.Specs = l.specs(t, name, false)
	}
}

// specs reads a service value: an inline spec, a table { proto, port,
// sport } or a list of them; with names, a string may name a service.
func (l *loader) specs(t *tbl, k string, names bool) []ServiceSpec {
	var out []ServiceSpec
	one := func(v any, i int) {
		var p Pos
		if i >= 0 {
			p = t.itemPos(k, i)
		} else {
			p = t.valPos(k)
		}
		switch v := v.(type) {
		case string:
			out = append(out, l.spec(v, p, names)...)
		case map[string]any:
			if s, ok := l.specTable(t.child(k, i, "service table", v)); ok {
				out = append(out, s)
			}
		default:
			l.errf(p, "%q items must be strings like \"tcp/22\" or tables like { proto = \"udp\", port = 500 }, not %s", k, typeName(v))
		}
	}
	switch v := t.m[k].(type) {
	case []any:
		if len(v) == 0 && !names {
			l.errf(t.valPos(k), "service %q is an empty list; list at least one spec (e.g. %s = \"tcp/22\")", k, k)
		} else if len(v) == 0 {
			l.errf(t.valPos(k), "%q is an empty list; list at least one service (leaving the key out means any service, not none)", k)
		}
		for i, x := range v {
			one(x, i)
		}
	case []map[string]any:
		for i, x := range v {
			one(x, i)
		}
	case string, map[string]any:
		one(v, -1)
	default:
		t.typeErr(k, "a string like \"tcp/22\", a table like { proto = \"udp\", port = 500 } or a list of them", v)
	}
	return out
}

// spec reads one string of a service key.
func (l *loader) spec(s string, p Pos, names bool) []ServiceSpec {
	if names {
		if svc := l.p.Service(s); svc != nil {
			return slices.Clone(svc.Specs)
		}
	}
	sp, err := parseServiceSpec(s)
	if err == nil {
		sp.Pos = p
		return []ServiceSpec{sp}
	}
	if names && !strings.Contains(s, "/") && checkName(s) == nil {
		var known []string
		for _, svc := range l.p.Services {
			known = append(known, svc.Name)
		}
		l.errf(p, "undefined service %q; define it in [services] or write an inline spec like \"tcp/22\"%s", s, hint(s, known, "services", "[services]"))
		return nil
	}
	l.errf(p, "%v", err)
	return nil
}

// specTable reads { proto = "udp", port = 500, sport = 500 }.
func (l *loader) specTable(t *tbl) (ServiceSpec, bool) {
	t.checkKeys("proto", "port", "sport")
	if !t.require("proto", `proto = "udp"`) {
		return ServiceSpec{}, false
	}
	var sp ServiceSpec
	var protoText string
	switch v := t.m["proto"].(type) {
	case string:
		protoText = v
	case int64:
		protoText = fmt.Sprint(v)
	default:
		t.typeErr("proto", "a protocol name or number", v)
		return ServiceSpec{}, false
	}
	p, err := parseProto(protoText)
	if err != nil {
		l.errf(t.valPos("proto"), "%v", err)
		return ServiceSpec{}, false
	}
	sp.Proto = p
	sp.Text = protoText
	sp.Pos = t.header()
	good := true
	for _, k := range []string{"port", "sport"} {
		v, ok := t.m[k]
		if !ok {
			continue
		}
		if !p.HasPorts() {
			l.errf(t.valPos(k), "protocol %s has no ports; %q works with tcp, udp, sctp, dccp and udplite", p, k)
			good = false
			continue
		}
		var text string
		switch v := v.(type) {
		case int64:
			text = fmt.Sprint(v)
		case string:
			text = v
		default:
			t.typeErr(k, "a port number or a \"low-high\" string", v)
			good = false
			continue
		}
		r, err := parsePort(text)
		if err != nil {
			l.errf(t.valPos(k), "%q: %v", k, err)
			good = false
			continue
		}
		if k == "port" {
			sp.DPorts = []ir.PortRange{r}
		} else {
			sp.SPorts = []ir.PortRange{r}
		}
		sp.Text += " " + k + " " + text
	}
	return sp, good
}

func (l *loader) nodes(top *tbl) {
	t, ok := top.subTable("nodes", "[nodes]")
	if !ok {
		return
	}
	for _, name := range t.keyOrder() {
		if !l.defName(t, "node", name) {
			continue
		}
		n := &Node{Name: name, Pos: t.keyPos(name)}
		l.p.Nodes = append(l.p.Nodes, n)
		nt, ok := t.subTable(name, fmt.Sprintf("node %q", name))
		if !ok {
			continue
		}
		nt.checkKeys("addresses", "roles")
		addrs, _ := nt.strList("addresses", false, true)
		for _, it := range addrs {
			if strings.ContainsAny(it.s, "/-") {
				l.errf(it.pos, "node address %q must be one address, not a CIDR or range", it.s)
				continue
			}
			a, err := parseAddr(it.s)
			if err != nil {
				l.errf(it.pos, "node address %v", err)
				continue
			}
			n.Addresses = append(n.Addresses, a)
			l.nodeAddrPos = append(l.nodeAddrPos, nodeAddr{a, n, it.pos})
		}
		roles, _ := nt.strList("roles", false, true)
		for _, it := range roles {
			if err := checkName(it.s); err != nil {
				l.errf(it.pos, "role name %q %v", it.s, err)
				continue
			}
			if !slices.Contains(n.Roles, it.s) {
				n.Roles = append(n.Roles, it.s)
			}
		}
	}
}

type nodeAddr struct {
	addr netip.Addr
	node *Node
	pos  Pos
}

// checkNodeAddrs reports an address given to two nodes.
func (l *loader) checkNodeAddrs() {
	seen := map[netip.Addr]nodeAddr{}
	for _, na := range l.nodeAddrPos {
		if first, ok := seen[na.addr]; ok {
			if first.node != na.node {
				l.errf(na.pos, "address %s of node %q is already an address of node %q (at %s); an address belongs to one node", na.addr, na.node.Name, first.node.Name, first.pos)
			}
			continue
		}
		seen[na.addr] = na
	}
}
