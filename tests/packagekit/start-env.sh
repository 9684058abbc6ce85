#!/usr/bin/env bash
# Starts a private D-Bus system bus with polkitd and a real packagekitd on it (garcon-service §8.7),
# for the PackageKit tests. No systemd needed: every daemon is started directly and recorded by PID.
#
#   tests/packagekit/start-env.sh [--backend NAME] [--no-polkitd] [--no-packagekitd]
#                                 [--owner-pid PID] DIR
#
# DIR holds the bus socket, the configs, the daemon logs and DIR/env (KEY=VALUE lines:
# DBUS_SYSTEM_BUS_ADDRESS, DBUS_PID, POLKITD_PID, PACKAGEKITD_PID, GUARD_PID). Prints
# `export DBUS_SYSTEM_BUS_ADDRESS=...` on stdout, so `eval "$(start-env.sh DIR)"` works.
#
# Run again on a DIR whose bus is still up, it starts only the daemons that are not running (e.g.
# packagekitd after a test killed it) and keeps the others.
#
# --backend NAME   packagekitd backend (default: PackageKit's default, apt on Debian; `dummy` for
#                  fast fake transactions).
# --no-polkitd / --no-packagekitd   leave that daemon out (bus still up; nothing is activatable,
#                  so calls to the missing service fail with ServiceUnknown).
# --owner-pid PID  stop the whole environment (stop-env.sh) once process PID has exited, so that a
#                  test process that dies without cleaning up leaves nothing behind.
#
# Needs root. Installs missing Debian packages (dbus, packagekit, polkitd, dpkg-dev) with apt-get.
# Installs /etc/polkit-1/rules.d/49-crostini-packagekit-tests.rules (root may use PackageKit),
# which stays installed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
log() { printf '[start-env %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[start-env] ERROR: %s\n' "$*" >&2; exit 1; }

BACKEND=""
WANT_POLKITD=1
WANT_PACKAGEKITD=1
OWNER_PID=""
DIR=""
while [ $# -gt 0 ]; do
	case "$1" in
	--backend) BACKEND="${2:?--backend needs a value}"; shift 2 ;;
	--backend=*) BACKEND="${1#--backend=}"; shift ;;
	--no-polkitd) WANT_POLKITD=0; shift ;;
	--no-packagekitd) WANT_PACKAGEKITD=0; shift ;;
	--owner-pid) OWNER_PID="${2:?--owner-pid needs a value}"; shift 2 ;;
	-h|--help) sed -n '2,25p' "$0"; exit 0 ;;
	-*) die "unknown option $1" ;;
	*) [ -z "$DIR" ] || die "only one DIR"; DIR="$1"; shift ;;
	esac
done
[ -n "$DIR" ] || die "usage: $0 [options] DIR"
[ "$(id -u)" = 0 ] || die "must run as root (PackageKit installs into the real dpkg database)"

POLKITD_BIN=/usr/lib/polkit-1/polkitd
PACKAGEKITD_BIN=/usr/libexec/packagekitd

ensure_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing missing packages: ${missing[*]}"
	# Do not let the packages start their system services (there is no systemd here anyway).
	local policy_added=0 rc=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_added=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
		{ timeout 600 apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } || rc=$?
	[ $policy_added = 1 ] && rm -f /usr/sbin/policy-rc.d
	[ $rc = 0 ] || die "apt-get install ${missing[*]} failed (exit $rc)"
}
ensure_packages dbus packagekit polkitd dpkg-dev
[ -x "$POLKITD_BIN" ] || die "$POLKITD_BIN missing (package polkitd)"
[ -x "$PACKAGEKITD_BIN" ] || die "$PACKAGEKITD_BIN missing (package packagekit)"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
SOCKET="$DIR/system_bus_socket"
ADDRESS="unix:path=$SOCKET"
ENV_FILE="$DIR/env"

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
env_get() { [ -f "$ENV_FILE" ] && sed -n "s/^$1=//p" "$ENV_FILE" | tail -n1 || true; }
env_set() {
	touch "$ENV_FILE"
	sed -i "/^$1=/d" "$ENV_FILE"
	printf '%s=%s\n' "$1" "$2" >>"$ENV_FILE"
}

bus_call() { # bus_call METHOD ARGS... : a call to the bus daemon itself
	dbus-send --bus="$ADDRESS" --print-reply --reply-timeout=2000 --dest=org.freedesktop.DBus \
		/org/freedesktop/DBus "org.freedesktop.DBus.$@"
}
has_owner() { bus_call NameHasOwner "string:$1" 2>/dev/null | grep -q 'boolean true'; }
wait_for_name() { # wait_for_name NAME PID LOG
	local i
	for i in $(seq 1 150); do
		has_owner "$1" && return 0
		alive "$2" || { tail -n 20 "$3" >&2 || true; die "$1: daemon (pid $2) exited, log $3"; }
		sleep 0.1
	done
	tail -n 20 "$3" >&2 || true
	die "$1 did not appear on $ADDRESS within 15 s (log $3)"
}

# 1. The bus.
DBUS_PID="$(env_get DBUS_PID)"
if alive "$DBUS_PID" && [ -S "$SOCKET" ]; then
	log "bus already running (pid $DBUS_PID)"
else
	rm -f "$ENV_FILE" "$SOCKET"
	mkdir -p "$DIR/services"
	cat >"$DIR/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$SOCKET</listen>
  <auth>EXTERNAL</auth>
  <!-- Empty: nothing is auto-activated, so a stopped daemon stays stopped. -->
  <servicedir>$DIR/services</servicedir>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
CONF
	dbus-daemon --config-file="$DIR/bus.conf" --nofork --print-address </dev/null >"$DIR/bus.address" 2>"$DIR/dbus-daemon.log" &
	DBUS_PID=$!
	for _ in $(seq 1 100); do
		[ -S "$SOCKET" ] && bus_call GetId >/dev/null 2>&1 && break
		alive "$DBUS_PID" || die "dbus-daemon exited: $(cat "$DIR/dbus-daemon.log")"
		sleep 0.05
	done
	bus_call GetId >/dev/null 2>&1 || die "bus at $ADDRESS does not answer"
	env_set DBUS_SYSTEM_BUS_ADDRESS "$ADDRESS"
	env_set DBUS_PID "$DBUS_PID"
	log "bus up: $ADDRESS (pid $DBUS_PID)"
fi
export DBUS_SYSTEM_BUS_ADDRESS="$ADDRESS"

# 2. polkitd, with a rule letting root use PackageKit.
RULES=/etc/polkit-1/rules.d/49-crostini-packagekit-tests.rules
if [ ! -f "$RULES" ]; then
	mkdir -p "$(dirname "$RULES")"
	cat >"$RULES" <<'RULE'
// Installed by crostini-rs tests/packagekit/start-env.sh: root may use PackageKit without a prompt.
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.freedesktop.packagekit.") == 0 && subject.user == "root") {
        return polkit.Result.YES;
    }
});
RULE
fi
if [ $WANT_POLKITD = 1 ]; then
	POLKITD_PID="$(env_get POLKITD_PID)"
	if alive "$POLKITD_PID" && has_owner org.freedesktop.PolicyKit1; then
		log "polkitd already running (pid $POLKITD_PID)"
	else
		"$POLKITD_BIN" --no-debug </dev/null >>"$DIR/polkitd.log" 2>&1 &
		POLKITD_PID=$!
		env_set POLKITD_PID "$POLKITD_PID"
		wait_for_name org.freedesktop.PolicyKit1 "$POLKITD_PID" "$DIR/polkitd.log"
		log "polkitd up (pid $POLKITD_PID)"
	fi
fi

# 3. packagekitd (--keep-environment: otherwise it drops DBUS_SYSTEM_BUS_ADDRESS).
if [ $WANT_PACKAGEKITD = 1 ]; then
	PACKAGEKITD_PID="$(env_get PACKAGEKITD_PID)"
	if alive "$PACKAGEKITD_PID" && has_owner org.freedesktop.PackageKit; then
		log "packagekitd already running (pid $PACKAGEKITD_PID)"
	else
		[ -n "$BACKEND" ] || BACKEND="$(env_get PACKAGEKIT_BACKEND)"
		args=(--keep-environment --disable-timer)
		[ -n "$BACKEND" ] && args+=("--backend=$BACKEND")
		"$PACKAGEKITD_BIN" "${args[@]}" </dev/null >>"$DIR/packagekitd.log" 2>&1 &
		PACKAGEKITD_PID=$!
		env_set PACKAGEKITD_PID "$PACKAGEKITD_PID"
		env_set PACKAGEKIT_BACKEND "$BACKEND"
		wait_for_name org.freedesktop.PackageKit "$PACKAGEKITD_PID" "$DIR/packagekitd.log"
		log "packagekitd up (pid $PACKAGEKITD_PID, backend ${BACKEND:-default})"
	fi
fi

# 4. Guard: tear everything down once the owner process is gone.
if [ -n "$OWNER_PID" ] && ! alive "$(env_get GUARD_PID)"; then
	setsid bash -c '
		while kill -0 "$1" 2>/dev/null && [ -f "$2/env" ]; do sleep 1; done
		[ -f "$2/env" ] && exec "$3/stop-env.sh" "$2"
	' guard "$OWNER_PID" "$DIR" "$HERE" </dev/null >>"$DIR/guard.log" 2>&1 &
	env_set GUARD_PID "$!"
fi

echo "export DBUS_SYSTEM_BUS_ADDRESS=$ADDRESS"
