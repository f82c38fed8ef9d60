package ssf

import (
	"context"
	"time"
)

// Streams shared by replicas. With a Log shared by several processes (an EventsNotifier: etcd),
// a stream created, acknowledged or deleted at one replica must hold at every other: receivers
// reach whichever replica their load balancer picks. The stored documents are the truth; each
// replica merges them into memory every TailInterval, and at once when a request names a
// stream it does not know. Merging never loses an acknowledgement (the higher watermark and
// the union of the later ones win) and never brings back a deleted stream (acknowledgements
// are written with UpdateStreams, which skips streams no longer stored). Two replicas writing
// the same stream at once may set its stored acknowledgements back to the older of the two;
// the replica holding the newer ones writes them again at its next merge, and until then a
// receiver may get SETs it acknowledged again (it recognises their jti). Nothing is lost.
// A request naming an unknown stream costs one read of the stored streams (concurrent ones
// share it); once a source's failed credentials have spent the SSF endpoints'
// authentication-failure limit, its requests are checked under HeldStreamsOnly, against the
// streams in memory, so its further guesses cost no read.

type heldStreamsOnlyKey struct{}

// HeldStreamsOnly returns a context under which Authenticate and StreamsFor check a credential
// against the streams this process holds, without merging the stored streams first: for a
// caller whose source has spent its authentication-failure budget, so that its guesses cost no
// store read. A stream created at another replica is then known here from the next periodic
// merge (every TailInterval).
func HeldStreamsOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, heldStreamsOnlyKey{}, true)
}

func heldStreamsOnly(ctx context.Context) bool {
	held, _ := ctx.Value(heldStreamsOnlyKey{}).(bool)
	return held
}

// shared reports whether other processes may change the stored streams: the log notifies of
// other processes' appends (a nil channel means it has no other processes).
func (t *Transmitter) shared() bool {
	n, ok := t.store.(EventsNotifier)
	return ok && n.EventsChanged() != nil
}

// syncSoon merges the stored streams, when shared, with a merge that starts after the call:
// callers arriving while a merge runs wait for it and the next one, and share that next one.
// It reports whether a merge that started after the call succeeded.
func (t *Transmitter) syncSoon() bool {
	if !t.shared() {
		return false
	}
	arrived := t.cfg.Now()
	t.syncMu.Lock()
	defer t.syncMu.Unlock()
	t.mu.Lock()
	done := !t.lastSyncStart.Before(arrived)
	t.mu.Unlock()
	if done {
		return true // a merge started after this call arrived has just finished
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return t.sync(ctx) == nil
}

// sync merges the stored stream documents into memory: streams created elsewhere appear,
// streams deleted elsewhere go (their waiting polls end), acknowledgements and last polls
// merge. A stream whose memory holds acknowledgements the store lacks is written again.
func (t *Transmitter) sync(ctx context.Context) error {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	t.mu.Lock()
	t.lastSyncStart = t.cfg.Now()
	t.mu.Unlock()
	docs, err := t.store.Streams(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	gone := false
	for id := range t.streams {
		if _, ok := docs[id]; !ok {
			delete(t.streams, id)
			t.m.forget(id)
			gone = true
		}
	}
	for id, raw := range docs {
		stored, err := streamFromDoc(raw)
		if err != nil || stored.def.ID != id {
			t.cfg.Logger.Error("ssf: a stored stream document is unreadable; skipped", "stream", id)
			continue
		}
		s, ok := t.streams[id]
		if !ok {
			if !t.adoptLocked(stored) {
				continue
			}
			t.streams[id] = stored
			continue
		}
		s.merge(stored)
	}
	if gone {
		t.broadcastLocked()
	}
	return nil
}

// adoptLocked completes a stream first seen in the store (created by another replica): a
// receiver stream takes its receiver's current audience and credential; one whose receiver
// this replica does not know is left alone.
func (t *Transmitter) adoptLocked(s *stream) bool {
	if s.def.Source != SourceReceiver {
		return true
	}
	for _, r := range t.cfg.Receivers {
		if r.ID == s.def.Owner {
			s.def.Audience, s.def.secret = r.Audience, r.SecretSHA256
			if s.lastPoll.IsZero() {
				s.lastPoll = t.cfg.Now()
			}
			return true
		}
	}
	return false
}

// merge takes the stored document's acknowledgements and last poll where they are newer, and
// marks the stream for writing when memory knows more than the store.
func (s *stream) merge(stored *stream) {
	wasDirty := s.dirty
	ahead := s.acked > stored.acked
	for q := range s.above {
		if _, ok := stored.above[q]; !ok && q > stored.acked {
			ahead = true
		}
	}
	s.skipTo(stored.acked)
	for q := range stored.above {
		s.ack(q)
	}
	s.dirty = wasDirty || ahead
	s.delivered = max(s.delivered, stored.delivered)
	s.lastPoll = maxTime(s.lastPoll, stored.lastPoll)
	s.storedPoll = maxTime(s.storedPoll, stored.lastPoll)
}

// maxTime is the later of two times.
func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
