#!/bin/bash
# Stops the LXD daemon only if this harness (ensure-lxd.sh) started it. An LXD started by anyone
# else is left running. Idempotent.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/common.sh"
require_root
take_lock ensure-lxd 300
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
