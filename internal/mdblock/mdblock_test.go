package mdblock_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokengate/tokengate/internal/mdblock"
)

func TestReplace(t *testing.T) {
	const page = "# Results\n\nThe `<!-- run -->` block below is generated.\n\n<!-- run -->\nold\nlines\n<!-- /run -->\n\n## Next\n"
	for _, tc := range []struct {
		name, page, body, want string
		err                    error
	}{
		{"replaced, prose quoting the marker left alone", page, "new\n",
			"# Results\n\nThe `<!-- run -->` block below is generated.\n\n<!-- run -->\nnew\n<!-- /run -->\n\n## Next\n", nil},
		{"empty body", page, "",
			"# Results\n\nThe `<!-- run -->` block below is generated.\n\n<!-- run -->\n<!-- /run -->\n\n## Next\n", nil},
		{"CRLF markers", "a\r\n<!-- run -->\r\nold\r\n<!-- /run -->\r\nb\r\n", "new\n", "a\r\n<!-- run -->\nnew\n<!-- /run -->\r\nb\r\n", nil},
		{"closing marker last, without a line break", "<!-- run -->\nold\n<!-- /run -->", "new\n", "<!-- run -->\nnew\n<!-- /run -->", nil},
		{"another block's markers do not count", "<!-- runs -->\nx\n<!-- /runs -->\n", "new\n", "", mdblock.ErrMissing},
		{"no markers", "# Results\n", "new\n", "", mdblock.ErrMissing},
		{"only quoted in prose", "see `<!-- run -->` and <!-- /run --> here\n", "new\n", "", mdblock.ErrMissing},
		{"opening marker only", "<!-- run -->\nold\n", "new\n", "", mdblock.ErrUnbalanced},
		{"closing marker only", "old\n<!-- /run -->\n", "new\n", "", mdblock.ErrUnbalanced},
		{"closing before opening", "<!-- /run -->\nold\n<!-- run -->\n", "new\n", "", mdblock.ErrUnbalanced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mdblock.Replace([]byte(tc.page), "run", tc.body)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && string(got) != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestReplaceFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "page.md")
	if err := os.WriteFile(path, []byte("top\n<!-- run -->\nold\n<!-- /run -->\nbottom\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"first\n", "second\n"} {
		if err := mdblock.ReplaceFile(path, "run", body); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := "top\n<!-- run -->\nsecond\n<!-- /run -->\nbottom\n"; string(got) != want {
		t.Errorf("page = %q, want %q", got, want)
	}
	if err := mdblock.ReplaceFile(path, "other", "x\n"); !errors.Is(err, mdblock.ErrMissing) {
		t.Errorf("a page without the block: %v, want ErrMissing", err)
	}
	if err := mdblock.ReplaceFile(filepath.Join(t.TempDir(), "none.md"), "run", "x\n"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing page: %v, want not exist", err)
	}
}
