package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/kctest"
	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/proctest"
)

type soakOptions struct {
	bin         string
	duration    time.Duration
	sessions    int
	rate        float64
	logoutEvery time.Duration
	rotations   int
	sampleEvery time.Duration
	out         string
}

// sample is one observation of the process.
type sample struct {
	At         float64 `json:"t_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
	Goroutines int     `json:"goroutines"`
}

// soakResult is what a soak run found.
type soakResult struct {
	Options struct {
		Duration    string  `json:"duration"`
		Sessions    int     `json:"sessions"`
		Rate        float64 `json:"rate_per_second"`
		LogoutEvery string  `json:"logout_every"`
		Rotations   int     `json:"rotations_requested"`
	} `json:"options"`
	Renewals          int64    `json:"renewals"`
	Exchanges         int64    `json:"exchanges"`
	Logouts           int64    `json:"logouts"`
	LogoutsHonoured   int64    `json:"logouts_honoured"`
	LogoutsMissed     int64    `json:"logouts_missed"`
	Rotations         int      `json:"rotations_done"`
	Unexpected        int64    `json:"unexpected_errors"`
	UnexpectedSamples []string `json:"unexpected_examples,omitempty"`
	RenewalP50Ms      float64  `json:"renewal_p50_ms"`
	RenewalP99Ms      float64  `json:"renewal_p99_ms"`
	Samples           []sample `json:"samples"`
	RSSSlopeMiBPerMin float64  `json:"rss_slope_mib_per_min"`
	GoroutineSlope    float64  `json:"goroutine_slope_per_min"`
	RSSStartMiB       float64  `json:"rss_start_mib"`
	RSSEndMiB         float64  `json:"rss_end_mib"`
}

// Pass applies the soak criteria: no unexpected error, every logout honoured, at least the
// requested rotations, and no growth of goroutines or memory after warm-up.
func (r *soakResult) Pass() bool {
	return r.Unexpected == 0 && r.LogoutsMissed == 0 && r.Rotations >= r.Options.Rotations &&
		r.GoroutineSlope < 1 && r.RSSSlopeMiBPerMin < 1
}

// Markdown renders the result for the README.
func (r *soakResult) Markdown() string {
	var b strings.Builder
	verdict := "PASS"
	if !r.Pass() {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "| soak (%s, %d sessions, %.0f renewals/s, a logout every %s) | %s |\n|---|---|\n",
		r.Options.Duration, r.Options.Sessions, r.Options.Rate, r.Options.LogoutEvery, verdict)
	fmt.Fprintf(&b, "| renewals / exchanges | %d / %d |\n", r.Renewals, r.Exchanges)
	fmt.Fprintf(&b, "| renewal latency p50 / p99 | %.2f ms / %.2f ms |\n", r.RenewalP50Ms, r.RenewalP99Ms)
	fmt.Fprintf(&b, "| logouts honoured / missed | %d / %d |\n", r.LogoutsHonoured, r.LogoutsMissed)
	fmt.Fprintf(&b, "| key rotations | %d |\n", r.Rotations)
	fmt.Fprintf(&b, "| unexpected errors | %d |\n", r.Unexpected)
	fmt.Fprintf(&b, "| RSS start → end | %.1f MiB → %.1f MiB |\n", r.RSSStartMiB, r.RSSEndMiB)
	fmt.Fprintf(&b, "| RSS slope after warm-up | %+.3f MiB/min |\n", r.RSSSlopeMiBPerMin)
	fmt.Fprintf(&b, "| goroutine slope after warm-up | %+.3f /min |\n", r.GoroutineSlope)
	return b.String()
}

const (
	soakClientID = "bff"
	soakAudience = "demo-service"
)

// gateway is the tokengate process under test.
type gateway struct {
	*proctest.Gateway
	adminToken string
	secret     string
	client     *http.Client
}

func startGateway(ctx context.Context, bin, realmIssuer, workDir string, rotateEvery time.Duration) (*gateway, error) {
	return startGatewayWith(ctx, bin, realmIssuer, workDir, rotateEvery,
		config.Tokens{TTL: config.Duration(30 * time.Second), RecheckAfter: config.Duration(60 * time.Second)})
}

func startGatewayWith(ctx context.Context, bin, realmIssuer, workDir string, rotateEvery time.Duration, tokens config.Tokens) (*gateway, error) {
	secret, hash := loopback.Secret()
	adminToken, adminHash := loopback.Secret()
	// Issuer is left empty: the public listener's URL.
	c := config.Config{
		DataDir: filepath.Join(workDir, "data"), LogLevel: "warn",
		Upstream: config.Upstream{Issuer: realmIssuer, ClientID: kctest.ClientID, ClientSecret: kctest.ClientSecret,
			LogoutAudiences: []string{kctest.LogoutAudience}},
		Tokens:  tokens,
		Keys:    config.Keys{JWKSMaxAge: config.Duration(30 * time.Second), RotateEvery: config.Duration(rotateEvery)},
		Limits:  config.Limits{Token: &config.Limit{Rate: 100000, Burst: 100000}, Logout: &config.Limit{Rate: 1000, Burst: 1000}},
		Admin:   config.Admin{Tokens: []config.AdminToken{{Name: "soak", SHA256: adminHash}}},
		Clients: []config.Client{{ID: soakClientID, SecretSHA256: hash, Audiences: []string{soakAudience}}},
	}
	pg, err := proctest.Start(ctx, c, proctest.Options{Bin: bin, Dir: workDir, LogPath: filepath.Join(workDir, "tokengate.log")})
	if err != nil {
		return nil, err
	}
	return &gateway{Gateway: pg, adminToken: adminToken, secret: secret,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}, nil
}

type answer struct {
	status       int
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
}

func (g *gateway) post(ctx context.Context, path string, form url.Values, auth bool) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.Base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth {
		req.SetBasicAuth(soakClientID, g.secret)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode}
	if len(bytes.TrimSpace(body)) > 0 {
		_ = json.Unmarshal(body, &a)
	}
	return a, nil
}

func (g *gateway) exchange(ctx context.Context, tok string) (answer, error) {
	return g.post(ctx, "/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token": {tok}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}}, true)
}

func (g *gateway) renew(ctx context.Context, rt string) (answer, error) {
	return g.post(ctx, "/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, true)
}

func (g *gateway) rotate(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.Admin+"/admin/keys/rotate", nil)
	req.Header.Set("Authorization", "Bearer "+g.adminToken)
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("rotate: HTTP %d %s", resp.StatusCode, b)
	}
	return nil
}

// observe reads RSS from /proc and goroutines from /metrics.
func (g *gateway) observe(start time.Time) (sample, error) {
	s := sample{At: time.Since(start).Seconds()}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.Pid()))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			s.RSSBytes = kb << 10
		}
	}
	resp, err := http.Get(g.Admin + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc = bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			s.Goroutines = int(n)
		}
	}
	return s, nil
}

// session is one simulated BFF session.
type session struct {
	mu          sync.Mutex
	sid         string
	refresh     string
	loggedOutAt time.Time // zero while live
	// logoutSent is set before the logout is posted: a renewal racing with it may be refused.
	logoutSent bool
}

// raced reports whether the session holding refresh token rt had its logout sent.
func (s *session) raced(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh == rt && s.logoutSent
}

func soak(ctx context.Context, o soakOptions) (*soakResult, error) {
	res := &soakResult{}
	res.Options.Duration, res.Options.Sessions, res.Options.Rate = o.duration.String(), o.sessions, o.rate
	res.Options.LogoutEvery, res.Options.Rotations = o.logoutEvery.String(), o.rotations
	if _, err := os.Stat(o.bin); err != nil {
		return nil, fmt.Errorf("%s: %w (run make build)", o.bin, err)
	}
	work, err := os.MkdirTemp("", "tokengate-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	realm := kctest.NewUnstarted()
	realm.Server.Start()
	defer realm.Server.Close()
	// The schedule rotates the keys; rotations requested through the admin API come on top.
	g, err := startGateway(ctx, o.bin, realm.Issuer(), work, time.Hour)
	if err != nil {
		return nil, err
	}
	defer func() { _, _ = g.Stop(syscall.SIGTERM, 20*time.Second) }()

	var unexpected atomic.Int64
	var exMu sync.Mutex
	noteUnexpected := func(what string) {
		if unexpected.Add(1) <= 5 {
			exMu.Lock()
			res.UnexpectedSamples = append(res.UnexpectedSamples, what)
			exMu.Unlock()
		}
	}
	newSession := func(s *session) error {
		sid := "soak-" + base64.RawURLEncoding.EncodeToString(randomBytes(9))
		a, err := g.exchange(ctx, realm.AccessToken(kctest.Token{SID: sid, Lifetime: 2 * time.Hour}))
		if err != nil || a.status != 200 {
			return fmt.Errorf("exchange: %v %d %s", err, a.status, a.Error)
		}
		s.mu.Lock()
		s.sid, s.refresh, s.loggedOutAt, s.logoutSent = sid, a.RefreshToken, time.Time{}, false
		s.mu.Unlock()
		atomic.AddInt64(&res.Exchanges, 1)
		return nil
	}
	sessions := make([]*session, o.sessions)
	for i := range sessions {
		sessions[i] = &session{}
		if err := newSession(sessions[i]); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var wg sync.WaitGroup
	var latMu sync.Mutex
	var lat []float64
	lim := rate.NewLimiter(rate.Limit(o.rate), int(o.rate/10)+1)
	workers := 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; ; i += workers {
				if lim.Wait(runCtx) != nil {
					return
				}
				s := sessions[i%len(sessions)]
				s.mu.Lock()
				rt, out := s.refresh, s.loggedOutAt
				s.mu.Unlock()
				t0 := time.Now()
				a, err := g.renew(runCtx, rt)
				d := time.Since(t0)
				switch {
				case runCtx.Err() != nil:
					return
				case err != nil:
					noteUnexpected("renew: " + err.Error())
				case !out.IsZero():
					// A logged-out session: its renewal must be refused. Start a new one.
					if a.status == 400 && a.Error == "invalid_grant" {
						atomic.AddInt64(&res.LogoutsHonoured, 1)
					} else {
						atomic.AddInt64(&res.LogoutsMissed, 1)
					}
					if err := newSession(s); err != nil && runCtx.Err() == nil {
						noteUnexpected(err.Error())
					}
				case a.status == 400 && a.Error == "invalid_grant" && s.raced(rt):
					// Its logout was being sent while this renewal ran: a correct refusal,
					// counted when the worker next meets the session as logged out.
				case a.status != 200:
					noteUnexpected(fmt.Sprintf("renew: HTTP %d %s", a.status, a.Error))
				default:
					atomic.AddInt64(&res.Renewals, 1)
					latMu.Lock()
					lat = append(lat, float64(d.Microseconds())/1000)
					latMu.Unlock()
				}
			}
		}(w)
	}
	wg.Add(1)
	go func() { // logouts
		defer wg.Done()
		t := time.NewTicker(o.logoutEvery)
		defer t.Stop()
		n := 0
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
			s := sessions[(n*7919)%len(sessions)]
			n++
			s.mu.Lock()
			sid, done := s.sid, s.logoutSent
			s.logoutSent = true
			s.mu.Unlock()
			if done {
				continue
			}
			a, err := g.post(runCtx, "/backchannel-logout", url.Values{"logout_token": {realm.LogoutToken("", sid)}}, false)
			if runCtx.Err() != nil {
				return
			}
			if err != nil || a.status != 200 {
				noteUnexpected(fmt.Sprintf("logout: %v %d", err, a.status))
				continue
			}
			s.mu.Lock()
			if s.sid == sid {
				s.loggedOutAt = time.Now()
			}
			s.mu.Unlock()
			atomic.AddInt64(&res.Logouts, 1)
		}
	}()
	wg.Add(1)
	go func() { // rotations, spread over the run, each once the next key is old enough
		defer wg.Done()
		for i := 1; i <= o.rotations; i++ {
			at := start.Add(o.duration * time.Duration(i) / time.Duration(o.rotations+1))
			select {
			case <-runCtx.Done():
				return
			case <-time.After(time.Until(at)):
			}
			for {
				err := g.rotate(runCtx)
				if err == nil {
					res.Rotations++
					break
				}
				if runCtx.Err() != nil {
					return
				}
				if !strings.Contains(err.Error(), "409") {
					noteUnexpected(err.Error())
					break
				}
				time.Sleep(time.Second)
			}
		}
	}()
	for {
		s, err := g.observe(start)
		if err == nil {
			res.Samples = append(res.Samples, s)
		}
		select {
		case <-runCtx.Done():
			wg.Wait()
			res.Unexpected = unexpected.Load()
			res.RenewalP50Ms, res.RenewalP99Ms = percentile(lat, 50), percentile(lat, 99)
			res.summarise()
			return res, res.save(o.out)
		case <-time.After(o.sampleEvery):
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// summarise fits lines through the samples after the first fifth of the run (warm-up).
func (r *soakResult) summarise() {
	if len(r.Samples) == 0 {
		return
	}
	r.RSSStartMiB = float64(r.Samples[0].RSSBytes) / (1 << 20)
	r.RSSEndMiB = float64(r.Samples[len(r.Samples)-1].RSSBytes) / (1 << 20)
	steady := r.Samples[len(r.Samples)/5:]
	var xs, rss, gor []float64
	for _, s := range steady {
		xs = append(xs, s.At/60)
		rss = append(rss, float64(s.RSSBytes)/(1<<20))
		gor = append(gor, float64(s.Goroutines))
	}
	r.RSSSlopeMiBPerMin, r.GoroutineSlope = slope(xs, rss), slope(xs, gor)
}

func (r *soakResult) save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "soak.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "soak.md"), []byte(r.Markdown()), 0o644)
}
