using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using ModelGen.Graph;

namespace ModelGen.Generator;

/// <summary>The backward pass: the forward blocks in reverse, each turning a tensor's gradient into its weights' and inputs'.</summary>
internal static partial class ModelEmitter
{
    private static void EmitBackward(CodeWriter w, Plan plan)
    {
        w.Line("// Reverse order. Each block turns the gradient of a tensor into weight gradients and the gradients of its inputs;");
        w.Line("// a tensor feeding several others receives '=' from the first block that reaches it and '+=' (accumulate) from the rest.");
        w.Open($"private void {plan.BackwardMethod}({plan.InputParameters}, int batch)");
        var gradientStarted = new HashSet<NodePlan>(plan.Outputs.Select(o => o.Node.GradientOwner)); // the losses write the outputs' gradients
        var weightsStarted = new HashSet<LayerSpec>();
        bool first = true;
        foreach (var node in plan.Computed.AsEnumerable().Reverse())
        {
            if (!node.HasBackwardBlock) continue;

            if (!first) w.Line();
            first = false;
            var spec = node.Spec;
            int size = spec.Size;

            // Whether a contribution to input's gradient must add to it (an earlier block already wrote it); records this one.
            bool Into(NodePlan input) => !gradientStarted.Add(input.GradientOwner);

            switch (spec.Kind)
            {
                case NodeKind.Layer when node.Layer!.Kind == LayerKind.Dense:
                {
                    var layer = node.Layer;
                    var input = node.Inputs[0];
                    bool propagate = input.NeedsGradient;
                    var (rows, columns) = Rows(spec);
                    bool shared = !weightsStarted.Add(layer);
                    var activation = plan.ActivationToUndo(node, layer.Activation);
                    w.Line($"// {node.Title}: {GradientsOf(plan, node, propagate ? "input" : null)}{(plan.IsShared(layer) && layer.Trainable ? $" ({(shared ? "added to" : "first of")} the shared weights' gradients)" : "")}");
                    EmitActivationBackward(w, node, activation);
                    string accumulateWeights = shared ? ", accumulate: true" : "";
                    if (layer.Trainable)
                    {
                        w.Line($"Gemm.MultiplyTransposedA({input.TrainingSource}, {node.Gradient}, {Plan.View(layer, "Kernel")}Gradient, {layer.InputSize}, {rows}, {layer.Channels}{accumulateWeights});");
                        if (layer.UseBias && !plan.BiasTakenByPool(node)) w.Line($"Reductions.SumRows({node.Gradient}, {Plan.View(layer, "Bias")}Gradient, {rows}, {layer.Channels}{accumulateWeights});");
                    }
                    if (propagate) w.Line($"Gemm.MultiplyTransposedB({node.Gradient}, {Plan.View(layer, "Kernel")}, {input.Gradient}, {rows}, {layer.Channels}, {layer.InputSize}{Flag(Into(input))});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.Conv2D):
                {
                    var layer = node.Layer!;
                    var input = node.Inputs[0];
                    bool shared = !weightsStarted.Add(layer);
                    string accumulateWeights = shared ? ", accumulate: true" : "";
                    string rows = $"batch * {node.Window}.Positions";
                    var activation = plan.ActivationToUndo(node, layer.Activation);
                    var pool = plan.KernelGradientPool(node);
                    bool inputAtWinners = plan.TakesInputGradientAtWinners(node), scattered = plan.GradientScattered(node);
                    bool inputProduct = plan.InputGradientIsProduct(node);
                    string? inputPart = !input.NeedsGradient ? null : inputAtWinners ? "input" : inputProduct ? "input (one product: each patch is a pixel)"
                        : Plan.HasFewFilters(layer) ? "input (summed in place, no patch gradients)"
                        : scattered ? "input (through the patches, from its nonzero gradients)" : "input (through the patches)";
                    if (node.SumsUpsampledGradient) inputPart += $", then {input.Title}'s (UpSampling2D: each block's sum{(Plan.HasFewFilters(layer) ? ", row by row" : "")})";
                    w.Line($"// {node.Title}: {GradientsOf(plan, node, inputPart)}");
                    EmitActivationBackward(w, node, activation);
                    if (pool is not null)
                    {
                        w.Line($"Convolution.KernelGradientAtWinners({pool.Gradient}, {pool.Winners}, {input.TrainingSource}, {Plan.View(layer, "Kernel")}Gradient, {node.Window}, {pool.Window}, {layer.Channels}, batch);");
                    }
                    else if (layer.Trainable)
                    {
                        if (node.KernelGradientReadsInput)
                            w.Line($"Convolution.KernelGradient({node.ValueInput(0).TrainingSource}, {node.Gradient}, {Plan.View(layer, "Kernel")}Gradient, {node.Window}, {layer.Channels}, batch{accumulateWeights}{node.UpsampledValueArguments});");
                        else
                            w.Line($"Gemm.MultiplyTransposedA({node.PatchRows}, {node.Gradient}, {Plan.View(layer, "Kernel")}Gradient, {node.Window}.PatchSize, {rows}, {layer.Channels}{accumulateWeights});");
                        if (layer.UseBias && !plan.BiasTakenByPool(node)) w.Line($"Reductions.SumRows({node.Gradient}, {Plan.View(layer, "Bias")}Gradient, {rows}, {layer.Channels}{accumulateWeights});");
                    }
                    if (inputAtWinners)
                    {
                        w.Line($"Convolution.InputGradientAtWinners({pool!.Gradient}, {pool.Winners}, {Plan.View(layer, "Kernel")}, {input.Gradient}, {node.Window}, {pool.Window}, {layer.Channels}, batch, accumulate: {Bool(Into(input))});");
                    }
                    else if (input.NeedsGradient && inputProduct)
                    {
                        w.Line($"Gemm.MultiplyTransposedB({node.Gradient}, {Plan.View(layer, "Kernel")}, {input.Gradient}, {rows}, {layer.Channels}, {node.Window}.PatchSize{Flag(Into(input))});");
                    }
                    else if (input.NeedsGradient)
                    {
                        var target = node.GradientInput(0);
                        w.Line($"Convolution.Transposed({node.Gradient}, {Plan.View(layer, "Kernel")}, {NodePlan.PatchGradient}, {target.Gradient}, {node.Window}, {layer.Channels}, batch, accumulate: {Bool(Into(target))}{(scattered ? ", scattered: true" : "")}{node.UpsampledGradientArguments});");
                    }
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.BatchNormalization):
                {
                    var norm = node.Layer!;
                    var input = node.Inputs[0];
                    var (rows, channels) = Rows(spec);
                    if (!norm.Trainable)
                    {
                        w.Line($"// {node.Title}: frozen BatchNormalization scales the gradient by gamma / sqrt(moving variance + epsilon)");
                        w.Line($"BatchNorm.InferenceBackward({node.Gradient}, {Plan.View(norm, "Gamma")}, {Plan.View(norm, "MovingVariance")}, {input.Gradient}, {rows}, {channels}, {Literal(norm.Epsilon)}f, accumulate: {Bool(Into(input))});");
                        break;
                    }
                    bool shared = !weightsStarted.Add(norm);
                    string relu = node.ReadsReluGradient ? $"{node.RectifiedBy!.Title}'s relu' (its gradient where the normalized value is positive), then " : "";
                    w.Line($"// {node.Title}: {relu}gamma, beta{(input.NeedsGradient ? " and input" : "")} gradients through the batch statistics");
                    string inputGradient = input.NeedsGradient ? $"{input.Gradient}, " : "default, ";
                    string inputFlags = input.NeedsGradient ? $"computeInput: true, accumulateInput: {Bool(Into(input))}" : "computeInput: false, accumulateInput: false";
                    string rectified = node.ReadsReluGradient ? $", relu: true, beta: {Plan.View(norm, "Beta")}" : "";
                    w.Line($"BatchNorm.TrainingBackward({node.Gradient}, {input.TrainingSource}, {Plan.View(norm, "Gamma")}, {node.Mean}, {node.InverseStd}, {inputGradient}" +
                        $"{Plan.View(norm, "Gamma")}Gradient, {Plan.View(norm, "Beta")}Gradient, {rows}, {channels}, {inputFlags}, computeWeights: true, accumulateWeights: {Bool(shared)}{rectified});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.LayerNormalization):
                {
                    var norm = node.Layer!;
                    var input = node.Inputs[0];
                    var (rows, columns) = Rows(spec);
                    bool shared = norm.Trainable && !weightsStarted.Add(norm);
                    var parts = new List<string>();
                    if (norm.Trainable) parts.AddRange(new[] { "gamma", "beta" });
                    if (input.NeedsGradient) parts.Add("input");
                    w.Line($"// {node.Title}: {Describe(parts)} gradient{(parts.Count > 1 ? "s" : "")} through each row's statistics{(norm.Trainable ? "" : " (frozen: no weight gradients)")}");
                    string inputGradient = input.NeedsGradient ? $"{input.Gradient}, " : "default, ";
                    string inputFlags = input.NeedsGradient ? $"computeInput: true, accumulateInput: {Bool(Into(input))}" : "computeInput: false, accumulateInput: false";
                    string weights = norm.Trainable ? $"{Plan.View(norm, "Gamma")}Gradient, {Plan.View(norm, "Beta")}Gradient" : "default, default";
                    w.Line($"LayerNorm.Backward({node.Gradient}, {input.TrainingSource}, {Plan.View(norm, "Gamma")}, {node.Mean}, {node.InverseStd}, {inputGradient}{weights}, {rows}, {columns}, " +
                        $"{inputFlags}, computeWeights: {Bool(norm.Trainable)}, accumulateWeights: {Bool(shared)});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.Embedding) && node.AveragedBy is { } mean:
                    w.Line($"// {node.Title}: its table's gradient was taken through '{mean.Title}' above");
                    break;
                case NodeKind.Layer when node.AveragesTable:
                {
                    var lookups = node.Inputs[0];
                    var embedding = lookups.Layer!;
                    bool shared = !weightsStarted.Add(embedding);
                    w.Line($"// {node.Title}: each counted step's share of the gradient onto its id's row of '{lookups.Title}''s table");
                    w.Line($"EmbeddingKernel.MeanBackward({node.Gradient}, {lookups.Inputs[0].TrainingSource}, {Plan.View(embedding, "Embeddings")}Gradient, batch, {lookups.Spec.Shape[0]}, {embedding.InputDim}, {embedding.Channels}, " +
                        $"maskZero: {Bool(embedding.MaskZero)}, accumulate: {Bool(shared)});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.Embedding):
                {
                    var embedding = node.Layer!;
                    bool shared = !weightsStarted.Add(embedding);
                    w.Line($"// {node.Title}: each step's gradient onto its id's row of the table");
                    w.Line($"EmbeddingKernel.Backward({node.Gradient}, {node.Inputs[0].TrainingSource}, {Plan.View(embedding, "Embeddings")}Gradient, batch * {spec.Shape[0]}, {embedding.InputDim}, {embedding.Channels}, accumulate: {Bool(shared)});");
                    break;
                }
                case NodeKind.Layer when node.Layer!.IsMean:
                {
                    var input = node.Inputs[0];
                    bool rectified = plan.ReluTakenBy(node) is not null;
                    w.Line($"// {node.Title}: each {(input.MaskSource is null ? "" : "counted ")}{MeanStep(node)} gets its share of the gradient{(rectified ? $", where {input.Title}'s output is positive (its relu' taken here)" : "")}");
                    w.Line($"SequencePooling.AverageBackward({node.Gradient}, {input.StepMask}, {input.Gradient}, batch, {MeanRows(node)}, accumulate: {Bool(Into(input))}{(rectified ? $", rectified: {input.TrainingSource}" : "")});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.Masking):
                    w.Line($"// {node.Title}: Masking passes the gradient of the kept steps");
                    w.Line($"MaskingKernel.Backward({node.Gradient}, {node.SequenceMask}, {node.Inputs[0].Gradient}, batch * {spec.Shape[0]}, {spec.Shape[1]}, accumulate: {Bool(Into(node.Inputs[0]))});");
                    break;
                case NodeKind.Layer when node.Layer!.IsRecurrent:
                {
                    var rnn = node.Layer;
                    var input = node.Inputs[0];
                    bool shared = rnn.Trainable && !weightsStarted.Add(rnn);
                    bool? accumulateInput = input.NeedsGradient ? Into(input) : null;
                    var parts = new List<string>();
                    if (rnn.Trainable) parts.Add("kernel, recurrent kernel, bias");
                    if (input.NeedsGradient) parts.Add("input");
                    w.Line($"// {node.Title}: backpropagation through time{(rnn.Bidirectional ? " in both directions" : "")}: {Describe(parts)} gradients{(rnn.Trainable ? "" : " (frozen: no weight gradients)")}");
                    // The output's gradient, unless nothing read the output (only its returned state); the states' gradients join at the
                    // last step, and the initial states' come out of the first.
                    string outputGradient = gradientStarted.Contains(node.GradientOwner) ? node.Gradient : "default";
                    string inputGradient = input.NeedsGradient ? input.Gradient : "default";
                    string Gradient(string tensor) => rnn.Trainable ? $"{Plan.View(rnn, tensor)}Gradient" : "default";
                    if (rnn.Bidirectional)
                    {
                        // Both directions in one call, so they can run on the two cores; the backward one's input gradient adds to the forward one's.
                        w.Line($"Recurrent.BackwardBidirectional({node.Workspace("Forward")}, {node.Workspace("Backward")}, {outputGradient}, outputWidth: {rnn.Channels}, " +
                            $"{Plan.View(rnn, "ForwardKernel")}, {Plan.View(rnn, "ForwardRecurrentKernel")}, {Gradient("ForwardKernel")}, {Gradient("ForwardRecurrentKernel")}, {Gradient("ForwardBias")}, " +
                            $"{Plan.View(rnn, "BackwardKernel")}, {Plan.View(rnn, "BackwardRecurrentKernel")}, {Gradient("BackwardKernel")}, {Gradient("BackwardRecurrentKernel")}, {Gradient("BackwardBias")}, " +
                            $"{inputGradient}, batch, returnSequences: {Bool(rnn.ReturnSequences)}, computeWeights: {Bool(rnn.Trainable)}, " +
                            $"accumulateWeights: {Bool(shared)}, accumulateInput: {Bool(accumulateInput == true)}{ZeroOutputs(rnn)});");
                        break;
                    }
                    var stateList = new List<string>();
                    foreach (var state in node.States.Where(s => gradientStarted.Contains(s)))
                        stateList.Add($"{(state.Spec.Axis == 0 ? "finalStateGradient" : "finalCellGradient")}: {state.Gradient}");
                    for (int k = 1; k < node.Inputs.Count; k++)
                    {
                        if (!node.Inputs[k].NeedsGradient) continue;
                        string which = k == 1 ? "State" : "Cell";
                        stateList.Add($"initial{which}Gradient: {node.Inputs[k].Gradient}, accumulateInitial{which}: {Bool(Into(node.Inputs[k]))}");
                    }
                    string stateGradients = string.Concat(stateList.Select(a => ", " + a));
                    w.Line($"Recurrent.Backward({node.Workspace("")}, {outputGradient}, outputWidth: {rnn.Channels}, outputOffset: 0, {Plan.View(rnn, "Kernel")}, {Plan.View(rnn, "RecurrentKernel")}, " +
                        $"{Gradient("Kernel")}, {Gradient("RecurrentKernel")}, {Gradient("Bias")}, {inputGradient}, batch, returnSequences: {Bool(rnn.ReturnSequences)}, reverse: false, " +
                        $"computeWeights: {Bool(rnn.Trainable)}, accumulateWeights: {Bool(shared)}, accumulateInput: {Bool(accumulateInput == true)}{stateGradients});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.MultiHeadAttention):
                {
                    var attention = node.Layer!;
                    var (query, value, key) = (node.Inputs[0], node.Inputs[1], node.Inputs[2]);
                    bool shared = attention.Trainable && !weightsStarted.Add(attention);
                    // The kernel sends gradients to the query, then the key, then the value: '=' goes to the first that reaches a tensor.
                    string Target(NodePlan input) => input.NeedsGradient ? input.Gradient : "default";
                    string Accumulates(NodePlan input) => input.NeedsGradient && Into(input) ? "true" : "false";
                    string queryFlag = Accumulates(query), keyFlag = Accumulates(key), valueFlag = Accumulates(value);
                    string Gradient(string tensor) => attention.Trainable && (attention.UseBias || !tensor.EndsWith("Bias")) ? $"{Plan.View(attention, tensor)}Gradient" : "default";
                    w.Line($"// {node.Title}: through the output projection, the attention weights and the query, key and value projections{(attention.Trainable ? "" : " (frozen: no weight gradients)")}");
                    w.Line($"Attention.Backward({node.Workspace("")}, {node.Gradient}, {query.TrainingSource}, {value.TrainingSource}, {key.TrainingSource},");
                    w.Line($"    {string.Join(", ", AttentionTensors.Where(t => t.EndsWith("Kernel")).Select(t => Plan.View(attention, t)))},");
                    w.Line($"    {string.Join(", ", AttentionTensors.Select(Gradient))},");
                    w.Line($"    {Target(query)}, {Target(value)}, {Target(key)}, batch, computeWeights: {Bool(attention.Trainable)}, accumulateWeights: {Bool(shared)}, " +
                        $"accumulateQuery: {queryFlag}, accumulateValue: {valueFlag}, accumulateKey: {keyFlag});");
                    break;
                }
                case NodeKind.Layer when node.IsResampling:
                    w.Line($"// {node.Title}: {node.Layer!.TypeName} {(node.Is(LayerKind.UpSampling2D) ? "sums the gradient over each repeated block" : "passes back the gradient inside the frame")}");
                    w.Line($"{ResamplingKernel(node)}.Backward({node.Gradient}, {node.Inputs[0].Gradient}, {ResamplingGeometry(node)}, batch, accumulate: {Bool(Into(node.Inputs[0]))});");
                    break;
                case NodeKind.Layer when node.Is(LayerKind.DepthwiseConv2D):
                {
                    var layer = node.Layer!;
                    var input = node.Inputs[0];
                    bool shared = layer.Trainable && !weightsStarted.Add(layer);
                    var activation = plan.ActivationToUndo(node, layer.Activation);
                    w.Line($"// {node.Title}: {GradientsOf(plan, node, input.NeedsGradient ? "input" : null).Replace("kernel", "depthwise kernel")}");
                    EmitActivationBackward(w, node, activation);
                    string Gradient(string tensor) => layer.Trainable && (tensor != "Bias" || layer.UseBias) ? $"{Plan.View(layer, tensor)}Gradient" : "default";
                    string accumulateInput = input.NeedsGradient ? Bool(Into(input)) : "false";
                    w.Line($"DepthwiseConvolution.Backward({node.Gradient}, {input.TrainingSource}, {Plan.View(layer, "DepthwiseKernel")}, {Gradient("DepthwiseKernel")}, {Gradient("Bias")}, " +
                        $"{(input.NeedsGradient ? input.Gradient : "default")}, {node.Window}, multiplier: {layer.Channels / layer.InputShape[2]}, batch, " +
                        $"computeWeights: {Bool(layer.Trainable)}, accumulateWeights: {Bool(shared)}, accumulateInput: {accumulateInput});");
                    break;
                }
                case NodeKind.Layer when node.Is(LayerKind.Conv2DTranspose):
                {
                    var layer = node.Layer!;
                    var input = node.Inputs[0];
                    bool shared = layer.Trainable && !weightsStarted.Add(layer);
                    string accumulateWeights = shared ? ", accumulate: true" : "";
                    string rows = $"batch * {node.Window}.Positions";
                    var activation = plan.ActivationToUndo(node, layer.Activation);
                    w.Line($"// {node.Title}: {GradientsOf(plan, node, input.NeedsGradient ? "input" : null)}, through the output gradient's patches (im2col)");
                    EmitActivationBackward(w, node, activation);
                    w.Line($"Convolution.Im2Col({node.Gradient}, {NodePlan.PatchGradient}, {node.Window}, batch);");
                    if (layer.Trainable)
                    {
                        w.Line($"Gemm.MultiplyTransposedA({NodePlan.PatchGradient}, {input.TrainingSource}, {Plan.View(layer, "Kernel")}Gradient, {node.Window}.PatchSize, {rows}, {layer.InputShape[2]}{accumulateWeights});");
                        if (layer.UseBias && !plan.BiasTakenByPool(node)) w.Line($"Reductions.SumRows({node.Gradient}, {Plan.View(layer, "Bias")}Gradient, {Rows(spec).Rows}, {layer.Channels}{accumulateWeights});");
                    }
                    if (input.NeedsGradient) w.Line($"Gemm.Multiply({NodePlan.PatchGradient}, {Plan.View(layer, "Kernel")}, {input.Gradient}, {rows}, {node.Window}.PatchSize, {layer.InputShape[2]}{Flag(Into(input))});");
                    break;
                }
                case NodeKind.Layer when node.Layer!.IsWindowed && node.Layer.Kind != LayerKind.Conv2D:
                    if (node.UsesWinners)
                    {
                        // A convolution that takes its kernel gradient at the winners reads its scattered gradient only to pass it on.
                        var source = node.Inputs[0];
                        bool scatters = plan.HasGradientBuffer(source);
                        string sends = scatters ? $"then {node.Layer.TypeName} sends each gradient to its window's maximum"
                            : $"nothing scattered ({source.Title} takes its kernel gradient at the winners and {(source.Inputs[0].NeedsGradient ? "its input gradient there too" : "passes no gradient on")})";
                        if (plan.ReluTakenBy(node) is not null)
                        {
                            bool bias = plan.BiasTakenByPool(source);
                            w.Line($"// {node.Title}: {source.Title}'s relu'{(bias ? " and bias gradient" : "")} on the pooled gradient (max pooling commutes with relu), {sends}");
                            EmitActivationBackward(w, node, Activation.Relu);
                            var (rows, channels) = Rows(spec);
                            if (bias) w.Line($"Reductions.SumRows({node.Gradient}, {Plan.View(source.Layer!, "Bias")}Gradient, {rows}, {channels});");
                        }
                        else w.Line($"// {node.Title}: {node.Layer.TypeName} sends each gradient to its window's maximum");
                        if (scatters) w.Line($"Pooling.MaxBackward({node.Gradient}, {node.Winners}, {source.Gradient}, {node.Window}, batch, accumulate: {Bool(Into(source))});");
                    }
                    else
                    {
                        w.Line($"// {node.Title}: {node.Layer.TypeName} shares each gradient among the pixels it averaged");
                        w.Line($"Pooling.AverageBackward({node.Gradient}, {node.Inputs[0].Gradient}, {node.Window}, batch, accumulate: {Bool(Into(node.Inputs[0]))});");
                    }
                    break;
                case NodeKind.Layer when node.Layer!.IsReshape:
                    w.Line($"// {node.Title}: {node.Layer.TypeName} passes the gradient back unchanged{HandOverNote(plan, node)}");
                    EmitGradientCopy(w, plan, node, node.Inputs[0], Into(node.Inputs[0]));
                    break;
                case NodeKind.Layer when node.IsDropout:
                    w.Line($"// {node.Title}: Dropout passes gradients through the kept units");
                    w.Line($"DropoutKernel.Backward({node.Gradient}, {node.Mask}, {node.Inputs[0].Gradient}, batch * {size}{Flag(Into(node.Inputs[0]))});");
                    break;
                case NodeKind.Layer:
                case NodeKind.Function:
                {
                    var activation = spec.Kind == NodeKind.Layer ? node.Layer!.Activation : spec.Activation;
                    var undo = plan.ActivationToUndo(node, activation);
                    w.Line($"// {node.Title}: Activation({Lower(activation)})'{(undo != activation ? ", taken with " + plan.TakenWith(node) : "")}{HandOverNote(plan, node)}");
                    if (Plan.DerivesIntoInput(undo))
                    {
                        // The derivative straight into the input's gradient: one pass, not one in place and a copy.
                        var (rows, columns) = Rows(spec);
                        w.Line($"Activations.Backward(Activation.{undo}, {node.Output}, {node.Gradient}, {node.Inputs[0].Gradient}, {rows}, {columns}, accumulate: {Bool(Into(node.Inputs[0]))});");
                        break;
                    }
                    EmitActivationBackward(w, node, undo);
                    EmitGradientCopy(w, plan, node, node.Inputs[0], Into(node.Inputs[0]));
                    break;
                }
                case NodeKind.Merge:
                    w.Line($"// {node.Title}: {spec.Merge}'{HandOverNote(plan, node)}");
                    int offset = 0;
                    for (int i = 0; i < node.Inputs.Count; i++)
                    {
                        var input = node.Inputs[i];
                        int width = input.Spec.Size;
                        if (input.NeedsGradient)
                        {
                            bool into = Into(input);
                            string accumulate = Bool(into);
                            switch (spec.Merge)
                            {
                                case MergeOperation.Concatenate:
                                    var (rows, outputWidth, widths) = ConcatenateLayout(node);
                                    w.Line($"Merges.Slice({node.Gradient}, {outputWidth}, {offset}, {input.Gradient}, {widths[i]}, {rows}, accumulate: {accumulate});");
                                    break;
                                case MergeOperation.Dot:
                                    w.Line($"Merges.DotBackward({node.Gradient}, {node.Inputs[1 - i].TrainingSource}, {input.Gradient}, {width}, batch, accumulate: {accumulate});");
                                    break;
                                case MergeOperation.Multiply or MergeOperation.Maximum or MergeOperation.Minimum:
                                    var other = node.Inputs[1 - i];
                                    w.Line($"Merges.OperandGradient(MergeOperation.{spec.Merge}, {node.Gradient}, {input.TrainingSource}, {other.TrainingSource}, operandIsFirst: {Bool(i == 0)}, {input.Gradient}, batch * {size}, accumulate: {accumulate});");
                                    break;
                                case MergeOperation.Subtract when i == 1:
                                    w.Line($"Merges.Pass({node.Gradient}, {input.Gradient}, batch * {size}, accumulate: {accumulate}, scale: -1f);");
                                    break;
                                case MergeOperation.Average:
                                    w.Line($"Merges.Pass({node.Gradient}, {input.Gradient}, batch * {size}, accumulate: {accumulate}, scale: 1f / {node.Inputs.Count});");
                                    break;
                                default:
                                    EmitGradientCopy(w, plan, node, input, into);
                                    break;
                            }
                        }
                        offset += spec.Merge == MergeOperation.Concatenate ? ConcatenateLayout(node).Widths[i] : width;
                    }
                    break;
            }
        }
        w.Close();
        w.Line();
    }


    /// <summary>
    /// What a Dense or convolution block computes, in order: "relu', then kernel, bias and input gradients"; an activation the
    /// loss or a pooling took is named as such, and a frozen layer's weights get none.
    /// </summary>
    private static string GradientsOf(Plan plan, NodePlan node, string? input)
    {
        var layer = node.Layer!;
        var activation = plan.ActivationToUndo(node, layer.Activation);
        bool biasTaken = plan.BiasTakenByPool(node);
        var parts = new List<string>();
        // Behind a max pooling, the kernel gradient and perhaps the input's come from its winners.
        var pool = plan.KernelGradientPool(node);
        bool allAtWinners = plan.TakesInputGradientAtWinners(node);
        string kernel = pool is not null && !allAtWinners ? $"kernel (at {pool.Title}'s winners)" : node.ReadsUpsampledInput ? $"kernel (from {node.ValueInput(0).Title}, upsampled as it is read)"
            : node.KernelGradientReadsInput ? "kernel (from its input)" : "kernel";
        if (layer.Trainable) parts.AddRange(layer.UseBias && !biasTaken ? new[] { kernel, "bias" } : new[] { kernel });
        if (input is not null) parts.Add(input);
        string first = activation != Activation.Linear ? Lower(activation) + "', then "
            : layer.Activation != Activation.Linear ? $"{Lower(layer.Activation)}'{(biasTaken ? " and bias gradient" : "")} taken with {plan.TakenWith(node)}, then " : "";
        return first + Describe(parts) + " gradient" + (parts.Count > 1 ? "s" : "") + (allAtWinners ? $" at {pool!.Title}'s winners" : "")
            + (layer.Trainable ? "" : " (frozen: no weight gradients)");
    }

    /// <summary>
    /// A block's gradient copied unchanged into an input's (<see cref="Plan.CopiesGradient"/>): nothing where the plan hands the
    /// floats over, as that gradient's first write.
    /// </summary>
    private static void EmitGradientCopy(CodeWriter w, Plan plan, NodePlan node, NodePlan input, bool accumulate)
    {
        if (!plan.HandsOverGradient(node, input))
            w.Line($"Merges.Pass({node.Gradient}, {input.Gradient}, batch * {node.Spec.Size}, accumulate: {Bool(accumulate)});");
        else if (accumulate)
            throw new InvalidOperationException($"'{node.Title}' hands its gradient to '{input.Title}', whose gradient an earlier block wrote.");
    }

    /// <summary>The inputs a block hands its gradient's floats to, for its comment: " (relu takes its gradient's floats as its own: nothing to copy)", or nothing.</summary>
    private static string HandOverNote(Plan plan, NodePlan node)
    {
        var names = node.Inputs.Where(input => plan.HandsOverGradient(node, input)).Select(input => input.Title).ToList();
        return names.Count == 0 ? "" : $" ({string.Join(" and ", names)} {(names.Count == 1 ? "takes its gradient's floats as its own" : "take its gradient's floats as theirs")}: nothing to copy)";
    }

    /// <summary>The activation's derivative over the block's gradient, in place; nothing for a linear one.</summary>
    private static void EmitActivationBackward(CodeWriter w, NodePlan node, Activation activation)
    {
        if (activation == Activation.Linear) return;
        var (rows, columns) = Rows(node.Spec);
        w.Line($"Activations.Backward(Activation.{activation}, {node.Output}, {node.Gradient}, {rows}, {columns});");
    }
}
