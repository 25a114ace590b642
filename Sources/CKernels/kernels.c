// Batch-invariant kernels: y = x · wᵀ (f32 or bf16 weights) and the attention weighted sum, in three paths
// (portable scalar, AVX2 + FMA, AVX-512F) chosen once at run time. See sy_kernels.h for the
// fixed reduction shape that makes every path give the same bits for every batch size.
//
// Why the structure is safe: a tile of R rows of x by C rows of w keeps R × C independent
// 16-lane accumulators. Tiling only decides which loads are shared; each accumulator sees exactly
// the operations of a lone dot product, so neither m, nor the row's place in x, nor the tile shape
// (edge tiles are smaller) changes any result. No expression here is left to the compiler to
// contract into an FMA: every multiply-add is an explicit fmaf / fmadd intrinsic.
#include "sy_kernels.h"
#include "sy_hsum.h"
#include "sy_prefetch.h"

#include <float.h>
#include <math.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define SY_X86 1
#else
#define SY_X86 0
#endif

#if defined(__aarch64__)
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#define SY_ARM64 1
#else
#define SY_ARM64 0
#endif

enum { SY_LANES = 16 };

/// Rows of x per block: the block's rows (k floats each) should stay in L2 while every tile of
/// weight rows sweeps over them. Blocking never changes arithmetic, only the loop order.
// Overridable at compile time for tuning experiments (-DSY_BLOCK_BYTES=...).
#ifndef SY_BLOCK_BYTES
#define SY_BLOCK_BYTES (384u * 1024u)
#endif
static size_t rows_per_block(size_t k) {
    size_t budget = (SY_BLOCK_BYTES) / (sizeof(float) * (k > 0 ? k : 1));
    if (budget < 8) budget = 8;
    return budget & ~(size_t)7;
}


/// The AVX-512 bf16 kernel at 5-8 rows reads x a k-chunk at a time past this k (``dot_blocked``), its
/// tiles' accumulators kept between chunks in SY_DOT_STATE bytes. Chunks of 1,408 (k = 2816 in two)
/// were the fastest of 512, 768, 1,024 and 1,408; the state size (4, 8, 16 KiB) made no difference (on
/// Zen 4; on the Intel Xeon 16 KiB let the AVX-512F path's 8 × 3 tiles at 16 rows keep a block of 9
/// columns, not 3, and run 121 -> 132 GFLOP/s on one thread, the `vdpbf16ps` path alike with either).
/// Scripts/neon-check.sh builds the bit-equality test with both small, so that its shapes cross them.
#ifndef SY_DOT_KC
#define SY_DOT_KC 1536
#endif
#ifndef SY_DOT_STATE
#define SY_DOT_STATE 16384
#endif

/// The AVX-512F fast product (CPUs without `vdpbf16ps`) at 5-16 rows reads x a k-chunk at a time past
/// SY_DOT_KC (``fast_avx512_blocked``), in chunks of at most this many values (half at 9-16 rows).
#ifndef SY_AVX512_KC
#define SY_AVX512_KC 768
#endif

/// The AVX-512F fast product past 16 rows (and from SY_WIDE_ROWS at k ≤ SY_DOT_KC) takes its weight rows in
/// blocks of this many (``fast_avx512_wide``).
#ifndef SY_WIDE_COLUMNS
#define SY_WIDE_COLUMNS 64
#endif

/// From this many rows (and past 16) the AVX-512F fast product at k ≤ SY_DOT_KC runs in those blocks.
enum { SY_WIDE_ROWS = 7 };

/// TILE(R, C) for each tile of up to C_MAX (≥ 3) columns across n columns of weight rows, the last 1-3
/// columns as their own tile (C a constant in every call), `j` the tile's first column: the column loop of
/// the k-chunked f32 products (``chunk_avx512``, ``chunk_avx2``).
#define SY_COLUMN_TILES(TILE, R, C_MAX)                  \
    do {                                                 \
        size_t j = 0;                                    \
        for (; j + (C_MAX) <= n; j += (C_MAX)) TILE(R, C_MAX); \
        switch (n - j) {                                 \
        case 3: TILE(R, 3); break;                       \
        case 2: TILE(R, 2); break;                       \
        case 1: TILE(R, 1); break;                       \
        default: break;                                  \
        }                                                \
    } while (0)

// MARK: - Scalar path

enum { SCALAR_R = 2, SCALAR_C = 2 };

/// R rows of x against C weight rows. With `state` (a k-chunk of ``sy_matmul_nt_chunk_isa``) the lane sums
/// of output (r, c) start from state + (c · state_stride + r) · 16 unless `first` and go back there unless
/// `last`; NULL (the whole of k) is `first` and `last`.
static inline void tile_scalar(int R, int C, const float *x, size_t xs, const float *w, size_t ws, size_t k,
                               float *y, size_t ys, int accumulate, float *state, size_t state_stride, int first,
                               int last) {
    float acc[SCALAR_R][SCALAR_C][SY_LANES];
    memset(acc, 0, sizeof acc);
    if (state && !first)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) memcpy(acc[r][c], state + (c * state_stride + r) * SY_LANES, sizeof acc[r][c]);
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++)
                for (int l = 0; l < SY_LANES; l++)
                    acc[r][c][l] = fmaf(x[r * xs + p + l], w[c * ws + p + l], acc[r][c][l]);
    }
    // The partial block touches only lanes below k % 16 (the SIMD paths merge-mask the rest).
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            for (size_t l = 0; p + l < k; l++)
                acc[r][c][l] = fmaf(x[r * xs + p + l], w[c * ws + p + l], acc[r][c][l]);
    if (state && !last) {
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) memcpy(state + (c * state_stride + r) * SY_LANES, acc[r][c], sizeof acc[r][c]);
        return;
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_scalar(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

/// Rows [0, m) of x against n weight rows in tiles of 2 × 2; with `state` one k-chunk of
/// ``sy_matmul_nt_chunk_isa`` (output (i, j)'s lane sums at state + (j · m + i) · 16 between chunks), NULL
/// the whole of k.
static void columns_scalar(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws, float *y,
                           size_t ys, int accumulate, float *state, int first, int last) {
    for (size_t j = 0; j < n; j += SCALAR_C) {
        int C = n - j >= SCALAR_C ? SCALAR_C : (int)(n - j);
        for (size_t i = 0; i < m; i += SCALAR_R) {
            int R = m - i >= SCALAR_R ? SCALAR_R : (int)(m - i);
            tile_scalar(R, C, x + i * xs, xs, w + j * ws, ws, k, y + i * ys + j, ys, accumulate,
                        state ? state + (j * m + i) * SY_LANES : NULL, m, first, last);
        }
    }
}

static void matmul_scalar(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws,
                          float *y, size_t ys, int accumulate) {
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t rows = i0 + block < m ? block : m - i0;
        columns_scalar(x + i0 * xs, rows, k, xs, w, n, ws, y + i0 * ys, ys, accumulate, NULL, 1, 1);
    }
}

// MARK: - bf16 weights, scalar path

/// The exact f32 value of a bf16 bit pattern (its bits are the upper half of a binary32).
static inline float widen_bf16(uint16_t bits) {
    uint32_t wide = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &wide, sizeof value);
    return value;
}

/// ``tile_scalar`` with bf16 weights: the same operations on the widened weights.
static inline void tile_bf16_scalar(int R, int C, const float *x, size_t xs, const uint16_t *w, size_t ws, size_t k,
                                    float *y, size_t ys, int accumulate) {
    float acc[SCALAR_R][SCALAR_C][SY_LANES];
    memset(acc, 0, sizeof acc);
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++)
                for (int l = 0; l < SY_LANES; l++)
                    acc[r][c][l] = fmaf(x[r * xs + p + l], widen_bf16(w[c * ws + p + l]), acc[r][c][l]);
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            for (size_t l = 0; p + l < k; l++)
                acc[r][c][l] = fmaf(x[r * xs + p + l], widen_bf16(w[c * ws + p + l]), acc[r][c][l]);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_scalar(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

static void matmul_bf16_scalar(const float *x, size_t m, size_t k, size_t xs, const uint16_t *w, size_t n,
                               size_t ws, float *y, size_t ys, int accumulate) {
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        for (size_t j = 0; j < n; j += SCALAR_C) {
            int C = n - j >= SCALAR_C ? SCALAR_C : (int)(n - j);
            for (size_t i = i0; i < i1; i += SCALAR_R) {
                int R = i1 - i >= SCALAR_R ? SCALAR_R : (int)(i1 - i);
                tile_bf16_scalar(R, C, x + i * xs, xs, w + j * ws, ws, k, y + i * ys + j, ys, accumulate);
            }
        }
    }
}

/// Element j of a row of values stored as f32 (`bf16` 0) or as bf16 (`bf16` 1), as f32.
static inline float value_at(const void *v, size_t j, int bf16) {
    return bf16 ? widen_bf16(((const uint16_t *)v)[j]) : ((const float *)v)[j];
}

static void weighted_sum_scalar(const float *p, size_t count, const void *v, int bf16, size_t vs, size_t width,
                                float *out, int accumulate) {
    if (!accumulate)
        for (size_t d = 0; d < width; d++) out[d] = 0;
    for (size_t s = 0; s < count; s++)
        for (size_t d = 0; d < width; d++) out[d] = fmaf(p[s], value_at(v, s * vs + d, bf16), out[d]);
}

/// Whether the AVX-512 kernels prefetch their weight streams SY_PREFETCH_BYTES ahead into L2 (the f32,
/// exact bf16 and emulated fast products always, the `vdpbf16ps` product at m = 1; it prefetches at
/// every other m anyway). Prefetching never changes a result. Chosen by the CPU's maker, as measured:
/// on Zen 4 (AMD) the hardware prefetcher alone read one row at m = 1 at 28 GB/s a thread against 21
/// prefetched (see ``fast_dot``), so AMD CPUs do not; on an Intel Xeon with AVX-512 bf16 (2 threads,
/// Benchmarks/kernels/batch_step.c) the prefetch took batch 1 from 41-43 to 58-60 tokens/s on the
/// `vdpbf16ps` path (the weights read at 23 -> 33 GB/s), the exact product from 36-37 to 54 and the
/// emulated fast one from 37-38 to 59-60, and batch 32 on those two from 143-153 to 110-116 ms a step,
/// so every other CPU does. SWITCHYARD_STREAM_PREFETCH=1 or 0 overrides (``sy_stream_prefetch``).
static int choose_stream_prefetch(void) {
    const char *forced = getenv("SWITCHYARD_STREAM_PREFETCH");
    if (forced != NULL && forced[0] != '\0') {
        if (strcmp(forced, "1") == 0) return 1;
        if (strcmp(forced, "0") == 0) return 0;
        fprintf(stderr, "switchyard: SWITCHYARD_STREAM_PREFETCH is '%s', but must be 1 or 0; choosing by the CPU\n",
                forced);
    }
#if SY_X86
    return !__builtin_cpu_is("amd");
#else
    return 1;  // read by the AVX-512 kernels only
#endif
}

/// -1 until chosen; a race only makes two threads compute the same answer.
static _Atomic int stream_prefetch = -1;

#if SY_X86
/// Whether the CPU is AMD's: the few tile choices that were measured to go opposite ways on Zen 4 and
/// on an Intel Xeon follow it (they never change a result).
static int cpu_is_amd(void) {
    static _Atomic int amd = -1;  // a race only makes two threads compute the same answer
    int known = atomic_load_explicit(&amd, memory_order_relaxed);
    if (known < 0) {
        known = __builtin_cpu_is("amd") ? 1 : 0;
        atomic_store_explicit(&amd, known, memory_order_relaxed);
    }
    return known;
}
#endif

int sy_stream_prefetch(void) {
    int chosen = atomic_load_explicit(&stream_prefetch, memory_order_relaxed);
    if (chosen < 0) {
        chosen = choose_stream_prefetch();
        atomic_store_explicit(&stream_prefetch, chosen, memory_order_relaxed);
    }
    return chosen;
}

#if SY_X86

// MARK: - AVX-512 path

/// Whether `isa` runs the AVX-512 kernels: AVX-512F, AVX-512 bf16, and AMX (whose only kernels of its own
/// are the fast bf16 products).
static inline int avx512_isa(sy_isa isa) {
    return isa == SY_ISA_AVX512 || isa == SY_ISA_AVX512BF16 || isa == SY_ISA_AMX;
}

#define SY_AVX512 __attribute__((target("avx512f,fma"), always_inline)) static inline
#define SY_AVX512_FN __attribute__((target("avx512f,fma"))) static

enum { AVX512_R = 4, AVX512_C = 4 };

/// Rows of x per tile of the f32 product's k-chunks (``chunk_avx512``): 24 accumulators with 4 columns.
enum { AVX512_CHUNK_R = 6 };

/// Up to this many rows, products take one weight row at a time (tiles of 1 column): the weights then
/// stream from memory in one sequential run per thread, which reads about 1.5× faster than several
/// interleaved rows on the machines measured (Zen 4), and small m has little x to reuse anyway.
/// The tile shape never changes a result (each output has the same operations in every tile).
enum { SY_NARROW_ROWS = 4 };

/// The end of a tile of R × C accumulators over a k-chunk (``chunk_fast_avx512``, ``tile_dot``, ``tile_avx512``): unless
/// `last`, back into `state` (element (r, c) at `state[c * state_stride + r]`) for the next chunk; after
/// the last, each summed (``hsum16_avx512``) into y (added to it when `accumulate`).
_Static_assert(AVX512_C == 4, "finish_tile_avx512 takes accumulators of 4 columns");
SY_AVX512 void finish_tile_avx512(int R, int C, __m512 acc[][4], __m512 *state, size_t state_stride, int last,
                                  float *y, size_t ys, int accumulate) {
    if (!last) {
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) state[c * state_stride + r] = acc[r][c];
        return;
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx512(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

/// R rows of x against C f32 weight rows; with `prefetch` the weights SY_PREFETCH_BYTES ahead into L2,
/// with `prefetch` 2 (the one-row tiles of m ≤ SY_NARROW_ROWS) also SY_PREFETCH_NEAR_BYTES ahead into L1.
/// With `state` (a k-chunk of ``sy_matmul_nt_chunk_isa``) the accumulators start from it unless `first`
/// and go back unless `last` (as ``finish_tile_avx512`` keeps them); NULL (the whole of k) is both.
SY_AVX512 void tile_avx512(int R, int C, int prefetch, const float *x, size_t xs, const float *w, size_t ws, size_t k,
                           float *y, size_t ys, int accumulate, __m512 *state, size_t state_stride, int first,
                           int last) {
    __m512 acc[AVX512_CHUNK_R][AVX512_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            acc[r][c] = state && !first ? state[c * state_stride + r] : _mm512_setzero_ps();
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        __m512 wv[AVX512_C];
        for (int c = 0; c < C; c++) {
            wv[c] = _mm512_loadu_ps(w + c * ws + p);
            prefetch_weights(w + c * ws + p, prefetch);
        }
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_loadu_ps(x + r * xs + p);
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
        }
    }
    if (p < k) {
        __mmask16 mask = (__mmask16)((1u << (k - p)) - 1u);
        __m512 wv[AVX512_C];
        for (int c = 0; c < C; c++) wv[c] = _mm512_maskz_loadu_ps(mask, w + c * ws + p);
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * xs + p);
            // mask3: lanes outside the tail keep their accumulator untouched (as in the scalar path).
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_mask3_fmadd_ps(xv, wv[c], acc[r][c], mask);
        }
    }
    finish_tile_avx512(R, C, acc, state, state_stride, last, y, ys, accumulate);
}

/// All row tiles of one block against C weight rows; R and C are constants after inlining.
SY_AVX512 void rows_avx512(int C, int prefetch, const float *x, size_t i0, size_t i1, size_t xs, const float *w, size_t ws,
                           size_t k, float *y, size_t ys, int accumulate) {
#define SY_TILE_AVX512(R) \
    tile_avx512(R, C, prefetch, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate, NULL, 0, 1, 1)
    size_t i = i0;
    for (; i + AVX512_R <= i1; i += AVX512_R) SY_TILE_AVX512(AVX512_R);
    switch (i1 - i) {
    case 3: SY_TILE_AVX512(3); break;
    case 2: SY_TILE_AVX512(2); break;
    case 1: SY_TILE_AVX512(1); break;
    default: break;
    }
#undef SY_TILE_AVX512
}

SY_AVX512_FN void matmul_avx512(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws,
                                float *y, size_t ys, int accumulate) {
    int prefetch = sy_stream_prefetch();
    if (m <= SY_NARROW_ROWS) {
        for (size_t j = 0; j < n; j++)
            rows_avx512(1, prefetch ? 2 : 0, x, 0, m, xs, w + j * ws, ws, k, y + j, ys, accumulate);
        return;
    }
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        size_t j = 0;
        for (; j + AVX512_C <= n; j += AVX512_C)
            rows_avx512(AVX512_C, prefetch, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate);
        switch (n - j) {
        case 3: rows_avx512(3, prefetch, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        case 2: rows_avx512(2, prefetch, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        case 1: rows_avx512(1, prefetch, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        default: break;
        }
    }
}

/// One k-chunk of the f32 product (``sy_matmul_nt_chunk_isa``): tiles of up to AVX512_CHUNK_R rows × 4
/// columns, each output's accumulator at state + j · m + i between chunks. The loop order is the other
/// way round from ``matmul_avx512``'s: each tile of rows of x goes through all the weight rows (4 at a
/// time), so the x tile's chunk stays in L1 while the weight rows' chunks (the FP8 product's 16, 32 KiB)
/// stay there too. Measured with the FP8 product on the Intel Xeon (`Benchmarks/kernels/fp8_rate.c`, 2
/// threads, chunks of 512, 3 alternating rounds, the same bits) against whole-k 4 × 4 tiles in
/// ``matmul_avx512``'s order: m = 12, k = 1,024, n = 512 80-100 -> 97-121 GFLOP/s; m = 48 135 -> 160;
/// m = 128 132-136 -> 169; m = 128, k = 7,168 (chunks of 1,024 in ``matmul_avx512``'s order) 141 ->
/// 153-155. Then tiles of 6 rows against 4 (4 alternating rounds): m = 9 104 -> 113, 12 123-124 -> 129-131,
/// 16 133-135 -> 138-140, 24 145-147 -> 156-158, 128 168-172 -> 184-186, m = 128 at k = 7,168 150-162 ->
/// 169-177, m = 48 at k = 512 alike (8 × 3, 8 × 2 and 5 × 4 were slower).
SY_AVX512_FN void chunk_avx512(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws,
                               float *y, size_t ys, int accumulate, float *state, int first, int last) {
    __m512 *lanes = (__m512 *)(void *)state;
#define SY_TILE_AVX512(R, C)                                                                                 \
    tile_avx512(R, C, 0, x + i * xs, xs, w + j * ws, ws, k, y + i * ys + j, ys, accumulate, lanes + j * m + i, m, \
                first, last)
#define SY_ROW_TILES_AVX512(R) SY_COLUMN_TILES(SY_TILE_AVX512, R, AVX512_C)
    size_t i = 0;
    for (; i + AVX512_CHUNK_R <= m; i += AVX512_CHUNK_R) SY_ROW_TILES_AVX512(AVX512_CHUNK_R);
    _Static_assert(AVX512_CHUNK_R == 6, "the cases below take the last 1-5 rows");
    switch (m - i) {
    case 5: SY_ROW_TILES_AVX512(5); break;
    case 4: SY_ROW_TILES_AVX512(4); break;
    case 3: SY_ROW_TILES_AVX512(3); break;
    case 2: SY_ROW_TILES_AVX512(2); break;
    case 1: SY_ROW_TILES_AVX512(1); break;
    default: break;
    }
#undef SY_ROW_TILES_AVX512
#undef SY_TILE_AVX512
}

// MARK: - bf16 weights, AVX-512 path (widen 16 bf16 to 16 f32, then exactly the f32 tile)

/// 16 bf16 values at `w` (any 2-byte alignment) widened to f32.
SY_AVX512 __m512 widen16_bf16_avx512(const uint16_t *w) {
    __m256i half = _mm256_loadu_si256((const __m256i *)(const void *)w);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

/// The last `count` (< 16) bf16 values at `w` widened, zero above; reads no byte past them.
SY_AVX512 __m512 widen_tail_bf16_avx512(const uint16_t *w, size_t count) {
    uint16_t padded[SY_LANES] = {0};
    memcpy(padded, w, count * sizeof(uint16_t));
    return widen16_bf16_avx512(padded);
}

/// ``tile_avx512`` with bf16 weights, widened exactly.
SY_AVX512 void tile_bf16_avx512(int R, int C, int prefetch, const float *x, size_t xs, const uint16_t *w, size_t ws, size_t k,
                                float *y, size_t ys, int accumulate) {
    __m512 acc[AVX512_R][AVX512_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        __m512 wv[AVX512_C];
        for (int c = 0; c < C; c++) {
            wv[c] = widen16_bf16_avx512(w + c * ws + p);
            prefetch_weights(w + c * ws + p, prefetch);
        }
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_loadu_ps(x + r * xs + p);
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
        }
    }
    if (p < k) {
        __mmask16 mask = (__mmask16)((1u << (k - p)) - 1u);
        __m512 wv[AVX512_C];
        for (int c = 0; c < C; c++) wv[c] = widen_tail_bf16_avx512(w + c * ws + p, k - p);
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * xs + p);
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_mask3_fmadd_ps(xv, wv[c], acc[r][c], mask);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx512(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

SY_AVX512 void rows_bf16_avx512(int C, int prefetch, const float *x, size_t i0, size_t i1, size_t xs, const uint16_t *w,
                                size_t ws, size_t k, float *y, size_t ys, int accumulate) {
    size_t i = i0;
    for (; i + AVX512_R <= i1; i += AVX512_R)
        tile_bf16_avx512(AVX512_R, C, prefetch, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate);
    switch (i1 - i) {
    case 3: tile_bf16_avx512(3, C, prefetch, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    case 2: tile_bf16_avx512(2, C, prefetch, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    case 1: tile_bf16_avx512(1, C, prefetch, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    default: break;
    }
}

SY_AVX512_FN void matmul_bf16_avx512(const float *x, size_t m, size_t k, size_t xs, const uint16_t *w, size_t n,
                                     size_t ws, float *y, size_t ys, int accumulate) {
    int prefetch = sy_stream_prefetch();
    if (m <= SY_NARROW_ROWS) {
        for (size_t j = 0; j < n; j++) rows_bf16_avx512(1, prefetch ? 2 : 0, x, 0, m, xs, w + j * ws, ws, k, y + j, ys, accumulate);
        return;
    }
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        size_t j = 0;
        for (; j + AVX512_C <= n; j += AVX512_C)
            rows_bf16_avx512(AVX512_C, prefetch, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate);
        switch (n - j) {
        case 3: rows_bf16_avx512(3, prefetch, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        case 2: rows_bf16_avx512(2, prefetch, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        case 1: rows_bf16_avx512(1, prefetch, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        default: break;
        }
    }
}

/// 16 values of a row stored as f32 or bf16 (`bf16`), as f32: those of `mask` (its low `left` lanes),
/// zero above; reads no element outside them.
SY_AVX512 __m512 values16_avx512(const void *row, int bf16, __mmask16 mask, size_t left) {
    if (!bf16) return _mm512_maskz_loadu_ps(mask, row);
    return left >= SY_LANES ? widen16_bf16_avx512(row) : widen_tail_bf16_avx512(row, left);
}

/// out[h, d] = Σ_s p[h · ps + s] · v[s, d] for H heads at once (outputs out + h · os): four vectors
/// (64 columns) per pass, so that each head has four independent FMA chains in registers (fixed trip
/// counts), and each value vector is read and widened once for all H heads; then the last (fewer than
/// 64) columns one vector at a time. Each out[h, d] gets the same FMAs in the same order whatever H
/// is, so a head's bits do not depend on the heads computed with it.
SY_AVX512 void weighted_sum_heads_body_avx512(int H, const float *p, size_t ps, size_t count, const void *v,
                                              int bf16, size_t vs, size_t width, float *out, size_t os,
                                              int accumulate) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    size_t d0 = 0;
    for (; d0 + 4 * SY_LANES <= width; d0 += 4 * SY_LANES) {
        __m512 acc[4][4];
        for (int h = 0; h < H; h++)
            for (int j = 0; j < 4; j++)
                acc[h][j] = accumulate ? _mm512_loadu_ps(out + h * os + d0 + j * SY_LANES) : _mm512_setzero_ps();
        for (size_t s = 0; s < count; s++) {
            const char *row = (const char *)v + (s * vs + d0) * element;
            __m512 values[4];
            for (int j = 0; j < 4; j++) values[j] = values16_avx512(row + j * SY_LANES * element, bf16, 0xFFFF, SY_LANES);
            for (int h = 0; h < H; h++) {
                __m512 weight = _mm512_set1_ps(p[h * ps + s]);
                for (int j = 0; j < 4; j++) acc[h][j] = _mm512_fmadd_ps(weight, values[j], acc[h][j]);
            }
        }
        for (int h = 0; h < H; h++)
            for (int j = 0; j < 4; j++) _mm512_storeu_ps(out + h * os + d0 + j * SY_LANES, acc[h][j]);
    }
    for (; d0 < width; d0 += SY_LANES) {
        size_t left = width - d0 < SY_LANES ? width - d0 : SY_LANES;
        __mmask16 mask = left >= SY_LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        __m512 acc[4];
        for (int h = 0; h < H; h++)
            acc[h] = accumulate ? _mm512_maskz_loadu_ps(mask, out + h * os + d0) : _mm512_setzero_ps();
        for (size_t s = 0; s < count; s++) {
            __m512 values = values16_avx512((const char *)v + (s * vs + d0) * element, bf16, mask, left);
            for (int h = 0; h < H; h++) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(p[h * ps + s]), values, acc[h]);
        }
        for (int h = 0; h < H; h++) _mm512_mask_storeu_ps(out + h * os + d0, mask, acc[h]);
    }
}

/// One head (the weighted sum of ``sy_weighted_sum_isa``).
SY_AVX512_FN void weighted_sum_avx512(const float *p, size_t count, const void *v, int bf16, size_t vs,
                                      size_t width, float *out, int accumulate) {
    if (bf16)
        weighted_sum_heads_body_avx512(1, p, 0, count, v, 1, vs, width, out, 0, accumulate);
    else
        weighted_sum_heads_body_avx512(1, p, 0, count, v, 0, vs, width, out, 0, accumulate);
}

/// The heads four at a time (16 accumulators of 64 columns), then the rest together.
SY_AVX512_FN void weighted_sum_heads_avx512(const float *p, size_t ps, size_t heads, size_t count, const void *v,
                                            int bf16, size_t vs, size_t width, float *out, size_t os, int accumulate) {
    for (size_t h = 0; h < heads;) {
        size_t left = heads - h;
        const float *ph = p + h * ps;
        float *oh = out + h * os;
#define SY_HEADS_CASE(H)                                                                                            \
    case H:                                                                                                        \
        if (bf16) weighted_sum_heads_body_avx512(H, ph, ps, count, v, 1, vs, width, oh, os, accumulate);          \
        else weighted_sum_heads_body_avx512(H, ph, ps, count, v, 0, vs, width, oh, os, accumulate);               \
        break;
        switch (left >= 4 ? 4 : left) {
            SY_HEADS_CASE(4)
            SY_HEADS_CASE(3)
            SY_HEADS_CASE(2)
            SY_HEADS_CASE(1)
        }
#undef SY_HEADS_CASE
        h += left >= 4 ? 4 : left;
    }
}

// MARK: - AVX2 path (16 lanes as two 8-lane halves, so the arithmetic matches the other paths)
//
// The AVX2 kernels are shaped like the AVX-512 ones, for 16 ymm registers: tiles of constant shape
// (each call of a tile has constant R and C, so its accumulators stay in registers), a loop over
// whole blocks with nothing else in it and the partial last block after it, the weight streams
// prefetched SY_PREFETCH_BYTES ahead into L2, and for m ≤ SY_NARROW_ROWS one weight row at a time
// (one sequential stream per thread: batch-1 decode is m = 1 and reads every weight once).
//
// Measured with Benchmarks/kernels/batch_step.c on the AVX2 path of a 2-core Sapphire Rapids VM
// (`SWITCHYARD_KERNEL=avx2 /tmp/bs_avx2 2 48 1 [KIND]` and `... 2 8 32 [KIND]`, built with
// `cc -O3 -march=native`), 6 rounds alternating with the kernels before this shape, medians of the
// step: batch 1 fast 92 -> 50 ms (the experts' weights read at 6.2 -> 11.2 GB/s, where the memory
// read floor of Benchmarks/floors was 12-15 GB/s and the `vdpbf16ps` path took 47 ms), q8 50 -> 32 ms,
// exact 70 -> 38 ms; batch 32 q8 447 -> 243 ms (211 with AVX-VNNI). Batch 32 fast: 682 -> 559 ms
// (every round faster) built without -march, as SwiftPM builds it (16 ymm registers); with
// -march=native, which lets the compiler use 32 registers in these functions too, 392 -> 454 ms
// (per-round ratios 0.70-1.28, so no gain there): the 3 × 2 tiles are bound by the multiply-adds and
// the bf16 splits sharing two ports, about 35-48 GFLOP/s a core in L2 either way.
// Later (Zen 4 with `SWITCHYARD_KERNEL=avx2`, 2026-12-05): those 3 × 2 tiles held 12 accumulators and
// 4 weight vectors, so the compiler read every x vector from memory once per column (about 33 loads for
// 24 multiply-adds); the fast product past 4 rows now runs 3 × 3 tiles one half of the lanes at a time
// (9 accumulators, 3 weight vectors, 1 x vector: 12 loads for 18), k in chunks of SY_AVX2_KC: batch 32
// 197 -> 149 ms a step, 90 -> 119 GFLOP/s (the floors' f32 FMA peak 234). Then (Intel Xeon, the AVX2
// path): up to 12 rows, all the tiles go through each chunk of k together, so that the weights stream in
// while the arithmetic runs rather than before it: the experts of a batch-32 step 6-8% faster, at about
// 70% of the FMA peak on one thread. 4 × 3 tiles (12 accumulators, 3 weight vectors, 1 x vector: all 16
// ymm registers) splitting their own weights did not fit: built by gcc they were faster (the product in
// L2 at m = 8 on one thread 54 -> 60 GFLOP/s), but clang, which builds this file in SwiftPM (`-O2`), turns
// the AND with 0xFFFF0000 into a blend with a zero register and then spills accumulators in every
// iteration (60 -> 44 GFLOP/s; serve batch 32 on the AVX2 path 172-183 -> 140-150 tok/s in 3 alternating
// rounds), also with the mask read from memory. Now each chunk of weights is split into f32 once for
// all the tiles of a panel, and the 4 × 3 tiles hold only loads and multiply-adds (``panel_wide_avx2``).
// Measure these kernels as SwiftPM compiles them (see Benchmarks/kernels/batch_step.c).

#define SY_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline
#define SY_AVX2_FN __attribute__((target("avx2,fma"))) static

/// The lane mask for the first `count` (0 ... 8) of 8 lanes, for maskload.
SY_AVX2 __m256i mask8_avx2(size_t count) {
    __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), index);
}

/// 8 bf16 values at `w` (any 2-byte alignment) widened to f32.
SY_AVX2 __m256 widen8_bf16_avx2(const uint16_t *w) {
    __m128i half = _mm_loadu_si128((const __m128i *)(const void *)w);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
}

/// 8 values of a row stored as f32 or bf16 (`bf16`), as f32: the low `left` (≤ 8) lanes of `mask`,
/// zero above; reads no element outside them.
SY_AVX2 __m256 values8_avx2(const void *row, int bf16, __m256i mask, size_t left) {
    if (!bf16) return left >= 8 ? _mm256_loadu_ps(row) : _mm256_maskload_ps(row, mask);
    if (left >= 8) return widen8_bf16_avx2(row);
    uint16_t padded[8] = {0};
    memcpy(padded, row, left * sizeof(uint16_t));
    return widen8_bf16_avx2(padded);
}

/// Tile shapes of the f32 and exact bf16 products. Up to SY_NARROW_ROWS rows of x a tile takes one weight
/// row (a single sequential stream per thread, the rule of the AVX-512 path) against up to 4 rows of x: 8
/// accumulators, 2 weight and 2 x vectors. Past it the loop order turns: each tile of up to AVX2_WIDE_C
/// weight rows (k ≤ 2,048: 24 KiB, in L1) goes through all of the block's rows of x (in L2) AVX2_WIDE_R at
/// a time, so an x vector loaded from L2 serves 3 weight rows, not 1. Measured on the Intel Xeon
/// (`SWITCHYARD_KERNEL=avx2`, 2 threads, alternating rounds, the same bits), against 4 × 1 tiles for every
/// m: the FP8 product (which then ran this kernel on its widened rows past 8 rows of x) 49-58 -> 88-104 GFLOP/s at m = 48,
/// 128 and 512 (k = 1,024 and 512) with 2 × 3 tiles, where 1 × 4 did 84-89, 3 × 2 85-93 and 2 × 2 80-85;
/// `batch_step 2 8 B exact` (bf16 experts from memory), the experts of a step at B = 32 (m = 8) 188-190 ->
/// 144-153 ms and at B = 24 (m = 6) 131-137 -> 116-121 (from 9 rows only: 159-169 and 131-137).
enum { AVX2_R = 4, AVX2_WIDE_R = 2, AVX2_WIDE_C = 3 };

/// R rows of x (≤ 4) against C weight rows (≤ 3; rows `ws` elements apart) stored as f32 or bf16 (`bf16`,
/// widened exactly); with `prefetch` the weights also SY_PREFETCH_NEAR_BYTES ahead into L1 besides the L2
/// prefetch. Each output is the same operations in the same order in every shape. With `state` (a k-chunk of
/// ``sy_matmul_nt_chunk_isa``) the lane sums of output (r, c) start from state + (c · state_stride + r) · 16
/// (lanes 0-7, then 8-15) unless `first` and go back there unless `last`; NULL (the whole of k) is both.
SY_AVX2 void tile_avx2(int R, int C, int prefetch, const float *x, size_t xs, const void *w, int bf16, size_t ws,
                       size_t k, float *y, size_t ys, int accumulate, float *state, size_t state_stride, int first,
                       int last) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float), column = ws * element;
    const char *wb = (const char *)w;
    const __m256i all = mask8_avx2(8);
    __m256 lo[AVX2_R][AVX2_WIDE_C], hi[AVX2_R][AVX2_WIDE_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
    if (state && !first)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                const float *lanes = state + (c * state_stride + r) * SY_LANES;
                lo[r][c] = _mm256_loadu_ps(lanes);
                hi[r][c] = _mm256_loadu_ps(lanes + 8);
            }
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        __m256 wlo[AVX2_WIDE_C], whi[AVX2_WIDE_C];
        for (int c = 0; c < C; c++) {
            const char *at = wb + c * column + p * element;
            if (prefetch) prefetch_weights(at, 2);
            wlo[c] = values8_avx2(at, bf16, all, 8);
            whi[c] = values8_avx2(at + 8 * element, bf16, all, 8);
        }
        for (int r = 0; r < R; r++) {
            __m256 xlo = _mm256_loadu_ps(x + r * xs + p), xhi = _mm256_loadu_ps(x + r * xs + p + 8);
            for (int c = 0; c < C; c++) {
                lo[r][c] = _mm256_fmadd_ps(xlo, wlo[c], lo[r][c]);
                hi[r][c] = _mm256_fmadd_ps(xhi, whi[c], hi[r][c]);
            }
        }
    }
    if (p < k) {
        size_t left = k - p, left_lo = left < 8 ? left : 8, left_hi = left > 8 ? left - 8 : 0;
        __m256i mlo = mask8_avx2(left_lo), mhi = mask8_avx2(left_hi);
        for (int c = 0; c < C; c++) {
            const char *at = wb + c * column + p * element;
            __m256 wlo = values8_avx2(at, bf16, mlo, left_lo), whi = values8_avx2(at + 8 * element, bf16, mhi, left_hi);
            for (int r = 0; r < R; r++) {
                __m256 xlo = _mm256_maskload_ps(x + r * xs + p, mlo);
                __m256 xhi = _mm256_maskload_ps(x + r * xs + p + 8, mhi);
                // Blend so lanes outside the tail keep their accumulator untouched (-0 stays -0).
                lo[r][c] = _mm256_blendv_ps(lo[r][c], _mm256_fmadd_ps(xlo, wlo, lo[r][c]), _mm256_castsi256_ps(mlo));
                hi[r][c] = _mm256_blendv_ps(hi[r][c], _mm256_fmadd_ps(xhi, whi, hi[r][c]), _mm256_castsi256_ps(mhi));
            }
        }
    }
    if (state && !last) {
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                float *lanes = state + (c * state_stride + r) * SY_LANES;
                _mm256_storeu_ps(lanes, lo[r][c]);
                _mm256_storeu_ps(lanes + 8, hi[r][c]);
            }
        return;
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx2(lo[r][c], hi[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

/// Rows [i0, i1) of x against C weight rows at `w` in tiles of AVX2_WIDE_R rows (the last one row), the
/// first tile prefetching the weights (the others find them in L1).
SY_AVX2 void rows_wide_exact_avx2(int C, const float *x, size_t i0, size_t i1, size_t xs, const void *w, int bf16,
                                  size_t ws, size_t k, float *y, size_t ys, int accumulate) {
#define SY_TILE_AVX2(R, PREFETCH) \
    tile_avx2(R, C, PREFETCH, x + i * xs, xs, w, bf16, ws, k, y + i * ys, ys, accumulate, NULL, 0, 1, 1)
    size_t i = i0;
    if (i + AVX2_WIDE_R <= i1) {
        SY_TILE_AVX2(AVX2_WIDE_R, 1);
        i += AVX2_WIDE_R;
    }
    for (; i + AVX2_WIDE_R <= i1; i += AVX2_WIDE_R) SY_TILE_AVX2(AVX2_WIDE_R, 0);
    if (i < i1) SY_TILE_AVX2(1, 0);
#undef SY_TILE_AVX2
}

/// The f32 (`bf16` 0) or exact bf16 (`bf16` 1) product; `bf16` is a constant at each call. Each block
/// of rows (see ``rows_per_block``) sweeps the weight rows: up to SY_NARROW_ROWS rows one at a time, in
/// tiles of 4 rows of x (the last 3, 2 or 1, so every tile call has a constant R); past it AVX2_WIDE_C at a
/// time (the last 2 or 1), each through all of the block's rows.
SY_AVX2 void matmul_body_avx2(const float *x, size_t m, size_t k, size_t xs, const void *w, int bf16, size_t n,
                              size_t ws, float *y, size_t ys, int accumulate) {
    size_t column = ws * (bf16 ? sizeof(uint16_t) : sizeof(float)), block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        if (m > SY_NARROW_ROWS) {
            size_t j = 0;
            for (; j + AVX2_WIDE_C <= n; j += AVX2_WIDE_C)
                rows_wide_exact_avx2(AVX2_WIDE_C, x, i0, i1, xs, (const char *)w + j * column, bf16, ws, k, y + j, ys,
                                     accumulate);
            switch (n - j) {
            case 2: rows_wide_exact_avx2(2, x, i0, i1, xs, (const char *)w + j * column, bf16, ws, k, y + j, ys, accumulate); break;
            case 1: rows_wide_exact_avx2(1, x, i0, i1, xs, (const char *)w + j * column, bf16, ws, k, y + j, ys, accumulate); break;
            default: break;
            }
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            const void *wj = (const char *)w + j * column;
            size_t i = i0;
            for (; i + AVX2_R <= i1; i += AVX2_R)
                tile_avx2(AVX2_R, 1, 1, x + i * xs, xs, wj, bf16, ws, k, y + i * ys + j, ys, accumulate, NULL, 0, 1, 1);
            switch (i1 - i) {
            case 3: tile_avx2(3, 1, 1, x + i * xs, xs, wj, bf16, ws, k, y + i * ys + j, ys, accumulate, NULL, 0, 1, 1); break;
            case 2: tile_avx2(2, 1, 1, x + i * xs, xs, wj, bf16, ws, k, y + i * ys + j, ys, accumulate, NULL, 0, 1, 1); break;
            case 1: tile_avx2(1, 1, 1, x + i * xs, xs, wj, bf16, ws, k, y + i * ys + j, ys, accumulate, NULL, 0, 1, 1); break;
            default: break;
            }
        }
    }
}

SY_AVX2_FN void matmul_avx2(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws,
                            float *y, size_t ys, int accumulate) {
    matmul_body_avx2(x, m, k, xs, w, 0, n, ws, y, ys, accumulate);
}

SY_AVX2_FN void matmul_bf16_avx2(const float *x, size_t m, size_t k, size_t xs, const uint16_t *w, size_t n,
                                 size_t ws, float *y, size_t ys, int accumulate) {
    matmul_body_avx2(x, m, k, xs, w, 1, n, ws, y, ys, accumulate);
}

/// One k-chunk of the f32 product (``sy_matmul_nt_chunk_isa``): the tiles of ``matmul_avx2`` past
/// SY_NARROW_ROWS, output (i, j)'s lane sums at state + (j · m + i) · 16 between chunks. As in
/// ``chunk_avx512`` each tile of rows goes through all the weight rows (3 at a time), the x tile's chunk and
/// the weight rows' chunks in L1. Measured as there (`SWITCHYARD_KERNEL=avx2`) against whole-k tiles in
/// ``matmul_avx2``'s order: m = 12, k = 1,024, n = 512 89 -> 97-99 GFLOP/s; m = 48 88-89 -> 99-102; m = 128
/// 106-107 -> 126; m = 128, k = 7,168 (chunks of 1,024 in ``matmul_avx2``'s order) 82-94 -> 106-107.
SY_AVX2_FN void chunk_avx2(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws,
                           float *y, size_t ys, int accumulate, float *state, int first, int last) {
#define SY_TILE_AVX2(R, C)                                                                                    \
    tile_avx2(R, C, 0, x + i * xs, xs, w + j * ws, 0, ws, k, y + i * ys + j, ys, accumulate,                   \
              state + (j * m + i) * SY_LANES, m, first, last)
#define SY_ROW_TILES_AVX2(R) SY_COLUMN_TILES(SY_TILE_AVX2, R, AVX2_WIDE_C)
    size_t i = 0;
    for (; i + AVX2_WIDE_R <= m; i += AVX2_WIDE_R) SY_ROW_TILES_AVX2(AVX2_WIDE_R);
    if (i < m) SY_ROW_TILES_AVX2(1);
#undef SY_ROW_TILES_AVX2
#undef SY_TILE_AVX2
}

/// out[h, d] = Σ_s p[h · ps + s] · v[s, d] for H (1 or 2) heads at once (outputs out + h · os): four
/// vectors (32 columns) per pass in registers, each value vector read and widened once for the H heads
/// (for 2: 8 accumulators, 4 values and a weight, 13 of the 16 registers), then the last columns one
/// vector at a time. Each out[h, d] gets the same FMAs in the same order whatever H is.
SY_AVX2 void weighted_sum_heads_body_avx2(int H, const float *p, size_t ps, size_t count, const void *v, int bf16,
                                          size_t vs, size_t width, float *out, size_t os, int accumulate) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    size_t d0 = 0;
    const __m256i all = mask8_avx2(8);
    for (; d0 + 32 <= width; d0 += 32) {
        __m256 acc[2][4];
        for (int h = 0; h < H; h++)
            for (int j = 0; j < 4; j++)
                acc[h][j] = accumulate ? _mm256_loadu_ps(out + h * os + d0 + 8 * j) : _mm256_setzero_ps();
        for (size_t s = 0; s < count; s++) {
            const char *row = (const char *)v + (s * vs + d0) * element;
            __m256 values[4];
            for (int j = 0; j < 4; j++) values[j] = values8_avx2(row + 8 * j * element, bf16, all, 8);
            for (int h = 0; h < H; h++) {
                __m256 weight = _mm256_set1_ps(p[h * ps + s]);
                for (int j = 0; j < 4; j++) acc[h][j] = _mm256_fmadd_ps(weight, values[j], acc[h][j]);
            }
        }
        for (int h = 0; h < H; h++)
            for (int j = 0; j < 4; j++) _mm256_storeu_ps(out + h * os + d0 + 8 * j, acc[h][j]);
    }
    for (; d0 < width; d0 += 8) {
        size_t left = width - d0 < 8 ? width - d0 : 8;
        __m256i mask = mask8_avx2(left);
        __m256 acc[2];
        for (int h = 0; h < H; h++) acc[h] = accumulate ? _mm256_maskload_ps(out + h * os + d0, mask) : _mm256_setzero_ps();
        for (size_t s = 0; s < count; s++) {
            __m256 values = values8_avx2((const char *)v + (s * vs + d0) * element, bf16, mask, left);
            for (int h = 0; h < H; h++) acc[h] = _mm256_fmadd_ps(_mm256_set1_ps(p[h * ps + s]), values, acc[h]);
        }
        for (int h = 0; h < H; h++) _mm256_maskstore_ps(out + h * os + d0, mask, acc[h]);
    }
}

/// One head (the weighted sum of ``sy_weighted_sum_isa``).
SY_AVX2_FN void weighted_sum_avx2(const float *p, size_t count, const void *v, int bf16, size_t vs, size_t width,
                                  float *out, int accumulate) {
    if (bf16)
        weighted_sum_heads_body_avx2(1, p, 0, count, v, 1, vs, width, out, 0, accumulate);
    else
        weighted_sum_heads_body_avx2(1, p, 0, count, v, 0, vs, width, out, 0, accumulate);
}

/// The heads two at a time, the last alone.
SY_AVX2_FN void weighted_sum_heads_avx2(const float *p, size_t ps, size_t heads, size_t count, const void *v, int bf16,
                                        size_t vs, size_t width, float *out, size_t os, int accumulate) {
    for (size_t h = 0; h < heads; h += 2) {
        int H = heads - h >= 2 ? 2 : 1;
        if (bf16) {
            if (H == 2) weighted_sum_heads_body_avx2(2, p + h * ps, ps, count, v, 1, vs, width, out + h * os, os, accumulate);
            else weighted_sum_heads_body_avx2(1, p + h * ps, ps, count, v, 1, vs, width, out + h * os, os, accumulate);
        } else {
            if (H == 2) weighted_sum_heads_body_avx2(2, p + h * ps, ps, count, v, 0, vs, width, out + h * os, os, accumulate);
            else weighted_sum_heads_body_avx2(1, p + h * ps, ps, count, v, 0, vs, width, out + h * os, os, accumulate);
        }
    }
}

#endif // SY_X86

#if SY_ARM64

// MARK: - NEON path (AArch64): the 16 lanes as four float32x4_t, lanes 4q ... 4q + 3 in vector q
//
// Advanced SIMD is part of every AArch64 CPU, so this path needs no run-time check (the q8 product's
// `sdot` does: see its section). Every multiply-add is an explicit `vfmaq_f32`, the lanes of a
// partial block outside the tail keep their accumulator (a bit select, as AVX2's blend), and the
// lanes are added by ``hsum16_neon``, the tree of the header; so each result is the scalar path's.

#define SY_NEON __attribute__((always_inline)) static inline

/// The lanes below `count` (< 16) of the 16, as four lane masks.
SY_NEON void tail_mask_neon(size_t count, uint32x4_t mask[4]) {
    static const uint32_t index[SY_LANES] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int q = 0; q < 4; q++) mask[q] = vcltq_u32(vld1q_u32(index + 4 * q), vdupq_n_u32((uint32_t)count));
}

/// 16 values of a row stored as f32 (`bf16` 0) or bf16 (`bf16` 1, any 2-byte alignment), as f32:
/// a bf16 value's 16 bits shifted into the top half of an f32 lane (exact).
SY_NEON void values16_neon(const void *row, int bf16, float32x4_t out[4]) {
    if (!bf16) {
        for (int q = 0; q < 4; q++) out[q] = vld1q_f32((const float *)row + 4 * q);
        return;
    }
    uint16x8_t low = vld1q_u16((const uint16_t *)row), high = vld1q_u16((const uint16_t *)row + 8);
    out[0] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(low), 16));
    out[1] = vreinterpretq_f32_u32(vshll_high_n_u16(low, 16));
    out[2] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(high), 16));
    out[3] = vreinterpretq_f32_u32(vshll_high_n_u16(high, 16));
}

/// The first `count` (< 16) values of a row as ``values16_neon`` gives them, zero above; reads no
/// element past them.
SY_NEON void values_tail_neon(const void *row, int bf16, size_t count, float32x4_t out[4]) {
    if (bf16) {
        uint16_t padded[SY_LANES] = {0};
        memcpy(padded, row, count * sizeof(uint16_t));
        values16_neon(padded, 1, out);
    } else {
        float padded[SY_LANES] = {0};
        memcpy(padded, row, count * sizeof(float));
        values16_neon(padded, 0, out);
    }
}

enum { NEON_R = 2, NEON_C = 2 };

/// R rows of x (f32) against C weight rows (f32 or bf16, see ``values16_neon``): 16 accumulators,
/// 8 weight and 4 x vectors, within the 32 registers. With `state` (a k-chunk of ``sy_matmul_nt_chunk_isa``)
/// the lane sums of output (r, c) start from state + (c · state_stride + r) · 16 unless `first` and go back
/// there unless `last`; NULL (the whole of k) is both.
SY_NEON void tile_neon(int R, int C, const float *x, size_t xs, const void *w, int bf16, size_t ws, size_t k,
                       float *y, size_t ys, int accumulate, float *state, size_t state_stride, int first, int last) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    float32x4_t acc[NEON_R][NEON_C][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            for (int q = 0; q < 4; q++) acc[r][c][q] = vdupq_n_f32(0.0f);
    if (state && !first)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++)
                for (int q = 0; q < 4; q++) acc[r][c][q] = vld1q_f32(state + (c * state_stride + r) * SY_LANES + 4 * q);
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        float32x4_t wv[NEON_C][4];
        for (int c = 0; c < C; c++) values16_neon((const char *)w + (c * ws + p) * element, bf16, wv[c]);
        for (int r = 0; r < R; r++) {
            float32x4_t xv[4];
            values16_neon(x + r * xs + p, 0, xv);
            for (int c = 0; c < C; c++)
                for (int q = 0; q < 4; q++) acc[r][c][q] = vfmaq_f32(acc[r][c][q], xv[q], wv[c][q]);
        }
    }
    if (p < k) {
        uint32x4_t mask[4];
        tail_mask_neon(k - p, mask);
        float32x4_t wv[NEON_C][4];
        for (int c = 0; c < C; c++) values_tail_neon((const char *)w + (c * ws + p) * element, bf16, k - p, wv[c]);
        for (int r = 0; r < R; r++) {
            float32x4_t xv[4];
            values_tail_neon(x + r * xs + p, 0, k - p, xv);
            for (int c = 0; c < C; c++)
                for (int q = 0; q < 4; q++)
                    acc[r][c][q] = vbslq_f32(mask[q], vfmaq_f32(acc[r][c][q], xv[q], wv[c][q]), acc[r][c][q]);
        }
    }
    if (state && !last) {
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++)
                for (int q = 0; q < 4; q++) vst1q_f32(state + (c * state_stride + r) * SY_LANES + 4 * q, acc[r][c][q]);
        return;
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_neon(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

/// Rows [i0, i1) of x against C weight rows; `state` as ``tile_neon`` takes it, for rows [0, ...): row i's
/// at state + i · 16.
SY_NEON void rows_neon(int C, const float *x, size_t i0, size_t i1, size_t xs, const void *w, int bf16, size_t ws,
                       size_t k, float *y, size_t ys, int accumulate, float *state, size_t state_stride, int first,
                       int last) {
    size_t i = i0;
    for (; i + NEON_R <= i1; i += NEON_R)
        tile_neon(NEON_R, C, x + i * xs, xs, w, bf16, ws, k, y + i * ys, ys, accumulate,
                  state ? state + i * SY_LANES : NULL, state_stride, first, last);
    if (i < i1)
        tile_neon(1, C, x + i * xs, xs, w, bf16, ws, k, y + i * ys, ys, accumulate, state ? state + i * SY_LANES : NULL,
                  state_stride, first, last);
}

/// Rows [i0, i1) of x against n weight rows, NEON_C at a time; `state` as ``rows_neon`` takes it (the rows of
/// one k-chunk of ``sy_matmul_nt_chunk_isa``, `state_stride` of them), or NULL (the whole of k).
SY_NEON void columns_neon(const float *x, size_t i0, size_t i1, size_t xs, const void *w, int bf16, size_t n, size_t ws,
                          size_t k, float *y, size_t ys, int accumulate, float *state, size_t state_stride, int first,
                          int last) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float), j = 0;
#define SY_ROWS_NEON(C)                                                                                        \
    rows_neon(C, x, i0, i1, xs, (const char *)w + j * ws * element, bf16, ws, k, y + j, ys, accumulate,         \
              state ? state + j * state_stride * SY_LANES : NULL, state_stride, first, last)
    for (; j + NEON_C <= n; j += NEON_C) SY_ROWS_NEON(NEON_C);
    if (j < n) SY_ROWS_NEON(1);
#undef SY_ROWS_NEON
}

SY_NEON void matmul_body_neon(const float *x, size_t m, size_t k, size_t xs, const void *w, int bf16, size_t n,
                              size_t ws, float *y, size_t ys, int accumulate) {
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block)
        columns_neon(x, i0, i0 + block < m ? i0 + block : m, xs, w, bf16, n, ws, k, y, ys, accumulate, NULL, 0, 1, 1);
}

/// One k-chunk of the f32 product (``sy_matmul_nt_chunk_isa``): the tiles of ``matmul_neon``, output (i, j)'s
/// lane sums at state + (j · m + i) · 16 between chunks.
static void chunk_neon(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws, float *y,
                       size_t ys, int accumulate, float *state, int first, int last) {
    columns_neon(x, 0, m, xs, w, 0, n, ws, k, y, ys, accumulate, state, m, first, last);
}

/// y = x · wᵀ with f32 (`bf16` 0) or bf16 weights, each compiled with its loads fixed.
static void matmul_neon(const float *x, size_t m, size_t k, size_t xs, const void *w, int bf16, size_t n, size_t ws,
                        float *y, size_t ys, int accumulate) {
    if (bf16)
        matmul_body_neon(x, m, k, xs, w, 1, n, ws, y, ys, accumulate);
    else
        matmul_body_neon(x, m, k, xs, w, 0, n, ws, y, ys, accumulate);
}

SY_NEON void weighted_sum_body_neon(const float *p, size_t count, const void *v, int bf16, size_t vs, size_t width,
                                    float *out, int accumulate) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    // 16 columns per pass (four FMA chains in registers); each out[d] gets the scalar path's FMAs in
    // its order. The last (fewer than 16) columns take the scalar path's loop itself.
    size_t d0 = 0;
    for (; d0 + SY_LANES <= width; d0 += SY_LANES) {
        float32x4_t acc[4];
        for (int q = 0; q < 4; q++) acc[q] = accumulate ? vld1q_f32(out + d0 + 4 * q) : vdupq_n_f32(0.0f);
        for (size_t s = 0; s < count; s++) {
            float32x4_t weight = vdupq_n_f32(p[s]), values[4];
            values16_neon((const char *)v + (s * vs + d0) * element, bf16, values);
            for (int q = 0; q < 4; q++) acc[q] = vfmaq_f32(acc[q], weight, values[q]);
        }
        for (int q = 0; q < 4; q++) vst1q_f32(out + d0 + 4 * q, acc[q]);
    }
    for (; d0 < width; d0++) {
        float acc = accumulate ? out[d0] : 0.0f;
        for (size_t s = 0; s < count; s++) acc = fmaf(p[s], value_at(v, s * vs + d0, bf16), acc);
        out[d0] = acc;
    }
}

static void weighted_sum_neon(const float *p, size_t count, const void *v, int bf16, size_t vs, size_t width,
                              float *out, int accumulate) {
    if (bf16)
        weighted_sum_body_neon(p, count, v, 1, vs, width, out, accumulate);
    else
        weighted_sum_body_neon(p, count, v, 0, vs, width, out, accumulate);
}

#endif // SY_ARM64

// MARK: - "Fast" bf16 path: x rounded to bf16, products accumulated in pairs (the vdpbf16ps shape)
//
// The fast reduction shape, shared by every path of this section: x is rounded to bf16 (nearest even,
// denormals to zero), k is padded with zeros to a multiple of 32, and for each block of 32 indices
// p ... p + 31, lane l (0 ... 15) does acc[l] += x[p+2l+1]·w[p+2l+1], then acc[l] += x[p+2l]·w[p+2l],
// each a single rounding (a product of two bf16 values is exact in f32, so fmaf is that addition).
// The lanes are then added as the tree of the header. This is what `vdpbf16ps` computes; the scalar,
// AVX2, AVX-512F and NEON paths compute it with FMA on the weights widened in even and odd halves.

enum { SY_FAST_STEP = 32 };

/// Round-to-nearest-even of an f32 to bf16, with denormal inputs flushed to a signed zero and NaN
/// kept a (quiet) NaN: the conversion `vcvtneps2bf16` performs.
static inline uint16_t round_bf16(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7F800000u) == 0) return (uint16_t)((bits >> 16) & 0x8000u);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x0040u);
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

/// The blocks from `p0` on of ``prepare_fast_f32``.
static void prepare_block_fast_f32(const float *x, size_t m, size_t k, size_t xs, float *xp, size_t kp, size_t p0) {
    for (size_t i = 0; i < m; i++) {
        float *row = xp + i * kp;
        for (size_t p = p0; p < kp; p += SY_FAST_STEP)
            for (size_t l = 0; l < SY_LANES; l++) {
                size_t even = p + 2 * l, odd = even + 1;
                row[p + l] = even < k ? widen_bf16(round_bf16(x[i * xs + even])) : 0.0f;
                row[p + SY_LANES + l] = odd < k ? widen_bf16(round_bf16(x[i * xs + odd])) : 0.0f;
            }
    }
}

/// Prepared x for the emulating paths: per row, per block of 32, the 16 even-index values then the 16
/// odd-index values, rounded to bf16 and widened back to f32; zero past k. Rows of `kp` floats.
static void prepare_fast_f32(const float *x, size_t m, size_t k, size_t xs, float *xp, size_t kp) {
    prepare_block_fast_f32(x, m, k, xs, xp, kp, 0);
}

/// ``prepare_fast_f32`` with `block` (one whole block of 32 values of x at `in` into its 16 even then 16 odd
/// prepared values at `out`, with a vector path's instructions) for the whole blocks, and the scalar loop
/// for the last, partial block: the same values.
static inline void prepare_fast_f32_blocks(void (*block)(const float *in, float *out), const float *x, size_t m,
                                           size_t k, size_t xs, float *xp, size_t kp) {
    size_t whole = k / SY_FAST_STEP * SY_FAST_STEP;
    for (size_t i = 0; i < m; i++)
        for (size_t p = 0; p < whole; p += SY_FAST_STEP) block(x + i * xs + p, xp + i * kp + p);
    if (whole < kp) prepare_block_fast_f32(x, m, k, xs, xp, kp, whole);
}

#if SY_X86
/// 8 f32 values rounded to bf16 as ``round_bf16`` does and widened back to f32 (the low half cleared).
__attribute__((target("avx2"), always_inline)) static inline __m256i round8_bf16_avx2(__m256 values) {
    __m256i bits = _mm256_castps_si256(values);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);
    __m256i rounded = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), odd), high);
    __m256i magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
    __m256i nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7F800000));
    __m256i quiet = _mm256_or_si256(_mm256_and_si256(bits, high), _mm256_set1_epi32(0x00400000));
    __m256i tiny = _mm256_cmpeq_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7F800000)), _mm256_setzero_si256());
    __m256i sign = _mm256_and_si256(bits, _mm256_set1_epi32((int)0x80000000u));
    return _mm256_blendv_epi8(_mm256_blendv_epi8(rounded, quiet, nan), sign, tiny);
}

/// One block of 32 of ``prepare_fast_f32`` with AVX2 (``prepare_fast_f32_avx2``: the same values).
/// Scalar, the preparation took 17% of a small product's time on the AVX-512F path. On the Intel
/// Xeon, one thread, a product of 192 × 1,024 weights (in L2): at m = 8 115-118 -> 148-150 GFLOP/s
/// (`SWITCHYARD_KERNEL=avx512`) and 74-75 -> 88 (`avx2`), at m = 1 36 -> 38-39 and 35 -> 36-37;
/// batch_step's batch-32 steps 1-3% shorter on either path.
__attribute__((target("avx2"))) static void prepare_block32_avx2(const float *in, float *out) {
    for (size_t h = 0; h < 2; h++) {  // values 16h ... 16h + 15: lanes 8h ... 8h + 7
        __m256 a = _mm256_castsi256_ps(round8_bf16_avx2(_mm256_loadu_ps(in + 16 * h)));
        __m256 b = _mm256_castsi256_ps(round8_bf16_avx2(_mm256_loadu_ps(in + 16 * h + 8)));
        // Within each 128-bit half, [a0 a2 b0 b2 | a4 a6 b4 b6] (even) and [a1 a3 b1 b3 | ...]
        // (odd); then the 64-bit pairs in the order 0, 2, 1, 3 put them in order.
        __m256 even = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
        __m256 odd = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), _MM_SHUFFLE(3, 1, 2, 0)));
        odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), _MM_SHUFFLE(3, 1, 2, 0)));
        _mm256_storeu_ps(out + 8 * h, even);
        _mm256_storeu_ps(out + SY_LANES + 8 * h, odd);
    }
}

/// ``prepare_fast_f32`` with AVX2 (the same values).
__attribute__((target("avx2"))) static void prepare_fast_f32_avx2(const float *x, size_t m, size_t k, size_t xs,
                                                                  float *xp, size_t kp) {
    prepare_fast_f32_blocks(prepare_block32_avx2, x, m, k, xs, xp, kp);
}
#endif

#if SY_ARM64
/// 4 f32 values rounded to bf16 as ``round_bf16`` does and widened back to f32 (the low half cleared).
SY_NEON float32x4_t round4_bf16_neon(float32x4_t values) {
    uint32x4_t bits = vreinterpretq_u32_f32(values);
    uint32x4_t odd = vandq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(1));
    uint32x4_t high = vdupq_n_u32(0xFFFF0000u);
    uint32x4_t rounded = vandq_u32(vaddq_u32(vaddq_u32(bits, vdupq_n_u32(0x7FFF)), odd), high);
    uint32x4_t nan = vcgtq_u32(vandq_u32(bits, vdupq_n_u32(0x7FFFFFFFu)), vdupq_n_u32(0x7F800000u));
    uint32x4_t quiet = vorrq_u32(vandq_u32(bits, high), vdupq_n_u32(0x00400000u));
    uint32x4_t tiny = vceqq_u32(vandq_u32(bits, vdupq_n_u32(0x7F800000u)), vdupq_n_u32(0));
    uint32x4_t sign = vandq_u32(bits, vdupq_n_u32(0x80000000u));
    return vreinterpretq_f32_u32(vbslq_u32(tiny, sign, vbslq_u32(nan, quiet, rounded)));
}

/// One block of 32 of ``prepare_fast_f32`` with NEON (``prepare_fast_f32_neon``: the same values), as the
/// AVX2 path has it: `ld2` splits 8 values into their 4 even and 4 odd ones.
static void prepare_block32_neon(const float *in, float *out) {
    for (size_t q = 0; q < 4; q++) {  // values 8q ... 8q + 7: lanes 4q ... 4q + 3
        float32x4x2_t pair = vld2q_f32(in + 8 * q);
        vst1q_f32(out + 4 * q, round4_bf16_neon(pair.val[0]));
        vst1q_f32(out + SY_LANES + 4 * q, round4_bf16_neon(pair.val[1]));
    }
}

/// ``prepare_fast_f32`` with NEON (the same values).
static void prepare_fast_f32_neon(const float *x, size_t m, size_t k, size_t xs, float *xp, size_t kp) {
    prepare_fast_f32_blocks(prepare_block32_neon, x, m, k, xs, xp, kp);
}
#endif

#if SY_X86
/// Prepared x for `vdpbf16ps`: rows of `kp` bf16 values in order, zero past k. `vcvtneps2bf16`
/// rounds as ``round_bf16`` does.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void prepare_dot_bf16(const float *x, size_t m,
                                                                                     size_t k, size_t xs,
                                                                                     uint16_t *xb, size_t kp) {
    for (size_t i = 0; i < m; i++) {
        uint16_t *row = xb + i * kp;
        for (size_t p = 0; p < kp; p += 16) {
            __mmask16 mask = p >= k ? 0 : k - p >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - p)) - 1u);
            __m256bh rounded = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + i * xs + p));
            _mm256_storeu_si256((__m256i *)(void *)(row + p), (__m256i)rounded);
        }
    }
}
#endif

/// Copies the 32 weights of one row's block at `p` into `padded`, zero past k (reads no byte past k).
static inline const uint16_t *fast_block(const uint16_t *w, size_t p, size_t k, uint16_t padded[SY_FAST_STEP]) {
    size_t count = p + SY_FAST_STEP <= k ? SY_FAST_STEP : k - p;
    memset(padded, 0, SY_FAST_STEP * sizeof(uint16_t));
    memcpy(padded, w + p, count * sizeof(uint16_t));
    return padded;
}

enum { FAST_SCALAR_R = 2, FAST_SCALAR_C = 2 };

static void fast_scalar(const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w, size_t n, size_t ws,
                        float *y, size_t ys, int accumulate) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float acc[SY_LANES] = {0};
            const float *x = xp + i * kp;
            for (size_t p = 0; p < kp; p += SY_FAST_STEP) {
                uint16_t padded[SY_FAST_STEP];
                const uint16_t *block = p + SY_FAST_STEP <= k ? w + j * ws + p : fast_block(w + j * ws, p, k, padded);
                for (int l = 0; l < SY_LANES; l++) {
                    acc[l] = fmaf(x[p + SY_LANES + l], widen_bf16(block[2 * l + 1]), acc[l]);
                    acc[l] = fmaf(x[p + l], widen_bf16(block[2 * l]), acc[l]);
                }
            }
            float s = hsum16_scalar(acc);
            y[i * ys + j] = accumulate ? y[i * ys + j] + s : s;
        }
}

#if SY_X86

// AVX-512F: one 64-byte load gives 16 lanes whose low halves are the even weights and high halves the odd.
/// One block of 32 weights of `C` rows against `R` prepared x rows (the emulated pair shape).
#define SY_FAST_AVX512_BLOCK(LOAD)                                                                    \
    do {                                                                                              \
        __m512 we[AVX512_C], wo[AVX512_C];                                                            \
        for (int c = 0; c < C; c++) {                                                                 \
            __m512i v = LOAD;                                                                         \
            we[c] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));                                    \
            wo[c] = _mm512_castsi512_ps(_mm512_and_si512(v, high));                                   \
        }                                                                                             \
        for (int r = 0; r < R; r++) {                                                                 \
            __m512 xe = _mm512_loadu_ps(xp + r * kp + p);                                             \
            __m512 xo = _mm512_loadu_ps(xp + r * kp + p + SY_LANES);                                  \
            for (int c = 0; c < C; c++) {                                                             \
                acc[r][c] = _mm512_fmadd_ps(xo, wo[c], acc[r][c]);                                    \
                acc[r][c] = _mm512_fmadd_ps(xe, we[c], acc[r][c]);                                    \
            }                                                                                         \
        }                                                                                             \
    } while (0)

// AVX-512F: one 64-byte load gives 16 lanes whose low halves are the even weights and high halves the odd.
// The AVX2 path's panels (``panel_wide_avx2``: each chunk of weights split into f32 once for all the tiles
// of up to 16 rows) were tried here with 4 × 4 tiles and not kept: `SWITCHYARD_KERNEL=avx512` on the
// Intel Xeon, built as SwiftPM builds, the experts of a batch-32 step in batch_step 91-103 -> 109-113 ms
// (3 alternating rounds), one thread in L2 at m = 8 107-140 -> 92-123 GFLOP/s (chunks of 128 to 1,024
// values and panels of 8 rows no better), at m = 128 103 -> 83. (With 32 registers each tile here holds 4
// rows' split weights beside its 16 accumulators, so each split already serves 4 x rows.)
/// R prepared x rows against C weight rows; with `prefetch` the weights SY_PREFETCH_BYTES ahead into L2,
/// with `prefetch` 2 (the one-row tiles of m ≤ SY_NARROW_ROWS) also SY_PREFETCH_NEAR_BYTES ahead into L1.
SY_AVX512 void tile_fast_avx512(int R, int C, int prefetch, const float *xp, size_t kp, size_t k, const uint16_t *w, size_t ws,
                                float *y, size_t ys, int accumulate) {
    __m512 acc[AVX512_R][AVX512_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    size_t full = k / SY_FAST_STEP * SY_FAST_STEP, p = 0;
    for (; p < full; p += SY_FAST_STEP) {
        if (prefetch)
            for (int c = 0; c < C; c++) prefetch_weights(w + c * ws + p, prefetch);
        SY_FAST_AVX512_BLOCK(_mm512_loadu_si512((const void *)(w + c * ws + p)));
    }
    if (p < kp) {
        uint16_t padded[AVX512_C][SY_FAST_STEP];
        for (int c = 0; c < C; c++) fast_block(w + c * ws, p, k, padded[c]);
        SY_FAST_AVX512_BLOCK(_mm512_loadu_si512((const void *)padded[c]));
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx512(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

SY_AVX512 void rows_fast_avx512(int C, int prefetch, const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w,
                                size_t ws, float *y, size_t ys, int accumulate) {
    size_t i = 0;
    for (; i + AVX512_R <= m; i += AVX512_R)
        tile_fast_avx512(AVX512_R, C, prefetch, xp + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate);
    switch (m - i) {
    case 3: tile_fast_avx512(3, C, prefetch, xp + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate); break;
    case 2: tile_fast_avx512(2, C, prefetch, xp + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate); break;
    case 1: tile_fast_avx512(1, C, prefetch, xp + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate); break;
    default: break;
    }
}

/// The tiles of ``fast_avx512_blocked``: up to 8 rows × 3 columns (24 accumulators).
enum { FAST_CHUNK_RMAX = 8, FAST_CHUNK_C = 3 };

/// ``tile_fast_avx512`` over the blocks [p0, p1) of k only (a k-chunk of ``fast_avx512_blocked``): from
/// the accumulators it left in `state` (element (r, c) at `state[c * state_stride + r]`) unless `first`,
/// back into them unless `last`; with `prefetch` each weight row of the tile that runs next (`ahead`) is
/// prefetched into L2 at the offset this one reads. Each accumulator sees the same additions in the
/// same order as in the whole tile, so the chunks never change a result.
SY_AVX512 void chunk_fast_avx512(int R, int C, int prefetch, const float *xp, size_t kp, size_t k, size_t p0,
                                 size_t p1, const uint16_t *w, size_t ws, const uint16_t *ahead, __m512 *state,
                                 size_t state_stride, int first, int last, float *y, size_t ys, int accumulate) {
    __m512 acc[FAST_CHUNK_RMAX][AVX512_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = first ? _mm512_setzero_ps() : state[c * state_stride + r];
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    size_t full = k / SY_FAST_STEP * SY_FAST_STEP, end = p1 < full ? p1 : full, p = p0;
    for (; p < end; p += SY_FAST_STEP) {
        if (prefetch)
            for (int c = 0; c < C; c++) _mm_prefetch((const char *)(ahead + c * ws + (p - p0)), _MM_HINT_T1);
        SY_FAST_AVX512_BLOCK(_mm512_loadu_si512((const void *)(w + c * ws + p)));
    }
    if (p < p1) {  // the last chunk's padded last block
        uint16_t padded[AVX512_C][SY_FAST_STEP];
        for (int c = 0; c < C; c++) fast_block(w + c * ws, p, k, padded[c]);
        SY_FAST_AVX512_BLOCK(_mm512_loadu_si512((const void *)padded[c]));
    }
    finish_tile_avx512(R, C, acc, state, state_stride, last, y, ys, accumulate);
}

/// The cases of `switch (R * 8 + C)` for the tiles of the k-chunked products (``blocked_product``): 1-8
/// rows × 1-3 columns, each calling TILE(R, C), which returns. Shared by ``chunk_fast_avx512_shape`` and
/// ``chunk_tile``.
#define SY_CHUNK_SHAPE_ROW(TILE, R) \
    case R * 8 + 3: TILE(R, 3);     \
    case R * 8 + 2: TILE(R, 2);     \
    case R * 8 + 1: TILE(R, 1);
#define SY_CHUNK_SHAPES(TILE)                                                           \
    SY_CHUNK_SHAPE_ROW(TILE, 8) SY_CHUNK_SHAPE_ROW(TILE, 7) SY_CHUNK_SHAPE_ROW(TILE, 6) \
    SY_CHUNK_SHAPE_ROW(TILE, 5) SY_CHUNK_SHAPE_ROW(TILE, 4) SY_CHUNK_SHAPE_ROW(TILE, 3) \
    SY_CHUNK_SHAPE_ROW(TILE, 2)                                                         \
    case 1 * 8 + 3: TILE(1, 3);                                                         \
    case 1 * 8 + 2: TILE(1, 2);                                                         \
    default: TILE(1, 1);  /* 1 * 8 + 1 */

#define SY_FAST_CHUNK(R, C)                                                                                    \
    chunk_fast_avx512(R, C, prefetch, xp, kp, k, p0, p1, w, ws, ahead, state, state_stride, first, last, y, ys, \
                      accumulate);                                                                             \
    return
/// The constant shapes of ``chunk_fast_avx512`` (1-8 rows of f32 prepared x at `x`, 1-3 columns), as
/// ``blocked_product`` calls a tile.
__attribute__((target("avx512f,fma"))) static void
chunk_fast_avx512_shape(int R, int C, int prefetch, const void *x, size_t kp, size_t k, size_t p0, size_t p1,
                        const uint16_t *w, size_t ws, const uint16_t *ahead, __m512 *state, size_t state_stride,
                        int first, int last, float *y, size_t ys, int accumulate) {
    const float *xp = (const float *)x;
    switch (R * 8 + C) {
    SY_CHUNK_SHAPES(SY_FAST_CHUNK)
    }
}
#undef SY_FAST_CHUNK

/// One tile of a k-chunk for ``blocked_product``: R rows of prepared x at `x` (rows `kp` elements apart)
/// against C weight rows at `w`, over the blocks [p0, p1) of k, from and into the accumulators in `state`
/// (element (r, c) at `state[c * state_stride + r]`) as ``tile_dot`` keeps them; `ahead` is where the
/// tile that runs next starts, for the prefetch, which `prefetch` 0 asks the tile to skip.
typedef void (*sy_chunk_tile)(int R, int C, int prefetch, const void *x, size_t kp, size_t k, size_t p0, size_t p1,
                              const uint16_t *w, size_t ws, const uint16_t *ahead, __m512 *state,
                              size_t state_stride, int first, int last, float *y, size_t ys, int accumulate);

/// m ≤ 16 rows of prepared x (`x_element` bytes a value; tiles of `tile_rows` rows, the last smaller)
/// against C ≤ 4 weight rows at a time, x read a k-chunk at a time, in equal chunks of at most `most`
/// values at 5-8 rows and half that at 9-16 (x's chunk about the same bytes): for each block of columns,
/// every chunk of k is run over all of the block's tiles before the next, the tiles' accumulators kept
/// between chunks in at least SY_DOT_STATE bytes (and at least one block of 4 columns × 16 rows). Each
/// accumulator sees the same additions in the same order as in a tile over all of k, so the chunks never
/// change a result. The prefetch follows the order the tiles run in: each tile of a block's first rows
/// prefetches (with `prefetch`) the one after it; the tiles of the other rows read the same weight rows.
/// The k-chunked products of the `vdpbf16ps` (``dot_blocked``) and AVX-512F (``fast_avx512_blocked``) paths.
__attribute__((target("avx512f"))) static void blocked_product(sy_chunk_tile tile, int C, size_t tile_rows,
                                                                size_t x_element, int prefetch, const void *x,
                                                                size_t m, size_t kp, size_t k, size_t most,
                                                                const uint16_t *w, size_t n, size_t ws, float *y,
                                                                size_t ys, int accumulate) {
    size_t limit = m <= 8 ? most : most / 2, chunks = (kp + limit - 1) / limit;
    size_t kc = (kp / chunks + SY_FAST_STEP - 1) / SY_FAST_STEP * SY_FAST_STEP;
    enum { ROWS = 16, CMAX = 4, STATE = SY_DOT_STATE / sizeof(__m512) > CMAX * ROWS ? SY_DOT_STATE / sizeof(__m512) : CMAX * ROWS };
    __m512 state[STATE];  // one block of columns: `block` columns × m rows
    size_t block = STATE / m / (size_t)C * (size_t)C;
    for (size_t j0 = 0; j0 < n; j0 += block) {
        size_t j1 = j0 + block < n ? j0 + block : n;
        for (size_t p0 = 0; p0 < kp; p0 += kc) {
            size_t p1 = p0 + kc < kp ? p0 + kc : kp;
            int first = p0 == 0, last = p1 == kp;
            for (size_t j = j0; j < j1;) {
                size_t width = j1 - j < (size_t)C ? j1 - j : (size_t)C;
                // The next tile's columns and chunk: the next columns of this chunk, else this block's
                // first columns at the next chunk, else the next block's first chunk.
                const uint16_t *ahead = j + width < j1 ? w + (j + width) * ws + p0
                                        : !last      ? w + j0 * ws + p1
                                        : j1 < n     ? w + j1 * ws
                                                     : w + j * ws + p0;
                for (size_t r = 0; r < m; r += tile_rows) {
                    size_t rows = m - r < tile_rows ? m - r : tile_rows;
                    tile((int)rows, (int)width, prefetch && r == 0, (const char *)x + r * kp * x_element, kp, k, p0,
                         p1, w + j * ws, ws, ahead, state + (j - j0) * m + r, m, first, last, y + r * ys + j, ys,
                         accumulate);
                }
                j += width;
            }
        }
    }
}

/// 5-16 prepared x rows (in tiles of 8 rows, the last smaller) against 3 weight rows at a time, x read a
/// k-chunk of at most SY_AVX512_KC values at a time (``blocked_product``). The prepared x rows are f32,
/// twice the bytes of the `vdpbf16ps` path's, so 8 rows outgrow L1 past k ≈ 1,500 and the whole-k tiles
/// read them from L2 once per tile while they stream the weights from memory. Measured with
/// `SWITCHYARD_KERNEL=avx512` on the Intel Xeon (Emerald Rapids, 2 threads, built as SwiftPM builds): 1.1 GB
/// of rows at k = 2,816 from memory, m = 8 135-142 -> 198-208 GFLOP/s, m = 12 167-170 -> 233-246, m = 16
/// 186-190 -> 232-256 (chunks of 1,408 and 704 a little slower; at k = 1,024 chunks of 512 were slower,
/// so k ≤ SY_DOT_KC stays whole); batch_step's batch-32 experts (3 alternating rounds) 80.3-82.4 ->
/// 71.8-74.0 ms evenly routed and 87.6-89.4 -> 80.2-82.1 skewed. Those were tiles of 4 × 4; the 8 × 3
/// tiles after them (24 accumulators, each widened weight serving 8 rows, 16 KiB of state): 800 MB at
/// k = 2,816, m = 6-7 150-168 -> 178-196 GFLOP/s, m = 8 185-193 -> 206-210, m = 16 221-225 -> 232-237
/// (m = 9-12 alike: 8 + 4 rows; tiles of 5-6 rows there were no faster); one thread with the weights in
/// L3, m = 8 139 -> 166; batch_step's batch-32 experts (3 alternating rounds) 69.8-71.0 -> 65.5-67.9 ms
/// evenly routed, 78.3-80.6 -> 74.7-76.5 skewed. At k = 1,024 these tiles over the whole of k were
/// 12-15% slower than the 4 × 4 ones there.
SY_AVX512_FN void fast_avx512_blocked(const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w, size_t n,
                                      size_t ws, float *y, size_t ys, int accumulate) {
    blocked_product(chunk_fast_avx512_shape, FAST_CHUNK_C, FAST_CHUNK_RMAX, sizeof(float), sy_stream_prefetch(), xp,
                    m, kp, k, SY_AVX512_KC, w, n, ws, y, ys, accumulate);
}

/// More than 16 prepared x rows, or SY_WIDE_ROWS-16 at k ≤ SY_DOT_KC: for each block of SY_WIDE_COLUMNS weight rows,
/// the x rows in tiles of 8 (a tile's rows, 32 KiB at k = 1,024, stay in L1), each tile against the block's weight rows
/// 3 at a time over the whole of k (``chunk_fast_avx512`` as a single chunk). The block's weights come from L2 after
/// the first tile of rows, which prefetches the next weight rows as it reads (with `prefetch`). Each accumulator sees
/// the same additions in the same order as in the 4 × 4 tiles (``rows_fast_avx512``) that ran here before, so no result
/// changes. Measured on the Intel Xeon (Emerald Rapids without AMX, 2 threads, built as SwiftPM builds, 3 rounds
/// alternating with the 4 × 4 tiles): `product_rate` at m = 32, k = 1,024, 800 MB of weights from memory 189-201 ->
/// 187-222 GFLOP/s, 65 MB (an LM head) 203-220 -> 198-240, 4 MB in cache 220-224 -> 213-249; `batch_step 2 8 32 fast
/// skewed`, the step outside the experts (q/k/v, o_proj and the LM head at m = 32) 27.2-35.3 -> 22.8-26.6 ms; `serve`
/// at batch 32, 210.8-222.0 -> 210.9-236.8 tok/s. Blocks of 32 to 1,024 columns and tiles of 8 × 2 came out alike;
/// prefill (512 tokens) alike.
SY_AVX512_FN void fast_avx512_wide(int prefetch, const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w,
                                   size_t n, size_t ws, float *y, size_t ys, int accumulate) {
    for (size_t j0 = 0; j0 < n; j0 += SY_WIDE_COLUMNS) {
        size_t j1 = j0 + SY_WIDE_COLUMNS < n ? j0 + SY_WIDE_COLUMNS : n;
        for (size_t i = 0; i < m; i += FAST_CHUNK_RMAX) {
            int rows = m - i < FAST_CHUNK_RMAX ? (int)(m - i) : FAST_CHUNK_RMAX;
            for (size_t j = j0; j < j1; j += FAST_CHUNK_C) {
                int width = j1 - j < FAST_CHUNK_C ? (int)(j1 - j) : FAST_CHUNK_C;
                // The weight rows read next by the first tile of rows: this block's next ones, then the next block's.
                const uint16_t *ahead = w + (j + (size_t)width < n ? j + (size_t)width : j) * ws;
                chunk_fast_avx512_shape(rows, width, prefetch && i == 0, xp + i * kp, kp, k, 0, kp, w + j * ws, ws,
                                        ahead, NULL, 0, 1, 1, y + i * ys + j, ys, accumulate);
            }
        }
    }
}

SY_AVX512_FN void fast_avx512(const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w, size_t n,
                              size_t ws, float *y, size_t ys, int accumulate) {
    int prefetch = sy_stream_prefetch();
    if (m <= SY_NARROW_ROWS) {
        // At 4 rows two weight rows at a time: on the Intel Xeon (2 threads, 400 MB of rows from memory)
        // 94-99 -> 108-111 GFLOP/s at k = 2,816 and 115-116 -> 121-126 at 1,024 (`vdpbf16ps`, one row:
        // 130-133 at 2,816); batch_step's batch-16 experts (m = 4 an expert, 3 alternating rounds)
        // 60.5-63.5 -> 55.7-56.8 ms. At 2 and 3 rows two were no faster, three or four slower.
        size_t j = 0;
        if (m == SY_NARROW_ROWS)
            for (; j + 2 <= n; j += 2)
                rows_fast_avx512(2, prefetch ? 2 : 0, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
        for (; j < n; j++) rows_fast_avx512(1, prefetch ? 2 : 0, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
        return;
    }
    if (m <= 16 && k > SY_DOT_KC) {  // past the `vdpbf16ps` path's SY_DOT_KC, x a k-chunk at a time
        fast_avx512_blocked(xp, m, kp, k, w, n, ws, y, ys, accumulate);
        return;
    }
    // Past 16 rows, and from SY_WIDE_ROWS rows at k ≤ SY_DOT_KC (a tile's 8 rows of x: 32 KiB at k = 1,024,
    // 48 KiB at 1,536): the 8-row tiles against blocks of weight rows. At 7-16 rows and k = 1,024 they
    // replaced 4 × 4 tiles over the whole of k (each widened weight then served 4 rows, not 8): on the Intel
    // Xeon (Emerald Rapids without AMX, 2 threads, 400 MB of rows from memory, 2 rounds) m = 7 125-130 ->
    // 135-160 GFLOP/s, m = 8 152-153 -> 164-181, m = 12 157-168 -> 161-183, m = 14 161-168 -> 190-204; at
    // 5 rows the 4 × 4 tiles were ahead (114-119 against 96-111), at 6 alike (120-126 against 116-138).
    if (m >= SY_WIDE_ROWS) {  // (past 16 rows at any k; 7-16 rows reach here at k ≤ SY_DOT_KC only)
        fast_avx512_wide(prefetch, xp, m, kp, k, w, n, ws, y, ys, accumulate);
        return;
    }
    size_t j = 0;
    for (; j + AVX512_C <= n; j += AVX512_C)
        rows_fast_avx512(AVX512_C, prefetch, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
    switch (n - j) {
    case 3: rows_fast_avx512(3, prefetch, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate); break;
    case 2: rows_fast_avx512(2, prefetch, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate); break;
    case 1: rows_fast_avx512(1, prefetch, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate); break;
    default: break;
    }
}

// AVX2: the 16 lanes as two halves of 8; half h takes the weights p + 16h ... p + 16h + 15 (one 32-byte
// load gives 8 lanes whose low halves are the even weights and high halves the odd).

/// Tile shapes of the fast product: for m ≤ SY_NARROW_ROWS up to 4 × 1 (one weight row at a time), else
/// 4 × 3 a half at a time against weights widened to f32 once per chunk (``panel_wide_avx2``).
enum { FAST_AVX2_C = 1, FAST_AVX2_NARROW_R = 4, FAST_WIDE_R = 4, FAST_WIDE_C = 3 };

/// Tiles of FAST_WIDE_R rows that go through each chunk of k together (``panel_wide_avx2``).
#ifndef SY_AVX2_PANEL
#define SY_AVX2_PANEL 3
#endif

/// The AVX2 fast product past SY_NARROW_ROWS rows runs k in chunks of this many values: each chunk's
/// weights are widened to f32 once, and then every tile of the panel goes through the chunk, both halves,
/// while the chunk's x rows and widened weights are in L1. Measured with Benchmarks/kernels/batch_step.c
/// at batch 32 (`SWITCHYARD_KERNEL=avx2`, Intel Xeon, 2 threads, built as SwiftPM builds), the experts of
/// a step: 256 values 120-121 ms, 128 122-135, 512 135-142.
#ifndef SY_AVX2_KC
#define SY_AVX2_KC 256
#endif
_Static_assert(SY_AVX2_KC % 32 == 0 && SY_AVX2_KC > 0, "SY_AVX2_KC must be whole blocks of 32");

/// One block of 32 weights of C rows (`block[c]`) against R prepared x rows at `x` (rows `kp` apart).
SY_AVX2 void fast_block_avx2(int R, int C, __m256 acc[][FAST_AVX2_C][2], const float *x, size_t kp,
                             const uint16_t *const block[FAST_AVX2_C]) {
    const __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);
    for (int h = 0; h < 2; h++) {
        __m256 we[FAST_AVX2_C], wo[FAST_AVX2_C];
        for (int c = 0; c < C; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(block[c] + 16 * h));
            we[c] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            wo[c] = _mm256_castsi256_ps(_mm256_and_si256(v, high));
        }
        for (int r = 0; r < R; r++) {
            __m256 xe = _mm256_loadu_ps(x + r * kp + 8 * h), xo = _mm256_loadu_ps(x + r * kp + SY_LANES + 8 * h);
            for (int c = 0; c < C; c++) {
                acc[r][c][h] = _mm256_fmadd_ps(xo, wo[c], acc[r][c][h]);
                acc[r][c][h] = _mm256_fmadd_ps(xe, we[c], acc[r][c][h]);
            }
        }
    }
}

/// R prepared x rows (≤ 4) against one weight row (C = 1): whole blocks, then the padded last one.
SY_AVX2 void tile_fast_avx2(int R, int C, const float *xp, size_t kp, size_t k, const uint16_t *w, size_t ws,
                            float *y, size_t ys, int accumulate) {
    __m256 acc[FAST_AVX2_NARROW_R][FAST_AVX2_C][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = _mm256_setzero_ps();
    size_t full = k / SY_FAST_STEP * SY_FAST_STEP, p = 0;
    const uint16_t *block[FAST_AVX2_C];
    for (; p < full; p += SY_FAST_STEP) {
        for (int c = 0; c < C; c++) {
            block[c] = w + c * ws + p;
            prefetch_weights(block[c], 2);
        }
        fast_block_avx2(R, C, acc, xp + p, kp, block);
    }
    if (p < kp) {
        uint16_t padded[FAST_AVX2_C][SY_FAST_STEP];
        for (int c = 0; c < C; c++) block[c] = fast_block(w + c * ws, p, k, padded[c]);
        fast_block_avx2(R, C, acc, xp + p, kp, block);
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx2(acc[r][c][0], acc[r][c][1]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

/// The weights of C rows (≤ 3) over one chunk [p0, p1) of k, widened to f32 in `wide` for every tile of
/// the panel: per block of 32 and half h, the 8 odd weights of each row, then the 8 even ones (vector
/// ((block · 2 + h) · 2 + parity) · C + c). Blocks at or past `full` come from `tail`, the padded last
/// block. The weights are prefetched SY_PREFETCH_BYTES ahead into L2 as they are read, and one chunk
/// ahead (the same place in the next chunk) into L1, so that the next chunk's widening finds them there
/// while the tiles compute on this one. Measured with Benchmarks/kernels/batch_step.c at batch 32
/// (`SWITCHYARD_KERNEL=avx2`, Intel Xeon, 2 threads, built as SwiftPM builds, alternating): the experts
/// of a step 102.7-112.4 ms without the L1 prefetch, 95.3-106.0 with it (7 rounds; 256 or 768 bytes
/// ahead alike, chunks of 128 or 512 values with it slower), then 100.0-100.8 against 95.2-97.9 (5
/// rounds of 12 steps); `perf` had put 28% of the product's samples in the widening, most of them on
/// the instruction after each weight load.
SY_AVX2 void widen_chunk_avx2(int C, const uint16_t *w, size_t ws, size_t p0, size_t p1, size_t full,
                              const uint16_t *const *tail, float *wide) {
    const __m256i high = _mm256_set1_epi32((int)0xFFFF0000u);
    for (size_t p = p0, b = 0; p < p1; p += SY_FAST_STEP, b++)
        for (int c = 0; c < C; c++) {
            const uint16_t *block = p < full ? w + c * ws + p : tail[c];
            _mm_prefetch((const char *)block + SY_PREFETCH_BYTES, _MM_HINT_T1);
            _mm_prefetch((const char *)block + SY_AVX2_KC * sizeof(uint16_t), _MM_HINT_T0);
            for (int h = 0; h < 2; h++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(block + 16 * h));
                float *out = wide + (b * 2 + h) * 2 * C * 8 + c * 8;
                _mm256_store_ps(out, _mm256_castsi256_ps(_mm256_and_si256(v, high)));
                _mm256_store_ps(out + C * 8, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
            }
        }
}

/// One tile of R prepared x rows (≤ 4, at `x`, rows `kp` apart, already at the chunk) against C widened
/// weight rows (≤ 3), half h of the lanes, over the chunk's `blocks` blocks: from the tile's accumulators
/// in `state` (zero when `first`) and back into them. Per block the odd products of every (row, column),
/// then the even ones, as ``fast_block_avx2`` adds them.
SY_AVX2 void chunk_wide_avx2(int R, int C, int h, __m256 state[FAST_WIDE_R][FAST_WIDE_C], int first,
                             const float *x, size_t kp, size_t blocks, const float *wide) {
    __m256 acc[FAST_WIDE_R][FAST_WIDE_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = first ? _mm256_setzero_ps() : state[r][c];
    for (size_t b = 0; b < blocks; b++) {
        const float *wb = wide + (b * 2 + h) * 2 * C * 8, *xb = x + b * SY_FAST_STEP + 8 * h;
        __m256 wv[FAST_WIDE_C];
        for (int c = 0; c < C; c++) wv[c] = _mm256_load_ps(wb + c * 8);
        for (int r = 0; r < R; r++) {
            __m256 xo = _mm256_loadu_ps(xb + r * kp + SY_LANES);
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(xo, wv[c], acc[r][c]);
        }
        for (int c = 0; c < C; c++) wv[c] = _mm256_load_ps(wb + (C + c) * 8);
        for (int r = 0; r < R; r++) {
            __m256 xe = _mm256_loadu_ps(xb + r * kp);
            for (int c = 0; c < C; c++) acc[r][c] = _mm256_fmadd_ps(xe, wv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) state[r][c] = acc[r][c];
}

/// A panel of `rows` prepared x rows (≤ SY_AVX2_PANEL tiles of FAST_WIDE_R, the last smaller) against
/// C weight rows (≤ 3): k in chunks of SY_AVX2_KC; each chunk's weights widened to f32 once
/// (``widen_chunk_avx2``), then every tile through the chunk, one half of the lanes at a time, the
/// tiles' accumulators kept in `state` between chunks. Each lane adds the same products in the same
/// order as ``tile_fast_avx2`` (the halves never meet before the final sum): the same bits.
/// 12 accumulators a tile, so that each x vector loaded serves C columns and each weight vector R rows,
/// and the tile's loop holds loads and multiply-adds only: before, each tile split the bf16 weights
/// itself (an AND and a shift per weight vector, on the multiply-add ports on Intel), and a 4 × 3 tile
/// did not fit in 16 registers with the mask (see the AVX2 path comment). All the panel's tiles in
/// each chunk, so that the weights are read from memory while the tiles compute on the chunk before.
/// Measured against 3 × 3 tiles splitting their own weights (`SWITCHYARD_KERNEL=avx2`, Intel Xeon,
/// built as SwiftPM builds, alternating): the experts of a batch-32 step in batch_step (2 threads)
/// 129-131 -> 120-121 ms in 3 rounds; one thread in L2 (k = 1,024, n = 384) at m = 8 61-68 -> 66-70
/// GFLOP/s, m = 32 57-58 -> 62-63, m = 128 54-55 -> 60-61 (floors' f32 FMA peak 92).
SY_AVX2 void panel_wide_avx2(int C, const float *xp, size_t rows, size_t kp, size_t k, const uint16_t *w,
                             size_t ws, float *y, size_t ys, int accumulate) {
    __m256 state[SY_AVX2_PANEL][2][FAST_WIDE_R][FAST_WIDE_C];
    float wide[SY_AVX2_KC / SY_FAST_STEP * 2 * 2 * FAST_WIDE_C * 8] __attribute__((aligned(32)));
    size_t full = k / SY_FAST_STEP * SY_FAST_STEP, tiles = (rows + FAST_WIDE_R - 1) / FAST_WIDE_R;
    uint16_t padded[FAST_WIDE_C][SY_FAST_STEP];
    const uint16_t *tail[FAST_WIDE_C];
    if (full < kp)
        for (int c = 0; c < C; c++) tail[c] = fast_block(w + c * ws, full, k, padded[c]);
    for (size_t p0 = 0; p0 < kp; p0 += SY_AVX2_KC) {
        size_t p1 = p0 + SY_AVX2_KC < kp ? p0 + SY_AVX2_KC : kp, blocks = (p1 - p0) / SY_FAST_STEP;
        int first = p0 == 0;
        widen_chunk_avx2(C, w, ws, p0, p1, full, tail, wide);
        for (size_t t = 0; t < tiles; t++) {
            size_t R = rows - t * FAST_WIDE_R < FAST_WIDE_R ? rows - t * FAST_WIDE_R : FAST_WIDE_R;
            const float *x = xp + t * FAST_WIDE_R * kp + p0;
            for (int h = 0; h < 2; h++) {
                _Static_assert(FAST_WIDE_R == 4, "the cases below are the row counts of a tile");
                switch (R) {  // R constant in each call, so that the accumulators stay in registers
                case 4: chunk_wide_avx2(4, C, h, state[t][h], first, x, kp, blocks, wide); break;
                case 3: chunk_wide_avx2(3, C, h, state[t][h], first, x, kp, blocks, wide); break;
                case 2: chunk_wide_avx2(2, C, h, state[t][h], first, x, kp, blocks, wide); break;
                default: chunk_wide_avx2(1, C, h, state[t][h], first, x, kp, blocks, wide); break;
                }
            }
        }
    }
    for (size_t i = 0; i < rows; i++)
        for (int c = 0; c < C; c++) {
            size_t t = i / FAST_WIDE_R, r = i % FAST_WIDE_R;
            float s = hsum16_avx2(state[t][0][r][c], state[t][1][r][c]);
            float *target = y + i * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

/// ``panel_wide_avx2`` over all m rows, SY_AVX2_PANEL tiles at a time: a decode step's share of an
/// expert (m = 8 at batch 32) is one panel, whose weights come from memory once; larger products widen
/// each chunk of weights once a panel.
SY_AVX2 void rows_wide_avx2(int C, const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w, size_t ws,
                            float *y, size_t ys, int accumulate) {
    const size_t panel = SY_AVX2_PANEL * FAST_WIDE_R;
    for (size_t i = 0; i < m; i += panel) {
        size_t rows = m - i < panel ? m - i : panel;
        panel_wide_avx2(C, xp + i * kp, rows, kp, k, w, ws, y + i * ys, ys, accumulate);
    }
}

/// All m prepared x rows against C weight rows, in tiles of RT rows (the last smaller); RT, C constants.
SY_AVX2 void rows_fast_avx2(int RT, int C, const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w,
                            size_t ws, float *y, size_t ys, int accumulate) {
    size_t i = 0;
    for (; i + (size_t)RT <= m; i += (size_t)RT)
        tile_fast_avx2(RT, C, xp + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate);
    switch (m - i) {
    case 3: tile_fast_avx2(3, C, xp + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate); break;
    case 2: tile_fast_avx2(2, C, xp + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate); break;
    case 1: tile_fast_avx2(1, C, xp + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate); break;
    default: break;
    }
}

SY_AVX2_FN void fast_avx2(const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w, size_t n, size_t ws,
                          float *y, size_t ys, int accumulate) {
    if (m <= SY_NARROW_ROWS) {
        for (size_t j = 0; j < n; j++)
            rows_fast_avx2(FAST_AVX2_NARROW_R, 1, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
        return;
    }
    size_t j = 0;
    for (; j + FAST_WIDE_C <= n; j += FAST_WIDE_C)
        rows_wide_avx2(FAST_WIDE_C, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
    switch (n - j) {
    case 2: rows_wide_avx2(2, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate); break;
    case 1: rows_wide_avx2(1, xp, m, kp, k, w + j * ws, ws, y + j, ys, accumulate); break;
    default: break;
    }
}

// AVX-512 bf16: `vdpbf16ps` itself.
#define SY_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16,fma"), always_inline)) static inline
#define SY_AVX512BF16_FN __attribute__((target("avx512f,avx512bw,avx512bf16,fma"))) static

enum { DOT_RMAX = 8, DOT_CMAX = 4 };
_Static_assert(DOT_CMAX == 4, "finish_tile_avx512 takes accumulators of 4 columns");

/// R rows of x (≤ 8) against C weight rows (≤ 4), at most 24 accumulators (8 × 3), over the blocks
/// [p0, p1) of k. With `prefetch` (a constant after inlining) the weight streams are prefetched into
/// L2 (`T1`): `ahead` (NULL: SY_PREFETCH_BYTES further along each row) is where the tile that comes
/// next starts, and each row's bytes are prefetched at the same offset there; with `prefetch` 2 each
/// row also SY_PREFETCH_NEAR_BYTES ahead into L1 (`T0`). A tile over all of k
/// has p0 = 0, p1 = kp, `first` and `last`; a tile of a k-chunk (``dot_blocked``) starts from the
/// accumulators it left in `state` (element (r, c) at `state[c * state_stride + r]`) unless `first`,
/// and stores them back there unless `last`. Each accumulator sees the same additions in the same
/// order either way, so the chunks never change a result.
SY_AVX512BF16 void tile_dot(int R, int C, int prefetch, const uint16_t *xb, size_t kp, size_t k, size_t p0,
                            size_t p1, const uint16_t *w, size_t ws, const uint16_t *ahead, __m512 *state,
                            size_t state_stride, int first, int last, float *y, size_t ys, int accumulate) {
    __m512 acc[DOT_RMAX][DOT_CMAX];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = first ? _mm512_setzero_ps() : state[c * state_stride + r];
    // Whole blocks in a loop with nothing else in it (so the accumulators stay in registers), then
    // the last partial block with masked loads (zeros past k, no byte read past the row).
    size_t whole = k / SY_FAST_STEP * SY_FAST_STEP, full = p1 < whole ? p1 : whole, p = p0;
    for (; p < full; p += SY_FAST_STEP) {
        __m512bh wv[DOT_CMAX];
        for (int c = 0; c < C; c++) {
            wv[c] = (__m512bh)_mm512_loadu_si512((const void *)(w + c * ws + p));
            if (prefetch) {
                const char *at = ahead != NULL ? (const char *)(ahead + c * ws + (p - p0))
                                               : (const char *)(w + c * ws + p) + SY_PREFETCH_BYTES;
                _mm_prefetch(at, _MM_HINT_T1);
                if (prefetch == 2) _mm_prefetch((const char *)(w + c * ws + p) + SY_PREFETCH_NEAR_BYTES, _MM_HINT_T0);
            }
        }
        for (int r = 0; r < R; r++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + r * kp + p));
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
        }
    }
    if (p < p1) {
        __mmask32 mask = (__mmask32)((1ull << (k - p)) - 1u);
        __m512bh wv[DOT_CMAX];
        for (int c = 0; c < C; c++) wv[c] = (__m512bh)_mm512_maskz_loadu_epi16(mask, (const void *)(w + c * ws + p));
        for (int r = 0; r < R; r++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + r * kp + p));
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
        }
    }
    finish_tile_avx512(R, C, acc, state, state_stride, last, y, ys, accumulate);
}

/// ``tile_dot`` over all of k.
SY_AVX512BF16 void tile_dot_whole(int R, int C, int prefetch, const uint16_t *xb, size_t kp, size_t k,
                                  const uint16_t *w, size_t ws, float *y, size_t ys, int accumulate) {
    tile_dot(R, C, prefetch, xb, kp, k, 0, kp, w, ws, NULL, NULL, 0, 1, 1, y, ys, accumulate);
}

/// All rows of x against C weight rows, in tiles of RT rows (the last tile smaller).
SY_AVX512BF16 void rows_dot(int RT, int C, int prefetch, const uint16_t *xb, size_t m, size_t kp, size_t k,
                            const uint16_t *w, size_t ws, float *y, size_t ys, int accumulate) {
    size_t i = 0;
    for (; i + (size_t)RT <= m; i += (size_t)RT)
        tile_dot_whole(RT, C, prefetch, xb + i * kp, kp, k, w, ws, y + i * ys, ys, accumulate);
    const uint16_t *x = xb + i * kp;
    float *out = y + i * ys;
    switch (m - i) {
    case 7: tile_dot_whole(7, C, prefetch, x, kp, k, w, ws, out, ys, accumulate); break;
    case 6: tile_dot_whole(6, C, prefetch, x, kp, k, w, ws, out, ys, accumulate); break;
    case 5: tile_dot_whole(5, C, prefetch, x, kp, k, w, ws, out, ys, accumulate); break;
    case 4: tile_dot_whole(4, C, prefetch, x, kp, k, w, ws, out, ys, accumulate); break;
    case 3: tile_dot_whole(3, C, prefetch, x, kp, k, w, ws, out, ys, accumulate); break;
    case 2: tile_dot_whole(2, C, prefetch, x, kp, k, w, ws, out, ys, accumulate); break;
    case 1: tile_dot_whole(1, C, prefetch, x, kp, k, w, ws, out, ys, accumulate); break;
    default: break;
    }
}

/// One tile of a k-chunk (``tile_dot`` with its L2 prefetch, which every tile keeps: the `prefetch`
/// argument of ``sy_chunk_tile`` is not read): 1 ≤ R ≤ 8 rows of bf16 x, 1 ≤ C ≤ 3 columns.
static void chunk_tile(int R, int C, int prefetch, const void *x, size_t kp, size_t k, size_t p0, size_t p1,
                       const uint16_t *w, size_t ws, const uint16_t *ahead, __m512 *state, size_t state_stride,
                       int first, int last, float *y, size_t ys, int accumulate);

/// 5-16 rows of x (in tiles of 8 rows, the last smaller) against 3 weight rows at a time, x read a
/// k-chunk of at most SY_DOT_KC values at a time (``blocked_product``; every tile prefetches the one after it, the tiles of
/// rows 9-16 too). Without the chunks a tile reads all the rows
/// of x over all of k once per 3 columns, and when those rows outgrow L1 (8 rows of bf16 past
/// k ≈ 1,700) it reads them from L2 while it streams the weights from memory. Measured on Zen 4 (2
/// threads, a product of 5.8 MB at m = 8 with its weights from memory, 300 copies cycled): 31-33 GB/s
/// of weights at k = 1,024 and 1,536, 25-26 at 1,792, 20-22 at 2,048-2,816; with the chunks 24-26 at
/// k = 2,816 (+11-18%; +3-8% at m = 5-7), 23.5-24 at 7,168 (+4-6%), alike at 4,096. In
/// Benchmarks/kernels/batch_step.c at batch 32 (m = 8 an expert, 6 alternating rounds) the down
/// products (k = 2,816) took 21.8-23.4 ms a step against 23.7-24.3, the step 72.7 ms against 74.0
/// (medians). At 9-16 rows (chunks of 512) Zen 4 was slower with the chunks (0.78-0.82× the rate at
/// m = 12, 0.76-0.87× at 16), so there they stay whole on AMD CPUs; on an Intel Xeon (Emerald Rapids,
/// 48 KiB L1, 2 threads, 1.1 GB of rows at k = 2,816 from memory, 2 alternating rounds) chunks of 704
/// took m = 12 from 148-156 to 189-195 GFLOP/s and m = 16 from 160-165 to 189-195 (of a 240 `vdpbf16ps` peak), and
/// batch_step's skewed batch 32 (m = 14 ... 2) from 88.4-90.1 to 84.4-84.9 ms of experts a step (3
/// alternating rounds); at k = 1,024, or past 16 rows (where the state would outgrow its bytes), chunks
/// were no faster. Since Intel CPUs run the products of more than SY_FMA_ROWS rows on the AVX-512F
/// kernels (``fma_products``), this serves 5-7 rows there and 5-8 on AMD CPUs.
SY_AVX512BF16_FN void dot_blocked(const uint16_t *xb, size_t m, size_t kp, size_t k, const uint16_t *w, size_t n,
                                  size_t ws, float *y, size_t ys, int accumulate) {
    blocked_product(chunk_tile, 3, 8, sizeof(uint16_t), 1, xb, m, kp, k, SY_DOT_KC, w, n, ws, y, ys, accumulate);
}

#define SY_CHUNK_TILE(R, C)                                                                                 \
    tile_dot(R, C, 1, xb, kp, k, p0, p1, w, ws, ahead, state, state_stride, first, last, y, ys, accumulate); \
    return
/// The constant shapes of ``chunk_tile``.
__attribute__((target("avx512f,avx512bw,avx512bf16,fma"))) static void
chunk_tile(int R, int C, int prefetch, const void *x, size_t kp, size_t k, size_t p0, size_t p1, const uint16_t *w,
           size_t ws, const uint16_t *ahead, __m512 *state, size_t state_stride, int first, int last, float *y,
           size_t ys, int accumulate) {
    (void)prefetch;
    const uint16_t *xb = (const uint16_t *)x;
    switch (R * 8 + C) {
    SY_CHUNK_SHAPES(SY_CHUNK_TILE)
    }
}
#undef SY_CHUNK_TILE

/// The tile shape follows m (it never changes a result): up to 4 rows, one weight row at a time (one
/// sequential stream per thread); up to 16 rows, 8 × 3 tiles (each weight byte read from memory once;
/// 24 accumulators for 11 loads: serve at batch 8 went from 118-122 to 125-154 tokens/s and batch 32
/// from 305-316 to 315-328 against 8 × 2), a k-chunk at a time past SY_DOT_KC at up to 8 rows
/// (``dot_blocked``; on AMD CPUs 9-16 rows ran faster over the whole of k, and on Intel ones the products
/// of more than SY_FMA_ROWS rows go to the AVX-512F kernels instead, see ``fma_products``); beyond,
/// 4 × 4 tiles (the most multiply-adds per load).
SY_AVX512BF16_FN void fast_dot(const uint16_t *xb, size_t m, size_t kp, size_t k, const uint16_t *w, size_t n,
                               size_t ws, float *y, size_t ys, int accumulate) {
    if (m <= SY_NARROW_ROWS) {
        // One weight row at a time: one sequential stream a thread. At m = 1 without software prefetch,
        // which the hardware prefetcher follows on its own; measured on Zen 4 (a 1 GiB product at
        // m = 1, k = 1024): one thread 28 GB/s, as Benchmarks/floors reads, against 18 with two rows at
        // a time prefetched 8 KiB ahead; two threads 47-54 GB/s in the host's fast moments, against 36-37
        // (33-36 and 30 in its slow ones); two rows without the prefetch 11 GB/s a thread, one row with
        // it 21. At m = 2-4 with the prefetch: batch_step at batch 16 (m = 4 an expert), 3 alternating
        // rounds, 53.5-54.0 ms a step against 75.3-78.2 with two prefetched rows and 75.7-77.4 with one
        // row unprefetched; at batch 8 (m = 2) 55.9-56.8 against 58.8-60.4 and 58.7-59.1. (On a Xeon
        // with AVX-512 an earlier session measured two prefetched rows at batch 1 in 0.84-1.0 of the
        // time of one prefetched row; not measured there without the prefetch.)
        if (m == 1 && !sy_stream_prefetch()) {
            for (size_t j = 0; j < n; j++) rows_dot(1, 1, 0, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
        } else {  // at m = 1 this is the one-row tile, prefetched into L2 and L1
            for (size_t j = 0; j < n; j++) rows_dot(4, 1, 2, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
        }
        return;
    }
    if (k > SY_DOT_KC && m <= 8) {
        dot_blocked(xb, m, kp, k, w, n, ws, y, ys, accumulate);  // x's rows a k-chunk at a time
        return;
    }
    size_t j = 0;
    if (m <= 16) {
        for (; j + 3 <= n; j += 3) rows_dot(8, 3, 1, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
        for (; j + 2 <= n; j += 2) rows_dot(8, 2, 1, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
        if (j < n) rows_dot(8, 1, 1, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
        return;
    }
    for (; j + 4 <= n; j += 4) rows_dot(4, 4, 1, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate);
    switch (n - j) {
    case 3: rows_dot(4, 3, 1, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate); break;
    case 2: rows_dot(4, 2, 1, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate); break;
    case 1: rows_dot(4, 1, 1, xb, m, kp, k, w + j * ws, ws, y + j, ys, accumulate); break;
    default: break;
    }
}

#endif // SY_X86

#if SY_ARM64
// NEON: the fast shape with FMA on widened values (bitwise the scalar path). Not `bfdot`: it adds a
// pair's two products together before adding them to the accumulator (and, without FEAT_EBF16's
// extended mode, rounds to odd and flushes denormals), not one product at a time as above; `bfmmla`
// likewise. Eight bf16 weights loaded as four 32-bit lanes hold pairs (2l, 2l + 1): the even weight
// is the lane shifted left by 16, the odd one the lane's top half.
enum { NEON_FAST_R = 4 };

/// R rows (≤ 4) of prepared x against one weight row: 16 accumulators, 8 weight vectors.
SY_NEON void tile_fast_neon(int R, const float *xp, size_t kp, size_t k, const uint16_t *w, float *y, size_t ys,
                            int accumulate) {
    float32x4_t acc[NEON_FAST_R][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_f32(0.0f);
    const uint32x4_t high = vdupq_n_u32(0xFFFF0000u);
    for (size_t p = 0; p < kp; p += SY_FAST_STEP) {
        uint16_t padded[SY_FAST_STEP];
        const uint16_t *block = p + SY_FAST_STEP <= k ? w + p : fast_block(w, p, k, padded);
        float32x4_t we[4], wo[4];
        for (int q = 0; q < 4; q++) {
            uint32x4_t pairs = vreinterpretq_u32_u16(vld1q_u16(block + 8 * q));
            we[q] = vreinterpretq_f32_u32(vshlq_n_u32(pairs, 16));
            wo[q] = vreinterpretq_f32_u32(vandq_u32(pairs, high));
        }
        for (int r = 0; r < R; r++) {
            const float *x = xp + r * kp + p;
            for (int q = 0; q < 4; q++) {
                acc[r][q] = vfmaq_f32(acc[r][q], vld1q_f32(x + SY_LANES + 4 * q), wo[q]);
                acc[r][q] = vfmaq_f32(acc[r][q], vld1q_f32(x + 4 * q), we[q]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        float s = hsum16_neon(acc[r]);
        float *target = y + r * ys;
        *target = accumulate ? *target + s : s;
    }
}

static void fast_neon(const float *xp, size_t m, size_t kp, size_t k, const uint16_t *w, size_t n, size_t ws, float *y,
                      size_t ys, int accumulate) {
    for (size_t j = 0; j < n; j++) {
        size_t i = 0;
        for (; i + NEON_FAST_R <= m; i += NEON_FAST_R)
            tile_fast_neon(NEON_FAST_R, xp + i * kp, kp, k, w + j * ws, y + i * ys + j, ys, accumulate);
        switch (m - i) {
        case 3: tile_fast_neon(3, xp + i * kp, kp, k, w + j * ws, y + i * ys + j, ys, accumulate); break;
        case 2: tile_fast_neon(2, xp + i * kp, kp, k, w + j * ws, y + i * ys + j, ys, accumulate); break;
        case 1: tile_fast_neon(1, xp + i * kp, kp, k, w + j * ws, y + i * ys + j, ys, accumulate); break;
        default: break;
        }
    }
}
#endif // SY_ARM64

// MARK: - q8 weights: int8 in blocks of 32 with an f32 scale per block, x quantized the same way
//
// The q8 reduction shape, shared by every path: per block b of 32 indices, x and w are int8 with
// scales dx[b], dw[b] (value ≈ scale · q). Lane l (0 ... 7) of block b holds the exact integer sum
// of the 4 products at 4l ... 4l + 3. Blocks are taken in pairs (an odd last block is paired with an
// empty one): for the pair (2j, 2j + 1), accumulator lane l < 8 does acc[l] = fma(dx·dw of block 2j,
// float(sum of block 2j, lane l), acc[l]) and lane 8 + l the same for block 2j + 1 (dx·dw rounded to
// f32 first). The 16 lanes are then added as the tree of the header. Integer sums are exact, so the
// scalar, AVX2, AVX-VNNI, AVX-512 VNNI and NEON paths give the same bits.

enum { SY_Q8_BLOCK = 32 };

size_t sy_q8_block_count(size_t k) {
    size_t blocks = (k + SY_Q8_BLOCK - 1) / SY_Q8_BLOCK;
    return (blocks + 1) & ~(size_t)1;
}

/// Quantizes one row of `k` values into `blocks` (even) blocks: q = round-to-even(v · 127 / amax), NaN
/// left out of amax. A quotient that is NaN (from a NaN or infinite value) or infinite (127 / amax
/// overflows when amax is denormal) quantizes to -127, on every path and architecture: x86's conversions
/// give INT_MIN there (clamped to -127), AArch64's would give 0 or ±INT_MAX, so it is written out.
static void quantize_row_q8(const float *v, size_t k, size_t blocks, int8_t *q, float *scale) {
    for (size_t b = 0; b < blocks; b++) {
        size_t begin = b * SY_Q8_BLOCK;
        float amax = 0;
        for (size_t p = begin; p < begin + SY_Q8_BLOCK && p < k; p++) {
            float a = fabsf(v[p]);
            if (a > amax) amax = a;
        }
        float inverse = amax > 0 ? 127.0f / amax : 0.0f;
        scale[b] = amax / 127.0f;
        for (size_t p = 0; p < SY_Q8_BLOCK; p++) {
            size_t index = begin + p;
            float scaled = index < k ? v[index] * inverse : 0.0f;
            if (!(fabsf(scaled) <= FLT_MAX)) {
                q[begin + p] = -127;
                continue;
            }
            long rounded = lrintf(scaled);
            q[begin + p] = (int8_t)(rounded > 127 ? 127 : rounded < -127 ? -127 : rounded);
        }
    }
}

/// How many of a q8 row's `k` values the block starting at `begin` holds (0 ... 32; the rest is padding):
/// what the vector quantizers load and write as values.
static inline size_t q8_block_values(size_t k, size_t begin) {
    return k > begin ? (k - begin < SY_Q8_BLOCK ? k - begin : SY_Q8_BLOCK) : 0;
}

#if SY_X86
/// ``quantize_row_q8`` with AVX-512, bit for bit: NaN is left out of amax as there (then quantized by
/// the conversion's overflow value, INT_MIN, clamped to -127 as lrintf's LONG_MIN is), padding is 0.
__attribute__((target("avx512f,fma"))) static void quantize_row_q8_avx512(const float *v, size_t k, size_t blocks,
                                                                                  int8_t *q, float *scale) {
    const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
    const __m512i low = _mm512_set1_epi32(-127), high = _mm512_set1_epi32(127);
    for (size_t b = 0; b < blocks; b++) {
        size_t begin = b * SY_Q8_BLOCK, valid = q8_block_values(k, begin);
        __mmask16 m0 = valid >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << valid) - 1u);
        __mmask16 m1 = valid >= 32 ? (__mmask16)0xFFFF : valid > 16 ? (__mmask16)((1u << (valid - 16)) - 1u) : 0;
        __m512 x0 = _mm512_maskz_loadu_ps(m0, v + begin), x1 = _mm512_maskz_loadu_ps(m1, v + begin + 16);
        __m512 a0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x0), magnitude));
        __m512 a1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x1), magnitude));
        a0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a0, a0, _CMP_ORD_Q), a0);
        a1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a1, a1, _CMP_ORD_Q), a1);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        float inverse = amax > 0 ? 127.0f / amax : 0.0f;
        scale[b] = amax / 127.0f;
        __m512 factor = _mm512_set1_ps(inverse);
        __m512i r0 = _mm512_maskz_cvtps_epi32(m0, _mm512_mul_ps(x0, factor));
        __m512i r1 = _mm512_maskz_cvtps_epi32(m1, _mm512_mul_ps(x1, factor));
        r0 = _mm512_min_epi32(_mm512_max_epi32(r0, low), high);
        r1 = _mm512_min_epi32(_mm512_max_epi32(r1, low), high);
        _mm_storeu_si128((__m128i *)(q + begin), _mm512_cvtepi32_epi8(r0));
        _mm_storeu_si128((__m128i *)(q + begin + 16), _mm512_cvtepi32_epi8(r1));
    }
}

/// ``quantize_row_q8`` with AVX2, bit for bit, as the AVX-512 one: NaN left out of amax, a NaN or
/// infinite quotient converted to INT_MIN and clamped to -127 (lrintf's LONG_MIN), padding 0 even when
/// the quotient of a padding lane would be NaN (0 × an infinite 127 / amax). x is quantized before every
/// q8 product, on the calling thread, and with lrintf a value that had been the AVX2 path's: on the Intel
/// Xeon (2 threads, `SWITCHYARD_KERNEL=avx2`) a 1,024 × 1,024 q8 product from memory 52-54 -> 46-47 µs,
/// `generate --quantize q8` 4 alternating rounds 127-183 -> 167-216 tok/s on the Qwen3-MoE-shaped
/// benchmark model (8 experts' x a layer) and 81-89 -> 86-98 on the Mixtral-shaped one, and that model's
/// load (its weights quantized here too) 6.9-7.2 -> 2.7-3.2 s.
__attribute__((target("avx2,fma"))) static void quantize_row_q8_avx2(const float *v, size_t k, size_t blocks,
                                                                             int8_t *q, float *scale) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i low = _mm256_set1_epi32(-127), high = _mm256_set1_epi32(127);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // packs_epi32 then packs_epi16 leave each 128-bit half's groups of 4 interleaved: this puts them back.
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t b = 0; b < blocks; b++) {
        size_t begin = b * SY_Q8_BLOCK, valid = q8_block_values(k, begin);
        __m256i mask[4];
        __m256 x[4], a = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            mask[i] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid - 8 * i), lane);
            x[i] = _mm256_maskload_ps(v + begin + 8 * i, mask[i]);
            __m256 magnitudes = _mm256_and_ps(x[i], magnitude);
            a = _mm256_max_ps(a, _mm256_and_ps(magnitudes, _mm256_cmp_ps(magnitudes, magnitudes, _CMP_ORD_Q)));
        }
        __m128 half = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        half = _mm_max_ps(half, _mm_movehl_ps(half, half));
        float amax = _mm_cvtss_f32(_mm_max_ss(half, _mm_movehdup_ps(half)));
        float inverse = amax > 0 ? 127.0f / amax : 0.0f;
        scale[b] = amax / 127.0f;
        __m256 factor = _mm256_set1_ps(inverse);
        __m256i r[4];
        for (int i = 0; i < 4; i++) {
            r[i] = _mm256_and_si256(_mm256_cvtps_epi32(_mm256_mul_ps(x[i], factor)), mask[i]);
            r[i] = _mm256_min_epi32(_mm256_max_epi32(r[i], low), high);
        }
        __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
        _mm256_storeu_si256((__m256i *)(void *)(q + begin), _mm256_permutevar8x32_epi32(bytes, order));
    }
}
#endif

#if SY_ARM64
/// ``quantize_row_q8`` with NEON, bit for bit: NaN left out of amax, `fcvtns` rounding to nearest
/// even, a NaN or infinite quotient is set to -127 as there, and a short block's padding is read as zeros
/// (copied into a block of its own) and written as 0.
SY_NEON void quantize_row_q8_neon(const float *v, size_t k, size_t blocks, int8_t *q, float *scale) {
    for (size_t b = 0; b < blocks; b++) {
        size_t begin = b * SY_Q8_BLOCK, valid = q8_block_values(k, begin);
        float padded[SY_Q8_BLOCK] = {0};
        const float *x = v + begin;
        if (valid < SY_Q8_BLOCK) {
            for (size_t p = 0; p < valid; p++) padded[p] = x[p];
            x = padded;
        }
        float32x4_t values[8], a = vdupq_n_f32(0.0f);
        for (int i = 0; i < 8; i++) {
            values[i] = vld1q_f32(x + 4 * i);
            float32x4_t magnitudes = vabsq_f32(values[i]);
            // NaN set to 0 first (`fmaxnm` alone would pass a signaling NaN on, and lose the maximum).
            magnitudes = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(magnitudes), vceqq_f32(magnitudes, magnitudes)));
            a = vmaxq_f32(a, magnitudes);
        }
        float amax = vmaxvq_f32(a);
        float inverse = amax > 0 ? 127.0f / amax : 0.0f;
        scale[b] = amax / 127.0f;
        const float32x4_t largest = vdupq_n_f32(FLT_MAX);
        const int32x4_t low = vdupq_n_s32(-127), high = vdupq_n_s32(127);
        const uint32x4_t lane = {0, 1, 2, 3}, count = vdupq_n_u32((uint32_t)valid);
        int16x8_t halves[4];
        for (int i = 0; i < 8; i += 2) {
            int32x4_t r[2];
            for (int h = 0; h < 2; h++) {
                float32x4_t scaled = vmulq_n_f32(values[i + h], inverse);
                int32x4_t rounded = vbslq_s32(vcaleq_f32(scaled, largest), vcvtnq_s32_f32(scaled), low);
                // Padding lanes: 0 whatever the quotient (0 × an infinite 127 / amax is NaN).
                uint32x4_t kept = vcltq_u32(vaddq_u32(lane, vdupq_n_u32((uint32_t)(4 * (i + h)))), count);
                r[h] = vandq_s32(vminq_s32(vmaxq_s32(rounded, low), high), vreinterpretq_s32_u32(kept));
            }
            halves[i / 2] = vcombine_s16(vmovn_s32(r[0]), vmovn_s32(r[1]));
        }
        vst1q_s8(q + begin, vcombine_s8(vmovn_s16(halves[0]), vmovn_s16(halves[1])));
        vst1q_s8(q + begin + 16, vcombine_s8(vmovn_s16(halves[2]), vmovn_s16(halves[3])));
    }
}
#endif

/// One row quantized on the path `isa` (the same bits on every path).
static void quantize_row_q8_isa(sy_isa isa, const float *v, size_t k, size_t blocks, int8_t *q, float *scale) {
#if SY_X86
    if (avx512_isa(isa)) {
        quantize_row_q8_avx512(v, k, blocks, q, scale);
        return;
    }
    if (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI) {
        quantize_row_q8_avx2(v, k, blocks, q, scale);
        return;
    }
#elif SY_ARM64
    if (isa == SY_ISA_NEON) {
        quantize_row_q8_neon(v, k, blocks, q, scale);
        return;
    }
#else
    (void)isa;
#endif
    quantize_row_q8(v, k, blocks, q, scale);
}

void sy_q8_quantize_isa(sy_isa isa, const float *w, size_t n, size_t k, size_t w_stride, int8_t *q, float *scales) {
    size_t blocks = sy_q8_block_count(k);
    for (size_t j = 0; j < n; j++)
        quantize_row_q8_isa(isa, w + j * w_stride, k, blocks, q + j * blocks * SY_Q8_BLOCK, scales + j * blocks);
}

void sy_q8_quantize(const float *w, size_t n, size_t k, size_t w_stride, int8_t *q, float *scales) {
    sy_q8_quantize_isa(sy_active_isa(), w, n, k, w_stride, q, scales);
}

enum { SY_COPY_PIECE = 1 << 20 };

typedef struct parallel_copy {
    char *target;
    const char *source;
    size_t bytes;
} parallel_copy;

static void parallel_copy_task(void *context, size_t index) {
    const parallel_copy *job = context;
    size_t at = index * SY_COPY_PIECE, left = job->bytes - at;
    memcpy(job->target + at, job->source + at, left < SY_COPY_PIECE ? left : SY_COPY_PIECE);
}

void sy_parallel_copy(void *target, const void *source, size_t bytes) {
    parallel_copy job = {target, source, bytes};
    sy_parallel_for((bytes + SY_COPY_PIECE - 1) / SY_COPY_PIECE, parallel_copy_task, &job);
}

/// Rows of a weight per task of ``sy_q8_quantize_weight_isa``: enough that a task's setup is nothing
/// beside it, few enough that the threads finish together on a 1,024-row matrix.
enum { SY_Q8_LOAD_ROWS = 32 };

typedef struct q8_load {
    sy_isa isa;
    const void *w;
    int bf16;
    size_t n, k, w_stride, blocks;
    int8_t *q;
    float *scales;
    _Atomic int failed;
} q8_load;

/// The calling thread's buffer for prepared x (and a load's widened bf16 row), grown as needed and kept
/// (no allocation per product).
static _Thread_local void *prepared_buffer = NULL;
static _Thread_local size_t prepared_capacity = 0;

static void *prepared_space(size_t bytes) {
    if (bytes > prepared_capacity) {
        void *grown = realloc(prepared_buffer, bytes);
        if (grown == NULL) return NULL;
        prepared_buffer = grown;
        prepared_capacity = bytes;
    }
    return prepared_buffer;
}

static void q8_load_task(void *context, size_t index) {
    q8_load *job = context;
    size_t j0 = index * SY_Q8_LOAD_ROWS, j1 = j0 + SY_Q8_LOAD_ROWS < job->n ? j0 + SY_Q8_LOAD_ROWS : job->n;
    float *row = NULL;
    if (job->bf16) {
        row = prepared_space(job->k * sizeof(float));
        if (row == NULL) {
            atomic_store_explicit(&job->failed, 1, memory_order_relaxed);
            return;
        }
    }
    for (size_t j = j0; j < j1; j++) {
        const float *values;
        if (job->bf16) {
            const uint16_t *bits = (const uint16_t *)job->w + j * job->w_stride;
            for (size_t p = 0; p < job->k; p++) row[p] = widen_bf16(bits[p]);
            values = row;
        } else {
            values = (const float *)job->w + j * job->w_stride;
        }
        quantize_row_q8_isa(job->isa, values, job->k, job->blocks, job->q + j * job->blocks * SY_Q8_BLOCK,
                            job->scales + j * job->blocks);
    }
}

int sy_q8_quantize_weight_isa(sy_isa isa, const void *w, int bf16, size_t n, size_t k, size_t w_stride, int8_t *q,
                              float *scales) {
    q8_load job = {isa, w, bf16, n, k, w_stride, sy_q8_block_count(k), q, scales, 0};
    sy_parallel_for((n + SY_Q8_LOAD_ROWS - 1) / SY_Q8_LOAD_ROWS, q8_load_task, &job);
    return atomic_load_explicit(&job.failed, memory_order_relaxed) ? -1 : 0;
}

static void q8_scalar(const int8_t *xq, const float *xd, size_t m, const int8_t *wq, const float *wd, size_t n,
                      size_t blocks, float *y, size_t ys, int accumulate) {
    size_t row = blocks * SY_Q8_BLOCK;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float acc[SY_LANES] = {0};
            const int8_t *x = xq + i * row, *w = wq + j * row;
            for (size_t b = 0; b < blocks; b++) {
                float d = xd[i * blocks + b] * wd[j * blocks + b];
                int half = (int)(b & 1) * 8;
                for (int l = 0; l < 8; l++) {
                    int32_t sum = 0;
                    for (int t = 0; t < 4; t++) {
                        size_t index = b * SY_Q8_BLOCK + (size_t)(4 * l + t);
                        sum += (int32_t)x[index] * (int32_t)w[index];
                    }
                    acc[half + l] = fmaf(d, (float)sum, acc[half + l]);
                }
            }
            float s = hsum16_scalar(acc);
            y[i * ys + j] = accumulate ? y[i * ys + j] + s : s;
        }
}

#if SY_X86
#define SY_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,fma"), always_inline)) static inline
#define SY_VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vnni,fma"))) static

enum { Q8_R = 4, Q8_C = 4 };

SY_VNNI __m512 pair_scales(const float *d) {
    return _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(d[0]), _mm512_set1_ps(d[1]));
}

SY_VNNI void tile_q8_vnni(int R, int C, const int8_t *xq, const float *xd, const int8_t *wq, const float *wd,
                          size_t blocks, float *y, size_t ys, int accumulate) {
    size_t row = blocks * SY_Q8_BLOCK;
    __m512 acc[Q8_R][Q8_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    const __m512i ones = _mm512_set1_epi8(1), flip = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    for (size_t b = 0; b < blocks; b += 2) {
        __m512i wv[Q8_C], wsum[Q8_C];
        __m512 wdv[Q8_C];
        for (int c = 0; c < C; c++) {
            wv[c] = _mm512_loadu_si512((const void *)(wq + c * row + b * SY_Q8_BLOCK));
            // The weight streams prefetched as in the bf16 kernels: batch_step q8 on a Xeon with AVX-512
            // (2 threads, 4 alternating rounds) went from 39-46 to 19-32 ms a batch-1 step and from
            // 207-364 to 133-236 ms a batch-32 step.
            prefetch_weights(wq + c * row + b * SY_Q8_BLOCK, 2);
            if ((b & 15) == 0) prefetch_scales(wd + c * blocks + b);
            // -128 × Σ w over each lane's 4 bytes: what x + 128 adds to the unsigned-signed product,
            // taken off by starting the product's sum from it (the same integer as subtracting it after;
            // one instruction fewer per row and column: prefill with q8 weights, 4 of its 5).
            wsum[c] = _mm512_sub_epi32(zero, _mm512_slli_epi32(_mm512_dpbusd_epi32(zero, ones, wv[c]), 7));
            wdv[c] = pair_scales(wd + c * blocks + b);
        }
        for (int r = 0; r < R; r++) {
            __m512i xu = _mm512_xor_si512(_mm512_loadu_si512((const void *)(xq + r * row + b * SY_Q8_BLOCK)), flip);
            __m512 xdv = pair_scales(xd + r * blocks + b);
            for (int c = 0; c < C; c++) {
                __m512i sum = _mm512_dpbusd_epi32(wsum[c], xu, wv[c]);
                acc[r][c] = _mm512_fmadd_ps(_mm512_mul_ps(xdv, wdv[c]), _mm512_cvtepi32_ps(sum), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx512(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

SY_VNNI void rows_q8_vnni(int C, const int8_t *xq, const float *xd, size_t m, const int8_t *wq, const float *wd,
                          size_t blocks, float *y, size_t ys, int accumulate) {
    size_t row = blocks * SY_Q8_BLOCK, i = 0;
    for (; i + Q8_R <= m; i += Q8_R)
        tile_q8_vnni(Q8_R, C, xq + i * row, xd + i * blocks, wq, wd, blocks, y + i * ys, ys, accumulate);
    switch (m - i) {
    case 3: tile_q8_vnni(3, C, xq + i * row, xd + i * blocks, wq, wd, blocks, y + i * ys, ys, accumulate); break;
    case 2: tile_q8_vnni(2, C, xq + i * row, xd + i * blocks, wq, wd, blocks, y + i * ys, ys, accumulate); break;
    case 1: tile_q8_vnni(1, C, xq + i * row, xd + i * blocks, wq, wd, blocks, y + i * ys, ys, accumulate); break;
    default: break;
    }
}

SY_VNNI_FN void q8_vnni(const int8_t *xq, const float *xd, size_t m, const int8_t *wq, const float *wd, size_t n,
                        size_t blocks, float *y, size_t ys, int accumulate) {
    size_t row = blocks * SY_Q8_BLOCK, j = 0;
    if (m <= SY_NARROW_ROWS) {
        for (; j < n; j++) rows_q8_vnni(1, xq, xd, m, wq + j * row, wd + j * blocks, blocks, y + j, ys, accumulate);
        return;
    }
    for (; j + Q8_C <= n; j += Q8_C)
        rows_q8_vnni(Q8_C, xq, xd, m, wq + j * row, wd + j * blocks, blocks, y + j, ys, accumulate);
    switch (n - j) {
    case 3: rows_q8_vnni(3, xq, xd, m, wq + j * row, wd + j * blocks, blocks, y + j, ys, accumulate); break;
    case 2: rows_q8_vnni(2, xq, xd, m, wq + j * row, wd + j * blocks, blocks, y + j, ys, accumulate); break;
    case 1: rows_q8_vnni(1, xq, xd, m, wq + j * row, wd + j * blocks, blocks, y + j, ys, accumulate); break;
    default: break;
    }
}

// AVX2 and AVX-VNNI (`vpdpbusd` on ymm registers, on AVX2 hosts such as Sierra Forest and Alder Lake):
// 8 lanes per block, block 2j in the low accumulator of a pair and 2j + 1 in the high one. The block
// sums use the sign trick, Σ x·w = Σ |x| · (w with the sign of x), an unsigned-by-signed product. It
// needs every q within ±127, which quantize_row_q8 guarantees (it clamps to ±127; a -128 has no
// positive int8 counterpart, so |x| or a negated w would wrap): then a pair of products is at most
// 2 · 127 · 127 = 32258, inside the int16 of maddubs (no saturation), and every sum is exact.

/// The exact sums of the 4 products of each lane of one block: `ax` = |x|, `sw` = w with x's sign;
/// u8 × s8 pairs to int16 (maddubs), then pairs to int32 (madd).
SY_AVX2 __m256i q8_sums_avx2(__m256i ax, __m256i sw) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), _mm256_set1_epi16(1));
}

#define SY_AVXVNNI __attribute__((target("avx2,fma,avxvnni"), always_inline)) static inline
#define SY_AVXVNNI_FN __attribute__((target("avx2,fma,avxvnni"))) static

/// ``q8_sums_avx2`` in one instruction: 4 u8 × s8 products a lane, summed into int32.
SY_AVXVNNI __m256i q8_sums_avxvnni(__m256i ax, __m256i sw) {
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), ax, sw);
}

/// Tile shapes of the AVX2 q8 product: 2 × 2 (8 accumulators), and for m ≤ SY_NARROW_ROWS up to
/// 4 × 1 (one weight row at a time).
enum { Q8_AVX2_R = 2, Q8_AVX2_C = 2, Q8_AVX2_NARROW_R = 4 };

/// The tile (R ≤ 4 rows against C ≤ 2 weight rows, R · C ≤ 4), its rows and the product `NAME`, with
/// the block sums of `SUMS`: written once for maddubs and for `vpdpbusd`, whose targets differ.
#define SY_Q8_AVX2_KERNEL(NAME, INLINE, FN, SUMS)                                                            \
    INLINE void tile_##NAME(int R, int C, const int8_t *xq, const float *xd, const int8_t *wq, const float *wd, \
                            size_t blocks, float *y, size_t ys, int accumulate) {                              \
        size_t row = blocks * SY_Q8_BLOCK;                                                                     \
        __m256 acc[Q8_AVX2_NARROW_R][Q8_AVX2_C][2];                                                            \
        for (int r = 0; r < R; r++)                                                                            \
            for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = _mm256_setzero_ps();                     \
        for (size_t b = 0; b < blocks; b += 2) {                                                               \
            for (int c = 0; c < C; c++) {                                                                      \
                prefetch_weights(wq + c * row + b * SY_Q8_BLOCK, 2);                                           \
                if ((b & 15) == 0) prefetch_scales(wd + c * blocks + b);                                       \
            }                                                                                                  \
            for (int h = 0; h < 2; h++) {                                                                      \
                size_t at = (b + (size_t)h) * SY_Q8_BLOCK;                                                     \
                __m256i wv[Q8_AVX2_C];                                                                         \
                for (int c = 0; c < C; c++) wv[c] = _mm256_loadu_si256((const __m256i *)(const void *)(wq + c * row + at)); \
                for (int r = 0; r < R; r++) {                                                                  \
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq + r * row + at));       \
                    __m256i ax = _mm256_abs_epi8(xv);                                                          \
                    for (int c = 0; c < C; c++) {                                                              \
                        __m256 d = _mm256_set1_ps(xd[r * blocks + b + h] * wd[c * blocks + b + h]);            \
                        __m256i sums = SUMS(ax, _mm256_sign_epi8(wv[c], xv));                                  \
                        acc[r][c][h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc[r][c][h]);             \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int r = 0; r < R; r++)                                                                            \
            for (int c = 0; c < C; c++) {                                                                      \
                float s = hsum16_avx2(acc[r][c][0], acc[r][c][1]);                                             \
                float *target = y + r * ys + c;                                                                \
                *target = accumulate ? *target + s : s;                                                        \
            }                                                                                                  \
    }                                                                                                          \
                                                                                                               \
    INLINE void rows_##NAME(int RT, int C, const int8_t *xq, const float *xd, size_t m, const int8_t *wq,      \
                            const float *wd, size_t blocks, float *y, size_t ys, int accumulate) {             \
        size_t row = blocks * SY_Q8_BLOCK, i = 0;                                                              \
        for (; i + (size_t)RT <= m; i += (size_t)RT)                                                           \
            tile_##NAME(RT, C, xq + i * row, xd + i * blocks, wq, wd, blocks, y + i * ys, ys, accumulate);     \
        const int8_t *x = xq + i * row;                                                                        \
        const float *d = xd + i * blocks;                                                                      \
        float *out = y + i * ys;                                                                               \
        switch (m - i) {                                                                                       \
        case 3: tile_##NAME(3, C, x, d, wq, wd, blocks, out, ys, accumulate); break;                           \
        case 2: tile_##NAME(2, C, x, d, wq, wd, blocks, out, ys, accumulate); break;                           \
        case 1: tile_##NAME(1, C, x, d, wq, wd, blocks, out, ys, accumulate); break;                           \
        default: break;                                                                                        \
        }                                                                                                      \
    }                                                                                                          \
                                                                                                               \
    FN void NAME(const int8_t *xq, const float *xd, size_t m, const int8_t *wq, const float *wd, size_t n,     \
                 size_t blocks, float *y, size_t ys, int accumulate) {                                         \
        size_t row = blocks * SY_Q8_BLOCK, j = 0;                                                              \
        if (m <= SY_NARROW_ROWS) {                                                                             \
            for (; j < n; j++)                                                                                 \
                rows_##NAME(Q8_AVX2_NARROW_R, 1, xq, xd, m, wq + j * row, wd + j * blocks, blocks, y + j, ys,   \
                            accumulate);                                                                       \
            return;                                                                                            \
        }                                                                                                      \
        for (; j + Q8_AVX2_C <= n; j += Q8_AVX2_C)                                                             \
            rows_##NAME(Q8_AVX2_R, Q8_AVX2_C, xq, xd, m, wq + j * row, wd + j * blocks, blocks, y + j, ys,      \
                        accumulate);                                                                           \
        if (j < n) rows_##NAME(Q8_AVX2_R, 1, xq, xd, m, wq + j * row, wd + j * blocks, blocks, y + j, ys, accumulate); \
    }

SY_Q8_AVX2_KERNEL(q8_avx2, SY_AVX2, SY_AVX2_FN, q8_sums_avx2)
SY_Q8_AVX2_KERNEL(q8_avxvnni, SY_AVXVNNI, SY_AVXVNNI_FN, q8_sums_avxvnni)
#endif

#if SY_ARM64
// NEON: a block's 8 lane sums as two int32x4_t (lanes 0 ... 3 from bytes 0 ... 15, 4 ... 7 from 16 ... 31).
// With the dot-product extension (`sdot`, FEAT_DotProd, found at run time) one instruction per 16
// bytes; without, `smull` into 16-bit products (|q| ≤ 128, so each fits) and two pairwise widening
// adds. Either way the integer sums are exact, so both give the scalar path's bits.
// GCC declares `vdotq_s32` for armv8.2-a + dotprod, so a function using it must be compiled for that
// architecture, unless the whole build already is (an arch= attribute would then drop later features).
#if defined(__ARM_FEATURE_DOTPROD)
#define SY_DOTPROD_TARGET
#else
#define SY_DOTPROD_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define SY_NEON_DOTPROD SY_DOTPROD_TARGET __attribute__((always_inline)) static inline

SY_NEON void q8_block_sums_neon(const int8_t *x, const int8_t *w, int32x4_t sums[2]) {
    for (int h = 0; h < 2; h++) {
        int8x16_t xv = vld1q_s8(x + 16 * h), wv = vld1q_s8(w + 16 * h);
        int32x4_t low = vpaddlq_s16(vmull_s8(vget_low_s8(xv), vget_low_s8(wv)));
        int32x4_t high = vpaddlq_s16(vmull_high_s8(xv, wv));
        sums[h] = vpaddq_s32(low, high);
    }
}

SY_NEON_DOTPROD void q8_block_sums_dotprod(const int8_t *x, const int8_t *w, int32x4_t sums[2]) {
    for (int h = 0; h < 2; h++) sums[h] = vdotq_s32(vdupq_n_s32(0), vld1q_s8(x + 16 * h), vld1q_s8(w + 16 * h));
}

/// The q8 product with `BLOCK_SUMS` for the integer sums, compiled with `ATTRIBUTES` (the dot-product
/// variant must be compiled for that extension as a whole, so the loop is written once, here).
#define SY_Q8_NEON(NAME, ATTRIBUTES, BLOCK_SUMS)                                                              \
    ATTRIBUTES static void NAME(const int8_t *xq, const float *xd, size_t m, const int8_t *wq, const float *wd, \
                                size_t n, size_t blocks, float *y, size_t ys, int accumulate) {                 \
        size_t row = blocks * SY_Q8_BLOCK;                                                                    \
        for (size_t i = 0; i < m; i++)                                                                        \
            for (size_t j = 0; j < n; j++) {                                                                  \
                float32x4_t acc[4];                                                                           \
                for (int q = 0; q < 4; q++) acc[q] = vdupq_n_f32(0.0f);                                       \
                const int8_t *x = xq + i * row, *w = wq + j * row;                                            \
                for (size_t b = 0; b < blocks; b += 2) {                                                      \
                    int32x4_t sums[4];                                                                        \
                    BLOCK_SUMS(x + b * SY_Q8_BLOCK, w + b * SY_Q8_BLOCK, sums);                               \
                    BLOCK_SUMS(x + (b + 1) * SY_Q8_BLOCK, w + (b + 1) * SY_Q8_BLOCK, sums + 2);               \
                    float32x4_t d0 = vdupq_n_f32(xd[i * blocks + b] * wd[j * blocks + b]);                    \
                    float32x4_t d1 = vdupq_n_f32(xd[i * blocks + b + 1] * wd[j * blocks + b + 1]);            \
                    for (int q = 0; q < 4; q++)                                                               \
                        acc[q] = vfmaq_f32(acc[q], q < 2 ? d0 : d1, vcvtq_f32_s32(sums[q]));                  \
                }                                                                                             \
                float s = hsum16_neon(acc);                                                                   \
                y[i * ys + j] = accumulate ? y[i * ys + j] + s : s;                                           \
            }                                                                                                 \
    }

SY_Q8_NEON(q8_neon, , q8_block_sums_neon)
SY_Q8_NEON(q8_dotprod, SY_DOTPROD_TARGET, q8_block_sums_dotprod)

/// Whether this CPU has the dot-product extension (`sdot`).
static int dotprod_supported(void) {
#if defined(__ARM_FEATURE_DOTPROD)
    return 1;  // the whole build requires it
#elif defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}
#endif // SY_ARM64

// MARK: - AMX tiles (SY_ISA_AMX): the fast product on `tdpbf16ps`, an arithmetic of its own
//
// Hand-written: no listed library has a batch-invariant AMX product. `tdpbf16ps` multiplies a tile of
// 16 weight rows × 32 bf16 indices by a tile of 16 pairs of indices × 16 rows of x and adds into a
// 16 × 16 f32 tile. Inside one instruction it adds as the Intel SDM's newer pseudocode says: for each
// output, the 16 products of even indices summed in order from zero with one rounding each, the odd
// ones likewise, those two sums added, and that added to the accumulator (denormal inputs and results
// flushed to zero); on an Intel Xeon (Emerald Rapids) 1,024,000 outputs of random tiles matched it
// bitwise, and BFloat16Tests checks the path against it. The other paths accumulate each pair position
// across all the blocks (as `vdpbf16ps` does) and sum the 16 positions at the end, so these bits differ. A copy
// of this arithmetic on vector registers (16 weight rows in the lanes, each block's 16 × 16 words
// transposed) was as exact but slower than the tiles at m = 1 (Benchmarks/README.md). Every
// output element still sees the same operations whatever the call's rows (its accumulator starts at
// zero and takes the blocks of 32 indices in ascending order, each from its own weight row and x row),
// so the path is batch-invariant within itself; it is chosen only by SWITCHYARD_KERNEL=amx. On an Intel
// Xeon (Emerald Rapids, 2 threads, 2026-12-06) it ran `batch_step`'s batch-32 step in 67 ms against 88 on
// the avx512bf16 path and its batch-1 step in 18.3 against 15.2 ms (a tile load of 16 rows ws apart streams
// weights from memory more slowly than vector loads; Benchmarks/README.md has what was tried). The models
// use the packed variant below (``sy_matmul_amx_packed_grouped``), whose tiles are contiguous; this one
// serves weights as stored.

#if SY_X86
#define SY_AMX_FN __attribute__((target("avx512f,avx512bw,avx512bf16,amx-tile,amx-bf16"))) static

/// The tile configuration every AMX product uses (palette 1): tiles 0-3 accumulate 16 × 16 f32,
/// 4-5 hold 16 weight rows × 32 bf16, 6-7 hold 16 pairs of indices × 16 rows of x; all 16 × 64 bytes.
typedef struct sy_amx_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} sy_amx_config;

static _Thread_local int amx_configured = 0;

SY_AMX_FN void amx_configure(void) {
    if (amx_configured) return;
    sy_amx_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = 16;
        config.bytes_per_row[t] = 64;
    }
    _tile_loadconfig(&config);
    amx_configured = 1;
}

/// x for the AMX product, from the rows `xb` (bf16, `kp` a row, as ``prepare_dot_bf16`` leaves them):
/// indices 2q and 2q + 1 of row r as one 32-bit word at pairs[q * pitch + r], so that a tile of x is
/// 16 consecutive words of 16 consecutive q; words r ≥ rows are zero (pitch ≥ rows + 16 lets a tile
/// start at any row).
static void prepare_amx(const uint16_t *xb, size_t rows, size_t kp, uint32_t *pairs, size_t pitch) {
    size_t words = kp / 2;
    for (size_t q = 0; q < words; q++) memset(pairs + q * pitch + rows, 0, (pitch - rows) * sizeof(uint32_t));
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *row = xb + r * kp;
        for (size_t q = 0; q < words; q++) {
            uint32_t word;
            memcpy(&word, row + 2 * q, sizeof word);
            pairs[q * pitch + r] = word;
        }
    }
}

/// The block of 32 indices at `p` of `count` weight rows (fewer than 16, or a block past k) copied into
/// `block`, zero elsewhere, so that a tile load never reads past a row or past the matrix.
static const uint16_t *amx_block(const uint16_t *w, size_t ws, size_t count, size_t p, size_t k,
                                 uint16_t block[16][SY_FAST_STEP]) {
    memset(block, 0, 16 * SY_FAST_STEP * sizeof(uint16_t));
    size_t width = k - p < SY_FAST_STEP ? k - p : SY_FAST_STEP;
    for (size_t i = 0; i < count; i++) memcpy(block[i], w + i * ws + p, width * sizeof(uint16_t));
    return &block[0][0];
}

/// Weight tile t of a group (16 rows from `rows_at`, `count` of them real) at the block of `p`: the rows
/// themselves, or a zero-padded copy in `copy` when the tile has fewer than 16 rows or the block runs past k.
static inline const uint16_t *amx_weights(const uint16_t *rows_at, size_t ws, size_t count, size_t p, size_t k,
                                          uint16_t copy[16][SY_FAST_STEP], size_t *stride) {
    if (count == 16 && p + SY_FAST_STEP <= k) {
        *stride = ws * sizeof(uint16_t);
        return rows_at + p;
    }
    *stride = SY_FAST_STEP * sizeof(uint16_t);
    return amx_block(rows_at, ws, count, p, k, copy);
}

/// Stores one accumulator tile's values `out` (weight rows [first, first + count), x rows [i0, i0 + columns)) into y.
static inline void amx_store(const float out[16][16], size_t first, size_t count, size_t i0, size_t columns, float *y,
                             size_t ys, int accumulate) {
    for (size_t c = 0; c < columns; c++) {
        float *target = y + (i0 + c) * ys + first;
        for (size_t i = 0; i < count; i++) target[i] = accumulate ? target[i] + out[i][c] : out[i][c];
    }
}

/// Zeroes the four accumulator tiles (0-3).
#define amx_zero_accumulators()                                                                             \
    do {                                                                                                    \
        _tile_zero(0);                                                                                      \
        _tile_zero(1);                                                                                      \
        _tile_zero(2);                                                                                      \
        _tile_zero(3);                                                                                      \
    } while (0)

/// Stores the four accumulator tiles into `out` [4][16][16].
#define amx_store_accumulators(out)                                                                         \
    do {                                                                                                    \
        _tile_stored(0, (out)[0], 64);                                                                      \
        _tile_stored(1, (out)[1], 64);                                                                      \
        _tile_stored(2, (out)[2], 64);                                                                      \
        _tile_stored(3, (out)[3], 64);                                                                      \
    } while (0)

/// y[i, j] (+)= the AMX product of x rows i < m (`xq`: words of ``prepare_amx`` from this product's
/// first row, `pitch` words apart) and weight rows j < n, 64 weight rows at a time. While more than 16
/// x rows remain, 32 of them go against 32 weight rows (2 × 2 accumulator tiles, so each weight tile
/// loaded serves 32 x rows); the last 16 or fewer go against all 64 (4 accumulator tiles). Either way
/// each output's accumulator takes the same blocks in the same order.
SY_AMX_FN void fast_amx(const uint32_t *xq, size_t m, size_t pitch, size_t kp, size_t k, const uint16_t *w, size_t n,
                        size_t ws, float *y, size_t ys, int accumulate) {
    amx_configure();
    size_t blocks = kp / SY_FAST_STEP, xs = pitch * sizeof(uint32_t);
    float out[4][16][16] __attribute__((aligned(64)));
    uint16_t copies[4][16][SY_FAST_STEP] __attribute__((aligned(64)));
    for (size_t j0 = 0; j0 < n; j0 += 64) {
        size_t rows = n - j0 < 64 ? n - j0 : 64;
        int tiles = (int)((rows + 15) / 16);
        size_t count[4];
        const uint16_t *at[4];
        for (int t = 0; t < tiles; t++) {
            count[t] = rows - (size_t)t * 16 < 16 ? rows - (size_t)t * 16 : 16;
            at[t] = w + (j0 + (size_t)t * 16) * ws;
        }
        size_t i0 = 0;
        for (; i0 + 16 < m; i0 += 32) {
            size_t second = m - i0 - 16 < 16 ? m - i0 - 16 : 16;
            for (int t = 0; t < tiles; t += 2) {
                int pair = t + 1 < tiles;
                amx_zero_accumulators();
                for (size_t b = 0; b < blocks; b++) {
                    size_t p = b * SY_FAST_STEP, stride;
                    _tile_loadd(6, xq + i0 + b * 16 * pitch, xs);
                    _tile_loadd(7, xq + i0 + 16 + b * 16 * pitch, xs);
                    _tile_loadd(4, amx_weights(at[t], ws, count[t], p, k, copies[0], &stride), stride);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    if (pair) {
                        _tile_loadd(5, amx_weights(at[t + 1], ws, count[t + 1], p, k, copies[1], &stride), stride);
                        _tile_dpbf16ps(2, 5, 6);
                        _tile_dpbf16ps(3, 5, 7);
                    }
                }
                amx_store_accumulators(out);
                size_t first = j0 + (size_t)t * 16;
                amx_store(out[0], first, count[t], i0, 16, y, ys, accumulate);
                amx_store(out[1], first, count[t], i0 + 16, second, y, ys, accumulate);
                if (pair) {
                    amx_store(out[2], first + 16, count[t + 1], i0, 16, y, ys, accumulate);
                    amx_store(out[3], first + 16, count[t + 1], i0 + 16, second, y, ys, accumulate);
                }
            }
        }
        if (i0 >= m) continue;
        size_t columns = m - i0;
        amx_zero_accumulators();
        for (size_t b = 0; b < blocks; b++) {
            size_t p = b * SY_FAST_STEP, stride;
            _tile_loadd(6, xq + i0 + b * 16 * pitch, xs);
            _tile_loadd(4, amx_weights(at[0], ws, count[0], p, k, copies[0], &stride), stride);
            _tile_dpbf16ps(0, 4, 6);
            if (tiles > 1) {
                _tile_loadd(5, amx_weights(at[1], ws, count[1], p, k, copies[1], &stride), stride);
                _tile_dpbf16ps(1, 5, 6);
            }
            if (tiles > 2) {
                _tile_loadd(4, amx_weights(at[2], ws, count[2], p, k, copies[2], &stride), stride);
                _tile_dpbf16ps(2, 4, 6);
            }
            if (tiles > 3) {
                _tile_loadd(5, amx_weights(at[3], ws, count[3], p, k, copies[3], &stride), stride);
                _tile_dpbf16ps(3, 5, 6);
            }
        }
        amx_store_accumulators(out);
        for (int t = 0; t < tiles; t++) amx_store(out[t], j0 + (size_t)t * 16, count[t], i0, columns, y, ys, accumulate);
    }
}

/// Asks Linux once for the AMX tile state (a process-wide permission); 1 when granted.
static int amx_permitted(void) {
    static _Atomic int permitted = -1;
    int known = atomic_load_explicit(&permitted, memory_order_relaxed);
    if (known < 0) {
        enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
        known = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        atomic_store_explicit(&permitted, known, memory_order_relaxed);
    }
    return known;
}
#endif

// MARK: - Dispatch

int sy_isa_supported(sy_isa isa) {
    switch (isa) {
    case SY_ISA_SCALAR: return 1;
#if SY_X86
    case SY_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SY_ISA_AVX2_VNNI:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avxvnni");
    case SY_ISA_AVX512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    case SY_ISA_AVX512BF16:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("fma");
    case SY_ISA_AMX:
        return sy_isa_supported(SY_ISA_AVX512BF16) && __builtin_cpu_supports("amx-tile") &&
               __builtin_cpu_supports("amx-bf16") && amx_permitted();
#endif
#if SY_ARM64
    case SY_ISA_NEON: return 1;  // Advanced SIMD is part of AArch64
#endif
    default: return 0;
    }
}

static sy_isa choose_isa(void) {
    sy_isa best = sy_isa_supported(SY_ISA_AVX512BF16) ? SY_ISA_AVX512BF16
                  : sy_isa_supported(SY_ISA_AVX512)   ? SY_ISA_AVX512
                  : sy_isa_supported(SY_ISA_AVX2_VNNI) ? SY_ISA_AVX2_VNNI
                  : sy_isa_supported(SY_ISA_AVX2)     ? SY_ISA_AVX2
                  : sy_isa_supported(SY_ISA_NEON)     ? SY_ISA_NEON
                                                      : SY_ISA_SCALAR;
    const char *forced = getenv("SWITCHYARD_KERNEL");
    if (forced == NULL || forced[0] == '\0') return best;
    sy_isa wanted;
    if (strcmp(forced, "scalar") == 0) wanted = SY_ISA_SCALAR;
    else if (strcmp(forced, "avx2") == 0) wanted = SY_ISA_AVX2;
    else if (strcmp(forced, "avx2vnni") == 0) wanted = SY_ISA_AVX2_VNNI;
    else if (strcmp(forced, "avx512") == 0) wanted = SY_ISA_AVX512;
    else if (strcmp(forced, "avx512bf16") == 0) wanted = SY_ISA_AVX512BF16;
    else if (strcmp(forced, "amx") == 0) wanted = SY_ISA_AMX;
    else if (strcmp(forced, "neon") == 0) wanted = SY_ISA_NEON;
    else {
        fprintf(stderr,
                "switchyard: SWITCHYARD_KERNEL is '%s', but must be scalar, avx2, avx2vnni, avx512, avx512bf16, amx "
                "or neon; using the best\n",
                forced);
        return best;
    }
    if (!sy_isa_supported(wanted)) {
        fprintf(stderr, "switchyard: SWITCHYARD_KERNEL=%s is not supported by this CPU; using the best\n", forced);
        return best;
    }
    return wanted;
}

/// -1 until chosen; a race only makes two threads compute the same answer.
static _Atomic int active_isa = -1;

sy_isa sy_active_isa(void) {
    int isa = atomic_load_explicit(&active_isa, memory_order_relaxed);
    if (isa < 0) {
        isa = (int)choose_isa();
        atomic_store_explicit(&active_isa, isa, memory_order_relaxed);
    }
    return (sy_isa)isa;
}

/// What a product multiplies: f32 weights, bf16 weights widened exactly, or bf16 weights with x
/// rounded to bf16 (the fast shape; x is then prepared, see `prepare_fast_*`).
typedef enum sy_kind { SY_KIND_F32 = 0, SY_KIND_BF16 = 1, SY_KIND_BF16_FAST = 2, SY_KIND_Q8 = 3, SY_KIND_TASKS = 4 } sy_kind;

/// One product on one thread, on the path `isa`. For SY_KIND_BF16_FAST, `x` is the prepared x (bf16
/// rows for SY_ISA_AVX512BF16, else split f32 rows) with rows of `kp` elements.
#if SY_X86
static int vnni_supported(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}
#endif

/// For SY_KIND_Q8, `x` is the quantized x, `xscale` its block scales, `w` the int8 weights and
/// `wscale` theirs; `kp` is the block count (even).
static void matmul_one(sy_kind kind, sy_isa isa, const void *x, size_t m, size_t k, size_t xs, size_t kp,
                       const void *w, size_t n, size_t ws, float *y, size_t ys, int accumulate,
                       const float *xscale, const float *wscale) {
    if (m == 0 || n == 0) return;
    const uint16_t *wb = (const uint16_t *)w;
    const float *xf = (const float *)x;
    switch (kind) {
    case SY_KIND_Q8:
#if SY_X86
        if (avx512_isa(isa) && vnni_supported()) {
            q8_vnni((const int8_t *)x, xscale, m, (const int8_t *)w, wscale, n, kp, y, ys, accumulate);
            return;
        }
        if (isa == SY_ISA_AVX2_VNNI) {
            q8_avxvnni((const int8_t *)x, xscale, m, (const int8_t *)w, wscale, n, kp, y, ys, accumulate);
            return;
        }
        if (isa != SY_ISA_SCALAR) {
            q8_avx2((const int8_t *)x, xscale, m, (const int8_t *)w, wscale, n, kp, y, ys, accumulate);
            return;
        }
#endif
#if SY_ARM64
        if (isa == SY_ISA_NEON) {
            if (dotprod_supported())
                q8_dotprod((const int8_t *)x, xscale, m, (const int8_t *)w, wscale, n, kp, y, ys, accumulate);
            else
                q8_neon((const int8_t *)x, xscale, m, (const int8_t *)w, wscale, n, kp, y, ys, accumulate);
            return;
        }
#endif
        q8_scalar((const int8_t *)x, xscale, m, (const int8_t *)w, wscale, n, kp, y, ys, accumulate);
        return;
    case SY_KIND_BF16_FAST:
        switch (isa) {
#if SY_X86
        case SY_ISA_AVX512BF16: fast_dot((const uint16_t *)x, m, kp, k, wb, n, ws, y, ys, accumulate); return;
        case SY_ISA_AMX: fast_amx((const uint32_t *)x, m, xs, kp, k, wb, n, ws, y, ys, accumulate); return;
        case SY_ISA_AVX512: fast_avx512(xf, m, kp, k, wb, n, ws, y, ys, accumulate); return;
        case SY_ISA_AVX2:
        case SY_ISA_AVX2_VNNI: fast_avx2(xf, m, kp, k, wb, n, ws, y, ys, accumulate); return;
#endif
#if SY_ARM64
        case SY_ISA_NEON: fast_neon(xf, m, kp, k, wb, n, ws, y, ys, accumulate); return;
#endif
        default: fast_scalar(xf, m, kp, k, wb, n, ws, y, ys, accumulate); return;
        }
    case SY_KIND_BF16:
        switch (isa) {
#if SY_X86
        case SY_ISA_AMX:
        case SY_ISA_AVX512BF16:
        case SY_ISA_AVX512: matmul_bf16_avx512(xf, m, k, xs, wb, n, ws, y, ys, accumulate); return;
        case SY_ISA_AVX2:
        case SY_ISA_AVX2_VNNI: matmul_bf16_avx2(xf, m, k, xs, wb, n, ws, y, ys, accumulate); return;
#endif
#if SY_ARM64
        case SY_ISA_NEON: matmul_neon(xf, m, k, xs, w, 1, n, ws, y, ys, accumulate); return;
#endif
        default: matmul_bf16_scalar(xf, m, k, xs, wb, n, ws, y, ys, accumulate); return;
        }
    case SY_KIND_F32:
    default:
        switch (isa) {
#if SY_X86
        case SY_ISA_AMX:
        case SY_ISA_AVX512BF16:
        case SY_ISA_AVX512: matmul_avx512(xf, m, k, xs, (const float *)w, n, ws, y, ys, accumulate); return;
        case SY_ISA_AVX2:
        case SY_ISA_AVX2_VNNI: matmul_avx2(xf, m, k, xs, (const float *)w, n, ws, y, ys, accumulate); return;
#endif
#if SY_ARM64
        case SY_ISA_NEON: matmul_neon(xf, m, k, xs, w, 0, n, ws, y, ys, accumulate); return;
#endif
        default: matmul_scalar(xf, m, k, xs, (const float *)w, n, ws, y, ys, accumulate); return;
        }
    }
}

// MARK: - Thread pool (splits a product over n only; never over k, so bits never depend on it)
//
// Workers spin (with `pause`, yielding the core often) for about two milliseconds after each product
// before they sleep on a condition variable: the products of a decode step come back to back, a layer
// of a worker's dispatches comes about a millisecond after the last, and waking a sleeping thread
// costs tens of microseconds (more when its virtual CPU has halted). The caller spins the same way
// for the workers that joined its product to finish.

/// A product for the pool: the threads take chunks of `columns` columns (the last may be shorter).
typedef struct sy_job {
    sy_kind kind;
    sy_isa isa;
    const void *x;
    size_t m, k, xs, kp;
    const void *w;
    size_t n, ws;
    float *y;
    size_t ys;
    int accumulate;
    size_t columns;
    const float *xscale, *wscale;
    /// 0, or several products, each on its own rows of x, whose columns are numbered one after the
    /// other (n is their sum). The array is the caller's, alive until the product is closed.
    size_t part_count;
    const sy_grouped_product *parts;
    /// SY_KIND_TASKS: task j of 0 ..< n is task(context, j).
    sy_task task;
    void *context;
    /// SY_KIND_Q8 with `part_count` products: these instead of `parts` (x and xscale hold every row
    /// of the call quantized, kp blocks a row; ws is a q8 row's bytes).
    const sy_grouped_q8_product *q8_parts;
    /// Chunks are whole multiples of `step` columns (at most `columns`, see ``run_chunks``), and up
    /// to `threads` threads take them.
    size_t step, threads;
    /// NULL, or (fast products on SY_ISA_AVX512BF16 with `parts`) x prepared for the AVX-512F kernels as
    /// well, rows `xs` floats apart: the parts of more than SY_FMA_ROWS rows run on those kernels from it.
    const float *x_fma;
} sy_job;

/// On an Intel CPU with AVX-512 bf16, the fast products of more than this many rows run on the AVX-512F
/// kernels instead of `vdpbf16ps` (``sy_matmul_nt_bf16_grouped_isa``).
enum { SY_FMA_ROWS = 7 };

/// Bytes per element of the job's x (prepared bf16 for `vdpbf16ps`, else f32).
static size_t x_element(const sy_job *job) {
    return job->kind == SY_KIND_BF16_FAST && job->isa == SY_ISA_AVX512BF16 ? sizeof(uint16_t) : sizeof(float);
}

/// Where the job's x for a product on rows from `row` starts (the AMX path's x holds a row's words in
/// columns, `xs` words apart, so its rows are one word apart).
static const void *x_rows(const sy_job *job, size_t row) {
    if (job->kind == SY_KIND_BF16_FAST && job->isa == SY_ISA_AMX) return (const uint32_t *)job->x + row;
    return (const char *)job->x + row * job->xs * x_element(job);
}

/// Columns [j0, j1) of the job (of its parts, numbered one after the other).
static void run_columns(const sy_job *job, size_t j0, size_t j1) {
    if (job->kind == SY_KIND_TASKS) {
        for (size_t j = j0; j < j1; j++) job->task(job->context, j);
        return;
    }
    size_t element = job->kind == SY_KIND_F32 ? sizeof(float) : job->kind == SY_KIND_Q8 ? 1 : sizeof(uint16_t);
    if (job->part_count == 0) {
        const void *w = (const char *)job->w + j0 * job->ws * element;
        const float *wscale = job->wscale != NULL ? job->wscale + j0 * job->kp : NULL;
        matmul_one(job->kind, job->isa, job->x, job->m, job->k, job->xs, job->kp, w, j1 - j0, job->ws, job->y + j0,
                   job->ys, job->accumulate, job->xscale, wscale);
        return;
    }
    size_t offset = 0;
    for (size_t s = 0; job->q8_parts != NULL && s < job->part_count && offset < j1; s++) {
        const sy_grouped_q8_product *part = &job->q8_parts[s];
        size_t begin = j0 > offset ? j0 : offset;
        size_t end = j1 < offset + part->n ? j1 : offset + part->n;
        if (begin < end) {
            const int8_t *x = (const int8_t *)job->x + part->row * job->xs;
            matmul_one(job->kind, job->isa, x, part->m, job->k, job->xs, job->kp, part->wq + (begin - offset) * job->ws,
                       end - begin, job->ws, part->y + (begin - offset), part->y_stride, job->accumulate,
                       job->xscale + part->row * job->kp, part->wscales + (begin - offset) * job->kp);
        }
        offset += part->n;
    }
    if (job->q8_parts != NULL) return;
    for (size_t s = 0; s < job->part_count && offset < j1; s++) {
        const sy_grouped_product *part = &job->parts[s];
        size_t begin = j0 > offset ? j0 : offset;
        size_t end = j1 < offset + part->n ? j1 : offset + part->n;
        if (begin < end) {
            const void *x = x_rows(job, part->row);
            sy_isa isa = job->isa;
            if (job->x_fma != NULL && part->m > SY_FMA_ROWS) {
                isa = SY_ISA_AVX512;
                x = job->x_fma + part->row * job->xs;
            }
            const void *w = (const char *)part->w + (begin - offset) * part->w_stride * element;
            matmul_one(job->kind, isa, x, part->m, job->k, job->xs, job->kp, w, end - begin, part->w_stride,
                       part->y + (begin - offset), part->y_stride, job->accumulate, NULL, NULL);
        }
        offset += part->n;
    }
}

/// The column counter of the current product: each participant takes the next chunk of columns
/// (``run_chunks``) until none are left, so a thread that starts late or streams slowly does less of
/// the product instead of making the others wait (the bits never depend on who computes a column).
static _Atomic size_t next_column;

static void run_chunks(const sy_job *job) {
    size_t j0 = atomic_load_explicit(&next_column, memory_order_relaxed);
    while (j0 < job->n) {
        // Whole chunks while more than two of them per thread are left, then chunks of a half of each
        // thread's share of what is left (whole steps, at least one), so that the threads run out of
        // columns within a step's time of each other instead of a chunk's (measured: the caller's wait
        // for the last worker fell from 58-67 ms to 19-22 ms over the 9,429 products of a 128-token
        // Qwen3-MoE-shaped decode on 2 threads).
        size_t share = (job->n - j0) / (2 * job->threads);
        share = (share + job->step - 1) / job->step * job->step;
        size_t size = share >= job->columns ? job->columns : share > job->step ? share : job->step;
        if (!atomic_compare_exchange_weak_explicit(&next_column, &j0, j0 + size, memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        run_columns(job, j0, j0 + size < job->n ? j0 + size : job->n);
        j0 = atomic_load_explicit(&next_column, memory_order_relaxed);
    }
}

/// Spin steps before a waiting thread sleeps (about 2 ms on Zen 4 with the yields; measured with
/// 2 workers on 2 cores, where a short spin left each layer's dispatch to wake a sleeping thread).
#ifndef SY_SPIN_COUNT
#define SY_SPIN_COUNT 100000
#endif

/// One step of a spin: `pause` (`yield` on AArch64), and every 64th step gives the core away
/// (`sched_yield`), so that a spinning thread does not starve the thread it waits for when the cores
/// are oversubscribed.
static inline void cpu_relax(int spin) {
    if ((spin & 63) == 63) {
        sched_yield();
        return;
    }
#if SY_X86
    _mm_pause();
#elif SY_ARM64
    __asm__ volatile("yield");
#endif
}

static struct {
    /// Held by the one caller that owns the workers for one product (others run alone).
    pthread_mutex_t owner;
    /// Guards the condition variables, `sleepers` and `caller_sleeping`.
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    /// Incremented (release) once per dispatched product, after `job` is written.
    _Atomic unsigned long generation;
    /// The current product's admission word: its generation (above SY_STATE_SHIFT), whether it is
    /// open (SY_STATE_OPEN) and how many workers have joined it and not yet left (the low bits). A
    /// worker joins only an open product of the generation it woke for; the caller closes the
    /// product when no columns are left and waits only for the workers that joined, so a worker
    /// that wakes late is never waited for.
    _Atomic unsigned long state;
    /// Threads (the caller included) the current product may use: worker i joins only if i < parts,
    /// so a lowered thread count holds even when more workers were started before.
    _Atomic size_t parts;
    int sleepers;
    int caller_sleeping;
    /// Worker threads started (worker i is thread i of a product, the caller thread 0).
    int started;
    /// The generation each worker was started in, so that it takes the next product as new.
    unsigned long start_generation[SY_MAX_THREADS];
    sy_job job;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, 0, 0, 0, 0, {0}, {0}};

/// The generation after which the workers sleep at once instead of spinning (``sy_rest_threads``).
static _Atomic unsigned long resting_generation = ~0ul;

enum { SY_STATE_SHIFT = 8 };
#define SY_STATE_OPEN 128ul
#define SY_STATE_ACTIVE 127ul

static unsigned long state_tag(unsigned long generation) { return generation << SY_STATE_SHIFT; }

/// Joins the product of `generation` if it is still open; returns whether it did.
static int join_product(unsigned long generation) {
    unsigned long s = atomic_load_explicit(&pool.state, memory_order_acquire);
    for (;;) {
        if ((s & ~(SY_STATE_OPEN | SY_STATE_ACTIVE)) != state_tag(generation) || !(s & SY_STATE_OPEN)) return 0;
        if (atomic_compare_exchange_weak_explicit(&pool.state, &s, s + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return 1;
    }
}

/// The requested thread count, caller included.
static _Atomic int wanted_threads = 1;

static void *worker_main(void *argument) {
    size_t part = (size_t)(uintptr_t)argument;
    pthread_mutex_lock(&pool.lock);
    unsigned long seen = pool.start_generation[part];
    pthread_mutex_unlock(&pool.lock);
    for (;;) {
        unsigned long now = atomic_load_explicit(&pool.generation, memory_order_acquire);
        for (int spin = 0;
             now == seen && spin < SY_SPIN_COUNT &&
             atomic_load_explicit(&resting_generation, memory_order_relaxed) != seen;
             spin++) {
            cpu_relax(spin);
            now = atomic_load_explicit(&pool.generation, memory_order_acquire);
        }
        if (now == seen) {
            pthread_mutex_lock(&pool.lock);
            pool.sleepers++;
            while ((now = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.lock);
        }
        seen = now;
        if (part >= atomic_load_explicit(&pool.parts, memory_order_relaxed) || !join_product(now)) continue;
        sy_job job = pool.job;
        run_chunks(&job);
        unsigned long before = atomic_fetch_sub_explicit(&pool.state, 1, memory_order_acq_rel);
        if ((before & SY_STATE_ACTIVE) == 1 && !(before & SY_STATE_OPEN)) {
            pthread_mutex_lock(&pool.lock);
            if (pool.caller_sleeping) pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

void sy_set_thread_count(int count) {
    if (count < 1) count = 1;
    if (count > SY_MAX_THREADS) count = SY_MAX_THREADS;
    atomic_store_explicit(&wanted_threads, count, memory_order_relaxed);
}

int sy_thread_count(void) { return atomic_load_explicit(&wanted_threads, memory_order_relaxed); }

void sy_rest_threads(void) {
    // A worker that has seen this generation stops spinning; the next product (generation + 1)
    // wakes the sleepers as usual.
    atomic_store_explicit(&resting_generation, atomic_load_explicit(&pool.generation, memory_order_relaxed),
                          memory_order_relaxed);
}

/// Products smaller than this many multiply-adds run on the caller alone (waking workers costs more).
enum { SY_PARALLEL_MIN_WORK = 1 << 15, SY_PARALLEL_COLUMN_STEP = 16 };

/// The most multiply-adds of one chunk (see ``dispatch_job``).
#ifndef SY_CHUNK_MAX_WORK
#define SY_CHUNK_MAX_WORK (1 << 21)
#endif

/// Chunks per thread of one product (see ``run_chunks``).
#ifndef SY_CHUNKS_PER_THREAD
#define SY_CHUNKS_PER_THREAD 8
#endif

static void dispatch_job(sy_job job);

static void matmul_dispatch(sy_kind kind, sy_isa isa, const void *x, size_t m, size_t k, size_t xs, size_t kp,
                            const void *w, size_t n, size_t ws, float *y, size_t ys, int accumulate,
                            const float *xscale, const float *wscale) {
    sy_job job = {kind, isa, x, m, k, xs, kp, w, n, ws, y, ys, accumulate, 0, xscale, wscale, 0, NULL, NULL, NULL, NULL, 0, 0, NULL};
    dispatch_job(job);
}

/// Runs `job` (columns unset) on the pool, or on the caller when it is small or the pool is busy.
static void dispatch_job(sy_job job) {
    size_t m = job.m, n = job.n, k = job.k;
    if (m == 0 || n == 0) return;
    size_t threads = (size_t)sy_thread_count();
    int tasks = job.kind == SY_KIND_TASKS;
    size_t step = tasks ? 1 : SY_PARALLEL_COLUMN_STEP;
    size_t max_parts = (n + step - 1) / step;
    if (threads > max_parts) threads = max_parts;
    if (threads <= 1 || (!tasks && m * n * (k > 0 ? k : 1) < SY_PARALLEL_MIN_WORK) ||
        pthread_mutex_trylock(&pool.owner) != 0) {
        run_columns(&job, 0, n);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    while ((size_t)pool.started + 1 < threads) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        pool.start_generation[pool.started + 1] =
            atomic_load_explicit(&pool.generation, memory_order_relaxed);
        int failed = pthread_create(&thread, &attributes, worker_main, (void *)(uintptr_t)(pool.started + 1));
        pthread_attr_destroy(&attributes);
        if (failed) break;
        pool.started++;
    }
    pthread_mutex_unlock(&pool.lock);
    size_t parts = (size_t)pool.started + 1 < threads ? (size_t)pool.started + 1 : threads;
    // Chunks of about an eighth of a thread's share, in whole steps of 16 columns so that every chunk
    // keeps full tiles (the bits do not depend on it).
    size_t columns = (n + parts * SY_CHUNKS_PER_THREAD - 1) / (parts * SY_CHUNKS_PER_THREAD);
    // At most about SY_CHUNK_MAX_WORK multiply-adds a chunk, so that the threads still finish together
    // when one job holds many products (all the experts of a layer).
    if (!tasks && m * k > 0) {
        size_t most = SY_CHUNK_MAX_WORK / (m * k) / step * step;
        if (columns > most) columns = most > step ? most : step;
    }
    columns = (columns + step - 1) / step * step;
    job.columns = columns;
    job.step = step;
    job.threads = parts;
    pool.job = job;
    atomic_store_explicit(&next_column, 0, memory_order_relaxed);
    atomic_store_explicit(&pool.parts, parts, memory_order_relaxed);
    unsigned long generation = atomic_load_explicit(&pool.generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&pool.state, state_tag(generation) | SY_STATE_OPEN, memory_order_relaxed);
    atomic_store_explicit(&pool.generation, generation, memory_order_release);
    pthread_mutex_lock(&pool.lock);
    if (pool.sleepers > 0) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_chunks(&job);
    // Close the product: no worker joins it from now on; wait for those that did.
    unsigned long left = atomic_fetch_and_explicit(&pool.state, ~SY_STATE_OPEN, memory_order_acq_rel) & SY_STATE_ACTIVE;
    for (int spin = 0; left != 0 && spin < SY_SPIN_COUNT; spin++) {
        cpu_relax(spin);
        left = atomic_load_explicit(&pool.state, memory_order_acquire) & SY_STATE_ACTIVE;
    }
    if (left != 0) {
        pthread_mutex_lock(&pool.lock);
        pool.caller_sleeping = 1;
        while ((atomic_load_explicit(&pool.state, memory_order_acquire) & SY_STATE_ACTIVE) != 0)
            pthread_cond_wait(&pool.done, &pool.lock);
        pool.caller_sleeping = 0;
        pthread_mutex_unlock(&pool.lock);
    }
    pthread_mutex_unlock(&pool.owner);
}

void sy_matmul_nt_chunk_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const float *w, size_t n,
                            size_t w_stride, float *state, int first, int last, float *y, size_t y_stride,
                            int accumulate) {
    if (m == 0 || n == 0) return;
    switch (isa) {
#if SY_X86
    case SY_ISA_AMX:
    case SY_ISA_AVX512BF16:
    case SY_ISA_AVX512:
        chunk_avx512(x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate, state, first, last);
        return;
    case SY_ISA_AVX2:
    case SY_ISA_AVX2_VNNI:
        chunk_avx2(x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate, state, first, last);
        return;
#endif
#if SY_ARM64
    case SY_ISA_NEON: chunk_neon(x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate, state, first, last); return;
#endif
    default: columns_scalar(x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate, state, first, last); return;
    }
}

size_t sy_matmul_nt_tile_columns(sy_isa isa) {
    switch (isa) {
#if SY_X86
    case SY_ISA_AMX:
    case SY_ISA_AVX512BF16:
    case SY_ISA_AVX512: return AVX512_C;
    case SY_ISA_AVX2:
    case SY_ISA_AVX2_VNNI: return AVX2_WIDE_C;
#endif
#if SY_ARM64
    case SY_ISA_NEON: return NEON_C;
#endif
    default: return SCALAR_C;
    }
}

void sy_matmul_nt_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const float *w, size_t n,
                      size_t w_stride, float *y, size_t y_stride, int accumulate) {
    matmul_dispatch(SY_KIND_F32, isa, x, m, k, x_stride, 0, w, n, w_stride, y, y_stride, accumulate, NULL, NULL);
}

void sy_matmul_nt(const float *x, size_t m, size_t k, size_t x_stride, const float *w, size_t n, size_t w_stride,
                  float *y, size_t y_stride, int accumulate) {
    sy_matmul_nt_isa(sy_active_isa(), x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate);
}

void sy_matmul_nt_bf16_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const uint16_t *w,
                           size_t n, size_t w_stride, float *y, size_t y_stride, int accumulate) {
    matmul_dispatch(SY_KIND_BF16, isa, x, m, k, x_stride, 0, w, n, w_stride, y, y_stride, accumulate, NULL, NULL);
}

void sy_matmul_nt_bf16(const float *x, size_t m, size_t k, size_t x_stride, const uint16_t *w, size_t n,
                       size_t w_stride, float *y, size_t y_stride, int accumulate) {
    sy_matmul_nt_bf16_isa(sy_active_isa(), x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate);
}

int sy_matmul_nt_bf16_fast_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const uint16_t *w,
                               size_t n, size_t w_stride, float *y, size_t y_stride, int accumulate) {
    sy_grouped_product one = {0, m, w, n, w_stride, y, y_stride};
    return sy_matmul_nt_bf16_grouped_isa(isa, 1, x, m, k, x_stride, &one, 1, accumulate);
}

int sy_matmul_nt_bf16_fast(const float *x, size_t m, size_t k, size_t x_stride, const uint16_t *w, size_t n,
                           size_t w_stride, float *y, size_t y_stride, int accumulate) {
    return sy_matmul_nt_bf16_fast_isa(sy_active_isa(), x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate);
}

uint16_t sy_round_bf16(float value) { return round_bf16(value); }

/// The columns (`*n`, all products' together) and rows × columns of `count` grouped products of
/// either kind, `size` bytes each (both begin with `row` and `m`; `n` at `n_offset`): -1 for no
/// products or rows outside x's `rows`, else 0.
_Static_assert(offsetof(sy_grouped_product, row) == 0 && offsetof(sy_grouped_product, m) == sizeof(size_t) &&
                   offsetof(sy_grouped_q8_product, row) == 0 && offsetof(sy_grouped_q8_product, m) == sizeof(size_t),
               "grouped products begin with row and m");
static int grouped_totals(const void *products, size_t count, size_t size, size_t n_offset, size_t rows, size_t *n,
                          size_t *row_columns) {
    if (count == 0) return -1;
    *n = 0;
    *row_columns = 0;
    for (size_t s = 0; s < count; s++) {
        const char *product = (const char *)products + s * size;
        size_t row = *(const size_t *)(const void *)product, m = *(const size_t *)(const void *)(product + sizeof(size_t));
        size_t columns = *(const size_t *)(const void *)(product + n_offset);
        if (row > rows || m > rows - row) return -1;
        *n += columns;
        *row_columns += m * columns;
    }
    return 0;
}

#if SY_X86
/// How many of the call's fast products go on the AVX-512F kernels instead of `vdpbf16ps`: those of more
/// than SY_FMA_ROWS rows (the same bits but where `vdpbf16ps` flushes denormal products and sums; see
/// sy_kernels.h), where a zmm FMA runs at twice `vdpbf16ps`'s rate (Intel; on Zen 4 it runs as two halves
/// and `vdpbf16ps` does twice its products, so none there). When only some of them do, x is prepared
/// both ways and each product runs on its own kernel.
///
/// At first the switch took a call only when all its products had more than 16 rows (one prepared x for
/// them all): the attention projections and the LM head at batch 17 and up (batch_step's batch-32 step
/// 87.7-90.1 -> 85.5-87.4 ms, `serve` at batch 32 316-320 -> 331-332 tok/s). Product by product from 8
/// rows, once the AVX-512F kernels took 7-16 rows at k ≤ SY_DOT_KC in 8-row tiles (``fast_avx512``), on
/// the Intel Xeon (Emerald Rapids without AMX, 2 threads, alternating with the kernels before):
/// - `product_rate`, 400 MB of rows from memory (2 rounds): m = 8 138-143 -> 139-156 GFLOP/s at k = 1,024
///   and 126-144 -> 156-181 at 2,816, m = 14 141-143 -> 167-175 and 138-149 -> 152-155; 4-7 rows alike;
/// - `batch_step 2 8 32 fast skewed` (4 rounds): the experts 95.4-106.8 -> 86.8-93.4 ms a step, the step
///   116.3-130.9 -> 107.8-115.9; evenly routed (m = 8, 3 rounds) the experts 91.0-92.0 -> 75.5-76.9;
///   batch 64 (2 rounds) the step 217.7-242.9 -> 186.6-192.3; batch 8 and 16 alike;
/// - `serve` at batch 32 (Benchmarks/serve_decode.py, 96 tokens a request, 3 rounds) 233.6-240.8 ->
///   241.1-254.0 tok/s, batch 1 alike; `generate` the same tokens on both benchmark models.
static size_t fma_products(const sy_grouped_product *products, size_t count) {
    if (cpu_is_amd()) return 0;
    size_t wide = 0;
    for (size_t s = 0; s < count; s++) wide += products[s].m > SY_FMA_ROWS;
    return wide;
}
#endif

int sy_matmul_nt_bf16_grouped_isa(sy_isa isa, int fast, const float *x, size_t rows, size_t k, size_t x_stride,
                                  const sy_grouped_product *products, size_t count, int accumulate) {
    size_t n, row_columns;
    if (grouped_totals(products, count, sizeof *products, offsetof(sy_grouped_product, n), rows, &n, &row_columns) != 0)
        return -1;
    if (rows == 0 || n == 0 || row_columns == 0) return 0;
    int both = 0;  // x prepared for `vdpbf16ps` and for the AVX-512F kernels, each product on its own
#if SY_X86
    if (fast && isa == SY_ISA_AVX512BF16) {
        size_t wide = fma_products(products, count);
        if (wide == count) isa = SY_ISA_AVX512;
        both = wide > 0 && wide < count;
    }
#endif
    // m is the average rows per column here: the pool sizes its chunks and decides to split by it.
    sy_job job = {fast ? SY_KIND_BF16_FAST : SY_KIND_BF16, isa, x, (row_columns + n - 1) / n, k, x_stride, 0, NULL, n,
                  0, NULL, 0, accumulate, 0, NULL, NULL, count, products, NULL, NULL, NULL, 0, 0, NULL};
    if (fast) {
        size_t kp = (k + SY_FAST_STEP - 1) / SY_FAST_STEP * SY_FAST_STEP;
        int dot = isa == SY_ISA_AVX512BF16;
#if SY_X86
        if (isa == SY_ISA_AMX) {
            if (!amx_permitted()) return -1;  // (granted only where the CPU has AMX)
            // The rows rounded as for vdpbf16ps, then their pairs of indices as columns of 32-bit words.
            size_t pitch = rows + 16;
            char *space = prepared_space(rows * kp * sizeof(uint16_t) + kp / 2 * pitch * sizeof(uint32_t) + 128);
            if (space == NULL) return -1;
            uint16_t *xb = (uint16_t *)(void *)space;
            uint32_t *pairs = (uint32_t *)(void *)(space + (rows * kp * sizeof(uint16_t) + 63) / 64 * 64);
            prepare_dot_bf16(x, rows, k, x_stride, xb, kp);
            prepare_amx(xb, rows, kp, pairs, pitch);
            job.x = pairs;
            job.xs = pitch;
            job.kp = kp;
            dispatch_job(job);
            return 0;
        }
#endif
        size_t dot_bytes = (rows * kp * sizeof(uint16_t) + 63) / 64 * 64;
        void *xp = prepared_space(both ? dot_bytes + rows * kp * sizeof(float) + 64
                                       : rows * kp * (dot ? sizeof(uint16_t) : sizeof(float)) + 64);
        if (xp == NULL) return -1;
        if (dot) {
#if SY_X86
            prepare_dot_bf16(x, rows, k, x_stride, (uint16_t *)xp, kp);
            if (both) {
                float *xf = (float *)(void *)((char *)xp + dot_bytes);
                prepare_fast_f32_avx2(x, rows, k, x_stride, xf, kp);
                job.x_fma = xf;
            }
#endif
        } else {
#if SY_X86
            if (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI || (isa == SY_ISA_AVX512 && __builtin_cpu_supports("avx2"))) {
                prepare_fast_f32_avx2(x, rows, k, x_stride, (float *)xp, kp);
            } else
#endif
#if SY_ARM64
            if (isa == SY_ISA_NEON) {
                prepare_fast_f32_neon(x, rows, k, x_stride, (float *)xp, kp);
            } else
#endif
            prepare_fast_f32(x, rows, k, x_stride, (float *)xp, kp);
        }
        job.x = xp;
        job.xs = kp;
        job.kp = kp;
    }
    dispatch_job(job);
    return 0;
}

// MARK: - The amx path on packed weights
//
// Hand-written: no listed library has it. `fast_amx` loads its weights as a tile's A operand, 16 weight rows
// ws apart, so each tile load walks 16 streams; here the weights are packed once (at load) into
// `tdpbf16ps`'s B layout, one contiguous KiB per 16 rows (a group) and block of 32 indices: line j holds
// indices 2j and 2j + 1 of each of the 16 rows. x is then the A operand, as ``prepare_dot_bf16`` rounds it.
// Each output sees the operations it sees in `fast_amx` (the products commute), so the bits are the `amx`
// path's. On the Intel Xeon (Emerald Rapids, 2 threads, from memory, 1,024 × 2,816 matrices,
// Benchmarks/kernels/amx_packed.c) the weights were read at m = 1 at 36-38.6 GB/s against 32-34 for
// `fast_amx` and 37.5-39.9 for the avx512bf16 path, at m = 8 at about 1.3 times the avx512bf16 path's rate.
// (A copy of the arithmetic on vector registers at m = 1, the 16 rows of a group in the lanes and no
// transposes, was bitwise equal but read 5-10% more slowly than these tiles.)

size_t sy_amx_packed_count(size_t n, size_t k) {
    return (n + 15) / 16 * ((k + SY_FAST_STEP - 1) / SY_FAST_STEP) * 512;
}

void sy_amx_pack(const uint16_t *w, size_t n, size_t k, size_t w_stride, uint16_t *packed) {
    size_t blocks = (k + SY_FAST_STEP - 1) / SY_FAST_STEP, whole = k / 2;
    memset(packed, 0, sy_amx_packed_count(n, k) * sizeof(uint16_t));
    // Row by row (each read once, in order), a pair of indices at a time.
    for (size_t row = 0; row < n; row++) {
        const uint16_t *source = w + row * w_stride;
        uint16_t *group = packed + row / 16 * blocks * 512 + 2 * (row % 16);
        for (size_t q = 0; q < whole; q++) memcpy(group + (q / 16) * 512 + (q % 16) * 32, source + 2 * q, 2 * sizeof(uint16_t));
        if (k % 2) group[(whole / 16) * 512 + (whole % 16) * 32] = source[k - 1];
    }
}

#if SY_X86
/// Groups of 16 weight rows a task of the packed product takes.
enum { SY_AMX_PACKED_TASK_GROUPS = 4 };

typedef struct amx_packed_call {
    const sy_grouped_product *products;
    const size_t *first_task;  // [count + 1]: the tasks of product s are [first_task[s], first_task[s + 1])
    size_t count, kp;
    const uint16_t *xb;  // the call's rows rounded, kp apart, with 16 zero rows after them
    int accumulate;
} amx_packed_call;

/// y's element (+)= value, as ``amx_store`` stores.
static inline void amx_packed_put(float *target, float value, int accumulate) {
    *target = accumulate ? *target + value : value;
}

/// Accumulator tile `out` (x rows [i0, i0 + rows) of the product, weight rows from 16 g) into y.
static void amx_packed_store(const float out[16][16], const sy_grouped_product *p, size_t i0, size_t rows, size_t g,
                             int accumulate) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < 16 && g * 16 + c < p->n; c++)
            amx_packed_put(p->y + (i0 + r) * p->y_stride + g * 16 + c, out[r][c], accumulate);
}

/// The tiles of `groups` consecutive groups (`group` elements apart) 4 KiB ahead of `tile` into L2, each
/// group's stream its 16 lines. On the Intel Xeon, 1,024 × 2,816 matrices from memory: m = 1 38.3-38.6
/// GB/s against 37.0-38.2 without (avx512bf16 37.5-39.4 in the same runs); m = 32 27.1-28.2 against 24.4-24.8.
SY_AMX_FN void amx_packed_prefetch(const uint16_t *tile, size_t group, size_t groups) {
    for (size_t t = 0; t < groups; t++)
        for (int line = 0; line < 16; line++) _mm_prefetch((const char *)(tile + t * group + 2048 + line * 32), _MM_HINT_T1);
}

/// Groups [g0, g1) of product `p` on tiles: while more than 16 x rows remain, 32 of them against 2 groups
/// (2 × 2 accumulators, each weight tile serving 32 x rows); the last 16 or fewer against up to 4 groups.
SY_AMX_FN void amx_packed_tiles(const sy_grouped_product *p, const uint16_t *xb, size_t kp, size_t g0, size_t g1,
                                int accumulate) {
    amx_configure();
    size_t blocks = kp / SY_FAST_STEP, xs = kp * sizeof(uint16_t), group = blocks * 512;
    const uint16_t *w = p->w;
    float out[4][16][16] __attribute__((aligned(64)));
    size_t i0 = 0;
    for (; i0 + 16 < p->m; i0 += 32) {
        size_t second = p->m - i0 - 16 < 16 ? p->m - i0 - 16 : 16;
        for (size_t g = g0; g < g1; g += 2) {
            int pair = g + 1 < g1;
            amx_zero_accumulators();
            for (size_t b = 0; b < blocks; b++) {
                const uint16_t *tile = w + g * group + b * 512;
                amx_packed_prefetch(tile, group, pair ? 2 : 1);
                _tile_loadd(6, xb + i0 * kp + b * SY_FAST_STEP, xs);
                _tile_loadd(7, xb + (i0 + 16) * kp + b * SY_FAST_STEP, xs);
                _tile_loadd(4, tile, 64);
                _tile_dpbf16ps(0, 6, 4);
                _tile_dpbf16ps(1, 7, 4);
                if (pair) {
                    _tile_loadd(5, tile + group, 64);
                    _tile_dpbf16ps(2, 6, 5);
                    _tile_dpbf16ps(3, 7, 5);
                }
            }
            amx_store_accumulators(out);
            amx_packed_store(out[0], p, i0, 16, g, accumulate);
            amx_packed_store(out[1], p, i0 + 16, second, g, accumulate);
            if (pair) {
                amx_packed_store(out[2], p, i0, 16, g + 1, accumulate);
                amx_packed_store(out[3], p, i0 + 16, second, g + 1, accumulate);
            }
        }
    }
    if (i0 >= p->m) return;
    size_t rows = p->m - i0;
    for (size_t g = g0; g < g1; g += 4) {
        size_t tiles = g1 - g < 4 ? g1 - g : 4;
        amx_zero_accumulators();
        for (size_t b = 0; b < blocks; b++) {
            const uint16_t *tile = w + g * group + b * 512;
            amx_packed_prefetch(tile, group, tiles);
            _tile_loadd(6, xb + i0 * kp + b * SY_FAST_STEP, xs);
            _tile_loadd(4, tile, 64);
            _tile_dpbf16ps(0, 6, 4);
            if (tiles > 1) {
                _tile_loadd(5, tile + group, 64);
                _tile_dpbf16ps(1, 6, 5);
            }
            if (tiles > 2) {
                _tile_loadd(4, tile + 2 * group, 64);
                _tile_dpbf16ps(2, 6, 4);
            }
            if (tiles > 3) {
                _tile_loadd(5, tile + 3 * group, 64);
                _tile_dpbf16ps(3, 6, 5);
            }
        }
        amx_store_accumulators(out);
        for (size_t t = 0; t < tiles; t++) amx_packed_store(out[t], p, i0, rows, g + t, accumulate);
    }
}

/// Task `index` of a packed call: up to SY_AMX_PACKED_TASK_GROUPS groups of one product.
static void amx_packed_task(void *context, size_t index) {
    const amx_packed_call *call = context;
    size_t low = 0, high = call->count;  // the product whose tasks hold `index`
    while (high - low > 1) {
        size_t middle = (low + high) / 2;
        if (call->first_task[middle] <= index) low = middle;
        else high = middle;
    }
    const sy_grouped_product *p = &call->products[low];
    size_t groups = (p->n + 15) / 16, g0 = (index - call->first_task[low]) * SY_AMX_PACKED_TASK_GROUPS;
    size_t g1 = g0 + SY_AMX_PACKED_TASK_GROUPS < groups ? g0 + SY_AMX_PACKED_TASK_GROUPS : groups;
    const uint16_t *xb = call->xb + p->row * call->kp;
    amx_packed_tiles(p, xb, call->kp, g0, g1, call->accumulate);
}
#endif

int sy_matmul_amx_packed_grouped(const float *x, size_t rows, size_t k, size_t x_stride,
                                 const sy_grouped_product *products, size_t count, int accumulate) {
#if SY_X86
    size_t n, row_columns;
    if (grouped_totals(products, count, sizeof *products, offsetof(sy_grouped_product, n), rows, &n, &row_columns) != 0)
        return -1;
    if (!sy_isa_supported(SY_ISA_AMX)) return -1;
    if (rows == 0 || n == 0 || row_columns == 0) return 0;
    size_t kp = (k + SY_FAST_STEP - 1) / SY_FAST_STEP * SY_FAST_STEP;
    // x rounded as the amx path rounds it, then 16 zero rows (a tile of x may start at any row), then
    // where each product's tasks start.
    size_t x_bytes = (rows + 16) * kp * sizeof(uint16_t);
    x_bytes = (x_bytes + 63) / 64 * 64;
    char *space = prepared_space(x_bytes + (count + 1) * sizeof(size_t) + 64);
    if (space == NULL) return -1;
    uint16_t *xb = (uint16_t *)(void *)space;
    prepare_dot_bf16(x, rows, k, x_stride, xb, kp);
    memset(xb + rows * kp, 0, 16 * kp * sizeof(uint16_t));
    size_t *first_task = (size_t *)(void *)(space + x_bytes);
    first_task[0] = 0;
    for (size_t s = 0; s < count; s++) {
        size_t groups = products[s].m == 0 ? 0 : (products[s].n + 15) / 16;
        first_task[s + 1] = first_task[s] + (groups + SY_AMX_PACKED_TASK_GROUPS - 1) / SY_AMX_PACKED_TASK_GROUPS;
    }
    amx_packed_call call = {products, first_task, count, kp, xb, accumulate};
    sy_parallel_for(first_task[count], amx_packed_task, &call);
    return 0;
#else
    (void)x, (void)rows, (void)k, (void)x_stride, (void)products, (void)count, (void)accumulate;
    return -1;
#endif
}

int sy_matmul_nt_q8_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const int8_t *wq,
                        const float *wscales, size_t n, float *y, size_t y_stride, int accumulate) {
    if (m == 0 || n == 0) return 0;
    size_t blocks = sy_q8_block_count(k), row = blocks * SY_Q8_BLOCK;
    char *space = prepared_space(m * row + m * blocks * sizeof(float) + 64);
    if (space == NULL) return -1;
    float *xd = (float *)(void *)space;
    int8_t *xq = (int8_t *)(space + m * blocks * sizeof(float));
    for (size_t i = 0; i < m; i++) quantize_row_q8_isa(isa, x + i * x_stride, k, blocks, xq + i * row, xd + i * blocks);
    matmul_dispatch(SY_KIND_Q8, isa, xq, m, k, row, blocks, wq, n, row, y, y_stride, accumulate, xd, wscales);
    return 0;
}

int sy_matmul_nt_q8_grouped_isa(sy_isa isa, const float *x, size_t rows, size_t k, size_t x_stride,
                                const sy_grouped_q8_product *products, size_t count, int accumulate) {
    size_t n, row_columns;
    if (grouped_totals(products, count, sizeof *products, offsetof(sy_grouped_q8_product, n), rows, &n, &row_columns) != 0)
        return -1;
    if (rows == 0 || n == 0 || row_columns == 0) return 0;
    // Every row quantized once, as sy_matmul_nt_q8_isa quantizes each product's rows (row by row, so
    // the same values whichever rows a call holds).
    size_t blocks = sy_q8_block_count(k), row = blocks * SY_Q8_BLOCK;
    char *space = prepared_space(rows * row + rows * blocks * sizeof(float) + 64);
    if (space == NULL) return -1;
    float *xd = (float *)(void *)space;
    int8_t *xq = (int8_t *)(space + rows * blocks * sizeof(float));
    for (size_t i = 0; i < rows; i++) quantize_row_q8_isa(isa, x + i * x_stride, k, blocks, xq + i * row, xd + i * blocks);
    // m is the average rows per column here: the pool sizes its chunks and decides to split by it.
    sy_job job = {SY_KIND_Q8, isa, xq, (row_columns + n - 1) / n, k, row, blocks, NULL, n, row, NULL, 0, accumulate,
                  0, xd, NULL, count, NULL, NULL, NULL, products, 0, 0, NULL};
    dispatch_job(job);
    return 0;
}

int sy_matmul_nt_q8(const float *x, size_t m, size_t k, size_t x_stride, const int8_t *wq, const float *wscales,
                    size_t n, float *y, size_t y_stride, int accumulate) {
    return sy_matmul_nt_q8_isa(sy_active_isa(), x, m, k, x_stride, wq, wscales, n, y, y_stride, accumulate);
}

void sy_parallel_for(size_t count, sy_task task, void *context) {
    if (count == 0) return;
    sy_job job = {SY_KIND_TASKS, SY_ISA_SCALAR, NULL, 1, 0, 0, 0, NULL, count, 0, NULL, 0, 0, 0, NULL, NULL, 0,
                  NULL, task, context, NULL, 0, 0, NULL};
    dispatch_job(job);
}

static void weighted_sum_on(sy_isa isa, const float *p, size_t count, const void *v, int bf16, size_t v_stride,
                            size_t width, float *out, int accumulate) {
    switch (isa) {
#if SY_X86
    case SY_ISA_AMX:
    case SY_ISA_AVX512BF16:
    case SY_ISA_AVX512: weighted_sum_avx512(p, count, v, bf16, v_stride, width, out, accumulate); return;
    case SY_ISA_AVX2:
    case SY_ISA_AVX2_VNNI: weighted_sum_avx2(p, count, v, bf16, v_stride, width, out, accumulate); return;
#endif
#if SY_ARM64
    case SY_ISA_NEON: weighted_sum_neon(p, count, v, bf16, v_stride, width, out, accumulate); return;
#endif
    default: weighted_sum_scalar(p, count, v, bf16, v_stride, width, out, accumulate); return;
    }
}

/// ``weighted_sum_on`` for `heads` heads sharing the values: on AVX-512 and AVX2 the heads of a few at a
/// time read each value row once; elsewhere one head after another. The bits are those of one call
/// per head.
static void weighted_sum_heads_on(sy_isa isa, const float *p, size_t p_stride, size_t heads, size_t count,
                                  const void *v, int bf16, size_t v_stride, size_t width, float *out, size_t out_stride,
                                  int accumulate) {
    switch (isa) {
#if SY_X86
    case SY_ISA_AMX:
    case SY_ISA_AVX512BF16:
    case SY_ISA_AVX512:
        weighted_sum_heads_avx512(p, p_stride, heads, count, v, bf16, v_stride, width, out, out_stride, accumulate);
        return;
    case SY_ISA_AVX2:
    case SY_ISA_AVX2_VNNI:
        weighted_sum_heads_avx2(p, p_stride, heads, count, v, bf16, v_stride, width, out, out_stride, accumulate);
        return;
#endif
    default:
        for (size_t h = 0; h < heads; h++)
            weighted_sum_on(isa, p + h * p_stride, count, v, bf16, v_stride, width, out + h * out_stride, accumulate);
        return;
    }
}

void sy_weighted_sum_heads_isa(sy_isa isa, const float *p, size_t p_stride, size_t heads, size_t count,
                               const float *v, size_t v_stride, size_t width, float *out, size_t out_stride,
                               int accumulate) {
    weighted_sum_heads_on(isa, p, p_stride, heads, count, v, 0, v_stride, width, out, out_stride, accumulate);
}

void sy_weighted_sum_heads_bf16_isa(sy_isa isa, const float *p, size_t p_stride, size_t heads, size_t count,
                                    const uint16_t *v, size_t v_stride, size_t width, float *out, size_t out_stride,
                                    int accumulate) {
    weighted_sum_heads_on(isa, p, p_stride, heads, count, v, 1, v_stride, width, out, out_stride, accumulate);
}

void sy_weighted_sum_isa(sy_isa isa, const float *p, size_t count, const float *v, size_t v_stride, size_t width,
                         float *out) {
    weighted_sum_on(isa, p, count, v, 0, v_stride, width, out, 0);
}

void sy_weighted_sum_accumulate_isa(sy_isa isa, const float *p, size_t count, const float *v, size_t v_stride,
                                    size_t width, float *out) {
    weighted_sum_on(isa, p, count, v, 0, v_stride, width, out, 1);
}

void sy_weighted_sum_bf16_isa(sy_isa isa, const float *p, size_t count, const uint16_t *v, size_t v_stride,
                              size_t width, float *out, int accumulate) {
    weighted_sum_on(isa, p, count, v, 1, v_stride, width, out, accumulate);
}

void sy_weighted_sum(const float *p, size_t count, const float *v, size_t v_stride, size_t width, float *out) {
    sy_weighted_sum_isa(sy_active_isa(), p, count, v, v_stride, width, out);
}

void sy_prefetch_rows(const void *base, size_t rows, size_t stride, size_t bytes) {
    for (size_t r = 0; r < rows; r++) {
        const char *row = (const char *)base + r * stride;
        // Every cache line the row's bytes touch, the first one from its start.
        for (size_t offset = 0; offset < bytes + ((uintptr_t)row & 63); offset += 64)
            __builtin_prefetch(row - ((uintptr_t)row & 63) + offset, 0, 3);
    }
}

void sy_keep_freed_memory_in_heap(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}

// MARK: - log Σ exp (log-probabilities)
//
// exp(t) for t ≤ 0 (t = x - max): t is clamped to -87 (exp(-87) ≈ 1.6e-38, still normal), split as
// t = n·ln 2 + r with n = nearest(t·log2 e) and r taken off in two parts, exp(r) by the Cephes expf
// polynomial, then scaled by 2ⁿ through the exponent bits. Every step is one f32 operation or FMA, so
// the scalar, AVX2, AVX-512 and NEON paths give the same bits. The terms are summed in f64, term j into lane
// j mod 16, and the lanes added 0 ... 15 at the end.

enum { SY_LSE_LANES = 16 };
static const float lse_log2e = 1.44269504088896341f, lse_ln2_hi = 0.693359375f, lse_ln2_lo = -2.12194440e-4f;
static const float lse_p[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

/// exp(t) for t ≤ 0 (NaN kept), the steps of the header above.
static float lse_exp_scalar(float t) {
    if (t != t) return t;
    if (t < -87.0f) t = -87.0f;
    float n = nearbyintf(t * lse_log2e);
    float r = fmaf(-n, lse_ln2_hi, t);
    r = fmaf(-n, lse_ln2_lo, r);
    float p = lse_p[0];
    for (int i = 1; i < 6; i++) p = fmaf(p, r, lse_p[i]);
    float e = fmaf(p, r * r, r) + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

static double lse_lanes_total(const double lanes[SY_LSE_LANES]) {
    double total = 0;
    for (int l = 0; l < SY_LSE_LANES; l++) total += lanes[l];
    return total;
}

static double sum_exp_scalar(const float *x, size_t n, float maximum) {
    double lanes[SY_LSE_LANES] = {0};
    for (size_t j = 0; j < n; j++) lanes[j % SY_LSE_LANES] += (double)lse_exp_scalar(x[j] - maximum);
    return lse_lanes_total(lanes);
}

#if SY_X86
/// ``lse_exp_scalar`` on 16 lanes: the same operations, so the same bits.
SY_AVX512 __m512 lse_exp_avx512(__m512 t) {
    t = _mm512_max_ps(_mm512_set1_ps(-87.0f), t);  // NaN stays NaN (the second operand is taken)
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(lse_log2e)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(lse_ln2_hi), t);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(lse_ln2_lo), r);
    __m512 p = _mm512_set1_ps(lse_p[0]);
    for (int i = 1; i < 6; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(lse_p[i]));
    __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(e, _mm512_castsi512_ps(bits));
}

SY_AVX512_FN double sum_exp_avx512(const float *x, size_t n, float maximum) {
    __m512d low = _mm512_setzero_pd(), high = _mm512_setzero_pd();
    const __m512 m = _mm512_set1_ps(maximum);
    for (size_t j = 0; j < n; j += SY_LSE_LANES) {
        __mmask16 mask = n - j >= SY_LSE_LANES ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1u);
        __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + j), m);
        __m512 e = _mm512_maskz_mov_ps(mask, lse_exp_avx512(t));
        low = _mm512_add_pd(low, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        high = _mm512_add_pd(high, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    double lanes[SY_LSE_LANES];
    _mm512_storeu_pd(lanes, low);
    _mm512_storeu_pd(lanes + 8, high);
    return lse_lanes_total(lanes);
}

/// ``lse_exp_scalar`` on 8 lanes: the same operations (`vroundps` to nearest is nearbyintf's rounding,
/// `vfnmadd` is fmaf(-n, c, t)), so the same bits.
SY_AVX2 __m256 lse_exp_avx2(__m256 t) {
    t = _mm256_max_ps(_mm256_set1_ps(-87.0f), t);  // NaN stays NaN (the second operand is taken)
    __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(lse_log2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(lse_ln2_hi), t);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(lse_ln2_lo), r);
    __m256 p = _mm256_set1_ps(lse_p[0]);
    for (int i = 1; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(lse_p[i]));
    __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

/// ``sum_exp_scalar``: whole blocks of 16 terms in 16 f64 lanes (four __m256d), the rest on the same
/// lanes by the scalar loop.
SY_AVX2_FN double sum_exp_avx2(const float *x, size_t n, float maximum) {
    __m256d quads[SY_LSE_LANES / 4];
    for (int q = 0; q < SY_LSE_LANES / 4; q++) quads[q] = _mm256_setzero_pd();
    const __m256 m = _mm256_set1_ps(maximum);
    size_t j = 0;
    for (; j + SY_LSE_LANES <= n; j += SY_LSE_LANES)
        for (int h = 0; h < 2; h++) {
            __m256 e = lse_exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8 * h), m));
            quads[2 * h] = _mm256_add_pd(quads[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            quads[2 * h + 1] = _mm256_add_pd(quads[2 * h + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
    double lanes[SY_LSE_LANES];
    for (int q = 0; q < SY_LSE_LANES / 4; q++) _mm256_storeu_pd(lanes + 4 * q, quads[q]);
    for (; j < n; j++) lanes[j % SY_LSE_LANES] += (double)lse_exp_scalar(x[j] - maximum);
    return lse_lanes_total(lanes);
}
#endif

#if SY_ARM64
/// ``lse_exp_scalar`` on 4 lanes: the same operations (`frintn` is nearbyintf's round to nearest
/// even, `fmls` is fmaf(-n, c, t)), NaN lanes returned as they came; so the same bits.
SY_NEON float32x4_t lse_exp_neon(float32x4_t t) {
    float32x4_t clamped = vmaxq_f32(t, vdupq_n_f32(-87.0f));
    float32x4_t n = vrndnq_f32(vmulq_f32(clamped, vdupq_n_f32(lse_log2e)));
    float32x4_t r = vfmsq_f32(clamped, n, vdupq_n_f32(lse_ln2_hi));
    r = vfmsq_f32(r, n, vdupq_n_f32(lse_ln2_lo));
    float32x4_t p = vdupq_n_f32(lse_p[0]);
    for (int i = 1; i < 6; i++) p = vfmaq_f32(vdupq_n_f32(lse_p[i]), p, r);
    float32x4_t e = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
    int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    float32x4_t result = vmulq_f32(e, vreinterpretq_f32_s32(bits));
    return vbslq_f32(vceqq_f32(t, t), result, t);
}

/// ``sum_exp_scalar``: whole blocks of 16 terms in 16 f64 lanes (eight float64x2_t), the rest on
/// the same lanes by the scalar loop.
static double sum_exp_neon(const float *x, size_t n, float maximum) {
    float64x2_t pairs[SY_LSE_LANES / 2];
    for (int i = 0; i < SY_LSE_LANES / 2; i++) pairs[i] = vdupq_n_f64(0.0);
    const float32x4_t m = vdupq_n_f32(maximum);
    size_t j = 0;
    for (; j + SY_LSE_LANES <= n; j += SY_LSE_LANES)
        for (int q = 0; q < 4; q++) {
            float32x4_t e = lse_exp_neon(vsubq_f32(vld1q_f32(x + j + 4 * q), m));
            pairs[2 * q] = vaddq_f64(pairs[2 * q], vcvt_f64_f32(vget_low_f32(e)));
            pairs[2 * q + 1] = vaddq_f64(pairs[2 * q + 1], vcvt_high_f64_f32(e));
        }
    double lanes[SY_LSE_LANES];
    for (int i = 0; i < SY_LSE_LANES / 2; i++) vst1q_f64(lanes + 2 * i, pairs[i]);
    for (; j < n; j++) lanes[j % SY_LSE_LANES] += (double)lse_exp_scalar(x[j] - maximum);
    return lse_lanes_total(lanes);
}
#endif

// MARK: - argmax
//
// Two passes: the largest value (a max that passes NaNs over: `maxps` returns its second operand,
// the running maximum, when the new value is NaN), then the first index above the float just below
// it, which is the first index holding it (±0 alike). The scalar loop keeps the first strictly
// larger value, which is the same index.

#if SY_X86
SY_AVX512_FN float max_avx512(const float *x, size_t n) {
    const __m512 lowest = _mm512_set1_ps(-INFINITY);
    __m512 m0 = lowest, m1 = lowest, m2 = lowest, m3 = lowest;
    size_t j = 0;
    for (; j + 64 <= n; j += 64) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(x + j), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(x + j + 16), m1);
        m2 = _mm512_max_ps(_mm512_loadu_ps(x + j + 32), m2);
        m3 = _mm512_max_ps(_mm512_loadu_ps(x + j + 48), m3);
    }
    for (; j < n; j += 16) {
        __mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        m0 = _mm512_max_ps(_mm512_mask_loadu_ps(lowest, mask, x + j), m0);
    }
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

SY_AVX2_FN float max_avx2(const float *x, size_t n) {
    const __m256 lowest = _mm256_set1_ps(-INFINITY);
    __m256 m0 = lowest, m1 = lowest, m2 = lowest, m3 = lowest;
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + j), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + j + 8), m1);
        m2 = _mm256_max_ps(_mm256_loadu_ps(x + j + 16), m2);
        m3 = _mm256_max_ps(_mm256_loadu_ps(x + j + 24), m3);
    }
    __m256 m = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    float lanes[8];
    _mm256_storeu_ps(lanes, m);
    float maximum = -INFINITY;
    for (int l = 0; l < 8; l++) maximum = lanes[l] > maximum ? lanes[l] : maximum;
    for (size_t t = j; t < n; t++) maximum = x[t] > maximum ? x[t] : maximum;
    return maximum;
}

SY_AVX512_FN size_t first_above_avx512(const float *x, size_t n, float threshold) {
    const __m512 limit = _mm512_set1_ps(threshold);
    for (size_t j = 0; j < n; j += 16) {
        __mmask16 mask = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
        __mmask16 above = _mm512_mask_cmp_ps_mask(mask, _mm512_maskz_loadu_ps(mask, x + j), limit, _CMP_GT_OQ);
        if (above) return j + (size_t)__builtin_ctz(above);
    }
    return n;
}

SY_AVX2_FN size_t first_above_avx2(const float *x, size_t n, float threshold) {
    const __m256 limit = _mm256_set1_ps(threshold);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        int above = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + j), limit, _CMP_GT_OQ));
        if (above) return j + (size_t)__builtin_ctz((unsigned)above);
    }
    for (; j < n; j++)
        if (x[j] > threshold) return j;
    return n;
}
#endif

size_t sy_first_above_isa(sy_isa isa, const float *x, size_t n, float threshold) {
#if SY_X86
    if (avx512_isa(isa)) return first_above_avx512(x, n, threshold);
    if (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI) return first_above_avx2(x, n, threshold);
#endif
    (void)isa;
    for (size_t j = 0; j < n; j++)
        if (x[j] > threshold) return j;
    return n;
}

size_t sy_first_above(const float *x, size_t n, float threshold) {
    return sy_first_above_isa(sy_active_isa(), x, n, threshold);
}

/// The largest value that is not NaN (-infinity when there is none), the maximum the softmax and
/// log Σ exp subtract. A vector path may return -0 where the scalar loop returns +0 or the other way
/// round; subtracting either zero gives the same values (x - (±0) is x, and ±0 - (±0) is +0 or -0,
/// whose exp is 1).
static float max_value(sy_isa isa, const float *x, size_t n) {
#if SY_X86
    if (avx512_isa(isa)) return max_avx512(x, n);
    if (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI) return max_avx2(x, n);
#endif
    (void)isa;
    float maximum = -INFINITY;
    for (size_t j = 0; j < n; j++)
        if (x[j] > maximum) maximum = x[j];
    return maximum;
}

size_t sy_argmax_isa(sy_isa isa, const float *x, size_t n) {
    // x[0] NaN: the scalar loop never finds a larger value.
    if (n == 0 || x[0] != x[0]) return 0;
    float maximum = max_value(isa, x, n);
    // Every value -infinity or NaN (x[0] then -infinity): nothing is larger than x[0].
    if (maximum == -INFINITY) return 0;
    return sy_first_above_isa(isa, x, n, nextafterf(maximum, -INFINITY));
}

size_t sy_argmax(const float *x, size_t n) { return sy_argmax_isa(sy_active_isa(), x, n); }

double sy_log_sum_exp_isa(sy_isa isa, const float *x, size_t n) {
    if (n == 0) return -INFINITY;
    // x[0] NaN: the maximum is NaN (the normaliser of a row holding NaN), as the loop starting from it gave.
    float maximum = x[0] != x[0] ? x[0] : max_value(isa, x, n);
    if (!(maximum > -INFINITY) || maximum == INFINITY) return (double)maximum;  // -inf, NaN or +inf
    double sum;
#if SY_X86
    if (avx512_isa(isa)) sum = sum_exp_avx512(x, n, maximum);
    else if (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI) sum = sum_exp_avx2(x, n, maximum);
    else sum = sum_exp_scalar(x, n, maximum);
#elif SY_ARM64
    if (isa == SY_ISA_NEON) sum = sum_exp_neon(x, n, maximum);
    else sum = sum_exp_scalar(x, n, maximum);
#else
    (void)isa;
    sum = sum_exp_scalar(x, n, maximum);
#endif
    return (double)maximum + log(sum);
}

double sy_log_sum_exp(const float *x, size_t n) { return sy_log_sum_exp_isa(sy_active_isa(), x, n); }

// MARK: - SwiGLU
//
// silu(g) · u with silu(g) = g · sigmoid(g) computed from e = exp(-|g|) (the exp above, whose
// argument is then never positive): g / (1 + e) for g ≥ 0, (g · e) / (1 + e) for g < 0. Each step
// is one correctly rounded f32 operation, so the scalar, AVX2, AVX-512 and NEON paths give the same bits.

float sy_silu(float g) {
    float e = lse_exp_scalar(-fabsf(g));
    float numerator = g < 0.0f ? g * e : g;
    return numerator / (1.0f + e);
}

#if SY_X86
SY_AVX512_FN void swiglu_avx512(float *gate, const float *up, size_t count) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
    for (size_t j = 0; j < count; j += 16) {
        __mmask16 mask = count - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (count - j)) - 1u);
        __m512 g = _mm512_maskz_loadu_ps(mask, gate + j), u = _mm512_maskz_loadu_ps(mask, up + j);
        __m512 negative_magnitude = _mm512_castsi512_ps(
            _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(g), magnitude), _mm512_set1_epi32((int)0x80000000u)));
        __m512 e = lse_exp_avx512(negative_magnitude);
        __mmask16 below = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_LT_OQ);
        __m512 numerator = _mm512_mask_mul_ps(g, below, g, e);
        __m512 s = _mm512_mul_ps(_mm512_div_ps(numerator, _mm512_add_ps(one, e)), u);
        _mm512_mask_storeu_ps(gate + j, mask, s);
    }
}

/// ``sy_silu``(g) · u on 8 lanes at a time (the same operations), the last few by the scalar loop.
SY_AVX2_FN void swiglu_avx2(float *gate, const float *up, size_t count) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF), sign = _mm256_set1_epi32((int)0x80000000u);
    size_t j = 0;
    for (; j + 8 <= count; j += 8) {
        __m256 g = _mm256_loadu_ps(gate + j), u = _mm256_loadu_ps(up + j);
        __m256 negative_magnitude =
            _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(g), magnitude), sign));
        __m256 e = lse_exp_avx2(negative_magnitude);
        __m256 below = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ);
        __m256 numerator = _mm256_blendv_ps(g, _mm256_mul_ps(g, e), below);
        _mm256_storeu_ps(gate + j, _mm256_mul_ps(_mm256_div_ps(numerator, _mm256_add_ps(one, e)), u));
    }
    for (; j < count; j++) gate[j] = sy_silu(gate[j]) * up[j];
}
#endif

#if SY_ARM64
/// ``sy_silu``(g) · u on 4 lanes at a time (the same operations), the last few by the scalar loop.
static void swiglu_neon(float *gate, const float *up, size_t count) {
    const float32x4_t one = vdupq_n_f32(1.0f), zero = vdupq_n_f32(0.0f);
    size_t j = 0;
    for (; j + 4 <= count; j += 4) {
        float32x4_t g = vld1q_f32(gate + j), u = vld1q_f32(up + j);
        float32x4_t e = lse_exp_neon(vnegq_f32(vabsq_f32(g)));
        float32x4_t numerator = vbslq_f32(vcltq_f32(g, zero), vmulq_f32(g, e), g);
        vst1q_f32(gate + j, vmulq_f32(vdivq_f32(numerator, vaddq_f32(one, e)), u));
    }
    for (; j < count; j++) gate[j] = sy_silu(gate[j]) * up[j];
}
#endif

void sy_swiglu_isa(sy_isa isa, float *gate, const float *up, size_t count) {
#if SY_X86
    if (avx512_isa(isa)) {
        swiglu_avx512(gate, up, count);
        return;
    }
    if (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI) {
        swiglu_avx2(gate, up, count);
        return;
    }
#elif SY_ARM64
    if (isa == SY_ISA_NEON) {
        swiglu_neon(gate, up, count);
        return;
    }
#else
    (void)isa;
#endif
    for (size_t j = 0; j < count; j++) gate[j] = sy_silu(gate[j]) * up[j];
}

void sy_swiglu(float *gate, const float *up, size_t count) { sy_swiglu_isa(sy_active_isa(), gate, up, count); }

/// One element of ``sy_clamped_swiglu_isa``, the operations every path performs.
static inline float clamped_glu_scalar(float gate, float up, float alpha, float limit) {
    float g = gate != gate ? gate : (limit < gate ? limit : gate);
    float u = up != up ? up : (up < -limit ? -limit : (limit < up ? limit : up));
    float t = g * alpha;
    float e = lse_exp_scalar(-fabsf(t));
    float numerator = t < 0.0f ? g * e : g;
    return (u + 1.0f) * (numerator / (1.0f + e));
}

/// Elements [from, width) of one row of ``sy_clamped_swiglu_isa`` by the scalar operations (the vector
/// paths' last few, and every element on the others).
static void clamped_swiglu_scalar(const float *gate_row, const float *up_row, size_t stride, const float *gate_bias,
                                  const float *up_bias, size_t from, size_t width, float alpha, float limit,
                                  float *out_row) {
    for (size_t i = from; i < width; i++) {
        float g = gate_row[i * stride], u = up_row[i * stride];
        if (gate_bias != NULL) g += gate_bias[i];
        if (up_bias != NULL) u += up_bias[i];
        out_row[i] = clamped_glu_scalar(g, u, alpha, limit);
    }
}

#if SY_X86
/// 16 elements of ``sy_clamped_swiglu_isa`` (gate and up already biased); `mask` selects the lanes.
SY_AVX512 __m512 clamped_glu_avx512(__m512 gate, __m512 up, __m512 alpha, __m512 limit) {
    const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
    // min / max return their second operand when either is NaN: a NaN gate or up passes through.
    __m512 g = _mm512_min_ps(limit, gate);
    __m512 negative_limit = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(limit), _mm512_set1_epi32((int)0x80000000u)));
    __m512 u = _mm512_min_ps(limit, _mm512_max_ps(negative_limit, up));
    __m512 t = _mm512_mul_ps(g, alpha);
    __m512 negative_magnitude = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(t), magnitude), _mm512_set1_epi32((int)0x80000000u)));
    __m512 e = lse_exp_avx512(negative_magnitude);
    __mmask16 below = _mm512_cmp_ps_mask(t, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 numerator = _mm512_mask_mul_ps(g, below, g, e);
    __m512 glu = _mm512_div_ps(numerator, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    return _mm512_mul_ps(_mm512_add_ps(u, _mm512_set1_ps(1.0f)), glu);
}

SY_AVX512_FN void clamped_swiglu_avx512(const float *gate_values, const float *up_values, size_t stride,
                                        size_t row_stride, const float *gate_bias, const float *up_bias, size_t rows,
                                        size_t width, float alpha, float limit, float *out) {
    const __m512 alphas = _mm512_set1_ps(alpha), limits = _mm512_set1_ps(limit);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (size_t r = 0; r < rows; r++) {
        const float *gr = gate_values + r * row_stride, *ur = up_values + r * row_stride;
        for (size_t i = 0; i < width; i += 16) {
            size_t left = width - i;
            __mmask16 mask = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
            __m512 g, u;
            if (stride == 2 && ur == gr + 1) {
                // Interleaved pairs (gate, up): 32 values, the gates at the even places.
                __mmask16 low = left >= 8 ? (__mmask16)0xffff : (__mmask16)((1u << (2 * left)) - 1u);
                __mmask16 high = left >= 16 ? (__mmask16)0xffff : left > 8 ? (__mmask16)((1u << (2 * (left - 8))) - 1u) : 0;
                __m512 first = _mm512_maskz_loadu_ps(low, gr + 2 * i), second = _mm512_maskz_loadu_ps(high, gr + 2 * i + 16);
                g = _mm512_permutex2var_ps(first, even, second);
                u = _mm512_permutex2var_ps(first, odd, second);
            } else if (stride == 1) {
                g = _mm512_maskz_loadu_ps(mask, gr + i);
                u = _mm512_maskz_loadu_ps(mask, ur + i);
            } else {
                float gs[16] = {0}, us[16] = {0};
                for (size_t l = 0; l < 16 && l < left; l++) {
                    gs[l] = gr[(i + l) * stride];
                    us[l] = ur[(i + l) * stride];
                }
                g = _mm512_loadu_ps(gs);
                u = _mm512_loadu_ps(us);
            }
            if (gate_bias != NULL) g = _mm512_add_ps(g, _mm512_maskz_loadu_ps(mask, gate_bias + i));
            if (up_bias != NULL) u = _mm512_add_ps(u, _mm512_maskz_loadu_ps(mask, up_bias + i));
            _mm512_mask_storeu_ps(out + r * width + i, mask, clamped_glu_avx512(g, u, alphas, limits));
        }
    }
}
#endif

#if SY_X86
/// 8 elements of ``sy_clamped_swiglu_isa`` (gate and up already biased): ``clamped_glu_avx512``'s operations.
SY_AVX2 __m256 clamped_glu_avx2(__m256 gate, __m256 up, __m256 alpha, __m256 limit) {
    const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF), sign = _mm256_set1_epi32((int)0x80000000u);
    // min / max return their second operand when either is NaN: a NaN gate or up passes through.
    __m256 g = _mm256_min_ps(limit, gate);
    __m256 negative_limit = _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(limit), sign));
    __m256 u = _mm256_min_ps(limit, _mm256_max_ps(negative_limit, up));
    __m256 t = _mm256_mul_ps(g, alpha);
    __m256 negative_magnitude =
        _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(t), magnitude), sign));
    __m256 e = lse_exp_avx2(negative_magnitude);
    __m256 below = _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_LT_OQ);
    __m256 numerator = _mm256_blendv_ps(g, _mm256_mul_ps(g, e), below);
    __m256 glu = _mm256_div_ps(numerator, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    return _mm256_mul_ps(_mm256_add_ps(u, _mm256_set1_ps(1.0f)), glu);
}

/// ``sy_clamped_swiglu_isa`` on 8 lanes at a time for separate or interleaved gate and up (the last
/// few of a row, and other strides, by the scalar operations). Before, this path ran the scalar loop,
/// its `fmaf` a libm call: about 10% of the gpt-oss-shaped prefill on `SWITCHYARD_KERNEL=avx2`
/// (`perf record`, 512-token prompt).
SY_AVX2_FN void clamped_swiglu_avx2(const float *gate_values, const float *up_values, size_t stride,
                                    size_t row_stride, const float *gate_bias, const float *up_bias, size_t rows,
                                    size_t width, float alpha, float limit, float *out) {
    const __m256 alphas = _mm256_set1_ps(alpha), limits = _mm256_set1_ps(limit);
    int interleaved = stride == 2 && up_values == gate_values + 1;
    for (size_t r = 0; r < rows; r++) {
        const float *gr = gate_values + r * row_stride, *ur = up_values + r * row_stride;
        size_t i = 0;
        if (interleaved || stride == 1) {
            for (; i + 8 <= width; i += 8) {
                __m256 g, u;
                if (interleaved) {
                    // 16 values (gate, up) in pairs: the gates at the even places, in order after the permute.
                    __m256 first = _mm256_loadu_ps(gr + 2 * i), second = _mm256_loadu_ps(gr + 2 * i + 8);
                    __m256 gates = _mm256_shuffle_ps(first, second, _MM_SHUFFLE(2, 0, 2, 0));
                    __m256 ups = _mm256_shuffle_ps(first, second, _MM_SHUFFLE(3, 1, 3, 1));
                    g = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(gates), _MM_SHUFFLE(3, 1, 2, 0)));
                    u = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ups), _MM_SHUFFLE(3, 1, 2, 0)));
                } else {
                    g = _mm256_loadu_ps(gr + i);
                    u = _mm256_loadu_ps(ur + i);
                }
                if (gate_bias != NULL) g = _mm256_add_ps(g, _mm256_loadu_ps(gate_bias + i));
                if (up_bias != NULL) u = _mm256_add_ps(u, _mm256_loadu_ps(up_bias + i));
                _mm256_storeu_ps(out + r * width + i, clamped_glu_avx2(g, u, alphas, limits));
            }
        }
        clamped_swiglu_scalar(gr, ur, stride, gate_bias, up_bias, i, width, alpha, limit, out + r * width);
    }
}
#endif

#if SY_ARM64
/// 4 elements of ``sy_clamped_swiglu_isa``: the scalar operations, the clamps as compares and selects
/// (a NaN compares false and passes through, as in the scalar path).
SY_NEON float32x4_t clamped_glu_neon(float32x4_t gate, float32x4_t up, float32x4_t alpha, float32x4_t limit) {
    const float32x4_t one = vdupq_n_f32(1.0f), zero = vdupq_n_f32(0.0f);
    float32x4_t negative_limit = vnegq_f32(limit);
    float32x4_t g = vbslq_f32(vcltq_f32(limit, gate), limit, gate);
    float32x4_t u = vbslq_f32(vcltq_f32(up, negative_limit), negative_limit,
                              vbslq_f32(vcltq_f32(limit, up), limit, up));
    float32x4_t t = vmulq_f32(g, alpha);
    float32x4_t e = lse_exp_neon(vnegq_f32(vabsq_f32(t)));
    float32x4_t numerator = vbslq_f32(vcltq_f32(t, zero), vmulq_f32(g, e), g);
    return vmulq_f32(vaddq_f32(u, one), vdivq_f32(numerator, vaddq_f32(one, e)));
}

/// ``clamped_swiglu_avx2`` on NEON: 4 lanes at a time, the rest by the scalar operations.
static void clamped_swiglu_neon(const float *gate_values, const float *up_values, size_t stride, size_t row_stride,
                                const float *gate_bias, const float *up_bias, size_t rows, size_t width, float alpha,
                                float limit, float *out) {
    const float32x4_t alphas = vdupq_n_f32(alpha), limits = vdupq_n_f32(limit);
    int interleaved = stride == 2 && up_values == gate_values + 1;
    for (size_t r = 0; r < rows; r++) {
        const float *gr = gate_values + r * row_stride, *ur = up_values + r * row_stride;
        size_t i = 0;
        if (interleaved || stride == 1) {
            for (; i + 4 <= width; i += 4) {
                float32x4_t g, u;
                if (interleaved) {
                    float32x4x2_t pairs = vld2q_f32(gr + 2 * i);  // the gates at the even places
                    g = pairs.val[0];
                    u = pairs.val[1];
                } else {
                    g = vld1q_f32(gr + i);
                    u = vld1q_f32(ur + i);
                }
                if (gate_bias != NULL) g = vaddq_f32(g, vld1q_f32(gate_bias + i));
                if (up_bias != NULL) u = vaddq_f32(u, vld1q_f32(up_bias + i));
                vst1q_f32(out + r * width + i, clamped_glu_neon(g, u, alphas, limits));
            }
        }
        clamped_swiglu_scalar(gr, ur, stride, gate_bias, up_bias, i, width, alpha, limit, out + r * width);
    }
}
#endif

void sy_clamped_swiglu_isa(sy_isa isa, const float *gate_values, const float *up_values, size_t stride,
                           size_t row_stride, const float *gate_bias, const float *up_bias, size_t rows, size_t width,
                           float alpha, float limit, float *out) {
#if SY_X86
    if (avx512_isa(isa)) {
        clamped_swiglu_avx512(gate_values, up_values, stride, row_stride, gate_bias, up_bias, rows, width, alpha, limit,
                              out);
        return;
    }
    if (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI) {
        clamped_swiglu_avx2(gate_values, up_values, stride, row_stride, gate_bias, up_bias, rows, width, alpha, limit,
                            out);
        return;
    }
#elif SY_ARM64
    if (isa == SY_ISA_NEON) {
        clamped_swiglu_neon(gate_values, up_values, stride, row_stride, gate_bias, up_bias, rows, width, alpha, limit,
                            out);
        return;
    }
#else
    (void)isa;
#endif
    for (size_t r = 0; r < rows; r++)
        clamped_swiglu_scalar(gate_values + r * row_stride, up_values + r * row_stride, stride, gate_bias, up_bias, 0,
                              width, alpha, limit, out + r * width);
}

// MARK: - Attention: scores and softmax
//
// A score is the dot product of the kernels' fixed reduction (lanes, then the tree of the header),
// rounded, then multiplied by the scale: bitwise what sy_matmul_nt gives before the multiply. The
// AVX-512 path takes 16 keys at a time and folds their 16 lane vectors into one (each total by the
// same tree), the other paths run sy_matmul_nt itself.

#if SY_X86
/// The totals of 16 vectors, each by the tree of the header (lane l with l + 8, then l + 4, l + 2,
/// l + 1: bitwise ``hsum16_avx512`` of it), pairs of vectors folded into one at each level (45
/// shuffles and adds instead of 128). totals[i] is the total of v[i].
SY_AVX512 void hsum16_many_avx512(const __m512 v[16], float totals[16]) {
    __m512 halves[8], quarters[4], eighths[2];
    for (int i = 0; i < 8; i++)  // j + 8 onto j: v[2i] in the low 256 bits, v[2i + 1] in the high
        halves[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                                  _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 4; i++)  // j + 4 onto j: 128-bit lane q holds vector 4i + q
        quarters[i] = _mm512_add_ps(_mm512_shuffle_f32x4(halves[2 * i], halves[2 * i + 1], 0x88),
                                    _mm512_shuffle_f32x4(halves[2 * i], halves[2 * i + 1], 0xDD));
    for (int i = 0; i < 2; i++)  // j + 2 onto j, within each 128-bit lane
        eighths[i] = _mm512_add_ps(_mm512_shuffle_ps(quarters[2 * i], quarters[2 * i + 1], 0x44),
                                   _mm512_shuffle_ps(quarters[2 * i], quarters[2 * i + 1], 0xEE));
    // j + 1 onto j: element 4q + t is the total of vector 4t + q.
    __m512 all = _mm512_add_ps(_mm512_shuffle_ps(eighths[0], eighths[1], 0x88),
                               _mm512_shuffle_ps(eighths[0], eighths[1], 0xDD));
    float permuted[16];
    _mm512_storeu_ps(permuted, all);
    for (int i = 0; i < 16; i++) totals[i] = permuted[4 * (i % 4) + i / 4];
}

/// The totals of q · k_i for 16 keys k_i (`row` bytes apart), each by the lanes-then-tree reduction
/// of the product; fixed counts, so the 16 accumulators stay in registers.
SY_AVX512 void scores16_avx512(const float *q, const char *k, size_t row, int bf16, size_t d, float totals[16]) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    size_t full = d / SY_LANES * SY_LANES;
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (size_t p = 0; p < full; p += SY_LANES) {
        __m512 qv = _mm512_loadu_ps(q + p);
        for (int i = 0; i < 16; i++)
            acc[i] = _mm512_fmadd_ps(qv, values16_avx512(k + i * row + p * element, bf16, 0xFFFF, SY_LANES), acc[i]);
    }
    if (full < d) {
        // mask3: lanes outside the tail keep their accumulator (as in the product's tile).
        __mmask16 tail = (__mmask16)((1u << (d - full)) - 1u);
        __m512 qv = _mm512_maskz_loadu_ps(tail, q + full);
        for (int i = 0; i < 16; i++)
            acc[i] = _mm512_mask3_fmadd_ps(qv, values16_avx512(k + i * row + full * element, bf16, tail, d - full),
                                           acc[i], tail);
    }
    hsum16_many_avx512(acc, totals);
}

/// The totals of q_h · k_i for H heads (q_h at q + h · q_stride) and 16 / H keys (`row` bytes apart):
/// totals[h · 16 / H + i]. Each key vector is read and widened once for the H heads; every total is
/// the dot product of ``scores16_avx512`` (the same FMAs in the same order, the same tree).
SY_AVX512 void scores_heads_avx512(int H, const float *q, size_t q_stride, const char *k, size_t row, int bf16,
                                   size_t d, float totals[16]) {
    const int keys = 16 / H;
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    size_t full = d / SY_LANES * SY_LANES;
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (size_t p = 0; p < full; p += SY_LANES) {
        __m512 qv[4];
        for (int h = 0; h < H; h++) qv[h] = _mm512_loadu_ps(q + h * q_stride + p);
        for (int i = 0; i < keys; i++) {
            __m512 kv = values16_avx512(k + i * row + p * element, bf16, 0xFFFF, SY_LANES);
            for (int h = 0; h < H; h++) acc[h * keys + i] = _mm512_fmadd_ps(qv[h], kv, acc[h * keys + i]);
        }
    }
    if (full < d) {
        __mmask16 tail = (__mmask16)((1u << (d - full)) - 1u);
        __m512 qv[4];
        for (int h = 0; h < H; h++) qv[h] = _mm512_maskz_loadu_ps(tail, q + h * q_stride + full);
        for (int i = 0; i < keys; i++) {
            __m512 kv = values16_avx512(k + i * row + full * element, bf16, tail, d - full);
            for (int h = 0; h < H; h++)
                acc[h * keys + i] = _mm512_mask3_fmadd_ps(qv[h], kv, acc[h * keys + i], tail);
        }
    }
    hsum16_many_avx512(acc, totals);
}

/// Scores of one head for keys s0 ..< count: 16 at a time, then the partial block.
SY_AVX512 void scores_head_avx512(const float *qh, const void *keys, int bf16, size_t row, size_t s0, size_t count,
                                  size_t d, float scale, float *scores) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    size_t full = d / SY_LANES * SY_LANES;
    __mmask16 tail = (__mmask16)((1u << (d - full)) - 1u);
    for (; s0 < count; s0 += 16) {
        const char *k = (const char *)keys + s0 * row;
        float totals[16];
        size_t n = count - s0 < 16 ? count - s0 : 16;
        if (n == 16) {
            scores16_avx512(qh, k, row, bf16, d, totals);
        } else {
            // A partial block of keys: the same operations on the n keys there are.
            __m512 acc[16];
            for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
            for (size_t p = 0; p < full; p += SY_LANES) {
                __m512 qv = _mm512_loadu_ps(qh + p);
                for (size_t i = 0; i < n; i++)
                    acc[i] = _mm512_fmadd_ps(qv, values16_avx512(k + i * row + p * element, bf16, 0xFFFF, SY_LANES),
                                             acc[i]);
            }
            if (full < d) {
                __m512 qv = _mm512_maskz_loadu_ps(tail, qh + full);
                for (size_t i = 0; i < n; i++)
                    acc[i] = _mm512_mask3_fmadd_ps(
                        qv, values16_avx512(k + i * row + full * element, bf16, tail, d - full), acc[i], tail);
            }
            hsum16_many_avx512(acc, totals);
        }
        for (size_t i = 0; i < n; i++) scores[s0 + i] = totals[i] * scale;
    }
}

/// The heads of a group four (or two) at a time on blocks of 4 (or 8) keys, so that each key is
/// widened once for them, and the keys left over (and a last single head) one head at a time.
SY_AVX512 void scores_body_avx512(const float *q, size_t heads, size_t q_stride, const void *keys, int bf16,
                                  size_t key_stride, size_t count, size_t d, float scale, float *scores,
                                  size_t scores_stride) {
    size_t element = bf16 ? sizeof(uint16_t) : sizeof(float);
    size_t row = key_stride * element;
    for (size_t h = 0; h < heads;) {
        size_t together = heads - h >= 4 ? 4 : heads - h >= 2 ? 2 : 1;
        const float *qh = q + h * q_stride;
        size_t s0 = 0;
        if (together > 1) {
            size_t block = 16 / together;
            for (; s0 + block <= count; s0 += block) {
                float totals[16];
                const char *k = (const char *)keys + s0 * row;
                if (together == 4) scores_heads_avx512(4, qh, q_stride, k, row, bf16, d, totals);
                else scores_heads_avx512(2, qh, q_stride, k, row, bf16, d, totals);
                for (size_t g = 0; g < together; g++)
                    for (size_t i = 0; i < block; i++)
                        scores[(h + g) * scores_stride + s0 + i] = totals[g * block + i] * scale;
            }
        }
        for (size_t g = 0; g < together; g++)
            scores_head_avx512(qh + g * q_stride, keys, bf16, row, s0, count, d, scale, scores + (h + g) * scores_stride);
        h += together;
    }
}

SY_AVX512_FN void scores_avx512(const float *q, size_t heads, size_t q_stride, const void *keys, int bf16,
                                size_t key_stride, size_t count, size_t d, float scale, float *scores,
                                size_t scores_stride) {
    if (bf16)
        scores_body_avx512(q, heads, q_stride, keys, 1, key_stride, count, d, scale, scores, scores_stride);
    else
        scores_body_avx512(q, heads, q_stride, keys, 0, key_stride, count, d, scale, scores, scores_stride);
}
#endif

void sy_attention_scores_isa(sy_isa isa, const float *q, size_t heads, size_t q_stride, const float *keys,
                             size_t key_stride, size_t count, size_t d, float scale, float *scores,
                             size_t scores_stride) {
    if (heads == 0 || count == 0) return;
#if SY_X86
    if (avx512_isa(isa)) {
        scores_avx512(q, heads, q_stride, keys, 0, key_stride, count, d, scale, scores, scores_stride);
        return;
    }
#endif
    sy_matmul_nt_isa(isa, q, heads, d, q_stride, keys, count, key_stride, scores, scores_stride, 0);
    for (size_t h = 0; h < heads; h++)
        for (size_t s = 0; s < count; s++) scores[h * scores_stride + s] *= scale;
}

void sy_attention_scores_bf16_isa(sy_isa isa, const float *q, size_t heads, size_t q_stride, const uint16_t *keys,
                                  size_t key_stride, size_t count, size_t d, float scale, float *scores,
                                  size_t scores_stride) {
    if (heads == 0 || count == 0) return;
#if SY_X86
    if (avx512_isa(isa)) {
        scores_avx512(q, heads, q_stride, keys, 1, key_stride, count, d, scale, scores, scores_stride);
        return;
    }
#endif
    sy_matmul_nt_bf16_isa(isa, q, heads, d, q_stride, keys, count, key_stride, scores, scores_stride, 0);
    for (size_t h = 0; h < heads; h++)
        for (size_t s = 0; s < count; s++) scores[h * scores_stride + s] *= scale;
}

// Softmax: the maximum, then e = exp(x - max) by the exp of the log Σ exp section (0 for -inf), summed
// in f32 with term j in lane j mod 16 and the lanes added by the tree of the header, then each e
// times 1 / sum. Every step is one f32 operation, so the scalar, AVX2, AVX-512 and NEON paths give the
// same bits.

static float softmax_term_scalar(float x, float maximum) {
    return x == -INFINITY ? 0.0f : lse_exp_scalar(x - maximum);
}

#if SY_X86
SY_AVX512_FN float softmax_terms_avx512(float *row, size_t count, float maximum) {
    __m512 sum = _mm512_setzero_ps();
    const __m512 m = _mm512_set1_ps(maximum), minus_infinity = _mm512_set1_ps(-INFINITY);
    for (size_t j = 0; j < count; j += SY_LANES) {
        __mmask16 mask = count - j >= SY_LANES ? (__mmask16)0xffff : (__mmask16)((1u << (count - j)) - 1u);
        __m512 x = _mm512_maskz_loadu_ps(mask, row + j);
        __mmask16 masked = _mm512_cmp_ps_mask(x, minus_infinity, _CMP_EQ_OQ);
        __m512 e = _mm512_maskz_mov_ps((__mmask16)(mask & ~masked), lse_exp_avx512(_mm512_sub_ps(x, m)));
        _mm512_mask_storeu_ps(row + j, mask, e);
        sum = _mm512_add_ps(sum, e);
    }
    return hsum16_avx512(sum);
}

/// The terms of ``sy_softmax_isa`` written into `row`, and their total: whole blocks of 16 in two
/// vectors of lanes, the rest on the same lanes by the scalar loop, then the tree of the header.
SY_AVX2_FN float softmax_terms_avx2(float *row, size_t count, float maximum) {
    __m256 sums[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256 m = _mm256_set1_ps(maximum), minus_infinity = _mm256_set1_ps(-INFINITY);
    size_t j = 0;
    for (; j + SY_LANES <= count; j += SY_LANES)
        for (int h = 0; h < 2; h++) {
            __m256 x = _mm256_loadu_ps(row + j + 8 * h);
            __m256 e = _mm256_andnot_ps(_mm256_cmp_ps(x, minus_infinity, _CMP_EQ_OQ), lse_exp_avx2(_mm256_sub_ps(x, m)));
            _mm256_storeu_ps(row + j + 8 * h, e);
            sums[h] = _mm256_add_ps(sums[h], e);
        }
    float lanes[SY_LANES];
    _mm256_storeu_ps(lanes, sums[0]);
    _mm256_storeu_ps(lanes + 8, sums[1]);
    for (; j < count; j++) {
        row[j] = softmax_term_scalar(row[j], maximum);
        lanes[j % SY_LANES] += row[j];
    }
    return hsum16_scalar(lanes);
}

SY_AVX2_FN void scale_avx2(float *row, size_t count, float factor) {
    const __m256 f = _mm256_set1_ps(factor);
    size_t j = 0;
    for (; j + 8 <= count; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), f));
    for (; j < count; j++) row[j] *= factor;
}

SY_AVX512_FN void scale_avx512(float *row, size_t count, float factor) {
    const __m512 f = _mm512_set1_ps(factor);
    for (size_t j = 0; j < count; j += SY_LANES) {
        __mmask16 mask = count - j >= SY_LANES ? (__mmask16)0xffff : (__mmask16)((1u << (count - j)) - 1u);
        _mm512_mask_storeu_ps(row + j, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, row + j), f));
    }
}
#endif

#if SY_ARM64
/// The terms of ``sy_softmax_isa`` written into `row`, and their total: whole blocks of 16 in four
/// vectors of lanes, the rest on the same lanes by the scalar loop, then the tree of the header.
static float softmax_terms_neon(float *row, size_t count, float maximum) {
    float32x4_t sums[4];
    for (int q = 0; q < 4; q++) sums[q] = vdupq_n_f32(0.0f);
    const float32x4_t m = vdupq_n_f32(maximum), minus_infinity = vdupq_n_f32(-INFINITY), zero = vdupq_n_f32(0.0f);
    size_t j = 0;
    for (; j + SY_LANES <= count; j += SY_LANES)
        for (int q = 0; q < 4; q++) {
            float32x4_t x = vld1q_f32(row + j + 4 * q);
            float32x4_t e = vbslq_f32(vceqq_f32(x, minus_infinity), zero, lse_exp_neon(vsubq_f32(x, m)));
            vst1q_f32(row + j + 4 * q, e);
            sums[q] = vaddq_f32(sums[q], e);
        }
    float lanes[SY_LANES];
    for (int q = 0; q < 4; q++) vst1q_f32(lanes + 4 * q, sums[q]);
    for (; j < count; j++) {
        row[j] = softmax_term_scalar(row[j], maximum);
        lanes[j % SY_LANES] += row[j];
    }
    return hsum16_scalar(lanes);
}

static void scale_neon(float *row, size_t count, float factor) {
    size_t j = 0;
    for (; j + 4 <= count; j += 4) vst1q_f32(row + j, vmulq_f32(vld1q_f32(row + j), vdupq_n_f32(factor)));
    for (; j < count; j++) row[j] *= factor;
}
#endif

int sy_softmax_isa(sy_isa isa, float *row, size_t count) {
    if (count == 0) return 0;
    float maximum = max_value(isa, row, count);
    if (!(maximum > -INFINITY)) return -1;
#if SY_X86
    if (avx512_isa(isa)) {
        float inverse = 1.0f / softmax_terms_avx512(row, count, maximum);
        scale_avx512(row, count, inverse);
        return 0;
    }
    if (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI) {
        scale_avx2(row, count, 1.0f / softmax_terms_avx2(row, count, maximum));
        return 0;
    }
#elif SY_ARM64
    if (isa == SY_ISA_NEON) {
        scale_neon(row, count, 1.0f / softmax_terms_neon(row, count, maximum));
        return 0;
    }
#else
    (void)isa;
#endif
    float lanes[SY_LANES] = {0};
    for (size_t j = 0; j < count; j++) {
        row[j] = softmax_term_scalar(row[j], maximum);
        lanes[j % SY_LANES] += row[j];
    }
    float inverse = 1.0f / hsum16_scalar(lanes);
    for (size_t j = 0; j < count; j++) row[j] *= inverse;
    return 0;
}

int sy_softmax(float *row, size_t count) { return sy_softmax_isa(sy_active_isa(), row, count); }
