package keys_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokengate/tokengate/internal/store/bolt"
	"github.com/tokengate/tokengate/keys"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func openStore(t *testing.T, path string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func config(ck *clock) keys.Config {
	return keys.Config{RotateEvery: time.Hour, PublishLead: 5 * time.Minute, TokenLifetime: 30 * time.Second,
		SealRetention: 2 * time.Hour, Now: ck.Now}
}

func states(m *keys.Manager) map[keys.State][]string {
	out := map[keys.State][]string{}
	ks, _ := m.Keys()
	for _, k := range ks {
		out[k.State] = append(out[k.State], k.ID)
	}
	return out
}

func inJWKS(m *keys.Manager, kid string) bool {
	for _, k := range m.JWKS().Keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}

func TestOpen_FirstStartPublishesActiveAndNextAndRestartKeepsThem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	ck := &clock{t: time.Unix(1_800_000_000, 0)}
	st := openStore(t, path)
	m, err := keys.Open(context.Background(), st, config(ck))
	if err != nil {
		t.Fatal(err)
	}
	s := states(m)
	if len(s[keys.StateActive]) != 1 || len(s[keys.StateNext]) != 1 || len(m.JWKS().Keys) != 2 {
		t.Fatalf("states %v, jwks %d", s, len(m.JWKS().Keys))
	}
	active := m.ActiveKeyID()
	st.Close()
	st = openStore(t, path)
	defer st.Close()
	m2, err := keys.Open(context.Background(), st, config(ck))
	if err != nil {
		t.Fatal(err)
	}
	if m2.ActiveKeyID() != active {
		t.Errorf("restart changed the active key: %s → %s", active, m2.ActiveKeyID())
	}
}

func TestTick_RotatesOnScheduleAndPublishesBeforeSigning(t *testing.T) {
	ck := &clock{t: time.Unix(1_800_000_000, 0)}
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	m, err := keys.Open(context.Background(), st, config(ck))
	if err != nil {
		t.Fatal(err)
	}
	publishedAt := map[string]time.Time{}
	for _, k := range m.JWKS().Keys {
		publishedAt[k.KeyID] = ck.Now()
	}
	version := m.Document().Version
	rotations := 0
	for step := 0; step <= 4*60; step++ { // four hours in one-minute ticks
		ch, err := m.Tick(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ch.Empty() && m.Document().Version != version {
			t.Fatal("a tick with nothing due wrote the document")
		}
		version = m.Document().Version
		if ch.Activated != "" {
			rotations++
			if lead := ck.Now().Sub(publishedAt[ch.Activated]); lead < 5*time.Minute {
				t.Fatalf("key %s signs %s after publication, want ≥ 5m", ch.Activated, lead)
			}
		}
		for _, k := range m.JWKS().Keys {
			if _, ok := publishedAt[k.KeyID]; !ok {
				publishedAt[k.KeyID] = ck.Now()
			}
		}
		s := states(m)
		if len(s[keys.StateActive]) != 1 || len(s[keys.StateNext]) != 1 {
			t.Fatalf("step %d: states %v", step, s)
		}
		if !inJWKS(m, m.ActiveKeyID()) {
			t.Fatal("active key not published")
		}
		ck.Advance(time.Minute)
	}
	if rotations != 4 {
		t.Errorf("rotations = %d, want 4", rotations)
	}
	ks, _ := m.Keys()
	for _, k := range ks {
		if k.State == keys.StateRetired && !k.RemovedAt.After(ck.Now()) {
			t.Errorf("retired key %s kept past its retention (%s)", k.ID, k.RemovedAt)
		}
	}
	if len(m.JWKS().Keys) > 3 {
		t.Errorf("JWKS holds %d keys, want at most active, next and one retired", len(m.JWKS().Keys))
	}
}

func TestRotate_ManualRefusesTooEarlyUnlessForced(t *testing.T) {
	ck := &clock{t: time.Unix(1_800_000_000, 0)}
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	m, _ := keys.Open(context.Background(), st, config(ck))
	before := m.ActiveKeyID()
	if _, err := m.Rotate(context.Background(), false); !errors.Is(err, keys.ErrTooEarly) {
		t.Fatalf("err = %v, want ErrTooEarly", err)
	}
	if m.ActiveKeyID() != before {
		t.Fatal("a refused rotation changed the active key")
	}
	ck.Advance(6 * time.Minute)
	ch, err := m.Rotate(context.Background(), false)
	if err != nil || ch.Retired != before || m.ActiveKeyID() == before || !inJWKS(m, before) {
		t.Fatalf("rotate: %+v %v", ch, err)
	}
	if _, err := m.Rotate(context.Background(), true); err != nil {
		t.Fatalf("forced rotate: %v", err)
	}
}

func TestRevokeKey(t *testing.T) {
	ck := &clock{t: time.Unix(1_800_000_000, 0)}
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	m, _ := keys.Open(context.Background(), st, config(ck))
	active := m.ActiveKeyID()
	next := states(m)[keys.StateNext][0]
	ch, err := m.RevokeKey(context.Background(), active)
	if err != nil {
		t.Fatal(err)
	}
	if m.ActiveKeyID() != next || inJWKS(m, active) || ch.Published == "" || !inJWKS(m, ch.Published) {
		t.Fatalf("after revoking the active key: active=%s change=%+v", m.ActiveKeyID(), ch)
	}
	if _, rev := m.Keys(); len(rev) != 1 || rev[0].ID != active {
		t.Errorf("revoked list %v", rev)
	}
	if _, err := m.RevokeKey(context.Background(), "no-such-kid"); !errors.Is(err, keys.ErrNoKey) {
		t.Errorf("unknown kid: %v", err)
	}
	if _, err := m.RevokeKey(context.Background(), ch.Published); err != nil || len(states(m)[keys.StateNext]) != 1 {
		t.Errorf("revoking the next key must publish another: %v %v", err, states(m))
	}
}

func TestConcurrentManagersKeepExactlyOneActiveKey(t *testing.T) {
	ck := &clock{t: time.Unix(1_800_000_000, 0)}
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	var ms []*keys.Manager
	for range 3 {
		m, err := keys.Open(context.Background(), st, config(ck))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	ck.Advance(2 * time.Hour)
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = m.Tick(context.Background()) }()
		go func() { defer wg.Done(); _, _ = m.Rotate(context.Background(), true) }()
	}
	wg.Wait()
	if err := ms[0].Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := states(ms[0]); len(s[keys.StateActive]) != 1 || len(s[keys.StateNext]) != 1 {
		t.Fatalf("states %v", s)
	}
}

func TestKEK_EncryptsAtRestAndRefusesWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	ck := &clock{t: time.Unix(1_800_000_000, 0)}
	st := openStore(t, path)
	defer st.Close()
	// Start without a KEK, then add one: the document is re-encrypted.
	if _, err := keys.Open(context.Background(), st, config(ck)); err != nil {
		t.Fatal(err)
	}
	kek := bytes.Repeat([]byte{7}, 32)
	cfg := config(ck)
	cfg.KEK = kek
	m, err := keys.Open(context.Background(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := st.Keys(context.Background())
	if bytes.Contains(raw, []byte(`"d"`)) || bytes.Contains(raw, []byte(`"plain"`)) {
		t.Fatalf("private key material stored in clear: %.200s", raw)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil || doc["sealed"] == nil {
		t.Fatalf("stored document: %v", err)
	}
	active := m.ActiveKeyID()
	cases := []struct {
		name string
		kek  []byte
	}{{"wrong KEK", bytes.Repeat([]byte{8}, 32)}, {"no KEK", nil}}
	for _, c := range cases {
		cfg := config(ck)
		cfg.KEK = c.kek
		if _, err := keys.Open(context.Background(), st, cfg); !errors.Is(err, keys.ErrWrongKEK) {
			t.Errorf("%s: err = %v, want ErrWrongKEK", c.name, err)
		}
	}
	m2, err := keys.Open(context.Background(), st, cfg)
	if err != nil || m2.ActiveKeyID() != active {
		t.Fatalf("right KEK: %v", err)
	}
	cfg.KEK = []byte("short")
	if _, err := keys.Open(context.Background(), st, cfg); err == nil {
		t.Error("a KEK of the wrong size must be refused")
	}
}

func TestSealKeysRotateAndOldTokensOpenUntilRetention(t *testing.T) {
	ck := &clock{t: time.Unix(1_800_000_000, 0)}
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	m, _ := keys.Open(context.Background(), st, config(ck))
	old, err := m.Seal([]byte("grant"))
	if err != nil {
		t.Fatal(err)
	}
	ck.Advance(time.Hour) // seal key due
	if _, err := m.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Unseal(old); err != nil || string(got) != "grant" {
		t.Fatalf("old refresh token within retention: %q %v", got, err)
	}
	fresh, _ := m.Seal([]byte("new"))
	ck.Advance(2*time.Hour + time.Minute)
	if _, err := m.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Unseal(old); err == nil {
		t.Error("a refresh token sealed by a removed seal key still opens")
	}
	if _, err := m.Unseal(fresh); err != nil {
		t.Errorf("a refresh token of the current key: %v", err)
	}
}

func TestAlgorithms_SignAndVerify(t *testing.T) {
	for _, alg := range keys.SupportedAlgorithms {
		t.Run(alg, func(t *testing.T) {
			ck := &clock{t: time.Unix(1_800_000_000, 0)}
			st := openStore(t, filepath.Join(t.TempDir(), "db"))
			defer st.Close()
			cfg := config(ck)
			cfg.Algorithm = alg
			m, err := keys.Open(context.Background(), st, cfg)
			if err != nil {
				t.Fatal(err)
			}
			tok, kid, err := m.Sign([]byte(`{"sub":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := m.PublicKey(kid)
			if _, err := jws.Verify(pub); err != nil || jws.Signatures[0].Protected.ExtraHeaders["typ"] != "at+jwt" {
				t.Fatalf("verify: %v", err)
			}
		})
	}
	if _, err := keys.Open(context.Background(), nil, keys.Config{Algorithm: "HS256"}); err == nil {
		t.Error("HS256 must be refused")
	}
}
