// The FP8 product's arithmetic rate at prefill sizes: one product of M rows of x against N weight rows of
// K e4m3fn bytes with 128 × 128 block scales (``sy_matmul_nt_fp8``, the path SWITCHYARD_KERNEL picks), and
// in the same run the bf16 products of the same shape (fast and exact), the rates a bf16 checkpoint's
// products run at. A few MB of weights stay in cache, as the weights of a prefill's products are read once
// for many rows. Each figure is the best of REPS passes after a warm-up one; the FP8 and exact bf16 results
// are hashed, so that a change of the kernels shows whether it kept their bits. Set the GFLOP/s beside
// `floors --peak` (the dot peak) run next to it. The chunked FP8 product past 8 rows and the AVX2 exact
// tiles in Sources/CKernels (``SY_F8_CHUNK``, ``chunk_avx512``, ``chunk_avx2``) were measured with it.
//
// Build from the repository root as SwiftPM builds the kernels (the Swift toolchain's clang, -O2):
//   clang -O2 -fPIC -I Sources/CKernels/include -o /tmp/fp8_rate Benchmarks/kernels/fp8_rate.c
//      Sources/CKernels/kernels.c Sources/CKernels/mxfp4.c Sources/CKernels/fp8.c -lpthread -lm   (one line)
//   /tmp/fp8_rate M K N [REPS] [THREADS]   e.g. /tmp/fp8_rate 128 1024 512 (a DeepSeek-shaped expert's
//   gate at a 128-token prompt's shared expert), /tmp/fp8_rate 128 7168 256 (DeepSeek-V3's hidden size)
#include "sy_fp8.h"
#include "sy_kernels.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/// A hash of n floats' bits (equal results, equal hashes).
static uint32_t hash_bits(const float *values, size_t n) {
    uint32_t hash = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &values[i], sizeof bits);
        hash = (hash ^ bits) * 16777619u;
    }
    return hash;
}

enum { FP8, BF16_FAST, BF16_EXACT, KINDS };

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s M K N [REPS] [THREADS]\n", argv[0]);
        return 2;
    }
    long m_arg = atol(argv[1]), k_arg = atol(argv[2]), n_arg = atol(argv[3]);
    int reps = argc > 4 ? atoi(argv[4]) : 10, threads = argc > 5 ? atoi(argv[5]) : 2;
    if (m_arg < 1 || k_arg < 1 || n_arg < 1 || reps < 1 || threads < 1) {
        fprintf(stderr, "M, K, N, REPS and THREADS must be positive\n");
        return 2;
    }
    size_t m = (size_t)m_arg, k = (size_t)k_arg, n = (size_t)n_arg, bk = 128;
    size_t scale_rows = (n + bk - 1) / bk, scale_columns = (k + bk - 1) / bk;
    sy_set_thread_count(threads);
    float *x = malloc(m * k * sizeof(float)), *y = malloc(m * n * sizeof(float));
    float *scales = malloc(scale_rows * scale_columns * sizeof(float));
    uint8_t *w = malloc(n * k);
    uint16_t *wb = malloc(n * k * sizeof(uint16_t));
    if (x == NULL || y == NULL || scales == NULL || w == NULL || wb == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < m * k; i++) x[i] = 0.01f * (float)(i % 17) - 0.08f;
    for (size_t i = 0; i < n * k; i++) {
        uint32_t bits = (uint32_t)(i * 2654435761u);
        uint8_t code = (uint8_t)(bits >> 13);
        w[i] = (code & 0x7F) == 0x7F ? code ^ 1 : code;  // every finite code, no NaN
        wb[i] = (uint16_t)(0x3C00 + (bits >> 20) % 512);
    }
    for (size_t i = 0; i < scale_rows * scale_columns; i++) scales[i] = 0.001f * (float)(1 + i % 7);
    static const char *names[KINDS] = {"FP8 (exact)", "bf16 fast", "bf16 exact"};
    double best[KINDS];
    uint32_t hashes[KINDS];
    for (int kind = 0; kind < KINDS; kind++) {
        best[kind] = 1e30;
        for (int r = 0; r <= reps; r++) {  // pass 0 warms up (thread start, caches)
            double started = now();
            int failed = 0;
            if (kind == FP8) failed = sy_matmul_nt_fp8(x, m, k, k, w, n, scales, bk, bk, y, n, 0);
            else if (kind == BF16_FAST) failed = sy_matmul_nt_bf16_fast(x, m, k, k, wb, n, k, y, n, 0);
            else sy_matmul_nt_bf16(x, m, k, k, wb, n, k, y, n, 0);
            double seconds = now() - started;
            if (failed != 0) {
                fprintf(stderr, "the %s product failed\n", names[kind]);
                return 1;
            }
            if (r > 0 && seconds < best[kind]) best[kind] = seconds;
        }
        hashes[kind] = hash_bits(y, m * n);
    }
    const char *path = getenv("SWITCHYARD_KERNEL");
    printf("m = %zu, k = %zu, n = %zu (FP8 weights %.1f MB), %d thread(s), best of %d passes, kernel path %s\n", m, k,
           n, (double)(n * k) / 1e6, threads, reps, path != NULL ? path : "the CPU's best");
    for (int kind = 0; kind < KINDS; kind++)
        printf("  %-12s %7.1f GFLOP/s  (bits %08x)\n", names[kind], 2.0 * (double)(m * n * k) / best[kind] / 1e9,
               hashes[kind]);
    printf("  FP8 time ÷ bf16 fast %.2f, ÷ bf16 exact %.2f\n", best[FP8] / best[BF16_FAST], best[FP8] / best[BF16_EXACT]);
    free(x);
    free(y);
    free(scales);
    free(w);
    free(wb);
    return 0;
}
