using System;
using System.Threading;

namespace ModelGen.Kernels;

/// <summary>
/// A second core for large kernels: one persistent helper thread that shares a job with its caller, both taking
/// parts of the work from a common counter, so a helper that starts late (a busy or descheduled core) simply takes
/// fewer parts. No allocation per call (the job is a function pointer and a pointer to the caller's stack); a
/// caller that finds the helper busy (another thread's kernel, or a kernel run by the helper itself) does all the work
/// itself. Jobs cut their work by its shape alone, never by the thread count, so results do not depend on who ran a part.
/// </summary>
internal static unsafe class Helper
{
    private static readonly Signal start = new(), done = new();
    private static delegate*<void*, void> job;
    private static void* state;
    private static int busy;
    private static Exception? failure;

    // A job's life: the caller posts it (Pending); the helper claims it (Running) or the caller, done with all the work
    // before the helper woke, withdraws it (Withdrawn) and returns without waiting for a thread that may be descheduled.
    private const int Idle = 0, Pending = 1, Running = 2, Withdrawn = 3;
    private static int phase;

    /// <summary>How many threads kernels may use: 2 on a multi-core machine unless MODELGEN_THREADS=1.</summary>
    public static int Threads { get; set; } =
        Environment.ProcessorCount >= 2 && Environment.GetEnvironmentVariable("MODELGEN_THREADS") != "1" ? 2 : 1;

    static Helper()
    {
        var thread = new Thread(Loop) { IsBackground = true, Name = "ModelGen kernel helper" };
        thread.Start();
    }

    /// <summary>
    /// Offers <paramref name="work"/> to the helper and runs it here too; both share the work through whatever the state
    /// points to (a counter of blocks), so the job must cope with the helper taking part late or not at all. Returns
    /// when every part that started has finished; false (nothing run) when the helper is unavailable.
    /// </summary>
    public static bool TryShare(delegate*<void*, void> work, void* workState)
    {
        if (Threads < 2 || Interlocked.CompareExchange(ref busy, 1, 0) != 0) return false;
        try
        {
            job = work;
            state = workState;
            failure = null;
            Volatile.Write(ref phase, Pending);
            start.Set();
            work(workState);
            // Withdrawing fails once the helper has claimed the job, whether it is still running or already finished:
            // either way its done signal must be consumed here, or the next job would see it stale.
            if (Interlocked.CompareExchange(ref phase, Withdrawn, Pending) != Pending)
            {
                done.Wait();
                if (failure is not null) throw new AggregateException("A kernel failed on the helper thread.", failure);
            }
            return true;
        }
        finally
        {
            Volatile.Write(ref busy, 0);
        }
    }

    /// <summary>
    /// Runs <c>body(state, item, worker)</c> for every item in [0, <paramref name="count"/>), items claimed one at a time by
    /// this thread (worker 0) and the helper (worker 1); the worker number picks per-thread scratch. Items must be independent.
    /// </summary>
    public static void For(int count, delegate*<void*, int, int, void> body, void* state)
    {
        var items = new Items(body, state, count, Environment.CurrentManagedThreadId);
        if (count < 2 || !TryShare(&RunItems, &items)) RunItems(&items);
    }

    private struct Items(delegate*<void*, int, int, void> body, void* state, int count, int caller)
    {
        public readonly delegate*<void*, int, int, void> Body = body;
        public readonly void* State = state;
        public readonly int Count = count, Caller = caller;
        public int Next;
    }

    private static void RunItems(void* state)
    {
        var items = (Items*)state;
        int worker = Environment.CurrentManagedThreadId == items->Caller ? 0 : 1;
        int item;
        while ((item = Interlocked.Increment(ref items->Next) - 1) < items->Count) items->Body(items->State, item, worker);
    }

    /// <summary>
    /// Runs <paramref name="work"/> over items [0, <paramref name="count"/>) (samples, rows) in parts of about
    /// <see cref="PartFloats"/> floats, shared with the helper when there are two parts or more. For memory-bound kernels:
    /// a second core brings its own caches and its own stream of misses. The parts do not change what any item computes.
    /// </summary>
    public static void ForRanges<TWork>(ref TWork work, int count, long floatsPerItem) where TWork : unmanaged, IRanges
    {
        int perPart = (int)Math.Clamp(PartFloats / Math.Max(floatsPerItem, 1), 1, Math.Max(count, 1));
        int parts = (count + perPart - 1) / perPart;
        if (parts < 2)
        {
            if (count > 0) work.Run(0, count);
            return;
        }
        var ranges = new Ranges<TWork>((TWork*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref work), count, perPart);
        For(parts, &RunRange<TWork>, &ranges);
    }

    /// <summary>Floats a part of <see cref="ForRanges"/> touches: 256 KB, tens of microseconds, against a hand-off of one or two.</summary>
    private const long PartFloats = 64 * 1024;

    private readonly struct Ranges<TWork>(TWork* work, int count, int perPart) where TWork : unmanaged, IRanges
    {
        public readonly TWork* Work = work;
        public readonly int Count = count, PerPart = perPart;
    }

    private static void RunRange<TWork>(void* state, int part, int worker) where TWork : unmanaged, IRanges
    {
        var ranges = (Ranges<TWork>*)state;
        int first = part * ranges->PerPart;
        ranges->Work->Run(first, Math.Min(ranges->PerPart, ranges->Count - first));
    }

    private static void Loop()
    {
        while (true)
        {
            start.Wait();
            if (Interlocked.CompareExchange(ref phase, Running, Pending) != Pending) continue; // withdrawn: the caller did it all
            try { job(state); }
            catch (Exception e) { failure = e; }
            Volatile.Write(ref phase, Idle);
            done.Set();
        }
    }

    /// <summary>
    /// An auto-reset event that spins briefly (hand-offs are microseconds apart during a step) and then blocks.
    /// Setting it takes no lock unless a waiter has gone to sleep: a lock and a pulse on every hand-off cost ~0.4 us of
    /// a batch-1 prediction's ~1 us of sharing. Unlike ManualResetEventSlim it allocates nothing lazily: its lock object
    /// exists from the start, so steps stay allocation-free.
    /// </summary>
    private sealed class Signal
    {
        private readonly object gate = new();
        private int set, sleepers;

        public void Set()
        {
            // Both sides write their flag with a full fence before reading the other's (set here, sleepers in Wait),
            // so either the waiter sees the signal before sleeping or this sees the sleeper and wakes it.
            Interlocked.Exchange(ref set, 1);
            if (Volatile.Read(ref sleepers) == 0) return;
            lock (gate) Monitor.Pulse(gate);
        }

        public void Wait()
        {
            var spinner = new SpinWait();
            for (int i = 0; i < 2000 && Volatile.Read(ref set) == 0; i++) spinner.SpinOnce(sleep1Threshold: -1);
            if (Volatile.Read(ref set) == 0)
            {
                lock (gate)
                {
                    Interlocked.Increment(ref sleepers);
                    while (Volatile.Read(ref set) == 0) Monitor.Wait(gate);
                    Interlocked.Decrement(ref sleepers);
                }
            }
            Volatile.Write(ref set, 0);
        }
    }
}

/// <summary>A kernel's work over independent items (samples, rows), as pointers, runnable a range at a time on either thread.</summary>
internal interface IRanges
{
    void Run(int first, int count);
}
