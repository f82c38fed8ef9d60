package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kekConfig is a configuration whose keys.kek_file is a file in a fresh directory holding
// content with mode perm.
func kekConfig(t *testing.T, content string, perm os.FileMode) (*Config, string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "kek")
	if err := os.WriteFile(f, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, perm); err != nil { // past the umask
		t.Fatal(err)
	}
	return &Config{Keys: Keys{KEKFile: f}}, f
}

var goodKEK = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")) + "\n"

func noEnv(string) string { return "" }

func TestKEKFile_ReadWhenOnlyTheOwnerMayReadIt(t *testing.T) {
	for _, perm := range []os.FileMode{0o600, 0o400, 0o640} {
		c, _ := kekConfig(t, goodKEK, perm)
		kek, err := c.KEK(noEnv)
		if err != nil || string(kek) != "0123456789abcdef0123456789abcdef" {
			t.Errorf("mode %o: %q, %v", perm, kek, err)
		}
	}
}

// A KEK file other users may read (or write) is refused: anyone on the host could open the
// private keys at rest with it (or swap it). The error names the file and the fix.
func TestKEKFile_OthersMayReadItRefused(t *testing.T) {
	for _, perm := range []os.FileMode{0o644, 0o604, 0o602, 0o666} {
		c, f := kekConfig(t, goodKEK, perm)
		kek, err := c.KEK(noEnv)
		if err == nil || kek != nil {
			t.Fatalf("mode %o: accepted (%d bytes)", perm, len(kek))
		}
		for _, want := range []string{"keys.kek_file", f, "other users", "chmod 600"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("mode %o: error %q does not say %q", perm, err, want)
			}
		}
		if strings.Contains(err.Error(), strings.TrimSpace(goodKEK)) {
			t.Errorf("error %q carries the key", err)
		}
	}
}

func TestKEKFile_MissingEmptyOrShortIsAClearError(t *testing.T) {
	empty, emptyPath := kekConfig(t, "\n", 0o600)
	short, _ := kekConfig(t, base64.StdEncoding.EncodeToString([]byte("too short")), 0o600)
	missing := &Config{Keys: Keys{KEKFile: filepath.Join(t.TempDir(), "absent")}}
	for name, tc := range map[string]struct {
		c    *Config
		want []string
	}{
		"missing": {missing, []string{"keys.kek_file", "absent", "no such file", "tokengate gen-kek"}},
		"empty":   {empty, []string{"keys.kek_file", emptyPath, "is empty", "tokengate gen-kek"}},
		"short":   {short, []string{"keys.kek_file", "want 32 bytes", "tokengate gen-kek"}},
	} {
		kek, err := tc.c.KEK(noEnv)
		if err == nil || kek != nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", name, err, w)
			}
		}
	}
}
