using System;
using System.Collections.Generic;
using ModelGen.Kernels;

namespace ModelGen;

/// <summary>
/// What every generated model implements. The generator emits only what depends on a model's shapes
/// (forward, backward, buffers); everything generic — <c>Fit</c>, <c>Evaluate</c>, weights I/O — is written
/// once in the runtime over this interface (<see cref="ModelExtensions"/>).
/// </summary>
public interface IModel : IPredictor
{
    /// <summary>Every layer in order, named after the user's fields.</summary>
    IReadOnlyList<Layer> Layers { get; }
    /// <summary>All parameters, contiguous and starting on a cache line; layers' <see cref="Parameter"/>s are views into it.</summary>
    Span<float> Parameters { get; }
    /// <summary>How many floats at the start of <see cref="Parameters"/> the optimizer updates; moving statistics and frozen weights follow them.</summary>
    int TrainableParameterCount { get; }
    /// <summary>The gradient of the last <see cref="TrainStep"/>, laid out like <see cref="Parameters"/>.</summary>
    Span<float> Gradients { get; }
    /// <summary>Floats per sample over all targets (1 per output trained with sparse categorical cross-entropy).</summary>
    int TargetSize { get; }
    /// <summary>Bytes of those buffers (values, gradients, masks, patches, workspaces; not the weights), as the summary reports them.</summary>
    long BufferBytes { get; }

    /// <summary>One step of training: forward in training mode, loss, backward, optimizer update. Returns the (weighted) loss.</summary>
    float TrainStep(ReadOnlySpan<float> inputs, ReadOnlySpan<float> targets, Training.Optimizer optimizer);

    /// <summary>The outputs of the last <see cref="TrainStep"/>'s training-mode forward pass, a row per sample (for metrics).</summary>
    ReadOnlySpan<float> LastTrainingOutputs { get; }

    /// <summary>A Keras-style summary table computed at compile time.</summary>
    string Summary();

    /// <summary>
    /// A copy of this model for inference only, whose dense kernels are packed once, ahead of every batch, in the order the
    /// matrix kernel reads them, where <see cref="IPredictor.Predict"/> packs them on each call: the same outputs bit for bit,
    /// sooner from a few samples per batch on. The copy holds its own weights, the buffers inference uses (no gradients, masks
    /// or targets) and the packed kernels (about the dense kernels' bytes again; <see cref="InferenceCopy.Bytes"/> counts it
    /// all), and does not follow this model: after training or loading weights, take a new copy.
    /// </summary>
    IPredictor ForInference();
}

/// <summary>What inference needs of a model: its inputs and outputs, its batch capacity and the forward pass.</summary>
public interface IPredictor
{
    /// <summary>The model class's name, used in summaries and error messages.</summary>
    string Name { get; }
    /// <summary>Floats per sample over all inputs (side by side, in declaration order).</summary>
    int InputSize { get; }
    /// <summary>Floats per sample over all outputs.</summary>
    int OutputSize { get; }
    /// <summary>The largest batch the preallocated buffers hold.</summary>
    int MaxBatchSize { get; }
    /// <summary>The model's inputs, in order.</summary>
    IReadOnlyList<ModelInput> Inputs { get; }
    /// <summary>The model's outputs with their losses, in order.</summary>
    IReadOnlyList<ModelOutput> Outputs { get; }

    /// <summary>Inference: writes one row of outputs per row of inputs. The batch is inputs.Length / InputSize.</summary>
    void Predict(ReadOnlySpan<float> inputs, Span<float> outputs);
}

/// <summary>
/// <see cref="IModel.ForInference"/>'s result: a model copy that only predicts, so nothing can change the weights its packed
/// kernels were packed from.
/// </summary>
public sealed class InferenceCopy : IPredictor
{
    private readonly IModel model;

    /// <summary>For generated code: wraps <paramref name="copy"/>, which no one else holds, with its <paramref name="packed"/> kernels.</summary>
    public InferenceCopy(IModel copy, params PackedMatrix?[] packed)
    {
        model = copy;
        foreach (var kernel in packed) PackedBytes += kernel?.Bytes ?? 0;
    }

    public string Name => model.Name;
    public int InputSize => model.InputSize;
    public int OutputSize => model.OutputSize;
    public int MaxBatchSize => model.MaxBatchSize;
    public IReadOnlyList<ModelInput> Inputs => model.Inputs;
    public IReadOnlyList<ModelOutput> Outputs => model.Outputs;
    /// <summary>Bytes of the packed kernels, on top of the copy's weights and buffers.</summary>
    public long PackedBytes { get; }
    /// <summary>Bytes the copy holds: its weights (and gradients, none for a generated model's copy), its buffers and the packed kernels.</summary>
    public long Bytes => (long)(model.Parameters.Length + model.Gradients.Length) * sizeof(float) + model.BufferBytes + PackedBytes;

    public void Predict(ReadOnlySpan<float> inputs, Span<float> outputs) => model.Predict(inputs, outputs);
}
