using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>
/// MaxPooling2D over NHWC samples: each output is its window's maximum; the backward pass routes the gradient to it.
/// AveragePooling2D: each output is the mean of its window's pixels inside the image.
/// </summary>
public static class Pooling
{
    /// <summary>0, 1, 2, ... one per lane: added to a pixel's first index, the index of each channel in a vector.</summary>
    private static Vector<int> Lanes => Vector<int>.Indices;

    /// <summary>
    /// Writes maxima and, when <paramref name="keepWinners"/> (training: the backward pass routes each gradient to its window's
    /// maximum), in <paramref name="winners"/> each maximum's index within its sample; without them (inference) the kernel
    /// leaves out the index arithmetic and half the stores, and <paramref name="winners"/> may be empty.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void MaxForward(ReadOnlySpan<float> input, Span<float> output, Span<int> winners, in Window window, int batch, bool keepWinners = true)
    {
        int imageFloats = window.Height * window.Width * window.Channels, outputFloats = window.Positions * window.Channels;
        Convolution.Require(input.Length >= batch * imageFloats && output.Length >= batch * outputFloats && (!keepWinners || winners.Length >= batch * outputFloats), "Max pooling", window, batch);
        fixed (float* x = input, y = output)
        fixed (int* w = winners)
        {
            var work = new MaxRanges(x, y, keepWinners ? w : null, window, backward: false);
            Convolution.ForOutputRows(ref work, window, batch, imageFloats + (keepWinners ? 2 : 1) * outputFloats);
        }
    }

    /// <summary>Sends each output gradient to its window's maximum; every other pixel's gradient is zero (or unchanged when accumulating).</summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void MaxBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<int> winners, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int imageFloats = window.Height * window.Width * window.Channels, outputFloats = window.Positions * window.Channels;
        Convolution.Require(outputGradient.Length >= batch * outputFloats && winners.Length >= batch * outputFloats && inputGradient.Length >= batch * imageFloats, "Max pooling backward", window, batch);
        fixed (float* dy = outputGradient, dx = inputGradient)
        fixed (int* w = winners)
        {
            var work = new MaxRanges(dx, dy, w, window, backward: true, accumulate);
            Helper.ForRanges(ref work, batch, imageFloats + 2 * outputFloats);
        }
    }

    /// <summary>
    /// Max pooling over a range of output rows (forward) or of samples (backward), counted over the whole batch: images at
    /// <c>image</c>, pooled values (or their gradients) at <c>pooled</c>, the winners at <c>winners</c> (null: not kept).
    /// </summary>
    private readonly unsafe struct MaxRanges(float* image, float* pooled, int* winners, Window window, bool backward, bool accumulate = false) : IRanges
    {
        [MethodImpl(Compiled.Driver)]
        public void Run(int first, int count)
        {
            int imageFloats = window.Height * window.Width * window.Channels, outputFloats = window.Positions * window.Channels;
            int firstSample = backward ? first : first / window.OutputHeight;
            int samples = backward ? count : (first + count - 1) / window.OutputHeight - firstSample + 1;
            var images = new Span<float>(image + (long)firstSample * imageFloats, samples * imageFloats);
            var values = new Span<float>(pooled + (long)firstSample * outputFloats, samples * outputFloats);
            var indices = winners == null ? default : new Span<int>(winners + (long)firstSample * outputFloats, samples * outputFloats);
            int firstRow = first - firstSample * window.OutputHeight;
            if (backward) MaxBackwardSamples(values, indices, images, window, count, accumulate);
            else if (winners == null) MaxForwardRows<No>(images, values, indices, window, firstRow, count); // inference: no winners kept
            else MaxForwardRows<Yes>(images, values, indices, window, firstRow, count);
        }
    }

    /// <summary>
    /// Output rows [<paramref name="firstRow"/>, + <paramref name="rows"/>), counted from the first sample of the spans; on the
    /// AVX-512 path whole 2x2 windows sixteen channels at a time. The path picks a compiled copy: with the unrolled windows
    /// compiled into every copy, the AVX2 copy's loops ran 3-19% slower, though never taking them (64 images of 26x26x32 or
    /// 11x11x64, interleaved).
    /// </summary>
    private static void MaxForwardRows<TKeepsWinners>(ReadOnlySpan<float> input, Span<float> output, Span<int> winners, in Window window, int firstRow, int rows)
        where TKeepsWinners : IFlag
    {
        if (Simd.Current == SimdPath.Avx512) MaxForwardRows<TKeepsWinners, Yes>(input, output, winners, window, firstRow, rows);
        else MaxForwardRows<TKeepsWinners, No>(input, output, winners, window, firstRow, rows);
    }

    [MethodImpl(Compiled.Kernel)]
    private static void MaxForwardRows<TKeepsWinners, TUnrollsTwoByTwo>(ReadOnlySpan<float> input, Span<float> output, Span<int> winners, in Window window,
        int firstRow, int rows)
        where TKeepsWinners : IFlag where TUnrollsTwoByTwo : IFlag
    {
        int height = window.Height, width = window.Width, channels = window.Channels;
        int outputHeight = window.OutputHeight, outputWidth = window.OutputWidth;
        int inputSize = height * width * channels, outputSize = window.Positions * channels;
        for (int row = firstRow; row < firstRow + rows; row++)
        {
            int sample = row / outputHeight, oy = row - sample * outputHeight;
            var image = input.Slice(sample * inputSize, inputSize);
            int y0 = Math.Max(oy * window.StrideHeight - window.PadTop, 0), y1 = Math.Min(oy * window.StrideHeight - window.PadTop + window.KernelHeight, height);
            for (int ox = 0; ox < outputWidth; ox++)
            {
                int x0 = Math.Max(ox * window.StrideWidth - window.PadLeft, 0), x1 = Math.Min(ox * window.StrideWidth - window.PadLeft + window.KernelWidth, width);
                int at = sample * outputSize + (oy * outputWidth + ox) * channels;
                int first = (y0 * width + x0) * channels;
                // A vector of channels at a time, its running maximum and winners kept in registers across the window (a
                // select, not a branch: which pixel wins is data, and mispredicts); the channels past the last whole vector after.
                // Reads by reference: the window's pixels lie inside the image (y0..y1, x0..x1 are clamped to it) and the
                // outputs inside this sample's, so the per-pixel slice checks were pure cost.
                int c = 0;
                ref float pixels = ref MemoryMarshal.GetReference(image);
                if (TUnrollsTwoByTwo.IsSet && y1 - y0 == 2 && x1 - x0 == 2)
                {
                    c = MaxOfTwoByTwo<TKeepsWinners>(ref pixels, first, width * channels, channels,
                        ref Unsafe.Add(ref MemoryMarshal.GetReference(output), at), ref Unsafe.Add(ref MemoryMarshal.GetReference(winners), at));
                }
                for (; c + Vector<float>.Count <= channels; c += Vector<float>.Count)
                {
                    var best = Vector.LoadUnsafe(ref Unsafe.Add(ref pixels, first + c));
                    var winner = new Vector<int>(first + c) + Lanes;
                    for (int y = y0; y < y1; y++)
                    {
                        for (int x = y == y0 ? x0 + 1 : x0; x < x1; x++)
                        {
                            int pixel = (y * width + x) * channels + c;
                            var candidate = Vector.LoadUnsafe(ref Unsafe.Add(ref pixels, pixel));
                            var better = Vector.GreaterThan(candidate, best);
                            best = Vector.ConditionalSelect(better, candidate, best);
                            if (TKeepsWinners.IsSet) winner = Vector.ConditionalSelect(better, new Vector<int>(pixel) + Lanes, winner);
                        }
                    }
                    Vector.StoreUnsafe(best, ref Unsafe.Add(ref MemoryMarshal.GetReference(output), at + c));
                    if (TKeepsWinners.IsSet) Vector.StoreUnsafe(winner, ref Unsafe.Add(ref MemoryMarshal.GetReference(winners), at + c));
                }
                for (; c < channels; c++)
                {
                    float best = image[first + c];
                    int winner = first + c;
                    for (int y = y0; y < y1; y++)
                    {
                        for (int x = y == y0 ? x0 + 1 : x0; x < x1; x++)
                        {
                            int pixel = (y * width + x) * channels + c;
                            if (image[pixel] > best) { best = image[pixel]; winner = pixel; }
                        }
                    }
                    output[at + c] = best;
                    if (TKeepsWinners.IsSet) winners[at + c] = winner;
                }
            }
        }
    }

    /// <summary>
    /// A whole 2x2 window (Keras' default pool), sixteen channels at a time: the four pixels unrolled in the general loop's
    /// order, with the same strict comparison, where the loop over window cells cost more than the comparisons (26x26x32
    /// at batch 1: 3.9 -> 3.1 us alone; the 11x11x64 second pool 1.0 -> 0.6). Returns the channels done.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int MaxOfTwoByTwo<TKeepsWinners>(ref float pixels, int first, int down, int right, ref float maximum, ref int winner)
        where TKeepsWinners : IFlag
    {
        int c = 0;
        var lanes = Vector512<int>.Indices;
        Vector512<int> toRight = Vector512.Create(right), toBelow = Vector512.Create(down), toDiagonal = Vector512.Create(down + right);
        for (; c + Vector512<float>.Count <= right; c += Vector512<float>.Count)
        {
            // Written out rather than through a helper taking the maximum by reference: that kept it in memory (3.1 -> 6.3 us).
            ref float corner = ref Unsafe.Add(ref pixels, first + c);
            var topLeft = Vector512.Create(first + c) + lanes;
            var best = Vector512.LoadUnsafe(ref corner);
            var at = topLeft;
            var candidate = Vector512.LoadUnsafe(ref Unsafe.Add(ref corner, right));
            var better = Vector512.GreaterThan(candidate, best);
            best = Vector512.ConditionalSelect(better, candidate, best);
            if (TKeepsWinners.IsSet) at = Vector512.ConditionalSelect(better.AsInt32(), topLeft + toRight, at);
            candidate = Vector512.LoadUnsafe(ref Unsafe.Add(ref corner, down));
            better = Vector512.GreaterThan(candidate, best);
            best = Vector512.ConditionalSelect(better, candidate, best);
            if (TKeepsWinners.IsSet) at = Vector512.ConditionalSelect(better.AsInt32(), topLeft + toBelow, at);
            candidate = Vector512.LoadUnsafe(ref Unsafe.Add(ref corner, down + right));
            better = Vector512.GreaterThan(candidate, best);
            best = Vector512.ConditionalSelect(better, candidate, best);
            if (TKeepsWinners.IsSet) at = Vector512.ConditionalSelect(better.AsInt32(), topLeft + toDiagonal, at);
            best.StoreUnsafe(ref Unsafe.Add(ref maximum, c));
            if (TKeepsWinners.IsSet) at.StoreUnsafe(ref Unsafe.Add(ref winner, c));
        }
        return c;
    }

    [MethodImpl(Compiled.Driver)]
    private static void MaxBackwardSamples(ReadOnlySpan<float> outputGradient, ReadOnlySpan<int> winners, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        if (!accumulate) inputGradient.Slice(0, batch * inputSize).Clear();
        // By reference, each winner checked against its sample's image once (one predictable compare) instead of every
        // access going through a span.
        ref float gradient = ref MemoryMarshal.GetReference(outputGradient.Slice(0, batch * outputSize));
        ref int winner = ref MemoryMarshal.GetReference(winners.Slice(0, batch * outputSize));
        ref float target = ref MemoryMarshal.GetReference(inputGradient.Slice(0, batch * inputSize));
        for (int sample = 0, at = 0; sample < batch; sample++)
        {
            ref float image = ref Unsafe.Add(ref target, sample * inputSize);
            for (int i = 0; i < outputSize; i++, at++)
            {
                int pixel = Unsafe.Add(ref winner, at);
                if ((uint)pixel >= (uint)inputSize) throw new ArgumentException($"Max pooling backward: winner {pixel} of output {at} lies outside its {inputSize}-value image.", nameof(winners));
                Unsafe.Add(ref image, pixel) += Unsafe.Add(ref gradient, at);
            }
        }
    }

    /// <summary>
    /// AveragePooling2D as Keras computes it: each window's pixels inside the image (with 'same' padding the rest are not
    /// counted) summed in (ky, kx) order from zero, then divided by their count, as TensorFlow's AvgPool divides (this
    /// multiplied by the reciprocal before: one rounding off in some outputs). The output rows are shared by both cores,
    /// each window's sums kept in registers (<see cref="SequencePooling.MeanOfRows"/>). GlobalAveragePooling2D is
    /// SequencePooling's mean, over the pixels.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void AverageForward(ReadOnlySpan<float> input, Span<float> output, in Window window, int batch)
    {
        int imageFloats = window.Height * window.Width * window.Channels, outputFloats = window.Positions * window.Channels;
        Convolution.Require(input.Length >= batch * imageFloats && output.Length >= batch * outputFloats, "Average pooling", window, batch);
        fixed (float* x = input, y = output)
        {
            var work = new AverageRows(x, y, window);
            Convolution.ForOutputRows(ref work, window, batch, imageFloats + outputFloats);
        }
    }

    /// <summary>Output rows [first, first + count) of <see cref="AverageForward"/>, counted over the whole batch.</summary>
    private readonly unsafe struct AverageRows(float* images, float* averages, Window window) : IVectorRanges
    {
        public readonly float* Images = images, Averages = averages;
        public readonly Window Window = window;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            Average<TLanes, TVector>(this, first, count);
    }

    /// <summary>
    /// The output rows of <see cref="AverageRows"/>: each position's pixels inside the image listed once
    /// (<see cref="Window.InsideCells"/>), then their mean per channel.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void Average<TLanes, TVector>(in AverageRows rows, int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var window = rows.Window;
        int cellsPerWindow = window.KernelHeight * window.KernelWidth, channels = window.Channels;
        long imageFloats = (long)window.Height * window.Width * channels, rowFloats = (long)window.OutputWidth * channels;
        using var cells = Scratch<int>.RentUncleared(cellsPerWindow);
        using var pixels = Scratch<int>.RentUncleared(cellsPerWindow);
        fixed (int* offsets = pixels.Span)
        {
            for (int row = first; row < first + count; row++)
            {
                var inside = new WindowPixels(rows.Images + row / window.OutputHeight * imageFloats, offsets);
                float* averages = rows.Averages + row * rowFloats;
                for (int ox = 0; ox < window.OutputWidth; ox++)
                {
                    int counted = window.InsideCells(row % window.OutputHeight, ox, cells.Span, pixels.Span);
                    SequencePooling.MeanOfRows<TLanes, TVector, WindowPixels>(inside, 0, counted, counted, averages + ox * channels, channels);
                }
            }
        }
    }

    /// <summary>A window's pixels inside its image, as the steps of a mean: each at its offset in the list, counted once.</summary>
    private readonly unsafe struct WindowPixels(float* image, int* offsets) : SequencePooling.IStepRows
    {
        public float Weight(long step) => 1f;
        public float* Row(long step) => image + offsets[step];
        public float Counted(long first, int steps) => steps;
    }

    /// <summary>
    /// Each window's gradient, shared equally among the pixels it averaged: times 1 / their count, as TensorFlow's
    /// AvgPoolGrad (the gradient Keras takes) multiplies, added in the order of the windows.
    /// </summary>
    public static void AverageBackward(ReadOnlySpan<float> outputGradient, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        if (!accumulate) inputGradient.Slice(0, batch * inputSize).Clear();
        Span<int> cells = stackalloc int[window.KernelHeight * window.KernelWidth], pixels = stackalloc int[window.KernelHeight * window.KernelWidth];
        for (int sample = 0; sample < batch; sample++)
        {
            var image = inputGradient.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++)
                {
                    int count = window.InsideCells(oy, ox, cells, pixels);
                    var gradient = outputGradient.Slice(sample * outputSize + (oy * window.OutputWidth + ox) * window.Channels, window.Channels);
                    for (int i = 0; i < count; i++)
                    {
                        var target = image.Slice(pixels[i], window.Channels);
                        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(gradient, 1f / count, target, target);
                    }
                }
            }
        }
    }
}
