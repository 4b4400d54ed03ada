using System;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>
/// Forward and backward of Keras' merge layers over batches of flat samples. Every backward either
/// overwrites its destination or adds to it: the generator knows at compile time which gradient
/// contribution to a tensor comes first, so fan-out costs no zeroing pass.
/// </summary>
public static class Merges
{
    /// <summary>destination (=|+=) scale · source.</summary>
    [MethodImpl(Compiled.Driver)]
    public static void Pass(ReadOnlySpan<float> source, Span<float> destination, int length, bool accumulate, float scale = 1f)
    {
        var from = source.Slice(0, length);
        var to = destination.Slice(0, length);
        if (!accumulate)
        {
            if (scale == 1f) from.CopyTo(to);
            else TensorPrimitives.Multiply(from, scale, to);
        }
        else if (scale == 1f) TensorPrimitives.Add(to, from, to);
        else TensorPrimitives.MultiplyAdd(from, scale, to, to);
    }

    /// <summary>
    /// output = a + b (Add), a - b (Subtract), a ⊙ b (Multiply), max, min; Average is Add then scale. A large merge (a
    /// Transformer's residual connection, 131K floats at batch 32) is shared between the cores; every element is computed alike.
    /// With <paramref name="relu"/>, output is the ReLU of the merge (a ReLU that alone reads it: a ResNet block's last),
    /// taken on each block of values while it is in L1, as Activations.Forward takes it.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Combine(MergeOperation operation, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> output, int length, bool relu = false)
    {
        if (operation is not (MergeOperation.Add or MergeOperation.Subtract or MergeOperation.Multiply or MergeOperation.Maximum or MergeOperation.Minimum))
            throw new ArgumentOutOfRangeException(nameof(operation), operation, null);
        fixed (float* x = a.Slice(0, length), y = b.Slice(0, length), z = output.Slice(0, length))
        {
            var work = new CombineRanges(operation, x, y, z, relu);
            Helper.ForRanges(ref work, length, floatsPerItem: 3);
        }
    }

    /// <summary>A merge over a range of elements, on either thread.</summary>
    private readonly unsafe struct CombineRanges(MergeOperation operation, float* a, float* b, float* output, bool relu) : IRanges
    {
        /// <summary>Values a block where the ReLU follows: three blocks of 16 KB stay in L1 between the merge and the max.</summary>
        private const int ReluBlock = 4096;

        [MethodImpl(Compiled.Driver)]
        public void Run(int first, int count)
        {
            if (!relu)
            {
                Merge(first, count);
                return;
            }
            for (int at = first, end = first + count; at < end; at += ReluBlock)
            {
                int length = Math.Min(ReluBlock, end - at);
                Merge(at, length);
                var merged = new Span<float>(output + at, length);
                TensorPrimitives.Max(merged, 0f, merged);
            }
        }

        [MethodImpl(Compiled.Driver)]
        private void Merge(int first, int count)
        {
            var x = new ReadOnlySpan<float>(a + first, count);
            var y = new ReadOnlySpan<float>(b + first, count);
            var z = new Span<float>(output + first, count);
            switch (operation)
            {
                case MergeOperation.Add: TensorPrimitives.Add(x, y, z); break;
                case MergeOperation.Subtract: TensorPrimitives.Subtract(x, y, z); break;
                case MergeOperation.Multiply: TensorPrimitives.Multiply(x, y, z); break;
                case MergeOperation.Maximum: TensorPrimitives.Max(x, y, z); break;
                default: TensorPrimitives.Min(x, y, z); break;
            }
        }
    }

    /// <summary>Scales in place (Average divides the sum of its inputs by their count; attention scales its queries), shared between the cores when large.</summary>
    public static unsafe void Scale(Span<float> values, int length, float scale)
    {
        fixed (float* x = values.Slice(0, length))
        {
            var work = new ScaleRanges(x, scale);
            Helper.ForRanges(ref work, length, floatsPerItem: 2);
        }
    }

    private readonly unsafe struct ScaleRanges(float* values, float scale) : IRanges
    {
        public void Run(int first, int count) => TensorPrimitives.Multiply(new ReadOnlySpan<float>(values + first, count), scale, new Span<float>(values + first, count));
    }

    /// <summary>
    /// Gradient of one operand of Multiply, Maximum or Minimum: dOperand (=|+=) dOutput ⊙ other (Multiply), or
    /// dOutput where this operand won (Maximum/Minimum; ties go to the first operand, as Keras' gradient of maximum does;
    /// a NaN wins nowhere). A vector at a time, and a large one shared between the cores by ranges: every element is
    /// computed alike, as a scalar loop would.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void OperandGradient(MergeOperation operation, ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> operand, ReadOnlySpan<float> other,
        bool operandIsFirst, Span<float> destination, int length, bool accumulate)
    {
        if (operation is not (MergeOperation.Multiply or MergeOperation.Maximum or MergeOperation.Minimum))
            throw new ArgumentOutOfRangeException(nameof(operation), operation, null);
        fixed (float* dy = outputGradient.Slice(0, length), mine = operand.Slice(0, length), theirs = other.Slice(0, length), dx = destination.Slice(0, length))
        {
            var work = new OperandGradientRanges(operation, dy, mine, theirs, dx, operandIsFirst, accumulate);
            Helper.ForRanges(ref work, length, floatsPerItem: 4);
        }
    }

    /// <summary>An operand's gradient over a range of elements, on either thread.</summary>
    private readonly unsafe struct OperandGradientRanges(MergeOperation operation, float* outputGradient, float* operand, float* other, float* destination,
        bool operandIsFirst, bool accumulate) : IVectorRanges
    {
        public void Run(int first, int count) => Simd.RunRanges(this, first, count);

        [MethodImpl(Compiled.Kernel)]
        public void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            int width = TLanes.Count, end = first + count, i = first;
            for (; i + width <= end; i += width) Write<TLanes, TVector>(i, width);
            if (i < end) Write<TLanes, TVector>(i, end - i); // the last, partial vector: nothing past it read or written
        }

        /// <summary>
        /// The <paramref name="lanes"/> elements from <paramref name="at"/> on: this operand's share of the output's gradient,
        /// dy · other (the operand itself is not read), or dy where this operand won and +0 elsewhere, written or added.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void Write<TLanes, TVector>(int at, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            TVector gradient = WholeOrFirst.Load<TLanes, TVector>(ref outputGradient[at], lanes), theirs = WholeOrFirst.Load<TLanes, TVector>(ref other[at], lanes), share;
            if (operation == MergeOperation.Multiply) share = TLanes.Multiply(gradient, theirs);
            else
            {
                TVector mine = WholeOrFirst.Load<TLanes, TVector>(ref operand[at], lanes);
                var won = operation == MergeOperation.Maximum
                    ? operandIsFirst ? TLanes.NotBelow(mine, theirs) : TLanes.Greater(mine, theirs)
                    : operandIsFirst ? TLanes.NotBelow(theirs, mine) : TLanes.Greater(theirs, mine);
                share = TLanes.Select(won, gradient, TLanes.Zero);
            }
            if (accumulate) share = TLanes.Add(WholeOrFirst.Load<TLanes, TVector>(ref destination[at], lanes), share);
            WholeOrFirst.Store<TLanes, TVector>(ref destination[at], share, lanes);
        }
    }

    /// <summary>Concatenate along the last axis: each sample's row is the operands' rows side by side.</summary>
    [MethodImpl(Compiled.Kernel)]
    public static void Concatenate(ReadOnlySpan<float> source, int sourceWidth, Span<float> output, int outputWidth, int offset, int batch)
    {
        for (int sample = 0; sample < batch; sample++)
        {
            source.Slice(sample * sourceWidth, sourceWidth).CopyTo(output.Slice(sample * outputWidth + offset, sourceWidth));
        }
    }

    /// <summary>
    /// Copies (or adds) columns [offset, offset + width) of every row into a contiguous (batch, width) block: the
    /// gradient of one concatenated operand, or one tensor out of a row of several inputs, outputs or targets.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static void Slice(ReadOnlySpan<float> rows, int rowWidth, int offset, Span<float> destination, int width, int batch, bool accumulate = false)
    {
        for (int sample = 0; sample < batch; sample++)
        {
            var slice = rows.Slice(sample * rowWidth + offset, width);
            var target = destination.Slice(sample * width, width);
            if (accumulate) TensorPrimitives.Add(target, slice, target);
            else slice.CopyTo(target);
        }
    }

    /// <summary>Keras' Dot(axes=1) on flat tensors: one dot product per sample.</summary>
    [MethodImpl(Compiled.Kernel)]
    public static void Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> output, int width, int batch)
    {
        for (int sample = 0; sample < batch; sample++)
        {
            output[sample] = TensorPrimitives.Dot(a.Slice(sample * width, width), b.Slice(sample * width, width));
        }
    }

    /// <summary>The gradient of one Dot operand: dOperand (=|+=) dOutput[sample] · other, row by row.</summary>
    [MethodImpl(Compiled.Kernel)]
    public static void DotBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> other, Span<float> destination, int width, int batch, bool accumulate)
    {
        for (int sample = 0; sample < batch; sample++)
        {
            var row = other.Slice(sample * width, width);
            var target = destination.Slice(sample * width, width);
            if (accumulate) TensorPrimitives.MultiplyAdd(row, outputGradient[sample], target, target);
            else TensorPrimitives.Multiply(row, outputGradient[sample], target);
        }
    }
}
