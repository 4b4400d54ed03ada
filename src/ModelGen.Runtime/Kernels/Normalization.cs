using System;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>
/// Batch normalization over the last axis of a channels-last tensor, seen as <c>rows × channels</c> (rows = batch × H × W),
/// in Keras' arithmetic: the batch variance is the biased one, and y = x·inv + (beta - mean·inv) with inv = gamma / sqrt(var + eps).
/// </summary>
public static class BatchNorm
{
    /// <summary>Rows summed in float before the partial sum joins the double total: vectorised, yet exact enough for large batches.</summary>
    private const int Block = 64;

    /// <summary>
    /// Training mode: normalises with the batch's statistics, which it leaves in <paramref name="mean"/>, <paramref name="variance"/>
    /// (for the moving statistics) and <paramref name="inverseStd"/> (for the backward pass).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TrainingForward(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        Span<float> mean, Span<float> variance, Span<float> inverseStd, int rows, int channels, float epsilon)
    {
        ColumnSums(x, rows, channels, shift: default, squared: false, mean, divideBy: rows);
        ColumnSums(x, rows, channels, shift: mean, squared: true, variance, divideBy: rows);
        for (int c = 0; c < channels; c++) inverseStd[c] = 1f / MathF.Sqrt(variance[c] + epsilon);
        Normalize(x, y, gamma, beta, mean, inverseStd, rows, channels);
    }

    /// <summary>Inference mode (and a frozen layer in training): normalises with the moving statistics.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void InferenceForward(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        ReadOnlySpan<float> movingMean, ReadOnlySpan<float> movingVariance, int rows, int channels, float epsilon)
    {
        using var inverseStdScratch = Scratch<float>.Rent(channels);
        var inverseStd = inverseStdScratch.Span;
        for (int c = 0; c < channels; c++) inverseStd[c] = 1f / MathF.Sqrt(movingVariance[c] + epsilon);
        Normalize(x, y, gamma, beta, movingMean, inverseStd, rows, channels);
    }

    /// <summary>y = x·inv + (beta - mean·inv), inv = gamma·inverseStd: Keras' order of operations.</summary>
    private static void Normalize(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> inverseStd, int rows, int channels)
    {
        using var scaleScratch = Scratch<float>.Rent(2 * channels);
        var scale = scaleScratch.Span;
        var shift = scale.Slice(channels, channels);
        scale = scale.Slice(0, channels);
        TensorPrimitives.Multiply(gamma.Slice(0, channels), inverseStd.Slice(0, channels), scale);
        TensorPrimitives.Multiply(mean.Slice(0, channels), scale, shift);
        TensorPrimitives.Subtract(beta.Slice(0, channels), shift, shift);
        for (int row = 0; row < rows; row++)
        {
            TensorPrimitives.FusedMultiplyAdd(x.Slice(row * channels, channels), scale, shift, y.Slice(row * channels, channels));
        }
    }

    /// <summary>
    /// Training-mode backward. With x̂ = (x - mean)·inverseStd: dgamma = Σ dy·x̂, dbeta = Σ dy, and
    /// dx = gamma·inverseStd·(dy - mean(dy) - x̂·mean(dy·x̂)), the batch statistics' own dependence on x included.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TrainingBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> x, ReadOnlySpan<float> gamma,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> inverseStd, Span<float> inputGradient, Span<float> gammaGradient, Span<float> betaGradient,
        int rows, int channels, bool computeInput, bool accumulateInput, bool computeWeights, bool accumulateWeights)
    {
        using var sumsScratch = Scratch<float>.Rent(4 * channels);
        var sums = sumsScratch.Span;
        var sumDy = sums.Slice(0, channels);
        var sumDyXhat = sums.Slice(channels, channels);
        var a = sums.Slice(2 * channels, channels);
        var k = sums.Slice(3 * channels, channels);

        // Σ dy and Σ dy·x̂, with x̂ = (x - mean)·inverseStd.
        ColumnSums(outputGradient, rows, channels, shift: default, squared: false, sumDy, divideBy: 1);
        ColumnSums(x, rows, channels, shift: mean, squared: false, sumDyXhat, divideBy: 1, product: outputGradient);
        TensorPrimitives.Multiply(sumDyXhat, inverseStd.Slice(0, channels), sumDyXhat);

        if (computeWeights)
        {
            Merges.Pass(sumDyXhat, gammaGradient, channels, accumulateWeights);
            Merges.Pass(sumDy, betaGradient, channels, accumulateWeights);
        }
        if (!computeInput) return;

        // dx = a·dy - k·(x - mean) - a·mean(dy), with a = gamma·inverseStd and k = a·inverseStd·mean(dy·x̂); x is centred
        // before it is scaled, since the three terms largely cancel.
        float invRows = 1f / rows;
        var centred = sumDyXhat; // reused once k is formed
        for (int c = 0; c < channels; c++)
        {
            a[c] = gamma[c] * inverseStd[c];
            k[c] = -a[c] * inverseStd[c] * sumDyXhat[c] * invRows;
            sumDy[c] = -a[c] * sumDy[c] * invRows;
        }
        var offset = sumDy;
        for (int row = 0; row < rows; row++)
        {
            var dy = outputGradient.Slice(row * channels, channels);
            var dx = inputGradient.Slice(row * channels, channels);
            TensorPrimitives.Subtract(x.Slice(row * channels, channels), mean.Slice(0, channels), centred);
            if (accumulateInput)
            {
                TensorPrimitives.FusedMultiplyAdd(dy, a, dx, dx);
                TensorPrimitives.Add(dx, offset, dx);
            }
            else TensorPrimitives.FusedMultiplyAdd(dy, a, offset, dx);
            TensorPrimitives.FusedMultiplyAdd(centred, k, dx, dx);
        }
    }

    /// <summary>Inference-mode backward (a frozen layer): the statistics are constants, so dx = dy·gamma / sqrt(moving_variance + eps).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void InferenceBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> gamma, ReadOnlySpan<float> movingVariance,
        Span<float> inputGradient, int rows, int channels, float epsilon, bool accumulate)
    {
        using var scaleScratch = Scratch<float>.Rent(channels);
        var scale = scaleScratch.Span;
        for (int c = 0; c < channels; c++) scale[c] = gamma[c] / MathF.Sqrt(movingVariance[c] + epsilon);
        for (int row = 0; row < rows; row++)
        {
            var dy = outputGradient.Slice(row * channels, channels);
            var dx = inputGradient.Slice(row * channels, channels);
            if (accumulate) TensorPrimitives.FusedMultiplyAdd(dy, scale, dx, dx);
            else TensorPrimitives.Multiply(dy, scale, dx);
        }
    }

    /// <summary>moving = moving·momentum + batch·(1 - momentum), Keras' update; called once the step's loss is known to be finite.</summary>
    public static void UpdateMovingStatistics(Span<float> movingMean, Span<float> movingVariance, ReadOnlySpan<float> mean, ReadOnlySpan<float> variance, int channels, float momentum)
    {
        float rate = 1f - momentum;
        for (int c = 0; c < channels; c++)
        {
            movingMean[c] = movingMean[c] * momentum + mean[c] * rate;
            movingVariance[c] = movingVariance[c] * momentum + variance[c] * rate;
        }
    }

    /// <summary>
    /// Per column, the sum over rows of (x - shift)² when <paramref name="squared"/>, of (x - shift)·product when a product
    /// is given, else of (x - shift), divided by <paramref name="divideBy"/>; an empty shift is zero. Blocks of rows add in
    /// float, blocks into double.
    /// </summary>
    private static void ColumnSums(ReadOnlySpan<float> x, int rows, int channels, ReadOnlySpan<float> shift, bool squared, Span<float> result,
        double divideBy, ReadOnlySpan<float> product = default)
    {
        using var partialScratch = Scratch<float>.Rent(2 * channels);
        var partial = partialScratch.Span;
        var term = partial.Slice(channels, channels);
        partial = partial.Slice(0, channels);
        using var totalScratch = Scratch<double>.Rent(channels);
        var total = totalScratch.Span;
        total.Clear();
        for (int start = 0; start < rows; start += Block)
        {
            partial.Clear();
            int end = Math.Min(rows, start + Block);
            for (int row = start; row < end; row++)
            {
                var values = x.Slice(row * channels, channels);
                if (shift.IsEmpty) values.CopyTo(term);
                else TensorPrimitives.Subtract(values, shift.Slice(0, channels), term);
                if (squared) TensorPrimitives.FusedMultiplyAdd(term, term, partial, partial);
                else if (!product.IsEmpty) TensorPrimitives.FusedMultiplyAdd(term, product.Slice(row * channels, channels), partial, partial);
                else TensorPrimitives.Add(partial, term, partial);
            }
            for (int c = 0; c < channels; c++) total[c] += partial[c];
        }
        for (int c = 0; c < channels; c++) result[c] = (float)(total[c] / divideBy);
    }
}

/// <summary>
/// Layer normalization over the last axis, row by row (a row is one position of one sample), in Keras' arithmetic:
/// biased variance, inv = gamma / sqrt(var + eps), y = x·inv + (beta - mean·inv). The same in training and inference.
/// </summary>
public static class LayerNorm
{
    /// <summary>Normalises each row; keeps each row's mean and 1/sqrt(var + eps) for the backward pass unless those spans are empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        Span<float> mean, Span<float> inverseStd, int rows, int columns, float epsilon)
    {
        using var scaleScratch = Scratch<float>.Rent(2 * columns);
        var scale = scaleScratch.Span;
        var shift = scale.Slice(columns, columns);
        scale = scale.Slice(0, columns);
        for (int row = 0; row < rows; row++)
        {
            var values = x.Slice(row * columns, columns);
            var output = y.Slice(row * columns, columns);
            float average = TensorPrimitives.Sum(values) / columns;
            TensorPrimitives.Subtract(values, average, output);                     // centred first: no cancellation
            float variance = TensorPrimitives.SumOfSquares((ReadOnlySpan<float>)output) / columns;
            float inverse = 1f / MathF.Sqrt(variance + epsilon);
            if (!mean.IsEmpty)
            {
                mean[row] = average;
                inverseStd[row] = inverse;
            }
            TensorPrimitives.Multiply(gamma.Slice(0, columns), inverse, scale);
            TensorPrimitives.Multiply(scale, -average, shift);
            TensorPrimitives.Add(shift, beta.Slice(0, columns), shift);
            TensorPrimitives.FusedMultiplyAdd(values, scale, shift, output);
        }
    }

    /// <summary>
    /// With x̂ = (x - mean)·inverseStd and g = dy·gamma per row: dx = inverseStd·(g - mean(g) - x̂·mean(g·x̂));
    /// dgamma = Σ dy·x̂ and dbeta = Σ dy over all rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> x, ReadOnlySpan<float> gamma,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> inverseStd, Span<float> inputGradient, Span<float> gammaGradient, Span<float> betaGradient,
        int rows, int columns, bool computeInput, bool accumulateInput, bool computeWeights, bool accumulateWeights)
    {
        using var rowScratch = Scratch<float>.Rent(2 * columns);
        var scratch = rowScratch.Span;
        var normalized = scratch.Slice(0, columns);
        var g = scratch.Slice(columns, columns);
        if (computeWeights && !accumulateWeights)
        {
            gammaGradient.Slice(0, columns).Clear();
            betaGradient.Slice(0, columns).Clear();
        }
        for (int row = 0; row < rows; row++)
        {
            var dy = outputGradient.Slice(row * columns, columns);
            TensorPrimitives.Subtract(x.Slice(row * columns, columns), mean[row], normalized);
            TensorPrimitives.Multiply(normalized, inverseStd[row], normalized);
            if (computeWeights)
            {
                TensorPrimitives.FusedMultiplyAdd(dy, normalized, gammaGradient.Slice(0, columns), gammaGradient.Slice(0, columns));
                TensorPrimitives.Add(betaGradient.Slice(0, columns), dy, betaGradient.Slice(0, columns));
            }
            if (!computeInput) continue;
            TensorPrimitives.Multiply(dy, gamma.Slice(0, columns), g);
            float meanG = TensorPrimitives.Sum((ReadOnlySpan<float>)g) / columns;
            float meanGx = TensorPrimitives.Dot((ReadOnlySpan<float>)g, normalized) / columns;
            // dx = inverseStd·g - inverseStd·meanG - inverseStd·meanGx·x̂
            var dx = inputGradient.Slice(row * columns, columns);
            TensorPrimitives.Subtract(g, meanG, g);
            TensorPrimitives.MultiplyAdd(normalized, -meanGx, g, g);
            if (accumulateInput) TensorPrimitives.MultiplyAdd(g, inverseStd[row], dx, dx);
            else TensorPrimitives.Multiply(g, inverseStd[row], dx);
        }
    }
}
