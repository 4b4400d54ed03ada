using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>Keras' Embedding: a row of the table per integer id; with mask_zero, id 0 is padding and masks its step.</summary>
public static class EmbeddingKernel
{
    /// <summary>
    /// Looks up <paramref name="count"/> ids (floats holding integers). Unless <paramref name="mask"/> is empty, writes 1 for
    /// each id other than 0 and 0 for padding. An id that is not an integer in [0, inputDim) is an error naming the layer,
    /// raised before anything is written. The copies are shared by both cores: a bag of 200 words of 64 floats at batch 32
    /// copies 1.6 MB.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Forward(ReadOnlySpan<float> ids, ReadOnlySpan<float> table, Span<float> output, Span<float> mask, int count, int inputDim, int outputDim,
        string model, string layer)
    {
        if (ids.Length < count || table.Length < inputDim * outputDim || output.Length < count * outputDim || (!mask.IsEmpty && mask.Length < count))
            throw new ArgumentException($"{model}: layer '{layer}' (Embedding) needs {count} ids, a table of {inputDim} x {outputDim} and room for {count} rows of {outputDim}.");
        RequireRows(ids.Slice(0, count), inputDim, model, layer);
        fixed (float* i = ids, t = table, o = output, m = mask)
        {
            var work = new Lookups(i, t, o, mask.IsEmpty ? null : m, outputDim);
            Helper.ForRanges(ref work, count, floatsPerItem: 2L * outputDim);
        }
    }

    /// <summary>
    /// An Embedding that only a GlobalAveragePooling1D reads, in one pass (PyTorch's EmbeddingBag): each sample's mean of its
    /// <paramref name="steps"/> ids' table rows, read where they lie, so the lookups are never written (a bag of 200 words of
    /// 64 at batch 32: 1.6 MB written and read again). With <paramref name="maskZero"/>, id 0 is padding and not counted.
    /// The same bits as the lookups, then the mean: each sample's counted rows added in step order, then divided by their count.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void MeanForward(ReadOnlySpan<float> ids, ReadOnlySpan<float> table, Span<float> output, int batch, int steps, int inputDim, int outputDim,
        bool maskZero, string model, string layer)
    {
        if (ids.Length < batch * steps || table.Length < inputDim * outputDim || output.Length < batch * outputDim)
            throw new ArgumentException($"{model}: layer '{layer}' (Embedding) needs {batch} x {steps} ids, a table of {inputDim} x {outputDim} and room for {batch} means of {outputDim}.");
        RequireRows(ids.Slice(0, batch * steps), inputDim, model, layer);
        fixed (float* i = ids, t = table, o = output)
        {
            var work = new SequencePooling.Means<SequencePooling.TableSteps>(new(t, i, outputDim, maskZero), o, steps, outputDim);
            Helper.ForRanges(ref work, batch, floatsPerItem: (long)steps * outputDim);
        }
    }

    /// <summary>Refuses, before anything is written, a batch holding an id that is not an integer in [0, inputDim), naming the layer and the position.</summary>
    private static void RequireRows(ReadOnlySpan<float> ids, int inputDim, string model, string layer)
    {
        int bad = FirstBadId(ids, inputDim);
        if (bad >= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(ids), ids[bad],
                $"{model}: layer '{layer}' (Embedding) expects integer ids in [0, {inputDim}), but the batch holds {ids[bad]} at position {bad}.");
        }
    }

    /// <summary>The position of the first id that is not an integer in [0, inputDim), or -1; a vector of ids at a time.</summary>
    [MethodImpl(Compiled.Driver)]
    private static int FirstBadId(ReadOnlySpan<float> ids, int inputDim)
    {
        int i = 0;
        var limit = new Vector<float>(inputDim);
        for (; i <= ids.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            var id = new Vector<float>(ids.Slice(i));
            // NaN fails every comparison, so it is caught with the ids out of range.
            var good = Vector.GreaterThanOrEqual(id, Vector<float>.Zero) & Vector.LessThan(id, limit) & Vector.Equals(id, Vector.Floor(id));
            if (!Vector.EqualsAll(good, new Vector<int>(-1))) break;
        }
        for (; i < ids.Length; i++)
        {
            float id = ids[i];
            if (!(id >= 0 && id < inputDim) || id != MathF.Floor(id)) return i;
        }
        return -1;
    }

    /// <summary>Ids [first, first + count): each its table row, and its mask unless null.</summary>
    private readonly unsafe struct Lookups(float* ids, float* table, float* output, float* mask, int outputDim) : IRanges
    {
        [MethodImpl(Compiled.Kernel)]
        public void Run(int first, int count)
        {
            for (int i = first; i < first + count; i++)
            {
                float id = ids[i];
                Buffer.MemoryCopy(table + (long)id * outputDim, output + (long)i * outputDim, (long)outputDim * sizeof(float), (long)outputDim * sizeof(float));
                if (mask != null) mask[i] = id == 0f ? 0f : 1f;
            }
        }
    }

    /// <summary>
    /// Adds each step's output gradient onto its id's row of the table gradient (ids repeat, so rows accumulate, in the
    /// order of the steps). A large table is cut in two halves, one a core: each clears its half (unless accumulating)
    /// and takes the ids that fall in it, so every row's sum has one order on one core or two. Ids outside the table
    /// (which the forward pass refuses) add nothing.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> ids, Span<float> tableGradient, int count, int inputDim, int outputDim, bool accumulate)
    {
        if (ids.Length < count || outputGradient.Length < count * outputDim || tableGradient.Length < inputDim * outputDim)
            throw new ArgumentException($"Embedding's backward pass needs {count} ids, {count} gradient rows of {outputDim} and a table gradient of {inputDim} x {outputDim}.");
        fixed (float* g = outputGradient, i = ids, t = tableGradient)
            IntoTableParts(new TableGradient(g, i, t, count, inputDim, outputDim, accumulate, meanOver: 0, maskZero: false));
    }

    /// <summary>
    /// <see cref="MeanForward"/>'s backward pass: each step's share of its sample's mean gradient (divided by the sample's
    /// counted steps, <see cref="SequencePooling.Share"/>; 0 for padding) onto its id's row of the table gradient, as
    /// <see cref="Backward"/> adds the gradient GlobalAveragePooling1D passes back (the same values, added in the same order).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void MeanBackward(ReadOnlySpan<float> meanGradient, ReadOnlySpan<float> ids, Span<float> tableGradient, int batch, int steps, int inputDim, int outputDim,
        bool maskZero, bool accumulate)
    {
        if (ids.Length < batch * steps || meanGradient.Length < batch * outputDim || tableGradient.Length < inputDim * outputDim)
            throw new ArgumentException($"Embedding's backward pass through its mean needs {batch} x {steps} ids, {batch} gradient rows of {outputDim} and a table gradient of {inputDim} x {outputDim}.");
        fixed (float* g = meanGradient, i = ids, t = tableGradient)
            IntoTableParts(new TableGradient(g, i, t, batch * steps, inputDim, outputDim, accumulate, meanOver: steps, maskZero));
    }

    private static unsafe void IntoTableParts(TableGradient job) => Helper.For(job.Parts, &TableGradient.Run, in job);

    /// <summary>Floats (table gradient and output gradient) above which the table's halves go to both cores: 256 KB.</summary>
    private const long TableSplitAbove = 64 * 1024;

    /// <summary>
    /// The table gradient over one of <see cref="Parts"/> equal runs of the table's rows (two where the work is large enough):
    /// from a gradient row per id, or, with <paramref name="meanOver"/> steps a sample, from a row per sample, each step's share of it.
    /// </summary>
    private readonly unsafe struct TableGradient(float* gradient, float* ids, float* tableGradient, int count, int inputDim, int outputDim, bool accumulate, int meanOver, bool maskZero)
    {
        /// <summary>Each id's row of the table gradient, and the weight its step counts with in its sample's mean.</summary>
        private readonly SequencePooling.TableSteps rows = new(tableGradient, ids, outputDim, maskZero);

        public int Parts => (long)(inputDim + count) * outputDim > TableSplitAbove ? 2 : 1;

        public static void Run(void* state, int part, int worker) => ((TableGradient*)state)->Add(part);

        [MethodImpl(Compiled.Kernel)]
        private void Add(int part)
        {
            int from = (int)((long)inputDim * part / Parts), to = (int)((long)inputDim * (part + 1) / Parts);
            if (!accumulate) new Span<float>(tableGradient + (long)from * outputDim, (to - from) * outputDim).Clear();
            using var share = Scratch<float>.RentUncleared(meanOver > 0 ? outputDim : 0);
            for (int i = 0; i < count; i++)
            {
                if (meanOver > 0 && i % meanOver == 0)
                    SequencePooling.Share(new ReadOnlySpan<float>(gradient + (long)(i / meanOver) * outputDim, outputDim), rows.Counted(i, meanOver), share.Span);
                int id = (int)ids[i];
                if (id < from || id >= to) continue;
                var row = new Span<float>(rows.Row(i), outputDim);
                if (meanOver == 0) ShortRows.AddTo(row, new ReadOnlySpan<float>(gradient + (long)i * outputDim, outputDim));
                else ShortRows.Scaled(share.Span, rows.Weight(i), row, accumulate: true);
            }
        }
    }
}

/// <summary>Keras' Masking: a step whose features all equal the mask value is masked, and its features are zeroed.</summary>
public static class MaskingKernel
{
    public static void Forward(ReadOnlySpan<float> input, Span<float> output, Span<float> mask, int steps, int features, float maskValue)
    {
        for (int s = 0; s < steps; s++)
        {
            var values = input.Slice(s * features, features);
            bool kept = values.IndexOfAnyExcept(maskValue) >= 0;
            mask[s] = kept ? 1f : 0f;
            if (kept) values.CopyTo(output.Slice(s * features, features));
            else output.Slice(s * features, features).Clear();
        }
    }

    /// <summary>The gradient passes where the step was kept.</summary>
    public static void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> mask, Span<float> inputGradient, int steps, int features, bool accumulate)
    {
        for (int s = 0; s < steps; s++)
        {
            var to = inputGradient.Slice(s * features, features);
            if (mask[s] != 0f) Merges.Pass(outputGradient.Slice(s * features, features), to, features, accumulate);
            else if (!accumulate) to.Clear();
        }
    }
}

/// <summary>
/// Keras' GlobalAveragePooling1D: per sample, Σ_t m_t·x_t / Σ_t m_t over the steps (m = 1 without a mask). A sample whose steps
/// are all masked divides by zero, as in Keras. GlobalAveragePooling2D is the same mean over a sample's pixels, taken as its
/// steps (both are ops.mean in Keras).
/// </summary>
public static class SequencePooling
{
    /// <summary>
    /// Each sample's counted steps summed in order, then divided by their count (<see cref="SumSamples"/>, its sums in
    /// registers). The samples are shared by both cores (with the embedding's lookups shared too, a bag-of-embeddings model,
    /// Embedding 5000 x 64 over 200 tokens, this mean and two Dense layers, predicted batch 32 in 0.078, then 0.045-0.048 ms).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void AverageForward(ReadOnlySpan<float> input, ReadOnlySpan<float> mask, Span<float> output, int batch, int steps, int features)
    {
        if (input.Length < batch * steps * features || output.Length < batch * features || (!mask.IsEmpty && mask.Length < batch * steps))
            throw new ArgumentException($"GlobalAveragePooling1D of {batch} samples of {steps} steps of {features} needs that many values.");
        fixed (float* x = input, m = mask, y = output)
        {
            var work = new Means<InputSteps>(new(x, mask.IsEmpty ? null : m, features), y, steps, features);
            Helper.ForRanges(ref work, batch, floatsPerItem: (long)steps * features);
        }
    }

    /// <summary>
    /// Samples [first, first + count) of <see cref="AverageForward"/>: each sample's counted rows added in step order, then
    /// divided by their count. <typeparamref name="TSteps"/> says where a step's row lies and how much it counts (the input's
    /// steps under a mask, or the table rows ids name), as a type, so each use compiles to its own loop without a branch per
    /// step (a per-step test of which kind cost the bag of words' predict 5%).
    /// </summary>
    internal readonly unsafe struct Means<TSteps>(TSteps rows, float* output, int steps, int features) : IVectorRanges where TSteps : unmanaged, IStepRows
    {
        public readonly TSteps Rows = rows;
        public readonly float* Output = output;
        public readonly int Steps = steps, Features = features;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            SumSamples<TLanes, TVector, TSteps>(this, first, count);
    }

    /// <summary>The samples of <see cref="Means{TSteps}"/>, each the mean of its own steps (<see cref="MeanOfRows"/>).</summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumSamples<TLanes, TVector, TSteps>(in Means<TSteps> means, int first, int count)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TSteps : unmanaged, IStepRows
    {
        for (int b = first; b < first + count; b++)
        {
            long start = (long)b * means.Steps;
            MeanOfRows<TLanes, TVector, TSteps>(means.Rows, start, start + means.Steps, means.Rows.Counted(start, means.Steps),
                means.Output + (long)b * means.Features, means.Features);
        }
    }

    /// <summary>
    /// The counted rows among steps [<paramref name="start"/>, <paramref name="end"/>) summed in step order from zero, then
    /// divided by <paramref name="counted"/>, into <paramref name="mean"/>: four vectors of features at a time, their sums in
    /// registers over the steps, then two whole vectors if left, then the features left a vector at a time (the last one
    /// partial; each chain waits on its last add a step, so the more vectors a pass the sooner it ends): the sequence mean's and
    /// each average pooling window's (Pooling.AverageForward). Sums kept in the output row, stored and reloaded at every
    /// step, waited on that: the bag of words' predict at batch 32 spent 78% of its time there, and went from 0.030-0.037 to
    /// 0.018-0.020 ms (its training step from 0.176-0.243 to 0.147-0.151; three rounds of fresh processes in turns).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void MeanOfRows<TLanes, TVector, TSteps>(in TSteps rows, long start, long end, float counted, float* mean, int features)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TSteps : unmanaged, IStepRows
    {
        int width = TLanes.Count, c = 0;
        var divisor = TLanes.Broadcast(counted);
        for (; c + 4 * width <= features; c += 4 * width)
        {
            TVector sum0 = TLanes.Zero, sum1 = sum0, sum2 = sum0, sum3 = sum0;
            for (long step = start; step < end; step++)
            {
                if (rows.Weight(step) == 0f) continue;
                ref float row = ref *(rows.Row(step) + c);
                sum0 = TLanes.Add(sum0, TLanes.Load(ref row));
                sum1 = TLanes.Add(sum1, TLanes.Load(ref Unsafe.Add(ref row, width)));
                sum2 = TLanes.Add(sum2, TLanes.Load(ref Unsafe.Add(ref row, 2 * width)));
                sum3 = TLanes.Add(sum3, TLanes.Load(ref Unsafe.Add(ref row, 3 * width)));
            }
            TLanes.Store(ref mean[c], TLanes.Divide(sum0, divisor));
            TLanes.Store(ref mean[c + width], TLanes.Divide(sum1, divisor));
            TLanes.Store(ref mean[c + 2 * width], TLanes.Divide(sum2, divisor));
            TLanes.Store(ref mean[c + 3 * width], TLanes.Divide(sum3, divisor));
        }
        if (c + 2 * width <= features)
        {
            TVector sum0 = TLanes.Zero, sum1 = sum0;
            for (long step = start; step < end; step++)
            {
                if (rows.Weight(step) == 0f) continue;
                ref float row = ref *(rows.Row(step) + c);
                sum0 = TLanes.Add(sum0, TLanes.Load(ref row));
                sum1 = TLanes.Add(sum1, TLanes.Load(ref Unsafe.Add(ref row, width)));
            }
            TLanes.Store(ref mean[c], TLanes.Divide(sum0, divisor));
            TLanes.Store(ref mean[c + width], TLanes.Divide(sum1, divisor));
            c += 2 * width;
        }
        for (; c < features; c += width)
        {
            int lanes = Math.Min(width, features - c);
            var sum = TLanes.Zero;
            for (long step = start; step < end; step++)
                if (rows.Weight(step) != 0f) sum = TLanes.Add(sum, WholeOrFirst.Load<TLanes, TVector>(ref *(rows.Row(step) + c), lanes));
            WholeOrFirst.Store<TLanes, TVector>(ref mean[c], TLanes.Divide(sum, divisor), lanes);
        }
    }

    /// <summary>
    /// Where a pass over a sample's steps finds a step's row of features (of the values, or of their gradient), and the weight
    /// the step counts with in the sample's mean (0: left out): <see cref="Means{TSteps}"/>, <see cref="Shares"/>, the
    /// embedding's table gradient, and the pixels of a pooling window (Pooling.WindowPixels).
    /// </summary>
    internal unsafe interface IStepRows
    {
        float Weight(long step);
        float* Row(long step);
        /// <summary>
        /// How much steps [<paramref name="first"/>, + <paramref name="steps"/>) count in a sample's mean: their weights summed in
        /// order (a mask's), or their count where every weight is 1, or 0 at padding ids, which any order sums to the same float
        /// below 2^24 steps (a chain of float adds a step was 12% of the bag of words' prediction at batch 32, 200 steps a sample).
        /// </summary>
        float Counted(long first, int steps);
    }

    /// <summary>A tensor's own steps (the input, or its gradient), weighted by the mask (null: every step counts once).</summary>
    internal readonly unsafe struct InputSteps(float* input, float* mask, int features) : IStepRows
    {
        public float Weight(long step) => mask == null ? 1f : mask[step];
        public float* Row(long step) => input + step * features;
        public float Counted(long first, int steps) => mask == null ? steps : SumInOrder(mask + first, steps);
    }

    /// <summary>The rows the ids name in a table (the embeddings, or their gradient); under maskZero, padding (id 0) counts nothing.</summary>
    internal readonly unsafe struct TableSteps(float* table, float* ids, int features, bool maskZero) : IStepRows
    {
        public float Weight(long step) => maskZero && ids[step] == 0f ? 0f : 1f;
        public float* Row(long step) => table + (long)ids[step] * features;
        public float Counted(long first, int steps) => maskZero ? steps - Zeros(ids + first, steps) : steps;
    }

    /// <summary>
    /// Each counted step receives the output gradient divided by the number of counted steps (<see cref="Share"/>); masked
    /// steps nothing. With <paramref name="rectified"/> (the output of a ReLU the mean alone reads, as many values as the input
    /// gradient), that ReLU's backward in the same pass: each value its share where the ReLU's output is positive, else 0,
    /// the bits of this pass and then Activations.Backward's (a ResNet's last ReLU at batch 32: one pass over 4 MB, not two).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void AverageBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> mask, Span<float> inputGradient, int batch, int steps, int features, bool accumulate,
        ReadOnlySpan<float> rectified = default)
    {
        long values = (long)batch * steps * features;
        if (outputGradient.Length < batch * features || inputGradient.Length < values || (!mask.IsEmpty && mask.Length < batch * steps) || (!rectified.IsEmpty && rectified.Length < values))
            throw new ArgumentException($"GlobalAveragePooling1D's backward pass over {batch} samples of {steps} steps of {features} needs that many values.");
        fixed (float* g = outputGradient, m = mask, dx = inputGradient, relu = rectified)
        {
            var work = new Shares(g, new InputSteps(dx, mask.IsEmpty ? null : m, features), rectified.IsEmpty ? null : relu, steps, features, accumulate);
            Helper.ForRanges(ref work, batch, floatsPerItem: (long)steps * features);
        }
    }

    /// <summary>
    /// Samples [first, first + count) of <see cref="AverageBackward"/>: <paramref name="gradientRows"/> are the input gradient's
    /// steps, weighted by the mask; <paramref name="rectified"/> the ReLU output whose derivative they take (null: none).
    /// </summary>
    private readonly unsafe struct Shares(float* outputGradient, InputSteps gradientRows, float* rectified, int steps, int features, bool accumulate) : IRanges
    {
        [MethodImpl(Compiled.Kernel)]
        public void Run(int first, int count)
        {
            using var share = Scratch<float>.RentUncleared(features);
            for (int b = first; b < first + count; b++)
            {
                long start = (long)b * steps;
                Share(new ReadOnlySpan<float>(outputGradient + (long)b * features, features), gradientRows.Counted(start, steps), share.Span);
                for (long step = start; step < start + steps; step++)
                {
                    var row = new Span<float>(gradientRows.Row(step), features);
                    if (rectified == null) ShortRows.Scaled(share.Span, gradientRows.Weight(step), row, accumulate);
                    else ShortRows.ScaledWherePositive(share.Span, gradientRows.Weight(step), new ReadOnlySpan<float>(rectified + step * features, features), row, accumulate);
                }
            }
        }
    }

    /// <summary>
    /// A sample's share of its mean's gradient, as Keras' gradient of the mean has it (TensorFlow's Mean and RealDiv
    /// gradients): divided by the sample's counted steps, once per sample; each step then takes the share times its weight
    /// (the mask's 1 or 0). Multiplying by 1 / count instead differs in the last bit for some counts (3, 5, 6, ...).
    /// </summary>
    internal static void Share(ReadOnlySpan<float> gradient, float counted, Span<float> share) =>
        System.Numerics.Tensors.TensorPrimitives.Divide(gradient, counted, share);

    /// <summary>The <paramref name="count"/> weights at <paramref name="weights"/> added one by one, in order.</summary>
    private static unsafe float SumInOrder(float* weights, int count)
    {
        float sum = 0;
        for (int i = 0; i < count; i++) sum += weights[i];
        return sum;
    }

    /// <summary>How many of the <paramref name="count"/> ids at <paramref name="ids"/> are 0 (either zero: padding, as Weight tests it).</summary>
    private static unsafe int Zeros(float* ids, int count)
    {
        int zeros = 0, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + Vector256<float>.Count <= count; i += Vector256<float>.Count)
                zeros += BitOperations.PopCount(Vector256.Equals(Vector256.Load(ids + i), Vector256<float>.Zero).ExtractMostSignificantBits());
        }
        for (; i < count; i++) if (ids[i] == 0f) zeros++;
        return zeros;
    }
}
