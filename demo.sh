#!/usr/bin/env bash
# The main job, for a person: a whole Crostini stack on this machine, as on a Chromebook but with
# unix sockets instead of vsock and crostini-host standing in for ChromeOS's cicerone.
#
#   ./demo.sh          set up (or reuse) everything and walk through it
#   ./demo.sh status   show what runs and where
#   ./demo.sh stop     stop the background processes (crostini-host serve, tremplin)
#   ./demo.sh clean    stop them and delete the demo container, its LXD profile and the state
#
# What it does: starts LXD if needed (tests/lxd/ensure-lxd.sh), builds the test image (cached)
# and the binaries, starts `crostini-host serve --state-dir` and tremplin in the background (they
# keep running; pids and logs under $CROSTINI_DEMO_DIR), then: StartLxd, creates the container
# from a local simplestreams server with a progress bar (skipped when it exists), starts it with a
# fresh token (skipped when it runs), installs the cros-garcon package so that garcon runs as the
# user's systemd unit, and shows the application list, writes an icon to a PNG file and installs
# (then removes) a package with progress.
#
# Environment: CROSTINI_DEMO_DIR (default /var/lib/crostini-demo), CROSTINI_DEMO_CONTAINER
# (default penguin), CROSTINI_DEMO_USER (default: $SUDO_USER, else crostini). Needs root (LXD),
# a Rust toolchain and network access to a Debian mirror for the first image build.
set -euo pipefail
cd "$(dirname "$0")"
repo=$(pwd)

if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "demo.sh: run as root (LXD needs it)" >&2; exit 1; }
    exec sudo -E "$0" "$@"
fi

DIR=${CROSTINI_DEMO_DIR:-/var/lib/crostini-demo}
NAME=${CROSTINI_DEMO_CONTAINER:-penguin}
USER_NAME=${CROSTINI_DEMO_USER:-${SUDO_USER:-crostini}}
[ "$USER_NAME" != root ] || USER_NAME=crostini
PROFILE=crostini-demo
SUBNET=100.115.92.1/24
MOUNT=/mnt/crostini-host           # where $DIR/sock appears inside the container
SOCK=$DIR/sock
STATE=$DIR/state
LOGS=$DIR/logs
BIN=$repo/target/debug
HOST_BIN=$BIN/crostini-host
TREMPLIN_ADDR=unix://$DIR/tremplin.sock
GARCON_ADDR=unix://$SOCK/garcon.sock

bold=$(tput bold 2>/dev/null || true)
plain=$(tput sgr0 2>/dev/null || true)
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }

host() { "$HOST_BIN" --state-dir "$STATE" "$@"; }
tremplin_cli() { host tremplin --address "$TREMPLIN_ADDR" "$@"; }
garcon_cli() { host garcon --address "$GARCON_ADDR" "$@"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_background() {
    local name pidfile
    for name in tremplin serve; do
        pidfile=$DIR/$name.pid
        if alive "$pidfile"; then
            kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
            for _ in $(seq 50); do alive "$pidfile" || break; sleep 0.1; done
            alive "$pidfile" && kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
            info "stopped $name (pid $(cat "$pidfile"))"
        fi
        rm -f "$pidfile"
    done
}

container_state() { # prints RUNNING, STOPPED, ... or nothing when it does not exist
    lxc list --format csv -c s "^${NAME}\$" 2>/dev/null | head -n1
}

show_status() {
    step "status"
    local name
    for name in serve tremplin; do
        if alive "$DIR/$name.pid"; then info "$name: running, pid $(cat "$DIR/$name.pid")"
        else info "$name: not running"; fi
    done
    info "container $NAME: $(container_state || true)"
    info "state directory:  $STATE (events.jsonl, apps/, mime/)"
    info "logs:             $LOGS"
}

case "${1:-run}" in
run) ;;
status) show_status; exit 0 ;;
stop) step "stopping the background processes"; stop_background; exit 0 ;;
clean)
    step "stopping the background processes"; stop_background
    step "deleting container $NAME, profile $PROFILE and $DIR"
    lxc delete --force "$NAME" 2>/dev/null && info "deleted $NAME" || true
    lxc profile delete "$PROFILE" >/dev/null 2>&1 && info "deleted profile $PROFILE" || true
    rm -rf "$DIR"
    exit 0
    ;;
*) sed -n '2,8p' "$0"; exit 2 ;;
esac

# ---------------------------------------------------------------------------------------------
mkdir -p "$DIR" "$SOCK" "$STATE" "$LOGS" "$DIR/tools/bin" "$DIR/tokens" "$DIR/shared" \
    "$DIR/stateful" "$DIR/fonts" "$DIR/external" "$DIR/debs"

step "LXD"
lxd_socket=$(tests/lxd/ensure-lxd.sh 2>"$LOGS/ensure-lxd.log" | tail -n1) ||
    die "tests/lxd/ensure-lxd.sh failed; see $LOGS/ensure-lxd.log"
info "LXD answers on $lxd_socket"

step "test image (debootstrap bookworm, cached in /var/cache/crostini-tests/image)"
tests/lxd/build-image.sh 2>&1 | sed 's/^/    /'

step "building crostini-host, tremplin and garcon (debug)"
cargo build --quiet -p crostini-host -p tremplin -p garcon --bins
info "binaries in $BIN"

# Container uid 1000 connects to the host's sockets and creates garcon's in $SOCK.
chmod 0755 "$DIR" "$DIR/tools" "$DIR/tools/bin"
chmod 0777 "$SOCK"
# The guest tools directory tremplin mounts at /opt/google/cros-containers: garcon. Replaced by a
# rename, so a garcon running from the old file keeps running.
install -m 0755 "$BIN/garcon" "$DIR/tools/bin/.garcon.new"
mv -f "$DIR/tools/bin/.garcon.new" "$DIR/tools/bin/garcon"

step "packages: cros-garcon (packaging/build-deb.sh) and a demo application package"
garcon_deb=$(OUT_DIR=$DIR/debs packaging/build-deb.sh | tail -n1)
hello_deb=$(tests/e2e/build-fixture-deb.sh "$DIR/debs" | tail -n1)
info "$garcon_deb"
info "$hello_deb"

# ---------------------------------------------------------------------------------------------
step "crostini-host serve (the cicerone stand-in)"
if alive "$DIR/serve.pid"; then
    info "already running, pid $(cat "$DIR/serve.pid")"
else
    rm -f "$SOCK/8889.sock" "$SOCK/7778.sock"
    setsid "$HOST_BIN" --state-dir "$STATE" serve \
        --container-listen "unix://$SOCK/8889.sock" \
        --tremplin-listen "unix://$SOCK/7778.sock" \
        </dev/null >"$LOGS/serve.jsonl" 2>"$LOGS/serve.log" &
    echo $! >"$DIR/serve.pid"
    for _ in $(seq 100); do [ -S "$SOCK/8889.sock" ] && [ -S "$SOCK/7778.sock" ] && break; sleep 0.1; done
    [ -S "$SOCK/8889.sock" ] || die "crostini-host serve did not start; see $LOGS/serve.log"
    chmod 0666 "$SOCK/8889.sock" "$SOCK/7778.sock"
    info "started, pid $(cat "$DIR/serve.pid")"
fi
info "ContainerListener unix://$SOCK/8889.sock, TremplinListener unix://$SOCK/7778.sock"
info "every call it receives: $STATE/events.jsonl (and $LOGS/serve.jsonl)"

step "tremplin (the VM agent) against LXD"
if alive "$DIR/tremplin.pid"; then
    info "already running, pid $(cat "$DIR/tremplin.pid")"
else
    rm -f "$DIR/tremplin.sock"
    setsid "$BIN/tremplin" --log-stderr \
        --listen "$TREMPLIN_ADDR" \
        --host-address "unix://$SOCK/7778.sock" \
        --crash-address none \
        --lxd-socket "$lxd_socket" \
        -lxd_subnet "$SUBNET" \
        --milestone 120 \
        --lsb-release "$DIR/no-lsb-release" \
        --milestone-file "$DIR/cros_milestone" \
        --tokens-dir "$DIR/tokens" \
        --guest-tools-dir "$DIR/tools" \
        --shared-dir "$DIR/shared" \
        --stateful-dir "$DIR/stateful" \
        --lxd-conf-dir "$DIR/stateful/lxd_conf" --lxd-conf-owner root \
        --fonts-dir "$DIR/fonts" \
        --external-dir "$DIR/external" \
        --resolv-conf /etc/resolv.conf --arc-hosts /dev/null \
        --lxd-profile "$PROFILE" \
        --no-apt-key-refresh \
        </dev/null >/dev/null 2>"$LOGS/tremplin.log" &
    echo $! >"$DIR/tremplin.pid"
    for _ in $(seq 100); do [ -S "$DIR/tremplin.sock" ] && break; sleep 0.1; done
    [ -S "$DIR/tremplin.sock" ] || die "tremplin did not start; see $LOGS/tremplin.log"
    info "started, pid $(cat "$DIR/tremplin.pid")"
fi
info "serves $TREMPLIN_ADDR; log $LOGS/tremplin.log"

step "StartLxd"
tremplin_cli start-lxd | sed 's/^/    /'
# The host's socket directory goes into every container of tremplin's profile (tremplin rewrites
# the profile at StartLxd and replaces instance devices at every StartContainer, so the profile is
# where the device survives): garcon reaches crostini-host there, as it reaches cicerone over vsock.
if ! lxc profile device show "$PROFILE" | grep -q '^crostini-host:'; then
    lxc profile device add "$PROFILE" crostini-host disk source="$SOCK" path="$MOUNT" >/dev/null
fi
info "host directory $SOCK is $MOUNT in containers of profile $PROFILE"

# ---------------------------------------------------------------------------------------------
step "container $NAME"
if [ -n "$(container_state)" ]; then
    info "exists ($(container_state)); not creating it again"
else
    server_out=$DIR/simplestreams.out
    python3 tests/lxd/simplestreams.py --port 0 --throttle 20000000 \
        >"$server_out" 2>"$LOGS/simplestreams.log" &
    server_pid=$!
    trap 'kill $server_pid 2>/dev/null || true' EXIT
    for _ in $(seq 100); do grep -q '^ALIAS=' "$server_out" 2>/dev/null && break; sleep 0.1; done
    url=$(sed -n 's/^URL=//p' "$server_out")
    alias=$(sed -n 's/^ALIAS=//p' "$server_out")
    fingerprint=$(sed -n 's/^FINGERPRINT=//p' "$server_out")
    [ -n "$url" ] || die "the simplestreams server did not start; see $LOGS/simplestreams.log"
    info "image server $url (alias $alias, 20 MB/s)"
    # LXD keeps pulled images; without this the download (and its progress) would be skipped.
    lxc image delete "$fingerprint" 2>/dev/null && info "removed LXD's cached copy of the image" || true
    tremplin_cli create --name "$NAME" --image-server "$url" --alias "$alias"
    kill "$server_pid" 2>/dev/null || true
    trap - EXIT
    step "SetUpUser $USER_NAME (uid 1000)"
    tremplin_cli setup-user --name "$NAME" --user "$USER_NAME" | sed 's/^/    /'
fi

if [ "$(container_state)" = RUNNING ]; then
    info "running; not starting it again"
else
    step "StartContainer $NAME (a fresh token; crostini-host serve accepts it)"
    tremplin_cli start --name "$NAME" | sed 's/^/    /'
fi
USER_NAME=$(tremplin_cli --json username --name "$NAME" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("username",""))' 2>/dev/null || true)
USER_NAME=${USER_NAME:-${CROSTINI_DEMO_USER:-${SUDO_USER:-crostini}}}

step "garcon in the container (cros-garcon package, systemd user unit of $USER_NAME)"
# Let the container finish booting (systemd starts the lingering user's session, and with it
# garcon when the package is installed already).
lxc exec "$NAME" -- timeout 120 systemctl is-system-running --wait >/dev/null 2>&1 || true
lxc exec "$NAME" -- sh -c 'rm -rf /var/lib/crostini-demo && mkdir -p /var/lib/crostini-demo'
for f in tests/e2e/container/*; do
    lxc file push --quiet "$f" "$NAME/var/lib/crostini-demo/"
done
lxc file push --quiet "$garcon_deb" "$NAME/var/lib/crostini-demo/cros-garcon.deb"
events=$STATE/events.jsonl
seen=$(wc -l <"$events" 2>/dev/null || echo 0)
lxc exec "$NAME" -- sh /var/lib/crostini-demo/container-setup.sh --user "$USER_NAME" \
    --host-address "unix://$MOUNT/8889.sock" --listen "unix://$MOUNT/garcon.sock" \
    --deb /var/lib/crostini-demo/cros-garcon.deb | sed 's/^/    /'

apps_file=$STATE/apps/$NAME.json
arrived() { tail -n +"$((seen + 1))" "$events" 2>/dev/null | grep -q "\"rpc\":\"$1\""; }
for _ in $(seq 300); do
    arrived ContainerReady && arrived UpdateApplicationList && break
    sleep 0.2
done
arrived UpdateApplicationList || die "garcon sent no application list; see $events and
    lxc exec $NAME -- journalctl _SYSTEMD_USER_UNIT=cros-garcon.service"
info "ContainerReady and the application list arrived ($apps_file)"

step "the applications garcon reported"
garcon_cli apps --container "$NAME" | sed 's/^/    /'

step "an icon through GetIcon"
garcon_cli icon e2e-marker --size 48 --output "$DIR/e2e-marker.png" | sed 's/^/    /'

step "installing a package through garcon and PackageKit (with progress)"
pkg_path=/home/$USER_NAME/$(basename "$hello_deb")
lxc file push --quiet --uid 1000 --gid 1000 "$hello_deb" "$NAME$pkg_path"
if lxc exec "$NAME" -- dpkg-query -W crostini-e2e-hello >/dev/null 2>&1; then
    info "(installed by an earlier run; removing it first)"
    garcon_cli uninstall --container "$NAME" crostini-e2e-hello | sed 's/^/    /'
fi
garcon_cli install --container "$NAME" "$pkg_path"
sleep 1
step "the application list now"
garcon_cli apps --container "$NAME" | sed 's/^/    /'

step "removing it again (UninstallPackageOwningFile, with progress)"
garcon_cli uninstall --container "$NAME" crostini-e2e-hello

# ---------------------------------------------------------------------------------------------
step "where everything is"
info "container:          $NAME (lxc exec $NAME -- su - $USER_NAME)"
info "crostini-host:      pid $(cat "$DIR/serve.pid"), log $LOGS/serve.log"
info "tremplin:           pid $(cat "$DIR/tremplin.pid"), log $LOGS/tremplin.log, $TREMPLIN_ADDR"
info "garcon:             $GARCON_ADDR (journal: lxc exec $NAME -- journalctl _SYSTEMD_USER_UNIT=cros-garcon.service)"
info "received calls:     $STATE/events.jsonl"
info "application list:   $apps_file"
info "icon:               $DIR/e2e-marker.png"
info "try:                $HOST_BIN --state-dir $STATE garcon --address $GARCON_ADDR apps --container $NAME"
info "                    $HOST_BIN --state-dir $STATE garcon --address $GARCON_ADDR launch e2e-marker"
info "stop / clean up:    ./demo.sh stop  |  ./demo.sh clean"
