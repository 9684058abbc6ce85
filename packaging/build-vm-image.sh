#!/bin/sh
# Builds the VM side: statically linked tremplin and garcon laid out as in the Termina image,
# plus tremplin's init configuration.
#
#   target/packaging/vm/                          the tree (see vm/doc/README.md)
#   target/packaging/crostini-vm_<version>_<arch>.tar.gz   the same tree, rooted at /
#
# musl targets are not available here, so the binaries are glibc binaries linked with
# -C target-feature=+crt-static. They are built in target/static so that the shared debug build
# cache is left alone. The build takes minutes on a small machine.
#
# Environment: TARGET (default x86_64-unknown-linux-gnu), OUT_DIR (default target/packaging),
# SKIP_BUILD=1 (package the binaries already in target/static), STRIP=0 (keep symbols),
# SOURCE_DATE_EPOCH.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib.sh"

target=${TARGET:-x86_64-unknown-linux-gnu}
case "$target" in
*-linux-gnu) ;;
*) die "TARGET $target: only *-linux-gnu targets are supported (static glibc)" ;;
esac
arch=${target%%-*}
case "$arch" in
x86_64) deb_arch=amd64 ;;
aarch64) deb_arch=arm64 ;;
*) deb_arch=$arch ;;
esac
out=${OUT_DIR:-$repo/target/packaging}
version=$(workspace_version "$repo")
[ -n "$version" ] || die "no [workspace.package] version in $repo/Cargo.toml"
SOURCE_DATE_EPOCH=$(source_date_epoch "$repo")
export SOURCE_DATE_EPOCH

bin_dir=$repo/target/static/$target/release
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "building static garcon and tremplin for $target (release)..." >&2
    (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --target "$target" --target-dir target/static -p garcon -p tremplin)
fi
for name in garcon tremplin; do
    [ -x "$bin_dir/$name" ] || die "$bin_dir/$name was not built"
done

# Refuse anything that would need a dynamic loader or shared libraries at run time.
assert_static() {
    description=$(file -b "$1")
    case "$description" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$1 is not static: $description" ;;
    esac
    if command -v ldd >/dev/null 2>&1; then
        libs=$(ldd "$1" 2>&1 || true)
        case "$libs" in
        *"not a dynamic executable"* | *"statically linked"*) ;;
        *) die "$1 needs shared libraries: $libs" ;;
        esac
    fi
}

vm=$out/vm
rm -rf "$vm"
mkdir -p "$vm"
install -d -m 0755 "$vm/opt/google/cros-containers/bin" "$vm/usr/bin" \
    "$vm/usr/share/doc/crostini-vm"
install -m 0755 "$bin_dir/garcon" "$vm/opt/google/cros-containers/bin/garcon"
install -m 0755 "$bin_dir/tremplin" "$vm/usr/bin/tremplin"
for binary in "$vm/opt/google/cros-containers/bin/garcon" "$vm/usr/bin/tremplin"; do
    # Symbols only cost space in the image; STRIP=0 keeps them for debugging.
    if [ "${STRIP:-1}" != 0 ] && command -v strip >/dev/null 2>&1; then
        strip --strip-all "$binary"
    fi
    assert_static "$binary"
done

cp -R "$here/vm/root/." "$vm/"
cp "$here/vm/doc/"* "$vm/usr/share/doc/crostini-vm/"
find "$vm" -type d -exec chmod 0755 {} +
find "$vm" -type f ! -path "$vm/usr/bin/tremplin" ! -path "$vm/opt/google/cros-containers/bin/*" \
    -exec chmod 0644 {} +
find "$vm" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

tarball=$out/crostini-vm_${version}_${deb_arch}.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -C "$vm" -cf - . | gzip -9n >"$tarball"
echo "$vm"
echo "$tarball"
