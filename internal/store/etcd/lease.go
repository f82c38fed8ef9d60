package etcd

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// defaultLeaseBucket is the width of the expiry buckets that share one lease.
const defaultLeaseBucket = 10 * time.Minute

// maxLeaseTTL is the longest lease granted; a record expiring later gets none and only GC
// removes it.
const maxLeaseTTL = 366 * 24 * time.Hour

// leases caches one etcd lease per expiry bucket, so records share a handful of leases
// instead of one each.
type leases struct {
	mu    sync.Mutex
	byEnd map[int64]clientv3.LeaseID // bucket end (unix seconds) → lease ending then
}

// leaseFor returns the lease for a record that expires at expires: it ends at the end of the
// bucket holding max(expires, now)+LeaseGrace, so etcd never deletes a record less than
// LeaseGrace after its Expires nor less than LeaseGrace after it was written.
func (s *Store) leaseFor(ctx context.Context, expires time.Time) (clientv3.LeaseID, error) {
	now := time.Now()
	at := expires
	if at.Before(now) {
		at = now
	}
	width := max(int64(s.leaseBucket/time.Second), 1)
	end := (at.Add(s.cfg.LeaseGrace).Unix()/width + 1) * width
	ttl := end - now.Unix()
	if ttl > int64(maxLeaseTTL/time.Second) {
		return clientv3.NoLease, nil
	}
	l := &s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if id, ok := l.byEnd[end]; ok {
		return id, nil
	}
	rctx, cancel := s.rpc(ctx)
	defer cancel()
	resp, err := s.cli.Grant(rctx, ttl)
	if err != nil {
		return clientv3.NoLease, err
	}
	if l.byEnd == nil {
		l.byEnd = map[int64]clientv3.LeaseID{}
	}
	// Buckets ending before now+LeaseGrace are never asked for again.
	floor := now.Add(s.cfg.LeaseGrace).Unix()
	for e := range l.byEnd {
		if e < floor {
			delete(l.byEnd, e)
		}
	}
	l.byEnd[end] = resp.ID
	return resp.ID, nil
}

// dropLease forgets a lease etcd no longer knows.
func (s *Store) dropLease(id clientv3.LeaseID) {
	l := &s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	for e, v := range l.byEnd {
		if v == id {
			delete(l.byEnd, e)
		}
	}
}
