using System.Globalization;

namespace ModelGen;

/// <summary>
/// Keras' readable_memory_size, for the summary's byte counts: the parameters' (computed by the generator, which links this
/// file) and the buffers' (at run time). Divide by 1024 until below it, two decimals.
/// </summary>
internal static class MemorySize
{
    public static string Readable(double bytes)
    {
        foreach (var unit in new[] { "B", "KB", "MB", "GB", "TB" })
        {
            if (bytes / 1024 < 1) return bytes.ToString("0.00", CultureInfo.InvariantCulture) + " " + unit;
            bytes /= 1024;
        }
        return bytes.ToString("0.00", CultureInfo.InvariantCulture) + " PB";
    }
}
