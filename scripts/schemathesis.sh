#!/usr/bin/env bash
# Attack the admin API of a real `tokengate serve` from its own OpenAPI document.
#
# Usage: scripts/schemathesis.sh
#
# Builds the binary (or takes $TOKENGATE_BIN), starts it on loopback ports chosen by the kernel
# with a throw-away data directory and a random admin token (upstream.issuer points at a closed
# port: the admin API never calls Keycloak), fetches the document from GET /admin/openapi.yaml
# on the admin listener and runs schemathesis (pinned, from the virtualenv scripts/tools.sh keeps outside
# the clone) against every documented operation with the checks:
#
#   not_a_server_error           no 5xx (a 503 documented for a failed store is still a failure
#                                here: the store is healthy)
#   status_code_conformance      every status is documented for its operation
#   response_schema_conformance  every body matches the documented schema
#   content_type_conformance     every Content-Type is the documented one
#   ignored_auth                 an operation that needs the bearer token refuses a request
#                                without it or with a wrong one
#
# Bounded: ST_MAX_EXAMPLES cases per operation (default 25) and ST_MAX_TIME seconds in all
# (default 45). Exit status is schemathesis's; the server's log is printed on failure.
#
# Environment: ST_MAX_EXAMPLES, ST_MAX_TIME, ST_SEED (default 1, for reproducible runs; "random"
# for a fresh seed), TOKENGATE_BIN (a built tokengate; default: build one), GO (go), XDG_CACHE_HOME.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GO="${GO:-go}"
ST_MAX_EXAMPLES="${ST_MAX_EXAMPLES:-25}"
ST_MAX_TIME="${ST_MAX_TIME:-45}"
ST_SEED="${ST_SEED:-1}"

st="$("$REPO_ROOT/scripts/tools.sh" schemathesis)"
work="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-schemathesis.XXXXXX")"
pid=""
cleanup() {
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

bin="${TOKENGATE_BIN:-}"
if [[ -z $bin ]]; then
	bin="$work/tokengate"
	(cd "$REPO_ROOT" && "$GO" build -o "$bin" ./cmd/tokengate)
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
admin_token="$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
client_secret="$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
cat >"$work/tokengate.yaml" <<EOF
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
issuer: http://127.0.0.1/schemathesis
data_dir: $work/data
log_level: info
upstream:
  issuer: http://127.0.0.1:9/realms/none
  client_id: tokengate
  client_secret: not-used-by-the-admin-api
  logout_audiences: [bff]
keys:
  jwks_max_age: 1m
  rotate_every: 1h
admin:
  tokens:
    - name: schemathesis
      sha256: $(sha256 "$admin_token")
clients:
  - id: bff
    secret_sha256: $(sha256 "$client_secret")
    audiences: [orders]
EOF

"$bin" serve --config "$work/tokengate.yaml" 2>"$work/server.log" &
pid=$!
admin=""
for _ in $(seq 1 100); do
	admin="$(grep -o '"admin_listen":"[^"]*"' "$work/server.log" 2>/dev/null | head -1 | cut -d'"' -f4 || true)"
	[[ -n $admin ]] && curl -fsS "http://$admin/healthz" >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "schemathesis.sh: tokengate did not start" >&2; exit 1; }
	admin=""
	sleep 0.1
done
[[ -n $admin ]] || { cat "$work/server.log" >&2; echo "schemathesis.sh: no admin listener" >&2; exit 1; }
echo "schemathesis.sh: tokengate admin API on http://$admin" >&2

seed=(--seed "$ST_SEED")
[[ $ST_SEED == random ]] && seed=()
status=0
(cd "$work" && "$st" run "http://$admin/admin/openapi.yaml" \
	--url "http://$admin" \
	--header "Authorization: Bearer $admin_token" \
	--checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance,ignored_auth \
	--max-examples "$ST_MAX_EXAMPLES" \
	--max-time "$ST_MAX_TIME" \
	--phases examples,coverage,fuzzing \
	--workers 2 \
	"${seed[@]}" \
	--request-timeout 10 \
	--output-sanitize true) || status=$?
echo "schemathesis.sh: the server logged $(grep -c '"event":"admin"' "$work/server.log" || true) admin actions," \
	"$(grep -c '"admin_auth_failed"' "$work/server.log" || true) refused admin tokens" >&2
if [[ $status -ne 0 ]]; then
	echo "schemathesis.sh: failed ($status); server log follows" >&2
	tail -n 50 "$work/server.log" >&2
fi
exit "$status"
