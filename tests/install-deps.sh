#!/usr/bin/env bash
# Installs the Debian packages the test suite and the demo need (idempotent).
set -euo pipefail

PACKAGES=(
  # real LXD, its network, and the image build
  lxd lxd-client dnsmasq-base iptables debootstrap squashfs-tools xz-utils openssl ca-certificates
  # real PackageKit on a private system bus
  dbus packagekit polkitd pkexec dpkg-dev
  # MIME database tools for fixtures, sftp-server for garcon
  shared-mime-info openssh-sftp-server
  # packaging checks
  lintian systemd file binutils
  # misc tools used by test scripts
  python3 curl procps psmisc
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "all test packages present"
fi
