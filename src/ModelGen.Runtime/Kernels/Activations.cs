using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Numerics.Tensors;

namespace ModelGen.Kernels;

/// <summary>
/// Activations, and their backward passes written in terms of the activation's <em>output</em> y, so a layer
/// keeps one buffer per tensor and never stores pre-activations.
/// </summary>
public static partial class Activations
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
            case Activation.Softmax: SoftmaxBackward(y, dy, rows, columns); break;
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
