using ModelGen.Kernels;
using Xunit;

namespace ModelGen.Runtime.Tests;

public class ScratchTests
{
    [Fact]
    public void Nested_buffers_are_zeroed_and_apart_even_when_the_stack_grows_under_a_live_one()
    {
        using var first = Scratch<float>.Rent(8);
        first.Span.Fill(1f);
        // Far past anything rented so far on this thread: served from a larger array while the first stays where it is.
        using (var second = Scratch<float>.Rent(1 << 16))
        {
            Assert.All(second.Span.ToArray(), v => Assert.Equal(0f, v));
            second.Span.Fill(2f);
            using var third = Scratch<float>.Rent(5);
            Assert.All(third.Span.ToArray(), v => Assert.Equal(0f, v));
            third.Span.Fill(3f);
            Assert.All(second.Span.ToArray(), v => Assert.Equal(2f, v));
        }
        Assert.All(first.Span.ToArray(), v => Assert.Equal(1f, v));
        // Released in order, the space is rented again, zeroed.
        using var again = Scratch<float>.Rent(1 << 16);
        Assert.All(again.Span.ToArray(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void An_uncleared_buffer_is_apart_from_the_live_ones_and_leaves_the_next_cleared_one_zeroed()
    {
        using var first = Scratch<int>.Rent(4);
        first.Span.Fill(1);
        using (var uncleared = Scratch<int>.RentUncleared(64))
        {
            Assert.Equal(64, uncleared.Span.Length);
            uncleared.Span.Fill(7);
            Assert.All(first.Span.ToArray(), v => Assert.Equal(1, v));
        }
        using var cleared = Scratch<int>.Rent(64);
        Assert.All(cleared.Span.ToArray(), v => Assert.Equal(0, v));
    }

    [Fact]
    public void Renting_again_what_was_rented_before_allocates_nothing_while_other_threads_rent_the_same_sizes()
    {
        static void Step()
        {
            using var a = Scratch<float>.Rent(16);
            using var b = Scratch<float>.Rent(16);
            using var c = Scratch<double>.Rent(16);
            a.Span[0] = b.Span[0] + (float)c.Span[0];
        }
        Step();
        using var stop = new ManualResetEventSlim();
        var other = new Thread(() => { while (!stop.IsSet) Step(); });
        other.Start();
        long allocated = Allocations.OnThisThread(() => { for (int i = 0; i < 10_000; i++) Step(); });
        stop.Set();
        other.Join();
        Assert.Equal(0, allocated);
    }
}
