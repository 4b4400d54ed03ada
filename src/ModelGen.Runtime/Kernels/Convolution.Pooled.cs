using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

// A Conv2D followed by a 2x2 max pooling in one pass: each pooled pixel's four windows are convolved directly
// (Convolution.Direct.cs) with their sums in registers, finished (bias, ReLU) as the convolution finishes them and pooled as
// MaxPooling2D pools them, so the result is the two layers' bit for bit, NaN included, and in training each winner too; the
// convolution's output is never written. Each pass reads its vectors of every kernel row once for four windows (eight, two
// pooled pixels, where the registers hold their chains), and an odd row or column that the pooling drops is never
// convolved. The small CNN at batch 1 (2 cores, medians of 10 alternating runs): conv1 + pool1 8.0-10.1 -> 5.8-6.8 us,
// conv2 + pool2 34-35 -> 26-28 us; its whole predict 57-64 -> 44-56 us.
public static partial class Convolution
{
    /// <summary>
    /// Conv2D (<paramref name="window"/>, into <paramref name="convolved"/>) then MaxPooling2D (<paramref name="pool"/>, into
    /// <paramref name="pooled"/>). Training keeps what the backward pass reads: the pooling's winners and, unless
    /// <paramref name="keepPatches"/> is false (a kernel gradient that reads the input, as <see cref="KernelGradientAtWinners"/> does),
    /// the patches. Both run the two as one where <see cref="PoolsInRegisters"/>, and then leave <paramref name="convolved"/>
    /// untouched (the backward pass never reads it: the pooling takes the ReLU's derivative on its own output); elsewhere the two
    /// kernels, the convolution reading <paramref name="packedKernel"/> as <see cref="Forward"/> does.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void ForwardMaxPooled(ReadOnlySpan<float> input, Span<float> patches, ReadOnlySpan<float> kernel, Span<float> convolved,
        Span<float> pooled, Span<int> winners, in Window window, in Window pool, int filters, int batch, ReadOnlySpan<float> bias = default,
        bool relu = false, bool training = false, bool keepPatches = true, PackedMatrix? packedKernel = null)
    {
        if (pool.Height != window.OutputHeight || pool.Width != window.OutputWidth || pool.Channels != filters)
            throw new ArgumentException($"Pooled convolution: the pooling reads {pool.Height}x{pool.Width}x{pool.Channels} pixels, the convolution writes {window.OutputHeight}x{window.OutputWidth}x{filters}.");
        Gemm.CheckPacked(packedKernel, window.PatchSize, filters, nameof(packedKernel));
        bool keeps = training && keepPatches;
        if (!PoolsInRegisters(window, pool, filters, keeps))
        {
            Forward(input, patches, kernel, convolved, window, filters, batch, bias, relu, keepPatches: keeps, packedKernel: packedKernel);
            Pooling.MaxForward(convolved, pooled, winners, pool, batch, keepWinners: training);
            return;
        }
        int imageFloats = window.Height * window.Width * window.Channels;
        long pooledFloats = (long)batch * pool.Positions * filters;
        Require(input.Length >= batch * imageFloats && kernel.Length >= window.PatchSize * filters && pooled.Length >= pooledFloats
            && (bias.IsEmpty || bias.Length >= filters) && (!training || winners.Length >= pooledFloats), "Pooled convolution", window, batch);
        if (keeps) Im2Col(input, patches, window, batch);
        fixed (float* x = input, k = kernel, b = bias, y = pooled)
        fixed (int* w = winners)
        {
            var work = new PooledRanges(x, k, bias.IsEmpty ? null : b, y, training ? w : null, window, pool, filters, relu);
            Helper.ForRanges(ref work, batch * pool.Positions, 4L * window.PatchSize + filters, Helper.SpatialShareAbove);
        }
    }

    /// <summary>
    /// Whether the pooling is 2x2 with strides 2 over whole windows (padding would add windows of fewer pixels) and the
    /// convolution's windows shallow, or deep against multiples of 64 filters at inference on AVX-512 (training keeps the
    /// patches). Not the direct pass's rule for rows (<see cref="IsDeepDirect"/>): this kernel takes four windows of a 2x2
    /// block a pass, and the CNN's conv2 + pool2 (rows of 11) ran 34-35 -> 26-28 us pooled at batch 1.
    /// </summary>
    private static bool PoolsInRegisters(in Window window, in Window pool, int filters, bool keepPatches) => PoolsWholeWindows(pool) &&
        (window.PatchSize <= DirectPatch || !keepPatches && IsDeepAvx512(window) && filters % (4 * Vector512<float>.Count) == 0);

    /// <summary>Whether training and inference pool the convolution in registers on every SIMD path, so that neither writes the convolution's output.</summary>
    internal static bool PoolsInRegistersOnEveryPath(in Window window, in Window pool) => PoolsWholeWindows(pool) && window.PatchSize <= DirectPatch;

    [MethodImpl(Compiled.Driver)]
    private static bool PoolsWholeWindows(in Window pool) =>
        pool is { KernelHeight: 2, KernelWidth: 2, StrideHeight: 2, StrideWidth: 2, Dilation: 1, PadTop: 0, PadLeft: 0 }
        && 2 * pool.OutputHeight <= pool.Height && 2 * pool.OutputWidth <= pool.Width;

    /// <summary>Pooled pixels [first, first + count), counted over the whole batch; their winners too where <c>winners</c> is not null (training).</summary>
    private readonly unsafe struct PooledRanges(float* input, float* kernel, float* bias, float* pooled, int* winners, Window window, Window pool, int filters, bool relu) : IRanges
    {
        [MethodImpl(Compiled.Driver)]
        public void Run(int first, int count)
        {
            if (winners == null) Run<No>(first, count);
            else Run<Yes>(first, count);
        }

        [MethodImpl(Compiled.Driver)]
        private void Run<TKeepsWinners>(int first, int count) where TKeepsWinners : IFlag
        {
            switch (Simd.Current)
            {
                // At most eight filters take one 256-bit vector, not half or less of a 512-bit one.
                case SimdPath.Avx512 when filters <= Vector256<float>.Count:
                    Pooled<Lanes256, Vector256<float>, TKeepsWinners>(input, kernel, bias, pooled, winners, window, pool, filters, relu, first, count); break;
                case SimdPath.Avx512: Pooled<Lanes512, Vector512<float>, TKeepsWinners>(input, kernel, bias, pooled, winners, window, pool, filters, relu, first, count); break;
                case SimdPath.Avx2: Pooled<Lanes256, Vector256<float>, TKeepsWinners>(input, kernel, bias, pooled, winners, window, pool, filters, relu, first, count); break;
                default: Pooled<Lanes128, Vector128<float>, TKeepsWinners>(input, kernel, bias, pooled, winners, window, pool, filters, relu, first, count); break;
            }
        }
    }

    /// <summary>
    /// Each pooled pixel's four windows (the convolution's outputs at rows 2y, 2y + 1 and columns 2x, 2x + 1), read in place
    /// from the sample's plane (the image or its zero-padded copy), else (a copy past <see cref="Plane"/>'s limit) first
    /// gathered, zero-padded, into four patch rows. Training also keeps each
    /// pooled value's winner, as the pooling kernel numbers it: the convolution's output pixel times the filters, plus the filter.
    /// </summary>
    [MethodImpl(Compiled.Kernel), SkipLocalsInit] // offsets and gathered windows are written before they are read
    private static unsafe void Pooled<TLanes, TVector, TKeepsWinners>(float* input, float* kernel, float* bias, float* pooled, int* winners, in Window window, in Window pool,
        int filters, bool relu, int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct where TKeepsWinners : IFlag
    {
        int patch = window.PatchSize, imageFloats = window.Height * window.Width * window.Channels;
        // The in-place offsets are worked out for each plane's rows (at the first sample: the image's or a padded copy's), the
        // gathered windows' at the first gather.
        int* inPlace = stackalloc int[patch];
        int* inBuffer = stackalloc int[patch];
        int inPlaceRowFloats = -1;
        bool gathers = false;
        float* gathered = stackalloc float[4 * patch];
        // Each sample's windows are read from its plane: the image, or a zero-padded copy of it (Plane.For), so that a
        // 'same' window's border pixels are not gathered float by float (the autoencoder's first layer: 52 of 196).
        var plane = default(Plane);
        int planeSample = -1;
        for (int item = first; item < first + count; item++)
        {
            int sample = item / pool.Positions, position = item - sample * pool.Positions;
            int pooledRow = position / pool.OutputWidth, pooledColumn = position - pooledRow * pool.OutputWidth;
            int top = 2 * pooledRow * window.StrideHeight - window.PadTop, left = 2 * pooledColumn * window.StrideWidth - window.PadLeft;
            float* image = input + (long)sample * imageFloats;
            if (sample != planeSample)
            {
                plane = Plane.For(image, window, 0, 2 * pool.OutputHeight, passPixels: 1);
                planeSample = sample;
                if (plane.RowFloats != inPlaceRowFloats)
                {
                    inPlaceRowFloats = plane.RowFloats;
                    PatchOffsets(window, inPlaceRowFloats, inPlace);
                }
            }
            float* windows;
            int* offsets;
            nint right, down;
            if (plane.Holds(top, window.StrideHeight + window.SpanHeight, left, window.StrideWidth + window.SpanWidth))
            {
                windows = plane.At(top, left);
                offsets = inPlace;
                right = window.StrideWidth * window.Channels;
                down = window.StrideHeight * plane.RowFloats;
            }
            else
            {
                if (!gathers) gathers = GatheredOffsets(inBuffer, patch);
                GatherWindow(image, gathered, window, top, left);
                GatherWindow(image, gathered + patch, window, top, left + window.StrideWidth);
                GatherWindow(image, gathered + 2 * patch, window, top + window.StrideHeight, left);
                GatherWindow(image, gathered + 3 * patch, window, top + window.StrideHeight, left + window.StrideWidth);
                windows = gathered;
                offsets = inBuffer;
                right = patch;
                down = 2 * patch;
            }
            float* pixel = pooled + (long)item * filters;
            int* won = winners + (long)item * filters;
            // The corner window's winner numbers: its pixel in the sample's convolution output (the pooling's input), times the filters.
            var corner = new WinnerNumbers((2 * pooledRow * pool.Width + 2 * pooledColumn) * filters, filters, pool.Width * filters);
            // Two pooled pixels of a row a pass where the plane holds both pixels' windows: on AVX-512 (32 registers) over
            // groups of at most two vectors of filters, sixteen chains; elsewhere where the filters fit one vector, eight.
            if ((TLanes.Count == 16 || filters <= TLanes.Count) && windows != gathered && pooledColumn + 1 < pool.OutputWidth && item + 1 < first + count
                && plane.Holds(top, window.StrideHeight + window.SpanHeight, left, 3 * window.StrideWidth + window.SpanWidth))
            {
                PooledGroups<TLanes, TVector, Yes, TKeepsWinners>(windows, offsets, right, down, patch, kernel, filters, bias, pixel, won, corner, relu, 0);
                item++;
                continue;
            }
            int j = 0;
            if (TLanes.Count == 16)
            {
                for (; filters - j >= 4 * TLanes.Count; j += 4 * TLanes.Count)
                    PooledPass<TLanes, TVector, FourVectors, No, TKeepsWinners>(windows, offsets, right, down, patch, kernel + j, filters, bias is null ? null : bias + j, pixel + j, won + j, corner.From(j), filters - j, relu);
            }
            PooledGroups<TLanes, TVector, No, TKeepsWinners>(windows, offsets, right, down, patch, kernel, filters, bias, pixel, won, corner, relu, j);
        }
    }

    /// <summary>
    /// The filters from <paramref name="j"/> on, for one pooled pixel or two (<typeparamref name="TTwo"/>), in groups of at
    /// most two vectors (<see cref="PooledPass"/>): whole pairs, then a masked pair or one vector.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PooledGroups<TLanes, TVector, TTwo, TKeepsWinners>(float* windows, int* offsets, nint right, nint down, int patch, float* kernel, int filters,
        float* bias, float* pixel, int* won, WinnerNumbers corner, bool relu, int j)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTwo : IFlag where TKeepsWinners : IFlag
    {
        for (; j < filters; j += 2 * TLanes.Count)
        {
            int rest = filters - j;
            float* biasFrom = bias is null ? null : bias + j;
            if (rest >= 2 * TLanes.Count) PooledPass<TLanes, TVector, TwoVectors, TTwo, TKeepsWinners>(windows, offsets, right, down, patch, kernel + j, filters, biasFrom, pixel + j, won + j, corner.From(j), rest, relu);
            else if (rest <= TLanes.Count) PooledPass<TLanes, TVector, OneVector, TTwo, TKeepsWinners>(windows, offsets, right, down, patch, kernel + j, filters, biasFrom, pixel + j, won + j, corner.From(j), rest, relu);
            else PooledPass<TLanes, TVector, FewerVectors, TTwo, TKeepsWinners>(windows, offsets, right, down, patch, kernel + j, filters, biasFrom, pixel + j, won + j, corner.From(j), rest, relu);
        }
    }

    /// <summary>
    /// Four windows (corner, right, below, diagonal) against the filters of <typeparamref name="TFilters"/>, and the four of
    /// the pooled pixel on the right where <typeparamref name="TTwo"/> (one or two vectors of filters): a chain of fused multiply-adds
    /// per window and vector over the patch, then each window's sums finished and each four pooled. Two pooled pixels a
    /// pass against one (the Zen 5, a console harness, inference): 28x28x1 'same' to 16 filters at batch 1 2.5-2.6 -> 2.0
    /// us, at batch 32 73-78 -> 52-53, to 8 at batch 1 2.5 -> 1.9; 'valid' to 32 (the small CNN's conv1) at batch 1 2.1 ->
    /// 1.7, at 32 63-64 -> 48-57, to 24 at 32 70-71 -> 53-62; deep, in groups of two vectors against one pixel's four
    /// vectors, 13x13x32 to 64 (the small CNN's conv2) at batch 1 10.4-11.0 -> 9.2-9.8, at 32 305-312 -> 265-275, 10x10x32
    /// 'same' to 128 at batch 8 167-173 -> 134-140; on AVX2 to 8 at batch 32 68-72 -> 47-48, but over groups of one vector
    /// against one pixel's two slower (to 16 at 32 69-71 -> 77-78, to 32 92-100 -> 113). The JIT
    /// would not inline it (13 arguments), so the group is a type argument: each specialisation has its vector count and
    /// masking as constants (as a call with those as arguments, conv2 + pool2 took 46 us instead of 26).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void PooledPass<TLanes, TVector, TFilters, TTwo, TKeepsWinners>(float* windows, int* offsets, nint right, nint down, int patch,
        float* kernel, int filters, float* bias, float* pixel, int* winner, WinnerNumbers numbers, int remaining, bool relu)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TFilters : struct, IFilterGroup where TTwo : IFlag where TKeepsWinners : IFlag
    {
        int vectors = TFilters.Vectors;
        bool whole = TFilters.Whole;
        int width = TLanes.Count;
        int lowCount = Math.Min(width, remaining), highCount = Math.Clamp(remaining - width, 0, width);
        TVector low = TLanes.FirstLanes(lowCount), high = TLanes.FirstLanes(highCount);
        nint diagonal = right + down;
        TVector a0 = TLanes.Zero, a1 = TLanes.Zero, a2 = TLanes.Zero, a3 = TLanes.Zero;
        TVector b0 = TLanes.Zero, b1 = TLanes.Zero, b2 = TLanes.Zero, b3 = TLanes.Zero;
        TVector c0 = TLanes.Zero, c1 = TLanes.Zero, c2 = TLanes.Zero, c3 = TLanes.Zero;
        TVector d0 = TLanes.Zero, d1 = TLanes.Zero, d2 = TLanes.Zero, d3 = TLanes.Zero;
        for (int p = 0; p < patch; p++, kernel += filters)
        {
            TVector w0 = whole ? TLanes.Load(ref *kernel) : TLanes.LoadMasked(kernel, low);
            TVector w1 = vectors == 1 ? TLanes.Zero : whole ? TLanes.Load(ref kernel[width]) : TLanes.LoadMasked(kernel + width, high);
            TVector w2 = vectors == 4 ? TLanes.Load(ref kernel[2 * width]) : TLanes.Zero;
            TVector w3 = vectors == 4 ? TLanes.Load(ref kernel[3 * width]) : TLanes.Zero;
            float* x = windows + offsets[p];
            TVector x0 = TLanes.Broadcast(*x);
            a0 = TLanes.MultiplyAdd(x0, w0, a0);
            if (vectors >= 2) b0 = TLanes.MultiplyAdd(x0, w1, b0);
            if (vectors == 4) { c0 = TLanes.MultiplyAdd(x0, w2, c0); d0 = TLanes.MultiplyAdd(x0, w3, d0); }
            TVector x1 = TLanes.Broadcast(x[right]);
            a1 = TLanes.MultiplyAdd(x1, w0, a1);
            if (vectors >= 2) b1 = TLanes.MultiplyAdd(x1, w1, b1);
            if (vectors == 4) { c1 = TLanes.MultiplyAdd(x1, w2, c1); d1 = TLanes.MultiplyAdd(x1, w3, d1); }
            TVector x2 = TLanes.Broadcast(x[down]);
            a2 = TLanes.MultiplyAdd(x2, w0, a2);
            if (vectors >= 2) b2 = TLanes.MultiplyAdd(x2, w1, b2);
            if (vectors == 4) { c2 = TLanes.MultiplyAdd(x2, w2, c2); d2 = TLanes.MultiplyAdd(x2, w3, d2); }
            TVector x3 = TLanes.Broadcast(x[diagonal]);
            a3 = TLanes.MultiplyAdd(x3, w0, a3);
            if (vectors >= 2) b3 = TLanes.MultiplyAdd(x3, w1, b3);
            if (vectors == 4) { c3 = TLanes.MultiplyAdd(x3, w2, c3); d3 = TLanes.MultiplyAdd(x3, w3, d3); }
            if (TTwo.IsSet)
            {
                // The pooled pixel on the right: its four windows two to the right, in the chains of the third and fourth vectors.
                TVector x4 = TLanes.Broadcast(x[2 * right]);
                c0 = TLanes.MultiplyAdd(x4, w0, c0);
                if (vectors == 2) d0 = TLanes.MultiplyAdd(x4, w1, d0);
                TVector x5 = TLanes.Broadcast(x[3 * right]);
                c1 = TLanes.MultiplyAdd(x5, w0, c1);
                if (vectors == 2) d1 = TLanes.MultiplyAdd(x5, w1, d1);
                TVector x6 = TLanes.Broadcast(x[down + 2 * right]);
                c2 = TLanes.MultiplyAdd(x6, w0, c2);
                if (vectors == 2) d2 = TLanes.MultiplyAdd(x6, w1, d2);
                TVector x7 = TLanes.Broadcast(x[diagonal + 2 * right]);
                c3 = TLanes.MultiplyAdd(x7, w0, c3);
                if (vectors == 2) d3 = TLanes.MultiplyAdd(x7, w1, d3);
            }
        }
        bool hasBias = bias is not null;
        TVector biasA = hasBias ? (whole ? TLanes.Load(ref *bias) : TLanes.LoadMasked(bias, low)) : TLanes.Zero;
        TVector biasB = hasBias && vectors >= 2 ? (whole ? TLanes.Load(ref bias[width]) : TLanes.LoadMasked(bias + width, high)) : TLanes.Zero;
        // Winner numbers are integers carried in the lanes' bits: stored through a float reference, they land as the integers.
        ref float wonAt = ref *(float*)winner;
        TVector wonB = default;
        TVector pooledA = PoolFinished<TLanes, TVector, TKeepsWinners>(a0, a1, a2, a3, biasA, hasBias, relu, numbers, out TVector wonA);
        TVector pooledB = vectors >= 2 ? PoolFinished<TLanes, TVector, TKeepsWinners>(b0, b1, b2, b3, biasB, hasBias, relu, numbers.From(width), out wonB) : TLanes.Zero;
        StorePooled<TLanes, TVector, TKeepsWinners>(pixel, ref wonAt, pooledA, pooledB, wonA, wonB, whole, lowCount, highCount);
        if (TTwo.IsSet)
        {
            var next = numbers.NextPooled;
            TVector wonD = default;
            TVector pooledC = PoolFinished<TLanes, TVector, TKeepsWinners>(c0, c1, c2, c3, biasA, hasBias, relu, next, out TVector wonC);
            TVector pooledD = vectors == 2 ? PoolFinished<TLanes, TVector, TKeepsWinners>(d0, d1, d2, d3, biasB, hasBias, relu, next.From(width), out wonD) : TLanes.Zero;
            StorePooled<TLanes, TVector, TKeepsWinners>(pixel + filters, ref Unsafe.Add(ref wonAt, filters), pooledC, pooledD, wonC, wonD, whole, lowCount, highCount);
        }
        if (vectors == 4)
        {
            // Four vectors are always whole: the second pair as the first.
            TVector biasC = hasBias ? TLanes.Load(ref bias[2 * width]) : TLanes.Zero, biasD = hasBias ? TLanes.Load(ref bias[3 * width]) : TLanes.Zero;
            TVector pooledC = PoolFinished<TLanes, TVector, TKeepsWinners>(c0, c1, c2, c3, biasC, hasBias, relu, numbers.From(2 * width), out TVector wonC);
            TVector pooledD = PoolFinished<TLanes, TVector, TKeepsWinners>(d0, d1, d2, d3, biasD, hasBias, relu, numbers.From(3 * width), out TVector wonD);
            StorePooled<TLanes, TVector, TKeepsWinners>(pixel + 2 * width, ref Unsafe.Add(ref wonAt, 2 * width), pooledC, pooledD, wonC, wonD, whole: true, width, width);
        }
    }

    /// <summary>A pooled pixel's first two vectors of filters and their winners: whole, or the first <paramref name="lowCount"/> and <paramref name="highCount"/> lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StorePooled<TLanes, TVector, TKeepsWinners>(float* pixel, ref float won, TVector first, TVector second, TVector wonFirst, TVector wonSecond,
        bool whole, int lowCount, int highCount) where TLanes : struct, ILanes<TVector> where TVector : struct where TKeepsWinners : IFlag
    {
        if (whole)
        {
            TLanes.Store(ref *pixel, first);
            TLanes.Store(ref pixel[TLanes.Count], second);
            if (TKeepsWinners.IsSet)
            {
                TLanes.Store(ref won, wonFirst);
                TLanes.Store(ref Unsafe.Add(ref won, TLanes.Count), wonSecond);
            }
            return;
        }
        TLanes.StoreFirst(ref *pixel, first, lowCount);
        if (highCount > 0) TLanes.StoreFirst(ref pixel[TLanes.Count], second, highCount);
        if (TKeepsWinners.IsSet)
        {
            TLanes.StoreFirst(ref won, wonFirst, lowCount);
            if (highCount > 0) TLanes.StoreFirst(ref Unsafe.Add(ref won, TLanes.Count), wonSecond, highCount);
        }
    }

    /// <summary>
    /// The winner numbers of a pooled pixel's four windows for the filters from one on: the corner window's number for that
    /// filter (its output pixel times the filters, plus the filter), and the steps to the window on its right and below.
    /// </summary>
    private readonly record struct WinnerNumbers(int Corner, int ToRight, int ToBelow)
    {
        /// <summary>The numbers <paramref name="filters"/> filters further on.</summary>
        public WinnerNumbers From(int filters) => this with { Corner = Corner + filters };

        /// <summary>The numbers of the pooled pixel on the right: its corner window two windows on.</summary>
        public WinnerNumbers NextPooled => this with { Corner = Corner + 2 * ToRight };
    }

    /// <summary>
    /// Four windows' sums finished as the convolution finishes them (bias added, then ReLU) and pooled as MaxPooling2D pools
    /// them: in window order, a later value replacing the maximum only where it is greater.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector PoolFinished<TLanes, TVector, TKeepsWinners>(TVector corner, TVector right, TVector below, TVector diagonal, TVector bias, bool hasBias, bool relu,
        WinnerNumbers numbers, out TVector winner)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TKeepsWinners : IFlag
    {
        if (hasBias)
        {
            corner = TLanes.Add(corner, bias); right = TLanes.Add(right, bias);
            below = TLanes.Add(below, bias); diagonal = TLanes.Add(diagonal, bias);
        }
        if (relu)
        {
            corner = TLanes.Relu(corner); right = TLanes.Relu(right);
            below = TLanes.Relu(below); diagonal = TLanes.Relu(diagonal);
        }
        var later = TLanes.Greater(right, corner);
        var maximum = TLanes.Select(later, right, corner);
        winner = TKeepsWinners.IsSet ? TLanes.Select(later, TLanes.IndexBits(numbers.Corner + numbers.ToRight), TLanes.IndexBits(numbers.Corner)) : default;
        later = TLanes.Greater(below, maximum);
        maximum = TLanes.Select(later, below, maximum);
        if (TKeepsWinners.IsSet) winner = TLanes.Select(later, TLanes.IndexBits(numbers.Corner + numbers.ToBelow), winner);
        later = TLanes.Greater(diagonal, maximum);
        if (TKeepsWinners.IsSet) winner = TLanes.Select(later, TLanes.IndexBits(numbers.Corner + numbers.ToBelow + numbers.ToRight), winner);
        return TLanes.Select(later, diagonal, maximum);
    }

    /// <summary>The filters one pooled pass covers: four vectors (on AVX-512's 32 registers) or two, the last two masked unless whole.</summary>
    private interface IFilterGroup
    {
        static abstract int Vectors { get; }
        static abstract bool Whole { get; }
    }

    private readonly struct FourVectors : IFilterGroup
    {
        public static int Vectors => 4;
        public static bool Whole => true;
    }

    private readonly struct TwoVectors : IFilterGroup
    {
        public static int Vectors => 2;
        public static bool Whole => true;
    }

    /// <summary>The last filters, more than one vector and fewer than two: loads and stores masked past them.</summary>
    private readonly struct FewerVectors : IFilterGroup
    {
        public static int Vectors => 2;
        public static bool Whole => false;
    }

    /// <summary>The last filters, at most one vector (masked past them): one chain per window where two vectors' chains ran a second on empty lanes.</summary>
    private readonly struct OneVector : IFilterGroup
    {
        public static int Vectors => 1;
        public static bool Whole => false;
    }
}
