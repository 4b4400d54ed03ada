using System.Diagnostics;
using System.Text.Json;
using ModelGen;
using ModelGen.Kernels;
using ModelGen.Samples;
using ModelGen.Training;

/// <summary>
/// The ModelGen side of benchmarks/compare.sh: the workloads of peer/torch_peer.py, timed the same way (warm-up, then
/// <see cref="Samples"/> samples of back-to-back calls lasting at least 10 ms each; the median, in ms). <c>--serve</c> answers
/// one workload at a time on stdin, so that peer/interleave.py can time each workload on both sides seconds apart. BenchmarkDotNet (the other suites here) gives the detailed statistics.
/// </summary>
public static class PeerHarness
{
    /// <summary>
    /// Every workload as "group/name" (the groups of the JSON: results, single_thread, scaling) and what builds its call, in
    /// the order they are timed. A workload is built on first use and kept, as a served one is timed once per round.
    /// </summary>
    private static IEnumerable<(string Name, Func<Action> Build)> Workloads()
    {
        var random = new SeededRandom(1);
        float[] Values(int count) => Enumerable.Range(0, count).Select(_ => random.NextFloat()).ToArray();
        float[] Labels(int batch) => Enumerable.Range(0, batch).Select(i => (float)(i % 10)).ToArray();
        float[] Tokens(int count) => Enumerable.Range(0, count).Select(_ => (float)random.NextInt(1000)).ToArray();
        float[] Words(int count) => Enumerable.Range(0, count).Select(_ => (float)random.NextInt(5000)).ToArray();
        // Inference through the copy ForInference makes (kernels packed once), as the peer takes the fastest of its
        // eager, traced and frozen models.
        Action Predict(IModel model, int inputs, int batch, Func<int, float[]>? make = null)
        {
            var x = (make ?? Values)(batch * inputs);
            var y = new float[batch * model.OutputSize];
            var copy = model.ForInference();
            return () => copy.Predict(x, y);
        }
        // An autoencoder (reconstructs) is trained against its inputs, a classifier against labels.
        Action Train(IModel model, int inputs, int batch, Func<int, float[]>? make = null, bool reconstructs = false)
        {
            var x = (make ?? Values)(batch * inputs);
            var y = reconstructs ? x : Labels(batch);
            var optimizer = new Adam(1e-3f);
            return () => model.TrainStep(x, y, optimizer);
        }
        // Plain arrays, as a caller would pass them (24 bytes past a cache line here), where PyTorch's tensors start on one:
        // 2048^3 on two cores ran as fast on copies aligned to a line, and on AlignedBuffer's 2 MB pages.
        Action Product(int m, int n, int k)
        {
            var (a, b, c) = (Values(m * k), Values(k * n), new float[m * n]);
            return () => Gemm.Multiply(a, b, c, m, k, n);
        }
        // A call with ModelGen's second thread off.
        Action OnOneCore(Action call) => () =>
        {
            int before = Helper.Threads;
            Helper.Threads = 1;
            try { call(); }
            finally { Helper.Threads = before; }
        };

        // Batch 8: a few requests served together, where B is read in place rather than packed.
        foreach (int batch in new[] { 1, 8, 32, 128 })
            yield return ($"results/mlp predict b{batch}", () => Predict(new MnistClassifier(maxBatchSize: batch, seed: 0), 784, batch));
        // Half of batch 128 on one core alone, right after it: two cores that split batch 128 evenly and lost nothing to the
        // split would take as long, which bounds what sharing can gain (make_table.py states it beside the target).
        yield return ("single_thread/mlp predict b64", () => OnOneCore(Predict(new MnistClassifier(maxBatchSize: 64, seed: 0), 784, 64)));
        foreach (int batch in new[] { 32, 128 })
            yield return ($"results/mlp train step b{batch}", () => Train(new MnistClassifier(maxBatchSize: batch, seed: 0), 784, batch));
        yield return ("results/residual predict b1", () => Predict(new ResidualMlp(maxBatchSize: 1, seed: 0), 64, 1));
        yield return ("results/residual train step b128", () => Train(new ResidualMlp(maxBatchSize: 128, seed: 0), 64, 128));
        yield return ("results/cnn predict b1", () => Predict(new SmallCnn(maxBatchSize: 1, seed: 0), 784, 1));
        yield return ("results/cnn train step b64", () => Train(new SmallCnn(maxBatchSize: 64, seed: 0), 784, 64));
        // Depthwise convolutions and batch normalization.
        foreach (int batch in new[] { 1, 32 })
            yield return ($"results/mobilenet predict b{batch}", () => Predict(new MobileBlock(maxBatchSize: batch, seed: 0), 32 * 32 * 3, batch));
        yield return ("results/mobilenet train step b32", () => Train(new MobileBlock(maxBatchSize: 32, seed: 0), 32 * 32 * 3, 32));
        // Conv2D, BatchNormalization, ReLU: the normalization and its ReLU taken by the convolution at inference.
        foreach (int batch in new[] { 1, 32 })
            yield return ($"results/resnet predict b{batch}", () => Predict(new ResNetBlock(maxBatchSize: batch, seed: 0), 32 * 32 * 3, batch));
        yield return ("results/resnet train step b32", () => Train(new ResNetBlock(maxBatchSize: 32, seed: 0), 32 * 32 * 3, 32));
        // UpSampling2D and 'same' max pooling, as the Keras blog's convolutional autoencoder, at its batch of 128.
        yield return ("results/autoencoder predict b1", () => Predict(new ConvAutoencoder(maxBatchSize: 1, seed: 0), 784, 1));
        yield return ("results/autoencoder train step b128", () => Train(new ConvAutoencoder(maxBatchSize: 128, seed: 0), 784, 128, reconstructs: true));
        // Batch 1: one sequence served alone, where every step is a product of one row.
        foreach (int batch in new[] { 1, 32 })
            yield return ($"results/lstm predict b{batch}", () => Predict(new RowLstm(maxBatchSize: batch, seed: 0), 28 * 28, batch));
        yield return ("results/lstm train step b32", () => Train(new RowLstm(maxBatchSize: 32, seed: 0), 28 * 28, 32));
        // A bidirectional layer's two directions take the two cores, each with all its samples (Recurrent.ForwardBidirectional);
        // from batch 8 a single direction would split its samples instead.
        yield return ("results/bilstm predict b1", () => Predict(new RowBiLstm(maxBatchSize: 1, seed: 0), 28 * 28, 1));
        foreach (int batch in new[] { 4, 32 })
            yield return ($"results/bilstm train step b{batch}", () => Train(new RowBiLstm(maxBatchSize: batch, seed: 0), 28 * 28, batch));
        foreach (int batch in new[] { 1, 32 })
            yield return ($"results/gru predict b{batch}", () => Predict(new RowGru(maxBatchSize: batch, seed: 0), 28 * 28, batch));
        yield return ("results/gru train step b32", () => Train(new RowGru(maxBatchSize: 32, seed: 0), 28 * 28, 32));
        // A recurrent kernel beyond a core's L2: the cores share each step's product or halve the batch (Recurrent.SharesSamples).
        yield return ("results/wide lstm predict b32", () => Predict(new WideLstm(maxBatchSize: 32, seed: 0), 100 * 32, 32));
        yield return ("results/wide lstm train step b32", () => Train(new WideLstm(maxBatchSize: 32, seed: 0), 100 * 32, 32));
        // Embedding lookups and a mean over 200 steps: memory, not arithmetic.
        foreach (int batch in new[] { 1, 32 })
            yield return ($"results/bag predict b{batch}", () => Predict(new BagOfWords(maxBatchSize: batch, seed: 0), 200, batch, Words));
        yield return ("results/bag train step b32", () => Train(new BagOfWords(maxBatchSize: 32, seed: 0), 200, 32, Words));
        foreach (int batch in new[] { 1, 32 })
            yield return ($"results/transformer predict b{batch}", () => Predict(new TokenTransformer(maxBatchSize: batch, seed: 0), 64, batch, Tokens));
        yield return ("results/transformer train step b32", () => Train(new TokenTransformer(maxBatchSize: 32, seed: 0), 64, 32, Tokens));
        foreach (var (m, n, k) in new[] { (128, 256, 784), (128, 128, 256), (128, 10, 128), (1, 256, 784), (2048, 2048, 2048) })
            yield return ($"results/gemm {m}x{n}x{k}", () => Product(m, n, k));
        // The largest product again on one core, for its share of the FMA peak.
        yield return ("single_thread/gemm 2048x2048x2048", () => OnOneCore(Product(2048, 2048, 2048)));
        foreach (int width in ScalingModels.Widths)
            foreach (int batch in new[] { 1, 128 })
                yield return ($"scaling/{width} b{batch}", () => Predict(ScalingModels.Create(width, batch), width, batch));
    }

    private static object Info() => new { simd = Simd.Current.ToString(), threads = Helper.Threads, runtime = Environment.Version.ToString() };

    /// <summary>
    /// Answers requests on stdin, a line each: "list" (the workloads' names, a JSON array), "info", or a workload's name (its
    /// median in ms, built and fully warmed up the first time, briefly after that). An empty line or end of input ends it.
    /// </summary>
    public static void Serve()
    {
        var built = new Dictionary<string, Action>();
        string? line;
        while (!string.IsNullOrEmpty(line = Console.ReadLine()))
        {
            if (line == "list") Console.WriteLine(JsonSerializer.Serialize(Workloads().Select(w => w.Name)));
            else if (line == "info") Console.WriteLine(JsonSerializer.Serialize(Info()));
            else
            {
                bool first = !built.TryGetValue(line, out var action);
                if (first) built[line] = action = Build(line);
                Console.WriteLine(JsonSerializer.Serialize(Time(action!, first)));
            }
        }
    }

    /// <summary>Builds the workload named <paramref name="name"/> (one of Serve's "list"); an unknown name gets the list.</summary>
    private static Action Build(string name) =>
        Workloads().FirstOrDefault(w => w.Name == name).Build?.Invoke() ??
        throw new ArgumentException($"No workload '{name}'; the workloads: {string.Join(", ", Workloads().Select(w => w.Name))}.", nameof(name));

    /// <summary>
    /// Builds every workload and calls it once, a line each (its name, the first call's ms), so that CI finds a workload
    /// that no longer builds or runs before a 20-minute compare run does. Returns the workloads that failed, each reported.
    /// </summary>
    public static int Check()
    {
        int failed = 0;
        foreach (var (name, build) in Workloads())
        {
            try
            {
                var clock = Stopwatch.StartNew();
                build()();
                Console.WriteLine($"{name}: {clock.Elapsed.TotalMilliseconds:F1} ms");
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine($"{name}: FAILED: {e}");
            }
        }
        return failed;
    }

    /// <summary>
    /// Every call of a workload for <paramref name="seconds"/> after a second's warm-up, a line each: when it began (Unix
    /// seconds) and how long it took (ms). Beside a log of the cores' round trip it shows what a change of placement does to
    /// the calls, and how soon CoreChoice follows it.
    /// </summary>
    public static void Trace(string name, double seconds)
    {
        var action = Build(name);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed.TotalSeconds < 1) action();
        var lines = new System.Text.StringBuilder();
        clock.Restart();
        double epoch = (DateTime.UtcNow - DateTime.UnixEpoch).TotalSeconds;
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            double start = clock.Elapsed.TotalMilliseconds;
            action();
            lines.Append($"{epoch + start / 1000:F4} {clock.Elapsed.TotalMilliseconds - start:F4}\n");
        }
        Console.Write(lines);
    }

    /// <summary>
    /// A workload's cost in a fresh process, what a short run pays before the JIT has its final code: the time to build it,
    /// its first call, and its first <paramref name="calls"/> calls in all, against as many warm calls (<see cref="Time"/>'s
    /// median after its warm-up, times <paramref name="calls"/>). In ms.
    /// </summary>
    public static object Cold(string name, int calls)
    {
        var clock = Stopwatch.StartNew();
        var action = Build(name);
        double buildMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        action();
        double firstMs = clock.Elapsed.TotalMilliseconds;
        for (int i = 1; i < calls; i++) action();
        double firstCallsMs = clock.Elapsed.TotalMilliseconds;
        double warmMs = Time(action, firstTime: true) * calls;
        return new { build_ms = buildMs, first_ms = firstMs, first_calls_ms = firstCallsMs, warm_calls_ms = warmMs, calls };
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

    /// <summary>Samples per workload: COMPARE_SAMPLES (compare.sh sets it for its rounds), 25 when unset.</summary>
    private static readonly int Samples = int.TryParse(Environment.GetEnvironmentVariable("COMPARE_SAMPLES"), out int samples) && samples > 0 ? samples : 25;

    /// <summary>
    /// The median of <see cref="Samples"/> samples, after a warm-up: a second or more the first time, for tiered JIT to reach
    /// its final code; 0.2 s after that, for the caches the other side's turn took over.
    /// </summary>
    private static double Time(Action action, bool firstTime)
    {
        var warm = Stopwatch.StartNew();
        int calls = 0;
        double warmUp = firstTime ? 1 : 0.2;
        while (warm.Elapsed.TotalSeconds < warmUp || calls < (firstTime ? 200 : 3)) { action(); calls++; }
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
