// Single-core FP32 FMA peak of this machine, the yardstick for "GEMM at N% of peak" in benchmarks/RESULTS.md.
// Sixteen independent 512-bit FMA chains (enough to cover the FMA latency on both ports); prints GFLOP/s, the best of 5 runs.
// Build: gcc -O2 -mavx512f -mfma peak_fma.c -o peak_fma
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((noinline)) static float chains(long steps) {
    __m512 scale = _mm512_set1_ps(0.999999f), shift = _mm512_set1_ps(1e-7f), sum[16];
    for (int i = 0; i < 16; i++) sum[i] = _mm512_set1_ps(i * 0.001f);
    for (long step = 0; step < steps; step++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) sum[i] = _mm512_fmadd_ps(sum[i], scale, shift);
    }
    __m512 total = sum[0];
    for (int i = 1; i < 16; i++) total = _mm512_add_ps(total, sum[i]);
    return _mm512_reduce_add_ps(total);
}

int main(void) {
    const long steps = 50000000;
    double best = 0;
    volatile float sink = 0;
    for (int run = 0; run < 5; run++) {
        double start = now();
        sink += chains(steps);
        double gflops = 2.0 * 16 * 16 * steps / (now() - start) / 1e9;
        if (gflops > best) best = gflops;
    }
    printf("%.1f\n", best);
    return 0;
}
