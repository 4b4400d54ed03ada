using System.Runtime;

namespace ModelGen.Runtime.Tests;

/// <summary>The allocation meter the steady-state tests rely on: exact for what a thread allocates, blind to background GCs.</summary>
public class AllocationsTests
{
    [Fact]
    public void An_allocation_in_the_window_is_counted_exactly()
    {
        Assert.Equal(24 + 64, Allocations.OnThisThread(() => GC.KeepAlive(new byte[64]))); // header, type and length, then the bytes
        Assert.Equal(0, Allocations.OnThisThread(() => { })); // the meter adds nothing of its own
    }

    [Fact]
    public void A_background_collection_ending_in_the_window_counts_nothing()
    {
        // A heap big enough that a background collection's marking outlasts the window's opening, and a thread whose
        // allocation context has an unused tail when the window opens: the raw counter jumps by that tail when the
        // collection voids the context (it did in every such round while this test was written).
        Assert.Equal(GCLatencyMode.Interactive, GCSettings.LatencyMode); // background collections are on, as by default
        var retained = Enumerable.Range(0, 200_000).Select(_ => new byte[64]).ToArray();
        int endedInWindow = 0, rounds = 0;
        for (; endedInWindow < 5 && rounds < 200; rounds++) // a loaded machine may end a collection before the window opens
        {
            long lastBackground = GC.GetGCMemoryInfo(GCKind.Background).Index;
            GC.Collect(2, GCCollectionMode.Forced, blocking: false, compacting: false);
            var tail = new byte[1 + 13 * (rounds % 100)];
            long allocated = Allocations.OnThisThread(() => Thread.Sleep(20));
            GC.KeepAlive(tail);
            if (GC.GetGCMemoryInfo(GCKind.Background).Index == lastBackground) continue; // it had not ended by the window's close
            endedInWindow++;
            Assert.Equal(0, allocated);
        }
        Assert.True(endedInWindow == 5, $"only {endedInWindow} of {rounds} background collections ended by the window's close");
        GC.KeepAlive(retained);
    }
}
