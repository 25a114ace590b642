// The batch-1 product's weight stream alone: one row of x (m = 1) against 512 MiB of bf16 weight rows
// (k = 1,024), each row summed with `vdpbf16ps` into one accumulator as the AVX-512 bf16 kernel does at
// m = 1, with four ways of prefetching the rows: none, 8 KiB ahead into L2 (`T1`), 2 KiB ahead into L1
// (`T0`), and both (Sources/CKernels/kernels.c, SY_PREFETCH_BYTES and SY_PREFETCH_NEAR_BYTES), beside
// the read pass of `floors` (Benchmarks/floors/read_pass.h) over the same buffer. The variants alternate
// within each round, so that the host's swings fall on all of them. Needs a CPU with AVX-512 bf16.
// Built with GCC, as run.sh builds `floors` (Clang's build of the read pass is slower: see read_pass.h).
//   cc -O3 -march=native -o /tmp/m1_stream Benchmarks/kernels/m1_stream.c -lpthread && /tmp/m1_stream 2
#include "../floors/read_pass.h"
#include <immintrin.h>
#include <stdio.h>

enum { K = 1024, ROUNDS = 6, VARIANTS = 4 };

#define SY_ROWS(NAME, PREFETCH)                                                                          \
    __attribute__((target("avx512f,avx512bw,avx512bf16"))) static float NAME(const uint16_t *w, size_t n, \
                                                                             const uint16_t *x, float *y) { \
        for (size_t j = 0; j < n; j++) {                                                                \
            const uint16_t *row = w + j * K;                                                            \
            __m512 acc = _mm512_setzero_ps();                                                           \
            for (size_t p = 0; p < K; p += 32) {                                                        \
                PREFETCH;                                                                               \
                acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(x + p),                        \
                                       (__m512bh)_mm512_loadu_si512(row + p));                          \
            }                                                                                           \
            y[j] = _mm512_reduce_add_ps(acc);                                                           \
        }                                                                                               \
        return y[0];                                                                                    \
    }
SY_ROWS(rows_none, (void)0)
SY_ROWS(rows_l2, _mm_prefetch((const char *)(row + p) + 8192, _MM_HINT_T1))
SY_ROWS(rows_l1, _mm_prefetch((const char *)(row + p) + 2048, _MM_HINT_T0))
SY_ROWS(rows_both, _mm_prefetch((const char *)(row + p) + 8192, _MM_HINT_T1);
        _mm_prefetch((const char *)(row + p) + 2048, _MM_HINT_T0))

typedef float (*rows_fn)(const uint16_t *, size_t, const uint16_t *, float *);

struct job {
    rows_fn f;
    const uint16_t *w, *x;
    size_t n;
    float *y;
    pthread_barrier_t *start;
    double seconds;
};

static void *run(void *argument) {
    struct job *job = argument;
    pthread_barrier_wait(job->start);
    double t = read_pass_clock();
    job->f(job->w, job->n, job->x, job->y);
    job->seconds = read_pass_clock() - t;
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 2) {
        fprintf(stderr, "usage: %s [THREADS: 1 or 2]\n", argv[0]);
        return 2;
    }
    if (!__builtin_cpu_supports("avx512bf16")) {
        fprintf(stderr, "this CPU has no AVX-512 bf16\n");
        return 2;
    }
    size_t bytes = (size_t)512 << 20, n = bytes / sizeof(uint16_t) / K;
    // The read pass's buffer (huge pages, as Switchyard holds its weights), read as bf16 rows: the
    // arithmetic's speed does not depend on the values.
    void *mapping;
    size_t mapped;
    float *buffer = read_pass_buffer(bytes, &mapping, &mapped), sink = 0;
    const uint16_t *w = (const uint16_t *)buffer;
    uint16_t *x = aligned_alloc(64, K * sizeof(uint16_t));
    float *y = malloc(n * sizeof(float));
    if (buffer == NULL || x == NULL || y == NULL) return 1;
    for (int i = 0; i < K; i++) x[i] = (uint16_t)(0x3c00 + i % 5);
    const char *names[VARIANTS] = {"no prefetch", "L2 8 KiB", "L1 2 KiB", "L2 8 KiB + L1 2 KiB"};
    rows_fn fns[VARIANTS] = {rows_none, rows_l2, rows_l1, rows_both};
    double rates[VARIANTS][ROUNDS], reads[ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        reads[round] = read_pass(buffer, bytes, threads, &sink);
        for (int v = 0; v < VARIANTS; v++) {
            pthread_barrier_t start;
            pthread_barrier_init(&start, NULL, (unsigned)threads);
            pthread_t ids[2];
            struct job jobs[2];
            size_t per = n / (size_t)threads;
            for (int t = 0; t < threads; t++) {
                jobs[t] = (struct job){fns[v], w + (size_t)t * per * K, x, per, y + (size_t)t * per, &start, 0};
                pthread_create(&ids[t], NULL, run, &jobs[t]);
            }
            double slowest = 0;
            for (int t = 0; t < threads; t++) {
                pthread_join(ids[t], NULL);
                if (jobs[t].seconds > slowest) slowest = jobs[t].seconds;
            }
            pthread_barrier_destroy(&start);
            rates[v][round] = (double)(per * (size_t)threads * K * sizeof(uint16_t)) / slowest / 1e9;
        }
    }
    printf("m = 1, k = %d, 512 MiB of bf16 rows, %d thread(s): GB/s by round\n", K, threads);
    printf("  %-22s", "read pass (floors)");
    for (int round = 0; round < ROUNDS; round++) printf(" %5.1f", reads[round]);
    printf("\n");
    for (int v = 0; v < VARIANTS; v++) {
        printf("  %-22s", names[v]);
        for (int round = 0; round < ROUNDS; round++) printf(" %5.1f", rates[v][round]);
        printf("\n");
    }
    return sink == 12345.0f;  // keeps the read pass's sums
}
