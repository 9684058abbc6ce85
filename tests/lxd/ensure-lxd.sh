#!/bin/bash
# Makes sure a usable LXD daemon is running, then prints its unix socket path on stdout (last
# line; all progress goes to stderr).
#
#   sudo tests/lxd/ensure-lxd.sh --tests    -> /var/lib/crostini-tests/lxd/unix.socket
#   sudo tests/lxd/ensure-lxd.sh            -> /var/lib/lxd/unix.socket (the machine's LXD; demo.sh)
#
# --tests: the test suite's own daemon, never the machine's: LXD_DIR /var/lib/crostini-tests/lxd
# (CROSTINI_TEST_LXD_DIR), its own socket and storage pool, and its own network namespace
# `crostini-tests` (netns.sh), where its lxdbr0 bridge and dnsmasq live; started through
# test-lxd.sh, pidfile /run/crostini-tests/test-lxd.pid, log /var/log/crostini-test-lxd.log. It is
# left running between runs and adopted next time; only it is ever restarted (when the test CA
# changed since it started, or when it is not in its network namespace).
#
# Without --tests (the machine's LXD, as demo.sh wants it): adopts a running LXD (whoever started
# it), or starts `lxd --group root --logfile /var/log/lxd-test.log` (pidfile
# /run/crostini-tests/lxd.pid); only an LXD this script started is restarted for a CA change.
#
# Steps (each idempotent):
#  1. installs lxd lxd-client dnsmasq-base iptables debootstrap squashfs-tools if missing;
#  2. ca.sh: test CA in the system trust store BEFORE LXD starts (LXD reads the store at start);
#  3. adopts or starts the daemon as above;
#  4. lxd waitready --timeout=120;
#  5. storage pool `default` (dir), bridge `lxdbr0` (100.115.92.1/24, no NAT, no IPv6) and the
#     default profile's root/eth0 devices, via preseed when nothing exists, else only what is missing.
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/common.sh"
HERE=$(dirname "$(readlink -f "$0")")
case "${1:-}" in
--tests) select_test_lxd ;;
--system | "") ;;
*) die "unknown argument '$1' (use --tests for the test suite's own LXD)" ;;
esac
require_root

ensure_packages lxd lxd-client dnsmasq-base iptables debootstrap squashfs-tools xz-utils
take_lock "ensure-lxd-$LXD_KIND" 600

ca_out=$("$HERE/ca.sh") || die "ca.sh failed"
ca_changed=0
[ "$ca_out" = "CA_CHANGED=1" ] && ca_changed=1
ca_now=$(ca_store_fingerprint)

start_lxd() {
	mkdir -p "$RUN_DIR"
	local cmd=(lxd)
	[ "$LXD_KIND" = tests ] && cmd=("$HERE/test-lxd.sh")
	log "starting LXD ($LXD_KIND): ${cmd[*]} --group root --logfile $LXD_LOG"
	ulimit -n 65536 2>/dev/null || true
	# setsid: the daemon must outlive this script and its process group.
	# The lock fd is closed in the child, or the daemon would hold the harness lock forever.
	setsid "${cmd[@]}" --group root --logfile "$LXD_LOG" </dev/null >>"$RUN_DIR/$LXD_KIND-lxd.out" 2>&1 {LOCK_FD}>&- &
	local pid=$!
	echo "$pid" >"$LXD_PIDFILE"
	echo "$ca_now" >"$LXD_CAFILE"
	local i
	for i in $(seq 1 240); do
		lxd_responds 1 && return 0
		if ! [ -d "/proc/$pid" ]; then
			rm -f "$LXD_PIDFILE" "$LXD_CAFILE"
			log "last lines of $LXD_LOG and $RUN_DIR/$LXD_KIND-lxd.out:"
			tail -n 20 "$LXD_LOG" "$RUN_DIR/$LXD_KIND-lxd.out" >&2 2>/dev/null || true
			die "LXD (pid $pid) exited during start-up"
		fi
		sleep 0.5
	done
	return 0 # the waitready below reports the timeout
}

if [ "$LXD_KIND" = tests ]; then
	"$HERE/netns.sh" create
	# A daemon on the tests' LXD_DIR is the tests' own, whoever launched it (tremplin launches one
	# in the kill-LXD test): record it, so that the checks below apply to it.
	if ! harness_lxd_pid >/dev/null; then
		rm -f "$LXD_PIDFILE" "$LXD_CAFILE"
		mine=$(lxd_daemon_pids | head -n 1)
		if [ -n "$mine" ]; then
			log "found the tests' LXD (pid $mine, LXD_DIR $LXD_DIR) without a pidfile; adopting it"
			echo "$mine" >"$LXD_PIDFILE"
		fi
	fi
fi

if ours=$(harness_lxd_pid); then
	started_ca=$(cat "$LXD_CAFILE" 2>/dev/null || echo unknown)
	stale=0
	if [ "$ca_changed" = 1 ]; then
		stale=1
	elif [ "$started_ca" = unknown ]; then
		started_before_ca_bundle "$ours" && stale=1
		[ $stale = 1 ] || echo "$ca_now" >"$LXD_CAFILE"
	elif [ "$started_ca" != "$ca_now" ]; then
		stale=1
	fi
	if [ "$LXD_KIND" = tests ] && ! pid_in_test_netns "$ours"; then
		log "LXD pid $ours (the tests') is not in network namespace $TEST_NETNS; restarting it"
		stop_harness_lxd || true
		start_lxd
	elif [ $stale = 1 ]; then
		log "LXD pid $ours (ours) started before the current test CA was installed; restarting it"
		stop_harness_lxd || true
		start_lxd
	else
		log "adopting LXD pid $ours (started earlier by this harness)"
	fi
elif [ "$LXD_KIND" = tests ]; then
	start_lxd
else
	rm -f "$LXD_PIDFILE" "$LXD_CAFILE"
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
if [ "$LXD_KIND" = tests ]; then
	# The isolation the tests rely on: not the machine's socket, and a daemon in its own netns.
	[ "$(readlink -m "$LXD_SOCKET")" != /var/lib/lxd/unix.socket ] || die "the tests' LXD socket is the machine's"
	pid=$(harness_lxd_pid) || die "the LXD answering on $LXD_SOCKET is not the one in $LXD_PIDFILE"
	pid_in_test_netns "$pid" || die "the tests' LXD (pid $pid) is not in network namespace $TEST_NETNS"
fi
log "LXD ready"
echo "$LXD_SOCKET"
