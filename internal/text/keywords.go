package text

import "strings"

// IsKeyword reports whether nft's scanner reads s as a keyword token where
// hostwall writes a bare name, so that s can't be a table, chain or set
// name in nft text.
func IsKeyword(s string) bool { return nftKeywords[s] }

// nftKeywords are the words nft's scanner (src/scanner.l) turns into
// keyword tokens wherever a name can stand: outside any scanner state, plus
// `ll` and `nh` right after `@`. A table, chain or set with one of these
// names makes `nft -f` fail with "unexpected ..., expecting string". Words
// that are keywords only inside one expression (`mss`, `state`, `dport`)
// are names to nft where hostwall writes names.
var nftKeywords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`
		eq ne le lt ge gt lshift rshift xor and or not vmap
		include define redefine undefine describe
		hook device devices table chain rule set element map flowtable handle ruleset
		socket tproxy accept drop continue jump goto return inet netdev
		add replace update create insert delete get list reset flush rename
		import export monitor destroy position index comment
		constant interval dynamic auto-merge timeout gc-interval elements expires
		policy size flow offload meter counter last log queue limit quota hour day
		reject snat dnat masquerade redirect random th bridge ether type typeof
		vlan arp ip ecn time icmp icmpv6 igmp ip6 priority ah esp comp flags
		udp udplite vxlan vni geneve gre gretap tcp dccp sctp rt rt0 rt2 srh hbh
		frag dst mh meta mark iif iifname iiftype oif oifname oiftype skuid skgid
		nftrace rtclassid ibriport ibrname obriport obrname pkttype cpu iifgroup
		oifgroup cgroup ct numgen jhash symhash dup fwd fib osf synproxy tunnel
		notrack all exists missing exthdr ipsec secmark xt
		ll nh`) {
		m[w] = true
	}
	return m
}()
