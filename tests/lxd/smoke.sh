#!/bin/bash
# End-to-end smoke test of the real-LXD harness, on the tests' own LXD (ensure-lxd.sh --tests):
#   ensure-lxd.sh --tests -> build-image.sh -> simplestreams.py (background, random port, in the
#   tests' network namespace, as the lxc client calls are, so that 127.0.0.1 is the same for both)
#   -> lxc launch <server>:crostini-test smoke-ct -> eth0 IPv4 from lxdbr0 within 120s
#   -> systemctl is-system-running = running|degraded -> PackageKit present -> delete, stop server.
#
# Env: SMOKE_CONTAINER (default smoke-ct), SMOKE_FRESH_IMAGE=1 deletes LXD's cached copy of the image
#      first so that the download path is exercised, SMOKE_THROTTLE=BYTES_PER_SEC for the rootfs.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/common.sh"
select_test_lxd
require_root
LXC=("$HERE/netns.sh" exec lxc)

CT=${SMOKE_CONTAINER:-smoke-ct}
REMOTE=crostini-smoke
SERVER_PID=
URL=
TMP=$(mktemp -d /tmp/crostini-smoke.XXXXXX)
export LXD_CONF="$TMP/lxc-conf" # temporary lxc client config: the remote is never added globally
mkdir -p "$LXD_CONF"

cleanup() {
	local rc=$?
	set +e
	if timeout 30 "${LXC[@]}" info "$CT" >/dev/null 2>&1; then
		log "deleting container $CT"
		timeout 120 "${LXC[@]}" delete --force "$CT" >/dev/null || log "WARNING: could not delete $CT"
	fi
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID"
		for _ in $(seq 1 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.25; done
		kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID"
	fi
	# LXD's simplestreams index cache for this (one-off) server URL.
	[ -n "${URL:-}" ] && rm -rf "$LXD_DIR/cache/$(printf %s "$URL" | sha256sum | cut -d' ' -f1)"
	if [ $rc -ne 0 ]; then
		log "FAILED (exit $rc); simplestreams server log:"
		tail -n 20 "$TMP/server.err" >&2 2>/dev/null
	fi
	rm -rf "$TMP"
	exit $rc
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(now)
socket=$("$HERE/ensure-lxd.sh" --tests | tail -n 1)
[ "$socket" = "$LXD_SOCKET" ] || die "ensure-lxd.sh printed '$socket', expected $LXD_SOCKET"
T_LXD=$(elapsed "$t")

t=$(now)
"$HERE/build-image.sh" >/dev/null
T_BUILD=$(elapsed "$t")

# --- image server ------------------------------------------------------------------------------
throttle=${SMOKE_THROTTLE:-0}
"$HERE/netns.sh" exec python3 "$HERE/simplestreams.py" --port 0 --throttle "$throttle" >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!
for _ in $(seq 1 100); do
	grep -q '^ALIAS=' "$TMP/server.out" 2>/dev/null && break
	kill -0 "$SERVER_PID" 2>/dev/null || die "simplestreams.py exited: $(cat "$TMP/server.err")"
	sleep 0.1
done
grep -q '^ALIAS=' "$TMP/server.out" || die "simplestreams.py did not print its port within 10s"
URL=$(sed -n 's/^URL=//p' "$TMP/server.out")
FP=$(sed -n 's/^FINGERPRINT=//p' "$TMP/server.out")
log "image server at $URL (fingerprint ${FP:0:12})"

timeout 60 "${LXC[@]}" remote add "$REMOTE" "$URL" --protocol simplestreams --public >/dev/null ||
	die "lxc remote add $URL failed (is the test CA trusted? see ca.sh)"

if timeout 30 "${LXC[@]}" info "$CT" >/dev/null 2>&1; then
	log "removing leftover container $CT from an earlier run"
	timeout 120 "${LXC[@]}" delete --force "$CT" >/dev/null || die "could not delete leftover container $CT"
fi
if [ "${SMOKE_FRESH_IMAGE:-0}" = 1 ] && timeout 30 "${LXC[@]}" image info "$FP" >/dev/null 2>&1; then
	log "deleting LXD's cached copy of image ${FP:0:12} (SMOKE_FRESH_IMAGE=1)"
	timeout 60 "${LXC[@]}" image delete "$FP" || die "lxc image delete $FP failed"
fi
cached=no
timeout 30 "${LXC[@]}" image info "$FP" >/dev/null 2>&1 && cached=yes

# --- launch ------------------------------------------------------------------------------------
t=$(now)
log "lxc launch $REMOTE:crostini-test $CT (image already in LXD: $cached)"
timeout 600 "${LXC[@]}" launch "$REMOTE:crostini-test" "$CT" >"$TMP/launch.log" 2>&1 ||
	die "lxc launch failed: $(cat "$TMP/launch.log")"
T_LAUNCH=$(elapsed "$t")

t=$(now)
addr=
for _ in $(seq 1 240); do
	addr=$(timeout 10 "${LXC[@]}" query "/1.0/instances/$CT/state" 2>/dev/null | python3 -c '
import json, sys
try:
    st = json.load(sys.stdin)
    for a in st["network"]["eth0"]["addresses"]:
        if a["family"] == "inet" and a["address"].startswith("100.115.92."):
            print(a["address"])
            break
except (ValueError, KeyError, TypeError):
    pass
' || true)
	[ -n "$addr" ] && break
	sleep 0.5
done
[ -n "$addr" ] || die "container $CT got no IPv4 address from lxdbr0 on eth0 within 120s"
T_ADDR=$(elapsed "$t")
log "eth0 address $addr after ${T_ADDR}s"

t=$(now)
state=$(timeout 130 "${LXC[@]}" exec "$CT" -- timeout 120 systemctl is-system-running --wait 2>/dev/null || true)
T_SYSTEMD=$(elapsed "$t")
case "$state" in
running) ;;
degraded)
	log "systemd is degraded; failed units:"
	timeout 30 "${LXC[@]}" exec "$CT" -- systemctl --failed --no-legend >&2 || true
	;;
*) die "systemctl is-system-running in $CT says '$state' (want running or degraded)" ;;
esac
log "systemd state: $state"

pk=$(timeout 60 "${LXC[@]}" exec "$CT" -- sh -c 'pkcon --version 2>/dev/null || { test -x /usr/libexec/packagekitd && echo packagekitd; }' || true)
[ -n "$pk" ] || die "PackageKit missing in $CT (no pkcon, no /usr/libexec/packagekitd)"
log "PackageKit: $pk"

hn=$(timeout 30 "${LXC[@]}" exec "$CT" -- cat /etc/hostname || true)
[ "$hn" = "$CT" ] || die "/etc/hostname in $CT is '$hn', expected '$CT' (metadata template)"
audit=$(timeout 60 "${LXC[@]}" exec "$CT" -- dpkg --audit 2>&1 || true)
[ -z "$audit" ] || die "dpkg --audit in $CT is not empty: $audit"

t=$(now)
timeout 120 "${LXC[@]}" delete --force "$CT" >/dev/null || die "lxc delete --force $CT failed"
T_DELETE=$(elapsed "$t")

echo "SMOKE OK: ensure-lxd ${T_LXD}s, build-image ${T_BUILD}s, launch ${T_LAUNCH}s (image cached before: $cached)," \
	"eth0 address ${T_ADDR}s ($addr), systemd ${state} after +${T_SYSTEMD}s, delete ${T_DELETE}s"
