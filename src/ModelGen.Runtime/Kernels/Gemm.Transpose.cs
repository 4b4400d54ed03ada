using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelGen.Kernels;

public static partial class Gemm
{
    /// <summary>The (columns, rows) transpose of a whole (rows, columns) matrix.</summary>
    internal static void Transpose(ReadOnlySpan<float> source, Span<float> target, int rows, int columns) =>
        Transpose(ref MemoryMarshal.GetReference(source[..(rows * columns)]), columns, ref MemoryMarshal.GetReference(target[..(rows * columns)]), rows, rows, columns);

    /// <summary>
    /// target(c, r) = source(r, c) for a (rows, columns) block, each side with its own row stride: the packing of a transposed
    /// B, of a row-major A, and a recurrent kernel's transpose. On AVX-512 whole blocks of 16 x 16 go through registers
    /// (sixteen loads, 64 shuffles, sixteen stores for 256 floats: the attention's keys of a head, 64 x 16, 58 -> 30 ns; a
    /// Dense layer's 256 x 256 kernel 6.0 -> 3.9 us, in L1 or L2), the rest in blocks of 4 x 4 (four loads, eight shuffles,
    /// four stores for sixteen floats, where one at a time took sixteen loads and sixteen stores: A·Bᵀ on AVX-512, 32x128x256
    /// 36-44 -> 23 us), the edges one by one. Target rows are written in order, so source rows are read as that many
    /// sequential streams.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    internal static void Transpose(ref float source, nint sourceStride, ref float target, nint targetStride, int rows, int columns)
    {
        // Whole 16 x 16 blocks on AVX-512 hardware (a path forced wider than the hardware keeps the 4 x 4 blocks: same values).
        bool sixteens = Simd.Current == SimdPath.Avx512 && Avx512F.IsSupported;
        int rows16 = sixteens ? rows & ~15 : 0, columns16 = sixteens ? columns & ~15 : 0;
        for (int c = 0; c < columns16; c += 16)
            for (int r = 0; r < rows16; r += 16)
                TransposeSixteen(ref Unsafe.Add(ref source, r * sourceStride + c), sourceStride, ref Unsafe.Add(ref target, c * targetStride + r), targetStride);
        // What the 16 x 16 blocks left: the columns past them over those rows, then the rows past them over every column
        // (neither, for a head's keys of 64 x 16: two empty calls cost q·kᵀ of a head ~25 of 770 ns).
        if (columns16 < columns) TransposeByFours(ref source, sourceStride, ref target, targetStride, 0, rows16, columns16, columns);
        if (rows16 < rows) TransposeByFours(ref source, sourceStride, ref target, targetStride, rows16, rows, 0, columns);
    }

    /// <summary>The transpose of source rows [firstRow, endRow) by columns [firstColumn, endColumn): 4 x 4 blocks, then the edges one by one.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static void TransposeByFours(ref float source, nint sourceStride, ref float target, nint targetStride, int firstRow, int endRow, int firstColumn, int endColumn)
    {
        int wholeRows = Sse.IsSupported ? firstRow + ((endRow - firstRow) & ~3) : firstRow;
        int wholeColumns = Sse.IsSupported ? firstColumn + ((endColumn - firstColumn) & ~3) : firstColumn;
        for (int c = firstColumn; c < wholeColumns; c += 4)
        {
            for (int r = firstRow; r < wholeRows; r += 4)
            {
                ref float from = ref Unsafe.Add(ref source, r * sourceStride + c);
                var r0 = Vector128.LoadUnsafe(ref from);
                var r1 = Vector128.LoadUnsafe(ref Unsafe.Add(ref from, sourceStride));
                var r2 = Vector128.LoadUnsafe(ref Unsafe.Add(ref from, 2 * sourceStride));
                var r3 = Vector128.LoadUnsafe(ref Unsafe.Add(ref from, 3 * sourceStride));
                var low01 = Sse.UnpackLow(r0, r1);   // r0[0] r1[0] r0[1] r1[1]
                var low23 = Sse.UnpackLow(r2, r3);
                var high01 = Sse.UnpackHigh(r0, r1); // r0[2] r1[2] r0[3] r1[3]
                var high23 = Sse.UnpackHigh(r2, r3);
                ref float to = ref Unsafe.Add(ref target, c * targetStride + r);
                Sse.MoveLowToHigh(low01, low23).StoreUnsafe(ref to);
                Sse.MoveHighToLow(low23, low01).StoreUnsafe(ref Unsafe.Add(ref to, targetStride));
                Sse.MoveLowToHigh(high01, high23).StoreUnsafe(ref Unsafe.Add(ref to, 2 * targetStride));
                Sse.MoveHighToLow(high23, high01).StoreUnsafe(ref Unsafe.Add(ref to, 3 * targetStride));
            }
            TransposeOneByOne(ref source, sourceStride, ref target, targetStride, wholeRows, endRow, c, c + 4);
        }
        TransposeOneByOne(ref source, sourceStride, ref target, targetStride, firstRow, endRow, wholeColumns, endColumn);
    }

    /// <summary>
    /// One 16 x 16 block: each group of four rows is transposed within the vectors' 128-bit lanes (lane l of u[c] then holds
    /// column 4l + c of those rows), then the lanes of the four groups are gathered into whole columns.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposeSixteen(ref float from, nint sourceStride, ref float to, nint targetStride)
    {
        LaneTransposedRows(ref from, sourceStride, out var a0, out var a1, out var a2, out var a3);
        LaneTransposedRows(ref Unsafe.Add(ref from, 4 * sourceStride), sourceStride, out var b0, out var b1, out var b2, out var b3);
        LaneTransposedRows(ref Unsafe.Add(ref from, 8 * sourceStride), sourceStride, out var c0, out var c1, out var c2, out var c3);
        LaneTransposedRows(ref Unsafe.Add(ref from, 12 * sourceStride), sourceStride, out var d0, out var d1, out var d2, out var d3);
        GatherLanes(a0, b0, c0, d0, ref to, targetStride, 0);
        GatherLanes(a1, b1, c1, d1, ref to, targetStride, 1);
        GatherLanes(a2, b2, c2, d2, ref to, targetStride, 2);
        GatherLanes(a3, b3, c3, d3, ref to, targetStride, 3);
    }

    /// <summary>Four rows of sixteen, transposed within each 128-bit lane: lane l of <paramref name="u0"/> holds column 4l of the four rows, of u1 column 4l + 1, ...</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LaneTransposedRows(ref float from, nint stride, out Vector512<float> u0, out Vector512<float> u1, out Vector512<float> u2, out Vector512<float> u3)
    {
        var r0 = Vector512.LoadUnsafe(ref from);
        var r1 = Vector512.LoadUnsafe(ref Unsafe.Add(ref from, stride));
        var r2 = Vector512.LoadUnsafe(ref Unsafe.Add(ref from, 2 * stride));
        var r3 = Vector512.LoadUnsafe(ref Unsafe.Add(ref from, 3 * stride));
        var low01 = Avx512F.UnpackLow(r0, r1);   // a lane: r0[0] r1[0] r0[1] r1[1]
        var high01 = Avx512F.UnpackHigh(r0, r1); // r0[2] r1[2] r0[3] r1[3]
        var low23 = Avx512F.UnpackLow(r2, r3);
        var high23 = Avx512F.UnpackHigh(r2, r3);
        u0 = Avx512F.Shuffle(low01, low23, 0x44);  // r0[0] r1[0] r2[0] r3[0]
        u1 = Avx512F.Shuffle(low01, low23, 0xEE);  // r0[1] r1[1] r2[1] r3[1]
        u2 = Avx512F.Shuffle(high01, high23, 0x44);
        u3 = Avx512F.Shuffle(high01, high23, 0xEE);
    }

    /// <summary>
    /// Columns c, 4 + c, 8 + c and 12 + c of the block from the four row groups' u[c] (lane l: column 4l + c): picking lanes
    /// 0 and 2, or 1 and 3, of two vectors twice puts lane l of all four in one vector, rows 0 to 15 in order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GatherLanes(Vector512<float> rows0, Vector512<float> rows4, Vector512<float> rows8, Vector512<float> rows12, ref float to, nint stride, int c)
    {
        var evenLow = Avx512F.Shuffle4x128(rows0, rows4, 0x88);  // lanes 0 and 2 of rows 0-3, then of rows 4-7
        var oddLow = Avx512F.Shuffle4x128(rows0, rows4, 0xDD);   // lanes 1 and 3
        var evenHigh = Avx512F.Shuffle4x128(rows8, rows12, 0x88);
        var oddHigh = Avx512F.Shuffle4x128(rows8, rows12, 0xDD);
        Avx512F.Shuffle4x128(evenLow, evenHigh, 0x88).StoreUnsafe(ref Unsafe.Add(ref to, c * stride));
        Avx512F.Shuffle4x128(oddLow, oddHigh, 0x88).StoreUnsafe(ref Unsafe.Add(ref to, (4 + c) * stride));
        Avx512F.Shuffle4x128(evenLow, evenHigh, 0xDD).StoreUnsafe(ref Unsafe.Add(ref to, (8 + c) * stride));
        Avx512F.Shuffle4x128(oddLow, oddHigh, 0xDD).StoreUnsafe(ref Unsafe.Add(ref to, (12 + c) * stride));
    }

    private static void TransposeOneByOne(ref float source, nint sourceStride, ref float target, nint targetStride, int firstRow, int endRow, int firstColumn, int endColumn)
    {
        for (int c = firstColumn; c < endColumn; c++)
            for (int r = firstRow; r < endRow; r++) Unsafe.Add(ref target, c * targetStride + r) = Unsafe.Add(ref source, r * sourceStride + c);
    }
}
