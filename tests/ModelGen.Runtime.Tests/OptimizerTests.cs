using ModelGen.Kernels;
using ModelGen.Training;

namespace ModelGen.Runtime.Tests;

[Collection(KernelSettings.Name)]
public class OptimizerTests
{
    public static TheoryData<SimdPath, int> PathsAndLengths()
    {
        var data = new TheoryData<SimdPath, int>();
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            data.Add(path, 37);
            data.Add(path, 40_037); // parts shared by two cores, the last one with a scalar tail
        }
        return data;
    }

    /// <summary>Five Adam steps on every SIMD path against Keras' formula evaluated in double, on lengths with a scalar tail.</summary>
    [Theory, MemberData(nameof(PathsAndLengths))]
    public void Adam_matches_the_keras_formula_on_every_path(SimdPath path, int length)
    {
        var random = new Random(3);
        var parameters = Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var expected = parameters.Select(p => (double)p).ToArray();
        var m = new double[length];
        var v = new double[length];
        var saved = Simd.Current;
        try
        {
            Simd.Current = path;
            var adam = new Adam(learningRate: 0.01f);
            for (int t = 1; t <= 5; t++)
            {
                var gradients = Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
                adam.Step(parameters, gradients);
                double alpha = 0.01 * Math.Sqrt(1 - Math.Pow(0.999, t)) / (1 - Math.Pow(0.9, t));
                for (int i = 0; i < length; i++)
                {
                    m[i] += (gradients[i] - m[i]) * (1 - 0.9);
                    v[i] += (gradients[i] * (double)gradients[i] - v[i]) * (1 - 0.999);
                    expected[i] -= alpha * m[i] / (Math.Sqrt(v[i]) + 1e-7);
                }
            }
        }
        finally { Simd.Current = saved; }
        for (int i = 0; i < length; i++) Assert.True(Math.Abs(expected[i] - parameters[i]) <= 1e-6, $"{path} parameter {i}: expected {expected[i]}, got {parameters[i]}");
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Momenta_of_parameters_without_gradient_flush_to_zero_instead_of_going_subnormal(SimdPath path)
    {
        var saved = Simd.Current;
        try
        {
            Simd.Current = path;
            var parameters = new float[40];
            var adam = new Adam();
            var sgd = new Sgd(0.1f, momentum: 0.9f);
            var gradients = Enumerable.Repeat(1f, 40).ToArray();
            adam.Step(parameters, gradients);
            sgd.Step(parameters, gradients);
            Array.Clear(gradients);
            // 0.9^n falls below FLT_MIN after about 800 steps; without flushing the state would be subnormal.
            for (int i = 0; i < 1500; i++) { adam.Step(parameters, gradients); sgd.Step(parameters, gradients); }
            Assert.All(parameters, p => Assert.False(float.IsSubnormal(p)));
            var before = (float[])parameters.Clone();
            adam.Step(parameters, gradients);
            sgd.Step(parameters, gradients);
            Assert.Equal(before, parameters); // all momenta are exactly zero now
        }
        finally { Simd.Current = saved; }
    }

    [Fact]
    public void Sgd_momentum_and_nesterov_follow_keras()
    {
        // Keras: m = momentum*m - lr*g; p += m (nesterov: p += momentum*m - lr*g).
        var plain = new float[] { 1f };
        var nesterov = new float[] { 1f };
        var a = new Sgd(0.1f, 0.9f);
        var b = new Sgd(0.1f, 0.9f, nesterov: true);
        double m = 0, p = 1, mn = 0, pn = 1;
        foreach (var g in new[] { 0.5f, -0.25f, 1f })
        {
            a.Step(plain, new[] { g });
            b.Step(nesterov, new[] { g });
            m = 0.9 * m - 0.1 * g; p += m;
            mn = 0.9 * mn - 0.1 * g; pn += 0.9 * mn - 0.1 * g;
        }
        Assert.Equal(p, plain[0], tolerance: 5e-7);
        Assert.Equal(pn, nesterov[0], tolerance: 5e-7);
    }

    public static TheoryData<string, int> OptimizersAndLengths()
    {
        var data = new TheoryData<string, int>();
        foreach (string optimizer in new[] { "adam", "sgd", "momentum", "nesterov", "norm" })
            foreach (int length in new[] { 1, 33, 70, 8_970, 40_037 }) data.Add(optimizer, length);
        return data;
    }

    /// <summary>
    /// The update after a step in parts (BatchParts.Update: each core adds the replica's gradients to half the buffer and
    /// updates that half) against the sum and the whole update, three steps on every SIMD path, one thread and two: the same
    /// bits in the parameters and the summed gradients, each step counted once. An optimizer whose update reads every
    /// gradient (here: SGD scaled by the gradients' norm) is updated whole.
    /// </summary>
    [Theory, MemberData(nameof(OptimizersAndLengths))]
    public void An_update_in_halves_computes_the_bits_of_the_sum_and_the_whole_update(string kind, int length)
    {
        Optimizer Create() => kind switch
        {
            "adam" => new Adam(learningRate: 0.01f),
            "sgd" => new Sgd(0.1f),
            "momentum" => new Sgd(0.1f, momentum: 0.9f),
            "nesterov" => new Sgd(0.1f, momentum: 0.9f, nesterov: true),
            _ => new SgdOverNorm(0.1f),
        };
        var random = new Random(length);
        float[] Values() => Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var start = Values();
        var steps = Enumerable.Range(0, 3).Select(_ => (Model: Values(), Replica: Values())).ToList();

        var expected = (float[])start.Clone();
        var whole = Create();
        var expectedSums = new List<float[]>();
        foreach (var (model, replica) in steps)
        {
            var sum = model.Zip(replica, (a, b) => a + b).ToArray();
            whole.Step(expected, sum);
            expectedSums.Add(sum);
        }
        foreach (var path in Enum.GetValues<SimdPath>())
        {
            using var _ = KernelSettings.OnSimd(path);
            foreach (int threads in new[] { 1, 2 })
            {
                KernelSettings.OnThreads(threads, () =>
                {
                    var reference = (float[])start.Clone();
                    var referenceOptimizer = Create();
                    var parameters = (float[])start.Clone();
                    var optimizer = Create();
                    for (int step = 0; step < steps.Count; step++)
                    {
                        var gradients = (float[])steps[step].Model.Clone();
                        referenceOptimizer.Step(reference, expectedSums[step]);
                        BatchParts.Update(optimizer, parameters, gradients, steps[step].Replica);
                        Assert.True(expectedSums[step].AsSpan().SequenceEqual(gradients), $"{kind}, {path}, {threads} threads, step {step + 1}: the summed gradients differ");
                        int at = reference.AsSpan().CommonPrefixLength(parameters);
                        Assert.True(at == length, $"{kind}, {path}, {threads} threads, step {step + 1}: parameter {at} is {(at < length ? parameters[at] : 0)}, the whole update's {(at < length ? reference[at] : 0)}");
                    }
                    Assert.Equal(steps.Count, optimizer.Iterations);
                });
            }
        }
        Assert.NotEqual(start, expected); // the steps moved the parameters
    }

    /// <summary>SGD with each step scaled to a unit gradient norm: every parameter's update reads every gradient.</summary>
    private sealed class SgdOverNorm(float learningRate) : Optimizer(learningRate)
    {
        protected override void EnsureState(int parameterCount) { }

        protected override void Update(Span<float> parameters, ReadOnlySpan<float> gradients)
        {
            double squares = 0;
            foreach (float g in gradients) squares += g * g;
            float scale = LearningRate / (float)Math.Sqrt(squares + 1e-12);
            for (int i = 0; i < parameters.Length; i++) parameters[i] -= scale * gradients[i];
        }
    }

    [Fact]
    public void One_optimizer_refuses_a_second_model_of_another_size()
    {
        var adam = new Adam();
        adam.Step(new float[4], new float[4]);
        Assert.Throws<InvalidOperationException>(() => adam.Step(new float[5], new float[5]));
        adam.Reset();
        adam.Step(new float[5], new float[5]);
        Assert.Equal(1, adam.Iterations);
    }
}
