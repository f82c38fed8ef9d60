// Package docs holds the tests of the documentation's promises about the code: the import graph
// and layering rule of architecture.md, the README's layout and length, and every relative link
// of README.md and docs/*.md.
package docs

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/tokengate/tokengate/internal/config"
)

const module = "github.com/tokengate/tokengate"

var update = flag.Bool("update", false, "rewrite the generated import graph in architecture.md")

// pkg is one package of the module with its non-test imports.
type pkg struct {
	path    string   // without the module prefix
	own     []string // imports of this module, without the prefix
	foreign []string // every other import
}

// listPackages asks go list for the module's packages and their imports (tests excluded);
// packages made only of tests are left out.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-f", `{{if .GoFiles}}{{.ImportPath}} {{join .Imports " "}}{{end}}`, module+"/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		p := pkg{path: strip(f[0])}
		for _, imp := range f[1:] {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				p.own = append(p.own, strip(imp))
			} else {
				p.foreign = append(p.foreign, imp)
			}
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages:\n%s", len(pkgs), out)
	}
	return pkgs
}

func strip(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }

// role names a package by what it is, whether or not it lives under internal/.
func role(p string) string { return strings.TrimPrefix(p, "internal/") }

// layer is a package's place in cmd → server → issuer, keys, ssf, relay, upstream, metrics →
// store; -1 for packages outside the layers (config, verifier, test support, ...).
func layer(p string) int {
	r := role(p)
	switch {
	case p == "cmd/internal/app":
		return 1
	case strings.HasPrefix(p, "cmd/"):
		return 0
	case r == "server":
		return 2
	case r == "issuer" || r == "keys" || r == "ssf" || r == "relay" || r == "upstream" || strings.HasPrefix(r, "upstream/") || r == "metrics":
		return 3
	case r == "store" || strings.HasPrefix(r, "store/") && !isTestSupport(p):
		return 4
	}
	return -1
}

// isTestSupport reports the packages that exist for tests and tools.
func isTestSupport(p string) bool {
	r := role(p)
	return r == "kctest" || r == "proctest" || r == "procrun" || r == "demostack" || r == "loopback" || r == "testwait" || strings.HasSuffix(r, "test")
}

func TestLayers_NoImportPointsBackUp(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, imp := range p.own {
			lp, li := layer(p.path), layer(imp)
			if lp >= 0 && li >= 0 && li < lp {
				t.Errorf("%s imports %s: an import points back up the layers", p.path, imp)
			}
			if lp > 0 && isTestSupport(imp) {
				t.Errorf("%s imports the test support %s", p.path, imp)
			}
			if role(imp) == "config" && lp != 0 && lp != 1 && !isTestSupport(p.path) {
				t.Errorf("%s imports config, which only cmd translates", p.path)
			}
			if role(p.path) == "verifier" && !isVerifierLeaf(imp) {
				t.Errorf("verifier imports %s: services would depend on more of tokengate than verifier", imp)
			}
			if isVerifierLeaf(p.path) {
				t.Errorf("%s imports %s: the wire-shape leaves import nothing of tokengate", p.path, imp)
			} else if strings.HasPrefix(role(p.path), "verifier/") && role(imp) != "verifier" && !isVerifierLeaf(imp) {
				t.Errorf("%s imports %s", p.path, imp)
			}
		}
		for _, imp := range p.foreign {
			if isVerifierLeaf(p.path) && strings.Contains(strings.Split(imp, "/")[0], ".") && !strings.HasPrefix(imp, "github.com/go-jose/go-jose/") {
				t.Errorf("%s imports %s: the wire-shape leaves import go-jose and the standard library only", p.path, imp)
			}
			if strings.HasPrefix(imp, "github.com/gin-gonic/") && role(p.path) != "server" && role(p.path) != "verifier/ginverifier" {
				t.Errorf("%s imports %s: gin stays inside server", p.path, imp)
			}
		}
	}
}

// isVerifierLeaf reports the public leaf packages under verifier that hold what both ends of
// tokengate's protocols share (the Shared Signals wire shapes, the bounded JWKS refetch): any
// module may import them, verifier and tokengate's own packages included.
func isVerifierLeaf(p string) bool {
	return p == "verifier/secevent" || p == "verifier/jwksfetch"
}

// TestLayer_Classification pins which package sits where, also once packages move under
// internal/.
func TestLayer_Classification(t *testing.T) {
	for p, want := range map[string]int{
		"cmd/tokengate": 0, "cmd/internal/app": 1, "server": 2, "internal/server": 2, "issuer": 3, "keys": 3,
		"internal/ssf": 3, "metrics": 3, "store": 4, "internal/store/bolt": 4, "store/etcd": 4,
		"store/storetest": -1, "store/etcd/etcdtest": -1, "config": -1, "verifier": -1, "internal/kctest": -1,
	} {
		if got := layer(p); got != want {
			t.Errorf("layer(%q) = %d, want %d", p, got, want)
		}
	}
}

func TestImportGraph_IsCurrent(t *testing.T) {
	const path = "architecture.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := []byte("<!-- imports -->\n"), []byte("<!-- /imports -->")
	i, j := bytes.Index(doc, begin), bytes.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s has no <!-- imports --> ... <!-- /imports --> block", path)
	}
	want := importGraph(listPackages(t))
	got := string(doc[i+len(begin) : j])
	if got == want {
		return
	}
	if *update {
		out := append(append(append([]byte{}, doc[:i+len(begin)]...), want...), doc[j:]...)
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the import graph of %s", path)
		return
	}
	t.Errorf("the import graph in docs/%s is not go list's; run: go test ./docs -run TestImportGraph -update\n--- want\n%s", path, want)
}

// importGraph renders a mermaid diagram of the gateway binary's packages and a table of every
// package's imports within the module.
func importGraph(pkgs []pkg) string {
	byPath := map[string]pkg{}
	for _, p := range pkgs {
		byPath[p.path] = p
	}
	// The gateway: cmd/tokengate and everything of the module it reaches.
	seen := map[string]bool{}
	var walk func(string)
	walk = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, imp := range byPath[p].own {
			walk(imp)
		}
	}
	walk("cmd/tokengate")
	var nodes []string
	for p := range seen {
		nodes = append(nodes, p)
	}
	sort.Strings(nodes)
	var b strings.Builder
	b.WriteString("```mermaid\nflowchart TD\n")
	id := func(p string) string { return strings.NewReplacer("/", "_", "-", "_").Replace(p) }
	for _, p := range nodes {
		fmt.Fprintf(&b, "  %s[%s]\n", id(p), p)
	}
	for _, p := range nodes {
		for _, imp := range byPath[p].own {
			fmt.Fprintf(&b, "  %s --> %s\n", id(p), id(imp))
		}
	}
	b.WriteString("```\n\n| Package | Imports in this module |\n|---|---|\n")
	for _, p := range pkgs {
		imps := make([]string, len(p.own))
		for i, imp := range p.own {
			imps[i] = "`" + imp + "`"
		}
		if len(imps) == 0 {
			imps = []string{"—"}
		}
		fmt.Fprintf(&b, "| `%s` | %s |\n", p.path, strings.Join(imps, ", "))
	}
	return b.String()
}

// TestReadme_ShortAndLaysOutEveryDirectory: the README stays a front door (about 200 lines)
// and its Layout names every top-level directory, every command and every internal package.
func TestReadme_ShortAndLaysOutEveryDirectory(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(readme, []byte("\n")); n > 230 {
		t.Errorf("README.md has %d lines; keep it a front door (about 200) and move reference text to docs/", n)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	layout, _, _ = strings.Cut(layout, "\n## ")
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !strings.Contains(layout, e.Name()+"/") && !ignoredDir(e.Name()) {
			t.Errorf("README.md's Layout does not mention %s/", e.Name())
		}
	}
	for _, parent := range []string{"cmd", "internal"} {
		subs, err := os.ReadDir(filepath.Join("..", parent))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			if s.IsDir() && !strings.Contains(layout, s.Name()) {
				t.Errorf("README.md's Layout does not mention %s/%s", parent, s.Name())
			}
		}
	}
}

// ignoredDir is a top-level directory of build output, not of the source (see .gitignore).
func ignoredDir(name string) bool {
	return name == "bin" || name == "results" || name == "artifacts"
}

// TestDocs_EveryPageLinkedFromReadme: a page nobody links is a page nobody reads.
func TestDocs_EveryPageLinkedFromReadme(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) < 5 {
		t.Fatalf("found %d pages in docs/", len(pages))
	}
	for _, p := range pages {
		if !bytes.Contains(readme, []byte("](docs/"+p)) {
			t.Errorf("README.md does not link docs/%s", p)
		}
	}
}

var linkRE = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)

// TestDocs_LinksResolve: every relative link of README.md, docs/*.md and the deploy notes names
// a file that exists and, with #fragment, a heading of that page.
func TestDocs_LinksResolve(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	deploy, err := filepath.Glob("../deploy/*/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(append(files, "../README.md"), deploy...)
	checked := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range links(string(src)) {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			file, frag, _ := strings.Cut(target, "#")
			dest := f
			if file != "" {
				dest = filepath.Join(filepath.Dir(f), file)
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s links %s, which does not exist", f, target)
				continue
			}
			if frag == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			page, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(anchors(string(page)), frag) {
				t.Errorf("%s links %s, but %s has no heading with the anchor #%s", f, target, dest, frag)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d relative links found; the link pattern is broken", checked)
	}
}

// links returns the targets of the markdown links outside code blocks.
func links(md string) []string {
	var out []string
	for _, block := range proseBlocks(md) {
		for _, m := range linkRE.FindAllStringSubmatch(block, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// proseBlocks returns the text between fenced code blocks.
func proseBlocks(md string) []string {
	var out []string
	var cur strings.Builder
	fenced := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			if !fenced {
				out = append(out, cur.String())
				cur.Reset()
			}
			fenced = !fenced
			continue
		}
		if !fenced {
			cur.WriteString(line + "\n")
		}
	}
	return append(out, cur.String())
}

// anchors returns the GitHub anchors of a page's headings: lower case, punctuation dropped,
// spaces as hyphens.
func anchors(md string) []string {
	var out []string
	for _, block := range proseBlocks(md) {
		for _, line := range strings.Split(block, "\n") {
			if !strings.HasPrefix(line, "#") {
				continue
			}
			title := strings.TrimSpace(strings.TrimLeft(line, "#"))
			var b strings.Builder
			for _, r := range strings.ToLower(title) {
				switch {
				case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
					b.WriteRune(r)
				case r == ' ':
					b.WriteRune('-')
				}
			}
			out = append(out, b.String())
		}
	}
	return out
}

// TestReadme_QuickStartConfigurationLoads: the configuration the README's quick start serves,
// deploy/local/tokengate.yaml, is one tokengate accepts, with the secret from the environment
// as it says, on loopback http, its data and KEK under ./data. (integration/quickstart runs
// the quick start itself against a real Keycloak.)
func TestReadme_QuickStartConfigurationLoads(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, quick, ok := strings.Cut(string(readme), "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no ## Quick start section")
	}
	quick, _, _ = strings.Cut(quick, "\n## ")
	if !strings.Contains(quick, "serve --config deploy/local/tokengate.yaml") {
		t.Fatal("the quick start does not serve deploy/local/tokengate.yaml")
	}
	f, err := os.Open("../deploy/local/tokengate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := config.Parse(f, func(k string) string {
		if k == config.EnvUpstreamClientSecret {
			return "from-the-environment"
		}
		return ""
	})
	if err != nil {
		t.Fatalf("deploy/local/tokengate.yaml is refused: %v", err)
	}
	if c.Upstream.ClientSecret != "from-the-environment" {
		t.Fatal("the client secret did not come from the environment")
	}
	for _, u := range []string{c.Issuer, c.Upstream.Issuer} {
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Errorf("%s: the local configuration's issuers are http on 127.0.0.1", u)
		}
	}
	if c.DataDir != "./data" || c.Keys.KEKFile != "./data/kek" || !strings.Contains(quick, "gen-kek > data/kek") {
		t.Errorf("data_dir %q, keys.kek_file %q: want ./data and ./data/kek, written by the quick start's gen-kek", c.DataDir, c.Keys.KEKFile)
	}
}
