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
    /// <summary>
    /// output = bias + Σ over the window's cells, in (ky, kx) order, of pixel·weight (each a fused multiply-add), then ReLU
    /// where <paramref name="relu"/> (as Conv2D takes it, in the same pass).
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Forward(ReadOnlySpan<float> input, ReadOnlySpan<float> kernel, ReadOnlySpan<float> bias, Span<float> output, in Window window, int multiplier, int batch,
        bool relu = false)
    {
        int width = window.Channels * multiplier;
        Check(input.Length, kernel.Length, output.Length, window, multiplier, batch, "DepthwiseConv2D");
        Convolution.Require(bias.IsEmpty || bias.Length >= width, "DepthwiseConv2D", window, batch);
        fixed (float* x = input, k = kernel, b = bias, y = output)
        {
            var work = new ForwardRows(new Operands(x, k, y, window, multiplier), bias.IsEmpty ? null : b, relu);
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
        fixed (float* dy = outputGradient, x = input, k = kernel, dk = kernelGradient, dx = inputGradient)
        {
            var job = new Gradients(new Operands(x, k, dy, window, multiplier), computeWeights ? dk : null, wantsInput ? dx : null, batch, accumulateInput);
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
        /// <summary>Floats of one sample's image (and of its gradient).</summary>
        public long ImageFloats => (long)Window.Height * Window.Width * Window.Channels;
    }

    /// <summary>Forward over output rows (of the whole batch).</summary>
    private readonly unsafe struct ForwardRows(Operands operands, float* bias, bool relu) : IRanges
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
            float* spread = stackalloc float[TLanes.Count];
            if (operands.Multiplier == 1) OverPositions(operands.Window, first, count, new Sums<TLanes, TVector, Yes>(operands, bias, relu, spread));
            else OverPositions(operands.Window, first, count, new Sums<TLanes, TVector, No>(operands, bias, relu, spread));
        }
    }

    /// <summary>
    /// The backward pass's two independent parts: 0 the kernel gradient, 1 the input gradient (null: not wanted), each over
    /// the whole batch. Unless it accumulates, the input gradient's part clears each sample's gradient just before it adds
    /// onto it, on its own core and in its cache (cleared up front, the MobileNet block's 3 MB took 2.6% of a training step
    /// on one core while the other waited).
    /// </summary>
    private readonly unsafe struct Gradients(Operands operands, float* kernelGradient, float* inputGradient, int batch, bool accumulateInput)
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
            int sampleRows = operands.Window.OutputHeight;
            float* spread = stackalloc float[TLanes.Count];
            bool one = operands.Multiplier == 1;
            if (part == 0)
            {
                if (one) OverPositions(operands.Window, 0, batch * sampleRows, new KernelGradient<TLanes, TVector, Yes>(operands, kernelGradient, spread));
                else OverPositions(operands.Window, 0, batch * sampleRows, new KernelGradient<TLanes, TVector, No>(operands, kernelGradient, spread));
                return;
            }
            for (int sample = 0; sample < batch; sample++)
            {
                if (!accumulateInput) new Span<float>(inputGradient + sample * operands.ImageFloats, (int)operands.ImageFloats).Clear();
                if (one) OverPositions(operands.Window, sample * sampleRows, sampleRows, new InputGradient<TLanes, TVector, Yes>(operands, inputGradient, spread));
                else OverPositions(operands.Window, sample * sampleRows, sampleRows, new InputGradient<TLanes, TVector, No>(operands, inputGradient, spread));
            }
        }
    }

    /// <summary>What a pass does at one output position, given the window's cells inside the image (<see cref="Window.InsideCells"/>).</summary>
    private interface IPositionPass
    {
        /// <param name="position">The position's index over the whole batch: its row of the output (or its gradient).</param>
        /// <param name="sample">The sample whose image the pixels lie in.</param>
        /// <param name="pixels">Each cell's pixel, <paramref name="origin"/> + the offset given, within the sample.</param>
        void At(long position, int sample, ReadOnlySpan<int> cells, int origin, ReadOnlySpan<int> pixels);
    }

    /// <summary>
    /// Every output position of output rows [firstRow, + rows) of the batch, in order. A window wholly inside the image takes
    /// every cell at offsets fixed from its first pixel, listed once; only windows over the padding list their cells.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void OverPositions<TPass>(in Window window, int firstRow, int rows, TPass pass) where TPass : struct, IPositionPass
    {
        int size = window.KernelHeight * window.KernelWidth;
        Span<int> cells = stackalloc int[size], pixels = stackalloc int[size], everyCell = stackalloc int[size], offsets = stackalloc int[size];
        for (int cell = 0; cell < size; cell++)
        {
            everyCell[cell] = cell;
            offsets[cell] = (cell / window.KernelWidth * window.Width + cell % window.KernelWidth) * window.Dilation * window.Channels;
        }
        for (int row = firstRow; row < firstRow + rows; row++)
        {
            int sample = row / window.OutputHeight, oy = row % window.OutputHeight, y = oy * window.StrideHeight - window.PadTop;
            bool rowsInside = y >= 0 && y + window.SpanHeight <= window.Height;
            for (int ox = 0; ox < window.OutputWidth; ox++)
            {
                long position = (long)row * window.OutputWidth + ox;
                int x = ox * window.StrideWidth - window.PadLeft;
                if (rowsInside && x >= 0 && x + window.SpanWidth <= window.Width)
                {
                    pass.At(position, sample, everyCell, (y * window.Width + x) * window.Channels, offsets);
                    continue;
                }
                int inside = window.InsideCells(oy, ox, cells, pixels);
                pass.At(position, sample, cells.Slice(0, inside), 0, pixels.Slice(0, inside));
            }
        }
    }

    /// <summary>
    /// A position's channels, a vector at a time (the last one partial), with the input under them: the pixel's channels
    /// themselves with a multiplier of 1 (<typeparamref name="TOne"/>), else channel c / multiplier for each output channel c,
    /// spread through a vector's floats of the caller's stack.
    /// </summary>
    private readonly unsafe struct Channels<TLanes, TVector, TOne>(Operands operands, float* spread)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        public readonly Operands Operands = operands;
        public int Width => Operands.Width;
        public float* Image(int sample) => Operands.Input + sample * Operands.ImageFloats;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVector Pixel(float* pixel, int c, int lanes)
        {
            if (TOne.IsSet) return Load(pixel + c, lanes);
            for (int l = 0; l < lanes; l++) spread[l] = pixel[(c + l) / Operands.Multiplier];
            return Load(spread, lanes);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static TVector Load(float* at, int lanes) => lanes == TLanes.Count ? TLanes.Load(ref *at) : TLanes.LoadFirst(ref *at, lanes);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(float* at, TVector value, int lanes)
        {
            if (lanes == TLanes.Count) TLanes.Store(ref *at, value);
            else TLanes.StoreFirst(ref *at, value, lanes);
        }
    }

    /// <summary>Forward: output = bias + each cell's pixel·weight, fused multiply-adds in registers, then ReLU if asked.</summary>
    private readonly unsafe struct Sums<TLanes, TVector, TOne>(Operands operands, float* bias, bool relu, float* spread) : IPositionPass
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        private readonly Channels<TLanes, TVector, TOne> channels = new(operands, spread);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void At(long position, int sample, ReadOnlySpan<int> cells, int origin, ReadOnlySpan<int> pixels)
        {
            int width = channels.Width;
            float* image = channels.Image(sample) + origin, target = channels.Operands.Output + position * width, kernel = channels.Operands.Kernel;
            for (int c = 0; c < width; c += TLanes.Count)
            {
                int lanes = Math.Min(TLanes.Count, width - c);
                var sum = bias == null ? TLanes.Zero : Channels<TLanes, TVector, TOne>.Load(bias + c, lanes);
                for (int i = 0; i < cells.Length; i++)
                    sum = TLanes.MultiplyAdd(channels.Pixel(image + pixels[i], c, lanes), Channels<TLanes, TVector, TOne>.Load(kernel + cells[i] * width + c, lanes), sum);
                Channels<TLanes, TVector, TOne>.Store(target + c, relu ? TLanes.Relu(sum) : sum, lanes);
            }
        }
    }

    /// <summary>kernelGradient[cell] += gradient·pixel, each product rounded, then added.</summary>
    private readonly unsafe struct KernelGradient<TLanes, TVector, TOne>(Operands operands, float* kernelGradient, float* spread) : IPositionPass
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        private readonly Channels<TLanes, TVector, TOne> channels = new(operands, spread);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void At(long position, int sample, ReadOnlySpan<int> cells, int origin, ReadOnlySpan<int> pixels)
        {
            int width = channels.Width;
            float* image = channels.Image(sample) + origin, gradient = channels.Operands.Output + position * width;
            for (int c = 0; c < width; c += TLanes.Count)
            {
                int lanes = Math.Min(TLanes.Count, width - c);
                var g = Channels<TLanes, TVector, TOne>.Load(gradient + c, lanes);
                for (int i = 0; i < cells.Length; i++)
                {
                    float* weight = kernelGradient + cells[i] * width + c;
                    var product = TLanes.Multiply(g, channels.Pixel(image + pixels[i], c, lanes));
                    Channels<TLanes, TVector, TOne>.Store(weight, TLanes.Add(Channels<TLanes, TVector, TOne>.Load(weight, lanes), product), lanes);
                }
            }
        }
    }

    /// <summary>
    /// inputGradient[pixel] += gradient·weight, each product rounded, then added; with a multiplier, a pixel's channel takes
    /// its output channels' products one after the other.
    /// </summary>
    private readonly unsafe struct InputGradient<TLanes, TVector, TOne>(Operands operands, float* inputGradient, float* spread) : IPositionPass
        where TLanes : struct, ILanes<TVector> where TVector : struct where TOne : IFlag
    {
        private readonly Operands operands = operands;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void At(long position, int sample, ReadOnlySpan<int> cells, int origin, ReadOnlySpan<int> pixels)
        {
            int width = operands.Width;
            float* image = inputGradient + sample * operands.ImageFloats + origin, gradient = operands.Output + position * width;
            for (int c = 0; c < width; c += TLanes.Count)
            {
                int lanes = Math.Min(TLanes.Count, width - c);
                var g = Channels<TLanes, TVector, TOne>.Load(gradient + c, lanes);
                for (int i = 0; i < cells.Length; i++)
                {
                    var product = TLanes.Multiply(g, Channels<TLanes, TVector, TOne>.Load(operands.Kernel + cells[i] * width + c, lanes));
                    float* pixel = image + pixels[i];
                    if (TOne.IsSet)
                    {
                        Channels<TLanes, TVector, TOne>.Store(pixel + c, TLanes.Add(Channels<TLanes, TVector, TOne>.Load(pixel + c, lanes), product), lanes);
                        continue;
                    }
                    Channels<TLanes, TVector, TOne>.Store(spread, product, lanes);
                    for (int l = 0; l < lanes; l++) pixel[(c + l) / operands.Multiplier] += spread[l];
                }
            }
        }
    }
}
