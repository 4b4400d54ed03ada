using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>
/// DepthwiseConv2D, directly over NHWC: output channel c·multiplier + m of each position is channel c of the window weighted
/// by depthwise_kernel (ky, kx, c, m). Each row's windows inside the image's width form one run sharing their cells (only
/// windows over the side padding list theirs alone), taken a channel vector at a time: four positions' sums in registers
/// per weight loaded (forward; windows three pixels wide, one or two apart, slide eight at a time along whole rows, each
/// pixel loaded once for the windows it serves), four cells' kernel gradients in registers over the run (a 3x3 window's
/// nine along whole rows). With a multiplier of 1 each input pixel gathers its gradient from the positions covering it,
/// four pixels in registers at a time (eight sliding along whole rows, for windows three pixels wide), written once;
/// otherwise each position scatters onto its pixels. The forward pass shares output rows between the cores; backward
/// gives the kernel gradient to one core and the input and bias gradients to the other, so every sum runs in the same
/// order on one core or two.
/// </summary>
public static class DepthwiseConvolution
{
    /// <summary>
    /// output = bias + Σ over the window's cells, in (ky, kx) order, of pixel·weight (each a fused multiply-add), then ReLU
    /// where <paramref name="relu"/> (as Conv2D takes it, in the same pass). A BatchNormalization at inference after the layer
    /// (<paramref name="normalization"/>, with its own ReLU where it says so) is applied to each range of output rows as soon
    /// as it is computed, in this core's cache, as Conv2D applies it (MobileNet's DepthwiseConv2D, BatchNormalization, ReLU),
    /// and its residual where it has one.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Forward(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, ReadOnlySpan<float> bias, Span<float> output, in Window window, int multiplier, int batch,
        bool relu = false, BatchNormAtInference normalization = default)
    {
        int width = window.Channels * multiplier;
        Check(input.Length, kernel.Length, output.Length, window, multiplier, batch, "DepthwiseConv2D");
        Convolution.Require(bias.IsEmpty || bias.Length >= width, "DepthwiseConv2D", window, batch);
        using var folded = normalization.FoldFor(width, output, (long)batch * window.Positions * width, "DepthwiseConv2D");
        fixed (float* x = input, k = kernel, b = bias, y = output, scaleAndShift = folded.Span, residual = normalization.Residual)
        {
            var work = new ForwardRows(new Operands(x, k, y, window, multiplier), bias.IsEmpty ? null : b, relu);
            Convolution.ForOutputRows(ref work, window, batch, window.Height * window.Width * window.Channels + window.Positions * width,
                Convolution.OutputFold.Of(normalization, y, scaleAndShift, width, residual));
        }
    }

    /// <summary>Kernel and bias gradients (=, or += when accumulating) and, unless <paramref name="inputGradient"/> is empty, the input's.</summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> input, ReadOnlySpan<float> kernel,
        Span<float> kernelGradient, Span<float> biasGradient, Span<float> inputGradient, in Window window, int multiplier, int batch,
        bool computeWeights, bool accumulateWeights, bool accumulateInput)
    {
        int width = window.Channels * multiplier;
        Check(input.Length, kernel.Length, outputGradient.Length, window, multiplier, batch, "DepthwiseConv2D backward");
        Convolution.Require((!computeWeights || kernelGradient.Length >= kernel.Length) && (inputGradient.IsEmpty || inputGradient.Length >= input.Length),
            "DepthwiseConv2D backward", window, batch);
        if (computeWeights && !accumulateWeights) kernelGradient.Slice(0, window.KernelHeight * window.KernelWidth * width).Clear();
        bool wantsInput = !inputGradient.IsEmpty, wantsBias = computeWeights && !biasGradient.IsEmpty;
        fixed (float* dy = outputGradient, x = input, k = kernel, dk = kernelGradient, db = biasGradient, dx = inputGradient)
        {
            var job = new Gradients(new Operands(x, k, dy, window, multiplier), computeWeights ? dk : null, wantsBias ? db : null, wantsInput ? dx : null, batch,
                accumulateWeights, accumulateInput);
            if (computeWeights && wantsInput) Helper.For(2, &Gradients.Run, in job); // the kernel's on one core, the input's on the other
            else if (computeWeights || wantsInput) Gradients.Run(&job, computeWeights ? 0 : 1, 0);
        }
    }

    /// <summary>
    /// Whether <paramref name="index"/> lies in [0, <paramref name="limit"/>): the row passes' test of a pixel or output
    /// column, made only in the blocks at a row's ends (<typeparamref name="TEdge"/>); elsewhere always true, compiled away.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Within<TEdge>(int index, int limit) where TEdge : IFlag => !TEdge.IsSet || (uint)index < (uint)limit;

    private static void Check(int input, int kernel, int output, in Window window, int multiplier, int batch, string what)
    {
        int width = window.Channels * multiplier;
        Convolution.Require(multiplier >= 1 && input >= batch * window.Height * window.Width * window.Channels && kernel >= window.KernelHeight * window.KernelWidth * width
            && output >= batch * window.Positions * width, what, window, batch);
    }

    /// <summary>The tensors of a pass as pointers (pinned by the caller), readable on either core.</summary>
    private readonly unsafe struct Operands(float* input, float* kernel, float* output, Window window, int multiplier)
    {
        public readonly float* Input = input, Kernel = kernel;
        /// <summary>The output forward; the output gradient backward.</summary>
        public readonly float* Output = output;
        public readonly Window Window = window;
        public readonly int Multiplier = multiplier;
        public int Width => Window.Channels * Multiplier;
        /// <summary>Floats of one sample's image (and of its gradient).</summary>
        public long ImageFloats => (long)Window.Height * Window.Width * Window.Channels;
    }

    /// <summary>Forward over output rows (of the whole batch).</summary>
    private readonly unsafe struct ForwardRows(Operands operands, float* bias, bool relu) : IVectorRanges
    {
        private readonly Operands operands = operands;

        [MethodImpl(Compiled.Driver)]
        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        [MethodImpl(Compiled.Driver)]
        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            float* spread = stackalloc float[TLanes.Count];
            if (SlidingSums<TLanes, TVector>.Fits(operands))
                OverPositions(operands.Window, first, count, operands.Width, TLanes.Count, new SlidingSums<TLanes, TVector>(operands, bias, relu));
            else if (operands.Multiplier == 1) OverPositions(operands.Window, first, count, operands.Width, TLanes.Count, new Sums<TLanes, TVector, Yes>(operands, bias, relu, spread));
            else OverPositions(operands.Window, first, count, operands.Width, TLanes.Count, new Sums<TLanes, TVector, No>(operands, bias, relu, spread));
        }
    }

    /// <summary>
    /// The backward pass's two independent parts: 0 the kernel gradient, 1 the input gradient (null: not wanted), each over
    /// the whole batch; the bias gradient (null: not wanted), the output gradient's column sums, goes with the input
    /// gradient where there is one (the lighter part on the MobileNet block's first depthwise layer, which otherwise waited
    /// for the sums before either began). With a multiplier of 1 each input pixel gathers its gradient (a row at a time
    /// where windows three pixels wide slide, else <see cref="OverPixels"/>); otherwise, unless it accumulates, the input
    /// gradient's part clears each sample's gradient just before it scatters onto it, on its own core and in its cache.
    /// </summary>
    private readonly unsafe struct Gradients(Operands operands, float* kernelGradient, float* biasGradient, float* inputGradient, int batch,
        bool accumulateWeights, bool accumulateInput)
    {
        private readonly Operands operands = operands;

        public static void Run(void* state, int part, int worker)
        {
            ref readonly var job = ref *(Gradients*)state;
            switch (Simd.Current)
            {
                case SimdPath.Avx512: job.Run<Lanes512, Vector512<float>>(part); break;
                case SimdPath.Avx2: job.Run<Lanes256, Vector256<float>>(part); break;
                default: job.Run<Lanes128, Vector128<float>>(part); break;
            }
        }

        [MethodImpl(Compiled.Driver)]
        private void Run<TLanes, TVector>(int part) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            int sampleRows = operands.Window.OutputHeight;
            float* spread = stackalloc float[TLanes.Count];
            bool one = operands.Multiplier == 1;
            if (biasGradient != null && part == (inputGradient != null ? 1 : 0))
            {
                int width = operands.Width;
                Reductions.SumRows(new ReadOnlySpan<float>(operands.Output, batch * operands.Window.Positions * width), new Span<float>(biasGradient, width),
                    batch * operands.Window.Positions, width, accumulateWeights);
            }
            if (part == 0)
            {
                if (RowKernelGradient<TLanes, TVector>.Fits(operands))
                    OverPositions(operands.Window, 0, batch * sampleRows, operands.Width, TLanes.Count, new RowKernelGradient<TLanes, TVector>(operands, kernelGradient));
                else if (one) OverPositions(operands.Window, 0, batch * sampleRows, operands.Width, TLanes.Count, new KernelGradient<TLanes, TVector, Yes>(operands, kernelGradient, spread));
                else OverPositions(operands.Window, 0, batch * sampleRows, operands.Width, TLanes.Count, new KernelGradient<TLanes, TVector, No>(operands, kernelGradient, spread));
                return;
            }
            bool slides = SlidingInputGradient<TLanes, TVector>.Fits(operands);
            for (int sample = 0; sample < batch; sample++)
            {
                if (slides) OverPixelRows(operands.Window, sample, operands.Width, TLanes.Count, new SlidingInputGradient<TLanes, TVector>(operands, inputGradient, accumulateInput));
                else if (one) OverPixels(operands.Window, sample, operands.Width, TLanes.Count, new GatheredInputGradient<TLanes, TVector>(operands, inputGradient, accumulateInput));
                else
                {
                    if (!accumulateInput) new Span<float>(inputGradient + sample * operands.ImageFloats, (int)operands.ImageFloats).Clear();
                    OverPositions(operands.Window, sample * sampleRows, sampleRows, operands.Width, TLanes.Count, new ScatteredInputGradient<TLanes, TVector>(operands, inputGradient, spread));
                }
            }
        }
    }

    /// <summary>
    /// Windows (or input pixels) of one row that share their cells, <see cref="Count"/> of them, each <see cref="Step"/>
    /// floats of the image after the one before: all of a window's cells inside the image, or one window at the edge
    /// listing those that are (one pixel near the edge listing the windows covering it).
    /// </summary>
    private readonly unsafe struct Run(long position, int sample, int origin, int count, int step, int* cells, int* offsets, int cellCount)
    {
        /// <summary>The first window's index over the whole batch: its row of the output (or its gradient). Unused by pixel runs.</summary>
        public readonly long Position = position;
        public readonly int Sample = sample;
        /// <summary>The first window's first pixel (or the first pixel), in floats from the sample's image.</summary>
        public readonly int Origin = origin;
        public readonly int Count = count, Step = step;
        public readonly int* Cells = cells;
        /// <summary>
        /// Per cell, its pixel's offset from the window's first (a window run), or the window covering the first pixel, as
        /// a position within the sample, one further for each next pixel (a pixel run).
        /// </summary>
        public readonly int* Offsets = offsets;
        public readonly int CellCount = cellCount;

        public Run At(int index) => new(Position + index, Sample, Origin + index * Step, 1, 0, Cells, Offsets, CellCount);
    }

    /// <summary>What a pass does over a run, one channel vector at a time.</summary>
    private interface IVectorPass
    {
        /// <summary>Whether the pass takes its runs' windows one at a time, each over all its channels, before the next.</summary>
        static abstract bool OneAtATime { get; }

        /// <summary>Whether the pass takes each output row as one run, its windows over the side padding too (which then skips their pixels outside).</summary>
        static virtual bool WholeRows => false;

        /// <summary>Channels [c, c + lanes) of the run: whole vectors where TFull, else the partial last one.</summary>
        void Vector<TFull>(in Run run, int c, int lanes) where TFull : IFlag;
    }

    /// <summary>
    /// A run, a channel vector at a time: the whole vectors through one compiled copy, the partial last one through another,
    /// so the hot loops carry no branch for it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ByVectors<TPass>(ref TPass pass, in Run run, int width, int vector) where TPass : struct, IVectorPass
    {
        if (TPass.OneAtATime && run.Count > 1)
        {
            for (int index = 0; index < run.Count; index++) ByVectors(ref pass, run.At(index), width, vector);
            return;
        }
        int whole = width - width % vector;
        for (int c = 0; c < whole; c += vector) pass.Vector<Yes>(run, c, vector);
        if (whole < width) pass.Vector<No>(run, whole, width - whole);
    }

    /// <summary>
    /// Every output position of output rows [firstRow, + rows) of the batch, in order. The columns whose windows lie inside
    /// the image's width form one run per row, sharing the cells of the rows inside its height (all of them away from the
    /// top and bottom) at offsets fixed from each window's first pixel; only the columns over the side padding list their
    /// cells, one position at a time.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void OverPositions<TPass>(in Window window, int firstRow, int rows, int width, int vector, TPass pass) where TPass : struct, IVectorPass
    {
        int size = window.KernelHeight * window.KernelWidth;
        int* cells = stackalloc int[size], pixels = stackalloc int[size], runCells = stackalloc int[size], offsets = stackalloc int[size];
        // Columns [firstInside, endInside) have windows inside the image's width.
        int firstInside = (window.PadLeft + window.StrideWidth - 1) / window.StrideWidth;
        int endInside = Math.Min(window.OutputWidth, Math.Max(firstInside, (window.Width - window.SpanWidth + window.PadLeft) / window.StrideWidth + 1));
        int step = window.StrideWidth * window.Channels;
        for (int row = firstRow; row < firstRow + rows; row++)
        {
            int sample = row / window.OutputHeight, oy = row % window.OutputHeight, y = oy * window.StrideHeight - window.PadTop;
            long rowStart = (long)row * window.OutputWidth;
            int runCount = 0;
            for (int ky = 0; ky < window.KernelHeight; ky++)
            {
                int iy = y + ky * window.Dilation;
                if (iy < 0 || iy >= window.Height) continue;
                for (int kx = 0; kx < window.KernelWidth; kx++)
                {
                    runCells[runCount] = ky * window.KernelWidth + kx;
                    offsets[runCount++] = (ky * window.Width + kx) * window.Dilation * window.Channels;
                }
            }
            if (TPass.WholeRows)
            {
                int origin = (y * window.Width - window.PadLeft) * window.Channels;
                ByVectors(ref pass, new Run(rowStart, sample, origin, window.OutputWidth, step, runCells, offsets, runCount), width, vector);
                continue;
            }
            for (int ox = 0; ox < window.OutputWidth; ox++)
            {
                if (ox == firstInside && endInside > firstInside)
                {
                    // The first window's top-left pixel, over the padding when the top rows are: only the offsets of the rows inside are taken.
                    int origin = (y * window.Width + ox * window.StrideWidth - window.PadLeft) * window.Channels;
                    ByVectors(ref pass, new Run(rowStart + ox, sample, origin, endInside - ox, step, runCells, offsets, runCount), width, vector);
                    ox = endInside - 1;
                    continue;
                }
                int inside = window.InsideCells(oy, ox, new Span<int>(cells, size), new Span<int>(pixels, size));
                ByVectors(ref pass, new Run(rowStart + ox, sample, 0, 1, 0, cells, pixels, inside), width, vector);
            }
        }
    }

    /// <summary>
    /// Every input pixel of a sample, each with the output positions whose windows cover it, in the order of those
    /// positions (the window's cells backwards: ky, then kx, descending). Pixels of one row a stride apart whose windows all
    /// lie inside the output form one run, sharing the cells; only pixels near the side edges list theirs one at a time.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void OverPixels<TPass>(in Window window, int sample, int width, int vector, TPass pass) where TPass : struct, IVectorPass
    {
        int size = window.KernelHeight * window.KernelWidth, strideWidth = window.StrideWidth;
        int* cells = stackalloc int[size], sources = stackalloc int[size];
        for (int y = 0; y < window.Height; y++)
            for (int column = 0; column < Math.Min(strideWidth, window.Width); column++)
            {
                var (first, last) = CoveredColumns(window, column);
                for (int x = column; x < window.Width; x += strideWidth)
                {
                    int count = x == first && last >= first ? (last - first) / strideWidth + 1 : 1;
                    int listed = Covering(window, y, x, cells, sources);
                    ByVectors(ref pass, new Run(0, sample, (y * window.Width + x) * window.Channels, count, strideWidth * window.Channels, cells, sources, listed), width, vector);
                    x += (count - 1) * strideWidth;
                }
            }
    }

    /// <summary>
    /// Every input row of a sample as one run of its pixels, listing the output rows whose windows cover it, in the order of
    /// those rows (the window's rows backwards): as <see cref="Run.Cells"/> the first cell of the window's row that covers
    /// it, as <see cref="Run.Offsets"/> the output row's first position within the sample.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void OverPixelRows<TPass>(in Window window, int sample, int width, int vector, TPass pass) where TPass : struct, IVectorPass
    {
        int* cells = stackalloc int[window.KernelHeight], sources = stackalloc int[window.KernelHeight];
        for (int y = 0; y < window.Height; y++)
        {
            int listed = 0;
            for (int ky = window.KernelHeight - 1; ky >= 0; ky--)
            {
                int rows = y + window.PadTop - ky * window.Dilation;
                if (rows < 0 || rows % window.StrideHeight != 0 || rows / window.StrideHeight >= window.OutputHeight) continue;
                cells[listed] = ky * window.KernelWidth;
                sources[listed++] = rows / window.StrideHeight * window.OutputWidth;
            }
            ByVectors(ref pass, new Run(0, sample, y * window.Width * window.Channels, window.Width, window.Channels, cells, sources, listed), width, vector);
        }
    }

    /// <summary>
    /// Of the columns x ≡ <paramref name="column"/> (mod the stride), those [first, last] that every window column reaching
    /// them covers from inside the output, so that each next one is covered by the same cells, one output column further.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static (int First, int Last) CoveredColumns(in Window window, int column)
    {
        int lowest = -1, highest = -1;
        for (int kx = 0; kx < window.KernelWidth; kx++)
            if (Remainder(column + window.PadLeft - kx * window.Dilation, window.StrideWidth) == 0) { if (lowest < 0) lowest = kx; highest = kx; }
        if (lowest < 0) return (column, window.Width - 1); // no window reaches these columns: their gradients are all zero
        int first = Math.Max(column, highest * window.Dilation - window.PadLeft);
        first += Remainder(column - first, window.StrideWidth);
        return (first, Math.Min(window.Width - 1, (window.OutputWidth - 1) * window.StrideWidth + lowest * window.Dilation - window.PadLeft));
    }

    private static int Remainder(int value, int divisor) => (value % divisor + divisor) % divisor;

    /// <summary>The cells whose windows cover pixel (y, x) and their output positions within the sample, positions ascending; returns how many.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe int Covering(in Window window, int y, int x, int* cells, int* sources)
    {
        int count = 0;
        for (int ky = window.KernelHeight - 1; ky >= 0; ky--)
        {
            int rows = y + window.PadTop - ky * window.Dilation, oy = rows / window.StrideHeight;
            if (rows < 0 || rows % window.StrideHeight != 0 || oy >= window.OutputHeight) continue;
            for (int kx = window.KernelWidth - 1; kx >= 0; kx--)
            {
                int columns = x + window.PadLeft - kx * window.Dilation, ox = columns / window.StrideWidth;
                if (columns < 0 || columns % window.StrideWidth != 0 || ox >= window.OutputWidth) continue;
                cells[count] = ky * window.KernelWidth + kx;
                sources[count++] = oy * window.OutputWidth + ox;
            }
        }
        return count;
    }

    /// <summary>
    /// A position's channels, a vector at a time, with the input under them: the pixel's channels themselves with a
    /// multiplier of 1 (<typeparamref name="TOne"/>), else channel c / multiplier for each output channel c, spread through a
    /// vector's floats of the caller's stack. Loads and stores take whole vectors where their type argument TFull says so, so
    /// the hot loops carry no branch for the partial last vector, which a copy of its own takes.
    /// </summary>
    private readonly unsafe struct Channels<TLanes, TVector, TOne>(Operands operands, float* spread)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        public readonly Operands Operands = operands;
        /// <summary>A vector's floats on the caller's stack (null with a multiplier of 1, where nothing is spread).</summary>
        public readonly float* Spread = spread;
        public int Width => Operands.Width;
        public float* Image(int sample) => Operands.Input + sample * Operands.ImageFloats;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVector Pixel<TFull>(float* pixel, int c, int lanes) where TFull : IFlag
        {
            if (TOne.IsSet) return Load<TFull>(pixel + c, lanes);
            for (int l = 0; l < lanes; l++) Spread[l] = pixel[(c + l) / Operands.Multiplier];
            return Load<TFull>(Spread, lanes);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVector Load<TFull>(float* at, int lanes) where TFull : IFlag => TFull.IsSet ? TLanes.Load(ref *at) : TLanes.LoadFirst(ref *at, lanes);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store<TFull>(float* at, TVector value, int lanes) where TFull : IFlag
        {
            if (TFull.IsSet) TLanes.Store(ref *at, value);
            else TLanes.StoreFirst(ref *at, value, lanes);
        }
    }

    /// <summary>
    /// Forward: output = bias + each cell's pixel·weight, fused multiply-adds in registers, then ReLU if asked; four windows
    /// at a time, so each weight loaded serves four sums.
    /// </summary>
    private readonly unsafe struct Sums<TLanes, TVector, TOne>(Operands operands, float* bias, bool relu, float* spread) : IVectorPass
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        private readonly Channels<TLanes, TVector, TOne> channels = new(operands, spread);
        public static bool OneAtATime => false;

        [MethodImpl(Compiled.Kernel)]
        public void Vector<TFull>(in Run run, int c, int lanes) where TFull : IFlag
        {
            int width = channels.Width, count = run.Count, cellCount = run.CellCount;
            int* cells = run.Cells, pixels = run.Offsets;
            nint step1 = run.Step, step2 = 2 * step1, step3 = 3 * step1;
            float* image = channels.Image(run.Sample) + run.Origin, target = channels.Operands.Output + run.Position * width + c, kernel = channels.Operands.Kernel + c;
            var start = bias == null ? TLanes.Zero : channels.Load<TFull>(bias + c, lanes);
            if (count < 4)
            {
                for (int p = 0; p < count; p++)
                {
                    float* at = image + p * step1;
                    var sum = start;
                    for (int i = 0; i < cellCount; i++)
                        sum = TLanes.MultiplyAdd(channels.Pixel<TFull>(at + pixels[i], c, lanes), channels.Load<TFull>(kernel + cells[i] * width, lanes), sum);
                    channels.Store<TFull>(target + p * width, relu ? TLanes.Relu(sum) : sum, lanes);
                }
                return;
            }
            // Blocks of four windows; where the count is no multiple of four, the last block moves back over windows
            // already written, which it computes again to the same bits.
            for (int p = 0; p < count; p += 4)
            {
                p = Math.Min(p, count - 4);
                float* at = image + p * step1;
                TVector sum0 = start, sum1 = start, sum2 = start, sum3 = start;
                for (int i = 0; i < cellCount; i++)
                {
                    var weight = channels.Load<TFull>(kernel + cells[i] * width, lanes);
                    float* pixel = at + pixels[i];
                    sum0 = TLanes.MultiplyAdd(channels.Pixel<TFull>(pixel, c, lanes), weight, sum0);
                    sum1 = TLanes.MultiplyAdd(channels.Pixel<TFull>(pixel + step1, c, lanes), weight, sum1);
                    sum2 = TLanes.MultiplyAdd(channels.Pixel<TFull>(pixel + step2, c, lanes), weight, sum2);
                    sum3 = TLanes.MultiplyAdd(channels.Pixel<TFull>(pixel + step3, c, lanes), weight, sum3);
                }
                float* output = target + p * width;
                channels.Store<TFull>(output, relu ? TLanes.Relu(sum0) : sum0, lanes);
                channels.Store<TFull>(output + width, relu ? TLanes.Relu(sum1) : sum1, lanes);
                channels.Store<TFull>(output + 2 * width, relu ? TLanes.Relu(sum2) : sum2, lanes);
                channels.Store<TFull>(output + 3 * width, relu ? TLanes.Relu(sum3) : sum3, lanes);
            }
        }
    }

    /// <summary>
    /// Forward with a multiplier of 1 where each window takes three adjacent pixels of each row and the next window starts one
    /// or two pixels further: the sums of <see cref="Sums{TLanes, TVector, TOne}"/>, bit for bit, each pixel loaded once for
    /// the windows it serves. Every output row is one run, its end windows included.
    /// </summary>
    private readonly unsafe struct SlidingSums<TLanes, TVector>(Operands operands, float* bias, bool relu) : IVectorPass
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        private readonly Channels<TLanes, TVector, Yes> channels = new(operands, null);
        public static bool OneAtATime => false;
        public static bool WholeRows => true;

        /// <summary>Whether a forward pass slides: a multiplier of 1, three taps a pixel apart, windows one or two pixels apart, rows of at least one block.</summary>
        public static bool Fits(in Operands operands) => operands.Multiplier == 1 && operands.Window is
            { KernelWidth: 3, Dilation: 1, StrideWidth: 1 or 2, OutputWidth: >= 8 };

        /// <summary>
        /// A whole output row, eight windows at a time (where the row is no multiple of eight long, the last block moves back
        /// over windows already written, which it computes again to the same bits). The blocks at the row's ends skip the
        /// pixels over the side padding, as the windows listing their cells do.
        /// </summary>
        [MethodImpl(Compiled.Kernel)]
        public void Vector<TFull>(in Run run, int c, int lanes) where TFull : IFlag
        {
            ref readonly var window = ref channels.Operands.Window;
            int width = channels.Width, count = run.Count, imageWidth = window.Width, stride = window.StrideWidth;
            int firstColumn = -window.PadLeft, span = 7 * stride + 3; // the row's first window's first column; a block's columns
            var start = bias == null ? TLanes.Zero : channels.Load<TFull>(bias + c, lanes);
            float* image = channels.Image(run.Sample) + run.Origin + c, target = channels.Operands.Output + run.Position * width + c, kernel = channels.Operands.Kernel + c;
            for (int p = 0; p < count; p += 8)
            {
                p = Math.Min(p, count - 8);
                int column = firstColumn + p * stride;
                var block = new Block(image + p * run.Step, target + p * width, kernel, column, imageWidth);
                bool inside = column >= 0 && column + span <= imageWidth;
                if (stride == 1)
                {
                    if (inside) Slide<TFull, No, No>(run, block, lanes, start);
                    else Slide<TFull, Yes, No>(run, block, lanes, start);
                }
                else if (inside) Slide<TFull, No, Yes>(run, block, lanes, start);
                else Slide<TFull, Yes, Yes>(run, block, lanes, start);
            }
        }

        /// <summary>Eight windows' first pixel, output and weights (at the channel vector), and the image column of that pixel.</summary>
        private readonly struct Block(float* pixels, float* output, float* kernel, int column, int imageWidth)
        {
            public readonly float* Pixels = pixels, Output = output, Kernel = kernel;
            public readonly int Column = column, ImageWidth = imageWidth;

            /// <summary>Whether the pixel <paramref name="t"/> columns on lies inside the image: always, unless at an end of the row (TEdge).</summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            public bool Inside<TEdge>(int t) where TEdge : IFlag => Within<TEdge>(Column + t, ImageWidth);
        }

        /// <summary>
        /// Eight windows over each row of the window inside the image: its three weights loaded once, each of the row's pixels
        /// under the block (ten a pixel apart, seventeen two apart: <typeparamref name="TTwo"/>) loaded once and multiplied
        /// into the windows that cover it, so each window still takes its cells in (ky, kx) order.
        /// </summary>
        [MethodImpl(Compiled.Kernel)]
        private void Slide<TFull, TEdge, TTwo>(in Run run, in Block block, int lanes, TVector start) where TFull : IFlag where TEdge : IFlag where TTwo : IFlag
        {
            int width = channels.Width, rows = run.CellCount / 3;
            int* cells = run.Cells, pixels = run.Offsets;
            nint pixel = channels.Operands.Window.Channels;
            TVector sum0 = start, sum1 = start, sum2 = start, sum3 = start, sum4 = start, sum5 = start, sum6 = start, sum7 = start, x;
            for (int row = 0; row < rows; row++)
            {
                float* weights = block.Kernel + cells[3 * row] * width, at = block.Pixels + pixels[3 * row];
                var w0 = channels.Load<TFull>(weights, lanes);
                var w1 = channels.Load<TFull>(weights + width, lanes);
                var w2 = channels.Load<TFull>(weights + 2 * width, lanes);
                if (TTwo.IsSet)
                {
                    // Window j takes pixels 2j, 2j + 1 and 2j + 2: the even ones serve two windows, the odd ones one.
                    if (block.Inside<TEdge>(0)) { x = channels.Load<TFull>(at, lanes); sum0 = TLanes.MultiplyAdd(x, w0, sum0); }
                    if (block.Inside<TEdge>(1)) { x = channels.Load<TFull>(at + pixel, lanes); sum0 = TLanes.MultiplyAdd(x, w1, sum0); }
                    if (block.Inside<TEdge>(2)) { x = channels.Load<TFull>(at + 2 * pixel, lanes); sum0 = TLanes.MultiplyAdd(x, w2, sum0); sum1 = TLanes.MultiplyAdd(x, w0, sum1); }
                    if (block.Inside<TEdge>(3)) { x = channels.Load<TFull>(at + 3 * pixel, lanes); sum1 = TLanes.MultiplyAdd(x, w1, sum1); }
                    if (block.Inside<TEdge>(4)) { x = channels.Load<TFull>(at + 4 * pixel, lanes); sum1 = TLanes.MultiplyAdd(x, w2, sum1); sum2 = TLanes.MultiplyAdd(x, w0, sum2); }
                    if (block.Inside<TEdge>(5)) { x = channels.Load<TFull>(at + 5 * pixel, lanes); sum2 = TLanes.MultiplyAdd(x, w1, sum2); }
                    if (block.Inside<TEdge>(6)) { x = channels.Load<TFull>(at + 6 * pixel, lanes); sum2 = TLanes.MultiplyAdd(x, w2, sum2); sum3 = TLanes.MultiplyAdd(x, w0, sum3); }
                    if (block.Inside<TEdge>(7)) { x = channels.Load<TFull>(at + 7 * pixel, lanes); sum3 = TLanes.MultiplyAdd(x, w1, sum3); }
                    if (block.Inside<TEdge>(8)) { x = channels.Load<TFull>(at + 8 * pixel, lanes); sum3 = TLanes.MultiplyAdd(x, w2, sum3); sum4 = TLanes.MultiplyAdd(x, w0, sum4); }
                    if (block.Inside<TEdge>(9)) { x = channels.Load<TFull>(at + 9 * pixel, lanes); sum4 = TLanes.MultiplyAdd(x, w1, sum4); }
                    if (block.Inside<TEdge>(10)) { x = channels.Load<TFull>(at + 10 * pixel, lanes); sum4 = TLanes.MultiplyAdd(x, w2, sum4); sum5 = TLanes.MultiplyAdd(x, w0, sum5); }
                    if (block.Inside<TEdge>(11)) { x = channels.Load<TFull>(at + 11 * pixel, lanes); sum5 = TLanes.MultiplyAdd(x, w1, sum5); }
                    if (block.Inside<TEdge>(12)) { x = channels.Load<TFull>(at + 12 * pixel, lanes); sum5 = TLanes.MultiplyAdd(x, w2, sum5); sum6 = TLanes.MultiplyAdd(x, w0, sum6); }
                    if (block.Inside<TEdge>(13)) { x = channels.Load<TFull>(at + 13 * pixel, lanes); sum6 = TLanes.MultiplyAdd(x, w1, sum6); }
                    if (block.Inside<TEdge>(14)) { x = channels.Load<TFull>(at + 14 * pixel, lanes); sum6 = TLanes.MultiplyAdd(x, w2, sum6); sum7 = TLanes.MultiplyAdd(x, w0, sum7); }
                    if (block.Inside<TEdge>(15)) { x = channels.Load<TFull>(at + 15 * pixel, lanes); sum7 = TLanes.MultiplyAdd(x, w1, sum7); }
                    if (block.Inside<TEdge>(16)) { x = channels.Load<TFull>(at + 16 * pixel, lanes); sum7 = TLanes.MultiplyAdd(x, w2, sum7); }
                    continue;
                }
                // Window j takes pixels j, j + 1 and j + 2: each pixel inside the block serves three windows.
                if (block.Inside<TEdge>(0)) { x = channels.Load<TFull>(at, lanes); sum0 = TLanes.MultiplyAdd(x, w0, sum0); }
                if (block.Inside<TEdge>(1)) { x = channels.Load<TFull>(at + pixel, lanes); sum0 = TLanes.MultiplyAdd(x, w1, sum0); sum1 = TLanes.MultiplyAdd(x, w0, sum1); }
                if (block.Inside<TEdge>(2)) { x = channels.Load<TFull>(at + 2 * pixel, lanes); sum0 = TLanes.MultiplyAdd(x, w2, sum0); sum1 = TLanes.MultiplyAdd(x, w1, sum1); sum2 = TLanes.MultiplyAdd(x, w0, sum2); }
                if (block.Inside<TEdge>(3)) { x = channels.Load<TFull>(at + 3 * pixel, lanes); sum1 = TLanes.MultiplyAdd(x, w2, sum1); sum2 = TLanes.MultiplyAdd(x, w1, sum2); sum3 = TLanes.MultiplyAdd(x, w0, sum3); }
                if (block.Inside<TEdge>(4)) { x = channels.Load<TFull>(at + 4 * pixel, lanes); sum2 = TLanes.MultiplyAdd(x, w2, sum2); sum3 = TLanes.MultiplyAdd(x, w1, sum3); sum4 = TLanes.MultiplyAdd(x, w0, sum4); }
                if (block.Inside<TEdge>(5)) { x = channels.Load<TFull>(at + 5 * pixel, lanes); sum3 = TLanes.MultiplyAdd(x, w2, sum3); sum4 = TLanes.MultiplyAdd(x, w1, sum4); sum5 = TLanes.MultiplyAdd(x, w0, sum5); }
                if (block.Inside<TEdge>(6)) { x = channels.Load<TFull>(at + 6 * pixel, lanes); sum4 = TLanes.MultiplyAdd(x, w2, sum4); sum5 = TLanes.MultiplyAdd(x, w1, sum5); sum6 = TLanes.MultiplyAdd(x, w0, sum6); }
                if (block.Inside<TEdge>(7)) { x = channels.Load<TFull>(at + 7 * pixel, lanes); sum5 = TLanes.MultiplyAdd(x, w2, sum5); sum6 = TLanes.MultiplyAdd(x, w1, sum6); sum7 = TLanes.MultiplyAdd(x, w0, sum7); }
                if (block.Inside<TEdge>(8)) { x = channels.Load<TFull>(at + 8 * pixel, lanes); sum6 = TLanes.MultiplyAdd(x, w2, sum6); sum7 = TLanes.MultiplyAdd(x, w1, sum7); }
                if (block.Inside<TEdge>(9)) { x = channels.Load<TFull>(at + 9 * pixel, lanes); sum7 = TLanes.MultiplyAdd(x, w2, sum7); }
            }
            float* output = block.Output;
            channels.Store<TFull>(output, relu ? TLanes.Relu(sum0) : sum0, lanes);
            channels.Store<TFull>(output + width, relu ? TLanes.Relu(sum1) : sum1, lanes);
            channels.Store<TFull>(output + 2 * width, relu ? TLanes.Relu(sum2) : sum2, lanes);
            channels.Store<TFull>(output + 3 * width, relu ? TLanes.Relu(sum3) : sum3, lanes);
            channels.Store<TFull>(output + 4 * width, relu ? TLanes.Relu(sum4) : sum4, lanes);
            channels.Store<TFull>(output + 5 * width, relu ? TLanes.Relu(sum5) : sum5, lanes);
            channels.Store<TFull>(output + 6 * width, relu ? TLanes.Relu(sum6) : sum6, lanes);
            channels.Store<TFull>(output + 7 * width, relu ? TLanes.Relu(sum7) : sum7, lanes);
        }
    }

    /// <summary>
    /// kernelGradient[cell] += gradient·pixel, each product rounded, then added, window after window; four cells at a time
    /// held in registers over the run.
    /// </summary>
    private readonly unsafe struct KernelGradient<TLanes, TVector, TOne>(Operands operands, float* kernelGradient, float* spread) : IVectorPass
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        private readonly Channels<TLanes, TVector, TOne> channels = new(operands, spread);
        public static bool OneAtATime => false;

        [MethodImpl(Compiled.Kernel)]
        public void Vector<TFull>(in Run run, int c, int lanes) where TFull : IFlag
        {
            int width = channels.Width, count = run.Count, cellCount = run.CellCount, step = run.Step, i = 0;
            int* cells = run.Cells, pixels = run.Offsets;
            float* image = channels.Image(run.Sample) + run.Origin, gradient = channels.Operands.Output + run.Position * width + c, weights = kernelGradient + c;
            for (; i + 4 <= cellCount; i += 4)
            {
                float* weight0 = weights + cells[i] * width, weight1 = weights + cells[i + 1] * width;
                float* weight2 = weights + cells[i + 2] * width, weight3 = weights + cells[i + 3] * width;
                float* pixel0 = image + pixels[i], pixel1 = image + pixels[i + 1], pixel2 = image + pixels[i + 2], pixel3 = image + pixels[i + 3], g = gradient;
                var sum0 = channels.Load<TFull>(weight0, lanes);
                var sum1 = channels.Load<TFull>(weight1, lanes);
                var sum2 = channels.Load<TFull>(weight2, lanes);
                var sum3 = channels.Load<TFull>(weight3, lanes);
                for (int p = 0; p < count; p++, g += width, pixel0 += step, pixel1 += step, pixel2 += step, pixel3 += step)
                {
                    var gradientAt = channels.Load<TFull>(g, lanes);
                    sum0 = TLanes.Add(sum0, TLanes.Multiply(gradientAt, channels.Pixel<TFull>(pixel0, c, lanes)));
                    sum1 = TLanes.Add(sum1, TLanes.Multiply(gradientAt, channels.Pixel<TFull>(pixel1, c, lanes)));
                    sum2 = TLanes.Add(sum2, TLanes.Multiply(gradientAt, channels.Pixel<TFull>(pixel2, c, lanes)));
                    sum3 = TLanes.Add(sum3, TLanes.Multiply(gradientAt, channels.Pixel<TFull>(pixel3, c, lanes)));
                }
                channels.Store<TFull>(weight0, sum0, lanes);
                channels.Store<TFull>(weight1, sum1, lanes);
                channels.Store<TFull>(weight2, sum2, lanes);
                channels.Store<TFull>(weight3, sum3, lanes);
            }
            for (; i < cellCount; i++)
            {
                float* weight = weights + cells[i] * width, pixel = image + pixels[i], g = gradient;
                var sum = channels.Load<TFull>(weight, lanes);
                for (int p = 0; p < count; p++, g += width, pixel += step)
                    sum = TLanes.Add(sum, TLanes.Multiply(channels.Load<TFull>(g, lanes), channels.Pixel<TFull>(pixel, c, lanes)));
                channels.Store<TFull>(weight, sum, lanes);
            }
        }
    }

    /// <summary>
    /// The kernel gradient with a multiplier of 1 for windows three pixels wide and at most three tall: the sums of
    /// <see cref="KernelGradient{TLanes, TVector, TOne}"/>, bit for bit, with every cell of the window inside the image (up
    /// to nine) held in registers along a whole output row, so each position's gradient is loaded once for all of them
    /// rather than once for every four.
    /// </summary>
    private readonly unsafe struct RowKernelGradient<TLanes, TVector>(Operands operands, float* kernelGradient) : IVectorPass
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        private readonly Channels<TLanes, TVector, Yes> channels = new(operands, null);
        public static bool OneAtATime => false;
        public static bool WholeRows => true;

        /// <summary>Whether the kernel gradient takes rows: a multiplier of 1, windows three pixels wide and at most three tall, a pixel apart.</summary>
        public static bool Fits(in Operands operands) => operands.Multiplier == 1 && operands.Window is { KernelWidth: 3, KernelHeight: <= 3, Dilation: 1 };

        /// <summary>A whole output row, testing each position's outer columns where some window reaches over the side padding.</summary>
        [MethodImpl(Compiled.Kernel)]
        public void Vector<TFull>(in Run run, int c, int lanes) where TFull : IFlag
        {
            ref readonly var window = ref channels.Operands.Window;
            // An output row none of whose window rows lies inside the image adds nothing.
            if (run.CellCount == 0) return;
            // Whether every position's window has all three of its columns inside the image.
            bool inside = window.PadLeft == 0 && (run.Count - 1) * window.StrideWidth + 3 <= window.Width;
            if (inside) Slide<TFull, No>(run, c, lanes);
            else Slide<TFull, Yes>(run, c, lanes);
        }

        /// <summary>
        /// The row's positions into the sums of its window's cells inside the image, each gradient·pixel rounded, then added;
        /// positions at the row's ends (<typeparamref name="TEdge"/>) skip the cells over the side padding, as the positions
        /// listing their cells do.
        /// </summary>
        [MethodImpl(Compiled.Kernel)]
        private void Slide<TFull, TEdge>(in Run run, int c, int lanes) where TFull : IFlag where TEdge : IFlag
        {
            ref readonly var operands = ref channels.Operands;
            int width = operands.Width, rows = run.CellCount / 3, imageWidth = operands.Window.Width, stride = operands.Window.StrideWidth, count = run.Count;
            int firstColumn = -operands.Window.PadLeft;
            nint pixel = operands.Window.Channels, step = run.Step;
            float* image = channels.Image(run.Sample) + run.Origin + c, gradient = operands.Output + run.Position * width + c;
            // The window's rows inside the image: their first cells' sums and pixels (a row absent, a copy of the first, never added to).
            float* top = kernelGradient + c + run.Cells[0] * width, middle = rows > 1 ? kernelGradient + c + run.Cells[3] * width : top;
            float* bottom = rows > 2 ? kernelGradient + c + run.Cells[6] * width : top;
            float* topPixels = image + run.Offsets[0], middlePixels = rows > 1 ? image + run.Offsets[3] : topPixels;
            float* bottomPixels = rows > 2 ? image + run.Offsets[6] : topPixels;
            TVector a0 = channels.Load<TFull>(top, lanes), a1 = channels.Load<TFull>(top + width, lanes), a2 = channels.Load<TFull>(top + 2 * width, lanes);
            TVector b0 = channels.Load<TFull>(middle, lanes), b1 = channels.Load<TFull>(middle + width, lanes), b2 = channels.Load<TFull>(middle + 2 * width, lanes);
            TVector d0 = channels.Load<TFull>(bottom, lanes), d1 = channels.Load<TFull>(bottom + width, lanes), d2 = channels.Load<TFull>(bottom + 2 * width, lanes);
            for (int p = 0; p < count; p++)
            {
                var g = channels.Load<TFull>(gradient + (nint)p * width, lanes);
                nint at = p * step;
                int column = firstColumn + p * stride;
                bool left = Within<TEdge>(column, imageWidth), right = Within<TEdge>(column + 2, imageWidth);
                // The middle column is inside wherever a window has a pixel inside its row: windows at least a pixel apart
                // over at most one pixel of padding each side.
                if (left) a0 = TLanes.Add(a0, TLanes.Multiply(g, channels.Load<TFull>(topPixels + at, lanes)));
                a1 = TLanes.Add(a1, TLanes.Multiply(g, channels.Load<TFull>(topPixels + at + pixel, lanes)));
                if (right) a2 = TLanes.Add(a2, TLanes.Multiply(g, channels.Load<TFull>(topPixels + at + 2 * pixel, lanes)));
                if (rows > 1)
                {
                    if (left) b0 = TLanes.Add(b0, TLanes.Multiply(g, channels.Load<TFull>(middlePixels + at, lanes)));
                    b1 = TLanes.Add(b1, TLanes.Multiply(g, channels.Load<TFull>(middlePixels + at + pixel, lanes)));
                    if (right) b2 = TLanes.Add(b2, TLanes.Multiply(g, channels.Load<TFull>(middlePixels + at + 2 * pixel, lanes)));
                }
                if (rows > 2)
                {
                    if (left) d0 = TLanes.Add(d0, TLanes.Multiply(g, channels.Load<TFull>(bottomPixels + at, lanes)));
                    d1 = TLanes.Add(d1, TLanes.Multiply(g, channels.Load<TFull>(bottomPixels + at + pixel, lanes)));
                    if (right) d2 = TLanes.Add(d2, TLanes.Multiply(g, channels.Load<TFull>(bottomPixels + at + 2 * pixel, lanes)));
                }
            }
            // Stored in reverse, so where a row is absent (a copy of the first) the first row's sums are stored last.
            if (rows > 2) { channels.Store<TFull>(bottom, d0, lanes); channels.Store<TFull>(bottom + width, d1, lanes); channels.Store<TFull>(bottom + 2 * width, d2, lanes); }
            if (rows > 1) { channels.Store<TFull>(middle, b0, lanes); channels.Store<TFull>(middle + width, b1, lanes); channels.Store<TFull>(middle + 2 * width, b2, lanes); }
            channels.Store<TFull>(top, a0, lanes);
            channels.Store<TFull>(top + width, a1, lanes);
            channels.Store<TFull>(top + 2 * width, a2, lanes);
        }
    }

    /// <summary>
    /// With a multiplier above 1, inputGradient[pixel] += gradient·weight, each product rounded, then added, window after
    /// window, a pixel's channel taking its output channels' products one after the other: one window at a time over all
    /// its channels, as an input channel's outputs may straddle two vectors.
    /// </summary>
    private readonly unsafe struct ScatteredInputGradient<TLanes, TVector>(Operands operands, float* inputGradient, float* spread) : IVectorPass
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        private readonly Channels<TLanes, TVector, No> channels = new(operands, spread);
        public static bool OneAtATime => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Vector<TFull>(in Run run, int c, int lanes) where TFull : IFlag
        {
            ref readonly var operands = ref channels.Operands;
            int width = operands.Width;
            float* image = inputGradient + run.Sample * operands.ImageFloats + run.Origin, kernel = operands.Kernel + c, spread = channels.Spread;
            var g = channels.Load<TFull>(operands.Output + run.Position * width + c, lanes);
            for (int i = 0; i < run.CellCount; i++)
            {
                channels.Store<TFull>(spread, TLanes.Multiply(g, channels.Load<TFull>(kernel + run.Cells[i] * width, lanes)), lanes);
                float* pixel = image + run.Offsets[i];
                for (int l = 0; l < lanes; l++) pixel[(c + l) / operands.Multiplier] += spread[l];
            }
        }
    }

    /// <summary>
    /// The input gradient with a multiplier of 1 for windows three pixels wide and a pixel or two apart: the sums of
    /// <see cref="GatheredInputGradient{TLanes, TVector}"/>, bit for bit, eight pixels of a row at a time in registers, each
    /// output gradient of the rows that cover them loaded once for the pixels it reaches (three a pixel apart; two or one
    /// two apart), where each pixel loaded its own three.
    /// </summary>
    private readonly unsafe struct SlidingInputGradient<TLanes, TVector>(Operands operands, float* inputGradient, bool accumulate) : IVectorPass
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        private readonly Channels<TLanes, TVector, Yes> channels = new(operands, null);
        public static bool OneAtATime => false;

        /// <summary>Whether the input gradient slides: a multiplier of 1, windows three pixels wide, dilation 1, stride 1 or 2 along the rows.</summary>
        public static bool Fits(in Operands operands) => operands.Multiplier == 1 && operands.Window is { KernelWidth: 3, Dilation: 1, StrideWidth: 1 or 2 };

        /// <summary>
        /// A whole input row, eight pixels at a time; with windows two pixels apart each block starts where its first pixel
        /// is the first of a window (a block before the image's first pixel skips it). Blocks at the row's ends skip the
        /// pixels past it and the output columns beyond the output's.
        /// </summary>
        [MethodImpl(Compiled.Kernel)]
        public void Vector<TFull>(in Run run, int c, int lanes) where TFull : IFlag
        {
            ref readonly var window = ref channels.Operands.Window;
            int imageWidth = window.Width, outputWidth = window.OutputWidth, padLeft = window.PadLeft;
            bool two = window.StrideWidth == 2;
            nint pixel = window.Channels;
            float* target = inputGradient + run.Sample * channels.Operands.ImageFloats + run.Origin + c;
            float* gradient = channels.Operands.Output + (long)run.Sample * window.Positions * channels.Width + c, kernel = channels.Operands.Kernel + c;
            for (int x = two ? -(padLeft & 1) : 0; x < imageWidth; x += 8)
            {
                // The output column whose gradient the block's first step loads: its first pixel's third window.
                int column = two ? (x + padLeft) / 2 - 1 : x + padLeft - 2;
                bool inside = x >= 0 && x + 8 <= imageWidth && column >= 0 && column + (two ? 5 : 10) <= outputWidth;
                var block = new Block(target + x * pixel, gradient, kernel, x, imageWidth, column, outputWidth);
                if (two)
                {
                    if (inside) Gather<TFull, No, Yes>(run, block, lanes);
                    else Gather<TFull, Yes, Yes>(run, block, lanes);
                }
                else if (inside) Gather<TFull, No, No>(run, block, lanes);
                else Gather<TFull, Yes, No>(run, block, lanes);
            }
        }

        /// <summary>Eight pixels' gradients (at the channel vector), the first one's column, and the output column of the block's first step.</summary>
        private readonly struct Block(float* pixels, float* gradient, float* kernel, int x, int imageWidth, int column, int outputWidth)
        {
            public readonly float* Pixels = pixels, Gradient = gradient, Kernel = kernel;
            public readonly int X = x, ImageWidth = imageWidth, Column = column, OutputWidth = outputWidth;

            /// <summary>Whether pixel <paramref name="j"/> of the block lies in the row: always, unless at an end of the row (TEdge).</summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            public bool Pixel<TEdge>(int j) where TEdge : IFlag => Within<TEdge>(X + j, ImageWidth);

            /// <summary>Whether the output column <paramref name="t"/> steps on lies in the output: always, unless at an end of the row (TEdge).</summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining)]
            public bool Output<TEdge>(int t) where TEdge : IFlag => Within<TEdge>(Column + t, OutputWidth);
        }

        /// <summary>
        /// Eight pixels: for each output row covering them (the window's rows backwards), its three weights loaded once and
        /// the output gradients under the block (ten a pixel apart, five two apart: <typeparamref name="TTwo"/>) loaded once
        /// each, in ascending columns, multiplied into the pixels they reach: each pixel takes its windows' columns backwards,
        /// as it listed them.
        /// </summary>
        [MethodImpl(Compiled.Kernel)]
        private void Gather<TFull, TEdge, TTwo>(in Run run, in Block block, int lanes) where TFull : IFlag where TEdge : IFlag where TTwo : IFlag
        {
            int width = channels.Width;
            nint pixel = channels.Operands.Window.Channels;
            float* at = block.Pixels;
            TVector s0 = Start<TFull, TEdge>(block, at, 0, lanes), s1 = Start<TFull, TEdge>(block, at + pixel, 1, lanes);
            TVector s2 = Start<TFull, TEdge>(block, at + 2 * pixel, 2, lanes), s3 = Start<TFull, TEdge>(block, at + 3 * pixel, 3, lanes);
            TVector s4 = Start<TFull, TEdge>(block, at + 4 * pixel, 4, lanes), s5 = Start<TFull, TEdge>(block, at + 5 * pixel, 5, lanes);
            TVector s6 = Start<TFull, TEdge>(block, at + 6 * pixel, 6, lanes), s7 = Start<TFull, TEdge>(block, at + 7 * pixel, 7, lanes), g;
            for (int row = 0; row < run.CellCount; row++)
            {
                float* weights = block.Kernel + run.Cells[row] * width, from = block.Gradient + ((nint)run.Offsets[row] + block.Column) * width;
                var w0 = channels.Load<TFull>(weights, lanes);
                var w1 = channels.Load<TFull>(weights + width, lanes);
                var w2 = channels.Load<TFull>(weights + 2 * width, lanes);
                if (TTwo.IsSet)
                {
                    // Pixel 2t takes column t with the third weight and column t + 1 with the first; pixel 2t + 1 takes column t + 1 with the second.
                    if (block.Output<TEdge>(0)) { g = channels.Load<TFull>(from, lanes); s0 = Add(s0, g, w2); }
                    if (block.Output<TEdge>(1)) { g = channels.Load<TFull>(from + width, lanes); s0 = Add(s0, g, w0); s1 = Add(s1, g, w1); s2 = Add(s2, g, w2); }
                    if (block.Output<TEdge>(2)) { g = channels.Load<TFull>(from + 2 * width, lanes); s2 = Add(s2, g, w0); s3 = Add(s3, g, w1); s4 = Add(s4, g, w2); }
                    if (block.Output<TEdge>(3)) { g = channels.Load<TFull>(from + 3 * width, lanes); s4 = Add(s4, g, w0); s5 = Add(s5, g, w1); s6 = Add(s6, g, w2); }
                    if (block.Output<TEdge>(4)) { g = channels.Load<TFull>(from + 4 * width, lanes); s6 = Add(s6, g, w0); s7 = Add(s7, g, w1); }
                    continue;
                }
                // Pixel j takes columns j, j + 1 and j + 2 with the third, second and first weights.
                if (block.Output<TEdge>(0)) { g = channels.Load<TFull>(from, lanes); s0 = Add(s0, g, w2); }
                if (block.Output<TEdge>(1)) { g = channels.Load<TFull>(from + width, lanes); s0 = Add(s0, g, w1); s1 = Add(s1, g, w2); }
                if (block.Output<TEdge>(2)) { g = channels.Load<TFull>(from + 2 * width, lanes); s0 = Add(s0, g, w0); s1 = Add(s1, g, w1); s2 = Add(s2, g, w2); }
                if (block.Output<TEdge>(3)) { g = channels.Load<TFull>(from + 3 * width, lanes); s1 = Add(s1, g, w0); s2 = Add(s2, g, w1); s3 = Add(s3, g, w2); }
                if (block.Output<TEdge>(4)) { g = channels.Load<TFull>(from + 4 * width, lanes); s2 = Add(s2, g, w0); s3 = Add(s3, g, w1); s4 = Add(s4, g, w2); }
                if (block.Output<TEdge>(5)) { g = channels.Load<TFull>(from + 5 * width, lanes); s3 = Add(s3, g, w0); s4 = Add(s4, g, w1); s5 = Add(s5, g, w2); }
                if (block.Output<TEdge>(6)) { g = channels.Load<TFull>(from + 6 * width, lanes); s4 = Add(s4, g, w0); s5 = Add(s5, g, w1); s6 = Add(s6, g, w2); }
                if (block.Output<TEdge>(7)) { g = channels.Load<TFull>(from + 7 * width, lanes); s5 = Add(s5, g, w0); s6 = Add(s6, g, w1); s7 = Add(s7, g, w2); }
                if (block.Output<TEdge>(8)) { g = channels.Load<TFull>(from + 8 * width, lanes); s6 = Add(s6, g, w0); s7 = Add(s7, g, w1); }
                if (block.Output<TEdge>(9)) { g = channels.Load<TFull>(from + 9 * width, lanes); s7 = Add(s7, g, w0); }
            }
            if (block.Pixel<TEdge>(0)) channels.Store<TFull>(at, s0, lanes);
            if (block.Pixel<TEdge>(1)) channels.Store<TFull>(at + pixel, s1, lanes);
            if (block.Pixel<TEdge>(2)) channels.Store<TFull>(at + 2 * pixel, s2, lanes);
            if (block.Pixel<TEdge>(3)) channels.Store<TFull>(at + 3 * pixel, s3, lanes);
            if (block.Pixel<TEdge>(4)) channels.Store<TFull>(at + 4 * pixel, s4, lanes);
            if (block.Pixel<TEdge>(5)) channels.Store<TFull>(at + 5 * pixel, s5, lanes);
            if (block.Pixel<TEdge>(6)) channels.Store<TFull>(at + 6 * pixel, s6, lanes);
            if (block.Pixel<TEdge>(7)) channels.Store<TFull>(at + 7 * pixel, s7, lanes);
        }

        /// <summary>sum + gradient·weight, the product rounded, then added.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static TVector Add(TVector sum, TVector gradient, TVector weight) => TLanes.Add(sum, TLanes.Multiply(gradient, weight));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private TVector Start<TFull, TEdge>(in Block block, float* at, int j, int lanes) where TFull : IFlag where TEdge : IFlag =>
            accumulate && block.Pixel<TEdge>(j) ? channels.Load<TFull>(at, lanes) : TLanes.Zero;
    }

    /// <summary>
    /// With a multiplier of 1, inputGradient[pixel] = (what it held, or zero) + the products gradient·weight of the windows
    /// covering it, each rounded, then added, window after window: the scatter's sums, in its order, gathered in registers
    /// four pixels at a time, each gradient written once.
    /// </summary>
    private readonly unsafe struct GatheredInputGradient<TLanes, TVector>(Operands operands, float* inputGradient, bool accumulate) : IVectorPass
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        private readonly Channels<TLanes, TVector, Yes> channels = new(operands, null);
        public static bool OneAtATime => false;

        [MethodImpl(Compiled.Kernel)]
        public void Vector<TFull>(in Run run, int c, int lanes) where TFull : IFlag
        {
            ref readonly var operands = ref channels.Operands;
            int width = operands.Width, count = run.Count, cellCount = run.CellCount, step = run.Step, p = 0;
            int* cells = run.Cells, sources = run.Offsets;
            float* target = inputGradient + run.Sample * operands.ImageFloats + run.Origin + c, kernel = operands.Kernel + c;
            float* gradient = operands.Output + (long)run.Sample * operands.Window.Positions * width + c;
            // Written, not added, the last block moves back over pixels already written where the count is no multiple of four,
            // which it computes again to the same bits.
            bool overlap = !accumulate && count >= 4;
            for (; overlap ? p < count : p + 4 <= count; p += 4)
            {
                if (overlap) p = Math.Min(p, count - 4);
                float* at = target + p * step, from = gradient + (long)p * width;
                TVector sum0 = Start<TFull>(at, lanes), sum1 = Start<TFull>(at + step, lanes), sum2 = Start<TFull>(at + 2 * step, lanes), sum3 = Start<TFull>(at + 3 * step, lanes);
                for (int i = 0; i < cellCount; i++)
                {
                    var weight = channels.Load<TFull>(kernel + cells[i] * width, lanes);
                    float* g = from + (long)sources[i] * width;
                    sum0 = TLanes.Add(sum0, TLanes.Multiply(channels.Load<TFull>(g, lanes), weight));
                    sum1 = TLanes.Add(sum1, TLanes.Multiply(channels.Load<TFull>(g + width, lanes), weight));
                    sum2 = TLanes.Add(sum2, TLanes.Multiply(channels.Load<TFull>(g + 2 * width, lanes), weight));
                    sum3 = TLanes.Add(sum3, TLanes.Multiply(channels.Load<TFull>(g + 3 * width, lanes), weight));
                }
                channels.Store<TFull>(at, sum0, lanes);
                channels.Store<TFull>(at + step, sum1, lanes);
                channels.Store<TFull>(at + 2 * step, sum2, lanes);
                channels.Store<TFull>(at + 3 * step, sum3, lanes);
            }
            for (; p < count; p++)
            {
                float* at = target + p * step, from = gradient + (long)p * width;
                var sum = Start<TFull>(at, lanes);
                for (int i = 0; i < cellCount; i++)
                    sum = TLanes.Add(sum, TLanes.Multiply(channels.Load<TFull>(from + (long)sources[i] * width, lanes),
                        channels.Load<TFull>(kernel + cells[i] * width, lanes)));
                channels.Store<TFull>(at, sum, lanes);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private TVector Start<TFull>(float* at, int lanes) where TFull : IFlag => accumulate ? channels.Load<TFull>(at, lanes) : TLanes.Zero;
    }
}
