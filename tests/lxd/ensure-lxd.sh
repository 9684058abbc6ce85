#!/bin/bash
# Makes sure a usable LXD daemon is running for the real-LXD tests, then prints its unix socket path
# on stdout (last line; all progress goes to stderr).
#
#   sudo tests/lxd/ensure-lxd.sh            -> /var/lib/lxd/unix.socket
#
# Steps (each idempotent):
#  1. installs lxd lxd-client dnsmasq-base iptables debootstrap squashfs-tools if missing;
#  2. ca.sh: test CA in the system trust store BEFORE LXD starts (LXD reads the store at start);
#  3. adopts a running LXD (whoever started it), or starts one:
#       lxd --group root --logfile /var/log/lxd-test.log   (pidfile /run/crostini-tests/lxd.pid)
#     An LXD started by this harness is restarted when the CA changed since it started;
#  4. lxd waitready --timeout=120;
#  5. storage pool `default` (dir), bridge `lxdbr0` (100.115.92.1/24, no NAT, no IPv6) and the
#     default profile's root/eth0 devices, via preseed when nothing exists, else only what is missing.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/common.sh"
HERE=$(dirname "$(readlink -f "$0")")
require_root

ensure_packages lxd lxd-client dnsmasq-base iptables debootstrap squashfs-tools xz-utils
take_lock ensure-lxd 600

ca_out=$("$HERE/ca.sh") || die "ca.sh failed"
ca_changed=0
[ "$ca_out" = "CA_CHANGED=1" ] && ca_changed=1
ca_now=$(ca_store_fingerprint)

start_lxd() {
	mkdir -p "$RUN_DIR"
	log "starting LXD: lxd --group root --logfile $LXD_LOG"
	ulimit -n 65536 2>/dev/null || true
	# setsid: the daemon must outlive this script and its process group.
	# The lock fd is closed in the child, or the daemon would hold the harness lock forever.
	setsid lxd --group root --logfile "$LXD_LOG" </dev/null >>"$RUN_DIR/lxd.out" 2>&1 {LOCK_FD}>&- &
	local pid=$!
	echo "$pid" >"$LXD_PIDFILE"
	echo "$ca_now" >"$RUN_DIR/lxd.ca"
	local i
	for i in $(seq 1 240); do
		lxd_responds 1 && return 0
		if ! [ -d "/proc/$pid" ]; then
			rm -f "$LXD_PIDFILE" "$RUN_DIR/lxd.ca"
			log "last lines of $LXD_LOG and $RUN_DIR/lxd.out:"
			tail -n 20 "$LXD_LOG" "$RUN_DIR/lxd.out" >&2 2>/dev/null || true
			die "LXD (pid $pid) exited during start-up"
		fi
		sleep 0.5
	done
	return 0 # the waitready below reports the timeout
}

if ours=$(harness_lxd_pid); then
	started_ca=$(cat "$RUN_DIR/lxd.ca" 2>/dev/null || echo unknown)
	stale=0
	if [ "$ca_changed" = 1 ]; then
		stale=1
	elif [ "$started_ca" = unknown ]; then
		started_before_ca_bundle "$ours" && stale=1
		[ $stale = 1 ] || echo "$ca_now" >"$RUN_DIR/lxd.ca"
	elif [ "$started_ca" != "$ca_now" ]; then
		stale=1
	fi
	if [ $stale = 1 ]; then
		log "LXD pid $ours (ours) started before the current test CA was installed; restarting it"
		stop_harness_lxd || true
		start_lxd
	else
		log "adopting LXD pid $ours (started earlier by this harness)"
	fi
else
	rm -f "$LXD_PIDFILE" "$RUN_DIR/lxd.ca"
	others=$(lxd_daemon_pids | xargs)
	if [ -n "$others" ]; then
		log "adopting LXD pid $others (not started by this harness; it will not be restarted or stopped)"
		first=${others%% *}
		if [ "$ca_changed" = 1 ] || started_before_ca_bundle "$first"; then
			log "WARNING: the test CA was just added but this LXD was already running; it may not trust" \
				"https://127.0.0.1 image servers until it is restarted by whoever started it"
		fi
	elif lxd_responds 2; then
		log "adopting LXD answering on $LXD_SOCKET (no daemon pid visible)"
	else
		start_lxd
	fi
fi

timeout 130 lxd waitready --timeout=120 ||
	die "LXD did not become ready within 120s (socket $LXD_SOCKET; log $LXD_LOG)"

# --- initialisation -----------------------------------------------------------------------------
lxc_q() { timeout 60 lxc "$@" >/dev/null 2>&1; }
pool_exists=0
net_exists=0
lxc_q storage show default && pool_exists=1
lxc_q network show lxdbr0 && net_exists=1

if [ $pool_exists = 0 ] && [ $net_exists = 0 ]; then
	log "initialising LXD with preseed (pool default, bridge lxdbr0 100.115.92.1/24)"
	timeout 120 lxd init --preseed <<'PRESEED' || die "lxd init --preseed failed"
config: {}
storage_pools:
- name: default
  driver: dir
networks:
- name: lxdbr0
  type: bridge
  config:
    ipv4.address: 100.115.92.1/24
    ipv4.nat: "false"
    ipv6.address: none
profiles:
- name: default
  devices:
    root:
      path: /
      pool: default
      type: disk
    eth0:
      name: eth0
      network: lxdbr0
      type: nic
PRESEED
else
	if [ $pool_exists = 0 ]; then
		log "creating storage pool default (dir)"
		timeout 120 lxc storage create default dir >/dev/null || die "lxc storage create default dir failed"
	fi
	if [ $net_exists = 0 ]; then
		log "creating network lxdbr0"
		timeout 120 lxc network create lxdbr0 ipv4.address=100.115.92.1/24 ipv4.nat=false ipv6.address=none >/dev/null ||
			die "lxc network create lxdbr0 failed"
	fi
	profile=$(timeout 60 lxc profile show default) || die "lxc profile show default failed"
	if ! grep -qE '^  root:' <<<"$profile"; then
		log "adding root disk to default profile"
		timeout 60 lxc profile device add default root disk path=/ pool=default >/dev/null ||
			die "could not add root disk to default profile"
	fi
	if ! grep -qE '^  eth0:' <<<"$profile"; then
		log "adding eth0 nic to default profile"
		timeout 60 lxc profile device add default eth0 nic network=lxdbr0 name=eth0 >/dev/null ||
			die "could not add eth0 nic to default profile"
	fi
fi

addr=$(timeout 60 lxc network get lxdbr0 ipv4.address 2>/dev/null || true)
[ "$addr" = 100.115.92.1/24 ] || log "WARNING: lxdbr0 ipv4.address is '$addr', expected 100.115.92.1/24 (left unchanged)"
[ -S "$LXD_SOCKET" ] || die "LXD is ready but $LXD_SOCKET is not a socket"
log "LXD ready"
echo "$LXD_SOCKET"
