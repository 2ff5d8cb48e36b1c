package integration

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// TestLabProbes proves the lab: TCP and UDP probes over IPv4 and IPv6
// between two namespaces are accepted with no firewall, dropped after a
// drop rule, rejected after a reject rule; and every namespace is gone
// afterwards.
func TestLabProbes(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "ip")
	RequireTool(t, "nft")
	var names []string
	t.Run("probes", func(t *testing.T) {
		client := NewNetns(t, "labc")
		server := NewNetns(t, "labs")
		names = append(names, client.Name, server.Name)
		Link(t, client, []string{"198.18.0.1/24", "fd00:18::1/64"}, server, []string{"198.18.0.2/24", "fd00:18::2/64"})

		type target struct{ family, proto, src, dst string }
		var targets []target
		for _, fam := range []struct{ name, src, dst string }{
			{"ipv4", "198.18.0.1", "198.18.0.2"},
			{"ipv6", "fd00:18::1", "fd00:18::2"},
		} {
			tl := TCPListen(t, server, net.JoinHostPort(fam.dst, "8080"))
			UDPListen(t, server, net.JoinHostPort(fam.dst, "8081"))
			targets = append(targets,
				target{fam.name, "tcp", fam.src, tl.Addr().String()},
				target{fam.name, "udp", fam.src, net.JoinHostPort(fam.dst, "8081")})
		}
		probe := func(tg target, timeout time.Duration) (Outcome, error) {
			return Probe(client, tg.proto, tg.src, tg.dst, timeout)
		}

		steps := []struct {
			name  string
			rules string // nft rules for the server's input chain
			want  Outcome
		}{
			{"no firewall", "", Accepted},
			{"drop", "tcp dport 8080 drop\nudp dport 8081 drop", Dropped},
			{"reject tcp reset and icmpx port-unreachable", "tcp dport 8080 reject with tcp reset\nudp dport 8081 reject with icmpx port-unreachable", Rejected},
			{"reject icmpx admin-prohibited", "tcp dport 8080 reject with icmpx admin-prohibited\nudp dport 8081 reject with icmpx admin-prohibited", Rejected},
			// Soft ICMP errors (network unreachable, no route): without
			// IP_RECVERR a UDP socket ignores them and the probe would
			// see a drop.
			{"reject icmp net-unreachable and icmpv6 no-route", "meta nfproto ipv4 reject with icmp net-unreachable\nmeta nfproto ipv6 reject with icmpv6 no-route", Rejected},
			{"accept again", "tcp dport 8080 accept\nudp dport 8081 accept", Accepted},
		}
		for _, st := range steps {
			applyInput(t, server, st.rules)
			for _, tg := range targets {
				timeout := 3 * time.Second
				if st.want == Dropped {
					timeout = 700 * time.Millisecond
				}
				start := time.Now()
				got, err := probe(tg, timeout)
				if got != st.want {
					t.Errorf("%s: %s %s %s -> %s: got %s (%v), want %s", st.name, tg.family, tg.proto, tg.src, tg.dst, got, err, st.want)
				}
				// A reject must be seen at once, not by running into the
				// timeout: that is what IP_RECVERR is for.
				if st.want == Rejected && time.Since(start) > timeout/2 {
					t.Errorf("%s: %s %s: reject took %v", st.name, tg.family, tg.proto, time.Since(start))
				}
			}
		}
	})
	assertNetnsGone(t, names)
}

// applyInput replaces the server's test table with an input chain holding
// rules (none: no table at all).
func applyInput(t *testing.T, ns *Netns, rules string) {
	t.Helper()
	ns.Run("nft", "delete", "table", "inet", "hwlab") // absent the first time
	if rules == "" {
		return
	}
	var b strings.Builder
	b.WriteString("table inet hwlab {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n")
	for _, r := range strings.Split(rules, "\n") {
		b.WriteString("\t\t" + r + "\n")
	}
	b.WriteString("\t}\n}\n")
	path := t.TempDir() + "/rules.nft"
	writeFile(t, path, b.String())
	ns.MustRun(t, "nft", "-f", path)
}

// assertNetnsGone fails when `ip netns list` still shows one of names.
func assertNetnsGone(t *testing.T, names []string) {
	t.Helper()
	if len(names) == 0 {
		t.Fatal("no namespace was made")
	}
	out, err := command("ip", "netns", "list")
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		for _, n := range names {
			if f[0] == n {
				t.Errorf("namespace %s still exists after the test", n)
			}
		}
	}
}

// TestNetnsDo checks that Do runs code inside the namespace, passes errors
// and panics back as errors, and always leaves the thread in the namespace
// it started in.
func TestNetnsDo(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "ip")
	var names []string
	t.Run("do", func(t *testing.T) {
		a := NewNetns(t, "doa")
		b := NewNetns(t, "dob")
		names = append(names, a.Name, b.Name)
		aIf, bIf := Link(t, a, []string{"198.18.5.1/30"}, b, []string{"198.18.5.2/30"})

		for _, tc := range []struct {
			ns   *Netns
			want string
		}{{a, aIf}, {b, bIf}} {
			var ifs []net.Interface
			if err := tc.ns.Do(func() (err error) { ifs, err = net.Interfaces(); return err }); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, i := range ifs {
				got = append(got, i.Name)
			}
			if strings.Join(got, ",") != "lo,"+tc.want {
				t.Errorf("in %s: interfaces %v, want [lo %s]", tc.ns, got, tc.want)
			}
		}

		if err := a.Do(func() error { return fmt.Errorf("boom") }); err == nil || err.Error() != "boom" {
			t.Errorf("Do error = %v, want boom", err)
		}
		if err := a.Do(func() error { panic("kaboom") }); err == nil || !strings.Contains(err.Error(), "kaboom") {
			t.Errorf("Do after panic = %v, want an error with kaboom", err)
		}

		// After many Do calls, no thread of this process is left in a or
		// b: every locked-thread check finds the starting namespace.
		for i := 0; i < 50; i++ {
			ns := a
			if i%2 == 1 {
				ns = b
			}
			if err := ns.Do(func() error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		root := currentNetns(t)
		defer root.Close()
		for i := 0; i < 4*runtime.GOMAXPROCS(0); i++ {
			h := currentNetns(t)
			if !h.Equal(root) {
				t.Errorf("a thread is still in namespace %s", h)
			}
			h.Close()
		}
	})
	assertNetnsGone(t, names)
}

// currentNetns returns the namespace of the thread the caller runs on.
func currentNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	done := make(chan netns.NsHandle)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		h, err := netns.Get()
		if err != nil {
			t.Error(err)
		}
		done <- h
	}()
	return <-done
}
