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
    /// B and a recurrent kernel's transpose. Blocks of 4 x 4 go through registers (four loads, eight shuffles, four stores for
    /// sixteen floats, where one at a time took sixteen loads and sixteen stores); the edges are copied one by one.
    /// Target rows are written in order, so source rows are read as that many sequential streams. A·Bᵀ on AVX-512 (every
    /// Dense layer's input gradient): 32x128x256 36-44 -> 23 us, 64x128x1600 323-355 -> 225-230 us, 32x256x784 239-262 ->
    /// 129-132 us, where A·B takes 17, 217 and 107.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    internal static void Transpose(ref float source, nint sourceStride, ref float target, nint targetStride, int rows, int columns)
    {
        int wholeRows = Sse.IsSupported ? rows & ~3 : 0, wholeColumns = Sse.IsSupported ? columns & ~3 : 0;
        for (int c = 0; c < wholeColumns; c += 4)
        {
            for (int r = 0; r < wholeRows; r += 4)
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
            TransposeOneByOne(ref source, sourceStride, ref target, targetStride, wholeRows, rows, c, c + 4);
        }
        TransposeOneByOne(ref source, sourceStride, ref target, targetStride, 0, rows, wholeColumns, columns);
    }

    private static void TransposeOneByOne(ref float source, nint sourceStride, ref float target, nint targetStride, int firstRow, int endRow, int firstColumn, int endColumn)
    {
        for (int c = firstColumn; c < endColumn; c++)
            for (int r = firstRow; r < endRow; r++) Unsafe.Add(ref target, c * targetStride + r) = Unsafe.Add(ref source, r * sourceStride + c);
    }
}
