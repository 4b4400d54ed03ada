using System;
using System.Globalization;
using System.IO;
using System.Linq;
using ModelGen.Kernels;

namespace ModelGen.Samples;

/// <summary>A table of float features with an integer class label in the last column, loaded from CSV.</summary>
public sealed class LabeledData
{
    public LabeledData(float[] features, float[] labels, int featureCount)
    {
        Features = features;
        Labels = labels;
        FeatureCount = featureCount;
    }

    public float[] Features { get; }
    public float[] Labels { get; }
    public int FeatureCount { get; }
    public int Count => Labels.Length;

    /// <summary>Reads a CSV with one header row; the last column is the label.</summary>
    public static LabeledData Load(string path)
    {
        var rows = File.ReadAllLines(path).Skip(1).Where(l => l.Length > 0)
            .Select(l => l.Split(',').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        int featureCount = rows[0].Length - 1;
        return new LabeledData(rows.SelectMany(r => r.Take(featureCount)).ToArray(), rows.Select(r => r[featureCount]).ToArray(), featureCount);
    }

    /// <summary>A seeded, shuffled split: the same seed gives the same test set on every machine.</summary>
    public (LabeledData Train, LabeledData Test) Split(double testFraction, int seed)
    {
        var order = Enumerable.Range(0, Count).ToArray();
        new SeededRandom(seed).Shuffle(order);
        int testCount = (int)Math.Round(Count * testFraction);
        return (Subset(order.Skip(testCount).ToArray()), Subset(order.Take(testCount).ToArray()));
    }

    private LabeledData Subset(int[] rows) => new(
        rows.SelectMany(r => Features.Skip(r * FeatureCount).Take(FeatureCount)).ToArray(),
        rows.Select(r => Labels[r]).ToArray(),
        FeatureCount);

    /// <summary>Per-feature mean and standard deviation of this (training) set, applied to any set.</summary>
    public Func<LabeledData, LabeledData> FitStandardizer()
    {
        var mean = new float[FeatureCount];
        var std = new float[FeatureCount];
        for (int j = 0; j < FeatureCount; j++)
        {
            var column = Enumerable.Range(0, Count).Select(i => (double)Features[i * FeatureCount + j]).ToArray();
            double m = column.Average();
            mean[j] = (float)m;
            std[j] = (float)Math.Max(Math.Sqrt(column.Average(v => (v - m) * (v - m))), 1e-6);
        }
        return data => new LabeledData(
            data.Features.Select((v, i) => (v - mean[i % FeatureCount]) / std[i % FeatureCount]).ToArray(), data.Labels, FeatureCount);
    }

    /// <summary>The samples whose label is in [first, first + count), relabelled 0..count-1: one task of a split label set.</summary>
    public LabeledData Classes(int first, int count)
    {
        var kept = Subset(Enumerable.Range(0, Count).Where(i => Labels[i] >= first && Labels[i] < first + count).ToArray());
        return new LabeledData(kept.Features, kept.Labels.Select(l => l - first).ToArray(), FeatureCount);
    }

    /// <summary>The first <paramref name="count"/> samples.</summary>
    public LabeledData Take(int count) => Subset(Enumerable.Range(0, Math.Min(count, Count)).ToArray());

    public LabeledData Scale(float factor) => new(Features.Select(v => v * factor).ToArray(), Labels, FeatureCount);
}
