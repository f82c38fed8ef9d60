// Package kubernetes holds tokengate's Kubernetes manifests; its test checks what a schema
// cannot: the pieces agree with each other and with tokengate's own configuration code. The
// schemas themselves are checked by kubeconform (make deploy-check).
package kubernetes

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tokengate/tokengate/internal/config"
)

type obj = map[string]any

// get walks a path of map keys and list indexes ("containers", 0).
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

// manifests reads every document of every YAML file here, by kind/name.
func manifests(t *testing.T) (map[string]obj, []string) {
	t.Helper()
	files, _ := filepath.Glob("*.yaml")
	out := map[string]obj{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o obj
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[str(o, "kind")+"/"+str(o, "metadata", "name")] = o
		}
	}
	return out, files
}

func TestManifests_KustomizationListsEveryFile(t *testing.T) {
	m, files := manifests(t)
	var listed []string
	for _, r := range list(m["Kustomization/"], "resources") {
		listed = append(listed, r.(string))
	}
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" {
			want = append(want, f)
		}
	}
	sort.Strings(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("kustomization resources %v, files %v", listed, want)
	}
	for k, o := range m {
		if k != "Kustomization/" && k != "Namespace/tokengate" && str(o, "metadata", "namespace") != "tokengate" {
			t.Errorf("%s is not in namespace tokengate", k)
		}
	}
}

// TestManifests_PodIsHardenedAndProbed: non-root, read-only root, no privilege, probes on the
// health endpoints of the admin port, the data volume at data_dir.
func TestManifests_PodIsHardenedAndProbed(t *testing.T) {
	m, _ := manifests(t)
	sts := m["StatefulSet/tokengate"]
	if sts == nil {
		t.Fatal("no StatefulSet tokengate")
	}
	pod := get(sts, "spec", "template", "spec")
	if get(pod, "securityContext", "runAsNonRoot") != true || get(pod, "automountServiceAccountToken") != false {
		t.Error("pod must run as non-root without a service account token")
	}
	if str(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Error("pod must use the RuntimeDefault seccomp profile")
	}
	c := get(pod, "containers", 0)
	sc := get(c, "securityContext")
	if get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false ||
		get(sc, "runAsNonRoot") != true || !slices.Contains(list(sc, "capabilities", "drop"), any("ALL")) {
		t.Errorf("container securityContext is not locked down: %v", sc)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if str(c, probe, "httpGet", "path") != path || str(c, probe, "httpGet", "port") != "admin" {
			t.Errorf("%s must GET %s on the admin port: %v", probe, path, get(c, probe))
		}
	}
	cfg := loadConfig(t, m)
	mounts := map[string]string{}
	for _, vm := range list(c, "volumeMounts") {
		mounts[str(vm, "name")] = str(vm, "mountPath")
	}
	if mounts["data"] != cfg.DataDir || str(sts, "spec", "volumeClaimTemplates", 0, "metadata", "name") != "data" {
		t.Errorf("data_dir %s must be the claim template's mount, mounts %v", cfg.DataDir, mounts)
	}
	args := list(c, "args")
	if len(args) != 3 || args[0] != "serve" || !strings.HasPrefix(args[2].(string), mounts["config"]+"/") {
		t.Errorf("args %v must serve the mounted ConfigMap (%s)", args, mounts["config"])
	}
	if cfg.TLS == nil || !strings.HasPrefix(cfg.TLS.CertFile, mounts["tls"]+"/") || !strings.HasPrefix(cfg.TLS.KeyFile, mounts["tls"]+"/") {
		t.Errorf("tls files must come from the mounted Secret (%s): %+v", mounts["tls"], cfg.TLS)
	}
	ports := map[string]string{}
	for _, p := range list(c, "ports") {
		ports[str(p, "name")] = portString(get(p, "containerPort"))
	}
	_, lp, _ := net.SplitHostPort(cfg.Listen)
	_, ap, _ := net.SplitHostPort(cfg.AdminListen)
	if ports["https"] != lp || ports["admin"] != ap {
		t.Errorf("container ports %v must be listen %s and admin_listen %s", ports, cfg.Listen, cfg.AdminListen)
	}
	env := map[string]string{}
	for _, e := range list(c, "env") {
		env[str(e, "name")] = str(e, "valueFrom", "secretKeyRef", "name")
	}
	for _, k := range []string{config.EnvUpstreamClientSecret, config.EnvKEK} {
		if env[k] == "" {
			t.Errorf("%s must come from a Secret", k)
		}
	}
	if r := get(sts, "spec", "replicas"); r != 1 && cfg.Store.Backend != config.BackendEtcd {
		t.Errorf("bbolt allows one process per file: replicas %v", r)
	}
}

// loadConfig parses the ConfigMap's file with tokengate's own loader.
func loadConfig(t *testing.T, m map[string]obj) *config.Config {
	t.Helper()
	raw := str(m["ConfigMap/tokengate-config"], "data", "tokengate.yaml")
	cfg, err := config.Parse(strings.NewReader(raw), func(k string) string {
		if k == config.EnvUpstreamClientSecret {
			return "from-the-secret"
		}
		return ""
	})
	if err != nil {
		t.Fatalf("the ConfigMap's tokengate.yaml is refused: %v", err)
	}
	return cfg
}

func portString(v any) string {
	switch p := v.(type) {
	case int:
		return strconv.Itoa(p)
	case string:
		return p
	}
	return ""
}

// TestManifests_AdminPortStaysInternal: the public Service carries only the public port, the
// admin Service is cluster-internal, and the NetworkPolicy admits the admin port only from a
// named source.
func TestManifests_AdminPortStaysInternal(t *testing.T) {
	m, _ := manifests(t)
	podLabels := get(m["StatefulSet/tokengate"], "spec", "template", "metadata", "labels").(obj)
	selects := func(sel any) bool {
		s, _ := sel.(obj)
		if len(s) == 0 {
			return false
		}
		for k, v := range s {
			if podLabels[k] != v {
				return false
			}
		}
		return true
	}
	for name, svc := range map[string]obj{"public": m["Service/tokengate"], "admin": m["Service/tokengate-admin"]} {
		if svc == nil {
			t.Fatalf("no %s Service", name)
		}
		if tp := str(svc, "spec", "type"); tp != "" && tp != "ClusterIP" {
			t.Errorf("%s Service type %s exposes it outside the cluster", name, tp)
		}
		if !selects(get(svc, "spec", "selector")) {
			t.Errorf("%s Service does not select the pod", name)
		}
		ports := list(svc, "spec", "ports")
		want := map[string]string{"public": "https", "admin": "admin"}[name]
		if len(ports) != 1 || str(ports[0], "targetPort") != want {
			t.Errorf("%s Service must carry only the %s port: %v", name, want, ports)
		}
	}
	np := m["NetworkPolicy/tokengate"]
	if np == nil || !selects(get(np, "spec", "podSelector", "matchLabels")) ||
		!slices.Contains(list(np, "spec", "policyTypes"), any("Ingress")) {
		t.Fatalf("NetworkPolicy must select the pod and restrict ingress: %v", np)
	}
	adminRules := 0
	for _, r := range list(np, "spec", "ingress") {
		ps := list(r, "ports")
		if len(ps) == 0 {
			t.Errorf("ingress rule without ports admits every port: %v", r)
		}
		for _, p := range ps {
			if portString(get(p, "port")) == "admin" || portString(get(p, "port")) == "9090" {
				adminRules++
				if len(list(r, "from")) == 0 {
					t.Errorf("admin port admitted from anywhere: %v", r)
				}
			}
		}
	}
	if adminRules == 0 {
		t.Error("no rule admits the admin port (Prometheus could not scrape /metrics)")
	}
	pdb := m["PodDisruptionBudget/tokengate"]
	if pdb == nil || !selects(get(pdb, "spec", "selector", "matchLabels")) {
		t.Errorf("PodDisruptionBudget must select the pod: %v", pdb)
	}
	if str(m["StatefulSet/tokengate"], "spec", "serviceName") != "tokengate-admin" {
		t.Error("the StatefulSet's governing Service must be the headless admin Service")
	}
}
