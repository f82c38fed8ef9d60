package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"time"

	"github.com/tokengate/tokengate/internal/loopback"
	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/store/bolt"
)

// ScalePoint is the store and the process at one number of recorded logouts.
type ScalePoint struct {
	Records      int     `json:"recorded_logouts"`
	LoadSeconds  float64 `json:"load_seconds"`
	FileBytes    int64   `json:"data_file_bytes"`
	ColdStartMs  float64 `json:"cold_start_to_ready_ms"`
	RSSReadyMiB  float64 `json:"rss_ready_mib"`
	RSSLoadedMiB float64 `json:"rss_after_renewals_mib"`
	RSSAnonMiB   float64 `json:"rss_anon_after_renewals_mib"`
	RSSFileMiB   float64 `json:"rss_file_after_renewals_mib"`
	LookupHit    Dist    `json:"revocation_check_hit"`
	LookupMiss   Dist    `json:"revocation_check_miss"`
	Renewal      Dist    `json:"renewal_http_c1"`
}

// randomSID is shaped like Keycloak's: 24 base64url characters.
func randomSID() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// scale (6): recorded logouts at growing sizes in the bbolt file the binary serves from.
func (b *bench) scale(ctx context.Context) error {
	dataDir := filepath.Join(b.work, "scale", "data")
	addr, err := loopback.FreeAddr()
	if err != nil {
		return err
	}
	// First start creates the file and the keys, as in production.
	g, err := startGateway(ctx, b.o.bin, addr, b.kc.issuer(), dataDir)
	if err != nil {
		return err
	}
	g.stop()
	dbPath := filepath.Join(dataDir, "tokengate.db")
	var sample []string // recorded sids to look up
	have := 0
	for _, size := range b.p.scaleSizes {
		st, err := bolt.Open(dbPath, bolt.Options{})
		if err != nil {
			return err
		}
		t0 := time.Now()
		now := time.Now()
		// One transaction per step, sids sorted: bbolt rewrites every leaf a transaction touches,
		// so few large sorted transactions load a million records in seconds. (The serving path
		// records each logout in its own fsync'd transaction.)
		for have < size {
			n := size - have
			batch := make([]store.Revocation, n)
			for i := range batch {
				batch[i] = store.Revocation{SID: randomSID(), Sub: "user-" + fmt.Sprint((have+i)%50_000), At: now,
					Expires: now.Add(24 * time.Hour), Reason: "backchannel"}
				// Reservoir sample: every recorded sid equally likely to be looked up.
				if seen := have + i; len(sample) < 10_000 {
					sample = append(sample, batch[i].SID)
				} else if j := mrand.IntN(seen + 1); j < len(sample) {
					sample[j] = batch[i].SID
				}
			}
			sort.Slice(batch, func(i, j int) bool { return batch[i].SID < batch[j].SID })
			if err := st.RevokeSessions(ctx, batch); err != nil {
				st.Close()
				return err
			}
			have += n
		}
		pt := ScalePoint{Records: have, LoadSeconds: time.Since(t0).Seconds()}
		logf("scale: %d recorded logouts (loaded in %.1f s)", have, pt.LoadSeconds)
		// The revocation check as renewal makes it: one lookup, hit and miss. One thread, no GC
		// during the loop, so the percentiles show the store rather than this process.
		var hits, misses []float64
		hits, misses = make([]float64, 0, b.p.lookups), make([]float64, 0, b.p.lookups/2)
		runtime.LockOSThread()
		gc := debug.SetGCPercent(-1)
		for i := range b.p.lookups {
			sidHit := sample[mrand.IntN(len(sample))]
			t := time.Now()
			if _, err := st.SessionRevocation(ctx, sidHit); err != nil {
				st.Close()
				return fmt.Errorf("lookup %s: %w", sidHit, err)
			}
			hits = append(hits, us(time.Since(t)))
			if i%2 == 0 {
				miss := randomSID()
				t = time.Now()
				if _, err := st.SessionRevocation(ctx, miss); !errors.Is(err, store.ErrNotFound) {
					st.Close()
					return fmt.Errorf("lookup of an unknown sid: %v", err)
				}
				misses = append(misses, us(time.Since(t)))
			}
		}
		debug.SetGCPercent(gc)
		runtime.UnlockOSThread()
		pt.LookupHit = summarise(fmt.Sprintf("revocation check (recorded sid) at %d", have), 1, hits, 0, 0)
		pt.LookupMiss = summarise(fmt.Sprintf("revocation check (live sid) at %d", have), 1, misses, 0, 0)
		if err := st.Close(); err != nil {
			return err
		}
		if fi, err := os.Stat(dbPath); err == nil {
			pt.FileBytes = fi.Size()
		}
		// The process: exec to ready, resident memory, renewals (each makes the check).
		g, err := startGateway(ctx, b.o.bin, addr, b.kc.issuer(), dataDir)
		if err != nil {
			return err
		}
		pt.ColdStartMs = float64(g.ReadyAfter.Microseconds()) / 1e3
		rss, _, _ := g.rss()
		pt.RSSReadyMiB = mib(rss)
		err = func() error {
			defer g.stop()
			at, err := b.kcSessions[0].fresh(ctx, b.kc)
			if err != nil {
				return err
			}
			a, err := g.exchange(ctx, at)
			if err != nil {
				return err
			}
			pt.Renewal, err = load(ctx, fmt.Sprintf("renewal at %d recorded logouts, c=1", have), 1, b.p.dur/2, 0,
				func(ctx context.Context, _ int) error { return g.renewOK(ctx, a.RefreshToken) })
			rss, anon, file := g.rss()
			pt.RSSLoadedMiB, pt.RSSAnonMiB, pt.RSSFileMiB = mib(rss), mib(anon), mib(file)
			return err
		}()
		if err != nil {
			return err
		}
		logf("scale %d: file %.1f MiB, ready after %.0f ms, RSS %.1f MiB → %.1f MiB (anon %.1f, file %.1f); %s; %s", have,
			float64(pt.FileBytes)/(1<<20), pt.ColdStartMs, pt.RSSReadyMiB, pt.RSSLoadedMiB, pt.RSSAnonMiB, pt.RSSFileMiB, pt.LookupHit, pt.LookupMiss)
		b.res.Scale = append(b.res.Scale, pt)
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
