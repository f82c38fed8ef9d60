#!/usr/bin/env bash
# make demo: Keycloak + tokengate + demo-bff + demo-service, the logout story played headless
# in Chromium, then everything keeps running for a person until Ctrl-C.
#
# Usage: scripts/demo.sh [cmd/demo flags]   (e.g. --no-wait, --ttl 10s, --keycloak-port 18080)
#
# On a fresh machine it first fetches and caches, outside the clone, what the demo needs:
# Keycloak (scripts/keycloak.sh fetch: Maven, unpacked under ${XDG_CACHE_HOME:-~/.cache}/tokengate),
# a Java >= 21 check, and Chromium (scripts/chromium.sh ensure: Debian's package). The Go
# driver (cmd/demo) starts and stops every process; this script's trap stops Keycloak again in
# case the driver itself was killed, so nothing is left behind.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf 'demo.sh: %s\n' "$*" >&2; }

command -v go >/dev/null || { log "error: go is missing"; exit 1; }
scripts/keycloak.sh fetch >/dev/null
scripts/keycloak.sh java >/dev/null
scripts/chromium.sh ensure >/dev/null

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-demo-XXXXXX")"
KC_PORT=18080
for ((i = 1; i <= $#; i++)); do
	case "${!i}" in
	-keycloak-port=* | --keycloak-port=*) KC_PORT="${!i#*=}" ;;
	-keycloak-port | --keycloak-port) j=$((i + 1)); KC_PORT="${!j}" ;;
	esac
done
cleanup() {
	trap - INT TERM EXIT
	KC_PORT="$KC_PORT" KC_RUN_DIR="$WORK/keycloak" scripts/keycloak.sh stop >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$WORK/demo" ./cmd/demo
# Foreground: Ctrl-C reaches the driver from the terminal; it stops its processes and Keycloak,
# then this script's trap runs (a no-op unless the driver died without cleaning up).
"$WORK/demo" -work "$WORK" "$@"
