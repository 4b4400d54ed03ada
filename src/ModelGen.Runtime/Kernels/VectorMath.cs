using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>
/// e^x, ln x, tanh and the logistic sigmoid, a vector at a time and accurate in relative terms over the whole float range.
/// TensorPrimitives.Tanh (System.Numerics.Tensors 11) loses its relative precision near zero, where it cancels
/// e^2x - 1: 5e-4 relative at |x| ~ 1e-3 and 5% at 1e-5 (measured against double), which a Keras tanh layer or an LSTM
/// cell does not; these stay within a few ulp everywhere.
/// </summary>
internal static class VectorMath
{
    /// <summary>tanh over a span, in place or not.</summary>
    public static void Tanh(ReadOnlySpan<float> x, Span<float> y) => Apply<TanhFunction>(x, y);

    /// <summary>1 / (1 + e^-x) over a span, in place or not.</summary>
    public static void Sigmoid(ReadOnlySpan<float> x, Span<float> y) => Apply<SigmoidFunction>(x, y);

    private interface IFunction
    {
        static abstract TVector Of<TLanes, TVector>(TVector x) where TLanes : struct, ILanes<TVector> where TVector : struct;
    }

    private readonly struct TanhFunction : IFunction
    {
        public static TVector Of<TLanes, TVector>(TVector x) where TLanes : struct, ILanes<TVector> where TVector : struct => Tanh<TLanes, TVector>(x);
    }

    private readonly struct SigmoidFunction : IFunction
    {
        public static TVector Of<TLanes, TVector>(TVector x) where TLanes : struct, ILanes<TVector> where TVector : struct => Sigmoid<TLanes, TVector>(x);
    }

    [MethodImpl(Compiled.Driver)]
    private static void Apply<TFunction>(ReadOnlySpan<float> x, Span<float> y) where TFunction : struct, IFunction
    {
        if (y.Length < x.Length) throw new ArgumentException($"Destination of {y.Length} floats is shorter than the source's {x.Length}.", nameof(y));
        switch (Simd.Current)
        {
            case SimdPath.Avx512: Apply<TFunction, Lanes512, Vector512<float>>(x, y); break;
            case SimdPath.Avx2: Apply<TFunction, Lanes256, Vector256<float>>(x, y); break;
            default: Apply<TFunction, Lanes128, Vector128<float>>(x, y); break;
        }
    }

    [MethodImpl(Compiled.Kernel)]
    private static void Apply<TFunction, TLanes, TVector>(ReadOnlySpan<float> x, Span<float> y)
        where TFunction : struct, IFunction where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref float from = ref MemoryMarshal.GetReference(x);
        ref float to = ref MemoryMarshal.GetReference(y);
        int width = TLanes.Count, whole = x.Length - x.Length % width;
        for (int i = 0; i < whole; i += width)
            TLanes.Store(ref Unsafe.Add(ref to, i), TFunction.Of<TLanes, TVector>(TLanes.Load(ref Unsafe.Add(ref from, i))));
        int rest = x.Length - whole;
        if (rest > 0) TLanes.StoreFirst(ref Unsafe.Add(ref to, whole), TFunction.Of<TLanes, TVector>(TLanes.LoadFirst(ref Unsafe.Add(ref from, whole), rest)), rest);
    }

    /// <summary>
    /// tanh in every lane. Below |x| = 0.625 Cephes' tanhf odd polynomial, x + x·z·P(z) with z = x², which keeps the relative
    /// precision of small x (and x itself below 2^-12); above it (1 - e)/(1 + e) with e = e^-2|x| ≤ 0.29, so nothing cancels, and the sign of x. ±∞ give
    /// ±1, NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TVector Tanh<TLanes, TVector>(TVector x)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var z = TLanes.Multiply(x, x);
        var p = TLanes.Broadcast(-5.70498872745e-3f);
        p = TLanes.MultiplyAdd(p, z, TLanes.Broadcast(2.06390887954e-2f));
        p = TLanes.MultiplyAdd(p, z, TLanes.Broadcast(-5.37397155531e-2f));
        p = TLanes.MultiplyAdd(p, z, TLanes.Broadcast(1.33314422036e-1f));
        p = TLanes.MultiplyAdd(p, z, TLanes.Broadcast(-3.33332819422e-1f));
        var near = TLanes.MultiplyAdd(TLanes.Multiply(p, z), x, x);
        var a = TLanes.Abs(x);
        var one = TLanes.Broadcast(1f);
        var e = Exp<TLanes, TVector>(TLanes.Multiply(a, TLanes.Broadcast(-2f)));
        var far = TLanes.Divide(TLanes.Subtract(one, e), TLanes.Add(one, e));
        far = TLanes.Select(TLanes.Below(x, 0f), TLanes.Subtract(TLanes.Zero, far), far);
        // Below 2^-12 tanh x rounds to x itself (x³/3 is under half an ulp), which also keeps the sign of -0.
        near = TLanes.Select(TLanes.Below(a, 2.44140625e-4f), x, near);
        return TLanes.Select(TLanes.Below(a, 0.625f), near, far);
    }

    /// <summary>
    /// 1 / (1 + e^-x) in every lane, through e = e^-|x| so the exponential never overflows: 1 / (1 + e) for x ≥ 0 and
    /// e / (1 + e) below, each within a few ulp, in one division (the numerator chosen first). -∞ gives 0, +∞ 1, NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TVector Sigmoid<TLanes, TVector>(TVector x)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var one = TLanes.Broadcast(1f);
        var e = Exp<TLanes, TVector>(TLanes.Subtract(TLanes.Zero, TLanes.Abs(x)));
        var denominator = TLanes.Add(one, e);
        return TLanes.Divide(TLanes.Select(TLanes.Below(x, 0f), e, one), denominator);
    }

    /// <summary>
    /// e^x in every lane, for x ≤ 0 (softmax's shifted logits; the e^-|x| of tanh and sigmoid): x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by Cephes' expf
    /// polynomial, times 2^n. Within 1 ulp of the correctly rounded value down to e^-87.3 (the smallest normal float);
    /// below that 0, where MathF.Exp would give a subnormal. NaN stays NaN, -∞ gives 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TVector Exp<TLanes, TVector>(TVector x)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var n = TLanes.Round(TLanes.Multiply(x, TLanes.Broadcast(1.44269504088896341f)));
        // ln 2 in two parts: n · 0.693359375 is exact for the n that occur, so r keeps x's precision.
        var r = TLanes.MultiplyAdd(n, TLanes.Broadcast(-0.693359375f), x);
        r = TLanes.MultiplyAdd(n, TLanes.Broadcast(2.12194440e-4f), r);
        var p = TLanes.Broadcast(1.9875691500e-4f);
        p = TLanes.MultiplyAdd(p, r, TLanes.Broadcast(1.3981999507e-3f));
        p = TLanes.MultiplyAdd(p, r, TLanes.Broadcast(8.3334519073e-3f));
        p = TLanes.MultiplyAdd(p, r, TLanes.Broadcast(4.1665795894e-2f));
        p = TLanes.MultiplyAdd(p, r, TLanes.Broadcast(1.6666665459e-1f));
        p = TLanes.MultiplyAdd(p, r, TLanes.Broadcast(5.0000001201e-1f));
        var e = TLanes.Add(TLanes.MultiplyAdd(p, TLanes.Multiply(r, r), r), TLanes.Broadcast(1f));
        // Lanes below the limit (-∞ among them) get a meaningless scale and are zeroed; a NaN lane keeps its NaN through e.
        return TLanes.ZeroWhere(TLanes.Below(x, -87.33654475f), TLanes.ScaleByPowerOfTwo(e, n));
    }

    /// <summary>
    /// ln x in every lane, for positive normal x (a clipped probability): x = m·2^e with m in [√½, √2), ln(1 + f) for
    /// f = m - 1 by Cephes' logf polynomial, plus e·ln 2 in two parts. Within 1 ulp of the correctly rounded value; NaN
    /// stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static TVector Log<TLanes, TVector>(TVector x)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var m = TLanes.Significand(x);
        var e = TLanes.Exponent(x);
        // Halving m (exact) above √2 keeps f within ±0.29, where the polynomial holds.
        var above = TLanes.Greater(m, TLanes.Broadcast(1.41421356f));
        m = TLanes.Select(above, TLanes.Multiply(m, TLanes.Broadcast(0.5f)), m);
        e = TLanes.Select(above, TLanes.Add(e, TLanes.Broadcast(1f)), e);
        var f = TLanes.Subtract(m, TLanes.Broadcast(1f));
        var z = TLanes.Multiply(f, f);
        var p = TLanes.Broadcast(7.0376836292e-2f);
        p = TLanes.MultiplyAdd(p, f, TLanes.Broadcast(-1.1514610310e-1f));
        p = TLanes.MultiplyAdd(p, f, TLanes.Broadcast(1.1676998740e-1f));
        p = TLanes.MultiplyAdd(p, f, TLanes.Broadcast(-1.2420140846e-1f));
        p = TLanes.MultiplyAdd(p, f, TLanes.Broadcast(1.4249322787e-1f));
        p = TLanes.MultiplyAdd(p, f, TLanes.Broadcast(-1.6668057665e-1f));
        p = TLanes.MultiplyAdd(p, f, TLanes.Broadcast(2.0000714765e-1f));
        p = TLanes.MultiplyAdd(p, f, TLanes.Broadcast(-2.4999993993e-1f));
        p = TLanes.MultiplyAdd(p, f, TLanes.Broadcast(3.3333331174e-1f));
        var y = TLanes.Multiply(TLanes.Multiply(p, f), z);
        // ln 2 in two parts, as in Exp: e · 0.693359375 is exact.
        y = TLanes.MultiplyAdd(e, TLanes.Broadcast(-2.12194440e-4f), y);
        y = TLanes.MultiplyAdd(z, TLanes.Broadcast(-0.5f), y);
        var ln = TLanes.MultiplyAdd(e, TLanes.Broadcast(0.693359375f), TLanes.Add(f, y));
        // A NaN's bits split into a finite m and e; x · 0 (0 for every finite x) carries the NaN through.
        return TLanes.Add(ln, TLanes.Multiply(x, TLanes.Zero));
    }
}
