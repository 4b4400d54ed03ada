using ModelGen.Kernels;
using ModelGen.Training;

namespace ModelGen.Tests;

/// <summary>
/// ForInference: a copy whose dense, recurrent and convolution kernels are packed once predicts what the model predicts, bit for bit, at
/// every batch, and keeps predicting it after the model it came from changes.
/// </summary>
public class InferenceCopyTests
{
    private const int Capacity = 64;

    public static TheoryData<string> Models() => new()
    {
        nameof(MnistClassifier),    // dense pairs through dropout, slices of columns from a few rows on
        nameof(ResidualMlp),        // a functional graph with a merge
        nameof(Siamese),            // one dense layer called twice
        nameof(StepTagger),         // a dense layer at every step of a sequence
        nameof(SmallCnn),           // convolutions, then a dense head
        nameof(SelfAttentionBlock), // attention and LayerNormalization, then a dense head
        nameof(NormalizedMlp),      // BatchNormalization's moving statistics
        nameof(MultiOutput),        // two outputs side by side
        nameof(WideNormalized),     // 320, 600 and 700 units: last slices of columns narrower than a tile
        nameof(NormalizedBlocks),   // convolutions applying their BatchNormalization, in its block, to a value read by nothing else
        nameof(RectifiedBlocks),    // the same, each normalization's ReLU taken too, written in the normalization's block
        nameof(SeparableBlocks),    // depthwise and pointwise convolutions applying their BatchNormalization (and its ReLU)
        nameof(UpsampledBranches),  // upsamplings read in their place, a branch between one and its convolution
        nameof(WideRecurrentStack), // recurrent kernels packed once: a few samples stream their tiles, more read panels
        nameof(UpsampledDecoder),   // a convolution kernel packed once, multiplied by the patches of an upsampled input
        nameof(ResidualCnnParity),  // residual Adds made by the convolutions that apply the normalizations they add, in those blocks
    };

    private static IModel Create(string name) => name switch
    {
        nameof(MnistClassifier) => new MnistClassifier(Capacity, seed: 1),
        nameof(ResidualMlp) => new ResidualMlp(Capacity, seed: 2),
        nameof(Siamese) => new Siamese(Capacity, seed: 3),
        nameof(StepTagger) => new StepTagger(Capacity, seed: 4),
        nameof(SmallCnn) => new SmallCnn(Capacity, seed: 5),
        nameof(SelfAttentionBlock) => new SelfAttentionBlock(Capacity, seed: 6),
        nameof(NormalizedMlp) => new NormalizedMlp(Capacity, seed: 7),
        nameof(MultiOutput) => new MultiOutput(Capacity, seed: 8),
        nameof(WideNormalized) => new WideNormalized(Capacity, seed: 9),
        nameof(NormalizedBlocks) => new NormalizedBlocks(Capacity, seed: 10),
        nameof(RectifiedBlocks) => new RectifiedBlocks(Capacity, seed: 11),
        nameof(SeparableBlocks) => new SeparableBlocks(Capacity, seed: 12),
        nameof(UpsampledBranches) => new UpsampledBranches(Capacity, seed: 13),
        nameof(WideRecurrentStack) => new WideRecurrentStack(Capacity, seed: 14),
        nameof(UpsampledDecoder) => new UpsampledDecoder(Capacity, seed: 15),
        nameof(ResidualCnnParity) => new ResidualCnnParity(Capacity, seed: 16),
        _ => throw new ArgumentException(name),
    };

    private static float[] Inputs(IPredictor model, int batch, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, batch * model.InputSize).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static float[] Predict(IPredictor model, float[] inputs)
    {
        var outputs = new float[inputs.Length / model.InputSize * model.OutputSize];
        model.Predict(inputs, outputs);
        return outputs;
    }

    [Theory, MemberData(nameof(Models))]
    public void The_copy_predicts_what_the_model_predicts_bit_for_bit(string name)
    {
        var model = Create(name);
        // Moving statistics and weights away from their initial values, so that the copy must take them over.
        foreach (var parameter in model.Layers.SelectMany(l => l.Parameters))
        {
            var values = parameter.Values;
            for (int i = 0; i < values.Length; i++) values[i] += 0.01f * ((i * 7 + parameter.Length) % 13 - 6);
        }
        var copy = model.ForInference();
        Assert.Equal(model.Name, copy.Name);
        Assert.Equal(model.InputSize, copy.InputSize);
        Assert.Equal(model.OutputSize, copy.OutputSize);
        Assert.Equal(model.MaxBatchSize, copy.MaxBatchSize);
        foreach (int batch in new[] { 1, 3, 8, 13, 32, Capacity })
        {
            var inputs = Inputs(model, batch, seed: batch);
            var expected = Predict(model, inputs);
            Assert.Equal(expected, Predict(copy, inputs));
            Assert.All(expected, value => Assert.True(float.IsFinite(value)));
        }
    }

    [Fact]
    public void The_copy_keeps_its_weights_when_the_model_trains_on()
    {
        var model = new MnistClassifier(Capacity, seed: 11);
        var inputs = Inputs(model, Capacity, seed: 12);
        var labels = Enumerable.Range(0, Capacity).Select(i => (float)(i % 10)).ToArray();
        var copy = model.ForInference();
        var before = Predict(copy, inputs);
        Assert.Equal(Predict(model, inputs), before);

        var optimizer = new Sgd(0.1f);
        for (int step = 0; step < 3; step++) model.TrainStep(inputs, labels, optimizer);
        model.Parameters[0] += 1f;

        Assert.NotEqual(before, Predict(model, inputs));
        Assert.Equal(before, Predict(copy, inputs));
        // A new copy follows the model again.
        Assert.Equal(Predict(model, inputs), Predict(model.ForInference(), inputs));
    }

    [Fact]
    public void The_copy_reports_its_packed_kernels_and_predicts_any_number_of_samples()
    {
        var model = new MnistClassifier(Capacity, seed: 13);
        var copy = Assert.IsType<InferenceCopy>(model.ForInference());
        // 784x256, 256x128 and 128x10, the last padded to 16 columns on every SIMD path.
        Assert.Equal((784 * 256 + 256 * 128 + 128 * 16) * sizeof(float), copy.PackedBytes);
        var inputs = Inputs(model, 150, seed: 14); // three chunks of the capacity
        Assert.Equal(model.Predict(inputs.AsSpan()), copy.Predict(inputs.AsSpan()));
    }

    [Fact]
    public void A_recurrent_copy_packs_every_directions_kernels_and_the_dense_ones()
    {
        var copy = Assert.IsType<InferenceCopy>(new WideRecurrentStack(Capacity, seed: 22).ForInference());
        // Each LSTM direction's 20x256 input and 64x256 recurrent kernel, the GRU's 128x192 and 64x192 (whole tiles of columns
        // on every SIMD path), the head's 64x10 padded to 16 columns.
        Assert.Equal((2 * (20 + 64) * 256 + (128 + 64) * 192 + 64 * 16) * sizeof(float), copy.PackedBytes);
    }

    [Fact]
    public void A_convolutional_copy_packs_the_kernels_it_multiplies_patches_by()
    {
        var copy = Assert.IsType<InferenceCopy>(new UpsampledDecoder(Capacity, seed: 23).ForInference());
        // Only decode's 3x3x6 kernel of 8 filters: its windows go through patches on every SIMD path; widen's 2x2x2 windows
        // go to the direct kernel and image's one filter to the planar one, which read their kernels where they lie.
        Assert.Equal(3 * 3 * 6 * 8 * sizeof(float), copy.PackedBytes);
    }

    [Fact]
    public void The_copy_holds_its_weights_the_values_inference_reads_and_the_packed_kernels_only()
    {
        var model = new MnistClassifier(Capacity, seed: 16);
        var copy = Assert.IsType<InferenceCopy>(model.ForInference());
        // No gradients of the weights; of the buffers, the three dense layers' outputs (256, 128, 10 a sample) sharing by
        // liveness: predictions is written after the pair hidden1-hidden2 last reads hidden1, so it takes hidden1's floats.
        // Dropout is the identity at inference, and its outputs and masks, the tensors' gradients and the targets are training's.
        long weights = MnistClassifier.ParameterCount * sizeof(float), values = Capacity * (256 + 128) * sizeof(float);
        Assert.Equal(weights + values + copy.PackedBytes, copy.Bytes);
        Assert.Equal((Capacity + ModelBehaviourTests.ReplicaRowsOfMnist) * (256 + 128 + 10 + 2 * (256 + 128) + MnistGradientFloats) * sizeof(float), model.BufferBytes);
    }

    [Fact]
    public void A_convolutional_copy_keeps_only_the_values_inference_writes()
    {
        var model = new SmallCnn(Capacity, seed: 17);
        var copy = Assert.IsType<InferenceCopy>(model.ForInference());
        // Values a sample: pool1 13x13x32, conv2 10x10x64, pool2 5x5x64 (Flatten reads it as it is), Dense 128 and 10. conv1
        // (3x3x1 windows, the direct kernel's on every SIMD path) is pooled in registers, its 26x26x32 output never written;
        // conv2's 3x3x32 windows are not (AVX2 takes them through im2col, in a scratch at inference), so its output is kept,
        // the 10x10 of its 11x11 outputs that pool2 reads (all it computes), in a buffer of its own. The others share by
        // liveness: pool1 and pool2 are live together (conv2 and pool2 run in one call), Dense 128 and 10 take pool1's floats
        // (10 padded to a cache line). The patches, the poolings' winners, the gradients and the patch gradients are training's.
        int values = 10 * 10 * 64 + 13 * 13 * 32 + 5 * 5 * 64;
        Assert.Equal(SmallCnn.ParameterCount * sizeof(float) + (long)Capacity * values * sizeof(float) + copy.PackedBytes, copy.Bytes);
    }

    [Fact]
    public void Recurrent_and_attention_copies_keep_no_gradients_in_their_workspaces()
    {
        // LSTM 4 units, then Dense 3: a buffer each (shared by liveness, each would start a cache line a sample: 32 floats
        // against 7). The workspace: what the forward pass writes, none of backward's gradients, and no room to pack the
        // recurrent kernel into (the copy packed it once: 512 bytes of panels at this capacity, whose 64 rows read them).
        var lstm = new LstmClassifier(Capacity, seed: 18);
        var lstmCopy = Assert.IsType<InferenceCopy>(lstm.ForInference());
        long lstmWorkspace = new RecurrentWorkspace(RecurrentCell.Lstm, Capacity, steps: 5, features: 3, units: 4, forTraining: false, recurrentKernelPackedAhead: true).Bytes;
        Assert.Equal(512, new RecurrentWorkspace(RecurrentCell.Lstm, Capacity, steps: 5, features: 3, units: 4, forTraining: false).Bytes - lstmWorkspace);
        Assert.Equal((LstmClassifier.ParameterCount + Capacity * (4 + 3)) * sizeof(float) + lstmWorkspace + lstmCopy.PackedBytes, lstmCopy.Bytes);

        // Attention (5 steps of 4, 2 heads of 3), the residual sum, LayerNormalization, Flatten (its input's floats), Dense 3:
        // 20, 20, 20 and 3 floats a sample, a buffer each (by liveness, two pairs live together, two lines of 32 floats, which
        // saves nothing); the normalization's mean and inverse deviation of each of the 5 rows, which its forward kernel
        // writes. The workspace: projections and context, and one pair's scores a worker.
        var attention = new SelfAttentionBlock(Capacity, seed: 19);
        var attentionCopy = Assert.IsType<InferenceCopy>(attention.ForInference());
        long attentionWorkspace = (Capacity * (3 * 5 * 2 * 3 + 5 * 2 * 3) + 2 * 5 * 5) * sizeof(float);
        Assert.Equal((SelfAttentionBlock.ParameterCount + Capacity * (63 + 2 * 5)) * sizeof(float) + attentionWorkspace + attentionCopy.PackedBytes, attentionCopy.Bytes);
    }

    /// <summary>The gradients MnistClassifier's tensors share by liveness, a sample: 256 + 256 (hidden1 and drop1, live together).</summary>
    private const int MnistGradientFloats = 512;

    /// <summary>Every model this assembly generates, created at a small capacity; its inputs are small whole numbers (valid tokens too).</summary>
    public static TheoryData<string> GeneratedModels() => new(typeof(InferenceCopyTests).Assembly.GetTypes()
        .Where(t => typeof(IModel).IsAssignableFrom(t) && !t.IsAbstract && t.GetConstructor(new[] { typeof(int), typeof(int) }) is not null)
        .Select(t => t.FullName!).Order());

    [Theory, MemberData(nameof(GeneratedModels))]
    public void Every_generated_models_copy_predicts_what_the_model_predicts(string typeName)
    {
        var type = typeof(InferenceCopyTests).Assembly.GetType(typeName)!;
        var model = (IModel)Activator.CreateInstance(type, 5, 21)!;
        var copy = model.ForInference();
        foreach (int batch in new[] { 1, 5 })
        {
            var random = new Random(batch);
            var inputs = Enumerable.Range(0, batch * model.InputSize).Select(_ => (float)random.Next(4)).ToArray();
            Assert.Equal(Predict(model, inputs), Predict(copy, inputs));
        }
    }

    [Fact]
    public void A_bad_batch_is_refused_by_the_copy_as_by_the_model()
    {
        var model = new MnistClassifier(Capacity, seed: 15);
        var copy = model.ForInference();
        var fromModel = Assert.Throws<ArgumentException>(() => model.Predict(new float[783], new float[10]));
        var fromCopy = Assert.Throws<ArgumentException>(() => copy.Predict(new float[783], new float[10]));
        Assert.Equal(fromModel.Message, fromCopy.Message);
        Assert.Contains("MnistClassifier", fromCopy.Message);
        Assert.Throws<ArgumentException>(() => copy.Predict(new float[(Capacity + 1) * 784], new float[(Capacity + 1) * 10]));
    }
}
