using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using ModelGen.Graph;

namespace ModelGen.Generator;

/// <summary>Keras 3's model.summary() table: the same columns, numbers and memory sizes, computed at compile time.</summary>
internal static class SummaryTable
{
    public static string Render(ModelSpec model)
    {
        var rows = model.Layers.Skip(1) // Keras does not list a Sequential model's input layer
            .Select(l => new[] { $"{l.Name} ({l.TypeName})", "(None, " + string.Join(", ", l.OutputShape) + ")", ModelEmitter.Number(l.ParameterCount) })
            .ToList();
        var header = new[] { "Layer (type)", "Output Shape", "Param #" };
        int[] widths = { 36, 27, 15 };
        for (int c = 0; c < 3; c++) widths[c] = Math.Max(widths[c], rows.Select(r => r[c].Length).DefaultIfEmpty(0).Max());

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
        long total = model.ParameterCount;
        text.Append($" Total params: {ModelEmitter.Number(total)} ({Memory(total * 4)})\n");
        text.Append($" Trainable params: {ModelEmitter.Number(total)} ({Memory(total * 4)})\n");
        text.Append($" Non-trainable params: 0 ({Memory(0)})");
        return text.ToString();
    }

    private static string Border(char left, char fill, char join, char right, int[] widths) =>
        left + string.Join(join.ToString(), widths.Select(w => new string(fill, w + 2))) + right + "\n";

    /// <summary>Names and shapes left-aligned, parameter counts right-aligned, as Keras prints them.</summary>
    private static string Row(char edge, IReadOnlyList<string> cells, int[] widths) =>
        edge + " " + cells[0].PadRight(widths[0]) + " " + edge + " " + cells[1].PadRight(widths[1]) + " " + edge + " " + cells[2].PadLeft(widths[2]) + " " + edge + "\n";

    /// <summary>Keras' readable_memory_size: divide by 1024 until below it, two decimals.</summary>
    private static string Memory(double bytes)
    {
        string[] units = { "B", "KB", "MB", "GB", "TB" };
        foreach (var unit in units)
        {
            if (bytes / 1024 < 1) return bytes.ToString("0.00", CultureInfo.InvariantCulture) + " " + unit;
            bytes /= 1024;
        }
        return bytes.ToString("0.00", CultureInfo.InvariantCulture) + " PB";
    }
}
