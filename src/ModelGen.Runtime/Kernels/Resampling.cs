using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>ZeroPadding2D: each input row lands, whole, inside a zero frame; backward reads it back out.</summary>
public static class ZeroPadding
{
    public static void Forward(ReadOnlySpan<float> input, Span<float> output, int height, int width, int channels, int top, int bottom, int left, int right, int batch)
    {
        int row = width * channels, outputRow = (width + left + right) * channels;
        int imageSize = height * row, outputSize = (height + top + bottom) * outputRow;
        output.Slice(0, batch * outputSize).Clear();
        for (int n = 0; n < batch; n++)
        {
            for (int y = 0; y < height; y++)
            {
                input.Slice(n * imageSize + y * row, row).CopyTo(output.Slice(n * outputSize + (y + top) * outputRow + left * channels, row));
            }
        }
    }

    public static void Backward(ReadOnlySpan<float> outputGradient, Span<float> inputGradient, int height, int width, int channels, int top, int bottom, int left, int right, int batch, bool accumulate)
    {
        int row = width * channels, outputRow = (width + left + right) * channels;
        int imageSize = height * row, outputSize = (height + top + bottom) * outputRow;
        for (int n = 0; n < batch; n++)
        {
            for (int y = 0; y < height; y++)
            {
                Merges.Pass(outputGradient.Slice(n * outputSize + (y + top) * outputRow + left * channels, row), inputGradient.Slice(n * imageSize + y * row, row), row, accumulate);
            }
        }
    }
}

/// <summary>
/// UpSampling2D (nearest): each pixel repeated into a rows x columns block; backward sums each block, its rows outer and
/// columns inner from zero (or from the gradient there), a vector of channels at a time (256-bit ones on AVX-512 where they
/// are whole vectors of a pixel's channels and 512-bit ones are not: 8, 24, ... channels). The batch's image rows are shared
/// by both cores (the autoencoder's 14x14x16 -> 28x28x16 at batch 128, on one core with a span call per block before:
/// forward 0.23 ms, backward 0.76).
/// </summary>
public static class UpSampling
{
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Forward(ReadOnlySpan<float> input, Span<float> output, int height, int width, int channels, int rows, int columns, int batch)
    {
        Require(input.Length, output.Length, height, width, channels, rows, columns, batch);
        fixed (float* x = input, y = output)
            ForImageRows(new Blocks(x, y, width, channels, rows, columns, backward: false, accumulate: false), batch * height);
    }

    /// <summary>
    /// Each of <paramref name="count"/> floats from <paramref name="from"/> on written <paramref name="times"/> times in a row
    /// from <paramref name="to"/> on: a plane's row upsampled across (Convolution's planar lay-out), four floats a shuffle where twice.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    internal static unsafe void RepeatEach(float* from, float* to, int count, int times)
    {
        int x = 0;
        if (times == 2)
        {
            for (; x + 4 <= count; x += 4)
            {
                var four = Vector128.Load(from + x);
                Vector128.Store(Vector128.Shuffle(four, Vector128.Create(0, 0, 1, 1)), to + 2 * x);
                Vector128.Store(Vector128.Shuffle(four, Vector128.Create(2, 2, 3, 3)), to + 2 * x + 4);
            }
        }
        for (; x < count; x++)
            for (int i = 0; i < times; i++) to[x * times + i] = from[x];
    }

    /// <summary>
    /// <paramref name="count"/> pixels of <paramref name="channels"/> floats from <paramref name="to"/> on, each a copy of
    /// pixel x / <paramref name="times"/> from <paramref name="pixels"/> on: an image row upsampled across in place of its
    /// padded copy (Convolution.PadImage). Channels of whole 256-bit vectors go eight at a time, each stored into every cell
    /// of its block; a span copy per cell cost more than its floats. <see cref="Repeat{TLanes, TVector}"/> stores alike on
    /// the SIMD path's vectors, but PadImage is no SIMD-generic kernel: one generic row for both, dispatched per padded row,
    /// measured slower (the autoencoder's last kernel gradient from its upsampling's input 342 -> 355 us, medians of five
    /// processes each in turns).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    internal static unsafe void RepeatPixels(float* pixels, float* to, int count, int channels, int times)
    {
        int blockFloats = times * channels, x = 0;
        if (Vector256.IsHardwareAccelerated && channels % Vector256<float>.Count == 0)
        {
            for (; x + times <= count; x += times, pixels += channels, to += blockFloats)
                for (int c = 0; c < channels; c += Vector256<float>.Count)
                {
                    var eight = Vector256.Load(pixels + c);
                    for (int cell = c; cell < blockFloats; cell += channels) Vector256.Store(eight, to + cell);
                }
        }
        for (; x < count; x += times, pixels += channels, to += blockFloats)
            for (int k = 0; k < Math.Min(times, count - x); k++) new ReadOnlySpan<float>(pixels, channels).CopyTo(new Span<float>(to + k * channels, channels));
    }

    [MethodImpl(Compiled.Driver)]
    public static unsafe void Backward(ReadOnlySpan<float> outputGradient, Span<float> inputGradient, int height, int width, int channels, int rows, int columns, int batch, bool accumulate)
    {
        Require(inputGradient.Length, outputGradient.Length, height, width, channels, rows, columns, batch);
        fixed (float* g = outputGradient, dx = inputGradient)
            ForImageRows(new Blocks(dx, g, width, channels, rows, columns, backward: true, accumulate), batch * height);
    }

    /// <summary>The batch's image rows, shared by both cores where they hold enough floats.</summary>
    private static void ForImageRows(Blocks work, int imageRows) =>
        Helper.ForRanges(ref work, imageRows, (long)work.Width * work.Channels * (1 + work.Rows * work.Columns), Helper.SpatialShareAbove);

    private static void Require(int imageFloats, int upsampledFloats, int height, int width, int channels, int rows, int columns, int batch)
    {
        long image = (long)batch * height * width * channels;
        if (imageFloats < image || upsampledFloats < image * rows * columns)
            throw new ArgumentException($"UpSampling2D({rows}, {columns}) over {batch} images of {height}x{width}x{channels} needs {image} floats of image and {image * rows * columns} upsampled; got {imageFloats} and {upsampledFloats}.");
    }

    /// <summary>
    /// Image rows [first, first + count) over the batch and their blocks in the upsampled image: forward, each repeated into
    /// its block rows (<see cref="Repeat{TLanes, TVector}"/>); <see cref="Backward"/>, each pixel's gradient the sum of its
    /// block (<see cref="SumBlocks{TLanes, TVector}"/>).
    /// </summary>
    private readonly unsafe struct Blocks(float* image, float* upsampled, int width, int channels, int rows, int columns, bool backward, bool accumulate) : IVectorRanges
    {
        public readonly float* Image = image, Upsampled = upsampled;
        public readonly int Width = width, Channels = channels, Rows = rows, Columns = columns;
        public readonly bool Backward = backward, Accumulate = accumulate;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count, wholeVectorsOf: Channels);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            if (Backward) SumBlocks<TLanes, TVector>(this, first, count);
            else Repeat<TLanes, TVector>(this, first, count);
        }
    }

    /// <summary>
    /// The output row by row, each pixel's channels a vector at a time (the last one partial), stored into the row's cells
    /// of its block. A span copy per cell spent more on the call than on its 16 floats, and writing a block's rows together
    /// (two interleaved streams) was slower than row by row where the output was not in cache: 14x14x16 at batch 128, two
    /// cores, the output in cache 0.14 -> 0.06 ms, out of it 0.32-0.49 -> 0.30-0.41 (four processes each in turns).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void Repeat<TLanes, TVector>(in Blocks work, int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = work.Width, channels = work.Channels, rows = work.Rows, columns = work.Columns, lanes = TLanes.Count;
        int outputRow = width * columns * channels, whole = channels / lanes * lanes, rest = channels - whole;
        for (int line = first * rows; line < (first + count) * rows; line++)
        {
            float* pixel = work.Image + (long)(line / rows) * width * channels, block = work.Upsampled + (long)line * outputRow;
            for (int x = 0; x < width; x++, pixel += channels, block += columns * channels)
            {
                for (int c = 0; c < whole; c += lanes)
                {
                    TVector value = TLanes.Load(ref pixel[c]);
                    for (int k = 0; k < columns; k++) TLanes.Store(ref block[k * channels + c], value);
                }
                if (rest == 0) continue;
                TVector last = TLanes.LoadFirst(ref pixel[whole], rest);
                for (int k = 0; k < columns; k++) TLanes.StoreFirst(ref block[k * channels + whole], last, rest);
            }
        }
    }

    /// <summary>
    /// Each pixel's block summed a vector of channels at a time, the whole vectors first, then the last one masked (where a
    /// test per cell chose between the two): 8x8x8 at batch 128, in cache, 38-69 -> 21-36 us, on 256-bit vectors on AVX-512.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumBlocks<TLanes, TVector>(in Blocks work, int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = work.Width, channels = work.Channels, rows = work.Rows, columns = work.Columns;
        int outputRow = width * columns * channels, whole = channels / TLanes.Count * TLanes.Count;
        TVector lastLanes = TLanes.FirstLanes(channels - whole);
        for (int row = first; row < first + count; row++)
        {
            float* target = work.Image + (long)row * width * channels, block = work.Upsampled + (long)row * rows * outputRow;
            for (int x = 0; x < width; x++, target += channels, block += columns * channels)
                SumBlock<TLanes, TVector>(block, outputRow, rows, columns, channels, whole, lastLanes, target, work.Accumulate);
        }
    }

    /// <summary>
    /// One row of an upsampled image's gradient (<paramref name="upsampledRow"/>, <paramref name="width"/> x
    /// <paramref name="columns"/> pixels) summed into its image row's pixels: a block's first row written (or added where
    /// <paramref name="accumulate"/>), its later ones added, so row by row gives <see cref="Backward"/>'s bits. A transposed
    /// convolution that computes the upsampled gradient a row at a time folds each row in while it is in cache.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void SumRow<TLanes, TVector>(float* upsampledRow, float* imageRow, int width, int channels, int columns, bool accumulate)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int whole = channels / TLanes.Count * TLanes.Count;
        TVector lastLanes = TLanes.FirstLanes(channels - whole);
        for (int x = 0; x < width; x++, imageRow += channels, upsampledRow += columns * channels)
            SumBlock<TLanes, TVector>(upsampledRow, 0, 1, columns, channels, whole, lastLanes, imageRow, accumulate);
    }

    /// <summary>
    /// One pixel's block of rows x columns cells (rows <paramref name="rowFloats"/> apart) summed into <paramref name="target"/>:
    /// the <paramref name="whole"/> channels that fill vectors, then the rest through <paramref name="lastLanes"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void SumBlock<TLanes, TVector>(float* block, int rowFloats, int rows, int columns, int channels, int whole, TVector lastLanes,
        float* target, bool accumulate) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int lanes = TLanes.Count, rest = channels - whole;
        for (int c = 0; c < whole; c += lanes)
        {
            TVector sum = accumulate ? TLanes.Load(ref target[c]) : TLanes.Zero;
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < columns; k++) sum = TLanes.Add(sum, TLanes.Load(ref block[r * rowFloats + k * channels + c]));
            TLanes.Store(ref target[c], sum);
        }
        if (rest == 0) return;
        TVector last = accumulate ? TLanes.LoadFirst(ref target[whole], rest) : TLanes.Zero;
        for (int r = 0; r < rows; r++)
            for (int k = 0; k < columns; k++) last = TLanes.Add(last, TLanes.LoadMasked(block + r * rowFloats + k * channels + whole, lastLanes));
        TLanes.StoreFirst(ref target[whole], last, rest);
    }
}
