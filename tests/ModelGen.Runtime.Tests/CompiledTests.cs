using System.Reflection;
using System.Runtime.CompilerServices;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>How the runtime's kernels are compiled (<see cref="Compiled.Kernel"/>).</summary>
public class CompiledTests
{
    [Fact]
    public void Every_method_optimised_on_its_first_call_is_compiled_as_its_own_root()
    {
        // AggressiveOptimization alone lets a tiered caller inline the kernel, where its vector helpers stop fitting the
        // caller's inlining budget and run as calls (tier-0 calls at first).
        var kernels = typeof(Gemm).Assembly.GetTypes()
            .SelectMany(type => type.GetMethods(BindingFlags.Static | BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly)
                .Cast<MethodBase>().Concat(type.GetConstructors(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)))
            .Where(method => method.MethodImplementationFlags.HasFlag(MethodImplAttributes.AggressiveOptimization))
            .ToList();
        Assert.Contains(kernels, method => method.Name == "SoftmaxRows");
        // Loops that a training run takes every step or epoch outside the numerical kernels: left to tiering, they ran
        // unoptimised through the first fits of a run (the digits fit's second to fourth 140/113/117 ms, against 108/107/98).
        foreach (string loop in new[] { "ElementwiseBackward", "Gather", "CheckLabels", "Shuffle" })
            Assert.Contains(kernels, method => method.Name == loop);
        Assert.True(kernels.Count >= 50, $"{kernels.Count} kernels found");
        var inlinable = kernels.Where(method => !method.MethodImplementationFlags.HasFlag(MethodImplAttributes.NoInlining))
            .Select(method => $"{method.DeclaringType!.Name}.{method.Name}");
        Assert.Empty(inlinable);
    }
}
