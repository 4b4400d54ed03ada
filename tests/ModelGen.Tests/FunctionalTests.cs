using ModelGen.Training;

namespace ModelGen.Tests;

public class FunctionalTests
{
    [Fact]
    public void Seed_models_have_the_keras_parameter_counts()
    {
        Assert.Equal(8_970, ResidualMlp.ParameterCount);
        Assert.Equal(3_457, BinaryFunctional.ParameterCount);
        Assert.Equal(3_457, BinarySequential.ParameterCount);
        Assert.Equal(476_720, Autoencoder.ParameterCount);
        Assert.Equal(225_034, SmallCnn.ParameterCount);
        Assert.Equal(8_725, ImageAndMetadata.ParameterCount);
        Assert.Equal(6_098_492, Production.ParameterCount);
        Assert.Equal(new[] { "category", "price", "popularity" }, new Production(maxBatchSize: 1).Outputs.Select(o => o.Name));
        Assert.Contains("│ pool (GlobalAveragePooling2D) │ (None, 32)", new ImageAndMetadata(maxBatchSize: 1).Summary());
        Assert.Equal(new[] { 5, 5, 64 }, new SmallCnn().pool2.OutputShape);
        Assert.Contains("│ conv1 (Conv2D)                       │ (None, 26, 26, 32)          │             320 │", new SmallCnn().Summary());
    }

    [Fact]
    public void Sequential_and_functional_forms_give_identical_outputs_for_identical_weights()
    {
        var sequential = new BinarySequential(maxBatchSize: 8, seed: 1);
        var functional = new BinaryFunctional(maxBatchSize: 8, seed: 99);
        sequential.Parameters.CopyTo(functional.Parameters);
        var random = new Random(2);
        var x = Enumerable.Range(0, 8 * 20).Select(_ => (float)random.NextDouble()).ToArray();
        Assert.Equal(sequential.Predict(x), functional.Predict(x));

        var y = Enumerable.Range(0, 8).Select(i => (float)(i % 2)).ToArray();
        Assert.Equal(sequential.TrainStep(x, y, new Sgd(0.1f)), functional.TrainStep(x, y, new Sgd(0.1f)));
        Assert.Equal(sequential.Parameters, functional.Parameters);
    }

    [Fact]
    public void A_shared_layer_is_one_set_of_weights_counted_once()
    {
        var model = new EveryMerge();
        // stem 5*6+6, shared 6*6+6 (once, though applied three times), left 6*6+6, right 6*6+6, head 13*3+3
        Assert.Equal(36 + 42 + 42 + 42 + 42, EveryMerge.ParameterCount);
        Assert.Single(model.Layers, l => l.Name == "shared");
    }

    [Fact]
    public void Functional_summary_lists_inputs_merges_and_connections()
    {
        string summary = new ResidualMlp().Summary();
        Assert.Contains("Connected to", summary);
        Assert.Contains("│ x (InputLayer)", summary);
        Assert.Contains("│ add (Add)", summary);
        Assert.Contains("d2[0][0], x[0][0]", summary);
        Assert.Contains("│ relu (Activation)", summary);
        Assert.Contains(" Total params: 8,970 (35.04 KB)", summary);

        string shared = new EveryMerge().Summary();
        Assert.Contains("stem[0][0], shared[0][0], right[0][0]", shared); // one row, three calls
    }

    [Fact]
    public void Residual_model_trains_on_a_learnable_task()
    {
        var random = new Random(5);
        int n = 256;
        var x = Enumerable.Range(0, n * 64).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        // class = which of the first ten features is largest
        var y = Enumerable.Range(0, n).Select(i => (float)Metrics.ArgMax(x.AsSpan(i * 64, 10))).ToArray();
        var model = new ResidualMlp(maxBatchSize: 32, seed: 3);
        var history = model.Fit(x, y, new Adam(0.003f), epochs: 40, batchSize: 32, verbose: Verbosity.Silent);
        Assert.True(history.Loss[^1] < history.Loss[0] / 3, $"loss {history.Loss[0]} -> {history.Loss[^1]}");
        Assert.True(history.Accuracy[^1] > 0.9, $"accuracy {history.Accuracy[^1]}");
    }
}

public class SubModelTests
{
    [Fact]
    public void Encoder_sub_model_counts_its_share_of_the_weights()
    {
        Assert.Equal(237_984, Autoencoder.EncodeParameterCount);
        Assert.Equal(476_720, Autoencoder.ParameterCount);
    }

    [Fact]
    public void Encoder_reads_the_autoencoders_weights_so_training_one_updates_the_other()
    {
        var model = new Autoencoder(maxBatchSize: 4, seed: 1);
        var random = new Random(2);
        var images = Enumerable.Range(0, 4 * 784).Select(_ => (float)random.NextDouble()).ToArray();
        var latent = new float[4 * 32];
        model.Encode(images, latent);

        // Independently: the encoder is relu(relu(relu(x W1 + b1) W2 + b2) W3 + b3) on the model's weights.
        var expected = Dense(Dense(Dense(images, 4, model.encode1), 4, model.encode2), 4, model.code);
        AssertClose(expected, latent);

        model.TrainStep(images, images, new Adam(0.01f));
        var after = new float[4 * 32];
        model.Encode(images, after);
        Assert.NotEqual(latent, after);
        var expectedAfter = Dense(Dense(Dense(images, 4, model.encode1), 4, model.encode2), 4, model.code);
        AssertClose(expectedAfter, after);
    }

    [Fact]
    public void Encoder_at_batch_1_runs_its_first_two_layers_as_one_shared_pair_and_matches_the_reference()
    {
        // At batch 1, encode1 (784x256, 200K multiply-adds) and encode2 share the cores as one Gemm.MultiplyTwice: encode2
        // sums its depth in two slices, which must still agree with the double-precision reference.
        var model = new Autoencoder(maxBatchSize: 4, seed: 3);
        var random = new Random(4);
        var image = Enumerable.Range(0, 784).Select(_ => (float)random.NextDouble()).ToArray();
        var latent = new float[32];
        model.Encode(image, latent);
        AssertClose(Dense(Dense(Dense(image, 1, model.encode1), 1, model.encode2), 1, model.code), latent);
    }

    /// <summary>1e-5 relative (to 1 for small values): float32 products of 784 terms against a double reference. Rounding both to
    /// 4 decimals, as this test first did, fails whenever a value sits on a rounding boundary.</summary>
    private static void AssertClose(float[] expected, float[] actual)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * Math.Max(1, Math.Abs(expected[i])), $"[{i}]: expected {expected[i]:R}, got {actual[i]:R}");
        }
    }

    private static float[] Dense(float[] x, int batch, ModelGen.Dense layer)
    {
        int inputs = layer.Kernel.Shape[0], units = layer.Units;
        var kernel = layer.Kernel.Values.ToArray();
        var bias = layer.Bias!.Values.ToArray();
        var y = new float[batch * units];
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < units; j++)
            {
                double sum = bias[j];
                for (int i = 0; i < inputs; i++) sum += (double)x[b * inputs + i] * kernel[i * units + j];
                y[b * units + j] = (float)Math.Max(sum, 0); // every encoder layer is relu
            }
        return y;
    }
}

public class SeedSummaryTests
{
    [Fact]
    public void Power_plant_and_autoencoder_summaries_carry_the_keras_numbers()
    {
        string plant = new PowerPlant().Summary();
        Assert.Contains("│ conditions (InputLayer)", plant);
        Assert.Contains("│ energy_output (Dense)         │ (None, 1)                  │            33 │ hidden2[0][0]", plant);
        Assert.Contains("│ vacuum_output (Dense)         │ (None, 1)                  │            33 │ hidden2[0][0]", plant);
        Assert.Contains(" Total params: 2,466 (9.63 KB)", plant);

        string autoencoder = new Autoencoder().Summary();
        Assert.Contains("│ code (Dense)                  │ (None, 32)                 │         4,128 │ encode2[0][0]", autoencoder);
        Assert.Contains(" Total params: 476,720 (1.82 MB)", autoencoder);

        string siamese = new Siamese().Summary();
        Assert.Contains("│ shared (Dense)                │ (None, 64)                 │         6,464 │ left[0][0], right[0][0]", siamese);
        Assert.Contains(" Total params: 6,464 (25.25 KB)", siamese);
        Assert.Contains(" Total params: 124 (496.00 B)", new MultiOutput().Summary());
    }
}
