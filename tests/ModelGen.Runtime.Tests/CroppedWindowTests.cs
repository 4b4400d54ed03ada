using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// A convolution cropped to the outputs a 'valid' pooling reads (<see cref="Window.CroppedTo"/>) against the whole
/// convolution, through every kernel a pooled convolution meets in training and at inference: the cropped outputs are the
/// whole one's first rows and columns, the pooling's values, winners and both gradients the same.
/// </summary>
[Collection(KernelSettings.Name)]
public class CroppedWindowTests
{
    /// <summary>Input height, width and channels, kernel, strides, 'same' convolution, filters, pool size and strides.</summary>
    public static readonly TheoryData<int, int, int, int, int, bool, int, int, int> Shapes = new()
    {
        { 13, 13, 32, 3, 1, false, 64, 2, 2 }, // the small CNN's conv2: 11x11 pools to 5x5 from 10x10 (im2col + GEMM in training)
        { 27, 27, 1, 3, 1, false, 8, 2, 2 },   // nine-float patches: pooled in registers in training, the narrow kernel gradient
        { 3, 3, 8, 3, 1, true, 9, 2, 2 },      // 'same' padding kept for the two outputs of three that the pooling reads
        { 13, 11, 3, 3, 2, false, 5, 2, 2 },   // strided: 6x5 outputs, the last column dropped only
        { 13, 13, 4, 3, 1, false, 6, 3, 3 },   // 3x3 windows: 11x11 pools to 3x3 from 9x9
    };

    public static IEnumerable<object[]> ShapesOnEveryPath => KernelSettings.OnEveryPath(Shapes);

    [Theory]
    [MemberData(nameof(ShapesOnEveryPath))]
    public void A_cropped_convolution_is_the_whole_ones_outputs_its_pooling_reads(int height, int width, int channels, int kernel, int strides, bool same,
        int filters, int poolSize, int poolStrides, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        const int batch = 3;
        var random = new Random(height * 100 + filters);
        var whole = new Window(height, width, channels, kernel, kernel, strides, strides, same);
        var wholePool = new Window(whole.OutputHeight, whole.OutputWidth, filters, poolSize, poolSize, poolStrides, poolStrides, false);
        int readHeight = (wholePool.OutputHeight - 1) * poolStrides + poolSize, readWidth = (wholePool.OutputWidth - 1) * poolStrides + poolSize;
        var cropped = whole.CroppedTo(readHeight, readWidth);
        var pool = new Window(readHeight, readWidth, filters, poolSize, poolSize, poolStrides, poolStrides, false);
        Assert.True(cropped.Positions < whole.Positions);
        Assert.Equal((whole.PadTop, whole.PadLeft, wholePool.Positions), (cropped.PadTop, cropped.PadLeft, pool.Positions));

        var image = Enumerable.Range(0, batch * height * width * channels).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        var weights = Enumerable.Range(0, whole.PatchSize * filters).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        var bias = Enumerable.Range(0, filters).Select(_ => (float)random.NextDouble() * 0.2f - 0.1f).ToArray();
        int pooledFloats = batch * pool.Positions * filters;

        // The convolution alone: the cropped outputs are the whole convolution's first rows and columns.
        var wholeOutput = new float[batch * whole.Positions * filters];
        var croppedOutput = new float[batch * cropped.Positions * filters];
        Convolution.Forward(image, new float[batch * whole.Positions * whole.PatchSize], weights, wholeOutput, whole, filters, batch, bias, relu: true);
        Convolution.Forward(image, new float[batch * cropped.Positions * cropped.PatchSize], weights, croppedOutput, cropped, filters, batch, bias, relu: true);
        for (int sample = 0, i = 0; sample < batch; sample++)
            for (int y = 0; y < readHeight; y++)
                for (int x = 0; x < readWidth; x++)
                    for (int c = 0; c < filters; c++, i++)
                        Assert.Equal(wholeOutput[((sample * whole.OutputHeight + y) * whole.OutputWidth + x) * filters + c], croppedOutput[i]);

        // Pooled, in training and at inference: the same values and winners (numbered over the pixels each pooling reads).
        var (wholePatches, wholePooled, wholeWinners) = (new float[batch * whole.Positions * whole.PatchSize], new float[pooledFloats], new int[pooledFloats]);
        var (patches, pooled, winners) = (new float[batch * cropped.Positions * cropped.PatchSize], new float[pooledFloats], new int[pooledFloats]);
        Convolution.ForwardMaxPooled(image, wholePatches, weights, new float[wholeOutput.Length], wholePooled, wholeWinners, whole, wholePool, filters, batch, bias, relu: true, training: true);
        Convolution.ForwardMaxPooled(image, patches, weights, new float[croppedOutput.Length], pooled, winners, cropped, pool, filters, batch, bias, relu: true, training: true);
        Assert.Equal(wholePooled, pooled);
        Assert.Equal(wholeWinners.Select(w => Renumbered(w, whole, cropped, filters)), winners);
        var inferred = new float[pooledFloats];
        Convolution.ForwardMaxPooled(image, default, weights, new float[croppedOutput.Length], inferred, default, cropped, pool, filters, batch, bias, relu: true);
        Assert.Equal(wholePooled, inferred);

        // Backward: the kernel gradient at the winners and the input gradient, through the patches and at the winners.
        var pooledGradient = Enumerable.Range(0, pooledFloats).Select(i => i % 3 == 0 ? 0f : (float)random.NextDouble() - 0.5f).ToArray();
        var (wholeKernelGradient, kernelGradient) = (new float[weights.Length], new float[weights.Length]);
        Convolution.KernelGradientAtWinners(pooledGradient, wholeWinners, image, wholeKernelGradient, whole, wholePool, filters, batch);
        Convolution.KernelGradientAtWinners(pooledGradient, winners, image, kernelGradient, cropped, pool, filters, batch);
        Assert.Equal(wholeKernelGradient, kernelGradient);

        var (wholeScattered, scattered) = (new float[wholeOutput.Length], new float[croppedOutput.Length]);
        Pooling.MaxBackward(pooledGradient, wholeWinners, wholeScattered, wholePool, batch, accumulate: false);
        Pooling.MaxBackward(pooledGradient, winners, scattered, pool, batch, accumulate: false);
        var expected = new float[image.Length];
        Convolution.Transposed(wholeScattered, weights, new float[Convolution.TransposedScratch(whole, filters, batch)], expected, whole, filters, batch, accumulate: false);
        foreach (bool skipsZeros in new[] { false, true })
        {
            var inputGradient = Enumerable.Repeat(float.NaN, image.Length).ToArray(); // every pixel written, the rows no window reads with zeros
            Convolution.Transposed(scattered, weights, new float[Convolution.TransposedScratch(cropped, filters, batch, skipsZeros)], inputGradient, cropped, filters, batch, accumulate: false, scattered: skipsZeros);
            Assert.Equal(expected, inputGradient);
        }
        var atWinners = Enumerable.Repeat(float.NaN, image.Length).ToArray();
        Convolution.InputGradientAtWinners(pooledGradient, winners, weights, atWinners, cropped, pool, filters, batch, accumulate: false);
        var wholeAtWinners = new float[image.Length];
        Convolution.InputGradientAtWinners(pooledGradient, wholeWinners, weights, wholeAtWinners, whole, wholePool, filters, batch, accumulate: false);
        Assert.Equal(wholeAtWinners, atWinners);
    }

    [Fact]
    public void A_window_crops_only_to_outputs_it_has()
    {
        var window = new Window(13, 13, 32, 3, 3, 1, 1, Same: false); // 11x11 outputs
        Assert.Equal((11, 11, 121), (window.CroppedTo(11, 11).OutputHeight, window.CroppedTo(11, 11).OutputWidth, window.CroppedTo(11, 11).Positions));
        Assert.Equal((10, 7, 70), (window.CroppedTo(10, 7).OutputHeight, window.CroppedTo(10, 7).OutputWidth, window.CroppedTo(10, 7).Positions));
        foreach (var (rows, columns) in new[] { (12, 10), (10, 12), (0, 10), (10, 0) })
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => window.CroppedTo(rows, columns));
            Assert.Contains($"11x11 outputs cannot be cropped to {rows}x{columns}", error.Message);
        }
    }

    /// <summary>A winner (output pixel x filters + filter) of the whole convolution's numbering in the cropped one's.</summary>
    private static int Renumbered(int winner, in Window whole, in Window cropped, int filters)
    {
        int pixel = winner / filters, y = pixel / whole.OutputWidth, x = pixel % whole.OutputWidth;
        return (y * cropped.OutputWidth + x) * filters + winner % filters;
    }
}
