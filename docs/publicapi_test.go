package docs

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ownSentence is what the package doc of every importable package that is not part of the
// public API says (whitespace folded).
const ownSentence = "This package is tokengate's own, not an API for other modules: its exported names may change without notice."

// isPublic reports the packages another module may import: verifier and every package under it.
func isPublic(p string) bool { return p == "verifier" || strings.HasPrefix(p, "verifier/") }

// TestPublicAPI_OnePublicTreeTheRestSaysItIsOurs pins architecture.md's "What another module may
// import": every package outside internal/ and cmd/ that exports a name is either public
// (verifier and its subpackages), or its package doc says it is tokengate's own and may change
// without notice. The section lists each public package as an item of its own ("- `path`") and
// names each of the others; no public package's doc calls it tokengate's own.
func TestPublicAPI_OnePublicTreeTheRestSaysItIsOurs(t *testing.T) {
	arch, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	section := sectionOf(t, arch, "## What another module may import")
	dirs := packageDirs(t)
	var nPublic, nOwn int
	for _, p := range listPackages(t) {
		if p.path == "cmd" || strings.HasPrefix(p.path, "cmd/") || p.path == "internal" ||
			strings.HasPrefix(p.path, "internal/") || strings.Contains(p.path, "/internal/") {
			continue
		}
		doc, exports := packageDoc(t, dirs[p.path])
		if !exports {
			continue // a test suite's doc.go: nothing to import
		}
		named := strings.Contains(section, "`"+p.path+"`")
		says := strings.Contains(doc, ownSentence)
		switch {
		case isPublic(p.path):
			nPublic++
			if says {
				t.Errorf("%s is public but its package doc calls it tokengate's own", p.path)
			}
			if !strings.Contains(section, "\n- `"+p.path+"`") {
				t.Errorf("architecture.md's %q does not list %s among the packages another module may import", "What another module may import", p.path)
			}
		default:
			nOwn++
			if !says {
				t.Errorf("%s exports names outside internal/ but is not public; its package doc must say: %q", p.path, ownSentence)
			}
			if !named {
				t.Errorf("architecture.md's %q does not name %s (tokengate's own)", "What another module may import", p.path)
			}
		}
	}
	if nPublic < 3 || nOwn < 3 {
		t.Fatalf("found %d public and %d own packages; want at least verifier, ginverifier, verifiertest and issuer, keys, server", nPublic, nOwn)
	}
}

// sectionOf returns the text of the level-2 section of md that starts with heading.
func sectionOf(t *testing.T, md []byte, heading string) string {
	t.Helper()
	i := bytes.Index(md, []byte("\n"+heading+"\n"))
	if i < 0 {
		t.Fatalf("architecture.md has no %q section", heading)
	}
	rest := md[i+1+len(heading):]
	if j := bytes.Index(rest, []byte("\n## ")); j >= 0 {
		rest = rest[:j]
	}
	return string(rest)
}

// packageDirs maps each package of the module (without the module prefix) to its directory and
// non-test files.
func packageDirs(t *testing.T) map[string][]string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-f", `{{if .GoFiles}}{{.ImportPath}} {{.Dir}} {{join .GoFiles " "}}{{end}}`, module+"/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dirs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		for _, name := range f[2:] {
			dirs[strip(f[0])] = append(dirs[strip(f[0])], filepath.Join(f[1], name))
		}
	}
	return dirs
}

// packageDoc returns the package doc comments of files, whitespace folded, and whether any of
// them declares an exported name.
func packageDoc(t *testing.T, files []string) (doc string, exports bool) {
	t.Helper()
	if len(files) == 0 {
		t.Fatal("a package without files")
	}
	fset := token.NewFileSet()
	var docs []string
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil {
			docs = append(docs, f.Doc.Text())
		}
		if ast.FileExports(f) {
			exports = true
		}
	}
	return strings.Join(strings.Fields(strings.Join(docs, " ")), " "), exports
}
