using BenchmarkDotNet.Attributes;
using ModelGen;
using ModelGen.Kernels;
using ModelGen.Training;

/// <summary>
/// A whole model at a batch: inference as the model runs it, inference through <see cref="IModel.ForInference"/>'s copy
/// (kernels packed once, no training buffers), and one Adam step.
/// </summary>
[MemoryDiagnoser]
public abstract class ModelBenchmarks
{
    private IModel model;
    private IPredictor inference;
    private float[] inputs, targets, outputs;
    private Adam optimizer;

    [Params(1, 8, 32, 128)]
    public int Batch { get; set; }

    /// <summary>The model with buffers for <paramref name="batch"/> samples; its targets are class indices 0 to 9.</summary>
    protected abstract IModel Create(int batch);

    [GlobalSetup]
    public void Setup()
    {
        model = Create(Batch);
        var random = new SeededRandom(1);
        inputs = Enumerable.Range(0, Batch * model.InputSize).Select(_ => random.NextFloat()).ToArray();
        targets = Enumerable.Range(0, Batch).Select(i => (float)(i % 10)).ToArray();
        outputs = new float[Batch * model.OutputSize];
        optimizer = new Adam(learningRate: 1e-3f);
        inference = model.ForInference();
    }

    [Benchmark]
    public float Predict()
    {
        model.Predict(inputs, outputs);
        return outputs[0];
    }

    [Benchmark]
    public float PredictForInference()
    {
        inference.Predict(inputs, outputs);
        return outputs[0];
    }

    [Benchmark]
    public float TrainStep() => model.TrainStep(inputs, targets, optimizer);
}

/// <summary>The seed's MNIST MLP (784-256-128-10, the PyTorch peer's "mlp" in shared/peers).</summary>
public class MlpBenchmarks : ModelBenchmarks
{
    protected override IModel Create(int batch) => new MnistClassifier(maxBatchSize: batch, seed: 0);
}

/// <summary>The small CNN (the peer's "cnn"): two convolutions with max poolings, then two dense layers.</summary>
public class CnnBenchmarks : ModelBenchmarks
{
    protected override IModel Create(int batch) => new SmallCnn(maxBatchSize: batch, seed: 0);
}

/// <summary>GEMM at the MLP's shapes (shared/peers' sgemm table), forward form.</summary>
public class GemmBenchmarks
{
    private float[] a, b, c;

    [Params("128x256x784", "128x128x256", "128x10x128", "1x256x784")]
    public string Shape { get; set; }

    private int m, n, k;

    [GlobalSetup]
    public void Setup()
    {
        var parts = Shape.Split('x').Select(int.Parse).ToArray();
        (m, n, k) = (parts[0], parts[1], parts[2]);
        var random = new SeededRandom(2);
        a = Enumerable.Range(0, m * k).Select(_ => random.NextFloat()).ToArray();
        b = Enumerable.Range(0, k * n).Select(_ => random.NextFloat()).ToArray();
        c = new float[m * n];
    }

    [Benchmark]
    public float Multiply()
    {
        Gemm.Multiply(a, b, c, m, k, n);
        return c[0];
    }
}

/// <summary>
/// The small CNN's convolution gradients at batch 64 behind their 2x2 max poolings, each beside the dense route it replaced:
/// conv2's input gradient (the scattered gradient's transposed convolution, skipping its zeros or not), conv2's kernel
/// gradient at the winners, and conv1's by the narrow route (against the scatter, then patchesᵀ · gradient).
/// </summary>
[MemoryDiagnoser]
public class ConvolutionGradientBenchmarks
{
    private const int Batch = 64;
    private static readonly Window Conv1 = new(28, 28, 1, 3, 3, 1, 1, Same: false), Pool1 = new(26, 26, 32, 2, 2, 2, 2, Same: false);
    // conv2 computes only the 10x10 of its 11x11 outputs that pool2 reads, as the model does.
    private static readonly Window Conv2 = new Window(13, 13, 32, 3, 3, 1, 1, Same: false).CroppedTo(10, 10), Pool2 = new(10, 10, 64, 2, 2, 2, 2, Same: false);
    private (float[] Images, float[] Patches, float[] Kernel, float[] Convolved, float[] PooledGradient, int[] Winners, float[] Scattered) first, second;
    private float[] transposedScratch, inputGradient, kernelGradient1, kernelGradient2;

    [GlobalSetup]
    public void Setup()
    {
        first = Layer(Conv1, Pool1, 32, seed: 3);
        second = Layer(Conv2, Pool2, 64, seed: 4);
        transposedScratch = new float[Convolution.TransposedScratch(Conv2, 64, Batch, scattered: true)];
        inputGradient = new float[Batch * 13 * 13 * 32];
        kernelGradient1 = new float[Conv1.PatchSize * 32];
        kernelGradient2 = new float[Conv2.PatchSize * 64];
    }

    /// <summary>A convolution's kept patches and pooling winners over random images, and a pooled gradient half zeros (a ReLU's derivative), scattered too.</summary>
    private static (float[], float[], float[], float[], float[], int[], float[]) Layer(Window window, Window pool, int filters, int seed)
    {
        var random = new SeededRandom(seed);
        var images = Enumerable.Range(0, Batch * window.Height * window.Width * window.Channels).Select(_ => random.NextFloat()).ToArray();
        var kernel = Enumerable.Range(0, window.PatchSize * filters).Select(_ => random.NextFloat() - 0.5f).ToArray();
        var patches = new float[Batch * window.Positions * window.PatchSize];
        var convolved = new float[Batch * window.Positions * filters];
        var pooled = new float[Batch * pool.Positions * filters];
        var winners = new int[pooled.Length];
        Convolution.ForwardMaxPooled(images, patches, kernel, convolved, pooled, winners, window, pool, filters, Batch, relu: true, training: true);
        var gradient = pooled.Select((_, i) => i % 2 == 0 ? 0f : random.NextFloat() - 0.5f).ToArray();
        var scattered = new float[convolved.Length];
        Pooling.MaxBackward(gradient, winners, scattered, pool, Batch, accumulate: false);
        return (images, patches, kernel, convolved, gradient, winners, scattered);
    }

    [Benchmark]
    public float Conv2InputGradientDense()
    {
        Convolution.Transposed(second.Scattered, second.Kernel, transposedScratch, inputGradient, Conv2, 64, Batch, accumulate: false);
        return inputGradient[0];
    }

    [Benchmark]
    public float Conv2InputGradientScattered()
    {
        Convolution.Transposed(second.Scattered, second.Kernel, transposedScratch, inputGradient, Conv2, 64, Batch, accumulate: false, scattered: true);
        return inputGradient[0];
    }

    [Benchmark]
    public float Conv2KernelGradientAtWinners()
    {
        Convolution.KernelGradientAtWinners(second.PooledGradient, second.Winners, second.Images, kernelGradient2, Conv2, Pool2, 64, Batch);
        return kernelGradient2[0];
    }

    [Benchmark]
    public float Conv1KernelGradientDense()
    {
        Pooling.MaxBackward(first.PooledGradient, first.Winners, first.Scattered, Pool1, Batch, accumulate: false);
        Gemm.MultiplyTransposedA(first.Patches, first.Scattered, kernelGradient1, Conv1.PatchSize, Batch * Conv1.Positions, 32);
        return kernelGradient1[0];
    }

    [Benchmark]
    public float Conv1KernelGradientNarrow()
    {
        Convolution.KernelGradientAtWinners(first.PooledGradient, first.Winners, first.Images, kernelGradient1, Conv1, Pool1, 32, Batch);
        return kernelGradient1[0];
    }
}

[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class MnistClassifier
{
    [Input(784)] Input image;
    [Dense(256, Activation.Relu)] Dense hidden1;
    [Dropout(0.3)] Dropout drop1;
    [Dense(128, Activation.Relu)] Dense hidden2;
    [Dropout(0.3)] Dropout drop2;
    [Dense(10, Activation.Softmax)] Dense predictions;
}

/// <summary>The seed's residual MLP (the peer's "resmlp"): 8,970 parameters.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ResidualMlp
{
    [Dense(64, Activation.Relu)] Dense d1;
    [Dense(64)] Dense d2;
    [Dense(10, Activation.Softmax)] Dense head;

    [Graph]
    Tensor Forward([Shape(64)] Tensor x) => head.Apply(Ops.Relu(Ops.Add(d2.Apply(d1.Apply(x)), x)));
}

/// <summary>The seed's small CNN (the peer's "cnn"): 225,034 parameters.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class SmallCnn
{
    [Input(28, 28, 1)] Input image;
    [Conv2D(32, 3, Activation.Relu)] Conv2D conv1;
    [MaxPooling2D(2)] MaxPooling2D pool1;
    [Conv2D(64, 3, Activation.Relu)] Conv2D conv2;
    [MaxPooling2D(2)] MaxPooling2D pool2;
    [Flatten] Flatten flatten;
    [Dense(128, Activation.Relu)] Dense hidden;
    [Dense(10, Activation.Softmax)] Dense digits;
}

/// <summary>
/// A MobileNet-style block over 32x32 colour images (the peer's "mobilenet"): a strided stem, then two depthwise-separable
/// pairs (DepthwiseConv2D 3x3, pointwise Conv2D 1x1), batch normalization, global average pooling, Dense 10.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class MobileBlock
{
    [Input(32, 32, 3)] Input image;
    [Conv2D(32, 3, Activation.Relu, Strides = 2, Padding = Padding.Same)] Conv2D stem;
    [DepthwiseConv2D(3, Activation.Relu, Padding = Padding.Same)] DepthwiseConv2D depthwise1;
    [Conv2D(64, 1, Activation.Relu)] Conv2D pointwise1;
    [BatchNormalization] BatchNormalization normalized;
    [DepthwiseConv2D(3, Activation.Relu, Strides = 2, Padding = Padding.Same)] DepthwiseConv2D depthwise2;
    [Conv2D(128, 1, Activation.Relu)] Conv2D pointwise2;
    [GlobalAveragePooling2D] GlobalAveragePooling2D pool;
    [Dense(10, Activation.Softmax)] Dense label;
}

/// <summary>
/// A ResNet-style stem and basic block over 32x32 colour images (the peer's "resnet"): Keras' commonest block, Conv2D without
/// activation, BatchNormalization, ReLU, twice, the second's ReLU after the residual Add; global average pooling, Dense 10.
/// </summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class ResNetBlock
{
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D stem;
    [BatchNormalization] BatchNormalization stemNorm;
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D conv1;
    [BatchNormalization] BatchNormalization norm1;
    [Conv2D(32, 3, Padding = Padding.Same)] Conv2D conv2;
    [BatchNormalization] BatchNormalization norm2;
    [GlobalAveragePooling2D] GlobalAveragePooling2D pool;
    [Dense(10, Activation.Softmax)] Dense label;

    [Graph]
    Tensor Forward([Shape(32, 32, 3)] Tensor image)
    {
        var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
        var y = Ops.Relu(norm1.Apply(conv1.Apply(x)));
        y = norm2.Apply(conv2.Apply(y));
        return label.Apply(pool.Apply(Ops.Relu(Ops.Add(x, y))));
    }
}

/// <summary>
/// A bag of words (the peer's "bag"): 200 word ids looked up in an Embedding of 5000 x 64, their mean, Dense 64, Dense 10. The
/// lookups and the mean move far more memory than the dense layers compute.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class BagOfWords
{
    [Input(200)] Input words;
    [Embedding(5000, 64)] Embedding embed;
    [GlobalAveragePooling1D] GlobalAveragePooling1D mean;
    [Dense(64, Activation.Relu)] Dense hidden;
    [Dense(10, Activation.Softmax)] Dense label;
}

/// <summary>An LSTM over MNIST's rows (the peer's "lstm"): 28 steps of 28 pixels, its last state classified.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class RowLstm
{
    [Input(28, 28)] Input rows;
    [LSTM(64)] LSTM lstm;
    [Dense(10, Activation.Softmax)] Dense digits;
}

/// <summary>A bidirectional LSTM over MNIST's rows (the peer's "bilstm"): both directions' last states, side by side, classified.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class RowBiLstm
{
    [Input(28, 28)] Input rows;
    [LSTM(64, Bidirectional = true)] LSTM lstm;
    [Dense(10, Activation.Softmax)] Dense digits;
}

/// <summary>
/// The convolutional autoencoder of the Keras blog's "Building Autoencoders in Keras" (the peer's "autoencoder"): 28x28
/// digits encoded to 4x4x8 by three 'same' convolutions and poolings, decoded by convolutions and UpSampling2D back to a
/// sigmoid image, trained with binary cross-entropy against its input.
/// </summary>
[Sequential(Loss = Loss.BinaryCrossentropy)]
public partial class ConvAutoencoder
{
    [Input(28, 28, 1)] Input image;
    [Conv2D(16, 3, Activation.Relu, Padding = Padding.Same)] Conv2D encode1;
    [MaxPooling2D(2, Padding = Padding.Same)] MaxPooling2D pool1;
    [Conv2D(8, 3, Activation.Relu, Padding = Padding.Same)] Conv2D encode2;
    [MaxPooling2D(2, Padding = Padding.Same)] MaxPooling2D pool2;
    [Conv2D(8, 3, Activation.Relu, Padding = Padding.Same)] Conv2D encode3;
    [MaxPooling2D(2, Padding = Padding.Same)] MaxPooling2D code;
    [Conv2D(8, 3, Activation.Relu, Padding = Padding.Same)] Conv2D decode1;
    [UpSampling2D(2)] UpSampling2D up1;
    [Conv2D(8, 3, Activation.Relu, Padding = Padding.Same)] Conv2D decode2;
    [UpSampling2D(2)] UpSampling2D up2;
    [Conv2D(16, 3, Activation.Relu)] Conv2D decode3;
    [UpSampling2D(2)] UpSampling2D up3;
    [Conv2D(1, 3, Activation.Sigmoid, Padding = Padding.Same)] Conv2D decoded;
}

/// <summary>
/// A wide LSTM over long sequences (the peer's "wide lstm"): 100 steps of 32 features, 256 units, whose recurrent kernel (1 MB)
/// outgrows a core's L2; its last state classified.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class WideLstm
{
    [Input(100, 32)] Input steps;
    [LSTM(256)] LSTM lstm;
    [Dense(10, Activation.Softmax)] Dense label;
}

/// <summary>A GRU over MNIST's rows (the peer's "gru"): 28 steps of 28 pixels, its last state classified; reset after the product, as Keras' and PyTorch's default.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class RowGru
{
    [Input(28, 28)] Input rows;
    [GRU(64)] GRU gru;
    [Dense(10, Activation.Softmax)] Dense digits;
}

/// <summary>
/// A Transformer encoder block over 64 tokens (the peer's "transformer"): Embedding 1000 x 64, self-attention of 4 heads of
/// 16 with a residual connection and LayerNormalization, a feed-forward 64 -> 128 -> 64 likewise, the mean over the tokens
/// into Dense 10.
/// </summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class TokenTransformer
{
    [Embedding(1000, 64)] Embedding embed;
    [MultiHeadAttention(4, 16)] MultiHeadAttention attention;
    [LayerNormalization] LayerNormalization attended;
    [Dense(128, Activation.Relu)] Dense expand;
    [Dense(64)] Dense project;
    [LayerNormalization] LayerNormalization encoded;
    [GlobalAveragePooling1D] GlobalAveragePooling1D mean;
    [Dense(10, Activation.Softmax)] Dense label;

    [Graph]
    Tensor Forward([Shape(64)] Tensor tokens)
    {
        var x = embed.Apply(tokens);
        var a = attended.Apply(Ops.Add(x, attention.Apply(x, x)));
        var e = encoded.Apply(Ops.Add(a, project.Apply(expand.Apply(a))));
        return label.Apply(mean.Apply(e));
    }
}

/// <summary>scikit-learn's MLPClassifier(hidden_layer_sizes=(64,)) on the 8x8 digits, for the training-time comparison.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class SklearnDigitsMlp
{
    [Input(64)] Input pixels;
    [Dense(64, Activation.Relu)] Dense hidden;
    [Dense(10, Activation.Softmax)] Dense digit;
}
