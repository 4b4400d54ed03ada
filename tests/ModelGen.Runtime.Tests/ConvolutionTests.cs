using ModelGen.Kernels;
using static ModelGen.Runtime.Tests.TestValues;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// im2col copies pixels into patches, so col2im (its backward) must be its adjoint: ⟨Im2Col(x), p⟩ = ⟨x, Col2Im(p)⟩ for any x
/// and p, over strides, padding, dilation and channel counts with and without a vector remainder. The chunked transposed
/// convolution is checked against its definition summed in double, across several chunks.
/// </summary>
[Collection(KernelSettings.Name)]
public class ConvolutionTests
{
    public static TheoryData<int, int, int, int, int, int, bool, int> Windows() => new()
    {
        // height, width, channels, kernel height, kernel width, stride, same, dilation
        { 7, 6, 1, 3, 3, 1, false, 1 },
        { 8, 9, 3, 3, 3, 2, true, 1 },
        { 9, 9, 17, 3, 3, 1, true, 2 },
        { 7, 8, 8, 2, 3, 2, false, 1 },
        { 5, 5, 32, 3, 3, 1, false, 1 },
        { 9, 9, 3, 3, 3, 2, false, 1 },  // short kernel rows, stride 2, every window inside: the copying fast path
        { 8, 8, 1, 3, 3, 2, true, 1 },   // 'same' padding only at the bottom and right: the fast path over a zero-padded copy
        { 6, 7, 41, 3, 3, 1, true, 1 },  // col2im's four vectors of channels at a time, then one vector, then one channel
    };

    [Theory, MemberData(nameof(Windows))]
    public void Col2im_is_the_adjoint_of_im2col_and_accumulates(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride, bool same, int dilation)
    {
        const int batch = 2;
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        var x = Uniform(batch * height * width * channels, 1);
        var p = Uniform(batch * window.Positions * window.PatchSize, 2);
        var patches = new float[p.Length];
        Convolution.Im2Col(x, patches, window, batch);
        var back = new float[x.Length];
        Array.Fill(back, float.NaN); // without accumulate, every pixel is overwritten
        Convolution.Col2Im(p, back, window, batch, accumulate: false);

        double forward = Dot(patches, p), adjoint = Dot(x, back);
        Assert.True(Math.Abs(forward - adjoint) <= 1e-4 * (1 + Math.Abs(forward)), $"<Im2Col(x), p> = {forward}, <x, Col2Im(p)> = {adjoint}");

        var accumulated = Uniform(x.Length, 3);
        var start = (float[])accumulated.Clone();
        Convolution.Col2Im(p, accumulated, window, batch, accumulate: true);
        for (int i = 0; i < x.Length; i++) Assert.Equal(start[i] + back[i], accumulated[i], 1e-5f);
    }

    [Theory]
    [InlineData(30, 1, 3, 2, false)] // runs of three floats: one vector each, a float past the run
    [InlineData(18, 3, 3, 2, false)] // runs of nine: three vectors, three floats past
    [InlineData(18, 3, 3, 2, true)]  // the MobileNet stem's windows: padding at the bottom and right, read from a zero-padded copy
    [InlineData(13, 1, 5, 1, true)]  // padding of two on every side, runs of five: two vectors
    [InlineData(9, 3, 3, 1, true)]   // padding of one on every side
    [InlineData(14, 16, 3, 1, true)] // runs of 48 (the autoencoder's second layer): six vectors of eight (four off AVX), none past
    [InlineData(9, 6, 3, 2, false)]  // runs of 18: three vectors of eight, six floats past
    [InlineData(8, 7, 3, 1, true)]   // runs of 21 over the padding: three vectors of eight, three past
    public void Im2col_in_parts_on_both_cores_copies_every_run_exactly(int side, int channels, int kernel, int stride, bool same)
    {
        // Enough samples for several parts: each part's last row must not spill into the next part's first, which the other
        // core may have written already. The 'valid' windows stop short of the last row and column, so a spill past a
        // sample's last run would read pixels that differ from the next patch row's first.
        const int batch = 40;
        var window = new Window(side, side, channels, kernel, kernel, stride, stride, same);
        var images = Uniform(batch * side * side * channels, 21);
        var expected = new float[batch * window.Positions * window.PatchSize];
        for (int sample = 0, row = 0; sample < batch; sample++)
            for (int y = 0; y < window.OutputHeight; y++)
                for (int x = 0; x < window.OutputWidth; x++, row++)
                    for (int ky = 0, cell = 0; ky < kernel; ky++)
                        for (int kx = 0; kx < kernel; kx++)
                            for (int c = 0; c < channels; c++, cell++)
                            {
                                int imageY = y * stride + ky - window.PadTop, imageX = x * stride + kx - window.PadLeft;
                                bool inside = imageY >= 0 && imageY < side && imageX >= 0 && imageX < side;
                                expected[row * window.PatchSize + cell] = inside ? images[((sample * side + imageY) * side + imageX) * channels + c] : 0f;
                            }
        // Runs of sixteen floats or more go in vectors of eight, of four on the portable path.
        foreach (var path in channels * kernel < 16 ? [Simd.Best] : Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (int threads in new[] { 1, 2 })
            {
                for (int attempt = 0; attempt < 20; attempt++)
                {
                    var patches = new float[expected.Length];
                    KernelSettings.OnThreads(threads, () => Convolution.Im2Col(images, patches, window, batch));
                    Assert.Equal(expected, patches);
                }
            }
        }
    }

    /// <summary>
    /// A 1x1 window at strides 1 ('valid' or 'same'): its patch rows are its input's pixels, which the generated kernel
    /// gradient reads in place of patches, and its transposed convolution writes each pixel's gradient from the product
    /// directly. Both equal the patch route bit for bit: im2col copies the input exactly; the product equals what the
    /// accumulating route (product into patches, then col2im onto zeros) writes, on one core or two. A strided 1x1 window
    /// is no such identity.
    /// </summary>
    [Theory]
    [InlineData(16, 16, 32, 64, 32, false)]  // the MobileNet block's first pointwise convolution: 1 MB of patches, a chunk a core
    [InlineData(5, 7, 3, 10, 2, true)]
    public void A_pointwise_window_takes_its_input_for_its_patches(int height, int width, int channels, int filters, int batch, bool same)
    {
        var window = new Window(height, width, channels, 1, 1, 1, 1, same);
        Assert.True(window.IsPointwise);
        Assert.False(window.CroppedTo(height - 1, width).IsPointwise);
        Assert.False(new Window(height, width, channels, 1, 1, 2, 2, same).IsPointwise);
        var (input, values, kernel) = (Uniform(batch * height * width * channels, 7), Uniform(batch * window.Positions * filters, 8), Uniform(channels * filters, 9));
        var patches = new float[batch * window.Positions * window.PatchSize];
        Convolution.Im2Col(input, patches, window, batch);
        Assert.Equal(input, patches);

        var scratch = new float[Convolution.TransposedScratch(window, filters, batch)];
        Assert.NotEmpty(scratch);
        var throughPatches = new float[input.Length];
        Convolution.Transposed(values, kernel, scratch, throughPatches, window, filters, batch, accumulate: true);
        // Written over, each pixel's gradient is the one product: no scratch is read, so a Conv2DTranspose's forward pass
        // allocates none.
        Assert.Equal(0, Convolution.TransposedScratch(window, filters, batch, accumulate: false));
        foreach (int threads in new[] { 1, 2 })
        {
            var direct = Uniform(input.Length, 10); // overwritten
            KernelSettings.OnThreads(threads, () => Convolution.Transposed(values, kernel, default, direct, window, filters, batch, accumulate: false));
            Assert.Equal(throughPatches, direct);
        }
    }

    public static TheoryData<int, int, int, int, int, bool, int, int> FewValueChannels() => new()
    {
        // height, width, channels, kernel, stride, same, dilation, value channels
        { 28, 28, 16, 3, 1, true, 1, 1 },   // the autoencoder's last layer: a whole vector of channels, one value channel
        { 9, 8, 5, 3, 2, true, 1, 2 },      // strided: pixels that fewer cells read; channels fewer than a vector
        { 11, 10, 20, 3, 1, false, 2, 3 },  // dilated, a vector of channels and a part
        { 6, 7, 3, 2, 1, true, 1, 4 },      // 'same' padding only at the bottom and right
        { 12, 13, 32, 3, 1, true, 1, 2 },   // whole vectors: each row's inside (11 pixels) eight pixels and three at a time
        { 10, 21, 16, 3, 1, false, 2, 4 },  // dilated 'valid', whole vectors: rows' insides of 17 pixels, top and bottom rows of fewer cells
        { 9, 12, 16, 4, 2, true, 1, 1 },    // strided: inside columns read as many cells (two), yet not shifted alike: one by one
        // More value channels, at stride 1 over whole 256-bit vectors of channels, rows' insides of at least eight pixels:
        { 16, 16, 16, 3, 1, false, 1, 8 },  // the autoencoder's second layer's depths, 'valid' ('same' rows of 10 and more go direct on AVX2): insides of 12, eight pixels and four
        { 16, 16, 8, 3, 1, false, 1, 8 },   // 'valid' over 8 channels: 256-bit vectors on AVX-512
        { 11, 11, 32, 3, 1, true, 1, 16 },  // two vectors of channels (AVX-512), chains of 16: insides of 9, eight pixels and one (rows too narrow to go direct on AVX2)
        { 9, 16, 24, 3, 1, false, 2, 5 },   // dilated 'valid', three 256-bit vectors of channels: insides of 8
    };

    /// <summary>
    /// Values of a few channels (the input gradient of a Conv2D with a few filters), and of more over shallow images at
    /// stride 1, are transposed without patches (no scratch asked), each patch-gradient cell computed where col2im reads
    /// it: the bits of the product values · kernelᵀ followed by col2im, on every SIMD path and thread count, written over
    /// the image or added to it.
    /// </summary>
    [Theory, MemberData(nameof(FewValueChannels))]
    public void Few_value_channels_are_transposed_in_place_with_the_bits_of_the_patches(int height, int width, int channels, int kernel, int stride, bool same, int dilation, int valueChannels)
    {
        const int batch = 3;
        var window = new Window(height, width, channels, kernel, kernel, stride, stride, same, dilation);
        var values = Uniform(batch * window.Positions * valueChannels, 11);
        var weights = Uniform(window.PatchSize * valueChannels, 12);
        var start = Uniform(batch * height * width * channels, 13);
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            Assert.Equal(0, Convolution.TransposedScratch(window, valueChannels, batch));
            var patches = new float[batch * window.Positions * window.PatchSize];
            Gemm.MultiplyTransposedB(values, weights, patches, batch * window.Positions, valueChannels, window.PatchSize);
            foreach (bool accumulate in new[] { false, true })
            {
                var expected = (float[])start.Clone();
                Convolution.Col2Im(patches, expected, window, batch, accumulate);
                foreach (int threads in new[] { 1, 2 })
                {
                    var image = (float[])start.Clone();
                    KernelSettings.OnThreads(threads, () => Convolution.Transposed(values, weights, default, image, window, valueChannels, batch, accumulate));
                    for (int i = 0; i < image.Length; i++)
                        Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(image[i]),
                            $"{path}, {threads} threads, accumulate {accumulate}: pixel value {i} is {image[i]}, the patches give {expected[i]}");
                }
            }
        }
    }

    public static TheoryData<int, int, int, int, int, bool, int, int, int, bool> UpsampledImages() => new()
    {
        // height, width, channels, kernel, stride, same, value channels, block rows, block columns, in place
        { 28, 28, 16, 3, 1, true, 1, 2, 2, true },    // the autoencoder's last layer: rows' insides eight pixels at a time, edges one by one
        { 12, 9, 5, 3, 2, true, 2, 3, 3, true },      // strided, channels fewer than a vector, 3 x 3 blocks
        { 14, 14, 16, 3, 1, false, 8, 2, 2, true },   // more value channels over a shallow image, 'valid' ('same' goes direct on AVX2)
        { 10, 12, 20, 2, 1, false, 3, 2, 3, true },   // 'valid', a vector of channels and a part, 2 x 3 blocks
        { 14, 14, 32, 3, 1, true, 24, 2, 2, false },  // many value channels: patches or the direct route, the upsampled gradient in the scratch
        { 8, 8, 16, 1, 1, true, 24, 2, 2, false },    // pointwise: the product writes the upsampled gradient
    };

    /// <summary>
    /// Onto an UpSampling2D's input (the window's image its upsampled output), the transposed convolution gives the bits of
    /// the transposed convolution followed by UpSampling.Backward, on every SIMD path and thread count, written or added:
    /// in place with no scratch, each row summed into its blocks as it is computed; by the other routes through the
    /// upsampled gradient in the scratch.
    /// </summary>
    [Theory, MemberData(nameof(UpsampledImages))]
    public void Transposed_onto_an_upsampling_input_sums_each_block_with_the_bits_of_the_two_passes(int height, int width, int channels, int kernel, int stride, bool same,
        int valueChannels, int rows, int columns, bool inPlace)
    {
        const int batch = 3;
        var window = new Window(height, width, channels, kernel, kernel, stride, stride, same);
        int smallFloats = batch * height / rows * width / columns * channels;
        var values = Uniform(batch * window.Positions * valueChannels, 21);
        var weights = Uniform(window.PatchSize * valueChannels, 22);
        var start = Uniform(smallFloats, 23);
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            int scratch = Convolution.TransposedScratch(window, valueChannels, batch, upsampled: true);
            Assert.True(inPlace == (scratch == 0), $"{path}: {window} from {valueChannels} value channels asked {scratch} floats of scratch");
            var upsampled = new float[batch * height * width * channels];
            Convolution.Transposed(values, weights, new float[Convolution.TransposedScratch(window, valueChannels, batch, accumulate: false)], upsampled, window, valueChannels, batch, accumulate: false);
            foreach (bool accumulate in new[] { false, true })
            {
                var expected = (float[])start.Clone();
                UpSampling.Backward(upsampled, expected, height / rows, width / columns, channels, rows, columns, batch, accumulate);
                foreach (int threads in new[] { 1, 2 })
                {
                    var image = (float[])start.Clone();
                    KernelSettings.OnThreads(threads, () => Convolution.Transposed(values, weights, new float[scratch], image, window, valueChannels, batch, accumulate,
                        upsampledRows: rows, upsampledColumns: columns));
                    for (int i = 0; i < image.Length; i++)
                        Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(image[i]),
                            $"{path}, {threads} threads, accumulate {accumulate}: gradient {i} is {image[i]}, the two passes give {expected[i]}");
                }
            }
        }
    }

    public static TheoryData<int, int, int, int, int, bool, int, int, int, int> UpsampledInputs() => new()
    {
        // height, width, channels, kernel, stride, same, dilation, filters, block rows, block columns
        { 28, 28, 16, 3, 1, true, 1, 1, 2, 2 },   // the autoencoder's last layer, planar: rows of 14 floats repeated across, three shuffles and two floats
        { 12, 9, 5, 3, 1, true, 1, 2, 3, 3 },     // planar, 3 x 3 blocks over channels fewer than a vector
        { 10, 12, 20, 2, 1, false, 1, 3, 2, 3 },  // planar 'valid' (its planes' rows start inside a block), 2 x 3 blocks
        { 16, 10, 8, 3, 1, true, 2, 4, 2, 2 },    // planar, dilated, rows of five floats repeated across
        { 12, 12, 8, 3, 2, true, 1, 8, 2, 2 },    // more filters, strided: the direct route or the patches read the upsampled image in a scratch
    };

    /// <summary>
    /// A convolution reading an UpSampling2D's input (the window's image its upsampled output) gives the bits of
    /// UpSampling.Forward then the convolution, on every SIMD path and thread count, with bias and ReLU or a normalization:
    /// the planar route lays its planes out from the image before upsampling; keeping patches, and the other routes, take
    /// the upsampled image in a scratch.
    /// </summary>
    [Theory, MemberData(nameof(UpsampledInputs))]
    public void A_convolution_of_an_upsampling_input_has_the_bits_of_the_two_passes(int height, int width, int channels, int kernel, int stride, bool same,
        int dilation, int filters, int rows, int columns)
    {
        const int batch = 3;
        var window = new Window(height, width, channels, kernel, kernel, stride, stride, same, dilation);
        var small = Uniform(batch * height / rows * width / columns * channels, 31);
        var weights = Uniform(window.PatchSize * filters, 32);
        var bias = Uniform(filters, 33);
        var upsampled = new float[batch * height * width * channels];
        UpSampling.Forward(small, upsampled, height / rows, width / columns, channels, rows, columns, batch);
        float[] gamma = Uniform(filters, 34), beta = Uniform(filters, 35), mean = Uniform(filters, 36), variance = Uniform(filters, 37).Select(v => v + 1.5f).ToArray();
        int outputFloats = batch * window.Positions * filters, patchFloats = batch * window.Positions * window.PatchSize;
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (var (keepPatches, normalized) in new[] { (false, false), (true, false), (false, true) })
            {
                BatchNormAtInference Applied() => normalized ? new(gamma, beta, mean, variance, 1e-3f, relu: true) : default;
                var expected = new float[outputFloats];
                var expectedPatches = new float[patchFloats];
                Convolution.Forward(upsampled, expectedPatches, weights, expected, window, filters, batch, bias, relu: true, keepPatches, Applied());
                foreach (int threads in new[] { 1, 2 })
                {
                    var output = new float[outputFloats];
                    var patches = new float[patchFloats];
                    KernelSettings.OnThreads(threads, () => Convolution.Forward(small, patches, weights, output, window, filters, batch, bias, relu: true, keepPatches, Applied(),
                        upsampledRows: rows, upsampledColumns: columns));
                    string context = $"{path}, {threads} threads, keeping patches {keepPatches}, normalized {normalized}";
                    for (int i = 0; i < output.Length; i++) AssertSameBits(expected[i], output[i], $"{context}: output {i} against the two passes");
                    if (keepPatches) Assert.Equal(expectedPatches, patches);
                }
            }
        }
    }

    public static TheoryData<int, int, int, int, int, bool, int, int, int, int> UpsampledKernelGradients() => new()
    {
        // batch, height, width, channels, stride, same, dilation, filters, block rows, block columns
        { 11, 28, 28, 16, 1, true, 1, 1, 2, 2 },  // the autoencoder's last layer, summed in slices
        { 3, 12, 8, 20, 2, true, 1, 3, 3, 2 },    // strided 'same', a vector of channels and a part, 3 x 2 blocks
        { 4, 12, 10, 8, 1, false, 2, 4, 2, 2 },   // dilated 'valid'
        { 3, 16, 16, 8, 1, true, 1, 8, 2, 2 },    // filters in the lanes: the upsampled image in a scratch
    };

    /// <summary>
    /// A kernel gradient from an UpSampling2D's input has the bits of the one from its upsampled output, on every SIMD path and
    /// thread count, written or added: a few filters pad each sample from the image before upsampling, more read it upsampled
    /// in a scratch.
    /// </summary>
    [Theory, MemberData(nameof(UpsampledKernelGradients))]
    public void A_kernel_gradient_from_an_upsampling_input_has_the_bits_of_the_upsampled_one(int batch, int height, int width, int channels, int stride, bool same,
        int dilation, int filters, int rows, int columns)
    {
        var window = new Window(height, width, channels, 3, 3, stride, stride, same, dilation);
        var small = Uniform(batch * height / rows * width / columns * channels, 41);
        var gradient = Uniform(batch * window.Positions * filters, 42);
        var start = Uniform(window.PatchSize * filters, 43);
        var upsampled = new float[batch * height * width * channels];
        UpSampling.Forward(small, upsampled, height / rows, width / columns, channels, rows, columns, batch);
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (bool accumulate in new[] { false, true })
            {
                var expected = (float[])start.Clone();
                Convolution.KernelGradient(upsampled, gradient, expected, window, filters, batch, accumulate);
                foreach (int threads in new[] { 1, 2 })
                {
                    var taken = (float[])start.Clone();
                    KernelSettings.OnThreads(threads, () => Convolution.KernelGradient(small, gradient, taken, window, filters, batch, accumulate,
                        upsampledRows: rows, upsampledColumns: columns));
                    for (int i = 0; i < taken.Length; i++)
                        AssertSameBits(expected[i], taken[i], $"{path}, {threads} threads, accumulate {accumulate}: kernel gradient {i} against the upsampled image's");
                }
            }
        }
    }

    [Fact]
    public void An_upsampled_input_of_part_blocks_or_too_short_is_refused()
    {
        var window = new Window(28, 28, 16, 3, 3, 1, 1, Same: true);
        var error = Assert.Throws<ArgumentException>(() => Convolution.Forward(new float[14 * 14 * 16], default, new float[144], new float[784], window, 1, 1,
            keepPatches: false, upsampledRows: 3, upsampledColumns: 2));
        Assert.Contains("is no UpSampling2D(3, 2) of whole blocks", error.Message);
        error = Assert.Throws<ArgumentException>(() => Convolution.Forward(new float[14 * 14 * 16 - 1], default, new float[144], new float[784], window, 1, 1,
            keepPatches: false, upsampledRows: 2, upsampledColumns: 2));
        Assert.Contains("too short", error.Message);
        error = Assert.Throws<ArgumentException>(() => Convolution.KernelGradient(new float[14 * 14 * 16 - 1], new float[784], new float[144], window, 1, 1,
            upsampledRows: 2, upsampledColumns: 2));
        Assert.Contains("too short", error.Message);
    }

    /// <summary>
    /// Beyond a few value channels, the in-place route takes only the shapes it measured faster on; the others keep the
    /// patches (a scratch asked), on every SIMD path.
    /// </summary>
    [Theory]
    [InlineData(14, 14, 8, 1, true, 16)]    // more value channels than image channels
    [InlineData(11, 11, 32, 1, true, 24)]   // more than 16 value channels (rows too narrow to go direct on AVX2)
    [InlineData(14, 14, 64, 1, false, 8)]   // a deep image
    [InlineData(15, 15, 16, 2, true, 8)]    // strided: no shifted runs
    [InlineData(7, 7, 16, 1, true, 8)]      // rows' insides of five pixels
    [InlineData(14, 14, 12, 1, true, 8)]    // channels that are no whole 256-bit vectors
    public void More_value_channels_keep_the_patches_where_in_place_measured_slower(int height, int width, int channels, int stride, bool same, int valueChannels)
    {
        var window = new Window(height, width, channels, 3, 3, stride, stride, same);
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            Assert.True(Convolution.TransposedScratch(window, valueChannels, 4) > 0, $"{path}: {window} from {valueChannels} value channels asked no scratch");
        }
    }

    public static TheoryData<int, int, int, int, int, int, bool, int, int> FewFilterKernelGradients() => new()
    {
        // batch, height, width, channels, kernel, stride, same, dilation, filters
        { 11, 28, 28, 16, 3, 1, true, 1, 1 },  // the autoencoder's last layer, deep enough to be summed in slices (8,624 positions: 8 of 1,078)
        { 3, 28, 28, 16, 3, 1, true, 1, 1 },   // the same in one slice of 256-position blocks, a block spanning two samples
        { 40, 9, 8, 20, 3, 2, true, 1, 3 },    // strided 'same' (padding only at the bottom and right), a vector of channels and a part
        { 30, 11, 10, 8, 3, 1, false, 2, 4 },  // dilated 'valid', 36 cells per filter in three groups
        { 5, 12, 9, 32, 2, 2, false, 1, 2 },   // a strided 'valid' window that leaves the last column unread
    };

    /// <summary>
    /// The kernel gradient of a few filters, taken from the input without patches, has the bits of patchesᵀ · gradient
    /// (im2col, then Gemm.MultiplyTransposedA) on every SIMD path and thread count, written over the gradient or added to it.
    /// </summary>
    [Theory, MemberData(nameof(FewFilterKernelGradients))]
    public void Few_filters_take_their_kernel_gradient_from_the_input_with_the_bits_of_the_patches(int batch, int height, int width, int channels, int kernel,
        int stride, bool same, int dilation, int filters)
    {
        var (window, input, gradient, start, patches) = KernelGradientCase(height, width, channels, kernel, stride, same, dilation, filters, batch, seed: 21);
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (bool accumulate in new[] { false, true })
            {
                var expected = (float[])start.Clone();
                Gemm.MultiplyTransposedA(patches, gradient, expected, window.PatchSize, batch * window.Positions, filters, accumulate);
                foreach (int threads in new[] { 1, 2 })
                {
                    var taken = (float[])start.Clone();
                    KernelSettings.OnThreads(threads, () => Convolution.KernelGradient(input, gradient, taken, window, filters, batch, accumulate));
                    for (int i = 0; i < taken.Length; i++)
                        Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(taken[i]),
                            $"{path}, {threads} threads, accumulate {accumulate}: kernel gradient {i} is {taken[i]}, the patches give {expected[i]}");
                }
            }
        }
    }

    [Fact]
    public void A_kernel_gradient_from_the_input_refuses_a_few_filters_over_a_few_channels_and_pointwise_windows()
    {
        var window = new Window(8, 8, 16, 3, 3, 1, 1, Same: true);
        Assert.True(Convolution.TakesKernelGradientFromInput(window, 5));
        Assert.True(Convolution.TakesKernelGradientFromInput(new Window(8, 8, 3, 3, 3, 1, 1, Same: true), 5));
        var few = new Window(8, 8, 4, 3, 3, 1, 1, Same: true);
        Assert.False(Convolution.TakesKernelGradientFromInput(few, 4));
        Assert.False(Convolution.TakesKernelGradientFromInput(new Window(8, 8, 16, 1, 1, 1, 1, Same: true), 1));
        Assert.False(Convolution.TakesKernelGradientFromInput(new Window(8, 8, 16, 1, 1, 1, 1, Same: true), 32));
        // A kernel past the lanes' limit (3x3 over 128 channels to 256 filters) keeps the GEMM through patches; to 128 filters it does not.
        Assert.False(Convolution.TakesKernelGradientFromInput(new Window(14, 14, 128, 3, 3, 1, 1, Same: true), 256));
        Assert.True(Convolution.TakesKernelGradientFromInput(new Window(16, 16, 128, 3, 3, 1, 1, Same: true), 128));
        var error = Assert.Throws<ArgumentException>(() =>
            Convolution.KernelGradient(new float[8 * 8 * 4], new float[64 * 4], new float[36 * 4], few, 4, 1));
        Assert.Contains("more than 4 filters (a kernel of at most 196608 floats), or at most that many over at least 8 channels", error.Message);
        error = Assert.Throws<ArgumentException>(() =>
            Convolution.KernelGradient(new float[8 * 8 * 16], new float[63], new float[144], window, 1, 1));
        Assert.Contains("too short", error.Message);
        error = Assert.Throws<ArgumentException>(() =>
            Convolution.KernelGradient(new float[8 * 8 * 16], new float[64 * 5 - 1], new float[144 * 5], window, 5, 1));
        Assert.Contains("too short", error.Message);
    }

    /// <summary>A window its kernel gradient is taken from the input for, an input, an output gradient, a kernel gradient to add to, and the input's patches.</summary>
    private static (Window Window, float[] Input, float[] Gradient, float[] Start, float[] Patches) KernelGradientCase(int height, int width, int channels, int kernel,
        int stride, bool same, int dilation, int filters, int batch, int seed)
    {
        var window = new Window(height, width, channels, kernel, kernel, stride, stride, same, dilation);
        Assert.True(Convolution.TakesKernelGradientFromInput(window, filters));
        var input = Uniform(batch * height * width * channels, seed);
        var patches = new float[batch * window.Positions * window.PatchSize];
        Convolution.Im2Col(input, patches, window, batch);
        return (window, input, Uniform(batch * window.Positions * filters, seed + 1), Uniform(window.PatchSize * filters, seed + 2), patches);
    }

    public static IEnumerable<object[]> KernelGradientsByFilters() => KernelSettings.OnEveryPath(new[]
    {
        // height, width, channels, kernel, stride, same, dilation, filters, batch
        new object[] { 32, 32, 32, 3, 1, true, 1, 32, 2 },   // the ResNet block's convolutions: two vectors of filters, windows over the padding copied
        new object[] { 32, 32, 3, 3, 2, true, 1, 32, 3 },    // the MobileNet stem: 27-float patches, four passes of six entries and one of three
        new object[] { 9, 8, 5, 3, 1, false, 1, 40, 3 },     // 'valid': the image read in place; 40 filters, two vectors and a masked half
        new object[] { 9, 9, 17, 3, 1, true, 2, 5, 2 },      // dilated, five filters: one masked vector
        new object[] { 13, 13, 16, 5, 1, false, 1, 64, 2 },  // a 5x5 window, two blocks of two vectors
        new object[] { 8, 8, 16, 1, 2, false, 1, 16, 4 },    // a strided 1x1 window: its patches are every other pixel
        new object[] { 16, 16, 8, 3, 1, true, 1, 24, 9 },    // 144 output rows: the four slices, the last ones inside a sample; 24 filters, three 256-bit vectors on AVX-512
        new object[] { 8, 8, 8, 3, 1, true, 1, 8, 3 },       // the autoencoder's decoder: eight filters, one whole 256-bit vector on AVX-512
        // 5x5 windows: 25 entries a channel, so over 7 to 11 channels the last pass keeps 7 to 11 of twelve entries (AVX-512)
        // and 1 to 5 of six
        new object[] { 7, 7, 7, 5, 1, false, 1, 32, 2 },
        new object[] { 7, 7, 8, 5, 1, false, 1, 20, 2 },
        new object[] { 7, 7, 9, 5, 1, false, 1, 32, 2 },
        new object[] { 7, 7, 10, 5, 1, false, 1, 20, 2 },
        new object[] { 7, 7, 11, 5, 1, false, 1, 32, 2 },
    });

    /// <summary>
    /// More than a few filters take their kernel gradient from the input with filters in the lanes: each weight within the
    /// bound of a float sum of its terms (their count's ulps of the sum of their sizes) of patchesᵀ · gradient summed in
    /// double, written or added, and the same bits on one core or two: those of its chains written out (per weight and slice
    /// of the output rows, a chain of fused multiply-adds over the slice's positions in order; the slices added in order).
    /// </summary>
    [Theory, MemberData(nameof(KernelGradientsByFilters))]
    public void A_kernel_gradient_by_filters_from_the_input_matches_the_patches_product(int height, int width, int channels, int kernel, int stride, bool same,
        int dilation, int filters, int batch, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (window, input, gradient, start, patches) = KernelGradientCase(height, width, channels, kernel, stride, same, dilation, filters, batch, seed: 31);
        int positions = batch * window.Positions;
        // Each weight's sum in double and the size of its terms, and its chain per slice of the output rows (the positions
        // in order either way).
        var exact = new double[start.Length];
        var size = new double[start.Length];
        int rows = batch * window.OutputHeight, slices = Convolution.FilterSlicesOf(rows);
        var chains = new float[slices, start.Length];
        for (int slice = 0; slice < slices; slice++)
            for (long r = (long)rows * slice / slices * window.OutputWidth; r < (long)rows * (slice + 1) / slices * window.OutputWidth; r++)
                for (int p = 0; p < window.PatchSize; p++)
                    for (int f = 0; f < filters; f++)
                    {
                        float entry = patches[r * window.PatchSize + p], dy = gradient[r * filters + f];
                        double term = (double)entry * dy;
                        exact[p * filters + f] += term;
                        size[p * filters + f] += Math.Abs(term);
                        chains[slice, p * filters + f] = MathF.FusedMultiplyAdd(entry, dy, chains[slice, p * filters + f]);
                    }
        double ulp = Math.Pow(2, -24);
        foreach (bool accumulate in new[] { false, true })
        {
            var written = new float[start.Length];
            for (int i = 0; i < written.Length; i++)
            {
                written[i] = accumulate ? start[i] + chains[0, i] : chains[0, i];
                for (int slice = 1; slice < slices; slice++) written[i] += chains[slice, i];
            }
            foreach (int threads in new[] { 1, 2 })
            {
                var taken = accumulate ? (float[])start.Clone() : Enumerable.Repeat(float.NaN, start.Length).ToArray();
                KernelSettings.OnThreads(threads, () => Convolution.KernelGradient(input, gradient, taken, window, filters, batch, accumulate));
                for (int i = 0; i < taken.Length; i++)
                {
                    double expected = exact[i] + (accumulate ? start[i] : 0), bound = (positions + 1) * ulp * (size[i] + (accumulate ? Math.Abs(start[i]) : 0));
                    Assert.True(Math.Abs(taken[i] - expected) <= bound, $"{path}, {threads} threads, accumulate {accumulate}: weight {i} is {taken[i]}, expected {expected} within {bound}");
                }
                Assert.Equal(written.Select(BitConverter.SingleToInt32Bits), taken.Select(BitConverter.SingleToInt32Bits));
            }
        }
    }

    [Fact]
    public void Transposed_convolution_matches_its_definition_across_chunks()
    {
        // 1,024 positions of 144 floats: 590 KB of patches per sample, so each sample is a chunk of its own.
        var window = new Window(32, 32, 16, 3, 3, 1, 1, Same: true);
        const int batch = 3, filters = 5;
        var values = Uniform(batch * window.Positions * filters, 4);
        var kernel = Uniform(window.PatchSize * filters, 5);
        var image = Uniform(batch * 32 * 32 * 16, 6);
        var start = (float[])image.Clone();
        Assert.True(Convolution.TransposedScratch(window, filters, batch) < batch * window.Positions * window.PatchSize);
        var scratch = new float[Convolution.TransposedScratch(window, filters, batch)];
        Convolution.Transposed(values, kernel, scratch, image, window, filters, batch, accumulate: true);

        var expected = start.Select(v => (double)v).ToArray();
        for (int n = 0; n < batch; n++)
            for (int oy = 0; oy < window.OutputHeight; oy++)
                for (int ox = 0; ox < window.OutputWidth; ox++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++)
                        {
                            int y = oy + ky - window.PadTop, x = ox + kx - window.PadLeft;
                            if (y < 0 || y >= 32 || x < 0 || x >= 32) continue;
                            for (int c = 0; c < 16; c++)
                            {
                                double sum = 0;
                                for (int f = 0; f < filters; f++)
                                    sum += (double)values[((n * 32 + oy) * 32 + ox) * filters + f] * kernel[((ky * 3 + kx) * 16 + c) * filters + f];
                                expected[((n * 32 + y) * 32 + x) * 16 + c] += sum;
                            }
                        }
        for (int i = 0; i < image.Length; i++) Assert.True(Math.Abs(expected[i] - image[i]) <= 1e-5, $"pixel value {i}: expected {expected[i]}, got {image[i]}");
    }

    public static IEnumerable<object[]> DirectlyTransposedWindows() => KernelSettings.OnEveryPath(new[]
    {
        // height, width, channels, kernel height, kernel width, value channels, batch, direct on AVX-512, direct on AVX2
        new object[] { 32, 32, 32, 3, 3, 32, 2, true, true },   // the ResNet block's convolutions: two vectors of channels, rows of four eight-pixel passes (AVX2: ten of three and one of two)
        new object[] { 12, 12, 64, 3, 3, 16, 2, true, true },   // four vectors, rows of two six-pixel passes (AVX2: four of three, for each 32 channels)
        new object[] { 16, 16, 32, 5, 3, 17, 3, true, true },   // an odd kernel that is not square: two rows of padding above and below, one beside (more values than the in-place route takes)
        new object[] { 10, 11, 64, 3, 3, 40, 1, true, false },  // 360-float windows, rows of 11 (AVX2: narrower than its passes take)
        new object[] { 14, 14, 16, 3, 3, 24, 2, false, true },  // AVX2's two-vector passes (a row six, four and four); AVX-512 takes no 16 filters deep
        new object[] { 12, 12, 48, 3, 3, 20, 1, false, true },  // AVX2's two-vector passes, rows of two of six for each 16 channels; on AVX-512 48 is neither 32 nor fours of vectors
    });

    /// <summary>
    /// A stride-1 'same' window with odd sides is transposed as the direct convolution of the values with the kernel turned
    /// (on AVX-512 and AVX2, where the direct kernel takes it deep; the patches route elsewhere), over or onto the image, on one
    /// core or two: each pixel within the bound of a float sum of its terms (its depth's ulps of the sum of their sizes) of
    /// the definition summed in double.
    /// </summary>
    [Theory, MemberData(nameof(DirectlyTransposedWindows))]
    public void A_same_window_is_transposed_as_the_direct_convolution_of_its_values(int height, int width, int channels, int kernelHeight, int kernelWidth,
        int valueChannels, int batch, bool directOnAvx512, bool directOnAvx2, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, 1, 1, Same: true);
        bool direct = path == SimdPath.Avx512 && directOnAvx512 || path == SimdPath.Avx2 && directOnAvx2;
        Assert.Equal(direct, Convolution.TransposesDirectly(window, valueChannels, out var flipped) && flipped.Channels == valueChannels);
        var values = Uniform(batch * window.Positions * valueChannels, 21);
        var kernel = Uniform(window.PatchSize * valueChannels, 22);
        var start = Uniform(batch * height * width * channels, 23);
        var exact = new double[start.Length];
        var size = new double[start.Length];
        for (int n = 0; n < batch; n++)
            for (int oy = 0; oy < height; oy++)
                for (int ox = 0; ox < width; ox++)
                    for (int ky = 0; ky < kernelHeight; ky++)
                        for (int kx = 0; kx < kernelWidth; kx++)
                        {
                            int y = oy + ky - window.PadTop, x = ox + kx - window.PadLeft;
                            if (y < 0 || y >= height || x < 0 || x >= width) continue;
                            for (int c = 0; c < channels; c++)
                                for (int f = 0; f < valueChannels; f++)
                                {
                                    double term = (double)values[((n * height + oy) * width + ox) * valueChannels + f] * kernel[((ky * kernelWidth + kx) * channels + c) * valueChannels + f];
                                    exact[((n * height + y) * width + x) * channels + c] += term;
                                    size[((n * height + y) * width + x) * channels + c] += Math.Abs(term);
                                }
                        }
        double depth = kernelHeight * kernelWidth * valueChannels + 1, ulp = Math.Pow(2, -24);
        // The direct route reads no scratch, so a model allocates none for it (the ResNet block: 2.4 MB); values marked
        // scattered (a pooling's gradient) take the patches, which skip their zeros, and their scratch.
        foreach (bool scattered in new[] { false, true })
        {
            var scratch = new float[Convolution.TransposedScratch(window, valueChannels, batch, scattered)];
            Assert.Equal(direct && !scattered, scratch.Length == 0);
            foreach (bool accumulate in new[] { false, true })
                foreach (int threads in new[] { 1, 2 })
                {
                    var image = accumulate ? (float[])start.Clone() : Enumerable.Repeat(float.NaN, start.Length).ToArray();
                    KernelSettings.OnThreads(threads, () => Convolution.Transposed(values, kernel, scratch, image, window, valueChannels, batch, accumulate, scattered));
                    for (int i = 0; i < image.Length; i++)
                    {
                        double expected = exact[i] + (accumulate ? start[i] : 0), bound = depth * ulp * (size[i] + (accumulate ? Math.Abs(start[i]) : 0));
                        Assert.True(Math.Abs(image[i] - expected) <= bound,
                            $"{path}, {threads} threads, accumulate {accumulate}, scattered {scattered}: pixel value {i} is {image[i]}, expected {expected} within {bound}");
                    }
                }
        }
    }

    public static TheoryData<int, int, int, int, int, int, bool, int, int, int> SmallWindows() => new()
    {
        // height, width, channels, kernel height, kernel width, stride, same, dilation, filters, batch
        { 28, 28, 1, 3, 3, 1, false, 1, 32, 2 },   // the CNN sample's first layer
        { 28, 28, 1, 3, 3, 1, false, 1, 32, 1 },   // at batch 1: the image's output rows in two halves
        { 28, 28, 1, 3, 3, 1, true, 1, 32, 3 },    // two parts that meet inside the second image
        { 7, 6, 1, 3, 3, 1, false, 1, 10, 2 },     // rows of four: one four-pixel pass, in place
        { 9, 9, 1, 3, 3, 1, false, 1, 16, 2 },     // rows of seven: two passes of four, the second redoing one, or on AVX-512 (eight a pass of one vector) all gathered
        { 10, 10, 1, 3, 3, 1, false, 1, 16, 2 },   // rows of eight: two passes of four, or on AVX-512 one of eight of one vector
        { 12, 12, 3, 3, 3, 1, false, 1, 24, 2 },   // rows of ten: six and four, a pair of 8-float vectors and one of the last eight (on AVX-512 too: 17 to 31 filters take 256-bit passes)
        { 12, 12, 3, 3, 3, 1, false, 1, 48, 2 },   // rows of ten against 48 filters: on AVX-512 eight and four that redoes two, a pair and one vector
        { 9, 9, 1, 3, 3, 1, false, 1, 40, 2 },     // rows of seven against 40 filters: on AVX-512 (eight a pass) all gathered, a pair and a masked vector
        { 10, 10, 1, 3, 3, 1, false, 1, 12, 2 },   // 12 filters: on AVX-512 one masked vector
        { 8, 9, 3, 3, 3, 2, true, 1, 40, 2 },      // padding on every side, filters past two vectors
        { 8, 8, 1, 3, 3, 2, true, 1, 1, 2 },       // 'same' padding only at the bottom and right
        { 32, 32, 3, 3, 3, 2, true, 1, 32, 3 },    // the MobileNet stem: windows over the padding read from a zero-padded copy of their rows
        { 24, 1000, 3, 3, 3, 1, true, 1, 8, 1 },   // rows beyond the copy's 16K floats: edge windows gathered one by one
        { 13, 11, 3, 3, 3, 1, true, 2, 64, 2 },    // dilated
        { 4, 2, 3, 3, 3, 1, true, 1, 32, 2 },     // rows of two against 32 filters: on AVX2 one two-pixel pass a row
        { 4, 1, 3, 3, 3, 1, true, 1, 32, 2 },     // rows of one: on AVX2 a three-pixel pass, two of its windows blank
        { 6, 4, 3, 3, 3, 1, true, 1, 64, 2 },     // rows of four against 64 filters: on AVX-512 one four-pixel pass a row
        { 6, 4, 1, 3, 3, 1, true, 1, 20, 2 },     // rows of four against 20 filters: a four-pixel pass of a pair of 8-float vectors a row, then one of a masked vector
        { 12, 12, 3, 3, 3, 1, false, 1, 64, 2 },  // rows of ten: on AVX-512 a six-pixel pass and a four-pixel one
        { 8, 8, 32, 1, 1, 1, false, 1, 40, 3 },    // pointwise: a range's rows are one run of pixels, whose last pass alone moves back
        { 3, 3, 4, 1, 1, 1, true, 1, 8, 1 },       // pointwise, runs that may be shorter than a pass
        { 10, 17, 2, 2, 3, 1, false, 1, 17, 2 },
        // Few filters against deeper patches: output pixels in the lanes, over planes of the rows (Convolution.Planar.cs).
        { 28, 28, 16, 3, 3, 1, true, 1, 1, 3 },    // the autoencoder's last layer: rows of a vector and a part, parts on both cores
        { 7, 5, 8, 3, 3, 1, true, 1, 3, 2 },       // rows narrower than a vector (stores masked), three filters' outputs spread
        { 13, 22, 5, 3, 3, 1, false, 2, 4, 2 },    // dilated, four filters, a row's last vector overlapping the one before
        { 9, 11, 9, 2, 2, 1, true, 1, 2, 2 },      // 'same' padding only at the bottom and right
    };

    /// <summary>
    /// Small windows are convolved directly, and windows against a few filters with pixels in the lanes (planar): each output must be exactly the chain of fused multiply-adds over its window in
    /// patch order (padding read as zero), plus bias, then ReLU — which is also what im2col + GEMM computes, so the result
    /// equals that path bit for bit, whichever rows the two cores took. With keepPatches the patches are filled as im2col
    /// fills them.
    /// </summary>
    [Theory, MemberData(nameof(SmallWindows))]
    public void Direct_convolution_is_the_exact_chain_and_equals_im2col_and_gemm(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride, bool same, int dilation, int filters, int batch)
    {
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        var image = Uniform(batch * height * width * channels, 3);
        var kernel = Uniform(window.PatchSize * filters, 4);
        var bias = Uniform(filters, 5);
        int outputFloats = batch * window.Positions * filters;
        var expected = Chain(image, kernel, bias, window, filters, batch);
        var patchesByIm2Col = new float[batch * window.Positions * window.PatchSize];
        Convolution.Im2Col(image, patchesByIm2Col, window, batch);
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            var viaGemm = new float[outputFloats];
            Gemm.Multiply(patchesByIm2Col, kernel, viaGemm, batch * window.Positions, window.PatchSize, filters, bias, relu: true);
            var direct = new float[outputFloats + 20];
            Array.Fill(direct, -3f);
            var patches = new float[patchesByIm2Col.Length];
            Convolution.Forward(image, patches, kernel, direct, window, filters, batch, bias, relu: true, keepPatches: false);
            Assert.All(patches, v => Assert.Equal(0f, v));
            for (int i = 0; i < outputFloats; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(direct[i]), $"{path}: output {i} is {direct[i]}, the chain gives {expected[i]}");
                Assert.True(BitConverter.SingleToInt32Bits(viaGemm[i]) == BitConverter.SingleToInt32Bits(direct[i]), $"{path}: output {i} is {direct[i]}, im2col + GEMM gives {viaGemm[i]}");
            }
            Assert.All(direct.Skip(outputFloats), v => Assert.Equal(-3f, v));
            Convolution.Forward(image, patches, kernel, direct, window, filters, batch, bias, relu: true, keepPatches: true);
            Assert.Equal(patchesByIm2Col, patches);
        }
    }

    /// <summary>The definition: each output the chain of fused multiply-adds over its window in patch order (padding read as zero), plus bias, then ReLU.</summary>
    private static float[] Chain(float[] image, float[] kernel, float[] bias, in Window window, int filters, int batch)
    {
        var expected = new float[batch * window.Positions * filters];
        for (int n = 0; n < batch; n++)
            for (int oy = 0; oy < window.OutputHeight; oy++)
                for (int ox = 0; ox < window.OutputWidth; ox++)
                    for (int f = 0; f < filters; f++)
                    {
                        float sum = 0f;
                        for (int ky = 0, p = 0; ky < window.KernelHeight; ky++)
                            for (int kx = 0; kx < window.KernelWidth; kx++)
                                for (int c = 0; c < window.Channels; c++, p++)
                                {
                                    int y = oy * window.StrideHeight + ky * window.Dilation - window.PadTop, x = ox * window.StrideWidth + kx * window.Dilation - window.PadLeft;
                                    float pixel = y < 0 || y >= window.Height || x < 0 || x >= window.Width ? 0f : image[((n * window.Height + y) * window.Width + x) * window.Channels + c];
                                    sum = MathF.FusedMultiplyAdd(pixel, kernel[p * filters + f], sum);
                                }
                        expected[((n * window.OutputHeight + oy) * window.OutputWidth + ox) * filters + f] = MathF.Max(sum + bias[f], 0f);
                    }
        return expected;
    }

    public static TheoryData<int, int, int, int, int, int, bool, int, int, int> LargeWindows() => new()
    {
        // height, width, channels, kernel height, kernel width, stride, same, dilation, filters, batch
        { 13, 13, 32, 3, 3, 1, false, 1, 64, 1 },   // the CNN sample's second layer at batch 1: two halves of 6 and 5 output rows
        { 13, 13, 32, 3, 3, 1, false, 1, 64, 3 },   // blocks that start mid-row and span samples
        { 26, 26, 32, 3, 3, 1, true, 1, 64, 2 },    // 'same' padding, parts of 7 output rows
        { 9, 8, 8, 3, 3, 2, true, 1, 40, 5 },       // stride 2, padding on every side, filters past two vectors, not shared
        { 12, 11, 5, 3, 3, 1, true, 2, 17, 4 },     // dilated, odd channels and filters
        { 20, 20, 1, 7, 7, 1, false, 1, 8, 2 },     // kernel rows of a few floats: the copying fast path
        { 3, 3, 8, 3, 3, 1, false, 1, 16, 2 },      // one position a sample: two rows, streamed after im2col
        { 13, 13, 32, 3, 3, 2, true, 1, 128, 3 },   // rows of 7, stride 2: through patches at inference too (narrower than the four-vector passes take)
        { 6, 6, 64, 3, 3, 1, true, 1, 64, 2 },      // 576 deep: one depth block of the GEMM
        { 5, 5, 128, 3, 3, 1, true, 1, 64, 2 },     // 1152 deep: one depth block of the GEMM (2048), at inference too (rows narrower than a direct pass)
        { 5, 5, 256, 3, 3, 1, true, 1, 64, 2 },     // 2304 deep: two depth blocks, at inference too
        { 12, 12, 256, 3, 3, 1, true, 1, 64, 1 },   // 2304 deep: two depth blocks for training, direct at inference (rows of two passes)
        { 32, 32, 32, 3, 3, 1, true, 1, 32, 2 },    // the ResNet block's: direct at inference on AVX-512 (eight-pixel passes) and AVX2 (ten three-pixel passes and a two-pixel one a row), 'same' rows in bands of 13
        { 24, 24, 32, 3, 3, 1, true, 1, 64, 2 },    // 'same' rows copied in bands of 17 and 7 for the four-vector passes
        { 16, 16, 32, 3, 3, 1, true, 1, 32, 2 },    // rows of 16: on AVX2 four three-pixel passes, then two of two
        { 13, 13, 32, 3, 3, 1, true, 1, 32, 2 },    // rows of 13: on AVX2 three passes of three and two of two; on AVX-512 through patches (rows under 16)
        { 26, 26, 32, 3, 3, 1, true, 1, 32, 2 },    // rows of 26 at 32 filters: on AVX-512 three eight-pixel passes and a four-pixel one
        { 14, 14, 64, 3, 3, 1, true, 1, 64, 2 },    // rows of 14: on AVX-512 a six-pixel pass and two of four
        { 14, 14, 32, 3, 3, 1, true, 1, 16, 2 },    // 16 filters: direct at inference on AVX2 (six-pixel two-vector passes)
        { 16, 16, 8, 3, 3, 1, false, 1, 48, 3 },    // 48 filters on AVX2: three two-vector passes for each group of pixels; rows of 14, parts on both cores
        { 13, 13, 64, 3, 3, 1, true, 1, 64, 2 },    // rows of 13: on AVX-512 six, four and four that redoes one
        { 8, 8, 64, 1, 1, 1, false, 1, 128, 3 },    // the MobileNet block's second pointwise convolution: one run per range at inference
        { 11, 12, 3, 5, 5, 1, true, 1, 24, 3 },     // kernel rows of fifteen floats, padding of two on every side: parts' patch rows copied whole
        { 15, 14, 1, 7, 7, 2, true, 1, 16, 2 },     // rows of seven, stride 2, padding on every side
    };

    /// <summary>
    /// Windows of more than a few floats go through im2col + GEMM when training, the patch rows built block by block by
    /// whichever thread multiplies them. The result must not depend on how many threads took part (bit for bit), must be
    /// the window's chain (bit for bit up to one of the GEMM's depth blocks, 2048 steps; deeper, the blocks' partial sums are
    /// added, so within rounding), and the patches must be what im2col writes. Inference (no patches kept) may convolve
    /// directly: then it is the chain bit for bit at any depth; either way it computes what training computes up to 2048 deep.
    /// </summary>
    [Theory, MemberData(nameof(LargeWindows))]
    public void Convolution_through_patches_is_the_chain_on_any_thread_count(int height, int width, int channels, int kernelHeight, int kernelWidth, int stride, bool same, int dilation, int filters, int batch)
    {
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        Assert.True(window.PatchSize > 32, "a window the direct kernel would take");
        var image = Uniform(batch * height * width * channels, 6);
        var kernel = Uniform(window.PatchSize * filters, 7);
        var bias = Uniform(filters, 8);
        var chain = Chain(image, kernel, bias, window, filters, batch);
        var patchesByIm2Col = new float[batch * window.Positions * window.PatchSize];
        Convolution.Im2Col(image, patchesByIm2Col, window, batch);
        bool oneDepthBlock = window.PatchSize <= 2048;
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            bool directAtInference = Convolution.IsDirect(window, filters, keepPatches: false);
            float[]? oneThread = null;
            foreach (int threads in new[] { 1, 2 })
            {
                var output = new float[chain.Length + 20];
                Array.Fill(output, -3f);
                var patches = new float[patchesByIm2Col.Length];
                KernelSettings.OnThreads(threads, () => Convolution.Forward(image, patches, kernel, output, window, filters, batch, bias, relu: true, keepPatches: true));
                var inference = new float[chain.Length + 20];
                Array.Fill(inference, -3f);
                // Inference needs no patches of the batch: it builds each part's patch rows in a scratch of its own.
                KernelSettings.OnThreads(threads, () => Convolution.Forward(image, Span<float>.Empty, kernel, inference, window, filters, batch, bias, relu: true, keepPatches: false));
                for (int i = 0; i < chain.Length; i++)
                {
                    if (oneDepthBlock) AssertSameBits(chain[i], output[i], $"{path}, {threads} threads: output {i} against the chain");
                    else Assert.True(Math.Abs(chain[i] - output[i]) <= 1e-6f * (window.PatchSize + 1), $"{path}, {threads} threads: output {i} is {output[i]}, the chain gives {chain[i]}");
                    AssertSameBits(directAtInference ? chain[i] : output[i], inference[i], $"{path}, {threads} threads: inference output {i}");
                    if (oneThread is not null) AssertSameBits(oneThread[i], output[i], $"{path}: output {i} on two threads against one");
                }
                Assert.All(output.Skip(chain.Length), v => Assert.Equal(-3f, v));
                Assert.All(inference.Skip(chain.Length), v => Assert.Equal(-3f, v));
                Assert.Equal(patchesByIm2Col, patches);
                oneThread = output;
            }
        }
    }

    public static TheoryData<int, int, int, bool, int, bool, bool> DeepRoutes() => new()
    {
        // height and width, channels, kernel (square), same, filters, direct at inference on AVX-512, on AVX2
        { 4, 128, 3, true, 64, false, false },     // rows narrower than a pass: every window would be gathered
        { 5, 128, 3, true, 64, false, false },
        { 8, 64, 3, true, 64, false, false },      // rows of 8: slower than patches as six and four that redoes two (not re-timed as two of four)
        { 10, 64, 3, true, 64, true, false },      // rows of 10, the narrowest the four-vector passes take
        { 13, 32, 3, false, 64, true, false },     // the CNN's second layer unpooled: rows of 11
        { 12, 32, 3, true, 64, true, true },       // rows of 12, the narrowest AVX2's three-pixel passes take
        { 16, 128, 3, true, 128, true, true },     // 1152 floats deep, the deepest the passes take
        { 16, 256, 3, true, 64, false, false },    // 2304 deep: past them
        { 8, 64, 1, false, 128, true, true },      // pointwise (the MobileNet block's second): one run across the rows, any width
        { 32, 32, 3, true, 32, true, true },       // the ResNet block's: rows of four eight-pixel passes, on AVX2 of eleven three-pixel ones
        { 16, 64, 3, true, 32, true, true },
        { 24, 32, 3, true, 32, true, true },
        { 26, 32, 3, true, 32, true, true },       // rows of 26: three eight-pixel passes and a four-pixel one, or eight of three and one of two
        { 18, 32, 3, true, 32, true, true },       // rows of 18: the narrowest AVX-512's eight-pixel passes take past whole passes
        { 14, 32, 3, true, 32, false, true },      // rows of 14: fewer than two eight-pixel passes
        { 8, 64, 3, true, 32, false, false },      // one pass a row
        { 16, 64, 1, false, 32, false, true },     // pointwise at 32 filters: not measured faster on AVX-512
        { 32, 32, 3, true, 96, false, true },      // 64 + 32 filters: neither AVX-512 rule, three fours of AVX2's vectors
        { 32, 32, 3, true, 48, false, true },      // 48 filters: no whole fours of vectors on AVX-512; on AVX2 three pairs, six-pixel passes
        { 14, 32, 3, true, 16, false, true },      // 16 filters on AVX2: a pair of vectors, rows of 14 (six, four, four)
        { 16, 8, 3, false, 16, false, true },      // the autoencoder's decode3 (rows of 14)
        { 10, 32, 3, true, 16, false, true },      // rows of 10: the narrowest AVX2's two-vector passes take (six and four)
        { 9, 32, 3, true, 16, false, false },      // rows of 9: narrower than AVX2's two-vector passes take
        { 11, 32, 3, true, 32, false, false },     // rows of 11 at 32 filters: narrower than AVX2's three-pixel passes take
        { 14, 32, 3, true, 24, false, false },     // 24 filters: no whole pairs of AVX2's vectors
    };

    /// <summary>
    /// Which deep windows inference convolves directly (Convolution.IsDeepDirect, each rule from a timing of the shape): on
    /// AVX-512 and AVX2 where the passes fill the rows, never on the portable path, never where patches are kept (training reads them).
    /// </summary>
    [Theory, MemberData(nameof(DeepRoutes))]
    public void Deep_windows_go_direct_where_the_passes_fill_the_rows(int size, int channels, int kernel, bool same, int filters, bool onAvx512, bool onAvx2)
    {
        var window = new Window(size, size, channels, kernel, kernel, 1, 1, same);
        Assert.True(window.PatchSize > 32, "a deep window");
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            Assert.Equal(path switch { SimdPath.Avx512 => onAvx512, SimdPath.Avx2 => onAvx2, _ => false }, Convolution.IsDirect(window, filters, keepPatches: false));
            Assert.False(Convolution.IsDirect(window, filters, keepPatches: true));
        }
    }

    /// <summary>
    /// The direct passes share a batch's output rows between the cores from the floats their windows read, as the route
    /// through patches would copy them, not only the image and output they touch: a small deep layer at batch 1 is cut in
    /// two halves, a small shallow one is not.
    /// </summary>
    [Theory]
    [InlineData(16, 8, false, 16, 1, 7)]     // the autoencoder's decode3 (14 rows): 5,184 floats touched, 19,296 read
    [InlineData(12, 32, true, 16, 1, 6)]     // 6,912 touched, 48K read
    [InlineData(5, 8, false, 16, 1, 3)]      // 344 touched, 992 read: one core
    [InlineData(16, 8, false, 16, 64, 150)]  // a batch: six parts of about 64K floats touched
    public void Direct_passes_share_their_rows_by_the_floats_their_windows_read(int size, int channels, bool same, int filters, int batch, int rowsPerRange)
    {
        var window = new Window(size, size, channels, 3, 3, 1, 1, same);
        Assert.Equal(rowsPerRange, Convolution.DirectRowsPerRange(window, filters, batch));
    }

    public static TheoryData<int, int, int, int, bool, int, int, int, string> PackedKernelWindows() => new()
    {
        // height, width, channels (3x3 kernels), stride, same, filters, batch, upsampled by (1: not), the SIMD paths it is packed on
        { 13, 13, 32, 1, false, 64, 3, 1, "Avx2 Portable" },       // the CNN's conv2 unpooled: direct on AVX-512 (rows of 11), through patches elsewhere
        { 14, 14, 16, 1, true, 8, 2, 1, "Avx512 Avx2 Portable" },  // the autoencoder's second layer: 144 deep, eight filters
        { 12, 11, 5, 1, true, 17, 4, 1, "Avx512 Avx2 Portable" },  // odd channels and filters
        { 5, 5, 256, 1, true, 64, 2, 1, "Avx512 Avx2 Portable" },  // 2304 deep: two depth blocks
        { 32, 32, 32, 1, true, 32, 1, 1, "Portable" },             // the ResNet block's: direct on AVX-512 and AVX2
        { 28, 28, 16, 1, true, 1, 2, 1, "" },                      // one filter: planar on every path
        { 12, 12, 8, 2, true, 8, 3, 2, "Avx512 Avx2 Portable" },   // an UpSampling2D's input, read upsampled into a scratch
        { 9, 9, 3, 1, false, 16, 2, 1, "" },                       // 27 deep: direct on every path
    };

    /// <summary>
    /// An inference copy's convolution kernel packed ahead (Convolution.PackKernel) is packed exactly where inference
    /// multiplies patches by it, and there it is what the products read: packed from other values it gives those values'
    /// bits, packed from the same values the bits of a call that packs it itself, on every SIMD path and thread count. A
    /// packed kernel of another shape is refused by name.
    /// </summary>
    [Theory, MemberData(nameof(PackedKernelWindows))]
    public void A_kernel_packed_ahead_is_read_where_inference_multiplies_patches(int height, int width, int channels, int stride, bool same,
        int filters, int batch, int upsampledBy, string packedOn)
    {
        var window = new Window(height, width, channels, 3, 3, stride, stride, same);
        var image = Uniform(batch * height / upsampledBy * width / upsampledBy * channels, 41);
        var weights = Uniform(window.PatchSize * filters, 42);
        var others = Uniform(window.PatchSize * filters, 43);
        var bias = Uniform(filters, 44);
        float[] Convolve(float[] kernelValues, PackedMatrix? packed, int threads)
        {
            var output = new float[batch * window.Positions * filters];
            KernelSettings.OnThreads(threads, () => Convolution.Forward(image, default, kernelValues, output, window, filters, batch, bias, relu: true, keepPatches: false,
                upsampledRows: upsampledBy, upsampledColumns: upsampledBy, packedKernel: packed));
            return output;
        }
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            var packed = Convolution.PackKernel(weights, window, filters);
            Assert.Equal(packedOn.Split(' ').Contains(path.ToString()), packed is not null);
            if (packed is null) continue;
            Assert.Equal((window.PatchSize, filters), (packed.Rows, packed.Columns));
            var otherPacked = Convolution.PackKernel(others, window, filters);
            foreach (int threads in new[] { 1, 2 })
            {
                var (expected, other) = (Convolve(weights, null, threads), Convolve(others, null, threads));
                Assert.NotEqual(expected, other);
                var (ahead, fromOthers) = (Convolve(weights, packed, threads), Convolve(weights, otherPacked, threads));
                for (int i = 0; i < expected.Length; i++)
                {
                    AssertSameBits(expected[i], ahead[i], $"{path}, {threads} threads: output {i}, the kernel packed ahead");
                    AssertSameBits(other[i], fromOthers[i], $"{path}, {threads} threads: output {i}, other values packed");
                }
            }
        }
        var wrong = Assert.Throws<ArgumentException>(() => Convolve(weights, Gemm.Pack(new float[window.PatchSize * (filters + 1)], window.PatchSize, filters + 1), 1));
        Assert.Equal("packedKernel", wrong.ParamName);
    }

    /// <summary>
    /// A convolution a max pooling reads in one call (Convolution.ForwardMaxPooled) gets a kernel packed ahead only where the
    /// two are not taken in registers together, and then reads it as Convolution.Forward does.
    /// </summary>
    [Theory]
    [InlineData(13, 32, 3, false, 64, 2, true)]   // the small CNN's conv2 + pool2: in registers on AVX-512, through patches and pooled after elsewhere
    [InlineData(8, 64, 3, true, 64, 2, true)]     // rows of 8: unpooled through patches everywhere, pooled in registers on AVX-512
    [InlineData(10, 16, 3, true, 8, 3, false)]    // a 3x3 pooling: never in registers
    public void A_pooled_convolution_reads_its_packed_kernel_where_it_multiplies_patches(int size, int channels, int kernel, bool same, int filters, int batch, bool twoByTwo)
    {
        var window = new Window(size, size, channels, kernel, kernel, 1, 1, same);
        var pool = twoByTwo
            ? new Window(window.OutputHeight, window.OutputWidth, filters, 2, 2, 2, 2, Same: false)
            : new Window(window.OutputHeight, window.OutputWidth, filters, 3, 3, 2, 2, Same: true);
        var image = Uniform(batch * size * size * channels, 45);
        var (weights, others, bias) = (Uniform(window.PatchSize * filters, 46), Uniform(window.PatchSize * filters, 47), Uniform(filters, 48));
        float[] Pooled(float[] kernelValues, PackedMatrix? packed)
        {
            var pooled = new float[batch * pool.Positions * filters];
            Convolution.ForwardMaxPooled(image, default, kernelValues, new float[batch * window.Positions * filters], pooled, default, window, pool, filters, batch,
                bias, relu: true, training: false, packedKernel: packed);
            return pooled;
        }
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            var packed = Convolution.PackKernel(others, window, filters, pool);
            Assert.Equal(!(twoByTwo && path == SimdPath.Avx512), packed is not null);
            if (packed is null) continue;
            var expected = Pooled(others, null);
            var actual = Pooled(weights, packed);
            for (int i = 0; i < expected.Length; i++) AssertSameBits(expected[i], actual[i], $"{path}: pooled {i}, other values packed");
        }
        var wrong = Gemm.Pack(new float[(window.PatchSize + 1) * filters], window.PatchSize + 1, filters);
        Assert.Equal("packedKernel", Assert.Throws<ArgumentException>(() => Pooled(weights, wrong)).ParamName);
    }

    public static TheoryData<int, int, int, int, bool, int, int, int, int, bool> PooledConvolutions() => new()
    {
        // height, width, channels, kernel (square), same, stride, dilation, filters, batch, pool (2: 2x2 with strides 2; 3: 3x3 with strides 2, 'same')
        { 28, 28, 1, 3, false, 1, 1, 32, 1, true },    // the small CNN's conv1 + pool1: two vectors of filters, on AVX-512 for two pooled pixels (a row's odd last one alone)
        { 13, 13, 32, 3, false, 1, 1, 64, 1, true },   // its conv2 + pool2: on AVX-512 two pooled pixels in two groups of two vectors, a row's odd last one four vectors; the 11th row and column dropped
        { 13, 13, 32, 3, false, 1, 1, 64, 3, true },   // the same at batch 3: parts that cross samples
        { 9, 8, 3, 3, true, 1, 1, 40, 3, true },       // 'same': windows read from a padded copy; filters past two vectors, masked (on AVX-512 two pooled pixels a pass)
        { 28, 28, 1, 3, true, 1, 1, 16, 2, true },     // the autoencoder's first layer: one vector of filters on AVX-512 for two pooled pixels, padded copies
        { 11, 10, 2, 3, true, 1, 1, 5, 3, true },      // five filters: one 256-bit vector on AVX-512, masked
        { 15, 13, 2, 3, true, 2, 1, 3, 2, true },      // three filters, strides 2: two pooled pixels a pass on every path, a row's odd last one alone
        { 14, 13, 3, 3, true, 1, 2, 6, 3, true },      // six filters, dilated: two pooled pixels a pass (one on the portable path), parts that cross samples
        { 12, 12, 2, 3, false, 1, 1, 64, 2, true },    // shallow against 64 filters, so trained in registers: on AVX-512 pairs of pixels in two groups of two vectors, winners included
        { 11, 12, 3, 3, true, 1, 1, 48, 2, true },     // 48 filters: on AVX-512 pairs of pixels over two vectors, then one
        { 130, 130, 1, 3, true, 1, 1, 8, 1, true },    // a padded copy past 16K floats: edge windows gathered
        { 15, 15, 2, 3, true, 2, 1, 17, 2, true },     // strides 2; on AVX-512 a masked pair of vectors for two pooled pixels
        { 14, 13, 3, 3, true, 1, 2, 24, 2, true },     // dilated; on AVX-512 two pooled pixels a pass
        { 10, 10, 32, 3, true, 1, 1, 128, 2, true },   // deep and 'same': two passes of 64 filters, edge windows gathered
        { 12, 12, 8, 3, false, 1, 1, 64, 2, true },    // 72 deep: direct on AVX-512 only, else through patches then pooled
        { 9, 9, 3, 3, false, 1, 1, 16, 2, false },     // a 3x3 pooling: the two kernels one after the other
    };

    /// <summary>
    /// A convolution and the 2x2 max pooling after it, at inference, give exactly what the two kernels give one after the other,
    /// NaN and signed zeros included, on every SIMD path and thread count, with and without bias and ReLU; where the pooling is
    /// taken in registers the convolution's output is left untouched. Training keeps the patches and the winners, the same
    /// bits and numbers as the two kernels give, in registers too where the windows are shallow.
    /// </summary>
    [Theory, MemberData(nameof(PooledConvolutions))]
    public void A_convolution_and_its_max_pooling_at_inference_are_the_two_kernels_bit_for_bit(int height, int width, int channels, int kernel, bool same, int stride,
        int dilation, int filters, int batch, bool twoByTwo)
    {
        var window = new Window(height, width, channels, kernel, kernel, stride, stride, same, dilation);
        var pool = twoByTwo
            ? new Window(window.OutputHeight, window.OutputWidth, filters, 2, 2, 2, 2, Same: false)
            : new Window(window.OutputHeight, window.OutputWidth, filters, 3, 3, 2, 2, Same: true);
        var image = Uniform(batch * height * width * channels, 11);
        image[5] = float.NaN;
        image[image.Length / 2] = -0f;
        var weights = Uniform(window.PatchSize * filters, 12);
        var bias = Uniform(filters, 13);
        int convolvedFloats = batch * window.Positions * filters, pooledFloats = batch * pool.Positions * filters;
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            bool inRegisters = twoByTwo && (window.PatchSize <= 32 || path == SimdPath.Avx512 && filters % 64 == 0 && window.PatchSize <= 1152);
            foreach (bool finished in new[] { true, false })
            {
                float[] withBias = finished ? bias : Array.Empty<float>();
                var convolved = new float[convolvedFloats];
                var expected = new float[pooledFloats];
                Convolution.Forward(image, new float[batch * window.Positions * window.PatchSize], weights, convolved, window, filters, batch, withBias, relu: finished, keepPatches: false);
                Pooling.MaxForward(convolved, expected, default, pool, batch, keepWinners: false);
                foreach (int threads in new[] { 1, 2 })
                {
                    var untouched = new float[convolvedFloats];
                    Array.Fill(untouched, -3f);
                    var pooled = new float[pooledFloats + 20];
                    Array.Fill(pooled, -3f);
                    KernelSettings.OnThreads(threads, () => Convolution.ForwardMaxPooled(image, new float[batch * window.Positions * window.PatchSize], weights, untouched, pooled, default,
                        window, pool, filters, batch, withBias, relu: finished, training: false));
                    string what = $"{path}, {threads} threads, {(finished ? "bias and ReLU" : "neither")}";
                    for (int i = 0; i < pooledFloats; i++) AssertSameBits(expected[i], pooled[i], $"{what}: pooled {i}");
                    Assert.All(pooled.Skip(pooledFloats), v => Assert.Equal(-3f, v));
                    if (inRegisters) Assert.All(untouched, v => Assert.Equal(-3f, v));
                    else Assert.Equal(convolved, untouched);
                }
            }
            // Training keeps the patches and the winners; where the direct kernel takes the windows even with patches kept
            // (shallow ones), it pools in registers too, winners included, and leaves the convolution's output untouched.
            bool trainsInRegisters = twoByTwo && window.PatchSize <= 32;
            var apartPatches = new float[batch * window.Positions * window.PatchSize];
            var apart = new float[convolvedFloats];
            var apartPooled = new float[pooledFloats];
            var apartWinners = new int[pooledFloats];
            Convolution.Forward(image, apartPatches, weights, apart, window, filters, batch, bias, relu: true, keepPatches: true);
            Pooling.MaxForward(apart, apartPooled, apartWinners, pool, batch, keepWinners: true);
            foreach (int threads in new[] { 1, 2 })
            {
                var patches = new float[apartPatches.Length];
                var kept = new float[convolvedFloats];
                Array.Fill(kept, -3f);
                var trained = new float[pooledFloats];
                var winners = new int[pooledFloats];
                KernelSettings.OnThreads(threads, () => Convolution.ForwardMaxPooled(image, patches, weights, kept, trained, winners, window, pool, filters, batch, bias, relu: true, training: true));
                Assert.Equal(apartPatches, patches);
                if (trainsInRegisters) Assert.All(kept, v => Assert.Equal(-3f, v));
                else Assert.Equal(apart, kept);
                for (int i = 0; i < pooledFloats; i++) AssertSameBits(apartPooled[i], trained[i], $"{path}, {threads} threads, training: pooled {i}");
                Assert.Equal(apartWinners, winners);
            }
        }
    }

    [Fact]
    public void A_pooling_that_does_not_read_the_convolution_output_is_refused_by_name()
    {
        var window = new Window(8, 8, 2, 3, 3, 1, 1, Same: false);
        var pool = new Window(8, 8, 4, 2, 2, 2, 2, Same: false);
        var error = Assert.Throws<ArgumentException>(() => Convolution.ForwardMaxPooled(new float[128], new float[36 * 18], new float[18 * 4], new float[144],
            new float[64], default, window, pool, 4, 1));
        Assert.Contains("pooling reads 8x8x4 pixels, the convolution writes 6x6x4", error.Message);
    }

    /// <summary>
    /// A BatchNormalization at inference applied by the convolution to its outputs as it computes them gives what the two
    /// kernels give one after the other, bit for bit, on every route (directly, with pixels in the lanes, through patches),
    /// every SIMD path and thread count, with and without ReLU, patches kept or not, and with the ReLU of a layer after the
    /// normalization or without, and with a residual added after it (and that ReLU after the Add: Merges.Combine) or without;
    /// nothing past the output is written.
    /// </summary>
    [Theory, MemberData(nameof(SmallWindows)), MemberData(nameof(LargeWindows))]
    public void A_batch_normalization_at_inference_applied_by_the_convolution_is_the_two_kernels_bit_for_bit(int height, int width, int channels,
        int kernelHeight, int kernelWidth, int stride, bool same, int dilation, int filters, int batch)
    {
        var window = new Window(height, width, channels, kernelHeight, kernelWidth, stride, stride, same, dilation);
        var image = Uniform(batch * height * width * channels, 11);
        var kernel = Uniform(window.PatchSize * filters, 12);
        var bias = Uniform(filters, 13);
        var gamma = Uniform(filters, 14);
        var beta = Uniform(filters, 15);
        var movingMean = Uniform(filters, 16);
        var movingVariance = Uniform(filters, 17).Select(v => v * v + 0.05f).ToArray();
        int outputFloats = batch * window.Positions * filters;
        var shortcut = Uniform(outputFloats, 18);
        var patches = new float[batch * window.Positions * window.PatchSize];
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (int threads in new[] { 1, 2 })
                foreach (bool relu in new[] { true, false })
                    foreach (bool keepPatches in new[] { false, true })
                        foreach (bool reluAfter in new[] { false, true })
                            foreach (bool added in new[] { false, true })
                            {
                                var convolved = new float[outputFloats];
                                var expected = new float[outputFloats];
                                var folded = new float[outputFloats + 20];
                                Array.Fill(folded, -3f);
                                KernelSettings.OnThreads(threads, () =>
                                {
                                    Convolution.Forward(image, patches, kernel, convolved, window, filters, batch, bias, relu, keepPatches);
                                    BatchNorm.InferenceForward(convolved, expected, gamma, beta, movingMean, movingVariance, batch * window.Positions, filters, 0.001f);
                                    if (added) Merges.Combine(MergeOperation.Add, shortcut, expected, expected, outputFloats, reluAfter);
                                    else if (reluAfter) Activations.Forward(Activation.Relu, expected, batch * window.Positions, filters);
                                    Convolution.Forward(image, patches, kernel, folded, window, filters, batch, bias, relu, keepPatches,
                                        new BatchNormAtInference(gamma, beta, movingMean, movingVariance, 0.001f, reluAfter, added ? shortcut : default));
                                });
                                for (int i = 0; i < outputFloats; i++)
                                    AssertSameBits(expected[i], folded[i], $"{path}, {threads} threads, relu {relu}, patches kept {keepPatches}, relu after {reluAfter}, added {added}: output {i}");
                                Assert.All(folded.Skip(outputFloats), v => Assert.Equal(-3f, v));
                                if (!reluAfter) Assert.Contains(expected.Take(outputFloats), v => v < 0);
                            }
        }
    }

    /// <summary>A residual shorter than the outputs, or one in their floats, is refused by name before anything is written.</summary>
    [Fact]
    public void A_residual_shorter_than_the_outputs_or_in_their_floats_is_refused()
    {
        var window = new Window(5, 5, 2, 3, 3, 1, 1, false, 1);
        int outputs = window.Positions * 8;
        var (gamma, beta, mean, variance) = (Uniform(8, 1), Uniform(8, 2), Uniform(8, 3), Uniform(8, 4).Select(v => v * v + 0.05f).ToArray());
        var output = new float[2 * outputs];
        var error = Assert.Throws<ArgumentException>(() => Convolution.Forward(Uniform(50, 5), Span<float>.Empty, Uniform(18 * 8, 6), output, window, 8, 1,
            keepPatches: false, normalization: new BatchNormAtInference(gamma, beta, mean, variance, 0.001f, residual: new float[outputs - 1])));
        Assert.Contains($"Convolution: the residual added to its {outputs} normalized outputs holds {outputs - 1} floats", error.Message);
        Assert.All(output, v => Assert.Equal(0f, v));
        error = Assert.Throws<ArgumentException>(() => Convolution.Forward(Uniform(50, 5), Span<float>.Empty, Uniform(18 * 8, 6), output, window, 8, 1,
            keepPatches: false, normalization: new BatchNormAtInference(gamma, beta, mean, variance, 0.001f, residual: output.AsSpan(outputs - 1))));
        Assert.Contains("shares floats with them", error.Message);
        Assert.All(output, v => Assert.Equal(0f, v));
        // Beside them, not in them: the one float past the outputs is no overlap.
        Convolution.Forward(Uniform(50, 5), Span<float>.Empty, Uniform(18 * 8, 6), output, window, 8, 1,
            keepPatches: false, normalization: new BatchNormAtInference(gamma, beta, mean, variance, 0.001f, residual: output.AsSpan(outputs)));
        Assert.Contains(output.Take(outputs), v => v != 0f);
    }

    [Fact]
    public void A_batch_normalization_shorter_than_the_filters_is_refused()
    {
        var window = new Window(5, 5, 2, 3, 3, 1, 1, false, 1);
        var output = new float[window.Positions * 8];
        var error = Assert.Throws<ArgumentException>(() => Convolution.Forward(new float[50], Span<float>.Empty, new float[18 * 8], output, window, 8, 1,
            keepPatches: false, normalization: new BatchNormAtInference(new float[8], new float[8], new float[7], new float[8], 0.001f)));
        Assert.Contains("8 filters", error.Message);
        Assert.All(output, v => Assert.Equal(0f, v));
    }

    private static void AssertSameBits(float expected, float actual, string what) =>
        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual), $"{what}: expected {expected}, got {actual}");

    private static double Dot(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += (double)a[i] * b[i];
        return sum;
    }
}
