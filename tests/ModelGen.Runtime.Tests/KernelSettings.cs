namespace ModelGen.Runtime.Tests;

/// <summary>Tests that switch global kernel settings (SIMD path, thread count) run one at a time, never beside each other.</summary>
[CollectionDefinition(Name)]
public sealed class KernelSettings
{
    public const string Name = "Global kernel settings";
}
