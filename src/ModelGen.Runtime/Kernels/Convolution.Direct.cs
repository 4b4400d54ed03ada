using System;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

// Conv2D's forward pass, and a direct kernel that reads each window where it lies and keeps a few output pixels' sums in
// registers. It takes windows of a few floats (a first layer over one or three channels), which through im2col would be
// copied into patch rows for a product only 9 or 27 deep that the packed GEMM cannot make efficient; and, when no patches
// are kept (inference), deep windows against a multiple of 64 filters on AVX-512 or of 16 on AVX2, each step reading one
// whole row of the kernel. Each output is the chain of fused multiply-adds over its window, in patch order, then bias and
// ReLU, as the GEMM computes it for a patch up to one of its depth blocks deep (2048): the two paths agree bit for bit.
public static partial class Convolution
{
    /// <summary>Patches of at most this many floats are convolved directly (<see cref="SharedRules.DirectPatch"/>).</summary>
    private const int DirectPatch = SharedRules.DirectPatch;

    /// <summary>
    /// Deeper patches, up to this many floats (3x3 over 128 channels), are convolved directly for inference on AVX-512 or
    /// AVX2 when the filters fill the passes' vectors (<see cref="IsDeepDirect"/>). On AVX-512 faster than im2col + GEMM at
    /// every shape measured (2 cores, 3x3 windows): 13x13x32 to 64 filters at batch 1 28.4 -> 22.5 us and at batch 64
    /// 1.62 -> 1.31 ms, 16x16x128 to 64 at batch 8 1.51 -> 1.23 ms; 16x16x64 to 128 at batch 8 even (1.23 / 1.25 ms). The
    /// gathered windows of a pass stay on the stack.
    /// </summary>
    private const int DeepDirectPatch = 1152;

    /// <summary>Whether a window is convolved directly rather than through im2col + GEMM.</summary>
    internal static bool IsDirect(in Window window, int filters, bool keepPatches) =>
        window.PatchSize <= DirectPatch || !keepPatches && IsDeepDirect(window, filters);

    /// <summary>Whether the direct passes can take a deep window at all: up to <see cref="DeepDirectPatch"/> floats, on AVX-512 (32 registers).</summary>
    private static bool IsDeepAvx512(in Window window) => window.PatchSize <= DeepDirectPatch && Simd.Current == SimdPath.Avx512;

    /// <summary>
    /// Deep windows go direct where the passes fill the rows (2 cores, 3x3 'same' unless said, each shape alone, fresh
    /// processes in turns; a pointwise window's pixels are one run across rows, so any width does).
    /// AVX-512, four vectors of filters, passes of six pixels: rows of at least <see cref="WidePassWidth"/>. Narrower rows were
    /// slower everywhere: rows narrower than a pass gather every window float by float (4x4x128 to 64 filters at batch 1
    /// 190-296 us direct, 13.5-15.8 through patches), rows of 8 computed 12 pixels (8x8x64 to 64: 64-65 us against 29-37; as
    /// two of four, mixed: see <see cref="WidePassWidth"/>). Rows of 10 and 11 are faster at batch 1 and 3-5% slower at 32
    /// (10x10x64: 43-44 against 50-54 us, 1.50-1.52 against 1.39-1.54 ms; 13x13x32 'valid': 24-26 against 27-30 us); from
    /// 12 faster at both.
    /// AVX-512, two vectors (32 filters), passes of eight: rows of two passes at least. 32x32x32 at batch 1 98-106 us
    /// against 123-145 through patches, at 32 3.2-3.5 ms against 4.1-4.3; 16x16x64 at batch 1 53 against 89-91 us. Rows that
    /// are no multiple of eight were slower while their last pass redid pixels (26: 32 computed, 137-139 against 88-124 us);
    /// ending in a four-pixel pass (<see cref="TailPixels"/>), 32 channels to 32 filters, a console harness on the Zen 5:
    /// rows of 17 to 30 faster at batch 1 and 32 (26: 30-42 against 39-56 us and 0.89 against 1.07 ms; 18: 14.9 against 17.9
    /// us, 483 against 500; 22: 20.5 against 30.7, 647 against 787), rows of 10 to 14 not (10 at batch 1: 9.8 against 5.1 us;
    /// 14 at 32: 307 against 300).
    /// AVX2, multiples of four vectors (32 filters), passes of three pixels (<see cref="DirectRowPass"/>): rows of at least
    /// <see cref="RowPassWidth"/>, or pointwise. Whole models on 256-bit vectors (`DOTNET_EnableAVX512=0`): the ResNet block
    /// (32x32x32 to 32) at batch 32 6.20-6.53 -> 5.60-5.83 ms, at batch 1 0.187-0.213 -> 0.173 ms, its training step (the
    /// transposed convolutions) 18.9-19.1 -> 17.8-18.0 ms; MobileNet's pointwise layers at batch 32 0.462 -> 0.445 ms; the
    /// CNN's second layer unpooled (13x13x32 'valid' to 64, rows of 11) slower, 23.4 -> 24.4 us at batch 1.
    /// AVX2, pairs of vectors that are no fours (16, 48 filters), passes of six pixels (<see cref="DirectPass"/>): rows of
    /// at least <see cref="TwoVectorPassWidth"/>, or pointwise. A console harness, batch 32 unless said, three rounds in
    /// turns, against patches: 32 channels to 16 at rows of 12 217-224 -> 191-192 us, 14 306-318 -> 267-288, 16 397-419 ->
    /// 339-349; to 48 at 14 805-818 -> 778-800; 28x28x16 to 16 621-630 -> 524-539 (batch 1: 19.6-20.4 -> 17.3-17.8);
    /// 14x14x64 to 16 715-721 -> 595-608; the autoencoder's decode3 (16x16x8 'valid' to 16) at batch 1 4.2-4.3 -> 3.5-3.7 us
    /// (shared by <see cref="DirectFloats"/>). AVX-512 takes no deep window against 16 filters (through AVX2's passes,
    /// 28x28x16 to 16 at batch 32 519-523 against 421-442 us, 14x14x32 to 16 265-268 against 196-205) nor against 96
    /// (64 + 32: 14x14x64 at 32 1898-1929 against 1749-1797 us; pointwise 16x16x96 faster, 365-366 against 392-394).
    /// </summary>
    private static bool IsDeepDirect(in Window window, int filters) => window.PatchSize <= DeepDirectPatch && Simd.Current switch
    {
        SimdPath.Avx512 => filters % (4 * Vector512<float>.Count) == 0 && (window.IsPointwise || window.OutputWidth >= WidePassWidth)
            || filters == 2 * Vector512<float>.Count && !window.IsPointwise && window.OutputWidth >= 2 * EightPixels,
        SimdPath.Avx2 => filters % (2 * Vector256<float>.Count) == 0 && (window.IsPointwise
            || window.OutputWidth >= (filters % (4 * Vector256<float>.Count) == 0 ? RowPassWidth : TwoVectorPassWidth)),
        _ => false,
    };

    /// <summary>
    /// The narrowest rows the four-vector passes take directly (measured when a row of 10 took two passes of six). Re-timed
    /// with rows of 8 as two passes of four and 9 as six and four (<see cref="TailPixels"/>; the Zen 5, a console harness,
    /// three processes in turns, direct against patches): faster against 64 filters over 64 channels or more (8x8x64 at
    /// batch 1 15.0 against 18.1-21.0 us, 9x9x64 at 32 511-527 against 553-560, 8x8x128 at 8 197-199 against 230-238),
    /// even or slower over 32 channels or against 128 filters (8x8x32 to 64 at 32 199-200 against 190-195, 8x8x64 to 128
    /// at 32 867-895 against 767-780, 9x9x64 to 128 at 32 1013-1041 against 900-959); no rule by width alone, so 10 stays.
    /// Rows of 6 (one pass) and 7 (two of four) mixed too.
    /// </summary>
    private const int WidePassWidth = 10;

    /// <summary>
    /// The narrowest rows AVX2's three-pixel passes take directly (rows of 11 measured slower, 32 faster; with the two-pixel
    /// last pass, 13x13x32 'valid' to 64 even at batch 1 and no faster at 32).
    /// </summary>
    private const int RowPassWidth = 12;

    /// <summary>
    /// The narrowest rows AVX2's six-pixel two-vector passes take directly (filters that are no multiple of four vectors).
    /// The Zen 5, a console harness, three processes in turns, direct against patches, at batch 32 unless said: rows of 10
    /// and 11 faster or even, 10x10x16 to 16 75-76 against 85-90 us, 10x10x32 to 16 at batch 1 6.1-6.5 against 6.8-7.2,
    /// 11x11x64 to 16 364-373 against 444-460, 10x10x32 to 80 634-641 against 775-780, 10x10x32 to 48 396-398 against
    /// 412-428 (at batch 1 15.7-16.0 against 15.5-15.7); rows of 9 and 8 even or slower (8x8x32 to 16 105-131 against
    /// 103-106, 9x9x64 to 16 at batch 1 10.2-10.3 against 9.2-9.5).
    /// </summary>
    private const int TwoVectorPassWidth = 10;

    /// <summary>
    /// Output pixels a pass takes on AVX2 against a multiple of four vectors of filters (<see cref="DirectRowPass"/>), any
    /// window deep or small: the small windows' passes of six by two vectors measured even with them (the ResNet stem, the
    /// CNN's first layer).
    /// </summary>
    private const int RowPixels = 3;

    /// <summary>
    /// The pixels of the pass that ends a row of three-pixel passes where the row is no multiple of three: two, eight
    /// multiply-adds a step where a pass of three that redoes pixels of the one before takes twelve (a row of 32 computes 32
    /// pixels, not 33; with four left, two passes of two, <see cref="TailPixels"/>: one of 16, 16 not 18). The ResNet block
    /// on AVX2, fresh processes in turns: predict b32 5.35 -> 5.23 ms and 5.43 -> 5.30, b1 0.185 -> 0.181, train step b32
    /// 18.1 -> 17.5; its 32x32x32 layer alone at batch 1 on one core 152 -> 151 us.
    /// </summary>
    private const int RowTailPixels = 2;

    /// <summary>
    /// The pixels of the pass that ends a row of six- or eight-pixel passes where one to four are left: four, so a row of
    /// 28 computes 28 pixels, not 30 (six a pass) or 32 (eight); five or more left take a whole pass that redoes some, but
    /// seven or eight left after six-pixel passes take two of four (a row of 14: 14 pixels, not 16; as three-pixel passes
    /// with four left take two of two). Two cores, batch 32 unless said, a console harness, builds before and after in
    /// turns. The one short pass: AVX-512's four-vector passes 10x10x64 to 64 653 -> 586 us, 14x14x64 to 64 1259 -> 1176,
    /// 28x28x32 to 64 at batch 8 516 -> 501; its two-vector passes of eight 28x28x1 'valid' to 32 54 -> 49, 28x28x3 'same'
    /// to 32 114-118 -> 107-109, to 48 326-338 -> 291-299; AVX2's of six 28x28x3 'same' to 24 229-232 -> 210-216, 28x28x1 to
    /// 16 58-61 -> 57-59. The two short passes after that: AVX-512 14x14x64 to 64 1208-1240 -> 1107-1139 us, 20x20x64 to 64
    /// at batch 8 588-602 -> 548-558; AVX2's three-pixel passes 16x16x32 to 32 680-688 -> 635-659, 28x28x32 to 32 at batch
    /// 8 518-526 -> 497-511.
    /// </summary>
    private const int TailPixels = 4;

    /// <summary>Whether the passes take three pixels by four vectors (<see cref="DirectRowPass"/>): on AVX2 (8 lanes), whole kernel rows.</summary>
    private static bool TakesRowPasses<TLanes, TVector>(int filters) where TLanes : struct, ILanes<TVector> where TVector : struct =>
        TLanes.Count == 8 && filters % (4 * TLanes.Count) == 0;

    /// <summary>Output pixels whose sums one pass keeps in registers, for two vectors of filters or four.</summary>
    private const int DirectPixels = 6;

    /// <summary>
    /// Output pixels a pass takes on AVX-512 below four vectors of filters (so no four-vector pass): its 32 registers hold
    /// eight pixels' sums of two vectors, each weight row then serves eight broadcasts, and a row of 16 pixels takes two
    /// passes, where passes of six computed 18.
    /// </summary>
    private const int EightPixels = 8;

    /// <summary>
    /// Conv2D forward: output (batch, positions, filters) = patches · kernel + bias, ReLU optional, through im2col + GEMM,
    /// directly (<see cref="IsDirect"/>) or with pixels in the lanes (<see cref="IsPlanar"/>). <paramref name="patches"/> is
    /// filled only when <paramref name="keepPatches"/> (training: the kernel gradient reads them); otherwise im2col builds its
    /// patch rows in a scratch of the thread that multiplies them. A BatchNormalization at inference after the layer
    /// (<paramref name="normalization"/>) is applied to the outputs after the ReLU, then its residual added and a ReLU taken
    /// where it says so: in the direct kernel's epilogue, before they are stored (the residual and its ReLU just after each
    /// pass, in L1), and on the other routes to each range of output rows as soon as it is computed, in this core's cache.
    /// Where the input is an UpSampling2D's (<paramref name="upsampledRows"/>, <paramref name="upsampledColumns"/>: the
    /// window is the upsampled image's, <paramref name="input"/> the image before), the planar route lays its planes out from
    /// it; the others read it upsampled into a scratch. With <paramref name="packedKernel"/> (<see cref="PackKernel"/> of the
    /// same values) the route through patches reads the kernel packed ahead instead of packing it at every call; the others
    /// read <paramref name="kernel"/>. The same bits either way.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    public static unsafe void Forward(ReadOnlySpan<float> input, Span<float> patches, ReadOnlySpan<float> kernel, Span<float> output,
        in Window window, int filters, int batch, ReadOnlySpan<float> bias = default, bool relu = false, bool keepPatches = true,
        BatchNormAtInference normalization = default, int upsampledRows = 1, int upsampledColumns = 1, PackedMatrix? packedKernel = null)
    {
        Gemm.CheckPacked(packedKernel, window.PatchSize, filters, nameof(packedKernel));
        var repeats = Repeats.Of(upsampledRows, upsampledColumns, window, "Convolution");
        bool planar = IsPlanar(window, filters);
        if (repeats.Any && (!planar || keepPatches))
        {
            Require(input.Length >= batch * repeats.SampleFloats(window), "Convolution of an upsampled input", window, batch);
            using var upsampled = repeats.Upsample(input, window, batch);
            Forward(upsampled.Span, patches, kernel, output, window, filters, batch, bias, relu, keepPatches, normalization, packedKernel: packedKernel);
            return;
        }
        using var folded = normalization.FoldFor(filters, output, (long)batch * window.Positions * filters, "Convolution");
        fixed (float* scaleAndShift = folded.Span, y = output, residual = normalization.Residual)
        {
            var fold = OutputFold.Of(normalization, y, scaleAndShift, filters, residual);
            if (MultipliesPatches(window, filters, keepPatches))
            {
                ForwardThroughPatches(input, patches, kernel, output, window, filters, batch, bias, relu, keepPatches, fold, Gemm.PackedPanels.Of(packedKernel));
                return;
            }
            if (keepPatches) Im2Col(input, patches, window, batch);
            int imageFloats = window.Height * window.Width * window.Channels, outputFloats = window.Positions * filters;
            Require(input.Length >= batch * repeats.SampleFloats(window) && kernel.Length >= window.PatchSize * filters && output.Length >= batch * outputFloats
                && (bias.IsEmpty || bias.Length >= filters), planar ? "Planar convolution" : "Direct convolution", window, batch);
            fixed (float* x = input, k = kernel, b = bias)
            {
                if (planar)
                {
                    var work = new PlanarRanges(x, k, bias.IsEmpty ? null : b, y, window, repeats, filters, relu);
                    ForOutputRows(ref work, window, batch, imageFloats + outputFloats, fold);
                }
                else
                {
                    var work = new DirectRanges(x, k, bias.IsEmpty ? null : b, y, window, filters, relu, fold);
                    var (touched, read) = DirectFloats(window, filters);
                    ForOutputRows(ref work, window, batch, touched, readPerSample: read);
                }
            }
        }
    }

    /// <summary>
    /// The floats the direct passes touch per image (the image and the output) and read (each window's floats, where the
    /// route through patches copies them): shared between the cores from as many floats read as that route would be, so a
    /// small deep layer at batch 1 is not left to one core (the autoencoder's decode3 on AVX2, 16x16x8 'valid' to 16 filters:
    /// 5,184 floats touched, 19,296 read; 4.2-4.3 us through patches, 4.3 direct on one core, 3.5-3.7 on two).
    /// </summary>
    private static (long Touched, long Read) DirectFloats(in Window window, int filters)
    {
        long image = (long)window.Height * window.Width * window.Channels;
        return (image + (long)window.Positions * filters, image + (long)window.Positions * (window.PatchSize + filters));
    }

    /// <summary>The most output rows of the batch the direct passes take at once (<see cref="ForOutputRows"/>, <see cref="DirectFloats"/>).</summary>
    internal static int DirectRowsPerRange(in Window window, int filters, int batch)
    {
        var (touched, read) = DirectFloats(window, filters);
        return OutputRowsPerRange(window, batch, touched, read);
    }

    /// <summary>
    /// A Conv2D's kernel (patch size x <paramref name="filters"/>) packed once for <see cref="Forward"/>'s or
    /// <see cref="ForwardMaxPooled"/>'s <c>packedKernel</c>, where a pass at inference over <paramref name="window"/> (and
    /// <paramref name="pool"/>, a max pooling it feeds) multiplies patches by it; null where the direct, planar or pooled
    /// kernels take it, which read the kernel where it lies. For an inference copy (ForInference), whose weights never change.
    /// </summary>
    public static PackedMatrix? PackKernel(ReadOnlySpan<float> kernel, in Window window, int filters, Window? pool = null)
    {
        bool pooled = pool is { } p && PoolsInRegisters(window, p, filters, keepPatches: false);
        return !pooled && MultipliesPatches(window, filters, keepPatches: false) ? Gemm.Pack(kernel, window.PatchSize, filters) : null;
    }

    /// <summary>Whether <see cref="Forward"/> takes the route through patches (im2col + GEMM), the one that reads a kernel packed ahead.</summary>
    private static bool MultipliesPatches(in Window window, int filters, bool keepPatches) => !IsPlanar(window, filters) && !IsDirect(window, filters, keepPatches);

    /// <summary>
    /// Whether <see cref="Transposed"/> takes the values as the input of a direct convolution (<paramref name="flipped"/>: a
    /// window over the values' channels, giving the image's) with the kernel turned half a turn and its channels swapped
    /// (<see cref="FlipKernel"/>): the transposed convolution of a stride-1 'same' window with odd sides is that convolution.
    /// Where the direct kernel takes it deep (<see cref="IsDeepDirect"/>), this beats the patches' product, only as deep as
    /// the values' channels, and col2im: the ResNet block's 32x32x32 to 32 filters at batch 32, 3.65-3.91 -> 2.84-3.04 ms
    /// (2 cores; values within a few ulps of the patches', summed in another order). On AVX2 it beats the in-place route
    /// too (<see cref="TransposesInPlace"/>, which it goes before; medians of three processes, added onto the image): from
    /// 16 value channels 14x14x32 at batch 128 1.50 -> 1.05 ms, 28x28x32 at 32 1.50 -> 1.22, 32x32x32 at 32 1.89 -> 1.30;
    /// from 24 and 32 against the patches, 14x14x32 at 128 1.71 -> 1.56, 32x32x32 at 32 2.80 -> 2.56. AVX2's two-vector
    /// passes (16 or 48 image channels; a console harness on the Zen 5, three processes in turns, written over the image
    /// unless said): against the in-place route 12x12x16 from 8 at batch 128 400-410 -> 210-251 us, 28x28x16 from 5 at 32
    /// 352-358 -> 202-217, 14x14x16 from 16 at 128 807-829 -> 596-940, 12x12x16 from 16 added at 128 694-702 -> 436-451;
    /// against the patches 28x28x16 from 32 at 32 1223-1262 -> 1030-1122, 14x14x48 from 20 at 64 1771-1785 -> 1002-1027,
    /// 16x16x48 from 64 at 32 2365-2390 -> 2048-2085, 12x12x48 from 128 at 32 2430-2455 -> 2271-2297; at rows of 10 and 11
    /// (<see cref="TwoVectorPassWidth"/>) 10x10x16 from 8 at 128 229-232 -> 148-174, 11x11x16 from 16 at 128 616-630 ->
    /// 374-416, 10x10x48 from 20 at 64 614-656 -> 499-530, but 11x11x48 from 64 added at 32 988-1017 -> 1025-1101.
    /// </summary>
    internal static bool TransposesDirectly(in Window window, int valueChannels, out Window flipped)
    {
        flipped = new Window(window.Height, window.Width, valueChannels, window.KernelHeight, window.KernelWidth, 1, 1, Same: true);
        // A pointwise window's transpose is one product already (Transposed's next route).
        return window is { StrideHeight: 1, StrideWidth: 1, Dilation: 1, Same: true, IsPointwise: false } && window.KernelHeight % 2 == 1 && window.KernelWidth % 2 == 1
            && !IsPlanar(flipped, window.Channels) && IsDeepDirect(flipped, window.Channels);
    }

    /// <summary>
    /// <see cref="Transposed"/> as the direct convolution of the values (<see cref="TransposesDirectly"/>), written over the
    /// image or added to it: each range of rows is then computed into this thread's scratch and added while it is in L1.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void TransposedDirect(ReadOnlySpan<float> values, ReadOnlySpan<float> kernel, Span<float> image, in Window window, in Window flipped,
        int valueChannels, int batch, bool accumulate)
    {
        int channels = window.Channels;
        using var turned = Scratch<float>.RentUncleared(flipped.PatchSize * channels);
        FlipKernel(kernel, turned.Span, window, valueChannels);
        if (!accumulate)
        {
            Forward(values, default, turned.Span, image, flipped, channels, batch, keepPatches: false);
            return;
        }
        fixed (float* v = values, k = turned.Span, x = image)
        {
            var work = new DirectAddedRanges(v, k, x, flipped, channels);
            ForOutputRows(ref work, flipped, batch, 2L * window.Height * window.Width * (channels + valueChannels));
        }
    }

    /// <summary>
    /// A kernel (patch entries by filters) as the kernel of its transposed convolution: entry (ky, kx, channel) of filter f
    /// becomes entry (height-1-ky, width-1-kx, f) of filter channel.
    /// </summary>
    private static void FlipKernel(ReadOnlySpan<float> kernel, Span<float> flipped, in Window window, int filters)
    {
        int height = window.KernelHeight, width = window.KernelWidth, channels = window.Channels;
        for (int ky = 0; ky < height; ky++)
            for (int kx = 0; kx < width; kx++)
            {
                var from = kernel.Slice(((height - 1 - ky) * width + width - 1 - kx) * channels * filters, channels * filters);
                var to = flipped.Slice((ky * width + kx) * filters * channels, filters * channels);
                for (int c = 0; c < channels; c++)
                    for (int f = 0; f < filters; f++) to[f * channels + c] = from[c * filters + f];
            }
    }

    /// <summary>The direct convolution over a range of output rows, a band at a time into scratch, each band then added to the output.</summary>
    private readonly unsafe struct DirectAddedRanges(float* input, float* kernel, float* output, Window window, int filters) : IRanges
    {
        [MethodImpl(Compiled.Driver)]
        public void Run(int first, int count)
        {
            int rowFloats = window.OutputWidth * filters, band = Plane.BandRows(window);
            using var sums = Scratch<float>.RentUncleared(band * rowFloats);
            fixed (float* s = sums.Span)
            {
                for (int row = first, end = first + count; row < end; row += band)
                {
                    int rows = Math.Min(band, end - row);
                    // Rows are counted over the batch and lie one after another, so a base this far before the scratch puts them in it.
                    new DirectRanges(input, kernel, null, s - (long)row * rowFloats, window, filters, relu: false, default).Run(row, rows);
                    var target = new Span<float>(output + (long)row * rowFloats, rows * rowFloats);
                    TensorPrimitives.Add(target, new ReadOnlySpan<float>(s, rows * rowFloats), target);
                }
            }
        }
    }

    /// <summary>
    /// The direct convolution over a range of output rows, counted over the whole batch, a sample's rows a band at a time
    /// (<see cref="Plane.BandRows"/>).
    /// </summary>
    private readonly unsafe struct DirectRanges(float* input, float* kernel, float* bias, float* output, Window window, int filters, bool relu, OutputFold fold) : IRanges
    {
        [MethodImpl(Compiled.Driver)]
        public void Run(int first, int count)
        {
            int bandRows = Plane.BandRows(window);
            int imageFloats = window.Height * window.Width * window.Channels, outputFloats = window.Positions * filters;
            for (int row = first, end = first + count; row < end;)
            {
                int sample = row / window.OutputHeight, top = row - sample * window.OutputHeight;
                int bottom = Math.Min(window.OutputHeight, Math.Min(top + end - row, top + bandRows));
                float* image = input + (long)sample * imageFloats, pixels = output + (long)sample * outputFloats;
                switch (Simd.Current)
                {
                    // 17 to 31 filters take AVX2's passes (two 8-float vectors, six pixels), not a pair of 512-bit vectors with
                    // the second partly masked: small windows at batch 32, 28x28x1 to 24 filters 105-110 -> 97-105 us, to 20
                    // 110-123 -> 99. (16 or fewer take one 512-bit vector, TOne: to 16 118-141 -> 53-54, to 8 95-111 -> 52-54.)
                    case SimdPath.Avx512 when filters > Vector512<float>.Count && filters < 2 * Vector512<float>.Count: RunRows<Lanes256, Vector256<float>, No>(image, pixels, top, bottom); break;
                    case SimdPath.Avx512 when filters < 4 * Vector512<float>.Count: RunRows<Lanes512, Vector512<float>, Yes>(image, pixels, top, bottom); break;
                    case SimdPath.Avx512: RunRows<Lanes512, Vector512<float>, No>(image, pixels, top, bottom); break;
                    case SimdPath.Avx2: RunRows<Lanes256, Vector256<float>, No>(image, pixels, top, bottom); break;
                    default: RunRows<Lanes128, Vector128<float>, No>(image, pixels, top, bottom); break;
                }
                row += bottom - top;
            }
        }

        /// <summary>
        /// Output rows [top, bottom) of one sample by the kernel compiled with the fold or without it: a test for the fold in
        /// every pixel's store cost the passes without one 5-10%.
        /// </summary>
        private void RunRows<TLanes, TVector, TEight>(float* image, float* pixels, int top, int bottom)
            where TLanes : struct, ILanes<TVector> where TVector : struct where TEight : IFlag
        {
            if (fold.IsEmpty) Direct<TLanes, TVector, TEight, No>(image, kernel, bias, pixels, window, filters, relu, top, bottom, fold);
            else Direct<TLanes, TVector, TEight, Yes>(image, kernel, bias, pixels, window, filters, relu, top, bottom, fold);
        }
    }

    /// <summary>
    /// Output rows [<paramref name="top"/>, <paramref name="bottom"/>) of one sample, six pixels of a row at a time (eight
    /// where <typeparamref name="TEight"/>, three on AVX2 against fours of vectors of filters), a row's last pass or two shorter
    /// (<see cref="RowTailPixels"/>, <see cref="TailPixels"/>). Windows wholly inside their plane (<see cref="Plane.For"/>: the image, or a
    /// zero-padded copy of these rows' part of it) are read in place, each patch value at a fixed offset from the window's corner; the others
    /// (and rows of fewer pixels than a pass) are first gathered into a small zero-padded buffer, so a pass always reads all
    /// its windows and never outside the image.
    /// </summary>
    [MethodImpl(Compiled.Kernel), SkipLocalsInit] // offsets and gathered windows are written before they are read
    private static unsafe void Direct<TLanes, TVector, TEight, TFolds>(float* image, float* kernel, float* bias, float* output, in Window window, int filters, bool relu,
        int top, int bottom, in OutputFold fold) where TLanes : struct, ILanes<TVector> where TVector : struct where TEight : IFlag where TFolds : IFlag
    {
        int patch = window.PatchSize, channels = window.Channels;
        bool rowPasses = TakesRowPasses<TLanes, TVector>(filters);
        int passPixels = TEight.IsSet ? EightPixels : rowPasses ? RowPixels : DirectPixels;
        // The pixels of a row's shorter last pass: every pass has a form that reads only that many windows.
        int tailPixels = rowPasses ? RowTailPixels : TailPixels;
        var plane = Plane.For(image, window, top, bottom, passPixels);
        int* inPlace = stackalloc int[patch];
        PatchOffsets(window, plane.RowFloats, inPlace);
        // Gathered windows' offsets (their own indices), worked out at the first gather: most ranges read in place only.
        int* inBuffer = stackalloc int[patch];
        bool gathers = false;
        float* gathered = stackalloc float[passPixels * patch];
        int runPixels = (bottom - top) * window.OutputWidth;
        if (window.IsPointwise && runPixels >= passPixels)
        {
            // A pointwise window's pixels follow one another across rows: the rows are one run, and only its last pass
            // moves back (8-pixel rows moved one back per row: 12 windows computed for every 8).
            float* windows = plane.At(top, 0), pixels = output + (long)top * window.OutputWidth * filters;
            for (int next = 0; next < runPixels; next += passPixels)
            {
                int at = Math.Min(next, runPixels - passPixels);
                Passes<TLanes, TVector, TEight, TFolds>(windows + at * channels, inPlace, channels, patch, kernel, filters, bias, pixels + (long)at * filters, passPixels, relu, fold);
            }
            return;
        }
        for (int oy = top; oy < bottom; oy++)
        {
            int windowTop = oy * window.StrideHeight - window.PadTop;
            for (int next = 0, span; next < window.OutputWidth; next += span)
            {
                // A row's last pass ends at its last pixel, redoing a few of the pass before (the same chains, the same
                // bits) rather than gathering a short pass into the buffer; in a shorter pass where one takes what is left,
                // in two where two take it and one whole pass does not (a row of 14: six, four and four, not six, six and four).
                int rest = window.OutputWidth - next;
                span = rest <= tailPixels || rest > passPixels && rest <= 2 * tailPixels ? tailPixels : passPixels;
                int ox = Math.Max(0, Math.Min(next, window.OutputWidth - span));
                int count = Math.Min(span, window.OutputWidth - ox);
                int left = ox * window.StrideWidth - window.PadLeft;
                bool inside = count == span && plane.Holds(windowTop, window.SpanHeight, left, (count - 1) * window.StrideWidth + window.SpanWidth);
                float* windows = gathered;
                int* offsets = inBuffer;
                int step = patch;
                if (inside)
                {
                    windows = plane.At(windowTop, left);
                    offsets = inPlace;
                    step = window.StrideWidth * channels;
                }
                else
                {
                    if (!gathers) gathers = GatheredOffsets(inBuffer, patch);
                    for (int pixel = 0; pixel < passPixels; pixel++)
                        GatherWindow(image, gathered + pixel * patch, window, windowTop, left + pixel * window.StrideWidth, blank: pixel >= count);
                }
                Passes<TLanes, TVector, TEight, TFolds>(windows, offsets, step, patch, kernel, filters, bias, output + (long)(oy * window.OutputWidth + ox) * filters, count, relu, fold);
            }
        }
    }

    /// <summary>
    /// The passes over every filter for <paramref name="count"/> windows (<see cref="FilterPasses"/>), then the fold's
    /// residual, if any, over the pixels they stored, still in L1: in each pass's epilogue the Add pushed the stores out of
    /// line (the JIT's inlining budget), and MobileNet's pointwise layers, which add none, ran 3x slower (0.41 -> 1.2 ms).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Passes<TLanes, TVector, TEight, TFolds>(float* windows, int* offsets, int step, int patch, float* kernel, int filters, float* bias, float* pixels,
        int count, bool relu, in OutputFold fold) where TLanes : struct, ILanes<TVector> where TVector : struct where TEight : IFlag where TFolds : IFlag
    {
        FilterPasses<TLanes, TVector, TEight, TFolds>(windows, offsets, step, patch, kernel, filters, bias, pixels, count, relu, fold);
        if (TFolds.IsSet && fold.Residual != null) fold.AddResidual<TLanes, TVector>(pixels, count);
    }

    /// <summary>
    /// The passes over every filter for <paramref name="count"/> windows <paramref name="step"/> floats apart: four vectors of
    /// filters at a time in 512-bit lanes, then two (the last masked) or one; in 256-bit lanes (AVX2, and AVX-512 against 17
    /// to 31 filters) four at a time where they come in fours, else two, then one where one holds the rest; the fold, if
    /// any, in their epilogue.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void FilterPasses<TLanes, TVector, TEight, TFolds>(float* windows, int* offsets, int step, int patch, float* kernel, int filters, float* bias, float* pixels,
        int count, bool relu, in OutputFold fold) where TLanes : struct, ILanes<TVector> where TVector : struct where TEight : IFlag where TFolds : IFlag
    {
        int j = 0;
        if (TakesRowPasses<TLanes, TVector>(filters))
        {
            for (; j < filters; j += 4 * TLanes.Count)
            {
                float* biasFrom = bias is null ? null : bias + j, scale = TFolds.IsSet ? fold.Scale + j : null, shift = TFolds.IsSet ? fold.Shift + j : null;
                if (count == RowTailPixels)
                    DirectRowPass<TLanes, TVector, Yes, TFolds>(windows, offsets, step, patch, kernel + j, filters, biasFrom, pixels + j, count, relu, scale, shift, fold.AffineRelu);
                else DirectRowPass<TLanes, TVector, No, TFolds>(windows, offsets, step, patch, kernel + j, filters, biasFrom, pixels + j, count, relu, scale, shift, fold.AffineRelu);
            }
            return;
        }
        if (TLanes.Count == 16)
        {
            for (; filters - j >= 4 * TLanes.Count; j += 4 * TLanes.Count)
            {
                float* biasFrom = bias is null ? null : bias + j, scale = TFolds.IsSet ? fold.Scale + j : null, shift = TFolds.IsSet ? fold.Shift + j : null;
                if (count == TailPixels)
                    DirectWidePass<TLanes, TVector, Yes, TFolds>(windows, offsets, step, patch, kernel + j, filters, biasFrom, pixels + j, count, relu, scale, shift, fold.AffineRelu);
                else DirectWidePass<TLanes, TVector, No, TFolds>(windows, offsets, step, patch, kernel + j, filters, biasFrom, pixels + j, count, relu, scale, shift, fold.AffineRelu);
            }
        }
        for (; j < filters; j += 2 * TLanes.Count)
        {
            float* biasFrom = bias is null ? null : bias + j, scale = TFolds.IsSet ? fold.Scale + j : null, shift = TFolds.IsSet ? fold.Shift + j : null;
            int left = filters - j;
            // Filters left that fill one vector at most take a pass of one: half the multiply-adds of a pair half masked.
            if (left >= 2 * TLanes.Count)
                TwoVectorPass<TLanes, TVector, TEight, Yes, No, TFolds>(windows, offsets, step, patch, kernel + j, filters, biasFrom, pixels + j, count, left, relu, scale, shift, fold.AffineRelu);
            else if (left <= TLanes.Count)
                TwoVectorPass<TLanes, TVector, TEight, No, Yes, TFolds>(windows, offsets, step, patch, kernel + j, filters, biasFrom, pixels + j, count, left, relu, scale, shift, fold.AffineRelu);
            else TwoVectorPass<TLanes, TVector, TEight, No, No, TFolds>(windows, offsets, step, patch, kernel + j, filters, biasFrom, pixels + j, count, left, relu, scale, shift, fold.AffineRelu);
        }
    }

    /// <summary>
    /// A two-vector pass (<see cref="DirectPass"/>), or one of a vector (<typeparamref name="TOne"/>: where the filters left
    /// fill no more, 16 filters or the last 16 of 48 on 512-bit lanes, 8 or the last 8 of 24 on 256-bit ones), of its whole
    /// pixels, or of four where it ends a row (<see cref="TailPixels"/>). The pass of one vector against the pair with its
    /// second vector masked (the Zen 5, a console harness, small windows at batch 32): on AVX-512 28x28x1 to 48 filters
    /// 139-145 -> 101-110 us, to 40 142-144 -> 104-105, and against AVX2's passes (<see cref="DirectRanges"/>) to 16 57-71
    /// -> 53-54, to 12 68-72 -> 57-58, to 8 58-59 -> 52-54, 32x32x3 to 16 139-142 -> 114-135; on AVX2 28x28x1 to 8
    /// 65-86 -> 61-64, 32x32x3 to 8 169-173 -> 134-160, stride 2 over 28x28x3 to 8 40-58 -> 34-40, at batch 1 28x28x1 to 8
    /// 3.4-3.7 -> 3.2-3.3, to 24 even.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void TwoVectorPass<TLanes, TVector, TEight, TWhole, TOne, TFolds>(float* windows, int* offsets, int step, int patch, float* kernel, int filters,
        float* bias, float* pixels, int count, int remaining, bool relu, float* scale, float* shift, bool foldRelu)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TEight : IFlag where TWhole : IFlag where TOne : IFlag where TFolds : IFlag
    {
        if (count == TailPixels)
            DirectPass<TLanes, TVector, No, TWhole, Yes, TOne, TFolds>(windows, offsets, step, patch, kernel, filters, bias, pixels, count, remaining, relu, scale, shift, foldRelu);
        else DirectPass<TLanes, TVector, TEight, TWhole, No, TOne, TFolds>(windows, offsets, step, patch, kernel, filters, bias, pixels, count, remaining, relu, scale, shift, foldRelu);
    }

    /// <summary>Where each patch entry lies from its window's corner in a plane whose rows are <paramref name="rowFloats"/> apart.</summary>
    [MethodImpl(Compiled.Driver)]
    private static unsafe void PatchOffsets(in Window window, int rowFloats, int* inPlace)
    {
        for (int ky = 0, p = 0; ky < window.KernelHeight; ky++)
            for (int kx = 0; kx < window.KernelWidth; kx++)
                for (int c = 0; c < window.Channels; c++, p++)
                    inPlace[p] = ky * window.Dilation * rowFloats + kx * window.Dilation * window.Channels + c;
    }

    /// <summary>Where each patch entry lies in a gathered patch row: its own index. True, for the caller's flag that they are there.</summary>
    private static unsafe bool GatheredOffsets(int* inBuffer, int patch)
    {
        for (int p = 0; p < patch; p++) inBuffer[p] = p;
        return true;
    }

    /// <summary>
    /// Copies the window whose corner is at (<paramref name="top"/>, <paramref name="left"/>) into a patch row, zeros where it
    /// hangs over the padding, or zeros only where <paramref name="blank"/> (a pass's windows past the row's end).
    /// </summary>
    private static unsafe void GatherWindow(float* image, float* row, in Window window, int top, int left, bool blank = false)
    {
        int channels = window.Channels;
        for (int ky = 0; ky < window.KernelHeight; ky++)
        {
            int y = top + ky * window.Dilation;
            for (int kx = 0; kx < window.KernelWidth; kx++)
            {
                int x = left + kx * window.Dilation;
                bool inside = !blank && y >= 0 && y < window.Height && x >= 0 && x < window.Width;
                float* from = image + (y * window.Width + x) * channels;
                for (int c = 0; c < channels; c++) *row++ = inside ? from[c] : 0f;
            }
        }
    }

    /// <summary>
    /// Two vectors of filters (<typeparamref name="TWhole"/>) or fewer (<paramref name="remaining"/>, loads and stores
    /// masked past them), or one where <typeparamref name="TOne"/>, for six windows, or eight where <typeparamref name="TEight"/>,
    /// or four where <typeparamref name="TFour"/> (a row's last pass): twelve, sixteen or eight accumulator chains over the
    /// patch (half as many of one vector), each weight row loaded once for all of them.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void DirectPass<TLanes, TVector, TEight, TWhole, TFour, TOne, TFolds>(float* windows, int* offsets, int step, int patch, float* kernel, int filters,
        float* bias, float* pixels, int count, int remaining, bool relu, float* scale, float* shift, bool foldRelu)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TEight : IFlag where TWhole : IFlag where TFour : IFlag where TOne : IFlag where TFolds : IFlag
    {
        bool whole = TWhole.IsSet;
        int width = TLanes.Count;
        int lowCount = Math.Min(width, remaining), highCount = Math.Clamp(remaining - width, 0, width);
        TVector low = TLanes.FirstLanes(lowCount), high = TLanes.FirstLanes(highCount);
        nint s1 = step, s2 = 2 * s1, s3 = 3 * s1, s4 = 4 * s1, s5 = 5 * s1, s6 = 6 * s1, s7 = 7 * s1;
        TVector a0 = TLanes.Zero, a1 = TLanes.Zero, a2 = TLanes.Zero, a3 = TLanes.Zero, a4 = TLanes.Zero, a5 = TLanes.Zero, a6 = TLanes.Zero, a7 = TLanes.Zero;
        TVector b0 = TLanes.Zero, b1 = TLanes.Zero, b2 = TLanes.Zero, b3 = TLanes.Zero, b4 = TLanes.Zero, b5 = TLanes.Zero, b6 = TLanes.Zero, b7 = TLanes.Zero;
        for (int p = 0; p < patch; p++, kernel += filters)
        {
            TVector w0 = whole ? TLanes.Load(ref *kernel) : TLanes.LoadMasked(kernel, low);
            TVector w1 = TOne.IsSet ? TLanes.Zero : whole ? TLanes.Load(ref kernel[width]) : TLanes.LoadMasked(kernel + width, high);
            // One window's float at a time: 12 sums, 2 weight vectors and 1 broadcast take 15 of AVX2's 16 registers. With three
            // broadcasts live at once (17) the JIT kept a sum on the stack, and each step waited on its store and reload.
            float* x = windows + offsets[p];
            TVector x0 = TLanes.Broadcast(*x);
            a0 = TLanes.MultiplyAdd(x0, w0, a0); if (!TOne.IsSet) b0 = TLanes.MultiplyAdd(x0, w1, b0);
            TVector x1 = TLanes.Broadcast(x[s1]);
            a1 = TLanes.MultiplyAdd(x1, w0, a1); if (!TOne.IsSet) b1 = TLanes.MultiplyAdd(x1, w1, b1);
            TVector x2 = TLanes.Broadcast(x[s2]);
            a2 = TLanes.MultiplyAdd(x2, w0, a2); if (!TOne.IsSet) b2 = TLanes.MultiplyAdd(x2, w1, b2);
            TVector x3 = TLanes.Broadcast(x[s3]);
            a3 = TLanes.MultiplyAdd(x3, w0, a3); if (!TOne.IsSet) b3 = TLanes.MultiplyAdd(x3, w1, b3);
            if (TFour.IsSet) continue;
            TVector x4 = TLanes.Broadcast(x[s4]);
            a4 = TLanes.MultiplyAdd(x4, w0, a4); if (!TOne.IsSet) b4 = TLanes.MultiplyAdd(x4, w1, b4);
            TVector x5 = TLanes.Broadcast(x[s5]);
            a5 = TLanes.MultiplyAdd(x5, w0, a5); if (!TOne.IsSet) b5 = TLanes.MultiplyAdd(x5, w1, b5);
            if (TEight.IsSet)
            {
                TVector x6 = TLanes.Broadcast(x[s6]);
                a6 = TLanes.MultiplyAdd(x6, w0, a6); if (!TOne.IsSet) b6 = TLanes.MultiplyAdd(x6, w1, b6);
                TVector x7 = TLanes.Broadcast(x[s7]);
                a7 = TLanes.MultiplyAdd(x7, w0, a7); if (!TOne.IsSet) b7 = TLanes.MultiplyAdd(x7, w1, b7);
            }
        }
        TVector biasLow = TLanes.Zero, biasHigh = TLanes.Zero;
        if (bias is not null)
        {
            biasLow = whole ? TLanes.Load(ref *bias) : TLanes.LoadMasked(bias, low);
            biasHigh = whole ? TLanes.Load(ref bias[width]) : TLanes.LoadMasked(bias + width, high);
        }
        var pixel = new PixelStore<TLanes, TVector, TFolds>(whole, biasLow, biasHigh, bias is not null, relu, lowCount, highCount, scale, shift, foldRelu);
        pixel.Store(a0, b0, pixels);
        if (count > 1) pixel.Store(a1, b1, pixels + filters);
        if (count > 2) pixel.Store(a2, b2, pixels + 2 * filters);
        if (count > 3) pixel.Store(a3, b3, pixels + 3 * filters);
        if (TFour.IsSet) return;
        if (count > 4) pixel.Store(a4, b4, pixels + 4 * filters);
        if (count > 5) pixel.Store(a5, b5, pixels + 5 * filters);
        if (count > 6) pixel.Store(a6, b6, pixels + 6 * filters);
        if (count > 7) pixel.Store(a7, b7, pixels + 7 * filters);
    }

    /// <summary>
    /// Four vectors of filters for six windows, on AVX-512's 32 registers: 24 accumulator chains, and each step reads one
    /// whole row of the kernel (64 filters: four adjacent cache lines). A deep window streams the kernel from L2 in order;
    /// two vectors would read half of each row, lines a row apart that crowd into a quarter of L1's sets. Four windows only
    /// where <typeparamref name="TFour"/> (a row's last pass, <see cref="TailPixels"/>): each pixel's chain is the same.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void DirectWidePass<TLanes, TVector, TFour, TFolds>(float* windows, int* offsets, int step, int patch, float* kernel, int filters,
        float* bias, float* pixels, int count, bool relu, float* scale, float* shift, bool foldRelu)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TFour : IFlag where TFolds : IFlag
    {
        int width = TLanes.Count;
        nint s1 = step, s2 = 2 * s1, s3 = 3 * s1, s4 = 4 * s1, s5 = 5 * s1;
        TVector a0 = TLanes.Zero, a1 = TLanes.Zero, a2 = TLanes.Zero, a3 = TLanes.Zero, a4 = TLanes.Zero, a5 = TLanes.Zero;
        TVector b0 = TLanes.Zero, b1 = TLanes.Zero, b2 = TLanes.Zero, b3 = TLanes.Zero, b4 = TLanes.Zero, b5 = TLanes.Zero;
        TVector c0 = TLanes.Zero, c1 = TLanes.Zero, c2 = TLanes.Zero, c3 = TLanes.Zero, c4 = TLanes.Zero, c5 = TLanes.Zero;
        TVector d0 = TLanes.Zero, d1 = TLanes.Zero, d2 = TLanes.Zero, d3 = TLanes.Zero, d4 = TLanes.Zero, d5 = TLanes.Zero;
        for (int p = 0; p < patch; p++, kernel += filters)
        {
            TVector w0 = TLanes.Load(ref *kernel), w1 = TLanes.Load(ref kernel[width]);
            TVector w2 = TLanes.Load(ref kernel[2 * width]), w3 = TLanes.Load(ref kernel[3 * width]);
            float* x = windows + offsets[p];
            TVector x0 = TLanes.Broadcast(*x);
            a0 = TLanes.MultiplyAdd(x0, w0, a0); b0 = TLanes.MultiplyAdd(x0, w1, b0); c0 = TLanes.MultiplyAdd(x0, w2, c0); d0 = TLanes.MultiplyAdd(x0, w3, d0);
            TVector x1 = TLanes.Broadcast(x[s1]);
            a1 = TLanes.MultiplyAdd(x1, w0, a1); b1 = TLanes.MultiplyAdd(x1, w1, b1); c1 = TLanes.MultiplyAdd(x1, w2, c1); d1 = TLanes.MultiplyAdd(x1, w3, d1);
            TVector x2 = TLanes.Broadcast(x[s2]);
            a2 = TLanes.MultiplyAdd(x2, w0, a2); b2 = TLanes.MultiplyAdd(x2, w1, b2); c2 = TLanes.MultiplyAdd(x2, w2, c2); d2 = TLanes.MultiplyAdd(x2, w3, d2);
            TVector x3 = TLanes.Broadcast(x[s3]);
            a3 = TLanes.MultiplyAdd(x3, w0, a3); b3 = TLanes.MultiplyAdd(x3, w1, b3); c3 = TLanes.MultiplyAdd(x3, w2, c3); d3 = TLanes.MultiplyAdd(x3, w3, d3);
            if (TFour.IsSet) continue;
            TVector x4 = TLanes.Broadcast(x[s4]);
            a4 = TLanes.MultiplyAdd(x4, w0, a4); b4 = TLanes.MultiplyAdd(x4, w1, b4); c4 = TLanes.MultiplyAdd(x4, w2, c4); d4 = TLanes.MultiplyAdd(x4, w3, d4);
            TVector x5 = TLanes.Broadcast(x[s5]);
            a5 = TLanes.MultiplyAdd(x5, w0, a5); b5 = TLanes.MultiplyAdd(x5, w1, b5); c5 = TLanes.MultiplyAdd(x5, w2, c5); d5 = TLanes.MultiplyAdd(x5, w3, d5);
        }
        var (low, high) = PixelStore<TLanes, TVector, TFolds>.ForFourVectors(bias, relu, scale, shift, foldRelu);
        float* upper = pixels + 2 * width;
        low.Store(a0, b0, pixels); high.Store(c0, d0, upper);
        if (count > 1) { low.Store(a1, b1, pixels + filters); high.Store(c1, d1, upper + filters); }
        if (count > 2) { low.Store(a2, b2, pixels + 2 * filters); high.Store(c2, d2, upper + 2 * filters); }
        if (count > 3) { low.Store(a3, b3, pixels + 3 * filters); high.Store(c3, d3, upper + 3 * filters); }
        if (TFour.IsSet) return;
        if (count > 4) { low.Store(a4, b4, pixels + 4 * filters); high.Store(c4, d4, upper + 4 * filters); }
        if (count > 5) { low.Store(a5, b5, pixels + 5 * filters); high.Store(c5, d5, upper + 5 * filters); }
    }

    /// <summary>
    /// Four vectors of filters for three windows, on AVX2's 16 registers: 12 accumulator chains, the three windows' floats
    /// broadcast once a step and each weight vector loaded once for all three, so a step reads one whole row of the kernel.
    /// Two windows only where <typeparamref name="TTwo"/> (a row's last pass, <see cref="RowTailPixels"/>): each pixel's chain
    /// is the same either way.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void DirectRowPass<TLanes, TVector, TTwo, TFolds>(float* windows, int* offsets, int step, int patch, float* kernel, int filters,
        float* bias, float* pixels, int count, bool relu, float* scale, float* shift, bool foldRelu)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TTwo : IFlag where TFolds : IFlag
    {
        int width = TLanes.Count;
        nint s1 = step, s2 = 2 * s1;
        TVector a0 = TLanes.Zero, a1 = TLanes.Zero, a2 = TLanes.Zero;
        TVector b0 = TLanes.Zero, b1 = TLanes.Zero, b2 = TLanes.Zero;
        TVector c0 = TLanes.Zero, c1 = TLanes.Zero, c2 = TLanes.Zero;
        TVector d0 = TLanes.Zero, d1 = TLanes.Zero, d2 = TLanes.Zero;
        for (int p = 0; p < patch; p++, kernel += filters)
        {
            float* x = windows + offsets[p];
            TVector x0 = TLanes.Broadcast(*x), x1 = TLanes.Broadcast(x[s1]), x2 = TTwo.IsSet ? TLanes.Zero : TLanes.Broadcast(x[s2]);
            TVector w = TLanes.Load(ref *kernel);
            a0 = TLanes.MultiplyAdd(x0, w, a0); a1 = TLanes.MultiplyAdd(x1, w, a1);
            if (!TTwo.IsSet) a2 = TLanes.MultiplyAdd(x2, w, a2);
            w = TLanes.Load(ref kernel[width]);
            b0 = TLanes.MultiplyAdd(x0, w, b0); b1 = TLanes.MultiplyAdd(x1, w, b1);
            if (!TTwo.IsSet) b2 = TLanes.MultiplyAdd(x2, w, b2);
            w = TLanes.Load(ref kernel[2 * width]);
            c0 = TLanes.MultiplyAdd(x0, w, c0); c1 = TLanes.MultiplyAdd(x1, w, c1);
            if (!TTwo.IsSet) c2 = TLanes.MultiplyAdd(x2, w, c2);
            w = TLanes.Load(ref kernel[3 * width]);
            d0 = TLanes.MultiplyAdd(x0, w, d0); d1 = TLanes.MultiplyAdd(x1, w, d1);
            if (!TTwo.IsSet) d2 = TLanes.MultiplyAdd(x2, w, d2);
        }
        var (low, high) = PixelStore<TLanes, TVector, TFolds>.ForFourVectors(bias, relu, scale, shift, foldRelu);
        float* upper = pixels + 2 * width;
        low.Store(a0, b0, pixels); high.Store(c0, d0, upper);
        if (count > 1) { low.Store(a1, b1, pixels + filters); high.Store(c1, d1, upper + filters); }
        if (!TTwo.IsSet && count > 2) { low.Store(a2, b2, pixels + 2 * filters); high.Store(c2, d2, upper + 2 * filters); }
    }

    /// <summary>
    /// A pixel's sums plus bias (added after the chain, as the GEMM's epilogue does), ReLU, then times scale plus shift where
    /// a BatchNormalization at inference is folded in (<see cref="OutputFold"/>) and its ReLU where <paramref name="foldRelu"/>,
    /// stored up to the last filter.
    /// Not the GEMM's FinishVector itself: that re-reads the bias and the epilogue's flags for every vector, and finishing
    /// the 28x28x1 layer's pixels through it took 7.0 us instead of 5.8.
    /// </summary>
    private readonly unsafe struct PixelStore<TLanes, TVector, TFolds>(bool whole, TVector biasLow, TVector biasHigh, bool hasBias, bool relu, int lowCount, int highCount,
        float* scale, float* shift, bool foldRelu)
        where TLanes : struct, ILanes<TVector> where TVector : struct where TFolds : IFlag
    {
        /// <summary>The stores of four whole vectors of filters a pixel: the first two (low) and the last two (high).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (PixelStore<TLanes, TVector, TFolds> Low, PixelStore<TLanes, TVector, TFolds> High) ForFourVectors(float* bias, bool relu,
            float* scale, float* shift, bool foldRelu)
        {
            int width = TLanes.Count;
            bool hasBias = bias is not null;
            var low = new PixelStore<TLanes, TVector, TFolds>(true, hasBias ? TLanes.Load(ref *bias) : TLanes.Zero, hasBias ? TLanes.Load(ref bias[width]) : TLanes.Zero,
                hasBias, relu, width, width, scale, shift, foldRelu);
            var high = new PixelStore<TLanes, TVector, TFolds>(true, hasBias ? TLanes.Load(ref bias[2 * width]) : TLanes.Zero, hasBias ? TLanes.Load(ref bias[3 * width]) : TLanes.Zero,
                hasBias, relu, width, width, scale == null ? null : scale + 2 * width, shift == null ? null : shift + 2 * width, foldRelu);
            return (low, high);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public unsafe void Store(TVector low, TVector high, float* pixel)
        {
            if (hasBias)
            {
                low = TLanes.Add(low, biasLow);
                high = TLanes.Add(high, biasHigh);
            }
            if (relu)
            {
                low = TLanes.Relu(low);
                high = TLanes.Relu(high);
            }
            if (TFolds.IsSet)
            {
                // Read here, not kept in registers: the pass's sums take them all.
                low = TLanes.MultiplyAdd(low, whole ? TLanes.Load(ref *scale) : TLanes.LoadFirst(ref *scale, lowCount),
                    whole ? TLanes.Load(ref *shift) : TLanes.LoadFirst(ref *shift, lowCount));
                if (whole || highCount > 0)
                    high = TLanes.MultiplyAdd(high, whole ? TLanes.Load(ref scale[TLanes.Count]) : TLanes.LoadFirst(ref scale[TLanes.Count], highCount),
                        whole ? TLanes.Load(ref shift[TLanes.Count]) : TLanes.LoadFirst(ref shift[TLanes.Count], highCount));
                if (foldRelu)
                {
                    low = TLanes.Relu(low);
                    high = TLanes.Relu(high);
                }
            }
            if (whole)
            {
                TLanes.Store(ref *pixel, low);
                TLanes.Store(ref pixel[TLanes.Count], high);
                return;
            }
            TLanes.StoreFirst(ref *pixel, low, lowCount);
            if (highCount > 0) TLanes.StoreFirst(ref pixel[TLanes.Count], high, highCount);
        }
    }
}
