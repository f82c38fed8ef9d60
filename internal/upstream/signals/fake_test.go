package signals_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	clientID     = "tokengate-signals"
	clientSecret = "signals-secret"
)

// transmitter is a small in-process stand-in for Keycloak's SSF transmitter (26.7): discovery,
// client-credentials tokens, JWKS, one stream per client, verification and RFC 8936 poll with
// acknowledgement. Real Keycloak is exercised in integration/kcsignals.
type transmitter struct {
	t   *testing.T
	srv *httptest.Server
	key *ecdsa.PrivateKey

	mu        sync.Mutex
	offline   bool // discovery answers 404 (feature or transmitter off)
	streams   map[string]bool
	requested map[string][]string // stream → events_requested
	patches   []patch             // stream updates received
	refuse    int                 // when not 0, the status every stream update is answered with
	creates   int
	queue     map[string]string // jti → SET waiting for acknowledgement
	acked     []string
	setErrs   map[string]string // jti → err code
	verifyReq []string          // states asked for
	nextID    int

	// base replaces the server's URL in every URL the transmitter names (its issuer too): with
	// client() it stands for a Keycloak at another address.
	base string
	// md edits the SSF configuration before it is answered; tokenEndpoint and pollBase (the
	// poll URL without the stream id) replace the realm's when set.
	md            func(md map[string]any)
	tokenEndpoint string
	pollBase      string
	requests      []request // every request received, as addressed
}

// request is one request as the transmitter received it.
type request struct {
	host, path string
	auth       bool // it carried an Authorization header
}

func newTransmitter(t *testing.T) *transmitter { return newTransmitterOpts(t, false) }

// newTransmitterTLS is a transmitter served over https (use client()).
func newTransmitterTLS(t *testing.T) *transmitter { return newTransmitterOpts(t, true) }

func newTransmitterOpts(t *testing.T, useTLS bool) *transmitter {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tx := &transmitter{t: t, key: key, streams: map[string]bool{}, requested: map[string][]string{}, queue: map[string]string{}, setErrs: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration/realms/demo", func(w http.ResponseWriter, r *http.Request) {
		tx.mu.Lock()
		off := tx.offline
		tx.mu.Unlock()
		if off {
			http.NotFound(w, r)
			return
		}
		md := map[string]any{
			"issuer": tx.issuer(), "jwks_uri": tx.issuer() + "/certs",
			"delivery_methods_supported": []string{"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"},
			"configuration_endpoint":     tx.issuer() + "/ssf/streams", "verification_endpoint": tx.issuer() + "/ssf/verify",
		}
		if tx.md != nil {
			tx.md(md)
		}
		writeJSON(w, 200, md)
	})
	mux.HandleFunc("GET /realms/demo/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		te := tx.issuer() + "/token"
		if tx.tokenEndpoint != "" {
			te = tx.tokenEndpoint
		}
		writeJSON(w, 200, map[string]any{"issuer": tx.issuer(), "token_endpoint": te})
	})
	// redirect/… answers 302 to the URL in the query parameter to.
	mux.HandleFunc("/realms/demo/redirect/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	mux.HandleFunc("POST /realms/demo/token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != clientID || secret != clientSecret || r.FormValue("grant_type") != "client_credentials" {
			writeJSON(w, 401, map[string]string{"error": "invalid_client"})
			return
		}
		writeJSON(w, 200, map[string]any{"access_token": "receiver-token", "token_type": "Bearer", "expires_in": 300})
	})
	mux.HandleFunc("GET /realms/demo/certs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &tx.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("/realms/demo/ssf/streams", func(w http.ResponseWriter, r *http.Request) {
		if !tx.authorized(w, r) {
			return
		}
		tx.mu.Lock()
		defer tx.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			if id := r.URL.Query().Get("stream_id"); id != "" {
				if !tx.streams[id] {
					writeJSON(w, 404, map[string]string{"err": "stream_not_found"})
					return
				}
				writeJSON(w, 200, tx.config(id))
				return
			}
			list := []any{}
			for id := range tx.streams {
				list = append(list, tx.config(id))
			}
			writeJSON(w, 200, list)
		case http.MethodPost:
			var req struct {
				Delivery        struct{ Method string } `json:"delivery"`
				EventsRequested []string                `json:"events_requested"`
			}
			_ = json.NewDecoder(r.Body).Decode(&req)
			if len(tx.streams) > 0 {
				writeJSON(w, 409, map[string]string{"err": "conflict"})
				return
			}
			tx.nextID++
			id := fmt.Sprintf("stream-%d", tx.nextID)
			tx.streams[id] = true
			tx.requested[id] = req.EventsRequested
			tx.creates++
			writeJSON(w, 201, tx.config(id))
		case http.MethodPatch:
			// SSF 1.0 §8.1.1.3, as Keycloak 26.7 does it: stream_id names the stream, the
			// fields given replace the stream's, the answer is the whole configuration.
			var req struct {
				StreamID        string   `json:"stream_id"`
				EventsRequested []string `json:"events_requested"`
			}
			raw, _ := io.ReadAll(r.Body)
			tx.patches = append(tx.patches, patch{auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type"), body: string(raw)})
			if tx.refuse != 0 {
				writeJSON(w, tx.refuse, map[string]string{"error": "stream_error", "error_description": "refused by the test"})
				return
			}
			if err := json.Unmarshal(raw, &req); err != nil || req.StreamID == "" {
				writeJSON(w, 400, map[string]string{"error": "stream_error", "error_description": "Stream ID is required"})
				return
			}
			if !tx.streams[req.StreamID] {
				w.WriteHeader(404)
				return
			}
			if req.EventsRequested != nil {
				tx.requested[req.StreamID] = req.EventsRequested
			}
			writeJSON(w, 200, tx.config(req.StreamID))
		default:
			w.WriteHeader(405)
		}
	})
	mux.HandleFunc("POST /realms/demo/ssf/verify", func(w http.ResponseWriter, r *http.Request) {
		if !tx.authorized(w, r) {
			return
		}
		var req struct {
			StreamID string `json:"stream_id"`
			State    string `json:"state"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		tx.mu.Lock()
		tx.verifyReq = append(tx.verifyReq, req.State)
		tx.mu.Unlock()
		tx.Enqueue(tx.SET(req.StreamID, "ssf/event-type/verification", map[string]any{"state": req.State},
			map[string]any{"format": "opaque", "id": req.StreamID}))
		w.WriteHeader(204)
	})
	mux.HandleFunc("POST /realms/demo/ssf/poll/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !tx.authorized(w, r) {
			return
		}
		var req struct {
			MaxEvents int                          `json:"maxEvents"`
			Ack       []string                     `json:"ack"`
			SetErrs   map[string]map[string]string `json:"setErrs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, 400, map[string]string{"err": "invalid_request"})
			return
		}
		tx.mu.Lock()
		defer tx.mu.Unlock()
		if !tx.streams[r.PathValue("id")] {
			writeJSON(w, 404, map[string]string{"err": "stream_not_found"})
			return
		}
		for _, j := range req.Ack {
			if _, ok := tx.queue[j]; ok {
				tx.acked = append(tx.acked, j)
				delete(tx.queue, j)
			}
		}
		for j, e := range req.SetErrs {
			tx.setErrs[j] = e["err"]
			delete(tx.queue, j)
		}
		sets := map[string]string{}
		for j, s := range tx.queue {
			if len(sets) >= req.MaxEvents {
				break
			}
			sets[j] = s
		}
		writeJSON(w, 200, map[string]any{"sets": sets, "moreAvailable": len(sets) < len(tx.queue)})
	})
	tx.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx.mu.Lock()
		tx.requests = append(tx.requests, request{host: r.Host, path: r.URL.Path, auth: r.Header.Get("Authorization") != ""})
		tx.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	if useTLS {
		// A plain http request to it (a test of the scheme rule) is no news.
		tx.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		tx.srv.StartTLS()
	} else {
		tx.srv.Start()
	}
	t.Cleanup(tx.srv.Close)
	return tx
}

func (tx *transmitter) issuer() string {
	if tx.base != "" {
		return tx.base + "/realms/demo"
	}
	return tx.srv.URL + "/realms/demo"
}

// hostPort is the server's host:port.
func (tx *transmitter) hostPort() string { return tx.srv.Listener.Addr().String() }

// client returns an HTTP client that reaches the transmitter whatever host and port a URL
// names (over TLS when the server is https), so URLs on other origins can be served.
func (tx *transmitter) client() *http.Client {
	addr := tx.hostPort()
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the test's own server
	}}
}

// Requests returns every request received so far.
func (tx *transmitter) Requests() []request {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return append([]request(nil), tx.requests...)
}

func (tx *transmitter) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "Bearer receiver-token" {
		w.WriteHeader(401)
		return false
	}
	return true
}

// supported are the events Keycloak 26.7.3 delivers; it accepts others in events_requested but
// leaves them out of events_delivered.
var supported = []string{"https://schemas.openid.net/secevent/caep/event-type/session-revoked",
	"https://schemas.openid.net/secevent/caep/event-type/credential-change"}

// config is a stream configuration as Keycloak answers it; call with mu held.
func (tx *transmitter) config(id string) map[string]any {
	delivered := []string{}
	for _, e := range tx.requested[id] {
		if slices.Contains(supported, e) {
			delivered = append(delivered, e)
		}
	}
	return map[string]any{
		"stream_id": id, "iss": tx.issuer(), "aud": []string{clientID + "/" + id},
		"delivery":         map[string]string{"method": "urn:ietf:rfc:8936", "endpoint_url": tx.pollURL() + id},
		"events_supported": supported, "events_requested": tx.requested[id], "events_delivered": delivered,
	}
}

// pollURL is the poll URL without the stream id.
func (tx *transmitter) pollURL() string {
	if tx.pollBase != "" {
		return tx.pollBase
	}
	return tx.issuer() + "/ssf/poll/"
}

// patch is one stream update request as received.
type patch struct {
	auth, contentType, body string
}

// Patches returns the stream updates received so far.
func (tx *transmitter) Patches() []patch {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return append([]patch(nil), tx.patches...)
}

// Requested returns the events_requested of stream id.
func (tx *transmitter) Requested(id string) []string {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return append([]string(nil), tx.requested[id]...)
}

// RefuseUpdates makes every stream update answer status (0: accept again).
func (tx *transmitter) RefuseUpdates(status int) {
	tx.mu.Lock()
	tx.refuse = status
	tx.mu.Unlock()
}

// Stream returns the only stream's id ("" when none).
func (tx *transmitter) Stream() string {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	for id := range tx.streams {
		return id
	}
	return ""
}

// Lose forgets every stream and its queue, as a Keycloak whose database was reset.
func (tx *transmitter) Lose() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.streams, tx.requested, tx.queue = map[string]bool{}, map[string][]string{}, map[string]string{}
}

// claims builds a SET's claims for the stream: event is the URI's tail after
// https://schemas.openid.net/secevent/.
func (tx *transmitter) claims(stream, event string, body, subID map[string]any) map[string]any {
	return map[string]any{
		"jti": fmt.Sprintf("jti-%d", time.Now().UnixNano()), "iss": tx.issuer(), "iat": time.Now().Unix(),
		"aud":    clientID + "/" + stream,
		"events": map[string]any{"https://schemas.openid.net/secevent/" + event: body},
		"sub_id": subID, "txn": "txn-1",
	}
}

// SET signs a SET for stream with the transmitter's key and typ secevent+jwt.
func (tx *transmitter) SET(stream, event string, body, subID map[string]any) string {
	return tx.Sign(tx.claims(stream, event, body, subID), tx.key, jose.ES256, "secevent+jwt")
}

// Sign signs claims with key (typ omitted when empty).
func (tx *transmitter) Sign(claims map[string]any, key any, alg jose.SignatureAlgorithm, typ string) string {
	opts := (&jose.SignerOptions{}).WithHeader("kid", "k1")
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tx.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := sig.Sign(payload)
	if err != nil {
		tx.t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		tx.t.Fatal(err)
	}
	return s
}

// Enqueue puts a SET in the poll queue under its jti.
func (tx *transmitter) Enqueue(set string) string {
	var c struct {
		JTI string `json:"jti"`
	}
	parts := strings.Split(set, ".")
	if raw, err := jose.ParseSignedCompact(set, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.HS256}); err == nil {
		_ = json.Unmarshal(raw.UnsafePayloadWithoutVerification(), &c)
	}
	if c.JTI == "" {
		c.JTI = fmt.Sprintf("raw-%d-%d", len(parts), time.Now().UnixNano())
	}
	tx.mu.Lock()
	tx.queue[c.JTI] = set
	tx.mu.Unlock()
	return c.JTI
}

// Outcome reports whether jti was acknowledged, and the setErrs code it got.
func (tx *transmitter) Outcome(jti string) (acked bool, errCode string, waiting bool) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	for _, a := range tx.acked {
		if a == jti {
			acked = true
		}
	}
	_, waiting = tx.queue[jti]
	return acked, tx.setErrs[jti], waiting
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
