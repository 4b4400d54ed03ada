using System;
using System.Diagnostics;

namespace ModelGen.Kernels;

/// <summary>
/// A kernel's temporary buffer, zeroed as a stackalloc would be (unless rented uncleared), from a stack of its own per
/// thread that grows and never shrinks, so steps after a model's first allocate nothing whatever else the process does. One
/// mechanism for every width:
/// a stackalloc with an allocating fallback allocated on every call past its size limit (a BatchNormalization of more than
/// 256 channels allocated each training step); the shared ArrayPool, shared with the application's other threads, may drop
/// what it holds on a full collection under memory pressure, and the next step would then allocate again.
/// Buffers are released in the reverse order of their renting, as <c>using var</c> declarations are.
/// </summary>
internal readonly unsafe struct Scratch<T> : IDisposable where T : unmanaged
{
    [ThreadStatic] private static T[]? stack;
    [ThreadStatic] private static int used;

    private readonly T[]? array;
    /// <summary>Where a test guards this thread's buffers (<see cref="GuardedPages.Guarding"/>): the rental's own pages, instead of the stack.</summary>
    private readonly GuardedPages? pages;
    private readonly int start, length;

    private Scratch(int length, bool cleared)
    {
        this.length = length;
        if (GuardedPages.Guarding)
        {
            pages = GuardedPages.Allocate((long)length * sizeof(T)); // zeroed by the system
            return;
        }
        // Buffers still rented keep the array they came from; a larger one serves the rest, from the same offset.
        if (stack is null || stack.Length - used < length) stack = new T[Math.Max(2 * (stack?.Length ?? 0), used + length)];
        array = stack;
        start = used;
        used += length;
        if (cleared) Span.Clear();
    }

    public static Scratch<T> Rent(int length) => new(length, cleared: true);

    /// <summary>
    /// A buffer holding whatever an earlier one left there, for a kernel that writes every element it reads before reading
    /// it (the scattered route's lists of nonzero values, Convolution.ScatteredRows: 186 KB a chunk of three samples).
    /// </summary>
    public static Scratch<T> RentUncleared(int length) => new(length, cleared: false);

    public Span<T> Span => pages is null ? array.AsSpan(start, length) : new Span<T>(pages.First, length);

    public void Dispose()
    {
        if (pages is not null)
        {
            pages.Dispose();
            return;
        }
        Debug.Assert(used == start + length, "Scratch buffers are released in the reverse order of their renting.");
        used = start;
    }
}
