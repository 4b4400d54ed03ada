using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

// The transposed convolution of a gradient that a max pooling scattered to its winners: behind a 2x2 pooling at most one
// value in four is nonzero, so the patch gradients (values · kernelᵀ) are taken from the nonzero values alone.
public static partial class Convolution
{
    /// <summary>
    /// Patch rows [0, <paramref name="rows"/>) of values · kernelᵀ where most values are zero: each row sums its nonzero
    /// values times their filters' kernel columns (<paramref name="columns"/>: the kernel transposed, a filter's column
    /// per row), in filter order. That is the dense product's sum without its zero terms, so the bits are the same: a zero
    /// term leaves a sum as it was (the sum starts at +0, and +0 plus either zero is +0). The two routes differ only where a
    /// kernel holds an infinity or a NaN, whose product with a zero value the dense route takes and this one skips.
    /// A stretch of <see cref="ScatteredStretch"/> vectors of the patch at a time, for every row of the chunk, so that stretch
    /// of every filter's column (64 filters, AVX2: 24 KB) stays in L1 while the rows read it; a patch that is no whole number
    /// of stretches ends with one that overlaps the one before and writes the same sums again.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void ScatteredRows<TLanes, TVector>(float* values, float* columns, float* patches, int rows, int filters, int size)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        // Each row's nonzero values and where their filters' columns start, found once for all the stretches.
        using var startScratch = Scratch<int>.Rent(rows + 1);
        using var columnScratch = Scratch<int>.RentUncleared(rows * filters + 8);
        using var valueScratch = Scratch<float>.RentUncleared(rows * filters + 8);
        fixed (int* start = startScratch.Span, column = columnScratch.Span)
        fixed (float* nonzero = valueScratch.Span)
        {
            int count = 0;
            for (int row = 0; row < rows; row++)
            {
                start[row] = count;
                float* value = values + (long)row * filters;
                int c = 0;
                // Eight filters at a time, their nonzero lanes found by one comparison (a NaN is kept, as the dense sum takes
                // it) and packed to the front by one permutation, without a branch on what was found.
                if (System.Runtime.Intrinsics.X86.Avx2.IsSupported)
                {
                    var offsets = Vector256.Create(size) * Vector256<int>.Indices;
                    for (; c + 8 <= filters; c += 8)
                    {
                        var v = Vector256.Load(value + c);
                        uint kept = ~Vector256.Equals(v, Vector256<float>.Zero).ExtractMostSignificantBits() & 0xFF;
                        var packing = Vector256.Load(PackingOrder + 8 * kept);
                        System.Runtime.Intrinsics.X86.Avx2.PermuteVar8x32(v, packing).Store(nonzero + count);
                        System.Runtime.Intrinsics.X86.Avx2.PermuteVar8x32(offsets + Vector256.Create(c * size), packing).Store(column + count);
                        count += System.Numerics.BitOperations.PopCount(kept);
                    }
                }
                for (; c < filters; c++)
                {
                    float v = value[c];
                    column[count] = c * size;
                    nonzero[count] = v;
                    count += v != 0f ? 1 : 0;
                }
            }
            start[rows] = count;

            int width = TLanes.Count, stretch = ScatteredStretch * width;
            for (int from = 0; from < size; from += stretch)
            {
                int i = Math.Min(from, size - stretch);
                for (int row = 0; row < rows; row++)
                {
                    TVector s0 = TLanes.Zero, s1 = TLanes.Zero, s2 = TLanes.Zero, s3 = TLanes.Zero;
                    TVector s4 = TLanes.Zero, s5 = TLanes.Zero, s6 = TLanes.Zero, s7 = TLanes.Zero;
                    TVector s8 = TLanes.Zero, s9 = TLanes.Zero, s10 = TLanes.Zero, s11 = TLanes.Zero;
                    for (int at = start[row]; at < start[row + 1]; at++)
                    {
                        TVector g = TLanes.Broadcast(nonzero[at]);
                        ref float source = ref Unsafe.AsRef<float>(columns + column[at] + i);
                        s0 = TLanes.MultiplyAdd(g, TLanes.Load(ref source), s0);
                        s1 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, width)), s1);
                        s2 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 2 * width)), s2);
                        s3 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 3 * width)), s3);
                        s4 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 4 * width)), s4);
                        s5 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 5 * width)), s5);
                        s6 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 6 * width)), s6);
                        s7 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 7 * width)), s7);
                        s8 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 8 * width)), s8);
                        s9 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 9 * width)), s9);
                        s10 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 10 * width)), s10);
                        s11 = TLanes.MultiplyAdd(g, TLanes.Load(ref Unsafe.Add(ref source, 11 * width)), s11);
                    }
                    ref float target = ref Unsafe.AsRef<float>(patches + (long)row * size + i);
                    TLanes.Store(ref target, s0);
                    TLanes.Store(ref Unsafe.Add(ref target, width), s1);
                    TLanes.Store(ref Unsafe.Add(ref target, 2 * width), s2);
                    TLanes.Store(ref Unsafe.Add(ref target, 3 * width), s3);
                    TLanes.Store(ref Unsafe.Add(ref target, 4 * width), s4);
                    TLanes.Store(ref Unsafe.Add(ref target, 5 * width), s5);
                    TLanes.Store(ref Unsafe.Add(ref target, 6 * width), s6);
                    TLanes.Store(ref Unsafe.Add(ref target, 7 * width), s7);
                    TLanes.Store(ref Unsafe.Add(ref target, 8 * width), s8);
                    TLanes.Store(ref Unsafe.Add(ref target, 9 * width), s9);
                    TLanes.Store(ref Unsafe.Add(ref target, 10 * width), s10);
                    TLanes.Store(ref Unsafe.Add(ref target, 11 * width), s11);
                }
            }
        }
    }

    /// <summary>
    /// For each set of eight lanes (a byte, lane i in bit i), the lanes in it in order and then the others: the permutation
    /// that packs the set's lanes to the front of a vector.
    /// </summary>
    private static readonly unsafe int* PackingOrder = BuildPackingOrder();

    private static unsafe int* BuildPackingOrder()
    {
        var order = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(256 * 8 * sizeof(int), 64);
        for (int set = 0; set < 256; set++)
        {
            int next = 0;
            for (int lane = 0; lane < 8; lane++) if ((set >> lane & 1) != 0) order[set * 8 + next++] = lane;
            for (int lane = 0; lane < 8; lane++) if ((set >> lane & 1) == 0) order[set * 8 + next++] = lane;
        }
        return order;
    }

    /// <summary>Vectors of a patch row the scattered route sums in registers at a time; narrower patches take the dense product.</summary>
    private const int ScatteredStretch = 12;

    /// <summary>The floats of a patch row the scattered route sums on vectors of <paramref name="width"/> floats: whole stretches.</summary>
    private static int StretchedFloats(int size, int width)
    {
        int stretch = ScatteredStretch * width;
        return (size + stretch - 1) / stretch * stretch;
    }

    /// <summary>Whether the scattered route takes patches this wide on the current path (at least one stretch).</summary>
    private static bool ScatteredFits(int patchSize) =>
        patchSize >= ScatteredStretch * Simd.Width;

    /// <summary>
    /// The floats of the vectors the scattered route sums a patch row of <paramref name="size"/> on: the current path's,
    /// but on AVX-512 256-bit ones where their stretches cover the patch with fewer floats (the small CNN's conv2, 288
    /// floats: three stretches of 96 where two of 192 overlap by 96). Zen 4 multiplies 512 bits as two halves, so what the
    /// overlap would compute again is saved. Each float's sum is the same chain on either width.
    /// </summary>
    internal static int ScatteredWidth(int size) =>
        Simd.Current == SimdPath.Avx512 && StretchedFloats(size, Vector256<float>.Count) < StretchedFloats(size, Vector512<float>.Count)
            ? Vector256<float>.Count : Simd.Width;

    private static unsafe void ScatteredRows(float* values, float* columns, float* patches, int rows, int filters, int size)
    {
        switch (ScatteredWidth(size))
        {
            case 16: ScatteredRows<Lanes512, Vector512<float>>(values, columns, patches, rows, filters, size); break;
            case 8: ScatteredRows<Lanes256, Vector256<float>>(values, columns, patches, rows, filters, size); break;
            default: ScatteredRows<Lanes128, Vector128<float>>(values, columns, patches, rows, filters, size); break;
        }
    }
}
