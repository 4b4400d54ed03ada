using System.Runtime.Intrinsics;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>The vector e^x, ln x, tanh and sigmoid on every SIMD path (emulated where this machine lacks it), against double precision, in ulp of the exact value.</summary>
[Collection(KernelSettings.Name)]
public class VectorMathTests
{
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Exp_is_within_one_ulp_of_the_exact_value(SimdPath path)
    {
        var x = new List<float> { 0f, -0f, -1e-30f, -1e-7f, -0.5f * MathF.Log(2), -87.3365f };
        for (float v = -87.33f; v < 0; v += 0.00031f) x.Add(v);
        var e = VectorExp(path, x.ToArray());
        for (int i = 0; i < x.Count; i++)
        {
            double exact = Math.Exp(x[i]);
            double ulp = MathF.BitIncrement((float)exact) - (float)exact;
            Assert.True(Math.Abs(e[i] - exact) <= ulp, $"exp({x[i]:R}) = {e[i]:R}, exact {exact:R}");
        }
        Assert.Equal(1f, e[0]);
        // Below the smallest normal result it flushes to zero; -inf gives 0 and NaN stays NaN, as MathF.Exp.
        var special = VectorExp(path, new[] { -87.4f, -100f, -1e30f, float.NegativeInfinity, float.NaN });
        Assert.Equal(new[] { 0f, 0f, 0f, 0f }, special.Take(4));
        Assert.True(float.IsNaN(special[4]));
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Log_is_within_one_ulp_of_the_exact_value(SimdPath path)
    {
        // Every normal float's decade, densely the clipped probabilities a loss takes (1e-7 to 1 - 1e-7) and their
        // complements, the significand's split at √2 on both sides, and the floats next to 1, where ln x is tiny.
        var x = new List<float> { 1f, 2f, 0.5f, 1.41421356f, MathF.BitIncrement(1.41421356f), MathF.BitDecrement(1.41421356f), 1e-7f, 1 - 1e-7f,
            float.MaxValue, 1.17549435e-38f };
        for (double v = 1.2e-38; v < 3e38; v *= 1.01) x.Add((float)v);
        for (double v = 1e-7; v < 1; v *= 1.0003) { x.Add((float)v); x.Add(1 - (float)v); }
        for (int k = 1; k < 300; k++) { x.Add(1 + k * 1.1920929e-7f); x.Add(1 - k * 5.9604645e-8f); }
        var ln = Lanewise(path, x.ToArray(), VectorMath.Log<Lanes512, Vector512<float>>, VectorMath.Log<Lanes256, Vector256<float>>, VectorMath.Log<Lanes128, Vector128<float>>);
        for (int i = 0; i < x.Count; i++) AssertWithinUlp(Math.Log(x[i]), ln[i], 1, $"ln({x[i]:R})");
        Assert.Equal(0f, ln[0]);
        var nan = Lanewise(path, new[] { float.NaN }, VectorMath.Log<Lanes512, Vector512<float>>, VectorMath.Log<Lanes256, Vector256<float>>, VectorMath.Log<Lanes128, Vector128<float>>);
        Assert.True(float.IsNaN(nan[0]));
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Tanh_keeps_its_relative_precision_near_zero_and_everywhere_else(SimdPath path)
    {
        // TensorPrimitives.Tanh was 55 ulp off at |x| ~ 0.05 and 460,000 ulp off at 1e-6 (5% of the value).
        var x = Magnitudes().SelectMany(v => new[] { v, -v }).ToArray();
        var y = Run(path, x, VectorMath.Tanh);
        for (int i = 0; i < x.Length; i++) AssertWithinUlp(Math.Tanh(x[i]), y[i], 3, $"tanh({x[i]:R})");
        var special = Run(path, new[] { 0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1e-30f, -1e-30f }, VectorMath.Tanh);
        Assert.Equal(new[] { 0f, -0f, 1f, -1f }, special.Take(4));
        Assert.True(float.IsNegative(special[1]), "tanh(-0) keeps the sign");
        Assert.True(float.IsNaN(special[4]));
        Assert.Equal(new[] { 1e-30f, -1e-30f }, special.Skip(5));
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Sigmoid_is_within_a_few_ulp_on_both_sides_of_zero(SimdPath path)
    {
        var x = Magnitudes().Where(v => v < 87f).SelectMany(v => new[] { v, -v }).ToArray();
        var y = Run(path, x, VectorMath.Sigmoid);
        for (int i = 0; i < x.Length; i++) AssertWithinUlp(1 / (1 + Math.Exp(-(double)x[i])), y[i], 3, $"sigmoid({x[i]:R})");
        var special = Run(path, new[] { 0f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 100f, -100f }, VectorMath.Sigmoid);
        Assert.Equal(new[] { 0.5f, 1f, 0f }, special.Take(3));
        Assert.True(float.IsNaN(special[3]));
        Assert.Equal(1f, special[4]);
        Assert.Equal(0f, special[5]); // e^-100 is below the smallest normal float: flushed, as Exp flushes it
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Spans_of_any_length_are_mapped_in_place_and_nothing_past_them_is_written(SimdPath path)
    {
        using var simd = KernelSettings.OnSimd(path);
        foreach (int length in new[] { 1, 3, 4, 15, 16, 17, 33 })
        {
            var values = Enumerable.Range(0, length + 1).Select(i => (i - length / 2) * 0.37f).ToArray();
            var expected = values.Take(length).Select(v => (float)Math.Tanh(v)).ToArray();
            VectorMath.Tanh(values.AsSpan(0, length), values.AsSpan(0, length));
            for (int i = 0; i < length; i++) AssertWithinUlp(expected[i], values[i], 3, $"tanh at {i} of {length}");
            Assert.Equal((length - length / 2) * 0.37f, values[length]);
        }
    }

    /// <summary>Magnitudes from 1e-7 to 20, log-spaced, with the polynomial's edge at 0.625 on both sides.</summary>
    private static IEnumerable<float> Magnitudes()
    {
        for (double v = 1e-7; v < 20; v *= 1.0007) yield return (float)v;
        yield return 0.625f;
        yield return MathF.BitDecrement(0.625f);
        yield return 88f;
    }

    private static float[] Run(SimdPath path, float[] x, SpanFunction function)
    {
        using var simd = KernelSettings.OnSimd(path);
        var y = new float[x.Length];
        function(x, y);
        return y;
    }

    private delegate void SpanFunction(ReadOnlySpan<float> x, Span<float> y);

    private static void AssertWithinUlp(double exact, float actual, int ulps, string what)
    {
        double ulp = MathF.BitIncrement(MathF.Abs((float)exact)) - MathF.Abs((float)exact);
        Assert.True(Math.Abs(actual - exact) <= ulps * ulp, $"{what} = {actual:R}, exact {exact:R} ({Math.Abs(actual - exact) / ulp:0.0} ulp)");
    }

    private static float[] VectorExp(SimdPath path, float[] x) =>
        Lanewise(path, x, VectorMath.Exp<Lanes512, Vector512<float>>, VectorMath.Exp<Lanes256, Vector256<float>>, VectorMath.Exp<Lanes128, Vector128<float>>);

    /// <summary>A vector function of each value, the value broadcast and read back from a lane that moves along the vector.</summary>
    private static float[] Lanewise(SimdPath path, float[] x, Func<Vector512<float>, Vector512<float>> on512,
        Func<Vector256<float>, Vector256<float>> on256, Func<Vector128<float>, Vector128<float>> on128)
    {
        var result = new float[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            result[i] = path switch
            {
                SimdPath.Avx512 => on512(Vector512.Create(x[i])).GetElement(i % 16),
                SimdPath.Avx2 => on256(Vector256.Create(x[i])).GetElement(i % 8),
                _ => on128(Vector128.Create(x[i])).GetElement(i % 4),
            };
        }
        return result;
    }
}
