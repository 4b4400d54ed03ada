using System;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace ModelGen.Kernels;

/// <summary>
/// DepthwiseConv2D, directly over NHWC: output channel c·multiplier + m of each position is channel c of the window weighted
/// by depthwise_kernel (ky, kx, c, m). The windows are walked as im2col walks them (the same loop nest, runs of whole kernel
/// rows), without building the patch matrix; with a multiplier of 1 each kernel cell is one vector multiply-add.
/// </summary>
public static class DepthwiseConvolution
{
    [MethodImpl(Compiled.Kernel)]
    public static void Forward(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, ReadOnlySpan<float> bias, Span<float> output, in Window window, int multiplier, int batch)
    {
        int width = window.Channels * multiplier, rows = batch * window.Positions;
        for (int row = 0; row < rows; row++)
        {
            var target = output.Slice(row * width, width);
            if (bias.IsEmpty) target.Clear();
            else bias.Slice(0, width).CopyTo(target);
        }
        var cells = new Cells(input, kernel, output, default, default, default, window, multiplier);
        Convolution.Walk(window, 0, rows, ref cells);
    }

    /// <summary>Kernel and bias gradients (=, or += when accumulating) and, unless <paramref name="inputGradient"/> is empty, the input's.</summary>
    [MethodImpl(Compiled.Kernel)]
    public static void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> input, ReadOnlySpan<float> kernel,
        Span<float> kernelGradient, Span<float> biasGradient, Span<float> inputGradient, in Window window, int multiplier, int batch,
        bool computeWeights, bool accumulateWeights, bool accumulateInput)
    {
        int width = window.Channels * multiplier, rows = batch * window.Positions;
        if (computeWeights)
        {
            if (!accumulateWeights) kernelGradient.Slice(0, window.KernelHeight * window.KernelWidth * width).Clear();
            if (!biasGradient.IsEmpty) Reductions.SumRows(outputGradient, biasGradient, rows, width, accumulateWeights);
        }
        if (!inputGradient.IsEmpty && !accumulateInput) inputGradient.Slice(0, batch * window.Height * window.Width * window.Channels).Clear();
        var cells = new Cells(input, kernel, default, outputGradient, computeWeights ? kernelGradient : default, inputGradient, window, multiplier);
        Convolution.Walk(window, 0, rows, ref cells);
    }

    /// <summary>
    /// One run of window cells against one output position. Forward (an output given) adds pixel·weight into it; backward
    /// (an output gradient given) adds gradient·pixel into the kernel gradient and gradient·weight into the input gradient.
    /// </summary>
    private ref struct Cells(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, Span<float> output, ReadOnlySpan<float> outputGradient,
        Span<float> kernelGradient, Span<float> inputGradient, in Window window, int multiplier) : Convolution.ICell
    {
        private readonly ReadOnlySpan<float> input = input, kernel = kernel, outputGradient = outputGradient;
        private readonly Span<float> output = output, kernelGradient = kernelGradient, inputGradient = inputGradient;
        private readonly int channels = window.Channels, patchSize = window.PatchSize, width = window.Channels * multiplier;

        public readonly void Visit(int patchOffset, int imageOffset, int length)
        {
            if (imageOffset < 0) return; // padding: zeros in, nothing out
            int position = patchOffset / patchSize * width, firstCell = patchOffset % patchSize / channels;
            for (int j = 0; j < length / channels; j++)
            {
                int pixel = imageOffset + j * channels, cell = (firstCell + j) * width;
                if (outputGradient.IsEmpty)
                {
                    var target = output.Slice(position, width);
                    if (multiplier == 1) System.Numerics.Tensors.TensorPrimitives.FusedMultiplyAdd(input.Slice(pixel, channels), kernel.Slice(cell, width), target, target);
                    else for (int c = 0; c < width; c++) target[c] += input[pixel + c / multiplier] * kernel[cell + c];
                    continue;
                }
                for (int c = 0; c < width; c++)
                {
                    float g = outputGradient[position + c];
                    if (!kernelGradient.IsEmpty) kernelGradient[cell + c] += g * input[pixel + c / multiplier];
                    if (!inputGradient.IsEmpty) inputGradient[pixel + c / multiplier] += g * kernel[cell + c];
                }
            }
        }
    }
}
