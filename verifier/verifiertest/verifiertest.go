// Package verifiertest is a fake tokengate for the tests of services that use verifier:
// discovery, a JWKS, one Shared Signals stream served by RFC 8936 long polling, and access
// tokens and session-revoked SETs signed with its key.
//
//	tg := verifiertest.New(t, verifiertest.Options{})
//	v, err := verifier.New(ctx, tg.Config())
//	tok := tg.AccessToken("alice", "sid-1", time.Now())
//	tg.RevokeSession("set-1", "alice", "sid-1", time.Now()) // v refuses tok once it has polled
package verifiertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/verifier"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// Defaults of Options.
const (
	DefaultAudience       = "orders"
	DefaultStreamAudience = "orders-stream"
	DefaultStreamID       = "orders"
	DefaultStreamSecret   = "stream-secret-0123456789-abcdefghijklmn"
)

// Keys signs for the fake; the fake makes one ES256 key of its own when Options.Keys is nil.
type Keys interface {
	// JWKSJSON is the JWKS document to publish.
	JWKSJSON() []byte
	// SignWithType signs payload as a compact JWS with JOSE header typ.
	SignWithType(payload []byte, typ string) (token, kid string, err error)
}

// Options configure the fake; every field has a default.
type Options struct {
	// Audience is the service's audience, put in the aud of AccessToken (DefaultAudience).
	Audience string
	// StreamID names the stream (DefaultStreamID); polls go to /ssf/poll/{StreamID}.
	StreamID string
	// StreamAudience is the stream's aud, put in the aud of RevokedSET (DefaultStreamAudience).
	StreamAudience string
	// StreamSecret is the bearer secret of the stream (DefaultStreamSecret).
	StreamSecret string
	// Keys signs tokens and SETs; one fresh ES256 key when nil.
	Keys Keys
	// Wrap, when set, wraps the fake's handler, so a test can answer some requests itself.
	Wrap func(http.Handler) http.Handler
}

// Server is the fake tokengate, listening on a loopback port until the test ends.
type Server struct {
	t    testing.TB
	opts Options
	srv  *httptest.Server
	down atomic.Bool
	away atomic.Bool

	mu      sync.Mutex
	queue   map[string]string // jti → SET, until acknowledged or refused
	acked   []string
	refused map[string]string // jti → err code
	polls   int
	wake    chan struct{}
}

// New starts a fake tokengate; it stops when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&opts.Audience, DefaultAudience)
	def(&opts.StreamID, DefaultStreamID)
	def(&opts.StreamAudience, DefaultStreamAudience)
	def(&opts.StreamSecret, DefaultStreamSecret)
	if opts.Keys == nil {
		k, err := newKey()
		if err != nil {
			t.Fatalf("verifiertest: %v", err)
		}
		opts.Keys = k
	}
	s := &Server{t: t, opts: opts, queue: map[string]string{}, refused: map[string]string{}, wake: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"issuer": s.URL(), "jwks_uri": s.URL() + "/jwks.json",
			"id_token_signing_alg_values_supported": []string{"ES256"}, "access_token_signing_alg_values_supported": []string{"ES256"}})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.opts.Keys.JWKSJSON())
	})
	mux.HandleFunc("GET /.well-known/ssf-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, secevent.Metadata{SpecVersion: secevent.SpecVersion, Issuer: s.URL(), JWKSURI: s.URL() + "/jwks.json",
			DeliveryMethodsSupported: []string{secevent.DeliveryPoll}, ConfigurationEndpoint: s.URL() + "/ssf/streams"})
	})
	mux.HandleFunc("GET /ssf/streams", func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(r) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		writeJSON(w, []secevent.StreamConfiguration{s.StreamConfig(s.opts.StreamID)})
	})
	mux.HandleFunc("POST /ssf/poll/{id}", s.poll)
	var h http.Handler = mux
	if opts.Wrap != nil {
		h = opts.Wrap(mux)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.away.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the fake's issuer URL.
func (s *Server) URL() string { return s.srv.URL }

// Config is a verifier.Config for this fake: its issuer, the audience and the stream secret.
func (s *Server) Config() verifier.Config {
	return verifier.Config{Issuer: s.URL(), Audience: s.opts.Audience, StreamSecret: s.opts.StreamSecret}
}

// StreamConfig is the SSF stream configuration of stream id, polled at /ssf/poll/{id}.
func (s *Server) StreamConfig(id string) secevent.StreamConfiguration {
	return secevent.StreamConfiguration{StreamID: id, Issuer: s.URL(), Audience: secevent.Audience{s.opts.StreamAudience},
		EventsDelivered: []string{secevent.EventSessionRevoked},
		Delivery:        secevent.Delivery{Method: secevent.DeliveryPoll, EndpointURL: s.URL() + "/ssf/poll/" + id}}
}

// SetDown makes polls answer 503 (down) or serve again.
func (s *Server) SetDown(down bool) { s.down.Store(down) }

// SetAway makes every request answer 503 (tokengate not up yet) or serve again.
func (s *Server) SetAway(away bool) { s.away.Store(away) }

// Polls is how many polls the fake has answered or is holding.
func (s *Server) Polls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls
}

func (s *Server) authorized(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+s.opts.StreamSecret
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// poll is RFC 8936 long polling: it records acknowledgements and refusals, then answers the
// queued SETs, or an empty set after the wait the receiver asked for (Prefer: wait=N, 5 s
// without).
func (s *Server) poll(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var req secevent.PollRequest
	body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	_ = json.Unmarshal(body, &req)
	wait := 5 * time.Second
	if n, err := strconv.Atoi(strings.TrimPrefix(r.Header.Get("Prefer"), "wait=")); err == nil {
		wait = time.Duration(n) * time.Second
	}
	s.mu.Lock()
	s.polls++
	for _, j := range req.Ack {
		delete(s.queue, j)
		s.acked = append(s.acked, j)
	}
	for j, e := range req.SETErrs {
		delete(s.queue, j)
		s.refused[j] = e.Code
	}
	s.mu.Unlock()
	deadline := time.After(wait)
	for {
		s.mu.Lock()
		sets := map[string]string{}
		for j, set := range s.queue {
			sets[j] = set
		}
		wake := s.wake
		s.mu.Unlock()
		if len(sets) > 0 {
			writeJSON(w, secevent.PollResponse{Sets: sets})
			return
		}
		select {
		case <-wake:
		case <-deadline:
			writeJSON(w, secevent.PollResponse{Sets: map[string]string{}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// Send queues a signed SET under jti; polls deliver it until it is acknowledged or refused.
func (s *Server) Send(jti, set string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue[jti] = set
	close(s.wake)
	s.wake = make(chan struct{})
}

// Queued reports whether the SET jti waits to be acknowledged or refused.
func (s *Server) Queued(jti string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.queue[jti]
	return ok
}

// RevokeSession queues a session-revoked SET for session sid of user sub.
func (s *Server) RevokeSession(jti, sub, sid string, at time.Time) {
	s.t.Helper()
	s.Send(jti, s.Sign(secevent.TypeSET, s.RevokedSET(jti, sub, sid, at)))
}

// Settled waits until no SET is queued and returns the acknowledged SET ids and the refused
// ones with their error codes; the test fails after 5 s.
func (s *Server) Settled() (acked []string, refused map[string]string) {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := len(s.queue)
		acked := append([]string(nil), s.acked...)
		refused := map[string]string{}
		for k, v := range s.refused {
			refused[k] = v
		}
		s.mu.Unlock()
		if n == 0 {
			return acked, refused
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Fatal("verifiertest: SETs still queued after 5s")
	return nil, nil
}

// Sign signs claims with the fake's key under JOSE typ typ (at+jwt for access tokens,
// secevent+jwt for SETs).
func (s *Server) Sign(typ string, claims map[string]any) string {
	s.t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		s.t.Fatal(err)
	}
	tok, _, err := s.opts.Keys.SignWithType(b, typ)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// AccessToken signs an internal access token as tokengate issues it, for user sub in session
// sid, issued at iat for 5 minutes; edit may change the claims before signing.
func (s *Server) AccessToken(sub, sid string, iat time.Time, edit ...func(claims map[string]any)) string {
	s.t.Helper()
	c := map[string]any{"iss": s.URL(), "sub": sub, "aud": []string{s.opts.Audience}, "exp": iat.Add(5 * time.Minute).Unix(),
		"iat": iat.Unix(), "jti": "at-" + sid + "-" + strconv.FormatInt(iat.UnixNano(), 36), "client_id": "bff", "sid": sid,
		"scope": "openid orders:read", "roles": []string{"reader", "writer"}, "preferred_username": sub}
	for _, e := range edit {
		e(c)
	}
	return s.Sign("at+jwt", c)
}

// RevokedSET is the claims of a session-revoked SET: of session sid of user sub when sid is
// set, else of every session of sub. Sign it with typ secevent+jwt and Send it.
func (s *Server) RevokedSET(jti, sub, sid string, at time.Time) map[string]any {
	s.t.Helper()
	subject := &secevent.SubjectID{Format: secevent.FormatIssSub, Iss: s.URL(), Sub: sub}
	if sid != "" {
		subject = &secevent.SubjectID{Format: secevent.FormatComplex, User: subject,
			Session: &secevent.SubjectID{Format: secevent.FormatOpaque, ID: sid}}
	}
	iat := at.Unix()
	set := secevent.SET{Issuer: s.URL(), Audience: secevent.Audience{s.opts.StreamAudience}, JTI: jti, IssuedAt: &iat,
		TXN: "tx-" + jti, SubID: subject, Events: map[string]json.RawMessage{
			secevent.EventSessionRevoked: secevent.EventBody(secevent.Event{EventTimestamp: &iat, InitiatingEntity: "system"})}}
	// A map, so that a test can change a claim before signing.
	b, err := json.Marshal(set)
	var claims map[string]any
	if err == nil {
		err = json.Unmarshal(b, &claims)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	return claims
}

// key is one ES256 key.
type key struct {
	priv *ecdsa.PrivateKey
	kid  string
	jwks []byte
}

func newKey() (*key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	k := &key{priv: priv, kid: "verifiertest-1"}
	k.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"}}})
	return k, err
}

func (k *key) JWKSJSON() []byte { return k.jwks }

func (k *key) SignWithType(payload []byte, typ string) (string, string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", "", err
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		return "", "", err
	}
	tok, err := jws.CompactSerialize()
	return tok, k.kid, err
}
