#!/usr/bin/env bash
# Make sure an etcd server and etcdctl are installed, for tokengate's store/etcd tests and the
# multi-replica integration tests (integration/replicas), which start their own members.
#
# Usage: scripts/etcd.sh [ensure|path]
#
#   ensure  (default) install Debian's etcd-server and etcd-client with apt-get when
#           /usr/bin/etcd is missing; a no-op when it is there. Needs root (or sudo).
#   path    print the etcd server binary the tests will use, or fail.
#
# Environment:
#   TOKENGATE_ETCD_BIN   use this etcd server instead (nothing is installed)
set -euo pipefail

log() { printf 'etcd.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

etcd_bin() {
	if [[ -n "${TOKENGATE_ETCD_BIN:-}" ]]; then
		[[ -x "$TOKENGATE_ETCD_BIN" ]] || die "TOKENGATE_ETCD_BIN=$TOKENGATE_ETCD_BIN is not executable"
		printf '%s\n' "$TOKENGATE_ETCD_BIN"
		return 0
	fi
	if [[ -x /usr/bin/etcd ]]; then
		printf '%s\n' /usr/bin/etcd
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
	if bin="$(etcd_bin)"; then
		log "using $bin ($("$bin" --version 2>/dev/null | head -n1))"
		return 0
	fi
	command -v apt-get >/dev/null || die "no /usr/bin/etcd and no apt-get: install etcd-server and etcd-client (Debian) or set TOKENGATE_ETCD_BIN"
	log "installing etcd-server and etcd-client with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get update -qq
	# The package enables an etcd service; the tests start their own members on free ports,
	# so a running system etcd on 2379 is harmless, but do not leave it started when we can.
	as_root apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null
	if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
		as_root systemctl stop etcd || true
	fi
	bin="$(etcd_bin)" || die "apt-get installed etcd-server but /usr/bin/etcd is missing"
	log "installed $bin ($("$bin" --version 2>/dev/null | head -n1))"
}

case "${1:-ensure}" in
ensure) cmd_ensure ;;
path) etcd_bin || die "no etcd server: run scripts/etcd.sh ensure" ;;
*) die "usage: scripts/etcd.sh [ensure|path]" ;;
esac
