using System.Runtime.Intrinsics;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// The fused ReLU's two-instruction form gives exactly IEEE max(x, 0) on every SIMD path, special values included; ZeroWhere
/// zeroes exactly its masked lanes; a partial store writes exactly its first lanes.
/// </summary>
public class LanesTests
{
    private static readonly float[] Values =
    [
        float.NaN, -float.NaN, 0f, -0f, 1f, -1f, float.Epsilon, -float.Epsilon, 1e-40f, -1e-40f,
        float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.MinValue, 3.5f, -2.25f,
    ];

    [Fact]
    public void Relu_is_exactly_ieee_max_with_zero()
    {
        var expected = Values.Select(v => MathF.Max(v, 0f)).ToArray();
        AssertBits(expected, Lanes128.Relu(Vector128.Create(Values.AsSpan(0, 4))), 0);
        AssertBits(expected, Lanes128.Relu(Vector128.Create(Values.AsSpan(4, 4))), 4);
        AssertBits(expected, Lanes128.Relu(Vector128.Create(Values.AsSpan(8, 4))), 8);
        AssertBits(expected, Lanes128.Relu(Vector128.Create(Values.AsSpan(12, 4))), 12);
        AssertBits(expected, Lanes256.Relu(Vector256.Create(Values.AsSpan(0, 8))), 0);
        AssertBits(expected, Lanes256.Relu(Vector256.Create(Values.AsSpan(8, 8))), 8);
        AssertBits(expected, Lanes512.Relu(Vector512.Create(Values.AsSpan())), 0);
    }

    [Fact]
    public void ZeroWhere_zeroes_exactly_the_masked_lanes_and_keeps_the_others_bits()
    {
        // Masked where below zero (what e^x masks below its limit): -0 and NaN are not below zero, so they keep their bits.
        var expected = Values.Select(v => v < 0f ? 0f : v).ToArray();
        AssertZeroWhere<Lanes128, Vector128<float>>(expected);
        AssertZeroWhere<Lanes256, Vector256<float>>(expected);
        AssertZeroWhere<Lanes512, Vector512<float>>(expected);
    }

    private static void AssertZeroWhere<TLanes, TVector>(float[] expected) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        for (int first = 0; first < Values.Length; first += TLanes.Count)
        {
            var value = TLanes.Load(ref Values[first]);
            var actual = new float[TLanes.Count];
            TLanes.Store(ref actual[0], TLanes.ZeroWhere(TLanes.Below(value, 0f), value));
            for (int i = 0; i < actual.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(expected[first + i]) == BitConverter.SingleToInt32Bits(actual[i]),
                    $"{typeof(TLanes).Name}: ZeroWhere(below zero) of {Values[first + i]} gave {actual[i]}, expected {expected[first + i]}");
        }
    }

    [Fact]
    public void StoreFirst_writes_exactly_the_first_lanes_at_any_offset()
    {
        for (int count = 0; count <= 16; count++)
        for (int offset = 0; offset < 4; offset++)
        {
            if (count <= 4) AssertStoresFirst<Lanes128, Vector128<float>>(Vector128.Create(Values.AsSpan(0, 4)), count, offset);
            if (count <= 8) AssertStoresFirst<Lanes256, Vector256<float>>(Vector256.Create(Values.AsSpan(0, 8)), count, offset);
            AssertStoresFirst<Lanes512, Vector512<float>>(Vector512.Create(Values.AsSpan()), count, offset);
        }
    }

    private static void AssertStoresFirst<TLanes, TVector>(TVector value, int count, int offset)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        const float Untouched = 42f;
        var target = Enumerable.Repeat(Untouched, offset + TLanes.Count + 4).ToArray();
        TLanes.StoreFirst(ref target[offset], value, count);
        for (int i = 0; i < target.Length; i++)
        {
            int lane = i - offset;
            float expected = lane >= 0 && lane < count ? Values[lane] : Untouched;
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(target[i]),
                $"{typeof(TLanes).Name}.StoreFirst of {count} lanes at offset {offset}: element {i} is {target[i]}, expected {expected}");
        }
    }

    private static void AssertBits<TVector>(float[] expected, TVector actual, int first) where TVector : struct
    {
        var lanes = System.Runtime.InteropServices.MemoryMarshal.Cast<TVector, float>(new[] { actual });
        for (int i = 0; i < lanes.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(expected[first + i]) == BitConverter.SingleToInt32Bits(lanes[i]),
                $"relu({Values[first + i]}) gave {lanes[i]}, IEEE max gives {expected[first + i]}");
    }
}
