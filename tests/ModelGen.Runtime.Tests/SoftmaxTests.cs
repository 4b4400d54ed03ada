using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>Softmax and its backward pass on every SIMD path (emulated where this machine lacks it), against double-precision definitions.</summary>
[Collection(KernelSettings.Name)]
public class SoftmaxTests
{
    private static readonly int[] RowLengths = { 1, 2, 7, 8, 10, 15, 16, 17, 31, 32, 33, 100 };

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Softmax_of_short_and_long_rows_matches_its_definition_and_spreads_nan(SimdPath path)
    {
        using var scope = KernelSettings.OnSimd(path);
        var random = new Random(21);
        // Five rows, and 45: short rows go sixteen at a time on AVX-512, and rows of whole vectors on every path, the last block
        // thirteen rows.
        foreach (int rows in new[] { 5, 45 })
        foreach (int columns in RowLengths)
        {
            var logits = Spread(random, rows * columns, 20);
            var probabilities = new float[logits.Length];
            Activations.Forward(Activation.Softmax, logits, probabilities, rows, columns);
            var inPlace = (float[])logits.Clone();
            Activations.Forward(Activation.Softmax, inPlace, rows, columns);
            Assert.Equal(probabilities, inPlace);
            for (int row = 0; row < rows; row++)
            {
                var x = logits.Skip(row * columns).Take(columns).Select(v => (double)v).ToArray();
                double max = x.Max(), sum = x.Sum(v => Math.Exp(v - max));
                for (int j = 0; j < columns; j++)
                {
                    double expected = Math.Exp(x[j] - max) / sum;
                    Assert.True(Math.Abs(probabilities[row * columns + j] - expected) <= 1e-6 * expected + 1e-12, $"{columns} columns, row {row}, column {j}");
                }
            }
        }
        // A NaN anywhere in a row, or an infinite logit, makes the whole row NaN, as Keras' softmax does; other rows are untouched.
        foreach (int at in new[] { 0, 1, 2 })
        {
            var special = new[] { 1f, 2f, 3f, 1f, 2f, 3f, 0.5f, -0f, 0f };
            special[at] = float.NaN;
            special[3 + at] = float.PositiveInfinity;
            var output = new float[special.Length];
            Activations.Forward(Activation.Softmax, special, output, 3, 3);
            Assert.All(output.Take(6), v => Assert.True(float.IsNaN(v)));
            Assert.Equal(1.0, output.Skip(6).Sum(v => (double)v), 6);
        }
        // Logits far below the row's maximum give exact zeros, and a row of large equal logits is uniform.
        var extremes = new[] { 0f, -200f, 3e38f, 3e38f };
        Activations.Forward(Activation.Softmax, extremes, 2, 2);
        Assert.Equal(new[] { 1f, 0f, 0.5f, 0.5f }, extremes);
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void A_nan_or_infinity_anywhere_in_a_row_of_any_length_makes_that_row_nan(SimdPath path)
    {
        // The row's maximum is taken with the hardware's maximum, which may skip a NaN: the row must come out NaN anyway.
        using var scope = KernelSettings.OnSimd(path);
        var random = new Random(5);
        // The special row second of three, and ninth and nineteenth of twenty (in a block of sixteen on AVX-512, and after it).
        foreach (var (rows, specialRows) in new[] { (3, new[] { 1 }), (20, new[] { 8, 18 }) })
        foreach (int columns in RowLengths)
            foreach (float special in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
                foreach (int at in new[] { 0, columns / 2, columns - 1 })
                {
                    var logits = Spread(random, rows * columns, 8);
                    foreach (int row in specialRows) logits[row * columns + at] = special;
                    var output = new float[logits.Length];
                    Activations.Forward(Activation.Softmax, logits, output, rows, columns);
                    for (int row = 0; row < rows; row++)
                    {
                        var probabilities = output.Skip(row * columns).Take(columns).ToArray();
                        // One -∞ logit is a probability of 0 (unless the row has nothing else); a NaN or +∞ makes the row NaN.
                        if (specialRows.Contains(row) && !(special == float.NegativeInfinity && columns > 1))
                            Assert.All(probabilities, v => Assert.True(float.IsNaN(v), $"{special} at {at} of {columns}, row {row}: {v}"));
                        else
                        {
                            Assert.Equal(1.0, probabilities.Sum(v => (double)v), 5);
                            if (specialRows.Contains(row)) Assert.Equal(0f, probabilities[at]);
                        }
                    }
                }
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void A_rows_probabilities_do_not_depend_on_where_it_sits(SimdPath path)
    {
        using var scope = KernelSettings.OnSimd(path);
        var random = new Random(4);
        foreach (int columns in RowLengths)
        {
            var row = Spread(random, columns, 8);
            var alone = new float[columns];
            Activations.Forward(Activation.Softmax, row, alone, 1, columns);
            // The same row in a batch of other rows, computed in place: 4th of 7; and of 45 rows, 4th and 38th (in blocks of
            // sixteen, short rows on AVX-512 and rows of whole vectors on every path, the last of thirteen); of 23, 20th (one
            // block, then seven rows: short ones a row at a time).
            foreach (var (rows, at) in new[] { (7, 3), (45, 3), (45, 37), (23, 19) })
            {
                var batch = Spread(random, rows * columns, 8);
                row.CopyTo(batch, at * columns);
                Activations.Forward(Activation.Softmax, batch, rows, columns);
                Assert.Equal(alone, batch.Skip(at * columns).Take(columns));
            }
            // Every row of a batch of 45 as it comes alone: one differently rounded sum in 45 rows shows.
            var many = Spread(random, 45 * columns, 16);
            var eachAlone = new float[many.Length];
            for (int r = 0; r < 45; r++) Activations.Forward(Activation.Softmax, many.AsSpan(r * columns, columns), eachAlone.AsSpan(r * columns, columns), 1, columns);
            Activations.Forward(Activation.Softmax, many, 45, columns);
            Assert.Equal(eachAlone, many);
        }
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Softmax_backward_is_its_jacobian_applied_to_the_gradient(SimdPath path)
    {
        using var scope = KernelSettings.OnSimd(path);
        var random = new Random(8);
        foreach (int columns in RowLengths)
        {
            const int rows = 4;
            var y = Spread(random, rows * columns, 4);
            Activations.Forward(Activation.Softmax, y, rows, columns);
            var dy = Spread(random, rows * columns, 2);
            var dx = (float[])dy.Clone();
            Activations.Backward(Activation.Softmax, y, dx, rows, columns);
            for (int row = 0; row < rows; row++)
            {
                // dx_j = Σ_i dy_i ∂y_i/∂x_j with ∂y_i/∂x_j = y_i (δ_ij - y_j).
                for (int j = 0; j < columns; j++)
                {
                    double expected = 0;
                    for (int i = 0; i < columns; i++) expected += (double)dy[row * columns + i] * y[row * columns + i] * ((i == j ? 1 : 0) - (double)y[row * columns + j]);
                    Assert.True(Math.Abs(dx[row * columns + j] - expected) <= 1e-6, $"{columns} columns, row {row}, column {j}: {dx[row * columns + j]} vs {expected}");
                }
            }
        }
    }

    /// <summary><paramref name="count"/> values spread evenly over [-width / 2, width / 2).</summary>
    private static float[] Spread(Random random, int count, double width) =>
        Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * width - width / 2)).ToArray();
}
