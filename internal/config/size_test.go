package config

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// overLimit is base padded with comment lines to exactly 1 MiB, then a key that matters: a
// reader that stops at 1 MiB cuts on a line boundary and drops the key without a parse error.
func overLimit() string {
	var b strings.Builder
	b.WriteString(base)
	line := "# " + strings.Repeat("x", 61) + "\n" // 64 bytes
	for b.Len()+len(line) <= 1<<20 {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("#", 1<<20-b.Len()-1) + "\n")
	b.WriteString("log_level: debug\n")
	return b.String()
}

// TestParse_FileOverTheLimitIsRefusedNotTruncated: a file over 1 MiB is refused with an error
// naming the limit and the file's size, both through Parse (a stream) and Load (a file).
func TestParse_FileOverTheLimitIsRefusedNotTruncated(t *testing.T) {
	text := overLimit()
	if !strings.HasSuffix(text[:1<<20], "\n") {
		t.Fatal("test bug: the padding does not end on a line boundary at 1 MiB")
	}
	size := strconv.Itoa(len(text))
	check := func(how string, c *Config, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: a %s-byte file was accepted (log_level %q): it was read in part", how, size, c.LogLevel)
		}
		for _, want := range []string{"1048576", size, "limit"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not name %q", how, err, want)
			}
		}
	}
	c, err := Parse(strings.NewReader(text), func(string) string { return "" })
	check("Parse", c, err)
	p := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Load(p)
	check("Load", c, err)

	// A file of exactly the limit is read whole.
	exact := text[:1<<20]
	if c, err := Parse(strings.NewReader(exact), func(string) string { return "" }); err != nil || c.LogLevel != "info" {
		t.Fatalf("a file of exactly 1 MiB: %v", err)
	}
}
