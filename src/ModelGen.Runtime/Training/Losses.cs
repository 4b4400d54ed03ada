using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ModelGen.Kernels;

namespace ModelGen.Training;

/// <summary>
/// Keras' losses on probabilities: each of <c>rows</c> rows reduced over its <c>units</c> (the last axis), then the mean over
/// the rows ("sum_over_batch_size"; a sequence output has a row per step of each sample). Each call
/// returns the loss and, when a gradient span is given, writes dLoss/dPrediction. Sums run in double so
/// the result does not depend on the row count's rounding.
/// </summary>
public static class Losses
{
    /// <summary>Keras' backend epsilon: probabilities are clipped to [Epsilon, 1 - Epsilon].</summary>
    public const float Epsilon = 1e-7f;

    /// <param name="gradient">Receives dLoss/dPrediction (rows, units); empty to skip.</param>
    /// <param name="model">Model name for error messages.</param>
    /// <param name="layer">Output layer name for error messages.</param>
    /// <param name="meanOver">
    /// The rows the mean is taken over, where these <paramref name="rows"/> are one part of a batch that many rows long
    /// (<see cref="BatchParts"/>): the loss returned is this part's share of the batch's mean, and the gradient that of the
    /// batch's mean. 0: <paramref name="rows"/>.
    /// </param>
    /// <param name="firstRow">Where these rows start in that batch: a bad label is reported at its index in the batch.</param>
    [MethodImpl(Compiled.Kernel)]
    public static float Compute(Loss loss, ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, Span<float> gradient,
        int rows, int units, string model, string layer, int meanOver = 0, int firstRow = 0)
    {
        bool wantGradient = !gradient.IsEmpty;
        CheckLengths(loss, predictions, targets, gradient, rows, units, model, layer);
        if (loss == Loss.SparseCategoricalCrossentropy) CheckLabels(targets, rows, units, model, layer, firstRow);
        int batchRows = meanOver > 0 ? meanOver : rows;
        double total = 0;
        switch (loss)
        {
            case Loss.MeanSquaredError:
            case Loss.BinaryCrossentropy:
            {
                int count = rows * units, meanCount = batchRows * units;
                return (float)(SumOverValues(loss, predictions, targets, gradient, count, meanCount) / meanCount);
            }
            case Loss.CategoricalCrossentropy:
            case Loss.SparseCategoricalCrossentropy:
            {
                bool sparse = loss == Loss.SparseCategoricalCrossentropy;
                for (int row = 0; row < rows; row++)
                {
                    var p = predictions.Slice(row * units, units);
                    var dp = wantGradient ? gradient.Slice(row * units, units) : default;
                    total += CrossEntropy(p, sparse ? default : targets.Slice(row * units, units),
                        sparse ? (int)targets[row] : -1, dp, 1f / batchRows);
                }
                return (float)(total / batchRows);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(loss), loss, null);
        }
    }

    /// <summary>
    /// The losses taken value by value, summed over <paramref name="count"/> values, their gradient that of the mean over
    /// <paramref name="meanCount"/>, on the SIMD path the kernels use now.
    /// </summary>
    private static double SumOverValues(Loss loss, ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, Span<float> gradient, int count, int meanCount) =>
        (Simd.Current, loss) switch
        {
            (SimdPath.Avx512, Loss.MeanSquaredError) => MeanSquaredError<Lanes512, Vector512<float>>(predictions, targets, gradient, count, meanCount),
            (SimdPath.Avx512, _) => BinaryCrossentropy<Lanes512, Vector512<float>>(predictions, targets, gradient, count, meanCount),
            (SimdPath.Avx2, Loss.MeanSquaredError) => MeanSquaredError<Lanes256, Vector256<float>>(predictions, targets, gradient, count, meanCount),
            (SimdPath.Avx2, _) => BinaryCrossentropy<Lanes256, Vector256<float>>(predictions, targets, gradient, count, meanCount),
            (_, Loss.MeanSquaredError) => MeanSquaredError<Lanes128, Vector128<float>>(predictions, targets, gradient, count, meanCount),
            _ => BinaryCrossentropy<Lanes128, Vector128<float>>(predictions, targets, gradient, count, meanCount),
        };

    private static bool InRange(float p) => p > Epsilon && p < 1f - Epsilon;

    /// <summary>
    /// Keras' binary cross-entropy summed over <paramref name="count"/> values, and where <paramref name="gradient"/> is not
    /// empty dLoss/dPrediction of their mean: each term -(y·ln p + (1 - y)·ln(1 - p)) of the clipped p in float, as Keras
    /// computes it, its logarithms a vector at a time (<see cref="VectorMath.Log"/>: two scalar double logarithms a value made
    /// the autoencoder's loss 1.2 ms of a 9.6 ms training step). The terms go to four double sums, value i to sum i % 4,
    /// whatever the vector width, so every SIMD path returns the same total; the gradient is each value's scalar
    /// arithmetic, the same bits.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static double BinaryCrossentropy<TLanes, TVector>(ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, Span<float> gradient, int count, int meanCount)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref float p0 = ref MemoryMarshal.GetReference(predictions), y0 = ref MemoryMarshal.GetReference(targets), g0 = ref MemoryMarshal.GetReference(gradient);
        bool wantGradient = !gradient.IsEmpty;
        var low = TLanes.Broadcast(Epsilon);
        var high = TLanes.Broadcast(1f - Epsilon);
        var one = TLanes.Broadcast(1f);
        var scale = TLanes.Broadcast(1f / meanCount);
        var sums = Vector256<double>.Zero;
        for (int i = 0; i < count; i += TLanes.Count)
        {
            int lanes = Math.Min(TLanes.Count, count - i);
            bool whole = lanes == TLanes.Count;
            var p = whole ? TLanes.Load(ref Unsafe.Add(ref p0, i)) : TLanes.LoadFirst(ref Unsafe.Add(ref p0, i), lanes);
            var y = whole ? TLanes.Load(ref Unsafe.Add(ref y0, i)) : TLanes.LoadFirst(ref Unsafe.Add(ref y0, i), lanes);
            // Math.Clamp's rule, NaN kept: compares with a NaN are false.
            var clipped = TLanes.Select(TLanes.Below(p, Epsilon), low, TLanes.Select(TLanes.Greater(p, high), high, p));
            var complement = TLanes.Subtract(one, clipped);
            var yComplement = TLanes.Subtract(one, y);
            var term = TLanes.Add(TLanes.Multiply(y, VectorMath.Log<TLanes, TVector>(clipped)),
                TLanes.Multiply(yComplement, VectorMath.Log<TLanes, TVector>(complement)));
            if (wantGradient)
            {
                // scale · (-y / p + (1 - y) / (1 - p)), 0 where the clip bites (InRange).
                var slope = TLanes.Multiply(scale, TLanes.Subtract(TLanes.Divide(yComplement, complement), TLanes.Divide(y, clipped)));
                slope = TLanes.Select(TLanes.Greater(p, low), TLanes.Select(TLanes.Below(p, 1f - Epsilon), slope, TLanes.Zero), TLanes.Zero);
                if (whole) TLanes.Store(ref Unsafe.Add(ref g0, i), slope);
                else TLanes.StoreFirst(ref Unsafe.Add(ref g0, i), slope, lanes);
            }
            // The lanes past the end add zeros.
            sums = TLanes.AddInFours(sums, whole ? term : TLanes.Select(TLanes.FirstLanes(lanes), term, TLanes.Zero));
        }
        return -((sums[0] + sums[1]) + (sums[2] + sums[3]));
    }

    /// <summary>
    /// The squared errors summed over <paramref name="count"/> values, and where <paramref name="gradient"/> is not empty
    /// dLoss/dPrediction of their mean, 2·(p - y)/count: each difference in float, as Keras computes it, squared in double
    /// (exactly) and summed in four double sums as <see cref="BinaryCrossentropy"/>'s terms are, so every SIMD path returns the
    /// same total. A value at a time in double it cost ~3.3 ns a value (a 28x28 reconstruction at batch 128: 330 us, now 30).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static double MeanSquaredError<TLanes, TVector>(ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, Span<float> gradient, int count, int meanCount)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        ref float p0 = ref MemoryMarshal.GetReference(predictions), y0 = ref MemoryMarshal.GetReference(targets), g0 = ref MemoryMarshal.GetReference(gradient);
        bool wantGradient = !gradient.IsEmpty;
        var scale = TLanes.Broadcast(2f / meanCount);
        var sums = Vector256<double>.Zero;
        for (int i = 0; i < count; i += TLanes.Count)
        {
            int lanes = Math.Min(TLanes.Count, count - i);
            bool whole = lanes == TLanes.Count;
            // The lanes past the end load as zeros on both sides: their difference adds nothing.
            var difference = whole
                ? TLanes.Subtract(TLanes.Load(ref Unsafe.Add(ref p0, i)), TLanes.Load(ref Unsafe.Add(ref y0, i)))
                : TLanes.Subtract(TLanes.LoadFirst(ref Unsafe.Add(ref p0, i), lanes), TLanes.LoadFirst(ref Unsafe.Add(ref y0, i), lanes));
            sums = TLanes.AddSquaresInFours(sums, difference);
            if (!wantGradient) continue;
            if (whole) TLanes.Store(ref Unsafe.Add(ref g0, i), TLanes.Multiply(scale, difference));
            else TLanes.StoreFirst(ref Unsafe.Add(ref g0, i), TLanes.Multiply(scale, difference), lanes);
        }
        return (sums[0] + sums[1]) + (sums[2] + sums[3]);
    }

    /// <summary>
    /// dz = p / sum · scale, each operation rounded once, as a division and then a multiplication would be. Inlined: a row
    /// is a few values, 200 rows a step, and TensorPrimitives' calls for them (checks, dispatch, tier-0 code for the first
    /// part of a run, as they are generic) cost more than the arithmetic.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DivideThenScale(ReadOnlySpan<float> p, float sum, float scale, Span<float> dz)
    {
        ref float source = ref MemoryMarshal.GetReference(p);
        ref float target = ref MemoryMarshal.GetReference(dz);
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var divisor = Vector256.Create(sum);
            var factor = Vector256.Create(scale);
            for (; j + 8 <= p.Length; j += 8) (Vector256.LoadUnsafe(ref source, (nuint)j) / divisor * factor).StoreUnsafe(ref target, (nuint)j);
        }
        for (; j < p.Length; j++) Unsafe.Add(ref target, j) = Unsafe.Add(ref source, j) / sum * scale;
    }

    /// <summary>
    /// <see cref="Compute"/> for a (sparse) categorical cross-entropy on the outputs of a softmax over each row, with
    /// the gradient taken through the softmax as well: <paramref name="logitGradient"/> receives dLoss/dz for the softmax's
    /// input z, which Compute's dLoss/dp followed by the softmax's backward pass give. The loss is Compute's, computed the
    /// same way. Through the clip and the normalisation q = p / Σp of Keras' loss, that product reduces to
    /// dz_j = (t_j - q_j · Σt) / rows with t_j = -y_j where q_j is inside the clip's range and 0 where the clip bites, so a
    /// row whose label is clipped gets no gradient, as there; with a softmax in front of a one-hot target, q - y.
    /// The two passes' arithmetic is skipped, and so is their rounding: dz is this expression rounded once per step.
    /// </summary>
    /// <param name="meanOver">As <see cref="Compute"/>'s: the batch's rows where these are one part of it.</param>
    /// <param name="firstRow">As <see cref="Compute"/>'s: where these rows start in that batch.</param>
    [MethodImpl(Compiled.Kernel)]
    public static float ComputeThroughSoftmax(Loss loss, ReadOnlySpan<float> probabilities, ReadOnlySpan<float> targets, Span<float> logitGradient,
        int rows, int units, string model, string layer, int meanOver = 0, int firstRow = 0)
    {
        bool sparse = loss == Loss.SparseCategoricalCrossentropy;
        if (!sparse && loss != Loss.CategoricalCrossentropy) throw new ArgumentOutOfRangeException(nameof(loss), loss, "only the categorical cross-entropies are taken through a softmax.");
        if (sparse) CheckLabels(targets, rows, units, model, layer, firstRow);
        int batchRows = meanOver > 0 ? meanOver : rows;
        float scale = 1f / batchRows;
        double total = 0;
        for (int row = 0; row < rows; row++)
        {
            var p = probabilities.Slice(row * units, units);
            var dz = logitGradient.Slice(row * units, units);
            float sum = 0f;
            for (int j = 0; j < units; j++) sum += p[j];
            if (sparse)
            {
                // t is -1 at the label (0 when clipped) and 0 elsewhere: dz = q / rows, and (q - 1) / rows at the label.
                int label = (int)targets[row];
                float q = p[label] / sum;
                float clipped = Math.Clamp(q, Epsilon, 1f - Epsilon);
                total -= Math.Log(clipped);
                if (!InRange(q))
                {
                    dz.Clear();
                    continue;
                }
                DivideThenScale(p, sum, scale, dz);
                dz[label] = (q - 1f) * scale;
                continue;
            }
            var y = targets.Slice(row * units, units);
            double sampleLoss = 0;
            float targetSum = 0f; // Σt
            // q is kept in dz between the two passes: the second needs Σt, which the first sums.
            for (int j = 0; j < units; j++)
            {
                float q = dz[j] = p[j] / sum;
                if (y[j] != 0f) sampleLoss -= y[j] * Math.Log(Math.Clamp(q, Epsilon, 1f - Epsilon));
                if (InRange(q)) targetSum -= y[j];
            }
            total += sampleLoss;
            for (int j = 0; j < units; j++)
            {
                float q = dz[j];
                float t = InRange(q) ? -y[j] : 0f;
                dz[j] = (t - q * targetSum) * scale;
            }
        }
        return (float)(total / batchRows);
    }

    /// <summary>
    /// One row of Keras' categorical cross-entropy: q = p / Σp, L = -Σ y log clip(q). The gradient flows
    /// through the clip (zero where it bites) and the normalisation, exactly as autodiff on Keras' code would;
    /// with a softmax in front it reduces to (p - y) when nothing is clipped.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static double CrossEntropy(ReadOnlySpan<float> p, ReadOnlySpan<float> oneHot, int label, Span<float> dp, float scale)
    {
        int units = p.Length;
        float sum = 0f;
        for (int j = 0; j < units; j++) sum += p[j];
        if (label >= 0) return SparseCrossEntropy(p, label, sum, dp, scale);
        double loss = 0;
        float weighted = 0f; // Σ_j dL/dq_j · q_j
        for (int j = 0; j < units; j++)
        {
            float y = label >= 0 ? (j == label ? 1f : 0f) : oneHot[j];
            float q = p[j] / sum;
            float clipped = Math.Clamp(q, Epsilon, 1f - Epsilon);
            if (y != 0f) loss -= y * Math.Log(clipped);
            float dq = InRange(q) ? -y / clipped : 0f;
            if (!dp.IsEmpty) dp[j] = dq;
            weighted += dq * q;
        }
        if (!dp.IsEmpty)
        {
            for (int j = 0; j < units; j++) dp[j] = scale * (dp[j] - weighted) / sum;
        }
        return loss;
    }

    /// <summary>
    /// <see cref="CrossEntropy"/> for a class index, the same arithmetic with the zero terms left out: only the label's
    /// probability enters the loss and dL/dq, so every other class shares one gradient value (exactly what the general loop
    /// computes for it), and the divisions and clips per class go.
    /// </summary>
    private static double SparseCrossEntropy(ReadOnlySpan<float> p, int label, float sum, Span<float> dp, float scale)
    {
        float q = p[label] / sum;
        float clipped = Math.Clamp(q, Epsilon, 1f - Epsilon);
        float dq = InRange(q) ? -1f / clipped : 0f;
        float weighted = dq * q;
        if (!dp.IsEmpty)
        {
            dp.Fill(scale * (0f - weighted) / sum);
            dp[label] = scale * (dq - weighted) / sum;
        }
        return -Math.Log(clipped);
    }

    /// <summary>
    /// The vector kernels read and write through raw references, so a short span (Compute is public: not every caller is
    /// generated code, which checks the shapes first) is refused here rather than read past.
    /// </summary>
    private static void CheckLengths(Loss loss, ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, ReadOnlySpan<float> gradient,
        int rows, int units, string model, string layer)
    {
        int values = rows * units, labels = loss == Loss.SparseCategoricalCrossentropy ? rows : values;
        if (predictions.Length < values || targets.Length < labels || (!gradient.IsEmpty && gradient.Length < values))
        {
            throw new ArgumentException(
                $"{model}: the loss of output layer '{layer}' ({rows} x {units}) needs {values} predictions, {labels} targets and, when asked for, " +
                $"{values} gradients; got {predictions.Length}, {targets.Length} and {gradient.Length}.");
        }
    }

    [MethodImpl(Compiled.Kernel)]
    private static void CheckLabels(ReadOnlySpan<float> targets, int rows, int units, string model, string layer, int firstRow)
    {
        for (int row = 0; row < rows; row++)
        {
            float label = targets[row];
            if (!(label >= 0 && label < units) || label != MathF.Floor(label))
            {
                throw new ArgumentOutOfRangeException("targets",
                    $"{model}: label {label} at index {firstRow + row} of the targets is not a class index of output layer '{layer}': " +
                    $"sparse_categorical_crossentropy expects integers in [0, {units}), one per sample (per step of a sequence output).");
            }
        }
    }
}

/// <summary>Keras' "accuracy" metric, resolved from the loss as Keras does.</summary>
public static class Metrics
{
    /// <summary>Sum over rows of each row's accuracy (0..1); divide by the row count for the mean.</summary>
    [MethodImpl(Compiled.Kernel)]
    public static double CorrectCount(Loss loss, ReadOnlySpan<float> predictions, ReadOnlySpan<float> targets, int rows, int units)
    {
        double correct = 0;
        for (int row = 0; row < rows; row++)
        {
            var p = predictions.Slice(row * units, units);
            switch (loss)
            {
                case Loss.SparseCategoricalCrossentropy:
                    if (IsArgMax(p, (int)targets[row])) correct++;
                    break;
                case Loss.CategoricalCrossentropy:
                    if (ArgMax(p) == ArgMax(targets.Slice(row * units, units))) correct++;
                    break;
                case Loss.BinaryCrossentropy:
                {
                    // binary_accuracy: prediction > 0.5 compared with the target, averaged over the last axis
                    int hits = 0;
                    for (int j = 0; j < units; j++) if ((p[j] > 0.5f ? 1f : 0f) == targets[row * units + j]) hits++;
                    correct += (double)hits / units;
                    break;
                }
                default:
                {
                    int hits = 0;
                    for (int j = 0; j < units; j++) if (p[j] == targets[row * units + j]) hits++;
                    correct += (double)hits / units;
                    break;
                }
            }
        }
        return correct;
    }

    /// <summary>
    /// Whether <paramref name="index"/> is where <see cref="ArgMax"/> lands (the first maximum): above every earlier value,
    /// not below any later one. Four values a compare, no branch on the values. Inlined into CorrectCount, which is compiled
    /// optimised from its first call: called, it ran as tiering left it, unoptimised for the first part of a run (200 rows of
    /// 10 random values in a probe: 10.1 us; inlined, 1.6 us one by one, 1.3 four at a time; the digits fit 86.8 -> 84.0 ms).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsArgMax(ReadOnlySpan<float> values, int index)
    {
        float candidate = values[index];
        // ArgMax's rule for NaN: a NaN first value is never beaten, a NaN anywhere else never wins.
        if (float.IsNaN(values[0])) return index == 0;
        if (float.IsNaN(candidate)) return false;
        ref float first = ref MemoryMarshal.GetReference(values);
        var threshold = Vector128.Create(candidate);
        var earlier = Vector128.Create(index - 0, index - 1, index - 2, index - 3); // index - (j + lane): above 0 where that value lies before index
        var beaten = Vector128<float>.Zero;
        int j = 0;
        for (; j + 4 <= values.Length; j += 4, earlier -= Vector128.Create(4))
        {
            var v = Vector128.LoadUnsafe(ref first, (nuint)j);
            beaten |= Vector128.ConditionalSelect(Vector128.GreaterThan(earlier, Vector128<int>.Zero).AsSingle(),
                Vector128.GreaterThanOrEqual(v, threshold), Vector128.GreaterThan(v, threshold));
        }
        bool any = beaten.ExtractMostSignificantBits() != 0;
        for (; j < values.Length; j++) any |= j < index ? Unsafe.Add(ref first, j) >= candidate : Unsafe.Add(ref first, j) > candidate;
        return !any;
    }

    /// <summary>Index of the largest value; the first one on ties, as numpy's argmax.</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int j = 1; j < values.Length; j++) if (values[j] > values[best]) best = j;
        return best;
    }
}
