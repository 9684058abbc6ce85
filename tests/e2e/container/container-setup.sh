#!/bin/sh
# Runs as root INSIDE a Crostini test container (pushed there with the other files of this
# directory) and makes garcon run the way it does on a Chromebook, except for its addresses:
#
#   1. installs the given .deb files with dpkg (the cros-garcon container package: its Depends
#      are in the test image, so no network is needed);
#   2. installs the fixture application e2e-marker (desktop file, program, 32 and 48 px icons);
#   3. adds a drop-in to the packaged user unit cros-garcon.service that keeps everything but
#      the addresses: garcon reports to --host-address and serves on --listen (unix sockets in
#      the host directory mounted into the container) instead of vsock;
#   4. starts the user's systemd instance (user@UID.service) if needed and (re)starts
#      cros-garcon.service in it, then waits until the unit is active.
#
#   container-setup.sh --user NAME --host-address ADDR --listen ADDR [--deb FILE]...
#
# Prints "garcon: active (user unit cros-garcon.service)" on success. Exit 1 with the unit's
# journal on failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
user="" host_address="" listen="" debs=""
while [ $# -gt 0 ]; do
    case "$1" in
    --user) user=$2; shift 2 ;;
    --host-address) host_address=$2; shift 2 ;;
    --listen) listen=$2; shift 2 ;;
    --deb) debs="$debs $2"; shift 2 ;;
    *) echo "container-setup.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$user" ] && [ -n "$host_address" ] && [ -n "$listen" ] ||
    { echo "usage: container-setup.sh --user NAME --host-address ADDR --listen ADDR [--deb FILE]..." >&2; exit 2; }
uid=$(id -u "$user")

# 1. Packages.
if [ -n "$debs" ]; then
    # shellcheck disable=SC2086 # word splitting of the list is intended
    if ! DEBIAN_FRONTEND=noninteractive dpkg -i $debs >/tmp/container-setup-dpkg.log 2>&1; then
        cat /tmp/container-setup-dpkg.log >&2
        echo "container-setup.sh: dpkg -i$debs failed (missing Depends in the image?)" >&2
        exit 1
    fi
fi

# 2. Fixture application.
install -m 0755 "$here/e2e-marker" /usr/local/bin/e2e-marker
install -m 0644 "$here/e2e-marker.desktop" /usr/share/applications/e2e-marker.desktop
for n in 32 48; do
    install -D -m 0644 "$here/e2e-marker-$n.png" "/usr/share/icons/hicolor/${n}x${n}/apps/e2e-marker.png"
done
rm -f /tmp/e2e-marker.launched

# 3. Addresses of garcon through a drop-in (the packaged unit and override stay untouched).
dropin=/etc/systemd/user/cros-garcon.service.d
mkdir -p "$dropin"
cat >"$dropin/90-crostini-host.conf" <<UNIT
# Written by tests/e2e/container/container-setup.sh: garcon talks to crostini-host over unix
# sockets in a host directory mounted into this container instead of vsock.
[Service]
ExecStart=
ExecStart=/opt/google/cros-containers/bin/garcon --server --host-address $host_address --listen $listen --log-stderr
UNIT

# 4. The user's service manager (running already when linger was enabled before boot).
systemctl start "user@$uid.service"
i=0
until [ -S "/run/user/$uid/bus" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || { echo "container-setup.sh: /run/user/$uid/bus did not appear" >&2; exit 1; }
    sleep 0.1
done
as_user() {
    runuser -u "$user" -- env XDG_RUNTIME_DIR="/run/user/$uid" \
        DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" "$@"
}
as_user systemctl --user daemon-reload
as_user systemctl --user restart cros-garcon.service
i=0
until as_user systemctl --user is-active --quiet cros-garcon.service; do
    i=$((i + 1))
    if [ $i -gt 50 ]; then
        as_user systemctl --user status --no-pager cros-garcon.service >&2 || true
        as_user journalctl --user -u cros-garcon.service --no-pager -n 50 >&2 || true
        echo "container-setup.sh: cros-garcon.service is not active" >&2
        exit 1
    fi
    sleep 0.1
done
echo "garcon: active (user unit cros-garcon.service)"
