using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Globalization;
using System.Text;

namespace ModelGen.Training;

/// <summary>
/// Keras-style progress: on a terminal a live bar redrawn in place during each epoch; when output is
/// redirected (CI logs, files) one line per epoch, so logs stay readable.
/// </summary>
internal sealed class ProgressReporter
{
    private const int BarWidth = 20;
    private readonly bool live;
    private readonly bool silent;
    private readonly int epochs;
    private readonly int steps;
    private readonly Stopwatch clock = new();
    private long lastDraw;

    public ProgressReporter(Verbosity verbosity, int epochs, int steps)
    {
        silent = verbosity == Verbosity.Silent;
        live = verbosity == Verbosity.Auto && !Console.IsOutputRedirected;
        this.epochs = epochs;
        this.steps = steps;
    }

    public void BeginEpoch(int epoch)
    {
        clock.Restart();
        lastDraw = -1;
        if (live) Console.WriteLine($"Epoch {epoch + 1}/{epochs}");
    }

    /// <summary>Whether <see cref="Step"/> draws anything: a live bar on a terminal. Otherwise callers skip computing its metrics.</summary>
    public bool DrawsSteps => live;

    public void Step(int step, IReadOnlyDictionary<string, float> metrics)
    {
        if (!live) return;
        long now = clock.ElapsedMilliseconds;
        if (step < steps && now - lastDraw < 50) return; // redraw at most 20 times a second
        lastDraw = now;
        Console.Write("\r" + Bar(step) + $" {step}/{steps} - {Format(metrics)}   ");
    }

    public void EndEpoch(EpochLogs logs)
    {
        if (silent) return;
        string text = Format(logs.Metrics);
        double ms = clock.Elapsed.TotalMilliseconds;
        string timing = $"{ms / 1000:0}s {ms / steps:0.###}ms/step";
        if (live) Console.WriteLine("\r" + Bar(steps) + $" {steps}/{steps} {timing} - {text}   ");
        else Console.WriteLine($"Epoch {logs.Epoch + 1}/{epochs} - {timing} - {text}");
    }

    /// <summary>Keras' order: training metrics alphabetically, then validation ones.</summary>
    private static string Format(IReadOnlyDictionary<string, float> metrics) => string.Join(" - ", metrics
        .OrderBy(m => m.Key.StartsWith("val_", StringComparison.Ordinal)).ThenBy(m => m.Key, StringComparer.Ordinal)
        .Select(m => m.Key + ": " + m.Value.ToString("0.0000", CultureInfo.InvariantCulture)));

    private string Bar(int step)
    {
        int filled = steps == 0 ? BarWidth : step * BarWidth / steps;
        return new StringBuilder().Append('━', filled).Append('─', BarWidth - filled).ToString();
    }
}
