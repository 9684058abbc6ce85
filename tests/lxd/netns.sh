#!/bin/bash
# The network namespace of the test suite's own LXD daemon (default crostini-tests):
#
#   tests/lxd/netns.sh create         creates it (idempotent) with loopback up
#   tests/lxd/netns.sh exec CMD...    runs CMD in it (same pid: exec), e.g. the simplestreams
#                                     server, so that the tests' LXD reaches it on 127.0.0.1
#
# The tests' LXD creates its bridge (lxdbr0, 100.115.92.1/24, as tremplin wants it) and runs its
# dnsmasq in this namespace, so neither meets the machine's lxdbr0. The test processes stay in
# the machine's namespace and reach LXD and the containers through unix sockets only.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/common.sh"
require_root

case "${1:-}" in
create)
	if [ ! -e "$TEST_NETNS_PATH" ]; then
		log "creating network namespace $TEST_NETNS"
		ip netns add "$TEST_NETNS" || die "ip netns add $TEST_NETNS failed"
	fi
	nsenter --net="$TEST_NETNS_PATH" -- ip link set lo up || die "cannot bring up lo in $TEST_NETNS"
	;;
exec)
	shift
	[ $# -gt 0 ] || die "usage: netns.sh exec CMD..."
	[ -e "$TEST_NETNS_PATH" ] || die "network namespace $TEST_NETNS is missing (tests/lxd/ensure-lxd.sh --tests creates it)"
	exec nsenter --net="$TEST_NETNS_PATH" -- "$@"
	;;
*) die "usage: netns.sh create | exec CMD..." ;;
esac
