#!/usr/bin/env bash
# Builds every fuzz target once and runs each for a bounded time; prints a table (executions,
# exec/s, libFuzzer's final cov/ft) and fails when any target crashes, leaks, times out or
# runs out of memory. Used by run-ci.sh (short) and run-long.sh (long); see README.md.
#
# Environment:
#   FUZZ_SECONDS     seconds per target (-max_total_time), default 10
#   FUZZ_RUNS        if set, also stop each target after this many executions (-runs)
#   FUZZ_SANITIZER   cargo-fuzz sanitizer: address (default) or none
#   FUZZ_NICE        niceness of the fuzzing processes, default 19 (the machine may be shared)
#   FUZZ_TARGET_DIR  cargo target directory, default fuzz/target
#   FUZZ_BUILD_FLAGS extra `cargo fuzz build` flags, e.g. -O (no debug assertions or overflow
#                    checks, as the daemons' release profile)
#   FUZZ_BIN_DIR     run the fuzz binaries found there and skip the build
#   FUZZ_WORK        where new corpus entries go, default a temporary directory (deleted);
#                    the committed seeds in corpus/<target> are only read
# Arguments: target names (default: all of `cargo fuzz list`).
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-10}
sanitizer=${FUZZ_SANITIZER:-address}
niceness=${FUZZ_NICE:-19}

# Largest input per target: SVG and raster renders cost per byte, so they stay small.
max_len() {
    case "$1" in
        icon_svg) echo 1024 ;;
        icon_render) echo 2048 ;;
        *) echo 4096 ;;
    esac
}

# cargo-fuzz needs a nightly compiler; RUSTC_BOOTSTRAP=1 lets a stable one stand in.
toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

target_dir=${FUZZ_TARGET_DIR:-target}
build_start=$(date +%s)
if [ -z "${FUZZ_BIN_DIR:-}" ]; then
    # shellcheck disable=SC2086 # FUZZ_BUILD_FLAGS is a list of flags
    cargo "${toolchain[@]}" fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir" ${FUZZ_BUILD_FLAGS:-}
fi
build_seconds=$(( $(date +%s) - build_start ))

triple=$(rustc "${toolchain[@]}" -vV | sed -n 's/^host: //p')
bin_dir=${FUZZ_BIN_DIR:-$target_dir/$triple/release}
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list); fi

work=${FUZZ_WORK:-}
if [ -z "$work" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi

rows=()
failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "artifacts/$t" "corpus/$t"
    log="$work/$t.log"
    extra=()
    [ -n "${FUZZ_RUNS:-}" ] && extra+=("-runs=$FUZZ_RUNS")
    start=$(date +%s)
    rc=0
    nice -n "$niceness" "$bin_dir/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
        -artifact_prefix="artifacts/$t/" "$work/$t" "corpus/$t" >"$log" 2>&1 || rc=$?
    elapsed=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    result=ok
    if [ "$rc" -ne 0 ]; then
        result="FAILED (exit $rc)"
        failed+=("$t")
        echo "==> $t failed; last lines of its log (artifacts in fuzz/artifacts/$t):"
        tail -40 "$log"
    fi
    rows+=("$(printf '%-14s %12s %9s %6s %7s %5ss  %s' "$t" "${runs:-?}" "${speed:-?}" \
        "${cov:-?}" "${ft:-?}" "$elapsed" "$result")")
done

echo
echo "fuzz build: ${build_seconds}s (sanitizer $sanitizer); ${seconds}s per target${FUZZ_RUNS:+ or $FUZZ_RUNS runs}"
printf '%-14s %12s %9s %6s %7s %6s  %s\n' target executions exec/s cov ft time result
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
