using System.Collections.Generic;
using System.Linq;
using ModelGen.Graph;

namespace ModelGen.Generator;

/// <summary>
/// Runs of forward blocks that each go row by row over the same rows (a Transformer's add, normalization, feed-forward pair,
/// add and normalization over its tokens), emitted as one method over a range of rows that Forward calls through
/// RowParts.Run: in two parts of the rows on the two cores where that pays, each core taking its part through every block
/// with one hand-off, where each block's kernel took one. A multi-head attention may open a run: its heads are computed
/// before (Attention.Attend), its output projection is the run's first block (Attention.ProjectOutput, row by row from the
/// context the heads left). A run may read one model input, which its method takes as a parameter and slices (an MLP's
/// layers from its input on). The parts run at once, so an inference copy's values that a run names share floats only row
/// for row (PlanInferenceValues, ArenaLayout.Lifetime.Runs).
/// </summary>
internal static partial class ModelEmitter
{
    /// <summary>
    /// Blocks in a row of Forward's order over <see cref="RowsPerSample"/> rows a sample, each reading only rows of values or
    /// of a model input: dense layers, layer normalizations, element-wise merges and activations, after an attention's output projection.
    /// </summary>
    private sealed record RowRun(IReadOnlyList<NodePlan> Nodes, int RowsPerSample, long MultiplyAddsPerRow, long KernelFloats)
    {
        public NodePlan First => Nodes[0];
        public NodePlan Last => Nodes[Nodes.Count - 1];

        /// <summary>The method that runs a range of its rows: ForwardAttentionToEncoded (<see cref="OwnMethod"/>, or aside from the user's: Plan.MethodName).</summary>
        public string Method { get; init; } = "";

        /// <summary>The method's name from the blocks it runs.</summary>
        public string OwnMethod => "Forward" + Plan.Capitalized(First.Title) + "To" + Plan.Capitalized(Last.Title);

        /// <summary>The method's parameters: the model input it reads, if any, then first and rows.</summary>
        public int MethodParameters => Input is null ? 2 : 3;

        /// <summary>Its rows over a batch, as the call counts them.</summary>
        public string Rows => RowsPerSample == 1 ? "batch" : $"batch * {RowsPerSample}";

        /// <summary>The values a block reads in a run: its inputs, but none for an attention, whose projection reads its context.</summary>
        public static IEnumerable<NodePlan> ReadIn(NodePlan node) => node.Is(LayerKind.MultiHeadAttention) ? Enumerable.Empty<NodePlan>() : node.Inputs;

        /// <summary>The model inputs its blocks read (Forward's parameters, handed to the run's method whole).</summary>
        public IReadOnlyList<NodePlan> ModelInputs { get; } = Nodes.SelectMany(ReadIn).Where(i => i.Spec.Kind == NodeKind.Input).Distinct().ToList();

        /// <summary>The names the run's method and its call take for themselves: a model input of one of them joins no run.</summary>
        public static readonly string[] PartNames = { "model", "first", "rows" };

        /// <summary>The model input it reads, if any (at most one: RowParts hands a part one span).</summary>
        public string? Input => ModelInputs.Count == 1 ? ModelInputs[0].InferenceName : null;
    }

    /// <summary>
    /// The model's row runs: each longest stretch of blocks over the same rows a sample (<see cref="RowBlockRows"/>), a pair
    /// of dense layers (one call) wholly in one or out of all, kept where it is worth a method: at least two blocks that
    /// compute (a pair is one), so that the cut saves a hand-off, and products (dense layers, an attention's output projection)
    /// that RowParts would cut at some batch of at most <see cref="MostRowsToPay"/> rows; and at most one model input read
    /// (<see cref="RowRun.ModelInputs"/>).
    /// </summary>
    private static List<RowRun> RowRuns(List<NodePlan> nodes, Dictionary<NodePlan, DensePair> densePairs)
    {
        var pairs = densePairs.Values.Distinct().ToList();
        var apart = new HashSet<NodePlan>();
        while (true)
        {
            var runs = new List<List<NodePlan>>();
            List<NodePlan>? run = null;
            int runRows = 0;
            foreach (var node in nodes)
            {
                int rows = apart.Contains(node) ? 0 : RowBlockRows(node);
                if (rows == 0)
                {
                    run = null;
                    continue;
                }
                // An attention's heads must be done before its projection's rows: it opens a run.
                if (run is null || rows != runRows || node.Is(LayerKind.MultiHeadAttention))
                {
                    run = new List<NodePlan>();
                    runs.Add(run);
                    runRows = rows;
                }
                run.Add(node);
            }
            var split = pairs.Where(p => runs.FindIndex(r => r.Contains(p.First)) != runs.FindIndex(r => r.Contains(p.Second))).ToList();
            if (split.Count == 0)
            {
                var paired = new HashSet<NodePlan>(pairs.Select(p => p.First));
                return runs
                    .Where(r => r.Count(n => !paired.Contains(n) && !n.IsTakenByInput) >= 2)
                    .Select(r =>
                    {
                        var products = r.Where(n => n.Is(LayerKind.Dense) || n.Is(LayerKind.MultiHeadAttention)).Select(n => n.Layer!).ToList();
                        return new RowRun(r, RowBlockRows(r[0]), products.Sum(RowKernelFloats), products.Distinct().Sum(RowKernelFloats));
                    })
                    .Where(r => r.KernelFloats <= Kernels.SharedRules.RowKernelFloatsInL2 && r.MultiplyAddsPerRow * MostRowsToPay >= Kernels.SharedRules.RowInferenceWork
                        && r.ModelInputs.Count <= 1)
                    .ToList();
            }
            foreach (var pair in split)
            {
                apart.Add(pair.First);
                apart.Add(pair.Second);
            }
        }
    }

    /// <summary>A row's multiply-adds in a dense layer or an attention's output projection: its kernel's floats (one multiply-add each).</summary>
    private static long RowKernelFloats(LayerSpec layer) =>
        layer.Kind == LayerKind.MultiHeadAttention ? (long)layer.Extents[0] * layer.Extents[2] * layer.Extents[3] : (long)layer.InputSize * layer.Channels;

    /// <summary>
    /// The most rows a run may need before RowParts' rule (<see cref="Kernels.SharedRules"/>: kernels in L2, the multiply-adds
    /// of a prediction) cuts it: one that would take more (a few small layers, as in tests and samples) stays inline.
    /// </summary>
    private const long MostRowsToPay = 256;

    /// <summary>
    /// The rows a sample has (its shape but the last axis) in a block that goes row by row and can join a run, reading values
    /// with as many rows (value buffers or a model input, no alias or dropout: a part's rows are slices of them); 0 for any other. An
    /// attention's rows are its output projection's, which reads the context its heads left in the workspace. Not a product
    /// that the matrix kernel may sum over its depth in parts (no bias, no ReLU, 2,048 deep at least: Gemm.IsDeep), where
    /// fewer rows could mean another order of sums.
    /// </summary>
    private static int RowBlockRows(NodePlan node)
    {
        var spec = node.Spec;
        bool rowByRow = spec.Kind switch
        {
            NodeKind.Function => true,
            NodeKind.Merge => spec.Merge is not (MergeOperation.Concatenate or MergeOperation.Dot),
            NodeKind.Layer => node.Layer!.Kind switch
            {
                LayerKind.Dense => node.Layer.UseBias || node.Layer.Activation == Activation.Relu || node.Layer.InputSize < 2048,
                LayerKind.MultiHeadAttention => node.Layer.UseBias || node.Layer.Extents[0] * node.Layer.Extents[2] < 2048,
                LayerKind.LayerNormalization or LayerKind.Activation => true,
                _ => false,
            },
            _ => false,
        };
        int rows = spec.Size / Rows(spec).Columns;
        bool readsRows = RowRun.ReadIn(node).All(i => !i.IsAlias && !i.IsDropout && i.Spec.Size / Rows(i.Spec).Columns == rows
            && !(i.Spec.Kind == NodeKind.Input && RowRun.PartNames.Contains(i.InferenceName)));
        return rowByRow && readsRows ? rows : 0;
    }

    private static void EmitRowRunCall(CodeWriter w, RowRun run)
    {
        if (run.First.Is(LayerKind.MultiHeadAttention))
        {
            EmitAttend(w, run.First, $"its output projection in {run.Method} below");
            w.Line();
        }
        w.Line($"// {run.First.Title} to {run.Last.Title}: {run.Nodes.Count} blocks that each go row by row over the same rows, {run.Method} below: " +
            "in two parts of the rows where that pays, each core taking its part through all of them (one hand-off)");
        string input = run.Input is { } x ? $"{x}, " : "";
        w.Line($"RowParts.Run(this, {input}{run.Rows}, multiplyAddsPerRow: {run.MultiplyAddsPerRow}, kernelFloats: {run.KernelFloats}, training, static (model, {input}first, rows) => model.{run.Method}({input}first, rows));");
    }

    /// <summary>A run's blocks over rows [first, first + rows), each tensor they name a local over those rows of its buffer.</summary>
    private static void EmitRowRun(CodeWriter w, ForwardBlocks blocks, RowRun run)
    {
        w.Line($"/// <summary>Forward's blocks from {run.First.Title} to {run.Last.Title} over rows [first, first + rows) of {run.Rows} (RowParts.Run).</summary>");
        w.Open($"private void {run.Method}({(run.Input is { } input ? $"ReadOnlySpan<float> {input}, " : "")}int first, int rows)");
        w.Line("// This part's rows of each tensor the blocks read or write, under the tensor's own name");
        foreach (var (name, columns, written) in RowTensors(blocks, run))
        {
            string range = columns == 1 ? "first, rows" : $"first * {columns}, rows * {columns}";
            if (name == run.Input) w.Line($"{name} = {name}.Slice({range});");
            else w.Line($"{(written ? "Span<float>" : "ReadOnlySpan<float>")} {name} = this.{name}.AsSpan({range});");
        }
        var part = blocks with { PartRows = "rows" };
        foreach (var node in run.Nodes)
        {
            w.Line();
            part.Emit(w, node);
        }
        w.Close();
        w.Line();
    }

    /// <summary>The buffers a run's blocks name (<see cref="ForwardBlocks.Emit"/>), in order, with their floats a row and whether a block writes them.</summary>
    private static List<(string Name, int Columns, bool Written)> RowTensors(ForwardBlocks blocks, RowRun run)
    {
        var tensors = new List<(string Name, int Columns, bool Written)>();
        void Name(string name, NodeSpec spec, bool written)
        {
            int index = tensors.FindIndex(t => t.Name == name);
            if (index < 0) tensors.Add((name, Rows(spec).Columns, written));
            else if (written) tensors[index] = (name, tensors[index].Columns, true);
        }
        void Statistic(string name)
        {
            if (tensors.All(t => t.Name != name)) tensors.Add((name, 1, true));
        }
        foreach (var node in run.Nodes)
        {
            if (node.IsTakenByInput) continue;
            if (blocks.Pairs.TryGetValue(node, out var pair))
            {
                if (node == pair.First) continue;
                Name(pair.First.Inputs[0].InferenceName, pair.First.Inputs[0].Spec, written: false);
                Name(pair.First.Output, pair.First.Spec, written: true);
            }
            else
            {
                foreach (var input in RowRun.ReadIn(node)) Name(input.InferenceName, input.Spec, written: false);
            }
            Name(node.WrittenTo, node.Spec, written: true);
            if (node.Is(LayerKind.LayerNormalization) && !blocks.InferenceOnly)
            {
                Statistic(node.Mean);
                Statistic(node.InverseStd);
            }
        }
        return tensors;
    }
}
