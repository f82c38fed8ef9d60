// Package etcd is a store.Store backend on an etcd cluster, shared by several tokengate
// replicas.
//
// Every write is an etcd transaction acknowledged only once the cluster committed it (a
// majority wrote it to its log). Revocation lookups never leave the process: each Store keeps
// a local index of every record, loaded once at a revision R and then fed by a watch from R+1.
// The watch resumes from the last revision it saw after a reconnect (no rescan); only when
// etcd compacted that revision away does the Store reload everything.
//
// A replica must not answer from an index that has silently stopped following etcd. A prober
// writes the replica's own heartbeat key under the watched prefix every MaxStaleness/4; once
// the watch, which delivers events in revision order, has delivered that write, the index is
// known fresh as of the moment the write started (progress notifications are not trusted: see
// beat). When that moment is
// older than MaxStaleness, lookups and writes fail with an error wrapping store.ErrUnavailable,
// so the issuer fails closed; they succeed again as soon as the watch catches up.
//
// Layout under Config.Prefix: data/sessions/<sid>, data/subjects/<sub> (JSON store.Revocation),
// data/jtis/<jti> (JSON expiry), data/keys (the opaque key document) and election/<name>/…
// for Elect. Records carry a lease that ends at least LeaseGrace after their Expires, shared by
// all records of a ten-minute bucket, so etcd forgets them even if no replica runs GC.
//
// Semantics match the conformance suite (store/storetest): lookups ignore the clock until GC
// (or the lease, at least LeaseGrace after Expires) removes a record; a jti claim
// (RecordNewRevocation) treats one whose expiry is not after time.Now as free.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tokengate/tokengate/internal/store"
)

// Defaults for Config fields left zero.
const (
	DefaultPrefix       = "/tokengate/"
	DefaultDialTimeout  = 5 * time.Second
	DefaultMaxStaleness = 5 * time.Second
	DefaultLeaseGrace   = time.Hour
	DefaultElectionTTL  = 10 * time.Second
)

// Config says how to reach etcd and how stale the local index may get.
type Config struct {
	// Endpoints are the etcd client URLs (http://host:2379 or https://…).
	Endpoints []string
	// Prefix namespaces every key; it must start and end with "/". DefaultPrefix when empty.
	Prefix string
	// TLS, when set, is used for client connections (see TLSConfig).
	TLS *tls.Config
	// Username and Password authenticate with etcd's auth, when set.
	Username, Password string
	// DialTimeout bounds connecting and the initial load. DefaultDialTimeout when zero.
	DialTimeout time.Duration
	// MaxStaleness is how long the local index may go without proof that it follows etcd
	// before calls fail with store.ErrUnavailable. DefaultMaxStaleness when zero.
	MaxStaleness time.Duration
	// RequestTimeout bounds each etcd round trip of a call. MaxStaleness when zero.
	RequestTimeout time.Duration
	// LeaseGrace is how long after its Expires etcd keeps a record it was not asked to delete.
	// DefaultLeaseGrace when zero.
	LeaseGrace time.Duration
	// ElectionTTL is the lease of an Elect campaign: how long a dead leader keeps its
	// leadership. DefaultElectionTTL when zero; whole seconds, at least one.
	ElectionTTL time.Duration
	// Logger receives state changes (stale, fresh, reloads). slog.Default when nil.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if len(c.Endpoints) == 0 {
		return errors.New("etcd: at least one endpoint is required")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/") {
		return fmt.Errorf("etcd: prefix %q must start and end with /", c.Prefix)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxStaleness <= 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = c.MaxStaleness
	}
	if c.LeaseGrace <= 0 {
		c.LeaseGrace = DefaultLeaseGrace
	}
	if c.ElectionTTL <= 0 {
		c.ElectionTTL = DefaultElectionTTL
	}
	if c.ElectionTTL < time.Second {
		c.ElectionTTL = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Store is a store.Store on etcd. It is safe for concurrent use.
type Store struct {
	cfg    Config
	cli    *clientv3.Client
	log    *slog.Logger
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	// Key layout.
	dataPrefix, sessionsPrefix, subjectsPrefix, jtisPrefix, keysKey, electionPrefix string

	idx         index
	leases      leases
	leaseBucket time.Duration // width of the expiry buckets sharing a lease (tests shorten it)
	keysMu      sync.Mutex    // serialises this process's UpdateKeys (etcd serialises processes)
	eventsMu    sync.Mutex    // serialises this process's RecordRevocation

	// Freshness, as monotonic nanoseconds since start: the latest moment at which the index
	// was known to hold every write etcd had acknowledged.
	start     time.Time
	freshAt   atomic.Int64
	watchRev  atomic.Int64 // every event up to this revision has been applied
	targetsMu sync.Mutex
	targets   []freshTarget
	running   atomic.Pointer[runningWatch]
	beatKey   string       // this process's heartbeat key under dataPrefix (beat)
	beatLease atomic.Int64 // its lease, reused until etcd lets it expire
	stale     atomic.Bool  // last reported state, for logging transitions

	keysChanged   chan struct{}
	eventsChanged chan struct{}
	reloads       atomic.Int64  // full loads of the index, including the first
	caughtUp      chan struct{} // closed once the watch proved it follows etcd after Open's load
}

var _ store.Store = (*Store)(nil)

// Open connects to etcd, loads the local index, starts following the cluster and waits until
// the watch has caught up with etcd (see catchUp). It fails if etcd cannot be reached within
// DialTimeout; a watch that has not caught up by then leaves the store failing every call with
// store.ErrUnavailable until it has.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second, // gRPC's floor
		DialKeepAliveTimeout: cfg.MaxStaleness,
		TLS:                  cfg.TLS,
		Username:             cfg.Username,
		Password:             cfg.Password,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: connect %v: %w: %w", cfg.Endpoints, store.ErrUnavailable, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	p := cfg.Prefix
	s := &Store{
		cfg: cfg, cli: cli, log: cfg.Logger, ctx: sctx, cancel: cancel,
		dataPrefix:     p + "data/",
		sessionsPrefix: p + "data/sessions/",
		subjectsPrefix: p + "data/subjects/",
		jtisPrefix:     p + "data/jtis/",
		keysKey:        p + "data/keys",
		electionPrefix: p + "election/",
		start:          time.Now(),
		leaseBucket:    defaultLeaseBucket,
		keysChanged:    make(chan struct{}, 1),
		eventsChanged:  make(chan struct{}, 1),
		caughtUp:       make(chan struct{}),
	}
	s.beatKey = s.dataPrefix + "started/" + newToken()
	s.idx.init()
	s.freshAt.Store(-int64(cfg.MaxStaleness) - 1) // stale until loaded
	lctx, lcancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer lcancel()
	if err := s.load(lctx, true); err != nil {
		cancel()
		_ = cli.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("etcd: open %v: %w", cfg.Endpoints, ctx.Err())
		}
		return nil, fmt.Errorf("etcd: open %v: %w: %w", cfg.Endpoints, store.ErrUnavailable, err)
	}
	if afterInitialLoad != nil {
		afterInitialLoad()
	}
	s.wg.Add(4)
	go s.follow()
	go s.catchUp()
	go s.probe()
	go s.watchEvents()
	select {
	case <-s.caughtUp:
	case <-lctx.Done():
		s.log.Warn("etcd store: the watch has not caught up with etcd yet; refusing lookups and writes until it has",
			"watch_revision", s.watchRev.Load())
	}
	return s, nil
}

// afterInitialLoad, when set (tests), runs between Open's load and the start of its watch.
var afterInitialLoad func()

// Close stops following etcd and closes the connection. Later calls fail with
// store.ErrUnavailable; closing again is a no-op.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close: %w", err)
	}
	return nil
}

// KeysChanged receives a value (coalesced) whenever the key document may have changed, by this
// process or another, and after every full reload. Call keys.Manager.Reload on it.
func (s *Store) KeysChanged() <-chan struct{} { return s.keysChanged }

// Client returns the underlying etcd client, for diagnostics and tests.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Reloads reports how many times the index was loaded in full (1 after Open).
func (s *Store) Reloads() int64 { return s.reloads.Load() }

// Staleness reports how long ago the index was last known to follow etcd.
func (s *Store) Staleness() time.Duration {
	return time.Duration(s.now() - s.freshAt.Load())
}

func (s *Store) notifyKeys() {
	select {
	case s.keysChanged <- struct{}{}:
	default:
	}
}

// usable checks, in order, that the store is open, ctx is live and the index is fresh.
func (s *Store) usable(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("etcd: %s: %w: store is closed", op, store.ErrUnavailable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("etcd: %s: %w", op, err)
	}
	if age := s.Staleness(); age > s.cfg.MaxStaleness {
		return fmt.Errorf("etcd: %s: %w: not known to follow etcd for %s (max_staleness %s)",
			op, store.ErrUnavailable, age.Round(time.Millisecond), s.cfg.MaxStaleness)
	}
	return nil
}

// failed wraps an error from etcd: the caller's context error when that is what ended the
// call, store.ErrUnavailable otherwise.
func (s *Store) failed(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("etcd: %s: %w", op, cerr)
	}
	if s.closed.Load() {
		return fmt.Errorf("etcd: %s: %w: store is closed", op, store.ErrUnavailable)
	}
	return fmt.Errorf("etcd: %s: %w: %w", op, store.ErrUnavailable, err)
}

// rpc returns a context for one etcd round trip of a call.
func (s *Store) rpc(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// now is monotonic nanoseconds since the store started.
func (s *Store) now() int64 { return int64(time.Since(s.start)) }
