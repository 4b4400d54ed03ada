using System;
using System.Collections.Generic;

namespace ModelGen.Kernels;

/// <summary>What a kernel keeps between a model's forward and backward passes in buffers of its own (a recurrent layer's states).</summary>
public interface IWorkspace
{
    long Bytes { get; }

    /// <summary>Whether it has what a backward pass needs: false in a copy that only predicts, which allocates none of it.</summary>
    bool ForTraining { get; }
}

internal static class Workspaces
{
    /// <summary>Throws unless <paramref name="work"/> was made for training (a backward pass through a predicting copy's layer).</summary>
    public static void RequireTraining(IWorkspace work, string layer)
    {
        if (!work.ForTraining) throw new InvalidOperationException($"This {layer} workspace was made for inference only: it has nothing a backward pass needs.");
    }
}

/// <summary>
/// A workspace's arrays, counted as they are allocated, so its <see cref="IWorkspace.Bytes"/> cannot miss one; each on a
/// cache line, as a model's other buffers are (<see cref="AlignedBuffer"/>).
/// </summary>
internal sealed class CountedArrays(bool forTraining)
{
    public long Bytes { get; private set; }

    public AlignedBuffer Floats(int length)
    {
        Bytes += (long)length * sizeof(float);
        return length == 0 ? AlignedBuffer.Empty : new AlignedBuffer(length);
    }

    /// <summary>Floats only a backward pass uses: none in a workspace for inference (as <see cref="ModelBuffers.TrainingFloats"/>).</summary>
    public AlignedBuffer TrainingFloats(int length) => Floats(forTraining ? length : 0);
}

/// <summary>
/// Allocates a generated model's buffers, all in its constructor, and counts their bytes for the summary: values, gradients,
/// masks, patches, pooling winners and workspaces (not the weights, which the summary counts as parameters).
/// </summary>
public sealed class ModelBuffers
{
    private readonly AlignedBuffer sharedGradients, sharedValues;

    /// <param name="sharedGradientFloats">Floats of the buffer that the tensors' gradients share by liveness (<see cref="Gradient"/>).</param>
    /// <param name="sharedValueFloats">Floats of the buffer that a copy that only predicts shares its values in by liveness (<see cref="Value"/>).</param>
    /// <param name="forTraining">False for a copy that only predicts (<see cref="IModel.ForInference"/>): it gets no gradients, masks, targets, patches or winners.</param>
    public ModelBuffers(int sharedGradientFloats = 0, int sharedValueFloats = 0, bool forTraining = true)
    {
        ForTraining = forTraining;
        sharedGradients = TrainingFloats(sharedGradientFloats);
        sharedValues = forTraining ? None : Floats(sharedValueFloats);
    }

    /// <summary>Whether the buffers are for a model that trains; only then do <see cref="TrainingFloats"/> and <see cref="Gradient"/> hold floats.</summary>
    public bool ForTraining { get; }

    public long Bytes { get; private set; }

    /// <summary>Floats only training uses (a dropout mask, targets): none in a copy that only predicts.</summary>
    public AlignedBuffer TrainingFloats(int length) => ForTraining ? Floats(length) : None;

    /// <summary>A tensor's gradient, floats [<paramref name="offset"/>, +<paramref name="length"/>) of the shared gradients: none in a copy that only predicts.</summary>
    public AlignedBuffer Gradient(int offset, int length) => ForTraining ? sharedGradients.Slice(offset, length) : None;

    /// <summary>
    /// A tensor's value: a buffer of its own in a model that trains (backward reads the values forward leaves); in a copy that
    /// only predicts, floats [<paramref name="offset"/>, +<paramref name="length"/>) of the values it shares by liveness.
    /// </summary>
    public AlignedBuffer Value(int offset, int length) => ForTraining ? Floats(length) : sharedValues.Slice(offset, length);

    /// <summary>Ints only training uses (a max pooling's winners): none in a copy that only predicts.</summary>
    public int[] TrainingInts(int length) => ForTraining ? Ints(length) : [];

    /// <summary>
    /// A Conv2D's patches for a batch, which its kernel gradient reads: none in a copy that only predicts, where a convolution
    /// through im2col builds each part's patches in a scratch of its own (Convolution.ForwardThroughPatches).
    /// </summary>
    public AlignedBuffer Patches(in Window window, int maxBatchSize) => TrainingFloats(maxBatchSize * window.Positions * window.PatchSize);

    /// <summary>
    /// The output of a Conv2D that only a MaxPooling2D reads (<paramref name="window"/>, then <paramref name="pool"/>): none
    /// where both passes take each window's maximum, and its winner, in registers on every SIMD path (the backward pass
    /// never reads it: the pooling takes the ReLU's derivative on its own output).
    /// </summary>
    public AlignedBuffer PooledConvolution(in Window window, in Window pool, int length) =>
        Convolution.PoolsInRegistersOnEveryPath(window, pool) ? None : Floats(length);

    /// <summary>
    /// A tensor no pass writes: an Embedding's lookups that only a GlobalAveragePooling1D reads, which averages the table's
    /// rows where they lie (EmbeddingKernel.MeanForward).
    /// </summary>
    public AlignedBuffer Unwritten => None;

    /// <summary>No floats, shared: what a copy that only predicts gets for a training buffer, and a tensor that no pass writes.</summary>
    private static readonly AlignedBuffer None = new(0);

    public AlignedBuffer Floats(int length)
    {
        Bytes += (long)length * sizeof(float);
        return new AlignedBuffer(length);
    }

    public int[] Ints(int length)
    {
        Bytes += (long)length * sizeof(int);
        return new int[length];
    }

    public T Workspace<T>(T workspace) where T : IWorkspace
    {
        Bytes += workspace.Bytes;
        return workspace;
    }

    /// <summary>
    /// The summary's line under the parameter counts: the buffers for the model's largest batch and, where sharing by
    /// liveness saves memory, what the gradients (and an inference copy's values) take against one buffer per tensor (where
    /// it would not, the generator gives each tensor its own buffer and passes the same count twice).
    /// </summary>
    public static string Describe(int maxBatchSize, long bytes, int gradientFloats, int separateGradientFloats, int valueFloats = 0, int separateValueFloats = 0)
    {
        string Sharing(string what, int shared, int separate) =>
            $"{what} sharing {MemorySize.Readable((long)maxBatchSize * shared * sizeof(float))} by liveness, against {MemorySize.Readable((long)maxBatchSize * separate * sizeof(float))} one per tensor";
        var savings = new List<string>();
        if (gradientFloats < separateGradientFloats) savings.Add(Sharing("gradients", gradientFloats, separateGradientFloats));
        if (valueFloats < separateValueFloats) savings.Add(Sharing("an inference copy's values", valueFloats, separateValueFloats));
        string line = $" Buffers for batches of up to {maxBatchSize}: {MemorySize.Readable(bytes)}";
        return savings.Count == 0 ? line : line + $" ({string.Join("; ", savings)})";
    }
}
