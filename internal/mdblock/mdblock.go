// Package mdblock rewrites a generated block of a Markdown page: the lines from
// "<!-- name -->" to "<!-- /name -->", each marker alone on its line, so that prose quoting a
// marker is never taken for it. The benchmark, the load tool's memory run and the chaos
// suite publish their results this way.
package mdblock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

var (
	// ErrMissing: the page has neither marker of the block.
	ErrMissing = errors.New("mdblock: no such block")
	// ErrUnbalanced: the page has one marker without the other, or the closing one first.
	ErrUnbalanced = errors.New("mdblock: unbalanced markers")
)

// Begin is the opening marker of block name.
func Begin(name string) string { return "<!-- " + name + " -->" }

// End is the closing marker of block name.
func End(name string) string { return "<!-- /" + name + " -->" }

// Block returns body between the markers of name: the opening marker on a line of its own,
// body (which ends with a line break when not empty), the closing marker without a line break.
func Block(name, body string) string { return Begin(name) + "\n" + body + End(name) }

// Replace returns page with its block name replaced by Block(name, body); what follows the
// closing marker on its line (its line break) is kept. It returns ErrMissing or ErrUnbalanced,
// wrapped with the markers' text, when the page has no such block.
func Replace(page []byte, name, body string) ([]byte, error) {
	begin, end := Begin(name), End(name)
	i, j := markerLine(page, begin), markerLine(page, end)
	switch {
	case i >= 0 && j > i:
	case i < 0 && j < 0:
		return nil, fmt.Errorf("no %s … %s block: %w", begin, end, ErrMissing)
	default:
		return nil, fmt.Errorf("%s … %s: %w", begin, end, ErrUnbalanced)
	}
	out := make([]byte, 0, len(page)+len(body))
	out = append(out, page[:i]...)
	out = append(out, Block(name, body)...)
	return append(out, page[j+len(end):]...), nil
}

// ReplaceFile rewrites the block name of the page at path (see Replace).
func ReplaceFile(path, name, body string) error {
	page, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := Replace(page, name, body)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// markerLine returns the offset of the first line of src that is exactly marker (a trailing
// \r allowed), -1 when none.
func markerLine(src []byte, marker string) int {
	for off := 0; off < len(src); {
		line := src[off:]
		if k := bytes.IndexByte(line, '\n'); k >= 0 {
			line = line[:k]
		}
		if string(bytes.TrimRight(line, "\r")) == marker {
			return off
		}
		off += len(line) + 1
	}
	return -1
}
