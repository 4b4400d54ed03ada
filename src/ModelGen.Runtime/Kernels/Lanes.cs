using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ModelGen.Kernels;

/// <summary>
/// The vector operations the kernels need, implemented once per SIMD width, each inlined into the kernel that uses it
/// (kernels are compiled as <see cref="Compiled.Kernel"/>, so they always have the room). Kernels are generic over a
/// struct implementing this, so the JIT compiles one specialised copy per width.
/// </summary>
internal interface ILanes<TVector> where TVector : struct
{
    static abstract int Count { get; }
    static abstract TVector Zero { get; }
    static abstract TVector Broadcast(float value);
    static abstract TVector Load(ref float source);
    static abstract void Store(ref float destination, TVector value);
    /// <summary>
    /// Stores past the caches (a non-temporal store) to <paramref name="destination"/>, aligned to a vector; a plain store
    /// where the hardware has none. Such stores are weakly ordered: the writer ends its run of them with <see cref="Simd.FenceStreamedStores"/>.
    /// </summary>
    static abstract void StoreStreamed(ref float destination, TVector value);
    /// <summary>a * b + c, fused where the hardware has FMA.</summary>
    static abstract TVector MultiplyAdd(TVector a, TVector b, TVector c);
    static abstract TVector Add(TVector a, TVector b);
    static abstract TVector Subtract(TVector a, TVector b);
    static abstract TVector Multiply(TVector a, TVector b);
    static abstract TVector Divide(TVector a, TVector b);
    static abstract TVector Sqrt(TVector value);
    /// <summary>Zeroes lanes whose magnitude is below the smallest normal float (flush-to-zero).</summary>
    static abstract TVector FlushSubnormal(TVector value);
    /// <summary>
    /// The hardware's maximum, one short instruction: which of +0 and -0 wins, and whether a NaN lane does, is the
    /// instruction's choice (callers that care check the result). The IEEE maximum takes nine, in a chain.
    /// </summary>
    static abstract TVector Max(TVector a, TVector b);
    /// <summary>
    /// max(value, 0) as the IEEE maximum gives it (NaN stays NaN, -0 becomes +0), in two short instructions: the native
    /// maximum with zero first returns the second operand for NaN and for -0, and adding +0 turns -0 into +0. The ReLU of
    /// every fused epilogue.
    /// </summary>
    static abstract TVector Relu(TVector value);
    static abstract float Sum(TVector value);
    /// <summary>The largest lane (NaN lanes may or may not win: callers check the result).</summary>
    static abstract float Largest(TVector value);
    /// <summary>The first <paramref name="count"/> lanes from memory and zeros after them; nothing past them is read.</summary>
    static abstract TVector LoadFirst(ref float source, int count);
    /// <summary>The first <paramref name="count"/> lanes from memory and <paramref name="fill"/>'s lanes after them.</summary>
    static abstract TVector LoadFirst(ref float source, int count, TVector fill);
    /// <summary>Stores the first <paramref name="count"/> lanes; the memory past them is not touched.</summary>
    static abstract void StoreFirst(ref float destination, TVector value, int count);
    /// <summary>A mask of the first <paramref name="count"/> lanes, for <see cref="LoadMasked"/> in a loop.</summary>
    static abstract TVector FirstLanes(int count);
    /// <summary>
    /// The integers first, first + 1, ... as each lane's bits: indices that <see cref="Select"/> carries beside the values it
    /// selects, and a store writes as the integers they are.
    /// </summary>
    static abstract TVector IndexBits(int first);
    /// <summary>Each lane from <paramref name="whereSet"/> where <paramref name="mask"/> is set, else from <paramref name="elsewhere"/>.</summary>
    static abstract TVector Select(TVector mask, TVector whereSet, TVector elsewhere);
    /// <summary>Zero where <paramref name="mask"/> is set, else <paramref name="value"/>'s lane: one instruction where Select with zero takes three.</summary>
    static abstract TVector ZeroWhere(TVector mask, TVector value);
    /// <summary>The lanes <paramref name="mask"/> selects from pinned memory and zeros elsewhere; nothing else is read.</summary>
    static abstract unsafe TVector LoadMasked(float* source, TVector mask);
    /// <summary>Each lane to the nearest integer, ties to even.</summary>
    static abstract TVector Round(TVector value);
    /// <summary>
    /// value · 2^exponent for integral exponents in [-126, 127], built from the exponent's bits; other lanes come out
    /// meaningless (the native conversion, without the saturating fix-up that would cost four instructions), for callers
    /// to mask.
    /// </summary>
    static abstract TVector ScaleByPowerOfTwo(TVector value, TVector exponent);
    /// <summary>
    /// A positive normal float split as significand · 2^exponent: the significand, in [1, 2), read from its bits (other
    /// lanes come out meaningless, for callers to mask).
    /// </summary>
    static abstract TVector Significand(TVector value);
    /// <summary>The exponent of <see cref="Significand"/>'s split, as a float.</summary>
    static abstract TVector Exponent(TVector value);
    /// <summary>
    /// <paramref name="sums"/> plus the lanes in double, lane i added to sum i % 4 in lane order: the same sums on every
    /// width for values taken a vector at a time.
    /// </summary>
    static abstract Vector256<double> AddInFours(Vector256<double> sums, TVector value);
    /// <summary><see cref="AddInFours"/> of the lanes' squares, each squared in double (exactly: a float's square fits).</summary>
    static abstract Vector256<double> AddSquaresInFours(Vector256<double> sums, TVector value);
    static abstract TVector Abs(TVector value);
    /// <summary>A mask (for <see cref="Select"/>) of the lanes of <paramref name="value"/> below <paramref name="limit"/>.</summary>
    static abstract TVector Below(TVector value, float limit);
    /// <summary>A mask (for <see cref="Select"/>) of the lanes where <paramref name="value"/> is greater than <paramref name="other"/> (neither NaN).</summary>
    static abstract TVector Greater(TVector value, TVector other);
    /// <summary>A mask (for <see cref="Select"/>) of the lanes where <paramref name="value"/> is at least <paramref name="other"/>: none where either is NaN.</summary>
    static abstract TVector NotBelow(TVector value, TVector other);
    /// <summary>
    /// Each lane's uniform in [0, 1), 24 random bits, for the indices first, first + 1, ...: murmur3's finaliser applied twice
    /// to the index, keyed by <paramref name="salt"/> and <paramref name="key"/> (a dropout mask's draws, DropoutKernel). A
    /// lane's value depends on its index alone, never on the width.
    /// </summary>
    static abstract TVector KeyedUniform(int first, uint salt, uint key);
}

internal struct Lanes512 : ILanes<Vector512<float>>
{
    public static int Count => Vector512<float>.Count;
    public static Vector512<float> Zero => Vector512<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Broadcast(float value) => Vector512.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(ref float source) => Vector512.LoadUnsafe(ref source);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(ref float destination, Vector512<float> value) => value.StoreUnsafe(ref destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void StoreStreamed(ref float destination, Vector512<float> value)
    {
        if (Avx512F.IsSupported) Avx512F.StoreAlignedNonTemporal((float*)Unsafe.AsPointer(ref destination), value);
        else value.StoreUnsafe(ref destination);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Subtract(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Multiply(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Divide(Vector512<float> a, Vector512<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Sqrt(Vector512<float> value) => Vector512.Sqrt(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> FlushSubnormal(Vector512<float> value) =>
        Vector512.ConditionalSelect(Vector512.LessThan(Vector512.Abs(value), Vector512.Create(1.17549435e-38f)), Vector512<float>.Zero, value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Relu(Vector512<float> value) => Vector512.MaxNative(Vector512<float>.Zero, value) + Vector512<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector512<float> value) => Vector512.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Largest(Vector512<float> value) => Lanes256.Largest(Vector256.MaxNative(value.GetLower(), value.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Round(Vector512<float> value) => Vector512.Round(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> ScaleByPowerOfTwo(Vector512<float> value, Vector512<float> exponent) =>
        value * Vector512.ShiftLeft(Vector512.ConvertToInt32Native(exponent) + Vector512.Create(127), 23).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Significand(Vector512<float> value) =>
        (value.AsInt32() & Vector512.Create(0x007FFFFF) | Vector512.Create(0x3F800000)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Exponent(Vector512<float> value) =>
        Vector512.ConvertToSingle(Vector512.ShiftRightLogical(value.AsInt32(), 23) - Vector512.Create(127));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> AddInFours(Vector256<double> sums, Vector512<float> value) =>
        Lanes256.AddInFours(Lanes256.AddInFours(sums, value.GetLower()), value.GetUpper());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> AddSquaresInFours(Vector256<double> sums, Vector512<float> value) =>
        Lanes256.AddSquaresInFours(Lanes256.AddSquaresInFours(sums, value.GetLower()), value.GetUpper());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Vector512<float> LoadFirst(ref float source, int count)
    {
        fixed (float* at = &source) return Avx512F.IsSupported ? Avx512F.MaskLoad(at, First(count), Vector512<float>.Zero) : LaneByLane.Load(at, First(count), Zero);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Vector512<float> LoadFirst(ref float source, int count, Vector512<float> fill)
    {
        fixed (float* at = &source) return Avx512F.IsSupported ? Avx512F.MaskLoad(at, First(count), fill) : LaneByLane.Load(at, First(count), fill);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe void StoreFirst(ref float destination, Vector512<float> value, int count)
    {
        fixed (float* at = &destination)
        {
            if (Avx512F.IsSupported) Avx512F.MaskStore(at, First(count), value);
            else LaneByLane.Store(at, First(count), value);
        }
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> FirstLanes(int count) => First(count);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> IndexBits(int first) => (Vector512.Create(first) + Vector512<int>.Indices).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Select(Vector512<float> mask, Vector512<float> whereSet, Vector512<float> elsewhere) =>
        Vector512.ConditionalSelect(mask, whereSet, elsewhere);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> ZeroWhere(Vector512<float> mask, Vector512<float> value) => Vector512.AndNot(value, mask);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Abs(Vector512<float> value) => Vector512.Abs(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Below(Vector512<float> value, float limit) => Vector512.LessThan(value, Vector512.Create(limit));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Greater(Vector512<float> value, Vector512<float> other) => Vector512.GreaterThan(value, other);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> NotBelow(Vector512<float> value, Vector512<float> other) => Vector512.GreaterThanOrEqual(value, other);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> KeyedUniform(int first, uint salt, uint key)
    {
        var index = Vector512.Create((uint)first) + Vector512<uint>.Indices;
        var bits = Vector512.ShiftRightLogical(Mix(Mix(index + Vector512.Create(salt)) ^ Vector512.Create(key)), 8);
        return Vector512.ConvertToSingle(bits.AsInt32()) * Vector512.Create(1f / 16777216f);
    }
    /// <summary>murmur3's 32-bit finaliser on each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> Mix(Vector512<uint> x)
    {
        x ^= Vector512.ShiftRightLogical(x, 16); x *= 0x85EBCA6Bu;
        x ^= Vector512.ShiftRightLogical(x, 13); x *= 0xC2B2AE35u;
        return x ^ Vector512.ShiftRightLogical(x, 16);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Vector512<float> LoadMasked(float* source, Vector512<float> mask) =>
        Avx512F.IsSupported ? Avx512F.MaskLoad(source, mask, Vector512<float>.Zero) : LaneByLane.Load(source, mask, Zero);
    private static Vector512<float> First(int count) => Vector512.LessThan(Vector512<int>.Indices, Vector512.Create(count)).AsSingle();
}

internal struct Lanes256 : ILanes<Vector256<float>>
{
    public static int Count => Vector256<float>.Count;
    public static Vector256<float> Zero => Vector256<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Broadcast(float value) => Vector256.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(ref float source) => Vector256.LoadUnsafe(ref source);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(ref float destination, Vector256<float> value) => value.StoreUnsafe(ref destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void StoreStreamed(ref float destination, Vector256<float> value)
    {
        if (Avx.IsSupported) Avx.StoreAlignedNonTemporal((float*)Unsafe.AsPointer(ref destination), value);
        else value.StoreUnsafe(ref destination);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Subtract(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Multiply(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Divide(Vector256<float> a, Vector256<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Sqrt(Vector256<float> value) => Vector256.Sqrt(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> FlushSubnormal(Vector256<float> value) =>
        Vector256.ConditionalSelect(Vector256.LessThan(Vector256.Abs(value), Vector256.Create(1.17549435e-38f)), Vector256<float>.Zero, value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Relu(Vector256<float> value) => Vector256.MaxNative(Vector256<float>.Zero, value) + Vector256<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector256<float> value) => Vector256.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Largest(Vector256<float> value) => Lanes128.Largest(Vector128.MaxNative(value.GetLower(), value.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Round(Vector256<float> value) => Vector256.Round(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> ScaleByPowerOfTwo(Vector256<float> value, Vector256<float> exponent) =>
        value * Vector256.ShiftLeft(Vector256.ConvertToInt32Native(exponent) + Vector256.Create(127), 23).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Significand(Vector256<float> value) =>
        (value.AsInt32() & Vector256.Create(0x007FFFFF) | Vector256.Create(0x3F800000)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Exponent(Vector256<float> value) =>
        Vector256.ConvertToSingle(Vector256.ShiftRightLogical(value.AsInt32(), 23) - Vector256.Create(127));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> AddInFours(Vector256<double> sums, Vector256<float> value) =>
        sums + Vector256.WidenLower(value) + Vector256.WidenUpper(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> AddSquaresInFours(Vector256<double> sums, Vector256<float> value)
    {
        Vector256<double> lower = Vector256.WidenLower(value), upper = Vector256.WidenUpper(value);
        return sums + lower * lower + upper * upper;
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Vector256<float> LoadFirst(ref float source, int count)
    {
        fixed (float* at = &source) return Avx.IsSupported ? Avx.MaskLoad(at, First(count)) : LaneByLane.Load(at, First(count), Zero);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> LoadFirst(ref float source, int count, Vector256<float> fill) =>
        Vector256.ConditionalSelect(First(count), LoadFirst(ref source, count), fill);
    /// <summary>
    /// The first <paramref name="count"/> lanes as a half, a pair and a single, not as one masked store: VMASKMOVPS stores are
    /// microcoded on AMD's Zen cores (on the 2-vCPU Zen 3, 30 rows of 10 floats stored as a vector and a masked pair took 11 ns
    /// per masked store in C, a plain store under 1 ns). Every edge tile of a product whose width is not in 8s ends in these.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void StoreFirst(ref float destination, Vector256<float> value, int count)
    {
        if (count >= Count)
        {
            value.StoreUnsafe(ref destination);
            return;
        }
        var part = value.GetLower();
        if (count >= 4)
        {
            part.StoreUnsafe(ref destination);
            part = value.GetUpper();
            destination = ref Unsafe.Add(ref destination, 4);
            count -= 4;
        }
        if (count >= 2)
        {
            Unsafe.WriteUnaligned(ref Unsafe.As<float, byte>(ref destination), part.AsDouble().ToScalar());
            part = Vector128.Shuffle(part, Vector128.Create(2, 3, 2, 3));
            destination = ref Unsafe.Add(ref destination, 2);
            count -= 2;
        }
        if (count >= 1) destination = part.ToScalar();
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> FirstLanes(int count) => First(count);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> IndexBits(int first) => (Vector256.Create(first) + Vector256<int>.Indices).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Select(Vector256<float> mask, Vector256<float> whereSet, Vector256<float> elsewhere) =>
        Vector256.ConditionalSelect(mask, whereSet, elsewhere);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> ZeroWhere(Vector256<float> mask, Vector256<float> value) => Vector256.AndNot(value, mask);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Abs(Vector256<float> value) => Vector256.Abs(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Below(Vector256<float> value, float limit) => Vector256.LessThan(value, Vector256.Create(limit));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Greater(Vector256<float> value, Vector256<float> other) => Vector256.GreaterThan(value, other);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> NotBelow(Vector256<float> value, Vector256<float> other) => Vector256.GreaterThanOrEqual(value, other);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> KeyedUniform(int first, uint salt, uint key)
    {
        var index = Vector256.Create((uint)first) + Vector256<uint>.Indices;
        var bits = Vector256.ShiftRightLogical(Mix(Mix(index + Vector256.Create(salt)) ^ Vector256.Create(key)), 8);
        return Vector256.ConvertToSingle(bits.AsInt32()) * Vector256.Create(1f / 16777216f);
    }
    /// <summary>murmur3's 32-bit finaliser on each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> Mix(Vector256<uint> x)
    {
        x ^= Vector256.ShiftRightLogical(x, 16); x *= 0x85EBCA6Bu;
        x ^= Vector256.ShiftRightLogical(x, 13); x *= 0xC2B2AE35u;
        return x ^ Vector256.ShiftRightLogical(x, 16);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Vector256<float> LoadMasked(float* source, Vector256<float> mask) =>
        Avx.IsSupported ? Avx.MaskLoad(source, mask) : LaneByLane.Load(source, mask, Zero);
    private static Vector256<float> First(int count) => Vector256.LessThan(Vector256<int>.Indices, Vector256.Create(count)).AsSingle();
}

/// <summary>
/// Masked loads and stores one lane at a time, where the hardware lacks a path's masked instructions: tests run every path on
/// any machine (the AVX-512 kernels on an AVX2 one, Vector512 then emulated), which the JIT compiles away where it has them.
/// Only the lanes the mask selects are read or written, as the instructions guarantee.
/// </summary>
internal static class LaneByLane
{
    public static unsafe TVector Load<TVector>(float* source, TVector mask, TVector fill) where TVector : unmanaged
    {
        var lanes = fill;
        float* to = (float*)&lanes;
        int* selected = (int*)&mask;
        for (int i = 0; i < sizeof(TVector) / sizeof(float); i++) if (selected[i] != 0) to[i] = source[i];
        return lanes;
    }

    public static unsafe void Store<TVector>(float* destination, TVector mask, TVector value) where TVector : unmanaged
    {
        float* from = (float*)&value;
        int* selected = (int*)&mask;
        for (int i = 0; i < sizeof(TVector) / sizeof(float); i++) if (selected[i] != 0) destination[i] = from[i];
    }
}

/// <summary>
/// A vector's first lanes, all of them or fewer: a whole vector loaded or stored plainly, fewer lanes masked. The masked forms
/// build their mask and pin their address at every call (~2.5 cycles more than a plain load a row in a column sum), which a
/// loop over whole vectors should not pay; the test folds away where the count is a constant.
/// </summary>
internal static class WholeOrFirst
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVector Load<TLanes, TVector>(ref float source, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        lanes == TLanes.Count ? TLanes.Load(ref source) : TLanes.LoadFirst(ref source, lanes);

    /// <summary>As <see cref="Load{TLanes, TVector}(ref float, int)"/>, the lanes past <paramref name="lanes"/> holding <paramref name="fill"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVector Load<TLanes, TVector>(ref float source, int lanes, TVector fill) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        lanes == TLanes.Count ? TLanes.Load(ref source) : TLanes.LoadFirst(ref source, lanes, fill);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store<TLanes, TVector>(ref float destination, TVector value, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (lanes == TLanes.Count) TLanes.Store(ref destination, value);
        else TLanes.StoreFirst(ref destination, value, lanes);
    }
}

/// <summary>The portable path: 128-bit vectors run on every platform (software-emulated where needed).</summary>
internal struct Lanes128 : ILanes<Vector128<float>>
{
    public static int Count => Vector128<float>.Count;
    public static Vector128<float> Zero => Vector128<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Broadcast(float value) => Vector128.Create(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(ref float source) => Vector128.LoadUnsafe(ref source);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(ref float destination, Vector128<float> value) => value.StoreUnsafe(ref destination);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void StoreStreamed(ref float destination, Vector128<float> value)
    {
        if (Sse.IsSupported) Sse.StoreAlignedNonTemporal((float*)Unsafe.AsPointer(ref destination), value);
        else value.StoreUnsafe(ref destination);
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Subtract(Vector128<float> a, Vector128<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Multiply(Vector128<float> a, Vector128<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Divide(Vector128<float> a, Vector128<float> b) => a / b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Sqrt(Vector128<float> value) => Vector128.Sqrt(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> FlushSubnormal(Vector128<float> value) =>
        Vector128.ConditionalSelect(Vector128.LessThan(Vector128.Abs(value), Vector128.Create(1.17549435e-38f)), Vector128<float>.Zero, value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Relu(Vector128<float> value) => Vector128.MaxNative(Vector128<float>.Zero, value) + Vector128<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector128<float> value) => Vector128.Sum(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Largest(Vector128<float> value) => float.MaxNative(float.MaxNative(value.GetElement(0), value.GetElement(1)), float.MaxNative(value.GetElement(2), value.GetElement(3)));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Round(Vector128<float> value) => Vector128.Round(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> ScaleByPowerOfTwo(Vector128<float> value, Vector128<float> exponent) =>
        value * Vector128.ShiftLeft(Vector128.ConvertToInt32Native(exponent) + Vector128.Create(127), 23).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Significand(Vector128<float> value) =>
        (value.AsInt32() & Vector128.Create(0x007FFFFF) | Vector128.Create(0x3F800000)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Exponent(Vector128<float> value) =>
        Vector128.ConvertToSingle(Vector128.ShiftRightLogical(value.AsInt32(), 23) - Vector128.Create(127));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> AddInFours(Vector256<double> sums, Vector128<float> value) =>
        sums + Vector256.Create(Vector128.WidenLower(value), Vector128.WidenUpper(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> AddSquaresInFours(Vector256<double> sums, Vector128<float> value)
    {
        var wide = Vector256.Create(Vector128.WidenLower(value), Vector128.WidenUpper(value));
        return sums + wide * wide;
    }
    // No masked loads on every platform: each lane is read on its own.
    public static Vector128<float> LoadFirst(ref float source, int count) =>
        Vector128.Create(count > 0 ? source : 0f, count > 1 ? Unsafe.Add(ref source, 1) : 0f, count > 2 ? Unsafe.Add(ref source, 2) : 0f, count > 3 ? Unsafe.Add(ref source, 3) : 0f);
    public static Vector128<float> LoadFirst(ref float source, int count, Vector128<float> fill) =>
        Vector128.ConditionalSelect(Vector128.LessThan(Vector128<int>.Indices, Vector128.Create(count)).AsSingle(), LoadFirst(ref source, count), fill);
    public static Vector128<float> FirstLanes(int count) => Vector128.LessThan(Vector128<int>.Indices, Vector128.Create(count)).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> IndexBits(int first) => (Vector128.Create(first) + Vector128<int>.Indices).AsSingle();
    public static Vector128<float> Select(Vector128<float> mask, Vector128<float> whereSet, Vector128<float> elsewhere) =>
        Vector128.ConditionalSelect(mask, whereSet, elsewhere);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> ZeroWhere(Vector128<float> mask, Vector128<float> value) => Vector128.AndNot(value, mask);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Abs(Vector128<float> value) => Vector128.Abs(value);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Below(Vector128<float> value, float limit) => Vector128.LessThan(value, Vector128.Create(limit));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Greater(Vector128<float> value, Vector128<float> other) => Vector128.GreaterThan(value, other);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> NotBelow(Vector128<float> value, Vector128<float> other) => Vector128.GreaterThanOrEqual(value, other);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> KeyedUniform(int first, uint salt, uint key)
    {
        var index = Vector128.Create((uint)first) + Vector128<uint>.Indices;
        var bits = Vector128.ShiftRightLogical(Mix(Mix(index + Vector128.Create(salt)) ^ Vector128.Create(key)), 8);
        return Vector128.ConvertToSingle(bits.AsInt32()) * Vector128.Create(1f / 16777216f);
    }
    /// <summary>murmur3's 32-bit finaliser on each lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<uint> Mix(Vector128<uint> x)
    {
        x ^= Vector128.ShiftRightLogical(x, 16); x *= 0x85EBCA6Bu;
        x ^= Vector128.ShiftRightLogical(x, 13); x *= 0xC2B2AE35u;
        return x ^ Vector128.ShiftRightLogical(x, 16);
    }
    public static unsafe Vector128<float> LoadMasked(float* source, Vector128<float> mask)
    {
        var lanes = mask.AsInt32();
        return Vector128.Create(lanes[0] != 0 ? source[0] : 0f, lanes[1] != 0 ? source[1] : 0f, lanes[2] != 0 ? source[2] : 0f, lanes[3] != 0 ? source[3] : 0f);
    }
    public static void StoreFirst(ref float destination, Vector128<float> value, int count)
    {
        for (int i = 0; i < count; i++) Unsafe.Add(ref destination, i) = value.GetElement(i);
    }
}

/// <summary>Which SIMD width the kernels use; chosen once from the hardware, overridable for tests.</summary>
public enum SimdPath { Portable, Avx2, Avx512 }

public static class Simd
{
    /// <summary>
    /// Makes the non-temporal stores before it (<see cref="ILanes{TVector}.StoreStreamed"/>) visible before any store after
    /// it, so that a thread that sees a later store (a finished part's flag) reads their values.
    /// </summary>
    internal static void FenceStreamedStores()
    {
        if (Sse.IsSupported) Sse.StoreFence();
    }

    /// <summary>The widest path this machine accelerates.</summary>
    public static SimdPath Best { get; } =
        Vector512.IsHardwareAccelerated ? SimdPath.Avx512 :
        Vector256.IsHardwareAccelerated ? SimdPath.Avx2 : SimdPath.Portable;

    /// <summary>
    /// The path kernels use now. Tests set it to exercise every path on one machine: a path wider than the hardware runs
    /// emulated (Vector512 in software), slowly but with the same tiling and the same results.
    /// </summary>
    public static SimdPath Current { get; set; } = Best;

    /// <summary>Floats in a vector on <see cref="Current"/>'s path.</summary>
    public static int Width => WidthOf(Current);

    /// <summary>Floats in a vector on <paramref name="path"/>.</summary>
    public static int WidthOf(SimdPath path) => path switch { SimdPath.Avx512 => Vector512<float>.Count, SimdPath.Avx2 => Vector256<float>.Count, _ => Vector128<float>.Count };

    /// <summary>Whether <paramref name="path"/> is accelerated here (a slower path always works).</summary>
    public static bool IsSupported(SimdPath path) => path <= Best;

    /// <summary>Items [first, first + count) of <paramref name="work"/>, on <see cref="Current"/>'s path.</summary>
    [MethodImpl(Compiled.Driver)]
    internal static void RunRanges<TWork>(TWork work, int first, int count) where TWork : struct, IVectorRanges
    {
        switch (Current)
        {
            case SimdPath.Avx512: work.Run<Lanes512, Vector512<float>>(first, count); break;
            case SimdPath.Avx2: work.Run<Lanes256, Vector256<float>>(first, count); break;
            default: work.Run<Lanes128, Vector128<float>>(first, count); break;
        }
    }

    /// <summary>
    /// <see cref="RunRanges{TWork}(TWork, int, int)"/> for rows of <paramref name="wholeVectorsOf"/> floats: on 256-bit
    /// vectors on AVX-512 where they are whole vectors of those and not of 512 bits (8 channels a pixel), so that no
    /// pixel's vector is cut.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    internal static void RunRanges<TWork>(TWork work, int first, int count, int wholeVectorsOf) where TWork : struct, IVectorRanges
    {
        if (Current == SimdPath.Avx512 && wholeVectorsOf % Vector512<float>.Count != 0 && wholeVectorsOf % Vector256<float>.Count == 0)
            work.Run<Lanes256, Vector256<float>>(first, count);
        else RunRanges(work, first, count);
    }
}
