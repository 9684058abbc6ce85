#!/bin/bash
# Runs `lxd ARGS...` as the test suite's own LXD daemon:
#   LXD_DIR=$CROSTINI_TEST_LXD_DIR (default /var/lib/crostini-tests/lxd), inside the network
#   namespace $CROSTINI_TEST_NETNS (default crostini-tests; see netns.sh), in a private mount
#   namespace whose /sys describes that network namespace (LXD reads /sys/class/net), with the
#   machine's /sys submounts (cgroups, ...) put back.
# Every step exec()s, so the caller's child pid IS the lxd daemon: tremplin's --lxd-binary can
# supervise and signal it (the kill-LXD test does), and ensure-lxd.sh records it in its pidfile.
#
#   tests/lxd/test-lxd.sh --group root --logfile /var/log/crostini-test-lxd.log
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
. "$HERE/common.sh"
select_test_lxd

if [ "${1:-}" != --inside ]; then
	require_root
	[ -e "$TEST_NETNS_PATH" ] || die "network namespace $TEST_NETNS is missing (tests/lxd/ensure-lxd.sh --tests creates it)"
	mkdir -p "$LXD_DIR" "$RUN_DIR"
	chmod 711 "$LXD_DIR"
	exec unshare --mount --propagation slave -- nsenter --net="$TEST_NETNS_PATH" -- "$HERE/test-lxd.sh" --inside "$@"
fi
shift

# The mount points directly below /sys (e.g. /sys/fs/cgroup): kept across the new sysfs.
sys_id=$(awk '$5 == "/sys" { id = $1 } END { print id }' /proc/self/mountinfo)
mapfile -t submounts < <(awk -v p="$sys_id" '$2 == p { print $5 }' /proc/self/mountinfo)
stash=$(mktemp -d "$RUN_DIR/sys.XXXXXX")
mount --rbind /sys "$stash"
mount -t sysfs sysfs /sys
for m in "${submounts[@]}"; do
	mkdir -p "$m" 2>/dev/null || true
	mount --rbind "$stash/${m#/sys/}" "$m"
done
umount -l "$stash"
rmdir "$stash"
[ -d /sys/class/net/lo ] || die "the new /sys does not show the network namespace"
exec lxd "$@"
