package ssf

import (
	"errors"

	"github.com/tokengate/tokengate/verifier/secevent"
)

// CodeTemporarilyUnavailable is tokengate's code for a transmitter that cannot answer now
// (the event log cannot be read); the client retries. The codes of the registry (RFC 8935
// §2.3) are secevent's.
const CodeTemporarilyUnavailable = "temporarily_unavailable"

// Error is a delivery error in the shape of RFC 8935 §2.3: {"err": …, "description": …}. The
// HTTP status of each code is the server's business (package server).
type Error struct {
	Code        string `json:"err"`
	Description string `json:"description"`
}

func (e *Error) Error() string { return "ssf: " + e.Code + ": " + e.Description }

func invalidRequest(desc string) error {
	return &Error{Code: secevent.CodeInvalidRequest, Description: desc}
}

// errAuthentication is returned for a wrong credential and for an unknown stream alike, so
// stream ids cannot be probed.
var errAuthentication = &Error{Code: secevent.CodeAuthenticationFailed,
	Description: "a valid bearer credential for this stream is required"}

// Errors of the stream management calls (admin API).
var (
	// ErrNoStream: no stream has that id.
	ErrNoStream = errors.New("ssf: no such stream")
	// ErrStreamExists: a stream with that id exists.
	ErrStreamExists = errors.New("ssf: a stream with this id exists")
	// ErrConfigStream: the stream is defined in the configuration file and changes there.
	ErrConfigStream = errors.New("ssf: the stream is defined in the configuration file")
	// ErrInvalidStream: the stream definition is not valid.
	ErrInvalidStream = errors.New("ssf: invalid stream")
	// ErrTooManyStreams: the receiver has MaxReceiverStreams streams already.
	ErrTooManyStreams = errors.New("ssf: the receiver has too many streams")
)
