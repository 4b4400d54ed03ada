// Single-core FP32 FMA peak of this machine, the yardstick for "GEMM at N% of peak" in benchmarks/RESULTS.md, and the
// ceiling of a GEMM micro-kernel on the same core.
// Peak: sixteen independent 512-bit FMA chains on registers (enough to cover the FMA latency on both ports).
// Ceiling: the register-blocked kernel every GEMM runs at heart (12 rows x 2 vectors: 24 accumulators; per depth step two
// vector loads of B and twelve broadcasts of A), its operands in L1, so nothing but the kernel's own instruction mix limits
// it. A whole GEMM adds packing and cache misses, so it stays below this.
// Prints both in GFLOP/s, each the best of 5 runs. Build: gcc -O2 -mavx512f -mfma peak_fma.c -o peak_fma
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

// A 12 x 32 tile of C over `depth` steps of packed A (12 floats a step) and packed B (32 floats a step), `repeats` times.
__attribute__((noinline)) static float tile(const float *a, const float *b, int depth, long repeats) {
    __m512 c[24];
    for (int i = 0; i < 24; i++) c[i] = _mm512_setzero_ps();
    for (long repeat = 0; repeat < repeats; repeat++) {
        const float *pa = a, *pb = b;
        for (int p = 0; p < depth; p++, pa += 12, pb += 32) {
            __m512 b0 = _mm512_load_ps(pb), b1 = _mm512_load_ps(pb + 16);
#pragma GCC unroll 12
            for (int r = 0; r < 12; r++) {
                __m512 x = _mm512_set1_ps(pa[r]);
                c[2 * r] = _mm512_fmadd_ps(x, b0, c[2 * r]);
                c[2 * r + 1] = _mm512_fmadd_ps(x, b1, c[2 * r + 1]);
            }
        }
    }
    __m512 total = c[0];
    for (int i = 1; i < 24; i++) total = _mm512_add_ps(total, c[i]);
    return _mm512_reduce_add_ps(total);
}

static double best_of_5(double (*run)(void)) {
    double best = 0;
    for (int i = 0; i < 5; i++) {
        double gflops = run();
        if (gflops > best) best = gflops;
    }
    return best;
}

static volatile float sink = 0;

static double run_chains(void) {
    const long steps = 50000000;
    double start = now();
    sink += chains(steps);
    return 2.0 * 16 * 16 * steps / (now() - start) / 1e9;
}

static double run_tile(void) {
    enum { depth = 256 };  // 12 KB of A and 32 KB of B: both in a 48 KB L1
    static float a[12 * depth] __attribute__((aligned(64))), b[32 * depth] __attribute__((aligned(64)));
    for (int i = 0; i < 12 * depth; i++) a[i] = 0.001f * (i % 7);
    for (int i = 0; i < 32 * depth; i++) b[i] = 0.001f * (i % 5);
    const long repeats = 200000;
    double start = now();
    sink += tile(a, b, depth, repeats);
    return 2.0 * 12 * 32 * depth * repeats / (now() - start) / 1e9;
}

int main(void) {
    printf("%.1f %.1f\n", best_of_5(run_chains), best_of_5(run_tile));
    return 0;
}
