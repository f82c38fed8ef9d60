// Package helm holds tokengate's Helm chart (deploy/helm/tokengate); its test renders the chart
// with the pinned helm and checks what neither helm lint nor kubeconform can: the rendered
// configuration is accepted by the real tokengate and tokengate-auth binaries with exactly the
// environment the pods get, every file it names is mounted, the admin port stays off the public
// Service, every container is locked down, and no secret ever reaches a ConfigMap.
//
// It needs helm: TOKENGATE_HELM names the binary (make deploy-check sets it from
// scripts/tools.sh helm); without it the test is skipped. TOKENGATE_BIN and TOKENGATE_AUTH_BIN
// name the binaries to run check-config with (built here when unset).
package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type obj = map[string]any

const chart = "tokengate"

func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(obj)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string { s, _ := get(v, path...).(string); return s }
func list(v any, path ...any) []any { l, _ := get(v, path...).([]any); return l }
func mp(v any, path ...any) obj     { m, _ := get(v, path...).(obj); return m }

func helmBin(t *testing.T) string {
	t.Helper()
	h := os.Getenv("TOKENGATE_HELM")
	if h == "" {
		t.Skip("TOKENGATE_HELM is not set (make deploy-check sets it: scripts/tools.sh helm)")
	}
	return h
}

// template runs helm template with the value files (relative to the chart) and extra args.
func template(t *testing.T, files []string, args ...string) (string, error) {
	t.Helper()
	cmd := []string{"template", "tokengate", chart, "--namespace", "tokengate"}
	for _, f := range files {
		cmd = append(cmd, "-f", filepath.Join(chart, f))
	}
	cmd = append(cmd, args...)
	var out, stderr bytes.Buffer
	c := exec.Command(helmBin(t), cmd...)
	c.Stdout, c.Stderr = &out, &stderr
	err := c.Run()
	if err != nil {
		err = fmt.Errorf("helm %s: %w: %s", strings.Join(cmd, " "), err, stderr.String())
	}
	return out.String(), err
}

// valueSet is a combination of value files (relative to the chart) and --set arguments.
type valueSet struct{ files, set []string }

// render returns the documents of helm template, by kind/name.
func render(t *testing.T, vs valueSet) (map[string]obj, string) {
	t.Helper()
	var args []string
	for _, s := range vs.set {
		args = append(args, "--set", s)
	}
	files := vs.files
	text, err := template(t, files, args...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]obj{}
	dec := yaml.NewDecoder(strings.NewReader(text))
	for {
		var o obj
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%v: %v", files, err)
		}
		if o == nil {
			continue
		}
		key := str(o, "kind") + "/" + str(o, "metadata", "name")
		if _, dup := out[key]; dup {
			t.Fatalf("%v: %s rendered twice", files, key)
		}
		out[key] = o
	}
	return out, text
}

// valueSets are the combinations rendered here: the four make deploy-check also lints and
// validates with kubeconform, the defaults, and the other branches of the templates (no TLS, a
// sidecar on a configured stream, no KEK, shared signals with etcd but no etcd TLS or user).
var valueSets = map[string]valueSet{
	"defaults":         {},
	"single":           {files: []string{"values-single.yaml"}},
	"replicas":         {files: []string{"values-replicas.yaml"}},
	"single+sidecar":   {files: []string{"values-single.yaml", "values-sidecar.yaml"}},
	"replicas+sidecar": {files: []string{"values-replicas.yaml", "values-sidecar.yaml"}},
	"plain-http+stream-sidecar+no-kek": {files: []string{"values-single.yaml", "values-sidecar.yaml"}, set: []string{
		"tls.secretName=", "secrets.kek.name=", "authSidecar.workloads[0].ownStream=false",
		"authSidecar.workloads[0].streamId=orders", "authSidecar.issuerCA.secretName=",
	}},
	"etcd-plain": {files: []string{"values-replicas.yaml"}, set: []string{
		"store.etcd.tls.secretName=", "store.etcd.username=", "store.etcd.endpoints={http://etcd:2379}",
		"networkPolicy.egress.enabled=false", "replicas=2",
	}},
}

// binary returns $env or a fresh build of ./cmd/name.
func binary(t *testing.T, env, name string) string {
	t.Helper()
	if b := os.Getenv(env); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	out := filepath.Join(t.TempDir(), name)
	if b, err := exec.Command("go", "build", "-o", out, "../../cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	return out
}

// checkConfig runs `bin check-config` on text with the environment variables the container
// declares, each set to a placeholder: a variable the pod lacks is missing here too.
// kekFile finds the kek_file key of a rendered tokengate.yaml: the key and its path.
var kekFile = regexp.MustCompile(`(?m)(^\s*kek_file:\s*)(\S+)$`)

func checkConfig(t *testing.T, bin, text string, container obj) {
	t.Helper()
	dir := t.TempDir()
	// check-config reads the KEK file (kek_file) as serve does: give it a real one in place of the
	// Secret the pod mounts there (that it is mounted is checked by the caller).
	if m := kekFile.FindStringSubmatch(text); m != nil {
		kek, err := exec.Command(bin, "gen-kek").Output()
		if err != nil {
			t.Fatalf("%s gen-kek: %v", filepath.Base(bin), err)
		}
		local := filepath.Join(dir, "kek")
		if err := os.WriteFile(local, kek, 0o600); err != nil {
			t.Fatal(err)
		}
		text = strings.Replace(text, m[0], m[1]+local, 1)
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check-config", "--config", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range list(container, "env") {
		name := str(e, "name")
		if get(e, "valueFrom", "secretKeyRef") != nil {
			v := "placeholder-secret-0123456789abcdef0123456789"
			if name == "TOKENGATE_KEK" {
				v = strings.Repeat("ab", 32)
			}
			cmd.Env = append(cmd.Env, name+"="+v)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s check-config refused the rendered configuration: %v\n%s\n--- config:\n%s", filepath.Base(bin), err, out, text)
	}
}

func container(t *testing.T, pod obj, name string) obj {
	t.Helper()
	for _, c := range list(pod, "spec", "containers") {
		if str(c, "name") == name {
			return c.(obj)
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// port returns the containerPort named name.
func port(t *testing.T, c obj, name string) int {
	t.Helper()
	for _, p := range list(c, "ports") {
		if str(p, "name") == name {
			n, _ := get(p, "containerPort").(int)
			return n
		}
	}
	t.Fatalf("container %s has no port %q", str(c, "name"), name)
	return 0
}

func listenPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// mounted reports whether path lies under one of the container's volume mounts.
func mounted(c obj, path string) bool {
	for _, m := range list(c, "volumeMounts") {
		if mp := str(m, "mountPath"); strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") {
			return true
		}
	}
	return false
}

// filePaths returns every value of a key ending in _file in the YAML text.
func filePaths(t *testing.T, text string) map[string]string {
	t.Helper()
	var doc obj
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case obj:
			for k, e := range x {
				if s, ok := e.(string); ok && strings.HasSuffix(k, "_file") {
					out[prefix+k] = s
				}
				walk(prefix+k+".", e)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s%d.", prefix, i), e)
			}
		}
	}
	walk("", doc)
	return out
}

// pods returns the pod templates of the rendered workloads, by kind/name.
func pods(m map[string]obj) map[string]obj {
	out := map[string]obj{}
	for k, o := range m {
		if kind := str(o, "kind"); kind == "Deployment" || kind == "StatefulSet" {
			out[k] = mp(o, "spec", "template")
		}
	}
	return out
}

// TestChart_RenderedConfigIsAcceptedByTheBinaries: for every value set, the tokengate.yaml and
// each tokengate-auth.yaml the chart renders pass the real binaries' check-config, with the
// environment variables the pods declare; the files they name are mounted; the listeners match
// the container ports and probes.
func TestChart_RenderedConfigIsAcceptedByTheBinaries(t *testing.T) {
	helmBin(t)
	tg := binary(t, "TOKENGATE_BIN", "tokengate")
	auth := binary(t, "TOKENGATE_AUTH_BIN", "tokengate-auth")
	for name, vs := range valueSets {
		t.Run(name, func(t *testing.T) {
			m, _ := render(t, vs)
			cm := m["ConfigMap/tokengate-config"]
			text := str(cm, "data", "tokengate.yaml")
			if text == "" {
				t.Fatal("no ConfigMap tokengate-config with tokengate.yaml")
			}
			var pod obj
			for k, p := range pods(m) {
				if strings.HasSuffix(k, "/tokengate") {
					pod = p
				}
			}
			if pod == nil {
				t.Fatal("no tokengate workload rendered")
			}
			c := container(t, pod, "tokengate")
			checkConfig(t, tg, text, c)

			var cfg struct {
				Listen      string `yaml:"listen"`
				AdminListen string `yaml:"admin_listen"`
				DataDir     string `yaml:"data_dir"`
				Store       struct {
					Backend string `yaml:"backend"`
				} `yaml:"store"`
			}
			if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
				t.Fatal(err)
			}
			public := "https"
			if !strings.Contains(text, "cert_file") {
				public = "http"
			}
			if listenPort(t, cfg.Listen) != port(t, c, public) || listenPort(t, cfg.AdminListen) != port(t, c, "admin") {
				t.Fatalf("listen %s / admin_listen %s do not match the container ports %v", cfg.Listen, cfg.AdminListen, list(c, "ports"))
			}
			if !mounted(c, cfg.DataDir+"/x") {
				t.Fatalf("data_dir %s is not a mounted volume (the root filesystem is read-only)", cfg.DataDir)
			}
			for key, path := range filePaths(t, text) {
				if !mounted(c, path) {
					t.Errorf("%s: %s is not under any volume mount of the tokengate container", key, path)
				}
			}
			for probe, want := range map[string]string{"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				if str(c, probe, "httpGet", "path") != want || str(c, probe, "httpGet", "port") != "admin" {
					t.Errorf("%s = %v, want GET %s on the admin port", probe, get(c, probe), want)
				}
			}
			bolt := cfg.Store.Backend == "bolt"
			if _, ok := m["StatefulSet/tokengate"]; ok != bolt {
				t.Errorf("store.backend %s: StatefulSet rendered = %v", cfg.Store.Backend, ok)
			}
			if bolt && len(list(m["StatefulSet/tokengate"], "spec", "volumeClaimTemplates")) != 1 {
				t.Error("bolt: the StatefulSet has no volume claim for data_dir")
			}

			// Every tokengate-auth sidecar's configuration, with its container's environment.
			for k, p := range pods(m) {
				if strings.HasSuffix(k, "/tokengate") {
					continue
				}
				sc := container(t, p, "tokengate-auth")
				cmName := str(get(p, "spec", "volumes", 0), "configMap", "name")
				authText := str(m["ConfigMap/"+cmName], "data", "tokengate-auth.yaml")
				if authText == "" {
					t.Fatalf("%s: no tokengate-auth.yaml in ConfigMap %q", k, cmName)
				}
				checkConfig(t, auth, authText, sc)
				var ac struct {
					Listen, Issuer string
					AdminListen    string `yaml:"admin_listen"`
				}
				_ = yaml.Unmarshal([]byte(authText), &ac)
				var issuer struct{ Issuer string }
				_ = yaml.Unmarshal([]byte(text), &issuer)
				if ac.Issuer != issuer.Issuer {
					t.Errorf("%s: tokengate-auth issuer %q, tokengate's %q", k, ac.Issuer, issuer.Issuer)
				}
				if listenPort(t, ac.Listen) != port(t, sc, "http") || listenPort(t, ac.AdminListen) != port(t, sc, "auth-admin") {
					t.Errorf("%s: tokengate-auth listeners do not match its ports", k)
				}
			}
		})
	}
}

// TestChart_LockedDown: every container of every value set runs as non-root with a read-only
// root filesystem, no privilege escalation and no capabilities; no service-account token.
func TestChart_LockedDown(t *testing.T) {
	helmBin(t)
	for name, vs := range valueSets {
		t.Run(name, func(t *testing.T) {
			m, _ := render(t, vs)
			for k, p := range pods(m) {
				if get(p, "spec", "automountServiceAccountToken") != false {
					t.Errorf("%s: automountServiceAccountToken is not false", k)
				}
				if get(p, "spec", "securityContext", "runAsNonRoot") != true {
					t.Errorf("%s: pod runAsNonRoot is not true", k)
				}
				for _, c := range list(p, "spec", "containers") {
					sc := mp(c, "securityContext")
					if sc["runAsNonRoot"] != true && get(p, "spec", "securityContext", "runAsNonRoot") != true {
						t.Errorf("%s/%s: may run as root", k, str(c, "name"))
					}
					if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false ||
						!slices.Equal(list(sc, "capabilities", "drop"), []any{"ALL"}) {
						t.Errorf("%s/%s: securityContext %v is not locked down", k, str(c, "name"), sc)
					}
					if get(c, "resources", "limits", "memory") == nil {
						t.Errorf("%s/%s: no memory limit", k, str(c, "name"))
					}
				}
			}
		})
	}
}

// TestChart_AdminPortNeverPublic: no Service but the headless admin one reaches the admin port;
// that one exists only when asked for (or for the ServiceMonitor), and the NetworkPolicy never
// admits any source to it.
func TestChart_AdminPortNeverPublic(t *testing.T) {
	helmBin(t)
	for name, vs := range valueSets {
		t.Run(name, func(t *testing.T) {
			m, _ := render(t, vs)
			_, hasMonitor := m["ServiceMonitor/tokengate"]
			for k, o := range m {
				if str(o, "kind") != "Service" {
					continue
				}
				for _, p := range list(o, "spec", "ports") {
					if tp := fmt.Sprint(get(p, "targetPort")); tp != "admin" && tp != "auth-admin" {
						continue
					}
					if k != "Service/tokengate-admin" || str(o, "spec", "clusterIP") != "None" || str(o, "spec", "type") != "ClusterIP" {
						t.Errorf("%s exposes an admin port: %v", k, p)
					}
				}
			}
			if _, ok := m["Service/tokengate-admin"]; ok != hasMonitor && name != "defaults" {
				t.Errorf("admin Service rendered = %v, ServiceMonitor = %v", ok, hasMonitor)
			}
			if name == "defaults" {
				if _, ok := m["Service/tokengate-admin"]; ok {
					t.Error("the defaults render an admin Service")
				}
				if hasMonitor {
					t.Error("the defaults render a ServiceMonitor")
				}
			}
			for k, o := range m {
				if str(o, "kind") != "NetworkPolicy" {
					continue
				}
				for _, r := range list(o, "spec", "ingress") {
					for _, p := range list(r, "ports") {
						if pn := fmt.Sprint(get(p, "port")); (pn == "admin" || pn == "auth-admin") && len(list(r, "from")) == 0 {
							t.Errorf("%s admits any source to the %s port", k, pn)
						}
					}
				}
			}
			if sm, ok := m["ServiceMonitor/tokengate"]; ok {
				svc := m["Service/tokengate-admin"]
				for k, v := range mp(sm, "spec", "selector", "matchLabels") {
					if get(svc, "metadata", "labels", k) != v {
						t.Errorf("ServiceMonitor selects %s=%v, the admin Service has %v", k, v, get(svc, "metadata", "labels", k))
					}
				}
				if pub := m["Service/tokengate"]; get(pub, "metadata", "labels", "app.kubernetes.io/component") == "admin" {
					t.Error("the ServiceMonitor's selector also matches the public Service")
				}
				if str(sm, "spec", "endpoints", 0, "port") != "admin" || str(sm, "spec", "endpoints", 0, "path") != "/metrics" {
					t.Errorf("ServiceMonitor endpoint %v, want port admin path /metrics", get(sm, "spec", "endpoints", 0))
				}
			}
		})
	}
}

// TestChart_NetworkPolicyNamesPeers: with the example value sets the public port admits only the
// named peers (BFF, services, Keycloak, and the sidecar workloads for /jwks and /ssf); with etcd
// and egress on, egress reaches only DNS, Keycloak and etcd.
func TestChart_NetworkPolicyNamesPeers(t *testing.T) {
	helmBin(t)
	m, _ := render(t, valueSets["replicas+sidecar"])
	np := m["NetworkPolicy/tokengate"]
	var public []any
	for _, r := range list(np, "spec", "ingress") {
		if fmt.Sprint(get(r, "ports", 0, "port")) == "https" {
			public = list(r, "from")
		}
	}
	if len(public) != 4 { // BFF, services, Keycloak, the orders workload
		t.Fatalf("public port admits %d peers, want 4: %v", len(public), public)
	}
	if str(public[3], "podSelector", "matchLabels", "app.kubernetes.io/name") != "orders" {
		t.Errorf("the sidecar workload is not admitted to /jwks and /ssf: %v", public[3])
	}
	if !slices.Contains(list(np, "spec", "policyTypes"), any("Egress")) || len(list(np, "spec", "egress")) != 3 {
		t.Errorf("egress %v, want DNS, Keycloak and etcd only", get(np, "spec", "egress"))
	}
	// The service behind tokengate-auth: only the proxy port, never the service's own port.
	for _, r := range list(m["NetworkPolicy/orders"], "spec", "ingress") {
		for _, p := range list(r, "ports") {
			if pn := fmt.Sprint(get(p, "port")); pn != "http" && pn != "auth-admin" {
				t.Errorf("orders' NetworkPolicy admits port %s", pn)
			}
		}
	}
	if fmt.Sprint(get(m["Service/orders"], "spec", "ports", 0, "targetPort")) != "http" || len(list(m["Service/orders"], "spec", "ports")) != 1 {
		t.Errorf("Service orders: %v, want the tokengate-auth port only", get(m["Service/orders"], "spec", "ports"))
	}
}

var secretKey = regexp.MustCompile(`(?m)^\s*-?\s*(client_secret|password|stream_secret|secret|kek)\s*:`)

// TestChart_NoSecretInConfigMaps: a secret written into config (as a hostile or careless values
// file would) makes helm fail with the key named, and the secret appears in no output; the
// ConfigMaps of every value set hold no secret-bearing key and no PEM block.
func TestChart_NoSecretInConfigMaps(t *testing.T) {
	helmBin(t)
	const canary = "canary-secret-7f3a9c2e1b5d4f60"
	for _, set := range []string{
		"config.upstream.client_secret",
		"config.upstream.shared_signals.client_secret",
		"config.upstream.shared_signals.client_secret_file",
		"config.store.etcd.password",
		"config.keys.kek_file",
		"config.tls.key_file",
		"config.admin.tls.key_file",
	} {
		for _, base := range [][]string{{"values-single.yaml"}, {"values-replicas.yaml"}} {
			out, err := template(t, base, "--set", set+"="+canary)
			if err == nil {
				t.Errorf("%v --set %s: rendered, want a refusal", base, set)
			}
			if strings.Contains(out, canary) {
				t.Errorf("%v --set %s: the secret is in helm's output", base, set)
			}
			field := strings.Join(strings.Split(set, ".")[:2], ".")
			if err != nil && !strings.Contains(err.Error(), field) {
				t.Errorf("--set %s: the error does not name %s: %v", set, field, err)
			}
		}
	}
	for name, vs := range valueSets {
		m, _ := render(t, vs)
		for k, o := range m {
			if str(o, "kind") != "ConfigMap" {
				continue
			}
			for key, v := range mp(o, "data") {
				s, _ := v.(string)
				if loc := secretKey.FindString(s); loc != "" {
					t.Errorf("%s: %s %s holds a secret-bearing key: %q", name, k, key, loc)
				}
				if strings.Contains(s, "-----BEGIN") {
					t.Errorf("%s: %s %s holds a PEM block", name, k, key)
				}
			}
		}
	}
}

// TestChart_RefusesWhatCannotWork: settings that would start pods doomed to fail are refused at
// render time with the value named.
func TestChart_RefusesWhatCannotWork(t *testing.T) {
	helmBin(t)
	for _, tc := range []struct {
		files []string
		set   []string
		want  string
	}{
		{[]string{"values-single.yaml"}, []string{"replicas=2"}, "store.backend etcd"},
		{[]string{"values-replicas.yaml"}, []string{"store.etcd.endpoints=null"}, "store.etcd.endpoints"},
		{[]string{"values-replicas.yaml"}, []string{"secrets.etcdPassword.name="}, "secrets.etcdPassword"},
		{[]string{"values-replicas.yaml"}, []string{"secrets.signalsClientSecret.name="}, "secrets.signalsClientSecret"},
		{[]string{"values-single.yaml"}, []string{"secrets.upstreamClientSecret.name="}, "secrets.upstreamClientSecret"},
		{[]string{"values-replicas.yaml"}, []string{"networkPolicy.egress.etcd.to=null"}, "networkPolicy.egress.etcd.to"},
		{[]string{"values-single.yaml"}, []string{"store.backend=sqlite"}, "store.backend"},
		{[]string{"values-single.yaml", "values-sidecar.yaml"}, []string{"authSidecar.workloads[0].port=9091"}, "tokengate-auth's"},
		{[]string{"values-single.yaml", "values-sidecar.yaml"}, []string{"authSidecar.workloads[0].streamSecret=null"}, "streamSecret"},
	} {
		args := []string{}
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		_, err := template(t, tc.files, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: err = %v, want a refusal naming %q", tc.files, tc.set, err, tc.want)
		}
	}
}
