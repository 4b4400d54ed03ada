using System;
using System.Runtime.CompilerServices;
using ModelGen.Kernels;

namespace ModelGen.Training;

/// <summary>Argument checks shared by every generated model; messages name the model, the layer and the expected shape.</summary>
public static class Guard
{
    /// <summary>Returns the batch size implied by <paramref name="length"/> input floats, or throws.</summary>
    [MethodImpl(Compiled.Driver)]
    public static int Batch(string model, string inputLayer, int length, int inputSize, int maxBatchSize)
    {
        if (length == 0 || length % inputSize != 0)
        {
            throw new ArgumentException(
                $"{model}: inputs has {length} values, not a whole number of samples for input layer '{inputLayer}' of shape (batch, {inputSize}).", "inputs");
        }
        int batch = length / inputSize;
        if (batch > maxBatchSize)
        {
            throw new ArgumentException(
                $"{model}: a batch of {batch} samples is larger than the {maxBatchSize} this model was constructed for " +
                $"(input layer '{inputLayer}' takes at most ({maxBatchSize}, {inputSize})); construct it with a larger maxBatchSize.", "inputs");
        }
        return batch;
    }

    /// <summary>Checks that a per-sample buffer holds exactly <paramref name="batch"/> rows of <paramref name="width"/>.</summary>
    [MethodImpl(Compiled.Driver)]
    public static void Length(string model, string layer, string argument, int length, int batch, int width)
    {
        if (length != batch * width)
        {
            throw new ArgumentException(
                $"{model}: {argument} has {length} values, but output layer '{layer}' needs shape ({batch}, {width}) = {batch * width} for this batch.", argument);
        }
    }

    [MethodImpl(Compiled.Driver)]
    public static void FiniteLoss(string model, float loss)
    {
        if (!float.IsFinite(loss))
        {
            throw new ArithmeticException($"{model}: the loss is {loss}; the step was not applied and the weights are unchanged. Check the inputs and targets for NaN or infinities, or lower the learning rate.");
        }
    }
}
