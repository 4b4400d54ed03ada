namespace ModelGen.Testing;

/// <summary>Bytes a piece of code allocates, counted on the calling thread, for the tests that say a steady state allocates nothing.</summary>
public static class Allocations
{
    /// <summary>
    /// The managed bytes <paramref name="run"/> allocates on this thread. The window opens on an empty allocation context:
    /// GC.GetAllocatedBytesForCurrentThread counts what the thread was handed minus the unused tail of its current context,
    /// and a background GC, at the end of its mark phase, voids every thread's context without taking that tail back
    /// (gc.cpp's void_allocation), so under the suite's parallel load a raw reading once counted 1,712 bytes that a
    /// BidirectionalStack step never allocated. A blocking gen-0 collection empties the context with exact accounting; an
    /// empty context has no tail to void, and stays empty until the thread allocates, which is then counted exactly.
    /// </summary>
    public static long OnThisThread(Action run)
    {
        GC.Collect(0, GCCollectionMode.Forced, blocking: true);
        long before = GC.GetAllocatedBytesForCurrentThread();
        run();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }
}
