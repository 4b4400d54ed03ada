namespace ModelGen.Tests;

// The models the end-to-end tests train and check. The generator compiles them as part of this project,
// exactly as it would in a user's project. Fields are public so tests can reach the typed weight views.

/// <summary>The seed's MNIST classifier: 235,146 parameters in Keras.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class MnistClassifier
{
    [Input(784)] public Input image;
    [Dense(256, Activation.Relu)] public Dense hidden1;
    [Dropout(0.3)] public Dropout drop1;
    [Dense(128, Activation.Relu)] public Dense hidden2;
    [Dropout(0.3)] public Dropout drop2;
    [Dense(10, Activation.Softmax)] public Dense predictions;
}

// Parity models: the same architectures as tests/fixtures/make_parity_fixtures.py; layer names match the fixture tensors.

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ParityClassifier
{
    [Input(6)] public Input input;
    [Dense(8, Activation.Relu)] public Dense layer0;
    [Dense(5, Activation.Tanh)] public Dense layer1;
    [Dense(4, Activation.Softmax)] public Dense layer2;
}

[Sequential(Loss = Loss.CategoricalCrossentropy)]
public partial class ParityOneHot
{
    [Input(5)] public Input input;
    [Dense(7, Activation.Sigmoid)] public Dense layer0;
    [Dense(3, Activation.Softmax)] public Dense layer1;
}

[Sequential(Loss = Loss.MeanSquaredError)]
public partial class ParityRegressor
{
    [Input(5)] public Input input;
    [Dense(7, Activation.Sigmoid)] public Dense layer0;
    [Dense(3)] public Dense layer1;
}

[Sequential(Loss = Loss.BinaryCrossentropy)]
public partial class ParityBinary
{
    [Input(4)] public Input input;
    [Dense(6, Activation.Tanh)] public Dense layer0;
    [Dense(2, Activation.Sigmoid)] public Dense layer1;
}

/// <summary>Standalone activation layers and a bias-free Dense, for the whole-model gradient check.</summary>
[Sequential(Loss = Loss.MeanSquaredError)]
public partial class StandaloneActivations
{
    [Input(3)] public Input input;
    [Dense(6, UseBias = false)] public Dense projection;
    [Activation(Activation.Tanh)] public ActivationLayer squash;
    [Dense(4)] public Dense mix;
    [Activation(Activation.Sigmoid)] public ActivationLayer gate;
    [Dense(2, Activation.Relu)] public Dense output;
}

/// <summary>A softmax layer after a linear Dense, with one-hot targets: the unfused path.</summary>
[Sequential(Loss = Loss.CategoricalCrossentropy)]
public partial class SeparateSoftmax
{
    [Input(4)] public Input features;
    [Dense(5, Activation.Relu)] public Dense hidden;
    [Dense(3)] public Dense logits;
    [Activation(Activation.Softmax)] public ActivationLayer probabilities;
}

/// <summary>An image flattened in H, W, C order into a dense classifier.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class FlattenedImage
{
    [Input(4, 4, 2)] public Input image;
    [Flatten] public Flatten flatten;
    [Dense(6, Activation.Tanh)] public Dense hidden;
    [Dense(3, Activation.Softmax)] public Dense classes;
}
