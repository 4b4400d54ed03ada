namespace ModelGen.Tests;

/// <summary>The seed's small CNN: 28x28x1 → Conv2D 32 → MaxPool → Conv2D 64 → MaxPool → Flatten → Dense 128 → Dense 10: 225,034.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class SmallCnn
{
    [Input(28, 28, 1)] public Input image;
    [Conv2D(32, 3, Activation.Relu)] public Conv2D conv1;
    [MaxPooling2D(2)] public MaxPooling2D pool1;
    [Conv2D(64, 3, Activation.Relu)] public Conv2D conv2;
    [MaxPooling2D(2)] public MaxPooling2D pool2;
    [Flatten] public Flatten flatten;
    [Dense(128, Activation.Relu)] public Dense hidden;
    [Dense(10, Activation.Softmax)] public Dense digits;
}

/// <summary>'same' and 'valid' padding, stride 2, a pooling window hanging over the edge ('same'), for the gradient check.</summary>
[Sequential(Loss = Loss.CategoricalCrossentropy)]
public partial class TinyCnn
{
    [Input(6, 6, 2)] public Input image;
    [Conv2D(3, 3, Activation.Tanh, Padding = Padding.Same)] public Conv2D conv1;        // (6, 6, 3)
    [Conv2D(2, 2, Activation.Sigmoid, Strides = 2)] public Conv2D conv2;                  // (3, 3, 2)
    [MaxPooling2D(2, Padding = Padding.Same)] public MaxPooling2D pool;                    // (2, 2, 2)
    [Flatten] public Flatten flatten;
    [Dense(3, Activation.Softmax)] public Dense classes;
}

/// <summary>The parity CNN of tests/fixtures/make_parity_fixtures.py: 'same' and strided 'valid' convolutions and max pooling.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class CnnParity
{
    [Input(9, 9, 2)] public Input image;
    [Conv2D(4, 3, Activation.Relu, Padding = Padding.Same)] public Conv2D conv1;
    [Conv2D(3, 3, Activation.Tanh, Strides = 2)] public Conv2D conv2;
    [MaxPooling2D(2)] public MaxPooling2D pool;
    [Flatten] public Flatten flatten;
    [Dense(5, Activation.Softmax)] public Dense head;
}
