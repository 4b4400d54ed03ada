using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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
        OutputHeight = Same ? (height + strideHeight - 1) / strideHeight : (height - SpanHeight) / strideHeight + 1;
        OutputWidth = Same ? (width + strideWidth - 1) / strideWidth : (width - SpanWidth) / strideWidth + 1;
        PadTop = Same ? Math.Max((OutputHeight - 1) * strideHeight + SpanHeight - height, 0) / 2 : 0;
        PadLeft = Same ? Math.Max((OutputWidth - 1) * strideWidth + SpanWidth - width, 0) / 2 : 0;
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
    public int OutputHeight { get; private init; }
    public int OutputWidth { get; private init; }
    public int PadTop { get; }
    public int PadLeft { get; }
    /// <summary>Floats in one patch: a kernel-sized window over all input channels.</summary>
    public int PatchSize { get; }
    public int Positions { get; private init; }

    /// <summary>
    /// The same convolution computing only its first <paramref name="outputHeight"/> x <paramref name="outputWidth"/> outputs
    /// (its padding as before): where a 'valid' pooling reads only those, the rows and columns it drops are never computed,
    /// and every kernel that takes the window (forward, patches, gradients) skips them alike.
    /// </summary>
    public Window CroppedTo(int outputHeight, int outputWidth)
    {
        if (outputHeight < 1 || outputHeight > OutputHeight || outputWidth < 1 || outputWidth > OutputWidth)
            throw new ArgumentOutOfRangeException(nameof(outputHeight), $"A window of {OutputHeight}x{OutputWidth} outputs cannot be cropped to {outputHeight}x{outputWidth}.");
        return this with { OutputHeight = outputHeight, OutputWidth = outputWidth, Positions = outputHeight * outputWidth };
    }
    /// <summary>
    /// The window cells of output position (<paramref name="oy"/>, <paramref name="ox"/>) that fall inside the image, in (ky,
    /// kx) order: each cell's index (ky · KernelWidth + kx) and its pixel's offset within the sample; returns how many. Cells
    /// over the padding are left out: they add nothing to a sum (a depthwise convolution) and are not averaged (a 'same'
    /// average pooling).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    internal int InsideCells(int oy, int ox, Span<int> cells, Span<int> pixels)
    {
        int count = 0;
        for (int ky = 0; ky < KernelHeight; ky++)
        {
            int y = oy * StrideHeight + ky * Dilation - PadTop;
            if (y < 0 || y >= Height) continue;
            for (int kx = 0; kx < KernelWidth; kx++)
            {
                int x = ox * StrideWidth + kx * Dilation - PadLeft;
                if (x < 0 || x >= Width) continue;
                cells[count] = ky * KernelWidth + kx;
                pixels[count++] = (y * Width + x) * Channels;
            }
        }
        return count;
    }

    /// <summary>A 1x1 window at strides 1 over every pixel: each patch is one pixel's channels, the patch matrix the image itself.</summary>
    internal bool IsPointwise => KernelHeight == 1 && KernelWidth == 1 && StrideHeight == 1 && StrideWidth == 1 && OutputHeight == Height && OutputWidth == Width;

    /// <summary>Rows and columns of the image a (dilated) window spans. Internal, so the window's text stays the layer's geometry.</summary>
    internal int SpanHeight => (KernelHeight - 1) * Dilation + 1;
    internal int SpanWidth => (KernelWidth - 1) * Dilation + 1;

    /// <summary>Rows and columns the windows read, counted from the padding's corner (a 'valid' stride may leave the last unread).</summary>
    internal int PaddedHeight => (OutputHeight - 1) * StrideHeight + SpanHeight;
    internal int PaddedWidth => (OutputWidth - 1) * StrideWidth + SpanWidth;
}

/// <summary>
/// Conv2D as im2col + GEMM: each output position's input window is copied into a row of a patch matrix
/// (positions x kh·kw·cin, zeros where the window hangs over the padding), so the convolution is one product with
/// the Keras-layout kernel (kh, kw, cin, cout) and the result is already NHWC; windows of a few floats, and deeper ones
/// at inference, are convolved directly instead (Convolution.Direct.cs), with the same arithmetic; at inference a 2x2 max
/// pooling after them is taken in the same pass (Convolution.Pooled.cs); a few filters, with output pixels in the lanes
/// (Convolution.FewFilters.cs). The backward pass sums patch gradients back onto the pixels they came from (col2im), or
/// for a few filters computes each where col2im reads it.
/// </summary>
public static partial class Convolution
{
    /// <summary>Fills <paramref name="patches"/> (batch·positions rows of PatchSize) from <paramref name="input"/> (batch, H, W, C).</summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Im2Col(ReadOnlySpan<float> input, Span<float> patches, in Window window, int batch)
    {
        RequirePatches(input, patches, window, batch, "im2col");
        fixed (float* x = input, p = patches)
        {
            var work = new PatchRows(x, p, window, batch);
            Helper.ForRanges(ref work, batch, window.Height * window.Width * window.Channels + window.Positions * window.PatchSize);
        }
    }

    /// <summary>Checks that <paramref name="input"/> holds the batch's images and <paramref name="patches"/> room for their patch rows.</summary>
    private static void RequirePatches(ReadOnlySpan<float> input, Span<float> patches, in Window window, int batch, string kernel) =>
        Require(input.Length >= batch * window.Height * window.Width * window.Channels && patches.Length >= batch * window.Positions * window.PatchSize,
            kernel, window, batch);

    /// <summary>
    /// im2col over pointers, runnable a range of samples or of patch rows at a time on either thread. <paramref name="patches"/>
    /// holds the patch rows from row <paramref name="heldFrom"/> on: the whole batch's from 0, or a range's in a scratch.
    /// </summary>
    private readonly unsafe struct PatchRows(float* input, float* patches, Window window, int batch, int heldFrom = 0) : IRanges
    {
        /// <summary>The same images, their patch rows from <paramref name="first"/> on written to <paramref name="rows"/>.</summary>
        public PatchRows Into(float* rows, int first) => new(input, rows, window, batch, first);

        /// <summary>Where patch row <paramref name="row"/> (counted over the whole batch) lies in this buffer.</summary>
        public float* Row(int row) => patches + (long)(row - heldFrom) * window.PatchSize;

        /// <summary>Samples [first, first + count).</summary>
        public void Run(int first, int count) => Fill(first * window.Positions, count * window.Positions);

        /// <summary>Patch rows [first, first + count), rows counted over the whole batch.</summary>
        [MethodImpl(Compiled.Driver)]
        public void Fill(int first, int count)
        {
            var images = new ReadOnlySpan<float>(input, batch * window.Height * window.Width * window.Channels);
            var rows = new Span<float>(patches, (first - heldFrom + count) * window.PatchSize);
            if (window.Dilation == 1)
            {
                CopyRuns(images, rows, window, first, count, heldFrom);
                return;
            }
            var gather = new Gather(images, rows, heldFrom * window.PatchSize);
            Walk(window, first, count, ref gather);
        }
    }

    /// <summary>
    /// Conv2D through im2col + GEMM, the patch rows built block by block by the thread that multiplies them, in its own
    /// cache. A small batch is split by output rows like the direct convolution and pooling (each core a half, a product of
    /// its own); a larger one in parts, each shared by both cores block by block. Training keeps every patch row in
    /// <paramref name="patches"/> for the kernel gradient; inference builds each part's rows in a scratch of the thread
    /// that runs it, so it needs no patches of the whole batch (the small CNN's second layer at batch 64: 8.9 MB).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void ForwardThroughPatches(ReadOnlySpan<float> input, Span<float> patches, ReadOnlySpan<float> kernel, Span<float> output,
        in Window window, int filters, int batch, ReadOnlySpan<float> bias, bool relu, bool keepPatches, OutputFold fold, Gemm.PackedPanels packedKernel)
    {
        Require(input.Length >= batch * window.Height * window.Width * window.Channels && (!keepPatches || patches.Length >= batch * window.Positions * window.PatchSize)
            && kernel.Length >= window.PatchSize * filters && output.Length >= batch * window.Positions * filters && (bias.IsEmpty || bias.Length >= filters),
            "Convolution", window, batch);
        long floatsPerSample = window.Positions * (window.PatchSize + filters) + window.Height * window.Width * window.Channels;
        int scratchFloats = keepPatches ? 0 : OutputRowsPerRange(window, batch, floatsPerSample) * window.OutputWidth * window.PatchSize;
        fixed (float* x = input, p = patches, k = kernel, b = bias, y = output)
        {
            var work = new PatchProduct(new PatchRows(x, p, window, batch), k, packedKernel, bias.IsEmpty ? null : b, y, window, filters, relu, scratchFloats);
            ForOutputRows(ref work, window, batch, floatsPerSample, fold);
        }
    }

    /// <summary>The patch rows of one part of an inference convolution through im2col (ForwardThroughPatches), this thread's.</summary>
    [ThreadStatic] private static AlignedBuffer? patchScratch;

    /// <summary>
    /// A spatial kernel's work over the output rows of the whole batch, <paramref name="floatsPerSample"/> touched per image:
    /// above <see cref="Helper.SpatialShareAbove"/> even one image's rows are split between the cores, where the layers
    /// before and after split theirs. A kernel that reads more than it touches (<paramref name="readPerSample"/>: a direct
    /// pass reads each window's floats where the route through patches copies them) is shared from that many floats read, as
    /// that route would be, its parts still cut by the floats it touches.
    /// </summary>
    internal static void ForOutputRows<TWork>(ref TWork work, in Window window, int batch, long floatsPerSample, OutputFold fold = default, long readPerSample = 0)
        where TWork : unmanaged, IRanges
    {
        long shareAbove = SpatialShareAbove(floatsPerSample, readPerSample);
        if (fold.IsEmpty)
        {
            Helper.ForRanges(ref work, batch * window.OutputHeight, floatsPerSample / window.OutputHeight, shareAbove);
            return;
        }
        var folded = new Folded<TWork>(work, fold, window.OutputWidth);
        Helper.ForRanges(ref folded, batch * window.OutputHeight, floatsPerSample / window.OutputHeight, shareAbove);
    }

    /// <summary>
    /// y = y·scale + shift over each pixel's channels of <see cref="Output"/> (a BatchNormalization at inference, folded by
    /// <see cref="BatchNormAtInference.FoldFor"/>), plus the same pixel of <see cref="Residual"/> where there is one (an Add
    /// after it), then max(y, 0) where <see cref="Relu"/>; empty where there is none.
    /// </summary>
    internal readonly unsafe struct OutputFold(float* output, float* scale, float* shift, int channels, bool relu, float* residual)
    {
        public readonly float* Output = output, Scale = scale, Shift = shift, Residual = residual;
        public readonly int Channels = channels;
        public readonly bool Relu = relu;

        public bool IsEmpty => Scale == null;

        /// <summary>The ReLU taken with y·scale + shift: none where the residual comes after it, whose Add the ReLU follows.</summary>
        public bool AffineRelu => Relu && Residual == null;

        /// <summary>
        /// The residual added to <paramref name="count"/> pixels of <see cref="Output"/> from <paramref name="pixels"/> on, then
        /// the ReLU where <see cref="Relu"/>: Merges.Combine's Add and max, a vector at a time, after each direct pass (whose
        /// epilogue applied the normalization; the other routes add it in <see cref="Apply"/>'s pass).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void AddResidual<TLanes, TVector>(float* pixels, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            float* residual = Residual + (pixels - Output);
            int floats = count * Channels, i = 0;
            for (; i + TLanes.Count <= floats; i += TLanes.Count)
            {
                var sum = TLanes.Add(TLanes.Load(ref pixels[i]), TLanes.Load(ref residual[i]));
                TLanes.Store(ref pixels[i], Relu ? TLanes.Relu(sum) : sum);
            }
            if (i == floats) return;
            var last = TLanes.Add(TLanes.LoadFirst(ref pixels[i], floats - i), TLanes.LoadFirst(ref residual[i], floats - i));
            TLanes.StoreFirst(ref pixels[i], Relu ? TLanes.Relu(last) : last, floats - i);
        }

        /// <summary>
        /// The fold of <paramref name="normalization"/> over <paramref name="output"/>, its scale and shift at <paramref name="scaleAndShift"/>
        /// (BatchNormAtInference.FoldFor), its residual at <paramref name="residual"/> (null for none); empty where there is none.
        /// </summary>
        public static OutputFold Of(in BatchNormAtInference normalization, float* output, float* scaleAndShift, int filters, float* residual) =>
            normalization.IsEmpty ? default : new OutputFold(output, scaleAndShift, scaleAndShift + filters, filters, normalization.Relu, residual);

        /// <summary>
        /// Pixels [first, first + count) of the output, as BatchNorm.InferenceForward computes each with the residual and the
        /// ReLU (one pass of AffineRows), over a range still in this core's cache.
        /// </summary>
        public void Apply(int first, int count)
        {
            long at = (long)first * Channels;
            if (Residual == null) Apply<No>(Output + at, null, count);
            else Apply<Yes>(Output + at, Residual + at, count);
        }

        private void Apply<TResidual>(float* pixels, float* residual, int count) where TResidual : IFlag
        {
            if (Relu) Simd.RunRanges(new AffineRows<Yes, TResidual>(pixels, pixels, Scale, Shift, residual, Channels), 0, count);
            else Simd.RunRanges(new AffineRows<No, TResidual>(pixels, pixels, Scale, Shift, residual, Channels), 0, count);
        }
    }

    /// <summary>A spatial kernel's ranges of output rows, each folded (<see cref="OutputFold"/>) once computed, while it is in this core's cache.</summary>
    private readonly struct Folded<TWork>(TWork work, OutputFold fold, int outputWidth) : IRanges where TWork : unmanaged, IRanges
    {
        private readonly TWork work = work;

        public void Run(int first, int count)
        {
            work.Run(first, count);
            fold.Apply(first * outputWidth, count * outputWidth);
        }
    }

    /// <summary>The most output rows <see cref="ForOutputRows"/> hands one range for these arguments.</summary>
    private static int OutputRowsPerRange(in Window window, int batch, long floatsPerSample, long readPerSample = 0) =>
        Helper.RangeSize(batch * window.OutputHeight, floatsPerSample / window.OutputHeight, SpatialShareAbove(floatsPerSample, readPerSample));

    /// <summary><see cref="Helper.SpatialShareAbove"/> in the floats a kernel touches, for one that reads <paramref name="readPerSample"/> of them (ForOutputRows).</summary>
    private static long SpatialShareAbove(long floatsPerSample, long readPerSample) =>
        readPerSample > floatsPerSample ? Helper.SpatialShareAbove * floatsPerSample / readPerSample : Helper.SpatialShareAbove;

    /// <summary>
    /// Output rows [first, first + count) over the batch: their patch rows produced and multiplied by the kernel, into the
    /// whole batch's patches, or with <paramref name="scratchFloats"/> (the largest range's rows) into this thread's scratch.
    /// Each range's product reads the kernel's panels where it was packed ahead (<paramref name="packedKernel"/>).
    /// </summary>
    private readonly unsafe struct PatchProduct(PatchRows rows, float* kernel, Gemm.PackedPanels packedKernel, float* bias, float* output, Window window,
        int filters, bool relu, int scratchFloats) : IRanges
    {
        private readonly PatchRows rows = rows;

        [MethodImpl(Compiled.Driver)]
        public void Run(int first, int count)
        {
            int firstPatch = first * window.OutputWidth, patchCount = count * window.OutputWidth, patch = window.PatchSize;
            var target = scratchFloats == 0 ? rows : rows.Into(Scratch(patchCount), firstPatch);
            var from = new PatchRowsFrom(target, firstPatch);
            Gemm.MultiplyProducedRows(new Span<float>(target.Row(firstPatch), patchCount * patch), new ReadOnlySpan<float>(kernel, patch * filters),
                new Span<float>(output + (long)firstPatch * filters, patchCount * filters), patchCount, patch, filters,
                new Gemm.RowProducer(&PatchRowsFrom.Produce, &from), bias == null ? default : new ReadOnlySpan<float>(bias, filters), relu, packedKernel);
        }

        /// <summary>
        /// This thread's scratch for <paramref name="patchRows"/> rows, sized for the largest range at once, so that no later
        /// range allocates. im2col writes it through raw pointers, so a range larger than ForOutputRows hands out throws.
        /// </summary>
        private float* Scratch(int patchRows)
        {
            if ((long)patchRows * window.PatchSize > scratchFloats)
                throw new InvalidOperationException($"Convolution: a range of {patchRows} patch rows outgrew the scratch of {scratchFloats / window.PatchSize}.");
            return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(AlignedBuffer.Ensure(ref patchScratch, scratchFloats)));
        }
    }

    /// <summary>Patch rows counted from <c>offset</c>: a product over some of the rows writes its row 0 at patch row <c>offset</c>.</summary>
    private readonly unsafe struct PatchRowsFrom(PatchRows rows, int offset)
    {
        private readonly PatchRows rows = rows;
        private readonly int offset = offset;

        public static void Produce(void* state, int first, int count)
        {
            var from = (PatchRowsFrom*)state;
            from->rows.Fill(from->offset + first, count);
        }
    }

    /// <summary>
    /// im2col for undilated windows: each kernel row is one run of kw·channels floats, copied in vectors in one loop nest,
    /// where the general walk spent a call and a check on each run (28x28x1, 3x3: 10.9 -> 4 us a sample) and a call to
    /// memmove on each longer one. Runs of a few floats (a first layer's one or three channels) go in vectors of four (64
    /// such samples on two cores: 168 -> 130 us), longer ones in vectors of eight. Where windows reach over the padding,
    /// every window reads a zero-padded copy of the rows it spans (<see cref="Plane"/>), so those too copy whole kernel rows
    /// where they went cell by cell through the walk (the MobileNet stem's 'same' windows, 32 samples on two cores: 110 ->
    /// 34 us). <paramref name="patches"/> holds the patch rows from row <paramref name="heldFrom"/> on.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static void CopyRuns(ReadOnlySpan<float> images, Span<float> patches, in Window window, int firstRow, int rows, int heldFrom)
    {
        if (window.KernelWidth * window.Channels >= 16 && Simd.Current != SimdPath.Portable)
            CopyRunsInVectors<Lanes256, Vector256<float>>(images, patches, window, firstRow, rows, heldFrom);
        else CopyRunsInVectors<Lanes128, Vector128<float>>(images, patches, window, firstRow, rows, heldFrom);
    }

    [MethodImpl(Compiled.Kernel)]
    private static unsafe void CopyRunsInVectors<TLanes, TVector>(ReadOnlySpan<float> images, Span<float> patches, in Window window, int firstRow, int rows, int heldFrom)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int kernelHeight = window.KernelHeight, run = window.KernelWidth * window.Channels, imageFloats = window.Height * window.Width * window.Channels;
        int step = window.StrideWidth * window.Channels, outputWidth = window.OutputWidth;
        // A run goes in whole vectors, the last one past its end: it reads up to a vector less one float more of the plane
        // and writes as many more, which the next run (or the next row's first) then overwrites. So the last window of the
        // range, whose spill would land in rows it does not own, and windows whose reads would pass what is readable, go
        // float by float.
        int lanes = TLanes.Count, vectors = (run + lanes - 1) / lanes, spill = lanes * vectors - run;
        fixed (float* source = images, target = patches)
        {
            float* cell = target + (long)(firstRow - heldFrom) * window.PatchSize, windows = null;
            long readable = 0; // floats readable from windows, the first window's corner of the sample
            int rowFloats = 0;
            // A stretch of one output row's windows at a time.
            for (int row = firstRow, end = firstRow + rows, sample = -1; row < end;)
            {
                int rowSample = row / window.Positions, position = row - rowSample * window.Positions;
                int oy = position / outputWidth, ox = position % outputWidth, count = Math.Min(outputWidth - ox, end - row);
                if (rowSample != sample)
                {
                    // The rows this range's windows of the sample read: the image where it holds them, else a zero-padded copy.
                    sample = rowSample;
                    float* image = source + (long)sample * imageFloats;
                    int lastY = (Math.Min(end, (sample + 1) * window.Positions) - 1 - sample * window.Positions) / outputWidth;
                    var plane = Plane.Padded(image, window, oy, lastY + 1, spill);
                    rowFloats = plane.RowFloats;
                    windows = plane.At(-window.PadTop, -window.PadLeft);
                    long fromOrigin = plane.Origin == image ? images.Length - (long)sample * imageFloats : (long)plane.Height * rowFloats + spill;
                    readable = fromOrigin - (windows - plane.Origin);
                }
                long origin = (long)oy * window.StrideHeight * rowFloats + ox * step;
                float* corner = windows + origin;
                // Windows whose reads stay within what is readable, all but the range's last.
                long room = readable - ((kernelHeight - 1) * rowFloats + run + spill) - origin;
                int whole = room < 0 ? 0 : (int)Math.Min(room / step + 1, row + count == end ? count - 1 : count);
                cell = CopyWindows<TLanes, TVector>(corner, cell, whole, step, kernelHeight, rowFloats, run, vectors);
                for (float* from = corner + whole * step; whole < count; whole++, from += step)
                    for (int ky = 0; ky < kernelHeight; ky++)
                        for (int i = 0; i < run; i++) *cell++ = from[ky * rowFloats + i];
                row += count;
            }
        }
    }

    /// <summary>
    /// <paramref name="count"/> windows <paramref name="step"/> floats apart into consecutive patch rows from
    /// <paramref name="cell"/>, each kernel row as <paramref name="vectors"/> vectors; returns the next row's first cell. A
    /// method of its own so the JIT keeps its few pointers in registers.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe float* CopyWindows<TLanes, TVector>(float* from, float* cell, int count, int step, int kernelHeight, int rowFloats, int run, int vectors)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int floats = vectors * TLanes.Count;
        for (int w = 0; w < count; w++, from += step)
            for (float* kernelRow = from, end = from + kernelHeight * rowFloats; kernelRow < end; kernelRow += rowFloats, cell += run)
                for (int v = 0; v < floats; v += TLanes.Count) TLanes.Store(ref cell[v], TLanes.Load(ref kernelRow[v]));
        return cell;
    }

    /// <summary>
    /// Where im2col and the direct pass read a range's windows in place: pixel (y, x) at <c>Origin + (y - Top) · RowFloats +
    /// (x - Left) · channels</c> for y in [Top, Top + Height) and x in [Left, Left + Width). The image itself, or a
    /// zero-padded copy of the rows a range of output rows reads, which holds every window of those rows, those over the
    /// padding too.
    /// </summary>
    private readonly unsafe struct Plane(float* origin, int top, int left, int height, int width, int channels)
    {
        public readonly float* Origin = origin;
        public readonly int Top = top, Left = left, Height = height, Width = width, Channels = channels, RowFloats = width * channels;

        public float* At(int y, int x) => Origin + (long)(y - Top) * RowFloats + (x - Left) * Channels;

        /// <summary>Whether rows [top, top + rows) and columns [left, left + columns) lie within the plane.</summary>
        public bool Holds(int top, int rows, int left, int columns) => top >= Top && top + rows <= Top + Height && left >= Left && left + columns <= Left + Width;

        /// <summary>
        /// Floats up to which the direct pass copies the rows of a range whose windows hang over the padding (64 KB, in L2
        /// beside the kernel), so that every full pass reads in place: gathering each edge pass's six windows, float by float
        /// with a bounds test, cost the MobileNet stem's strided 'same' 3x3 (a third of its passes at the right edge) about
        /// as much as its multiply-adds. Copying a 32x32x3 image's rows costs a few hundred vector moves.
        /// </summary>
        private const int PaddedFloats = 16 * 1024;

        /// <summary>
        /// The most output rows of a sample one plane serves: all where no window hangs over the padding (the plane is the
        /// image), else as many as a copy of <see cref="PaddedFloats"/> holds, so that the edge windows of wide 'same' rows are
        /// read from a copy a band at a time, not gathered (32x32x32 rows: 13 output rows a band).
        /// </summary>
        public static int BandRows(in Window window)
        {
            var (firstRow, rows, columns) = Extent(window, 0, window.OutputHeight);
            if (ImageHolds(window, firstRow, rows, columns)) return window.OutputHeight;
            int copyRows = PaddedFloats / (columns * window.Channels);
            return Math.Max(1, (copyRows - window.SpanHeight) / window.StrideHeight + 1);
        }

        /// <summary>This thread's zero-padded copy (<see cref="Copy"/>).</summary>
        [ThreadStatic] private static AlignedBuffer? padded;

        /// <summary>
        /// The plane output rows [<paramref name="top"/>, <paramref name="bottom"/>) read, for the direct pass of
        /// <paramref name="passPixels"/> pixels: the image where none of their windows hangs over the padding, where rows are
        /// narrower than a pass (it gathers every window then) or where a copy would exceed <see cref="PaddedFloats"/> (it
        /// gathers the edge windows), else a copy.
        /// </summary>
        [MethodImpl(Compiled.Driver)]
        public static Plane For(float* image, in Window window, int top, int bottom, int passPixels)
        {
            var (_, rows, columns) = Extent(window, top, bottom);
            return window.OutputWidth < passPixels || (long)rows * columns * window.Channels > PaddedFloats
                ? Whole(image, window) : Padded(image, window, top, bottom, slack: 0);
        }

        /// <summary>
        /// The plane output rows [<paramref name="top"/>, <paramref name="bottom"/>) read, for im2col: the image where it
        /// holds every window, else a copy with <paramref name="slack"/> floats more readable past its end.
        /// </summary>
        [MethodImpl(Compiled.Driver)]
        public static Plane Padded(float* image, in Window window, int top, int bottom, int slack)
        {
            var (firstRow, rows, columns) = Extent(window, top, bottom);
            return ImageHolds(window, firstRow, rows, columns) ? Whole(image, window) : Copy(image, window, firstRow, rows, columns, slack);
        }

        /// <summary>Whether the image itself holds rows [firstRow, firstRow + rows) and the windows' columns: no window hangs over the padding there.</summary>
        private static bool ImageHolds(in Window window, int firstRow, int rows, int columns) =>
            firstRow >= 0 && firstRow + rows <= window.Height && window.PadLeft == 0 && columns <= window.Width;

        /// <summary>The sample's image itself.</summary>
        private static Plane Whole(float* image, in Window window) => new(image, 0, 0, window.Height, window.Width, window.Channels);

        /// <summary>The image rows from <c>FirstRow</c> (over the padding where negative) that output rows [<paramref name="top"/>, <paramref name="bottom"/>) read, and the columns of their windows.</summary>
        private static (int FirstRow, int Rows, int Columns) Extent(in Window window, int top, int bottom) =>
            (top * window.StrideHeight - window.PadTop, (bottom - 1 - top) * window.StrideHeight + window.SpanHeight, window.PaddedWidth);

        /// <summary>Image rows [firstRow, firstRow + rows) with their zero padding, in this thread's scratch (valid until its next call).</summary>
        private static Plane Copy(float* image, in Window window, int firstRow, int rows, int columns, int slack)
        {
            float* copy = (float*)Unsafe.AsPointer(ref AlignedBuffer.Ensure(ref padded, rows * columns * window.Channels + slack)[0]);
            PadImage(image, window, copy, window.Channels, firstRow + window.PadTop, firstRow + window.PadTop + rows, Repeats.None);
            return new Plane(copy, firstRow, -window.PadLeft, rows, columns, window.Channels);
        }
    }

    /// <summary>
    /// Lays rows [<paramref name="firstRow"/>, <paramref name="endRow"/>) of a sample's image out with its zero padding as
    /// the windows read it, from <paramref name="padded"/> on (rows of the window's PaddedHeight x PaddedWidth plane,
    /// counted from the padding's corner), each pixel's channels padded with zeros to <paramref name="laneChannels"/>.
    /// Pixels no window reads (past the last window of a 'valid' stride) are left out. Only what the image does not cover is
    /// cleared, each padded row once. An upsampled image (<paramref name="repeats"/>) is read from the one given, a row that
    /// repeats the one above copied from it.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void PadImage(float* image, in Window window, float* padded, int laneChannels, int firstRow, int endRow, in Repeats repeats)
    {
        int height = window.PaddedHeight, width = window.PaddedWidth, channels = window.Channels, rowFloats = width * laneChannels;
        int rows = Math.Min(window.Height, height - window.PadTop), columns = Math.Min(window.Width, width - window.PadLeft);
        int left = window.PadLeft * laneChannels, covered = columns * laneChannels, imageWidth = window.Width / repeats.Columns;
        for (int py = firstRow; py < Math.Min(endRow, height); py++)
        {
            var row = new Span<float>(padded + (long)(py - firstRow) * rowFloats, rowFloats);
            int y = py - window.PadTop;
            if (y < 0 || y >= rows)
            {
                row.Clear();
                continue;
            }
            if (py > firstRow && repeats.RepeatsAbove(y))
            {
                new ReadOnlySpan<float>(padded + (long)(py - 1 - firstRow) * rowFloats, rowFloats).CopyTo(row);
                continue;
            }
            float* from = image + (long)(y / repeats.Rows) * imageWidth * channels;
            if (laneChannels == channels)
            {
                row.Slice(0, left).Clear();
                if (repeats.Any) UpSampling.RepeatPixels(from, (float*)Unsafe.AsPointer(ref row[left]), columns, channels, repeats.Columns);
                else new ReadOnlySpan<float>(from, covered).CopyTo(row.Slice(left));
                row.Slice(left + covered).Clear();
                continue;
            }
            row.Clear();
            for (int x = 0; x < columns; x++)
                new ReadOnlySpan<float>(from + x / repeats.Columns * channels, channels).CopyTo(row.Slice(left + x * laneChannels));
        }
    }

    /// <summary>
    /// How a convolution reads its image: as given (<see cref="None"/>), or as the nearest-neighbour upsampling of the one
    /// given, each row <see cref="Rows"/> times and each pixel <see cref="Columns"/> times (an UpSampling2D that the
    /// convolution alone reads, so its output is never written). The window is the upsampled image's.
    /// </summary>
    private readonly record struct Repeats(int Rows, int Columns)
    {
        public static Repeats None => new(1, 1);

        public bool Any => Rows * Columns > 1;

        /// <summary>Whether upsampled row <paramref name="y"/> is the same image row as the one above it.</summary>
        public bool RepeatsAbove(int y) => y % Rows != 0;

        /// <summary>The floats of a sample of the image given.</summary>
        public long SampleFloats(in Window window) => (long)window.Height * window.Width * window.Channels / (Rows * Columns);

        /// <summary>The repeats by which <paramref name="window"/>'s image upsamples the one given, checked: whole blocks, as Keras' UpSampling2D.</summary>
        public static Repeats Of(int rows, int columns, in Window window, string kernel)
        {
            if (rows <= 0 || columns <= 0 || window.Height % rows != 0 || window.Width % columns != 0)
                throw new ArgumentException($"{kernel}: {window} is no UpSampling2D({rows}, {columns}) of whole blocks.");
            return new Repeats(rows, columns);
        }

        /// <summary>
        /// The image given, upsampled into a scratch (empty where there are no repeats): for the routes that read the
        /// upsampled image itself.
        /// </summary>
        public Scratch<float> Upsample(ReadOnlySpan<float> image, in Window window, int batch)
        {
            var upsampled = Scratch<float>.RentUncleared(Any ? batch * window.Height * window.Width * window.Channels : 0);
            if (Any) UpSampling.Forward(image, upsampled.Span, window.Height / Rows, window.Width / Columns, window.Channels, Rows, Columns, batch);
            return upsampled;
        }
    }

    /// <summary>The output position of a patch row (sample, row, column), stepped row by row without a division per row.</summary>
    private struct Position
    {
        public int Sample, Y, X;

        public Position(in Window window, int row)
        {
            Sample = row / window.Positions;
            int position = row - Sample * window.Positions;
            Y = position / window.OutputWidth;
            X = position - Y * window.OutputWidth;
        }

        public void Advance(in Window window)
        {
            if (++X < window.OutputWidth) return;
            X = 0;
            if (++Y < window.OutputHeight) return;
            Y = 0;
            Sample++;
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
    /// (a 3x3 convolution's patches of 64 samples: 8.9 MB); a stride-1 'same' window with odd sides, where the direct kernel
    /// takes it, as the direct convolution of the values (<see cref="TransposesDirectly"/>). <paramref name="patches"/> is scratch of
    /// <see cref="TransposedScratch"/> floats. <paramref name="scattered"/>: the values are a max pooling's gradient scattered
    /// to its winners, mostly zeros, which the patches skip where they are at least a stretch wide
    /// (<see cref="ScatteredRows{TLanes, TVector}"/>: the same bits). <paramref name="upsampledRows"/> x
    /// <paramref name="upsampledColumns"/> other than 1 x 1: the window's image is an UpSampling2D's output and
    /// <paramref name="image"/> that layer's input, whose gradient is each block's sum (<see cref="UpSampling.Backward"/>'s
    /// bits); the in-place route sums each row as it computes it, the others sum the whole gradient from the scratch.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Transposed(ReadOnlySpan<float> values, ReadOnlySpan<float> kernel, Span<float> patches, Span<float> image,
        in Window window, int valueChannels, int batch, bool accumulate, bool scattered = false, int upsampledRows = 1, int upsampledColumns = 1)
    {
        if (upsampledRows * upsampledColumns > 1)
        {
            TransposedUpsampled(values, kernel, patches, image, window, valueChannels, batch, accumulate, scattered, upsampledRows, upsampledColumns);
            return;
        }
        int chunk = ChunkSamples(window, batch), chunkFloats = chunk * window.Positions * window.PatchSize;
        int imageFloats = batch * window.Height * window.Width * window.Channels;
        Require(values.Length >= batch * window.Positions * valueChannels && kernel.Length >= window.PatchSize * valueChannels
            && image.Length >= imageFloats, "Transposed convolution", window, batch);
        switch (TransposedRouteOf(window, valueChannels, accumulate, scattered, out var flipped))
        {
            case TransposedRoute.InPlace:
                TransposedInPlace(values, kernel, image, window, valueChannels, batch, accumulate, Repeats.None);
                return;
            case TransposedRoute.Direct:
                TransposedDirect(values, kernel, image, window, flipped, valueChannels, batch, accumulate);
                return;
            case TransposedRoute.Product:
                Gemm.MultiplyTransposedB(values, kernel, image, batch * window.Positions, valueChannels, window.PatchSize);
                return;
        }
        Require(patches.Length >= 2 * chunkFloats, "Transposed convolution's scratch", window, batch);
        // Scattered values take each filter's kernel column as a row, so a nonzero value adds a contiguous run of it.
        scattered &= ScatteredFits(window.PatchSize);
        using var columns = Scratch<float>.Rent(scattered ? window.PatchSize * valueChannels : 0);
        if (scattered) Gemm.Transpose(kernel, columns.Span, window.PatchSize, valueChannels);
        fixed (float* v = values, k = kernel, kernelColumns = columns.Span, p = patches, x = image)
        {
            var job = new TransposedJob(v, k, scattered ? kernelColumns : null, p, x, window, valueChannels, batch, chunk, accumulate);
            Helper.For((batch + chunk - 1) / chunk, &TransposeChunk, in job);
        }
    }

    /// <summary>
    /// <see cref="Transposed"/> onto an UpSampling2D's input: in place, each row of the upsampled gradient summed into it as
    /// it is computed; by the other routes, the upsampled gradient written into the scratch's first floats and then summed.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static void TransposedUpsampled(ReadOnlySpan<float> values, ReadOnlySpan<float> kernel, Span<float> patches, Span<float> image,
        in Window window, int valueChannels, int batch, bool accumulate, bool scattered, int rows, int columns)
    {
        int upsampledFloats = batch * window.Height * window.Width * window.Channels;
        var upsampled = Repeats.Of(rows, columns, window, "Transposed convolution onto an upsampling's input");
        Require(values.Length >= batch * window.Positions * valueChannels && kernel.Length >= window.PatchSize * valueChannels
            && image.Length >= batch * upsampled.SampleFloats(window), "Transposed convolution", window, batch);
        if (TransposedRouteOf(window, valueChannels, accumulate: false, scattered, out _) == TransposedRoute.InPlace)
        {
            TransposedInPlace(values, kernel, image, window, valueChannels, batch, accumulate, upsampled);
            return;
        }
        Require(patches.Length >= upsampledFloats, "Transposed convolution's scratch", window, batch);
        var gradient = patches.Slice(0, upsampledFloats);
        Transposed(values, kernel, patches.Slice(upsampledFloats), gradient, window, valueChannels, batch, accumulate: false, scattered);
        UpSampling.Backward(gradient, image, window.Height / rows, window.Width / columns, window.Channels, rows, columns, batch, accumulate);
    }

    /// <summary>
    /// The scratch <see cref="Transposed"/> needs for batches of up to <paramref name="maxBatch"/> samples of
    /// <paramref name="valueChannels"/> channels: a chunk of patches per core, or none where it takes another route than
    /// the patches (which depends on the machine's widest vectors, so the model asks when it allocates); onto an
    /// UpSampling2D's input by another route than in place, the upsampled gradient first. A caller whose one scratch serves
    /// calls that accumulate and calls that do not asks for the accumulating ones (the default).
    /// </summary>
    public static int TransposedScratch(in Window window, int valueChannels, int maxBatch, bool scattered = false, bool accumulate = true, bool upsampled = false)
    {
        var route = TransposedRouteOf(window, valueChannels, accumulate && !upsampled, scattered, out _);
        int patchFloats = route != TransposedRoute.Patches ? 0 : Helper.Workers * ChunkSamples(window, maxBatch) * window.Positions * window.PatchSize;
        return patchFloats + (upsampled && route != TransposedRoute.InPlace ? maxBatch * window.Height * window.Width * window.Channels : 0);
    }

    /// <summary>How <see cref="Transposed"/> sums its values' patches back onto the image.</summary>
    private enum TransposedRoute
    {
        /// <summary>Few value channels, or up to 16 over a shallow image at stride 1: each pixel sums its cells as it computes them (<see cref="TransposedInPlace"/>).</summary>
        InPlace,
        /// <summary>A stride-1 'same' odd window the direct kernel takes: the values convolved with the kernel turned.</summary>
        Direct,
        /// <summary>A pointwise window written, not added: each patch is one pixel, so the product writes the image itself.</summary>
        Product,
        /// <summary>The patches of a chunk of samples, made and summed in a core's cache (the scratch).</summary>
        Patches,
    }

    /// <summary>
    /// The one place <see cref="Transposed"/> and <see cref="TransposedScratch"/> choose a route. Scattered values (a max
    /// pooling's gradient) take no direct route: unless the in-place route takes them, the patches skip their zeros.
    /// </summary>
    private static TransposedRoute TransposedRouteOf(in Window window, int valueChannels, bool accumulate, bool scattered, out Window flipped)
    {
        flipped = default;
        bool directly = !scattered && TransposesDirectly(window, valueChannels, out flipped);
        if (TransposesInPlace(window, valueChannels, directly)) return TransposedRoute.InPlace;
        if (directly) return TransposedRoute.Direct;
        return window.IsPointwise && !accumulate && !scattered ? TransposedRoute.Product : TransposedRoute.Patches;
    }

    /// <summary>Samples per chunk: about 512 KB of patches, a quarter of a core's 2 MB L2, beside the kernel and the image.</summary>
    private static int ChunkSamples(in Window window, int batch) =>
        Math.Clamp(512 * 1024 / (window.Positions * window.PatchSize * sizeof(float)), 1, Math.Max(batch, 1));

    /// <summary><see cref="Transposed"/>'s operands as pointers; <c>Columns</c>, the kernel transposed, only for scattered values (else null).</summary>
    private readonly unsafe struct TransposedJob(float* values, float* kernel, float* columns, float* patches, float* image, in Window window, int valueChannels, int batch, int chunk, bool accumulate)
    {
        public readonly float* Values = values, Kernel = kernel, Columns = columns, Patches = patches, Image = image;
        public readonly Window Window = window;
        public readonly int ValueChannels = valueChannels, Batch = batch, Chunk = chunk;
        public readonly bool Accumulate = accumulate;
    }

    [MethodImpl(Compiled.Driver)]
    private static unsafe void TransposeChunk(void* state, int index, int worker)
    {
        ref readonly var job = ref *(TransposedJob*)state;
        ref readonly var window = ref job.Window;
        int first = index * job.Chunk, samples = Math.Min(job.Chunk, job.Batch - first);
        int patchFloats = window.Positions * window.PatchSize, valueFloats = window.Positions * job.ValueChannels;
        int imageFloats = window.Height * window.Width * window.Channels;
        float* values = job.Values + (long)first * valueFloats, patches = job.Patches + worker * job.Chunk * patchFloats;
        int rows = samples * window.Positions;
        if (job.Columns != null) ScatteredRows(values, job.Columns, patches, rows, job.ValueChannels, window.PatchSize);
        else Gemm.MultiplyTransposedB(new ReadOnlySpan<float>(values, rows * job.ValueChannels), new ReadOnlySpan<float>(job.Kernel, window.PatchSize * job.ValueChannels),
            new Span<float>(patches, rows * window.PatchSize), rows, job.ValueChannels, window.PatchSize);
        Col2Im(new ReadOnlySpan<float>(patches, rows * window.PatchSize), new Span<float>(job.Image + (long)first * imageFloats, samples * imageFloats), window, samples, job.Accumulate);
    }

    /// <summary>
    /// The inverse of <see cref="Im2Col"/>: each input pixel receives the sum of the patch-gradient cells copied from it.
    /// Written as a gather, pixel by pixel with the sum in registers, rather than as a scatter of patch rows onto the image:
    /// neighbouring patches overlap, so a scatter re-reads what it has just stored (a 3x3 convolution's 7744 patches of
    /// 288: 2.2 ms scattered, ~0.3 ms gathered).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Col2Im(ReadOnlySpan<float> patchGradients, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int height = window.Height, width = window.Width, channels = window.Channels;
        Require(patchGradients.Length >= (long)batch * window.Positions * window.PatchSize && inputGradient.Length >= (long)batch * height * width * channels,
            "Col2Im", window, batch);
        // Which cells read an image row y: pairs (output row, kernel row), kept as their part of a patch-matrix offset; the
        // same per image column. A row's pairs are rowParts[rowStart[y] .. rowStart[y + 1]).
        int rowCount = height * window.KernelHeight, columnCount = width * window.KernelWidth;
        int needed = rowCount + columnCount + height + width + 2;
        using var cells = Scratch<int>.Rent(needed);
        var scratch = cells.Span;
        var rowStart = scratch.Slice(0, height + 1);
        var columnStart = scratch.Slice(height + 1, width + 1);
        var rowParts = scratch.Slice(height + width + 2, rowCount);
        var columnParts = scratch.Slice(height + width + 2 + rowCount, columnCount);
        int patchSize = window.PatchSize, rowSize = window.OutputWidth * patchSize;
        CellsReading(height, window.KernelHeight, window.StrideHeight, window.PadTop, window.Dilation, window.OutputHeight, rowSize, window.KernelWidth * channels, rowStart, rowParts);
        CellsReading(width, window.KernelWidth, window.StrideWidth, window.PadLeft, window.Dilation, window.OutputWidth, patchSize, channels, columnStart, columnParts);

        fixed (float* allPatches = patchGradients, image = inputGradient)
        fixed (int* rowAt = rowParts, columnAt = columnParts)
        {
            for (int sample = 0; sample < batch; sample++)
            {
                float* patches = allPatches + (long)sample * window.Positions * patchSize;
                for (int y = 0; y < height; y++)
                {
                    int* rows = rowAt + rowStart[y], rowsEnd = rowAt + rowStart[y + 1];
                    for (int x = 0; x < width; x++)
                    {
                        var cell = new PixelCells(patches, rows, rowsEnd, columnAt + columnStart[x], columnAt + columnStart[x + 1]);
                        cell.Sum(image + ((long)(sample * height + y) * width + x) * channels, channels, accumulate);
                    }
                }
            }
        }
    }

    /// <summary>The patch-gradient cells one image pixel receives: every (row, column) pair of its cell offsets.</summary>
    private readonly unsafe struct PixelCells(float* patches, int* rows, int* rowsEnd, int* columns, int* columnsEnd)
    {
        /// <summary>
        /// The pixel's channels as the sum of its cells, rows outer and columns inner, each channel's additions in that order
        /// whatever its vector. Four vectors of channels at a time, four chains of additions: one chain waited on each
        /// addition's latency, and read each cell through a span (the small CNN's conv2 patches, 64 samples: 535 -> 265 us).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Sum(float* target, int channels, bool accumulate)
        {
            int lanes = Vector<float>.Count, c = 0;
            for (; c + 4 * lanes <= channels; c += 4 * lanes)
            {
                float* at = target + c;
                Vector<float> s0 = default, s1 = default, s2 = default, s3 = default;
                if (accumulate)
                {
                    s0 = Vector.Load(at); s1 = Vector.Load(at + lanes); s2 = Vector.Load(at + 2 * lanes); s3 = Vector.Load(at + 3 * lanes);
                }
                for (int* row = rows; row < rowsEnd; row++)
                    for (int* column = columns; column < columnsEnd; column++)
                    {
                        float* cell = patches + *row + *column + c;
                        s0 += Vector.Load(cell); s1 += Vector.Load(cell + lanes); s2 += Vector.Load(cell + 2 * lanes); s3 += Vector.Load(cell + 3 * lanes);
                    }
                s0.Store(at); s1.Store(at + lanes); s2.Store(at + 2 * lanes); s3.Store(at + 3 * lanes);
            }
            for (; c + lanes <= channels; c += lanes)
            {
                var sum = accumulate ? Vector.Load(target + c) : Vector<float>.Zero;
                for (int* row = rows; row < rowsEnd; row++)
                    for (int* column = columns; column < columnsEnd; column++) sum += Vector.Load(patches + *row + *column + c);
                sum.Store(target + c);
            }
            for (; c < channels; c++)
            {
                float sum = accumulate ? target[c] : 0f;
                for (int* row = rows; row < rowsEnd; row++)
                    for (int* column = columns; column < columnsEnd; column++) sum += patches[*row + *column + c];
                target[c] = sum;
            }
        }
    }

    /// <summary>
    /// Along one axis, for each image index i, the (output index o, kernel index k) with o·stride + k·dilation - pad = i, each
    /// stored as o·outputStep + k·kernelStep; index i's pairs are parts[start[i] .. start[i + 1]).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
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

    /// <summary>Every (patch cell, image pixel) pair of patch rows [firstRow, firstRow + rows), rows counted over the batch, in patch-matrix order: im2col's loop nest.</summary>
    [MethodImpl(Compiled.Kernel)]
    internal static void Walk<TCell>(in Window window, int firstRow, int rows, ref TCell cell) where TCell : ICell, allows ref struct
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int channels = window.Channels;
        var at = new Position(window, firstRow);
        for (int row = firstRow; row < firstRow + rows; row++, at.Advance(window))
        {
            int image = at.Sample * inputSize, oy = at.Y, ox = at.X;
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

    /// <summary>im2col: copy the pixel into the patch, zeros for the padding; <c>patches</c> holds the batch's patch floats from <c>heldFrom</c> on.</summary>
    private ref struct Gather(ReadOnlySpan<float> input, Span<float> patches, int heldFrom) : ICell
    {
        private readonly ReadOnlySpan<float> input = input;
        private readonly Span<float> patches = patches;

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public readonly void Visit(int patchOffset, int imageOffset, int length)
        {
            var target = patches.Slice(patchOffset - heldFrom, length);
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
