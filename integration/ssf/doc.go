// Package ssf holds the multi-process test of logout enforcement at services: a real
// `tokengate serve` process (with the in-process fake Keycloak, internal/kctest) and 100
// services, each a verifier.Verifier following its own Shared Signals stream, under a steady
// renewal load. It measures the revocation window from the 200 of /backchannel-logout to each
// service's first refusal, and checks that no event is missed across a kill -9 and restart of
// tokengate and a service's network cut. It runs when TOKENGATE_INTEGRATION=1 (make test).
package ssf
