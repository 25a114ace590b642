// FP8 (e4m3fn, block-scaled) products (sy_fp8.h): the widening of a weight row on the scalar path,
// which defines the bits, and on the AVX-512, AVX2 and NEON paths side by side; then the product of
// sy_kernels.h on the widened rows.
#include "sy_fp8.h"
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

#if SY_F8_X86

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

// Both x86 paths below prefetch a weight row as they widen it, as the bf16 kernels do (``prefetch_weights``).
// Measured on an Intel Xeon (2 threads, the DeepSeek-shaped model with FP8 weights, `generate` 64 tokens,
// 3 alternating rounds): 43.9-44.9 -> 46.6-49.5 tok/s on AVX-512, alike on AVX2 (31.7-34.3 -> 33.4-34.7).
// (An earlier session's L2 prefetch alone gave 30.5 -> 31.7 on Zen 4.)

SY_F8_AVX512_FN void dequantize_avx512(const uint8_t *w, size_t k, const float *scales, size_t block_k, float *out) {
    size_t p = 0;
    for (; p + 16 <= k; p += 16) {
        if ((p & 63) == 0) prefetch_weights(w + p, 2);
        __m512i codes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(w + p)));
        // block_k is a multiple of 16: the 16 values share one scale.
        _mm512_storeu_ps(out + p, _mm512_mul_ps(values16_avx512(codes), _mm512_set1_ps(scales[p / block_k])));
    }
    if (p < k) {
        uint8_t padded[16] = {0};
        memcpy(padded, w + p, k - p);
        __m512i codes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)padded));
        __m512 values = _mm512_mul_ps(values16_avx512(codes), _mm512_set1_ps(scales[p / block_k]));
        _mm512_mask_storeu_ps(out + p, (__mmask16)((1u << (k - p)) - 1u), values);
    }
}

// MARK: - AVX2 path

#define SY_F8_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline
#define SY_F8_AVX2_FN __attribute__((target("avx2,fma"))) static

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

SY_F8_AVX2_FN void dequantize_avx2(const uint8_t *w, size_t k, const float *scales, size_t block_k, float *out) {
    size_t p = 0;
    for (; p + 16 <= k; p += 16) {
        if ((p & 63) == 0) prefetch_weights(w + p, 2);
        __m256 scale = _mm256_set1_ps(scales[p / block_k]);
        _mm256_storeu_ps(out + p, values8_avx2(w + p, scale));
        _mm256_storeu_ps(out + p + 8, values8_avx2(w + p + 8, scale));
    }
    if (p < k) {
        uint8_t padded[16] = {0};
        float values[16];
        memcpy(padded, w + p, k - p);
        __m256 scale = _mm256_set1_ps(scales[p / block_k]);
        _mm256_storeu_ps(values, values8_avx2(padded, scale));
        _mm256_storeu_ps(values + 8, values8_avx2(padded + 8, scale));
        memcpy(out + p, values, (k - p) * sizeof(float));
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

static void dequantize_neon(const uint8_t *w, size_t k, const float *scales, size_t block_k, float *out) {
    size_t p = 0;
    for (; p + 16 <= k; p += 16) values16_neon(w + p, vdupq_n_f32(scales[p / block_k]), out + p);
    if (p < k) {
        uint8_t padded[16] = {0};
        float values[16];
        memcpy(padded, w + p, k - p);
        values16_neon(padded, vdupq_n_f32(scales[p / block_k]), values);
        memcpy(out + p, values, (k - p) * sizeof(float));
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

// MARK: - Products

/// Floats of widened weight rows a thread holds at once (64 KiB): the rows stay in L1/L2 while the f32
/// kernel runs over them.
enum { SY_F8_BUFFER_FLOATS = 16384, SY_F8_MAX_GROUP = 16 };
/// Rows of x per pass (as the f32 kernel blocks them): about 384 KiB of x stays in L2 while every
/// weight row is widened once per pass. Blocking never changes arithmetic, only the loop order.
enum { SY_F8_X_BLOCK_BYTES = 384 * 1024 };
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
    _Atomic int failed;
} fp8_product;

/// Columns [j0, j1) of the product, on the calling thread.
static int product_columns(fp8_product *job, size_t j0, size_t j1) {
    size_t k = job->k, group = job->group;
    float *buffer = widened_space(group * (k > 0 ? k : 1));
    if (buffer == NULL) return -1;
    size_t x_rows = SY_F8_X_BLOCK_BYTES / (sizeof(float) * (k > 0 ? k : 1));
    if (x_rows < 8) x_rows = 8;
    for (size_t i0 = 0; i0 < job->m; i0 += x_rows) {
        size_t rows = job->m - i0 < x_rows ? job->m - i0 : x_rows;
        for (size_t j = j0; j < j1; j += group) {
            size_t count = j1 - j < group ? j1 - j : group;
            for (size_t r = 0; r < count; r++) {
                size_t row = j + r;
                sy_fp8_dequantize_row_isa(job->isa, job->w + row * k, k,
                                          job->scales + (row / job->block_n) * job->scale_stride, job->block_k,
                                          buffer + r * k);
            }
            // Inside a threaded product this runs on its thread alone (the pool is taken); alone, its
            // few columns are below the pool's split: either way the f32 kernel's bits.
            sy_matmul_nt_isa(job->isa, job->x + i0 * job->xs, rows, k, job->xs, buffer, count, k,
                             job->y + i0 * job->ys + j, job->ys, job->accumulate);
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
    size_t group = SY_F8_BUFFER_FLOATS / (k > 0 ? k : 1);
    if (group < 1) group = 1;
    if (group > SY_F8_MAX_GROUP) group = SY_F8_MAX_GROUP;
    fp8_product job = {isa, x, m, k, x_stride, w, n, scales, block_n, block_k, (k + block_k - 1) / block_k,
                       y, y_stride, accumulate, group, n, 0};
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
