using System;

namespace ModelGen.Kernels;

/// <summary>
/// A small, fast, reproducible generator (xoshiro128**, seeded through SplitMix64). Weight
/// initialisation, dropout masks and shuffling all draw from it, so a seed reproduces a run exactly
/// on every machine, unlike <see cref="Random"/> whose algorithm may change between .NET versions.
/// </summary>
public struct SeededRandom
{
    private uint s0, s1, s2, s3;

    public SeededRandom(long seed)
    {
        ulong x = (ulong)seed;
        ulong a = SplitMix(ref x), b = SplitMix(ref x);
        s0 = (uint)a; s1 = (uint)(a >> 32); s2 = (uint)b; s3 = (uint)(b >> 32);
        if ((s0 | s1 | s2 | s3) == 0) s0 = 1;
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public uint NextUInt()
    {
        uint result = RotateLeft(s1 * 5, 7) * 9;
        uint t = s1 << 9;
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3;
        s2 ^= t;
        s3 = RotateLeft(s3, 11);
        return result;
    }

    private static uint RotateLeft(uint x, int k) => (x << k) | (x >> (32 - k));

    /// <summary>Uniform in [0, 1) with 24 random bits, exactly representable as float.</summary>
    public float NextFloat() => (NextUInt() >> 8) * (1f / 16777216f);

    /// <summary>Uniform integer in [0, exclusiveMax).</summary>
    public int NextInt(int exclusiveMax) => (int)(((ulong)NextUInt() * (ulong)exclusiveMax) >> 32);

    /// <summary>Fisher–Yates shuffle.</summary>
    public void Shuffle(Span<int> values)
    {
        for (int i = values.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }
}

/// <summary>Keras' default initialisers.</summary>
public static class Initializers
{
    /// <summary>Glorot (Xavier) uniform: U(-limit, limit), limit = sqrt(6 / (fanIn + fanOut)).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void GlorotUniform(Span<float> kernel, int fanIn, int fanOut, ref SeededRandom random)
    {
        float limit = MathF.Sqrt(6f / (fanIn + fanOut));
        for (int i = 0; i < kernel.Length; i++) kernel[i] = (2f * random.NextFloat() - 1f) * limit;
    }
}

/// <summary>Inverted dropout as Keras applies it: keep with probability 1-rate and scale kept values by 1/(1-rate).</summary>
public static class DropoutKernel
{
    /// <summary>Draws a fresh mask (0 or 1/(1-rate) per element) and writes output = input ⊙ mask.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Forward(ReadOnlySpan<float> input, Span<float> output, Span<float> mask, int length, float rate, ref SeededRandom random)
    {
        float scale = 1f / (1f - rate);
        for (int i = 0; i < length; i++)
        {
            float keep = random.NextFloat() >= rate ? scale : 0f;
            mask[i] = keep;
            output[i] = input[i] * keep;
        }
    }

    /// <summary>dL/dx (=|+=) dL/dy ⊙ mask.</summary>
    public static void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> mask, Span<float> inputGradient, int length, bool accumulate = false)
    {
        var dy = outputGradient.Slice(0, length);
        var keep = mask.Slice(0, length);
        var dx = inputGradient.Slice(0, length);
        if (accumulate) System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(dy, keep, dx, dx);
        else System.Numerics.Tensors.TensorPrimitives.Multiply(dy, keep, dx);
    }
}
