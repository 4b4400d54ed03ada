using ModelGen.Kernels;
using ModelGen.Training;

namespace ModelGen.Tests;

/// <summary>The digits MLP's shape: 64 * 64 + 64 * 10 = 4,736 multiply-adds a sample, so a batch of 106 or more trains in two parts.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class PartedClassifier
{
    [Input(64)] public Input pixels;
    [Dense(64, Activation.Relu)] public Dense hidden;
    [Dense(10, Activation.Softmax)] public Dense digit;
}

/// <summary>
/// A residual block over each of 4 steps with a layer normalization, its mean squared error over every step's row:
/// 4 * (16 * 32 + 32 * 16 + 16 * 8) = 4,608 multiply-adds a sample, so a batch of 109 or more trains in two parts.
/// </summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class PartedSequences
{
    [Dense(32, Activation.Relu)] public Dense expand;
    [Dense(16)] public Dense project;
    [LayerNormalization] public LayerNormalization norm;
    [Dense(8, Activation.Tanh)] public Dense head;

    [Graph]
    Tensor Forward([Shape(4, 16)] Tensor steps) => head.Apply(norm.Apply(Ops.Add(project.Apply(expand.Apply(steps)), steps)));
}

/// <summary>The digits MLP's shape with a dropout between its layers: a batch of 106 or more trains in two parts.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class DroppedClassifier
{
    [Input(64)] public Input pixels;
    [Dense(64, Activation.Relu)] public Dense hidden;
    [Dropout(0.25)] public Dropout drop;
    [Dense(10, Activation.Softmax)] public Dense digit;
}

/// <summary>
/// One row's work (720 * 720 + 720 * 10 = 525,600 multiply-adds) is that of two parts, and two rows' largest product
/// (1,036,800) is the matrix kernel's to share: no batch of this model trains in parts, not even the batch of one row.
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class WideClassifier
{
    [Input(720)] public Input features;
    [Dense(720, Activation.Relu)] public Dense hidden;
    [Dense(10, Activation.Softmax)] public Dense label;
}

/// <summary>
/// A training step in two parts of its batch (<see cref="BatchParts"/>), the model and its replica each taking half, computes
/// what the two halves' own steps compute, each weighted by its share, and the same on one thread or two.
/// </summary>
[Collection(KernelSettings.Name)]
public class BatchPartsTests
{
    private static IModel Create(string name, int maxBatchSize) => name == nameof(PartedClassifier)
        ? new PartedClassifier(maxBatchSize, seed: 4)
        : new PartedSequences(maxBatchSize, seed: 5);

    private static (float[] Inputs, float[] Targets) Batch(IModel model, int batch, int seed)
    {
        var random = new Random(seed);
        var inputs = Enumerable.Range(0, batch * model.InputSize).Select(_ => (float)random.NextDouble() * 2 - 1).ToArray();
        var targets = model.Outputs[0].Loss == Loss.SparseCategoricalCrossentropy
            ? Enumerable.Range(0, batch).Select(_ => (float)random.Next(10)).ToArray()
            : Enumerable.Range(0, batch * model.TargetSize).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        return (inputs, targets);
    }

    [Theory]
    [InlineData(nameof(PartedClassifier), 4736L, 4096L)]
    [InlineData(nameof(PartedSequences), 4608L, 2048L)]
    public void A_step_in_parts_computes_what_each_half_would_weighted_by_one_half(string name, long multiplyAddsPerSample, long largestProduct)
    {
        // 150 rows train in parts of 75; 75 rows train whole. Halving is exact in floats, and every gradient is linear in the
        // loss's, whose scale is 1 / rows: so each half's gradients, times one half, are those of its part, bit for bit.
        const int batch = 150, half = 75;
        Assert.True(BatchParts.Pay(batch, multiplyAddsPerSample, largestProduct));
        Assert.False(BatchParts.Pay(half, multiplyAddsPerSample, largestProduct));
        var parted = Create(name, batch);
        var (inputs, targets) = Batch(parted, batch, seed: 7);
        float loss = parted.TrainStep(inputs, targets, new Sgd(learningRate: 0f));

        var halves = Create(name, half);
        var frozen = new Sgd(learningRate: 0f);
        var first = halves.TrainStep(inputs.AsSpan(0, half * halves.InputSize), targets.AsSpan(0, half * halves.TargetSize), frozen);
        var firstGradients = halves.Gradients.ToArray();
        var firstOutputs = halves.LastTrainingOutputs.ToArray();
        var second = halves.TrainStep(inputs.AsSpan(half * halves.InputSize), targets.AsSpan(half * halves.TargetSize), frozen);
        var secondGradients = halves.Gradients.ToArray();

        Assert.Equal(0.5f * first + 0.5f * second, loss);
        Assert.Equal(firstGradients.Zip(secondGradients, (a, b) => 0.5f * a + 0.5f * b).ToArray(), parted.Gradients.ToArray());
        Assert.Equal(firstOutputs.Concat(halves.LastTrainingOutputs.ToArray()).ToArray(), parted.LastTrainingOutputs.ToArray());
    }

    [Fact]
    public void A_model_whose_one_row_has_the_work_of_two_parts_builds_for_one_row_and_trains_it_whole()
    {
        Assert.False(BatchParts.Pay(1, multiplyAddsPerSample: 525_600, largestProduct: 518_400));
        var (inputs, targets) = Batch(new WideClassifier(1), 1, seed: 3);
        (float Loss, float[] Gradients) Step(int maxBatchSize)
        {
            var model = new WideClassifier(maxBatchSize, seed: 6);
            float loss = model.TrainStep(inputs, targets, new Sgd(learningRate: 0f));
            return (loss, model.Gradients.ToArray());
        }

        var alone = Step(1);
        var inRoomForFour = Step(4);
        Assert.Equal(alone.Loss, inRoomForFour.Loss);
        Assert.Equal(alone.Gradients, inRoomForFour.Gradients);
        Assert.Contains(alone.Gradients, g => g != 0);
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 1)]
    [InlineData(4, 2)]
    [InlineData(128, 2)] // five rows' products (1,000,000) are the matrix kernel's to share: four rows is the largest batch in parts
    public void A_row_with_the_work_of_two_parts_still_needs_a_second_row_to_part(int maxBatchSize, int replicaRows)
    {
        // 600,000 multiply-adds a row in products of 200,000: two rows are two parts, each product still the parts' to share.
        Assert.False(BatchParts.Pay(1, 600_000, 200_000));
        Assert.True(BatchParts.Pay(2, 600_000, 200_000));
        Assert.True(BatchParts.Pay(4, 600_000, 200_000));
        Assert.False(BatchParts.Pay(5, 600_000, 200_000));
        Assert.Equal(replicaRows, BatchParts.ReplicaRows(maxBatchSize, 600_000, 200_000));
    }

    [Theory]
    [InlineData(100, 0)]    // batches from 106 rows on run in parts: none up to 100
    [InlineData(106, 53)]
    [InlineData(107, 53)]   // parts of 54 and 53
    [InlineData(300, 122)]  // 245 rows' 4,096 multiply-adds a product reach 1,000,000: 244 is the largest batch in parts
    public void A_replica_holds_the_second_part_of_the_largest_batch_in_parts(int maxBatchSize, int replicaRows)
    {
        // The digits MLP's shape (PartedClassifier): parts from 106 rows (2 x 250,000 / 4,736), up to 244.
        Assert.Equal(replicaRows, BatchParts.ReplicaRows(maxBatchSize, 4_736, 4_096));
    }

    [Fact]
    public void A_step_in_parts_drops_what_the_whole_batch_would()
    {
        // Both models' first step draws the same mask key. 150 rows train in parts of 75: rows 75-99 are the replica's, from
        // its first row on; 100 rows train whole. The forward pass of each row reads that row alone, so the outputs of
        // rows 0-99 (the dropout's mask applied) agree bit for bit only where each part drew its rows of the whole mask.
        Assert.True(BatchParts.Pay(150, 4736, 4096));
        Assert.False(BatchParts.Pay(100, 4736, 4096));
        var (inputs, targets) = Batch(new DroppedClassifier(150), 150, seed: 12);
        var parted = new DroppedClassifier(150, seed: 13);
        parted.TrainStep(inputs, targets, new Sgd(learningRate: 0f));
        var whole = new DroppedClassifier(150, seed: 13);
        whole.TrainStep(inputs.AsSpan(0, 100 * 64), targets.AsSpan(0, 100), new Sgd(learningRate: 0f));
        var trainingOutputs = whole.LastTrainingOutputs.ToArray();
        Assert.Equal(trainingOutputs, parted.LastTrainingOutputs.Slice(0, 100 * 10).ToArray());

        // The mask drops: predictions (dropout off) differ from the training outputs of the same weights.
        var predictions = new float[100 * 10];
        whole.Predict(inputs.AsSpan(0, 100 * 64), predictions);
        Assert.NotEqual(predictions, trainingOutputs);
    }

    [Theory]
    [InlineData(20, 2)]
    [InlineData(140, 2)]
    [InlineData(140, 1)]
    public void A_bad_label_in_either_part_is_reported_at_its_row_of_the_batch_and_nothing_is_updated(int row, int threads)
    {
        // 150 rows: the replica's part (rows 75 on) runs on the helper, whose exception comes back as thrown.
        const int batch = 150;
        var model = new PartedClassifier(batch, seed: 4);
        var (inputs, targets) = Batch(model, batch, seed: 7);
        targets[row] = 10;
        var adam = new Adam(1e-3f);
        var weights = model.Parameters.ToArray();
        var error = KernelSettings.OnThreads(threads, () => Assert.Throws<ArgumentOutOfRangeException>(() => model.TrainStep(inputs, targets, adam)));
        Assert.Contains($"PartedClassifier: label 10 at index {row} of the targets", error.Message);
        Assert.Contains("'digit'", error.Message);
        Assert.Equal(weights, model.Parameters.ToArray());
        Assert.Equal(0, adam.Iterations);
    }

    [Fact]
    public void A_step_in_unequal_parts_gives_the_same_bits_on_one_thread_or_two()
    {
        // 151 rows: parts of 76 and 75, the replica's outputs copied after the model's 76 rows.
        const int batch = 151;
        var (inputs, targets) = Batch(new PartedClassifier(batch), batch, seed: 8);

        (float[] Parameters, float[] Outputs, float[] Losses) Train(int threads) => KernelSettings.OnThreads(threads, () =>
        {
            var model = new PartedClassifier(batch, seed: 9);
            var adam = new Adam(1e-3f);
            var losses = Enumerable.Range(0, 3).Select(_ => model.TrainStep(inputs, targets, adam)).ToArray();
            return (model.Parameters.ToArray(), model.LastTrainingOutputs.ToArray(), losses);
        });

        var one = Train(1);
        var two = Train(2);
        Assert.Equal(one.Losses, two.Losses);
        Assert.Equal(one.Outputs, two.Outputs);
        Assert.Equal(one.Parameters, two.Parameters);

        // The outputs of the last step's forward pass, before its update: each part's rows as a prediction of them alone computes them.
        var reference = new PartedClassifier(batch, seed: 9);
        var adam = new Adam(1e-3f);
        reference.TrainStep(inputs, targets, adam);
        reference.TrainStep(inputs, targets, adam);
        var predictions = new float[batch * 10];
        reference.Predict(inputs.AsSpan(0, 76 * 64), predictions.AsSpan(0, 76 * 10));
        reference.Predict(inputs.AsSpan(76 * 64), predictions.AsSpan(76 * 10));
        Assert.Equal(predictions, two.Outputs);
    }

    /// <summary>
    /// Fit gathers each epoch's shuffled rows into its batches, a large batch on both cores (each the rows of its part): its
    /// steps are those of the model stepped by hand over the same rows, bit for bit, on one thread or two.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Fit_trains_each_epoch_on_its_shuffled_rows(int threads)
    {
        // 331 samples in batches of 150: two of 150 (9,600 floats: gathered on both cores, and trained in parts), one of 31.
        const int samples = 331, batchSize = 150, epochs = 2, seed = 3;
        var (inputs, labels) = Batch(new PartedClassifier(batchSize), samples, seed: 10);

        var byHand = new PartedClassifier(batchSize, seed: 11);
        var adam = new Adam(1e-3f);
        var order = Enumerable.Range(0, samples).ToArray();
        var random = new SeededRandom(seed);
        var lastLoss = 0.0;
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            random.Shuffle(order);
            lastLoss = 0;
            for (int start = 0; start < samples; start += batchSize)
            {
                var rows = order.Skip(start).Take(batchSize).ToArray();
                var batchInputs = rows.SelectMany(row => inputs.Skip(row * 64).Take(64)).ToArray();
                var batchLabels = rows.Select(row => labels[row]).ToArray();
                lastLoss += (double)byHand.TrainStep(batchInputs, batchLabels, adam) * rows.Length;
            }
        }

        var fitted = new PartedClassifier(batchSize, seed: 11);
        var history = KernelSettings.OnThreads(threads, () =>
            fitted.Fit(inputs, labels, new Adam(1e-3f), epochs, batchSize, seed: seed, verbose: Verbosity.Silent));
        Assert.Equal(byHand.Parameters.ToArray(), fitted.Parameters.ToArray());
        Assert.Equal((float)(lastLoss / samples), history.Loss[^1]);
    }
}
