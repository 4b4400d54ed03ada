using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>Every GEMM form on every SIMD path (emulated where this machine lacks it), against a double-precision triple loop, at sizes with odd remainders.</summary>
[Collection(KernelSettings.Name)]
public class GemmTests
{
    public static TheoryData<SimdPath, int, int, int> Cases()
    {
        var data = new TheoryData<SimdPath, int, int, int>();
        var sizes = new (int M, int K, int N)[] { (1, 1, 1), (1, 784, 256), (3, 5, 7), (4, 16, 32), (5, 17, 33), (7, 3, 65), (13, 29, 31), (32, 64, 10), (9, 100, 48), (2, 1, 129), (130, 300, 70), (100, 513, 33), (7, 600, 1100), (200, 257, 97), (50, 40, 16), (37, 300, 1), (20, 30, 5), (200, 64, 10), (96, 200, 600), (9, 4000, 32), (20, 5000, 17), (400, 11, 200) };
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            foreach (var (m, k, n) in sizes) data.Add(path, m, k, n);
        }
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Multiply_matches_reference_with_bias_relu_and_accumulate(SimdPath path, int m, int k, int n)
    {
        var random = new Random(m * 1000 + k * 10 + n);
        var a = RandomMatrix(random, m * k);
        var b = RandomMatrix(random, k * n);
        var bias = RandomMatrix(random, n);
        var start = RandomMatrix(random, m * n);

        var expected = Reference(m, k, n, (i, p) => a[i * k + p], (p, j) => b[p * n + j]);
        using (KernelSettings.OnSimd(path))
        {
            var plain = new float[m * n];
            Gemm.Multiply(a, b, plain, m, k, n);
            AssertClose(expected, plain, k);

            var fused = new float[m * n];
            Gemm.Multiply(a, b, fused, m, k, n, bias, relu: true);
            AssertClose(expected.Select((v, idx) => Math.Max(v + bias[idx % n], 0)).ToArray(), fused, k);

            var accumulated = (float[])start.Clone();
            Gemm.Multiply(a, b, accumulated, m, k, n, accumulate: true);
            AssertClose(expected.Select((v, idx) => v + start[idx]).ToArray(), accumulated, k);
        }
    }

    [Theory, MemberData(nameof(Cases))]
    public void MultiplyTransposedA_matches_reference(SimdPath path, int m, int k, int n)
    {
        var random = new Random(m * 7 + k * 11 + n);
        var a = RandomMatrix(random, k * m); // stored (k, m)
        var b = RandomMatrix(random, k * n);
        var start = RandomMatrix(random, m * n);
        var expected = Reference(m, k, n, (i, p) => a[p * m + i], (p, j) => b[p * n + j]);
        using (KernelSettings.OnSimd(path))
        {
            var c = new float[m * n];
            Gemm.MultiplyTransposedA(a, b, c, m, k, n);
            AssertClose(expected, c, k);
            var accumulated = (float[])start.Clone();
            Gemm.MultiplyTransposedA(a, b, accumulated, m, k, n, accumulate: true);
            AssertClose(expected.Select((v, idx) => v + start[idx]).ToArray(), accumulated, k);
        }
    }

    [Theory, MemberData(nameof(Cases))]
    public void MultiplyTransposedB_matches_reference(SimdPath path, int m, int k, int n)
    {
        var random = new Random(m * 13 + k * 17 + n);
        var a = RandomMatrix(random, m * k);
        var b = RandomMatrix(random, n * k); // stored (n, k)
        var start = RandomMatrix(random, m * n);
        var expected = Reference(m, k, n, (i, p) => a[i * k + p], (p, j) => b[j * k + p]);
        using (KernelSettings.OnSimd(path))
        {
            var c = new float[m * n];
            Gemm.MultiplyTransposedB(a, b, c, m, k, n);
            AssertClose(expected, c, k);
            var accumulated = (float[])start.Clone();
            Gemm.MultiplyTransposedB(a, b, accumulated, m, k, n, accumulate: true);
            AssertClose(expected.Select((v, idx) => v + start[idx]).ToArray(), accumulated, k);
        }
    }

    /// <summary>
    /// A few rows stream B from wherever it lies (a model's weights start where the array puts them): at every offset from a
    /// vector boundary, each entry is exactly the chain of fused multiply-adds over the depth, then bias and ReLU, and
    /// nothing past C is written. Rows a whole number of vectors long carry the columns before B's first boundary in a
    /// vector that wraps into the next row (1x784x256, 2x256x128 sliced over both cores, 1x1x16 with no row between its
    /// first and last); other rows end in a partial vector. Two or three rows stream together, each vector of B loaded once
    /// for all of them, in passes of four or three vectors (3x200x256: eleven passes on AVX2, the last wrapping).
    /// </summary>
    [Theory]
    [InlineData(1, 1, 16)]
    [InlineData(1, 2, 32)]
    [InlineData(3, 50, 64)]
    [InlineData(2, 256, 128)]
    [InlineData(1, 1600, 128)]
    [InlineData(1, 1, 1)]
    [InlineData(1, 37, 5)]
    [InlineData(2, 64, 10)]
    [InlineData(1, 300, 17)]
    [InlineData(3, 40, 33)]
    [InlineData(1, 128, 150)]
    [InlineData(1, 784, 256)]
    [InlineData(2, 200, 300)]
    [InlineData(1, 100, 1100)]
    [InlineData(3, 200, 256)]
    [InlineData(2, 100, 512)]
    [InlineData(3, 1, 16)]
    [InlineData(3, 64, 40)]
    [InlineData(2, 30, 7)]
    public void Streamed_rows_are_exact_fma_chains_at_every_alignment_of_B(int m, int k, int n) =>
        AssertStreamedChains(m, k, n, a => { });

    /// <summary>
    /// Infinities in A's first and last floats: a wrapping vector's lanes that take no term in the first or the last row
    /// (the next row's columns, B's data before its first row) must be left alone, not multiplied by zero (inf·0 is NaN).
    /// </summary>
    [Theory]
    [InlineData(1, 3, 32)]
    [InlineData(2, 9, 64)]
    [InlineData(3, 5, 48)]
    [InlineData(32, 69, 10)] // sixteen rows a column at a time (AVX-512), the last five steps copied out with zeros after them
    public void Streamed_rows_keep_exact_chains_around_infinities_in_A(int m, int k, int n) =>
        AssertStreamedChains(m, k, n, a =>
        {
            for (int i = 0; i < m; i++) (a[i * k], a[i * k + k - 1]) = (float.PositiveInfinity, float.NegativeInfinity);
        });

    /// <summary>
    /// A batch read where it lies (products up to 128 columns, or of an A of at most 4096 floats) is cut into tiles of twelve rows, then a last seven or eight as
    /// one eight-row tile, else six at a time, a last tile of fewer rows reading its last row again for the missing ones; each
    /// tile of B is packed by the first tile that reads it (ahead, where B's rows are a page or more apart), except that up to
    /// twelve rows read whole tiles of B where they lie. Whatever the last tile, each row is its exact chain and nothing past
    /// C is written.
    /// </summary>
    [Theory]
    [InlineData(4, 300, 64)]    // one six-row tile, its last row read three times
    [InlineData(7, 300, 64)]    // one eight-row tile, its seventh row read twice
    [InlineData(8, 300, 33)]    // one eight-row tile; the last column tile partial
    [InlineData(13, 100, 10)]   // twelve rows and one, one vector wide
    [InlineData(20, 300, 96)]   // twelve and eight
    [InlineData(23, 64, 128)]   // twelve, six and five
    [InlineData(128, 256, 128)] // a dense layer at batch 128: blocks of rows on both cores, the last of eight
    [InlineData(64, 300, 1100)] // slices of 128 columns of a B whose rows are more than a page apart: B packed ahead
    [InlineData(32, 64, 256)]   // an A small enough for L1 (an LSTM's recurrent product), read in place across eight tiles
    [InlineData(10, 50, 300)]   // the same in tiles of six rows and four, the last column tile partial
    [InlineData(5, 200, 1100)]  // a few rows: whole tiles of B read where they lie, rows more than a page apart; the last packed
    [InlineData(12, 300, 1024)] // the most rows that read B in place: two tiles of six, or one of twelve
    [InlineData(13, 300, 1024)] // one row more: B packed ahead again
    [InlineData(26, 1024, 160)] // rows 4 KB apart, in slices of columns: twelve-row tiles read a copy of A whose rows are spread
    [InlineData(128, 128, 10)]  // a classifier at batch 128: tiles of sixteen rows a column at a time (AVX-512), A transposed in blocks of 16 steps
    [InlineData(35, 69, 1)]     // one column: two tiles of sixteen, then three rows in a narrow tile; the last five steps a padded block
    [InlineData(48, 32, 3)]     // two whole blocks; three columns computed as four
    [InlineData(48, 71, 3)]     // four blocks and a padded one
    [InlineData(48, 23, 3)]     // one block and seven steps: the narrow kernel
    [InlineData(16, 1000, 12)]  // the widest taken a column at a time, deep
    [InlineData(40, 130, 13)]   // one column too many: the narrow kernel's tiles
    [InlineData(128, 8, 8)]     // eight columns, too shallow to go a column at a time: on 256-bit vectors on AVX-512 too
    [InlineData(12, 64, 6)]     // the most rows that never go a column at a time: 256-bit vectors too
    public void Batches_read_in_place_are_exact_fma_chains_whatever_their_last_tile(int m, int k, int n) =>
        AssertStreamedChains(m, k, n, a => { });

    private static void AssertStreamedChains(int m, int k, int n, Action<float[]> prepareA)
    {
        var random = new Random(m * 31 + k * 7 + n);
        var a = RandomMatrix(random, m * k);
        prepareA(a);
        var b = RandomMatrix(random, k * n);
        var bias = RandomMatrix(random, n);
        var expected = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float sum = 0f;
                for (int p = 0; p < k; p++) sum = MathF.FusedMultiplyAdd(a[i * k + p], b[p * n + j], sum);
                expected[i * n + j] = MathF.Max(sum + bias[j], 0f);
            }
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            for (int offset = 0; offset < 16; offset++)
            {
                var shifted = new float[offset + b.Length];
                b.CopyTo(shifted, offset);
                var c = new float[m * n + 20];
                Array.Fill(c, -7f);
                Gemm.Multiply(a, shifted.AsSpan(offset), c, m, k, n, bias, relu: true);
                for (int e = 0; e < expected.Length; e++)
                    Assert.True(BitConverter.SingleToInt32Bits(expected[e]) == BitConverter.SingleToInt32Bits(c[e]),
                        $"{path}, B at offset {offset}: entry {e} is {c[e]}, the chain gives {expected[e]}");
                Assert.All(c.Skip(m * n), v => Assert.Equal(-7f, v));
            }
        }
    }

    /// <summary>
    /// A narrow kernel gradient (Aᵀ·B, A stored (k, m)): each output is, bit for bit, its chains of multiply-adds in order,
    /// one per depth block of a transposed A read in place (256 steps), each block's chain added to what C holds (the
    /// first's to C's start values when accumulating, to nothing otherwise): on AVX-512 sixteen rows a column at a time.
    /// </summary>
    [Theory]
    [InlineData(128, 128, 10, false)]
    [InlineData(128, 128, 10, true)]
    [InlineData(37, 600, 1, true)]  // three depth blocks; two tiles of sixteen rows and five in a narrow tile
    [InlineData(64, 33, 7, false)]
    [InlineData(32, 300, 12, true)]
    [InlineData(32, 50, 14, false)] // past the widest taken a column at a time
    public void Narrow_kernel_gradients_are_exact_fma_chains_per_depth_block(int m, int k, int n, bool accumulate)
    {
        const int depthBlock = 256;
        var random = new Random(m * 13 + k * 5 + n);
        var a = RandomMatrix(random, k * m);
        var b = RandomMatrix(random, k * n);
        var start = RandomMatrix(random, m * n);
        var expected = new float[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float value = start[i * n + j];
                for (int first = 0; first < k; first += depthBlock)
                {
                    float chain = 0f;
                    for (int p = first; p < Math.Min(k, first + depthBlock); p++) chain = MathF.FusedMultiplyAdd(a[p * m + i], b[p * n + j], chain);
                    value = first == 0 && !accumulate ? chain : chain + value;
                }
                expected[i * n + j] = value;
            }
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            var c = (float[])start.Clone();
            Gemm.MultiplyTransposedA(a, b, c, m, k, n, accumulate);
            for (int e = 0; e < expected.Length; e++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[e]) == BitConverter.SingleToInt32Bits(c[e]),
                    $"{path}: entry {e} is {c[e]}, the chains give {expected[e]}");
        }
    }

    /// <summary>
    /// A product whose A reaches 16 MB (Gemm.LargeA) goes by blocks of rows with A packed, here through three depth blocks whose
    /// partial sums wait in C. Too large for the reference loop over all of C, it is checked against double-precision dot
    /// products at sampled entries: the rows and columns at tile and block edges, and random ones, in every form.
    /// </summary>
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Products_of_a_16_MB_A_match_reference_at_sampled_entries(SimdPath path)
    {
        const int m = 768, k = 5472, n = 1024;
        var random = new Random(16);
        var a = RandomMatrix(random, m * k);
        var b = RandomMatrix(random, k * n);
        var bias = RandomMatrix(random, n);
        int[] Sample(int count, params int[] edges) => edges.Concat(Enumerable.Range(0, 24).Select(_ => random.Next(count))).Distinct().ToArray();
        var rows = Sample(m, 0, 1, 5, 6, 11, 12, 95, 96, 383, 384, 767);
        var columns = Sample(n, 0, 1, 7, 8, 15, 16, 63, 64, 1008, 1023);
        // Each form reads the same floats in its own layout: A as (m, k) or (k, m), B as (k, n) or (n, k).
        var forms = new (string Name, Func<int, int, float> AAt, Func<int, int, float> BAt, Action<float[]> Run, bool Fused)[]
        {
            ("AB", (i, p) => a[i * k + p], (p, j) => b[p * n + j], c => Gemm.Multiply(a, b, c, m, k, n, bias, relu: true), true),
            ("AtB", (i, p) => a[p * m + i], (p, j) => b[p * n + j], c => Gemm.MultiplyTransposedA(a, b, c, m, k, n), false),
            ("ABt", (i, p) => a[i * k + p], (p, j) => b[j * k + p], c => Gemm.MultiplyTransposedB(a, b, c, m, k, n), false),
        };
        using var _ = KernelSettings.OnSimd(path);
        foreach (var form in forms)
        {
            var c = new float[m * n];
            form.Run(c);
            foreach (int i in rows)
                foreach (int j in columns)
                {
                    double sum = 0;
                    for (int p = 0; p < k; p++) sum += (double)form.AAt(i, p) * form.BAt(p, j);
                    double expected = form.Fused ? Math.Max(sum + bias[j], 0) : sum;
                    Assert.True(Math.Abs(expected - c[i * n + j]) <= 1e-6 * (k + 1), $"{form.Name} on {path}: C[{i}, {j}] is {c[i * n + j]}, expected {expected}");
                }
        }
    }

    /// <summary>
    /// A product whose rows both cores take in blocks against one copy of a 16 MB B, packed by both into panels written past
    /// the caches (Gemm.OutgrowCaches), computes the bits one thread computes packing B itself, on every path.
    /// </summary>
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Panels_streamed_past_the_caches_give_the_products_of_one_thread(SimdPath path)
    {
        const int m = 1024, k = 4096, n = 1024;
        var random = new Random(22);
        var a = RandomMatrix(random, m * k);
        var b = RandomMatrix(random, k * n);
        var bias = RandomMatrix(random, n);
        using var _ = KernelSettings.OnSimd(path);
        var alone = new float[m * n];
        KernelSettings.OnThreads(1, () => Gemm.Multiply(a, b, alone, m, k, n, bias, relu: true));
        var shared = new float[m * n];
        KernelSettings.OnThreads(2, () => Gemm.Multiply(a, b, shared, m, k, n, bias, relu: true));
        for (int i = 0; i < alone.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(alone[i]) == BitConverter.SingleToInt32Bits(shared[i]),
                $"{path}: C[{i / n}, {i % n}] is {shared[i]} on two threads, {alone[i]} on one");
    }

    /// <summary>
    /// Strided views (attention's heads): A and B each row-major within longer rows or transposed, C's rows longer than n.
    /// Every product matches the reference, accumulates where asked, and leaves the floats between C's rows untouched.
    /// </summary>
    [Theory, MemberData(nameof(Cases))]
    public void MultiplyViews_matches_reference_for_every_layout_and_leaves_the_gaps_of_C(SimdPath path, int m, int k, int n)
    {
        var random = new Random(m * 31 + k * 37 + n);
        int ldc = n + 4;
        const float Gap = -7f;
        using var _ = KernelSettings.OnSimd(path);
        foreach (bool aTransposed in new[] { false, true })
            foreach (bool bTransposed in new[] { false, true })
            {
                // Row-major views within rows three (A) or five (B) floats longer; transposed ones store (k, m) and (n, k) likewise padded.
                var (aRow, aColumn) = aTransposed ? (1, m + 3) : (k + 3, 1);
                var (bRow, bColumn) = bTransposed ? (1, k + 5) : (n + 5, 1);
                var a = RandomMatrix(random, (aTransposed ? k : m) * (aTransposed ? m + 3 : k + 3));
                var b = RandomMatrix(random, (bTransposed ? n : k) * (bTransposed ? k + 5 : n + 5));
                var expected = Reference(m, k, n, (i, p) => a[i * aRow + p * aColumn], (p, j) => b[p * bRow + j * bColumn]);
                var start = RandomMatrix(random, m * ldc);
                for (int i = 0; i < m; i++) Array.Fill(start, Gap, i * ldc + n, 4);
                foreach (bool accumulate in new[] { false, true })
                {
                    var c = (float[])start.Clone();
                    Gemm.MultiplyViews(a, aRow, aColumn, b, bRow, bColumn, c, ldc, m, k, n, accumulate);
                    string layout = $"A {(aTransposed ? "transposed" : "row-major")}, B {(bTransposed ? "transposed" : "row-major")}, accumulate {accumulate}";
                    var product = new float[m * n];
                    for (int i = 0; i < m; i++)
                    {
                        for (int j = 0; j < n; j++) product[i * n + j] = c[i * ldc + j];
                        for (int j = n; j < ldc; j++) Assert.True(c[i * ldc + j] == Gap, $"{layout}: the gap after row {i} was written");
                    }
                    AssertClose(accumulate ? expected.Select((v, idx) => v + start[idx / n * ldc + idx % n]).ToArray() : expected, product, k);
                }
            }
    }

    [Fact]
    public void Views_reaching_past_their_operands_throw()
    {
        // A 2x3 view with rows 4 apart needs 4 + 3 = 7 floats; B 3x2 transposed with columns 3 apart needs 2 + 3 + 1 = 6; C 2x2 with ldc 3 needs 5.
        Gemm.MultiplyViews(new float[7], 4, 1, new float[6], 1, 3, new float[5], 3, 2, 3, 2);
        Assert.Throws<ArgumentException>(() => Gemm.MultiplyViews(new float[6], 4, 1, new float[6], 1, 3, new float[5], 3, 2, 3, 2));
        Assert.Throws<ArgumentException>(() => Gemm.MultiplyViews(new float[7], 4, 1, new float[5], 1, 3, new float[5], 3, 2, 3, 2));
        Assert.Throws<ArgumentException>(() => Gemm.MultiplyViews(new float[7], 4, 1, new float[6], 1, 3, new float[4], 3, 2, 3, 2));
        Assert.Throws<ArgumentException>(() => Gemm.MultiplyViews(new float[7], 4, 1, new float[6], 1, 3, new float[5], 1, 2, 3, 2));
    }

    [Fact]
    public void Gemm_never_writes_past_the_output()
    {
        var a = new float[3 * 5];
        var b = new float[5 * 17];
        Array.Fill(a, 1f);
        Array.Fill(b, 1f);
        var c = new float[3 * 17 + 4];
        Array.Fill(c, -9f);
        Gemm.Multiply(a, b, c, 3, 5, 17);
        Assert.All(c.Take(51), v => Assert.Equal(5f, v));
        Assert.All(c.Skip(51), v => Assert.Equal(-9f, v));
    }

    /// <summary>
    /// The transpose that packs a transposed B, a row-major A and a recurrent kernel: every block shape around the 16 x 16
    /// (AVX-512), 4 x 4 and 2 x 4 register blocks (six rows: a panel of A off AVX-512), on every path, with row strides longer
    /// than the rows, each value moved exactly, the gaps between target rows untouched.
    /// </summary>
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Transpose_moves_every_value_and_writes_nothing_else(SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        int[] sizes = [1, 2, 3, 4, 5, 6, 7, 10, 12, 15, 16, 17, 20, 31, 32, 33, 48];
        foreach (int rows in sizes)
            foreach (int columns in sizes)
            {
                int sourceStride = columns + 3, targetStride = rows + 2;
                var source = Enumerable.Range(0, rows * sourceStride).Select(i => (float)i).ToArray();
                var target = Enumerable.Repeat(-1f, columns * targetStride).ToArray();
                Gemm.Transpose(ref source[0], sourceStride, ref target[0], targetStride, rows, columns);
                for (int c = 0; c < columns; c++)
                    for (int r = 0; r < targetStride; r++)
                        if (target[c * targetStride + r] != (r < rows ? source[r * sourceStride + c] : -1f))
                            Assert.Fail($"{rows}x{columns} on {path}: target({c}, {r}) = {target[c * targetStride + r]}, expected {(r < rows ? source[r * sourceStride + c] : -1f)}");
            }
    }

    [Fact]
    public void Too_short_operands_throw_instead_of_reading_out_of_bounds()
    {
        Assert.Throws<ArgumentException>(() => Gemm.Multiply(new float[5], new float[6], new float[6], 2, 3, 2));
        Assert.Throws<ArgumentException>(() => Gemm.MultiplyTransposedB(new float[6], new float[6], new float[3], 2, 3, 2));
    }

    internal static float[] RandomMatrix(Random random, int length) => Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();

    private static double[] Reference(int m, int k, int n, Func<int, int, float> a, Func<int, int, float> b)
    {
        var c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++) sum += (double)a(i, p) * b(p, j);
                c[i * n + j] = sum;
            }
        return c;
    }

    /// <summary>Float32 sums of k products of values in [-1, 1]: error bounded by k·2⁻²⁴ in the worst case.</summary>
    private static void AssertClose(double[] expected, float[] actual, int k)
    {
        double tolerance = 1e-6 * (k + 1);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"element {i}: expected {expected[i]}, got {actual[i]}");
        }
    }
}
