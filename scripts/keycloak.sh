#!/usr/bin/env bash
# Fetch, run and stop a throw-away Keycloak (dev mode) for tokengate's tests.
#
# Usage: scripts/keycloak.sh fetch|java|start|stop|status|version
#
#   fetch   Resolve org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip into
#           Maven's local repository and unpack it once into
#           $XDG_CACHE_HOME/tokengate/keycloak-$KEYCLOAK_VERSION (outside the clone).
#           Prints the unpacked directory. A second run is a no-op.
#   java    Prints a JAVA_HOME whose java is >= 21 (Keycloak 26 needs it).
#   start   fetch, then start-dev on 127.0.0.1:$KC_PORT with realm "demo" imported
#           from deploy/keycloak/realm-demo.json into a fresh per-run home under
#           $KC_RUN_DIR (pid file, log, data). Waits until the realm's discovery
#           document answers. Prints the base URL.
#   stop    Stops the process group recorded in $KC_RUN_DIR/keycloak.pid.
#   status  Exit 0 when the Keycloak of $KC_RUN_DIR is running.
#   version Prints the version that fetch and start use ($KEYCLOAK_VERSION).
#
# Environment:
#   KEYCLOAK_VERSION     dist version                      (26.7.3; make test also
#                        runs a smoke path on 26.5.6, see integration/kc265)
#   KEYCLOAK_JAVA_HOME   JDK >= 21 to use                   (auto-detected)
#   MAVEN_LOCAL_REPO     Maven local repository             ($HOME/.m2/repository)
#   XDG_CACHE_HOME       cache root                         ($HOME/.cache)
#   KC_PORT              HTTP port                          (18080)
#   KC_RUN_DIR           per-run dir: pid, log, data        (${TMPDIR:-/tmp}/tokengate-keycloak-$KC_PORT)
#   KC_REALM_FILE        realm JSON to import               (deploy/keycloak/realm-demo.json)
#   KC_START_TIMEOUT     seconds to wait for readiness      (240)
#   KC_JIT               c1 (fast start, slower hashing) or full     (c1)
#   KC_CDS               1: keep a CDS archive in the cache dir      (1)
#   KC_JAVA_OPTS_APPEND  extra JVM options
#   KC_EXTRA_ARGS        extra start-dev options, split on blanks (added after --features)
#   KC_FEATURES          --features value; "none" for none   (ssf from 26.7 on, else none)
#   KC_SSF_RECEIVER      client given the ssf.read and ssf.manage scopes after
#                        the import when the realm has them   (tokengate-signals)
#   KC_KEEP_DATA         1: start on the database of the last start in
#                        $KC_RUN_DIR (a restart, no fresh import)  (unset)
#   TOKENGATE_URL        base URL Keycloak posts back-channel logout tokens to;
#                        unset: the realm file's default http://127.0.0.1:18443
#   KC_BOOTSTRAP_ADMIN_USERNAME / KC_BOOTSTRAP_ADMIN_PASSWORD   master admin (admin/admin)
set -euo pipefail

KEYCLOAK_VERSION="${KEYCLOAK_VERSION:-26.7.3}"
KC_PORT="${KC_PORT:-18080}"
KC_RUN_DIR="${KC_RUN_DIR:-${TMPDIR:-/tmp}/tokengate-keycloak-${KC_PORT}}"
KC_START_TIMEOUT="${KC_START_TIMEOUT:-240}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KC_REALM_FILE="${KC_REALM_FILE:-$REPO_ROOT/deploy/keycloak/realm-demo.json}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tokengate"
KC_DIST="$CACHE_DIR/keycloak-$KEYCLOAK_VERSION"
ARTIFACT="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip"

log() { printf 'keycloak.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- fetch -------------------------------------------------------------------

maven_local_repo() {
	local repo
	repo="$(mvn -q -B help:evaluate -Dexpression=settings.localRepository -DforceStdout 2>/dev/null || true)"
	if [[ -z "$repo" || ! -d "$repo" ]]; then
		repo="$HOME/.m2/repository"
	fi
	printf '%s\n' "$repo"
}

cmd_fetch() {
	if [[ -x "$KC_DIST/bin/kc.sh" ]]; then
		printf '%s\n' "$KC_DIST"
		return 0
	fi
	command -v unzip >/dev/null || die "unzip is missing (apt-get install unzip)"
	local repo zip
	repo="${MAVEN_LOCAL_REPO:-$HOME/.m2/repository}"
	zip="$repo/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
	if [[ ! -f "$zip" ]]; then
		command -v mvn >/dev/null || die "mvn is missing; it is needed to fetch $ARTIFACT"
		log "fetching $ARTIFACT with mvn (about 165 MB)"
		local -a mvn_args=(-q -B dependency:get "-Dartifact=$ARTIFACT" -Dtransitive=false)
		[[ -n "${MAVEN_LOCAL_REPO:-}" ]] && mvn_args+=("-Dmaven.repo.local=$MAVEN_LOCAL_REPO")
		mvn "${mvn_args[@]}" >&2 ||
			die "mvn dependency:get -Dartifact=$ARTIFACT failed"
		if [[ ! -f "$zip" && -z "${MAVEN_LOCAL_REPO:-}" ]]; then
			repo="$(maven_local_repo)"
			zip="$repo/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
		fi
		[[ -f "$zip" ]] || die "mvn succeeded but $zip is not there (set MAVEN_LOCAL_REPO)"
	fi
	mkdir -p "$CACHE_DIR"
	local tmp
	tmp="$(mktemp -d "$CACHE_DIR/.keycloak-$KEYCLOAK_VERSION.XXXXXX")"
	log "unpacking $zip"
	if ! unzip -q "$zip" -d "$tmp"; then
		rm -rf "$tmp"
		die "unzip of $zip failed"
	fi
	[[ -x "$tmp/keycloak-$KEYCLOAK_VERSION/bin/kc.sh" ]] || {
		rm -rf "$tmp"
		die "$zip has no keycloak-$KEYCLOAK_VERSION/bin/kc.sh"
	}
	# mv of a directory is atomic; if a concurrent fetch won the race, keep its copy.
	if ! mv -T "$tmp/keycloak-$KEYCLOAK_VERSION" "$KC_DIST" 2>/dev/null; then
		[[ -x "$KC_DIST/bin/kc.sh" ]] || {
			rm -rf "$tmp"
			die "could not move the unpacked dist to $KC_DIST"
		}
	fi
	rm -rf "$tmp"
	printf '%s\n' "$KC_DIST"
}

# --- java --------------------------------------------------------------------

# java_major JAVA_HOME -> prints the feature version (17, 21, 25...) or nothing.
java_major() {
	local out ver
	[[ -x "$1/bin/java" ]] || return 0
	out="$("$1/bin/java" -version 2>&1 | head -n1)" || return 0
	ver="$(sed -n 's/.*version "\([^"]*\)".*/\1/p' <<<"$out")"
	ver="${ver#1.}"
	printf '%s\n' "${ver%%[.+-]*}"
}

cmd_java() {
	local want=21 major candidate
	if [[ -n "${KEYCLOAK_JAVA_HOME:-}" ]]; then
		major="$(java_major "$KEYCLOAK_JAVA_HOME")"
		if [[ -n "$major" && "$major" -ge "$want" ]]; then
			printf '%s\n' "$KEYCLOAK_JAVA_HOME"
			return 0
		fi
		die "KEYCLOAK_JAVA_HOME=$KEYCLOAK_JAVA_HOME has no java >= $want (found: ${major:-none})"
	fi
	local -a candidates=()
	local d
	for d in /usr/lib/jvm/*temurin* /usr/lib/jvm/* "${JAVA_HOME:-}"; do
		[[ -n "$d" && -d "$d" ]] && candidates+=("$d")
	done
	if command -v java >/dev/null; then
		candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
	fi
	for candidate in "${candidates[@]}"; do
		major="$(java_major "$candidate")"
		if [[ -n "$major" && "$major" -ge "$want" ]]; then
			printf '%s\n' "$candidate"
			return 0
		fi
	done
	die "no Java >= $want found (Keycloak $KEYCLOAK_VERSION needs one): looked in /usr/lib/jvm/*, \$JAVA_HOME and PATH; install a JDK 21+ or set KEYCLOAK_JAVA_HOME"
}

# --- start / stop ------------------------------------------------------------

pid_file() { printf '%s\n' "$KC_RUN_DIR/keycloak.pid"; }

running_pid() {
	local pf pid
	pf="$(pid_file)"
	[[ -f "$pf" ]] || return 1
	pid="$(<"$pf")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	printf '%s\n' "$pid"
}

ready() {
	curl -fsS -o /dev/null --max-time 2 \
		"http://127.0.0.1:$KC_PORT/realms/demo/.well-known/openid-configuration" 2>/dev/null
}

cmd_start() {
	command -v curl >/dev/null || die "curl is missing (apt-get install curl)"
	[[ -f "$KC_REALM_FILE" ]] || die "realm file $KC_REALM_FILE not found"
	local dist java_home
	dist="$(cmd_fetch)"
	java_home="$(cmd_java)"
	if running_pid >/dev/null; then
		die "Keycloak already running for $KC_RUN_DIR (pid $(running_pid)); run '$0 stop' first"
	fi
	if ready; then
		die "port $KC_PORT already serves a demo realm that is not ours; set KC_PORT"
	fi

	# Per-run home: Keycloak derives data/ (H2 db, import dir, tmp) and themes/
	# from kc.home.dir. Pointing kc.home.dir at a fresh directory whose other
	# parts are links into the cached dist gives every start an empty database
	# without copying the dist. The augmented build (lib/quarkus) stays in the
	# cached dist, next to quarkus-run.jar.
	# KC_KEEP_DATA=1 keeps the home of the last start instead (a restart: same
	# database, so the same realm keys, users, sessions, SSF streams and the
	# events still waiting in them; the import is skipped as the realm exists).
	local home="$KC_RUN_DIR/home"
	if [[ "${KC_KEEP_DATA:-}" == 1 && -d "$home/data" ]]; then
		log "KC_KEEP_DATA=1: restarting on the database in $home/data"
	else
		rm -rf "$home"
		mkdir -p "$home/data/import"
		local part
		for part in bin conf lib providers themes version.txt; do
			ln -s "$dist/$part" "$home/$part"
		done
		cp "$KC_REALM_FILE" "$home/data/import/"
	fi

	local logf="$KC_RUN_DIR/keycloak.log"
	: >"$logf"

	# JVM tuning for 2 cores. The start-up is CPU-bound: C1-only JIT plus a
	# dynamic CDS archive (created in the cache on the first stop, reused
	# afterwards) halve the CPU seconds a start costs. C1 makes password hashing
	# about 2x slower, so KC_JIT=full is there for benchmarks.
	local major jopts="--add-opens=java.base/java.lang=ALL-UNNAMED"
	major="$(java_major "$java_home")"
	case "${KC_JIT:-c1}" in
	c1) jopts+=" -XX:TieredStopAtLevel=1" ;;
	full) ;;
	*) die "KC_JIT must be c1 or full, not '$KC_JIT'" ;;
	esac
	local jsa=""
	if [[ "${KC_CDS:-1}" == 1 ]]; then
		jsa="$CACHE_DIR/keycloak-$KEYCLOAK_VERSION-java$major-${KC_JIT:-c1}.jsa"
		jopts+=" -XX:+AutoCreateSharedArchive -XX:SharedArchiveFile=$jsa"
	fi
	jopts+="${KC_JAVA_OPTS_APPEND:+ $KC_JAVA_OPTS_APPEND}"

	# This script's own KC_* settings are not Keycloak options: keep them out
	# of Keycloak's environment, where KC_* is read as configuration.
	local -a kc_env=(
		-u KC_RUN_DIR -u KC_PORT -u KC_START_TIMEOUT -u KC_JIT -u KC_CDS
		-u KC_REALM_FILE -u KC_EXTRA_ARGS -u KC_JAVA_OPTS_APPEND -u KC_FEATURES -u KC_SSF_RECEIVER -u KC_KEEP_DATA
		"JAVA_HOME=$java_home"
		"JAVA_OPTS_APPEND=$jopts"
		"KC_BOOTSTRAP_ADMIN_USERNAME=${KC_BOOTSTRAP_ADMIN_USERNAME:-admin}"
		"KC_BOOTSTRAP_ADMIN_PASSWORD=${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin}"
	)
	# The realm file says ${TOKENGATE_URL:http://127.0.0.1:18443}; Keycloak
	# resolves it from the environment at import time.
	if [[ -n "${TOKENGATE_URL:-}" ]]; then
		kc_env+=("TOKENGATE_URL=$TOKENGATE_URL")
	else
		kc_env=(-u TOKENGATE_URL "${kc_env[@]}")
	fi
	local -a extra=()
	local features
	features="$(default_features)"
	if [[ -n "$features" && "$features" != none ]]; then
		extra+=("--features=$features")
	fi
	if [[ -n "${KC_EXTRA_ARGS:-}" ]]; then
		local -a more=()
		read -r -a more <<<"$KC_EXTRA_ARGS"
		extra+=("${more[@]}")
	fi

	# Starts that share the cached dist are serialised until ready: a start-dev
	# may re-augment (rewrite lib/quarkus) when the build options differ.
	local lockfd
	exec {lockfd}>"$CACHE_DIR/.keycloak-$KEYCLOAK_VERSION.lock"
	flock -w "$KC_START_TIMEOUT" "$lockfd" || die "timed out waiting for another Keycloak start to finish"

	log "starting Keycloak $KEYCLOAK_VERSION on 127.0.0.1:$KC_PORT (java $major: $java_home, jit ${KC_JIT:-c1}, run dir: $KC_RUN_DIR)"
	local t0
	t0="$(date +%s%N)"
	# setsid: kc.sh and its java child get their own session and process group,
	# so stop can signal the whole group and leave no orphans.
	env "${kc_env[@]}" setsid "$dist/bin/kc.sh" "-Dkc.home.dir=$home" \
		start-dev \
		--http-host=127.0.0.1 \
		--http-port="$KC_PORT" \
		--import-realm \
		"${extra[@]}" \
		</dev/null >>"$logf" 2>&1 {lockfd}>&- &
	local pid=$!
	printf '%s\n' "$pid" >"$(pid_file)"

	local deadline=$((SECONDS + KC_START_TIMEOUT))
	until ready; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "Keycloak exited during start-up; last lines of $logf:"
			tail -n 40 "$logf" >&2
			rm -f "$(pid_file)"
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			log "Keycloak not ready after ${KC_START_TIMEOUT}s; last lines of $logf:"
			tail -n 40 "$logf" >&2
			cmd_stop
			exit 1
		fi
		sleep 0.5
	done
	exec {lockfd}>&-
	if [[ -n "$jsa" ]] && grep -q 'augmentation completed' "$logf"; then
		# This start re-augmented: the archive now on disk was dumped by the
		# short-lived build JVM. Drop it; the next start's JVM dumps a full one.
		rm -f "$jsa"
	fi
	ssf_receiver_scopes
	local ms=$((($(date +%s%N) - t0) / 1000000))
	log "ready after ${ms} ms (pid $pid, log $logf)"
	printf '%s\n' "$ms" >"$KC_RUN_DIR/startup-ms"
	printf 'http://127.0.0.1:%s\n' "$KC_PORT"
}

# default_features prints the --features value: KC_FEATURES when set, else
# "ssf" (the Shared Signals transmitter, experimental) from Keycloak 26.7 on.
# Older versions do not know the feature, so they get none.
default_features() {
	if [[ -n "${KC_FEATURES:-}" ]]; then
		printf '%s\n' "$KC_FEATURES"
		return
	fi
	local major minor
	IFS=. read -r major minor _ <<<"$KEYCLOAK_VERSION"
	if ((major > 26 || (major == 26 && minor >= 7))); then
		printf 'ssf\n'
	fi
}

# ssf_receiver_scopes gives the receiver client the ssf.read and ssf.manage
# client scopes as default scopes. Keycloak creates these scopes for a realm
# only after the realm file's clients are imported, so the file's
# defaultClientScopes entries for them are dropped ("Referenced client scope
# 'ssf.read' doesn't exist. Ignoring"). Does nothing when the realm has no such
# scopes (feature off, older Keycloak) or no such client.
ssf_receiver_scopes() {
	local base="http://127.0.0.1:$KC_PORT" receiver="${KC_SSF_RECEIVER:-tokengate-signals}"
	local token scopes client scope id
	token="$(curl -fsS --max-time 10 -d grant_type=password -d client_id=admin-cli \
		--data-urlencode "username=${KC_BOOTSTRAP_ADMIN_USERNAME:-admin}" \
		--data-urlencode "password=${KC_BOOTSTRAP_ADMIN_PASSWORD:-admin}" \
		"$base/realms/master/protocol/openid-connect/token" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')" || return 0
	[[ -n "$token" ]] || return 0
	scopes="$(curl -fsS --max-time 10 -H "Authorization: Bearer $token" "$base/admin/realms/demo/client-scopes")" || return 0
	client="$(curl -fsS --max-time 10 -H "Authorization: Bearer $token" \
		"$base/admin/realms/demo/clients?clientId=$receiver" | sed -n 's/^\[{"id":"\([^"]*\)".*/\1/p')" || return 0
	[[ -n "$client" ]] || return 0
	for scope in ssf.read ssf.manage; do
		id="$(grep -o "{\"id\":\"[^\"]*\",\"name\":\"$scope\"" <<<"$scopes" | sed 's/{"id":"\([^"]*\)".*/\1/')" || true
		[[ -n "$id" ]] || continue
		curl -fsS --max-time 10 -X PUT -H "Authorization: Bearer $token" \
			"$base/admin/realms/demo/clients/$client/default-client-scopes/$id" ||
			die "could not give client $receiver the $scope scope"
		log "client $receiver: default client scope $scope added (SSF receiver)"
	done
}

cmd_stop() {
	local pf pid
	pf="$(pid_file)"
	if ! pid="$(running_pid)"; then
		rm -f "$pf"
		log "not running ($KC_RUN_DIR)"
		return 0
	fi
	# The pid is the process-group leader started by setsid.
	kill -TERM -- "-$pid" 2>/dev/null || true
	local i
	for ((i = 0; i < 120; i++)); do
		if ! pgrep -g "$pid" >/dev/null 2>&1; then
			break
		fi
		sleep 0.5
	done
	if pgrep -g "$pid" >/dev/null 2>&1; then
		log "process group $pid still alive after 60s, sending KILL"
		kill -KILL -- "-$pid" 2>/dev/null || true
		sleep 0.5
	fi
	rm -f "$pf"
	log "stopped (process group $pid)"
}

cmd_status() {
	local pid
	if pid="$(running_pid)"; then
		printf 'running pid %s, http://127.0.0.1:%s\n' "$pid" "$KC_PORT"
	else
		printf 'not running\n'
		return 1
	fi
}

main() {
	local sub="${1:-}"
	case "$sub" in
	fetch) cmd_fetch ;;
	java) cmd_java ;;
	start)
		mkdir -p "$KC_RUN_DIR"
		cmd_start
		;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	version) printf '%s\n' "$KEYCLOAK_VERSION" ;;
	*)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
		exit 2
		;;
	esac
}

main "$@"
