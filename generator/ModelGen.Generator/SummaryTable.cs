using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using ModelGen.Graph;

namespace ModelGen.Generator;

/// <summary>
/// Keras 3's model.summary() table, computed at compile time: for a Sequential model the layers after the
/// input; for a Functional model every layer once (inputs included) with a "Connected to" column.
/// </summary>
internal static class SummaryTable
{
    public static string Render(ModelSpec model)
    {
        var rows = model.IsFunctional ? FunctionalRows(model) : SequentialRows(model);
        var header = model.IsFunctional
            ? new[] { "Layer (type)", "Output Shape", "Param #", "Connected to" }
            : new[] { "Layer (type)", "Output Shape", "Param #" };
        int[] widths = model.IsFunctional ? new[] { 29, 26, 13, 26 } : new[] { 36, 27, 15 };
        for (int c = 0; c < widths.Length; c++) widths[c] = Math.Max(widths[c], rows.Select(r => r[c].Length).DefaultIfEmpty(0).Max());

        var text = new StringBuilder();
        text.Append("Model: \"").Append(model.ClassName).Append("\"\n");
        text.Append(Border('┏', '━', '┳', '┓', widths));
        text.Append(Row('┃', header, widths));
        text.Append(Border('┡', '━', '╇', '┩', widths));
        for (int r = 0; r < rows.Count; r++)
        {
            if (r > 0) text.Append(Border('├', '─', '┼', '┤', widths));
            text.Append(Row('│', rows[r], widths));
        }
        text.Append(Border('└', '─', '┴', '┘', widths));
        long total = model.ParameterCount, trainable = model.TrainableParameterCount;
        text.Append($" Total params: {ModelEmitter.Number(total)} ({MemorySize.Readable(total * 4)})\n");
        text.Append($" Trainable params: {ModelEmitter.Number(trainable)} ({MemorySize.Readable(trainable * 4)})\n");
        text.Append($" Non-trainable params: {ModelEmitter.Number(total - trainable)} ({MemorySize.Readable((total - trainable) * 4)})");
        return text.ToString();
    }

    private static List<string[]> SequentialRows(ModelSpec model) =>
        model.Layers.Skip(1).Select(l => new[] { $"{l.Name} ({l.TypeName})", Shape(l.OutputShape), ModelEmitter.Number(l.ParameterCount) }).ToList();

    /// <summary>One row per layer (a shared layer once, listing every tensor it is applied to), merges and activation functions by their Keras names.</summary>
    private static List<string[]> FunctionalRows(ModelSpec model)
    {
        var rows = new List<string[]>();
        var rowOfLayer = new Dictionary<int, int>();
        var callIndex = new Dictionary<int, int>();   // node -> which call of its layer it is
        for (int n = 0; n < model.Nodes.Count; n++)
        {
            var node = model.Nodes[n];
            if (node.Kind == NodeKind.State) continue; // a returned state is its layer's second (third) output, not a row
            callIndex[n] = node.Layer >= 0 ? model.Nodes.Take(n).Count(o => o.Layer == node.Layer) : 0;
            string connected = node.Inputs.Count == 0 ? "-" : string.Join(", ", node.Inputs.Select(i => Reference(model, i, callIndex)));
            if (node.Layer >= 0 && rowOfLayer.TryGetValue(node.Layer, out int existing))
            {
                rows[existing][3] += ", " + connected;
                continue;
            }
            string type = node.Kind switch
            {
                NodeKind.Merge => node.Merge.ToString(),
                NodeKind.Function => "Activation",
                _ => model.Layers[node.Layer].TypeName,
            };
            int parameters = node.Layer >= 0 ? model.Layers[node.Layer].ParameterCount : 0;
            rows.Add(new[] { $"{Producer(model, n)} ({type})", Shape(node.Shape), ModelEmitter.Number(parameters), connected });
            if (node.Layer >= 0) rowOfLayer[node.Layer] = rows.Count - 1;
        }
        return rows;
    }

    /// <summary>Keras' "layer[call][output]": a returned state is output 1 (h) or 2 (c) of its layer's call.</summary>
    private static string Reference(ModelSpec model, int node, Dictionary<int, int> callIndex)
    {
        var spec = model.Nodes[node];
        if (spec.Kind == NodeKind.State) return $"{Producer(model, spec.Inputs[0])}[{callIndex[spec.Inputs[0]]}][{spec.Axis + 1}]";
        return $"{Producer(model, node)}[{callIndex[node]}][0]";
    }

    /// <summary>The layer a tensor comes out of: the field (or input) for layer nodes, the merge's own name otherwise.</summary>
    private static string Producer(ModelSpec model, int node) =>
        model.Nodes[node].Layer >= 0 ? model.Layers[model.Nodes[node].Layer].Name : model.Nodes[node].Name;

    private static string Shape(IEnumerable<int> shape) => "(None, " + string.Join(", ", shape) + ")";

    private static string Border(char left, char fill, char join, char right, int[] widths) =>
        left + string.Join(join.ToString(), widths.Select(w => new string(fill, w + 2))) + right + "\n";

    /// <summary>Names, shapes and connections left-aligned, parameter counts right-aligned, as Keras prints them.</summary>
    private static string Row(char edge, IReadOnlyList<string> cells, int[] widths)
    {
        var text = new StringBuilder().Append(edge);
        for (int c = 0; c < cells.Count; c++)
        {
            text.Append(' ').Append(c == 2 ? cells[c].PadLeft(widths[c]) : cells[c].PadRight(widths[c])).Append(' ').Append(edge);
        }
        return text.Append('\n').ToString();
    }
}
