using System.Diagnostics;
using System.Text.Json;
using ModelGen;
using ModelGen.Kernels;
using ModelGen.Samples;
using ModelGen.Training;

/// <summary>
/// The ModelGen side of benchmarks/compare.sh: the workloads of peer/torch_peer.py, timed the same way
/// (warm-up, then <see cref="Samples"/> samples of back-to-back calls lasting at least 10 ms each; the median, in ms).
/// BenchmarkDotNet (the other suites here) gives the detailed statistics; this gives comparable numbers in seconds.
/// </summary>
public static class PeerHarness
{
    public static void Run(string outputPath)
    {
        var results = new Dictionary<string, double>();
        var random = new SeededRandom(1);
        foreach (int batch in new[] { 1, 32, 128 })
        {
            var model = new MnistClassifier(maxBatchSize: batch, seed: 0);
            var x = Enumerable.Range(0, batch * 784).Select(_ => random.NextFloat()).ToArray();
            var y = new float[batch * 10];
            results[$"mlp predict b{batch}"] = Time(() => model.Predict(x, y));
        }
        foreach (int batch in new[] { 32, 128 })
        {
            var model = new MnistClassifier(maxBatchSize: batch, seed: 0);
            var x = Enumerable.Range(0, batch * 784).Select(_ => random.NextFloat()).ToArray();
            var y = Enumerable.Range(0, batch).Select(i => (float)(i % 10)).ToArray();
            var optimizer = new Adam(1e-3f);
            results[$"mlp train step b{batch}"] = Time(() => model.TrainStep(x, y, optimizer));
        }
        {
            var model = new ResidualMlp(maxBatchSize: 1, seed: 0);
            var x = Enumerable.Range(0, 64).Select(_ => random.NextFloat()).ToArray();
            var y = new float[10];
            results["residual predict b1"] = Time(() => model.Predict(x, y));
        }
        {
            var model = new ResidualMlp(maxBatchSize: 128, seed: 0);
            var x = Enumerable.Range(0, 128 * 64).Select(_ => random.NextFloat()).ToArray();
            var y = Enumerable.Range(0, 128).Select(i => (float)(i % 10)).ToArray();
            var optimizer = new Adam(1e-3f);
            results["residual train step b128"] = Time(() => model.TrainStep(x, y, optimizer));
        }
        {
            var model = new SmallCnn(maxBatchSize: 1, seed: 0);
            var x = Enumerable.Range(0, 784).Select(_ => random.NextFloat()).ToArray();
            var y = new float[10];
            results["cnn predict b1"] = Time(() => model.Predict(x, y));
        }
        {
            var model = new SmallCnn(maxBatchSize: 64, seed: 0);
            var x = Enumerable.Range(0, 64 * 784).Select(_ => random.NextFloat()).ToArray();
            var y = Enumerable.Range(0, 64).Select(i => (float)(i % 10)).ToArray();
            var optimizer = new Adam(1e-3f);
            results["cnn train step b64"] = Time(() => model.TrainStep(x, y, optimizer));
        }
        foreach (var (m, n, k) in new[] { (128, 256, 784), (128, 128, 256), (128, 10, 128), (1, 256, 784), (2048, 2048, 2048) })
        {
            var a = Enumerable.Range(0, m * k).Select(_ => random.NextFloat()).ToArray();
            var b = Enumerable.Range(0, k * n).Select(_ => random.NextFloat()).ToArray();
            var c = new float[m * n];
            results[$"gemm {m}x{n}x{k}"] = Time(() => Gemm.Multiply(a, b, c, m, k, n));
        }
        // The largest product again on one core, for its share of the FMA peak.
        var singleThread = new Dictionary<string, double>();
        {
            var a = Enumerable.Range(0, 2048 * 2048).Select(_ => random.NextFloat()).ToArray();
            var b = Enumerable.Range(0, 2048 * 2048).Select(_ => random.NextFloat()).ToArray();
            var c = new float[2048 * 2048];
            int threads = Helper.Threads;
            Helper.Threads = 1;
            try { singleThread["gemm 2048x2048x2048"] = Time(() => Gemm.Multiply(a, b, c, 2048, 2048, 2048)); }
            finally { Helper.Threads = threads; }
        }
        var scaling = new Dictionary<string, double>();
        foreach (int width in ScalingModels.Widths)
        {
            foreach (int batch in new[] { 1, 128 })
            {
                var model = ScalingModels.Create(width, batch);
                var x = Enumerable.Range(0, batch * width).Select(_ => random.NextFloat()).ToArray();
                var y = new float[batch * 10];
                scaling[$"{width} b{batch}"] = Time(() => model.Predict(x, y));
            }
        }
        File.WriteAllText(outputPath, JsonSerializer.Serialize(new { results, single_thread = singleThread, scaling, info = new { simd = Simd.Current.ToString(), threads = Helper.Threads, runtime = Environment.Version.ToString() } }));
    }

    /// <summary>
    /// scikit-learn's MLPClassifier(hidden_layer_sizes=(64,)) configuration, trained by Fit: 64-64-10, relu, Adam(1e-3), batches
    /// of 200, 200 epochs (sklearn hits its max_iter on the scaled digits), on a 80/20 split of the same digits. The median of
    /// five complete fits from fresh models, in seconds, and the last one's test accuracy. (sklearn adds an L2 penalty of 1e-4
    /// and stops early on a loss plateau; here every epoch runs.)
    /// </summary>
    public static object DigitsFit()
    {
        var (train, test) = LabeledData.Load(Path.Combine(AppContext.BaseDirectory, "data", "digits.csv")).Split(testFraction: 0.2, seed: 0);
        (train, test) = (train.Scale(1f / 16), test.Scale(1f / 16));
        var seconds = new List<double>();
        double accuracy = 0;
        for (int run = 0; run < 6; run++)
        {
            var model = new SklearnDigitsMlp(maxBatchSize: 200, seed: 0);
            var clock = Stopwatch.StartNew();
            model.Fit(train.Features, train.Labels, new Adam(1e-3f), epochs: 200, batchSize: 200, seed: 0, verbose: Verbosity.Silent);
            if (run > 0) seconds.Add(clock.Elapsed.TotalSeconds); // the first run warms the JIT up
            accuracy = model.Evaluate(test.Features, test.Labels).Accuracy;
        }
        seconds.Sort();
        return new { fit_s = seconds[seconds.Count / 2], epochs = 200, test_accuracy = accuracy };
    }

    /// <summary>Samples per workload: COMPARE_SAMPLES (compare.sh sets it for each of its rounds), 25 when unset.</summary>
    private static readonly int Samples = int.TryParse(Environment.GetEnvironmentVariable("COMPARE_SAMPLES"), out int samples) && samples > 0 ? samples : 25;

    private static double Time(Action action)
    {
        // Enough warm-up for tiered JIT to reach its final code.
        var warm = Stopwatch.StartNew();
        int calls = 0;
        while (warm.Elapsed.TotalSeconds < 1 || calls < 200) { action(); calls++; }
        double perCall = warm.Elapsed.TotalSeconds / calls;
        int inner = Math.Max(1, (int)(0.01 / perCall));
        var samples = new double[Samples];
        for (int s = 0; s < samples.Length; s++)
        {
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < inner; i++) action();
            samples[s] = clock.Elapsed.TotalMilliseconds / inner;
        }
        Array.Sort(samples);
        return samples[samples.Length / 2];
    }
}
