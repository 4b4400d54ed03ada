using System;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ModelGen.Kernels;

/// <summary>The recurrent cells, in Keras' formulation (LSTM gates i, f, c, o; GRU gates z, r, h with reset_after).</summary>
public enum RecurrentCell { Lstm, Gru }

/// <summary>
/// What one recurrent layer (one direction) keeps between its forward and backward pass, sized once for the model's
/// largest batch. Everything is time-major in processing order (a backward-running layer processes the last step first),
/// so each step's rows are contiguous for the recurrent product.
/// </summary>
public sealed class RecurrentWorkspace : IWorkspace
{
    /// <param name="recurrentKernelPackedAhead">
    /// Whether every forward pass is handed the recurrent kernel packed ahead (an inference copy's, Recurrent.Forward's
    /// packedRecurrentKernel): then the workspace has no room to pack it into for a pass (a training one still has room
    /// for Uᵀ, backward).
    /// </param>
    public RecurrentWorkspace(RecurrentCell cell, int maxBatchSize, int steps, int features, int units, bool forTraining, bool recurrentKernelPackedAhead = false)
    {
        Cell = cell;
        ForTraining = forTraining;
        Steps = steps;
        Features = features;
        Units = units;
        int rows = maxBatchSize * steps;
        var arrays = new CountedArrays(forTraining);
        bool lstm = cell == RecurrentCell.Lstm;
        Inputs = arrays.Floats(rows * features);
        Projected = arrays.Floats(rows * GateWidth);
        Gates = arrays.TrainingFloats(lstm ? 0 : rows * 4 * units); // an LSTM keeps its gates in Projected
        // Backward reads every step's states; a forward pass alone needs the last and the next.
        StateSlots = forTraining ? steps + 1 : 2;
        States = arrays.Floats(StateSlots * maxBatchSize * units);
        Cells = arrays.Floats(lstm ? StateSlots * maxBatchSize * units : 0);
        Mask = arrays.Floats(rows);
        Scratch = arrays.Floats(maxBatchSize * (lstm ? units : GateWidth)); // an LSTM's tanh of its cells, a GRU's recurrent product
        InputGradients = arrays.TrainingFloats(rows * GateWidth);
        RecurrentGradients = arrays.TrainingFloats(lstm ? 0 : rows * GateWidth);
        StateGradient = arrays.TrainingFloats(maxBatchSize * units);
        CellGradient = arrays.TrainingFloats(maxBatchSize * units);
        TimeMajorGradient = arrays.TrainingFloats(rows * features);
        TransposedRecurrentKernel = arrays.TrainingFloats(units * GateWidth);
        // Only where some batch's step products read panels (ReadsPanels: many rows, or a few streamed) that a pass packs, U
        // forward unless it comes packed, Uᵀ backward, is there room for them.
        bool packsU = !recurrentKernelPackedAhead && Gemm.ReadsPanelsUpTo(maxBatchSize, units, GateWidth);
        bool packsTransposed = forTraining && Gemm.ReadsPanelsUpTo(maxBatchSize, GateWidth, units);
        int panelFloats = Math.Max(packsU ? Gemm.PanelFloatsOnAnyPath(units, GateWidth) : 0, packsTransposed ? Gemm.PanelFloatsOnAnyPath(GateWidth, units) : 0);
        RecurrentPanels = packsU || packsTransposed ? new RepackedPanels(arrays.Floats(panelFloats)) : null;
        Bytes = arrays.Bytes;
    }

    public long Bytes { get; }

    public RecurrentCell Cell { get; }
    public int Steps { get; }
    public int Features { get; }
    public int Units { get; }
    /// <summary>Whether the workspace has the backward pass's gradients (an inference copy's has none).</summary>
    public bool ForTraining { get; }
    /// <summary>Columns of the kernels: 4 units for an LSTM (i, f, c, o), 3 for a GRU (z, r, h).</summary>
    public int GateWidth => (Cell == RecurrentCell.Lstm ? 4 : 3) * Units;

    internal AlignedBuffer Inputs { get; }
    /// <summary>x·kernel + bias for every step (an LSTM activates its gates in place here).</summary>
    internal AlignedBuffer Projected { get; }
    /// <summary>GRU: z, r, the candidate h̃ and the recurrent h-part (h·U_h + b_h) per step, for the backward pass (none for inference).</summary>
    internal AlignedBuffer Gates { get; }
    /// <summary>
    /// Batches of states States (and an LSTM's Cells) hold: every step's (steps + 1) for training; for inference two, the
    /// state before step p in slot p % 2.
    /// </summary>
    internal int StateSlots { get; }

    /// <summary>Where the batch's state before step <paramref name="p"/> (processing order) starts, in rows of units.</summary>
    internal int StateRow(int p, int batch) => p % StateSlots * batch;

    /// <summary>h before each step and after the last (slot <see cref="StateRow"/>): the first is the initial state.</summary>
    internal AlignedBuffer States { get; }
    internal AlignedBuffer Cells { get; }
    internal AlignedBuffer Mask { get; }
    /// <summary>Gradients of the pre-activations fed by x (for the kernel, the bias and the input).</summary>
    internal AlignedBuffer InputGradients { get; }
    /// <summary>GRU: gradients of the recurrent pre-activations (they differ from the input ones in the h-part).</summary>
    internal AlignedBuffer RecurrentGradients { get; }
    internal AlignedBuffer StateGradient { get; }
    internal AlignedBuffer CellGradient { get; }
    internal AlignedBuffer Scratch { get; }
    internal AlignedBuffer TimeMajorGradient { get; }
    /// <summary>
    /// Uᵀ, written once per backward pass: every step's dz·Uᵀ then reads a row-major B, which the GEMM packs with vector
    /// copies, instead of gathering Uᵀ's columns from U at each of the steps.
    /// </summary>
    internal AlignedBuffer TransposedRecurrentKernel { get; }
    /// <summary>
    /// The recurrent product's B packed once per pass (U forward, Uᵀ backward) where the steps' products have rows enough to
    /// read panels (Gemm.ReadsPanels), which each of them otherwise packed again, at every step: on the Zen 4, in one process
    /// with panels and without, the 64-unit LSTM over 28 steps at batch 32 0.985, LSTM(256) over 100 steps at batch 32 0.77
    /// with its samples in halves (0.94 with the products shared by columns). One to three samples read them where streaming
    /// the kernel in place would take more than one pass, streaming their tiles (on the Zen 5, predicting one sample in fresh
    /// processes in turns: the 64-unit LSTM 20.9 -> 17.1 us, the GRU 12.5 -> 11.1, the BiLSTM 21.1 -> 17.1). None for a
    /// workspace whose batches never read them: handed panels, products of 4 to 12 rows lost (the 64-unit LSTM at batch 4
    /// 1.12x the time). Unused where the pass is handed U packed ahead (an inference copy's, Recurrent.Forward).
    /// </summary>
    internal RepackedPanels? RecurrentPanels { get; }

    /// <summary>
    /// <paramref name="b"/> (the recurrent product's B, k x n) packed for a pass over <paramref name="batch"/> samples, if the
    /// steps' products of the larger part of the batch read panels; null otherwise.
    /// </summary>
    internal PackedMatrix? PanelsForPass(ReadOnlySpan<float> b, int k, int n, int batch) =>
        RecurrentPanels is not null && Gemm.ReadsPanels(Recurrent.StepRows(this, batch), k, n) ? RecurrentPanels.Pack(b, k, n) : null;
}

/// <summary>
/// LSTM and GRU over (batch, steps, features) sequences as Keras runs them: zero initial state, Keras' gate order and
/// activations (tanh, recurrent sigmoid), and masks: at a masked step the state carries over unchanged, and so does the
/// output of a layer that returns sequences (or it is zero, with zeroOutputForMask, as Keras' Bidirectional sets it). Backward is backpropagation through time; the weight gradients are one product
/// each over all steps.
/// </summary>
public static class Recurrent
{
    /// <summary>
    /// Runs the layer over the batch. The output is written at <paramref name="outputOffset"/> within rows of
    /// <paramref name="outputWidth"/> (a bidirectional layer's two directions share one output): one row per sample, or with
    /// <paramref name="returnSequences"/> one per step. An empty <paramref name="mask"/> means every step counts. The state starts
    /// at zero or at <paramref name="initialState"/> (and <paramref name="initialCell"/>, an LSTM's c), Keras' initial_state; the final
    /// state is also written to <paramref name="finalState"/> and <paramref name="finalCell"/> when given, Keras' return_state.
    /// An inference copy (ForInference), whose weights never change, hands both kernels packed once
    /// (<paramref name="packedKernel"/>, <paramref name="packedRecurrentKernel"/>: Gemm.Pack of the same values), which each
    /// call otherwise packs again where its products read panels; the bits are the same either way.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Forward(RecurrentWorkspace work, ReadOnlySpan<float> input, ReadOnlySpan<float> mask,
        ReadOnlySpan<float> kernel, ReadOnlySpan<float> recurrentKernel, ReadOnlySpan<float> bias,
        Span<float> output, int outputWidth, int outputOffset, int batch, bool returnSequences, bool reverse, bool zeroOutputForMask = false,
        ReadOnlySpan<float> initialState = default, ReadOnlySpan<float> initialCell = default, Span<float> finalState = default, Span<float> finalCell = default,
        PackedMatrix? packedKernel = null, PackedMatrix? packedRecurrentKernel = null)
    {
        int steps = work.Steps, features = work.Features, units = work.Units, gates = work.GateWidth;
        Gemm.CheckPacked(packedKernel, features, gates, nameof(packedKernel));
        Gemm.CheckPacked(packedRecurrentKernel, units, gates, nameof(packedRecurrentKernel));
        ToTimeMajor(input, work.Inputs, batch, steps, features, reverse);
        for (int p = 0; p < steps; p++)
        {
            int t = reverse ? steps - 1 - p : p;
            for (int b = 0; b < batch; b++) work.Mask[p * batch + b] = mask.IsEmpty ? 1f : mask[b * steps + t];
        }
        // x·W + b for every step at once; a GRU's bias holds the input bias, then the recurrent one.
        Gemm.Multiply(work.Inputs, kernel, work.Projected, steps * batch, features, gates, bias.Slice(0, gates), packedB: packedKernel);

        var states = work.States.Span;
        Start(states.Slice(0, batch * units), initialState);
        if (work.Cell == RecurrentCell.Lstm) Start(work.Cells.AsSpan(0, batch * units), initialCell);
        var recurrence = new Recurrence(work, recurrentKernel, batch, reverse, zeroOutputForMask)
        {
            Panels = packedRecurrentKernel ?? work.PanelsForPass(recurrentKernel, units, gates, batch),
            RecurrentBias = work.Cell == RecurrentCell.Gru ? bias.Slice(gates, gates) : default,
            Sequence = returnSequences ? output : default, OutputWidth = outputWidth, OutputOffset = outputOffset,
        };
        OverSamples(ref recurrence, &ForwardSteps);
        int end = work.StateRow(steps, batch) * units;
        var last = states.Slice(end, batch * units);
        if (!returnSequences)
        {
            for (int b = 0; b < batch; b++) last.Slice(b * units, units).CopyTo(output.Slice(b * outputWidth + outputOffset, units));
        }
        if (!finalState.IsEmpty) last.CopyTo(finalState);
        if (!finalCell.IsEmpty) work.Cells.AsSpan(end, batch * units).CopyTo(finalCell);
    }

    /// <summary>
    /// Both directions of a Bidirectional layer, the forward one written at offset 0 of each output row, the backward one at
    /// <c>units</c>. Each direction is computed exactly as <see cref="Forward"/> computes it alone, on a core of its own
    /// (<see cref="OverDirections"/>, which has the figures from batch 8). In one process, against the two run one after the
    /// other: 0.50-0.58 of the time at batch 1, from LSTM(8) over 8 steps (3.7 -> 2.1 us) to LSTM(128) over 100 (1.34 -> 0.72
    /// ms), 0.52 for LSTM(64) over 28 steps at batch 4 and 0.51 for a GRU. An inference copy hands each direction's kernels
    /// packed once, as to <see cref="Forward"/>.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void ForwardBidirectional(RecurrentWorkspace forwardWork, RecurrentWorkspace backwardWork, ReadOnlySpan<float> input, ReadOnlySpan<float> mask,
        ReadOnlySpan<float> forwardKernel, ReadOnlySpan<float> forwardRecurrentKernel, ReadOnlySpan<float> forwardBias,
        ReadOnlySpan<float> backwardKernel, ReadOnlySpan<float> backwardRecurrentKernel, ReadOnlySpan<float> backwardBias,
        Span<float> output, int outputWidth, int batch, bool returnSequences, bool zeroOutputForMask = false,
        PackedMatrix? packedForwardKernel = null, PackedMatrix? packedForwardRecurrentKernel = null,
        PackedMatrix? packedBackwardKernel = null, PackedMatrix? packedBackwardRecurrentKernel = null)
    {
        var pass = new Bidirectional
        {
            Forward = new Direction(forwardWork, forwardKernel, forwardRecurrentKernel, forwardBias, default, default, default, reverse: false,
                packedForwardKernel, packedForwardRecurrentKernel),
            Backward = new Direction(backwardWork, backwardKernel, backwardRecurrentKernel, backwardBias, default, default, default, reverse: true,
                packedBackwardKernel, packedBackwardRecurrentKernel),
            Input = input, Mask = mask, Output = output, OutputWidth = outputWidth, Batch = batch, ReturnSequences = returnSequences,
            ZeroOutputForMask = zeroOutputForMask,
        };
        OverDirections(ref pass, &ForwardDirection);
    }

    /// <summary>
    /// Backward through both directions of a Bidirectional layer (the forward one read at offset 0 of each output row, the
    /// backward one at <c>units</c>), each on a core of its own as in <see cref="ForwardBidirectional"/>. Each direction's
    /// input gradient is then added into <paramref name="inputGradient"/>, the forward one's first, as two calls of
    /// <see cref="Backward"/> add them, so the bits are those of the two calls. Forward and backward in one process, against
    /// the four calls one after the other: LSTM(64) over 28 steps at batch 1 0.551-0.555 of the time (median ratios of two
    /// runs), at batch 4 0.543-0.562, GRU(64) 0.526, LSTM(16) over 12 steps 0.530.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void BackwardBidirectional(RecurrentWorkspace forwardWork, RecurrentWorkspace backwardWork, ReadOnlySpan<float> outputGradient, int outputWidth,
        ReadOnlySpan<float> forwardKernel, ReadOnlySpan<float> forwardRecurrentKernel,
        Span<float> forwardKernelGradient, Span<float> forwardRecurrentKernelGradient, Span<float> forwardBiasGradient,
        ReadOnlySpan<float> backwardKernel, ReadOnlySpan<float> backwardRecurrentKernel,
        Span<float> backwardKernelGradient, Span<float> backwardRecurrentKernelGradient, Span<float> backwardBiasGradient,
        Span<float> inputGradient, int batch, bool returnSequences, bool computeWeights, bool accumulateWeights, bool accumulateInput, bool zeroOutputForMask = false)
    {
        var pass = new Bidirectional
        {
            Forward = new Direction(forwardWork, forwardKernel, forwardRecurrentKernel, default, forwardKernelGradient, forwardRecurrentKernelGradient, forwardBiasGradient,
                reverse: false),
            Backward = new Direction(backwardWork, backwardKernel, backwardRecurrentKernel, default, backwardKernelGradient, backwardRecurrentKernelGradient,
                backwardBiasGradient, reverse: true),
            OutputGradient = outputGradient, OutputWidth = outputWidth, Batch = batch, ReturnSequences = returnSequences, ZeroOutputForMask = zeroOutputForMask,
            InputGradientWanted = !inputGradient.IsEmpty, ComputeWeights = computeWeights, AccumulateWeights = accumulateWeights,
        };
        OverDirections(ref pass, &BackwardDirection);
        if (inputGradient.IsEmpty) return;
        ToBatchMajor(forwardWork.TimeMajorGradient, inputGradient, batch, forwardWork.Steps, forwardWork.Features, reverse: false, accumulateInput);
        ToBatchMajor(backwardWork.TimeMajorGradient, inputGradient, batch, backwardWork.Steps, backwardWork.Features, reverse: true, accumulate: true);
    }

    /// <summary>
    /// One direction of a Bidirectional layer: its workspace, its weights (and their gradients, backward; an inference copy's
    /// packed kernels, forward), its units' place in each output row.
    /// </summary>
    private readonly ref struct Direction(RecurrentWorkspace work, ReadOnlySpan<float> kernel, ReadOnlySpan<float> recurrentKernel, ReadOnlySpan<float> bias,
        Span<float> kernelGradient, Span<float> recurrentKernelGradient, Span<float> biasGradient, bool reverse,
        PackedMatrix? packedKernel = null, PackedMatrix? packedRecurrentKernel = null)
    {
        public readonly RecurrentWorkspace Work = work;
        public readonly ReadOnlySpan<float> Kernel = kernel, RecurrentKernel = recurrentKernel, Bias = bias;
        public readonly PackedMatrix? PackedKernel = packedKernel, PackedRecurrentKernel = packedRecurrentKernel;
        public readonly Span<float> KernelGradient = kernelGradient, RecurrentKernelGradient = recurrentKernelGradient, BiasGradient = biasGradient;
        public readonly bool Reverse = reverse;
        /// <summary>The backward direction's units follow the forward one's.</summary>
        public int Offset => Reverse ? Work.Units : 0;
    }

    /// <summary>A pass over both directions, read through a pointer by whichever core runs a direction.</summary>
    private ref struct Bidirectional
    {
        public Direction Forward, Backward;
        public ReadOnlySpan<float> Input, Mask, OutputGradient;
        public Span<float> Output;
        public int OutputWidth, Batch;
        public bool ReturnSequences, ZeroOutputForMask, InputGradientWanted, ComputeWeights, AccumulateWeights;

        public readonly Direction this[int index] => index == 0 ? Forward : Backward;
    }

    /// <summary>
    /// Runs <paramref name="direction"/> for directions 0 and 1 on the two cores, each direction with all of its samples: a
    /// batch large enough to split (<see cref="SharesSamples"/>) is not split, as the helper is busy with the other direction.
    /// Each core then reads one direction's weights only, where split samples had both cores read both directions' weights
    /// in turn with half-height tiles. Forward and backward in one process, against the directions in turn each splitting its
    /// samples (medians of 9 rounds on the 2-vCPU Zen 3): LSTM(64) over 28 steps 0.88-0.90 at batch 8, 0.92-0.93 at 32, 0.97
    /// at 64, 1.01 at 128; LSTM(32) at batch 8 0.59-0.62; GRU(64) 0.78-0.80 at batch 8, 0.87 at 32; LSTM(128) 0.94 at batch 8,
    /// 1.01 at 128, and over 100 steps at batch 32 1.01. The largest batches are even; nothing measured lost by more than noise.
    /// </summary>
    private static unsafe void OverDirections(ref Bidirectional pass, delegate*<void*, int, int, void> direction) =>
        // The helper reads the pass through a pointer to this frame, which stays put until Helper.For has returned.
        Helper.For(2, direction, Unsafe.AsPointer(ref pass));

    [MethodImpl(Compiled.Driver)]
    private static unsafe void ForwardDirection(void* state, int index, int worker)
    {
        ref var pass = ref Unsafe.AsRef<Bidirectional>(state);
        var d = pass[index];
        Forward(d.Work, pass.Input, pass.Mask, d.Kernel, d.RecurrentKernel, d.Bias, pass.Output, pass.OutputWidth, d.Offset, pass.Batch, pass.ReturnSequences,
            d.Reverse, pass.ZeroOutputForMask, packedKernel: d.PackedKernel, packedRecurrentKernel: d.PackedRecurrentKernel);
    }

    [MethodImpl(Compiled.Driver)]
    private static unsafe void BackwardDirection(void* state, int index, int worker)
    {
        ref var pass = ref Unsafe.AsRef<Bidirectional>(state);
        var d = pass[index];
        BackwardToTimeMajor(d.Work, pass.OutputGradient, pass.OutputWidth, d.Offset, d.Kernel, d.RecurrentKernel, d.KernelGradient, d.RecurrentKernelGradient,
            d.BiasGradient, pass.InputGradientWanted, pass.Batch, pass.ReturnSequences, d.Reverse, pass.ComputeWeights, pass.AccumulateWeights, pass.ZeroOutputForMask);
    }

    private static void Start(Span<float> state, ReadOnlySpan<float> initial)
    {
        if (initial.IsEmpty) state.Clear();
        else initial.Slice(0, state.Length).CopyTo(state);
    }

    /// <summary>The forward steps of samples [first, first + count), in processing order.</summary>
    [MethodImpl(Compiled.Driver)]
    private static void ForwardSteps(ref Recurrence pass, int first, int count)
    {
        var recurrence = pass; // read from this core's own stack, not the other core's frame at every step
        var work = recurrence.Work;
        int steps = work.Steps, units = work.Units, batch = recurrence.Batch;
        // A GRU's recurrent product goes to these samples' rows of the scratch (an LSTM's goes onto its projected gates).
        var recurrentProduct = work.Cell == RecurrentCell.Gru ? work.Scratch.AsSpan(first * work.GateWidth, count * work.GateWidth) : default;
        var panels = recurrence.PanelsFor(count); // every step's product has these samples' rows
        for (int p = 0; p < steps; p++)
        {
            int row = p * batch + first, before = (work.StateRow(p, batch) + first) * units, after = (work.StateRow(p + 1, batch) + first) * units;
            var previous = work.States.AsSpan(before, count * units);
            var next = work.States.AsSpan(after, count * units);
            if (work.Cell == RecurrentCell.Lstm)
                LstmStep(work, row, previous, next, work.Cells.AsSpan(before, count * units), work.Cells.AsSpan(after, count * units), recurrence.RecurrentKernel, panels, count);
            else GruStep(work, row, previous, next, recurrence.RecurrentKernel, panels, recurrence.RecurrentBias, recurrentProduct, count);

            if (recurrence.Sequence.IsEmpty) continue;
            int t = recurrence.Reverse ? steps - 1 - p : p;
            for (int b = 0; b < count; b++)
            {
                var target = recurrence.Sequence.Slice(((first + b) * steps + t) * recurrence.OutputWidth + recurrence.OutputOffset, units);
                if (recurrence.ZeroOutputForMask && work.Mask[row + b] == 0f) target.Clear();
                else next.Slice(b * units, units).CopyTo(target);
            }
        }
    }

    /// <summary>
    /// One LSTM step of <paramref name="count"/> samples whose rows start at <paramref name="row"/> (of the time-major
    /// buffers), from their states and cells before the step to those after it.
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static void LstmStep(RecurrentWorkspace work, int row, ReadOnlySpan<float> previous, Span<float> next, ReadOnlySpan<float> cellsBefore, Span<float> cellsAfter,
        ReadOnlySpan<float> recurrentKernel, PackedMatrix? panels, int count)
    {
        int units = work.Units, gates = work.GateWidth;
        var z = work.Projected.AsSpan(row * gates, count * gates);
        Gemm.Multiply(previous, recurrentKernel, z, count, units, gates, accumulate: true, packedB: panels);
        switch (Simd.Current)
        {
            case SimdPath.Avx512: LstmCells<Lanes512, Vector512<float>>(work, row, z, cellsBefore, cellsAfter, previous, next, count); break;
            case SimdPath.Avx2: LstmCells<Lanes256, Vector256<float>>(work, row, z, cellsBefore, cellsAfter, previous, next, count); break;
            default: LstmCells<Lanes128, Vector128<float>>(work, row, z, cellsBefore, cellsAfter, previous, next, count); break;
        }
    }

    /// <summary>
    /// One LSTM step's cells, a vector of units at a time (the last one partial): a row's gates [i f c̃ o] activated in place
    /// (backward reads them), then c = f·c0 + i·c̃ and h = o·tanh(c), each product and sum rounded as written; a masked
    /// sample carries c and h over. One pass, where span calls per gate and per product read each row seven times.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void LstmCells<TLanes, TVector>(RecurrentWorkspace work, int row, Span<float> z, ReadOnlySpan<float> cellsBefore, Span<float> cellsAfter,
        ReadOnlySpan<float> previous, Span<float> next, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int units = work.Units, gates = work.GateWidth;
        for (int b = 0; b < count; b++)
        {
            bool carried = work.Mask[row + b] == 0f;
            ref float gate = ref MemoryMarshal.GetReference(z.Slice(b * gates, gates));
            ref float c0 = ref MemoryMarshal.GetReference(cellsBefore.Slice(b * units, units));
            ref float c1 = ref MemoryMarshal.GetReference(cellsAfter.Slice(b * units, units));
            ref float h0 = ref MemoryMarshal.GetReference(previous.Slice(b * units, units));
            ref float h1 = ref MemoryMarshal.GetReference(next.Slice(b * units, units));
            for (int u = 0; u < units; u += TLanes.Count)
            {
                var slice = new UnitSlice<TLanes, TVector>(u, Math.Min(TLanes.Count, units - u));
                TVector i = VectorMath.Sigmoid<TLanes, TVector>(slice.Load(ref gate, 0)), f = VectorMath.Sigmoid<TLanes, TVector>(slice.Load(ref gate, units));
                TVector g = VectorMath.Tanh<TLanes, TVector>(slice.Load(ref gate, 2 * units)), o = VectorMath.Sigmoid<TLanes, TVector>(slice.Load(ref gate, 3 * units));
                slice.Store(ref gate, 0, i);
                slice.Store(ref gate, units, f);
                slice.Store(ref gate, 2 * units, g);
                slice.Store(ref gate, 3 * units, o);
                if (carried)
                {
                    slice.Store(ref c1, 0, slice.Load(ref c0, 0));
                    slice.Store(ref h1, 0, slice.Load(ref h0, 0));
                    continue;
                }
                TVector c = TLanes.Add(TLanes.Multiply(i, g), TLanes.Multiply(f, slice.Load(ref c0, 0)));
                slice.Store(ref c1, 0, c);
                slice.Store(ref h1, 0, TLanes.Multiply(o, VectorMath.Tanh<TLanes, TVector>(c)));
            }
        }
    }

    /// <summary>One GRU step of <paramref name="count"/> samples whose rows start at <paramref name="row"/>, their recurrent product in <paramref name="recurrent"/>.</summary>
    [MethodImpl(Compiled.Driver)]
    private static void GruStep(RecurrentWorkspace work, int row, ReadOnlySpan<float> previous, Span<float> next, ReadOnlySpan<float> recurrentKernel,
        PackedMatrix? panels, ReadOnlySpan<float> recurrentBias, Span<float> recurrent, int count)
    {
        int units = work.Units, gates = work.GateWidth;
        var x = work.Projected.AsSpan(row * gates, count * gates);
        Gemm.Multiply(previous, recurrentKernel, recurrent, count, units, gates, recurrentBias, packedB: panels);
        var stored = work.ForTraining ? work.Gates.AsSpan(row * 4 * units, count * 4 * units) : default;
        switch (Simd.Current)
        {
            case SimdPath.Avx512: GruCells<Lanes512, Vector512<float>>(work, row, x, recurrent, stored, previous, next, count); break;
            case SimdPath.Avx2: GruCells<Lanes256, Vector256<float>>(work, row, x, recurrent, stored, previous, next, count); break;
            default: GruCells<Lanes128, Vector128<float>>(work, row, x, recurrent, stored, previous, next, count); break;
        }
    }

    /// <summary>
    /// One GRU step's cells, a vector of units at a time (the last one partial): z and r from the input and recurrent parts,
    /// h̃ = tanh(r·(h·U_h + b_h) + x_h) (reset after the product), kept for the backward step as [z r h̃ (h·U_h + b_h)]
    /// unless <paramref name="stored"/> is empty (inference); then
    /// h = z·h0 + (1 - z)·h̃, each product and sum rounded as written; a masked sample carries h over. One pass, where span
    /// calls per gate and per product read each row many times.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void GruCells<TLanes, TVector>(RecurrentWorkspace work, int row, ReadOnlySpan<float> x, ReadOnlySpan<float> recurrent, Span<float> stored,
        ReadOnlySpan<float> previous, Span<float> next, int count) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int units = work.Units, gates = work.GateWidth;
        bool keeps = !stored.IsEmpty;
        var one = TLanes.Broadcast(1f);
        for (int b = 0; b < count; b++)
        {
            bool carried = work.Mask[row + b] == 0f;
            ref float xs = ref MemoryMarshal.GetReference(x.Slice(b * gates, gates));
            ref float rs = ref MemoryMarshal.GetReference(recurrent.Slice(b * gates, gates));
            ref float keep = ref keeps ? ref MemoryMarshal.GetReference(stored.Slice(b * 4 * units, 4 * units)) : ref Unsafe.NullRef<float>();
            ref float h0 = ref MemoryMarshal.GetReference(previous.Slice(b * units, units));
            ref float h1 = ref MemoryMarshal.GetReference(next.Slice(b * units, units));
            for (int u = 0; u < units; u += TLanes.Count)
            {
                var slice = new UnitSlice<TLanes, TVector>(u, Math.Min(TLanes.Count, units - u));
                TVector z = VectorMath.Sigmoid<TLanes, TVector>(TLanes.Add(slice.Load(ref xs, 0), slice.Load(ref rs, 0)));
                TVector r = VectorMath.Sigmoid<TLanes, TVector>(TLanes.Add(slice.Load(ref xs, units), slice.Load(ref rs, units)));
                TVector recurrentH = slice.Load(ref rs, 2 * units);
                TVector candidate = VectorMath.Tanh<TLanes, TVector>(TLanes.Add(TLanes.Multiply(r, recurrentH), slice.Load(ref xs, 2 * units)));
                if (keeps)
                {
                    slice.Store(ref keep, 0, z);
                    slice.Store(ref keep, units, r);
                    slice.Store(ref keep, 2 * units, candidate);
                    slice.Store(ref keep, 3 * units, recurrentH);
                }
                slice.Store(ref h1, 0, carried ? slice.Load(ref h0, 0)
                    : TLanes.Add(TLanes.Multiply(z, slice.Load(ref h0, 0)), TLanes.Multiply(TLanes.Subtract(one, z), candidate)));
            }
        }
    }

    /// <summary>
    /// Backpropagation through time: reads the output gradient where Forward wrote the output (an empty one: the output fed
    /// nothing, only the returned state did), and writes (or adds) kernel, recurrent-kernel and bias gradients and, unless
    /// <paramref name="inputGradient"/> is empty, the input's. The returned states' gradients join at the last step; the
    /// initial states' gradients come out of the first.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    public static unsafe void Backward(RecurrentWorkspace work, ReadOnlySpan<float> outputGradient, int outputWidth, int outputOffset,
        ReadOnlySpan<float> kernel, ReadOnlySpan<float> recurrentKernel,
        Span<float> kernelGradient, Span<float> recurrentKernelGradient, Span<float> biasGradient, Span<float> inputGradient,
        int batch, bool returnSequences, bool reverse, bool computeWeights, bool accumulateWeights, bool accumulateInput, bool zeroOutputForMask = false,
        ReadOnlySpan<float> finalStateGradient = default, ReadOnlySpan<float> finalCellGradient = default,
        Span<float> initialStateGradient = default, Span<float> initialCellGradient = default, bool accumulateInitialState = false, bool accumulateInitialCell = false)
    {
        BackwardToTimeMajor(work, outputGradient, outputWidth, outputOffset, kernel, recurrentKernel, kernelGradient, recurrentKernelGradient, biasGradient,
            !inputGradient.IsEmpty, batch, returnSequences, reverse, computeWeights, accumulateWeights, zeroOutputForMask,
            finalStateGradient, finalCellGradient, initialStateGradient, initialCellGradient, accumulateInitialState, accumulateInitialCell);
        if (!inputGradient.IsEmpty) ToBatchMajor(work.TimeMajorGradient, inputGradient, batch, work.Steps, work.Features, reverse, accumulateInput);
    }

    /// <summary>
    /// <see cref="Backward"/> up to its input gradient, which it leaves time-major in the workspace (TimeMajorGradient) where
    /// <paramref name="inputGradientWanted"/>: a Bidirectional layer adds its two directions' into one tensor, in order.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static unsafe void BackwardToTimeMajor(RecurrentWorkspace work, ReadOnlySpan<float> outputGradient, int outputWidth, int outputOffset,
        ReadOnlySpan<float> kernel, ReadOnlySpan<float> recurrentKernel,
        Span<float> kernelGradient, Span<float> recurrentKernelGradient, Span<float> biasGradient, bool inputGradientWanted,
        int batch, bool returnSequences, bool reverse, bool computeWeights, bool accumulateWeights, bool zeroOutputForMask = false,
        ReadOnlySpan<float> finalStateGradient = default, ReadOnlySpan<float> finalCellGradient = default,
        Span<float> initialStateGradient = default, Span<float> initialCellGradient = default, bool accumulateInitialState = false, bool accumulateInitialCell = false)
    {
        Workspaces.RequireTraining(work, "recurrent");
        int steps = work.Steps, features = work.Features, units = work.Units, gates = work.GateWidth;
        var dh = work.StateGradient.AsSpan(0, batch * units);
        var dc = work.CellGradient.AsSpan(0, batch * units);
        Start(dh, finalStateGradient);
        Start(dc, finalCellGradient);
        if (!returnSequences && !outputGradient.IsEmpty)
        {
            for (int b = 0; b < batch; b++)
            {
                var row = dh.Slice(b * units, units);
                TensorPrimitives.Add(row, outputGradient.Slice(b * outputWidth + outputOffset, units), row);
            }
        }
        bool lstm = work.Cell == RecurrentCell.Lstm;
        var recurrentGradients = lstm ? work.InputGradients : work.RecurrentGradients;
        var transposedKernel = work.TransposedRecurrentKernel.Span;
        Gemm.Transpose(recurrentKernel, transposedKernel, units, gates);
        var recurrence = new Recurrence(work, transposedKernel, batch, reverse, zeroOutputForMask)
        {
            Panels = work.PanelsForPass(transposedKernel, gates, units, batch),
            SequenceGradient = returnSequences ? outputGradient : default, OutputWidth = outputWidth, OutputOffset = outputOffset,
        };
        OverSamples(ref recurrence, &BackwardSteps);
        if (!initialStateGradient.IsEmpty) Merges.Pass(dh, initialStateGradient, batch * units, accumulateInitialState);
        if (!initialCellGradient.IsEmpty) Merges.Pass(dc, initialCellGradient, batch * units, accumulateInitialCell);

        int rows = steps * batch;
        if (computeWeights)
        {
            Gemm.MultiplyTransposedA(work.Inputs, work.InputGradients, kernelGradient, features, rows, gates, accumulateWeights);
            Gemm.MultiplyTransposedA(work.States, recurrentGradients, recurrentKernelGradient, units, rows, gates, accumulateWeights);
            Reductions.SumRows(work.InputGradients, biasGradient.Slice(0, gates), rows, gates, accumulateWeights);
            if (!lstm) Reductions.SumRows(work.RecurrentGradients, biasGradient.Slice(gates, gates), rows, gates, accumulateWeights);
        }
        if (!inputGradientWanted) return;
        Gemm.MultiplyTransposedB(work.InputGradients, kernel, work.TimeMajorGradient, rows, gates, features);
    }

    /// <summary>
    /// The backward steps of samples [first, first + count), last step first: each step's gradients, then the recurrent
    /// product that carries dh to the step before (the recurrence's kernel is Uᵀ here).
    /// </summary>
    [MethodImpl(Compiled.Driver)]
    private static void BackwardSteps(ref Recurrence pass, int first, int count)
    {
        var recurrence = pass; // read from this core's own stack, not the other core's frame at every step
        var work = recurrence.Work;
        int steps = work.Steps, units = work.Units, gates = work.GateWidth, batch = recurrence.Batch;
        bool lstm = work.Cell == RecurrentCell.Lstm;
        var dh = work.StateGradient.AsSpan(first * units, count * units);
        var dc = work.CellGradient.AsSpan(first * units, count * units);
        var tanhCells = lstm ? work.Scratch.AsSpan(first * units, count * units) : default; // these samples' rows of the scratch
        var recurrentGradients = lstm ? work.InputGradients : work.RecurrentGradients;
        var panels = recurrence.PanelsFor(count); // every step's product has these samples' rows
        for (int p = steps - 1; p >= 0; p--)
        {
            int row = p * batch + first;
            if (!recurrence.SequenceGradient.IsEmpty)
            {
                int t = recurrence.Reverse ? steps - 1 - p : p;
                for (int b = 0; b < count; b++)
                {
                    if (recurrence.ZeroOutputForMask && work.Mask[row + b] == 0f) continue; // that output was a constant zero
                    var step = dh.Slice(b * units, units);
                    TensorPrimitives.Add(step, recurrence.SequenceGradient.Slice(((first + b) * steps + t) * recurrence.OutputWidth + recurrence.OutputOffset, units), step);
                }
            }
            if (lstm) LstmStepBackward(work, row, batch, dh, dc, tanhCells, count);
            else GruStepBackward(work, row, dh, count);

            // The step left in dh the gradient of h_{p-1} that bypasses the recurrent kernel (all of it where the step was
            // masked and the state carried over); the recurrent product adds the rest (zero rows for masked samples).
            Gemm.Multiply(recurrentGradients.AsSpan(row * gates, count * gates), recurrence.RecurrentKernel, dh, count, gates, units, accumulate: true,
                packedB: panels);
        }
    }

    [MethodImpl(Compiled.Driver)]
    private static void LstmStepBackward(RecurrentWorkspace work, int row, int batch, Span<float> dh, Span<float> dc, Span<float> tanhCells, int count)
    {
        VectorMath.Tanh(work.Cells.AsSpan((row + batch) * work.Units, count * work.Units), tanhCells);
        switch (Simd.Current)
        {
            case SimdPath.Avx512: LstmStepBackward<Lanes512, Vector512<float>>(work, row, dh, dc, tanhCells, count); break;
            case SimdPath.Avx2: LstmStepBackward<Lanes256, Vector256<float>>(work, row, dh, dc, tanhCells, count); break;
            default: LstmStepBackward<Lanes128, Vector128<float>>(work, row, dh, dc, tanhCells, count); break;
        }
    }

    private static void GruStepBackward(RecurrentWorkspace work, int row, Span<float> dh, int count)
    {
        switch (Simd.Current)
        {
            case SimdPath.Avx512: GruStepBackward<Lanes512, Vector512<float>>(work, row, dh, count); break;
            case SimdPath.Avx2: GruStepBackward<Lanes256, Vector256<float>>(work, row, dh, count); break;
            default: GruStepBackward<Lanes128, Vector128<float>>(work, row, dh, count); break;
        }
    }

    /// <summary>
    /// One LSTM step backward, a vector of units at a time (the last one partial), with each product rounded in the order the
    /// scalar formulas are written: dc' = dc + dh·o·(1 - tanh²c), then the pre-activation gradients of i, f, c̃ and o.
    /// </summary>
    [MethodImpl(Compiled.Kernel)]
    private static void LstmStepBackward<TLanes, TVector>(RecurrentWorkspace work, int row, Span<float> dh, Span<float> dc, ReadOnlySpan<float> tanhCells, int count)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int units = work.Units, gates = work.GateWidth;
        var activated = work.Projected.AsSpan(row * gates, count * gates);
        var dz = work.InputGradients.AsSpan(row * gates, count * gates);
        var cellsBefore = work.Cells.AsSpan(row * units, count * units);
        var one = TLanes.Broadcast(1f);
        for (int b = 0; b < count; b++)
        {
            var d = dz.Slice(b * gates, gates);
            if (work.Mask[row + b] == 0f)
            {
                d.Clear(); // the cell gradient carries over unchanged
                continue;
            }
            ref float gate = ref MemoryMarshal.GetReference(activated.Slice(b * gates, gates));
            ref float gradient = ref MemoryMarshal.GetReference(d);
            ref float c0 = ref MemoryMarshal.GetReference(cellsBefore.Slice(b * units, units));
            ref float tanhCell = ref MemoryMarshal.GetReference(tanhCells.Slice(b * units, units));
            ref float dhRow = ref MemoryMarshal.GetReference(dh.Slice(b * units, units));
            ref float dcRow = ref MemoryMarshal.GetReference(dc.Slice(b * units, units));
            for (int u = 0; u < units; u += TLanes.Count)
            {
                var slice = new UnitSlice<TLanes, TVector>(u, Math.Min(TLanes.Count, units - u));
                TVector i = slice.Load(ref gate, 0), f = slice.Load(ref gate, units), g = slice.Load(ref gate, 2 * units), o = slice.Load(ref gate, 3 * units);
                TVector tc = slice.Load(ref tanhCell, 0), dhu = slice.Load(ref dhRow, 0);
                TVector dCell = TLanes.Add(slice.Load(ref dcRow, 0), TLanes.Multiply(TLanes.Multiply(dhu, o), TLanes.Subtract(one, TLanes.Multiply(tc, tc))));
                slice.Store(ref gradient, 0, TLanes.Multiply(TLanes.Multiply(TLanes.Multiply(dCell, g), i), TLanes.Subtract(one, i)));
                slice.Store(ref gradient, units, TLanes.Multiply(TLanes.Multiply(TLanes.Multiply(dCell, slice.Load(ref c0, 0)), f), TLanes.Subtract(one, f)));
                slice.Store(ref gradient, 2 * units, TLanes.Multiply(TLanes.Multiply(dCell, i), TLanes.Subtract(one, TLanes.Multiply(g, g))));
                slice.Store(ref gradient, 3 * units, TLanes.Multiply(TLanes.Multiply(TLanes.Multiply(dhu, tc), o), TLanes.Subtract(one, o)));
                slice.Store(ref dcRow, 0, TLanes.Multiply(dCell, f));
                slice.Store(ref dhRow, 0, TLanes.Zero); // h_{p-1} reaches h_p only through the gates
            }
        }
    }

    /// <summary>One GRU step backward, a vector of units at a time, products rounded in the order the scalar formulas are written.</summary>
    [MethodImpl(Compiled.Kernel)]
    private static void GruStepBackward<TLanes, TVector>(RecurrentWorkspace work, int row, Span<float> dh, int count)
        where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        int units = work.Units, gates = work.GateWidth;
        var stored = work.Gates.AsSpan(row * 4 * units, count * 4 * units);
        var dx = work.InputGradients.AsSpan(row * gates, count * gates);
        var dr = work.RecurrentGradients.AsSpan(row * gates, count * gates);
        var previous = work.States.AsSpan(row * units, count * units);
        var one = TLanes.Broadcast(1f);
        for (int b = 0; b < count; b++)
        {
            var dxb = dx.Slice(b * gates, gates);
            var drb = dr.Slice(b * gates, gates);
            if (work.Mask[row + b] == 0f)
            {
                dxb.Clear();
                drb.Clear();
                continue;
            }
            ref float keep = ref MemoryMarshal.GetReference(stored.Slice(b * 4 * units, 4 * units));
            ref float h0 = ref MemoryMarshal.GetReference(previous.Slice(b * units, units));
            ref float dhRow = ref MemoryMarshal.GetReference(dh.Slice(b * units, units));
            ref float inputGradient = ref MemoryMarshal.GetReference(dxb);
            ref float recurrentGradient = ref MemoryMarshal.GetReference(drb);
            for (int u = 0; u < units; u += TLanes.Count)
            {
                var slice = new UnitSlice<TLanes, TVector>(u, Math.Min(TLanes.Count, units - u));
                TVector z = slice.Load(ref keep, 0), r = slice.Load(ref keep, units), candidate = slice.Load(ref keep, 2 * units), recurrentH = slice.Load(ref keep, 3 * units);
                TVector g = slice.Load(ref dhRow, 0);
                TVector oneMinusZ = TLanes.Subtract(one, z);
                TVector dCandidate = TLanes.Multiply(TLanes.Multiply(g, oneMinusZ), TLanes.Subtract(one, TLanes.Multiply(candidate, candidate))); // through tanh
                TVector dz = TLanes.Multiply(TLanes.Multiply(TLanes.Multiply(g, TLanes.Subtract(slice.Load(ref h0, 0), candidate)), z), oneMinusZ);
                TVector dReset = TLanes.Multiply(TLanes.Multiply(TLanes.Multiply(dCandidate, recurrentH), r), TLanes.Subtract(one, r));
                slice.Store(ref inputGradient, 0, dz); slice.Store(ref inputGradient, units, dReset); slice.Store(ref inputGradient, 2 * units, dCandidate);
                slice.Store(ref recurrentGradient, 0, dz); slice.Store(ref recurrentGradient, units, dReset); slice.Store(ref recurrentGradient, 2 * units, TLanes.Multiply(dCandidate, r));
                slice.Store(ref dhRow, 0, TLanes.Multiply(g, z)); // the direct path; the recurrent product adds the rest
            }
        }
    }

    /// <summary>
    /// Units [at, at + lanes) of a row, a vector (the last one partial), at the same place in each span a cell kernel reads
    /// or writes; a gate's units sit a multiple of the units further on (each call's offset).
    /// </summary>
    private readonly struct UnitSlice<TLanes, TVector>(int at, int lanes) where TLanes : struct, ILanes<TVector> where TVector : struct
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVector Load(ref float values, int offset) => TLanes.LoadFirst(ref Unsafe.Add(ref values, offset + at), lanes);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(ref float values, int offset, TVector value) => TLanes.StoreFirst(ref Unsafe.Add(ref values, offset + at), value, lanes);
    }

    /// <summary>
    /// One pass of a layer over its steps, as both cores read it: the workspace, the recurrent product's kernel (U forward, Uᵀ
    /// backward) and where the sequence output is written or its gradient read (empty where the layer returns its last state).
    /// </summary>
    private unsafe ref struct Recurrence(RecurrentWorkspace work, ReadOnlySpan<float> recurrentKernel, int batch, bool reverse, bool zeroOutputForMask)
    {
        public readonly RecurrentWorkspace Work = work;
        public readonly ReadOnlySpan<float> RecurrentKernel = recurrentKernel;
        public readonly int Batch = batch;
        public readonly bool Reverse = reverse, ZeroOutputForMask = zeroOutputForMask;
        public ReadOnlySpan<float> RecurrentBias;
        public Span<float> Sequence;
        public ReadOnlySpan<float> SequenceGradient;
        public int OutputWidth, OutputOffset;
        public delegate*<ref Recurrence, int, int, void> Steps;
        /// <summary>The recurrent kernel packed for this pass (<see cref="RecurrentWorkspace.PanelsForPass"/>), or null.</summary>
        public PackedMatrix? Panels;

        /// <summary>The panels for a step's product of <paramref name="count"/> rows: null where that product reads B better itself.</summary>
        public readonly PackedMatrix? PanelsFor(int count) => Panels is { } panels && Gemm.ReadsPanels(count, panels.Rows, panels.Columns) ? panels : null;
    }

    /// <summary>Rows of a step's recurrent product: the larger half of the batch where the cores share samples, else all of it.</summary>
    internal static int StepRows(RecurrentWorkspace work, int batch) => SharesSamples(work, batch) ? (batch + 1) / 2 : batch;

    /// <summary>
    /// Whether a pass's samples are split between the cores. A sample's steps depend on no other sample's, so each core runs
    /// every step of its half of the batch and the two meet once, at the end; a recurrent product shared step by step meets
    /// at every step, and a step too small to share runs on one core. Measured on the 2-vCPU Zen 3 (forward, and forward with
    /// backward, halves / one core's time): 64 units at batch 32, 28 steps 0.60 / 0.69; 32 units at batch 16 0.72 / 0.73; 128 at
    /// batch 8 to 64 0.86-0.89 / 0.89-0.91. The rule's edges: each half needs four rows or more, the GEMM's packed tiles (batch
    /// 4 at 64 units: 1.18 / 1.07); the pass needs half a million multiply-adds (32 units at batch 8, 20 steps: 0.91 / 0.95).
    /// Each core then reads the whole recurrent kernel at every step. Beyond a core's L2 (over 512 KB) the halves need eight
    /// rows each: with four, each core's product is bound by reading the kernel, and the GEMM's own split, which gives each
    /// core half of it, wins (Zen 4, LSTM(512) over 50 steps at batch 8: halves 1.24x the time; LSTM(256) over 100 at batch 8
    /// 1.08x with backward); from eight the halves also run their cells on both cores, which the GEMM's split leaves to one
    /// (same models, halves / columns, kernels packed once a pass either way: LSTM(256) batch 16 0.86-0.92, 32 0.63-0.87, 64
    /// 0.91; with backward at 16 0.90, at 32 0.75-0.90; LSTM(512) batch 16 0.88-0.95, 32 0.92, with backward 0.93-0.98).
    /// </summary>
    internal static bool SharesSamples(RecurrentWorkspace work, int batch) =>
        batch >= 2 * SamplesPerCore && (long)work.Steps * batch * work.Units * work.GateWidth >= ShareSamplesAbove &&
        ((long)work.Units * work.GateWidth * sizeof(float) <= SharedKernelBytes || batch >= 2 * SamplesPerCoreBeyondL2);

    private const int SamplesPerCore = 4;
    private const long ShareSamplesAbove = 500_000;
    private const int SharedKernelBytes = 512 * 1024;
    private const int SamplesPerCoreBeyondL2 = 8;

    /// <summary>
    /// Runs <paramref name="steps"/> over the batch: in two halves fixed by the shape alone where <see cref="SharesSamples"/>,
    /// the helper taking one (so the bits are the same on one core or two), else all at once.
    /// </summary>
    private static unsafe void OverSamples(ref Recurrence recurrence, delegate*<ref Recurrence, int, int, void> steps)
    {
        if (!SharesSamples(recurrence.Work, recurrence.Batch))
        {
            steps(ref recurrence, 0, recurrence.Batch);
            return;
        }
        recurrence.Steps = steps;
        // The helper reads the pass through a pointer to this frame, which stays put (and keeps what it refers to alive) until
        // Helper.For has returned.
        Helper.For(2, &StepsOfHalf, Unsafe.AsPointer(ref recurrence));
    }

    private static unsafe void StepsOfHalf(void* state, int half, int worker)
    {
        ref var recurrence = ref Unsafe.AsRef<Recurrence>(state);
        var (first, count) = Helper.PartOf(half, 2, recurrence.Batch);
        recurrence.Steps(ref recurrence, first, count);
    }

    /// <summary>(batch, steps, width) into (steps, batch, width) in processing order.</summary>
    [MethodImpl(Compiled.Driver)]
    private static void ToTimeMajor(ReadOnlySpan<float> source, Span<float> destination, int batch, int steps, int width, bool reverse)
    {
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < steps; t++)
            {
                int p = reverse ? steps - 1 - t : t;
                source.Slice((b * steps + t) * width, width).CopyTo(destination.Slice((p * batch + b) * width, width));
            }
    }

    private static void ToBatchMajor(ReadOnlySpan<float> source, Span<float> destination, int batch, int steps, int width, bool reverse, bool accumulate)
    {
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < steps; t++)
            {
                int p = reverse ? steps - 1 - t : t;
                Merges.Pass(source.Slice((p * batch + b) * width, width), destination.Slice((b * steps + t) * width, width), width, accumulate);
            }
    }
}
