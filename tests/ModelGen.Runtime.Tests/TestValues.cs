namespace ModelGen.Runtime.Tests;

/// <summary>Inputs for the kernel tests.</summary>
internal static class TestValues
{
    /// <summary><paramref name="length"/> floats uniform in [-1, 1), the same ones for the same <paramref name="seed"/>.</summary>
    public static float[] Uniform(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }
}
