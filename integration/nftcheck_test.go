package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/examples"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var tableRE = regexp.MustCompile(`\Atable inet ([A-Za-z][A-Za-z0-9_-]*)\n`)

// commentRE finds the quoted comments and log prefixes of a script.
var commentRE = regexp.MustCompile(`(comment|prefix) "[^"\n]*"`)

// nftJudge loads script with the real nft in a fresh namespace: `nft -c -f`
// then `nft -f`, twice (the script must replace its own table), then `nft
// list table`. The listing must keep every rule on its own line (same
// count as the script) and every comment and log prefix intact, so that no
// string broke out of its quotes. It returns the listing.
func nftJudge(t *testing.T, purpose, script string) string {
	t.Helper()
	m := tableRE.FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("script does not start with `table inet NAME`:\n%s", head(script))
	}
	table := m[1]
	ns := NewNetns(t, purpose)
	path := filepath.Join(t.TempDir(), "ruleset.nft")
	writeFile(t, path, script)
	ns.MustRun(t, "nft", "-c", "-f", path)
	ns.MustRun(t, "nft", "-f", path)
	ns.MustRun(t, "nft", "-f", path) // the replace idiom: a second load replaces
	list := ns.MustRun(t, "nft", "list", "table", "inet", table)
	if got, want := ruleLines(list), ruleLines(script); got != want {
		t.Errorf("nft lists %d rules, the script has %d:\n%s", got, want, list)
	}
	for _, c := range commentRE.FindAllString(script, -1) {
		if !strings.Contains(list, c) {
			t.Errorf("nft's listing lacks %s", c)
		}
	}
	// Only hostwall's table is there.
	if tables := ns.MustRun(t, "nft", "list", "tables"); strings.TrimSpace(tables) != "table inet "+table {
		t.Errorf("nft list tables = %q, want only table inet %s", tables, table)
	}
	return list
}

// ruleLines counts the rule lines of an nft script or listing: lines at
// the depth of a chain's contents that are not its type line.
func ruleLines(s string) int {
	n := 0
	inChain := false
	for _, line := range strings.Split(s, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "chain ") && strings.HasSuffix(l, "{"):
			inChain = true
		case l == "}":
			inChain = false
		case inChain && l != "" && !strings.HasPrefix(l, "type "):
			n++
		}
	}
	return n
}

func head(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// TestNftGoldens is the judge of nft/testdata: every golden must load with
// the real nft 1.0.6 into a fresh namespace.
func TestNftGoldens(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	files, err := filepath.Glob(filepath.Join("..", "nft", "testdata", "*.nft"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files in ../nft/testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			nftJudge(t, "golden", string(b))
		})
	}
}

// TestNftExamples compiles every policy in ../examples (files and
// directories) for each of its nodes, prints it, and has the real nft load
// the result.
func TestNftExamples(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	paths, err := examples.Policies(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range paths {
		pol, diags := model.Load(path)
		if err := diags.Err(); err != nil {
			t.Errorf("%s: load: %v", path, err)
			continue
		}
		nodes := pol.CompileNodes()
		for _, node := range nodes {
			n++
			t.Run(fmt.Sprintf("%s/node=%s", filepath.Base(path), node), func(t *testing.T) {
				script, err := compileAndPrint(pol, node)
				if err != nil {
					t.Fatal(err)
				}
				nftJudge(t, "example", script)
			})
		}
	}
	if n == 0 {
		t.Fatal("no example policies in ../examples")
	}
}

// compileAndPrint compiles pol for node and prints it. A panic of the
// compiler is reported as an error that says so.
func compileAndPrint(pol *model.Policy, node string) (script string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("compiler.Compile panicked (is the compiler written yet?): %v", r)
		}
	}()
	rs, diags := compiler.Compile(pol, compiler.Options{Node: node})
	if err := diags.Err(); err != nil {
		return "", fmt.Errorf("compile: %w", err)
	}
	var buf bytes.Buffer
	if err := nft.Print(&buf, rs); err != nil {
		return "", fmt.Errorf("print: %w", err)
	}
	return buf.String(), nil
}
