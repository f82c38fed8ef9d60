// Package readlimit reads a file whole or refuses it when it is larger than a limit: never a
// part of it, since a configuration cut on a line boundary still parses and silently drops
// what followed. tokengate's and tokengate-auth's configuration loaders share it.
package readlimit

import (
	"fmt"
	"io"
	"os"
)

// TooLargeError refuses a file larger than Limit bytes.
type TooLargeError struct {
	Size, Limit int64
}

func (e *TooLargeError) Error() string {
	limit := fmt.Sprintf("%d bytes", e.Limit)
	if e.Limit >= 1<<20 && e.Limit%(1<<20) == 0 {
		limit += fmt.Sprintf(" (%d MiB)", e.Limit>>20)
	}
	return fmt.Sprintf("the file is %d bytes, over the limit of %s; it is refused, not read in part", e.Size, limit)
}

// Open opens the file at path, refusing with a *TooLargeError a regular file larger than limit
// (a pipe or device is measured by ReadAll as it is read).
func Open(path string, limit int64) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
		_ = f.Close()
		return nil, &TooLargeError{Size: fi.Size(), Limit: limit}
	}
	return f, nil
}

// ReadAll reads r to its end, or refuses with a *TooLargeError (naming the whole size, read on
// to count it) when r holds more than limit bytes. A read error is wrapped as "read: %w".
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if int64(len(raw)) > limit {
		rest, _ := io.Copy(io.Discard, r) // only to name the size
		return nil, &TooLargeError{Size: int64(len(raw)) + rest, Limit: limit}
	}
	return raw, nil
}
