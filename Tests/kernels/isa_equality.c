// Every kernel path against the scalar path, bit for bit (see sy_kernels.h: one reduction shape on
// every instruction set). Built with Sources/CKernels/kernels.c by Scripts/neon-check.sh: natively
// (on x86 it checks AVX2, AVX-512 and AVX-512 bf16 against scalar) and for AArch64 under qemu (NEON,
// with and without `sdot`). Mirrors the cross-path checks of Tests/ModelsTests (KernelTests,
// BatchInvarianceTests, QuantizationTests, BFloat16Tests) on more shapes and on special inputs.
//
// The rules checked:
// - every product (f32, exact bf16, fast bf16, q8), weighted sum, attention score, softmax, SwiGLU and
//   log Σ exp of every path has the scalar path's bits, for m = 1 ... 33, k not a multiple of 16,
//   odd strides, accumulate on and off, and inputs with NaN, ±infinity, denormals and ±0; writes
//   outside y's columns and the sums' widths are checked to be none. A NaN result must be a NaN on
//   every path, but its sign and payload are not defined: when two NaNs meet, the one that survives
//   is an operand order the compiler may swap (x + y and x · y commute), so they already differ
//   between the x86 paths; they are counted and printed, not failed;
// - except: the fast bf16 product on the AVX-512 bf16 path (`vdpbf16ps`) flushes denormal products and
//   sums, so it is held to the scalar bits on ordinary inputs only (as BFloat16Tests holds it); and
//   AVX2's q8 product is not given weights of -128 (the quantizer never writes them; its sign trick
//   cannot negate -128), which every other path is;
// - the scalar path computes the header's definitions (a plain reference here, ordinary inputs);
// - a row's result does not depend on the batch around it, nor on the thread count, nor on how the
//   products are grouped (sy_matmul_nt_bf16_grouped_isa, sy_matmul_nt_q8_grouped_isa), on ordinary
//   inputs: on an Intel CPU the AVX-512 bf16 path runs fast products of more than 16 rows on the
//   AVX-512F kernels, which do not flush denormals as `vdpbf16ps` does (m up to 33 crosses that);
// - exact bf16 is the f32 product on the widened weights; bf16 keys, values and scores likewise;
// - FP8 (e4m3fn with block scales) products are the f32 product on the dequantized weights, the
//   widening of every path has the scalar bits (all 256 codes, partial blocks at both edges), and the
//   e4m3 rounding is the nearest code with ties to even, saturated.
// Exits 1 on any mismatch, printing the first few with their place.
//
// Usage: isa_equality [--sdot yes|no]: on AArch64 Linux, also fail unless the CPU does (or does not)
// have the dot-product extension, so that a run meant to check the q8 product's `sdot` (or its
// `smull` fallback) cannot silently check the other.
#include "sy_kernels.h"
#include "sy_fp8.h"
#include "sy_mxfp4.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
#endif

// MARK: - Reporting

static unsigned long comparisons, mismatches, nan_payloads;

static const char *isa_name(sy_isa isa) {
    switch (isa) {
    case SY_ISA_SCALAR: return "scalar";
    case SY_ISA_AVX2: return "avx2";
    case SY_ISA_AVX2_VNNI: return "avx2vnni";
    case SY_ISA_AVX512: return "avx512";
    case SY_ISA_AVX512BF16: return "avx512bf16";
    case SY_ISA_NEON: return "neon";
    case SY_ISA_AMX: return "amx";
    }
    return "unknown";
}

static uint32_t float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/// Records a mismatch: prints the first 20 with `format`'s description of where.
static void mismatch(const char *format, ...) {
    mismatches++;
    if (mismatches > 20) return;
    va_list arguments;
    va_start(arguments, format);
    fputs("MISMATCH ", stdout);
    vprintf(format, arguments);
    fputc('\n', stdout);
    va_end(arguments);
}

/// Compares n floats bit for bit (any NaN equal to any NaN); on a difference records one mismatch
/// (the first index) with `what`.
static void expect_same(const float *actual, const float *expected, size_t n, const char *what) {
    comparisons++;
    for (size_t i = 0; i < n; i++)
        if (float_bits(actual[i]) != float_bits(expected[i])) {
            if (actual[i] != actual[i] && expected[i] != expected[i]) {
                nan_payloads++;
                continue;
            }
            mismatch("%s: [%zu] %.9g (0x%08x), expected %.9g (0x%08x)", what, i, actual[i], float_bits(actual[i]),
                     expected[i], float_bits(expected[i]));
            return;
        }
}

static void expect_same_double(double actual, double expected, const char *what) {
    comparisons++;
    if (actual != actual && expected != expected) {
        if (memcmp(&actual, &expected, sizeof actual) != 0) nan_payloads++;
        return;
    }
    if (memcmp(&actual, &expected, sizeof actual) != 0) mismatch("%s: %.17g, expected %.17g", what, actual, expected);
}

// MARK: - Inputs

static uint64_t random_state = 0x5EED;

static uint64_t random_next(void) {  // splitmix64
    uint64_t z = (random_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// Uniform in [-1, 1).
static float random_unit(void) { return (float)((double)(random_next() >> 11) / 4503599627370496.0 - 1.0); }

/// Ordinary inputs, or special ones: about one value in six a denormal, ±0, huge or the least normal,
/// and one in 300 NaN or ±infinity (rare enough that most sums stay finite).
/// (DATA_MASKED: a softmax row of -infinity only, its error case; otherwise ordinary.)
typedef enum { DATA_ORDINARY, DATA_SPECIAL, DATA_MASKED } data_kind;
static const char *data_name(data_kind data) {
    return data == DATA_ORDINARY ? "ordinary" : data == DATA_SPECIAL ? "special" : "all masked";
}

static float random_value(data_kind data, float scale) {
    // With bf16 ties (1.00390625 rounds down to even, -1.01171875 up to even), 0x7F7FFFFF (rounds to infinity)
    static const uint32_t finite[] = {0x00000001u, 0x80000003u, 0x007FFFFFu, 0x00012345u, 0x00000000u,
                                      0x80000000u, 0x7F7FFFFFu, 0xFF000000u, 0x00800000u, 0x80800000u,
                                      0x3F808000u, 0xBF818000u};
    // 0x7F800001: a NaN whose top half alone would read as infinity (rounded to bf16, it must stay a NaN)
    static const uint32_t nonfinite[] = {0x7FC00000u, 0xFFC00001u, 0x7FA00000u, 0x7F800000u, 0xFF800000u, 0x7F800001u};
    if (data == DATA_SPECIAL) {
        uint64_t r = random_next() % 1800;
        if (r < 6) return bits_float(nonfinite[r]);
        if (r < 300) return bits_float(finite[r % 12]);
    }
    return random_unit() * scale;
}

static void fill(float *values, size_t n, data_kind data, float scale) {
    for (size_t i = 0; i < n; i++) values[i] = random_value(data, scale);
}

/// bf16 bit patterns: a random value's top half, or (special, as often as ``random_value``'s) NaN,
/// ±infinity, denormals, ±0, the largest and least normal.
static void fill_bf16(uint16_t *values, size_t n, data_kind data) {
    static const uint16_t finite[] = {0x0001, 0x807F, 0x0000, 0x8000, 0x7F7F, 0x0080};
    static const uint16_t nonfinite[] = {0x7FC0, 0xFFC1, 0x7F81, 0x7F80, 0xFF80};
    for (size_t i = 0; i < n; i++) {
        uint64_t r = data == DATA_SPECIAL ? random_next() % 1800 : 1800;
        values[i] = r < 6     ? nonfinite[r % 5]
                    : r < 300 ? finite[r % 6]
                              : (uint16_t)(float_bits(random_unit()) >> 16);
    }
}

static float widen(uint16_t bits) { return bits_float((uint32_t)bits << 16); }

static void *allocate(size_t bytes) {
    void *memory = malloc(bytes > 0 ? bytes : 1);
    if (memory == NULL) {
        fprintf(stderr, "isa_equality: out of memory (%zu bytes)\n", bytes);
        exit(2);
    }
    return memory;
}

// MARK: - References (the header's definitions, written plainly)

/// The tree of the header: l + 8, then l + 4, l + 2, l + 1.
static float tree16(const float lanes[16]) {
    float t8[8], t4[4];
    for (int l = 0; l < 8; l++) t8[l] = lanes[l] + lanes[l + 8];
    for (int l = 0; l < 4; l++) t4[l] = t8[l] + t8[l + 4];
    return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

static float reference_dot(const float *x, const float *w, size_t k) {
    float lanes[16] = {0};
    for (size_t p = 0; p < k; p++) lanes[p % 16] = fmaf(x[p], w[p], lanes[p % 16]);
    return tree16(lanes);
}

/// Nearest even, denormals to a signed zero, NaN kept a quiet NaN.
static uint16_t reference_round(float value) {
    uint32_t bits = float_bits(value);
    if ((bits & 0x7F800000u) == 0) return (uint16_t)((bits >> 16) & 0x8000u);
    if (value != value) return (uint16_t)((bits >> 16) | 0x0040u);
    return (uint16_t)(((uint64_t)bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

static float reference_fast_dot(const float *x, const uint16_t *w, size_t k) {
    float lanes[16] = {0};
    for (size_t p = 0; p < k; p += 32)
        for (size_t l = 0; l < 16; l++)
            for (size_t index = p + 2 * l + 1, t = 0; t < 2; t++, index--)  // the odd index, then the even
                if (index < k) lanes[l] = fmaf(widen(reference_round(x[index])), widen(w[index]), lanes[l]);
    return tree16(lanes);
}

static float reference_q8_dot(const int8_t *xq, const float *xd, const int8_t *wq, const float *wd, size_t blocks) {
    float lanes[16] = {0};
    for (size_t b = 0; b < blocks; b++)
        for (size_t l = 0; l < 8; l++) {
            int32_t sum = 0;
            for (size_t t = 0; t < 4; t++) sum += xq[32 * b + 4 * l + t] * wq[32 * b + 4 * l + t];
            size_t lane = (b % 2) * 8 + l;
            lanes[lane] = fmaf(xd[b] * wd[b], (float)sum, lanes[lane]);
        }
    return tree16(lanes);
}

// MARK: - Products

typedef enum { KIND_F32, KIND_BF16, KIND_FAST, KIND_Q8, KIND_COUNT } product_kind;
static const char *const kind_names[KIND_COUNT] = {"f32", "bf16 exact", "bf16 fast", "q8"};

/// One product's operands: x [m, k] (stride xs), the weight [n, k] as f32 (stride ws; the widened bf16
/// weight), as bf16 (stride ws) and as q8 (rows of `blocks` × 32, with scales); y rows of ys floats.
typedef struct {
    size_t m, k, n, xs, ws, ys, blocks;
    float *x, *wf, *wd;
    uint16_t *wb;
    int8_t *wq;
} operands;

/// Random operands of one shape (strides odd, wider than k and n); q8 weights with values at ±127
/// (and -128 when `minimum_q8` is -128) often.
static operands make_operands(size_t m, size_t k, size_t n, data_kind data, int minimum_q8) {
    operands o = {m, k, n, k + 3, k + 5, n + 3, sy_q8_block_count(k), NULL, NULL, NULL, NULL, NULL};
    o.x = allocate(m * o.xs * sizeof(float));
    fill(o.x, m * o.xs, data, 4.0f);
    o.wb = allocate(n * o.ws * sizeof(uint16_t));
    fill_bf16(o.wb, n * o.ws, data);
    o.wf = allocate(n * o.ws * sizeof(float));
    for (size_t i = 0; i < n * o.ws; i++) o.wf[i] = widen(o.wb[i]);
    size_t row = o.blocks * 32;
    o.wq = allocate(n * row);
    o.wd = allocate(n * o.blocks * sizeof(float));
    for (size_t j = 0; j < n; j++)
        for (size_t p = 0; p < row; p++) {
            int8_t *q = &o.wq[j * row + p];
            uint64_t r = random_next();
            if (p >= k) *q = 0;  // the format's padding
            else if (r % 4 == 0) *q = r % 8 == 0 ? 127 : (int8_t)minimum_q8;
            else *q = (int8_t)((int)((r >> 8) % 255) - 127);
        }
    for (size_t i = 0; i < n * o.blocks; i++)
        o.wd[i] = data == DATA_SPECIAL && random_next() % 5 == 0 ? 0.0f : fabsf(random_unit()) * 0.02f;
    return o;
}

static void free_operands(operands *o) {
    free(o->x);
    free(o->wf);
    free(o->wb);
    free(o->wq);
    free(o->wd);
}

/// y[row0 ..< row0 + m] of the product of `kind` on `isa`.
static void product(product_kind kind, sy_isa isa, const operands *o, size_t row0, size_t m, float *y, int accumulate) {
    const float *x = o->x + row0 * o->xs;
    int status = 0;
    switch (kind) {
    case KIND_F32: sy_matmul_nt_isa(isa, x, m, o->k, o->xs, o->wf, o->n, o->ws, y, o->ys, accumulate); break;
    case KIND_BF16: sy_matmul_nt_bf16_isa(isa, x, m, o->k, o->xs, o->wb, o->n, o->ws, y, o->ys, accumulate); break;
    case KIND_FAST:
        status = sy_matmul_nt_bf16_fast_isa(isa, x, m, o->k, o->xs, o->wb, o->n, o->ws, y, o->ys, accumulate);
        break;
    case KIND_Q8: status = sy_matmul_nt_q8_isa(isa, x, m, o->k, o->xs, o->wq, o->wd, o->n, y, o->ys, accumulate); break;
    case KIND_COUNT: break;
    }
    if (status != 0) mismatch("%s on %s: returned %d", kind_names[kind], isa_name(isa), status);
}

/// Whether the path is held to the scalar bits for this product on these inputs (see the rules above).
static int held_to_scalar(product_kind kind, sy_isa isa, data_kind data, int minimum_q8) {
    if (kind == KIND_FAST && isa == SY_ISA_AVX512BF16 && data == DATA_SPECIAL) return 0;
    if (kind == KIND_Q8 && (isa == SY_ISA_AVX2 || isa == SY_ISA_AVX2_VNNI) && minimum_q8 == -128) return 0;
    return 1;
}

static sy_isa paths[8];
static size_t path_count;

/// The scalar result against the header's definition (ordinary inputs, no accumulation).
static void check_reference(product_kind kind, const operands *o, const float *y) {
    float *expected = allocate(o->m * o->ys * sizeof(float));
    memcpy(expected, y, o->m * o->ys * sizeof(float));
    int8_t *xq = allocate(o->blocks * 32);
    float *xd = allocate(o->blocks * sizeof(float));
    for (size_t i = 0; i < o->m; i++) {
        const float *x = o->x + i * o->xs;
        if (kind == KIND_Q8) sy_q8_quantize(x, 1, o->k, o->k, xq, xd);
        for (size_t j = 0; j < o->n; j++) {
            float *target = &expected[i * o->ys + j];
            switch (kind) {
            case KIND_F32:
            case KIND_BF16: *target = reference_dot(x, o->wf + j * o->ws, o->k); break;
            case KIND_FAST: *target = reference_fast_dot(x, o->wb + j * o->ws, o->k); break;
            case KIND_Q8:
                *target = reference_q8_dot(xq, xd, o->wq + j * o->blocks * 32, o->wd + j * o->blocks, o->blocks);
                break;
            case KIND_COUNT: break;
            }
        }
    }
    char what[160];
    snprintf(what, sizeof what, "%s scalar vs reference, m %zu k %zu n %zu", kind_names[kind], o->m, o->k, o->n);
    expect_same(y, expected, o->m * o->ys, what);
    free(expected);
    free(xq);
    free(xd);
}

/// One shape of one kind: every path against scalar (accumulate off and on, y's padding untouched);
/// the scalar path against the reference; each row alone against the batch when `rows_alone`.
static void check_product(product_kind kind, size_t m, size_t k, size_t n, data_kind data, int minimum_q8,
                          int rows_alone) {
    operands o = make_operands(m, k, n, data, minimum_q8);
    size_t size = m * o.ys;
    float *base = allocate(size * sizeof(float)), *expected = allocate(size * sizeof(float));
    float *actual = allocate(size * sizeof(float)), *alone = allocate(size * sizeof(float));
    fill(base, size, DATA_ORDINARY, 2.0f);
    char what[200];
    for (int accumulate = 0; accumulate < 2; accumulate++) {
        memcpy(expected, base, size * sizeof(float));
        product(kind, SY_ISA_SCALAR, &o, 0, m, expected, accumulate);
        if (!accumulate && data == DATA_ORDINARY) check_reference(kind, &o, expected);
        if (kind == KIND_BF16) {  // exact bf16 is the f32 product on the widened weights
            memcpy(actual, base, size * sizeof(float));
            product(KIND_F32, SY_ISA_SCALAR, &o, 0, m, actual, accumulate);
            snprintf(what, sizeof what, "bf16 exact vs f32 on widened weights, m %zu k %zu n %zu accumulate %d (%s)", m,
                     k, n, accumulate, data_name(data));
            expect_same(expected, actual, size, what);
        }
        for (size_t t = 0; t < path_count; t++) {
            sy_isa isa = paths[t];
            if (!held_to_scalar(kind, isa, data, minimum_q8)) continue;
            memcpy(actual, base, size * sizeof(float));
            product(kind, isa, &o, 0, m, actual, accumulate);
            snprintf(what, sizeof what, "%s on %s vs scalar, m %zu k %zu n %zu accumulate %d (%s, q8 min %d)",
                     kind_names[kind], isa_name(isa), m, k, n, accumulate, data_name(data), minimum_q8);
            expect_same(actual, expected, size, what);
        }
    }
    if (rows_alone) {  // batch invariance: each row computed alone, on every path
        for (size_t t = 0; t <= path_count; t++) {
            sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
            if (!held_to_scalar(kind, isa, data, minimum_q8)) continue;
            memcpy(actual, base, size * sizeof(float));
            product(kind, isa, &o, 0, m, actual, 0);
            memcpy(alone, base, size * sizeof(float));
            for (size_t i = 0; i < m; i++) product(kind, isa, &o, i, 1, alone + i * o.ys, 0);
            snprintf(what, sizeof what, "%s on %s: rows alone vs in a batch of %zu, k %zu n %zu (%s)", kind_names[kind],
                     isa_name(isa), m, k, n, data_name(data));
            expect_same(alone, actual, size, what);
        }
    }
    free(base);
    free(expected);
    free(actual);
    free(alone);
    free_operands(&o);
}

static void check_products(void) {
    static const size_t ks[] = {1, 7, 15, 16, 17, 31, 32, 33, 45, 64, 67, 100};
    static const size_t ns[] = {1, 2, 3, 5, 8};
    for (int kind = 0; kind < KIND_COUNT; kind++) {
        unsigned long before = comparisons;
        for (size_t m = 1; m <= 33; m++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                size_t n = ns[(m + ki) % (sizeof ns / sizeof ns[0])];
                int rows_alone = ki % 4 == 0;
                check_product((product_kind)kind, m, ks[ki], n, DATA_ORDINARY, -127, rows_alone);
                check_product((product_kind)kind, m, ks[ki], n, DATA_SPECIAL, -127, 0);
                if (kind == KIND_Q8) check_product(KIND_Q8, m, ks[ki], n, DATA_SPECIAL, -128, 0);
            }
        printf("  %-10s products: %lu comparisons\n", kind_names[kind], comparisons - before);
    }
}

/// Products with k past the chunk at which the AVX-512 bf16 kernel reads x a k-chunk at a time
/// (SY_DOT_KC, 1536; at 9-16 rows half that, in two tiles of rows) and n past a block of its columns,
/// and past 16 rows (the AVX-512F product's blocks of weight rows, its tiles of 8 rows and a last smaller
/// one): every path and kind, rows alone and in a batch. (neon-check.sh also builds this file with a small
/// chunk and block, so that the shapes above cross them.)
static void check_wide_products(void) {
    static const size_t ms[] = {1, 5, 7, 8, 9, 12, 16, 17, 33};
    static const size_t ks[] = {1537, 2816};
    unsigned long before = comparisons;
    for (int kind = 0; kind < KIND_COUNT; kind++)
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                check_product((product_kind)kind, ms[mi], ks[ki], 40, DATA_ORDINARY, -127, 1);
                check_product((product_kind)kind, ms[mi], ks[ki], 40, DATA_SPECIAL, -127, 0);
            }
    printf("  wide products (k 1537, 2816): %lu comparisons\n", comparisons - before);
}

/// The f32 product in k-chunks (``sy_matmul_nt_chunk_isa``, as the FP8 product runs past SY_F8_CHUNK): on
/// every path (and the scalar one) the chunks, of 16, 32 or 48 values and the rest, give the bits of the
/// scalar product over the whole of k, into y and added to it, for m and n across the tiles' shapes.
static void check_chunked_products(void) {
    static const size_t ms[] = {1, 2, 3, 4, 5, 9, 10, 13}, ks[] = {16, 33, 100, 301}, ns[] = {1, 2, 3, 4, 5, 7};
    unsigned long before = comparisons;
    char what[160];
    for (int special = 0; special <= 1; special++)
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                size_t m = ms[mi], k = ks[ki], n = ns[(mi + ki + (size_t)special) % (sizeof ns / sizeof ns[0])];
                operands o = make_operands(m, k, n, special ? DATA_SPECIAL : DATA_ORDINARY, -127);
                float *expected = allocate(m * o.ys * sizeof(float)), *actual = allocate(m * o.ys * sizeof(float));
                float *state = NULL;
                if (posix_memalign((void **)&state, 64, m * n * 16 * sizeof(float)) != 0) abort();
                for (int accumulate = 0; accumulate <= 1; accumulate++) {
                    for (size_t i = 0; i < m * o.ys; i++) expected[i] = (float)(i % 5) - 2.0f;
                    sy_matmul_nt_isa(SY_ISA_SCALAR, o.x, m, k, o.xs, o.wf, n, o.ws, expected, o.ys, accumulate);
                    for (size_t t = 0; t <= path_count; t++) {
                        sy_isa isa = t < path_count ? paths[t] : SY_ISA_SCALAR;
                        for (size_t chunk = 16; chunk <= 48; chunk += 16) {
                            for (size_t i = 0; i < m * o.ys; i++) actual[i] = (float)(i % 5) - 2.0f;
                            for (size_t p0 = 0; p0 < k; p0 += chunk) {
                                size_t length = k - p0 < chunk ? k - p0 : chunk;
                                sy_matmul_nt_chunk_isa(isa, o.x + p0, m, length, o.xs, o.wf + p0, n, o.ws, state,
                                                       p0 == 0, p0 + length == k, actual, o.ys, accumulate);
                            }
                            snprintf(what, sizeof what, "f32 product in chunks of %zu on %s vs scalar, m %zu k %zu n %zu acc %d (%s)",
                                     chunk, isa_name(isa), m, k, n, accumulate, special ? "special" : "ordinary");
                            expect_same(actual, expected, m * o.ys, what);
                        }
                    }
                }
                free(state);
                free(expected);
                free(actual);
                free_operands(&o);
            }
    printf("  chunked f32 products: %lu comparisons\n", comparisons - before);
}

/// A product large enough to be split over threads: the same bits on 1 and 3 threads, every path.
static void check_thread_counts(void) {
    operands o = make_operands(6, 256, 300, DATA_ORDINARY, -127);
    size_t size = o.m * o.ys;
    float *one = allocate(size * sizeof(float)), *three = allocate(size * sizeof(float));
    char what[120];
    for (int kind = 0; kind < KIND_COUNT; kind++)
        for (size_t t = 0; t <= path_count; t++) {
            sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
            memset(one, 0, size * sizeof(float));
            memset(three, 0, size * sizeof(float));
            sy_set_thread_count(1);
            product((product_kind)kind, isa, &o, 0, o.m, one, 0);
            sy_set_thread_count(3);
            product((product_kind)kind, isa, &o, 0, o.m, three, 0);
            snprintf(what, sizeof what, "%s on %s: 3 threads vs 1", kind_names[kind], isa_name(isa));
            expect_same(three, one, size, what);
        }
    sy_set_thread_count(1);
    free(one);
    free(three);
    free_operands(&o);
}

/// Grouped products (rows of one x against several weights, fast and exact) are each the lone product,
/// also when some parts have more than 7 rows and others fewer (on an Intel CPU with AVX-512 bf16 the fast
/// ones then run on two kernels, x prepared for each).
static void check_grouped(void) {
    operands o = make_operands(12, 70, 11, DATA_ORDINARY, -127);
    size_t size = o.m * o.ys;
    float *grouped = allocate(4 * size * sizeof(float)), *lone = allocate(size * sizeof(float));
    char what[120];
    for (int fast = 0; fast < 2; fast++)
        for (size_t t = 0; t <= path_count; t++) {
            sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
            memset(grouped, 0, 4 * size * sizeof(float));
            // Rows 0-3, 2-8, 5 and 1-10 of x, against the weight's first 11, 7, 4 and 9 rows.
            sy_grouped_product parts[4] = {{0, 4, o.wb, 11, o.ws, grouped, o.ys},
                                           {2, 7, o.wb, 7, o.ws, grouped + size, o.ys},
                                           {5, 1, o.wb, 4, o.ws, grouped + 2 * size, o.ys},
                                           {1, 10, o.wb, 9, o.ws, grouped + 3 * size, o.ys}};
            if (sy_matmul_nt_bf16_grouped_isa(isa, fast, o.x, o.m, o.k, o.xs, parts, 4, 0) != 0)
                mismatch("grouped on %s returned an error", isa_name(isa));
            for (size_t s = 0; s < 4; s++) {
                operands part = o;
                part.n = parts[s].n;
                memset(lone, 0, size * sizeof(float));
                product(fast ? KIND_FAST : KIND_BF16, isa, &part, parts[s].row, parts[s].m, lone, 0);
                snprintf(what, sizeof what, "grouped %s on %s, part %zu", fast ? "fast" : "exact", isa_name(isa), s);
                expect_same(grouped + s * size, lone, size, what);
            }
        }
    // The same for q8 (sy_matmul_nt_q8_grouped_isa: x quantized once for every part).
    for (size_t t = 0; t <= path_count; t++) {
        sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
        memset(grouped, 0, 3 * size * sizeof(float));
        size_t row = o.blocks * 32;
        sy_grouped_q8_product parts[3] = {{0, 4, o.wq, o.wd, 11, grouped, o.ys},
                                          {2, 7, o.wq + 2 * row, o.wd + 2 * o.blocks, 7, grouped + size, o.ys},
                                          {5, 1, o.wq, o.wd, 4, grouped + 2 * size, o.ys}};
        if (sy_matmul_nt_q8_grouped_isa(isa, o.x, o.m, o.k, o.xs, parts, 3, 0) != 0)
            mismatch("grouped q8 on %s returned an error", isa_name(isa));
        for (size_t s = 0; s < 3; s++) {
            operands part = o;
            part.n = parts[s].n;
            part.wq = (int8_t *)parts[s].wq;
            part.wd = (float *)parts[s].wscales;
            memset(lone, 0, size * sizeof(float));
            product(KIND_Q8, isa, &part, parts[s].row, parts[s].m, lone, 0);
            snprintf(what, sizeof what, "grouped q8 on %s, part %zu", isa_name(isa), s);
            expect_same(grouped + s * size, lone, size, what);
        }
    }
    free(grouped);
    free(lone);
    free_operands(&o);
}

// MARK: - Attention and activations

/// out[0 ..< width + 4] after the weighted sum of `count` rows on `isa`, from `start` (the 4 past
/// width must be left as they were); f32 or bf16 values.
static void weighted_sum(sy_isa isa, const float *p, size_t count, const float *vf, const uint16_t *vb, size_t vs,
                         size_t width, float *out, int accumulate) {
    if (vb != NULL) sy_weighted_sum_bf16_isa(isa, p, count, vb, vs, width, out, accumulate);
    else if (accumulate) sy_weighted_sum_accumulate_isa(isa, p, count, vf, vs, width, out);
    else sy_weighted_sum_isa(isa, p, count, vf, vs, width, out);
}

static void check_weighted_sums(void) {
    static const size_t counts[] = {0, 1, 2, 5, 17, 40};
    static const size_t widths[] = {1, 3, 4, 15, 16, 17, 31, 33, 64, 67, 100};
    unsigned long before = comparisons;
    char what[160];
    for (int data = DATA_ORDINARY; data <= DATA_SPECIAL; data++)
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++)
            for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
                size_t count = counts[ci], width = widths[wi], vs = width + 3;
                float *p = allocate((count + 1) * sizeof(float)), *vf = allocate((count * vs + 1) * sizeof(float));
                uint16_t *vb = allocate((count * vs + 1) * sizeof(uint16_t));
                float *start = allocate((width + 4) * sizeof(float)), *expected = allocate((width + 4) * sizeof(float));
                float *actual = allocate((width + 4) * sizeof(float));
                fill(p, count, (data_kind)data, 1.0f);
                fill(vf, count * vs, (data_kind)data, 3.0f);
                fill_bf16(vb, count * vs, (data_kind)data);
                fill(start, width + 4, DATA_ORDINARY, 1.0f);
                for (int bf16 = 0; bf16 < 2; bf16++)
                    for (int accumulate = 0; accumulate < 2; accumulate++) {
                        const uint16_t *values = bf16 ? vb : NULL;
                        memcpy(expected, start, (width + 4) * sizeof(float));
                        weighted_sum(SY_ISA_SCALAR, p, count, vf, values, vs, width, expected, accumulate);
                        for (size_t t = 0; t <= path_count; t++) {
                            sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
                            snprintf(what, sizeof what, "weighted sum%s on %s, count %zu width %zu accumulate %d (%s)",
                                     bf16 ? " bf16" : "", isa_name(isa), count, width, accumulate,
                                     data_name((data_kind)data));
                            if (isa != SY_ISA_SCALAR) {
                                memcpy(actual, start, (width + 4) * sizeof(float));
                                weighted_sum(isa, p, count, vf, values, vs, width, actual, accumulate);
                                expect_same(actual, expected, width + 4, what);
                            }
                            // Split after `count / 3` keys: the first part, then the rest accumulated.
                            size_t split = count / 3;
                            memcpy(actual, start, (width + 4) * sizeof(float));
                            weighted_sum(isa, p, split, vf, values, vs, width, actual, accumulate);
                            weighted_sum(isa, p + split, count - split, vf + split * vs, bf16 ? vb + split * vs : NULL,
                                         vs, width, actual, 1);
                            strncat(what, ", split", sizeof what - strlen(what) - 1);
                            expect_same(actual, expected, width + 4, what);
                        }
                    }
                free(p);
                free(vf);
                free(vb);
                free(start);
                free(expected);
                free(actual);
            }
    printf("  weighted sums: %lu comparisons\n", comparisons - before);
}

/// Query heads per key/value head in the attention checks: alone, and the groups the vector paths take
/// together (2 and 4 at a time, with one or more left over).
static const size_t head_counts[] = {1, 2, 3, 4, 5, 8};

/// The weighted sums of several heads over the same values in one call: each head bitwise its own call
/// on the scalar path.
static void check_weighted_sums_of_heads(void) {
    static const size_t counts[] = {1, 5, 40};
    static const size_t widths[] = {3, 16, 17, 64, 100, 128};
    unsigned long before = comparisons;
    char what[160];
    for (size_t hi = 0; hi < sizeof head_counts / sizeof head_counts[0]; hi++)
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++)
            for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
                size_t heads = head_counts[hi], count = counts[ci], width = widths[wi], vs = width + 3;
                size_t ps = count + 2, os = width + 5, size = heads * os;
                float *p = allocate(heads * ps * sizeof(float)), *vf = allocate(count * vs * sizeof(float));
                uint16_t *vb = allocate(count * vs * sizeof(uint16_t));
                float *start = allocate(size * sizeof(float)), *expected = allocate(size * sizeof(float));
                float *actual = allocate(size * sizeof(float));
                fill(p, heads * ps, DATA_ORDINARY, 1.0f);
                fill(vf, count * vs, DATA_ORDINARY, 3.0f);
                fill_bf16(vb, count * vs, DATA_ORDINARY);
                fill(start, size, DATA_ORDINARY, 1.0f);
                for (int bf16 = 0; bf16 < 2; bf16++)
                    for (int accumulate = 0; accumulate < 2; accumulate++) {
                        memcpy(expected, start, size * sizeof(float));
                        for (size_t h = 0; h < heads; h++)
                            weighted_sum(SY_ISA_SCALAR, p + h * ps, count, vf, bf16 ? vb : NULL, vs, width,
                                         expected + h * os, accumulate);
                        for (size_t t = 0; t <= path_count; t++) {
                            sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
                            memcpy(actual, start, size * sizeof(float));
                            if (bf16) sy_weighted_sum_heads_bf16_isa(isa, p, ps, heads, count, vb, vs, width, actual, os, accumulate);
                            else sy_weighted_sum_heads_isa(isa, p, ps, heads, count, vf, vs, width, actual, os, accumulate);
                            snprintf(what, sizeof what, "weighted sums of %zu heads%s on %s, count %zu width %zu accumulate %d",
                                     heads, bf16 ? " bf16" : "", isa_name(isa), count, width, accumulate);
                            expect_same(actual, expected, size, what);
                        }
                    }
                free(p);
                free(vf);
                free(vb);
                free(start);
                free(expected);
                free(actual);
            }
    printf("  weighted sums of several heads: %lu comparisons\n", comparisons - before);
}

static void check_attention_scores(void) {
    static const size_t ds[] = {1, 8, 15, 16, 17, 64, 67};
    static const size_t counts[] = {1, 3, 16, 17, 40};
    unsigned long before = comparisons;
    char what[160];
    for (int data = DATA_ORDINARY; data <= DATA_SPECIAL; data++)
        for (size_t hi = 0; hi < sizeof head_counts / sizeof head_counts[0]; hi++)
            for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++)
                for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
                    size_t heads = head_counts[hi], d = ds[di], count = counts[ci], qs = d + 1, ks = d + 3, ss = count + 2;
                    float *q = allocate(heads * qs * sizeof(float)), *kf = allocate(count * ks * sizeof(float));
                    uint16_t *kb = allocate(count * ks * sizeof(uint16_t));
                    float *expected = allocate(heads * ss * sizeof(float)), *actual = allocate(heads * ss * sizeof(float));
                    fill(q, heads * qs, (data_kind)data, 2.0f);
                    fill_bf16(kb, count * ks, (data_kind)data);
                    for (size_t i = 0; i < count * ks; i++) kf[i] = widen(kb[i]);
                    float scale = 1.0f / sqrtf((float)d);
                    memset(expected, 0, heads * ss * sizeof(float));
                    sy_attention_scores_isa(SY_ISA_SCALAR, q, heads, qs, kf, ks, count, d, scale, expected, ss);
                    for (size_t t = 0; t <= path_count; t++) {
                        sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
                        for (int bf16 = 0; bf16 < 2; bf16++) {
                            if (isa == SY_ISA_SCALAR && !bf16) continue;
                            memset(actual, 0, heads * ss * sizeof(float));
                            if (bf16) sy_attention_scores_bf16_isa(isa, q, heads, qs, kb, ks, count, d, scale, actual, ss);
                            else sy_attention_scores_isa(isa, q, heads, qs, kf, ks, count, d, scale, actual, ss);
                            snprintf(what, sizeof what, "attention scores%s on %s, heads %zu d %zu keys %zu (%s)",
                                     bf16 ? " bf16" : "", isa_name(isa), heads, d, count, data_name((data_kind)data));
                            expect_same(actual, expected, heads * ss, what);
                        }
                    }
                    free(q);
                    free(kf);
                    free(kb);
                    free(expected);
                    free(actual);
                }
    printf("  attention scores: %lu comparisons\n", comparisons - before);
}

/// Row lengths for the element-wise kernels: 0 ... 70, then a few long ones.
static const size_t row_lengths[] = {0,  1,  2,  3,  4,  5,  7,  8,  9,  15, 16, 17, 23, 31, 32, 33, 40,
                                     47, 48, 49, 63, 64, 65, 70, 100, 257, 1000};
enum { ROW_LENGTH_COUNT = sizeof row_lengths / sizeof row_lengths[0] };

/// One check of an element-wise kernel on a row of `count` entries of `data`'s kind, with four
/// scratch rows of count + 1 floats.
typedef void (*row_check)(data_kind data, size_t count, float *scratch[4]);

/// Runs `check` for every row length and each kind of input up to `last`, and prints the comparisons.
static void check_rows(const char *name, data_kind last, row_check check) {
    unsigned long before = comparisons;
    for (int data = DATA_ORDINARY; data <= (int)last; data++)
        for (size_t li = 0; li < ROW_LENGTH_COUNT; li++) {
            float *scratch[4];
            for (int i = 0; i < 4; i++) scratch[i] = allocate((row_lengths[li] + 1) * sizeof(float));
            check((data_kind)data, row_lengths[li], scratch);
            for (int i = 0; i < 4; i++) free(scratch[i]);
        }
    printf("  %s: %lu comparisons\n", name, comparisons - before);
}

static void check_softmax(data_kind data, size_t count, float *scratch[4]) {
    float *row = scratch[0], *expected = scratch[1], *actual = scratch[2];
    fill(row, count, data, 20.0f);
    for (size_t j = 0; j < count; j++)
        if (data == DATA_MASKED || random_next() % 7 == 0) row[j] = -INFINITY;
    memcpy(expected, row, count * sizeof(float));
    int expected_status = sy_softmax_isa(SY_ISA_SCALAR, expected, count);
    char what[120];
    for (size_t t = 0; t < path_count; t++) {
        memcpy(actual, row, count * sizeof(float));
        int status = sy_softmax_isa(paths[t], actual, count);
        snprintf(what, sizeof what, "softmax on %s, %zu entries (%s)", isa_name(paths[t]), count, data_name(data));
        comparisons++;
        if (status != expected_status) mismatch("%s: returned %d, scalar %d", what, status, expected_status);
        expect_same(actual, expected, count, what);
    }
}

static void check_log_sum_exp(data_kind data, size_t count, float *scratch[4]) {
    float *x = scratch[0];
    fill(x, count, data, 30.0f);
    if (data == DATA_SPECIAL && count > 0 && random_next() % 2 == 0) x[0] = -INFINITY;
    double expected = sy_log_sum_exp_isa(SY_ISA_SCALAR, x, count);
    char what[120];
    for (size_t t = 0; t < path_count; t++) {
        snprintf(what, sizeof what, "log-sum-exp on %s, %zu entries (%s)", isa_name(paths[t]), count, data_name(data));
        expect_same_double(sy_log_sum_exp_isa(paths[t], x, count), expected, what);
    }
}

/// The argmax of every path against the loop that keeps the first strictly larger value, and the
/// first index above a threshold against the plain loop: values
/// rounded to quarters (many ties), the special values, a NaN first sometimes, all -infinity and
/// NaN, NaNs among ordinary values.
static void check_argmax(data_kind data, size_t count, float *scratch[4]) {
    float *x = scratch[0];
    for (int variant = 0; variant < 5; variant++) {
        fill(x, count, data, 8.0f);
        if (variant == 4)
            for (size_t j = 1; j < count; j++)
                if (random_next() % 5 == 0) x[j] = NAN;
        if (variant == 1)
            for (size_t j = 0; j < count; j++) x[j] = roundf(x[j] * 4) / 4;
        if (variant == 2 && count > 0) x[0] = NAN;
        if (variant == 3)
            for (size_t j = 0; j < count; j++) x[j] = random_next() % 3 == 0 ? NAN : -INFINITY;
        size_t expected = 0;
        for (size_t j = 1; j < count; j++)
            if (x[j] > x[expected]) expected = j;
        // The first value above a threshold: the median-ish first value, a value above every one, -infinity.
        float thresholds[3] = {count > 0 ? x[count / 2] : 0.0f, INFINITY, -INFINITY};
        for (int h = 0; h < 3; h++) {
            size_t first = count;
            for (size_t j = 0; j < count; j++)
                if (x[j] > thresholds[h]) {
                    first = j;
                    break;
                }
            for (size_t t = 0; t <= path_count; t++) {
                sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
                comparisons++;
                size_t actual = sy_first_above_isa(isa, x, count, thresholds[h]);
                if (actual != first)
                    mismatch("first above %g on %s, %zu entries (%s, variant %d): index %zu, expected %zu",
                             (double)thresholds[h], isa_name(isa), count, data_name(data), variant, actual, first);
            }
        }
        char what[120];
        // The scalar path too: it is the maximum and the scan above, not the loop itself.
        for (size_t t = 0; t <= path_count; t++) {
            sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
            snprintf(what, sizeof what, "argmax on %s, %zu entries (%s, variant %d)", isa_name(isa), count,
                     data_name(data), variant);
            comparisons++;
            size_t actual = sy_argmax_isa(isa, x, count);
            if (actual != expected) mismatch("%s: index %zu, expected %zu", what, actual, expected);
        }
    }
}

static void check_swiglu(data_kind data, size_t count, float *scratch[4]) {
    float *gate = scratch[0], *up = scratch[1], *expected = scratch[2], *actual = scratch[3];
    fill(gate, count, data, 12.0f);
    fill(up, count, data, 2.0f);
    for (size_t j = 0; j < count; j++) expected[j] = sy_silu(gate[j]) * up[j];
    char what[120];
    for (size_t t = 0; t <= path_count; t++) {
        sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
        memcpy(actual, gate, count * sizeof(float));
        sy_swiglu_isa(isa, actual, up, count);
        snprintf(what, sizeof what, "swiglu on %s vs silu(g) * u, %zu entries (%s)", isa_name(isa), count,
                 data_name(data));
        expect_same(actual, expected, count, what);
    }
}

/// gpt-oss's clamped SwiGLU: every path against the scalar one bit for bit, on separate gate and up
/// rows (in place) and on interleaved (gate, up) pairs, with and without biases; and on ordinary inputs
/// within 1e-6 · (|u| + 1) · |g| of (clamp(u) + 1) · g · σ(alpha · g) computed in double.
static void check_clamped_swiglu(data_kind data, size_t width, float *scratch[4]) {
    (void)scratch;  // rows of pairs need more room than the scratch rows
    size_t rows = 3;
    float *pairs = allocate((rows * 3 * width + 1) * sizeof(float)), *bias = allocate((2 * width + 1) * sizeof(float));
    float *expected = allocate((rows * width + 1) * sizeof(float)), *actual = allocate((rows * width + 1) * sizeof(float));
    fill(pairs, rows * 2 * width, data, 12.0f);
    fill(bias, 2 * width, DATA_ORDINARY, 1.0f);
    const float alpha = 1.702f, limit = 7.0f;
    char what[160];
    for (int biased = 0; biased <= 1; biased++) {
        const float *gate_bias = biased ? bias : NULL, *up_bias = biased ? bias + width : NULL;
        sy_clamped_swiglu_isa(SY_ISA_SCALAR, pairs, pairs + 1, 2, 2 * width, gate_bias, up_bias, rows, width, alpha,
                              limit, expected);
        for (size_t t = 0; t < path_count; t++) {
            sy_clamped_swiglu_isa(paths[t], pairs, pairs + 1, 2, 2 * width, gate_bias, up_bias, rows, width, alpha,
                                  limit, actual);
            snprintf(what, sizeof what, "clamped swiglu on %s, interleaved, width %zu%s (%s)", isa_name(paths[t]),
                     width, biased ? ", biases" : "", data_name(data));
            expect_same(actual, expected, rows * width, what);
            // The same values as separate rows (gate rows, then up rows), in place.
            float *gate = actual, *up = pairs + rows * 2 * width;
            for (size_t r = 0; r < rows; r++)
                for (size_t i = 0; i < width; i++) {
                    gate[r * width + i] = pairs[r * 2 * width + 2 * i];
                    up[r * width + i] = pairs[r * 2 * width + 2 * i + 1];
                }
            sy_clamped_swiglu_isa(paths[t], gate, up, 1, width, gate_bias, up_bias, rows, width, alpha, limit, gate);
            snprintf(what, sizeof what, "clamped swiglu on %s, separate rows in place, width %zu%s (%s)",
                     isa_name(paths[t]), width, biased ? ", biases" : "", data_name(data));
            expect_same(actual, expected, rows * width, what);
        }
        if (data == DATA_ORDINARY)
            for (size_t r = 0; r < rows; r++)
                for (size_t i = 0; i < width; i++) {
                    // The biases added in f32 as the kernel adds them, the rest in double.
                    double g = (float)(pairs[r * 2 * width + 2 * i] + (gate_bias ? gate_bias[i] : 0.0f));
                    double u = (float)(pairs[r * 2 * width + 2 * i + 1] + (up_bias ? up_bias[i] : 0.0f));
                    g = g < limit ? g : limit;
                    u = u < -limit ? -limit : u > limit ? limit : u;
                    double want = (u + 1) * g / (1 + exp(-(double)(float)(g * alpha)));
                    comparisons++;
                    // A few f32 roundings, each within 2^-24 of the operands it combines (u + 1 of u and 1).
                    if (fabs(expected[r * width + i] - want) > 1e-6 * (fabs(u) + 1) * (fabs(g) + 1e-30))
                        mismatch("clamped swiglu scalar vs double, width %zu row %zu: %.9g, expected %.9g", width, r,
                                 expected[r * width + i], want);
                }
    }
    free(pairs);
    free(bias);
    free(expected);
    free(actual);
}

/// q8 quantization (sy_q8_quantize_isa) on every path against the scalar one, bit for bit: values and
/// block scales, rows of any length (a padded last block), NaN and infinities included.
static void check_q8_quantize(data_kind data, size_t count, float *scratch[4]) {
    float *row = scratch[0];
    fill(row, count, data, 30.0f);
    // With special values, the second block of denormals and zeros: 127 / amax overflows to infinity, so
    // a zero quantizes to -127 (0 × infinity is NaN) while the padding of a short row stays 0.
    // And in the first block the maximum first, then in the same vector lane (8 and 16 on every path) a
    // signaling and a quiet NaN, which a vector maximum must not let drop it.
    if (data == DATA_SPECIAL) {
        for (size_t p = 32; p < count && p < 64; p++) row[p] = p % 3 == 0 ? 0.0f : bits_float(p % 2 ? 0x00000001u : 0x80000005u);
        if (count > 16) {
            row[0] = -1000.0f;
            row[8] = bits_float(0x7FA00000u);
            row[16] = bits_float(0xFFC00001u);
        }
    }
    size_t blocks = sy_q8_block_count(count);
    int8_t *expected = allocate(blocks * 32), *actual = allocate(blocks * 32);
    float *expected_scales = allocate(blocks * sizeof(float)), *actual_scales = allocate(blocks * sizeof(float));
    sy_q8_quantize_isa(SY_ISA_SCALAR, row, 1, count, count, expected, expected_scales);
    char what[120];
    for (size_t t = 0; t < path_count; t++) {
        sy_q8_quantize_isa(paths[t], row, 1, count, count, actual, actual_scales);
        snprintf(what, sizeof what, "q8 quantize on %s, %zu entries (%s)", isa_name(paths[t]), count, data_name(data));
        expect_same(actual_scales, expected_scales, blocks, what);
        comparisons++;
        if (memcmp(actual, expected, blocks * 32) != 0) mismatch("%s: the int8 values differ", what);
    }
    free(expected);
    free(actual);
    free(expected_scales);
    free(actual_scales);
}

/// q8 quantization of a weight at load (sy_q8_quantize_weight_isa): bf16 rows (widened) and f32 rows with
/// a row stride, every path, on 1 and 3 threads, against sy_q8_quantize_isa on the scalar path of the f32
/// values, bit for bit; more rows than a task holds, and special values (NaN, infinities, denormals).
static void check_q8_quantize_weight(void) {
    size_t n = 75, k = 70, stride = 73, blocks = sy_q8_block_count(k);
    uint16_t *bits = allocate(n * stride * sizeof(uint16_t));
    float *values = allocate(n * stride * sizeof(float)), *widened = allocate(n * k * sizeof(float));
    int8_t *expected = allocate(n * blocks * 32), *actual = allocate(n * blocks * 32);
    float *expected_scales = allocate(n * blocks * sizeof(float)), *actual_scales = allocate(n * blocks * sizeof(float));
    fill(values, n * stride, DATA_SPECIAL, 30.0f);
    for (size_t i = 0; i < n * stride; i++) bits[i] = (uint16_t)(float_bits(values[i]) >> 16);
    char what[120];
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        for (size_t j = 0; j < n; j++)
            for (size_t p = 0; p < k; p++)
                widened[j * k + p] = bf16 ? bits_float((uint32_t)bits[j * stride + p] << 16) : values[j * stride + p];
        sy_q8_quantize_isa(SY_ISA_SCALAR, widened, n, k, k, expected, expected_scales);
        for (int threads = 1; threads <= 3; threads += 2) {
            sy_set_thread_count(threads);
            for (size_t t = 0; t < path_count; t++) {
                memset(actual, 0x55, n * blocks * 32);
                if (sy_q8_quantize_weight_isa(paths[t], bf16 ? (const void *)bits : (const void *)values, bf16, n, k,
                                              stride, actual, actual_scales) != 0)
                    mismatch("q8 weight quantize on %s failed", isa_name(paths[t]));
                snprintf(what, sizeof what, "q8 weight quantize on %s, %s rows, %d threads", isa_name(paths[t]),
                         bf16 ? "bf16" : "f32", threads);
                expect_same(actual_scales, expected_scales, n * blocks, what);
                comparisons++;
                if (memcmp(actual, expected, n * blocks * 32) != 0) mismatch("%s: the int8 values differ", what);
            }
        }
        sy_set_thread_count(1);
    }
    free(bits);
    free(values);
    free(widened);
    free(expected);
    free(actual);
    free(expected_scales);
    free(actual_scales);
}

/// sy_parallel_copy: every byte of a copy of several pieces and a partial last one, on 1 and 3 threads,
/// and nothing written past its end.
static void check_parallel_copy(void) {
    size_t bytes = (3 << 20) + 12345;
    unsigned char *source = allocate(bytes), *target = allocate(bytes + 64);
    for (size_t i = 0; i < bytes; i++) source[i] = (unsigned char)(random_next() >> 11);
    for (int threads = 1; threads <= 3; threads += 2) {
        sy_set_thread_count(threads);
        memset(target, 0xA5, bytes + 64);
        sy_parallel_copy(target, source, bytes);
        comparisons++;
        if (memcmp(target, source, bytes) != 0) mismatch("parallel copy on %d threads: the bytes differ", threads);
        for (size_t i = bytes; i < bytes + 64; i++)
            if (target[i] != 0xA5) {
                mismatch("parallel copy on %d threads wrote past the end", threads);
                break;
            }
    }
    sy_set_thread_count(1);
    free(source);
    free(target);
}

/// Checks `--sdot yes|no` against the CPU; returns 0 when it holds (or was not asked).
static int check_sdot_argument(int argc, char **argv) {
    if (argc == 1) return 0;
    if (argc != 3 || strcmp(argv[1], "--sdot") != 0 || (strcmp(argv[2], "yes") != 0 && strcmp(argv[2], "no") != 0)) {
        fprintf(stderr, "usage: isa_equality [--sdot yes|no]\n");
        return 1;
    }
#if defined(__aarch64__) && defined(__linux__)
    int has = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
    printf("isa_equality: the CPU %s the dot-product extension (the q8 product uses %s)\n", has ? "has" : "lacks",
           has ? "sdot" : "smull");
    if (has != (strcmp(argv[2], "yes") == 0)) {
        fprintf(stderr, "isa_equality: --sdot %s, but the CPU %s it\n", argv[2], has ? "has" : "lacks");
        return 1;
    }
    return 0;
#else
    fprintf(stderr, "isa_equality: --sdot is for AArch64 Linux\n");
    return 1;
#endif
}

// MARK: - MXFP4 products (sy_mxfp4.h)

/// Random MXFP4 weights: `block_count` blocks of random bytes, then their scale bytes near 127 (with
/// `special`, a quarter of them 0, 1, 2 or 254 instead).
static void fill_mxfp4(uint8_t *blocks, uint8_t *scales, size_t block_count, int special) {
    for (size_t i = 0; i < block_count * 16; i++) blocks[i] = (uint8_t)random_next();
    for (size_t i = 0; i < block_count; i++) {
        uint64_t r = random_next() % 16;
        static const uint8_t extremes[] = {0, 1, 2, 254};
        scales[i] = special && r < 4 ? extremes[r] : (uint8_t)(120 + random_next() % 14);
    }
}

/// Element p of stored MXFP4 row `row` dequantized (sy_mxfp4_value × sy_mxfp4_scale), in double.
static double mxfp4_weight(const uint8_t *blocks, const uint8_t *scales, size_t blocks_per_row, size_t row, size_t p) {
    size_t b = p / 32, within = p % 32;
    uint8_t byte = blocks[(row * blocks_per_row + b) * 16 + within / 2];
    return (double)sy_mxfp4_value(within % 2 == 0 ? byte & 15 : byte >> 4) * sy_mxfp4_scale(scales[row * blocks_per_row + b]);
}

/// Every path's MXFP4 product against the scalar one, bit for bit, on random blocks and scales (scale
/// bytes near 127, and with special inputs also 0, 1, 2 and 254 and special x), for m = 1 ... 9, k = 32 ...
/// 160, both row strides; the scalar path against a plain double sum of the dequantized weights
/// (sy_mxfp4_value × sy_mxfp4_scale) within 1e-5 of Σ|x · w| on ordinary inputs; rows within a batch
/// equal the same rows alone.
static void check_mxfp4(void) {
    char what[200];
    for (int special = 0; special <= 1; special++)
        for (size_t k = 32; k <= 160; k += 64)
            for (size_t m = 1; m <= 9; m += 4)
                for (size_t stride = 1; stride <= 2; stride++) {
                    size_t n = 13, blocks_per_row = k / 32, rows = n * stride, xs = k + 3, ys = n + 2;
                    uint8_t *blocks = allocate(rows * blocks_per_row * 16), *scales = allocate(rows * blocks_per_row);
                    float *x = allocate(m * xs * sizeof(float));
                    float *expected = allocate(m * ys * sizeof(float)), *actual = allocate(m * ys * sizeof(float));
                    fill_mxfp4(blocks, scales, rows * blocks_per_row, special);
                    fill(x, m * xs, special ? DATA_SPECIAL : DATA_ORDINARY, 4.0f);
                    for (size_t i = 0; i < m * ys; i++) expected[i] = actual[i] = -7.0f;  // untouched padding
                    sy_matmul_nt_mxfp4_isa(SY_ISA_SCALAR, x, m, k, xs, blocks, scales, n, stride, expected, ys);
                    for (size_t t = 0; t < path_count; t++) {
                        for (size_t i = 0; i < m * ys; i++) actual[i] = -7.0f;
                        sy_matmul_nt_mxfp4_isa(paths[t], x, m, k, xs, blocks, scales, n, stride, actual, ys);
                        snprintf(what, sizeof what, "mxfp4 on %s vs scalar, m %zu k %zu n %zu stride %zu (%s)",
                                 isa_name(paths[t]), m, k, n, stride, special ? "special" : "ordinary");
                        expect_same(actual, expected, m * ys, what);
                        // The last row alone: the same bits as inside the batch.
                        float alone[16];
                        sy_matmul_nt_mxfp4_isa(paths[t], x + (m - 1) * xs, 1, k, xs, blocks, scales, n, stride, alone,
                                               16);
                        snprintf(what, sizeof what, "mxfp4 on %s, row %zu alone vs in a batch of %zu, k %zu",
                                 isa_name(paths[t]), m - 1, m, k);
                        expect_same(alone, expected + (m - 1) * ys, n, what);
                    }
                    if (!special)
                        for (size_t i = 0; i < m; i++)
                            for (size_t j = 0; j < n; j++) {
                                double sum = 0, magnitude = 0;
                                for (size_t p = 0; p < k; p++) {
                                    double w = mxfp4_weight(blocks, scales, blocks_per_row, j * stride, p);
                                    sum += w * x[i * xs + p];
                                    magnitude += fabs(w * x[i * xs + p]);
                                }
                                comparisons++;
                                if (fabs(expected[i * ys + j] - sum) > 1e-5 * magnitude + 1e-30)
                                    mismatch("mxfp4 scalar vs the dequantized sum, m %zu k %zu row %zu col %zu: %.9g, "
                                             "expected %.9g", m, k, i, j, expected[i * ys + j], sum);
                            }
                    free(blocks);
                    free(scales);
                    free(x);
                    free(expected);
                    free(actual);
                }
}

/// The fast MXFP4 product (x quantized to int8): every path against the scalar one bit for bit, for
/// m = 1 ... 9, k = 32 ... 288 (whole and partial groups of four blocks), both row strides, scale bytes
/// as in check_mxfp4; rows alone equal rows in a batch; a grouped call of two products on their own rows
/// equals each product alone; and on ordinary inputs the scalar result is within the stated bound of the
/// dequantized f32 sum: Σ over blocks of Σ|w| · amax(x block) / 254 (x rounded to the nearest of 127
/// steps of amax) plus 1e-5 of Σ|x · w|.
static void check_mxfp4_q8(void) {
    char what[200];
    // k of 17 and 34 blocks: the tiles build a row's scale factors 16 blocks (8 on AVX2) at a time.
    static const size_t ks[] = {32, 96, 160, 224, 288, 544, 1088};
    for (int special = 0; special <= 1; special++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
            for (size_t m = 1, k = ks[ki]; m <= 9; m += m < 5 ? 1 : 4)  // the AVX2 tiles take 1-4 tokens
                for (size_t stride = 1; stride <= 2; stride++) {
                    size_t n = 13, blocks_per_row = k / 32, rows = n * stride, xs = k + 3, ys = n + 2;
                    uint8_t *blocks = allocate(rows * blocks_per_row * 16), *scales = allocate(rows * blocks_per_row);
                    float *x = allocate(m * xs * sizeof(float));
                    float *expected = allocate(m * ys * sizeof(float)), *actual = allocate(m * ys * sizeof(float));
                    fill_mxfp4(blocks, scales, rows * blocks_per_row, special);
                    fill(x, m * xs, special ? DATA_SPECIAL : DATA_ORDINARY, 4.0f);
                    for (size_t i = 0; i < m * ys; i++) expected[i] = -7.0f;  // untouched padding
                    if (sy_matmul_nt_mxfp4_q8_isa(SY_ISA_SCALAR, x, m, k, xs, blocks, scales, n, stride, expected, ys) != 0)
                        mismatch("mxfp4 q8 scalar: allocation failed");
                    for (size_t t = 0; t < path_count; t++) {
                        for (size_t i = 0; i < m * ys; i++) actual[i] = -7.0f;
                        sy_matmul_nt_mxfp4_q8_isa(paths[t], x, m, k, xs, blocks, scales, n, stride, actual, ys);
                        snprintf(what, sizeof what, "mxfp4 q8 on %s vs scalar, m %zu k %zu n %zu stride %zu (%s)",
                                 isa_name(paths[t]), m, k, n, stride, special ? "special" : "ordinary");
                        expect_same(actual, expected, m * ys, what);
                        float alone[16];
                        sy_matmul_nt_mxfp4_q8_isa(paths[t], x + (m - 1) * xs, 1, k, xs, blocks, scales, n, stride,
                                                  alone, 16);
                        snprintf(what, sizeof what, "mxfp4 q8 on %s, row %zu alone vs in a batch of %zu, k %zu",
                                 isa_name(paths[t]), m - 1, m, k);
                        expect_same(alone, expected + (m - 1) * ys, n, what);
                        // Two products in one grouped call: rows [0, m - 1) on the first 7 columns, row m - 1
                        // on the last 6 (their own weight rows), each equal to the product alone.
                        for (size_t i = 0; i < m * ys; i++) actual[i] = -7.0f;
                        size_t first = 7, row_blocks = stride * blocks_per_row;
                        sy_grouped_mxfp4_product products[2] = {
                            {0, m - 1, blocks, scales, first, stride, actual, ys},
                            {m - 1, 1, blocks + first * row_blocks * 16, scales + first * row_blocks, n - first, stride,
                             actual + (m - 1) * ys + first, ys}};
                        if (sy_matmul_nt_mxfp4_q8_grouped_isa(paths[t], x, m, k, xs, products, 2) != 0)
                            mismatch("mxfp4 q8 grouped on %s: refused", isa_name(paths[t]));
                        snprintf(what, sizeof what, "mxfp4 q8 grouped on %s vs alone, m %zu k %zu", isa_name(paths[t]), m, k);
                        for (size_t i = 0; i + 1 < m; i++) expect_same(actual + i * ys, expected + i * ys, first, what);
                        expect_same(actual + (m - 1) * ys + first, expected + (m - 1) * ys + first, n - first, what);
                    }
                    if (!special)
                        for (size_t i = 0; i < m; i++)
                            for (size_t j = 0; j < n; j++) {
                                double sum = 0, magnitude = 0, bound = 0;
                                for (size_t b = 0; b < blocks_per_row; b++) {
                                    double amax = 0, weights = 0;
                                    for (size_t p = 32 * b; p < 32 * b + 32; p++) {
                                        double w = mxfp4_weight(blocks, scales, blocks_per_row, j * stride, p);
                                        sum += w * x[i * xs + p];
                                        magnitude += fabs(w * x[i * xs + p]);
                                        weights += fabs(w);
                                        if (fabs(x[i * xs + p]) > amax) amax = fabs(x[i * xs + p]);
                                    }
                                    bound += weights * amax / 254;
                                }
                                comparisons++;
                                if (fabs(expected[i * ys + j] - sum) > bound + 1e-5 * magnitude + 1e-30)
                                    mismatch("mxfp4 q8 scalar vs the dequantized sum beyond its bound %.3g, m %zu k %zu "
                                             "row %zu col %zu: %.9g, expected %.9g", bound, m, k, i, j,
                                             expected[i * ys + j], sum);
                            }
                    free(blocks);
                    free(scales);
                    free(x);
                    free(expected);
                    free(actual);
                }
}

// MARK: - FP8 products (sy_fp8.h)

/// The e4m3fn value written from the format's definition, in double.
static float reference_e4m3(uint8_t byte) {
    int exponent = (byte >> 3) & 15, mantissa = byte & 7;
    if ((byte & 0x7F) == 0x7F) return NAN;
    double magnitude = exponent == 0 ? ldexp(mantissa / 8.0, -6) : ldexp(1.0 + mantissa / 8.0, exponent - 7);
    return (float)((byte & 0x80) ? -magnitude : magnitude);
}

/// The e4m3fn code nearest to `value` by search over every finite code (ties: the even code), ±448
/// beyond the range; NaN gives 0x7F with the sign.
static uint8_t reference_e4m3_code(float value) {
    uint8_t sign = (float_bits(value) >> 24) & 0x80;
    if (value != value) return sign | 0x7F;
    double magnitude = fabs((double)value), best = INFINITY;
    uint8_t code = 0;
    for (int c = 0; c <= 0x7E; c++) {
        double distance = fabs(magnitude - reference_e4m3((uint8_t)c));
        if (distance < best || (distance == best && (c & 1) == 0)) {
            best = distance;
            code = (uint8_t)c;
        }
    }
    return sign | code;
}

/// Random e4m3 bytes: any finite code, or (special) also NaN codes now and then.
static void fill_fp8(uint8_t *bytes, size_t n, data_kind data) {
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = (uint8_t)random_next();
        if (data != DATA_SPECIAL && (byte & 0x7F) == 0x7F) byte ^= 1;
        bytes[i] = byte;
    }
}

/// The values and rounding of e4m3, every path's widening against scalar, and every path's product
/// against scalar and against the f32 product on the dequantized weights, bit for bit: m 1 ... 9, k
/// not a multiple of 16 nor of the block, n not a multiple of the block rows, blocks 16 ... 128 wide,
/// accumulate on and off; a row alone equals the row in a batch; 3 threads equal 1.
static void check_fp8(void) {
    char what[200];
    for (int byte = 0; byte < 256; byte++) {
        float value = sy_fp8_e4m3_value((uint8_t)byte), expected = reference_e4m3((uint8_t)byte);
        snprintf(what, sizeof what, "e4m3 value of 0x%02x", byte);
        expect_same(&value, &expected, 1, what);
        comparisons++;
        if ((byte & 0x7F) != 0x7F && sy_fp8_e4m3_from_float(value) != byte)
            mismatch("e4m3 code of %.9g is 0x%02x, expected 0x%02x", value, sy_fp8_e4m3_from_float(value), byte);
        // The midpoint to the next code rounds to the even one of the two.
        if ((byte & 0x7F) < 0x7E) {
            float next = sy_fp8_e4m3_value((uint8_t)(byte + 1));
            float midpoint = (float)(((double)value + (double)next) / 2);
            uint8_t code = sy_fp8_e4m3_from_float(midpoint), want = reference_e4m3_code(midpoint);
            comparisons++;
            if (code != want || (code & 1) != 0)
                mismatch("e4m3 code of the midpoint %.9g is 0x%02x, expected 0x%02x", midpoint, code, want);
        }
    }
    static const float edges[] = {448.0f, 463.9f, 464.0f, 465.0f, 1e9f, INFINITY, -INFINITY, 0x1p-10f, 0x1p-9f,
                                  0x1.8p-10f, 0x1p-6f, 0x1.ep-7f, 0x1p-149f, -0.0f, 0.0f, NAN};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0] + 4000; i++) {
        float value = i < sizeof edges / sizeof edges[0] ? edges[i]
                                                         : ldexpf(random_unit(), (int)(random_next() % 24) - 14);
        uint8_t code = sy_fp8_e4m3_from_float(value), want = reference_e4m3_code(value);
        comparisons++;
        if (code != want) mismatch("e4m3 code of %.9g is 0x%02x, expected 0x%02x", value, code, want);
    }
    // Widening: all 256 codes, every path, with block scales that make products exact, inexact,
    // subnormal and NaN-carrying.
    {
        uint8_t row[300];
        float scales[32], expected[300], actual[300];
        for (size_t i = 0; i < 300; i++) row[i] = (uint8_t)(i * 7);
        for (size_t k = 1; k <= 300; k += 37)
            for (size_t block_k = 16; block_k <= 64; block_k += 48) {
                // Subnormal, finite but 2^120 or more (scale · 256 would overflow: the definition's route on
                // the vector paths), and ordinary scales.
                for (size_t b = 0; b < 32; b++)
                    scales[b] = b % 5 == 0 ? 0x1p-140f : b % 5 == 1 ? -0x1p121f : random_unit() * 3.0f;
                sy_fp8_dequantize_row_isa(SY_ISA_SCALAR, row, k, scales, block_k, expected);
                for (size_t p = 0; p < k; p++) {
                    float want = reference_e4m3(row[p]) * scales[p / block_k];
                    snprintf(what, sizeof what, "fp8 scalar widening, k %zu block %zu at %zu", k, block_k, p);
                    expect_same(&expected[p], &want, 1, what);
                }
                for (size_t t = 0; t < path_count; t++) {
                    sy_fp8_dequantize_row_isa(paths[t], row, k, scales, block_k, actual);
                    snprintf(what, sizeof what, "fp8 widening on %s vs scalar, k %zu block %zu", isa_name(paths[t]),
                             k, block_k);
                    expect_same(actual, expected, k, what);
                }
            }
    }
    static const size_t blocks[][2] = {{16, 16}, {128, 128}, {5, 32}, {3, 48}};
    for (int special = 0; special <= 1; special++)
        for (size_t shape = 0; shape < 4; shape++)
            for (size_t ki = 0; ki < 5; ki++)
                // 1-8: the direct products' tiles of every height (AVX2 and NEON: 4 and 1-4); 9 and 13: buffered.
                // At k 1,100 and 5,000 (buffered only) the widened rows are a multiple of the f32 tile's
                // weight rows below 16 (12 or 14) and, past 64 KiB of rows, one tile's rows (2-4).
                for (size_t m = ki < 3 ? 1 : 9; m <= 13; m += m < 9 ? 1 : 4) {
                    static const size_t ks[] = {37, 118, 199, 1100, 5000};
                    size_t k = ks[ki], n = 29, xs = k + 3, ys = n + 2, bn = blocks[shape][0], bk = blocks[shape][1];
                    size_t sr = (n + bn - 1) / bn, sc = (k + bk - 1) / bk;
                    data_kind data = special ? DATA_SPECIAL : DATA_ORDINARY;
                    uint8_t *w = allocate(n * k);
                    float *scales = allocate(sr * sc * sizeof(float)), *dequantized = allocate(n * k * sizeof(float));
                    float *x = allocate(m * xs * sizeof(float)), *expected = allocate(m * ys * sizeof(float));
                    float *actual = allocate(m * ys * sizeof(float)), *f32 = allocate(m * ys * sizeof(float));
                    fill_fp8(w, n * k, data);
                    for (size_t i = 0; i < sr * sc; i++) scales[i] = (random_unit() + 1.5f) * 0.01f;
                    // Special data: now and then a scale off the vector paths' f16 route (2^120 or more), an
                    // infinite, NaN, subnormal or negative one.
                    static const float odd_scales[] = {0x1p121f, -0x1p127f, INFINITY, NAN, 0x1p-140f, -0.5f, -0.0f};
                    if (special)
                        for (size_t i = 0; i < sr * sc; i += 3) scales[i] = odd_scales[(i / 3 + shape) % 7];
                    fill(x, m * xs, data, 4.0f);
                    for (size_t j = 0; j < n; j++)
                        for (size_t p = 0; p < k; p++)
                            dequantized[j * k + p] = reference_e4m3(w[j * k + p]) * scales[(j / bn) * sc + p / bk];
                    for (int accumulate = 0; accumulate <= 1; accumulate++) {
                        for (size_t i = 0; i < m * ys; i++) expected[i] = f32[i] = (float)(i % 7) - 3.0f;
                        if (sy_matmul_nt_fp8_isa(SY_ISA_SCALAR, x, m, k, xs, w, n, scales, bn, bk, expected, ys,
                                                 accumulate) != 0)
                            mismatch("fp8 scalar product refused valid blocks %zu × %zu", bn, bk);
                        sy_matmul_nt_isa(SY_ISA_SCALAR, x, m, k, xs, dequantized, n, k, f32, ys, accumulate);
                        snprintf(what, sizeof what,
                                 "fp8 scalar vs f32 on the dequantized weights, m %zu k %zu blocks %zu × %zu (%s)", m,
                                 k, bn, bk, data_name(data));
                        expect_same(expected, f32, m * ys, what);
                        for (size_t t = 0; t < path_count; t++) {
                            for (size_t i = 0; i < m * ys; i++) actual[i] = (float)(i % 7) - 3.0f;
                            sy_matmul_nt_fp8_isa(paths[t], x, m, k, xs, w, n, scales, bn, bk, actual, ys, accumulate);
                            snprintf(what, sizeof what, "fp8 on %s vs scalar, m %zu k %zu blocks %zu × %zu acc %d (%s)",
                                     isa_name(paths[t]), m, k, bn, bk, accumulate, data_name(data));
                            expect_same(actual, expected, m * ys, what);
                        }
                    }
                    // The last row alone: the same bits as inside the batch.
                    for (size_t t = 0; t < path_count; t++) {
                        float alone[32];
                        sy_matmul_nt_fp8_isa(paths[t], x + (m - 1) * xs, 1, k, xs, w, n, scales, bn, bk, alone, 32, 0);
                        sy_matmul_nt_fp8_isa(paths[t], x, m, k, xs, w, n, scales, bn, bk, actual, ys, 0);
                        snprintf(what, sizeof what, "fp8 on %s, row %zu alone vs in a batch of %zu, k %zu",
                                 isa_name(paths[t]), m - 1, m, k);
                        expect_same(alone, actual + (m - 1) * ys, n, what);
                    }
                    free(w);
                    free(scales);
                    free(dequantized);
                    free(x);
                    free(expected);
                    free(actual);
                    free(f32);
                }
    // A NaN code among ordinary codes, x and scales: each row holds one at another place (both NaN codes),
    // so the vector paths' checks for them (a run of 64 codes, a chunk of 16) each meet one.
    {
        size_t k = 300, n = 40, bk = 128, sc = (k + bk - 1) / bk;
        uint8_t *w = allocate(n * k);
        float *scales = allocate(sc * sizeof(float)), *x = allocate(21 * k * sizeof(float));
        float *expected = allocate(21 * n * sizeof(float)), *actual = allocate(21 * n * sizeof(float));
        fill_fp8(w, n * k, DATA_ORDINARY);
        for (size_t j = 0; j < n; j++) w[j * k + (j * 37) % k] = j % 2 ? 0x7F : 0xFF;
        for (size_t i = 0; i < sc; i++) scales[i] = 0.02f + 0.001f * (float)i;
        fill(x, 21 * k, DATA_ORDINARY, 4.0f);
        for (size_t m = 1; m <= 21; m += 6) {  // direct (1, 7) and buffered (13, 19)
            sy_matmul_nt_fp8_isa(SY_ISA_SCALAR, x, m, k, k, w, n, scales, n, bk, expected, n, 0);
            for (size_t t = 0; t < path_count; t++) {
                sy_matmul_nt_fp8_isa(paths[t], x, m, k, k, w, n, scales, n, bk, actual, n, 0);
                snprintf(what, sizeof what, "fp8 on %s with a NaN code a row, m %zu", isa_name(paths[t]), m);
                expect_same(actual, expected, m * n, what);
            }
        }
        free(w);
        free(scales);
        free(x);
        free(expected);
        free(actual);
    }
    // A product split over threads: 3 threads give 1 thread's bits, on every path.
    {
        size_t m = 3, k = 300, n = 400, bn = 128, bk = 128, sc = (k + bk - 1) / bk;
        uint8_t *w = allocate(n * k);
        float *scales = allocate(((n + bn - 1) / bn) * sc * sizeof(float)), *x = allocate(m * k * sizeof(float));
        float *one = allocate(m * n * sizeof(float)), *three = allocate(m * n * sizeof(float));
        fill_fp8(w, n * k, DATA_ORDINARY);
        for (size_t i = 0; i < ((n + bn - 1) / bn) * sc; i++) scales[i] = 0.01f + 0.001f * (float)i;
        fill(x, m * k, DATA_ORDINARY, 1.0f);
        for (size_t t = 0; t <= path_count; t++) {
            sy_isa isa = t == path_count ? SY_ISA_SCALAR : paths[t];
            sy_set_thread_count(1);
            sy_matmul_nt_fp8_isa(isa, x, m, k, k, w, n, scales, bn, bk, one, n, 0);
            sy_set_thread_count(3);
            sy_matmul_nt_fp8_isa(isa, x, m, k, k, w, n, scales, bn, bk, three, n, 0);
            snprintf(what, sizeof what, "fp8 on %s: 3 threads vs 1", isa_name(isa));
            expect_same(three, one, m * n, what);
        }
        sy_set_thread_count(1);
        free(w);
        free(scales);
        free(x);
        free(one);
        free(three);
    }
    // Block columns that would straddle a 16-lane step are refused.
    {
        float x[32] = {0}, y[2] = {0}, scales[4] = {1, 1, 1, 1};
        uint8_t w[64] = {0};
        comparisons++;
        if (sy_matmul_nt_fp8_isa(SY_ISA_SCALAR, x, 1, 32, 32, w, 2, scales, 1, 24, y, 1, 0) != -1 ||
            sy_matmul_nt_fp8_isa(SY_ISA_SCALAR, x, 1, 32, 32, w, 2, scales, 0, 16, y, 1, 0) != -1)
            mismatch("fp8 product accepted blocks of 1 × 24 or 0 × 16");
    }
}

int main(int argc, char **argv) {
    if (check_sdot_argument(argc, argv) != 0) return 1;
    printf("isa_equality: paths");
    // Every vector path, worst to best as choose_isa ranks them (NEON and the x86 paths never meet).
    static const sy_isa ranked[] = {SY_ISA_AVX2, SY_ISA_AVX2_VNNI, SY_ISA_AVX512, SY_ISA_AVX512BF16, SY_ISA_NEON};
    for (size_t r = 0; r < sizeof ranked / sizeof ranked[0]; r++)
        if (sy_isa_supported(ranked[r])) {
            paths[path_count++] = ranked[r];
            printf(" %s", isa_name(ranked[r]));
        }
    printf(" against scalar; active path %s\n", isa_name(sy_active_isa()));
    if (path_count == 0) {
        // Nothing to compare would make a run that cannot fail: refuse it.
        fprintf(stderr, "isa_equality: this CPU supports no vector path\n");
        return 1;
    }
    if (!sy_isa_supported(sy_active_isa()) || (getenv("SWITCHYARD_KERNEL") == NULL && sy_active_isa() != paths[path_count - 1]))
        mismatch("the active path %s is not the best supported one", isa_name(sy_active_isa()));
    check_products();
    check_wide_products();
    check_chunked_products();
    check_thread_counts();
    check_grouped();
    check_weighted_sums();
    check_weighted_sums_of_heads();
    check_attention_scores();
    check_rows("softmax", DATA_MASKED, check_softmax);
    check_rows("log-sum-exp", DATA_SPECIAL, check_log_sum_exp);
    check_rows("argmax", DATA_SPECIAL, check_argmax);
    check_rows("swiglu", DATA_SPECIAL, check_swiglu);
    check_rows("clamped swiglu", DATA_SPECIAL, check_clamped_swiglu);
    check_rows("q8 quantize", DATA_SPECIAL, check_q8_quantize);
    check_q8_quantize_weight();
    check_parallel_copy();
    check_mxfp4();
    check_mxfp4_q8();
    check_fp8();
    printf("isa_equality: %lu comparisons, %lu mismatches (NaNs with another sign or payload: %lu): %s\n",
           comparisons, mismatches, nan_payloads, mismatches == 0 ? "OK" : "FAILED");
    return mismatches == 0 ? 0 : 1;
}
