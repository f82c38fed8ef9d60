#!/usr/bin/env bash
# Make sure Debian's nginx is installed, for the forward-auth scenario (integration/forwardauth):
# the tests run their own nginx as the current user, with a configuration, pid file and logs
# in a temporary directory (-p prefix), on free loopback ports, in the foreground.
#
# Usage: scripts/nginx.sh [ensure|path]
#
#   ensure  (default) install Debian's nginx with apt-get when /usr/sbin/nginx is missing; a
#           no-op when it is there. Needs root (or sudo). The package's own nginx.service is
#           stopped again: the tests never use it.
#   path    print the nginx binary the tests will use, or fail.
#
# Environment:
#   TOKENGATE_NGINX_BIN   use this nginx instead (nothing is installed)
set -euo pipefail

log() { printf 'nginx.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

nginx_bin() {
	if [[ -n "${TOKENGATE_NGINX_BIN:-}" ]]; then
		[[ -x "$TOKENGATE_NGINX_BIN" ]] || die "TOKENGATE_NGINX_BIN=$TOKENGATE_NGINX_BIN is not executable"
		printf '%s\n' "$TOKENGATE_NGINX_BIN"
		return 0
	fi
	if [[ -x /usr/sbin/nginx ]]; then
		printf '%s\n' /usr/sbin/nginx
		return 0
	fi
	return 1
}

as_root() {
	if [[ "$(id -u)" == 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "need root to run: $*"
	fi
}

cmd_ensure() {
	if bin="$(nginx_bin)"; then
		log "using $bin ($("$bin" -v 2>&1 | head -n1))"
		return 0
	fi
	command -v apt-get >/dev/null || die "no /usr/sbin/nginx and no apt-get: install nginx (Debian) or set TOKENGATE_NGINX_BIN"
	log "installing nginx with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	# dpkg may be busy (another install, unattended upgrades): wait for its lock.
	as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
	# The package starts nginx on port 80 when it can; the tests start their own on free ports.
	as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends nginx >/dev/null
	if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
		as_root systemctl stop nginx || true
	fi
	bin="$(nginx_bin)" || die "apt-get installed nginx but /usr/sbin/nginx is missing"
	log "installed $bin ($("$bin" -v 2>&1 | head -n1))"
}

case "${1:-ensure}" in
ensure) cmd_ensure ;;
path) nginx_bin || die "no nginx: run scripts/nginx.sh ensure" ;;
*) die "usage: scripts/nginx.sh [ensure|path]" ;;
esac
