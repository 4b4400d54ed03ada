using System.Collections.Concurrent;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// RowParts cuts a run of row-by-row blocks by its shape and by what the call is: a prediction from less work than a
/// training step. Each part of a run that reads the model's input gets that input whole and slices its own rows.
/// </summary>
[Collection(KernelSettings.Name)]
public class RowPartsTests
{
    private sealed class Parts
    {
        public readonly ConcurrentQueue<(int First, int Rows, int InputLength, float FirstValue)> Seen = new();
    }

    /// <summary>64 rows of 1,024 multiply-adds (65,536 in all: past a prediction's threshold, short of a training step's).</summary>
    private static (int First, int Rows, int InputLength, float FirstValue)[] Run(float[] input, bool training)
    {
        var parts = new Parts();
        RowParts.Run(parts, input, 64, multiplyAddsPerRow: 1_024, kernelFloats: 1_024, training,
            static (parts, input, first, rows) => parts.Seen.Enqueue((first, rows, input.Length, input[first * 3])));
        return parts.Seen.OrderBy(p => p.First).ToArray();
    }

    [Fact]
    public void A_prediction_is_cut_from_less_work_than_a_training_step_and_each_part_reads_the_whole_input()
    {
        var input = Enumerable.Range(0, 64 * 3).Select(i => (float)i).ToArray();
        Assert.Equal(new[] { (0, 32, 192, 0f), (32, 32, 192, 96f) }, KernelSettings.OnThreads(2, () => Run(input, training: false)));
        Assert.Equal(new[] { (0, 64, 192, 0f) }, KernelSettings.OnThreads(2, () => Run(input, training: true)));
        Assert.Equal(new[] { (0, 64, 192, 0f) }, KernelSettings.OnThreads(1, () => Run(input, training: false)));
    }

    [Fact]
    public void Two_parts_pay_from_enough_work_rows_for_two_tiles_and_kernels_that_stay_in_L2()
    {
        Assert.Equal(32_768, RowParts.InferenceWork);
        Assert.True(RowParts.Pay(32, 1_024, 1_024, RowParts.InferenceWork));
        Assert.False(RowParts.Pay(32, 1_023, 1_023, RowParts.InferenceWork));
        Assert.False(RowParts.Pay(31, 4_096, 4_096, RowParts.InferenceWork));
        Assert.False(RowParts.Pay(64, 4_096, RowParts.KernelFloatsInL2 + 1, RowParts.InferenceWork));
        Assert.True(RowParts.Pay(64, 8_192, 8_192, Gemm.PackedParallelWork));
        Assert.False(RowParts.Pay(64, 7_812, 7_812, Gemm.PackedParallelWork));
    }
}
