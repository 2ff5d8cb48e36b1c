package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
)

var hookKeys = []struct {
	key  string
	hook Hook
}{{"in", HookIn}, {"out", HookOut}, {"forward", HookForward}}

// ruleKeys are the keys of [[policy.in]] / [[policy.out]] / [[policy.forward]].
var ruleKeys = map[Hook][]string{
	HookIn:      {"action", "comment", "counter", "from", "limit", "log", "reject_with", "roles", "service", "state", "to", "zone"},
	HookOut:     {"action", "comment", "counter", "from", "limit", "log", "reject_with", "roles", "service", "state", "to", "zone"},
	HookForward: {"action", "comment", "counter", "from", "from_zone", "limit", "log", "reject_with", "roles", "service", "state", "to", "to_zone"},
}

func (l *loader) policies(top *tbl) {
	var rules []*Rule
	for _, t := range top.tableList("policy", "[[policy]]") {
		t.checkKeys("name", "order", "roles", "zone", "in", "out", "forward")
		pb := &PolicyBlock{Order: 1000, Pos: t.header(), Keys: t.keys()}
		if t.require("name", `name = "web"`) {
			if s, ok := t.str("name"); ok {
				if err := checkName(s); err != nil {
					l.errf(t.valPos("name"), "policy name %q %v", s, err)
				} else {
					l.define("policy", s, t.keyPos("name"))
				}
				pb.Name = s
			}
		}
		if n, ok := t.integer("order"); ok {
			if n < -1<<31 || n > 1<<31-1 {
				l.errf(t.valPos("order"), "\"order\" %d is out of range; use a number from %d to %d (default 1000)", n, -1<<31, 1<<31-1)
			} else {
				pb.Order = int(n)
			}
		}
		pb.Roles = l.roles(t, "roles")
		pb.Zone = l.zoneRef(t, "zone")
		for _, h := range hookKeys {
			for i, rt := range t.tableList(h.key, "[[policy."+h.key+"]]") {
				r := l.rule(rt, h.hook)
				r.Policy = pb
				r.Index = i
				switch h.hook {
				case HookIn:
					pb.In = append(pb.In, r)
				case HookOut:
					pb.Out = append(pb.Out, r)
				default:
					pb.Forward = append(pb.Forward, r)
				}
				rules = append(rules, r)
			}
		}
		l.p.Policies = append(l.p.Policies, pb)
	}
	slices.SortStableFunc(rules, func(a, b *Rule) int { return a.Pos.Compare(b.Pos) })
	for _, r := range rules {
		r.Seq = l.seq
		l.seq++
	}
}

// rule reads one [[policy.in]], [[policy.out]] or [[policy.forward]].
func (l *loader) rule(t *tbl, h Hook) *Rule {
	t.checkKeys(ruleKeys[h]...)
	r := &Rule{Hook: h, Pos: t.header(), Keys: t.keys(), Counter: true}
	r.Zone = l.zoneRef(t, "zone")
	r.FromZone = l.zoneRef(t, "from_zone")
	r.ToZone = l.zoneRef(t, "to_zone")
	r.From = l.addrSpec(t, "from")
	r.To = l.addrSpec(t, "to")
	if _, ok := t.m["service"]; ok {
		r.Services = l.specs(t, "service", true)
	}
	r.State = l.ctState(t, "state")
	r.Action = ActionAccept
	if i := t.enum("action", "accept", "drop", "reject"); i >= 0 {
		r.Action = Action(i)
	}
	if _, ok := t.m["reject_with"]; ok {
		act, _ := t.m["action"].(string)
		if act != "reject" {
			l.errf(t.valPos("reject_with"), "\"reject_with\" only applies to action = \"reject\"; set action = \"reject\" or remove reject_with")
		} else if i := t.enum("reject_with", rejectNames...); i >= 0 {
			rw := RejectWith(i)
			r.RejectWith = &rw
		}
	}
	r.Log = l.logVal(t, "log")
	r.Limit = l.limit(t, "limit")
	r.Counter = t.boolean("counter", true)
	r.Comment = l.comment(t, "comment")
	r.Roles = l.roles(t, "roles")
	return r
}

// zoneRef reads a zone name that must be defined.
func (l *loader) zoneRef(t *tbl, k string) string {
	s, ok := t.str(k)
	if !ok {
		return ""
	}
	if l.p.Zone(s) == nil {
		var names []string
		for _, z := range l.p.Zones {
			names = append(names, z.Name)
		}
		l.errf(t.valPos(k), "undefined zone %q%s", s, hint(s, names, "zones", "[zones]"))
		return ""
	}
	return s
}

// roleHint lists the known roles, or says that roles need [nodes].
func (l *loader) roleHint(name string) string {
	roles := l.p.Roles()
	if len(roles) == 0 {
		return "; no node has a role (roles come from [nodes])"
	}
	if c := closest(name, roles); c != "" {
		return fmt.Sprintf("; did you mean %q? known roles: %s", c, strings.Join(roles, ", "))
	}
	return "; known roles: " + strings.Join(roles, ", ")
}

// roles reads a list of role names, each held by at least one node.
func (l *loader) roles(t *tbl, k string) []string {
	items, _ := t.strList(k, false, false)
	var out []string
	for _, it := range items {
		if err := checkName(it.s); err != nil {
			l.errf(it.pos, "role name %q %v", it.s, err)
			continue
		}
		if len(l.p.RoleNodes(it.s)) == 0 {
			l.errf(it.pos, "undefined role %q: no node has it%s", it.s, l.roleHint(it.s))
			continue
		}
		if !slices.Contains(out, it.s) {
			out = append(out, it.s)
		}
	}
	return out
}

// addrSpec reads from/to: a string or a list of group names, special names
// and literals, each maybe negated with "!" (only when it stands alone).
func (l *loader) addrSpec(t *tbl, k string) AddrSpec {
	spec := AddrSpec{Pos: t.valPos(k)}
	items, _ := t.strList(k, true, false)
	for _, it := range items {
		ai := AddrItem{Text: it.s, Pos: it.pos}
		s := it.s
		if strings.HasPrefix(s, "!") {
			if len(items) > 1 {
				l.errf(it.pos, "%q: a negated item must stand alone (%s = %q); in a list its meaning would be ambiguous (all but this, or this list minus it?); make a group and negate that", s, k, s)
				continue
			}
			ai.Negate = true
			s = s[1:]
		}
		switch {
		case s == "any":
			if ai.Negate {
				l.errf(it.pos, "\"!any\" matches nothing; remove the rule or name what to exclude")
				continue
			}
			ai.Kind = AddrAny
		case s == "nodes":
			if len(l.p.Nodes) == 0 {
				l.errf(it.pos, "%q means the addresses of [nodes], but no nodes are defined; add [nodes] or name the addresses", it.s)
				continue
			}
			ai.Kind = AddrNodes
		case strings.HasPrefix(s, "role:"):
			ai.Kind = AddrRole
			ai.Name = s[len("role:"):]
			if err := checkName(ai.Name); err != nil {
				l.errf(it.pos, "%q: role name %q %v", it.s, ai.Name, err)
				continue
			}
			if len(l.p.RoleNodes(ai.Name)) == 0 {
				l.errf(it.pos, "%q: undefined role %q: no node has it%s", it.s, ai.Name, l.roleHint(ai.Name))
				continue
			}
		case looksLiteral(s):
			r, err := parseLiteral(s)
			if err != nil {
				l.errf(it.pos, "%v", err)
				continue
			}
			ai.Kind = AddrLiteral
			ai.Range = r
		default:
			ai.Kind = AddrGroup
			ai.Name = s
			if l.p.Group(s) == nil {
				if err := checkName(s); err != nil {
					l.errf(it.pos, "%q is not a group name, special name (any, nodes, role:NAME) or address: the name %v", it.s, err)
				} else {
					l.errf(it.pos, "undefined group %q%s", s, l.groupHint(s))
				}
				continue
			}
		}
		spec.Items = append(spec.Items, ai)
	}
	return spec
}

// ctState reads a state or list of states.
func (l *loader) ctState(t *tbl, k string) ir.CtState {
	items, _ := t.strList(k, true, false)
	var st ir.CtState
	for _, it := range items {
		s, ok := ir.ParseCtState(it.s)
		if !ok {
			l.errf(it.pos, "unknown state %q; use new, established, related, invalid or untracked", it.s)
			continue
		}
		st |= s
	}
	return st
}

// logVal reads log = true/false or a prefix string.
func (l *loader) logVal(t *tbl, k string) *Log {
	v, ok := t.m[k]
	if !ok {
		return nil
	}
	switch v := v.(type) {
	case bool:
		if v {
			return &Log{Pos: t.valPos(k)}
		}
		return nil
	case string:
		if err := checkLogPrefix(v); err != nil {
			l.errf(t.valPos(k), "log prefix %q %v", v, err)
			return nil
		}
		return &Log{Prefix: v, Pos: t.valPos(k)}
	}
	t.typeErr(k, "true, false or a prefix string", v)
	return nil
}

// limit reads limit = "N/unit [burst B]".
func (l *loader) limit(t *tbl, k string) *ir.Limit {
	s, ok := t.str(k)
	if !ok {
		return nil
	}
	lim, err := parseLimit(s)
	if err != nil {
		l.errf(t.valPos(k), "%v", err)
		return nil
	}
	return &lim
}

// comment reads a comment: printable ASCII without " or \, at most 128 bytes.
func (l *loader) comment(t *tbl, k string) string {
	s, ok := t.str(k)
	if !ok {
		return ""
	}
	if err := checkText(s, maxCommentLen); err != nil {
		l.errf(t.valPos(k), "comment %q %v", s, err)
		return ""
	}
	return s
}
