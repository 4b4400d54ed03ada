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

/// <summary>
/// A decoder whose UpSampling2D layers are each read by a Conv2D alone, whose transposed convolution sums each block's
/// gradient into the upsampling's input: eight filters over six channels through the scratch (no in-place route), one
/// filter over eight channels in place, a row at a time; non-square blocks first. The last convolution also reads its
/// upsampling's input in its place (its planes and its kernel gradient's padded samples), so the upsampled image is never written.
/// </summary>
[Sequential(Loss = Loss.BinaryCrossentropy)]
public partial class UpsampledDecoder
{
    [Input(3, 3, 2)] public Input code;
    [Conv2D(6, 2, Activation.Tanh, Padding = Padding.Same)] public Conv2D widen;    // (3, 3, 6)
    [UpSampling2D(2, 3)] public UpSampling2D spread;                                 // (6, 9, 6)
    [Conv2D(8, 3, Activation.Tanh, Padding = Padding.Same)] public Conv2D decode;    // (6, 9, 8)
    [UpSampling2D(2)] public UpSampling2D up;                                        // (12, 18, 8)
    [Conv2D(1, 3, Activation.Sigmoid, Padding = Padding.Same)] public Conv2D image;  // (12, 18, 1)
}

/// <summary>
/// Two upsampled branches, each UpSampling2D read in its place by a Conv2D of one filter over eight channels (never
/// written), with the second branch computed between the first's upsampling and its convolution: an inference copy that
/// shares its values' floats must keep the first upsampling's input alive until that convolution reads it.
/// </summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class UpsampledBranches
{
    [Conv2D(8, 3, Activation.Tanh, Padding = Padding.Same)] public Conv2D widen;     // (3, 4, 8)
    [UpSampling2D(2)] public UpSampling2D up;                                        // (6, 8, 8)
    [Conv2D(8, 2, Activation.Tanh, Padding = Padding.Same)] public Conv2D side;      // (3, 4, 8)
    [UpSampling2D(2)] public UpSampling2D sideUp;                                    // (6, 8, 8)
    [Conv2D(1, 3, Activation.Sigmoid, Padding = Padding.Same)] public Conv2D image;  // (6, 8, 1)
    [Conv2D(1, 3, Padding = Padding.Same)] public Conv2D sideImage;                  // (6, 8, 1)

    [Graph]
    public Tensor Forward([Shape(3, 4, 2)] Tensor code)
    {
        var upsampled = up.Apply(widen.Apply(code));
        var other = sideUp.Apply(side.Apply(code));
        return Ops.Add(image.Apply(upsampled), sideImage.Apply(other));
    }
}
