using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// Two dense layers in one call (Gemm.MultiplyTwice): against a double-precision reference on every SIMD path; the first
/// layer's output exactly what Multiply computes; the second the same bit for bit on one thread or two; and above a few
/// rows, or for a first layer too small to share, exactly two Multiply calls.
/// </summary>
[Collection(KernelSettings.Name)]
public class GemmTwiceTests
{
    public static TheoryData<SimdPath, int, int, int, int, int> Cases()
    {
        var data = new TheoryData<SimdPath, int, int, int, int, int>();
        var shapes = new (int M, int K, int N1, int N2)[]
        {
            (1, 784, 256, 128), // the MLP's first two layers at batch 1: two slices of 128 columns
            (1, 1600, 128, 10), // the CNN's dense layers: two slices of 64, a partial second-layer vector
            (1, 256, 256, 10),  // a light first layer still worth sharing (65,536 multiply-adds): two slices of 128
            (3, 500, 200, 37),  // three rows; slices of 64, the last one 8 columns wide
            (2, 300, 1000, 65), // eight slices, the last one partial
            (1, 64, 64, 64),    // too small to share: two Multiply calls
            (5, 784, 256, 128), // streamed rows end at four: two Multiply calls
            (64, 64, 128, 64),  // a Transformer's feed-forward pair over 64 tokens: two parts of 32 rows, both layers each
        };
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            // Offsets of 0 and 3 floats: B1 and B2 on a vector boundary and off it.
            foreach (var (m, k, n1, n2) in shapes)
                foreach (int offset in new[] { 0, 3 })
                    data.Add(path, m, k, n1, n2, offset);
        }
        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Matches_reference_and_keeps_the_first_layer_exact(SimdPath path, int m, int k, int n1, int n2, int offset)
    {
        var random = new Random(m + k + n1 + n2 + offset);
        var a = GemmTests.RandomMatrix(random, m * k);
        var b1Storage = GemmTests.RandomMatrix(random, offset + k * n1);
        var b2Storage = GemmTests.RandomMatrix(random, offset + n1 * n2);
        var bias1 = GemmTests.RandomMatrix(random, n1);
        var bias2 = GemmTests.RandomMatrix(random, n2);
        ReadOnlySpan<float> first = b1Storage.AsSpan(offset), second = b2Storage.AsSpan(offset);

        // h = relu(a·b1 + bias1) in double; c = h·b2 + bias2 from the float h the kernel keeps, so only C's own sum is judged.
        var expectedH = new double[m * n1];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n1; j++)
            {
                double sum = bias1[j];
                for (int p = 0; p < k; p++) sum += (double)a[i * k + p] * first[p * n1 + j];
                expectedH[i * n1 + j] = Math.Max(sum, 0);
            }

        using (KernelSettings.OnSimd(path))
        {
            var h = new float[m * n1];
            var c = new float[m * n2];
            Gemm.MultiplyTwice(a, first, h, second, c, m, k, n1, n2, bias1, relu1: true, bias2, relu2: false);

            var alone = new float[m * n1];
            Gemm.Multiply(a, first, alone, m, k, n1, bias1, relu: true);
            Assert.Equal(alone, h);
            for (int i = 0; i < h.Length; i++) Assert.True(Math.Abs(expectedH[i] - h[i]) <= 1e-6 * (k + 1), $"h[{i}]: expected {expectedH[i]}, got {h[i]}");

            for (int i = 0; i < m; i++)
                for (int j = 0; j < n2; j++)
                {
                    double expected = bias2[j], bound = Math.Abs(bias2[j]);
                    for (int p = 0; p < n1; p++)
                    {
                        double term = (double)h[i * n1 + p] * second[p * n2 + j];
                        expected += term;
                        bound += Math.Abs(term);
                    }
                    // Float32 sums of n1 + 1 terms: each addition rounds by at most 2^-24 of the running magnitude.
                    double tolerance = bound * (n1 + 2) * Math.Pow(2, -24);
                    Assert.True(Math.Abs(expected - c[i * n2 + j]) <= tolerance, $"c[{i},{j}]: expected {expected}, got {c[i * n2 + j]}");
                }
        }
    }

    [Theory]
    [InlineData(1, 784, 256, 128)]
    [InlineData(3, 500, 200, 37)]
    [InlineData(1, 1600, 128, 10)]
    [InlineData(1, 256, 256, 10)]
    public void Shared_pair_is_the_same_on_one_thread_or_two(int m, int k, int n1, int n2)
    {
        var (a, b1, b2, bias1, bias2) = Operands(seed: n1 * n2, m, k, n1, n2);
        float[] Run(int threads)
        {
            var h = new float[m * n1];
            var c = new float[m * n2];
            KernelSettings.OnThreads(threads, () =>
            {
                // Repeated: the helper may take part in some calls and not in others, and every call must give the same.
                for (int repeat = 0; repeat < 20; repeat++) Gemm.MultiplyTwice(a, b1, h, b2, c, m, k, n1, n2, bias1, relu1: true, bias2, relu2: true);
            });
            return h.Concat(c).ToArray();
        }
        Assert.Equal(Run(1), Run(2));
    }

    [Theory]
    [InlineData(1, 784, 256, 128)] // the MLP's first two layers: slices of 128 columns, four tiles each
    [InlineData(1, 1600, 128, 10)] // slices of 64 columns, two tiles each
    public void At_batch_one_the_first_layer_streams_its_panels(int m, int k, int n1, int n2)
    {
        // Panels packed from other values than B1's show which of the two the slices read: H is then Multiply's from those.
        var (a, b1, b2, bias1, bias2) = Operands(seed: k + n1, m, k, n1, n2);
        var (_, other1, _, _, _) = Operands(seed: k + n1 + 1, m, k, n1, n2);
        var packed1 = Gemm.Pack(other1, k, n1);
        var expected = new float[m * n1];
        Gemm.Multiply(a, other1, expected, m, k, n1, bias1, relu: true);
        foreach (int threads in new[] { 1, 2 })
        {
            var h = new float[m * n1];
            var c = new float[m * n2];
            KernelSettings.OnThreads(threads, () => Gemm.MultiplyTwice(a, b1, h, b2, c, m, k, n1, n2, bias1, relu1: true, bias2, packedB1: packed1));
            Assert.True(expected.SequenceEqual(h), $"{threads} thread(s): H is not what the panels give");
        }
    }

    [Theory]
    [InlineData(4, 784, 256, 128)] // four rows go through the packed path
    [InlineData(1, 100, 256, 16)]  // a first layer below the sharing threshold
    [InlineData(1, 2000, 100, 16)] // too narrow for two slices
    public void Outside_the_shared_case_it_is_two_multiply_calls(int m, int k, int n1, int n2)
    {
        var (a, b1, b2, _, bias2) = Operands(seed: m * k, m, k, n1, n2);
        var h = new float[m * n1];
        var c = new float[m * n2];
        Gemm.MultiplyTwice(a, b1, h, b2, c, m, k, n1, n2, relu1: true, bias2: bias2);
        var h2 = new float[m * n1];
        var c2 = new float[m * n2];
        Gemm.Multiply(a, b1, h2, m, k, n1, relu: true);
        Gemm.Multiply(h2, b2, c2, m, n1, n2, bias2);
        Assert.Equal(h2, h);
        Assert.Equal(c2, c);
    }

    /// <summary>
    /// Many rows against small weights go in two parts of the rows, each part through both layers: H and C are what two
    /// Multiply calls compute, bit for bit, on every path, on one thread or two, with the kernels packed ahead or not; parts
    /// given panels read them (panels packed from other values show it).
    /// </summary>
    [Theory]
    [InlineData(64, 64, 128, 64, true)]   // a Transformer's feed-forward pair at batch 1
    [InlineData(2048, 64, 128, 64, false)] // the same at batch 32
    [InlineData(33, 100, 200, 8, true)]   // parts of 17 and 16 rows; a second layer eight wide, on 256-bit vectors on AVX-512
    [InlineData(128, 64, 64, 10, false)]  // a classifier after it, its tiles a column at a time on AVX-512
    [InlineData(40, 256, 200, 56, true)]  // weights of 62,400 floats, near the most that are cut by rows
    public void Many_rows_against_small_weights_are_two_multiply_calls_bit_for_bit(int m, int k, int n1, int n2, bool relu2)
    {
        var (a, b1, b2, bias1, bias2) = Operands(seed: m + n2, m, k, n1, n2);
        var (_, other1, other2, _, _) = Operands(seed: m + n2 + 1, m, k, n1, n2);
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (bool packed in new[] { false, true })
            {
                // Packed from other values, the panels must be what the parts read: the expected result is the others'.
                var (e1, e2) = packed ? (other1, other2) : (b1, b2);
                var expectedH = new float[m * n1];
                var expectedC = new float[m * n2];
                Gemm.Multiply(a, e1, expectedH, m, k, n1, bias1, relu: true);
                Gemm.Multiply(expectedH, e2, expectedC, m, n1, n2, bias2, relu: relu2);
                var packed1 = packed ? Gemm.Pack(other1, k, n1) : null;
                var packed2 = packed ? Gemm.Pack(other2, n1, n2) : null;
                foreach (int threads in new[] { 1, 2 })
                {
                    var h = new float[m * n1];
                    var c = new float[m * n2];
                    KernelSettings.OnThreads(threads, () =>
                        Gemm.MultiplyTwice(a, b1, h, b2, c, m, k, n1, n2, bias1, relu1: true, bias2, relu2, packedB1: packed1, packedB2: packed2));
                    Assert.True(expectedH.SequenceEqual(h), $"{path}, {threads} thread(s), packed {packed}: H differs from Multiply's");
                    Assert.True(expectedC.SequenceEqual(c), $"{path}, {threads} thread(s), packed {packed}: C differs from Multiply's");
                }
            }
        }
    }

    /// <summary>A, B1, B2 and both biases, uniform in [-1, 1].</summary>
    private static (float[] A, float[] B1, float[] B2, float[] Bias1, float[] Bias2) Operands(int seed, int m, int k, int n1, int n2)
    {
        var random = new Random(seed);
        return (GemmTests.RandomMatrix(random, m * k), GemmTests.RandomMatrix(random, k * n1), GemmTests.RandomMatrix(random, n1 * n2),
            GemmTests.RandomMatrix(random, n1), GemmTests.RandomMatrix(random, n2));
    }

    [Fact]
    public void Short_operands_are_rejected_before_anything_is_written()
    {
        // Batch 1 (shared) and batch 4 (two Multiply calls): a short B2 is found before H is written.
        foreach (int m in new[] { 1, 4 })
        {
            var h = new float[m * 256];
            var c = Enumerable.Repeat(7f, m * 128).ToArray();
            Assert.Throws<ArgumentException>(() => Gemm.MultiplyTwice(new float[m * 784], new float[784 * 256], h, new float[256 * 127], c, m, 784, 256, 128));
            Assert.All(h, v => Assert.Equal(0f, v));
            Assert.All(c, v => Assert.Equal(7f, v));
        }
    }
}
