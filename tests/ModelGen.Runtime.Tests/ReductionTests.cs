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
        foreach (int columns in new[] { 1, 3, 10, 16, 17, 32, 33, 64, 65, 130, 300 })
        {
            foreach (int rows in new[] { 1, 7, 200 })
            {
                var matrix = Enumerable.Range(0, rows * columns).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
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
                    Assert.True(expected.SequenceEqual(actual), $"{rows} x {columns}, accumulate {accumulate}");
                }
            }
        }
    }
}

public class SequencePoolingTests
{
    /// <summary>
    /// GlobalAveragePooling1D's forward pass against a scalar loop in its stated order, bit for bit: each sample's counted
    /// steps added one after the other, then divided by their count; feature counts under, at and past whole vectors.
    /// </summary>
    [Theory]
    [InlineData(3, 4, 1, false)]
    [InlineData(2, 7, 8, true)]
    [InlineData(3, 5, 37, true)]
    [InlineData(2, 9, 64, false)]
    public void The_mean_over_the_counted_steps_sums_them_in_order(int batch, int steps, int features, bool masked)
    {
        var random = new Random(batch * 100 + steps * 10 + features);
        var x = Enumerable.Range(0, batch * steps * features).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        // Sample b counts its first steps - b steps (every step without a mask).
        var mask = masked ? Enumerable.Range(0, batch * steps).Select(i => i % steps < steps - i / steps ? 1f : 0f).ToArray() : Array.Empty<float>();
        var expected = new float[batch * features];
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
        }
        var actual = Enumerable.Repeat(float.NaN, batch * features).ToArray();
        SequencePooling.AverageForward(x, mask, actual, batch, steps, features);
        Assert.Equal(expected, actual);
    }
}
