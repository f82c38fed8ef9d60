package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
)

// otlpCollector is a fake OTLP/HTTP collector: it keeps every export request.
type otlpCollector struct {
	mu      sync.Mutex
	exports []otlpExport
}

type otlpExport struct {
	path, contentType string
	body              []byte
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.exports = append(c.exports, otlpExport{r.URL.Path, r.Header.Get("Content-Type"), body})
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
}

// TestTracing_ServeExportsOverOTLP: `tokengate serve` with tracing.otlp_endpoint (no path)
// exports its spans as OTLP/HTTP protobuf to <endpoint>/v1/traces, flushed at SIGTERM at the
// latest: the exchange's server, issuer and introspection spans, under service.name tokengate,
// and nothing of the tokens or secrets.
func TestTracing_ServeExportsOverOTLP(t *testing.T) {
	t.Parallel()
	col := &otlpCollector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	realm := kctest.New(t)
	c := baseConfig(realm.Issuer(), t.TempDir())
	c.Tracing = config.Tracing{OTLPEndpoint: srv.URL}
	g := startGateway(t, c)
	kcToken := realm.AccessToken(kctest.Token{})
	r := g.mustExchange(kcToken)
	if code := g.terminate(exitTimeout); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d, want 0", code)
	}
	if !strings.Contains(g.Output(), `"msg":"tracing: on"`) {
		t.Errorf("no start-up line says tracing is on:\n%s", g.Output())
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	var all []byte
	for _, e := range col.exports {
		if e.path != "/v1/traces" || e.contentType != "application/x-protobuf" {
			t.Errorf("export to %s as %q, want /v1/traces as application/x-protobuf", e.path, e.contentType)
		}
		all = append(all, e.body...)
	}
	// Protobuf keeps strings as they are: the span names and attribute values can be found.
	for _, want := range []string{"POST /token", "issuer.Exchange", "issuer.introspect", "HTTP POST", "tokengate"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("the exported spans lack %q (%d exports, %d bytes)", want, len(col.exports), len(all))
		}
	}
	for name, s := range map[string]string{"subject token": kcToken, "access token": r.AccessToken,
		"refresh token": r.RefreshToken, "client secret": clientSecret, "upstream client secret": kctest.ClientSecret} {
		for i, p := range strings.Split(s, ".") {
			if len(p) >= 16 && bytes.Contains(all, []byte(p)) {
				t.Errorf("the exported spans contain part %d of the %s", i, name)
			}
		}
	}
}
