using System;
using System.Collections.Generic;
using System.Diagnostics;
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

/// <summary>Loss and accuracy of one pass over data.</summary>
public readonly record struct Evaluation(float Loss, float Accuracy);

/// <summary>Per-epoch numbers, as Keras' <c>History.history</c>.</summary>
public sealed class History
{
    public List<float> Loss { get; } = new();
    public List<float> Accuracy { get; } = new();
    public List<float> ValidationLoss { get; } = new();
    public List<float> ValidationAccuracy { get; } = new();
    public int Epochs => Loss.Count;
}

/// <summary>The numbers an epoch ends with; validation values are NaN without validation data.</summary>
public readonly record struct EpochLogs(int Epoch, float Loss, float Accuracy, float ValidationLoss, float ValidationAccuracy)
{
    public float Get(string metric) => metric switch
    {
        "loss" => Loss,
        "accuracy" => Accuracy,
        "val_loss" => ValidationLoss,
        "val_accuracy" => ValidationAccuracy,
        _ => throw new ArgumentException($"Unknown metric '{metric}': use loss, accuracy, val_loss or val_accuracy."),
    };
}

/// <summary>The training loop, evaluation and prediction over any generated model.</summary>
public static partial class ModelExtensions
{
    /// <summary>
    /// Trains as Keras' <c>model.fit</c>: the last <paramref name="validationSplit"/> of the samples (taken before
    /// shuffling) are held out; each epoch shuffles the rest with <paramref name="seed"/> and steps through batches.
    /// </summary>
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

        foreach (var callback in callbackList) callback.OnTrainBegin(model);
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            if (shuffle) random.Shuffle(order);
            progress.BeginEpoch(epoch);
            double lossSum = 0, correct = 0;
            int seen = 0, step = 0;
            for (int start = 0; start < trainCount; start += batchSize)
            {
                int batch = Math.Min(batchSize, trainCount - start);
                Gather(inputs, model.InputSize, order.AsSpan(start, batch), inputBatch);
                Gather(targets, model.TargetSize, order.AsSpan(start, batch), targetBatch);
                var batchTargets = targetBatch.AsSpan(0, batch * model.TargetSize);
                float loss = model.TrainStep(inputBatch.AsSpan(0, batch * model.InputSize), batchTargets, optimizer);
                lossSum += (double)loss * batch;
                correct += Metrics.CorrectCount(model.Loss, model.LastTrainingOutputs, batchTargets, batch, model.OutputSize);
                seen += batch;
                progress.Step(++step, (float)(lossSum / seen), (float)(correct / seen));
            }

            var logs = new EpochLogs(epoch, (float)(lossSum / seen), (float)(correct / seen), float.NaN, float.NaN);
            if (validationCount > 0)
            {
                var validation = model.Evaluate(
                    inputs.AsSpan(trainCount * model.InputSize, validationCount * model.InputSize),
                    targets.AsSpan(trainCount * model.TargetSize, validationCount * model.TargetSize));
                logs = logs with { ValidationLoss = validation.Loss, ValidationAccuracy = validation.Accuracy };
            }
            history.Loss.Add(logs.Loss);
            history.Accuracy.Add(logs.Accuracy);
            history.ValidationLoss.Add(logs.ValidationLoss);
            history.ValidationAccuracy.Add(logs.ValidationAccuracy);
            progress.EndEpoch(logs);

            bool stop = false;
            foreach (var callback in callbackList) stop |= callback.OnEpochEnd(model, logs);
            if (stop) break;
        }
        foreach (var callback in callbackList) callback.OnTrainEnd(model);
        return history;
    }

    /// <summary>Mean loss and accuracy in inference mode (no dropout), as Keras' <c>model.evaluate</c>.</summary>
    public static Evaluation Evaluate(this IModel model, ReadOnlySpan<float> inputs, ReadOnlySpan<float> targets)
    {
        int samples = SampleCount(model, inputs, targets);
        var outputs = new float[model.MaxBatchSize * model.OutputSize];
        string outputLayer = model.Layers[model.Layers.Count - 1].Name;
        double lossSum = 0, correct = 0;
        for (int start = 0; start < samples; start += model.MaxBatchSize)
        {
            int batch = Math.Min(model.MaxBatchSize, samples - start);
            var batchOutputs = outputs.AsSpan(0, batch * model.OutputSize);
            var batchTargets = targets.Slice(start * model.TargetSize, batch * model.TargetSize);
            model.Predict(inputs.Slice(start * model.InputSize, batch * model.InputSize), batchOutputs);
            lossSum += (double)Losses.Compute(model.Loss, batchOutputs, batchTargets, default, batch, model.OutputSize, model.Name, outputLayer) * batch;
            correct += Metrics.CorrectCount(model.Loss, batchOutputs, batchTargets, batch, model.OutputSize);
        }
        return new Evaluation((float)(lossSum / samples), (float)(correct / samples));
    }

    /// <summary>Predicts any number of samples, in chunks of the model's batch capacity.</summary>
    public static float[] Predict(this IModel model, ReadOnlySpan<float> inputs)
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
                $"{model.Name}: {samples} input samples need {samples * model.TargetSize} target values (shape ({samples}, {model.TargetSize}) for output layer '{model.Layers[model.Layers.Count - 1].Name}'), got {targets.Length}.",
                nameof(targets));
        }
        return samples;
    }

    private static ArgumentException ShapeError(IModel model, string name, int length, int perSample) => new(
        $"{model.Name}: {name} has {length} values, not a whole number of samples of {perSample} (input layer '{model.Layers[0].Name}' expects shape (batch, {perSample})).",
        name);

    private static void Gather(float[] source, int width, ReadOnlySpan<int> rows, float[] destination)
    {
        for (int r = 0; r < rows.Length; r++) source.AsSpan(rows[r] * width, width).CopyTo(destination.AsSpan(r * width, width));
    }
}
