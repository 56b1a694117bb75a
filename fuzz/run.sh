#!/usr/bin/env bash
# Runs every fuzz target for a bounded time each (seconds, default 60),
# one after the other, at low priority, in one process each (no -jobs or
# -workers: libFuzzer then fuzzes in-process on one core).
#   fuzz/run.sh [SECONDS] [TARGET...]
# Needs `rustup toolchain install nightly` and `cargo install cargo-fuzz`.
# CARGO_TARGET_DIR, if set, is used as the build directory.
# Crashes land in fuzz/artifacts/<target>/; exits non-zero if any target failed.
set -uo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(envelope framer resource_list trigger)
dir=()
[ -n "${CARGO_TARGET_DIR:-}" ] && dir=(--target-dir "$CARGO_TARGET_DIR")

[ -d corpus ] || ./seeds.sh
nice -n 10 cargo +nightly fuzz build "${dir[@]}" || exit 1
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "=== $t: ${secs}s"
    if ! nice -n 10 cargo +nightly fuzz run "${dir[@]}" "$t" -- \
        -max_total_time="$secs" -print_final_stats=1 2>&1 | tee "artifacts/$t/last-run.log" \
        | grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|==[0-9]+==|SUMMARY|thread .* panicked|Failing input|artifact_prefix)'; then
        :
    fi
    if grep -qE 'panicked|SUMMARY|deadly signal|ERROR: libFuzzer' "artifacts/$t/last-run.log"; then
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (see fuzz/artifacts/<target>/)"
    exit 1
fi
echo "all targets ran ${secs}s without a failure"
