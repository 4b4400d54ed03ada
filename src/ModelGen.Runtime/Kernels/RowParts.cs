using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>Rows [<paramref name="first"/>, + <paramref name="rows"/>) of every tensor a run of row-by-row blocks reads and writes, through all its blocks.</summary>
public delegate void RowPart<TModel>(TModel model, int first, int rows) where TModel : class;

/// <summary>
/// Blocks that each go row by row over the same rows (a Transformer's add, normalization, feed-forward pair, add and
/// normalization over its tokens) run as two parts of the rows, each core taking its part through every block: one hand-off
/// where each block's kernel took one or ran on one core, and each part's values stay in the cache of the core that reads
/// them next. The same rule cuts a pair of dense layers by rows (Gemm.MultiplyTwice). Every row is computed as over all the
/// rows (the generator keeps products whose depth could be summed in parts out of a run), so the bits are the same either way,
/// and the cut is made only where the helper is free to take a part: inside a part of a batch trained on both cores
/// (BatchParts), or on one core, the blocks run over all the rows on this thread.
/// </summary>
public static unsafe class RowParts
{
    /// <summary>The fewest rows a part takes: a column tile's (sixteen), so that its products fill their tiles.</summary>
    public const int MinRows = 16;

    /// <summary>
    /// Floats of kernels from which blocks are not cut by rows: each core would read all of them, which then no longer stay in
    /// its L2 (1 MB on a Zen 4) beside its rows. The generator plans its runs by the same rule (<see cref="SharedRules"/>).
    /// </summary>
    public const long KernelFloatsInL2 = SharedRules.RowKernelFloatsInL2;

    /// <summary>
    /// Whether blocks over <paramref name="rows"/> rows, of <paramref name="multiplyAddsPerRow"/> a row against kernels of
    /// <paramref name="kernelFloats"/> floats in all, are worth two parts: at least <see cref="MinRows"/> a part, the kernels
    /// in each core's L2 (<see cref="KernelFloatsInL2"/>), and as many multiply-adds as one product against weights packed
    /// ahead takes before it is shared (Gemm.PackedParallelWork). Decided by the shape alone.
    /// </summary>
    public static bool Pay(int rows, long multiplyAddsPerRow, long kernelFloats) =>
        rows >= 2 * MinRows && kernelFloats <= KernelFloatsInL2 && rows * multiplyAddsPerRow >= Gemm.PackedParallelWork;

    /// <summary>
    /// Runs <paramref name="part"/> over all <paramref name="rows"/> rows of <paramref name="model"/>'s tensors: in two parts
    /// on the two cores where they pay (<see cref="Pay"/>) and the helper is free, else over all of them on this thread. A
    /// part's exception is rethrown here.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static void Run<TModel>(TModel model, int rows, long multiplyAddsPerRow, long kernelFloats, RowPart<TModel> part) where TModel : class
    {
        if (!Helper.CanShare || !Pay(rows, multiplyAddsPerRow, kernelFloats))
        {
            part(model, 0, rows);
            return;
        }
        var job = new Job<TModel> { Model = model, Part = part, Rows = rows };
        // The job lives in this frame, which Helper.For keeps until both parts are done.
        Helper.For(2, &RunPart<TModel>, Unsafe.AsPointer(ref job));
    }

    private struct Job<TModel> where TModel : class
    {
        public TModel Model;
        public RowPart<TModel> Part;
        public int Rows;
    }

    [MethodImpl(Compiled.Driver)]
    private static void RunPart<TModel>(void* state, int index, int worker) where TModel : class
    {
        ref var job = ref Unsafe.AsRef<Job<TModel>>(state);
        var (first, rows) = Helper.PartOf(index, 2, job.Rows);
        job.Part(job.Model, first, rows);
    }
}
