using System;
using System.Collections.Generic;
using System.Globalization;
using System.Collections.Immutable;
using System.Linq;
using ModelGen.Graph;

namespace ModelGen.Generator;

/// <summary>The plan every emit step reads: buffer names, weight offsets and which tensors need gradients.</summary>
internal static partial class ModelEmitter
{
    /// <summary>Names, buffers and gradient needs decided once, so every emit step agrees.</summary>
    private sealed class Plan
    {
        public Plan(ModelSpec model)
        {
            var userNames = new HashSet<string>(model.MemberNames.Concat(model.Layers.Select(l => l.Name)).Concat(model.Outputs.Select(o => o.Name)));
            Model = model = WithMemberStems(model, userNames);
            // Trainable tensors first, so the optimizer steps over one prefix of the buffer; moving statistics and frozen weights follow.
            var weights = model.Layers.SelectMany(layer => layer.Weights.Select(tensor => (Layer: layer, Tensor: tensor))).ToList();
            int offset = 0;
            foreach (var (layer, tensor) in weights.Where(w => w.Tensor.Trainable).Concat(weights.Where(w => !w.Tensor.Trainable)))
            {
                Tensors.Add(new Tensor(View(layer, tensor.Property), offset, tensor.Length, tensor.Trainable));
                offset += tensor.Length;
            }
            Nodes.AddRange(PlanNodes(model, model.Nodes, model.Outputs.Select(o => o.Node), prefix: "", userNames));
            foreach (var sub in model.SubModels)
            {
                string prefix = char.ToLowerInvariant(sub.Name[0]) + sub.Name.Substring(1);
                SubModels.Add(new SubModelPlan(sub, PlanNodes(model, sub.Nodes, sub.Outputs.Select(o => o.Node), prefix, userNames)));
            }
            int inputOffset = 0, outputOffset = 0, targetOffset = 0;
            foreach (int index in model.Inputs)
            {
                Inputs.Add(new InputPlan(Nodes[index].Spec, inputOffset, StemOf(Nodes[index].Spec.Name, InputPlan.StemSuffixes, userNames)));
                inputOffset += Nodes[index].Spec.Size;
            }
            foreach (var output in model.Outputs)
            {
                Outputs.Add(new OutputPlan(output, Nodes[output.Node], outputOffset, targetOffset, StemOf(output.Name, OutputPlan.StemSuffixes, userNames)));
                outputOffset += output.Size;
                targetOffset += output.TargetSize;
            }
            readers = ReaderCounts(Computed);
            MarkRectified(Computed.ToList(), Outputs.Select(o => o.Node).ToList());
            foreach (var sub in SubModels) MarkRectified(sub.Computed.ToList(), sub.OutputNodes.ToList());
            PooledConvolutions = ModelEmitter.PooledConvolutions(Computed.ToList(), readers, Outputs.Select(o => o.Node).ToList());
            NormalizedConvolutions = ModelEmitter.NormalizedConvolutions(Computed.ToList(), readers, Outputs.Select(o => o.Node).ToList());
            DensePairs = ModelEmitter.DensePairs(Computed.ToList(), readers);
            foreach (var (conv, pool) in PooledConvolutions.Where(p => p.Key.Is(LayerKind.Conv2D)).Select(p => (p.Key, p.Value)))
            {
                if (Cropped(conv, pool) is (int height, int width)) croppedFloats.Add(conv, height * width * conv.Spec.Shape[2]);
            }
            foreach (var output in Outputs.Where(TakesSoftmax)) derivativeTakenBy.Add(output.Node, null);
            foreach (var pool in Computed.Where(TakesRelu)) derivativeTakenBy.Add(pool.Inputs[0], pool);
            foreach (var pool in Computed.Where(TakesKernelGradient))
            {
                var conv = pool.Inputs[0];
                kernelGradientPools.Add(conv, pool);
                conv.KernelGradientReadsInput = true;
            }
            foreach (var conv in Computed.Where(n => n.Layer is { Kind: LayerKind.Conv2D, KernelHeight: 1, KernelWidth: 1, Strides: 1 } && !croppedFloats.ContainsKey(n)))
                conv.PatchesAreInput = true;
            foreach (var conv in Computed.Where(n => n.Is(LayerKind.Conv2D) && !n.PatchesAreInput && !kernelGradientPools.ContainsKey(n) && !croppedFloats.ContainsKey(n)
                && KernelGradientFromInput(n.Layer!)))
                conv.KernelGradientReadsInput = true;
            // An Embedding that only a GlobalAveragePooling1D reads (its mask too) is averaged where its table rows lie.
            foreach (var mean in Computed.Where(n => n.Is(LayerKind.GlobalAveragePooling1D) && n.Inputs[0].Is(LayerKind.Embedding)))
            {
                var embedding = mean.Inputs[0];
                if (Readers(embedding) == 1 && !IsOutput(embedding) && Computed.All(n => n.MaskSource != embedding || n == embedding || n == mean))
                    embedding.AveragedBy = mean;
            }
            // An UpSampling2D that only a Conv2D reads has its gradient summed over its blocks by that convolution's transposed
            // convolution, as each row is computed: the upsampled gradient is never written.
            foreach (var conv in Computed.Where(n => n.Is(LayerKind.Conv2D) && n.Inputs[0].Is(LayerKind.UpSampling2D)))
            {
                var upsampling = conv.Inputs[0];
                if (Readers(upsampling) != 1 || IsOutput(upsampling)) continue;
                if (upsampling.NeedsGradient && NeedsPatchGradient(conv)) upsampling.GradientSummedBy = conv;
                // Where it lays its planes out row by row (and takes its kernel gradient from a padded copy of each sample, not
                // from patches), it reads the upsampling's input itself: the upsampled image is never written.
                var layer = conv.Layer!;
                if (conv.KernelGradientReadsInput && KernelGradientPool(conv) is null && !PooledConvolutions.ContainsKey(conv)
                    && Kernels.SharedRules.ConvolvesPlanar(layer.Channels, layer.Strides, PatchFloats(layer)))
                    upsampling.UpsampledBy = conv;
            }
            user = (userNames, model.UserMethods.ToLookup(m => m.Name, m => (m.Least, m.Most)));
            RowRuns = ModelEmitter.RowRuns(Computed.ToList(), DensePairs).Select(run => run with { Method = MethodName(run.OwnMethod, run.MethodParameters) }).ToList();
            MarkNormalizedSums(Computed.ToList(), Outputs.Select(o => o.Node).ToList(), RowRuns);
            foreach (var sub in SubModels) MarkNormalizedSums(sub.Computed.ToList(), sub.OutputNodes.ToList(), Array.Empty<RowRun>());
            MarkResidualSums(Computed.ToList(), Outputs.Select(o => o.Node).ToList(), readers, RowRuns, DensePairs, PooledConvolutions, NormalizedConvolutions);
            foreach (var sub in SubModels)
            {
                var blocks = ForwardBlocks.OfSubModel(model.ClassName, sub.Computed, sub.OutputNodes);
                MarkResidualSums(sub.Computed.ToList(), sub.OutputNodes.ToList(), ReaderCounts(sub.Computed), Array.Empty<RowRun>(),
                    blocks.Pairs, blocks.PooledConvolutions, blocks.NormalizedConvolutions);
            }
            int inputs = Inputs.Count, stepped = Packed ? Inputs.Count + Outputs.Count : 2;
            ForwardMethod = KeyedDropouts.Any() ? MethodName("Forward", inputs + 2, inputs + 3) : MethodName("Forward", inputs + 2);
            BackwardMethod = MethodName("Backward", inputs + 1);
            StepMethod = MethodName("Step", stepped + 2);
            TrainPartMethod = MethodName("TrainPart", 5);
            UpdateStatisticsMethod = MethodName("UpdateMovingStatistics", 0);
            PlanGradients();
            PlanInferenceValues();
        }

        /// <summary>Forward's runs of blocks over the same rows, each one method over a range of rows (ModelEmitter.RowRuns).</summary>
        public IReadOnlyList<RowRun> RowRuns { get; }

        /// <summary>The generated private methods' names (<see cref="MethodName"/>).</summary>
        public string ForwardMethod { get; }
        public string BackwardMethod { get; }
        public string StepMethod { get; }
        public string TrainPartMethod { get; }
        public string UpdateStatisticsMethod { get; }

        /// <summary>The names of the user's class (its members, layers and outputs), and the counts of arguments its methods take, by name.</summary>
        private readonly (HashSet<string> Names, ILookup<string, (int Least, int Most)> Methods) user;

        /// <summary>
        /// A generated private method's name: its own, or "Model" and its own (ModelForward) where the user's class has a
        /// member of that name that is no method, or a method that takes as many arguments as one of <paramref name="arities"/>,
        /// our calls' counts of arguments (its optional and params parameters counted): of the same parameters it would be
        /// declared twice, of others it could take our calls. The user's other overloads (a graph method Forward(Tensor))
        /// leave it its name.
        /// </summary>
        private string MethodName(string name, params int[] arities) => FirstFree(name, "Model" + name, choice => choice == name
            ? user.Names.Contains(name) && (!user.Methods.Contains(name) || arities.Any(a => user.Methods[name].Any(m => m.Least <= a && a <= m.Most)))
            : user.Names.Contains(choice) || ClaimedNames.Declared.Contains(choice));

        /// <summary>
        /// Marks each BatchNormalization or element-wise merge (not Average: its scale comes after) that only a ReLU reads, and
        /// that is no output, with that ReLU (<see cref="NodePlan.RectifiedBy"/>): Keras' Conv2D, BatchNormalization,
        /// Activation('relu'), and a residual block's Add then ReLU. Its pass takes max(y, 0) before each store, in training
        /// (the normalization's and the merge's backward passes read their inputs, the ReLU's its own output) and at inference
        /// (where a convolution before a normalization applies both), so its own output is never written and read back.
        /// </summary>
        private static void MarkRectified(List<NodePlan> nodes, List<NodePlan> outputs)
        {
            var readers = ReaderCounts(nodes);
            foreach (var relu in nodes.Where(n => n.IsRelu))
            {
                var source = relu.Inputs[0];
                bool takesRelu = source.Is(LayerKind.BatchNormalization)
                    || source.Spec is { Kind: NodeKind.Merge, Merge: MergeOperation.Add or MergeOperation.Subtract or MergeOperation.Multiply or MergeOperation.Maximum or MergeOperation.Minimum };
                if (takesRelu && readers[source] == 1 && !outputs.Contains(source)) source.RectifiedBy = relu;
            }
        }

        /// <summary>
        /// Marks each Add of two values that only a LayerNormalization reads, and that is no output, with that normalization
        /// (<see cref="NodePlan.NormalizedBy"/>): a Transformer's residual connection and the normalization after it. The
        /// normalization's pass makes the sum as it first reads it (LayerNorm.Forward of the two values), writing it still for
        /// the backward pass: one pass over the rows fewer. Both in one row run or neither in one: a run's part makes only its rows.
        /// </summary>
        private static void MarkNormalizedSums(List<NodePlan> nodes, List<NodePlan> outputs, IReadOnlyList<RowRun> runs)
        {
            var readers = ReaderCounts(nodes);
            int RunOf(NodePlan node)
            {
                for (int r = 0; r < runs.Count; r++)
                    if (runs[r].Nodes.Contains(node)) return r;
                return -1;
            }
            foreach (var norm in nodes.Where(n => n.Is(LayerKind.LayerNormalization)))
            {
                var sum = norm.Inputs[0];
                if (sum.Spec is { Kind: NodeKind.Merge, Merge: MergeOperation.Add } && sum.Inputs.Count == 2 && readers[sum] == 1 && !outputs.Contains(sum)
                    && RunOf(sum) == RunOf(norm))
                    sum.NormalizedBy = norm;
            }
        }

        /// <summary>
        /// Marks each Add of two values that alone reads a BatchNormalization its convolution applies at inference
        /// (<see cref="NodePlan.ResidualSum"/>), where the Add's other operand is ready by the normalization's block (the sum is
        /// written there) and neither is in a row run: a ResNet block's residual connection, whose Add and ReLU then cost no
        /// pass of their own over the block's output, neither at inference nor while training. Not an Add a LayerNormalization
        /// makes, nor an output's normalization. Over the model's blocks or a sub-model's, with their fusions.
        /// </summary>
        private static void MarkResidualSums(List<NodePlan> computed, List<NodePlan> outputs, Dictionary<NodePlan, int> readers, IReadOnlyList<RowRun> runs,
            Dictionary<NodePlan, DensePair> pairs, Dictionary<NodePlan, NodePlan> pooled, Dictionary<NodePlan, NodePlan> normalized)
        {
            var inRuns = new HashSet<NodePlan>(runs.SelectMany(r => r.Nodes));
            foreach (var norm in computed.Where(n => n.Is(LayerKind.BatchNormalization) && normalized.ContainsKey(n)))
            {
                if (readers[norm] != 1 || outputs.Contains(norm) || inRuns.Contains(norm)) continue;
                var sum = computed.FirstOrDefault(n => n.Inputs.Contains(norm));
                if (sum is not { Spec: { Kind: NodeKind.Merge, Merge: MergeOperation.Add } } || sum.Inputs.Count != 2 || sum.NormalizedBy is not null || inRuns.Contains(sum)) continue;
                var other = sum.OtherInput(norm);
                int at = computed.IndexOf(norm);
                // Its value, and the name it is read by (a Dropout's is declared in its block), both there before the normalization's
                // block; an input is in no block (index -1), there from the start.
                if (computed.IndexOf(other) >= at || InferenceStep(other.InferenceOwner, computed, pairs, pooled, normalized) >= at) continue;
                norm.ResidualSum = sum;
                sum.SummedBy = norm;
            }
        }

        /// <summary>
        /// Gradients by liveness, in one shared buffer. Backward runs one block per tensor, in reverse; a gradient lives from the
        /// first block that writes it (the losses write the outputs' before the first block) to the block that reads it, and
        /// gradients never live at the same time share floats (ArenaLayout). A gradient nothing writes lives throughout, so its
        /// floats stay the zeros they were allocated as. A block that would copy its gradient unchanged into an input's, as
        /// that gradient's first write, hands its floats over instead (<see cref="HandsOverGradient"/>).
        /// </summary>
        private void PlanGradients()
        {
            var touched = new Dictionary<NodePlan, (int First, int Last)>();
            var written = new HashSet<NodePlan>();
            // For the hand-overs, in half steps: a block changes its own gradient in place (an activation's derivative) at
            // 2 x step, and reads it and writes its inputs' through 2 x step + 1.
            var lastRead = new Dictionary<NodePlan, int>();
            var writes = new List<(NodePlan Owner, int Time)>();
            var candidates = new List<(NodePlan From, NodePlan To, int Time)>();
            void Touch(NodePlan tensor, int step, bool writes)
            {
                var owner = tensor.GradientOwner;
                if (!HasGradientBuffer(owner)) return;
                Widen(touched, owner, step);
                if (writes) written.Add(owner);
                else lastRead[owner] = Math.Max(lastRead.TryGetValue(owner, out int last) ? last : 0, 2 * step + 1);
            }
            foreach (var output in Outputs) Touch(output.Node, 0, writes: true);
            int step = 0;
            foreach (var node in Computed.Reverse().Where(n => n.HasBackwardBlock))
            {
                step++;
                // A block reads its tensor's gradient (and a recurrent layer its returned states') and writes its inputs'.
                Touch(node, step, writes: false);
                if (!KeepsItsGradient(node)) writes.Add((node.GradientOwner, 2 * step));
                if (KernelGradientPool(node) is { } pool) Touch(pool, step, writes: false); // the pooled gradient, at the winners
                foreach (var state in node.States.Where(HasGradientBuffer)) Touch(state, step, writes: false);
                for (int i = 0; i < node.Inputs.Count; i++)
                {
                    var input = node.GradientInput(i);
                    var owner = input.GradientOwner;
                    if (!input.NeedsGradient || !HasGradientBuffer(owner)) continue;
                    // Not from a gradient nothing writes: its floats must stay the zeros they were allocated as.
                    bool handsOver = !written.Contains(owner) && CopiesGradient(node, i) && HasGradientBuffer(node) && written.Contains(node.GradientOwner)
                        && Floats(owner) == Floats(node) && node.Inputs.Count(other => other.GradientOwner == owner) == 1;
                    if (handsOver) candidates.Add((node, owner, 2 * step + 1));
                    else writes.Add((owner, 2 * step + 1));
                    Touch(input, step, writes: true);
                }
            }
            var gradients = Buffered.Where(HasGradientBuffer).ToList();
            var placedWith = HandOvers(candidates, root => 2 * touched[root].First + 1, lastRead, writes);
            foreach (var member in placedWith)
            {
                Widen(touched, member.Value, touched[member.Key].First);
                Widen(touched, member.Value, touched[member.Key].Last);
            }
            (GradientFloats, SeparateGradientFloats, SharesGradients) = PlaceByLiveness(gradients, n => written.Contains(n) ? touched[n] : (0, step), GradientOffsets, placedWith: placedWith);
            if (SharesGradients)
            {
                foreach (var (from, to, _) in candidates.Where(c => placedWith.ContainsKey(c.To))) handOvers.Add((from, to));
            }
        }

        /// <summary>
        /// The hand-overs that keep every gradient's values, each taken to the tensor whose floats it shares (the first giver
        /// of a chain): a gradient handed over shares floats with its giver and with whatever that shares, so none of them may
        /// be written (added to, or changed in place) while another is still to be read: from the time its values arrive (its
        /// first write, or the hand-over) to its last read.
        /// </summary>
        private static Dictionary<NodePlan, NodePlan> HandOvers(List<(NodePlan From, NodePlan To, int Time)> candidates, Func<NodePlan, int> firstWrite,
            Dictionary<NodePlan, int> lastRead, List<(NodePlan Owner, int Time)> writes)
        {
            var placedWith = new Dictionary<NodePlan, NodePlan>();
            var groups = new Dictionary<NodePlan, List<(NodePlan Tensor, int Arrives)>>();
            foreach (var (from, to, time) in candidates)
            {
                var root = placedWith.TryGetValue(from, out var giver) ? giver : from;
                var group = groups.TryGetValue(root, out var members) ? members : new List<(NodePlan Tensor, int Arrives)> { (root, firstWrite(root)) };
                var trial = new List<(NodePlan Tensor, int Arrives)>(group) { (to, time) };
                bool keeps = writes.Where(write => trial.Any(member => member.Tensor == write.Owner)).All(write => trial.All(other =>
                    other.Tensor == write.Owner || write.Time < other.Arrives || write.Time > (lastRead.TryGetValue(other.Tensor, out int last) ? last : int.MaxValue)));
                if (!keeps) continue;
                groups[root] = trial;
                placedWith[to] = root;
            }
            return placedWith;
        }

        /// <summary>
        /// Whether a tensor's backward block only reads its gradient: merges, normalizations, reshapes, dropout, a Dense layer
        /// with no derivative to take and an activation that derives straight into its input's. The rest may change it in
        /// place (an activation's derivative, a recurrent or attention layer's workspace), as far as the hand-overs know.
        /// </summary>
        private bool KeepsItsGradient(NodePlan node) => node.Spec.Kind switch
        {
            NodeKind.Merge => true,
            NodeKind.Layer when node.Is(LayerKind.BatchNormalization) || node.Is(LayerKind.LayerNormalization) || node.Layer!.IsReshape || node.IsDropout => true,
            NodeKind.Layer when node.Is(LayerKind.Dense) => ActivationToUndo(node, node.Layer!.Activation) == Activation.Linear,
            _ => node.IsActivation && DerivesIntoInput(node),
        };

        /// <summary>
        /// Whether a tensor's backward block ends by copying its gradient, unchanged, into its <paramref name="input"/>'s: an
        /// Add's operands, a Subtract's first, an output's Flatten or Reshape, an activation whose derivative it takes in its
        /// own gradient (all but ReLU, sigmoid and tanh, whose derivatives go straight into the input's).
        /// </summary>
        public bool CopiesGradient(NodePlan node, int input) => node.Spec.Kind switch
        {
            NodeKind.Merge => node.Spec.Merge == MergeOperation.Add || node.Spec.Merge == MergeOperation.Subtract && input == 0,
            NodeKind.Layer when node.Layer!.IsReshape => true,
            _ => node.IsActivation && !DerivesIntoInput(node),
        };

        /// <summary>Activations whose backward writes the input's gradient from the output's in one pass (Activations.Backward's fused form).</summary>
        public static bool DerivesIntoInput(Activation activation) => activation is Activation.Relu or Activation.Sigmoid or Activation.Tanh;

        /// <summary>Whether an Activation layer's or function's block derives into its input's gradient (the derivative it has left to take).</summary>
        private bool DerivesIntoInput(NodePlan activation) => DerivesIntoInput(ActivationToUndo(activation, activation.TrailingActivation!.Value));

        /// <summary>
        /// Whether <paramref name="node"/>'s block hands its gradient's floats to <paramref name="input"/> as that input's
        /// gradient rather than copying them (<see cref="PlanGradients"/>): the two share one offset, and the block writes
        /// nothing for that input.
        /// </summary>
        public bool HandsOverGradient(NodePlan node, NodePlan input) => handOvers.Contains((node, input.GradientOwner));

        private readonly HashSet<(NodePlan From, NodePlan To)> handOvers = new();

        /// <summary>Widens a tensor's span of steps to take in <paramref name="step"/>.</summary>
        private static void Widen(Dictionary<NodePlan, (int First, int Last)> spans, NodePlan tensor, int step) =>
            spans[tensor] = spans.TryGetValue(tensor, out var span) ? (Math.Min(span.First, step), Math.Max(span.Last, step)) : (step, step);

        /// <summary>
        /// Places <paramref name="tensors"/>, each live over its span of steps, in one shared buffer (ArenaLayout), their offsets
        /// into <paramref name="offsets"/>: the floats per sample the buffer spans, those one buffer per tensor would take, and
        /// whether they share at all. They do not where the shared buffer would be no smaller: each offset is a whole cache line
        /// a sample, so tensors of a few floats a sample take more floats shared than apart (an LSTM of 4 units and a Dense 3,
        /// 32 against 7). Then every tensor keeps a buffer of its own (the offsets stay, naming the tensors), and the first
        /// count is the second. A tensor <paramref name="placedWith"/> names takes the offset of the one it names, whose span
        /// must take in its own.
        /// </summary>
        private (int Shared, int Separate, bool Shares) PlaceByLiveness(List<NodePlan> tensors, Func<NodePlan, (int First, int Last)> span, Dictionary<NodePlan, int> offsets,
            Dictionary<NodePlan, ulong>? runs = null, Dictionary<NodePlan, NodePlan>? placedWith = null)
        {
            var own = tensors.Where(n => placedWith is null || !placedWith.ContainsKey(n)).ToList();
            var lifetimes = own.Select(n => new ArenaLayout.Lifetime(Floats(n), span(n).First, span(n).Last, runs is not null && runs.TryGetValue(n, out var marks) ? marks : 0)).ToList();
            var placed = ArenaLayout.Place(lifetimes, FloatsPerLine, out int arena);
            for (int t = 0; t < own.Count; t++) offsets[own[t]] = placed[t];
            foreach (var member in placedWith ?? new()) offsets[member.Key] = offsets[member.Value];
            int separate = tensors.Sum(Floats);
            return arena < separate ? (arena, separate, true) : (separate, separate, false);
        }

        /// <summary>
        /// An inference copy's values by liveness, in one shared buffer (a model that trains keeps every value apart: backward
        /// reads them). Forward runs one block per tensor; a value lives from the block that writes it to the last that reads
        /// it, the outputs to the end (the caller reads them). A pair of dense layers writes both its values in the second's
        /// block, a pooled convolution its own in its pooling's, a normalized convolution its normalization's in that one's (or
        /// the Add after it, <see cref="NodePlan.ResidualSum"/>, reading the Add's other operand there), a normalization or a
        /// merge its ReLU's in its own, a LayerNormalization the Add it normalizes in its own (reading the Add's operands
        /// there), a recurrent layer its returned states in its own; dropout and Flatten read their input's floats at
        /// inference, so their readers keep that alive. A pooled convolution's output, which most kernels never write, stays a
        /// buffer of its own (ModelBuffers.PooledConvolution); a normalized convolution's, written only while training, and a
        /// value never written (<see cref="NodePlan.IsNeverWritten"/>) have none.
        /// </summary>
        private void PlanInferenceValues()
        {
            var computed = Computed.ToList();
            int StepOf(NodePlan node) => InferenceStep(node, computed, DensePairs, PooledConvolutions, NormalizedConvolutions);
            var touched = new Dictionary<NodePlan, (int First, int Last)>();
            void Touch(NodePlan tensor, int step)
            {
                var owner = tensor.InferenceOwner;
                if (SharesInferenceValue(owner)) Widen(touched, owner, step);
            }
            foreach (var node in computed)
            {
                int step = StepOf(node);
                Touch(node, step);
                for (int i = 0; i < node.Inputs.Count; i++) Touch(node.ValueInput(i), step);
            }
            foreach (var output in Outputs) Touch(output.Node, computed.Count);
            // A row run's two parts go through its blocks at once: its values may share floats only row for row (ArenaLayout.Lifetime.Runs).
            var runs = new Dictionary<NodePlan, ulong>();
            for (int r = 0; r < RowRuns.Count; r++)
            {
                foreach (var owner in RowRuns[r].Nodes.SelectMany(n => RowRun.ReadIn(n).Append(n).Append(n.RectifiedBy)).OfType<NodePlan>().Select(t => t.InferenceOwner))
                    runs[owner] = (runs.TryGetValue(owner, out var marks) ? marks : 0) | 1UL << (r % 64);
            }
            (ValueFloats, SeparateValueFloats, SharesValues) = PlaceByLiveness(computed.Where(touched.ContainsKey).ToList(), n => touched[n], ValueOffsets, runs);
        }

        /// <summary>
        /// The forward block, an index into <paramref name="computed"/>, that writes a tensor's value at inference
        /// (<see cref="PlanInferenceValues"/>): its own, or the block it is computed in, by the blocks' fusions.
        /// </summary>
        private static int InferenceStep(NodePlan node, List<NodePlan> computed, Dictionary<NodePlan, DensePair> pairs, Dictionary<NodePlan, NodePlan> pooled,
            Dictionary<NodePlan, NodePlan> normalized) =>
            pairs.TryGetValue(node, out var pair) ? computed.IndexOf(pair.Second)
            : node.Is(LayerKind.Conv2D) && pooled.TryGetValue(node, out var pool) ? computed.IndexOf(pool)
            : !node.Is(LayerKind.BatchNormalization) && normalized.TryGetValue(node, out var byNorm) ? computed.IndexOf(byNorm)
            : node.NormalizedBy is { } norm ? computed.IndexOf(norm)
            : node.SummedBy is { } normalization ? computed.IndexOf(normalization)
            : node.IsTakenByInput ? InferenceStep(node.Inputs[0], computed, pairs, pooled, normalized)
            : node.Spec.Kind == NodeKind.State ? computed.IndexOf(node.Inputs[0])
            : computed.IndexOf(node);

        /// <summary>
        /// Whether a tensor's value is a slice of an inference copy's shared values: its own floats, not a pooled or normalized
        /// convolution's, nor one never written.
        /// </summary>
        private bool SharesInferenceValue(NodePlan node) =>
            node.Spec.Kind != NodeKind.Input && !node.IsAlias && !node.IsDropout && !(node.Is(LayerKind.Conv2D) && PooledConvolutions.ContainsKey(node))
            && !IsNormalizedConvolution(node) && !node.IsNeverWritten;

        /// <summary>
        /// A convolution whose BatchNormalization it applies at inference (<see cref="NormalizedConvolutions"/>, which pairs
        /// each with the other, so the convolution is the side that is no normalization): its own output is written only while training.
        /// </summary>
        public bool IsNormalizedConvolution(NodePlan node) => !node.Is(LayerKind.BatchNormalization) && NormalizedConvolutions.ContainsKey(node);

        /// <summary>Each shared value's offset in an inference copy's values, in floats per sample (<see cref="PlanInferenceValues"/>).</summary>
        public Dictionary<NodePlan, int> ValueOffsets { get; } = new();
        /// <summary>Whether an inference copy's values share one buffer (<see cref="ValueOffsets"/>); else each has its own.</summary>
        public bool SharesValues { get; private set; }
        /// <summary>Floats per sample of an inference copy's shared values.</summary>
        public int ValueFloats { get; private set; }
        /// <summary>Floats per sample those values would take one buffer per tensor.</summary>
        public int SeparateValueFloats { get; private set; }

        /// <summary>The model's pooled convolutions and their poolings, each keyed by the other (ModelEmitter.PooledConvolutions).</summary>
        public Dictionary<NodePlan, NodePlan> PooledConvolutions { get; }

        /// <summary>The model's normalized convolutions and their BatchNormalizations, each keyed by the other (ModelEmitter.NormalizedConvolutions).</summary>
        public Dictionary<NodePlan, NodePlan> NormalizedConvolutions { get; }

        /// <summary>The model's pairs of dense layers run in one call, keyed by each layer of the pair (ModelEmitter.DensePairs).</summary>
        public Dictionary<NodePlan, DensePair> DensePairs { get; }

        /// <summary>
        /// Floats a sample of a tensor's value and of its gradient: its shape's, but a pooled convolution's only for the outputs
        /// its pooling reads (<see cref="Cropped"/>), which are all it computes.
        /// </summary>
        public int Floats(NodePlan node) => croppedFloats.TryGetValue(node, out int floats) ? floats : node.Spec.Size;

        private readonly Dictionary<NodePlan, int> croppedFloats = new();

        /// <summary>Offsets aligned to this many floats keep every gradient on a cache line, whatever the batch.</summary>
        private const int FloatsPerLine = 16;

        /// <summary>Each gradient's offset in the shared buffer, in floats per sample (times the batch capacity at run time).</summary>
        public Dictionary<NodePlan, int> GradientOffsets { get; } = new();
        /// <summary>Whether the gradients share one buffer (<see cref="GradientOffsets"/>); else each has its own.</summary>
        public bool SharesGradients { get; private set; }
        /// <summary>Floats per sample of the shared gradient buffer.</summary>
        public int GradientFloats { get; private set; }
        /// <summary>Floats per sample that the gradients would take one buffer per tensor (without the padding to cache lines).</summary>
        public int SeparateGradientFloats { get; private set; }

        public ModelSpec Model { get; }
        public List<NodePlan> Nodes { get; } = new();
        public IEnumerable<NodePlan> Computed => Nodes.Where(n => n.Spec.Kind != NodeKind.Input);
        /// <summary>Computed tensors that own buffers (an alias reads its input's).</summary>
        public IEnumerable<NodePlan> Buffered => Computed.Where(n => !n.IsAlias);
        public List<Tensor> Tensors { get; } = new();
        public List<InputPlan> Inputs { get; } = new();
        public List<SubModelPlan> SubModels { get; } = new();

        private static List<NodePlan> PlanNodes(ModelSpec model, IEnumerable<NodeSpec> nodes, IEnumerable<int> outputs, string prefix, ISet<string> userNames)
        {
            var outputSet = new HashSet<int>(outputs);
            var plans = new List<NodePlan>();
            foreach (var spec in nodes)
            {
                var layer = spec.Kind == NodeKind.Layer || (spec.Layer >= 0 && spec.Layer < model.Layers.Count) ? model.Layers[spec.Layer] : null;
                // A Flatten or Reshape changes only the shape: unless it is an output (whose buffer callers read), it reads its input's floats in place.
                bool alias = spec.Kind == NodeKind.Layer && layer!.IsReshape && !outputSet.Contains(plans.Count);
                plans.Add(new NodePlan(spec, layer, spec.Inputs.Select(i => plans[i]).ToList(), prefix, alias, userNames));
                if (spec.Mask >= 0) plans[plans.Count - 1].MaskSource = plans[spec.Mask];
                if (spec.Kind == NodeKind.State) plans[spec.Inputs[0]].States.Add(plans[plans.Count - 1]);
            }
            return plans;
        }
        public List<OutputPlan> Outputs { get; } = new();

        /// <summary>Several inputs or outputs: the generic row-per-sample API packs and unpacks them.</summary>
        public bool Packed => Inputs.Count > 1 || Outputs.Count > 1;

        /// <summary>
        /// Whether a training step may run as two parts of its batch, one per core, each on its own copy of the buffers
        /// (BatchParts): one input and one output, no sub-model (whose buffers a replica would copy for nothing), and only
        /// blocks that compute each row from that row alone: dense layers, activations, merges, reshapes, layer
        /// normalizations and dropout (each mask element a draw keyed by the step and by its index in the batch, so each part
        /// draws its rows of the batch's mask). Not a batch normalization in training (its statistics couple the rows) or the
        /// rest, whose cost the rule below does not follow.
        /// </summary>
        public bool TrainsInParts => !Packed && SubModels.Count == 0 && DenseProducts.Any() && Computed.All(node => node.Spec.Kind is NodeKind.Merge or NodeKind.Function
            || node.Is(LayerKind.Dense) || node.Is(LayerKind.Activation) || node.Is(LayerKind.Flatten) || node.Is(LayerKind.Reshape) || node.Is(LayerKind.LayerNormalization)
            || node.IsDropout);

        /// <summary>The dropout layers of a model that trains in parts, in forward order: each draws its step's mask key before the parts start.</summary>
        public IEnumerable<NodePlan> KeyedDropouts => TrainsInParts ? Computed.Where(node => node.IsDropout) : Enumerable.Empty<NodePlan>();

        /// <summary>The multiply-adds a sample takes in each dense layer's forward product (its backward's two take as many each).</summary>
        private IEnumerable<long> DenseProducts => Computed.Where(node => node.Is(LayerKind.Dense)).Select(node => (long)node.Spec.Size * node.Layer!.InputSize);

        /// <summary>The multiply-adds a sample takes in the dense layers' forward products: a step's work, a third of it.</summary>
        public long MultiplyAddsPerSample => DenseProducts.Sum();

        /// <summary>The multiply-adds a sample takes in the model's largest dense layer: the step's largest product is the batch times this.</summary>
        public long LargestProductPerSample => DenseProducts.DefaultIfEmpty(0).Max();

        public string InputParameters => string.Join(", ", Inputs.Select(i => $"ReadOnlySpan<float> {i.Spec.Name}"));

        /// <summary>
        /// A gradient buffer where backward reaches: tensors after something that learns, and the outputs (the losses write
        /// theirs); not a convolution that reads only its pooling's gradient (<see cref="ReadsOnlyPooledGradient"/>).
        /// </summary>
        public bool HasGradientBuffer(NodePlan node) => (node.NeedsGradient || IsOutput(node)) && !ReadsOnlyPooledGradient(node) && node.AveragedBy is null && !node.ReadsReluGradient
            && node.GradientSummedBy is null;

        /// <summary>
        /// A convolution that takes its kernel gradient at its pooling's winners and either passes no gradient on or takes its
        /// input gradient there too: nothing writes or reads its own gradient.
        /// </summary>
        private bool ReadsOnlyPooledGradient(NodePlan conv) =>
            KernelGradientPool(conv) is not null && (!conv.Inputs[0].NeedsGradient || TakesInputGradientAtWinners(conv));

        private bool IsOutput(NodePlan node) => Outputs.Any(o => o.Node == node);

        /// <summary>How many times the model's blocks read this tensor.</summary>
        private int Readers(NodePlan node) => readers.TryGetValue(node, out int count) ? count : 0;

        private readonly Dictionary<NodePlan, int> readers;

        /// <summary>
        /// How many times these blocks read each tensor (a tensor none reads is absent): the model's blocks for the plan, a
        /// sub-model's own for its forward body.
        /// </summary>
        public static Dictionary<NodePlan, int> ReaderCounts(IEnumerable<NodePlan> blocks) =>
            blocks.SelectMany(n => n.Inputs).GroupBy(i => i).ToDictionary(g => g.Key, g => g.Count());

        /// <summary>
        /// Tensors whose block leaves its activation's derivative to a later step, and that step: null for the loss
        /// (<see cref="TakesSoftmax"/>), else the max pooling that takes a ReLU's (<see cref="TakesRelu"/>).
        /// </summary>
        private readonly Dictionary<NodePlan, NodePlan?> derivativeTakenBy = new();

        /// <summary>
        /// Whether this output's loss takes its gradient through the output's softmax (Losses.ComputeThroughSoftmax), so the
        /// backward block skips the softmax's own pass: a categorical cross-entropy (over the last axis, as the softmax) on a
        /// block that ends in a softmax, which no other block reads (its gradient is the loss's alone).
        /// </summary>
        private bool TakesSoftmax(OutputPlan output) =>
            output.Spec.Loss is Loss.CategoricalCrossentropy or Loss.SparseCategoricalCrossentropy
            && output.Node.TrailingActivation == Activation.Softmax
            && Readers(output.Node) == 0;

        public bool SoftmaxInLoss(OutputPlan output) => derivativeTakenBy.TryGetValue(output.Node, out var by) && by is null;

        /// <summary>
        /// Whether this pooling takes its input's ReLU derivative in its own backward pass. A max pooling takes it on its own,
        /// four to a window times smaller, gradient: max pooling commutes with ReLU, and the winner's ReLU output is the pooled
        /// value, so <c>relu'</c> at every pixel a gradient reaches is <c>pooled &gt; 0</c> (the gradient everywhere else is
        /// zero; the small CNN's conv1: two passes over 5.5 MB become two over 1.4 MB). A global average takes it as it spreads
        /// each share over the pixels, reading the ReLU's output (SequencePooling.AverageBackward's rectified: a ResNet's last
        /// ReLU, one pass over 4 MB at batch 32, not two). Its input must end in a ReLU and have no other reader, so the
        /// pooling's gradient is all of its gradient; not an Embedding's mean (it has no ReLU).
        /// </summary>
        private bool TakesRelu(NodePlan pool) =>
            (pool.UsesWinners || pool.Layer is { IsMean: true }) && pool.HasBackwardBlock && pool.Inputs[0] is var source
            && source.TrailingActivation == Activation.Relu && source.HasBackwardBlock
            && Readers(source) == 1 && !IsOutput(source);

        /// <summary>The tensor whose ReLU derivative this pooling's backward block takes, if any (<see cref="TakesRelu"/>).</summary>
        public NodePlan? ReluTakenBy(NodePlan pool) =>
            derivativeTakenBy.TryGetValue(pool.Inputs[0], out var by) && by == pool ? pool.Inputs[0] : null;

        /// <summary>
        /// Whether the pooling that took this tensor's ReLU derivative also sums its bias gradient, over the pooled gradient
        /// (the same sum: the pooling sends every gradient to one pixel). For layers whose bias gradient is that column sum,
        /// unshared, so the bias gradient is written once.
        /// </summary>
        public bool BiasTakenByPool(NodePlan node) =>
            derivativeTakenBy.TryGetValue(node, out var by) && by is { UsesWinners: true } && node.Layer is { Trainable: true, UseBias: true } layer
            && layer.Kind is LayerKind.Dense or LayerKind.Conv2D or LayerKind.Conv2DTranspose && !IsShared(layer);

        /// <summary>Convolutions whose kernel gradient is taken at the winners of the max pooling that reads them, and that pooling.</summary>
        private readonly Dictionary<NodePlan, NodePlan> kernelGradientPools = new();

        /// <summary>
        /// Whether this max pooling's gradient and winners give its input convolution's kernel gradient directly
        /// (Convolution.KernelGradientAtWinners): only the winners' patches contribute, a quarter of the dense product's
        /// multiply-adds behind a 2x2 pooling, one pixel's in a whole image's behind a global one. For a trainable, unshared
        /// Conv2D whose ReLU and bias gradient the pooling already takes (<see cref="TakesRelu"/>), so nothing else reads its own
        /// gradient but the input gradient, where the multiply-adds saved outweigh the dearer ones (<see cref="WinnersPay"/>).
        /// </summary>
        private bool TakesKernelGradient(NodePlan pool) =>
            pool.UsesWinners && ReluTakenBy(pool) is { Layer: { Kind: LayerKind.Conv2D, Trainable: true } layer } conv
            && !IsShared(layer) && (!layer.UseBias || BiasTakenByPool(conv))
            && (WinnersPay(Pixels(conv), Pixels(pool), PatchFloats(layer)) || NarrowWinnersPay(layer, pool));

        /// <summary>
        /// Whether the kernel gradient at the winners beats the dense route (the gradient scattered to the winners, then
        /// patchesᵀ · gradient over every pixel). The dense product does pixels / pooled pixels times the multiply-adds, but
        /// runs nearer the core's peak: on a Zen 3 (64 samples, one core) the winners' cost about six times as much each for
        /// patches shorter than a stretch of <see cref="WinnersStretchFloats"/> floats (9 to 54 floats, 2x2 and 3x3 poolings)
        /// and two to three times as much from a stretch on (72 and 288). Behind a 2x2 pooling: patches of at least 64 floats
        /// (conv2 of the small CNN, 288 floats: 4.7 -> 2.3 ms; its conv1, nine floats, 0.9 -> 1.7 ms, so not); behind a 3x3
        /// pooling from about 27; behind a global pooling of at least 29 pixels, any.
        /// </summary>
        private static bool WinnersPay(int pixels, int pooledPixels, int patchFloats) =>
            (long)pixels * Math.Min(patchFloats, WinnersStretchFloats) >= 4L * WinnersStretchFloats * pooledPixels;

        /// <summary>Eight AVX2 vectors: the stretch of a patch row the kernel sums in registers.</summary>
        private const int WinnersStretchFloats = 64;

        /// <summary>
        /// Patches of at most nine floats (a 3x3 kernel over one channel) under whole 2x2 windows, which the kernel gradient
        /// at the winners takes its narrow route for (Convolution.TakesNarrowRoute: filters in lanes, the nine taps in
        /// registers), and which beats the dense route there: the small CNN's conv1 (64 samples, two cores) 0.46 -> 0.33 ms,
        /// 0.11-0.15 ms since a 3x3 kernel at stride 1 picks its winners' taps, and the scattered gradient is never written.
        /// </summary>
        private static bool NarrowWinnersPay(LayerSpec conv, NodePlan pool) =>
            PatchFloats(conv) <= 9 && pool.Layer is { Kind: LayerKind.MaxPooling2D, KernelHeight: 2, KernelWidth: 2, Strides: 2 } pooling
            && (pooling.Padding == Padding.Valid || pooling.InputShape[0] % 2 == 0 && pooling.InputShape[1] % 2 == 0);

        /// <summary>
        /// Whether a Conv2D takes its kernel gradient from its input, keeping no patches: more than four filters (in the lanes,
        /// a kernel of at most SharedRules.LaneFilterKernelFloats), or at most four over at least eight channels (channels in
        /// the lanes, the bits of the patches' product), with the plan's exclusions (not pointwise, not at a pooling's
        /// winners, not cropped), as the runtime's Convolution.TakesKernelGradientFromInput admits. The autoencoder's last layer (16 channels to one filter) at batch
        /// 128: 58 MB of patches no longer written and read; its kernel gradient 2.7 -> 0.4 ms, its training forward pass 3.2
        /// -> 0.55 ms; the ResNet block's 32 to 32 filters at batch 32: 38 MB a layer, kernel gradient 5.0 -> 2.85 ms, forward
        /// (then direct) 4.6 -> 2.85 ms (console harness, two cores).
        /// </summary>
        private static bool KernelGradientFromInput(LayerSpec conv) =>
            Kernels.SharedRules.TakesKernelGradientFromInput(conv.Channels, conv.InputShape[2], PatchFloats(conv), pointwise: conv is { KernelHeight: 1, KernelWidth: 1, Strides: 1 });

        /// <summary>
        /// A Conv2D of at most four filters, which the runtime convolves with pixels in the lanes and whose input gradient it
        /// sums in place, writing no patch gradients (Convolution.FewFilters.cs).
        /// </summary>
        public static bool HasFewFilters(LayerSpec conv) => conv.Channels <= Kernels.SharedRules.FewFilters;

        /// <summary>Floats of a Conv2D's patch: its kernel's rows (kernel height x width x input channels).</summary>
        internal static int PatchFloats(LayerSpec conv) => conv.KernelHeight * conv.KernelWidth * conv.InputShape[2];

        /// <summary>Pixels of an image tensor (height x width); one for a global pooling's output.</summary>
        private static int Pixels(NodePlan node) => node.Spec.Shape.Count == 3 ? node.Spec.Shape[0] * node.Spec.Shape[1] : 1;

        /// <summary>
        /// Whether a convolution whose kernel gradient is taken at its pooling's winners takes its input gradient there too
        /// (Convolution.InputGradientAtWinners: each pooled gradient times its filter's kernel, onto the pixels under its
        /// winner's window), where the pooling keeps at most one pixel in <see cref="InputWinnersRatio"/>. Adding a winner's
        /// kernel onto the image costs far more per multiply-add than the dense route (the gradient scattered, then the
        /// transposed convolution over every position), which behind 2x2 poolings won every shape measured.
        /// </summary>
        public bool TakesInputGradientAtWinners(NodePlan conv) =>
            KernelGradientPool(conv) is { } pool && conv.Inputs[0].NeedsGradient && Pixels(conv) >= InputWinnersRatio * Pixels(pool);

        /// <summary>
        /// Pixels per pooled pixel from which the input gradient at the winners beat the dense route on a Zen 3 (64 samples,
        /// one core; dense/winners): 2x2 poolings 0.18-0.91, 3x3 0.42-2.2, 4x4 0.66 (nine-float patches, which the kernel
        /// gradient's rule leaves dense there) to 5.1, global 12-44.
        /// </summary>
        private const int InputWinnersRatio = 16;

        /// <summary>
        /// Whether this convolution's gradient, which its transposed convolution turns into its input's, is mostly zeros: its
        /// only reader is a max pooling that keeps at most one pixel in <see cref="ScatteredRatio"/> and scatters its gradient
        /// to the winners, and no softmax mixes it after (an elementwise derivative keeps the zeros). Convolution.Transposed
        /// then takes the patch gradients from the nonzero values alone, with the same bits: the small CNN's conv2 (64 samples,
        /// two cores) 2.35 -> 0.97 ms.
        /// </summary>
        public bool GradientScattered(NodePlan conv) =>
            Readers(conv) == 1 && !IsOutput(conv) && conv.TrailingActivation != Activation.Softmax
            && Computed.FirstOrDefault(n => n.Inputs.Contains(conv)) is { UsesWinners: true } pool
            && Pixels(conv) >= ScatteredRatio * Pixels(pool);

        /// <summary>Pixels per pooled pixel from which a pooling's scattered gradient counts as mostly zeros: 2x2 poolings, 'same' ones of odd sizes included.</summary>
        private const int ScatteredRatio = 3;

        /// <summary>
        /// Conv2D scatters patch gradients to its input (unless it takes its input gradient at its pooling's winners, or its
        /// input gradient is one product, <see cref="InputGradientIsProduct"/>); Conv2DTranspose gathers its output gradient's
        /// patches for everything.
        /// </summary>
        public bool NeedsPatchGradient(NodePlan node) =>
            node.Is(LayerKind.Conv2D) ? node.Inputs[0].NeedsGradient && !TakesInputGradientAtWinners(node) && !InputGradientIsProduct(node)
            : node.Is(LayerKind.Conv2DTranspose) && node.NeedsGradient;

        /// <summary>
        /// A pointwise Conv2D's patch gradients are its input's gradient, each pixel's alone with nothing to sum, so that
        /// gradient is the product gradient · kernelᵀ, as a Dense layer's over every pixel; not where the gradient is a
        /// pooling's scattered winners, whose zeros the patch route skips.
        /// </summary>
        public bool InputGradientIsProduct(NodePlan conv) => conv.PatchesAreInput && !GradientScattered(conv);

        /// <summary>The max pooling at whose winners this convolution's kernel gradient is taken, if any (<see cref="TakesKernelGradient"/>).</summary>
        public NodePlan? KernelGradientPool(NodePlan conv) => kernelGradientPools.TryGetValue(conv, out var pool) ? pool : null;

        /// <summary>The activation whose derivative a block's backward pass applies first: Linear where the loss or a pooling took it.</summary>
        public Activation ActivationToUndo(NodePlan node, Activation activation) =>
            derivativeTakenBy.ContainsKey(node) ? Activation.Linear : activation;

        /// <summary>Where a block's activation derivative was taken instead, for its comment: "the loss's gradient", "pool1's gradient".</summary>
        public string TakenWith(NodePlan node) =>
            derivativeTakenBy.TryGetValue(node, out var by) && by is not null ? by.Title + "'s gradient" : "the loss's gradient";

        public bool IsShared(LayerSpec layer) => Nodes.Count(n => n.Layer == layer && n.Spec.Kind == NodeKind.Layer) > 1;

        /// <summary>The private span property over one weight tensor: Hidden1Kernel, Hidden1Bias.</summary>
        public static string View(LayerSpec layer, string tensor) => layer.MemberStem + tensor;

        /// <summary>
        /// The start of the names made from a tensor's, input's or output's name (hidden1Output, imageStaging, priceTargets):
        /// the name, unless one of them would repeat a name the user wrote (a layer 'encoderOutput' beside a layer
        /// 'encoder'), then the name and "Node" (encoderNodeOutput; a digit after, should that be taken too).
        /// </summary>
        public static string StemOf(string name, IReadOnlyList<string> suffixes, ISet<string> userNames) =>
            StemOf(name, "Node", stem => suffixes.Select(suffix => stem + suffix), userNames);

        /// <summary>The first of name, name + aside, name + aside + 2, ... none of whose names (<paramref name="namesOf"/>) is taken.</summary>
        private static string StemOf(string name, string aside, Func<string, IEnumerable<string>> namesOf, ISet<string> taken) =>
            FirstFree(name, name + aside, stem => namesOf(stem).Any(taken.Contains));

        /// <summary>A generated name where it is free, else the first free of <paramref name="aside"/>, aside + 2, aside + 3, ...</summary>
        private static string FirstFree(string name, string aside, Func<string, bool> taken)
        {
            string choice = name;
            for (int k = 1; taken(choice); k++) choice = k == 1 ? aside : aside + k;
            return choice;
        }

        /// <summary>
        /// The model with each layer's <see cref="LayerSpec.MemberStem"/>: the start of its weights' members (Hidden1Kernel,
        /// Hidden1KernelOffset, Hidden1KernelGradient, packedHidden1Kernel), its name capitalized, or that and "Layer" where
        /// one of those would repeat a name of the user's class (a property HiddenKernel), of the generated members, or of
        /// an earlier layer's (hidden beside Hidden or _hidden).
        /// </summary>
        private static ModelSpec WithMemberStems(ModelSpec model, ISet<string> userNames)
        {
            var taken = new HashSet<string>(userNames.Concat(ClaimedNames.Declared));
            var layers = model.Layers.Select(layer =>
            {
                IEnumerable<string> NamesOf(string stem) => layer.Weights.SelectMany(tensor =>
                    new[] { "", "Offset", "Length", "Gradient" }.Select(suffix => stem + tensor.Property + suffix).Append("packed" + stem + tensor.Property));
                string stem = StemOf(Capitalized(layer.Name), "Layer", NamesOf, taken);
                taken.UnionWith(NamesOf(stem));
                return layer with { MemberStem = stem };
            });
            return model with { Layers = layers.ToImmutableArray() };
        }

        /// <summary>A field's or tensor's name as the start of a member's: hidden1 -> Hidden1, _hidden1 -> Hidden1, _ -> _.</summary>
        public static string Capitalized(string name)
        {
            string trimmed = name.TrimStart('_');
            return trimmed.Length == 0 ? name : char.ToUpperInvariant(trimmed[0]) + trimmed.Substring(1);
        }
    }

    private sealed record Tensor(string View, int Offset, int Length, bool Trainable);

    private sealed record SubModelPlan(SubModelSpec Spec, List<NodePlan> Nodes)
    {
        /// <summary>The tensors its inference method computes, in order.</summary>
        public IEnumerable<NodePlan> Computed => Nodes.Where(n => n.Spec.Kind != NodeKind.Input);

        public IEnumerable<NodePlan> OutputNodes => Spec.Outputs.Select(o => Nodes[o.Node]);
    }

    /// <param name="Stem">The start of the input's buffer names (<see cref="Plan.StemOf"/>).</param>
    private sealed record InputPlan(NodeSpec Spec, int Offset, string Stem)
    {
        public static readonly string[] StemSuffixes = { "Staging" };
        public string Staging => Stem + "Staging";
    }

    /// <param name="Stem">The start of the output's targets' and loss's names (<see cref="Plan.StemOf"/>).</param>
    private sealed record OutputPlan(OutputSpec Spec, NodePlan Node, int Offset, int TargetOffset, string Stem)
    {
        public static readonly string[] StemSuffixes = { "Targets", "Loss" };
        public string Targets => Stem + "Targets";
        /// <summary>Parameter names in the typed overloads: the output's own name, and its targets.</summary>
        public string Parameter => Spec.Name;
        public string TargetParameter => Stem + "Targets";
        public string LossLocal => Stem + "Loss";
        /// <summary>The rows a loss reduces over its last axis for <paramref name="samples"/> samples: one per sample, or per step (pixel) of each.</summary>
        public string RowsOf(string samples) => Spec.Rows == 1 ? samples : $"{samples} * {Spec.Rows}";
    }

    private sealed class NodePlan
    {
        /// <param name="prefix">Empty for the model; a sub-model's camel-case name for its own buffers (encodeCodeOutput).</param>
        /// <param name="alias">The tensor is its input's floats under another shape: it has no buffers of its own.</param>
        /// <param name="userNames">The model's layer, input and output names, which its buffers' names must not repeat.</param>
        public NodePlan(NodeSpec spec, LayerSpec? layer, List<NodePlan> inputs, string prefix, bool alias, ISet<string> userNames)
        {
            Stem = Plan.StemOf(prefix.Length == 0 ? spec.Name : prefix + char.ToUpperInvariant(spec.Name[0]) + spec.Name.Substring(1), StemSuffixes, userNames);
            IsAlias = alias;
            Spec = spec;
            Layer = layer;
            Inputs = inputs;
            NeedsGradient = layer is { TrainableParameterCount: > 0 } || inputs.Any(i => i.NeedsGradient);
        }

        /// <summary>What the buffers named after a tensor add to its <see cref="Stem"/>.</summary>
        public static readonly string[] StemSuffixes =
            { "Output", "Gradient", "Mask", "Key", "Mean", "Variance", "InverseStd", "Patches", "Winners", "Window", "SequenceMask", "Workspace", "ForwardWorkspace", "BackwardWorkspace" };

        /// <summary>The start of the names of this tensor's buffers: its name (after its sub-model's), or that and "Node".</summary>
        private string Stem { get; }
        public NodeSpec Spec { get; }
        public LayerSpec? Layer { get; }
        public List<NodePlan> Inputs { get; }
        /// <summary>Whether anything up to and including this tensor has weights, so its gradient is worth computing.</summary>
        public bool NeedsGradient { get; }
        /// <summary>Whether backward has a block for this tensor: something before it learns, and it is neither an alias (its input's gradient) nor a returned state (its layer's block reads that).</summary>
        public bool HasBackwardBlock => NeedsGradient && !IsAlias && Spec.Kind != NodeKind.State && !(IsTakenByInput && Inputs[0].ReadsReluGradient) && GradientSummedBy is null;
        public bool IsDropout => Is(LayerKind.Dropout);
        /// <summary>The activation a block applies last (Dense, the convolutions, Activation layers and functions); null for other blocks.</summary>
        public Activation? TrailingActivation => Spec.Kind == NodeKind.Function ? Spec.Activation
            : Spec.Kind == NodeKind.Layer && Layer!.Kind is LayerKind.Dense or LayerKind.Conv2D or LayerKind.DepthwiseConv2D or LayerKind.Conv2DTranspose or LayerKind.Activation
                ? Layer.Activation : null;
        /// <summary>An Embedding with MaskZero or a Masking layer: the source of a sequence mask (not one averaged where it lies, whose pooling skips the padding itself).</summary>
        public bool CreatesMask => Spec.Kind == NodeKind.Layer && Spec.Mask >= 0 && (Is(LayerKind.Masking) || Is(LayerKind.Embedding)) && AveragedBy is null;
        /// <summary>
        /// The GlobalAveragePooling1D that alone reads this Embedding (set by the plan): it averages each sample's table rows
        /// where they lie, in both passes (EmbeddingKernel.MeanForward, MeanBackward), so the lookups and their gradient are
        /// never written (a bag of 200 words of 64 floats: 1.6 MB at batch 32).
        /// </summary>
        public NodePlan? AveragedBy { get; set; }
        /// <summary>A GlobalAveragePooling1D that averages its Embedding's table rows where they lie (<see cref="AveragedBy"/>).</summary>
        public bool AveragesTable => Is(LayerKind.GlobalAveragePooling1D) && Inputs[0].AveragedBy == this;
        /// <summary>
        /// The ReLU that alone reads this BatchNormalization or merge (set by the plan, <see cref="MarkRectified"/>): its pass
        /// takes the ReLU as it writes each value, into the ReLU's output, so its own output is never written.
        /// </summary>
        public NodePlan? RectifiedBy { get; set; }
        /// <summary>
        /// The LayerNormalization that alone reads this Add of two values (set by the plan, <see cref="MarkNormalizedSums"/>):
        /// its pass makes the sum as it first reads it, into this tensor's buffer, so this tensor's own block computes nothing.
        /// </summary>
        public NodePlan? NormalizedBy { get; set; }
        /// <summary>
        /// The Add of two values that alone reads this BatchNormalization, where a convolution applies the normalization at
        /// inference (set by the plan, <see cref="Plan.MarkResidualSums"/>): a ResNet block's conv2, norm2, Add(x, norm2), ReLU.
        /// The normalization's pass adds the Add's other operand and takes its ReLU as it stores each output, into the Add's (or
        /// its ReLU's) buffer: at inference the convolution's, as it computes them; while training BatchNorm's, after the
        /// convolution (the batch's statistics need all its outputs). This tensor is never written, nor is the Add's block run.
        /// </summary>
        public NodePlan? ResidualSum { get; set; }
        /// <summary>The BatchNormalization whose pass makes this Add (<see cref="ResidualSum"/>).</summary>
        public NodePlan? SummedBy { get; set; }
        /// <summary>
        /// A trainable BatchNormalization whose ReLU it takes (<see cref="RectifiedBy"/>) takes that ReLU's backward too: its
        /// block reads the ReLU's gradient where the normalized value (worked out again from its input) is positive
        /// (BatchNorm.TrainingBackward's relu), so neither the ReLU's block nor a gradient of its own exists.
        /// </summary>
        public bool ReadsReluGradient => RectifiedBy is not null && UsesBatchStatistics;
        /// <summary>
        /// The Conv2D that alone reads this UpSampling2D (set by the plan) and takes its backward: its transposed convolution
        /// sums each block's gradient into the upsampling's input as it computes each row (Convolution.Transposed's
        /// upsampledRows, upsampledColumns), so this tensor has neither a gradient buffer nor a backward block.
        /// </summary>
        public NodePlan? GradientSummedBy { get; set; }
        /// <summary>
        /// The tensor whose gradient this block's input <paramref name="i"/> receives: the input, or, where the input's
        /// gradient is summed by this block (<see cref="GradientSummedBy"/>), the upsampling's own input.
        /// </summary>
        public NodePlan GradientInput(int i) => Inputs[i].GradientSummedBy == this ? Inputs[i].Inputs[0] : Inputs[i];
        /// <summary>A Conv2D that sums the gradient of the UpSampling2D it reads into that layer's input (<see cref="GradientSummedBy"/>).</summary>
        public bool SumsUpsampledGradient => Inputs.Count == 1 && Inputs[0].GradientSummedBy == this;
        /// <summary>
        /// The Conv2D that alone reads this UpSampling2D (set by the plan) and reads its input in its place, each row and
        /// pixel repeated as it lays out its planes and pads each sample for its kernel gradient (Convolution.Forward's and
        /// KernelGradient's upsampledRows, upsampledColumns): this tensor is never written.
        /// </summary>
        public NodePlan? UpsampledBy { get; set; }
        /// <summary>A Conv2D that reads the UpSampling2D before it from that layer's input (<see cref="UpsampledBy"/>).</summary>
        public bool ReadsUpsampledInput => Inputs.Count == 1 && Inputs[0].UpsampledBy == this;
        /// <summary>
        /// The tensor whose value this block's input <paramref name="i"/> is read from: the input, or, where this block
        /// upsamples it as it reads (<see cref="UpsampledBy"/>), the upsampling's own input.
        /// </summary>
        public NodePlan ValueInput(int i) => Inputs[i].UpsampledBy == this ? Inputs[i].Inputs[0] : Inputs[i];
        /// <summary>
        /// The arguments by which a Conv2D's forward and kernel gradient read the UpSampling2D before it from that layer's
        /// input (<see cref="ReadsUpsampledInput"/>), and by which its transposed convolution sums that layer's gradient
        /// (<see cref="SumsUpsampledGradient"/>): its blocks' rows and columns; none where it does not.
        /// </summary>
        public string UpsampledValueArguments => ReadsUpsampledInput ? UpsampledBlocks : "";
        public string UpsampledGradientArguments => SumsUpsampledGradient ? UpsampledBlocks : "";
        private string UpsampledBlocks => $", upsampledRows: {Inputs[0].Layer!.Extents[0]}, upsampledColumns: {Inputs[0].Layer!.Extents[1]}";
        /// <summary>A two-input node's input other than <paramref name="input"/>: the residual an Add's normalization adds (<see cref="ResidualSum"/>).</summary>
        public NodePlan OtherInput(NodePlan input) => Inputs[0] == input ? Inputs[1] : Inputs[0];
        /// <summary>A ReLU its input's block takes (<see cref="RectifiedBy"/>): its own block computes nothing.</summary>
        public bool IsTakenByInput => Inputs.Count == 1 && Inputs[0].RectifiedBy == this;
        /// <summary>
        /// The buffer this tensor's forward pass writes: its own; rectified, its ReLU's; a normalization that makes the Add after
        /// it (<see cref="ResidualSum"/>), that Add's (or its ReLU's).
        /// </summary>
        public string WrittenTo => ResidualSum?.WrittenTo ?? RectifiedBy?.Output ?? Output;
        /// <summary>
        /// Whether this tensor's value is never written, another's pass computing it where it is read: an Embedding averaged in
        /// its table, an UpSampling2D its convolution reads upsampled, a value whose ReLU its pass takes, a normalization whose
        /// pass makes the Add after it.
        /// </summary>
        public bool IsNeverWritten => AveragedBy is not null || UpsampledBy is not null || RectifiedBy is not null || ResidualSum is not null;
        /// <summary>An Activation layer or an Ops function that takes the ReLU.</summary>
        public bool IsRelu => IsActivation && TrailingActivation == Activation.Relu;
        /// <summary>An Activation layer or an Ops function: a block that only applies its activation.</summary>
        public bool IsActivation => Spec.Kind == NodeKind.Function || Is(LayerKind.Activation);
        public string SequenceMask => Stem + "SequenceMask";
        /// <summary>A recurrent layer's returned states (h, then an LSTM's c), written by its block.</summary>
        public List<NodePlan> States { get; } = new();
        /// <summary>The tensor whose sequence mask this one carries (Embedding with MaskZero, Masking), if any.</summary>
        public NodePlan? MaskSource { get; set; }
        /// <summary>This tensor's step mask as a span argument: "default" when there is none.</summary>
        public string StepMask => MaskSource?.SequenceMask ?? "default";
        public string Workspace(string direction) => Stem + direction + "Workspace";
        /// <summary>ZeroPadding2D and UpSampling2D: a fixed linear map of each image, without weights.</summary>
        public bool IsResampling => Is(LayerKind.ZeroPadding2D) || Is(LayerKind.UpSampling2D);
        public bool Is(LayerKind kind) => Spec.Kind == NodeKind.Layer && Layer!.Kind == kind;
        /// <summary>Max poolings remember each maximum's position for the backward pass.</summary>
        public bool UsesWinners => Is(LayerKind.MaxPooling2D) || Is(LayerKind.GlobalMaxPooling2D);
        /// <summary>A trainable BatchNormalization normalises with, and keeps for backward and the moving averages, each batch's statistics.</summary>
        public bool UsesBatchStatistics => Is(LayerKind.BatchNormalization) && Layer!.Trainable;
        /// <summary>The last training batch's per-channel mean (BatchNormalization), or each row's mean (LayerNormalization).</summary>
        public string Mean => Stem + "Mean";
        public string Variance => Stem + "Variance";
        public string InverseStd => Stem + "InverseStd";
        /// <summary>
        /// Convolutions through im2col (Conv2D) or col2im (Conv2DTranspose) keep a patch matrix; not a Conv2D whose kernel
        /// gradient reads its taps from its input (<see cref="KernelGradientReadsInput"/>), as nothing else reads its patches,
        /// nor one whose patches would be its input itself (<see cref="PatchesAreInput"/>).
        /// </summary>
        public bool UsesPatches => Is(LayerKind.Conv2D) && !KernelGradientReadsInput && !PatchesAreInput || Is(LayerKind.Conv2DTranspose);
        /// <summary>
        /// A pointwise Conv2D (a 1x1 window at strides 1, computing every output): each patch is one pixel's channels, so the
        /// patch matrix would be a copy of the input, and the kernel gradient reads the input instead (set by the plan).
        /// </summary>
        public bool PatchesAreInput { get; set; }
        /// <summary>The patch rows the kernel gradient reads: the patches, the input they would copy, or none (the narrow route).</summary>
        public string PatchRows => KernelGradientReadsInput ? "default" : PatchesAreInput ? Inputs[0].TrainingSource : Patches;
        public string Patches => Stem + "Patches";
        /// <summary>The patches as a span argument: "default" for a convolution that keeps none.</summary>
        public string PatchesArgument => UsesPatches ? Patches : "default";
        /// <summary>
        /// A Conv2D whose kernel gradient reads the taps from its input (set by the plan): at its pooling's winners
        /// (Convolution.KernelGradientAtWinners), or the dense Convolution.KernelGradient.
        /// </summary>
        public bool KernelGradientReadsInput { get; set; }
        /// <summary>The one buffer every convolution's backward block uses for its patch gradients, sized for the largest.</summary>
        public const string PatchGradient = "patchGradients";
        public string Winners => Stem + "Winners";
        public string Window => Stem + "Window";
        public string Title => Spec.Name;
        public bool IsAlias { get; }
        public string Output => Stem + "Output";
        /// <summary>The buffer this tensor's gradient lives in: an alias shares its input's, a normalization that reads its ReLU's gradient that one.</summary>
        public string Gradient => GradientOwner == this ? Stem + "Gradient" : GradientOwner.Gradient;
        /// <summary>The tensor owning <see cref="Gradient"/>; '=' versus '+=' is decided per owner.</summary>
        public NodePlan GradientOwner => IsAlias ? Inputs[0].GradientOwner : ReadsReluGradient ? RectifiedBy!.GradientOwner : this;
        public string Mask => Stem + "Mask";
        /// <summary>A dropout's mask key for the step (a model that trains in parts: the replica's part draws the same mask).</summary>
        public string DropoutKey => Stem + "Key";

        /// <summary>The span holding this tensor in training mode (dropout active).</summary>
        public string TrainingSource => IsAlias ? Inputs[0].TrainingSource : Spec.Kind == NodeKind.Input ? Spec.Name : Output;

        /// <summary>What Forward's later blocks read: dropout blocks declare a local that is their input at inference.</summary>
        public string InferenceName => IsAlias ? Inputs[0].InferenceName : Spec.Kind == NodeKind.Input ? Spec.Name : IsDropout ? Stem : Output;

        /// <summary>The tensor whose floats hold this one at inference: dropout and aliases read their input's.</summary>
        public NodePlan InferenceOwner => IsDropout || IsAlias ? Inputs[0].InferenceOwner : this;
        /// <summary>The buffer holding this tensor after an inference pass.</summary>
        public string InferenceSource => InferenceOwner.TrainingSource;
    }
}
