using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>How a product is cut into parts that both cores claim: by depth, by streamed columns, or by columns or rows of C.</summary>
public static partial class Gemm
{
    /// <summary>
    /// A product far deeper than it is tall or wide: a weight gradient summed over thousands of positions (a convolution's
    /// 288x7744x64 and 9x43264x32). Cut into rows or columns, each core would read all of the deep operands; cut along the
    /// depth, each reads its share and writes a small partial C. Only where nothing but a sum follows (no bias, no ReLU).
    /// </summary>
    private static bool IsDeep(int m, int k, int n, in Epilogue epilogue) =>
        epilogue.Bias.IsEmpty && !epilogue.Relu && k >= 8 * Math.Max(m, n) && k >= 2 * DepthPart;

    /// <summary>Depth of one part of a deep product, at least: enough work to be worth a hand-off and a partial C.</summary>
    private const int DepthPart = 1024;

    /// <summary>The calling thread's partial sums of a depth split or of a pair of layers (Gemm.Twice.cs); neither runs inside the other.</summary>
    [ThreadStatic] private static AlignedBuffer? partialSums;

    /// <summary>
    /// Computes a deep product as partial products over slices of the depth, which both cores claim, then adds the partials
    /// into C in slice order. The slices depend only on the shape, so the sum is the same bit for bit on any thread count.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void RunInDepthParts<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int parts = DepthParts(k), size = m * n;
        int depth = (k + parts - 1) / parts;
        var partials = AlignedBuffer.Ensure(ref partialSums, parts * size);
        fixed (float* pa = a.Data, pb = b.Data, pp = partials)
        {
            var job = new Job(new PinnedMatrix(pa, a), new PinnedMatrix(pb, b), pp, default, default, blocks: null, depth, m, k, n);
            Helper.For(parts, &RunDepthPart<TLanes, TVector>, in job);
        }
        AddParts(c.Slice(0, size), partials, parts, epilogue.Accumulate);
    }

    /// <summary>C = the first of <paramref name="parts"/> partial sums (added to C when <paramref name="accumulate"/>), then each next one added, in order.</summary>
    internal static void AddParts(Span<float> c, ReadOnlySpan<float> partials, int parts, bool accumulate)
    {
        int size = c.Length;
        if (accumulate) System.Numerics.Tensors.TensorPrimitives.Add(c, partials.Slice(0, size), c);
        else partials.Slice(0, size).CopyTo(c);
        for (int part = 1; part < parts; part++) System.Numerics.Tensors.TensorPrimitives.Add(c, partials.Slice(part * size, size), c);
    }

    /// <summary>Slices of a deep product's depth: an even count, so two cores can split it evenly.</summary>
    private static int DepthParts(int k) => Math.Min(8, k / DepthPart) & ~1;

    /// <summary>
    /// How <see cref="MultiplyTransposedA"/> sums each output over its depth for a product at least
    /// <see cref="StreamingRows"/> rows tall and at most four columns wide (a kernel gradient over patch rows against a few
    /// filters: A read where it lies, in blocks of <see cref="StreamingDepthBlock"/>): <see cref="DepthOrder.Parts"/> slices of <see cref="DepthOrder.PartDepth"/> (the
    /// last one shorter), each block of a slice a chain of fused multiply-adds from zero, the blocks added in order, the
    /// slices added in order after C (when accumulating); a single slice adds its blocks straight into C. A kernel that keeps
    /// this order computes the product's bits without A (Convolution.KernelGradient, from the image the patches copy).
    /// </summary>
    internal static DepthOrder DepthOrderOfTransposedA(int m, int k, int n)
    {
        if (m < StreamingRows || n > 4) throw new ArgumentException($"The depth order is kept for at least {StreamingRows} rows and at most 4 columns, not {m}x{n}.");
        // Run's choice for such shapes: none shares few rows (one tile wide), so parts come from the work alone.
        int parts = (long)m * k * n >= ParallelWork && IsDeep(m, k, n, default) ? DepthParts(k) : 1;
        return new DepthOrder(parts, (k + parts - 1) / parts, StreamingDepthBlock);
    }

    /// <summary>The order of a deep product's sums: <see cref="DepthOrderOfTransposedA"/>.</summary>
    internal readonly record struct DepthOrder(int Parts, int PartDepth, int BlockDepth);

    /// <summary>Part <paramref name="index"/>: A's columns and B's rows [index·depth, +depth) into the part's own partial C (the job's C).</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void RunDepthPart<TLanes, TVector>(void* state, int index, int worker)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly Job job = ref *(Job*)state;
        int first = index * job.PartSize, depth = Math.Min(job.PartSize, job.K - first), size = job.M * job.N;
        var partial = new Span<float>(job.C + (long)index * size, size);
        Packed<TLanes, TVector>(job.A.From(first * job.A.ColumnStride), job.B.From(first * job.B.RowStride), partial, job.M, depth, job.N, job.N,
            new Epilogue(default, false, false), RowClaim.All(job.M));
    }

    /// <summary>
    /// Multiply-adds from which a few rows streamed against B (batch-1 inference) are shared by both cores, each taking its
    /// own slices of B's columns: each core then streams half the weights, from its own cache when they stay there between
    /// calls (the MLP's 784x256 layer at batch 1: 11.5 -> 7.7 us; the CNN's 1600x128 dense layer: 10.8 -> 8.1 us). Each column's
    /// sum is computed the same way in any slice, so on one thread the product is simply not sliced. Where both cores gain
    /// (one core against two, medians of 21 windows of 5 ms, weights in cache): 1x128x128 0.67 against 0.64-0.77 us, none;
    /// 2x128x128 0.73 against 0.71-0.75, none; 1x128x256 1.25 -> 0.92; 4x64x128 0.79 -> 0.72; 1x256x256 2.38 -> 1.53;
    /// 4x128x128 1.42 -> 1.03 (from 100,000 before, so the width-256 MLP at batch 1 ran on one core: 5.2-6.0 -> 3.3-4.2 us).
    /// </summary>
    private const long StreamingParallelWork = 32_768;

    /// <summary>
    /// Vectors ("slots", Gemm.Streaming.cs) per streamed slice: the streaming loop's eight where that still makes two slices,
    /// else four (the CNN's 1600x128 dense layer), which it still runs as four independent chains.
    /// </summary>
    private static int StreamingSlots(int slots) => slots >= 16 ? 8 : 4;

    /// <summary>Whether a streamed row of <paramref name="n"/> columns makes at least two slices.</summary>
    private static bool IsSliceable(int n, int width)
    {
        int slots = StreamSlots(n, width);
        return slots >= 2 * StreamingSlots(slots);
    }

    [MethodImpl(Compiled.Driver)]
    private static unsafe void StreamInParts<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int slots = StreamSlots(n, TLanes.Count), slice = StreamingSlots(slots);
        fixed (float* pa = a.Data, pb = b.Data, pc = c, pbias = epilogue.Bias)
        {
            var job = new Job(new PinnedMatrix(pa, a), new PinnedMatrix(pb, b), pc, pbias, epilogue, blocks: null, slice, m, k, n);
            Helper.For((slots + slice - 1) / slice, &StreamSlice<TLanes, TVector>, in job);
        }
    }

    /// <summary>One slice of a streamed product: every row's slots [index·slice, +slice).</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void StreamSlice<TLanes, TVector>(void* state, int index, int worker)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly Job job = ref *(Job*)state;
        int slots = StreamSlots(job.N, TLanes.Count), first = index * job.PartSize;
        var a = job.A.From();
        var b = job.B.Columns(0);
        var epilogue = job.EpilogueFrom(0);
        var c = job.Output;
        StreamRows<TLanes, TVector>(a, 0, job.M, b, c, job.N, job.K, job.N, epilogue, first, Math.Min(job.PartSize, slots - first));
    }

    /// <summary>
    /// Floats of A (16 MB) from which a wide product goes by blocks of rows, not slices of columns. Each slice reads all of A;
    /// from this size on no core's share of L3 keeps A between slices, and blocks of rows pack it once per 2048 columns
    /// instead. Interleaved on an AMD EPYC (Zen 3, 32 MB of L3 shared with other guests): 2048^3 on one core 311 -> 271 ms,
    /// on two 164 -> 148 ms; at 16 MB and 1024 columns (2048x2048x1024, 4096x1024x1024) within 4% either way; at 8 MB
    /// (1024x2048x1024) 9% faster on one core but 4% slower on two, where each core packs all of B.
    /// </summary>
    private const long LargeA = 1 << 22;

    /// <summary>Whether <see cref="RunInParts"/> cuts a product into slices of columns: at least four tiles wide, wide for its height, A not too large.</summary>
    private static bool SlicesByColumns(int m, int k, int n, int tileColumns)
    {
        int tilesWide = (n + tileColumns - 1) / tileColumns, tilesTall = (m + RowsPerTile - 1) / RowsPerTile;
        return tilesWide >= 4 && tilesWide * 4 >= tilesTall && (long)m * k < LargeA;
    }

    /// <summary>
    /// Cuts a product into parts that this thread and the helper claim from opposite ends until none remain, so a late or
    /// slow helper costs at most one part, and a busy one none: this thread then runs every part itself. The parts depend
    /// only on the shape, so the result is the same bit for bit however many threads took part. A wide product is cut into
    /// slices of columns, each with its own slice of B to pack (a dense layer's batch of 128 rows against 256 or 784
    /// columns); a narrow one, or one whose A is too large to read once per slice, into blocks of rows, for which both
    /// threads pack all of B (a convolution's thousands of patches against 64 filters).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void RunInParts<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int tileColumns = 2 * TLanes.Count;
        int tilesWide = (n + tileColumns - 1) / tileColumns;
        bool byColumns = SlicesByColumns(m, k, n, tileColumns);
        // Slices of columns as wide as A can still be streamed for: wider slices re-read A fewer times (128x784x256 on two
        // cores: 330 us in slices of one tile, 293 in two, 273 in four). Even where A outgrows L2, four tiles won: 128x2048x2048
        // on the Zen 3 (A 1 MB) 7.1-7.4 ms on two cores, 7.4-9.1 in slices of 8 to 64 tiles, which pack A instead.
        if (!byColumns)
        {
            RunInRowBlocks<TLanes, TVector>(a, b, c, m, k, n, epilogue, default, shared: true);
            return;
        }
        var rowsOfA = ApartInL1<TLanes, TVector>(a, m, k);
        int partSize = Math.Min(StreamingColumnTiles, Math.Max(1, tilesWide / 2)) * tileColumns;
        // The panel of the slice that copies the most of B: a whole one, or the last, whose partial tile is copied even where
        // the whole ones read B in place (a few rows). Slices in between are whole ones.
        int lastColumns = n - (n - 1) / partSize * partSize;
        int panel = Math.Max(HowBIsRead<TLanes, TVector>(a, b, m, k, Math.Min(partSize, n)).PanelFloats, HowBIsRead<TLanes, TVector>(a, b, m, k, lastColumns).PanelFloats);
        fixed (float* pa = rowsOfA.Data, pb = b.Data, pc = c, pbias = epilogue.Bias)
        {
            var job = new Job(new PinnedMatrix(pa, rowsOfA), new PinnedMatrix(pb, b), pc, pbias, epilogue, blocks: null, partSize, m, k, n, panelFloats: panel);
            Helper.For((n + partSize - 1) / partSize, &RunColumnSlice<TLanes, TVector>, in job);
        }
    }

    /// <summary>Bytes after which addresses fall in the same set of L1 again: its sets times its line (64 x 64 bytes on x64 cores).</summary>
    private const int L1SetPeriod = 4096;

    /// <summary>This thread's copy of an A whose rows were a multiple of 4 KB apart (<see cref="ApartInL1"/>).</summary>
    [ThreadStatic] private static AlignedBuffer? spreadRows;

    /// <summary>
    /// A as the slices of columns read it in place, twelve rows a tile on AVX-512. Rows a multiple of 4 KB apart (a dense
    /// layer of 1024 or 2048 inputs) fall in one set of L1 (64 sets of 64-byte lines), which holds eight lines on a Zen 4,
    /// so a tile's twelve rows evict each other on every step: on one core of a Zen 4, 128x1024x1024 took 2,710 us where
    /// 128x1000x1024 took 2,400. Such an A is copied once, each row a line further on, and every slice reads the copy: the
    /// same multiply-adds in the same order, 2,410-2,460 us (128x2048x2048: 10.84 -> 9.75 ms). Six-row tiles (AVX2) fit in
    /// a set: there the same two shapes were 2% apart.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static Matrix ApartInL1<TLanes, TVector>(in Matrix a, int m, int k) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (TLanes.Count < 16 || m < TallRows || a.ColumnStride != 1 || a.RowStride * sizeof(float) % L1SetPeriod != 0) return a;
        int stride = a.RowStride + AlignedBuffer.LineFloats;
        var copy = AlignedBuffer.Ensure(ref spreadRows, m * stride);
        for (int i = 0; i < m; i++) a.Data.Slice(i * a.RowStride, k).CopyTo(copy.Slice(i * stride, k));
        return new Matrix(copy.Slice(0, m * stride), stride, 1);
    }

    /// <summary>
    /// Blocks of rows claimed from both ends, by both cores when <paramref name="shared"/> (about eight blocks, so a late
    /// helper still gets some), else by this thread alone, a cache block at a time, so produced rows are multiplied while
    /// they are still in L2. The blocks depend only on the shape, never on how many threads took part.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void RunInRowBlocks<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue,
        RowProducer rows, bool shared)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        // Whole tiles of a packed A per block (AVX-512's are twelve rows: a block of 246 would end in a half-empty one), the
        // tiles dealt out as evenly as whole tiles allow. Shared, an even count of blocks, eight or more, so the two ends meet
        // in the middle: blocks of one size and a short last one finished unevenly (2048^3 on two cores of a Zen 5 in eight
        // blocks of 252 rows and one of 32, the helper's 1,040 rows against 1,008: 38.2 ms; in eight blocks of 21 or 22
        // tiles, 37.5 ms, medians of eight fresh processes in turns). On the Intel Xeon the two cores end 2048^3's 22 blocks
        // 0.1-0.6 ms apart (medians over 207 calls of 45-54 ms), and blocks halved three times toward the middle gained nothing.
        bool packsA = !ReadsAInPlace<TLanes, TVector>(a, m, k, n);
        int rowBlock = packsA ? PackedRowBlock : RowBlock, tileRows = packsA && TLanes.Count == 16 ? TallRows : RowsPerTile;
        int tiles = (m + tileRows - 1) / tileRows, tilesPerBlock = rowBlock / tileRows;
        int cacheBlocks = (tiles + tilesPerBlock - 1) / tilesPerBlock;
        int count = shared ? Math.Min(tiles, Math.Max(8, (cacheBlocks + 1) / 2 * 2)) : cacheBlocks; // shared: a tile each where fewer than eight
        var blocks = new Claims(count);
        var panels = shared && packsA && rows.IsNone ? PackedShared<TLanes, TVector>(a, b, m, k, n) : b.Panels;
        fixed (float* pa = a.Data, pb = b.Data, pc = c, pbias = epilogue.Bias)
        {
            var job = new Job(new PinnedMatrix(pa, a), new PinnedMatrix(pb, new Matrix(b.Data, b.RowStride, b.ColumnStride, panels)), pc, pbias, epilogue, &blocks, tileRows, m, k, n, rows);
            if (!shared || !Helper.TryShare(&RunRowBlocks<TLanes, TVector>, &job)) RunRowBlocks<TLanes, TVector>(&job, 0);
        }
    }

    /// <summary>
    /// Floats of B's panels from which blocks of rows of a packed A read one copy of B that both cores packed, not a copy
    /// each: each thread would otherwise pack all of B (2048^3: 16 MB, 7 ms a core).
    /// </summary>
    private const int SharedPanelFloats = 1 << 18;

    /// <summary>
    /// Whether panels of <paramref name="floats"/> (16 MB and more) outgrow the caches: beside an A and a B as large
    /// they do not stay in L3 from their packing to their reading, nor from one call to the next. So shared panels are
    /// written past the caches (<see cref="PackedShared"/>: stores that go through them first read every line they
    /// write; 2048^3 on two cores of a Zen 5, fresh processes in turns: 36.7 -> 35.8 and 35.4 -> 35.0 ms, four and six
    /// rounds; with 8 MB of panels, 4096x1024x2048, and 4 MB, 1024^3 and 2048x1024x1024, within 0.5% either way; on the
    /// Intel Xeon, 260 MB of L3, plain stores packed 2048^3's panels in 0.94 ms against 1.05, the calls within the
    /// noise), and panels packed ahead are fetched once a call and prefetched (<see cref="Packed"/>'s <c>fetchesB</c>,
    /// <see cref="FetchingB{TRows}"/>).
    /// </summary>
    private static bool OutgrowCaches(int floats) => floats >= 1 << 22;

    /// <summary>The panels of B that this thread's shared blocks of rows read (<see cref="PackedShared"/>).</summary>
    [ThreadStatic] private static AlignedBuffer? sharedPanels;

    /// <summary>
    /// Where blocks of rows would each pack a large B of their own: B packed once, by both cores, into this thread's
    /// <see cref="sharedPanels"/>, which the blocks read as panels packed ahead (<see cref="PackedMatrix"/>): the same
    /// product bit for bit. Otherwise B's own panels, if it has any. The packing is the call's one pass bound by memory, not
    /// by multiply-adds: 2048^3 on two cores of the Intel Xeon took 51.8-52.7 ms against B packed before the call, 53.5-54.1
    /// packing it (three rounds in turns). Hiding it behind the multiply-adds did not pay there: each core packing each tile
    /// of B as its first block's first row tile read it, the row tiles before fetching the next tile's rows into L2, ran
    /// 54.5-56.4 ms against 51.9-54.4 (a tile's 2048 rows lie on as many pages, each a page-table walk); nor did a faster
    /// pack (<see cref="PackedColumnParts"/>, <see cref="SourcePrefetchSteps"/>).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe PackedPanels PackedShared<TLanes, TVector>(in Matrix a, in Matrix b, int m, int k, int n)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var reading = HowBIsRead<TLanes, TVector>(a, b, m, k, n);
        if (reading.Prepacked || reading.PanelFloats < SharedPanelFloats || Helper.Threads < 2) return b.Panels;
        int tileColumns = TileColumns<TLanes, TVector>(n);
        int floats = PanelFloats(k, n, tileColumns);
        var panels = AlignedBuffer.Ensure(ref sharedPanels, floats);
        float* first = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(panels));
        // Streamed stores need aligned vectors and fill whole lines: a test's guarded pages can hold the panels off a line
        // (the portable path's eight-float tiles at an odd depth, GuardedOperandTests).
        bool streamed = OutgrowCaches(floats) && AlignedBuffer.LineOffset(panels) == 0;
        PackPanels<TLanes, TVector>(b, k, n, tileColumns, panels, streamed);
        return PackedPanels.Over(first, k, n, tileColumns);
    }

    /// <summary>
    /// A slice of columns is a product of its own: B, C and the bias start at its first column, C keeps its full row stride.
    /// Whichever slices a thread runs, its first makes its panel fit all of them (the job's PanelFloats): a late helper leaves
    /// the last slice to the caller, which must not allocate in a steady-state step because of when the other core woke up.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void RunColumnSlice<TLanes, TVector>(void* state, int index, int worker)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly Job job = ref *(Job*)state;
        int first = index * job.PartSize, columns = Math.Min(job.PartSize, job.N - first);
        if (job.PanelFloats > 0) AlignedBuffer.Ensure(ref packedB, job.PanelFloats);
        Packed<TLanes, TVector>(job.A.From(), job.B.Columns(first), job.Output.Slice(first), job.M, job.K, columns, job.N,
            job.EpilogueFrom(first), RowClaim.All(job.M));
    }

    /// <summary>
    /// Blocks of rows from the job's claims until none remain, this thread from the front and the helper from the back,
    /// so each core writes the same rows of C (and of produced A) call after call; each thread packs all of B once,
    /// unless both read the panels they packed together (<see cref="PackedShared"/>). Both go through B's tiles in the
    /// same order, so they read a tile at about the same time: the helper starting from the middle tile was slower
    /// (2048^3 on two cores of the Intel Xeon, four rounds in turns: 53.3-53.7 -> 54.9-56.9 ms).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void RunRowBlocks<TLanes, TVector>(void* state, int worker)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly Job job = ref *(Job*)state;
        Packed<TLanes, TVector>(job.A.From(), job.B.Columns(0), job.Output, job.M, job.K, job.N, job.N, job.EpilogueFrom(0),
            new RowClaim(job.Blocks, job.PartSize, job.M, fromBack: worker == 1), job.Rows);
    }

    /// <summary>An operand as a pointer and its layout, for a part run on either thread.</summary>
    private readonly unsafe struct PinnedMatrix(float* data, in Matrix layout)
    {
        private readonly float* data = data;
        private readonly int length = layout.Data.Length;
        public readonly int RowStride = layout.RowStride, ColumnStride = layout.ColumnStride;
        private readonly PackedPanels panels = layout.Panels;

        /// <summary>The matrix from element <paramref name="offset"/> on: a slice of rows, columns or depth keeps the strides, not B's panels.</summary>
        public Matrix From(int offset = 0) => At(offset, default);

        /// <summary>B from column <paramref name="first"/> on, with its panels from the same column: a slice of columns, or all of them.</summary>
        public Matrix Columns(int first) => At(first * ColumnStride, panels.From(first));

        private Matrix At(int offset, PackedPanels from) => new(new ReadOnlySpan<float>(data + offset, length - offset), RowStride, ColumnStride, from);
    }

    /// <summary>
    /// One shared product, as pointers (the caller keeps everything pinned until every part that started has finished). Parts
    /// are slices of <see cref="PartSize"/> columns or depth steps, or blocks of whole tiles of <see cref="PartSize"/> rows
    /// (<see cref="RowClaim"/>); for a depth split C holds the parts' partial sums.
    /// </summary>
    private readonly unsafe struct Job(PinnedMatrix a, PinnedMatrix b, float* c, float* bias, in Epilogue epilogue, Claims* blocks, int partSize, int m, int k, int n,
        RowProducer rows = default, int panelFloats = 0)
    {
        public readonly PinnedMatrix A = a, B = b;
        public readonly float* C = c;
        private readonly float* bias = bias;
        private readonly int biasLength = epilogue.Bias.Length;
        private readonly bool relu = epilogue.Relu, accumulate = epilogue.Accumulate;
        public readonly Claims* Blocks = blocks;
        public readonly int PartSize = partSize, M = m, K = k, N = n;
        public readonly RowProducer Rows = rows;
        /// <summary>The largest B panel any part copies into (slices of columns; 0 elsewhere).</summary>
        public readonly int PanelFloats = panelFloats;

        public Span<float> Output => new(C, M * N);

        /// <summary>The epilogue of the columns from <paramref name="column"/> on: its bias starts there.</summary>
        public Epilogue EpilogueFrom(int column)
        {
            var all = new ReadOnlySpan<float>(bias, biasLength);
            return new Epilogue(all.IsEmpty ? all : all.Slice(column), relu, accumulate);
        }
    }

    /// <summary>
    /// Hands out blocks of rows: all of them at once for one thread, one block at a time from shared claims for two, block
    /// <c>i</c> of <c>count</c> the tiles from <c>i * tiles / count</c> on.
    /// </summary>
    private readonly unsafe struct RowClaim(Claims* blocks, int tileRows, int rows, bool fromBack = false)
    {
        /// <summary>Every row in one block: the single-threaded case.</summary>
        public static RowClaim All(int rows) => new(null, 0, rows);

        private readonly Claims* blocks = blocks;
        private readonly int tileRows = tileRows, rows = rows;
        private readonly bool fromBack = fromBack;

        /// <summary>
        /// The next block of rows, false once there is none; <paramref name="next"/>, 0 at first, is where this worker goes on:
        /// the rows not yet handed out for one thread, all of them once the last block is claimed (no claim is tried after
        /// it, as in Helper.RunItems).
        /// </summary>
        public bool Next(ref int next, out int first, out int count)
        {
            if (blocks is null || next == rows)
            {
                first = next;
                count = rows - next;
                next = rows;
                return count > 0;
            }
            bool claimed = blocks->TryClaim(fromBack, out int block, out bool last);
            if (last) next = rows;
            first = claimed ? FirstRow(block) : 0;
            count = claimed ? FirstRow(block + 1) - first : 0;
            return claimed;
        }

        /// <summary>Where block <paramref name="block"/> starts (the count of blocks: where the rows end).</summary>
        private int FirstRow(int block)
        {
            long tiles = (rows + tileRows - 1) / tileRows;
            return (int)Math.Min(rows, block * tiles / blocks->Count * tileRows);
        }
    }
}
