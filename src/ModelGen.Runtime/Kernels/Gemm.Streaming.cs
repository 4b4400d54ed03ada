using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>
/// Products of a few rows (batch-1 inference, up to three requests together): streamed against B where it lies, with no
/// packing, or against its panels where B was packed ahead (an inference copy's kernels, a recurrent kernel for a pass).
/// </summary>
public static partial class Gemm
{
    /// <summary>
    /// How a streamed row of C is cut into vectors ("slots") whose loads from B all start on vector boundaries. A 512-bit
    /// load that straddles two cache lines costs two, and .NET arrays start on 8-byte boundaries only. When B's rows are a
    /// whole number of vectors long, every row starts the same <see cref="Head"/> columns before a boundary: slot j then
    /// holds columns [Head + j·width, +width), and the last slot runs past the row's end into the next row's first Head
    /// columns, which it carries (multiplied by the next row's float of A). Otherwise (Head 0) slot j holds columns
    /// [j·width, +width) and the last one may be partial. Masked partial vectors at both ends of every row instead cost as much
    /// as straddling loads: 784x128 on one core from B 16 bytes off a boundary took 4.6 us that way (gcc's code the same),
    /// 3.8 wrapped, as from an aligned B; the MLP's 784x256 layer on two cores 6.0 -> 5.0 us.
    /// </summary>
    private readonly struct StreamGrid
    {
        public readonly int Head, Slots;

        public unsafe StreamGrid(float* b0, int n, int rowStride, int width)
        {
            // Wrapping reads the next row's first columns right after this row's last: only where rows are adjacent.
            int misaligned = (int)((nint)b0 & (width * sizeof(float) - 1)) / sizeof(float);
            Head = n % width == 0 && rowStride == n ? (width - misaligned) % width : 0;
            Slots = StreamSlots(n, width);
        }

        /// <summary>Whether the last slot wraps into the next row.</summary>
        public bool Wraps => Head > 0;
    }

    /// <summary>The slots of a streamed row of <paramref name="n"/> columns, however B is aligned.</summary>
    private static int StreamSlots(int n, int width) => (n + width - 1) / width;

    /// <summary>
    /// Slots [<paramref name="firstSlot"/>, +<paramref name="slotCount"/>) of rows [<paramref name="firstRow"/>,
    /// +<paramref name="rows"/>) of C = A·B, B's rows contiguous, up to three rows at a time where that pays
    /// (<see cref="StreamsTogether"/>): each depth step's stretch of B is then loaded once for all of them. A row alone takes
    /// passes of at most eight slots, two rows four, three rows three (each with an edge slot, at most twelve accumulators).
    /// Every column's sum is the same chain of multiply-adds, in depth order, however the rows and columns are grouped into
    /// slots, passes or slices, so a row comes out the same bit for bit in any batch. <paramref name="c"/> starts at the first
    /// row's column 0; its rows are <paramref name="ldc"/> apart.
    /// </summary>
    [MethodImpl(Compiled.Kernel), SkipLocalsInit] // every sum read back was stored first
    private static unsafe void StreamRows<TLanes, TVector>(in Matrix a, int firstRow, int rows, in Matrix b, Span<float> c, int ldc, int k, int n,
        in Epilogue epilogue, int firstSlot, int slotCount)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, rowSums = 9 * width;
        float* sums = stackalloc float[GroupRows * rowSums]; // per row: up to eight whole vectors and the partial or wrapping one
        var single = new Stage(first: true, last: true);
        // Panels where B in place would be read in strides (a slice of a wider B's rows, or StreamStrides).
        bool fromPanels = b.Panels.Stream(k, width, firstSlot * width) && (b.RowStride > n || StreamStrides(rows, slotCount, StreamSlots(n, width)));
        int rowsAtOnce = fromPanels || StreamsTogether(rows, k, slotCount, width) ? GroupRows : 1;
        fixed (float* pa = a.Data, pb = b.Data)
        {
            var grid = new StreamGrid(pb, n, b.RowStride, width);
            for (int group = firstRow; group < firstRow + rows; group += rowsAtOnce)
            {
                int groupRows = Math.Min(rowsAtOnce, firstRow + rows - group);
                float* rowsOfA = pa + (nint)group * a.RowStride;
                ref float to = ref MemoryMarshal.GetReference(c.Slice((group - firstRow) * ldc));
                if (fromPanels)
                {
                    StreamFromPanels<TLanes, TVector>(groupRows, rowsOfA, a.ColumnStride, a.RowStride, b.Panels, ref to, ldc, k, n, epilogue,
                        firstSlot, slotCount, sums, rowSums);
                    continue;
                }
                int passes = StreamPasses(slotCount, groupRows);
                for (int pass = 0, slot = firstSlot; pass < passes; pass++)
                {
                    int slots = slotCount / passes + (pass < slotCount % passes ? 1 : 0);
                    // Only the row's last slot may be partial or wrap; it then runs beside the pass's whole vectors.
                    bool last = slot + slots == grid.Slots;
                    int tail = last ? n % width : 0, wrap = last ? grid.Head : 0;
                    int whole = slots - (tail > 0 || wrap > 0 ? 1 : 0), column = grid.Head + slot * width;
                    var columns = new StreamedColumns(tail, wrap, a.ColumnStride, a.RowStride, b.RowStride, k, rowSums);
                    if (groupRows == 1) StreamPass<TLanes, TVector>(whole, columns, rowsOfA, pb + column, sums);
                    else StreamPassOfRows<TLanes, TVector>(groupRows, whole, columns, rowsOfA, pb + column, sums);
                    // Through the edge tiles' epilogue: the whole vectors and a partial last one, then a wrapping slot's two ends.
                    int own = whole * width + columns.Tail;
                    FinishEdge<TLanes, TVector>(ref *sums, rowSums, ref to, ldc, 0, column, groupRows, own, single, epilogue);
                    if (columns.Wrap > 0)
                    {
                        FinishEdge<TLanes, TVector>(ref sums[own], rowSums, ref to, ldc, 0, column + own, groupRows, width - columns.Wrap, single, epilogue);
                        FinishEdge<TLanes, TVector>(ref sums[own + width - columns.Wrap], rowSums, ref to, ldc, 0, 0, groupRows, columns.Wrap, single, epilogue);
                    }
                    slot += slots;
                }
            }
        }
    }

    /// <summary>
    /// Slots [<paramref name="firstSlot"/>, +<paramref name="slotCount"/>) of one to three rows of C = A·B from B's panels
    /// packed ahead (an inference copy's dense kernels), in passes of whole tiles of two vectors (<see cref="PanelPassSlots"/>),
    /// each tile a stream of its own, where a row-major B wider than a pass gives every depth step's vectors a stride of a
    /// whole row: on the Zen 5, eight vectors a step over 784 steps took 1.84-1.87 us from tiles of 32 columns and 3.03-3.10
    /// us from rows of 256 (benchmarks/peer/stream_l2.c); the MLP's predict at batch 1 4.2 -> 2.9 us. The panels are
    /// zero-padded to whole tiles, so every load is whole and only the rows' columns are stored; each column's chain is the
    /// one <see cref="StreamColumns"/> computes, so the bits are those of B where it lies. A B deeper than a depth block is
    /// streamed block after block, as its panels lie (one core, 1x1024x4096 326 -> 165 us and 1x4096x4096 2.54 -> 1.19 ms
    /// against B in place; two cores 1x128x3136, two slices, 8.35 -> 4.33 us).
    /// </summary>
    private static unsafe void StreamFromPanels<TLanes, TVector>(int rows, float* a, int aStep, int aRow, in PackedPanels panels, ref float to, int ldc,
        int k, int n, in Epilogue epilogue, int firstSlot, int slotCount, float* sums, int sumsRow)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, tiles = (slotCount + 1) / 2, perPass = PanelPassSlots(rows, width), passes = (slotCount + perPass - 1) / perPass;
        var single = new Stage(first: true, last: true);
        for (int pass = 0, slot = firstSlot; pass < passes; pass++)
        {
            int slots = Math.Min(2 * (tiles / passes + (pass < tiles % passes ? 1 : 0)), firstSlot + slotCount - slot), column = slot * width;
            // Depth block after depth block, as the panels lie: each block's sums go on from the last one's, stored and reloaded exactly.
            for (int pc = 0; pc < k; pc += DepthBlock)
            {
                int kc = Math.Min(DepthBlock, k - pc);
                float* tile = panels.TileAt(pc, kc, column), blockOfA = a + (nint)pc * aStep;
                var streamed = new StreamedTiles(aStep, aRow, kc, (nint)panels.TileColumns * kc, sumsRow, resume: pc > 0);
                switch (rows)
                {
                    case 1: StreamTilePass<TLanes, TVector>(slots, streamed, blockOfA, tile, sums); break;
                    case 2: StreamTilePassOfRows<TLanes, TVector, Two>(slots, streamed, blockOfA, tile, sums); break;
                    default: StreamTilePassOfRows<TLanes, TVector, Three>(slots, streamed, blockOfA, tile, sums); break;
                }
            }
            FinishEdge<TLanes, TVector>(ref *sums, sumsRow, ref to, ldc, 0, column, rows, Math.Min(slots * width, n - column), single, epilogue);
            slot += slots;
        }
    }

    /// <summary>
    /// Slots of a pass from panels, at most: eight vectors, whole tiles, for up to three rows (24 accumulators) where there
    /// are 32 vector registers (AVX-512), four for two or three rows where there are sixteen.
    /// </summary>
    private static int PanelPassSlots(int rows, int width) => rows == 1 || width >= Lanes512.Count ? RowPassSlots : 4;

    /// <summary>
    /// How a pass from panels steps through one depth block: A's step along the depth and from row to row, the block's depth,
    /// the tiles' distance, the sums' rows, and whether the sums go on from those of the blocks before.
    /// </summary>
    private readonly struct StreamedTiles(int aStep, int aRow, int depth, nint tileStride, int sumsRow, bool resume)
    {
        public readonly int AStep = aStep, ARow = aRow, Depth = depth, SumsRow = sumsRow;
        public readonly nint TileStride = tileStride;
        public readonly bool Resume = resume;
    }

    /// <summary>One pass of a row alone from panels (<see cref="StreamFromPanels"/>): a compiled loop per count of vectors, as <see cref="StreamPass"/>.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void StreamTilePass<TLanes, TVector>(int vectors, in StreamedTiles streamed, float* a, float* tile, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        switch (vectors)
        {
            case 1: StreamTiles<TLanes, TVector>(1, streamed, a, tile, sums); break;
            case 2: StreamTiles<TLanes, TVector>(2, streamed, a, tile, sums); break;
            case 3: StreamTiles<TLanes, TVector>(3, streamed, a, tile, sums); break;
            case 4: StreamTiles<TLanes, TVector>(4, streamed, a, tile, sums); break;
            case 5: StreamTiles<TLanes, TVector>(5, streamed, a, tile, sums); break;
            case 6: StreamTiles<TLanes, TVector>(6, streamed, a, tile, sums); break;
            case 7: StreamTiles<TLanes, TVector>(7, streamed, a, tile, sums); break;
            default: StreamTiles<TLanes, TVector>(8, streamed, a, tile, sums); break;
        }
    }

    /// <summary>
    /// The sums of up to eight vectors of a row into <paramref name="sums"/>, vectors 2t and 2t+1 from tile t's rows of two
    /// vectors (<see cref="StreamedTiles.TileStride"/> floats apart); <paramref name="vectors"/> is a constant at each call. Kept
    /// apart from the rows' kernel (<see cref="StreamTilesOfRows"/>), as <see cref="StreamColumns"/> is: each load stays
    /// inside its multiply-add, which x64 reads from memory, where one shared kernel loaded each vector into a register.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StreamTiles<TLanes, TVector>(int vectors, in StreamedTiles streamed, float* a, float* tile, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, step = 2 * width, aStep = streamed.AStep, k = streamed.Depth;
        bool resume = streamed.Resume;
        nint tileStride = streamed.TileStride;
        float* t1 = tile + tileStride, t2 = t1 + tileStride, t3 = t2 + tileStride; // only those of the pass's vectors are read
        TVector s0 = Resumed<TLanes, TVector>(resume, vectors, 0, sums), s1 = Resumed<TLanes, TVector>(resume, vectors, 1, sums);
        TVector s2 = Resumed<TLanes, TVector>(resume, vectors, 2, sums), s3 = Resumed<TLanes, TVector>(resume, vectors, 3, sums);
        TVector s4 = Resumed<TLanes, TVector>(resume, vectors, 4, sums), s5 = Resumed<TLanes, TVector>(resume, vectors, 5, sums);
        TVector s6 = Resumed<TLanes, TVector>(resume, vectors, 6, sums), s7 = Resumed<TLanes, TVector>(resume, vectors, 7, sums);
        for (nint p = 0, end = (nint)k * step; p < end; p += step, a += aStep)
        {
            TVector x = TLanes.Broadcast(*a);
            s0 = TLanes.MultiplyAdd(x, TLanes.Load(ref tile[p]), s0);
            if (vectors > 1) s1 = TLanes.MultiplyAdd(x, TLanes.Load(ref tile[p + width]), s1);
            if (vectors > 2) s2 = TLanes.MultiplyAdd(x, TLanes.Load(ref t1[p]), s2);
            if (vectors > 3) s3 = TLanes.MultiplyAdd(x, TLanes.Load(ref t1[p + width]), s3);
            if (vectors > 4) s4 = TLanes.MultiplyAdd(x, TLanes.Load(ref t2[p]), s4);
            if (vectors > 5) s5 = TLanes.MultiplyAdd(x, TLanes.Load(ref t2[p + width]), s5);
            if (vectors > 6) s6 = TLanes.MultiplyAdd(x, TLanes.Load(ref t3[p]), s6);
            if (vectors > 7) s7 = TLanes.MultiplyAdd(x, TLanes.Load(ref t3[p + width]), s7);
        }
        StoreEight<TLanes, TVector>(vectors, sums, s0, s1, s2, s3, s4, s5, s6, s7);
    }

    /// <summary>One pass of two or three rows from panels: a compiled copy of <see cref="StreamTilesOfRows"/> per count of rows and vectors.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void StreamTilePassOfRows<TLanes, TVector, TRows>(int vectors, in StreamedTiles streamed, float* a, float* tile, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRows : struct, ICount
    {
        switch (vectors)
        {
            case 1: StreamTilesOfRows<TLanes, TVector, TRows, One>(streamed, a, tile, sums); break;
            case 2: StreamTilesOfRows<TLanes, TVector, TRows, Two>(streamed, a, tile, sums); break;
            case 3: StreamTilesOfRows<TLanes, TVector, TRows, Three>(streamed, a, tile, sums); break;
            case 4: StreamTilesOfRows<TLanes, TVector, TRows, Four>(streamed, a, tile, sums); break;
            case 5: StreamTilesOfRows<TLanes, TVector, TRows, Five>(streamed, a, tile, sums); break;
            case 6: StreamTilesOfRows<TLanes, TVector, TRows, Six>(streamed, a, tile, sums); break;
            case 7: StreamTilesOfRows<TLanes, TVector, TRows, Seven>(streamed, a, tile, sums); break;
            default: StreamTilesOfRows<TLanes, TVector, TRows, Eight>(streamed, a, tile, sums); break;
        }
    }

    /// <summary>
    /// The sums of up to eight vectors of two or three rows into <paramref name="sums"/>, row after row <c>SumsRow</c> floats
    /// apart: vectors 2t and 2t+1 from tile t's rows of two vectors (<c>TileStride</c> floats apart), each loaded once for all
    /// the rows. The rows and vectors are type arguments, so the JIT keeps exactly that many accumulators.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void StreamTilesOfRows<TLanes, TVector, TRows, TVectors>(in StreamedTiles streamed, float* a, float* tile, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRows : struct, ICount where TVectors : struct, ICount
    {
        int rows = TRows.Value, vectors = TVectors.Value, width = TLanes.Count, step = 2 * width, aStep = streamed.AStep;
        nint tileStride = streamed.TileStride;
        float* t1 = tile + tileStride, t2 = t1 + tileStride, t3 = t2 + tileStride; // only those of the pass's vectors are read
        float* a1 = a + streamed.ARow, a2 = a1 + streamed.ARow; // only those of the pass's rows are read
        bool resume = streamed.Resume;
        float* second = sums + streamed.SumsRow, third = second + streamed.SumsRow;
        TVector s0 = Resumed<TLanes, TVector>(resume, vectors, 0, sums), s1 = Resumed<TLanes, TVector>(resume, vectors, 1, sums);
        TVector s2 = Resumed<TLanes, TVector>(resume, vectors, 2, sums), s3 = Resumed<TLanes, TVector>(resume, vectors, 3, sums);
        TVector s4 = Resumed<TLanes, TVector>(resume, vectors, 4, sums), s5 = Resumed<TLanes, TVector>(resume, vectors, 5, sums);
        TVector s6 = Resumed<TLanes, TVector>(resume, vectors, 6, sums), s7 = Resumed<TLanes, TVector>(resume, vectors, 7, sums);
        TVector u0 = Resumed<TLanes, TVector>(resume, vectors, 0, second), u1 = Resumed<TLanes, TVector>(resume, vectors, 1, second);
        TVector u2 = Resumed<TLanes, TVector>(resume, vectors, 2, second), u3 = Resumed<TLanes, TVector>(resume, vectors, 3, second);
        TVector u4 = Resumed<TLanes, TVector>(resume, vectors, 4, second), u5 = Resumed<TLanes, TVector>(resume, vectors, 5, second);
        TVector u6 = Resumed<TLanes, TVector>(resume, vectors, 6, second), u7 = Resumed<TLanes, TVector>(resume, vectors, 7, second);
        bool three = rows > 2 && resume;
        TVector w0 = Resumed<TLanes, TVector>(three, vectors, 0, third), w1 = Resumed<TLanes, TVector>(three, vectors, 1, third);
        TVector w2 = Resumed<TLanes, TVector>(three, vectors, 2, third), w3 = Resumed<TLanes, TVector>(three, vectors, 3, third);
        TVector w4 = Resumed<TLanes, TVector>(three, vectors, 4, third), w5 = Resumed<TLanes, TVector>(three, vectors, 5, third);
        TVector w6 = Resumed<TLanes, TVector>(three, vectors, 6, third), w7 = Resumed<TLanes, TVector>(three, vectors, 7, third);
        for (nint p = 0, end = (nint)streamed.Depth * step; p < end; p += step, a += aStep, a1 += aStep, a2 += aStep)
        {
            TVector x = TLanes.Broadcast(*a);
            TVector y = TLanes.Broadcast(*a1), z = rows > 2 ? TLanes.Broadcast(*a2) : TLanes.Zero;
            MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref tile[p]), ref s0, ref u0, ref w0);
            if (vectors > 1) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref tile[p + width]), ref s1, ref u1, ref w1);
            if (vectors > 2) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref t1[p]), ref s2, ref u2, ref w2);
            if (vectors > 3) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref t1[p + width]), ref s3, ref u3, ref w3);
            if (vectors > 4) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref t2[p]), ref s4, ref u4, ref w4);
            if (vectors > 5) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref t2[p + width]), ref s5, ref u5, ref w5);
            if (vectors > 6) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref t3[p]), ref s6, ref u6, ref w6);
            if (vectors > 7) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref t3[p + width]), ref s7, ref u7, ref w7);
        }
        StoreEight<TLanes, TVector>(vectors, sums, s0, s1, s2, s3, s4, s5, s6, s7);
        StoreEight<TLanes, TVector>(vectors, second, u0, u1, u2, u3, u4, u5, u6, u7);
        if (rows > 2) StoreEight<TLanes, TVector>(vectors, third, w0, w1, w2, w3, w4, w5, w6, w7);
    }

    /// <summary>
    /// Sum <paramref name="index"/> of a pass's <paramref name="vectors"/> as a depth block starts it: zero, or, where it
    /// <paramref name="resumes"/> the blocks before, what they stored (<see cref="StoreEight"/>'s layout).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe TVector Resumed<TLanes, TVector>(bool resumes, int vectors, int index, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct =>
        resumes && index < vectors ? TLanes.Load(ref sums[index * TLanes.Count]) : TLanes.Zero;

    /// <summary>A pass's first <paramref name="vectors"/> sums of up to eight, a vector apart from <paramref name="sums"/> on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreEight<TLanes, TVector>(int vectors, float* sums, TVector s0, TVector s1, TVector s2, TVector s3,
        TVector s4, TVector s5, TVector s6, TVector s7)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        if (vectors > 0) TLanes.Store(ref *sums, s0);
        if (vectors > 1) TLanes.Store(ref sums[width], s1);
        if (vectors > 2) TLanes.Store(ref sums[2 * width], s2);
        if (vectors > 3) TLanes.Store(ref sums[3 * width], s3);
        if (vectors > 4) TLanes.Store(ref sums[4 * width], s4);
        if (vectors > 5) TLanes.Store(ref sums[5 * width], s5);
        if (vectors > 6) TLanes.Store(ref sums[6 * width], s6);
        if (vectors > 7) TLanes.Store(ref sums[7 * width], s7);
    }

    /// <summary>Rows streamed together, at most: three rows' three slots and edges take twelve accumulators (AVX2 has sixteen registers).</summary>
    private const int GroupRows = 3;

    /// <summary>Slots of a pass of a row alone, at most: eight accumulators beside the edge's.</summary>
    private const int RowPassSlots = 8;

    /// <summary>
    /// Whether <paramref name="rows"/> rows streamed over <paramref name="slots"/> of a row's <paramref name="rowSlots"/> would
    /// read B where it lies in strides: in more than one pass, or in a pass over part of each row. A pass over whole rows
    /// reads them one after another anyway, with less to set up than panels (the residual MLP's 64x64 layers at batch 1
    /// from panels: 345 against 335 ns), so only strided rows stream B's panels (<see cref="StreamFromPanels"/>,
    /// <see cref="ReadsPanels"/>).
    /// </summary>
    private static bool StreamStrides(int rows, int slots, int rowSlots) => slots < rowSlots || StreamPasses(slots, Math.Min(rows, GroupRows)) > 1;

    /// <summary>Passes over the depth that <paramref name="rows"/> rows streamed together take for <paramref name="slots"/> slots.</summary>
    private static int StreamPasses(int slots, int rows)
    {
        int perPass = rows == 1 ? RowPassSlots : rows == 2 ? 4 : 3;
        return Math.Max(1, (slots + perPass - 1) / perPass);
    }

    /// <summary>
    /// Whether a few rows stream together: where that takes fewer passes than row by row, or where the stretch of B they
    /// stream does not fit in L1 and row by row would bring it from further away once per row (interleaved on one core:
    /// 3x784x256 69 -> 53 us, 3x1600x128 76 -> 57, 3x128x10 1.15 -> 0.67, 2x256x1024 75 -> 66; on two, each core streaming
    /// its slices: 3x784x256 36 -> 30, 3x1600x128 42 -> 29). Otherwise each row's own passes of up to eight vectors are
    /// faster (3x64x64: 1.27 us row by row, 1.46 together).
    /// </summary>
    private static bool StreamsTogether(int rows, int k, int slots, int width) =>
        rows > 1 && (StreamPasses(slots, Math.Min(rows, GroupRows)) < rows * StreamPasses(slots, 1) || (long)k * slots * width * sizeof(float) > L1Bytes);

    /// <summary>L1's data cache per core where this was measured (Zen 3); Sapphire Rapids has 48 KB, so the line is conservative there.</summary>
    private const int L1Bytes = 32 * 1024;

    /// <summary>
    /// One pass of a row alone: <paramref name="whole"/> vectors, each count its own loop with its accumulators in registers.
    /// A method of its own so that nothing of the rows' loop is live around these: inlined into it, each depth step reloaded
    /// the strides from the stack and took two more branches (the MLP's 784-256-128 at batch 1, both layers, on two cores,
    /// interleaved: medians 7.0-9.3 -> 6.2-8.4 us).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void StreamPass<TLanes, TVector>(int whole, in StreamedColumns columns, float* a, float* b, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        switch (whole)
        {
            case 0: StreamColumns<TLanes, TVector>(0, columns, a, b, sums); break;
            case 1: StreamColumns<TLanes, TVector>(1, columns, a, b, sums); break;
            case 2: StreamColumns<TLanes, TVector>(2, columns, a, b, sums); break;
            case 3: StreamColumns<TLanes, TVector>(3, columns, a, b, sums); break;
            case 4: StreamColumns<TLanes, TVector>(4, columns, a, b, sums); break;
            case 5: StreamColumns<TLanes, TVector>(5, columns, a, b, sums); break;
            case 6: StreamColumns<TLanes, TVector>(6, columns, a, b, sums); break;
            case 7: StreamColumns<TLanes, TVector>(7, columns, a, b, sums); break;
            default: StreamColumns<TLanes, TVector>(8, columns, a, b, sums); break;
        }
    }

    /// <summary>One pass of two or three rows: a compiled copy of <see cref="StreamColumnsOfRows"/> per count of rows and vectors.</summary>
    private static unsafe void StreamPassOfRows<TLanes, TVector>(int rows, int whole, in StreamedColumns columns, float* a, float* b, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        switch (rows * 16 + whole)
        {
            case 0x20: StreamColumnsOfRows<TLanes, TVector, Two, Zero>(columns, a, b, sums); break;
            case 0x21: StreamColumnsOfRows<TLanes, TVector, Two, One>(columns, a, b, sums); break;
            case 0x22: StreamColumnsOfRows<TLanes, TVector, Two, Two>(columns, a, b, sums); break;
            case 0x23: StreamColumnsOfRows<TLanes, TVector, Two, Three>(columns, a, b, sums); break;
            case 0x24: StreamColumnsOfRows<TLanes, TVector, Two, Four>(columns, a, b, sums); break;
            case 0x30: StreamColumnsOfRows<TLanes, TVector, Three, Zero>(columns, a, b, sums); break;
            case 0x31: StreamColumnsOfRows<TLanes, TVector, Three, One>(columns, a, b, sums); break;
            case 0x32: StreamColumnsOfRows<TLanes, TVector, Three, Two>(columns, a, b, sums); break;
            default: StreamColumnsOfRows<TLanes, TVector, Three, Three>(columns, a, b, sums); break;
        }
    }

    /// <summary>
    /// One pass of <see cref="StreamRows"/> after its whole vectors: a partial vector of <c>Tail</c> columns, or a vector
    /// that wraps into the next row's first <c>Wrap</c> columns (0: neither); where A's rows and the pass's sums of each row lie.
    /// </summary>
    private readonly struct StreamedColumns(int tail, int wrap, int aStep, int aRow, int bStride, int depth, int sumsRow)
    {
        public readonly int Tail = tail, Wrap = wrap, AStep = aStep, ARow = aRow, BStride = bStride, Depth = depth, SumsRow = sumsRow;
    }

    /// <summary>
    /// The sums of one pass of a row alone into <paramref name="sums"/>: the whole vectors, then the partial or wrapping one, a vector apart.
    /// <paramref name="vectors"/> is a constant at each call, so the JIT keeps exactly that many accumulators. A partial
    /// vector's loads are masked, so nothing outside B is read. A wrapping vector's lanes past the row's end hold the next
    /// row's first columns: they take the next float of A, their first term comes from the vector before B's first row
    /// and they take no term in the last row, so each of their chains is the same as any other column's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StreamColumns<TLanes, TVector>(int vectors, in StreamedColumns columns, float* a, float* b, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, tail = columns.Tail, wrap = columns.Wrap, aStep = columns.AStep, k = columns.Depth;
        nint bStride = columns.BStride;
        TVector tailMask = TLanes.FirstLanes(tail), thisRow = TLanes.FirstLanes(width - wrap);
        TVector t = TLanes.Zero;
        TVector s0 = TLanes.Zero, s1 = TLanes.Zero, s2 = TLanes.Zero, s3 = TLanes.Zero;
        TVector s4 = TLanes.Zero, s5 = TLanes.Zero, s6 = TLanes.Zero, s7 = TLanes.Zero;
        float* edge = b + vectors * width;
        if (wrap > 0)
        {
            // The first row's wrapped columns sit at the end of the vector before it, the one boundary before B's start.
            TVector nextRow = TLanes.Select(thisRow, TLanes.Zero, TLanes.FirstLanes(width));
            TVector first = TLanes.MultiplyAdd(TLanes.Broadcast(*a), TLanes.LoadMasked(edge - bStride, nextRow), TLanes.Zero);
            t = TLanes.Select(thisRow, TLanes.Zero, first);
        }
        for (int p = 0; p < k; p++, a += aStep, b += bStride, edge += bStride)
        {
            TVector x = TLanes.Broadcast(*a);
            if (vectors > 0) s0 = TLanes.MultiplyAdd(x, TLanes.Load(ref *b), s0);
            if (vectors > 1) s1 = TLanes.MultiplyAdd(x, TLanes.Load(ref b[width]), s1);
            if (vectors > 2) s2 = TLanes.MultiplyAdd(x, TLanes.Load(ref b[2 * width]), s2);
            if (vectors > 3) s3 = TLanes.MultiplyAdd(x, TLanes.Load(ref b[3 * width]), s3);
            if (vectors > 4) s4 = TLanes.MultiplyAdd(x, TLanes.Load(ref b[4 * width]), s4);
            if (vectors > 5) s5 = TLanes.MultiplyAdd(x, TLanes.Load(ref b[5 * width]), s5);
            if (vectors > 6) s6 = TLanes.MultiplyAdd(x, TLanes.Load(ref b[6 * width]), s6);
            if (vectors > 7) s7 = TLanes.MultiplyAdd(x, TLanes.Load(ref b[7 * width]), s7);
            if (tail > 0) t = TLanes.MultiplyAdd(x, TLanes.LoadMasked(edge, tailMask), t);
            else if (wrap > 0)
            {
                if (p + 1 < k) t = TLanes.MultiplyAdd(TLanes.Select(thisRow, x, TLanes.Broadcast(a[aStep])), TLanes.Load(ref *edge), t);
                else t = TLanes.Select(thisRow, TLanes.MultiplyAdd(x, TLanes.LoadMasked(edge, thisRow), t), t);
            }
        }
        StoreEight<TLanes, TVector>(vectors, sums, s0, s1, s2, s3, s4, s5, s6, s7);
        TLanes.Store(ref sums[vectors * width], t);
    }

    /// <summary>
    /// <see cref="StreamColumns"/> for two or three rows at once, their sums row after row <c>SumsRow</c> floats apart: each
    /// vector of B is loaded once for all of them, and each row's chains are exactly those of the row alone. The rows and
    /// vectors (at most four) are type arguments, each pair its own compiled copy, so the JIT keeps exactly that many
    /// accumulators. Kept apart from the single row's kernel, whose loads stay inside its multiply-adds.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void StreamColumnsOfRows<TLanes, TVector, TRows, TVectors>(in StreamedColumns columns, float* a, float* b, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRows : struct, ICount where TVectors : struct, ICount
    {
        int rows = TRows.Value, vectors = TVectors.Value;
        int width = TLanes.Count, tail = columns.Tail, wrap = columns.Wrap, aStep = columns.AStep, k = columns.Depth;
        nint bStride = columns.BStride;
        float* a1 = a + columns.ARow, a2 = a1 + columns.ARow; // the third row's read only where there is one
        TVector tailMask = TLanes.FirstLanes(tail), thisRow = TLanes.FirstLanes(width - wrap);
        TVector t0 = TLanes.Zero, t1 = TLanes.Zero, t2 = TLanes.Zero;
        TVector s0 = TLanes.Zero, s1 = TLanes.Zero, s2 = TLanes.Zero, s3 = TLanes.Zero;
        TVector u0 = TLanes.Zero, u1 = TLanes.Zero, u2 = TLanes.Zero, u3 = TLanes.Zero;
        TVector w0 = TLanes.Zero, w1 = TLanes.Zero, w2 = TLanes.Zero, w3 = TLanes.Zero;
        float* edge = b + vectors * width;
        if (wrap > 0)
        {
            // The wrapped columns' first terms, from the vector before B's first row, as the single row's kernel takes them.
            TVector nextRow = TLanes.Select(thisRow, TLanes.Zero, TLanes.FirstLanes(width));
            TVector before = TLanes.LoadMasked(edge - bStride, nextRow);
            t0 = TLanes.Select(thisRow, TLanes.Zero, TLanes.MultiplyAdd(TLanes.Broadcast(*a), before, TLanes.Zero));
            t1 = TLanes.Select(thisRow, TLanes.Zero, TLanes.MultiplyAdd(TLanes.Broadcast(*a1), before, TLanes.Zero));
            if (rows > 2) t2 = TLanes.Select(thisRow, TLanes.Zero, TLanes.MultiplyAdd(TLanes.Broadcast(*a2), before, TLanes.Zero));
        }
        for (int p = 0; p < k; p++, a += aStep, a1 += aStep, b += bStride, edge += bStride)
        {
            TVector x = TLanes.Broadcast(*a), y = TLanes.Broadcast(*a1);
            TVector z = rows > 2 ? TLanes.Broadcast(*a2) : TLanes.Zero;
            if (vectors > 0) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref *b), ref s0, ref u0, ref w0);
            if (vectors > 1) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref b[width]), ref s1, ref u1, ref w1);
            if (vectors > 2) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref b[2 * width]), ref s2, ref u2, ref w2);
            if (vectors > 3) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.Load(ref b[3 * width]), ref s3, ref u3, ref w3);
            if (tail > 0) MultiplyRows<TLanes, TVector>(rows, x, y, z, TLanes.LoadMasked(edge, tailMask), ref t0, ref t1, ref t2);
            else if (wrap > 0)
            {
                if (p + 1 < k)
                {
                    TVector next = TLanes.Load(ref *edge);
                    t0 = TLanes.MultiplyAdd(TLanes.Select(thisRow, x, TLanes.Broadcast(a[aStep])), next, t0);
                    t1 = TLanes.MultiplyAdd(TLanes.Select(thisRow, y, TLanes.Broadcast(a1[aStep])), next, t1);
                    if (rows > 2) t2 = TLanes.MultiplyAdd(TLanes.Select(thisRow, z, TLanes.Broadcast(a2[aStep])), next, t2);
                }
                else
                {
                    TVector lastRow = TLanes.LoadMasked(edge, thisRow);
                    t0 = TLanes.Select(thisRow, TLanes.MultiplyAdd(x, lastRow, t0), t0);
                    t1 = TLanes.Select(thisRow, TLanes.MultiplyAdd(y, lastRow, t1), t1);
                    if (rows > 2) t2 = TLanes.Select(thisRow, TLanes.MultiplyAdd(z, lastRow, t2), t2);
                }
            }
            if (rows > 2) a2 += aStep;
        }
        StoreSums<TLanes, TVector>(vectors, sums, s0, s1, s2, s3, t0);
        StoreSums<TLanes, TVector>(vectors, sums + columns.SumsRow, u0, u1, u2, u3, t1);
        if (rows > 2) StoreSums<TLanes, TVector>(vectors, sums + 2 * columns.SumsRow, w0, w1, w2, w3, t2);
    }

    /// <summary>One vector of B into each of two or three rows' accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyRows<TLanes, TVector>(int rows, TVector x, TVector y, TVector z, TVector b, ref TVector first, ref TVector second, ref TVector third)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        first = TLanes.MultiplyAdd(x, b, first);
        second = TLanes.MultiplyAdd(y, b, second);
        if (rows > 2) third = TLanes.MultiplyAdd(z, b, third);
    }

    /// <summary>A row's <paramref name="vectors"/> whole sums (at most four), then its edge vector right after them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreSums<TLanes, TVector>(int vectors, float* sums, TVector s0, TVector s1, TVector s2, TVector s3, TVector edge)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        StoreEight<TLanes, TVector>(vectors, sums, s0, s1, s2, s3, TLanes.Zero, TLanes.Zero, TLanes.Zero, TLanes.Zero);
        TLanes.Store(ref sums[vectors * TLanes.Count], edge);
    }

    /// <summary>One row of C when B is stored transposed (columns contiguous): each entry is a vectorised dot product.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static void DotRow<TLanes, TVector>(in Matrix a, int i, in Matrix b, Span<float> c, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        int vectorDepth = k - k % width;
        bool contiguousA = a.ColumnStride == 1;
        ref float a0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(a.Data), i * a.RowStride);
        ref float b0 = ref MemoryMarshal.GetReference(b.Data);
        var whole = new Stage(first: true, last: true);
        for (int j = 0; j < n; j++)
        {
            ref float bColumn = ref Unsafe.Add(ref b0, j * b.ColumnStride);
            float sum;
            if (contiguousA)
            {
                TVector s0 = TLanes.Zero, s1 = TLanes.Zero;
                int p = 0;
                for (; p + 2 * width <= vectorDepth; p += 2 * width)
                {
                    s0 = TLanes.MultiplyAdd(TLanes.Load(ref Unsafe.Add(ref a0, p)), TLanes.Load(ref Unsafe.Add(ref bColumn, p)), s0);
                    s1 = TLanes.MultiplyAdd(TLanes.Load(ref Unsafe.Add(ref a0, p + width)), TLanes.Load(ref Unsafe.Add(ref bColumn, p + width)), s1);
                }
                for (; p < vectorDepth; p += width) s0 = TLanes.MultiplyAdd(TLanes.Load(ref Unsafe.Add(ref a0, p)), TLanes.Load(ref Unsafe.Add(ref bColumn, p)), s0);
                sum = TLanes.Sum(TLanes.Add(s0, s1));
                for (; p < k; p++) sum = MathF.FusedMultiplyAdd(Unsafe.Add(ref a0, p), Unsafe.Add(ref bColumn, p), sum);
            }
            else
            {
                sum = 0f;
                for (int p = 0; p < k; p++) sum = MathF.FusedMultiplyAdd(Unsafe.Add(ref a0, p * a.ColumnStride), Unsafe.Add(ref bColumn, p * b.RowStride), sum);
            }
            c[j] = Finish(sum, c[j], j, whole, epilogue);
        }
    }
}
