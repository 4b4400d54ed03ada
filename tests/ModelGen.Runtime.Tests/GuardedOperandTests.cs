using System.Runtime.InteropServices;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// The kernels read and write through raw pointers a vector at a time, and some read a little past a run on purpose where
/// they know the memory is there (im2col's spill, the direct passes' windows in place): here each runs with every operand in
/// <see cref="GuardedMemory"/>, first ending just before a page nothing may touch, then starting just after one, so a read
/// or write outside an operand faults (ending the run with the kernel on the stack), and must leave every operand as it
/// leaves managed arrays, bit for bit, which the guarded operands' odd alignment must not change either. On every SIMD
/// path (the ones the machine lacks emulated) and on one core and two.
/// </summary>
[Collection(KernelSettings.Name)]
public class GuardedOperandTests
{
    /// <summary>Height, width, channels, kernel height and width, stride, 'same', dilation, filters, batch.</summary>
    public static readonly TheoryData<int, int, int, int, int, int, bool, int, int, int> Convolutions = new()
    {
        { 7, 6, 1, 3, 3, 1, false, 1, 8, 2 },
        { 8, 9, 3, 3, 3, 2, true, 1, 16, 3 },     // the MobileNet stem's windows: padding at the bottom and right
        { 13, 13, 1, 5, 5, 2, false, 1, 4, 2 },   // runs of five read in vectors of four: three floats past, two a step
        { 11, 12, 2, 5, 5, 2, false, 1, 3, 2 },   // runs of ten, the last column unread
        { 7, 7, 1, 5, 5, 2, false, 1, 4, 2 },     // two windows a row: the first's vectors would read a float past the images
        { 9, 12, 2, 3, 9, 2, false, 1, 6, 2 },    // runs of 18 in vectors of eight, six floats past, two windows a row
        { 9, 9, 17, 3, 3, 1, true, 2, 5, 2 },     // dilated
        { 7, 8, 8, 2, 3, 2, false, 1, 4, 3 },
        { 14, 14, 16, 3, 3, 1, true, 1, 8, 2 },   // the autoencoder's second layer: a few filters, the kernel gradient from the input
        { 12, 12, 8, 3, 3, 1, true, 1, 32, 2 },
        { 10, 10, 16, 1, 1, 1, false, 1, 64, 2 }, // pointwise: the input is its own patches
        { 28, 28, 1, 3, 3, 1, false, 1, 32, 2 },  // the small CNN's first layer
        { 6, 7, 41, 3, 3, 1, true, 1, 3, 2 },
        { 10, 10, 4, 3, 3, 3, false, 1, 12, 2 },
        { 5, 5, 2, 4, 4, 1, true, 1, 1, 3 },
    };

    public static IEnumerable<object[]> ConvolutionsOnEveryPath => KernelSettings.OnEveryPath(Convolutions);

    [Theory, MemberData(nameof(ConvolutionsOnEveryPath))]
    public void Convolution_kernels_stay_within_their_operands(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride,
        bool same, int dilation, int filters, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        int imageFloats = batch * height * width * channels, patchFloats = batch * window.Positions * window.PatchSize, outputFloats = batch * window.Positions * filters;
        var (input, kernel, bias, values) = (Random(imageFloats, 1), Random(window.PatchSize * filters, 2), Random(filters, 3), Random(outputFloats, 4));
        foreach (int threads in new[] { 1, 2 })
        {
            KernelSettings.OnThreads(threads, () =>
            {
                StaysWithin([input, new float[patchFloats]], m => Convolution.Im2Col(m[0].Span, m[1].Span, window, batch));
                foreach (bool keepPatches in new[] { true, false })
                {
                    StaysWithin([input, new float[patchFloats], kernel, new float[outputFloats], bias],
                        m => Convolution.Forward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, window, filters, batch, m[4].Span, relu: true, keepPatches));
                }
                StaysWithin([values, kernel, Random(imageFloats, 5)],
                    m => Convolution.Transposed(m[0].Span, m[1].Span, m[3].Span, m[2].Span, window, filters, batch, accumulate: true),
                    scratch: Convolution.TransposedScratch(window, batch));
                StaysWithin([Random(patchFloats, 6), new float[imageFloats]], m => Convolution.Col2Im(m[0].Span, m[1].Span, window, batch, accumulate: false));
                if (Convolution.TakesKernelGradientFromInput(window, filters))
                    StaysWithin([input, values, new float[kernel.Length]], m => Convolution.KernelGradient(m[0].Span, m[1].Span, m[2].Span, window, filters, batch));
            });
        }
    }

    /// <summary>A convolution and the 2x2 max pooling after it, taken in one pass where it can, and their gradients at the pooling's winners.</summary>
    [Theory, MemberData(nameof(ConvolutionsOnEveryPath))]
    public void Pooled_convolution_kernels_stay_within_their_operands(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride,
        bool same, int dilation, int filters, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        if (window.OutputHeight < 2 || window.OutputWidth < 2) return;
        var pool = new Window(window.OutputHeight, window.OutputWidth, filters, 2, 2, 2, 2, Same: false);
        int imageFloats = batch * height * width * channels, patchFloats = batch * window.Positions * window.PatchSize;
        int convolvedFloats = batch * window.Positions * filters, pooledFloats = batch * pool.Positions * filters;
        var (input, kernel, bias) = (Random(imageFloats, 1), Random(window.PatchSize * filters, 2), Random(filters, 3));
        foreach (int threads in new[] { 1, 2 })
        {
            KernelSettings.OnThreads(threads, () =>
            {
                foreach (bool training in new[] { true, false })
                {
                    // The winners go as floats' bits; the convolution's output is left alone where the two run as one, so it starts as zeros either way.
                    StaysWithin([input, new float[patchFloats], kernel, new float[convolvedFloats], new float[pooledFloats], new float[pooledFloats], bias],
                        m => Convolution.ForwardMaxPooled(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, Integers(m[5]), window, pool, filters, batch,
                            m[6].Span, relu: true, training));
                }
                var patches = new float[patchFloats];
                var winners = new int[pooledFloats];
                Convolution.ForwardMaxPooled(input, patches, kernel, new float[convolvedFloats], new float[pooledFloats], winners, window, pool, filters, batch, bias,
                    relu: true, training: true);
                var winnerBits = MemoryMarshal.Cast<int, float>(winners).ToArray();
                var pooledGradient = Random(pooledFloats, 4);
                StaysWithin([pooledGradient, winnerBits, input, patches, new float[kernel.Length]],
                    m => Convolution.KernelGradientAtWinners(m[0].Span, Integers(m[1]), m[2].Span, m[3].Span, m[4].Span, window, pool, filters, batch));
                StaysWithin([pooledGradient, winnerBits, kernel, new float[imageFloats]],
                    m => Convolution.InputGradientAtWinners(m[0].Span, Integers(m[1]), m[2].Span, m[3].Span, window, pool, filters, batch, accumulate: false));
            });
        }
    }

    /// <summary>The convolutions' windows, without their filters.</summary>
    public static IEnumerable<object[]> WindowsOnEveryPath => KernelSettings.OnEveryPath(Convolutions.Select(row => row.Where((_, i) => i != 8).ToArray()));

    [Theory, MemberData(nameof(WindowsOnEveryPath))]
    public void Depthwise_and_pooling_kernels_stay_within_their_operands(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride,
        bool same, int dilation, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        int imageFloats = batch * height * width * channels;
        var input = Random(imageFloats, 1);
        foreach (int threads in new[] { 1, 2 })
        {
            KernelSettings.OnThreads(threads, () =>
            {
                foreach (int multiplier in new[] { 1, 2 })
                {
                    int depth = channels * multiplier, outputFloats = batch * window.Positions * depth, kernelFloats = kernelHeight * kernelWidth * depth;
                    var (kernel, bias) = (Random(kernelFloats, 2), Random(depth, 3));
                    StaysWithin([input, kernel, bias, new float[outputFloats]],
                        m => DepthwiseConvolution.Forward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, window, multiplier, batch, relu: true));
                    StaysWithin([Random(outputFloats, 4), input, kernel, new float[kernelFloats], new float[depth], new float[imageFloats]],
                        m => DepthwiseConvolution.Backward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, window, multiplier, batch,
                            computeWeights: true, accumulateWeights: false, accumulateInput: false));
                }
                // The convolution's window as a pooling's (undilated: poolings have no dilation).
                var pool = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same);
                int pooledFloats = batch * pool.Positions * channels;
                var winners = new float[pooledFloats];
                StaysWithin([input, new float[pooledFloats], winners], m => Pooling.MaxForward(m[0].Span, m[1].Span, Integers(m[2]), pool, batch));
                Pooling.MaxForward(input, new float[pooledFloats], Integers(winners), pool, batch);
                var gradient = Random(pooledFloats, 5);
                StaysWithin([gradient, winners, Random(imageFloats, 6)], m => Pooling.MaxBackward(m[0].Span, Integers(m[1]), m[2].Span, pool, batch, accumulate: true));
                StaysWithin([input, new float[pooledFloats]], m => Pooling.AverageForward(m[0].Span, m[1].Span, pool, batch));
                StaysWithin([gradient, new float[imageFloats]], m => Pooling.AverageBackward(m[0].Span, m[1].Span, pool, batch, accumulate: false));
            });
        }
    }

    /// <summary>m, k, n: tiles cut at every edge, a product too small to share, one wide enough for the packed path and its parts.</summary>
    public static readonly TheoryData<int, int, int> Products = new()
    {
        { 1, 1, 1 }, { 3, 5, 7 }, { 1, 256, 100 }, { 17, 33, 65 }, { 128, 10, 128 }, { 37, 300, 47 }, { 130, 129, 131 },
    };

    public static IEnumerable<object[]> ProductsOnEveryPath => KernelSettings.OnEveryPath(Products);

    [Theory, MemberData(nameof(ProductsOnEveryPath))]
    public void Products_stay_within_their_operands(int m, int k, int n, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (a, b, bias, c) = (Random(m * k, 1), Random(k * n, 2), Random(n, 3), Random(m * n, 4));
        foreach (int threads in new[] { 1, 2 })
        {
            KernelSettings.OnThreads(threads, () =>
            {
                StaysWithin([a, b, new float[m * n], bias], o => Gemm.Multiply(o[0].Span, o[1].Span, o[2].Span, m, k, n, o[3].Span, relu: true));
                StaysWithin([a, b, c], o => Gemm.Multiply(o[0].Span, o[1].Span, o[2].Span, m, k, n, accumulate: true));
                // aᵀ·b with a (k, m), and a·bᵀ with b (n, k): the same floats read the other way.
                StaysWithin([Random(k * m, 5), b, c], o => Gemm.MultiplyTransposedA(o[0].Span, o[1].Span, o[2].Span, m, k, n, accumulate: true));
                StaysWithin([a, Random(n * k, 6), new float[m * n]], o => Gemm.MultiplyTransposedB(o[0].Span, o[1].Span, o[2].Span, m, k, n));
            });
        }
    }

    /// <summary>
    /// Runs <paramref name="kernel"/> on <paramref name="operands"/> as managed arrays, then on copies of them in guarded memory,
    /// all against their guards' ends and then all against their starts, and asserts every operand comes out the same bits.
    /// Scratch operands of the given lengths come after them, guarded too, their contents not compared (which core's part
    /// lands where in a scratch may differ between runs).
    /// </summary>
    private static void StaysWithin(float[][] operands, Action<Memory<float>[]> kernel, params int[] scratch)
    {
        var expected = operands.Select(o => (float[])o.Clone()).ToArray();
        kernel([.. expected.Select(o => new Memory<float>(o)), .. scratch.Select(length => new Memory<float>(new float[length]))]);
        foreach (bool atEnd in new[] { true, false })
        {
            var guarded = operands.Select(o => o.Length).Concat(scratch).Select(length => atEnd ? GuardedMemory.AtEnd(length) : GuardedMemory.AtStart(length)).ToArray();
            try
            {
                for (int i = 0; i < operands.Length; i++) operands[i].CopyTo(guarded[i].GetSpan());
                kernel([.. guarded.Select(g => g.Memory)]);
                for (int i = 0; i < operands.Length; i++)
                {
                    var want = MemoryMarshal.Cast<float, int>(expected[i].AsSpan());
                    var got = MemoryMarshal.Cast<float, int>(guarded[i].GetSpan());
                    int at = want.CommonPrefixLength(got);
                    Assert.True(at == want.Length, $"operand {i} against the guard {(atEnd ? "after" : "before")} it: float {at} of {want.Length} is " +
                        $"{(at < got.Length ? BitConverter.Int32BitsToSingle(got[at]) : float.NaN)}, on managed arrays {(at < want.Length ? BitConverter.Int32BitsToSingle(want[at]) : float.NaN)}");
                }
            }
            finally
            {
                foreach (var memory in guarded) ((IDisposable)memory).Dispose();
            }
        }
    }

    private static Span<int> Integers(Memory<float> floats) => MemoryMarshal.Cast<float, int>(floats.Span);

    private static float[] Random(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }
}
