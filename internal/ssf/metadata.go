package ssf

import "time"

// AuthorizationScheme names how receivers authenticate (SSF 1.0 §6.1.1).
type AuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// Metadata is the Transmitter Configuration Metadata (SSF 1.0 §6.1), served at
// /.well-known/ssf-configuration.
type Metadata struct {
	SpecVersion              string                `json:"spec_version"`
	Issuer                   string                `json:"issuer"`
	JWKSURI                  string                `json:"jwks_uri"`
	DeliveryMethodsSupported []string              `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string                `json:"configuration_endpoint"`
	CriticalSubjectMembers   []string              `json:"critical_subject_members"`
	AuthorizationSchemes     []AuthorizationScheme `json:"authorization_schemes"`
	DefaultSubjects          string                `json:"default_subjects"`
}

// Metadata returns the transmitter's configuration metadata. Streams are created by the
// operator (admin API or configuration), or by a receiver holding a receiver credential
// through the configuration endpoint, which also lets a receiver read and delete its streams.
// Receivers authenticate with a bearer secret (RFC 6750).
func (t *Transmitter) Metadata() Metadata {
	return Metadata{
		SpecVersion: SpecVersion, Issuer: t.cfg.Issuer, JWKSURI: t.cfg.Issuer + "/jwks.json",
		DeliveryMethodsSupported: []string{DeliveryPoll},
		ConfigurationEndpoint:    t.cfg.Issuer + "/ssf/streams",
		CriticalSubjectMembers:   []string{"session", "user"},
		AuthorizationSchemes:     []AuthorizationScheme{{SpecURN: "urn:ietf:rfc:6750"}},
		DefaultSubjects:          "ALL",
	}
}

// StreamConfiguration is a stream as its receiver reads it (SSF 1.0 §8.1.1).
type StreamConfiguration struct {
	StreamID        string   `json:"stream_id"`
	Issuer          string   `json:"iss"`
	Audience        string   `json:"aud"`
	EventsSupported []string `json:"events_supported"`
	EventsDelivered []string `json:"events_delivered"`
	Delivery        Delivery `json:"delivery"`
	Description     string   `json:"description,omitempty"`
	// InactivityTimeout (seconds) is set on receiver-created streams: deleted after that long
	// without a poll.
	InactivityTimeout int `json:"inactivity_timeout,omitempty"`
}

// StreamConfiguration returns stream id's configuration, or ErrNoStream.
func (t *Transmitter) StreamConfiguration(id string) (StreamConfiguration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return StreamConfiguration{}, ErrNoStream
	}
	events := []string{EventSessionRevoked, EventSigningKeyRevoked}
	sc := StreamConfiguration{StreamID: id, Issuer: t.cfg.Issuer, Audience: s.def.Audience,
		EventsSupported: events, EventsDelivered: events,
		Delivery: Delivery{Method: DeliveryPoll, EndpointURL: t.PollURL(id)}, Description: s.def.Description}
	if s.def.Source == SourceReceiver {
		sc.InactivityTimeout = int(t.cfg.InactivityTimeout / time.Second)
	}
	return sc, nil
}
