package model

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestScanPositions(t *testing.T) {
	tests := []struct {
		name string
		src  string
		keys map[string]string // path -> "line:col" of the key
		vals map[string]string // path -> "line:col" of the value
	}{
		{
			name: "plain table and comments",
			src:  "# c\n[settings] # c\ntable = \"x\" # c\n  guard_priority=-110\n",
			keys: map[string]string{"settings": "2:2", "settings.table": "3:1", "settings.guard_priority": "4:3"},
			vals: map[string]string{"settings": "2:1", "settings.table": "3:9", "settings.guard_priority": "4:18"},
		},
		{
			name: "arrays of tables nest under the last entry",
			src:  "[[policy]]\nname = \"a\"\n[[policy]]\nname = \"b\"\n  [[policy.in]]\n  service = \"ssh\"\n  [[policy.in]]\n  service = 'web'\n[[policy]]\n [[policy.out]]\n to = \"x\"\n",
			keys: map[string]string{"policy[1].name": "4:1", "policy[1].in[1].service": "8:3", "policy[2].out[0].to": "11:2"},
			vals: map[string]string{"policy[0]": "1:1", "policy[1]": "3:1", "policy[1].in[0]": "5:3", "policy[1].in[1].service": "8:13", "policy[2].out[0]": "10:2", "policy[2].out[0].to": "11:7"},
		},
		{
			name: "inline tables and nested arrays",
			src:  "[zones]\nmgmt = { interfaces = [\"eth0\", \"eth1\"] }\n[groups]\ncluster = [\n  \"10.0.0.1\", # one\n  # comment\n  [\"x\", 'y'],\n  \"z\",\n]\n",
			keys: map[string]string{"zones.mgmt": "2:1", "zones.mgmt.interfaces": "2:10"},
			vals: map[string]string{"zones.mgmt": "2:8", "zones.mgmt.interfaces[1]": "2:32", "groups.cluster[0]": "5:3", "groups.cluster[1]": "7:3", "groups.cluster[1][1]": "7:9", "groups.cluster[2]": "8:3"},
		},
		{
			name: "quoted and dotted keys",
			src:  "zones.\"my zone\".interfaces = [\"a\"]\n'lit.key' = 1\n[services]\n\"a.b\" = \"tcp\"\n",
			keys: map[string]string{"zones": "1:1", `zones."my zone"`: "1:7", `zones."my zone".interfaces`: "1:17", `"lit.key"`: "2:1", `services."a.b"`: "4:1"},
			vals: map[string]string{`zones."my zone".interfaces[0]`: "1:31", `"lit.key"`: "2:13", `services."a.b"`: "4:9"},
		},
		{
			name: "multi-line strings keep line counts",
			src:  "a = \"\"\"\nx \\\"\"\" y\n\"\"\"\nb = '''\n'' '''\nc = \"q\\\"#\" # \"\nd = 1979-05-27 07:32:00Z\ne = [1,2]\n",
			vals: map[string]string{"a": "1:5", "b": "4:5", "c": "6:5", "d": "7:5", "e[1]": "8:8"},
		},
		{
			name: "headers with spaces and quoted parts",
			src:  "[ \"groups\" ]\nx = [\"1.2.3.4\"]\n[[ test ]]\nname = \"t\"\n",
			keys: map[string]string{"groups": "1:3", "groups.x": "2:1", "test[0].name": "4:1"},
			vals: map[string]string{"groups": "1:1", "groups.x[0]": "2:6", "test[0]": "3:1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx := scanPositions("f.toml", []byte(tc.src))
			got := func(pos func(posNode) (int32, int32), want map[string]string) map[string]string {
				out := map[string]string{}
				for k := range want {
					r := lookupPath(t, idx, k)
					if r.missing {
						continue
					}
					if line, col := pos(idx.nodes[r.node]); line > 0 {
						out[k] = fmt.Sprintf("%d:%d", line, col)
					}
				}
				return out
			}
			keyOf := func(n posNode) (int32, int32) { return n.keyLine, n.keyCol }
			valOf := func(n posNode) (int32, int32) { return n.valLine, n.valCol }
			if diff := cmp.Diff(tc.keys, got(keyOf, tc.keys), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.vals, got(valOf, tc.vals), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
		})
	}
}

// lookupPath finds a path written as in messages (`policy[1].in[0].to`,
// `zones."my zone"`) in idx.
func lookupPath(t *testing.T, idx *posIndex, path string) pathRef {
	t.Helper()
	r := rootRef
	for path != "" {
		switch {
		case path[0] == '[':
			end := strings.IndexByte(path, ']')
			i, err := strconv.Atoi(path[1:end])
			if err != nil {
				t.Fatalf("bad index in %q", path)
			}
			r, path = idx.index(r, i), path[end+1:]
		case path[0] == '"':
			q, err := strconv.QuotedPrefix(path)
			if err != nil {
				t.Fatalf("bad quoted key in %q", path)
			}
			k, _ := strconv.Unquote(q)
			r, path = idx.key(r, k), path[len(q):]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			r, path = idx.key(r, path[:end]), path[end:]
		}
		path = strings.TrimPrefix(path, ".")
	}
	return r
}

func TestValPosFallsBackToParent(t *testing.T) {
	idx := scanPositions("f.toml", []byte("[[guard]]\nname = \"x\"\n[a.b]\nc = 1\n"))
	for _, tc := range []struct{ path, want string }{
		{"guard[0].service", "f.toml:1:1"}, // a missing key: the header
		{"guard[0].name", "f.toml:2:8"},
		{"a.b.x.y", "f.toml:3:1"},
		{"a.b.c", "f.toml:4:5"},
		{"a.z", "f.toml"}, // [a.b] gives a no position of its own
		{"nothing[3]", "f.toml"},
	} {
		if got := idx.valPos(lookupPath(t, idx, tc.path)).String(); got != tc.want {
			t.Errorf("valPos(%s) = %s, want %s", tc.path, got, tc.want)
		}
	}
}
