using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Threading;

namespace ModelGen.Kernels;

/// <summary>
/// Single-precision matrix products on row-major data, in the three forms a dense layer's forward and
/// backward passes need, without materialising a transpose:
/// <list type="bullet">
/// <item><see cref="Multiply"/>: C(m,n) = A(m,k)·B(k,n) (+ bias, optional ReLU) — forward.</item>
/// <item><see cref="MultiplyTransposedA"/>: C(m,n) = Aᵀ·B with A stored (k,m) — kernel gradient.</item>
/// <item><see cref="MultiplyTransposedB"/>: C(m,n) = A·Bᵀ with B stored (n,k) — input gradient.</item>
/// </list>
/// Every form either overwrites C or, with <c>accumulate</c>, adds to it (shared weights sum gradients).
/// Large products go through one packed, cache-blocked path: packing copies blocks of A and B into the
/// order the register-blocked micro-kernel reads them, which is also where the transposes are absorbed.
/// Products of a few rows (batch 1 inference) stream B once per row instead, with no packing.
/// </summary>
public static class Gemm
{
    public static void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n,
        ReadOnlySpan<float> bias = default, bool relu = false, bool accumulate = false)
    {
        Check(a.Length >= m * k && b.Length >= k * n && c.Length >= m * n && (bias.IsEmpty || bias.Length >= n), m, k, n);
        Dispatch(new Matrix(a, k, 1), new Matrix(b, n, 1), c, m, k, n, new Epilogue(bias, relu, accumulate));
    }

    public static void MultiplyTransposedA(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, bool accumulate = false)
    {
        Check(a.Length >= k * m && b.Length >= k * n && c.Length >= m * n, m, k, n);
        Dispatch(new Matrix(a, 1, m), new Matrix(b, n, 1), c, m, k, n, new Epilogue(default, false, accumulate));
    }

    public static void MultiplyTransposedB(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, bool accumulate = false)
    {
        Check(a.Length >= m * k && b.Length >= n * k && c.Length >= m * n, m, k, n);
        Dispatch(new Matrix(a, k, 1), new Matrix(b, 1, k), c, m, k, n, new Epilogue(default, false, accumulate));
    }

    private static void Check(bool ok, int m, int k, int n)
    {
        if (!ok) throw new ArgumentException($"Gemm operands too short for m={m}, k={k}, n={n}.");
    }

    /// <summary>A strided view: element (row, column) is at <c>Data[row * RowStride + column * ColumnStride]</c>.</summary>
    private readonly ref struct Matrix(ReadOnlySpan<float> data, int rowStride, int columnStride)
    {
        public readonly ReadOnlySpan<float> Data = data;
        public readonly int RowStride = rowStride;
        public readonly int ColumnStride = columnStride;
    }

    /// <summary>What happens to a finished tile before it is stored.</summary>
    private readonly ref struct Epilogue(ReadOnlySpan<float> bias, bool relu, bool accumulate)
    {
        public readonly ReadOnlySpan<float> Bias = bias;
        public readonly bool Relu = relu;
        public readonly bool Accumulate = accumulate;
    }

    private static void Dispatch(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
    {
        switch (Simd.Current)
        {
            case SimdPath.Avx512: Run<Lanes512, Vector512<float>>(a, b, c, m, k, n, epilogue); break;
            case SimdPath.Avx2: Run<Lanes256, Vector256<float>>(a, b, c, m, k, n, epilogue); break;
            default: Run<Lanes128, Vector128<float>>(a, b, c, m, k, n, epilogue); break;
        }
    }

    /// <summary>Rows below this stream B per row; from here on packing B pays for itself.</summary>
    private const int StreamingRows = 4;

    /// <summary>
    /// Multiply-adds from which a product is cut into parts the helper thread may share. Measured on the 2-vCPU machine with
    /// the helper awake (during a training step it is): 200x64x64 (0.8M) 15.5 -> 11 us, 128x784x256 550 -> 340 us,
    /// 7744x288x64 2.8 -> 1.5 ms; below about 0.2M the hand-off costs as much as it saves (128x10x128 6.4 -> 8.7 us).
    /// </summary>
    private const long ParallelWork = 1_000_000;

    private static void Run<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (m >= StreamingRows && (long)m * n * k >= ParallelWork && IsDeep(m, k, n, epilogue)) RunInDepthParts<TLanes, TVector>(a, b, c, m, k, n, epilogue);
        else if (m >= StreamingRows && (long)m * n * k >= ParallelWork) RunInParts<TLanes, TVector>(a, b, c, m, k, n, epilogue);
        else if (m < StreamingRows && b.ColumnStride == 1 && (long)m * n * k >= StreamingParallelWork && n >= 2 * StreamingColumns<TLanes, TVector>(n) && Helper.Threads > 1) StreamInParts<TLanes, TVector>(a, b, c, m, k, n, epilogue);
        else RunRows<TLanes, TVector>(a, b, c, m, k, n, epilogue);
    }

    /// <summary>
    /// A product far deeper than it is tall or wide: a weight gradient summed over thousands of positions (a convolution's
    /// 288x7744x64 and 9x43264x32). Cut into rows or columns, each core would read all of the deep operands; cut along the
    /// depth, each reads its share and writes a small partial C. Only where nothing but a sum follows (no bias, no ReLU).
    /// </summary>
    private static bool IsDeep(int m, int k, int n, in Epilogue epilogue) =>
        epilogue.Bias.IsEmpty && !epilogue.Relu && k >= 8 * Math.Max(m, n) && k >= 2 * DepthPart;

    /// <summary>Depth of one part of a deep product, at least: enough work to be worth a hand-off and a partial C.</summary>
    private const int DepthPart = 1024;

    [ThreadStatic] private static AlignedBuffer? partialSums;

    /// <summary>
    /// Computes a deep product as partial products over slices of the depth, which both cores claim, then adds the partials
    /// into C in slice order. The slices depend only on the shape, so the sum is the same bit for bit on any thread count.
    /// </summary>
    private static unsafe void RunInDepthParts<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int parts = Math.Min(8, k / DepthPart) & ~1, size = m * n; // an even count, so two cores can split it evenly
        int depth = (k + parts - 1) / parts;
        var partials = AlignedBuffer.Ensure(ref partialSums, parts * size);
        fixed (float* pa = a.Data, pb = b.Data, pp = partials)
        {
            var job = new DepthJob(pa, a, pb, b, pp, depth, m, k, n);
            Helper.For(parts, &RunDepthPart<TLanes, TVector>, &job);
        }
        var sum = c.Slice(0, size);
        if (epilogue.Accumulate) System.Numerics.Tensors.TensorPrimitives.Add(sum, partials.Slice(0, size), sum);
        else partials.Slice(0, size).CopyTo(sum);
        for (int part = 1; part < parts; part++) System.Numerics.Tensors.TensorPrimitives.Add(sum, partials.Slice(part * size, size), sum);
    }

    private readonly unsafe struct DepthJob(float* a, in Matrix aLayout, float* b, in Matrix bLayout, float* partials, int depth, int m, int k, int n)
    {
        public readonly float* A = a, B = b, Partials = partials;
        public readonly int ARowStride = aLayout.RowStride, AColumnStride = aLayout.ColumnStride, ALength = aLayout.Data.Length;
        public readonly int BRowStride = bLayout.RowStride, BColumnStride = bLayout.ColumnStride, BLength = bLayout.Data.Length;
        public readonly int Depth = depth, M = m, K = k, N = n;
    }

    /// <summary>Part <paramref name="index"/>: A's columns and B's rows [index·depth, +depth) into the part's own partial C.</summary>
    private static unsafe void RunDepthPart<TLanes, TVector>(void* state, int index, int worker)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly DepthJob job = ref *(DepthJob*)state;
        int first = index * job.Depth, depth = Math.Min(job.Depth, job.K - first);
        int aOffset = first * job.AColumnStride, bOffset = first * job.BRowStride;
        var a = new Matrix(new ReadOnlySpan<float>(job.A + aOffset, job.ALength - aOffset), job.ARowStride, job.AColumnStride);
        var b = new Matrix(new ReadOnlySpan<float>(job.B + bOffset, job.BLength - bOffset), job.BRowStride, job.BColumnStride);
        var partial = new Span<float>(job.Partials + (long)index * job.M * job.N, job.M * job.N);
        Packed<TLanes, TVector>(a, b, partial, job.M, depth, job.N, job.N, new Epilogue(default, false, false), RowClaim.All(job.M));
    }

    /// <summary>
    /// Multiply-adds from which a few rows streamed against B (batch-1 inference) are shared by both cores, each taking its
    /// own slices of B's columns: each core then streams half the weights, from its own cache when they stay there between
    /// calls (the MLP's 784x256 layer at batch 1: 11.5 -> 7.7 us; the CNN's 1600x128 dense layer: 10.8 -> 8.1 us). Each column's
    /// sum is computed the same way in any slice, so on one thread the product is simply not sliced.
    /// </summary>
    private const long StreamingParallelWork = 100_000;

    /// <summary>
    /// Columns per streamed slice: the streaming loop's eight vectors where that still makes two slices, else four (the CNN's
    /// 1600x128 dense layer), which it still runs as four independent chains.
    /// </summary>
    private static int StreamingColumns<TLanes, TVector>(int n) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        (n >= 16 * TLanes.Count ? 8 : 4) * TLanes.Count;

    private static unsafe void StreamInParts<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int slice = StreamingColumns<TLanes, TVector>(n);
        fixed (float* pa = a.Data, pb = b.Data, pc = c, pbias = epilogue.Bias)
        {
            var job = new Job(pa, a, pb, b, pc, pbias, epilogue, next: null, slice, byColumns: true, m, k, n); // Helper.For counts the slices
            Helper.For((n + slice - 1) / slice, &StreamSlice<TLanes, TVector>, &job);
        }
    }

    /// <summary>One slice of columns of a streamed product: every row against B's columns [index·slice, +slice).</summary>
    private static unsafe void StreamSlice<TLanes, TVector>(void* state, int index, int worker)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly Job job = ref *(Job*)state;
        int first = index * job.PartSize, columns = Math.Min(job.PartSize, job.N - first);
        var a = new Matrix(new ReadOnlySpan<float>(job.A, job.ALength), job.ARowStride, job.AColumnStride);
        var b = new Matrix(new ReadOnlySpan<float>(job.B + first, job.BLength - first), job.BRowStride, 1);
        var bias = new ReadOnlySpan<float>(job.Bias, job.BiasLength);
        var epilogue = new Epilogue(bias.IsEmpty ? bias : bias.Slice(first), job.Relu, job.Accumulate);
        var c = new Span<float>(job.C, job.M * job.N);
        for (int i = 0; i < job.M; i++) StreamRow<TLanes, TVector>(a, i, b, c.Slice(i * job.N + first, columns), job.K, columns, epilogue);
    }

    /// <summary>
    /// Cuts a product into parts that this thread and the helper claim from one counter until none remain, so a late or
    /// slow helper costs at most one part, and a busy one none: this thread then runs every part itself. The parts depend
    /// only on the shape, so the result is the same bit for bit however many threads took part. A wide product is cut into
    /// slices of columns, each with its own slice of B to pack (a dense layer's batch of 128 rows against 256 or 784
    /// columns); a narrow one into blocks of rows, for which both threads pack all of B (a convolution's thousands of
    /// patches against 64 filters).
    /// </summary>
    private static unsafe void RunInParts<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int tileColumns = 2 * TLanes.Count;
        int tilesWide = (n + tileColumns - 1) / tileColumns;
        int tilesTall = (m + RowsPerTile - 1) / RowsPerTile;
        bool byColumns = tilesWide >= 4 && tilesWide * 4 >= tilesTall;
        int partSize = byColumns
            ? Math.Min(StreamingColumnTiles, Math.Max(1, tilesWide / 6)) * tileColumns
            : Math.Max(RowsPerTile, Math.Min(RowBlock, m / 8 / RowsPerTile * RowsPerTile));
        int next = 0;
        fixed (float* pa = a.Data, pb = b.Data, pc = c, pbias = epilogue.Bias)
        {
            var job = new Job(pa, a, pb, b, pc, pbias, epilogue, &next, partSize, byColumns, m, k, n);
            if (!Helper.TryShare(&RunJob<TLanes, TVector>, &job)) RunJob<TLanes, TVector>(&job);
        }
    }

    /// <summary>One shared product, as pointers (the caller keeps everything pinned until every part that started has finished).</summary>
    private readonly unsafe struct Job(float* a, in Matrix aLayout, float* b, in Matrix bLayout, float* c, float* bias, in Epilogue epilogue,
        int* next, int partSize, bool byColumns, int m, int k, int n)
    {
        public readonly float* A = a, B = b, C = c, Bias = bias;
        public readonly int ARowStride = aLayout.RowStride, AColumnStride = aLayout.ColumnStride, ALength = aLayout.Data.Length;
        public readonly int BRowStride = bLayout.RowStride, BColumnStride = bLayout.ColumnStride, BLength = bLayout.Data.Length;
        public readonly int BiasLength = epilogue.Bias.Length;
        public readonly bool Relu = epilogue.Relu, Accumulate = epilogue.Accumulate;
        public readonly int* Next = next;
        public readonly int PartSize = partSize, M = m, K = k, N = n;
        public readonly bool ByColumns = byColumns;
    }

    private static unsafe void RunJob<TLanes, TVector>(void* state)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly Job job = ref *(Job*)state;
        var a = new Matrix(new ReadOnlySpan<float>(job.A, job.ALength), job.ARowStride, job.AColumnStride);
        var b = new ReadOnlySpan<float>(job.B, job.BLength);
        var c = new Span<float>(job.C, job.M * job.N);
        var bias = new ReadOnlySpan<float>(job.Bias, job.BiasLength);
        if (!job.ByColumns)
        {
            var epilogue = new Epilogue(bias, job.Relu, job.Accumulate);
            Packed<TLanes, TVector>(a, new Matrix(b, job.BRowStride, job.BColumnStride), c, job.M, job.K, job.N, job.N, epilogue,
                new RowClaim(job.Next, job.PartSize, job.M));
            return;
        }
        int first;
        while ((first = Interlocked.Add(ref *job.Next, job.PartSize) - job.PartSize) < job.N)
        {
            // A slice is a product of its own: B, C and the bias start at its first column, C keeps its full row stride.
            int columns = Math.Min(job.PartSize, job.N - first);
            var slice = new Matrix(b.Slice(first * job.BColumnStride), job.BRowStride, job.BColumnStride);
            var epilogue = new Epilogue(bias.IsEmpty ? bias : bias.Slice(first), job.Relu, job.Accumulate);
            Packed<TLanes, TVector>(a, slice, c.Slice(first), job.M, job.K, columns, job.N, epilogue, RowClaim.All(job.M));
        }
    }

    /// <summary>Hands out blocks of rows: all of them at once for one thread, one block at a time from a shared counter for two.</summary>
    private readonly unsafe struct RowClaim(int* next, int blockRows, int rows)
    {
        /// <summary>Every row in one block: the single-threaded case.</summary>
        public static RowClaim All(int rows) => new(null, 0, rows);

        private readonly int* next = next;
        private readonly int blockRows = blockRows, rows = rows;

        public bool Next(ref int single, out int first, out int count)
        {
            if (next is null)
            {
                first = single;
                count = rows - single;
                single = rows;
                return count > 0;
            }
            first = Interlocked.Add(ref *next, blockRows) - blockRows;
            count = Math.Min(blockRows, rows - first);
            return count > 0;
        }
    }

    private static void RunRows<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (m < StreamingRows && b.ColumnStride == 1)
        {
            for (int i = 0; i < m; i++) StreamRow<TLanes, TVector>(a, i, b, c.Slice(i * n, n), k, n, epilogue);
        }
        else if (m < StreamingRows)
        {
            for (int i = 0; i < m; i++) DotRow<TLanes, TVector>(a, i, b, c.Slice(i * n, n), k, n, epilogue);
        }
        else
        {
            Packed<TLanes, TVector>(a, b, c, m, k, n, n, epilogue, RowClaim.All(m));
        }
    }

    // ---- Packed path -------------------------------------------------------------------------------

    private const int RowsPerTile = 6;       // MR: rows of A per micro-kernel tile
    private const int TallRows = 12;         // MR of the twelve-row kernel (packed A, AVX-512)
    // KC: depth of one block. Each block reads and writes C once more; with A packed that traffic cost more than keeping a
    // B micro-panel in L1: 2048^3 on one core ran at 84-88 GFLOP/s with 256 (a 32 KB panel), 94-95 with 512, 100-105 with
    // 1024 (a 128 KB panel streamed from L2), the MLP's 128x784x256 at 82-88, 89-91, 92-94. A read in place is different:
    // a tile of a transposed A touches a cache line per step, and 256 steps of lines stay in L1 for the next tile
    // (a convolution's 288x7744x64 weight gradient: 4.3 ms with 256, 5.8 with 1024). Rechecked with the twelve-row kernel:
    // 1024^3 at 113 / 115 / 118 GFLOP/s with 256 / 512 / 1024.
    private const int DepthBlock = 1024;
    private const int StreamingDepthBlock = 256;
    private const int RowBlock = 96;         // MC: rows of A packed at once (96 x 1024 floats = 384 KB: L2)
    private const int ColumnBlock = 2048;    // NC: columns per pass over A (2048^3: A packed once, not twice: 110 -> 113 GFLOP/s)

    [ThreadStatic] private static AlignedBuffer? packedA;
    [ThreadStatic] private static AlignedBuffer? packedB;

    /// <summary>
    /// A pinned scratch array whose usable part starts on a 64-byte boundary, so no 512-bit load of a packed
    /// panel straddles two cache lines. One per thread, grown when a larger product needs it.
    /// </summary>
    private sealed class AlignedBuffer
    {
        private readonly float[] array;
        private readonly int start;

        public unsafe AlignedBuffer(int length)
        {
            array = GC.AllocateUninitializedArray<float>(length + 16, pinned: true);
            fixed (float* first = array) start = (int)((64 - ((nint)first & 63)) & 63) / sizeof(float);
        }

        public int Length => array.Length - 16;
        public Span<float> Span => array.AsSpan(start, Length);

        public static Span<float> Ensure(ref AlignedBuffer? buffer, int length)
        {
            if (buffer is null || buffer.Length < length) buffer = new AlignedBuffer(length);
            return buffer.Span;
        }
    }

    /// <summary>
    /// All of B is packed first (each depth block of each column block in turn), then rows of C are computed block by
    /// block as <paramref name="claim"/> hands them out; a depth block's partial sums stay in C between stages.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void Packed<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, int ldc, in Epilogue epilogue, RowClaim claim)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        // NR: two vectors of columns; one when the product is that narrow (a classifier's 10 outputs would waste two thirds
        // of a two-vector tile).
        bool narrow = n <= TLanes.Count;
        int tileColumns = (narrow ? 1 : 2) * TLanes.Count;
        int paddedColumns = (n + tileColumns - 1) / tileColumns * tileColumns;
        // Few column tiles use each packed row only a few times: packing A would cost more than it saves (a convolution's
        // 7744 x 288 patches against 64 filters), so whole tiles read A where it lies. Packing a transposed A is a gather and
        // costs more, so it streams up to twice as wide.
        bool streamA = Math.Min(n, ColumnBlock) <= (a.RowStride == 1 ? 2 : 1) * StreamingColumnTiles * tileColumns;
        int depthBlock = streamA ? StreamingDepthBlock : DepthBlock;
        // With A packed and 32 vector registers, tiles of twelve rows: half the B traffic per multiply-add of six-row tiles.
        bool tall = !streamA && !narrow && TLanes.Count == 16;
        int panelRows = tall ? TallRows : RowsPerTile;
        var aPanel = AlignedBuffer.Ensure(ref packedA, RowBlock * DepthBlock);
        // A B whose rows are exactly one tile and adjacent is already in the packed order, so it is read in place, not copied
        // (the first convolution's weight gradient packed 43,264 rows of 32 output gradients: 1.16 -> 0.79 ms). Anything else
        // stays packed: tile rows a longer row apart, read in place, fall in a fraction of L1's sets (two tiles: 1.47 -> 1.93 ms).
        bool bInPlace = b.ColumnStride == 1 && b.RowStride == tileColumns && n == tileColumns;
        int bStep = bInPlace ? b.RowStride : tileColumns;
        var bPanel = bInPlace ? default : AlignedBuffer.Ensure(ref packedB, k * paddedColumns);
        Span<float> spill = stackalloc float[TallRows * 32];

        int offset = 0;
        for (int jc = 0; jc < n; jc += ColumnBlock)
        {
            int nc = Math.Min(ColumnBlock, n - jc);
            for (int pc = 0; pc < k; pc += depthBlock)
            {
                int kc = Math.Min(depthBlock, k - pc);
                if (!bInPlace) PackB<TLanes, TVector>(b, pc, kc, jc, nc, tileColumns, bPanel.Slice(offset));
                offset += kc * ((nc + tileColumns - 1) / tileColumns * tileColumns);
            }
        }

        int single = 0;
        while (claim.Next(ref single, out int firstRow, out int rows))
        {
            offset = 0;
            for (int jc = 0; jc < n; jc += ColumnBlock)
            {
                int nc = Math.Min(ColumnBlock, n - jc);
                for (int pc = 0; pc < k; pc += depthBlock)
                {
                    int kc = Math.Min(depthBlock, k - pc);
                    var bBlock = bInPlace ? default : bPanel.Slice(offset);
                    offset += kc * ((nc + tileColumns - 1) / tileColumns * tileColumns);
                    var stage = new Stage(first: pc == 0, last: pc + kc >= k);
                    for (int ic = firstRow; ic < firstRow + rows; ic += RowBlock)
                    {
                        int mc = Math.Min(RowBlock, firstRow + rows - ic);
                        int wholeRows = streamA ? mc / RowsPerTile * RowsPerTile : 0;
                        if (wholeRows < mc) PackA(a, ic + wholeRows, mc - wholeRows, pc, kc, panelRows, aPanel);
                        for (int jr = 0; jr < nc; jr += tileColumns)
                        {
                            ref float bTile = ref bInPlace
                                ? ref Unsafe.Add(ref MemoryMarshal.GetReference(b.Data), pc * b.RowStride + jc + jr)
                                : ref bBlock[jr * kc];
                            int columns = Math.Min(tileColumns, nc - jr);
                            for (int ir = 0; ir < mc; ir += panelRows)
                            {
                                int tileRows = Math.Min(panelRows, mc - ir);
                                if (tall) MicroKernel<TLanes, TVector, TallPackedRows>(ref aPanel[ir * kc], default, ref bTile, bStep, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                else if (ir < wholeRows)
                                {
                                    ref float rowsOfA = ref Unsafe.Add(ref MemoryMarshal.GetReference(a.Data), (ic + ir) * a.RowStride + pc * a.ColumnStride);
                                    if (narrow) NarrowKernel<TLanes, TVector, RowsInPlace>(ref rowsOfA, new RowsInPlace(a.RowStride, a.ColumnStride), ref bTile, bStep, kc, c, ldc, ic + ir, tileRows, columns, stage, epilogue, spill);
                                    else MicroKernel<TLanes, TVector, RowsInPlace>(ref rowsOfA, new RowsInPlace(a.RowStride, a.ColumnStride), ref bTile, bStep, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                }
                                else
                                {
                                    if (narrow) NarrowKernel<TLanes, TVector, PackedRows>(ref aPanel[(ir - wholeRows) * kc], default, ref bTile, bStep, kc, c, ldc, ic + ir, tileRows, columns, stage, epilogue, spill);
                                    else MicroKernel<TLanes, TVector, PackedRows>(ref aPanel[(ir - wholeRows) * kc], default, ref bTile, bStep, kc, c, ldc, ic + ir, jc + jr, tileRows, columns, stage, epilogue, spill);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Products at most this many column tiles wide read whole row tiles of A in place instead of packing them. Measured on
    /// AVX-512 (4 tiles = 128 columns): 7744x288x64 5.0 -> 3.0 ms; 128x128x256 0.107 -> 0.077 ms; at 256 columns streaming a
    /// row-major A lost (1024x1024x256 4.9 -> 5.4 ms) while a transposed one still won (8.3 -> 5.6 ms).
    /// </summary>
    private const int StreamingColumnTiles = 4;

    /// <summary>
    /// Where the micro-kernel finds element (r, p) of its six rows of A: at <c>r * Row + p * Step</c>. A struct type argument, so
    /// the JIT compiles the packed layout with its constant strides and the in-place one with the matrix's.
    /// </summary>
    private interface IRowsOfA
    {
        int Row { get; }
        int Step { get; }
        /// <summary>Twelve rows per tile instead of six (a packed panel on AVX-512); a constant per layout, so the JIT drops the other rows.</summary>
        bool Tall { get; }
    }

    /// <summary>A packed panel of six rows: the rows of one depth step are adjacent.</summary>
    private readonly struct PackedRows : IRowsOfA
    {
        public int Row => 1;
        public int Step => RowsPerTile;
        public bool Tall => false;
    }

    /// <summary>
    /// A packed panel of twelve rows, for AVX-512's 32 registers: 24 accumulators, two vectors of B and a broadcast. Each step
    /// loads two vectors of B for 24 multiply-adds, half the B traffic of six rows (1024^3 on one core: 108 -> 111 GFLOP/s).
    /// </summary>
    private readonly struct TallPackedRows : IRowsOfA
    {
        public int Row => 1;
        public int Step => TallRows;
        public bool Tall => true;
    }

    /// <summary>A read where A lies: its own row and column strides.</summary>
    private readonly struct RowsInPlace(int row, int step) : IRowsOfA
    {
        public int Row { get; } = row;
        public int Step { get; } = step;
        public bool Tall => false;
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
    /// stored transposed (the input-gradient product).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void PackB<TLanes, TVector>(in Matrix b, int pc, int kc, int jc, int nc, int tileColumns, Span<float> panel)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref float source = ref MemoryMarshal.GetReference(b.Data);
        ref float target = ref MemoryMarshal.GetReference(panel);
        int width = TLanes.Count;
        int wholeColumns = b.ColumnStride == 1 ? nc / tileColumns * tileColumns : 0;
        // Whole tiles of a row-major B: row by row, each read in order and its tiles' slices copied in registers (tile by tile,
        // the reads jumped a row's length each step, and a call to memmove per slice cost 6% of a 1024^3 product).
        for (int p = 0; p < kc && wholeColumns > 0; p++)
        {
            ref float row = ref Unsafe.Add(ref source, (pc + p) * b.RowStride + jc);
            for (int jr = 0; jr < wholeColumns; jr += tileColumns)
            {
                ref float packed = ref Unsafe.Add(ref target, jr * kc + p * tileColumns);
                for (int j = 0; j < tileColumns; j += width) TLanes.Store(ref Unsafe.Add(ref packed, j), TLanes.Load(ref Unsafe.Add(ref row, jr + j)));
            }
        }
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
            // B stored transposed: depth step by depth step, so the panel is written in order; the tile's columns are read as
            // sequential streams.
            ref float first = ref Unsafe.Add(ref source, (jc + jr) * b.ColumnStride + pc * b.RowStride);
            for (int p = 0; p < kc; p++)
            {
                ref float step = ref Unsafe.Add(ref first, p * b.RowStride);
                ref float packed = ref Unsafe.Add(ref tile, p * tileColumns);
                for (int j = 0; j < columns; j++) Unsafe.Add(ref packed, j) = Unsafe.Add(ref step, j * b.ColumnStride);
            }
            if (columns < tileColumns)
            {
                for (int p = 0; p < kc; p++) MemoryMarshal.CreateSpan(ref Unsafe.Add(ref tile, p * tileColumns + columns), tileColumns - columns).Clear();
            }
        }
    }

    /// <summary>
    /// Copies A(ic.., pc..) into panels of six rows, depth step after depth step (so the kernel broadcasts
    /// consecutive floats), zero-padded. Reads run along A's contiguous axis in both layouts.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
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
                ref float first = ref Unsafe.Add(ref source, (ic + ir) * a.RowStride + pc * a.ColumnStride);
                for (int p = 0; p < kc; p++)
                {
                    ref float step = ref Unsafe.Add(ref first, p * a.ColumnStride);
                    ref float packed = ref Unsafe.Add(ref tile, p * panelRows);
                    for (int r = 0; r < rows; r++) Unsafe.Add(ref packed, r) = Unsafe.Add(ref step, r * a.RowStride);
                }
            }
        }
    }

    /// <summary>
    /// A 6 (or, for a tall layout, 12) x 2-vector tile of C (6 x 32 on AVX-512): the accumulators stay in registers for the
    /// whole depth block; each step loads two vectors of B and broadcasts one float of A per row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernel<TLanes, TVector, TRows>(ref float a, TRows layout, ref float b, int bStep, int kc, Span<float> c, int ldc, int row, int column,
        int rows, int columns, Stage stage, in Epilogue epilogue, Span<float> spill)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRows : struct, IRowsOfA
    {
        int width = TLanes.Count;
        int r1 = layout.Row, r2 = 2 * r1, r3 = 3 * r1, r4 = 4 * r1, r5 = 5 * r1, step = layout.Step;
        TVector c00 = TLanes.Zero, c01 = TLanes.Zero, c10 = TLanes.Zero, c11 = TLanes.Zero, c20 = TLanes.Zero, c21 = TLanes.Zero;
        TVector c30 = TLanes.Zero, c31 = TLanes.Zero, c40 = TLanes.Zero, c41 = TLanes.Zero, c50 = TLanes.Zero, c51 = TLanes.Zero;
        TVector c60 = TLanes.Zero, c61 = TLanes.Zero, c70 = TLanes.Zero, c71 = TLanes.Zero, c80 = TLanes.Zero, c81 = TLanes.Zero;
        TVector c90 = TLanes.Zero, c91 = TLanes.Zero, cA0 = TLanes.Zero, cA1 = TLanes.Zero, cB0 = TLanes.Zero, cB1 = TLanes.Zero;
        for (int p = 0; p < kc; p++)
        {
            TVector b0 = TLanes.Load(ref b);
            TVector b1 = TLanes.Load(ref Unsafe.Add(ref b, width));
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(a), b0, b1, ref c00, ref c01);
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r1)), b0, b1, ref c10, ref c11);
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r2)), b0, b1, ref c20, ref c21);
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r3)), b0, b1, ref c30, ref c31);
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r4)), b0, b1, ref c40, ref c41);
            MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, r5)), b0, b1, ref c50, ref c51);
            if (layout.Tall)
            {
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, 6)), b0, b1, ref c60, ref c61);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, 7)), b0, b1, ref c70, ref c71);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, 8)), b0, b1, ref c80, ref c81);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, 9)), b0, b1, ref c90, ref c91);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, 10)), b0, b1, ref cA0, ref cA1);
                MultiplyRow<TLanes, TVector>(TLanes.Broadcast(Unsafe.Add(ref a, 11)), b0, b1, ref cB0, ref cB1);
            }
            a = ref Unsafe.Add(ref a, step);
            b = ref Unsafe.Add(ref b, bStep);
        }

        ref float target = ref MemoryMarshal.GetReference(c);
        if (rows == (layout.Tall ? TallRows : RowsPerTile) && columns == 2 * width)
        {
            ref float tile = ref Unsafe.Add(ref target, row * ldc + column);
            StoreRow<TLanes, TVector>(ref tile, c00, c01, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, ldc), c10, c11, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 2 * ldc), c20, c21, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 3 * ldc), c30, c31, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 4 * ldc), c40, c41, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 5 * ldc), c50, c51, column, stage, epilogue);
            if (!layout.Tall) return;
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 6 * ldc), c60, c61, column, stage, epilogue);
            StoreRow<TLanes, TVector>(ref Unsafe.Add(ref tile, 7 * ldc), c70, c71, column, stage, epilogue);
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
        // A six-row tile spills its six unused (zero) rows too: only edge tiles come here, and the scratch holds twelve rows.
        Spill<TLanes, TVector>(ref s, 6 * stride, width, c60, c61); Spill<TLanes, TVector>(ref s, 7 * stride, width, c70, c71);
        Spill<TLanes, TVector>(ref s, 8 * stride, width, c80, c81); Spill<TLanes, TVector>(ref s, 9 * stride, width, c90, c91);
        Spill<TLanes, TVector>(ref s, 10 * stride, width, cA0, cA1); Spill<TLanes, TVector>(ref s, 11 * stride, width, cB0, cB1);
        FinishEdge<TLanes, TVector>(ref s, stride, ref target, ldc, row, column, rows, columns, stage, epilogue);
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
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void FinishEdge<TLanes, TVector>(ref float spilled, int stride, ref float target, int ldc, int row, int column, int rows, int columns, Stage stage, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
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
    /// The micro-kernel for products at most one vector wide: a 6 x 1-vector tile, six accumulators, one load of B and six
    /// broadcasts of A per step. Its only column tile starts at column 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void NarrowKernel<TLanes, TVector, TRows>(ref float a, TRows layout, ref float b, int bStep, int kc, Span<float> c, int ldc, int row,
        int rows, int columns, Stage stage, in Epilogue epilogue, Span<float> spill)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TRows : struct, IRowsOfA
    {
        int width = TLanes.Count;
        int r1 = layout.Row, r2 = 2 * r1, r3 = 3 * r1, r4 = 4 * r1, r5 = 5 * r1, step = layout.Step;
        TVector c0 = TLanes.Zero, c1 = TLanes.Zero, c2 = TLanes.Zero, c3 = TLanes.Zero, c4 = TLanes.Zero, c5 = TLanes.Zero;
        for (int p = 0; p < kc; p++)
        {
            TVector b0 = TLanes.Load(ref b);
            c0 = TLanes.MultiplyAdd(TLanes.Broadcast(a), b0, c0);
            c1 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r1)), b0, c1);
            c2 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r2)), b0, c2);
            c3 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r3)), b0, c3);
            c4 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r4)), b0, c4);
            c5 = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref a, r5)), b0, c5);
            a = ref Unsafe.Add(ref a, step);
            b = ref Unsafe.Add(ref b, bStep);
        }

        ref float target = ref MemoryMarshal.GetReference(c);
        if (rows == RowsPerTile && columns == width)
        {
            ref float tile = ref Unsafe.Add(ref target, row * ldc);
            FinishStore<TLanes, TVector>(c0, ref tile, 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c1, ref Unsafe.Add(ref tile, ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c2, ref Unsafe.Add(ref tile, 2 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c3, ref Unsafe.Add(ref tile, 3 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c4, ref Unsafe.Add(ref tile, 4 * ldc), 0, stage, epilogue);
            FinishStore<TLanes, TVector>(c5, ref Unsafe.Add(ref tile, 5 * ldc), 0, stage, epilogue);
            return;
        }
        // An edge tile (a classifier's 10 columns of 16 lanes, or rows past C's edge): spilled, and finished out of line.
        ref float s = ref MemoryMarshal.GetReference(spill);
        TLanes.Store(ref s, c0); TLanes.Store(ref Unsafe.Add(ref s, width), c1); TLanes.Store(ref Unsafe.Add(ref s, 2 * width), c2);
        TLanes.Store(ref Unsafe.Add(ref s, 3 * width), c3); TLanes.Store(ref Unsafe.Add(ref s, 4 * width), c4); TLanes.Store(ref Unsafe.Add(ref s, 5 * width), c5);
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
        if (stage.Last && epilogue.Relu) sum = TLanes.Max(sum, TLanes.Zero);
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
        if (stage.Last && epilogue.Relu) sum = TLanes.Max(sum, TLanes.Zero);
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

    // ---- Streaming path (a few rows) ---------------------------------------------------------------

    /// <summary>
    /// <paramref name="vectors"/> (1, 2, 4 or 8, a constant at each call) vectors of one row of C from column
    /// <paramref name="j"/>: as many independent accumulator chains, each depth step reading one contiguous stretch of B.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StreamColumns<TLanes, TVector>(int vectors, ref float a0, int aStep, ref float b0, int bStride, ref float c0, int j, int k, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        TVector s0 = TLanes.Zero, s1 = TLanes.Zero, s2 = TLanes.Zero, s3 = TLanes.Zero;
        TVector s4 = TLanes.Zero, s5 = TLanes.Zero, s6 = TLanes.Zero, s7 = TLanes.Zero;
        ref float bColumn = ref Unsafe.Add(ref b0, j);
        for (int p = 0; p < k; p++)
        {
            TVector x = TLanes.Broadcast(Unsafe.Add(ref a0, p * aStep));
            ref float bRow = ref Unsafe.Add(ref bColumn, p * bStride);
            s0 = TLanes.MultiplyAdd(x, TLanes.Load(ref bRow), s0);
            if (vectors < 2) continue;
            s1 = TLanes.MultiplyAdd(x, TLanes.Load(ref Unsafe.Add(ref bRow, width)), s1);
            if (vectors < 4) continue;
            s2 = TLanes.MultiplyAdd(x, TLanes.Load(ref Unsafe.Add(ref bRow, 2 * width)), s2);
            s3 = TLanes.MultiplyAdd(x, TLanes.Load(ref Unsafe.Add(ref bRow, 3 * width)), s3);
            if (vectors < 8) continue;
            s4 = TLanes.MultiplyAdd(x, TLanes.Load(ref Unsafe.Add(ref bRow, 4 * width)), s4);
            s5 = TLanes.MultiplyAdd(x, TLanes.Load(ref Unsafe.Add(ref bRow, 5 * width)), s5);
            s6 = TLanes.MultiplyAdd(x, TLanes.Load(ref Unsafe.Add(ref bRow, 6 * width)), s6);
            s7 = TLanes.MultiplyAdd(x, TLanes.Load(ref Unsafe.Add(ref bRow, 7 * width)), s7);
        }
        var whole = new Stage(first: true, last: true);
        ref float target = ref Unsafe.Add(ref c0, j);
        FinishStore<TLanes, TVector>(s0, ref target, j, whole, epilogue);
        if (vectors < 2) return;
        FinishStore<TLanes, TVector>(s1, ref Unsafe.Add(ref target, width), j + width, whole, epilogue);
        if (vectors < 4) return;
        FinishStore<TLanes, TVector>(s2, ref Unsafe.Add(ref target, 2 * width), j + 2 * width, whole, epilogue);
        FinishStore<TLanes, TVector>(s3, ref Unsafe.Add(ref target, 3 * width), j + 3 * width, whole, epilogue);
        if (vectors < 8) return;
        FinishStore<TLanes, TVector>(s4, ref Unsafe.Add(ref target, 4 * width), j + 4 * width, whole, epilogue);
        FinishStore<TLanes, TVector>(s5, ref Unsafe.Add(ref target, 5 * width), j + 5 * width, whole, epilogue);
        FinishStore<TLanes, TVector>(s6, ref Unsafe.Add(ref target, 6 * width), j + 6 * width, whole, epilogue);
        FinishStore<TLanes, TVector>(s7, ref Unsafe.Add(ref target, 7 * width), j + 7 * width, whole, epilogue);
    }

    /// <summary>
    /// One row of C = (row of A)·B with B's rows contiguous: eight vectors of columns (128 on AVX-512) per pass
    /// keep eight independent accumulator chains busy while each depth step reads one contiguous stretch of B.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void StreamRow<TLanes, TVector>(in Matrix a, int i, in Matrix b, Span<float> c, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        ref float a0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(a.Data), i * a.RowStride);
        ref float b0 = ref MemoryMarshal.GetReference(b.Data);
        ref float c0 = ref MemoryMarshal.GetReference(c);
        var whole = new Stage(first: true, last: true);
        int j = 0;
        for (; j + 8 * width <= n; j += 8 * width) StreamColumns<TLanes, TVector>(8, ref a0, a.ColumnStride, ref b0, b.RowStride, ref c0, j, k, epilogue);
        for (; j + 4 * width <= n; j += 4 * width) StreamColumns<TLanes, TVector>(4, ref a0, a.ColumnStride, ref b0, b.RowStride, ref c0, j, k, epilogue);
        for (; j + 2 * width <= n; j += 2 * width) StreamColumns<TLanes, TVector>(2, ref a0, a.ColumnStride, ref b0, b.RowStride, ref c0, j, k, epilogue);
        for (; j + width <= n; j += width) StreamColumns<TLanes, TVector>(1, ref a0, a.ColumnStride, ref b0, b.RowStride, ref c0, j, k, epilogue);
        for (; j < n; j++)
        {
            float s = 0f;
            for (int p = 0; p < k; p++) s = MathF.FusedMultiplyAdd(Unsafe.Add(ref a0, p * a.ColumnStride), Unsafe.Add(ref b0, p * b.RowStride + j), s);
            ref float target = ref Unsafe.Add(ref c0, j);
            target = Finish(s, target, j, whole, epilogue);
        }
    }

    /// <summary>One row of C when B is stored transposed (columns contiguous): each entry is a vectorised dot product.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
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
