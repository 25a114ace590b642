// Products with MXFP4 weights, as gpt-oss's checkpoints store their experts (`*_blocks`, `*_scales`):
// each weight row of k values (k a multiple of 32) is k / 32 blocks, a block 16 bytes of e2m1 values
// (two a byte, the low nibble first: element 2j is byte j's low nibble, element 2j + 1 its high one)
// and one e8m0 scale byte s, the block's factor 2^(s - 127). An e2m1 nibble is a sign bit (8) and a
// magnitude index (0-7) into {0, 0.5, 1, 1.5, 2, 3, 4, 6}. No library offers this product on the CPU
// in f32 with a fixed reduction order, hence our own.
//
// The reduction shape, the same on every instruction set (so every path gives the scalar path's bits):
// 16 lanes; in block b, lane l takes the block's byte l, p = fma(w[2l + 1], x[2l + 1], w[2l] · x[2l])
// with w the doubled e2m1 values {0, 1, 2, 3, 4, 6, 8, 12} (exact), then acc[l] = fma(p, 2^(s - 128),
// acc[l]); after the last block the lanes are added as a tree (l with l + 8, then l + 4, l + 2, l + 1).
// The doubling and the halved scale are exact (powers of two), so the product is that of the
// dequantized weights up to the order of the sums. A scale byte of 255 (NaN in the OCP format) is
// taken as 2^128, which is infinity in f32, as transformers' ldexp gives.
#ifndef SY_MXFP4_H
#define SY_MXFP4_H

#include "sy_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/// y[i, j] = Σ_p x[i, p] · w[j, p] with w in MXFP4, f32 x and y.
///
/// x: [m, k] with row stride `x_stride` floats, k a multiple of 32. Weight row j is row
/// `j · w_row_stride` of `blocks` ([rows, k / 32, 16] bytes) and `scales` ([rows, k / 32] bytes):
/// a stride of 2 from row 0 or row 1 takes the gate or the up rows of gpt-oss's interleaved gate_up_proj.
/// y: [m, n] with row stride `y_stride`. Each y[i, j] depends only on row i of x and weight row j.
void sy_matmul_nt_mxfp4(const float *x, size_t m, size_t k, size_t x_stride, const uint8_t *blocks,
                        const uint8_t *scales, size_t n, size_t w_row_stride, float *y, size_t y_stride);

/// ``sy_matmul_nt_mxfp4`` on an explicit path; `isa` must be supported (tests and benchmarks). The
/// AVX-512 bf16 path runs the AVX-512 one and the AVX-VNNI path the AVX2 one.
void sy_matmul_nt_mxfp4_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride,
                            const uint8_t *blocks, const uint8_t *scales, size_t n, size_t w_row_stride, float *y,
                            size_t y_stride);

/// The `fast` MXFP4 product, with x quantized to int8 as llama.cpp computes these experts: x is
/// quantized per row and block of 32 as ``sy_matmul_nt_q8`` quantizes it (q = round-to-even(x · 127 /
/// amax), scale dx = amax / 127), so a result differs from the f32 product by at most the sum over
/// blocks of Σ|w| · amax / 254 (x's rounding) plus the rounding of the f32 sums (the bound the tests check). Its reduction shape, the same on every path: in block b,
/// quarter q (0-3) is the exact integer I = Σ w · q over elements 8q ..< 8q + 8, w the doubled e2m1
/// values; lane L = 4 · (b mod 4) + q does acc[L] = fma(float(I), dx[b] · 2^(s - 128), acc[L]) (the
/// factor rounded to f32 first), blocks in order; then the 16 lanes as the tree above. Integer sums
/// are exact, so the scalar, AVX2, AVX-VNNI, AVX-512 VNNI and NEON paths give the same bits.
typedef struct sy_grouped_mxfp4_product {
    /// Rows [row, row + m) of the call's x.
    size_t row, m;
    /// The first weight row's blocks and scales, as for ``sy_matmul_nt_mxfp4``.
    const uint8_t *blocks;
    const uint8_t *scales;
    /// Output columns, and stored rows from one output column's weight row to the next.
    size_t n, w_row_stride;
    /// [m, n], row stride `y_stride`, overwritten.
    float *y;
    size_t y_stride;
} sy_grouped_mxfp4_product;

/// `count` fast MXFP4 products, each on its own rows of one x [rows, k] (the experts of a layer on the
/// rows routed to them, k a multiple of 32), run as one job on the product threads: every row of x is
/// quantized once, whatever how many products read it. Each product's y is bitwise what
/// ``sy_matmul_nt_mxfp4_q8_isa`` gives it alone. Returns 0, or -1 (every y untouched) when a product's
/// rows lie outside x or the quantized x cannot be allocated.
int sy_matmul_nt_mxfp4_q8_grouped_isa(sy_isa isa, const float *x, size_t rows, size_t k, size_t x_stride,
                                      const sy_grouped_mxfp4_product *products, size_t count);

/// One fast MXFP4 product (see ``sy_grouped_mxfp4_product``) on the caller's thread alone; returns 0, or
/// -1 when the quantized x cannot be allocated (y untouched).
int sy_matmul_nt_mxfp4_q8_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride,
                              const uint8_t *blocks, const uint8_t *scales, size_t n, size_t w_row_stride, float *y,
                              size_t y_stride);

/// The value of one e2m1 nibble (0-15): {0, 0.5, 1, 1.5, 2, 3, 4, 6}, negative when bit 3 is set.
float sy_mxfp4_value(uint8_t nibble);

/// The factor of an e8m0 scale byte: 2^(s - 127) (2^128 = infinity for 255).
float sy_mxfp4_scale(uint8_t scale);

#ifdef __cplusplus
}
#endif

#endif
