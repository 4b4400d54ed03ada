namespace ModelGen.Tests;

/// <summary>BatchNormalization after a Dense layer: one row per sample, one statistic per unit.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class NormalizedMlp
{
    [Input(6)] public Input features;
    [Dense(8)] public Dense hidden;
    [BatchNormalization] public BatchNormalization norm;
    [Activation(Activation.Tanh)] public ActivationLayer squash;
    [Dense(3, Activation.Softmax)] public Dense head;
}

/// <summary>
/// BatchNormalization over images (statistics per channel over batch, height and width) and over Dense units,
/// with non-default momentum and epsilon on the second.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class NormalizedCnn
{
    [Input(6, 6, 2)] public Input image;
    [Conv2D(4, 3, Padding = Padding.Same)] public Conv2D conv;
    [BatchNormalization] public BatchNormalization bn1;
    [Activation(Activation.Relu)] public ActivationLayer relu;
    [MaxPooling2D(2)] public MaxPooling2D pool;
    [Flatten] public Flatten flatten;
    [Dense(6)] public Dense hidden;
    [BatchNormalization(Momentum = 0.9, Epsilon = 0.01)] public BatchNormalization bn2;
    [Activation(Activation.Tanh)] public ActivationLayer tanh;
    [Dense(3, Activation.Softmax)] public Dense head;
}

/// <summary>
/// The seed's SimpleClassifier on 32x32x3: a 32-filter stem (conv-BN-relu), a residual block of 32 filters, a residual block of
/// 64 filters with a 1x1 projection shortcut (each block conv-BN-relu-conv-BN, add, relu), global average pooling, dropout,
/// Dense 10 softmax.
/// </summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class SimpleClassifier
{
    [Conv2D(32, 3, Padding = Padding.Same)] public Conv2D stem;
    [BatchNormalization] public BatchNormalization stemNorm;
    [Conv2D(32, 3, Padding = Padding.Same)] public Conv2D block1Conv1;
    [BatchNormalization] public BatchNormalization block1Norm1;
    [Conv2D(32, 3, Padding = Padding.Same)] public Conv2D block1Conv2;
    [BatchNormalization] public BatchNormalization block1Norm2;
    [Conv2D(64, 3, Padding = Padding.Same, Strides = 2)] public Conv2D block2Conv1;
    [BatchNormalization] public BatchNormalization block2Norm1;
    [Conv2D(64, 3, Padding = Padding.Same)] public Conv2D block2Conv2;
    [BatchNormalization] public BatchNormalization block2Norm2;
    [Conv2D(64, 1, Strides = 2)] public Conv2D block2Projection;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dropout(0.3)] public Dropout dropout;
    [Dense(10, Activation.Softmax)] public Dense classifier;

    [Graph]
    Tensor Forward([Shape(32, 32, 3)] Tensor image)
    {
        var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
        var y = Ops.Relu(block1Norm1.Apply(block1Conv1.Apply(x)));
        y = block1Norm2.Apply(block1Conv2.Apply(y));
        x = Ops.Relu(Ops.Add(x, y));
        y = Ops.Relu(block2Norm1.Apply(block2Conv1.Apply(x)));
        y = block2Norm2.Apply(block2Conv2.Apply(y));
        x = Ops.Relu(Ops.Add(block2Projection.Apply(x), y));
        return classifier.Apply(dropout.Apply(pool.Apply(x)));
    }
}

/// <summary>A frozen backbone (a graph marked Trainable = false, as Keras' base_model.trainable = False) under a trainable head.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class FrozenBackbone
{
    [Conv2D(4, 3, Padding = Padding.Same)] public Conv2D conv;
    [BatchNormalization] public BatchNormalization norm;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dense(3, Activation.Softmax)] public Dense head;

    [Graph]
    Tensor Forward([Shape(6, 6, 2)] Tensor image) => head.Apply(Features(image));

    [Graph(Trainable = false)]
    Tensor Features([Shape(6, 6, 2)] Tensor image) => pool.Apply(Ops.Relu(norm.Apply(conv.Apply(image))));
}

/// <summary>A frozen layer between trainable ones: its input gradient flows, its own weights get none.</summary>
[Sequential(Loss = Loss.MeanSquaredError)]
public partial class FrozenMiddle
{
    [Input(5)] public Input features;
    [Dense(6, Activation.Tanh)] public Dense first;
    [Dense(6, Activation.Tanh, Trainable = false)] public Dense middle;
    [BatchNormalization(Trainable = false)] public BatchNormalization norm;
    [Dense(2)] public Dense last;
}

// ---- The two-phase fine-tuning flow: three classes over the same layer names -------------------------------------

/// <summary>The "pretrained" network: backbone and a head for another task.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class TransferPretrained
{
    [Conv2D(4, 3, Padding = Padding.Same)] public Conv2D conv1;
    [BatchNormalization] public BatchNormalization norm1;
    [Conv2D(6, 3, Padding = Padding.Same)] public Conv2D conv2;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dense(5, Activation.Softmax)] public Dense pretrainingHead;

    [Graph]
    Tensor Forward([Shape(6, 6, 2)] Tensor image) => pretrainingHead.Apply(pool.Apply(Ops.Relu(conv2.Apply(Ops.Relu(norm1.Apply(conv1.Apply(image)))))));
}

/// <summary>Phase 1: the whole backbone frozen (one attribute on its graph), a new head trains.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class TransferHeadOnly
{
    [Conv2D(4, 3, Padding = Padding.Same)] public Conv2D conv1;
    [BatchNormalization] public BatchNormalization norm1;
    [Conv2D(6, 3, Padding = Padding.Same)] public Conv2D conv2;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dense(3, Activation.Softmax)] public Dense head;

    [Graph]
    Tensor Forward([Shape(6, 6, 2)] Tensor image) => head.Apply(pool.Apply(Backbone(image)));

    [Graph(Trainable = false)]
    Tensor Backbone([Shape(6, 6, 2)] Tensor image) => Ops.Relu(conv2.Apply(Ops.Relu(norm1.Apply(conv1.Apply(image)))));
}

/// <summary>Phase 2: the top of the backbone unfrozen (trained with a lower learning rate and a fresh optimizer).</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class TransferFineTuned
{
    [Conv2D(4, 3, Padding = Padding.Same, Trainable = false)] public Conv2D conv1;
    [BatchNormalization(Trainable = false)] public BatchNormalization norm1;
    [Conv2D(6, 3, Padding = Padding.Same)] public Conv2D conv2;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dense(3, Activation.Softmax)] public Dense head;

    [Graph]
    Tensor Forward([Shape(6, 6, 2)] Tensor image) => head.Apply(pool.Apply(Ops.Relu(conv2.Apply(Ops.Relu(norm1.Apply(conv1.Apply(image)))))));
}

/// <summary>
/// Layers wider than the kernels' stack scratch once was (BatchNormalization over 320 channels, LayerNormalization over 600
/// features, a softmax over 700 classes), so the allocation test covers the pooled scratch too.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class WideNormalized
{
    [Input(16)] public Input features;
    [Dense(320)] public Dense hidden;
    [BatchNormalization] public BatchNormalization norm;
    [Dense(600)] public Dense wide;
    [LayerNormalization] public LayerNormalization layerNorm;
    [Dense(700, Activation.Softmax)] public Dense head;
}

/// <summary>
/// A convolution read only by a BatchNormalization, whose output is the model's: at inference the convolution applies the
/// normalization to its outputs as it computes them (20 filters: a whole vector and a masked one on every SIMD path).
/// </summary>
[Sequential(Loss = Loss.MeanSquaredError)]
public partial class NormalizedConvolution
{
    [Input(5, 5, 3)] public Input image;
    [Conv2D(20, 3, Activation.Relu, Padding = Padding.Same)] public Conv2D conv;
    [BatchNormalization] public BatchNormalization norm;
    [Flatten] public Flatten flatten;
}

/// <summary>
/// Residual connections whose Add reads a normalized convolution (a ResNet block, then a pointwise one): at inference each
/// convolution adds the other operand, and takes the Add's ReLU where it has one, as it stores its outputs (the normalization
/// as the Add's second operand, then its first, frozen as in a fine-tuned ResNet). The Adds' operands are 6x6x8 images: eight
/// filters, a whole vector on AVX2. No convolution has a bias, as in Keras' ResNets: one before a normalization has an
/// exactly zero gradient only in exact arithmetic, and Adam turns what float32 leaves of it into whole steps.
/// </summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ResidualCnnParity
{
    [Conv2D(8, 3, Padding = Padding.Same, UseBias = false)] public Conv2D stem;
    [BatchNormalization] public BatchNormalization stemNorm;
    [Conv2D(8, 3, Padding = Padding.Same, UseBias = false)] public Conv2D conv1;
    [BatchNormalization] public BatchNormalization norm1;
    [Conv2D(8, 3, Padding = Padding.Same, UseBias = false)] public Conv2D conv2;
    [BatchNormalization] public BatchNormalization norm2;
    [Conv2D(8, 1, UseBias = false)] public Conv2D conv3;
    [BatchNormalization(Trainable = false)] public BatchNormalization norm3;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dense(3, Activation.Softmax)] public Dense head;

    [Graph]
    Tensor Forward([Shape(6, 6, 2)] Tensor image) => head.Apply(Features(image));

    /// <summary>The pooled features as a sub-model of their own, whose blocks make the residual Adds the same way.</summary>
    [Graph]
    Tensor Features([Shape(6, 6, 2)] Tensor image)
    {
        var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
        var y = Ops.Relu(norm1.Apply(conv1.Apply(x)));
        x = Ops.Relu(Ops.Add(x, norm2.Apply(conv2.Apply(y))));
        var z = Ops.Add(norm3.Apply(conv3.Apply(x)), x);
        return pool.Apply(z);
    }
}

/// <summary>
/// Two convolutions each applying its BatchNormalization at inference, the second reading a tensor nothing else reads: an
/// inference copy must keep that tensor's floats until the normalization's block, where the convolution now runs.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class NormalizedBlocks
{
    [Input(6, 6, 3)] public Input image;
    [Conv2D(16, 3, Activation.Relu, Padding = Padding.Same)] public Conv2D conv1;
    [BatchNormalization] public BatchNormalization norm1;
    [Conv2D(16, 1, Activation.Relu)] public Conv2D conv2;
    [BatchNormalization] public BatchNormalization norm2;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dense(3, Activation.Softmax)] public Dense head;
}

/// <summary>
/// Keras' commonest block twice, Conv2D, BatchNormalization, Activation('relu'): each normalization takes its ReLU and writes
/// that's output, at inference from its convolution's call; an inference copy must keep each block's input until then.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class RectifiedBlocks
{
    [Input(6, 6, 3)] public Input image;
    [Conv2D(16, 3, Padding = Padding.Same)] public Conv2D conv1;
    [BatchNormalization] public BatchNormalization norm1;
    [Activation(Activation.Relu)] public ActivationLayer relu1;
    [Conv2D(16, 3, Padding = Padding.Same)] public Conv2D conv2;
    [BatchNormalization] public BatchNormalization norm2;
    [Activation(Activation.Relu)] public ActivationLayer relu2;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dense(3, Activation.Softmax)] public Dense head;
}

/// <summary>
/// A DepthwiseConv2D read only by a BatchNormalization, whose output is the model's: at inference the depthwise layer applies
/// the normalization to its outputs as it computes them (6 channels, 3 filters each: 18, a whole vector and a masked one on
/// every SIMD path). No ReLU, so that finite differences can check its gradients (a ReLU before the batch's statistics
/// turns many kinks over within their steps; PyTorch in double agreed with the ReLU's gradients to 2e-7).
/// </summary>
[Sequential(Loss = Loss.MeanSquaredError)]
public partial class NormalizedDepthwise
{
    [Input(5, 5, 6)] public Input image;
    [DepthwiseConv2D(3, Padding = Padding.Same, DepthMultiplier = 3)] public DepthwiseConv2D depthwise;
    [BatchNormalization] public BatchNormalization norm;
    [Flatten] public Flatten flatten;
}

/// <summary>
/// MobileNet's depthwise-separable block twice: DepthwiseConv2D without a bias (as Keras' MobileNet), BatchNormalization,
/// ReLU, then the pointwise Conv2D, BatchNormalization, ReLU; the second block strided, two filters a channel, the ReLU in
/// the depthwise layer and none after its normalization. At inference each convolution applies its normalization (and the
/// ReLU after it) as it computes its outputs.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class SeparableBlocks
{
    [Input(8, 8, 3)] public Input image;
    [DepthwiseConv2D(3, Padding = Padding.Same, UseBias = false)] public DepthwiseConv2D depthwise1;
    [BatchNormalization] public BatchNormalization depthwiseNorm1;
    [Activation(Activation.Relu)] public ActivationLayer depthwiseRelu1;
    [Conv2D(10, 1, UseBias = false)] public Conv2D pointwise1;
    [BatchNormalization] public BatchNormalization pointwiseNorm1;
    [Activation(Activation.Relu)] public ActivationLayer pointwiseRelu1;
    [DepthwiseConv2D(3, Activation.Relu, Strides = 2, Padding = Padding.Same, DepthMultiplier = 2)] public DepthwiseConv2D depthwise2;
    [BatchNormalization] public BatchNormalization depthwiseNorm2;
    [Conv2D(16, 1, Activation.Relu)] public Conv2D pointwise2;
    [GlobalAveragePooling2D] public GlobalAveragePooling2D pool;
    [Dense(3, Activation.Softmax)] public Dense head;
}
