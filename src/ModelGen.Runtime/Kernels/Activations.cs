using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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

    /// <summary>
    /// destination = f(source): a standalone activation writes its output without first copying its input. A large tensor is
    /// shared between the cores by ranges of rows, as the merges are (a row, a softmax's unit, stays whole): a value's result
    /// does not depend on its range.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Forward(Activation activation, ReadOnlySpan<float> source, Span<float> destination, int rows, int columns)
    {
        int length = rows * columns;
        if (source.Length < length || destination.Length < length)
            throw new ArgumentException($"{activation} of {rows} x {columns} needs that many values; got {source.Length} in, {destination.Length} out.");
        if (activation is not (Activation.Linear or Activation.Relu or Activation.Sigmoid or Activation.Tanh or Activation.Softmax))
            throw new ArgumentOutOfRangeException(nameof(activation), activation, null);
        fixed (float* x = source, y = destination)
        {
            var work = new ForwardRanges(activation, x, y, columns);
            Helper.ForRanges(ref work, rows, floatsPerItem: 2L * columns);
        }
    }

    /// <summary>Rows [first, first + count) of a standalone activation, on either thread.</summary>
    private readonly unsafe struct ForwardRanges(Activation activation, float* source, float* destination, int columns) : IRanges
    {
        public void Run(int first, int count) => ForwardRows(activation, new ReadOnlySpan<float>(source + (long)first * columns, count * columns),
            new Span<float>(destination + (long)first * columns, count * columns), count, columns);
    }

    [MethodImpl(Compiled.Kernel)]
    private static void ForwardRows(Activation activation, ReadOnlySpan<float> x, Span<float> y, int rows, int columns)
    {
        switch (activation)
        {
            case Activation.Linear: x.CopyTo(y); break;
            case Activation.Relu: TensorPrimitives.Max(x, 0f, y); break;
            case Activation.Sigmoid: VectorMath.Sigmoid(x, y); break;
            case Activation.Tanh: VectorMath.Tanh(x, y); break;
            default: Softmax(x, y, rows, columns); break;
        }
    }

    /// <summary>
    /// Turns dL/dy into dL/dx in place, given the output y = f(x): relu 1[y&gt;0], sigmoid y(1-y),
    /// tanh 1-y², softmax y ⊙ (dy - ⟨dy, y⟩) per row.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
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
                    var work = new ElementwiseRanges(activation, pointY, pointDy, pointDy, accumulate: false);
                    Helper.ForRanges(ref work, length, floatsPerItem: 2);
                }
                break;
            case Activation.Softmax: SoftmaxBackward(y, dy, rows, columns); break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, null);
        }
    }

    /// <summary>
    /// A standalone activation's backward block in one pass: dL/dx (=|+=) f'(y)·dL/dy into <paramref name="inputGradient"/>,
    /// <paramref name="gradient"/> left as it was; the same values as the derivative in place, then Merges.Pass. For relu,
    /// sigmoid and tanh (<see cref="IsElementwise"/>).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Backward(Activation activation, ReadOnlySpan<float> output, ReadOnlySpan<float> gradient, Span<float> inputGradient,
        int rows, int columns, bool accumulate)
    {
        if (!IsElementwise(activation)) throw new ArgumentOutOfRangeException(nameof(activation), activation, "only relu, sigmoid and tanh take their derivative into another buffer");
        int length = rows * columns;
        fixed (float* y = output.Slice(0, length), dy = gradient.Slice(0, length), dx = inputGradient.Slice(0, length))
        {
            var work = new ElementwiseRanges(activation, y, dy, dx, accumulate);
            Helper.ForRanges(ref work, length, floatsPerItem: 3);
        }
    }

    /// <summary>An activation whose derivative at each value needs only its own output: relu, sigmoid, tanh.</summary>
    public static bool IsElementwise(Activation activation) => activation is Activation.Relu or Activation.Sigmoid or Activation.Tanh;

    /// <summary>Element-wise derivatives over a range of values, on either thread.</summary>
    private readonly unsafe struct ElementwiseRanges(Activation activation, float* output, float* gradient, float* inputGradient, bool accumulate) : IRanges
    {
        public void Run(int first, int count) => ElementwiseBackward(activation, new ReadOnlySpan<float>(output + first, count), new ReadOnlySpan<float>(gradient + first, count),
            new Span<float>(inputGradient + first, count), accumulate);
    }

    /// <summary>
    /// The element-wise derivatives, dx (=|+=) f'(y)·dy (dx may be dy itself), a vector at a time (a branch per element costs a
    /// misprediction on every sign change of a ReLU's output: 4 ns per value, five times a whole vectorised pass).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void ElementwiseBackward(Activation activation, ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, bool accumulate)
    {
        var ys = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(y);
        var dys = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(dy);
        var dxs = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(dx);
        var one = System.Numerics.Vector<float>.One;
        for (int i = 0; i < ys.Length; i++)
        {
            var v = ys[i];
            var contribution = activation switch
            {
                Activation.Relu => System.Numerics.Vector.ConditionalSelect(System.Numerics.Vector.GreaterThan(v, System.Numerics.Vector<float>.Zero), dys[i], System.Numerics.Vector<float>.Zero),
                Activation.Sigmoid => dys[i] * v * (one - v),
                _ => dys[i] * (one - v * v),
            };
            dxs[i] = accumulate ? dxs[i] + contribution : contribution;
        }
        for (int i = ys.Length * System.Numerics.Vector<float>.Count; i < y.Length; i++)
        {
            float contribution = activation switch
            {
                Activation.Relu => y[i] > 0f ? dy[i] : 0f,
                Activation.Sigmoid => dy[i] * y[i] * (1f - y[i]),
                _ => dy[i] * (1f - y[i] * y[i]),
            };
            dx[i] = accumulate ? dx[i] + contribution : contribution;
        }
    }
}

/// <summary>Reductions and element-wise helpers the generated backward passes call.</summary>
public static class Reductions
{
    /// <summary>bias gradient: column sums of a (rows, columns) matrix, overwriting or adding to the destination.</summary>
    [MethodImpl(Compiled.Driver)]
    public static void SumRows(ReadOnlySpan<float> matrix, Span<float> destination, int rows, int columns, bool accumulate = false)
    {
        if (matrix.Length < rows * columns || destination.Length < columns) throw new ArgumentException($"column sums of {rows} x {columns} need that many values.");
        switch (Simd.Current)
        {
            case SimdPath.Avx512: SumRows<Lanes512, Vector512<float>>(matrix, destination, rows, columns, accumulate); break;
            case SimdPath.Avx2: SumRows<Lanes256, Vector256<float>>(matrix, destination, rows, columns, accumulate); break;
            default: SumRows<Lanes128, Vector128<float>>(matrix, destination, rows, columns, accumulate); break;
        }
    }

    /// <summary>
    /// Four vectors of columns at a time (the last one masked), their sums in registers down all the rows: each column's
    /// values are added in row order, starting from zero or from the destination, whatever the width. Rows narrower than
    /// four vectors are read as whole vectors while those stay inside the matrix, so each row costs one add's latency where
    /// a masked load a row took two and a half (the Zen 5, one core: the autoencoder's 100,352 rows of 1 121 -> 49 us, 25,088
    /// of 16 31 -> 16, 32,768 of 8 40 -> 17; 32,768 of 32, the ResNet block's, 52 -> 43, its 4 MB read from L3).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void SumRows<TLanes, TVector>(ReadOnlySpan<float> matrix, Span<float> destination, int rows, int columns, bool accumulate)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int width = TLanes.Count;
        ref float first = ref MemoryMarshal.GetReference(matrix);
        ref float target = ref MemoryMarshal.GetReference(destination);
        for (int block = 0; block < columns; block += 4 * width)
        {
            // Lanes of each of the four vectors within the row; a count of 0 leaves a vector out.
            int c0 = Math.Clamp(columns - block, 0, width), c1 = Math.Clamp(columns - block - width, 0, width);
            int c2 = Math.Clamp(columns - block - 2 * width, 0, width), c3 = Math.Clamp(columns - block - 3 * width, 0, width);
            ref float sums = ref Unsafe.Add(ref target, block);
            TVector s0 = Start(ref sums, c0), s1 = Start(ref Unsafe.Add(ref sums, width), c1);
            TVector s2 = Start(ref Unsafe.Add(ref sums, 2 * width), c2), s3 = Start(ref Unsafe.Add(ref sums, 3 * width), c3);
            ref float row = ref Unsafe.Add(ref first, block);
            if (c3 == width)
            {
                for (int r = 0; r < rows; r++, row = ref Unsafe.Add(ref row, columns))
                {
                    s0 = TLanes.Add(s0, TLanes.Load(ref row));
                    s1 = TLanes.Add(s1, TLanes.Load(ref Unsafe.Add(ref row, width)));
                    s2 = TLanes.Add(s2, TLanes.Load(ref Unsafe.Add(ref row, 2 * width)));
                    s3 = TLanes.Add(s3, TLanes.Load(ref Unsafe.Add(ref row, 3 * width)));
                }
            }
            else
            {
                // Rows whose vectors, read whole, stay inside the matrix: the lanes past each vector's columns add the next
                // values, lanes that are never stored. The rows after them are read masked.
                int vectorFloats = (columns - block + width - 1) / width * width; // the block's vectors, fewer than four
                long room = (long)matrix.Length - block - vectorFloats; // floats after the first row's vectors end
                int r = 0, whole = room < 0 ? 0 : (int)Math.Min(room / columns + 1, rows);
                for (; r < whole; r++, row = ref Unsafe.Add(ref row, columns))
                {
                    s0 = TLanes.Add(s0, TLanes.Load(ref row));
                    if (c1 > 0) s1 = TLanes.Add(s1, TLanes.Load(ref Unsafe.Add(ref row, width)));
                    if (c2 > 0) s2 = TLanes.Add(s2, TLanes.Load(ref Unsafe.Add(ref row, 2 * width)));
                    if (c3 > 0) s3 = TLanes.Add(s3, TLanes.Load(ref Unsafe.Add(ref row, 3 * width)));
                }
                for (; r < rows; r++, row = ref Unsafe.Add(ref row, columns))
                {
                    s0 = TLanes.Add(s0, TLanes.LoadFirst(ref row, c0));
                    if (c1 > 0) s1 = TLanes.Add(s1, TLanes.LoadFirst(ref Unsafe.Add(ref row, width), c1));
                    if (c2 > 0) s2 = TLanes.Add(s2, TLanes.LoadFirst(ref Unsafe.Add(ref row, 2 * width), c2));
                    if (c3 > 0) s3 = TLanes.Add(s3, TLanes.LoadFirst(ref Unsafe.Add(ref row, 3 * width), c3));
                }
            }
            Finish(ref sums, s0, c0); Finish(ref Unsafe.Add(ref sums, width), s1, c1);
            Finish(ref Unsafe.Add(ref sums, 2 * width), s2, c2); Finish(ref Unsafe.Add(ref sums, 3 * width), s3, c3);
        }

        TVector Start(ref float at, int count) => accumulate && count > 0 ? TLanes.LoadFirst(ref at, count) : TLanes.Zero;
        static void Finish(ref float at, TVector sum, int count)
        {
            if (count > 0) TLanes.StoreFirst(ref at, sum, count);
        }
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
