using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace ModelGen.Kernels;

/// <summary>The packed, cache-blocked path: packing of A and B, the register-blocked micro-kernels and their epilogues.</summary>
public static partial class Gemm
{
    private const int RowsPerTile = 6;       // MR: rows of A per micro-kernel tile
    private const int TallRows = 12;         // MR of the twelve-row kernels (AVX-512: 32 vector registers)
    private const int EightRows = 8;         // MR of a last in-place tile of seven or eight rows (AVX-512)
    private const int FourRows = 4;          // MR of a last in-place tile of at most four rows (off AVX-512: also of a last seven or eight, as two)
    // KC: depth of one block. Each block reads and writes C once more; with A packed that traffic cost more than keeping a
    // B micro-panel in L1: 2048^3 on one core ran at 84-88 GFLOP/s with 256 (a 32 KB panel), 94-95 with 512, 100-105 with
    // 1024 (a 128 KB panel streamed from L2), the MLP's 128x784x256 at 82-88, 89-91, 92-94. A read in place is different:
    // a tile of a transposed A touches a cache line per step, and 256 steps of lines stay in L1 for the next tile
    // (a convolution's 288x7744x64 weight gradient: 4.3 ms with 256, 5.8 with 1024). Rechecked with the twelve-row kernel:
    // 1024^3 at 113 / 115 / 118 GFLOP/s with 256 / 512 / 1024. On the AVX2 Zen 3 a row-major A read in place that outgrows
    // its 512 KB L2 gained nothing from shallower blocks either (128x2048x2048 on one core: 13.5-13.9 ms with 1024, 14.8-15.1
    // with 512, 14.9-16.9 with 256). On a Zen 5, whose FMAs run 512 bits wide at full rate, C's pass per block costs a larger
    // share: 2048 deep, C read and written once, 2048^3 on two cores 38.4 -> 37.3 ms and on one 72.8 -> 71.9 ms, 512x2048x2048
    // on two 9.65 -> 9.43 ms (medians of 8, 4 and 6 fresh processes in turns); A read in place, 128x2048x2048 on one core
    // even (5.44 against 5.39 ms). On the Intel Xeon (48 KB of L1) depth 256, where B's tile (32 KB) stays in L1, lost:
    // 2048^3 on one core 112.7-115.0 ms against 105.6-106.7 (three rounds in turns), and with A's block 96 to 768 rows and C
    // prefetched into L2 at each tile's start too. So did steps of 128 to 512 inside a 2048-deep block, each full tile's
    // chains resumed from the partial sums it stored in C (the same bits as one chain): 112.2-128.1 ms against 106.5-106.8.
    private const int DepthBlock = 2048;
    // How far ahead the twelve-row packed kernel prefetches B: a deep block's B tile (2048 steps x 32 floats: 256 KB) does not
    // stay in L1 between row tiles and comes back from L2 (2048^3 on one core, 1024 deep: 121 -> 125.5 GFLOP/s; 8 steps
    // ahead gave 121, 24 gave 123, 32 to 128 all 125.7; on the Zen 5, 2048 deep, 16 and 64 steps within the noise of 32). On the
    // Intel Xeon, 2048^3 on one core: 16 and 64 steps no faster than 32, nor A prefetched 16 or 32 steps ahead, nor the next
    // tile of B prefetched into L2 during a block's last row tile; on two cores, 64 steps, with the shared panels stored
    // through the caches or past them, all within 0.5% (medians of ten rounds of fresh processes in turns: 54.0-54.4 ms).
    private const int BPrefetchSteps = 32;
    // How far ahead B's rows are prefetched where they lie, by a tile that packs B as it reads it and by PackB when it copies
    // less than a page of each row: rows a cache line or more apart defeat the hardware prefetchers, which stay within a page
    // (the MLP's 128x784x256 on two cores, 1 KB rows: 217-220 us without, 212-215 with 12 to 24 steps; 4 steps gave nothing,
    // 32 less. PackB's 64-column slices of 128x2048x2048 on this Zen 3: 23.2 -> 21.0 ms on one core, 10.3 -> 9.1 on two).
    // On the Intel Xeon, PackPanels' 512-column parts of a 2048x2048 B packed faster without it (0.71-0.74 ms on two cores
    // against 0.78-0.83; 48 steps 0.82-0.83), 2048^3 within the noise (52.7-53.4 ms against 52.5-54.2, three rounds).
    private const int SourcePrefetchSteps = 16;
    private const int StreamingDepthBlock = 256;
    private const int PageBytes = 4096;
    private const int FewRows = 2 * RowsPerTile; // rows up to which B is read in place, never packed
    // MC of an A read in place against panels packed ahead that come from memory (FetchingB): eleven twelve-row tiles, so a
    // batch of 128 is one block and each tile of B is fetched once a call, where blocks of 96 fetched it twice (the scaling
    // curve's 2048-wide MLP at batch 128, 16 MB of panels a layer, its slices 2048 deep: 4.58 -> 4.38 ms, with B prefetched
    // 4.31). On the Intel Xeon 96 and 264 rows were slower (the 2048-wide MLP at batch 128: 6.84 -> 7.33 and 7.73 ms).
    private const int FetchedRowBlock = 132;
    // MC of an A read in place: rows claimed at once, so produced rows are read from L2. On the Intel Xeon 48 and 192 rows
    // were no faster (medians of three rounds in turns: the 2048-wide MLP at batch 128 6.84 -> 7.12 and 6.92 ms, the
    // 1024-wide 1.85 -> 1.80 and 1.83, the MLP's training step at batch 128 0.607 -> 0.648 and 0.612, the autoencoder's
    // 6.29 -> 7.94 and 6.34).
    private const int RowBlock = 96;
    // MC of a packed A: 96 rows, eight twelve-row tiles (768 KB at depth 2048), a block that stays in L2 beside the tile of B
    // its row tiles read (256 KB), so each tile of B comes from L3 once per block and A's rows never do. On the Intel Xeon
    // (2 MB of L2 a core, far from its L3) 384 rows (3 MB) read A from L3 again for every tile of B: 2048^3 on one core
    // 110-117 -> 105-107 ms (48 and 72 rows alike, 144 107-109), on two 55.5-56.2 -> 52.5-54.0 (192 rows as 384; fresh
    // processes in turns, peak_fma 176-180 before each round). 384 rows were chosen 1024 deep, where they were 1.5 MB inside a
    // 2 MB L2 (113 / 117 / 120 GFLOP/s with 96 / 192 / 384 on one core), and grew to 3 MB with the Zen 5's depth of 2048; the
    // Zen 5 (1 MB of L2) kept 384: 72.5 ms on one core against 73.7 and 74.9 with 120 and 72 rows, 37.8 on two against 39.6
    // with 192. On the AVX2 Zen 3 (512 KB) blocks sized to its L2 were no faster. On the Intel Xeon the next block's rows
    // fetched into L2 during a block (prefetcht1, its lines dealt over the block's tiles of C) took A's packing from 1.45% to
    // 1.03% of 2048^3's samples on two cores and cost ~1% in prefetches of its own: 53.0-56.1 ms against 54.1-56.2, five rounds.
    private const int PackedRowBlock = 96;
    private const int PackedRowGroup = 16;   // rows of B packed together, tile by tile (PackB)
    private const int ColumnBlock = 2048;    // NC: columns per pass over A (2048^3: A packed once, not twice: 110 -> 113 GFLOP/s)

    [ThreadStatic] private static AlignedBuffer? packedA;
    [ThreadStatic] private static AlignedBuffer? packedB;

    /// <summary>
    /// Rows of C computed block by block as <paramref name="claim"/> hands them out, each block's rows of A first produced by
    /// <paramref name="rows"/> if they are produced; this thread's first block also packs B (ahead of its tiles, or tile by
    /// tile as its first micro-kernels read it). A depth block's partial sums stay in C between stages.
    /// </summary>
    [MethodImpl(Compiled.Kernel), SkipLocalsInit] // an edge tile's spill is stored only where its kernel wrote it
    private static void Packed<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, int ldc, in Epilogue epilogue, RowClaim claim,
        RowProducer rows = default)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var reading = HowBIsRead<TLanes, TVector>(a, b, m, k, n);
        bool bInPlace = reading.InPlace, packAsRead = reading.PackedAsRead, readsB = reading.WholeTilesInPlace, copiesB = reading.PanelFloats > 0;
        bool prepacked = reading.Prepacked;
        // Panels packed ahead keep the tiles of the whole B: a last slice of columns narrower than a vector reads its part of a
        // two-vector tile, as the last, partial tile of a wider product does.
        int tileColumns = prepacked ? b.Panels.TileColumns : TileColumns<TLanes, TVector>(n);
        bool narrow = tileColumns == TLanes.Count;
        bool streamA = ReadsAInPlace<TLanes, TVector>(a, m, k, n);
        bool fetchesB = prepacked && !narrow && OutgrowCaches(b.Panels.Floats);
        int rowBlock = streamA ? (fetchesB ? FetchedRowBlock : RowBlock) : PackedRowBlock;
        // A transposed A read in place keeps its short depth blocks (StreamingDepthBlock); a row-major one takes the packed
        // path's: each block reads and writes C once more, and a tile's rows of A are read as twelve sequential streams (the
        // MLP's 128x784x256 on two cores: 261 -> 226 us; the CNN's dense 64x1600x128: 154 -> 136 us). Up to 1024 deep each
        // output is then its exact chain of multiply-adds, so a convolution through patches computes what the direct kernel
        // computes for inference.
        int depthBlock = DepthBlockOf(a, streamA);
        // With A packed and 32 vector registers, tiles of twelve rows: half the B traffic per multiply-add of six-row tiles.
        bool tall = !streamA && !narrow && TLanes.Count == 16;
        int panelRows = tall ? TallRows : RowsPerTile;
        var aPanel = streamA ? default : AlignedBuffer.Ensure(ref packedA, PackedRowBlock * DepthBlock);
        var bPanel = copiesB ? AlignedBuffer.Ensure(ref packedB, reading.PanelFloats) : default;
        Span<float> spill = stackalloc float[TallRows * 32];

        bool bPacked = !copiesB;
        int next = 0;
        while (claim.Next(ref next, out int firstRow, out int blockRows))
        {
            rows.Produce(firstRow, blockRows);
            int offset = 0;
            for (int jc = 0; jc < n; jc += ColumnBlock)
            {
                int nc = Math.Min(ColumnBlock, n - jc);
                for (int pc = 0; pc < k; pc += depthBlock)
                {
                    int kc = Math.Min(depthBlock, k - pc);
                    var bBlock = copiesB ? bPanel.Slice(offset) : prepacked ? b.Panels.Block(pc, kc, jc) : default;
                    offset += PanelFloats(kc, nc, tileColumns);
                    var stage = new Stage(first: pc == 0, last: pc + kc >= k);
                    for (int ic = firstRow; ic < firstRow + blockRows; ic += rowBlock)
                    {
                        int mc = Math.Min(rowBlock, firstRow + blockRows - ic);
                        if (!streamA) PackA(a, ic, mc, pc, kc, panelRows, aPanel);
                        bool packsB = !bPacked && ic == firstRow;
                        if (packsB && !packAsRead && !readsB)
                        {
                            PackB<TLanes, TVector>(b, pc, kc, jc, nc, tileColumns, bBlock);
                            packsB = false;
                        }
                        for (int jr = 0; jr < nc; jr += tileColumns)
                        {
                            ref float bSource = ref Unsafe.Add(ref MemoryMarshal.GetReference(b.Data), pc * b.RowStride + (jc + jr) * b.ColumnStride);
                            int columns = Math.Min(tileColumns, nc - jr);
                            bool inPlace = bInPlace || (readsB && columns == tileColumns);
                            ref float bTile = ref inPlace ? ref bSource : ref bBlock[jr * kc];
                            int bStep = inPlace ? b.RowStride : tileColumns;
                            // The last, partial tile is packed here.
                            bool packs = packsB && !inPlace;
                            if (packs && columns < tileColumns)
                            {
                                PackB<TLanes, TVector>(b, pc, kc, jc + jr, columns, tileColumns, bBlock.Slice(jr * kc));
                                packs = false;
                            }
                            // A narrow B packed: whole vectors of rows go column by column (Gemm.Columns.cs).
                            bool byColumns = narrow && !inPlace && !packs && TakesColumns<TLanes, TVector>(a, kc, columns);
                            for (int ir = 0, tileRows; ir < mc; ir += tileRows, packs = false)
                            {
                                if (streamA)
                                {
                                    var tileB = packs ? TileB.PackedAsRead : fetchesB ? TileB.Fetched : TileB.Read;
                                    // Rows read where A lies: twelve at a time on AVX-512, then a last seven or eight as one tile
                                    // (batches of 32 and 128 end in eight rows; 16 multiply-adds a step where two six-row tiles
                                    // take 24: the MLP's 128x784x128 on one core 199 -> 191 us), else six at a time, with a last
                                    // seven or eight as two tiles of four (32 rows on AVX2: 4 x 6 + 2 x 4, where 5 x 6 + 2 took
                                    // a whole six-row tile for two rows). A last four or fewer take a four-row tile.
                                    ref float rowsOfA = ref Unsafe.Add(ref MemoryMarshal.GetReference(a.Data), (ic + ir) * a.RowStride + pc * a.ColumnStride);
                                    int rest = mc - ir;
                                    tileRows = Math.Min(RowsPerTile, rest);
                                    if (byColumns && rest >= ColumnTile)
                                    {
                                        tileRows = ColumnTile;
                                        ColumnsTile(a, ref rowsOfA, ref bTile, bStep, kc, c, ldc, ic + ir, columns, stage, epilogue, spill);
                                    }
                                    else if (TLanes.Count == 16 && rest >= TallRows)
                                    {
                                        tileRows = TallRows;
                                        Tile<TLanes, TVector, TallRowsInPlace>(narrow, ref rowsOfA, new(a.RowStride, a.ColumnStride), ref bTile, bStep, tileB, ref bSource, b.RowStride, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                    }
                                    else if (TLanes.Count == 16 && rest > RowsPerTile && rest <= EightRows)
                                    {
                                        tileRows = rest;
                                        Tile<TLanes, TVector, RowsInPlace<Eight>>(narrow, ref rowsOfA, new(a.RowStride, a.ColumnStride, tileRows), ref bTile, bStep, tileB, ref bSource, b.RowStride, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                    }
                                    else if (rest <= FourRows || (rest > RowsPerTile && rest <= EightRows))
                                    {
                                        tileRows = Math.Min(FourRows, rest);
                                        Tile<TLanes, TVector, RowsInPlace<Four>>(narrow, ref rowsOfA, new(a.RowStride, a.ColumnStride, tileRows), ref bTile, bStep, tileB, ref bSource, b.RowStride, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                    }
                                    else Tile<TLanes, TVector, RowsInPlace<Six>>(narrow, ref rowsOfA, new(a.RowStride, a.ColumnStride, tileRows), ref bTile, bStep, tileB, ref bSource, b.RowStride, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                }
                                else
                                {
                                    // A packed: B was packed ahead (packAsRead is false), so these tiles only read it.
                                    tileRows = Math.Min(panelRows, mc - ir);
                                    if (tall) Tile<TLanes, TVector, TallPackedRows>(narrow, ref aPanel[ir * kc], default, ref bTile, bStep, TileB.Read, ref bSource, b.RowStride, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                    else Tile<TLanes, TVector, PackedRows>(narrow, ref aPanel[ir * kc], default, ref bTile, bStep, TileB.Read, ref bSource, b.RowStride, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                }
                            }
                        }
                    }
                }
            }
            bPacked = true;
        }
    }

    /// <summary>NR: two vectors of columns; one when the product is that narrow (a classifier's 10 outputs would waste two thirds of a two-vector tile).</summary>
    private static int TileColumns<TLanes, TVector>(int n) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        (n <= TLanes.Count ? 1 : 2) * TLanes.Count;

    /// <summary>
    /// How the packed path reads a product's B: where it lies, packed as its first tiles read it, packed ahead into a panel of
    /// PanelFloats, or from panels packed before the call (<see cref="PackedMatrix"/>).
    /// </summary>
    private readonly record struct ReadingB(bool InPlace, bool PackedAsRead, bool WholeTilesInPlace, int PanelFloats, bool Prepacked = false);

    /// <summary>KC for this A: short blocks for a transposed A read in place, the packed path's otherwise.</summary>
    private static int DepthBlockOf(in Matrix a, bool streamA) => streamA && a.ColumnStride != 1 ? StreamingDepthBlock : DepthBlock;

    [MethodImpl(Compiled.Driver)]
    private static ReadingB HowBIsRead<TLanes, TVector>(in Matrix a, in Matrix b, int m, int k, int n) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int tileColumns = TileColumns<TLanes, TVector>(n);
        bool narrow = n <= TLanes.Count, streamA = ReadsAInPlace<TLanes, TVector>(a, m, k, n);
        // Panels packed before the call, in this part's tiles and depth blocks, are read as they are: nothing is copied.
        if (b.Panels.Fit(k, TLanes.Count, DepthBlockOf(a, streamA))) return new ReadingB(false, false, false, 0, Prepacked: true);
        // A B whose rows are exactly one tile and adjacent is already in the packed order, so it is read in place, not copied
        // (the first convolution's weight gradient packed 43,264 rows of 32 output gradients: 1.16 -> 0.79 ms). Where many row
        // tiles read it, anything else stays packed: tile rows a longer row apart, read in place, fall in a fraction of L1's
        // sets (two tiles: 1.47 -> 1.93 ms), unless it is one vector wide and lies within SmallA floats, a third of L1, where
        // it stays however its rows fall (an attention head's values, keys and queries, 64 rows of 16 a row of 64 apart, on
        // AVX-512: transformer predict b32 0.5057 -> 0.4969 ms, train step 1.564 -> 1.541; the same heads as two-vector tiles
        // on AVX2 ran slower in place, predict 0.901 -> 0.908). A few rows read it in place all the same (readsB below).
        bool bInPlace = b.ColumnStride == 1 && n == tileColumns && (b.RowStride == tileColumns || (narrow && (long)k * b.RowStride <= SmallA));
        // B is packed by this thread's first rows. With A read in place (a batch against a layer's weights), each whole tile of
        // a row-major B is packed by the first micro-kernel that reads it, as it reads it (the MLP's 128x784x256 on two cores:
        // packing ahead cost 24 of 231 us). Anything else is packed ahead, B's rows read in order: where a tile would read them
        // a page or more apart (2048 columns: 128x2048x2048 on two cores 5.33 ms ahead, 5.39-5.48 as read), where A is packed
        // (many row tiles share each tile of B; 2048^3 on one core 125 -> 121.5 GFLOP/s as read; on the Intel Xeon 105.0-110.5 ->
        // 108.4-140.0 ms), a transposed B, a narrow one.
        bool rowMajorTiles = streamA && !narrow && b.ColumnStride == 1;
        bool packAsRead = rowMajorTiles && b.RowStride * sizeof(float) < PageBytes;
        // Up to FewRows rows, one or two row tiles read each tile of B: too few to repay a copy, so whole tiles of a row-major B
        // are read where they lie (one core, interleaved on a Zen 3: 4x784x256 53 -> 39 us, 4x784x1024 499 -> 278, 6x256x1024 142 -> 93,
        // 8x256x1024 239 -> 147, 12x784x256 135 -> 120; from 24 rows packing won again: 24x784x256 187 -> 200).
        bool readsB = rowMajorTiles && m <= FewRows;
        // Only a B read whole where it lies takes no panel: otherwise at least its last, partial tile is copied.
        bool copiesB = !bInPlace && !(readsB && n % tileColumns == 0);
        return new ReadingB(bInPlace, packAsRead, readsB, copiesB ? PanelFloats(k, n, tileColumns) : 0);
    }

    /// <summary>
    /// Whether whole tiles read A where it lies rather than packing it. Few column tiles use each packed row only a few times,
    /// so packing would cost more than it saves (a convolution's 7744 x 288 patches against 64 filters). Packing a transposed
    /// A is a gather and costs more, so it streams up to twice as wide. An A that fits in L1 whole is read in place however
    /// wide the product, and so are a few rows (up to <see cref="FewRows"/>, which then read B in place too): packed, they went
    /// through the packed kernels with B packed as well (12x500x100 on one core, old and new builds in turns: 58-60 -> 28-38 us).
    /// Where every column tile of a wide product reads each row, reading A in place saves nothing over packing it: 2048^3
    /// with twelve-row tiles read in place ran 51.6-54.8 ms on two cores of the Intel Xeon against 50.7-54.0 packed (six
    /// rounds in turns), 104.5-111.2 on one against 104.3-105.8, and slower still with its rows first copied a line apart
    /// (<see cref="ApartInL1"/>).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static bool ReadsAInPlace<TLanes, TVector>(in Matrix a, int m, int k, int n) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        Math.Min(n, ColumnBlock) <= (a.RowStride == 1 ? 2 : 1) * StreamingColumnTiles * TileColumns<TLanes, TVector>(n) || (long)m * k <= SmallA || m <= FewRows;

    /// <summary>How a two-vector tile reads its tile of B (<see cref="Tile"/>).</summary>
    private enum TileB
    {
        /// <summary>As it lies at <c>b</c>: in place, or packed before this tile.</summary>
        Read,
        /// <summary>From B's rows at <c>source</c>, packing it to <c>b</c> as it goes (<see cref="PackingB{TRows}"/>): the first row tile of a block.</summary>
        PackedAsRead,
        /// <summary>From panels packed ahead that come from memory, prefetched (<see cref="FetchingB{TRows}"/>): never narrow, nothing to pack.</summary>
        Fetched,
    }

    /// <summary>
    /// One tile of C: the narrow kernel for products one vector wide (their only column tile starts at 0), the two-vector one
    /// otherwise, reading B as <paramref name="tileB"/> says (from <paramref name="source"/>, rows <paramref name="sourceStride"/>
    /// apart, where it packs B as it reads it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile<TLanes, TVector, TRows>(bool narrow, ref float a, TRows layout, ref float b, int bStep, TileB tileB, ref float source, int sourceStride,
        int kc, Span<float> c, int ldc, int row, int column, int rows, int columns, Stage stage, in Epilogue epilogue, Span<float> spill)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRows : struct, IRowsOfA
    {
        if (narrow) NarrowKernel<TLanes, TVector, TRows>(ref a, layout, ref b, bStep, kc, c, ldc, row, rows, columns, stage, epilogue, spill);
        else if (tileB == TileB.Fetched) MicroKernel<TLanes, TVector, FetchingB<TRows>>(ref a, new(layout), ref b, bStep, ref b, kc, c, ldc, row, column, rows, columns, stage, epilogue, spill);
        else if (tileB == TileB.PackedAsRead) MicroKernel<TLanes, TVector, PackingB<TRows>>(ref a, new(layout), ref source, sourceStride, ref b, kc, c, ldc, row, column, rows, columns, stage, epilogue, spill);
        else MicroKernel<TLanes, TVector, TRows>(ref a, layout, ref b, bStep, ref b, kc, c, ldc, row, column, rows, columns, stage, epilogue, spill);
    }

    /// <summary>
    /// Products at most this many column tiles wide read whole row tiles of A in place instead of packing them. Measured on
    /// AVX-512 (4 tiles = 128 columns): 7744x288x64 5.0 -> 3.0 ms; 128x128x256 0.107 -> 0.077 ms; at 256 columns streaming a
    /// row-major A lost (1024x1024x256 4.9 -> 5.4 ms) while a transposed one still won (8.3 -> 5.6 ms).
    /// </summary>
    private const int StreamingColumnTiles = 4;

    /// <summary>
    /// Floats of an A read in place at any width: 16 KB, a third of L1, where it stays for every column tile. Then B is packed
    /// as the first row tile reads it instead of in a pass of its own (an LSTM's 32x64x256 recurrent product, one per step:
    /// 23.0 -> 13.8 us; the 64-unit LSTM's forward pass over 28 steps 0.86-0.92 -> 0.66-0.69 ms). Products from 1M
    /// multiply-adds are cut into slices of at most four tiles, which read A in place anyway. A one-vector B within as many
    /// floats is read in place at any row stride (<see cref="HowBIsRead"/>): it stays in L1 for every row tile however its rows fall.
    /// </summary>
    private const int SmallA = 4096;

    /// <summary>
    /// Where the micro-kernel finds element (r, p) of its rows of A: at <c>Offset(r) + p * Step</c>. A struct type argument,
    /// so the JIT compiles the packed layout with its constant strides and the in-place one with the matrix's.
    /// </summary>
    private interface IRowsOfA
    {
        /// <summary>Where row <paramref name="row"/> of the tile starts; a tall tile's lower rows are at <c>Offset(6) + Offset(r)</c>.</summary>
        nint Offset(int row);
        int Step { get; }
        /// <summary>Rows per tile: four, six, eight or twelve (the last two on AVX-512); a constant per layout, so the JIT drops the other rows.</summary>
        int Height { get; }
        /// <summary>How many steps ahead the kernel prefetches B (0: not at all; B that comes from L2); a constant per layout.</summary>
        int PrefetchSteps { get; }
        /// <summary>Whether the kernel also writes the B it reads, packed (<see cref="PackingB{TRows}"/>); a constant per layout.</summary>
        bool PacksB { get; }
    }

    /// <summary>The rows of <typeparamref name="TRows"/> for the tile that first reads a tile of B: it packs B as it reads it.</summary>
    private readonly struct PackingB<TRows>(TRows rows) : IRowsOfA where TRows : struct, IRowsOfA
    {
        public nint Offset(int row) => rows.Offset(row);
        public int Step => rows.Step;
        public int Height => rows.Height;
        public int PrefetchSteps => SourcePrefetchSteps;
        public bool PacksB => true;
    }

    /// <summary>
    /// The rows of <typeparamref name="TRows"/> for a tile that reads B's panels from memory: B prefetched ahead, as the packed
    /// twelve-row tiles do (the 2048-wide MLP at batch 128: 4.38 -> 4.31 ms on AVX-512's twelve rows; on AVX2's six, whose
    /// tiles read B twice as often for their multiply-adds, 9.42 -> 8.96 ms, eight rounds in turns). Only there: against
    /// panels that stay in L2 (a wide LSTM's 1 MB recurrent kernel) the prefetches cost 4%.
    /// </summary>
    private readonly struct FetchingB<TRows>(TRows rows) : IRowsOfA where TRows : struct, IRowsOfA
    {
        public nint Offset(int row) => rows.Offset(row);
        public int Step => rows.Step;
        public int Height => rows.Height;
        public int PrefetchSteps => BPrefetchSteps;
        public bool PacksB => false;
    }

    /// <summary>A packed panel of six rows: the rows of one depth step are adjacent.</summary>
    private readonly struct PackedRows : IRowsOfA
    {
        public nint Offset(int row) => row;
        public int Step => RowsPerTile;
        public int Height => RowsPerTile;
        public int PrefetchSteps => 0;
        public bool PacksB => false;
    }

    /// <summary>
    /// A packed panel of twelve rows, for AVX-512's 32 registers: 24 accumulators, two vectors of B and a broadcast. Each step
    /// loads two vectors of B for 24 multiply-adds, half the B traffic of six rows (1024^3 on one core: 108 -> 111 GFLOP/s).
    /// Fourteen rows (28 accumulators, still no spill in the JIT's loop) read a seventh less of B per multiply-add and gained
    /// ~1% on one core at most (2048^3 on the Intel Xeon in blocks of 84 rows: 105.0-106.3 ms against 106.4-107.0), nothing
    /// on two (53.3-55.1 against 53.0-54.1): not worth a layout of their own.
    /// </summary>
    private readonly struct TallPackedRows : IRowsOfA
    {
        public nint Offset(int row) => row;
        public int Step => TallRows;
        public int Height => TallRows;
        public int PrefetchSteps => BPrefetchSteps;
        public bool PacksB => false;
    }

    /// <summary>
    /// A read where A lies: its own row and column strides, <typeparamref name="THeight"/> rows high (six; four for a last one
    /// to four rows, whose eight chains of multiply-adds still fill both FMA units; eight on AVX-512 for a last seven or eight).
    /// A tile of fewer rows than its height (the last of a batch of 64: 5 x 12 + 4) reads its last row again in place of the
    /// missing ones, whose sums are never stored, instead of packing its rows with zeros (4 rows against 6272x32: 45.5 -> 20.8
    /// us; the CNN's dense 64x1600x128 on one core: 237 -> 225 us).
    /// </summary>
    private readonly struct RowsInPlace<THeight>(int row, int step, int rows) : IRowsOfA where THeight : struct, ICount
    {
        private readonly int row = row, last = rows - 1;
        public nint Offset(int r) => (nint)Math.Min(r, last) * row;
        public int Step { get; } = step;
        public int Height => THeight.Value;
        public int PrefetchSteps => 0;
        public bool PacksB => false;
    }

    /// <summary>
    /// Twelve rows read where A lies, on AVX-512: twice the multiply-adds per load of B of six rows (one core: conv2's
    /// 7744x288x64 2.66 -> 2.58 ms, its 288x7744x64 weight gradient 2.86 -> 2.51 ms, 200x64x64 15.2 -> 14.5 us).
    /// </summary>
    private readonly struct TallRowsInPlace(int row, int step) : IRowsOfA
    {
        private readonly int row = row;
        public nint Offset(int r) => (nint)r * row;
        public int Step { get; } = step;
        public int Height => TallRows;
        public int PrefetchSteps => 0;
        public bool PacksB => false;
    }

    /// <summary>Where a depth block sits: the first one starts from bias (or C when accumulating), later ones add to C, the last applies ReLU.</summary>
    private readonly struct Stage(bool first, bool last)
    {
        public readonly bool First = first;
        public readonly bool Last = last;
    }

    /// <summary>
    /// Copies B(pc.., jc..) into panels of <paramref name="tileColumns"/> columns, depth step after depth step,
    /// zero-padded. Reads always run along B's contiguous axis: rows when B is row-major, columns when it is
    /// stored transposed (the input-gradient product). Where <paramref name="streamed"/>, whole tiles of a row-major B are
    /// written past the caches (panels too large to stay in them until they are read).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void PackB<TLanes, TVector>(in Matrix b, int pc, int kc, int jc, int nc, int tileColumns, Span<float> panel, bool streamed = false)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref float source = ref MemoryMarshal.GetReference(b.Data);
        ref float target = ref MemoryMarshal.GetReference(panel);
        int width = TLanes.Count;
        int wholeColumns = b.ColumnStride == 1 ? nc / tileColumns * tileColumns : 0;
        // Whole tiles of a row-major B: a group of rows at a time, each tile's slices of the group copied in registers, so each
        // tile takes 2 KB in a row. Tile by tile over the whole depth, the reads jumped a row's length each step, and a call to
        // memmove per slice cost 6% of a 1024^3 product. Row by row, every row wrote one line pair to each of up to 64 tiles,
        // a tile's 128 KB apart in a 1024-deep block and so all in the same cache sets (twelve rows against 2048x2048 on one
        // core: 5.7 -> 4.5 ms; against 1024x1024 0.89 -> 0.78 ms; no change at 512 columns).
        // Less than a page of each row (a slice of columns): its rows are prefetched, as no hardware prefetcher follows them.
        int ahead = nc * sizeof(float) < PageBytes ? SourcePrefetchSteps : 0;
        nint rowStride = b.RowStride, fetchAhead = ahead * rowStride;
        bool twoVectors = tileColumns == 2 * width;
        for (int group = 0; group < kc && wholeColumns > 0; group += PackedRowGroup)
        {
            int groupEnd = Math.Min(group + PackedRowGroup, kc);
            // Rows prefetched only while the prefetch stays within the block; the row pointer steps, no multiply a row.
            int fetched = ahead > 0 ? Math.Clamp(kc - ahead - group, 0, groupEnd - group) : 0;
            for (int jr = 0; jr < wholeColumns; jr += tileColumns)
            {
                ref float row = ref Unsafe.Add(ref source, (nint)(pc + group) * rowStride + jc + jr);
                ref float packed = ref Unsafe.Add(ref target, (nint)jr * kc + group * tileColumns);
                for (int p = group; p < groupEnd; p++)
                {
                    if (p - group < fetched) PrefetchRow(ref Unsafe.Add(ref row, fetchAhead));
                    CopyVector<TLanes, TVector>(ref row, ref packed, streamed);
                    if (twoVectors) CopyVector<TLanes, TVector>(ref Unsafe.Add(ref row, width), ref Unsafe.Add(ref packed, width), streamed);
                    row = ref Unsafe.Add(ref row, rowStride);
                    packed = ref Unsafe.Add(ref packed, tileColumns);
                }
            }
        }
        if (streamed) Simd.FenceStreamedStores();
        for (int jr = wholeColumns; jr < nc; jr += tileColumns)
        {
            int columns = Math.Min(tileColumns, nc - jr);
            ref float tile = ref Unsafe.Add(ref target, jr * kc);
            if (b.ColumnStride == 1)
            {
                // The last, partial tile (a classifier's 10 columns): masked loads fill the padding with zeros.
                for (int p = 0; p < kc; p++)
                {
                    ref float row = ref Unsafe.Add(ref source, (pc + p) * b.RowStride + jc + jr);
                    ref float packed = ref Unsafe.Add(ref tile, p * tileColumns);
                    for (int j = 0; j < tileColumns; j += width)
                    {
                        int count = Math.Clamp(columns - j, 0, width);
                        TLanes.Store(ref Unsafe.Add(ref packed, j), count == 0 ? TLanes.Zero : TLanes.LoadFirst(ref Unsafe.Add(ref row, j), count));
                    }
                }
                continue;
            }
            // B stored transposed: its tile's columns are rows where it lies, transposed into the panel's depth steps.
            Transpose(ref Unsafe.Add(ref source, (jc + jr) * b.ColumnStride + pc), b.ColumnStride, ref tile, tileColumns, columns, kc);
            if (columns < tileColumns)
            {
                for (int p = 0; p < kc; p++) MemoryMarshal.CreateSpan(ref Unsafe.Add(ref tile, p * tileColumns + columns), tileColumns - columns).Clear();
            }
        }
    }

    /// <summary>One vector copied, past the caches where <paramref name="streamed"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyVector<TLanes, TVector>(ref float from, ref float to, bool streamed) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (streamed) TLanes.StoreStreamed(ref to, TLanes.Load(ref from));
        else TLanes.Store(ref to, TLanes.Load(ref from));
    }

    /// <summary>
    /// Copies A(ic.., pc..) into panels of six rows, depth step after depth step (so the kernel broadcasts
    /// consecutive floats), zero-padded. Reads run along A's contiguous axis in both layouts.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void PackA(in Matrix a, int ic, int mc, int pc, int kc, int panelRows, Span<float> panel)
    {
        ref float source = ref MemoryMarshal.GetReference(a.Data);
        ref float target = ref MemoryMarshal.GetReference(panel);
        for (int ir = 0; ir < mc; ir += panelRows)
        {
            int rows = Math.Min(panelRows, mc - ir);
            ref float tile = ref Unsafe.Add(ref target, ir * kc);
            if (rows < panelRows) MemoryMarshal.CreateSpan(ref tile, panelRows * kc).Clear();
            if (a.RowStride == 1)
            {
                // A stored transposed: the six rows of one depth step are adjacent.
                for (int p = 0; p < kc; p++)
                {
                    ref float step = ref Unsafe.Add(ref source, (pc + p) * a.ColumnStride + ic + ir);
                    for (int r = 0; r < rows; r++) Unsafe.Add(ref tile, p * panelRows + r) = Unsafe.Add(ref step, r);
                }
            }
            else
            {
                // Depth step by depth step, so the panel is written in order (row by row it was written with a stride of a
                // panel's height, which cost ~10% of a 1024^3 product); the rows are read as that many sequential streams.
                Transpose(ref Unsafe.Add(ref source, (ic + ir) * a.RowStride + pc), a.RowStride, ref tile, panelRows, rows, kc);
            }
        }
    }

    /// <summary>
    /// A 6 (or, for a tall layout, 12) x 2-vector tile of C (6 x 32 on AVX-512): the accumulators stay in registers for the
    /// whole depth block; each step loads two vectors of B and broadcasts one float of A per row. The depth loop unrolled by
    /// two (half its scalar instructions beside the 24 multiply-adds) was no faster: 2048^3 on one core of the Intel Xeon, ten
    /// rounds of fresh processes in turns, medians 105.8 against 106.1 ms, the ranges overlapping.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void MicroKernel<TLanes, TVector, TRows>(ref float a, TRows layout, ref float b, int bStep, ref float packedB, int kc, Span<float> c, int ldc, int row, int column,
        int rows, int columns, Stage stage, in Epilogue epilogue, Span<float> spill)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRows : struct, IRowsOfA
    {
        int width = TLanes.Count;
        // The rows are spelled out with their offsets computed once: folded into a six-row helper taking one stride, the
        // in-place layouts recomputed three of the offsets on every depth step.
        nint r1 = layout.Offset(1), r2 = layout.Offset(2), r3 = layout.Offset(3), r4 = layout.Offset(4), r5 = layout.Offset(5), r6 = layout.Offset(6);
        nint r7 = layout.Offset(7), step = layout.Step, bStride = bStep;
        TVector c00 = TLanes.Zero, c01 = TLanes.Zero, c10 = TLanes.Zero, c11 = TLanes.Zero, c20 = TLanes.Zero, c21 = TLanes.Zero;
        TVector c30 = TLanes.Zero, c31 = TLanes.Zero, c40 = TLanes.Zero, c41 = TLanes.Zero, c50 = TLanes.Zero, c51 = TLanes.Zero;
        TVector c60 = TLanes.Zero, c61 = TLanes.Zero, c70 = TLanes.Zero, c71 = TLanes.Zero, c80 = TLanes.Zero, c81 = TLanes.Zero;
        TVector c90 = TLanes.Zero, c91 = TLanes.Zero, cA0 = TLanes.Zero, cA1 = TLanes.Zero, cB0 = TLanes.Zero, cB1 = TLanes.Zero;
        nint ahead = layout.PrefetchSteps * bStride;
        for (int p = kc; p > 0; p--)
        {
            if (layout.PrefetchSteps > 0) PrefetchRow(ref Unsafe.Add(ref b, ahead));
            TVector b0 = TLanes.Load(ref b);
            TVector b1 = TLanes.Load(ref Unsafe.Add(ref b, width));
            if (layout.PacksB)
            {
                TLanes.Store(ref packedB, b0);
                TLanes.Store(ref Unsafe.Add(ref packedB, width), b1);
                packedB = ref Unsafe.Add(ref packedB, 2 * width);
            }
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(a), b0, b1, ref c00, ref c01);
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r1)), b0, b1, ref c10, ref c11);
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r2)), b0, b1, ref c20, ref c21);
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r3)), b0, b1, ref c30, ref c31);
            if (layout.Height > FourRows)
            {
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r4)), b0, b1, ref c40, ref c41);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r5)), b0, b1, ref c50, ref c51);
            }
            // A tall tile's lower six rows at the same offsets from their own start (a packed panel's are just the next six floats);
            // an eight-row tile's eighth where the layout puts it (on the seventh, when there are seven).
            ref float lower = ref Unsafe.Add(ref a, r6);
            if (layout.Height > RowsPerTile)
            {
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(lower), b0, b1, ref c60, ref c61);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(layout.Height == TallRows ? Unsafe.Add(ref lower, r1) : Unsafe.Add(ref a, r7)), b0, b1, ref c70, ref c71);
            }
            if (layout.Height == TallRows)
            {
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref lower, r2)), b0, b1, ref c80, ref c81);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref lower, r3)), b0, b1, ref c90, ref c91);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref lower, r4)), b0, b1, ref cA0, ref cA1);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref lower, r5)), b0, b1, ref cB0, ref cB1);
            }
            a = ref Unsafe.Add(ref a, step);
            b = ref Unsafe.Add(ref b, bStride);
        }

        ref float target = ref MemoryMarshal.GetReference(c);
        if (rows == layout.Height && columns == 2 * width)
        {
            ref float tile = ref Unsafe.Add(ref target, row * ldc + column);
            StoreRow<TLanes, TVector>(ref tile, c00, c01, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, ldc), c10, c11, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 2 * ldc), c20, c21, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 3 * ldc), c30, c31, column, stage, epilogue);
            if (layout.Height == FourRows) return;
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 4 * ldc), c40, c41, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 5 * ldc), c50, c51, column, stage, epilogue);
            if (layout.Height == RowsPerTile) return;
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 6 * ldc), c60, c61, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 7 * ldc), c70, c71, column, stage, epilogue);
            if (layout.Height == EightRows) return;
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 8 * ldc), c80, c81, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 9 * ldc), c90, c91, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 10 * ldc), cA0, cA1, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 11 * ldc), cB0, cB1, column, stage, epilogue);
            return;
        }
        // An edge tile (rows past C's edge, or the last, partial column tile): spilled, and finished out of line.
        ref float s = ref MemoryMarshal.GetReference(spill);
        int stride = 2 * width;
        Spill<TLanes, TVector>(ref s, 0, width, c00, c01); Spill<TLanes, TVector>(ref s, stride, width, c10, c11);
        Spill<TLanes, TVector>(ref s, 2 * stride, width, c20, c21); Spill<TLanes, TVector>(ref s, 3 * stride, width, c30, c31);
        Spill<TLanes, TVector>(ref s, 4 * stride, width, c40, c41); Spill<TLanes, TVector>(ref s, 5 * stride, width, c50, c51);
        // A shorter tile spills its unused (zero) rows too: only edge tiles come here, and the scratch holds twelve rows.
        Spill<TLanes, TVector>(ref s, 6 * stride, width, c60, c61); Spill<TLanes, TVector>(ref s, 7 * stride, width, c70, c71);
        Spill<TLanes, TVector>(ref s, 8 * stride, width, c80, c81); Spill<TLanes, TVector>(ref s, 9 * stride, width, c90, c91);
        Spill<TLanes, TVector>(ref s, 10 * stride, width, cA0, cA1); Spill<TLanes, TVector>(ref s, 11 * stride, width, cB0, cB1);
        FinishEdge<TLanes, TVector>(ref s, stride, ref target, ldc, row, column, rows, columns, stage, epilogue);
    }

    /// <summary>Asks for the two cache lines of a packed two-vector row of B (AVX-512: 128 bytes) before they are loaded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void PrefetchRow(ref float row)
    {
        if (!Sse.IsSupported) return;
        Sse.Prefetch0(Unsafe.AsPointer(ref row));
        Sse.Prefetch0(Unsafe.AsPointer(ref Unsafe.Add(ref row, 16)));
    }

    /// <summary>One row of a tile, one depth step: the row's float of A (broadcast) times B's two vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyRow<TLanes, TVector>(TVector x, TVector b0, TVector b1, ref TVector low, ref TVector high)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        low = TLanes.MultiplyAdd(x, b0, low);
        high = TLanes.MultiplyAdd(x, b1, high);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Spill<TLanes, TVector>(ref float spill, int offset, int width, TVector low, TVector high)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        TLanes.Store(ref Unsafe.Add(ref spill, offset), low);
        TLanes.Store(ref Unsafe.Add(ref spill, offset + width), high);
    }

    /// <summary>
    /// Finishes the valid rows and columns of an edge tile from accumulators spilled <paramref name="stride"/> floats per row:
    /// whole vectors where a row's columns fill them, masked ones in the last. Out of line, so the masked operations' pinned
    /// operands stay out of the micro-kernels' frames (inlined, they gave one a 3 KB frame zeroed on every call).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void FinishEdge<TLanes, TVector>(ref float spilled, int stride, ref float target, int ldc, int row, int column, int rows, int columns, Stage stage, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (column == 0 && ldc == columns && stage.First && !epilogue.Accumulate)
        {
            FinishWholeRows<TLanes, TVector>(ref spilled, stride, ref Unsafe.Add(ref target, row * ldc), rows, columns, stage.Last && epilogue.Relu, epilogue.Bias);
            return;
        }
        int width = TLanes.Count;
        for (int r = 0; r < rows; r++)
        {
            ref float from = ref Unsafe.Add(ref spilled, r * stride);
            ref float to = ref Unsafe.Add(ref target, (row + r) * ldc + column);
            for (int j = 0; j < columns; j += width)
            {
                TVector sum = TLanes.Load(ref Unsafe.Add(ref from, j));
                if (columns - j >= width) FinishStore<TLanes, TVector>(sum, ref Unsafe.Add(ref to, j), column + j, stage, epilogue);
                else FinishStoreFirst<TLanes, TVector>(sum, ref Unsafe.Add(ref to, j), column + j, columns - j, stage, epilogue);
            }
        }
    }

    /// <summary>
    /// <see cref="FinishEdge"/> for a tile of whole rows of C, one after another (a classifier's 10 outputs), written afresh:
    /// each row's last vector is stored whole, over the next rows' first values, which their own stores then write; only a
    /// store that would reach past the tile's last value is masked. No mask is built and no bias loaded per row, where the
    /// masked epilogue did both (the scaling MLP of width 8 at batch 128, three products of 8 or 10 columns, old and new
    /// builds in turns: 4.75-5.38 -> 3.98-4.28 us).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void FinishWholeRows<TLanes, TVector>(ref float spilled, int stride, ref float tile, int rows, int columns, bool relu, ReadOnlySpan<float> bias)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, whole = (columns - 1) / width * width, last = columns - whole;
        ref float biases = ref MemoryMarshal.GetReference(bias);
        bool biased = !bias.IsEmpty;
        var lastBias = biased ? TLanes.LoadFirst(ref Unsafe.Add(ref biases, whole), last) : TLanes.Zero;
        // A last vector starting at or before this offset ends within the tile.
        int inside = rows * columns - width;
        for (int r = 0; r < rows; r++)
        {
            ref float from = ref Unsafe.Add(ref spilled, r * stride);
            ref float to = ref Unsafe.Add(ref tile, r * columns);
            for (int j = 0; j < whole; j += width)
            {
                var vector = TLanes.Load(ref Unsafe.Add(ref from, j));
                if (biased) vector = TLanes.Add(vector, TLanes.Load(ref Unsafe.Add(ref biases, j)));
                TLanes.Store(ref Unsafe.Add(ref to, j), relu ? TLanes.Relu(vector) : vector);
            }
            var sum = TLanes.Load(ref Unsafe.Add(ref from, whole));
            if (biased) sum = TLanes.Add(sum, lastBias);
            if (relu) sum = TLanes.Relu(sum);
            if (r * columns + whole <= inside) TLanes.Store(ref Unsafe.Add(ref to, whole), sum);
            else TLanes.StoreFirst(ref Unsafe.Add(ref to, whole), sum, last);
        }
    }

    /// <summary>
    /// The micro-kernel for products at most one vector wide: a 6 (tall: 12) x 1-vector tile, one accumulator per row, one load
    /// of B and a broadcast of A per row and step. Six chains of dependent multiply-adds keep the two FMA units at most
    /// three-quarters busy, twelve can fill them (a classifier's 200x64x10 product: 6.3 -> 5.4 us). Its only column tile
    /// starts at column 0. On AVX-512, tiles of sixteen rows at most twelve columns wide go a column at a time instead
    /// (Gemm.Columns.cs), to the same bits; this kernel takes the rows left over.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void NarrowKernel<TLanes, TVector, TRows>(ref float a, TRows layout, ref float b, int bStep, int kc, Span<float> c, int ldc, int row,
        int rows, int columns, Stage stage, in Epilogue epilogue, Span<float> spill)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRows : struct, IRowsOfA
    {
        int width = TLanes.Count;
        // Native-width offsets: no sign extension per load in the loop, and fewer registers to spill.
        nint r1 = layout.Offset(1), r2 = layout.Offset(2), r3 = layout.Offset(3), r4 = layout.Offset(4), r5 = layout.Offset(5);
        nint r7 = layout.Offset(7), step = layout.Step, bStride = bStep;
        // The lower six rows of a tall tile, at the same offsets from their own start; an eight-row tile's eighth at r7.
        ref float lower = ref layout.Height > RowsPerTile ? ref Unsafe.Add(ref a, layout.Offset(6)) : ref a;
        TVector c0 = TLanes.Zero, c1 = TLanes.Zero, c2 = TLanes.Zero, c3 = TLanes.Zero, c4 = TLanes.Zero, c5 = TLanes.Zero;
        TVector c6 = TLanes.Zero, c7 = TLanes.Zero, c8 = TLanes.Zero, c9 = TLanes.Zero, cA = TLanes.Zero, cB = TLanes.Zero;
        for (int p = kc; p > 0; p--)
        {
            TVector b0 = TLanes.Load(ref b);
            c0 = TLanes.MultiplyAdd(TLanes.Broadcast(a), b0, c0);
            c1 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r1)), b0, c1);
            c2 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r2)), b0, c2);
            c3 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r3)), b0, c3);
            if (layout.Height > FourRows)
            {
                c4 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r4)), b0, c4);
                c5 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r5)), b0, c5);
            }
            if (layout.Height > RowsPerTile)
            {
                c6 = TLanes.MultiplyAdd(TLanes.Broadcast(lower), b0, c6);
                c7 = TLanes.MultiplyAdd(TLanes.Broadcast(layout.Height == TallRows ? Unsafe.Add(ref lower, r1) : Unsafe.Add(ref a, r7)), b0, c7);
            }
            if (layout.Height == TallRows)
            {
                c8 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref lower, r2)), b0, c8);
                c9 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref lower, r3)), b0, c9);
                cA = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref lower, r4)), b0, cA);
                cB = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref lower, r5)), b0, cB);
            }
            if (layout.Height > RowsPerTile) lower = ref Unsafe.Add(ref lower, step);
            a = ref Unsafe.Add(ref a, step);
            b = ref Unsafe.Add(ref b, bStride);
        }

        ref float target = ref MemoryMarshal.GetReference(c);
        if (rows == layout.Height && columns == width)
        {
            ref float tile = ref Unsafe.Add(ref target, row * ldc);
            FinishStore<TLanes, TVector>(c0, ref tile, 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c1, ref Unsafe.Add(ref tile, ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c2, ref Unsafe.Add(ref tile, 2 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c3, ref Unsafe.Add(ref tile, 3 * ldc), 0, stage, epilogue);
            if (layout.Height == FourRows) return;
            FinishStore<TLanes, TVector>(c4, ref Unsafe.Add(ref tile, 4 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c5, ref Unsafe.Add(ref tile, 5 * ldc), 0, stage, epilogue);
            if (layout.Height == RowsPerTile) return;
            FinishStore<TLanes, TVector>(c6, ref Unsafe.Add(ref tile, 6 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c7, ref Unsafe.Add(ref tile, 7 * ldc), 0, stage, epilogue);
            if (layout.Height == EightRows) return;
            FinishStore<TLanes, TVector>(c8, ref Unsafe.Add(ref tile, 8 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c9, ref Unsafe.Add(ref tile, 9 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(cA, ref Unsafe.Add(ref tile, 10 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(cB, ref Unsafe.Add(ref tile, 11 * ldc), 0, stage, epilogue);
            return;
        }
        // An edge tile (a classifier's 10 columns of 16 lanes, or rows past C's edge): spilled, and finished out of line.
        ref float s = ref MemoryMarshal.GetReference(spill);
        TLanes.Store(ref s, c0); TLanes.Store(ref Unsafe.Add(ref s, width), c1); TLanes.Store(ref Unsafe.Add(ref s, 2 * width), c2);
        TLanes.Store(ref Unsafe.Add(ref s, 3 * width), c3); TLanes.Store(ref Unsafe.Add(ref s, 4 * width), c4); TLanes.Store(ref Unsafe.Add(ref s, 5 * width), c5);
        TLanes.Store(ref Unsafe.Add(ref s, 6 * width), c6); TLanes.Store(ref Unsafe.Add(ref s, 7 * width), c7); TLanes.Store(ref Unsafe.Add(ref s, 8 * width), c8);
        TLanes.Store(ref Unsafe.Add(ref s, 9 * width), c9); TLanes.Store(ref Unsafe.Add(ref s, 10 * width), cA); TLanes.Store(ref Unsafe.Add(ref s, 11 * width), cB);
        FinishEdge<TLanes, TVector>(ref s, width, ref target, ldc, row, 0, rows, columns, stage, epilogue);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<TLanes, TVector>(ref float destination, TVector low, TVector high, int column, Stage stage, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        TLanes.Store(ref destination, FinishVector<TLanes, TVector>(low, ref destination, column, stage, epilogue));
        ref float next = ref Unsafe.Add(ref destination, width);
        TLanes.Store(ref next, FinishVector<TLanes, TVector>(high, ref next, column + width, stage, epilogue));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector FinishVector<TLanes, TVector>(TVector sum, ref float destination, int column, Stage stage, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (!stage.First || epilogue.Accumulate) sum = TLanes.Add(sum, TLanes.Load(ref destination));
        if (stage.First && !epilogue.Bias.IsEmpty) sum = TLanes.Add(sum, TLanes.Load(ref Unsafe.Add(ref MemoryMarshal.GetReference(epilogue.Bias), column)));
        if (stage.Last && epilogue.Relu) sum = TLanes.Relu(sum);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FinishStore<TLanes, TVector>(TVector sum, ref float destination, int column, Stage stage, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct =>
        TLanes.Store(ref destination, FinishVector<TLanes, TVector>(sum, ref destination, column, stage, epilogue));

    /// <summary><see cref="FinishStore"/> for the first <paramref name="count"/> lanes only: nothing past them is read or written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FinishStoreFirst<TLanes, TVector>(TVector sum, ref float destination, int column, int count, Stage stage, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (!stage.First || epilogue.Accumulate) sum = TLanes.Add(sum, TLanes.LoadFirst(ref destination, count));
        if (stage.First && !epilogue.Bias.IsEmpty) sum = TLanes.Add(sum, TLanes.LoadFirst(ref Unsafe.Add(ref MemoryMarshal.GetReference(epilogue.Bias), column), count));
        if (stage.Last && epilogue.Relu) sum = TLanes.Relu(sum);
        TLanes.StoreFirst(ref destination, sum, count);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish(float sum, float existing, int column, Stage stage, in Epilogue epilogue)
    {
        if (!stage.First || epilogue.Accumulate) sum += existing;
        if (stage.First && !epilogue.Bias.IsEmpty) sum += epilogue.Bias[column];
        if (stage.Last && epilogue.Relu) sum = MathF.Max(sum, 0f);
        return sum;
    }
}
