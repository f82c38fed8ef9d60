package etcd

import (
	"context"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// Elect campaigns, under the given name, for leadership among every Store sharing the prefix,
// with etcd's election recipe (concurrency.Election). id identifies this process in the
// election (for operators reading etcd).
//
// The returned channel receives true when this process becomes leader and false when it stops
// being leader: its election lease expired or could not be kept alive (etcd unreachable for
// ElectionTTL). It then campaigns again. When ctx ends or the Store closes it resigns and closes
// the channel: a closed channel means not leader. A leader killed without resigning is replaced
// within ElectionTTL.
//
// Leadership is advisory: a leader that lost etcd may act a moment after its lease ended, so
// what it does must stay safe when done twice (UpdateKeys compares revisions, so it is).
func (s *Store) Elect(ctx context.Context, name, id string) <-chan bool {
	ch := make(chan bool)
	ttl := int(s.cfg.ElectionTTL / time.Second)
	key := s.electionPrefix + name
	send := func(v bool) bool {
		select {
		case ch <- v:
			return true
		case <-ctx.Done():
			return false
		case <-s.ctx.Done():
			return false
		}
	}
	go func() {
		defer close(ch)
		pause := newBackoff(100*time.Millisecond, 2*time.Second)
		for ctx.Err() == nil && s.ctx.Err() == nil {
			sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
			if err != nil {
				s.log.Warn("etcd store: election session", "election", name, "error", err.Error())
				pause.sleep(ctx)
				continue
			}
			e := concurrency.NewElection(sess, key)
			cctx, cancel := context.WithCancel(ctx)
			go func() {
				select {
				case <-sess.Done():
				case <-s.ctx.Done():
				case <-cctx.Done():
				}
				cancel()
			}()
			err = e.Campaign(cctx, id)
			if err != nil {
				cancel()
				_ = sess.Close()
				if ctx.Err() == nil {
					pause.sleep(ctx)
				}
				continue
			}
			pause.reset()
			s.log.Info("etcd store: elected leader", "event", "leader_elected", "election", name, "id", id)
			if !send(true) {
				cancel()
				s.resign(e, sess)
				return
			}
			<-cctx.Done() // session lost, store closed, or ctx ended
			cancel()
			s.log.Info("etcd store: no longer leader", "event", "leader_lost", "election", name, "id", id)
			s.resign(e, sess)
			if !send(false) {
				return
			}
		}
	}()
	return ch
}

// resign gives up leadership promptly (so the next leader need not wait for the lease) and
// ends the session.
func (s *Store) resign(e *concurrency.Election, sess *concurrency.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	_ = e.Resign(ctx)
	_ = sess.Close()
}
