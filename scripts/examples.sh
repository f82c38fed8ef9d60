#!/usr/bin/env bash
# Install what the plain-library proofs under examples/ need, once, outside the clone:
#   examples/verify-python  PyJWT (+ cryptography) from PyPI into a virtualenv under
#                           $XDG_CACHE_HOME/tokengate, named after the requirements file's hash;
#   examples/verify-java    com.nimbusds:nimbus-jose-jwt from Maven Central into the local Maven
#                           repository (~/.m2), through mvn.
#
# Usage: scripts/examples.sh ensure|python|java-classpath
#
#   ensure          (default) install both; a second run is a no-op.
#   python          print the virtualenv's python (after ensure), or fail.
#   java-classpath  print the Nimbus JOSE+JWT jar (after ensure), or fail.
#
# Environment:
#   XDG_CACHE_HOME    cache root ($HOME/.cache)
#   PYTHON            Python >= 3.9 for the virtualenv (python3)
#   MAVEN_LOCAL_REPO  Maven local repository ($HOME/.m2/repository)
set -euo pipefail

NIMBUS_VERSION=10.9.1 # also named in examples/verify-java/Verify.java

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tokengate"
PYTHON="${PYTHON:-python3}"
REQS="$ROOT/examples/verify-python/requirements.txt"
M2="${MAVEN_LOCAL_REPO:-$HOME/.m2/repository}"
JAR="$M2/com/nimbusds/nimbus-jose-jwt/$NIMBUS_VERSION/nimbus-jose-jwt-$NIMBUS_VERSION.jar"

log() { printf 'examples.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

venv_dir() { printf '%s/venv-examples-%s\n' "$CACHE" "$(sha256sum "$REQS" | cut -c1-12)"; }

ensure_python() {
	local dir
	dir="$(venv_dir)"
	if [[ -x $dir/bin/python && -f $dir/.complete ]]; then
		return 0
	fi
	command -v "$PYTHON" >/dev/null || die "$PYTHON is missing: install Python 3 (Debian: python3 python3-venv)"
	log "creating $dir with $(basename "$REQS") (pip)"
	rm -rf "$dir"
	mkdir -p "$CACHE"
	"$PYTHON" -m venv "$dir" || die "$PYTHON -m venv failed (Debian: install python3-venv)"
	"$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" ||
		die "pip install -r $REQS failed"
	touch "$dir/.complete"
}

ensure_java() {
	[[ -f $JAR ]] && return 0
	command -v mvn >/dev/null || die "mvn is missing; it fetches com.nimbusds:nimbus-jose-jwt:$NIMBUS_VERSION (Debian: maven)"
	log "fetching com.nimbusds:nimbus-jose-jwt:$NIMBUS_VERSION with mvn"
	local -a args=(-q -B dependency:get "-Dartifact=com.nimbusds:nimbus-jose-jwt:$NIMBUS_VERSION" -Dtransitive=false)
	[[ -n ${MAVEN_LOCAL_REPO:-} ]] && args+=("-Dmaven.repo.local=$MAVEN_LOCAL_REPO")
	mvn "${args[@]}" >&2 || die "mvn dependency:get com.nimbusds:nimbus-jose-jwt:$NIMBUS_VERSION failed"
	[[ -f $JAR ]] || die "mvn succeeded but $JAR is not there (set MAVEN_LOCAL_REPO)"
}

case "${1:-ensure}" in
ensure)
	ensure_python
	ensure_java
	;;
python)
	dir="$(venv_dir)"
	[[ -x $dir/bin/python && -f $dir/.complete ]] || die "no virtualenv for examples/verify-python: run scripts/examples.sh ensure"
	printf '%s\n' "$dir/bin/python"
	;;
java-classpath)
	[[ -f $JAR ]] || die "no $JAR: run scripts/examples.sh ensure"
	printf '%s\n' "$JAR"
	;;
*) die "usage: scripts/examples.sh ensure|python|java-classpath" ;;
esac
