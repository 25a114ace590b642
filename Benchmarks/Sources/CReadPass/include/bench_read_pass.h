// The memory-read floor's pass (Benchmarks/floors/read_pass.h) for switchyard-bench.
#ifndef BENCH_READ_PASS_H
#define BENCH_READ_PASS_H
#include <stddef.h>

/// A buffer of `bytes` in transparent huge pages, filled; NULL when it cannot be mapped.
float *bench_read_buffer(size_t bytes);
/// One read of `bytes` of `data` on `threads` (1 or 2): GB/s over the slowest thread.
double bench_read_pass(const float *data, size_t bytes, int threads, float *sink);
#endif
