using System;
using System.Diagnostics;

namespace ModelGen.Kernels;

/// <summary>
/// Whether one of a model's entry points (its inference, its training step) shares its kernels with the helper core or keeps
/// to the caller's, chosen per batch size by timing the calls themselves. The host of a 2-vCPU virtual machine moves the two
/// vCPUs apart and back within seconds (a cache line's round trip goes from ~50 to ~330 ns); apart, the models that hand work
/// between the cores often (recurrent and MobileNet training, MobileNet at batch 1) ran up to 1.7x faster on one core, while
/// large products still ran faster on two. So every so often a trial times a few calls on two cores and a few on one, and the calls
/// that follow take the faster. Results never depend on the choice: kernels cut their work by its shape alone.
/// </summary>
/// <remarks>
/// Outside trials a call costs a counter, and now and then a clock read. A trial's calls on the slower
/// setting are its whole cost, and trials thin out while they confirm the choice, down to about 0.5% of the time or one
/// a second, whichever comes first (<see cref="TrialShare"/>). Not thread-safe, like the model that owns it.
/// </remarks>
public sealed class CoreChoice
{
    /// <summary>
    /// Calls timed on each setting per trial, first on two cores, then on one, the fastest of each compared. Not alternating:
    /// a call right after a switch reads what the other core wrote. With alternating trials the GRU's training step stayed
    /// at 1.6 ms in the slow placement, where one core alone took 1.0; in blocks it went to 1.05 within half a second.
    /// </summary>
    private const int TrialCalls = 4;

    /// <summary>
    /// Outside a trial the clock is read, to see whether the next is due, once in this many calls at first, then once in as many
    /// as the last trial's calls took an eighth of the shortest gap (up to <see cref="MostCallsBetweenClocks"/>): a clock read
    /// costs 24 ns, 4% of the residual MLP's call at batch 1.
    /// </summary>
    private const int FirstCallsBetweenClocks = 8, MostCallsBetweenClocks = 256;

    /// <summary>
    /// The time from a trial to the next: 20 ms after a change of choice, doubling while trials confirm it, up to the longest
    /// gap; the longest at once where the other setting lost by a quarter or more. Doubling from 20 ms, the transformer's
    /// training step ran six trials in its first 1.3 s, each with four calls at 6.0 ms on one core where two take 3.4: ~60 ms,
    /// ~5% of that time; now one a second.
    /// </summary>
    private static readonly long ShortestGap = Stopwatch.Frequency / 50, LongestGap = Stopwatch.Frequency;

    /// <summary>
    /// Trials take at most about this share of the time (1/200): the longest gap is 200 times a trial's cost (its calls on
    /// the losing setting, less what they would have taken on the winning one), between 20 ms and a second. A placement lasts
    /// from a fraction of a second to minutes, so a cheap call checks often: the transformer at batch 1, 45 us on two cores
    /// and 66 on one, had kept two cores at 95 us for 0.8 s after the host moved the vCPUs apart, then one core for a second
    /// after they came back, waiting out a gap of a second each time; its trials cost 84 us, so they now come every 20 ms.
    /// </summary>
    private const int TrialShare = 200;

    /// <summary>The batch sizes followed at once: a Fit's full batches and its last partial one, Evaluate's, with room to spare.</summary>
    private readonly Slot[] slots = new Slot[4];

    private int nextSlot, lastSlot;

    /// <summary>Starts a call at <paramref name="batch"/>: the kernels it runs on this thread keep to this core while <see cref="Alone"/> says so. Dispose it when the call ends.</summary>
    public Call Begin(int batch)
    {
        int index = SlotOf(batch);
        ref Slot slot = ref slots[index];
        if (slot.TrialCall < 0 && --slot.CallsToClock <= 0)
        {
            slot.CallsToClock = slot.CallsBetweenClocks;
            long now = Stopwatch.GetTimestamp();
            if (now >= slot.NextTrial) slot.StartTrial(now);
        }
        if (slot.TrialCall < 0) return new Call(this, index, slot.Alone, timed: false);
        return new Call(this, index, alone: slot.TrialCall >= TrialCalls, timed: true);
    }

    /// <summary>Whether calls at <paramref name="batch"/> keep to one core outside trials (for tests and diagnostics).</summary>
    public bool Alone(int batch) => Find(batch) is int index and >= 0 && slots[index].Alone;

    /// <summary>The slot that follows <paramref name="batch"/>, or -1.</summary>
    private int Find(int batch)
    {
        for (int i = 0; i < slots.Length; i++)
        {
            if (slots[i].Batch == batch) return i;
        }
        return -1;
    }

    /// <summary>The slot for <paramref name="batch"/>, the last one used checked first; a new batch size takes the oldest slot.</summary>
    private int SlotOf(int batch)
    {
        if (slots[lastSlot].Batch == batch) return lastSlot;
        int index = Find(batch);
        if (index >= 0) return lastSlot = index;
        index = lastSlot = nextSlot;
        nextSlot = (nextSlot + 1) % slots.Length;
        slots[index] = new Slot(batch, Stopwatch.GetTimestamp());
        return index;
    }

    private void Record(int index, bool alone, long start, long ticks) => slots[index].Record(alone, start, ticks);

    /// <summary>
    /// A trial that finds the helper asleep (after calls on one core) times its calls on two only from this long after its
    /// start: the first wake the helper, which polls again 30-75 us later on the 2-vCPU machine, and a prediction of 5 us
    /// had all four of a trial's calls on two cores before that, each the caller doing both parts: its trials kept it on one
    /// core at 7.7 us where two took 5.2. The calls it does not time are left out of a trial's cost: at most this long on the
    /// slower setting a trial, 0.5% at the shortest gap.
    /// </summary>
    private static readonly long RouseTicks = Stopwatch.Frequency / 10_000;

    private struct Slot(int batch, long now)
    {
        public readonly int Batch = batch;
        /// <summary>The choice outside trials: two cores until a trial finds one faster.</summary>
        public bool Alone;
        /// <summary>The next call's place in the current trial (the first <see cref="TrialCalls"/> on two cores, the rest on one), or -1 outside one.</summary>
        public int TrialCall = -1;
        public int CallsToClock = FirstCallsBetweenClocks, CallsBetweenClocks = FirstCallsBetweenClocks;
        /// <summary>The first trial waits a gap too: a new model's first calls are the JIT's.</summary>
        public long NextTrial = now + ShortestGap, Gap = ShortestGap;
        private long fastestShared, fastestAlone, timedFrom;

        public void StartTrial(long now)
        {
            TrialCall = 0;
            fastestShared = fastestAlone = long.MaxValue;
            timedFrom = Helper.HelperSleeps ? now + RouseTicks : 0;
        }

        public void Record(bool alone, long start, long ticks)
        {
            if (TrialCall < 0) return; // a call begun before a reset of this slot
            if (!alone && start < timedFrom) return; // the helper still waking: the next call is on two cores again
            if (alone) fastestAlone = Math.Min(fastestAlone, ticks);
            else fastestShared = Math.Min(fastestShared, ticks);
            if (++TrialCall < 2 * TrialCalls) return;
            // The other setting must win by 5%: a tie, or noise, keeps the choice and lets the trials thin out.
            bool change = Alone ? fastestShared * 20 < fastestAlone * 19 : fastestAlone * 20 < fastestShared * 19;
            Alone ^= change;
            long chosen = Alone ? fastestAlone : fastestShared, other = Alone ? fastestShared : fastestAlone;
            long longest = Math.Clamp(TrialShare * TrialCalls * Math.Abs(other - chosen), ShortestGap, LongestGap);
            Gap = change ? ShortestGap : other * 4 >= chosen * 5 ? longest : Math.Min(2 * Gap, longest);
            long call = Math.Max(Math.Min(fastestShared, fastestAlone), 1);
            CallsBetweenClocks = (int)Math.Clamp(ShortestGap / 8 / call, 1, MostCallsBetweenClocks);
            NextTrial = Stopwatch.GetTimestamp() + Gap;
            TrialCall = -1;
        }
    }

    /// <summary>One call of the entry point: sets this thread's <see cref="Helper.Alone"/> for its length, and times it in a trial.</summary>
    public readonly struct Call : IDisposable
    {
        private readonly CoreChoice owner;
        private readonly int slot;
        private readonly bool alone, switched;
        private readonly long start;

        internal Call(CoreChoice owner, int slot, bool alone, bool timed)
        {
            (this.owner, this.slot, this.alone) = (owner, slot, alone);
            // Written only when it changes: most calls share, and a thread-static write costs a tenth of the smallest model's call.
            switched = Helper.Alone != alone;
            if (switched) Helper.Alone = alone;
            start = timed ? Stopwatch.GetTimestamp() : 0;
        }

        public void Dispose()
        {
            if (start != 0) owner.Record(slot, alone, start, Stopwatch.GetTimestamp() - start);
            if (switched) Helper.Alone = !alone;
        }
    }
}
