using ModelGen.Kernels;
using ModelGen.Training;

namespace ModelGen.Tests;

/// <summary>
/// Kernels cut their work into parts by shape alone, so a second core changes when the work is done, never what is computed,
/// on every SIMD path (each cuts by its own tile sizes).
/// </summary>
[Collection(KernelSettings.Name)]
public class ThreadingTests
{
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Training_and_inference_give_the_same_bits_on_one_thread_or_two(SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        // A batch of 16 through the small CNN: its products (rows, columns and, for the weight gradients over 10,816
        // positions, depth), im2col, pooling, the transposed convolution and Adam's update all run in parts on two threads.
        const int batch = 16;
        var random = new Random(12);
        var images = Enumerable.Range(0, batch * 784).Select(_ => (float)random.NextDouble()).ToArray();
        var labels = Enumerable.Range(0, batch).Select(i => (float)(i % 10)).ToArray();

        AssertSameBitsOnOneThreadOrTwo(() =>
        {
            var model = new SmallCnn(maxBatchSize: batch, seed: 3);
            var adam = new Adam(1e-3f);
            var losses = Enumerable.Range(0, 3).Select(_ => model.TrainStep(images, labels, adam)).ToArray();
            var predictions = new float[batch * 10];
            model.Predict(images, predictions);
            return (model.Parameters.ToArray(), predictions, losses);
        });
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void A_row_run_gives_the_same_bits_in_two_parts_of_the_rows_as_in_one(SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        // The Transformer block's run from the attention's output projection: 32 rows a sample of 20,480 multiply-adds against
        // 20,480 floats of kernels, which RowParts cuts in two parts on two threads from batch 1 (here 1 and 3 samples), on one keeps whole.
        Assert.True(RowParts.Pay(32, 20_480, 20_480, Gemm.PackedParallelWork));
        var random = new Random(5);
        float[] Tokens(int batch) => Enumerable.Range(0, batch * 32).Select(_ => (float)random.Next(50)).ToArray();
        var (one, three) = (Tokens(1), Tokens(3));
        var labels = new float[] { 2, 0, 1 };

        AssertSameBitsOnOneThreadOrTwo(() =>
        {
            var model = new TransformerBlock(maxBatchSize: 3, seed: 4);
            var adam = new Adam(1e-2f);
            var losses = Enumerable.Range(0, 3).Select(_ => model.TrainStep(three, labels, adam)).Append(model.TrainStep(one, labels.AsSpan(0, 1), adam)).ToArray();
            var predictions = new float[2 * 3 + 3 * 3];
            model.Predict(one, predictions.AsSpan(0, 3));
            model.ForInference().Predict(one, predictions.AsSpan(3, 3));
            model.ForInference().Predict(three, predictions.AsSpan(6, 9));
            return (model.Parameters.ToArray(), predictions, losses);
        });
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void A_row_run_from_the_model_input_gives_the_same_bits_in_two_parts_as_in_one(SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        // The residual MLP's run reads its input x: 8,832 multiply-adds a row, which a prediction cuts in two parts on two
        // threads from 32 rows (here 40: parts of 20; and 64), a training step at batch 64 trains in parts of the batch instead.
        Assert.True(RowParts.Pay(40, 8_832, 8_832, RowParts.InferenceWork));
        var random = new Random(8);
        float[] Inputs(int batch) => Enumerable.Range(0, batch * 64).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        var (forty, sixtyFour) = (Inputs(40), Inputs(64));
        var labels = Enumerable.Range(0, 64).Select(i => (float)(i % 10)).ToArray();

        AssertSameBitsOnOneThreadOrTwo(() =>
        {
            var model = new ResidualMlp(maxBatchSize: 64, seed: 6);
            var adam = new Adam(1e-2f);
            var losses = Enumerable.Range(0, 2).Select(_ => model.TrainStep(sixtyFour, labels, adam)).ToArray();
            var predictions = new float[40 * 10 + 64 * 10 + 40 * 10];
            model.Predict(forty, predictions.AsSpan(0, 400));
            var copy = model.ForInference();
            copy.Predict(sixtyFour, predictions.AsSpan(400, 640));
            copy.Predict(forty, predictions.AsSpan(1040, 400));
            return (model.Parameters.ToArray(), predictions, losses);
        });
    }

    /// <summary>Runs <paramref name="train"/> on one thread and on two: the losses, predictions and parameters it returns the same bits.</summary>
    private static void AssertSameBitsOnOneThreadOrTwo(Func<(float[] Parameters, float[] Predictions, float[] Losses)> train)
    {
        var one = KernelSettings.OnThreads(1, train);
        var two = KernelSettings.OnThreads(2, train);
        Assert.Equal(one.Losses, two.Losses);
        Assert.Equal(one.Predictions, two.Predictions);
        Assert.Equal(one.Parameters, two.Parameters);
    }
}
