// MXFP4 products (sy_mxfp4.h): the scalar path, which defines the bits, and the AVX-512, AVX2 and NEON
// paths side by side, each computing the header's reduction shape.
#include "sy_mxfp4.h"
#include "sy_hsum.h"

#include <math.h>
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
