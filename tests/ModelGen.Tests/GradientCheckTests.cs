using ModelGen.Training;

namespace ModelGen.Tests;

/// <summary>
/// The generated backward pass of whole models against central finite differences of the loss, parameter
/// by parameter, in training mode (BatchNormalization normalises with the batch's statistics, whose own dependence on the
/// weights the backward must include). Together the models cover every layer, activation and loss the generator emits (dropout is
/// random per pass, so its backward is checked against its mask in the runtime tests). The seed's residual MLP stacks
/// ReLUs after a 64-wide sum, where kinks inside any usable step are common; PyTorch parity checks it instead.
/// </summary>
public class GradientCheckTests
{
    public static TheoryData<string> Models() => new()
    {
        nameof(ParityClassifier), nameof(ParityOneHot), nameof(ParityRegressor), nameof(ParityBinary),
        nameof(StandaloneActivations), nameof(SeparateSoftmax), nameof(EveryMerge), nameof(FlattenedImage), nameof(TinyCnn), nameof(PoolingMix),
        nameof(NormalizedMlp), nameof(NormalizedCnn), nameof(FrozenMiddle), nameof(ReshapingChain), nameof(DilatedCnn),
        nameof(LstmClassifier), nameof(GruSequences), nameof(MaskedLstm), nameof(BidirectionalStack), nameof(BidirectionalSequences),
        nameof(SelfAttentionBlock), nameof(CrossAttention), nameof(CausalAttention), nameof(UNetLike), nameof(EncoderDecoder), nameof(GruWithStates), nameof(MaskedAverage), nameof(MaskedBag),
        nameof(ReluPoolingParity), nameof(StepTagger), nameof(NarrowPooledCnn), nameof(PointwiseResidual), nameof(FewFilterHeads), nameof(NormalizedDepthwise), nameof(HandedGradients),
        nameof(PointwiseTransposed), nameof(UpsampledDecoder), nameof(UpsampledBranches),
    };

    [Theory, MemberData(nameof(Models))]
    public void Backward_matches_finite_differences(string name)
    {
        const int batch = 5;
        IModel model = name switch
        {
            nameof(ParityClassifier) => new ParityClassifier(batch, seed: 1),
            nameof(ParityOneHot) => new ParityOneHot(batch, seed: 2),
            nameof(ParityRegressor) => new ParityRegressor(batch, seed: 3),
            nameof(ParityBinary) => new ParityBinary(batch, seed: 4),
            nameof(StandaloneActivations) => new StandaloneActivations(batch, seed: 5),
            nameof(EveryMerge) => new EveryMerge(batch, seed: 8),
            nameof(FlattenedImage) => new FlattenedImage(batch, seed: 9),
            nameof(TinyCnn) => new TinyCnn(batch, seed: 10),
            nameof(PoolingMix) => new PoolingMix(batch, seed: 11),
            nameof(NormalizedMlp) => new NormalizedMlp(batch, seed: 12),
            nameof(NormalizedCnn) => new NormalizedCnn(batch, seed: 13),
            nameof(FrozenMiddle) => new FrozenMiddle(batch, seed: 14),
            nameof(ReshapingChain) => new ReshapingChain(batch, seed: 15),
            nameof(DilatedCnn) => new DilatedCnn(batch, seed: 16),
            nameof(LstmClassifier) => new LstmClassifier(batch, seed: 17),
            nameof(GruSequences) => new GruSequences(batch, seed: 18),
            nameof(MaskedLstm) => new MaskedLstm(batch, seed: 19),
            nameof(BidirectionalStack) => new BidirectionalStack(batch, seed: 20),
            nameof(BidirectionalSequences) => new BidirectionalSequences(batch, seed: 21),
            nameof(SelfAttentionBlock) => new SelfAttentionBlock(batch, seed: 22),
            nameof(CrossAttention) => new CrossAttention(batch, seed: 23),
            nameof(CausalAttention) => new CausalAttention(batch, seed: 24),
            nameof(UNetLike) => new UNetLike(batch, seed: 25),
            nameof(EncoderDecoder) => new EncoderDecoder(batch, seed: 26),
            nameof(GruWithStates) => new GruWithStates(batch, seed: 27),
            nameof(MaskedAverage) => new MaskedAverage(batch, seed: 28),
            nameof(MaskedBag) => new MaskedBag(batch, seed: 33),
            nameof(ReluPoolingParity) => new ReluPoolingParity(batch, seed: 29),
            nameof(StepTagger) => new StepTagger(batch, seed: 30),
            nameof(NarrowPooledCnn) => new NarrowPooledCnn(batch, seed: 32),
            nameof(PointwiseResidual) => new PointwiseResidual(batch, seed: 34),
            nameof(FewFilterHeads) => new FewFilterHeads(batch, seed: 35),
            nameof(NormalizedDepthwise) => new NormalizedDepthwise(batch, seed: 36),
            nameof(HandedGradients) => new HandedGradients(batch, seed: 37),
            nameof(PointwiseTransposed) => new PointwiseTransposed(batch, seed: 38),
            nameof(UpsampledDecoder) => new UpsampledDecoder(batch, seed: 39),
            nameof(UpsampledBranches) => new UpsampledBranches(batch, seed: 40),
            _ => new SeparateSoftmax(batch, seed: 6),
        };
        var random = new Random(name.Length);
        foreach (var parameter in model.Layers.SelectMany(l => l.Parameters).Where(p => p.Name.EndsWith(".bias")))
        {
            for (int i = 0; i < parameter.Length; i++) parameter.Values[i] = (float)(random.NextDouble() * 0.4 - 0.2);
        }
        var x = Enumerable.Range(0, batch * model.InputSize).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        if (model is CrossAttention) for (int i = 0; i < x.Length; i++) if (i % CrossAttention.InputSize >= 54) x[i] = x[i] > -0.4f ? 1f : 0f; // the attention mask
        if (model is MaskedLstm or CausalAttention or MaskedAverage or MaskedBag) x = Enumerable.Range(0, batch * 6).Select(i => i % 6 < 6 - i / 6 % 4 ? (float)random.Next(1, 7) : 0f).ToArray(); // ids, padded
        if (model is BidirectionalStack) for (int i = 0; i < x.Length; i++) if ((i / 2) % 5 >= 5 - (i / 10) % 3) x[i] = 0f;         // padded steps
        if (model is BidirectionalSequences) for (int i = 0; i < x.Length; i++) if ((i / 2) % 4 == (i / 8) % 4) x[i] = 0f;        // one step of each
        var y = Targets(model, batch, random);

        model.TrainStep(x, y, new Sgd(learningRate: 0f));
        var analytic = model.Gradients.ToArray();
        var weights = model.Parameters;
        var before = weights[..model.TrainableParameterCount].ToArray();

        // A ReLU kink inside the step makes a difference quotient meaningless; two step sizes that disagree
        // reveal it, and such coordinates are skipped (they must stay rare, or the check would prove nothing).
        int nonSmooth = 0;
        for (int i = 0; i < model.TrainableParameterCount; i++)
        {
            double coarse = Difference(model, x, y, i, 2e-3f);
            double fine = Difference(model, x, y, i, 1e-3f);
            if (Math.Abs(coarse - fine) > 1e-2 * Math.Abs(fine) + 3e-4) { nonSmooth++; continue; }
            Assert.True(Math.Abs(fine - analytic[i]) <= 1e-2 * Math.Abs(fine) + 3e-4,
                $"{name} parameter {i}: analytic {analytic[i]}, numeric {fine}");
        }
        Assert.True(nonSmooth <= model.TrainableParameterCount / 20, $"{nonSmooth} of {model.TrainableParameterCount} coordinates were non-smooth");
        Assert.Equal(before, model.Parameters[..model.TrainableParameterCount].ToArray());
        // Frozen weights and moving statistics get no gradient at all.
        Assert.All(analytic.Skip(model.TrainableParameterCount), g => Assert.Equal(0f, g));
    }

    private static double Difference(IModel model, float[] x, float[] y, int index, float step)
    {
        var weights = model.Parameters;
        float saved = weights[index];
        weights[index] = saved + step;
        double plus = TrainingLoss(model, x, y);
        weights[index] = saved - step;
        double minus = TrainingLoss(model, x, y);
        weights[index] = saved;
        return (plus - minus) / (2 * step);
    }

    /// <summary>The loss of a training-mode forward pass (BatchNormalization on batch statistics): a step that moves no trainable weight.</summary>
    private static double TrainingLoss(IModel model, float[] x, float[] y) => model.TrainStep(x, y, new Sgd(learningRate: 0f));

    /// <summary>Targets for the first output: a class index or a one-hot row for each row (a sample, or each step of one), else values.</summary>
    internal static float[] Targets(IModel model, int batch, Random random) => model.Outputs[0] switch
    {
        { Loss: Loss.SparseCategoricalCrossentropy } output => Enumerable.Range(0, batch * output.Rows).Select(_ => (float)random.Next(output.Units)).ToArray(),
        { Loss: Loss.CategoricalCrossentropy } output => Enumerable.Range(0, batch * output.Rows).SelectMany(_ =>
        {
            int label = random.Next(output.Units);
            return Enumerable.Range(0, output.Units).Select(j => j == label ? 1f : 0f);
        }).ToArray(),
        { Loss: Loss.BinaryCrossentropy } => Enumerable.Range(0, batch * model.OutputSize).Select(_ => (float)random.Next(2)).ToArray(),
        _ => Enumerable.Range(0, batch * model.OutputSize).Select(_ => (float)random.NextDouble()).ToArray(),
    };
}
