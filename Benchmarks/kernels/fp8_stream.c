// The FP8 product (``sy_matmul_nt_fp8_isa``, e4m3fn bytes with 128 × 128 block scales) streaming its
// weights at m rows of x, as a DeepSeek-shaped decode step runs its experts: per expert a gate and an up
// product (512 × 1,024) and a down product (1,024 × 512), one call each, over EXPERTS experts in turn
// (1.5 MB each; the default 384 are 600 MB, past the last-level cache), 3 passes after a warm-up one.
// With `bf16` as the third argument the same shapes run the fast bf16 product instead (twice the bytes),
// the rate a bf16 checkpoint's experts stream at. Prints the rate the weights were read at and the time
// an expert took, to set beside `floors --bandwidth`. The direct products at m ≤ 4 and the f16 route of
// the widening in Sources/CKernels/fp8.c were measured with it.
//
// Build from the repository root as SwiftPM builds the kernels (the Swift toolchain's clang, -O2):
//   clang -O2 -fPIC -I Sources/CKernels/include -o /tmp/fp8_stream Benchmarks/kernels/fp8_stream.c
//      Sources/CKernels/kernels.c Sources/CKernels/mxfp4.c Sources/CKernels/fp8.c -lpthread -lm   (one line)
//   /tmp/fp8_stream [M] [THREADS] [fp8|bf16] [EXPERTS]   e.g. /tmp/fp8_stream 1 2; SWITCHYARD_KERNEL=avx2
//   picks the path
#include "sy_fp8.h"
#include "sy_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int m = argc > 1 ? atoi(argv[1]) : 1, threads = argc > 2 ? atoi(argv[2]) : 2;
    int bf16 = argc > 3 && strcmp(argv[3], "bf16") == 0;
    long experts_arg = argc > 4 ? atol(argv[4]) : 384;
    if (m < 1 || m > 32 || threads < 1 || experts_arg < 1 || (argc > 3 && !bf16 && strcmp(argv[3], "fp8") != 0)) {
        fprintf(stderr, "usage: %s [M (1-32)] [THREADS] [fp8|bf16] [EXPERTS]\n", argv[0]);
        return 2;
    }
    sy_set_thread_count(threads);
    const size_t hidden = 1024, ffn = 512, experts = (size_t)experts_arg, per = 3 * hidden * ffn;
    const size_t scale_count = 3 * (hidden / 128) * (ffn / 128);  // the three matrices' 128 × 128 blocks
    uint8_t *w = bf16 ? NULL : malloc(experts * per);
    uint16_t *wb = bf16 ? malloc(experts * per * sizeof(uint16_t)) : NULL;
    float *scales = malloc(experts * scale_count * sizeof(float));
    float *x = malloc((size_t)m * hidden * sizeof(float)), *h = malloc((size_t)m * ffn * sizeof(float));
    float *y = malloc((size_t)m * hidden * sizeof(float));
    if ((w == NULL && wb == NULL) || scales == NULL || x == NULL || h == NULL || y == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < experts * per; i++) {
        uint32_t bits = (uint32_t)(i * 2654435761u);
        if (bf16) {
            wb[i] = (uint16_t)(0x3C00 + (bits >> 20) % 512);
        } else {
            uint8_t code = (uint8_t)(bits >> 13);
            w[i] = (code & 0x7F) == 0x7F ? code ^ 1 : code;  // every finite code, no NaN
        }
    }
    for (size_t i = 0; i < experts * scale_count; i++) scales[i] = 0.001f * (float)(1 + i % 7);
    for (size_t i = 0; i < (size_t)m * hidden; i++) x[i] = 0.01f * (float)(i % 17);
    for (size_t i = 0; i < (size_t)m * ffn; i++) h[i] = 0.01f * (float)(i % 13);
    sy_isa isa = sy_active_isa();
    const size_t up_scales = (hidden / 128) * (ffn / 128);
    for (int pass = 0; pass < 2; pass++) {  // the first pass warms up (page faults, thread start)
        double started = now(), bytes = 0;
        for (int round = 0; round < 3; round++)
            for (size_t e = 0; e < experts; e++) {
                int failed = 0;
                if (bf16) {
                    const uint16_t *gate = wb + e * per, *up = gate + hidden * ffn, *down = up + hidden * ffn;
                    failed |= sy_matmul_nt_bf16_fast_isa(isa, x, m, hidden, hidden, gate, ffn, hidden, h, ffn, 0);
                    failed |= sy_matmul_nt_bf16_fast_isa(isa, x, m, hidden, hidden, up, ffn, hidden, h, ffn, 0);
                    failed |= sy_matmul_nt_bf16_fast_isa(isa, h, m, ffn, ffn, down, hidden, ffn, y, hidden, 0);
                    bytes += (double)(per * sizeof(uint16_t));
                } else {
                    const uint8_t *gate = w + e * per, *up = gate + hidden * ffn, *down = up + hidden * ffn;
                    const float *s = scales + e * scale_count;
                    failed |= sy_matmul_nt_fp8_isa(isa, x, m, hidden, hidden, gate, ffn, s, 128, 128, h, ffn, 0);
                    failed |= sy_matmul_nt_fp8_isa(isa, x, m, hidden, hidden, up, ffn, s + up_scales, 128, 128, h, ffn, 0);
                    failed |= sy_matmul_nt_fp8_isa(isa, h, m, ffn, ffn, down, hidden, s + 2 * up_scales, 128, 128, y,
                                                   hidden, 0);
                    bytes += (double)per;
                }
                if (failed) {
                    fprintf(stderr, "a product failed\n");
                    return 1;
                }
            }
        double seconds = now() - started;
        if (pass == 1)
            printf("%s, threads %d, m = %d: weights read at %.1f GB/s, %.1f µs an expert\n", bf16 ? "bf16 (fast)" : "FP8",
                   threads, m, bytes / seconds / 1e9, seconds / (3.0 * (double)experts) * 1e6);
    }
    free(w);
    free(wb);
    free(scales);
    free(x);
    free(h);
    free(y);
    return 0;
}
