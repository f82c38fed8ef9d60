package readlimit_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tokengate/tokengate/internal/readlimit"
)

// padded is head, comment lines up to exactly limit bytes, then tail: a reader that stops at
// the limit cuts on a line boundary and drops tail without a parse error.
func padded(head, tail string, limit int) string {
	var b strings.Builder
	b.WriteString(head)
	line := "# " + strings.Repeat("x", 13) + "\n" // 16 bytes
	for b.Len()+len(line) <= limit {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("#", limit-b.Len()-1) + "\n")
	return b.String() + tail
}

// TestReadAllAndOpen_OverTheLimitRefusedNotCut: over the limit, both the stream (ReadAll) and
// the file (Open, by its size) are refused with the whole size and the limit, never cut; at
// exactly the limit the content is read whole.
func TestReadAllAndOpen_OverTheLimitRefusedNotCut(t *testing.T) {
	const limit = 1 << 20
	text := padded("key: 1\n", "dropped: 2\n", limit)
	if len(text) <= limit || !strings.HasSuffix(text[:limit], "\n") {
		t.Fatal("test bug: the padding does not end on a line boundary at the limit")
	}
	want := "the file is 1048587 bytes, over the limit of 1048576 bytes (1 MiB); it is refused, not read in part"
	check := func(how string, err error) {
		t.Helper()
		var tl *readlimit.TooLargeError
		if !errors.As(err, &tl) || tl.Size != int64(len(text)) || tl.Limit != limit || err.Error() != want {
			t.Errorf("%s: %v, want %q", how, err, want)
		}
	}
	raw, err := readlimit.ReadAll(strings.NewReader(text), limit)
	if raw != nil {
		t.Errorf("ReadAll returned %d bytes of an over-limit stream", len(raw))
	}
	check("ReadAll", err)
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := readlimit.Open(path, limit)
	if f != nil {
		_ = f.Close()
	}
	check("Open", err)

	exact := text[:limit]
	if raw, err := readlimit.ReadAll(strings.NewReader(exact), limit); err != nil || string(raw) != exact {
		t.Errorf("ReadAll at exactly the limit: %d bytes, %v", len(raw), err)
	}
	if err := os.WriteFile(path, []byte(exact), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err = readlimit.Open(path, limit)
	if err != nil {
		t.Fatalf("Open at exactly the limit: %v", err)
	}
	defer f.Close()
	if raw, err := readlimit.ReadAll(f, limit); err != nil || string(raw) != exact {
		t.Errorf("ReadAll of the opened file: %d bytes, %v", len(raw), err)
	}
}

// TestReadAll_ErrorsAndOddLimits: a read error is passed on wrapped; a limit that is not whole
// MiB is named in bytes only; Open of a missing file returns the os error.
func TestReadAll_ErrorsAndOddLimits(t *testing.T) {
	boom := errors.New("boom")
	if _, err := readlimit.ReadAll(iotest.ErrReader(boom), 10); !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "read: ") {
		t.Errorf("read error: %v", err)
	}
	_, err := readlimit.ReadAll(io.LimitReader(strings.NewReader(strings.Repeat("a", 100)), 11), 10)
	if want := "the file is 11 bytes, over the limit of 10 bytes; it is refused, not read in part"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if _, err := readlimit.Open(filepath.Join(t.TempDir(), "none"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
