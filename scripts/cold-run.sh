#!/usr/bin/env bash
# Prove that `make test` is green the first time on a machine that never ran the project:
# remove the system packages the tests install, start from empty caches, clone the repository
# afresh and run .ci/run (which runs make test), timing it.
#
# Usage: scripts/cold-run.sh [--wipe] [REV]
#
#   REV      what to clone and test (default HEAD of this checkout; committed work only)
#   --wipe   delete this machine's own caches (Go's module and build caches, Maven's local
#            repository, ~/.cache/tokengate, pip's cache) instead of pointing every cache at a
#            new empty folder. Without it the run is just as cold but leaves them alone, so other
#            work on the machine keeps its caches.
#
# Always removed first, with apt-get purge: chromium, etcd-server, etcd-client, nginx (and their
# -common packages), caddy. Needs root. The last line printed is the result: wall time and exit status;
# the whole log is kept in $COLD_LOG (default: a file under /tmp named in the output).
set -uo pipefail

wipe=0
rev=HEAD
for arg in "$@"; do
	case "$arg" in
	--wipe) wipe=1 ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) rev="$arg" ;;
	esac
done

log() { printf 'cold-run.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "needs root (it removes packages with apt-get)"
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
commit="$(git -C "$src" rev-parse --verify "$rev^{commit}")" || die "no commit $rev"
root="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-cold-XXXXXX")"
COLD_LOG="${COLD_LOG:-$root/run.log}"

removed=(chromium chromium-common chromium-sandbox etcd-server etcd-client nginx nginx-common caddy)
installed=()
for p in "${removed[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && installed+=("$p")
done
if ((${#installed[@]})); then
	log "removing ${installed[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 purge -y -qq "${installed[@]}" >/dev/null ||
		die "apt-get purge failed"
fi
for b in chromium etcd nginx caddy; do
	! command -v "$b" >/dev/null || die "$b is still on PATH ($(command -v "$b")) after the purge"
done

if ((wipe)); then
	log "deleting the caches: Go's module and build caches, ~/.m2/repository, ~/.cache/tokengate, ~/.cache/pip"
	go clean -modcache -cache || die "go clean failed"
	rm -rf "$HOME/.m2/repository" "${XDG_CACHE_HOME:-$HOME/.cache}/tokengate" "${XDG_CACHE_HOME:-$HOME/.cache}/pip"
	cache_env=()
else
	mkdir -p "$root/cache/gomod" "$root/cache/gobuild" "$root/cache/xdg" "$root/cache/m2"
	log "every cache starts empty under $root/cache"
	cache_env=(
		"GOMODCACHE=$root/cache/gomod" "GOCACHE=$root/cache/gobuild"
		"XDG_CACHE_HOME=$root/cache/xdg" "MAVEN_LOCAL_REPO=$root/cache/m2"
		"MAVEN_OPTS=-Dmaven.repo.local=$root/cache/m2"
	)
fi

git clone -q --no-hardlinks "$src" "$root/clone" || die "git clone failed"
git -C "$root/clone" checkout -q "$commit" || die "checkout of $commit failed"
log "running .ci/run on a fresh clone of ${commit:0:12} in $root/clone (log: $COLD_LOG)"
start=$(date +%s)
(cd "$root/clone" && env CI=true "${cache_env[@]}" bash .ci/run </dev/null) >"$COLD_LOG" 2>&1
rc=$?
secs=$(($(date +%s) - start))
tail -n 30 "$COLD_LOG"
printf 'cold-run: %s at %s: exit %d after %dm%02ds (removed first: %s; caches: %s)\n' \
	"$([[ $rc == 0 ]] && echo PASS || echo FAIL)" "${commit:0:12}" "$rc" $((secs / 60)) $((secs % 60)) \
	"${installed[*]:-none were installed}" "$([[ $wipe == 1 ]] && echo deleted || echo "new empty folders")"
exit "$rc"
