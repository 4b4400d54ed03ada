using ModelGen.Kernels;
using ModelGen.Training;

namespace ModelGen.Tests;

/// <summary>BatchNormalization's modes, moving statistics and counts; frozen layers and the two-phase fine-tuning flow.</summary>
public class NormalizationTests
{
    /// <summary>
    /// The Features sub-model makes its residual Adds in its convolutions' calls, as the model does: its pooled features,
    /// through the head's Dense and softmax, give Predict's outputs bit for bit (Predict itself meets PyTorch: ParityTests).
    /// </summary>
    [Fact]
    public void A_sub_model_makes_its_residual_adds_as_the_model_does()
    {
        var model = new ResidualCnnParity(maxBatchSize: 8, seed: 5);
        // Moving statistics away from their initial values, so that the normalizations at inference are no near-identity.
        foreach (var parameter in model.Layers.SelectMany(l => l.Parameters))
        {
            var values = parameter.Values;
            for (int i = 0; i < values.Length; i++) values[i] += 0.05f * ((i * 7 + parameter.Length) % 13 - 6);
        }
        var random = new Random(6);
        var images = Enumerable.Range(0, 8 * 72).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var outputs = new float[8 * 3];
        model.Predict(images, outputs);
        var features = new float[8 * 8];
        model.Features(images, features);
        var classes = new float[8 * 3];
        Gemm.Multiply(features, model.head.Kernel.Values, classes, 8, 8, 3, bias: model.head.Bias!.Values);
        Activations.Forward(Activation.Softmax, classes, 8, 3);
        Assert.Equal(outputs.Select(BitConverter.SingleToInt32Bits), classes.Select(BitConverter.SingleToInt32Bits));
        Assert.Contains(features, v => v < 0); // the second Add has no ReLU
    }

    [Fact]
    public void Simple_classifier_counts_trainable_and_moving_statistics_as_keras()
    {
        // Convs (k*k*in + 1)*out: 3*3*3*32+32 = 896, 3*3*32*32+32 = 9,248 (twice), 3*3*32*64+64 = 18,496, 3*3*64*64+64 = 36,928,
        // the 1x1 projection 32*64+64 = 2,112; BatchNormalization 4 per channel (32, 32, 32, 64, 64 channels): 896; Dense 64*10+10 = 650.
        Assert.Equal(78_474, SimpleClassifier.ParameterCount);
        Assert.Equal(448, SimpleClassifier.NonTrainableParameterCount); // moving mean and variance: 2 * (32 + 32 + 32 + 64 + 64)
        Assert.Equal(78_026, SimpleClassifier.TrainableParameterCount);
        string summary = new SimpleClassifier(1).Summary();
        Assert.Contains("│ stemNorm (BatchNormalization)    │ (None, 32, 32, 32)         │           128 │ stem[0][0]", summary);
        Assert.Contains(" Total params: 78,474 (306.54 KB)\n Trainable params: 78,026 (304.79 KB)\n Non-trainable params: 448 (1.75 KB)", summary);
    }

    [Fact]
    public void Weights_files_carry_the_moving_statistics_under_keras_names()
    {
        var model = new NormalizedCnn(8, seed: 1);
        var x = Inputs(8, NormalizedCnn.InputSize, seed: 2);
        var y = Enumerable.Range(0, 8).Select(i => (float)(i % 3)).ToArray();
        var adam = new Adam(0.01f);
        for (int step = 0; step < 5; step++) model.TrainStep(x, y, adam);
        Assert.Equal(new[] { "bn1.gamma", "bn1.beta", "bn1.moving_mean", "bn1.moving_variance" }, model.bn1.Parameters.Select(p => p.Name));
        Assert.False(model.bn1.MovingMean.Trainable);
        Assert.NotEqual(0f, model.bn1.MovingMean.Values[0]); // the steps moved it

        string path = Path.Combine(Path.GetTempPath(), $"normalized-{Guid.NewGuid():N}.safetensors");
        try
        {
            model.SaveWeights(path);
            var copy = new NormalizedCnn(8, seed: 99);
            copy.LoadWeights(path);
            Assert.Equal(model.Parameters, copy.Parameters);
            Assert.Equal(Predict(model, x, 8), Predict(copy, x, 8));
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Inference_normalises_each_sample_alone_with_the_moving_statistics()
    {
        var model = new NormalizedMlp(6, seed: 3);
        var x = Inputs(6, NormalizedMlp.InputSize, seed: 4);
        var y = Enumerable.Range(0, 6).Select(i => (float)(i % 3)).ToArray();
        var sgd = new Sgd(0.1f);
        for (int step = 0; step < 3; step++) model.TrainStep(x, y, sgd);

        // Training mode couples the samples of a batch (its statistics); inference does not: a sample's prediction is the
        // same alone as in the batch, and it is exactly the moving statistics' affine map.
        var batch = Predict(model, x, 6);
        for (int i = 0; i < 6; i++)
        {
            var alone = Predict(model, x.AsSpan(i * NormalizedMlp.InputSize, NormalizedMlp.InputSize).ToArray(), 1);
            Assert.Equal(batch.AsSpan(i * 3, 3).ToArray(), alone);
        }
        var hidden = new double[8];
        for (int j = 0; j < 8; j++)
        {
            double z = model.hidden.Bias!.Values[j];
            for (int k = 0; k < 6; k++) z += x[k] * model.hidden.Kernel.Values[k * 8 + j];
            double normalised = (z - model.norm.MovingMean.Values[j]) / Math.Sqrt(model.norm.MovingVariance.Values[j] + 1e-3) * model.norm.Gamma.Values[j] + model.norm.Beta.Values[j];
            hidden[j] = Math.Tanh(normalised);
        }
        var logits = Enumerable.Range(0, 3).Select(c => model.head.Bias!.Values[c] + Enumerable.Range(0, 8).Sum(j => hidden[j] * model.head.Kernel.Values[j * 3 + c])).ToArray();
        var expected = logits.Select(l => Math.Exp(l - logits.Max())).ToArray();
        for (int c = 0; c < 3; c++) Assert.Equal(expected[c] / expected.Sum(), batch[c], tolerance: 5e-6);
    }

    [Fact]
    public void A_failed_step_leaves_the_moving_statistics_as_they_were()
    {
        var model = new NormalizedMlp(4, seed: 5);
        var x = Inputs(4, NormalizedMlp.InputSize, seed: 6);
        x[3] = float.NaN;
        var before = model.Parameters.ToArray();
        Assert.Throws<ArithmeticException>(() => model.TrainStep(x, new float[] { 0, 1, 2, 0 }, new Sgd(0.1f)));
        Assert.Equal(before, model.Parameters);
    }

    [Fact]
    public void Frozen_layers_do_not_move_and_their_neighbours_do()
    {
        var model = new FrozenMiddle(8, seed: 7);
        Assert.False(model.middle.Trainable);
        Assert.All(model.middle.Parameters.Concat(model.norm.Parameters), p => Assert.False(p.Trainable));
        Assert.Equal(6 * 5 + 6 + 6 * 2 + 2, FrozenMiddle.TrainableParameterCount);
        var frozen = model.middle.Parameters.Concat(model.norm.Parameters).Select(p => p.Values.ToArray()).ToList();
        var first = model.first.Kernel.Values.ToArray();
        var last = model.last.Kernel.Values.ToArray();

        var x = Inputs(8, 5, seed: 8);
        var y = Inputs(8, 2, seed: 9);
        var adam = new Adam(0.05f);
        float initial = model.TrainStep(x, y, adam), loss = initial;
        for (int step = 0; step < 30; step++) loss = model.TrainStep(x, y, adam);

        Assert.True(loss < initial, $"loss {initial} -> {loss}");
        Assert.Equal(frozen, model.middle.Parameters.Concat(model.norm.Parameters).Select(p => p.Values.ToArray()).ToList());
        Assert.NotEqual(first, model.first.Kernel.Values.ToArray());
        Assert.NotEqual(last, model.last.Kernel.Values.ToArray());
    }

    [Fact]
    public void Two_phase_fine_tuning_trains_the_head_then_the_top_of_the_backbone()
    {
        string[] backbone = { "conv1", "norm1", "conv2" };
        var x = Inputs(16, 72, seed: 10);
        var pretrained = new TransferPretrained(16, seed: 11);
        var adam = new Adam(0.01f);
        var pretrainingLabels = Enumerable.Range(0, 16).Select(i => (float)(i % 5)).ToArray();
        for (int step = 0; step < 10; step++) pretrained.TrainStep(x, pretrainingLabels, adam);

        // Phase 1: the backbone's weights (and moving statistics) copied in and frozen; only the new head learns.
        var labels = Enumerable.Range(0, 16).Select(i => (float)(x[i * 72] > 0 ? 1 : i % 2 == 0 ? 0 : 2)).ToArray();
        var headOnly = new TransferHeadOnly(16, seed: 12);
        headOnly.CopyWeightsFrom(pretrained, backbone);
        Assert.Equal(3 * 6 + 3, TransferHeadOnly.TrainableParameterCount);
        var phase1 = new Adam(0.05f);
        float start = headOnly.TrainStep(x, labels, phase1), phase1Loss = start;
        for (int step = 0; step < 40; step++) phase1Loss = headOnly.TrainStep(x, labels, phase1);
        Assert.True(phase1Loss < start, $"phase 1: {start} -> {phase1Loss}");
        foreach (var name in backbone) AssertSameWeights(pretrained, headOnly, name);

        // Phase 2: conv2 unfrozen, a fresh optimizer (state reset) with a lower learning rate; conv1 and norm1 stay frozen.
        var fineTuned = new TransferFineTuned(16, seed: 13);
        fineTuned.CopyWeightsFrom(headOnly, "conv1", "norm1", "conv2", "head");
        Assert.Equal(TransferHeadOnly.TrainableParameterCount + 3 * 3 * 4 * 6 + 6, TransferFineTuned.TrainableParameterCount);
        var conv2 = fineTuned.conv2.Kernel.Values.ToArray();
        var phase2 = new Adam(0.005f);
        float phase2Start = fineTuned.TrainStep(x, labels, phase2), phase2Loss = phase2Start;
        // The same function as phase 1 ended with: the frozen BatchNormalization runs in inference mode in training and in Evaluate.
        Assert.Equal(headOnly.Evaluate(x, labels).Loss, phase2Start, tolerance: 5e-6);
        for (int step = 0; step < 40; step++) phase2Loss = fineTuned.TrainStep(x, labels, phase2);
        Assert.True(phase2Loss < phase2Start, $"phase 2: {phase2Start} -> {phase2Loss}");
        AssertSameWeights(pretrained, fineTuned, "conv1");
        AssertSameWeights(pretrained, fineTuned, "norm1");
        Assert.NotEqual(conv2, fineTuned.conv2.Kernel.Values.ToArray());
    }

    [Fact]
    public void Copying_weights_checks_every_tensor_before_it_copies_any()
    {
        var target = new TransferHeadOnly(1, seed: 1);
        var before = target.Parameters.ToArray();
        var error = Assert.Throws<ArgumentException>(() => target.CopyWeightsFrom(new TransferPretrained(1, seed: 2), "conv1", "head"));
        Assert.Contains("TransferPretrained has no layer 'head'", error.Message);
        Assert.Equal(before, target.Parameters);
    }

    private static void AssertSameWeights(IModel expected, IModel actual, string layer)
    {
        var from = expected.Layers.Single(l => l.Name == layer).Parameters;
        var to = actual.Layers.Single(l => l.Name == layer).Parameters;
        Assert.Equal(from.Select(p => p.Values.ToArray()), to.Select(p => p.Values.ToArray()));
    }

    /// <summary>
    /// At inference a convolution applies the BatchNormalization after it to its outputs as it computes them: the prediction
    /// is the two layers' kernels one after the other, bit for bit, with the trained gamma, beta and moving statistics, and
    /// the layers' definition in double.
    /// </summary>
    [Fact]
    public void A_convolution_applies_its_normalization_at_inference_with_the_bits_of_the_two_layers()
    {
        const int batch = 4, filters = 20;
        var model = new NormalizedConvolution(batch, seed: 10);
        var window = new Window(5, 5, 3, 3, 3, 1, 1, Same: true);
        var (x, predicted, gamma, beta, mean, variance) = PredictionOfTheTwoLayers(model, model.norm, batch, seed: 11, filters, (input, convolved) =>
            Convolution.Forward(input, Span<float>.Empty, model.conv.Kernel.Values, convolved, window, filters, batch, model.conv.Bias!.Values, relu: true, keepPatches: false));
        var kernel = model.conv.Kernel.Values.ToArray();
        AssertTheLayersDefinition(predicted, batch, filters, model.conv.Bias!.Values.ToArray(), relu: true, gamma, beta, mean, variance,
            (pixel, cell, f) => Enumerable.Range(0, 3).Sum(c => (double)x[pixel * 3 + c] * kernel[(cell * 3 + c) * filters + f]));
    }

    /// <summary>
    /// A DepthwiseConv2D applies the BatchNormalization after it the same way: the prediction is the two layers' kernels one
    /// after the other, bit for bit, and the layers' definition in double.
    /// </summary>
    [Fact]
    public void A_depthwise_convolution_applies_its_normalization_at_inference_with_the_bits_of_the_two_layers()
    {
        const int batch = 4, channels = 6, multiplier = 3, outputs = channels * multiplier;
        var model = new NormalizedDepthwise(batch, seed: 20);
        var window = new Window(5, 5, channels, 3, 3, 1, 1, Same: true);
        var (x, predicted, gamma, beta, mean, variance) = PredictionOfTheTwoLayers(model, model.norm, batch, seed: 21, outputs, (input, convolved) =>
            DepthwiseConvolution.Forward(input, model.depthwise.DepthwiseKernel.Values, model.depthwise.Bias!.Values, convolved, window, multiplier, batch));
        var kernel = model.depthwise.DepthwiseKernel.Values.ToArray();
        AssertTheLayersDefinition(predicted, batch, outputs, model.depthwise.Bias!.Values.ToArray(), relu: false, gamma, beta, mean, variance,
            (pixel, cell, o) => (double)x[pixel * channels + o / multiplier] * kernel[cell * outputs + o]);
    }

    /// <summary>
    /// The prediction of a 3x3 'same' convolution over 5x5 images and its BatchNormalization, against their definition in
    /// double: each output bias + Σ over the window's cells inside the image of <paramref name="product"/>(input pixel, cell,
    /// output channel), its ReLU where <paramref name="relu"/>, then (value - mean) / sqrt(variance + eps)·gamma + beta.
    /// </summary>
    private static void AssertTheLayersDefinition(float[] predicted, int batch, int outputs, float[] bias, bool relu, float[] gamma, float[] beta,
        float[] mean, float[] variance, Func<int, int, int, double> product)
    {
        for (int n = 0, at = 0; n < batch; n++)
            for (int oy = 0; oy < 5; oy++)
                for (int ox = 0; ox < 5; ox++)
                    for (int o = 0; o < outputs; o++, at++)
                    {
                        double sum = bias[o];
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++)
                            {
                                int iy = oy + ky - 1, ix = ox + kx - 1;
                                if (iy >= 0 && iy < 5 && ix >= 0 && ix < 5) sum += product((n * 5 + iy) * 5 + ix, ky * 3 + kx, o);
                            }
                        double normalised = ((relu ? Math.Max(sum, 0) : sum) - mean[o]) / Math.Sqrt(variance[o] + 1e-3) * gamma[o] + beta[o];
                        Assert.Equal(normalised, predicted[at], tolerance: 2e-5);
                    }
    }

    /// <summary>A frozen BatchNormalization runs after its convolution in a training step and inside it at inference: the same outputs, bit for bit.</summary>
    [Fact]
    public void A_frozen_normalization_gives_a_training_step_the_outputs_of_a_prediction()
    {
        var model = new FrozenBackbone(6, seed: 13);
        var x = Inputs(6, FrozenBackbone.InputSize, seed: 14);
        var y = Enumerable.Range(0, 6).Select(i => (float)(i % 3)).ToArray();
        var adam = new Adam(0.05f);
        for (int step = 0; step < 2; step++)
        {
            var predicted = Predict(model, x, 6);
            model.TrainStep(x, y, adam);
            Assert.Equal(predicted.Select(BitConverter.SingleToInt32Bits), model.LastTrainingOutputs.ToArray().Select(BitConverter.SingleToInt32Bits));
        }
    }

    /// <summary>
    /// A model of a convolution, its BatchNormalization and Flatten, trained three steps (so that gamma, beta and the moving
    /// statistics all move), then its prediction: asserted to be, bit for bit, <paramref name="convolve"/>'s outputs
    /// normalized by BatchNorm.InferenceForward; returned with its inputs and the normalization's operands.
    /// </summary>
    private static (float[] X, float[] Predicted, float[] Gamma, float[] Beta, float[] Mean, float[] Variance) PredictionOfTheTwoLayers(IModel model,
        BatchNormalization norm, int batch, int seed, int channels, Action<float[], float[]> convolve)
    {
        var x = Inputs(batch, model.InputSize, seed);
        var y = Inputs(batch, model.OutputSize, seed + 1);
        var sgd = new Sgd(0.1f);
        for (int step = 0; step < 3; step++) model.TrainStep(x, y, sgd);
        var (gamma, beta, mean, variance) = (norm.Gamma.Values.ToArray(), norm.Beta.Values.ToArray(), norm.MovingMean.Values.ToArray(), norm.MovingVariance.Values.ToArray());
        Assert.All(new[] { gamma.Select(g => g - 1f), beta, mean, variance.Select(v => v - 1f) }, values => Assert.Contains(values, v => v != 0f));

        var predicted = Predict(model, x, batch);
        var convolved = new float[predicted.Length];
        convolve(x, convolved);
        var twoLayers = new float[convolved.Length];
        BatchNorm.InferenceForward(convolved, twoLayers, gamma, beta, mean, variance, convolved.Length / channels, channels, 1e-3f);
        Assert.Equal(twoLayers.Select(BitConverter.SingleToInt32Bits), predicted.Select(BitConverter.SingleToInt32Bits));
        return (x, predicted, gamma, beta, mean, variance);
    }

    private static float[] Inputs(int batch, int size, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, batch * size).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static float[] Predict(IModel model, float[] x, int batch)
    {
        var outputs = new float[batch * model.OutputSize];
        model.Predict(x, outputs);
        return outputs;
    }
}
