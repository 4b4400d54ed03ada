using System;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using ModelGen.Kernels;

namespace ModelGen.Training;

/// <summary>
/// One part of a training batch on one copy of a model: forward, the loss (its share of the batch's mean, the gradient that of
/// the batch's mean) and backward over <paramref name="rows"/> rows from row <paramref name="first"/> of a batch of
/// <paramref name="batch"/>, the weight gradients written to that copy's own gradient buffer. Returns the part's share of
/// the batch's loss.
/// </summary>
public delegate float TrainingPart<TModel>(TModel model, ReadOnlySpan<float> inputs, ReadOnlySpan<float> targets, int first, int rows, int batch)
    where TModel : class;

/// <summary>
/// Data parallelism for small models' training steps. Where every product of a step is too small to share between the
/// cores (below the matrix kernel's threshold), the step ran on one core; instead, its batch is cut in two parts, the
/// first rows trained on the calling core by the model and the rest on the helper core by a replica (the same parameters,
/// buffers and a gradient buffer of its own), and the replica's weight gradients are added to the model's after. Each core
/// keeps the values it writes in its own cache, and the two hand work over once a step, where sharing each product handed
/// it over a dozen times (and made the digits MLP's Fit slower). The parts are fixed by the batch size alone and run one
/// after the other when the helper is busy or the model's <see cref="CoreChoice"/> keeps to one core, so the
/// results do not depend on the thread count.
/// </summary>
public static unsafe class BatchParts
{
    /// <summary>
    /// The fewest multiply-adds a part takes: ~7 us of products, against the hand-off and what crosses between the cores each
    /// step (the weights the update wrote, the replica's gradients). Measured (steps after 2 s of warm-up, medians of 41
    /// windows of 20 ms, old and new builds in turns, two processes each): the digits MLP (4,736 a sample) at 128 samples 33.2,
    /// 39.1 -> 28.6, 24.6 us; at 100, 32.1, 26.0 -> 36.4, 25.7 (no gain); the residual MLP (8,832) at 64, 43.7, 36.2 -> 32.2,
    /// 36.6; at 32, 26.4, 20.8 -> 22.5, 32.9 (a loss).
    /// </summary>
    public const long MinPartWork = 250_000;

    /// <summary>
    /// Whether a step at <paramref name="batch"/> runs in parts: two parts of <see cref="MinPartWork"/> at least
    /// (<paramref name="multiplyAddsPerSample"/>: the model's dense layers' a sample), and every product below the size from
    /// which the matrix kernel shares one by itself (<paramref name="largestProduct"/>: the largest layer's multiply-adds a
    /// sample). Above it, the products share their own work, and parts would only add the gradients' sum. A batch of one row
    /// has no second part, however wide the model.
    /// </summary>
    public static bool Pay(int batch, long multiplyAddsPerSample, long largestProduct) =>
        batch >= 2 && batch * multiplyAddsPerSample >= 2 * MinPartWork && batch * largestProduct < Gemm.ParallelWork;

    /// <summary>
    /// The rows a replica needs for batches of up to <paramref name="maxBatchSize"/>: the second part of the largest batch
    /// that runs in parts (<see cref="Pay"/>), or 0 where none does. The batches that run in parts are a range (enough work,
    /// yet each product too small to share), so it is the range's last one within <paramref name="maxBatchSize"/>: a model
    /// whose products are shared from a few rows on keeps a replica of a few rows, not of half its batch.
    /// </summary>
    public static int ReplicaRows(int maxBatchSize, long multiplyAddsPerSample, long largestProduct)
    {
        int most = largestProduct > 0 ? (int)Math.Min(maxBatchSize, (Gemm.ParallelWork - 1) / largestProduct) : maxBatchSize;
        return Pay(most, multiplyAddsPerSample, largestProduct) ? most - FirstRows(most) : 0;
    }

    /// <summary>The rows of the first part of a batch of <paramref name="batch"/> (the model's; the replica's are the rest).</summary>
    public static int FirstRows(int batch) => Helper.PartOf(0, 2, batch).Count;

    /// <summary>
    /// Trains the first part of the batch on <paramref name="model"/> and the second on <paramref name="replica"/>, on the
    /// two cores where the helper is free, and returns the batch's loss (the parts' shares added). Each part's weight
    /// gradients are in its own copy's buffer; the caller adds them. A part's exception is rethrown here as it was thrown,
    /// the first part's first.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static float Train<TModel>(TModel model, TModel replica, TrainingPart<TModel> part, ReadOnlySpan<float> inputs, int inputSize,
        ReadOnlySpan<float> targets, int targetSize, int batch) where TModel : class
    {
        fixed (float* inputRows = inputs, targetRows = targets)
        {
            var job = new Job<TModel>
            {
                Model = model, Replica = replica, Part = part,
                Inputs = inputRows, InputSize = inputSize, Targets = targetRows, TargetSize = targetSize, Batch = batch,
            };
            // The job lives in this frame, which Helper.For keeps until both parts are done.
            Helper.For(2, &RunPart<TModel>, Unsafe.AsPointer(ref job));
            if (job.First.Failure is not null) ExceptionDispatchInfo.Throw(job.First.Failure);
            if (job.Second.Failure is not null) ExceptionDispatchInfo.Throw(job.Second.Failure);
            return job.First.Loss + job.Second.Loss;
        }
    }

    /// <summary>
    /// The update after a step in parts: the replica's weight gradients added to the model's, then the optimizer's step. Each
    /// core does both for half the buffer (cut on a pair of cache lines), so each half's optimizer state stays on one core,
    /// and the parameters' writes, which must reach the other core (both copies read every parameter), are split between
    /// them. The residual MLP's update (8,970 parameters) on the calling core alone took 7-14 us of its 47-52 us step
    /// (against a no-op optimizer), where on one thread, every value in its own cache, it was lost in the noise of a 70-84 us
    /// step. Each value is computed as the whole update computes it; an optimizer that does not update each parameter alone
    /// gets the sum and its whole update here.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static void Update(Optimizer optimizer, Span<float> parameters, Span<float> gradients, ReadOnlySpan<float> replicaGradients)
    {
        if (replicaGradients.Length != gradients.Length) throw new ArgumentException("The replica's gradient buffer differs in length from the model's.");
        if (!optimizer.UpdatesEachParameterAlone)
        {
            Merges.Pass(replicaGradients, gradients, gradients.Length, accumulate: true);
            optimizer.Step(parameters, gradients);
            return;
        }
        optimizer.Begin(parameters.Length, gradients.Length);
        fixed (float* p = parameters, g = gradients, r = replicaGradients)
        {
            var job = new UpdateJob { Optimizer = optimizer, Parameters = p, Gradients = g, ReplicaGradients = r, Length = parameters.Length };
            Helper.For(2, &UpdateHalf, Unsafe.AsPointer(ref job));
        }
    }

    /// <summary>Floats in a pair of cache lines, which the adjacent-line prefetcher moves together: where the halves are cut.</summary>
    private const int LinePair = 32;

    private struct UpdateJob
    {
        public Optimizer Optimizer;
        public float* Parameters, Gradients, ReplicaGradients;
        public int Length;
    }

    [MethodImpl(Compiled.Driver)]
    private static void UpdateHalf(void* state, int item, int worker)
    {
        ref var job = ref Unsafe.AsRef<UpdateJob>(state);
        var (firstPair, pairs) = Helper.PartOf(item, 2, (job.Length + LinePair - 1) / LinePair);
        int first = Math.Min(firstPair * LinePair, job.Length), count = Math.Min(pairs * LinePair, job.Length - first);
        var gradients = new Span<float>(job.Gradients + first, count);
        Merges.Pass(new ReadOnlySpan<float>(job.ReplicaGradients + first, count), gradients, count, accumulate: true);
        job.Optimizer.UpdateRange(new Span<float>(job.Parameters + first, count), gradients, first);
    }

    private struct Job<TModel> where TModel : class
    {
        public TModel Model, Replica;
        public TrainingPart<TModel> Part;
        public float* Inputs, Targets;
        public int InputSize, TargetSize, Batch;
        public Outcome First, Second;
    }

    /// <summary>What a part left: its share of the loss, or what it threw.</summary>
    private struct Outcome
    {
        public float Loss;
        public Exception? Failure;
    }

    [MethodImpl(Compiled.Driver)]
    private static void RunPart<TModel>(void* state, int item, int worker) where TModel : class
    {
        ref var job = ref Unsafe.AsRef<Job<TModel>>(state);
        ref var outcome = ref item == 0 ? ref job.First : ref job.Second;
        var (first, rows) = Helper.PartOf(item, 2, job.Batch);
        // Each part keeps to its core: the other one is busy with the other part.
        bool alone = Helper.Alone;
        Helper.Alone = true;
        try
        {
            var inputs = new ReadOnlySpan<float>(job.Inputs + (long)first * job.InputSize, rows * job.InputSize);
            var targets = new ReadOnlySpan<float>(job.Targets + (long)first * job.TargetSize, rows * job.TargetSize);
            outcome.Loss = job.Part(item == 0 ? job.Model : job.Replica, inputs, targets, first, rows, job.Batch);
        }
        catch (Exception e)
        {
            outcome.Failure = e;
        }
        finally
        {
            Helper.Alone = alone;
        }
    }
}
