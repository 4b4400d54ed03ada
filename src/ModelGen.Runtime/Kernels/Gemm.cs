using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>
/// Single-precision matrix products on row-major data, in the three forms a dense layer's forward
/// and backward passes need, without materialising a transpose:
/// <list type="bullet">
/// <item><see cref="Multiply"/>: C(m,n) = A(m,k)·B(k,n) (+ bias, optional ReLU) — forward.</item>
/// <item><see cref="MultiplyTransposedA"/>: C(m,n) = Aᵀ·B with A stored (k,m) — kernel gradient.</item>
/// <item><see cref="MultiplyTransposedB"/>: C(m,n) = A·Bᵀ with B stored (n,k) — input gradient.</item>
/// </list>
/// Every form either overwrites C or, with <c>accumulate</c>, adds to it (shared weights sum gradients).
/// </summary>
public static class Gemm
{
    public static void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n,
        ReadOnlySpan<float> bias = default, bool relu = false, bool accumulate = false)
    {
        Check(a.Length >= m * k && b.Length >= k * n && c.Length >= m * n && (bias.IsEmpty || bias.Length >= n), m, k, n);
        var epilogue = new Epilogue(bias, relu, accumulate);
        // A(i, p) = a[i*k + p]
        switch (Simd.Current)
        {
            case SimdPath.Avx512: BroadcastKernel<Lanes512, System.Runtime.Intrinsics.Vector512<float>>(a, k, 1, b, c, m, k, n, epilogue); break;
            case SimdPath.Avx2: BroadcastKernel<Lanes256, System.Runtime.Intrinsics.Vector256<float>>(a, k, 1, b, c, m, k, n, epilogue); break;
            default: BroadcastKernel<Lanes128, System.Runtime.Intrinsics.Vector128<float>>(a, k, 1, b, c, m, k, n, epilogue); break;
        }
    }

    public static void MultiplyTransposedA(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, bool accumulate = false)
    {
        Check(a.Length >= k * m && b.Length >= k * n && c.Length >= m * n, m, k, n);
        var epilogue = new Epilogue(default, false, accumulate);
        // A stored (k, m): Aᵀ(i, p) = a[p*m + i]
        switch (Simd.Current)
        {
            case SimdPath.Avx512: BroadcastKernel<Lanes512, System.Runtime.Intrinsics.Vector512<float>>(a, 1, m, b, c, m, k, n, epilogue); break;
            case SimdPath.Avx2: BroadcastKernel<Lanes256, System.Runtime.Intrinsics.Vector256<float>>(a, 1, m, b, c, m, k, n, epilogue); break;
            default: BroadcastKernel<Lanes128, System.Runtime.Intrinsics.Vector128<float>>(a, 1, m, b, c, m, k, n, epilogue); break;
        }
    }

    public static void MultiplyTransposedB(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, bool accumulate = false)
    {
        Check(a.Length >= m * k && b.Length >= n * k && c.Length >= m * n, m, k, n);
        switch (Simd.Current)
        {
            case SimdPath.Avx512: DotKernel<Lanes512, System.Runtime.Intrinsics.Vector512<float>>(a, b, c, m, k, n, accumulate); break;
            case SimdPath.Avx2: DotKernel<Lanes256, System.Runtime.Intrinsics.Vector256<float>>(a, b, c, m, k, n, accumulate); break;
            default: DotKernel<Lanes128, System.Runtime.Intrinsics.Vector128<float>>(a, b, c, m, k, n, accumulate); break;
        }
    }

    private static void Check(bool ok, int m, int k, int n)
    {
        if (!ok) throw new ArgumentException($"Gemm operands too short for m={m}, k={k}, n={n}.");
    }

    /// <summary>What happens to an accumulated tile before it is stored.</summary>
    private readonly ref struct Epilogue(ReadOnlySpan<float> bias, bool relu, bool accumulate)
    {
        public readonly ReadOnlySpan<float> Bias = bias;
        public readonly bool Relu = relu;
        public readonly bool Accumulate = accumulate;
    }

    /// <summary>
    /// Register-blocked kernel for C = A·B where A(i, p) = a[i*rowStride + p*depthStride]: four rows of A
    /// are broadcast against two vectors of a row of B, so eight accumulators stay in registers for the whole
    /// depth. Column panels of B are the outer loop so each panel stays in cache across all row blocks.
    /// </summary>
    private static void BroadcastKernel<TLanes, TVector>(ReadOnlySpan<float> a, int rowStride, int depthStride,
        ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        ref float a0 = ref MemoryMarshal.GetReference(a);
        ref float b0 = ref MemoryMarshal.GetReference(b);
        ref float c0 = ref MemoryMarshal.GetReference(c);
        ref float bias0 = ref MemoryMarshal.GetReference(epilogue.Bias);
        bool hasBias = !epilogue.Bias.IsEmpty;

        int j = 0;
        for (; j + 2 * width <= n; j += 2 * width)
        {
            int i = 0;
            for (; i + 4 <= m; i += 4)
            {
                TVector start0 = hasBias ? TLanes.Load(ref Unsafe.Add(ref bias0, j)) : TLanes.Zero;
                TVector start1 = hasBias ? TLanes.Load(ref Unsafe.Add(ref bias0, j + width)) : TLanes.Zero;
                TVector c00 = start0, c01 = start1, c10 = start0, c11 = start1, c20 = start0, c21 = start1, c30 = start0, c31 = start1;
                ref float aRow = ref Unsafe.Add(ref a0, i * rowStride);
                for (int p = 0; p < k; p++)
                {
                    ref float bRow = ref Unsafe.Add(ref b0, p * n + j);
                    TVector b0v = TLanes.Load(ref bRow);
                    TVector b1v = TLanes.Load(ref Unsafe.Add(ref bRow, width));
                    ref float ap = ref Unsafe.Add(ref aRow, p * depthStride);
                    TVector a0v = TLanes.Broadcast(ap);
                    c00 = TLanes.MultiplyAdd(a0v, b0v, c00); c01 = TLanes.MultiplyAdd(a0v, b1v, c01);
                    TVector a1v = TLanes.Broadcast(Unsafe.Add(ref ap, rowStride));
                    c10 = TLanes.MultiplyAdd(a1v, b0v, c10); c11 = TLanes.MultiplyAdd(a1v, b1v, c11);
                    TVector a2v = TLanes.Broadcast(Unsafe.Add(ref ap, 2 * rowStride));
                    c20 = TLanes.MultiplyAdd(a2v, b0v, c20); c21 = TLanes.MultiplyAdd(a2v, b1v, c21);
                    TVector a3v = TLanes.Broadcast(Unsafe.Add(ref ap, 3 * rowStride));
                    c30 = TLanes.MultiplyAdd(a3v, b0v, c30); c31 = TLanes.MultiplyAdd(a3v, b1v, c31);
                }
                StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, i * n + j), c00, epilogue);
                StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, i * n + j + width), c01, epilogue);
                StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, (i + 1) * n + j), c10, epilogue);
                StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, (i + 1) * n + j + width), c11, epilogue);
                StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, (i + 2) * n + j), c20, epilogue);
                StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, (i + 2) * n + j + width), c21, epilogue);
                StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, (i + 3) * n + j), c30, epilogue);
                StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, (i + 3) * n + j + width), c31, epilogue);
            }
            for (; i < m; i++)
            {
                RowVector<TLanes, TVector>(ref a0, i, rowStride, depthStride, ref b0, ref c0, k, n, j, epilogue);
                RowVector<TLanes, TVector>(ref a0, i, rowStride, depthStride, ref b0, ref c0, k, n, j + width, epilogue);
            }
        }
        for (; j + width <= n; j += width)
        {
            for (int i = 0; i < m; i++) RowVector<TLanes, TVector>(ref a0, i, rowStride, depthStride, ref b0, ref c0, k, n, j, epilogue);
        }
        // Columns narrower than one vector (a 10-class output on AVX-512): step down to 256- and 128-bit vectors before going scalar.
        if (width > 8 && j + 8 <= n)
        {
            for (int i = 0; i < m; i++) RowVector<Lanes256, System.Runtime.Intrinsics.Vector256<float>>(ref a0, i, rowStride, depthStride, ref b0, ref c0, k, n, j, epilogue);
            j += 8;
        }
        if (width > 4 && j + 4 <= n)
        {
            for (int i = 0; i < m; i++) RowVector<Lanes128, System.Runtime.Intrinsics.Vector128<float>>(ref a0, i, rowStride, depthStride, ref b0, ref c0, k, n, j, epilogue);
            j += 4;
        }
        for (; j < n; j++)
        {
            for (int i = 0; i < m; i++)
            {
                float sum = hasBias ? Unsafe.Add(ref bias0, j) : 0f;
                ref float aRow = ref Unsafe.Add(ref a0, i * rowStride);
                for (int p = 0; p < k; p++) sum = MathF.FusedMultiplyAdd(Unsafe.Add(ref aRow, p * depthStride), Unsafe.Add(ref b0, p * n + j), sum);
                ref float target = ref Unsafe.Add(ref c0, i * n + j);
                if (epilogue.Accumulate) sum += target;
                target = epilogue.Relu ? MathF.Max(sum, 0f) : sum;
            }
        }
    }

    /// <summary>One row of C, one vector wide: the remainder of the broadcast kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RowVector<TLanes, TVector>(ref float a0, int i, int rowStride, int depthStride, ref float b0, ref float c0,
        int k, int n, int j, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        TVector sum = epilogue.Bias.IsEmpty ? TLanes.Zero : TLanes.Load(ref Unsafe.Add(ref MemoryMarshal.GetReference(epilogue.Bias), j));
        ref float aRow = ref Unsafe.Add(ref a0, i * rowStride);
        for (int p = 0; p < k; p++)
        {
            sum = TLanes.MultiplyAdd(TLanes.Broadcast(Unsafe.Add(ref aRow, p * depthStride)), TLanes.Load(ref Unsafe.Add(ref b0, p * n + j)), sum);
        }
        StoreTile<TLanes, TVector>(ref Unsafe.Add(ref c0, i * n + j), sum, epilogue);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTile<TLanes, TVector>(ref float destination, TVector value, in Epilogue epilogue)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (epilogue.Accumulate) value = TLanes.MultiplyAdd(TLanes.Broadcast(1f), TLanes.Load(ref destination), value);
        if (epilogue.Relu) value = TLanes.Max(value, TLanes.Zero);
        TLanes.Store(ref destination, value);
    }

    /// <summary>
    /// C(i,j) = dot(A row i, B row j), both contiguous along the depth: two rows by four columns give eight
    /// vector accumulators, reduced horizontally once per tile.
    /// </summary>
    private static void DotKernel<TLanes, TVector>(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, bool accumulate)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        int vectorDepth = k - k % width;
        ref float a0 = ref MemoryMarshal.GetReference(a);
        ref float b0 = ref MemoryMarshal.GetReference(b);
        ref float c0 = ref MemoryMarshal.GetReference(c);

        int i = 0;
        for (; i + 2 <= m; i += 2)
        {
            ref float aRow0 = ref Unsafe.Add(ref a0, i * k);
            ref float aRow1 = ref Unsafe.Add(ref a0, (i + 1) * k);
            int j = 0;
            for (; j + 4 <= n; j += 4)
            {
                ref float bRow0 = ref Unsafe.Add(ref b0, j * k);
                ref float bRow1 = ref Unsafe.Add(ref b0, (j + 1) * k);
                ref float bRow2 = ref Unsafe.Add(ref b0, (j + 2) * k);
                ref float bRow3 = ref Unsafe.Add(ref b0, (j + 3) * k);
                TVector s00 = TLanes.Zero, s01 = TLanes.Zero, s02 = TLanes.Zero, s03 = TLanes.Zero;
                TVector s10 = TLanes.Zero, s11 = TLanes.Zero, s12 = TLanes.Zero, s13 = TLanes.Zero;
                for (int p = 0; p < vectorDepth; p += width)
                {
                    TVector x0 = TLanes.Load(ref Unsafe.Add(ref aRow0, p));
                    TVector x1 = TLanes.Load(ref Unsafe.Add(ref aRow1, p));
                    TVector y0 = TLanes.Load(ref Unsafe.Add(ref bRow0, p));
                    TVector y1 = TLanes.Load(ref Unsafe.Add(ref bRow1, p));
                    TVector y2 = TLanes.Load(ref Unsafe.Add(ref bRow2, p));
                    TVector y3 = TLanes.Load(ref Unsafe.Add(ref bRow3, p));
                    s00 = TLanes.MultiplyAdd(x0, y0, s00); s01 = TLanes.MultiplyAdd(x0, y1, s01);
                    s02 = TLanes.MultiplyAdd(x0, y2, s02); s03 = TLanes.MultiplyAdd(x0, y3, s03);
                    s10 = TLanes.MultiplyAdd(x1, y0, s10); s11 = TLanes.MultiplyAdd(x1, y1, s11);
                    s12 = TLanes.MultiplyAdd(x1, y2, s12); s13 = TLanes.MultiplyAdd(x1, y3, s13);
                }
                ref float cRow0 = ref Unsafe.Add(ref c0, i * n + j);
                ref float cRow1 = ref Unsafe.Add(ref c0, (i + 1) * n + j);
                StoreDot(ref cRow0, TLanes.Sum(s00) + TailDot(ref aRow0, ref bRow0, vectorDepth, k), accumulate);
                StoreDot(ref Unsafe.Add(ref cRow0, 1), TLanes.Sum(s01) + TailDot(ref aRow0, ref bRow1, vectorDepth, k), accumulate);
                StoreDot(ref Unsafe.Add(ref cRow0, 2), TLanes.Sum(s02) + TailDot(ref aRow0, ref bRow2, vectorDepth, k), accumulate);
                StoreDot(ref Unsafe.Add(ref cRow0, 3), TLanes.Sum(s03) + TailDot(ref aRow0, ref bRow3, vectorDepth, k), accumulate);
                StoreDot(ref cRow1, TLanes.Sum(s10) + TailDot(ref aRow1, ref bRow0, vectorDepth, k), accumulate);
                StoreDot(ref Unsafe.Add(ref cRow1, 1), TLanes.Sum(s11) + TailDot(ref aRow1, ref bRow1, vectorDepth, k), accumulate);
                StoreDot(ref Unsafe.Add(ref cRow1, 2), TLanes.Sum(s12) + TailDot(ref aRow1, ref bRow2, vectorDepth, k), accumulate);
                StoreDot(ref Unsafe.Add(ref cRow1, 3), TLanes.Sum(s13) + TailDot(ref aRow1, ref bRow3, vectorDepth, k), accumulate);
            }
            for (; j < n; j++)
            {
                ref float bRow = ref Unsafe.Add(ref b0, j * k);
                StoreDot(ref Unsafe.Add(ref c0, i * n + j), Dot<TLanes, TVector>(ref aRow0, ref bRow, k), accumulate);
                StoreDot(ref Unsafe.Add(ref c0, (i + 1) * n + j), Dot<TLanes, TVector>(ref aRow1, ref bRow, k), accumulate);
            }
        }
        for (; i < m; i++)
        {
            ref float aRow = ref Unsafe.Add(ref a0, i * k);
            for (int j = 0; j < n; j++)
            {
                StoreDot(ref Unsafe.Add(ref c0, i * n + j), Dot<TLanes, TVector>(ref aRow, ref Unsafe.Add(ref b0, j * k), k), accumulate);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreDot(ref float destination, float value, bool accumulate) =>
        destination = accumulate ? destination + value : value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TailDot(ref float x, ref float y, int from, int to)
    {
        float sum = 0f;
        for (int p = from; p < to; p++) sum = MathF.FusedMultiplyAdd(Unsafe.Add(ref x, p), Unsafe.Add(ref y, p), sum);
        return sum;
    }

    private static float Dot<TLanes, TVector>(ref float x, ref float y, int length)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        int vectorLength = length - length % width;
        TVector sum = TLanes.Zero;
        for (int p = 0; p < vectorLength; p += width)
        {
            sum = TLanes.MultiplyAdd(TLanes.Load(ref Unsafe.Add(ref x, p)), TLanes.Load(ref Unsafe.Add(ref y, p)), sum);
        }
        return TLanes.Sum(sum) + TailDot(ref x, ref y, vectorLength, length);
    }
}
