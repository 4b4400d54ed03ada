using System;
using System.Collections.Generic;

namespace ModelGen;

/// <summary>
/// What every generated model implements. The generator emits only what depends on a model's shapes
/// (forward, backward, buffers); everything generic — <c>Fit</c>, <c>Evaluate</c>, weights I/O — is written
/// once in the runtime over this interface (<see cref="ModelExtensions"/>).
/// </summary>
public interface IModel
{
    /// <summary>The model class's name, used in summaries and error messages.</summary>
    string Name { get; }
    /// <summary>Every layer in order, named after the user's fields.</summary>
    IReadOnlyList<Layer> Layers { get; }
    /// <summary>All parameters, contiguous and starting on a cache line; layers' <see cref="Parameter"/>s are views into it.</summary>
    Span<float> Parameters { get; }
    /// <summary>How many floats at the start of <see cref="Parameters"/> the optimizer updates; moving statistics and frozen weights follow them.</summary>
    int TrainableParameterCount { get; }
    /// <summary>The gradient of the last <see cref="TrainStep"/>, laid out like <see cref="Parameters"/>.</summary>
    Span<float> Gradients { get; }
    /// <summary>Floats per sample over all inputs (side by side, in declaration order).</summary>
    int InputSize { get; }
    /// <summary>Floats per sample over all outputs.</summary>
    int OutputSize { get; }
    /// <summary>Floats per sample over all targets (1 per output trained with sparse categorical cross-entropy).</summary>
    int TargetSize { get; }
    /// <summary>The largest batch the preallocated buffers hold.</summary>
    int MaxBatchSize { get; }
    /// <summary>Bytes of those buffers (values, gradients, masks, patches, workspaces; not the weights), as the summary reports them.</summary>
    long BufferBytes { get; }
    /// <summary>The model's inputs, in order.</summary>
    IReadOnlyList<ModelInput> Inputs { get; }
    /// <summary>The model's outputs with their losses, in order.</summary>
    IReadOnlyList<ModelOutput> Outputs { get; }

    /// <summary>Inference: writes one row of outputs per row of inputs. The batch is inputs.Length / InputSize.</summary>
    void Predict(ReadOnlySpan<float> inputs, Span<float> outputs);

    /// <summary>One step of training: forward in training mode, loss, backward, optimizer update. Returns the (weighted) loss.</summary>
    float TrainStep(ReadOnlySpan<float> inputs, ReadOnlySpan<float> targets, Training.Optimizer optimizer);

    /// <summary>The outputs of the last <see cref="TrainStep"/>'s training-mode forward pass, a row per sample (for metrics).</summary>
    ReadOnlySpan<float> LastTrainingOutputs { get; }

    /// <summary>A Keras-style summary table computed at compile time.</summary>
    string Summary();
}
