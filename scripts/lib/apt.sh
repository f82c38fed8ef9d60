# Shared by the scripts that make sure a Debian package the tests run is installed (nginx.sh,
# etcd.sh, caddy.sh, chromium.sh): they set the variables below and source this file, which defines log,
# die, tool_bin (the binary the tests will use) and cmd_ensure (install with apt-get when missing).
#
# Installing is the Makefile's job, before `go test` starts (`make system-deps`): go test runs
# packages in parallel, and two apt-gets at once collide on dpkg's lock. Tests only ask `path`.
# Every install here also holds one project-wide lock (flock), so that even two `ensure`s started
# at once (make -j, two checkouts) run one after the other instead of failing.
#
#   bin_env      a variable naming a binary to use instead (nothing is installed then)
#   bin_default  where the package puts the binary
#   version_arg  the binary's flag that prints its version
#   service      the systemd unit the package starts; stopped again (the tests run their own)
#   packages     the Debian packages to install (an array)
#
# A script may define its own tool_bin before sourcing this file (chromium.sh looks on PATH).

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# tool_bin prints the binary the tests will use, or fails.
declare -F tool_bin >/dev/null || tool_bin() {
	if [[ -n "${!bin_env:-}" ]]; then
		[[ -x "${!bin_env}" ]] || die "$bin_env=${!bin_env} is not executable"
		printf '%s\n' "${!bin_env}"
		return 0
	fi
	if [[ -x "$bin_default" ]]; then
		printf '%s\n' "$bin_default"
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

# apt_install installs the packages with apt-get, holding the project's install lock. It tries
# the package lists already on the machine first and runs `apt-get update` only when that fails
# (lists never fetched, or too old for the archive): one update, not one per script.
apt_install() {
	local lock="${TOKENGATE_APT_LOCK:-/var/lock/tokengate-apt.lock}" lockfd
	exec {lockfd}>"$lock" || die "cannot open the install lock $lock"
	flock -w 900 "$lockfd" || die "timed out waiting for another install (lock $lock)"
	export DEBIAN_FRONTEND=noninteractive
	# dpkg may also be busy outside the project (unattended upgrades): wait for its own lock too.
	local -a apt=(apt-get -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends)
	if ! as_root "${apt[@]}" install "$@" >/dev/null 2>&1; then
		as_root apt-get -o DPkg::Lock::Timeout=300 update -qq || die "apt-get update failed"
		as_root "${apt[@]}" install "$@" >/dev/null || die "apt-get install $* failed"
	fi
	exec {lockfd}>&-
}

# version_of prints the first line the binary prints for its version flag: on standard output
# when it writes one (Debian's chromium launcher also writes shell noise to standard error),
# else on standard error (nginx -v).
version_of() {
	local v
	v="$("$1" "$version_arg" 2>/dev/null | head -n1)"
	[[ -n "$v" ]] || v="$("$1" "$version_arg" 2>&1 | head -n1)"
	printf '%s\n' "$v"
}

# cmd_ensure installs the packages with apt-get when tool_bin finds nothing; a no-op otherwise.
cmd_ensure() {
	local bin
	if bin="$(tool_bin)"; then
		log "using $bin ($(version_of "$bin"))"
		return 0
	fi
	command -v apt-get >/dev/null ||
		die "no $bin_default and no apt-get: install ${packages[*]} (Debian) or set $bin_env"
	log "installing ${packages[*]} with apt-get"
	apt_install "${packages[@]}"
	if [[ -n "${service:-}" ]] && command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
		as_root systemctl stop "$service" || true
	fi
	bin="$(tool_bin)" || die "apt-get installed ${packages[*]} but $bin_default is missing"
	log "installed $bin ($(version_of "$bin"))"
}
