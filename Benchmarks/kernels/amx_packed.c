// The `amx` path's arithmetic on weights repacked for it: does a packed layout let that path stream
// weights as fast as the default one at m = 1, and keep its tiles' lead at m = 8-32?
//
// The `amx` path (Sources/CKernels/kernels.c, `fast_amx`) loads 16 weight rows × 32 bf16 as a tile's
// A operand: 16 rows ws apart, 64 bytes of each, so a tile load walks 16 streams at once. Here the
// weights are repacked once into `tdpbf16ps`'s B layout, one contiguous KiB per tile: for 16 weight
// rows (a group) and a block of 32 indices, 16 lines of 64 bytes, line j holding indices 2j and 2j + 1
// of each of the 16 rows. x becomes the A operand (its rows as they are). Each output then sees the same
// operations as in `fast_amx` (products commute), so the bits are the `amx` path's, which this program
// checks against `sy_matmul_nt_bf16_fast_isa(SY_ISA_AMX, ...)` at every m it times.
//
// The same layout serves a copy of that arithmetic on vector registers with the 16 rows of a group in
// the lanes and no transposes: per block, line j's low halves (even indices) and high halves (odd) are
// widened to f32 and multiply-added, each into its own sum started at zero, by x's indices 2j and 2j + 1
// broadcast; then acc += even + odd; MXCSR's flush-to-zero and denormals-are-zero set, as `tdpbf16ps`
// flushes. That is the m = 1 product here (`packed-fma`), the tiles the rest (`packed-tiles`).
//
// Build from the repository root (one line):
//   clang -O2 -fPIC -I Sources/CKernels/include -o /tmp/amx_packed Benchmarks/kernels/amx_packed.c
//      Sources/CKernels/kernels.c -lpthread -lm
//   /tmp/amx_packed THREADS N K REPS [SLICE]   e.g. /tmp/amx_packed 2 142000 2816 2 (800 MB, from memory);
//   with SLICE, each pass is one product per SLICE weight rows (an expert's matrix a call, as a decode
//   step makes them: /tmp/amx_packed 2 142000 2816 2 1024 streams 5.8 MB matrices of 1,024 × 2,816 from memory)
// Prints, per m, GB/s of weights read by the `amx` path as it is, the packed products and the default
// (`avx512bf16`) path, and the count of outputs whose bits differ from the `amx` path's (must be 0).
// Needs a CPU with AMX (Sapphire Rapids and later).
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sy_kernels.h"

#define FN __attribute__((target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16")))

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} tile_config;

static _Thread_local int configured;

FN static void configure(void) {
    if (configured) return;
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.rows[t] = 16;
        c.bytes_per_row[t] = 64;
    }
    _tile_loadconfig(&c);
    configured = 1;
}

// packed[((g * blocks + b) * 16 + j) * 32 + 2 * r + e] = w[(16 g + r) * k + 32 b + 2 j + e], zero past n or k.
static uint16_t *pack(const uint16_t *w, size_t n, size_t k, size_t *bytes) {
    size_t groups = (n + 15) / 16, blocks = (k + 31) / 32;
    *bytes = groups * blocks * 1024;
    uint16_t *p = mmap(NULL, *bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, *bytes, MADV_HUGEPAGE);
    for (size_t g = 0; g < groups; g++)
        for (size_t b = 0; b < blocks; b++)
            for (size_t j = 0; j < 16; j++)
                for (size_t r = 0; r < 16; r++)
                    for (size_t e = 0; e < 2; e++) {
                        size_t row = 16 * g + r, col = 32 * b + 2 * j + e;
                        p[((g * blocks + b) * 16 + j) * 32 + 2 * r + e] = row < n && col < k ? w[row * k + col] : 0;
                    }
    return p;
}

typedef struct {
    const uint16_t *packed;
    const uint16_t *xb;  // m rows of kp bf16 (zero past k)
    const float *xf;     // row 0 of x as f32, kp of them
    size_t m, n, k, kp, g0, g1;
    float *y;   // m rows, ys apart
    size_t ys;
} job;

// m = 1 on vector registers: 4 groups at a time (8 independent sums), the accumulators across blocks.
FN static void packed_fma(const job *a) {
    unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040);  // flush-to-zero, denormals-are-zero
    size_t blocks = a->kp / 32;
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    size_t g = a->g0;
    for (; g + 4 <= a->g1; g += 4) {
        __m512 acc[4];
        for (int t = 0; t < 4; t++) acc[t] = _mm512_setzero_ps();
        for (size_t b = 0; b < blocks; b++) {
            __m512 even[4], odd[4];
            for (int t = 0; t < 4; t++) even[t] = odd[t] = _mm512_setzero_ps();
            const float *xv = a->xf + 32 * b;
            for (size_t j = 0; j < 16; j++) {
                __m512 xe = _mm512_set1_ps(xv[2 * j]), xo = _mm512_set1_ps(xv[2 * j + 1]);
                for (int t = 0; t < 4; t++) {
                    const uint16_t *line = a->packed + (((g + (size_t)t) * blocks + b) * 16 + j) * 32;
                    _mm_prefetch((const char *)(line + 2048), _MM_HINT_T1);  // 4 KiB ahead in this group's stream
                    __m512i words = _mm512_loadu_si512(line);
                    even[t] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(words, 16)), xe, even[t]);
                    odd[t] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(words, high)), xo, odd[t]);
                }
            }
            for (int t = 0; t < 4; t++) acc[t] = _mm512_add_ps(acc[t], _mm512_add_ps(even[t], odd[t]));
        }
        for (int t = 0; t < 4; t++) {
            size_t first = (g + (size_t)t) * 16;
            float out[16];
            _mm512_storeu_ps(out, acc[t]);
            for (size_t r = 0; r < 16 && first + r < a->n; r++) a->y[first + r] = out[r];
        }
    }
    for (; g < a->g1; g++) {
        __m512 acc = _mm512_setzero_ps();
        for (size_t b = 0; b < blocks; b++) {
            __m512 even = _mm512_setzero_ps(), odd = _mm512_setzero_ps();
            for (size_t j = 0; j < 16; j++) {
                __m512i words = _mm512_loadu_si512(a->packed + ((g * blocks + b) * 16 + j) * 32);
                even = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(words, 16)),
                                       _mm512_set1_ps(a->xf[32 * b + 2 * j]), even);
                odd = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(words, high)),
                                      _mm512_set1_ps(a->xf[32 * b + 2 * j + 1]), odd);
            }
            acc = _mm512_add_ps(acc, _mm512_add_ps(even, odd));
        }
        float out[16];
        _mm512_storeu_ps(out, acc);
        for (size_t r = 0; r < 16 && g * 16 + r < a->n; r++) a->y[g * 16 + r] = out[r];
    }
    _mm_setcsr(saved);
}

/// Stores accumulator `tile` (x rows [i0, i0 + rows), weight rows from 16 g) into y.
static void store(const float out[16][16], const job *a, size_t i0, size_t rows, size_t g) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < 16 && g * 16 + c < a->n; c++) a->y[(i0 + r) * a->ys + g * 16 + c] = out[r][c];
}

// Tiles: x rows as A, packed weights as B. While more than 16 x rows remain, 32 of them go against 2
// groups (2 × 2 accumulators, each weight tile serving 32 x rows); the last 16 or fewer against 4 groups.
FN static void packed_tiles(const job *a) {
    configure();
    size_t blocks = a->kp / 32, xs = a->kp * sizeof(uint16_t);
    float out[4][16][16] __attribute__((aligned(64)));
    size_t i0 = 0;
    for (; i0 + 16 < a->m; i0 += 32) {
        size_t second = a->m - i0 - 16 < 16 ? a->m - i0 - 16 : 16;
        for (size_t g = a->g0; g < a->g1; g += 2) {
            int pair = g + 1 < a->g1;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (size_t b = 0; b < blocks; b++) {
                const uint16_t *base = a->packed + (g * blocks + b) * 512;
                _tile_loadd(6, a->xb + i0 * a->kp + 32 * b, xs);
                _tile_loadd(7, a->xb + (i0 + 16) * a->kp + 32 * b, xs);
                _tile_loadd(4, base, 64);
                _tile_dpbf16ps(0, 6, 4);
                _tile_dpbf16ps(1, 7, 4);
                if (pair) {
                    _tile_loadd(5, base + blocks * 512, 64);
                    _tile_dpbf16ps(2, 6, 5);
                    _tile_dpbf16ps(3, 7, 5);
                }
            }
            _tile_stored(0, out[0], 64);
            _tile_stored(1, out[1], 64);
            _tile_stored(2, out[2], 64);
            _tile_stored(3, out[3], 64);
            store(out[0], a, i0, 16, g);
            store(out[1], a, i0 + 16, second, g);
            if (pair) {
                store(out[2], a, i0, 16, g + 1);
                store(out[3], a, i0 + 16, second, g + 1);
            }
        }
    }
    for (; i0 < a->m; i0 += 16) {
        size_t rows = a->m - i0 < 16 ? a->m - i0 : 16;
        for (size_t g = a->g0; g < a->g1; g += 4) {
            size_t tiles = a->g1 - g < 4 ? a->g1 - g : 4;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (size_t b = 0; b < blocks; b++) {
                _tile_loadd(6, a->xb + i0 * a->kp + 32 * b, xs);
                const uint16_t *base = a->packed + (g * blocks + b) * 512;
                _tile_loadd(4, base, 64);
                _tile_dpbf16ps(0, 6, 4);
                if (tiles > 1) {
                    _tile_loadd(5, base + blocks * 512, 64);
                    _tile_dpbf16ps(1, 6, 5);
                }
                if (tiles > 2) {
                    _tile_loadd(4, base + 2 * blocks * 512, 64);
                    _tile_dpbf16ps(2, 6, 4);
                }
                if (tiles > 3) {
                    _tile_loadd(5, base + 3 * blocks * 512, 64);
                    _tile_dpbf16ps(3, 6, 5);
                }
            }
            _tile_stored(0, out[0], 64);
            _tile_stored(1, out[1], 64);
            _tile_stored(2, out[2], 64);
            _tile_stored(3, out[3], 64);
            for (size_t t = 0; t < tiles; t++) store(out[t], a, i0, rows, g + t);
        }
    }
}

static void *run(void *arg) {
    const job *a = arg;
    if (a->m == 1) packed_fma(a);
    else packed_tiles(a);
    return NULL;
}

typedef struct {
    job base;
    int threads;
} split;

static void task(void *context, size_t index) {
    const split *s = context;
    job part = s->base;
    size_t groups = (part.n + 15) / 16;
    part.g0 = groups * index / (size_t)s->threads;
    part.g1 = groups * (index + 1) / (size_t)s->threads;
    run(&part);
}

// One packed product on the library's thread pool (as the other paths run), the groups split evenly.
static void packed_product(int threads, job base) {
    split s = {base, threads};
    sy_parallel_for((size_t)threads, task, &s);
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s THREADS N K REPS [SLICE]\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]), reps = atoi(argv[4]);
    size_t n = (size_t)atol(argv[2]), k = (size_t)atol(argv[3]);
    size_t slice = argc == 6 ? (size_t)atol(argv[5]) : n;
    if (slice < 16 || slice % 16 != 0 || slice > n) slice = n;  // whole groups, so slices start at a group
    if (threads < 1 || threads > 16 || n < 1 || k < 1 || reps < 1) {
        fprintf(stderr, "THREADS (1-16), N, K and REPS must be positive\n");
        return 2;
    }
    if (!sy_isa_supported(SY_ISA_AMX)) {
        fprintf(stderr, "this CPU has no AMX (or Linux did not grant the tile state)\n");
        return 1;
    }
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0) {
        fprintf(stderr, "Linux did not grant the AMX tile state\n");
        return 1;
    }
    sy_set_thread_count(threads);
    enum { MAX_M = 32 };
    size_t kp = (k + 31) / 32 * 32, bytes = n * k * sizeof(uint16_t), packed_bytes;
    uint16_t *w = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) return 1;
    madvise(w, bytes, MADV_HUGEPAGE);
    // Random bf16 weights and x of both signs and varied exponents, so that the order of additions shows.
    uint64_t state = 88172645463325252ull;
    for (size_t i = 0; i < n * k; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        w[i] = (uint16_t)(((state >> 16) & 0x8000) | (0x3a00 + (state & 0x7ff)));
    }
    float *x = malloc(MAX_M * k * sizeof(float)), *y = malloc(MAX_M * n * sizeof(float)),
          *reference = malloc(MAX_M * n * sizeof(float)), *xf = calloc(kp, sizeof(float));
    uint16_t *xb = calloc(MAX_M * kp, sizeof(uint16_t));
    for (size_t i = 0; i < MAX_M * k; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        uint32_t bits = (uint32_t)(((state >> 8) & 0x8000) | (0x3c00 + (state & 0x3ff))) << 16;
        memcpy(&x[i], &bits, sizeof bits);  // a bf16 value, so the products' rounding of x is exact
        xb[(i / k) * kp + i % k] = (uint16_t)(bits >> 16);
    }
    for (size_t i = 0; i < k; i++) xf[i] = x[i];
    uint16_t *packed = pack(w, n, k, &packed_bytes);
    if (!x || !y || !reference || !xf || !xb || !packed) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    printf("%zu weight rows of k = %zu (%.1f MB), %d thread(s), %d passes a size; GB/s of weights read\n", n, k,
           (double)bytes / 1e6, threads, reps);
    printf("   m   amx as is  packed (%s)  avx512bf16   outputs differing from amx\n", "fma at m = 1, else tiles");
    static const size_t ms[] = {1, 2, 4, 8, 16, 32};
    for (size_t t = 0; t < sizeof ms / sizeof ms[0]; t++) {
        size_t m = ms[t];
        double rates[3];
        for (int path = 0; path < 3; path++) {
            double start = 0;
            for (int r = 0; r <= reps; r++) {
                if (r == 1) start = now();
                for (size_t first = 0; first < n; first += slice) {
                    size_t rows = n - first < slice ? n - first : slice;
                    if (path == 0)
                        sy_matmul_nt_bf16_fast_isa(SY_ISA_AMX, x, m, k, k, w + first * k, rows, k, reference + first, n, 0);
                    else if (path == 2)
                        sy_matmul_nt_bf16_fast_isa(SY_ISA_AVX512BF16, x, m, k, k, w + first * k, rows, k, y + first, n, 0);
                    else {
                        job base = {packed + first / 16 * ((kp / 32) * 512), xb, xf, m, rows, k, kp, 0, 0, y + first, n};
                        packed_product(threads, base);
                    }
                }
            }
            rates[path] = (double)bytes * reps / (now() - start) / 1e9;
        }
        // The packed product once more, to count differing outputs after the timed default run overwrote y.
        for (size_t first = 0; first < n; first += slice) {
            job base = {packed + first / 16 * ((kp / 32) * 512), xb, xf, m, n - first < slice ? n - first : slice, k, kp,
                        0, 0, y + first, n};
            packed_product(threads, base);
        }
        size_t differing = 0;
        for (size_t i = 0; i < m * n; i++) differing += memcmp(&y[i], &reference[i], sizeof(float)) != 0;
        printf("%4zu   %9.1f  %30.1f  %10.1f   %zu of %zu\n", m, rates[0], rates[1], rates[2], differing, m * n);
    }
    return 0;
}
