// The tree sum of 16 lanes that ends every dot product of every kernel path: lane l with l + 8,
// then l + 4, then l + 2, then l + 1 (the reduction shape of sy_kernels.h and sy_mxfp4.h). One
// definition per ISA, shared by kernels.c and mxfp4.c, so every path adds its lanes in the scalar
// path's order and gives its bits. Internal to CKernels (not under include/): static inline.
#ifndef SY_HSUM_H
#define SY_HSUM_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

/// The tree sum of 16 lanes in memory.
static inline float hsum16_scalar(const float a[16]) {
    float t8[8], t4[4];
    for (int l = 0; l < 8; l++) t8[l] = a[l] + a[l + 8];
    for (int l = 0; l < 4; l++) t4[l] = t8[l] + t8[l + 4];
    float t20 = t4[0] + t4[2];
    float t21 = t4[1] + t4[3];
    return t20 + t21;
}

#if defined(__x86_64__) || defined(__i386__)

/// The tree sum of the 16 lanes of one AVX-512 vector.
__attribute__((target("avx512f,fma"), always_inline)) static inline float hsum16_avx512(__m512 a) {
    __m256 lo = _mm512_castps512_ps256(a);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(s1);
}

/// The tree sum of 16 lanes held as lanes 0 ... 7 (`lo`) and 8 ... 15 (`hi`).
__attribute__((target("avx2,fma"), always_inline)) static inline float hsum16_avx2(__m256 lo, __m256 hi) {
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
    return _mm_cvtss_f32(s1);
}

#endif

#if defined(__aarch64__)

/// The tree sum of 16 lanes held as a[0] (lanes 0 ... 3) ... a[3] (lanes 12 ... 15): l + 8 is
/// vectors 0 + 2 and 1 + 3, l + 4 the sum of those two, then l + 2 and l + 1 within the vector.
__attribute__((always_inline)) static inline float hsum16_neon(const float32x4_t a[4]) {
    float32x4_t t4 = vaddq_f32(vaddq_f32(a[0], a[2]), vaddq_f32(a[1], a[3]));
    float32x2_t t2 = vadd_f32(vget_low_f32(t4), vget_high_f32(t4));
    return vget_lane_f32(t2, 0) + vget_lane_f32(t2, 1);
}

#endif

#endif  // SY_HSUM_H
