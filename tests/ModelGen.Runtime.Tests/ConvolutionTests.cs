using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// im2col copies pixels into patches, so col2im (its backward) must be its adjoint: ⟨Im2Col(x), p⟩ = ⟨x, Col2Im(p)⟩ for any x
/// and p, over strides, padding, dilation and channel counts with and without a vector remainder. The chunked transposed
/// convolution is checked against its definition summed in double, across several chunks.
/// </summary>
[Collection(KernelSettings.Name)]
public class ConvolutionTests
{
    public static TheoryData<int, int, int, int, int, int, bool, int> Windows() => new()
    {
        // height, width, channels, kernel height, kernel width, stride, same, dilation
        { 7, 6, 1, 3, 3, 1, false, 1 },
        { 8, 9, 3, 3, 3, 2, true, 1 },
        { 9, 9, 17, 3, 3, 1, true, 2 },
        { 7, 8, 8, 2, 3, 2, false, 1 },
        { 5, 5, 32, 3, 3, 1, false, 1 },
        { 9, 9, 3, 3, 3, 2, false, 1 },  // short kernel rows, stride 2, every window inside: the copying fast path
        { 8, 8, 1, 3, 3, 2, true, 1 },   // 'same' padding only at the bottom and right: not inside, so not the fast path
    };

    [Theory, MemberData(nameof(Windows))]
    public void Col2im_is_the_adjoint_of_im2col_and_accumulates(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride, bool same, int dilation)
    {
        const int batch = 2;
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        var x = Random(batch * height * width * channels, 1);
        var p = Random(batch * window.Positions * window.PatchSize, 2);
        var patches = new float[p.Length];
        Convolution.Im2Col(x, patches, window, batch);
        var back = new float[x.Length];
        Array.Fill(back, float.NaN); // without accumulate, every pixel is overwritten
        Convolution.Col2Im(p, back, window, batch, accumulate: false);

        double forward = Dot(patches, p), adjoint = Dot(x, back);
        Assert.True(Math.Abs(forward - adjoint) <= 1e-4 * (1 + Math.Abs(forward)), $"<Im2Col(x), p> = {forward}, <x, Col2Im(p)> = {adjoint}");

        var accumulated = Random(x.Length, 3);
        var start = (float[])accumulated.Clone();
        Convolution.Col2Im(p, accumulated, window, batch, accumulate: true);
        for (int i = 0; i < x.Length; i++) Assert.Equal(start[i] + back[i], accumulated[i], 1e-5f);
    }

    [Fact]
    public void Transposed_convolution_matches_its_definition_across_chunks()
    {
        // 1,024 positions of 144 floats: 590 KB of patches per sample, so each sample is a chunk of its own.
        var window = new Window(32, 32, 16, 3, 3, 1, 1, Same: true);
        const int batch = 3, filters = 5;
        var values = Random(batch * window.Positions * filters, 4);
        var kernel = Random(window.PatchSize * filters, 5);
        var image = Random(batch * 32 * 32 * 16, 6);
        var start = (float[])image.Clone();
        Assert.True(Convolution.TransposedScratch(window, batch) < batch * window.Positions * window.PatchSize);
        var scratch = new float[Convolution.TransposedScratch(window, batch)];
        Convolution.Transposed(values, kernel, scratch, image, window, filters, batch, accumulate: true);

        var expected = start.Select(v => (double)v).ToArray();
        for (int n = 0; n < batch; n++)
            for (int oy = 0; oy < window.OutputHeight; oy++)
                for (int ox = 0; ox < window.OutputWidth; ox++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++)
                        {
                            int y = oy + ky - window.PadTop, x = ox + kx - window.PadLeft;
                            if (y < 0 || y >= 32 || x < 0 || x >= 32) continue;
                            for (int c = 0; c < 16; c++)
                            {
                                double sum = 0;
                                for (int f = 0; f < filters; f++)
                                    sum += (double)values[((n * 32 + oy) * 32 + ox) * filters + f] * kernel[((ky * 3 + kx) * 16 + c) * filters + f];
                                expected[((n * 32 + y) * 32 + x) * 16 + c] += sum;
                            }
                        }
        for (int i = 0; i < image.Length; i++) Assert.True(Math.Abs(expected[i] - image[i]) <= 1e-5, $"pixel value {i}: expected {expected[i]}, got {image[i]}");
    }

    private static float[] Random(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static double Dot(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += (double)a[i] * b[i];
        return sum;
    }
}
