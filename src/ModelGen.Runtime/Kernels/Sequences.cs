using System;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>Keras' Embedding: a row of the table per integer id; with mask_zero, id 0 is padding and masks its step.</summary>
public static class EmbeddingKernel
{
    /// <summary>
    /// Looks up <paramref name="count"/> ids (floats holding integers). Unless <paramref name="mask"/> is empty, writes 1 for
    /// each id other than 0 and 0 for padding. An id that is not an integer in [0, inputDim) is an error naming the layer.
    /// </summary>
    public static void Forward(ReadOnlySpan<float> ids, ReadOnlySpan<float> table, Span<float> output, Span<float> mask, int count, int inputDim, int outputDim,
        string model, string layer)
    {
        for (int i = 0; i < count; i++)
        {
            float id = ids[i];
            if (!(id >= 0 && id < inputDim) || id != MathF.Floor(id))
            {
                throw new ArgumentOutOfRangeException(nameof(ids), id,
                    $"{model}: layer '{layer}' (Embedding) expects integer ids in [0, {inputDim}), but the batch holds {id} at position {i}.");
            }
            table.Slice((int)id * outputDim, outputDim).CopyTo(output.Slice(i * outputDim, outputDim));
            if (!mask.IsEmpty) mask[i] = id == 0f ? 0f : 1f;
        }
    }

    /// <summary>Adds each step's output gradient onto its id's row of the table gradient (ids repeat, so rows accumulate).</summary>
    public static void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> ids, Span<float> tableGradient, int count, int inputDim, int outputDim, bool accumulate)
    {
        if (!accumulate) tableGradient.Slice(0, inputDim * outputDim).Clear();
        for (int i = 0; i < count; i++)
        {
            var row = tableGradient.Slice((int)ids[i] * outputDim, outputDim);
            TensorPrimitives.Add(row, outputGradient.Slice(i * outputDim, outputDim), row);
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
/// are all masked divides by zero, as in Keras.
/// </summary>
public static class SequencePooling
{
    /// <summary>
    /// Each sample's counted steps summed in order into its output row, then divided by their count. The row's sum is
    /// added to a vector at a time in place, where a span call per step cost more than the additions: a bag-of-embeddings
    /// model (Embedding 5000 x 64 over 200 tokens, this mean, two Dense layers) predicted batch 32 in 0.085 ms, now 0.077.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static void AverageForward(ReadOnlySpan<float> input, ReadOnlySpan<float> mask, Span<float> output, int batch, int steps, int features)
    {
        for (int b = 0; b < batch; b++)
        {
            var mean = output.Slice(b * features, features);
            mean.Clear();
            float count = 0;
            for (int t = 0; t < steps; t++)
            {
                float weight = mask.IsEmpty ? 1f : mask[b * steps + t];
                if (weight == 0f) continue;
                count += weight;
                ShortRows.AddTo(mean, input.Slice((b * steps + t) * features, features));
            }
            TensorPrimitives.Divide(mean, count, mean);
        }
    }


    /// <summary>Each counted step receives the output gradient divided by the number of counted steps; masked steps nothing.</summary>
    public static void AverageBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> mask, Span<float> inputGradient, int batch, int steps, int features, bool accumulate)
    {
        for (int b = 0; b < batch; b++)
        {
            float count = 0;
            for (int t = 0; t < steps; t++) count += mask.IsEmpty ? 1f : mask[b * steps + t];
            var g = outputGradient.Slice(b * features, features);
            for (int t = 0; t < steps; t++)
            {
                float weight = (mask.IsEmpty ? 1f : mask[b * steps + t]) / count;
                Merges.Pass(g, inputGradient.Slice((b * steps + t) * features, features), features, accumulate, scale: weight);
            }
        }
    }
}
