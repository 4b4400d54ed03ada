using System.Reflection;
using System.Runtime.CompilerServices;
using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>How the runtime's kernels and drivers are compiled (<see cref="Compiled.Kernel"/>, <see cref="Compiled.Driver"/>).</summary>
public class CompiledTests
{
    [Fact]
    public void Kernels_are_compiled_as_their_own_roots_and_only_drivers_are_left_inlinable()
    {
        // AggressiveOptimization alone lets a tiered caller inline the kernel, where its vector helpers stop fitting the
        // caller's inlining budget and run as calls (tier-0 calls at first).
        var kernels = typeof(Gemm).Assembly.GetTypes()
            .SelectMany(type => type.GetMethods(BindingFlags.Static | BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly)
                .Cast<MethodBase>().Concat(type.GetConstructors(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)))
            .Where(method => method.MethodImplementationFlags.HasFlag(MethodImplAttributes.AggressiveOptimization))
            .ToList();
        Assert.Contains(kernels, method => method.Name == "SoftmaxRows");
        // Loops that a training run takes every step or epoch outside the numerical kernels: left to tiering, they ran
        // unoptimised through the first fits of a run (the digits fit's second to fourth 140/113/117 ms, against 108/107/98).
        foreach (string loop in new[] { "ElementwiseBackward", "Gather", "CheckLabels", "Shuffle" })
            Assert.Contains(kernels, method => method.Name == loop);
        Assert.True(kernels.Count >= 50, $"{kernels.Count} kernels found");
        // The drivers (Compiled.Driver) are the only ones left inlinable: code around the kernels, on every step's path.
        var inlinable = kernels.Where(method => !method.MethodImplementationFlags.HasFlag(MethodImplAttributes.NoInlining))
            .Select(method => $"{method.DeclaringType!.Name}.{method.Name}").ToHashSet();
        var unlisted = inlinable.Except(Drivers).Order();
        var unmarked = Drivers.Except(inlinable).Order();
        Assert.True(!unlisted.Any() && !unmarked.Any(),
            $"Drivers not listed here: {string.Join(", ", unlisted)}. Listed but not drivers: {string.Join(", ", unmarked)}.");
    }

    /// <summary>
    /// What a dense model's training step and prediction run around the kernels, and Fit around the steps: left to tiering,
    /// they ran as tier-0 code through the first fits of a run (the digits fit's second to fifth 87-89 ms, against 84-85).
    /// </summary>
    private static readonly string[] Drivers =
    {
        "Gemm.Dispatch", "Gemm.PathOf", "Gemm.Run", "Gemm.RunRows", "Gemm.SharesFewRows", "Gemm.SharesBothLayers", "Gemm.HowBIsRead", "Gemm.ReadsAInPlace",
        "Helper.For", "Helper.RunItems", "Claims.TryClaim", "Reductions.SumRows", "Activations.Softmax", "Activations.SoftmaxInBlocks",
        "Guard.Batch", "Guard.Length", "Guard.FiniteLoss", "Optimizer.Step", "Optimizer.Begin", "Optimizer.Allocate", "Adam.Update", "Adam.UpdateRange", "Adam.UpdatePart", "Sgd.Update",
        "ModelExtensions.Fit", "ModelExtensions.Gather", "Scores.Add", "SeededRandom.NextUInt",
        // The other layers' passes, their range callbacks, step loops and the helper's hand-off, every one that a run of each
        // compare workload (DOTNET_JitDisasmSummary) compiled at tier 0 and then again as hot (Compiled.Driver has what
        // that cost).
        "Attention.BackwardPair", "Attention.Forward", "Attention.ForwardPair", "BatchParts.Train", "BatchParts.RunPart", "RowParts.Run", "RowParts.Share", "RowParts.RunPart", "BatchParts.Update", "BatchParts.UpdateHalf", "BatchNorm.Affine", "BatchNorm.ColumnSums", "BatchNorm.Normalize", "BatchNorm.OverRows",
        "BatchNorm.UpdateMovingStatistics", "CombineRanges.Run", "CombineRanges.Merge", "Convolution.CellsReading", "Convolution.CopyRuns", "Convolution.Forward",
        "Convolution.ForwardMaxPooled", "Convolution.ForwardThroughPatches", "Convolution.Im2Col", "Convolution.KernelGradient", "Convolution.KernelGradientAtWinners",
        "Convolution.LayOut", "Convolution.PadImage", "Convolution.PatchOffsets", "Convolution.PoolsWholeWindows", "Convolution.SumAtWinners",
        "Convolution.SumNarrowAtWinners", "Convolution.FilterSlice", "Convolution.SumBand", "Convolution.KernelGradientByFilters", "Convolution.TransposeChunk", "Convolution.Transposed", "Convolution.TransposedDirect", "Convolution.TransposedInPlace", "Convolution.TransposedUpsampled",
        "DepthwiseConvolution.CoveredColumns", "DepthwiseConvolution.Covering",
        "DirectAddedRanges.Run", "DirectRanges.Run", "DropoutKernel.Forward", "EmbeddingKernel.FirstBadId", "ForwardRows.Run", "Gemm.ApartInL1", "Gemm.Fill", "Gemm.MultiplyProducedRows",
        "Gemm.MultiplyTwice", "Gemm.TwiceInRowParts", "Gemm.TwiceRowPart", "Gemm.RunRowsOnPath", "Gemm.MultiplyViews", "Gemm.PackedShared", "Gemm.PackPanels", "Gemm.PackPart", "Gemm.RunColumnSlice",
        "Gemm.RunDepthPart", "Gemm.RunInDepthParts", "Gemm.RunInParts", "Gemm.RunInRowBlocks", "Gemm.RunRowBlocks", "Gemm.StreamInParts",
        "Gemm.StreamSlice", "Gemm.StreamTwice", "Gemm.StreamTwiceSlice", "Gradients.Run", "Helper.Await", "Helper.Collect", "Helper.Loop",
        "Helper.Post", "LayerNorm.Backward", "LayerNorm.Forward", "MaxRanges.Run", "Merges.Combine", "Merges.OperandGradient", "Merges.Pass", "PatchProduct.Run",
        "PatchRows.Fill", "Plane.For", "Plane.Padded", "PooledRanges.Run", "Pooling.AverageForward", "Pooling.MaxBackward", "Pooling.MaxBackwardSamples", "Pooling.MaxForward",
        "Projection.Run", "Projection.RunHalf", "Projections.Run", "Recurrent.BackwardDirection", "Recurrent.BackwardSteps",
        "Recurrent.ForwardDirection", "Recurrent.ForwardSteps", "Simd.RunRanges",
        "Recurrent.GruStep", "Recurrent.LstmStep", "Recurrent.LstmStepBackward", "Recurrent.ToTimeMajor", "RepackedPanels.Pack",
        "UpSampling.Backward", "UpSampling.Forward", "VectorMath.Apply", "Window.InsideCells",
    };
}
