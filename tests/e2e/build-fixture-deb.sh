#!/bin/sh
# Builds the end-to-end fixture package from tests/e2e/deb/crostini-e2e-hello into OUT
# (default target/e2e) and prints the path of the .deb:
#   OUT/crostini-e2e-hello_1.0_all.deb
#
#   tests/e2e/build-fixture-deb.sh [OUT]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../target/e2e}
command -v dpkg-deb >/dev/null 2>&1 || { echo "dpkg-deb missing (apt-get install dpkg)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

src=$here/deb/crostini-e2e-hello
# A copy with the modes dpkg-deb insists on (git keeps neither directory modes nor umask).
cp -R "$src" "$work/pkg"
find "$work/pkg" -type d -exec chmod 0755 {} +
find "$work/pkg" -type f -exec chmod 0644 {} +
chmod 0755 "$work/pkg/usr/bin/crostini-e2e-hello"
package=$(sed -n 's/^Package: //p' "$src/DEBIAN/control")
version=$(sed -n 's/^Version: //p' "$src/DEBIAN/control")
deb=$out/${package}_${version}_all.deb
dpkg-deb --root-owner-group -Zgzip --build "$work/pkg" "$deb" >/dev/null
echo "$deb"
