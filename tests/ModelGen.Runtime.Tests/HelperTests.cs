using System.Diagnostics;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// The helper thread's hand-off: every item runs exactly once, whether the helper is spinning (jobs back to back) or has
/// gone to sleep (a pause longer than its spin), a sleeping helper is woken to take part (a lost wake-up would leave all
/// the work to the caller without failing anything else), a caller that fell asleep waiting is woken, and a failure on
/// the helper reaches the caller. Each job runs with a deadline, so a lost wake-up fails the test instead of hanging it.
/// </summary>
[Collection(KernelSettings.Name)]
public unsafe class HelperTests
{
    private const int Items = 16;

    private struct Record
    {
        public fixed int Runs[Items];
        public fixed int Workers[Items];
        public int HelperMicroseconds, CallerMicroseconds;
        public bool HelperThrows;
        /// <summary>The caller's first item lasts until the helper has run an item (or 2 s pass), however late the OS schedules it.</summary>
        public bool CallerWaitsForHelper;
    }

    private static void Work(void* state, int item, int worker)
    {
        var record = (Record*)state;
        Interlocked.Increment(ref record->Runs[item]);
        record->Workers[item] = worker;
        if (worker == 1 && record->HelperThrows) throw new InvalidOperationException("item failed on the helper");
        var clock = Stopwatch.StartNew();
        int microseconds = worker == 1 ? record->HelperMicroseconds : record->CallerMicroseconds;
        while (clock.Elapsed.TotalMicroseconds < microseconds) { }
        while (worker == 0 && item == 0 && record->CallerWaitsForHelper && !HelperRan(record) && clock.Elapsed.TotalSeconds < 2) { }
    }

    private static bool HelperRan(Record* record)
    {
        for (int i = 0; i < Items; i++) if (Volatile.Read(ref record->Workers[i]) == 1) return true;
        return false;
    }

    /// <summary>A shared job: both threads claim the items themselves, each from its end (a GEMM's blocks of rows).</summary>
    private struct SharedItems
    {
        public Record* Record;
        public Claims Items;
    }

    private static void ClaimAndWork(void* state, int worker)
    {
        var shared = (SharedItems*)state;
        while (shared->Items.TryClaim(fromBack: worker == 1, out int item, out _)) Work(shared->Record, item, worker);
    }

    /// <summary>
    /// One job of <see cref="Items"/> items, through <see cref="Helper.For"/> or, <paramref name="shared"/>, through
    /// <see cref="Helper.TryShare"/>, on a thread of its own so that a hang fails within the deadline.
    /// </summary>
    private static Record Run(Record record, bool shared = false)
    {
        var job = Task.Run(() =>
        {
            var running = record;
            if (shared)
            {
                var items = new SharedItems { Record = &running, Items = new Claims(Items) };
                if (!Helper.TryShare(&ClaimAndWork, &items)) ClaimAndWork(&items, 0);
            }
            else Helper.For(Items, &Work, &running);
            return running;
        });
        Assert.True(job.Wait(TimeSpan.FromSeconds(20)), "the job did not finish: a lost wake-up");
        return job.Result;
    }

    /// <summary>
    /// Items long enough for a spinning helper to take some; <paramref name="waitForHelper"/>, the caller's first item also
    /// waits for the helper, so a sleeping helper that is woken takes part even when other processes hold the cores for
    /// longer than the job (the test suites run side by side), while one whose wake-up was lost still takes none.
    /// </summary>
    private static bool RunOnce(bool waitForHelper = false)
    {
        var record = Run(new Record { HelperMicroseconds = 200, CallerMicroseconds = 200, CallerWaitsForHelper = waitForHelper });
        bool helped = false;
        for (int i = 0; i < Items; i++)
        {
            Assert.Equal(1, record.Runs[i]);
            helped |= record.Workers[i] == 1;
        }
        return helped;
    }

    [Fact]
    public void Every_item_runs_once_and_a_sleeping_helper_wakes_to_share()
    {
        KernelSettings.OnThreads(2, () =>
        {
            for (int i = 0; i < 200; i++) RunOnce(); // back to back: the helper spins between jobs
            int helpedAfterSleep = 0;
            for (int i = 0; i < 5; i++)
            {
                Thread.Sleep(100); // past the spin: the helper blocks
                if (RunOnce(waitForHelper: true)) helpedAfterSleep++;
            }
            if (Environment.ProcessorCount >= 2) Assert.True(helpedAfterSleep >= 3, $"the helper took part in {helpedAfterSleep} of 5 jobs after sleeping");
        });
    }

    /// <summary>Which range of <see cref="Helper.ForRanges"/> covered each item: the length of the range that starts there.</summary>
    private struct RangeRecord
    {
        public fixed int CountAt[128];
        public fixed int Runs[128];
        /// <summary>The first item of the first range the thread <see cref="CallerThread"/> ran (-1: none yet).</summary>
        public int CallerThread, CallerFirst;
    }

    private readonly struct RecordedRanges(RangeRecord* record) : IRanges
    {
        public void Run(int first, int count)
        {
            if (record->CallerFirst < 0 && Environment.CurrentManagedThreadId == record->CallerThread) record->CallerFirst = first;
            record->CountAt[first] = count;
            for (int item = first; item < first + count; item++) Interlocked.Increment(ref record->Runs[item]);
        }
    }

    /// <summary>
    /// ForRanges cuts by the work's size alone: all on the caller up to the threshold, then an even number of equal parts
    /// (about 256 KB each), the same on one thread or two. The spatial kernels rely on the two halves of a small image.
    /// </summary>
    [Theory]
    [InlineData(13, 500, Helper.SpatialShareAbove, new[] { 13 })]             // 6.5K floats: not worth a hand-off
    [InlineData(13, 1000, Helper.SpatialShareAbove, new[] { 7, 6 })]          // a small image's output rows: two halves
    [InlineData(13, 1000, 64 * 1024, new[] { 13 })]                           // the same work below the default threshold
    [InlineData(100, 3000, 64 * 1024, new[] { 25, 25, 25, 25 })]              // 300K floats: five parts' worth, cut in four
    [InlineData(128, 2048, 64 * 1024, new[] { 32, 32, 32, 32 })]              // 256K floats: four parts
    public void Ranges_are_cut_by_the_work_alone(int count, long floatsPerItem, long shareAbove, int[] expected)
    {
        foreach (int threads in new[] { 1, 2 })
        {
            var record = new RangeRecord();
            var work = new RecordedRanges(&record);
            int saved = Helper.Threads;
            Helper.Threads = threads;
            try { Helper.ForRanges(ref work, count, floatsPerItem, shareAbove); }
            finally { Helper.Threads = saved; }
            var parts = new List<int>();
            for (int first = 0; first < count; first += record.CountAt[first])
            {
                Assert.True(record.CountAt[first] > 0, $"{threads} threads: no range starts at item {first}");
                parts.Add(record.CountAt[first]);
            }
            Assert.Equal(expected, parts);
            // What kernels size a part's scratch by (an inference convolution's patch rows): the largest range, exactly.
            Assert.Equal(parts.Max(), Helper.RangeSize(count, floatsPerItem, shareAbove));
            for (int item = 0; item < count; item++) Assert.Equal(1, record.Runs[item]);
        }
    }

    /// <summary>
    /// Outward, the caller's claims (from the front) run its half of the parts from the middle down and the helper's (from
    /// the back) its half from the middle up; inward, each claim is its own part. Every part once either way.
    /// </summary>
    [Theory, InlineData(1), InlineData(2), InlineData(3), InlineData(4), InlineData(7), InlineData(8)]
    public void Outward_the_caller_starts_at_the_middle_and_each_core_keeps_its_half(int parts)
    {
        var claims = Enumerable.Range(0, parts).ToArray();
        Assert.Equal(claims, claims.Select(claim => Helper.PartAt(claim, parts, outward: false)));
        var outward = claims.Select(claim => Helper.PartAt(claim, parts, outward: true)).ToArray();
        Assert.Equal(claims, outward.Order());
        int middle = parts / 2;
        Assert.Equal(Enumerable.Range(0, middle).Reverse(), outward.Take(middle));
        Assert.Equal(Enumerable.Range(middle, parts - middle), outward.Skip(middle).Reverse());
    }

    /// <summary>
    /// A ForRanges pass starts where the shared loop before it ended: after any other (each core claimed toward the middle)
    /// the caller's first range is the last of its half; after such a pass (ended at the ends), the first. 128 items in
    /// four parts of 32 (Ranges_are_cut_by_the_work_alone): the caller's half is items 0 to 63.
    /// </summary>
    [Fact]
    public void A_pass_starts_where_the_shared_loop_before_it_ended()
    {
        KernelSettings.OnThreads(2, () =>
        {
            var items = new Record();
            Helper.For(Items, &Work, &items);
            Assert.Equal(32, CallerFirstRange());
            Assert.Equal(0, CallerFirstRange());
            Assert.Equal(32, CallerFirstRange());
            Run(new Record());
            Assert.Equal(32, CallerFirstRange());
        });

        static int CallerFirstRange()
        {
            var record = new RangeRecord { CallerThread = Environment.CurrentManagedThreadId, CallerFirst = -1 };
            var work = new RecordedRanges(&record);
            Helper.ForRanges(ref work, 128, floatsPerItem: 2048, shareAbove: 64 * 1024);
            for (int item = 0; item < 128; item++) Assert.Equal(1, record.Runs[item]);
            return record.CallerFirst;
        }
    }

    [Theory, InlineData(false), InlineData(true)]
    public void The_caller_claims_from_the_front_and_the_helper_from_the_back(bool throughTryShare)
    {
        KernelSettings.OnThreads(2, () =>
        {
            int shared = 0;
            for (int i = 0; i < 20; i++)
            {
                var record = Run(new Record { HelperMicroseconds = 200, CallerMicroseconds = 200 }, throughTryShare);
                for (int item = 0; item < Items; item++) Assert.Equal(1, record.Runs[item]);
                int firstOfHelper = Items;
                while (firstOfHelper > 0 && record.Workers[firstOfHelper - 1] == 1) firstOfHelper--;
                for (int item = 0; item < firstOfHelper; item++) Assert.Equal(0, record.Workers[item]);
                if (firstOfHelper < Items) shared++;
            }
            if (Environment.ProcessorCount >= 2) Assert.True(shared > 0, "the helper took part in none of 20 jobs");
        });
    }

    /// <summary>
    /// A claim says whether it took the last item left, so a worker need not claim again (RunItems): a worker that stopped
    /// one item early would leave it to the other, every item still running once, so only the claims themselves show it.
    /// </summary>
    [Theory]
    [InlineData(1, 0, new[] { false }, new[] { 0 }, new[] { true })]
    [InlineData(2, 1, new[] { true }, new[] { 1 }, new[] { true })]                       // For's job of two: item 0 the caller's at the post
    [InlineData(3, 0, new[] { false, true, false }, new[] { 0, 2, 1 }, new[] { false, false, true })]
    [InlineData(4, 1, new[] { true, false, true }, new[] { 3, 1, 2 }, new[] { false, false, true })]
    public void A_claim_says_whether_it_took_the_last_item(int count, int claimedFront, bool[] fromBack, int[] items, bool[] lasts)
    {
        var claims = new Claims(count, claimedFront);
        for (int i = 0; i < fromBack.Length; i++)
        {
            Assert.True(claims.TryClaim(fromBack[i], out int item, out bool last));
            Assert.Equal((items[i], lasts[i]), (item, last));
        }
        Assert.False(claims.TryClaim(fromBack: false, out _, out bool none));
        Assert.False(claims.TryClaim(fromBack: true, out _, out _));
        Assert.True(none);
    }

    [Fact]
    public void A_caller_asleep_on_a_long_helper_item_is_woken()
    {
        if (Environment.ProcessorCount < 2) return; // no helper takes part on one core
        KernelSettings.OnThreads(2, () =>
        {
            // The helper's item takes 20 ms, far past the caller's millisecond of spinning once its own 50 us items are done.
            // Until the helper takes part: a core busy with another process can keep it from a few jobs in a row (5 attempts
            // missed about once in 30 runs of this class). Every attempt checks that each item ran once.
            int waited = 0;
            for (int attempt = 0; attempt < 50 && waited == 0; attempt++)
            {
                var record = Run(new Record { HelperMicroseconds = 20_000, CallerMicroseconds = 50 });
                for (int i = 0; i < Items; i++) Assert.Equal(1, record.Runs[i]);
                if (record.Workers[Items - 1] == 1) waited++;
            }
            Assert.True(waited > 0, "the helper took part in none of 50 jobs, so no caller waited for it");
        });
    }

    [Fact]
    public void A_failure_on_the_helper_reaches_the_caller_and_the_helper_goes_on()
    {
        if (Environment.ProcessorCount < 2) return;
        KernelSettings.OnThreads(2, () =>
        {
            bool failed = false;
            for (int attempt = 0; attempt < 20 && !failed; attempt++)
            {
                try { Run(new Record { HelperThrows = true, CallerMicroseconds = 500 }); }
                catch (AggregateException e) when (e.Flatten().InnerExceptions.Any(inner => inner is InvalidOperationException))
                {
                    failed = true;
                }
            }
            Assert.True(failed, "the helper took no item in 20 jobs, or its failure was lost");
            int helped = 0;
            for (int i = 0; i < 20; i++) if (RunOnce()) helped++;
            Assert.True(helped > 0, "after a failure the helper took part in none of 20 jobs");
        });
    }

    [Fact]
    public void The_helper_can_share_only_on_two_threads_outside_a_job()
    {
        KernelSettings.OnThreads(2, () =>
        {
            Assert.True(Helper.CanShare);
            var state = new SeenInJob();
            Helper.For(2, &SeeWhetherItCanShare, &state);
            Assert.False(state.Item0 || state.Item1, "inside a job's parts the mailbox is taken: nothing can be shared");
            Assert.True(Helper.CanShare, "the mailbox is free again after the job");
        });
        KernelSettings.OnThreads(1, () => Assert.False(Helper.CanShare));
    }

    private struct SeenInJob
    {
        public bool Item0, Item1;
    }

    private static void SeeWhetherItCanShare(void* state, int item, int worker)
    {
        var seen = (SeenInJob*)state;
        if (item == 0) seen->Item0 = Helper.CanShare;
        else seen->Item1 = Helper.CanShare;
    }

    /// <summary>What the items of a job passed by value see: its stamp, written where <see cref="Seen"/> points, one int an item.</summary>
    private readonly struct Stamped(int* seen, int* workers, int stamp)
    {
        public readonly int* Seen = seen, Workers = workers;
        public readonly int Stamp = stamp;
    }

    /// <summary>A state too large for the block beside the mailbox, so it is read where it lies.</summary>
    private struct LargeStamped
    {
        public Stamped Stamped;
        public fixed byte Padding[Helper.KeptBytes];
    }

    private static void SeeStamp(void* state, int item, int worker)
    {
        var stamped = (Stamped*)state;
        stamped->Seen[item] = stamped->Stamp;
        stamped->Workers[item] = worker;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalMicroseconds < 20) { } // long enough for the helper to take some
    }

    [Fact]
    public void Items_of_a_job_passed_by_value_see_that_jobs_state_on_either_thread()
    {
        KernelSettings.OnThreads(2, () =>
        {
            int* seen = stackalloc int[Items], workers = stackalloc int[Items];
            int helped = 0;
            // Stamps change from job to job, and jobs of a small state alternate with jobs of one kept where it lies: a kept
            // block not rewritten when the state changes would show the last job's stamp.
            for (int stamp = 1; stamp <= 200; stamp++)
            {
                var stamped = new Stamped(seen, workers, stamp);
                if (stamp % 3 == 0) Helper.For(Items, &SeeStamp, new LargeStamped { Stamped = stamped });
                else Helper.For(Items, &SeeStamp, stamped);
                bool helper = false;
                for (int item = 0; item < Items; item++)
                {
                    Assert.Equal(stamp, seen[item]);
                    helper |= workers[item] == 1;
                }
                if (helper) helped++;
            }
            if (Environment.ProcessorCount >= 2) Assert.True(helped > 0, "the helper took part in none of 200 jobs");
        });
    }
}
