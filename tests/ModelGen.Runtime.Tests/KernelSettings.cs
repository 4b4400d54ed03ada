using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>Tests that switch global kernel settings (SIMD path, thread count) run one at a time, never beside each other.</summary>
[CollectionDefinition(Name)]
public sealed class KernelSettings
{
    public const string Name = "Global kernel settings";

    /// <summary>Runs <paramref name="run"/> with kernels using <paramref name="threads"/> threads, then restores the setting.</summary>
    public static T OnThreads<T>(int threads, Func<T> run)
    {
        int saved = Helper.Threads;
        try
        {
            Helper.Threads = threads;
            return run();
        }
        finally { Helper.Threads = saved; }
    }

    public static void OnThreads(int threads, Action run) => OnThreads(threads, () => { run(); return 0; });

    /// <summary>Kernels run on <paramref name="path"/> until the returned scope is disposed.</summary>
    public static IDisposable OnSimd(SimdPath path) => new SimdScope(path);

    /// <summary>Every SIMD path this machine can run, as theory data.</summary>
    public static TheoryData<SimdPath> SupportedPaths() => new(Enum.GetValues<SimdPath>().Where(Simd.IsSupported));

    private sealed class SimdScope : IDisposable
    {
        private readonly SimdPath saved = Simd.Current;
        public SimdScope(SimdPath path) => Simd.Current = path;
        public void Dispose() => Simd.Current = saved;
    }
}
