using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>
/// Zeroed floats whose first sits on a 64-byte boundary: a model's weights, gradients, activations and optimizer state, and
/// the GEMM's packing panels. .NET places an array on any 8-byte boundary, where a 512-bit load straddles two cache lines
/// three times in four (128x784x256 on two cores: 226-231 us with the weights 16 or 32 bytes past a line, 220-223 on one),
/// and has no aligned allocation (an array probed into place on the pinned heap landed on a line for the first model only);
/// so this is a pinned array with up to 15 floats of slack in front, and the buffer starts at the first line inside it.
/// Pinned, because a compacting GC would move the array and the line with it; the cost is that a discarded model's buffers
/// wait for a full collection. Buffers of 4 MB and more ask Linux for 2 MB pages. Inside a test's guarded scope
/// (<see cref="GuardedPages.Guard"/>) a buffer comes from guarded pages instead, exactly its length, unaligned.
/// </summary>
public sealed unsafe class AlignedBuffer
{
    private const int Line = 64, Slack = Line / sizeof(float) - 1;
    /// <summary>Floats in a cache line, the alignment of every buffer.</summary>
    internal const int LineFloats = Line / sizeof(float);

    /// <summary>The pinned array, the buffer starting at float <see cref="start"/> of it; null where a test's guarded pages hold it.</summary>
    private readonly float[]? array;
    private readonly int start;
    /// <summary>Inside a guarded scope: the pages, the buffer starting <see cref="start"/> floats past their first.</summary>
    private readonly GuardedPages? pages;

    public AlignedBuffer(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (length > 0 && GuardedPages.Guarding)
        {
            pages = GuardedPages.Allocate((long)length * sizeof(float));
        }
        else
        {
            array = (long)length * sizeof(float) >= HugePageBytes && OperatingSystem.IsLinux()
                ? OnHugePages(length + Slack)
                : GC.AllocateArray<float>(length + Slack, pinned: true);
            start = (Line - LineOffset(array)) % Line / sizeof(float);
        }
        Length = length;
    }

    private AlignedBuffer(float[]? array, GuardedPages? pages, int start, int length)
    {
        this.array = array;
        this.pages = pages;
        this.start = start;
        Length = length;
    }

    /// <summary>
    /// Floats [<paramref name="offset"/>, +<paramref name="length"/>) of this buffer as a buffer of their own, sharing its memory
    /// (tensors that are never live at the same time, ModelBuffers). On a cache line where the offset is a multiple of 16.
    /// </summary>
    public AlignedBuffer Slice(int offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length - offset);
        return new AlignedBuffer(array, pages, start + offset, length);
    }

    /// <summary>No floats (an array a workspace does not need).</summary>
    public static AlignedBuffer Empty { get; } = new(0);

    public int Length { get; }

    /// <summary>The floats; a span into the array keeps the array alive while it is in use, as a raw pointer would not.</summary>
    public Span<float> Span => array is not null ? array.AsSpan(start, Length) : new((float*)pages!.First + start, Length);

    /// <summary>The first float, for <c>fixed</c> (null where the buffer is empty, as an empty array pins).</summary>
    public ref float GetPinnableReference() => ref Span.GetPinnableReference();

    public Span<float> AsSpan(int offset, int length) => Span.Slice(offset, length);

    public ref float this[int index] => ref Span[index];

    public static implicit operator Span<float>(AlignedBuffer buffer) => buffer.Span;

    public static implicit operator ReadOnlySpan<float>(AlignedBuffer buffer) => buffer.Span;

    /// <summary>How many bytes past a cache line <paramref name="floats"/> starts (0 for every buffer; the tests hold models to it).</summary>
    internal static unsafe int LineOffset(ReadOnlySpan<float> floats) => (int)((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(floats)) & (Line - 1));

    /// <summary>A per-thread scratch buffer of at least <paramref name="length"/> floats, replaced by a larger one when too short.</summary>
    internal static Span<float> Ensure(ref AlignedBuffer? buffer, int length)
    {
        if (buffer is null || !buffer.Serves(length)) buffer = new AlignedBuffer(length);
        return buffer.Span;
    }

    /// <summary>
    /// Whether this scratch serves <paramref name="length"/> floats: unguarded, an array at least that long (a scratch left
    /// from a guarded scope is replaced, its pages gone); guarded, pages still mapped holding exactly that length, against
    /// their guard page.
    /// </summary>
    private bool Serves(int length) => GuardedPages.Guarding
        ? pages is { IsMapped: true } && Length == length
        : array is not null && Length >= length;

    /// <summary>Buffers from this size on ask Linux for 2 MB pages (<see cref="OnHugePages"/>).</summary>
    private const long HugePageBytes = 4 << 20;

    private const int HugePage = 2 << 20, AdviseHugePage = 14; // MADV_HUGEPAGE

    /// <summary>
    /// A pinned array whose whole 2 MB pages are advised to be backed by huge pages before they are first touched. A large
    /// layer's weights are read a row at a time, rows 4-8 KB apart, and with 4 KB pages every row missed the TLB (one core, a
    /// batch of 128 against 2048x2048 weights: 12.6 -> 11.7 ms; the scaling MLPs' predict at batch 128, widths 1024 and 2048:
    /// 3.45 -> 2.87 ms and 14.3 -> 12.7 ms). Only advice: where the kernel has no transparent huge pages, or none are free,
    /// the pages stay small. Zeroed here, as GC.AllocateArray would have. A 4 MB buffer holds at least one whole 2 MB page
    /// wherever it starts; smaller ones may hold none.
    /// </summary>
    private static unsafe float[] OnHugePages(int length)
    {
        var floats = GC.AllocateUninitializedArray<float>(length, pinned: true);
        nint first = (nint)Unsafe.AsPointer(ref floats[0]);
        nint from = (first + HugePage - 1) & ~(nint)(HugePage - 1), to = (first + (nint)length * sizeof(float)) & ~(nint)(HugePage - 1);
        try
        {
            if (to > from) _ = Advise((void*)from, (nuint)(to - from), AdviseHugePage);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // No libc to ask: small pages, as everywhere else.
        }
        Array.Clear(floats);
        return floats;
    }

    [DllImport("libc", EntryPoint = "madvise")]
    private static extern unsafe int Advise(void* address, nuint length, int advice);
}
