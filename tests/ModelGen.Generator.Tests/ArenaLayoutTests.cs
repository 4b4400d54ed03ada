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
                // Some in row runs (bits 1 and 2), of a few sizes, so that row-for-row matches come up.
                return new Lifetime(random.Next(1, 4) * 64 + (round % 3 == 0 ? random.Next(0, 3) : 0), first, first + random.Next(0, 4), (ulong)random.Next(0, 4));
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
                    bool rowForRow = offsets[a] == offsets[b] && tensors[a].Size == tensors[b].Size;
                    Assert.True((tensors[a].Runs & tensors[b].Runs) == 0 || apart || rowForRow, $"round {round}: tensors {a} and {b} of one run overlap, not row for row");
                }
            }
            // Never more than one buffer per tensor, never less than what is live at the busiest step.
            Assert.True(arena <= tensors.Sum(t => (t.Size + alignment - 1) / alignment * alignment), $"round {round}: arena {arena}");
            int busiest = Enumerable.Range(0, 14).Max(step => tensors.Where(t => t.First <= step && step <= t.Last).Sum(t => t.Size));
            Assert.True(arena >= busiest, $"round {round}: arena {arena} below the {busiest} floats live at once");
        }
    }

    [Fact]
    public void Tensors_of_one_run_share_floats_only_row_for_row()
    {
        // A run's chain of one width: every other tensor on the same floats, as without a run.
        var chain = Enumerable.Range(0, 6).Select(step => new Lifetime(64, step, step + 1, Runs: 1)).ToList();
        var offsets = Place(chain, 16, out int arena);
        Assert.Equal(128, arena);
        Assert.Equal(offsets[0], offsets[2]);
        // Two widths one after the other: apart in a run (the parts would write a row of one over another row of the
        // other), on the same floats outside any, or in two runs.
        Place([new Lifetime(64, 0, 0, Runs: 1), new Lifetime(32, 1, 1, Runs: 1)], 16, out arena);
        Assert.Equal(96, arena);
        Place([new Lifetime(64, 0, 0, Runs: 1), new Lifetime(32, 1, 1, Runs: 2)], 16, out arena);
        Assert.Equal(64, arena);
        Place([new Lifetime(64, 0, 0), new Lifetime(32, 1, 1)], 16, out arena);
        Assert.Equal(64, arena);
    }
}
