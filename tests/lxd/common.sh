# shellcheck shell=bash
# Shared settings for the real-LXD test harness. Sourced by the other scripts; not executable.
#
# Environment (all optional):
#   CROSTINI_TEST_CACHE  cache root outside the git checkout (default /var/cache/crostini-tests).
#                        Image: $CROSTINI_TEST_CACHE/image, CA + server cert: $CROSTINI_TEST_CACHE/ca.
#   CROSTINI_TEST_RUN    runtime dir for pidfiles/locks (default /run/crostini-tests).
#   LXD_DIR              the machine's LXD state dir (default /var/lib/lxd; socket
#                        $LXD_DIR/unix.socket), used by `ensure-lxd.sh` without --tests (demo.sh).
#   CROSTINI_TEST_LXD_DIR  state dir of the tests' own LXD (`--tests`; default
#                        /var/lib/crostini-tests/lxd).
#   CROSTINI_TEST_NETNS  network namespace of the tests' own LXD (default crostini-tests).
#
# Two daemons: `--tests` selects the test suite's own LXD (select_test_lxd below): its own
# LXD_DIR, socket, storage pool, and a network namespace of its own, so that its bridge (which
# tremplin always calls lxdbr0), dnsmasq and firewall rules never meet the machine's. Without
# --tests the scripts manage the machine's LXD as before (demo.sh uses that).

CACHE_DIR="${CROSTINI_TEST_CACHE:-/var/cache/crostini-tests}"
IMAGE_DIR="$CACHE_DIR/image"
CA_DIR="$CACHE_DIR/ca"
RUN_DIR="${CROSTINI_TEST_RUN:-/run/crostini-tests}"
export LXD_DIR="${LXD_DIR:-/var/lib/lxd}"
LXD_SOCKET="$LXD_DIR/unix.socket"
LXD_PIDFILE="$RUN_DIR/lxd.pid"
LXD_CAFILE="$RUN_DIR/lxd.ca" # the CA store fingerprint the daemon of $LXD_PIDFILE started with
LXD_LOG=/var/log/lxd-test.log
LXD_KIND=system
TEST_LXD_DIR="${CROSTINI_TEST_LXD_DIR:-/var/lib/crostini-tests/lxd}"
TEST_NETNS="${CROSTINI_TEST_NETNS:-crostini-tests}"
TEST_NETNS_PATH="/run/netns/$TEST_NETNS"
# Where the test CA goes in the system trust store.
SYSTEM_CA_FILE=/usr/local/share/ca-certificates/crostini-test-ca.crt

# select_test_lxd: from here on, LXD_* name the tests' own daemon (see the top of this file).
select_test_lxd() {
	case "$TEST_LXD_DIR" in
	/*) ;;
	*) die "CROSTINI_TEST_LXD_DIR must be an absolute path, not '$TEST_LXD_DIR'" ;;
	esac
	[ "$(readlink -m "$TEST_LXD_DIR")" != /var/lib/lxd ] ||
		die "the tests' LXD_DIR must not be the machine's /var/lib/lxd"
	export LXD_DIR="$TEST_LXD_DIR"
	LXD_SOCKET="$LXD_DIR/unix.socket"
	LXD_PIDFILE="$RUN_DIR/test-lxd.pid"
	LXD_CAFILE="$RUN_DIR/test-lxd.ca"
	LXD_LOG=/var/log/crostini-test-lxd.log
	LXD_KIND=tests
}

# The LXD_DIR a process runs with (from its environment; LXD's default when unset).
pid_lxd_dir() {
	local d
	d=$(tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n 's/^LXD_DIR=//p' | tail -n 1) || true
	readlink -m "${d:-/var/lib/lxd}"
}

# True when process $1 runs in the tests' network namespace.
pid_in_test_netns() {
	[ -e "$TEST_NETNS_PATH" ] || return 1
	[ "$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null)" = "$(stat -L -c %i "$TEST_NETNS_PATH" 2>/dev/null)" ]
}

log() { printf '[%s %s] %s\n' "$(basename "$0")" "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

require_root() {
	[ "$(id -u)" = 0 ] || die "must run as root (uid 0), running as uid $(id -u)"
}

# ensure_packages PKG...: installs missing Debian packages with apt-get (apt-get update at most once
# per boot, or when the install fails because the lists are stale). Services the packages ship are
# not started (policy-rc.d), so installing lxd never starts a second daemon.
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
			missing+=("$p")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing missing packages: ${missing[*]}"
	mkdir -p "$RUN_DIR"
	local policy_added=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy_added=1
	fi
	local rc=0
	if [ ! -e "$RUN_DIR/apt-updated" ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]; then
		timeout 600 apt-get update || { rc=$?; log "apt-get update failed (exit $rc)"; }
		touch "$RUN_DIR/apt-updated"
	fi
	if [ $rc -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y --no-install-recommends "${missing[@]}" || rc=$?
		if [ $rc -ne 0 ]; then
			log "apt-get install failed (exit $rc); retrying after apt-get update"
			rc=0
			timeout 600 apt-get update &&
				DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y --no-install-recommends "${missing[@]}" || rc=$?
		fi
	fi
	[ $policy_added -eq 1 ] && rm -f /usr/sbin/policy-rc.d
	[ $rc -eq 0 ] || die "could not install packages: ${missing[*]} (apt-get exit $rc)"
}

# Exclusive lock on a named lock file, waiting at most $2 seconds.
take_lock() {
	local name=$1 wait=${2:-300}
	mkdir -p "$RUN_DIR"
	exec {LOCK_FD}>"$RUN_DIR/$name.lock"
	flock -w "$wait" "$LOCK_FD" || die "timed out after ${wait}s waiting for lock $RUN_DIR/$name.lock (another harness script running?)"
}

# True when process $1 is an lxd daemon, not a process that only shares its name: liblxc's
# `[lxc monitor] <LXD_DIR>/containers <name>` (forked from the daemon, outliving it when it dies,
# with comm `lxd` and the daemon's environment) or the daemon's `lxd fork*`/`callhook` children.
is_lxd_daemon_process() {
	local argv0 args
	argv0=$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | head -n 1) || return 1
	case "$argv0" in
	"[lxc"*) return 1 ;;
	esac
	args=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | cut -d' ' -f2-)
	case " $args" in
	*" fork"* | *" callhook"* | *" waitready"* | *" shutdown"* | *" init"* | *" activateifneeded"*) return 1 ;;
	esac
	return 0
}

# Prints the PIDs of running lxd daemons (the `lxd` binary, not lxc/forkexec children) whose
# LXD_DIR is $LXD_DIR (so the machine's daemon and the tests' daemon never stand in for each other).
lxd_daemon_pids() {
	local pid exe want
	want=$(readlink -m "$LXD_DIR")
	for pid in $(pgrep -x lxd 2>/dev/null); do
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
		is_lxd_daemon_process "$pid" || continue
		if [ -n "$exe" ] && [ "$(pid_lxd_dir "$pid")" = "$want" ]; then echo "$pid"; fi
	done
	return 0
}

# True when the LXD API answers on the unix socket within $1 seconds.
lxd_responds() {
	timeout "$((${1:-5} + 2))" lxd waitready --timeout="${1:-5}" >/dev/null 2>&1
}

# The PID this harness recorded for the LXD it started, if that process is still an lxd daemon.
harness_lxd_pid() {
	[ -f "$LXD_PIDFILE" ] || return 1
	local pid
	pid=$(cat "$LXD_PIDFILE" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = lxd ] || return 1
	is_lxd_daemon_process "$pid" || return 1
	[ "$(pid_lxd_dir "$pid")" = "$(readlink -m "$LXD_DIR")" ] || return 1
	echo "$pid"
}

ca_store_fingerprint() {
	if [ -f "$SYSTEM_CA_FILE" ]; then sha256sum "$SYSTEM_CA_FILE" | cut -d' ' -f1; else echo none; fi
}

# stop_harness_lxd: stops the LXD this harness started (pidfile), never a foreign one.
# `lxd shutdown` (stops containers cleanly) with a timeout, then SIGTERM, then SIGKILL.
stop_harness_lxd() {
	local pid
	if ! pid=$(harness_lxd_pid); then
		rm -f "$LXD_PIDFILE" "$LXD_CAFILE"
		return 1
	fi
	log "stopping LXD pid $pid (started by this harness)"
	timeout 100 lxd shutdown --timeout=90 >/dev/null 2>&1 || log "lxd shutdown did not finish cleanly; signalling pid $pid"
	local i
	for i in $(seq 1 20); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
	if [ -d "/proc/$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		for i in $(seq 1 30); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
	fi
	if [ -d "/proc/$pid" ]; then
		log "LXD pid $pid ignored SIGTERM for 15s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		for i in $(seq 1 20); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
	fi
	[ -d "/proc/$pid" ] && die "LXD pid $pid is still alive after SIGKILL"
	rm -f "$LXD_PIDFILE" "$LXD_CAFILE"
	return 0
}

# True when process $1 started before the system CA bundle was last written (so a Go program like
# LXD, which reads the store once, may not trust the test CA).
started_before_ca_bundle() {
	local pid=$1 bundle=/etc/ssl/certs/ca-certificates.crt
	[ -f "$bundle" ] || return 1
	local ticks btime hz start mtime
	ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20) || return 1
	[ -n "$ticks" ] || return 1
	btime=$(awk '/^btime/ { print $2 }' /proc/stat)
	hz=$(getconf CLK_TCK)
	start=$((btime + ticks / hz))
	mtime=$(stat -c %Y "$bundle")
	[ "$start" -lt "$mtime" ]
}
