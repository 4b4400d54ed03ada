using System;

namespace ModelGen;

/// <summary>
/// A symbolic tensor in a [Graph] method. Graph methods are read by the generator at compile time and never
/// run, so nothing here computes: it only gives the wiring code its types.
/// </summary>
public sealed class Tensor
{
    private Tensor() { }

    internal static Exception NotExecutable() => new InvalidOperationException(
        "A [Graph] method describes the model's wiring for the generator and is never run; call Predict, TrainStep or Fit instead.");
}

/// <summary>
/// Merges and activation functions for [Graph] methods, named as Keras 3's <c>keras.ops</c> (which work on symbolic
/// tensors in functional models). Not <c>Layers</c>: inside a model class that name is the model's own layer list.
/// </summary>
public static class Ops
{
    public static Tensor Add(params Tensor[] inputs) => throw Tensor.NotExecutable();
    public static Tensor Subtract(Tensor a, Tensor b) => throw Tensor.NotExecutable();
    public static Tensor Multiply(params Tensor[] inputs) => throw Tensor.NotExecutable();
    public static Tensor Average(params Tensor[] inputs) => throw Tensor.NotExecutable();
    public static Tensor Maximum(params Tensor[] inputs) => throw Tensor.NotExecutable();
    public static Tensor Minimum(params Tensor[] inputs) => throw Tensor.NotExecutable();
    /// <summary>Joins tensors along the last axis (Keras' default axis=-1).</summary>
    public static Tensor Concatenate(params Tensor[] inputs) => throw Tensor.NotExecutable();
    /// <summary>Joins tensors along <paramref name="axis"/>, counted as Keras does: 0 is the batch, -1 the last axis.</summary>
    public static Tensor Concatenate(int axis, params Tensor[] inputs) => throw Tensor.NotExecutable();
    /// <summary>Per-sample dot product of two flat tensors of one shape (Keras' Dot(axes=1)): shape (None, 1).</summary>
    public static Tensor Dot(Tensor a, Tensor b) => throw Tensor.NotExecutable();
    public static Tensor Relu(Tensor x) => throw Tensor.NotExecutable();
    public static Tensor Sigmoid(Tensor x) => throw Tensor.NotExecutable();
    public static Tensor Tanh(Tensor x) => throw Tensor.NotExecutable();
    public static Tensor Softmax(Tensor x) => throw Tensor.NotExecutable();
}
