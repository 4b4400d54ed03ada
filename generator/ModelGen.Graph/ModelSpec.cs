using System;
using System.Collections.Generic;
using System.Linq;

namespace ModelGen.Graph;

internal enum LayerKind { Input, Dense, Dropout, Activation, Flatten, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, BatchNormalization,
    LayerNormalization, Reshape, ZeroPadding2D, UpSampling2D, Embedding, Masking, LSTM, GRU, MultiHeadAttention,
    DepthwiseConv2D, Conv2DTranspose, GlobalAveragePooling1D }

/// <summary>
/// A layer: one field of the model class (or one input of a graph method), with its configuration and,
/// for Dense, the weights every application of the field shares. Plain values only (no symbols, syntax or
/// locations), so two parses of unchanged code compare equal and the generator's output is cached.
/// </summary>
/// <param name="Name">The user's field (or parameter) name: the layer name in weights, summaries and generated code.</param>
/// <param name="OutputShape">Shape without the batch dimension.</param>
/// <param name="InputSize">Floats per sample entering the layer; for Dense, its fan-in (the input's last axis).</param>
/// <param name="InputDim">Embedding: the number of ids (the table's rows).</param>
/// <param name="Extents">ZeroPadding2D: rows above and below, columns left and right; UpSampling2D: the block's rows and columns;
/// MultiHeadAttention: heads, key_dim, value_dim, then the query, key and value features, then the query and value steps.</param>
internal sealed record LayerSpec(
    string Name,
    LayerKind Kind,
    EquatableArray<int> OutputShape,
    int InputSize,
    Activation Activation = Activation.Linear,
    bool UseBias = true,
    double Rate = 0,
    EquatableArray<int> InputShape = default,
    int KernelHeight = 0,
    int KernelWidth = 0,
    int Strides = 1,
    Padding Padding = Padding.Valid,
    bool Trainable = true,
    double Momentum = 0,
    double Epsilon = 0,
    EquatableArray<int> Extents = default,
    int Dilation = 1,
    bool ReturnSequences = false,
    bool Bidirectional = false,
    int InputDim = 0,
    bool MaskZero = false,
    double MaskValue = 0,
    bool Causal = false)
{
    /// <summary>
    /// The start of the generated members named after the layer (HiddenKernel, HiddenBias): set by the generator's plan, its
    /// name capitalized unless that would repeat one of the class's names.
    /// </summary>
    public string MemberStem { get; init; } = "";

    /// <summary>Floats per sample in this layer's output.</summary>
    public int OutputSize => OutputShape.Items.Aggregate(1, (a, b) => a * b);
    /// <summary>Conv2D: filters; Dense: units; BatchNormalization: the normalised (last) axis.</summary>
    public int Channels => OutputShape[OutputShape.Count - 1];
    public bool HasWeights => Weights.Any();
    public bool IsRecurrent => Kind is LayerKind.LSTM or LayerKind.GRU;
    /// <summary>A recurrent layer's units per direction.</summary>
    public int Units => Bidirectional ? Channels / 2 : Channels;
    /// <summary>Kernel columns of a recurrent layer: 4 gates for an LSTM, 3 for a GRU.</summary>
    public int GateWidth => (Kind == LayerKind.LSTM ? 4 : 3) * Units;
    /// <summary>The directions a recurrent layer runs: "" alone, or "Forward" and "Backward" (Keras' Bidirectional).</summary>
    public IEnumerable<string> Directions => Bidirectional ? new[] { "Forward", "Backward" } : new[] { "" };
    /// <summary>Layers that change only the shape: the output is the input's floats, in the same order.</summary>
    public bool IsReshape => Kind is LayerKind.Flatten or LayerKind.Reshape;
    /// <summary>
    /// Layers that slide a window over an image (a global max pooling's window is the whole image). GlobalAveragePooling2D
    /// is not one: it is the mean over a sample's pixels, taken as the steps of a sequence (<see cref="IsMean"/>).
    /// </summary>
    public bool IsWindowed => IsConvolution || Kind is LayerKind.MaxPooling2D or LayerKind.AveragePooling2D or LayerKind.GlobalMaxPooling2D;
    /// <summary>The global averages, both Keras' ops.mean over a sample's steps or pixels (SequencePooling).</summary>
    public bool IsMean => Kind is LayerKind.GlobalAveragePooling1D or LayerKind.GlobalAveragePooling2D;
    /// <summary>The convolutions: a kernel (and bias) slid over the image.</summary>
    public bool IsConvolution => Kind is LayerKind.Conv2D or LayerKind.DepthwiseConv2D or LayerKind.Conv2DTranspose;
    public bool IsGlobal => Kind is LayerKind.GlobalAveragePooling2D or LayerKind.GlobalMaxPooling2D;
    public int KernelLength => Kind switch
    {
        LayerKind.Dense => InputSize * Channels,
        LayerKind.Conv2D or LayerKind.Conv2DTranspose => KernelHeight * KernelWidth * InputShape[2] * Channels,
        LayerKind.DepthwiseConv2D => KernelHeight * KernelWidth * Channels,
        _ => 0,
    };
    public int BiasLength => (Kind == LayerKind.Dense || IsConvolution) && UseBias ? Channels : 0;
    public int ParameterCount => Weights.Sum(t => t.Length);
    /// <summary>What the optimizer updates: nothing of a frozen layer, and never moving statistics.</summary>
    public int TrainableParameterCount => Weights.Where(t => t.Trainable).Sum(t => t.Length);

    /// <summary>
    /// The layer's weight tensors in Keras' order: Property is the C# view's suffix (Kernel), Key the weights-file name (kernel).
    /// </summary>
    public IEnumerable<WeightTensor> Weights
    {
        get
        {
            switch (Kind)
            {
                case LayerKind.Dense:
                case LayerKind.Conv2D:
                case LayerKind.Conv2DTranspose:
                case LayerKind.DepthwiseConv2D:
                    yield return Kind == LayerKind.DepthwiseConv2D
                        ? new WeightTensor("DepthwiseKernel", "depthwise_kernel", KernelLength, Trainable)
                        : new WeightTensor("Kernel", "kernel", KernelLength, Trainable);
                    if (UseBias) yield return new WeightTensor("Bias", "bias", BiasLength, Trainable);
                    break;
                case LayerKind.BatchNormalization:
                    yield return new WeightTensor("Gamma", "gamma", Channels, Trainable);
                    yield return new WeightTensor("Beta", "beta", Channels, Trainable);
                    yield return new WeightTensor("MovingMean", "moving_mean", Channels, false);
                    yield return new WeightTensor("MovingVariance", "moving_variance", Channels, false);
                    break;
                case LayerKind.LayerNormalization:
                    yield return new WeightTensor("Gamma", "gamma", Channels, Trainable);
                    yield return new WeightTensor("Beta", "beta", Channels, Trainable);
                    break;
                case LayerKind.Embedding:
                    yield return new WeightTensor("Embeddings", "embeddings", InputDim * Channels, Trainable);
                    break;
                case LayerKind.MultiHeadAttention:
                {
                    var (heads, keyDim, valueDim) = (Extents[0], Extents[1], Extents[2]);
                    var projections = new[] { ("Query", "query", Extents[3], keyDim), ("Key", "key", Extents[4], keyDim), ("Value", "value", Extents[5], valueDim) };
                    foreach (var (property, key, features, dim) in projections)
                    {
                        yield return new WeightTensor(property + "Kernel", key + ".kernel", features * heads * dim, Trainable);
                        if (UseBias) yield return new WeightTensor(property + "Bias", key + ".bias", heads * dim, Trainable);
                    }
                    yield return new WeightTensor("OutputKernel", "attention_output.kernel", heads * valueDim * Extents[3], Trainable);
                    if (UseBias) yield return new WeightTensor("OutputBias", "attention_output.bias", Extents[3], Trainable);
                    break;
                }
                case LayerKind.LSTM:
                case LayerKind.GRU:
                    foreach (var direction in Directions)
                    {
                        string key = direction.Length == 0 ? "" : direction.ToLowerInvariant() + ".";
                        yield return new WeightTensor(direction + "Kernel", key + "kernel", InputShape[InputShape.Count - 1] * GateWidth, Trainable);
                        yield return new WeightTensor(direction + "RecurrentKernel", key + "recurrent_kernel", Units * GateWidth, Trainable);
                        yield return new WeightTensor(direction + "Bias", key + "bias", (Kind == LayerKind.GRU ? 2 : 1) * GateWidth, Trainable);
                    }
                    break;
            }
        }
    }

    /// <summary>The Keras class name shown in summaries.</summary>
    public string TypeName => Kind switch
    {
        LayerKind.Input => "InputLayer",
        LayerKind.Dense => "Dense",
        LayerKind.Dropout => "Dropout",
        LayerKind.Flatten => "Flatten",
        LayerKind.Conv2D => "Conv2D",
        LayerKind.DepthwiseConv2D => "DepthwiseConv2D",
        LayerKind.Conv2DTranspose => "Conv2DTranspose",
        LayerKind.MaxPooling2D => "MaxPooling2D",
        LayerKind.AveragePooling2D => "AveragePooling2D",
        LayerKind.GlobalAveragePooling2D => "GlobalAveragePooling2D",
        LayerKind.GlobalMaxPooling2D => "GlobalMaxPooling2D",
        LayerKind.BatchNormalization => "BatchNormalization",
        LayerKind.LayerNormalization => "LayerNormalization",
        LayerKind.Reshape => "Reshape",
        LayerKind.ZeroPadding2D => "ZeroPadding2D",
        LayerKind.UpSampling2D => "UpSampling2D",
        LayerKind.Embedding => "Embedding",
        LayerKind.Masking => "Masking",
        LayerKind.LSTM => Bidirectional ? "Bidirectional" : "LSTM",
        LayerKind.GRU => Bidirectional ? "Bidirectional" : "GRU",
        LayerKind.MultiHeadAttention => "MultiHeadAttention",
        LayerKind.GlobalAveragePooling1D => "GlobalAveragePooling1D",
        _ => "Activation",
    };
}

/// <summary>One weight tensor of a layer (see <see cref="LayerSpec.Weights"/>).</summary>
internal readonly record struct WeightTensor(string Property, string Key, int Length, bool Trainable);

internal enum NodeKind
{
    /// <summary>A model input: the Sequential model's [Input] field, or a graph method's parameter.</summary>
    Input,
    /// <summary>A layer field applied to a tensor.</summary>
    Layer,
    /// <summary>A merge (Add, Concatenate, ...) of several tensors.</summary>
    Merge,
    /// <summary>A standalone activation function (Layers.Relu(x)).</summary>
    Function,
    /// <summary>A final state a recurrent layer returns (Keras' return_state): input 0 is the layer's node; Axis 0 is h, 1 an LSTM's c.</summary>
    State,
}

/// <summary>
/// One tensor of the model's graph. Nodes are stored in topological order (every input index is smaller than
/// the node's own), which is the order the forward pass runs; the backward pass runs it in reverse.
/// </summary>
/// <param name="Name">Unique and a valid identifier: the tensor's buffers are named after it (hidden1Output).</param>
/// <param name="Layer">The layer applied (Layer and Input nodes), an index into <see cref="ModelSpec.Layers"/>; otherwise -1.</param>
/// <param name="Axis">For Concatenate: the axis within a sample (0 is the first dimension after the batch).</param>
/// <param name="Mask">The node whose sequence mask this tensor carries (an Embedding with MaskZero, or a Masking layer); -1 for none.</param>
internal sealed record NodeSpec(
    string Name,
    NodeKind Kind,
    EquatableArray<int> Inputs,
    EquatableArray<int> Shape,
    int Layer = -1,
    MergeOperation Merge = MergeOperation.Add,
    Activation Activation = Activation.Linear,
    int Axis = -1,
    int Mask = -1)
{
    public int Size => Shape.Items.Aggregate(1, (a, b) => a * b);
}

/// <summary>
/// A model output: the tensor, its name (Keras' output name) and the loss that trains it. Its Size floats per sample are
/// <see cref="Rows"/> rows of <see cref="Units"/> (the last axis): Keras' losses and accuracies reduce each row over the
/// last axis and average the rows, so a sequence output is classified step by step.
/// </summary>
internal sealed record OutputSpec(string Name, int Node, Loss Loss, double Weight, int Size, int Units)
{
    /// <summary>Rows per sample: 1 for a flat output, the steps of a sequence, the pixels of an image.</summary>
    public int Rows => Size / Units;

    /// <summary>One class index per row for sparse categorical cross-entropy, else a target per output value.</summary>
    public int TargetSize => Loss == Loss.SparseCategoricalCrossentropy ? Rows : Size;

    public static OutputSpec Of(string name, int node, Loss loss, NodeSpec tensor) =>
        new(name, node, loss, 1.0, tensor.Size, Math.Max(1, tensor.Shape.Count > 0 ? tensor.Shape[tensor.Shape.Count - 1] : tensor.Size));
}

/// <summary>
/// A second [Graph] method over the same fields (an autoencoder's encoder): an inference-only graph whose layer
/// indices point into the model's own layers, so it reads (and training updates) the same weights.
/// </summary>
/// <param name="Name">The graph method's name, which the generated inference method reuses.</param>
internal sealed record SubModelSpec(
    string Name,
    EquatableArray<NodeSpec> Nodes,
    EquatableArray<int> Inputs,
    EquatableArray<OutputSpec> Outputs,
    int ParameterCount);

/// <summary>A valid model, ready to emit.</summary>
/// <param name="ContainingTypes">Declarations of enclosing types, outermost first, e.g. "partial class Outer".</param>
/// <param name="Inputs">Node indices of the model inputs, in declaration order.</param>
/// <param name="Outputs">The model outputs, in declaration order.</param>
/// <param name="MemberNames">Every name the user's class declares (its layers, and its properties, methods, nested types):
/// the names the generated members step aside for.</param>
/// <param name="UserMethods">The user's methods by name and the counts of arguments they take, from their required
/// parameters to all of them (int.MaxValue with a params array): those the generated private methods step aside for, where
/// such a method could take their calls.</param>
internal sealed record ModelSpec(
    string Namespace,
    string ClassName,
    EquatableArray<string> ContainingTypes,
    bool IsFunctional,
    EquatableArray<LayerSpec> Layers,
    EquatableArray<NodeSpec> Nodes,
    EquatableArray<int> Inputs,
    EquatableArray<OutputSpec> Outputs,
    EquatableArray<SubModelSpec> SubModels,
    EquatableArray<string> MemberNames,
    EquatableArray<(string Name, int Least, int Most)> UserMethods)
{
    public int ParameterCount => Layers.Sum(l => l.ParameterCount);
    public int TrainableParameterCount => Layers.Sum(l => l.TrainableParameterCount);
    public int InputSize => Inputs.Sum(i => Nodes[i].Size);
    public int OutputSize => Outputs.Sum(o => o.Size);
    public int TargetSize => Outputs.Sum(o => o.TargetSize);

    /// <summary>Generated file name: &lt;Namespace&gt;.&lt;Outer&gt;.&lt;Model&gt;.g.cs.</summary>
    public string HintName
    {
        get
        {
            var parts = ContainingTypes.Select(d => d.Substring(d.LastIndexOf(' ') + 1)).Concat(new[] { ClassName });
            string name = string.Join(".", parts);
            return (Namespace.Length == 0 ? name : Namespace + "." + name) + ".g.cs";
        }
    }
}
