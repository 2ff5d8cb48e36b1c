package nft

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/google/nftables"
)

// ForeignChain is a base chain of another table (kube-proxy, Docker,
// firewalld, iptables-nft): packets cross it as well as hostwall's.
type ForeignChain struct {
	Family   string `json:"family"`
	Table    string `json:"table"`
	Chain    string `json:"chain"`
	Type     string `json:"type"`
	Hook     string `json:"hook"`
	Priority int    `json:"priority"`
	Policy   string `json:"policy"`
}

var familyWords = map[nftables.TableFamily]string{
	nftables.TableFamilyINet: "inet", nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6",
	nftables.TableFamilyARP: "arp", nftables.TableFamilyNetdev: "netdev", nftables.TableFamilyBridge: "bridge",
}

// ForeignChains lists the base chains of every table but hostwall's own
// (family inet, named table), sorted by hook, priority, family, table and
// chain.
func (k *Netlink) ForeignChains(ctx context.Context, table string) ([]ForeignChain, error) {
	c, closeNS, err := k.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer closeNS()
	chains, err := c.ListChains()
	if err != nil {
		return nil, &OpError{Op: "list chains", Err: err}
	}
	var out []ForeignChain
	for _, ch := range chains {
		if ch.Hooknum == nil || ch.Table == nil {
			continue
		}
		if ch.Table.Family == nftables.TableFamilyINet && ch.Table.Name == table {
			continue
		}
		fam, ok := familyWords[ch.Table.Family]
		if !ok {
			fam = fmt.Sprint(ch.Table.Family)
		}
		hook, ok := hookWords[*ch.Hooknum]
		if !ok || ch.Table.Family == nftables.TableFamilyNetdev || ch.Table.Family == nftables.TableFamilyARP {
			hook = fmt.Sprintf("hook %d", *ch.Hooknum)
			if ch.Table.Family == nftables.TableFamilyNetdev && *ch.Hooknum == 0 {
				hook = "ingress"
			}
		}
		fc := ForeignChain{Family: fam, Table: ch.Table.Name, Chain: ch.Name, Type: string(ch.Type), Hook: hook, Policy: "accept"}
		if ch.Priority != nil {
			fc.Priority = int(*ch.Priority)
		}
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			fc.Policy = "drop"
		}
		out = append(out, fc)
	}
	hookOrder := []string{"prerouting", "input", "forward", "output", "postrouting"}
	slices.SortFunc(out, func(a, b ForeignChain) int {
		ia, ib := slices.Index(hookOrder, a.Hook), slices.Index(hookOrder, b.Hook)
		if ia != ib {
			return ia - ib
		}
		if a.Priority != b.Priority {
			return a.Priority - b.Priority
		}
		return strings.Compare(a.Family+" "+a.Table+" "+a.Chain, b.Family+" "+b.Table+" "+b.Chain)
	})
	return out, nil
}

// ForeignWarnings returns a warning for each foreign base chain whose
// policy is drop on a hook where hostwall's table (ours, nil when not
// loaded) has a base chain that accepts something: an accept in one table
// is not final, the other table's chain still sees the packet and its
// policy drops what hostwall accepts.
func ForeignWarnings(ours *Table, foreign []ForeignChain) []string {
	if ours == nil {
		return nil
	}
	accepts := map[string]string{} // hook -> our chain that accepts
	for _, c := range ours.Chains {
		if c.Hook == "" {
			continue
		}
		ok := c.Policy == "accept"
		for _, r := range c.Rules {
			ok = ok || r.Verdict == "accept"
		}
		if ok {
			if _, seen := accepts[c.Hook]; !seen {
				accepts[c.Hook] = c.Name
			}
		}
	}
	var out []string
	for _, f := range foreign {
		if f.Policy != "drop" || (f.Family != "inet" && f.Family != "ip" && f.Family != "ip6") {
			continue
		}
		if ours, ok := accepts[f.Hook]; ok {
			out = append(out, fmt.Sprintf("warning: %s table %s chain %s (hook %s priority %d) has policy drop: it drops what hostwall's chain %s accepts unless one of its own rules accepts it (an accept is final only within its table)",
				f.Family, f.Table, f.Chain, f.Hook, f.Priority, ours))
		}
	}
	return out
}

// WriteForeignText writes the foreign base chains as a table, then the
// warnings.
func WriteForeignText(w io.Writer, foreign []ForeignChain, warnings []string) error {
	if len(foreign) == 0 {
		_, err := fmt.Fprintln(w, "\nno other table has base chains")
		return err
	}
	fmt.Fprintln(w, "\nbase chains of other tables (packets cross them too):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  family\ttable\tchain\ttype\thook\tpriority\tpolicy")
	for _, f := range foreign {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.Family, f.Table, f.Chain, f.Type, f.Hook, f.Priority, f.Policy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, wr := range warnings {
		if _, err := fmt.Fprintln(w, wr); err != nil {
			return err
		}
	}
	return nil
}
