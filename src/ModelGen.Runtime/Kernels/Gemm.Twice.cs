using System;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>Two dense layers in a row: at a few rows, or at many against small weights, both take a single hand-off between the cores.</summary>
public static partial class Gemm
{
    /// <summary>
    /// H(m,n1) = A·B1 (+ bias1, optional ReLU), then C(m,n2) = H·B2 (+ bias2, optional ReLU): two dense layers in a row, H
    /// kept for whoever else reads it. At a few rows (batch-1 inference) with a first layer worth sharing, the cores take
    /// slices of B1's columns (streamed from <paramref name="packedB1"/>'s tiles where given) and each goes straight on to
    /// the rows of B2 that its slice of H feeds, into a partial C of its own; the partials are added in slice order at the
    /// end. Two products instead cost two hand-offs, and the second waits for both halves of H and reads the one the other
    /// core wrote (the MLP's 784-256-128 at batch 1: medians 6.1 -> 5.7 us).
    /// H is the same bit for bit as <see cref="Multiply"/> computes it; C sums its depth in slices, so it may differ from two
    /// <see cref="Multiply"/> calls in the last bits. The slices follow the shape alone, so C is the same on one thread or two.
    /// At many rows against weights small enough for each core's L2 (a Transformer's feed-forward pair over its tokens), each
    /// core takes half the rows through both layers (<see cref="SharesRowsOfBoth"/>): one hand-off where the two products
    /// took one each, and H's rows stay in the cache of the core that reads them; each output is then its chain of
    /// multiply-adds as in <see cref="Multiply"/>, H and C both the same bit for bit. Otherwise (a narrow or light first
    /// layer, rows in between) this is exactly those two calls.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static void MultiplyTwice(ReadOnlySpan<float> a, ReadOnlySpan<float> b1, Span<float> h, ReadOnlySpan<float> b2, Span<float> c,
        int m, int k, int n1, int n2, ReadOnlySpan<float> bias1 = default, bool relu1 = false, ReadOnlySpan<float> bias2 = default, bool relu2 = false,
        PackedMatrix? packedB1 = null, PackedMatrix? packedB2 = null)
    {
        Check(a.Length >= m * k && b1.Length >= k * n1 && h.Length >= m * n1 && (bias1.IsEmpty || bias1.Length >= n1), m, k, n1);
        Check(b2.Length >= n1 * n2 && c.Length >= m * n2 && (bias2.IsEmpty || bias2.Length >= n2), m, n1, n2);
        var first = new Epilogue(bias1, relu1, false);
        var second = new Epilogue(bias2, relu2, false);
        CheckPacked(packedB1, k, n1, nameof(packedB1));
        CheckPacked(packedB2, n1, n2, nameof(packedB2));
        if (Helper.CanShare && SharesRowsOfBoth(m, k, n1, n2, first, second))
        {
            TwiceInRowParts(a, b1, h, b2, c, m, k, n1, n2, first, second, PackedPanels.Of(packedB1), PackedPanels.Of(packedB2));
            return;
        }
        if (!SharesBothLayers(m, k, n1))
        {
            Multiply(a, b1, h, m, k, n1, bias1, relu1, packedB: packedB1);
            Multiply(h, b2, c, m, n1, n2, bias2, relu2, packedB: packedB2);
            return;
        }
        switch (Simd.Current)
        {
            case SimdPath.Avx512: StreamTwice<Lanes512, Vector512<float>>(a, b1, h, b2, c, m, k, n1, n2, first, second, PackedPanels.Of(packedB1)); break;
            case SimdPath.Avx2: StreamTwice<Lanes256, Vector256<float>>(a, b1, h, b2, c, m, k, n1, n2, first, second, PackedPanels.Of(packedB1)); break;
            default: StreamTwice<Lanes128, Vector128<float>>(a, b1, h, b2, c, m, k, n1, n2, first, second, PackedPanels.Of(packedB1)); break;
        }
    }

    /// <summary>
    /// Whether both layers run as one job of slices: rows that are streamed, a first layer worth sharing
    /// (<see cref="StreamingParallelWork"/>) and wide enough for two slices. Decided by the shape alone, never by the thread
    /// count or the machine's vectors, so C's summation order is the same everywhere.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static bool SharesBothLayers(int m, int k, int n1) =>
        m < StreamingRows && (long)m * k * n1 >= StreamingParallelWork && n1 >= 2 * TwiceSliceColumns(n1);

    /// <summary>
    /// Whether a pair runs as two parts of its rows, each through both layers on one core: where <see cref="RowParts.Pay"/>
    /// (a part at least a column tile's rows, both kernels in each core's L2, the multiply-adds of a product against packed
    /// weights that is shared, measured in training steps and kept for predictions, where a pair outside a run is rare),
    /// and neither product deep enough for <see cref="Multiply"/> to sum its depth in parts, so each output is the chain
    /// <see cref="Multiply"/> computes.
    /// The bits are the same either way, so the pair is cut only where the helper is free to take a part (inside a part of
    /// a batch trained on both cores, BatchParts, or on one core, it is two Multiply calls).
    /// </summary>
    private static bool SharesRowsOfBoth(int m, int k, int n1, int n2, in Epilogue first, in Epilogue second)
    {
        long weights = (long)k * n1 + (long)n1 * n2;
        return RowParts.Pay(m, weights, weights, PackedParallelWork) && !IsDeep(m, k, n1, first) && !IsDeep(m, n1, n2, second);
    }

    /// <summary>The pair in two parts of its rows (<see cref="SharesRowsOfBoth"/>), one a core.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void TwiceInRowParts(ReadOnlySpan<float> a, ReadOnlySpan<float> b1, Span<float> h, ReadOnlySpan<float> b2, Span<float> c,
        int m, int k, int n1, int n2, in Epilogue first, in Epilogue second, PackedPanels panels1, PackedPanels panels2)
    {
        fixed (float* pa = a, pb1 = b1, ph = h, pb2 = b2, pc = c, pbias1 = first.Bias, pbias2 = second.Bias)
        {
            var job = new TwiceJob(
                new Job(new PinnedMatrix(pa, new Matrix(a, k, 1)), new PinnedMatrix(pb1, new Matrix(b1, n1, 1, panels1)), ph, pbias1, first, blocks: null, partSize: 0, m, k, n1),
                new Job(new PinnedMatrix(ph, new Matrix(h, n1, 1)), new PinnedMatrix(pb2, new Matrix(b2, n2, 1, panels2)), pc, pbias2, second, blocks: null, partSize: 0, m, n1, n2),
                sliceColumns: 0, partials: null);
            Helper.For(2, &TwiceRowPart, in job);
        }
    }

    /// <summary>Both products for the rows of part <paramref name="index"/> of two, on this thread: H's rows, then C's from them.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void TwiceRowPart(void* state, int index, int worker)
    {
        ref readonly TwiceJob job = ref *(TwiceJob*)state;
        ref readonly Job first = ref job.First, second = ref job.Second;
        var (row, rows) = Helper.PartOf(index, 2, first.M);
        RunRowsOf(first, row, rows);
        RunRowsOf(second, row, rows);
    }

    /// <summary>Rows [<paramref name="row"/>, + <paramref name="rows"/>) of a job's product, all on this thread, B's panels read where it has them.</summary>
    private static unsafe void RunRowsOf(in Job job, int row, int rows) =>
        RunRowsOnPath(job.A.From(row * job.A.RowStride), job.B.Columns(0), new Span<float>(job.C + (long)row * job.N, rows * job.N), rows, job.K, job.N,
            job.EpilogueFrom(0), job.N);

    /// <summary>Columns of H per slice: 128 (eight 512-bit accumulators, as <see cref="StreamingSlots"/>) where that makes two slices, else 64.</summary>
    private static int TwiceSliceColumns(int n1) => n1 >= 256 ? 128 : 64;

    /// <summary>
    /// Both layers' operands as pointers, the columns of H per slice, and where each slice's partial C goes (slice 0's straight
    /// into C); a pair cut by rows has no slices and no partials. A job of bare pointers and sizes for the slices (~120 bytes
    /// against these two Jobs' ~390, fewer lines to build and for the helper to read) left the MLP's batch 1 as it was on the
    /// Intel Xeon: 4.87-5.91 us against 4.85-6.43, six rounds in turns.
    /// </summary>
    private readonly unsafe struct TwiceJob(Job first, Job second, int sliceColumns, float* partials)
    {
        public readonly Job First = first, Second = second;
        public readonly int SliceColumns = sliceColumns;
        public readonly float* Partials = partials;
    }

    [MethodImpl(Compiled.Driver)]
    private static unsafe void StreamTwice<TLanes, TVector>(ReadOnlySpan<float> a, ReadOnlySpan<float> b1, Span<float> h, ReadOnlySpan<float> b2, Span<float> c,
        int m, int k, int n1, int n2, in Epilogue first, in Epilogue second, PackedPanels panels1)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int sliceColumns = TwiceSliceColumns(n1), slices = (n1 + sliceColumns - 1) / sliceColumns, size = m * n2;
        var partials = AlignedBuffer.Ensure(ref partialSums, (slices - 1) * size);
        fixed (float* pa = a, pb1 = b1, ph = h, pb2 = b2, pc = c, pp = partials, pbias1 = first.Bias)
        {
            var job = new TwiceJob(
                new Job(new PinnedMatrix(pa, new Matrix(a, k, 1)), new PinnedMatrix(pb1, new Matrix(b1, n1, 1, panels1)), ph, pbias1, first, blocks: null, partSize: 0, m, k, n1),
                new Job(new PinnedMatrix(ph, new Matrix(h, n1, 1)), new PinnedMatrix(pb2, new Matrix(b2, n2, 1)), pc, null, default, blocks: null, partSize: 0, m, n1, n2),
                sliceColumns, pp);
            Helper.For(slices, &StreamTwiceSlice<TLanes, TVector>, in job);
        }
        // C = slice 0's partial + the others in slice order, then bias and ReLU, as the epilogue would after the whole depth.
        var sum = c.Slice(0, size);
        for (int slice = 1; slice < slices; slice++) TensorPrimitives.Add(sum, partials.Slice((slice - 1) * size, size), sum);
        if (!second.Bias.IsEmpty) Reductions.AddToRows(sum, second.Bias, m, n2);
        if (second.Relu) TensorPrimitives.Max(sum, 0f, sum);
    }

    /// <summary>
    /// Slice <paramref name="index"/>: H's columns [index·slice, +slice) for every row, then, from those columns and B2's same
    /// rows, every row's partial C. The slice is streamed as a matrix of its own width, so its columns are exactly these
    /// (never shifted to B1's vector boundaries), and no other slice's H is read.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void StreamTwiceSlice<TLanes, TVector>(void* state, int index, int worker)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref readonly TwiceJob job = ref *(TwiceJob*)state;
        ref readonly Job first = ref job.First, second = ref job.Second;
        int column = index * job.SliceColumns, columns = Math.Min(job.SliceColumns, first.N - column), n2 = second.N;
        var a = first.A.From();
        var b1 = first.B.Columns(column);
        var h = second.A.From(column);
        var b2 = second.B.From(column * n2);
        var epilogue = first.EpilogueFrom(column);
        float* partial = index == 0 ? second.C : job.Partials + (long)(index - 1) * first.M * n2;
        StreamRows<TLanes, TVector>(a, 0, first.M, b1, new Span<float>(first.C + column, (first.M - 1) * first.N + columns), first.N, first.K, columns, epilogue,
            0, StreamSlots(columns, TLanes.Count));
        StreamRows<TLanes, TVector>(h, 0, first.M, b2, new Span<float>(partial, first.M * n2), n2, columns, n2, default, 0, StreamSlots(n2, TLanes.Count));
    }
}
