namespace ModelGen.Tests;

/// <summary>
/// Every shape-changing layer in one chain: asymmetric ZeroPadding2D, a non-square UpSampling2D, AveragePooling2D,
/// Reshape (one target with -1) and LayerNormalization over a reshaped axis.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ReshapingChain
{
    [Input(4, 4, 2)] public Input image;
    [ZeroPadding2D(1, 0, 2, 1)] public ZeroPadding2D pad;                 // (5, 7, 2)
    [Conv2D(3, 2, Activation.Tanh)] public Conv2D conv;                   // (4, 6, 3)
    [AveragePooling2D(2)] public AveragePooling2D pool;                   // (2, 3, 3)
    [UpSampling2D(2, 1)] public UpSampling2D upsample;                    // (4, 3, 3)
    [Reshape(6, 6)] public Reshape rows;                                  // (6, 6)
    [LayerNormalization] public LayerNormalization norm;                  // over the last 6
    [Reshape(-1)] public Reshape flat;                                    // (36)
    [Dense(3, Activation.Softmax)] public Dense head;
}
