using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using ModelGen.Graph;

namespace ModelGen.Generator;

/// <summary>The forward pass: one commented block per tensor, in topological order.</summary>
internal static partial class ModelEmitter
{
    private static void EmitForward(CodeWriter w, Plan plan)
    {
        bool keyed = plan.KeyedDropouts.Any();
        var blocks = new ForwardBlocks(plan.Model.ClassName, plan.DensePairs, plan.PooledConvolutions, plan.NormalizedConvolutions, InferenceOnly: false, keyed);
        w.Open($"private void {plan.ForwardMethod}({plan.InputParameters}, int batch, bool training{(keyed ? ", int firstRow = 0" : "")})");
        EmitForwardBody(w, blocks, plan.Computed, plan.RowRuns);
        w.Close();
        w.Line();
        foreach (var run in plan.RowRuns) EmitRowRun(w, blocks, run);
    }

    /// <summary>
    /// One block per tensor in topological order; shared by the model and its sub-models (inference only), whose outputs are
    /// read after it. Each of <paramref name="runs"/> (the model's) is one call where its first block would be.
    /// </summary>
    private static void EmitForwardBody(CodeWriter w, ForwardBlocks blocks, IEnumerable<NodePlan> computed, IReadOnlyList<RowRun> runs)
    {
        var inRuns = new HashSet<NodePlan>(runs.SelectMany(r => r.Nodes.Skip(1)));
        bool first = true;
        foreach (var node in computed.Where(n => !inRuns.Contains(n)))
        {
            if (!first) w.Line();
            first = false;
            if (runs.FirstOrDefault(r => r.First == node) is { } run) EmitRowRunCall(w, run);
            else blocks.Emit(w, node);
        }
    }

    /// <summary>
    /// What every forward block reads: the blocks fused with others (pairs of dense layers, pooled and normalized convolutions),
    /// found once for the whole pass, and where rows are counted: over the batch, or in a part of a row run's rows.
    /// </summary>
    /// <param name="KeyedDropout">A model that trains in parts: dropout masks come from the step's keys, at the batch's row <c>firstRow</c> on.</param>
    private sealed record ForwardBlocks(string ModelName, Dictionary<NodePlan, DensePair> Pairs, Dictionary<NodePlan, NodePlan> PooledConvolutions,
        Dictionary<NodePlan, NodePlan> NormalizedConvolutions, bool InferenceOnly, bool KeyedDropout, string? PartRows = null)
    {
        /// <summary>A sub-model's blocks (inference only), fused among its own nodes, whose <paramref name="outputs"/> are read after it.</summary>
        public static ForwardBlocks OfSubModel(string modelName, IEnumerable<NodePlan> computed, IEnumerable<NodePlan> outputs)
        {
            var nodes = computed.ToList();
            var read = outputs.ToList();
            // How many times each tensor is read: a layer fused with its one reader must have no other.
            var readers = Plan.ReaderCounts(nodes);
            return new ForwardBlocks(modelName, DensePairs(nodes, readers), ModelEmitter.PooledConvolutions(nodes, readers, read),
                ModelEmitter.NormalizedConvolutions(nodes, readers, read), InferenceOnly: true, KeyedDropout: false);
        }

        /// <summary>The rows of a block's tensor: the batch's (batch x its steps), or the part's.</summary>
        public string RowsOf(NodeSpec spec) => PartRows ?? Rows(spec).Rows;

        /// <summary>The floats of a block's tensor: the batch's, or the part's rows'.</summary>
        public string FloatsOf(NodeSpec spec) => PartRows is null ? $"batch * {spec.Size}" : $"{PartRows} * {Rows(spec).Columns}";

        /// <summary>The block that computes <paramref name="node"/>'s tensor.</summary>
        public void Emit(CodeWriter w, NodePlan node)
        {
            // What a kernel keeps for the backward pass (a convolution's patches, a max pool's winners): only while training.
            string keepForBackward = InferenceOnly ? "false" : "training";
            var spec = node.Spec;
            var inputs = node.Inputs.Select(i => i.InferenceName).ToList();
            int size = spec.Size;
            switch (spec.Kind)
            {
                case NodeKind.Layer when node.Layer!.Kind == LayerKind.Dense:
                    var layer = node.Layer;
                    string dense = $"// {node.Title}: Dense({layer.Channels}, {Lower(layer.Activation)}), {Shape(node.Inputs[0].Spec.Shape)} -> {Shape(spec.Shape)}{(spec.Shape.Count > 1 ? ", at every step" : "")}";
                    if (!Pairs.TryGetValue(node, out var pair))
                    {
                        w.Line(dense);
                        EmitProduct(w, layer, inputs[0], node.Output, RowsOf(spec), layer.InputSize.ToString(CultureInfo.InvariantCulture), spec);
                    }
                    else EmitPairedProduct(w, pair, node, dense, inputs[0], RowsOf(spec), InferenceOnly, inRowPart: PartRows is not null);
                    break;
                case NodeKind.Layer when node.Is(LayerKind.Conv2D) || node.Is(LayerKind.DepthwiseConv2D):
                {
                    string title = $"// {node.Title}: {ConvolutionSignature(node.Layer!)}, {Shape(node.Inputs[0].Spec.Shape)} -> {Shape(spec.Shape)}";
                    if (PooledConvolutions.TryGetValue(node, out var reader) || NormalizedConvolutions.TryGetValue(node, out reader))
                    {
                        w.Line($"{title}, computed with {reader.Title} below");
                        break;
                    }
                    w.Line(title);
                    // im2col + GEMM, or a direct kernel for small windows that fills the patches only for the kernel gradient
                    // (a depthwise convolution's kernel reads its windows where they lie, and keeps no patches)
                    w.Line(ConvolutionCall(node, node.Output, node.UsesPatches ? keepForBackward : "false"));
                    if (node.Layer!.Activation is not (Activation.Linear or Activation.Relu)) EmitActivation(w, node.Layer.Activation, node.Output, spec);
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.Conv2DTranspose):
                {
                    var conv = node.Layer!;
                    w.Line($"// {node.Title}: Conv2DTranspose({conv.Channels}, {conv.KernelHeight}x{conv.KernelWidth}, strides {conv.Strides}, {conv.Padding.ToString().ToLowerInvariant()}, {Lower(conv.Activation)}), {Shape(node.Inputs[0].Spec.Shape)} -> {Shape(spec.Shape)}:");
                    w.Line("// each input pixel spreads its kernel-weighted patch over the output, which is a convolution's input gradient (col2im)");
                    w.Line($"Convolution.Transposed({inputs[0]}, {Plan.View(conv, "Kernel")}, {node.Patches}, {node.Output}, {node.Window}, {conv.InputShape[2]}, batch, accumulate: false);");
                    if (conv.UseBias) w.Line($"Reductions.AddToRows({node.Output}, {Plan.View(conv, "Bias")}, {Rows(spec).Rows}, {conv.Channels});");
                    if (conv.Activation != Activation.Linear) EmitActivation(w, conv.Activation, node.Output, spec);
                    break;
                }
                case NodeKind.Layer when node.Layer!.IsWindowed && node.Layer.Kind != LayerKind.Conv2D:
                    string pool = $"// {node.Title}: {node.Layer.TypeName}{(node.Layer.IsGlobal ? "" : $"({node.Layer.KernelHeight}x{node.Layer.KernelWidth}, strides {node.Layer.Strides})")}, {Shape(node.Inputs[0].Spec.Shape)} -> {Shape(spec.Shape)}";
                    if (PooledConvolutions.TryGetValue(node, out var convolution))
                    {
                        EmitPooledConvolution(w, convolution, node, pool, keepForBackward);
                        break;
                    }
                    w.Line(pool);
                    w.Line(node.UsesWinners
                        ? $"Pooling.MaxForward({inputs[0]}, {node.Output}, {node.Winners}, {node.Window}, batch, keepWinners: {keepForBackward});"
                        : $"Pooling.AverageForward({inputs[0]}, {node.Output}, {node.Window}, batch);");
                    break;
                case NodeKind.Layer when node.Is(LayerKind.BatchNormalization):
                {
                    var norm = node.Layer!;
                    var (rows, channels) = Rows(spec);
                    var (written, added) = NormalizationWrites(node);
                    string inference = $"BatchNorm.InferenceForward({inputs[0]}, {written}, {Plan.View(norm, "Gamma")}, {Plan.View(norm, "Beta")}, {Plan.View(norm, "MovingMean")}, {Plan.View(norm, "MovingVariance")}, {rows}, {channels}, {Literal(norm.Epsilon)}f{added});";
                    if (NormalizedConvolutions.TryGetValue(node, out var normalizedBy))
                    {
                        EmitNormalizedConvolution(w, normalizedBy, node, InferenceOnly, inference, rows, channels);
                        break;
                    }
                    if (InferenceOnly || !norm.Trainable)
                    {
                        w.Line($"// {node.Title}: BatchNormalization{(norm.Trainable ? "" : " (frozen: inference mode, as Keras)")}, with the moving statistics{Rectified(node)}");
                        w.Line(inference);
                        break;
                    }
                    w.Line($"// {node.Title}: BatchNormalization, with the batch's statistics while training and the moving ones at inference{Rectified(node)}");
                    w.Line($"if (training) {BatchStatisticsForward(node, inputs[0], rows, channels)}");
                    w.Line($"else {inference}");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.LayerNormalization):
                {
                    var norm = node.Layer!;
                    string rows = RowsOf(spec);
                    int columns = Rows(spec).Columns;
                    string statistics = InferenceOnly ? "default, default" : $"{node.Mean}, {node.InverseStd}";
                    string operands = $"{node.Output}, {Plan.View(norm, "Gamma")}, {Plan.View(norm, "Beta")}, {statistics}, {rows}, {columns}, {Literal(norm.Epsilon)}f";
                    var sum = node.Inputs[0];
                    if (sum.NormalizedBy == node)
                    {
                        w.Line($"// {node.Title}: LayerNormalization over the last axis, row by row, of {sum.Title} = {sum.Inputs[0].Title} + {sum.Inputs[1].Title}, which it makes as it reads it (into {sum.Title}'s buffer, for the backward pass)");
                        w.Line($"LayerNorm.Forward({sum.Inputs[0].InferenceName}, {sum.Inputs[1].InferenceName}, {sum.WrittenTo}, {operands});");
                        break;
                    }
                    w.Line($"// {node.Title}: LayerNormalization over the last axis, row by row");
                    w.Line($"LayerNorm.Forward({inputs[0]}, {operands});");
                    break;
                }
                case NodeKind.Layer when node.IsResampling:
                    w.Line($"// {node.Title}: {node.Layer!.TypeName}{(node.Is(LayerKind.UpSampling2D) ? $"({node.Layer.Extents[0]}x{node.Layer.Extents[1]}, nearest)" : "")}, {Shape(node.Inputs[0].Spec.Shape)} -> {Shape(spec.Shape)}" +
                        (node.UpsampledBy is { } upsampledBy ? $": read by {upsampledBy.Title} from {node.Inputs[0].Title}, each row and pixel repeated, so never written" : ""));
                    if (node.UpsampledBy is null) w.Line($"{ResamplingKernel(node)}.Forward({inputs[0]}, {node.Output}, {ResamplingGeometry(node)}, batch);");
                    break;
                case NodeKind.Layer when node.Is(LayerKind.Embedding):
                {
                    var embedding = node.Layer!;
                    w.Line($"// {node.Title}: Embedding({embedding.InputDim}, {embedding.Channels}{(embedding.MaskZero ? ", mask_zero" : "")}), {Shape(node.Inputs[0].Spec.Shape)} -> {Shape(spec.Shape)}");
                    if (node.AveragedBy is { } mean)
                    {
                        w.Line($"// looked up by '{mean.Title}' as it averages them: the rows are never written");
                        break;
                    }
                    string mask = embedding.MaskZero ? node.SequenceMask : "default";
                    w.Line($"EmbeddingKernel.Forward({inputs[0]}, {Plan.View(embedding, "Embeddings")}, {node.Output}, {mask}, batch * {spec.Shape[0]}, {embedding.InputDim}, {embedding.Channels}, \"{ModelName}\", \"{embedding.Name}\");");
                    break;
                }
                case NodeKind.Layer when node.AveragesTable:
                {
                    var lookups = node.Inputs[0];
                    var embedding = lookups.Layer!;
                    string counted = embedding.MaskZero ? " but padding (id 0)" : "";
                    w.Line($"// {node.Title}: GlobalAveragePooling1D, the mean of each sample's '{lookups.Title}' rows{counted}, read in its table, {Shape(lookups.Spec.Shape)} -> {Shape(spec.Shape)}");
                    w.Line($"EmbeddingKernel.MeanForward({lookups.Inputs[0].InferenceName}, {Plan.View(embedding, "Embeddings")}, {node.Output}, batch, {lookups.Spec.Shape[0]}, {embedding.InputDim}, {embedding.Channels}, " +
                        $"maskZero: {Bool(embedding.MaskZero)}, \"{ModelName}\", \"{embedding.Name}\");");
                    break;
                }
                case NodeKind.Layer when node.Layer!.IsMean:
                {
                    var input = node.Inputs[0];
                    string counted = input.MaskSource is { } source ? $" that '{source.Title}' did not mask" : "";
                    w.Line($"// {node.Title}: {node.Layer.TypeName}, the mean over the {MeanStep(node)}s{counted}, {Shape(input.Spec.Shape)} -> {Shape(spec.Shape)}");
                    w.Line($"SequencePooling.AverageForward({inputs[0]}, {input.StepMask}, {node.Output}, batch, {MeanRows(node)});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.Masking):
                    w.Line($"// {node.Title}: Masking({Literal(node.Layer!.MaskValue)}): a step of nothing but {Literal(node.Layer.MaskValue)} is padding");
                    w.Line($"MaskingKernel.Forward({inputs[0]}, {node.Output}, {node.SequenceMask}, batch * {spec.Shape[0]}, {spec.Shape[1]}, {Literal(node.Layer.MaskValue)}f);");
                    break;
                case NodeKind.Layer when node.Layer!.IsRecurrent:
                {
                    var rnn = node.Layer;
                    var input = node.Inputs[0];
                    string masked = input.MaskSource is { } source ? $", masked by '{source.Title}'" : "";
                    w.Line($"// {node.Title}: {(rnn.Bidirectional ? $"Bidirectional({rnn.Kind}" : rnn.Kind.ToString())}({rnn.Units}{(rnn.ReturnSequences ? ", return_sequences" : "")}){(rnn.Bidirectional ? ")" : "")}, {Shape(input.Spec.Shape)} -> {Shape(spec.Shape)}{masked}");
                    if (rnn.Bidirectional)
                    {
                        // Both directions in one call, so they can run on the two cores (a Bidirectional layer takes no states).
                        w.Line($"Recurrent.ForwardBidirectional({node.Workspace("Forward")}, {node.Workspace("Backward")}, {inputs[0]}, {input.StepMask}, " +
                            $"{Plan.View(rnn, "ForwardKernel")}, {Plan.View(rnn, "ForwardRecurrentKernel")}, {Plan.View(rnn, "ForwardBias")}, " +
                            $"{Plan.View(rnn, "BackwardKernel")}, {Plan.View(rnn, "BackwardRecurrentKernel")}, {Plan.View(rnn, "BackwardBias")}, " +
                            $"{node.Output}, outputWidth: {rnn.Channels}, batch, returnSequences: {Bool(rnn.ReturnSequences)}{ZeroOutputs(rnn)}, " +
                            $"{PackedArguments(rnn, "Forward")}, {PackedArguments(rnn, "Backward")});");
                        break;
                    }
                    // Keras' initial_state and return_state: named state arguments.
                    var states = new List<string>();
                    if (node.Inputs.Count > 1) states.Add($"initialState: {inputs[1]}");
                    if (node.Inputs.Count > 2) states.Add($"initialCell: {inputs[2]}");
                    foreach (var state in node.States) states.Add($"{(state.Spec.Axis == 0 ? "finalState" : "finalCell")}: {state.Output}");
                    string stateArguments = string.Concat(states.Select(a => ", " + a));
                    w.Line($"Recurrent.Forward({node.Workspace("")}, {inputs[0]}, {input.StepMask}, {Plan.View(rnn, "Kernel")}, {Plan.View(rnn, "RecurrentKernel")}, {Plan.View(rnn, "Bias")}, " +
                        $"{node.Output}, outputWidth: {rnn.Channels}, outputOffset: 0, batch, returnSequences: {Bool(rnn.ReturnSequences)}, reverse: false{stateArguments}, " +
                        $"{PackedArguments(rnn, "")});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.MultiHeadAttention) && PartRows is not null:
                    w.Line($"// {node.Title}: its output projection, from the context its heads left (Attention.Attend in Forward)");
                    w.Line($"Attention.ProjectOutput({node.Workspace("")}, {string.Join(", ", AttentionArguments(node, AttentionOutputTensors))}, {node.Output}, first, {PartRows});");
                    break;
                case NodeKind.Layer when node.Is(LayerKind.MultiHeadAttention):
                    EmitAttention(w, node, "Forward", AttentionTensors, node.Output, "");
                    break;
                case NodeKind.Layer when node.IsDropout:
                    w.Line($"// {node.Title}: Dropout({Literal(node.Layer!.Rate)}), identity at inference");
                    w.Line($"ReadOnlySpan<float> {node.InferenceName} = {inputs[0]};");
                    if (InferenceOnly) break;
                    w.Open("if (training)");
                    w.Line(KeyedDropout
                        ? $"DropoutKernel.Forward({inputs[0]}, {node.Output}, {node.Mask}, batch * {size}, {Literal(node.Layer.Rate)}f, {node.DropoutKey}, firstIndex: firstRow * {size});"
                        : $"DropoutKernel.Forward({inputs[0]}, {node.Output}, {node.Mask}, batch * {size}, {Literal(node.Layer.Rate)}f, ref dropoutRandom);");
                    w.Line($"{node.InferenceName} = {node.Output};");
                    w.Close();
                    break;
                case NodeKind.Layer when node.IsAlias:
                    w.Line($"// {node.Title}: {node.Layer!.TypeName}, {Shape(node.Inputs[0].Spec.Shape)} -> {Shape(spec.Shape)}: the same floats in the same (H, W, C) order, read in place");
                    break;
                case NodeKind.Layer when node.Layer!.IsReshape:
                    w.Line($"// {node.Title}: {node.Layer.TypeName}, {Shape(node.Inputs[0].Spec.Shape)} -> {Shape(spec.Shape)} (the same floats, copied: it is an output)");
                    w.Line($"Reductions.Copy({inputs[0]}, {node.Output}, batch * {size});");
                    break;
                case NodeKind.Layer:
                case NodeKind.Function:
                    var activation = spec.Kind == NodeKind.Layer ? node.Layer!.Activation : spec.Activation;
                    if (node.IsTakenByInput)
                    {
                        w.Line($"// {node.Title}: Activation({Lower(activation)}), taken by {node.Inputs[0].Title}'s pass above as it wrote this output");
                        break;
                    }
                    w.Line($"// {node.Title}: Activation({Lower(activation)})");
                    EmitActivation(w, activation, node.Output, spec, source: inputs[0], rows: RowsOf(spec));
                    break;
                case NodeKind.State:
                    w.Line($"// {node.Title}: the final {(spec.Axis == 0 ? "state h" : "cell state c")} of '{node.Inputs[0].Title}', written by its block above");
                    break;
                case NodeKind.Merge when node.NormalizedBy is { } normalizedBy:
                    w.Line($"// {node.Title}: Add({string.Join(", ", node.Inputs.Select(i => i.Title))}), made by {normalizedBy.Title} below as it normalizes it");
                    break;
                case NodeKind.Merge when spec.Merge == MergeOperation.Concatenate:
                {
                    var (rows, outputWidth, widths) = ConcatenateLayout(node);
                    w.Line($"// {node.Title}: Concatenate({string.Join(", ", node.Inputs.Select(i => i.Title))}) along axis {spec.Axis + 1} -> {Shape(spec.Shape)}");
                    int offset = 0;
                    for (int i = 0; i < inputs.Count; i++)
                    {
                        w.Line($"Merges.Concatenate({inputs[i]}, {widths[i]}, {node.Output}, {outputWidth}, {offset}, {rows});");
                        offset += widths[i];
                    }
                    break;
                }
                case NodeKind.Merge when spec.Merge == MergeOperation.Dot:
                    w.Line($"// {node.Title}: Dot({node.Inputs[0].Title}, {node.Inputs[1].Title}) -> (None, 1)");
                    w.Line($"Merges.Dot({inputs[0]}, {inputs[1]}, {node.Output}, {node.Inputs[0].Spec.Size}, batch);");
                    break;
                case NodeKind.Merge:
                {
                    // An Add the pass of the normalization it adds makes (NodePlan.ResidualSum): no block of its own.
                    var summedBy = node.SummedBy;
                    string madeBy = summedBy is null ? "" : $": made by {summedBy.Title}'s pass above (by {NormalizedConvolutions[summedBy].Title} at inference)";
                    w.Line($"// {node.Title}: {spec.Merge}({string.Join(", ", node.Inputs.Select(i => i.Title))}){Rectified(node)}{madeBy}");
                    if (summedBy is not null) break;
                    var operation = spec.Merge == MergeOperation.Average ? MergeOperation.Add : spec.Merge;
                    string output = node.WrittenTo;
                    // Each further operand merged into the output; a ReLU the merge takes, with the last.
                    string Last(int i) => i == inputs.Count - 1 ? RectifiedArgument(node) : "";
                    w.Line($"Merges.Combine(MergeOperation.{operation}, {inputs[0]}, {inputs[1]}, {output}, {FloatsOf(spec)}{Last(1)});");
                    for (int i = 2; i < inputs.Count; i++) w.Line($"Merges.Combine(MergeOperation.{operation}, {output}, {inputs[i]}, {output}, {FloatsOf(spec)}{Last(i)});");
                    if (spec.Merge == MergeOperation.Average) w.Line($"Merges.Scale({output}, {FloatsOf(spec)}, 1f / {inputs.Count});");
                    break;
                }
            }
        }
    }

    /// <summary>An attention's heads alone (Attention.Attend): its output projection is the first block of a row run, <paramref name="where"/>.</summary>
    private static void EmitAttend(CodeWriter w, NodePlan node, string where) => EmitAttention(w, node, "Attend", AttentionHeadTensors, null, $", {where}");

    private static void EmitAttention(CodeWriter w, NodePlan node, string method, IEnumerable<string> tensors, string? output, string note)
    {
        var attention = node.Layer!;
        var e = attention.Extents;
        var (query, value, key) = (node.Inputs[0], node.Inputs[1], node.Inputs[2]);
        var inputs = node.Inputs.Select(i => i.InferenceName).ToList();
        string mask = node.Inputs.Count > 3 ? inputs[3] : "default";
        w.Line($"// {node.Title}: MultiHeadAttention({e[0]} heads, key_dim {e[1]}{(e[2] != e[1] ? $", value_dim {e[2]}" : "")}{(attention.Causal ? ", causal" : "")}), " +
            $"query '{query.Title}'{(value == query ? ", self-attention" : $", value '{value.Title}'")}{(key != value ? $", key '{key.Title}'" : "")}{(node.Inputs.Count > 3 ? $", mask '{node.Inputs[3].Title}'" : "")} -> {Shape(node.Spec.Shape)}{note}");
        w.Line($"Attention.{method}({node.Workspace("")}, {inputs[0]}, {inputs[1]}, {inputs[2]}, {query.StepMask}, {value.StepMask}, {mask},");
        w.Line($"    {string.Join(", ", AttentionArguments(node, tensors))},");
        w.Line($"    {(output is null ? "" : output + ", ")}batch);");
    }

    /// <summary>An attention's weights as the kernel reads them: each a view of the parameters, a bias the layer does not use as default.</summary>
    private static IEnumerable<string> AttentionArguments(NodePlan node, IEnumerable<string> tensors) =>
        tensors.Select(t => node.Layer!.UseBias || !t.EndsWith("Bias") ? Plan.View(node.Layer!, t) : "default");

    /// <summary>
    /// Concatenating channels-last tensors along an axis is a row copy: each of batch x (dimensions before the axis)
    /// rows of the output holds, side by side, each operand's block of (its dimensions from the axis on).
    /// </summary>
    private static (string Rows, int OutputWidth, int[] Widths) ConcatenateLayout(NodePlan node)
    {
        int axis = node.Spec.Axis;
        int outer = node.Spec.Shape.Take(axis).Aggregate(1, (a, b) => a * b);
        var widths = node.Inputs.Select(i => i.Spec.Shape.Skip(axis).Aggregate(1, (a, b) => a * b)).ToArray();
        return (outer == 1 ? "batch" : $"batch * {outer}", widths.Sum(), widths);
    }

    /// <summary>
    /// A Dense layer's or a convolution's product with its kernel, the bias and a ReLU folded into the GEMM's epilogue and any
    /// other activation after it.
    /// </summary>
    private static void EmitProduct(CodeWriter w, LayerSpec layer, string input, string output, string rows, string depth, NodeSpec spec)
    {
        w.Line(Product(layer, input, output, rows, depth));
        if (layer.Activation is not (Activation.Linear or Activation.Relu)) EmitActivation(w, layer.Activation, output, spec, rows: rows);
    }

    /// <param name="inference">Whether the product may run at inference, so a dense layer passes its packed kernel (ForInference).</param>
    private static string Product(LayerSpec layer, string input, string output, string rows, string depth, bool inference = true) =>
        $"Gemm.Multiply({input}, {Plan.View(layer, "Kernel")}, {output}, {rows}, {depth}, {layer.Channels}{Epilogue(layer)}" +
        (inference && layer.Kind == LayerKind.Dense ? $", packedB: {PackedKernel(layer)}" : "") + ");";

    /// <summary>Which kinds of layers' kernels <paramref name="packed"/> holds, as a list: "dense", "dense and recurrent", "convolution, dense and recurrent".</summary>
    private static string PackedKinds(List<PackedWeight> packed)
    {
        var kinds = packed.Select(k => k.Layer.Kind switch { LayerKind.Dense => "dense", LayerKind.Conv2D => "convolution", _ => "recurrent" })
            .Distinct().OrderBy(kind => kind, StringComparer.Ordinal).ToList();
        return kinds.Count == 1 ? kinds[0] : string.Join(", ", kinds.Take(kinds.Count - 1)) + " and " + kinds[kinds.Count - 1];
    }

    /// <summary>A recurrent direction's kernels as an inference copy packed them (null in a model that trains): packedKernel: packedLstmKernel, ...</summary>
    private static string PackedArguments(LayerSpec rnn, string direction) =>
        $"packed{direction}Kernel: {PackedKernel(rnn, direction + "Kernel")}, packed{direction}RecurrentKernel: {PackedKernel(rnn, direction + "RecurrentKernel")}";

    /// <summary>The field that holds a kernel packed by ForInference (<see cref="PackedKernels"/>): null but in such a copy.</summary>
    private static string PackedKernel(LayerSpec layer, string kernel = "Kernel") => "packed" + Plan.View(layer, kernel);

    /// <summary>
    /// A kernel ForInference packs once: its layer's weight tensor, read by the products as B of these rows and columns. A
    /// convolution's (<paramref name="Window"/>, and <paramref name="Pool"/> where a max pooling reads it in one call) is
    /// packed only where its route multiplies patches (Convolution.PackKernel), and is null elsewhere.
    /// </summary>
    private sealed record PackedWeight(LayerSpec Layer, string Kernel, int Rows, int Columns, string? Window = null, string? Pool = null)
    {
        public string Field => PackedKernel(Layer, Kernel);

        /// <summary>The call that packs the kernel from <paramref name="view"/>, its values.</summary>
        public string Packing(string view) => Window is null
            ? $"Gemm.Pack({view}, {Rows}, {Columns})"
            : $"Convolution.PackKernel({view}, {Window}, {Columns}{(Pool is null ? "" : ", " + Pool)})";
    }

    /// <summary>
    /// The kernels ForInference packs, once however many times their layer is called: each dense layer's, each recurrent
    /// direction's input and recurrent kernels (every step reads the latter; Recurrent.Forward otherwise packs both a call),
    /// and each Conv2D's that its route multiplies patches by (judged at its first call, as a product packs it otherwise).
    /// </summary>
    private static List<PackedWeight> PackedKernels(Plan plan) => plan.Nodes
        .Where(n => n.Is(LayerKind.Dense) || n.Is(LayerKind.LSTM) || n.Is(LayerKind.GRU) || n.Is(LayerKind.Conv2D))
        .GroupBy(n => n.Layer!).SelectMany(calls => KernelsOf(calls.Key, calls.First(), plan))
        .ToList();

    /// <summary>The kernels ForInference packs of <paramref name="layer"/> (<see cref="PackedKernels"/>), a convolution's for the route of its first call.</summary>
    private static IEnumerable<PackedWeight> KernelsOf(LayerSpec layer, NodePlan firstCall, Plan plan)
    {
        if (layer.Kind == LayerKind.Dense) return new[] { new PackedWeight(layer, "Kernel", layer.InputSize, layer.Channels) };
        if (layer.Kind == LayerKind.Conv2D)
        {
            string? pool = plan.PooledConvolutions.TryGetValue(firstCall, out var pooling) ? pooling.Window : null;
            return new[] { new PackedWeight(layer, "Kernel", Plan.PatchFloats(layer), layer.Channels, firstCall.Window, pool) };
        }
        return layer.Directions.SelectMany(direction => new[]
        {
            new PackedWeight(layer, direction + "Kernel", layer.InputShape[layer.InputShape.Count - 1], layer.GateWidth),
            new PackedWeight(layer, direction + "RecurrentKernel", layer.Units, layer.GateWidth),
        });
    }

    /// <summary>
    /// Two dense layers in a row at inference: the first's output goes to the second only, through nothing but dropouts (the
    /// identity at inference); on vectors, or at every step of a sequence (rows of batch x steps). <see cref="EmitPairedProduct"/>
    /// runs them as one Gemm.MultiplyTwice, which shares both layers between the cores with a single hand-off: at a few rows
    /// (batch-1 inference) by slices of columns, at many against small weights (a Transformer's feed-forward pair) by rows.
    /// </summary>
    private sealed record DensePair(NodePlan First, NodePlan Second, IReadOnlyList<NodePlan> Dropouts)
    {
        public bool ThroughDropout => Dropouts.Count > 0;
    }

    /// <summary>Each paired dense layer, first or second, with its pair.</summary>
    private static Dictionary<NodePlan, DensePair> DensePairs(List<NodePlan> nodes, Dictionary<NodePlan, int> readers)
    {
        var pairs = new Dictionary<NodePlan, DensePair>();
        foreach (var second in nodes.Where(n => n.Is(LayerKind.Dense)))
        {
            var link = second.Inputs[0];
            var dropouts = new List<NodePlan>();
            while (link.IsDropout && readers.TryGetValue(link, out int dropoutReaders) && dropoutReaders == 1)
            {
                dropouts.Insert(0, link);
                link = link.Inputs[0];
            }
            // The first layer's activation must fit in the product's epilogue (none or ReLU): the second reads it mid-product.
            if (!link.Is(LayerKind.Dense) || link.Layer!.Activation is not (Activation.Linear or Activation.Relu)) continue;
            if (!readers.TryGetValue(link, out int firstReaders) || firstReaders != 1) continue;
            // A chain of three pairs its first two only: a layer is in one pair at most.
            if (pairs.ContainsKey(link)) continue;
            pairs[link] = pairs[second] = new DensePair(link, second, dropouts);
        }
        return pairs;
    }

    /// <summary>
    /// A paired dense layer's block. The first layer's block computes nothing where the pair always runs (inference, or no
    /// dropout between), else only in training; the second's block runs the pair, or in training its own product.
    /// </summary>
    private static void EmitPairedProduct(CodeWriter w, DensePair pair, NodePlan node, string title, string input, string rows, bool inferenceOnly, bool inRowPart)
    {
        bool trainingApart = pair.ThroughDropout && !inferenceOnly;
        var layer = node.Layer!;
        string depth = layer.InputSize.ToString(CultureInfo.InvariantCulture);
        if (node == pair.First)
        {
            w.Line($"{title}, computed with {pair.Second.Title} below{(trainingApart ? " at inference" : "")}");
            if (trainingApart) w.Line($"if (training) {Product(layer, input, node.Output, rows, depth, inference: false)}");
            return;
        }
        var first = pair.First.Layer!;
        string dropouts = pair.ThroughDropout ? $", {string.Join(" and ", pair.Dropouts.Select(d => d.Title))} being the identity then" : "";
        // In a row run the run's cut shares the rows between the cores; the kernel shares the pair itself only where the run is not cut.
        string why = inRowPart ? "over this part's rows" : "so that the kernel can share them between the cores with one hand-off";
        w.Line($"{title}, with {pair.First.Title}{(trainingApart ? $" at inference{dropouts}" : "")}: both in one call, {why}");
        string twice = $"Gemm.MultiplyTwice({pair.First.Inputs[0].InferenceName}, {Plan.View(first, "Kernel")}, {pair.First.Output}, {Plan.View(layer, "Kernel")}, {node.Output}, " +
            $"{rows}, {first.InputSize}, {first.Channels}, {layer.Channels}{Epilogue(first, "1")}{Epilogue(layer, "2")}, packedB1: {PackedKernel(first)}, packedB2: {PackedKernel(layer)});";
        if (trainingApart)
        {
            w.Line($"if (training) {Product(layer, input, node.Output, rows, depth, inference: false)}");
            w.Line($"else {twice}");
        }
        else w.Line(twice);
        if (layer.Activation is not (Activation.Linear or Activation.Relu)) EmitActivation(w, layer.Activation, node.Output, node.Spec, rows: rows);
    }

    /// <summary>
    /// Each Conv2D whose output goes to a MaxPooling2D only, and that pooling, with each other: the convolution's activation
    /// (none or ReLU) is in its epilogue, and its output is no model output. <see cref="EmitPooledConvolution"/> runs the two
    /// as one call, which pools each window's sums in registers and never writes the convolution's output where the direct
    /// kernel takes its windows (at inference; in training too for shallow ones, their patches kept).
    /// </summary>
    private static Dictionary<NodePlan, NodePlan> PooledConvolutions(SubModelPlan sub)
    {
        var nodes = sub.Computed.ToList();
        return PooledConvolutions(nodes, Plan.ReaderCounts(nodes), sub.OutputNodes.ToList());
    }

    /// <summary>
    /// The outputs of a pooled convolution its pooling reads: the rows and columns its windows cover, fewer than the
    /// convolution's where 'valid' windows stop short of the last (11x11 -> 5x5 reads 10x10). The convolution computes only
    /// those (Window.CroppedTo) and the pooling's window runs over them alone, so the values and gradients are the same
    /// while the rest is never computed (the small CNN's conv2, 64 samples: forward 1.86 -> 1.53 ms).
    /// </summary>
    private static (int Height, int Width) PooledOutputs(NodePlan pool)
    {
        var layer = pool.Layer!;
        var convolved = pool.Inputs[0].Spec.Shape;
        if (layer.Padding == Padding.Same) return (convolved[0], convolved[1]);
        return ((pool.Spec.Shape[0] - 1) * layer.Strides + layer.KernelHeight, (pool.Spec.Shape[1] - 1) * layer.Strides + layer.KernelWidth);
    }

    /// <summary>The outputs a pooled convolution computes where its pooling reads fewer than it has (<see cref="PooledOutputs"/>); null where it reads them all.</summary>
    private static (int Height, int Width)? Cropped(NodePlan conv, NodePlan pool) =>
        PooledOutputs(pool) is var (height, width) && (height < conv.Spec.Shape[0] || width < conv.Spec.Shape[1]) ? (height, width) : null;

    private static Dictionary<NodePlan, NodePlan> PooledConvolutions(List<NodePlan> nodes, Dictionary<NodePlan, int> readers, List<NodePlan> outputs) =>
        ConvolutionsReadOnlyBy(LayerKind.MaxPooling2D, depthwiseToo: false, nodes, readers, outputs);

    /// <summary>
    /// Each Conv2D or DepthwiseConv2D whose output goes to a BatchNormalization only, and that normalization, with each other:
    /// the convolution's activation (none or ReLU) is in its epilogue, and its output is no model output. At inference the
    /// convolution applies the normalization to its outputs as it computes them (<see cref="EmitNormalizedConvolution"/>), so
    /// its own output is never written; while training the normalization needs the whole batch's statistics, and the two run
    /// one after the other.
    /// </summary>
    private static Dictionary<NodePlan, NodePlan> NormalizedConvolutions(List<NodePlan> nodes, Dictionary<NodePlan, int> readers, List<NodePlan> outputs) =>
        ConvolutionsReadOnlyBy(LayerKind.BatchNormalization, depthwiseToo: true, nodes, readers, outputs);

    /// <summary>
    /// Each Conv2D (and DepthwiseConv2D where <paramref name="depthwiseToo"/>) that only a layer of kind <paramref name="reader"/>
    /// reads, and that layer, keyed by each other: the convolution's activation is none or ReLU (in its kernel's epilogue),
    /// and its output is no model output.
    /// </summary>
    private static Dictionary<NodePlan, NodePlan> ConvolutionsReadOnlyBy(LayerKind reader, bool depthwiseToo, List<NodePlan> nodes, Dictionary<NodePlan, int> readers,
        List<NodePlan> outputs)
    {
        var pairs = new Dictionary<NodePlan, NodePlan>();
        foreach (var next in nodes.Where(n => n.Is(reader)))
        {
            var conv = next.Inputs[0];
            if (!(conv.Is(LayerKind.Conv2D) || depthwiseToo && conv.Is(LayerKind.DepthwiseConv2D)) || conv.Layer!.Activation is not (Activation.Linear or Activation.Relu)) continue;
            if (readers[conv] != 1 || outputs.Contains(conv)) continue;
            pairs[conv] = next;
            pairs[next] = conv;
        }
        return pairs;
    }

    /// <summary>
    /// A Conv2D or DepthwiseConv2D and the BatchNormalization it feeds, in the normalization's block (<see cref="NormalizedConvolutions"/>);
    /// also the Add after them, with its ReLU, where the plan found one (<see cref="NodePlan.ResidualSum"/>).
    /// </summary>
    private static void EmitNormalizedConvolution(CodeWriter w, NodePlan conv, NodePlan norm, bool inferenceOnly, string inference, string rows, int channels)
    {
        var layer = norm.Layer!;
        var sum = norm.ResidualSum;
        var (written, added) = NormalizationWrites(norm);
        string applied = $"new BatchNormAtInference({Plan.View(layer, "Gamma")}, {Plan.View(layer, "Beta")}, {Plan.View(layer, "MovingMean")}, {Plan.View(layer, "MovingVariance")}, {Literal(layer.Epsilon)}f{added})";
        string atInference = ConvolutionCall(conv, written, "false", applied);
        string moving = layer.Trainable ? "" : " (frozen: inference mode, as Keras)";
        string then = sum is null ? Rectified(norm) : $"; then added to {sum.OtherInput(norm).Title} as '{sum.Title}'{Rectified(sum)}";
        if (inferenceOnly)
        {
            w.Line($"// {norm.Title}: BatchNormalization{moving}, with the moving statistics, applied by {conv.Title} to its outputs as it computes them{then}");
            w.Line(atInference);
            return;
        }
        w.Line(layer.Trainable
            ? $"// {norm.Title}: BatchNormalization, with the batch's statistics after {conv.Title} while training; at inference, with the moving ones, applied by {conv.Title} to its outputs as it computes them{then}"
            : $"// {norm.Title}: BatchNormalization{moving}, with the moving statistics: after {conv.Title} while training (its output kept for the backward pass), at inference applied by {conv.Title} to its outputs as it computes them{then}");
        w.Open("if (training)");
        w.Line(ConvolutionCall(conv, conv.Output, conv.UsesPatches ? "true" : "false", inference: false));
        w.Line(layer.Trainable ? BatchStatisticsForward(norm, conv.Output, rows, channels) : inference);
        w.Close();
        w.Line($"else {atInference}");
    }

    /// <summary>A trainable BatchNormalization's forward call with the batch's statistics (<see cref="NormalizationWrites"/>).</summary>
    private static string BatchStatisticsForward(NodePlan norm, string input, string rows, int channels)
    {
        var layer = norm.Layer!;
        var (written, added) = NormalizationWrites(norm);
        return $"BatchNorm.TrainingForward({input}, {written}, {Plan.View(layer, "Gamma")}, {Plan.View(layer, "Beta")}, {norm.Mean}, {norm.Variance}, {norm.InverseStd}, {rows}, {channels}, {Literal(layer.Epsilon)}f{added});";
    }

    /// <summary>
    /// Where a BatchNormalization's pass writes (<see cref="NodePlan.WrittenTo"/>), and the arguments after its epsilon: its
    /// ReLU's; where it makes the residual Add after it (<see cref="NodePlan.ResidualSum"/>), the Add's other operand as the
    /// residual and the Add's ReLU.
    /// </summary>
    private static (string Output, string Arguments) NormalizationWrites(NodePlan norm) =>
        (norm.WrittenTo, norm.ResidualSum is { } sum ? $"{RectifiedArgument(sum)}, residual: {sum.OtherInput(norm).InferenceName}" : RectifiedArgument(norm));

    /// <summary>The argument that has a normalization's or merge's pass take the ReLU after it (<see cref="NodePlan.RectifiedBy"/>); none without one.</summary>
    private static string RectifiedArgument(NodePlan node) => node.RectifiedBy is null ? "" : ", relu: true";

    /// <summary>The end of a normalization's or merge's comment that says it takes its ReLU and writes that's output.</summary>
    private static string Rectified(NodePlan node) => node.RectifiedBy is { } relu ? $", and then the ReLU, written as '{relu.Title}'" : "";

    /// <summary>A Conv2D's or DepthwiseConv2D's arguments as Keras spells them, for the comment over its block.</summary>
    private static string ConvolutionSignature(LayerSpec conv)
    {
        string padding = conv.Padding.ToString().ToLowerInvariant();
        if (conv.Kind == LayerKind.DepthwiseConv2D)
            return $"DepthwiseConv2D({conv.KernelHeight}x{conv.KernelWidth}, depth_multiplier {conv.Channels / conv.InputShape[2]}, strides {conv.Strides}, {padding}, {Lower(conv.Activation)})";
        string dilated = conv.Dilation > 1 ? $", dilation {conv.Dilation}" : "";
        return $"Conv2D({conv.Channels}, {conv.KernelHeight}x{conv.KernelWidth}, strides {conv.Strides}{dilated}, {padding}, {Lower(conv.Activation)})";
    }

    /// <summary>
    /// A Conv2D's or DepthwiseConv2D's forward call into <paramref name="output"/>, its bias and ReLU in the epilogue, and a
    /// BatchNormalization after them where given (<paramref name="keepPatches"/>: a Conv2D's only).
    /// </summary>
    /// <param name="inference">Whether the call may run at inference, so a Conv2D passes its packed kernel (ForInference).</param>
    private static string ConvolutionCall(NodePlan conv, string output, string keepPatches, string? normalization = null, bool inference = true)
    {
        var layer = conv.Layer!;
        string normalized = normalization is null ? "" : $", normalization: {normalization}";
        if (conv.Is(LayerKind.DepthwiseConv2D))
            return $"DepthwiseConvolution.Forward({conv.Inputs[0].InferenceName}, {Plan.View(layer, "DepthwiseKernel")}, {(layer.UseBias ? Plan.View(layer, "Bias") : "default")}, {output}, " +
                $"{conv.Window}, multiplier: {layer.Channels / layer.InputShape[2]}, batch{(layer.Activation == Activation.Relu ? ", relu: true" : "")}{normalized});";
        return $"Convolution.Forward({conv.ValueInput(0).InferenceName}, {conv.PatchesArgument}, {Plan.View(layer, "Kernel")}, {output}, {conv.Window}, {layer.Channels}, batch{Epilogue(layer)}, " +
            $"keepPatches: {keepPatches}{normalized}{conv.UpsampledValueArguments}{(inference ? $", packedKernel: {PackedKernel(layer)}" : "")});";
    }

    /// <summary>A Conv2D and the MaxPooling2D it feeds, in the pooling's block (<see cref="PooledConvolutions"/>).</summary>
    private static void EmitPooledConvolution(CodeWriter w, NodePlan conv, NodePlan pool, string title, string keepForBackward)
    {
        var layer = conv.Layer!;
        w.Line($"{title}, with {conv.Title} in one call: where the direct kernel takes {conv.Title}'s windows, each window's maximum is taken in registers and {conv.Title}'s output never written");
        w.Line($"Convolution.ForwardMaxPooled({conv.Inputs[0].InferenceName}, {conv.PatchesArgument}, {Plan.View(layer, "Kernel")}, {conv.Output}, {pool.Output}, {pool.Winners}, " +
            $"{conv.Window}, {pool.Window}, {layer.Channels}, batch{Epilogue(layer)}, training: {keepForBackward}{(conv.UsesPatches ? "" : ", keepPatches: false")}, packedKernel: {PackedKernel(layer)});");
    }

    /// <summary>
    /// The bias and ReLU a kernel folds into its epilogue, as named arguments (<c>bias1:</c>, <c>relu1:</c> for the first
    /// layer of a pair); none where the layer has no bias or another activation, which the kernels' defaults mean.
    /// </summary>
    private static string Epilogue(LayerSpec layer, string which = "") =>
        (layer.UseBias ? $", bias{which}: {Plan.View(layer, "Bias")}" : "") + (layer.Activation == Activation.Relu ? $", relu{which}: true" : "");

    /// <summary>Softmax normalises over the last axis; every other activation is element-wise.</summary>
    /// <param name="source">Where x comes from when it is not already in <paramref name="buffer"/>.</param>
    /// <param name="rows">The rows it goes over: the batch's unless given (a part's).</param>
    private static void EmitActivation(CodeWriter w, Activation activation, string buffer, NodeSpec spec, string? source = null, string? rows = null)
    {
        var (batchRows, columns) = Rows(spec);
        rows ??= batchRows;
        w.Line($"Activations.Forward(Activation.{activation}, {(source is null ? "" : source + ", ")}{buffer}, {rows}, {columns});");
    }

    private static (string Rows, int Columns) Rows(NodeSpec spec)
    {
        int columns = spec.Shape[spec.Shape.Count - 1];
        int perSample = spec.Size / columns;
        return (perSample == 1 ? "batch" : $"batch * {perSample}", columns);
    }
}
