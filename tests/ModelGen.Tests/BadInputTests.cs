using ModelGen.Training;

namespace ModelGen.Tests;

/// <summary>Bad input gets a clear error naming the model, the layer and the expected shape, and never changes the weights.</summary>
public class BadInputTests
{
    private static (MnistClassifier Model, float[] X, float[] Y) Mnist(int batch = 4)
    {
        var model = new MnistClassifier(maxBatchSize: 8, seed: 1);
        var x = Enumerable.Range(0, batch * 784).Select(i => (float)(i % 13) / 13).ToArray();
        var y = Enumerable.Range(0, batch).Select(i => (float)(i % 10)).ToArray();
        return (model, x, y);
    }

    [Fact]
    public void Input_that_is_not_whole_samples_names_the_input_layer_and_shape()
    {
        var (model, x, _) = Mnist();
        var error = Assert.Throws<ArgumentException>(() => model.Predict(x.AsSpan(0, 700), new float[10]));
        Assert.Contains("MnistClassifier", error.Message);
        Assert.Contains("'image'", error.Message);
        Assert.Contains("(batch, 784)", error.Message);
    }

    [Fact]
    public void Batch_larger_than_the_capacity_is_rejected()
    {
        var (model, _, _) = Mnist();
        var error = Assert.Throws<ArgumentException>(() => model.Predict(new float[9 * 784], new float[90]));
        Assert.Contains("MnistClassifier", error.Message);
        Assert.Contains("(8, 784)", error.Message);
        Assert.Contains("maxBatchSize", error.Message);
    }

    [Fact]
    public void Wrong_output_and_target_lengths_name_the_output_layer()
    {
        var (model, x, y) = Mnist();
        var weights = model.Parameters.ToArray();
        var output = Assert.Throws<ArgumentException>(() => model.Predict(x, new float[39]));
        Assert.Contains("'predictions'", output.Message);
        Assert.Contains("(4, 10)", output.Message);
        var targets = Assert.Throws<ArgumentException>(() => model.TrainStep(x, y.AsSpan(0, 3), new Sgd()));
        Assert.Contains("'predictions'", targets.Message);
        Assert.Contains("(4, 1)", targets.Message);
        Assert.Equal(weights, model.Parameters);
    }

    [Fact]
    public void Label_outside_the_class_range_leaves_the_weights_unchanged()
    {
        var (model, x, y) = Mnist();
        var optimizer = new Adam();
        var weights = model.Parameters.ToArray();
        y[2] = 10;
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => model.TrainStep(x, y, optimizer));
        Assert.Contains("MnistClassifier", error.Message);
        Assert.Contains("'predictions'", error.Message);
        Assert.Equal(weights, model.Parameters);
        Assert.Equal(0, optimizer.Iterations);
    }

    [Fact]
    public void A_non_finite_loss_is_refused_before_the_update()
    {
        var model = new ParityRegressor(maxBatchSize: 2, seed: 1);
        var weights = model.Parameters.ToArray();
        var x = new float[] { 1, 2, float.NaN, 4, 5, 1, 2, 3, 4, 5 };
        var error = Assert.Throws<ArithmeticException>(() => model.TrainStep(x, new float[6], new Sgd(0.1f)));
        Assert.Contains("ParityRegressor", error.Message);
        Assert.Equal(weights, model.Parameters);
    }

    [Fact]
    public void Fit_rejects_a_batch_size_above_capacity_and_mismatched_targets()
    {
        var (model, x, y) = Mnist();
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Fit(x, y, new Sgd(), epochs: 1, batchSize: 9, verbose: Verbosity.Silent));
        var error = Assert.Throws<ArgumentException>(() => model.Fit(x, y.AsSpan(0, 3).ToArray(), new Sgd(), epochs: 1, verbose: Verbosity.Silent));
        Assert.Contains("'predictions'", error.Message);
    }

    [Fact]
    public void Constructor_rejects_a_non_positive_capacity()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new MnistClassifier(maxBatchSize: 0));
        Assert.Contains("MnistClassifier", error.Message);
    }
}
