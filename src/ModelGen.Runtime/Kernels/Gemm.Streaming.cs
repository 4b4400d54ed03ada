using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>Products of a few rows (batch-1 inference): each row streamed against B, with no packing.</summary>
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
    /// Slots [<paramref name="firstSlot"/>, +<paramref name="slotCount"/>) of one row of C = (row i of A)·B, B's rows
    /// contiguous, in passes over the depth of at most eight slots each (independent accumulator chains, each depth step
    /// reading one contiguous stretch of B). Every column's sum is the same chain of multiply-adds, in depth order, however
    /// the columns are grouped into slots, passes or slices. <paramref name="c"/> is the whole row of C.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void StreamRow<TLanes, TVector>(in Matrix a, int i, in Matrix b, Span<float> c, int k, int n, in Epilogue epilogue, int firstSlot, int slotCount)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        float* sums = stackalloc float[9 * width]; // eight whole vectors and the partial or wrapping one
        ref float to = ref MemoryMarshal.GetReference(c);
        var single = new Stage(first: true, last: true);
        fixed (float* pa = a.Data, pb = b.Data)
        {
            float* row = pa + (nint)i * a.RowStride;
            var grid = new StreamGrid(pb, n, b.RowStride, width);
            int passes = Math.Max(1, (slotCount + 7) / 8);
            for (int pass = 0, slot = firstSlot; pass < passes; pass++)
            {
                int slots = slotCount / passes + (pass < slotCount % passes ? 1 : 0);
                // Only the row's last slot may be partial or wrap; it then runs beside the pass's whole vectors.
                bool last = slot + slots == grid.Slots;
                int tail = last ? n % width : 0, wrap = last ? grid.Head : 0;
                int whole = slots - (tail > 0 || wrap > 0 ? 1 : 0), column = grid.Head + slot * width;
                var columns = new StreamedColumns(tail, wrap, a.ColumnStride, b.RowStride, k);
                StreamPass<TLanes, TVector>(whole, columns, row, pb + column, sums);
                // Through the edge tiles' epilogue: the whole vectors and a partial last one, then a wrapping slot's two ends.
                int own = whole * width + columns.Tail;
                FinishEdge<TLanes, TVector>(ref *sums, width, ref to, 0, 0, column, 1, own, single, epilogue);
                if (columns.Wrap > 0)
                {
                    FinishEdge<TLanes, TVector>(ref sums[own], width, ref to, 0, 0, column + own, 1, width - columns.Wrap, single, epilogue);
                    FinishEdge<TLanes, TVector>(ref sums[own + width - columns.Wrap], width, ref to, 0, 0, 0, 1, columns.Wrap, single, epilogue);
                }
                slot += slots;
            }
        }
    }

    /// <summary>
    /// One pass of <see cref="StreamRow"/>: <paramref name="whole"/> vectors, each count its own loop with its accumulators in
    /// registers. A method of its own so that nothing of the row's loop is live around these: inlined into it, each depth step
    /// reloaded the strides from the stack and took two more branches (the MLP's 784-256-128 at batch 1, both layers, on two
    /// cores, interleaved: medians 7.0-9.3 -> 6.2-8.4 us).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe void StreamPass<TLanes, TVector>(int whole, in StreamedColumns columns, float* row, float* b, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        switch (whole)
        {
            case 0: StreamColumns<TLanes, TVector>(0, columns, row, b, sums); break;
            case 1: StreamColumns<TLanes, TVector>(1, columns, row, b, sums); break;
            case 2: StreamColumns<TLanes, TVector>(2, columns, row, b, sums); break;
            case 3: StreamColumns<TLanes, TVector>(3, columns, row, b, sums); break;
            case 4: StreamColumns<TLanes, TVector>(4, columns, row, b, sums); break;
            case 5: StreamColumns<TLanes, TVector>(5, columns, row, b, sums); break;
            case 6: StreamColumns<TLanes, TVector>(6, columns, row, b, sums); break;
            case 7: StreamColumns<TLanes, TVector>(7, columns, row, b, sums); break;
            default: StreamColumns<TLanes, TVector>(8, columns, row, b, sums); break;
        }
    }

    /// <summary>
    /// One pass of <see cref="StreamRow"/> after its whole vectors: a partial vector of <c>Tail</c> columns, or a vector
    /// that wraps into the next row's first <c>Wrap</c> columns (0: neither).
    /// </summary>
    private readonly struct StreamedColumns(int tail, int wrap, int aStep, int bStride, int depth)
    {
        public readonly int Tail = tail, Wrap = wrap, AStep = aStep, BStride = bStride, Depth = depth;
    }

    /// <summary>
    /// The sums of one pass into <paramref name="sums"/>: the whole vectors, then the partial or wrapping one, a vector apart.
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
        if (vectors > 0) TLanes.Store(ref *sums, s0);
        if (vectors > 1) TLanes.Store(ref sums[width], s1);
        if (vectors > 2) TLanes.Store(ref sums[2 * width], s2);
        if (vectors > 3) TLanes.Store(ref sums[3 * width], s3);
        if (vectors > 4) TLanes.Store(ref sums[4 * width], s4);
        if (vectors > 5) TLanes.Store(ref sums[5 * width], s5);
        if (vectors > 6) TLanes.Store(ref sums[6 * width], s6);
        if (vectors > 7) TLanes.Store(ref sums[7 * width], s7);
        TLanes.Store(ref sums[vectors * width], t);
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
