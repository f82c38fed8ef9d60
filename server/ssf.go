package server

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tokengate/tokengate/internal/ssf"
	"github.com/tokengate/tokengate/verifier/secevent"
)

// SSFReceivers is what the SSF configuration endpoints call (SSF 1.0 §6, §8.1.1): the
// transmitter's metadata, and streams as receivers see and manage them.
type SSFReceivers interface {
	Metadata() secevent.Metadata
	Authenticate(ctx context.Context, id, token string) error
	StreamsFor(ctx context.Context, token string) ([]string, error)
	StreamConfiguration(id string) (secevent.StreamConfiguration, error)
	Receiver(token string) (string, error)
	CreateReceiverStream(ctx context.Context, receiver, description string) (secevent.StreamConfiguration, error)
	DeleteReceiverStream(ctx context.Context, receiver, id string) error
}

// SSFPoller is what the poll endpoint calls (RFC 8936).
type SSFPoller interface {
	Authenticate(ctx context.Context, id, token string) error
	Poll(ctx context.Context, id string, req secevent.PollRequest, wait time.Duration) (secevent.PollResponse, error)
}

// SSF is the Shared Signals transmitter (package ssf) behind the public SSF routes.
type SSF interface {
	SSFReceivers
	SSFPoller
}

// SSFAdmin is the stream management the admin API calls.
type SSFAdmin interface {
	Streams() []ssf.StreamInfo
	Stream(id string) (ssf.StreamInfo, error)
	CreateStream(ctx context.Context, c ssf.StreamConfig) (ssf.StreamInfo, string, error)
	DeleteStream(ctx context.Context, id string) error
}

// maxPollHold bounds how long a poll may be held; the connection's deadlines are extended
// past it (the listener's ReadTimeout and WriteTimeout are shorter than a long poll).
const maxPollHold = 30 * time.Second

// mountSSF adds the transmitter's public endpoints (SSF 1.0, RFC 8936): its configuration
// metadata, the receivers' stream configuration endpoint and the poll endpoint.
func (s *Server) mountSSF(root *gin.Engine, g *gin.RouterGroup) {
	tx := s.ssf
	// SSF 1.0 §6.2: the well-known suffix goes between the host and the issuer's path.
	root.GET(secevent.WellKnownPath+s.prefix, func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=300")
		c.JSON(http.StatusOK, tx.Metadata())
	})
	g.GET("/ssf/streams", s.ssfAuthLimit, func(c *gin.Context) { s.ssfStreamConfiguration(c, tx) })
	g.POST("/ssf/streams", s.ssfAuthLimit, func(c *gin.Context) { s.ssfCreateStream(c, tx) })
	g.DELETE("/ssf/streams", s.ssfAuthLimit, func(c *gin.Context) { s.ssfDeleteStream(c, tx) })
	g.POST("/ssf/poll/:stream_id", s.ssfAuthLimit, func(c *gin.Context) { s.ssfPoll(c, tx) })
}

// ssfAuthLimit applies limits.auth_failures to the SSF endpoints as to the token endpoint:
// credentials are always checked, each failure takes one event from the source's budget, and
// once it is spent the source's failures are answered 429 (ssfAuthFailed). A request from a
// spent source is checked against the streams this process holds, without reading the stored
// streams first (ssf.HeldStreamsOnly): its guesses at unknown stream ids cost no store read. A
// good credential for a stream created at another replica a moment ago may then be answered
// 429 until this replica merges the stored streams (every ssf tail interval), well within its
// Retry-After.
func (s *Server) ssfAuthLimit(c *gin.Context) {
	if s.authFailLimit.spent(c.ClientIP()) {
		c.Request = c.Request.WithContext(ssf.HeldStreamsOnly(c.Request.Context()))
	}
}

// ssfAuthFailed answers a failed stream or receiver credential: 401, or 429 once the source's
// failures have spent limits.auth_failures.
func (s *Server) ssfAuthFailed(c *gin.Context, err error) {
	if !s.authFailureLimited(c, ssfErrors) {
		writeTransmitterError(c, err)
	}
}

// bearer returns the request's bearer token, or "".
func bearer(c *gin.Context) string {
	tok, _ := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	return strings.TrimSpace(tok)
}

// ssfStreamConfiguration serves GET /ssf/streams (SSF 1.0 §8.1.1.2): the stream named by
// stream_id, or every stream of the caller's credential as a list.
func (s *Server) ssfStreamConfiguration(c *gin.Context, tx SSFReceivers) {
	tok := bearer(c)
	if id, named := c.GetQuery("stream_id"); named {
		if err := tx.Authenticate(c.Request.Context(), id, tok); err != nil {
			s.ssfAuthFailed(c, err)
			return
		}
		sc, err := tx.StreamConfiguration(id)
		if err != nil {
			writeError(c, ssfErrors, http.StatusNotFound, secevent.CodeInvalidRequest, "no such stream")
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, sc)
		return
	}
	ids, err := tx.StreamsFor(c.Request.Context(), tok)
	if err != nil {
		s.ssfAuthFailed(c, err)
		return
	}
	list := []secevent.StreamConfiguration{}
	for _, id := range ids {
		if sc, err := tx.StreamConfiguration(id); err == nil {
			list = append(list, sc)
		}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, list)
}

// ssfCreateStream serves POST /ssf/streams (SSF 1.0 §8.1.1.1) for receiver credentials
// (ssf.receivers): a stream for one service process, with the receiver's audience, delivered
// by polling, starting with the events still in the log.
func (s *Server) ssfCreateStream(c *gin.Context, tx SSFReceivers) {
	receiver, err := tx.Receiver(bearer(c))
	if err != nil {
		s.ssfAuthFailed(c, err)
		return
	}
	var req struct {
		Delivery *struct {
			Method string `json:"method"`
		} `json:"delivery"`
		EventsRequested []string `json:"events_requested"`
		Description     string   `json:"description"`
	}
	if !readJSON(c, ssfErrors, false, &req) {
		return
	}
	if req.Delivery != nil && req.Delivery.Method != secevent.DeliveryPoll {
		writeError(c, ssfErrors, http.StatusBadRequest, secevent.CodeInvalidRequest, "only poll delivery ("+secevent.DeliveryPoll+") is offered")
		return
	}
	sc, err := tx.CreateReceiverStream(c.Request.Context(), receiver, req.Description)
	switch {
	case errors.Is(err, ssf.ErrInvalidStream):
		writeError(c, ssfErrors, http.StatusBadRequest, secevent.CodeInvalidRequest, err.Error())
	case errors.Is(err, ssf.ErrTooManyStreams):
		writeError(c, ssfErrors, http.StatusForbidden, secevent.CodeAccessDenied, "this receiver has too many streams; delete unused ones (they also expire without polls)")
	case err != nil:
		writeError(c, ssfErrors, http.StatusServiceUnavailable, ssf.CodeTemporarilyUnavailable, "the stream could not be stored")
	default:
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusCreated, sc)
	}
}

// ssfDeleteStream serves DELETE /ssf/streams?stream_id= (SSF 1.0 §8.1.1.5) for a stream the
// calling receiver created.
func (s *Server) ssfDeleteStream(c *gin.Context, tx SSFReceivers) {
	receiver, err := tx.Receiver(bearer(c))
	if err != nil {
		s.ssfAuthFailed(c, err)
		return
	}
	switch err := tx.DeleteReceiverStream(c.Request.Context(), receiver, c.Query("stream_id")); {
	case errors.Is(err, ssf.ErrNoStream):
		writeError(c, ssfErrors, http.StatusNotFound, secevent.CodeInvalidRequest, "no stream of this receiver has this id")
	case err != nil:
		writeError(c, ssfErrors, http.StatusServiceUnavailable, ssf.CodeTemporarilyUnavailable, "the stream could not be deleted")
	default:
		c.Status(http.StatusNoContent)
	}
}

// ssfPoll serves POST /ssf/poll/{stream_id} (RFC 8936): acknowledgements in, SETs out. A poll
// without returnImmediately is held until an event arrives or the poll timeout passes; a
// receiver may ask for a shorter hold with "Prefer: wait=N" (RFC 7240).
func (s *Server) ssfPoll(c *gin.Context, tx SSFPoller) {
	id := c.Param("stream_id")
	if err := tx.Authenticate(c.Request.Context(), id, bearer(c)); err != nil {
		s.ssfAuthFailed(c, err)
		return
	}
	var req secevent.PollRequest
	if !readJSON(c, ssfErrors, false, &req) {
		return
	}
	wait := maxPollHold
	if w, ok := preferWait(c.GetHeader("Prefer")); ok {
		wait = min(w, maxPollHold)
		c.Header("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
	}
	if !req.ReturnImmediately {
		// The listener's timeouts are shorter than a long poll: extend this connection's.
		rc := http.NewResponseController(c.Writer)
		deadline := time.Now().Add(wait + 10*time.Second)
		_ = rc.SetReadDeadline(deadline)
		_ = rc.SetWriteDeadline(deadline)
	}
	end := s.pollSpan(c, id, &req)
	resp, err := tx.Poll(c.Request.Context(), id, req, wait)
	end(resp)
	if err != nil {
		writeTransmitterError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, resp)
}

// preferWait parses the wait preference of a Prefer header (RFC 7240 §4.3).
func preferWait(h string) (time.Duration, bool) {
	for _, part := range strings.Split(h, ",") {
		for _, p := range strings.Split(part, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "wait") {
				continue
			}
			n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(v), `"`))
			if err != nil || n < 0 {
				return 0, false
			}
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}

// mountSSF adds the stream management calls to the admin API: list, create, show, delete.
func (a *Admin) mountSSF(r gin.IRoutes) {
	tx := a.ssf
	r.GET("/admin/streams", a.authenticate, func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"streams": tx.Streams()})
	})
	r.POST("/admin/streams", a.authenticate, func(c *gin.Context) { a.createStream(c, tx) })
	r.GET("/admin/streams/:stream_id", a.authenticate, func(c *gin.Context) {
		info, err := tx.Stream(c.Param("stream_id"))
		if err != nil {
			writeError(c, adminErrors, http.StatusNotFound, "not_found", "no stream has this id")
			return
		}
		c.JSON(http.StatusOK, gin.H{"stream": info})
	})
	r.DELETE("/admin/streams/:stream_id", a.authenticate, func(c *gin.Context) {
		id := c.Param("stream_id")
		err := tx.DeleteStream(c.Request.Context(), id)
		a.audit(c, "streams.delete", id, err)
		switch {
		case errors.Is(err, ssf.ErrNoStream):
			writeError(c, adminErrors, http.StatusNotFound, "not_found", "no stream has this id")
		case errors.Is(err, ssf.ErrConfigStream):
			writeError(c, adminErrors, http.StatusConflict, "configured", "the stream is defined in the configuration file; remove it there")
		case err != nil:
			writeError(c, adminErrors, http.StatusServiceUnavailable, "unavailable", "the stream could not be deleted")
		default:
			c.Status(http.StatusNoContent)
		}
	})
}

func (a *Admin) createStream(c *gin.Context, tx SSFAdmin) {
	var req struct {
		ID           string `json:"stream_id"`
		Audience     string `json:"aud"`
		Description  string `json:"description"`
		SecretSHA256 string `json:"secret_sha256"`
	}
	if !readJSON(c, adminErrors, true, &req) {
		return
	}
	sc := ssf.StreamConfig{ID: req.ID, Audience: req.Audience, Description: req.Description}
	if req.SecretSHA256 != "" {
		b, err := hex.DecodeString(req.SecretSHA256)
		if err != nil || len(b) != 32 {
			writeError(c, adminErrors, http.StatusBadRequest, "invalid_request", "secret_sha256 must be 64 hex characters (tokengate hash-secret)")
			return
		}
		copy(sc.SecretSHA256[:], b)
	}
	info, secret, err := tx.CreateStream(c.Request.Context(), sc)
	a.audit(c, "streams.create", cmp.Or(info.ID, req.ID), err, "aud", info.Audience)
	switch {
	case errors.Is(err, ssf.ErrStreamExists):
		writeError(c, adminErrors, http.StatusConflict, "exists", "a stream with this id exists")
	case errors.Is(err, ssf.ErrInvalidStream):
		writeError(c, adminErrors, http.StatusBadRequest, "invalid_request", truncate(err.Error(), 200))
	case err != nil:
		writeError(c, adminErrors, http.StatusServiceUnavailable, "unavailable", "the stream could not be stored")
	default:
		body := gin.H{"stream": info}
		if secret != "" {
			body["secret"] = secret // shown once; only its SHA-256 is kept
		}
		c.JSON(http.StatusCreated, body)
	}
}
