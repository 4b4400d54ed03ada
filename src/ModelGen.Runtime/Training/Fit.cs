using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using ModelGen.Kernels;
using ModelGen.Training;

namespace ModelGen;

/// <summary>How much <c>Fit</c> prints.</summary>
public enum Verbosity
{
    /// <summary>A live bar on a terminal, one line per epoch when output is redirected.</summary>
    Auto,
    Silent,
    /// <summary>One line per epoch.</summary>
    Lines,
}

/// <summary>
/// Loss and accuracy of one pass over data. <see cref="Loss"/> is the weighted sum over outputs (Keras' "loss");
/// <see cref="Metrics"/> holds Keras' names: "loss", "accuracy" for one output, "&lt;output&gt;_loss" and
/// "&lt;output&gt;_accuracy" per output when there are several. <see cref="Accuracy"/> is NaN for several outputs.
/// </summary>
public readonly record struct Evaluation(float Loss, float Accuracy, IReadOnlyDictionary<string, float> Metrics);

/// <summary>Per-epoch numbers, as Keras' <c>History.history</c>.</summary>
public sealed class History
{
    public List<float> Loss { get; } = new();
    public List<float> Accuracy { get; } = new();
    public List<float> ValidationLoss { get; } = new();
    public List<float> ValidationAccuracy { get; } = new();
    /// <summary>Every logged metric by its Keras name (loss, accuracy, energy_loss, val_loss, ...).</summary>
    public Dictionary<string, List<float>> Metrics { get; } = new();
    public int Epochs => Loss.Count;
}

/// <summary>The numbers an epoch ends with, by their Keras names; validation values are NaN without validation data.</summary>
public readonly record struct EpochLogs(int Epoch, IReadOnlyDictionary<string, float> Metrics)
{
    public float Loss => Get("loss");
    public float Accuracy => Metrics.TryGetValue("accuracy", out var value) ? value : float.NaN;
    public float ValidationLoss => Metrics.TryGetValue("val_loss", out var value) ? value : float.NaN;
    public float ValidationAccuracy => Metrics.TryGetValue("val_accuracy", out var value) ? value : float.NaN;

    public float Get(string metric) => Metrics.TryGetValue(metric, out var value)
        ? value
        : throw new ArgumentException($"Unknown metric '{metric}': this model logs {string.Join(", ", Metrics.Keys)}.");
}

/// <summary>The training loop, evaluation and prediction over any generated model.</summary>
public static partial class ModelExtensions
{
    /// <summary>
    /// Trains as Keras' <c>model.fit</c>: the last <paramref name="validationSplit"/> of the samples (taken before
    /// shuffling) are held out; each epoch shuffles the rest with <paramref name="seed"/> and steps through batches.
    /// A row of <paramref name="inputs"/> holds a sample's inputs side by side, a row of <paramref name="targets"/> its targets.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static History Fit(this IModel model, float[] inputs, float[] targets, Optimizer optimizer, int epochs,
        int batchSize = 32, double validationSplit = 0, bool shuffle = true, int seed = 0,
        IReadOnlyList<Callback>? callbacks = null, Verbosity verbose = Verbosity.Auto)
    {
        int samples = SampleCount(model, inputs, targets);
        if (batchSize < 1 || batchSize > model.MaxBatchSize)
        {
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize,
                $"{model.Name}: batch size must be in [1, {model.MaxBatchSize}], the capacity the model was constructed with.");
        }
        if (validationSplit < 0 || validationSplit >= 1) throw new ArgumentOutOfRangeException(nameof(validationSplit), validationSplit, "validationSplit must be in [0, 1).");

        int validationCount = (int)(samples * validationSplit);
        int trainCount = samples - validationCount;
        if (trainCount == 0) throw new ArgumentException($"{model.Name}: no training samples left after the validation split.");

        var history = new History();
        var callbackList = callbacks ?? Array.Empty<Callback>();
        var progress = new ProgressReporter(verbose, epochs, (trainCount + batchSize - 1) / batchSize);
        var order = new int[trainCount];
        for (int i = 0; i < trainCount; i++) order[i] = i;
        var random = new SeededRandom(seed);
        var inputBatch = new float[batchSize * model.InputSize];
        var targetBatch = new float[batchSize * model.TargetSize];
        // A single output's loss is TrainStep's own: only several outputs need each one's loss recomputed for the logs.
        var scores = new Scores(model, batchSize, outputLosses: model.Outputs.Count > 1);

        foreach (var callback in callbackList) callback.OnTrainBegin(model);
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            if (shuffle) random.Shuffle(order);
            progress.BeginEpoch(epoch);
            scores.Reset();
            double lossSum = 0;
            int step = 0;
            for (int start = 0; start < trainCount; start += batchSize)
            {
                int batch = Math.Min(batchSize, trainCount - start);
                Gather(inputs, model.InputSize, order.AsSpan(start, batch), inputBatch);
                Gather(targets, model.TargetSize, order.AsSpan(start, batch), targetBatch);
                var batchTargets = targetBatch.AsSpan(0, batch * model.TargetSize);
                float loss = model.TrainStep(inputBatch.AsSpan(0, batch * model.InputSize), batchTargets, optimizer);
                lossSum += (double)loss * batch;
                scores.Add(model.LastTrainingOutputs, batchTargets, batch);
                step++;
                if (progress.DrawsSteps) progress.Step(step, scores.Logs((float)(lossSum / scores.Samples), prefix: ""));
            }

            var metrics = scores.Logs((float)(lossSum / scores.Samples), prefix: "");
            if (validationCount > 0)
            {
                var validation = model.Evaluate(
                    inputs.AsSpan(trainCount * model.InputSize, validationCount * model.InputSize),
                    targets.AsSpan(trainCount * model.TargetSize, validationCount * model.TargetSize));
                foreach (var pair in validation.Metrics) metrics["val_" + pair.Key] = pair.Value;
            }
            var logs = new EpochLogs(epoch, metrics);
            history.Loss.Add(logs.Loss);
            history.Accuracy.Add(logs.Accuracy);
            history.ValidationLoss.Add(logs.ValidationLoss);
            history.ValidationAccuracy.Add(logs.ValidationAccuracy);
            foreach (var pair in metrics)
            {
                if (!history.Metrics.TryGetValue(pair.Key, out var list)) history.Metrics[pair.Key] = list = new List<float>();
                list.Add(pair.Value);
            }
            progress.EndEpoch(logs);

            bool stop = false;
            foreach (var callback in callbackList) stop |= callback.OnEpochEnd(model, logs);
            if (stop) break;
        }
        foreach (var callback in callbackList) callback.OnTrainEnd(model);
        return history;
    }

    /// <summary>Weighted loss and per-output metrics in inference mode (no dropout), as Keras' <c>model.evaluate</c>.</summary>
    public static Evaluation Evaluate(this IModel model, ReadOnlySpan<float> inputs, ReadOnlySpan<float> targets)
    {
        int samples = SampleCount(model, inputs, targets);
        var outputs = new float[model.MaxBatchSize * model.OutputSize];
        var scores = new Scores(model, model.MaxBatchSize);
        for (int start = 0; start < samples; start += model.MaxBatchSize)
        {
            int batch = Math.Min(model.MaxBatchSize, samples - start);
            var batchOutputs = outputs.AsSpan(0, batch * model.OutputSize);
            model.Predict(inputs.Slice(start * model.InputSize, batch * model.InputSize), batchOutputs);
            scores.Add(batchOutputs, targets.Slice(start * model.TargetSize, batch * model.TargetSize), batch);
        }
        var metrics = scores.Logs(loss: null, prefix: "");
        return new Evaluation(metrics["loss"], metrics.TryGetValue("accuracy", out var accuracy) ? accuracy : float.NaN, metrics);
    }

    /// <summary>Predicts any number of samples, in chunks of the model's batch capacity.</summary>
    public static float[] Predict(this IPredictor model, ReadOnlySpan<float> inputs)
    {
        if (inputs.Length % model.InputSize != 0) throw ShapeError(model, "inputs", inputs.Length, model.InputSize);
        int samples = inputs.Length / model.InputSize;
        var outputs = new float[samples * model.OutputSize];
        for (int start = 0; start < samples; start += model.MaxBatchSize)
        {
            int batch = Math.Min(model.MaxBatchSize, samples - start);
            model.Predict(inputs.Slice(start * model.InputSize, batch * model.InputSize), outputs.AsSpan(start * model.OutputSize, batch * model.OutputSize));
        }
        return outputs;
    }

    private static int SampleCount(IModel model, ReadOnlySpan<float> inputs, ReadOnlySpan<float> targets)
    {
        if (inputs.Length % model.InputSize != 0) throw ShapeError(model, "inputs", inputs.Length, model.InputSize);
        int samples = inputs.Length / model.InputSize;
        if (targets.Length != samples * model.TargetSize)
        {
            throw new ArgumentException(
                $"{model.Name}: {samples} input samples need {samples * model.TargetSize} target values (shape ({samples}, {model.TargetSize}) for {Describe(model.Outputs.Select(o => $"'{o.Name}'"))}), got {targets.Length}.",
                nameof(targets));
        }
        return samples;
    }

    private static string Describe(IEnumerable<string> outputs)
    {
        var names = outputs.ToList();
        return names.Count == 1 ? "output layer " + names[0] : "output layers " + string.Join(", ", names);
    }

    private static ArgumentException ShapeError(IPredictor model, string name, int length, int perSample) => new(
        $"{model.Name}: {name} has {length} values, not a whole number of samples of {perSample} (input {string.Join(", ", model.Inputs.Select(i => $"'{i.Name}' {i.Shape}"))}).",
        name);

    /// <summary>
    /// The batch's rows copied in the shuffled order. A large batch is shared between the cores by ranges of rows
    /// (<see cref="Helper.ForRanges"/>): for the batches a step in <see cref="BatchParts"/> trains, two ranges, the first
    /// part's rows on this core and the rest on the helper, so each core then reads the rows it copied. The digits Fit
    /// (batches of 200 rows of 64 floats) had spent ~5 us of each ~40 us step copying on the calling core while the helper
    /// waited (perf); fits 2-20 of a process took 1.41-1.68 s, 1.24-1.38 s copying on both (six processes each, in turns); a
    /// label copied by a call took 0.70 us a batch, as a value 0.24.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void Gather(float[] source, int width, ReadOnlySpan<int> rows, float[] destination)
    {
        fixed (float* from = source, to = destination)
        fixed (int* order = rows)
        {
            var work = new GatherRanges(from, source.Length, width, order, to);
            Helper.ForRanges(ref work, rows.Length, floatsPerItem: width, shareAbove: SharedGatherFloats);
        }
    }

    /// <summary>Floats above which a batch is gathered on both cores: 16 KB.</summary>
    private const long SharedGatherFloats = 4096;

    /// <summary>Rows [first, first + count) of the batch, on either thread.</summary>
    private readonly unsafe struct GatherRanges(float* source, int sourceLength, int width, int* rows, float* destination) : IRanges
    {
        public void Run(int first, int count) =>
            GatherRows(new ReadOnlySpan<float>(source, sourceLength), width, new ReadOnlySpan<int>(rows + first, count), new Span<float>(destination + (long)first * width, count * width));
    }

    /// <summary>A one-float row (a label) is copied as a value, not by a call.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static void GatherRows(ReadOnlySpan<float> source, int width, ReadOnlySpan<int> rows, Span<float> destination)
    {
        for (int r = 0; r < rows.Length; r++)
        {
            var row = source.Slice(rows[r] * width, width);
            if (width == 1) destination[r] = row[0];
            else row.CopyTo(destination.Slice(r * width, width));
        }
    }

    /// <summary>
    /// Running per-output losses and accuracies over batches of packed rows. Each output's columns are sliced into
    /// contiguous scratch (a single-output model needs no copy) so the loss and metric kernels serve every model.
    /// </summary>
    private sealed class Scores
    {
        private readonly IModel model;
        private readonly float[] outputScratch, targetScratch;
        private readonly double[] losses, correct;
        /// <summary>Whether each output's loss is recomputed: Fit already has a single output's from TrainStep.</summary>
        private readonly bool outputLosses;

        public Scores(IModel model, int capacity, bool outputLosses = true)
        {
            this.model = model;
            this.outputLosses = outputLosses;
            int widest = model.Outputs.Max(o => o.Size), widestTarget = model.Outputs.Max(o => o.TargetSize);
            outputScratch = model.Outputs.Count > 1 ? new float[capacity * widest] : Array.Empty<float>();
            targetScratch = model.Outputs.Count > 1 ? new float[capacity * widestTarget] : Array.Empty<float>();
            losses = new double[model.Outputs.Count];
            correct = new double[model.Outputs.Count];
        }

        public int Samples { get; private set; }

        public void Reset()
        {
            Array.Clear(losses);
            Array.Clear(correct);
            Samples = 0;
        }

        [MethodImpl(Compiled.Driver)]
        public void Add(ReadOnlySpan<float> outputs, ReadOnlySpan<float> targets, int batch)
        {
            for (int k = 0; k < model.Outputs.Count; k++)
            {
                var output = model.Outputs[k];
                ReadOnlySpan<float> p = outputs, y = targets;
                if (model.Outputs.Count > 1)
                {
                    Merges.Slice(outputs, model.OutputSize, output.Offset, outputScratch, output.Size, batch);
                    Merges.Slice(targets, model.TargetSize, output.TargetOffset, targetScratch, output.TargetSize, batch);
                    p = outputScratch.AsSpan(0, batch * output.Size);
                    y = targetScratch.AsSpan(0, batch * output.TargetSize);
                }
                // Row by row over the last axis (each step of a sequence output), as the generated TrainStep computes the loss.
                int rows = batch * output.Rows;
                if (outputLosses) losses[k] += (double)Losses.Compute(output.Loss, p, y, default, rows, output.Units, model.Name, output.Name) * batch;
                correct[k] += Training.Metrics.CorrectCount(output.Loss, p, y, rows, output.Units) / output.Rows;
            }
            Samples += batch;
        }

        /// <summary>Keras' log names; <paramref name="loss"/> overrides the total (Fit uses TrainStep's own).</summary>
        public Dictionary<string, float> Logs(float? loss, string prefix)
        {
            var logs = new Dictionary<string, float>();
            double total = 0;
            for (int k = 0; k < model.Outputs.Count; k++) total += model.Outputs[k].LossWeight * losses[k] / Samples;
            logs[prefix + "loss"] = loss ?? (float)total;
            if (model.Outputs.Count == 1)
            {
                logs[prefix + "accuracy"] = (float)(correct[0] / Samples);
                return logs;
            }
            for (int k = 0; k < model.Outputs.Count; k++)
            {
                logs[prefix + model.Outputs[k].Name + "_loss"] = (float)(losses[k] / Samples);
                logs[prefix + model.Outputs[k].Name + "_accuracy"] = (float)(correct[k] / Samples);
            }
            return logs;
        }
    }
}
