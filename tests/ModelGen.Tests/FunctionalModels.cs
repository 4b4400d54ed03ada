namespace ModelGen.Tests;

// Functional models from the seed material, with the parameter counts Keras' count_params() gives.

/// <summary>Input 64 → Dense 64 relu → Dense 64 → Add with the input → relu → Dense 10 softmax: 8,970.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ResidualMlp
{
    [Dense(64, Activation.Relu)] public Dense d1;
    [Dense(64)] public Dense d2;
    [Dense(10, Activation.Softmax)] public Dense head;

    [Graph]
    Tensor Forward([Shape(64)] Tensor x)
    {
        var h = d2.Apply(d1.Apply(x));
        var merged = Ops.Relu(Ops.Add(h, x)); // skip connection
        return head.Apply(merged);
    }
}

/// <summary>Dense 20 → 64 relu → 32 relu → 1 sigmoid: 3,457, in Functional form.</summary>
[Functional(Loss = Loss.BinaryCrossentropy)]
public partial class BinaryFunctional
{
    [Dense(64, Activation.Relu)] public Dense hidden1;
    [Dense(32, Activation.Relu)] public Dense hidden2;
    [Dense(1, Activation.Sigmoid)] public Dense output;

    [Graph]
    Tensor Forward([Shape(20)] Tensor features) => output.Apply(hidden2.Apply(hidden1.Apply(features)));
}

/// <summary>The same network in Sequential form: 3,457.</summary>
[Sequential(Loss = Loss.BinaryCrossentropy)]
public partial class BinarySequential
{
    [Input(20)] public Input features;
    [Dense(64, Activation.Relu)] public Dense hidden1;
    [Dense(32, Activation.Relu)] public Dense hidden2;
    [Dense(1, Activation.Sigmoid)] public Dense output;
}

/// <summary>Autoencoder 784 → 256 → 128 → 32 → 128 → 256 → 784 sigmoid: 476,720.</summary>
[Functional(Loss = Loss.BinaryCrossentropy)]
public partial class Autoencoder
{
    [Dense(256, Activation.Relu)] public Dense encode1;
    [Dense(128, Activation.Relu)] public Dense encode2;
    [Dense(32, Activation.Relu)] public Dense code;
    [Dense(128, Activation.Relu)] public Dense decode1;
    [Dense(256, Activation.Relu)] public Dense decode2;
    [Dense(784, Activation.Sigmoid)] public Dense reconstruction;

    /// <summary>The model: calling the encoder graph inlines it (a Keras model used as a layer).</summary>
    [Graph]
    Tensor Forward([Shape(784)] Tensor image) => reconstruction.Apply(decode2.Apply(decode1.Apply(Encode(image))));

    /// <summary>The encoder sub-model: 237,984 of the autoencoder's weights, shared.</summary>
    [Graph]
    Tensor Encode([Shape(784)] Tensor image) => code.Apply(encode2.Apply(encode1.Apply(image)));
}

/// <summary>
/// Every merge, fan-out (one tensor feeding several branches), a shared layer applied three times, standalone
/// activations and dropout-free paths: the whole-model gradient check's hardest case.
/// </summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class EveryMerge
{
    [Dense(6, Activation.Tanh)] public Dense stem;
    [Dense(6, Activation.Sigmoid)] public Dense shared;
    [Dense(6)] public Dense left;
    [Dense(6, Activation.Tanh)] public Dense right;
    [Dense(3)] public Dense head;

    [Graph]
    Tensor Forward([Shape(5)] Tensor x)
    {
        var s = stem.Apply(x);
        var a = shared.Apply(s);                    // the shared layer, first use
        var b = shared.Apply(a);                    // second use, on its own output
        var l = left.Apply(s);
        var r = right.Apply(s);
        var sum = Ops.Add(a, b, l);
        var difference = Ops.Subtract(sum, r);
        var product = Ops.Multiply(difference, b);
        var mean = Ops.Average(product, l, Ops.Tanh(r));
        var high = Ops.Maximum(mean, a);
        var low = Ops.Minimum(high, shared.Apply(r)); // third use
        var similarity = Ops.Dot(low, r);                 // (None, 1), as a Siamese distance
        var joined = Ops.Concatenate(low, Ops.Sigmoid(s), similarity);
        return head.Apply(joined);
    }
}

/// <summary>Siamese: two inputs of 100, one shared Dense 64 applied to both, concatenated: 6,464.</summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class Siamese
{
    [Dense(64, Activation.Relu)] public Dense shared;

    [Graph]
    Tensor Forward([Shape(100)] Tensor left, [Shape(100)] Tensor right) =>
        Ops.Concatenate(shared.Apply(left), shared.Apply(right));
}

/// <summary>The seed's Siamese bug: two separate Dense layers instead of one shared: 12,928 (deliberately; MG0019 flags it).</summary>
#pragma warning disable MG0019
[Functional(Loss = Loss.MeanSquaredError)]
public partial class SiameseSeparate
{
    [Dense(64, Activation.Relu)] public Dense leftEncoder;
    [Dense(64, Activation.Relu)] public Dense rightEncoder;

    [Graph]
    Tensor Forward([Shape(100)] Tensor left, [Shape(100)] Tensor right) =>
        Ops.Concatenate(leftEncoder.Apply(left), rightEncoder.Apply(right));
}
#pragma warning restore MG0019

/// <summary>Multi-output: Input 10 → Dense 8 relu → regression Dense 1 and classifier Dense 3 softmax: 124.</summary>
[Functional]
public partial class MultiOutput
{
    [Dense(8, Activation.Relu)] public Dense trunk;
    [Dense(1)] public Dense regression;
    [Dense(3, Activation.Softmax)] public Dense classifier;

    [Graph]
    [OutputLoss("value", Loss.MeanSquaredError)]
    [OutputLoss("label", Loss.SparseCategoricalCrossentropy, Weight = 0.5)]
    (Tensor value, Tensor label) Forward([Shape(10)] Tensor x)
    {
        var h = trunk.Apply(x);
        return (regression.Apply(h), classifier.Apply(h));
    }
}

/// <summary>Power plant: Input 4 → Dense 64 relu → Dense 32 relu → energy and vacuum outputs, mse/mse weighted 0.7/0.3: 2,466.</summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class PowerPlant
{
    [Dense(64, Activation.Relu)] public Dense hidden1;
    [Dense(32, Activation.Relu)] public Dense hidden2;
    [Dense(1)] public Dense energy_output;
    [Dense(1)] public Dense vacuum_output;

    [Graph]
    [OutputLoss("energy_output", Loss.MeanSquaredError, Weight = 0.7)]
    [OutputLoss("vacuum_output", Loss.MeanSquaredError, Weight = 0.3)]
    (Tensor, Tensor) Forward([Shape(4)] Tensor conditions)
    {
        var h = hidden2.Apply(hidden1.Apply(conditions));
        return (energy_output.Apply(h), vacuum_output.Apply(h));
    }
}

/// <summary>Concatenation of image tensors: along the channels (Keras' default axis), then along the rows (axis=1).</summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class ImageConcat
{
    [Flatten] public Flatten flatten;

    [Graph]
    Tensor Forward([Shape(2, 3, 2)] Tensor a, [Shape(2, 3, 1)] Tensor b, [Shape(1, 3, 3)] Tensor c) =>
        flatten.Apply(Ops.Concatenate(1, Ops.Concatenate(a, b), c));
}

/// <summary>
/// Gradients handed over rather than copied (the plan's hand-overs): the first Add hands its gradient's floats to both its
/// operands (the normalization only reads its own, and the stem's is added to only after that read); the second to the
/// first Add alone, as the tanh layer's block changes its gradient in place while the first Add's is still to be read.
/// </summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class HandedGradients
{
    [Dense(6, Activation.Tanh)] public Dense stem;
    [Dense(6)] public Dense inner;
    [BatchNormalization] public BatchNormalization norm;
    [Dense(6, Activation.Tanh)] public Dense bent;
    [Dense(2)] public Dense head;

    [Graph]
    Tensor Forward([Shape(4)] Tensor x)
    {
        var s = stem.Apply(x);
        var sum = Ops.Add(s, norm.Apply(inner.Apply(s)));
        return head.Apply(Ops.Add(sum, bent.Apply(sum)));
    }
}
