// floors: the machine's floors that Switchyard's figures are divided by (Benchmarks/run.sh compiles
// and runs this). Prints one JSON object on stdout; a human summary on stderr.
//
//   membw    memory read bandwidth, GB/s, 1 and 2 threads: each thread sums its half of a 512 MiB
//            buffer of floats (AVX-512 via -O2 -march=native, 8 independent accumulators);
//            the best of 7 passes (a floor is what the machine can reach, and a shared host only
//            ever slows a pass down); the sums are printed so the compiler cannot drop the reads.
//            The buffer is anonymous memory in transparent huge pages (madvise MADV_HUGEPAGE), as
//            Switchyard holds the weights it streams (Sources/Tensors/WeightArena.swift): in 4 KiB
//            pages the same reads were up to a quarter slower on the benchmark host.
//   sgemm    OpenBLAS cblas_sgemm GFLOP/s at the expert shapes y[m,n] = x[m,k] · w[n,k]ᵀ,
//            k = 1024, n = 2816, m = 1, 8, 128, with 1 and 2 OpenBLAS threads; median of 7 batches
//            of ≥ 50 ms each.
//   dot      the arithmetic peak of the dot-product instruction the bf16 fast path uses, GFLOP/s, 1
//            and 2 threads: `vdpbf16ps` (16 lanes × 2 products × 2 flops) where the compiler targets
//            avx512bf16, else f32 FMA (AVX-512 or AVX2); 12 independent accumulators in registers,
//            no memory operands; the best of 7 passes of 60 M instructions per thread. With
//            SWITCHYARD_KERNEL=amx, AMX `tdpbf16ps` on 4 accumulator tiles (1/64 of the iterations).
//   zmq      ZeroMQ DEALER/ROUTER round trip over tcp://127.0.0.1, two-frame messages, plain and over CURVE
//            (a 16-byte header frame + a payload frame of 8 KiB, 64 KiB, 1 MiB); the ROUTER echoes in
//            a forked process; p50 and p99 in µs.
//
// `floors --bandwidth` measures and prints the memory read bandwidth alone (about a second): run.sh
// takes it in every round beside the decodes, since a shared host's bandwidth can change from one
// minute to the next. `floors --peak` prints the bandwidth and the dot peak (a second more): run.sh
// takes it before each batch of the serve section (serve_decode.py --floors): the batch-32 ceiling
// takes the best peak of them, and each pair its own bandwidths (a pass of the peak is about 20 ms, and one run here read 241 GFLOP/s with 2 threads, the same as 1 thread,
// where the next three gave 460-468: for those 0.15 s the second CPU was elsewhere).
//
// Build: cc -O2 -march=native -o floors floors.c -lopenblas -lzmq -lpthread
#define _GNU_SOURCE
#include <cblas.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "read_pass.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int count) {
    qsort(values, (size_t)count, sizeof(double), compare_doubles);
    return count % 2 ? values[count / 2] : 0.5 * (values[count / 2 - 1] + values[count / 2]);
}

static double percentile(double *values, int count, double p) {
    qsort(values, (size_t)count, sizeof(double), compare_doubles);
    int index = (int)(p * (count - 1) + 0.5);
    return values[index];
}

// ---------------------------------------------------------------------------------------------
// memory read bandwidth

#define MEMBW_BYTES ((size_t)512 << 20)

static double membw(const float *data, int threads, float *sink) {
    double best = 0;
    for (int pass = 0; pass < 8; pass++) {  // pass 0 is a warm-up
        double gbs = read_pass(data, MEMBW_BYTES, threads, sink);
        if (pass > 0 && gbs > best) best = gbs;
    }
    return best;
}

// ---------------------------------------------------------------------------------------------
// dot-product arithmetic peak

#include <immintrin.h>

#define DOT_ITERATIONS 5000000L  /* × 12 instructions per thread and pass */

#if defined(__AVX512BF16__)
#define DOT_KIND "vdpbf16ps"
#define DOT_FLOPS 64.0
typedef __m512 dot_acc;
#define DOT_ZERO() _mm512_setzero_ps()
#define DOT_STEP(acc) acc = _mm512_dpbf16_ps(acc, a, b)
#define DOT_SUM(acc) _mm512_reduce_add_ps(acc)
#define DOT_OPERANDS                                                                          \
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3c00);
#elif defined(__AVX512F__)
#define DOT_KIND "f32 FMA (AVX-512)"
#define DOT_FLOPS 32.0
typedef __m512 dot_acc;
#define DOT_ZERO() _mm512_setzero_ps()
#define DOT_STEP(acc) acc = _mm512_fmadd_ps(a, b, acc)
#define DOT_SUM(acc) _mm512_reduce_add_ps(acc)
#define DOT_OPERANDS __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(1e-7f);
#else
#define DOT_KIND "f32 FMA (AVX2)"
#define DOT_FLOPS 16.0
typedef __m256 dot_acc;
#define DOT_ZERO() _mm256_setzero_ps()
#define DOT_STEP(acc) acc = _mm256_fmadd_ps(a, b, acc)
#define DOT_SUM(acc) (((float *)&acc)[0])
#define DOT_OPERANDS __m256 a = _mm256_set1_ps(1.0f), b = _mm256_set1_ps(1e-7f);
#endif

struct dot_job {
    pthread_barrier_t *start;
    double seconds;
    float sum;
};

static void *dot_thread(void *argument) {
    struct dot_job *job = argument;
    DOT_OPERANDS
    dot_acc acc[12];
    for (int i = 0; i < 12; i++) acc[i] = DOT_ZERO();
    pthread_barrier_wait(job->start);
    double start = now();
    for (long n = 0; n < DOT_ITERATIONS; n++) {
        // Twelve independent chains: enough to cover the instruction's latency at full throughput.
        DOT_STEP(acc[0]); DOT_STEP(acc[1]); DOT_STEP(acc[2]); DOT_STEP(acc[3]);
        DOT_STEP(acc[4]); DOT_STEP(acc[5]); DOT_STEP(acc[6]); DOT_STEP(acc[7]);
        DOT_STEP(acc[8]); DOT_STEP(acc[9]); DOT_STEP(acc[10]); DOT_STEP(acc[11]);
    }
    job->seconds = now() - start;
    float sum = 0;
    for (int i = 0; i < 12; i++) sum += DOT_SUM(acc[i]);
    job->sum = sum;
    return NULL;
}

/// The f32 FMA peak on ymm registers, for SWITCHYARD_KERNEL=avx2 or avx2vnni (Benchmarks/run.sh's AVX2 runs,
/// which measure an AVX2 host's arithmetic on this one): the binary stays compiled for this CPU, so that
/// its read passes read memory as fast as this CPU can (a pass compiled for AVX2 alone read 16 GB/s a
/// thread on Zen 4 against 27-28 compiled for it), and only the peak is the AVX2 one.
__attribute__((target("avx2,fma"))) static void *dot_thread_avx2(void *argument) {
    struct dot_job *job = argument;
    __m256 a = _mm256_set1_ps(1.0f), b = _mm256_set1_ps(1e-7f), acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_setzero_ps();
    pthread_barrier_wait(job->start);
    double start = now();
    for (long n = 0; n < DOT_ITERATIONS; n++)
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(a, b, acc[i]);
    job->seconds = now() - start;
    float sum = 0;
    for (int i = 0; i < 12; i++) sum += ((float *)&acc[i])[0];
    job->sum = sum;
    return NULL;
}

#if defined(__AVX512BF16__)
/// The f32 FMA peak on zmm registers, beside `vdpbf16ps`'s: the fast bf16 arithmetic has the same bits on
/// the AVX-512F kernels (f32 FMAs on weights widened to f32), so the better of the two is this CPU's
/// arithmetic peak for it. On the Intel Xeon (Emerald Rapids) of 2026-12-06 one thread ran 120-122
/// GFLOP/s of `vdpbf16ps` and 244-255 of FMAs (6, 12 or 24 accumulators alike); on Zen 4, which runs a
/// zmm FMA as two halves, `vdpbf16ps` does twice the products an FMA does.
__attribute__((target("avx512f,fma"))) static void *dot_thread_fma512(void *argument) {
    struct dot_job *job = argument;
    __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(1e-7f), acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_setzero_ps();
    pthread_barrier_wait(job->start);
    double start = now();
    for (long n = 0; n < DOT_ITERATIONS; n++)
        for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
    job->seconds = now() - start;
    float sum = 0;
    for (int i = 0; i < 12; i++) sum += _mm512_reduce_add_ps(acc[i]);
    job->sum = sum;
    return NULL;
}
#endif

#if defined(__AMX_BF16__) && defined(__AMX_TILE__)
#include <sys/syscall.h>
/// The `tdpbf16ps` peak, for SWITCHYARD_KERNEL=amx (Switchyard's fast products on AMX tiles): four
/// accumulator tiles against two weight and two x tiles, all 16 × 64 bytes, 12 instructions a step of
/// 1/64 of the iterations (each 16 × 16 × 32 multiply-adds), so `flops` is 16 × 16 × 32 × 2 / 64 = 256.
static void *dot_thread_amx(void *argument) {
    struct dot_job *job = argument;
    struct {
        uint8_t palette, start_row, reserved[14];
        uint16_t bytes_per_row[16];
        uint8_t rows[16];
    } config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = 16;
        config.bytes_per_row[t] = 64;
    }
    static uint16_t ones[16 * 32] __attribute__((aligned(64)));
    for (int i = 0; i < 16 * 32; i++) ones[i] = 0x3f80;  // bf16 1.0
    float out[16 * 16] __attribute__((aligned(64)));
    _tile_loadconfig(&config);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, ones, 64);
    _tile_loadd(5, ones, 64);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    pthread_barrier_wait(job->start);
    double start = now();
    for (long n = 0; n < DOT_ITERATIONS / 64; n++)
        for (int r = 0; r < 3; r++) {
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    job->seconds = now() - start;
    _tile_stored(0, out, 64);
    _tile_release();
    job->sum = out[0];
    return NULL;
}

/// Whether Linux grants this process the AMX tile state (asked once; the permission is process-wide).
static int amx_permitted(void) {
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
}
#endif

/// The peak measured: this CPU's (DOT_KIND; with AVX-512 bf16 also the f32 FMA one, the better of the two
/// kept), or with SWITCHYARD_KERNEL=avx2 / avx2vnni the AVX2 one, or with SWITCHYARD_KERNEL=amx the AMX one.
static const char *dot_kind = DOT_KIND;
static double dot_flops = DOT_FLOPS;
static void *(*dot_body)(void *) = dot_thread;

static void choose_dot(void) {
    const char *kernel = getenv("SWITCHYARD_KERNEL");
    if (kernel != NULL && (strcmp(kernel, "avx2") == 0 || strcmp(kernel, "avx2vnni") == 0)) {
        dot_kind = "f32 FMA (AVX2, SWITCHYARD_KERNEL)";
        dot_flops = 16.0;
        dot_body = dot_thread_avx2;
    }
#if defined(__AMX_BF16__) && defined(__AMX_TILE__)
    if (kernel != NULL && strcmp(kernel, "amx") == 0 && amx_permitted()) {
        dot_kind = "AMX tdpbf16ps (SWITCHYARD_KERNEL)";
        dot_flops = 256.0;
        dot_body = dot_thread_amx;
    }
#endif
}

static double peak_of(void *(*body)(void *), double flops, int threads, float *sink) {
    double best = 0;
    for (int pass = 0; pass < 8; pass++) {  // pass 0 is a warm-up
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, (unsigned)threads);
        pthread_t ids[2];
        struct dot_job jobs[2];
        for (int t = 0; t < threads; t++) {
            jobs[t] = (struct dot_job){.start = &barrier};
            pthread_create(&ids[t], NULL, body, &jobs[t]);
        }
        double slowest = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(ids[t], NULL);
            if (jobs[t].seconds > slowest) slowest = jobs[t].seconds;
            *sink += jobs[t].sum;
        }
        pthread_barrier_destroy(&barrier);
        double rate = (double)threads * DOT_ITERATIONS * 12.0 * flops / slowest / 1e9;
        if (pass > 0 && rate > best) best = rate;
    }
    return best;
}

/// With AVX-512 bf16, the instruction not kept as the dot peak and its peak (1, 2 threads); else NULL.
static const char *other_kind = NULL;
static double other_peaks[2];

/// The JSON fields of ``other_kind`` (an empty string without it).
static void print_other_peak(void) {
    if (other_kind != NULL)
        printf("\"dot_other_kind\": \"%s\", \"dot_other_gflops_1t\": %.2f, \"dot_other_gflops_2t\": %.2f, ",
               other_kind, other_peaks[0], other_peaks[1]);
}

/// The dot peak with 1 and 2 threads (`peaks`); with AVX-512 bf16 the better of `vdpbf16ps` and the f32
/// FMA (by the 2-thread figure; `dot_kind` then names it), both printed to stderr.
static void dot_peaks(double peaks[2], float *sink) {
    peaks[0] = peak_of(dot_body, dot_flops, 1, sink);
    peaks[1] = peak_of(dot_body, dot_flops, 2, sink);
#if defined(__AVX512BF16__)
    if (dot_body == dot_thread) {  // not the AVX2 or AMX peak SWITCHYARD_KERNEL asked for
        double fma1 = peak_of(dot_thread_fma512, 32.0, 1, sink), fma2 = peak_of(dot_thread_fma512, 32.0, 2, sink);
        fprintf(stderr, "%s peak: %.1f GFLOP/s (1 thread), %.1f GFLOP/s (2 threads); f32 FMA (AVX-512): %.1f, %.1f\n",
                dot_kind, peaks[0], peaks[1], fma1, fma2);
        // The other instruction's peak stays in the JSON (`dot_other_*`), for the ratios against it.
        if (fma2 > peaks[1]) {
            other_kind = dot_kind;
            other_peaks[0] = peaks[0];
            other_peaks[1] = peaks[1];
            dot_kind = "f32 FMA (AVX-512; above vdpbf16ps)";
            peaks[0] = fma1;
            peaks[1] = fma2;
        } else {
            other_kind = "f32 FMA (AVX-512)";
            other_peaks[0] = fma1;
            other_peaks[1] = fma2;
        }
    }
#endif
}

// ---------------------------------------------------------------------------------------------
// OpenBLAS sgemm

static void fill(float *values, size_t count, unsigned seed) {
    unsigned state = seed;
    for (size_t i = 0; i < count; i++) {
        state = state * 1664525u + 1013904223u;
        values[i] = (float)(state >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    }
}

static double sgemm_gflops(int m, int k, int n, int threads, float *sink) {
    openblas_set_num_threads(threads);
    float *x = malloc(sizeof(float) * (size_t)m * (size_t)k);
    float *w = malloc(sizeof(float) * (size_t)n * (size_t)k);
    float *y = malloc(sizeof(float) * (size_t)m * (size_t)n);
    fill(x, (size_t)m * (size_t)k, 2);
    fill(w, (size_t)n * (size_t)k, 1);
    // warm-up
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
    double samples[7];
    for (int batch = 0; batch < 7; batch++) {
        int calls = 0;
        double start = now(), elapsed;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
            *sink += y[(size_t)calls % ((size_t)m * (size_t)n)];
            calls++;
            elapsed = now() - start;
        } while (elapsed < 0.05);
        samples[batch] = 2.0 * m * (double)k * n * calls / elapsed / 1e9;
    }
    free(x);
    free(w);
    free(y);
    return median(samples, 7);
}

// ---------------------------------------------------------------------------------------------
// ZeroMQ DEALER/ROUTER round trip

static void check(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "floors: %s: %s\n", what, zmq_strerror(zmq_errno()));
        exit(1);
    }
}

// CURVE keys of the echo side (server) and the timing side (client), made fresh for each run.
static char server_public[41], server_secret[41], client_public[41], client_secret[41];

// The echo side: ROUTER receives [identity, header, payload] and sends the same frames back; with
// `curve`, as a CURVE server (no ZAP handler: every client key is accepted, which costs nothing per message).
static void router_echo(const char *endpoint, int curve) {
    void *context = zmq_ctx_new();
    void *router = zmq_socket(context, ZMQ_ROUTER);
    if (curve) {
        int on = 1;
        check(zmq_setsockopt(router, ZMQ_CURVE_SERVER, &on, sizeof on) == 0, "curve server");
        check(zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, server_secret, 40) == 0, "curve secret key");
    }
    check(zmq_bind(router, endpoint) == 0, "bind");
    for (;;) {
        zmq_msg_t parts[3];
        int count = 0, more = 1;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            check(zmq_msg_recv(&part, router, 0) >= 0, "router recv");
            more = zmq_msg_more(&part);
            if (count < 3) parts[count++] = part; else zmq_msg_close(&part);
        }
        if (count == 3 && zmq_msg_size(&parts[2]) == 4 && memcmp(zmq_msg_data(&parts[2]), "quit", 4) == 0) break;
        for (int i = 0; i < count; i++)
            check(zmq_msg_send(&parts[i], router, i + 1 < count ? ZMQ_SNDMORE : 0) >= 0, "router send");
    }
    zmq_close(router);
    zmq_ctx_term(context);
    _exit(0);
}

static void zmq_round_trips(int port, int curve, const size_t *sizes, int size_count, const int *iterations,
                            double *p50, double *p99) {
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    pid_t child = fork();
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        router_echo(endpoint, curve);
    }
    void *context = zmq_ctx_new();
    void *dealer = zmq_socket(context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    if (curve) {
        check(zmq_setsockopt(dealer, ZMQ_CURVE_SERVERKEY, server_public, 40) == 0, "curve server key");
        check(zmq_setsockopt(dealer, ZMQ_CURVE_PUBLICKEY, client_public, 40) == 0, "curve public key");
        check(zmq_setsockopt(dealer, ZMQ_CURVE_SECRETKEY, client_secret, 40) == 0, "curve secret key");
    }
    check(zmq_connect(dealer, endpoint) == 0, "connect");
    char header[16] = "switchyard-hdr";
    for (int s = 0; s < size_count; s++) {
        size_t size = sizes[s];
        char *payload = malloc(size), *back = malloc(size);
        memset(payload, 0x5a, size);
        int total = iterations[s] + 20;  // 20 warm-up round trips
        double *samples = malloc(sizeof(double) * (size_t)total);
        for (int i = 0; i < total; i++) {
            payload[i % size] = (char)i;
            double start = now();
            check(zmq_send(dealer, header, sizeof header, ZMQ_SNDMORE) >= 0, "dealer send");
            check(zmq_send(dealer, payload, size, 0) >= 0, "dealer send");
            char header_back[16];
            check(zmq_recv(dealer, header_back, sizeof header_back, 0) >= 0, "dealer recv");
            int received = zmq_recv(dealer, back, size, 0);
            check(received >= 0, "dealer recv");
            samples[i] = (now() - start) * 1e6;
            if ((size_t)received != size || back[i % size] != (char)i) {
                fprintf(stderr, "floors: echo mismatch\n");
                exit(1);
            }
        }
        p50[s] = percentile(samples + 20, iterations[s], 0.5);
        p99[s] = percentile(samples + 20, iterations[s], 0.99);
        free(samples);
        free(payload);
        free(back);
    }
    zmq_send(dealer, header, sizeof header, ZMQ_SNDMORE);
    zmq_send(dealer, "quit", 4, 0);
    int status;
    waitpid(child, &status, 0);
    zmq_close(dealer);
    zmq_ctx_term(context);
}

int main(int argc, char **argv) {
    int bandwidth_only = argc > 1 && strcmp(argv[1], "--bandwidth") == 0;
    int peak_only = argc > 1 && strcmp(argv[1], "--peak") == 0;
    int port = 47311;
    if (argc > 1 && !bandwidth_only && !peak_only) {  // a port for the round trip, or a usage error
        char *end;
        long value = strtol(argv[1], &end, 10);
        if (argc > 2 || *argv[1] == '\0' || *end != '\0' || value < 1 || value > 65535) {
            fprintf(stderr, "usage: %s [--bandwidth | --peak | PORT]\n"
                            "  all the floors as JSON on stdout (the ZeroMQ round trip on tcp://127.0.0.1:PORT, "
                            "default 47311);\n  --bandwidth: the read bandwidth alone; --peak: it and the dot "
                            "peak\n", argv[0]);
            return 2;
        }
        port = (int)value;
    }
    float sink = 0;
    choose_dot();

    void *mapping;
    size_t mapped;
    float *data = read_pass_buffer(MEMBW_BYTES, &mapping, &mapped);
    if (data == NULL) {
        perror("floors: mmap");
        return 1;
    }
    double bw1 = membw(data, 1, &sink), bw2 = membw(data, 2, &sink);
    munmap(mapping, mapped);
    fprintf(stderr, "memory read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (2 threads)\n", bw1, bw2);
    if (bandwidth_only) {
        printf("{\"membw_gbs_1t\": %.2f, \"membw_gbs_2t\": %.2f, \"sink\": %g}\n", bw1, bw2, (double)sink);
        return 0;
    }

    double peaks[2];
    dot_peaks(peaks, &sink);
    double dot1 = peaks[0], dot2 = peaks[1];
    fprintf(stderr, "%s peak: %.1f GFLOP/s (1 thread), %.1f GFLOP/s (2 threads)\n", dot_kind, dot1, dot2);
    if (peak_only) {
        printf("{\"membw_gbs_1t\": %.2f, \"membw_gbs_2t\": %.2f, \"dot_kind\": \"%s\", \"dot_gflops_1t\": %.2f, "
               "\"dot_gflops_2t\": %.2f, ",
               bw1, bw2, dot_kind, dot1, dot2);
        print_other_peak();
        printf("\"sink\": %g}\n", (double)sink);
        return 0;
    }

    int rows[3] = {1, 8, 128};
    double gemm[3][2];
    for (int r = 0; r < 3; r++)
        for (int t = 0; t < 2; t++) {
            gemm[r][t] = sgemm_gflops(rows[r], 1024, 2816, t + 1, &sink);
            fprintf(stderr, "sgemm m=%d k=1024 n=2816, %d thread(s): %.1f GFLOP/s\n", rows[r], t + 1, gemm[r][t]);
        }

    size_t sizes[3] = {8 << 10, 64 << 10, 1 << 20};
    int iterations[3] = {2000, 1000, 300};
    double p50[3], p99[3];
    zmq_round_trips(port, 0, sizes, 3, iterations, p50, p99);
    for (int s = 0; s < 3; s++)
        fprintf(stderr, "zmq DEALER/ROUTER tcp round trip, 2 frames, %zu B: p50 %.0f µs, p99 %.0f µs\n", sizes[s],
                p50[s], p99[s]);
    // The same over CURVE (what Switchyard's worker links use by default): the floor of the encrypted link.
    double curve_p50[3] = {0}, curve_p99[3] = {0};
    int have_curve = zmq_has("curve") && zmq_curve_keypair(server_public, server_secret) == 0
        && zmq_curve_keypair(client_public, client_secret) == 0;
    if (have_curve) {
        zmq_round_trips(port + 1, 1, sizes, 3, iterations, curve_p50, curve_p99);
        for (int s = 0; s < 3; s++)
            fprintf(stderr, "zmq DEALER/ROUTER tcp round trip over CURVE, 2 frames, %zu B: p50 %.0f µs, p99 %.0f µs\n",
                    sizes[s], curve_p50[s], curve_p99[s]);
    } else {
        fprintf(stderr, "zmq: this libzmq has no CURVE\n");
    }

    printf("{\"membw_gbs_1t\": %.2f, \"membw_gbs_2t\": %.2f, \"dot_kind\": \"%s\", \"dot_gflops_1t\": %.2f, "
           "\"dot_gflops_2t\": %.2f, ", bw1, bw2, dot_kind, dot1, dot2);
    print_other_peak();
    printf("\"sgemm\": [");
    for (int r = 0; r < 3; r++)
        printf("%s{\"m\": %d, \"k\": 1024, \"n\": 2816, \"gflops_1t\": %.2f, \"gflops_2t\": %.2f}", r ? ", " : "",
               rows[r], gemm[r][0], gemm[r][1]);
    printf("], \"zmq\": [");
    for (int s = 0; s < 3; s++)
        printf("%s{\"bytes\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f}", s ? ", " : "", sizes[s], p50[s], p99[s]);
    printf("], \"zmq_curve\": [");
    for (int s = 0; have_curve && s < 3; s++)
        printf("%s{\"bytes\": %zu, \"p50_us\": %.1f, \"p99_us\": %.1f}", s ? ", " : "", sizes[s], curve_p50[s],
               curve_p99[s]);
    printf("], \"sink\": %g}\n", (double)sink);
    return 0;
}
