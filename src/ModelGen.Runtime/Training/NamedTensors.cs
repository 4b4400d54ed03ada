using System;
using System.Collections.Generic;
using System.Linq;
using ModelGen.Kernels;

namespace ModelGen;

/// <summary>
/// Fit, Evaluate and Predict with each input, target and output by its name, as Keras accepts dictionaries
/// (<c>model.fit({"left": a, "right": b}, {"energy": y1, "vacuum": y2})</c>). Each array holds its tensor for every
/// sample, a row per sample; they are laid side by side into the rows the generic methods take.
/// </summary>
public static partial class ModelExtensions
{
    public static History Fit(this IModel model, IReadOnlyDictionary<string, float[]> inputs, IReadOnlyDictionary<string, float[]> targets,
        Training.Optimizer optimizer, int epochs, int batchSize = 32, double validationSplit = 0, bool shuffle = true, int seed = 0,
        IReadOnlyList<Callback>? callbacks = null, Verbosity verbose = Verbosity.Auto) =>
        model.Fit(PackInputs(model, inputs), PackTargets(model, targets), optimizer, epochs, batchSize, validationSplit, shuffle, seed, callbacks, verbose);

    public static Evaluation Evaluate(this IModel model, IReadOnlyDictionary<string, float[]> inputs, IReadOnlyDictionary<string, float[]> targets) =>
        model.Evaluate(PackInputs(model, inputs), PackTargets(model, targets));

    /// <summary>Predicts any number of samples; returns each output by its name.</summary>
    public static Dictionary<string, float[]> Predict(this IPredictor model, IReadOnlyDictionary<string, float[]> inputs)
    {
        var rows = model.Predict(PackInputs(model, inputs));
        int samples = rows.Length / model.OutputSize;
        return model.Outputs.ToDictionary(o => o.Name, o =>
        {
            var values = new float[samples * o.Size];
            Merges.Slice(rows, model.OutputSize, o.Offset, values, o.Size, samples);
            return values;
        });
    }

    private static float[] PackInputs(IPredictor model, IReadOnlyDictionary<string, float[]> tensors) =>
        Pack(model, "input", tensors, model.Inputs.Select(i => (i.Name, i.Size, i.Offset, i.Shape)).ToList(), model.InputSize);

    private static float[] PackTargets(IModel model, IReadOnlyDictionary<string, float[]> tensors) =>
        Pack(model, "target", tensors, model.Outputs.Select(o => (o.Name, o.TargetSize, o.TargetOffset, o.TargetShape)).ToList(), model.TargetSize);

    private static float[] Pack(IPredictor model, string kind, IReadOnlyDictionary<string, float[]> tensors,
        List<(string Name, int Size, int Offset, string Shape)> layout, int rowWidth)
    {
        foreach (var name in tensors.Keys.Where(k => layout.All(l => l.Name != k)))
        {
            throw new ArgumentException($"{model.Name} has no {kind} named '{name}' (its {kind}s are {string.Join(", ", layout.Select(l => $"'{l.Name}' {l.Shape}"))}).");
        }
        int samples = -1;
        foreach (var (name, size, _, shape) in layout)
        {
            if (!tensors.TryGetValue(name, out var values)) throw new ArgumentException($"{model.Name}: no {kind} given for '{name}' {shape}.");
            if (values.Length % size != 0) throw new ArgumentException($"{model.Name}: {kind} '{name}' has {values.Length} values, not a whole number of samples of shape {shape}.");
            if (samples >= 0 && values.Length / size != samples) throw new ArgumentException($"{model.Name}: {kind} '{name}' has {values.Length / size} samples, the others {samples}.");
            samples = values.Length / size;
        }
        var rows = new float[samples * rowWidth];
        foreach (var (name, size, offset, _) in layout) Merges.Concatenate(tensors[name], size, rows, rowWidth, offset, samples);
        return rows;
    }
}
