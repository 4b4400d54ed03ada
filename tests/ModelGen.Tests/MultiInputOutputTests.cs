using ModelGen.Training;

namespace ModelGen.Tests;

public class MultiInputOutputTests
{
    [Fact]
    public void Seed_models_have_the_keras_parameter_counts()
    {
        Assert.Equal(6_464, Siamese.ParameterCount);
        Assert.Equal(12_928, SiameseSeparate.ParameterCount);
        Assert.Equal(124, MultiOutput.ParameterCount);
        Assert.Equal(2_466, PowerPlant.ParameterCount);
    }

    [Fact]
    public void Inputs_and_outputs_are_described_by_name_with_their_losses()
    {
        var plant = new PowerPlant();
        Assert.Equal(new[] { "conditions" }, plant.Inputs.Select(i => i.Name));
        Assert.Equal(new[] { "energy_output", "vacuum_output" }, plant.Outputs.Select(o => o.Name));
        Assert.Equal(new[] { 0.7f, 0.3f }, plant.Outputs.Select(o => o.LossWeight));
        var multi = new MultiOutput();
        Assert.Equal(new[] { "value", "label" }, multi.Outputs.Select(o => o.Name)); // named tuple elements
        Assert.Equal(new[] { Loss.MeanSquaredError, Loss.SparseCategoricalCrossentropy }, multi.Outputs.Select(o => o.Loss));
        Assert.Equal(1 + 1, MultiOutput.TargetSize); // one value, one class index
        Assert.Equal(new[] { "left", "right" }, new Siamese().Inputs.Select(i => i.Name));
        Assert.Equal(200, Siamese.InputSize);
    }

    [Fact]
    public void Typed_and_packed_predict_agree()
    {
        var model = new Siamese(maxBatchSize: 3, seed: 1);
        var random = new Random(1);
        var left = Enumerable.Range(0, 3 * 100).Select(_ => (float)random.NextDouble()).ToArray();
        var right = Enumerable.Range(0, 3 * 100).Select(_ => (float)random.NextDouble()).ToArray();
        var typed = new float[3 * 128];
        model.Predict(left, right, typed);

        var packed = new float[3 * 200];
        for (int s = 0; s < 3; s++)
        {
            left.AsSpan(s * 100, 100).CopyTo(packed.AsSpan(s * 200));
            right.AsSpan(s * 100, 100).CopyTo(packed.AsSpan(s * 200 + 100));
        }
        Assert.Equal(typed, model.Predict(packed));
        // The shared layer encodes both sides with the same weights: equal inputs give equal halves.
        model.Predict(left, left, typed);
        for (int s = 0; s < 3; s++) Assert.Equal(typed.AsSpan(s * 128, 64).ToArray(), typed.AsSpan(s * 128 + 64, 64).ToArray());
    }

    [Fact]
    public void Weighted_loss_is_the_keras_sum_and_each_output_is_reported()
    {
        var model = new PowerPlant(maxBatchSize: 16, seed: 2);
        var random = new Random(3);
        var x = Enumerable.Range(0, 16 * 4).Select(_ => (float)random.NextDouble()).ToArray();
        var y = Enumerable.Range(0, 16 * 2).Select(_ => (float)random.NextDouble()).ToArray();
        var evaluation = model.Evaluate(x, y);
        float energy = evaluation.Metrics["energy_output_loss"], vacuum = evaluation.Metrics["vacuum_output_loss"];
        Assert.Equal(0.7f * energy + 0.3f * vacuum, evaluation.Loss, tolerance: 5e-6);
        Assert.True(float.IsNaN(evaluation.Accuracy)); // Keras reports no single accuracy for several outputs
        // TrainStep's loss is the same weighted sum (no dropout here).
        Assert.Equal(evaluation.Loss, model.TrainStep(x, y, new Sgd(0f)), tolerance: 5e-6);
    }

    [Fact]
    public void Power_plant_trains_both_outputs()
    {
        // energy and vacuum as smooth functions of four conditions
        var random = new Random(7);
        int n = 512;
        var x = new float[n * 4];
        var y = new float[n * 2];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < 4; j++) x[i * 4 + j] = (float)(random.NextDouble() * 2 - 1);
            y[i * 2] = 0.5f * x[i * 4] - 0.3f * x[i * 4 + 1] * x[i * 4 + 2] + 0.2f;
            y[i * 2 + 1] = MathF.Sin(x[i * 4 + 3]) * 0.5f + 0.1f * x[i * 4];
        }
        var model = new PowerPlant(maxBatchSize: 32, seed: 4);
        var history = model.Fit(x, y, new Adam(0.005f), epochs: 40, batchSize: 32, validationSplit: 0.2, verbose: Verbosity.Silent);
        foreach (var metric in new[] { "energy_output_loss", "vacuum_output_loss", "val_energy_output_loss", "val_vacuum_output_loss" })
        {
            var values = history.Metrics[metric];
            Assert.True(values[^1] < values[0] / 5, $"{metric}: {values[0]} -> {values[^1]}");
        }
    }

    [Fact]
    public void Multi_output_classifier_and_regressor_train_together()
    {
        var random = new Random(11);
        int n = 300;
        var x = Enumerable.Range(0, n * 10).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var y = new float[n * 2];
        for (int i = 0; i < n; i++)
        {
            y[i * 2] = x[i * 10] + x[i * 10 + 1];                                  // value
            y[i * 2 + 1] = x[i * 10 + 2] > 0.3f ? 2 : x[i * 10 + 2] < -0.3f ? 0 : 1; // label
        }
        var model = new MultiOutput(maxBatchSize: 32, seed: 5);
        var history = model.Fit(x, y, new Adam(0.01f), epochs: 60, batchSize: 32, verbose: Verbosity.Silent);
        Assert.True(history.Metrics["label_accuracy"][^1] > 0.85, $"label accuracy {history.Metrics["label_accuracy"][^1]}");
        Assert.True(history.Metrics["value_loss"][^1] < 0.05, $"value loss {history.Metrics["value_loss"][^1]}");
    }

    [Fact]
    public void Typed_train_step_checks_every_buffer_against_the_batch()
    {
        var model = new PowerPlant(maxBatchSize: 4);
        var error = Assert.Throws<ArgumentException>(() => model.TrainStep(new float[4 * 4], new float[4], new float[3], new Sgd()));
        Assert.Contains("'vacuum_output'", error.Message);
        Assert.Contains("(4, 1)", error.Message);
    }

    [Fact]
    public void Fit_evaluate_and_predict_take_tensors_by_name()
    {
        var random = new Random(13);
        int n = 64;
        var left = Enumerable.Range(0, n * 100).Select(_ => (float)random.NextDouble()).ToArray();
        var right = Enumerable.Range(0, n * 100).Select(_ => (float)random.NextDouble()).ToArray();
        var model = new Siamese(maxBatchSize: 16, seed: 2);
        var inputs = new Dictionary<string, float[]> { ["left"] = left, ["right"] = right };
        var outputs = model.Predict(inputs);
        var expected = new float[n * 128];
        model.Predict(left.AsSpan(0, 16 * 100), right.AsSpan(0, 16 * 100), expected.AsSpan(0, 16 * 128));
        Assert.Equal(expected.Take(16 * 128), outputs["concatenate"].Take(16 * 128));

        var targets = new Dictionary<string, float[]> { ["concatenate"] = outputs["concatenate"].Select(v => v * 0.5f).ToArray() };
        float before = model.Evaluate(inputs, targets).Loss;
        model.Fit(inputs, targets, new Adam(0.01f), epochs: 5, batchSize: 16, verbose: Verbosity.Silent);
        Assert.True(model.Evaluate(inputs, targets).Loss < before);

        var error = Assert.Throws<ArgumentException>(() => model.Predict(new Dictionary<string, float[]> { ["left"] = left }));
        Assert.Contains("no input given for 'right' (None, 100)", error.Message);
        error = Assert.Throws<ArgumentException>(() => model.Predict(new Dictionary<string, float[]> { ["left"] = left, ["right"] = right, ["extra"] = left }));
        Assert.Contains("has no input named 'extra'", error.Message);
    }
}

public class ConcatenateAxisTests
{
    [Fact]
    public void Concatenation_along_channels_and_rows_matches_a_hand_written_layout()
    {
        const int batch = 2;
        var random = new Random(21);
        float[] Fill(int n) => Enumerable.Range(0, n).Select(_ => (float)random.NextDouble()).ToArray();
        float[] a = Fill(batch * 12), b = Fill(batch * 6), c = Fill(batch * 9);
        var output = new float[batch * 27];
        new ImageConcat(maxBatchSize: batch).Predict(a, b, c, output);

        for (int s = 0; s < batch; s++)
            for (int h = 0; h < 3; h++)
                for (int w = 0; w < 3; w++)
                    for (int ch = 0; ch < 3; ch++)
                    {
                        float expected = h < 2
                            ? (ch < 2 ? a[s * 12 + (h * 3 + w) * 2 + ch] : b[s * 6 + h * 3 + w])
                            : c[s * 9 + w * 3 + ch];
                        Assert.Equal(expected, output[s * 27 + (h * 3 + w) * 3 + ch]);
                    }
        Assert.Equal(27, ImageConcat.OutputSize);
    }
}
