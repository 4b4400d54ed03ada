using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>
/// Softmax and its backward pass, a row at a time in vectors, the row's last lanes masked. Every value of a row goes through
/// the same vector arithmetic wherever it sits, so a sample's probabilities do not depend on its place in the batch (a
/// library exp rounds its vector body and its scalar tail differently, which they would). Rows of whole vectors go sixteen
/// at a time step by step (WholeVectorRows); on AVX-512, rows shorter than a vector go sixteen at a time where there are
/// enough of them (Activations.Softmax.Blocks.cs); both to the same bits.
/// </summary>
public static partial class Activations
{
    /// <summary>Numerically stable softmax of each of <paramref name="rows"/> rows into <paramref name="destination"/> (which may be the source).</summary>
    [MethodImpl(Compiled.Driver)]
    public static void Softmax(ReadOnlySpan<float> source, Span<float> destination, int rows, int columns)
    {
        if (source.Length < rows * columns || destination.Length < rows * columns) throw new ArgumentException($"softmax of {rows} x {columns} needs that many values.");
        switch (Simd.Current)
        {
            case SimdPath.Avx512: SoftmaxRows<Lanes512, Vector512<float>>(source, destination, rows, columns); break;
            case SimdPath.Avx2: SoftmaxRows<Lanes256, Vector256<float>>(source, destination, rows, columns); break;
            default: SoftmaxRows<Lanes128, Vector128<float>>(source, destination, rows, columns); break;
        }
    }

    /// <summary>dy = y ⊙ (dy - Σ y·dy) per row, in place.</summary>
    internal static void SoftmaxBackward(ReadOnlySpan<float> y, Span<float> dy, int rows, int columns)
    {
        switch (Simd.Current)
        {
            case SimdPath.Avx512: SoftmaxBackwardRows<Lanes512, Vector512<float>>(y, dy, rows, columns); break;
            case SimdPath.Avx2: SoftmaxBackwardRows<Lanes256, Vector256<float>>(y, dy, rows, columns); break;
            default: SoftmaxBackwardRows<Lanes128, Vector128<float>>(y, dy, rows, columns); break;
        }
    }

    [MethodImpl(Compiled.Kernel)]
    private static void SoftmaxRows<TLanes, TVector>(ReadOnlySpan<float> source, Span<float> destination, int rows, int columns)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, whole = columns / width * width, rest = columns - whole;
        // The lanes past a row's end are -∞: they never win the maximum, and their exp is 0, so they add nothing to the sum.
        var beyond = TLanes.Broadcast(float.NegativeInfinity);
        if (whole == 0)
        {
            // Rows of at most one vector (a classifier's outputs) run by a loop with no call in it, up to a row with a NaN
            // or an infinity, which is taken apart. With FoldedMaximum called inside, the JIT kept the row, the next one and
            // the mask on the stack through every row, 64-byte vectors at the stack's 16-byte alignment: 200 rows of 10 took
            // 3.3 or 6.9 us on a Zen 4, by the process.
            int first = TakesBlocks<TLanes, TVector>(columns) ? SoftmaxInBlocks(source, destination, rows, columns) : 0;
            for (int row = FiniteShortRows<TLanes, TVector>(source, destination, first, rows, columns); row < rows;
                 row = FiniteShortRows<TLanes, TVector>(source, destination, row + 1, rows, columns))
            {
                ref float from = ref Unsafe.Add(ref MemoryMarshal.GetReference(source), row * columns);
                var x = TLanes.LoadFirst(ref from, rest, beyond);
                TLanes.StoreFirst(ref Unsafe.Add(ref MemoryMarshal.GetReference(destination), row * columns), ShortRow<TLanes, TVector>(x, FoldedMaximum(ref from, columns)), rest);
            }
            return;
        }
        if (rest == 0)
        {
            WholeVectorRows<TLanes, TVector>(source, destination, rows, columns);
            return;
        }
        for (int row = 0; row < rows; row++)
        {
            ref float from = ref Unsafe.Add(ref MemoryMarshal.GetReference(source), row * columns);
            ref float to = ref Unsafe.Add(ref MemoryMarshal.GetReference(destination), row * columns);
            var last = rest > 0 ? TLanes.LoadFirst(ref Unsafe.Add(ref from, whole), rest, beyond) : beyond;
            var largest = TLanes.Broadcast(RowMaximum<TLanes, TVector>(ref from, whole, last, columns));
            var total = TLanes.Zero;
            int i = 0;
            // Two vectors a step, summed in the same order as one at a time: each e^x is one long chain of dependent
            // operations, and one alone left the core waiting on it.
            for (; i + width < whole; i += 2 * width)
            {
                var e0 = VectorMath.Exp<TLanes, TVector>(TLanes.Subtract(TLanes.Load(ref Unsafe.Add(ref from, i)), largest));
                var e1 = VectorMath.Exp<TLanes, TVector>(TLanes.Subtract(TLanes.Load(ref Unsafe.Add(ref from, i + width)), largest));
                TLanes.Store(ref Unsafe.Add(ref to, i), e0);
                TLanes.Store(ref Unsafe.Add(ref to, i + width), e1);
                total = TLanes.Add(TLanes.Add(total, e0), e1);
            }
            if (i < whole)
            {
                var e = VectorMath.Exp<TLanes, TVector>(TLanes.Subtract(TLanes.Load(ref Unsafe.Add(ref from, i)), largest));
                TLanes.Store(ref Unsafe.Add(ref to, i), e);
                total = TLanes.Add(total, e);
            }
            if (rest > 0)
            {
                last = VectorMath.Exp<TLanes, TVector>(TLanes.Subtract(last, largest));
                total = TLanes.Add(total, last);
            }
            // Times the sum's reciprocal, as TensorFlow's CPU kernel (Keras 3's default backend) and PyTorch's normalise: one
            // division a row rather than one a value (64x64 rows: 4% fewer cycles).
            var reciprocal = TLanes.Broadcast(1f / TLanes.Sum(total));
            for (int j = 0; j < whole; j += width) TLanes.Store(ref Unsafe.Add(ref to, j), TLanes.Multiply(TLanes.Load(ref Unsafe.Add(ref to, j)), reciprocal));
            if (rest > 0) TLanes.StoreFirst(ref Unsafe.Add(ref to, whole), TLanes.Multiply(last, reciprocal), rest);
        }
    }

    /// <summary>
    /// Rows of whole vectors, <see cref="PhasedRows"/> at a time, each step over all of them before the next: a row's maximum
    /// and its sum each end in a horizontal fold, and a row taken through all its steps at once kept too few of them in
    /// flight (64 rows of 64: 22 against 16 ns a row). The same operations in the same order a row as one at a time, so the
    /// same bits. Rows that end in a partial vector stay one at a time, that vector in a register throughout: kept aside
    /// between the steps it cost more than it gained (64 rows of 17 or 33: 7-9% slower).
    /// </summary>
    [MethodImpl(Compiled.Kernel), SkipLocalsInit] // each row's maximum, sum and reciprocal are written before they are read
    private static unsafe void WholeVectorRows<TLanes, TVector>(ReadOnlySpan<float> source, Span<float> destination, int rows, int columns)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        var beyond = TLanes.Broadcast(float.NegativeInfinity);
        float* largest = stackalloc float[PhasedRows], reciprocals = stackalloc float[PhasedRows];
        float* totals = stackalloc float[PhasedRows * width];
        ref float sourceRows = ref MemoryMarshal.GetReference(source), destinationRows = ref MemoryMarshal.GetReference(destination);
        for (int top = 0; top < rows; top += PhasedRows)
        {
            int count = Math.Min(PhasedRows, rows - top);
            for (int k = 0; k < count; k++) largest[k] = RowMaximum<TLanes, TVector>(ref Unsafe.Add(ref sourceRows, (top + k) * columns), columns, beyond, columns);
            for (int k = 0; k < count; k++)
            {
                ref float from = ref Unsafe.Add(ref sourceRows, (top + k) * columns);
                ref float to = ref Unsafe.Add(ref destinationRows, (top + k) * columns);
                var shift = TLanes.Broadcast(largest[k]);
                var total = TLanes.Zero;
                for (int i = 0; i < columns; i += width)
                {
                    var e = VectorMath.Exp<TLanes, TVector>(TLanes.Subtract(TLanes.Load(ref Unsafe.Add(ref from, i)), shift));
                    TLanes.Store(ref Unsafe.Add(ref to, i), e);
                    total = TLanes.Add(total, e);
                }
                TLanes.Store(ref totals[k * width], total);
            }
            // Times the sum's reciprocal, as in SoftmaxRows.
            for (int k = 0; k < count; k++) reciprocals[k] = 1f / TLanes.Sum(TLanes.Load(ref totals[k * width]));
            for (int k = 0; k < count; k++)
            {
                ref float to = ref Unsafe.Add(ref destinationRows, (top + k) * columns);
                var scale = TLanes.Broadcast(reciprocals[k]);
                for (int j = 0; j < columns; j += width) TLanes.Store(ref Unsafe.Add(ref to, j), TLanes.Multiply(TLanes.Load(ref Unsafe.Add(ref to, j)), scale));
            }
        }
    }

    /// <summary>Rows that <see cref="WholeVectorRows{TLanes, TVector}"/> takes each step over at once.</summary>
    private const int PhasedRows = 16;

    /// <summary>
    /// Rows of at most one vector from <paramref name="first"/> on, each kept in registers, until one whose vector maximum is
    /// not finite (returned, not written; <paramref name="rows"/> when none is). The next row is read before this one is
    /// written: in place, a masked store over the next row's first values would stall its load until the store retired
    /// (200 rows of 10: 11.5 us, against 3.9 us reading ahead).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static int FiniteShortRows<TLanes, TVector>(ReadOnlySpan<float> source, Span<float> destination, int first, int rows, int columns)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (first == rows) return rows;
        ref float from = ref MemoryMarshal.GetReference(source), to = ref MemoryMarshal.GetReference(destination);
        var beyond = TLanes.Broadcast(float.NegativeInfinity);
        var next = TLanes.LoadFirst(ref Unsafe.Add(ref from, first * columns), columns, beyond);
        for (int row = first; row < rows; row++)
        {
            var x = next;
            float largest = TLanes.Largest(x);
            if (!float.IsFinite(largest)) return row;
            if (row + 1 < rows) next = TLanes.LoadFirst(ref Unsafe.Add(ref from, (row + 1) * columns), columns, beyond);
            TLanes.StoreFirst(ref Unsafe.Add(ref to, row * columns), ShortRow<TLanes, TVector>(x, largest), columns);
        }
        return rows;
    }

    /// <summary>A row of at most one vector, its lanes past the end -∞: e^(x - largest), times the reciprocal of their sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector ShortRow<TLanes, TVector>(TVector x, float largest) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var e = VectorMath.Exp<TLanes, TVector>(TLanes.Subtract(x, TLanes.Broadcast(largest)));
        return TLanes.Multiply(e, TLanes.Broadcast(1f / TLanes.Sum(e)));
    }

    /// <summary>
    /// The row's maximum (its whole vectors, then the last, partial one), only ever subtracted: which of equal values, or of
    /// +0 and -0, wins changes no exp.
    /// </summary>
    private static float RowMaximum<TLanes, TVector>(ref float row, int whole, TVector last, int columns)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        for (int i = 0; i < whole; i += TLanes.Count) last = TLanes.Max(last, TLanes.Load(ref Unsafe.Add(ref row, i)));
        float largest = TLanes.Largest(last);
        return float.IsFinite(largest) ? largest : FoldedMaximum(ref row, columns); // a NaN the vectors skipped still spreads through its exp
    }

    /// <summary>MathF.Max folded along the row: NaN wins, so a row with a NaN or an infinity comes out NaN.</summary>
    private static float FoldedMaximum(ref float row, int columns)
    {
        float largest = row;
        for (int i = 1; i < columns; i++) largest = MathF.Max(largest, Unsafe.Add(ref row, i));
        return largest;
    }

    [MethodImpl(Compiled.Kernel)]
    private static void SoftmaxBackwardRows<TLanes, TVector>(ReadOnlySpan<float> y, Span<float> dy, int rows, int columns)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, whole = columns / width * width, rest = columns - whole;
        if (whole == 0)
        {
            // Rows of at most one vector, the next row's gradient read before this one's is written (see SoftmaxRows).
            ref float firstOutput = ref MemoryMarshal.GetReference(y), firstGradient = ref MemoryMarshal.GetReference(dy);
            var nextGradient = TLanes.LoadFirst(ref firstGradient, rest);
            for (int row = 0; row < rows; row++)
            {
                var output = TLanes.LoadFirst(ref Unsafe.Add(ref firstOutput, row * columns), rest);
                var gradient = nextGradient;
                if (row + 1 < rows) nextGradient = TLanes.LoadFirst(ref Unsafe.Add(ref firstGradient, (row + 1) * columns), rest);
                var inner = TLanes.Broadcast(TLanes.Sum(TLanes.Multiply(output, gradient)));
                TLanes.StoreFirst(ref Unsafe.Add(ref firstGradient, row * columns), TLanes.Multiply(output, TLanes.Subtract(gradient, inner)), rest);
            }
            return;
        }
        // A row at a time: taken sixteen rows at a time step by step, as the forward pass takes rows of whole vectors, rows of
        // 64 ran slower (7.3 against 9.5 ns a row; rows of 17 faster, 16.8 against 11.7, but no model here has such rows).
        for (int row = 0; row < rows; row++)
        {
            ref float output = ref Unsafe.Add(ref MemoryMarshal.GetReference(y), row * columns);
            ref float gradient = ref Unsafe.Add(ref MemoryMarshal.GetReference(dy), row * columns);
            var products = TLanes.Zero;
            for (int i = 0; i < whole; i += width)
                products = TLanes.MultiplyAdd(TLanes.Load(ref Unsafe.Add(ref output, i)), TLanes.Load(ref Unsafe.Add(ref gradient, i)), products);
            if (rest > 0)
                products = TLanes.MultiplyAdd(TLanes.LoadFirst(ref Unsafe.Add(ref output, whole), rest), TLanes.LoadFirst(ref Unsafe.Add(ref gradient, whole), rest), products);
            var inner = TLanes.Broadcast(TLanes.Sum(products));
            for (int i = 0; i < whole; i += width)
            {
                ref float at = ref Unsafe.Add(ref gradient, i);
                TLanes.Store(ref at, TLanes.Multiply(TLanes.Load(ref Unsafe.Add(ref output, i)), TLanes.Subtract(TLanes.Load(ref at), inner)));
            }
            if (rest > 0)
            {
                ref float at = ref Unsafe.Add(ref gradient, whole);
                TLanes.StoreFirst(ref at, TLanes.Multiply(TLanes.LoadFirst(ref Unsafe.Add(ref output, whole), rest), TLanes.Subtract(TLanes.LoadFirst(ref at, rest), inner)), rest);
            }
        }
    }
}
