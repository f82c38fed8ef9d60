package ssf

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokengate/tokengate/verifier/secevent"
)

// Stream sources.
const (
	SourceConfig = "config"
	SourceAdmin  = "admin"
	// SourceReceiver: created by a receiver through the SSF configuration endpoint (one per
	// service process), deleted by it or after InactivityTimeout without a poll.
	SourceReceiver = "receiver"
)

// streamIDPattern: RFC 3986 unreserved characters (SSF 1.0 §8.1.1).
var streamIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)

// StreamConfig defines a stream: one receiving service.
type StreamConfig struct {
	// ID names the stream; it appears in the poll URL.
	ID string
	// Audience is the aud of the stream's SETs (the ID when empty).
	Audience string
	// Description is for operators.
	Description string
	// SecretSHA256 is the SHA-256 of the receiver's bearer secret.
	SecretSHA256 [32]byte
}

// MaxReceiverStreams bounds the streams one receiver may have at a time (one per process of
// the service; abandoned ones expire after InactivityTimeout).
const MaxReceiverStreams = 1000

// ReceiverConfig is a receiver credential: a service allowed to create its own streams
// (SSF 1.0 §8.1.1.1), all with the receiver's audience and authenticated by its secret.
type ReceiverConfig struct {
	ID           string
	Audience     string
	SecretSHA256 [32]byte
}

// streamDef is a stream's definition as kept in memory.
type streamDef struct {
	ID          string
	Audience    string
	Description string
	Source      string
	// Owner is the receiver that created the stream (SourceReceiver).
	Owner     string
	CreatedAt time.Time
	secret    [32]byte
}

// stream is a stream's definition and delivery state. Guarded by Transmitter.mu.
type stream struct {
	def streamDef
	// acked: every event with Seq ≤ acked is acknowledged; above holds acknowledgements of
	// later events (receivers acknowledge in any order).
	acked uint64
	above map[uint64]struct{}
	// delivered is the highest Seq delivered at least once (for the first-delivery metrics).
	delivered uint64
	dirty     bool
	// lastPoll is when the receiver last polled (receiver streams expire without polls), at
	// this replica or, once merged, at another; storedPoll is the last poll time written.
	lastPoll, storedPoll time.Time
}

// streamDoc is a stream as stored (store.EventLog stream documents).
type streamDoc struct {
	ID           string    `json:"id"`
	Audience     string    `json:"aud"`
	Description  string    `json:"description,omitempty"`
	Source       string    `json:"source"`
	Owner        string    `json:"owner,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	SecretSHA256 string    `json:"secret_sha256"`
	Acked        uint64    `json:"acked"`
	AckedAbove   []uint64  `json:"acked_above,omitempty"`
	// LastPoll is the last poll a replica wrote (receiver streams: replicas share the
	// inactivity timeout).
	LastPoll time.Time `json:"last_poll,omitzero"`
}

func (s *stream) doc() []byte {
	d := streamDoc{ID: s.def.ID, Audience: s.def.Audience, Description: s.def.Description, Source: s.def.Source,
		Owner: s.def.Owner, CreatedAt: s.def.CreatedAt, SecretSHA256: hex.EncodeToString(s.def.secret[:]), Acked: s.acked,
		LastPoll: s.lastPoll}
	for seq := range s.above {
		d.AckedAbove = append(d.AckedAbove, seq)
	}
	slices.Sort(d.AckedAbove)
	b, _ := json.Marshal(d) // plain struct: cannot fail
	return b
}

func streamFromDoc(raw []byte) (*stream, error) {
	var d streamDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	s := &stream{def: streamDef{ID: d.ID, Audience: d.Audience, Description: d.Description, Source: d.Source,
		Owner: d.Owner, CreatedAt: d.CreatedAt}, acked: d.Acked, above: map[uint64]struct{}{}, lastPoll: d.LastPoll,
		storedPoll: d.LastPoll}
	if b, err := hex.DecodeString(d.SecretSHA256); err != nil || len(b) != 32 {
		return nil, fmt.Errorf("stream %q: bad secret hash", d.ID)
	}
	hex.Decode(s.def.secret[:], []byte(d.SecretSHA256))
	for _, seq := range d.AckedAbove {
		s.above[seq] = struct{}{}
	}
	s.delivered = s.acked
	return s, nil
}

// ack records the acknowledgement of seq and advances the contiguous watermark. It reports
// whether seq was newly acknowledged.
func (s *stream) ack(seq uint64) bool {
	if seq <= s.acked {
		return false
	}
	if _, dup := s.above[seq]; dup {
		return false
	}
	s.above[seq] = struct{}{}
	s.advance()
	s.dirty = true
	return true
}

// skipTo treats every event up to seq as gone (trimmed from the log).
func (s *stream) skipTo(seq uint64) {
	if seq <= s.acked {
		return
	}
	s.acked = seq
	for q := range s.above {
		if q <= seq {
			delete(s.above, q)
		}
	}
	s.advance()
	s.dirty = true
}

func (s *stream) advance() {
	for {
		if _, ok := s.above[s.acked+1]; !ok {
			return
		}
		delete(s.above, s.acked+1)
		s.acked++
	}
}

// backlog counts events in (floor, head] not acknowledged.
func (s *stream) backlog(floor, head uint64) uint64 {
	from := max(s.acked, floor)
	if head <= from {
		return 0
	}
	n := head - from
	for q := range s.above {
		if q > from && q <= head {
			n--
		}
	}
	return n
}

// StreamInfo describes a stream for the admin API.
type StreamInfo struct {
	ID          string            `json:"stream_id"`
	Audience    string            `json:"aud"`
	Description string            `json:"description,omitempty"`
	Source      string            `json:"source"`
	Owner       string            `json:"owner,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	Delivery    secevent.Delivery `json:"delivery"`
	// AckedSeq is the event sequence number up to which the receiver acknowledged everything.
	AckedSeq uint64 `json:"acked_seq"`
	// Backlog is the number of events not yet acknowledged.
	Backlog uint64 `json:"backlog"`
}

// PollURL is the RFC 8936 endpoint of stream id.
func (t *Transmitter) PollURL(id string) string { return t.cfg.Issuer + "/ssf/poll/" + id }

func (t *Transmitter) infoLocked(s *stream) StreamInfo {
	return StreamInfo{ID: s.def.ID, Audience: s.def.Audience, Description: s.def.Description, Source: s.def.Source,
		Owner: s.def.Owner, CreatedAt: s.def.CreatedAt, Delivery: secevent.Delivery{Method: secevent.DeliveryPoll, EndpointURL: t.PollURL(s.def.ID)},
		AckedSeq: max(s.acked, t.floor), Backlog: s.backlog(t.floor, t.head)}
}

// Streams lists the streams, by id.
func (t *Transmitter) Streams() []StreamInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]StreamInfo, 0, len(t.streams))
	for _, s := range t.streams {
		out = append(out, t.infoLocked(s))
	}
	slices.SortFunc(out, func(a, b StreamInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Stream describes one stream, or returns ErrNoStream.
func (t *Transmitter) Stream(id string) (StreamInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return StreamInfo{}, ErrNoStream
	}
	return t.infoLocked(s), nil
}

// CreateStream adds a stream (source admin) and stores it before returning. An empty ID gets a
// random one; an empty Audience is the ID. When SecretSHA256 is zero a secret is generated and
// returned: it is shown once and never stored.
func (t *Transmitter) CreateStream(ctx context.Context, c StreamConfig) (StreamInfo, string, error) {
	if c.ID == "" {
		c.ID = "s-" + randomString(9)
	}
	if !streamIDPattern.MatchString(c.ID) {
		return StreamInfo{}, "", fmt.Errorf("%w: id must be 1–64 letters, digits, '.', '_', '~' or '-'", ErrInvalidStream)
	}
	if c.Audience == "" {
		c.Audience = c.ID
	}
	if utf8.RuneCountInString(c.Audience) > 256 || utf8.RuneCountInString(c.Description) > 256 {
		return StreamInfo{}, "", fmt.Errorf("%w: aud and description are limited to 256 characters", ErrInvalidStream)
	}
	secret := ""
	if c.SecretSHA256 == ([32]byte{}) {
		secret = randomString(32)
		c.SecretSHA256 = sha256.Sum256([]byte(secret))
	}
	s := &stream{def: streamDef{ID: c.ID, Audience: c.Audience, Description: c.Description, Source: SourceAdmin,
		CreatedAt: t.cfg.Now().UTC(), secret: c.SecretSHA256}, above: map[uint64]struct{}{}}

	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	t.mu.Lock()
	_, exists := t.streams[c.ID]
	t.mu.Unlock()
	if exists {
		return StreamInfo{}, "", ErrStreamExists
	}
	if err := t.store.PutStreams(ctx, map[string][]byte{c.ID: s.doc()}); err != nil {
		return StreamInfo{}, "", fmt.Errorf("ssf: create stream: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[c.ID] = s
	t.cfg.Logger.Info("ssf stream created", "event", "ssf_stream", "stream", c.ID, "aud", c.Audience)
	return t.infoLocked(s), secret, nil
}

// DeleteStream removes a stream created by the admin API or a receiver; its pending polls
// end. Streams from the configuration file are refused with ErrConfigStream.
func (t *Transmitter) DeleteStream(ctx context.Context, id string) error {
	return t.removeStream(ctx, id, func(s *stream) error {
		if s.def.Source == SourceConfig {
			return ErrConfigStream
		}
		return nil
	})
}

// removeStream deletes stream id if allowed(stream) returns nil.
func (t *Transmitter) removeStream(ctx context.Context, id string, allowed func(*stream) error) error {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	t.mu.Lock()
	s, ok := t.streams[id]
	var err error
	if !ok {
		err = ErrNoStream
	} else {
		err = allowed(s)
	}
	t.mu.Unlock()
	if err != nil {
		return err
	}
	if err := t.store.DeleteStream(ctx, id); err != nil {
		return fmt.Errorf("ssf: delete stream: %w", err)
	}
	t.mu.Lock()
	delete(t.streams, id)
	t.broadcastLocked()
	t.mu.Unlock()
	t.m.forget(id)
	t.cfg.Logger.Info("ssf stream deleted", "event", "ssf_stream", "stream", id)
	return nil
}

// Authenticate checks a receiver's bearer credential for stream id in constant time. An
// unknown stream and a wrong credential fail alike. An unknown stream id merges the stored
// streams first (created at another replica a moment ago?), unless ctx is HeldStreamsOnly.
func (t *Transmitter) Authenticate(ctx context.Context, id, token string) error {
	got := sha256.Sum256([]byte(token))
	t.mu.Lock()
	_, known := t.streams[id]
	t.mu.Unlock()
	if !known && !heldStreamsOnly(ctx) {
		t.syncSoon()
	}
	t.mu.Lock()
	s, ok := t.streams[id]
	want := dummySecret
	if ok {
		want = s.def.secret
	}
	t.mu.Unlock()
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !ok || token == "" {
		return errAuthentication
	}
	return nil
}

// StreamsFor returns the ids of the streams whose credential token is (checking every stream
// in constant time), for requests that do not name their stream: one for a stream secret, all
// of a receiver's streams for a receiver secret. It merges the stored streams first (streams
// created or deleted at other replicas), unless ctx is HeldStreamsOnly.
func (t *Transmitter) StreamsFor(ctx context.Context, token string) ([]string, error) {
	got := sha256.Sum256([]byte(token))
	if !heldStreamsOnly(ctx) {
		t.syncSoon()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var found []string
	for id, s := range t.streams {
		if subtle.ConstantTimeCompare(got[:], s.def.secret[:]) == 1 {
			found = append(found, id)
		}
	}
	_, receiver := t.receiverLocked(got)
	if (len(found) == 0 && !receiver) || token == "" {
		return nil, errAuthentication
	}
	slices.Sort(found)
	return found, nil
}

// Receiver returns the id of the receiver whose credential token is, in constant time.
func (t *Transmitter) Receiver(token string) (string, error) {
	got := sha256.Sum256([]byte(token))
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.receiverLocked(got)
	if !ok || token == "" {
		return "", errAuthentication
	}
	return id, nil
}

func (t *Transmitter) receiverLocked(sum [32]byte) (string, bool) {
	found := ""
	for _, r := range t.cfg.Receivers {
		if subtle.ConstantTimeCompare(sum[:], r.SecretSHA256[:]) == 1 {
			found = r.ID
		}
	}
	return found, found != ""
}

// CreateReceiverStream creates a stream for receiver (SSF 1.0 §8.1.1.1): audience and
// credential are the receiver's; it starts with every event still in the log, so a service
// process that starts (or restarts) learns the revocations that may still concern live tokens.
func (t *Transmitter) CreateReceiverStream(ctx context.Context, receiver, description string) (secevent.StreamConfiguration, error) {
	var rc *ReceiverConfig
	for i := range t.cfg.Receivers {
		if t.cfg.Receivers[i].ID == receiver {
			rc = &t.cfg.Receivers[i]
		}
	}
	if rc == nil {
		return secevent.StreamConfiguration{}, ErrNoStream
	}
	if utf8.RuneCountInString(description) > 256 {
		return secevent.StreamConfiguration{}, fmt.Errorf("%w: description is limited to 256 characters", ErrInvalidStream)
	}
	t.mu.Lock()
	owned := 0
	for _, st := range t.streams {
		if st.def.Owner == receiver {
			owned++
		}
	}
	t.mu.Unlock()
	if owned >= MaxReceiverStreams {
		return secevent.StreamConfiguration{}, ErrTooManyStreams
	}
	now := t.cfg.Now()
	s := &stream{def: streamDef{ID: receiver + "." + randomString(9), Audience: rc.Audience, Description: description,
		Source: SourceReceiver, Owner: receiver, CreatedAt: now.UTC(), secret: rc.SecretSHA256},
		above: map[uint64]struct{}{}, lastPoll: now}
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	if err := t.store.PutStreams(ctx, map[string][]byte{s.def.ID: s.doc()}); err != nil {
		return secevent.StreamConfiguration{}, fmt.Errorf("ssf: create stream: %w", err)
	}
	t.mu.Lock()
	t.streams[s.def.ID] = s
	t.mu.Unlock()
	t.cfg.Logger.Info("ssf stream created", "event", "ssf_stream", "stream", s.def.ID, "receiver", receiver, "aud", rc.Audience)
	return t.StreamConfiguration(s.def.ID)
}

// DeleteReceiverStream deletes a stream receiver created; other streams are ErrNoStream.
func (t *Transmitter) DeleteReceiverStream(ctx context.Context, receiver, id string) error {
	return t.removeStream(ctx, id, func(s *stream) error {
		if s.def.Source != SourceReceiver || s.def.Owner != receiver {
			return ErrNoStream
		}
		return nil
	})
}

// expireInactive deletes receiver streams not polled for InactivityTimeout (their service
// process is gone without deleting them).
func (t *Transmitter) expireInactive(ctx context.Context) {
	if t.shared() {
		if err := t.sync(ctx); err != nil {
			return // polls at other replicas are unknown: expire nothing
		}
	}
	now := t.cfg.Now()
	var idle []string
	t.mu.Lock()
	for id, s := range t.streams {
		if s.def.Source == SourceReceiver && now.Sub(s.lastPoll) > t.cfg.InactivityTimeout {
			idle = append(idle, id)
		}
	}
	t.mu.Unlock()
	for _, id := range idle {
		err := t.removeStream(ctx, id, func(s *stream) error {
			if now.Sub(s.lastPoll) <= t.cfg.InactivityTimeout {
				return ErrNoStream // polled meanwhile
			}
			return nil
		})
		if err == nil {
			t.cfg.Logger.Info("ssf stream expired: no poll within the inactivity timeout", "event", "ssf_stream", "stream", id)
		}
	}
}

var dummySecret = sha256.Sum256([]byte("tokengate: no such stream"))

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
