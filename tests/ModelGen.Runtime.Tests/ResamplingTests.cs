using ModelGen.Kernels;
using static ModelGen.Runtime.Tests.TestValues;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// ZeroPadding2D and UpSampling2D are linear maps, so their backward must be the adjoint of their forward:
/// ⟨Forward(x), g⟩ = ⟨x, Backward(g)⟩ for any x and g. Forward is also checked pixel by pixel against its definition,
/// and UpSampling2D's backward bit for bit against its sums in order.
/// </summary>
[Collection(KernelSettings.Name)]
public class ResamplingTests
{
    [Theory]
    [InlineData(2, 3, 4, 2, 1, 0, 2, 1)]
    [InlineData(1, 2, 2, 1, 0, 0, 0, 0)]
    [InlineData(3, 1, 5, 3, 2, 2, 1, 3)]
    public void Zero_padding_places_each_pixel_and_its_backward_is_the_adjoint(int batch, int height, int width, int channels, int top, int bottom, int left, int right)
    {
        int outputHeight = height + top + bottom, outputWidth = width + left + right;
        var x = Uniform(batch * height * width * channels, 1);
        var y = new float[batch * outputHeight * outputWidth * channels];
        Array.Fill(y, float.NaN); // forward must write every output value
        ZeroPadding.Forward(x, y, height, width, channels, top, bottom, left, right, batch);
        for (int n = 0; n < batch; n++)
            for (int r = 0; r < outputHeight; r++)
                for (int c = 0; c < outputWidth; c++)
                    for (int k = 0; k < channels; k++)
                    {
                        int sr = r - top, sc = c - left;
                        float expected = sr >= 0 && sr < height && sc >= 0 && sc < width ? x[((n * height + sr) * width + sc) * channels + k] : 0f;
                        Assert.Equal(expected, y[((n * outputHeight + r) * outputWidth + c) * channels + k]);
                    }

        var g = Uniform(y.Length, 2);
        var dx = Uniform(x.Length, 3);
        ZeroPadding.Backward(g, dx, height, width, channels, top, bottom, left, right, batch, accumulate: false);
        Assert.Equal(Dot(y, g), Dot(x, dx), tolerance: 5e-5);
        AssertAccumulates(dx, into => ZeroPadding.Backward(g, into, height, width, channels, top, bottom, left, right, batch, accumulate: true));
    }

    [Theory]
    [InlineData(2, 3, 2, 2, 2, 2)]
    [InlineData(1, 2, 3, 3, 3, 1)]
    [InlineData(2, 1, 1, 1, 1, 4)]
    public void Upsampling_repeats_each_pixel_and_its_backward_is_the_adjoint(int batch, int height, int width, int channels, int rows, int columns)
    {
        int outputHeight = height * rows, outputWidth = width * columns;
        var x = Uniform(batch * height * width * channels, 4);
        var y = new float[batch * outputHeight * outputWidth * channels];
        Array.Fill(y, float.NaN);
        UpSampling.Forward(x, y, height, width, channels, rows, columns, batch);
        for (int n = 0; n < batch; n++)
            for (int r = 0; r < outputHeight; r++)
                for (int c = 0; c < outputWidth; c++)
                    for (int k = 0; k < channels; k++)
                        Assert.Equal(x[((n * height + r / rows) * width + c / columns) * channels + k], y[((n * outputHeight + r) * outputWidth + c) * channels + k]);

        var g = Uniform(y.Length, 5);
        var dx = Uniform(x.Length, 6);
        UpSampling.Backward(g, dx, height, width, channels, rows, columns, batch, accumulate: false);
        Assert.Equal(Dot(y, g), Dot(x, dx), tolerance: 5e-5);
        AssertAccumulates(dx, into => UpSampling.Backward(g, into, height, width, channels, rows, columns, batch, accumulate: true));
    }

    /// <summary>
    /// UpSampling2D on both cores: forward writes every block's copies, and backward gives each pixel exactly the sum of its
    /// block, rows outer and columns inner, from zero or from the gradient there, on every SIMD path and thread count.
    /// </summary>
    [Theory]
    [InlineData(4, 14, 14, 16, 2, 2)] // the autoencoder's last UpSampling2D: rows shared by the cores, whole vectors
    [InlineData(3, 9, 7, 21, 3, 2)]   // a vector of channels and a part (AVX-512), non-square blocks
    [InlineData(3, 8, 8, 8, 2, 2)]    // eight channels: whole 256-bit vectors on AVX-512 too
    [InlineData(5, 12, 10, 3, 2, 3)]  // channels fewer than a vector
    public void Upsampling_on_both_cores_sums_each_block_in_order(int batch, int height, int width, int channels, int rows, int columns)
    {
        int outputHeight = height * rows, outputWidth = width * columns;
        var x = Uniform(batch * height * width * channels, 7);
        var g = Uniform(batch * outputHeight * outputWidth * channels, 8);
        var start = Uniform(x.Length, 9);
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (int threads in new[] { 1, 2 })
            {
                var y = new float[g.Length];
                Array.Fill(y, float.NaN);
                KernelSettings.OnThreads(threads, () => UpSampling.Forward(x, y, height, width, channels, rows, columns, batch));
                for (int n = 0; n < batch; n++)
                    for (int r = 0; r < outputHeight; r++)
                        for (int c = 0; c < outputWidth; c++)
                            for (int k = 0; k < channels; k++)
                                Assert.Equal(x[((n * height + r / rows) * width + c / columns) * channels + k], y[((n * outputHeight + r) * outputWidth + c) * channels + k]);
                foreach (bool accumulate in new[] { false, true })
                {
                    var dx = (float[])start.Clone();
                    KernelSettings.OnThreads(threads, () => UpSampling.Backward(g, dx, height, width, channels, rows, columns, batch, accumulate));
                    for (int n = 0; n < batch; n++)
                        for (int py = 0; py < height; py++)
                            for (int px = 0; px < width; px++)
                                for (int k = 0; k < channels; k++)
                                {
                                    int at = ((n * height + py) * width + px) * channels + k;
                                    float sum = accumulate ? start[at] : 0f;
                                    for (int r = 0; r < rows; r++)
                                        for (int c = 0; c < columns; c++)
                                            sum += g[((n * outputHeight + py * rows + r) * outputWidth + px * columns + c) * channels + k];
                                    Assert.True(BitConverter.SingleToInt32Bits(sum) == BitConverter.SingleToInt32Bits(dx[at]),
                                        $"{path}, {threads} threads, accumulate {accumulate}: gradient {at} is {dx[at]}, the block's sum {sum}");
                                }
                }
            }
        }
    }

    /// <summary>Accumulating onto a buffer holding the plain result doubles it.</summary>
    private static void AssertAccumulates(float[] plain, Action<float[]> accumulate)
    {
        var twice = (float[])plain.Clone();
        accumulate(twice);
        for (int i = 0; i < plain.Length; i++) Assert.Equal(2 * plain[i], twice[i], tolerance: 5e-6);
    }

    private static double Dot(float[] a, float[] b) => a.Zip(b, (p, q) => (double)p * q).Sum();
}
