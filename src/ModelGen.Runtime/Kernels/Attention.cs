using System;
using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>
/// The shapes of one multi-head attention layer, and what its forward pass keeps for the backward pass. A workspace not
/// <c>forTraining</c> (an inference copy's) keeps no probabilities and has no gradients: a (sample, head) pair's scores are
/// written where the worker that runs it wrote the last pair's, and stay in its L1 between the two products.
/// </summary>
public sealed class AttentionWorkspace : IWorkspace
{
    public AttentionWorkspace(int maxBatchSize, int querySteps, int valueSteps, int queryFeatures, int keyFeatures, int valueFeatures,
        int heads, int keyDim, int valueDim, bool causal, bool forTraining)
    {
        (QuerySteps, ValueSteps, QueryFeatures, KeyFeatures, ValueFeatures) = (querySteps, valueSteps, queryFeatures, keyFeatures, valueFeatures);
        (Heads, KeyDim, ValueDim, Causal) = (heads, keyDim, valueDim, causal);
        var arrays = new CountedArrays(forTraining);
        Queries = arrays.Floats(maxBatchSize * querySteps * heads * keyDim);
        Keys = arrays.Floats(maxBatchSize * valueSteps * heads * keyDim);
        Values = arrays.Floats(maxBatchSize * valueSteps * heads * valueDim);
        Context = arrays.Floats(maxBatchSize * querySteps * heads * valueDim);
        Scores = arrays.Floats((forTraining ? maxBatchSize * heads : Helper.Workers) * querySteps * valueSteps);
        QueryGradient = arrays.TrainingFloats(Queries.Length);
        KeyGradient = arrays.TrainingFloats(Keys.Length);
        ValueGradient = arrays.TrainingFloats(Values.Length);
        ContextGradient = arrays.TrainingFloats(Context.Length);
        ForTraining = forTraining;
        Bytes = arrays.Bytes;
    }

    public long Bytes { get; }

    public int QuerySteps { get; }
    public int ValueSteps { get; }
    public int QueryFeatures { get; }
    public int KeyFeatures { get; }
    public int ValueFeatures { get; }
    public int Heads { get; }
    public int KeyDim { get; }
    public int ValueDim { get; }
    public bool Causal { get; }
    /// <summary>Whether the forward pass keeps the probabilities and the workspace has the backward pass's gradients.</summary>
    public bool ForTraining { get; }

    /// <summary>Projected queries, already scaled by 1/sqrt(key_dim) as Keras scales them: (batch, query steps, heads, key_dim).</summary>
    internal AlignedBuffer Queries { get; }
    internal AlignedBuffer Keys { get; }
    internal AlignedBuffer Values { get; }
    /// <summary>
    /// Attention probabilities: (batch, heads, query steps, value steps); where not <see cref="ForTraining"/>, one pair's for
    /// each worker (<see cref="Helper.Workers"/>), overwritten pair after pair.
    /// </summary>
    internal AlignedBuffer Scores { get; }
    internal AlignedBuffer Context { get; }
    /// <summary>Rows of <see cref="Context"/> the last forward pass computed (batch x query steps): the only ones the output projection may read.</summary>
    internal int ContextRows { get; set; }
    internal AlignedBuffer QueryGradient { get; }
    internal AlignedBuffer KeyGradient { get; }
    internal AlignedBuffer ValueGradient { get; }
    internal AlignedBuffer ContextGradient { get; }

    /// <summary>The query, key and value projections of a batch: rows (batch x steps), input features, output columns (heads x dim).</summary>
    internal Shape QueryProjection(int batch) => new(batch * QuerySteps, QueryFeatures, Heads * KeyDim);
    internal Shape KeyProjection(int batch) => new(batch * ValueSteps, KeyFeatures, Heads * KeyDim);
    internal Shape ValueProjection(int batch) => new(batch * ValueSteps, ValueFeatures, Heads * ValueDim);
    /// <summary>The output projection of <paramref name="rows"/> rows of the context (a batch's: batch x query steps) of heads x value dim into the query's features.</summary>
    internal Shape OutputProjection(int rows) => new(rows, Heads * ValueDim, QueryFeatures);

    internal readonly record struct Shape(int Rows, int Features, int Width)
    {
        public long MultiplyAdds => (long)Rows * Features * Width;
    }
}

/// <summary>
/// Keras' MultiHeadAttention: projections (EinsumDense kernels (features, heads, dim) are (features, heads·dim) matrices),
/// scores = (q / sqrt(key_dim))·k per head, masked positions shifted by -1e9 before the softmax (Keras' Softmax with a mask),
/// context = probabilities·v, and the output projection. The attention mask combines the explicit one (1 attend, 0 not), the
/// query and value sequence masks, and the causal mask.
/// </summary>
public static class Attention
{
    /// <summary>Keras adds (1 - mask)·(-1e9) to the scores of masked positions.</summary>
    private const float MaskedLogit = -1e9f;

    /// <summary>The whole forward pass: <see cref="Attend"/>, then <see cref="ProjectOutput"/> over every row of the batch.</summary>
    [MethodImpl(Compiled.Driver)]
    public static void Forward(AttentionWorkspace work, ReadOnlySpan<float> query, ReadOnlySpan<float> value, ReadOnlySpan<float> key,
        ReadOnlySpan<float> queryMask, ReadOnlySpan<float> valueMask, ReadOnlySpan<float> attentionMask,
        ReadOnlySpan<float> queryKernel, ReadOnlySpan<float> queryBias, ReadOnlySpan<float> keyKernel, ReadOnlySpan<float> keyBias,
        ReadOnlySpan<float> valueKernel, ReadOnlySpan<float> valueBias, ReadOnlySpan<float> outputKernel, ReadOnlySpan<float> outputBias,
        Span<float> output, int batch)
    {
        Attend(work, query, value, key, queryMask, valueMask, attentionMask, queryKernel, queryBias, keyKernel, keyBias, valueKernel, valueBias, batch);
        ProjectOutput(work, outputKernel, outputBias, output, 0, batch * work.QuerySteps);
    }

    /// <summary>
    /// The forward pass up to the output projection: the three projections, the scores, the softmax and the weighted sums,
    /// into the workspace's context, whose rows <see cref="ProjectOutput"/> then projects (a generated row run calls it on
    /// each core's part of the rows).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Attend(AttentionWorkspace work, ReadOnlySpan<float> query, ReadOnlySpan<float> value, ReadOnlySpan<float> key,
        ReadOnlySpan<float> queryMask, ReadOnlySpan<float> valueMask, ReadOnlySpan<float> attentionMask,
        ReadOnlySpan<float> queryKernel, ReadOnlySpan<float> queryBias, ReadOnlySpan<float> keyKernel, ReadOnlySpan<float> keyBias,
        ReadOnlySpan<float> valueKernel, ReadOnlySpan<float> valueBias, int batch)
    {
        int tq = work.QuerySteps, tv = work.ValueSteps, heads = work.Heads, dk = work.KeyDim, dv = work.ValueDim;
        work.ContextRows = 0; // until this pass has written them: a pass that throws leaves none to project
        var (qShape, kShape, vShape) = (work.QueryProjection(batch), work.KeyProjection(batch), work.ValueProjection(batch));
        // Checked here, on the caller's thread: a projection run by the helper would throw there, wrapped, after the others wrote.
        CheckProjection(query, queryKernel, queryBias, work.Queries.Span, qShape);
        CheckProjection(key, keyKernel, keyBias, work.Keys.Span, kShape);
        CheckProjection(value, valueKernel, valueBias, work.Values.Span, vShape);
        fixed (float* q = query, k = key, v = value, wq = queryKernel, bq = queryBias, wk = keyKernel, bk = keyBias, wv = valueKernel, bv = valueBias)
        fixed (float* queries = work.Queries, keys = work.Keys, values = work.Values)
        {
            var projections = new Projections(3, new Projection(q, wq, bq, queries, qShape), new Projection(k, wk, bk, keys, kShape),
                new Projection(v, wv, bv, values, vShape));
            projections.Run(SharesProjections(work, batch));
        }
        Merges.Scale(work.Queries, batch * tq * heads * dk, 1f / MathF.Sqrt(dk));

        fixed (float* queries = work.Queries, keys = work.Keys, values = work.Values, scores = work.Scores, contexts = work.Context)
        fixed (float* qm = queryMask, vm = valueMask, am = attentionMask)
        {
            var job = new Pairs(work, batch, queries, keys, values, scores, contexts, new Masks(work, qm, vm, am));
            job.Run(&ForwardPair);
        }
        work.ContextRows = batch * tq;
    }

    /// <summary>
    /// Rows [<paramref name="firstRow"/>, + <paramref name="rows"/>) of the output projection, context·W + b, from the context
    /// the last <see cref="Attend"/> left, into <paramref name="output"/> (those rows alone): each row the same bits whatever
    /// rows are asked with it. Shared between the cores in halves of the columns where it is large enough and the helper is free.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void ProjectOutput(AttentionWorkspace work, ReadOnlySpan<float> outputKernel, ReadOnlySpan<float> outputBias,
        Span<float> output, int firstRow, int rows)
    {
        int width = work.Heads * work.ValueDim;
        if (firstRow < 0 || rows < 0 || (long)firstRow + rows > work.ContextRows)
            throw new ArgumentOutOfRangeException(nameof(rows), $"Attention: rows [{firstRow}, {(long)firstRow + rows}) of the output projection, but the last forward pass left the context of {work.ContextRows} rows.");
        var context = work.Context.AsSpan(firstRow * width, rows * width);
        var shape = work.OutputProjection(rows);
        CheckProjection(context, outputKernel, outputBias, output, shape);
        fixed (float* c = context, wo = outputKernel, bo = outputBias, o = output)
        {
            var projection = new Projections(1, new Projection(c, wo, bo, o, shape));
            projection.Run(Helper.CanShare && SharesOutputProjection(work, rows));
        }
    }

    /// <summary>
    /// Backward through the output projection, the weighted sum, the softmax, the scores and the three projections. Input
    /// gradients go to <paramref name="queryGradient"/>, <paramref name="valueGradient"/>, <paramref name="keyGradient"/> (empty: not
    /// wanted); each accumulates when its flag says so (self-attention sends all three to one tensor).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Backward(AttentionWorkspace work, ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> query, ReadOnlySpan<float> value, ReadOnlySpan<float> key,
        ReadOnlySpan<float> queryKernel, ReadOnlySpan<float> keyKernel, ReadOnlySpan<float> valueKernel, ReadOnlySpan<float> outputKernel,
        Span<float> queryKernelGradient, Span<float> queryBiasGradient, Span<float> keyKernelGradient, Span<float> keyBiasGradient,
        Span<float> valueKernelGradient, Span<float> valueBiasGradient, Span<float> outputKernelGradient, Span<float> outputBiasGradient,
        Span<float> queryGradient, Span<float> valueGradient, Span<float> keyGradient, int batch,
        bool computeWeights, bool accumulateWeights, bool accumulateQuery, bool accumulateValue, bool accumulateKey)
    {
        int tq = work.QuerySteps, tv = work.ValueSteps, heads = work.Heads, dk = work.KeyDim, dv = work.ValueDim, dq = work.QueryFeatures;
        Workspaces.RequireTraining(work, "attention");
        if ((long)batch * tq > work.ContextRows)
            throw new InvalidOperationException($"Attention: a backward pass over {batch} samples ({(long)batch * tq} rows), but the last forward pass left the state of {work.ContextRows} rows.");
        var context = work.Context.AsSpan(0, batch * tq * heads * dv);
        var dContext = work.ContextGradient.AsSpan(0, context.Length);
        if (computeWeights)
        {
            Gemm.MultiplyTransposedA(context, outputGradient, outputKernelGradient, heads * dv, batch * tq, dq, accumulateWeights);
            if (!outputBiasGradient.IsEmpty) Reductions.SumRows(outputGradient, outputBiasGradient, batch * tq, dq, accumulateWeights);
        }
        Gemm.MultiplyTransposedB(outputGradient, outputKernel, dContext, batch * tq, dq, heads * dv);

        var dQueries = work.QueryGradient.AsSpan(0, batch * tq * heads * dk);
        var dKeys = work.KeyGradient.AsSpan(0, batch * tv * heads * dk);
        var dValues = work.ValueGradient.AsSpan(0, batch * tv * heads * dv);
        fixed (float* queries = work.Queries, keys = work.Keys, values = work.Values, scores = work.Scores, contextGradients = work.ContextGradient)
        fixed (float* queryGradients = work.QueryGradient, keyGradients = work.KeyGradient, valueGradients = work.ValueGradient)
        {
            var job = new Pairs(work, batch, queries, keys, values, scores, contextGradients, default, queryGradients, keyGradients, valueGradients);
            job.Run(&BackwardPair);
        }
        // The stored queries were scaled after projection: the projection's gradient carries the same scale.
        Merges.Scale(dQueries, dQueries.Length, 1f / MathF.Sqrt(dk));
        Project(query, queryKernel, dQueries, queryKernelGradient, queryBiasGradient, queryGradient, work.QueryProjection(batch), computeWeights, accumulateWeights, accumulateQuery);
        Project(key, keyKernel, dKeys, keyKernelGradient, keyBiasGradient, keyGradient, work.KeyProjection(batch), computeWeights, accumulateWeights, accumulateKey);
        Project(value, valueKernel, dValues, valueKernelGradient, valueBiasGradient, valueGradient, work.ValueProjection(batch), computeWeights, accumulateWeights, accumulateValue);
    }

    /// <summary>
    /// Whether a forward pass hands its three input projections to the two cores in halves of their columns: each too small
    /// for Gemm to share, yet of at least <see cref="SharedProjectionWork"/>.
    /// </summary>
    internal static bool SharesProjections(AttentionWorkspace work, int batch) =>
        IsSharedProjection(work.QueryProjection(batch)) && IsSharedProjection(work.KeyProjection(batch)) && IsSharedProjection(work.ValueProjection(batch));

    /// <summary>Whether the output projection of <paramref name="rows"/> rows (<see cref="ProjectOutput"/>) goes to the two cores in halves, by the same rule.</summary>
    internal static bool SharesOutputProjection(AttentionWorkspace work, int rows) => IsSharedProjection(work.OutputProjection(rows));

    private static bool IsSharedProjection(AttentionWorkspace.Shape shape) =>
        Gemm.RunsOnOneThread(shape.Rows, shape.Features, shape.Width) && shape.MultiplyAdds >= SharedProjectionWork;

    private static void CheckProjection(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, ReadOnlySpan<float> bias, Span<float> output, AttentionWorkspace.Shape shape) =>
        Gemm.CheckMultiply(input.Length, kernel.Length, output.Length, bias.Length, shape.Rows, shape.Features, shape.Width);

    /// <summary>
    /// Multiply-adds of each input projection from which the three go to the two cores, and of the output projection from
    /// which it does. One sequence of 64 tokens, 64 features, 4 heads of 16 (four of 262K): the transformer's predict at
    /// batch 1 took 5-8% less with the three input projections whole (0.915, 0.921 and 0.946 in three runs of 15 to 21
    /// rounds, builds in turns); in halves, the output projection's too, 1.09x faster again (the median of 8 rounds, fresh
    /// processes in turns; 0.83-1.49x). The Attention sample's projections of 196K (64 sequences of 12 tokens, 16 wide) lost
    /// instead, shared whole: its Fit took longer in 7 of 10 alternations, by 2-11%.
    /// </summary>
    private const long SharedProjectionWork = 250_000;

    /// <summary>One projection, x·W + b (no bias where it is null), as pointers: for a part run on either core.</summary>
    private readonly unsafe struct Projection(float* input, float* kernel, float* bias, float* output, AttentionWorkspace.Shape shape)
    {
        /// <summary>The whole product, which Gemm shares between the cores where it is large enough.</summary>
        [MethodImpl(Compiled.Driver)]
        public void Run()
        {
            var (rows, features, width) = shape;
            Gemm.Multiply(new ReadOnlySpan<float>(input, rows * features), new ReadOnlySpan<float>(kernel, features * width),
                new Span<float>(output, rows * width), rows, features, width, bias == null ? default : new ReadOnlySpan<float>(bias, width));
        }

        /// <summary>Parts a shared projection makes: two halves of its columns, or one where it is a tile wide or less.</summary>
        public int Halves => FirstHalf(shape.Width) < shape.Width ? 2 : 1;

        /// <summary>
        /// Columns [0, <see cref="FirstHalf"/>) or the rest (<paramref name="half"/> 0 or 1) on this thread, or all of them for
        /// a projection of one half: every output the same chain of multiply-adds as in the whole product, the same bits.
        /// </summary>
        [MethodImpl(Compiled.Driver)]
        public void RunHalf(int half)
        {
            var (rows, features, width) = shape;
            int first = half == 0 ? 0 : FirstHalf(width), columns = half == 0 ? FirstHalf(width) : width - first;
            // The half's columns of W and of the output are views with the whole product's row stride.
            Gemm.MultiplyViews(new ReadOnlySpan<float>(input, rows * features), features, 1,
                new ReadOnlySpan<float>(kernel + first, features * width - first), width, 1,
                new Span<float>(output + first, rows * width - first), width, rows, features, columns,
                bias: bias == null ? default : new ReadOnlySpan<float>(bias + first, columns));
        }
    }

    /// <summary>
    /// Columns of a projection's first half: half its width rounded up to whole tiles of AVX-512's micro-kernel (32 columns,
    /// a multiple of the other paths' tiles), so only the projection's last tile may be partial; all of one 32 columns wide
    /// or less.
    /// </summary>
    private static int FirstHalf(int width) => Math.Min(width, (width / 2 + HalfTile - 1) / HalfTile * HalfTile);

    private const int HalfTile = 32;

    /// <summary>
    /// The query, key and value projections of a forward pass, or the output projection alone; shared, each in its halves
    /// (<see cref="Projection.Halves"/>) in order, so three projections of 64 columns make six parts, three a core, where
    /// whole ones made two and one.
    /// </summary>
    private readonly unsafe struct Projections(int count, Projection first, Projection second = default, Projection third = default)
    {
        private readonly Projection first = first, second = second, third = third;

        private Projection this[int index] => index == 0 ? first : index == 1 ? second : third;

        [MethodImpl(Compiled.Driver)]
        public void Run(bool shared)
        {
            if (!shared)
            {
                for (int index = 0; index < count; index++) this[index].Run();
                return;
            }
            int parts = 0;
            for (int index = 0; index < count; index++) parts += this[index].Halves;
            fixed (Projections* self = &this) Helper.For(parts, &RunPart, self);
        }

        private static void RunPart(void* state, int part, int worker)
        {
            ref readonly var projections = ref *(Projections*)state;
            int index = 0;
            for (; part >= projections[index].Halves; index++) part -= projections[index].Halves;
            projections[index].RunHalf(part);
        }
    }

    /// <summary>
    /// Multiply-adds of a pass's (sample, head) pairs from which both cores share them: one sequence of 64 tokens through 4
    /// heads of 16 (524K) took 0.153 ms on one core, 0.142 on two (the whole benchmark block, builds in turns). A pair's
    /// arithmetic never depends on which core runs it.
    /// </summary>
    private const long SharedPairWork = 250_000;

    /// <summary>Whether a pass over <paramref name="batch"/> samples shares its (sample, head) pairs between the cores.</summary>
    internal static bool SharesPairs(AttentionWorkspace work, int batch) =>
        (long)batch * work.Heads * work.QuerySteps * work.ValueSteps * (work.KeyDim + work.ValueDim) >= SharedPairWork;

    /// <summary>The causal flag and the query, value and attention masks as pointers, null where there is none.</summary>
    private readonly unsafe struct Masks(AttentionWorkspace work, float* query, float* value, float* attention)
    {
        private readonly float* query = query, value = value, attention = attention;
        private readonly bool causal = work.Causal;
        private readonly int querySteps = work.QuerySteps, valueSteps = work.ValueSteps;

        public bool Any => causal || query != null || value != null || attention != null;

        /// <summary>Whether query step <paramref name="i"/> of sample <paramref name="b"/> attends to value step <paramref name="j"/>.</summary>
        public bool Attends(int b, int i, int j) =>
            !(causal && j > i) && (query == null || query[b * querySteps + i] != 0f) && (value == null || value[b * valueSteps + j] != 0f)
            && (attention == null || attention[((long)b * querySteps + i) * valueSteps + j] != 0f);
    }

    /// <summary>
    /// One pass over every (sample, head) pair: each pair's queries, keys and values are rows of the projections a head's
    /// width apart, which its products read as strided views (Gemm.MultiplyViews); the pairs are independent, so both cores
    /// take them from opposite ends (Helper.For) where the pass is large enough.
    /// </summary>
    private readonly unsafe struct Pairs(AttentionWorkspace work, int batch, float* queries, float* keys, float* values, float* scores, float* contexts,
        Masks masks, float* queryGradients = null, float* keyGradients = null, float* valueGradients = null)
    {
        public readonly int QuerySteps = work.QuerySteps, ValueSteps = work.ValueSteps, Heads = work.Heads, KeyDim = work.KeyDim, ValueDim = work.ValueDim;
        private readonly int pairs = batch * work.Heads;
        private readonly bool shared = SharesPairs(work, batch);
        /// <summary>Projected (and scaled) queries, keys, values: (batch, steps, heads, dim).</summary>
        public readonly float* Queries = queries, Keys = keys, Values = values;
        /// <summary>Probabilities, (batch, heads, query steps, value steps); or, where not <see cref="KeepsScores"/>, a pair's per worker.</summary>
        public readonly float* Scores = scores;
        /// <summary>Whether each pair's probabilities stay for the backward pass (a workspace for training).</summary>
        public readonly bool KeepsScores = work.ForTraining;
        /// <summary>The context (forward) or its gradient (backward): (batch, query steps, heads, value dim).</summary>
        public readonly float* Contexts = contexts;
        public readonly Masks Masks = masks;
        public readonly float* QueryGradients = queryGradients, KeyGradients = keyGradients, ValueGradients = valueGradients;

        public void Run(delegate*<void*, int, int, void> pair)
        {
            fixed (Pairs* self = &this)
            {
                if (shared) Helper.For(pairs, pair, self);
                else for (int index = 0; index < pairs; index++) pair(self, index, 0);
            }
        }

        /// <summary>
        /// Head h of sample b in a (batch, steps, heads, width) tensor, where it lies: its rows are <see cref="RowStride"/>
        /// apart, and the span reaches the end of its last row.
        /// </summary>
        public Span<float> Head(float* tensor, int b, int h, int steps, int width) =>
            new(tensor + ((long)b * steps * Heads + h) * width, (steps - 1) * Heads * width + width);

        /// <summary>Floats between a head's rows in a (batch, steps, heads, width) tensor.</summary>
        public int RowStride(int width) => Heads * width;
    }

    /// <summary>
    /// Pair <paramref name="index"/> (sample index / heads, head index % heads): scores, masked softmax, weighted sum. The
    /// products read the pair's head where it lies in the projections and write its columns of the context (Gemm.MultiplyViews).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void ForwardPair(void* state, int index, int worker)
    {
        ref readonly var job = ref *(Pairs*)state;
        int tq = job.QuerySteps, tv = job.ValueSteps, dk = job.KeyDim, dv = job.ValueDim, b = index / job.Heads, h = index % job.Heads;
        int keyRows = job.RowStride(dk), valueRows = job.RowStride(dv);
        var keys = job.Head(job.Keys, b, h, tv, dk);
        var scores = new Span<float>(job.Scores + (long)(job.KeepsScores ? index : worker) * tq * tv, tq * tv);
        // scores = q·kᵀ: kᵀ is the keys' view with its strides swapped.
        Gemm.MultiplyViews(job.Head(job.Queries, b, h, tq, dk), keyRows, 1, keys, 1, keyRows, scores, tv, tq, dk, tv);
        if (job.Masks.Any)
        {
            for (int i = 0; i < tq; i++)
                for (int j = 0; j < tv; j++)
                    if (!job.Masks.Attends(b, i, j)) scores[i * tv + j] += MaskedLogit;
        }
        Activations.Softmax(scores, scores, tq, tv);
        Gemm.MultiplyViews(scores, tv, 1, job.Head(job.Values, b, h, tv, dv), valueRows, 1, job.Head(job.Contexts, b, h, tq, dv), valueRows, tq, tv, dv);
    }

    /// <summary>
    /// Pair <paramref name="index"/> backward: dP = dC·vᵀ and dV = Pᵀ·dC; the softmax's dS = P ⊙ (dP - Σ P·dP) per row; then
    /// dQ = dS·k and dK = dSᵀ·q. Each pair reads its head where it lies and writes only its own head's columns of the three
    /// gradients; only dS has a buffer of its own.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void BackwardPair(void* state, int index, int worker)
    {
        ref readonly var job = ref *(Pairs*)state;
        int tq = job.QuerySteps, tv = job.ValueSteps, dk = job.KeyDim, dv = job.ValueDim, b = index / job.Heads, h = index % job.Heads;
        int keyRows = job.RowStride(dk), valueRows = job.RowStride(dv);
        using var scratch = Scratch<float>.Rent(tq * tv);
        var dScores = scratch.Span;
        var queries = job.Head(job.Queries, b, h, tq, dk);
        var keys = job.Head(job.Keys, b, h, tv, dk);
        var dContext = job.Head(job.Contexts, b, h, tq, dv);
        var probabilities = new ReadOnlySpan<float>(job.Scores + (long)index * tq * tv, tq * tv);
        Gemm.MultiplyViews(dContext, valueRows, 1, job.Head(job.Values, b, h, tv, dv), 1, valueRows, dScores, tv, tq, dv, tv);
        Gemm.MultiplyViews(probabilities, 1, tv, dContext, valueRows, 1, job.Head(job.ValueGradients, b, h, tv, dv), valueRows, tv, tq, dv);
        Activations.SoftmaxBackward(probabilities, dScores, tq, tv);
        Gemm.MultiplyViews(dScores, tv, 1, keys, keyRows, 1, job.Head(job.QueryGradients, b, h, tq, dk), keyRows, tq, tv, dk);
        Gemm.MultiplyViews(dScores, 1, tv, queries, keyRows, 1, job.Head(job.KeyGradients, b, h, tv, dk), keyRows, tv, tq, dk);
    }

    /// <summary>Backward of one input projection y = x·W + b, given dy.</summary>
    private static void Project(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, ReadOnlySpan<float> projectedGradient,
        Span<float> kernelGradient, Span<float> biasGradient, Span<float> inputGradient, AttentionWorkspace.Shape shape,
        bool computeWeights, bool accumulateWeights, bool accumulateInput)
    {
        var (rows, features, width) = shape;
        if (computeWeights)
        {
            Gemm.MultiplyTransposedA(input, projectedGradient, kernelGradient, features, rows, width, accumulateWeights);
            if (!biasGradient.IsEmpty) Reductions.SumRows(projectedGradient, biasGradient, rows, width, accumulateWeights);
        }
        if (!inputGradient.IsEmpty) Gemm.MultiplyTransposedB(projectedGradient, kernel, inputGradient, rows, width, features, accumulateInput);
    }
}
