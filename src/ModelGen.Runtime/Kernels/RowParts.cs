using System;
using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>Rows [<paramref name="first"/>, + <paramref name="rows"/>) of every tensor a run of row-by-row blocks reads and writes, through all its blocks.</summary>
public delegate void RowPart<TModel>(TModel model, int first, int rows) where TModel : class;

/// <summary>
/// Rows [<paramref name="first"/>, + <paramref name="rows"/>) of every tensor a run of row-by-row blocks reads and writes, one
/// of them the model's input, passed whole (a part slices its own rows): a Sequential MLP's layers from its input on.
/// </summary>
public delegate void RowPartOfInput<TModel>(TModel model, ReadOnlySpan<float> input, int first, int rows) where TModel : class;

/// <summary>
/// Blocks that each go row by row over the same rows (a Transformer's add, normalization, feed-forward pair, add and
/// normalization over its tokens; an MLP's layers from its input on) run as two parts of the rows, each core taking its
/// part through every block: one hand-off where each block's kernel took one or ran on one core, and each part's values
/// stay in the cache of the core that reads them next. The same rule cuts a pair of dense layers by rows
/// (Gemm.MultiplyTwice). Every row is computed as over all the rows (the generator keeps products whose depth could be
/// summed in parts out of a run), so the bits are the same either way, and the cut is made only where the helper is free
/// to take a part: inside a part of a batch trained on both cores (BatchParts), or on one core, the blocks run over all
/// the rows on this thread.
/// </summary>
public static unsafe class RowParts
{
    /// <summary>The fewest rows a part takes: a column tile's (sixteen), so that its products fill their tiles.</summary>
    public const int MinRows = 16;

    /// <summary>
    /// Floats of kernels from which blocks are not cut by rows: each core would read all of them, which then no longer stay in
    /// its L2 (1 MB on a Zen 4) beside its rows. The generator plans its runs by the same rule (<see cref="SharedRules"/>).
    /// A larger L2 is not enough: on the Intel Xeon (2 MB a core) the MLP's 784-256-128 pair at batch 128 (233K floats) in
    /// two parts of its rows predicted slower (medians of 2 s of calls: 0.214 against 0.195 ms), and 0.190-0.192 against
    /// 0.194-0.195 even with each part's products sliced as one thread slices them and a copy of the weights for each core:
    /// a part took 182 us alone and 188-193 with the other running, where two processes, each with weights of its own, ran
    /// side by side as fast as one.
    /// </summary>
    public const long KernelFloatsInL2 = SharedRules.RowKernelFloatsInL2;

    /// <summary>
    /// Multiply-adds from which a run pays two parts in a prediction, far fewer than in a training step: one hand-off for all
    /// its blocks, and nothing the parts wrote is read on the other core but the outputs. A Sequential MLP of width 32 (2,368
    /// a row) predicting in two parts against one, alternate windows of 5 ms, medians of 41 (three processes): 32 rows
    /// 1.58-2.04 -> 2.10-2.14 us, 128 rows 5.27 -> 7.93; width 16 (672 a row) at 32 rows (21,504) 1.02-1.03 -> 1.09-1.14, 48
    /// rows 1.25-1.34 -> 1.48-1.52, 64 rows 1.50 -> 1.93 (once 3.29 -> 1.98, the helper held up: CoreChoice keeps to one core
    /// then). With the caller writing new inputs before each call and reading the outputs after, as an application does, the
    /// gain is smaller: 21,504 even (1.70-1.79 both), 43,008 (width 16, 64 rows) 2.83-2.87 -> 3.12-3.13, 75,776 (width 32,
    /// 32 rows) 2.56-2.60 -> 3.01-3.02. The generator plans by the same value (<see cref="SharedRules"/>).
    /// </summary>
    public const long InferenceWork = SharedRules.RowInferenceWork;

    /// <summary>
    /// Whether blocks over <paramref name="rows"/> rows, of <paramref name="multiplyAddsPerRow"/> a row against kernels of
    /// <paramref name="kernelFloats"/> floats in all, are worth two parts: at least <see cref="MinRows"/> a part, the kernels
    /// in each core's L2 (<see cref="KernelFloatsInL2"/>), and <paramref name="leastWork"/> multiply-adds at least: in a
    /// training step as many as one product against weights packed ahead takes before it is shared (Gemm.PackedParallelWork),
    /// where the backward pass then reads on one core what the parts wrote on two; in a prediction <see cref="InferenceWork"/>.
    /// Decided by the shape alone.
    /// </summary>
    public static bool Pay(int rows, long multiplyAddsPerRow, long kernelFloats, long leastWork) =>
        rows >= 2 * MinRows && kernelFloats <= KernelFloatsInL2 && rows * multiplyAddsPerRow >= leastWork;

    /// <summary>Whether a run is cut in two parts now: the helper free, and the parts paying (<see cref="Pay"/>) in a training step or a prediction.</summary>
    private static bool Cuts(int rows, long multiplyAddsPerRow, long kernelFloats, bool training) =>
        Helper.CanShare && Pay(rows, multiplyAddsPerRow, kernelFloats, training ? Gemm.PackedParallelWork : InferenceWork);

    /// <summary>
    /// Runs <paramref name="part"/> over all <paramref name="rows"/> rows of <paramref name="model"/>'s tensors: in two parts
    /// on the two cores where they pay (<see cref="Pay"/>) and the helper is free, else over all of them on this thread. A
    /// part's exception is rethrown here.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static void Run<TModel>(TModel model, int rows, long multiplyAddsPerRow, long kernelFloats, bool training, RowPart<TModel> part) where TModel : class
    {
        if (!Cuts(rows, multiplyAddsPerRow, kernelFloats, training))
        {
            part(model, 0, rows);
            return;
        }
        var job = new Job<TModel> { Model = model, Part = part, Rows = rows };
        Share(ref job);
    }

    /// <summary>
    /// Runs <paramref name="part"/> as <see cref="Run{TModel}(TModel, int, long, long, bool, RowPart{TModel})"/> does, handing each
    /// part the whole <paramref name="input"/> it reads.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static void Run<TModel>(TModel model, ReadOnlySpan<float> input, int rows, long multiplyAddsPerRow, long kernelFloats, bool training,
        RowPartOfInput<TModel> part) where TModel : class
    {
        if (!Cuts(rows, multiplyAddsPerRow, kernelFloats, training))
        {
            part(model, input, 0, rows);
            return;
        }
        // The span cannot live in the job: its floats stay pinned here until both parts are done.
        fixed (float* inputs = input)
        {
            var job = new Job<TModel> { Model = model, PartOfInput = part, Input = inputs, InputLength = input.Length, Rows = rows };
            Share(ref job);
        }
    }

    /// <summary>Both parts of <paramref name="job"/> on the two cores; the job lives in the caller's frame, which Helper.For keeps until both are done.</summary>
    [MethodImpl(Compiled.Driver)]
    private static void Share<TModel>(ref Job<TModel> job) where TModel : class =>
        Helper.For(2, &RunPart<TModel>, Unsafe.AsPointer(ref job));

    private struct Job<TModel> where TModel : class
    {
        public TModel Model;
        public RowPart<TModel>? Part;
        public RowPartOfInput<TModel>? PartOfInput;
        public float* Input;
        public int InputLength;
        public int Rows;
    }

    [MethodImpl(Compiled.Driver)]
    private static void RunPart<TModel>(void* state, int index, int worker) where TModel : class
    {
        ref var job = ref Unsafe.AsRef<Job<TModel>>(state);
        var (first, rows) = Helper.PartOf(index, 2, job.Rows);
        if (job.PartOfInput is { } partOfInput) partOfInput(job.Model, new ReadOnlySpan<float>(job.Input, job.InputLength), first, rows);
        else job.Part!(job.Model, first, rows);
    }
}
