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

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SY_X86 1
#else
#define SY_X86 0
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

// MARK: - Scalar path

/// The tree sum of 16 lanes shared by every path: l + 8, then l + 4, l + 2, l + 1.
static inline float hsum16_scalar(const float a[SY_LANES]) {
    float t8[8], t4[4];
    for (int l = 0; l < 8; l++) t8[l] = a[l] + a[l + 8];
    for (int l = 0; l < 4; l++) t4[l] = t8[l] + t8[l + 4];
    float t20 = t4[0] + t4[2];
    float t21 = t4[1] + t4[3];
    return t20 + t21;
}

enum { SCALAR_R = 2, SCALAR_C = 2 };

static inline void tile_scalar(int R, int C, const float *x, size_t xs, const float *w, size_t ws, size_t k,
                               float *y, size_t ys, int accumulate) {
    float acc[SCALAR_R][SCALAR_C][SY_LANES];
    memset(acc, 0, sizeof acc);
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
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_scalar(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

static void matmul_scalar(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws,
                          float *y, size_t ys, int accumulate) {
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        for (size_t j = 0; j < n; j += SCALAR_C) {
            int C = n - j >= SCALAR_C ? SCALAR_C : (int)(n - j);
            for (size_t i = i0; i < i1; i += SCALAR_R) {
                int R = i1 - i >= SCALAR_R ? SCALAR_R : (int)(i1 - i);
                tile_scalar(R, C, x + i * xs, xs, w + j * ws, ws, k, y + i * ys + j, ys, accumulate);
            }
        }
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

static void weighted_sum_scalar(const float *p, size_t count, const float *v, size_t vs, size_t width,
                                float *out) {
    for (size_t d = 0; d < width; d++) out[d] = 0;
    for (size_t s = 0; s < count; s++)
        for (size_t d = 0; d < width; d++) out[d] = fmaf(p[s], v[s * vs + d], out[d]);
}

#if SY_X86

// MARK: - AVX-512 path

#define SY_AVX512 __attribute__((target("avx512f,fma"), always_inline)) static inline
#define SY_AVX512_FN __attribute__((target("avx512f,fma"))) static

SY_AVX512 float hsum16_avx512(__m512 a) {
    __m256 lo = _mm512_castps512_ps256(a);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(s1);
}

enum { AVX512_R = 4, AVX512_C = 4 };

SY_AVX512 void tile_avx512(int R, int C, const float *x, size_t xs, const float *w, size_t ws, size_t k,
                           float *y, size_t ys, int accumulate) {
    __m512 acc[AVX512_R][AVX512_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        __m512 wv[AVX512_C];
        for (int c = 0; c < C; c++) wv[c] = _mm512_loadu_ps(w + c * ws + p);
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
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx512(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

/// All row tiles of one block against C weight rows; R and C are constants after inlining.
SY_AVX512 void rows_avx512(int C, const float *x, size_t i0, size_t i1, size_t xs, const float *w, size_t ws,
                           size_t k, float *y, size_t ys, int accumulate) {
    size_t i = i0;
    for (; i + AVX512_R <= i1; i += AVX512_R)
        tile_avx512(AVX512_R, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate);
    switch (i1 - i) {
    case 3: tile_avx512(3, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    case 2: tile_avx512(2, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    case 1: tile_avx512(1, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    default: break;
    }
}

SY_AVX512_FN void matmul_avx512(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws,
                                float *y, size_t ys, int accumulate) {
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        size_t j = 0;
        for (; j + AVX512_C <= n; j += AVX512_C)
            rows_avx512(AVX512_C, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate);
        switch (n - j) {
        case 3: rows_avx512(3, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        case 2: rows_avx512(2, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        case 1: rows_avx512(1, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        default: break;
        }
    }
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

SY_AVX512 void tile_bf16_avx512(int R, int C, const float *x, size_t xs, const uint16_t *w, size_t ws, size_t k,
                                float *y, size_t ys, int accumulate) {
    __m512 acc[AVX512_R][AVX512_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        __m512 wv[AVX512_C];
        for (int c = 0; c < C; c++) wv[c] = widen16_bf16_avx512(w + c * ws + p);
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

SY_AVX512 void rows_bf16_avx512(int C, const float *x, size_t i0, size_t i1, size_t xs, const uint16_t *w,
                                size_t ws, size_t k, float *y, size_t ys, int accumulate) {
    size_t i = i0;
    for (; i + AVX512_R <= i1; i += AVX512_R)
        tile_bf16_avx512(AVX512_R, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate);
    switch (i1 - i) {
    case 3: tile_bf16_avx512(3, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    case 2: tile_bf16_avx512(2, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    case 1: tile_bf16_avx512(1, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate); break;
    default: break;
    }
}

SY_AVX512_FN void matmul_bf16_avx512(const float *x, size_t m, size_t k, size_t xs, const uint16_t *w, size_t n,
                                     size_t ws, float *y, size_t ys, int accumulate) {
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        size_t j = 0;
        for (; j + AVX512_C <= n; j += AVX512_C)
            rows_bf16_avx512(AVX512_C, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate);
        switch (n - j) {
        case 3: rows_bf16_avx512(3, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        case 2: rows_bf16_avx512(2, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        case 1: rows_bf16_avx512(1, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate); break;
        default: break;
        }
    }
}

SY_AVX512_FN void weighted_sum_avx512(const float *p, size_t count, const float *v, size_t vs, size_t width,
                                      float *out) {
    // Four vectors (64 columns) per pass: four independent FMA chains hide the FMA latency.
    for (size_t d0 = 0; d0 < width; d0 += 4 * SY_LANES) {
        __mmask16 masks[4];
        for (int q = 0; q < 4; q++) {
            size_t begin = d0 + (size_t)q * SY_LANES;
            size_t left = begin < width ? width - begin : 0;
            masks[q] = left >= SY_LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        }
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (size_t s = 0; s < count; s++) {
            __m512 weight = _mm512_set1_ps(p[s]);
            const float *row = v + s * vs + d0;
            for (int q = 0; q < 4; q++)
                acc[q] = _mm512_fmadd_ps(weight, _mm512_maskz_loadu_ps(masks[q], row + q * SY_LANES), acc[q]);
        }
        for (int q = 0; q < 4; q++) _mm512_mask_storeu_ps(out + d0 + q * SY_LANES, masks[q], acc[q]);
    }
}

// MARK: - AVX2 path (16 lanes as two 8-lane halves, so the arithmetic matches the other paths)

#define SY_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline
#define SY_AVX2_FN __attribute__((target("avx2,fma"))) static

SY_AVX2 float hsum16_avx2(__m256 lo, __m256 hi) {
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(s1);
}

/// The lane mask for the first `count` (0 ... 8) of 8 lanes, for maskload.
SY_AVX2 __m256i mask8_avx2(size_t count) {
    __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), index);
}

enum { AVX2_R = 2, AVX2_C = 2 };

SY_AVX2 void tile_avx2(int R, int C, const float *x, size_t xs, const float *w, size_t ws, size_t k, float *y,
                       size_t ys, int accumulate) {
    __m256 lo[AVX2_R][AVX2_C], hi[AVX2_R][AVX2_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        __m256 wlo[AVX2_C], whi[AVX2_C];
        for (int c = 0; c < C; c++) {
            wlo[c] = _mm256_loadu_ps(w + c * ws + p);
            whi[c] = _mm256_loadu_ps(w + c * ws + p + 8);
        }
        for (int r = 0; r < R; r++) {
            __m256 xlo = _mm256_loadu_ps(x + r * xs + p);
            __m256 xhi = _mm256_loadu_ps(x + r * xs + p + 8);
            for (int c = 0; c < C; c++) {
                lo[r][c] = _mm256_fmadd_ps(xlo, wlo[c], lo[r][c]);
                hi[r][c] = _mm256_fmadd_ps(xhi, whi[c], hi[r][c]);
            }
        }
    }
    if (p < k) {
        size_t left = k - p;
        __m256i mlo = mask8_avx2(left < 8 ? left : 8);
        __m256i mhi = mask8_avx2(left > 8 ? left - 8 : 0);
        for (int r = 0; r < R; r++) {
            __m256 xlo = _mm256_maskload_ps(x + r * xs + p, mlo);
            __m256 xhi = _mm256_maskload_ps(x + r * xs + p + 8, mhi);
            for (int c = 0; c < C; c++) {
                __m256 wlo = _mm256_maskload_ps(w + c * ws + p, mlo);
                __m256 whi = _mm256_maskload_ps(w + c * ws + p + 8, mhi);
                // Blend so lanes outside the tail keep their accumulator untouched.
                lo[r][c] = _mm256_blendv_ps(lo[r][c], _mm256_fmadd_ps(xlo, wlo, lo[r][c]), _mm256_castsi256_ps(mlo));
                hi[r][c] = _mm256_blendv_ps(hi[r][c], _mm256_fmadd_ps(xhi, whi, hi[r][c]), _mm256_castsi256_ps(mhi));
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx2(lo[r][c], hi[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

SY_AVX2 void rows_avx2(int C, const float *x, size_t i0, size_t i1, size_t xs, const float *w, size_t ws, size_t k,
                       float *y, size_t ys, int accumulate) {
    size_t i = i0;
    for (; i + AVX2_R <= i1; i += AVX2_R) tile_avx2(AVX2_R, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate);
    if (i < i1) tile_avx2(1, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate);
}

SY_AVX2_FN void matmul_avx2(const float *x, size_t m, size_t k, size_t xs, const float *w, size_t n, size_t ws,
                            float *y, size_t ys, int accumulate) {
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        size_t j = 0;
        for (; j + AVX2_C <= n; j += AVX2_C) rows_avx2(AVX2_C, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate);
        if (j < n) rows_avx2(1, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate);
    }
}

// MARK: - bf16 weights, AVX2 path

/// 8 bf16 values at `w` (any 2-byte alignment) widened to f32.
SY_AVX2 __m256 widen8_bf16_avx2(const uint16_t *w) {
    __m128i half = _mm_loadu_si128((const __m128i *)(const void *)w);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
}

SY_AVX2 void tile_bf16_avx2(int R, int C, const float *x, size_t xs, const uint16_t *w, size_t ws, size_t k,
                            float *y, size_t ys, int accumulate) {
    __m256 lo[AVX2_R][AVX2_C], hi[AVX2_R][AVX2_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
    size_t p = 0;
    for (; p + SY_LANES <= k; p += SY_LANES) {
        __m256 wlo[AVX2_C], whi[AVX2_C];
        for (int c = 0; c < C; c++) {
            wlo[c] = widen8_bf16_avx2(w + c * ws + p);
            whi[c] = widen8_bf16_avx2(w + c * ws + p + 8);
        }
        for (int r = 0; r < R; r++) {
            __m256 xlo = _mm256_loadu_ps(x + r * xs + p);
            __m256 xhi = _mm256_loadu_ps(x + r * xs + p + 8);
            for (int c = 0; c < C; c++) {
                lo[r][c] = _mm256_fmadd_ps(xlo, wlo[c], lo[r][c]);
                hi[r][c] = _mm256_fmadd_ps(xhi, whi[c], hi[r][c]);
            }
        }
    }
    if (p < k) {
        size_t left = k - p;
        __m256i mlo = mask8_avx2(left < 8 ? left : 8);
        __m256i mhi = mask8_avx2(left > 8 ? left - 8 : 0);
        __m256 wlo[AVX2_C], whi[AVX2_C];
        for (int c = 0; c < C; c++) {
            uint16_t padded[SY_LANES] = {0};
            memcpy(padded, w + c * ws + p, left * sizeof(uint16_t));
            wlo[c] = widen8_bf16_avx2(padded);
            whi[c] = widen8_bf16_avx2(padded + 8);
        }
        for (int r = 0; r < R; r++) {
            __m256 xlo = _mm256_maskload_ps(x + r * xs + p, mlo);
            __m256 xhi = _mm256_maskload_ps(x + r * xs + p + 8, mhi);
            for (int c = 0; c < C; c++) {
                lo[r][c] = _mm256_blendv_ps(lo[r][c], _mm256_fmadd_ps(xlo, wlo[c], lo[r][c]), _mm256_castsi256_ps(mlo));
                hi[r][c] = _mm256_blendv_ps(hi[r][c], _mm256_fmadd_ps(xhi, whi[c], hi[r][c]), _mm256_castsi256_ps(mhi));
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx2(lo[r][c], hi[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

SY_AVX2 void rows_bf16_avx2(int C, const float *x, size_t i0, size_t i1, size_t xs, const uint16_t *w, size_t ws,
                            size_t k, float *y, size_t ys, int accumulate) {
    size_t i = i0;
    for (; i + AVX2_R <= i1; i += AVX2_R)
        tile_bf16_avx2(AVX2_R, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate);
    if (i < i1) tile_bf16_avx2(1, C, x + i * xs, xs, w, ws, k, y + i * ys, ys, accumulate);
}

SY_AVX2_FN void matmul_bf16_avx2(const float *x, size_t m, size_t k, size_t xs, const uint16_t *w, size_t n,
                                 size_t ws, float *y, size_t ys, int accumulate) {
    size_t block = rows_per_block(k);
    for (size_t i0 = 0; i0 < m; i0 += block) {
        size_t i1 = i0 + block < m ? i0 + block : m;
        size_t j = 0;
        for (; j + AVX2_C <= n; j += AVX2_C)
            rows_bf16_avx2(AVX2_C, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate);
        if (j < n) rows_bf16_avx2(1, x, i0, i1, xs, w + j * ws, ws, k, y + j, ys, accumulate);
    }
}

SY_AVX2_FN void weighted_sum_avx2(const float *p, size_t count, const float *v, size_t vs, size_t width,
                                  float *out) {
    for (size_t d0 = 0; d0 < width; d0 += 32) {
        __m256i masks[4];
        for (int q = 0; q < 4; q++) {
            size_t begin = d0 + (size_t)q * 8;
            size_t left = begin < width ? width - begin : 0;
            masks[q] = mask8_avx2(left < 8 ? left : 8);
        }
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (size_t s = 0; s < count; s++) {
            __m256 weight = _mm256_set1_ps(p[s]);
            const float *row = v + s * vs + d0;
            for (int q = 0; q < 4; q++)
                acc[q] = _mm256_fmadd_ps(weight, _mm256_maskload_ps(row + q * 8, masks[q]), acc[q]);
        }
        for (int q = 0; q < 4; q++) _mm256_maskstore_ps(out + d0 + q * 8, masks[q], acc[q]);
    }
}

// MARK: - bf16 dot-product path (opt-in; x rounded to bf16, vdpbf16ps)

#define SY_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16,fma"), always_inline)) static inline
#define SY_AVX512BF16_FN __attribute__((target("avx512f,avx512bw,avx512bf16,fma"))) static

enum { SY_DOT_STEP = 32 };

/// Rows [i0, i1) of y against C weight rows; `xb` holds x rounded to bf16, rows of `kp` (k rounded
/// up to 32, zero-padded) elements. Weight tails are zero-padded the same way, so the padding adds
/// exact zero products at fixed places whatever m is.
SY_AVX512BF16 void tile_dot(int R, int C, const uint16_t *xb, size_t kp, const uint16_t *w, size_t ws, size_t k,
                            float *y, size_t ys, int accumulate) {
    __m512 acc[AVX512_R][AVX512_C];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    for (size_t p = 0; p < kp; p += SY_DOT_STEP) {
        __m512bh wv[AVX512_C];
        if (p + SY_DOT_STEP <= k) {
            for (int c = 0; c < C; c++) wv[c] = (__m512bh)_mm512_loadu_si512((const void *)(w + c * ws + p));
        } else {
            for (int c = 0; c < C; c++) {
                uint16_t padded[SY_DOT_STEP] = {0};
                memcpy(padded, w + c * ws + p, (k - p) * sizeof(uint16_t));
                wv[c] = (__m512bh)_mm512_loadu_si512((const void *)padded);
            }
        }
        for (int r = 0; r < R; r++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + r * kp + p));
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xv, wv[c]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            float s = hsum16_avx512(acc[r][c]);
            float *target = y + r * ys + c;
            *target = accumulate ? *target + s : s;
        }
}

SY_AVX512BF16 void rows_dot(int C, const uint16_t *xb, size_t m, size_t kp, const uint16_t *w, size_t ws, size_t k,
                            float *y, size_t ys, int accumulate) {
    size_t i = 0;
    for (; i + AVX512_R <= m; i += AVX512_R) tile_dot(AVX512_R, C, xb + i * kp, kp, w, ws, k, y + i * ys, ys, accumulate);
    switch (m - i) {
    case 3: tile_dot(3, C, xb + i * kp, kp, w, ws, k, y + i * ys, ys, accumulate); break;
    case 2: tile_dot(2, C, xb + i * kp, kp, w, ws, k, y + i * ys, ys, accumulate); break;
    case 1: tile_dot(1, C, xb + i * kp, kp, w, ws, k, y + i * ys, ys, accumulate); break;
    default: break;
    }
}

/// `xb` = x rounded to bf16 (nearest even), rows of `kp` elements zero-padded.
SY_AVX512BF16_FN void round_rows_bf16(const float *x, size_t m, size_t k, size_t xs, uint16_t *xb, size_t kp) {
    memset(xb, 0, m * kp * sizeof(uint16_t));
    for (size_t i = 0; i < m; i++)
        for (size_t p = 0; p < k; p += SY_LANES) {
            size_t count = k - p < SY_LANES ? k - p : SY_LANES;
            __mmask16 mask = (__mmask16)(count == SY_LANES ? 0xFFFFu : (1u << count) - 1u);
            __m256bh rounded = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, x + i * xs + p));
            uint16_t lanes[SY_LANES];
            _mm256_storeu_si256((__m256i *)(void *)lanes, (__m256i)rounded);
            memcpy(xb + i * kp + p, lanes, count * sizeof(uint16_t));
        }
}

SY_AVX512BF16_FN void matmul_dot(const uint16_t *xb, size_t m, size_t kp, size_t k, const uint16_t *w, size_t n,
                                 size_t ws, float *y, size_t ys, int accumulate) {
    size_t j = 0;
    for (; j + AVX512_C <= n; j += AVX512_C) rows_dot(AVX512_C, xb, m, kp, w + j * ws, ws, k, y + j, ys, accumulate);
    switch (n - j) {
    case 3: rows_dot(3, xb, m, kp, w + j * ws, ws, k, y + j, ys, accumulate); break;
    case 2: rows_dot(2, xb, m, kp, w + j * ws, ws, k, y + j, ys, accumulate); break;
    case 1: rows_dot(1, xb, m, kp, w + j * ws, ws, k, y + j, ys, accumulate); break;
    default: break;
    }
}

#endif // SY_X86

// MARK: - Dispatch

int sy_isa_supported(sy_isa isa) {
    switch (isa) {
    case SY_ISA_SCALAR: return 1;
#if SY_X86
    case SY_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SY_ISA_AVX512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
    default: return 0;
    }
}

static sy_isa choose_isa(void) {
    sy_isa best = sy_isa_supported(SY_ISA_AVX512) ? SY_ISA_AVX512
                  : sy_isa_supported(SY_ISA_AVX2) ? SY_ISA_AVX2
                                                  : SY_ISA_SCALAR;
    const char *forced = getenv("SWITCHYARD_KERNEL");
    if (forced == NULL || forced[0] == '\0') return best;
    sy_isa wanted;
    if (strcmp(forced, "scalar") == 0) wanted = SY_ISA_SCALAR;
    else if (strcmp(forced, "avx2") == 0) wanted = SY_ISA_AVX2;
    else if (strcmp(forced, "avx512") == 0) wanted = SY_ISA_AVX512;
    else {
        fprintf(stderr, "switchyard: SWITCHYARD_KERNEL is '%s', but must be scalar, avx2 or avx512; using the best\n",
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

/// One product on one thread, on the path `isa`: `w` points at f32 or bf16 elements (`bf16`).
static void matmul_one(int bf16, sy_isa isa, const float *x, size_t m, size_t k, size_t xs, const void *w, size_t n,
                       size_t ws, float *y, size_t ys, int accumulate) {
    if (m == 0 || n == 0) return;
    if (bf16) {
        const uint16_t *wb = (const uint16_t *)w;
        switch (isa) {
#if SY_X86
        case SY_ISA_AVX512: matmul_bf16_avx512(x, m, k, xs, wb, n, ws, y, ys, accumulate); return;
        case SY_ISA_AVX2: matmul_bf16_avx2(x, m, k, xs, wb, n, ws, y, ys, accumulate); return;
#endif
        default: matmul_bf16_scalar(x, m, k, xs, wb, n, ws, y, ys, accumulate); return;
        }
    }
    const float *wf = (const float *)w;
    switch (isa) {
#if SY_X86
    case SY_ISA_AVX512: matmul_avx512(x, m, k, xs, wf, n, ws, y, ys, accumulate); return;
    case SY_ISA_AVX2: matmul_avx2(x, m, k, xs, wf, n, ws, y, ys, accumulate); return;
#endif
    default: matmul_scalar(x, m, k, xs, wf, n, ws, y, ys, accumulate); return;
    }
}

int sy_bf16_dot_supported(void) {
#if SY_X86
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

void sy_matmul_nt_bf16_dot(const float *x, size_t m, size_t k, size_t x_stride, const uint16_t *w, size_t n,
                           size_t w_stride, float *y, size_t y_stride, int accumulate) {
    if (m == 0 || n == 0) return;
#if SY_X86
    if (sy_bf16_dot_supported()) {
        size_t kp = (k + SY_DOT_STEP - 1) / SY_DOT_STEP * SY_DOT_STEP;
        uint16_t *xb = malloc((m * kp > 0 ? m * kp : 1) * sizeof(uint16_t));
        if (xb != NULL) {
            round_rows_bf16(x, m, k, x_stride, xb, kp);
            matmul_dot(xb, m, kp, k, w, n, w_stride, y, y_stride, accumulate);
            free(xb);
            return;
        }
    }
#endif
    sy_matmul_nt_bf16(x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate);
}

// MARK: - Thread pool (splits a product over n only; never over k, so bits never depend on it)

/// A product split into `parts` column ranges of `columns` columns each (the last may be shorter).
typedef struct sy_job {
    int bf16;
    sy_isa isa;
    const float *x;
    size_t m, k, xs;
    const void *w;
    size_t n, ws;
    float *y;
    size_t ys;
    int accumulate;
    size_t parts, columns;
} sy_job;

static void run_part(const sy_job *job, size_t part) {
    size_t j0 = part * job->columns;
    if (j0 >= job->n) return;
    size_t j1 = j0 + job->columns < job->n ? j0 + job->columns : job->n;
    size_t element = job->bf16 ? sizeof(uint16_t) : sizeof(float);
    const void *w = (const char *)job->w + j0 * job->ws * element;
    matmul_one(job->bf16, job->isa, job->x, job->m, job->k, job->xs, w, j1 - j0, job->ws, job->y + j0, job->ys,
               job->accumulate);
}

static struct {
    /// Held by the one caller that owns the workers for one product (others run alone).
    pthread_mutex_t owner;
    /// Guards every field below.
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    /// Incremented once per dispatched product.
    unsigned long generation;
    /// Parts of the current product not yet finished by workers.
    size_t remaining;
    /// Worker threads started (worker i runs part i + 1).
    int started;
    /// The generation each worker was started in: a worker created while a product is being
    /// dispatched must still see that product as new.
    unsigned long start_generation[SY_MAX_THREADS];
    sy_job job;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          0, 0, 0, {0}, {0}};

/// The requested thread count, caller included.
static _Atomic int wanted_threads = 1;

static void *worker_main(void *argument) {
    size_t part = (size_t)(uintptr_t)argument;
    pthread_mutex_lock(&pool.lock);
    unsigned long seen = pool.start_generation[part];
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        if (part >= pool.job.parts) continue;
        sy_job job = pool.job;
        pthread_mutex_unlock(&pool.lock);
        run_part(&job, part);
        pthread_mutex_lock(&pool.lock);
        if (--pool.remaining == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

void sy_set_thread_count(int count) {
    if (count < 1) count = 1;
    if (count > SY_MAX_THREADS) count = SY_MAX_THREADS;
    atomic_store_explicit(&wanted_threads, count, memory_order_relaxed);
}

int sy_thread_count(void) { return atomic_load_explicit(&wanted_threads, memory_order_relaxed); }

/// Products smaller than this many multiply-adds run on the caller alone (waking workers costs more).
enum { SY_PARALLEL_MIN_WORK = 1 << 16, SY_PARALLEL_COLUMN_STEP = 16 };

static void matmul_dispatch(int bf16, sy_isa isa, const float *x, size_t m, size_t k, size_t xs, const void *w,
                            size_t n, size_t ws, float *y, size_t ys, int accumulate) {
    if (m == 0 || n == 0) return;
    size_t threads = (size_t)sy_thread_count();
    size_t max_parts = (n + SY_PARALLEL_COLUMN_STEP - 1) / SY_PARALLEL_COLUMN_STEP;
    if (threads > max_parts) threads = max_parts;
    if (threads <= 1 || m * n * (k > 0 ? k : 1) < SY_PARALLEL_MIN_WORK || pthread_mutex_trylock(&pool.owner) != 0) {
        matmul_one(bf16, isa, x, m, k, xs, w, n, ws, y, ys, accumulate);
        return;
    }
    // Column ranges in whole steps of 16, so that every part keeps full tiles.
    size_t columns = (n + threads - 1) / threads;
    columns = (columns + SY_PARALLEL_COLUMN_STEP - 1) / SY_PARALLEL_COLUMN_STEP * SY_PARALLEL_COLUMN_STEP;
    size_t parts = (n + columns - 1) / columns;
    pthread_mutex_lock(&pool.lock);
    while ((size_t)pool.started + 1 < parts) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        pool.start_generation[pool.started + 1] = pool.generation;
        int failed = pthread_create(&thread, &attributes, worker_main, (void *)(uintptr_t)(pool.started + 1));
        pthread_attr_destroy(&attributes);
        if (failed) break;
        pool.started++;
    }
    if ((size_t)pool.started + 1 < parts) parts = (size_t)pool.started + 1;
    // Recompute the split if fewer workers could be started (the bits do not depend on it).
    columns = (n + parts - 1) / parts;
    columns = (columns + SY_PARALLEL_COLUMN_STEP - 1) / SY_PARALLEL_COLUMN_STEP * SY_PARALLEL_COLUMN_STEP;
    parts = (n + columns - 1) / columns;
    pool.job = (sy_job){bf16, isa, x, m, k, xs, w, n, ws, y, ys, accumulate, parts, columns};
    pool.remaining = parts - 1;
    pool.generation++;
    sy_job job = pool.job;
    if (parts > 1) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_part(&job, 0);
    pthread_mutex_lock(&pool.lock);
    while (pool.remaining > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.owner);
}

void sy_matmul_nt_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const float *w, size_t n,
                      size_t w_stride, float *y, size_t y_stride, int accumulate) {
    matmul_dispatch(0, isa, x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate);
}

void sy_matmul_nt(const float *x, size_t m, size_t k, size_t x_stride, const float *w, size_t n, size_t w_stride,
                  float *y, size_t y_stride, int accumulate) {
    matmul_dispatch(0, sy_active_isa(), x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate);
}

void sy_matmul_nt_bf16_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const uint16_t *w,
                           size_t n, size_t w_stride, float *y, size_t y_stride, int accumulate) {
    matmul_dispatch(1, isa, x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate);
}

void sy_matmul_nt_bf16(const float *x, size_t m, size_t k, size_t x_stride, const uint16_t *w, size_t n,
                       size_t w_stride, float *y, size_t y_stride, int accumulate) {
    matmul_dispatch(1, sy_active_isa(), x, m, k, x_stride, w, n, w_stride, y, y_stride, accumulate);
}

void sy_weighted_sum_isa(sy_isa isa, const float *p, size_t count, const float *v, size_t v_stride, size_t width,
                         float *out) {
    switch (isa) {
#if SY_X86
    case SY_ISA_AVX512: weighted_sum_avx512(p, count, v, v_stride, width, out); return;
    case SY_ISA_AVX2: weighted_sum_avx2(p, count, v, v_stride, width, out); return;
#endif
    default: weighted_sum_scalar(p, count, v, v_stride, width, out); return;
    }
}

void sy_weighted_sum(const float *p, size_t count, const float *v, size_t v_stride, size_t width, float *out) {
    sy_weighted_sum_isa(sy_active_isa(), p, count, v, v_stride, width, out);
}
