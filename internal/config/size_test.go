package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestParse_FileOverTheLimitIsRefusedNotTruncated: a file over 1 MiB (base, comment lines to
// exactly 1 MiB, then log_level: debug) is refused through Parse (a stream) and Load (a file)
// with the limit and the file's size; a file of exactly 1 MiB is read whole. How the limit
// reads is internal/readlimit's test.
func TestParse_FileOverTheLimitIsRefusedNotTruncated(t *testing.T) {
	pad := strings.Repeat("# "+strings.Repeat("x", 61)+"\n", (1<<20-len(base))/64-1)
	exact := base + pad + strings.Repeat("#", 1<<20-len(base)-len(pad)-1) + "\n"
	text := exact + "log_level: debug\n"
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	_, perr := Parse(strings.NewReader(text), noEnv)
	_, lerr := Load(path)
	want := fmt.Sprintf("config: the file is %d bytes, over the limit of 1048576 bytes (1 MiB); it is refused, not read in part", len(text))
	if perr == nil || perr.Error() != want || lerr == nil || lerr.Error() != want {
		t.Errorf("Parse: %v\nLoad: %v\nwant both: %s", perr, lerr, want)
	}
	if c, err := Parse(strings.NewReader(exact), noEnv); err != nil || c.LogLevel != "info" {
		t.Fatalf("a file of exactly 1 MiB: %v", err)
	}
}
