using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>How the runtime's kernels, and the drivers around them, are compiled.</summary>
internal static class Compiled
{
    /// <summary>
    /// A kernel: fully optimised on its first call, as tier-0 code runs kernels ~100x slower (it made a short training run's
    /// first epoch dominate its time), and never inlined, so it is always compiled as its own root. Inlined into a tiered
    /// caller (a SIMD dispatcher, a model's generated code), a kernel's vector helpers no longer fitted that caller's
    /// inlining budget and ran as calls: a softmax of 64 rows of 64 took 0.3 ms instead of 8 us while its e^x ran as tier-0
    /// calls, and 20% longer after they were optimised. At model level (the digits MLP of benchmarks/, a fresh process each,
    /// six alternations on the AVX2 Zen 3): after a first epoch of 100-121 ms either way, the next 20 epochs took 32-36 ms
    /// with this, 210-288 ms with kernels left to tiered compilation; 100 calls of the MNIST MLP's Predict at batch 128
    /// right after the first, 45-58 ms against 47-169.
    /// </summary>
    public const MethodImplOptions Kernel = MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization;

    /// <summary>
    /// A driver: code around the kernels that every training step or prediction runs (argument checks, the choice of a
    /// kernel and of its threads, a shared loop's hand-out, Fit's loop): optimised on its first call, and left inlinable,
    /// as most are small. Left to tiering, drivers ran as instrumented tier-0 code through the first fits of a run: the
    /// runtime starts counting calls only once 100 ms pass with no new method compiled at tier 0 anywhere in the process,
    /// then recompiles each hot method in the background. The digits fit of benchmarks/ (--digits, fits 2-6 of a process, six
    /// alternations on the Zen 4): 0.0875 -> 0.0847 s, its second to fifth fits 87-89 -> 84-85 ms, and the tenth no longer
    /// 98 ms where the others take 83. Gemm's public entry points are left to tiering: marked, they made a width-8 MLP's
    /// batch-1 prediction (0.2 us) 8% slower, and the fit only 0.5% faster. A range callback or a step loop is a driver too:
    /// 71 left unmarked (the direct convolution's wide pass among them, whose inlining had failed) made the
    /// MobileNet block's first 50 training steps in a fresh process 438 ms against 301 marked (benchmarks' --cold, medians of
    /// three on the Zen 4), at 6-9 ms more JIT on a first call, and the transformer's first 300 steps 4% longer.
    /// </summary>
    public const MethodImplOptions Driver = MethodImplOptions.AggressiveOptimization;
}

/// <summary>
/// A yes or no as a type argument, a constant in each compiled copy, so the JIT leaves the other branch out: whether a
/// max pooling keeps its winners (inference drops the index work), whether whole 2x2 windows take their unrolled loop.
/// </summary>
internal interface IFlag
{
    static abstract bool IsSet { get; }
}

internal readonly struct Yes : IFlag
{
    public static bool IsSet => true;
}

internal readonly struct No : IFlag
{
    public static bool IsSet => false;
}

/// <summary>
/// A small count as a type argument, so the JIT compiles each count into its own copy of a kernel as a constant: the height
/// of Gemm's rows read in place, the rows and vectors of a streamed pass, the columns a transposed softmax computes.
/// </summary>
internal interface ICount
{
    static abstract int Value { get; }
}

internal readonly struct Zero : ICount { public static int Value => 0; }
internal readonly struct One : ICount { public static int Value => 1; }
internal readonly struct Two : ICount { public static int Value => 2; }
internal readonly struct Three : ICount { public static int Value => 3; }
internal readonly struct Four : ICount { public static int Value => 4; }
internal readonly struct Five : ICount { public static int Value => 5; }
internal readonly struct Six : ICount { public static int Value => 6; }
internal readonly struct Seven : ICount { public static int Value => 7; }
internal readonly struct Eight : ICount { public static int Value => 8; }
internal readonly struct Ten : ICount { public static int Value => 10; }
internal readonly struct Twelve : ICount { public static int Value => 12; }
internal readonly struct Sixteen : ICount { public static int Value => 16; }
