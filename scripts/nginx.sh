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

bin_env=TOKENGATE_NGINX_BIN
bin_default=/usr/sbin/nginx
version_arg=-v
# The package starts nginx on port 80 when it can; the tests start their own on free ports.
service=nginx
packages=(nginx)
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

case "${1:-ensure}" in
ensure) cmd_ensure ;;
path) tool_bin || die "no nginx: run scripts/nginx.sh ensure" ;;
*) die "usage: scripts/nginx.sh [ensure|path]" ;;
esac
