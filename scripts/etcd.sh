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

bin_env=TOKENGATE_ETCD_BIN
bin_default=/usr/bin/etcd
version_arg=--version
# The package enables an etcd service on 2379; the tests start their own members on free ports.
service=etcd
packages=(etcd-server etcd-client)
# shellcheck source=lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

case "${1:-ensure}" in
ensure) cmd_ensure ;;
path) tool_bin || die "no etcd server: run scripts/etcd.sh ensure" ;;
*) die "usage: scripts/etcd.sh [ensure|path]" ;;
esac
