namespace ModelGen.Kernels;

/// <summary>
/// The kernels' rules that the generated code is planned by, compiled into the generator as well (it cannot reference the
/// runtime): which blocks the generator emits as a row run and which convolutions it lets keep no patches must be the cuts
/// and routes the kernels then take, so the rules live here once.
/// </summary>
internal static class SharedRules
{
    /// <summary>
    /// Floats of kernels from which blocks are not cut by rows: each core would read all of them, which then no longer stay in
    /// its L2 (1 MB on a Zen 4) beside its rows (RowParts.KernelFloatsInL2).
    /// </summary>
    public const long RowKernelFloatsInL2 = 65_536;

    /// <summary>
    /// Multiply-adds from which a run of row-by-row blocks pays two parts when it predicts (RowParts.InferenceWork): one
    /// hand-off for all its blocks, its kernels already in each core's cache.
    /// </summary>
    public const long RowInferenceWork = 32_768;

    /// <summary>
    /// The most filters convolved with pixels in the lanes (each filter reads the planes again), and the most value channels
    /// transposed in place (each patch-gradient cell a chain that long): Convolution.FewFilters.cs.
    /// </summary>
    public const int FewFilters = 4;

    /// <summary>Patches of at most this many floats are convolved directly (3x3 over 3 channels: 27).</summary>
    public const int DirectPatch = 32;

    /// <summary>
    /// Whether a convolution's forward pass puts pixels in the lanes (Convolution.FewFilters.cs): few filters, a row's windows
    /// one pixel apart (stride 1 across), patches too deep for the direct kernel's small-window route. Its planes are laid
    /// out row by row from the image, which may then be read as an UpSampling2D's input (each row and column repeated).
    /// </summary>
    public static bool ConvolvesPlanar(int filters, int strideWidth, int patchSize) =>
        filters <= FewFilters && strideWidth == 1 && patchSize > DirectPatch;

    /// <summary>Channels from which a convolution's kernel gradient is taken from its input: half an AVX-512 vector.</summary>
    public const int MinimumLaneChannels = 8;

    /// <summary>
    /// Whether a convolution's kernel gradient is taken from its input, so its training forward pass keeps no patches: more
    /// than a few filters (in the lanes) while the kernel is at most <see cref="LaneFilterKernelFloats"/>, or a few over
    /// channels filling at least half an AVX-512 vector (channels in the lanes: fewer would leave most lanes idle; and patches
    /// of eight floats or more, deep enough for the GEMM's order that is kept); a window that is not pointwise (whose
    /// patches are the input itself).
    /// </summary>
    public static bool TakesKernelGradientFromInput(int filters, int channels, int patchSize, bool pointwise) =>
        (filters > FewFilters ? (long)patchSize * filters <= LaneFilterKernelFloats : channels >= MinimumLaneChannels) && !pointwise;

    /// <summary>
    /// The largest kernel (patch floats x filters) whose gradient is taken from the input with filters in the lanes. Larger
    /// ones make a product the GEMM runs near its peak through the patches (2 cores, 3x3 'same', kernel gradient and training
    /// forward pass, input against patches): 1152 x 128 at 16x16, batch 16, 6.0 + 6.1 against 6.6 + 6.8 ms; 1152 x 256 at
    /// 14x14, 12.5 + 11.4 against 9.8 + 11.0; 2304 x 256, 25.2 + 27.0 against 19.4 + 28.0. The ResNet block's 288 x 32 at
    /// batch 32: 2.9 + 2.8 against 5.1 + 4.5.
    /// </summary>
    public const int LaneFilterKernelFloats = 192 * 1024;
}
