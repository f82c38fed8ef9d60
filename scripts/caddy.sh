#!/usr/bin/env bash
# Make sure Debian's caddy is installed, for the forward-auth scenario (integration/services):
# the tests run their own caddy as the current user, with deploy/forward-auth/Caddyfile (ports
# templated), its admin endpoint off, no automatic HTTPS, and its data and config directories
# (XDG_DATA_HOME, XDG_CONFIG_HOME) in a temporary directory, on free loopback ports.
#
# Usage: scripts/caddy.sh [ensure|path]
#
#   ensure  (default) install Debian's caddy with apt-get when /usr/bin/caddy is missing; a
#           no-op when it is there. Needs root (or sudo). The package's own caddy.service is
#           stopped again: the tests never use it.
#   path    print the caddy binary the tests will use, or fail.
#
# Environment:
#   TOKENGATE_CADDY_BIN   use this caddy instead (nothing is installed)
set -euo pipefail

bin_env=TOKENGATE_CADDY_BIN
bin_default=/usr/bin/caddy
version_arg=version
# The package starts caddy on port 80 (and its admin endpoint on 2019) when it can; the tests
# start their own on free ports.
service=caddy
packages=(caddy)
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

case "${1:-ensure}" in
ensure) cmd_ensure ;;
path) tool_bin || die "no caddy: run scripts/caddy.sh ensure" ;;
*) die "usage: scripts/caddy.sh [ensure|path]" ;;
esac
