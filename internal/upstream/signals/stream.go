package signals

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokengate/tokengate/internal/store"
	"github.com/tokengate/tokengate/internal/tracing"
	"github.com/tokengate/tokengate/internal/upstream/jwks"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// maxBody bounds every answer read from Keycloak.
const maxBody = 4 << 20

// maxEvents is how many SETs one poll asks for.
const maxEvents = 100

// streamDoc is what the store keeps about the stream.
type streamDoc struct {
	StreamID string    `json:"stream_id"`
	Audience string    `json:"aud"`
	PollURL  string    `json:"poll_url"`
	Since    time.Time `json:"since"`
}

// conn is one connected stream.
type conn struct {
	md     secevent.Metadata
	stream streamDoc
	tokens oauth2.TokenSource
	keys   *jwks.KeySet
	state  string // the verification state asked for; empty when the request failed
}

// streamLostError says the transmitter answered 404 for the stream: it must be found or created
// again.
type streamLostError struct{ id string }

func (e *streamLostError) Error() string { return "stream " + e.id + " not found at Keycloak" }

// statusError is a non-expected HTTP answer.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.status, e.body)
}

// connect discovers the transmitter, gets the receiver's token source, reuses or creates the
// stream and asks for a verification event.
func (r *Receiver) connect(ctx context.Context) (*conn, error) {
	md, err := r.discover(ctx)
	if err != nil {
		return nil, err
	}
	tokenURL, err := r.tokenEndpoint(ctx)
	if err != nil {
		return nil, err
	}
	cc := &clientcredentials.Config{ClientID: r.cfg.ClientID, ClientSecret: r.cfg.ClientSecret, TokenURL: tokenURL}
	c := &conn{
		md:     md,
		tokens: oauth2.ReuseTokenSource(nil, cc.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, r.cfg.HTTPClient))),
		keys:   jwks.New(md.JWKSURI, jwks.Options{HTTPClient: r.cfg.HTTPClient}),
	}
	if c.stream, err = r.ensureStream(ctx, c); err != nil {
		return nil, err
	}
	r.setVerified(false)
	c.state = r.requestVerification(ctx, c)
	return c, nil
}

// discover reads the SSF configuration at the RFC 8615 location for the realm
// (/.well-known/ssf-configuration/realms/<realm>), as SSF 1.0 §7.2 says.
func (r *Receiver) discover(ctx context.Context) (secevent.Metadata, error) {
	u, err := secevent.MetadataURL(r.cfg.Issuer)
	if err != nil {
		return secevent.Metadata{}, err
	}
	var md secevent.Metadata
	if err := r.call(ctx, nil, http.MethodGet, u, nil, http.StatusOK, &md); err != nil {
		var se *statusError
		if errors.As(err, &se) && se.status == http.StatusNotFound {
			return secevent.Metadata{}, fmt.Errorf("no Shared Signals transmitter at %s (Keycloak 26.7+ must run with --features=ssf and the realm attribute ssf.transmitterEnabled=true): %w", u, err)
		}
		return secevent.Metadata{}, fmt.Errorf("SSF configuration %s: %w", u, err)
	}
	switch {
	case md.Issuer != r.cfg.Issuer:
		return secevent.Metadata{}, fmt.Errorf("SSF configuration names issuer %q, want %q", md.Issuer, r.cfg.Issuer)
	case !slices.Contains(md.DeliveryMethodsSupported, secevent.DeliveryPoll):
		return secevent.Metadata{}, fmt.Errorf("the transmitter does not offer poll delivery (%s)", secevent.DeliveryPoll)
	case md.ConfigurationEndpoint == "" || md.JWKSURI == "":
		return secevent.Metadata{}, errors.New("SSF configuration lacks configuration_endpoint or jwks_uri")
	}
	for _, e := range []struct{ name, url string }{
		{"jwks_uri", md.JWKSURI}, {"configuration_endpoint", md.ConfigurationEndpoint}, {"verification_endpoint", md.VerificationEndpoint},
	} {
		if e.url == "" {
			continue // verification_endpoint is optional
		}
		if err := r.origins.check("SSF configuration's "+e.name, e.url); err != nil {
			return secevent.Metadata{}, err
		}
	}
	return md, nil
}

// tokenEndpoint reads the realm's OpenID configuration for its token endpoint.
func (r *Receiver) tokenEndpoint(ctx context.Context) (string, error) {
	var oc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	u := strings.TrimSuffix(r.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	if err := r.call(ctx, nil, http.MethodGet, u, nil, http.StatusOK, &oc); err != nil {
		return "", fmt.Errorf("OpenID configuration: %w", err)
	}
	if oc.TokenEndpoint == "" {
		return "", errors.New("OpenID configuration has no token_endpoint")
	}
	if err := r.origins.check("OpenID configuration's token_endpoint", oc.TokenEndpoint); err != nil {
		return "", err
	}
	return oc.TokenEndpoint, nil
}

// ensureStream reuses the receiver client's stream (Keycloak keeps one per client) or creates
// one, and stores its id. A stored stream Keycloak no longer lists is logged as lost: the
// signals of the gap are not replayed. A reused stream that does not request every event
// tokengate acts on is updated (requestEvents).
func (r *Receiver) ensureStream(ctx context.Context, c *conn) (streamDoc, error) {
	var stored streamDoc
	raw, err := r.state.ReceiverStream(ctx)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &stored); err != nil {
			r.log.Warn("shared signals: stored stream document is unreadable; replacing it", "error", err.Error())
			stored = streamDoc{}
		}
	case !errors.Is(err, store.ErrNotFound):
		return streamDoc{}, fmt.Errorf("stored stream: %w", err)
	}
	var list []secevent.StreamConfiguration
	if err := r.call(ctx, c, http.MethodGet, c.md.ConfigurationEndpoint, nil, http.StatusOK, &list); err != nil {
		return streamDoc{}, fmt.Errorf("list streams: %w", err)
	}
	var sc *secevent.StreamConfiguration
	for i := range list {
		if list[i].StreamID == stored.StreamID || sc == nil {
			sc = &list[i]
		}
	}
	if sc == nil {
		if stored.StreamID != "" {
			r.log.Warn("shared signals: Keycloak lost tokengate's stream; creating a new one (signals of the gap are not replayed)",
				"event", "signals_stream_recreated", "stream", stored.StreamID)
		}
		body, _ := json.Marshal(secevent.StreamConfiguration{
			Delivery:        secevent.Delivery{Method: secevent.DeliveryPoll},
			EventsRequested: r.wanted,
			Description:     "tokengate: logouts for its session registry",
		})
		var created secevent.StreamConfiguration
		if err := r.call(ctx, c, http.MethodPost, c.md.ConfigurationEndpoint, body, http.StatusCreated, &created); err != nil {
			return streamDoc{}, fmt.Errorf("create stream: %w", err)
		}
		sc = &created
		r.log.Info("shared signals: stream created", "event", "signals_stream_created", "stream", sc.StreamID)
	} else if sc.StreamID != stored.StreamID {
		r.log.Info("shared signals: using the receiver client's existing stream", "stream", sc.StreamID)
	}
	if err := r.checkStream(sc); err != nil {
		return streamDoc{}, err
	}
	if missing := r.notRequested(sc); len(missing) > 0 {
		sc = r.requestEvents(ctx, c, sc, missing)
	}
	r.logUndelivered(ctx, sc)
	doc := streamDoc{StreamID: sc.StreamID, Audience: sc.Audience[0], PollURL: sc.Delivery.EndpointURL, Since: stored.Since}
	if doc.StreamID != stored.StreamID || doc.Since.IsZero() {
		doc.Since = r.cfg.Now().UTC()
	}
	if doc != stored {
		b, _ := json.Marshal(doc)
		if err := r.state.PutReceiverStream(ctx, b); err != nil {
			return streamDoc{}, fmt.Errorf("store stream: %w", err)
		}
	}
	return doc, nil
}

// logUndelivered says, in one line, which events tokengate acts on the stream does not deliver:
// INFO, as with the RISC events Keycloak 26.7.3 does not offer (acted on once a Keycloak
// delivers them); WARN when session-revoked is among them, the event the stream is for.
func (r *Receiver) logUndelivered(ctx context.Context, sc *secevent.StreamConfiguration) {
	var missing []string
	for _, e := range r.wanted {
		if !slices.Contains(sc.EventsDelivered, e) {
			missing = append(missing, e)
		}
	}
	if len(missing) == 0 {
		return
	}
	level := slog.LevelInfo
	if slices.Contains(missing, secevent.EventSessionRevoked) {
		level = slog.LevelWarn
	}
	r.log.Log(ctx, level, "shared signals: Keycloak does not deliver these events tokengate acts on "+
		"(it does not offer them, or the stream does not request them); they are acted on once it does",
		"event", "signals_events_not_delivered", "stream", sc.StreamID, "event_types", missing)
}

// checkStream refuses a stream tokengate cannot follow.
func (r *Receiver) checkStream(sc *secevent.StreamConfiguration) error {
	switch {
	case sc.StreamID == "":
		return errors.New("stream has no stream_id")
	}
	if err := sc.CheckPoll(r.cfg.Issuer); err != nil {
		return err
	}
	if err := r.origins.check("stream "+sc.StreamID+"'s delivery endpoint_url", sc.Delivery.EndpointURL); err != nil {
		return err
	}
	return nil
}

// notRequested lists the events tokengate acts on that the stream does not request. It reads
// events_requested, not events_delivered: Keycloak delivers the requested events it supports,
// so an event it does not support (the RISC ones on 26.7) is never delivered however often it
// is asked for.
func (r *Receiver) notRequested(sc *secevent.StreamConfiguration) []string {
	var missing []string
	for _, e := range r.wanted {
		if !slices.Contains(sc.EventsRequested, e) {
			missing = append(missing, e)
		}
	}
	return missing
}

// requestEvents updates a reused stream that does not request every event tokengate acts on
// (SSF 1.0 §8.1.1.3: PATCH of the configuration endpoint with stream_id and the changed
// fields), so that adding an event to the configuration later takes effect. It asks for exactly
// the configured events, as a created stream does: the stream belongs to tokengate's receiver
// client, and an event asked for by an earlier configuration would only be acknowledged and
// ignored. It then re-reads the stream's configuration. When Keycloak refuses, it logs and
// returns sc unchanged: the stream is followed as it is.
func (r *Receiver) requestEvents(ctx context.Context, c *conn, sc *secevent.StreamConfiguration, missing []string) *secevent.StreamConfiguration {
	body, _ := json.Marshal(secevent.StreamConfiguration{StreamID: sc.StreamID, EventsRequested: r.wanted})
	err := r.call(ctx, c, http.MethodPatch, c.md.ConfigurationEndpoint, body, http.StatusOK, nil)
	var updated secevent.StreamConfiguration
	if err == nil {
		if err = r.call(ctx, c, http.MethodGet, secevent.StreamURL(c.md.ConfigurationEndpoint, sc.StreamID), nil, http.StatusOK, &updated); err != nil {
			err = fmt.Errorf("re-reading the stream after the update: %w", err)
		} else if updated.StreamID != sc.StreamID {
			err = fmt.Errorf("re-reading the stream after the update: Keycloak answered stream %q", updated.StreamID)
		} else if err = r.checkStream(&updated); err != nil {
			err = fmt.Errorf("re-reading the stream after the update: %w", err)
		}
	}
	if err != nil {
		r.log.Error("shared signals: could not update the stream at Keycloak to request every event tokengate acts on; those events are not delivered, the stream is used as it is",
			"event", "signals_stream_events_update_failed", "stream", sc.StreamID, "not_requested", shortNames(missing),
			"error", err.Error())
		return sc
	}
	r.log.Info("shared signals: stream updated to request the events tokengate acts on",
		"event", "signals_stream_events_updated", "stream", sc.StreamID, "added", shortNames(missing),
		"events_requested", shortNames(updated.EventsRequested))
	if still := r.notRequested(&updated); len(still) > 0 {
		r.log.Error("shared signals: Keycloak accepted the stream update but the stream still does not request every event tokengate acts on",
			"event", "signals_stream_events_update_failed", "stream", sc.StreamID, "not_requested", shortNames(still))
	}
	return &updated
}

func shortNames(uris []string) []string {
	out := make([]string, len(uris))
	for i, u := range uris {
		out[i] = shortName(u)
	}
	return out
}

// requestVerification asks for a verification event (SSF 1.0 §8.1.4.2) and returns its state,
// or "" when Keycloak refused (it rate-limits verification requests per receiver).
func (r *Receiver) requestVerification(ctx context.Context, c *conn) string {
	if c.md.VerificationEndpoint == "" {
		return ""
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	state := base64.RawURLEncoding.EncodeToString(b[:])
	body, _ := json.Marshal(map[string]string{"stream_id": c.stream.StreamID, "state": state})
	if err := r.call(ctx, c, http.MethodPost, c.md.VerificationEndpoint, body, http.StatusNoContent, nil); err != nil {
		r.log.Info("shared signals: verification request not accepted; the stream is used unverified", "stream", c.stream.StreamID,
			"error", err.Error())
		return ""
	}
	return state
}

func (r *Receiver) setVerified(v bool) {
	r.mu.Lock()
	r.verified = v
	r.mu.Unlock()
	if v {
		r.m.verified.Set(1)
	} else {
		r.m.verified.Set(0)
	}
}

// follow polls the stream until an error or ctx ends. Acknowledgements ride on the next poll;
// a SET is acknowledged only once what it carries is durably recorded.
func (r *Receiver) follow(ctx context.Context, c *conn) error {
	var (
		acks []string
		errs = map[string]secevent.SETError{}
	)
	var span trace.Span = noop.Span{}
	defer func() { span.End() }()
	for {
		// One span per poll: the call to Keycloak, then recording what it carried. It ends
		// before any pause (ending it twice is harmless).
		span.End()
		var pctx context.Context
		pctx, span = tracing.Start(ctx, r.tracer, "signals.poll")
		n := maxEvents
		req := secevent.PollRequest{MaxEvents: &n, ReturnImmediately: true, Ack: acks, SETErrs: errs}
		body, _ := json.Marshal(req)
		var resp secevent.PollResponse
		err := r.call(pctx, c, http.MethodPost, c.stream.PollURL, body, http.StatusOK, &resp)
		if err != nil {
			r.m.polls.WithLabelValues("error").Inc()
			span.SetStatus(codes.Error, "poll failed")
			var se *statusError
			if errors.As(err, &se) && se.status == http.StatusNotFound {
				return &streamLostError{id: c.stream.StreamID}
			}
			return fmt.Errorf("poll: %w", err)
		}
		r.m.polls.WithLabelValues("ok").Inc()
		r.m.up.Set(1)
		r.backoff.reset()
		acks, errs = nil, map[string]secevent.SETError{}
		retry := false
		if span.IsRecording() {
			span.SetAttributes(attribute.Int("tokengate.ssf.sets", len(resp.Sets)), attribute.Int("tokengate.ssf.acks", len(req.Ack)))
		}
		for jti, raw := range resp.Sets {
			switch out := r.handle(pctx, c, jti, raw); {
			case out.retry:
				retry = true
			case out.err != nil:
				errs[jti] = *out.err
			default:
				acks = append(acks, jti)
			}
		}
		if retry {
			// Something could not be recorded or checked now: the unacknowledged SETs come
			// again. Acknowledge what was done, then pause.
			if len(acks) > 0 || len(errs) > 0 {
				none := 0
				body, _ := json.Marshal(secevent.PollRequest{MaxEvents: &none, ReturnImmediately: true, Ack: acks, SETErrs: errs})
				if err := r.call(pctx, c, http.MethodPost, c.stream.PollURL, body, http.StatusOK, &secevent.PollResponse{}); err == nil {
					acks, errs = nil, map[string]secevent.SETError{}
				}
			}
			span.End()
			if !sleep(ctx, r.cfg.PollInterval) {
				return ctx.Err()
			}
			continue
		}
		if !resp.MoreAvailable {
			r.markCaughtUp()
		}
		if resp.MoreAvailable || len(acks) > 0 || len(errs) > 0 {
			continue
		}
		span.End()
		if !sleep(ctx, r.cfg.PollInterval) {
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// call sends a request (with the receiver's bearer token when c is not nil) and decodes the
// answer into out if its status is want.
func (r *Receiver) call(ctx context.Context, c *conn, method, u string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c != nil {
		tok, err := c.tokens.Token()
		if err != nil {
			return fmt.Errorf("receiver client token: %w", err)
		}
		tok.SetAuthHeader(req)
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return &statusError{status: resp.StatusCode, body: string(bytes.TrimSpace(raw[:min(len(raw), 300)]))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode %s answer: %w", u, err)
	}
	return nil
}
