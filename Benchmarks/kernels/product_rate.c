// The fast bf16 product's arithmetic rate at m rows of x: one product of N weight rows of K values
// (`sy_matmul_nt_bf16_fast`, the kernel path SWITCHYARD_KERNEL picks), at m = 1, 2, 4, 8, 12, 16 and 32,
// REPS passes each after a warm-up one. N × K × 2 bytes past the last-level cache puts the weights in
// memory, as a decode step streams an expert's; a few MB keeps them in cache (the kernel's own rate).
// Prints GFLOP/s and the rate the weights were read at, to set beside `floors --peak` (the dot peak and
// the read bandwidth) run next to it. The k-chunks of the AVX-512 products at 5-16 rows (SY_DOT_KC,
// SY_AVX512_KC in Sources/CKernels/kernels.c) were chosen with it.
//
// Build from the repository root as SwiftPM builds the kernels (the Swift toolchain's clang, -O2):
//   clang -O2 -fPIC -I Sources/CKernels/include -o /tmp/product_rate Benchmarks/kernels/product_rate.c
//      Sources/CKernels/kernels.c -lpthread -lm   (one line)
//   /tmp/product_rate THREADS N K REPS   e.g. /tmp/product_rate 2 142000 2816 2 (800 MB of rows, from memory),
//   /tmp/product_rate 1 192 1024 3000 (384 KB, in L2); SWITCHYARD_KERNEL=avx512, avx2 or amx picks the path
#include "sy_kernels.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s THREADS N K REPS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]), reps = atoi(argv[4]);
    long n_arg = atol(argv[2]), k_arg = atol(argv[3]);
    if (threads < 1 || n_arg < 1 || k_arg < 1 || reps < 1) {
        fprintf(stderr, "THREADS, N, K and REPS must be positive\n");
        return 2;
    }
    size_t n = (size_t)n_arg, k = (size_t)k_arg;
    static const size_t ms[] = {1, 2, 4, 8, 12, 16, 32};
    enum { MAX_M = 32 };
    sy_set_thread_count(threads);
    // The weight rows in transparent huge pages, as Switchyard holds them (Sources/Tensors/WeightArena.swift).
    size_t weight_bytes = n * k * sizeof(uint16_t);
    uint16_t *w = mmap(NULL, weight_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) w = NULL;
    else madvise(w, weight_bytes, MADV_HUGEPAGE);
    float *x = malloc(MAX_M * k * sizeof(float)), *y = malloc(MAX_M * n * sizeof(float));
    if (w == NULL || x == NULL || y == NULL) {
        fprintf(stderr, "out of memory (%zu MB of weight rows)\n", n * k * sizeof(uint16_t) >> 20);
        return 1;
    }
    for (size_t i = 0; i < n * k; i++) w[i] = (uint16_t)(0x3c00 + i % 7);
    for (size_t i = 0; i < MAX_M * k; i++) x[i] = 0.001f * (float)(i % 13);
    printf("%zu weight rows of k = %zu (%.1f MB), %d thread(s), %d passes a size\n", n, k,
           (double)(n * k * sizeof(uint16_t)) / 1e6, threads, reps);
    for (size_t t = 0; t < sizeof ms / sizeof ms[0]; t++) {
        size_t m = ms[t];
        if (sy_matmul_nt_bf16_fast(x, m, k, k, w, n, k, y, n, 0) != 0) {
            fprintf(stderr, "the product failed\n");
            return 1;
        }
        double start = now();
        for (int r = 0; r < reps; r++) sy_matmul_nt_bf16_fast(x, m, k, k, w, n, k, y, n, 0);
        double seconds = now() - start;
        printf("m = %2zu: %6.1f GFLOP/s, weights read at %5.1f GB/s\n", m, 2.0 * (double)(m * n * k) * reps / seconds / 1e9,
               (double)(n * k * sizeof(uint16_t)) * reps / seconds / 1e9);
    }
    munmap(w, weight_bytes);
    free(x);
    free(y);
    return 0;
}
