package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMemory_PublishReplacesOnlyTheBlock: -publish rewrites the block between the markers on
// lines of their own, and keeps text that merely names the markers, and everything around.
func TestMemory_PublishReplacesOnlyTheBlock(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "page.md")
	page := "intro naming `<!-- bench-memory -->` markers\n## Kept heading\n<!-- bench-memory -->\nold\n<!-- /bench-memory -->\ntail\n"
	if err := os.WriteFile(doc, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &memoryResult{Command: "cmd", Points: []memoryPoint{{Sessions: 100_000, BaselineKiB: 30 << 10, RSSKiB: 130 << 10, KiBPerSession: 1.02}}}
	if err := r.save(dir, doc); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	got := string(b)
	for _, want := range []string{"intro naming", "## Kept heading", "| 100k |", "**missed**", "tail\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("page lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "old\n") {
		t.Errorf("the old block is still there:\n%s", got)
	}
}
