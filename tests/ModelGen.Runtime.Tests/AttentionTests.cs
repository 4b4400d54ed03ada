using ModelGen.Kernels;

namespace ModelGen.Runtime.Tests;

/// <summary>
/// Multi-head attention large enough that both cores share its (sample, head) pairs (Attention.SharesPairs), its
/// projections small enough that they go to the cores in halves (Attention.SharesProjections), with separate
/// query, key and value inputs of their own widths and every kind of mask: against the same layer computed in double from
/// its definition (Keras' MultiHeadAttention, DESIGN.md), forward and backward; and one core against two, bit for bit.
/// </summary>
[Collection(KernelSettings.Name)]
public class AttentionTests
{
    // 6 samples, 4 heads, 40 query and 48 value steps: 1.3M multiply-adds over the pairs, above the sharing rule; input
    // projections of 614K, 332K and 304K (64, 64 and 48 columns: halves of 32 and 32, 32 and 16) and an output projection of
    // 461K (40 columns: 32 and 8), within the projections' rule.
    private const int Batch = 6, Heads = 4, QuerySteps = 40, ValueSteps = 48, QueryFeatures = 40, KeyFeatures = 18, ValueFeatures = 22, KeyDim = 16, ValueDim = 12;

    public static IEnumerable<object[]> MaskKinds() => KernelSettings.OnEveryPath(
        new[] { "none", "causal", "sequences", "explicit" }.Select(kind => new object[] { kind }));

    [Theory, MemberData(nameof(MaskKinds))]
    public void Shared_pairs_compute_attention_as_defined(string masks, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var layer = new Layer(masks, seed: 3);
        Assert.True(Attention.SharesPairs(layer.Work, Batch));
        Assert.True(Attention.SharesProjections(layer.Work, Batch));
        var result = layer.Run();
        var expected = layer.Reference();
        AssertClose("output", expected.Output, result.Output);
        AssertClose("query gradient", expected.QueryGradient, result.QueryGradient);
        AssertClose("key gradient", expected.KeyGradient, result.KeyGradient);
        AssertClose("value gradient", expected.ValueGradient, result.ValueGradient);
        for (int w = 0; w < expected.Weights.Length; w++) AssertClose($"weight gradient {w}", expected.Weights[w], result.Weights[w]);
    }

    [Fact]
    public void Shared_pairs_give_the_same_bits_on_one_core_or_two()
    {
        var layer = new Layer("sequences", seed: 4);
        var two = KernelSettings.OnThreads(2, layer.Run);
        var one = KernelSettings.OnThreads(1, layer.Run);
        Assert.Equal(one.Output, two.Output);
        Assert.Equal(one.QueryGradient, two.QueryGradient);
        Assert.Equal(one.KeyGradient, two.KeyGradient);
        Assert.Equal(one.ValueGradient, two.ValueGradient);
        for (int w = 0; w < one.Weights.Length; w++) Assert.Equal(one.Weights[w], two.Weights[w]);
    }

    [Theory, MemberData(nameof(MaskKinds))]
    public void A_workspace_for_inference_predicts_the_same_bits_without_probabilities_or_gradients(string masks, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var training = new Layer(masks, seed: 6);
        var inference = new Layer(masks, seed: 6, forTraining: false);
        // Both cores share the pairs, each scoring its pairs one after another in its own piece of the scores.
        Assert.True(Attention.SharesPairs(inference.Work, Batch));
        Assert.Equal(training.Predict(), inference.Predict());
        long projections = Batch * (QuerySteps * Heads * KeyDim + ValueSteps * Heads * KeyDim + ValueSteps * Heads * ValueDim), context = Batch * QuerySteps * Heads * ValueDim;
        Assert.Equal((projections + context + 2 * QuerySteps * ValueSteps) * sizeof(float), inference.Work.Bytes);
        Assert.Equal((2 * (projections + context) + Batch * Heads * QuerySteps * ValueSteps) * sizeof(float), training.Work.Bytes);
        var error = Assert.Throws<InvalidOperationException>(() => inference.Run());
        Assert.Contains("attention workspace was made for inference only", error.Message);
    }

    [Theory, MemberData(nameof(Paths))]
    public void Projections_shared_in_halves_give_the_bits_of_the_whole_products(SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var layer = new Layer("none", seed: 7, forTraining: false);
        Assert.True(Attention.SharesProjections(layer.Work, Batch));
        Assert.True(Attention.SharesOutputProjection(layer.Work, Batch * QuerySteps));
        var output = KernelSettings.OnThreads(2, layer.Predict);
        var whole = layer.WholeProducts();
        Assert.Equal(whole.Queries, layer.Work.Queries.Span.ToArray());
        Assert.Equal(whole.Keys, layer.Work.Keys.Span.ToArray());
        Assert.Equal(whole.Values, layer.Work.Values.Span.ToArray());
        Assert.Equal(whole.Output, output);
    }

    public static IEnumerable<object[]> Paths() => KernelSettings.OnEveryPath(new[] { Array.Empty<object>() });

    [Theory, MemberData(nameof(Paths))]
    public void The_output_projection_over_parts_of_the_rows_gives_the_bits_of_the_whole_pass(SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var layer = new Layer("explicit", seed: 8, forTraining: false);
        var whole = KernelSettings.OnThreads(2, layer.Predict);
        // As a generated row run asks for them, each part into its own rows: 17 rows alone, 200 rows (384K multiply-adds,
        // shared in halves of the columns), the last 23; on one thread and on two.
        var cuts = new[] { 0, 17, 217, Batch * QuerySteps };
        Assert.Equal(whole, KernelSettings.OnThreads(1, () => layer.ProjectOutputInParts(cuts)));
        Assert.Equal(whole, KernelSettings.OnThreads(2, () => layer.ProjectOutputInParts(cuts)));
    }

    [Fact]
    public void Output_rows_beyond_the_last_passs_context_throw_before_anything_is_written()
    {
        var layer = new Layer("none", seed: 9, forTraining: false);
        var output = Enumerable.Repeat(float.NaN, 10 * QueryFeatures).ToArray();
        // Before any pass, and past the rows a pass left: no stale context is projected.
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => layer.ProjectOutputRows(output, 0, 10));
        Assert.Contains("rows [0, 10) of the output projection, but the last forward pass left the context of 0 rows", error.Message);
        layer.Predict();
        error = Assert.Throws<ArgumentOutOfRangeException>(() => layer.ProjectOutputRows(output, Batch * QuerySteps - 5, 10));
        Assert.Contains($"rows [{Batch * QuerySteps - 5}, {Batch * QuerySteps + 5}) of the output projection, but the last forward pass left the context of {Batch * QuerySteps} rows", error.Message);
        Assert.All(output, o => Assert.True(float.IsNaN(o)));
        layer.ProjectOutputRows(output, Batch * QuerySteps - 10, 10);
        Assert.All(output, o => Assert.True(float.IsFinite(o)));
        // A pass that failed (a value kernel one row short) leaves no context to project either.
        Assert.Throws<ArgumentException>(() => layer.Run(valueKernelRows: ValueFeatures - 1));
        error = Assert.Throws<ArgumentOutOfRangeException>(() => layer.ProjectOutputRows(output, 0, 10));
        Assert.Contains("left the context of 0 rows", error.Message);
    }

    [Fact]
    public void A_backward_pass_without_its_forward_pass_throws()
    {
        var layer = new Layer("causal", seed: 10);
        var error = Assert.Throws<InvalidOperationException>(() => layer.Backward(new float[Batch * QuerySteps * QueryFeatures]));
        Assert.Contains($"a backward pass over {Batch} samples ({Batch * QuerySteps} rows), but the last forward pass left the state of 0 rows", error.Message);
        // After a pass that failed, too; after one that ran, the backward pass runs.
        layer.Predict();
        Assert.Throws<ArgumentException>(() => layer.Run(valueKernelRows: ValueFeatures - 1));
        Assert.Throws<InvalidOperationException>(() => layer.Backward(new float[Batch * QuerySteps * QueryFeatures]));
        var result = layer.Run();
        Assert.All(result.QueryGradient, g => Assert.True(float.IsFinite(g)));
    }

    [Fact]
    public void A_short_projection_kernel_throws_on_the_callers_thread_before_any_part_runs()
    {
        var layer = new Layer("none", seed: 5);
        Assert.True(Attention.SharesProjections(layer.Work, Batch));
        layer.Work.Queries.Span.Fill(float.NaN);
        // The value kernel one row short: an ArgumentException from this thread, not a helper's failure wrapped later, and
        // thrown before the query projection (the caller's own first part) has written anything.
        var error = KernelSettings.OnThreads(2, () => Assert.Throws<ArgumentException>(() => layer.Run(valueKernelRows: ValueFeatures - 1)));
        Assert.Contains($"k={ValueFeatures}", error.Message);
        Assert.All(layer.Work.Queries.Span.ToArray(), q => Assert.True(float.IsNaN(q)));
    }

    /// <summary>Within 2e-5 of the larger magnitude in the tensor, at least 1 (float sums of up to 48 products against double).</summary>
    private static void AssertClose(string what, float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = Math.Max(1, expected.Max(Math.Abs));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 2e-5 * scale, $"{what}[{i}]: expected {expected[i]}, got {actual[i]}");
    }

    private sealed record Result(float[] Output, float[] QueryGradient, float[] KeyGradient, float[] ValueGradient, float[][] Weights);

    private sealed class Layer
    {
        public readonly AttentionWorkspace Work;
        private readonly float[] query, key, value, outputGradient, queryMask, valueMask, attentionMask;
        // Query, key, value and output kernels and biases, in Keras' layouts: (features, heads·dim) and (heads·dim, query features).
        private readonly float[] wq, bq, wk, bk, wv, bv, wo, bo;

        public Layer(string masks, int seed, bool forTraining = true)
        {
            var random = new Random(seed);
            float[] Values(int count, double scale = 1) => Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
            // Some samples' sequences end early; the explicit mask hides a random quarter of the pairs, whole rows included.
            float[] Steps(int steps) => Enumerable.Range(0, Batch * steps).Select(i => i % steps < steps - 3 * (i / steps) ? 1f : 0f).ToArray();
            Work = new AttentionWorkspace(Batch, QuerySteps, ValueSteps, QueryFeatures, KeyFeatures, ValueFeatures, Heads, KeyDim, ValueDim, causal: masks == "causal", forTraining);
            query = Values(Batch * QuerySteps * QueryFeatures);
            key = Values(Batch * ValueSteps * KeyFeatures);
            value = Values(Batch * ValueSteps * ValueFeatures);
            outputGradient = Values(Batch * QuerySteps * QueryFeatures);
            queryMask = masks == "sequences" ? Steps(QuerySteps) : [];
            valueMask = masks == "sequences" ? Steps(ValueSteps) : [];
            attentionMask = masks == "explicit"
                ? Enumerable.Range(0, Batch * QuerySteps * ValueSteps).Select(i => i / ValueSteps % QuerySteps == 7 || random.Next(4) == 0 ? 0f : 1f).ToArray()
                : [];
            (wq, bq) = (Values(QueryFeatures * Heads * KeyDim, 0.5), Values(Heads * KeyDim, 0.1));
            (wk, bk) = (Values(KeyFeatures * Heads * KeyDim, 0.5), Values(Heads * KeyDim, 0.1));
            (wv, bv) = (Values(ValueFeatures * Heads * ValueDim, 0.5), Values(Heads * ValueDim, 0.1));
            (wo, bo) = (Values(Heads * ValueDim * QueryFeatures, 0.5), Values(QueryFeatures, 0.1));
        }

        public Result Run() => Run(ValueFeatures);

        /// <summary>The forward pass alone.</summary>
        public float[] Predict() => Forward(ValueFeatures);

        /// <summary>The forward pass, given only the first <paramref name="valueKernelRows"/> rows of the value kernel.</summary>
        private float[] Forward(int valueKernelRows)
        {
            var output = new float[Batch * QuerySteps * QueryFeatures];
            Attention.Forward(Work, query, value, key, queryMask, valueMask, attentionMask, wq, bq, wk, bk, wv.AsSpan(0, valueKernelRows * Heads * ValueDim), bv, wo, bo,
                output, Batch);
            return output;
        }

        /// <summary>The output projection from the context the last forward pass left, part after part between <paramref name="cuts"/>.</summary>
        public float[] ProjectOutputInParts(int[] cuts)
        {
            var output = new float[Batch * QuerySteps * QueryFeatures];
            for (int p = 0; p + 1 < cuts.Length; p++)
                ProjectOutputRows(output.AsSpan(cuts[p] * QueryFeatures, (cuts[p + 1] - cuts[p]) * QueryFeatures), cuts[p], cuts[p + 1] - cuts[p]);
            return output;
        }

        public void ProjectOutputRows(Span<float> output, int first, int rows) => Attention.ProjectOutput(Work, wo, bo, output, first, rows);

        /// <summary>Forward and backward, the forward pass given only the first <paramref name="valueKernelRows"/> rows of the value kernel.</summary>
        public Result Run(int valueKernelRows) => Backward(Forward(valueKernelRows));

        /// <summary>The backward pass from what the last forward pass left, <paramref name="output"/> its output.</summary>
        public Result Backward(float[] output)
        {
            var weights = new[] { wq, bq, wk, bk, wv, bv, wo, bo }.Select(w => new float[w.Length]).ToArray();
            var (dq, dk, dv) = (new float[query.Length], new float[key.Length], new float[value.Length]);
            Attention.Backward(Work, outputGradient, query, value, key, wq, wk, wv, wo, weights[0], weights[1], weights[2], weights[3], weights[4], weights[5],
                weights[6], weights[7], dq, dv, dk, Batch, computeWeights: true, accumulateWeights: false, accumulateQuery: false, accumulateValue: false, accumulateKey: false);
            return new Result(output, dq, dk, dv, weights);
        }

        /// <summary>
        /// The projections as whole products on this thread, from this layer's inputs and the context its last forward pass
        /// left: the queries scaled by 1/sqrt(key_dim) as the forward pass scales them.
        /// </summary>
        public (float[] Queries, float[] Keys, float[] Values, float[] Output) WholeProducts()
        {
            int rowsQ = Batch * QuerySteps, rowsV = Batch * ValueSteps, hk = Heads * KeyDim, hv = Heads * ValueDim;
            var (queries, keys, values, output) = (new float[rowsQ * hk], new float[rowsV * hk], new float[rowsV * hv], new float[rowsQ * QueryFeatures]);
            KernelSettings.OnThreads(1, () =>
            {
                Gemm.Multiply(query, wq, queries, rowsQ, QueryFeatures, hk, bq);
                Merges.Scale(queries, queries.Length, 1f / MathF.Sqrt(KeyDim));
                Gemm.Multiply(key, wk, keys, rowsV, KeyFeatures, hk, bk);
                Gemm.Multiply(value, wv, values, rowsV, ValueFeatures, hv, bv);
                Gemm.Multiply(Work.Context.AsSpan(0, rowsQ * hv), wo, output, rowsQ, hv, QueryFeatures, bo);
            });
            return (queries, keys, values, output);
        }

        private bool Attends(int b, int i, int j) =>
            !(Work.Causal && j > i) && (queryMask.Length == 0 || queryMask[b * QuerySteps + i] != 0) && (valueMask.Length == 0 || valueMask[b * ValueSteps + j] != 0)
            && (attentionMask.Length == 0 || attentionMask[(b * QuerySteps + i) * ValueSteps + j] != 0);

        /// <summary>The layer from its definition, in double; a masked score is -1e9, as float's score - 1e9 rounds to.</summary>
        public Result Reference()
        {
            int rowsQ = Batch * QuerySteps, rowsV = Batch * ValueSteps, hk = Heads * KeyDim, hv = Heads * ValueDim;
            double scale = 1 / Math.Sqrt(KeyDim);
            var q = Affine(query, wq, bq, rowsQ, QueryFeatures, hk).Select(x => x * scale).ToArray();
            var k = Affine(key, wk, bk, rowsV, KeyFeatures, hk);
            var v = Affine(value, wv, bv, rowsV, ValueFeatures, hv);
            var p = new double[Batch * Heads * QuerySteps * ValueSteps];
            var context = new double[rowsQ * hv];
            for (int b = 0; b < Batch; b++)
                for (int h = 0; h < Heads; h++)
                    for (int i = 0; i < QuerySteps; i++)
                    {
                        var row = new double[ValueSteps];
                        for (int j = 0; j < ValueSteps; j++)
                        {
                            double s = 0;
                            for (int d = 0; d < KeyDim; d++) s += q[(b * QuerySteps + i) * hk + h * KeyDim + d] * k[(b * ValueSteps + j) * hk + h * KeyDim + d];
                            row[j] = Attends(b, i, j) ? s : -1e9;
                        }
                        double max = row.Max(), sum = row.Sum(s => Math.Exp(s - max));
                        for (int j = 0; j < ValueSteps; j++)
                        {
                            double pj = p[((b * Heads + h) * QuerySteps + i) * ValueSteps + j] = Math.Exp(row[j] - max) / sum;
                            for (int e = 0; e < ValueDim; e++) context[(b * QuerySteps + i) * hv + h * ValueDim + e] += pj * v[(b * ValueSteps + j) * hv + h * ValueDim + e];
                        }
                    }
            var output = Affine(context, wo, bo, rowsQ, hv, QueryFeatures);

            var dy = outputGradient.Select(x => (double)x).ToArray();
            var (dWo, dBo, dContext) = AffineBackward(context, wo, dy, rowsQ, hv, QueryFeatures);
            var (dqs, dks, dvs) = (new double[q.Length], new double[k.Length], new double[v.Length]);
            for (int b = 0; b < Batch; b++)
                for (int h = 0; h < Heads; h++)
                    for (int i = 0; i < QuerySteps; i++)
                    {
                        var dp = new double[ValueSteps];
                        int pi = ((b * Heads + h) * QuerySteps + i) * ValueSteps;
                        for (int j = 0; j < ValueSteps; j++)
                            for (int e = 0; e < ValueDim; e++)
                            {
                                double g = dContext[(b * QuerySteps + i) * hv + h * ValueDim + e];
                                dp[j] += g * v[(b * ValueSteps + j) * hv + h * ValueDim + e];
                                dvs[(b * ValueSteps + j) * hv + h * ValueDim + e] += p[pi + j] * g;
                            }
                        double weighted = 0;
                        for (int j = 0; j < ValueSteps; j++) weighted += p[pi + j] * dp[j];
                        for (int j = 0; j < ValueSteps; j++)
                        {
                            double ds = p[pi + j] * (dp[j] - weighted);
                            for (int d = 0; d < KeyDim; d++)
                            {
                                dqs[(b * QuerySteps + i) * hk + h * KeyDim + d] += ds * k[(b * ValueSteps + j) * hk + h * KeyDim + d];
                                dks[(b * ValueSteps + j) * hk + h * KeyDim + d] += ds * q[(b * QuerySteps + i) * hk + h * KeyDim + d];
                            }
                        }
                    }
            var (dWq, dBq, dQuery) = AffineBackward(query.Select(x => (double)x).ToArray(), wq, dqs.Select(x => x * scale).ToArray(), rowsQ, QueryFeatures, hk);
            var (dWk, dBk, dKey) = AffineBackward(key.Select(x => (double)x).ToArray(), wk, dks, rowsV, KeyFeatures, hk);
            var (dWv, dBv, dValue) = AffineBackward(value.Select(x => (double)x).ToArray(), wv, dvs, rowsV, ValueFeatures, hv);
            float[] F(double[] x) => x.Select(d => (float)d).ToArray();
            return new Result(F(output), F(dQuery), F(dKey), F(dValue), new[] { dWq, dBq, dWk, dBk, dWv, dBv, dWo, dBo }.Select(F).ToArray());
        }

        private static double[] Affine(IReadOnlyList<float> x, float[] w, float[] bias, int rows, int inputs, int outputs) =>
            Affine(x.Select(v => (double)v).ToArray(), w, bias, rows, inputs, outputs);

        private static double[] Affine(double[] x, float[] w, float[] bias, int rows, int inputs, int outputs)
        {
            var y = new double[rows * outputs];
            for (int r = 0; r < rows; r++)
                for (int o = 0; o < outputs; o++)
                {
                    double s = bias[o];
                    for (int i = 0; i < inputs; i++) s += x[r * inputs + i] * w[i * outputs + o];
                    y[r * outputs + o] = s;
                }
            return y;
        }

        /// <summary>The kernel, bias and input gradients of y = x·w + b given dy.</summary>
        private static (double[] Kernel, double[] Bias, double[] Input) AffineBackward(double[] x, float[] w, double[] dy, int rows, int inputs, int outputs)
        {
            var (dw, db, dx) = (new double[inputs * outputs], new double[outputs], new double[rows * inputs]);
            for (int r = 0; r < rows; r++)
                for (int o = 0; o < outputs; o++)
                {
                    double g = dy[r * outputs + o];
                    db[o] += g;
                    for (int i = 0; i < inputs; i++)
                    {
                        dw[i * outputs + o] += x[r * inputs + i] * g;
                        dx[r * inputs + i] += w[i * outputs + o] * g;
                    }
                }
            return (dw, db, dx);
        }
    }
}
