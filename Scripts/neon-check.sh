#!/usr/bin/env bash
# The C kernels' vector paths against their scalar path, bit for bit (Tests/kernels/isa_equality.c):
# natively (on x86: AVX2, AVX-512, AVX-512 bf16), and for AArch64, cross-compiled and run under
# qemu-aarch64: built for plain armv8-a on a Cortex-A53 (NEON, q8 with smull) and on qemu's `max`
# CPU (NEON, q8 with sdot found at run time), built for armv8.2-a + dotprod + bf16 on `max`, and built
# with clang (SwiftPM's C compiler) on `max`. Exits non-zero on any mismatch or failed build.
# Needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (Deploy/install-deps.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
sources=(Sources/CKernels/kernels.c Sources/CKernels/mxfp4.c Sources/CKernels/fp8.c Tests/kernels/isa_equality.c)
# -ffp-contract=off: GCC's default for GNU C (fast) may fuse a multiply and a later add across
# statements; clang, which builds the kernels in SwiftPM, fuses only within one expression, and the
# kernels leave no such expression (every fused multiply-add is written out).
flags=(-O2 -std=gnu11 -Wall -Wextra -ffp-contract=off -pthread -ISources/CKernels/include)

run() {  # name, command...
    local name="$1"
    shift
    echo "== $name"
    "$@"
}

status=0
cc="${CC:-cc}"
"$cc" "${flags[@]}" "${sources[@]}" -lm -o "$out/native"
# The AVX-512 paths with and without their weight prefetch (chosen by the CPU's maker; never a result).
run "native ($(uname -m)), weight prefetch on" env SWITCHYARD_STREAM_PREFETCH=1 "$out/native" || status=1
run "native ($(uname -m)), weight prefetch off" env SWITCHYARD_STREAM_PREFETCH=0 "$out/native" || status=1
# The AVX-512 bf16 and AVX-512F fast kernels read x a k-chunk at a time past k = 1536 at 5-16 rows, over
# blocks of columns, the AVX-512F one past 16 rows takes its weight rows in blocks of 64, and the AVX2 fast
# kernel past 4 rows a chunk of 256 in panels of 4 tiles (12 rows): with chunks of 64 and 32, blocks of 3-9
# columns (4 past 16 rows) and panels of 2 tiles the test's small shapes cross them all (the bits must not
# change).
"$cc" "${flags[@]}" -DSY_DOT_KC=64 -DSY_AVX512_KC=64 -DSY_DOT_STATE=1024 -DSY_AVX2_KC=32 -DSY_AVX2_PANEL=2 \
    -DSY_WIDE_COLUMNS=4 "${sources[@]}" -lm -o "$out/native-chunks"
run "native ($(uname -m)), k-chunks of 64 and 32, column blocks of 4, AVX2 panels of 2 tiles" "$out/native-chunks" \
    || status=1

aarch64-linux-gnu-gcc "${flags[@]}" -static -march=armv8-a "${sources[@]}" -lm -o "$out/armv8a"
aarch64-linux-gnu-gcc "${flags[@]}" -static -march=armv8.2-a+dotprod+bf16 "${sources[@]}" -lm -o "$out/armv82"
# --sdot: each run fails unless the CPU has (or lacks) the dot-product extension, as meant.
run "aarch64 armv8-a build, qemu cortex-a53 (NEON, q8 with smull)" \
    qemu-aarch64 -cpu cortex-a53 "$out/armv8a" --sdot no || status=1
run "aarch64 armv8-a build, qemu max (NEON, q8 with sdot found at run time)" \
    qemu-aarch64 -cpu max "$out/armv8a" --sdot yes || status=1
run "aarch64 armv8.2-a+dotprod+bf16 build, qemu max" qemu-aarch64 -cpu max "$out/armv82" --sdot yes || status=1

# clang: the compiler SwiftPM builds the kernels with on an ARM host (default contraction).
clang_flags=("${flags[@]/-ffp-contract=off/}")
if command -v clang >/dev/null 2>&1; then
    # Compiled by clang, linked by the cross gcc (which knows where its libgcc is).
    for source in "${sources[@]}"; do
        clang --target=aarch64-linux-gnu --sysroot=/usr/aarch64-linux-gnu "${clang_flags[@]}" -march=armv8-a \
            -c "$source" -o "$out/clang-$(basename "$source" .c).o"
    done
    aarch64-linux-gnu-gcc -static -pthread "$out"/clang-*.o -lm -o "$out/clang"
    run "aarch64 armv8-a clang build, qemu max" qemu-aarch64 -cpu max "$out/clang" --sdot yes || status=1
fi

if [ "$status" -ne 0 ]; then
    echo "neon-check: a vector path differs from the scalar path (see MISMATCH above)" >&2
fi
exit "$status"
