using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>Products of a few rows (batch-1 inference): each row streamed against B, with no packing.</summary>
public static partial class Gemm
{
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
