// How far ahead the kernels prefetch a weight row they stream from memory, and the prefetch of one
// place in such a row into L2 and L1: shared by kernels.c, mxfp4.c and fp8.c, so that every product
// streams its weights the same way and a distance is tuned in one place. Internal to CKernels (not under
// include/): static inline.
#ifndef SY_PREFETCH_H
#define SY_PREFETCH_H

/// How far ahead (bytes) the weight streams of the bf16 dot kernel (and of the AVX2 kernels, where it
/// was not swept) are prefetched, into L2 (`T1`). Measured on Zen 4 with a batch-32 decode step
/// (Benchmarks/kernels/batch_step.c): 8 KiB into L2 took the experts from 128 to 82-86 ms a step
/// (memory reads then overlap the arithmetic instead of adding to it). The dot kernel at m = 1 reads
/// without it on AMD CPUs (see ``fast_dot`` and ``choose_stream_prefetch``).
#ifndef SY_PREFETCH_BYTES
#define SY_PREFETCH_BYTES 8192
#endif

/// The products at m ≤ SY_NARROW_ROWS (one weight row at a time: bf16 fast, bf16 exact and f32 weights,
/// on the AVX-512 bf16, AVX-512F and AVX2 paths; past it the first AVX2 exact and f32 tile of a block's rows) and the
/// AVX-512 and AVX2 q8 products also prefetch each row this many bytes ahead into L1 (`T0`), besides
/// SY_PREFETCH_BYTES ahead into L2. Measured on an Intel Xeon with AVX-512 bf16, 2 threads:
/// Benchmarks/kernels/m1_stream.c (m = 1 over 512 MiB of rows, 6 alternating rounds) read 25.5-28.7
/// GB/s with both against 14.3-25.4 with the L2 prefetch alone (`floors` 27-28; 1 KiB ahead as good,
/// 16 KiB into L2 no better, the L1 prefetch alone 15-20); batch_step's batch-1 step 26.1 -> 23.2 ms
/// (medians of 8 alternating pairs, 7 faster), q8 18.3 -> 17.3 ms, the AVX2 path 28.9 -> 25.4 ms;
/// batch 8 (m = 2) 87.5-93.3 -> 85.0-88.1 ms; batch 32 q8 alike; `generate` 64 tokens, 4 alternating
/// rounds, 36.1 -> 39.9 tok/s (Mixtral-shaped) and 74.1 -> 81.8 (Qwen3-MoE-shaped), medians. Those were
/// in a slow spell of the host; in a fast one (m1_stream's read pass 36 GB/s, 24 rounds) both read
/// 35.9 GB/s against 34.8 with the L2 prefetch alone (medians; 17 rounds of 24 faster). Later the
/// AVX-512F fast product at m ≤ 4 (CPUs with AVX-512 but no bf16 instructions) and the AVX2 q8 product
/// too, measured in a fast spell (reads 39 GB/s, 4 alternating rounds of batch_step's batch-1 step):
/// `SWITCHYARD_KERNEL=avx512` 16.4-17.7 -> 15.8-16.5 ms, AVX2 q8 10.8-11.3 -> 10.8-11.2 ms; then against
/// the code before (3 alternating rounds) `SWITCHYARD_KERNEL=avx512` at batch 8 (m = 2) 60.6-61.0 -> 57.2-57.8
/// ms and at batch 16 (m = 4) 77.4-79.2 -> 72.8-74.6 ms, AVX2 q8 at batch 8 alike. Then the exact and f32
/// products (alternating rounds): batch_step's batch-1 experts with exact arithmetic 14.8-15.0 -> 13.3-13.7
/// ms on AVX-512 (3 rounds), 13.8-14.5 -> 13.9-14.3 on AVX2 (6), batch 32 alike on both; an f32 product at
/// m = 1 over 1.1 GB of rows (k = 1,024) 33.5-39.3 -> 36.5-41.0 GB/s on AVX-512 (5 rounds, all faster) and
/// 33.3-38.6 -> 36.5-38.0 on AVX2 (4 of 5 faster).
#ifndef SY_PREFETCH_NEAR_BYTES
#define SY_PREFETCH_NEAR_BYTES 2048
#endif

/// How far ahead (bytes) the q8 products prefetch a weight's block scales into L1, the second stream a q8
/// weight has (4 bytes a block of 32 values; the L2 and L1 prefetch of its values above never reach it).
/// 1 KiB of scales is 256 blocks: about as far ahead in the rows as SY_PREFETCH_BYTES of values. Measured
/// on the Intel Xeon with AVX-512 bf16 (2 threads, q8 products at m = 1 over 600 MB of matrices in turn, 3
/// alternating rounds): 1,024 × 1,024 41.7-43.9 -> 40.2-42.5 µs, 5,632 × 1,024 212.8-223.3 -> 197.6-204.3
/// µs, 1,024 × 2,816 108.4-110.9 -> 102.3-105.0 µs (on the AVX2 path about 1-3% at the larger two, alike
/// at the first); `generate --quantize q8` on the Mixtral-shaped model, 4 alternating rounds, 97.9-101.6 ->
/// 102.6-110.0 tok/s (88.8-95.8 -> 92.3-101.3 on the AVX2 path), the Qwen3-MoE-shaped one alike;
/// batch_step's q8 batch-32 step 98.0-99.5 -> 95.1-96.7 ms (3 rounds).
#ifndef SY_PREFETCH_SCALE_BYTES
#define SY_PREFETCH_SCALE_BYTES 1024
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/// A q8 weight's scale stream at `at`, SY_PREFETCH_SCALE_BYTES ahead into L1 (`T0`): called once a cache
/// line of scales (every 16 blocks).
static inline void prefetch_scales(const float *at) {
    _mm_prefetch((const char *)at + SY_PREFETCH_SCALE_BYTES, _MM_HINT_T0);
}

/// The weight stream at `at`: with `level` 1 or 2, SY_PREFETCH_BYTES ahead into L2 (`T1`); with `level`
/// 2, also SY_PREFETCH_NEAR_BYTES ahead into L1 (`T0`); with 0, nothing.
static inline void prefetch_weights(const void *at, int level) {
    if (level) _mm_prefetch((const char *)at + SY_PREFETCH_BYTES, _MM_HINT_T1);
    if (level == 2) _mm_prefetch((const char *)at + SY_PREFETCH_NEAR_BYTES, _MM_HINT_T0);
}
#endif

#endif
