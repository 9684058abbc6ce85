#!/usr/bin/env bash
# Short fuzzing pass for the test suite: every target for FUZZ_SECONDS (default 10) seconds.
# Fails if any target crashes. Environment and arguments: see run-targets.sh.
set -euo pipefail
export FUZZ_SECONDS=${FUZZ_SECONDS:-10}
exec "$(dirname "$0")/run-targets.sh" "$@"
