using System.Runtime.InteropServices;
using ModelGen.Kernels;
using ModelGen.Training;
using static ModelGen.Runtime.Tests.TestValues;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// The kernels read and write through raw pointers a vector at a time, and some read a little past a run on purpose where
/// they know the memory is there (im2col's spill, the direct passes' windows in place): here each runs with every operand in
/// <see cref="GuardedMemory"/>, first ending just before a page nothing may touch, then starting just after one, so a read
/// or write outside an operand faults (ending the run with the kernel on the stack), and must leave every operand as it
/// leaves managed arrays, bit for bit, which the guarded operands' odd alignment must not change either. The runtime's own
/// buffers the calling thread allocates meanwhile are guarded the same way (<see cref="GuardedPages.Guard"/>): the scratches
/// kernels rent and the buffers of workspaces and optimizers made inside a run, each exactly as long as asked for (the
/// helper thread's scratches are not: on one core its parts run on this thread). On every SIMD path (the ones the machine
/// lacks emulated) and on one core and two.
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
        { 28, 28, 16, 3, 3, 1, true, 1, 1, 2 },   // the autoencoder's last layer: transposed in place, eight pixels of a row's inside at a time
        { 12, 13, 32, 3, 3, 1, true, 1, 3, 2 },   // the same with three value channels, a row's inside of eight pixels and three
        { 16, 16, 8, 3, 3, 1, false, 1, 8, 2 },   // transposed in place on 256-bit vectors from eight value channels: insides of 12, eight pixels and four
        { 12, 12, 8, 3, 3, 1, true, 1, 32, 2 },
        { 10, 10, 16, 1, 1, 1, false, 1, 64, 2 }, // pointwise: the input is its own patches
        { 28, 28, 1, 3, 3, 1, false, 1, 32, 2 },  // the small CNN's first layer
        { 6, 7, 41, 3, 3, 1, true, 1, 3, 2 },
        { 10, 10, 4, 3, 3, 3, false, 1, 12, 2 },
        { 5, 5, 2, 4, 4, 1, true, 1, 1, 3 },
        { 16, 16, 64, 3, 3, 1, true, 1, 32, 2 },  // deep 'same' at 32 filters: eight-pixel passes at inference, rows copied in bands of 12 and 4; transposed directly at 64
        { 16, 16, 32, 3, 3, 1, true, 1, 32, 2 },  // the ResNet block's: transposed directly at 32, eight-pixel passes added from scratch
        { 12, 12, 32, 3, 3, 1, false, 1, 64, 2 }, // deep 'valid' at 64 filters: on AVX-512 rows of ten, a pass of six and one of four that ends at the images' end
    };

    [Theory, MemberData(nameof(Convolutions))]
    public void Convolution_kernels_stay_within_their_operands(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride,
        bool same, int dilation, int filters, int batch)
    {
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        int imageFloats = batch * height * width * channels, patchFloats = batch * window.Positions * window.PatchSize, outputFloats = batch * window.Positions * filters;
        var (input, kernel, bias, values) = (Uniform(imageFloats, 1), Uniform(window.PatchSize * filters, 2), Uniform(filters, 3), Uniform(outputFloats, 4));
        Everywhere(() =>
        {
            StaysWithin([input, new float[patchFloats]], m => Convolution.Im2Col(m[0].Span, m[1].Span, window, batch));
            foreach (bool keepPatches in new[] { true, false })
            {
                StaysWithin([input, new float[patchFloats], kernel, new float[outputFloats], bias],
                    m => Convolution.Forward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, window, filters, batch, m[4].Span, relu: true, keepPatches));
            }
            // With a BatchNormalization at inference applied to the outputs, its four operands one float a filter, and a residual added.
            StaysWithin([input, kernel, new float[outputFloats], bias, Uniform(filters, 6), Uniform(filters, 7), Uniform(filters, 8), Uniform(filters, 9).Select(v => v * v + 0.1f).ToArray(),
                Uniform(outputFloats, 10)],
                m => Convolution.Forward(m[0].Span, Span<float>.Empty, m[1].Span, m[2].Span, window, filters, batch, m[3].Span, relu: true, keepPatches: false,
                    new BatchNormAtInference(m[4].Span, m[5].Span, m[6].Span, m[7].Span, 0.001f, relu: true, residual: m[8].Span)));
            StaysWithin([values, kernel, Uniform(imageFloats, 5)],
                m => Convolution.Transposed(m[0].Span, m[1].Span, m[3].Span, m[2].Span, window, filters, batch, accumulate: true),
                scratch: Convolution.TransposedScratch(window, filters, batch));
            // From and onto an UpSampling2D(2, 2)'s input, where the window's image is its output.
            if (height % 2 == 0 && width % 2 == 0)
            {
                var small = Uniform(imageFloats / 4, 10);
                StaysWithin([values, kernel, (float[])small.Clone()],
                    m => Convolution.Transposed(m[0].Span, m[1].Span, m[3].Span, m[2].Span, window, filters, batch, accumulate: true, upsampledRows: 2, upsampledColumns: 2),
                    scratch: Convolution.TransposedScratch(window, filters, batch, upsampled: true));
                StaysWithin([small, kernel, new float[outputFloats], bias],
                    m => Convolution.Forward(m[0].Span, Span<float>.Empty, m[1].Span, m[2].Span, window, filters, batch, m[3].Span, relu: true, keepPatches: false,
                        upsampledRows: 2, upsampledColumns: 2));
                if (Convolution.TakesKernelGradientFromInput(window, filters))
                    StaysWithin([small, values, new float[kernel.Length]],
                        m => Convolution.KernelGradient(m[0].Span, m[1].Span, m[2].Span, window, filters, batch, upsampledRows: 2, upsampledColumns: 2));
            }
            StaysWithin([Uniform(patchFloats, 6), new float[imageFloats]], m => Convolution.Col2Im(m[0].Span, m[1].Span, window, batch, accumulate: false));
            if (Convolution.TakesKernelGradientFromInput(window, filters))
                StaysWithin([input, values, new float[kernel.Length]], m => Convolution.KernelGradient(m[0].Span, m[1].Span, m[2].Span, window, filters, batch));
        });
    }

    /// <summary>A convolution and the 2x2 max pooling after it, taken in one pass where it can, and their gradients at the pooling's winners.</summary>
    [Theory, MemberData(nameof(Convolutions))]
    public void Pooled_convolution_kernels_stay_within_their_operands(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride,
        bool same, int dilation, int filters, int batch)
    {
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        var pool = new Window(window.OutputHeight, window.OutputWidth, filters, 2, 2, 2, 2, Same: false);
        int imageFloats = batch * height * width * channels, patchFloats = batch * window.Positions * window.PatchSize;
        int convolvedFloats = batch * window.Positions * filters, pooledFloats = batch * pool.Positions * filters;
        var (input, kernel, bias) = (Uniform(imageFloats, 1), Uniform(window.PatchSize * filters, 2), Uniform(filters, 3));
        Everywhere(() =>
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
            var pooledGradient = Uniform(pooledFloats, 4);
            StaysWithin([pooledGradient, winnerBits, input, new float[kernel.Length]],
                m => Convolution.KernelGradientAtWinners(m[0].Span, Integers(m[1]), m[2].Span, m[3].Span, window, pool, filters, batch));
            StaysWithin([pooledGradient, winnerBits, kernel, new float[imageFloats]],
                m => Convolution.InputGradientAtWinners(m[0].Span, Integers(m[1]), m[2].Span, m[3].Span, window, pool, filters, batch, accumulate: false));
        });
    }

    /// <summary>The convolutions' windows: their rows without the filters (the ninth value).</summary>
    public static IEnumerable<object[]> Windows => Convolutions.Select(row => row.Where((_, i) => i != 8).ToArray());

    [Theory, MemberData(nameof(Windows))]
    public void Depthwise_and_pooling_kernels_stay_within_their_operands(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride,
        bool same, int dilation, int batch)
    {
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        int imageFloats = batch * height * width * channels;
        var input = Uniform(imageFloats, 1);
        Everywhere(() =>
        {
            foreach (int multiplier in new[] { 1, 2 })
            {
                int depth = channels * multiplier, outputFloats = batch * window.Positions * depth, kernelFloats = kernelHeight * kernelWidth * depth;
                var (kernel, bias) = (Uniform(kernelFloats, 2), Uniform(depth, 3));
                StaysWithin([input, kernel, bias, new float[outputFloats]],
                    m => DepthwiseConvolution.Forward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, window, multiplier, batch, relu: true));
                // With a BatchNormalization at inference applied to the outputs, its four operands one float an output channel.
                StaysWithin([input, kernel, bias, new float[outputFloats], Uniform(depth, 6), Uniform(depth, 7), Uniform(depth, 8), Uniform(depth, 9).Select(v => v * v + 0.1f).ToArray(),
                    Uniform(outputFloats, 10)],
                    m => DepthwiseConvolution.Forward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, window, multiplier, batch, relu: true,
                        new BatchNormAtInference(m[4].Span, m[5].Span, m[6].Span, m[7].Span, 0.001f, relu: true, residual: m[8].Span)));
                StaysWithin([Uniform(outputFloats, 4), input, kernel, new float[kernelFloats], new float[depth], new float[imageFloats]],
                    m => DepthwiseConvolution.Backward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, window, multiplier, batch,
                        computeWeights: true, accumulateWeights: false, accumulateInput: false));
            }
            // The convolution's window as a pooling's (undilated: poolings have no dilation).
            var pool = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same);
            int pooledFloats = batch * pool.Positions * channels;
            var winners = new float[pooledFloats];
            StaysWithin([input, new float[pooledFloats], winners], m => Pooling.MaxForward(m[0].Span, m[1].Span, Integers(m[2]), pool, batch));
            Pooling.MaxForward(input, new float[pooledFloats], Integers(winners), pool, batch);
            var gradient = Uniform(pooledFloats, 5);
            StaysWithin([gradient, winners, Uniform(imageFloats, 6)], m => Pooling.MaxBackward(m[0].Span, Integers(m[1]), m[2].Span, pool, batch, accumulate: true));
            StaysWithin([input, new float[pooledFloats]], m => Pooling.AverageForward(m[0].Span, m[1].Span, pool, batch));
            StaysWithin([gradient, new float[imageFloats]], m => Pooling.AverageBackward(m[0].Span, m[1].Span, pool, batch, accumulate: false));
        });
    }

    /// <summary>m, k, n: tiles cut at every edge, a product too small to share, one wide enough for the packed path and its parts.</summary>
    public static readonly TheoryData<int, int, int> Products = new()
    {
        { 1, 1, 1 }, { 3, 5, 7 }, { 1, 256, 100 }, { 17, 33, 65 }, { 128, 10, 128 }, { 37, 300, 47 }, { 130, 129, 131 },
        // Whole rows of C in one edge tile, each row's last vector stored whole over the next rows' first values: a classifier's
        // 10 outputs, one output (a store reaching fifteen rows on), 20 (a whole vector and a part on AVX-512).
        { 128, 8, 10 }, { 45, 16, 1 }, { 50, 20, 20 },
    };

    [Theory, MemberData(nameof(Products))]
    public void Products_stay_within_their_operands(int m, int k, int n)
    {
        var (a, b, bias, c) = (Uniform(m * k, 1), Uniform(k * n, 2), Uniform(n, 3), Uniform(m * n, 4));
        Everywhere(() =>
        {
            StaysWithin([a, b, new float[m * n], bias], o => Gemm.Multiply(o[0].Span, o[1].Span, o[2].Span, m, k, n, o[3].Span, relu: true));
            StaysWithin([a, b, c], o => Gemm.Multiply(o[0].Span, o[1].Span, o[2].Span, m, k, n, accumulate: true));
            // aᵀ·b with a (k, m), and a·bᵀ with b (n, k): the same floats read the other way.
            StaysWithin([Uniform(k * m, 5), b, c], o => Gemm.MultiplyTransposedA(o[0].Span, o[1].Span, o[2].Span, m, k, n, accumulate: true));
            StaysWithin([a, Uniform(n * k, 6), new float[m * n]], o => Gemm.MultiplyTransposedB(o[0].Span, o[1].Span, o[2].Span, m, k, n));
        });
    }

    /// <summary>
    /// A product whose rows both cores take in blocks against one copy of B, packed by both into shared panels of 16 MB and
    /// more (Gemm.OutgrowCaches), written past the caches with aligned non-temporal stores where the panels' scratch starts on
    /// a line. Against a guard's end the scratch starts where its length puts it: 4095 deep and 1032 columns make the
    /// portable path's panels of eight-float tiles 4,226,040 floats, half a line off, which it packs with ordinary stores;
    /// AVX2's and AVX-512's wider tiles (1040 and 1056 columns) keep theirs on a line, which they stream into.
    /// </summary>
    [Fact]
    public void Panels_shared_past_the_caches_stay_within_their_scratch()
    {
        const int m = 1026, k = 4095, n = 1032; // A of more than 16 MB: blocks of rows, not slices of columns
        var (a, b, bias) = (Uniform(m * k, 1), Uniform(k * n, 2), Uniform(n, 3));
        // Two threads only: on one no panels are shared.
        Everywhere(() => StaysWithin([a, b, new float[m * n], bias], o => Gemm.Multiply(o[0].Span, o[1].Span, o[2].Span, m, k, n, o[3].Span, relu: true)), threads: [2]);
    }

    /// <summary>
    /// Rows, columns: one value, rows shorter than a vector, a vector and a remainder on every width, many short rows (softmax
    /// in blocks of sixteen on AVX-512: a last block of thirteen, one block and seven rows after it).
    /// </summary>
    public static readonly TheoryData<int, int> Rows = new()
    {
        { 1, 1 }, { 3, 5 }, { 7, 17 }, { 2, 33 }, { 5, 64 }, { 4, 100 }, { 64, 10 }, { 129, 31 }, { 45, 2 }, { 23, 13 },
    };

    /// <summary>Activations, softmax, normalizations, losses and merges over rows of <paramref name="columns"/> values.</summary>
    [Theory, MemberData(nameof(Rows))]
    public void Row_kernels_stay_within_their_operands(int rows, int columns)
    {
        int values = rows * columns;
        var (x, other, gradient, scale, shift) = (Uniform(values, 1), Uniform(values, 2), Uniform(values, 3), Uniform(columns, 4), Uniform(columns, 5));
        var probabilities = Uniform(values, 6).Select(v => Math.Abs(v) + 1e-3f).ToArray();
        var oneHot = new float[values];
        var labels = Enumerable.Range(0, rows).Select(row => (float)(row * 7 % columns)).ToArray();
        for (int row = 0; row < rows; row++) oneHot[row * columns + (int)labels[row]] = 1f;
        var variance = Uniform(columns, 7).Select(v => Math.Abs(v) + 0.1f).ToArray();
        Everywhere(() =>
        {
            foreach (var activation in Enum.GetValues<Activation>())
            {
                StaysWithin([x, new float[values]], m => Activations.Forward(activation, m[0].Span, m[1].Span, rows, columns));
                StaysWithin([probabilities, gradient], m => Activations.Backward(activation, m[0].Span, m[1].Span, rows, columns));
                if (Activations.IsElementwise(activation))
                    StaysWithin([probabilities, gradient, other], m => Activations.Backward(activation, m[0].Span, m[1].Span, m[2].Span, rows, columns, accumulate: true));
            }
            StaysWithin([x, new float[values]], m => Activations.Softmax(m[0].Span, m[1].Span, rows, columns));
            StaysWithin([x, scale], m => Reductions.SumRows(m[0].Span, m[1].Span, rows, columns, accumulate: true));
            StaysWithin([x, scale], m => Reductions.AddToRows(m[0].Span, m[1].Span, rows, columns));

            // shift serves as beta and as the means (moving, or the batch's); variance as the moving variances and as the batch's
            // inverse standard deviations.
            StaysWithin([x, new float[values], scale, shift, new float[columns], new float[columns], new float[columns]],
                m => BatchNorm.TrainingForward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, m[6].Span, rows, columns, 1e-3f));
            StaysWithin([x, new float[values], scale, shift, shift, variance],
                m => BatchNorm.InferenceForward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, rows, columns, 1e-3f));
            StaysWithin([gradient, x, scale, shift, variance, new float[values], new float[columns], new float[columns]],
                m => BatchNorm.TrainingBackward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, m[6].Span, m[7].Span, rows, columns,
                    computeInput: true, accumulateInput: false, computeWeights: true, accumulateWeights: false));
            StaysWithin([gradient, x, scale, shift, variance, new float[values], new float[columns], new float[columns], shift],
                m => BatchNorm.TrainingBackward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, m[6].Span, m[7].Span, rows, columns,
                    computeInput: true, accumulateInput: false, computeWeights: true, accumulateWeights: false, relu: true, beta: m[8].Span));
            StaysWithin([gradient, scale, variance, new float[values]],
                m => BatchNorm.InferenceBackward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, rows, columns, 1e-3f, accumulate: false));

            var (rowMeans, rowInverseDeviations) = (Uniform(rows, 8), Uniform(rows, 9).Select(v => Math.Abs(v) + 0.1f).ToArray());
            StaysWithin([x, new float[values], scale, shift, new float[rows], new float[rows]],
                m => LayerNorm.Forward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, rows, columns, 1e-3f));
            StaysWithin([x, other, new float[values], new float[values], scale, shift, new float[rows], new float[rows]],
                m => LayerNorm.Forward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, m[6].Span, m[7].Span, rows, columns, 1e-3f));
            StaysWithin([gradient, x, scale, rowMeans, rowInverseDeviations, new float[values], new float[columns], new float[columns]],
                m => LayerNorm.Backward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, m[6].Span, m[7].Span, rows, columns,
                    computeInput: true, accumulateInput: false, computeWeights: true, accumulateWeights: false));

            // The loss's value goes out through a one-float operand, so it is compared too.
            foreach (var (loss, targets) in new[] { (Loss.MeanSquaredError, other), (Loss.BinaryCrossentropy, oneHot), (Loss.CategoricalCrossentropy, oneHot),
                (Loss.SparseCategoricalCrossentropy, labels) })
            {
                StaysWithin([probabilities, targets, new float[values], new float[1]],
                    m => m[3].Span[0] = Losses.Compute(loss, m[0].Span, m[1].Span, m[2].Span, rows, columns, "Guarded", "output"));
                if (loss is Loss.CategoricalCrossentropy or Loss.SparseCategoricalCrossentropy)
                    StaysWithin([probabilities, targets, new float[values], new float[1]],
                        m => m[3].Span[0] = Losses.ComputeThroughSoftmax(loss, m[0].Span, m[1].Span, m[2].Span, rows, columns, "Guarded", "output"));
            }

            foreach (var operation in new[] { MergeOperation.Add, MergeOperation.Subtract, MergeOperation.Multiply, MergeOperation.Maximum, MergeOperation.Minimum })
            {
                StaysWithin([x, other, new float[values]], m => Merges.Combine(operation, m[0].Span, m[1].Span, m[2].Span, values));
                // The sums' operands take the output gradient as it is (Merges.Pass); the others have a gradient of their own.
                if (operation is MergeOperation.Multiply or MergeOperation.Maximum or MergeOperation.Minimum)
                    StaysWithin([gradient, x, other, Uniform(values, 10)],
                        m => Merges.OperandGradient(operation, m[0].Span, m[1].Span, m[2].Span, operandIsFirst: false, m[3].Span, values, accumulate: true));
            }
            StaysWithin([x], m => Merges.Scale(m[0].Span, values, 0.5f));
            StaysWithin([x, other, new float[rows]], m => Merges.Dot(m[0].Span, m[1].Span, m[2].Span, columns, rows));
            StaysWithin([Uniform(rows, 11), other, Uniform(values, 12)], m => Merges.DotBackward(m[0].Span, m[1].Span, m[2].Span, columns, rows, accumulate: true));
        });
    }

    /// <summary>Height, width, channels, batch: UpSampling2D by 2 x 3, and ZeroPadding2D of one row on top, two columns left and one right.</summary>
    [Theory]
    [InlineData(1, 1, 1, 1)]
    [InlineData(3, 5, 7, 2)]
    [InlineData(14, 14, 16, 3)]
    [InlineData(4, 6, 33, 5)]
    public void Resampling_kernels_stay_within_their_operands(int height, int width, int channels, int batch)
    {
        int imageFloats = batch * height * width * channels, upFloats = imageFloats * 6, paddedFloats = batch * (height + 1) * (width + 3) * channels;
        var (input, up, padded) = (Uniform(imageFloats, 1), Uniform(upFloats, 2), Uniform(paddedFloats, 3));
        Everywhere(() =>
        {
            StaysWithin([input, new float[upFloats]], m => UpSampling.Forward(m[0].Span, m[1].Span, height, width, channels, 2, 3, batch));
            StaysWithin([up, Uniform(imageFloats, 4)], m => UpSampling.Backward(m[0].Span, m[1].Span, height, width, channels, 2, 3, batch, accumulate: true));
            StaysWithin([input, new float[paddedFloats]], m => ZeroPadding.Forward(m[0].Span, m[1].Span, height, width, channels, 1, 0, 2, 1, batch));
            StaysWithin([padded, new float[imageFloats]], m => ZeroPadding.Backward(m[0].Span, m[1].Span, height, width, channels, 1, 0, 2, 1, batch, accumulate: false));
        });
    }

    /// <summary>
    /// Batch, steps, vocabulary, embedding width: Embedding (ids with padding zeros, masked), its mean over the steps, a
    /// masked GlobalAveragePooling1D and their gradients.
    /// </summary>
    [Theory]
    [InlineData(1, 1, 2, 1)]
    [InlineData(3, 7, 11, 5)]
    [InlineData(4, 20, 50, 17)]
    [InlineData(5, 9, 30, 64)]
    public void Sequence_kernels_stay_within_their_operands(int batch, int steps, int vocabulary, int width)
    {
        int count = batch * steps, rowFloats = count * width;
        // Each sample's last step is the padding id 0.
        var ids = Enumerable.Range(0, count).Select(i => i % steps == steps - 1 ? 0f : i * 7 % vocabulary).ToArray();
        var (table, rows, gradient, meanGradient) = (Uniform(vocabulary * width, 1), Uniform(rowFloats, 2), Uniform(rowFloats, 3), Uniform(batch * width, 4));
        var mask = ids.Select(id => id == 0f ? 0f : 1f).ToArray();
        Everywhere(() =>
        {
            StaysWithin([ids, table, new float[rowFloats], new float[count]],
                m => EmbeddingKernel.Forward(m[0].Span, m[1].Span, m[2].Span, m[3].Span, count, vocabulary, width, "Guarded", "embedding"));
            StaysWithin([gradient, ids, new float[table.Length]], m => EmbeddingKernel.Backward(m[0].Span, m[1].Span, m[2].Span, count, vocabulary, width, accumulate: false));
            StaysWithin([ids, table, new float[batch * width]],
                m => EmbeddingKernel.MeanForward(m[0].Span, m[1].Span, m[2].Span, batch, steps, vocabulary, width, maskZero: true, "Guarded", "embedding"));
            StaysWithin([meanGradient, ids, Uniform(table.Length, 5)],
                m => EmbeddingKernel.MeanBackward(m[0].Span, m[1].Span, m[2].Span, batch, steps, vocabulary, width, maskZero: true, accumulate: true));
            StaysWithin([rows, mask, new float[batch * width]], m => SequencePooling.AverageForward(m[0].Span, m[1].Span, m[2].Span, batch, steps, width));
            StaysWithin([meanGradient, mask, Uniform(rowFloats, 6)],
                m => SequencePooling.AverageBackward(m[0].Span, m[1].Span, m[2].Span, batch, steps, width, accumulate: true));
        });
    }

    /// <summary>Two steps of each optimizer over parameter buffers from one float to a few vectors and a remainder.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(15)]
    [InlineData(1001)]
    public void Optimizers_stay_within_their_operands(int parameters)
    {
        var (weights, gradients, replicaGradients) = (Uniform(parameters, 1), Uniform(parameters, 2), Uniform(parameters, 3));
        Everywhere(() =>
        {
            foreach (var create in new Func<Optimizer>[] { () => new Adam(), () => new Sgd(0.1f, momentum: 0.9f, nesterov: true), () => new Sgd(0.1f) })
            {
                StaysWithin([weights, gradients], m =>
                {
                    var optimizer = create();
                    optimizer.Step(m[0].Span, m[1].Span);
                    optimizer.Step(m[0].Span, m[1].Span);
                });
                // After a step in parts: the replica's gradients added and the update made by halves of the buffer.
                StaysWithin([weights, gradients, replicaGradients], m =>
                {
                    var optimizer = create();
                    BatchParts.Update(optimizer, m[0].Span, m[1].Span, m[2].Span);
                    BatchParts.Update(optimizer, m[0].Span, m[1].Span, m[2].Span);
                });
            }
        });
    }

    /// <summary>A layer's forward pass over every step (one sample's last steps masked), then its backward pass, weights and input.</summary>
    [Theory]
    [InlineData(RecurrentCell.Lstm, 3, 5, 7, 2)]
    [InlineData(RecurrentCell.Lstm, 4, 3, 16, 5)]
    [InlineData(RecurrentCell.Lstm, 2, 17, 33, 3)]
    [InlineData(RecurrentCell.Gru, 3, 5, 7, 2)]
    [InlineData(RecurrentCell.Gru, 4, 3, 16, 5)]
    [InlineData(RecurrentCell.Gru, 2, 17, 33, 3)]
    public void Recurrent_kernels_stay_within_their_operands(RecurrentCell cell, int steps, int features, int units, int batch)
    {
        int gates = (cell == RecurrentCell.Lstm ? 4 : 3) * units, outputFloats = batch * steps * units;
        var (input, kernel, recurrentKernel) = (Uniform(batch * steps * features, 1), Uniform(features * gates, 2), Uniform(units * gates, 3));
        var (bias, outputGradient) = (Uniform(cell == RecurrentCell.Lstm ? gates : 2 * gates, 4), Uniform(outputFloats, 5));
        var mask = Enumerable.Range(0, batch * steps).Select(i => i == steps - 1 || i == steps - 2 ? 0f : 1f).ToArray();
        Everywhere(() => StaysWithin(
            [input, mask, kernel, recurrentKernel, bias, new float[outputFloats], outputGradient, new float[kernel.Length], new float[recurrentKernel.Length],
                new float[bias.Length], new float[input.Length]],
            m =>
            {
                var work = new RecurrentWorkspace(cell, batch, steps, features, units, forTraining: true);
                Recurrent.Forward(work, m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, m[5].Span, units, 0, batch, returnSequences: true, reverse: false);
                Recurrent.Backward(work, m[6].Span, units, 0, m[2].Span, m[3].Span, m[7].Span, m[8].Span, m[9].Span, m[10].Span, batch, returnSequences: true,
                    reverse: false, computeWeights: true, accumulateWeights: false, accumulateInput: false);
            }));
    }

    /// <summary>Multi-head attention forward and backward, causal or with sequence masks (some samples' sequences end early).</summary>
    [Theory]
    [InlineData(2, 5, 7, 3, 4, 2, 3, 5, false)]
    [InlineData(3, 17, 9, 16, 8, 3, 16, 17, true)]
    [InlineData(2, 33, 33, 20, 20, 2, 10, 10, false)]
    public void Attention_kernels_stay_within_their_operands(int batch, int querySteps, int valueSteps, int queryFeatures, int valueFeatures, int heads, int keyDim,
        int valueDim, bool causal)
    {
        var query = Uniform(batch * querySteps * queryFeatures, 1);
        var (key, value) = (Uniform(batch * valueSteps * valueFeatures, 2), Uniform(batch * valueSteps * valueFeatures, 3));
        float[] Steps(int steps) => Enumerable.Range(0, batch * steps).Select(i => i % steps < steps - 2 * (i / steps) ? 1f : 0f).ToArray();
        var (queryMask, valueMask) = causal ? ([], []) : (Steps(querySteps), Steps(valueSteps));
        var (wq, bq, wk, bk) = (Uniform(queryFeatures * heads * keyDim, 4), Uniform(heads * keyDim, 5), Uniform(valueFeatures * heads * keyDim, 6), Uniform(heads * keyDim, 7));
        var (wv, bv, wo, bo) = (Uniform(valueFeatures * heads * valueDim, 8), Uniform(heads * valueDim, 9), Uniform(heads * valueDim * queryFeatures, 10), Uniform(queryFeatures, 11));
        var outputGradient = Uniform(query.Length, 12);
        float[][] weights = [wq, bq, wk, bk, wv, bv, wo, bo];
        // Inputs, masks, the eight weights, the output; then the output's gradient, the weights' and the inputs'.
        Everywhere(() => StaysWithin(
            [query, value, key, queryMask, valueMask, .. weights, new float[query.Length], outputGradient, .. weights.Select(w => new float[w.Length]),
                new float[query.Length], new float[value.Length], new float[key.Length]],
            m =>
            {
                var work = new AttentionWorkspace(batch, querySteps, valueSteps, queryFeatures, valueFeatures, valueFeatures, heads, keyDim, valueDim, causal,
                    forTraining: true);
                Attention.Forward(work, m[0].Span, m[1].Span, m[2].Span, m[3].Span, m[4].Span, default, m[5].Span, m[6].Span, m[7].Span, m[8].Span,
                    m[9].Span, m[10].Span, m[11].Span, m[12].Span, m[13].Span, batch);
                Attention.Backward(work, m[14].Span, m[0].Span, m[1].Span, m[2].Span, m[5].Span, m[7].Span, m[9].Span, m[11].Span, m[15].Span, m[16].Span,
                    m[17].Span, m[18].Span, m[19].Span, m[20].Span, m[21].Span, m[22].Span, m[23].Span, m[24].Span, m[25].Span, batch, computeWeights: true,
                    accumulateWeights: false, accumulateQuery: false, accumulateValue: false, accumulateKey: false);
            }));
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
                using (GuardedPages.Guard(atEnd)) kernel([.. guarded.Select(g => g.Memory)]);
                for (int i = 0; i < operands.Length; i++)
                {
                    var want = MemoryMarshal.Cast<float, int>(expected[i].AsSpan());
                    var got = MemoryMarshal.Cast<float, int>(guarded[i].GetSpan());
                    int at = want.CommonPrefixLength(got);
                    Assert.True(at == want.Length, $"{Simd.Current}, {Helper.Threads} threads: operand {i} against the guard {(atEnd ? "after" : "before")} it: float {at} of {want.Length} is " +
                        $"{(at < got.Length ? BitConverter.Int32BitsToSingle(got[at]) : float.NaN)}, on managed arrays {(at < want.Length ? BitConverter.Int32BitsToSingle(want[at]) : float.NaN)}");
                }
            }
            finally
            {
                foreach (var memory in guarded) ((IDisposable)memory).Dispose();
            }
        }
    }

    /// <summary>Runs <paramref name="run"/> on every SIMD path (those the machine lacks emulated), on one core and on two, or on <paramref name="threads"/>.</summary>
    private static void Everywhere(Action run, int[]? threads = null)
    {
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (int count in threads ?? [1, 2]) KernelSettings.OnThreads(count, run);
        }
    }

    private static Span<int> Integers(Memory<float> floats) => MemoryMarshal.Cast<float, int>(floats.Span);
}
