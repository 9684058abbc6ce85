#!/usr/bin/env bash
# Runs every test on a Debian 12 machine: installs what the tests need (Debian packages), starts
# the services they use (LXD; the PackageKit tests start their own private system bus), checks
# formatting and lints, builds, and runs the whole suite, real-LXD and real-PackageKit tests
# included.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
tests/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "building the daemons"
cargo build --workspace --bins

step "starting LXD (adopted if it already runs)"
tests/lxd/ensure-lxd.sh

step "building the test container image (cached between runs)"
tests/lxd/build-image.sh

step "running the tests"
# The LXD-kill test restarts LXD; it runs in the serial real-LXD group (.config/nextest.toml).
export TREMPLIN_DISRUPTIVE_TESTS=1
cargo nextest run --workspace --no-fail-fast
