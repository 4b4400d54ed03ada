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
}
