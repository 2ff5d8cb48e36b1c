package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hostwall/hostwall/compiler"
	"github.com/hostwall/hostwall/model"
	"github.com/hostwall/hostwall/nft"
)

// TestRobustFuzzCorpusParses replays the nft printer's fuzz corpus
// (nft/testdata/fuzz/FuzzPrint: injection payloads in every kind of
// string, crashers kept after fixes) through the real nft: every policy
// the model accepts prints to text that `nft -c -f` and `nft -f` take, with
// every rule on its line and every comment intact (nftJudge).
func TestRobustFuzzCorpusParses(t *testing.T) {
	RequireRoot(t)
	RequireTool(t, "nft")
	files, err := filepath.Glob("../nft/testdata/fuzz/FuzzPrint/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	// The injection seeds read a group file list.txt beside the policy.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "list.txt"), []byte("198.18.0.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	judged, refused := 0, 0
	for _, f := range files {
		policy := corpusBytes(t, f)
		p, d := model.LoadSources([]model.Source{{Name: filepath.Join(dir, "p.toml"), Data: policy}})
		if d.HasErrors() {
			refused++
			continue
		}
		node := ""
		if len(p.Nodes) > 0 {
			node = p.Nodes[0].Name
		}
		rs, d := compiler.Compile(p, compiler.Options{Node: node})
		if d.HasErrors() {
			refused++
			continue
		}
		var b bytes.Buffer
		if err := nft.Print(&b, rs); err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) { nftJudge(t, "fuzz", b.String()) })
		judged++
	}
	t.Logf("%d corpus entries: %d printed and judged by nft, %d refused by the model or compiler", len(files), judged, refused)
	if judged == 0 {
		t.Error("nothing in the corpus reached nft")
	}
}

// corpusBytes reads the one []byte value of a `go test fuzz v1` file.
func corpusBytes(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a fuzz corpus file", path)
	}
	lit, ok := strings.CutPrefix(lines[1], "[]byte(")
	if !ok {
		t.Fatalf("%s: want a []byte value", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
