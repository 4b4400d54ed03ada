using System.Text.Json;
using ModelGen.Kernels;
using ModelGen.Training;

namespace ModelGen.Tests;

/// <summary>
/// Forward output, loss, every gradient, one SGD (Nesterov) step and three Adam steps against numbers computed
/// independently in PyTorch (float64) with Keras' conventions: tests/fixtures/make_parity_fixtures.py. For BatchNormalization
/// the forward output is Predict's (inference mode, moving statistics), the loss and gradients come from the training-mode pass
/// (batch statistics), and the weights after each step include the moving statistics, updated once per step. Every model on
/// every SIMD path (emulated where the machine lacks it), so each path's kernels meet these numbers inside whole models.
/// </summary>
[Collection(KernelSettings.Name)]
public class ParityTests
{
    private static readonly string[] Names = { nameof(ParityClassifier), nameof(ParityOneHot), nameof(ParityRegressor), nameof(ParityBinary), nameof(ResidualMlp), nameof(Siamese), nameof(CnnParity), nameof(NormalizedCnn), nameof(ReshapingChain), nameof(DilatedCnn),
        nameof(LstmClassifier), nameof(GruSequences), nameof(MaskedLstm), nameof(BidirectionalStack),
        nameof(SelfAttentionBlock), nameof(CrossAttention), nameof(CausalAttention), nameof(UNetLike),
        nameof(EncoderDecoder), nameof(GruWithStates), nameof(MaxPoolingParity), nameof(MaskedAverage), nameof(ReluPoolingParity), nameof(StepTagger),
        nameof(WinnersPoolingParity), nameof(GlobalWinnersParity), nameof(SplitBatchRecurrent), nameof(ResidualCnnParity), nameof(ReluAverageParity) };

    public static IEnumerable<object[]> Models() => KernelSettings.OnEveryPath(Names.Select(name => new object[] { name }));

    private static IModel Create(string name, int batch) => name switch
    {
        nameof(ParityClassifier) => new ParityClassifier(batch),
        nameof(ParityOneHot) => new ParityOneHot(batch),
        nameof(ParityRegressor) => new ParityRegressor(batch),
        nameof(ResidualMlp) => new ResidualMlp(batch),
        nameof(Siamese) => new Siamese(batch),
        nameof(CnnParity) => new CnnParity(batch),
        nameof(NormalizedCnn) => new NormalizedCnn(batch),
        nameof(ReshapingChain) => new ReshapingChain(batch),
        nameof(DilatedCnn) => new DilatedCnn(batch),
        nameof(LstmClassifier) => new LstmClassifier(batch),
        nameof(GruSequences) => new GruSequences(batch),
        nameof(MaskedLstm) => new MaskedLstm(batch),
        nameof(BidirectionalStack) => new BidirectionalStack(batch),
        nameof(SelfAttentionBlock) => new SelfAttentionBlock(batch),
        nameof(CrossAttention) => new CrossAttention(batch),
        nameof(CausalAttention) => new CausalAttention(batch),
        nameof(UNetLike) => new UNetLike(batch),
        nameof(EncoderDecoder) => new EncoderDecoder(batch),
        nameof(GruWithStates) => new GruWithStates(batch),
        nameof(MaxPoolingParity) => new MaxPoolingParity(batch),
        nameof(MaskedAverage) => new MaskedAverage(batch),
        nameof(ReluPoolingParity) => new ReluPoolingParity(batch),
        nameof(WinnersPoolingParity) => new WinnersPoolingParity(batch),
        nameof(GlobalWinnersParity) => new GlobalWinnersParity(batch),
        nameof(SplitBatchRecurrent) => new SplitBatchRecurrent(batch),
        nameof(StepTagger) => new StepTagger(batch),
        nameof(ResidualCnnParity) => new ResidualCnnParity(batch),
        nameof(ReluAverageParity) => new ReluAverageParity(batch),
        _ => new ParityBinary(batch),
    };

    [Theory, MemberData(nameof(Models))]
    public void Forward_loss_and_gradients_match_pytorch(string name, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (fixture, model, x, y) = Load(name);
        var outputs = new float[fixture.GetProperty("outputs").GetArrayLength()];
        model.Predict(x, outputs);
        var expectedOutputs = Floats(fixture.GetProperty("outputs"));
        AssertClose("outputs", expectedOutputs, outputs, Float32Floor(fixture, "outputs_float32", expectedOutputs));

        float loss = model.TrainStep(x, y, new Sgd(learningRate: 0f)); // a zero step: gradients only
        AssertClose("loss", new[] { fixture.GetProperty("loss").GetDouble() }, new[] { loss });
        bool hasFloat32 = fixture.TryGetProperty("gradients_float32", out var float32);
        foreach (var parameter in model.Layers.SelectMany(l => l.Parameters))
        {
            var expected = Floats(fixture.GetProperty("gradients").GetProperty(parameter.Name));
            // Where the fixture has PyTorch's own float32 gradients: no entry may be off by more than 3x PyTorch's worst float32 error in
            // the tensor, whichever is looser (a bias before BatchNormalization has an exactly zero gradient only in exact arithmetic).
            double floor = hasFloat32 ? 3 * Floats(float32.GetProperty(parameter.Name)).Select((p, i) => Math.Abs(p - expected[i])).Max() : 0;

            AssertClose(parameter.Name + " gradient", expected, parameter.Gradient.ToArray(), floor);
        }
    }

    [Theory, MemberData(nameof(Models))]
    public void One_nesterov_sgd_step_matches_pytorch(string name, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (fixture, model, x, y) = Load(name);
        var sgd = fixture.GetProperty("sgd");
        model.TrainStep(x, y, new Sgd(sgd.GetProperty("learning_rate").GetSingle(), sgd.GetProperty("momentum").GetSingle(), nesterov: true));
        AssertUpdates(model, fixture.GetProperty("weights"), sgd.GetProperty("weights_after_1_step"), float32: null);
    }

    [Theory, MemberData(nameof(Models))]
    public void Three_adam_steps_match_pytorch(string name, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var (fixture, model, x, y) = Load(name);
        var adam = fixture.GetProperty("adam");
        var optimizer = new Adam(adam.GetProperty("learning_rate").GetSingle());
        var expectedLosses = Floats(adam.GetProperty("losses"));
        for (int step = 0; step < 3; step++)
        {
            float loss = model.TrainStep(x, y, optimizer);
            AssertClose($"loss at step {step + 1}", new[] { expectedLosses[step] }, new[] { loss });
        }
        AssertUpdates(model, fixture.GetProperty("weights"), adam.GetProperty("weights_after_3_steps"), adam.GetProperty("weights_after_3_steps_float32"),
            noiseBound: 3 * 1.5 * adam.GetProperty("learning_rate").GetDouble());
    }

    private static (JsonElement Fixture, IModel Model, float[] X, float[] Y) Load(string name)
    {
        var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "fixtures", name + ".json"))).RootElement;
        var model = Create(name, fixture.GetProperty("batch").GetInt32());
        foreach (var parameter in model.Layers.SelectMany(l => l.Parameters))
        {
            var values = Floats(fixture.GetProperty("weights").GetProperty(parameter.Name));
            Assert.Equal(parameter.Length, values.Length);
            values.Select(v => (float)v).ToArray().CopyTo(parameter.Values);
        }
        return (fixture, model, Floats(fixture.GetProperty("inputs")).Select(v => (float)v).ToArray(), Floats(fixture.GetProperty("targets")).Select(v => (float)v).ToArray());
    }

    /// <summary>
    /// Weights after the optimizer, 1e-5 relative to the larger of the weight before and after the step (w - Δ is a
    /// subtraction: a weight the update nearly cancels is only as precise as the operands allow). After three Adam
    /// steps some weights of deeper models are ill-conditioned: PyTorch itself, run in float32 (the fixture's
    /// <paramref name="float32"/>), misses 1e-5 on them. For such a tensor the bound is 3x PyTorch's own worst float32
    /// error in it; every other tensor keeps 1e-5.
    /// </summary>
    /// <remarks>
    /// A tensor whose gradient is exactly zero in exact arithmetic (a key bias of attention: it shifts every score of a query
    /// alike, which the softmax ignores) does not move in float64, but in float32 its gradient is rounding noise, and Adam
    /// normalises noise into steps of up to the learning rate, in PyTorch float32 as here. For such a tensor the check is
    /// Adam's own bound, <paramref name="noiseBound"/> (three steps of at most 1.5 learning rates), not agreement with noise.
    /// </remarks>
    private static void AssertUpdates(IModel model, JsonElement before, JsonElement after, JsonElement? float32, double noiseBound = 0)
    {
        foreach (var parameter in model.Layers.SelectMany(l => l.Parameters))
        {
            var initial = Floats(before.GetProperty(parameter.Name));
            var expected = Floats(after.GetProperty(parameter.Name));
            var actual = parameter.Values.ToArray();
            bool stillInExactArithmetic = noiseBound > 0 && parameter.Trainable
                && expected.Select((e, i) => Math.Abs(e - initial[i]) <= 1e-9 * Math.Max(Math.Abs(e), 1e-3)).All(still => still);
            if (stillInExactArithmetic)
            {
                for (int i = 0; i < expected.Length; i++)
                {
                    Assert.True(Math.Abs(actual[i] - initial[i]) <= noiseBound,
                        $"{parameter.Name}[{i}] has a zero gradient in exact arithmetic but moved from {initial[i]:R} to {actual[i]:R}, more than Adam can (bound {noiseBound})");
                }
                continue;
            }
            double scale = expected.Max(Math.Abs);
            var reference = expected.Select((e, i) => Math.Max(Math.Max(Math.Abs(e), Math.Abs(initial[i])), 1e-2 * scale)).ToArray();
            double bound = float32 is { } f ? Float32Bound(expected, Floats(f.GetProperty(parameter.Name)), reference) : 1e-5;
            for (int i = 0; i < expected.Length; i++)
            {
                Assert.True(Math.Abs(actual[i] - expected[i]) <= bound * reference[i],
                    $"{parameter.Name}[{i}] after the step: expected {expected[i]:R}, got {actual[i]:R} (before the step {initial[i]:R}; bound {bound:E1} relative)");
            }
        }
    }

    /// <summary>
    /// 1e-5 relative, unless PyTorch itself, run in float32 on the same tensor, misses that: then 3x PyTorch's own worst float32
    /// error (relative to <paramref name="reference"/>, floored at 1% of the tensor's scale as in <see cref="AssertClose"/>).
    /// </summary>
    private static double Float32Bound(double[] expected, double[] pytorch32, double[] reference)
    {
        double scale = expected.Max(Math.Abs);
        double pytorchWorst = pytorch32.Select((p, i) => Math.Abs(p - expected[i]) / Math.Max(reference[i], 1e-2 * scale)).DefaultIfEmpty(0).Max();
        return pytorchWorst > 1e-5 ? 3 * pytorchWorst : 1e-5;
    }

    /// <summary>3x PyTorch's own worst float32 error on these values, where the fixture has them (0 otherwise).</summary>
    private static double Float32Floor(JsonElement fixture, string property, double[] expected) =>
        fixture.TryGetProperty(property, out var float32) ? 3 * Floats(float32).Select((p, i) => Math.Abs(p - expected[i])).Max() : 0;

    private static double[] Floats(JsonElement array) => array.EnumerateArray().Select(e => e.GetDouble()).ToArray();

    /// <summary>
    /// 1e-5 relative. Entries that are sums with heavy cancellation (a gradient near zero) are measured against
    /// 1% of the tensor's largest magnitude instead, since float32 cannot place them more precisely than that scale allows.
    /// </summary>
    internal static void AssertClose(string what, double[] expected, float[] actual, double absoluteFloor = 0)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++)
        {
            double reference = Math.Max(Math.Abs(expected[i]), 1e-2 * scale);
            Assert.True(Math.Abs(actual[i] - expected[i]) <= Math.Max(1e-5 * reference, absoluteFloor),
                $"{what}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (relative error {Math.Abs(actual[i] - expected[i]) / reference:E2})");
        }
    }
}
