package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/demostack"
	"github.com/tokengate/tokengate/verifier"
)

// wiretap is a reverse proxy in front of payments that remembers the last bearer token
// demo-service sent through it: the delegated token an attacker could copy on the way.
type wiretap struct {
	URL string // payments' whoami, through the proxy
	srv *http.Server

	mu   sync.Mutex
	last string
}

// newWiretap listens on a free loopback port and forwards to target (payments' whoami URL).
func newWiretap(target string) (*wiretap, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &wiretap{URL: "http://" + ln.Addr().String() + u.Path}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	w.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if tok, ok := verifier.BearerToken(r.Header.Get("Authorization")); ok {
			w.mu.Lock()
			w.last = tok
			w.mu.Unlock()
		}
		proxy.ServeHTTP(rw, r)
	})}
	go func() { _ = w.srv.Serve(ln) }()
	return w, nil
}

// Last is the last bearer token seen.
func (w *wiretap) Last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Close stops the proxy.
func (w *wiretap) Close() error { return w.srv.Close() }

// downstreamAnswer is demo-service's GET /api/downstream answer: payments' whoami inside.
type downstreamAnswer struct {
	Status int // demo-service's HTTP status
	Answer struct {
		Status int `json:"status"`
		Whoami struct {
			Username string   `json:"username"`
			Act      []string `json:"act"`
			Exp      int64    `json:"exp"`
		} `json:"answer"`
	}
}

func (d downstreamAnswer) expiry() time.Time { return time.Unix(d.Answer.Whoami.Exp, 0) }

// callDownstream calls demo-service's /api/downstream with an internal token (as the BFF
// would) and fails unless demo-service delegated it and payments accepted it for act
// demo-service.
func callDownstream(ctx context.Context, st *demostack.Stack, token string) (downstreamAnswer, error) {
	var d downstreamAnswer
	code, body, _, err := st.CallURL(ctx, st.ServiceDownstreamURL(), token)
	if err != nil {
		return d, err
	}
	d.Status = code
	if err := json.Unmarshal([]byte(body), &d.Answer); err != nil {
		return d, fmt.Errorf("demo-service /api/downstream: HTTP %d, not JSON: %.200s", code, body)
	}
	if act := d.Answer.Whoami.Act; code != http.StatusOK || d.Answer.Status != http.StatusOK || len(act) != 1 || act[0] != demostack.Audience {
		return d, fmt.Errorf("demo-service → payments with a delegated token: HTTP %d %.300s", code, body)
	}
	return d, nil
}
