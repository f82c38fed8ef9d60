"""Verify tokengate's internal access tokens in Python with PyJWT alone (no tokengate code).

Copy make_verifier() into your service. It reads tokengate's discovery document once, fetches
the JWKS through PyJWKClient (cached; refetched when a token names an unknown kid, i.e. after
a key rotation) and checks what RFC 9068 asks: the pinned algorithm, JOSE typ at+jwt, iss, aud
(your service), exp, iat, sub. A token is then refused at its exp; to refuse a logged-out
session's tokens within about a second, put tokengate-auth in front of the service instead
(docs/verify-any-language.md).

Requirements (tested): requirements.txt next to this file (PyJWT[crypto]).

As a program it prints "ready: ..." to standard error once it has the discovery document,
then reads tokens from standard input, one a line, and prints one line each,
"ok sub=... sid=..." (with " act=payments,orders" for a delegated token) or "refused: <reason>"; it exits 0 when every token was accepted, else 1:

    python verify.py https://tokengate.internal orders < tokens.txt
"""

import json
import sys
import urllib.request

import jwt

# tokengate signs with ES256 unless its keys.algorithm says otherwise (EdDSA, RS256): pin
# what your tokengate uses, never take the algorithm from the token.
ALGORITHMS = ["ES256"]


def make_verifier(issuer, audience):
    """Return verify(token) -> claims, which raises jwt.InvalidTokenError on any refusal."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=5) as resp:
        discovery = json.load(resp)
    if discovery.get("issuer") != issuer:
        raise ValueError("discovery names issuer %r, want %r" % (discovery.get("issuer"), issuer))
    keys = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=True, lifespan=300, timeout=5)

    def verify(token):
        typ = str(jwt.get_unverified_header(token).get("typ", "")).lower()
        if typ not in ("at+jwt", "application/at+jwt"):
            raise jwt.InvalidTokenError("JOSE typ %r is not at+jwt" % typ)
        key = keys.get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )

    return verify


def actors(claims):
    """Return the actor chain of a delegated token (RFC 8693 act, docs/delegation.md), outermost
    first: ["payments", "orders"] for a token orders delegated to payments, which delegated it
    on; [] for a token a BFF exchanged. Check actors(claims)[:1] == ["orders"] when a service
    must be called by orders on the user's behalf."""
    chain, act = [], claims.get("act")
    while act is not None:
        if len(chain) == 10 or not isinstance(act, dict) or not isinstance(act.get("sub"), str):
            raise jwt.InvalidTokenError("malformed or too long act chain")
        chain.append(act["sub"])
        act = act.get("act")
    return chain


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: verify.py ISSUER AUDIENCE < tokens (one a line)")
    verify = make_verifier(sys.argv[1], sys.argv[2])
    print("ready: verifying tokens for %s from %s" % (sys.argv[2], sys.argv[1]), file=sys.stderr, flush=True)
    all_ok = True
    for line in sys.stdin:
        token = line.strip()
        if not token:
            continue
        try:
            claims = verify(token)
            chain = actors(claims)
            print("ok sub=%s sid=%s%s" % (claims["sub"], claims.get("sid", ""), " act=" + ",".join(chain) if chain else ""))
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as e:
            all_ok = False
            print("refused: %s: %s" % (type(e).__name__, e))
        sys.stdout.flush()
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
