package verifier_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/keys"
)

const (
	streamSecret = "stream-secret-0123456789-abcdefghijklmn"
	serviceAud   = "orders"
	setAud       = "orders-stream"
)

// fakeGateway is a minimal tokengate for the verifier: discovery, JWKS (real keys), SSF
// configuration, stream configuration and a poll endpoint serving queued SETs until they are
// acknowledged or refused, recording what the receiver sent back.
type fakeGateway struct {
	t   testing.TB
	srv *httptest.Server
	km  *keys.Manager

	down     atomic.Bool  // polls fail with 503
	jwksDown atomic.Bool  // the JWKS answers 503
	jwksFail atomic.Int32 // the next jwksFail JWKS requests answer 503
	jwksAge  atomic.Int64 // Cache-Control max-age of the JWKS (seconds; none when 0)
	jwksGets atomic.Int32 // JWKS requests answered

	mu      sync.Mutex
	queue   map[string]string // jti → SET, until acknowledged or refused
	acked   []string
	refused map[string]string // jti → err code
	polls   int
	wake    chan struct{}
	created int      // streams created with POST /ssf/streams
	deleted []string // streams deleted
	polled  []string // stream ids polled
	gone    map[string]bool
}

func newFakeGateway(t testing.TB) *fakeGateway {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	km, err := keys.Open(context.Background(), st, keys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{t: t, km: km, queue: map[string]string{}, refused: map[string]string{}, wake: make(chan struct{}),
		gone: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"issuer": g.issuer(), "jwks_uri": g.issuer() + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"ES256"}, "access_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		if g.jwksDown.Load() || g.jwksFail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if age := g.jwksAge.Load(); age > 0 {
			w.Header().Set("Cache-Control", "public, max-age="+strconv.FormatInt(age, 10))
		}
		g.jwksGets.Add(1)
		w.Write(km.JWKSJSON())
	})
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"spec_version": "1_0", "issuer": g.issuer(), "jwks_uri": g.issuer() + "/jwks.json",
			"delivery_methods_supported": []string{"urn:ietf:rfc:8936"}, "configuration_endpoint": g.issuer() + "/ssf/streams"})
	})
	mux.HandleFunc("GET /ssf/streams", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+streamSecret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		writeJSON(w, []map[string]any{{"stream_id": "orders", "iss": g.issuer(), "aud": setAud,
			"events_delivered": []string{"https://schemas.openid.net/secevent/caep/event-type/session-revoked"},
			"delivery":         map[string]string{"method": "urn:ietf:rfc:8936", "endpoint_url": g.issuer() + "/ssf/poll/orders"}}})
	})
	mux.HandleFunc("POST /ssf/poll/{id}", g.poll)
	mux.HandleFunc("POST /ssf/streams", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Delivery struct {
				Method string `json:"method"`
			} `json:"delivery"`
		}
		if r.Header.Get("Authorization") != "Bearer "+streamSecret || json.NewDecoder(r.Body).Decode(&req) != nil ||
			req.Delivery.Method != "urn:ietf:rfc:8936" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.created++
		id := "orders." + strconv.Itoa(g.created)
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"stream_id": id, "iss": g.issuer(), "aud": setAud,
			"events_delivered": []string{"https://schemas.openid.net/secevent/caep/event-type/session-revoked"},
			"delivery":         map[string]string{"method": "urn:ietf:rfc:8936", "endpoint_url": g.issuer() + "/ssf/poll/" + id}})
	})
	mux.HandleFunc("DELETE /ssf/streams", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.deleted = append(g.deleted, r.URL.Query().Get("stream_id"))
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) issuer() string { return g.srv.URL }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (g *fakeGateway) poll(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+streamSecret {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if g.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	g.mu.Lock()
	gone := g.gone[r.PathValue("id")]
	g.mu.Unlock()
	if gone {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var req struct {
		Ack     []string                     `json:"ack"`
		SETErrs map[string]map[string]string `json:"setErrs"`
	}
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &req)
	wait := 5 * time.Second
	if n, err := strconv.Atoi(strings.TrimPrefix(r.Header.Get("Prefer"), "wait=")); err == nil {
		wait = time.Duration(n) * time.Second
	}
	g.mu.Lock()
	g.polls++
	g.polled = append(g.polled, r.PathValue("id"))
	for _, j := range req.Ack {
		delete(g.queue, j)
		g.acked = append(g.acked, j)
	}
	for j, e := range req.SETErrs {
		delete(g.queue, j)
		g.refused[j] = e["err"]
	}
	g.mu.Unlock()
	deadline := time.After(wait)
	for {
		g.mu.Lock()
		if g.gone[r.PathValue("id")] {
			g.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		sets := map[string]string{}
		for j, s := range g.queue {
			sets[j] = s
		}
		wake := g.wake
		g.mu.Unlock()
		if len(sets) > 0 {
			writeJSON(w, map[string]any{"sets": sets, "moreAvailable": false})
			return
		}
		select {
		case <-wake:
		case <-deadline:
			writeJSON(w, map[string]any{"sets": map[string]string{}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// send queues a SET (delivered until acknowledged) under jti.
func (g *fakeGateway) send(jti, set string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.queue[jti] = set
	close(g.wake)
	g.wake = make(chan struct{})
}

// settled waits until no SET is queued and returns acknowledgements and refusals.
func (g *fakeGateway) settled() ([]string, map[string]string) {
	g.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		n := len(g.queue)
		acked := append([]string(nil), g.acked...)
		refused := map[string]string{}
		for k, v := range g.refused {
			refused[k] = v
		}
		g.mu.Unlock()
		if n == 0 {
			return acked, refused
		}
		time.Sleep(5 * time.Millisecond)
	}
	g.t.Fatal("SETs still queued after 5s")
	return nil, nil
}

// sign signs claims with the gateway's active key and JOSE typ typ.
func (g *fakeGateway) sign(typ string, claims map[string]any) string {
	g.t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		g.t.Fatal(err)
	}
	tok, _, err := g.km.SignWithType(b, typ)
	if err != nil {
		g.t.Fatal(err)
	}
	return tok
}

// accessToken mints an internal token for sub/sid, issued at iat.
func (g *fakeGateway) accessToken(sub, sid string, iat time.Time, edit ...func(map[string]any)) string {
	c := map[string]any{"iss": g.issuer(), "sub": sub, "aud": []string{serviceAud}, "exp": iat.Add(30 * time.Second).Unix(),
		"iat": iat.Unix(), "jti": "at-" + sid + strconv.FormatInt(iat.UnixNano(), 36), "client_id": "bff", "sid": sid, "scope": "openid orders:read"}
	for _, e := range edit {
		e(c)
	}
	return g.sign("at+jwt", c)
}

// revokedSET builds session-revoked SET claims (a session when sid is set, else the user).
func (g *fakeGateway) revokedSET(jti, sid, sub string, at time.Time) map[string]any {
	subject := map[string]any{"format": "iss_sub", "iss": g.issuer(), "sub": sub}
	if sid != "" {
		subject = map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": sid},
			"user": map[string]any{"format": "iss_sub", "iss": g.issuer(), "sub": sub}}
	}
	return map[string]any{"iss": g.issuer(), "aud": setAud, "jti": jti, "iat": at.Unix(), "txn": "tx-" + jti, "sub_id": subject,
		"events": map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{
			"event_timestamp": at.Unix(), "initiating_entity": "system"}}}
}
