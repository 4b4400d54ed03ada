using System.Diagnostics;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// The helper thread's hand-off: every item runs exactly once, whether the helper is spinning (jobs back to back) or has
/// gone to sleep (a pause longer than its spin), and a sleeping helper is woken to take part (a lost wake-up would leave
/// all the work to the caller without failing anything else).
/// </summary>
[Collection(KernelSettings.Name)]
public unsafe class HelperTests
{
    private const int Items = 16;

    private struct Record
    {
        public fixed int Runs[Items];
        public fixed int Workers[Items];
    }

    private static void Work(void* state, int item, int worker)
    {
        var record = (Record*)state;
        Interlocked.Increment(ref record->Runs[item]);
        record->Workers[item] = worker;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalMicroseconds < 200) { } // long enough for a sleeping helper to wake and take some items
    }

    private static bool RunOnce()
    {
        var record = new Record();
        Helper.For(Items, &Work, &record);
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
                if (RunOnce()) helpedAfterSleep++;
            }
            if (Environment.ProcessorCount >= 2) Assert.True(helpedAfterSleep >= 3, $"the helper took part in {helpedAfterSleep} of 5 jobs after sleeping");
        });
    }
}
