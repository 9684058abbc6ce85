#!/bin/bash
# Builds a unified LXD image tarball (metadata.yaml + rootfs/) of Debian bookworm for the
# crostini-lxd real-LXD tests and prints its path on stdout (last line).
#
#   tremplin/lxd/tests/make-test-image.sh [OUT]
#
# Source of the root file system, in order:
#  1. the shared test image of tests/lxd/build-image.sh (rootfs.squashfs, built if needed), unpacked
#     with unsquashfs -> $CROSTINI_TEST_CACHE/lxd-crate/image-<build hash>.tar.gz;
#  2. if that script is absent: debootstrap --variant=minbase --include=systemd-sysv
#     ($CROSTINI_TEST_MIRROR, default deb.debian.org) -> $CROSTINI_TEST_CACHE/lxd-crate/image.tar.gz.
# Idempotent: an existing tarball is reused. Needs root.
set -euo pipefail
CACHE_DIR="${CROSTINI_TEST_CACHE:-/var/cache/crostini-tests}"
HERE=$(dirname "$(readlink -f "$0")")
HARNESS="$HERE/../../../tests/lxd/build-image.sh"
log() { echo "make-test-image.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

if [ -z "${1:-}" ] && [ -x "$HARNESS" ]; then
	image_dir=$("$HARNESS" | tail -n 1)
	[ -f "$image_dir/rootfs.squashfs" ] || { log "$HARNESS did not produce $image_dir/rootfs.squashfs"; exit 1; }
	hash=$(cut -c1-12 "$image_dir/build.hash" 2>/dev/null || echo unknown)
	OUT="$CACHE_DIR/lxd-crate/image-$hash.tar.gz"
	mode=squashfs
else
	OUT="${1:-$CACHE_DIR/lxd-crate/image.tar.gz}"
	mode=debootstrap
fi
if [ -s "$OUT" ]; then
	echo "$OUT"
	exit 0
fi
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d "$(dirname "$OUT")/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ "$mode" = squashfs ]; then
	command -v unsquashfs >/dev/null || { log "unsquashfs is not installed (squashfs-tools)"; exit 1; }
	log "unpacking $image_dir/rootfs.squashfs"
	unsquashfs -q -n -d "$work/rootfs" "$image_dir/rootfs.squashfs" >/dev/null
else
	command -v debootstrap >/dev/null || { log "debootstrap is not installed"; exit 1; }
	mirror="${CROSTINI_TEST_MIRROR:-http://deb.debian.org/debian}"
	log "debootstrap bookworm minbase into $work/rootfs from $mirror"
	debootstrap --variant=minbase --include=systemd-sysv bookworm "$work/rootfs" "$mirror" \
		>"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log" >&2
		exit 1
	}
	rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* || true
fi
arch=$(uname -m)
cat >"$work/metadata.yaml" <<META
architecture: $arch
creation_date: $(date +%s)
properties:
  architecture: $arch
  description: crostini-lxd test image (Debian bookworm)
  os: Debian
  release: bookworm
templates: {}
META
tar --numeric-owner --xattrs -czf "$work/image.tar.gz" -C "$work" metadata.yaml rootfs
mv "$work/image.tar.gz" "$OUT"
echo "$OUT"
