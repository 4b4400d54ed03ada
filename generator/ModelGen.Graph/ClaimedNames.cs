using System;
using System.Collections.Generic;

namespace ModelGen.Graph;

/// <summary>
/// Names the generated code declares in every model, and what for: the class's own members, and the parameters and locals
/// of the generated methods that also take the model's inputs and outputs by name. A layer, input or output of one of these
/// names would not compile (MG0021 says so where it is written). ClaimedNameTests keeps the table complete and exact: every
/// other name the generated code declares compiles as a user's.
/// </summary>
internal static class ClaimedNames
{
    private static readonly Dictionary<string, string> Uses = Table(
        ("a member of every model", new[]
        {
            "ParameterCount", "TrainableParameterCount", "NonTrainableParameterCount", "InputSize", "OutputSize", "TargetSize",
            "MaxBatchSize", "BufferBytes", "Name", "Layers", "Parameters", "Gradients", "Inputs", "Outputs", "LastTrainingOutputs",
            "Predict", "ForInference", "TrainStep", "Summary", "SummaryText", "Forward", "Backward", "Step", "TrainPart",
            "UpdateMovingStatistics", "GradientFloats", "SeparateGradientFloats", "ValueFloats", "SeparateValueFloats",
            "parameters", "gradients", "layers", "replica", "lastTrainingBatch", "lastOutputs", "inferenceCores", "trainingCores",
            "dropoutRandom", "modelInputs", "modelOutputs",
        }),
        ("the batch size in the generated methods", new[] { "batch" }),
        ("the generated forward pass's training flag", new[] { "training" }),
        ("the first row of a part of the batch in the generated forward pass", new[] { "firstRow" }),
        ("the optimizer a training step takes", new[] { "optimizer" }),
        ("a training step's loss", new[] { "loss" }),
        ("the generated methods' discard", new[] { "_" }),
        ("in the generated constructors", new[] { "maxBatchSize", "forTraining", "sharedParameters", "buffers", "replicaRows" }));

    public static IEnumerable<string> All => Uses.Keys;

    /// <summary>What the generated code uses the name for, or null where a layer, input or output may take it.</summary>
    public static string? Use(string name) => Uses.TryGetValue(name, out var use) ? use : null;

    private static Dictionary<string, string> Table(params (string Use, string[] Names)[] groups)
    {
        var table = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (use, names) in groups)
            foreach (var name in names) table.Add(name, use);
        return table;
    }
}
