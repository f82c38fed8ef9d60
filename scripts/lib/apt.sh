# Shared by the scripts that make sure a Debian package the tests run is installed (nginx.sh,
# etcd.sh): they set the variables below and source this file, which defines log, die,
# tool_bin (the binary the tests will use) and cmd_ensure (install with apt-get when missing).
#
#   bin_env      a variable naming a binary to use instead (nothing is installed then)
#   bin_default  where the package puts the binary
#   version_arg  the binary's flag that prints its version
#   service      the systemd unit the package starts; stopped again (the tests run their own)
#   packages     the Debian packages to install (an array)

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# tool_bin prints the binary the tests will use, or fails.
tool_bin() {
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

# cmd_ensure installs the packages with apt-get when tool_bin finds nothing; a no-op otherwise.
cmd_ensure() {
	local bin
	if bin="$(tool_bin)"; then
		log "using $bin ($("$bin" "$version_arg" 2>&1 | head -n1))"
		return 0
	fi
	command -v apt-get >/dev/null ||
		die "no $bin_default and no apt-get: install ${packages[*]} (Debian) or set $bin_env"
	log "installing ${packages[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	# dpkg may be busy (another install, unattended upgrades): wait for its lock.
	as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
	as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
	if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
		as_root systemctl stop "$service" || true
	fi
	bin="$(tool_bin)" || die "apt-get installed ${packages[*]} but $bin_default is missing"
	log "installed $bin ($("$bin" "$version_arg" 2>&1 | head -n1))"
}
