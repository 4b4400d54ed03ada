using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>Max and average pooling against direct definitions, with enough channels for whole vectors plus a remainder on every SIMD path.</summary>
[Collection(KernelSettings.Name)]
public class PoolingTests
{
    /// <summary>Height, width, channels, pool, strides, 'same', batch: whole vectors of channels and remainders on every SIMD width.</summary>
    public static readonly TheoryData<int, int, int, int, int, bool, int> Shapes = new()
    {
        { 5, 6, 37, 2, 2, false, 2 },
        { 7, 7, 19, 3, 2, true, 2 },
        { 4, 4, 64, 2, 2, false, 2 },
        { 3, 5, 3, 2, 1, true, 2 },
        { 6, 8, 53, 2, 2, false, 2 },    // whole 2x2 windows: three vectors of 16, then 5 channels
        { 5, 5, 24, 2, 2, true, 2 },     // 'same': the last row and column of windows are cut to fit
        { 26, 26, 32, 2, 2, false, 1 },  // the CNN's first pool at batch 1: output rows in two halves
        { 11, 11, 64, 2, 2, false, 3 },  // parts that begin and end inside an image
    };

    /// <summary>Every shape on every SIMD path: AVX-512 takes 2x2 windows sixteen channels at a time.</summary>
    public static IEnumerable<object[]> ShapesOnEveryPath => KernelSettings.OnEveryPath(Shapes);

    [Theory]
    [MemberData(nameof(ShapesOnEveryPath))]
    public void Max_pooling_takes_each_window_maximum_and_routes_the_gradient_to_it(int height, int width, int channels, int pool, int strides, bool same, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var window = new Window(height, width, channels, pool, pool, strides, strides, same);
        var random = new Random(channels);
        // Distinct values, so each window has one maximum.
        var input = Enumerable.Range(0, batch * height * width * channels).Select(i => (float)i).OrderBy(_ => random.Next()).ToArray();
        var output = new float[batch * window.Positions * channels];
        var winners = new int[output.Length];
        Pooling.MaxForward(input, output, winners, window, batch);

        var gradient = Enumerable.Range(0, output.Length).Select(_ => (float)random.NextDouble()).ToArray();
        var inputGradient = new float[input.Length];
        Pooling.MaxBackward(gradient, winners, inputGradient, window, batch, accumulate: false);
        var expectedGradient = new float[input.Length];

        foreach (var (_, o, at) in Outputs(input, window, batch))
        {
            Assert.Equal(input[at], output[o]);
            expectedGradient[at] += gradient[o];
        }
        Assert.Equal(expectedGradient, inputGradient);
    }

    /// <summary>
    /// Ties, signed zeros and NaNs: a pixel wins only when strictly greater than every pixel before it in the window's row-major
    /// order, so the first of equal maxima wins, +0 does not replace -0, a NaN first in its window stays and a later one never
    /// wins. The same on the unrolled 2x2 path (16 channels at a time), the vector loop and the scalar remainder.
    /// </summary>
    [Theory]
    [InlineData(6, 8, 53, 2, 2, false, SimdPath.Avx512)]   // whole 2x2 windows: three vectors of 16, then 5 channels
    [InlineData(6, 8, 53, 2, 2, false, SimdPath.Avx2)]
    [InlineData(5, 5, 24, 2, 2, true, SimdPath.Avx512)]    // 'same': the last row and column of windows are cut to fit
    [InlineData(5, 5, 24, 2, 2, true, SimdPath.Avx2)]
    [InlineData(7, 7, 16, 3, 2, false, SimdPath.Avx2)]
    public void Max_pooling_takes_the_first_strictly_greater_pixel(int height, int width, int channels, int pool, int strides, bool same, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        const int batch = 2;
        var window = new Window(height, width, channels, pool, pool, strides, strides, same);
        var random = new Random(channels + pool);
        float[] values = [1f, 1f, 2f, -0f, 0f, float.NaN];
        var input = Enumerable.Range(0, batch * height * width * channels).Select(_ => values[random.Next(values.Length)]).ToArray();
        var output = new float[batch * window.Positions * channels];
        var winners = new int[output.Length];
        Pooling.MaxForward(input, output, winners, window, batch);
        int imageFloats = height * width * channels;
        foreach (var (n, o, at) in Outputs(input, window, batch))
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(input[at]), BitConverter.SingleToInt32Bits(output[o]));
            Assert.Equal(at - n * imageFloats, winners[o]);
        }
    }

    /// <summary>
    /// Every output (its sample, its index) with its winner by definition (an index into the batch's input): the window's first
    /// pixel in row-major order that is strictly greater than every pixel before it.
    /// </summary>
    private static IEnumerable<(int Sample, int Output, int Winner)> Outputs(float[] input, Window window, int batch)
    {
        for (int n = 0, o = 0; n < batch; n++)
            for (int oy = 0; oy < window.OutputHeight; oy++)
                for (int ox = 0; ox < window.OutputWidth; ox++)
                    for (int c = 0; c < window.Channels; c++, o++)
                    {
                        int at = -1;
                        for (int ky = 0; ky < window.KernelHeight; ky++)
                            for (int kx = 0; kx < window.KernelWidth; kx++)
                            {
                                int y = oy * window.StrideHeight + ky - window.PadTop, x = ox * window.StrideWidth + kx - window.PadLeft;
                                if (y < 0 || y >= window.Height || x < 0 || x >= window.Width) continue;
                                int index = ((n * window.Height + y) * window.Width + x) * window.Channels + c;
                                if (at < 0 || input[index] > input[at]) at = index;
                            }
                        yield return (n, o, at);
                    }
    }

    /// <summary>
    /// Inference leaves the winners out: the same maxima bit for bit (ties, signed zeros and NaNs included) on the unrolled 2x2
    /// path, the vector loop and the scalar remainder, with no winners buffer at all; a buffer passed anyway is left as it was.
    /// </summary>
    [Theory]
    [MemberData(nameof(ShapesOnEveryPath))]
    public void Max_pooling_without_winners_writes_the_same_maxima(int height, int width, int channels, int pool, int strides, bool same, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var window = new Window(height, width, channels, pool, pool, strides, strides, same);
        var random = new Random(channels * 7 + pool);
        float[] values = [1f, 1f, 2f, -0f, 0f, float.NaN, -3.5f, 7.25f];
        var input = Enumerable.Range(0, batch * height * width * channels).Select(_ => values[random.Next(values.Length)] * random.Next(1, 4)).ToArray();
        var kept = new float[batch * window.Positions * channels];
        Pooling.MaxForward(input, kept, new int[kept.Length], window, batch);

        var dropped = new float[kept.Length];
        Pooling.MaxForward(input, dropped, Span<int>.Empty, window, batch, keepWinners: false);
        Assert.Equal(kept.Select(BitConverter.SingleToInt32Bits), dropped.Select(BitConverter.SingleToInt32Bits));

        var untouched = Enumerable.Repeat(-1, kept.Length).ToArray();
        Pooling.MaxForward(input, dropped, untouched, window, batch, keepWinners: false);
        Assert.All(untouched, winner => Assert.Equal(-1, winner));
    }

    /// <summary>
    /// Average pooling against a scalar loop in its stated order, bit for bit, on one core and on two: each window's pixels
    /// inside the image added in (ky, kx) order from zero, then divided by their count, as TensorFlow's AvgPool and
    /// reduce_mean divide (times the reciprocal differs in the last bit for some sums over 3, 6, 9 or 35 pixels). Partial
    /// 'same' windows, strides, and windows over the whole image; channels under, at and past
    /// whole vectors and past four of them.
    /// </summary>
    public static IEnumerable<object[]> AverageShapes() => KernelSettings.OnEveryPath(new[]
    {
        new object[] { 7, 7, 19, 3, 3, 2, true, 2 },     // 3x3 windows, 9, 6 or 4 pixels inside
        new object[] { 5, 5, 24, 2, 2, 2, true, 2 },     // the last row and column of windows cut to fit
        new object[] { 6, 8, 53, 3, 2, 1, false, 3 },
        new object[] { 3, 3, 3, 3, 3, 1, false, 4 },     // the whole image, 9 pixels, three channels
        new object[] { 7, 5, 100, 7, 5, 1, false, 2 },   // the whole image, 35 pixels: four vectors of 16, then 36 channels
        new object[] { 8, 8, 128, 8, 8, 1, false, 32 },  // 32 images of MobileNet's last block, shared by the cores
    });

    [Theory, MemberData(nameof(AverageShapes))]
    public void Average_pooling_sums_each_window_in_order_then_divides_on_one_core_or_two(int height, int width, int channels, int poolHeight, int poolWidth,
        int strides, bool same, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var window = new Window(height, width, channels, poolHeight, poolWidth, strides, strides, same);
        var random = new Random(height * 100 + channels);
        var input = Enumerable.Range(0, batch * height * width * channels).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var expected = new float[batch * window.Positions * channels];
        for (int n = 0, o = 0; n < batch; n++)
            for (int oy = 0; oy < window.OutputHeight; oy++)
                for (int ox = 0; ox < window.OutputWidth; ox++)
                    for (int c = 0; c < channels; c++, o++)
                    {
                        float sum = 0, count = 0;
                        for (int ky = 0; ky < poolHeight; ky++)
                            for (int kx = 0; kx < poolWidth; kx++)
                            {
                                int y = oy * strides + ky - window.PadTop, x = ox * strides + kx - window.PadLeft;
                                if (y < 0 || y >= height || x < 0 || x >= width) continue;
                                sum += input[((n * height + y) * width + x) * channels + c];
                                count++;
                            }
                        expected[o] = sum / count;
                    }
        foreach (int threads in new[] { 1, 2 })
        {
            var actual = Enumerable.Repeat(float.NaN, expected.Length + 3).ToArray();
            KernelSettings.OnThreads(threads, () => Pooling.AverageForward(input, actual, window, batch));
            Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), actual.Take(expected.Length).Select(BitConverter.SingleToInt32Bits));
            Assert.All(actual.Skip(expected.Length), value => Assert.True(float.IsNaN(value))); // nothing written past the outputs
        }
    }

    [Fact]
    public void Average_pooling_refuses_operands_too_short_for_its_window()
    {
        var window = new Window(4, 4, 3, 2, 2, 2, 2, Same: false);
        var error = Assert.Throws<ArgumentException>(() => Pooling.AverageForward(new float[47], new float[12], window, 1));
        Assert.Contains("Average pooling", error.Message);
    }

    [Fact]
    public void Max_pooling_that_keeps_winners_refuses_a_short_winners_buffer()
    {
        var window = new Window(4, 4, 3, 2, 2, 2, 2, Same: false);
        Assert.Throws<ArgumentException>(() => Pooling.MaxForward(new float[48], new float[12], new int[11], window, 1));
    }

    [Fact]
    public void Max_pooling_backward_refuses_a_winner_outside_its_image()
    {
        var window = new Window(4, 4, 1, 2, 2, 2, 2, Same: false);
        var winners = new[] { 0, 2, 8, 16 }; // 16 is past the 4x4 image
        var error = Assert.Throws<ArgumentException>(() => Pooling.MaxBackward(new float[4], winners, new float[16], window, 1, accumulate: false));
        Assert.Contains("winner 16", error.Message);
    }
}

[Collection(KernelSettings.Name)]
public class DepthwiseConvolutionTests
{
    /// <summary>
    /// Channels a vector or two wide with a partial last one, strides, dilation, 'same' and 'valid' padding, multipliers, runs
    /// of windows inside the image no multiple of four long, and images large enough that both cores share the output rows.
    /// </summary>
    public static IEnumerable<object[]> Shapes() => KernelSettings.OnEveryPath(new[]
    {
        new object[] { 16, 16, 32, 3, 1, 1, 1, true, 3 },   // a MobileNet block's: one image's rows split between the cores, two sliding blocks a row
        new object[] { 9, 20, 20, 3, 1, 1, 1, true, 2 },    // rows of 20 slide in three blocks (the last over the second's), 20 channels: a partial vector
        new object[] { 6, 8, 16, 3, 1, 1, 1, true, 2 },     // one sliding block a row, over the padding at both ends
        new object[] { 5, 12, 8, 3, 1, 1, 1, false, 2 },    // 'valid': sliding blocks away from any padding
        new object[] { 9, 14, 16, 3, 1, 1, 2, true, 2 },    // dilation 2: windows listing their cells, not sliding
        new object[] { 9, 8, 40, 3, 1, 2, 1, true, 2 },     // even output of a stride-2 'same' window, 40 channels: 2.5 vectors of AVX-512
        new object[] { 16, 16, 64, 3, 1, 2, 1, true, 2 },   // the block's second: stride 2, one sliding block a row, over the padding at its end
        new object[] { 6, 33, 16, 3, 1, 2, 1, true, 2 },    // stride 2 over padding at both ends: rows of 17 in two blocks, the last over the first
        new object[] { 7, 37, 20, 3, 1, 2, 1, false, 2 },   // stride 2, 'valid': rows of 18 in three blocks away from any padding, a partial vector
        new object[] { 7, 9, 5, 3, 3, 1, 2, false, 2 },     // a multiplier over five channels, dilation 2
        new object[] { 6, 6, 24, 5, 1, 1, 1, true, 1 },     // a 5x5 window mostly over the padding
        new object[] { 10, 10, 70, 2, 2, 2, 1, false, 2 },  // multiplier 2 over 70 channels: 140 outputs
        new object[] { 1, 12, 16, 3, 1, 1, 1, true, 2 },    // one image row: a single window row inside, the others over the padding
        new object[] { 5, 5, 16, 3, 1, 1, 1, true, 2 },     // rows of five: an input gradient block past the row's end, no sliding forward
        new object[] { 7, 7, 24, 3, 1, 2, 1, true, 2 },     // stride 2, padding of one at both ends: the input gradient's block starts a pixel before the row
    });

    /// <summary>
    /// Every output, kernel gradient and input gradient equals, bit for bit, a scalar loop that sums in the kernel's order:
    /// an output from its bias, then its window's cells in (ky, kx) order, each a fused multiply-add; a gradient's products
    /// each rounded, then added position after position (and cell after cell, output channel after output channel); the bias
    /// gradient the output gradient added position after position. Also
    /// with gradients added to what is there or written over it, with ReLU taken in the forward pass, and on one core or two;
    /// and with a BatchNormalization at inference applied in the forward call, with its ReLU or without, and a residual added
    /// after it or not: the bits of the kernels one after the other, nothing written past the output.
    /// </summary>
    [Theory, MemberData(nameof(Shapes))]
    public void Depthwise_convolution_sums_in_its_stated_order_on_one_core_or_two(int height, int width, int channels, int size, int multiplier, int strides,
        int dilation, bool same, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var window = new Window(height, width, channels, size, size, strides, strides, same, dilation);
        var random = new Random(height * 100 + channels * 10 + size);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        int outputs = channels * multiplier;
        var (x, kernel, bias) = (Random(batch * height * width * channels), Random(size * size * outputs), Random(outputs));
        var g = Random(batch * window.Positions * outputs);
        var (dkStart, dxStart, dbStart) = (Random(kernel.Length), Random(x.Length), Random(outputs));
        var (gamma, beta, movingMean, movingVariance) = (Random(outputs), Random(outputs), Random(outputs), Random(outputs).Select(v => v * v + 0.05f).ToArray());

        var expected = new float[g.Length];
        var expectedDk = (float[])dkStart.Clone();
        var expectedDx = (float[])dxStart.Clone();
        var expectedDb = (float[])dbStart.Clone();
        var expectedFreshDx = new float[x.Length];
        for (int n = 0; n < batch; n++)
            for (int oy = 0; oy < window.OutputHeight; oy++)
                for (int ox = 0; ox < window.OutputWidth; ox++)
                {
                    int position = (n * window.OutputHeight + oy) * window.OutputWidth + ox;
                    for (int o = 0; o < outputs; o++) (expected[position * outputs + o], expectedDb[o]) = (bias[o], expectedDb[o] + g[position * outputs + o]);
                    for (int ky = 0; ky < size; ky++)
                        for (int kx = 0; kx < size; kx++)
                        {
                            int iy = oy * strides + ky * dilation - window.PadTop, ix = ox * strides + kx * dilation - window.PadLeft;
                            if (iy < 0 || iy >= height || ix < 0 || ix >= width) continue;
                            int pixel = ((n * height + iy) * width + ix) * channels, cell = (ky * size + kx) * outputs;
                            for (int o = 0; o < outputs; o++)
                            {
                                int at = position * outputs + o;
                                expected[at] = MathF.FusedMultiplyAdd(x[pixel + o / multiplier], kernel[cell + o], expected[at]);
                                expectedDk[cell + o] += g[at] * x[pixel + o / multiplier];
                                expectedDx[pixel + o / multiplier] += g[at] * kernel[cell + o];
                                expectedFreshDx[pixel + o / multiplier] += g[at] * kernel[cell + o];
                            }
                        }
                }

        foreach (int threads in new[] { 1, 2 })
        {
            var y = new float[g.Length];
            var (dk, dx, db) = ((float[])dkStart.Clone(), (float[])dxStart.Clone(), (float[])dbStart.Clone());
            KernelSettings.OnThreads(threads, () =>
            {
                DepthwiseConvolution.Forward(x, kernel, bias, y, window, multiplier, batch);
                DepthwiseConvolution.Backward(g, x, kernel, dk, db, dx, window, multiplier, batch, computeWeights: true, accumulateWeights: true, accumulateInput: true);
            });
            Assert.Equal(expected, y);
            Assert.Equal(expectedDk, dk);
            Assert.Equal(expectedDx, dx);
            Assert.Equal(expectedDb, db);
            // The input gradient written, not added: whatever the buffer held is gone (each sample's cleared as it starts).
            var freshDx = Random(x.Length);
            KernelSettings.OnThreads(threads, () => DepthwiseConvolution.Backward(g, x, kernel, dk, db, freshDx, window, multiplier, batch,
                computeWeights: false, accumulateWeights: false, accumulateInput: false));
            Assert.Equal(expectedFreshDx, freshDx);
            // ReLU in the same pass, as Conv2D takes it.
            KernelSettings.OnThreads(threads, () => DepthwiseConvolution.Forward(x, kernel, bias, y, window, multiplier, batch, relu: true));
            Assert.Equal(expected.Select(v => Math.Max(0f, v)), y);
            var shortcut = Random(g.Length);
            foreach (bool reluAfter in new[] { false, true })
                foreach (bool added in new[] { false, true })
                {
                    var normalized = new float[g.Length];
                    var folded = new float[g.Length + 20];
                    Array.Fill(folded, -3f);
                    KernelSettings.OnThreads(threads, () =>
                    {
                        // The residual (a ResNet's Add after the normalization) added before that ReLU, as Merges.Combine takes them.
                        BatchNorm.InferenceForward(y, normalized, gamma, beta, movingMean, movingVariance, batch * window.Positions, outputs, 0.001f, reluAfter && !added);
                        if (added) Merges.Combine(MergeOperation.Add, shortcut, normalized, normalized, g.Length, reluAfter);
                        DepthwiseConvolution.Forward(x, kernel, bias, folded, window, multiplier, batch, relu: true,
                            new BatchNormAtInference(gamma, beta, movingMean, movingVariance, 0.001f, reluAfter, added ? shortcut : default));
                    });
                    Assert.Equal(normalized.Select(BitConverter.SingleToInt32Bits), folded.Take(g.Length).Select(BitConverter.SingleToInt32Bits));
                    Assert.All(folded.Skip(g.Length), v => Assert.Equal(-3f, v));
                    if (!reluAfter) Assert.Contains(normalized, v => v < 0);
                }
        }
    }

    [Fact]
    public void A_depthwise_normalization_shorter_than_the_output_channels_is_refused()
    {
        var window = new Window(5, 5, 4, 3, 3, 1, 1, Same: true);
        var output = new float[window.Positions * 8];
        var error = Assert.Throws<ArgumentException>(() => DepthwiseConvolution.Forward(new float[100], new float[9 * 8], default, output, window, multiplier: 2, batch: 1,
            normalization: new BatchNormAtInference(new float[8], new float[8], new float[8], new float[7], 0.001f)));
        Assert.Contains("DepthwiseConv2D", error.Message);
        Assert.Contains("8 filters", error.Message);
        Assert.All(output, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Operands_too_short_for_the_window_are_refused_with_its_shape()
    {
        var window = new Window(8, 8, 16, 3, 3, 1, 1, Same: true);
        var error = Assert.Throws<ArgumentException>(() =>
            DepthwiseConvolution.Forward(new float[8 * 8 * 16], new float[9 * 16], default, new float[8 * 8 * 16 - 1], window, multiplier: 1, batch: 1));
        Assert.Contains("DepthwiseConv2D", error.Message);
        Assert.Contains("1 samples", error.Message);
    }

    /// <summary>Forward against its definition; backward as the adjoint of the (bias-free) forward in both the input and the kernel.</summary>
    [Theory]
    [InlineData(6, 5, 20, 3, 1, 1, true)]
    [InlineData(7, 7, 3, 3, 2, 2, true)]
    [InlineData(5, 6, 17, 2, 1, 2, false)]
    public void Depthwise_convolution_matches_its_definition_and_its_backward_is_the_adjoint(int height, int width, int channels, int size, int multiplier, int strides, bool same)
    {
        const int batch = 2;
        var window = new Window(height, width, channels, size, size, strides, strides, same);
        var random = new Random(channels + size);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        int outputs = channels * multiplier;
        var x = Random(batch * height * width * channels);
        var kernel = Random(size * size * outputs);
        var y = new float[batch * window.Positions * outputs];
        DepthwiseConvolution.Forward(x, kernel, default, y, window, multiplier, batch);
        for (int n = 0; n < batch; n++)
            for (int oy = 0; oy < window.OutputHeight; oy++)
                for (int ox = 0; ox < window.OutputWidth; ox++)
                    for (int o = 0; o < outputs; o++)
                    {
                        double expected = 0;
                        for (int ky = 0; ky < size; ky++)
                            for (int kx = 0; kx < size; kx++)
                            {
                                int iy = oy * strides + ky - window.PadTop, ix = ox * strides + kx - window.PadLeft;
                                if (iy < 0 || iy >= height || ix < 0 || ix >= width) continue;
                                expected += x[((n * height + iy) * width + ix) * channels + o / multiplier] * kernel[(ky * size + kx) * outputs + o];
                            }
                        Assert.Equal(expected, y[((n * window.OutputHeight + oy) * window.OutputWidth + ox) * outputs + o], tolerance: 1e-5);
                    }

        var g = Random(y.Length);
        var dx = new float[x.Length];
        var dk = new float[kernel.Length];
        var db = new float[outputs];
        DepthwiseConvolution.Backward(g, x, kernel, dk, db, dx, window, multiplier, batch, computeWeights: true, accumulateWeights: false, accumulateInput: false);
        double Dot(float[] a, float[] b) => a.Zip(b, (p, q) => (double)p * q).Sum();
        Assert.Equal(Dot(y, g), Dot(x, dx), tolerance: 1e-4);
        Assert.Equal(Dot(y, g), Dot(kernel, dk), tolerance: 1e-4);
        for (int o = 0; o < outputs; o++) Assert.Equal(Enumerable.Range(0, batch * window.Positions).Sum(r => (double)g[r * outputs + o]), db[o], tolerance: 1e-4);
    }
}
