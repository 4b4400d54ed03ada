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
// first layer, which passes no gradient on, needs no scattered gradient at all. Where the pooling keeps few pixels, the input
// gradient is taken the same way: each pooled gradient times its filter's kernel, onto the pixels under its winner's window.
public static partial class Convolution
{
    /// <summary>
    /// The kernel gradient (PatchSize x <paramref name="filters"/>, Keras' layout) of a convolution (<paramref name="window"/>)
    /// from the gradient of the max pooling (<paramref name="pool"/>) that reads its output, and the pooling's winners: from the
    /// <paramref name="patches"/> the forward pass kept, or on the narrow route from the convolution's <paramref name="input"/>
    /// itself (which then needs no patches: <see cref="KernelGradientReadsPatches"/>). The batch is summed in two halves fixed
    /// by the batch alone, added in order, so the bits are the same on one core or two; each half by <see cref="SumAtWinners"/>,
    /// or by <see cref="SumNarrowAtWinners"/> for narrow patches under whole 2x2 windows (<see cref="TakesNarrowRoute"/>).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void KernelGradientAtWinners(ReadOnlySpan<float> pooledGradient, ReadOnlySpan<int> winners, ReadOnlySpan<float> input,
        ReadOnlySpan<float> patches, Span<float> kernelGradient, in Window window, in Window pool, int filters, int batch, bool accumulate = false)
    {
        const string name = "Kernel gradient at the winners";
        RequireWinners(pooledGradient, winners, window, pool, filters, batch, name);
        int size = window.PatchSize;
        bool narrow = TakesNarrowRoute(window, pool);
        Require(kernelGradient.Length >= size * filters && (narrow ? input.Length >= (long)batch * window.Height * window.Width * window.Channels
            : patches.Length >= (long)batch * window.Positions * size), name, window, batch);
        int parts = Math.Min(batch, 2), partFloats = filters * size;
        var partials = AlignedBuffer.Ensure(ref winnerSums, parts * partFloats);
        fixed (float* dy = pooledGradient, x = input, p = patches, sums = partials)
        fixed (int* w = winners)
        {
            var job = new WinnersJob(dy, w, x, p, sums, window, pool, filters, batch, parts);
            Helper.For(parts, narrow ? &SumNarrowAtWinners : &SumAtWinners, &job);
        }
        // Transposed into the kernel's layout as the parts are added: partials are filter by filter, each a patch long.
        ref float target = ref MemoryMarshal.GetReference(kernelGradient);
        ref float sum = ref MemoryMarshal.GetReference(partials);
        for (int c = 0; c < filters; c++)
        {
            for (int i = 0; i < size; i++)
            {
                float total = accumulate ? Unsafe.Add(ref target, i * filters + c) : 0f;
                for (int part = 0; part < parts; part++) total += Unsafe.Add(ref sum, part * partFloats + c * size + i);
                Unsafe.Add(ref target, i * filters + c) = total;
            }
        }
    }

    /// <summary>
    /// Whether the kernel gradient takes the narrow route (<see cref="SumNarrowAtWinners"/>): patches of at most
    /// <see cref="NarrowTaps"/> floats (a 3x3 kernel over one channel) under whole 2x2 windows.
    /// </summary>
    private static bool TakesNarrowRoute(in Window window, in Window pool) => window.PatchSize <= NarrowTaps && PoolsWholeWindows(pool);

    /// <summary>
    /// Whether <see cref="KernelGradientAtWinners"/> reads the patches the forward pass kept: all but the narrow route, which
    /// reads its taps from the input, so that its convolution's forward pass in training need not build any (the small CNN's
    /// conv1 at 64 samples: no im2col, 130 us, and 1.6 MB of patches less).
    /// </summary>
    public static bool KernelGradientReadsPatches(in Window window, in Window pool) => !TakesNarrowRoute(window, pool);

    /// <summary>Taps of a narrow patch, summed in registers: nine accumulators, a 3x3 kernel over one channel.</summary>
    private const int NarrowTaps = 9;

    /// <summary>
    /// Part <paramref name="index"/> of the kernel gradient at the winners for narrow patches under whole 2x2 windows:
    /// filters in the lanes of a vector; for each of a pooled pixel's four window pixels, the pooled gradient in the lanes
    /// whose winner it is, times each tap of that pixel's window, read from the input, nine sums in registers. Neither a
    /// scattered gradient nor patches are written (the small CNN's conv1 at 64 samples: 5.5 MB and 1.6 MB). Samples go a
    /// block at a time (<see cref="NarrowBlockBytes"/>, which the next vector of filters reads again from L2); the sums go to
    /// the part's partial in <see cref="SumAtWinners"/>'s layout. The vector is System.Numerics' on every SIMD path: each
    /// filter's sum is its lane's alone, so its width changes no bits.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void SumNarrowAtWinners(void* state, int index, int worker)
    {
        ref readonly var window = ref ((WinnersJob*)state)->Window;
        if (window is { KernelHeight: 3, KernelWidth: 3, Channels: 1, Dilation: 1 }) SumNarrowAtWinners<Yes>(state, index);
        else SumNarrowAtWinners<No>(state, index);
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
        int block = (int)Math.Clamp(NarrowBlockBytes / (((long)imageFloats + 2L * pooled * filters) * sizeof(float)), 1, Math.Max(samples, 1));
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
        // A vector of filters past the last filter reads its gradient and winners from these copies, zero-padded.
        float* gradientCopy = stackalloc float[lanes];
        int* winnerCopy = stackalloc int[lanes];
        Vector<float>* sums = stackalloc Vector<float>[NarrowTaps];
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
                            Vector<float> g;
                            Vector<int> won;
                            if (count == lanes)
                            {
                                g = Vector.Load(job.PooledGradient + at);
                                won = Vector.Load(job.Winners + at);
                            }
                            else
                            {
                                for (int lane = 0; lane < lanes; lane++)
                                {
                                    gradientCopy[lane] = lane < count ? job.PooledGradient[at + lane] : 0f;
                                    winnerCopy[lane] = lane < count ? job.Winners[at + lane] : -1;
                                }
                                g = Vector.Load(gradientCopy);
                                won = Vector.Load(winnerCopy);
                            }
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
                // Added to what earlier blocks of samples left, filter by filter (a patch long each), the first count lanes.
                sums[0] = s0; sums[1] = s1; sums[2] = s2; sums[3] = s3; sums[4] = s4; sums[5] = s5; sums[6] = s6; sums[7] = s7; sums[8] = s8;
                for (int lane = 0; lane < count; lane++)
                    for (int t = 0; t < size; t++)
                        partial[(long)(c0 + lane) * size + t] += sums[t][lane];
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

    private readonly unsafe struct WinnersJob(float* pooledGradient, int* winners, float* input, float* patches, float* partials, in Window window, in Window pool,
        int filters, int batch, int parts)
    {
        public readonly float* PooledGradient = pooledGradient, Input = input, Patches = patches, Partials = partials;
        public readonly int* Winners = winners;
        public readonly Window Window = window, Pool = pool;
        public readonly int Filters = filters, Batch = batch, Parts = parts;
    }

    /// <summary>Part <paramref name="index"/>: its share of the samples, summed into its own partial, filter by filter.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void SumAtWinners(void* state, int index, int worker)
    {
        ref readonly var job = ref *(WinnersJob*)state;
        var (first, samples) = Helper.PartOf(index, job.Parts, job.Batch);
        float* partial = job.Partials + (long)index * job.Filters * job.Window.PatchSize;
        new Span<float>(partial, job.Filters * job.Window.PatchSize).Clear();
        switch (Simd.Current)
        {
            case SimdPath.Avx512: SumAtWinners<Lanes512, Vector512<float>>(job, partial, first, samples); break;
            case SimdPath.Avx2: SumAtWinners<Lanes256, Vector256<float>>(job, partial, first, samples); break;
            default: SumAtWinners<Lanes128, Vector128<float>>(job, partial, first, samples); break;
        }
    }

    /// <summary>
    /// Sample by sample, its winners' patch rows looked up once; then a stretch of eight vectors of the patch at a time, for
    /// every filter, each adding up its winners' rows in registers: eight chains of multiply-adds per row looked up. The pooled
    /// pixels go a band at a time, so that the stretch of the rows their winners read (about <see cref="BandBytes"/>) stays in
    /// L1 while every filter reads it. Alternatives that measured slower (the small CNN's conv2, 64 samples, one core, builds
    /// in turns): stretches of four vectors with even and odd winners in chains of their own, 6.1-6.3 ms against 4.7-5.5;
    /// winners sorted by row, each row's stretch loaded once and added into every winning filter's sums, 11-13.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumAtWinners<TLanes, TVector>(in WinnersJob job, float* partial, int first, int samples)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int filters = job.Filters, size = job.Window.PatchSize, pooled = job.Pool.Positions, positions = job.Window.Positions, width = TLanes.Count;
        int lookups = pooled * filters, stretch = 8 * width, stretched = size / stretch * stretch;
        long sampleBytes = (long)positions * size * sizeof(float);
        int band = (int)Math.Clamp(BandBytes * pooled / ((long)positions * stretch * sizeof(float)), 1, pooled), bands = (pooled + band - 1) / band;
        // The next sample's patches are read at its winners' rows, an order no hardware prefetcher follows: all of them are
        // asked for, spread over this sample's steps (a filter's stretch of a band, or four filters' tail vector).
        long steps = (long)filters * bands * (stretched / stretch) + filters / 4 * ((size - stretched + width - 1) / width);
        int linesPerStep = (int)((sampleBytes / 64 + steps - 1) / Math.Max(steps, 1));
        using var rowScratch = Scratch<nint>.Rent(lookups);
        fixed (nint* rows = rowScratch.Span)
        {
            for (int sample = first; sample < first + samples; sample++)
            {
                float* patches = job.Patches + (long)sample * positions * size;
                int* winners = job.Winners + (long)sample * lookups;
                float* pooledGradient = job.PooledGradient + (long)sample * lookups;
                if (!WinnerOffsets(winners, rows, lookups, filters, positions, (nint)patches, size * sizeof(float))) ThrowNotAWinner(winners, pooled, filters, positions);
                byte* nextPatches = (byte*)(patches + (long)positions * size);
                long nextBytes = sample + 1 < first + samples ? sampleBytes : 0, prefetched = 0;
                int i = 0;
                for (; i < stretched; i += stretch)
                for (int o0 = 0; o0 < pooled; o0 += band)
                {
                    int o1 = Math.Min(pooled, o0 + band);
                    for (int c = 0; c < filters; c++)
                    {
                        ref float sums = ref Unsafe.AsRef<float>(partial + (long)c * size + i);
                        TVector s0 = TLanes.Load(ref sums), s1 = TLanes.Load(ref Unsafe.Add(ref sums, width));
                        TVector s2 = TLanes.Load(ref Unsafe.Add(ref sums, 2 * width)), s3 = TLanes.Load(ref Unsafe.Add(ref sums, 3 * width));
                        TVector s4 = TLanes.Load(ref Unsafe.Add(ref sums, 4 * width)), s5 = TLanes.Load(ref Unsafe.Add(ref sums, 5 * width));
                        TVector s6 = TLanes.Load(ref Unsafe.Add(ref sums, 6 * width)), s7 = TLanes.Load(ref Unsafe.Add(ref sums, 7 * width));
                        nint* row = rows + (long)o0 * filters + c;
                        float* gradient = pooledGradient + (long)o0 * filters + c;
                        for (int o = o0; o < o1; o++, row += filters, gradient += filters)
                        {
                            TVector g = TLanes.Broadcast(*gradient);
                            ref float from = ref Unsafe.AsRef<float>((float*)*row + i);
                            s0 = TLanes.MultiplyAdd(g, TLanes.Load(ref from), s0);
                            s1 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref from, width)), s1);
                            s2 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref from, 2 * width)), s2);
                            s3 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref from, 3 * width)), s3);
                            s4 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref from, 4 * width)), s4);
                            s5 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref from, 5 * width)), s5);
                            s6 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref from, 6 * width)), s6);
                            s7 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref from, 7 * width)), s7);
                        }
                        TLanes.Store(ref sums, s0);
                        TLanes.Store(ref Unsafe.Add(ref sums, width), s1);
                        TLanes.Store(ref Unsafe.Add(ref sums, 2 * width), s2);
                        TLanes.Store(ref Unsafe.Add(ref sums, 3 * width), s3);
                        TLanes.Store(ref Unsafe.Add(ref sums, 4 * width), s4);
                        TLanes.Store(ref Unsafe.Add(ref sums, 5 * width), s5);
                        TLanes.Store(ref Unsafe.Add(ref sums, 6 * width), s6);
                        TLanes.Store(ref Unsafe.Add(ref sums, 7 * width), s7);
                        Prefetch(ref prefetched, nextPatches, nextBytes, linesPerStep);
                    }
                }
                // The rest of the patch a vector at a time, the last few floats masked (a 3x3 kernel over one channel: nine),
                // four filters at once: one chain each, where a filter alone waited on every multiply-add's latency.
                for (; i < size; i += width)
                {
                    int count = Math.Min(width, size - i);
                    TVector mask = TLanes.FirstLanes(count);
                    int c = 0;
                    for (; filters - c >= 4; c += 4)
                    {
                        float* sums = partial + (long)c * size + i;
                        TVector s0 = TLanes.LoadMasked(sums, mask), s1 = TLanes.LoadMasked(sums + size, mask);
                        TVector s2 = TLanes.LoadMasked(sums + 2 * size, mask), s3 = TLanes.LoadMasked(sums + 3 * size, mask);
                        nint* row = rows + c;
                        float* gradient = pooledGradient + c;
                        for (int o = 0; o < pooled; o++, row += filters, gradient += filters)
                        {
                            s0 = TLanes.MultiplyAdd(TLanes.Broadcast(gradient[0]), TLanes.LoadMasked((float*)row[0] + i, mask), s0);
                            s1 = TLanes.MultiplyAdd(TLanes.Broadcast(gradient[1]), TLanes.LoadMasked((float*)row[1] + i, mask), s1);
                            s2 = TLanes.MultiplyAdd(TLanes.Broadcast(gradient[2]), TLanes.LoadMasked((float*)row[2] + i, mask), s2);
                            s3 = TLanes.MultiplyAdd(TLanes.Broadcast(gradient[3]), TLanes.LoadMasked((float*)row[3] + i, mask), s3);
                        }
                        TLanes.StoreFirst(ref Unsafe.AsRef<float>(sums), s0, count);
                        TLanes.StoreFirst(ref Unsafe.AsRef<float>(sums + size), s1, count);
                        TLanes.StoreFirst(ref Unsafe.AsRef<float>(sums + 2 * size), s2, count);
                        TLanes.StoreFirst(ref Unsafe.AsRef<float>(sums + 3 * size), s3, count);
                        Prefetch(ref prefetched, nextPatches, nextBytes, linesPerStep);
                    }
                    for (; c < filters; c++)
                    {
                        float* sums = partial + (long)c * size + i;
                        TVector sum = TLanes.LoadMasked(sums, mask);
                        nint* row = rows + c;
                        float* gradient = pooledGradient + c;
                        for (int o = 0; o < pooled; o++, row += filters, gradient += filters)
                            sum = TLanes.MultiplyAdd(TLanes.Broadcast(*gradient), TLanes.LoadMasked((float*)*row + i, mask), sum);
                        TLanes.StoreFirst(ref Unsafe.AsRef<float>(sums), sum, count);
                    }
                }
            }
        }
    }

    /// <summary>Asks for the next few cache lines of <paramref name="bytes"/> at <paramref name="block"/> to be brought into L2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Prefetch(ref long done, byte* block, long bytes, int lines)
    {
        for (int line = 0; line < lines && done < bytes; line++, done += 64)
            if (System.Runtime.Intrinsics.X86.Sse.IsSupported) System.Runtime.Intrinsics.X86.Sse.Prefetch1(block + done);
    }

    /// <summary>
    /// The bytes of patch rows a band of pooled pixels reads, half of L1d. On a Zen 3 (64 samples, one core) 8 to 24 KB
    /// measured the same; against no bands, 784-pixel images of 72-float patches went from 7.9 to 6.5 ms, the small CNN's conv2
    /// (121 pixels, in one band either way) stayed as it was.
    /// </summary>
    private const long BandBytes = 16 * 1024;

    /// <summary>
    /// origin + pixel * step for each winner, in the winners' order (a patch row's address, or a pixel's index); false if a
    /// winner is not a pixel of its filter. A winner is pixel * filters + filter, and the pixel a multiplication and a shift
    /// (Granlund and Montgomery's division by a constant; two integer divisions per winner took longer than the multiply-adds
    /// of a nine-float patch). A kernel of its own, as it runs once a sample inside one: left to tiered compilation, the
    /// small CNN's conv2 kernel gradient (64 samples, two cores) took 1.32 ms instead of 1.06.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe bool WinnerOffsets(int* winners, nint* offsets, int lookups, int filters, int positions, nint origin, nint step)
    {
        // floor(n / filters) = (n * magic) >> shift for every n < 2^31, with shift = 31 + ceil(log2 filters) and magic =
        // ceil(2^shift / filters), below 2^32 + 1, so the product fits 64 bits.
        int shift = 31 + (filters > 1 ? BitOperations.Log2((uint)filters - 1) + 1 : 0);
        ulong magic = ((1UL << shift) + (ulong)filters - 1) / (ulong)filters;
        bool bad = false;
        for (int at = 0, c = 0; at < lookups; at++)
        {
            // A winner below its filter wraps to 2^31 or more: no pixel below positions passes the check.
            ulong n = (uint)(winners[at] - c), pixel = n * magic >> shift;
            bad |= pixel * (ulong)filters != n | pixel >= (ulong)positions;
            offsets[at] = origin + (nint)pixel * step;
            if (++c == filters) c = 0;
        }
        return !bad;
    }

    /// <summary>Names the first winner that is not a pixel of its filter (<see cref="WinnerOffsets"/> found one).</summary>
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
            Helper.For(job.Parts, &AddAtWinners, &job);
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
        fixed (nint* rows = rowScratch.Span)
        {
            for (int sample = first; sample < first + samples; sample++)
            {
                int* winners = job.Winners + (long)sample * lookups;
                float* pooledGradient = job.PooledGradient + (long)sample * lookups;
                // Each winner's patch row over the batch, whose cells Walk maps onto the image.
                if (!WinnerOffsets(winners, rows, lookups, filters, window.Positions, sample * window.Positions, 1)) ThrowNotAWinner(winners, pooled, filters, window.Positions);
                for (int at = 0, c = 0; at < lookups; at++)
                {
                    int row = (int)rows[at];
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
