using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelGen.Kernels;

/// <summary>
/// Products at most <see cref="ColumnsAtMost"/> columns wide (a classifier's 10 outputs, a binary one's single output)
/// a column at a time, on AVX-512: each accumulator holds one column of C for sixteen rows, so every lane does useful
/// work, where the narrow kernel's rows of one vector leave the lanes past the product's width idle (10 of 16 busy, 1 of
/// 16 for one output). Each output is the same chain of multiply-adds as in the narrow kernel, step after step from zero,
/// finished by the same epilogue, so the bits are the same whichever kernel takes a tile. A transposed A (the kernel
/// gradient's Xᵀ·dY) holds sixteen rows of a depth step where it lies; a row-major A (the forward product) is transposed
/// sixteen steps at a time in registers. The tile's sums are transposed back into rows of C at the end. One core,
/// medians against the narrow kernel, interleaved (Zen 4): A·B 128x128x10 (the MNIST classifier's last layer at batch
/// 128) 5.47 -> 4.42 us, one column 5.51 -> 2.24, twelve 5.43 -> 4.84; Aᵀ·B 128x128x10 5.45 -> 3.60, one column 5.52 ->
/// 2.67; the digits MLP's Fit (batches of 200 against 10 outputs) 0.0842 -> 0.0814 s.
/// </summary>
public static partial class Gemm
{
    /// <summary>
    /// The widest product taken a column at a time: twelve accumulators beside a block's sixteen transposed columns fill
    /// AVX-512's 32 registers; from thirteen columns the narrow kernel's rows keep at least 13 of 16 lanes busy anyway.
    /// </summary>
    private const int ColumnsAtMost = 12;

    /// <summary>Rows of a tile taken a column at a time, and depth steps of a row-major A transposed at once.</summary>
    private const int ColumnTile = 16;

    /// <summary>
    /// Whether the packed path's tiles of sixteen rows of this A, a depth block of <paramref name="depth"/> steps, against
    /// this many columns of a packed B go column by column. A transposed A from one block of sixteen steps: shallower, the
    /// sums' transposition back costs more than the idle lanes (32x8x8 on one core: no gain). A row-major A in whole blocks,
    /// or deep enough to carry a padded last block, which costs about two blocks (128 rows against 10 columns, narrow kernel
    /// against this one, us: 16 deep 1.27 -> 0.99, 64 deep 3.09 -> 2.29, 128 deep 5.47 -> 4.10; with a last part-block:
    /// 24 deep 1.55 -> 1.72, 37 deep 2.08 -> 2.16, 130 deep 5.56 -> 4.67; the scaling MLP of width 8 at batch 128, three
    /// products 8 deep padded to 16: 4.7 -> 6.8 us).
    /// </summary>
    private static bool TakesColumns<TLanes, TVector>(in Matrix a, int depth, int columns) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        columns <= ColumnsAtMost && depth >= ColumnTile && TLanes.Count == ColumnTile && Avx512F.IsSupported
        && (a.RowStride == 1 || (a.ColumnStride == 1 && (depth % ColumnTile == 0 || depth >= PaddedBlockDepth)));

    /// <summary>The depth from which a row-major A's product is taken column by column with a padded last block.</summary>
    private const int PaddedBlockDepth = 4 * ColumnTile;

    /// <summary>
    /// One tile of sixteen rows: <paramref name="rowsOfA"/> at its first row and depth step, <paramref name="b"/> a packed
    /// panel (zero past the product's columns, so a tile may compute one column more than it stores).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void ColumnsTile(in Matrix a, ref float rowsOfA, ref float b, int bStep, int kc, Span<float> c, int ldc, int row,
        int columns, Stage stage, in Epilogue epilogue, Span<float> spill)
    {
        switch (columns)
        {
            case 1: Columns<One>(a, ref rowsOfA, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill); break;
            case 2: Columns<Two>(a, ref rowsOfA, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill); break;
            case <= 4: Columns<Four>(a, ref rowsOfA, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill); break;
            case <= 6: Columns<Six>(a, ref rowsOfA, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill); break;
            case <= 8: Columns<Eight>(a, ref rowsOfA, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill); break;
            case <= 10: Columns<Ten>(a, ref rowsOfA, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill); break;
            default: Columns<Twelve>(a, ref rowsOfA, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Columns<TWidth>(in Matrix a, ref float rowsOfA, ref float b, int bStep, int kc, Span<float> c, int ldc, int row,
        int columns, Stage stage, in Epilogue epilogue, Span<float> spill) where TWidth : struct, ICount
    {
        if (a.RowStride == 1) TransposedColumns<TWidth>(ref rowsOfA, a.ColumnStride, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill);
        else RowMajorColumns<TWidth>(ref rowsOfA, a.RowStride, ref b, bStep, kc, c, ldc, row, columns, stage, epilogue, spill);
    }

    /// <summary>A transposed A: each depth step's sixteen rows are adjacent, one load.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static void TransposedColumns<TWidth>(ref float a, nint step, ref float b, nint bStep, int kc, Span<float> c, int ldc, int row,
        int columns, Stage stage, in Epilogue epilogue, Span<float> spill) where TWidth : struct, ICount
    {
        int width = TWidth.Value;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector512<float> c6 = default, c7 = default, c8 = default, c9 = default, cA = default, cB = default;
        for (int p = kc; p > 0; p--)
        {
            Step(0, width, Vector512.LoadUnsafe(ref a), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
            a = ref Unsafe.Add(ref a, step);
            b = ref Unsafe.Add(ref b, bStep);
        }
        StoreColumns(width, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, cA, cB, c, ldc, row, columns, stage, epilogue, spill);
    }

    /// <summary>
    /// A row-major A, sixteen rows: sixteen depth steps at a time, its 16 x 16 block loaded and transposed in registers
    /// (64 shuffles, beside 16 multiply-adds per column); a last block shallower than sixteen steps is copied out first.
    /// </summary>
    [MethodImpl(Compiled.Kernel), SkipLocalsInit] // the last block is written whole before it is read
    private static void RowMajorColumns<TWidth>(ref float a, nint rowStride, ref float b, nint bStep, int kc, Span<float> c, int ldc, int row,
        int columns, Stage stage, in Epilogue epilogue, Span<float> spill)
        where TWidth : struct, ICount
    {
        const int Block = ColumnTile;
        int width = TWidth.Value;
        // The last steps, fewer than a block, are copied first, A's and B's, with zeros after them, so that they too take a
        // whole block without a test per step (tests per step left the accumulators in memory), and so that no call comes
        // while the accumulators are live (around one, they were stored and loaded again on every block). A padded step adds
        // 0·0 = +0, which leaves every sum as it was: a chain that starts from +0 never holds -0.
        int whole = kc / Block * Block;
        Span<float> lastBlock = stackalloc float[2 * Block * Block];
        if (whole < kc) CopyBlock(ref Unsafe.Add(ref a, whole), rowStride, ref Unsafe.Add(ref b, whole * bStep), bStep, kc - whole, width, lastBlock);
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector512<float> c6 = default, c7 = default, c8 = default, c9 = default, cA = default, cB = default;
        for (int p = 0; p < whole; p += Block)
            MultiplyBlock(ref Unsafe.Add(ref a, p), rowStride, ref Unsafe.Add(ref b, p * bStep), bStep, width,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        if (whole < kc)
            MultiplyBlock(ref MemoryMarshal.GetReference(lastBlock), Block, ref lastBlock[Block * Block], Block, width,
                ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        StoreColumns(width, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, cA, cB, c, ldc, row, columns, stage, epilogue, spill);
    }

    /// <summary>
    /// Sixteen rows x sixteen depth steps of A (rows <paramref name="rowStride"/> apart) into the column
    /// accumulators, step after step: the block is transposed so that each step's sixteen rows are one vector.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyBlock(ref float a, nint rowStride, ref float b, nint bStep, int width,
        ref Vector512<float> c0, ref Vector512<float> c1, ref Vector512<float> c2, ref Vector512<float> c3, ref Vector512<float> c4, ref Vector512<float> c5,
        ref Vector512<float> c6, ref Vector512<float> c7, ref Vector512<float> c8, ref Vector512<float> c9, ref Vector512<float> cA, ref Vector512<float> cB)
    {
        TransposeHalfway(ref a, rowStride, out var h);
        // Column s of the block, all sixteen rows (HalfTransposed says which lanes).
        Step(0, width, Avx512F.Shuffle4x128(h.V0, h.V8, Even), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(1, width, Avx512F.Shuffle4x128(h.V1, h.V9, Even), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(2, width, Avx512F.Shuffle4x128(h.V2, h.VA, Even), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(3, width, Avx512F.Shuffle4x128(h.V3, h.VB, Even), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(4, width, Avx512F.Shuffle4x128(h.V4, h.VC, Even), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(5, width, Avx512F.Shuffle4x128(h.V5, h.VD, Even), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(6, width, Avx512F.Shuffle4x128(h.V6, h.VE, Even), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(7, width, Avx512F.Shuffle4x128(h.V7, h.VF, Even), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(8, width, Avx512F.Shuffle4x128(h.V0, h.V8, Odd), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(9, width, Avx512F.Shuffle4x128(h.V1, h.V9, Odd), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(10, width, Avx512F.Shuffle4x128(h.V2, h.VA, Odd), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(11, width, Avx512F.Shuffle4x128(h.V3, h.VB, Odd), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(12, width, Avx512F.Shuffle4x128(h.V4, h.VC, Odd), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(13, width, Avx512F.Shuffle4x128(h.V5, h.VD, Odd), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(14, width, Avx512F.Shuffle4x128(h.V6, h.VE, Odd), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
        Step(15, width, Avx512F.Shuffle4x128(h.V7, h.VF, Odd), ref b, bStep, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7, ref c8, ref c9, ref cA, ref cB);
    }

    /// <summary>
    /// Depth step <paramref name="s"/> of a block: its column of A times B's row of that step, into
    /// the first <paramref name="width"/> accumulators. Spelled with the intrinsics rather than through ILanes: sixteen steps
    /// of twelve inlined calls each ran past the JIT's inlining budget and left the accumulators in memory.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(int s, int width, Vector512<float> column, ref float b, nint bStep,
        ref Vector512<float> c0, ref Vector512<float> c1, ref Vector512<float> c2, ref Vector512<float> c3, ref Vector512<float> c4, ref Vector512<float> c5,
        ref Vector512<float> c6, ref Vector512<float> c7, ref Vector512<float> c8, ref Vector512<float> c9, ref Vector512<float> cA, ref Vector512<float> cB)
    {
        ref float row = ref Unsafe.Add(ref b, s * bStep);
        c0 = Vector512.FusedMultiplyAdd(column, Vector512.Create(row), c0);
        if (width > 1) c1 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 1)), c1);
        if (width > 2) c2 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 2)), c2);
        if (width > 3) c3 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 3)), c3);
        if (width > 4) c4 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 4)), c4);
        if (width > 5) c5 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 5)), c5);
        if (width > 6) c6 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 6)), c6);
        if (width > 7) c7 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 7)), c7);
        if (width > 8) c8 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 8)), c8);
        if (width > 9) c9 = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 9)), c9);
        if (width > 10) cA = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 10)), cA);
        if (width > 11) cB = Vector512.FusedMultiplyAdd(column, Vector512.Create(Unsafe.Add(ref row, 11)), cB);
    }

    /// <summary>
    /// The last, shallow block of sixteen rows: its <paramref name="steps"/> steps of A and of B's <paramref name="width"/>
    /// columns copied into two 16 x 16 blocks, zeros after them (masked loads: a copy call per row and a clearing took a
    /// quarter of a 128x8x8 product).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void CopyBlock(ref float a, nint rowStride, ref float b, nint bStep, int steps, int width, Span<float> blocks)
    {
        ref float target = ref MemoryMarshal.GetReference(blocks[..(2 * ColumnTile * ColumnTile)]);
        for (int r = 0; r < ColumnTile; r++)
            Lanes512.LoadFirst(ref Unsafe.Add(ref a, r * rowStride), steps).StoreUnsafe(ref target, (nuint)(r * ColumnTile));
        ref float bTarget = ref Unsafe.Add(ref target, ColumnTile * ColumnTile);
        for (int p = 0; p < ColumnTile; p++)
        {
            var row = p < steps ? Lanes512.LoadFirst(ref Unsafe.Add(ref b, p * bStep), width) : Vector512<float>.Zero;
            row.StoreUnsafe(ref bTarget, (nuint)(p * ColumnTile));
        }
    }

    /// <summary>The column accumulators spilled, then finished and stored out of line.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreColumns(int width, Vector512<float> c0, Vector512<float> c1, Vector512<float> c2, Vector512<float> c3, Vector512<float> c4, Vector512<float> c5,
        Vector512<float> c6, Vector512<float> c7, Vector512<float> c8, Vector512<float> c9, Vector512<float> cA, Vector512<float> cB,
        Span<float> c, int ldc, int row, int columns, Stage stage, in Epilogue epilogue, Span<float> spill)
    {
        ref float s = ref MemoryMarshal.GetReference(spill);
        c0.StoreUnsafe(ref s);
        if (width > 1) c1.StoreUnsafe(ref s, 1 * ColumnTile);
        if (width > 2) c2.StoreUnsafe(ref s, 2 * ColumnTile);
        if (width > 3) c3.StoreUnsafe(ref s, 3 * ColumnTile);
        if (width > 4) c4.StoreUnsafe(ref s, 4 * ColumnTile);
        if (width > 5) c5.StoreUnsafe(ref s, 5 * ColumnTile);
        if (width > 6) c6.StoreUnsafe(ref s, 6 * ColumnTile);
        if (width > 7) c7.StoreUnsafe(ref s, 7 * ColumnTile);
        if (width > 8) c8.StoreUnsafe(ref s, 8 * ColumnTile);
        if (width > 9) c9.StoreUnsafe(ref s, 9 * ColumnTile);
        if (width > 10) cA.StoreUnsafe(ref s, 10 * ColumnTile);
        if (width > 11) cB.StoreUnsafe(ref s, 11 * ColumnTile);
        FinishColumns(spill, c, ldc, row, columns, stage, epilogue);
    }

    /// <summary>
    /// The spilled columns transposed back into sixteen rows (the lanes past the product's width hold whatever the scratch
    /// held, and are not stored), each finished and stored as the narrow kernel finishes an edge tile's row.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void FinishColumns(Span<float> spill, Span<float> c, int ldc, int row, int columns, Stage stage, in Epilogue epilogue)
    {
        ref float s = ref MemoryMarshal.GetReference(spill[..(ColumnTile * ColumnTile)]);
        TransposeBlock(ref s, ColumnTile, ref s, ColumnTile);
        ref float target = ref Unsafe.Add(ref MemoryMarshal.GetReference(c), row * ldc);
        for (int r = 0; r < ColumnTile; r++)
            FinishStoreFirst<Lanes512, Vector512<float>>(Vector512.LoadUnsafe(ref s, (nuint)(r * ColumnTile)), ref Unsafe.Add(ref target, r * ldc), 0, columns, stage, epilogue);
    }
}
