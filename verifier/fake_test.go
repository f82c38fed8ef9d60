package verifier_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/keys"
	"github.com/tokengate/tokengate/verifier/verifiertest"
)

const (
	streamSecret = verifiertest.DefaultStreamSecret
	serviceAud   = verifiertest.DefaultAudience
	setAud       = verifiertest.DefaultStreamAudience
)

// fakeGateway is verifiertest's fake tokengate signing with real keys of the keys package (so
// that tests rotate and revoke them), plus what only the verifier's own tests need: a JWKS that
// fails or declares a max-age on demand, streams created and deleted through the
// configuration endpoint (OwnStream), and streams tokengate deleted.
type fakeGateway struct {
	*verifiertest.Server
	km *keys.Manager

	jwksDown atomic.Bool  // the JWKS answers 503
	jwksFail atomic.Int32 // the next jwksFail JWKS requests answer 503
	jwksAge  atomic.Int64 // Cache-Control max-age of the JWKS (seconds; none when 0)
	jwksGets atomic.Int64 // JWKS requests received

	mu      sync.Mutex
	created int      // streams created with POST /ssf/streams
	deleted []string // streams deleted
	polled  []string // stream ids polled
	gone    map[string]bool
	kick    chan struct{} // closed to end the held polls when a stream is gone
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
	g := &fakeGateway{km: km, gone: map[string]bool{}, kick: make(chan struct{})}
	g.Server = verifiertest.New(t, verifiertest.Options{Keys: km, Wrap: g.wrap})
	return g
}

// wrap answers the JWKS, stream creation and deletion, and the polls of gone streams; the
// rest goes to verifiertest.
func (g *fakeGateway) wrap(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		g.jwksGets.Add(1)
		if g.jwksDown.Load() || g.jwksFail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if age := g.jwksAge.Load(); age > 0 {
			w.Header().Set("Cache-Control", "public, max-age="+strconv.FormatInt(age, 10))
		}
		next.ServeHTTP(w, r)
	})
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
		_ = json.NewEncoder(w).Encode(g.StreamConfig(id))
	})
	mux.HandleFunc("DELETE /ssf/streams", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.deleted = append(g.deleted, r.URL.Query().Get("stream_id"))
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /ssf/poll/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		g.mu.Lock()
		gone, kick := g.gone[id], g.kick
		if !gone && r.Header.Get("Authorization") == "Bearer "+streamSecret {
			g.polled = append(g.polled, id)
		}
		g.mu.Unlock()
		if gone {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() {
			select {
			case <-kick:
				cancel()
			case <-ctx.Done():
			}
		}()
		ww := &wroteWriter{ResponseWriter: w}
		next.ServeHTTP(ww, r.WithContext(ctx))
		if ww.wrote || r.Context().Err() != nil {
			return
		}
		// The held poll was ended by deleteStream.
		g.mu.Lock()
		gone = g.gone[id]
		g.mu.Unlock()
		if gone {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"sets":{}}`))
	})
	return mux
}

// deleteStream is tokengate deleting stream id (after a long silence): its polls, held ones
// too, answer 401.
func (g *fakeGateway) deleteStream(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gone[id] = true
	close(g.kick)
	g.kick = make(chan struct{})
}

// wroteWriter records whether an answer was started.
type wroteWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *wroteWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *wroteWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}
