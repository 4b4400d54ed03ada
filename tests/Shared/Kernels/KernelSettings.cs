using ModelGen.Kernels;

namespace ModelGen.Testing;

/// <summary>
/// Tests that switch global kernel settings (SIMD path, thread count) run one at a time, and beside no other test: one that
/// computes twice and compares must not see the path change in between.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
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

    /// <summary>
    /// Every SIMD path, as theory data: one the machine lacks runs emulated (Vector512 on an AVX2 machine, lane-by-lane masked
    /// loads), so the AVX-512 kernels' tiling and edges are tested wherever the tests run, not only on AVX-512 hardware.
    /// </summary>
    public static TheoryData<SimdPath> EveryPath() => new(Enum.GetValues<SimdPath>());

    /// <summary>Each row of <paramref name="rows"/> on every SIMD path, the path as its last argument.</summary>
    public static IEnumerable<object[]> OnEveryPath(IEnumerable<object[]> rows) =>
        from path in Enum.GetValues<SimdPath>() from row in rows select row.Append(path).ToArray();

    private sealed class SimdScope : IDisposable
    {
        private readonly SimdPath saved = Simd.Current;
        public SimdScope(SimdPath path) => Simd.Current = path;
        public void Dispose() => Simd.Current = saved;
    }
}
