// The `amx` path on weights packed for it (`sy_amx_pack`, `sy_matmul_amx_packed_grouped`) beside the
// `amx` path on weights as stored and the default `avx512bf16` path: GB/s of weights read at each m.
//
// The `amx` path (Sources/CKernels/kernels.c, `fast_amx`) loads 16 weight rows × 32 bf16 as a tile's
// A operand: 16 rows ws apart, 64 bytes of each, so a tile load walks 16 streams at once. Here the
// weights are packed once into `tdpbf16ps`'s B layout, one contiguous KiB per tile: for 16 weight
// rows (a group) and a block of 32 indices, 16 lines of 64 bytes, line j holding indices 2j and 2j + 1
// of each of the 16 rows. x becomes the A operand (its rows as they are). Each output then sees the same
// operations as in `fast_amx` (products commute), so the bits are the `amx` path's, which this program
// checks against `sy_matmul_nt_bf16_fast_isa(SY_ISA_AMX, ...)` at every m it times (BFloat16Tests too).
//
// At every m the packed product runs on tiles. (A copy of the arithmetic on vector registers at m = 1, the
// 16 rows of a group in the lanes, bitwise equal too, read 5-10% more slowly; Benchmarks/README.md.)
//
// Build from the repository root (one line):
//   clang -O2 -fPIC -I Sources/CKernels/include -o /tmp/amx_packed Benchmarks/kernels/amx_packed.c
//      Sources/CKernels/kernels.c -lpthread -lm
//   /tmp/amx_packed THREADS N K REPS [SLICE]   e.g. /tmp/amx_packed 2 142000 2816 2 (800 MB, from memory);
//   with SLICE, each pass is one product per SLICE weight rows (an expert's matrix a call, as a decode
//   step makes them: /tmp/amx_packed 2 142000 2816 2 1024 streams 5.8 MB matrices of 1,024 × 2,816 from memory)
// Prints, per m, GB/s of weights read by the `amx` path as it is, the packed products and the default
// (`avx512bf16`) path, and the count of outputs whose bits differ from the `amx` path's (must be 0).
// Needs a CPU with AMX (Sapphire Rapids and later).
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "sy_kernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s THREADS N K REPS [SLICE]\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]), reps = atoi(argv[4]);
    size_t n = (size_t)atol(argv[2]), k = (size_t)atol(argv[3]);
    size_t slice = argc == 6 ? (size_t)atol(argv[5]) : n;
    if (threads < 1 || n < 1 || k < 1 || reps < 1 || slice < 1) {
        fprintf(stderr, "THREADS, N, K, REPS and SLICE must be positive\n");
        return 2;
    }
    if (slice > n) slice = n;
    if (!sy_isa_supported(SY_ISA_AMX)) {
        fprintf(stderr, "this CPU has no AMX (or Linux did not grant the tile state)\n");
        return 1;
    }
    sy_set_thread_count(threads);
    enum { MAX_M = 32 };
    size_t bytes = n * k * sizeof(uint16_t), slices = (n + slice - 1) / slice;
    size_t per_slice = sy_amx_packed_count(slice, k), packed_bytes = slices * per_slice * sizeof(uint16_t);
    // The weights (and their packed copy) in transparent huge pages, as Switchyard holds them.
    uint16_t *w = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint16_t *packed = mmap(NULL, packed_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    float *x = malloc(MAX_M * k * sizeof(float)), *y = malloc(MAX_M * n * sizeof(float)),
          *reference = malloc(MAX_M * n * sizeof(float));
    if (w == MAP_FAILED || packed == MAP_FAILED || !x || !y || !reference) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    madvise(w, bytes, MADV_HUGEPAGE);
    madvise(packed, packed_bytes, MADV_HUGEPAGE);
    // Random bf16 weights and x of both signs and varied exponents, so that the order of additions shows.
    uint64_t state = 88172645463325252ull;
    for (size_t i = 0; i < n * k; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        w[i] = (uint16_t)(((state >> 16) & 0x8000) | (0x3a00 + (state & 0x7ff)));
    }
    for (size_t i = 0; i < MAX_M * k; i++) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        x[i] = (float)(int)(state % 2001 - 1000) * 0.00137f;
    }
    for (size_t s = 0; s < slices; s++) {
        size_t first = s * slice, rows = n - first < slice ? n - first : slice;
        sy_amx_pack(w + first * k, rows, k, k, packed + s * per_slice);
    }
    printf("%zu weight rows of k = %zu (%.1f MB) in products of %zu rows, %d thread(s), %d passes a size; "
           "GB/s of weights read\n", n, k, (double)bytes / 1e6, slice, threads, reps);
    printf("   m   amx as stored   amx packed   avx512bf16   outputs differing from amx as stored\n");
    static const size_t ms[] = {1, 2, 4, 8, 16, 32};
    for (size_t t = 0; t < sizeof ms / sizeof ms[0]; t++) {
        size_t m = ms[t];
        double rates[3];
        for (int path = 0; path < 3; path++) {
            double start = 0;
            for (int r = 0; r <= reps; r++) {
                if (r == 1) start = now();
                for (size_t s = 0; s < slices; s++) {
                    size_t first = s * slice, rows = n - first < slice ? n - first : slice;
                    int status = 0;
                    if (path == 0)
                        status = sy_matmul_nt_bf16_fast_isa(SY_ISA_AMX, x, m, k, k, w + first * k, rows, k,
                                                            reference + first, n, 0);
                    else if (path == 2)
                        status = sy_matmul_nt_bf16_fast_isa(SY_ISA_AVX512BF16, x, m, k, k, w + first * k, rows, k,
                                                            y + first, n, 0);
                    else {
                        sy_grouped_product one = {0, m, packed + s * per_slice, rows, k, y + first, n};
                        status = sy_matmul_amx_packed_grouped(x, m, k, k, &one, 1, 0);
                    }
                    if (status != 0) {
                        fprintf(stderr, "a product failed\n");
                        return 1;
                    }
                }
            }
            rates[path] = (double)bytes * reps / (now() - start) / 1e9;
        }
        // The packed products once more (the timed default run overwrote y), to compare the bits.
        for (size_t s = 0; s < slices; s++) {
            size_t first = s * slice, rows = n - first < slice ? n - first : slice;
            sy_grouped_product one = {0, m, packed + s * per_slice, rows, k, y + first, n};
            sy_matmul_amx_packed_grouped(x, m, k, k, &one, 1, 0);
        }
        size_t differing = 0;
        for (size_t i = 0; i < m * n; i++) differing += memcmp(&y[i], &reference[i], sizeof(float)) != 0;
        printf("%4zu   %13.1f   %10.1f   %10.1f   %zu of %zu\n", m, rates[0], rates[1], rates[2], differing, m * n);
    }
    return 0;
}
