using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelGen.Kernels;

/// <summary>
/// Softmax of rows shorter than a vector, sixteen rows at a time on AVX-512: the block is transposed in registers so that
/// each vector holds one column of sixteen rows, the maximum, e^x, the sum and its reciprocal run down the columns with
/// every lane a row, and the block is transposed back. A row a vector (Activations.Softmax.cs) leaves the lanes past the
/// row idle in every e^x (6 of 16 for a classifier's 10 outputs) and spends as long again on the maximum's and the sum's
/// shuffles across the lanes. The columns are added in adjacent pairs, then pairs of those, as Vector512.Sum adds a row's
/// lanes (the lanes past the row are zeros either way), so a row's probabilities have the same bits on either path. The
/// scaling MLP of width 8 at batch 128 (its softmax over 128 rows of 10 in place), old and new builds in turns: 3.93-4.28
/// -> 3.18-3.31 us; width 16 4.25-4.46 -> 3.47-4.02.
/// </summary>
public static partial class Activations
{
    /// <summary>Rows a block, one a lane.</summary>
    private const int BlockRows = 16;

    /// <summary>
    /// The fewest rows taken as a block: a block costs the same however few rows it has, about as much as six rows one at a
    /// time (128 rows of 10 in a standalone copy of both: 0.73 us in blocks, 1.92 a row at a time).
    /// </summary>
    private const int FewestBlockRows = 8;

    /// <summary>Whether rows of <paramref name="columns"/> go in blocks (AVX-512 only, rows shorter than a vector).</summary>
    private static bool TakesBlocks<TLanes, TVector>(int columns) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        TLanes.Count == BlockRows && columns < BlockRows && Avx512F.IsSupported;

    /// <summary>Softmax of the rows in blocks while at least <see cref="FewestBlockRows"/> are left; returns the first row not done.</summary>
    [MethodImpl(Compiled.Driver)]
    private static int SoftmaxInBlocks(ReadOnlySpan<float> source, Span<float> destination, int rows, int columns) => columns switch
    {
        <= 2 => SoftmaxBlocks<Two>(source, destination, rows, columns),
        <= 4 => SoftmaxBlocks<Four>(source, destination, rows, columns),
        <= 6 => SoftmaxBlocks<Six>(source, destination, rows, columns),
        <= 8 => SoftmaxBlocks<Eight>(source, destination, rows, columns),
        <= 10 => SoftmaxBlocks<Ten>(source, destination, rows, columns),
        <= 12 => SoftmaxBlocks<Twelve>(source, destination, rows, columns),
        _ => SoftmaxBlocks<Sixteen>(source, destination, rows, columns),
    };

    /// <summary>
    /// The blocks, e^x taken for the first <typeparamref name="TColumns"/> columns (at least <paramref name="columns"/>):
    /// the rest are zeros, as the lanes past a row are. Each block's rows are all read before any is written, so the
    /// softmax may run in place.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe int SoftmaxBlocks<TColumns>(ReadOnlySpan<float> source, Span<float> destination, int rows, int columns) where TColumns : struct, ICount
    {
        var mask = Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(columns)).AsSingle();
        // Lanes past a row read as -∞, so the maximum down a column past the row's end ignores them.
        var beyond = Vector512.Create(float.NegativeInfinity);
        int first = 0;
        fixed (float* from = source, to = destination)
        {
            for (int count; rows - first >= FewestBlockRows; first += count)
            {
                count = Math.Min(BlockRows, rows - first);
                float* x = from + first * columns;
                // A block has at least FewestBlockRows rows; past the end of the batch its rows are zeros, computed and never stored.
                var v0 = Avx512F.MaskLoad(x, mask, beyond);
                var v1 = Avx512F.MaskLoad(x + columns, mask, beyond);
                var v2 = Avx512F.MaskLoad(x + 2 * columns, mask, beyond);
                var v3 = Avx512F.MaskLoad(x + 3 * columns, mask, beyond);
                var v4 = Avx512F.MaskLoad(x + 4 * columns, mask, beyond);
                var v5 = Avx512F.MaskLoad(x + 5 * columns, mask, beyond);
                var v6 = Avx512F.MaskLoad(x + 6 * columns, mask, beyond);
                var v7 = Avx512F.MaskLoad(x + 7 * columns, mask, beyond);
                var v8 = BlockRow(x, 8, count, columns, mask, beyond);
                var v9 = BlockRow(x, 9, count, columns, mask, beyond);
                var v10 = BlockRow(x, 10, count, columns, mask, beyond);
                var v11 = BlockRow(x, 11, count, columns, mask, beyond);
                var v12 = BlockRow(x, 12, count, columns, mask, beyond);
                var v13 = BlockRow(x, 13, count, columns, mask, beyond);
                var v14 = BlockRow(x, 14, count, columns, mask, beyond);
                var v15 = BlockRow(x, 15, count, columns, mask, beyond);
                // The same transposition twice, rows to columns and back: one copy of it, in a loop the JIT keeps in registers.
                for (int pass = 0; ; pass++)
                {
                    // Pairs of rows interleaved, then pairs of pairs: each 128-bit lane of v(4g + k) holds column 4q + k of rows
                    // 4g..4g+3, where q is the lane; then the lanes are gathered across the vectors.
                    var t0 = Avx512F.UnpackLow(v0, v1); var t1 = Avx512F.UnpackHigh(v0, v1);
                    var t2 = Avx512F.UnpackLow(v2, v3); var t3 = Avx512F.UnpackHigh(v2, v3);
                    var t4 = Avx512F.UnpackLow(v4, v5); var t5 = Avx512F.UnpackHigh(v4, v5);
                    var t6 = Avx512F.UnpackLow(v6, v7); var t7 = Avx512F.UnpackHigh(v6, v7);
                    var t8 = Avx512F.UnpackLow(v8, v9); var t9 = Avx512F.UnpackHigh(v8, v9);
                    var t10 = Avx512F.UnpackLow(v10, v11); var t11 = Avx512F.UnpackHigh(v10, v11);
                    var t12 = Avx512F.UnpackLow(v12, v13); var t13 = Avx512F.UnpackHigh(v12, v13);
                    var t14 = Avx512F.UnpackLow(v14, v15); var t15 = Avx512F.UnpackHigh(v14, v15);
                    v0 = Avx512F.Shuffle(t0, t2, 0x44); v1 = Avx512F.Shuffle(t0, t2, 0xEE); v2 = Avx512F.Shuffle(t1, t3, 0x44); v3 = Avx512F.Shuffle(t1, t3, 0xEE);
                    v4 = Avx512F.Shuffle(t4, t6, 0x44); v5 = Avx512F.Shuffle(t4, t6, 0xEE); v6 = Avx512F.Shuffle(t5, t7, 0x44); v7 = Avx512F.Shuffle(t5, t7, 0xEE);
                    v8 = Avx512F.Shuffle(t8, t10, 0x44); v9 = Avx512F.Shuffle(t8, t10, 0xEE); v10 = Avx512F.Shuffle(t9, t11, 0x44); v11 = Avx512F.Shuffle(t9, t11, 0xEE);
                    v12 = Avx512F.Shuffle(t12, t14, 0x44); v13 = Avx512F.Shuffle(t12, t14, 0xEE); v14 = Avx512F.Shuffle(t13, t15, 0x44); v15 = Avx512F.Shuffle(t13, t15, 0xEE);
                    (v0, v4, v8, v12) = GatherLanes(v0, v4, v8, v12);
                    (v1, v5, v9, v13) = GatherLanes(v1, v5, v9, v13);
                    (v2, v6, v10, v14) = GatherLanes(v2, v6, v10, v14);
                    (v3, v7, v11, v15) = GatherLanes(v3, v7, v11, v15);
                    if (pass == 1) break;
                    // v(j) is now column j of the block's rows.
                    var largest = Vector512.MaxNative(Vector512.MaxNative(Vector512.MaxNative(Vector512.MaxNative(v0, v1), Vector512.MaxNative(v2, v3)),
                        Vector512.MaxNative(Vector512.MaxNative(v4, v5), Vector512.MaxNative(v6, v7))), Vector512.MaxNative(Vector512.MaxNative(Vector512.MaxNative(v8, v9),
                        Vector512.MaxNative(v10, v11)), Vector512.MaxNative(Vector512.MaxNative(v12, v13), Vector512.MaxNative(v14, v15))));
                    v0 = ColumnExp<TColumns>(v0, 0, largest); v1 = ColumnExp<TColumns>(v1, 1, largest); v2 = ColumnExp<TColumns>(v2, 2, largest); v3 = ColumnExp<TColumns>(v3, 3, largest);
                    v4 = ColumnExp<TColumns>(v4, 4, largest); v5 = ColumnExp<TColumns>(v5, 5, largest); v6 = ColumnExp<TColumns>(v6, 6, largest); v7 = ColumnExp<TColumns>(v7, 7, largest);
                    v8 = ColumnExp<TColumns>(v8, 8, largest); v9 = ColumnExp<TColumns>(v9, 9, largest); v10 = ColumnExp<TColumns>(v10, 10, largest); v11 = ColumnExp<TColumns>(v11, 11, largest);
                    v12 = ColumnExp<TColumns>(v12, 12, largest); v13 = ColumnExp<TColumns>(v13, 13, largest); v14 = ColumnExp<TColumns>(v14, 14, largest); v15 = ColumnExp<TColumns>(v15, 15, largest);
                    var sum = (((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7))) + (((v8 + v9) + (v10 + v11)) + ((v12 + v13) + (v14 + v15)));
                    // Times the reciprocal, as the row at a time does (Activations.Softmax.cs says why).
                    var reciprocal = Vector512.Create(1f) / sum;
                    v0 *= reciprocal; v1 *= reciprocal; v2 *= reciprocal; v3 *= reciprocal; v4 *= reciprocal; v5 *= reciprocal; v6 *= reciprocal; v7 *= reciprocal;
                    v8 *= reciprocal; v9 *= reciprocal; v10 *= reciprocal; v11 *= reciprocal; v12 *= reciprocal; v13 *= reciprocal; v14 *= reciprocal; v15 *= reciprocal;
                }
                // Each row stored whole, over the next rows' first values, which their own stores then write; a store that
                // would reach past the block's last row is masked.
                float* y = to + first * columns;
                int inside = count * columns - BlockRows;
                StoreBlockRow(y, 0, count, columns, inside, mask, v0); StoreBlockRow(y, 1, count, columns, inside, mask, v1);
                StoreBlockRow(y, 2, count, columns, inside, mask, v2); StoreBlockRow(y, 3, count, columns, inside, mask, v3);
                StoreBlockRow(y, 4, count, columns, inside, mask, v4); StoreBlockRow(y, 5, count, columns, inside, mask, v5);
                StoreBlockRow(y, 6, count, columns, inside, mask, v6); StoreBlockRow(y, 7, count, columns, inside, mask, v7);
                StoreBlockRow(y, 8, count, columns, inside, mask, v8); StoreBlockRow(y, 9, count, columns, inside, mask, v9);
                StoreBlockRow(y, 10, count, columns, inside, mask, v10); StoreBlockRow(y, 11, count, columns, inside, mask, v11);
                StoreBlockRow(y, 12, count, columns, inside, mask, v12); StoreBlockRow(y, 13, count, columns, inside, mask, v13);
                StoreBlockRow(y, 14, count, columns, inside, mask, v14); StoreBlockRow(y, 15, count, columns, inside, mask, v15);
            }
        }
        return first;
    }

    /// <summary>Row <paramref name="row"/> of a block, or zeros past the batch's last row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> BlockRow(float* x, int row, int count, int columns, Vector512<float> mask, Vector512<float> beyond) =>
        row < count ? Avx512F.MaskLoad(x + row * columns, mask, beyond) : Vector512<float>.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreBlockRow(float* y, int row, int count, int columns, int inside, Vector512<float> mask, Vector512<float> value)
    {
        if (row >= count) return;
        if (row * columns <= inside) Vector512.Store(value, y + row * columns);
        else Avx512F.MaskStore(y + row * columns, mask, value);
    }

    /// <summary>
    /// The third step of the transposition: four vectors of 128-bit lanes, each holding four columns of four rows, regrouped
    /// so that each holds one column of sixteen rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float>, Vector512<float>, Vector512<float>, Vector512<float>) GatherLanes(Vector512<float> a, Vector512<float> b, Vector512<float> c, Vector512<float> d)
    {
        var ab0 = Avx512F.Shuffle4x128(a, b, 0x88); var ab1 = Avx512F.Shuffle4x128(a, b, 0xDD);
        var cd0 = Avx512F.Shuffle4x128(c, d, 0x88); var cd1 = Avx512F.Shuffle4x128(c, d, 0xDD);
        return (Avx512F.Shuffle4x128(ab0, cd0, 0x88), Avx512F.Shuffle4x128(ab1, cd1, 0x88), Avx512F.Shuffle4x128(ab0, cd0, 0xDD), Avx512F.Shuffle4x128(ab1, cd1, 0xDD));
    }

    /// <summary>e^(x - largest) down column <paramref name="column"/>, or zeros past the columns computed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ColumnExp<TColumns>(Vector512<float> x, int column, Vector512<float> largest) where TColumns : struct, ICount =>
        column < TColumns.Value ? VectorMath.Exp<Lanes512, Vector512<float>>(x - largest) : Vector512<float>.Zero;
}
