package forwardauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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
	eventRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
)

// transmitter is the least of tokengate a verifier.Verifier needs: discovery, JWKS (real
// keys from the keys package), the SSF configuration, one stream and its poll endpoint, which
// hands out queued SETs until they are acknowledged. With down set, polls answer 503.
type transmitter struct {
	t    *testing.T
	srv  *httptest.Server
	km   *keys.Manager
	down atomic.Bool // polls answer 503
	away atomic.Bool // everything answers 503 (tokengate not up yet)

	mu    sync.Mutex
	queue map[string]string
	wake  chan struct{}
}

func newTransmitter(t *testing.T) *transmitter {
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
	tr := &transmitter{t: t, km: km, queue: map[string]string{}, wake: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"issuer": tr.issuer(), "jwks_uri": tr.issuer() + "/jwks.json",
			"access_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(km.JWKSJSON()) })
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"issuer": tr.issuer(), "jwks_uri": tr.issuer() + "/jwks.json",
			"delivery_methods_supported": []string{"urn:ietf:rfc:8936"}, "configuration_endpoint": tr.issuer() + "/ssf/streams"})
	})
	mux.HandleFunc("GET /ssf/streams", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+streamSecret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		writeJSON(w, []map[string]any{{"stream_id": "orders", "iss": tr.issuer(), "aud": setAud, "events_delivered": []string{eventRevoked},
			"delivery": map[string]string{"method": "urn:ietf:rfc:8936", "endpoint_url": tr.issuer() + "/ssf/poll"}}})
	})
	mux.HandleFunc("POST /ssf/poll", tr.poll)
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tr.away.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	return tr
}

func (tr *transmitter) issuer() string { return tr.srv.URL }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// poll is RFC 8936 long polling, held at most 1 s.
func (tr *transmitter) poll(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+streamSecret {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if tr.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var req struct {
		Ack []string `json:"ack"`
	}
	_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req)
	tr.mu.Lock()
	for _, j := range req.Ack {
		delete(tr.queue, j)
	}
	tr.mu.Unlock()
	deadline := time.After(time.Second)
	for {
		tr.mu.Lock()
		sets := map[string]string{}
		for j, s := range tr.queue {
			sets[j] = s
		}
		wake := tr.wake
		tr.mu.Unlock()
		if len(sets) > 0 {
			writeJSON(w, map[string]any{"sets": sets})
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

// revoke queues a session-revoked SET for sid.
func (tr *transmitter) revoke(jti, sub, sid string, at time.Time) {
	set := tr.sign("secevent+jwt", map[string]any{"iss": tr.issuer(), "aud": setAud, "jti": jti, "iat": at.Unix(),
		"sub_id": map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": sid},
			"user": map[string]any{"format": "iss_sub", "iss": tr.issuer(), "sub": sub}},
		"events": map[string]any{eventRevoked: map[string]any{"event_timestamp": at.Unix(), "initiating_entity": "system"}}})
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.queue[jti] = set
	close(tr.wake)
	tr.wake = make(chan struct{})
}

func (tr *transmitter) sign(typ string, claims map[string]any) string {
	tr.t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		tr.t.Fatal(err)
	}
	tok, _, err := tr.km.SignWithType(b, typ)
	if err != nil {
		tr.t.Fatal(err)
	}
	return tok
}

// accessToken mints an internal token as tokengate does, issued at iat for 5 minutes.
func (tr *transmitter) accessToken(sub, sid string, iat time.Time, edit ...func(map[string]any)) string {
	c := map[string]any{"iss": tr.issuer(), "sub": sub, "aud": []string{serviceAud}, "exp": iat.Add(5 * time.Minute).Unix(),
		"iat": iat.Unix(), "jti": "at-" + sid, "client_id": "bff", "sid": sid, "scope": "openid orders:read",
		"roles": []string{"reader", "writer"}, "preferred_username": "alice"}
	for _, e := range edit {
		e(c)
	}
	return tr.sign("at+jwt", c)
}
