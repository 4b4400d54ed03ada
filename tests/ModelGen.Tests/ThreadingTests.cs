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

        (float[] Parameters, float[] Predictions, float[] Losses) Train(int threads) => KernelSettings.OnThreads(threads, () =>
        {
            var model = new SmallCnn(maxBatchSize: batch, seed: 3);
            var adam = new Adam(1e-3f);
            var losses = Enumerable.Range(0, 3).Select(_ => model.TrainStep(images, labels, adam)).ToArray();
            var predictions = new float[batch * 10];
            model.Predict(images, predictions);
            return (model.Parameters.ToArray(), predictions, losses);
        });

        var one = Train(1);
        var two = Train(2);
        Assert.Equal(one.Losses, two.Losses);
        Assert.Equal(one.Predictions, two.Predictions);
        Assert.Equal(one.Parameters, two.Parameters);
    }
}
