using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// LSTM and GRU passes large enough that each core runs every step of half the batch (Recurrent.SharesSamples): against each
/// sample run alone, through the undivided route, which the parity tests hold to PyTorch; and one core against two.
/// </summary>
[Collection(KernelSettings.Name)]
public class RecurrentTests
{
    // 8 samples of 24 steps, 32 units: above the sharing rule for both cells.
    private const int Batch = 8, Steps = 24, Features = 5, Units = 32;

    public static IEnumerable<object[]> Passes() => KernelSettings.OnEveryPath(
        from cell in new[] { RecurrentCell.Lstm, RecurrentCell.Gru }
        from reverse in new[] { false, true }
        from returnSequences in new[] { false, true }
        select new object[] { cell, reverse, returnSequences });

    [Theory, MemberData(nameof(Passes))]
    public void Halves_of_the_batch_compute_what_each_sample_computes_alone(RecurrentCell cell, bool reverse, bool returnSequences, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var layer = new Layer(cell, reverse, returnSequences, seed: 10 + (int)cell);
        Assert.True(Recurrent.SharesSamples(layer.Workspace(Batch), Batch));
        AssertBatchComputesWhatEachSampleComputesAlone(layer);
    }

    /// <summary>
    /// Batches whose steps' recurrent products read the kernel packed once per pass (Gemm.ReadsPanels: more than 12 rows in a
    /// product, U forward, Uᵀ backward, or one to three streamed), halved or whole, and a recurrent kernel beyond a core's L2
    /// (256 units: 1 MB for an LSTM) whose batch halves from 8 samples a core: each sample as computed alone (one row,
    /// streamed), and the same bits on one core or two.
    /// </summary>
    [Theory]
    [InlineData(RecurrentCell.Lstm, 26, 32, true, true)]    // halves of 13 rows, panels
    [InlineData(RecurrentCell.Gru, 26, 32, true, true)]
    [InlineData(RecurrentCell.Lstm, 13, 256, false, true)]  // 1 MB kernel, 13 rows: products shared by columns, panels
    [InlineData(RecurrentCell.Gru, 13, 256, false, true)]
    [InlineData(RecurrentCell.Lstm, 16, 256, true, false)]  // 1 MB kernel, halves of 8 rows read it in place
    [InlineData(RecurrentCell.Gru, 26, 256, true, true)]    // 0.75 MB kernel, halves of 13 rows, panels
    public void Passes_over_panels_packed_once_compute_what_each_sample_computes_alone(RecurrentCell cell, int batch, int units, bool halves, bool panels)
    {
        var layer = new Layer(cell, reverse: batch % 2 == 0, returnSequences: true, seed: 50 + batch + (int)cell, batch, units);
        var work = layer.Workspace(batch);
        Assert.Equal(halves, Recurrent.SharesSamples(work, batch));
        Assert.Equal(panels, work.PanelsForPass(layer.RecurrentKernel, units, work.GateWidth, batch) is not null);
        AssertBatchComputesWhatEachSampleComputesAlone(layer);
        var two = KernelSettings.OnThreads(2, () => layer.RunBatch(work));
        var one = KernelSettings.OnThreads(1, () => layer.RunBatch(work));
        foreach (var (name, a, b) in one.Named().Zip(two.Named(), (x, y) => (x.Name, x.Values, y.Values)))
            Assert.True(a.SequenceEqual(b), $"{name} differs between one core and two");
    }

    /// <summary>
    /// One to three samples read the recurrent kernel packed once per pass where streaming it in place would take more than
    /// one pass (Gemm.ReadsPanels), each step then streaming the panels' tiles: each sample gets the bits it gets among four,
    /// whose product of four rows reads the kernel where it lies.
    /// </summary>
    [Theory]
    [InlineData(RecurrentCell.Lstm, 64, true)]  // 256 gates: more than a pass of eight 512-bit vectors even for a sample alone
    [InlineData(RecurrentCell.Gru, 64, true)]   // 192 gates
    [InlineData(RecurrentCell.Lstm, 32, false)] // 128 gates: a sample alone reads whole rows in one pass; three take three passes in place
    public void A_few_samples_stream_the_recurrent_kernel_from_panels_with_the_same_bits(RecurrentCell cell, int units, bool panelsAlone)
    {
        var layer = new Layer(cell, reverse: false, returnSequences: true, seed: 70 + units + (int)cell, batch: 4, units);
        using (KernelSettings.OnSimd(SimdPath.Avx512))
        {
            foreach (var (batch, panels) in new[] { (1, panelsAlone), (3, true), (4, false) })
            {
                var work = layer.Workspace(batch);
                Assert.True(panels == work.PanelsForPass(layer.RecurrentKernel, units, work.GateWidth, batch) is not null, $"panels at batch {batch}");
            }
        }
        float[] Samples(float[] values, int first, int count, int width) => values.AsSpan(first * width, count * width).ToArray();
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            var four = layer.Predict(layer.Workspace(4));
            foreach (var (first, count) in new[] { (0, 1), (1, 1), (3, 1), (0, 3), (1, 3) })
            {
                var part = layer.Run(layer.Workspace(count), count, Samples(layer.Input, first, count, Steps * Features), Samples(layer.Mask, first, count, Steps),
                    Samples(layer.OutputGradient, first, count, layer.OutputWidth), Samples(layer.InitialState, first, count, units));
                Assert.True(Samples(four.Output, first, count, layer.OutputWidth).SequenceEqual(part.Output), $"{path}: samples {first} to {first + count - 1} differ");
                Assert.True(Samples(four.FinalState, first, count, units).SequenceEqual(part.FinalState), $"{path}: final states {first} to {first + count - 1} differ");
            }
        }
    }

    /// <summary>
    /// Kernels packed ahead (an inference copy's, Gemm.Pack) give the bits the pass gets packing them itself, at one, three,
    /// four and sixteen samples (steps streamed from panels, in place, halves), on every SIMD path; and they are what the
    /// products read: an input kernel packed from other values gives those values' bits (24 steps: rows enough for panels at
    /// every batch), a recurrent kernel packed from other values gives theirs wherever the steps read panels
    /// (Gemm.ReadsPanels) and changes nothing where they read the recurrent kernel in place.
    /// </summary>
    [Theory]
    [InlineData(RecurrentCell.Lstm, 64)]
    [InlineData(RecurrentCell.Gru, 64)]
    [InlineData(RecurrentCell.Lstm, 32)]
    public void Kernels_packed_ahead_give_the_same_bits_and_are_the_ones_read(RecurrentCell cell, int units)
    {
        var layer = new Layer(cell, reverse: true, returnSequences: true, seed: 90 + units + (int)cell, batch: 16, units);
        var other = new Layer(cell, reverse: true, returnSequences: true, seed: 95 + units + (int)cell, batch: 16, units);
        int gates = layer.RecurrentKernel.Length / units;
        var readPanels = new HashSet<bool>();
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            var (kernel, recurrentKernel) = (Gemm.Pack(layer.Kernel, Features, gates), Gemm.Pack(layer.RecurrentKernel, units, gates));
            var (otherKernel, otherRecurrentKernel) = (Gemm.Pack(other.Kernel, Features, gates), Gemm.Pack(other.RecurrentKernel, units, gates));
            foreach (int batch in new[] { 1, 3, 4, 16 })
            {
                var work = layer.Workspace(batch);
                bool readsPanels = Gemm.ReadsPanels(Recurrent.StepRows(work, batch), units, gates);
                readPanels.Add(readsPanels);
                var expected = layer.PredictWith(work, batch);
                AssertSameBits($"{path}, batch {batch}, packed ahead", expected, layer.PredictWith(work, batch, packedKernel: kernel, packedRecurrentKernel: recurrentKernel));
                AssertSameBits($"{path}, batch {batch}, another input kernel packed", layer.PredictWith(work, batch, kernel: other.Kernel),
                    layer.PredictWith(work, batch, packedKernel: otherKernel));
                AssertSameBits($"{path}, batch {batch}, another recurrent kernel packed", readsPanels ? layer.PredictWith(work, batch, recurrentKernel: other.RecurrentKernel) : expected,
                    layer.PredictWith(work, batch, packedRecurrentKernel: otherRecurrentKernel));
            }
        }
        Assert.Equal(2, readPanels.Count);
        var wrong = Assert.Throws<ArgumentException>(() => layer.PredictWith(layer.Workspace(1), 1, packedRecurrentKernel: Gemm.Pack(layer.Kernel, Features, gates)));
        Assert.Equal("packedRecurrentKernel", wrong.ParamName);
        Assert.Contains($"the product needs {units}x{gates}", wrong.Message);
    }

    /// <summary>
    /// A workspace told that its recurrent kernel comes packed ahead (an inference copy's) has no room to pack it into and is
    /// that much smaller; handed the packed kernel, it predicts the bits of one that packs it itself. One for training keeps
    /// room for Uᵀ, which its backward pass packs.
    /// </summary>
    [Fact]
    public void A_workspace_handed_its_recurrent_kernel_packed_has_no_room_to_pack_it()
    {
        const int units = 64, gates = 4 * units;
        var layer = new Layer(RecurrentCell.Lstm, reverse: false, returnSequences: false, seed: 120, batch: 3, units);
        var packing = layer.Workspace(3, forTraining: false);
        var packedAhead = new RecurrentWorkspace(RecurrentCell.Lstm, 3, Steps, Features, units, forTraining: false, recurrentKernelPackedAhead: true);
        Assert.NotNull(packing.PanelsForPass(layer.RecurrentKernel, units, gates, 3));
        Assert.Null(packedAhead.RecurrentPanels);
        Assert.Equal(packing.Bytes - Gemm.PanelFloatsOnAnyPath(units, gates) * sizeof(float), packedAhead.Bytes);
        Assert.NotNull(new RecurrentWorkspace(RecurrentCell.Lstm, 3, Steps, Features, units, forTraining: true, recurrentKernelPackedAhead: true).RecurrentPanels);
        var packed = Gemm.Pack(layer.RecurrentKernel, units, gates);
        foreach (int batch in new[] { 1, 3 })
            AssertSameBits($"batch {batch}", layer.PredictWith(packing, batch), layer.PredictWith(packedAhead, batch, packedRecurrentKernel: packed));
    }

    private static void AssertSameBits(string what, Result expected, Result actual)
    {
        Assert.True(expected.Output.SequenceEqual(actual.Output), $"{what}: the outputs differ");
        Assert.True(expected.FinalState.SequenceEqual(actual.FinalState), $"{what}: the final states differ");
    }

    private static void AssertBatchComputesWhatEachSampleComputesAlone(Layer layer)
    {
        var whole = layer.RunBatch(layer.Workspace(layer.Batch));
        var alone = layer.Workspace(1);
        Assert.False(Recurrent.SharesSamples(alone, 1));
        var kernelSum = new double[layer.Kernel.Length];
        var recurrentSum = new double[layer.RecurrentKernel.Length];
        var biasSum = new double[layer.Bias.Length];
        int units = layer.Units;
        for (int b = 0; b < layer.Batch; b++)
        {
            var sample = layer.Run(alone, 1, Rows(layer.Input, b, Steps * Features), Rows(layer.Mask, b, Steps),
                Rows(layer.OutputGradient, b, layer.OutputWidth), Rows(layer.InitialState, b, units));
            AssertClose($"sample {b} output", sample.Output, Rows(whole.Output, b, layer.OutputWidth));
            AssertClose($"sample {b} final state", sample.FinalState, Rows(whole.FinalState, b, units));
            AssertClose($"sample {b} input gradient", sample.InputGradient, Rows(whole.InputGradient, b, Steps * Features));
            AssertClose($"sample {b} initial state gradient", sample.InitialStateGradient, Rows(whole.InitialStateGradient, b, units));
            Add(kernelSum, sample.KernelGradient);
            Add(recurrentSum, sample.RecurrentKernelGradient);
            Add(biasSum, sample.BiasGradient);
        }
        AssertClose("kernel gradient", kernelSum.Select(v => (float)v).ToArray(), whole.KernelGradient);
        AssertClose("recurrent kernel gradient", recurrentSum.Select(v => (float)v).ToArray(), whole.RecurrentKernelGradient);
        AssertClose("bias gradient", biasSum.Select(v => (float)v).ToArray(), whole.BiasGradient);
    }

    [Theory, MemberData(nameof(Passes))]
    public void A_workspace_for_inference_predicts_the_same_bits_and_refuses_a_backward_pass(RecurrentCell cell, bool reverse, bool returnSequences, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var layer = new Layer(cell, reverse, returnSequences, seed: 40 + (int)cell);
        var (training, inference) = (layer.Workspace(Batch), layer.Workspace(Batch, forTraining: false));
        Assert.True(inference.Bytes < training.Bytes);
        var expected = layer.Predict(training);
        var actual = layer.Predict(inference);
        Assert.Equal(expected.Output, actual.Output);
        Assert.Equal(expected.FinalState, actual.FinalState);
        var error = Assert.Throws<InvalidOperationException>(() => layer.RunBatch(inference));
        Assert.Contains("recurrent workspace was made for inference only", error.Message);
    }

    [Theory]
    [InlineData(RecurrentCell.Lstm)]
    [InlineData(RecurrentCell.Gru)]
    public void Halves_give_the_same_bits_on_one_core_or_two(RecurrentCell cell)
    {
        var layer = new Layer(cell, reverse: false, returnSequences: true, seed: 20 + (int)cell);
        var work = layer.Workspace(Batch);
        var two = KernelSettings.OnThreads(2, () => layer.RunBatch(work));
        var one = KernelSettings.OnThreads(1, () => layer.RunBatch(work));
        foreach (var (name, a, b) in one.Named().Zip(two.Named(), (x, y) => (x.Name, x.Values, y.Values)))
            Assert.True(a.SequenceEqual(b), $"{name} differs between one core and two");
    }

    /// <summary>
    /// Each half of the batch has its own rows of the workspace's scratch (a GRU's recurrent product, an LSTM's tanh of its
    /// cells). Halves sharing rows would race on two cores, which no comparison of results catches reliably. Here the halves
    /// run one after the other on a scratch of NaNs, and every sample's rows must have been written: rows shared by both
    /// halves would leave others untouched.
    /// </summary>
    [Theory]
    [InlineData(RecurrentCell.Lstm)]
    [InlineData(RecurrentCell.Gru)]
    public void Each_half_works_in_its_own_rows_of_the_scratch(RecurrentCell cell)
    {
        var layer = new Layer(cell, reverse: false, returnSequences: true, seed: 30 + (int)cell);
        var work = layer.Workspace(Batch);
        Assert.True(Recurrent.SharesSamples(work, Batch));
        work.Scratch.Span.Fill(float.NaN);
        KernelSettings.OnThreads(1, () => layer.RunBatch(work));
        int rowWidth = work.Scratch.Length / Batch;
        var untouched = Enumerable.Range(0, Batch).Where(b => work.Scratch.AsSpan(b * rowWidth, rowWidth).ToArray().Any(float.IsNaN));
        Assert.Empty(untouched); // samples whose scratch rows no half wrote
    }

    /// <summary>A layer's weights and one batch: inputs, a mask that drops some samples' last steps, an initial state and output gradients.</summary>
    /// <summary>
    /// Both directions of a Bidirectional layer in one call (Recurrent.ForwardBidirectional), each on its own core with all
    /// its samples: at batch 2, too small to split them, and at batch 8, where the two directions run one after the other
    /// split them. Either way the same bits as the two directions run one after the other with Forward, on one core or two.
    /// </summary>
    [Theory]
    [InlineData(RecurrentCell.Lstm, false, 2)]
    [InlineData(RecurrentCell.Lstm, true, 2)]
    [InlineData(RecurrentCell.Gru, false, 2)]
    [InlineData(RecurrentCell.Gru, true, 2)]
    [InlineData(RecurrentCell.Lstm, true, Batch)]
    [InlineData(RecurrentCell.Gru, true, Batch)]
    public void Both_directions_in_one_call_compute_what_each_computes_alone(RecurrentCell cell, bool returnSequences, int batch)
    {
        var layer = new TwoDirections(cell, returnSequences, seed: 40 + (int)cell, batch);
        Assert.Equal(batch == Batch, Recurrent.SharesSamples(layer.Forward.Workspace(batch), batch));
        var expected = new float[layer.OutputLength];
        layer.ForwardInTurn(layer.Forward.Workspace(batch), layer.Backward.Workspace(batch), expected);
        float[] Both()
        {
            var output = new float[layer.OutputLength];
            layer.ForwardInOneCall(layer.Forward.Workspace(batch), layer.Backward.Workspace(batch), output);
            return output;
        }
        Assert.Equal(expected, KernelSettings.OnThreads(2, Both));
        Assert.Equal(expected, KernelSettings.OnThreads(1, Both));
    }

    /// <summary>
    /// Both directions' kernels packed ahead (an inference copy's): the bits of the call that packs them itself, on one core or
    /// two, at one sample (every product reading panels: 64 units) and at eight; and each direction reads its own: handed
    /// the other direction's kernels packed, a sample alone gets what the call given the kernels swapped computes.
    /// </summary>
    [Theory]
    [InlineData(RecurrentCell.Lstm)]
    [InlineData(RecurrentCell.Gru)]
    public void Both_directions_read_their_own_kernels_packed_ahead(RecurrentCell cell)
    {
        foreach (int batch in new[] { 1, Batch })
        {
            var layer = new TwoDirections(cell, returnSequences: true, seed: 100 + (int)cell + batch, batch, units: 64);
            float[] Both(Layer? forwardKernels = null, Layer? backwardKernels = null, PackedMatrix?[]? packed = null)
            {
                var output = new float[layer.OutputLength];
                layer.ForwardInOneCall(layer.Forward.Workspace(batch), layer.Backward.Workspace(batch), output, forwardKernels, backwardKernels, packed);
                return output;
            }
            var expected = Both();
            var packed = TwoDirections.Packed(layer.Forward, layer.Backward);
            Assert.Equal(expected, KernelSettings.OnThreads(2, () => Both(packed: packed)));
            Assert.Equal(expected, KernelSettings.OnThreads(1, () => Both(packed: packed)));
            if (batch != 1) continue;
            var swapped = Both(layer.Backward, layer.Forward);
            Assert.NotEqual(expected, swapped);
            Assert.Equal(swapped, Both(packed: TwoDirections.Packed(layer.Backward, layer.Forward)));
        }
    }

    /// <summary>
    /// Backward through both directions in one call (Recurrent.BackwardBidirectional), after the forward pass in one: the same
    /// bits as two Backward calls after two Forward calls (the backward direction's input gradient added to the forward one's,
    /// itself added to what the tensor held or not), on one core or two, at batch 2 and at batch 8 (split samples in turn).
    /// </summary>
    [Theory]
    [InlineData(RecurrentCell.Lstm, false, false, 2)]
    [InlineData(RecurrentCell.Lstm, true, true, 2)]
    [InlineData(RecurrentCell.Gru, true, false, 2)]
    [InlineData(RecurrentCell.Gru, false, true, 2)]
    [InlineData(RecurrentCell.Lstm, true, true, Batch)]
    [InlineData(RecurrentCell.Gru, true, true, Batch)]
    public void Both_directions_backward_in_one_call_give_the_bits_of_two_calls(RecurrentCell cell, bool returnSequences, bool accumulateInput, int batch)
    {
        var layer = new TwoDirections(cell, returnSequences, seed: 60 + (int)cell, batch);
        var (forward, backward) = (layer.Forward, layer.Backward);
        var random = new Random(80 + batch);
        var outputGradient = Enumerable.Range(0, layer.OutputLength).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var heldGradient = Enumerable.Range(0, layer.Input.Length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();

        // The gradients, flattened in one order: input, then each direction's kernel, recurrent kernel and bias.
        float[][] Gradients() => new[] { accumulateInput ? (float[])heldGradient.Clone() : Enumerable.Repeat(float.NaN, layer.Input.Length).ToArray() }
            .Concat(new[] { forward, backward }.SelectMany(l => new[] { new float[l.Kernel.Length], new float[l.RecurrentKernel.Length], new float[l.Bias.Length] })).ToArray();
        var (forwardWork, backwardWork) = (forward.Workspace(batch), backward.Workspace(batch));
        var expected = Gradients();
        layer.ForwardInTurn(forwardWork, backwardWork, new float[layer.OutputLength]);
        Recurrent.Backward(forwardWork, outputGradient, layer.Width, 0, forward.Kernel, forward.RecurrentKernel, expected[1], expected[2], expected[3], expected[0], batch,
            returnSequences, reverse: false, computeWeights: true, accumulateWeights: false, accumulateInput, zeroOutputForMask: returnSequences);
        Recurrent.Backward(backwardWork, outputGradient, layer.Width, Units, backward.Kernel, backward.RecurrentKernel, expected[4], expected[5], expected[6], expected[0], batch,
            returnSequences, reverse: true, computeWeights: true, accumulateWeights: false, accumulateInput: true, zeroOutputForMask: returnSequences);

        float[][] Both()
        {
            var (forwardWork, backwardWork) = (forward.Workspace(batch), backward.Workspace(batch));
            var gradients = Gradients();
            layer.ForwardInOneCall(forwardWork, backwardWork, new float[layer.OutputLength]);
            Recurrent.BackwardBidirectional(forwardWork, backwardWork, outputGradient, layer.Width, forward.Kernel, forward.RecurrentKernel, gradients[1], gradients[2], gradients[3],
                backward.Kernel, backward.RecurrentKernel, gradients[4], gradients[5], gradients[6], gradients[0], batch, returnSequences,
                computeWeights: true, accumulateWeights: false, accumulateInput, zeroOutputForMask: returnSequences);
            return gradients;
        }
        foreach (int threads in new[] { 2, 1 })
        {
            var actual = KernelSettings.OnThreads(threads, Both);
            for (int g = 0; g < expected.Length; g++) Assert.True(expected[g].SequenceEqual(actual[g]), $"gradient {g} differs on {threads} thread(s)");
        }
    }

    /// <summary>
    /// Two layers as a Bidirectional layer's directions (the backward one's weights drawn from the next seed but ten) over the
    /// forward one's first <paramref name="batch"/> samples, with its masks; outputs side by side, a row of both per step or sample.
    /// </summary>
    private sealed class TwoDirections(RecurrentCell cell, bool returnSequences, int seed, int batch, int units = Units)
    {
        public readonly Layer Forward = new(cell, reverse: false, returnSequences, seed, units: units), Backward = new(cell, reverse: true, returnSequences, seed + 10, units: units);
        public float[] Input => Forward.Input.AsSpan(0, batch * Steps * Features).ToArray();
        public float[] Mask => Forward.Mask.AsSpan(0, batch * Steps).ToArray();
        public int Width => 2 * units;
        public int OutputLength => batch * (returnSequences ? Steps : 1) * Width;

        /// <summary>The two directions one after the other, as the generated code called them before ForwardBidirectional.</summary>
        public void ForwardInTurn(RecurrentWorkspace forwardWork, RecurrentWorkspace backwardWork, float[] output)
        {
            var (input, mask) = (Input, Mask);
            foreach (var (layer, work, offset) in new[] { (Forward, forwardWork, 0), (Backward, backwardWork, units) })
                Recurrent.Forward(work, input, mask, layer.Kernel, layer.RecurrentKernel, layer.Bias, output, Width, offset, batch, returnSequences, layer.Reverse,
                    zeroOutputForMask: returnSequences);
        }

        /// <summary>
        /// Both directions in one call: each with its own biases and the kernels of <paramref name="forwardKernels"/> and
        /// <paramref name="backwardKernels"/> (its own unless given), and the four kernels packed ahead where given (forward's
        /// kernel and recurrent kernel, then backward's).
        /// </summary>
        public void ForwardInOneCall(RecurrentWorkspace forwardWork, RecurrentWorkspace backwardWork, float[] output,
            Layer? forwardKernels = null, Layer? backwardKernels = null, PackedMatrix?[]? packed = null)
        {
            var (f, b) = (forwardKernels ?? Forward, backwardKernels ?? Backward);
            packed ??= new PackedMatrix?[4];
            Recurrent.ForwardBidirectional(forwardWork, backwardWork, Input, Mask, f.Kernel, f.RecurrentKernel, Forward.Bias,
                b.Kernel, b.RecurrentKernel, Backward.Bias, output, Width, batch, returnSequences, zeroOutputForMask: returnSequences,
                packedForwardKernel: packed[0], packedForwardRecurrentKernel: packed[1], packedBackwardKernel: packed[2], packedBackwardRecurrentKernel: packed[3]);
        }

        /// <summary>The kernels of <paramref name="forward"/>, then of <paramref name="backward"/>, packed as an inference copy packs them.</summary>
        public static PackedMatrix?[] Packed(Layer forward, Layer backward) => new[] { forward, backward }
            .SelectMany(layer => new PackedMatrix?[]
            {
                Gemm.Pack(layer.Kernel, Features, layer.Kernel.Length / Features), Gemm.Pack(layer.RecurrentKernel, layer.Units, layer.RecurrentKernel.Length / layer.Units),
            })
            .ToArray();
    }

    private sealed class Layer
    {
        public readonly RecurrentCell Cell;
        public readonly bool Reverse, ReturnSequences;
        public readonly int Batch, Units;
        public readonly float[] Kernel, RecurrentKernel, Bias, Input, Mask, InitialState, OutputGradient;
        /// <summary>Output floats per sample: a row of units per step with returnSequences, else one.</summary>
        public int OutputWidth => ReturnSequences ? Steps * Units : Units;
        /// <summary>Masked steps output zeros (as Keras' Bidirectional asks) in the reversed passes, and carry the state over in the others.</summary>
        public bool ZeroOutputForMask => Reverse;

        public Layer(RecurrentCell cell, bool reverse, bool returnSequences, int seed, int batch = RecurrentTests.Batch, int units = RecurrentTests.Units)
        {
            (Cell, Reverse, ReturnSequences, Batch, Units) = (cell, reverse, returnSequences, batch, units);
            var random = new Random(seed);
            float[] Values(int count, float scale) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
            int gates = (cell == RecurrentCell.Lstm ? 4 : 3) * Units;
            Kernel = Values(Features * gates, 0.4f);
            RecurrentKernel = Values(Units * gates, 0.2f);
            Bias = Values(cell == RecurrentCell.Lstm ? gates : 2 * gates, 0.1f);
            Input = Values(Batch * Steps * Features, 1f);
            // Sample b keeps its first Steps - b % Steps steps (Keras' padded tails); sample 0 all of them.
            Mask = Enumerable.Range(0, Batch * Steps).Select(i => i % Steps < Steps - i / Steps % Steps ? 1f : 0f).ToArray();
            InitialState = Values(Batch * Units, 0.5f);
            OutputGradient = Values(Batch * OutputWidth, 1f);
        }

        /// <summary>A workspace for <paramref name="batch"/> samples of this layer.</summary>
        public RecurrentWorkspace Workspace(int batch, bool forTraining = true) => new(Cell, batch, Steps, Features, Units, forTraining);

        /// <summary>The forward pass alone over the whole batch: its output and final state.</summary>
        public Result Predict(RecurrentWorkspace work) => Forward(work, Batch, Input, Mask, InitialState);

        /// <summary>
        /// The forward pass alone over the first <paramref name="batch"/> samples, with other kernels where given and with
        /// kernels packed ahead where given (an inference copy's).
        /// </summary>
        public Result PredictWith(RecurrentWorkspace work, int batch, float[]? kernel = null, float[]? recurrentKernel = null,
            PackedMatrix? packedKernel = null, PackedMatrix? packedRecurrentKernel = null) =>
            Forward(work, batch, Input, Mask, InitialState, kernel ?? Kernel, recurrentKernel ?? RecurrentKernel, packedKernel, packedRecurrentKernel);

        private Result Forward(RecurrentWorkspace work, int batch, float[] input, float[] mask, float[] initialState) =>
            Forward(work, batch, input, mask, initialState, Kernel, RecurrentKernel, null, null);

        private Result Forward(RecurrentWorkspace work, int batch, float[] input, float[] mask, float[] initialState, float[] kernel, float[] recurrentKernel,
            PackedMatrix? packedKernel, PackedMatrix? packedRecurrentKernel)
        {
            var result = new Result(batch, Units, OutputWidth, Kernel.Length, RecurrentKernel.Length, Bias.Length);
            Recurrent.Forward(work, input, mask, kernel, recurrentKernel, Bias, result.Output, Units, 0, batch, ReturnSequences, Reverse, ZeroOutputForMask,
                initialState: initialState, finalState: result.FinalState, packedKernel: packedKernel, packedRecurrentKernel: packedRecurrentKernel);
            return result;
        }

        /// <summary>Forward and backward over the whole batch of this layer's own data.</summary>
        public Result RunBatch(RecurrentWorkspace work) => Run(work, Batch, Input, Mask, OutputGradient, InitialState);

        public Result Run(RecurrentWorkspace work, int batch, float[] input, float[] mask, float[] outputGradient, float[] initialState)
        {
            var result = Forward(work, batch, input, mask, initialState);
            Recurrent.Backward(work, outputGradient, Units, 0, Kernel, RecurrentKernel, result.KernelGradient, result.RecurrentKernelGradient,
                result.BiasGradient, result.InputGradient, batch, ReturnSequences, Reverse, computeWeights: true, accumulateWeights: false,
                accumulateInput: false, ZeroOutputForMask, initialStateGradient: result.InitialStateGradient);
            return result;
        }
    }

    private sealed class Result(int batch, int units, int outputWidth, int kernel, int recurrentKernel, int bias)
    {
        public readonly float[] Output = new float[batch * outputWidth], FinalState = new float[batch * units];
        public readonly float[] InputGradient = new float[batch * Steps * Features], InitialStateGradient = new float[batch * units];
        public readonly float[] KernelGradient = new float[kernel], RecurrentKernelGradient = new float[recurrentKernel], BiasGradient = new float[bias];

        public IEnumerable<(string Name, float[] Values)> Named() => new[]
        {
            ("output", Output), ("final state", FinalState), ("input gradient", InputGradient), ("initial state gradient", InitialStateGradient),
            ("kernel gradient", KernelGradient), ("recurrent kernel gradient", RecurrentKernelGradient), ("bias gradient", BiasGradient),
        };
    }

    private static float[] Rows(float[] values, int sample, int width) => values.AsSpan(sample * width, width).ToArray();

    private static void Add(double[] sum, float[] values)
    {
        for (int i = 0; i < sum.Length; i++) sum[i] += values[i];
    }

    /// <summary>Within 1e-5 of the larger magnitude (at least 1): float32 sums of the same terms in another order or grouping.</summary>
    private static void AssertClose(string what, float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double scale = Math.Max(1, Math.Max(Math.Abs(expected[i]), Math.Abs(actual[i])));
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * scale, $"{what}[{i}]: expected {expected[i]}, got {actual[i]}");
        }
    }
}
