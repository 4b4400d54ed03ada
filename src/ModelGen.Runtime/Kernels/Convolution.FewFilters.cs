using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

// Conv2D against a few filters (an autoencoder's last layer: 16 channels to one image), where the other paths spend most
// of their time copying: they put filters in the lanes, where one filter leaves 15 of 16 idle, or copy every window into a
// patch row (144 floats for each output of a 3x3 window over 16 channels) for a product one column wide, and the input
// gradient writes a patch row per position to sum it back. Here the forward pass first lays the rows a range reads out
// channel by channel with their zero padding (planes), so at each patch entry consecutive output pixels of a row read
// consecutive floats, one vector load; and the input gradient computes each patch-gradient cell where col2im would read it
// (also for up to 16 filters over a shallow image at stride 1, where that measured faster than the patches).
// Every output keeps the bits of the other paths: the forward chain of fused multiply-adds over the window in patch order,
// plus bias, then ReLU; the input gradient's cells (a chain over the filters) summed in col2im's order.
public static partial class Convolution
{
    /// <summary>Whether a window is convolved with pixels in the lanes (<see cref="SharedRules.ConvolvesPlanar"/>).</summary>
    private static bool IsPlanar(in Window window, int filters) => SharedRules.ConvolvesPlanar(filters, window.StrideWidth, window.PatchSize);

    /// <summary>Output pixels a pass computes at once, a vector of a row each: independent chains that keep the FMA units busy.</summary>
    private const int PlanarTiles = 8;

    /// <summary>This thread's planes (<see cref="Planar{TLanes, TVector}"/>).</summary>
    [ThreadStatic] private static AlignedBuffer? planes;

    /// <summary>
    /// This thread's row of an upsampled image's gradient (<see cref="TransposedPixels{TLanes, TVector}"/>), or of an image
    /// row's channels before it is upsampled (<see cref="LayOut"/>).
    /// </summary>
    [ThreadStatic] private static AlignedBuffer? upsampledRow;

    /// <summary>The planar convolution over a range of output rows, counted over the whole batch.</summary>
    private readonly unsafe struct PlanarRanges(float* input, float* kernel, float* bias, float* output, Window window, Repeats repeats, int filters, bool relu) : IVectorRanges
    {
        public readonly float* Input = input, Kernel = kernel, Bias = bias, Output = output;
        public readonly Window Window = window;
        public readonly Repeats Repeats = repeats;
        public readonly int Filters = filters;
        public readonly bool Relu = relu;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            Planar<TLanes, TVector>(this, first, count);
    }

    /// <summary>
    /// Output rows [first, first + count) over the batch, a sample's part at a time: the rows its windows span laid out as
    /// planes (rows of <c>Max(output width, lanes) + span - 1</c> floats, so a row's last vector never reads past them), then
    /// the output rows' vectors of pixels <see cref="PlanarTiles"/> at a time for each filter. A row's last vector ends at its
    /// last pixel, redoing a few of the one before (the same chains, the same bits).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void Planar<TLanes, TVector>(in PlanarRanges work, int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var window = work.Window;
        int lanes = TLanes.Count, channels = window.Channels, patch = window.PatchSize, filters = work.Filters;
        int outputWidth = window.OutputWidth, rowFloats = Math.Max(outputWidth, lanes) + window.SpanWidth - 1;
        int vectorsPerRow = (outputWidth + lanes - 1) / lanes, stored = Math.Min(outputWidth, lanes);
        using var entryScratch = Scratch<int>.RentUncleared(2 * patch);
        float** tiles = stackalloc float*[PlanarTiles];
        long* pixels = stackalloc long[PlanarTiles];
        float* spread = stackalloc float[lanes];
        fixed (int* entries = entryScratch.Span) // per patch entry: its offset in the planes, then its weight's bits
        {
            for (int row = first, end = first + count; row < end;)
            {
                int sample = row / window.OutputHeight, top = row - sample * window.OutputHeight;
                int bottom = Math.Min(window.OutputHeight, top + end - row);
                int firstRow = top * window.StrideHeight - window.PadTop, rows = (bottom - 1 - top) * window.StrideHeight + window.SpanHeight;
                int planeFloats = rows * rowFloats;
                float* laidOut = LayOut(work.Input + sample * work.Repeats.SampleFloats(window), window, firstRow, rows, rowFloats, work.Repeats);
                for (int ky = 0, p = 0; ky < window.KernelHeight; ky++)
                    for (int kx = 0; kx < window.KernelWidth; kx++)
                        for (int c = 0; c < channels; c++, p++)
                            entries[2 * p] = c * planeFloats + ky * window.Dilation * rowFloats + kx * window.Dilation;

                int vectors = (bottom - top) * vectorsPerRow;
                for (int f = 0; f < filters; f++)
                {
                    for (int p = 0; p < patch; p++) ((float*)entries)[2 * p + 1] = work.Kernel[(long)p * filters + f];
                    for (int next = 0; next < vectors; next += PlanarTiles)
                    {
                        // The last pass repeats its last vector in the tiles it has no vector for (the same chain, stored twice).
                        for (int t = 0; t < PlanarTiles; t++)
                        {
                            int vector = Math.Min(next + t, vectors - 1), oy = top + vector / vectorsPerRow;
                            int ox = Math.Max(0, Math.Min(vector % vectorsPerRow * lanes, outputWidth - lanes));
                            tiles[t] = laidOut + (long)(oy - top) * window.StrideHeight * rowFloats + ox;
                            pixels[t] = (long)(sample * window.OutputHeight + oy) * outputWidth + ox;
                        }
                        PlanarPass<TLanes, TVector>(tiles, entries, patch, filters, work.Bias is null ? null : work.Bias + f,
                            work.Relu, work.Output + f, pixels, stored, spread);
                    }
                }
                row += bottom - top;
            }
        }
    }

    /// <summary>
    /// This thread's planes of image rows [<paramref name="firstRow"/>, <paramref name="firstRow"/> + <paramref name="rows"/>)
    /// (rows above or below the image, and columns left or right of it, zero): channel c's row r, column x (the window
    /// corner's column, the padding's first at 0) at <c>(c · rows + r) · rowFloats + x</c>. An upsampled image
    /// (<paramref name="repeats"/>) is read from the one given: a row that repeats the one above copied from its planes,
    /// another transposed into this thread's row and each of its floats repeated across.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe float* LayOut(float* image, in Window window, int firstRow, int rows, int rowFloats, in Repeats repeats)
    {
        int channels = window.Channels, planeFloats = rows * rowFloats, width = window.Width / repeats.Columns;
        var floats = AlignedBuffer.Ensure(ref planes, channels * planeFloats).Slice(0, channels * planeFloats);
        floats.Clear();
        float* laidOut = (float*)Unsafe.AsPointer(ref floats[0]);
        float* row = repeats.Columns == 1 ? null : (float*)Unsafe.AsPointer(ref AlignedBuffer.Ensure(ref upsampledRow, channels * width)[0]);
        for (int r = Math.Max(0, -firstRow); r < rows && firstRow + r < window.Height; r++)
        {
            int y = firstRow + r;
            float* to = laidOut + r * rowFloats + window.PadLeft;
            if (r > 0 && repeats.RepeatsAbove(y))
            {
                for (int c = 0; c < channels; c++)
                    new ReadOnlySpan<float>(to + c * planeFloats - rowFloats, window.Width).CopyTo(new Span<float>(to + c * planeFloats, window.Width));
                continue;
            }
            float* from = image + (long)(y / repeats.Rows) * width * channels;
            if (row is null)
            {
                Gemm.Transpose(ref *from, channels, ref *to, planeFloats, width, channels);
                continue;
            }
            Gemm.Transpose(ref *from, channels, ref *row, width, width, channels);
            for (int c = 0; c < channels; c++) UpSampling.RepeatEach(row + c * width, to + c * planeFloats, width, repeats.Columns);
        }
        return laidOut;
    }

    /// <summary>
    /// One filter (its weights beside the patch entries' offsets in <paramref name="entries"/>) for the
    /// <see cref="PlanarTiles"/> vectors of pixels whose windows' corners are at <paramref name="tiles"/>: a chain per lane over
    /// the patch, each weight broadcast once for all of them; then bias and ReLU, and the first <paramref name="stored"/>
    /// lanes written to pixels <paramref name="pixels"/> on of <paramref name="output"/> (the filter's column of
    /// <paramref name="filters"/>), through <paramref name="spread"/> (a vector's floats) where the filters are several. An
    /// entry's offset and weight side by side leave the loop one pointer to step, so the eight tiles stay in registers
    /// (with the kernel column and the offsets apart, the JIT kept five of them on the stack and reloaded them every entry).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PlanarPass<TLanes, TVector>(float** tiles, int* entries, int patch, int filters, float* bias, bool relu,
        float* output, long* pixels, int stored, float* spread) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        float* t0 = tiles[0], t1 = tiles[1], t2 = tiles[2], t3 = tiles[3], t4 = tiles[4], t5 = tiles[5], t6 = tiles[6], t7 = tiles[7];
        TVector a0 = TLanes.Zero, a1 = TLanes.Zero, a2 = TLanes.Zero, a3 = TLanes.Zero, a4 = TLanes.Zero, a5 = TLanes.Zero, a6 = TLanes.Zero, a7 = TLanes.Zero;
        int* entry = entries, end = entries + 2 * patch;
        do
        {
            TVector w = TLanes.Broadcast(*(float*)(entry + 1));
            int at = *entry;
            a0 = TLanes.MultiplyAdd(TLanes.Load(ref t0[at]), w, a0);
            a1 = TLanes.MultiplyAdd(TLanes.Load(ref t1[at]), w, a1);
            a2 = TLanes.MultiplyAdd(TLanes.Load(ref t2[at]), w, a2);
            a3 = TLanes.MultiplyAdd(TLanes.Load(ref t3[at]), w, a3);
            a4 = TLanes.MultiplyAdd(TLanes.Load(ref t4[at]), w, a4);
            a5 = TLanes.MultiplyAdd(TLanes.Load(ref t5[at]), w, a5);
            a6 = TLanes.MultiplyAdd(TLanes.Load(ref t6[at]), w, a6);
            a7 = TLanes.MultiplyAdd(TLanes.Load(ref t7[at]), w, a7);
            entry += 2;
        } while (entry < end);
        var store = new PlanarStore<TLanes, TVector>(bias is null ? TLanes.Zero : TLanes.Broadcast(*bias), bias is not null, relu, output, filters, stored, spread);
        store.Store(a0, pixels[0]); store.Store(a1, pixels[1]); store.Store(a2, pixels[2]); store.Store(a3, pixels[3]);
        store.Store(a4, pixels[4]); store.Store(a5, pixels[5]); store.Store(a6, pixels[6]); store.Store(a7, pixels[7]);
    }

    /// <summary>
    /// A vector of one filter's outputs for consecutive pixels: bias added and ReLU taken as <see cref="PixelStore{TLanes, TVector, TFolds}"/>
    /// takes them, then written in place (one filter: adjacent floats) or a float per pixel, <c>filters</c> apart.
    /// </summary>
    private readonly unsafe struct PlanarStore<TLanes, TVector>(TVector bias, bool hasBias, bool relu, float* output, int filters, int stored, float* spread)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(TVector sums, long pixel)
        {
            if (hasBias) sums = TLanes.Add(sums, bias);
            if (relu) sums = TLanes.Relu(sums);
            float* to = output + pixel * filters;
            if (filters == 1)
            {
                WholeOrFirst.Store<TLanes, TVector>(ref *to, sums, stored);
                return;
            }
            TLanes.Store(ref *spread, sums);
            for (int i = 0; i < stored; i++) to[i * filters] = spread[i];
        }
    }

    /// <summary>
    /// Whether the transposed convolution (a Conv2D's input gradient) computes its patch-gradient cells in place
    /// (<see cref="TransposedInPlace"/>): values of a few channels, where each cell is a chain that short; or, where it
    /// does not convolve <paramref name="directly"/>, values of up to as many channels as the image's (and
    /// <see cref="ShiftedValueChannels"/>) at stride 1 over an image of whole 256-bit vectors of up to
    /// <see cref="ShiftedImageChannels"/> channels whose rows' insides fill an eight-pixel block: those go eight pixels at a
    /// time at about the FMA units' peak, where the product of the patches and col2im's sums of them took longer.
    /// </summary>
    private static bool TransposesInPlace(in Window window, int valueChannels, bool directly) => !window.IsPointwise &&
        (valueChannels <= SharedRules.FewFilters
         || !directly && valueChannels <= Math.Min(window.Channels, ShiftedValueChannels) && window.Channels % Vector256<float>.Count == 0
            && window.Channels <= ShiftedImageChannels
            && window.StrideWidth == 1 && window.OutputWidth - (window.KernelWidth - 1) * window.Dilation >= 8);

    /// <summary>
    /// The most value channels, and image channels, <see cref="TransposesInPlace"/> takes beyond a few: where it measured
    /// faster than the patches (batch 128, two cores, AVX-512, medians of three in turns: 14x14x16 from 8 value channels
    /// 0.69 -> 0.35 ms, from 16 0.98 -> 0.61; 28x28x16 from 16 4.40 -> 2.42; 28x28x32 from 16 7.12 -> 5.09; 14x14x8 from 8
    /// 0.42 -> 0.31). Slower: 14x14x8 from 16, 64 image channels, and on AVX2 16 and 32 channels in rows of 7.
    /// </summary>
    private const int ShiftedValueChannels = 16, ShiftedImageChannels = 32;

    /// <summary>
    /// <see cref="Transposed"/> for the values <see cref="TransposesInPlace"/> takes: each image pixel, a vector of
    /// channels at a time, sums the patch-gradient cells that read it, in <see cref="Col2Im"/>'s order, each cell computed as the product
    /// values · kernelᵀ computes it (a chain of fused multiply-adds over the value channels from zero), so the bits are
    /// those of the product and col2im; no patch is written. The image rows of the batch are shared by both cores.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void TransposedInPlace(ReadOnlySpan<float> values, ReadOnlySpan<float> kernel, Span<float> image, in Window window, int valueChannels, int batch, bool accumulate,
        in Repeats upsampled)
    {
        int height = window.Height, width = window.Width, taps = window.KernelHeight * window.KernelWidth;
        int rowPairs = height * window.KernelHeight, columnPairs = width * window.KernelWidth;
        using var cells = Scratch<int>.Rent(2 * (rowPairs + columnPairs) + height + 2 * width + 2);
        var scratch = cells.Span;
        var rowStart = scratch.Slice(0, height + 1);
        var columnStart = scratch.Slice(height + 1, width + 1);
        var rowPositions = scratch.Slice(height + width + 2, rowPairs);
        var rowTaps = scratch.Slice(height + width + 2 + rowPairs, rowPairs);
        var columnPositions = scratch.Slice(height + width + 2 + 2 * rowPairs, columnPairs);
        var columnTaps = scratch.Slice(height + width + 2 + 2 * rowPairs + columnPairs, columnPairs);
        var runEnd = scratch.Slice(height + width + 2 + 2 * (rowPairs + columnPairs), width);
        // Each axis's (output, kernel) pairs twice, in the same order: as output positions and as taps.
        CellsReading(height, window.KernelHeight, window.StrideHeight, window.PadTop, window.Dilation, window.OutputHeight, window.OutputWidth, 0, rowStart, rowPositions);
        CellsReading(height, window.KernelHeight, window.StrideHeight, window.PadTop, window.Dilation, window.OutputHeight, 0, window.KernelWidth, rowStart, rowTaps);
        CellsReading(width, window.KernelWidth, window.StrideWidth, window.PadLeft, window.Dilation, window.OutputWidth, 1, 0, columnStart, columnPositions);
        CellsReading(width, window.KernelWidth, window.StrideWidth, window.PadLeft, window.Dilation, window.OutputWidth, 0, 1, columnStart, columnTaps);
        ShiftedRuns(columnStart, columnPositions, columnTaps, runEnd, width);
        // Each value channel's kernel column as a row, so a cell's channels are adjacent.
        using var columns = Scratch<float>.RentUncleared(valueChannels > 1 ? window.PatchSize * valueChannels : 0);
        if (valueChannels > 1) Gemm.Transpose(kernel, columns.Span, window.PatchSize, valueChannels);
        fixed (float* v = values, k = valueChannels > 1 ? columns.Span : kernel, x = image)
        fixed (int* rowsAt = rowStart, rowPositionsAt = rowPositions, rowTapsAt = rowTaps, columnsAt = columnStart, columnPositionsAt = columnPositions, columnTapsAt = columnTaps, runsAt = runEnd)
        {
            var pairs = new CellPairs(rowsAt, rowPositionsAt, rowTapsAt, columnsAt, columnPositionsAt, columnTapsAt, runsAt);
            var work = new TransposedRows(v, k, x, pairs, window, valueChannels, accumulate, upsampled);
            Helper.ForRanges(ref work, batch * height / upsampled.Rows, (long)upsampled.Rows * width * (window.Channels + taps * valueChannels), Helper.SpatialShareAbove);
        }
    }

    /// <summary>
    /// The patch-gradient cells each image pixel reads, along each axis: image row y's (output row, kernel row) pairs are
    /// [RowStart[y], RowStart[y + 1]), held twice in the same order, as the output row's first position and as the kernel
    /// row's first tap; the same per image column. A pixel's cells are its row's pairs times its column's.
    /// </summary>
    private readonly unsafe struct CellPairs(int* rowStart, int* rowPositions, int* rowTaps, int* columnStart, int* columnPositions, int* columnTaps, int* runEnd)
    {
        public readonly int* RowStart = rowStart, RowPositions = rowPositions, RowTaps = rowTaps;
        public readonly int* ColumnStart = columnStart, ColumnPositions = columnPositions, ColumnTaps = columnTaps;
        /// <summary>For the first column of each run (<see cref="ShiftedRuns"/>), where the run ends.</summary>
        public readonly int* RunEnd = runEnd;
    }

    /// <summary>
    /// Splits the image columns into runs, left to right, in which each column's cells are the run's first column's moved by
    /// one output column per column (the same taps in the same order: a stride-1 row's inside), and leaves each run's end
    /// at its first column in <paramref name="runEnd"/>.
    /// </summary>
    private static void ShiftedRuns(ReadOnlySpan<int> start, ReadOnlySpan<int> positions, ReadOnlySpan<int> taps, Span<int> runEnd, int width)
    {
        for (int x = 0; x < width;)
        {
            int cells = start[x + 1] - start[x], end = x + 1;
            for (; end < width && start[end + 1] - start[end] == cells; end++)
            {
                int j = 0;
                while (j < cells && taps[start[end] + j] == taps[start[x] + j] && positions[start[end] + j] == positions[start[x] + j] + (end - x)) j++;
                if (j < cells) break;
            }
            runEnd[x] = end;
            x = end;
        }
    }

    /// <summary>
    /// <see cref="TransposedInPlace"/> over a range of image rows, counted over the whole batch; where the image is an
    /// UpSampling2D's output (<see cref="Upsampled"/>: its blocks), over a range of its input's rows, each the rows of its blocks.
    /// </summary>
    private readonly unsafe struct TransposedRows(float* values, float* kernelRows, float* image, CellPairs pairs, Window window, int valueChannels, bool accumulate,
        Repeats upsampled) : IVectorRanges
    {
        public readonly float* Values = values, KernelRows = kernelRows, Image = image;
        public readonly CellPairs Pairs = pairs;
        public readonly Window Window = window;
        public readonly int ValueChannels = valueChannels;
        public readonly Repeats Upsampled = upsampled;
        public readonly bool Accumulate = accumulate;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count, wholeVectorsOf: Window.Channels);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            TransposedPixels<TLanes, TVector>(this, first, count);
    }

    /// <summary>
    /// Image rows [first, first + count) of <see cref="TransposedInPlace"/>, each pixel a vector of channels at a time: its
    /// row's pairs times its column's, each cell the chain over the value channels of their values times the taps' kernel rows.
    /// One pixel at a time spends most of its instructions on each cell's indices and addresses (~6 cycles a cell of one
    /// value channel); a run of columns whose cells are shifted alike (<see cref="ShiftedRuns"/>: a stride-1 row's inside)
    /// goes eight pixels at a time (<see cref="CellsOfEightPixels"/>, ~3), their eight sums side by side, each cell's
    /// indices and kernel rows read once for the eight (four, where at most four are left and a cell's chain is longer
    /// than one). Each pixel still adds the same cells in the same order, so the bits are the same. Other columns (the
    /// edges, and channels that are no whole vectors) go one by one. Where the image is an UpSampling2D's output, each of its
    /// rows is computed into this thread's row (<see cref="upsampledRow"/>, in a core's L1) and summed into its input's
    /// gradient there (<see cref="UpSampling.SumRow"/>): the upsampled gradient is never written out and read back.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void TransposedPixels<TLanes, TVector>(in TransposedRows work, int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var window = work.Window;
        int height = window.Height, width = window.Width, channels = window.Channels, lanes = TLanes.Count;
        int valueChannels = work.ValueChannels, patch = window.PatchSize, positions = window.Positions;
        int* rowStart = work.Pairs.RowStart, rowPositions = work.Pairs.RowPositions, rowTaps = work.Pairs.RowTaps;
        int* columnStart = work.Pairs.ColumnStart, columnPositions = work.Pairs.ColumnPositions, columnTaps = work.Pairs.ColumnTaps, runEnd = work.Pairs.RunEnd;
        float* allValues = work.Values, kernelRows = work.KernelRows, image = work.Image;
        // Upsampled, the pixels are written into the thread's row, and the row's blocks add to the image (or write it) after.
        bool upsampled = work.Upsampled.Any, accumulate = work.Accumulate && !upsampled, wholeVectors = channels % lanes == 0;
        int blockRows = work.Upsampled.Rows, blockColumns = work.Upsampled.Columns, inputWidth = width / blockColumns;
        float* rowSums = upsampled ? (float*)Unsafe.AsPointer(ref AlignedBuffer.Ensure(ref upsampledRow, width * channels)[0]) : null;
        for (int row = first * blockRows; row < (first + count) * blockRows; row++)
        {
            int sample = row / height, y = row - sample * height;
            float* values = allValues + (long)sample * positions * valueChannels;
            int rowsFrom = rowStart[y], rowsTo = rowStart[y + 1];
            for (int x = 0, end = 0; x < width; x++)
            {
                float* target = upsampled ? rowSums + x * channels : image + ((long)row * width + x) * channels;
                int columnsFrom = columnStart[x], columnsTo = columnStart[x + 1];
                if (x == end)
                {
                    end = runEnd[x];
                    if (wholeVectors && end - x >= 4)
                    {
                        var cells = new CellRange(values, kernelRows, rowPositions + rowsFrom, rowTaps + rowsFrom, rowsTo - rowsFrom,
                            columnPositions + columnsFrom, columnTaps + columnsFrom, columnsTo - columnsFrom, valueChannels, channels, patch);
                        for (int from = x; from < end; from += 8)
                            for (int c = 0; c < channels; c += lanes)
                            {
                                int offset = (from - x) * valueChannels, pixels = Math.Min(8, end - from);
                                float* to = target + (from - x) * channels + c;
                                // A last block of at most four pixels computes four chains (one value channel: no gain measured).
                                if (valueChannels == 1) CellsOfEightPixels<TLanes, TVector, Yes, No>(cells, offset, to, c, pixels, accumulate);
                                else if (pixels > 4) CellsOfEightPixels<TLanes, TVector, No, No>(cells, offset, to, c, pixels, accumulate);
                                else CellsOfEightPixels<TLanes, TVector, No, Yes>(cells, offset, to, c, pixels, accumulate);
                            }
                        x = end - 1;
                        continue;
                    }
                }
                for (int c = 0; c < channels; c += lanes)
                {
                    int stored = Math.Min(lanes, channels - c);
                    bool whole = stored == lanes;
                    TVector sum = !accumulate ? TLanes.Zero : whole ? TLanes.Load(ref target[c]) : TLanes.LoadFirst(ref target[c], stored);
                    TVector lanesRead = TLanes.FirstLanes(stored);
                    for (int r = rowsFrom; r < rowsTo; r++)
                    {
                        float* rowValues = values + rowPositions[r] * valueChannels, rowWeights = kernelRows + rowTaps[r] * channels + c;
                        for (int s = columnsFrom; s < columnsTo; s++)
                        {
                            float* value = rowValues + columnPositions[s] * valueChannels, tap = rowWeights + columnTaps[s] * channels;
                            TVector cell = TLanes.Zero;
                            for (int f = 0; f < valueChannels; f++, tap += patch)
                                cell = TLanes.MultiplyAdd(TLanes.Broadcast(value[f]), whole ? TLanes.Load(ref *tap) : TLanes.LoadMasked(tap, lanesRead), cell);
                            sum = TLanes.Add(sum, cell);
                        }
                    }
                    if (whole) TLanes.Store(ref target[c], sum);
                    else TLanes.StoreFirst(ref target[c], sum, stored);
                }
            }
            // A block's first row writes its input pixels' gradients (or adds to them), its later rows add.
            if (upsampled)
                UpSampling.SumRow<TLanes, TVector>(rowSums, image + (long)(row / blockRows) * inputWidth * channels, inputWidth, channels, blockColumns,
                    work.Accumulate || row % blockRows > 0);
        }
    }

    /// <summary>The cells a run's first pixel reads (its row's pairs times its column's), with what they are read from.</summary>
    private readonly unsafe struct CellRange(float* values, float* kernelRows, int* rowPositions, int* rowTaps, int rows,
        int* columnPositions, int* columnTaps, int columns, int valueChannels, int channels, int patch)
    {
        public readonly float* Values = values, KernelRows = kernelRows;
        public readonly int* RowPositions = rowPositions, RowTaps = rowTaps, ColumnPositions = columnPositions, ColumnTaps = columnTaps;
        public readonly int Rows = rows, Columns = columns, ValueChannels = valueChannels, Channels = channels, Patch = patch;
    }

    /// <summary>
    /// A vector of channels (from <paramref name="c"/>) of up to eight pixels side by side in a shifted run, pixel p's cells
    /// those of the run's first pixel moved by <paramref name="offset"/> + p·valueChannels values: each cell the chain over the
    /// value channels from zero, added to its pixel's sum in the cells' order (from zero, or the image where
    /// <paramref name="accumulate"/>). Past <paramref name="pixels"/>, the lanes repeat the last pixel and are not stored.
    /// <typeparamref name="TOneValue"/>: one value channel, each cell one product (the autoencoder's last layer);
    /// <typeparamref name="TFourPixels"/>: at most four pixels, the other four chains not computed (a row's last block).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void CellsOfEightPixels<TLanes, TVector, TOneValue, TFourPixels>(in CellRange cells, int offset, float* target, int c, int pixels, bool accumulate)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOneValue : IFlag where TFourPixels : IFlag
    {
        // One value channel: the multiplications by it folded away. The cells' indices and the pixels' offsets are read into
        // locals as native integers, where fields read through the reference and ints widened at every cell cost more
        // instructions than the cell's sixteen vector operations.
        int valueChannels = TOneValue.IsSet ? 1 : cells.ValueChannels, channels = cells.Channels, patch = cells.Patch, last = pixels - 1;
        nint o1 = Math.Min(1, last) * valueChannels, o2 = Math.Min(2, last) * valueChannels, o3 = Math.Min(3, last) * valueChannels;
        nint o4 = Math.Min(4, last) * valueChannels, o5 = Math.Min(5, last) * valueChannels, o6 = Math.Min(6, last) * valueChannels, o7 = Math.Min(7, last) * valueChannels;
        int* rowPositions = cells.RowPositions, rowTaps = cells.RowTaps, columnPositions = cells.ColumnPositions, columnTaps = cells.ColumnTaps;
        int rows = cells.Rows, columns = cells.Columns;
        float* values = cells.Values + offset, kernelRows = cells.KernelRows + c;
        TVector s0 = TLanes.Zero, s1 = TLanes.Zero, s2 = TLanes.Zero, s3 = TLanes.Zero, s4 = TLanes.Zero, s5 = TLanes.Zero, s6 = TLanes.Zero, s7 = TLanes.Zero;
        if (accumulate)
        {
            s0 = TLanes.Load(ref *target);
            if (pixels > 1) s1 = TLanes.Load(ref target[channels]);
            if (pixels > 2) s2 = TLanes.Load(ref target[2 * channels]);
            if (pixels > 3) s3 = TLanes.Load(ref target[3 * channels]);
            if (pixels > 4) s4 = TLanes.Load(ref target[4 * channels]);
            if (pixels > 5) s5 = TLanes.Load(ref target[5 * channels]);
            if (pixels > 6) s6 = TLanes.Load(ref target[6 * channels]);
            if (pixels > 7) s7 = TLanes.Load(ref target[7 * channels]);
        }
        for (int r = 0; r < rows; r++)
        {
            float* rowValues = values + (nint)rowPositions[r] * valueChannels, rowWeights = kernelRows + (nint)rowTaps[r] * channels;
            for (int s = 0; s < columns; s++)
            {
                float* v = rowValues + (nint)columnPositions[s] * valueChannels, w = rowWeights + (nint)columnTaps[s] * channels;
                TVector k = TLanes.Load(ref *w);
                TVector c0 = TLanes.MultiplyAdd(TLanes.Broadcast(v[0]), k, TLanes.Zero), c1 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o1]), k, TLanes.Zero);
                TVector c2 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o2]), k, TLanes.Zero), c3 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o3]), k, TLanes.Zero);
                TVector c4 = TLanes.Zero, c5 = TLanes.Zero, c6 = TLanes.Zero, c7 = TLanes.Zero;
                if (!TFourPixels.IsSet)
                {
                    c4 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o4]), k, TLanes.Zero); c5 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o5]), k, TLanes.Zero);
                    c6 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o6]), k, TLanes.Zero); c7 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o7]), k, TLanes.Zero);
                }
                for (int f = 1; !TOneValue.IsSet && f < valueChannels; f++)
                {
                    k = TLanes.Load(ref w[f * patch]);
                    c0 = TLanes.MultiplyAdd(TLanes.Broadcast(v[f]), k, c0); c1 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o1 + f]), k, c1);
                    c2 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o2 + f]), k, c2); c3 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o3 + f]), k, c3);
                    if (TFourPixels.IsSet) continue;
                    c4 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o4 + f]), k, c4); c5 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o5 + f]), k, c5);
                    c6 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o6 + f]), k, c6); c7 = TLanes.MultiplyAdd(TLanes.Broadcast(v[o7 + f]), k, c7);
                }
                s0 = TLanes.Add(s0, c0); s1 = TLanes.Add(s1, c1); s2 = TLanes.Add(s2, c2); s3 = TLanes.Add(s3, c3);
                if (TFourPixels.IsSet) continue;
                s4 = TLanes.Add(s4, c4); s5 = TLanes.Add(s5, c5); s6 = TLanes.Add(s6, c6); s7 = TLanes.Add(s7, c7);
            }
        }
        TLanes.Store(ref *target, s0);
        if (pixels > 1) TLanes.Store(ref target[channels], s1);
        if (pixels > 2) TLanes.Store(ref target[2 * channels], s2);
        if (pixels > 3) TLanes.Store(ref target[3 * channels], s3);
        if (pixels > 4) TLanes.Store(ref target[4 * channels], s4);
        if (pixels > 5) TLanes.Store(ref target[5 * channels], s5);
        if (pixels > 6) TLanes.Store(ref target[6 * channels], s6);
        if (pixels > 7) TLanes.Store(ref target[7 * channels], s7);
    }
}
