package chaos

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/kctest"
)

// op is one answer the suite got, with its timestamps: the load generator's log, which the
// invariant checkers and the figures read.
type op struct {
	Kind    string    `json:"kind"` // renew, exchange, logout, probe
	Replica int       `json:"replica"`
	SID     string    `json:"sid,omitempty"`
	Start   time.Time `json:"start"` // request sent
	End     time.Time `json:"end"`   // answer (or error) received
	Status  int       `json:"status"`
	Error   string    `json:"error,omitempty"` // OAuth error code, or the transport error
	Attempt int       `json:"attempt,omitempty"`
	// Final marks a probe's last answer after the faults were healed: it must be a refusal
	// proper (400 invalid_grant), not a fail-closed 503.
	Final bool `json:"final,omitempty"`
}

func (o op) ok() bool { return o.Status == http.StatusOK }

// refusedAsLoggedOut is a renewal refused because the session ended.
func (o op) refusedAsLoggedOut() bool {
	return o.Status == http.StatusBadRequest && o.Error == "invalid_grant"
}

// failed is an answer a retrying client would retry: none, or 5xx.
func (o op) failed() bool { return o.Status == 0 || o.Status >= 500 }

// opLog is every answer and every acknowledged logout.
type opLog struct {
	mu      sync.Mutex
	ops     []op
	acks    map[string]time.Time // sid → when its logout's 200 arrived
	touched touchedSet           // sids a logout was sent for (acknowledged or not), and when
}

// touchedSet holds when a logout was first sent for each session it names.
type touchedSet map[string]time.Time

// live reports whether o renewed a session before any logout was sent for it: a renewal the
// live-session figures judge (after a logout was sent, answered or not, the session may be
// on record and a refusal is no failure).
func (t touchedSet) live(o op) bool {
	at, ok := t[o.SID]
	return o.Kind == "renew" && (!ok || o.Start.Before(at))
}

func newOpLog() *opLog { return &opLog{acks: map[string]time.Time{}, touched: touchedSet{}} }

func (l *opLog) add(o op) {
	l.mu.Lock()
	l.ops = append(l.ops, o)
	l.mu.Unlock()
}

func (l *opLog) ack(sid string, at time.Time) {
	l.mu.Lock()
	l.acks[sid] = at
	l.mu.Unlock()
}

func (l *opLog) touch(sid string) {
	l.mu.Lock()
	if _, ok := l.touched[sid]; !ok {
		l.touched[sid] = time.Now()
	}
	l.mu.Unlock()
}

// snapshot returns copies of the log's ops, acknowledgements and touched sessions.
func (l *opLog) snapshot() ([]op, map[string]time.Time, touchedSet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	acks := make(map[string]time.Time, len(l.acks))
	for k, v := range l.acks {
		acks[k] = v
	}
	touched := make(touchedSet, len(l.touched))
	for k, v := range l.touched {
		touched[k] = v
	}
	return append([]op(nil), l.ops...), acks, touched
}

// session is one Keycloak login exchanged at a replica.
type session struct {
	sub, sid, refresh string
}

// loadOpts shape the BFF's load.
type loadOpts struct {
	Renewals   int // per second, all workers together
	Workers    int
	Logouts    int // back-channel logouts per second
	LogoutConc int // logout senders
	Exchanges  int // new sessions per second (on top of what the logouts consume)
	Initial    int // sessions before the load starts
	DeadShare  float64
}

// load is the BFF load generator: it renews sessions round robin over the replicas (retrying
// once on the next replica after a failure), exchanges new tokens, and streams back-channel
// logouts; every answer goes to the cluster's opLog with its timestamps. Renewals of sessions
// already logged out keep going too (DeadShare of them): I2 reads their answers.
type load struct {
	c    *cluster
	o    loadOpts
	rr   atomic.Uint64
	mu   sync.Mutex
	live []session
	dead []session
	stop atomic.Bool
	wg   sync.WaitGroup
}

// startLoad logs in o.Initial sessions and starts the workers.
func (c *cluster) startLoad(o loadOpts) *load {
	c.t.Helper()
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.LogoutConc == 0 {
		o.LogoutConc = 1
	}
	if o.DeadShare == 0 {
		o.DeadShare = 0.3
	}
	l := &load{c: c, o: o}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 6)
	for range o.Initial {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			l.exchange()
		})
	}
	wg.Wait()
	l.mu.Lock()
	n := len(l.live)
	l.mu.Unlock()
	if n < o.Initial*9/10 {
		c.t.Fatalf("only %d of %d initial exchanges succeeded", n, o.Initial)
	}
	for range o.Workers {
		l.paced(float64(o.Renewals)/float64(o.Workers), l.renewOne)
	}
	for range o.LogoutConc {
		l.paced(float64(o.Logouts)/float64(o.LogoutConc), l.logoutOne)
	}
	if ex := o.Exchanges + o.Logouts; ex > 0 {
		l.paced(float64(ex), func() { l.exchange() })
	}
	c.t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for the requests in flight.
func (l *load) Stop() {
	l.stop.Store(true)
	l.wg.Wait()
}

// paced runs f perSecond times a second on its own goroutine until Stop.
func (l *load) paced(perSecond float64, f func()) {
	if perSecond <= 0 {
		return
	}
	every := time.Duration(float64(time.Second) / perSecond)
	l.wg.Go(func() {
		next := time.Now()
		for !l.stop.Load() {
			f()
			next = next.Add(every)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			} else if d < -time.Second {
				next = time.Now() // fell behind (a held request): do not burst to catch up
			}
		}
	})
}

func (l *load) next() *replica {
	rs := l.c.replicas
	return rs[int(l.rr.Add(1))%len(rs)]
}

func (l *load) exchange() {
	r := l.next()
	s := session{sub: "user-" + randHex(5), sid: "sid-" + randHex(8)}
	at := l.c.realm.AccessToken(kctest.Token{Subject: s.sub, SID: s.sid, Lifetime: 30 * time.Minute})
	start := time.Now()
	got := r.exchange(at)
	l.c.log.add(record("exchange", r, s.sid, start, got, 1))
	if got.Status == http.StatusOK && got.RefreshToken != "" {
		s.refresh = got.RefreshToken
		l.mu.Lock()
		l.live = append(l.live, s)
		l.mu.Unlock()
	}
}

// renewOne renews one session round robin, and once more on the next replica after a failure.
func (l *load) renewOne() {
	l.mu.Lock()
	var s session
	switch {
	case len(l.dead) > 0 && rand.Float64() < l.o.DeadShare:
		s = l.dead[rand.IntN(len(l.dead))]
	case len(l.live) > 0:
		s = l.live[rand.IntN(len(l.live))]
	default:
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	r := l.next()
	for attempt := 1; attempt <= 2; attempt++ {
		start := time.Now()
		got := r.renew(s.refresh)
		o := record("renew", r, s.sid, start, got, attempt)
		l.c.log.add(o)
		if !o.failed() {
			return
		}
		r = l.c.replicas[(r.idx+1)%len(l.c.replicas)] // another replica, whatever the round robin says

	}
}

// logoutOne sends the back-channel logout of a random live session to the next replica.
func (l *load) logoutOne() {
	l.mu.Lock()
	if len(l.live) < 10 {
		l.mu.Unlock()
		return
	}
	i := rand.IntN(len(l.live))
	s := l.live[i]
	l.live[i] = l.live[len(l.live)-1]
	l.live = l.live[:len(l.live)-1]
	l.mu.Unlock()
	l.c.log.touch(s.sid)
	r := l.next()
	start := time.Now()
	got := r.logout(l.c.realm.LogoutToken(s.sub, s.sid))
	o := record("logout", r, s.sid, start, got, 1)
	l.c.log.add(o)
	if o.ok() {
		l.c.log.ack(s.sid, o.End)
		l.mu.Lock()
		l.dead = append(l.dead, s)
		l.mu.Unlock()
	}
	// Not acknowledged (503, or no answer): the logout may or may not have been committed,
	// so the session is renewed no more — neither the live figures nor I2 can judge it.
}

// deadSessions returns the sessions whose logout was acknowledged.
func (l *load) deadSessions() []session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]session(nil), l.dead...)
}

func record(kind string, r *replica, sid string, start time.Time, got reply, attempt int) op {
	o := op{Kind: kind, Replica: r.idx, SID: sid, Start: start, End: time.Now(), Status: got.Status, Error: got.Error, Attempt: attempt}
	if got.Err != nil {
		o.Status, o.Error = 0, transportError(got.Err)
	}
	return o
}

// transportError names a failure to get an answer without the addresses in it.
func transportError(err error) string {
	msg := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "EOF", "Client.Timeout", "broken pipe"} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	return msg
}
