using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace ModelGen.Kernels;

/// <summary>
/// Memory with a page nothing may touch right before and right after it, for the tests that say a kernel stays within its
/// buffers. The kernels read and write through raw pointers a vector at a time: past a managed array's end such a read
/// returns the next object's bytes and nothing shows it; here it faults at once, and the runtime ends the process with an
/// AccessViolationException whose stack names the kernel. The tests place a kernel's operands in it; and while a thread is
/// <see cref="Guarding"/>, the runtime's own buffers that thread allocates come from it too (the scratches kernels rent,
/// <see cref="Scratch{T}"/> and <see cref="AlignedBuffer.Ensure"/>, and the buffers workspaces and optimizers hold), each
/// of exactly the length asked for, which only the place they are allocated can arrange. Nothing outside the tests turns
/// the guard on: it maps pages for every buffer and leaves them odd-aligned.
/// </summary>
internal sealed unsafe class GuardedPages : IDisposable
{
    private readonly byte* mapping;
    private readonly nuint mappedBytes;

    private GuardedPages(long bytes, bool atEnd)
    {
        int page = Environment.SystemPageSize;
        nuint dataBytes = (nuint)((bytes + page - 1) / page * page);
        mappedBytes = dataBytes + 2 * (nuint)page;
        mapping = Map(mappedBytes);
        Forbid(mapping, (nuint)page);
        Forbid(mapping + page + dataBytes, (nuint)page);
        First = atEnd ? mapping + page + dataBytes - bytes : mapping + page;
    }

    /// <summary><paramref name="bytes"/> bytes whose last lies just before a guard page: a read or write past them faults.</summary>
    public static GuardedPages AtEnd(long bytes) => new(bytes, atEnd: true);

    /// <summary><paramref name="bytes"/> bytes whose first lies just after a guard page: a read or write before them faults.</summary>
    public static GuardedPages AtStart(long bytes) => new(bytes, atEnd: false);

    /// <summary>The first byte, zeroed at first, as the system maps pages.</summary>
    public byte* First { get; }

    /// <summary>Whether the pages are still there (a buffer of an earlier guarded scope is not).</summary>
    public bool IsMapped { get; private set; } = true;

    public void Dispose()
    {
        if (!IsMapped) return;
        IsMapped = false;
        Unmap(mapping, mappedBytes);
    }

    /// <summary>The placement of the runtime's own buffers on this thread: none outside <see cref="Guard"/>.</summary>
    [ThreadStatic] private static Scope? scope;

    /// <summary>Whether this thread's runtime buffers come from guarded pages now.</summary>
    public static bool Guarding => scope is not null;

    /// <summary>
    /// From here to the scope's end, the runtime buffers this thread allocates lie against a guard page, at their end
    /// (<paramref name="atEnd"/>) or at their start; the scope's end unmaps them all, so nothing allocated inside may be used
    /// after it (a kernel's thread-static scratch is then allocated again). The helper thread's own scratches stay as they are.
    /// </summary>
    public static IDisposable Guard(bool atEnd)
    {
        if (scope is not null) throw new InvalidOperationException("Guarded scopes do not nest.");
        return scope = new Scope(atEnd);
    }

    /// <summary>Guarded pages for a runtime buffer of <paramref name="bytes"/> bytes, unmapped at the end of this thread's scope.</summary>
    public static GuardedPages Allocate(long bytes)
    {
        var current = scope ?? throw new InvalidOperationException("No guarded scope on this thread.");
        var pages = new GuardedPages(bytes, current.AtEnd);
        current.Pages.Add(pages);
        return pages;
    }

    private sealed class Scope(bool atEnd) : IDisposable
    {
        public readonly bool AtEnd = atEnd;
        public readonly List<GuardedPages> Pages = [];

        public void Dispose()
        {
            foreach (var pages in Pages) pages.Dispose();
            scope = null;
        }
    }

    private static byte* Map(nuint bytes)
    {
        if (OperatingSystem.IsWindows())
        {
            var pages = (byte*)VirtualAlloc(null, bytes, MemCommit | MemReserve, PageReadWrite);
            return pages != null ? pages : throw new OutOfMemoryException($"VirtualAlloc of {bytes} bytes failed ({Marshal.GetLastPInvokeError()}).");
        }
        int anonymous = OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD() ? 0x1000 : 0x20;
        var mapped = mmap(null, bytes, ProtRead | ProtWrite, MapPrivate | anonymous, -1, 0);
        return mapped != MapFailed ? (byte*)mapped : throw new OutOfMemoryException($"mmap of {bytes} bytes failed ({Marshal.GetLastPInvokeError()}).");
    }

    private static void Forbid(byte* start, nuint bytes)
    {
        bool done = OperatingSystem.IsWindows() ? VirtualProtect(start, bytes, PageNoAccess, out _) : mprotect(start, bytes, ProtNone) == 0;
        if (!done) throw new InvalidOperationException($"Could not protect a guard page ({Marshal.GetLastPInvokeError()}).");
    }

    private static void Unmap(byte* start, nuint bytes)
    {
        if (OperatingSystem.IsWindows()) VirtualFree(start, 0, MemRelease);
        else munmap(start, bytes);
    }

    private const int ProtNone = 0, ProtRead = 1, ProtWrite = 2, MapPrivate = 2;
    private static readonly nint MapFailed = -1;
    private const uint MemCommit = 0x1000, MemReserve = 0x2000, MemRelease = 0x8000, PageNoAccess = 0x01, PageReadWrite = 0x04;

    [DllImport("libc", SetLastError = true)] private static extern nint mmap(void* address, nuint length, int protection, int flags, int file, nint offset);
    [DllImport("libc", SetLastError = true)] private static extern int mprotect(void* address, nuint length, int protection);
    [DllImport("libc", SetLastError = true)] private static extern int munmap(void* address, nuint length);
    [DllImport("kernel32", SetLastError = true)] private static extern void* VirtualAlloc(void* address, nuint size, uint type, uint protection);
    [DllImport("kernel32", SetLastError = true)] private static extern bool VirtualProtect(void* address, nuint size, uint protection, out uint old);
    [DllImport("kernel32", SetLastError = true)] private static extern bool VirtualFree(void* address, nuint size, uint type);
}
