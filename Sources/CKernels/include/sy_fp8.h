// Products with FP8 weights as DeepSeek-V3 (and MiniMax-M2, Qwen3-FP8, ...) ship them: an
// `nn.Linear` weight [n, k] of float8_e4m3fn bytes with a float32 `weight_scale_inv` per block of
// block_n × block_k weights ([ceil(n / block_n), ceil(k / block_k)]; the blocks at the right and
// bottom edges are partial when a dimension is not a multiple of the block size). The weight the
// model means is w[j, p] = e4m3(byte[j, p]) · scale_inv[j / block_n, p / block_k], one f32 product
// (what transformers' dequantization and DeepSeek's weight_dequant compute).
//
// e4m3fn: a sign bit, 4 exponent bits (bias 7) and 3 mantissa bits; exponent 0 is subnormal
// (m · 2^-9), there is no infinity, and 0x7F / 0xFF are NaN; the largest finite value is 448.
//
// The product is computed on the stored bytes. At up to 8 rows of x the vector paths multiply each
// weight row as they widen it, with the f32 kernels' operations in their order; above that each thread
// widens the weight rows it is about to use into a small f32 buffer (a few rows at a time, a whole number
// of the f32 kernel's tiles of weight rows, about 64 KiB or one tile's rows where those are more: L1/L2-resident,
// never a copy of the matrix) and multiplies with the f32 kernel of sy_kernels.h, 512 values of k at a time
// (``sy_matmul_nt_chunk_isa``).
// Either way every y[i, j] is bitwise ``sy_matmul_nt`` on the dequantized f32 weights, on every path
// (scalar, AVX2, AVX-512, NEON: their widening gives the same bits, being exact conversions and one
// rounded product each), batch-invariant and independent of the thread count like the other products.
#ifndef SY_FP8_H
#define SY_FP8_H

#include "sy_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/// The value of an e4m3fn byte: exact; NaN for 0x7F and 0xFF; -0 for 0x80.
float sy_fp8_e4m3_value(uint8_t byte);

/// `value` rounded to the nearest e4m3fn value (ties to the even code), saturated to ±448 (infinities
/// too); NaN gives 0x7F (0xFF when its sign bit is set). What `x.clamp(-448, 448).to(torch.float8_e4m3fn)`
/// gives for every finite x.
uint8_t sy_fp8_e4m3_from_float(float value);

/// out[p] = e4m3(w[p]) · scales[p / block_k] for p < k: one weight row dequantized, with `scales` the
/// row's block row of scale_inv. `block_k` must be a positive multiple of 16.
void sy_fp8_dequantize_row_isa(sy_isa isa, const uint8_t *w, size_t k, const float *scales, size_t block_k,
                               float *out);

/// y[i, j] = Σ_p x[i, p] · w[j, p] (+ y[i, j] when `accumulate`), w the dequantized FP8 weight.
///
/// x: [m, k] f32 with row stride `x_stride`; w: [n, k] e4m3fn bytes (row stride k); scales: [ceil(n /
/// block_n), ceil(k / block_k)] f32 (row stride ceil(k / block_k)); y: [m, n] with row stride `y_stride`.
/// `block_n` ≥ 1; `block_k` a positive multiple of 16 (a 16-lane step then never straddles two blocks).
/// Bitwise ``sy_matmul_nt_isa`` on the dequantized weights (see the header comment). Split over the
/// columns on the product threads (``sy_set_thread_count``). Returns 0; -1 (y untouched) when the block
/// sizes are invalid or the per-thread buffer cannot be allocated.
int sy_matmul_nt_fp8_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const uint8_t *w, size_t n,
                         const float *scales, size_t block_n, size_t block_k, float *y, size_t y_stride,
                         int accumulate);

/// ``sy_matmul_nt_fp8_isa`` on ``sy_active_isa``.
int sy_matmul_nt_fp8(const float *x, size_t m, size_t k, size_t x_stride, const uint8_t *w, size_t n,
                     const float *scales, size_t block_n, size_t block_k, float *y, size_t y_stride, int accumulate);

#ifdef __cplusplus
}
#endif

#endif
