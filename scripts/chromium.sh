#!/usr/bin/env bash
# Make sure a headless-capable Chromium is installed, for the browser tests (the integration
# suites log users in through Keycloak's real pages) and `make demo`.
#
# Usage: scripts/chromium.sh [ensure|path]
#
#   ensure  (default) install Debian's chromium with apt-get when no Chromium is found; a no-op
#           when one is there. Needs root (or sudo). `make test` and `make demo` run it before
#           anything else starts; tests only ask `path`.
#   path    print the Chromium binary the tests will use, or fail: $CHROMIUM when set, else the
#           first of chromium, chromium-browser, google-chrome, google-chrome-stable on PATH.
#
# Environment:
#   CHROMIUM   use this browser instead (nothing is installed)
set -euo pipefail

bin_env=CHROMIUM
bin_default=/usr/bin/chromium
version_arg=--version
service=
packages=(chromium)

tool_bin() {
	local name path
	if [[ -n "${CHROMIUM:-}" ]]; then
		[[ -x "$CHROMIUM" ]] || die "CHROMIUM=$CHROMIUM is not executable"
		printf '%s\n' "$CHROMIUM"
		return 0
	fi
	for name in chromium chromium-browser google-chrome google-chrome-stable; do
		if path="$(command -v "$name")"; then
			printf '%s\n' "$path"
			return 0
		fi
	done
	return 1
}
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

case "${1:-ensure}" in
ensure) cmd_ensure ;;
path) tool_bin || die "no Chromium: run scripts/chromium.sh ensure (make test and make demo do)" ;;
*) die "usage: scripts/chromium.sh [ensure|path]" ;;
esac
