using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>
/// Element-wise operations on one short row, inlined into the loop over rows that calls them: for kernels that take a
/// tensor a row of channels or features at a time, where a TensorPrimitives call per row costs more than its arithmetic.
/// Each element is computed as the span call computes it (the same bits).
/// </summary>
internal static class ShortRows
{
    /// <summary>sum += row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void AddTo(Span<float> sum, ReadOnlySpan<float> row)
    {
        ref float s = ref MemoryMarshal.GetReference(sum);
        ref float r = ref MemoryMarshal.GetReference(row);
        int i = 0;
        for (; i <= sum.Length - Vector<float>.Count; i += Vector<float>.Count)
            Vector.StoreUnsafe(Vector.LoadUnsafe(ref s, (nuint)i) + Vector.LoadUnsafe(ref r, (nuint)i), ref s, (nuint)i);
        for (; i < sum.Length; i++) Unsafe.Add(ref s, i) += Unsafe.Add(ref r, i);
    }

    /// <summary>y = x·scale + shift, fused.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(ReadOnlySpan<float> x, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift, Span<float> y)
    {
        ref float xs = ref MemoryMarshal.GetReference(x);
        ref float a = ref MemoryMarshal.GetReference(scale);
        ref float b = ref MemoryMarshal.GetReference(shift);
        ref float ys = ref MemoryMarshal.GetReference(y);
        int i = 0;
        for (; i <= y.Length - Vector<float>.Count; i += Vector<float>.Count)
            Vector.StoreUnsafe(Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref xs, (nuint)i), Vector.LoadUnsafe(ref a, (nuint)i), Vector.LoadUnsafe(ref b, (nuint)i)), ref ys, (nuint)i);
        for (; i < y.Length; i++) Unsafe.Add(ref ys, i) = MathF.FusedMultiplyAdd(Unsafe.Add(ref xs, i), Unsafe.Add(ref a, i), Unsafe.Add(ref b, i));
    }

    /// <summary>y = x·scale, or with accumulate y + x·scale, the product rounded before it is added (Merges.Pass's arithmetic).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Scaled(ReadOnlySpan<float> x, float scale, Span<float> y, bool accumulate)
    {
        ref float xs = ref MemoryMarshal.GetReference(x);
        ref float ys = ref MemoryMarshal.GetReference(y);
        var factor = new Vector<float>(scale);
        int i = 0;
        for (; i <= y.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            var product = Vector.LoadUnsafe(ref xs, (nuint)i) * factor;
            Vector.StoreUnsafe(accumulate ? Vector.LoadUnsafe(ref ys, (nuint)i) + product : product, ref ys, (nuint)i);
        }
        for (; i < y.Length; i++) Unsafe.Add(ref ys, i) = accumulate ? Unsafe.Add(ref ys, i) + Unsafe.Add(ref xs, i) * scale : Unsafe.Add(ref xs, i) * scale;
    }

    /// <summary>
    /// y = (positive &gt; 0 ? x·scale : 0), or y + that with accumulate: <see cref="Scaled"/> and then a ReLU's backward whose
    /// output is <paramref name="positive"/> (Activations.Backward's select: +0 wherever that output is not positive).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaledWherePositive(ReadOnlySpan<float> x, float scale, ReadOnlySpan<float> positive, Span<float> y, bool accumulate)
    {
        ref float xs = ref MemoryMarshal.GetReference(x);
        ref float ps = ref MemoryMarshal.GetReference(positive);
        ref float ys = ref MemoryMarshal.GetReference(y);
        var factor = new Vector<float>(scale);
        int i = 0;
        for (; i <= y.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            var kept = Vector.ConditionalSelect(Vector.GreaterThan(Vector.LoadUnsafe(ref ps, (nuint)i), Vector<float>.Zero), Vector.LoadUnsafe(ref xs, (nuint)i) * factor, Vector<float>.Zero);
            Vector.StoreUnsafe(accumulate ? Vector.LoadUnsafe(ref ys, (nuint)i) + kept : kept, ref ys, (nuint)i);
        }
        for (; i < y.Length; i++)
        {
            float kept = Unsafe.Add(ref ps, i) > 0f ? Unsafe.Add(ref xs, i) * scale : 0f;
            Unsafe.Add(ref ys, i) = accumulate ? Unsafe.Add(ref ys, i) + kept : kept;
        }
    }
}
