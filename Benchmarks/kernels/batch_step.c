// One decode step of the benchmark model's products, straight on the C kernels (no Swift, no
// attention): per layer the fused q/k/v product and the output projection at m = B, the experts'
// gate/up products and down products (each stage one job for all the layer's experts), then the LM
// head at m = B. Weights are bf16 in one 1.9 GB buffer, in transparent huge pages where the kernel
// allows them (as Switchyard's WeightArena holds weights; BS_SMALL_PAGES=1 leaves them in 4 KiB pages),
// so every step streams them from memory as a real step does.
//
//   B = 1: two experts per layer (top-2), each at m = 1 — the batch-1 decode step.
//   B > 1: all 8 experts, each at m = 2B/8 (an even routing) — a batched decode step.
//   B a multiple of 16 with ROUTING `skewed`: the 2B rows split 7:6:5:4:4:3:2:1 over the 8 experts (the
//   shares turning from layer to layer), as a served batch routes them; at B = 32, m = 14, 12, 10, 8, 8, 6,
//   4 and 2.
//
// KIND picks the experts' weights: `fast` (bf16, fast arithmetic; the default), `exact` (bf16, exact
// arithmetic) or `q8` (int8 in blocks of 32 with a scale each, as `--quantize q8` stores them: one
// product per matrix, as ExpertStore runs them). Attention and the LM head stay bf16 fast.
//
// Build and run from the repository root (the tuning figures in Sources/CKernels/kernels.c come from it),
// with the compiler and flags SwiftPM builds the kernels with in release (the Swift toolchain's clang, -O2,
// no -march; `swift build -c release -v` prints them):
//   clang -O2 -fPIC -fno-omit-frame-pointer -I Sources/CKernels/include -o /tmp/batch_step
//      Benchmarks/kernels/batch_step.c Sources/CKernels/kernels.c -lpthread -lm   (one line)
// Other compilers allocate registers differently: the AVX2 fast product's 4 × 3 tiles that split their own
// weights ran 10% faster than 3 × 3 built by gcc -O3 and 27% slower built by this clang (kernels.c says
// more), so a kernel change is measured with this build, and in the end with Benchmarks/run.sh on the
// release binary.
//   /tmp/batch_step THREADS [STEPS] [B] [KIND] [even|skewed]   e.g. /tmp/batch_step 2 8 32,
//   /tmp/batch_step 2 48 1 q8, /tmp/batch_step 2 8 32 fast skewed
#include "sy_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void product(const float *x, size_t m, size_t k, const uint16_t *w, size_t n, float *y) {
    sy_matmul_nt_bf16_fast(x, m, k, k, w, n, k, y, n, 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s THREADS [STEPS] [B] [fast|exact|q8] [even|skewed]\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]), steps = argc > 2 ? atoi(argv[2]) : 8;
    size_t batch = argc > 3 ? (size_t)atoi(argv[3]) : 32;
    const char *kind = argc > 4 ? argv[4] : "fast", *routing = argc > 5 ? argv[5] : "even";
    int exact = strcmp(kind, "exact") == 0, q8 = strcmp(kind, "q8") == 0, skewed = strcmp(routing, "skewed") == 0;
    if (threads < 1 || steps < 1 || batch < 1 || !(exact || q8 || strcmp(kind, "fast") == 0) ||
        !(skewed || strcmp(routing, "even") == 0) || (skewed && batch % 16 != 0)) {
        fprintf(stderr, "THREADS, STEPS and B must be positive, KIND fast, exact or q8, ROUTING even or skewed "
                        "(skewed: B a multiple of 16)\n");
        return 2;
    }
    sy_set_thread_count(threads);
    const size_t hidden = 1024, ffn = 2816, layers = 12, experts = 8, vocab = 32000, kv = 512;
    const size_t attention = hidden * hidden * 2 + hidden * kv * 2, per_layer = attention + experts * 3 * hidden * ffn;
    const size_t total = layers * per_layer + vocab * hidden;
    uint16_t *w = mmap(NULL, total * sizeof(uint16_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) w = NULL;
    else if (getenv("BS_SMALL_PAGES") == NULL) madvise(w, total * sizeof(uint16_t), MADV_HUGEPAGE);
    size_t active_experts = batch == 1 ? 2 : experts, rows = batch == 1 ? 1 : batch * 2 / experts;
    if (rows == 0) rows = 1;
    float *x = malloc(batch * ffn * 4 * sizeof(float)), *y = malloc((batch * vocab + batch * ffn * 4) * sizeof(float));
    // q8 experts: [layers, experts, 3 matrices] of int8 rows and their block scales.
    const size_t blocks_hidden = sy_q8_block_count(hidden), blocks_ffn = sy_q8_block_count(ffn);
    const size_t q8_expert = 2 * ffn * blocks_hidden * 32 + hidden * blocks_ffn * 32;
    const size_t q8_scales = 2 * ffn * blocks_hidden + hidden * blocks_ffn;
    int8_t *wq = q8 ? malloc(layers * experts * q8_expert) : NULL;
    float *wd = q8 ? malloc(layers * experts * q8_scales * sizeof(float)) : NULL;
    if (w == NULL || x == NULL || y == NULL || (q8 && (wq == NULL || wd == NULL))) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < total; i++) w[i] = (uint16_t)(0x3c00 + i % 7);
    for (size_t i = 0; i < batch * ffn * 4; i++) x[i] = 0.001f * (float)(i % 13);
    if (q8) {
        for (size_t i = 0; i < layers * experts * q8_expert; i++) wq[i] = (int8_t)((int)(i % 255) - 127);
        for (size_t i = 0; i < layers * experts * q8_scales; i++) wd[i] = 0.001f * (float)(1 + i % 5);
    }
    for (int pass = 0; pass < 2; pass++) {  // the first pass warms up (page faults, thread start)
        double started = now(), in_experts = 0, flop = 0, bytes = 0, expert_bytes = 0;
        for (int s = 0; s < steps; s++) {
            const uint16_t *p = w;
            for (size_t l = 0; l < layers; l++) {
                sy_grouped_product qkv[3] = {
                    {0, batch, p, hidden, hidden, y, hidden + 2 * kv},
                    {0, batch, p + hidden * hidden, kv, hidden, y + hidden, hidden + 2 * kv},
                    {0, batch, p + hidden * hidden + hidden * kv, kv, hidden, y + hidden + kv, hidden + 2 * kv}};
                sy_matmul_nt_bf16_grouped_isa(sy_active_isa(), 1, x, batch, hidden, hidden, qkv, 3, 0);
                product(x, batch, hidden, p + hidden * hidden + 2 * hidden * kv, hidden, y);
                flop += 2.0 * (double)(batch * attention);
                bytes += 2.0 * (double)attention;
                p += attention;
                double expert_start = now();
                // As ExpertStore does it: the gate and up products of every active expert as one job
                // (each expert on its own rows), then the down products as one job.
                sy_grouped_product gate_up[2 * 8], down[8];
                static const size_t shares[8] = {7, 6, 5, 4, 4, 3, 2, 1};  // of 32
                size_t at = 0;
                for (size_t e = 0; e < active_experts; e++) {
                    size_t m = skewed ? shares[(e + l) % 8] * 2 * batch / 32 : rows;
                    size_t which = batch == 1 ? (size_t)(s * 3 + (int)l + (int)e * 5) % experts : e;
                    float *g = y + at * 2 * ffn;
                    flop += 2.0 * (double)(m * 3 * hidden * ffn);
                    if (q8) {
                        const int8_t *q = wq + (l * experts + which) * q8_expert;
                        const float *d = wd + (l * experts + which) * q8_scales;
                        const float *xe = x + at * hidden;
                        sy_matmul_nt_q8(xe, m, hidden, hidden, q, d, ffn, g, ffn, 0);
                        sy_matmul_nt_q8(xe, m, hidden, hidden, q + ffn * blocks_hidden * 32, d + ffn * blocks_hidden,
                                        ffn, g + m * ffn, ffn, 0);
                        sy_matmul_nt_q8(x + at * ffn, m, ffn, ffn, q + 2 * ffn * blocks_hidden * 32,
                                        d + 2 * ffn * blocks_hidden, hidden, y + at * hidden, hidden, 0);
                        at += m;
                        expert_bytes += (double)q8_expert + 4.0 * (double)q8_scales;
                        continue;
                    }
                    const uint16_t *q = p + which * 3 * hidden * ffn;
                    gate_up[2 * e] = (sy_grouped_product){at, m, q, ffn, hidden, g, ffn};
                    gate_up[2 * e + 1] = (sy_grouped_product){at, m, q + hidden * ffn, ffn, hidden, g + m * ffn, ffn};
                    down[e] = (sy_grouped_product){at, m, q + 2 * hidden * ffn, hidden, ffn, y + at * hidden, hidden};
                    expert_bytes += 2.0 * (double)(3 * hidden * ffn);
                    at += m;
                }
                if (!q8) {
                    sy_matmul_nt_bf16_grouped_isa(sy_active_isa(), !exact, x, active_experts * rows, hidden, hidden,
                                                  gate_up, 2 * active_experts, 0);
                    sy_matmul_nt_bf16_grouped_isa(sy_active_isa(), !exact, x, active_experts * rows, ffn, ffn, down,
                                                  active_experts, 0);
                }
                in_experts += now() - expert_start;
                p += experts * 3 * hidden * ffn;
            }
            product(x, batch, hidden, p, vocab, y);
            flop += 2.0 * (double)(batch * vocab * hidden);
            bytes += 2.0 * (double)(vocab * hidden);
        }
        bytes += expert_bytes;
        double elapsed = now() - started;
        if (pass == 1)
            printf("%s, threads %d, B %zu (%zu experts a layer at m = %zu): %.1f ms a step (experts %.1f ms), "
                   "%.1f tokens/s, %.1f GFLOP/s, weights streamed at %.1f GB/s (experts' at %.1f GB/s)%s\n",
                   kind, threads, batch, active_experts, rows, elapsed / steps * 1e3, in_experts / steps * 1e3,
                   (double)(batch * (size_t)steps) / elapsed, flop / elapsed / 1e9, bytes / elapsed / 1e9,
                   expert_bytes / in_experts / 1e9, skewed ? "; routing skewed, m = 2B/8 on average" : "");
    }
    munmap(w, total * sizeof(uint16_t));
    free(x);
    free(y);
    free(wq);
    free(wd);
    return 0;
}
