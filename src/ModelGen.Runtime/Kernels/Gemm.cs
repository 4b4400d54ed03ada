using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

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
/// Products of a few rows (batch 1 inference) stream B once per row instead, with no packing; products at most twelve
/// columns wide (a classifier's outputs) go a column at a time on AVX-512 (Gemm.Columns.cs), or, up to eight columns where
/// they do not, on 256-bit vectors (<see cref="PathOf"/>). Large products are cut
/// into parts that the helper thread shares, by shape alone, so a result never depends on how many threads computed it.
/// </summary>
public static partial class Gemm
{
    /// <summary>
    /// C(m,n) = A·B (+ bias, ReLU). With <paramref name="packedB"/>, B packed ahead by <see cref="Pack"/> from the same values,
    /// a product that would pack B reads those panels instead (but one summed in slices of its depth, deep and without bias);
    /// products that read B where it lies (up to three rows) still read <paramref name="b"/>. Either way the result is the
    /// same bit for bit. Against MNIST's 784x256 weights, interleaved on the Zen 3: 8 rows 28.8 -> 19.9 us, 32 rows 88 -> 71,
    /// 128 rows 337 -> 307; 16x1024x1024 355 -> 197 us, 128x2048x2048 7.0 -> 6.4 ms.
    /// </summary>
    public static void Multiply(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n,
        ReadOnlySpan<float> bias = default, bool relu = false, bool accumulate = false, PackedMatrix? packedB = null)
    {
        CheckMultiply(a.Length, b.Length, c.Length, bias.Length, m, k, n);
        CheckPacked(packedB, k, n, nameof(packedB));
        Dispatch(new Matrix(a, k, 1), new Matrix(b, n, 1, PackedPanels.Of(packedB)), c, m, k, n, new Epilogue(bias, relu, accumulate));
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

    /// <summary>
    /// C(m,n) = A·B (+ bias, or C += A·B) where each operand is a strided view into a larger tensor: A's element (i, p) is at
    /// <c>a[i·aRowStride + p·aColumnStride]</c>, B's (p, j) at <c>b[p·bRowStride + j·bColumnStride]</c>, C's row i starts at
    /// <c>c[i·ldc]</c>. A transpose is a view with the strides swapped. Runs on the calling thread alone: it is for products
    /// inside a job both cores already share (attention's (sample, head) pairs, whose heads are columns of the projections
    /// and of the context, and the halves of its projections), which then read and write where the operands lie instead
    /// of copying them out and back.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    internal static void MultiplyViews(ReadOnlySpan<float> a, int aRowStride, int aColumnStride, ReadOnlySpan<float> b, int bRowStride, int bColumnStride,
        Span<float> c, int ldc, int m, int k, int n, bool accumulate = false, ReadOnlySpan<float> bias = default)
    {
        Check(m > 0 && k > 0 && n > 0 && ldc >= n && Reaches(a.Length, m, aRowStride, k, aColumnStride) && Reaches(b.Length, k, bRowStride, n, bColumnStride)
            && Reaches(c.Length, m, ldc, n, 1) && (bias.IsEmpty || bias.Length >= n), m, k, n);
        var av = new Matrix(a, aRowStride, aColumnStride);
        var bv = new Matrix(b, bRowStride, bColumnStride);
        RunRowsOnPath(av, bv, c, m, k, n, new Epilogue(bias, false, accumulate), ldc);
    }

    /// <summary>A product all on this thread, on its path (<see cref="PathOf"/>), C's rows <paramref name="ldc"/> apart.</summary>
    [MethodImpl(Compiled.Driver)]
    private static void RunRowsOnPath(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue, int ldc)
    {
        switch (PathOf(a, m, k, n))
        {
            case SimdPath.Avx512: RunRows<Lanes512, Vector512<float>>(a, b, c, m, k, n, epilogue, ldc); break;
            case SimdPath.Avx2: RunRows<Lanes256, Vector256<float>>(a, b, c, m, k, n, epilogue, ldc); break;
            default: RunRows<Lanes128, Vector128<float>>(a, b, c, m, k, n, epilogue, ldc); break;
        }
    }

    /// <summary>Whether a view of rows x columns at these strides lies within <paramref name="length"/> floats.</summary>
    private static bool Reaches(int length, int rows, int rowStride, int columns, int columnStride) =>
        (long)(rows - 1) * rowStride + (long)(columns - 1) * columnStride < length;

    /// <summary>
    /// C(m,n) = A·B (+ bias, ReLU) where A's rows are written by <paramref name="rows"/> just before they are multiplied, a
    /// block at a time, on the thread that multiplies them: each core builds its rows in its own cache and reads them from
    /// there, instead of reading what another core wrote (a convolution's patches, Convolution.Forward). With
    /// <paramref name="packedB"/> (<see cref="PackedPanels.Of"/> of B packed ahead, checked by the caller) a part that would pack
    /// B reads those panels, as <see cref="Multiply"/> does.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    internal static void MultiplyProducedRows(Span<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int k, int n, RowProducer rows,
        ReadOnlySpan<float> bias = default, bool relu = false, PackedPanels packedB = default)
    {
        Check(a.Length >= m * k && b.Length >= k * n && c.Length >= m * n && (bias.IsEmpty || bias.Length >= n), m, k, n);
        Dispatch(new Matrix(a, k, 1), new Matrix(b, n, 1, packedB), c, m, k, n, new Epilogue(bias, relu, false), rows);
    }

    /// <summary>Writes rows [first, first + count) of a product's A; none for an A that is already there.</summary>
    internal readonly unsafe struct RowProducer(delegate*<void*, int, int, void> produce, void* state)
    {
        public bool IsNone => produce == null;

        public void Produce(int first, int count)
        {
            if (produce != null) produce(state, first, count);
        }
    }

    /// <summary>Throws unless <paramref name="packed"/> is none or B(k,n) packed.</summary>
    internal static void CheckPacked(PackedMatrix? packed, int k, int n, string name)
    {
        if (packed is not null && (packed.Rows != k || packed.Columns != n))
            throw new ArgumentException($"Packed B is {packed.Rows}x{packed.Columns}, the product needs {k}x{n}.", name);
    }

    /// <summary>Throws unless operands of these lengths hold A·B + bias for C (m,n) (an empty bias: none).</summary>
    internal static void CheckMultiply(int a, int b, int c, int bias, int m, int k, int n) =>
        Check(a >= m * k && b >= k * n && c >= m * n && (bias == 0 || bias >= n), m, k, n);

    private static void Check(bool ok, int m, int k, int n)
    {
        if (!ok) throw new ArgumentException($"Gemm operands too short for m={m}, k={k}, n={n}.");
    }

    /// <summary>
    /// A strided view: element (row, column) is at <c>Data[row * RowStride + column * ColumnStride]</c>; a B may also come
    /// packed ahead (<see cref="Panels"/>), for the parts of the product that would pack it.
    /// </summary>
    private readonly ref struct Matrix(ReadOnlySpan<float> data, int rowStride, int columnStride, PackedPanels panels = default)
    {
        public readonly ReadOnlySpan<float> Data = data;
        public readonly int RowStride = rowStride;
        public readonly int ColumnStride = columnStride;
        public readonly PackedPanels Panels = panels;
    }

    /// <summary>What happens to a finished tile before it is stored.</summary>
    private readonly ref struct Epilogue(ReadOnlySpan<float> bias, bool relu, bool accumulate)
    {
        public readonly ReadOnlySpan<float> Bias = bias;
        public readonly bool Relu = relu;
        public readonly bool Accumulate = accumulate;
    }

    [MethodImpl(Compiled.Driver)]
    private static void Dispatch(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue, RowProducer rows = default)
    {
        switch (PathOf(a, m, k, n))
        {
            case SimdPath.Avx512: Run<Lanes512, Vector512<float>>(a, b, c, m, k, n, epilogue, rows); break;
            case SimdPath.Avx2: Run<Lanes256, Vector256<float>>(a, b, c, m, k, n, epilogue, rows); break;
            default: Run<Lanes128, Vector128<float>>(a, b, c, m, k, n, epilogue, rows); break;
        }
    }

    /// <summary>
    /// The SIMD path a product runs on: this machine's, except that on AVX-512 a product at most eight columns wide runs on
    /// 256-bit vectors unless its tiles of sixteen rows go a column at a time (Gemm.Columns.cs), judged for any product of
    /// more than <see cref="FewRows"/> rows, the fewest that read panels packed ahead, so that a product and its panels
    /// agree (<see cref="PanelPath"/>). Its rows then fill the narrow kernel's vectors where 512-bit ones
    /// left half their lanes idle, and a Zen 4 executes a 512-bit multiply-add as two 256-bit halves anyway (the scaling MLP of
    /// width 8 at batch 128, old and new builds in turns: 3.15-3.22 -> 2.87-2.95 us in seven rounds of eight). Each output is
    /// the same chain of multiply-adds on either path, so the bits are the same. A product this narrow reads A in place, so
    /// its first depth block is the one <see cref="DepthBlockOf"/> gives a streamed A.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static SimdPath PathOf(in Matrix a, int m, int k, int n) =>
        Simd.Current == SimdPath.Avx512 && n <= Lanes256.Count
        && !(m > FewRows && TakesColumns<Lanes512, Vector512<float>>(a, Math.Min(k, DepthBlockOf(a, streamA: true)), n))
            ? SimdPath.Avx2 : Simd.Current;

    /// <summary>Rows below this stream B per row; from here on packing B pays for itself.</summary>
    private const int StreamingRows = 4;

    /// <summary>
    /// Multiply-adds from which a product is cut into parts the helper thread may share. Measured on the 2-vCPU machine:
    /// 128x784x256 550 -> 273 us, 7744x288x64 2.8 -> 1.5 ms. Alone, even 200x64x64 (0.8M) gained (15.5 -> 11 us), but inside
    /// a training step, where the operands were just written by this thread and must cross to the other core, sharing
    /// products that small made the digits MLP's Fit slower (0.15 -> 0.21 s), with the helper spinning or not.
    /// </summary>
    internal const long ParallelWork = 1_000_000;

    /// <summary>
    /// Multiply-adds from which a product against B packed ahead is cut into parts: a dense kernel of an inference copy
    /// (<see cref="Pack"/>), or a recurrent kernel packed once for a pass's steps. Those panels do not change between the
    /// products that read them, so each core keeps what it reads of them in its cache, and only A's rows and C's cross
    /// between the cores, where a product in a training step moves B too. The transformer's feed-forward pair at batch 1
    /// (64x64x128 and 64x128x64, 524K each), its predict in fresh processes in turns, 3 rounds: 0.0535-0.0556 -> 0.0482-0.0494
    /// ms. At 100K (the 32-wide MLP of the scaling curve at batch 128, 131K) it lost in two rounds of three (8.5 -> 10.7 and
    /// 12.9 us). Of the compare workloads' recurrent steps only the BiLSTM's at batch 32 fall in between (32x64x256), while
    /// the helper runs the other direction, so the caller runs all their parts (its training step 1.002 and 0.999x).
    /// RowParts cuts a row run in a training step from the same work (a prediction's from far less, RowParts.InferenceWork).
    /// </summary>
    internal const long PackedParallelWork = 500_000;

    /// <summary>Multiply-adds from which a product against <paramref name="b"/> is shared by the cores.</summary>
    private static long SharedFrom(in Matrix b) => b.Panels.Any ? PackedParallelWork : ParallelWork;

    /// <summary>
    /// Whether a product of this shape, B not packed ahead, runs whole on the calling thread (Run: more than a few rows, below
    /// <see cref="ParallelWork"/>), so that independent products of such shapes can be handed to the two cores whole, each
    /// computing what it would alone.
    /// </summary>
    internal static bool RunsOnOneThread(int m, int k, int n) => m > FewRows && (long)m * k * n < ParallelWork;

    /// <summary>
    /// Where a product runs: in parts both cores claim, cut to its shape (Gemm.Parts.cs), or all on this thread. Produced
    /// rows are multiplied in blocks of rows as they are produced, on one core or both.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static void Run<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue, RowProducer rows)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        long work = (long)m * n * k, sharedFrom = SharedFrom(b);
        if (!rows.IsNone && m >= StreamingRows)
        {
            RunInRowBlocks<TLanes, TVector>(a, b, c, m, k, n, epilogue, rows, shared: work >= sharedFrom);
            return;
        }
        rows.Produce(0, m);
        if (m >= StreamingRows && (work >= sharedFrom || SharesFewRows<TLanes, TVector>(m, k, n, epilogue)))
        {
            if (IsDeep(m, k, n, epilogue)) RunInDepthParts<TLanes, TVector>(a, b, c, m, k, n, epilogue);
            else RunInParts<TLanes, TVector>(a, b, c, m, k, n, epilogue);
        }
        else if (m < StreamingRows && work >= StreamingParallelWork && b.ColumnStride == 1 && IsSliceable(n, TLanes.Count) && Helper.Threads > 1)
        {
            StreamInParts<TLanes, TVector>(a, b, c, m, k, n, epilogue);
        }
        else RunRows<TLanes, TVector>(a, b, c, m, k, n, epilogue, n);
    }

    /// <summary>
    /// Whether a product of a few rows (up to <see cref="FewRows"/>, a few requests served together) below
    /// <see cref="ParallelWork"/> is still cut into slices of columns for both cores, as streamed rows are from
    /// <see cref="StreamingParallelWork"/>: each core then reads half the weights (two cores, interleaved: 4x784x256 55 -> 27 us,
    /// 4x256x256 11.6 -> 8.2, 8x64x512 13.4 -> 8.7). Only where it makes slices of columns, which leave each output's chain as
    /// it is, so the bits are the same on one thread, which runs it whole (slices cost it 2-8%): a narrow product cut into
    /// blocks of rows gained nothing or lost (4x1000x40: 12.8 -> 17.8 us), a deep one would sum its depth in parts.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static bool SharesFewRows<TLanes, TVector>(int m, int k, int n, in Epilogue epilogue) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        m <= FewRows && (long)m * k * n >= StreamingParallelWork && Helper.Threads > 1 && !IsDeep(m, k, n, epilogue)
        && SlicesByColumns(m, k, n, 2 * TLanes.Count);

    /// <summary>All on this thread, C's rows <paramref name="ldc"/> apart: a few rows streamed against B (Gemm.Streaming.cs), more through the packed path (Gemm.Packed.cs).</summary>
    [MethodImpl(Compiled.Driver)]
    private static void RunRows<TLanes, TVector>(in Matrix a, in Matrix b, Span<float> c, int m, int k, int n, in Epilogue epilogue, int ldc)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (m < StreamingRows && b.ColumnStride == 1)
        {
            StreamRows<TLanes, TVector>(a, 0, m, b, c, ldc, k, n, epilogue, 0, StreamSlots(n, TLanes.Count));
        }
        else if (m < StreamingRows)
        {
            for (int i = 0; i < m; i++) DotRow<TLanes, TVector>(a, i, b, c.Slice(i * ldc, n), k, n, epilogue);
        }
        else
        {
            Packed<TLanes, TVector>(a, b, c, m, k, n, ldc, epilogue, RowClaim.All(m));
        }
    }
}
