#!/usr/bin/env bash
# Builds the fuzz targets (Fuzz/) with libFuzzer and AddressSanitizer and runs each for
# SECONDS_PER_TARGET seconds (default 60) on a copy of its seed corpus (Fuzz/corpus/<target>/).
#
#   bash Scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Crashing inputs go to $out/crashes/<target>/ (out: $SWITCHYARD_FUZZ_OUT, default
# .build/fuzz-runs/<time>); each target's log is $out/<target>.log. Prints executions, exec/s,
# coverage and corpus size per target, and exits non-zero when any target crashed (a trap, an ASan
# report, a broken property, a timeout or running out of memory). Keep a crash as a test in
# Tests/WireTests or Tests/ServerTests once it is fixed; reproduce one with
# `.build/fuzz/debug/<target> <crash file>`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: SECONDS_PER_TARGET is '$seconds', but must be a whole number of seconds >= 1" >&2
    exit 2
fi
targets=(fuzz-wire fuzz-http-body)
out="${SWITCHYARD_FUZZ_OUT:-$root/.build/fuzz-runs/$(date +%Y%m%d-%H%M%S)}"
scratch="$root/.build/fuzz"

# SwiftPM's --sanitize instruments the C targets too (the generated protobuf-c code, the kernels)
# and leaves `main` to libFuzzer. It hands swiftc one -sanitize= per sanitizer, of which swiftc keeps
# only the last, so -Xswiftc (which comes after) repeats both in one flag. -parse-as-library: the
# targets' main.swift files hold no top-level code.
build=(--package-path Fuzz --scratch-path "$scratch" --sanitize=fuzzer --sanitize=address
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
started=$(date +%s)
swift build "${build[@]}"
bin="$(swift build "${build[@]}" --show-bin-path)"
echo "fuzz.sh: built in $(($(date +%s) - started)) s"

# ASan's own leak check at exit misreads Swift memory (see -detect_leaks below), and Swift's crash
# backtracer would hold a crashed target for its timeout instead of letting libFuzzer report it.
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export SWIFT_BACKTRACE="enable=no"

mkdir -p "$out"
failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$out/corpus/$target"
    crashes="$out/crashes/$target"
    mkdir -p "$corpus" "$crashes"
    cp Fuzz/corpus/"$target"/* "$corpus"/
    options=(
        -max_total_time="$seconds"
        -timeout=10          # one input taking 10 s is a hang
        -rss_limit_mb=2048   # the process; a decoder asked for a huge allocation trips it
        -max_len=65536       # room for tensor frames and long prompts
        -print_final_stats=1
        # Swift keeps enum tags in the spare bits of pointers, which LeakSanitizer cannot follow, so
        # it reports memory that is still referenced (the tokenizer's parsed chat template) as leaked.
        -detect_leaks=0
        -artifact_prefix="$crashes/"
    )
    [ -f "Fuzz/$target.dict" ] && options+=(-dict="Fuzz/$target.dict")
    echo "fuzz.sh: $target for $seconds s (log: $out/$target.log)"
    status=0
    "$bin/$target" "${options[@]}" "$corpus" >"$out/$target.log" 2>&1 || status=$?
    # libFuzzer's last status line: "#N DONE cov: C ft: F corp: K/Sb ...".
    last="$(grep -E '^#[0-9]+' "$out/$target.log" | tail -1 || true)"
    executions="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$target.log" | tail -1)"
    per_second="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$target.log" | tail -1)"
    coverage="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    features="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    corpus_size="$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")"
    artifacts="$(find "$crashes" -type f | wc -l)"
    summary+=("$(printf '%-16s %12s %8s %7s %7s %14s %8s' "$target" "${executions:-?}" "${per_second:-?}" \
        "${coverage:-?}" "${features:-?}" "${corpus_size:-?}" "$artifacts")")
    if [ "$status" -ne 0 ] || [ "$artifacts" -ne 0 ]; then
        failed+=("$target")
        echo "fuzz.sh: $target failed (exit $status); its crashes are in $crashes:" >&2
        grep -E 'ERROR: |property broken|Fatal error|SUMMARY' "$out/$target.log" | head -5 >&2 || true
    fi
done

printf '%-16s %12s %8s %7s %7s %14s %8s\n' target executions exec/s cov ft corpus crashes
printf '%s\n' "${summary[@]}"
echo "fuzz.sh: $seconds s per target, $(($(date +%s) - started)) s in all; runs in $out"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz.sh: crashes in ${failed[*]}" >&2
    exit 1
fi
