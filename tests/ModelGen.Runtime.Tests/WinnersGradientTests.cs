using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// A convolution's kernel gradient taken at its max pooling's winners against the dense route it replaces (the pooling's
/// scattered gradient, then patchesᵀ · gradient) and against a sum in double straight from the definition.
/// </summary>
[Collection(KernelSettings.Name)]
public class WinnersGradientTests
{
    /// <summary>Input height, width and channels, kernel, filters, pool (0: global), pool strides, 'same' pooling, batch.</summary>
    public static readonly TheoryData<int, int, int, int, int, int, int, bool, int> Shapes = new()
    {
        { 28, 28, 1, 3, 32, 2, 2, false, 3 },   // the small CNN's conv1: patches of nine floats, the last vector masked
        { 13, 13, 32, 3, 64, 2, 2, false, 4 },  // its conv2: 288 floats, whole stretches of four vectors; 11x11 pools to 5x5
        { 9, 9, 5, 3, 7, 3, 2, false, 1 },      // overlapping windows: a pixel can win twice; one sample, one part
        { 8, 7, 3, 2, 20, 2, 2, true, 5 },      // 'same' pooling over an odd width; an odd batch splits 3 + 2
        { 6, 6, 50, 1, 3, 2, 1, false, 2 },     // a 1x1 kernel: one run of 50 floats, in uneven pieces (7 + 6 vectors) on the portable path
        { 30, 30, 8, 3, 5, 2, 2, false, 2 },    // 784 pixels of 72 floats: the pooled pixels a band at a time
        { 10, 10, 8, 3, 6, 0, 0, false, 3 },    // global max pooling (pool 0): one winner per filter and sample
        { 11, 12, 2, 2, 13, 2, 2, false, 3 },   // the narrow route: eight taps of nine, 13 filters (a vector and a padded one), the last column dropped
        { 9, 9, 1, 3, 5, 2, 2, true, 2 },       // nine-float patches under 'same' pooling of an odd size: not whole windows, so not the narrow route
    };

    public static IEnumerable<object[]> ShapesOnEveryPath => KernelSettings.OnEveryPath(Shapes);

    [Theory]
    [MemberData(nameof(ShapesOnEveryPath))]
    public void Kernel_gradient_at_the_winners_is_the_dense_gradient_through_the_pooling(int height, int width, int channels, int kernel, int filters,
        int poolSize, int poolStrides, bool same, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (window, pool, patches, winners, pooledGradient, image) = Case(height, width, channels, kernel, filters, poolSize, poolStrides, same, batch);
        int size = window.PatchSize;

        var actual = new float[size * filters];
        Convolution.KernelGradientAtWinners(pooledGradient, winners, image, actual, window, pool, filters, batch);
        AssertTheDenseRoute(actual, window, pool, patches, winners, pooledGradient, filters, batch);
    }

    /// <summary>Input height, width and channels, kernel, convolution strides and 'same', filters, batch: narrow patches under 2x2 poolings.</summary>
    public static readonly TheoryData<int, int, int, int, int, bool, int, int> NarrowChainShapes = new()
    {
        { 28, 28, 1, 3, 1, false, 32, 11 }, // the small CNN's conv1: blocks of five samples (halves of 6 and 5), regions read in place
        { 28, 28, 1, 3, 1, true, 16, 5 },   // the autoencoder's first layer: a padded copy of each block's images
        { 12, 11, 1, 3, 1, true, 13, 3 },   // 13 filters (a vector and a padded one); the pooling drops the last column
        { 8, 8, 1, 3, 1, true, 9, 3 },      // 'same' padding on every side: zeros where the border's windows hang over
        { 3, 3, 1, 3, 1, true, 5, 3 },      // an image narrower than a pooled pixel's four windows: one pooled pixel
        { 9, 9, 1, 3, 2, true, 5, 2 },      // strided, the masked route: 5x5 outputs, the pooling dropping the last row and column
        { 7, 7, 2, 2, 1, true, 13, 2 },     // eight taps over two channels, the masked route's table of offsets: padded at the bottom and right only
    };

    public static IEnumerable<object[]> NarrowChainShapesOnEveryPath => KernelSettings.OnEveryPath(NarrowChainShapes);

    /// <summary>
    /// The narrow route sums each tap in registers over a block of samples (<see cref="Convolution.NarrowBlock"/>), the
    /// pooled pixels in order, adds each block's sum to its half's, then the halves: against that chain written out, bit for
    /// bit, whether each filter picks its winner's taps (a 3x3 kernel at stride 1 on AVX2 and AVX-512) or masks the gradient
    /// to the windows it won.
    /// </summary>
    [Theory]
    [MemberData(nameof(NarrowChainShapesOnEveryPath))]
    public void The_narrow_route_sums_each_tap_over_the_winners_block_by_block(int height, int width, int channels, int kernel, int strides, bool same,
        int filters, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (window, pool, patches, winners, pooledGradient, image) = Case(height, width, channels, kernel, filters, 2, 2, false, batch, strides, same);
        Assert.True(Convolution.TakesNarrowRoute(window, pool));
        AssertTheChains(window, pool, patches, winners, pooledGradient, image, filters, batch, count => Convolution.NarrowBlock(window, pool.Positions, filters, count));
    }

    /// <summary>Input height, width and channels, kernel, convolution strides, 'same' and dilation, filters, pool size and strides (0: global), batch.</summary>
    public static readonly TheoryData<int, int, int, int, int, bool, int, int, int, int> WideShapes = new()
    {
        { 14, 14, 16, 3, 1, true, 1, 8, 2, 5 },   // the autoencoder's second layer: kernel rows of 48 floats; an odd batch splits 3 + 2
        { 13, 13, 32, 3, 1, false, 1, 64, 2, 3 }, // the small CNN's conv2: rows of 96, one stretch of three runs on AVX-512, runs cut in pieces on the others
        { 12, 12, 16, 5, 1, true, 1, 10, 2, 3 },  // a 5x5 kernel: five runs of 80 floats, stretches of three runs and of two (of one on AVX2)
        { 9, 9, 8, 3, 1, true, 1, 6, 2, 2 },      // rows of 24, read past on AVX-512 (into the padding's slack at the image's end); six filters
        { 11, 11, 5, 3, 1, true, 2, 7, 3, 2 },    // dilated: nine runs of a pixel's five channels under 3x3 pooling windows
        { 9, 9, 3, 3, 2, true, 1, 4, 0, 3 },      // a strided 'same' convolution under a global pooling
        { 6, 6, 1, 3, 1, true, 1, 16, 3, 1 },     // nine-float patches under a 3x3 pooling, not the narrow route's: runs of three floats
    };

    public static IEnumerable<object[]> WideShapesOnEveryPath => KernelSettings.OnEveryPath(WideShapes);

    /// <summary>
    /// The wide route reads each winner's taps from a padded copy of its image, run by run, and sums each tap over the
    /// winners as a product of the kept patch rows would: one chain of multiply-adds per tap and half of the batch, the
    /// pooled pixels in order, the halves added after. Against that chain in the test, bit for bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(WideShapesOnEveryPath))]
    public void The_wide_route_sums_each_tap_over_the_winners_in_order_from_the_input(int height, int width, int channels, int kernel, int strides, bool same,
        int dilation, int filters, int poolSize, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (window, pool, patches, winners, pooledGradient, image) = Case(height, width, channels, kernel, filters, poolSize, poolSize, false, batch, strides, same, dilation);
        Assert.False(Convolution.TakesNarrowRoute(window, pool));
        AssertTheChains(window, pool, patches, winners, pooledGradient, image, filters, batch, count => count);
    }

    /// <summary>
    /// A stretch of the wide route sums at most 24 vectors in registers on AVX-512 and 12 on the others, at most three runs of
    /// eight vectors, in the fewest stretches, a run's vectors evened out between them.
    /// </summary>
    [Theory]
    [InlineData(3, 6, 16, 3, 6)]   // the small CNN's conv2 on AVX-512: its whole patch, 18 sums
    [InlineData(3, 12, 8, 3, 4)]   // the same on AVX2: three stretches of three runs' four vectors
    [InlineData(3, 24, 4, 3, 4)]   // and on 128-bit vectors: six
    [InlineData(5, 5, 16, 3, 5)]   // a 5x5 kernel: three runs, then two
    [InlineData(1, 13, 4, 1, 7)]   // one run of 13 vectors: 7 + 6, not 8 + 5
    [InlineData(9, 1, 16, 3, 1)]   // a dilated window's runs of one vector each
    [InlineData(3, 6, 8, 2, 6)]    // three runs of six on AVX2: two runs, then one (three runs of four would take two stretches too)
    public void A_stretch_of_the_wide_route_fits_the_registers_in_the_fewest_stretches(int runs, int perRun, int width, int expectedRuns, int expectedVectors)
    {
        Assert.Equal((expectedRuns, expectedVectors), Convolution.StretchOf(runs, perRun, width));
    }

    /// <summary>
    /// The kernel gradient at the winners against its chains written out, bit for bit: per tap and filter, a chain of
    /// multiply-adds over a block of samples (<paramref name="blockOf"/> a half's count), their pooled pixels in order; the
    /// blocks' sums added to their half's, then the halves.
    /// </summary>
    private static void AssertTheChains(Window window, Window pool, float[] patches, int[] winners, float[] pooledGradient, float[] image,
        int filters, int batch, Func<int, int> blockOf)
    {
        int size = window.PatchSize, parts = Math.Min(batch, 2);
        var expected = new float[size * filters];
        for (int i = 0; i < size; i++)
            for (int c = 0; c < filters; c++)
            {
                float total = 0f;
                for (int part = 0; part < parts; part++)
                {
                    var (first, count) = Helper.PartOf(part, parts, batch);
                    int block = blockOf(count);
                    float partial = 0f;
                    for (int from = first; from < first + count; from += block)
                    {
                        float sum = 0f;
                        for (int sample = from; sample < Math.Min(from + block, first + count); sample++)
                            for (int o = 0; o < pool.Positions; o++)
                            {
                                int at = (sample * pool.Positions + o) * filters + c;
                                sum = MathF.FusedMultiplyAdd(pooledGradient[at], patches[(sample * window.Positions + winners[at] / filters) * size + i], sum);
                            }
                        partial += sum;
                    }
                    total += partial;
                }
                expected[i * filters + c] = total;
            }
        var actual = new float[size * filters];
        Convolution.KernelGradientAtWinners(pooledGradient, winners, image, actual, window, pool, filters, batch);
        Assert.Equal(Bits(expected), Bits(actual));
    }

    /// <summary>A kernel gradient at the winners against the dense route and the definition, in double.</summary>
    private static void AssertTheDenseRoute(float[] actual, in Window window, in Window pool, float[] patches, int[] winners, float[] pooledGradient, int filters, int batch)
    {
        int size = window.PatchSize;
        // The route it replaces: the gradient scattered to the winners, then the dense product over every position.
        var scattered = new float[batch * window.Positions * filters];
        Pooling.MaxBackward(pooledGradient, winners, scattered, pool, batch, accumulate: false);
        var dense = new float[size * filters];
        Gemm.MultiplyTransposedA(patches, scattered, dense, size, batch * window.Positions, filters);

        // And the definition, in double: each pooled gradient times its winner's patch.
        var exact = new double[size * filters];
        for (int sample = 0; sample < batch; sample++)
            for (int o = 0; o < pool.Positions; o++)
                for (int c = 0; c < filters; c++)
                {
                    int at = (sample * pool.Positions + o) * filters + c, position = winners[at] / filters;
                    for (int i = 0; i < size; i++) exact[i * filters + c] += (double)pooledGradient[at] * patches[(sample * window.Positions + position) * size + i];
                }

        AssertNearExact(actual, dense, exact);
    }

    [Theory]
    [InlineData(13, 32, 64)] // 288-float patches: stretches of the patch rows
    [InlineData(28, 1, 32)]  // nine-float patches: the narrow route
    public void Accumulates_onto_the_gradient_and_gives_the_same_bits_on_one_core_or_two(int side, int channels, int filters)
    {
        var (window, pool, _, winners, pooledGradient, image) = Case(side, side, channels, 3, filters, 2, 2, false, 6);
        int size = window.PatchSize * filters;
        var alone = new float[size];
        KernelSettings.OnThreads(1, () => Convolution.KernelGradientAtWinners(pooledGradient, winners, image, alone, window, pool, filters, 6));
        var shared = new float[size];
        KernelSettings.OnThreads(2, () => Convolution.KernelGradientAtWinners(pooledGradient, winners, image, shared, window, pool, filters, 6));
        Assert.Equal(alone, shared);

        var earlier = Enumerable.Range(0, size).Select(i => (float)Math.Sin(i)).ToArray();
        var added = (float[])earlier.Clone();
        Convolution.KernelGradientAtWinners(pooledGradient, winners, image, added, window, pool, filters, 6, accumulate: true);
        for (int i = 0; i < size; i++) Assert.Equal(earlier[i] + alone[i], added[i], 1e-5f);
    }

    /// <summary>Input height, width and channels, kernel, convolution strides and 'same', filters, pool (0: global), pool strides, batch.</summary>
    public static readonly TheoryData<int, int, int, int, int, bool, int, int, int, int> InputShapes = new()
    {
        { 10, 10, 8, 3, 1, false, 6, 0, 0, 3 },   // global max pooling: one winner per filter and sample
        { 9, 9, 3, 3, 2, true, 5, 0, 0, 2 },      // a strided 'same' convolution: cells in the padding add nothing
        { 13, 13, 32, 3, 1, false, 64, 2, 2, 4 }, // the small CNN's conv2 under its 2x2 pooling
        { 9, 9, 5, 3, 1, true, 7, 3, 2, 1 },      // overlapping pooling windows: a pixel can win twice
        { 6, 6, 50, 1, 1, false, 3, 2, 1, 5 },    // a 1x1 kernel of 50 channels; an odd batch splits 3 + 2
    };

    [Theory]
    [MemberData(nameof(InputShapes))]
    public void Input_gradient_at_the_winners_is_the_transposed_convolution_of_the_scattered_gradient(int height, int width, int channels, int kernel,
        int convStrides, bool convSame, int filters, int poolSize, int poolStrides, int batch)
    {
        var (window, pool, _, winners, pooledGradient, _) = Case(height, width, channels, kernel, filters, poolSize, poolStrides, false, batch, convStrides, convSame);
        var random = new Random(filters);
        var weights = Enumerable.Range(0, window.PatchSize * filters).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        int imageFloats = height * width * channels;

        var actual = new float[batch * imageFloats];
        Convolution.InputGradientAtWinners(pooledGradient, winners, weights, actual, window, pool, filters, batch, accumulate: false);

        // The route it replaces: the gradient scattered to the winners, then the transposed convolution over every position.
        var scattered = new float[batch * window.Positions * filters];
        Pooling.MaxBackward(pooledGradient, winners, scattered, pool, batch, accumulate: false);
        var dense = new float[batch * imageFloats];
        Convolution.Transposed(scattered, weights, new float[Convolution.TransposedScratch(window, filters, batch)], dense, window, filters, batch, accumulate: false);

        // And the definition, in double: each pooled gradient times its filter's kernel, onto the pixels under its winner's window.
        var exact = new double[batch * imageFloats];
        for (int sample = 0; sample < batch; sample++)
            for (int at = sample * pool.Positions * filters; at < (sample + 1) * pool.Positions * filters; at++)
            {
                int c = at % filters, position = winners[at] / filters, oy = position / window.OutputWidth, ox = position % window.OutputWidth;
                for (int ky = 0; ky < kernel; ky++)
                    for (int kx = 0; kx < kernel; kx++)
                    {
                        int y = oy * convStrides + ky - window.PadTop, x = ox * convStrides + kx - window.PadLeft;
                        if (y < 0 || y >= height || x < 0 || x >= width) continue;
                        for (int ci = 0; ci < channels; ci++)
                            exact[sample * imageFloats + (y * width + x) * channels + ci] += (double)pooledGradient[at] * weights[((ky * kernel + kx) * channels + ci) * filters + c];
                    }
            }

        AssertNearExact(actual, dense, exact);
    }

    [Fact]
    public void The_input_gradient_accumulates_and_gives_the_same_bits_on_one_core_or_two()
    {
        var (window, pool, _, winners, pooledGradient, _) = Case(10, 10, 8, 3, 6, 0, 0, false, 5);
        var weights = Enumerable.Range(0, window.PatchSize * 6).Select(i => (float)Math.Cos(i)).ToArray();
        int floats = 5 * 10 * 10 * 8;
        var alone = new float[floats];
        KernelSettings.OnThreads(1, () => Convolution.InputGradientAtWinners(pooledGradient, winners, weights, alone, window, pool, 6, 5, accumulate: false));
        var shared = Enumerable.Repeat(float.NaN, floats).ToArray(); // overwritten, not added to
        KernelSettings.OnThreads(2, () => Convolution.InputGradientAtWinners(pooledGradient, winners, weights, shared, window, pool, 6, 5, accumulate: false));
        Assert.Equal(alone, shared);

        var earlier = Enumerable.Range(0, floats).Select(i => (float)Math.Sin(i)).ToArray();
        var added = (float[])earlier.Clone();
        Convolution.InputGradientAtWinners(pooledGradient, winners, weights, added, window, pool, 6, 5, accumulate: true);
        for (int i = 0; i < floats; i++) Assert.Equal(earlier[i] + alone[i], added[i], 1e-5f);

        var wrong = (int[])winners.Clone();
        wrong[7] = -1;
        var error = Assert.Throws<ArgumentException>(() => Convolution.InputGradientAtWinners(pooledGradient, wrong, weights, added, window, pool, 6, 5, accumulate: false));
        Assert.Contains("winner -1 of pooled pixel 0, filter 1 ", error.Message);
    }

    /// <summary>Input height, width and channels, kernel, convolution strides and 'same', filters, pool, pool strides, batch.</summary>
    public static readonly TheoryData<int, int, int, int, int, bool, int, int, int, int> ScatteredShapes = new()
    {
        { 13, 13, 32, 3, 1, false, 64, 2, 2, 4 },  // the small CNN's conv2: 288-float patches, three stretches on AVX2 and AVX-512 (256-bit there)
        { 11, 11, 16, 3, 1, false, 13, 2, 2, 5 },  // 144 floats: a stretch and an overlapping one on AVX2; 13 filters, eight compared at once and five alone ('valid': unscattered, AVX2 transposes 'same' directly)
        { 9, 9, 16, 3, 2, true, 8, 3, 2, 3 },      // a strided 'same' convolution under overlapping pooling windows
        { 6, 6, 50, 1, 1, false, 3, 2, 2, 2 },     // 50 floats: narrower than a stretch but on the portable path (48 and an overlapping 48)
    };

    public static IEnumerable<object[]> ScatteredShapesOnEveryPath => KernelSettings.OnEveryPath(ScatteredShapes);

    [Theory]
    [MemberData(nameof(ScatteredShapesOnEveryPath))]
    public void A_scattered_gradients_transposed_convolution_skips_its_zeros_with_the_dense_routes_bits(int height, int width, int channels, int kernel,
        int convStrides, bool convSame, int filters, int poolSize, int poolStrides, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (window, pool, _, winners, pooledGradient, _) = Case(height, width, channels, kernel, filters, poolSize, poolStrides, false, batch, convStrides, convSame);
        var random = new Random(channels);
        var weights = Enumerable.Range(0, window.PatchSize * filters).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        // A ReLU's derivative zeroes about half the pooled gradient (some to -0, which is skipped as +0 is); a NaN is kept.
        for (int i = 0; i < pooledGradient.Length; i++) pooledGradient[i] = random.Next(2) == 0 ? 0f * -Math.Sign(pooledGradient[i]) : pooledGradient[i];
        pooledGradient[pooledGradient.Length / 2] = float.NaN;
        var scattered = new float[batch * window.Positions * filters];
        Pooling.MaxBackward(pooledGradient, winners, scattered, pool, batch, accumulate: false);
        var scratch = new float[Convolution.TransposedScratch(window, filters, batch, scattered: true)]; // the dense route's too
        int floats = batch * height * width * channels;
        var earlier = Enumerable.Range(0, floats).Select(i => (float)Math.Sin(i)).ToArray();

        foreach (bool accumulate in new[] { false, true })
        {
            var dense = (float[])earlier.Clone();
            Convolution.Transposed(scattered, weights, scratch, dense, window, filters, batch, accumulate);
            Assert.Contains(dense, float.IsNaN);
            Assert.Contains(dense, v => v != 0 && !float.IsNaN(v));
            foreach (int threads in new[] { 1, 2 })
            {
                var skipped = (float[])earlier.Clone();
                KernelSettings.OnThreads(threads, () => Convolution.Transposed(scattered, weights, scratch, skipped, window, filters, batch, accumulate, scattered: true));
                Assert.Equal(Bits(dense), Bits(skipped));
            }
        }
    }

    /// <summary>Patch floats, the vector width the scattered route sums them on with AVX-512.</summary>
    [Theory]
    [InlineData(288, 8)]  // the small CNN's conv2: three stretches of 96 floats, not two of 192 overlapping by 96
    [InlineData(216, 8)]  // 24 channels: 288 floats summed, not 384
    [InlineData(576, 16)] // 64 channels: three stretches of 192, no overlap either way
    [InlineData(192, 16)] // one stretch
    public void On_AVX512_the_scattered_route_takes_the_vectors_whose_stretches_sum_fewer_floats(int size, int width)
    {
        using var _ = KernelSettings.OnSimd(SimdPath.Avx512);
        Assert.Equal(width, Convolution.ScatteredWidth(size));
    }

    private static int[] Bits(float[] values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();

    [Fact]
    public void A_winner_outside_its_filter_is_rejected()
    {
        var (window, pool, _, winners, pooledGradient, image) = Case(9, 9, 2, 3, 4, 2, 2, false, 1);
        var gradient = new float[window.PatchSize * 4];
        // Winner 5 belongs to filter 1: a pixel of the next filter, pixel -1 of its own, the pixel after the image's last.
        foreach (int bad in new[] { winners[5] + 1, -3, window.Positions * 4 + 1 })
        {
            var wrong = (int[])winners.Clone();
            wrong[5] = bad;
            var error = Assert.Throws<ArgumentException>(() => Convolution.KernelGradientAtWinners(pooledGradient, wrong, image, gradient, window, pool, 4, 1));
            Assert.Contains($"winner {bad} of pooled pixel 1, filter 1 ", error.Message);
        }
        Assert.Throws<ArgumentException>(() => Convolution.KernelGradientAtWinners(pooledGradient, winners, image.AsSpan(1).ToArray(), gradient, window, pool, 4, 1));
    }

    /// <summary>Both routes within 1e-5 (relative, past 1) of the sum in double.</summary>
    private static void AssertNearExact(float[] actual, float[] dense, double[] exact)
    {
        for (int i = 0; i < actual.Length; i++)
        {
            double bound = 1e-5 * (1 + Math.Abs(exact[i]));
            Assert.True(Math.Abs(actual[i] - exact[i]) <= bound, $"[{i}]: {actual[i]} against {exact[i]} in double");
            Assert.True(Math.Abs(dense[i] - exact[i]) <= bound, $"[{i}]: the dense route's {dense[i]} against {exact[i]}");
        }
    }

    /// <summary>A convolution's input and kept patches, its pooling's winners over a random output (distinct values) and a pooled gradient.</summary>
    private static (Window Window, Window Pool, float[] Patches, int[] Winners, float[] PooledGradient, float[] Image) Case(int height, int width, int channels, int kernel, int filters,
        int poolSize, int poolStrides, bool same, int batch, int convStrides = 1, bool convSame = false, int dilation = 1)
    {
        var random = new Random(height * 100 + filters);
        var window = new Window(height, width, channels, kernel, kernel, convStrides, convStrides, convSame, dilation);
        var pool = poolSize == 0 ? new Window(window.OutputHeight, window.OutputWidth, filters, window.OutputHeight, window.OutputWidth, 1, 1, false)
            : new Window(window.OutputHeight, window.OutputWidth, filters, poolSize, poolSize, poolStrides, poolStrides, same);
        var image = Enumerable.Range(0, batch * height * width * channels).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        var patches = new float[batch * window.Positions * window.PatchSize];
        Convolution.Im2Col(image, patches, window, batch);
        var convolved = Enumerable.Range(0, batch * window.Positions * filters).Select(i => (float)i).OrderBy(_ => random.Next()).ToArray();
        var pooled = new float[batch * pool.Positions * filters];
        var winners = new int[pooled.Length];
        Pooling.MaxForward(convolved, pooled, winners, pool, batch);
        var pooledGradient = Enumerable.Range(0, pooled.Length).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        return (window, pool, patches, winners, pooledGradient, image);
    }
}
