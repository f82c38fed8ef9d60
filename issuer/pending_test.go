package issuer_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/issuer"
)

// unwritableStore is a bolt store whose writes fail while full is set (as bbolt's do on a full
// disk: store.ErrUnavailable wrapping ENOSPC) and block until their context ends while hang is
// set (as etcd's do without a quorum). Lookups always work.
type unwritableStore struct {
	*bolt.Store
	full, hang atomic.Bool
	writes     atomic.Int64 // write attempts
}

var errDiskFull = fmt.Errorf("bolt: write: %w: %w", store.ErrUnavailable, syscall.ENOSPC)

func (s *unwritableStore) fail(ctx context.Context) error {
	s.writes.Add(1)
	if s.hang.Load() {
		<-ctx.Done()
		return fmt.Errorf("etcd: txn: %w", ctx.Err())
	}
	if s.full.Load() {
		return errDiskFull
	}
	return nil
}

func (s *unwritableStore) RecordRevocation(ctx context.Context, e store.Event) (store.Event, error) {
	if err := s.fail(ctx); err != nil {
		return store.Event{}, err
	}
	return s.Store.RecordRevocation(ctx, e)
}

func (s *unwritableStore) RecordNewRevocation(ctx context.Context, e store.Event) (store.Event, store.Outcome, error) {
	if err := s.fail(ctx); err != nil {
		return store.Event{}, 0, err
	}
	return s.Store.RecordNewRevocation(ctx, e)
}

// unwritableFixture is the fixture's issuer on an unwritableStore, rechecking sessions only
// every hour (no introspection gets in the way of the writes under test).
func unwritableFixture(t *testing.T, opts ...option) (*fixture, *unwritableStore) {
	t.Helper()
	st := &unwritableStore{}
	opts = append([]option{func(s *setup) { s.RecheckAfter = time.Hour }},
		append(opts, onStore(func(b *bolt.Store) issuer.Store { st.Store = b; return st }))...)
	return newFixture(t, opts...), st
}

// TestUnwritableStore_LogoutIsRefusedInMemoryAndWrittenLater: with the disk full, a verified
// back-channel logout (of a session, of a subject), an RFC 7009 revocation and an operator's
// revocation cannot be written: each is answered temporarily_unavailable (never acknowledged),
// yet the session is refused at once — renewal and re-exchange — while other sessions renew;
// the issuer reports itself not writable with the count of pending writes. Once the disk has
// room, FlushPending writes every one with its event, publishes it (the logout token to the
// relay too), and the issuer is writable again; the refusals now come from the store.
func TestUnwritableStore_LogoutIsRefusedInMemoryAndWrittenLater(t *testing.T) {
	f, st := unwritableFixture(t)
	ctx := context.Background()
	type session struct {
		sub, sid, upstream, refresh string
	}
	open := func(sub, sid string) session {
		tok := f.token(sub, sid)
		r, err := f.exchangeToken(tok)
		if err != nil {
			t.Fatalf("exchange %s/%s: %v", sub, sid, err)
		}
		return session{sub, sid, tok, r.RefreshToken}
	}
	bc := open("mia", "sid-full-bc")
	subj := open("noah", "sid-full-subject")
	rev := open("olga", "sid-full-revoke")
	adm := open("pia", "sid-full-admin")
	control := open("quinn", "sid-full-control")
	f.clock.Advance(time.Second) // the subject's session began before its logout

	st.full.Store(true)
	bcToken := f.realm.LogoutToken(bc.sub, bc.sid)
	_, err := f.is.RecordLogout(ctx, bcToken)
	wantCode(t, "back-channel logout of a session on a full disk", err, issuer.CodeTemporarilyUnavailable)
	_, err = f.is.RecordLogout(ctx, f.realm.LogoutToken(subj.sub, ""))
	wantCode(t, "subject-wide back-channel logout on a full disk", err, issuer.CodeTemporarilyUnavailable)
	wantCode(t, "RFC 7009 revocation on a full disk", f.is.Revoke(ctx, f.bff, rev.refresh, ""), issuer.CodeTemporarilyUnavailable)
	_, err = f.is.RevokeSession(ctx, adm.sid, "admin:ops")
	wantCode(t, "operator revocation on a full disk", err, issuer.CodeTemporarilyUnavailable)

	refusedEverywhere := func(when string) {
		t.Helper()
		for _, s := range []session{bc, subj, rev, adm} {
			_, err := f.renew(s.refresh)
			wantCode(t, when+": renewal of "+s.sid, err, issuer.CodeInvalidGrant)
			_, err = f.exchangeToken(s.upstream)
			wantCode(t, when+": re-exchange of "+s.sid, err, issuer.CodeInvalidRequest)
		}
		f.mustRenew(control.refresh)
	}
	refusedEverywhere("disk full")
	if n := f.is.PendingWrites(); n != 4 {
		t.Errorf("PendingWrites = %d, want 4", n)
	}
	if err := f.is.Writable(); !errors.Is(err, issuer.ErrNotWritable) {
		t.Errorf("Writable with pending writes = %v, want ErrNotWritable", err)
	}
	if n, err := f.is.FlushPending(ctx); err == nil || n != 4 {
		t.Errorf("FlushPending on a full disk = %d, %v; want 4 and the store's error", n, err)
	}
	if evs, _ := f.pub.snapshot(); len(evs) != 0 {
		t.Errorf("published %d events before anything was written", len(evs))
	}

	st.full.Store(false)
	if n, err := f.is.FlushPending(ctx); err != nil || n != 0 {
		t.Fatalf("FlushPending with room again = %d, %v; want 0, nil", n, err)
	}
	if err := f.is.Writable(); err != nil {
		t.Errorf("Writable after the flush = %v", err)
	}
	for _, sid := range []string{bc.sid, rev.sid, adm.sid} {
		if _, err := f.store.SessionRevocation(ctx, sid); err != nil {
			t.Errorf("session %s not on disk after the flush: %v", sid, err)
		}
	}
	if _, err := f.store.SubjectRevocation(ctx, subj.sub); err != nil {
		t.Errorf("subject %s not on disk after the flush: %v", subj.sub, err)
	}
	evs, err := f.store.Events(ctx, 0, 10)
	if err != nil || len(evs) != 4 {
		t.Fatalf("events on disk = %d (%v), want 4", len(evs), err)
	}
	pubs, tokens := f.pub.snapshot()
	relayed := 0
	for n := range pubs {
		if tokens[n] == bcToken {
			relayed++
		}
	}
	if len(pubs) != 4 || relayed != 1 {
		t.Errorf("published %d events, the back-channel token %d times; want 4 and 1", len(pubs), relayed)
	}
	refusedEverywhere("after the flush")
}

// TestUnwritableStore_RetriedLogoutIsWrittenAndPendingBounded: a logout held in memory that the
// provider delivers again once the store writes is recorded by that delivery (nothing left
// pending); the in-memory queue is bounded, and a logout beyond the bound is still answered
// temporarily_unavailable.
func TestUnwritableStore_RetriedLogoutIsWrittenAndPendingBounded(t *testing.T) {
	f, st := unwritableFixture(t, func(c *setup) { c.MaxPending = 2 })
	ctx := context.Background()
	st.full.Store(true)
	lt := f.realm.LogoutToken("mia", "sid-retried")
	_, err := f.is.RecordLogout(ctx, lt)
	wantCode(t, "first delivery", err, issuer.CodeTemporarilyUnavailable)
	for n := range 3 {
		_, err := f.is.RecordLogout(ctx, f.realm.LogoutToken("x", fmt.Sprint("sid-bound-", n)))
		wantCode(t, "logout on a full disk", err, issuer.CodeTemporarilyUnavailable)
	}
	if n := f.is.PendingWrites(); n != 2 {
		t.Errorf("PendingWrites = %d, want the bound 2", n)
	}
	st.full.Store(false)
	if _, err := f.is.RecordLogout(ctx, lt); err != nil {
		t.Fatalf("the provider's retry once the disk has room: %v", err)
	}
	if n := f.is.PendingWrites(); n != 1 {
		t.Errorf("PendingWrites after the retry = %d, want 1", n)
	}
}

// TestUnwritableStore_LogoutAnswersWithinWriteTimeout: a store that does not answer (etcd
// without a quorum) holds a back-channel logout no longer than WriteTimeout, even though the
// logout needs two writes (the jti claim and the record); the session is refused in memory.
func TestUnwritableStore_LogoutAnswersWithinWriteTimeout(t *testing.T) {
	const bound = 300 * time.Millisecond
	f, st := unwritableFixture(t, func(c *setup) { c.WriteTimeout = bound })
	ctx := context.Background()
	tok := f.token("mia", "sid-hang")
	r, err := f.exchangeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	st.hang.Store(true)
	start := time.Now()
	_, err = f.is.RecordLogout(ctx, f.realm.LogoutToken("mia", "sid-hang"))
	took := time.Since(start)
	wantCode(t, "logout while the store hangs", err, issuer.CodeTemporarilyUnavailable)
	if took > bound+200*time.Millisecond {
		t.Errorf("logout answered after %s, want within the write timeout %s", took, bound)
	}
	_, err = f.renew(r.RefreshToken)
	wantCode(t, "renewal of the session whose logout could not be committed", err, issuer.CodeInvalidGrant)
}

// logoutJTI returns the jti of logout token lt.
func logoutJTI(t *testing.T, lt string) string {
	t.Helper()
	parts := strings.Split(lt, ".")
	if len(parts) != 3 {
		t.Fatalf("logout token has %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.JTI == "" {
		t.Fatalf("logout token jti: %q, %v", c.JTI, err)
	}
	return c.JTI
}

// TestUnwritableStore_HeldLogoutClaimsItsJTIWhenWritten: a back-channel logout the store could
// not write is held in memory, its token's jti unclaimed (the write claims nothing); when the
// held logout is written, its jti is claimed in the same transaction, so the token delivered
// again afterwards is refused as already used, and nothing more is published. (Before, the
// held logout was written without its claim and a replay afterwards was accepted.)
func TestUnwritableStore_HeldLogoutClaimsItsJTIWhenWritten(t *testing.T) {
	for _, c := range []struct{ name, sub, sid string }{
		{"session logout", "mia", "sid-held"},
		{"subject-wide logout", "noah", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, st := unwritableFixture(t)
			ctx := context.Background()
			lt := f.realm.LogoutToken(c.sub, c.sid)
			st.full.Store(true)
			_, err := f.is.RecordLogout(ctx, lt)
			wantCode(t, "logout on a full disk", err, issuer.CodeTemporarilyUnavailable)
			st.full.Store(false)
			if n, err := f.is.FlushPending(ctx); err != nil || n != 0 {
				t.Fatalf("FlushPending = %d, %v; want 0, nil", n, err)
			}
			_, err = f.is.RecordLogout(ctx, lt)
			wantCode(t, "the held logout's token after it was written", err, issuer.CodeInvalidRequest)
			evs, tokens := f.pub.snapshot()
			var logouts int
			for i, e := range evs {
				if e.Revocation.Reason == "backchannel" {
					logouts++
					if tokens[i] != lt {
						t.Errorf("the held logout was published without its token")
					}
				}
			}
			if logouts != 1 {
				t.Errorf("published %d back-channel logouts, want the held one once", logouts)
			}
		})
	}
}

// TestUnwritableStore_HeldLogoutIsWrittenThoughItsJTIWasTaken: a held logout whose token's jti
// was claimed meanwhile (its retry recorded by another replica sharing the store) is still
// written when the store accepts writes: the claim taken writes nothing, so the flush writes the
// revocation again without it. The held revocation is never dropped for its claim.
func TestUnwritableStore_HeldLogoutIsWrittenThoughItsJTIWasTaken(t *testing.T) {
	f, st := unwritableFixture(t)
	ctx := context.Background()
	lt := f.realm.LogoutToken("olga", "sid-taken")
	st.full.Store(true)
	_, err := f.is.RecordLogout(ctx, lt)
	wantCode(t, "logout on a full disk", err, issuer.CodeTemporarilyUnavailable)
	// Another replica records a logout of another session with this token's jti.
	other := store.Event{ID: "other-replica", Time: time.Now(), Revocation: store.Revocation{
		SID: "sid-elsewhere", Sub: "olga", At: time.Now(), Expires: time.Now().Add(time.Hour), Reason: "backchannel"},
		Claim: store.Claim{JTI: logoutJTI(t, lt), Expires: time.Now().Add(time.Hour)}}
	if _, o, err := f.store.RecordNewRevocation(ctx, other); err != nil || o != store.Recorded {
		t.Fatalf("the other replica's write = %v, %v", o, err)
	}
	st.full.Store(false)
	if n, err := f.is.FlushPending(ctx); err != nil || n != 0 {
		t.Fatalf("FlushPending = %d, %v; want 0, nil", n, err)
	}
	if _, err := f.store.SessionRevocation(ctx, "sid-taken"); err != nil {
		t.Errorf("the held logout is not on record after the flush: %v", err)
	}
}
