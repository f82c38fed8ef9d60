package verifiertest_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/verifier"
	"github.com/tokengate/tokengate/verifier/verifiertest"
)

// TestServer_AVerifierAcceptsItsTokensAndFollowsItsRevocations: a real verifier configured with
// Config accepts AccessToken's tokens, acknowledges a RevokeSession SET and then refuses the
// revoked session's token only.
func TestServer_AVerifierAcceptsItsTokensAndFollowsItsRevocations(t *testing.T) {
	tg := verifiertest.New(t, verifiertest.Options{})
	cfg := tg.Config()
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx := context.Background()
	v, err := verifier.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	now := time.Now()
	out, stays := tg.AccessToken("alice", "sid-out", now), tg.AccessToken("alice", "sid-stays", now)
	if _, err := v.Verify(ctx, out); err != nil {
		t.Fatalf("before the logout: %v", err)
	}
	tg.RevokeSession("set-1", "alice", "sid-out", now)
	acked, refused := tg.Settled()
	if !slices.Contains(acked, "set-1") || len(refused) != 0 {
		t.Fatalf("acknowledged %v, refused %v", acked, refused)
	}
	if _, err := v.Verify(ctx, out); !errors.Is(err, verifier.ErrRevoked) {
		t.Errorf("the revoked session's token: %v, want ErrRevoked", err)
	}
	if _, err := v.Verify(ctx, stays); err != nil {
		t.Errorf("another session's token: %v", err)
	}
	if tg.Polls() == 0 {
		t.Error("no poll counted")
	}
}

// TestServer_WithTheStreamDownTheVerifierFailsClosed: SetDown makes the stream unreachable, a
// verifier past FailClosedAfter refuses every token with ErrFeedUnavailable, and accepts them
// again once the stream answers.
func TestServer_WithTheStreamDownTheVerifierFailsClosed(t *testing.T) {
	tg := verifiertest.New(t, verifiertest.Options{})
	var offset atomic.Int64 // the verifier's clock runs ahead by offset
	cfg := tg.Config()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.FailClosedAfter = verifier.MinFailClosedAfter
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	ctx := context.Background()
	v, err := verifier.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	tg.SetDown(true)
	offset.Store(int64(2 * verifier.MinFailClosedAfter))
	tok := tg.AccessToken("alice", "sid-1", time.Now())
	// A poll held when the stream went down may still answer once (within a second).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := v.Verify(ctx, tok)
		if errors.Is(err, verifier.ErrFeedUnavailable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with the stream down: %v, want ErrFeedUnavailable", err)
		}
	}
	tg.SetDown(false)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := v.Verify(ctx, tok)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after the stream came back: %v", err)
		}
	}
}
