using System;
using System.Numerics;

namespace ModelGen.Kernels;

/// <summary>
/// The geometry of a 2-D convolution or pooling window over channels-last (NHWC) samples, as Keras computes it:
/// "valid" uses only whole windows; "same" pads so that output = ceil(input / stride), the extra row or column
/// going to the bottom/right. A dilated kernel reads every Dilation-th pixel, spanning (k - 1)·dilation + 1.
/// </summary>
/// <remarks>The derived sizes are computed once here: the kernels read them per element.</remarks>
public readonly record struct Window
{
    public Window(int height, int width, int channels, int kernelHeight, int kernelWidth, int strideHeight, int strideWidth, bool Same, int Dilation = 1)
    {
        Height = height; Width = width; Channels = channels;
        KernelHeight = kernelHeight; KernelWidth = kernelWidth; StrideHeight = strideHeight; StrideWidth = strideWidth;
        this.Same = Same;
        this.Dilation = Dilation;
        int spanHeight = (kernelHeight - 1) * Dilation + 1, spanWidth = (kernelWidth - 1) * Dilation + 1;
        OutputHeight = Same ? (height + strideHeight - 1) / strideHeight : (height - spanHeight) / strideHeight + 1;
        OutputWidth = Same ? (width + strideWidth - 1) / strideWidth : (width - spanWidth) / strideWidth + 1;
        PadTop = Same ? Math.Max((OutputHeight - 1) * strideHeight + spanHeight - height, 0) / 2 : 0;
        PadLeft = Same ? Math.Max((OutputWidth - 1) * strideWidth + spanWidth - width, 0) / 2 : 0;
        PatchSize = kernelHeight * kernelWidth * channels;
        Positions = OutputHeight * OutputWidth;
    }

    public int Height { get; }
    public int Width { get; }
    public int Channels { get; }
    public int KernelHeight { get; }
    public int KernelWidth { get; }
    public int StrideHeight { get; }
    public int StrideWidth { get; }
    public bool Same { get; }
    public int Dilation { get; }
    public int OutputHeight { get; }
    public int OutputWidth { get; }
    public int PadTop { get; }
    public int PadLeft { get; }
    /// <summary>Floats in one patch: a kernel-sized window over all input channels.</summary>
    public int PatchSize { get; }
    public int Positions { get; }
}

/// <summary>
/// Conv2D as im2col + GEMM: each output position's input window is copied into a row of a patch matrix
/// (positions x kh·kw·cin, zeros where the window hangs over the padding), so the convolution is one product with
/// the Keras-layout kernel (kh, kw, cin, cout) and the result is already NHWC. The backward pass sums patch
/// gradients back onto the pixels they came from (col2im).
/// </summary>
public static class Convolution
{
    /// <summary>Fills <paramref name="patches"/> (batch·positions rows of PatchSize) from <paramref name="input"/> (batch, H, W, C).</summary>
    public static unsafe void Im2Col(ReadOnlySpan<float> input, Span<float> patches, in Window window, int batch)
    {
        int imageFloats = window.Height * window.Width * window.Channels, patchFloats = window.Positions * window.PatchSize;
        Require(input.Length >= batch * imageFloats && patches.Length >= batch * patchFloats, "im2col", window, batch);
        fixed (float* x = input, p = patches)
        {
            var work = new Im2ColRanges(x, p, window);
            Helper.ForRanges(ref work, batch, imageFloats + patchFloats);
        }
    }

    private readonly unsafe struct Im2ColRanges(float* input, float* patches, Window window) : IRanges
    {
        public void Run(int first, int count)
        {
            int imageFloats = window.Height * window.Width * window.Channels, patchFloats = window.Positions * window.PatchSize;
            var images = new ReadOnlySpan<float>(input + (long)first * imageFloats, count * imageFloats);
            var rows = new Span<float>(patches + (long)first * patchFloats, count * patchFloats);
            if (InsideImage(window) && window.Dilation == 1 && window.KernelWidth * window.Channels < 16)
            {
                CopyShortRuns(images, rows, window, count);
                return;
            }
            var gather = new Gather(images, rows);
            Walk(window, count, ref gather);
        }
    }

    /// <summary>Whether every window lies inside the image: no padding on any side ('same' may pad only the bottom or right).</summary>
    private static bool InsideImage(in Window window) =>
        window.PadTop == 0 && window.PadLeft == 0 &&
        (window.OutputHeight - 1) * window.StrideHeight + window.KernelHeight <= window.Height &&
        (window.OutputWidth - 1) * window.StrideWidth + window.KernelWidth <= window.Width;

    /// <summary>
    /// im2col for a window with no padding and kernel rows of a few floats (a first layer's one or three channels): each kernel
    /// row copied float by float in one loop nest, where the general walk spent a call and a check on each few-float run
    /// (28x28x1, 3x3: 10.9 -> 4 us a sample).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void CopyShortRuns(ReadOnlySpan<float> images, Span<float> patches, in Window window, int batch)
    {
        int run = window.KernelWidth * window.Channels, rowFloats = window.Width * window.Channels;
        int imageFloats = window.Height * rowFloats, step = window.StrideWidth * window.Channels;
        ref float source = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(images);
        ref float target = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(patches);
        int at = 0;
        for (int sample = 0; sample < batch; sample++)
        {
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                int origin = sample * imageFloats + oy * window.StrideHeight * rowFloats;
                for (int ox = 0; ox < window.OutputWidth; ox++, origin += step)
                {
                    for (int ky = 0; ky < window.KernelHeight; ky++)
                    {
                        ref float from = ref System.Runtime.CompilerServices.Unsafe.Add(ref source, origin + ky * rowFloats);
                        for (int i = 0; i < run; i++, at++) System.Runtime.CompilerServices.Unsafe.Add(ref target, at) = System.Runtime.CompilerServices.Unsafe.Add(ref from, i);
                    }
                }
            }
        }
    }

    /// <summary>Kernels that hand raw pointers to the helper check their operands first.</summary>
    internal static void Require(bool ok, string kernel, in Window window, int batch)
    {
        if (!ok) throw new ArgumentException($"{kernel} operands too short for {batch} samples of {window}.");
    }

    /// <summary>
    /// The transposed convolution: each position's values times the kernel (values · kernelᵀ, a patch per position) summed
    /// back onto the pixels of its window. It is a Conv2D's input gradient (values = the output gradient) and a
    /// Conv2DTranspose's forward pass. Samples are independent, so the two cores take chunks of a few samples each, and
    /// each chunk's patches are summed while they are still in that core's cache instead of going out to memory and back
    /// (a 3x3 convolution's patches of 64 samples: 8.9 MB). <paramref name="patches"/> is scratch of
    /// <see cref="TransposedScratch"/> floats.
    /// </summary>
    public static unsafe void Transposed(ReadOnlySpan<float> values, ReadOnlySpan<float> kernel, Span<float> patches, Span<float> image,
        in Window window, int valueChannels, int batch, bool accumulate)
    {
        int chunk = ChunkSamples(window, batch), chunkFloats = chunk * window.Positions * window.PatchSize;
        int imageFloats = batch * window.Height * window.Width * window.Channels;
        Require(values.Length >= batch * window.Positions * valueChannels && kernel.Length >= window.PatchSize * valueChannels
            && patches.Length >= 2 * chunkFloats && image.Length >= imageFloats, "Transposed convolution", window, batch);
        fixed (float* v = values, k = kernel, p = patches, x = image)
        {
            var job = new TransposedJob(v, k, p, x, window, valueChannels, batch, chunk, accumulate);
            Helper.For((batch + chunk - 1) / chunk, &TransposeChunk, &job);
        }
    }

    /// <summary>The scratch <see cref="Transposed"/> needs for batches of up to <paramref name="maxBatch"/> samples: a chunk per core.</summary>
    public static int TransposedScratch(in Window window, int maxBatch) => 2 * ChunkSamples(window, maxBatch) * window.Positions * window.PatchSize;

    /// <summary>Samples per chunk: about 512 KB of patches, a quarter of a core's 2 MB L2, beside the kernel and the image.</summary>
    private static int ChunkSamples(in Window window, int batch) =>
        Math.Clamp(512 * 1024 / (window.Positions * window.PatchSize * sizeof(float)), 1, Math.Max(batch, 1));

    private readonly unsafe struct TransposedJob(float* values, float* kernel, float* patches, float* image, in Window window, int valueChannels, int batch, int chunk, bool accumulate)
    {
        public readonly float* Values = values, Kernel = kernel, Patches = patches, Image = image;
        public readonly Window Window = window;
        public readonly int ValueChannels = valueChannels, Batch = batch, Chunk = chunk;
        public readonly bool Accumulate = accumulate;
    }

    private static unsafe void TransposeChunk(void* state, int index, int worker)
    {
        ref readonly var job = ref *(TransposedJob*)state;
        ref readonly var window = ref job.Window;
        int first = index * job.Chunk, samples = Math.Min(job.Chunk, job.Batch - first);
        int patchFloats = window.Positions * window.PatchSize, valueFloats = window.Positions * job.ValueChannels;
        int imageFloats = window.Height * window.Width * window.Channels;
        var patches = new Span<float>(job.Patches + worker * job.Chunk * patchFloats, samples * patchFloats);
        var values = new ReadOnlySpan<float>(job.Values + (long)first * valueFloats, samples * valueFloats);
        Gemm.MultiplyTransposedB(values, new ReadOnlySpan<float>(job.Kernel, window.PatchSize * job.ValueChannels), patches,
            samples * window.Positions, job.ValueChannels, window.PatchSize);
        Col2Im(patches, new Span<float>(job.Image + (long)first * imageFloats, samples * imageFloats), window, samples, job.Accumulate);
    }

    /// <summary>
    /// The inverse of <see cref="Im2Col"/>: each input pixel receives the sum of the patch-gradient cells copied from it.
    /// Written as a gather, pixel by pixel with the sum in registers, rather than as a scatter of patch rows onto the image:
    /// neighbouring patches overlap, so a scatter re-reads what it has just stored (a 3x3 convolution's 7744 patches of
    /// 288: 2.2 ms scattered, ~0.3 ms gathered).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Col2Im(ReadOnlySpan<float> patchGradients, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int height = window.Height, width = window.Width, channels = window.Channels;
        // Which cells read an image row y: pairs (output row, kernel row), kept as their part of a patch-matrix offset; the
        // same per image column. A row's pairs are rowParts[rowStart[y] .. rowStart[y + 1]).
        int rowCount = height * window.KernelHeight, columnCount = width * window.KernelWidth;
        int needed = rowCount + columnCount + height + width + 2;
        int[]? rented = null;
        Span<int> scratch = needed <= 2048 ? stackalloc int[needed] : (rented = System.Buffers.ArrayPool<int>.Shared.Rent(needed));
        var rowStart = scratch.Slice(0, height + 1);
        var columnStart = scratch.Slice(height + 1, width + 1);
        var rowParts = scratch.Slice(height + width + 2, rowCount);
        var columnParts = scratch.Slice(height + width + 2 + rowCount, columnCount);
        int patchSize = window.PatchSize, rowSize = window.OutputWidth * patchSize;
        CellsReading(height, window.KernelHeight, window.StrideHeight, window.PadTop, window.Dilation, window.OutputHeight, rowSize, window.KernelWidth * channels, rowStart, rowParts);
        CellsReading(width, window.KernelWidth, window.StrideWidth, window.PadLeft, window.Dilation, window.OutputWidth, patchSize, channels, columnStart, columnParts);

        int vectorChannels = channels - channels % Vector<float>.Count;
        for (int sample = 0; sample < batch; sample++)
        {
            var patches = patchGradients.Slice(sample * window.Positions * patchSize, window.Positions * patchSize);
            for (int y = 0; y < height; y++)
            {
                var rows = rowParts[rowStart[y]..rowStart[y + 1]];
                for (int x = 0; x < width; x++)
                {
                    var columns = columnParts[columnStart[x]..columnStart[x + 1]];
                    var target = inputGradient.Slice(((sample * height + y) * width + x) * channels, channels);
                    for (int c = 0; c < vectorChannels; c += Vector<float>.Count)
                    {
                        var sum = accumulate ? new Vector<float>(target.Slice(c)) : Vector<float>.Zero;
                        foreach (int row in rows)
                        {
                            foreach (int column in columns) sum += new Vector<float>(patches.Slice(row + column + c));
                        }
                        sum.CopyTo(target.Slice(c));
                    }
                    for (int c = vectorChannels; c < channels; c++)
                    {
                        float sum = accumulate ? target[c] : 0f;
                        foreach (int row in rows)
                        {
                            foreach (int column in columns) sum += patches[row + column + c];
                        }
                        target[c] = sum;
                    }
                }
            }
        }
        if (rented is not null) System.Buffers.ArrayPool<int>.Shared.Return(rented);
    }

    /// <summary>
    /// Along one axis, for each image index i, the (output index o, kernel index k) with o·stride + k·dilation - pad = i, each
    /// stored as o·outputStep + k·kernelStep; index i's pairs are parts[start[i] .. start[i + 1]).
    /// </summary>
    private static void CellsReading(int size, int kernel, int stride, int pad, int dilation, int outputs, int outputStep, int kernelStep, Span<int> start, Span<int> parts)
    {
        int count = 0;
        for (int i = 0; i < size; i++)
        {
            start[i] = count;
            for (int k = 0; k < kernel; k++)
            {
                int reach = i + pad - k * dilation;
                if (reach < 0 || reach % stride != 0 || reach / stride >= outputs) continue;
                parts[count++] = reach / stride * outputStep + k * kernelStep;
            }
        }
        start[size] = count;
    }

    /// <summary>What to do with a run of a patch: <c>length</c> floats at a patch offset and at an image offset (-1 in the padding).</summary>
    internal interface ICell
    {
        void Visit(int patchOffset, int imageOffset, int length);
    }

    /// <summary>Every (patch cell, image pixel) pair of every output position, in patch-matrix order: the one loop nest of im2col and the depthwise convolution.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal static void Walk<TCell>(in Window window, int batch, ref TCell cell) where TCell : ICell, allows ref struct
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int channels = window.Channels;
        int row = 0;
        for (int sample = 0; sample < batch; sample++)
        {
            int image = sample * inputSize;
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++, row++)
                {
                    int column = row * window.PatchSize;
                    for (int ky = 0; ky < window.KernelHeight; ky++)
                    {
                        int y = oy * window.StrideHeight + ky * window.Dilation - window.PadTop;
                        int x0 = ox * window.StrideWidth - window.PadLeft;
                        bool rowInside = y >= 0 && y < window.Height;
                        if (rowInside && window.Dilation == 1 && x0 >= 0 && x0 + window.KernelWidth <= window.Width)
                        {
                            // The whole kernel row lies inside the image: one contiguous run of kw·channels floats.
                            cell.Visit(column, image + (y * window.Width + x0) * channels, window.KernelWidth * channels);
                            column += window.KernelWidth * channels;
                            continue;
                        }
                        for (int kx = 0; kx < window.KernelWidth; kx++, column += channels)
                        {
                            int x = x0 + kx * window.Dilation;
                            bool inside = rowInside && x >= 0 && x < window.Width;
                            cell.Visit(column, inside ? image + (y * window.Width + x) * channels : -1, channels);
                        }
                    }
                }
            }
        }
    }

    /// <summary>im2col: copy the pixel into the patch, zeros for the padding.</summary>
    private ref struct Gather(ReadOnlySpan<float> input, Span<float> patches) : ICell
    {
        private readonly ReadOnlySpan<float> input = input;
        private readonly Span<float> patches = patches;

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public readonly void Visit(int patchOffset, int imageOffset, int length)
        {
            var target = patches.Slice(patchOffset, length);
            if (imageOffset < 0)
            {
                target.Clear();
                return;
            }
            var source = input.Slice(imageOffset, length);
            // A one-channel image's runs are a few floats: a loop is cheaper than a call to memmove.
            if (length < 16) for (int i = 0; i < target.Length; i++) target[i] = source[i];
            else source.CopyTo(target);
        }
    }
}

/// <summary>MaxPooling2D over NHWC samples: each output is its window's maximum; the backward pass routes the gradient to it.</summary>
public static class Pooling
{
    /// <summary>0, 1, 2, ... one per lane: added to a pixel's first index, the index of each channel in a vector.</summary>
    private static readonly Vector<int> Lanes = CreateLanes();

    private static Vector<int> CreateLanes()
    {
        Span<int> lanes = stackalloc int[Vector<int>.Count];
        for (int i = 0; i < lanes.Length; i++) lanes[i] = i;
        return new Vector<int>(lanes);
    }

    /// <summary>Writes maxima and, in <paramref name="winners"/>, each maximum's index within its sample (for the backward pass).</summary>
    public static unsafe void MaxForward(ReadOnlySpan<float> input, Span<float> output, Span<int> winners, in Window window, int batch)
    {
        int imageFloats = window.Height * window.Width * window.Channels, outputFloats = window.Positions * window.Channels;
        Convolution.Require(input.Length >= batch * imageFloats && output.Length >= batch * outputFloats && winners.Length >= batch * outputFloats, "Max pooling", window, batch);
        fixed (float* x = input, y = output)
        fixed (int* w = winners)
        {
            var work = new MaxRanges(x, y, w, window, backward: false);
            Helper.ForRanges(ref work, batch, imageFloats + 2 * outputFloats);
        }
    }

    /// <summary>Sends each output gradient to its window's maximum; every other pixel's gradient is zero (or unchanged when accumulating).</summary>
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

    /// <summary>Max pooling over a range of samples: images at <c>image</c>, pooled values (or their gradients) at <c>pooled</c>.</summary>
    private readonly unsafe struct MaxRanges(float* image, float* pooled, int* winners, Window window, bool backward, bool accumulate = false) : IRanges
    {
        public void Run(int first, int count)
        {
            int imageFloats = window.Height * window.Width * window.Channels, outputFloats = window.Positions * window.Channels;
            var images = new Span<float>(image + (long)first * imageFloats, count * imageFloats);
            var values = new Span<float>(pooled + (long)first * outputFloats, count * outputFloats);
            var indices = new Span<int>(winners + (long)first * outputFloats, count * outputFloats);
            if (backward) MaxBackwardSamples(values, indices, images, window, count, accumulate);
            else MaxForwardSamples(images, values, indices, window, count);
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void MaxForwardSamples(ReadOnlySpan<float> input, Span<float> output, Span<int> winners, in Window window, int batch)
    {
        int height = window.Height, width = window.Width, channels = window.Channels;
        int outputHeight = window.OutputHeight, outputWidth = window.OutputWidth;
        int inputSize = height * width * channels, outputSize = window.Positions * channels;
        for (int sample = 0; sample < batch; sample++)
        {
            var image = input.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < outputHeight; oy++)
            {
                int y0 = Math.Max(oy * window.StrideHeight - window.PadTop, 0), y1 = Math.Min(oy * window.StrideHeight - window.PadTop + window.KernelHeight, height);
                for (int ox = 0; ox < outputWidth; ox++)
                {
                    int x0 = Math.Max(ox * window.StrideWidth - window.PadLeft, 0), x1 = Math.Min(ox * window.StrideWidth - window.PadLeft + window.KernelWidth, width);
                    int at = sample * outputSize + (oy * outputWidth + ox) * channels;
                    int first = (y0 * width + x0) * channels;
                    // A vector of channels at a time, its running maximum and winners kept in registers across the window (a
                    // select, not a branch: which pixel wins is data, and mispredicts); the channels past the last whole vector after.
                    int c = 0;
                    for (; c + Vector<float>.Count <= channels; c += Vector<float>.Count)
                    {
                        var best = new Vector<float>(image.Slice(first + c));
                        var winner = new Vector<int>(first + c) + Lanes;
                        for (int y = y0; y < y1; y++)
                        {
                            for (int x = y == y0 ? x0 + 1 : x0; x < x1; x++)
                            {
                                int pixel = (y * width + x) * channels + c;
                                var candidate = new Vector<float>(image.Slice(pixel));
                                var better = Vector.GreaterThan(candidate, best);
                                best = Vector.ConditionalSelect(better, candidate, best);
                                winner = Vector.ConditionalSelect(better, new Vector<int>(pixel) + Lanes, winner);
                            }
                        }
                        best.CopyTo(output.Slice(at + c));
                        winner.CopyTo(winners.Slice(at + c));
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
                        winners[at + c] = winner;
                    }
                }
            }
        }
    }

    private static void MaxBackwardSamples(ReadOnlySpan<float> outputGradient, ReadOnlySpan<int> winners, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        if (!accumulate) inputGradient.Slice(0, batch * inputSize).Clear();
        for (int sample = 0; sample < batch; sample++)
        {
            for (int i = 0; i < outputSize; i++)
            {
                int at = sample * outputSize + i;
                inputGradient[sample * inputSize + winners[at]] += outputGradient[at];
            }
        }
    }

    /// <summary>Average pooling as Keras computes it: with 'same' padding each window averages only the pixels inside the image.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void AverageForward(ReadOnlySpan<float> input, Span<float> output, in Window window, int batch)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        for (int sample = 0; sample < batch; sample++)
        {
            var image = input.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++)
                {
                    var target = output.Slice(sample * outputSize + (oy * window.OutputWidth + ox) * window.Channels, window.Channels);
                    target.Clear();
                    int count = 0;
                    for (int ky = 0; ky < window.KernelHeight; ky++)
                    {
                        int y = oy * window.StrideHeight + ky * window.Dilation - window.PadTop;
                        if (y < 0 || y >= window.Height) continue;
                        for (int kx = 0; kx < window.KernelWidth; kx++)
                        {
                            int x = ox * window.StrideWidth + kx * window.Dilation - window.PadLeft;
                            if (x < 0 || x >= window.Width) continue;
                            System.Numerics.Tensors.TensorPrimitives.Add(target, image.Slice((y * window.Width + x) * window.Channels, window.Channels), target);
                            count++;
                        }
                    }
                    System.Numerics.Tensors.TensorPrimitives.Multiply(target, 1f / count, target);
                }
            }
        }
    }

    /// <summary>Each window's gradient, shared equally among the pixels it averaged.</summary>
    public static void AverageBackward(ReadOnlySpan<float> outputGradient, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        if (!accumulate) inputGradient.Slice(0, batch * inputSize).Clear();
        for (int sample = 0; sample < batch; sample++)
        {
            var image = inputGradient.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++)
                {
                    int y0 = oy * window.StrideHeight - window.PadTop, x0 = ox * window.StrideWidth - window.PadLeft;
                    int count = (Math.Min(y0 + window.KernelHeight, window.Height) - Math.Max(y0, 0)) * (Math.Min(x0 + window.KernelWidth, window.Width) - Math.Max(x0, 0));
                    var gradient = outputGradient.Slice(sample * outputSize + (oy * window.OutputWidth + ox) * window.Channels, window.Channels);
                    for (int y = Math.Max(y0, 0); y < Math.Min(y0 + window.KernelHeight, window.Height); y++)
                    {
                        for (int x = Math.Max(x0, 0); x < Math.Min(x0 + window.KernelWidth, window.Width); x++)
                        {
                            var target = image.Slice((y * window.Width + x) * window.Channels, window.Channels);
                            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(gradient, 1f / count, target, target);
                        }
                    }
                }
            }
        }
    }
}

/// <summary>
/// DepthwiseConv2D, directly over NHWC: output channel c·multiplier + m of each position is channel c of the window weighted
/// by depthwise_kernel (ky, kx, c, m). The windows are walked as im2col walks them (the same loop nest, runs of whole kernel
/// rows), without building the patch matrix; with a multiplier of 1 each kernel cell is one vector multiply-add.
/// </summary>
public static class DepthwiseConvolution
{
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Forward(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, ReadOnlySpan<float> bias, Span<float> output, in Window window, int multiplier, int batch)
    {
        int width = window.Channels * multiplier, rows = batch * window.Positions;
        for (int row = 0; row < rows; row++)
        {
            var target = output.Slice(row * width, width);
            if (bias.IsEmpty) target.Clear();
            else bias.Slice(0, width).CopyTo(target);
        }
        var cells = new Cells(input, kernel, output, default, default, default, window, multiplier);
        Convolution.Walk(window, batch, ref cells);
    }

    /// <summary>Kernel and bias gradients (=, or += when accumulating) and, unless <paramref name="inputGradient"/> is empty, the input's.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> input, ReadOnlySpan<float> kernel,
        Span<float> kernelGradient, Span<float> biasGradient, Span<float> inputGradient, in Window window, int multiplier, int batch,
        bool computeWeights, bool accumulateWeights, bool accumulateInput)
    {
        int width = window.Channels * multiplier, rows = batch * window.Positions;
        if (computeWeights)
        {
            if (!accumulateWeights) kernelGradient.Slice(0, window.KernelHeight * window.KernelWidth * width).Clear();
            if (!biasGradient.IsEmpty) Reductions.SumRows(outputGradient, biasGradient, rows, width, accumulateWeights);
        }
        if (!inputGradient.IsEmpty && !accumulateInput) inputGradient.Slice(0, batch * window.Height * window.Width * window.Channels).Clear();
        var cells = new Cells(input, kernel, default, outputGradient, computeWeights ? kernelGradient : default, inputGradient, window, multiplier);
        Convolution.Walk(window, batch, ref cells);
    }

    /// <summary>
    /// One run of window cells against one output position. Forward (an output given) adds pixel·weight into it; backward
    /// (an output gradient given) adds gradient·pixel into the kernel gradient and gradient·weight into the input gradient.
    /// </summary>
    private ref struct Cells(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, Span<float> output, ReadOnlySpan<float> outputGradient,
        Span<float> kernelGradient, Span<float> inputGradient, in Window window, int multiplier) : Convolution.ICell
    {
        private readonly ReadOnlySpan<float> input = input, kernel = kernel, outputGradient = outputGradient;
        private readonly Span<float> output = output, kernelGradient = kernelGradient, inputGradient = inputGradient;
        private readonly int channels = window.Channels, patchSize = window.PatchSize, width = window.Channels * multiplier;

        public readonly void Visit(int patchOffset, int imageOffset, int length)
        {
            if (imageOffset < 0) return; // padding: zeros in, nothing out
            int position = patchOffset / patchSize * width, firstCell = patchOffset % patchSize / channels;
            for (int j = 0; j < length / channels; j++)
            {
                int pixel = imageOffset + j * channels, cell = (firstCell + j) * width;
                if (outputGradient.IsEmpty)
                {
                    var target = output.Slice(position, width);
                    if (multiplier == 1) System.Numerics.Tensors.TensorPrimitives.FusedMultiplyAdd(input.Slice(pixel, channels), kernel.Slice(cell, width), target, target);
                    else for (int c = 0; c < width; c++) target[c] += input[pixel + c / multiplier] * kernel[cell + c];
                    continue;
                }
                for (int c = 0; c < width; c++)
                {
                    float g = outputGradient[position + c];
                    if (!kernelGradient.IsEmpty) kernelGradient[cell + c] += g * input[pixel + c / multiplier];
                    if (!inputGradient.IsEmpty) inputGradient[pixel + c / multiplier] += g * kernel[cell + c];
                }
            }
        }
    }
}
