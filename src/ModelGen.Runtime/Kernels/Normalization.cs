using System;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>
/// Batch normalization over the last axis of a channels-last tensor, seen as <c>rows × channels</c> (rows = batch × H × W),
/// in Keras' arithmetic: the batch variance is the biased one, and y = x·inv + (beta - mean·inv) with inv = gamma / sqrt(var + eps).
/// </summary>
public static class BatchNorm
{
    // Every pass is a walk over rows, so both cores share it by rows (each core mostly the rows the layer before wrote on
    // it): a MobileNet block's normalization of 8192 rows of 64 ran on one core while the other waited, 7% of its inference
    // at batch 32. Rows apart, each element is computed alone; the column sums keep one order whoever runs them (BlockSums).

    /// <summary>Rows summed in float before the partial sum joins the double total: vectorised, yet exact enough for large batches.</summary>
    private const int Block = 64;

    /// <summary>
    /// Training mode: normalises with the batch's statistics, which it leaves in <paramref name="mean"/>, <paramref name="variance"/>
    /// (for the moving statistics) and <paramref name="inverseStd"/> (for the backward pass). With <paramref name="residual"/>
    /// (laid out as y), y is the normalization plus it: an Add that alone reads the layer (a ResNet block's shortcut, added as
    /// Merges.Combine adds it; neither operand's value is read by the Add's backward pass). With <paramref name="relu"/>, y is
    /// then the ReLU of that (a ReLU that alone reads the layer or its Add: its backward pass reads y or x, never the
    /// normalization's own output).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static void TrainingForward(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        Span<float> mean, Span<float> variance, Span<float> inverseStd, int rows, int channels, float epsilon, bool relu = false,
        ReadOnlySpan<float> residual = default)
    {
        Require(x.Length >= rows * channels && y.Length >= rows * channels && gamma.Length >= channels && beta.Length >= channels
            && mean.Length >= channels && variance.Length >= channels && inverseStd.Length >= channels, "", rows, channels);
        RequireResidual(residual, y, rows, channels);
        ColumnSums<Values>(x, shift: default, factor: default, rows, channels, mean, divideBy: rows);
        ColumnSums<Squares>(x, shift: mean, factor: default, rows, channels, variance, divideBy: rows);
        Normalize(x, y, gamma, beta, mean, variance, epsilon, inverseStd, rows, channels, relu, residual);
    }

    /// <summary>
    /// Keras' order of operations per channel: inv = 1 / sqrt(variance + eps) (kept in <paramref name="inverseStd"/> for the
    /// backward pass unless it is empty), scale = gamma·inv, shift = beta - mean·scale, so that y = x·scale + shift. A vector
    /// at a time (<see cref="ChannelFold"/>); each operation is correctly rounded on its own, so the bits are a scalar loop's.
    /// </summary>
    internal static unsafe void Fold(ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, ReadOnlySpan<float> mean, ReadOnlySpan<float> variance, float epsilon,
        Span<float> inverseStd, Span<float> scale, Span<float> shift)
    {
        int channels = scale.Length;
        Require(gamma.Length >= channels && beta.Length >= channels && mean.Length >= channels && variance.Length >= channels && shift.Length >= channels
            && (inverseStd.IsEmpty || inverseStd.Length >= channels), "'s scale and shift", 1, channels);
        fixed (float* g = gamma, b = beta, m = mean, v = variance, i = inverseStd, a = scale, t = shift)
            Simd.RunRanges(new ChannelFold(g, b, m, v, epsilon, inverseStd.IsEmpty ? null : i, a, t), 0, channels);
    }

    /// <summary>
    /// Inference mode (and a frozen layer in training): normalises with the moving statistics, then adds <paramref name="residual"/>
    /// where given and takes the ReLU where <paramref name="relu"/>, as <see cref="TrainingForward"/> does.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static void InferenceForward(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        ReadOnlySpan<float> movingMean, ReadOnlySpan<float> movingVariance, int rows, int channels, float epsilon, bool relu = false,
        ReadOnlySpan<float> residual = default)
    {
        Require(x.Length >= rows * channels && y.Length >= rows * channels && gamma.Length >= channels && beta.Length >= channels
            && movingMean.Length >= channels && movingVariance.Length >= channels, "", rows, channels);
        RequireResidual(residual, y, rows, channels);
        Normalize(x, y, gamma, beta, movingMean, movingVariance, epsilon, inverseStd: default, rows, channels, relu, residual);
    }

    /// <summary>A residual the forward passes can add to <paramref name="rows"/> rows of <paramref name="y"/> (<see cref="ResidualFault"/>), checked before anything is written.</summary>
    private static void RequireResidual(ReadOnlySpan<float> residual, ReadOnlySpan<float> y, int rows, int channels)
    {
        if (ResidualFault(residual, y, (long)rows * channels) is { } fault)
            throw new ArgumentException($"BatchNormalization over {rows} rows of {channels} channels: {fault}");
    }

    /// <summary>
    /// Why a residual cannot be added to the <paramref name="outputs"/> floats of <paramref name="output"/> (each part of the
    /// outputs, on either core, adds its own part of it): shorter than them, or sharing floats with them; null where it can,
    /// or where there is none. The caller names itself in the error, built only then (a step allocates nothing).
    /// </summary>
    internal static string? ResidualFault(ReadOnlySpan<float> residual, ReadOnlySpan<float> output, long outputs) =>
        residual.IsEmpty ? null
        : residual.Length < outputs ? $"the residual added to its {outputs} normalized outputs holds {residual.Length} floats."
        : residual.Slice(0, (int)outputs).Overlaps(output.Slice(0, (int)Math.Min(outputs, output.Length)))
            ? "the residual added to its normalized outputs shares floats with them; it must be a buffer of its own."
            : null;

    /// <summary>y = x·scale + shift with the statistics given (<see cref="Fold"/>), plus the residual where given, then the ReLU where <paramref name="relu"/>: both modes' pass.</summary>
    [MethodImpl(Compiled.Driver)]
    private static void Normalize(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, ReadOnlySpan<float> mean,
        ReadOnlySpan<float> variance, float epsilon, Span<float> inverseStd, int rows, int channels, bool relu, ReadOnlySpan<float> residual)
    {
        using var scaleScratch = Scratch<float>.RentUncleared(2 * channels);
        var scale = scaleScratch.Span.Slice(0, channels);
        var shift = scaleScratch.Span.Slice(channels, channels);
        Fold(gamma, beta, mean, variance, epsilon, inverseStd, scale, shift);
        if (residual.IsEmpty) Affine<No>(x, y, scale, shift, residual, rows, channels, relu);
        else Affine<Yes>(x, y, scale, shift, residual, rows, channels, relu);
    }

    /// <summary>
    /// y = x·scale + shift per channel, one fused multiply-add each: the normalization once its scale and shift are known; plus
    /// the residual where <typeparamref name="TResidual"/>; then max(y, 0) where <paramref name="relu"/> (a ReLU that alone
    /// reads the layer or its Add, applied while the value is in a register).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void Affine<TResidual>(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> scale, ReadOnlySpan<float> shift,
        ReadOnlySpan<float> residual, int rows, int channels, bool relu) where TResidual : IFlag
    {
        long floatsPerRow = (TResidual.IsSet ? 3L : 2L) * channels; // read x (and the residual), write y
        fixed (float* px = x, py = y, pa = scale, pb = shift, pr = residual)
        {
            if (relu)
            {
                var work = new AffineRows<Yes, TResidual>(px, py, pa, pb, pr, channels);
                Helper.ForRanges(ref work, rows, floatsPerRow);
            }
            else
            {
                var work = new AffineRows<No, TResidual>(px, py, pa, pb, pr, channels);
                Helper.ForRanges(ref work, rows, floatsPerRow);
            }
        }
    }

    /// <summary>
    /// Training-mode backward. With x̂ = (x - mean)·inverseStd: dgamma = Σ dy·x̂, dbeta = Σ dy, and
    /// dx = gamma·inverseStd·(dy - mean(dy) - x̂·mean(dy·x̂)), the batch statistics' own dependence on x included. With
    /// <paramref name="relu"/> (a ReLU that alone reads the layer, TrainingForward's relu), the gradient given is that ReLU's,
    /// and dy is it where the normalization's value is positive and zero elsewhere: the ReLU's derivative taken as x is read,
    /// its sign from x·scale + shift worked out from gamma, <paramref name="beta"/> and the statistics as the forward pass
    /// worked it out (the same dy, bit for bit, that Activations.Backward would have written from the ReLU's output).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static void TrainingBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> x, ReadOnlySpan<float> gamma,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> inverseStd, Span<float> inputGradient, Span<float> gammaGradient, Span<float> betaGradient,
        int rows, int channels, bool computeInput, bool accumulateInput, bool computeWeights, bool accumulateWeights, bool relu = false, ReadOnlySpan<float> beta = default)
    {
        Require(outputGradient.Length >= rows * channels && x.Length >= rows * channels && gamma.Length >= channels && mean.Length >= channels
            && inverseStd.Length >= channels && (!computeInput || inputGradient.Length >= rows * channels)
            && (!computeWeights || gammaGradient.Length >= channels && betaGradient.Length >= channels)
            && (!relu || beta.Length >= channels), "'s backward pass", rows, channels);
        using var sumsScratch = Scratch<float>.Rent(5 * channels);
        var sums = sumsScratch.Span;
        var sumDy = sums.Slice(0, channels);
        var sumDyXhat = sums.Slice(channels, channels);
        var a = sums.Slice(2 * channels, channels);
        var k = sums.Slice(3 * channels, channels);
        // a = gamma·inverseStd: the input gradient's scale, and the forward pass's scale (Fold's, from the same inverseStd),
        // so that the ReLU's mask is y = x·a + shift, one fused multiply-add as in Affine, with Fold's shift.
        for (int c = 0; c < channels; c++) a[c] = gamma[c] * inverseStd[c];
        Span<float> reluShift = relu ? sums.Slice(4 * channels, channels) : default;
        for (int c = 0; c < reluShift.Length; c++) reluShift[c] = beta[c] - mean[c] * a[c];

        // Σ dy·x̂ and Σ dy, with x̂ = (x - mean)·inverseStd, in one read of x and dy.
        if (!relu) ColumnSums<ProductsAndFactors<No>>(x, shift: mean, factor: outputGradient, rows, channels, sumDyXhat, divideBy: 1, factorSum: sumDy);
        else ColumnSums<ProductsAndFactors<Yes>>(x, shift: mean, factor: outputGradient, rows, channels, sumDyXhat, divideBy: 1, factorSum: sumDy, reluScale: a, reluShift);
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
        for (int c = 0; c < channels; c++)
        {
            k[c] = -a[c] * inverseStd[c] * sumDyXhat[c] * invRows;
            sumDy[c] = -a[c] * sumDy[c] * invRows;
        }
        var offset = sumDy;
        OverRows(RowPass.Gradient, accumulateInput, x, inputGradient, outputGradient, a, offset, k, rows, channels, mean, reluShift);
    }

    /// <summary>Inference-mode backward (a frozen layer): the statistics are constants, so dx = dy·gamma / sqrt(moving_variance + eps).</summary>
    [MethodImpl(Compiled.Kernel)]
    public static void InferenceBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> gamma, ReadOnlySpan<float> movingVariance,
        Span<float> inputGradient, int rows, int channels, float epsilon, bool accumulate)
    {
        Require(outputGradient.Length >= rows * channels && inputGradient.Length >= rows * channels && gamma.Length >= channels
            && movingVariance.Length >= channels, "'s backward pass", rows, channels);
        using var scaleScratch = Scratch<float>.Rent(channels);
        var scale = scaleScratch.Span;
        for (int c = 0; c < channels; c++) scale[c] = gamma[c] / MathF.Sqrt(movingVariance[c] + epsilon);
        OverRows(RowPass.Scaled, accumulate, default, inputGradient, outputGradient, scale, default, default, rows, channels);
    }

    /// <summary>moving = moving·momentum + batch·(1 - momentum), Keras' update; called once the step's loss is known to be finite.</summary>
    [MethodImpl(Compiled.Driver)]
    public static void UpdateMovingStatistics(Span<float> movingMean, Span<float> movingVariance, ReadOnlySpan<float> mean, ReadOnlySpan<float> variance, int channels, float momentum)
    {
        float rate = 1f - momentum;
        for (int c = 0; c < channels; c++)
        {
            movingMean[c] = movingMean[c] * momentum + mean[c] * rate;
            movingVariance[c] = movingVariance[c] * momentum + variance[c] * rate;
        }
    }

    private static void Require(bool holds, string pass, int rows, int channels)
    {
        if (!holds)
            throw new ArgumentException($"BatchNormalization{pass} over {rows} rows of {channels} channels needs that many values, and {channels} of each per-channel operand.");
    }

    /// <summary>What a row pass computes, per element: dx = dy·a + b + (x - mean)·k (Gradient; added to dx as dy·a + dx, then
    /// + b, ...; dy zero where x·a + reluShift is not positive, given a ReLU's shift); dx = dy·a (Scaled; added as dy·a + dx, fused).</summary>
    private enum RowPass { Gradient, Scaled }

    /// <summary>One row pass over rows of <paramref name="channels"/>, shared by both cores where it is large enough; x, y and dy are whole tensors, a, b, k, mean and reluShift per channel.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void OverRows(RowPass pass, bool accumulate, ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> dy, ReadOnlySpan<float> a,
        ReadOnlySpan<float> b, ReadOnlySpan<float> k, int rows, int channels, ReadOnlySpan<float> mean = default, ReadOnlySpan<float> reluShift = default)
    {
        fixed (float* px = x, py = y, pdy = dy, pa = a, pb = b, pk = k, pm = mean, pt = reluShift)
        {
            var work = new Rows(pass, accumulate, px, py, pdy, pa, pb, pk, pm, pt, channels);
            Helper.ForRanges(ref work, rows, floatsPerItem: (pass == RowPass.Scaled ? 2L : 3L) * channels);
        }
    }

    /// <summary>
    /// The rows of <see cref="OverRows"/>, through <see cref="ChannelColumns"/> (its five per-channel operands in registers,
    /// where a row at a time on 256-bit vectors reloaded them all for every vector).
    /// </summary>
    private readonly unsafe struct Rows(RowPass pass, bool accumulate, float* x, float* y, float* dy, float* a, float* b, float* k, float* mean,
        float* reluShift, int channels) : IVectorRanges, IChannelColumn
    {
        public int Channels => channels;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        [MethodImpl(Compiled.Kernel)]
        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            ChannelColumns.Run<Rows, TLanes, TVector>(this, first, count);

        /// <summary>
        /// <paramref name="rows"/> rows' <paramref name="lanes"/> channels from <paramref name="c"/>, the first at
        /// <paramref name="at"/>: dx = dy·a + offset + (x - mean)·k, each a fused multiply-add on the sum so far (with
        /// accumulate dy·a + dx first, then + offset; dy zero where x·a + reluShift, the value a ReLU took, is not positive);
        /// or dx = dy·a (Scaled; dy·a + dx fused).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Column<TLanes, TVector>(long at, long rows, int c, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            TVector scale = WholeOrFirst.Load<TLanes, TVector>(ref a[c], lanes);
            if (pass == RowPass.Scaled)
            {
                for (long r = 0; r < rows; r++, at += channels)
                {
                    TVector gradient = WholeOrFirst.Load<TLanes, TVector>(ref dy[at], lanes);
                    WholeOrFirst.Store<TLanes, TVector>(ref y[at], accumulate
                        ? TLanes.MultiplyAdd(gradient, scale, WholeOrFirst.Load<TLanes, TVector>(ref y[at], lanes)) : TLanes.Multiply(gradient, scale), lanes);
                }
                return;
            }
            TVector offset = WholeOrFirst.Load<TLanes, TVector>(ref b[c], lanes), slope = WholeOrFirst.Load<TLanes, TVector>(ref k[c], lanes);
            TVector centre = WholeOrFirst.Load<TLanes, TVector>(ref mean[c], lanes);
            TVector shift = reluShift == null ? TLanes.Zero : WholeOrFirst.Load<TLanes, TVector>(ref reluShift[c], lanes);
            for (long r = 0; r < rows; r++, at += channels)
            {
                TVector value = WholeOrFirst.Load<TLanes, TVector>(ref x[at], lanes), gradient = WholeOrFirst.Load<TLanes, TVector>(ref dy[at], lanes);
                if (reluShift != null) gradient = TLanes.Select(TLanes.Greater(TLanes.MultiplyAdd(value, scale, shift), TLanes.Zero), gradient, TLanes.Zero);
                TVector sum = accumulate
                    ? TLanes.Add(TLanes.MultiplyAdd(gradient, scale, WholeOrFirst.Load<TLanes, TVector>(ref y[at], lanes)), offset)
                    : TLanes.MultiplyAdd(gradient, scale, offset);
                WholeOrFirst.Store<TLanes, TVector>(ref y[at], TLanes.MultiplyAdd(TLanes.Subtract(value, centre), slope, sum), lanes);
            }
        }
    }

    /// <summary>
    /// What a column sum adds per row, given value = x - shift (x itself where there is no shift) and the row of the factor
    /// operand: a type argument, so each kernel is compiled for its term with nothing tested per row.
    /// </summary>
    private interface IColumnTerm
    {
        /// <summary>Whether the term reads a factor operand, whose own sum it then also keeps (Σ dy beside Σ dy·(x - mean)).</summary>
        static abstract bool ReadsFactor { get; }
        /// <summary>Whether the factor counts only where x·scale + shift (the value a ReLU took) is positive: zero elsewhere.</summary>
        static abstract bool Rectified { get; }
        static abstract TVector Add<TLanes, TVector>(TVector sum, TVector value, TVector factor) where TLanes : struct, ILanes<TVector> where TVector : struct;
    }

    /// <summary>Σ value: the mean.</summary>
    private readonly struct Values : IColumnTerm
    {
        public static bool ReadsFactor => false;
        public static bool Rectified => false;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TVector Add<TLanes, TVector>(TVector sum, TVector value, TVector factor) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            TLanes.Add(sum, value);
    }

    /// <summary>Σ value², value centred on the mean: the variance.</summary>
    private readonly struct Squares : IColumnTerm
    {
        public static bool ReadsFactor => false;
        public static bool Rectified => false;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TVector Add<TLanes, TVector>(TVector sum, TVector value, TVector factor) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            TLanes.MultiplyAdd(value, value, sum);
    }

    /// <summary>
    /// Σ value·factor and Σ factor: the backward pass's Σ (x - mean)·dy and Σ dy; where <typeparamref name="TRelu"/>, with dy
    /// zero where x·scale + shift is not positive (the backward pass of a rectified normalization).
    /// </summary>
    private readonly struct ProductsAndFactors<TRelu> : IColumnTerm where TRelu : IFlag
    {
        public static bool ReadsFactor => true;
        public static bool Rectified => TRelu.IsSet;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TVector Add<TLanes, TVector>(TVector sum, TVector value, TVector factor) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            TLanes.MultiplyAdd(value, factor, sum);
    }

    /// <summary>
    /// Per column, the sum over rows of the term, divided by <paramref name="divideBy"/> (and, for a term that reads a factor,
    /// the factor's own sum in <paramref name="factorSum"/>). Blocks of <see cref="Block"/> rows add in float, each into a
    /// row of partial sums of its own (so the cores can share the blocks), and the blocks join the double total in order:
    /// the same sums on one core or two.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void ColumnSums<TTerm>(ReadOnlySpan<float> x, ReadOnlySpan<float> shift, ReadOnlySpan<float> factor, int rows, int channels,
        Span<float> result, double divideBy, Span<float> factorSum = default, ReadOnlySpan<float> reluScale = default, ReadOnlySpan<float> reluShift = default)
        where TTerm : struct, IColumnTerm
    {
        int blocks = (rows + Block - 1) / Block;
        using var partialScratch = Scratch<float>.RentUncleared((TTerm.ReadsFactor ? 2 : 1) * blocks * channels); // every sum is stored
        var partials = partialScratch.Span;
        fixed (float* px = x, ps = shift, pf = factor, pa = reluScale, pb = reluShift, partial = partials)
        {
            var work = new BlockSums<TTerm>(px, ps, pf, pa, pb, partial, rows, channels, blocks);
            Helper.ForRanges(ref work, blocks, floatsPerItem: (TTerm.ReadsFactor ? 2L : 1L) * Block * channels);
        }
        JoinBlocks(partials, blocks, channels, result, divideBy);
        if (TTerm.ReadsFactor) JoinBlocks(partials.Slice(blocks * channels), blocks, channels, factorSum, divideBy);
    }

    /// <summary>
    /// The blocks' partial sums added in block order in double, then divided: eight columns at a time, each column's total
    /// in a lane of two vectors of doubles (a ResNet block's 512 blocks of 32 columns in ~1 us, where a total in memory
    /// per column took ~15 us, each add waiting on the last one's store), the columns past them one by one; the same
    /// adds in the same order either way.
    /// </summary>
    private static void JoinBlocks(ReadOnlySpan<float> partials, int blocks, int channels, Span<float> result, double divideBy)
    {
        ref float first = ref MemoryMarshal.GetReference(partials);
        int c = 0;
        for (; c + Vector256<float>.Count <= channels; c += Vector256<float>.Count)
        {
            Vector256<double> lower = Vector256<double>.Zero, upper = Vector256<double>.Zero;
            for (int block = 0; block < blocks; block++)
            {
                var values = Vector256.LoadUnsafe(ref first, (nuint)((long)block * channels + c));
                lower += Vector256.WidenLower(values);
                upper += Vector256.WidenUpper(values);
            }
            var divisor = Vector256.Create(divideBy);
            Vector256.Narrow(lower / divisor, upper / divisor).StoreUnsafe(ref MemoryMarshal.GetReference(result), (nuint)c);
        }
        for (; c < channels; c++)
        {
            double total = 0;
            for (int block = 0; block < blocks; block++) total += partials[block * channels + c];
            result[c] = (float)(total / divideBy);
        }
    }

    /// <summary>
    /// Blocks of rows summed in float, each column's values in row order, into the block's row of partial sums (and, for a
    /// term that reads a factor, a second table of them after the first).
    /// </summary>
    private readonly unsafe struct BlockSums<TTerm>(float* x, float* shift, float* factor, float* reluScale, float* reluShift, float* partials, int rows, int channels,
        int blocks) : IVectorRanges where TTerm : struct, IColumnTerm
    {
        public readonly float* X = x, Shift = shift, Factor = factor, ReluScale = reluScale, ReluShift = reluShift, Partials = partials;
        public readonly int Rows = rows, Channels = channels, Blocks = blocks;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            SumBlocks<TLanes, TVector, TTerm>(this, first, count);
    }

    /// <summary>
    /// Blocks [first, first + count): four vectors of columns at a time, their sums in registers over the block's rows, then
    /// the columns left a vector at a time (the last one partial). Sums kept in memory row after row waited on storing and
    /// reloading each of them: over 8192 rows of 64 channels (a MobileNet block's at batch 32) the training forward pass
    /// took 134-155 us, now 75, forward and backward 300-426, now 173-177; the block's training step 1.01-1.08x faster (median 1.07).
    /// The whole vectors past the four-vector columns go down four whole blocks at once (<see cref="SumFourBlocks"/>). Each
    /// column's additions are in row order within its block, as they were, so every bit is as before.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void SumBlocks<TLanes, TVector, TTerm>(in BlockSums<TTerm> work, int first, int count)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTerm : struct, IColumnTerm
    {
        int channels = work.Channels, width = TLanes.Count, wide = channels - channels % (4 * width);
        for (int block = first, end = first + count; block < end;)
        {
            int blocks = end - block >= 4 && (long)(block + 4) * Block <= work.Rows ? 4 : 1;
            for (int each = block; each < block + blocks; each++) SumWideColumns<TLanes, TVector, TTerm>(work, each, wide);
            for (int c = wide; c < channels; c += width)
            {
                int lanes = Math.Min(width, channels - c);
                if (blocks == 4 && lanes == width) SumFourBlocks<TLanes, TVector, TTerm>(work, block, c);
                else for (int each = block; each < block + blocks; each++) SumColumnVector<TLanes, TVector, TTerm>(work, each, c, lanes);
            }
            block += blocks;
        }
    }

    /// <summary>One block's columns [0, <paramref name="wide"/>), four vectors at a time: four chains of additions, one a vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void SumWideColumns<TLanes, TVector, TTerm>(in BlockSums<TTerm> work, int block, int wide)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTerm : struct, IColumnTerm
    {
        int channels = work.Channels, width = TLanes.Count;
        long start = (long)block * Block, end = Math.Min(work.Rows, start + Block);
        float* sums = work.Partials + (long)block * channels, factorSums = sums + (long)work.Blocks * channels;
        for (int c = 0; c < wide; c += 4 * width)
        {
            TVector shift0 = LanesAt<TLanes, TVector>(work.Shift, c, width), shift1 = LanesAt<TLanes, TVector>(work.Shift, c + width, width);
            TVector shift2 = LanesAt<TLanes, TVector>(work.Shift, c + 2 * width, width), shift3 = LanesAt<TLanes, TVector>(work.Shift, c + 3 * width, width);
            var (relu0, relu1) = (ReluAt<TLanes, TVector, TTerm>(work, c, width), ReluAt<TLanes, TVector, TTerm>(work, c + width, width));
            var (relu2, relu3) = (ReluAt<TLanes, TVector, TTerm>(work, c + 2 * width, width), ReluAt<TLanes, TVector, TTerm>(work, c + 3 * width, width));
            TVector sum0 = TLanes.Zero, sum1 = sum0, sum2 = sum0, sum3 = sum0, factor0 = sum0, factor1 = sum0, factor2 = sum0, factor3 = sum0;
            for (long row = start; row < end; row++)
            {
                float* x = work.X + row * channels + c, f = work.Factor + row * channels + c; // f is read only by a term that reads a factor
                AddRow<TLanes, TVector, TTerm>(ref sum0, ref factor0, TLanes.Load(ref x[0]), shift0, FactorAt<TLanes, TVector, TTerm>(f, 0, width), relu0);
                AddRow<TLanes, TVector, TTerm>(ref sum1, ref factor1, TLanes.Load(ref x[width]), shift1, FactorAt<TLanes, TVector, TTerm>(f, width, width), relu1);
                AddRow<TLanes, TVector, TTerm>(ref sum2, ref factor2, TLanes.Load(ref x[2 * width]), shift2, FactorAt<TLanes, TVector, TTerm>(f, 2 * width, width), relu2);
                AddRow<TLanes, TVector, TTerm>(ref sum3, ref factor3, TLanes.Load(ref x[3 * width]), shift3, FactorAt<TLanes, TVector, TTerm>(f, 3 * width, width), relu3);
            }
            TLanes.Store(ref sums[c], sum0);
            TLanes.Store(ref sums[c + width], sum1);
            TLanes.Store(ref sums[c + 2 * width], sum2);
            TLanes.Store(ref sums[c + 3 * width], sum3);
            if (!TTerm.ReadsFactor) continue;
            TLanes.Store(ref factorSums[c], factor0);
            TLanes.Store(ref factorSums[c + width], factor1);
            TLanes.Store(ref factorSums[c + 2 * width], factor2);
            TLanes.Store(ref factorSums[c + 3 * width], factor3);
        }
    }

    /// <summary>One block's <paramref name="lanes"/> columns from <paramref name="c"/>: one chain of additions, a row after another.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void SumColumnVector<TLanes, TVector, TTerm>(in BlockSums<TTerm> work, int block, int c, int lanes)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTerm : struct, IColumnTerm
    {
        int channels = work.Channels;
        long start = (long)block * Block, end = Math.Min(work.Rows, start + Block);
        float* sums = work.Partials + (long)block * channels, factorSums = sums + (long)work.Blocks * channels;
        TVector shift = LanesAt<TLanes, TVector>(work.Shift, c, lanes), sum = TLanes.Zero, factorSum = sum;
        var relu = ReluAt<TLanes, TVector, TTerm>(work, c, lanes);
        for (long row = start; row < end; row++)
            AddRow<TLanes, TVector, TTerm>(ref sum, ref factorSum, WholeOrFirst.Load<TLanes, TVector>(ref work.X[row * channels + c], lanes), shift,
                FactorAt<TLanes, TVector, TTerm>(work.Factor + row * channels, c, lanes), relu);
        WholeOrFirst.Store<TLanes, TVector>(ref sums[c], sum, lanes);
        if (TTerm.ReadsFactor) WholeOrFirst.Store<TLanes, TVector>(ref factorSums[c], factorSum, lanes);
    }

    /// <summary>
    /// Four whole blocks' vector of columns from <paramref name="c"/>, the blocks' rows side by side: four chains of
    /// additions, where one block alone waits on its last addition at every row (a ResNet block's 32 channels on AVX-512:
    /// 32,768 rows, the training forward pass on one core 286 -> 234 us). A partial vector stays a block at a time: its
    /// masked loads four a row measured slower than one (2,048 rows of 24 channels 14.6 -> 17.2 us).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void SumFourBlocks<TLanes, TVector, TTerm>(in BlockSums<TTerm> work, int block, int c)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTerm : struct, IColumnTerm
    {
        int channels = work.Channels, lanes = TLanes.Count;
        long stride = (long)Block * channels; // from a row of one block to the same row of the next
        TVector shift = LanesAt<TLanes, TVector>(work.Shift, c, lanes);
        var relu = ReluAt<TLanes, TVector, TTerm>(work, c, lanes);
        TVector sum0 = TLanes.Zero, sum1 = sum0, sum2 = sum0, sum3 = sum0, factor0 = sum0, factor1 = sum0, factor2 = sum0, factor3 = sum0;
        for (long at = (long)block * stride, end = at + stride; at < end; at += channels)
        {
            float* x = work.X + at, f = work.Factor + at;
            AddRow<TLanes, TVector, TTerm>(ref sum0, ref factor0, TLanes.Load(ref x[c]), shift, FactorAt<TLanes, TVector, TTerm>(f, c, lanes), relu);
            AddRow<TLanes, TVector, TTerm>(ref sum1, ref factor1, TLanes.Load(ref x[stride + c]), shift, FactorAt<TLanes, TVector, TTerm>(f + stride, c, lanes), relu);
            AddRow<TLanes, TVector, TTerm>(ref sum2, ref factor2, TLanes.Load(ref x[2 * stride + c]), shift, FactorAt<TLanes, TVector, TTerm>(f + 2 * stride, c, lanes), relu);
            AddRow<TLanes, TVector, TTerm>(ref sum3, ref factor3, TLanes.Load(ref x[3 * stride + c]), shift, FactorAt<TLanes, TVector, TTerm>(f + 3 * stride, c, lanes), relu);
        }
        float* sums = work.Partials + (long)block * channels + c, factorSums = sums + (long)work.Blocks * channels;
        TLanes.Store(ref sums[0], sum0);
        TLanes.Store(ref sums[channels], sum1);
        TLanes.Store(ref sums[2 * channels], sum2);
        TLanes.Store(ref sums[3 * channels], sum3);
        if (!TTerm.ReadsFactor) return;
        TLanes.Store(ref factorSums[0], factor0);
        TLanes.Store(ref factorSums[channels], factor1);
        TLanes.Store(ref factorSums[2 * channels], factor2);
        TLanes.Store(ref factorSums[3 * channels], factor3);
    }

    /// <summary>A per-channel operand's lanes at column <paramref name="c"/>, or zeros where there is none (x - 0 is x, bit for bit).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe TVector LanesAt<TLanes, TVector>(float* channels, int c, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        channels == null ? TLanes.Zero : WholeOrFirst.Load<TLanes, TVector>(ref channels[c], lanes);

    /// <summary>A rectified term's scale and shift at column <paramref name="c"/> (the normalization y = x·scale + shift); zeros for the rest.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe (TVector Scale, TVector Shift) ReluAt<TLanes, TVector, TTerm>(in BlockSums<TTerm> work, int c, int lanes)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTerm : struct, IColumnTerm =>
        TTerm.Rectified ? (LanesAt<TLanes, TVector>(work.ReluScale, c, lanes), LanesAt<TLanes, TVector>(work.ReluShift, c, lanes)) : (TLanes.Zero, TLanes.Zero);

    /// <summary>
    /// The factor's <paramref name="lanes"/> at <paramref name="at"/> of its row (whole vectors loaded plainly, the last
    /// partial one masked), or nothing for a term that reads none.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe TVector FactorAt<TLanes, TVector, TTerm>(float* row, int at, int lanes)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTerm : struct, IColumnTerm =>
        TTerm.ReadsFactor ? WholeOrFirst.Load<TLanes, TVector>(ref row[at], lanes) : default;

    /// <summary>
    /// One row's vector of a column sum: value = x - shift into the term's sum, the factor into its own; a rectified term's
    /// factor zero where x·scale + shift (<paramref name="relu"/>: the value its ReLU took, one fused multiply-add as Affine's) is not positive.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddRow<TLanes, TVector, TTerm>(ref TVector sum, ref TVector factorSum, TVector x, TVector shift, TVector factor, (TVector Scale, TVector Shift) relu)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTerm : struct, IColumnTerm
    {
        if (TTerm.Rectified) factor = TLanes.Select(TLanes.Greater(TLanes.MultiplyAdd(x, relu.Scale, relu.Shift), TLanes.Zero), factor, TLanes.Zero);
        sum = TTerm.Add<TLanes, TVector>(sum, TLanes.Subtract(x, shift), factor);
        if (TTerm.ReadsFactor) factorSum = TLanes.Add(factorSum, factor);
    }
}

/// <summary>
/// A pass over rows of channels that goes down each vector of channels with that vector's per-channel operands in
/// registers (<see cref="ChannelColumns.Run"/>): the normalization's forward (<see cref="AffineRows{TRelu, TResidual}"/>) and backward row passes.
/// </summary>
internal interface IChannelColumn
{
    int Channels { get; }

    /// <summary><paramref name="rows"/> rows' <paramref name="lanes"/> channels from <paramref name="c"/>, the first at <paramref name="at"/> (then a row of channels apart).</summary>
    void Column<TLanes, TVector>(long at, long rows, int c, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct;
}

/// <summary>
/// Rows [first, first + count) of an <see cref="IChannelColumn"/> pass, a block of rows at a time, down each vector of
/// channels (whole ones with the width a constant, so plainly loaded and stored; the last partial one masked): a row at a
/// time reloaded every per-channel operand for every vector (a MobileNet block's normalization, 8192 rows of 64 on two
/// cores: 46 -> 36 us; its backward through the ReLU at 32,768 x 32: 200-205 -> 177-183 us).
/// </summary>
internal static class ChannelColumns
{
    /// <summary>Rows a block: 32 rows of 64 channels are 8 KB of each operand, a few pages the passes over its vectors stay within.</summary>
    private const int BlockRows = 32;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run<TPass, TLanes, TVector>(in TPass pass, int first, int count)
        where TPass : struct, IChannelColumn where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count, channels = pass.Channels;
        for (long block = first, end = (long)first + count; block < end; block += BlockRows)
        {
            long rows = Math.Min(BlockRows, end - block);
            for (int c = 0; c < channels; c += width)
            {
                if (c + width <= channels) pass.Column<TLanes, TVector>(block * channels + c, rows, c, width);
                else pass.Column<TLanes, TVector>(block * channels + c, rows, c, channels - c);
            }
        }
    }
}

/// <summary>
/// y = x·scale + shift per channel over rows of <c>channels</c> (x and y the same or apart), one fused multiply-add a value:
/// a batch normalization once its scale and shift are known, through <see cref="ChannelColumns"/> (its scale and shift in
/// registers). Where <typeparamref name="TResidual"/>, plus the residual's element (laid out as y; Merges.Combine's Add).
/// Where <typeparamref name="TRelu"/>, max(y, 0) before the store: a ReLU after the normalization or that Add, with
/// Activations.Forward's bits.
/// </summary>
internal readonly unsafe struct AffineRows<TRelu, TResidual>(float* x, float* y, float* scale, float* shift, float* residual, int channels)
    : IVectorRanges, IChannelColumn where TRelu : IFlag where TResidual : IFlag
{
    public int Channels => channels;

    public void Run(int first, int count) => Simd.RunRanges(this, first, count);

    [MethodImpl(Compiled.Kernel)]
    public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        ChannelColumns.Run<AffineRows<TRelu, TResidual>, TLanes, TVector>(this, first, count);

    /// <summary><paramref name="rows"/> rows' <paramref name="lanes"/> channels from <paramref name="c"/>, the first at <paramref name="at"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Column<TLanes, TVector>(long at, long rows, int c, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        TVector a = WholeOrFirst.Load<TLanes, TVector>(ref scale[c], lanes), b = WholeOrFirst.Load<TLanes, TVector>(ref shift[c], lanes);
        for (long r = 0; r < rows; r++, at += channels)
        {
            TVector value = TLanes.MultiplyAdd(WholeOrFirst.Load<TLanes, TVector>(ref x[at], lanes), a, b);
            if (TResidual.IsSet) value = TLanes.Add(value, WholeOrFirst.Load<TLanes, TVector>(ref residual[at], lanes));
            WholeOrFirst.Store<TLanes, TVector>(ref y[at], Rectified<TLanes, TVector>(value), lanes);
        }
    }

    /// <summary>max(value, 0) where the pass takes the ReLU (TLanes.Relu: max(0, x) + 0, so -0 stores as +0 and NaN stays); else the value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Rectified<TLanes, TVector>(TVector value) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        TRelu.IsSet ? TLanes.Relu(value) : value;
}

/// <summary>
/// BatchNorm.Fold over channels [first, first + count): inv = 1 / sqrt(variance + eps), stored where <paramref name="inverseStd"/>
/// is not null; scale = gamma·inv; shift = beta - mean·scale, the product rounded before the subtraction (no fused
/// multiply-add). A scalar loop of square roots and divisions, ~10 cycles a channel, and six library passes after it were
/// most of an inference normalization of one row: 256 channels 0.78 -> 0.20 us, 32 channels 0.20 -> 0.11 us.
/// </summary>
internal readonly unsafe struct ChannelFold(float* gamma, float* beta, float* mean, float* variance, float epsilon, float* inverseStd, float* scale, float* shift)
    : IVectorRanges
{
    public void Run(int first, int count) => Simd.RunRanges(this, first, count);

    [MethodImpl(Compiled.Kernel)]
    public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int c = first, end = first + count;
        for (; c + TLanes.Count <= end; c += TLanes.Count) Channels<TLanes, TVector>(c, TLanes.Count);
        if (c < end) Channels<TLanes, TVector>(c, end - c);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Channels<TLanes, TVector>(int c, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        TVector inverse = TLanes.Divide(TLanes.Broadcast(1f), TLanes.Sqrt(TLanes.Add(WholeOrFirst.Load<TLanes, TVector>(ref variance[c], lanes), TLanes.Broadcast(epsilon))));
        TVector channelScale = TLanes.Multiply(WholeOrFirst.Load<TLanes, TVector>(ref gamma[c], lanes), inverse);
        TVector channelShift = TLanes.Subtract(WholeOrFirst.Load<TLanes, TVector>(ref beta[c], lanes), TLanes.Multiply(WholeOrFirst.Load<TLanes, TVector>(ref mean[c], lanes), channelScale));
        if (inverseStd != null) WholeOrFirst.Store<TLanes, TVector>(ref inverseStd[c], inverse, lanes);
        WholeOrFirst.Store<TLanes, TVector>(ref scale[c], channelScale, lanes);
        WholeOrFirst.Store<TLanes, TVector>(ref shift[c], channelShift, lanes);
    }
}

/// <summary>
/// A BatchNormalization at inference (its moving statistics), for a kernel that applies it to its outputs as it writes
/// them, while they are still in cache (<see cref="Convolution.Forward"/>): each channel times its scale plus its shift,
/// both worked out as <see cref="BatchNorm.InferenceForward"/> works them out, so the values are its values bit for bit;
/// then, where <paramref name="residual"/> is given, plus that output of it (an Add that alone reads the normalization: a
/// ResNet block's shortcut, as Merges.Combine adds it), and, where <paramref name="relu"/>, the ReLU of a layer that alone
/// reads the normalization or that Add (Keras' Conv2D, BatchNormalization, Activation('relu'); Add, Activation('relu')), as
/// Activations.Forward takes it.
/// </summary>
public readonly ref struct BatchNormAtInference(ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, ReadOnlySpan<float> movingMean,
    ReadOnlySpan<float> movingVariance, float epsilon, bool relu = false, ReadOnlySpan<float> residual = default)
{
    private readonly ReadOnlySpan<float> gamma = gamma, beta = beta, movingMean = movingMean, movingVariance = movingVariance, residual = residual;

    /// <summary>No normalization (a kernel's default).</summary>
    public bool IsEmpty => gamma.IsEmpty;

    /// <summary>Whether a ReLU follows the normalization (and its residual, where it has one).</summary>
    public bool Relu => relu;

    /// <summary>What is added to each normalized output, laid out as the outputs; empty where nothing is.</summary>
    public ReadOnlySpan<float> Residual => residual;

    /// <summary>Whether every operand holds <paramref name="channels"/> floats.</summary>
    public bool Covers(int channels) => gamma.Length >= channels && beta.Length >= channels && movingMean.Length >= channels && movingVariance.Length >= channels;

    /// <summary>
    /// The scale, then the shift (<see cref="BatchNorm.Fold"/> of the moving statistics), of a kernel's <paramref name="filters"/>
    /// a pixel, in a rental of this thread; an empty one where there is no normalization. Refused, naming <paramref name="layer"/>:
    /// statistics shorter than the filters, and a residual shorter than the kernel's <paramref name="outputs"/> floats of
    /// <paramref name="output"/> or sharing floats with them (each range adds it after writing its outputs).
    /// </summary>
    internal Scratch<float> FoldFor(int filters, ReadOnlySpan<float> output, long outputs, string layer)
    {
        if (IsEmpty) return Scratch<float>.RentUncleared(0);
        if (!Covers(filters))
            throw new ArgumentException($"{layer}: the BatchNormalization applied to its {filters} filters needs {filters} floats of each of gamma, beta and the moving statistics.");
        if (BatchNorm.ResidualFault(residual, output, outputs) is { } fault) throw new ArgumentException($"{layer}: {fault}");
        var scaleAndShift = Scratch<float>.RentUncleared(2 * filters);
        var floats = scaleAndShift.Span;
        BatchNorm.Fold(gamma, beta, movingMean, movingVariance, epsilon, inverseStd: default, floats.Slice(0, filters), floats.Slice(filters, filters));
        return scaleAndShift;
    }
}

/// <summary>
/// Layer normalization over the last axis, row by row (a row is one position of one sample), in Keras' arithmetic:
/// biased variance, inv = gamma / sqrt(var + eps), y = x·inv + (beta - mean·inv). The same in training and inference.
/// </summary>
public static class LayerNorm
{
    // In registers, one generic kernel per SIMD width: a Transformer's rows are a head's width or a model's (64 floats),
    // where a library call per formula (eight a row forward, nine backward) cost more than its arithmetic (the benchmark
    // block's two normalizations took 10% of its inference at batch 32).

    /// <summary>
    /// Normalises each row; keeps each row's mean and 1/sqrt(var + eps) for the backward pass unless those spans are empty.
    /// Rows are independent, so both cores share a large pass (a Transformer's 2048 rows of 64 at batch 32); each row's
    /// arithmetic is the same whoever runs it.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Forward(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        Span<float> mean, Span<float> inverseStd, int rows, int columns, float epsilon) =>
        Forward(x, (float*)null, null, y, gamma, beta, mean, inverseStd, rows, columns, epsilon);

    /// <summary>
    /// Normalises left + right row by row (a residual connection's Add that only this normalization reads), writing that sum
    /// to <paramref name="sum"/> as it goes, for the backward pass: the same bits as Merges.Combine's Add then
    /// <see cref="Forward(ReadOnlySpan{float}, Span{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, Span{float}, int, int, float)"/>,
    /// with the sum's first read taken as it is made, in L1, where the two passes wrote and read it back a whole tensor apart.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Forward(ReadOnlySpan<float> left, ReadOnlySpan<float> right, Span<float> sum, Span<float> y, ReadOnlySpan<float> gamma,
        ReadOnlySpan<float> beta, Span<float> mean, Span<float> inverseStd, int rows, int columns, float epsilon)
    {
        if (left.Length < rows * columns || right.Length < rows * columns)
            throw new ArgumentException($"LayerNormalization of the sum of two values, {rows} rows of {columns}, needs that many values of each.");
        fixed (float* pl = left, pr = right) Forward(sum, pl, pr, y, gamma, beta, mean, inverseStd, rows, columns, epsilon);
    }

    /// <summary>Either pass over x (the sum of left and right, made by the pass where left is not null), its operands checked.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void Forward(ReadOnlySpan<float> x, float* left, float* right, Span<float> y, ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta,
        Span<float> mean, Span<float> inverseStd, int rows, int columns, float epsilon)
    {
        if (x.Length < rows * columns || y.Length < rows * columns || gamma.Length < columns || beta.Length < columns
            || (!mean.IsEmpty && (mean.Length < rows || inverseStd.Length < rows)))
            throw new ArgumentException($"LayerNormalization of {rows} rows of {columns} needs that many values, and {columns} of gamma and beta.");
        fixed (float* px = x, py = y, pg = gamma, pb = beta, pm = mean, pi = inverseStd)
        {
            var pass = new ForwardPass(px, left, right, py, pg, pb, mean.IsEmpty ? null : pm, mean.IsEmpty ? null : pi, columns, epsilon);
            Helper.ForRanges(ref pass, rows, floatsPerItem: (left == null ? 2L : 4L) * columns);
        }
    }

    /// <summary>
    /// The forward pass's operands, runnable a range of rows at a time on either thread; a null mean (and inverse) keeps no
    /// statistics. X is normalised; where Left is not null, X is Left + Right, written by the pass itself.
    /// </summary>
    private readonly unsafe struct ForwardPass(float* x, float* left, float* right, float* y, float* gamma, float* beta, float* mean, float* inverseStd,
        int columns, float epsilon) : IVectorRanges
    {
        public readonly float* X = x, Left = left, Right = right, Y = y, Gamma = gamma, Beta = beta, Mean = mean, InverseStd = inverseStd;
        public readonly int Columns = columns;
        public readonly float Epsilon = epsilon;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            ForwardRows<TLanes, TVector>(this, first, count);
    }

    /// <summary>
    /// With x̂ = (x - mean)·inverseStd and g = dy·gamma per row: dx = inverseStd·(g - mean(g) - x̂·mean(g·x̂));
    /// dgamma = Σ dy·x̂ and dbeta = Σ dy over all rows, each added in row order. The rows' dx are independent, so both cores
    /// share them as the forward pass's rows; then the calling thread sums dgamma and dbeta over every row in order
    /// (<see cref="WeightSums"/>), so their bits do not depend on how the rows were shared.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> x, ReadOnlySpan<float> gamma,
        ReadOnlySpan<float> mean, ReadOnlySpan<float> inverseStd, Span<float> inputGradient, Span<float> gammaGradient, Span<float> betaGradient,
        int rows, int columns, bool computeInput, bool accumulateInput, bool computeWeights, bool accumulateWeights)
    {
        if (outputGradient.Length < rows * columns || x.Length < rows * columns || gamma.Length < columns || mean.Length < rows || inverseStd.Length < rows
            || (computeInput && inputGradient.Length < rows * columns) || (computeWeights && (gammaGradient.Length < columns || betaGradient.Length < columns)))
            throw new ArgumentException($"LayerNormalization's backward pass of {rows} rows of {columns} needs that many values.");
        if (computeWeights && !accumulateWeights)
        {
            gammaGradient.Slice(0, columns).Clear();
            betaGradient.Slice(0, columns).Clear();
        }
        fixed (float* dy = outputGradient, px = x, pg = gamma, pm = mean, pi = inverseStd, dx = inputGradient, dg = gammaGradient, db = betaGradient)
        {
            var pass = new BackwardPass(dy, px, pg, pm, pi, dx, dg, db, columns, accumulateInput);
            if (computeInput) Helper.ForRanges(ref pass, rows, floatsPerItem: 3L * columns);
            if (!computeWeights) return;
            switch (Simd.Current)
            {
                case SimdPath.Avx512: WeightSums<Lanes512, Vector512<float>>(pass, rows); break;
                case SimdPath.Avx2: WeightSums<Lanes256, Vector256<float>>(pass, rows); break;
                default: WeightSums<Lanes128, Vector128<float>>(pass, rows); break;
            }
        }
    }

    /// <summary>The backward pass's operands, its input gradient runnable a range of rows at a time on either thread.</summary>
    private readonly unsafe struct BackwardPass(float* dy, float* x, float* gamma, float* mean, float* inverseStd, float* dx, float* dGamma, float* dBeta,
        int columns, bool accumulateInput) : IVectorRanges
    {
        public readonly float* Dy = dy, X = x, Gamma = gamma, Mean = mean, InverseStd = inverseStd, Dx = dx, DGamma = dGamma, DBeta = dBeta;
        public readonly int Columns = columns;
        public readonly bool AccumulateInput = accumulateInput;

        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct =>
            BackwardRows<TLanes, TVector>(this, first, count);
    }

    /// <summary>
    /// Vector <paramref name="at"/> of a row: whole, or its last <paramref name="rest"/> lanes with <paramref name="fill"/> beyond.
    /// The steps that use it run in a loop over the whole vectors, then once for the partial one: within the loop the JIT
    /// drops the test (a compare and a branch per load). <see cref="WholeOrFirst"/> does the same job by the lane count, but
    /// the steps through it ran slower, the same bits (the backward pass on one core, 2048 rows of 64: 40.5-42.7 -> 42.1-43.6
    /// us; of 100: 76-80 -> 83-84), so the row passes keep this test.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Lanes<TLanes, TVector>(ref float row, int at, int whole, int rest, TVector fill) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        at < whole ? TLanes.Load(ref Unsafe.Add(ref row, at)) : TLanes.LoadFirst(ref Unsafe.Add(ref row, at), rest, fill);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TLanes, TVector>(ref float row, int at, int whole, int rest, TVector value) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (at < whole) TLanes.Store(ref Unsafe.Add(ref row, at), value);
        else TLanes.StoreFirst(ref Unsafe.Add(ref row, at), value, rest);
    }

    /// <summary>
    /// Rows a block holds: about 16 KB of them, read three times from L1 (the mean, the variance about it, the output).
    /// </summary>
    private const int BlockFloats = 4096, MaxBlockRows = 64;

    /// <summary>
    /// Rows [first, first + count), a block of rows at a time: each pass (means, variances, outputs) goes over every row of
    /// the block before the next starts. A row's sum is a chain of dependent additions, and one row's three passes, one
    /// after the other, kept the core waiting on that chain (2048 rows of 64: 150 cycles a row); a pass over many rows
    /// gives the core independent chains to overlap. Each row's arithmetic, and so its every bit, is as it was row by row.
    /// A residual pass (Left not null) makes each row's sum in the means' pass, where the row's first read would be.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void ForwardRows<TLanes, TVector>(in ForwardPass rows, int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int columns = rows.Columns, width = TLanes.Count, whole = columns / width * width, rest = columns - whole;
        int blockRows = Math.Clamp(BlockFloats / columns, 1, MaxBlockRows);
        float* averages = stackalloc float[MaxBlockRows], inverses = stackalloc float[MaxBlockRows];
        ref float g = ref *rows.Gamma, b = ref *rows.Beta;
        var zero = TLanes.Zero;
        for (int block = first, end = first + count; block < end; block += blockRows)
        {
            int inBlock = Math.Min(blockRows, end - block);
            for (int r = 0; r < inBlock; r++)
            {
                long at = (long)(block + r) * columns;
                ref float values = ref *(rows.X + at);
                var sum = zero;
                if (rows.Left == null)
                {
                    for (int c = 0; c < whole; c += width) sum = TLanes.Add(sum, Lanes<TLanes, TVector>(ref values, c, whole, rest, zero));
                    if (rest > 0) sum = TLanes.Add(sum, Lanes<TLanes, TVector>(ref values, whole, whole, rest, zero));
                }
                else
                {
                    ref float left = ref *(rows.Left + at), right = ref *(rows.Right + at);
                    for (int c = 0; c < whole; c += width) sum = TLanes.Add(sum, AddStep<TLanes, TVector>(c, whole, rest, ref left, ref right, ref values));
                    if (rest > 0) sum = TLanes.Add(sum, AddStep<TLanes, TVector>(whole, whole, rest, ref left, ref right, ref values));
                }
                averages[r] = TLanes.Sum(sum) / columns;
            }
            for (int r = 0; r < inBlock; r++)
            {
                ref float values = ref *(rows.X + (long)(block + r) * columns);
                var centre = TLanes.Broadcast(averages[r]);
                var squares = zero;
                for (int c = 0; c < whole; c += width) squares = SquareStep<TLanes, TVector>(c, whole, rest, ref values, centre, squares);
                if (rest > 0) squares = SquareStep<TLanes, TVector>(whole, whole, rest, ref values, centre, squares);
                inverses[r] = 1f / MathF.Sqrt(TLanes.Sum(squares) / columns + rows.Epsilon);
            }
            if (rows.Mean != null)
            {
                new ReadOnlySpan<float>(averages, inBlock).CopyTo(new Span<float>(rows.Mean + block, inBlock));
                new ReadOnlySpan<float>(inverses, inBlock).CopyTo(new Span<float>(rows.InverseStd + block, inBlock));
            }
            for (int r = 0; r < inBlock; r++)
            {
                ref float values = ref *(rows.X + (long)(block + r) * columns);
                ref float output = ref *(rows.Y + (long)(block + r) * columns);
                var scale = TLanes.Broadcast(inverses[r]);
                var shifted = TLanes.Broadcast(-averages[r]);
                for (int c = 0; c < whole; c += width) OutputStep<TLanes, TVector>(c, whole, rest, ref values, ref g, ref b, ref output, scale, shifted);
                if (rest > 0) OutputStep<TLanes, TVector>(whole, whole, rest, ref values, ref g, ref b, ref output, scale, shifted);
            }
        }
    }

    /// <summary>
    /// One vector of left + right, stored to the row it normalises and returned; the lanes past the row's end are zero, as
    /// the row's own loads fill them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector AddStep<TLanes, TVector>(int c, int whole, int rest, ref float left, ref float right, ref float values)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var added = TLanes.Add(Lanes<TLanes, TVector>(ref left, c, whole, rest, TLanes.Zero), Lanes<TLanes, TVector>(ref right, c, whole, rest, TLanes.Zero));
        Store<TLanes, TVector>(ref values, c, whole, rest, added);
        return added;
    }

    /// <summary>
    /// One vector of a row's squared distances from its mean, added to <paramref name="squares"/>. Centred first, no
    /// cancellation: the lanes past the row's end load the mean itself and add nothing.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector SquareStep<TLanes, TVector>(int c, int whole, int rest, ref float values, TVector centre, TVector squares)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var d = TLanes.Subtract(Lanes<TLanes, TVector>(ref values, c, whole, rest, centre), centre);
        return TLanes.MultiplyAdd(d, d, squares);
    }

    /// <summary>One vector of a row's output, in Keras' arithmetic: inv = gamma·inverse, y = x·inv + (beta - mean·inv).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OutputStep<TLanes, TVector>(int c, int whole, int rest, ref float values, ref float gamma, ref float beta, ref float output,
        TVector inverse, TVector negativeMean) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var inv = TLanes.Multiply(Lanes<TLanes, TVector>(ref gamma, c, whole, rest, TLanes.Zero), inverse);
        var shift = TLanes.Add(TLanes.Multiply(inv, negativeMean), Lanes<TLanes, TVector>(ref beta, c, whole, rest, TLanes.Zero));
        Store<TLanes, TVector>(ref output, c, whole, rest, TLanes.MultiplyAdd(Lanes<TLanes, TVector>(ref values, c, whole, rest, TLanes.Zero), inv, shift));
    }

    /// <summary>
    /// Rows [first, first + count) of dx, block by block as <see cref="ForwardRows"/>: first every row's sums, then every
    /// row's dx, so the core overlaps the rows' addition chains. Each row's arithmetic is as it was row by row.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void BackwardRows<TLanes, TVector>(in BackwardPass rows, int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int columns = rows.Columns, width = TLanes.Count, whole = columns / width * width, rest = columns - whole;
        int blockRows = Math.Clamp(BlockFloats / columns, 1, MaxBlockRows);
        float* meanGradients = stackalloc float[MaxBlockRows], meanProducts = stackalloc float[MaxBlockRows];
        ref float gammas = ref *rows.Gamma;
        var zero = TLanes.Zero;
        for (int block = first, end = first + count; block < end; block += blockRows)
        {
            int inBlock = Math.Min(blockRows, end - block);
            for (int r = 0; r < inBlock; r++)
            {
                int row = block + r;
                ref float dy = ref *(rows.Dy + (long)row * columns);
                ref float values = ref *(rows.X + (long)row * columns);
                var centre = TLanes.Broadcast(rows.Mean[row]);
                var scale = TLanes.Broadcast(rows.InverseStd[row]);
                // x̂ and g = dy·gamma, vector by vector (the lanes past the row's end are 0 in both); their sums for dx.
                var sumG = zero;
                var sumGx = zero;
                for (int c = 0; c < whole; c += width) SumStep<TLanes, TVector>(c, whole, rest, ref values, ref dy, ref gammas, centre, scale, ref sumG, ref sumGx);
                if (rest > 0) SumStep<TLanes, TVector>(whole, whole, rest, ref values, ref dy, ref gammas, centre, scale, ref sumG, ref sumGx);
                meanGradients[r] = TLanes.Sum(sumG) / columns;
                meanProducts[r] = TLanes.Sum(sumGx) / columns;
            }
            for (int r = 0; r < inBlock; r++)
            {
                int row = block + r;
                ref float dy = ref *(rows.Dy + (long)row * columns);
                ref float values = ref *(rows.X + (long)row * columns);
                ref float dx = ref *(rows.Dx + (long)row * columns);
                var centre = TLanes.Broadcast(rows.Mean[row]);
                var scale = TLanes.Broadcast(rows.InverseStd[row]);
                var meanG = TLanes.Broadcast(meanGradients[r]);
                var negativeMeanGx = TLanes.Broadcast(-meanProducts[r]);
                // dx = inverseStd·(g - mean(g) - x̂·mean(g·x̂)).
                for (int c = 0; c < whole; c += width) InputStep<TLanes, TVector>(c, whole, rest, ref values, ref dy, ref gammas, ref dx, centre, scale, meanG, negativeMeanGx, rows.AccumulateInput);
                if (rest > 0) InputStep<TLanes, TVector>(whole, whole, rest, ref values, ref dy, ref gammas, ref dx, centre, scale, meanG, negativeMeanGx, rows.AccumulateInput);
            }
        }
    }

    // One vector of a row: x̂ and g = dy·gamma (the lanes past the row's end are 0 in both), and the row's sums of g and g·x̂.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SumStep<TLanes, TVector>(int c, int whole, int rest, ref float values, ref float dy, ref float gammas, TVector centre, TVector scale,
        ref TVector sumG, ref TVector sumGx) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var normalized = Normalized<TLanes, TVector>(Lanes<TLanes, TVector>(ref values, c, whole, rest, centre), centre, scale);
        var g = TLanes.Multiply(Lanes<TLanes, TVector>(ref dy, c, whole, rest, TLanes.Zero), Lanes<TLanes, TVector>(ref gammas, c, whole, rest, TLanes.Zero));
        sumG = TLanes.Add(sumG, g);
        sumGx = TLanes.MultiplyAdd(g, normalized, sumGx);
    }

    /// <summary>x̂ = (x - mean)·inverseStd, for one vector of a row (0 in lanes that were filled with the mean).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVector Normalized<TLanes, TVector>(TVector x, TVector centre, TVector scale) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        TLanes.Multiply(TLanes.Subtract(x, centre), scale);

    /// <summary>
    /// dgamma += Σ dy·x̂ and dbeta += Σ dy over every row, in row order (each row's product fused into the running sum),
    /// four vectors of columns at a time in registers over all the rows, then the columns left a vector at a time (whole
    /// ones loaded plainly, the last one partial). Added into memory row by row, each row's sums waited on the last one's store.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void WeightSums<TLanes, TVector>(in BackwardPass pass, int rows) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int columns = pass.Columns, width = TLanes.Count, c = 0;
        float* dGamma = pass.DGamma, dBeta = pass.DBeta;
        for (; c + 4 * width <= columns; c += 4 * width)
        {
            TVector gamma0 = TLanes.Load(ref dGamma[c]), gamma1 = TLanes.Load(ref dGamma[c + width]);
            TVector gamma2 = TLanes.Load(ref dGamma[c + 2 * width]), gamma3 = TLanes.Load(ref dGamma[c + 3 * width]);
            TVector beta0 = TLanes.Load(ref dBeta[c]), beta1 = TLanes.Load(ref dBeta[c + width]);
            TVector beta2 = TLanes.Load(ref dBeta[c + 2 * width]), beta3 = TLanes.Load(ref dBeta[c + 3 * width]);
            for (int row = 0; row < rows; row++)
            {
                float* x = pass.X + (long)row * columns + c, dy = pass.Dy + (long)row * columns + c;
                var centre = TLanes.Broadcast(pass.Mean[row]);
                var scale = TLanes.Broadcast(pass.InverseStd[row]);
                WeightStep<TLanes, TVector>(TLanes.Load(ref x[0]), TLanes.Load(ref dy[0]), centre, scale, ref gamma0, ref beta0);
                WeightStep<TLanes, TVector>(TLanes.Load(ref x[width]), TLanes.Load(ref dy[width]), centre, scale, ref gamma1, ref beta1);
                WeightStep<TLanes, TVector>(TLanes.Load(ref x[2 * width]), TLanes.Load(ref dy[2 * width]), centre, scale, ref gamma2, ref beta2);
                WeightStep<TLanes, TVector>(TLanes.Load(ref x[3 * width]), TLanes.Load(ref dy[3 * width]), centre, scale, ref gamma3, ref beta3);
            }
            TLanes.Store(ref dGamma[c], gamma0); TLanes.Store(ref dGamma[c + width], gamma1);
            TLanes.Store(ref dGamma[c + 2 * width], gamma2); TLanes.Store(ref dGamma[c + 3 * width], gamma3);
            TLanes.Store(ref dBeta[c], beta0); TLanes.Store(ref dBeta[c + width], beta1);
            TLanes.Store(ref dBeta[c + 2 * width], beta2); TLanes.Store(ref dBeta[c + 3 * width], beta3);
        }
        for (; c < columns; c += width)
        {
            int lanes = Math.Min(width, columns - c);
            TVector gammaSum = WholeOrFirst.Load<TLanes, TVector>(ref dGamma[c], lanes), betaSum = WholeOrFirst.Load<TLanes, TVector>(ref dBeta[c], lanes);
            for (int row = 0; row < rows; row++)
            {
                float* x = pass.X + (long)row * columns + c, dy = pass.Dy + (long)row * columns + c;
                var centre = TLanes.Broadcast(pass.Mean[row]);
                // The lanes past the row's end read the mean (x̂ = 0) and dy = 0, and are not stored.
                WeightStep<TLanes, TVector>(WholeOrFirst.Load<TLanes, TVector>(ref x[0], lanes, centre), WholeOrFirst.Load<TLanes, TVector>(ref dy[0], lanes), centre,
                    TLanes.Broadcast(pass.InverseStd[row]), ref gammaSum, ref betaSum);
            }
            WholeOrFirst.Store<TLanes, TVector>(ref dGamma[c], gammaSum, lanes);
            WholeOrFirst.Store<TLanes, TVector>(ref dBeta[c], betaSum, lanes);
        }
    }

    /// <summary>One vector of one row's dy·x̂ fused into dgamma's running sum, and its dy added to dbeta's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WeightStep<TLanes, TVector>(TVector x, TVector dy, TVector centre, TVector scale, ref TVector gammaSum, ref TVector betaSum)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        gammaSum = TLanes.MultiplyAdd(dy, Normalized<TLanes, TVector>(x, centre, scale), gammaSum);
        betaSum = TLanes.Add(betaSum, dy);
    }

    // One vector of a row's dx = inverseStd·(g - mean(g) - x̂·mean(g·x̂)).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InputStep<TLanes, TVector>(int c, int whole, int rest, ref float values, ref float dy, ref float gammas, ref float dx, TVector centre, TVector scale,
        TVector meanG, TVector negativeMeanGx, bool accumulateInput) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        var normalized = Normalized<TLanes, TVector>(Lanes<TLanes, TVector>(ref values, c, whole, rest, centre), centre, scale);
        var g = TLanes.Multiply(Lanes<TLanes, TVector>(ref dy, c, whole, rest, TLanes.Zero), Lanes<TLanes, TVector>(ref gammas, c, whole, rest, TLanes.Zero));
        var centred = TLanes.Add(TLanes.Multiply(normalized, negativeMeanGx), TLanes.Subtract(g, meanG));
        var result = accumulateInput
            ? TLanes.Add(TLanes.Multiply(centred, scale), Lanes<TLanes, TVector>(ref dx, c, whole, rest, TLanes.Zero))
            : TLanes.Multiply(centred, scale);
        Store<TLanes, TVector>(ref dx, c, whole, rest, result);
    }
}
