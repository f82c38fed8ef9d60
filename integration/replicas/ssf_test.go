package replicas

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/testwait"
	"github.com/tokengate/tokengate/verifier"
)

// roundRobin sends each request to the next replica in turn, as a load balancer in front of
// the replicas would: the verifier's discovery, stream creation and every poll may each land on
// another replica.
type roundRobin struct {
	rs []*replica
	n  atomic.Uint64
}

func (rr *roundRobin) RoundTrip(req *http.Request) (*http.Response, error) {
	r := rr.rs[int(rr.n.Add(1))%len(rr.rs)]
	out := req.Clone(req.Context())
	base, _ := url.Parse(r.Base)
	out.URL.Scheme, out.URL.Host, out.Host = base.Scheme, base.Host, ""
	return http.DefaultTransport.RoundTrip(out)
}

// countingHandler counts log records whose message contains one of the watched phrases.
type countingHandler struct {
	slog.Handler
	recreated *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "created a new one") {
		h.recreated.Add(1)
	}
	return nil
}

// TestSSF_StreamsAndAcksSharedByReplicas: three replicas on etcd behind a round-robin client;
// three service processes each create their own stream with a receiver credential and poll
// through the round robin. Every poll may reach another replica than the one that created the
// stream or took the last acknowledgement: no poll is refused (no stream is recreated, no
// verifier fails closed), and every logout, recorded at any replica, is enforced at every
// service.
func TestSSF_StreamsAndAcksSharedByReplicas(t *testing.T) {
	integration(t)
	secret, hash := loopback.Secret()
	e := newEnvWith(t, func(c *config.Config) {
		c.SSF.Receivers = []config.SSFReceiver{{ID: "orders", Audience: "orders-api", SecretSHA256: hash}}
	}, all(3)...)
	rr := &roundRobin{rs: e.replicas}
	var recreated atomic.Int64
	var vs []*verifier.Verifier
	for i := range 3 {
		v, err := verifier.New(context.Background(), verifier.Config{
			Issuer: "https://tokengate.test", Audience: audience, StreamSecret: secret, OwnStream: true,
			FailClosedAfter: 3 * time.Second,
			HTTPClient:      &http.Client{Transport: rr, Timeout: 30 * time.Second},
			Logger:          slog.New(countingHandler{Handler: slog.DiscardHandler, recreated: &recreated}),
		})
		if err != nil {
			t.Fatalf("service %d: %v", i, err)
		}
		t.Cleanup(func() { _ = v.Close() })
		vs = append(vs, v)
	}
	live := e.realm.AccessToken(kctest.Token{Subject: "bob", SID: "sid-live-" + randHex(4), Lifetime: 10 * time.Minute})
	liveTok := e.replicas[0].exchange(live).AccessToken
	if liveTok == "" {
		t.Fatal("exchange failed")
	}

	const logouts = 9
	for i := range logouts {
		s := session{sub: "user-" + randHex(4), sid: "sid-rr-" + randHex(6)}
		r := e.replicas[i%3]
		tok := r.exchange(e.realm.AccessToken(kctest.Token{Subject: s.sub, SID: s.sid, Lifetime: 10 * time.Minute})).AccessToken
		for n, v := range vs {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("logout %d: service %d refused a live token: %v", i, n, err)
			}
		}
		if got := r.logout(e.logoutToken(s)); got.Status != http.StatusOK {
			t.Fatalf("logout at %s: %v", r.name, got)
		}
		var wg sync.WaitGroup
		for n, v := range vs {
			wg.Go(func() {
				var refused error
				_ = testwait.Poll(context.Background(), 5*time.Second, 5*time.Millisecond, func() error {
					_, refused = v.Verify(context.Background(), tok)
					if refused == nil {
						return errors.New("still accepted")
					}
					return nil
				})
				switch {
				case refused == nil:
					t.Errorf("logout %d at %s: service %d still accepts the token 5s later", i, r.name, n)
				case !strings.Contains(refused.Error(), "revoked"):
					t.Errorf("logout %d at %s: service %d refused for another reason: %v", i, r.name, n, refused)
				}
			})
		}
		wg.Wait()
	}
	// Longer than FailClosedAfter: the feeds stayed healthy through the round robin.
	time.Sleep(4 * time.Second)
	for n, v := range vs {
		if _, err := v.Verify(context.Background(), liveTok); err != nil {
			t.Errorf("service %d refuses a live token after %d polls through the round robin: %v (status %+v)", n, rr.n.Load(), err, v.Status())
		}
	}
	if n := recreated.Load(); n != 0 {
		t.Errorf("verifiers recreated their streams %d times: a replica answered 401 for a stream another created", n)
	}
	// Each replica lists the same three streams.
	for _, r := range e.replicas {
		testwait.Eventually(t, 3*time.Second, r.name+" lists the 3 receiver streams", func() bool {
			code, body := r.get("/admin/streams", true)
			return code == http.StatusOK && strings.Count(string(body), `"source":"receiver"`) == 3
		})
	}
	t.Logf("%d requests through the round robin, %d stream recreations", rr.n.Load(), recreated.Load())
}
