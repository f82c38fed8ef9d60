package forwardauth

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfig_FileOverTheLimitIsRefusedNotTruncated: a file over 1 MiB is refused through Parse
// and Load with the limit and its size; before, it was cut at 1 MiB and a cut on a line
// boundary dropped the tail (here mode: proxy, which then fails open to mode: auth) without an
// error. How the limit reads is internal/readlimit's test.
func TestConfig_FileOverTheLimitIsRefusedNotTruncated(t *testing.T) {
	head := "listen: 127.0.0.1:4180\nissuer: https://tokengate.internal\naudience: orders\nstream_secret: s\n"
	text := head + strings.Repeat("#", 1<<20-len(head)-1) + "\nmode: proxy\nupstream: http://127.0.0.1:8080\n"
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("config: the file is %d bytes, over the limit of 1048576 bytes (1 MiB); it is refused, not read in part", len(text))
	if _, err := Parse(strings.NewReader(text), func(string) string { return "" }); err == nil || err.Error() != want {
		t.Errorf("Parse: %v, want %s", err, want)
	}
	if _, err := Load(path); err == nil || err.Error() != want {
		t.Errorf("Load: %v, want %s", err, want)
	}
}
