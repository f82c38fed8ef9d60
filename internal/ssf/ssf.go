// Package ssf is tokengate's Shared Signals transmitter (OpenID SSF 1.0): it turns every
// recorded logout into a CAEP session-revoked Security Event Token per receiving service and
// delivers it by RFC 8936 polling, long polls answering within milliseconds of the logout.
//
// Events come from the store's durable event log (store.EventLog), in Seq order, so a
// restarted tokengate or a reconnecting receiver misses nothing: each stream remembers up to
// which Seq its receiver acknowledged, and unacknowledged events are delivered again. Events
// are kept for Config.Retention, which outlasts every internal token they could stop.
//
// The package holds the policy and no HTTP; package server maps it to routes.
package ssf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokengate/tokengate/internal/store"
)

// Store is what the transmitter needs from the store: the revocation event log and the stream
// documents (store.EventLog).
type Store interface {
	Events(ctx context.Context, after uint64, limit int) ([]store.Event, error)
	LastEventSeq(ctx context.Context) (uint64, error)
	TrimEvents(ctx context.Context, before time.Time) (int, error)
	Streams(ctx context.Context) (map[string][]byte, error)
	PutStreams(ctx context.Context, docs map[string][]byte) error
	UpdateStreams(ctx context.Context, docs map[string][]byte) ([]string, error)
	DeleteStream(ctx context.Context, id string) error
}

// EventsNotifier is optionally implemented by a Store shared by several processes (replicas on
// one etcd cluster): a value on EventsChanged means another process may have appended events,
// so the transmitter reads the log's newest Seq at once instead of at the next TailInterval.
// A nil channel means the store is not shared. A shared store's stream documents are merged
// into memory as well (shared.go).
type EventsNotifier interface {
	EventsChanged() <-chan struct{}
}

// Signer signs SETs with tokengate's active key (keys.Manager.SignWithType).
type Signer interface {
	SignWithType(payload []byte, typ string) (token, kid string, err error)
}

// Config configures the transmitter.
type Config struct {
	// Issuer is tokengate's issuer: iss of the SETs, and the base of the endpoint URLs.
	Issuer string
	// PollTimeout is the longest a long poll is held (25s when zero).
	PollTimeout time.Duration
	// Retention is how long events are kept for unacknowledged delivery (required).
	Retention time.Duration
	// Streams are the streams defined by configuration.
	Streams []StreamConfig
	// Receivers may create their own streams through the configuration endpoint.
	Receivers []ReceiverConfig
	// InactivityTimeout is how long a receiver-created stream lives without a poll (10m when
	// zero).
	InactivityTimeout time.Duration
	// TailInterval is how often the log is checked for events this process was not told about
	// (appended by another process sharing the store); 1s when zero.
	TailInterval time.Duration
	// FlushInterval is how often acknowledgements are written to the store (1s when zero). A
	// crash forgets at most this much of acknowledgements: those SETs are delivered again and
	// receivers recognise their jti.
	FlushInterval time.Duration
	// Registerer receives the metrics (none when nil).
	Registerer prometheus.Registerer
	// Logger receives stream and error lines (slog.Default when nil).
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Defaults.
const (
	// DefaultPollTimeout is the default longest hold of a long poll.
	DefaultPollTimeout = 25 * time.Second
	// DefaultInactivityTimeout is how long a receiver-created stream lives without a poll.
	DefaultInactivityTimeout = 10 * time.Minute
)

// Transmitter delivers logout events to streams. It is safe for concurrent use.
type Transmitter struct {
	cfg    Config
	store  Store
	signer Signer
	m      *metrics

	mu      sync.Mutex
	streams map[string]*stream
	head    uint64        // newest Seq known to exist
	floor   uint64        // every event with Seq ≤ floor has been trimmed
	changed chan struct{} // closed (and replaced) when head advances, a stream goes, or on close
	closed  bool
	// lastSyncStart is when the last merge of the stored streams started (shared logs; see
	// shared.go); syncMu serialises on-demand merges.
	lastSyncStart time.Time

	// writeMu serialises writes of stream documents, so a flush never resurrects a deleted
	// stream.
	writeMu sync.Mutex
	syncMu  sync.Mutex
}

// New loads the streams from the store, merges those of the configuration (which win on
// definition; their delivery state is kept), stores the result and returns the transmitter.
// Call Run to keep it going.
func New(ctx context.Context, cfg Config, st Store, signer Signer) (*Transmitter, error) {
	if cfg.Issuer == "" || cfg.Retention <= 0 {
		return nil, errors.New("ssf: Issuer and Retention are required")
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	if cfg.TailInterval <= 0 {
		cfg.TailInterval = time.Second
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.InactivityTimeout <= 0 {
		cfg.InactivityTimeout = DefaultInactivityTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &Transmitter{cfg: cfg, store: st, signer: signer, m: newMetrics(), streams: map[string]*stream{},
		changed: make(chan struct{})}
	if err := t.load(ctx); err != nil {
		return nil, err
	}
	if cfg.Registerer != nil {
		if err := t.m.register(cfg.Registerer, t); err != nil {
			return nil, fmt.Errorf("ssf: metrics: %w", err)
		}
	}
	return t, nil
}

// load reads the stored streams, applies the configured ones and finds the log's bounds.
func (t *Transmitter) load(ctx context.Context) error {
	docs, err := t.store.Streams(ctx)
	if err != nil {
		return fmt.Errorf("ssf: load streams: %w", err)
	}
	configured := map[string]StreamConfig{}
	for _, c := range t.cfg.Streams {
		if !streamIDPattern.MatchString(c.ID) {
			return fmt.Errorf("%w: id %q", ErrInvalidStream, c.ID)
		}
		if _, dup := configured[c.ID]; dup {
			return fmt.Errorf("%w: id %q listed twice", ErrInvalidStream, c.ID)
		}
		configured[c.ID] = c
	}
	receivers := map[string]ReceiverConfig{}
	for _, r := range t.cfg.Receivers {
		if !streamIDPattern.MatchString(r.ID) || len(r.ID) > 50 || strings.Contains(r.ID, ".") {
			return fmt.Errorf("%w: receiver id %q", ErrInvalidStream, r.ID)
		}
		if _, dup := receivers[r.ID]; dup || r.Audience == "" {
			return fmt.Errorf("%w: receiver %q listed twice or without audience", ErrInvalidStream, r.ID)
		}
		receivers[r.ID] = r
	}
	var stale []string
	for id, raw := range docs {
		s, err := streamFromDoc(raw)
		if err != nil || s.def.ID != id {
			return fmt.Errorf("ssf: stream %q: bad document: %v", id, err)
		}
		if _, ok := configured[id]; !ok && s.def.Source == SourceConfig {
			stale = append(stale, id) // removed from the configuration file
			continue
		}
		if s.def.Source == SourceReceiver {
			rc, ok := receivers[s.def.Owner]
			if !ok {
				stale = append(stale, id) // its receiver was removed from the configuration
				continue
			}
			s.def.Audience, s.def.secret = rc.Audience, rc.SecretSHA256
			s.lastPoll = t.cfg.Now() // the inactivity timeout restarts with the process
		}
		t.streams[id] = s
	}
	write := map[string][]byte{}
	for id, c := range configured {
		s, ok := t.streams[id]
		if !ok {
			s = &stream{def: streamDef{ID: id, CreatedAt: t.cfg.Now().UTC()}, above: map[uint64]struct{}{}}
			t.streams[id] = s
		}
		s.def.Audience, s.def.Description, s.def.Source, s.def.secret = c.Audience, c.Description, SourceConfig, c.SecretSHA256
		if s.def.Audience == "" {
			s.def.Audience = id
		}
		write[id] = s.doc()
	}
	if len(write) > 0 {
		if err := t.store.PutStreams(ctx, write); err != nil {
			return fmt.Errorf("ssf: store streams: %w", err)
		}
	}
	for _, id := range stale {
		if err := t.store.DeleteStream(ctx, id); err != nil {
			return fmt.Errorf("ssf: delete stream %q: %w", id, err)
		}
		t.cfg.Logger.Info("ssf stream removed from the configuration", "event", "ssf_stream", "stream", id)
	}
	if t.head, err = t.store.LastEventSeq(ctx); err != nil {
		return fmt.Errorf("ssf: read event log: %w", err)
	}
	return t.findFloor(ctx)
}

// Notify tells the transmitter an event was recorded (the gateway's issuer.Publisher calls
// it): waiting polls of every stream wake up at once.
func (t *Transmitter) Notify(e store.Event) { t.advance(e.Seq) }

// advance moves head to seq if it is newer and wakes the waiting polls.
func (t *Transmitter) advance(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq <= t.head {
		return
	}
	n := float64(seq - t.head)
	t.head = seq
	for id := range t.streams {
		t.m.emitted.WithLabelValues(id).Add(n)
	}
	t.broadcastLocked()
}

func (t *Transmitter) broadcastLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// Run tails the log, writes acknowledgements and trims expired events until ctx ends; then it
// ends every waiting poll, writes the last acknowledgements and returns.
func (t *Transmitter) Run(ctx context.Context) {
	tail := time.NewTicker(t.cfg.TailInterval)
	defer tail.Stop()
	flush := time.NewTicker(t.cfg.FlushInterval)
	defer flush.Stop()
	trim := time.NewTicker(min(t.cfg.Retention/4, time.Minute))
	defer trim.Stop()
	expire := time.NewTicker(max(time.Second, min(t.cfg.InactivityTimeout/4, time.Minute)))
	defer expire.Stop()
	var appended <-chan struct{}
	if n, ok := t.store.(EventsNotifier); ok {
		appended = n.EventsChanged()
	}
	for {
		select {
		case _, ok := <-appended:
			if !ok {
				appended = nil
				continue
			}
			if seq, err := t.store.LastEventSeq(ctx); err == nil {
				t.advance(seq)
			}
		case <-ctx.Done():
			t.Close()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := t.Flush(fctx); err != nil {
				t.cfg.Logger.Error("ssf: writing acknowledgements at shutdown", "error", err.Error())
			}
			return
		case <-tail.C:
			if seq, err := t.store.LastEventSeq(ctx); err == nil {
				t.advance(seq)
			}
			if t.shared() {
				if err := t.sync(ctx); err != nil && ctx.Err() == nil {
					t.cfg.Logger.Warn("ssf: reading the shared streams", "error", err.Error())
				}
			}
		case <-flush.C:
			if err := t.Flush(ctx); err != nil && ctx.Err() == nil {
				t.cfg.Logger.Error("ssf: writing acknowledgements", "error", err.Error())
			}
		case <-trim.C:
			if err := t.Trim(ctx); err != nil && ctx.Err() == nil {
				t.cfg.Logger.Error("ssf: trimming the event log", "error", err.Error())
			}
		case <-expire.C:
			t.expireInactive(ctx)
		}
	}
}

// Close ends every waiting poll (they answer with no events) and makes new polls answer
// at once. Acknowledgements are still accepted.
func (t *Transmitter) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		t.broadcastLocked()
	}
}

// Flush writes the acknowledgement state of every stream that changed since the last flush.
func (t *Transmitter) Flush(ctx context.Context) error {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	t.mu.Lock()
	docs := map[string][]byte{}
	for id, s := range t.streams {
		if s.dirty {
			docs[id] = s.doc()
			s.dirty = false
			s.storedPoll = s.lastPoll
		}
	}
	t.mu.Unlock()
	if len(docs) == 0 {
		return nil
	}
	// UpdateStreams: a stream deleted at another replica stays deleted.
	skipped, err := t.updateStreams(ctx, docs)
	if err == nil && len(skipped) > 0 {
		t.mu.Lock()
		for _, id := range skipped {
			if _, ok := t.streams[id]; ok {
				delete(t.streams, id)
				t.m.forget(id)
			}
		}
		t.broadcastLocked()
		t.mu.Unlock()
	}
	if err != nil {
		t.mu.Lock()
		for id := range docs {
			if s, ok := t.streams[id]; ok {
				s.dirty = true
			}
		}
		t.mu.Unlock()
		return err
	}
	return nil
}

// updateStreams writes docs with UpdateStreams, at most maxStreamsPerWrite per call.
func (t *Transmitter) updateStreams(ctx context.Context, docs map[string][]byte) ([]string, error) {
	var skipped []string
	batch := map[string][]byte{}
	write := func() error {
		sk, err := t.store.UpdateStreams(ctx, batch)
		skipped = append(skipped, sk...)
		batch = map[string][]byte{}
		return err
	}
	for id, d := range docs {
		batch[id] = d
		if len(batch) == maxStreamsPerWrite {
			if err := write(); err != nil {
				return skipped, err
			}
		}
	}
	if len(batch) > 0 {
		return skipped, write()
	}
	return skipped, nil
}

// maxStreamsPerWrite bounds the stream documents written in one store transaction (etcd
// allows 128 operations per transaction).
const maxStreamsPerWrite = 100

// Trim removes events older than the retention and moves the floor past them.
func (t *Transmitter) Trim(ctx context.Context) error {
	if _, err := t.store.TrimEvents(ctx, t.cfg.Now().Add(-t.cfg.Retention)); err != nil {
		return err
	}
	return t.findFloor(ctx)
}

// findFloor sets floor to the Seq before the oldest event still in the log.
func (t *Transmitter) findFloor(ctx context.Context) error {
	last, err := t.store.LastEventSeq(ctx)
	if err != nil {
		return err
	}
	evs, err := t.store.Events(ctx, 0, 1)
	if err != nil {
		return err
	}
	floor := last
	if len(evs) > 0 {
		floor = evs[0].Seq - 1
	}
	t.mu.Lock()
	t.floor = max(t.floor, floor)
	t.mu.Unlock()
	t.advance(last)
	return nil
}

// backlogs reports each stream's unacknowledged event count.
func (t *Transmitter) backlogs() map[string]uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]uint64, len(t.streams))
	for id, s := range t.streams {
		out[id] = s.backlog(t.floor, t.head)
	}
	return out
}
