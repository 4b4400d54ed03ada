using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

// A convolution's gradients where a max pooling reads its output. The pooling sends each pooled gradient to one pixel, its
// window's winner, and leaves every other pixel's gradient zero, so of the positions' patches only the winners' add anything:
// kernelGradient(p, c) = sum over pooled pixels o of patch(winner(o, c))[p] * pooledGradient(o, c). A 2x2 pooling leaves a
// quarter of the dense product's multiply-adds (patchesᵀ · the scattered gradient), a global one a single position's, and a
// first layer, which passes no gradient on, needs no scattered gradient at all. The winners' taps are read from the
// convolution's input, so its forward pass keeps no patches. Where the pooling keeps few pixels, the input gradient is taken
// the same way: each pooled gradient times its filter's kernel, onto the pixels under its winner's window.
public static partial class Convolution
{
    /// <summary>
    /// The kernel gradient (PatchSize x <paramref name="filters"/>, Keras' layout) of a convolution (<paramref name="window"/>)
    /// from the gradient of the max pooling (<paramref name="pool"/>) that reads its output, and the pooling's winners, the
    /// winners' taps read from the convolution's <paramref name="input"/>: its forward pass keeps no patches. The batch is
    /// summed in two halves fixed by the batch alone, added in order, so the bits are the same on one core or two; each half
    /// by <see cref="SumAtWinners"/>, or by <see cref="SumNarrowAtWinners"/> for narrow patches under whole 2x2 windows
    /// (<see cref="TakesNarrowRoute"/>).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void KernelGradientAtWinners(ReadOnlySpan<float> pooledGradient, ReadOnlySpan<int> winners, ReadOnlySpan<float> input,
        Span<float> kernelGradient, in Window window, in Window pool, int filters, int batch, bool accumulate = false)
    {
        const string name = "Kernel gradient at the winners";
        RequireWinners(pooledGradient, winners, window, pool, filters, batch, name);
        int size = window.PatchSize;
        Require(kernelGradient.Length >= size * filters && input.Length >= (long)batch * window.Height * window.Width * window.Channels, name, window, batch);
        bool narrow = TakesNarrowRoute(window, pool);
        var runs = narrow ? TapRuns.Whole(size) : TapRuns.Of(window, Simd.Width);
        int parts = Math.Min(batch, 2), partFloats = filters * runs.Floats;
        var partials = AlignedBuffer.Ensure(ref winnerSums, parts * partFloats);
        fixed (float* dy = pooledGradient, x = input, sums = partials)
        fixed (int* w = winners)
        {
            var job = new WinnersJob(dy, w, x, sums, window, pool, runs, filters, batch, parts);
            Helper.For(parts, narrow ? &SumNarrowAtWinners : &SumAtWinners, in job);
        }
        // Transposed into the kernel's layout as the parts are added: partials are filter by filter, run by run.
        ref float target = ref MemoryMarshal.GetReference(kernelGradient);
        ref float sum = ref MemoryMarshal.GetReference(partials);
        for (int c = 0; c < filters; c++)
        {
            for (int i = 0; i < size; i++)
            {
                int run = i / runs.RunFloats, at = c * runs.Floats + run * runs.RunStride + (i - run * runs.RunFloats);
                float total = accumulate ? Unsafe.Add(ref target, i * filters + c) : 0f;
                for (int part = 0; part < parts; part++) total += Unsafe.Add(ref sum, part * partFloats + at);
                Unsafe.Add(ref target, i * filters + c) = total;
            }
        }
    }

    /// <summary>
    /// A patch as the wide route reads it from a zero-padded image: <see cref="Runs"/> runs of <see cref="RunFloats"/>
    /// contiguous taps (a kernel row's, or with dilation a tap's channels), each summed as <see cref="RunVectors"/> whole vectors
    /// into <see cref="RunStride"/> floats of a filter's partial (<see cref="Floats"/> in all). A run's last vector reads
    /// past the run, into lanes that are summed and never stored.
    /// </summary>
    private readonly record struct TapRuns(int Runs, int RunFloats, int RunStride, int RunVectors)
    {
        public int Floats => Runs * RunStride;

        /// <summary>The patch as one run, as the narrow route's partials hold it.</summary>
        public static TapRuns Whole(int size) => new(1, size, size, 1);

        /// <summary>The wide route's runs on vectors of <paramref name="width"/> floats.</summary>
        public static TapRuns Of(in Window window, int width)
        {
            bool rows = window.Dilation == 1;
            int runs = rows ? window.KernelHeight : window.KernelHeight * window.KernelWidth;
            int floats = rows ? window.KernelWidth * window.Channels : window.Channels, vectors = (floats + width - 1) / width;
            return new TapRuns(runs, floats, vectors * width, vectors);
        }

        /// <summary>Where run <paramref name="run"/> starts from its window's corner, in a plane of <paramref name="rowFloats"/>-float rows.</summary>
        public static nint Offset(in Window window, int run, int rowFloats) => window.Dilation == 1
            ? (nint)run * rowFloats
            : ((nint)(run / window.KernelWidth) * rowFloats + (nint)(run % window.KernelWidth) * window.Channels) * window.Dilation;
    }

    /// <summary>
    /// Whether the kernel gradient takes the narrow route (<see cref="SumNarrowAtWinners"/>): patches of at most
    /// <see cref="NarrowTaps"/> floats (a 3x3 kernel over one channel) under whole 2x2 windows.
    /// </summary>
    internal static bool TakesNarrowRoute(in Window window, in Window pool) => window.PatchSize <= NarrowTaps && PoolsWholeWindows(pool);

    /// <summary>Taps of a narrow patch, summed in registers: nine accumulators, a 3x3 kernel over one channel.</summary>
    private const int NarrowTaps = 9;

    /// <summary>
    /// Part <paramref name="index"/> of the kernel gradient at the winners for narrow patches under whole 2x2 windows:
    /// filters in the lanes of a vector; for each of a pooled pixel's four window pixels, the pooled gradient in the lanes
    /// whose winner it is, times each tap of that pixel's window, read from the input, nine sums in registers. Neither a
    /// scattered gradient nor patches are written (the small CNN's conv1 at 64 samples: 5.5 MB and 1.6 MB). Samples go a
    /// block at a time (<see cref="NarrowBlockBytes"/>, which the next vector of filters reads again from L2); the sums go to
    /// the part's partial, filter by filter, each a patch long. The vector is System.Numerics' on every SIMD path: each
    /// filter's sum is its lane's alone, so its width changes no bits. A 3x3 kernel over one channel at stride 1 picks its
    /// winners' taps instead on AVX2 and AVX-512 (<see cref="SumPickedAtWinners"/>).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void SumNarrowAtWinners(void* state, int index, int worker)
    {
        ref readonly var window = ref ((WinnersJob*)state)->Window;
        if (window is { KernelHeight: 3, KernelWidth: 3, Channels: 1, Dilation: 1 })
        {
            if (window is { StrideHeight: 1, StrideWidth: 1 } && Simd.Current != SimdPath.Portable) SumPickedAtWinners(state, index);
            else SumNarrowAtWinners<Yes>(state, index);
        }
        else SumNarrowAtWinners<No>(state, index);
    }

    /// <summary>
    /// Samples in a block of the narrow route: the bytes of their images, pooled gradients and winners about
    /// <see cref="NarrowBlockBytes"/>. Both narrow kernels block alike, so that their sums are the same bits.
    /// </summary>
    internal static int NarrowBlock(in Window window, int pooled, int filters, int samples) =>
        (int)Math.Clamp(NarrowBlockBytes / (((long)window.Height * window.Width * window.Channels + 2L * pooled * filters) * sizeof(float)), 1, Math.Max(samples, 1));

    /// <summary>
    /// Where a vector of <paramref name="lanes"/> filters reads the pooled gradients and winners from <paramref name="at"/> on:
    /// in place, or for the last filters (<paramref name="count"/> of them) from copies whose lanes past them hold a zero
    /// gradient and no winner (-1). Inlined: a call inside the narrow kernels' loops would keep their nine sums in memory.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void FilterLanes(in WinnersJob job, long at, int count, int lanes, float* gradientCopy, int* winnerCopy, out float* gradients, out int* winners)
    {
        if (count == lanes)
        {
            gradients = job.PooledGradient + at;
            winners = job.Winners + at;
            return;
        }
        for (int lane = 0; lane < lanes; lane++)
        {
            gradientCopy[lane] = lane < count ? job.PooledGradient[at + lane] : 0f;
            winnerCopy[lane] = lane < count ? job.Winners[at + lane] : -1;
        }
        gradients = gradientCopy;
        winners = winnerCopy;
    }

    /// <summary>
    /// Adds a vector of filters' tap sums (<paramref name="sums"/>: tap by tap, <paramref name="lanes"/> floats each) to what
    /// earlier blocks of samples left in the part's partial, filter by filter (<paramref name="size"/> taps each), the
    /// first <paramref name="count"/> lanes.
    /// </summary>
    private static unsafe void AddTapSums(float* partial, float* sums, int lanes, int c0, int count, int size)
    {
        for (int lane = 0; lane < count; lane++)
            for (int t = 0; t < size; t++)
                partial[(long)(c0 + lane) * size + t] += sums[t * lanes + lane];
    }

    /// <summary>
    /// The narrow route for a 3x3 kernel over one channel at stride 1, on AVX2 and AVX-512: a pooled pixel's four windows
    /// span a 4x4 region of the (zero-padded) image, and each lane, a filter, picks its winner's nine taps out of it with a
    /// permutation (<c>vpermps</c>): rows ky and ky + 1 of the region in one vector, the winner's window at 0, 1, 4 or 5
    /// in it, tap kx that plus kx. Nine multiply-adds a pooled pixel where <see cref="SumNarrowAtWinners{TThreeByThree}"/>
    /// takes 36 (each window's taps times the gradient masked to the lanes it won), and the region comes from a padded copy
    /// of the block's images instead of a copy per pooled pixel at the border. Only the winner's product is added where the
    /// masked route added it and three zeros, so the sums are the same bits for finite inputs.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumPickedAtWinners(void* state, int index)
    {
        ref readonly var job = ref *(WinnersJob*)state;
        ref readonly var window = ref job.Window;
        ref readonly var pool = ref job.Pool;
        var (first, samples) = Helper.PartOf(index, job.Parts, job.Batch);
        const int lanes = 8;
        int filters = job.Filters, pooled = pool.Positions, imageFloats = window.Height * window.Width;
        float* partial = job.Partials + (long)index * NarrowTaps * filters;
        new Span<float>(partial, NarrowTaps * filters).Clear();
        int block = NarrowBlock(window, pooled, filters, samples);
        // A 'valid' window's regions all lie in the image, read in place; padding is laid out once per block.
        bool inPlace = window.PadTop == 0 && window.PadLeft == 0;
        int stride = inPlace ? window.Width : window.PaddedWidth, planeFloats = inPlace ? imageFloats : window.PaddedHeight * stride;
        float* planes = inPlace ? null : (float*)Unsafe.AsPointer(ref AlignedBuffer.Ensure(ref paddedImage, block * planeFloats)[0]);
        // A winner's place from its pooled pixel's first window, in filters' steps: 0, 1 (right), the pooling's row (below), both.
        var below = Vector256.Create(pool.Width * filters);
        var right = Vector256.Create(filters);
        var one = Vector256<int>.One;
        var two = Vector256.Create(2);
        var four = Vector256.Create(4);
        float* gradientCopy = stackalloc float[lanes];
        int* winnerCopy = stackalloc int[lanes];
        float* sums = stackalloc float[NarrowTaps * lanes];
        for (int from = first; from < first + samples; from += block)
        {
            int to = Math.Min(from + block, first + samples);
            if (!inPlace)
                for (int sample = from; sample < to; sample++)
                    PadImage(job.Input + (long)sample * imageFloats, window, planes + (long)(sample - from) * planeFloats, 1, 0, window.PaddedHeight, Repeats.None);
            for (int c0 = 0; c0 < filters; c0 += lanes)
            {
                int count = Math.Min(lanes, filters - c0);
                var filterLanes = Vector256.Create(c0) + Vector256<int>.Indices;
                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default, s8 = default;
                for (int sample = from; sample < to; sample++)
                {
                    float* plane = inPlace ? job.Input + (long)sample * imageFloats : planes + (long)(sample - from) * planeFloats;
                    long at = (long)sample * pooled * filters + c0;
                    for (int oy = 0; oy < pool.OutputHeight; oy++)
                        for (int ox = 0; ox < pool.OutputWidth; ox++, at += filters)
                        {
                            FilterLanes(job, at, count, lanes, gradientCopy, winnerCopy, out float* gradients, out int* winners);
                            var g = Vector256.Load(gradients);
                            var won = Vector256.Load(winners);
                            // The winner's window in a pair of region rows: 0, 1, 4 or 5.
                            var place = won - (Vector256.Create((2 * oy * pool.Width + 2 * ox) * filters) + filterLanes);
                            var isBelow = Vector256.GreaterThanOrEqual(place, below);
                            var isRight = Vector256.Equals(place - (isBelow & below), right);
                            var pick0 = (isBelow & four) | (isRight & one);
                            var pick1 = pick0 + one;
                            var pick2 = pick0 + two;
                            float* region = plane + (long)2 * oy * stride + 2 * ox;
                            var row0 = Vector128.Load(region);
                            var row1 = Vector128.Load(region + stride);
                            var row2 = Vector128.Load(region + 2 * stride);
                            var row3 = Vector128.Load(region + 3 * stride);
                            var top = Vector256.Create(row0, row1);
                            var middle = Vector256.Create(row1, row2);
                            var bottom = Vector256.Create(row2, row3);
                            s0 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(top, pick0), g, s0);
                            s1 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(top, pick1), g, s1);
                            s2 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(top, pick2), g, s2);
                            s3 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(middle, pick0), g, s3);
                            s4 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(middle, pick1), g, s4);
                            s5 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(middle, pick2), g, s5);
                            s6 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(bottom, pick0), g, s6);
                            s7 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(bottom, pick1), g, s7);
                            s8 = Vector256.FusedMultiplyAdd(Vector256.ShuffleNative(bottom, pick2), g, s8);
                        }
                }
                s0.Store(sums); s1.Store(sums + lanes); s2.Store(sums + 2 * lanes); s3.Store(sums + 3 * lanes); s4.Store(sums + 4 * lanes);
                s5.Store(sums + 5 * lanes); s6.Store(sums + 6 * lanes); s7.Store(sums + 7 * lanes); s8.Store(sums + 8 * lanes);
                AddTapSums(partial, sums, lanes, c0, count, NarrowTaps);
            }
        }
    }

    /// <summary>
    /// <see cref="SumNarrowAtWinners(void*, int, int)"/>; <typeparamref name="TThreeByThree"/>: a 3x3 kernel over one channel,
    /// whose taps are three runs of three floats, read at constant offsets from three row pointers rather than through a
    /// table of nine offsets.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumNarrowAtWinners<TThreeByThree>(void* state, int index) where TThreeByThree : IFlag
    {
        ref readonly var job = ref *(WinnersJob*)state;
        ref readonly var window = ref job.Window;
        ref readonly var pool = ref job.Pool;
        var (first, samples) = Helper.PartOf(index, job.Parts, job.Batch);
        int filters = job.Filters, size = window.PatchSize, pooled = pool.Positions, lanes = Vector<float>.Count;
        int rowFloats = window.Width * window.Channels, imageFloats = window.Height * rowFloats;
        float* partial = job.Partials + (long)index * size * filters;
        new Span<float>(partial, size * filters).Clear();
        int block = NarrowBlock(window, pooled, filters, samples);
        // Where a pooled pixel's four windows hang over the padding, they are read from a copy of their rows, zeros outside
        // the image, laid out with the image's row stride so that the same offsets apply; an image narrower than the four
        // windows, whose windows all hang over, is copied with rows as wide as them.
        int regionRows = window.StrideHeight + window.SpanHeight, regionColumns = window.StrideWidth + window.SpanWidth;
        int stride = Math.Max(rowFloats, regionColumns * window.Channels);
        using var regionScratch = Scratch<float>.Rent((regionRows - 1) * stride + regionColumns * window.Channels);
        // Each tap's place from its window's corner; taps past the patch's last repeat it, into sums that are never stored.
        int* offsets = stackalloc int[NarrowTaps];
        for (int ky = 0, t = 0; ky < window.KernelHeight; ky++)
            for (int kx = 0; kx < window.KernelWidth; kx++)
                for (int c = 0; c < window.Channels; c++, t++)
                    offsets[t] = ky * window.Dilation * stride + kx * window.Dilation * window.Channels + c;
        for (int t = size; t < NarrowTaps; t++) offsets[t] = offsets[size - 1];
        int t0 = offsets[0], t1 = offsets[1], t2 = offsets[2], t3 = offsets[3], t4 = offsets[4], t5 = offsets[5], t6 = offsets[6], t7 = offsets[7], t8 = offsets[8];
        // A pooled pixel's four windows from the corner one: right, below, diagonal, in the image and in the convolution's output.
        nint right = window.StrideWidth * window.Channels, down = window.StrideHeight * stride;
        nint* corners = stackalloc nint[] { 0, right, down, down + right };
        int* step = stackalloc int[] { 0, 1, pool.Width, pool.Width + 1 };
        float* gradientCopy = stackalloc float[lanes];
        int* winnerCopy = stackalloc int[lanes];
        float* sums = stackalloc float[NarrowTaps * lanes];
        fixed (float* region = regionScratch.Span)
        for (int from = first; from < first + samples; from += block)
        {
            int to = Math.Min(from + block, first + samples);
            for (int c0 = 0; c0 < filters; c0 += lanes)
            {
                int count = Math.Min(lanes, filters - c0);
                var filterLanes = new Vector<int>(c0) + Vector<int>.Indices;
                Vector<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default, s8 = default;
                for (int sample = from; sample < to; sample++)
                {
                    float* image = job.Input + (long)sample * imageFloats;
                    for (int oy = 0, o = 0; oy < pool.OutputHeight; oy++)
                        for (int ox = 0; ox < pool.OutputWidth; ox++, o++)
                        {
                            long at = ((long)sample * pooled + o) * filters + c0;
                            FilterLanes(job, at, count, lanes, gradientCopy, winnerCopy, out float* gradients, out int* winners);
                            var g = Vector.Load(gradients);
                            var won = Vector.Load(winners);
                            int top = 2 * oy * window.StrideHeight - window.PadTop, left = 2 * ox * window.StrideWidth - window.PadLeft;
                            float* corner = image + (top * window.Width + left) * window.Channels;
                            if (top < 0 || top + regionRows > window.Height || left < 0 || left + regionColumns > window.Width)
                            {
                                CopyRegion(image, region, stride, window, top, left, regionRows, regionColumns);
                                corner = region;
                            }
                            int pixel0 = 2 * oy * pool.Width + 2 * ox;
                            for (int k = 0; k < 4; k++)
                            {
                                var mine = Vector.BitwiseAnd(g, Vector.Equals(won, filterLanes + new Vector<int>((pixel0 + step[k]) * filters)).As<int, float>());
                                float* taps = corner + corners[k];
                                if (TThreeByThree.IsSet)
                                {
                                    float* middle = taps + stride, bottom = middle + stride;
                                    s0 = Vector.FusedMultiplyAdd(new Vector<float>(taps[0]), mine, s0);
                                    s1 = Vector.FusedMultiplyAdd(new Vector<float>(taps[1]), mine, s1);
                                    s2 = Vector.FusedMultiplyAdd(new Vector<float>(taps[2]), mine, s2);
                                    s3 = Vector.FusedMultiplyAdd(new Vector<float>(middle[0]), mine, s3);
                                    s4 = Vector.FusedMultiplyAdd(new Vector<float>(middle[1]), mine, s4);
                                    s5 = Vector.FusedMultiplyAdd(new Vector<float>(middle[2]), mine, s5);
                                    s6 = Vector.FusedMultiplyAdd(new Vector<float>(bottom[0]), mine, s6);
                                    s7 = Vector.FusedMultiplyAdd(new Vector<float>(bottom[1]), mine, s7);
                                    s8 = Vector.FusedMultiplyAdd(new Vector<float>(bottom[2]), mine, s8);
                                }
                                else
                                {
                                    s0 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t0]), mine, s0);
                                    s1 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t1]), mine, s1);
                                    s2 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t2]), mine, s2);
                                    s3 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t3]), mine, s3);
                                    s4 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t4]), mine, s4);
                                    s5 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t5]), mine, s5);
                                    s6 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t6]), mine, s6);
                                    s7 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t7]), mine, s7);
                                    s8 = Vector.FusedMultiplyAdd(new Vector<float>(taps[t8]), mine, s8);
                                }
                            }
                        }
                }
                s0.Store(sums); s1.Store(sums + lanes); s2.Store(sums + 2 * lanes); s3.Store(sums + 3 * lanes); s4.Store(sums + 4 * lanes);
                s5.Store(sums + 5 * lanes); s6.Store(sums + 6 * lanes); s7.Store(sums + 7 * lanes); s8.Store(sums + 8 * lanes);
                AddTapSums(partial, sums, lanes, c0, count, size);
            }
        }
    }

    /// <summary>
    /// The bytes of a block of samples the narrow route reads once per vector of filters: images, pooled gradients and
    /// winners, which stay in L2 for the next vector (the small CNN's conv1, 64 samples, two cores: blocks of 41 samples'
    /// images alone, 1.8 MB with their gradients and winners, took 0.75 ms).
    /// </summary>
    private const long NarrowBlockBytes = 256 * 1024;

    /// <summary>
    /// Copies rows [<paramref name="top"/>, +<paramref name="rows"/>) and columns [<paramref name="left"/>, +<paramref name="columns"/>)
    /// of an image into <paramref name="region"/>, its rows <paramref name="stride"/> floats apart, zeros where they lie outside the image.
    /// Inlined: a call inside the narrow route's loop would make the JIT keep its nine sums in memory (every vector register
    /// is the caller's to save), 0.33 -> 0.71 ms for the small CNN's conv1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void CopyRegion(float* image, float* region, int stride, in Window window, int top, int left, int rows, int columns)
    {
        int channels = window.Channels;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
            {
                int y = top + r, x = left + c;
                bool inside = y >= 0 && y < window.Height && x >= 0 && x < window.Width;
                for (int channel = 0; channel < channels; channel++)
                    region[r * stride + c * channels + channel] = inside ? image[(y * window.Width + x) * channels + channel] : 0f;
            }
    }

    /// <summary>The pooling reads exactly the convolution's output, and its gradient and winners cover the batch.</summary>
    private static void RequireWinners(ReadOnlySpan<float> pooledGradient, ReadOnlySpan<int> winners, in Window window, in Window pool, int filters, int batch, string kernel)
    {
        if (pool.Height != window.OutputHeight || pool.Width != window.OutputWidth || pool.Channels != filters)
            throw new ArgumentException($"{kernel}: the pooling reads {pool.Height}x{pool.Width}x{pool.Channels} pixels, the convolution writes {window.OutputHeight}x{window.OutputWidth}x{filters}.");
        long pooledFloats = (long)batch * pool.Positions * filters;
        Require(pooledGradient.Length >= pooledFloats && winners.Length >= pooledFloats, kernel, window, batch);
    }

    /// <summary>The calling thread's partial sums, one per half of the batch.</summary>
    [ThreadStatic] private static AlignedBuffer? winnerSums;

    private readonly unsafe struct WinnersJob(float* pooledGradient, int* winners, float* input, float* partials, in Window window, in Window pool,
        TapRuns runs, int filters, int batch, int parts)
    {
        public readonly float* PooledGradient = pooledGradient, Input = input, Partials = partials;
        public readonly int* Winners = winners;
        public readonly Window Window = window, Pool = pool;
        public readonly TapRuns Runs = runs;
        public readonly int Filters = filters, Batch = batch, Parts = parts;
    }

    /// <summary>Part <paramref name="index"/>: its share of the samples, summed into its own partial, filter by filter.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void SumAtWinners(void* state, int index, int worker)
    {
        ref readonly var job = ref *(WinnersJob*)state;
        var (first, samples) = Helper.PartOf(index, job.Parts, job.Batch);
        float* partial = job.Partials + (long)index * job.Filters * job.Runs.Floats;
        new Span<float>(partial, job.Filters * job.Runs.Floats).Clear();
        switch (Simd.Current)
        {
            case SimdPath.Avx512: SumAtWinners<Lanes512, Vector512<float>>(job, partial, first, samples); break;
            case SimdPath.Avx2: SumAtWinners<Lanes256, Vector256<float>>(job, partial, first, samples); break;
            default: SumAtWinners<Lanes128, Vector128<float>>(job, partial, first, samples); break;
        }
    }

    /// <summary>
    /// Sample by sample: its image laid out with its zero padding (as the windows read it, a vector's slack past its end),
    /// its winners' window corners looked up once; then for every filter, stretch by stretch of the patch (a few of its runs,
    /// a few of each run's vectors: <see cref="StretchOf"/>), its winners' taps added up in registers, one chain of
    /// multiply-adds per vector. Each tap's chain runs over the samples and pooled pixels in order, as the product of the
    /// winners' patch rows did. The pooled pixels go a band at a time, so that the image rows their winners read (about
    /// <see cref="BandBytes"/>) stay in L1 while every filter reads them. Against the patch rows im2col kept (the small CNN's
    /// conv2 at 64 samples, the autoencoder's second layer at 128, two cores): the forward pass writes no patches, and the
    /// taps come from an image in L1 instead of rows scattered over megabytes.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumAtWinners<TLanes, TVector>(in WinnersJob job, float* partial, int first, int samples)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly var window = ref job.Window;
        var runs = job.Runs;
        int filters = job.Filters, pooled = job.Pool.Positions, positions = window.Positions, width = TLanes.Count, channels = window.Channels;
        int lookups = pooled * filters, perRun = runs.RunVectors, imageFloats = window.Height * window.Width * channels;
        int rowFloats = window.PaddedWidth * channels, paddedFloats = window.PaddedHeight * rowFloats;
        float* padded = (float*)Unsafe.AsPointer(ref AlignedBuffer.Ensure(ref paddedImage, paddedFloats + width)[0]);
        new Span<float>(padded + paddedFloats, width).Clear();
        int band = (int)Math.Clamp(BandBytes * pooled / ((long)paddedFloats * sizeof(float)), 1, pooled);
        var (runsAtOnce, vectorsAtOnce) = StretchOf(runs.Runs, perRun, width);
        using var rowScratch = Scratch<nint>.RentUncleared(lookups);
        using var offsetScratch = Scratch<nint>.Rent(runs.Runs + positions + 1);
        fixed (nint* rows = rowScratch.Span, offsets = offsetScratch.Span)
        {
            // Each run's place from its window's corner, then each output pixel's corner in the padded image (and a place
            // past the last, for a winner out of range).
            nint* corners = offsets + runs.Runs;
            for (int run = 0; run < runs.Runs; run++) offsets[run] = TapRuns.Offset(window, run, rowFloats);
            for (int y = 0, p = 0; y < window.OutputHeight; y++)
                for (int x = 0; x < window.OutputWidth; x++, p++)
                    corners[p] = (nint)padded + ((nint)y * window.StrideHeight * rowFloats + (nint)x * window.StrideWidth * channels) * sizeof(float);
            for (int sample = first; sample < first + samples; sample++)
            {
                PadImage(job.Input + (long)sample * imageFloats, window, padded, channels, 0, window.PaddedHeight, Repeats.None);
                int* winners = job.Winners + (long)sample * lookups;
                float* pooledGradient = job.PooledGradient + (long)sample * lookups;
                if (!WinnerPlaces(winners, rows, pooled, filters, corners, positions)) ThrowNotAWinner(winners, pooled, filters, positions);
                for (int b0 = 0; b0 < pooled; b0 += band)
                {
                    var chains = new WinnerChains(rows + (long)b0 * filters, pooledGradient + (long)b0 * filters, partial, offsets, runs, filters,
                        Math.Min(band, pooled - b0));
                    for (int run = 0; run < runs.Runs; run += runsAtOnce)
                        for (int vector = 0; vector < perRun; vector += vectorsAtOnce)
                            SumStretch<TLanes, TVector>(chains, run, Math.Min(runsAtOnce, runs.Runs - run), vector, Math.Min(vectorsAtOnce, perRun - vector));
                }
            }
        }
    }

    /// <summary>
    /// The runs and vectors of each run a stretch of the wide route sums in registers: the fewest stretches whose sums fit
    /// the path's vector registers (24 of AVX-512's 32, 12 of AVX2's 16, one more for the gradient), then the run's vectors
    /// evened out between its stretches. The small CNN's conv2 (three runs of six vectors) is one stretch, where stretches
    /// of eight vectors and a rest a vector at a time took its 18 in three passes.
    /// </summary>
    internal static (int Runs, int Vectors) StretchOf(int runs, int perRun, int width)
    {
        int most = width == 16 ? 24 : 12, bestRuns = 1, bestVectors = 1, fewest = int.MaxValue;
        for (int r = 1; r <= Math.Min(runs, MostStretchRuns); r++)
        {
            int v = Math.Min(perRun, Math.Min(MostStretchVectors, most / r));
            int stretches = (runs + r - 1) / r * ((perRun + v - 1) / v);
            if (stretches < fewest) (fewest, bestRuns, bestVectors) = (stretches, r, v);
        }
        int pieces = (perRun + bestVectors - 1) / bestVectors;
        return (bestRuns, (perRun + pieces - 1) / pieces);
    }

    private const int MostStretchRuns = 3, MostStretchVectors = 8;

    /// <summary>A band of a sample's winners as every stretch reads them: their corners, pooled gradients and runs' places, and the part's partial sums, laid out as <see cref="Runs"/> says.</summary>
    private readonly unsafe struct WinnerChains(nint* corners, float* gradients, float* partial, nint* runOffsets, TapRuns runs, int filters, int pooled)
    {
        public readonly nint* Corners = corners, RunOffsets = runOffsets;
        public readonly float* Gradients = gradients, Partial = partial;
        public readonly TapRuns Runs = runs;
        public readonly int Filters = filters, Pooled = pooled;
    }

    /// <summary>Runs [<paramref name="run"/>, + <paramref name="runs"/>) of the patch, vectors [<paramref name="vector"/>, + <paramref name="vectors"/>) of each, for every filter: a compiled copy per count.</summary>
    private static unsafe void SumStretch<TLanes, TVector>(in WinnerChains chains, int run, int runs, int vector, int vectors)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        switch (runs)
        {
            case 1: SumStretch<TLanes, TVector, One>(chains, run, vector, vectors); break;
            case 2: SumStretch<TLanes, TVector, Two>(chains, run, vector, vectors); break;
            default: SumStretch<TLanes, TVector, Three>(chains, run, vector, vectors); break;
        }
    }

    private static unsafe void SumStretch<TLanes, TVector, TRuns>(in WinnerChains chains, int run, int vector, int vectors)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRuns : struct, ICount
    {
        switch (vectors)
        {
            case 1: StretchChains<TLanes, TVector, TRuns, One>(chains, run, vector); break;
            case 2: StretchChains<TLanes, TVector, TRuns, Two>(chains, run, vector); break;
            case 3: StretchChains<TLanes, TVector, TRuns, Three>(chains, run, vector); break;
            case 4: StretchChains<TLanes, TVector, TRuns, Four>(chains, run, vector); break;
            case 5: StretchChains<TLanes, TVector, TRuns, Five>(chains, run, vector); break;
            case 6: StretchChains<TLanes, TVector, TRuns, Six>(chains, run, vector); break;
            case 7: StretchChains<TLanes, TVector, TRuns, Seven>(chains, run, vector); break;
            default: StretchChains<TLanes, TVector, TRuns, Eight>(chains, run, vector); break;
        }
    }

    /// <summary>
    /// A stretch's chains for every filter: its sums (up to three runs of eight vectors: s, t and u) loaded from the partial,
    /// each winner's taps times its pooled gradient added, one multiply-add per vector, and stored back.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void StretchChains<TLanes, TVector, TRuns, TVectors>(in WinnerChains chains, int run, int vector)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRuns : struct, ICount where TVectors : struct, ICount
    {
        int runs = TRuns.Value, vectors = TVectors.Value, width = TLanes.Count, filters = chains.Filters;
        nint stride = chains.Runs.RunStride, skip = (nint)vector * width * sizeof(float);
        // Each run's place from a window's corner, in bytes (the third's read only where there is one).
        nint at0 = chains.RunOffsets[run] * sizeof(float) + skip;
        nint at1 = runs > 1 ? chains.RunOffsets[run + 1] * sizeof(float) + skip : 0, at2 = runs > 2 ? chains.RunOffsets[run + 2] * sizeof(float) + skip : 0;
        for (int c = 0; c < filters; c++)
        {
            float* sums = chains.Partial + (long)c * chains.Runs.Floats + run * stride + vector * width;
            TVector s0, s1, s2, s3, s4, s5, s6, s7, t0, t1, t2, t3, t4, t5, t6, t7, u0, u1, u2, u3, u4, u5, u6, u7;
            LoadRuns<TLanes, TVector>(runs, vectors > 0, sums, stride, out s0, out t0, out u0);
            LoadRuns<TLanes, TVector>(runs, vectors > 1, sums + width, stride, out s1, out t1, out u1);
            LoadRuns<TLanes, TVector>(runs, vectors > 2, sums + 2 * width, stride, out s2, out t2, out u2);
            LoadRuns<TLanes, TVector>(runs, vectors > 3, sums + 3 * width, stride, out s3, out t3, out u3);
            LoadRuns<TLanes, TVector>(runs, vectors > 4, sums + 4 * width, stride, out s4, out t4, out u4);
            LoadRuns<TLanes, TVector>(runs, vectors > 5, sums + 5 * width, stride, out s5, out t5, out u5);
            LoadRuns<TLanes, TVector>(runs, vectors > 6, sums + 6 * width, stride, out s6, out t6, out u6);
            LoadRuns<TLanes, TVector>(runs, vectors > 7, sums + 7 * width, stride, out s7, out t7, out u7);
            nint* corner = chains.Corners + c;
            float* gradient = chains.Gradients + c;
            for (int o = 0; o < chains.Pooled; o++, corner += filters, gradient += filters)
            {
                TVector g = TLanes.Broadcast(*gradient);
                float* x0 = (float*)(*corner + at0), x1 = (float*)(*corner + at1), x2 = (float*)(*corner + at2);
                if (vectors > 0) MultiplyRuns<TLanes, TVector>(runs, g, x0, x1, x2, ref s0, ref t0, ref u0);
                if (vectors > 1) MultiplyRuns<TLanes, TVector>(runs, g, x0 + width, x1 + width, x2 + width, ref s1, ref t1, ref u1);
                if (vectors > 2) MultiplyRuns<TLanes, TVector>(runs, g, x0 + 2 * width, x1 + 2 * width, x2 + 2 * width, ref s2, ref t2, ref u2);
                if (vectors > 3) MultiplyRuns<TLanes, TVector>(runs, g, x0 + 3 * width, x1 + 3 * width, x2 + 3 * width, ref s3, ref t3, ref u3);
                if (vectors > 4) MultiplyRuns<TLanes, TVector>(runs, g, x0 + 4 * width, x1 + 4 * width, x2 + 4 * width, ref s4, ref t4, ref u4);
                if (vectors > 5) MultiplyRuns<TLanes, TVector>(runs, g, x0 + 5 * width, x1 + 5 * width, x2 + 5 * width, ref s5, ref t5, ref u5);
                if (vectors > 6) MultiplyRuns<TLanes, TVector>(runs, g, x0 + 6 * width, x1 + 6 * width, x2 + 6 * width, ref s6, ref t6, ref u6);
                if (vectors > 7) MultiplyRuns<TLanes, TVector>(runs, g, x0 + 7 * width, x1 + 7 * width, x2 + 7 * width, ref s7, ref t7, ref u7);
            }
            StoreRuns<TLanes, TVector>(runs, vectors > 0, sums, stride, s0, t0, u0);
            StoreRuns<TLanes, TVector>(runs, vectors > 1, sums + width, stride, s1, t1, u1);
            StoreRuns<TLanes, TVector>(runs, vectors > 2, sums + 2 * width, stride, s2, t2, u2);
            StoreRuns<TLanes, TVector>(runs, vectors > 3, sums + 3 * width, stride, s3, t3, u3);
            StoreRuns<TLanes, TVector>(runs, vectors > 4, sums + 4 * width, stride, s4, t4, u4);
            StoreRuns<TLanes, TVector>(runs, vectors > 5, sums + 5 * width, stride, s5, t5, u5);
            StoreRuns<TLanes, TVector>(runs, vectors > 6, sums + 6 * width, stride, s6, t6, u6);
            StoreRuns<TLanes, TVector>(runs, vectors > 7, sums + 7 * width, stride, s7, t7, u7);
        }
    }

    /// <summary>A vector of each of the stretch's runs from the partial (zero where the stretch has no such vector).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void LoadRuns<TLanes, TVector>(int runs, bool used, float* sums, nint stride, out TVector s, out TVector t, out TVector u)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        s = used ? TLanes.Load(ref *sums) : TLanes.Zero;
        t = used && runs > 1 ? TLanes.Load(ref sums[stride]) : TLanes.Zero;
        u = used && runs > 2 ? TLanes.Load(ref sums[2 * stride]) : TLanes.Zero;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreRuns<TLanes, TVector>(int runs, bool used, float* sums, nint stride, TVector s, TVector t, TVector u)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (!used) return;
        TLanes.Store(ref *sums, s);
        if (runs > 1) TLanes.Store(ref sums[stride], t);
        if (runs > 2) TLanes.Store(ref sums[2 * stride], u);
    }

    /// <summary>A winner's vector of each run times its pooled gradient, onto that vector's sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void MultiplyRuns<TLanes, TVector>(int runs, TVector g, float* x0, float* x1, float* x2, ref TVector s, ref TVector t, ref TVector u)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        s = TLanes.MultiplyAdd(g, TLanes.Load(ref *x0), s);
        if (runs > 1) t = TLanes.MultiplyAdd(g, TLanes.Load(ref *x1), t);
        if (runs > 2) u = TLanes.MultiplyAdd(g, TLanes.Load(ref *x2), u);
    }

    /// <summary>
    /// The bytes of image rows a band of pooled pixels reads, half of L1d. On a Zen 3 (64 samples, one core) 8 to 24 KB
    /// measured the same when the winners' rows were read from the patches; there, against no bands, 784-pixel images of
    /// 72-float patches went from 7.9 to 6.5 ms.
    /// </summary>
    private const long BandBytes = 16 * 1024;

    /// <summary>
    /// <paramref name="table"/>[pixel] for each of a sample's winners, in the winners' order (a window's corner, or a
    /// pixel's index); false if a winner is not a pixel of its filter. A winner is pixel * filters + filter, and the pixel
    /// a multiplication and a shift (Granlund and Montgomery's division by a constant; two integer divisions per winner took
    /// longer than the multiply-adds of a nine-float patch). The table holds a place past the last pixel, which a winner out
    /// of range reads before it fails the check. A kernel of its own, as it runs once a sample inside one: left to tiered
    /// compilation, the small CNN's conv2 kernel gradient (64 samples, two cores) took 1.32 ms instead of 1.06.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe bool WinnerPlaces(int* winners, nint* places, int pooled, int filters, nint* table, int positions)
    {
        ulong last = (ulong)positions, bad = 0;
        int* end = winners + (long)pooled * filters;
        if (BitOperations.IsPow2(filters))
        {
            // The filter is the winner's low bits, the pixel the rest: a shift (5 -> 3 cycles a winner on a Zen 4).
            int bits = BitOperations.Log2((uint)filters), mask = filters - 1;
            for (int at = 0; winners < end; at++, winners++, places++)
            {
                ulong pixel = (uint)*winners >> bits;
                bad |= (ulong)(uint)((*winners ^ at) & mask) | (*winners < 0 || pixel >= last ? 1UL : 0UL);
                *places = table[Math.Min(pixel, last)];
            }
            return bad == 0;
        }
        // floor(n / filters) = (n * magic) >> shift for every n < 2^31, with shift = 31 + ceil(log2 filters) and magic =
        // ceil(2^shift / filters), below 2^32 + 1, so the product fits 64 bits.
        int shift = 31 + BitOperations.Log2((uint)filters - 1) + 1;
        ulong magic = ((1UL << shift) + (ulong)filters - 1) / (ulong)filters;
        while (winners < end)
        {
            for (int c = 0; c < filters; c++, winners++, places++)
            {
                // A winner below its filter wraps to 2^31 or more: no pixel below positions passes the check.
                ulong n = (uint)(*winners - c), pixel = n * magic >> shift;
                bad |= (pixel * (ulong)filters ^ n) | (pixel >= last ? 1UL : 0UL);
                *places = table[Math.Min(pixel, last)];
            }
        }
        return bad == 0;
    }

    /// <summary>Names the first winner that is not a pixel of its filter (<see cref="WinnerPlaces"/> found one).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static unsafe void ThrowNotAWinner(int* winners, int pooled, int filters, int positions)
    {
        for (int o = 0, at = 0; o < pooled; o++)
            for (int c = 0; c < filters; c++, at++)
                if (winners[at] < 0 || winners[at] >= positions * filters || winners[at] % filters != c)
                    throw new ArgumentException($"Kernel gradient at the winners: winner {winners[at]} of pooled pixel {o}, filter {c} is not a pixel of that filter in its {positions * filters}-value image.");
        throw new InvalidOperationException("Kernel gradient at the winners: a winner failed its check and then passed it.");
    }

    /// <summary>
    /// The input gradient of a convolution (<paramref name="window"/>, <paramref name="kernel"/>: PatchSize x filters) from
    /// the gradient of the max pooling (<paramref name="pool"/>) that reads its output, and the pooling's winners: each
    /// pooled gradient times its filter's kernel column, added onto the pixels under its winner's window. For poolings that
    /// keep few pixels (a global one: one per filter), where the dense route (the gradient scattered to the winners, then
    /// the transposed convolution over every position) multiplies mostly zeros. Samples are independent: the cores take
    /// halves of the batch, and the bits are the same on one core or two.
    /// </summary>
    public static unsafe void InputGradientAtWinners(ReadOnlySpan<float> pooledGradient, ReadOnlySpan<int> winners, ReadOnlySpan<float> kernel,
        Span<float> inputGradient, in Window window, in Window pool, int filters, int batch, bool accumulate)
    {
        const string name = "Input gradient at the winners";
        RequireWinners(pooledGradient, winners, window, pool, filters, batch, name);
        int size = window.PatchSize;
        Require(kernel.Length >= size * filters && inputGradient.Length >= (long)batch * window.Height * window.Width * window.Channels, name, window, batch);
        // Each filter's kernel column as a row, so a winner adds contiguous runs of it.
        using var columns = Scratch<float>.Rent(filters * size);
        Gemm.Transpose(kernel, columns.Span, size, filters);
        fixed (float* dy = pooledGradient, k = columns.Span, dx = inputGradient)
        fixed (int* w = winners)
        {
            var job = new InputJob(dy, w, k, dx, window, pool, filters, batch, Math.Min(batch, 2), accumulate);
            Helper.For(job.Parts, &AddAtWinners, in job);
        }
    }

    private readonly unsafe struct InputJob(float* pooledGradient, int* winners, float* columns, float* inputGradient, in Window window, in Window pool,
        int filters, int batch, int parts, bool accumulate)
    {
        public readonly float* PooledGradient = pooledGradient, Columns = columns, InputGradient = inputGradient;
        public readonly int* Winners = winners;
        public readonly Window Window = window, Pool = pool;
        public readonly int Filters = filters, Batch = batch, Parts = parts;
        public readonly bool Accumulate = accumulate;
    }

    /// <summary>Part <paramref name="index"/>: its share of the samples, winner by winner.</summary>
    private static unsafe void AddAtWinners(void* state, int index, int worker)
    {
        ref readonly var job = ref *(InputJob*)state;
        ref readonly var window = ref job.Window;
        var (first, samples) = Helper.PartOf(index, job.Parts, job.Batch);
        int filters = job.Filters, pooled = job.Pool.Positions, lookups = pooled * filters, size = window.PatchSize;
        int imageFloats = window.Height * window.Width * window.Channels;
        if (!job.Accumulate) new Span<float>(job.InputGradient + (long)first * imageFloats, samples * imageFloats).Clear();
        using var rowScratch = Scratch<nint>.Rent(lookups);
        using var pixelScratch = Scratch<nint>.Rent(window.Positions + 1);
        fixed (nint* rows = rowScratch.Span, pixels = pixelScratch.Span)
        {
            for (int p = 0; p < window.Positions; p++) pixels[p] = p;
            for (int sample = first; sample < first + samples; sample++)
            {
                int* winners = job.Winners + (long)sample * lookups;
                float* pooledGradient = job.PooledGradient + (long)sample * lookups;
                if (!WinnerPlaces(winners, rows, pooled, filters, pixels, window.Positions)) ThrowNotAWinner(winners, pooled, filters, window.Positions);
                for (int at = 0, c = 0; at < lookups; at++)
                {
                    // Each winner's patch row over the batch, whose cells Walk maps onto the image.
                    int row = sample * window.Positions + (int)rows[at];
                    var cell = new AddColumn(job.InputGradient, job.Columns + (long)c * size, pooledGradient[at], row * size);
                    Walk(window, row, 1, ref cell);
                    if (++c == filters) c = 0;
                }
            }
        }
    }

    /// <summary>
    /// Adds a pooled gradient times its filter's kernel column onto the image pixels of one patch row's cells. A loop of its
    /// own: TensorPrimitives.FusedMultiplyAdd over these runs of a few to a few dozen floats took 1.3-1.6x as long (64 samples,
    /// global and 4x4 poolings, one core, builds in turns).
    /// </summary>
    private readonly unsafe struct AddColumn(float* image, float* column, float gradient, int rowStart) : ICell
    {
        public void Visit(int patchOffset, int imageOffset, int length)
        {
            if (imageOffset < 0) return;
            float* target = image + imageOffset, source = column + (patchOffset - rowStart);
            var g = new Vector<float>(gradient);
            int j = 0;
            for (; j <= length - Vector<float>.Count; j += Vector<float>.Count)
                Vector.Store(Vector.FusedMultiplyAdd(g, Vector.Load(source + j), Vector.Load(target + j)), target + j);
            for (; j < length; j++) target[j] = MathF.FusedMultiplyAdd(gradient, source[j], target[j]);
        }
    }
}
