#!/usr/bin/env bash
# Stops what tests/packagekit/start-env.sh started in DIR (by PID: packagekitd, polkitd, the bus,
# the guard), and removes DIR/env. Logs stay in DIR. Safe to run twice.
#
#   tests/packagekit/stop-env.sh DIR
set -uo pipefail

DIR="${1:?usage: $0 DIR}"
ENV_FILE="$DIR/env"
[ -f "$ENV_FILE" ] || exit 0

env_get() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n1; }
stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL
	local pid="$1" i
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
}

GUARD_PID="$(env_get GUARD_PID)"
for key in PACKAGEKITD_PID POLKITD_PID DBUS_PID; do
	stop_pid "$(env_get "$key")"
done
rm -f "$ENV_FILE" "$DIR/system_bus_socket"
# The guard exits by itself once env is gone; do not kill ourselves if we are the guard.
if [ -n "$GUARD_PID" ] && [ "$GUARD_PID" != "$$" ] && [ "$GUARD_PID" != "$PPID" ]; then
	kill -TERM "$GUARD_PID" 2>/dev/null || true
fi
exit 0
