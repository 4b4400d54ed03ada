using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>Column sums (bias gradients) on every SIMD path, against the plain row-by-row loop.</summary>
[Collection(KernelSettings.Name)]
public class ReductionTests
{
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Column_sums_add_each_column_in_row_order_whatever_the_width(SimdPath path)
    {
        using var scope = KernelSettings.OnSimd(path);
        var random = new Random(12);
        foreach (int columns in new[] { 1, 3, 6, 10, 16, 17, 32, 33, 64, 65, 130, 300 })
        {
            // Rows read as whole vectors while they stay inside the matrix, the last ones masked; values past the rows (a
            // buffer sized for a larger batch: 40 spare) let every row be read whole.
            foreach (var (rows, spare) in new[] { (1, 0), (7, 0), (200, 0), (200, 40) })
            {
                var matrix = Enumerable.Range(0, rows * columns + spare).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
                foreach (bool accumulate in new[] { false, true })
                {
                    var start = Enumerable.Range(0, columns + 5).Select(_ => (float)random.NextDouble()).ToArray();
                    var expected = (float[])start.Clone();
                    for (int j = 0; j < columns; j++)
                    {
                        float sum = accumulate ? start[j] : 0f;
                        for (int r = 0; r < rows; r++) sum += matrix[r * columns + j];
                        expected[j] = sum;
                    }
                    var actual = (float[])start.Clone();
                    Reductions.SumRows(matrix, actual, rows, columns, accumulate);
                    // Bit for bit, and nothing past the columns written.
                    Assert.True(expected.SequenceEqual(actual), $"{rows} x {columns} (+{spare}), accumulate {accumulate}");
                }
            }
        }
    }
}

[Collection(KernelSettings.Name)]
public class SequencePoolingTests
{
    /// <summary>
    /// GlobalAveragePooling1D against scalar loops in its stated order, bit for bit, on one core and on two: forward, each
    /// sample's counted steps added one after the other, then divided by their count; backward, each step the output
    /// gradient divided by the count, times the step's weight (Keras' gradient of sum(x·mask) / sum(mask), and of the
    /// mean; rounded, then added where gradients accumulate). Feature counts under,
    /// at and past whole vectors, two of them and past four of them, on every SIMD path; 32 samples of 200 steps of 64 (a bag of words) are shared by the cores.
    /// </summary>
    public static IEnumerable<object[]> Shapes() => KernelSettings.OnEveryPath(new[]
    {
        new object[] { 3, 4, 1, false, false }, new object[] { 2, 7, 8, true, true }, new object[] { 3, 5, 37, true, false },
        new object[] { 2, 9, 64, false, true }, new object[] { 2, 6, 100, true, false }, new object[] { 32, 200, 64, true, true },
        new object[] { 4, 11, 32, false, false }, new object[] { 3, 6, 24, true, true },
    });

    [Theory, MemberData(nameof(Shapes))]
    public void The_mean_over_the_counted_steps_sums_them_in_order_on_one_core_or_two(int batch, int steps, int features, bool masked, bool accumulate, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var random = new Random(batch * 100 + steps * 10 + features);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var (x, g, dxStart) = (Values(batch * steps * features), Values(batch * features), Values(batch * steps * features));
        var mask = CountedSteps(batch, steps, masked);
        var expected = new float[batch * features];
        var expectedDx = accumulate ? (float[])dxStart.Clone() : new float[dxStart.Length];
        for (int b = 0; b < batch; b++)
        {
            float count = 0;
            for (int t = 0; t < steps; t++)
            {
                if (masked && mask[b * steps + t] == 0f) continue;
                count += 1f;
                for (int f = 0; f < features; f++) expected[b * features + f] += x[(b * steps + t) * features + f];
            }
            for (int f = 0; f < features; f++) expected[b * features + f] /= count;
            for (int t = 0; t < steps; t++)
            {
                float weight = masked ? mask[b * steps + t] : 1f;
                for (int f = 0; f < features; f++)
                {
                    int at = (b * steps + t) * features + f;
                    float share = g[b * features + f] / count * weight;
                    expectedDx[at] = accumulate ? expectedDx[at] + share : share;
                }
            }
        }
        foreach (int threads in new[] { 1, 2 })
        {
            var actual = Enumerable.Repeat(float.NaN, batch * features).ToArray();
            var dx = accumulate ? (float[])dxStart.Clone() : Enumerable.Repeat(float.NaN, dxStart.Length).ToArray();
            KernelSettings.OnThreads(threads, () =>
            {
                SequencePooling.AverageForward(x, mask, actual, batch, steps, features);
                SequencePooling.AverageBackward(g, mask, dx, batch, steps, features, accumulate);
            });
            Assert.Equal(expected, actual);
            Assert.Equal(expectedDx, dx);
        }
    }

    /// <summary>
    /// The mean's gradient through the ReLU before it (<c>rectified</c>: that ReLU's output) in one pass is, bit for bit, the
    /// mean's backward and then the ReLU's (Activations.Backward into the input's gradient), on one core or two: the ReLU's
    /// outputs are a third zeros (no gradient there), masked steps get their -0 or +0 where the output is positive, and the
    /// gradient is written or added.
    /// </summary>
    [Theory, MemberData(nameof(Shapes))]
    public void The_mean_takes_the_relu_before_it_in_its_backward_pass(int batch, int steps, int features, bool masked, bool accumulate, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var random = new Random(batch * 100 + steps * 10 + features + 7);
        int values = batch * steps * features;
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var g = Values(batch * features);
        var relu = Enumerable.Range(0, values).Select(_ => random.Next(3) == 0 ? 0f : (float)random.NextDouble()).ToArray();
        var dxStart = Values(values);
        var mask = CountedSteps(batch, steps, masked);
        var reluGradient = new float[values];
        var expected = accumulate ? (float[])dxStart.Clone() : new float[values];
        SequencePooling.AverageBackward(g, mask, reluGradient, batch, steps, features, accumulate: false);
        Activations.Backward(Activation.Relu, relu, reluGradient, expected, batch * steps, features, accumulate);
        Assert.Contains(expected, v => v != 0f);
        foreach (int threads in new[] { 1, 2 })
        {
            var dx = accumulate ? (float[])dxStart.Clone() : Enumerable.Repeat(float.NaN, values).ToArray();
            KernelSettings.OnThreads(threads, () => SequencePooling.AverageBackward(g, mask, dx, batch, steps, features, accumulate, rectified: relu));
            Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), dx.Select(BitConverter.SingleToInt32Bits));
        }
    }

    /// <summary>A step mask where sample b counts its first steps - b (modulo steps) steps; none (every step counts) unless <paramref name="masked"/>.</summary>
    private static float[] CountedSteps(int batch, int steps, bool masked) =>
        masked ? Enumerable.Range(0, batch * steps).Select(i => i % steps < steps - (i / steps) % steps ? 1f : 0f).ToArray() : Array.Empty<float>();

    /// <summary>A ReLU output shorter than the input gradient is refused before anything is written.</summary>
    [Fact]
    public void The_mean_refuses_a_short_relu_output()
    {
        var dx = Enumerable.Repeat(float.NaN, 2 * 3 * 4).ToArray();
        var error = Assert.Throws<ArgumentException>(() => SequencePooling.AverageBackward(new float[2 * 4], default, dx, 2, 3, 4, accumulate: false, rectified: new float[2 * 3 * 4 - 1]));
        Assert.Contains("2 samples of 3 steps of 4", error.Message);
        Assert.All(dx, v => Assert.True(float.IsNaN(v)));
    }
}

/// <summary>Embedding's lookups and table gradient against scalar loops, and its refusal of ids that are not rows of its table.</summary>
[Collection(KernelSettings.Name)]
public class EmbeddingTests
{
    /// <summary>
    /// Forward copies each id's row (and masks id 0); backward adds each step's gradient onto its id's row in step order,
    /// bit for bit, on one core or two: a table of 1000 x 64 under 500 ids (its halves on both cores), ids repeating in
    /// both halves, gradients written or added.
    /// </summary>
    [Theory]
    [InlineData(7, 4, 9, false)]
    [InlineData(1000, 64, 500, true)]
    [InlineData(1000, 64, 500, false)]
    public void Lookups_copy_rows_and_gradients_add_onto_them_in_step_order(int inputDim, int outputDim, int count, bool accumulate)
    {
        var random = new Random(inputDim + count);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        // A few ids taken again and again, so rows in both halves of the table sum many steps.
        var ids = Enumerable.Range(0, count).Select(i => (float)(i % 3 == 0 ? random.Next(inputDim) : i * 7 % Math.Min(inputDim, 13) * (inputDim / 13 + 1) % inputDim)).ToArray();
        var (table, g, tableGradientStart) = (Values(inputDim * outputDim), Values(count * outputDim), Values(inputDim * outputDim));
        var expected = ids.SelectMany(id => table.Skip((int)id * outputDim).Take(outputDim)).ToArray();
        var expectedMask = ids.Select(id => id == 0f ? 0f : 1f).ToArray();
        var expectedGradient = accumulate ? (float[])tableGradientStart.Clone() : new float[table.Length];
        for (int i = 0; i < count; i++)
            for (int f = 0; f < outputDim; f++) expectedGradient[(int)ids[i] * outputDim + f] += g[i * outputDim + f];

        foreach (int threads in new[] { 1, 2 })
        {
            var (output, mask) = (new float[count * outputDim], new float[count]);
            var tableGradient = accumulate ? (float[])tableGradientStart.Clone() : Enumerable.Repeat(float.NaN, table.Length).ToArray();
            KernelSettings.OnThreads(threads, () =>
            {
                EmbeddingKernel.Forward(ids, table, output, mask, count, inputDim, outputDim, "Model", "embed");
                EmbeddingKernel.Backward(g, ids, tableGradient, count, inputDim, outputDim, accumulate);
            });
            Assert.Equal(expected, output);
            Assert.Equal(expectedMask, mask);
            Assert.Equal(expectedGradient, tableGradient);
        }
    }

    /// <summary>
    /// The mean of each sample's table rows, read where they lie, and its table gradient equal, bit for bit, the lookups
    /// written and then averaged, and the pooling's gradient written and then added onto the table, on one core or two:
    /// padding (id 0) masked or counted, gradients written or added, up to 32 samples of 200 ids into a table of 5000 x 64.
    /// </summary>
    [Theory]
    [InlineData(3, 6, 7, 4, true, false)]
    [InlineData(5, 9, 40, 37, false, true)]
    [InlineData(32, 200, 5000, 64, true, true)]
    [InlineData(32, 200, 5000, 64, false, false)]
    public void The_mean_in_the_table_equals_lookups_then_their_mean(int batch, int steps, int inputDim, int outputDim, bool maskZero, bool accumulate)
    {
        var random = new Random(batch + steps + outputDim);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        // Sample b ends in b % steps padding ids (id 0, every other one written -0), which count where padding is not masked:
        // a sample's counted steps are then a count of its ids, across whole vectors of them and a tail.
        var ids = Enumerable.Range(0, batch * steps).Select(i => i % steps >= steps - (i / steps) % steps ? (i % 2 == 0 ? 0f : -0f) : random.Next(inputDim)).ToArray();
        var (table, g, start) = (Values(inputDim * outputDim), Values(batch * outputDim), Values(inputDim * outputDim));
        var (lookups, mask, expected) = (new float[batch * steps * outputDim], maskZero ? new float[batch * steps] : Array.Empty<float>(), new float[batch * outputDim]);
        var (stepGradients, expectedGradient) = (new float[lookups.Length], (float[])start.Clone());
        EmbeddingKernel.Forward(ids, table, lookups, mask, batch * steps, inputDim, outputDim, "Model", "embed");
        SequencePooling.AverageForward(lookups, mask, expected, batch, steps, outputDim);
        SequencePooling.AverageBackward(g, mask, stepGradients, batch, steps, outputDim, accumulate: false);
        EmbeddingKernel.Backward(stepGradients, ids, expectedGradient, batch * steps, inputDim, outputDim, accumulate);

        foreach (int threads in new[] { 1, 2 })
        {
            var means = Enumerable.Repeat(float.NaN, batch * outputDim).ToArray();
            var tableGradient = accumulate ? (float[])start.Clone() : Enumerable.Repeat(float.NaN, start.Length).ToArray();
            KernelSettings.OnThreads(threads, () =>
            {
                EmbeddingKernel.MeanForward(ids, table, means, batch, steps, inputDim, outputDim, maskZero, "Model", "embed");
                EmbeddingKernel.MeanBackward(g, ids, tableGradient, batch, steps, inputDim, outputDim, maskZero, accumulate);
            });
            Assert.Equal(expected, means);
            Assert.Equal(expectedGradient, tableGradient);
        }
    }

    /// <summary>An id that is no row of the table, at any position (in a vector of ids or the tail), is refused before anything is written.</summary>
    [Theory]
    [InlineData(0, -1f)]
    [InlineData(9, 50f)]
    [InlineData(5, 2.5f)]
    [InlineData(12, float.NaN)]
    [InlineData(17, 2.5f)]
    [InlineData(20, 49.999f)]
    public void Ids_that_are_no_row_are_refused_before_anything_is_written(int position, float id)
    {
        var ids = Enumerable.Range(0, 21).Select(i => (float)(i * 3 % 50)).ToArray();
        ids[position] = id;
        var output = Enumerable.Repeat(-7f, 21 * 4).ToArray();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
            EmbeddingKernel.Forward(ids, new float[50 * 4], output, default, 21, inputDim: 50, outputDim: 4, "Reviews", "words"));
        Assert.Contains($"Reviews: layer 'words' (Embedding) expects integer ids in [0, 50), but the batch holds {id} at position {position}.", error.Message);
        Assert.All(output, value => Assert.Equal(-7f, value));
    }
}
