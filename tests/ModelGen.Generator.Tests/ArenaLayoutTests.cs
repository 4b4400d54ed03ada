using ModelGen.Generator;
using static ModelGen.Generator.ArenaLayout;

namespace ModelGen.Generator.Tests;

public class ArenaLayoutTests
{
    [Fact]
    public void A_chain_needs_two_tensors_at_a_time()
    {
        // Backward through a chain: each block reads one gradient and writes the next.
        var chain = Enumerable.Range(0, 6).Select(step => new Lifetime(64, step, step + 1)).ToList();
        var offsets = Place(chain, 16, out int arena);
        Assert.Equal(128, arena);
        for (int t = 1; t < chain.Count; t++) Assert.NotEqual(offsets[t - 1], offsets[t]);
    }

    [Fact]
    public void Tensors_live_at_once_never_overlap_and_offsets_stay_aligned()
    {
        var random = new Random(7);
        for (int round = 0; round < 300; round++)
        {
            var tensors = Enumerable.Range(0, random.Next(1, 12)).Select(_ =>
            {
                int first = random.Next(0, 10);
                return new Lifetime(random.Next(1, 300), first, first + random.Next(0, 4));
            }).ToList();
            int alignment = round % 2 == 0 ? 16 : 1;
            var offsets = Place(tensors, alignment, out int arena);
            for (int a = 0; a < tensors.Count; a++)
            {
                Assert.Equal(0, offsets[a] % alignment);
                Assert.True(offsets[a] + tensors[a].Size <= arena, $"round {round}: tensor {a} ends past the arena");
                for (int b = a + 1; b < tensors.Count; b++)
                {
                    bool apart = offsets[a] + tensors[a].Size <= offsets[b] || offsets[b] + tensors[b].Size <= offsets[a];
                    Assert.True(!tensors[a].Meets(tensors[b]) || apart, $"round {round}: tensors {a} and {b} are live together and overlap");
                }
            }
            // Never more than one buffer per tensor, never less than what is live at the busiest step.
            Assert.True(arena <= tensors.Sum(t => (t.Size + alignment - 1) / alignment * alignment), $"round {round}: arena {arena}");
            int busiest = Enumerable.Range(0, 14).Max(step => tensors.Where(t => t.First <= step && step <= t.Last).Sum(t => t.Size));
            Assert.True(arena >= busiest, $"round {round}: arena {arena} below the {busiest} floats live at once");
        }
    }
}
