using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;

namespace ModelGen.Kernels;

/// <summary>
/// A second core for large kernels: one persistent helper thread that shares a job with its caller, both taking
/// parts of the work from a common counter, so a helper that starts late (a busy or descheduled core) simply takes
/// fewer parts. No allocation per call (the job is a function pointer and a pointer to the caller's stack, posted in a
/// mailbox); a caller that finds the helper busy (another thread's kernel, or a kernel run by the helper itself) does all the work
/// itself. Jobs cut their work by its shape alone, never by the thread count, so results do not depend on who ran a part.
/// </summary>
internal static unsafe class Helper
{
    // A job's life, in the low bits of the mailbox's phase: a caller posts it (Pending); the helper claims it (Running)
    // and reports it (Done). A caller done with all the work before the helper woke withdraws it (Withdrawn) instead of
    // waiting for a thread that may be descheduled. The high bits number the jobs, so a caller knows the Done it sees is
    // its own and never has to write the phase back to idle: each write to the line the helper polls is a transfer.
    private const int Pending = 1, Running = 2, Done = 3, Withdrawn = 0, StateBits = 2, StateMask = 3;

    /// <summary>The workers a job's parts see: the caller (0) and the helper (1); per-thread scratch comes in this many pieces.</summary>
    public const int Workers = 2;

    /// <summary>
    /// What the helper reads, in one cache line of its own: it polls the phase and finds the job, its state and the shared
    /// item counter in the same line, which the caller fills with plain stores and no fence. A cross-core transfer costs
    /// 0.06-0.25 us on the 2-vCPU machine (it varies with the VM's placement), and with the job spread over a signal
    /// object, statics and the caller's stack, the MLP's 784x256 product at batch 1 took 5.0-5.2 us on two cores; 4.3-4.6 now.
    /// </summary>
    private struct Mailbox
    {
        public int Phase;
        public int SleepingHelpers, SleepingCallers;
        public delegate*<void*, void> Job;
        public void* State;
        public Items Items;
        /// <summary>TryShare's work, which the helper runs as worker 1.</summary>
        public delegate*<void*, int, void> Shared;
    }

    private static readonly Mailbox* box = (Mailbox*)AlignedZeroed(128);

    /// <summary>Whether a caller has the mailbox, and its last job's phase, on a line the helper never touches, so taking it stays within this core.</summary>
    private struct Ownership
    {
        public int Taken, Posted;
    }

    private static readonly Ownership* owner = (Ownership*)AlignedZeroed(128);

    /// <summary>
    /// Whether a job posted now would find the helper free: two threads, and the mailbox not taken (this thread is not
    /// inside a job's part, nor another caller inside a job). A hint, read without taking the mailbox: for a choice between
    /// two ways to the same bits, one of which only pays on two cores.
    /// </summary>
    public static bool CanShare => Threads >= 2 && Volatile.Read(ref owner->Taken) == 0;

    private static readonly object gate = new();
    private static Exception? failure;

    /// <summary>
    /// How many threads this thread's kernels may use: 2 on a multi-core machine unless MODELGEN_THREADS=1, and 1 while this
    /// thread runs <see cref="Alone"/>. Setting it sets the process-wide count.
    /// </summary>
    public static int Threads
    {
        get => Alone ? 1 : threads;
        set => threads = value;
    }

    private static int threads = Environment.ProcessorCount >= 2 && Environment.GetEnvironmentVariable("MODELGEN_THREADS") != "1" ? 2 : 1;

    /// <summary>Whether this thread's kernels keep to this thread for now (<see cref="CoreChoice"/>'s choice for a call).</summary>
    [ThreadStatic] public static bool Alone;

    static Helper()
    {
        var thread = new Thread(Loop) { IsBackground = true, Name = "ModelGen kernel helper" };
        thread.Start();
    }

    /// <summary>Two lines aligned to two: the adjacent-line prefetcher moves lines in pairs, so nothing else shares the pair.</summary>
    private static void* AlignedZeroed(int bytes)
    {
        void* memory = NativeMemory.AlignedAlloc((nuint)bytes, (nuint)bytes);
        NativeMemory.Clear(memory, (nuint)bytes);
        return memory;
    }

    /// <summary>
    /// Offers <c>work(state, worker)</c> to the helper (worker 1) and runs it here too (worker 0); both share the work through
    /// whatever the state points to (<see cref="Claims"/> of blocks, the worker picking its end), so the job must cope with the
    /// helper taking part late or not at all. Returns when every part that started has finished; false (nothing run) when
    /// the helper is unavailable.
    /// </summary>
    public static bool TryShare(delegate*<void*, int, void> work, void* workState)
    {
        if (!TryTakeMailbox()) return false;
        try
        {
            box->Shared = work;
            Post(&RunSharedOnHelper, workState);
            work(workState, 0);
        }
        finally
        {
            Collect();
        }
        return true;
    }

    private static void RunSharedOnHelper(void* workState) => box->Shared(workState, 1);

    /// <summary>
    /// Runs <c>body(state, item, worker)</c> for every item in [0, <paramref name="count"/>), items claimed one at a time by
    /// this thread (worker 0) from the front and the helper (worker 1) from the back; the worker number picks per-thread
    /// scratch. Items must be independent. Claiming from opposite ends keeps each core on the same items call after call,
    /// so a layer's weights stay in the cache of the core that reads them. The state is read where it lies: for one that
    /// the items write (claims, a recurrence's steps) or that holds references; one they only read goes by value
    /// (<see cref="For{TState}"/>).
    /// </summary>
    public static void For(int count, delegate*<void*, int, int, void> body, void* state) => For(count, body, state, stateBytes: 0);

    /// <summary>
    /// The <c>For</c> above, for a state the items only read, which the helper then finds in a block of its own
    /// (<see cref="Keep"/>), not in the caller's frame. A frame built afresh at each call is lines the helper must pull from
    /// the caller's core, and the caller must then take back to build its next frames there; a block rewritten only when the
    /// state changes stays in both cores' caches (the MLP's predict at batch 1, fresh processes in turns: 5.20-5.32 ->
    /// 4.90-4.96 us with the pair of layers' state kept alone). <paramref name="state"/> must lie on the stack (a local or a
    /// parameter): where it is read in place (one thread, or too large to keep), nothing pins it.
    /// </summary>
    public static void For<TState>(int count, delegate*<void*, int, int, void> body, in TState state) where TState : unmanaged =>
        For(count, body, Unsafe.AsPointer(ref Unsafe.AsRef(in state)), sizeof(TState));

    [MethodImpl(Compiled.Driver)]
    private static void For(int count, delegate*<void*, int, int, void> body, void* state, int stateBytes)
    {
        if (count < 2 || !TryTakeMailbox())
        {
            var items = new Items(body, state, count);
            RunItems(&items, 0);
            return;
        }
        try
        {
            if (stateBytes > 0) state = Keep(state, stateBytes);
            // Item 0 is this thread's before the job is posted, so it starts without an atomic on the shared line.
            box->Items = new Items(body, state, count, claimedFront: 1);
            Post(&RunItemsOnHelper, &box->Items);
            body(state, 0, 0);
            RunItems(&box->Items, 0);
        }
        finally
        {
            Collect();
        }
    }

    /// <summary>
    /// Items [First, First + Count) of part <paramref name="part"/> of <paramref name="parts"/> equal parts of
    /// <paramref name="count"/>: fixed by the count alone, so an item's part, and with it the order of every sum, is the same
    /// on one core or two.
    /// </summary>
    public static (int First, int Count) PartOf(int part, int parts, int count)
    {
        int share = (count + parts - 1) / parts, first = part * share;
        return (first, Math.Min(share, count - first));
    }

    /// <summary>
    /// Where a job's read-only state is handed to the helper (<see cref="For{TState}"/>): <see cref="kept"/>, rewritten only
    /// where it differs from the last state kept there, so that an unchanged state is read from both cores' caches; a state
    /// larger than the block stays where it lies. Only the mailbox's owner calls it, so no job reads the block meanwhile.
    /// </summary>
    private static void* Keep(void* state, int bytes)
    {
        if (bytes > KeptBytes) return state;
        var source = new ReadOnlySpan<byte>(state, bytes);
        var keptState = new Span<byte>(kept, bytes);
        if (!keptState.SequenceEqual(source)) source.CopyTo(keptState);
        return kept;
    }

    /// <summary>The largest state kept beside the mailbox: eight lines, more than a pair of products' (Gemm.Twice.cs).</summary>
    internal const int KeptBytes = 512;

    private static readonly void* kept = AlignedZeroed(KeptBytes);

    private static bool TryTakeMailbox() => Threads >= 2 && Interlocked.CompareExchange(ref owner->Taken, 1, 0) == 0;

    [MethodImpl(Compiled.Driver)]
    private static void Post(delegate*<void*, void> work, void* workState)
    {
        box->Job = work;
        box->State = workState;
        int posted = owner->Posted = (owner->Posted & ~StateMask) + (1 << StateBits) | Pending;
        // A release store, no fence: the caller goes straight to its own part. Should the helper fall asleep just as this
        // reads SleepingHelpers, it misses this one job, which the caller then withdraws and runs alone; the helper's flag
        // is visible by the next post, which wakes it.
        Volatile.Write(ref box->Phase, posted);
        if (Volatile.Read(ref box->SleepingHelpers) != 0) WakeAll();
    }

    /// <summary>
    /// Withdraws the job if the helper never started it, else waits for it (its parts use state in the caller's frame). Every
    /// shared job ends here, each core having claimed toward the middle (<see cref="ForRanges"/> then says where its own ended).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static void Collect()
    {
        lastEndedAtEnds = false;
        try
        {
            // Read before trying to withdraw: an exchange takes the line from the helper even when it fails.
            int posted = owner->Posted;
            if (Volatile.Read(ref box->Phase) == posted &&
                Interlocked.CompareExchange(ref box->Phase, posted ^ Pending ^ Withdrawn, posted) == posted) return;
            Await(posted ^ Pending ^ Done, -1, ref box->SleepingCallers);
            var helperFailure = failure;
            if (helperFailure is null) return;
            failure = null;
            throw new AggregateException("A kernel failed on the helper thread.", helperFailure);
        }
        finally
        {
            Volatile.Write(ref owner->Taken, 0);
        }
    }

    [MethodImpl(Compiled.Driver)]
    private static void Loop()
    {
        while (true)
        {
            int job = Await(Pending, StateMask, ref box->SleepingHelpers);
            if (Interlocked.CompareExchange(ref box->Phase, job ^ Pending ^ Running, job) != job) continue; // withdrawn: the caller did it all
            try { box->Job(box->State); }
            catch (Exception e) { failure = e; }
            // A full fence before reading SleepingCallers: a caller asleep on Done must be seen here, or it never wakes.
            Interlocked.Exchange(ref box->Phase, job ^ Pending ^ Done);
            if (Volatile.Read(ref box->SleepingCallers) != 0) WakeAll();
        }
    }

    /// <summary>
    /// Waits until the mailbox's phase, under <paramref name="mask"/> (the state alone, or the whole phase with the job's
    /// number), is <paramref name="phase"/>, and returns it. Polls, a pause between reads, for about a millisecond (hand-offs
    /// during a step are microseconds apart), then sleeps, counted in <paramref name="sleepers"/>. From
    /// <see cref="YieldAfter"/> on, each clock read also yields the core.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static int Await(int phase, int mask, ref int sleepers)
    {
        int seen;
        long giveUp = 0, yieldFrom = 0;
        for (int polls = 0; ((seen = Volatile.Read(ref box->Phase)) & mask) != phase; polls++)
        {
            if (polls % 64 == 0)
            {
                long now = Stopwatch.GetTimestamp();
                if (giveUp == 0) (giveUp, yieldFrom) = (now + Stopwatch.Frequency / 1000, now + YieldAfter);
                else if (now > giveUp) break;
                else if (now > yieldFrom) Thread.Yield();
            }
            Thread.SpinWait(1);
        }
        if ((seen & mask) == phase) return seen;
        lock (gate)
        {
            Interlocked.Increment(ref sleepers);
            while (((seen = Volatile.Read(ref box->Phase)) & mask) != phase) Monitor.Wait(gate);
            Interlocked.Decrement(ref sleepers);
        }
        return seen;
    }

    /// <summary>
    /// How long a wait polls before it also yields the core at each clock read: a thread woken from sleep may be placed on
    /// the core of the thread that woke it, and would wait there until the poll gives up a millisecond later (a helper woken
    /// for a 5 us prediction on two cores held each call of four to 1.0-1.1 ms).
    /// </summary>
    private static readonly long YieldAfter = Stopwatch.Frequency / 20_000;

    /// <summary>Whether the helper sleeps: the next job posted wakes it, which takes tens of microseconds before it polls again.</summary>
    internal static bool HelperSleeps => Volatile.Read(ref box->SleepingHelpers) != 0;

    private static void WakeAll()
    {
        lock (gate) Monitor.PulseAll(gate);
    }

    private struct Items(delegate*<void*, int, int, void> body, void* state, int count, int claimedFront = 0)
    {
        public readonly delegate*<void*, int, int, void> Body = body;
        public readonly void* State = state;
        public Claims Claims = new(count, claimedFront);
    }

    [MethodImpl(Compiled.Driver)]
    private static void RunItems(Items* items, int worker)
    {
        // After the last item no claim is tried: it would take the mailbox's line from the other core, which polls it for
        // the job's end, only to find nothing left, before the helper's Done takes it again (the MLP's pair of layers at
        // batch 1, whose helper ends last: 4.42-4.53 -> 4.23-4.34 us, three processes each, in turns).
        bool last = false;
        while (!last && items->Claims.TryClaim(fromBack: worker == 1, out int item, out last)) items->Body(items->State, item, worker);
    }

    private static void RunItemsOnHelper(void* items) => RunItems((Items*)items, 1);

    /// <summary>
    /// Runs <paramref name="work"/> over items [0, <paramref name="count"/>) (samples, rows) in equal parts of at most about
    /// <see cref="PartFloats"/> floats, shared with the helper when the work touches more than <paramref name="shareAbove"/>
    /// floats (then in two parts at least). For memory-bound kernels: a second core brings its own caches and its own stream
    /// of misses. The parts do not change what any item computes. They run on a copy of the work, handed over by value
    /// (<see cref="For{TState}"/>): a work only reads its fields.
    /// <para>
    /// Each core keeps its half of the parts, and starts it where the shared loop before ended (<see cref="PartAt"/>): a
    /// layer's pass over the rows the pass before just wrote or read finds the last of them still in that core's L2 (2 MB on
    /// the Intel Xeon, where a ResNet block's tensor at batch 32 is 4 MB), where starting at the far end found them just
    /// evicted. BatchNorm over 32,768 rows of 32 right after the convolution that wrote them, two cores, medians of 250
    /// calls in turns in one process: training forward 299 -> 259 us, backward 439 -> 391 us. Whole steps, fresh processes
    /// in turns: resnet train step b32 2-3% faster (medians 16.19 -> 15.93 ms against the build before, five rounds, four
    /// faster; 15.97 -> 15.41 with the order switched in one build, six rounds, five faster), mobilenet train step b32 1-4%
    /// (2.01 -> 1.99 ms, four rounds; 2.11 -> 2.03, three); the predicts and the other steps even within the noise.
    /// </para>
    /// </summary>
    public static void ForRanges<TWork>(ref TWork work, int count, long floatsPerItem, long shareAbove = PartFloats) where TWork : unmanaged, IRanges
    {
        int perPart = RangeSize(count, floatsPerItem, shareAbove);
        if (perPart >= count)
        {
            if (count > 0) work.Run(0, count);
            return;
        }
        bool outward = !lastEndedAtEnds;
        int parts = (count + perPart - 1) / perPart;
        var ranges = new Ranges<TWork> { Work = work, Count = count, PerPart = perPart, Parts = parts, Outward = outward };
        For(parts, &RunRange<TWork>, in ranges);
        lastEndedAtEnds = outward;
    }

    /// <summary>
    /// Whether the last shared loop ended at the ends of its items (a <see cref="ForRanges"/> pass run outward from the
    /// middle), not in the middle (every other: the caller claims from the front, the helper from the back). A guess about
    /// the cores' caches, read and written without a lock: it decides when a part runs, never what it computes.
    /// </summary>
    private static bool lastEndedAtEnds;

    /// <summary>
    /// The part that claim <paramref name="claim"/> of <paramref name="parts"/> runs (the caller claims from the front, the
    /// helper from the back): the claim itself, each core working inward from its end of the items; or, run
    /// <paramref name="outward"/>, the caller's half from the middle down to the first part and the helper's from the middle
    /// up to the last. Either way each core keeps the same half (the spatial kernels' rows of a small image stay on the
    /// core that wrote them), and a core that runs out takes the parts the other would have reached last.
    /// </summary>
    internal static int PartAt(int claim, int parts, bool outward)
    {
        if (!outward) return claim;
        int middle = parts / 2;
        return claim < middle ? middle - 1 - claim : parts - 1 - claim + middle;
    }

    /// <summary>
    /// The most items <see cref="ForRanges"/> runs at once for these arguments: all of them where it does not share them,
    /// otherwise the items of one of an even number of parts (those of <see cref="PartFloats"/>, one fewer where they come
    /// out odd). The two cores claim parts one at a time, so an odd number left one core to wait out the last part alone:
    /// 14x14x32 to 32 filters at batch 32 on AVX2 (direct, seven parts) 537-547 -> 475-481 us, 14x14x64 to 64 on AVX-512
    /// (thirteen) 1167-1215 -> 1123-1160. One part more instead of one fewer measured the same there but slowed the
    /// autoencoder's training step 1.2% (a part through patches packs the kernel again); parts that differ by one item
    /// instead of equal ones with a short last one, 2-3% (not traced; its convolutions' parts of 47 rows of 14 pixels end
    /// off the product's twelve-row tiles, those of 48 do not).
    /// </summary>
    public static int RangeSize(int count, long floatsPerItem, long shareAbove = PartFloats)
    {
        long floats = count * Math.Max(floatsPerItem, 1);
        if (count < 2 || floats <= shareAbove) return count;
        long parts = (floats + PartFloats - 1) / PartFloats;
        parts = Math.Max(parts - (parts & 1), 2);
        return (int)((count + parts - 1) / parts);
    }

    /// <summary>Floats a part of <see cref="ForRanges"/> touches: 256 KB, tens of microseconds, against a hand-off of one or two.</summary>
    private const long PartFloats = 64 * 1024;

    /// <summary>
    /// The work above which the spatial kernels (convolution, directly or through patches, and max pooling) split even one
    /// image between the cores, by output rows: 32 KB, a few microseconds. Both halves fall where the layer before split its
    /// rows (the caller takes the top, the helper the bottom), so each core reads mostly the rows it wrote. The 28x28 CNN's
    /// predict at batch 1 went from 55 to 48 us, most of it cache lines that no longer cross between the cores (the pools
    /// ran on one core before).
    /// </summary>
    public const long SpatialShareAbove = 8 * 1024;

    /// <summary>A copy of the work and its parts: a job's state, handed over by value.</summary>
    private struct Ranges<TWork> where TWork : unmanaged, IRanges
    {
        public TWork Work;
        public int Count, PerPart, Parts;
        public bool Outward;
    }

    private static void RunRange<TWork>(void* state, int claim, int worker) where TWork : unmanaged, IRanges
    {
        var ranges = (Ranges<TWork>*)state;
        int first = PartAt(claim, ranges->Parts, ranges->Outward) * ranges->PerPart;
        ranges->Work.Run(first, Math.Min(ranges->PerPart, ranges->Count - first));
    }
}

/// <summary>A kernel's work over independent items (samples, rows), as pointers, runnable a range at a time on either thread.</summary>
internal interface IRanges
{
    void Run(int first, int count);
}

/// <summary>
/// Ranges whose kernel is generic over the SIMD width: their <see cref="IRanges.Run"/> is <c>Simd.RunRanges(this, first,
/// count)</c>, which runs <see cref="Run{TLanes, TVector}"/> on the path the kernels use now.
/// </summary>
internal interface IVectorRanges : IRanges
{
    void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct;
}

/// <summary>
/// Items [0, count) claimed one at a time from either end: the caller takes from the front, the helper from the back, so each
/// core gets the same items call after call (and keeps their data in its cache) until the two meet.
/// </summary>
internal struct Claims(int count, int claimedFront = 0)
{
    /// <summary>How many items there are.</summary>
    public readonly int Count = count;

    /// <summary>The unclaimed items [front, back) in one word, front in the low half, so a claim from either end is one exchange.</summary>
    private long unclaimed = (long)count << 32 | (uint)claimedFront;

    /// <summary>Claims an item from one end; <paramref name="last"/> says whether it was the last one unclaimed.</summary>
    [MethodImpl(Compiled.Driver)]
    public bool TryClaim(bool fromBack, out int item, out bool last)
    {
        while (true)
        {
            long seen = Volatile.Read(ref unclaimed);
            int front = (int)seen, back = (int)(seen >> 32);
            last = back - front <= 1;
            if (front >= back)
            {
                item = -1;
                return false;
            }
            item = fromBack ? back - 1 : front;
            long claimed = fromBack ? seen - (1L << 32) : seen + 1;
            if (Interlocked.CompareExchange(ref unclaimed, claimed, seen) == seen) return true;
        }
    }
}
