#!/usr/bin/env bash
# Install what the plain-library proofs under examples/ need, once, outside the clone:
#   examples/verify-python  PyJWT (+ cryptography) from PyPI into a virtualenv under
#                           $XDG_CACHE_HOME/tokengate, named after the requirements file's hash;
#   examples/verify-java    com.nimbusds:nimbus-jose-jwt from Maven Central into the local Maven
#                           repository (~/.m2), through mvn;
#   examples/bff-spring     everything its Maven build needs (Spring Boot, its plugins), into
#                           the same local repository: one online build of a copy, outside the
#                           clone; a marker file in that repository, named after pom.xml's hash,
#                           says it is done.
#
# Usage: scripts/examples.sh ensure|python|java-classpath|spring-jar DIR
#
#   ensure          (default) install all three; a second run is a no-op.
#   python          print the virtualenv's python (after ensure), or fail.
#   java-classpath  print the Nimbus JOSE+JWT jar (after ensure), or fail.
#   spring-jar DIR  build examples/bff-spring offline (mvn -o, after ensure) in a copy under
#                   DIR and print the runnable jar's path; nothing is written in the clone.
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
SPRING="$ROOT/examples/bff-spring"

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

spring_marker() { printf '%s/.tokengate-bff-spring-%s\n' "$M2" "$(sha256sum "$SPRING/pom.xml" | cut -c1-12)"; }

# mvn_spring DIR ARGS...: copy examples/bff-spring (pom.xml, src) into DIR and run mvn package there.
mvn_spring() {
	local dir=$1
	shift
	command -v mvn >/dev/null || die "mvn is missing; it builds examples/bff-spring (Debian: maven)"
	mkdir -p "$dir"
	cp -r "$SPRING/pom.xml" "$SPRING/src" "$dir/"
	local -a args=(-B -q -f "$dir/pom.xml" "$@" package -DskipTests)
	[[ -n ${MAVEN_LOCAL_REPO:-} ]] && args+=("-Dmaven.repo.local=$MAVEN_LOCAL_REPO")
	mvn "${args[@]}" >&2
}

ensure_spring() {
	local marker tmp
	marker="$(spring_marker)"
	[[ -f $marker ]] && return 0
	log "fetching what examples/bff-spring's Maven build needs (Spring Boot) with mvn"
	tmp="$(mktemp -d)"
	# shellcheck disable=SC2064 # expand tmp now
	trap "rm -rf '$tmp'" EXIT
	mvn_spring "$tmp" || die "mvn package of examples/bff-spring failed"
	mkdir -p "$M2"
	touch "$marker"
}

case "${1:-ensure}" in
ensure)
	ensure_python
	ensure_java
	ensure_spring
	;;
spring-jar)
	[[ -n ${2:-} ]] || die "usage: scripts/examples.sh spring-jar DIR"
	[[ -f $(spring_marker) ]] || die "examples/bff-spring's Maven dependencies are not fetched: run scripts/examples.sh ensure (make examples)"
	mvn_spring "$2/bff-spring" -o || die "offline mvn package of examples/bff-spring failed"
	printf '%s\n' "$2/bff-spring/target/bff-spring.jar"
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
*) die "usage: scripts/examples.sh ensure|python|java-classpath|spring-jar DIR" ;;
esac
