// How much of the memory read bandwidth a stream keeps while the core also computes: the question behind
// report.py's batch-32 ceiling, which assumes a step's weight reads at the floor's bandwidth overlapped
// with its arithmetic. Each thread walks its half of a 1 GiB buffer (transparent huge pages, as
// Switchyard holds weights) one 64-byte line at a time: it loads the line, adds it into a register and
// runs FMAS multiply-adds on registers (16 independent accumulators, so the FMAs are bound by their
// throughput, not their latency), with an optional software prefetch DIST bytes ahead (HINT 0 none,
// 1 into L1, 2 into L2, 3 into L3). Three timings, the best of 3 passes each, all on THREADS threads:
//   reads    the walk without the FMAs;
//   compute  the walk over the first 64 KiB again and again (in L1/L2), with the FMAs;
//   both     the walk over the whole buffer with the FMAs.
// and `both` against the better of the other two (1.0: reads and arithmetic fully overlapped).
//
// Build and run from the repository root (the Swift toolchain's clang, as SwiftPM builds the kernels):
//   clang -O2 -mavx512f -mfma -o /tmp/stream_overlap Benchmarks/kernels/stream_overlap.c -lpthread
//   /tmp/stream_overlap THREADS FMAS HINT DIST   e.g. /tmp/stream_overlap 2 32 2 4096
// FMAS is one of 0, 16, 32, 48, 64. AVX-512F only (x86).
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { BUFFER = 1 << 30, CACHED = 1 << 16 };
static char *buffer;
static int fmas, hint, distance;
static pthread_barrier_t barrier;

struct job {
    int id, threads, cached, compute;
    double seconds;
    float sink;
};

/// The walk: lines [lo, hi) of the thread's part (offsets taken modulo 64 KiB with `cached`), N FMAs a line.
#define WALK(N)                                                                                              \
    for (size_t o = lo; o < hi; o += 64) {                                                                   \
        const char *line = buffer + (job->cached ? (o & (CACHED - 1)) : o);                                  \
        if (hint == 1) _mm_prefetch(line + distance, _MM_HINT_T0);                                           \
        else if (hint == 2) _mm_prefetch(line + distance, _MM_HINT_T1);                                      \
        else if (hint == 3) _mm_prefetch(line + distance, _MM_HINT_T2);                                      \
        __m512 v = _mm512_load_ps((const float *)(const void *)line);                                        \
        sum = _mm512_add_ps(sum, v);                                                                         \
        _Pragma("clang loop unroll(full)") for (int f = 0; f < (N); f++)                                     \
            acc[f & 15] = _mm512_fmadd_ps(acc[f & 15], scale, v);                                           \
    }

__attribute__((target("avx512f,fma"))) static void *walk(void *argument) {
    struct job *job = argument;
    size_t part = BUFFER / (size_t)job->threads, lo = part * (size_t)job->id, hi = lo + part;
    __m512 sum = _mm512_setzero_ps(), scale = _mm512_set1_ps(0.999f), acc[16];
    for (int a = 0; a < 16; a++) acc[a] = _mm512_setzero_ps();
    pthread_barrier_wait(&barrier);
    double start = now();
    switch (job->compute ? fmas : 0) {
    case 16: WALK(16) break;
    case 32: WALK(32) break;
    case 48: WALK(48) break;
    case 64: WALK(64) break;
    default: WALK(0) break;
    }
    job->seconds = now() - start;
    for (int a = 0; a < 16; a++) sum = _mm512_add_ps(sum, acc[a]);
    job->sink = _mm512_reduce_add_ps(sum);
    return NULL;
}

/// The best of 3 passes on `threads` threads, in seconds (the slowest thread of each pass).
static double best_pass(int threads, int cached, int compute, float *sink) {
    double best = 1e30;
    for (int pass = 0; pass < 3; pass++) {
        pthread_t ids[8];
        struct job jobs[8];
        pthread_barrier_init(&barrier, NULL, (unsigned)threads);
        for (int t = 0; t < threads; t++) {
            jobs[t] = (struct job){t, threads, cached, compute, 0, 0};
            pthread_create(&ids[t], NULL, walk, &jobs[t]);
        }
        double slowest = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(ids[t], NULL);
            if (jobs[t].seconds > slowest) slowest = jobs[t].seconds;
            *sink += jobs[t].sink;
        }
        pthread_barrier_destroy(&barrier);
        if (slowest < best) best = slowest;
    }
    return best;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s THREADS FMAS HINT DIST   (FMAS 0, 16, 32, 48 or 64; HINT 0-3)\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]);
    fmas = atoi(argv[2]);
    hint = atoi(argv[3]);
    distance = atoi(argv[4]);
    if (threads < 1 || threads > 8 || !(fmas == 0 || fmas == 16 || fmas == 32 || fmas == 48 || fmas == 64) ||
        hint < 0 || hint > 3 || distance < 0 || distance > (1 << 20)) {
        fprintf(stderr, "THREADS 1-8, FMAS 0, 16, 32, 48 or 64, HINT 0-3, DIST 0 ... 1048576\n");
        return 2;
    }
    // The prefetch may run DIST bytes past the buffer: those bytes are mapped too.
    size_t mapped = (size_t)BUFFER + (size_t)(1 << 20);
    buffer = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buffer == MAP_FAILED) {
        fprintf(stderr, "mmap of %zu bytes failed\n", mapped);
        return 1;
    }
    madvise(buffer, mapped, MADV_HUGEPAGE);
    for (size_t i = 0; i < mapped; i += sizeof(float)) *(float *)(void *)(buffer + i) = 1e-3f;
    float sink = 0;
    double reads = best_pass(threads, 0, 0, &sink), compute = best_pass(threads, 1, 1, &sink);
    double both = best_pass(threads, 0, 1, &sink);
    double lines = (double)BUFFER / 64 / threads, gb = (double)BUFFER / 1e9;
    printf("threads %d, %d FMAs a line, prefetch hint %d at %d bytes: reads %.1f GB/s, compute alone %.1f GB/s "
           "(%.2f ns a line a thread), both %.1f GB/s; both ÷ the better alone %.2f (sink %g)\n",
           threads, fmas, hint, distance, gb / reads, gb / compute, compute / lines * 1e9, gb / both,
           (reads > compute ? reads : compute) / both, (double)sink);
    return 0;
}
