#!/bin/bash
# Stops the LXD daemon only if this harness (ensure-lxd.sh) started it. An LXD started by anyone
# else is left running. Idempotent.
#
#   sudo tests/lxd/stop-lxd.sh --tests   stops the test suite's own LXD (ensure-lxd.sh --tests)
#   sudo tests/lxd/stop-lxd.sh           stops the machine's LXD if ensure-lxd.sh started it
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/common.sh"
case "${1:-}" in
--tests) select_test_lxd ;;
--system | "") ;;
*) die "unknown argument '$1' (use --tests for the test suite's own LXD)" ;;
esac
require_root
take_lock "ensure-lxd-$LXD_KIND" 300
if stop_harness_lxd; then
	log "LXD stopped"
else
	others=$(lxd_daemon_pids | xargs)
	if [ -n "$others" ]; then
		log "LXD (pid $others) was not started by this harness; leaving it running"
	else
		log "no LXD started by this harness is running"
	fi
fi
