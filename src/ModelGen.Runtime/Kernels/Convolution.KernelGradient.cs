using System;
using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

// The kernel gradient of a convolution against a few filters, from its input rather than its patches. Through patches, the
// training forward pass writes a patch row per output position (144 floats for a 3x3 window over 16 channels, 58 MB for
// the autoencoder's last layer at batch 128) only for the backward pass to read them once, in a product a column or four
// wide. Here each tap reads the image where the patch would have copied it from, channels in the lanes, and every output
// keeps the order Gemm.MultiplyTransposedA sums it in (Gemm.DepthOrderOfTransposedA): the same bits, no patches.
public static partial class Convolution
{
    /// <summary>
    /// Whether a convolution's kernel gradient is taken from its input (<see cref="KernelGradient"/>), so its training
    /// forward pass keeps no patches: <see cref="SharedRules.TakesKernelGradientFromInput"/>, by which the generator plans too.
    /// </summary>
    public static bool TakesKernelGradientFromInput(in Window window, int filters) =>
        SharedRules.TakesKernelGradientFromInput(filters, window.Channels, window.PatchSize, window.IsPointwise);

    /// <summary>Cells (a tap's vector of channels) summed at once: independent chains that keep the FMA units busy.</summary>
    private const int CellGroup = 12;

    /// <summary>
    /// This thread's zero-padded image (<see cref="KernelGradientSlice{TLanes, TVector}"/>, and the winners' taps in
    /// <see cref="SumAtWinners{TLanes, TVector}"/>; a block's images in <see cref="SumPickedAtWinners"/>) and its block sums.
    /// </summary>
    [ThreadStatic] private static AlignedBuffer? paddedImage, blockSums;

    /// <summary>The calling thread's slices of the kernel gradient, added in order after.</summary>
    [ThreadStatic] private static AlignedBuffer? kernelGradientSlices;

    /// <summary>
    /// The kernel gradient (PatchSize x <paramref name="filters"/>, Keras' layout) of a convolution from its
    /// <paramref name="input"/> and <paramref name="outputGradient"/>: patchesᵀ · gradient without the patches. For windows
    /// <see cref="TakesKernelGradientFromInput"/> admits: a few filters as <see cref="Gemm.MultiplyTransposedA"/> computes it
    /// from the patches, bit for bit, slices of the positions shared by the cores as the GEMM's are; more filters in their
    /// lanes (<see cref="KernelGradientByFilters"/>). Where the input is an UpSampling2D's (<paramref name="upsampledRows"/>,
    /// <paramref name="upsampledColumns"/>: the window is the upsampled image's, <paramref name="input"/> the image before),
    /// a few filters read it through their padded copy of each sample; more filters read it upsampled into a scratch.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void KernelGradient(ReadOnlySpan<float> input, ReadOnlySpan<float> outputGradient, Span<float> kernelGradient,
        in Window window, int filters, int batch, bool accumulate = false, int upsampledRows = 1, int upsampledColumns = 1)
    {
        const string name = "Kernel gradient from the input";
        if (!TakesKernelGradientFromInput(window, filters))
            throw new ArgumentException($"{name}: {window} against {filters} filters; it takes more than {SharedRules.FewFilters} filters (a kernel of at most {SharedRules.LaneFilterKernelFloats} floats), or at most that many over at least {SharedRules.MinimumLaneChannels} channels, and a window that is not pointwise.");
        var repeats = Repeats.Of(upsampledRows, upsampledColumns, window, name);
        int size = window.PatchSize, positions = batch * window.Positions, floats = size * filters;
        Require(input.Length >= batch * repeats.SampleFloats(window) && outputGradient.Length >= (long)positions * filters
            && kernelGradient.Length >= floats, name, window, batch);
        if (filters > SharedRules.FewFilters)
        {
            using var upsampled = repeats.Upsample(input, window, batch);
            KernelGradientByFilters(repeats.Any ? upsampled.Span : input, outputGradient, kernelGradient, window, filters, batch, accumulate);
            return;
        }
        var order = Gemm.DepthOrderOfTransposedA(size, positions, filters);
        bool sliced = order.Parts > 1;
        var partials = sliced ? AlignedBuffer.Ensure(ref kernelGradientSlices, order.Parts * floats) : default;
        fixed (float* x = input, dy = outputGradient, target = kernelGradient, sums = partials)
        {
            var work = new KernelGradientSlices(x, dy, sliced ? sums : target, window, repeats, filters, positions, order, addsToTarget: !sliced && accumulate);
            Helper.For(order.Parts, &RunKernelGradientSlice, in work);
        }
        if (sliced) Gemm.AddParts(kernelGradient.Slice(0, floats), partials, order.Parts, accumulate);
    }

    private static unsafe void RunKernelGradientSlice(void* state, int index, int worker) => ((KernelGradientSlices*)state)->Run(index, 1);

    /// <summary>Slices of the positions (counted over the batch), each into its own partial sum, or one straight into the kernel gradient.</summary>
    private readonly unsafe struct KernelGradientSlices(float* input, float* gradient, float* target, Window window, Repeats repeats, int filters, int positions,
        Gemm.DepthOrder order, bool addsToTarget) : IVectorRanges
    {
        public readonly float* Input = input, Gradient = gradient, Target = target;
        public readonly Window Window = window;
        public readonly Repeats Repeats = repeats;
        public readonly int Filters = filters, Positions = positions;
        public readonly Gemm.DepthOrder Order = order;
        /// <summary>Whether the first block adds to what the target holds (one slice, accumulating) rather than storing.</summary>
        public readonly bool AddsToTarget = addsToTarget;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            for (int index = first; index < first + count; index++) KernelGradientSlice<TLanes, TVector>(this, index);
        }
    }

    /// <summary>
    /// Slice <paramref name="index"/>: its positions a depth block at a time, each block's sums a chain of fused multiply-adds
    /// from zero per output, kept in a scratch between runs of positions (a run: one output row's positions in the block),
    /// then added to the slice's sums in order. Each sample a run reads is first laid out with its zero padding, every pixel's
    /// channels padded to whole vectors, so a tap's channels are whole vector loads wherever the window lies.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void KernelGradientSlice<TLanes, TVector>(in KernelGradientSlices work, int index) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var window = work.Window;
        var order = work.Order;
        int lanes = TLanes.Count, channels = window.Channels, filters = work.Filters, outputWidth = window.OutputWidth;
        int laneChannels = (channels + lanes - 1) / lanes * lanes, taps = window.KernelHeight * window.KernelWidth;
        int tapFloats = taps * laneChannels, cells = tapFloats / lanes;
        int paddedWidth = window.PaddedWidth, paddedFloats = window.PaddedHeight * paddedWidth * laneChannels;
        float* padded = (float*)Unsafe.AsPointer(ref AlignedBuffer.Ensure(ref paddedImage, paddedFloats)[0]);
        var sumsSpan = AlignedBuffer.Ensure(ref blockSums, filters * tapFloats).Slice(0, filters * tapFloats);
        float* sums = (float*)Unsafe.AsPointer(ref sumsSpan[0]);
        using var offsetScratch = Scratch<int>.RentUncleared(cells);
        int groups = (cells + CellGroup - 1) / CellGroup, perGroup = (cells + groups - 1) / groups;
        fixed (int* offsets = offsetScratch.Span)
        {
            for (int ky = 0, cell = 0; ky < window.KernelHeight; ky++)
                for (int kx = 0; kx < window.KernelWidth; kx++)
                    for (int v = 0; v < laneChannels; v += lanes, cell++)
                        offsets[cell] = (ky * window.Dilation * paddedWidth + kx * window.Dilation) * laneChannels + v;

            float* target = work.Target + (order.Parts > 1 ? (long)index * window.PatchSize * filters : 0);
            int first = index * order.PartDepth, end = Math.Min(work.Positions, first + order.PartDepth), laidOut = -1;
            for (int block = first; block < end; block += order.BlockDepth)
            {
                int blockEnd = Math.Min(end, block + order.BlockDepth);
                sumsSpan.Clear();
                for (int p = block, run; p < blockEnd; p += run)
                {
                    int sample = p / window.Positions, at = p - sample * window.Positions, oy = at / outputWidth, ox = at - oy * outputWidth;
                    run = Math.Min(blockEnd - p, outputWidth - ox);
                    if (sample != laidOut)
                    {
                        PadImage(work.Input + sample * work.Repeats.SampleFloats(window), window, padded, laneChannels, 0, window.PaddedHeight, work.Repeats);
                        laidOut = sample;
                    }
                    float* corner = padded + ((long)oy * window.StrideHeight * paddedWidth + (long)ox * window.StrideWidth) * laneChannels;
                    for (int f = 0; f < filters; f++)
                        for (int cell = 0; cell < cells; cell += perGroup)
                            SumCells<TLanes, TVector>(corner, window.StrideWidth * laneChannels, work.Gradient + (long)p * filters + f, filters, run,
                                offsets + cell, sums + f * tapFloats + cell * lanes, Math.Min(perGroup, cells - cell));
                }
                // The block's sums into the slice's, in the kernel's layout: stored by the slice's first block (unless it adds
                // to the kernel gradient), added after, as the GEMM's depth blocks finish.
                bool stores = block == first && !work.AddsToTarget;
                for (int f = 0; f < filters; f++)
                    for (int tap = 0; tap < taps; tap++)
                        for (int c = 0; c < channels; c++)
                        {
                            float sum = sums[f * tapFloats + tap * laneChannels + c];
                            float* to = target + (tap * channels + c) * filters + f;
                            *to = stores ? sum : sum + *to;
                        }
            }
        }
    }

    /// <summary>
    /// Continues the chains of up to <see cref="CellGroup"/> cells (a tap's vector of channels, at <paramref name="offsets"/>
    /// from a window's corner, their sums at <paramref name="sums"/>) over <paramref name="run"/> positions of a row: each
    /// position's tap times its gradient, one fused multiply-add, as the GEMM's kernel takes its patch entry times B's.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumCells<TLanes, TVector>(float* corner, int step, float* gradient, int gradientStep, int run, int* offsets, float* sums, int count)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int lanes = TLanes.Count;
        nint o0 = offsets[0], o1 = count > 1 ? offsets[1] : 0, o2 = count > 2 ? offsets[2] : 0, o3 = count > 3 ? offsets[3] : 0;
        nint o4 = count > 4 ? offsets[4] : 0, o5 = count > 5 ? offsets[5] : 0, o6 = count > 6 ? offsets[6] : 0, o7 = count > 7 ? offsets[7] : 0;
        nint o8 = count > 8 ? offsets[8] : 0, o9 = count > 9 ? offsets[9] : 0, oA = count > 10 ? offsets[10] : 0, oB = count > 11 ? offsets[11] : 0;
        TVector s0 = TLanes.Load(ref sums[0]), s1 = TLanes.Zero, s2 = TLanes.Zero, s3 = TLanes.Zero, s4 = TLanes.Zero, s5 = TLanes.Zero;
        TVector s6 = TLanes.Zero, s7 = TLanes.Zero, s8 = TLanes.Zero, s9 = TLanes.Zero, sA = TLanes.Zero, sB = TLanes.Zero;
        if (count > 1) s1 = TLanes.Load(ref sums[lanes]);
        if (count > 2) s2 = TLanes.Load(ref sums[2 * lanes]);
        if (count > 3) s3 = TLanes.Load(ref sums[3 * lanes]);
        if (count > 4) s4 = TLanes.Load(ref sums[4 * lanes]);
        if (count > 5) s5 = TLanes.Load(ref sums[5 * lanes]);
        if (count > 6) s6 = TLanes.Load(ref sums[6 * lanes]);
        if (count > 7) s7 = TLanes.Load(ref sums[7 * lanes]);
        if (count > 8) s8 = TLanes.Load(ref sums[8 * lanes]);
        if (count > 9) s9 = TLanes.Load(ref sums[9 * lanes]);
        if (count > 10) sA = TLanes.Load(ref sums[10 * lanes]);
        if (count > 11) sB = TLanes.Load(ref sums[11 * lanes]);
        for (int i = 0; i < run; i++, corner += step, gradient += gradientStep)
        {
            TVector g = TLanes.Broadcast(*gradient);
            s0 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o0]), g, s0);
            if (count > 1) s1 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o1]), g, s1);
            if (count > 2) s2 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o2]), g, s2);
            if (count > 3) s3 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o3]), g, s3);
            if (count > 4) s4 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o4]), g, s4);
            if (count > 5) s5 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o5]), g, s5);
            if (count > 6) s6 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o6]), g, s6);
            if (count > 7) s7 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o7]), g, s7);
            if (count > 8) s8 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o8]), g, s8);
            if (count > 9) s9 = TLanes.MultiplyAdd(TLanes.Load(ref corner[o9]), g, s9);
            if (count > 10) sA = TLanes.MultiplyAdd(TLanes.Load(ref corner[oA]), g, sA);
            if (count > 11) sB = TLanes.MultiplyAdd(TLanes.Load(ref corner[oB]), g, sB);
        }
        TLanes.Store(ref sums[0], s0);
        if (count > 1) TLanes.Store(ref sums[lanes], s1);
        if (count > 2) TLanes.Store(ref sums[2 * lanes], s2);
        if (count > 3) TLanes.Store(ref sums[3 * lanes], s3);
        if (count > 4) TLanes.Store(ref sums[4 * lanes], s4);
        if (count > 5) TLanes.Store(ref sums[5 * lanes], s5);
        if (count > 6) TLanes.Store(ref sums[6 * lanes], s6);
        if (count > 7) TLanes.Store(ref sums[7 * lanes], s7);
        if (count > 8) TLanes.Store(ref sums[8 * lanes], s8);
        if (count > 9) TLanes.Store(ref sums[9 * lanes], s9);
        if (count > 10) TLanes.Store(ref sums[10 * lanes], sA);
        if (count > 11) TLanes.Store(ref sums[11 * lanes], sB);
    }

    /// <summary>
    /// Patch entries whose sums one pass keeps against two vectors of filters on AVX2: 12 accumulators, 15 of its 16
    /// registers with the gradient's two and a broadcast. AVX-512's 32 keep twice as many (<see cref="KeepsTwelveEntries"/>).
    /// </summary>
    private const int EntriesAPass = 6;

    /// <summary>
    /// Whether a pass keeps twelve entries' sums, not <see cref="EntriesAPass"/>: on the AVX-512 path (32 registers, also for
    /// its 256-bit kernels), 24 accumulators, 27 registers in all. Each pass reads the band's gradient from L2 again, so
    /// twelve entries halve those reads per multiply-add. On the Intel Xeon, fresh processes in turns, three rounds, kernel
    /// gradient of a 3x3 'same' window at batch 32: the ResNet block's 32x32x32 to 32 on two cores 2.53-2.72 -> 1.83-2.01 ms,
    /// on one 3.69-4.41 -> 3.73-3.79; 16x16x64 to 64 on two 2.91-3.23 -> 2.12-2.21, on one 6.11-6.43 -> 4.20-4.49;
    /// 28x28x16 to 16 (one vector) 0.75-0.79 -> 0.63-0.66; in 256-bit vectors 16x16x40 to 40 1.61-1.87 -> 1.69-1.74 and
    /// 16x16x24 to 24 0.69-0.74 against 0.64-0.72, even. Every sum is the same chain either way: the same bits.
    /// </summary>
    private static bool KeepsTwelveEntries => Simd.Current == SimdPath.Avx512;

    /// <summary>Output rows (counted over the batch) from which the positions are cut into one more slice, up to <see cref="FilterSlices"/>.</summary>
    private const int RowsASlice = 64;

    /// <summary>The most slices: four, so that two cores share them evenly; fixed by the shape, so the sums are the same on any thread count.</summary>
    private const int FilterSlices = 4;

    /// <summary>
    /// The kernel gradient of more than <see cref="SharedRules.FewFilters"/> filters from the input, filters in the lanes:
    /// each pass keeps <see cref="EntriesAPass"/> patch entries' sums (twelve on AVX-512, <see cref="KeepsTwelveEntries"/>)
    /// against two vectors of filters in registers over a sample's positions in a slice, each position one broadcast of an
    /// input float per entry (read where the patch would have copied it from: the image, or a zero-padded copy of its rows)
    /// times the position's gradient. Through patches, the training forward pass wrote them out (the ResNet block's 3x3 over
    /// 32 channels at batch 32: 38 MB a layer) for a product that read them once and transposed them. Each output is one
    /// chain of fused multiply-adds over its slice's positions in order; the slices' sums (fixed by the shape) are then added
    /// in order, so any thread count gives the same bits (not the patches' product's: another order).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void KernelGradientByFilters(ReadOnlySpan<float> input, ReadOnlySpan<float> outputGradient, Span<float> kernelGradient,
        in Window window, int filters, int batch, bool accumulate)
    {
        int floats = window.PatchSize * filters, rows = batch * window.OutputHeight, slices = FilterSlicesOf(rows);
        var partials = AlignedBuffer.Ensure(ref kernelGradientSlices, slices * floats);
        fixed (float* x = input, dy = outputGradient, sums = partials)
        {
            var work = new FilterSlicesWork(x, dy, sums, window, filters, rows, slices);
            Helper.For(slices, &RunFilterSlice, in work);
        }
        Gemm.AddParts(kernelGradient.Slice(0, floats), partials, slices, accumulate);
    }

    /// <summary>Slices of <paramref name="rows"/> output rows (counted over the batch) for <see cref="KernelGradientByFilters"/>: slice i holds rows [rows·i / slices, rows·(i + 1) / slices).</summary>
    internal static int FilterSlicesOf(int rows) => Math.Clamp(rows / RowsASlice, 1, FilterSlices);

    private static unsafe void RunFilterSlice(void* state, int index, int worker) => ((FilterSlicesWork*)state)->Run(index, 1);

    /// <summary>Slices of the output rows (counted over the batch), each into its own partial sum.</summary>
    private readonly unsafe struct FilterSlicesWork(float* input, float* gradient, float* sums, Window window, int filters, int rows, int slices) : IVectorRanges
    {
        public readonly float* Input = input, Gradient = gradient, Sums = sums;
        public readonly Window Window = window;
        public readonly int Filters = filters, Rows = rows, Slices = slices;

        // 256-bit vectors on AVX-512 for 8, 24, 40... filters (Zen 4, alone, medians in turns: 8 filters 0.15-0.18 -> 0.10-0.14
        // ms, one vector where a 512-bit one was half masked; 40 0.423 -> 0.377; 24 0.222 against 0.227, no gain).
        public void Run(int first, int count) => Simd.RunRanges(this, first, count, wholeVectorsOf: Filters);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            for (int index = first; index < first + count; index++) FilterSlice<TLanes, TVector>(this, index);
        }
    }

    /// <summary>
    /// Gradient floats a band of output rows holds at most (512 KB, beside its rows of the input), so that every pass over
    /// the band reads both from L2: a pass over a whole large image would stream them from memory once per six entries, and
    /// short bands sweep the kernel's sums once a band (1152 x 256 at 14x14: bands of 64 KB 26.8 ms, 512 KB 25.2).
    /// </summary>
    private const int BandGradientFloats = 128 * 1024;

    /// <summary>Slice <paramref name="index"/>: its rows a band of a sample at a time (<see cref="BandGradientFloats"/>), every pass of entries and filters over the band's positions.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void FilterSlice<TLanes, TVector>(in FilterSlicesWork work, int index) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var window = work.Window;
        int filters = work.Filters, patch = window.PatchSize, width = window.OutputWidth;
        float* sums = work.Sums + (long)index * patch * filters;
        new Span<float>(sums, patch * filters).Clear();
        int first = (int)((long)work.Rows * index / work.Slices), end = (int)((long)work.Rows * (index + 1) / work.Slices);
        int* inPlace = stackalloc int[patch];
        int bandRows = Math.Max(1, BandGradientFloats / (width * filters));
        bool twelve = KeepsTwelveEntries;
        for (int row = first; row < end;)
        {
            int sample = row / window.OutputHeight, top = row - sample * window.OutputHeight;
            int bottom = Math.Min(window.OutputHeight, top + Math.Min(end - row, bandRows));
            var plane = Plane.Padded(work.Input + (long)sample * window.Height * window.Width * window.Channels, window, top, bottom, slack: 0);
            PatchOffsets(window, plane.RowFloats, inPlace);
            float* gradient = work.Gradient + (long)row * width * filters;
            if (twelve) SumBand<TLanes, TVector, Yes>(plane, window, top, bottom, inPlace, gradient, filters, sums);
            else SumBand<TLanes, TVector, No>(plane, window, top, bottom, inPlace, gradient, filters, sums);
            row += bottom - top;
        }
    }

    /// <summary>
    /// Every pass of entries (twelve where <typeparamref name="TTwelve"/>, else <see cref="EntriesAPass"/>) and blocks of
    /// filters over a band's positions.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void SumBand<TLanes, TVector, TTwelve>(in Plane plane, in Window window, int top, int bottom, int* offsets, float* gradient,
        int filters, float* sums) where TLanes : struct, ILanes<TVector> where TVector : struct where TTwelve : IFlag
    {
        int lanes = TLanes.Count, patch = window.PatchSize, entriesAPass = TTwelve.IsSet ? 2 * EntriesAPass : EntriesAPass;
        for (int j = 0; j < filters; j += 2 * lanes)
            for (int p = 0; p < patch; p += entriesAPass)
            {
                int entries = Math.Min(entriesAPass, patch - p), columns = Math.Min(2 * lanes, filters - j);
                float* from = gradient + j, to = sums + (long)p * filters + j;
                // Two whole vectors of filters, two with the second masked, or one: a one-vector block does no second vector's work.
                if (columns == 2 * lanes) SumEntries<TLanes, TVector, Yes, Yes, TTwelve>(plane, window, top, bottom, offsets + p, entries, from, filters, to, columns);
                else if (columns > lanes) SumEntries<TLanes, TVector, No, Yes, TTwelve>(plane, window, top, bottom, offsets + p, entries, from, filters, to, columns);
                else SumEntries<TLanes, TVector, No, No, TTwelve>(plane, window, top, bottom, offsets + p, entries, from, filters, to, columns);
            }
    }

    /// <summary>
    /// Continues the sums of up to <see cref="EntriesAPass"/> patch entries, twice as many where <typeparamref name="TTwelve"/>
    /// (at <paramref name="offsets"/> from a window's corner; their sums <paramref name="filters"/> apart) against
    /// <paramref name="columns"/> filters (two whole vectors where <typeparamref name="TWhole"/>; a second vector at all only
    /// where <typeparamref name="TTwo"/>) over output rows [<paramref name="top"/>, <paramref name="bottom"/>) of a sample,
    /// whose gradient starts at <paramref name="gradient"/>. A pass of fewer entries reads the first entry's float again for
    /// the rest, into sums it never stores, so the loop tests nothing per entry; a partial vector of filters is read through
    /// a mask made once.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumEntries<TLanes, TVector, TWhole, TTwo, TTwelve>(in Plane plane, in Window window, int top, int bottom, int* offsets, int count,
        float* gradient, int filters, float* sums, int columns)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TWhole : IFlag where TTwo : IFlag where TTwelve : IFlag
    {
        int lanes = TLanes.Count, low = Math.Min(lanes, columns), high = Math.Clamp(columns - lanes, 0, lanes);
        bool whole = TWhole.IsSet, two = TTwo.IsSet, twelve = TTwelve.IsSet;
        TVector lowMask = TLanes.FirstLanes(low), highMask = TLanes.FirstLanes(high);
        nint o0 = offsets[0], o1 = count > 1 ? offsets[1] : o0, o2 = count > 2 ? offsets[2] : o0, o3 = count > 3 ? offsets[3] : o0;
        nint o4 = count > 4 ? offsets[4] : o0, o5 = count > 5 ? offsets[5] : o0;
        nint o6 = twelve && count > 6 ? offsets[6] : o0, o7 = twelve && count > 7 ? offsets[7] : o0, o8 = twelve && count > 8 ? offsets[8] : o0;
        nint o9 = twelve && count > 9 ? offsets[9] : o0, o10 = twelve && count > 10 ? offsets[10] : o0, o11 = twelve && count > 11 ? offsets[11] : o0;
        TVector a0 = Load(sums), b0 = LoadHigh(sums), a1 = TLanes.Zero, b1 = TLanes.Zero, a2 = TLanes.Zero, b2 = TLanes.Zero;
        TVector a3 = TLanes.Zero, b3 = TLanes.Zero, a4 = TLanes.Zero, b4 = TLanes.Zero, a5 = TLanes.Zero, b5 = TLanes.Zero;
        TVector a6 = TLanes.Zero, b6 = TLanes.Zero, a7 = TLanes.Zero, b7 = TLanes.Zero, a8 = TLanes.Zero, b8 = TLanes.Zero;
        TVector a9 = TLanes.Zero, b9 = TLanes.Zero, a10 = TLanes.Zero, b10 = TLanes.Zero, a11 = TLanes.Zero, b11 = TLanes.Zero;
        if (count > 1) { a1 = Load(sums + filters); b1 = LoadHigh(sums + filters); }
        if (count > 2) { a2 = Load(sums + 2 * filters); b2 = LoadHigh(sums + 2 * filters); }
        if (count > 3) { a3 = Load(sums + 3 * filters); b3 = LoadHigh(sums + 3 * filters); }
        if (count > 4) { a4 = Load(sums + 4 * filters); b4 = LoadHigh(sums + 4 * filters); }
        if (count > 5) { a5 = Load(sums + 5 * filters); b5 = LoadHigh(sums + 5 * filters); }
        if (twelve && count > 6) { a6 = Load(sums + 6 * filters); b6 = LoadHigh(sums + 6 * filters); }
        if (twelve && count > 7) { a7 = Load(sums + 7 * filters); b7 = LoadHigh(sums + 7 * filters); }
        if (twelve && count > 8) { a8 = Load(sums + 8 * filters); b8 = LoadHigh(sums + 8 * filters); }
        if (twelve && count > 9) { a9 = Load(sums + 9 * filters); b9 = LoadHigh(sums + 9 * filters); }
        if (twelve && count > 10) { a10 = Load(sums + 10 * filters); b10 = LoadHigh(sums + 10 * filters); }
        if (twelve && count > 11) { a11 = Load(sums + 11 * filters); b11 = LoadHigh(sums + 11 * filters); }
        nint step = window.StrideWidth * window.Channels;
        for (int oy = top; oy < bottom; oy++)
        {
            float* x = plane.At(oy * window.StrideHeight - window.PadTop, -window.PadLeft);
            for (int ox = 0; ox < window.OutputWidth; ox++, x += step, gradient += filters)
            {
                TVector g0 = Load(gradient), g1 = two ? LoadHigh(gradient) : TLanes.Zero;
                TVector e = TLanes.Broadcast(x[o0]);
                a0 = TLanes.MultiplyAdd(e, g0, a0); if (two) b0 = TLanes.MultiplyAdd(e, g1, b0);
                e = TLanes.Broadcast(x[o1]); a1 = TLanes.MultiplyAdd(e, g0, a1); if (two) b1 = TLanes.MultiplyAdd(e, g1, b1);
                e = TLanes.Broadcast(x[o2]); a2 = TLanes.MultiplyAdd(e, g0, a2); if (two) b2 = TLanes.MultiplyAdd(e, g1, b2);
                e = TLanes.Broadcast(x[o3]); a3 = TLanes.MultiplyAdd(e, g0, a3); if (two) b3 = TLanes.MultiplyAdd(e, g1, b3);
                e = TLanes.Broadcast(x[o4]); a4 = TLanes.MultiplyAdd(e, g0, a4); if (two) b4 = TLanes.MultiplyAdd(e, g1, b4);
                e = TLanes.Broadcast(x[o5]); a5 = TLanes.MultiplyAdd(e, g0, a5); if (two) b5 = TLanes.MultiplyAdd(e, g1, b5);
                if (twelve)
                {
                    e = TLanes.Broadcast(x[o6]); a6 = TLanes.MultiplyAdd(e, g0, a6); if (two) b6 = TLanes.MultiplyAdd(e, g1, b6);
                    e = TLanes.Broadcast(x[o7]); a7 = TLanes.MultiplyAdd(e, g0, a7); if (two) b7 = TLanes.MultiplyAdd(e, g1, b7);
                    e = TLanes.Broadcast(x[o8]); a8 = TLanes.MultiplyAdd(e, g0, a8); if (two) b8 = TLanes.MultiplyAdd(e, g1, b8);
                    e = TLanes.Broadcast(x[o9]); a9 = TLanes.MultiplyAdd(e, g0, a9); if (two) b9 = TLanes.MultiplyAdd(e, g1, b9);
                    e = TLanes.Broadcast(x[o10]); a10 = TLanes.MultiplyAdd(e, g0, a10); if (two) b10 = TLanes.MultiplyAdd(e, g1, b10);
                    e = TLanes.Broadcast(x[o11]); a11 = TLanes.MultiplyAdd(e, g0, a11); if (two) b11 = TLanes.MultiplyAdd(e, g1, b11);
                }
            }
        }
        Store(sums, a0, b0);
        if (count > 1) Store(sums + filters, a1, b1);
        if (count > 2) Store(sums + 2 * filters, a2, b2);
        if (count > 3) Store(sums + 3 * filters, a3, b3);
        if (count > 4) Store(sums + 4 * filters, a4, b4);
        if (count > 5) Store(sums + 5 * filters, a5, b5);
        if (twelve && count > 6) Store(sums + 6 * filters, a6, b6);
        if (twelve && count > 7) Store(sums + 7 * filters, a7, b7);
        if (twelve && count > 8) Store(sums + 8 * filters, a8, b8);
        if (twelve && count > 9) Store(sums + 9 * filters, a9, b9);
        if (twelve && count > 10) Store(sums + 10 * filters, a10, b10);
        if (twelve && count > 11) Store(sums + 11 * filters, a11, b11);

        TVector Load(float* from) => whole ? TLanes.Load(ref *from) : TLanes.LoadMasked(from, lowMask);
        TVector LoadHigh(float* from) => whole ? TLanes.Load(ref from[lanes]) : high > 0 ? TLanes.LoadMasked(from + lanes, highMask) : TLanes.Zero;
        void Store(float* to, TVector first, TVector second)
        {
            if (whole)
            {
                TLanes.Store(ref *to, first);
                TLanes.Store(ref to[lanes], second);
                return;
            }
            TLanes.StoreFirst(ref *to, first, low);
            if (high > 0) TLanes.StoreFirst(ref to[lanes], second, high);
        }
    }
}
