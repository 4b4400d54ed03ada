using System.Buffers;
using System.Runtime.InteropServices;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// Floats with a page nothing may touch right before or right after them, for the tests that say a kernel stays within
/// its spans. The kernels read and write through raw pointers, a vector at a time: past a managed array's end such a read
/// returns the next object's bytes and nothing shows it; here it faults at once, and the runtime ends the process with an
/// AccessViolationException whose stack names the kernel and the test.
/// </summary>
public sealed unsafe class GuardedMemory : MemoryManager<float>
{
    private readonly byte* mapping;
    private readonly nuint mappedBytes;

    private readonly float* first;
    private readonly int length;
    private bool unmapped;

    private GuardedMemory(int length, bool atEnd)
    {
        int page = Environment.SystemPageSize;
        nuint dataBytes = (nuint)(((long)length * sizeof(float) + page - 1) / page * page);
        mappedBytes = dataBytes + 2 * (nuint)page;
        mapping = Pages.Map(mappedBytes);
        Pages.Forbid(mapping, (nuint)page);
        Pages.Forbid(mapping + page + dataBytes, (nuint)page);
        this.length = length;
        first = atEnd ? (float*)(mapping + page + dataBytes) - length : (float*)(mapping + page);
    }

    /// <summary><paramref name="length"/> floats whose last one lies just before a guard page: a read or write past them faults.</summary>
    public static GuardedMemory AtEnd(int length) => new(length, atEnd: true);

    /// <summary><paramref name="length"/> floats whose first one lies just after a guard page: a read or write before them faults.</summary>
    public static GuardedMemory AtStart(int length) => new(length, atEnd: false);

    /// <summary>The floats, zeroed at first: ending where the guard page after them begins, or starting where the one before them ends.</summary>
    public override Span<float> GetSpan() => new(first, length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(first + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing)
    {
        if (unmapped) return;
        unmapped = true;
        Pages.Unmap(mapping, mappedBytes);
    }

    /// <summary>Anonymous pages from the operating system, and taking every access to some away.</summary>
    private static class Pages
    {
        public static byte* Map(nuint bytes)
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

        public static void Forbid(byte* start, nuint bytes)
        {
            bool done = OperatingSystem.IsWindows() ? VirtualProtect(start, bytes, PageNoAccess, out _) : mprotect(start, bytes, ProtNone) == 0;
            if (!done) throw new InvalidOperationException($"Could not protect a guard page ({Marshal.GetLastPInvokeError()}).");
        }

        public static void Unmap(byte* start, nuint bytes)
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
}
