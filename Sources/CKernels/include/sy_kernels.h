// Batch-invariant kernels for Switchyard: f32 activations, f32 or bf16 weights, f32 results.
//
// Vocabulary: "batch-invariant" means every output element is computed by the same sequence of
// floating-point operations whatever the number of rows in the call and wherever its row sits,
// so a sequence's result does not depend on what else is in the batch.
//
// The reduction over k of every dot product has one fixed shape, on every instruction set:
// 16 lanes, lane l accumulates the products of indices l, l + 16, l + 32, ... in ascending order
// with fused multiply-add (the last partial block only touches lanes below k % 16), then the
// lanes are added as a tree (l with l + 8, then l + 4, l + 2, l + 1). The scalar, AVX2, AVX-512 and
// NEON paths therefore give bitwise identical results; they differ only in speed. (A NaN result is
// a NaN on every path, but its sign and payload are not defined: when two NaNs meet, which survives
// depends on an operand order the compiler is free to swap.)
//
// The NEON path (AArch64) holds the 16 lanes in four 128-bit vectors. It covers the f32, exact bf16,
// fast bf16 and q8 products (q8 with `sdot` when the CPU has the dot-product extension, found at run
// time, else `smull`), the weighted sums, softmax, SwiGLU and log Σ exp, and the attention scores
// through the f32 and bf16 products. It is checked bit for bit against the scalar path by
// Tests/kernels/isa_equality.c, cross-compiled and run under qemu-aarch64 with and without the
// dot-product extension (Scripts/neon-check.sh, part of Scripts/test.sh). Its speed has not been
// measured: no ARM host was available, and qemu says nothing about speed.
#ifndef SY_KERNELS_H
#define SY_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An instruction-set path of the kernels.
typedef enum sy_isa {
    SY_ISA_SCALAR = 0,
    SY_ISA_AVX2 = 1,
    SY_ISA_AVX512 = 2,
    /// AVX-512F with the bf16 extension (`vdpbf16ps`); the f32 and exact bf16 kernels run their AVX-512 path.
    SY_ISA_AVX512BF16 = 3,
    /// AArch64 Advanced SIMD (every AArch64 CPU); q8 products use `sdot` where the CPU has it. The
    /// fast bf16 product emulates the `vdpbf16ps` shape with FMA (not `bfdot`, which rounds differently).
    SY_ISA_NEON = 4,
    /// AVX2 + FMA with AVX-VNNI (`vpdpbusd` on ymm registers): q8 products use it; the others run the AVX2 path.
    SY_ISA_AVX2_VNNI = 5,
    /// AVX-512 bf16 with AMX tiles (`tdpbf16ps`): the fast bf16 products run on tiles, with bits of their
    /// own (``sy_matmul_nt_bf16_fast``); every other kernel runs the AVX-512 bf16 path. Never chosen by
    /// default: only by `SWITCHYARD_KERNEL=amx` (or explicitly), on a CPU with AMX-BF16 whose kernel grants
    /// the tile state.
    SY_ISA_AMX = 6,
} sy_isa;

/// Whether this CPU (and this build) can run `isa`.
int sy_isa_supported(sy_isa isa);

/// The path the un-suffixed kernels use, chosen once per process: `SWITCHYARD_KERNEL`
/// (`scalar`, `avx2`, `avx2vnni`, `avx512`, `avx512bf16`, `amx` or `neon`) when set and supported, else the best the
/// CPU supports (never `amx`, whose fast products have bits of their own).
/// An unknown or unsupported value is reported on stderr once and ignored.
sy_isa sy_active_isa(void);

/// 1 when the AVX-512 kernels prefetch their weight streams into L2 ahead of the loads, 0 when they
/// leave it to the hardware prefetcher: chosen once per process by the CPU's maker (0 on AMD, where
/// Zen 4 read faster without; 1 elsewhere, where an Intel Xeon read up to 1.5× faster with), or by
/// `SWITCHYARD_STREAM_PREFETCH=1` or `0`. It never changes a result.
int sy_stream_prefetch(void);

/// y[i, j] = Σ_p x[i, p] · w[j, p]  (+ y[i, j] when `accumulate` is non-zero), f32.
///
/// x: [m, k] with row stride `x_stride` floats; w: [n, k] with row stride `w_stride` (an
/// nn.Linear weight, [out, in]); y: [m, n] with row stride `y_stride`. y must not overlap x or w.
/// Each y[i, j] depends only on row i of x and row j of w (see the header comment).
void sy_matmul_nt(const float *x, size_t m, size_t k, size_t x_stride,
                  const float *w, size_t n, size_t w_stride,
                  float *y, size_t y_stride, int accumulate);

/// ``sy_matmul_nt`` on an explicit path; `isa` must be supported (tests and benchmarks).
void sy_matmul_nt_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride,
                      const float *w, size_t n, size_t w_stride,
                      float *y, size_t y_stride, int accumulate);

/// ``sy_matmul_nt_isa`` over one k-chunk: x and w point at the chunk's first value of their rows, `k` is
/// the chunk's length. Each output's 16 lane sums (the reduction shape of the header) start from zero when
/// `first`, else from `state`, and go back into `state` unless `last`; with `last` each output is summed as
/// the whole product sums it and written to y (added to y with `accumulate`). The chunks of one product,
/// run in order on the same `isa` and state, give bitwise ``sy_matmul_nt_isa`` over the whole of k (and
/// so every path's bits), provided every chunk but the last is a multiple of 16 values long.
/// `state`: m · n · 16 floats, 64-byte aligned; its layout is the path's. Runs on the calling thread.
void sy_matmul_nt_chunk_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const float *w, size_t n,
                            size_t w_stride, float *state, int first, int last, float *y, size_t y_stride,
                            int accumulate);

/// How many weight rows a tile of ``sy_matmul_nt_chunk_isa`` (and of ``sy_matmul_nt_isa`` past 4 rows of x)
/// takes at once on `isa`. A caller that hands the product a few weight rows at a time (the FP8 product's
/// widened rows) gives it a multiple of this many, so that no tile runs narrower. Never changes a result.
size_t sy_matmul_nt_tile_columns(sy_isa isa);

/// y[i, j] = Σ_p x[i, p] · w[j, p]  (+ y[i, j] when `accumulate` is non-zero), with w in bf16.
///
/// Each bf16 weight is widened exactly to f32 (its 16 bits become the upper half of a binary32)
/// and the products are reduced in the shape of ``sy_matmul_nt``, so the result is bitwise that
/// of ``sy_matmul_nt`` on the same weights upcast to f32, on every path and for every m.
/// x: [m, k] f32 with row stride `x_stride` floats; w: [n, k] bf16 bit patterns with row stride
/// `w_stride` elements (any 2-byte alignment); y: [m, n] f32 with row stride `y_stride`.
void sy_matmul_nt_bf16(const float *x, size_t m, size_t k, size_t x_stride,
                       const uint16_t *w, size_t n, size_t w_stride,
                       float *y, size_t y_stride, int accumulate);

/// ``sy_matmul_nt_bf16`` on an explicit path; `isa` must be supported (tests and benchmarks).
void sy_matmul_nt_bf16_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride,
                           const uint16_t *w, size_t n, size_t w_stride,
                           float *y, size_t y_stride, int accumulate);

/// The fast bf16-weight product: y[i, j] = Σ_p bf16(x[i, p]) · w[j, p]  (+ y[i, j] when `accumulate`).
///
/// x is rounded to bf16 (nearest even; denormals to zero), k is zero-padded to a multiple of 32, and
/// for each block of 32 indices lane l (of 16) adds the product at index 2l + 1 then the one at 2l,
/// each with one rounding (products of two bf16 values are exact in f32); the lanes are then added as
/// the tree of the header comment. That is the arithmetic of `vdpbf16ps`: the AVX-512 bf16 path uses
/// it, and the scalar, AVX2, AVX-512F and NEON paths compute the same bits with FMA (inputs that make
/// denormal products or sums aside, which `vdpbf16ps` flushes to zero). Batch-invariant like the
/// other kernels, with one exception: on an Intel CPU with AVX-512 bf16 a product of more than 7 rows
/// runs on the AVX-512F kernels instead (a zmm FMA there does twice `vdpbf16ps`'s multiplies), so a
/// row whose products or sums are denormal may come out otherwise in such a product than in a smaller
/// one; on every other input its bits are the same. On SY_ISA_AMX (never the default)
/// the products run on AMX tiles instead, with bits of their own (within the same tolerance of f32, and
/// batch-invariant on that path; see kernels.c). The rounded x is kept in a
/// per-thread buffer that grows once and is reused.
/// Returns 0, or -1 when that buffer cannot be allocated (y is then untouched).
int sy_matmul_nt_bf16_fast(const float *x, size_t m, size_t k, size_t x_stride,
                           const uint16_t *w, size_t n, size_t w_stride,
                           float *y, size_t y_stride, int accumulate);

/// ``sy_matmul_nt_bf16_fast`` on an explicit path; `isa` must be supported (tests and benchmarks).
int sy_matmul_nt_bf16_fast_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride,
                               const uint16_t *w, size_t n, size_t w_stride,
                               float *y, size_t y_stride, int accumulate);

/// One product of ``sy_matmul_nt_bf16_grouped_isa``: rows [row, row + m) of the call's x against
/// the bf16 weight w [n, k] (row stride `w_stride`), into y [m, n] (row stride `y_stride`).
typedef struct sy_grouped_product {
    size_t row;
    size_t m;
    const uint16_t *w;
    size_t n;
    size_t w_stride;
    float *y;
    size_t y_stride;
} sy_grouped_product;

/// `count` products, each on its own rows of one x [rows, k] (q, k and v on every row; the experts
/// of a layer on their tokens), as one job: x is rounded once (fast) and the threads split all
/// their columns together, so they meet once. Each product's y is bitwise what
/// ``sy_matmul_nt_bf16_fast_isa`` (when `fast`, else ``sy_matmul_nt_bf16_isa``) gives for its rows:
/// where ``sy_matmul_nt_bf16_fast``'s exception sends the products of more than 7 rows to the AVX-512F
/// kernels, it does so product by product (x then prepared for both kernels).
/// `products` is read during the call only. Returns 0, or -1 for no products, rows outside x, or
/// when the rounded-x buffer cannot be allocated.
int sy_matmul_nt_bf16_grouped_isa(sy_isa isa, int fast, const float *x, size_t rows, size_t k, size_t x_stride,
                                  const sy_grouped_product *products, size_t count, int accumulate);

/// Elements (uint16) of an n × k bf16 weight packed by ``sy_amx_pack``: ceil(n / 16) × ceil(k / 32) × 512.
size_t sy_amx_packed_count(size_t n, size_t k);

/// w [n, k] (row stride `w_stride`) packed for ``sy_matmul_amx_packed_grouped``: for each 16 rows (a
/// group, zero rows past n) and each block of 32 indices (zeros past k), one KiB of 16 lines, line j
/// holding indices 2j and 2j + 1 of each of the group's 16 rows (the B layout of `tdpbf16ps`).
/// `packed` holds ``sy_amx_packed_count`` elements.
void sy_amx_pack(const uint16_t *w, size_t n, size_t k, size_t w_stride, uint16_t *packed);

/// ``sy_matmul_nt_bf16_grouped_isa`` on SY_ISA_AMX with fast arithmetic, each product's `w` a matrix
/// of n × k packed by ``sy_amx_pack`` (`w_stride` unused): bitwise what that call gives on the matrices
/// unpacked (the `amx` path's bits; see kernels.c), reading the weights in one stream per 16 rows.
/// Returns 0, or -1 for no products, rows outside x, a CPU without AMX (or Linux refusing the tile
/// state), or when the rounded-x buffer cannot be allocated.
int sy_matmul_amx_packed_grouped(const float *x, size_t rows, size_t k, size_t x_stride,
                                 const sy_grouped_product *products, size_t count, int accumulate);

/// `value` rounded to bf16 as the fast product rounds x: nearest even, denormals to signed zero.
uint16_t sy_round_bf16(float value);

/// Blocks of 32 per row of a q8 matrix with k columns: ceil(k / 32) rounded up to even (the
/// kernels take blocks in pairs; padding blocks are zero with scale 0).
size_t sy_q8_block_count(size_t k);

/// Quantizes w [n, k] (row stride `w_stride`) to q8: per row and block b of 32 columns, scale =
/// max|w| / 127 (NaN left out) and q = w · 127 / max|w| rounded to nearest even, clamped to ±127 (0 past
/// k); a quotient that is NaN or infinite gives -127, on every path and architecture.
/// q: [n, blocks × 32] int8; scales: [n, blocks] f32, blocks = ``sy_q8_block_count``(k).
void sy_q8_quantize(const float *w, size_t n, size_t k, size_t w_stride, int8_t *q, float *scales);

/// ``sy_q8_quantize`` on an explicit path (the same bits on every path; tests).
void sy_q8_quantize_isa(sy_isa isa, const float *w, size_t n, size_t k, size_t w_stride, int8_t *q, float *scales);

/// Copies `bytes` from `source` to `target` (not overlapping), split over the product threads in pieces of
/// 1 MiB: a weight copied at load into memory of the model's own, the page faults of both sides (a file
/// mapping's pages, fresh anonymous ones) then taken on every thread.
void sy_parallel_copy(void *target, const void *source, size_t bytes);

/// ``sy_q8_quantize`` of a weight at load, its rows split over the product threads (``sy_set_thread_count``):
/// w [n, k] f32, or bf16 bit patterns when `bf16` (widened exactly, a row at a time into a per-thread
/// buffer). The same bits as ``sy_q8_quantize_isa`` on the f32 values, whatever the thread count.
/// Returns 0, or -1 when a thread's row buffer cannot be allocated (q and scales then partly written).
int sy_q8_quantize_weight_isa(sy_isa isa, const void *w, int bf16, size_t n, size_t k, size_t w_stride, int8_t *q,
                              float *scales);

/// y[i, j] = Σ_b dx[i, b] · dw[j, b] · Σ_{p in block b} qx[i, p] · qw[j, p]  (+ y when `accumulate`):
/// the product with q8 weights, x quantized the same way per row and block (in a per-thread buffer).
///
/// Per block the integer sums are exact (lane l of 8 sums the products at 4l ... 4l + 3); blocks are
/// taken in pairs, block 2j in lanes 0 ... 7 and 2j + 1 in lanes 8 ... 15, each lane adding
/// fma(dx · dw, float(sum), acc); then the tree of the header comment. So every path (scalar, AVX2,
/// AVX-VNNI, AVX-512 VNNI, NEON with or without `sdot`) gives the same bits, for every m. Returns 0, or -1
/// when the buffer cannot be allocated (y untouched). wq/wscales as written by ``sy_q8_quantize``.
int sy_matmul_nt_q8(const float *x, size_t m, size_t k, size_t x_stride, const int8_t *wq, const float *wscales,
                    size_t n, float *y, size_t y_stride, int accumulate);

/// ``sy_matmul_nt_q8`` on an explicit path (tests and benchmarks).
int sy_matmul_nt_q8_isa(sy_isa isa, const float *x, size_t m, size_t k, size_t x_stride, const int8_t *wq,
                        const float *wscales, size_t n, float *y, size_t y_stride, int accumulate);

/// One product of ``sy_matmul_nt_q8_grouped_isa``: rows [row, row + m) of the call's x against the
/// q8 weight wq [n, blocks × 32] with wscales [n, blocks] (as ``sy_q8_quantize`` writes them), into
/// y [m, n] (row stride `y_stride`).
typedef struct sy_grouped_q8_product {
    size_t row;
    size_t m;
    const int8_t *wq;
    const float *wscales;
    size_t n;
    float *y;
    size_t y_stride;
} sy_grouped_q8_product;

/// `count` q8 products, each on its own rows of one x [rows, k] (the experts of a layer on their
/// tokens), as one job: x is quantized once and the threads split all their columns together, so
/// they meet once instead of once per product. Each product's y is bitwise what ``sy_matmul_nt_q8_isa``
/// gives for its rows. Returns 0, or -1 for no products, rows outside x, or when the quantized-x
/// buffer cannot be allocated.
int sy_matmul_nt_q8_grouped_isa(sy_isa isa, const float *x, size_t rows, size_t k, size_t x_stride,
                                const sy_grouped_q8_product *products, size_t count, int accumulate);

/// Sets how many threads (the caller included) ``sy_matmul_nt`` and ``sy_matmul_nt_bf16`` (and
/// their `_isa` forms) split one product over: 1 ... SY_MAX_THREADS, clamped. A product is split
/// over n only (each thread computes whole output columns), never over k, so the result is
/// bitwise the same for every thread count. Workers are started on demand and kept for the life of
/// the process; a product issued while another call holds the pool runs on its caller alone.
void sy_set_thread_count(int count);

/// The thread count set by ``sy_set_thread_count`` (1 until then).
int sy_thread_count(void);

/// Lets the product threads sleep now instead of spinning for the next product (they wake for it as
/// from any sleep). For a caller about to wait a while with no product of its own, such as a
/// coordinator waiting for its workers' replies: on a host the workers share, the spinning
/// threads would take cores from them.
void sy_rest_threads(void);

/// The largest accepted thread count.
#define SY_MAX_THREADS 64

/// One task of ``sy_parallel_for``: the task with index `index` (0 ..< count) of the call.
typedef void (*sy_task)(void *context, size_t index);

/// Runs task(context, 0) ... task(context, count - 1) on the pool's threads (the caller included),
/// each index once, in no set order, and returns when all have finished. Tasks must write disjoint
/// memory. Products issued inside a task run on that task's thread alone (the pool is taken), and
/// so does the whole call when another caller holds the pool.
void sy_parallel_for(size_t count, sy_task task, void *context);

/// out[d] = Σ_s p[s] · v[s, d] for d < width, summed over s = 0, 1, ..., count - 1 in that order
/// with one fused multiply-add per term, starting from 0 (the weighted value sum of attention).
/// v: [count, width] with row stride `v_stride` floats; out: [width], must not overlap p or v.
void sy_weighted_sum(const float *p, size_t count, const float *v, size_t v_stride,
                     size_t width, float *out);

/// ``sy_weighted_sum`` on an explicit path; `isa` must be supported.
void sy_weighted_sum_isa(sy_isa isa, const float *p, size_t count, const float *v, size_t v_stride,
                         size_t width, float *out);

/// out[d] = Σ_s p[s] · v[s, d] continued from the current out[d]: the same fused multiply-adds in
/// the same order as ``sy_weighted_sum_isa``, starting from out instead of 0. So a sum over keys
/// 0 ..< n split into consecutive ranges (the first with ``sy_weighted_sum_isa``, the rest with
/// this) is bitwise the sum in one call.
void sy_weighted_sum_accumulate_isa(sy_isa isa, const float *p, size_t count, const float *v, size_t v_stride,
                                    size_t width, float *out);

/// ``sy_weighted_sum_isa`` (or, when `accumulate` is 1, ``sy_weighted_sum_accumulate_isa``) of values
/// stored as bf16: bitwise the same call on the values widened to f32.
void sy_weighted_sum_bf16_isa(sy_isa isa, const float *p, size_t count, const uint16_t *v, size_t v_stride,
                              size_t width, float *out, int accumulate);

/// The weighted sums of `heads` query heads over the same values (the heads of one key/value head):
/// out[h, d] = Σ_s p[h, s] · v[s, d] with p[h, ·] at p + h · p_stride and out[h, ·] at
/// out + h · out_stride, each bitwise ``sy_weighted_sum_isa`` (or, when `accumulate` is 1,
/// ``sy_weighted_sum_accumulate_isa``) of that head alone; the AVX-512 and AVX2 paths read each value
/// row once for several heads. The outputs must not overlap each other, p or v.
void sy_weighted_sum_heads_isa(sy_isa isa, const float *p, size_t p_stride, size_t heads, size_t count,
                               const float *v, size_t v_stride, size_t width, float *out, size_t out_stride,
                               int accumulate);

/// ``sy_weighted_sum_heads_isa`` of values stored as bf16: bitwise the same call on them widened to f32.
void sy_weighted_sum_heads_bf16_isa(sy_isa isa, const float *p, size_t p_stride, size_t heads, size_t count,
                                    const uint16_t *v, size_t v_stride, size_t width, float *out, size_t out_stride,
                                    int accumulate);

/// Asks the CPU to bring `bytes` bytes from each of `rows` rows (`stride` bytes apart, from `base`)
/// into its caches, without waiting for them: attention takes the next block of cached keys or values
/// this way while it computes the current one (reads that would each wait for memory otherwise).
void sy_prefetch_rows(const void *base, size_t rows, size_t stride, size_t bytes);

/// Keeps freed blocks of up to 32 MiB in the heap (glibc: mmap threshold 32 MiB, trim threshold
/// 512 MiB) instead of mapping and unmapping every large block: a step's activations would otherwise
/// be zero-filled by the kernel page by page on every step. No effect outside glibc.
void sy_keep_freed_memory_in_heap(void);

/// The index of the largest of n floats, the lowest index among equal ones (±0 equal), NaNs passed
/// over; 0 when x[0] is NaN or n = 0 (as a scalar loop keeping the first strictly larger value).
/// Greedy decoding and every sampled token take it over the whole vocabulary.
size_t sy_argmax(const float *x, size_t n);

/// ``sy_argmax`` on an explicit path (tests and benchmarks); the same index on every path.
size_t sy_argmax_isa(sy_isa isa, const float *x, size_t n);

/// The first index j < n with x[j] > threshold (NaN never is), or n when there is none: top-k passes
/// over the values that cannot enter its list this way.
size_t sy_first_above(const float *x, size_t n, float threshold);

/// ``sy_first_above`` on an explicit path (tests and benchmarks); the same index on every path.
size_t sy_first_above_isa(sy_isa isa, const float *x, size_t n, float threshold);

/// log Σ_j exp(x[j]) for n ≥ 1 floats (the normaliser of a log-softmax), in f64 from f32 terms:
/// max + log Σ exp(x[j] - max), each exp within about 2 ulp of f32 and the sum in f64. Bitwise the
/// same on every path. A maximum of ±infinity or NaN is returned as is; n = 0 gives -infinity.
double sy_log_sum_exp(const float *x, size_t n);

/// ``sy_log_sum_exp`` on an explicit path (tests and benchmarks).
double sy_log_sum_exp_isa(sy_isa isa, const float *x, size_t n);

/// gate[j] = silu(gate[j]) · up[j] for j < count (the SwiGLU of an expert FFN), with silu(g) =
/// g · sigmoid(g) from the f32 exp of ``sy_log_sum_exp`` (within about 2 ulp of exp): the same bits
/// on every path. Runs on the caller only.
void sy_swiglu(float *gate, const float *up, size_t count);

/// scores[h, s] = (q_h · k_s) · scale for h < heads and s < count (attention scores of one key/value
/// head's query heads): q_h at q + h · q_stride, k_s at keys + s · key_stride, d values each. The dot
/// product is bitwise that of ``sy_matmul_nt_isa`` (the reduction of the header), rounded before the
/// multiply by `scale`, on every path. Runs on the caller only.
void sy_attention_scores_isa(sy_isa isa, const float *q, size_t heads, size_t q_stride, const float *keys,
                             size_t key_stride, size_t count, size_t d, float scale, float *scores,
                             size_t scores_stride);

/// ``sy_attention_scores_isa`` with keys stored as bf16: bitwise the same call on the keys widened to
/// f32 (`key_stride` counts bf16 values).
void sy_attention_scores_bf16_isa(sy_isa isa, const float *q, size_t heads, size_t q_stride, const uint16_t *keys,
                                  size_t key_stride, size_t count, size_t d, float scale, float *scores,
                                  size_t scores_stride);

/// Softmax of `row` in place: exp(x - max) with the f32 exp of ``sy_log_sum_exp`` (0 for -infinity),
/// summed in 16 lanes and the tree of the header, times 1 / sum: the same bits on every path.
/// Returns 0, or -1 (row untouched) when no entry is above -infinity.
int sy_softmax(float *row, size_t count);

/// ``sy_softmax`` on an explicit path (tests and benchmarks).
int sy_softmax_isa(sy_isa isa, float *row, size_t count);

/// silu(g) as ``sy_swiglu`` computes it (so sy_silu(g) · u is bitwise its result).
float sy_silu(float g);

/// ``sy_swiglu`` on an explicit path (tests and benchmarks).
void sy_swiglu_isa(sy_isa isa, float *gate, const float *up, size_t count);

/// gpt-oss's expert activation for `rows` rows of `width`: out[r·width + i] = (u + 1) · g · σ(alpha · g)
/// with g = min(gate + gate_bias[i], limit) and u = clamp(up + up_bias[i], -limit, limit) (NaN passes
/// through, as torch.clamp keeps it), gate = gate_values[r·row_stride + i·stride] and up the same at
/// up_values; a NULL bias adds nothing. g · σ(t) is computed as ``sy_silu`` computes silu: from
/// e = exp(-|t|) (the kernels' exp), g / (1 + e) for t ≥ 0 and (g · e) / (1 + e) for t < 0, each step
/// one f32 operation, so every path gives the scalar path's bits. `out` may be `gate_values` when the
/// stride is 1.
void sy_clamped_swiglu_isa(sy_isa isa, const float *gate_values, const float *up_values, size_t stride,
                           size_t row_stride, const float *gate_bias, const float *up_bias, size_t rows, size_t width,
                           float alpha, float limit, float *out);

#ifdef __cplusplus
}
#endif

#endif
