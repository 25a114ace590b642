// FP8 (e4m3fn, block-scaled) products (sy_fp8.h): the widening of a weight row on the scalar path,
// which defines the bits, and on the AVX-512, AVX2 and NEON paths side by side; then the products: at
// m ≤ SY_F8_DIRECT_ROWS each vector path multiplies the weights as it widens them (the f32 kernels'
// operations in their order, see ``rows_direct_avx512``), above it the product of sy_kernels.h runs on
// rows widened into a buffer.
#include "sy_fp8.h"
#include "sy_hsum.h"
#include "sy_prefetch.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SY_F8_X86 1
#else
#define SY_F8_X86 0
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#define SY_F8_ARM64 1
#else
#define SY_F8_ARM64 0
#endif

// MARK: - Values

/// The quiet NaN every path writes for the NaN codes (before the sign bit is set).
#define SY_F8_NAN_BITS 0x7FC00000u
/// Added to a normal code shifted to the f32 mantissa position: the exponent bias 127 - 7.
#define SY_F8_EXPONENT_BIAS (120u << 23)

static inline float f8_bits_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

static inline uint32_t f8_float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

/// The e4m3fn value as every path computes it: a normal code (magnitude ≥ 8) moves its exponent and
/// mantissa into place with the bias added; a subnormal one (< 8) is m · 2^-9 (an exact product); the
/// NaN code (0x7F) becomes a quiet NaN; then the sign bit.
float sy_fp8_e4m3_value(uint8_t byte) {
    uint32_t magnitude = byte & 0x7Fu, sign = (uint32_t)(byte & 0x80u) << 24;
    uint32_t bits;
    if (magnitude == 0x7Fu)
        bits = SY_F8_NAN_BITS;
    else if (magnitude < 8u)
        bits = f8_float_bits((float)magnitude * 0x1p-9f);
    else
        bits = (magnitude << 20) + SY_F8_EXPONENT_BIAS;
    return f8_bits_float(bits | sign);
}

uint8_t sy_fp8_e4m3_from_float(float value) {
    uint8_t sign = (uint8_t)((f8_float_bits(value) >> 24) & 0x80u);
    if (isnan(value)) return sign | 0x7Fu;
    float magnitude = fabsf(value);
    // [448, 464] rounds to 448 and above it saturates: both give the largest finite code.
    if (magnitude >= 448.0f) return sign | 0x7Eu;
    if (magnitude < 0x1p-6f) {
        // Subnormal range: multiples of 2^-9 (the scaling is exact; 8 · 2^-9 is the smallest normal, code 8).
        return sign | (uint8_t)nearbyintf(magnitude * 512.0f);
    }
    int exponent;
    frexpf(magnitude, &exponent);  // magnitude = (1 + m/8) · 2^(exponent - 1)
    // (1 + m/8) · 8 in [8, 16), rounded to an integer, ties to even (an even integer is an even code).
    unsigned steps = (unsigned)nearbyintf(ldexpf(magnitude, 4 - exponent));
    // steps == 16 carries into the exponent field, as it should.
    unsigned code = ((unsigned)(exponent + 6) << 3) + (steps - 8u);
    return sign | (uint8_t)(code > 0x7Eu ? 0x7Eu : code);
}

// MARK: - Widening a row: scalar path

static void dequantize_scalar(const uint8_t *w, size_t k, const float *scales, size_t block_k, float *out) {
    for (size_t p = 0; p < k; p++) out[p] = sy_fp8_e4m3_value(w[p]) * scales[p / block_k];
}

/// Rows of x up to which the vector paths multiply the weights as they widen them, one weight row at a
/// time against tiles of up to SY_F8_TILE_ROWS rows of x (4 on AVX2 and NEON, whose registers hold fewer
/// accumulators), the row widened again for each tile; above it, rows widened into a buffer serve many rows
/// of x each. Measured with Benchmarks/kernels/fp8_stream.c on the Intel Xeon (2 threads, µs an expert,
/// buffer -> direct): AVX-512 m = 5 258-286 -> 171-181, m = 7 299-309 -> 232-237, m = 8 301-321 ->
/// 258-284; AVX2 (tiles of 4) m = 5 344-358 -> 306-311, m = 8 433-441 -> 390-399. At m = 16 the direct
/// product was slower (840 against 550 on AVX-512): each weight row then reads 16 rows of x, past L1.
enum { SY_F8_DIRECT_ROWS = 8, SY_F8_TILE_ROWS = 8 };
_Static_assert(SY_F8_DIRECT_ROWS <= SY_F8_TILE_ROWS, "the AVX-512 direct product takes its rows of x in one tile");

/// Whether a block's scale takes the vector paths' route through f16 (``scaled16_avx512``): unless
/// scale · 256 overflows, that is a finite scale of 2^120 or more (never in a real checkpoint; such blocks
/// take the definition's route, the same bits).
static inline int f16_route(float scale) { return !(isfinite(scale) && fabsf(scale) >= 0x1p120f); }

// The vector paths widen a code by way of f16: the code's magnitude bits shifted left by 7 are an f16
// whose 5-bit exponent field holds e4m3's 4-bit one, so its value is the e4m3 value ÷ 256 exactly (f16's
// exponent bias is 15, e4m3's 7; the subnormal codes become f16 subnormals with the same relation), and
// the sign bit goes to the f16's (the code sign-extended to 16 bits and shifted left by 7 has the sign in
// bits 15 and 14; masking with 0xBF80 clears bit 14). `vcvtph2ps` (F16C, AVX-512F) and `fcvtl` (NEON)
// widen that exactly, and one multiply by scale · 256 (exact while it does not overflow: ``f16_route``)
// rounds the same exact product as the scalar path's e4m3 value · scale. The NaN codes (0x7F, 0xFF) would
// come out as ±1.875, so a run of codes holding one (64 in the direct products, else 16) takes the
// definition's route instead. (A widening to f32 bits without f16 would give subnormal f32 values for
// the subnormal codes, and multiplies with a subnormal operand took about 50 times as long on the Intel
// Xeon measured.) With Benchmarks/kernels/fp8_stream.c (m = 1, 2 threads, DeepSeek-shaped experts from
// memory) on that Xeon: the buffered product of before read 6.6-6.9 GB/s on the AVX-512 path and 4.3-4.7
// on the AVX2 one; the direct products 15.8-16.3 and 11.4-13.0.

#if SY_F8_X86

/// Whether any of 16 codes is a NaN code (its low 7 bits all set).
__attribute__((target("sse2"), always_inline)) static inline int has_nan_code(__m128i codes) {
    __m128i all = _mm_cmpeq_epi8(_mm_or_si128(codes, _mm_set1_epi8((char)0x80)), _mm_set1_epi8(-1));
    return _mm_movemask_epi8(all) != 0;
}

/// Whether any of the 64 codes at `w` is a NaN code.
__attribute__((target("avx2"), always_inline)) static inline int has_nan_code64(const uint8_t *w) {
    const __m256i high = _mm256_set1_epi8((char)0x80);
    __m256i a = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(const void *)w), high);
    __m256i b = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)(const void *)(w + 32)), high);
    // A byte is 0xFF in the larger of the two where it is in either.
    __m256i all = _mm256_cmpeq_epi8(_mm256_max_epu8(a, b), _mm256_set1_epi8(-1));
    return !_mm256_testz_si256(all, all);
}

// MARK: - AVX-512 path

#define SY_F8_AVX512 __attribute__((target("avx512f,fma"), always_inline)) static inline
#define SY_F8_AVX512_FN __attribute__((target("avx512f,fma"))) static

/// 16 codes (widened to 32 bits) as f32 values, the scalar path's bits.
SY_F8_AVX512 __m512 values16_avx512(__m512i codes) {
    __m512i magnitude = _mm512_and_si512(codes, _mm512_set1_epi32(0x7F));
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(codes, _mm512_set1_epi32(0x80)), 24);
    __m512i normal = _mm512_add_epi32(_mm512_slli_epi32(magnitude, 20), _mm512_set1_epi32((int)SY_F8_EXPONENT_BIAS));
    __m512 subnormal = _mm512_mul_ps(_mm512_cvtepi32_ps(magnitude), _mm512_set1_ps(0x1p-9f));
    __mmask16 is_subnormal = _mm512_cmplt_epi32_mask(magnitude, _mm512_set1_epi32(8));
    __mmask16 is_nan = _mm512_cmpeq_epi32_mask(magnitude, _mm512_set1_epi32(0x7F));
    __m512i bits = _mm512_mask_blend_epi32(is_subnormal, normal, _mm512_castps_si512(subnormal));
    bits = _mm512_mask_blend_epi32(is_nan, bits, _mm512_set1_epi32((int)SY_F8_NAN_BITS));
    return _mm512_castsi512_ps(_mm512_or_si512(bits, sign));
}

/// 16 codes at `w` times their block's scale (`scale`; `scaled` = scale · 256), the scalar path's bits: by
/// way of f16 when `f16` is set (the codes known to hold no NaN code, their block on the f16 route), else
/// by the definition's route.
SY_F8_AVX512 __m512 route16_avx512(const uint8_t *w, __m512 scale, __m512 scaled, int f16) {
    __m128i codes = _mm_loadu_si128((const __m128i *)(const void *)w);
    if (__builtin_expect(!f16, 0)) return _mm512_mul_ps(values16_avx512(_mm512_cvtepu8_epi32(codes)), scale);
    __m256i halves = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(codes), 7), _mm256_set1_epi16((short)0xBF80));
    return _mm512_mul_ps(_mm512_cvtph_ps(halves), scaled);
}

/// 32 codes at `w` known to hold no NaN code, on the f16 route, into `lo` (codes 0-15) and `hi` (16-31):
/// the AVX-512BW form, the words of all 32 in one register.
#define SY_F8_AVX512BW __attribute__((target("avx512f,avx512bw,fma"), always_inline)) static inline
SY_F8_AVX512BW void f16_32_avx512bw(const uint8_t *w, __m512 scaled, __m512 *lo, __m512 *hi) {
    __m512i words = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)w));
    __m512i halves = _mm512_and_si512(_mm512_slli_epi16(words, 7), _mm512_set1_epi16((short)0xBF80));
    *lo = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(halves)), scaled);
    *hi = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(halves, 1)), scaled);
}

/// ``route16_avx512`` with the 16 codes checked for NaN codes here; `plain`: the block is off the f16 route.
SY_F8_AVX512 __m512 scaled16_avx512(const uint8_t *w, __m512 scale, __m512 scaled, int plain) {
    int f16 = !plain && !has_nan_code(_mm_loadu_si128((const __m128i *)(const void *)w));
    return route16_avx512(w, scale, scaled, f16);
}

// Both x86 paths below prefetch a weight row as they widen it, as the bf16 kernels do (``prefetch_weights``).
// Measured on an Intel Xeon (2 threads, the DeepSeek-shaped model with FP8 weights, `generate` 64 tokens,
// 3 alternating rounds): 43.9-44.9 -> 46.6-49.5 tok/s on AVX-512, alike on AVX2 (31.7-34.3 -> 33.4-34.7).
// (An earlier session's L2 prefetch alone gave 30.5 -> 31.7 on Zen 4.)

SY_F8_AVX512_FN void dequantize_avx512(const uint8_t *w, size_t k, const float *scales, size_t block_k, float *out) {
    for (size_t b0 = 0, block = 0; b0 < k; b0 += block_k, block++) {
        float s = scales[block];
        __m512 scale = _mm512_set1_ps(s), scaled = _mm512_set1_ps(s * 256.0f);
        int plain = !f16_route(s);
        size_t end = b0 + block_k < k ? b0 + block_k : k, p = b0;
        for (; p + 16 <= end; p += 16) {
            if ((p & 63) == 0) prefetch_weights(w + p, 2);
            _mm512_storeu_ps(out + p, scaled16_avx512(w + p, scale, scaled, plain));
        }
        if (p < end) {  // the row's last codes (block_k is a multiple of 16)
            uint8_t padded[16] = {0};
            memcpy(padded, w + p, end - p);
            _mm512_mask_storeu_ps(out + p, (__mmask16)((1u << (end - p)) - 1u), scaled16_avx512(padded, scale, scaled, plain));
        }
    }
}

/// Rows [0, R) of x (R ≤ SY_F8_TILE_ROWS, row stride xs) against one weight row `w` (its block row of
/// scales `srow`), into y[r · ys], the weights multiplied as they are widened: per output, the f32 AVX-512
/// tile's operations in its order (one 16-lane FMA chain over k, the tail's lanes masked, the tree sum of
/// the 16 lanes), on the values the buffer would hold; so the bits of the product on widened rows,
/// without writing and reading them back. (Two or four weight rows' chains side by side were no faster:
/// the widening's instructions, not the chain's latency, bound it; measured with fp8_stream.c.)
SY_F8_AVX512BW void rows_direct_avx512(int R, const float *x, size_t xs, const uint8_t *w, const float *srow,
                                     size_t block_k, size_t k, float *y, size_t ys, int accumulate) {
    __m512 acc[SY_F8_TILE_ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (size_t b0 = 0, block = 0; b0 < k; b0 += block_k, block++) {
        float s = srow[block];
        __m512 scale = _mm512_set1_ps(s), scaled = _mm512_set1_ps(s * 256.0f);
        int plain = !f16_route(s);
        size_t end = b0 + block_k < k ? b0 + block_k : k, p = b0;
        // Runs of 64 codes with one check for NaN codes, then chunks of 16 with one each.
        for (; p + 64 <= end; p += 64) {
            prefetch_weights(w + p, 2);
            if (__builtin_expect(!plain && !has_nan_code64(w + p), 1)) {
                for (size_t q = p; q < p + 64; q += 32) {
                    __m512 lo, hi;
                    f16_32_avx512bw(w + q, scaled, &lo, &hi);
                    for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * xs + q), lo, acc[r]);
                    for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * xs + q + 16), hi, acc[r]);
                }
                continue;
            }
            for (size_t q = p; q < p + 64; q += 16) {
                __m512 wv = scaled16_avx512(w + q, scale, scaled, plain);
                for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * xs + q), wv, acc[r]);
            }
        }
        for (; p + 16 <= end; p += 16) {
            __m512 wv = scaled16_avx512(w + p, scale, scaled, plain);
            for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * xs + p), wv, acc[r]);
        }
        if (p < end) {  // the row's last codes (block_k is a multiple of 16)
            uint8_t padded[16] = {0};
            memcpy(padded, w + p, end - p);
            __mmask16 mask = (__mmask16)((1u << (end - p)) - 1u);
            __m512 wv = scaled16_avx512(padded, scale, scaled, plain);
            for (int r = 0; r < R; r++)
                acc[r] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(mask, x + r * xs + p), wv, acc[r], mask);
        }
    }
    for (int r = 0; r < R; r++) {
        float sum = hsum16_avx512(acc[r]);
        y[r * ys] = accumulate ? y[r * ys] + sum : sum;
    }
}

// MARK: - AVX2 path

#define SY_F8_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline

/// 8 codes at `w` as f32 values times `scale`, the scalar path's bits.
SY_F8_AVX2 __m256 values8_avx2(const uint8_t *w, __m256 scale) {
    __m256i codes = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)w));
    __m256i magnitude = _mm256_and_si256(codes, _mm256_set1_epi32(0x7F));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(codes, _mm256_set1_epi32(0x80)), 24);
    __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(magnitude, 20), _mm256_set1_epi32((int)SY_F8_EXPONENT_BIAS));
    __m256 subnormal = _mm256_mul_ps(_mm256_cvtepi32_ps(magnitude), _mm256_set1_ps(0x1p-9f));
    __m256i is_subnormal = _mm256_cmpgt_epi32(_mm256_set1_epi32(8), magnitude);
    __m256i is_nan = _mm256_cmpeq_epi32(magnitude, _mm256_set1_epi32(0x7F));
    __m256i bits = _mm256_blendv_epi8(normal, _mm256_castps_si256(subnormal), is_subnormal);
    bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32((int)SY_F8_NAN_BITS), is_nan);
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_or_si256(bits, sign)), scale);
}

#define SY_F8_F16C __attribute__((target("avx2,fma,f16c"), always_inline)) static inline
#define SY_F8_F16C_FN __attribute__((target("avx2,fma,f16c"))) static

/// Whether the AVX2 path can take the f16 route (F16C: every AVX2 CPU made has it; without it every block
/// takes the definition's route, the same bits). A load of the CPU model the runtime filled in at start.
static int f16c_supported(void) { return __builtin_cpu_supports("f16c"); }

/// ``route16_avx512`` on the AVX2 path: lanes 0-7 into `lo`, 8-15 into `hi`.
SY_F8_F16C void route16_avx2(const uint8_t *w, __m256 scale, __m256 scaled, int f16, __m256 *lo, __m256 *hi) {
    __m128i codes = _mm_loadu_si128((const __m128i *)(const void *)w);
    if (__builtin_expect(!f16, 0)) {
        *lo = values8_avx2(w, scale);
        *hi = values8_avx2(w + 8, scale);
        return;
    }
    __m256i halves = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(codes), 7), _mm256_set1_epi16((short)0xBF80));
    *lo = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(halves)), scaled);
    *hi = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(halves, 1)), scaled);
}

/// ``scaled16_avx512`` on the AVX2 path.
SY_F8_F16C void scaled16_avx2(const uint8_t *w, __m256 scale, __m256 scaled, int plain, __m256 *lo, __m256 *hi) {
    int f16 = !plain && !has_nan_code(_mm_loadu_si128((const __m128i *)(const void *)w));
    route16_avx2(w, scale, scaled, f16, lo, hi);
}

SY_F8_F16C_FN void dequantize_avx2(const uint8_t *w, size_t k, const float *scales, size_t block_k, float *out) {
    const int f16c = f16c_supported();
    for (size_t b0 = 0, block = 0; b0 < k; b0 += block_k, block++) {
        float s = scales[block];
        __m256 scale = _mm256_set1_ps(s), scaled = _mm256_set1_ps(s * 256.0f), lo, hi;
        int plain = !f16c || !f16_route(s);
        size_t end = b0 + block_k < k ? b0 + block_k : k, p = b0;
        for (; p + 16 <= end; p += 16) {
            if ((p & 63) == 0) prefetch_weights(w + p, 2);
            scaled16_avx2(w + p, scale, scaled, plain, &lo, &hi);
            _mm256_storeu_ps(out + p, lo);
            _mm256_storeu_ps(out + p + 8, hi);
        }
        if (p < end) {
            uint8_t padded[16] = {0};
            float values[16];
            memcpy(padded, w + p, end - p);
            scaled16_avx2(padded, scale, scaled, plain, &lo, &hi);
            _mm256_storeu_ps(values, lo);
            _mm256_storeu_ps(values + 8, hi);
            memcpy(out + p, values, (end - p) * sizeof(float));
        }
    }
}

/// The lane mask for the first `count` (0 ... 8) of 8 lanes.
SY_F8_F16C __m256i mask8_f16c(size_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// ``rows_direct_avx512`` on the AVX2 path: per output the AVX2 tile's operations in its order (lanes
/// 0-7 and 8-15 in two FMA chains, the tail's lanes blended, ``hsum16_avx2``).
SY_F8_F16C void rows_direct_avx2(int R, const float *x, size_t xs, const uint8_t *w, const float *srow,
                                 size_t block_k, size_t k, float *y, size_t ys, int accumulate) {
    __m256 lo[4], hi[4], wlo, whi;
    const int f16c = f16c_supported();
    for (int r = 0; r < R; r++) lo[r] = hi[r] = _mm256_setzero_ps();
    for (size_t b0 = 0, block = 0; b0 < k; b0 += block_k, block++) {
        float s = srow[block];
        __m256 scale = _mm256_set1_ps(s), scaled = _mm256_set1_ps(s * 256.0f);
        int plain = !f16c || !f16_route(s);
        size_t end = b0 + block_k < k ? b0 + block_k : k, p = b0;
        for (; p + 64 <= end; p += 64) {
            prefetch_weights(w + p, 2);
            int f16 = !plain && !has_nan_code64(w + p);
            for (size_t q = p; q < p + 64; q += 16) {
                route16_avx2(w + q, scale, scaled, f16, &wlo, &whi);
                for (int r = 0; r < R; r++) {
                    lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * xs + q), wlo, lo[r]);
                    hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * xs + q + 8), whi, hi[r]);
                }
            }
        }
        for (; p + 16 <= end; p += 16) {
            scaled16_avx2(w + p, scale, scaled, plain, &wlo, &whi);
            for (int r = 0; r < R; r++) {
                lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * xs + p), wlo, lo[r]);
                hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * xs + p + 8), whi, hi[r]);
            }
        }
        if (p < end) {
            size_t left = end - p, left_lo = left < 8 ? left : 8, left_hi = left > 8 ? left - 8 : 0;
            __m256i mlo = mask8_f16c(left_lo), mhi = mask8_f16c(left_hi);
            uint8_t padded[16] = {0};
            memcpy(padded, w + p, left);
            scaled16_avx2(padded, scale, scaled, plain, &wlo, &whi);
            for (int r = 0; r < R; r++) {
                __m256 xlo = _mm256_maskload_ps(x + r * xs + p, mlo), xhi = _mm256_maskload_ps(x + r * xs + p + 8, mhi);
                lo[r] = _mm256_blendv_ps(lo[r], _mm256_fmadd_ps(xlo, wlo, lo[r]), _mm256_castsi256_ps(mlo));
                hi[r] = _mm256_blendv_ps(hi[r], _mm256_fmadd_ps(xhi, whi, hi[r]), _mm256_castsi256_ps(mhi));
            }
        }
    }
    for (int r = 0; r < R; r++) {
        float sum = hsum16_avx2(lo[r], hi[r]);
        y[r * ys] = accumulate ? y[r * ys] + sum : sum;
    }
}

#endif  // SY_F8_X86

#if SY_F8_ARM64

// MARK: - NEON path

/// 4 codes (widened to 32 bits) as f32 values times `scale`, the scalar path's bits.
static inline float32x4_t values4_neon(uint32x4_t codes, float32x4_t scale) {
    uint32x4_t magnitude = vandq_u32(codes, vdupq_n_u32(0x7F));
    uint32x4_t sign = vshlq_n_u32(vandq_u32(codes, vdupq_n_u32(0x80)), 24);
    uint32x4_t normal = vaddq_u32(vshlq_n_u32(magnitude, 20), vdupq_n_u32(SY_F8_EXPONENT_BIAS));
    float32x4_t subnormal = vmulq_f32(vcvtq_f32_u32(magnitude), vdupq_n_f32(0x1p-9f));
    uint32x4_t bits = vbslq_u32(vcltq_u32(magnitude, vdupq_n_u32(8)), vreinterpretq_u32_f32(subnormal), normal);
    bits = vbslq_u32(vceqq_u32(magnitude, vdupq_n_u32(0x7F)), vdupq_n_u32(SY_F8_NAN_BITS), bits);
    return vmulq_f32(vreinterpretq_f32_u32(vorrq_u32(bits, sign)), scale);
}

/// 16 codes at `w` as f32 values times `scale`, into out[0 ..< 16].
static inline void values16_neon(const uint8_t *w, float32x4_t scale, float *out) {
    uint8x16_t bytes = vld1q_u8(w);
    uint16x8_t low = vmovl_u8(vget_low_u8(bytes)), high = vmovl_u8(vget_high_u8(bytes));
    vst1q_f32(out, values4_neon(vmovl_u16(vget_low_u16(low)), scale));
    vst1q_f32(out + 4, values4_neon(vmovl_u16(vget_high_u16(low)), scale));
    vst1q_f32(out + 8, values4_neon(vmovl_u16(vget_low_u16(high)), scale));
    vst1q_f32(out + 12, values4_neon(vmovl_u16(vget_high_u16(high)), scale));
}

/// ``scaled16_avx512`` on the NEON path: lanes 4q ... 4q + 3 into out[q].
static inline void scaled16_neon(const uint8_t *w, float32x4_t scale, float32x4_t scaled, int plain,
                                 float32x4_t out[4]) {
    uint8x16_t codes = vld1q_u8(w);
    // A NaN code has its low 7 bits set: `| 0x80` makes it 0xFF.
    if (__builtin_expect(plain | (vmaxvq_u8(vceqq_u8(vorrq_u8(codes, vdupq_n_u8(0x80)), vdupq_n_u8(0xFF))) != 0), 0)) {
        float values[16];
        values16_neon(w, scale, values);
        for (int q = 0; q < 4; q++) out[q] = vld1q_f32(values + 4 * q);
        return;
    }
    int8x16_t signed_codes = vreinterpretq_s8_u8(codes);
    int16x8_t mask = vdupq_n_s16((int16_t)0xBF80);
    int16x8_t low = vandq_s16(vshlq_n_s16(vmovl_s8(vget_low_s8(signed_codes)), 7), mask);
    int16x8_t high = vandq_s16(vshlq_n_s16(vmovl_high_s8(signed_codes), 7), mask);
    float16x8_t low_halves = vreinterpretq_f16_s16(low), high_halves = vreinterpretq_f16_s16(high);
    out[0] = vmulq_f32(vcvt_f32_f16(vget_low_f16(low_halves)), scaled);
    out[1] = vmulq_f32(vcvt_high_f32_f16(low_halves), scaled);
    out[2] = vmulq_f32(vcvt_f32_f16(vget_low_f16(high_halves)), scaled);
    out[3] = vmulq_f32(vcvt_high_f32_f16(high_halves), scaled);
}

static void dequantize_neon(const uint8_t *w, size_t k, const float *scales, size_t block_k, float *out) {
    for (size_t b0 = 0, block = 0; b0 < k; b0 += block_k, block++) {
        float s = scales[block];
        float32x4_t scale = vdupq_n_f32(s), scaled = vdupq_n_f32(s * 256.0f), values[4];
        int plain = !f16_route(s);
        size_t end = b0 + block_k < k ? b0 + block_k : k, p = b0;
        for (; p + 16 <= end; p += 16) {
            scaled16_neon(w + p, scale, scaled, plain, values);
            for (int q = 0; q < 4; q++) vst1q_f32(out + p + 4 * q, values[q]);
        }
        if (p < end) {
            uint8_t padded[16] = {0};
            float tail[16];
            memcpy(padded, w + p, end - p);
            scaled16_neon(padded, scale, scaled, plain, values);
            for (int q = 0; q < 4; q++) vst1q_f32(tail + 4 * q, values[q]);
            memcpy(out + p, tail, (end - p) * sizeof(float));
        }
    }
}

/// ``rows_direct_avx512`` on the NEON path: per output the NEON tile's operations in its order (lanes
/// 4q ... 4q + 3 in FMA chain q, the tail's lanes kept by a bit select, ``hsum16_neon``).
static void rows_direct_neon(int R, const float *x, size_t xs, const uint8_t *w, const float *srow, size_t block_k,
                             size_t k, float *y, size_t ys, int accumulate) {
    static const uint32_t index[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    float32x4_t acc[4][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_f32(0.0f);
    for (size_t b0 = 0, block = 0; b0 < k; b0 += block_k, block++) {
        float s = srow[block];
        float32x4_t scale = vdupq_n_f32(s), scaled = vdupq_n_f32(s * 256.0f), wv[4];
        int plain = !f16_route(s);
        size_t end = b0 + block_k < k ? b0 + block_k : k, p = b0;
        for (; p + 16 <= end; p += 16) {
            scaled16_neon(w + p, scale, scaled, plain, wv);
            for (int r = 0; r < R; r++)
                for (int q = 0; q < 4; q++) acc[r][q] = vfmaq_f32(acc[r][q], vld1q_f32(x + r * xs + p + 4 * q), wv[q]);
        }
        if (p < end) {
            size_t left = end - p;
            uint8_t padded[16] = {0};
            memcpy(padded, w + p, left);
            scaled16_neon(padded, scale, scaled, plain, wv);
            uint32x4_t mask[4];
            for (int q = 0; q < 4; q++) mask[q] = vcltq_u32(vld1q_u32(index + 4 * q), vdupq_n_u32((uint32_t)left));
            for (int r = 0; r < R; r++) {
                float xt[16] = {0};
                memcpy(xt, x + r * xs + p, left * sizeof(float));
                for (int q = 0; q < 4; q++)
                    acc[r][q] = vbslq_f32(mask[q], vfmaq_f32(acc[r][q], vld1q_f32(xt + 4 * q), wv[q]), acc[r][q]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        float sum = hsum16_neon(acc[r]);
        y[r * ys] = accumulate ? y[r * ys] + sum : sum;
    }
}

#endif  // SY_F8_ARM64

void sy_fp8_dequantize_row_isa(sy_isa isa, const uint8_t *w, size_t k, const float *scales, size_t block_k,
                               float *out) {
    switch (isa) {
#if SY_F8_X86
    case SY_ISA_AVX512:
    case SY_ISA_AMX:
    case SY_ISA_AVX512BF16: dequantize_avx512(w, k, scales, block_k, out); return;
    case SY_ISA_AVX2:
    case SY_ISA_AVX2_VNNI: dequantize_avx2(w, k, scales, block_k, out); return;
#endif
#if SY_F8_ARM64
    case SY_ISA_NEON: dequantize_neon(w, k, scales, block_k, out); return;
#endif
    default: dequantize_scalar(w, k, scales, block_k, out); return;
    }
}

#if SY_F8_X86
/// Weight rows [0, n) (row j at w + j · k, its scale row at scales + ((first + j) / block_n) · scale_stride,
/// `first` the row's index in the whole weight) against rows [0, m) of x (m ≤ SY_F8_DIRECT_ROWS) into
/// y[i · ys + j], one weight row at a time against each tile of rows of x; R is a constant in each tile
/// call (the accumulators stay in registers).
__attribute__((target("avx512f,avx512bw,fma"))) static void direct_avx512(size_t m, const float *x, size_t xs,
    const uint8_t *w, size_t first, size_t n, size_t k, const float *scales, size_t block_n, size_t scale_stride,
    size_t block_k, float *y, size_t ys, int accumulate) {
    for (size_t j = 0; j < n; j++) {
        const float *srow = scales + ((first + j) / block_n) * scale_stride;
        const uint8_t *row = w + j * k;
        switch (m) {  // m ≤ SY_F8_DIRECT_ROWS = SY_F8_TILE_ROWS: one tile
        case 8: rows_direct_avx512(8, x, xs, row, srow, block_k, k, y + j, ys, accumulate); break;
        case 7: rows_direct_avx512(7, x, xs, row, srow, block_k, k, y + j, ys, accumulate); break;
        case 6: rows_direct_avx512(6, x, xs, row, srow, block_k, k, y + j, ys, accumulate); break;
        case 5: rows_direct_avx512(5, x, xs, row, srow, block_k, k, y + j, ys, accumulate); break;
        case 4: rows_direct_avx512(4, x, xs, row, srow, block_k, k, y + j, ys, accumulate); break;
        case 3: rows_direct_avx512(3, x, xs, row, srow, block_k, k, y + j, ys, accumulate); break;
        case 2: rows_direct_avx512(2, x, xs, row, srow, block_k, k, y + j, ys, accumulate); break;
        default: rows_direct_avx512(1, x, xs, row, srow, block_k, k, y + j, ys, accumulate); break;
        }
    }
}

SY_F8_F16C_FN void direct_avx2(size_t m, const float *x, size_t xs, const uint8_t *w, size_t first, size_t n, size_t k,
                               const float *scales, size_t block_n, size_t scale_stride, size_t block_k, float *y,
                               size_t ys, int accumulate) {
    for (size_t j = 0; j < n; j++) {
        const float *srow = scales + ((first + j) / block_n) * scale_stride;
        const uint8_t *row = w + j * k;
        for (size_t i = 0; i < m; i += 4) {
            const float *xi = x + i * xs;
            float *yi = y + i * ys + j;
            switch (m - i < 4 ? m - i : 4) {
            case 4: rows_direct_avx2(4, xi, xs, row, srow, block_k, k, yi, ys, accumulate); break;
            case 3: rows_direct_avx2(3, xi, xs, row, srow, block_k, k, yi, ys, accumulate); break;
            case 2: rows_direct_avx2(2, xi, xs, row, srow, block_k, k, yi, ys, accumulate); break;
            default: rows_direct_avx2(1, xi, xs, row, srow, block_k, k, yi, ys, accumulate); break;
            }
        }
    }
}
#endif

/// How a path multiplies the weights as it widens them at m ≤ SY_F8_DIRECT_ROWS: AVX-512 with BW, else
/// AVX2 (an AVX-512 CPU without BW too: the same bits), NEON; none on the scalar path.
typedef enum f8_direct { F8_DIRECT_NONE, F8_DIRECT_AVX512, F8_DIRECT_AVX2, F8_DIRECT_NEON } f8_direct;

static f8_direct direct_kind(sy_isa isa) {
    switch (isa) {
#if SY_F8_X86
    case SY_ISA_AVX512:
    case SY_ISA_AMX:
    case SY_ISA_AVX512BF16:
        return __builtin_cpu_supports("avx512bw") ? F8_DIRECT_AVX512 : F8_DIRECT_AVX2;
    case SY_ISA_AVX2:
    case SY_ISA_AVX2_VNNI: return F8_DIRECT_AVX2;
#endif
#if SY_F8_ARM64
    case SY_ISA_NEON: return F8_DIRECT_NEON;
#endif
    default: return F8_DIRECT_NONE;
    }
}

/// Weight rows [0, n) against rows [0, m) of x (m ≤ SY_F8_DIRECT_ROWS) the `kind` way (not
/// F8_DIRECT_NONE); the arguments as ``direct_avx512`` takes them.
static void direct_rows(f8_direct kind, size_t m, const float *x, size_t xs, const uint8_t *w, size_t first,
                        size_t n, size_t k,
                        const float *scales, size_t block_n, size_t scale_stride, size_t block_k, float *y, size_t ys,
                        int accumulate) {
#if SY_F8_X86
    if (kind == F8_DIRECT_AVX512)
        direct_avx512(m, x, xs, w, first, n, k, scales, block_n, scale_stride, block_k, y, ys, accumulate);
    else if (kind == F8_DIRECT_AVX2)
        direct_avx2(m, x, xs, w, first, n, k, scales, block_n, scale_stride, block_k, y, ys, accumulate);
#endif
#if SY_F8_ARM64
    if (kind == F8_DIRECT_NEON)
        for (size_t j = 0; j < n; j++)
            for (size_t i = 0; i < m; i += 4)
                rows_direct_neon(m - i < 4 ? (int)(m - i) : 4, x + i * xs, xs, w + j * k,
                                 scales + ((first + j) / block_n) * scale_stride, block_k, k, y + i * ys + j, ys,
                                 accumulate);
#endif
    (void)kind, (void)m, (void)x, (void)xs, (void)w, (void)first, (void)n, (void)k, (void)scales, (void)block_n;
    (void)scale_stride, (void)block_k, (void)y, (void)ys, (void)accumulate;
}

/// Floats of widened weight rows a thread holds at once (64 KiB; more where one tile of the f32 kernel's
/// weight rows takes more): the rows stay in L1/L2 while the f32 kernel runs over them.
enum { SY_F8_BUFFER_FLOATS = 16384, SY_F8_MAX_GROUP = 16 };
/// Rows of x per pass (as the f32 kernel blocks them): about 384 KiB of x (of its k-chunk) stays in L2
/// while every weight row is widened once per pass. Blocking never changes arithmetic, only the loop order.
enum { SY_F8_X_BLOCK_BYTES = 384 * 1024 };
/// The buffered product goes through k in chunks of this many values (whole blocks of block_k values, or
/// one block where a block is more; all of k where k is less), the f32 kernel's lane sums kept between
/// them (``sy_matmul_nt_chunk_isa``): a chunk of each of the group's rows is widened at a time, so the
/// group keeps its 16 rows (32 KiB, in L1 beside a tile of x's chunk) and x its rows whatever k is (at
/// k = 7,168 there were 4 rows of 28 KiB, and 13 rows of x, each weight row widened again for every 13).
/// Measured on the Intel Xeon (2 threads, 3 alternating rounds, the same bits), chunks of 1,024 past k =
/// 1,024 against whole rows: m = 128, k = 7,168 (DeepSeek-V3's hidden size), n = 256, 66-84 -> 125-144
/// GFLOP/s on `avx512bf16` and 55-57 -> 92-94 on SWITCHYARD_KERNEL=avx2; m = 48, k = 2,816, n = 512,
/// 105-107 -> 148-150 and 68-71 -> 90. Then chunks of 512 at every k, with the chunk kernels' loop order:
/// see ``chunk_avx512`` and ``chunk_avx2`` (256 alike, 1,024 slower).
enum { SY_F8_CHUNK = 512 };
/// Products smaller than this many multiply-adds run on the caller alone (as sy_kernels.c decides).
enum { SY_F8_PARALLEL_MIN_WORK = 1 << 15 };

/// The calling thread's buffer for widened rows, grown as needed and kept (no allocation per product).
static _Thread_local float *widened_rows = NULL;
static _Thread_local size_t widened_capacity = 0;

static float *widened_space(size_t floats) {
    if (floats > widened_capacity) {
        float *grown = realloc(widened_rows, floats * sizeof(float));
        if (grown == NULL) return NULL;
        widened_rows = grown;
        widened_capacity = floats;
    }
    return widened_rows;
}

/// The calling thread's lane sums of a k-chunked product (64-byte aligned, as sy_matmul_nt_chunk_isa
/// takes them), grown as needed and kept.
static _Thread_local float *lane_sums = NULL;
static _Thread_local size_t lane_sums_capacity = 0;

static float *lane_sums_space(size_t floats) {
    if (floats > lane_sums_capacity) {
        void *grown = NULL;
        if (posix_memalign(&grown, 64, floats * sizeof(float)) != 0) return NULL;
        free(lane_sums);
        lane_sums = grown;
        lane_sums_capacity = floats;
    }
    return lane_sums;
}

typedef struct fp8_product {
    sy_isa isa;
    const float *x;
    size_t m, k, xs;
    const uint8_t *w;
    size_t n;
    const float *scales;
    size_t block_n, block_k, scale_stride;
    float *y;
    size_t ys;
    int accumulate;
    /// Weight rows widened at a time, and columns per piece of a threaded product (a multiple of it).
    size_t group, piece;
    /// Values of k widened and multiplied at a time (all of k, or whole blocks: see SY_F8_CHUNK).
    size_t chunk;
    _Atomic int failed;
} fp8_product;

/// Columns [j0, j1) of the product, on the calling thread.
static int product_columns(fp8_product *job, size_t j0, size_t j1) {
    size_t k = job->k, group = job->group;
    f8_direct direct = job->m <= SY_F8_DIRECT_ROWS && k > 0 ? direct_kind(job->isa) : F8_DIRECT_NONE;
    if (direct != F8_DIRECT_NONE) {
        direct_rows(direct, job->m, job->x, job->xs, job->w + j0 * k, j0, j1 - j0, k,
                    job->scales, job->block_n, job->scale_stride, job->block_k, job->y + j0, job->ys,
                    job->accumulate);
        return 0;
    }
    size_t chunk = job->chunk > 0 ? job->chunk : 1;
    float *buffer = widened_space(group * chunk);
    if (buffer == NULL) return -1;
    size_t x_rows = SY_F8_X_BLOCK_BYTES / (sizeof(float) * chunk);
    if (x_rows < 8) x_rows = 8;
    if (x_rows > job->m) x_rows = job->m;
    float *sums = lane_sums_space(x_rows * group * 16);
    if (sums == NULL) return -1;
    for (size_t i0 = 0; i0 < job->m; i0 += x_rows) {
        size_t rows = job->m - i0 < x_rows ? job->m - i0 : x_rows;
        for (size_t j = j0; j < j1; j += group) {
            size_t count = j1 - j < group ? j1 - j : group;
            size_t p0 = 0;
            do {  // k's chunks (one, empty, when k is 0)
                size_t length = k - p0 < chunk ? k - p0 : chunk;
                for (size_t r = 0; r < count; r++) {
                    size_t row = j + r;
                    sy_fp8_dequantize_row_isa(job->isa, job->w + row * k + p0, length,
                                              job->scales + (row / job->block_n) * job->scale_stride +
                                                  p0 / job->block_k,
                                              job->block_k, buffer + r * length);
                }
                // On the calling thread (inside a threaded product, its thread): the f32 kernel's bits.
                sy_matmul_nt_chunk_isa(job->isa, job->x + i0 * job->xs + p0, rows, length, job->xs, buffer, count,
                                       length, sums, p0 == 0, p0 + length == k, job->y + i0 * job->ys + j, job->ys,
                                       job->accumulate);
                p0 += length;
            } while (p0 < k);
        }
    }
    return 0;
}

static void product_piece(void *context, size_t index) {
    fp8_product *job = context;
    size_t j0 = index * job->piece;
    size_t j1 = j0 + job->piece < job->n ? j0 + job->piece : job->n;
    if (j0 < j1 && product_columns(job, j0, j1) != 0) atomic_store_explicit(&job->failed, 1, memory_order_relaxed);
}

int sy_matmul_nt_fp8_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const uint8_t *w, size_t n,
                         const float *scales, size_t block_n, size_t block_k, float *y, size_t y_stride,
                         int accumulate) {
    if (block_n == 0 || block_k == 0 || block_k % 16 != 0) return -1;
    if (m == 0 || n == 0) return 0;
    size_t chunk = k;
    if (k > SY_F8_CHUNK) chunk = block_k < SY_F8_CHUNK ? SY_F8_CHUNK / block_k * block_k : block_k;
    // A whole number of the f32 kernel's tiles of weight rows, at least one (past 64 KiB of rows then).
    size_t tile = sy_matmul_nt_tile_columns(isa), group = SY_F8_BUFFER_FLOATS / (chunk > 0 ? chunk : 1);
    if (group > SY_F8_MAX_GROUP) group = SY_F8_MAX_GROUP;
    group = group < tile ? tile : group / tile * tile;
    fp8_product job = {isa, x, m, k, x_stride, w, n, scales, block_n, block_k, (k + block_k - 1) / block_k,
                       y, y_stride, accumulate, group, n, chunk, 0};
    size_t threads = (size_t)sy_thread_count();
    size_t groups = (n + group - 1) / group;
    if (threads <= 1 || groups <= 1 || m * n * (k > 0 ? k : 1) < SY_F8_PARALLEL_MIN_WORK)
        return product_columns(&job, 0, n);
    // About four pieces a thread (whole groups each), so a thread that starts late does less; the
    // bits never depend on the split (every column is the same operations on whichever thread).
    size_t pieces = threads * 4 < groups ? threads * 4 : groups;
    job.piece = (groups + pieces - 1) / pieces * group;
    pieces = (n + job.piece - 1) / job.piece;
    sy_parallel_for(pieces, product_piece, &job);
    return atomic_load_explicit(&job.failed, memory_order_relaxed) ? -1 : 0;
}

int sy_matmul_nt_fp8(const float *x, size_t m, size_t k, size_t x_stride, const uint8_t *w, size_t n,
                     const float *scales, size_t block_n, size_t block_k, float *y, size_t y_stride, int accumulate) {
    return sy_matmul_nt_fp8_isa(sy_active_isa(), x, m, k, x_stride, w, n, scales, block_n, block_k, y, y_stride,
                                accumulate);
}
