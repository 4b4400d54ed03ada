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
    /// 36-44 -> 23 us), two rows left over in blocks of 2 x 4, the edges one by one. Target rows are written in order, so
    /// source rows are read as that many sequential streams.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    internal static void Transpose(ref float source, nint sourceStride, ref float target, nint targetStride, int rows, int columns)
    {
        // Whole 16 x 16 blocks on AVX-512 hardware (a path forced wider than the hardware keeps the 4 x 4 blocks: same values).
        bool sixteens = Simd.Current == SimdPath.Avx512 && Avx512F.IsSupported;
        int rows16 = sixteens ? rows & ~15 : 0, columns16 = sixteens ? columns & ~15 : 0;
        for (int c = 0; c < columns16; c += 16)
            for (int r = 0; r < rows16; r += 16)
                TransposeBlock(ref Unsafe.Add(ref source, r * sourceStride + c), sourceStride, ref Unsafe.Add(ref target, c * targetStride + r), targetStride);
        // What the 16 x 16 blocks left: the columns past them over those rows, then the rows past them over every column
        // (neither, for a head's keys of 64 x 16: two empty calls cost q·kᵀ of a head ~25 of 770 ns).
        if (columns16 < columns) TransposeByFours(ref source, sourceStride, ref target, targetStride, 0, rows16, columns16, columns);
        if (rows16 < rows) TransposeByFours(ref source, sourceStride, ref target, targetStride, rows16, rows, 0, columns);
    }

    /// <summary>The transpose of source rows [firstRow, endRow) by columns [firstColumn, endColumn): 4 x 4 blocks, then 2 x 4, then the edges one by one.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static void TransposeByFours(ref float source, nint sourceStride, ref float target, nint targetStride, int firstRow, int endRow, int firstColumn, int endColumn)
    {
        int wholeRows = Sse.IsSupported ? firstRow + ((endRow - firstRow) & ~3) : firstRow;
        int wholeColumns = Sse.IsSupported ? firstColumn + ((endColumn - firstColumn) & ~3) : firstColumn;
        // Two rows left (a six-row panel's last two, off AVX-512) go as a 2 x 4 block; the rest one by one, only where there
        // is any (its loop set up for nothing for every four columns of a six-row panel cost as much again as the transpose:
        // 2048 x 2048 packed in six-row panels on AVX2, 1.7-2.3 -> 0.57-0.59 ms with both).
        int pairedRows = endRow - wholeRows >= 2 ? wholeRows + 2 : wholeRows;
        for (int c = firstColumn; c < wholeColumns; c += 4)
        {
            for (int r = firstRow; r < wholeRows; r += 4)
                TransposeQuad(ref Unsafe.Add(ref source, r * sourceStride + c), sourceStride, ref Unsafe.Add(ref target, c * targetStride + r), targetStride);
            if (pairedRows > wholeRows)
                TransposePair(ref Unsafe.Add(ref source, wholeRows * sourceStride + c), sourceStride, ref Unsafe.Add(ref target, c * targetStride + wholeRows), targetStride);
            if (pairedRows < endRow) TransposeOneByOne(ref source, sourceStride, ref target, targetStride, pairedRows, endRow, c, c + 4);
        }
        TransposeOneByOne(ref source, sourceStride, ref target, targetStride, firstRow, endRow, wholeColumns, endColumn);
    }

    /// <summary>A 4 x 4 block transposed: four loads, the rows interleaved in pairs and the pairs' halves combined, four stores.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposeQuad(ref float from, nint sourceStride, ref float to, nint targetStride)
    {
        var r0 = Vector128.LoadUnsafe(ref from);
        var r1 = Vector128.LoadUnsafe(ref Unsafe.Add(ref from, sourceStride));
        var r2 = Vector128.LoadUnsafe(ref Unsafe.Add(ref from, 2 * sourceStride));
        var r3 = Vector128.LoadUnsafe(ref Unsafe.Add(ref from, 3 * sourceStride));
        var low01 = Sse.UnpackLow(r0, r1);   // r0[0] r1[0] r0[1] r1[1]
        var low23 = Sse.UnpackLow(r2, r3);
        var high01 = Sse.UnpackHigh(r0, r1); // r0[2] r1[2] r0[3] r1[3]
        var high23 = Sse.UnpackHigh(r2, r3);
        Sse.MoveLowToHigh(low01, low23).StoreUnsafe(ref to);
        Sse.MoveHighToLow(low23, low01).StoreUnsafe(ref Unsafe.Add(ref to, targetStride));
        Sse.MoveLowToHigh(high01, high23).StoreUnsafe(ref Unsafe.Add(ref to, 2 * targetStride));
        Sse.MoveHighToLow(high23, high01).StoreUnsafe(ref Unsafe.Add(ref to, 3 * targetStride));
    }

    /// <summary>A 2 x 4 block transposed: the two rows interleaved, each column's pair stored as one 8-byte value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposePair(ref float from, nint sourceStride, ref float to, nint targetStride)
    {
        var r0 = Vector128.LoadUnsafe(ref from);
        var r1 = Vector128.LoadUnsafe(ref Unsafe.Add(ref from, sourceStride));
        var low = Sse.UnpackLow(r0, r1).AsUInt64();   // r0[0] r1[0] | r0[1] r1[1]
        var high = Sse.UnpackHigh(r0, r1).AsUInt64(); // r0[2] r1[2] | r0[3] r1[3]
        ref byte column = ref Unsafe.As<float, byte>(ref to);
        nint stride = targetStride * sizeof(float);
        Unsafe.WriteUnaligned(ref column, low.ToScalar());
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref column, stride), low.GetElement(1));
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref column, 2 * stride), high.ToScalar());
        Unsafe.WriteUnaligned(ref Unsafe.Add(ref column, 3 * stride), high.GetElement(1));
    }

    /// <summary>
    /// A 16 x 16 block transposed: <see cref="TransposeHalfway"/>, then each column stored as a row of the target. Every row
    /// is loaded before any is stored, so source and target may be the same block (<see cref="FinishColumns"/>).
    /// <see cref="MultiplyBlock"/> takes the same last stage, each column consumed as it is produced, in registers; stored
    /// and read back, the MNIST classifier's 128x128x10 took 4.6 us instead of 4.1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposeBlock(ref float from, nint sourceStride, ref float to, nint targetStride)
    {
        TransposeHalfway(ref from, sourceStride, out var h);
        Avx512F.Shuffle4x128(h.V0, h.V8, Even).StoreUnsafe(ref to, (nuint)(0 * targetStride));
        Avx512F.Shuffle4x128(h.V1, h.V9, Even).StoreUnsafe(ref to, (nuint)(1 * targetStride));
        Avx512F.Shuffle4x128(h.V2, h.VA, Even).StoreUnsafe(ref to, (nuint)(2 * targetStride));
        Avx512F.Shuffle4x128(h.V3, h.VB, Even).StoreUnsafe(ref to, (nuint)(3 * targetStride));
        Avx512F.Shuffle4x128(h.V4, h.VC, Even).StoreUnsafe(ref to, (nuint)(4 * targetStride));
        Avx512F.Shuffle4x128(h.V5, h.VD, Even).StoreUnsafe(ref to, (nuint)(5 * targetStride));
        Avx512F.Shuffle4x128(h.V6, h.VE, Even).StoreUnsafe(ref to, (nuint)(6 * targetStride));
        Avx512F.Shuffle4x128(h.V7, h.VF, Even).StoreUnsafe(ref to, (nuint)(7 * targetStride));
        Avx512F.Shuffle4x128(h.V0, h.V8, Odd).StoreUnsafe(ref to, (nuint)(8 * targetStride));
        Avx512F.Shuffle4x128(h.V1, h.V9, Odd).StoreUnsafe(ref to, (nuint)(9 * targetStride));
        Avx512F.Shuffle4x128(h.V2, h.VA, Odd).StoreUnsafe(ref to, (nuint)(10 * targetStride));
        Avx512F.Shuffle4x128(h.V3, h.VB, Odd).StoreUnsafe(ref to, (nuint)(11 * targetStride));
        Avx512F.Shuffle4x128(h.V4, h.VC, Odd).StoreUnsafe(ref to, (nuint)(12 * targetStride));
        Avx512F.Shuffle4x128(h.V5, h.VD, Odd).StoreUnsafe(ref to, (nuint)(13 * targetStride));
        Avx512F.Shuffle4x128(h.V6, h.VE, Odd).StoreUnsafe(ref to, (nuint)(14 * targetStride));
        Avx512F.Shuffle4x128(h.V7, h.VF, Odd).StoreUnsafe(ref to, (nuint)(15 * targetStride));
    }

    /// <summary>
    /// Sixteen rows of a 16 x 16 block halfway to its transpose, the stages <see cref="TransposeBlock"/> and
    /// <see cref="MultiplyBlock"/> share: rows interleaved in pairs, then as pairs of pairs (vector 4g + j holds, in each
    /// 128-bit lane L, column 4L + j of rows 4g to 4g + 3), then lanes 0 and 2 (columns j, 8 + j) and lanes 1 and 3 (4 + j,
    /// 12 + j) of rows 0-7 and of rows 8-15. Column s is then the even lanes of (V_s, V_8+s) for s 0-3, of (V_4+s, V_12+s)
    /// for 4-7, and the odd lanes of the same pairs for 8-15.
    /// </summary>
    private struct HalfTransposed
    {
        public Vector512<float> V0, V1, V2, V3, V4, V5, V6, V7, V8, V9, VA, VB, VC, VD, VE, VF;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposeHalfway(ref float rows, nint stride, out HalfTransposed h)
    {
        var (u0, u1, u2, u3) = Interleave(RowOf(ref rows, 0, stride), RowOf(ref rows, 1, stride), RowOf(ref rows, 2, stride), RowOf(ref rows, 3, stride));
        var (u4, u5, u6, u7) = Interleave(RowOf(ref rows, 4, stride), RowOf(ref rows, 5, stride), RowOf(ref rows, 6, stride), RowOf(ref rows, 7, stride));
        var (u8, u9, uA, uB) = Interleave(RowOf(ref rows, 8, stride), RowOf(ref rows, 9, stride), RowOf(ref rows, 10, stride), RowOf(ref rows, 11, stride));
        var (uC, uD, uE, uF) = Interleave(RowOf(ref rows, 12, stride), RowOf(ref rows, 13, stride), RowOf(ref rows, 14, stride), RowOf(ref rows, 15, stride));
        h.V0 = Avx512F.Shuffle4x128(u0, u4, Even); h.V1 = Avx512F.Shuffle4x128(u1, u5, Even); h.V2 = Avx512F.Shuffle4x128(u2, u6, Even); h.V3 = Avx512F.Shuffle4x128(u3, u7, Even);
        h.V4 = Avx512F.Shuffle4x128(u0, u4, Odd); h.V5 = Avx512F.Shuffle4x128(u1, u5, Odd); h.V6 = Avx512F.Shuffle4x128(u2, u6, Odd); h.V7 = Avx512F.Shuffle4x128(u3, u7, Odd);
        h.V8 = Avx512F.Shuffle4x128(u8, uC, Even); h.V9 = Avx512F.Shuffle4x128(u9, uD, Even); h.VA = Avx512F.Shuffle4x128(uA, uE, Even); h.VB = Avx512F.Shuffle4x128(uB, uF, Even);
        h.VC = Avx512F.Shuffle4x128(u8, uC, Odd); h.VD = Avx512F.Shuffle4x128(u9, uD, Odd); h.VE = Avx512F.Shuffle4x128(uA, uE, Odd); h.VF = Avx512F.Shuffle4x128(uB, uF, Odd);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> RowOf(ref float a, int row, nint rowStride) => Vector512.LoadUnsafe(ref Unsafe.Add(ref a, row * rowStride));

    /// <summary>Four rows as four vectors whose 128-bit lane L holds column 4L + j (j = 0..3) of the four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float>, Vector512<float>, Vector512<float>, Vector512<float>) Interleave(Vector512<float> r0, Vector512<float> r1, Vector512<float> r2, Vector512<float> r3)
    {
        Vector512<double> low01 = Avx512F.UnpackLow(r0, r1).AsDouble(), high01 = Avx512F.UnpackHigh(r0, r1).AsDouble();
        Vector512<double> low23 = Avx512F.UnpackLow(r2, r3).AsDouble(), high23 = Avx512F.UnpackHigh(r2, r3).AsDouble();
        return (Avx512F.UnpackLow(low01, low23).AsSingle(), Avx512F.UnpackHigh(low01, low23).AsSingle(),
            Avx512F.UnpackLow(high01, high23).AsSingle(), Avx512F.UnpackHigh(high01, high23).AsSingle());
    }

    // Shuffle4x128 selectors: 128-bit lanes 0 and 2 of the first operand, then of the second; lanes 1 and 3 likewise.
    private const byte Even = 0b10_00_10_00, Odd = 0b11_01_11_01;

    private static void TransposeOneByOne(ref float source, nint sourceStride, ref float target, nint targetStride, int firstRow, int endRow, int firstColumn, int endColumn)
    {
        for (int c = firstColumn; c < endColumn; c++)
            for (int r = firstRow; r < endRow; r++) Unsafe.Add(ref target, c * targetStride + r) = Unsafe.Add(ref source, r * sourceStride + c);
    }
}
