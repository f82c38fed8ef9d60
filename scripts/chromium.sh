#!/usr/bin/env bash
# Locate (and if needed install) a headless-capable Chromium for browser tests.
#
# Usage: scripts/chromium.sh ensure
#   Prints the absolute path of a chromium binary. $CHROMIUM, when set, wins.
#   Otherwise looks on PATH (chromium, chromium-browser, google-chrome) and,
#   when none is found, installs Debian's "chromium" package with apt-get
#   (running apt-get update once first). Needs root for the install.
set -euo pipefail

log() { printf 'chromium.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

find_chromium() {
	local name path
	for name in chromium chromium-browser google-chrome google-chrome-stable; do
		if path="$(command -v "$name")"; then
			printf '%s\n' "$path"
			return 0
		fi
	done
	return 1
}

install_chromium() {
	command -v apt-get >/dev/null || die "no chromium on PATH and no apt-get to install it; set CHROMIUM=/path/to/chromium"
	local sudo=()
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null || die "no chromium on PATH; installing Debian's chromium needs root (or sudo)"
		sudo=(sudo -n)
	fi
	log "chromium not found; installing Debian package 'chromium' with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	# apt-get update once: only when the package lists have never been fetched
	# or the package is unknown to them.
	if ! apt-cache show chromium >/dev/null 2>&1; then
		"${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
	fi
	"${sudo[@]}" apt-get install -y -q --no-install-recommends chromium >&2 ||
		die "apt-get install chromium failed"
}

cmd_ensure() {
	local path
	if [[ -n "${CHROMIUM:-}" ]]; then
		[[ -x "$CHROMIUM" ]] || die "CHROMIUM=$CHROMIUM is not an executable"
		printf '%s\n' "$CHROMIUM"
		return 0
	fi
	if path="$(find_chromium)"; then
		printf '%s\n' "$path"
		return 0
	fi
	install_chromium
	path="$(find_chromium)" || die "apt-get installed chromium but no chromium binary is on PATH"
	"$path" --version >&2 || die "$path --version failed"
	printf '%s\n' "$path"
}

case "${1:-}" in
ensure) cmd_ensure ;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
	;;
esac
