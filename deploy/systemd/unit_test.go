// Package systemd holds tokengate's systemd unit and its example configuration; its test keeps
// the sandbox settings from being dropped and the two files in agreement. `make deploy-check`
// also runs systemd-analyze verify and security on the unit when systemd-analyze exists.
package systemd

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/forwardauth"
)

// unit reads tokengate.service as section → key → values (keys may repeat).
func unit(t *testing.T) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open("tokengate.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("not a unit file line: %q", line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

func TestUnit_Sandboxed(t *testing.T) {
	svc := unit(t)["Service"]
	want := map[string]string{
		"DynamicUser":             "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"AmbientCapabilities":     "",
		"StateDirectory":          "tokengate",
		"SystemCallFilter":        "@system-service",
		"SystemCallArchitectures": "native",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"RestrictNamespaces":      "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectKernelModules":    "yes",
		"ProtectControlGroups":    "yes",
		"MemoryDenyWriteExecute":  "yes",
		"LockPersonality":         "yes",
		"UMask":                   "0077",
	}
	for k, v := range want {
		vs, ok := svc[k]
		if !ok {
			t.Errorf("[Service] lacks %s=%s", k, v)
			continue
		}
		found := false
		for _, x := range vs {
			found = found || x == v
		}
		if !found {
			t.Errorf("[Service] %s=%v, want %s", k, vs, v)
		}
	}
	for _, k := range []string{"User", "Group", "ReadWritePaths"} {
		if _, ok := svc[k]; ok {
			t.Errorf("[Service] %s is set: DynamicUser and StateDirectory give the only writable place", k)
		}
	}
}

// TestUnit_ExampleConfigMatchesUnit: the example configuration loads with tokengate's own
// loader, keeps its data in the StateDirectory, reads the TLS pair from the unit's credentials,
// and the unit serves that file.
func TestUnit_ExampleConfigMatchesUnit(t *testing.T) {
	u := unit(t)
	svc := u["Service"]
	raw, err := os.ReadFile("tokengate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader(string(raw)), func(k string) string {
		if k == config.EnvUpstreamClientSecret {
			return "from-the-environment-file"
		}
		return ""
	})
	if err != nil {
		t.Fatalf("tokengate.yaml is refused: %v", err)
	}
	if cfg.DataDir != "/var/lib/"+svc["StateDirectory"][0] {
		t.Errorf("data_dir %s is not the StateDirectory", cfg.DataDir)
	}
	creds := map[string]bool{}
	for _, c := range svc["LoadCredential"] {
		name, _, _ := strings.Cut(c, ":")
		creds["/run/credentials/tokengate.service/"+name] = true
	}
	if cfg.TLS == nil || !creds[cfg.TLS.CertFile] || !creds[cfg.TLS.KeyFile] {
		t.Errorf("tls files %+v are not the unit's credentials %v", cfg.TLS, creds)
	}
	if cfg.Upstream.ClientSecret != "from-the-environment-file" || svc["EnvironmentFile"] == nil {
		t.Error("the upstream client secret must come from the EnvironmentFile")
	}
	if !strings.Contains(svc["ExecStart"][0], "serve --config /etc/tokengate/tokengate.yaml") {
		t.Errorf("ExecStart %q does not serve /etc/tokengate/tokengate.yaml", svc["ExecStart"][0])
	}
	if !strings.HasPrefix(cfg.AdminListen, "127.0.0.1:") {
		t.Errorf("admin_listen %s must stay on loopback", cfg.AdminListen)
	}
	if u["Install"]["WantedBy"] == nil {
		t.Error("[Install] WantedBy is missing")
	}
}

func TestAuthUnit_SandboxedAndConfigValid(t *testing.T) {
	f, err := os.Open("tokengate-auth.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	svc := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case section == "Service":
			k, v, _ := strings.Cut(line, "=")
			svc[k] = append(svc[k], v)
		}
	}
	for k, v := range map[string]string{"DynamicUser": "yes", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
		"CapabilityBoundingSet": "", "SystemCallFilter": "@system-service", "PrivateUsers": "yes"} {
		if len(svc[k]) == 0 || svc[k][0] != v {
			t.Errorf("tokengate-auth.service: %s=%v, want %q", k, svc[k], v)
		}
	}
	if len(svc["ExecStart"]) != 1 || !strings.Contains(svc["ExecStart"][0], "serve --config /etc/tokengate/tokengate-auth.yaml") {
		t.Errorf("ExecStart %v", svc["ExecStart"])
	}
	raw, err := os.ReadFile("tokengate-auth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{forwardauth.EnvStreamSecret: "from-auth.env"}
	if _, err := forwardauth.Parse(bytes.NewReader(raw), func(k string) string { return env[k] }); err != nil {
		t.Errorf("tokengate-auth.yaml is refused: %v", err)
	}
}
