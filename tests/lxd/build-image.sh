#!/bin/bash
# Builds the Debian bookworm LXD test image with debootstrap into the cache directory (outside the
# git checkout, so it survives fresh CI clones):
#
#   $CROSTINI_TEST_CACHE/image/   (default /var/cache/crostini-tests/image)
#     lxd.tar.xz        metadata tarball (metadata.yaml + templates/)
#     rootfs.squashfs   root file system (zstd-compressed squashfs)
#     image.json        sha256 + size of both files, combined_squashfs_sha256 (= LXD fingerprint),
#                       creation_date, build_hash
#     build.hash        hash of the build inputs; the image is rebuilt only when it changes
#
# Usage: build-image.sh [--force]   (prints the image directory on stdout when done)
# Env:   CROSTINI_TEST_CACHE, CROSTINI_TEST_MIRROR (default: the Debian mirror host apt already uses)
set -euo pipefail
. "$(dirname "$(readlink -f "$0")")/common.sh"
SELF=$(readlink -f "$0")

# Bump when the build procedure changes in a way the hash of this file would not capture (it does
# capture every edit of this file, so normally no bump is needed).
IMAGE_FORMAT_VERSION=1
SUITE=bookworm
PACKAGES=(
	systemd systemd-sysv dbus dbus-user-session libpam-systemd
	ifupdown isc-dhcp-client iproute2
	packagekit packagekit-tools policykit-1
	ca-certificates tzdata sudo
	# Depends of the cros-garcon container package (packaging/build-deb.sh), so that the
	# end-to-end test can install it without network access.
	desktop-file-utils openssh-sftp-server xdg-utils
	# PackageKit's InstallFiles refuses a local .deb whose MIME type GIO cannot tell ("is not
	# found or unsupported") without the shared MIME database; real Crostini images have it.
	shared-mime-info
)

force=0
for arg in "$@"; do
	case "$arg" in
	--force) force=1 ;;
	-h | --help) sed -n '2,14p' "$SELF"; exit 0 ;;
	*) die "unknown argument '$arg' (only --force is accepted)" ;;
	esac
done

require_root
ensure_packages debootstrap squashfs-tools xz-utils python3
take_lock image 3600

build_hash=$( { cat "$SELF"; echo "$IMAGE_FORMAT_VERSION ${PACKAGES[*]} $SUITE"; } | sha256sum | cut -d' ' -f1)

image_is_current() {
	[ -f "$IMAGE_DIR/build.hash" ] && [ "$(cat "$IMAGE_DIR/build.hash")" = "$build_hash" ] || return 1
	python3 - "$IMAGE_DIR" <<'PY'
import json, os, sys
d = sys.argv[1]
try:
    info = json.load(open(os.path.join(d, "image.json")))
    for name, f in info["files"].items():
        if os.path.getsize(os.path.join(d, name)) != f["size"]:
            sys.exit(1)
except (OSError, KeyError, ValueError):
    sys.exit(1)
PY
}

if [ $force = 0 ] && image_is_current; then
	log "image in $IMAGE_DIR is current (build hash ${build_hash:0:12}); nothing to do"
	echo "$IMAGE_DIR"
	exit 0
fi

# --- mirror ------------------------------------------------------------------------------------
find_mirror() {
	python3 - "$SUITE" <<'PY'
import glob, re, sys
suite = sys.argv[1]
found = []
def add(types, uris, suites, comps):
    if "deb" in types and suite in suites and "main" in comps:
        found.extend(u.rstrip("/") for u in uris if u.startswith(("http://", "https://")))
files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
for f in files:
    try:
        lines = open(f).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(line) >= 4:
            add([line[0]], [line[1]], [line[2]], line[3:])
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    try:
        text = open(f).read()
    except OSError:
        continue
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.split()
        if fields.get("enabled", ["yes"])[0].lower() == "no":
            continue
        add(fields.get("types", []), fields.get("uris", []), fields.get("suites", []), fields.get("components", []))
if not found:
    sys.exit(1)
print(found[0])
PY
}
MIRROR=${CROSTINI_TEST_MIRROR:-}
if [ -z "$MIRROR" ]; then
	MIRROR=$(find_mirror) || die "no 'deb <uri> $SUITE main' entry found in /etc/apt/sources.list{,.d}; set CROSTINI_TEST_MIRROR"
fi
log "building $SUITE image from mirror $MIRROR (build hash ${build_hash:0:12})"

# --- build -------------------------------------------------------------------------------------
mkdir -p "$CACHE_DIR"
WORK="$CACHE_DIR/build.tmp"
ROOT="$WORK/rootfs"

unmount_chroot() {
	local m
	for m in dev/pts dev proc sys; do
		if mountpoint -q "$ROOT/$m" 2>/dev/null; then
			umount "$ROOT/$m" 2>/dev/null || umount -l "$ROOT/$m" || true
		fi
	done
}
cleanup() {
	unmount_chroot
	rm -rf "$WORK" "$CACHE_DIR/image.new"
}
trap cleanup EXIT
cleanup # leftovers of an interrupted run
mkdir -p "$WORK"

t0=$(date +%s)
include=$(IFS=,; echo "${PACKAGES[*]}")
log "debootstrap --variant=minbase --include=$include $SUITE"
if ! timeout 1800 debootstrap --variant=minbase --include="$include" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
	tail -n 30 "$WORK/debootstrap.log" >&2
	[ -f "$ROOT/debootstrap/debootstrap.log" ] && tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2
	die "debootstrap failed (log above)"
fi
log "debootstrap done in $(($(date +%s) - t0))s"

mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
printf '#!/bin/sh\n# no service starts during the image build\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
echo "deb $MIRROR $SUITE main" >"$ROOT/etc/apt/sources.list"

in_chroot() {
	timeout 1800 chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C "$@"
}
log "configuring packages inside the chroot"
in_chroot dpkg --configure -a >"$WORK/configure.log" 2>&1 || { tail -n 30 "$WORK/configure.log" >&2; die "dpkg --configure -a failed in the chroot"; }
in_chroot apt-get update >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get update failed in the chroot (mirror $MIRROR)"; }
in_chroot apt-get install -y --no-install-recommends "${PACKAGES[@]}" >>"$WORK/apt.log" 2>&1 ||
	{ tail -n 30 "$WORK/apt.log" >&2; die "apt-get install failed in the chroot"; }
audit=$(in_chroot dpkg --audit 2>&1) || true
[ -z "$audit" ] || die "dpkg --audit in the image is not empty:
$audit"
for p in "${PACKAGES[@]}"; do
	in_chroot dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
		die "package $p is not installed in the image"
done

log "configuring network, hostname, machine-id"
cat >"$ROOT/etc/network/interfaces" <<'NET'
# Managed by the crostini-tests image build: eth0 gets its address from LXD's bridge over DHCP.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
NET
# Hostname: LXD sets the UTS name to the container name; the templates below (metadata.yaml) write
# /etc/hostname and /etc/hosts from it on create/copy so that sudo and hostname -f resolve.
echo crostini-test >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
127.0.1.1	crostini-test
::1		localhost ip6-localhost ip6-loopback
HOSTS
# Empty machine-id: systemd generates a fresh one on first boot of each container.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$ROOT/var/lib/dbus/machine-id"
echo '# no static file systems; LXD sets up the container mounts' >"$ROOT/etc/fstab"
# dhclient writes resolv.conf once eth0 is up.
rm -f "$ROOT/etc/resolv.conf"
# Nothing in the container may try to reach the network at boot (there is no NAT on lxdbr0).
in_chroot systemctl mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true

log "cleaning apt caches and logs"
in_chroot apt-get clean >/dev/null
rm -f "$ROOT/usr/sbin/policy-rc.d"
unmount_chroot
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/debconf/*-old \
	"$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/tmp/* \
	"$ROOT"/var/tmp/* "$ROOT"/debootstrap "$ROOT"/root/.bash_history
mkdir -p "$ROOT/var/lib/apt/lists/partial"

OUT="$CACHE_DIR/image.new"
mkdir -p "$OUT/meta/templates"
creation_date=$(date +%s)
cat >"$OUT/meta/metadata.yaml" <<META
architecture: x86_64
creation_date: $creation_date
properties:
  description: Debian bookworm amd64 (crostini-tests)
  os: debian
  release: bookworm
  architecture: amd64
  variant: crostini-test
templates:
  /etc/hostname:
    when:
    - create
    - copy
    template: hostname.tpl
  /etc/hosts:
    when:
    - create
    - copy
    template: hosts.tpl
META
echo '{{ container.name }}' >"$OUT/meta/templates/hostname.tpl"
cat >"$OUT/meta/templates/hosts.tpl" <<'TPL'
127.0.0.1	localhost
127.0.1.1	{{ container.name }}
::1		localhost ip6-localhost ip6-loopback
TPL
tar -C "$OUT/meta" -cJf "$OUT/lxd.tar.xz" metadata.yaml templates
rm -rf "$OUT/meta"

t1=$(date +%s)
# zstd, not xz: with the dir storage pool LXD unsquashes the image on every container create, and
# zstd unpacks with about a tenth of xz's CPU time (the file is ~10% larger).
log "mksquashfs (zstd)"
timeout 1800 mksquashfs "$ROOT" "$OUT/rootfs.squashfs" -noappend -comp zstd -no-progress >"$WORK/mksquashfs.log" 2>&1 ||
	{ tail -n 20 "$WORK/mksquashfs.log" >&2; die "mksquashfs failed"; }
log "mksquashfs done in $(($(date +%s) - t1))s"

python3 - "$OUT" "$creation_date" "$build_hash" "$SUITE" <<'PY'
import hashlib, json, os, sys
out, created, build_hash, suite = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
files, combined = {}, hashlib.sha256()
for name in ("lxd.tar.xz", "rootfs.squashfs"):
    h = hashlib.sha256()
    with open(os.path.join(out, name), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            combined.update(chunk)
    files[name] = {"sha256": h.hexdigest(), "size": os.path.getsize(os.path.join(out, name))}
info = {
    "files": files,
    # LXD's image fingerprint for a split image: sha256(metadata tarball || rootfs).
    "combined_squashfs_sha256": combined.hexdigest(),
    "creation_date": created,
    "build_hash": build_hash,
    "os": "debian",
    "release": suite,
    "arch": "amd64",
}
with open(os.path.join(out, "image.json"), "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
    f.write("\n")
with open(os.path.join(out, "SHA256SUMS"), "w") as f:
    for name, v in files.items():
        f.write(f"{v['sha256']}  {name}\n")
PY
echo "$build_hash" >"$OUT/build.hash"

# Swap in atomically-ish (a running simplestreams server keeps its open files).
rm -rf "$CACHE_DIR/image.old"
[ -d "$IMAGE_DIR" ] && mv "$IMAGE_DIR" "$CACHE_DIR/image.old"
mv "$OUT" "$IMAGE_DIR"
rm -rf "$CACHE_DIR/image.old"
log "image built in $(($(date +%s) - t0))s: $(du -h "$IMAGE_DIR/rootfs.squashfs" | cut -f1) rootfs," \
	"fingerprint $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["combined_squashfs_sha256"])' "$IMAGE_DIR/image.json")"
echo "$IMAGE_DIR"
