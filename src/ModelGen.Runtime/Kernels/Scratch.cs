using System;
using System.Buffers;

namespace ModelGen.Kernels;

/// <summary>
/// A kernel's temporary buffer: rented from the shared pool, zeroed as a stackalloc would be, returned on Dispose. One
/// mechanism for every width: a stackalloc with an allocating fallback allocated on every call past its size limit (a
/// BatchNormalization of more than 256 channels allocated each training step).
/// </summary>
internal readonly struct Scratch<T> : IDisposable where T : unmanaged
{
    private readonly T[] array;
    private readonly int length;

    private Scratch(int length)
    {
        array = ArrayPool<T>.Shared.Rent(length);
        this.length = length;
        Span.Clear();
    }

    public static Scratch<T> Rent(int length) => new(length);

    public Span<T> Span => array.AsSpan(0, length);

    public void Dispose() => ArrayPool<T>.Shared.Return(array);
}
