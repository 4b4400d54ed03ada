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
