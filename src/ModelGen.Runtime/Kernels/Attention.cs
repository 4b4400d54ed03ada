using System;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>The shapes of one multi-head attention layer, and what its forward pass keeps for the backward pass.</summary>
public sealed class AttentionWorkspace : IWorkspace
{
    public AttentionWorkspace(int maxBatchSize, int querySteps, int valueSteps, int queryFeatures, int keyFeatures, int valueFeatures,
        int heads, int keyDim, int valueDim, bool causal)
    {
        (QuerySteps, ValueSteps, QueryFeatures, KeyFeatures, ValueFeatures) = (querySteps, valueSteps, queryFeatures, keyFeatures, valueFeatures);
        (Heads, KeyDim, ValueDim, Causal) = (heads, keyDim, valueDim, causal);
        var arrays = new CountedArrays();
        Queries = arrays.Floats(maxBatchSize * querySteps * heads * keyDim);
        Keys = arrays.Floats(maxBatchSize * valueSteps * heads * keyDim);
        Values = arrays.Floats(maxBatchSize * valueSteps * heads * valueDim);
        Scores = arrays.Floats(maxBatchSize * heads * querySteps * valueSteps);
        Context = arrays.Floats(maxBatchSize * querySteps * heads * valueDim);
        QueryGradient = arrays.Floats(Queries.Length);
        KeyGradient = arrays.Floats(Keys.Length);
        ValueGradient = arrays.Floats(Values.Length);
        ContextGradient = arrays.Floats(Context.Length);
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

    /// <summary>Projected queries, already scaled by 1/sqrt(key_dim) as Keras scales them: (batch, query steps, heads, key_dim).</summary>
    internal float[] Queries { get; }
    internal float[] Keys { get; }
    internal float[] Values { get; }
    /// <summary>Attention probabilities: (batch, heads, query steps, value steps).</summary>
    internal float[] Scores { get; }
    internal float[] Context { get; }
    internal float[] QueryGradient { get; }
    internal float[] KeyGradient { get; }
    internal float[] ValueGradient { get; }
    internal float[] ContextGradient { get; }
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(AttentionWorkspace work, ReadOnlySpan<float> query, ReadOnlySpan<float> value, ReadOnlySpan<float> key,
        ReadOnlySpan<float> queryMask, ReadOnlySpan<float> valueMask, ReadOnlySpan<float> attentionMask,
        ReadOnlySpan<float> queryKernel, ReadOnlySpan<float> queryBias, ReadOnlySpan<float> keyKernel, ReadOnlySpan<float> keyBias,
        ReadOnlySpan<float> valueKernel, ReadOnlySpan<float> valueBias, ReadOnlySpan<float> outputKernel, ReadOnlySpan<float> outputBias,
        Span<float> output, int batch)
    {
        int tq = work.QuerySteps, tv = work.ValueSteps, heads = work.Heads, dk = work.KeyDim, dv = work.ValueDim;
        Gemm.Multiply(query, queryKernel, work.Queries, batch * tq, work.QueryFeatures, heads * dk, queryBias);
        TensorPrimitives.Multiply(work.Queries.AsSpan(0, batch * tq * heads * dk), 1f / MathF.Sqrt(dk), work.Queries.AsSpan(0, batch * tq * heads * dk));
        Gemm.Multiply(key, keyKernel, work.Keys, batch * tv, work.KeyFeatures, heads * dk, keyBias);
        Gemm.Multiply(value, valueKernel, work.Values, batch * tv, work.ValueFeatures, heads * dv, valueBias);

        var context = work.Context.AsSpan(0, batch * tq * heads * dv);
        context.Clear();
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < tq; i++)
                {
                    var scores = work.Scores.AsSpan(((b * heads + h) * tq + i) * tv, tv);
                    var q = work.Queries.AsSpan(((b * tq + i) * heads + h) * dk, dk);
                    for (int j = 0; j < tv; j++)
                    {
                        float score = TensorPrimitives.Dot(q, work.Keys.AsSpan(((b * tv + j) * heads + h) * dk, dk));
                        scores[j] = Attends(work, queryMask, valueMask, attentionMask, b, i, j) ? score : score + MaskedLogit;
                    }
                    Activations.Softmax(scores, scores, 1, scores.Length);
                    var row = context.Slice(((b * tq + i) * heads + h) * dv, dv);
                    for (int j = 0; j < tv; j++) TensorPrimitives.MultiplyAdd(work.Values.AsSpan(((b * tv + j) * heads + h) * dv, dv), scores[j], row, row);
                }
        Gemm.Multiply(context, outputKernel, output, batch * tq, heads * dv, work.QueryFeatures, outputBias);
    }

    private static bool Attends(AttentionWorkspace work, ReadOnlySpan<float> queryMask, ReadOnlySpan<float> valueMask, ReadOnlySpan<float> attentionMask, int b, int i, int j)
    {
        if (work.Causal && j > i) return false;
        if (!queryMask.IsEmpty && queryMask[b * work.QuerySteps + i] == 0f) return false;
        if (!valueMask.IsEmpty && valueMask[b * work.ValueSteps + j] == 0f) return false;
        return attentionMask.IsEmpty || attentionMask[(b * work.QuerySteps + i) * work.ValueSteps + j] != 0f;
    }

    /// <summary>
    /// Backward through the output projection, the weighted sum, the softmax, the scores and the three projections. Input
    /// gradients go to <paramref name="queryGradient"/>, <paramref name="valueGradient"/>, <paramref name="keyGradient"/> (empty: not
    /// wanted); each accumulates when its flag says so (self-attention sends all three to one tensor).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Backward(AttentionWorkspace work, ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> query, ReadOnlySpan<float> value, ReadOnlySpan<float> key,
        ReadOnlySpan<float> queryKernel, ReadOnlySpan<float> keyKernel, ReadOnlySpan<float> valueKernel, ReadOnlySpan<float> outputKernel,
        Span<float> queryKernelGradient, Span<float> queryBiasGradient, Span<float> keyKernelGradient, Span<float> keyBiasGradient,
        Span<float> valueKernelGradient, Span<float> valueBiasGradient, Span<float> outputKernelGradient, Span<float> outputBiasGradient,
        Span<float> queryGradient, Span<float> valueGradient, Span<float> keyGradient, int batch,
        bool computeWeights, bool accumulateWeights, bool accumulateQuery, bool accumulateValue, bool accumulateKey)
    {
        int tq = work.QuerySteps, tv = work.ValueSteps, heads = work.Heads, dk = work.KeyDim, dv = work.ValueDim, dq = work.QueryFeatures;
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
        dQueries.Clear(); dKeys.Clear(); dValues.Clear();
        using var scoreScratch = Scratch<float>.Rent(tv);
        var dScores = scoreScratch.Span;
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < tq; i++)
                {
                    var p = work.Scores.AsSpan(((b * heads + h) * tq + i) * tv, tv);
                    var g = dContext.Slice(((b * tq + i) * heads + h) * dv, dv);
                    // dP_j = g·v_j, dV_j += P_j·g; then the softmax: dS_j = P_j (dP_j - Σ P dP).
                    for (int j = 0; j < tv; j++)
                    {
                        int vj = ((b * tv + j) * heads + h) * dv;
                        dScores[j] = TensorPrimitives.Dot(g, work.Values.AsSpan(vj, dv));
                        TensorPrimitives.MultiplyAdd(g, p[j], dValues.Slice(vj, dv), dValues.Slice(vj, dv));
                    }
                    float weighted = TensorPrimitives.Dot((ReadOnlySpan<float>)p, dScores);
                    var q = work.Queries.AsSpan(((b * tq + i) * heads + h) * dk, dk);
                    var dqRow = dQueries.Slice(((b * tq + i) * heads + h) * dk, dk);
                    for (int j = 0; j < tv; j++)
                    {
                        float ds = p[j] * (dScores[j] - weighted);
                        if (ds == 0f) continue;
                        int kj = ((b * tv + j) * heads + h) * dk;
                        TensorPrimitives.MultiplyAdd(work.Keys.AsSpan(kj, dk), ds, dqRow, dqRow);
                        TensorPrimitives.MultiplyAdd(q, ds, dKeys.Slice(kj, dk), dKeys.Slice(kj, dk));
                    }
                }
        // The stored queries were scaled after projection: the projection's gradient carries the same scale.
        TensorPrimitives.Multiply(dQueries, 1f / MathF.Sqrt(dk), dQueries);
        Project(query, queryKernel, dQueries, queryKernelGradient, queryBiasGradient, queryGradient, batch * tq, work.QueryFeatures, heads * dk, computeWeights, accumulateWeights, accumulateQuery);
        Project(key, keyKernel, dKeys, keyKernelGradient, keyBiasGradient, keyGradient, batch * tv, work.KeyFeatures, heads * dk, computeWeights, accumulateWeights, accumulateKey);
        Project(value, valueKernel, dValues, valueKernelGradient, valueBiasGradient, valueGradient, batch * tv, work.ValueFeatures, heads * dv, computeWeights, accumulateWeights, accumulateValue);
    }

    /// <summary>Backward of one input projection y = x·W + b, given dy.</summary>
    private static void Project(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, ReadOnlySpan<float> projectedGradient,
        Span<float> kernelGradient, Span<float> biasGradient, Span<float> inputGradient, int rows, int features, int width,
        bool computeWeights, bool accumulateWeights, bool accumulateInput)
    {
        if (computeWeights)
        {
            Gemm.MultiplyTransposedA(input, projectedGradient, kernelGradient, features, rows, width, accumulateWeights);
            if (!biasGradient.IsEmpty) Reductions.SumRows(projectedGradient, biasGradient, rows, width, accumulateWeights);
        }
        if (!inputGradient.IsEmpty) Gemm.MultiplyTransposedB(projectedGradient, kernel, inputGradient, rows, width, features, accumulateInput);
    }
}
