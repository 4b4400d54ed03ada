using System;
using System.Threading;

namespace ModelGen.Kernels;

/// <summary>
/// A second core for large kernels: one persistent helper thread that runs half of a job while the caller runs
/// the other half. No allocation per call (the job is a function pointer and a pointer to the caller's stack);
/// a caller that finds the helper busy (another thread's kernel) simply does all the work itself.
/// </summary>
internal static unsafe class Helper
{
    private static readonly Signal start = new(), done = new();
    private static delegate*<void*, void> job;
    private static void* state;
    private static int busy;
    private static Exception? failure;

    /// <summary>How many threads kernels may use: 2 on a multi-core machine unless MODELGEN_THREADS=1.</summary>
    public static int Threads { get; set; } =
        Environment.ProcessorCount >= 2 && Environment.GetEnvironmentVariable("MODELGEN_THREADS") != "1" ? 2 : 1;

    static Helper()
    {
        var thread = new Thread(Loop) { IsBackground = true, Name = "ModelGen kernel helper" };
        thread.Start();
    }

    /// <summary>
    /// Runs <paramref name="theirs"/> on the helper and <paramref name="mine"/> here, and returns when both are done.
    /// Returns false without running anything when the helper is unavailable; the caller then runs both itself.
    /// </summary>
    public static bool TryRun(delegate*<void*, void> theirs, void* theirState, delegate*<void*, void> mine, void* myState)
    {
        if (Threads < 2 || Interlocked.CompareExchange(ref busy, 1, 0) != 0) return false;
        try
        {
            job = theirs;
            state = theirState;
            failure = null;
            start.Set();
            mine(myState);
            done.Wait();
            if (failure is not null) throw new AggregateException("A kernel failed on the helper thread.", failure);
            return true;
        }
        finally
        {
            Volatile.Write(ref busy, 0);
        }
    }

    private static void Loop()
    {
        while (true)
        {
            start.Wait();
            try { job(state); }
            catch (Exception e) { failure = e; }
            done.Set();
        }
    }

    /// <summary>
    /// An auto-reset event that spins briefly (hand-offs are microseconds apart during a step) and then blocks.
    /// Unlike ManualResetEventSlim it allocates nothing lazily: its lock object exists from the start, so steps stay
    /// allocation-free.
    /// </summary>
    private sealed class Signal
    {
        private readonly object gate = new();
        private volatile bool set;

        public void Set()
        {
            lock (gate)
            {
                set = true;
                Monitor.Pulse(gate);
            }
        }

        public void Wait()
        {
            var spinner = new SpinWait();
            for (int i = 0; i < 2000 && !set; i++) spinner.SpinOnce(sleep1Threshold: -1);
            if (!set)
            {
                lock (gate)
                {
                    while (!set) Monitor.Wait(gate);
                }
            }
            set = false;
        }
    }
}
