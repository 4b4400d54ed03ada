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
/// wait for a full collection.
/// </summary>
public sealed class AlignedBuffer
{
    private const int Line = 64, Slack = Line / sizeof(float) - 1;
    private readonly float[] array;
    private readonly int start;

    public AlignedBuffer(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        array = GC.AllocateArray<float>(length + Slack, pinned: true);
        start = (Line - LineOffset(array)) % Line / sizeof(float);
        Length = length;
    }

    public int Length { get; }

    public Span<float> Span => array.AsSpan(start, Length);

    public Span<float> AsSpan(int offset, int length) => Span.Slice(offset, length);

    public static implicit operator Span<float>(AlignedBuffer buffer) => buffer.Span;

    public static implicit operator ReadOnlySpan<float>(AlignedBuffer buffer) => buffer.Span;

    /// <summary>How many bytes past a cache line <paramref name="floats"/> starts (0 for every buffer; the tests hold models to it).</summary>
    internal static unsafe int LineOffset(ReadOnlySpan<float> floats) => (int)((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(floats)) & (Line - 1));

    /// <summary>A per-thread scratch buffer of at least <paramref name="length"/> floats, replaced by a larger one when too short.</summary>
    internal static Span<float> Ensure(ref AlignedBuffer? buffer, int length)
    {
        if (buffer is null || buffer.Length < length) buffer = new AlignedBuffer(length);
        return buffer.Span;
    }
}
