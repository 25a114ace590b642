// One pass of the memory-read floor: `threads` threads (1 or 2) each sum their part of a buffer of
// floats, 8 independent accumulators of 16 lanes (one AVX-512 register each where compiled with
// -march=native on such a CPU, else two AVX2 ones); GB/s over the slowest thread. Shared by
// floors.c (`floors --bandwidth`: the best of 7 passes) and by switchyard-bench's decode-floor mode
// (passes between decodes), so that both divide by the same read. The buffer: anonymous memory in
// transparent huge pages, as Switchyard holds the weights it streams (Sources/Tensors/WeightArena.swift).
#ifndef SWITCHYARD_READ_PASS_H
#define SWITCHYARD_READ_PASS_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double read_pass_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct read_pass_job {
    const float *data;
    size_t count;
    pthread_barrier_t *start;
    double seconds;
    float sum;
};

/// 16 floats: one AVX-512 register, or two AVX2 ones (GCC and Clang vector extensions: Clang did
/// not vectorize the plain-array form of this loop, and read 4 GB/s where GCC read 35).
typedef float read_pass_lanes __attribute__((vector_size(64), aligned(4)));

/// The loop advances a pointer, which the empty `asm` keeps: Clang otherwise indexes each load off
/// the buffer's start, and with that and its 32-byte vectors (switchyard-bench's CReadPass, built by
/// SwiftPM's Clang) the passes read 15-25% below this loop built by GCC for `floors` on an Intel Xeon
/// with AVX-512 (best passes 21-23 GB/s against 27-32, alternating builds). Built with 64-byte vectors
/// (`-mprefer-vector-width=512` in Benchmarks/Package.swift) and this loop, Clang's passes read as
/// GCC's do (27-29 GB/s, the same rounds).
__attribute__((noinline)) static float read_pass_sum(const float *restrict data, size_t count) {
    read_pass_lanes acc[8];
    for (int a = 0; a < 8; a++) acc[a] = (read_pass_lanes){0};
    size_t i = 0;
    const float *at = data;
    for (; i + 128 <= count; i += 128, at += 128) {
        __asm__("" : "+r"(at));
        for (int a = 0; a < 8; a++) acc[a] += *(const read_pass_lanes *)(at + 16 * a);
    }
    float total = 0;
    for (int a = 0; a < 8; a++)
        for (int l = 0; l < 16; l++) total += acc[a][l];
    for (; i < count; i++) total += data[i];
    return total;
}

static void *read_pass_thread(void *argument) {
    struct read_pass_job *job = argument;
    pthread_barrier_wait(job->start);
    double start = read_pass_clock();
    job->sum = read_pass_sum(job->data, job->count);
    job->seconds = read_pass_clock() - start;
    return NULL;
}

/// One pass over `bytes` of `data` on `threads` (1 or 2) threads: GB/s over the slowest thread; the
/// sums are added to `sink` so that the reads cannot be dropped.
static double read_pass(const float *data, size_t bytes, int threads, float *sink) {
    if (threads < 1) threads = 1;
    if (threads > 2) threads = 2;
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    pthread_t ids[2];
    struct read_pass_job jobs[2];
    size_t per = bytes / sizeof(float) / (size_t)threads;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct read_pass_job){.data = data + per * (size_t)t, .count = per, .start = &barrier};
        pthread_create(&ids[t], NULL, read_pass_thread, &jobs[t]);
    }
    double slowest = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(ids[t], NULL);
        if (jobs[t].seconds > slowest) slowest = jobs[t].seconds;
        *sink += jobs[t].sum;
    }
    pthread_barrier_destroy(&barrier);
    return (double)(per * (size_t)threads * sizeof(float)) / slowest / 1e9;
}

/// `bytes` of anonymous memory starting on a 2 MiB boundary, advised into transparent huge pages
/// and filled with values in [-1, 1); NULL when the mapping fails. `*mapping` and `*mapped` are
/// what munmap takes back.
static float *read_pass_buffer(size_t bytes, void **mapping, size_t *mapped) {
    size_t huge = (size_t)2 << 20;
    char *base = mmap(NULL, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    float *data = (float *)(((uintptr_t)base + huge - 1) & ~(uintptr_t)(huge - 1));
    madvise(data, bytes, MADV_HUGEPAGE);  // advice: without THP the pages stay 4 KiB
    unsigned state = 3;
    for (size_t i = 0; i < bytes / sizeof(float); i++) {
        state = state * 1664525u + 1013904223u;
        data[i] = (float)(state >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    }
    *mapping = base;
    *mapped = bytes + huge;
    return data;
}

#endif
