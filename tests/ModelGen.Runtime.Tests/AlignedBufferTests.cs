using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// A model's buffers start on a cache line whatever the length, one after another as a model allocates them with other
/// allocations in between, and hold exactly their length, zeroed; slices stay inside the buffer.
/// </summary>
public class AlignedBufferTests
{
    [Fact]
    public void Buffers_start_on_a_cache_line_and_hold_their_length_zeroed()
    {
        var kept = new List<object>();
        foreach (int length in new[] { 0, 1, 3, 10, 16, 17, 255, 1000, 4099, 200_000, 235_146, 2_000_000 })
        {
            for (int copy = 0; copy < 3; copy++)
            {
                kept.Add(new float[length % 97 + copy]);
                var buffer = new AlignedBuffer(length);
                Assert.True(AlignedBuffer.LineOffset(buffer) == 0, $"{length} floats, copy {copy}: {AlignedBuffer.LineOffset(buffer)} bytes past a line");
                Assert.Equal(length, buffer.Length);
                Span<float> span = buffer;
                Assert.Equal(length, span.Length);
                Assert.True(span.IndexOfAnyExcept(0f) < 0);
                kept.Add(buffer);
            }
        }
    }

    [Fact]
    public void Slices_are_views_inside_the_buffer()
    {
        var buffer = new AlignedBuffer(40);
        buffer.AsSpan(8, 4).Fill(2f);
        Assert.Equal(new float[] { 0, 2, 2, 2, 2, 0 }, buffer.Span.Slice(7, 6).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.AsSpan(38, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AlignedBuffer(-1));
    }
}
