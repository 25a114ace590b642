// MXFP4 products (sy_mxfp4.h): the scalar path, which defines the bits, and the AVX-512, AVX2 and NEON
// paths side by side, each computing the header's reduction shape.
#include "sy_mxfp4.h"
#include "sy_hsum.h"
#include "sy_prefetch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SY_MX_X86 1
#else
#define SY_MX_X86 0
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#define SY_MX_ARM64 1
#else
#define SY_MX_ARM64 0
#endif

/// The doubled e2m1 values: exact small integers, so a product with them is x · value · 2 exactly.
static const float doubled_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, -0.0f, -1, -2, -3, -4, -6, -8, -12};

float sy_mxfp4_value(uint8_t nibble) { return doubled_values[nibble & 15] * 0.5f; }

float sy_mxfp4_scale(uint8_t scale) { return scale == 255 ? INFINITY : ldexpf(1.0f, (int)scale - 127); }

/// 2^(s - 128): the block factor that goes with the doubled values (infinity for 255, as 2^128 is).
static float half_scale(uint8_t scale) { return scale == 255 ? INFINITY : ldexpf(1.0f, (int)scale - 128); }

/// ``half_scale`` built from its bits, as the vector paths take it (no library call in their block
/// loops): exponent field s - 1 for 2 ≤ s ≤ 254, the subnormals 2^-128 and 2^-127 for 0 and 1,
/// infinity for 255. The same value as ``half_scale`` for every byte.
static inline float half_scale_bits(uint8_t scale) {
    uint32_t bits = scale == 255 ? 0x7f800000u : scale >= 2 ? ((uint32_t)scale - 1) << 23 : 0x00200000u << scale;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static void mxfp4_scalar(const float *x, size_t m, size_t k, size_t xs, const uint8_t *blocks, const uint8_t *scales,
                         size_t n, size_t wrs, float *y, size_t ys) {
    size_t block_count = k / 32;
    for (size_t j = 0; j < n; j++) {
        const uint8_t *wb = blocks + j * wrs * block_count * 16;
        const uint8_t *wsc = scales + j * wrs * block_count;
        for (size_t i = 0; i < m; i++) {
            const float *xr = x + i * xs;
            float acc[16] = {0};
            for (size_t b = 0; b < block_count; b++) {
                float s = half_scale(wsc[b]);
                for (int l = 0; l < 16; l++) {
                    uint8_t byte = wb[b * 16 + l];
                    float low = doubled_values[byte & 15], high = doubled_values[byte >> 4];
                    float p = fmaf(high, xr[b * 32 + 2 * l + 1], low * xr[b * 32 + 2 * l]);
                    acc[l] = fmaf(p, s, acc[l]);
                }
            }
            y[i * ys + j] = hsum16_scalar(acc);
        }
    }
}

#if SY_MX_X86

#define SY_MX_AVX512_FN __attribute__((target("avx512f,fma"))) static
#define SY_MX_AVX2_FN __attribute__((target("avx2,fma"))) static

/// Outputs y[t, r] for rows r < nr ≤ 8 (row r at `wb + r · row_bytes`, `wsc + r · row_scales`) and
/// tokens t < nt ≤ 2 (row t of x at `x + t · xs`), each with its own accumulator: a weight block is
/// decoded once for the tile's tokens and a token's x block de-interleaved once for the tile's rows.
/// Every output's arithmetic is the one of the header whatever the tile's shape. Inlined with constant
/// nr and nt so the accumulators stay in registers.
__attribute__((target("avx512f,fma"), always_inline)) static inline void
tile_avx512(const float *x, size_t xs, size_t block_count, const uint8_t *wb, const uint8_t *wsc, size_t row_bytes,
            size_t row_scales, float *y, size_t ys, const int nr, const int nt) {
    const __m512 table = _mm512_loadu_ps(doubled_values);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __m512 acc[8][2];
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    for (size_t b = 0; b < block_count; b++) {
        __m512 low[8], high[8], s[8];
        for (int r = 0; r < nr; r++) {
            __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(wb + r * row_bytes + b * 16)));
            // The permutation reads an index's low 4 bits: the byte itself indexes its low nibble.
            low[r] = _mm512_permutexvar_ps(bytes, table);
            high[r] = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
            s[r] = _mm512_set1_ps(half_scale_bits(wsc[r * row_scales + b]));
        }
        for (int t = 0; t < nt; t++) {
            const float *xb = x + t * xs + b * 32;
            __m512 first = _mm512_loadu_ps(xb), second = _mm512_loadu_ps(xb + 16);
            __m512 xe = _mm512_permutex2var_ps(first, even, second);
            __m512 xo = _mm512_permutex2var_ps(first, odd, second);
            for (int r = 0; r < nr; r++) {
                __m512 p = _mm512_fmadd_ps(high[r], xo, _mm512_mul_ps(low[r], xe));
                acc[r][t] = _mm512_fmadd_ps(p, s[r], acc[r][t]);
            }
        }
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) y[t * ys + r] = hsum16_avx512(acc[r][t]);
}

SY_MX_AVX512_FN void mxfp4_avx512(const float *x, size_t m, size_t k, size_t xs, const uint8_t *blocks,
                                  const uint8_t *scales, size_t n, size_t wrs, float *y, size_t ys) {
    size_t block_count = k / 32, row_bytes = wrs * block_count * 16, row_scales = wrs * block_count;
    // Eight weight rows at a time (as two tiles of four for pairs of tokens, as one of eight for a
    // single token), then four, then one; two tokens at a time, then one.
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const uint8_t *wb = blocks + j * row_bytes, *wsc = scales + j * row_scales;
        size_t i = 0;
        for (; i + 2 <= m; i += 2)
            for (size_t h = 0; h < 8; h += 4)
                tile_avx512(x + i * xs, xs, block_count, wb + h * row_bytes, wsc + h * row_scales, row_bytes,
                            row_scales, y + i * ys + j + h, ys, 4, 2);
        if (i < m) tile_avx512(x + i * xs, xs, block_count, wb, wsc, row_bytes, row_scales, y + i * ys + j, ys, 8, 1);
    }
    for (; j + 4 <= n; j += 4) {
        const uint8_t *wb = blocks + j * row_bytes, *wsc = scales + j * row_scales;
        size_t i = 0;
        for (; i + 2 <= m; i += 2)
            tile_avx512(x + i * xs, xs, block_count, wb, wsc, row_bytes, row_scales, y + i * ys + j, ys, 4, 2);
        if (i < m) tile_avx512(x + i * xs, xs, block_count, wb, wsc, row_bytes, row_scales, y + i * ys + j, ys, 4, 1);
    }
    for (; j < n; j++) {
        const uint8_t *wb = blocks + j * row_bytes, *wsc = scales + j * row_scales;
        size_t i = 0;
        for (; i + 2 <= m; i += 2)
            tile_avx512(x + i * xs, xs, block_count, wb, wsc, row_bytes, row_scales, y + i * ys + j, ys, 1, 2);
        if (i < m) tile_avx512(x + i * xs, xs, block_count, wb, wsc, row_bytes, row_scales, y + i * ys + j, ys, 1, 1);
    }
}

/// Lanes 8h ..< 8h + 8 of a block: bytes 8h ..< 8h + 8 against x[16h ..< 16h + 16] of the block.
SY_MX_AVX2_FN __m256 block_half_avx2(const uint8_t *bytes8, const float *x16) {
    const __m256 magnitudes = _mm256_loadu_ps(doubled_values);
    const __m256i seven = _mm256_set1_epi32(7), eight = _mm256_set1_epi32(8);
    __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)bytes8));
    __m256i lo = b, hi = _mm256_srli_epi32(b, 4);
    // The magnitude from the table, the sign bit (nibble bit 3) moved to bit 31.
    __m256 low = _mm256_xor_ps(
        _mm256_permutevar8x32_ps(magnitudes, _mm256_and_si256(lo, seven)),
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(lo, eight), 28)));
    __m256 high = _mm256_xor_ps(
        _mm256_permutevar8x32_ps(magnitudes, _mm256_and_si256(hi, seven)),
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(hi, eight), 28)));
    __m256 a = _mm256_loadu_ps(x16), c = _mm256_loadu_ps(x16 + 8);
    // shuffle 0x88 / 0xDD: [a0 a2 c0 c2 | a4 a6 c4 c6]; 64-bit permute 0xD8 puts them in order.
    __m256 xe = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, c, 0x88)), 0xD8));
    __m256 xo = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, c, 0xDD)), 0xD8));
    return _mm256_fmadd_ps(high, xo, _mm256_mul_ps(low, xe));
}

SY_MX_AVX2_FN void mxfp4_avx2(const float *x, size_t m, size_t k, size_t xs, const uint8_t *blocks,
                              const uint8_t *scales, size_t n, size_t wrs, float *y, size_t ys) {
    size_t block_count = k / 32;
    for (size_t j = 0; j < n; j++) {
        const uint8_t *wb = blocks + j * wrs * block_count * 16;
        const uint8_t *wsc = scales + j * wrs * block_count;
        for (size_t i = 0; i < m; i++) {
            const float *xr = x + i * xs;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
            for (size_t b = 0; b < block_count; b++) {
                __m256 s = _mm256_set1_ps(half_scale_bits(wsc[b]));
                acc0 = _mm256_fmadd_ps(block_half_avx2(wb + b * 16, xr + b * 32), s, acc0);
                acc1 = _mm256_fmadd_ps(block_half_avx2(wb + b * 16 + 8, xr + b * 32 + 16), s, acc1);
            }
            y[i * ys + j] = hsum16_avx2(acc0, acc1);
        }
    }
}

#endif  // SY_MX_X86

#if SY_MX_ARM64

/// The four u8 lanes q ..< q + 4 of `v` widened to u32 (q a multiple of 4).
static inline uint32x4_t widen_quarter(uint8x16_t v, int q) {
    uint16x8_t half = q < 2 ? vmovl_u8(vget_low_u8(v)) : vmovl_u8(vget_high_u8(v));
    return q % 2 == 0 ? vmovl_u16(vget_low_u16(half)) : vmovl_u16(vget_high_u16(half));
}

/// The doubled values of four nibbles: the magnitude (a small integer, converted exactly) with the
/// sign bit, at bit `sign_shift` of each widened byte, moved to bit 31.
static inline float32x4_t quarter_values(uint8x16_t magnitudes, uint8x16_t signs, int q, int sign_shift) {
    uint32x4_t value = vreinterpretq_u32_f32(vcvtq_f32_u32(widen_quarter(magnitudes, q)));
    uint32x4_t sign = vshlq_u32(widen_quarter(signs, q), vdupq_n_s32(sign_shift));
    return vreinterpretq_f32_u32(veorq_u32(value, sign));
}

static void mxfp4_neon(const float *x, size_t m, size_t k, size_t xs, const uint8_t *blocks, const uint8_t *scales,
                       size_t n, size_t wrs, float *y, size_t ys) {
    static const uint8_t magnitude_table[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, 1, 2, 3, 4, 6, 8, 12};
    const uint8x16_t table = vld1q_u8(magnitude_table);
    size_t block_count = k / 32;
    for (size_t j = 0; j < n; j++) {
        const uint8_t *wb = blocks + j * wrs * block_count * 16;
        const uint8_t *wsc = scales + j * wrs * block_count;
        for (size_t i = 0; i < m; i++) {
            const float *xr = x + i * xs;
            float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
            for (size_t b = 0; b < block_count; b++) {
                float32x4_t s = vdupq_n_f32(half_scale_bits(wsc[b]));
                uint8x16_t bytes = vld1q_u8(wb + b * 16);
                uint8x16_t low = vqtbl1q_u8(table, vandq_u8(bytes, vdupq_n_u8(7)));
                uint8x16_t high = vqtbl1q_u8(table, vandq_u8(vshrq_n_u8(bytes, 4), vdupq_n_u8(7)));
                uint8x16_t low_sign = vandq_u8(bytes, vdupq_n_u8(8)), high_sign = vandq_u8(bytes, vdupq_n_u8(0x80));
                for (int q = 0; q < 4; q++) {
                    // vld2q: lane l of val[0] is x[2l], of val[1] x[2l + 1] (the block's lanes 4q ..< 4q + 4).
                    float32x4x2_t pairs = vld2q_f32(xr + b * 32 + 8 * q);
                    float32x4_t wl = quarter_values(low, low_sign, q, 28);
                    float32x4_t wh = quarter_values(high, high_sign, q, 24);
                    float32x4_t p = vfmaq_f32(vmulq_f32(wl, pairs.val[0]), wh, pairs.val[1]);
                    acc[q] = vfmaq_f32(acc[q], p, s);
                }
            }
            y[i * ys + j] = hsum16_neon(acc);
        }
    }
}

#endif  // SY_MX_ARM64

void sy_matmul_nt_mxfp4_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride,
                            const uint8_t *blocks, const uint8_t *scales, size_t n, size_t w_row_stride, float *y,
                            size_t y_stride) {
    switch (isa) {
#if SY_MX_X86
    case SY_ISA_AVX512:
    case SY_ISA_AMX:
    case SY_ISA_AVX512BF16:
        mxfp4_avx512(x, m, k, x_stride, blocks, scales, n, w_row_stride, y, y_stride);
        return;
    case SY_ISA_AVX2:
    case SY_ISA_AVX2_VNNI:
        mxfp4_avx2(x, m, k, x_stride, blocks, scales, n, w_row_stride, y, y_stride);
        return;
#endif
#if SY_MX_ARM64
    case SY_ISA_NEON:
        mxfp4_neon(x, m, k, x_stride, blocks, scales, n, w_row_stride, y, y_stride);
        return;
#endif
    default:
        mxfp4_scalar(x, m, k, x_stride, blocks, scales, n, w_row_stride, y, y_stride);
        return;
    }
}

void sy_matmul_nt_mxfp4(const float *x, size_t m, size_t k, size_t x_stride, const uint8_t *blocks,
                        const uint8_t *scales, size_t n, size_t w_row_stride, float *y, size_t y_stride) {
    sy_matmul_nt_mxfp4_isa(sy_active_isa(), x, m, k, x_stride, blocks, scales, n, w_row_stride, y, y_stride);
}

// MARK: - The fast product: x quantized to int8 (sy_mxfp4.h, sy_grouped_mxfp4_product)
//
// x is prepared once per call, row by row, in groups of four blocks (the lanes of one AVX-512 vector):
// 64 bytes of the blocks' even elements (16 a block: elements 0, 2, ..., 30, the partners of the low
// nibbles), 64 bytes of their odd elements, 16 int32 corrections (lane 4c + q: -12 times the sum of the
// quarter's 8 values of block c, so that a sum against the unsigned weights w + 12 is the sum against
// w) and 16 f32 block scales (lane 4c + q: dx of block c). Blocks past the row's end are zero.

enum { SY_MXQ_GROUP_BYTES = 256 };

/// The doubled e2m1 values as int8, and the same plus 12 (all in 0 ... 24, for unsigned × signed dots).
static const int8_t doubled_int8[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/// Groups of four blocks in a row of k values.
static size_t mxq_groups(size_t k) { return (k / 32 + 3) / 4; }

/// Prepares rows [0, m) of x into `xp` (m × groups × SY_MXQ_GROUP_BYTES bytes); `q` and `d` hold one
/// row's quantized values and scales as sy_q8_quantize writes them.
static void mxq_prepare(sy_isa isa, const float *x, size_t m, size_t k, size_t xs, uint8_t *xp, int8_t *q, float *d) {
    size_t blocks = k / 32, groups = mxq_groups(k), row_bytes = groups * SY_MXQ_GROUP_BYTES;
    for (size_t i = 0; i < m; i++) {
        sy_q8_quantize_isa(isa, x + i * xs, 1, k, k, q, d);
        uint8_t *row = xp + i * row_bytes;
        memset(row, 0, row_bytes);
        for (size_t b = 0; b < blocks; b++) {
            uint8_t *group = row + (b / 4) * SY_MXQ_GROUP_BYTES;
            size_t c = b % 4;
            int8_t *even = (int8_t *)group + 16 * c, *odd = (int8_t *)group + 64 + 16 * c;
            int32_t correction[4] = {0, 0, 0, 0};
            for (size_t j = 0; j < 16; j++) {
                even[j] = q[b * 32 + 2 * j];
                odd[j] = q[b * 32 + 2 * j + 1];
                correction[j / 4] += even[j] + odd[j];
            }
            for (size_t l = 0; l < 4; l++) {
                int32_t value = -12 * correction[l];
                memcpy(group + 128 + 4 * (4 * c + l), &value, 4);
                memcpy(group + 192 + 4 * (4 * c + l), &d[b], 4);
            }
        }
    }
}

/// The factor of block b's quarter lanes: dx[b] · 2^(s - 128), rounded to f32.
static inline float mxq_factor(const uint8_t *group, size_t c, uint8_t scale) {
    float dx;
    memcpy(&dx, group + 192 + 16 * c, 4);
    return dx * half_scale_bits(scale);
}

static void mxq_scalar(const uint8_t *xp, size_t xps, size_t m, size_t k, const uint8_t *blocks,
                       const uint8_t *scales, size_t n, size_t wrs, float *y, size_t ys) {
    size_t block_count = k / 32;
    for (size_t j = 0; j < n; j++) {
        const uint8_t *wb = blocks + j * wrs * block_count * 16, *wsc = scales + j * wrs * block_count;
        for (size_t i = 0; i < m; i++) {
            float acc[16] = {0};
            for (size_t b = 0; b < block_count; b++) {
                const uint8_t *group = xp + i * xps + (b / 4) * SY_MXQ_GROUP_BYTES;
                size_t c = b % 4;
                const int8_t *even = (const int8_t *)group + 16 * c, *odd = (const int8_t *)group + 64 + 16 * c;
                float factor = mxq_factor(group, c, wsc[b]);
                for (size_t quarter = 0; quarter < 4; quarter++) {
                    int32_t sum = 0;
                    for (size_t l = 4 * quarter; l < 4 * quarter + 4; l++) {
                        uint8_t byte = wb[b * 16 + l];
                        sum += doubled_int8[byte & 15] * even[l] + doubled_int8[byte >> 4] * odd[l];
                    }
                    acc[4 * c + quarter] = fmaf((float)sum, factor, acc[4 * c + quarter]);
                }
            }
            y[i * ys + j] = hsum16_scalar(acc);
        }
    }
}

#if SY_MX_X86

#define SY_MXQ_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,fma"), always_inline)) static inline
#define SY_MXQ_VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vnni,fma"))) static

/// Prefetch distances of the fast products, in bytes ahead in a weight row (and on into the next rows):
/// the rows are read as streams. Where the bf16 kernels prefetch (``sy_stream_prefetch``: every CPU but
/// AMD's) each row is prefetched as they prefetch theirs (``prefetch_weights``: 8 KiB ahead into L2, 2 KiB
/// into L1); measured on an Intel Xeon (AVX-512 bf16 and VNNI, 2 threads, 1.2 GB of gpt-oss-shaped rows,
/// k = 2,880, 3 alternating rounds) against the L1 prefetch 1 KiB ahead alone: m = 1 19-22 -> 30-32 GB/s
/// (the read floor 39.6), m = 2 12.3 -> 28.7, m = 4 9.2 -> 16.9, m = 8 6.0 -> 8.7 (8 KiB into L2 with 1
/// KiB into L1 28-32, 4 KiB 30-31; 2 KiB into L1 alone 26-27); the AVX2 product, which prefetched
/// nothing, m = 1 13.6-14.4 -> 24.1-26.4 GB/s (AVX-VNNI 14.0-14.4 -> 26.3-26.4), m = 2 10.8 -> 13.8. On
/// AMD CPUs the AVX-512 product keeps SY_MXQ_PREFETCH alone (into L1): measured with 2 threads on Zen 4
/// out of cache, 1-row tiles with it read about 1.5× faster than 8-row tiles without it.
enum { SY_MXQ_PREFETCH = 1024 };

/// The factor bits of up to 16 blocks, lane b for block b (2^(s_b - 128) as ``half_scale_bits`` builds
/// it), from their `count` (1-16 or more) scale bytes; lanes past `count` are 0. A tile builds them once
/// for the 4 groups they cover and picks each group's 16 lanes (block c of the group in lanes 4c-4c+3)
/// with one permute. Building them group by group from 4 bytes (broadcast, shuffle, shift, compare) took
/// as much time as the rest of the m = 1 product. `mxfp4_stream 1 1 2` on the Intel Xeon (AVX-512 VNNI;
/// 2 experts, 17.6 MB in the L3, 1 thread) read at 11.1-11.8 GB/s before, 18
/// with the factors left out, and 19.3-20.5 with them built this way (and the groups of 16 blocks run
/// with constant masks); from memory (1.2 GB, 2 threads, 2 alternating rounds): m = 1 18.7 -> 21.7-22.4,
/// m = 4 11.0-11.1 -> 13.8-14.0, m = 8 5.4-5.9 -> 7.2-7.7.
SY_MXQ_VNNI __m512i block_scale_bits_avx512(const uint8_t *wsc, size_t count) {
    __mmask16 valid = count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1);
    __m512i s = _mm512_cvtepu8_epi32(_mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)valid, wsc)));
    __m512i bits = _mm512_slli_epi32(_mm512_sub_epi32(s, _mm512_set1_epi32(1)), 23);
    // 0 and 1 are subnormal factors and 255 infinity (rare: the ordinary bytes take one compare).
    __mmask16 unusual =
        _mm512_mask_cmpgt_epu32_mask(valid, _mm512_sub_epi32(s, _mm512_set1_epi32(2)), _mm512_set1_epi32(252));
    if (__builtin_expect(unusual != 0, 0)) {
        __m512i low = _mm512_sllv_epi32(_mm512_set1_epi32(0x00200000), s);
        bits = _mm512_mask_mov_epi32(bits, _mm512_mask_cmplt_epu32_mask(valid, s, _mm512_set1_epi32(2)), low);
        bits = _mm512_mask_mov_epi32(bits, _mm512_cmpeq_epi32_mask(s, _mm512_set1_epi32(255)),
                                     _mm512_set1_epi32(0x7f800000));
    }
    return _mm512_maskz_mov_epi32(valid, bits);
}

/// Group g (its first `count` blocks, 1-4) of weight rows r < nr ≤ 4 against tokens t < nt ≤ 2 into
/// acc[r][t]: row r's factors are lanes `pick` of bits[r] (``block_scale_bits_avx512``).
SY_MXQ_VNNI void group_mxq_vnni(const uint8_t *xp, size_t xps, size_t g, size_t count, const uint8_t *wb,
                                size_t row_bytes, const __m512i *bits, __m512i pick, __m512 acc[4][2], const int nr,
                                const int nt, const int far) {
    const __m512i table = _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    __mmask64 bytes = count == 4 ? ~(__mmask64)0 : (((__mmask64)1 << (16 * count)) - 1);
    __mmask16 lanes = (__mmask16)(count == 4 ? 0xFFFF : (1u << (4 * count)) - 1);
    __m512i even[2], odd[2], correction[2];
    __m512 dx[2];
    for (int t = 0; t < nt; t++) {
        const uint8_t *group = xp + t * xps + g * SY_MXQ_GROUP_BYTES;
        even[t] = _mm512_loadu_si512(group);
        odd[t] = _mm512_loadu_si512(group + 64);
        correction[t] = _mm512_loadu_si512(group + 128);
        dx[t] = _mm512_loadu_ps(group + 192);
    }
    for (int r = 0; r < nr; r++) {
        if (far)
            prefetch_weights(wb + r * row_bytes + g * 64, 2);
        else
            _mm_prefetch((const char *)(wb + r * row_bytes + g * 64 + SY_MXQ_PREFETCH), _MM_HINT_T0);
        __m512i w = _mm512_maskz_loadu_epi8(bytes, wb + r * row_bytes + g * 64);
        __m512i low = _mm512_shuffle_epi8(table, _mm512_and_si512(w, nibble));
        __m512i high = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(w, 4), nibble));
        __m512 s = _mm512_castsi512_ps(_mm512_permutexvar_epi32(pick, bits[r]));
        for (int t = 0; t < nt; t++) {
            __m512i sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(correction[t], low, even[t]), high, odd[t]);
            acc[r][t] = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(dx[t], s), acc[r][t], lanes);
        }
    }
}

/// Outputs y[t, r] for weight rows r < nr ≤ 4 and tokens t < nt ≤ 2 (prepared row t at xp + t · xps),
/// each with its own accumulator; a weight group is decoded once for the tile's tokens. The groups go 4
/// at a time (16 blocks, their factors built together), the last ones one by one.
SY_MXQ_VNNI void tile_mxq_vnni(const uint8_t *xp, size_t xps, size_t blocks, const uint8_t *wb,
                               const uint8_t *wsc, size_t row_bytes, size_t row_scales, float *y, size_t ys,
                               const int nr, const int nt, const int far) {
    __m512 acc[4][2];
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) acc[r][t] = _mm512_setzero_ps();
    // Lane L of group q's factors is block 4q + L / 4 of the 16 whose bits are built together.
    const __m512i quarter = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i picks[4] = {quarter, _mm512_add_epi32(quarter, _mm512_set1_epi32(4)),
                              _mm512_add_epi32(quarter, _mm512_set1_epi32(8)),
                              _mm512_add_epi32(quarter, _mm512_set1_epi32(12))};
    __m512i bits[4];
    size_t b = 0;
    for (; b + 16 <= blocks; b += 16) {
        for (int r = 0; r < nr; r++) bits[r] = block_scale_bits_avx512(wsc + r * row_scales + b, 16);
        for (int q = 0; q < 4; q++)
            group_mxq_vnni(xp, xps, b / 4 + q, 4, wb, row_bytes, bits, picks[q], acc, nr, nt, far);
    }
    if (b < blocks) {
        for (int r = 0; r < nr; r++) bits[r] = block_scale_bits_avx512(wsc + r * row_scales + b, blocks - b);
        for (int q = 0; b + 4 * (size_t)q < blocks; q++) {
            size_t left = blocks - b - 4 * (size_t)q;
            group_mxq_vnni(xp, xps, b / 4 + q, left < 4 ? left : 4, wb, row_bytes, bits, picks[q], acc, nr, nt, far);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nt; t++) y[t * ys + r] = hsum16_avx512(acc[r][t]);
}

SY_MXQ_VNNI_FN void mxq_avx512vnni(const uint8_t *xp, size_t xps, size_t m, size_t k, const uint8_t *blocks,
                                   const uint8_t *scales, size_t n, size_t wrs, float *y, size_t ys) {
    size_t block_count = k / 32, row_bytes = wrs * block_count * 16, row_scales = wrs * block_count;
    const int far = sy_stream_prefetch();
    // Four weight rows at a time for pairs of tokens (each row's groups decoded once for both), then
    // row by row for a last single token (the rows still in L1); a single token streams row by row.
    for (size_t j = 0; j < n; j += 4) {
        size_t rows = n - j < 4 ? n - j : 4;
        const uint8_t *wb = blocks + j * row_bytes, *wsc = scales + j * row_scales;
        size_t i = 0;
        for (; i + 2 <= m; i += 2) {
            if (rows == 4) {
                tile_mxq_vnni(xp + i * xps, xps, block_count, wb, wsc, row_bytes, row_scales, y + i * ys + j, ys, 4, 2, far);
            } else {
                for (size_t r = 0; r < rows; r++)
                    tile_mxq_vnni(xp + i * xps, xps, block_count, wb + r * row_bytes, wsc + r * row_scales, row_bytes,
                                  row_scales, y + i * ys + j + r, ys, 1, 2, far);
            }
        }
        if (i < m)
            for (size_t r = 0; r < rows; r++)
                tile_mxq_vnni(xp + i * xps, xps, block_count, wb + r * row_bytes, wsc + r * row_scales, row_bytes,
                              row_scales, y + i * ys + j + r, ys, 1, 1, far);
    }
}

/// The factor bits of up to 8 blocks, lane b for block b (as ``block_scale_bits_avx512`` builds them),
/// from their `count` (1-8 or more) scale bytes; lanes past `count` hold a factor of 1/2, never read.
/// Built once for the 2 groups they cover, as on AVX-512. `mxfp4_stream` on the Intel Xeon (17.6 MB in
/// the L3, 1 thread): SWITCHYARD_KERNEL=avx2 8.7-8.9 -> 13.0-13.5 GB/s, avx2vnni 10.0-10.3 -> 14.1-14.8;
/// from memory (1.2 GB, 2 threads, 2 alternating rounds) on avx2: m = 1 16.9-17.0 -> 19.8-20.5, m = 4
/// 6.7-6.9 -> 9.2-9.3, m = 8 3.5-3.7 -> 4.5; on avx2vnni: m = 1 17.6-18.3 -> 21.4-21.8, m = 4 7.8-7.9
/// -> 12.8-12.9, m = 8 3.1-3.7 -> 5.7-6.0.
__attribute__((target("avx2,fma"), always_inline)) static inline __m256i block_scale_bits_avx2(const uint8_t *wsc,
                                                                                                size_t count) {
    uint64_t packed = 0x7f7f7f7f7f7f7f7full;
    memcpy(&packed, wsc, count < 8 ? count : 8);
    __m256i sb = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)packed));
    __m256i bits = _mm256_slli_epi32(_mm256_sub_epi32(sb, _mm256_set1_epi32(1)), 23);
    // 0 and 1 are subnormal factors and 255 infinity (rare: the ordinary bytes take two compares).
    __m256i unusual = _mm256_cmpgt_epi32(_mm256_sub_epi32(sb, _mm256_set1_epi32(2)), _mm256_set1_epi32(252));
    unusual = _mm256_or_si256(unusual, _mm256_cmpgt_epi32(_mm256_set1_epi32(2), sb));
    if (__builtin_expect(!_mm256_testz_si256(unusual, unusual), 0)) {
        __m256i low_bits = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), sb);
        __m256i small = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), sb);
        __m256i top = _mm256_cmpeq_epi32(sb, _mm256_set1_epi32(255));
        bits = _mm256_blendv_epi8(bits, low_bits, small);
        bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7f800000), top);
    }
    return bits;
}

/// The AVX2 form: a group is two halves of two blocks (lanes 0-7 and 8-15 of the shape), the integer
/// sums by `vpmaddubsw` + `vpmaddwd` (no saturation: |(w + 12) · q| ≤ 24 · 127, two of them a pair), or
/// by `vpdpbusd` on AVX-VNNI. A tile takes one weight row against T (1-4) tokens: each half group of the
/// row is decoded (nibbles to values) once for the T tokens, and each token keeps its own accumulators,
/// so every output has the operations of a tile of one; the factor bits of 8 blocks are built at a time
/// (``block_scale_bits_avx2``) and each half group picks its two with one permute. Before the tiles, each
/// token decoded the row again: the gpt-oss-shaped prefill on this path ran at 0.77 of llama.cpp's AVX2
/// build. Measured on the Intel Xeon (`mxfp4_stream`, SWITCHYARD_KERNEL=avx2, 2 threads): m = 4 4.6 ->
/// 6.6 GB/s, m = 8 2.4 -> 3.7, m = 16 1.2 -> 1.8; `generate`'s gpt-oss-shaped prefill 120-148 -> 185-189
/// tok/s.
#define SY_MXQ_AVX2_KERNEL(NAME, ATTRS, INLINE, SUMS)                                                          \
    /* Group g's first `count` (1-4) blocks of the row into acc; their factor bits are lanes 4q-4q+3 of  */    \
    /* `bits` (group q of the 8 blocks they were built for).                                            */    \
    INLINE void NAME##_group(int T, const uint8_t *xp, size_t xps, size_t g, size_t count, const uint8_t *wb,   \
                             int prefetch, __m256i bits, int q, __m256 acc[4][2]) {                            \
        const __m256i table = _mm256_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0, 12,  \
                                               13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0);          \
        const __m256i nibble = _mm256_set1_epi8(0x0F);                                                         \
        const __m256i pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);                                        \
        if (prefetch) prefetch_weights(wb + g * 64, 2); /* the row's first tile streams it in */               \
        for (size_t h = 0; h < 2 && 2 * h < count; h++) {                                                      \
            __m256i w;                                                                                         \
            if (2 * h + 1 < count) {                                                                           \
                w = _mm256_loadu_si256((const __m256i *)(wb + g * 64 + 32 * h));                               \
            } else {                                                                                           \
                w = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)(wb + g * 64 + 32 * h)));          \
            }                                                                                                  \
            __m256i low = _mm256_shuffle_epi8(table, _mm256_and_si256(w, nibble));                             \
            __m256i high = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(w, 4), nibble));      \
            __m256i pick = _mm256_add_epi32(pair, _mm256_set1_epi32(4 * q + 2 * (int)h));                      \
            __m256 s = _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(bits, pick));                          \
            for (int t = 0; t < T; t++) {                                                                      \
                const uint8_t *group = xp + t * xps + g * SY_MXQ_GROUP_BYTES;                                  \
                __m256i even = _mm256_loadu_si256((const __m256i *)(group + 32 * h));                          \
                __m256i odd = _mm256_loadu_si256((const __m256i *)(group + 64 + 32 * h));                      \
                __m256i correction = _mm256_loadu_si256((const __m256i *)(group + 128 + 32 * h));              \
                __m256i sums = SUMS(correction, low, even, high, odd);                                         \
                __m256 factor = _mm256_mul_ps(_mm256_loadu_ps((const float *)(group + 192 + 32 * h)), s);      \
                __m256 product = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), factor, acc[t][h]);                 \
                /* A half block group (odd count): only its first block's four lanes. */                       \
                acc[t][h] = 2 * h + 1 < count ? product : _mm256_blend_ps(acc[t][h], product, 0x0F);           \
            }                                                                                                  \
        }                                                                                                      \
    }                                                                                                          \
    INLINE void NAME##_tile(int T, const uint8_t *xp, size_t xps, size_t block_count, const uint8_t *wb,        \
                            const uint8_t *wsc, int prefetch, float *y, size_t ys) {                           \
        __m256 acc[4][2];                                                                                      \
        for (int t = 0; t < T; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();                              \
        size_t b = 0;                                                                                          \
        for (; b + 8 <= block_count; b += 8) {                                                                 \
            __m256i bits = block_scale_bits_avx2(wsc + b, 8);                                                  \
            NAME##_group(T, xp, xps, b / 4, 4, wb, prefetch, bits, 0, acc);                                    \
            NAME##_group(T, xp, xps, b / 4 + 1, 4, wb, prefetch, bits, 1, acc);                                \
        }                                                                                                      \
        if (b < block_count) {                                                                                 \
            __m256i bits = block_scale_bits_avx2(wsc + b, block_count - b);                                    \
            for (int q = 0; b + 4 * (size_t)q < block_count; q++) {                                            \
                size_t left = block_count - b - 4 * (size_t)q;                                                 \
                NAME##_group(T, xp, xps, b / 4 + q, left < 4 ? left : 4, wb, prefetch, bits, q, acc);          \
            }                                                                                                  \
        }                                                                                                      \
        for (int t = 0; t < T; t++) y[t * ys] = hsum16_avx2(acc[t][0], acc[t][1]);                            \
    }                                                                                                          \
    ATTRS void NAME(const uint8_t *xp, size_t xps, size_t m, size_t k, const uint8_t *blocks,                  \
                    const uint8_t *scales, size_t n, size_t wrs, float *y, size_t ys) {                        \
        size_t block_count = k / 32;                                                                          \
        for (size_t j = 0; j < n; j++) {                                                                       \
            const uint8_t *wb = blocks + j * wrs * block_count * 16, *wsc = scales + j * wrs * block_count;    \
            for (size_t i = 0; i < m; i += 4) {                                                                \
                const uint8_t *x = xp + i * xps;                                                               \
                float *out = y + i * ys + j;                                                                   \
                switch (m - i < 4 ? m - i : 4) {                                                               \
                case 4: NAME##_tile(4, x, xps, block_count, wb, wsc, i == 0, out, ys); break;                  \
                case 3: NAME##_tile(3, x, xps, block_count, wb, wsc, i == 0, out, ys); break;                  \
                case 2: NAME##_tile(2, x, xps, block_count, wb, wsc, i == 0, out, ys); break;                  \
                default: NAME##_tile(1, x, xps, block_count, wb, wsc, i == 0, out, ys); break;                 \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }

__attribute__((target("avx2,fma"), always_inline)) static inline __m256i
mxq_sums_avx2(__m256i correction, __m256i low, __m256i even, __m256i high, __m256i odd) {
    __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(low, even), _mm256_maddubs_epi16(high, odd));
    return _mm256_add_epi32(correction, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

__attribute__((target("avx2,fma,avxvnni"), always_inline)) static inline __m256i
mxq_sums_avxvnni(__m256i correction, __m256i low, __m256i even, __m256i high, __m256i odd) {
    return _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(correction, low, even), high, odd);
}

SY_MXQ_AVX2_KERNEL(mxq_avx2, __attribute__((target("avx2,fma"))) static,
                   __attribute__((target("avx2,fma"), always_inline)) static inline, mxq_sums_avx2)
SY_MXQ_AVX2_KERNEL(mxq_avxvnni, __attribute__((target("avx2,fma,avxvnni"))) static,
                   __attribute__((target("avx2,fma,avxvnni"), always_inline)) static inline, mxq_sums_avxvnni)

static int mxq_vnni_supported(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}

#endif  // SY_MX_X86

#if SY_MX_ARM64

/// NEON: per block, the signed doubled values against the prepared halves with `smull`, quarters
/// summed pairwise (exact integers, as every path).
static void mxq_neon(const uint8_t *xp, size_t xps, size_t m, size_t k, const uint8_t *blocks,
                     const uint8_t *scales, size_t n, size_t wrs, float *y, size_t ys) {
    const int8x16_t table = vld1q_s8(doubled_int8);
    size_t block_count = k / 32;
    for (size_t j = 0; j < n; j++) {
        const uint8_t *wb = blocks + j * wrs * block_count * 16, *wsc = scales + j * wrs * block_count;
        for (size_t i = 0; i < m; i++) {
            float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
            for (size_t b = 0; b < block_count; b++) {
                const uint8_t *group = xp + i * xps + (b / 4) * SY_MXQ_GROUP_BYTES;
                size_t c = b % 4;
                uint8x16_t bytes = vld1q_u8(wb + b * 16);
                int8x16_t low = vqtbl1q_s8(table, vandq_u8(bytes, vdupq_n_u8(15)));
                int8x16_t high = vqtbl1q_s8(table, vshrq_n_u8(bytes, 4));
                int8x16_t even = vld1q_s8((const int8_t *)group + 16 * c);
                int8x16_t odd = vld1q_s8((const int8_t *)group + 64 + 16 * c);
                int16x8_t first = vaddq_s16(vmull_s8(vget_low_s8(low), vget_low_s8(even)),
                                            vmull_s8(vget_low_s8(high), vget_low_s8(odd)));
                int16x8_t second = vaddq_s16(vmull_s8(vget_high_s8(low), vget_high_s8(even)),
                                             vmull_s8(vget_high_s8(high), vget_high_s8(odd)));
                int32x4_t sums = vpaddq_s32(vpaddlq_s16(first), vpaddlq_s16(second));
                float32x4_t factor = vdupq_n_f32(mxq_factor(group, c, wsc[b]));
                acc[c] = vfmaq_f32(acc[c], vcvtq_f32_s32(sums), factor);
            }
            y[i * ys + j] = hsum16_neon(acc);
        }
    }
}

#endif  // SY_MX_ARM64

/// Columns [0, n) of one product on the prepared rows at `xp`, on the path `isa`.
static void mxq_columns(sy_isa isa, const uint8_t *xp, size_t xps, size_t m, size_t k, const uint8_t *blocks,
                        const uint8_t *scales, size_t n, size_t wrs, float *y, size_t ys) {
    switch (isa) {
#if SY_MX_X86
    case SY_ISA_AVX512:
    case SY_ISA_AMX:
    case SY_ISA_AVX512BF16:
        if (mxq_vnni_supported()) {
            mxq_avx512vnni(xp, xps, m, k, blocks, scales, n, wrs, y, ys);
            return;
        }
        mxq_avx2(xp, xps, m, k, blocks, scales, n, wrs, y, ys);
        return;
    case SY_ISA_AVX2: mxq_avx2(xp, xps, m, k, blocks, scales, n, wrs, y, ys); return;
    case SY_ISA_AVX2_VNNI: mxq_avxvnni(xp, xps, m, k, blocks, scales, n, wrs, y, ys); return;
#endif
#if SY_MX_ARM64
    case SY_ISA_NEON: mxq_neon(xp, xps, m, k, blocks, scales, n, wrs, y, ys); return;
#endif
    default: mxq_scalar(xp, xps, m, k, blocks, scales, n, wrs, y, ys); return;
    }
}

/// The calling thread's buffer for prepared x, grown as needed (never shrunk); NULL if it cannot grow.
static uint8_t *mxq_space(size_t bytes) {
    static _Thread_local uint8_t *space = NULL;
    static _Thread_local size_t capacity = 0;
    if (bytes > capacity) {
        size_t grown = bytes < 2 * capacity ? 2 * capacity : bytes;
        void *fresh = NULL;
        if (posix_memalign(&fresh, 64, grown) != 0) return NULL;
        free(space);
        space = fresh;
        capacity = grown;
    }
    return space;
}

/// Prepares rows [0, rows) of x; returns the prepared rows or NULL (allocation failed).
static uint8_t *mxq_prepared(sy_isa isa, const float *x, size_t rows, size_t k, size_t x_stride) {
    size_t row_bytes = mxq_groups(k) * SY_MXQ_GROUP_BYTES, blocks = sy_q8_block_count(k);
    uint8_t *space = mxq_space(rows * row_bytes + blocks * 32 + blocks * sizeof(float));
    if (space == NULL) return NULL;
    float *d = (float *)(void *)(space + rows * row_bytes);
    int8_t *q = (int8_t *)(space + rows * row_bytes + blocks * sizeof(float));
    mxq_prepare(isa, x, rows, k, x_stride, space, q, d);
    return space;
}

int sy_matmul_nt_mxfp4_q8_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride,
                              const uint8_t *blocks, const uint8_t *scales, size_t n, size_t w_row_stride, float *y,
                              size_t y_stride) {
    if (m == 0 || n == 0) return 0;
    uint8_t *xp = mxq_prepared(isa, x, m, k, x_stride);
    if (xp == NULL) return -1;
    mxq_columns(isa, xp, mxq_groups(k) * SY_MXQ_GROUP_BYTES, m, k, blocks, scales, n, w_row_stride, y, y_stride);
    return 0;
}

/// Weight rows per task of a grouped call: a multiple of the AVX-512 tile's 8.
enum { SY_MXQ_TASK_COLUMNS = 32 };

typedef struct mxq_call {
    sy_isa isa;
    const uint8_t *xp;
    size_t xps, k;
    const sy_grouped_mxfp4_product *products;
    size_t count;
    /// Task index where each product's tasks begin (count + 1 entries).
    const size_t *first_task;
} mxq_call;

static void mxq_task(void *context, size_t index) {
    const mxq_call *call = context;
    // The product whose tasks hold `index`: the last s with first_task[s] <= index (a product
    // without tasks shares its first_task with the next one).
    size_t low = 0, high = call->count;
    while (high - low > 1) {
        size_t middle = low + (high - low) / 2;
        if (call->first_task[middle] <= index) low = middle; else high = middle;
    }
    size_t s = low;
    const sy_grouped_mxfp4_product *p = &call->products[s];
    size_t j0 = (index - call->first_task[s]) * SY_MXQ_TASK_COLUMNS;
    size_t columns = p->n - j0 < SY_MXQ_TASK_COLUMNS ? p->n - j0 : SY_MXQ_TASK_COLUMNS;
    size_t row_blocks = p->w_row_stride * (call->k / 32);
    mxq_columns(call->isa, call->xp + p->row * call->xps, call->xps, p->m, call->k, p->blocks + j0 * row_blocks * 16,
                p->scales + j0 * row_blocks, columns, p->w_row_stride, p->y + j0, p->y_stride);
}

int sy_matmul_nt_mxfp4_q8_grouped_isa(sy_isa isa, const float *x, size_t rows, size_t k, size_t x_stride,
                                      const sy_grouped_mxfp4_product *products, size_t count) {
    size_t stack_tasks[65];
    size_t *first_task = count < 65 ? stack_tasks : malloc((count + 1) * sizeof(size_t));
    if (first_task == NULL) return -1;
    first_task[0] = 0;
    for (size_t s = 0; s < count; s++) {
        const sy_grouped_mxfp4_product *p = &products[s];
        if (p->row > rows || p->m > rows - p->row) {
            if (first_task != stack_tasks) free(first_task);
            return -1;
        }
        size_t tasks = p->m == 0 ? 0 : (p->n + SY_MXQ_TASK_COLUMNS - 1) / SY_MXQ_TASK_COLUMNS;
        first_task[s + 1] = first_task[s] + tasks;
    }
    int status = 0;
    if (first_task[count] > 0) {
        const uint8_t *xp = mxq_prepared(isa, x, rows, k, x_stride);
        if (xp == NULL) {
            status = -1;
        } else {
            mxq_call call = {isa, xp, mxq_groups(k) * SY_MXQ_GROUP_BYTES, k, products, count, first_task};
            sy_parallel_for(first_task[count], mxq_task, &call);
        }
    }
    if (first_task != stack_tasks) free(first_task);
    return status;
}
