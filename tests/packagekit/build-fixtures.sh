#!/usr/bin/env bash
# Builds the .deb fixtures of tests/fixtures/debs/ into OUT (created if needed):
#   OUT/<package>_<version>_<arch>.deb   one per source directory (dpkg-deb --root-owner-group)
#   OUT/crostini-fixture-corrupt_1.0_all.deb   a few text bytes named like a package
#   OUT/not-a-package.txt                      an ordinary text file
# Prints the built file names, one per line. Every fixture package name starts with
# `crostini-fixture-`; tests that install one remove it afterwards.
#
#   tests/packagekit/build-fixtures.sh OUT
set -euo pipefail

OUT="${1:?usage: $0 OUT}"
SRC="$(cd "$(dirname "$0")/../fixtures/debs" && pwd)"
command -v dpkg-deb >/dev/null || { echo "dpkg-deb missing (package dpkg)" >&2; exit 1; }
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

for dir in "$SRC"/*/; do
	name="$(basename "$dir")"
	[ -f "$dir/DEBIAN/control" ] || continue
	# A copy with the modes dpkg-deb insists on (git does not keep directory modes).
	cp -r "$dir" "$WORK/$name"
	find "$WORK/$name" -type d -exec chmod 0755 {} +
	find "$WORK/$name" -type f -exec chmod 0644 {} +
	for script in preinst postinst prerm postrm; do
		[ -f "$WORK/$name/DEBIAN/$script" ] && chmod 0755 "$WORK/$name/DEBIAN/$script"
	done
	package="$(sed -n 's/^Package: //p' "$dir/DEBIAN/control")"
	version="$(sed -n 's/^Version: //p' "$dir/DEBIAN/control")"
	arch="$(sed -n 's/^Architecture: //p' "$dir/DEBIAN/control")"
	deb="$OUT/${package}_${version}_${arch}.deb"
	dpkg-deb --root-owner-group -Zgzip --build "$WORK/$name" "$deb" >/dev/null
	echo "$deb"
done

cp "$SRC/crostini-fixture-corrupt_1.0_all.deb.txt" "$OUT/crostini-fixture-corrupt_1.0_all.deb"
echo "$OUT/crostini-fixture-corrupt_1.0_all.deb"
printf 'plain text, not a package\n' >"$OUT/not-a-package.txt"
echo "$OUT/not-a-package.txt"
