using System.Diagnostics;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// CoreChoice against calls whose cost depends on the cores they may use (a spin of a set length, read from
/// <see cref="Helper.Threads"/> inside the call, as the kernels read it): it must find the faster setting within a few
/// trials, follow a change, keep each batch size's choice apart, and leave the thread as it found it. The costs differ by
/// 3x or more, so the outcome does not hang on the machine's noise; the deadlines are generous bounds, not timings.
/// </summary>
[Collection(KernelSettings.Name)]
public class CoreChoiceTests
{
    /// <summary>Microseconds a call lasts with two cores allowed and with one.</summary>
    private record struct Costs(int Shared, int Alone);

    private static readonly Costs TwoCoresWin = new(Shared: 60, Alone: 240), OneCoreWins = new(Shared: 240, Alone: 60);

    private static int Call(CoreChoice choice, int batch, Costs costs)
    {
        int threads;
        using (choice.Begin(batch))
        {
            threads = Helper.Threads;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalMicroseconds < (threads == 1 ? costs.Alone : costs.Shared)) { }
        }
        return threads;
    }

    /// <summary>Calls until the choice at <paramref name="batch"/> is <paramref name="alone"/> (true) or 3 s pass (false).</summary>
    private static bool CallsUntil(CoreChoice choice, int batch, Costs costs, bool alone)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < 3)
        {
            Call(choice, batch, costs);
            if (choice.Alone(batch) == alone) return true;
        }
        return false;
    }

    [Fact]
    public void Keeps_to_one_core_where_calls_run_faster_there_and_comes_back_when_two_win_again()
    {
        KernelSettings.OnThreads(2, () =>
        {
            var choice = new CoreChoice();
            Assert.False(choice.Alone(8));
            Assert.True(CallsUntil(choice, 8, OneCoreWins, alone: true), "never chose one core where calls ran 4x faster on it");
            // Outside trials the calls now run with one thread allowed; trials still try two now and then.
            int alone = 0;
            for (int i = 0; i < 40; i++) alone += Call(choice, 8, OneCoreWins) == 1 ? 1 : 0;
            Assert.True(alone >= 34, $"{alone} of 40 calls kept to one core after it was chosen");
            Assert.True(CallsUntil(choice, 8, TwoCoresWin, alone: false), "never came back to two cores once they ran 4x faster");
        });
    }

    [Fact]
    public void A_trial_that_finds_the_helper_asleep_times_calls_on_two_cores_only_once_it_had_time_to_wake()
    {
        KernelSettings.OnThreads(2, () =>
        {
            var choice = new CoreChoice();
            Assert.True(CallsUntil(choice, 4, OneCoreWins, alone: true), "never chose one core where calls ran 4x faster on it");
            // Calls of 12 us on one core and 4 on two, but 16 on two while the helper wakes (90 us from the first call on two
            // after one on one): all four of a trial's calls on two fall in those 90 us, and the helper sleeps between trials
            // (these calls post no job). Timed from their start, the trials would keep to one core; timed from 100 us on, the
            // first trial (20 ms after one core was chosen, the next 40 ms later) comes back to two.
            long waking = 0;
            bool lastAlone = true;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalMilliseconds < 500 && choice.Alone(4))
            {
                using (choice.Begin(4))
                {
                    bool alone = Helper.Threads == 1;
                    if (!alone && lastAlone) waking = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 90 / 1_000_000;
                    lastAlone = alone;
                    int microseconds = alone ? 12 : Stopwatch.GetTimestamp() < waking ? 16 : 4;
                    var call = Stopwatch.StartNew();
                    while (call.Elapsed.TotalMicroseconds < microseconds) { }
                }
            }
            Assert.False(choice.Alone(4), "kept to one core: its trials timed the calls on two cores while the helper woke");
        });
    }

    [Fact]
    public void Stays_on_two_cores_where_they_win_and_checks_again_after_200_times_a_trials_cost_when_they_win_by_far()
    {
        KernelSettings.OnThreads(2, () =>
        {
            var choice = new CoreChoice();
            int alone = 0, calls = 0;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalMilliseconds < 240)
            {
                alone += Call(choice, 32, TwoCoresWin) == 1 ? 1 : 0;
                calls++;
                Assert.False(choice.Alone(32), $"chose one core after {calls} calls, though two ran 4x faster");
            }
            // The first trial (due 20 ms in) ran four calls on one core, 180 us each longer than on two; one core lost by far
            // more than a quarter, so the next trial came 200 x 720 us = 144 ms later (~165 ms in) and the third is due at
            // ~310 ms: two trials, where doubling from 20 ms would have run four, and a gap of a second one.
            Assert.Equal(8, alone);
        });
    }

    [Fact]
    public void Follows_a_change_within_a_few_trials_where_they_cost_little()
    {
        // 20 us on the faster setting, 80 on the slower: a trial costs 4 x 60 us, so one that confirms the choice by far puts
        // the next 48 ms away (200 times its cost), not a second, and a change of placement is followed within tens of ms.
        Costs twoWin = new(Shared: 20, Alone: 80), oneWins = new(Shared: 80, Alone: 20);
        KernelSettings.OnThreads(2, () =>
        {
            var choice = new CoreChoice();
            AfterATrial(choice, 16, twoWin);
            Assert.False(choice.Alone(16));
            var reaction = Stopwatch.StartNew();
            Assert.True(CallsUntil(choice, 16, oneWins, alone: true), "never chose one core where calls ran 4x faster on it");
            Assert.True(reaction.ElapsedMilliseconds < 250, $"took {reaction.ElapsedMilliseconds} ms to choose one core");
            // The trial 20 ms after the change confirms it by far; the next is again 48 ms away.
            AfterATrial(choice, 16, oneWins);
            Assert.True(choice.Alone(16));
            reaction.Restart();
            Assert.True(CallsUntil(choice, 16, twoWin, alone: false), "never came back to two cores once they ran 4x faster");
            Assert.True(reaction.ElapsedMilliseconds < 250, $"took {reaction.ElapsedMilliseconds} ms to come back to two cores");
        });
    }

    /// <summary>
    /// Calls until a trial has run and ended: a call on the setting not chosen (a trial's part on it), then four on the chosen
    /// one (a trial runs four calls on each, two cores first).
    /// </summary>
    private static void AfterATrial(CoreChoice choice, int batch, Costs costs)
    {
        int chosenThreads = choice.Alone(batch) ? 1 : 2;
        var clock = Stopwatch.StartNew();
        while (Call(choice, batch, costs) == chosenThreads) Assert.True(clock.Elapsed.TotalSeconds < 3, "no trial within 3 s");
        for (int chosenInARow = 0; chosenInARow < 4;) chosenInARow = Call(choice, batch, costs) == chosenThreads ? chosenInARow + 1 : 0;
    }

    [Fact]
    public void Chooses_per_batch_size()
    {
        KernelSettings.OnThreads(2, () =>
        {
            var choice = new CoreChoice();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalSeconds < 3 && !choice.Alone(1))
            {
                Call(choice, 1, OneCoreWins);
                Call(choice, 128, TwoCoresWin);
            }
            Assert.True(choice.Alone(1));
            Assert.False(choice.Alone(128));
        });
    }

    [Fact]
    public void Never_keeps_to_one_core_where_the_process_has_one_thread_anyway()
    {
        KernelSettings.OnThreads(1, () =>
        {
            // Both settings cost the same here: a trial finds no 5% either way and the choice stays.
            var choice = new CoreChoice();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalMilliseconds < 200) Assert.Equal(1, Call(choice, 4, OneCoreWins));
            Assert.False(choice.Alone(4));
        });
    }

    [Fact]
    public void A_call_leaves_the_thread_as_it_found_it_even_when_it_throws()
    {
        KernelSettings.OnThreads(2, () =>
        {
            var choice = new CoreChoice();
            Assert.True(CallsUntil(choice, 2, OneCoreWins, alone: true));
            Assert.False(Helper.Alone);
            void FailingCall()
            {
                using var _ = choice.Begin(2);
                Assert.Equal(1, Helper.Threads);
                throw new InvalidOperationException("a bad batch");
            }
            Assert.Throws<InvalidOperationException>(FailingCall);
            Assert.False(Helper.Alone);
            Assert.Equal(2, Helper.Threads);
        });
    }
}
