package server_test

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"gopkg.in/yaml.v3"

	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/server"
)

// noStreams is a transmitter without streams: with it the admin API mounts its stream calls.
type noStreams struct{}

func (noStreams) Streams() []ssf.StreamInfo                  { return nil }
func (noStreams) Stream(string) (ssf.StreamInfo, error)      { return ssf.StreamInfo{}, ssf.ErrNoStream }
func (noStreams) DeleteStream(context.Context, string) error { return ssf.ErrNoStream }
func (noStreams) CreateStream(context.Context, ssf.StreamConfig) (ssf.StreamInfo, string, error) {
	return ssf.StreamInfo{}, "", ssf.ErrInvalidStream
}

// TestAdmin_OpenAPIDocumentMatchesRoutes keeps the committed document and the handler in step.
func TestAdmin_OpenAPIDocumentMatchesRoutes(t *testing.T) {
	pub, err := server.New(server.Config{Issuer: "https://tg.test", Logger: quiet}, &fakeIssuer{}, fakeKeys{loaded: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fa := &fakeAdmin{}
	adm := server.NewAdmin(server.AdminConfig{}, fa, fa, fa, pub, noStreams{})
	h := adm.Handler().(*gin.Engine)
	var routes []string
	for _, r := range h.Routes() {
		p := r.Path
		for _, seg := range strings.Split(p, "/") {
			if strings.HasPrefix(seg, ":") {
				p = strings.Replace(p, seg, "{"+seg[1:]+"}", 1)
			}
		}
		routes = append(routes, r.Method+" "+p)
	}
	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(server.AdminOpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for p, ops := range doc.Paths {
		for m, op := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
			if _, ok := op["responses"]; !ok {
				t.Errorf("%s %s has no responses", m, p)
			}
		}
	}
	sort.Strings(routes)
	sort.Strings(documented)
	if strings.Join(routes, "\n") != strings.Join(documented, "\n") {
		t.Errorf("routes and OpenAPI differ:\nroutes:\n%s\ndocumented:\n%s", strings.Join(routes, "\n"), strings.Join(documented, "\n"))
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
}
