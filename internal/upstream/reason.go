package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/tokengate/tokengate/internal/upstream/jwks"
)

// Reasons an access token is refused (Refusal.Reason). They are stable: they appear in the
// exchange_refused log line and operators alert on them.
const (
	// ReasonNotJWT: not a compact signed JWT (three base64url parts, JSON header and claims).
	ReasonNotJWT = "not_jwt"
	// ReasonTokenType: another kind of token: an ID, refresh or logout token (typ claim or
	// JOSE typ header).
	ReasonTokenType = "typ"
	// ReasonIssuer: issued by another issuer (another realm, another Keycloak).
	ReasonIssuer = "issuer"
	// ReasonAlgorithm: signed with an algorithm tokengate does not accept from the provider.
	ReasonAlgorithm = "algorithm"
	// ReasonExpired: its exp has passed.
	ReasonExpired = "expired"
	// ReasonUnknownKey: its kid is not in the provider's JWKS (after the fetch the refetch
	// rule allows, or with the JWKS fetched too recently to fetch it again).
	ReasonUnknownKey = "unknown_kid"
	// ReasonBadSignature: the key its kid names does not verify its signature.
	ReasonBadSignature = "bad_signature"
	// ReasonInvalid: any other defect (claims go-oidc cannot read, nbf in the future).
	ReasonInvalid = "invalid"
)

// Refusal is why a token presented to tokengate is not an access token of the provider. It
// wraps ErrInvalidToken. Detail completes a sentence whose subject is the token ("is an ID
// token…") and holds only what the token itself says (bounded and quoted) and public facts
// (the expected issuer, tokengate's clock): safe to show the caller who sent the token. Attrs
// are slog key/value pairs for the log line; never the token.
type Refusal struct {
	Reason string
	Detail string
	Attrs  []any
	Err    error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return fmt.Sprintf("%v: %s: %s: %v", ErrInvalidToken, r.Reason, r.Detail, r.Err)
	}
	return fmt.Sprintf("%v: %s: %s", ErrInvalidToken, r.Reason, r.Detail)
}

// Unwrap returns ErrInvalidToken and the cause.
func (r *Refusal) Unwrap() []error { return []error{ErrInvalidToken, r.Err} }

func refuse(reason, detail string, cause error, attrs ...any) *Refusal {
	return &Refusal{Reason: reason, Detail: detail, Attrs: attrs, Err: cause}
}

// maxEcho bounds a value of the token echoed in a Refusal.
const maxEcho = 100

// echo quotes s, a value the token holds, cut to maxEcho bytes: control characters escaped.
func echo(s string) string { return strconv.Quote(bounded(s)) }

func bounded(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return strings.ToValidUTF8(s[:maxEcho], "") + "…"
}

// unverified is what a token says about itself before its signature is checked. It only ever
// adds refusals: the token is accepted by go-oidc's verifier alone.
type unverified struct {
	alg, kid, headerTyp string
	iss, typ            string
	exp                 *float64
}

// peek reads the header and claims of a compact JWS without verifying it.
func peek(raw string) (unverified, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return unverified{}, fmt.Errorf("%d dot-separated parts, want 3", len(parts))
	}
	var u unverified
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}
	if err := decodePart(parts[0], &h); err != nil {
		return unverified{}, fmt.Errorf("header: %w", err)
	}
	if h.Alg == "" {
		return unverified{}, errors.New("header has no alg")
	}
	u.alg, u.kid, u.headerTyp = h.Alg, h.Kid, h.Typ
	var c map[string]json.RawMessage
	if err := decodePart(parts[1], &c); err != nil {
		return unverified{}, fmt.Errorf("claims: %w", err)
	}
	// Claims of the wrong JSON type are left for go-oidc's verifier to refuse.
	_ = json.Unmarshal(c["iss"], &u.iss)
	_ = json.Unmarshal(c["typ"], &u.typ)
	var exp float64
	if json.Unmarshal(c["exp"], &exp) == nil {
		u.exp = &exp
	}
	return u, nil
}

func decodePart(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// accessHeaderTypes are the JOSE typ values of an access token: none, Keycloak's JWT, RFC 9068's.
var accessHeaderTypes = []string{"", "jwt", "at+jwt", "application/at+jwt"}

// kindOf names the kind of token a Keycloak typ claim stands for.
func kindOf(typ string) string {
	switch strings.ToLower(typ) {
	case "id":
		return "an ID token"
	case "refresh", "offline":
		return "a refresh token"
	case "logout":
		return "a logout token"
	}
	return "not an access token"
}

// precheck refuses, before any key is fetched, a token that is no JWT, another kind of token,
// another issuer's, of an algorithm not accepted, or expired by now.
func precheck(raw, issuer string, algs []string, now time.Time) *Refusal {
	u, err := peek(raw)
	if err != nil {
		return refuse(ReasonNotJWT, "is not a JWT (the upstream provider's access tokens are signed JWTs)", err)
	}
	ht := strings.ToLower(u.headerTyp)
	if !slices.Contains(accessHeaderTypes, ht) {
		kind := "not an access token"
		if strings.HasSuffix(ht, "logout+jwt") {
			kind = "a logout token"
		}
		return refuse(ReasonTokenType, "is "+kind+" (JOSE typ "+echo(u.headerTyp)+"), not an access token: send the access token",
			nil, "jose_typ", bounded(u.headerTyp), "typ", bounded(u.typ))
	}
	if u.typ != "" && !strings.EqualFold(u.typ, "Bearer") {
		kind := kindOf(u.typ)
		detail := "is " + kind + " (typ " + echo(u.typ) + "), not an access token (typ \"Bearer\"): send the access token"
		if kind == "not an access token" {
			detail = "is not an access token: its typ is " + echo(u.typ) + ", not \"Bearer\""
		}
		return refuse(ReasonTokenType, detail, nil, "typ", bounded(u.typ))
	}
	if u.iss != issuer {
		return refuse(ReasonIssuer, "was issued by "+echo(u.iss)+", not by the upstream provider "+strconv.Quote(issuer)+
			" (a token of another realm or server)", nil, "iss", bounded(u.iss), "expected_iss", issuer)
	}
	if !slices.Contains(algs, u.alg) {
		return refuse(ReasonAlgorithm, "is signed with "+echo(u.alg)+", not one of the upstream provider's algorithms "+
			strings.Join(algs, ", "), nil, "alg", bounded(u.alg))
	}
	if u.exp != nil {
		exp := time.Unix(int64(*u.exp), 0)
		if exp.Before(now) {
			return expired(exp, now, nil)
		}
	}
	return nil
}

// expired is the refusal of a token whose exp has passed. Access tokens get no clock skew (the
// provider's introspection allows none either): the detail names tokengate's clock, so a
// clock difference shows.
func expired(exp, now time.Time, cause error) *Refusal {
	if exp.IsZero() {
		return refuse(ReasonExpired, "has no exp", cause)
	}
	return refuse(ReasonExpired, "expired at "+exp.UTC().Format(time.RFC3339)+", "+
		now.Sub(exp).Truncate(time.Second).String()+" ago (tokengate's clock: "+now.UTC().Format(time.RFC3339)+
		"; allowed clock skew for access tokens: 0s)", cause, "exp", exp.UTC().Format(time.RFC3339), "skew", "0s")
}

// keyErrKey is the context key of the slot a keySet writes its last error into.
type keyErrKey struct{}

// keyErr is that slot: the typed error of the JWKS check (go-oidc keeps only its text).
type keyErr struct{ err error }

// recordingKeys is the provider's key set, writing the typed error of each check into the
// request's keyErr slot so that a refusal can name the kid.
type recordingKeys struct{ *jwks.KeySet }

func (k recordingKeys) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	p, err := k.KeySet.VerifySignature(ctx, jwt)
	if s, ok := ctx.Value(keyErrKey{}).(*keyErr); ok {
		s.err = err
	}
	return p, err
}

// classifyAccess turns an error of the access token verifier into ErrUnavailable or a Refusal.
func classifyAccess(err, keys error, raw string, interval time.Duration, now time.Time) error {
	u, _ := peek(raw)
	kid := echo(u.kid)
	switch {
	case errors.Is(keys, jwks.ErrFetch):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case u.kid == "" && (errors.Is(keys, jwks.ErrUnknownKey) || errors.Is(keys, jwks.ErrDeferred)):
		return refuse(ReasonBadSignature, "has no kid, and no key of the upstream provider's JWKS verifies it", err)
	case errors.Is(keys, jwks.ErrBadSignature):
		return refuse(ReasonBadSignature, "has a signature that the upstream provider's key "+kid+" does not verify",
			err, "kid", bounded(u.kid))
	case errors.Is(keys, jwks.ErrUnknownKey):
		return refuse(ReasonUnknownKey, "is signed with key "+kid+", which is not in the upstream provider's JWKS (fetched just now)",
			err, "kid", bounded(u.kid), "jwks_fetched", true)
	case errors.Is(keys, jwks.ErrDeferred):
		return refuse(ReasonUnknownKey, "is signed with key "+kid+", which is not in the upstream provider's JWKS as fetched less than "+
			interval.String()+" ago (it is fetched again at most that often)", err, "kid", bounded(u.kid), "jwks_fetched", false)
	}
	var te *oidc.TokenExpiredError
	if errors.As(err, &te) {
		return expired(te.Expiry, now, err)
	}
	return refuse(ReasonInvalid, "is not a valid access token of the upstream provider", err)
}
