using System;
using System.Runtime.CompilerServices;

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

    [MethodImpl(Compiled.Driver)]
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
    [MethodImpl(Compiled.Kernel)]
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
    [MethodImpl(Compiled.Kernel)]
    public static void GlorotUniform(Span<float> kernel, int fanIn, int fanOut, ref SeededRandom random)
    {
        Uniform(kernel, MathF.Sqrt(6f / (fanIn + fanOut)), ref random);
    }

    /// <summary>U(-limit, limit); Keras' Embedding draws its table from U(-0.05, 0.05).</summary>
    public static void Uniform(Span<float> values, float limit, ref SeededRandom random)
    {
        for (int i = 0; i < values.Length; i++) values[i] = (2f * random.NextFloat() - 1f) * limit;
    }

    /// <summary>
    /// Keras' Orthogonal (a recurrent kernel's default): the Q of a Gaussian matrix's QR decomposition, with orthonormal rows
    /// when rows &lt; columns (as an LSTM's (units, 4·units) recurrent kernel) and orthonormal columns otherwise.
    /// </summary>
    public static void Orthogonal(Span<float> kernel, int rows, int columns, ref SeededRandom random)
    {
        int tall = Math.Max(rows, columns), narrow = Math.Min(rows, columns);
        var q = new double[tall * narrow]; // column j at q[j * tall ..]: Gram–Schmidt works on columns
        for (int i = 0; i < q.Length; i += 2)
        {
            // Box–Muller: two standard normals from two uniforms in (0, 1].
            double u1 = 1.0 - random.NextFloat(), u2 = random.NextFloat();
            double radius = Math.Sqrt(-2.0 * Math.Log(u1));
            q[i] = radius * Math.Cos(2 * Math.PI * u2);
            if (i + 1 < q.Length) q[i + 1] = radius * Math.Sin(2 * Math.PI * u2);
        }
        for (int j = 0; j < narrow; j++)
        {
            var column = q.AsSpan(j * tall, tall);
            for (int k = 0; k < j; k++)
            {
                var basis = q.AsSpan(k * tall, tall);
                double projection = 0;
                for (int i = 0; i < tall; i++) projection += basis[i] * column[i];
                for (int i = 0; i < tall; i++) column[i] -= projection * basis[i];
            }
            double norm = 0;
            for (int i = 0; i < tall; i++) norm += column[i] * column[i];
            norm = Math.Sqrt(norm); // R's diagonal is positive, so Keras' sign correction changes nothing
            for (int i = 0; i < tall; i++) column[i] /= norm;
        }
        // Entry (r, c) of the kernel: element r of column c when the columns are orthonormal, else element c of column r.
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                kernel[r * columns + c] = (float)(rows >= columns ? q[c * tall + r] : q[r * tall + c]);
    }
}

/// <summary>What keys one dropout mask: two draws from the model's generator, made once per training step and layer.</summary>
public readonly record struct DropoutKey(uint Key, uint Salt)
{
    public static DropoutKey Draw(ref SeededRandom random)
    {
        uint key = random.NextUInt();
        return new DropoutKey(key, random.NextUInt());
    }
}

/// <summary>Inverted dropout as Keras applies it: keep with probability 1-rate and scale kept values by 1/(1-rate).</summary>
public static class DropoutKernel
{
    /// <summary>
    /// Draws a fresh mask (0 or 1/(1-rate) per element) and writes output = input ⊙ mask. Two draws from the model's generator
    /// key the mask; each element's uniform is then a hash of that key and its index, so the mask is the same however the
    /// loop is cut, and vectors of elements are drawn at once (a generator step per element, a serial chain, cost 200 us of
    /// the MLP's 1.4 ms training step at batch 128).
    /// </summary>
    public static void Forward(ReadOnlySpan<float> input, Span<float> output, Span<float> mask, int length, float rate, ref SeededRandom random) =>
        Forward(input, output, mask, length, rate, DropoutKey.Draw(ref random), firstIndex: 0);

    /// <summary>
    /// The mask's elements [<paramref name="firstIndex"/>, + <paramref name="length"/>) of a batch's mask keyed by
    /// <paramref name="key"/>, over that part of the batch (a part's rows from its first, BatchParts): each element's draw
    /// is that of its index in the batch, so the parts' masks are the whole batch's. Shared between the cores by ranges of
    /// elements where the layer is large (<see cref="ShareAbove"/>), so the same mask however it is cut.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Forward(ReadOnlySpan<float> input, Span<float> output, Span<float> mask, int length, float rate, DropoutKey key, int firstIndex)
    {
        fixed (float* x = input.Slice(0, length), y = output.Slice(0, length), m = mask.Slice(0, length))
        {
            var work = new MaskRanges(x, y, m, rate, key, firstIndex);
            Helper.ForRanges(ref work, length, floatsPerItem: DrawFloats, ShareAbove);
        }
    }

    /// <summary>
    /// What an element's draw costs, in floats moved: its two finalisers take about as long as moving eight, which sizes the
    /// parts (Helper.ForRanges).
    /// </summary>
    private const int DrawFloats = 8;

    /// <summary>
    /// The floats (<see cref="DrawFloats"/> an element) from which a mask is shared between the cores: 3K elements. On the
    /// Zen 5 (AVX-512, a console loop, medians), one core against two: 32K elements (the MNIST MLP's first dropout at batch
    /// 128) 7.0 -> 3.9 us, 16K 3.6 -> 2.1, 8K 1.8 -> 1.2, 4K 0.92 -> 0.68, 2K 0.50 against 0.47-0.56. A vector of 8 lanes
    /// a draw (Vector&lt;T&gt;, before) took 12.4 us over 32K elements.
    /// </summary>
    private const long ShareAbove = 24 * 1024;

    /// <summary>Elements [first, first + count) of a mask and its output, on either thread.</summary>
    private readonly unsafe struct MaskRanges(float* x, float* y, float* mask, float rate, DropoutKey key, int firstIndex) : IVectorRanges
    {
        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        [MethodImpl(Compiled.Kernel)]
        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            int width = TLanes.Count, end = first + count, i = first;
            var kept = TLanes.Broadcast(1f / (1f - rate));
            for (; i + width <= end; i += width) Write<TLanes, TVector>(i, width, kept);
            if (i < end) Write<TLanes, TVector>(i, end - i, kept); // the last, partial vector: nothing past it read or written
        }

        /// <summary>The <paramref name="lanes"/> elements from <paramref name="at"/> on: their factors into the mask, and x times them into y.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Write<TLanes, TVector>(int at, int lanes, TVector kept) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            var factor = Factor<TLanes, TVector>(at, kept);
            WholeOrFirst.Store<TLanes, TVector>(ref mask[at], factor, lanes);
            WholeOrFirst.Store<TLanes, TVector>(ref y[at], TLanes.Multiply(WholeOrFirst.Load<TLanes, TVector>(ref x[at], lanes), factor), lanes);
        }

        /// <summary>Elements from <paramref name="at"/> on: 1/(1-rate) where the draw is at least the rate (kept), else 0.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private TVector Factor<TLanes, TVector>(int at, TVector kept) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            TLanes.ZeroWhere(TLanes.Below(TLanes.KeyedUniform(firstIndex + at, key.Salt, key.Key), rate), kept);
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
