using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>Products of a few rows (batch-1 inference): each row streamed against B, with no packing.</summary>
public static partial class Gemm
{
    /// <summary>
    /// Where B's columns fall on vector boundaries: <c>Head</c> columns before the first boundary (0 when B starts on one),
    /// then <c>Vectors</c> whole vectors, then the remaining columns. A 512-bit load that straddles two cache lines costs
    /// two, and .NET arrays start on 8-byte boundaries only: streaming the MLP's 784x256 weights at batch 1 took 11.2 us
    /// through misaligned loads against 7.3 aligned. Only when every row of B starts at the same offset from a boundary.
    /// </summary>
    private static unsafe (int Head, int Vectors) StreamGrid<TLanes, TVector>(float* b0, int rowStride, int n)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, head = 0;
        if (rowStride % width == 0)
        {
            int misaligned = (int)((nint)b0 & (width * sizeof(float) - 1)) / sizeof(float);
            head = Math.Min(n, (width - misaligned) % width);
        }
        return (head, (n - head) / width);
    }

    /// <summary>
    /// One row of C = (row of A)·B with B's rows contiguous, in passes over the depth of at most eight whole vectors each
    /// (independent accumulator chains, each depth step reading one contiguous stretch of B); the first pass also carries
    /// the columns before B's first vector boundary and the last the columns after its last, in partial vectors.
    /// Every column's sum is the same chain of multiply-adds however the columns are grouped.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void StreamRow<TLanes, TVector>(in Matrix a, int i, in Matrix b, Span<float> c, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        float* sums = stackalloc float[10 * width]; // head, eight whole vectors, tail
        ref float to = ref MemoryMarshal.GetReference(c);
        var single = new Stage(first: true, last: true);
        fixed (float* pa = a.Data, pb = b.Data)
        {
            float* row = pa + (nint)i * a.RowStride;
            var (head, vectors) = StreamGrid<TLanes, TVector>(pb, b.RowStride, n);
            int tail = n - head - vectors * width;
            int passes = Math.Max(1, (vectors + 7) / 8);
            for (int pass = 0, j = 0; pass < passes; pass++)
            {
                int whole = vectors / passes + (pass < vectors % passes ? 1 : 0);
                var columns = new StreamedColumns(pass == 0 ? head : 0, pass == passes - 1 ? tail : 0, a.ColumnStride, b.RowStride, k);
                switch (whole)
                {
                    case 0: StreamColumns<TLanes, TVector>(0, columns, row, pb + j, sums); break;
                    case 1: StreamColumns<TLanes, TVector>(1, columns, row, pb + j, sums); break;
                    case 2: StreamColumns<TLanes, TVector>(2, columns, row, pb + j, sums); break;
                    case 3: StreamColumns<TLanes, TVector>(3, columns, row, pb + j, sums); break;
                    case 4: StreamColumns<TLanes, TVector>(4, columns, row, pb + j, sums); break;
                    case 5: StreamColumns<TLanes, TVector>(5, columns, row, pb + j, sums); break;
                    case 6: StreamColumns<TLanes, TVector>(6, columns, row, pb + j, sums); break;
                    case 7: StreamColumns<TLanes, TVector>(7, columns, row, pb + j, sums); break;
                    default: StreamColumns<TLanes, TVector>(8, columns, row, pb + j, sums); break;
                }
                // The head's partial vector, then the whole vectors and the tail's, through the edge tiles' epilogue.
                FinishEdge<TLanes, TVector>(ref *sums, width, ref to, 0, 0, j, 1, columns.Head, single, epilogue);
                int rest = whole * width + columns.Tail;
                FinishEdge<TLanes, TVector>(ref sums[width], width, ref to, 0, 0, j + columns.Head, 1, rest, single, epilogue);
                j += columns.Head + rest;
            }
        }
    }

    /// <summary>One pass of <see cref="StreamRow"/>: partial vectors of <c>Head</c> and <c>Tail</c> columns (0: none) around its whole vectors.</summary>
    private readonly struct StreamedColumns(int head, int tail, int aStep, int bStride, int depth)
    {
        public readonly int Head = head, Tail = tail, AStep = aStep, BStride = bStride, Depth = depth;
    }

    /// <summary>
    /// The sums of one pass into <paramref name="sums"/>: the head's partial vector, the whole vectors, the tail's partial
    /// vector, each a vector apart. <paramref name="vectors"/> is a constant at each call, so the JIT keeps exactly that many
    /// accumulators; the partial vectors' loads are masked, so nothing outside B is read and no load straddles two vectors.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StreamColumns<TLanes, TVector>(int vectors, in StreamedColumns columns, float* a, float* b, float* sums)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, head = columns.Head, tail = columns.Tail, aStep = columns.AStep, k = columns.Depth;
        nint bStride = columns.BStride;
        TVector headMask = TLanes.FirstLanes(head), tailMask = TLanes.FirstLanes(tail);
        TVector h = TLanes.Zero, t = TLanes.Zero;
        TVector s0 = TLanes.Zero, s1 = TLanes.Zero, s2 = TLanes.Zero, s3 = TLanes.Zero;
        TVector s4 = TLanes.Zero, s5 = TLanes.Zero, s6 = TLanes.Zero, s7 = TLanes.Zero;
        float* whole = b + head;
        for (int p = 0; p < k; p++, a += aStep, b += bStride, whole += bStride)
        {
            TVector x = TLanes.Broadcast(*a);
            if (head > 0) h = TLanes.MultiplyAdd(x, TLanes.LoadMasked(b, headMask), h);
            if (vectors > 0) s0 = TLanes.MultiplyAdd(x, TLanes.Load(ref *whole), s0);
            if (vectors > 1) s1 = TLanes.MultiplyAdd(x, TLanes.Load(ref whole[width]), s1);
            if (vectors > 2) s2 = TLanes.MultiplyAdd(x, TLanes.Load(ref whole[2 * width]), s2);
            if (vectors > 3) s3 = TLanes.MultiplyAdd(x, TLanes.Load(ref whole[3 * width]), s3);
            if (vectors > 4) s4 = TLanes.MultiplyAdd(x, TLanes.Load(ref whole[4 * width]), s4);
            if (vectors > 5) s5 = TLanes.MultiplyAdd(x, TLanes.Load(ref whole[5 * width]), s5);
            if (vectors > 6) s6 = TLanes.MultiplyAdd(x, TLanes.Load(ref whole[6 * width]), s6);
            if (vectors > 7) s7 = TLanes.MultiplyAdd(x, TLanes.Load(ref whole[7 * width]), s7);
            if (tail > 0) t = TLanes.MultiplyAdd(x, TLanes.LoadMasked(whole + vectors * width, tailMask), t);
        }
        TLanes.Store(ref *sums, h);
        float* stored = sums + width;
        if (vectors > 0) TLanes.Store(ref *stored, s0);
        if (vectors > 1) TLanes.Store(ref stored[width], s1);
        if (vectors > 2) TLanes.Store(ref stored[2 * width], s2);
        if (vectors > 3) TLanes.Store(ref stored[3 * width], s3);
        if (vectors > 4) TLanes.Store(ref stored[4 * width], s4);
        if (vectors > 5) TLanes.Store(ref stored[5 * width], s5);
        if (vectors > 6) TLanes.Store(ref stored[6 * width], s6);
        if (vectors > 7) TLanes.Store(ref stored[7 * width], s7);
        TLanes.Store(ref stored[vectors * width], t);
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
