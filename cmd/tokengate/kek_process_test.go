package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKEKFile_ServeAndCheckConfigRefuseABadOne: a keys.kek_file other users may read, or one
// that is empty, short or missing, makes serve and check-config alike exit non-zero naming
// keys.kek_file and what to do; one only its owner reads passes check-config.
func TestKEKFile_ServeAndCheckConfigRefuseABadOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := baseConfig("http://127.0.0.1:1/realms/demo", filepath.Join(dir, "data"))
	base.Listen, base.AdminListen = "127.0.0.1:1", "127.0.0.1:2"
	// withKEK writes content to a KEK file of mode perm and returns a configuration naming it.
	withKEK := func(name, content string, perm os.FileMode) string {
		f := writeFile(t, dir, name, content)
		if err := os.Chmod(f, perm); err != nil {
			t.Fatal(err)
		}
		c := base
		c.Keys.KEKFile = f
		return marshal(t, c)
	}
	goodKEK := base64.StdEncoding.EncodeToString(make([]byte, 32))
	missing := base
	missing.Keys.KEKFile = filepath.Join(dir, "absent")
	for _, tc := range []struct {
		name, content string
		want          []string // every one must be in stderr
	}{
		{"other users may read it", withKEK("kek-644", goodKEK, 0o644), []string{"keys.kek_file", "other users", "chmod 600"}},
		{"empty", withKEK("kek-empty", "", 0o600), []string{"keys.kek_file", "is empty", "gen-kek"}},
		{"short", withKEK("kek-short", "c2hvcnQ=", 0o600), []string{"keys.kek_file", "want 32 bytes"}},
		{"missing", marshal(t, missing), []string{"keys.kek_file", "no such file", "gen-kek"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			refusedByServeAndCheckConfig(t, writeFile(t, t.TempDir(), "bad.yaml", tc.content), tc.want, goodKEK)
		})
	}
	t.Run("owner only", func(t *testing.T) {
		t.Parallel()
		cfg := writeFile(t, t.TempDir(), "good.yaml", withKEK("kek-600", goodKEK, 0o600))
		if code, stdout, stderr := runCLI(t, "", "check-config", "--config", cfg); code != 0 || !strings.Contains(stdout, "valid") {
			t.Fatalf("check-config: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
}
