// The floor of a batch-1 dense layer on this machine: one core streams half of the MLP's 784x256 weights (the 128 columns
// of its slice in Gemm.MultiplyTwice) from its L2, multiply-adding them into eight 512-bit sums, from two layouts:
// - rows: B row-major, each depth step's 128 floats 1 KB apart (a slice of the kernel where it lies);
// - tiles: B packed in tiles of 32 columns (Gemm.Pack on AVX-512), each tile's rows one after another, four streams.
// Nothing but L2 bandwidth and the prefetchers limit it, so a batch-1 predict of that layer on two cores cannot beat the
// faster time (plus a hand-off between the cores). Prints the median of 41 samples of each, in us and GB/s.
// Run it on both cores at once (taskset -c 0 ./stream_l2 & taskset -c 1 ./stream_l2) to see whether they share an L2.
// Build: gcc -O2 -mavx512f -mfma stream_l2.c -o stream_l2
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { Depth = 784, Columns = 256, Slice = 128, Tile = 32, Calls = 100, Samples = 41 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Eight vectors a depth step: vector v at b + (v / per) * between + (v % per) * 16, b moving on by step floats.
__attribute__((noinline)) static void stream(const float *a, const float *b, long step, long between, int per, float *c) {
    __m512 s[8];
    for (int v = 0; v < 8; v++) s[v] = _mm512_setzero_ps();
    for (int p = 0; p < Depth; p++, b += step) {
        __m512 x = _mm512_set1_ps(a[p]);
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) s[v] = _mm512_fmadd_ps(x, _mm512_load_ps(b + (v / per) * between + (v % per) * 16), s[v]);
    }
    for (int v = 0; v < 8; v++) _mm512_store_ps(c + 16 * v, s[v]);
}

static int ascending(const void *x, const void *y) {
    double d = *(const double *)x - *(const double *)y;
    return (d > 0) - (d < 0);
}

static void measure(const char *name, const float *a, const float *b, long step, long between, int per, float *c) {
    double samples[Samples];
    for (int warm = 0; warm < 1000; warm++) stream(a, b, step, between, per, c);
    for (int s = 0; s < Samples; s++) {
        double start = now();
        for (int call = 0; call < Calls; call++) stream(a, b, step, between, per, c);
        samples[s] = (now() - start) / Calls;
    }
    qsort(samples, Samples, sizeof(double), ascending);
    double median = samples[Samples / 2];
    printf("784 x 128 slice from L2, %s: %.2f us, %.1f GB/s (checksum %g)\n", name, median * 1e6,
           (double)Depth * Slice * sizeof(float) / median / 1e9, c[0]);
}

int main(void) {
    float *a = aligned_alloc(64, Depth * sizeof(float));
    float *b = aligned_alloc(64, (size_t)Depth * Columns * sizeof(float));
    float *c = aligned_alloc(64, Slice * sizeof(float));
    for (int i = 0; i < Depth; i++) a[i] = 1.0f / (i + 1);
    for (int i = 0; i < Depth * Columns; i++) b[i] = 1e-3f * (i % 97);
    measure("rows 1 KB apart", a, b, Columns, 0, 8, c);
    measure("tiles of 32 columns", a, b, Tile, (long)Depth * Tile, Tile / 16, c);
    return 0;
}
