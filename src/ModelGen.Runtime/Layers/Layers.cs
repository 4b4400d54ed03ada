using System;
using System.Collections.Generic;
using ModelGen.Kernels;

namespace ModelGen;

/// <summary>
/// One named weight tensor of a layer: a typed view into the model's single parameter buffer and
/// the matching slice of its gradient buffer. Names follow Keras' weights files: <c>hidden1.kernel</c>.
/// </summary>
public sealed class Parameter
{
    private readonly AlignedBuffer values;
    private readonly AlignedBuffer gradients;

    public Parameter(string name, AlignedBuffer values, AlignedBuffer gradients, int offset, params int[] shape)
    {
        Name = name;
        this.values = values;
        this.gradients = gradients;
        Offset = offset;
        Shape = shape;
        Length = 1;
        foreach (var dimension in shape) Length *= dimension;
    }

    public string Name { get; }
    /// <summary>False for what the optimizer never touches: moving statistics, and the weights of frozen layers.</summary>
    public bool Trainable { get; init; } = true;
    public IReadOnlyList<int> Shape { get; }
    /// <summary>Number of floats in this tensor.</summary>
    public int Length { get; }
    /// <summary>Start of this tensor in the model's parameter buffer.</summary>
    public int Offset { get; }
    public Span<float> Values => values.AsSpan(Offset, Length);
    public Span<float> Gradient => gradients.AsSpan(Offset, Length);

    /// <summary>The shape as Keras prints it: <c>(784, 256)</c>.</summary>
    public string ShapeText => "(" + string.Join(", ", Shape) + (Shape.Count == 1 ? ",)" : ")");
    public override string ToString() => Name + " " + ShapeText;
}

/// <summary>A layer of a generated model, named after the user's field.</summary>
public abstract class Layer
{
    private readonly Parameter[] parameters;

    /// <param name="parameters">The layer's weight tensors in Keras' order; a null (a bias declared away) is left out.</param>
    protected Layer(string name, int[] outputShape, params Parameter?[] parameters)
    {
        Name = name;
        OutputShape = outputShape;
        this.parameters = Array.FindAll(parameters, p => p is not null)!;
    }

    public string Name { get; }
    /// <summary>Output shape without the batch dimension.</summary>
    public IReadOnlyList<int> OutputShape { get; }
    public IReadOnlyList<Parameter> Parameters => parameters;
    /// <summary>False when the layer was declared frozen (<c>Trainable = false</c>): its weights stay as they are.</summary>
    public bool Trainable { get; init; } = true;
    public override string ToString() => $"{Name} ({GetType().Name})";

    /// <summary>Applies this layer to a tensor in a [Graph] method (read by the generator, never run). Applying one field twice shares its weights.</summary>
    public Tensor Apply(Tensor input) => throw Tensor.NotExecutable();
}

/// <summary>The model input; it holds no weights.</summary>
public sealed class Input : Layer
{
    public Input(string name, params int[] shape) : base(name, shape) { }
}

/// <summary>Fully connected layer: kernel (in, units), bias (units).</summary>
public sealed class Dense : Layer
{
    /// <param name="outputShape">For a Dense applied at every step of a sequence: (steps, units); otherwise (units), the default.</param>
    public Dense(string name, Activation activation, Parameter kernel, Parameter? bias, params int[] outputShape)
        : base(name, outputShape.Length > 0 ? outputShape : new[] { kernel.Shape[1] }, kernel, bias)
    {
        Activation = activation;
        Kernel = kernel;
        Bias = bias;
    }

    public Activation Activation { get; }
    public Parameter Kernel { get; }
    /// <summary>Null when the layer was declared with <c>UseBias = false</c>.</summary>
    public Parameter? Bias { get; }
    public int Units => Kernel.Shape[1];
}

/// <summary>Dropout: zeroes inputs with probability <see cref="Rate"/> while training.</summary>
public sealed class Dropout : Layer
{
    public Dropout(string name, double rate, params int[] shape) : base(name, shape) => Rate = rate;
    public double Rate { get; }
}

/// <summary>A standalone activation layer.</summary>
public sealed class ActivationLayer : Layer
{
    public ActivationLayer(string name, Activation activation, params int[] shape) : base(name, shape) => Activation = activation;
    public Activation Activation { get; }
}

/// <summary>Flatten: a sample of any shape as one row, in H, W, C order (row-major memory already is that order).</summary>
public sealed class Flatten : Layer
{
    public Flatten(string name, int size) : base(name, new[] { size }) { }
}

/// <summary>What every convolution holds: its activation, strides, padding, kernel and optional bias.</summary>
public abstract class ConvolutionLayer : Layer
{
    protected ConvolutionLayer(string name, Activation activation, int strides, Padding padding, Parameter kernel, Parameter? bias, int[] outputShape)
        : base(name, outputShape, kernel, bias)
    {
        Activation = activation;
        Strides = strides;
        Padding = padding;
        Kernel = kernel;
        Bias = bias;
    }

    public Activation Activation { get; }
    public int Strides { get; }
    public Padding Padding { get; }
    public Parameter Kernel { get; }
    /// <summary>Null when the layer was declared with <c>UseBias = false</c>.</summary>
    public Parameter? Bias { get; }
}

/// <summary>A 2-D convolution: kernel (kh, kw, in, filters), bias (filters).</summary>
public sealed class Conv2D(string name, Activation activation, int strides, Padding padding, Parameter kernel, Parameter? bias, params int[] outputShape)
    : ConvolutionLayer(name, activation, strides, padding, kernel, bias, outputShape)
{
    public int Filters => Kernel.Shape[3];
}

/// <summary>A pooling over square windows of each channel.</summary>
public abstract class Pooling2D : Layer
{
    protected Pooling2D(string name, int poolSize, int strides, Padding padding, int[] outputShape) : base(name, outputShape)
    {
        PoolSize = poolSize;
        Strides = strides;
        Padding = padding;
    }

    public int PoolSize { get; }
    public int Strides { get; }
    public Padding Padding { get; }
}

/// <summary>Average pooling over windows of each channel.</summary>
public sealed class AveragePooling2D(string name, int poolSize, int strides, Padding padding, params int[] outputShape)
    : Pooling2D(name, poolSize, strides, padding, outputShape);

/// <summary>The mean of each channel over the whole image.</summary>
public sealed class GlobalAveragePooling2D : Layer
{
    public GlobalAveragePooling2D(string name, int channels) : base(name, new[] { channels }) { }
}

/// <summary>The maximum of each channel over the whole image.</summary>
public sealed class GlobalMaxPooling2D : Layer
{
    public GlobalMaxPooling2D(string name, int channels) : base(name, new[] { channels }) { }
}

/// <summary>Max pooling over windows of each channel.</summary>
public sealed class MaxPooling2D(string name, int poolSize, int strides, Padding padding, params int[] outputShape)
    : Pooling2D(name, poolSize, strides, padding, outputShape);

/// <summary>Batch normalization over the last axis: gamma, beta (trainable), moving_mean, moving_variance (not trainable), each (channels).</summary>
public sealed class BatchNormalization : Layer
{
    public BatchNormalization(string name, double momentum, double epsilon, Parameter gamma, Parameter beta, Parameter movingMean, Parameter movingVariance, params int[] shape)
        : base(name, shape, gamma, beta, movingMean, movingVariance)
    {
        Momentum = momentum;
        Epsilon = epsilon;
        Gamma = gamma;
        Beta = beta;
        MovingMean = movingMean;
        MovingVariance = movingVariance;
    }

    public double Momentum { get; }
    public double Epsilon { get; }
    public Parameter Gamma { get; }
    public Parameter Beta { get; }
    public Parameter MovingMean { get; }
    public Parameter MovingVariance { get; }
}

/// <summary>Layer normalization over the last axis: gamma and beta, each (features).</summary>
public sealed class LayerNormalization : Layer
{
    public LayerNormalization(string name, double epsilon, Parameter gamma, Parameter beta, params int[] shape) : base(name, shape, gamma, beta)
    {
        Epsilon = epsilon;
        Gamma = gamma;
        Beta = beta;
    }

    public double Epsilon { get; }
    public Parameter Gamma { get; }
    public Parameter Beta { get; }
}

/// <summary>A new shape for each sample, the same values in the same (row-major) order.</summary>
public sealed class Reshape : Layer
{
    public Reshape(string name, params int[] shape) : base(name, shape) { }
}

/// <summary>Zeros around each image: rows above and below, columns left and right.</summary>
public sealed class ZeroPadding2D : Layer
{
    public ZeroPadding2D(string name, int top, int bottom, int left, int right, params int[] shape) : base(name, shape)
    {
        Top = top;
        Bottom = bottom;
        Left = left;
        Right = right;
    }

    public int Top { get; }
    public int Bottom { get; }
    public int Left { get; }
    public int Right { get; }
}

/// <summary>Nearest-neighbour upsampling: each pixel repeated into a block of Rows x Columns.</summary>
public sealed class UpSampling2D : Layer
{
    public UpSampling2D(string name, int rows, int columns, params int[] shape) : base(name, shape)
    {
        Rows = rows;
        Columns = columns;
    }

    public int Rows { get; }
    public int Columns { get; }
}

/// <summary>A lookup table of vectors: embeddings (inputDim, outputDim).</summary>
public sealed class Embedding : Layer
{
    public Embedding(string name, bool maskZero, Parameter embeddings, params int[] shape) : base(name, shape, embeddings)
    {
        MaskZero = maskZero;
        Embeddings = embeddings;
    }

    public bool MaskZero { get; }
    public Parameter Embeddings { get; }
    public int InputDim => Embeddings.Shape[0];
    public int OutputDim => Embeddings.Shape[1];
}

/// <summary>Masks each step whose features all equal MaskValue.</summary>
public sealed class Masking : Layer
{
    public Masking(string name, double maskValue, params int[] shape) : base(name, shape) => MaskValue = maskValue;
    public double MaskValue { get; }
}

/// <summary>
/// An LSTM or GRU layer: kernel, recurrent_kernel and bias; a bidirectional one holds a forward and a backward set
/// (named <c>layer.forward.kernel</c>, <c>layer.backward.kernel</c>, ...).
/// </summary>
public abstract class RecurrentLayer : Layer
{
    protected RecurrentLayer(string name, int units, bool returnSequences, Parameter[] parameters, int[] shape) : base(name, shape, parameters)
    {
        Units = units;
        ReturnSequences = returnSequences;
    }

    public int Units { get; }
    public bool ReturnSequences { get; }
    public bool Bidirectional => Parameters.Count == 6;
}

/// <summary>Keras' LSTM (gates i, f, c, o).</summary>
public sealed class LSTM(string name, int units, bool returnSequences, Parameter[] parameters, params int[] shape)
    : RecurrentLayer(name, units, returnSequences, parameters, shape)
{
    /// <summary>Starts from a given state instead of zeros, as Keras' <c>lstm(x, initial_state=[h, c])</c> (a seq2seq decoder).</summary>
    public Tensor Apply(Tensor input, Tensor initialStateH, Tensor initialStateC) => throw Tensor.NotExecutable();

    /// <summary>The output and the final state, as Keras' <c>return_state=True</c>: <c>var (output, h, c) = lstm.ApplyWithState(x);</c></summary>
    public (Tensor Output, Tensor StateH, Tensor StateC) ApplyWithState(Tensor input) => throw Tensor.NotExecutable();

    /// <summary>Both: a given initial state, and the final one returned.</summary>
    public (Tensor Output, Tensor StateH, Tensor StateC) ApplyWithState(Tensor input, Tensor initialStateH, Tensor initialStateC) => throw Tensor.NotExecutable();
}

/// <summary>Keras' GRU with reset_after (gates z, r, h).</summary>
public sealed class GRU(string name, int units, bool returnSequences, Parameter[] parameters, params int[] shape)
    : RecurrentLayer(name, units, returnSequences, parameters, shape)
{
    /// <summary>Starts from a given state instead of zeros, as Keras' <c>gru(x, initial_state=h)</c>.</summary>
    public Tensor Apply(Tensor input, Tensor initialState) => throw Tensor.NotExecutable();

    /// <summary>The output and the final state, as Keras' <c>return_state=True</c>: <c>var (output, h) = gru.ApplyWithState(x);</c></summary>
    public (Tensor Output, Tensor State) ApplyWithState(Tensor input) => throw Tensor.NotExecutable();

    /// <summary>Both: a given initial state, and the final one returned.</summary>
    public (Tensor Output, Tensor State) ApplyWithState(Tensor input, Tensor initialState) => throw Tensor.NotExecutable();
}

/// <summary>
/// Multi-head attention: query, key, value and attention_output projections, each a kernel and (unless UseBias = false) a bias,
/// in Keras' shapes: query.kernel (query features, heads, key_dim), attention_output.kernel (heads, value_dim, query features).
/// </summary>
public sealed class MultiHeadAttention : Layer
{
    public MultiHeadAttention(string name, int numHeads, int keyDim, int valueDim, Parameter[] parameters, params int[] shape) : base(name, shape, parameters)
    {
        NumHeads = numHeads;
        KeyDim = keyDim;
        ValueDim = valueDim;
    }

    public int NumHeads { get; }
    public int KeyDim { get; }
    public int ValueDim { get; }

    /// <summary>Attention of <paramref name="query"/> over <paramref name="value"/> (and <paramref name="key"/>, which defaults to the value), in a [Graph] method.</summary>
    public Tensor Apply(Tensor query, Tensor value, Tensor? key = null, Tensor? attentionMask = null) => throw Tensor.NotExecutable();
}

/// <summary>A depthwise convolution: depthwise_kernel (kh, kw, channels, multiplier), bias (channels·multiplier).</summary>
public sealed class DepthwiseConv2D(string name, Activation activation, int strides, Padding padding, Parameter depthwiseKernel, Parameter? bias, params int[] outputShape)
    : ConvolutionLayer(name, activation, strides, padding, depthwiseKernel, bias, outputShape)
{
    /// <summary>The kernel under its Keras name.</summary>
    public Parameter DepthwiseKernel => Kernel;
    public int DepthMultiplier => Kernel.Shape[3];
}

/// <summary>A transposed convolution: kernel (kh, kw, filters, in) as Keras stores it, bias (filters).</summary>
public sealed class Conv2DTranspose(string name, Activation activation, int strides, Padding padding, Parameter kernel, Parameter? bias, params int[] outputShape)
    : ConvolutionLayer(name, activation, strides, padding, kernel, bias, outputShape)
{
    public int Filters => Kernel.Shape[2];
}

/// <summary>The mean of each feature over the (unmasked) steps.</summary>
public sealed class GlobalAveragePooling1D : Layer
{
    public GlobalAveragePooling1D(string name, int features) : base(name, new[] { features }) { }
}
