package forwardauth

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestConfig_FileOverTheLimitIsRefusedNotTruncated: a file over 1 MiB is refused with an error
// naming the limit and its size; before, it was cut at 1 MiB and a cut on a line boundary
// dropped the tail (here mode: proxy, which then fails open to mode: auth) without an error.
func TestConfig_FileOverTheLimitIsRefusedNotTruncated(t *testing.T) {
	var b strings.Builder
	b.WriteString("listen: 127.0.0.1:4180\nissuer: https://tokengate.internal\naudience: orders\nstream_secret: s\n")
	for b.Len()+64 <= 1<<20 {
		b.WriteString("# " + strings.Repeat("x", 61) + "\n")
	}
	b.WriteString(strings.Repeat("#", 1<<20-b.Len()-1) + "\n")
	b.WriteString("mode: proxy\nupstream: http://127.0.0.1:8080\n")
	text, size := b.String(), strconv.Itoa(b.Len())
	check := func(how string, c *Config, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: a %s-byte file was accepted (mode %q): it was read in part", how, size, c.Mode)
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
}
