package nft

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hostwall/hostwall/compiler/ir"
	"github.com/hostwall/hostwall/internal/text"
)

// verdictMap prints a VerdictMap as nft 1.0.6 lists it:
// `iifname vmap { "eth0" : jump input_iif_1, "eth1" : jump input_iif_2 }`.
func (p *printer) verdictMap(v ir.VerdictMap) (string, error) {
	if err := checkVerdictMap(v, p.chains); err != nil {
		return "", err
	}
	key := "iifname"
	if v.Dir == ir.Out {
		key = "oifname"
	}
	elems := make([]string, len(v.Elems))
	for i, e := range v.Elems {
		q, err := quote(kindIface, e.Name)
		if err != nil {
			return "", err
		}
		elems[i] = q + " : jump " + e.Chain.Name
	}
	return key + " vmap { " + strings.Join(elems, ", ") + " }", nil
}

// checkVerdictMap refuses a map the kernel or nft would not take: no
// elements, an unknown direction, a wildcard, empty, over-long or repeated
// name, or a chain that is not a regular chain of the ruleset (known).
func checkVerdictMap(v ir.VerdictMap, known map[*ir.Chain]bool) error {
	if v.Dir != ir.In && v.Dir != ir.Out {
		return fmt.Errorf("verdict map: unknown direction %d", v.Dir)
	}
	if len(v.Elems) == 0 {
		return errors.New("verdict map: no elements")
	}
	seen := map[string]bool{}
	for _, e := range v.Elems {
		if e.Name == "" || len(e.Name) >= ifNameLen || strings.HasSuffix(e.Name, "*") {
			return fmt.Errorf("verdict map: interface name %q: 1 to 15 bytes, no wildcard", e.Name)
		}
		if err := text.Iface(e.Name, false); err != nil {
			return fmt.Errorf("verdict map: interface name %q %v", e.Name, err)
		}
		if seen[e.Name] {
			return fmt.Errorf("verdict map: interface name %q twice", e.Name)
		}
		seen[e.Name] = true
		switch {
		case e.Chain == nil:
			return fmt.Errorf("verdict map: %q jumps to no chain", e.Name)
		case !known[e.Chain]:
			return fmt.Errorf("verdict map: chain %q is not a chain of this ruleset", e.Chain.Name)
		case e.Chain.Base != nil:
			return fmt.Errorf("verdict map: chain %q is a base chain", e.Chain.Name)
		}
	}
	return nil
}
