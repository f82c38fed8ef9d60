package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/tokengate/tokengate/verifier/secevent"
)

const (
	// maxEventsPerPoll is how many SETs one poll asks for.
	maxEventsPerPoll = 100
	// maxHold is the longest hold tokengate grants a poll.
	maxHold = 25 * time.Second
	// backoff bounds between failed polls.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// subscribe reads tokengate's SSF configuration and this service's stream configuration.
func (v *Verifier) subscribe(ctx context.Context) error {
	mdURL, err := secevent.MetadataURL(v.cfg.Issuer)
	if err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	var md secevent.Metadata
	if err := v.getJSON(ctx, mdURL, "", &md); err != nil {
		return fmt.Errorf("verifier: SSF configuration: %w", err)
	}
	if md.Issuer != v.cfg.Issuer {
		return fmt.Errorf("verifier: SSF configuration names issuer %q, want %q", md.Issuer, v.cfg.Issuer)
	}
	if md.ConfigurationEndpoint == "" || !slices.Contains(md.DeliveryMethodsSupported, secevent.DeliveryPoll) {
		return errors.New("verifier: the transmitter offers no stream configuration endpoint or no poll delivery")
	}
	v.configURL = md.ConfigurationEndpoint
	var sc secevent.StreamConfiguration
	if v.cfg.OwnStream {
		err = v.createStream(ctx, &sc)
	} else if v.cfg.StreamID != "" {
		err = v.getJSON(ctx, secevent.StreamURL(md.ConfigurationEndpoint, v.cfg.StreamID), v.cfg.StreamSecret, &sc)
	} else {
		var list []secevent.StreamConfiguration
		if err = v.getJSON(ctx, md.ConfigurationEndpoint, v.cfg.StreamSecret, &list); err == nil {
			if len(list) != 1 {
				return fmt.Errorf("verifier: the stream credential names %d streams; set StreamID", len(list))
			}
			sc = list[0]
		}
	}
	if err != nil {
		return fmt.Errorf("verifier: stream configuration: %w", err)
	}
	if err := sc.CheckPoll(v.cfg.Issuer); err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	if !slices.Contains(sc.EventsDelivered, secevent.EventSessionRevoked) {
		return fmt.Errorf("verifier: stream %q does not deliver session-revoked events", sc.StreamID)
	}
	v.streamID, v.pollURL, v.setAud = sc.StreamID, sc.Delivery.EndpointURL, sc.Audience[0]
	v.lastHeard.Store(v.cfg.Now().UnixNano())
	return nil
}

func (v *Verifier) getJSON(ctx context.Context, u, secret string, out any) error {
	return v.call(ctx, http.MethodGet, u, secret, nil, http.StatusOK, out)
}

// createStream creates this process's stream (SSF 1.0 §8.1.1.1) with the receiver credential.
func (v *Verifier) createStream(ctx context.Context, out any) error {
	host, _ := os.Hostname()
	body, _ := json.Marshal(secevent.StreamConfiguration{
		Delivery:        secevent.Delivery{Method: secevent.DeliveryPoll},
		EventsRequested: []string{secevent.EventSessionRevoked, secevent.EventSigningKeyRevoked},
		Description:     fmt.Sprintf("%s on %s (pid %d)", v.cfg.Audience, host, os.Getpid()),
	})
	return v.call(ctx, http.MethodPost, v.configURL, v.cfg.StreamSecret, body, http.StatusCreated, out)
}

// deleteStream deletes this process's stream.
func (v *Verifier) deleteStream(ctx context.Context) error {
	u := secevent.StreamURL(v.configURL, v.streamID)
	if err := v.call(ctx, http.MethodDelete, u, v.cfg.StreamSecret, nil, http.StatusNoContent, nil); err != nil {
		return fmt.Errorf("verifier: delete stream %s: %w", v.streamID, err)
	}
	return nil
}

// call sends a request and decodes the answer into out (when not nil) if its status is want.
func (v *Verifier) call(ctx context.Context, method, u, secret string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// follow long-polls the stream until ctx ends: each answer's SETs are verified and applied,
// then acknowledged with the next poll; refused SETs are reported in setErrs; SETs that cannot
// be verified now are left unacknowledged, so they come again.
func (v *Verifier) follow(ctx context.Context) {
	defer close(v.done)
	wait := maxHold
	if !v.cfg.FailOpen {
		// Answers must come often enough that a healthy feed never looks quiet.
		wait = min(maxHold, max(time.Second, v.cfg.FailClosedAfter/3))
	}
	var (
		acks    []string
		errs    = map[string]secevent.SETError{}
		backoff = minBackoff
		failing bool
	)
	for ctx.Err() == nil {
		resp, err := v.poll(ctx, acks, errs, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var pe *pollError
			if v.cfg.OwnStream && errors.As(err, &pe) && pe.status == http.StatusUnauthorized {
				// The stream is gone (deleted after a long silence): a new one starts with the
				// events still in the log.
				if err = v.recreate(ctx); err == nil {
					acks, errs = nil, map[string]secevent.SETError{}
					continue
				}
			}
			v.connected.Store(false)
			if !failing {
				v.log.Warn("verifier: revocation feed unreachable; retrying", "stream", v.streamID, "error", err.Error())
				failing = true
			}
			sleep := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(sleep):
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		if failing {
			v.log.Info("verifier: revocation feed reachable again", "stream", v.streamID)
			failing = false
		}
		backoff = minBackoff
		v.connected.Store(true)
		v.lastHeard.Store(v.cfg.Now().UnixNano())
		acks, errs = acks[:0], map[string]secevent.SETError{}
		now := v.cfg.Now()
		for jti, raw := range resp.Sets {
			r, err := v.VerifySET(ctx, raw)
			switch {
			case errors.Is(err, ErrReplayedSET):
				acks = append(acks, jti) // applied before; a redelivery
			case errors.Is(err, ErrSETUnverifiable):
				v.log.Warn("verifier: SET cannot be verified now; it will come again", "stream", v.streamID, "jti", jti, "error", err.Error())
			case err != nil:
				v.setRefused.Add(1)
				errs[jti] = secevent.SETError{Code: errCode(err), Description: err.Error()}
				v.log.Warn("verifier: SET refused", "stream", v.streamID, "jti", jti, "error", err.Error())
			case r != nil && r.JTI != jti:
				v.setRefused.Add(1)
				errs[jti] = secevent.SETError{Code: "invalid_request", Description: "the SET's jti differs from its key in sets"}
			case r != nil && r.KeyID != "" && !v.refetchKeys(ctx, r.KeyID):
				// Not acknowledged: the event comes again and the refetch is tried again.
			default:
				until := now.Add(v.cfg.MaxTokenLifetime)
				if r != nil && v.revoked.remember(jti, until) {
					v.revoked.apply(r, until)
					v.applied.Add(1)
					if v.cfg.OnRevocation != nil {
						v.cfg.OnRevocation(*r)
					}
				}
				acks = append(acks, jti)
			}
		}
		v.revoked.forget(now)
		v.cache.prune(now)
	}
}

// refetchKeys refetches the JWKS after a signing-key-revoked event, reporting success.
func (v *Verifier) refetchKeys(ctx context.Context, kid string) bool {
	if err := v.keySet.refreshNow(ctx); err != nil {
		v.log.Warn("verifier: signing key revoked but the JWKS could not be refetched; retrying", "kid", kid, "error", err.Error())
		return false
	}
	v.log.Info("verifier: signing key revoked; JWKS refetched", "kid", kid)
	return true
}

// poll sends one poll carrying acknowledgements and errors.
func (v *Verifier) poll(ctx context.Context, acks []string, errs map[string]secevent.SETError, wait time.Duration) (*secevent.PollResponse, error) {
	n := maxEventsPerPoll
	body, err := json.Marshal(secevent.PollRequest{MaxEvents: &n, Ack: acks, SETErrs: errs})
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodPost, v.pollURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+v.cfg.StreamSecret)
	req.Header.Set("Prefer", "wait="+strconv.Itoa(int(wait/time.Second)))
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &pollError{status: resp.StatusCode, msg: fmt.Sprintf("poll: %s: %s", resp.Status, bytes.TrimSpace(raw))}
	}
	var out secevent.PollResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("poll: %w", err)
	}
	return &out, nil
}

// pollError is a poll answered with another status than 200.
type pollError struct {
	status int
	msg    string
}

func (e *pollError) Error() string { return e.msg }

// recreate creates a new stream for this process after its stream was deleted.
func (v *Verifier) recreate(ctx context.Context) error {
	var sc secevent.StreamConfiguration
	if err := v.createStream(ctx, &sc); err != nil {
		return err
	}
	if len(sc.Audience) != 1 || sc.Audience[0] != v.setAud || sc.Delivery.EndpointURL == "" {
		return fmt.Errorf("verifier: the new stream %q has aud %v, want %q", sc.StreamID, []string(sc.Audience), v.setAud)
	}
	v.log.Info("verifier: stream deleted by tokengate; created a new one", "old", v.streamID, "new", sc.StreamID)
	v.streamMu.Lock()
	v.streamID, v.pollURL = sc.StreamID, sc.Delivery.EndpointURL
	v.streamMu.Unlock()
	return nil
}
