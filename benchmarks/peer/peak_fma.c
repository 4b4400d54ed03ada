// Single-core FP32 FMA peak of this machine, the yardstick for "GEMM at N% of peak" in benchmarks/RESULTS.md, and the
// ceiling of a GEMM micro-kernel on the same core, at the machine's widest vectors (AVX-512, else AVX2).
// Peak: independent FMA chains on registers (enough to cover the FMA latency on both ports: sixteen 512-bit ones, twelve
// 256-bit ones in AVX2's sixteen registers).
// Ceiling: the register-blocked kernel every GEMM runs at heart, as ModelGen's packed path runs it on that machine: 12 rows
// x 2 vectors (24 accumulators) on AVX-512, 6 rows x 2 vectors (12) on AVX2; per depth step two vector loads of B and a
// broadcast of A per row, its operands in L1, so nothing but the kernel's own instruction mix limits it. A whole GEMM adds
// packing and cache misses, so it stays below this.
// Prints both in GFLOP/s, each the best of 5 runs.
// Build: gcc -O2 -mavx512f -mfma peak_fma.c -o peak_fma (AVX-512), gcc -O2 -mavx2 -mfma peak_fma.c -o peak_fma (AVX2)
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#ifdef __AVX512F__
typedef __m512 vec;
enum { Lanes = 16, Chains = 16, Rows = 12 };
#define zero() _mm512_setzero_ps()
#define set1(x) _mm512_set1_ps(x)
#define load(p) _mm512_load_ps(p)
#define fmadd(a, b, c) _mm512_fmadd_ps(a, b, c)
#define add(a, b) _mm512_add_ps(a, b)
static float sum_lanes(vec v) { return _mm512_reduce_add_ps(v); }
#else
typedef __m256 vec;
enum { Lanes = 8, Chains = 12, Rows = 6 };
#define zero() _mm256_setzero_ps()
#define set1(x) _mm256_set1_ps(x)
#define load(p) _mm256_load_ps(p)
#define fmadd(a, b, c) _mm256_fmadd_ps(a, b, c)
#define add(a, b) _mm256_add_ps(a, b)
static float sum_lanes(vec v) {
    float lanes[Lanes], total = 0;
    _mm256_storeu_ps(lanes, v);
    for (int i = 0; i < Lanes; i++) total += lanes[i];
    return total;
}
#endif
enum { Columns = 2 * Lanes };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

__attribute__((noinline)) static float chains(long steps) {
    vec scale = set1(0.999999f), shift = set1(1e-7f), sum[Chains];
    for (int i = 0; i < Chains; i++) sum[i] = set1(i * 0.001f);
    for (long step = 0; step < steps; step++) {
#pragma GCC unroll 16
        for (int i = 0; i < Chains; i++) sum[i] = fmadd(sum[i], scale, shift);
    }
    vec total = sum[0];
    for (int i = 1; i < Chains; i++) total = add(total, sum[i]);
    return sum_lanes(total);
}

// A Rows x Columns tile of C over `depth` steps of packed A (Rows floats a step) and packed B (Columns floats a step),
// `repeats` times.
__attribute__((noinline)) static float tile(const float *a, const float *b, int depth, long repeats) {
    vec c[2 * Rows];
    for (int i = 0; i < 2 * Rows; i++) c[i] = zero();
    for (long repeat = 0; repeat < repeats; repeat++) {
        const float *pa = a, *pb = b;
        for (int p = 0; p < depth; p++, pa += Rows, pb += Columns) {
            vec b0 = load(pb), b1 = load(pb + Lanes);
#pragma GCC unroll 12
            for (int r = 0; r < Rows; r++) {
                vec x = set1(pa[r]);
                c[2 * r] = fmadd(x, b0, c[2 * r]);
                c[2 * r + 1] = fmadd(x, b1, c[2 * r + 1]);
            }
        }
    }
    vec total = c[0];
    for (int i = 1; i < 2 * Rows; i++) total = add(total, c[i]);
    return sum_lanes(total);
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
    return 2.0 * Lanes * Chains * steps / (now() - start) / 1e9;
}

static double run_tile(void) {
    enum { depth = 256 };  // AVX-512: 12 KB of A and 32 KB of B, in a 48 KB L1; AVX2: 6 KB and 16 KB, in 32 KB
    static float a[Rows * depth] __attribute__((aligned(64))), b[Columns * depth] __attribute__((aligned(64)));
    for (int i = 0; i < Rows * depth; i++) a[i] = 0.001f * (i % 7);
    for (int i = 0; i < Columns * depth; i++) b[i] = 0.001f * (i % 5);
    const long repeats = 200000;
    double start = now();
    sink += tile(a, b, depth, repeats);
    return 2.0 * Rows * Columns * depth * repeats / (now() - start) / 1e9;
}

int main(void) {
    printf("%.1f %.1f\n", best_of_5(run_chains), best_of_5(run_tile));
    return 0;
}
