#!/usr/bin/env bash
# Long fuzzing pass: every target (or the ones named) for FUZZ_SECONDS (default 600) seconds,
# or FUZZ_RUNS executions when set (e.g. FUZZ_RUNS=1000000), one after the other at nice 19.
# New corpus entries accumulate in fuzz/work/<target> (not committed) so that later runs
# resume from them. Environment and arguments: see run-targets.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export FUZZ_SECONDS=${FUZZ_SECONDS:-600}
export FUZZ_WORK=${FUZZ_WORK:-$here/work}
mkdir -p "$FUZZ_WORK"
exec "$here/run-targets.sh" "$@"
