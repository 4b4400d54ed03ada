using BenchmarkDotNet.Attributes;
using ModelGen;
using ModelGen.Kernels;
using ModelGen.Training;

/// <summary>
/// A whole model at a batch: inference as the model runs it, inference through <see cref="IModel.ForInference"/>'s copy
/// (dense kernels packed once, no training buffers), and one Adam step.
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
