using System.Collections.Generic;
using System.Linq;

namespace ModelGen.Generator;

/// <summary>
/// Offsets in one shared buffer for tensors that are each live over an interval of a pass, such that two tensors live at
/// the same moment never overlap: greedy by size, as TensorFlow Lite's arena planner does. Largest first, each at the
/// lowest offset clear of every tensor already placed whose interval meets its own.
/// </summary>
internal static class ArenaLayout
{
    /// <summary>
    /// A tensor of <see cref="Size"/> floats, live from step <see cref="First"/> to step <see cref="Last"/>, both included.
    /// <see cref="Runs"/> marks the row runs that name it (bit r for run r, modulo 64: two runs on one bit only constrain
    /// more): the two cores go through a run's blocks at once, each over its own rows, so two tensors of one run may share
    /// floats only row for row, at the same offset with the same size (and so the same floats a row), whatever their intervals.
    /// </summary>
    public readonly record struct Lifetime(int Size, int First, int Last, ulong Runs = 0)
    {
        public bool Meets(Lifetime other) => First <= other.Last && other.First <= Last;

        /// <summary>Whether the two may overlap where placed at <paramref name="offset"/> and <paramref name="otherOffset"/>.</summary>
        public bool MayShare(int offset, Lifetime other, int otherOffset) =>
            !Meets(other) && ((Runs & other.Runs) == 0 || (offset == otherOffset && Size == other.Size));
    }

    /// <summary>Each tensor's offset, every one a multiple of <paramref name="alignment"/>; <paramref name="arenaSize"/> is the floats they span.</summary>
    public static int[] Place(IReadOnlyList<Lifetime> tensors, int alignment, out int arenaSize)
    {
        var offsets = new int[tensors.Count];
        var placed = new List<int>();
        arenaSize = 0;
        // Ties go to the earlier tensor, so the layout depends on the tensors alone.
        foreach (int t in Enumerable.Range(0, tensors.Count).OrderByDescending(t => tensors[t].Size).ThenBy(t => t))
        {
            int size = Align(tensors[t].Size, alignment);
            offsets[t] = tensors[t].Runs == 0 ? LowestClear() : LowestAllowed();
            placed.Add(t);
            arenaSize = System.Math.Max(arenaSize, offsets[t] + size);

            // The first gap as wide as the tensor between those live with it.
            int LowestClear()
            {
                int offset = 0;
                foreach (int other in placed.Where(p => tensors[p].Meets(tensors[t])).OrderBy(p => offsets[p]))
                {
                    if (offsets[other] - offset >= size) break;
                    offset = System.Math.Max(offset, Align(offsets[other] + tensors[other].Size, alignment));
                }
                return offset;
            }

            // A tensor in a run: the lowest offset, from 0, the ends of those placed and the offsets a row-for-row match could take, that every placed tensor allows.
            int LowestAllowed()
            {
                var candidates = placed.Select(p => Align(offsets[p] + tensors[p].Size, alignment)).Concat(placed.Select(p => offsets[p])).Append(0);
                return candidates.Distinct().OrderBy(c => c).First(c => placed.All(p =>
                    c + size <= offsets[p] || Align(offsets[p] + tensors[p].Size, alignment) <= c || tensors[t].MayShare(c, tensors[p], offsets[p])));
            }
        }
        return offsets;
    }

    private static int Align(int floats, int alignment) => (floats + alignment - 1) / alignment * alignment;
}
