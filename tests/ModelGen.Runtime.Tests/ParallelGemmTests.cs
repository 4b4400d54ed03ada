using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>Products shared by two cores give exactly the one-core result, in every operand layout and either cut (slices of columns or blocks of rows), also under concurrent callers.</summary>
[Collection(KernelSettings.Name)]
public class ParallelGemmTests
{
    [Theory]
    [InlineData(640, 784, 512)]  // cut into slices of columns
    [InlineData(613, 1000, 421)] // odd rows: the last block is an edge tile
    [InlineData(784, 640, 512)]  // the kernel-gradient shape
    [InlineData(128, 784, 256)]  // a dense layer at batch 128: slices of columns
    [InlineData(50, 300, 777)]   // the last slice of columns is an edge tile
    [InlineData(2000, 288, 64)]  // a convolution's patches against 64 filters: blocks of rows
    [InlineData(12, 9000, 40)]   // a weight gradient over many positions: slices of the depth (no bias there: AtB, ABt)
    [InlineData(1, 784, 256)]    // batch-1 inference: slices of streamed columns
    [InlineData(3, 500, 300)]    // a few rows; the last slice ends in a partial vector
    [InlineData(1, 1600, 128)]   // four-vector slices
    [InlineData(768, 5472, 1024)] // wide enough for slices, but an A of 16 MB: blocks of rows, A packed, reading one B both cores packed
    [InlineData(1540, 1000, 300)] // tall: blocks of rows against a B both cores packed, its last tile partial
    [InlineData(4, 784, 256)]    // a few rows below the sharing threshold: slices of columns on two cores, whole on one
    [InlineData(12, 500, 100)]   // the most such rows, the last slice ending in a partial tile
    [InlineData(8, 64, 520)]     // a transposed B (ABt) packed by each slice
    public void Two_cores_match_one_core_exactly(int m, int k, int n)
    {
        var random = new Random(m + k + n);
        var a = GemmTests.RandomMatrix(random, m * k);
        var b = GemmTests.RandomMatrix(random, k * n);
        var bias = GemmTests.RandomMatrix(random, n);
        foreach (var form in new[] { "AB", "AtB", "ABt" })
        {
            var one = Compute(form, a, b, bias, m, k, n, threads: 1);
            var two = Compute(form, a, b, bias, m, k, n, threads: 2);
            Assert.Equal(one, two); // the same tiles computed the same way: bit-identical
        }
    }

    [Fact]
    public void A_caller_left_every_slice_by_a_late_helper_allocates_nothing()
    {
        // Four rows read B's whole tiles in place, and 2052 columns end in a partial tile, which only the last of the 33
        // slices copies into a panel. With the helper there, it takes that slice (slices are claimed from the back); a helper
        // that is late or busy leaves it to the caller, which must not allocate its panel then, in a steady-state step.
        const int m = 4, k = 2000, n = 2052;
        var random = new Random(9);
        var a = GemmTests.RandomMatrix(random, m * k);
        var b = GemmTests.RandomMatrix(random, k * n);
        var shared = new float[m * n];
        var alone = new float[m * n];
        KernelSettings.OnThreads(2, () =>
        {
            long allocated = -1;
            bool started = false, handedOver = false;
            var caller = new Thread(() => // a thread of its own: no panel yet from other tests' products
            {
                Volatile.Write(ref started, true);
                while (!Volatile.Read(ref handedOver)) Thread.SpinWait(1);
                for (int i = 0; i < 3; i++) Gemm.Multiply(a, b, shared, m, k, n);
                Helper.Threads = 1; // the same slices, all on this thread
                allocated = Allocations.OnThisThread(() => Gemm.Multiply(a, b, alone, m, k, n));
            });
            caller.Start();
            // Products until the caller is there, so that the helper is compiled and awake (it polls for a millisecond after
            // a job) when the caller's first product arrives, and takes the last slice.
            while (!Volatile.Read(ref started)) Gemm.Multiply(a, b, shared, m, k, n);
            Gemm.Multiply(a, b, shared, m, k, n);
            Volatile.Write(ref handedOver, true);
            caller.Join();
            Assert.Equal(0, allocated);
        });
        Assert.Equal(shared, alone);
    }

    [Fact]
    public void Concurrent_callers_all_get_correct_results()
    {
        const int m = 512, k = 700, n = 768;
        var random = new Random(5);
        var a = GemmTests.RandomMatrix(random, m * k);
        var b = GemmTests.RandomMatrix(random, k * n);
        var expected = new float[m * n];
        KernelSettings.OnThreads(1, () => Gemm.Multiply(a, b, expected, m, k, n));
        var results = new float[8][];
        Parallel.For(0, 8, i =>
        {
            var c = new float[m * n];
            for (int repeat = 0; repeat < 3; repeat++) Gemm.Multiply(a, b, c, m, k, n);
            results[i] = c;
        });
        Assert.All(results, r => Assert.Equal(expected, r));
    }

    [Fact]
    public void Back_to_back_shared_products_are_each_exact()
    {
        // Hand-off races (a stale done signal, a withdrawn job) surface as wrong results or crashes under rapid reuse.
        const int m = 640, k = 640, n = 640;
        var random = new Random(8);
        var a = GemmTests.RandomMatrix(random, m * k);
        var b = GemmTests.RandomMatrix(random, k * n);
        var expected = new float[m * n];
        KernelSettings.OnThreads(1, () => Gemm.Multiply(a, b, expected, m, k, n));
        KernelSettings.OnThreads(2, () =>
        {
            var c = new float[m * n];
            for (int i = 0; i < 60; i++)
            {
                Array.Clear(c);
                Gemm.Multiply(a, b, c, m, k, n);
                Assert.Equal(expected, c);
            }
        });
    }

    private static float[] Compute(string form, float[] a, float[] b, float[] bias, int m, int k, int n, int threads) =>
        KernelSettings.OnThreads(threads, () =>
        {
            var c = Enumerable.Repeat(0.5f, m * n).ToArray();
            switch (form)
            {
                case "AB": Gemm.Multiply(a, b, c, m, k, n, bias, relu: true, accumulate: true); break;
                case "AtB": Gemm.MultiplyTransposedA(a, b, c, m, k, n, accumulate: true); break; // a read as (k, m)
                default: Gemm.MultiplyTransposedB(a, b, c, m, k, n); break;                      // b read as (n, k)
            }
            return c;
        });
}
