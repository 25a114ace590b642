// The pass of `floors --bandwidth`, compiled for this CPU as run.sh compiles floors.c (-march=native).
#include "bench_read_pass.h"
#include "../../floors/read_pass.h"

float *bench_read_buffer(size_t bytes) {
    void *mapping;
    size_t mapped;
    return read_pass_buffer(bytes, &mapping, &mapped);  // kept for the life of the process
}

double bench_read_pass(const float *data, size_t bytes, int threads, float *sink) {
    return read_pass(data, bytes, threads, sink);
}
