using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Numerics.Tensors;

namespace ModelGen.Kernels;

/// <summary>
/// Activations, and their backward passes written in terms of the activation's <em>output</em> y, so a layer
/// keeps one buffer per tensor and never stores pre-activations.
/// </summary>
public static class Activations
{
    /// <summary>y = f(x) in place over <paramref name="rows"/> rows of <paramref name="columns"/> values.</summary>
    public static void Forward(Activation activation, Span<float> values, int rows, int columns) =>
        Forward(activation, values, values, rows, columns);

    /// <summary>destination = f(source): a standalone activation writes its output without first copying its input.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Forward(Activation activation, ReadOnlySpan<float> source, Span<float> destination, int rows, int columns)
    {
        var x = source.Slice(0, rows * columns);
        var y = destination.Slice(0, rows * columns);
        switch (activation)
        {
            case Activation.Linear: x.CopyTo(y); break;
            case Activation.Relu: TensorPrimitives.Max(x, 0f, y); break;
            case Activation.Sigmoid: TensorPrimitives.Sigmoid(x, y); break;
            case Activation.Tanh: TensorPrimitives.Tanh(x, y); break;
            case Activation.Softmax: Softmax(x, y, rows, columns); break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, null);
        }
    }

    /// <summary>
    /// Turns dL/dy into dL/dx in place, given the output y = f(x): relu 1[y&gt;0], sigmoid y(1-y),
    /// tanh 1-y², softmax y ⊙ (dy - ⟨dy, y⟩) per row.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static unsafe void Backward(Activation activation, ReadOnlySpan<float> output, Span<float> gradient, int rows, int columns)
    {
        int length = rows * columns;
        var y = output.Slice(0, length);
        var dy = gradient.Slice(0, length);
        switch (activation)
        {
            case Activation.Linear: break;
            case Activation.Relu:
            case Activation.Sigmoid:
            case Activation.Tanh:
                fixed (float* pointY = y, pointDy = dy)
                {
                    var work = new ElementwiseRanges(activation, pointY, pointDy);
                    Helper.ForRanges(ref work, length, floatsPerItem: 2);
                }
                break;
            case Activation.Softmax:
                for (int row = 0; row < rows; row++)
                {
                    var yRow = y.Slice(row * columns, columns);
                    var dyRow = dy.Slice(row * columns, columns);
                    float inner = TensorPrimitives.Dot(yRow, dyRow);
                    for (int j = 0; j < columns; j++) dyRow[j] = yRow[j] * (dyRow[j] - inner);
                }
                break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, null);
        }
    }

    /// <summary>Element-wise derivatives over a range of values, on either thread.</summary>
    private readonly unsafe struct ElementwiseRanges(Activation activation, float* output, float* gradient) : IRanges
    {
        public void Run(int first, int count) => ElementwiseBackward(activation, new ReadOnlySpan<float>(output + first, count), new Span<float>(gradient + first, count));
    }

    /// <summary>
    /// The element-wise derivatives, a vector at a time (a branch per element costs a misprediction on every sign change of a
    /// ReLU's output: 4 ns per value, five times a whole vectorised pass).
    /// </summary>
    private static void ElementwiseBackward(Activation activation, ReadOnlySpan<float> y, Span<float> dy)
    {
        var ys = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(y);
        var dys = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(dy);
        var one = System.Numerics.Vector<float>.One;
        for (int i = 0; i < ys.Length; i++)
        {
            var v = ys[i];
            dys[i] = activation switch
            {
                Activation.Relu => System.Numerics.Vector.ConditionalSelect(System.Numerics.Vector.GreaterThan(v, System.Numerics.Vector<float>.Zero), dys[i], System.Numerics.Vector<float>.Zero),
                Activation.Sigmoid => dys[i] * v * (one - v),
                _ => dys[i] * (one - v * v),
            };
        }
        for (int i = ys.Length * System.Numerics.Vector<float>.Count; i < y.Length; i++)
        {
            dy[i] = activation switch
            {
                Activation.Relu => y[i] > 0f ? dy[i] : 0f,
                Activation.Sigmoid => dy[i] * y[i] * (1f - y[i]),
                _ => dy[i] * (1f - y[i] * y[i]),
            };
        }
    }

    /// <summary>Numerically stable softmax of each of <paramref name="rows"/> rows into <paramref name="destination"/> (which may be the source).</summary>
    public static void Softmax(ReadOnlySpan<float> source, Span<float> destination, int rows, int columns)
    {
        var x = source.Slice(0, rows * columns);
        var y = destination.Slice(0, rows * columns);
        if (columns > 32)
        {
            for (int row = 0; row < rows; row++)
            {
                var from = x.Slice(row * columns, columns);
                var to = y.Slice(row * columns, columns);
                float max = TensorPrimitives.Max(from);
                TensorPrimitives.Subtract(from, max, to);
                TensorPrimitives.Exp(to, to);
                TensorPrimitives.Divide(to, TensorPrimitives.Sum(to), to);
            }
            return;
        }
        // Short rows (a classifier's few outputs): plain loops, five library calls per row cost more than the arithmetic (360 ns
        // for 10 values). The scalar exp is also what keeps a sample's probabilities independent of its place in the batch: a
        // vectorised exp rounds differently in its vector body and its tail.
        int width = System.Numerics.Vector<float>.Count;
        for (int row = 0; row < rows; row++)
        {
            ref float from = ref Unsafe.Add(ref MemoryMarshal.GetReference(x), row * columns);
            ref float to = ref Unsafe.Add(ref MemoryMarshal.GetReference(y), row * columns);
            // The maximum in two chains (it is only subtracted: which of equal values, or of +0 and -0, wins changes no exp).
            float even = from, odd = from;
            int i = 1;
            for (; i + 1 < columns; i += 2)
            {
                even = float.MaxNative(even, Unsafe.Add(ref from, i));
                odd = float.MaxNative(odd, Unsafe.Add(ref from, i + 1));
            }
            if (i < columns) even = float.MaxNative(even, Unsafe.Add(ref from, i));
            float largest = float.MaxNative(even, odd);
            if (float.IsNaN(Unsafe.Add(ref from, 0)) || !float.IsFinite(largest)) largest = MaxOf(MemoryMarshal.CreateReadOnlySpan(ref from, columns));
            double total = 0;
            for (i = 0; i < columns; i++) total += Unsafe.Add(ref to, i) = MathF.Exp(Unsafe.Add(ref from, i) - largest);
            float denominator = (float)total;
            // Divisions are exact whatever the width: a vector of them where the row has one.
            i = 0;
            if (columns >= width)
            {
                var divisor = new System.Numerics.Vector<float>(denominator);
                for (; i + width <= columns; i += width)
                    System.Numerics.Vector.StoreUnsafe(System.Numerics.Vector.LoadUnsafe(ref Unsafe.Add(ref to, i)) / divisor, ref Unsafe.Add(ref to, i));
            }
            for (; i < columns; i++) Unsafe.Add(ref to, i) /= denominator;
        }
    }

    /// <summary>The row maximum as MathF.Max folds it (NaN wins), for rows where a NaN or infinity makes the fast maximum unsafe.</summary>
    private static float MaxOf(ReadOnlySpan<float> row)
    {
        float largest = row[0];
        for (int i = 1; i < row.Length; i++) largest = MathF.Max(largest, row[i]);
        return largest;
    }
}

/// <summary>Reductions and element-wise helpers the generated backward passes call.</summary>
public static class Reductions
{
    /// <summary>bias gradient: column sums of a (rows, columns) matrix, overwriting or adding to the destination.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void SumRows(ReadOnlySpan<float> matrix, Span<float> destination, int rows, int columns, bool accumulate = false)
    {
        var target = destination.Slice(0, columns);
        if (!accumulate) target.Clear();
        int width = System.Numerics.Vector<float>.Count;
        if (columns % width == 0 && columns / width <= 8)
        {
            // Narrow rows (a convolution's channels, tens of thousands of positions): sums stay in a few vectors instead of a
            // library call per row.
            Span<System.Numerics.Vector<float>> sums = stackalloc System.Numerics.Vector<float>[columns / width];
            sums.Clear();
            var vectors = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(matrix.Slice(0, rows * columns));
            for (int row = 0, at = 0; row < rows; row++)
                for (int j = 0; j < sums.Length; j++, at++) sums[j] += vectors[at];
            var targets = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(target);
            for (int j = 0; j < sums.Length; j++) targets[j] += sums[j];
            return;
        }
        if (columns <= 32)
        {
            // A classifier's few columns: a library call per row costs more than the row's adds. The same additions, in the
            // same order, as the row-by-row sum below.
            for (int row = 0, at = 0; row < rows; row++)
                for (int j = 0; j < columns; j++, at++) target[j] += matrix[at];
            return;
        }
        for (int row = 0; row < rows; row++) TensorPrimitives.Add(target, matrix.Slice(row * columns, columns), target);
    }

    /// <summary>Copies the first <paramref name="length"/> values.</summary>
    public static void Copy(ReadOnlySpan<float> source, Span<float> destination, int length) => source.Slice(0, length).CopyTo(destination);

    /// <summary>Adds <paramref name="bias"/> to each of <paramref name="rows"/> rows (a bias after a product that had none).</summary>
    public static void AddToRows(Span<float> matrix, ReadOnlySpan<float> bias, int rows, int columns)
    {
        for (int row = 0; row < rows; row++)
        {
            var values = matrix.Slice(row * columns, columns);
            TensorPrimitives.Add(values, bias.Slice(0, columns), values);
        }
    }
}
