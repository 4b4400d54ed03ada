using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// A B packed ahead (Gemm.Pack) gives the product it would give packed on each call, bit for bit, on every SIMD path and on
/// one core or two; products that pack B read the panels, products that read B where it lies read B.
/// </summary>
[Collection(KernelSettings.Name)]
public class PackedGemmTests
{
    public static TheoryData<SimdPath, int, int, int, int> Cases()
    {
        var data = new TheoryData<SimdPath, int, int, int, int>();
        var sizes = new (int M, int K, int N)[]
        {
            (3, 5, 7),          // a few rows streamed, in one vector: B where it lies
            (1, 784, 256),      // one row streamed from the panels: two passes on one core, a slice a core on two
            (1, 300, 200),      // passes of whole tiles (8, 6 and 5 vectors on AVX-512), the last vector partial
            (2, 20, 128),       // two rows streamed together from the panels
            (3, 784, 256),      // three rows: two passes of eight vectors on AVX-512, eight of four on AVX2
            (3, 300, 200),      // three rows in passes of whole tiles, the last vector partial
            (1, 2100, 300),     // deeper than a depth block: one row streamed from each block's tiles in turn
            (1, 2100, 64),      // as deep, in one pass over whole rows: B where it lies
            (3, 4500, 100),     // three rows through three depth blocks, the last vector partial
            (5, 17, 33),        // a few rows read in place, the last tile partial
            (12, 500, 100),     // the most such rows, in slices of columns on two cores
            (13, 29, 31),
            (200, 64, 10),      // a narrow classifier: one-vector tiles
            (128, 8, 8),        // at most eight columns, not taken a column at a time: 256-bit tiles on AVX-512 too
            (130, 300, 70),
            (128, 784, 256),    // the MNIST MLP's first layer at batch 128: slices of columns
            (400, 11, 200),
            (20, 2070, 2070),   // two depth blocks, two blocks of 2048 columns, a last slice narrower than a tile
            (700, 300, 40),     // blocks of rows, each thread reading all of B
            (64, 64, 128),      // below the sharing threshold, yet shared against panels: slices of columns
            (64, 128, 64),      // likewise, in blocks of rows
            (140, 2048, 2048),  // 16 MB of panels, fetched from memory by blocks of eleven twelve-row tiles on two cores
            (137, 2048, 2048),  // the same, the last block five rows: a six-row tile that fetches B, on every path
        };
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            foreach (var (m, k, n) in sizes)
            {
                data.Add(path, m, k, n, 1);
                data.Add(path, m, k, n, 2);
            }
        }
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void A_packed_B_gives_the_same_bits_as_packing_on_each_call(SimdPath path, int m, int k, int n, int threads)
    {
        var random = new Random(m * 31 + k * 7 + n);
        var a = GemmTests.RandomMatrix(random, m * k);
        var b = GemmTests.RandomMatrix(random, k * n);
        var bias = GemmTests.RandomMatrix(random, n);
        var start = GemmTests.RandomMatrix(random, m * n);
        using (KernelSettings.OnSimd(path))
        {
            var packed = Gemm.Pack(b, k, n);
            KernelSettings.OnThreads(threads, () =>
            {
                var expected = new float[m * n];
                var actual = new float[m * n];
                Gemm.Multiply(a, b, expected, m, k, n, bias, relu: true);
                Gemm.Multiply(a, b, actual, m, k, n, bias, relu: true, packedB: packed);
                Assert.Equal(expected, actual);

                var expectedSum = (float[])start.Clone();
                var actualSum = (float[])start.Clone();
                Gemm.Multiply(a, b, expectedSum, m, k, n, accumulate: true);
                Gemm.Multiply(a, b, actualSum, m, k, n, accumulate: true, packedB: packed);
                Assert.Equal(expectedSum, actualSum);

                // Two layers in a row at inference take a panel each.
                var h1 = new float[m * n];
                var h2 = new float[m * n];
                var c1 = new float[m];
                var c2 = new float[m];
                var b2 = b.AsSpan(0, n).ToArray();
                var packedB2 = Gemm.Pack(b2, n, 1);
                Gemm.MultiplyTwice(a, b, h1, b2, c1, m, k, n, 1, bias1: bias, relu1: true);
                Gemm.MultiplyTwice(a, b, h2, b2, c2, m, k, n, 1, bias1: bias, relu1: true, packedB1: packed, packedB2: packedB2);
                Assert.Equal(h1, h2);
                Assert.Equal(c1, c2);
            });
        }
    }

    [Theory]
    [InlineData(3, 5, 7, false)]       // rows streamed in one vector read B where it lies
    [InlineData(3, 64, 40, false)]     // and so do three rows in one pass over whole rows
    [InlineData(3, 64, 100, true)]     // rows streamed together in more than one pass read the panels' tiles
    [InlineData(1, 300, 200, true)]    // so does a row streamed alone
    [InlineData(2, 20, 128, true)]     // and two rows
    [InlineData(1, 784, 256, true)]    // and a row's slices of columns on two cores
    [InlineData(1, 2100, 300, true)]   // and a row deeper than a depth block, block after block
    [InlineData(8, 300, 100, true)]    // a few rows, which read B in place without panels
    [InlineData(128, 784, 256, true)]  // slices of columns, each packing its B
    [InlineData(700, 300, 40, true)]   // blocks of rows
    [InlineData(300, 2100, 48, true)]  // depth blocks
    [InlineData(12, 500, 100, true)]   // slices of columns, the last one narrower than a vector
    [InlineData(64, 128, 64, true)]    // shared against panels only: blocks of rows
    [InlineData(128, 8, 8, true)]      // eight columns on 256-bit vectors on AVX-512 too: so are their panels
    [InlineData(13, 8, 5, true)]       // likewise, at the fewest rows that read panels
    [InlineData(128, 64, 8, true)]     // eight columns a column at a time (AVX-512): 512-bit panels
    [InlineData(13, 64, 8, true)]      // the same product at thirteen rows, too few for a column tile, reads them all the same
    public void Products_that_would_pack_B_read_the_panels(int m, int k, int n, bool readsPanels)
    {
        // Panels packed from other values than B's show which of the two a product reads.
        var random = new Random(m + k + n);
        var a = GemmTests.RandomMatrix(random, m * k);
        var b = GemmTests.RandomMatrix(random, k * n);
        var other = GemmTests.RandomMatrix(random, k * n);
        var fromB = new float[m * n];
        var fromOther = new float[m * n];
        var actual = new float[m * n];
        Gemm.Multiply(a, b, fromB, m, k, n);
        Gemm.Multiply(a, other, fromOther, m, k, n);
        Gemm.Multiply(a, b, actual, m, k, n, packedB: Gemm.Pack(other, k, n));
        Assert.Equal(readsPanels ? fromOther : fromB, actual);
    }

    [Fact]
    public void Panels_packed_on_another_path_are_left_alone()
    {
        // AVX-512 packs 32-column tiles, AVX2 16: products on the other path pack B as they would without panels.
        const int m = 64, k = 200, n = 96;
        var random = new Random(5);
        var a = GemmTests.RandomMatrix(random, m * k);
        var b = GemmTests.RandomMatrix(random, k * n);
        PackedMatrix packed;
        using (KernelSettings.OnSimd(SimdPath.Avx512)) packed = Gemm.Pack(b, k, n);
        using (KernelSettings.OnSimd(SimdPath.Avx2))
        {
            var expected = new float[m * n];
            var actual = new float[m * n];
            Gemm.Multiply(a, b, expected, m, k, n);
            Gemm.Multiply(a, b, actual, m, k, n, packedB: packed);
            Assert.Equal(expected, actual);
        }
    }

    [Fact]
    public void Panels_of_another_shape_are_refused()
    {
        var b = new float[30 * 20];
        var packed = Gemm.Pack(b, 20, 30);
        var error = Assert.Throws<ArgumentException>(() => Gemm.Multiply(new float[16 * 30], b, new float[16 * 20], 16, 30, 20, packedB: packed));
        Assert.Contains("20x30", error.Message);
        Assert.Contains("30x20", error.Message);
        Assert.Equal(20 * 32 * sizeof(float), packed.Bytes); // 30 columns padded to whole tiles of 16 or 32 (8 on the portable path)
    }

    /// <summary>
    /// Panels packed again into the same memory, as a recurrent layer packs U forward and Uᵀ backward in every training step:
    /// each packing gives the product of the B it packed, bit for bit, on every path, whatever the memory held before.
    /// </summary>
    [Theory]
    [InlineData(SimdPath.Avx512)]
    [InlineData(SimdPath.Avx2)]
    [InlineData(SimdPath.Portable)]
    public void Panels_packed_again_in_the_same_memory_read_the_latest_B(SimdPath path)
    {
        const int m = 26, units = 40, gates = 160;
        var random = new Random(11);
        var u = GemmTests.RandomMatrix(random, units * gates);
        var transposed = new float[gates * units];
        Gemm.Transpose(u, transposed, units, gates);
        var changed = GemmTests.RandomMatrix(random, units * gates);
        var a = GemmTests.RandomMatrix(random, m * gates);
        using var _ = KernelSettings.OnSimd(path);
        var panels = new RepackedPanels(new AlignedBuffer(Math.Max(Gemm.PanelFloatsOnAnyPath(units, gates), Gemm.PanelFloatsOnAnyPath(gates, units))));
        foreach (var (b, k, n) in new[] { (u, units, gates), (transposed, gates, units), (changed, units, gates), (u, units, gates) })
        {
            var expected = new float[m * n];
            var actual = new float[m * n];
            Gemm.Multiply(a, b, expected, m, k, n);
            Gemm.Multiply(a, b, actual, m, k, n, packedB: panels.Pack(b, k, n));
            Assert.Equal(expected, actual);
        }
        // The last packing was U's: a product handed U's panels with another B (of U's shape) reads the panels.
        var fromU = new float[m * gates];
        Gemm.Multiply(a, u, fromU, m, units, gates);
        var fromPanels = new float[m * gates];
        Gemm.Multiply(a, changed, fromPanels, m, units, gates, packedB: panels.Pack(u, units, gates));
        Assert.Equal(fromU, fromPanels);
        // Packing again a shape it has packed allocates nothing: a recurrent layer does so in every pass.
        Assert.Equal(0, Allocations.OnThisThread(() => { panels.Pack(transposed, gates, units); panels.Pack(u, units, gates); }));
        var error = Assert.Throws<ArgumentException>(() => panels.Pack(new float[gates * gates], gates, gates));
        Assert.Contains($"{gates}x{gates}", error.Message);
    }
}
