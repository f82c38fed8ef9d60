package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("listen: 127.0.0.1:4180\nissuer: https://tokengate.internal\naudience: orders\nstream_secret: s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("mode: proxy\nlisten: 127.0.0.1:4180\nissuer: https://tokengate.internal\naudience: orders\nstream_secret: s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if err := run(context.Background(), []string{"check-config", "--config", good}, &out, &errOut); err != nil || out.String() != "configuration is valid\n" {
		t.Errorf("good config: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"check-config", "--config", bad}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "upstream: is required") {
		t.Errorf("proxy without upstream: %v", err)
	}
	// A file over 1 MiB is refused by check-config (serve loads it through the same forwardauth.Load).
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("listen: 127.0.0.1:4180\nissuer: https://tokengate.internal\naudience: orders\nstream_secret: s\n"+
		strings.Repeat("# padding\n", 110000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check-config"} {
		if err := run(context.Background(), []string{cmd, "--config", big}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "1048576") {
			t.Errorf("%s of a file over 1 MiB: %v", cmd, err)
		}
	}
	for _, args := range [][]string{nil, {"serve"}, {"frobnicate"}, {"serve", "--config", good, "extra"}} {
		if err := run(context.Background(), args, &out, &errOut); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
