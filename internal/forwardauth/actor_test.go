package forwardauth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func delegatedBy(act string) func(map[string]any) {
	return func(c map[string]any) { c["act"] = json.RawMessage(act) }
}

// TestActorHeader_AuthMode: the auth answer carries the chain outermost first, and the header
// even empty for a first-hop token (so a proxy copying it overwrites a client's forged value);
// a request carrying X_Tokengate_Actor spelled with '_' is refused.
func TestActorHeader_AuthMode(t *testing.T) {
	f := newFixture(t)
	w := ask(f.gate.AuthHandler(), "Bearer "+f.tg.AccessToken("alice", "sid-1", time.Now(),
		delegatedBy(`{"sub":"payments","act":{"sub":"orders"}}`)))
	if w.Code != 200 || w.Header().Get(HeaderActor) != "payments,orders" {
		t.Fatalf("delegated token: %d, %s = %q", w.Code, HeaderActor, w.Header().Get(HeaderActor))
	}
	w = ask(f.gate.AuthHandler(), "Bearer "+f.tg.AccessToken("alice", "sid-1", time.Now()))
	if v, ok := w.Header()[HeaderActor]; w.Code != 200 || !ok || len(v) != 1 || v[0] != "" {
		t.Errorf("first-hop token: %d, %s = %q (present %v), want present and empty", w.Code, HeaderActor, v, ok)
	}
	front := httptest.NewServer(f.gate.AuthHandler())
	defer front.Close()
	tok := "Bearer " + f.tg.AccessToken("alice", "sid-1", time.Now())
	for _, name := range []string{"X_Tokengate_Actor", "x_tokengate_actor", "X-Tokengate_Actor"} {
		resp, body := send(t, front.URL, [][2]string{{"Authorization", tok}, {name, "orders"}})
		if resp.StatusCode != 403 || !strings.Contains(string(body), "invalid_request") {
			t.Errorf("%s: %d %s, want 403 invalid_request", name, resp.StatusCode, body)
		}
	}
}

// TestActorHeader_ProxyMode: a client's actor header, in any spelling, never reaches the
// upstream; the verified chain does.
func TestActorHeader_ProxyMode(t *testing.T) {
	f := newFixture(t)
	var seen atomic.Pointer[http.Header]
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		seen.Store(&h)
		_, _ = io.WriteString(w, "ok")
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	h := f.gate.ProxyHandler(u)
	for _, tc := range []struct{ act, want string }{{"", ""}, {`{"sub":"orders"}`, "orders"}} {
		var edit []func(map[string]any)
		if tc.act != "" {
			edit = append(edit, delegatedBy(tc.act))
		}
		r := httptest.NewRequest(http.MethodGet, "/pay", nil)
		r.Header.Set("Authorization", "Bearer "+f.tg.AccessToken("alice", "sid-1", time.Now(), edit...))
		r.Header.Set("X-Tokengate-Actor", "orders")
		r.Header["X_tokengate_actor"] = []string{"orders"}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("act %s: %d", tc.act, w.Code)
		}
		got := *seen.Load()
		if v := got.Values(HeaderActor); strings.Join(v, ",") != tc.want || got["X_tokengate_actor"] != nil {
			t.Errorf("act %s: upstream saw %s = %q (and %q), want %q", tc.act, HeaderActor, v, got["X_tokengate_actor"], tc.want)
		}
	}
}
