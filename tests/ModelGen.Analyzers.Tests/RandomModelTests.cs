using Microsoft.CodeAnalysis;

namespace ModelGen.Analyzers.Tests;

/// <summary>
/// Random Sequential models, from a fixed seed: every one the analyzers accept is generated, its generated code compiles and
/// runs (finite predictions, the inference copy's the same bits, a finite training step), and every one they refuse is not
/// generated. Layer kinds, options and shapes in combinations no hand-written test lists.
/// </summary>
public class RandomModelTests
{
    /// <summary>300 models from one seed; MODELGEN_RANDOM_MODELS and MODELGEN_RANDOM_SEED explore further.</summary>
    private static readonly int Models = int.Parse(Environment.GetEnvironmentVariable("MODELGEN_RANDOM_MODELS") ?? "300");

    [Fact]
    public async Task Every_random_model_the_analyzers_accept_is_generated_compiles_and_runs()
    {
        var random = new Random(int.Parse(Environment.GetEnvironmentVariable("MODELGEN_RANDOM_SEED") ?? "20261124"));
        var sources = Enumerable.Range(0, Models).Select(i => RandomModel(random, $"R{i}")).ToList();
        var (output, generatorDiagnostics, models) = await AnalyzerHarness.GenerateEach(sources, sources.Select((_, i) => $"R{i}").ToList());
        Assert.Empty(generatorDiagnostics);
        var failures = new List<string>();
        for (int i = 0; i < Models; i++)
        {
            bool refused = models[i].ErrorIds.Count > 0;
            if (refused == models[i].Generated) failures.Add($"{(refused ? "refused, yet generated" : "accepted, not generated")}: {sources[i]}");
            else if (models[i].FirstCompileError is { } error) failures.Add($"generated code does not compile ({error.GetMessage()}): {sources[i]}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        // Not a vacuous pass: most models are valid, and some are not.
        Assert.InRange(models.Count(m => m.Generated), Models / 2, Models - 10);

        // Each accepted model runs: finite predictions, its inference copy's the same bits, a finite training step.
        using var image = new MemoryStream();
        var emitted = output.Emit(image);
        Assert.True(emitted.Success, string.Join("\n", emitted.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Take(5)));
        var assembly = System.Reflection.Assembly.Load(image.ToArray());
        for (int i = 0; i < Models; i++)
        {
            if (!models[i].Generated) continue;
            try
            {
                Run((IModel)Activator.CreateInstance(assembly.GetType($"R{i}")!, 4, 0)!, new Random(i));
            }
            catch (Exception e)
            {
                failures.Add($"{e.GetType().Name}: {e.Message}: {sources[i]}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>Three samples of inputs in [-1, 1] (and labels or values as targets), predicted, then trained on once.</summary>
    private static void Run(IModel model, Random random)
    {
        const int batch = 3;
        var inputs = Enumerable.Range(0, batch * model.InputSize).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var targets = Enumerable.Range(0, batch * model.TargetSize)
            .Select(_ => model.TargetSize == model.OutputSize ? (float)random.NextDouble() : random.Next(model.OutputSize)).ToArray();
        var outputs = new float[batch * model.OutputSize];
        model.Predict(inputs, outputs);
        if (!outputs.All(float.IsFinite)) throw new InvalidOperationException("a prediction is not finite");
        var copied = new float[outputs.Length];
        model.ForInference().Predict(inputs, copied);
        if (!copied.AsSpan().SequenceEqual(outputs)) throw new InvalidOperationException("the inference copy predicts other bits");
        float loss = model.TrainStep(inputs, targets, new ModelGen.Training.Adam());
        if (!float.IsFinite(loss)) throw new InvalidOperationException("the training step's loss is not finite");
        model.Predict(inputs, outputs);
        if (!outputs.All(float.IsFinite)) throw new InvalidOperationException("a prediction after a step is not finite");
    }

    /// <summary>An input (features, an image, a sequence), two to six layers that mostly fit what they follow, and a head.</summary>
    private static string RandomModel(Random random, string name)
    {
        var layers = new List<string>();
        int rank = random.Next(3); // 0: features, 1: image, 2: sequence
        string[] activations = { "Activation.Linear", "Activation.Relu", "Activation.Tanh", "Activation.Sigmoid" };
        string Act() => activations[random.Next(activations.Length)];
        string Bool() => random.Next(2) == 0 ? "true" : "false";
        layers.Add(rank switch
        {
            0 => $"[Input({random.Next(1, 40)})] Input input;",
            1 => $"[Input({random.Next(4, 14)}, {random.Next(4, 14)}, {random.Next(1, 5)})] Input input;",
            _ => $"[Input({random.Next(2, 9)}, {random.Next(1, 9)})] Input input;",
        });
        int count = random.Next(2, 7);
        for (int k = 0; k < count; k++)
        {
            string field = $"layer{k}";
            int choice = random.Next(8);
            string layer = rank switch
            {
                0 => choice switch
                {
                    0 or 1 or 2 => $"[Dense({random.Next(1, 48)}, {Act()})] Dense {field};",
                    3 => $"[Dropout(0.{random.Next(1, 9)})] Dropout {field};",
                    4 => $"[BatchNormalization(Trainable = {Bool()})] BatchNormalization {field};",
                    5 => $"[LayerNormalization] LayerNormalization {field};",
                    6 => $"[Activation({Act()})] ActivationLayer {field};",
                    _ => $"[Dense({random.Next(1, 48)}, UseBias = false)] Dense {field};",
                },
                1 => choice switch
                {
                    0 => $"[Conv2D({random.Next(1, 12)}, {random.Next(1, 4)}, {Act()}, Padding = Padding.{(random.Next(2) == 0 ? "Same" : "Valid")}, Strides = {random.Next(1, 3)}, DilationRate = {random.Next(1, 3)}, Trainable = {Bool()})] Conv2D {field};",
                    1 => $"[DepthwiseConv2D({random.Next(1, 4)}, {Act()}, Padding = Padding.Same, DepthMultiplier = {random.Next(1, 3)})] DepthwiseConv2D {field};",
                    2 => $"[MaxPooling2D({random.Next(1, 3)})] MaxPooling2D {field};",
                    3 => $"[AveragePooling2D(2)] AveragePooling2D {field};",
                    4 => $"[BatchNormalization] BatchNormalization {field};",
                    5 => $"[ZeroPadding2D({random.Next(1, 3)})] ZeroPadding2D {field};",
                    6 => $"[UpSampling2D(2)] UpSampling2D {field};",
                    _ => $"[Conv2DTranspose({random.Next(1, 8)}, {random.Next(1, 4)}, {Act()})] Conv2DTranspose {field};",
                },
                _ => choice switch
                {
                    0 or 1 => $"[LSTM({random.Next(1, 20)}, ReturnSequences = true, Bidirectional = {Bool()})] LSTM {field};",
                    2 or 3 => $"[GRU({random.Next(1, 20)}, ReturnSequences = true, Bidirectional = {Bool()})] GRU {field};",
                    4 => $"[LayerNormalization] LayerNormalization {field};",
                    5 => $"[Dropout(0.2)] Dropout {field};",
                    6 => $"[Dense({random.Next(1, 20)}, {Act()})] Dense {field};",
                    _ => $"[MultiHeadAttention(2, {random.Next(1, 8)})] MultiHeadAttention {field};",
                },
            };
            layers.Add(layer);
            // Now and then leave the rank for a flat one (the layers above then still see the old rank: some models are invalid).
            if (rank != 0 && random.Next(5) == 0)
            {
                layers.Add(rank == 1
                    ? (random.Next(3) switch { 0 => $"[Flatten] Flatten flat{k};", 1 => $"[GlobalAveragePooling2D] GlobalAveragePooling2D flat{k};", _ => $"[GlobalMaxPooling2D] GlobalMaxPooling2D flat{k};" })
                    : (random.Next(2) == 0 ? $"[GlobalAveragePooling1D] GlobalAveragePooling1D flat{k};" : $"[LSTM({random.Next(1, 12)})] LSTM flat{k};"));
                rank = 0;
            }
        }
        if (rank == 1) layers.Add("[Flatten] Flatten flatten;");
        if (rank == 2) layers.Add("[GlobalAveragePooling1D] GlobalAveragePooling1D pooled;");
        bool classifier = random.Next(2) == 0;
        layers.Add(classifier ? $"[Dense({random.Next(2, 6)}, Activation.Softmax)] Dense head;" : "[Dense(1)] Dense head;");
        string loss = classifier ? "Loss.SparseCategoricalCrossentropy" : "Loss.MeanSquaredError";
        return $"[Sequential(Loss = {loss})] public partial class {name} {{ {string.Join(" ", layers)} }}";
    }
}
