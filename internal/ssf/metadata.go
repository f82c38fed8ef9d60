package ssf

import (
	"time"

	"github.com/tokengate/tokengate/verifier/secevent"
)

// Metadata returns the transmitter's configuration metadata. Streams are created by the
// operator (admin API or configuration), or by a receiver holding a receiver credential
// through the configuration endpoint, which also lets a receiver read and delete its streams.
// Receivers authenticate with a bearer secret (RFC 6750).
func (t *Transmitter) Metadata() secevent.Metadata {
	return secevent.Metadata{
		SpecVersion: secevent.SpecVersion, Issuer: t.cfg.Issuer, JWKSURI: t.cfg.Issuer + "/jwks.json",
		DeliveryMethodsSupported: []string{secevent.DeliveryPoll},
		ConfigurationEndpoint:    t.cfg.Issuer + "/ssf/streams",
		CriticalSubjectMembers:   []string{"session", "user"},
		AuthorizationSchemes:     []secevent.AuthorizationScheme{{SpecURN: "urn:ietf:rfc:6750"}},
		DefaultSubjects:          "ALL",
	}
}

// StreamConfiguration returns stream id's configuration, or ErrNoStream.
func (t *Transmitter) StreamConfiguration(id string) (secevent.StreamConfiguration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return secevent.StreamConfiguration{}, ErrNoStream
	}
	events := []string{secevent.EventSessionRevoked, secevent.EventSigningKeyRevoked}
	sc := secevent.StreamConfiguration{StreamID: id, Issuer: t.cfg.Issuer, Audience: secevent.Audience{s.def.Audience},
		EventsSupported: events, EventsDelivered: events,
		Delivery: secevent.Delivery{Method: secevent.DeliveryPoll, EndpointURL: t.PollURL(id)}, Description: s.def.Description}
	if s.def.Source == SourceReceiver {
		sc.InactivityTimeout = int(t.cfg.InactivityTimeout / time.Second)
	}
	return sc, nil
}
