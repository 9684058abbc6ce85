#!/usr/bin/env bash
# Builds the local apt repositories of garcon's background-update test (garcon-host §12) into OUT:
#   OUT/v1/<package>_1_all.deb   version 1 of each package below (installed by the test)
#   OUT/repo/<name>/             an apt repository (dists/<suite>/main/binary-amd64/Packages and a
#                                Release with hashes) holding version 2 of one package:
#     cros      Origin Google, Suite stable       -> PackageKit id data `google-stable-main`
#     security  Origin Debian, Suite x-security   -> GetUpdates info SECURITY (8), data
#                                                    `debian-x-security-main`
#     other     Origin Example, Suite stable      -> info NORMAL (5), data `example-stable-main`
#   OUT/apt.conf       an APT_CONFIG for packagekitd: only these sources (OUT/sources.list,
#                      `[trusted=yes] file:`), its own lists and cache directories, so that a
#                      refresh neither touches the network nor the machine's apt lists.
# Package names: crostini-fixture-upd-cros, crostini-fixture-upd-security, crostini-fixture-upd-other.
#
#   tests/packagekit/build-update-repo.sh OUT
set -euo pipefail

OUT="${1:?usage: $0 OUT}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

build_deb() { # name version dest-dir
	local root="$WORK/$1-$2"
	mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$1"
	cat >"$root/DEBIAN/control" <<CONTROL
Package: $1
Version: $2
Architecture: all
Maintainer: Crostini tests <tests@invalid>
Section: misc
Priority: optional
Description: background-update test fixture ($2)
CONTROL
	echo "version $2" >"$root/usr/share/doc/$1/version"
	find "$root" -type d -exec chmod 0755 {} +
	find "$root" -type f -exec chmod 0644 {} +
	mkdir -p "$3"
	dpkg-deb --root-owner-group -Zgzip --build "$root" "$3/${1}_${2}_all.deb" >/dev/null
}

hashes() { # field command dir files...
	local field="$1" cmd="$2" dir="$3"; shift 3
	echo "$field:"
	for f in "$@"; do
		printf ' %s %s %s\n' "$(cd "$dir" && $cmd "$f" | cut -d' ' -f1)" "$(stat -c %s "$dir/$f")" "$f"
	done
}

build_repo() { # name origin label suite package
	local repo="$OUT/repo/$1" suite="$4"
	build_deb "$5" 1 "$OUT/v1"
	build_deb "$5" 2 "$repo/pool"
	local idx="dists/$suite/main/binary-amd64"
	mkdir -p "$repo/$idx"
	(cd "$repo" && dpkg-scanpackages --multiversion pool /dev/null 2>/dev/null) >"$repo/$idx/Packages"
	gzip -9nk "$repo/$idx/Packages"
	local rel="$repo/dists/$suite"
	{
		echo "Origin: $2"
		echo "Label: $3"
		echo "Suite: $suite"
		echo "Codename: $suite"
		echo "Date: $(LC_ALL=C date -u -R)"
		echo "Architectures: amd64 all"
		echo "Components: main"
		echo "Description: crostini background-update test repository $1"
		hashes MD5Sum md5sum "$rel" main/binary-amd64/Packages main/binary-amd64/Packages.gz
		hashes SHA256 sha256sum "$rel" main/binary-amd64/Packages main/binary-amd64/Packages.gz
	} >"$rel/Release"
	echo "deb [trusted=yes] file:$repo $suite main" >>"$OUT/sources.list"
}

: >"$OUT/sources.list"
build_repo cros Google Google stable crostini-fixture-upd-cros
build_repo security Debian Debian-Security x-security crostini-fixture-upd-security
build_repo other Example Example stable crostini-fixture-upd-other

mkdir -p "$OUT/sources.list.d" "$OUT/lists/partial" "$OUT/cache/archives/partial"
cat >"$OUT/apt.conf" <<CONF
Dir::Etc::SourceList "$OUT/sources.list";
Dir::Etc::SourceParts "$OUT/sources.list.d";
Dir::State::Lists "$OUT/lists";
Dir::Cache "$OUT/cache";
Dir::Cache::archives "$OUT/cache/archives";
Acquire::http::Proxy "DIRECT";
Acquire::Retries "0";
CONF
echo "$OUT"
