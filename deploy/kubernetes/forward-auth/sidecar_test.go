// Package sidecar holds an example Kubernetes deployment of a service with tokengate-auth
// as its sidecar; its test keeps the example's configuration valid and in agreement with the
// pod (ports, probes, the only port on the Service).
package sidecar

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tokengate/tokengate/internal/forwardauth"
)

func read(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func TestSidecarExample_ConfigMatchesPod(t *testing.T) {
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	read(t, "configmap.yaml", &cm)
	cfg, err := forwardauth.Parse(strings.NewReader(cm.Data["tokengate-auth.yaml"]),
		func(k string) string { return map[string]string{forwardauth.EnvStreamSecret: "from-secret"}[k] })
	if err != nil {
		t.Fatalf("the ConfigMap's tokengate-auth.yaml is refused: %v", err)
	}
	if cfg.Mode != forwardauth.ModeProxy || !cfg.OwnStream {
		t.Errorf("mode %q own_stream %v: the example is a proxy sidecar with a stream per replica", cfg.Mode, cfg.OwnStream)
	}
	type port struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	}
	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	var dep struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name      string   `yaml:"name"`
						Command   []string `yaml:"command"`
						Ports     []port   `yaml:"ports"`
						Readiness probe    `yaml:"readinessProbe"`
						Liveness  probe    `yaml:"livenessProbe"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	read(t, "deployment.yaml", &dep)
	found := false
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name != "tokengate-auth" {
			continue
		}
		found = true
		ports := map[string]string{}
		for _, p := range c.Ports {
			ports[p.Name] = ":" + strconv.Itoa(p.ContainerPort)
		}
		if !strings.HasSuffix(cfg.Listen, ports["http"]) || !strings.HasSuffix(cfg.AdminListen, ports["auth-admin"]) {
			t.Errorf("container ports %v do not match listen %s / admin_listen %s", ports, cfg.Listen, cfg.AdminListen)
		}
		if c.Readiness.HTTPGet.Path != "/readyz" || c.Liveness.HTTPGet.Path != "/healthz" ||
			c.Readiness.HTTPGet.Port != "auth-admin" || c.Liveness.HTTPGet.Port != "auth-admin" {
			t.Errorf("probes %+v %+v: want /readyz and /healthz on auth-admin", c.Readiness, c.Liveness)
		}
	}
	if !found {
		t.Fatal("no tokengate-auth container")
	}
	var svc struct {
		Spec struct {
			Ports []struct {
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	read(t, "service.yaml", &svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != "http" {
		t.Errorf("the Service must expose only tokengate-auth's http port: %+v", svc.Spec.Ports)
	}
}
