using System;

namespace ModelGen;

/// <summary>
/// Marks a partial class as a Keras-style Sequential model: field order is layer order and the
/// first field is an <see cref="InputAttribute"/> carrying the input shape.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class SequentialAttribute : Attribute
{
    /// <summary>The loss <c>TrainStep</c> and <c>Fit</c> minimise (Keras' <c>compile(loss=...)</c>).</summary>
    public Loss Loss { get; set; } = Loss.MeanSquaredError;
}

/// <summary>
/// Marks a partial class as a Keras-style Functional model: layers are fields, and one method marked
/// <see cref="GraphAttribute"/> wires them. The generator reads that method and never runs it.
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class FunctionalAttribute : Attribute
{
    /// <summary>The loss <c>TrainStep</c> and <c>Fit</c> minimise (Keras' <c>compile(loss=...)</c>).</summary>
    public Loss Loss { get; set; } = Loss.MeanSquaredError;
}

/// <summary>The method of a [Functional] model that wires its layers: parameters are the inputs, the return value the output.</summary>
[AttributeUsage(AttributeTargets.Method, Inherited = false)]
public sealed class GraphAttribute : Attribute
{
    /// <summary>
    /// False freezes every layer this graph applies, wherever it is called from: a frozen backbone, as Keras'
    /// <c>base_model.trainable = False</c>.
    /// </summary>
    public bool Trainable { get; set; } = true;
}

/// <summary>
/// The loss (and its weight in the total) for one named output of a multi-output [Graph] method, as Keras'
/// <c>compile(loss={name: ...}, loss_weights={name: ...})</c>. Outputs without one use the model attribute's Loss.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true, Inherited = false)]
public sealed class OutputLossAttribute : Attribute
{
    public OutputLossAttribute(string output, Loss loss)
    {
        Output = output;
        Loss = loss;
    }

    public string Output { get; }
    public Loss Loss { get; }
    public double Weight { get; set; } = 1.0;
}

/// <summary>The shape of a graph input without the batch dimension, as Keras' <c>Input(shape=...)</c>.</summary>
[AttributeUsage(AttributeTargets.Parameter, Inherited = false)]
public sealed class ShapeAttribute : Attribute
{
    public ShapeAttribute(params int[] shape) => Shape = shape;
    public int[] Shape { get; }
}

/// <summary>
/// What every layer attribute shares. <see cref="Trainable"/> = false freezes the layer, as Keras' <c>layer.trainable = False</c>:
/// its weights move to the non-trainable part of the parameter buffer, the generated backward computes no gradient for
/// them (nor any input gradient for a frozen prefix of the model), and a frozen BatchNormalization runs in inference mode.
/// </summary>
public abstract class LayerAttribute : Attribute
{
    public bool Trainable { get; set; } = true;
}

/// <summary>The model input and its shape without the batch dimension, as Keras' <c>Input(shape=...)</c>.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class InputAttribute : Attribute
{
    public InputAttribute(params int[] shape) => Shape = shape;
    public int[] Shape { get; }
}

/// <summary>A fully connected layer: <c>y = activation(x @ kernel + bias)</c>, kernel shaped (in, units).</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class DenseAttribute : LayerAttribute
{
    public DenseAttribute(int units, Activation activation = Activation.Linear)
    {
        Units = units;
        Activation = activation;
    }

    public int Units { get; }
    public Activation Activation { get; }
    /// <summary>Whether the layer adds a bias vector (Keras' <c>use_bias</c>).</summary>
    public bool UseBias { get; set; } = true;
}

/// <summary>A standalone activation layer.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class ActivationAttribute : LayerAttribute
{
    public ActivationAttribute(Activation activation) => Activation = activation;
    public Activation Activation { get; }
}

/// <summary>
/// A 2-D convolution over channels-last images, as Keras' Conv2D: kernel (kernelSize, kernelSize, in, filters),
/// Glorot-uniform initialised, zero bias.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class Conv2DAttribute : ConvolutionAttribute
{
    public Conv2DAttribute(int filters, int kernelSize, Activation activation = Activation.Linear) : this(filters, kernelSize, kernelSize, activation) { }

    /// <summary>A kernel of kernelHeight rows and kernelWidth columns, as Keras' kernel_size=(h, w).</summary>
    public Conv2DAttribute(int filters, int kernelHeight, int kernelWidth, Activation activation = Activation.Linear) : base(activation)
    {
        Filters = filters;
        KernelHeight = kernelHeight;
        KernelWidth = kernelWidth;
    }

    public int Filters { get; }
    public int KernelHeight { get; }
    public int KernelWidth { get; }
    /// <summary>Keras' dilation_rate: the kernel reads every DilationRate-th pixel. Keras allows it only with strides 1.</summary>
    public int DilationRate { get; set; } = 1;
}

/// <summary>The options every convolution takes, as Keras' convolution layers.</summary>
public abstract class ConvolutionAttribute : LayerAttribute
{
    protected ConvolutionAttribute(Activation activation) => Activation = activation;
    public Activation Activation { get; }
    public int Strides { get; set; } = 1;
    public Padding Padding { get; set; } = Padding.Valid;
    public bool UseBias { get; set; } = true;
}

/// <summary>The options every windowed pooling takes, as Keras' pooling layers (strides default to the pool size).</summary>
public abstract class Pooling2DAttribute : LayerAttribute
{
    protected Pooling2DAttribute(int poolSize) => PoolSize = poolSize;
    public int PoolSize { get; }
    /// <summary>0 means the pool size, as in Keras.</summary>
    public int Strides { get; set; }
    public Padding Padding { get; set; } = Padding.Valid;
}

/// <summary>Max pooling over channels-last images, as Keras' MaxPooling2D.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class MaxPooling2DAttribute(int poolSize = 2) : Pooling2DAttribute(poolSize);

/// <summary>Average pooling over channels-last images, as Keras' AveragePooling2D ('same' averages only pixels inside the image).</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class AveragePooling2DAttribute(int poolSize = 2) : Pooling2DAttribute(poolSize);

/// <summary>The mean of each channel over the whole image: (None, H, W, C) -> (None, C).</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class GlobalAveragePooling2DAttribute : LayerAttribute { }

/// <summary>The maximum of each channel over the whole image: (None, H, W, C) -> (None, C).</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class GlobalMaxPooling2DAttribute : LayerAttribute { }

/// <summary>Flattens each sample to one dimension in H, W, C order, as Keras' Flatten (channels-last).</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class FlattenAttribute : LayerAttribute { }

/// <summary>Drops inputs with probability <c>rate</c> while training and scales the rest by 1/(1-rate); identity at inference.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class DropoutAttribute : LayerAttribute
{
    public DropoutAttribute(double rate) => Rate = rate;
    public double Rate { get; }
}

/// <summary>
/// Batch normalization over the last axis, as Keras' BatchNormalization: in training, each channel is normalised with
/// the batch's mean and biased variance, and the moving statistics follow them (moving = momentum·moving + (1 - momentum)·batch);
/// at inference (and when frozen), the moving statistics are used. gamma and beta train; moving_mean and moving_variance do not.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class BatchNormalizationAttribute : LayerAttribute
{
    public double Momentum { get; set; } = 0.99;
    public double Epsilon { get; set; } = 1e-3;
}

/// <summary>
/// Layer normalization over the last axis, as Keras' LayerNormalization: each position of each sample is normalised with
/// its own mean and (biased) variance, then scaled by gamma and shifted by beta (both trainable, one per feature).
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class LayerNormalizationAttribute : LayerAttribute
{
    public double Epsilon { get; set; } = 1e-3;
}

/// <summary>Gives each sample a new shape with the same number of values, as Keras' Reshape; one dimension may be -1 (inferred).</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class ReshapeAttribute : LayerAttribute
{
    public ReshapeAttribute(params int[] targetShape) => TargetShape = targetShape;
    public int[] TargetShape { get; }
}

/// <summary>Adds rows and columns of zeros around channels-last images, as Keras' ZeroPadding2D.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class ZeroPadding2DAttribute : LayerAttribute
{
    /// <summary>The same padding on every side.</summary>
    public ZeroPadding2DAttribute(int padding = 1) : this(padding, padding, padding, padding) { }
    /// <summary>Rows above and below, columns left and right.</summary>
    public ZeroPadding2DAttribute(int vertical, int horizontal) : this(vertical, vertical, horizontal, horizontal) { }
    public ZeroPadding2DAttribute(int top, int bottom, int left, int right)
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

/// <summary>Repeats each pixel into a block of rows x columns (nearest neighbour), as Keras' UpSampling2D.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class UpSampling2DAttribute : LayerAttribute
{
    public UpSampling2DAttribute(int size = 2) : this(size, size) { }
    public UpSampling2DAttribute(int rows, int columns)
    {
        Rows = rows;
        Columns = columns;
    }

    public int Rows { get; }
    public int Columns { get; }
}

/// <summary>
/// Keras' Embedding: integer ids (None, steps) to vectors (None, steps, outputDim) from a trainable (inputDim, outputDim)
/// table drawn from U(-0.05, 0.05). With <see cref="MaskZero"/>, id 0 is padding: it masks its step for the layers after.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class EmbeddingAttribute : LayerAttribute
{
    public EmbeddingAttribute(int inputDim, int outputDim)
    {
        InputDim = inputDim;
        OutputDim = outputDim;
    }

    public int InputDim { get; }
    public int OutputDim { get; }
    public bool MaskZero { get; set; }
}

/// <summary>Keras' Masking: a step whose features all equal <see cref="MaskValue"/> is masked (and zeroed) for the layers after.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class MaskingAttribute : LayerAttribute
{
    public double MaskValue { get; set; }
}

/// <summary>What Keras' recurrent layers share: the units, whether every step's output is returned, and the bidirectional wrapper.</summary>
public abstract class RecurrentAttribute : LayerAttribute
{
    protected RecurrentAttribute(int units) => Units = units;
    public int Units { get; }
    /// <summary>The output at every step (None, steps, units) instead of the last one (None, units).</summary>
    public bool ReturnSequences { get; set; }
    /// <summary>As Keras' Bidirectional(layer): a second copy reads the sequence backwards; the two outputs are concatenated.</summary>
    public bool Bidirectional { get; set; }
}

/// <summary>
/// Keras' LSTM over (None, steps, features): gates i, f, c, o; kernel (features, 4·units), recurrent_kernel (units, 4·units),
/// bias (4·units) with the forget gate's bias starting at 1; tanh and a sigmoid recurrent activation. Masked steps carry the state.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class LSTMAttribute(int units) : RecurrentAttribute(units);

/// <summary>
/// Keras' GRU (reset_after, the Keras 3 default): gates z, r, h; kernel (features, 3·units), recurrent_kernel (units, 3·units),
/// bias (2, 3·units) for the input and the recurrent products. Masked steps carry the state.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class GRUAttribute(int units) : RecurrentAttribute(units);

/// <summary>
/// Keras' MultiHeadAttention: query, key and value projected into <c>numHeads</c> heads of <c>keyDim</c> (values: ValueDim),
/// scaled dot-product attention per head, and an output projection back to the query's feature size. In a [Graph] method:
/// <c>attention.Apply(query, value)</c> (key = value), <c>attention.Apply(query, value, key)</c>, and an explicit
/// <c>attentionMask:</c> (None, query steps, value steps) of 1 (attend) and 0. Masks of the query and value sequences apply too.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class MultiHeadAttentionAttribute : LayerAttribute
{
    public MultiHeadAttentionAttribute(int numHeads, int keyDim)
    {
        NumHeads = numHeads;
        KeyDim = keyDim;
    }

    public int NumHeads { get; }
    public int KeyDim { get; }
    /// <summary>0 means KeyDim, as in Keras.</summary>
    public int ValueDim { get; set; }
    public bool UseBias { get; set; } = true;
    /// <summary>Each query step attends only to value steps up to its own (Keras' use_causal_mask=True), for decoders.</summary>
    public bool UseCausalMask { get; set; }
}

/// <summary>
/// Keras' DepthwiseConv2D: each input channel convolved with its own DepthMultiplier filters; depthwise_kernel
/// (kernelSize, kernelSize, channels, multiplier), bias (channels·multiplier).
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class DepthwiseConv2DAttribute : ConvolutionAttribute
{
    public DepthwiseConv2DAttribute(int kernelSize, Activation activation = Activation.Linear) : base(activation) => KernelSize = kernelSize;

    public int KernelSize { get; }
    public int DepthMultiplier { get; set; } = 1;
}

/// <summary>
/// Keras' Conv2DTranspose (a decoder's upsampling convolution): kernel (kernelSize, kernelSize, filters, in) as Keras stores it;
/// 'valid' output (in - 1)·strides + kernelSize, 'same' output in·strides.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class Conv2DTransposeAttribute : ConvolutionAttribute
{
    public Conv2DTransposeAttribute(int filters, int kernelSize, Activation activation = Activation.Linear) : base(activation)
    {
        Filters = filters;
        KernelSize = kernelSize;
    }

    public int Filters { get; }
    public int KernelSize { get; }
}

/// <summary>
/// Keras' GlobalAveragePooling1D: the mean of each feature over the steps, (None, steps, features) -> (None, features). With a
/// mask (Embedding MaskZero, Masking), the mean of the steps that count, as Keras computes it.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class GlobalAveragePooling1DAttribute : LayerAttribute { }
