using System.Buffers;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// A kernel's operand in <see cref="GuardedPages"/>: floats with a page nothing may touch right before or right after
/// them, for the tests that say a kernel stays within its spans.
/// </summary>
public sealed unsafe class GuardedMemory : MemoryManager<float>
{
    private readonly GuardedPages pages;
    private readonly int length;

    private GuardedMemory(int length, bool atEnd)
    {
        pages = atEnd ? GuardedPages.AtEnd((long)length * sizeof(float)) : GuardedPages.AtStart((long)length * sizeof(float));
        this.length = length;
    }

    /// <summary><paramref name="length"/> floats whose last one lies just before a guard page: a read or write past them faults.</summary>
    public static GuardedMemory AtEnd(int length) => new(length, atEnd: true);

    /// <summary><paramref name="length"/> floats whose first one lies just after a guard page: a read or write before them faults.</summary>
    public static GuardedMemory AtStart(int length) => new(length, atEnd: false);

    /// <summary>The floats, zeroed at first: ending where the guard page after them begins, or starting where the one before them ends.</summary>
    public override Span<float> GetSpan() => new(pages.First, length);

    public override MemoryHandle Pin(int elementIndex = 0) => new((float*)pages.First + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) => pages.Dispose();
}
