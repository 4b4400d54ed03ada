using System;
using System.Numerics.Tensors;

namespace ModelGen.Kernels;

/// <summary>ZeroPadding2D: each input row lands, whole, inside a zero frame; backward reads it back out.</summary>
public static class ZeroPadding
{
    public static void Forward(ReadOnlySpan<float> input, Span<float> output, int height, int width, int channels, int top, int bottom, int left, int right, int batch)
    {
        int row = width * channels, outputRow = (width + left + right) * channels;
        int imageSize = height * row, outputSize = (height + top + bottom) * outputRow;
        output.Slice(0, batch * outputSize).Clear();
        for (int n = 0; n < batch; n++)
        {
            for (int y = 0; y < height; y++)
            {
                input.Slice(n * imageSize + y * row, row).CopyTo(output.Slice(n * outputSize + (y + top) * outputRow + left * channels, row));
            }
        }
    }

    public static void Backward(ReadOnlySpan<float> outputGradient, Span<float> inputGradient, int height, int width, int channels, int top, int bottom, int left, int right, int batch, bool accumulate)
    {
        int row = width * channels, outputRow = (width + left + right) * channels;
        int imageSize = height * row, outputSize = (height + top + bottom) * outputRow;
        for (int n = 0; n < batch; n++)
        {
            for (int y = 0; y < height; y++)
            {
                Merges.Pass(outputGradient.Slice(n * outputSize + (y + top) * outputRow + left * channels, row), inputGradient.Slice(n * imageSize + y * row, row), row, accumulate);
            }
        }
    }
}

/// <summary>UpSampling2D (nearest): each pixel repeated into a rows x columns block; backward sums each block.</summary>
public static class UpSampling
{
    public static void Forward(ReadOnlySpan<float> input, Span<float> output, int height, int width, int channels, int rows, int columns, int batch)
    {
        int outputWidth = width * columns, outputRow = outputWidth * channels;
        for (int n = 0; n < batch; n++)
        {
            for (int y = 0; y < height; y++)
            {
                // Build the first copy of the output row, then repeat it for the block's other rows.
                var first = output.Slice((n * height * rows + y * rows) * outputRow, outputRow);
                for (int x = 0; x < width; x++)
                {
                    var pixel = input.Slice(((n * height + y) * width + x) * channels, channels);
                    for (int c = 0; c < columns; c++) pixel.CopyTo(first.Slice((x * columns + c) * channels, channels));
                }
                for (int r = 1; r < rows; r++) first.CopyTo(output.Slice((n * height * rows + y * rows + r) * outputRow, outputRow));
            }
        }
    }

    public static void Backward(ReadOnlySpan<float> outputGradient, Span<float> inputGradient, int height, int width, int channels, int rows, int columns, int batch, bool accumulate)
    {
        int outputRow = width * columns * channels;
        if (!accumulate) inputGradient.Slice(0, batch * height * width * channels).Clear();
        for (int n = 0; n < batch; n++)
        {
            for (int y = 0; y < height; y++)
            {
                for (int r = 0; r < rows; r++)
                {
                    var source = outputGradient.Slice((n * height * rows + y * rows + r) * outputRow, outputRow);
                    for (int x = 0; x < width; x++)
                    {
                        var pixel = inputGradient.Slice(((n * height + y) * width + x) * channels, channels);
                        for (int c = 0; c < columns; c++) TensorPrimitives.Add(pixel, source.Slice((x * columns + c) * channels, channels), pixel);
                    }
                }
            }
        }
    }
}
