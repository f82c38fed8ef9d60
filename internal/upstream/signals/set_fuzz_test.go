package signals

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/upstream/jwks"
	"github.com/tokengate/tokengate/verifier/jwksfetch"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// The fuzzed receiver: Keycloak's realm, its stream and a fixed clock.
const (
	fuzzIssuer = "https://kc.example/realms/demo"
	fuzzStream = "stream-1"
	fuzzAud    = "tokengate-signals/" + fuzzStream
	fuzzState  = "verify-state"
)

var fuzzNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// fuzzKeys are the transmitter's key (served as Keycloak's JWKS, kid k1) and an attacker's,
// which signs with the same kid.
var fuzzKeys = sync.OnceValues(func() (*ecdsa.PrivateKey, *ecdsa.PrivateKey) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	a, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k, a
})

// jwksTransport answers every request with the transmitter's JWKS, without a network.
type jwksTransport struct{ body []byte }

func (j jwksTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(j.body)), Request: r}, nil
}

// fuzzStore is an in-memory State and Recorder; it claims each jti with its record, as the
// issuer does.
type fuzzStore struct {
	jtis     map[string]bool
	recorded []store.Revocation
}

func (s *fuzzStore) ReceiverStream(context.Context) ([]byte, error)  { return nil, store.ErrNotFound }
func (s *fuzzStore) PutReceiverStream(context.Context, []byte) error { return nil }
func (s *fuzzStore) RecordUpstreamSET(_ context.Context, c store.Claim, r store.Revocation) (bool, error) {
	if s.jtis[c.JTI] {
		return false, nil
	}
	s.jtis[c.JTI] = true
	s.recorded = append(s.recorded, r)
	return true, nil
}

// fuzzClaims is a session-revoked SET's claims for the fuzzed stream, iat at fuzzNow.
func fuzzClaims(edit func(c map[string]any)) []byte {
	c := map[string]any{
		"jti": "jti-1", "iss": fuzzIssuer, "iat": fuzzNow.Unix(), "aud": fuzzAud, "txn": "txn-1",
		"events": map[string]any{secevent.EventSessionRevoked: map[string]any{"initiating_entity": "user"}},
		"sub_id": map[string]any{"format": "complex",
			"user":    map[string]any{"format": "iss_sub", "iss": fuzzIssuer, "sub": "alice"},
			"session": map[string]any{"format": "opaque", "id": "sid-1"}},
	}
	if edit != nil {
		edit(c)
	}
	b, _ := json.Marshal(c)
	return b
}

// Signers FuzzSET's mode picks: the raw input as it is, or claims signed by the transmitter's
// key, by the attacker's key (same kid), with HMAC keyed by the transmitter's public key
// material, or with alg none.
const (
	modeRaw = iota
	modeTrusted
	modeAttacker
	modeHMAC
	modeNone
	modes
)

func fuzzSign(t *testing.T, claims []byte, typ string, mode uint8) string {
	trusted, attacker := fuzzKeys()
	opts := (&jose.SignerOptions{}).WithHeader("kid", "k1")
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	var key jose.SigningKey
	switch mode % modes {
	case modeTrusted:
		key = jose.SigningKey{Algorithm: jose.ES256, Key: trusted}
	case modeAttacker:
		key = jose.SigningKey{Algorithm: jose.ES256, Key: attacker}
	case modeHMAC:
		key = jose.SigningKey{Algorithm: jose.HS256, Key: elliptic.MarshalCompressed(elliptic.P256(), trusted.X, trusted.Y)}
	case modeNone:
		h, _ := json.Marshal(map[string]string{"alg": "none", "kid": "k1", "typ": typ})
		return b64(h) + "." + b64(claims) + "."
	}
	s, err := jose.NewSigner(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signedByTrustedKey reports whether raw is a compact JWS with an accepted algorithm whose
// signature verifies with the transmitter's public key, checked without the receiver's code.
func signedByTrustedKey(raw string) ([]byte, bool) {
	trusted, _ := fuzzKeys()
	jws, err := jose.ParseSignedCompact(raw, jwksfetch.Algorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, false
	}
	payload, err := jws.Verify(&trusted.PublicKey)
	return payload, err == nil
}

// FuzzSET feeds SETs to the receiver's handling of one poll answer entry (handle: JWS parsing,
// pinned algorithms, typ, signature against Keycloak's JWKS, iss, aud, jti, iat window, one
// event, subject mapping, replay, recording). The SET is the raw input, or the fuzzed claims
// signed by Keycloak's key, an attacker's key with Keycloak's kid, HMAC or alg none.
// Invariants: no panic; a refusal carries one of the RFC 8935 codes; nothing is left for
// redelivery (keys, replay state and recorder never fail here); a SET that is acknowledged,
// verifies the stream or is recorded was signed by Keycloak's key (checked independently) and
// names the issuer, the stream's audience, the poll answer's jti and an iat inside the window;
// what is recorded names a session or a user of the issuer.
func FuzzSET(f *testing.F) {
	for _, c := range [][]byte{
		fuzzClaims(nil),
		fuzzClaims(func(c map[string]any) { c["iss"] = "https://evil.test/realms/demo" }),
		fuzzClaims(func(c map[string]any) { c["aud"] = "tokengate-signals/other-stream" }),
		fuzzClaims(func(c map[string]any) { c["aud"] = []string{fuzzAud, "x"} }),
		fuzzClaims(func(c map[string]any) { c["iat"] = fuzzNow.Add(time.Hour).Unix() }),
		fuzzClaims(func(c map[string]any) { c["iat"] = fuzzNow.Add(-72 * time.Hour).Unix() }),
		fuzzClaims(func(c map[string]any) { delete(c, "iat") }),
		fuzzClaims(func(c map[string]any) { c["jti"] = "" }),
		fuzzClaims(func(c map[string]any) {
			c["events"] = map[string]any{"https://example.test/event/other": map[string]any{}}
		}),
		fuzzClaims(func(c map[string]any) {
			c["events"] = map[string]any{secevent.EventSessionRevoked: map[string]any{}, secevent.EventCredentialChange: map[string]any{}}
		}),
		fuzzClaims(func(c map[string]any) { c["sub_id"] = map[string]any{"format": "email", "email": "m@example.test"} }),
		fuzzClaims(func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "complex",
				"user":    map[string]any{"format": "iss_sub", "iss": "https://evil.test", "sub": "mallory"},
				"session": map[string]any{"format": "opaque", "id": "sid-forged"}}
		}),
		fuzzClaims(func(c map[string]any) {
			c["events"] = map[string]any{secevent.EventCredentialChange: map[string]any{"event_timestamp": fuzzNow.Add(-time.Minute).Unix()}}
			c["sub_id"] = map[string]any{"format": "iss_sub", "iss": fuzzIssuer, "sub": "carol"}
		}),
		fuzzClaims(func(c map[string]any) {
			c["events"] = map[string]any{secevent.EventAccountDisabled: map[string]any{
				"subject": map[string]any{"format": "iss_sub", "iss": fuzzIssuer, "sub": "dave"}}}
			delete(c, "sub_id")
		}),
		fuzzClaims(func(c map[string]any) {
			c["events"] = map[string]any{secevent.EventVerification: map[string]any{"state": fuzzState}}
			c["sub_id"] = map[string]any{"format": "opaque", "id": fuzzStream}
		}),
		fuzzClaims(func(c map[string]any) {
			c["events"] = map[string]any{secevent.EventStreamUpdated: map[string]any{"status": "paused"}}
		}),
		[]byte(`{"jti":"jti-1","iss":"` + fuzzIssuer + `","aud":1,"iat":"x","events":[]}`),
	} {
		for mode := uint8(modeTrusted); mode < modes; mode++ {
			f.Add("", c, "secevent+jwt", mode, "")
		}
		f.Add("", c, "JWT", uint8(modeTrusted), "")
		f.Add("", c, "", uint8(modeTrusted), "jti-other")
	}
	f.Add("not.a.jws", []byte(nil), "", uint8(modeRaw), "jti-1")
	f.Add("eyJhbGciOiJub25lIn0.e30.", []byte(nil), "", uint8(modeRaw), "jti-1")
	f.Add("", []byte(nil), "", uint8(modeRaw), "")

	trusted, _ := fuzzKeys()
	jwksDoc, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &trusted.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	hc := &http.Client{Transport: jwksTransport{body: jwksDoc}}
	keys := jwks.New(fuzzIssuer+"/certs", jwks.Options{HTTPClient: hc})

	f.Fuzz(func(t *testing.T, raw string, claims []byte, typ string, mode uint8, jti string) {
		if mode%modes != modeRaw {
			raw = fuzzSign(t, claims, typ, mode)
		}
		if jti == "" {
			var c struct {
				JTI string `json:"jti"`
			}
			_ = json.Unmarshal(claims, &c)
			jti = c.JTI
		}
		st := &fuzzStore{jtis: map[string]bool{}}
		r, err := New(Config{Issuer: fuzzIssuer, ClientID: "tokengate-signals", ClientSecret: "x",
			Events: eventURIs(), Now: func() time.Time { return fuzzNow },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st, st)
		if err != nil {
			t.Fatal(err)
		}
		c := &conn{keys: keys, stream: streamDoc{StreamID: fuzzStream, Audience: fuzzAud}, state: fuzzState}

		out := r.handle(context.Background(), c, jti, raw)

		if out.retry {
			t.Fatal("left for redelivery though nothing failed")
		}
		if out.err != nil {
			switch out.err.Code {
			case secevent.CodeInvalidRequest, secevent.CodeInvalidKey, secevent.CodeInvalidIssuer, secevent.CodeInvalidAudience:
			default:
				t.Fatalf("refused with code %q", out.err.Code)
			}
			if len(st.recorded) > 0 || r.Verified() {
				t.Fatalf("refused (%s: %s) but recorded %+v / verified %v", out.err.Code, out.err.Description, st.recorded, r.Verified())
			}
			return
		}
		// Acknowledged: it must be Keycloak's, for this stream, now.
		payload, ok := signedByTrustedKey(raw)
		if !ok {
			t.Fatalf("acknowledged a SET not signed by Keycloak's key (mode %d): %q", mode%modes, raw)
		}
		var s secevent.SET
		if err := json.Unmarshal(payload, &s); err != nil {
			t.Fatalf("acknowledged a SET whose claims do not parse: %v", err)
		}
		if s.Issuer != fuzzIssuer || len(s.Audience) != 1 || s.Audience[0] != fuzzAud || s.JTI == "" || s.JTI != jti ||
			s.IssuedAt == nil || *s.IssuedAt > fuzzNow.Add(r.cfg.Skew).Unix() || *s.IssuedAt < fuzzNow.Add(-r.cfg.MaxAge).Unix() ||
			len(s.Events) != 1 {
			t.Fatalf("acknowledged a SET with claims %s", payload)
		}
		jws, _ := jose.ParseSignedCompact(raw, jwksfetch.Algorithms)
		if typ, ok := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType]; ok {
			if ts, _ := typ.(string); !strings.EqualFold(ts, "secevent+jwt") && !strings.EqualFold(ts, "application/secevent+jwt") {
				t.Fatalf("acknowledged a SET of typ %v", typ)
			}
		}
		for _, rev := range st.recorded {
			if rev.SID == "" && rev.Sub == "" {
				t.Fatalf("recorded a revocation of nothing: %+v", rev)
			}
			if rev.At.After(fuzzNow) {
				t.Fatalf("recorded a revocation dated after now: %+v", rev)
			}
			if !st.jtis["ssf:"+jti] {
				t.Fatalf("recorded without claiming jti %q", jti)
			}
		}
		if r.Verified() {
			if _, ok := s.Events[secevent.EventVerification]; !ok {
				t.Fatalf("verified by a %v SET", s.Events)
			}
		}
		// The same SET again is not a second logout.
		before := len(st.jtis)
		if again := r.handle(context.Background(), c, jti, raw); again.err != nil || again.retry || len(st.jtis) != before {
			t.Fatalf("the same SET a second time: %+v, jtis %d → %d", again, before, len(st.jtis))
		}
	})
}
