#!/bin/sh
# Builds the container-side package: target/packaging/cros-garcon_<version>_all.deb
#
# The package carries no binary (garcon comes from the VM through the /opt/google/cros-containers
# disk device), so it is Architecture: all and needs no cargo build. It is staged from
# packaging/deb/ and built with dpkg-deb, because cargo-deb derives the architecture from the
# build target, only knows system units, and cannot express the alternatives maintainer scripts.
#
# Environment: DEB_VERSION (default 0.29+rs<workspace version>, i.e. newer than upstream 0.29),
# OUT_DIR (default target/packaging), SOURCE_DATE_EPOCH (default: last commit time).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib.sh"

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (apt-get install dpkg)"

ws_version=$(workspace_version "$repo")
[ -n "$ws_version" ] || die "no [workspace.package] version in $repo/Cargo.toml"
version=${DEB_VERSION:-0.29+rs$ws_version}
out=${OUT_DIR:-$repo/target/packaging}
SOURCE_DATE_EPOCH=$(source_date_epoch "$repo")
export SOURCE_DATE_EPOCH

stage=$out/stage/cros-garcon
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$out"

# Data files: directories 0755, files 0644, the two handlers 0755 (umask-independent).
cp -R "$here/deb/root/." "$stage/"
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod 0644 {} +
chmod 0755 "$stage/usr/bin/garcon-url-handler" "$stage/usr/bin/garcon-terminal-handler"

# Enabled for every user without systemctl (as upstream): the wants link inside /usr/lib.
mkdir -p "$stage/usr/lib/systemd/user/default.target.wants"
ln -s ../cros-garcon.service "$stage/usr/lib/systemd/user/default.target.wants/cros-garcon.service"

# Manual pages for the two handlers.
mkdir -p "$stage/usr/share/man/man1"
for page in "$here"/deb/man/*.1; do
    gzip -9n <"$page" >"$stage/usr/share/man/man1/$(basename "$page").gz"
done

# Changelog (policy 12.7; the version has no Debian revision, so this is a native package).
changelog=$stage/usr/share/doc/cros-garcon/changelog
{
    echo "cros-garcon ($version) unstable; urgency=medium"
    echo
    echo "  * Built from the crostini-rs workspace $ws_version."
    echo
    echo " -- Crostini-rs maintainers <crostini-rs@lists.example.org>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$changelog"
gzip -9n "$changelog"
find "$stage/usr/share/man" "$stage/usr/share/doc" -type f -exec chmod 0644 {} +

# Control area.
installed_size=$(du -s -k --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
    "$here/deb/DEBIAN/control.in" >"$stage/DEBIAN/control"
install -m 0755 "$here/deb/DEBIAN/postinst" "$here/deb/DEBIAN/prerm" "$stage/DEBIAN/"
# Every file under /etc is a conffile (what dh_installdeb would list).
(cd "$stage" && find etc -type f | LC_ALL=C sort | sed 's|^|/|') >"$stage/DEBIAN/conffiles"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print | LC_ALL=C sort | sed 's|^\./||' |
    xargs md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

# Normalise mtimes so equal inputs give an equal package.
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/cros-garcon_${version}_all.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
