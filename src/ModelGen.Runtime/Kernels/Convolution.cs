using System;

namespace ModelGen.Kernels;

/// <summary>
/// The geometry of a 2-D convolution or pooling window over channels-last (NHWC) samples, as Keras computes it:
/// "valid" uses only whole windows; "same" pads so that output = ceil(input / stride), the extra row or column
/// going to the bottom/right.
/// </summary>
public readonly record struct Window(int Height, int Width, int Channels, int KernelHeight, int KernelWidth, int StrideHeight, int StrideWidth, bool Same)
{
    public int OutputHeight => Same ? (Height + StrideHeight - 1) / StrideHeight : (Height - KernelHeight) / StrideHeight + 1;
    public int OutputWidth => Same ? (Width + StrideWidth - 1) / StrideWidth : (Width - KernelWidth) / StrideWidth + 1;
    public int PadTop => Same ? Math.Max((OutputHeight - 1) * StrideHeight + KernelHeight - Height, 0) / 2 : 0;
    public int PadLeft => Same ? Math.Max((OutputWidth - 1) * StrideWidth + KernelWidth - Width, 0) / 2 : 0;
    /// <summary>Floats in one patch: a kernel-sized window over all input channels.</summary>
    public int PatchSize => KernelHeight * KernelWidth * Channels;
    public int Positions => OutputHeight * OutputWidth;
}

/// <summary>
/// Conv2D as im2col + GEMM: each output position's input window is copied into a row of a patch matrix
/// (positions x kh·kw·cin, zeros where the window hangs over the padding), so the convolution is one product with
/// the Keras-layout kernel (kh, kw, cin, cout) and the result is already NHWC. The backward pass scatters patch
/// gradients back (col2im).
/// </summary>
public static class Convolution
{
    /// <summary>Fills <paramref name="patches"/> (batch·positions rows of PatchSize) from <paramref name="input"/> (batch, H, W, C).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Im2Col(ReadOnlySpan<float> input, Span<float> patches, in Window window, int batch)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int channels = window.Channels;
        int row = 0;
        for (int sample = 0; sample < batch; sample++)
        {
            var image = input.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++, row++)
                {
                    var patch = patches.Slice(row * window.PatchSize, window.PatchSize);
                    int column = 0;
                    for (int ky = 0; ky < window.KernelHeight; ky++)
                    {
                        int y = oy * window.StrideHeight + ky - window.PadTop;
                        for (int kx = 0; kx < window.KernelWidth; kx++, column += channels)
                        {
                            int x = ox * window.StrideWidth + kx - window.PadLeft;
                            var target = patch.Slice(column, channels);
                            if (y < 0 || y >= window.Height || x < 0 || x >= window.Width) target.Clear();
                            else image.Slice((y * window.Width + x) * channels, channels).CopyTo(target);
                        }
                    }
                }
            }
        }
    }

    /// <summary>The inverse scatter: adds each patch-gradient row back onto the input positions it was copied from.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void Col2Im(ReadOnlySpan<float> patchGradients, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int channels = window.Channels;
        if (!accumulate) inputGradient.Slice(0, batch * inputSize).Clear();
        int row = 0;
        for (int sample = 0; sample < batch; sample++)
        {
            var image = inputGradient.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++, row++)
                {
                    var patch = patchGradients.Slice(row * window.PatchSize, window.PatchSize);
                    int column = 0;
                    for (int ky = 0; ky < window.KernelHeight; ky++)
                    {
                        int y = oy * window.StrideHeight + ky - window.PadTop;
                        for (int kx = 0; kx < window.KernelWidth; kx++, column += channels)
                        {
                            int x = ox * window.StrideWidth + kx - window.PadLeft;
                            if (y < 0 || y >= window.Height || x < 0 || x >= window.Width) continue;
                            var target = image.Slice((y * window.Width + x) * channels, channels);
                            System.Numerics.Tensors.TensorPrimitives.Add(target, patch.Slice(column, channels), target);
                        }
                    }
                }
            }
        }
    }
}

/// <summary>MaxPooling2D over NHWC samples: each output is its window's maximum; the backward pass routes the gradient to it.</summary>
public static class Pooling
{
    /// <summary>Writes maxima and, in <paramref name="winners"/>, each maximum's index within its sample (for the backward pass).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void MaxForward(ReadOnlySpan<float> input, Span<float> output, Span<int> winners, in Window window, int batch)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        for (int sample = 0; sample < batch; sample++)
        {
            var image = input.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++)
                {
                    for (int c = 0; c < window.Channels; c++)
                    {
                        float best = float.NegativeInfinity;
                        int winner = -1;
                        for (int ky = 0; ky < window.KernelHeight; ky++)
                        {
                            int y = oy * window.StrideHeight + ky - window.PadTop;
                            if (y < 0 || y >= window.Height) continue;
                            for (int kx = 0; kx < window.KernelWidth; kx++)
                            {
                                int x = ox * window.StrideWidth + kx - window.PadLeft;
                                if (x < 0 || x >= window.Width) continue;
                                int index = (y * window.Width + x) * window.Channels + c;
                                if (image[index] > best || winner < 0) { best = image[index]; winner = index; }
                            }
                        }
                        int at = sample * outputSize + (oy * window.OutputWidth + ox) * window.Channels + c;
                        output[at] = best;
                        winners[at] = winner;
                    }
                }
            }
        }
    }

    public static void MaxBackward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<int> winners, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        if (!accumulate) inputGradient.Slice(0, batch * inputSize).Clear();
        for (int sample = 0; sample < batch; sample++)
        {
            for (int i = 0; i < outputSize; i++)
            {
                int at = sample * outputSize + i;
                inputGradient[sample * inputSize + winners[at]] += outputGradient[at];
            }
        }
    }

    /// <summary>Average pooling as Keras computes it: with 'same' padding each window averages only the pixels inside the image.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public static void AverageForward(ReadOnlySpan<float> input, Span<float> output, in Window window, int batch)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        for (int sample = 0; sample < batch; sample++)
        {
            var image = input.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++)
                {
                    var target = output.Slice(sample * outputSize + (oy * window.OutputWidth + ox) * window.Channels, window.Channels);
                    target.Clear();
                    int count = 0;
                    for (int ky = 0; ky < window.KernelHeight; ky++)
                    {
                        int y = oy * window.StrideHeight + ky - window.PadTop;
                        if (y < 0 || y >= window.Height) continue;
                        for (int kx = 0; kx < window.KernelWidth; kx++)
                        {
                            int x = ox * window.StrideWidth + kx - window.PadLeft;
                            if (x < 0 || x >= window.Width) continue;
                            System.Numerics.Tensors.TensorPrimitives.Add(target, image.Slice((y * window.Width + x) * window.Channels, window.Channels), target);
                            count++;
                        }
                    }
                    System.Numerics.Tensors.TensorPrimitives.Multiply(target, 1f / count, target);
                }
            }
        }
    }

    /// <summary>Each window's gradient, shared equally among the pixels it averaged.</summary>
    public static void AverageBackward(ReadOnlySpan<float> outputGradient, Span<float> inputGradient, in Window window, int batch, bool accumulate)
    {
        int inputSize = window.Height * window.Width * window.Channels;
        int outputSize = window.Positions * window.Channels;
        if (!accumulate) inputGradient.Slice(0, batch * inputSize).Clear();
        for (int sample = 0; sample < batch; sample++)
        {
            var image = inputGradient.Slice(sample * inputSize, inputSize);
            for (int oy = 0; oy < window.OutputHeight; oy++)
            {
                for (int ox = 0; ox < window.OutputWidth; ox++)
                {
                    int y0 = oy * window.StrideHeight - window.PadTop, x0 = ox * window.StrideWidth - window.PadLeft;
                    int count = (Math.Min(y0 + window.KernelHeight, window.Height) - Math.Max(y0, 0)) * (Math.Min(x0 + window.KernelWidth, window.Width) - Math.Max(x0, 0));
                    var gradient = outputGradient.Slice(sample * outputSize + (oy * window.OutputWidth + ox) * window.Channels, window.Channels);
                    for (int y = Math.Max(y0, 0); y < Math.Min(y0 + window.KernelHeight, window.Height); y++)
                    {
                        for (int x = Math.Max(x0, 0); x < Math.Min(x0 + window.KernelWidth, window.Width); x++)
                        {
                            var target = image.Slice((y * window.Width + x) * window.Channels, window.Channels);
                            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(gradient, 1f / count, target, target);
                        }
                    }
                }
            }
        }
    }
}
