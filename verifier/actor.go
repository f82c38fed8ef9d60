package verifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrActorRefused: the token is valid but its actor chain is not accepted here
// (Config.ActorPolicy).
var ErrActorRefused = errors.New("verifier: actor refused")

// MaxActors is the longest actor chain a token may carry; a longer one is invalid (tokengate
// issues at most 10).
const MaxActors = 10

// Actors returns the token's actor chain (RFC 8693 §4.1 act), outermost — the service that
// obtained this token by delegation — first: ["payments", "orders"] for a token orders
// delegated to payments, which delegated it on. It is empty for a token a BFF exchanged.
func (t *Token) Actors() []string { return slices.Clone(t.actors) }

// Actor returns the current actor (the outermost), or "" for a token without act.
func (t *Token) Actor() string {
	if len(t.actors) == 0 {
		return ""
	}
	return t.actors[0]
}

// RequireActor returns an ActorPolicy that accepts only tokens whose current actor is one of
// names: a service that must be called by orders on the user's behalf, and only by it, sets
// Config.ActorPolicy to RequireActor("orders"). A token without act is refused.
func RequireActor(names ...string) func(actors []string) error {
	return func(actors []string) error {
		if len(actors) == 0 {
			return fmt.Errorf("no actor: want one of %s", strings.Join(names, ", "))
		}
		if !slices.Contains(names, actors[0]) {
			return fmt.Errorf("actor %q is not one of %s", actors[0], strings.Join(names, ", "))
		}
		return nil
	}
}

// parseActors reads an act claim link by link (never deeper than MaxActors), outermost first.
func parseActors(act json.RawMessage) ([]string, error) {
	var chain []string
	for len(act) > 0 && !bytes.Equal(bytes.TrimSpace(act), []byte("null")) {
		if len(chain) == MaxActors {
			return nil, fmt.Errorf("act chain longer than %d", MaxActors)
		}
		var a struct {
			Sub string          `json:"sub"`
			Act json.RawMessage `json:"act"`
		}
		if err := json.Unmarshal(act, &a); err != nil {
			return nil, fmt.Errorf("act: %w", err)
		}
		if a.Sub == "" {
			return nil, errors.New("act without sub")
		}
		chain = append(chain, a.Sub)
		act = a.Act
	}
	return chain, nil
}

// checkActors applies the configured policy to tok.
func (v *Verifier) checkActors(tok *Token) error {
	if v.cfg.ActorPolicy == nil {
		return nil
	}
	if err := v.cfg.ActorPolicy(tok.Actors()); err != nil {
		return fmt.Errorf("%w: %v", ErrActorRefused, err)
	}
	return nil
}
