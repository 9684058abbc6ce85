#!/usr/bin/env bash
# Runs every test on a Debian 12 machine: installs what the tests need (Debian packages), starts
# the services they use (the tests' own LXD; the PackageKit tests start their own private system
# bus), checks formatting and lints, builds, and runs the whole suite, real-LXD and
# real-PackageKit tests included. The tests never touch the machine's LXD (/var/lib/lxd, which
# ./demo.sh uses): they run their own under /var/lib/crostini-tests/lxd in network namespace
# crostini-tests (tests/lxd/README.md), left running between runs.
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

step "starting the tests' own LXD (adopted if it already runs)"
tests/lxd/ensure-lxd.sh --tests

step "building the test container image (cached between runs)"
tests/lxd/build-image.sh

step "fuzzing every parser briefly (fuzz/run-ci.sh; builds cached in /var/cache/crostini-tests)"
# No sanitizer here: the build is several times faster and a short run finds panics, hangs and
# runaway memory just the same. -O: no overflow checks, as in the daemons' release profile (resvg
# 0.49 has arithmetic overflows that wrap there; garcon renders SVG in a budgeted child anyway).
# fuzz/run-long.sh runs the targets under ASan with overflow checks for the long runs.
FUZZ_SECONDS=${FUZZ_SECONDS:-5} FUZZ_SANITIZER=none FUZZ_BUILD_FLAGS=-O \
	FUZZ_TARGET_DIR=/var/cache/crostini-tests/fuzz-target fuzz/run-ci.sh

step "running the tests"
# The LXD-kill test kills and restarts the tests' LXD (only that one); it runs in the serial
# real-LXD group (.config/nextest.toml).
export TREMPLIN_DISRUPTIVE_TESTS=1
cargo nextest run --workspace --no-fail-fast
