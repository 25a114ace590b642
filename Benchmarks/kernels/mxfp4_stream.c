// The fast MXFP4 product streaming its weights: gpt-oss-shaped gate_up rows (k = 2,880, 5,760 rows an
// expert, 16 bytes and one scale byte per 32 weights), EXPERTS experts (default 96, 1.2 GB; 2 put 17.6 MB
// in the L3, to see the product's own rate), two experts a job as a layer runs them
// (``sy_matmul_nt_mxfp4_q8_grouped_isa``), each on m rows of x, 3 passes after a warm-up one.
// Prints the rate the weights were read at, to set beside `floors --bandwidth` (the SY_MXQ_PREFETCH_*
// distances in Sources/CKernels/mxfp4.c were chosen with it).
//
// Build from the repository root as SwiftPM builds the kernels (the Swift toolchain's clang, -O2):
//   clang -O2 -fPIC -I Sources/CKernels/include -o /tmp/mxfp4_stream Benchmarks/kernels/mxfp4_stream.c
//      Sources/CKernels/kernels.c Sources/CKernels/mxfp4.c Sources/CKernels/fp8.c -lpthread -lm   (one line)
//   /tmp/mxfp4_stream [M] [THREADS] [EXPERTS]   e.g. /tmp/mxfp4_stream 1 2; SWITCHYARD_KERNEL=avx2 picks the path
#include "sy_kernels.h"
#include "sy_mxfp4.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int m = argc > 1 ? atoi(argv[1]) : 1, threads = argc > 2 ? atoi(argv[2]) : 2;
    long experts_arg = argc > 3 ? atol(argv[3]) : 96;
    if (m < 1 || m > 32 || threads < 1 || experts_arg < 2 || experts_arg > 4096) {
        fprintf(stderr, "usage: %s [M (1-32)] [THREADS] [EXPERTS (2-4096)]\n", argv[0]);
        return 2;
    }
    sy_set_thread_count(threads);
    const size_t k = 2880, n = 5760, experts = (size_t)experts_arg, row_blocks = k / 32 * 16, row_scales = k / 32;
    uint8_t *blocks = malloc(experts * n * row_blocks), *scales = malloc(experts * n * row_scales);
    float *x = malloc(2 * (size_t)m * k * sizeof(float)), *y = malloc(2 * (size_t)m * n * sizeof(float));
    if (blocks == NULL || scales == NULL || x == NULL || y == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < experts * n * row_blocks; i++) blocks[i] = (uint8_t)((i * 2654435761u) >> 13);
    for (size_t i = 0; i < experts * n * row_scales; i++) scales[i] = (uint8_t)(120 + i % 10);
    for (size_t i = 0; i < 2 * (size_t)m * k; i++) x[i] = 0.001f * (float)(i % 13);
    for (int pass = 0; pass < 2; pass++) {  // the first pass warms up (page faults, thread start)
        double started = now(), bytes = 0;
        for (int round = 0; round < 3; round++)
            for (size_t e = 0; e + 2 <= experts; e += 2) {
                sy_grouped_mxfp4_product parts[2];
                for (size_t q = 0; q < 2; q++) {
                    parts[q] = (sy_grouped_mxfp4_product){q * (size_t)m, (size_t)m, blocks + (e + q) * n * row_blocks,
                                                          scales + (e + q) * n * row_scales, n, 1, y + q * (size_t)m * n, n};
                    bytes += (double)(n * (row_blocks + row_scales));
                }
                if (sy_matmul_nt_mxfp4_q8_grouped_isa(sy_active_isa(), x, 2 * (size_t)m, k, k, parts, 2) != 0) {
                    fprintf(stderr, "the product failed\n");
                    return 1;
                }
            }
        if (pass == 1)
            printf("MXFP4, threads %d, m = %d: weights read at %.1f GB/s\n", threads, m, bytes / (now() - started) / 1e9);
    }
    free(blocks);
    free(scales);
    free(x);
    free(y);
    return 0;
}
