// What the AVX-512F fast product's instruction mix costs, with nothing to wait for: one thread runs its 8 × 3
// tile (`chunk_fast_avx512` in Sources/CKernels/kernels.c: 8 rows of prepared x against 3 bf16 weight rows,
// each weight vector widened to f32 with a shift and an AND, 48 FMAs a block of 32 values) over a k whose rows
// stay in L1, against two loops written here:
//   bare loop      the same loads, widenings and FMAs in the same order, in a loop with nothing else in it;
//   FMAs only      the same FMAs and x loads with the weights held in registers (no weight loads, no widening):
//                  the rate the FMA ports allow this shape.
// The variants alternate ROUNDS times (this host's clock drifts by a fifth within minutes); for each round
// every variant's rate is divided by that round's "FMAs only" rate, and the medians of those ratios are
// printed beside each variant's median and best GFLOP/s.
//
// Build and run from the repository root (the Swift toolchain's clang, as SwiftPM builds the kernels):
//   clang -O2 -fPIC -I Sources/CKernels/include -o /tmp/fma_tile Benchmarks/kernels/fma_tile.c -lpthread -lm
//   /tmp/fma_tile [KP] [ROUNDS]   e.g. /tmp/fma_tile 1024 40 (x 32 KiB and the weights 6 KiB: all in L1)
// x86 with AVX-512F only.
#include "../../Sources/CKernels/kernels.c"

#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { ROWS = 8, COLUMNS = 3, VARIANTS = 3, MAX_ROUNDS = 200 };

/// The tile's loads, widenings and FMAs (odd products, then even, as each accumulator sees them there).
__attribute__((target("avx512f,fma"), noinline)) static void bare_loop(const float *xp, size_t kp, const uint16_t *w,
                                                                     __m512 *out) {
    __m512 acc[ROWS][COLUMNS];
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLUMNS; c++) acc[r][c] = _mm512_setzero_ps();
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    for (size_t p = 0; p < kp; p += SY_FAST_STEP) {
        __m512i v[COLUMNS];
        __m512 wide[COLUMNS];
        for (int c = 0; c < COLUMNS; c++) {
            v[c] = _mm512_loadu_si512((const void *)(w + c * kp + p));
            wide[c] = _mm512_castsi512_ps(_mm512_and_si512(v[c], high));
        }
        for (int r = 0; r < ROWS; r++) {
            __m512 xo = _mm512_loadu_ps(xp + r * kp + p + SY_LANES);
            for (int c = 0; c < COLUMNS; c++) acc[r][c] = _mm512_fmadd_ps(xo, wide[c], acc[r][c]);
        }
        for (int c = 0; c < COLUMNS; c++) wide[c] = _mm512_castsi512_ps(_mm512_slli_epi32(v[c], 16));
        for (int r = 0; r < ROWS; r++) {
            __m512 xe = _mm512_loadu_ps(xp + r * kp + p);
            for (int c = 0; c < COLUMNS; c++) acc[r][c] = _mm512_fmadd_ps(xe, wide[c], acc[r][c]);
        }
    }
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLUMNS; c++) out[r * COLUMNS + c] = acc[r][c];
}

/// The same FMAs and x loads, the weights in registers.
__attribute__((target("avx512f,fma"), noinline)) static void fmas_only(const float *xp, size_t kp, __m512 *out) {
    __m512 acc[ROWS][COLUMNS];
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLUMNS; c++) acc[r][c] = _mm512_setzero_ps();
    __m512 w0 = _mm512_set1_ps(1.0f), w1 = _mm512_set1_ps(0.5f), w2 = _mm512_set1_ps(0.25f);
    for (size_t p = 0; p < kp; p += SY_FAST_STEP) {
        __asm__ volatile("" : "+v"(w0), "+v"(w1), "+v"(w2));  // kept in registers, not folded
        for (int half = 1; half >= 0; half--)
            for (int r = 0; r < ROWS; r++) {
                __m512 x = _mm512_loadu_ps(xp + r * kp + p + (size_t)half * SY_LANES);
                acc[r][0] = _mm512_fmadd_ps(x, w0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(x, w1, acc[r][1]);
                acc[r][2] = _mm512_fmadd_ps(x, w2, acc[r][2]);
            }
    }
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLUMNS; c++) out[r * COLUMNS + c] = acc[r][c];
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    long kp_arg = argc > 1 ? atol(argv[1]) : 1024, rounds_arg = argc > 2 ? atol(argv[2]) : 40;
    if (kp_arg < SY_FAST_STEP || kp_arg % SY_FAST_STEP != 0 || rounds_arg < 1 || rounds_arg > MAX_ROUNDS) {
        fprintf(stderr, "usage: %s [KP, a multiple of 32] [ROUNDS, 1-%d]\n", argv[0], MAX_ROUNDS);
        return 2;
    }
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "this CPU has no AVX-512F\n");
        return 2;
    }
    size_t kp = (size_t)kp_arg;
    int rounds = (int)rounds_arg;
    float *xp = aligned_alloc(64, ROWS * kp * sizeof(float));
    uint16_t *w = aligned_alloc(64, COLUMNS * kp * sizeof(uint16_t));
    if (xp == NULL || w == NULL) return 1;
    for (size_t i = 0; i < ROWS * kp; i++) xp[i] = 0.001f * (float)(i % 13);
    for (size_t i = 0; i < COLUMNS * kp; i++) w[i] = (uint16_t)(0x3c00 + i % 7);
    // About 20 ms a variant a round at 150 GFLOP/s.
    long reps = (long)(3e9 / (2.0 * ROWS * COLUMNS * (double)kp)) + 1;
    double flops = 2.0 * ROWS * COLUMNS * (double)kp * (double)reps;
    static double rate[VARIANTS][MAX_ROUNDS], ratio[VARIANTS][MAX_ROUNDS];
    static __m512 state[ROWS * COLUMNS];
    float y[ROWS * COLUMNS];
    const char *names[VARIANTS] = {"kernels.c 8 x 3 tile", "bare loop", "FMAs only"};
    for (int round = 0; round < rounds; round++) {
        for (int v = 0; v < VARIANTS; v++) {
            double start = now();
            for (long r = 0; r < reps; r++) {
                if (v == 0)  // over all of k, the accumulators left in `state` (no sums)
                    chunk_fast_avx512_shape(ROWS, COLUMNS, 1, xp, kp, kp, 0, kp, w, kp, w, state, ROWS, 1, 0, y,
                                            COLUMNS, 0);
                else if (v == 1)
                    bare_loop(xp, kp, w, state);
                else
                    fmas_only(xp, kp, state);
            }
            rate[v][round] = flops / (now() - start) / 1e9;
        }
        for (int v = 0; v < VARIANTS; v++) ratio[v][round] = rate[v][round] / rate[VARIANTS - 1][round];
    }
    printf("one thread, 8 rows x 3 weight rows, kp = %zu (x %zu KiB, weights %zu KiB), %d alternating rounds\n", kp,
           ROWS * kp * sizeof(float) / 1024, COLUMNS * kp * sizeof(uint16_t) / 1024, rounds);
    for (int v = 0; v < VARIANTS; v++) {
        qsort(rate[v], (size_t)rounds, sizeof(double), compare);
        qsort(ratio[v], (size_t)rounds, sizeof(double), compare);
        printf("%-22s median %6.1f GFLOP/s, best %6.1f; median of the rounds' ratios to FMAs only %.2f\n", names[v],
               rate[v][rounds / 2], rate[v][rounds - 1], ratio[v][rounds / 2]);
    }
    return 0;
}
