using System;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>
/// DepthwiseConv2D, directly over NHWC: output channel c·multiplier + m of each position is channel c of the window weighted
/// by depthwise_kernel (ky, kx, c, m). Each output position lists the window cells that fall inside the image, then takes
/// its channels a vector at a time, every cell's multiply-add into registers (forward), or into the kernel's or the
/// input's gradient (backward). The forward pass shares output rows between the cores; backward gives the kernel gradient
/// to one core and the input gradient to the other, so every sum runs in the same order on one core or two.
/// </summary>
public static class DepthwiseConvolution
{
    /// <summary>output = bias + Σ over the window's cells, in (ky, kx) order, of pixel·weight (each a fused multiply-add).</summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Forward(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, ReadOnlySpan<float> bias, Span<float> output, in Window window, int multiplier, int batch)
    {
        int width = window.Channels * multiplier;
        Check(input.Length, kernel.Length, output.Length, window, multiplier, batch, "DepthwiseConv2D");
        Convolution.Require(bias.IsEmpty || bias.Length >= width, "DepthwiseConv2D", window, batch);
        fixed (float* x = input, k = kernel, b = bias, y = output)
        {
            var work = new ForwardRows(new Operands(x, k, y, window, multiplier), b);
            Convolution.ForOutputRows(ref work, window, batch, window.Height * window.Width * window.Channels + window.Positions * width);
        }
    }

    /// <summary>Kernel and bias gradients (=, or += when accumulating) and, unless <paramref name="inputGradient"/> is empty, the input's.</summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Backward(ReadOnlySpan<float> outputGradient, ReadOnlySpan<float> input, ReadOnlySpan<float> kernel,
        Span<float> kernelGradient, Span<float> biasGradient, Span<float> inputGradient, in Window window, int multiplier, int batch,
        bool computeWeights, bool accumulateWeights, bool accumulateInput)
    {
        int width = window.Channels * multiplier, rows = batch * window.Positions;
        Check(input.Length, kernel.Length, outputGradient.Length, window, multiplier, batch, "DepthwiseConv2D backward");
        Convolution.Require((!computeWeights || kernelGradient.Length >= kernel.Length) && (inputGradient.IsEmpty || inputGradient.Length >= input.Length),
            "DepthwiseConv2D backward", window, batch);
        if (computeWeights)
        {
            if (!accumulateWeights) kernelGradient.Slice(0, window.KernelHeight * window.KernelWidth * width).Clear();
            if (!biasGradient.IsEmpty) Reductions.SumRows(outputGradient, biasGradient, rows, width, accumulateWeights);
        }
        bool wantsInput = !inputGradient.IsEmpty;
        if (wantsInput && !accumulateInput) inputGradient.Slice(0, batch * window.Height * window.Width * window.Channels).Clear();
        fixed (float* dy = outputGradient, x = input, k = kernel, dk = kernelGradient, dx = inputGradient)
        {
            var job = new Gradients(new Operands(x, k, dy, window, multiplier), computeWeights ? dk : null, wantsInput ? dx : null, batch);
            if (computeWeights && wantsInput) Helper.For(2, &Gradients.Run, &job); // the kernel's on one core, the input's on the other
            else if (computeWeights || wantsInput) Gradients.Run(&job, computeWeights ? 0 : 1, 0);
        }
    }

    private static void Check(int input, int kernel, int output, in Window window, int multiplier, int batch, string what)
    {
        int width = window.Channels * multiplier;
        Convolution.Require(multiplier >= 1 && input >= batch * window.Height * window.Width * window.Channels && kernel >= window.KernelHeight * window.KernelWidth * width
            && output >= batch * window.Positions * width, what, window, batch);
    }

    /// <summary>The tensors of a pass as pointers (pinned by the caller), readable on either core.</summary>
    private readonly unsafe struct Operands(float* input, float* kernel, float* output, Window window, int multiplier)
    {
        public readonly float* Input = input, Kernel = kernel;
        /// <summary>The output forward; the output gradient backward.</summary>
        public readonly float* Output = output;
        public readonly Window Window = window;
        public readonly int Multiplier = multiplier;
        public int Width => Window.Channels * Multiplier;
    }

    /// <summary>Forward over output rows (of the whole batch).</summary>
    private readonly unsafe struct ForwardRows(Operands operands, float* bias) : IRanges
    {
        private readonly Operands operands = operands;

        public void Run(int first, int count)
        {
            switch (Simd.Current)
            {
                case SimdPath.Avx512: Run<Lanes512, Vector512<float>>(first, count); break;
                case SimdPath.Avx2: Run<Lanes256, Vector256<float>>(first, count); break;
                default: Run<Lanes128, Vector128<float>>(first, count); break;
            }
        }

        private void Run<TLanes, TVector>(int first, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            if (operands.Multiplier == 1) ForwardPositions<TLanes, TVector, Yes>(operands, bias, first, count);
            else ForwardPositions<TLanes, TVector, No>(operands, bias, first, count);
        }
    }

    /// <summary>The backward pass's two independent parts: 0 the kernel gradient, 1 the input gradient (null: not wanted), each over the whole batch.</summary>
    private readonly unsafe struct Gradients(Operands operands, float* kernelGradient, float* inputGradient, int batch)
    {
        private readonly Operands operands = operands;

        public static void Run(void* state, int part, int worker)
        {
            ref readonly var job = ref *(Gradients*)state;
            switch (Simd.Current)
            {
                case SimdPath.Avx512: job.Run<Lanes512, Vector512<float>>(part); break;
                case SimdPath.Avx2: job.Run<Lanes256, Vector256<float>>(part); break;
                default: job.Run<Lanes128, Vector128<float>>(part); break;
            }
        }

        private void Run<TLanes, TVector>(int part) where TLanes : struct, ILanes<TVector> where TVector : struct
        {
            int rows = batch * operands.Window.OutputHeight;
            bool one = operands.Multiplier == 1;
            if (part == 0 && one) KernelGradientPositions<TLanes, TVector, Yes>(operands, kernelGradient, rows);
            else if (part == 0) KernelGradientPositions<TLanes, TVector, No>(operands, kernelGradient, rows);
            else if (one) InputGradientPositions<TLanes, TVector, Yes>(operands, inputGradient, rows);
            else InputGradientPositions<TLanes, TVector, No>(operands, inputGradient, rows);
        }
    }

    /// <summary>
    /// The window cells of output position (<paramref name="oy"/>, <paramref name="ox"/>) that fall inside the image, in (ky,
    /// kx) order: each cell's index and its pixel's offset within the sample. Padding cells add nothing, so they are left out.
    /// </summary>
    private static int InsideCells(in Window window, int oy, int ox, Span<int> cells, Span<int> pixels)
    {
        int count = 0;
        for (int ky = 0; ky < window.KernelHeight; ky++)
        {
            int y = oy * window.StrideHeight + ky * window.Dilation - window.PadTop;
            if (y < 0 || y >= window.Height) continue;
            for (int kx = 0; kx < window.KernelWidth; kx++)
            {
                int x = ox * window.StrideWidth + kx * window.Dilation - window.PadLeft;
                if (x < 0 || x >= window.Width) continue;
                cells[count] = ky * window.KernelWidth + kx;
                pixels[count++] = (y * window.Width + x) * window.Channels;
            }
        }
        return count;
    }

    /// <summary>
    /// The input under output channels [c, c + lanes) at <paramref name="pixel"/>: the pixel's channels themselves with a
    /// multiplier of 1 (<typeparamref name="TOne"/>), else channel c / multiplier for each output channel c, spread through
    /// <paramref name="spread"/> (a vector's floats of the caller's stack).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe TVector Pixel<TLanes, TVector, TOne>(float* pixel, int c, int lanes, int multiplier, float* spread)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        if (TOne.IsSet) return Load<TLanes, TVector>(pixel + c, lanes);
        for (int l = 0; l < lanes; l++) spread[l] = pixel[(c + l) / multiplier];
        return Load<TLanes, TVector>(spread, lanes);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe TVector Load<TLanes, TVector>(float* at, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        lanes == TLanes.Count ? TLanes.Load(ref *at) : TLanes.LoadFirst(ref *at, lanes);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store<TLanes, TVector>(float* at, TVector value, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        if (lanes == TLanes.Count) TLanes.Store(ref *at, value);
        else TLanes.StoreFirst(ref *at, value, lanes);
    }

    /// <summary>Output rows [firstRow, + rows) of the batch: each position's channels a vector at a time, its cells' multiply-adds in registers.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void ForwardPositions<TLanes, TVector, TOne>(in Operands op, float* bias, int firstRow, int rows)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        var window = op.Window;
        int width = op.Width, imageFloats = window.Height * window.Width * window.Channels, size = window.KernelHeight * window.KernelWidth;
        Span<int> cells = stackalloc int[size], pixels = stackalloc int[size];
        float* spread = stackalloc float[TLanes.Count];
        for (int row = firstRow; row < firstRow + rows; row++)
        {
            int sample = row / window.OutputHeight, oy = row % window.OutputHeight;
            float* image = op.Input + (long)sample * imageFloats;
            for (int ox = 0; ox < window.OutputWidth; ox++)
            {
                int inside = InsideCells(window, oy, ox, cells, pixels);
                float* target = op.Output + ((long)row * window.OutputWidth + ox) * width;
                for (int c = 0; c < width; c += TLanes.Count)
                {
                    int lanes = Math.Min(TLanes.Count, width - c);
                    var sum = bias == null ? TLanes.Zero : Load<TLanes, TVector>(bias + c, lanes);
                    for (int i = 0; i < inside; i++)
                        sum = TLanes.MultiplyAdd(Pixel<TLanes, TVector, TOne>(image + pixels[i], c, lanes, op.Multiplier, spread), Load<TLanes, TVector>(op.Kernel + cells[i] * width + c, lanes), sum);
                    Store<TLanes, TVector>(target + c, sum, lanes);
                }
            }
        }
    }

    /// <summary>kernelGradient[cell] += gradient·pixel over every position of the batch, in order (each product rounded, then added).</summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void KernelGradientPositions<TLanes, TVector, TOne>(in Operands op, float* kernelGradient, int rows)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        var window = op.Window;
        int width = op.Width, imageFloats = window.Height * window.Width * window.Channels, size = window.KernelHeight * window.KernelWidth;
        Span<int> cells = stackalloc int[size], pixels = stackalloc int[size];
        float* spread = stackalloc float[TLanes.Count];
        for (int row = 0; row < rows; row++)
        {
            int sample = row / window.OutputHeight, oy = row % window.OutputHeight;
            float* image = op.Input + (long)sample * imageFloats;
            for (int ox = 0; ox < window.OutputWidth; ox++)
            {
                int inside = InsideCells(window, oy, ox, cells, pixels);
                float* gradient = op.Output + ((long)row * window.OutputWidth + ox) * width;
                for (int c = 0; c < width; c += TLanes.Count)
                {
                    int lanes = Math.Min(TLanes.Count, width - c);
                    var g = Load<TLanes, TVector>(gradient + c, lanes);
                    for (int i = 0; i < inside; i++)
                    {
                        float* weight = kernelGradient + cells[i] * width + c;
                        var product = TLanes.Multiply(g, Pixel<TLanes, TVector, TOne>(image + pixels[i], c, lanes, op.Multiplier, spread));
                        Store<TLanes, TVector>(weight, TLanes.Add(Load<TLanes, TVector>(weight, lanes), product), lanes);
                    }
                }
            }
        }
    }

    /// <summary>
    /// inputGradient[pixel] += gradient·weight over every position of the batch, in order (each product rounded, then added);
    /// with a multiplier, a pixel's channel takes its output channels' products one after the other.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void InputGradientPositions<TLanes, TVector, TOne>(in Operands op, float* inputGradient, int rows)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        var window = op.Window;
        int width = op.Width, imageFloats = window.Height * window.Width * window.Channels, size = window.KernelHeight * window.KernelWidth;
        Span<int> cells = stackalloc int[size], pixels = stackalloc int[size];
        float* products = stackalloc float[TLanes.Count];
        for (int row = 0; row < rows; row++)
        {
            int sample = row / window.OutputHeight, oy = row % window.OutputHeight;
            float* image = inputGradient + (long)sample * imageFloats;
            for (int ox = 0; ox < window.OutputWidth; ox++)
            {
                int inside = InsideCells(window, oy, ox, cells, pixels);
                float* gradient = op.Output + ((long)row * window.OutputWidth + ox) * width;
                for (int c = 0; c < width; c += TLanes.Count)
                {
                    int lanes = Math.Min(TLanes.Count, width - c);
                    var g = Load<TLanes, TVector>(gradient + c, lanes);
                    for (int i = 0; i < inside; i++)
                    {
                        var product = TLanes.Multiply(g, Load<TLanes, TVector>(op.Kernel + cells[i] * width + c, lanes));
                        float* pixel = image + pixels[i];
                        if (TOne.IsSet)
                        {
                            Store<TLanes, TVector>(pixel + c, TLanes.Add(Load<TLanes, TVector>(pixel + c, lanes), product), lanes);
                            continue;
                        }
                        Store<TLanes, TVector>(products, product, lanes);
                        for (int l = 0; l < lanes; l++) pixel[(c + l) / op.Multiplier] += products[l];
                    }
                }
            }
        }
    }
}
