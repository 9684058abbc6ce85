#!/bin/sh
# Checks the VM-side tree and tarball made by build-vm-image.sh (garcon-host.md §17.3, §17.4.2,
# §19 item 54; tremplin.md §3.2, §7).
#
#   packaging/check-vm-image.sh [VM_DIR] [CHECK...]
#
# VM_DIR defaults to target/packaging/vm; the tarball is looked for next to it. With no CHECK, runs
# all of: layout static help isolated init tarball overlay. Prints "ok <check>" per passing check,
# "FAIL <check>: <reason>" and exits 1 on the first failure; a check that cannot run here prints
# "skip <check>: <reason>".
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib.sh"

vm=
if [ $# -gt 0 ] && [ -d "$1" ]; then
    vm=$1
    shift
fi
vm=${vm:-$repo/target/packaging/vm}
[ -d "$vm" ] || die "no VM tree at $vm; run packaging/build-vm-image.sh first"
vm=$(cd "$vm" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/check-vm-image.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

current=
fail() {
    echo "FAIL $current: $*" >&2
    exit 1
}

has() {
    grep -qxF -- "$2" "$1" || fail "$1 lacks the line '$2'"
}

GARCON=opt/google/cros-containers/bin/garcon
TREMPLIN=usr/bin/tremplin
UNIT=usr/lib/systemd/system/tremplin.service
DEFAULTS=etc/default/tremplin
DOC=usr/share/doc/crostini-vm
BINARIES="$GARCON $TREMPLIN"

mode_of() {
    stat -c %a "$1"
}

check_layout() {
    for path in $BINARIES; do
        [ -f "$vm/$path" ] || fail "missing /$path"
        [ "$(mode_of "$vm/$path")" = 755 ] || fail "/$path has mode $(mode_of "$vm/$path")"
    done
    for path in "$UNIT" "$DEFAULTS" "$DOC/README.md" "$DOC/50-tremplin.textproto" \
        "$DOC/lxd-profile-cros-containers.yaml" "$DOC/lsb-release.example"; do
        [ -f "$vm/$path" ] || fail "missing /$path"
        [ "$(mode_of "$vm/$path")" = 644 ] || fail "/$path has mode $(mode_of "$vm/$path")"
    done
    # Nothing else in the tools directory: it is mounted into every container.
    extra=$(cd "$vm/opt/google/cros-containers" && find . -mindepth 1 ! -path ./bin ! -path ./bin/garcon)
    [ -z "$extra" ] || fail "unexpected files in /opt/google/cros-containers: $extra"
    # No maitred file is active by default (a real Termina already starts tremplin).
    [ ! -e "$vm/etc/maitred" ] || fail "/etc/maitred would start a second tremplin on Termina"
}

check_static() {
    command -v file >/dev/null 2>&1 || fail "file(1) is not installed"
    for path in $BINARIES; do
        description=$(file -b "$vm/$path")
        case "$description" in
        *ELF*"statically linked"* | *ELF*"static-pie linked"*) ;;
        *) fail "/$path is not a static ELF executable: $description" ;;
        esac
        if command -v ldd >/dev/null 2>&1; then
            libs=$(ldd "$vm/$path" 2>&1 || true)
            case "$libs" in
            *"not a dynamic executable"* | *"statically linked"*) ;;
            *) fail "ldd lists dependencies of /$path: $libs" ;;
            esac
        fi
        if command -v readelf >/dev/null 2>&1; then
            if readelf -lW "$vm/$path" | grep -q 'INTERP'; then
                fail "/$path asks for a program interpreter"
            fi
            if readelf -dW "$vm/$path" 2>/dev/null | grep -q '(NEEDED)'; then
                fail "/$path has NEEDED entries: $(readelf -dW "$vm/$path" | grep NEEDED)"
            fi
        fi
    done
}

# expect_help NAME STATUS OUTPUT: judges one "<binary> --help" run. garcon parses switches the
# libchrome way, where --help is neither --server nor --client: usage and exit 255
# (garcon-host.md §3.1), or 0 if it prints help; tremplin prints its flags, -lxd_subnet among them,
# and exits 0. Either way the binary must have started: no loader or exec errors.
expect_help() {
    name=$1
    status=$2
    output=$3
    case "$name:$status" in
    garcon:0 | garcon:255 | tremplin:0) ;;
    *) fail "$name --help exited with $status: $output" ;;
    esac
    if [ "$name" = tremplin ]; then
        case "$output" in
        *lxd_subnet*) ;;
        *) fail "tremplin --help does not mention lxd_subnet: $output" ;;
        esac
    fi
    case "$output" in
    *"error while loading shared libraries"* | *"failed to run command"* | *"cannot execute"* | \
        *"Exec format error"*)
        fail "$name --help could not start: $output" ;;
    esac
}

check_help() {
    for path in $BINARIES; do
        name=$(basename "$path")
        status=0
        output=$(timeout 20 env -i "$vm/$path" --help 2>&1) || status=$?
        expect_help "$name" "$status" "$output"
    done
    # The command line the init configuration uses (Go flag syntax) must parse.
    subnet=$(sed -n 's/^LXD_SUBNET=//p' "$vm/$DEFAULTS")
    status=0
    output=$(timeout 20 env -i LXD_DIR=/mnt/stateful/lxd LXD_CONF=/mnt/stateful/lxd_conf \
        "$vm/$TREMPLIN" -lxd_subnet "$subnet" --help 2>&1) || status=$?
    [ "$status" = 0 ] || fail "tremplin -lxd_subnet $subnet --help exited with $status: $output"
}

check_isolated() {
    # Each binary alone in an otherwise empty root: no loader, no libraries, no /etc, no /proc.
    # Absolute paths: the binaries run with an empty environment (env -i), so without PATH.
    chroot=$(command -v chroot || true)
    unshare=$(command -v unshare || true)
    if [ -n "$chroot" ] && [ "$(id -u)" = 0 ]; then
        runner=$chroot
    elif [ -n "$chroot" ] && [ -n "$unshare" ] && "$unshare" -r true 2>/dev/null; then
        runner="$unshare -r $chroot"
    else
        echo "skip $current: neither root nor unprivileged user namespaces are available for chroot"
        return 0
    fi
    for path in $BINARIES; do
        name=$(basename "$path")
        root=$work/isolated-$name
        mkdir -p "$root"
        cp "$vm/$path" "$root/$name"
        status=0
        output=$(timeout 20 env -i $runner "$root" "/$name" --help 2>&1) || status=$?
        expect_help "$name" "$status" "$output"
    done
}

check_init() {
    unit=$vm/$UNIT
    has "$unit" 'ExecStart=/usr/bin/tremplin -lxd_subnet ${LXD_SUBNET}'
    has "$unit" "Environment=LXD_DIR=/mnt/stateful/lxd"
    has "$unit" "Environment=LXD_CONF=/mnt/stateful/lxd_conf"
    has "$unit" "EnvironmentFile=-/etc/default/tremplin"
    has "$unit" "Restart=always"
    has "$unit" "KillSignal=SIGPWR"
    has "$unit" "RequiresMountsFor=/mnt/stateful"
    subnet=$(sed -n 's/^LXD_SUBNET=//p' "$vm/$DEFAULTS")
    echo "$subnet" | grep -qE '^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$' ||
        fail "$DEFAULTS sets LXD_SUBNET to '$subnet', not an IPv4 CIDR"
    textproto=$vm/$DOC/50-tremplin.textproto
    argv=$(sed -n 's/^argv: "\(.*\)"$/\1/p' "$textproto" | tr '\n' ' ')
    echo "$argv" | grep -qE '^tremplin -lxd_subnet [0-9.]+/[0-9]+ $' || fail "maitred argv is '$argv'"
    has "$textproto" "respawn: true"
    has "$textproto" '  value: "/mnt/stateful/lxd"'
    has "$textproto" '  value: "/mnt/stateful/lxd_conf"'
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "skip $current-verify: systemd-analyze is not installed"
        return 0
    fi
    mkdir -p "$work/verify/bin"
    cp "$vm/$TREMPLIN" "$work/verify/bin/tremplin"
    sed "s|/usr/bin/tremplin|$work/verify/bin/tremplin|; s|/etc/default/tremplin|$vm/$DEFAULTS|" \
        "$unit" >"$work/verify/tremplin.service"
    (cd "$work/verify" && systemd-analyze --man=no verify ./tremplin.service) >"$work/out" 2>&1 ||
        fail "systemd-analyze verify: $(cat "$work/out")"
    # Only complaints about this unit count (verify also loads the host's units).
    if grep -F "tremplin.service" "$work/out" >"$work/complaints"; then
        fail "systemd-analyze verify complained: $(cat "$work/complaints")"
    fi
    echo "ok $current-verify"
}

check_tarball() {
    tarball=$(ls -t "$(dirname "$vm")"/crostini-vm_*.tar.gz 2>/dev/null | head -n 1) || true
    [ -n "$tarball" ] || fail "no crostini-vm_*.tar.gz next to $vm"
    tar --numeric-owner -tzvf "$tarball" >"$work/list"
    for path in $BINARIES "$UNIT" "$DEFAULTS"; do
        grep -qE " \./$path\$" "$work/list" || fail "$tarball lacks ./$path"
    done
    for path in $BINARIES; do
        grep -qE "^-rwxr-xr-x 0/0 .* \./$path\$" "$work/list" ||
            fail "./$path in $tarball is not root-owned 0755"
    done
    bad=$(awk '$2 != "0/0"' "$work/list")
    [ -z "$bad" ] || fail "entries not owned by uid/gid 0: $bad"
    mkdir -p "$work/unpacked"
    tar -xzf "$tarball" -C "$work/unpacked"
    diff -r "$vm" "$work/unpacked" >"$work/out" 2>&1 || fail "tarball differs from the tree: $(cat "$work/out")"
}

check_overlay() {
    profile=$vm/$DOC/lxd-profile-cros-containers.yaml
    has "$profile" "  cros_containers:"
    has "$profile" "    source: /opt/google/cros-containers"
    has "$profile" "    path: /opt/google/cros-containers"
    has "$profile" "  container_token:"
    has "$profile" "    path: /dev/.container_token"
    if command -v python3 >/dev/null 2>&1 && python3 -c 'import yaml' 2>/dev/null; then
        python3 - "$profile" <<'PY' || fail "the LXD profile does not parse as the expected YAML"
import sys, yaml
profile = yaml.safe_load(open(sys.argv[1]))
devices = profile["devices"]
assert devices["cros_containers"] == {"type": "disk", "source": "/opt/google/cros-containers",
                                      "path": "/opt/google/cros-containers"}
assert devices["container_token"]["type"] == "disk"
assert devices["container_token"]["path"] == "/dev/.container_token"
PY
    fi
    grep -qF "path=/opt/google/cros-containers/bin/garcon" "$vm/$DOC/README.md" ||
        fail "README does not explain how to shadow garcon on a real Termina"
}

all="layout static help isolated init tarball overlay"
[ $# -gt 0 ] || set -- $all
for current in "$@"; do
    case " $all " in
    *" $current "*) ;;
    *) die "unknown check '$current' (known: $all)" ;;
    esac
    "check_$current"
    echo "ok $current"
done
