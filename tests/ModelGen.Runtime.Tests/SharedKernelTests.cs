using ModelGen.Kernels;
using static ModelGen.Runtime.Tests.TestValues;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// Memory-bound kernels split a large batch into parts that both cores take. Each part must compute exactly what the
/// kernel computes for those samples alone: a whole batch on two threads equals the samples run one at a time on one.
/// </summary>
[Collection(KernelSettings.Name)]
public class SharedKernelTests
{
    private const int Batch = 40; // 26x26x32 images: 20 parts of two samples

    private static readonly Window Convolution3x3 = new(26, 26, 32, 3, 3, 1, 1, Same: true);
    private static readonly Window Pool2x2 = new(26, 26, 32, 2, 2, 2, 2, Same: false);

    [Fact]
    public void Im2col_of_a_shared_batch_equals_each_sample_alone()
    {
        var images = Uniform(Batch * 26 * 26 * 32, 1);
        int patchFloats = Convolution3x3.Positions * Convolution3x3.PatchSize;
        var whole = new float[Batch * patchFloats];
        KernelSettings.OnThreads(2, () => Convolution.Im2Col(images, whole, Convolution3x3, Batch));

        var single = new float[patchFloats];
        for (int n = 0; n < Batch; n++)
        {
            Convolution.Im2Col(images.AsSpan(n * 26 * 26 * 32, 26 * 26 * 32), single, Convolution3x3, 1);
            Assert.True(single.AsSpan().SequenceEqual(whole.AsSpan(n * patchFloats, patchFloats)), $"sample {n}");
        }
    }

    [Fact]
    public void Max_pooling_of_a_shared_batch_equals_each_sample_alone()
    {
        var images = Uniform(Batch * 26 * 26 * 32, 2);
        var gradients = Uniform(Batch * 13 * 13 * 32, 3);
        int imageFloats = 26 * 26 * 32, pooledFloats = 13 * 13 * 32;
        var pooled = new float[Batch * pooledFloats];
        var winners = new int[pooled.Length];
        var back = Uniform(images.Length, 4);
        var start = (float[])back.Clone();
        KernelSettings.OnThreads(2, () =>
        {
            Pooling.MaxForward(images, pooled, winners, Pool2x2, Batch);
            Pooling.MaxBackward(gradients, winners, back, Pool2x2, Batch, accumulate: true);
        });

        var onePooled = new float[pooledFloats];
        var oneWinners = new int[pooledFloats];
        for (int n = 0; n < Batch; n++)
        {
            Pooling.MaxForward(images.AsSpan(n * imageFloats, imageFloats), onePooled, oneWinners, Pool2x2, 1);
            Assert.True(onePooled.AsSpan().SequenceEqual(pooled.AsSpan(n * pooledFloats, pooledFloats)), $"sample {n}: maxima");
            Assert.True(oneWinners.AsSpan().SequenceEqual(winners.AsSpan(n * pooledFloats, pooledFloats)), $"sample {n}: winners");
            var oneBack = start.AsSpan(n * imageFloats, imageFloats).ToArray();
            Pooling.MaxBackward(gradients.AsSpan(n * pooledFloats, pooledFloats), oneWinners, oneBack, Pool2x2, 1, accumulate: true);
            Assert.True(oneBack.AsSpan().SequenceEqual(back.AsSpan(n * imageFloats, imageFloats)), $"sample {n}: gradient");
        }
    }

    /// <summary>
    /// A standalone activation over a large tensor, shared by ranges of rows, in place or not, gives each row the bits it gets
    /// alone on one core (a softmax's rows of 77 end in a partial vector, and a range's first row may start mid-vector).
    /// </summary>
    [Theory, MemberData(nameof(LossAndActivationTests.EveryActivation), MemberType = typeof(LossAndActivationTests))]
    public void Activation_forward_over_a_shared_buffer_equals_each_row_alone(Activation activation)
    {
        const int rows = 1000, columns = 77; // 154,000 floats read and written: three parts
        var inputs = Uniform(rows * columns, 10).Select(v => 4 * v).ToArray();
        var shared = new float[inputs.Length];
        var inPlace = (float[])inputs.Clone();
        KernelSettings.OnThreads(2, () =>
        {
            Activations.Forward(activation, inputs, shared, rows, columns);
            Activations.Forward(activation, inPlace, rows, columns);
        });
        var alone = new float[columns];
        for (int row = 0; row < rows; row++)
        {
            Activations.Forward(activation, inputs.AsSpan(row * columns, columns), alone, 1, columns);
            Assert.True(alone.AsSpan().SequenceEqual(shared.AsSpan(row * columns, columns)), $"row {row}");
            Assert.True(alone.AsSpan().SequenceEqual(inPlace.AsSpan(row * columns, columns)), $"row {row} in place");
        }
    }

    [Theory]
    [InlineData(Activation.Relu)]
    [InlineData(Activation.Sigmoid)]
    [InlineData(Activation.Tanh)]
    public void Activation_backward_over_a_shared_buffer_equals_its_definition(Activation activation)
    {
        const int rows = 1000, columns = 77; // 77,000 values: parts with vector remainders
        var outputs = Uniform(rows * columns, 5);
        if (activation == Activation.Sigmoid) outputs = outputs.Select(v => (v + 1) / 2).ToArray();
        var gradients = Uniform(rows * columns, 6);
        var shared = (float[])gradients.Clone();
        KernelSettings.OnThreads(2, () => Activations.Backward(activation, outputs, shared, rows, columns));
        for (int i = 0; i < outputs.Length; i++)
        {
            float y = outputs[i], g = gradients[i];
            float expected = activation switch
            {
                Activation.Relu => y > 0 ? g : 0f,
                Activation.Sigmoid => g * y * (1 - y),
                _ => g * (1 - y * y),
            };
            Assert.Equal(expected, shared[i], 1e-6f);
        }
    }

    /// <summary>
    /// A standalone activation's backward block in one pass, dx (=|+=) f'(y)·dy, gives the bits of the derivative in place and
    /// then Merges.Pass, on one core and two, written or added; dy is left as it was and nothing past dx is written. Softmax,
    /// whose derivative mixes a row, is refused.
    /// </summary>
    [Theory]
    [InlineData(Activation.Relu)]
    [InlineData(Activation.Sigmoid)]
    [InlineData(Activation.Tanh)]
    public void Activation_backward_into_the_input_gradient_is_the_derivative_then_the_pass(Activation activation)
    {
        const int rows = 1000, columns = 77;
        int length = rows * columns;
        var outputs = Uniform(length, 7);
        if (activation == Activation.Sigmoid) outputs = outputs.Select(v => (v + 1) / 2).ToArray();
        var gradients = Uniform(length, 8);
        var start = Uniform(length, 9);
        foreach (int threads in new[] { 1, 2 })
            foreach (bool accumulate in new[] { false, true })
            {
                var expected = (float[])start.Clone();
                var inPlace = (float[])gradients.Clone();
                Activations.Backward(activation, outputs, inPlace, rows, columns);
                Merges.Pass(inPlace, expected, length, accumulate);
                var actual = start.Append(42f).ToArray();
                var untouched = (float[])gradients.Clone();
                KernelSettings.OnThreads(threads, () => Activations.Backward(activation, outputs, untouched, actual, rows, columns, accumulate));
                for (int i = 0; i < length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                        $"{threads} threads, accumulate {accumulate}, value {i}: expected {expected[i]}, got {actual[i]}");
                Assert.Equal(42f, actual[length]);
                Assert.Equal(gradients, untouched);
            }
        Assert.Throws<ArgumentOutOfRangeException>(() => Activations.Backward(Activation.Softmax, outputs, gradients, new float[length], rows, columns, false));
    }

    /// <summary>
    /// A merge long enough to be shared (100,003 elements: parts of an uneven size) computes every element as its operation
    /// defines it, on two threads, and one that is no element-wise merge of two (Average is Add, then a scale) is refused.
    /// </summary>
    [Theory]
    [InlineData(MergeOperation.Add)]
    [InlineData(MergeOperation.Subtract)]
    [InlineData(MergeOperation.Multiply)]
    [InlineData(MergeOperation.Maximum)]
    [InlineData(MergeOperation.Minimum)]
    public void A_shared_merge_computes_every_element_as_defined(MergeOperation operation)
    {
        const int length = 100_003;
        var (a, b) = (Uniform(length, 5), Uniform(length, 6));
        // Also with the ReLU of a layer that alone reads the merge, taken block by block: max(merged, 0), on one core and two.
        foreach (var (relu, threads) in new[] { (false, 2), (true, 2), (true, 1) })
        {
            var output = new float[length + 1];
            output[length] = 42f;
            KernelSettings.OnThreads(threads, () => Merges.Combine(operation, a, b, output, length, relu));
            for (int i = 0; i < length; i++)
            {
                float expected = operation switch
                {
                    MergeOperation.Add => a[i] + b[i],
                    MergeOperation.Subtract => a[i] - b[i],
                    MergeOperation.Multiply => a[i] * b[i],
                    MergeOperation.Maximum => Math.Max(a[i], b[i]),
                    _ => Math.Min(a[i], b[i]),
                };
                if (relu) expected = MathF.Max(expected, 0f);
                Assert.True(expected == output[i], $"{operation}, relu {relu}, {threads} threads, element {i}: expected {expected}, got {output[i]}");
            }
            Assert.Equal(42f, output[length]);
        }
        var any = new float[length];
        Assert.Throws<ArgumentOutOfRangeException>(() => Merges.Combine(MergeOperation.Average, a, b, any, length));
    }

    public static IEnumerable<object[]> OperandGradients() => KernelSettings.OnEveryPath(
        from operation in new[] { MergeOperation.Multiply, MergeOperation.Maximum, MergeOperation.Minimum }
        from length in new[] { 37, 70_003 } // a partial last vector on one core; shared in parts of an uneven size
        select new object[] { operation, length });

    /// <summary>
    /// An operand's gradient of Multiply, Maximum or Minimum is its scalar definition at every element, bit for bit: dy times
    /// the other operand, or dy where this operand won and +0 elsewhere (ties, -0 against +0 among them, to the first; a NaN
    /// wins nowhere), written or added, as either operand, on every path and on one core or two; nothing past the end written.
    /// </summary>
    [Theory, MemberData(nameof(OperandGradients))]
    public void A_merge_operands_gradient_is_its_definition_at_every_element(MergeOperation operation, int length, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var random = new Random(length);
        // Few distinct values, so that ties are common; a NaN and signed zeros among them.
        float[] Values() => Enumerable.Range(0, length).Select(_ => random.Next(12) switch { 0 => float.NaN, 1 => -0f, 2 => 0f, int k => (k - 6) * 0.5f }).ToArray();
        var (mine, theirs, dy) = (Values(), Values(), Uniform(length, 9));
        var start = Uniform(length + 1, 10);
        foreach (bool first in new[] { true, false })
            foreach (bool accumulate in new[] { false, true })
                foreach (int threads in new[] { 1, 2 })
                {
                    var actual = (float[])start.Clone();
                    KernelSettings.OnThreads(threads, () => Merges.OperandGradient(operation, dy, mine, theirs, first, actual, length, accumulate));
                    for (int i = 0; i < length; i++)
                    {
                        float contribution = operation switch
                        {
                            MergeOperation.Multiply => dy[i] * theirs[i],
                            MergeOperation.Maximum => mine[i] > theirs[i] || (mine[i] == theirs[i] && first) ? dy[i] : 0f,
                            _ => mine[i] < theirs[i] || (mine[i] == theirs[i] && first) ? dy[i] : 0f,
                        };
                        float expected = accumulate ? start[i] + contribution : contribution;
                        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual[i]),
                            $"{operation}, first {first}, accumulate {accumulate}, {threads} threads, element {i}: expected {expected}, got {actual[i]}");
                    }
                    Assert.Equal(start[length], actual[length]);
                }
    }

    /// <summary>A shared scale (Average's division, attention's query scaling) multiplies every element, and only those.</summary>
    [Fact]
    public void A_shared_scale_multiplies_every_element_and_only_those()
    {
        const int length = 100_003;
        var values = Uniform(length + 1, 7);
        var scaled = (float[])values.Clone();
        KernelSettings.OnThreads(2, () => Merges.Scale(scaled, length, 0.25f));
        for (int i = 0; i < length; i++) Assert.True(values[i] * 0.25f == scaled[i], $"element {i}: expected {values[i] * 0.25f}, got {scaled[i]}");
        Assert.Equal(values[length], scaled[length]);
    }
}
