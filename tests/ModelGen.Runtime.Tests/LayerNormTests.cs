using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// LayerNorm's row kernels against the layer computed in double from Keras' definition (biased variance, inv = gamma /
/// sqrt(var + eps), y = x·inv + (beta - mean·inv)), forward and backward, on every SIMD path, at widths below one vector,
/// of whole vectors and with a partial last vector; gradients into buffers that already hold other consumers' sums.
/// </summary>
[Collection(KernelSettings.Name)]
public class LayerNormTests
{
    private const float Epsilon = 1e-3f;

    public static IEnumerable<object[]> Widths() => KernelSettings.OnEveryPath(new[] { 5, 64, 70 }.Select(columns => new object[] { columns }));

    [Theory, MemberData(nameof(Widths))]
    public void Rows_normalize_as_defined(int columns, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        const int rows = 7;
        var random = new Random(columns);
        float[] Values(int count, double offset = 0) => Enumerable.Range(0, count).Select(_ => (float)(offset + random.NextDouble() * 2 - 1)).ToArray();
        // Rows away from zero: a variance taken about zero instead of the mean would be 28 times too large. (Not far from it:
        // Keras' y = x·inv + (beta - mean·inv) loses to cancellation what x·inv carries beyond y, in float as in Keras.)
        var x = Values(rows * columns, offset: 3);
        var gamma = Values(columns, offset: 1);
        var beta = Values(columns);
        var dy = Values(rows * columns);
        var (earlierInput, earlierGamma, earlierBeta) = (Values(rows * columns), Values(columns), Values(columns));

        var y = new float[rows * columns];
        var (mean, inverseStd) = (new float[rows], new float[rows]);
        LayerNorm.Forward(x, y, gamma, beta, mean, inverseStd, rows, columns, Epsilon);
        var (dx, dGamma, dBeta) = ((float[])earlierInput.Clone(), (float[])earlierGamma.Clone(), (float[])earlierBeta.Clone());
        LayerNorm.Backward(dy, x, gamma, mean, inverseStd, dx, dGamma, dBeta, rows, columns,
            computeInput: true, accumulateInput: true, computeWeights: true, accumulateWeights: true);
        var (dxAlone, dGammaAlone, dBetaAlone) = (new float[rows * columns], Values(columns), Values(columns));
        LayerNorm.Backward(dy, x, gamma, mean, inverseStd, dxAlone, dGammaAlone, dBetaAlone, rows, columns,
            computeInput: true, accumulateInput: false, computeWeights: true, accumulateWeights: false);

        var expectedY = new double[rows * columns];
        var expectedDx = new double[rows * columns];
        var (expectedDGamma, expectedDBeta) = (new double[columns], new double[columns]);
        for (int r = 0; r < rows; r++)
        {
            var row = Enumerable.Range(0, columns).Select(c => (double)x[r * columns + c]).ToArray();
            double average = row.Average(), variance = row.Sum(v => (v - average) * (v - average)) / columns, inverse = 1 / Math.Sqrt(variance + Epsilon);
            Close($"row {r} mean", average, mean[r]);
            Close($"row {r} inverse std", inverse, inverseStd[r]);
            var normalized = row.Select(v => (v - average) * inverse).ToArray();
            var g = Enumerable.Range(0, columns).Select(c => (double)dy[r * columns + c] * gamma[c]).ToArray();
            double meanG = g.Average(), meanGx = g.Zip(normalized, (a, b) => a * b).Average();
            for (int c = 0; c < columns; c++)
            {
                expectedY[r * columns + c] = normalized[c] * gamma[c] + beta[c];
                expectedDx[r * columns + c] = inverse * (g[c] - meanG - normalized[c] * meanGx);
                expectedDGamma[c] += dy[r * columns + c] * normalized[c];
                expectedDBeta[c] += dy[r * columns + c];
            }
        }
        for (int i = 0; i < y.Length; i++)
        {
            Close($"y[{i}]", expectedY[i], y[i]);
            Close($"dx[{i}]", expectedDx[i], dxAlone[i]);
            Close($"dx[{i}] added to an earlier sum", earlierInput[i] + expectedDx[i], dx[i]);
        }
        for (int c = 0; c < columns; c++)
        {
            Close($"dgamma[{c}]", expectedDGamma[c], dGammaAlone[c]);
            Close($"dbeta[{c}]", expectedDBeta[c], dBetaAlone[c]);
            Close($"dgamma[{c}] added to an earlier sum", earlierGamma[c] + expectedDGamma[c], dGamma[c]);
            Close($"dbeta[{c}] added to an earlier sum", earlierBeta[c] + expectedDBeta[c], dBeta[c]);
        }
    }

    /// <summary>
    /// A row normalises to the same bits whatever rows come with it: alone, in a pass of hundreds (which goes block by block
    /// and, on two threads, part by part over both cores), and with or without its statistics kept (inference keeps none).
    /// </summary>
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void A_row_normalizes_the_same_alone_or_among_many_on_one_thread_or_two(SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var random = new Random(7);
        var (x, gamma, beta) = (MixedRows(random, 13, 5), Values(random, ManyColumns, 1, 1), Values(random, ManyColumns, -0.5, 1));
        const int rows = ManyRows, columns = ManyColumns;

        var alone = new float[rows * columns];
        var (aloneMean, aloneInverse) = (new float[rows], new float[rows]);
        for (int r = 0; r < rows; r++)
            LayerNorm.Forward(x.AsSpan(r * columns, columns), alone.AsSpan(r * columns, columns), gamma, beta,
                aloneMean.AsSpan(r, 1), aloneInverse.AsSpan(r, 1), 1, columns, Epsilon);
        foreach (int threads in new[] { 1, 2 })
        {
            var (y, mean, inverse, inferred) = (new float[rows * columns], new float[rows], new float[rows], new float[rows * columns]);
            KernelSettings.OnThreads(threads, () =>
            {
                LayerNorm.Forward(x, y, gamma, beta, mean, inverse, rows, columns, Epsilon);
                LayerNorm.Forward(x, inferred, gamma, beta, default, default, rows, columns, Epsilon);
            });
            Assert.Equal(aloneMean, mean);
            Assert.Equal(aloneInverse, inverse);
            Assert.Equal(alone, y);
            Assert.Equal(alone, inferred);
        }
    }

    /// <summary>
    /// The backward pass over 601 rows (block by block, their dx shared by the cores or on one) gives every row the dx it
    /// gets alone, and dgamma and dbeta the sums the rows give one at a time, each added to the last in row order.
    /// </summary>
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Backward_over_many_rows_equals_the_rows_one_at_a_time(SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var random = new Random(11);
        var (x, dy) = (MixedRows(random, 13, 5), MixedRows(random, 3, 7));
        var (gamma, beta) = (Values(random, ManyColumns, 1, 1), Values(random, ManyColumns, -0.5, 1));
        const int rows = ManyRows, columns = ManyColumns;
        var (mean, inverseStd) = (new float[rows], new float[rows]);
        LayerNorm.Forward(x, new float[rows * columns], gamma, beta, mean, inverseStd, rows, columns, Epsilon);

        var (aloneDx, aloneDGamma, aloneDBeta) = (new float[rows * columns], new float[columns], new float[columns]);
        for (int r = 0; r < rows; r++)
            LayerNorm.Backward(dy.AsSpan(r * columns, columns), x.AsSpan(r * columns, columns), gamma, mean.AsSpan(r, 1), inverseStd.AsSpan(r, 1),
                aloneDx.AsSpan(r * columns, columns), aloneDGamma, aloneDBeta, 1, columns,
                computeInput: true, accumulateInput: false, computeWeights: true, accumulateWeights: r > 0);
        foreach (int threads in new[] { 1, 2 })
        {
            var (dx, dGamma, dBeta) = (new float[rows * columns], new float[columns], new float[columns]);
            KernelSettings.OnThreads(threads, () => LayerNorm.Backward(dy, x, gamma, mean, inverseStd, dx, dGamma, dBeta, rows, columns,
                computeInput: true, accumulateInput: false, computeWeights: true, accumulateWeights: false));
            Assert.Equal(aloneDx, dx);
            Assert.Equal(aloneDGamma, dGamma);
            Assert.Equal(aloneDBeta, dBeta);
        }
    }

    /// <summary>
    /// A residual connection's sum normalised as it is made (an Add that only a LayerNormalization reads, as in a Transformer)
    /// gives the bits of the Add (Merges.Combine) then the normalization, and writes the sum the backward pass reads: over
    /// 601 rows (across blocks and parts) of widths below a vector, of whole vectors and with a partial last one, on one
    /// thread or two, with its statistics kept or none.
    /// </summary>
    [Theory, MemberData(nameof(Widths))]
    public void A_sum_normalized_as_it_is_made_equals_the_add_then_the_normalization(int columns, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var random = new Random(columns);
        const int rows = ManyRows;
        float[] Rows(int offsets) => Enumerable.Range(0, rows).SelectMany(r => Values(random, columns, offset: r % offsets - offsets / 2, spread: 1 + r % 5)).ToArray();
        var (left, right) = (Rows(13), Rows(7));
        var (gamma, beta) = (Values(random, columns, 1, 1), Values(random, columns, -0.5, 1));
        var added = new float[rows * columns];
        Merges.Combine(MergeOperation.Add, left, right, added, rows * columns);
        var (expected, mean, inverseStd) = (new float[rows * columns], new float[rows], new float[rows]);
        LayerNorm.Forward(added, expected, gamma, beta, mean, inverseStd, rows, columns, Epsilon);

        foreach (int threads in new[] { 1, 2 })
        {
            float[] Unwritten(int count) => Enumerable.Repeat(float.NaN, count).ToArray();
            var (sum, y, rowMeans, rowInverses) = (Unwritten(rows * columns), Unwritten(rows * columns), Unwritten(rows), Unwritten(rows));
            var (inferredSum, inferred) = (Unwritten(rows * columns), Unwritten(rows * columns));
            KernelSettings.OnThreads(threads, () =>
            {
                LayerNorm.Forward(left, right, sum, y, gamma, beta, rowMeans, rowInverses, rows, columns, Epsilon);
                LayerNorm.Forward(left, right, inferredSum, inferred, gamma, beta, default, default, rows, columns, Epsilon);
            });
            Assert.Equal(added, sum);
            Assert.Equal(expected, y);
            Assert.Equal(mean, rowMeans);
            Assert.Equal(inverseStd, rowInverses);
            Assert.Equal(added, inferredSum);
            Assert.Equal(expected, inferred);
        }
    }

    /// <summary>601 rows of 70: they cross the blocks (58 rows) and the parts unevenly.</summary>
    private const int ManyRows = 601, ManyColumns = 70;

    private static float[] Values(Random random, int count, double offset, double spread) =>
        Enumerable.Range(0, count).Select(_ => (float)(offset + random.NextDouble() * spread)).ToArray();

    /// <summary>
    /// <see cref="ManyRows"/> rows, each its own offset (cycling through <paramref name="offsets"/> values around 0) and spread
    /// (1 to <paramref name="spreads"/>), so a row computed with another's statistics comes out visibly wrong.
    /// </summary>
    private static float[] MixedRows(Random random, int offsets, int spreads) =>
        Enumerable.Range(0, ManyRows).SelectMany(r => Values(random, ManyColumns, offset: r % offsets - offsets / 2, spread: 1 + r % spreads)).ToArray();

    /// <summary>Within 1e-5 of the value's magnitude, at least 1: float rows of up to 70 against double.</summary>
    private static void Close(string what, double expected, float actual) =>
        Assert.True(Math.Abs(expected - actual) <= 1e-5 * Math.Max(1, Math.Abs(expected)), $"{what}: expected {expected}, got {actual}");
}

[Collection(KernelSettings.Name)]
public class BatchNormTests
{
    private static float[] Uniform(Random random, int n, float low, float high) =>
        Enumerable.Range(0, n).Select(_ => (float)(low + random.NextDouble() * (high - low))).ToArray();

    /// <summary>
    /// BatchNormalization with the moving statistics (inference) against a scalar loop in Keras' order of operations, bit
    /// for bit: inv = gamma · 1/√(variance + ε), then y = x·inv + (beta - mean·inv), one fused multiply-add; channel counts
    /// under, at and past whole vectors, written in place or not, on every SIMD path (the scale and shift are worked out a
    /// vector at a time too).
    /// </summary>
    public static IEnumerable<object[]> InferenceShapes() => KernelSettings.OnEveryPath(new[]
    {
        new object[] { 5, 3, false }, new object[] { 8, 4, true }, new object[] { 64, 6, false }, new object[] { 70, 5, true }, new object[] { 300, 1, false },
    });

    [Theory, MemberData(nameof(InferenceShapes))]
    public void Moving_statistics_normalize_each_row_in_Keras_order(int channels, int rows, bool inPlace, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var random = new Random(channels + rows);
        float[] Values(int n, float low, float high) => Uniform(random, n, low, high);
        var (x, gamma, beta, mean, variance) = (Values(rows * channels, -2, 2), Values(channels, 0.5f, 1.5f), Values(channels, -1, 1), Values(channels, -1, 1), Values(channels, 0.1f, 2));
        const float epsilon = 1e-3f;
        var expected = new float[x.Length];
        for (int c = 0; c < channels; c++)
        {
            float scale = gamma[c] * (1f / MathF.Sqrt(variance[c] + epsilon));
            float shift = beta[c] - mean[c] * scale;
            for (int r = 0; r < rows; r++) expected[r * channels + c] = MathF.FusedMultiplyAdd(x[r * channels + c], scale, shift);
        }
        // With the ReLU of a layer that alone reads it, applied in the same pass: max(y, 0) of the same values.
        var rectified = inPlace ? (float[])x.Clone() : new float[x.Length];
        BatchNorm.InferenceForward(inPlace ? rectified : x, rectified, gamma, beta, mean, variance, rows, channels, epsilon, relu: true);
        // With a residual added (an Add that alone reads the layer), and the ReLU after that Add: Merges.Combine's sum of the same values.
        var residual = Values(x.Length, -2, 2);
        var (summed, summedRectified) = (new float[x.Length], new float[x.Length]);
        BatchNorm.InferenceForward(x, summed, gamma, beta, mean, variance, rows, channels, epsilon, residual: residual);
        BatchNorm.InferenceForward(x, summedRectified, gamma, beta, mean, variance, rows, channels, epsilon, relu: true, residual: residual);
        Assert.Equal(expected.Select((v, at) => v + residual[at]), summed);
        Assert.Equal(expected.Select((v, at) => MathF.Max(v + residual[at], 0f)), summedRectified);
        var y = inPlace ? x : new float[x.Length];
        BatchNorm.InferenceForward(x, y, gamma, beta, mean, variance, rows, channels, epsilon);
        Assert.Equal(expected, y);
        Assert.Contains(expected, v => v < 0);
        Assert.Equal(expected.Select(v => MathF.Max(v, 0f)), rectified);
    }

    /// <summary>
    /// Training mode, forward and backward, and a frozen layer's backward, against scalar loops in the kernels' stated
    /// order, bit for bit, on one core and on two: each column sum adds its rows in float in blocks of 64, the blocks in
    /// order into a double; every other value is its element's own formula (Keras' arithmetic), fused where stated; the
    /// backward pass through the layer's ReLU (its sign worked out from x) as through that ReLU's gradient masked by its output first. Shapes
    /// from one short block to 8192 rows (parts on both cores), and channels taking every branch (four vectors at a time, one,
    /// one down four blocks at once, a partial one; 581 rows of 32: groups of four blocks, then single ones and a short one)
    /// on every SIMD path, gradients written or added to what is there.
    /// </summary>
    public static IEnumerable<object[]> TrainingShapes() => KernelSettings.OnEveryPath(new[]
    {
        new object[] { 5, 3, false }, new object[] { 64, 130, true }, new object[] { 70, 2500, false }, new object[] { 100, 700, false },
        new object[] { 16, 8192, true }, new object[] { 32, 581, false },
    });

    [Theory, MemberData(nameof(TrainingShapes))]
    public void Training_statistics_and_gradients_sum_in_one_order_on_one_core_or_two(int channels, int rows, bool accumulate, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var random = new Random(channels * 7 + rows);
        float[] Values(int n, float low, float high) => Uniform(random, n, low, high);
        var (x, dy, gamma, beta) = (Values(rows * channels, -1, 3), Values(rows * channels, -1, 1), Values(channels, 0.5f, 1.5f), Values(channels, -1, 1));
        var (dxStart, movingVariance) = (Values(rows * channels, -1, 1), Values(channels, 0.1f, 2));
        var residual = Values(rows * channels, -2, 2);
        const float epsilon = 1e-3f;

        // Per column: partial = add(partial, row) over blocks of 64 rows, each block's partial into a double, in order.
        float[] ColumnSums(Func<float, int, float> add, double divideBy)
        {
            var sums = new float[channels];
            for (int c = 0; c < channels; c++)
            {
                double total = 0;
                for (int start = 0; start < rows; start += 64)
                {
                    float partial = 0;
                    for (int r = start; r < Math.Min(rows, start + 64); r++) partial = add(partial, r * channels + c);
                    total += partial;
                }
                sums[c] = (float)(total / divideBy);
            }
            return sums;
        }
        var mean = ColumnSums((partial, at) => partial + x[at], rows);
        var variance = ColumnSums((partial, at) => MathF.FusedMultiplyAdd(x[at] - mean[at % channels], x[at] - mean[at % channels], partial), rows);
        var inverseStd = variance.Select(v => 1f / MathF.Sqrt(v + epsilon)).ToArray();
        var scale = gamma.Select((g, c) => g * inverseStd[c]).ToArray();
        var shift = beta.Select((b, c) => b - mean[c] * scale[c]).ToArray();
        var expectedY = x.Select((value, at) => MathF.FusedMultiplyAdd(value, scale[at % channels], shift[at % channels])).ToArray();

        (float[] SumDy, float[] SumDyXhat, float[] Dx) Backward(float[] dy)
        {
            var sumDy = ColumnSums((partial, at) => partial + dy[at], 1);
            var sumDyXhat = ColumnSums((partial, at) => MathF.FusedMultiplyAdd(x[at] - mean[at % channels], dy[at], partial), 1)
                .Select((sum, c) => sum * inverseStd[c]).ToArray();
            float invRows = 1f / rows;
            var k = scale.Select((a, c) => -a * inverseStd[c] * sumDyXhat[c] * invRows).ToArray();
            var offset = scale.Select((a, c) => -a * sumDy[c] * invRows).ToArray();
            var dx = dxStart.Select((start, at) =>
            {
                int c = at % channels;
                float sum = accumulate ? MathF.FusedMultiplyAdd(dy[at], scale[c], start) + offset[c] : MathF.FusedMultiplyAdd(dy[at], scale[c], offset[c]);
                return MathF.FusedMultiplyAdd(x[at] - mean[c], k[c], sum);
            }).ToArray();
            return (sumDy, sumDyXhat, dx);
        }
        var (sumDy, sumDyXhat, expectedDx) = Backward(dy);
        // Through a ReLU that alone reads the layer: its gradient counts where its output is positive (ReLU' taken on the way).
        var rectifiedExpected = Backward(dy.Select((gradient, at) => expectedY[at] > 0f ? gradient : 0f).ToArray());
        var frozenScale = gamma.Select((g, c) => g / MathF.Sqrt(movingVariance[c] + epsilon)).ToArray();
        var expectedFrozenDx = dxStart.Select((start, at) =>
            accumulate ? MathF.FusedMultiplyAdd(dy[at], frozenScale[at % channels], start) : dy[at] * frozenScale[at % channels]).ToArray();

        foreach (int threads in new[] { 1, 2 })
        {
            var (y, rectified) = (new float[x.Length], new float[x.Length]);
            var (batchMean, batchVariance, batchInverseStd) = (new float[channels], new float[channels], new float[channels]);
            var (rectifiedMean, rectifiedVariance, rectifiedInverseStd) = (new float[channels], new float[channels], new float[channels]);
            var (dx, frozenDx, dgamma, dbeta) = ((float[])dxStart.Clone(), (float[])dxStart.Clone(), new float[channels], new float[channels]);
            var (rectifiedDx, rectifiedDgamma, rectifiedDbeta) = ((float[])dxStart.Clone(), new float[channels], new float[channels]);
            var (summed, summedRectified) = (new float[x.Length], new float[x.Length]);
            var (summedMean, summedVariance, summedInverseStd) = (new float[channels], new float[channels], new float[channels]);
            KernelSettings.OnThreads(threads, () =>
            {
                BatchNorm.TrainingForward(x, summed, gamma, beta, summedMean, summedVariance, summedInverseStd, rows, channels, epsilon, residual: residual);
                BatchNorm.TrainingForward(x, summedRectified, gamma, beta, summedMean, summedVariance, summedInverseStd, rows, channels, epsilon, relu: true, residual: residual);
                BatchNorm.TrainingForward(x, rectified, gamma, beta, rectifiedMean, rectifiedVariance, rectifiedInverseStd, rows, channels, epsilon, relu: true);
                BatchNorm.TrainingForward(x, y, gamma, beta, batchMean, batchVariance, batchInverseStd, rows, channels, epsilon);
                BatchNorm.TrainingBackward(dy, x, gamma, batchMean, batchInverseStd, dx, dgamma, dbeta, rows, channels,
                    computeInput: true, accumulateInput: accumulate, computeWeights: true, accumulateWeights: false);
                BatchNorm.InferenceBackward(dy, gamma, movingVariance, frozenDx, rows, channels, epsilon, accumulate);
                BatchNorm.TrainingBackward(dy, x, gamma, rectifiedMean, rectifiedInverseStd, rectifiedDx, rectifiedDgamma, rectifiedDbeta, rows, channels,
                    computeInput: true, accumulateInput: accumulate, computeWeights: true, accumulateWeights: false, relu: true, beta: beta);
            });
            Assert.Equal(mean, batchMean);
            Assert.Equal(variance, batchVariance);
            Assert.Equal(inverseStd, batchInverseStd);
            Assert.Equal(expectedY, y);
            // A ReLU that alone reads the layer, in the same pass: the same statistics, max(y, 0) of the same values.
            Assert.Equal(mean, rectifiedMean);
            Assert.Equal(variance, rectifiedVariance);
            Assert.Equal(inverseStd, rectifiedInverseStd);
            Assert.Equal(expectedY.Select(v => MathF.Max(v, 0f)), rectified);
            // An Add of a residual that alone reads the layer (and the ReLU after that Add), in the same pass: Merges.Combine's
            // sum of the same values, the same statistics.
            Assert.Equal(mean, summedMean);
            Assert.Equal(inverseStd, summedInverseStd);
            Assert.Equal(expectedY.Select((v, at) => v + residual[at]), summed);
            Assert.Equal(expectedY.Select((v, at) => MathF.Max(v + residual[at], 0f)), summedRectified);
            Assert.Contains(expectedY.Select((v, at) => v + residual[at]), v => v < 0);
            Assert.Equal(sumDyXhat, dgamma);
            Assert.Equal(sumDy, dbeta);
            Assert.Equal(expectedDx, dx);
            Assert.Equal(expectedFrozenDx, frozenDx);
            Assert.Equal(rectifiedExpected.SumDyXhat, rectifiedDgamma);
            Assert.Equal(rectifiedExpected.SumDy, rectifiedDbeta);
            Assert.Equal(rectifiedExpected.Dx, rectifiedDx);
        }
    }

    [Fact]
    public void Operands_too_short_for_the_rows_are_refused_naming_the_layer_and_shape()
    {
        var error = Assert.Throws<ArgumentException>(() => BatchNorm.TrainingForward(new float[63], new float[64], new float[8], new float[8],
            new float[8], new float[8], new float[8], rows: 8, channels: 8, epsilon: 1e-3f));
        Assert.Contains("BatchNormalization over 8 rows of 8 channels", error.Message);
        // A residual one float short of the outputs, or sharing floats with them: refused before anything is written.
        var output = Enumerable.Repeat(7f, 128).ToArray();
        foreach (var (residual, offset) in new[] { (new float[63], 0), (output, 8) })
        {
            error = Assert.Throws<ArgumentException>(() => BatchNorm.TrainingForward(new float[64], output.AsSpan(0, 64), new float[8], new float[8],
                new float[8], new float[8], new float[8], rows: 8, channels: 8, epsilon: 1e-3f, residual: residual.AsSpan(offset)));
            Assert.Contains("BatchNormalization over 8 rows of 8 channels: the residual", error.Message);
            error = Assert.Throws<ArgumentException>(() => BatchNorm.InferenceForward(new float[64], output.AsSpan(0, 64), new float[8], new float[8],
                new float[8], new float[8], rows: 8, channels: 8, epsilon: 1e-3f, residual: residual.AsSpan(offset)));
            Assert.Contains("the residual", error.Message);
        }
        Assert.All(output, v => Assert.Equal(7f, v));
        // The floats just past the outputs are a residual of their own: each output 0·scale + 0 + 7.
        BatchNorm.InferenceForward(new float[64], output.AsSpan(0, 64), new float[8], new float[8], new float[8],
            Enumerable.Repeat(1f, 8).ToArray(), rows: 8, channels: 8, epsilon: 1e-3f, residual: output.AsSpan(64, 64));
        Assert.All(output, v => Assert.Equal(7f, v));
        error = Assert.Throws<ArgumentException>(() => LayerNorm.Forward(new float[64], new float[63], new float[64], new float[64], new float[8], new float[8],
            default, default, rows: 8, columns: 8, epsilon: 1e-3f));
        Assert.Contains("LayerNormalization of the sum of two values, 8 rows of 8", error.Message);
    }
}
