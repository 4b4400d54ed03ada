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
    /// <summary>A tensor of <see cref="Size"/> floats, live from step <see cref="First"/> to step <see cref="Last"/>, both included.</summary>
    public readonly record struct Lifetime(int Size, int First, int Last)
    {
        public bool Meets(Lifetime other) => First <= other.Last && other.First <= Last;
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
            int size = Align(tensors[t].Size, alignment), offset = 0;
            foreach (int other in placed.Where(p => tensors[p].Meets(tensors[t])).OrderBy(p => offsets[p]))
            {
                if (offsets[other] - offset >= size) break;
                offset = System.Math.Max(offset, Align(offsets[other] + tensors[other].Size, alignment));
            }
            offsets[t] = offset;
            placed.Add(t);
            arenaSize = System.Math.Max(arenaSize, offset + size);
        }
        return offsets;
    }

    private static int Align(int floats, int alignment) => (floats + alignment - 1) / alignment * alignment;
}
