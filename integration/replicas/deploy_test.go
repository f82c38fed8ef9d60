package replicas

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
)

// TestDeployConfigsAreValid keeps deploy/replicas' configuration files loadable: they are
// documentation a user copies, so they must not rot as the configuration grows.
func TestDeployConfigsAreValid(t *testing.T) {
	files, err := filepath.Glob("../../deploy/replicas/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../../deploy/replicas/systemd/*.yaml")
	files = append(files, more...)
	if len(files) < 4 {
		t.Fatalf("found %d deploy/replicas configuration files, want 4", len(files))
	}
	env := map[string]string{
		config.EnvUpstreamClientSecret: "from-the-environment",
		config.EnvEtcdPassword:         "from-the-environment",
	}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			c, err := config.Parse(fh, func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if c.Store.Backend != config.BackendEtcd || len(c.Store.Etcd.Endpoints) != 3 {
				t.Errorf("store = %+v, want etcd with 3 endpoints", c.Store)
			}
		})
	}
	procfile, err := os.ReadFile("../../deploy/replicas/Procfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tokengate-1.yaml", "tokengate-2.yaml", "tokengate-3.yaml", "--name m1", "--name m2", "--name m3"} {
		if !strings.Contains(string(procfile), want) {
			t.Errorf("Procfile does not mention %s", want)
		}
	}
}
