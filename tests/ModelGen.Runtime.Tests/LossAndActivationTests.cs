using ModelGen.Kernels;
using ModelGen.Training;

namespace ModelGen.Runtime.Tests;

/// <summary>Loss and activation gradients against central finite differences computed in double.</summary>
[Collection(KernelSettings.Name)]
public class LossAndActivationTests
{
    [Theory]
    [InlineData(Loss.MeanSquaredError)]
    [InlineData(Loss.BinaryCrossentropy)]
    [InlineData(Loss.CategoricalCrossentropy)]
    [InlineData(Loss.SparseCategoricalCrossentropy)]
    public void Loss_gradient_matches_finite_differences(Loss loss)
    {
        const int batch = 3, units = 4;
        var random = new Random(5);
        var predictions = Enumerable.Range(0, batch * units).Select(_ => (float)(0.05 + 0.9 * random.NextDouble())).ToArray();
        float[] targets = loss switch
        {
            Loss.SparseCategoricalCrossentropy => new float[] { 2, 0, 3 },
            Loss.CategoricalCrossentropy => new float[] { 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1 },
            Loss.BinaryCrossentropy => Enumerable.Range(0, batch * units).Select(i => (float)(i % 2)).ToArray(),
            _ => Enumerable.Range(0, batch * units).Select(_ => (float)random.NextDouble()).ToArray(),
        };
        var gradient = new float[batch * units];
        Losses.Compute(loss, predictions, targets, gradient, batch, units, "M", "out");

        const float step = 1e-3f;
        for (int i = 0; i < predictions.Length; i++)
        {
            var plus = (float[])predictions.Clone(); plus[i] += step;
            var minus = (float[])predictions.Clone(); minus[i] -= step;
            double numeric = ((double)Losses.Compute(loss, plus, targets, default, batch, units, "M", "out")
                            - Losses.Compute(loss, minus, targets, default, batch, units, "M", "out")) / (2 * step);
            Assert.True(Math.Abs(numeric - gradient[i]) <= 2e-3 * Math.Max(1, Math.Abs(numeric)), $"{loss} element {i}: analytic {gradient[i]}, numeric {numeric}");
        }
    }

    /// <summary>
    /// A loss over one part of a batch, its mean taken over the batch's rows (BatchParts' meanOver), writes for those rows
    /// the gradient the whole batch's loss writes, bit for bit, and the parts' losses add up to the batch's, but for the
    /// rounding of each part's share to a float.
    /// </summary>
    [Theory]
    [InlineData(Loss.MeanSquaredError, false)]
    [InlineData(Loss.BinaryCrossentropy, false)]
    [InlineData(Loss.CategoricalCrossentropy, false)]
    [InlineData(Loss.SparseCategoricalCrossentropy, false)]
    [InlineData(Loss.CategoricalCrossentropy, true)]
    [InlineData(Loss.SparseCategoricalCrossentropy, true)]
    public void A_loss_over_part_of_a_batch_takes_the_batchs_mean(Loss loss, bool throughSoftmax)
    {
        const int batch = 9, first = 5, units = 21;
        var random = new Random(31);
        var predictions = Enumerable.Range(0, batch * units).Select(_ => (float)random.NextDouble() * 0.9f + 0.05f).ToArray();
        bool sparse = loss == Loss.SparseCategoricalCrossentropy;
        int targetWidth = sparse ? 1 : units;
        var targets = Enumerable.Range(0, batch * targetWidth).Select(i => sparse ? random.Next(units) : (float)random.NextDouble()).ToArray();
        float Compute(int row, int rows, Span<float> gradient, int meanOver)
        {
            var p = predictions.AsSpan(row * units, rows * units);
            var t = targets.AsSpan(row * targetWidth, rows * targetWidth);
            return throughSoftmax
                ? Losses.ComputeThroughSoftmax(loss, p, t, gradient, rows, units, "M", "out", meanOver)
                : Losses.Compute(loss, p, t, gradient, rows, units, "M", "out", meanOver);
        }
        var whole = new float[batch * units];
        var parts = new float[batch * units];
        float wholeLoss = Compute(0, batch, whole, meanOver: 0);
        float partsLoss = Compute(0, first, parts.AsSpan(0, first * units), batch) + Compute(first, batch - first, parts.AsSpan(first * units), batch);

        Assert.Equal(whole, parts);
        Assert.Equal(wholeLoss, partsLoss, wholeLoss * 3e-7f);
        Assert.NotEqual(wholeLoss, Compute(0, first, parts.AsSpan(0, first * units), meanOver: 0) + Compute(first, batch - first, parts.AsSpan(first * units), meanOver: 0));
    }

    [Fact]
    public void Softmax_cross_entropy_gradient_reduces_to_p_minus_y_over_batch()
    {
        var logits = new float[] { 0.3f, -1.2f, 2.0f, 0.1f, 0.5f, 0.4f };
        Activations.Forward(Activation.Softmax, logits, 2, 3);
        var gradient = new float[6];
        Losses.Compute(Loss.SparseCategoricalCrossentropy, logits, new float[] { 2, 0 }, gradient, 2, 3, "M", "out");
        Activations.Backward(Activation.Softmax, logits, gradient, 2, 3);
        var oneHot = new float[] { 0, 0, 1, 1, 0, 0 };
        for (int i = 0; i < 6; i++) Assert.Equal((logits[i] - oneHot[i]) / 2, gradient[i], tolerance: 5e-7);
    }

    /// <summary>
    /// The loss taken through the softmax against the two passes it replaces: the same loss bit for bit, and the same logit
    /// gradient within a few roundings, for softmax rows of 3 to 17 classes, one-hot, soft and sparse targets, and rows whose
    /// label (or a soft target's class) is clipped, above 1 - 1e-7 or below 1e-7, where both give exactly zero.
    /// </summary>
    [Theory]
    [InlineData(Loss.SparseCategoricalCrossentropy, 3)]
    [InlineData(Loss.SparseCategoricalCrossentropy, 10)]
    [InlineData(Loss.SparseCategoricalCrossentropy, 17)]
    [InlineData(Loss.CategoricalCrossentropy, 10)]
    [InlineData(Loss.CategoricalCrossentropy, 17)]
    public void Loss_through_softmax_equals_the_loss_then_the_softmax_backward(Loss loss, int units)
    {
        const int batch = 9;
        var random = new Random(units);
        var probabilities = Enumerable.Range(0, batch * units).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray();
        for (int j = 0; j < units; j++) probabilities[j] = j == 0 ? 30f : -30f;            // row 0: class 0 above 1 - 1e-7
        for (int j = 0; j < units; j++) probabilities[units + j] = j == 0 ? -30f : 0f;     // row 1: class 0 below 1e-7
        Activations.Forward(Activation.Softmax, probabilities, batch, units);
        var targets = new float[loss == Loss.SparseCategoricalCrossentropy ? batch : batch * units];
        for (int n = 0; n < batch; n++)
        {
            int label = n < 2 ? 0 : random.Next(units);
            if (loss == Loss.SparseCategoricalCrossentropy) targets[n] = label;
            else if (n % 2 == 0) targets[n * units + label] = 1f;
            else
            {
                // soft targets summing to 1, with a share on the clipped class in row 1
                for (int j = 0; j < units; j++) targets[n * units + j] = (float)random.NextDouble();
                float total = targets.Skip(n * units).Take(units).Sum();
                for (int j = 0; j < units; j++) targets[n * units + j] /= total;
            }
        }
        var chained = new float[batch * units];
        float expectedLoss = Losses.Compute(loss, probabilities, targets, chained, batch, units, "M", "out");
        Activations.Backward(Activation.Softmax, probabilities, chained, batch, units);
        var fused = Enumerable.Repeat(float.NaN, batch * units).ToArray();
        float fusedLoss = Losses.ComputeThroughSoftmax(loss, probabilities, targets, fused, batch, units, "M", "out");

        Assert.Equal(expectedLoss, fusedLoss);
        for (int i = 0; i < fused.Length; i++) Assert.True(Math.Abs(fused[i] - chained[i]) <= 4e-7f / batch, $"element {i}: fused {fused[i]}, chained {chained[i]}");
        Assert.All(fused.Take(units), v => Assert.Equal(0f, v)); // the label clipped at the top: no gradient, as the chain gives
        if (loss == Loss.SparseCategoricalCrossentropy) Assert.All(fused.Skip(units).Take(units), v => Assert.Equal(0f, v)); // and at the bottom
        Assert.Contains(fused.Skip(2 * units), v => v != 0f);
    }

    /// <summary>
    /// With sparse labels, every class but the label gets q / rows with q = p / Σp (Σp summed in order): a division rounded,
    /// then a product rounded, bit for bit, on every SIMD path, at row widths from 3 to 33 (on either side of a vector of 8
    /// and of 16); the label gets (q - 1) / rows, a row whose label is clipped nothing, and the loss is the mean of
    /// -log(clip(q)) in double. Nothing past the gradient is written.
    /// </summary>
    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Loss_through_softmax_scales_each_class_with_one_division_and_one_product(SimdPath path)
    {
        const int batch = 7;
        foreach (int units in new[] { 3, 8, 10, 16, 17, 33 })
        {
            var random = new Random(100 + units);
            var probabilities = Enumerable.Range(0, batch * units).Select(_ => (float)random.NextDouble() + 0.01f).ToArray();
            var labels = Enumerable.Range(0, batch).Select(n => (float)(n % units)).ToArray();
            probabilities[3 * units + 3 % units] = 1e9f; // row 3's label above 1 - 1e-7: clipped
            var gradient = Enumerable.Repeat(float.NaN, batch * units + 1).ToArray();
            float loss;
            using (KernelSettings.OnSimd(path))
                loss = Losses.ComputeThroughSoftmax(Loss.SparseCategoricalCrossentropy, probabilities, labels, gradient.AsSpan(0, batch * units), batch, units, "M", "out");
            float scale = 1f / batch;
            double total = 0;
            for (int n = 0; n < batch; n++)
            {
                float sum = 0f;
                for (int j = 0; j < units; j++) sum += probabilities[n * units + j];
                int label = (int)labels[n];
                float qLabel = probabilities[n * units + label] / sum;
                total -= Math.Log(Math.Clamp(qLabel, Losses.Epsilon, 1f - Losses.Epsilon));
                bool clipped = n == 3;
                Assert.Equal(clipped, !(qLabel > Losses.Epsilon && qLabel < 1f - Losses.Epsilon));
                for (int j = 0; j < units; j++)
                {
                    float q = probabilities[n * units + j] / sum;
                    float expected = clipped ? 0f : j == label ? (q - 1f) * scale : q * scale;
                    Assert.True(expected.Equals(gradient[n * units + j]), $"{units} units, row {n}, class {j}: {gradient[n * units + j]:R}, expected {expected:R}");
                }
            }
            Assert.Equal((float)(total / batch), loss);
            Assert.True(float.IsNaN(gradient[batch * units]), $"{units} units: nothing past the gradient is written");
        }
    }

    /// <summary>The logit gradient against central differences of -log(clip(softmax(z))) computed in double, independently of the kernels.</summary>
    [Fact]
    public void Loss_through_softmax_matches_finite_differences_of_the_logits()
    {
        const int batch = 4, units = 6;
        var random = new Random(23);
        var logits = Enumerable.Range(0, batch * units).Select(_ => random.NextDouble() * 6 - 3).ToArray();
        var labels = new float[] { 1, 5, 0, 3 };
        double Reference(double[] z)
        {
            double total = 0;
            for (int n = 0; n < batch; n++)
            {
                var row = z.Skip(n * units).Take(units).ToArray();
                double largest = row.Max(), sum = row.Sum(v => Math.Exp(v - largest));
                total -= Math.Log(Math.Clamp(Math.Exp(row[(int)labels[n]] - largest) / sum, 1e-7, 1 - 1e-7));
            }
            return total / batch;
        }
        var probabilities = logits.Select(v => (float)v).ToArray();
        Activations.Forward(Activation.Softmax, probabilities, batch, units);
        var gradient = new float[batch * units];
        float loss = Losses.ComputeThroughSoftmax(Loss.SparseCategoricalCrossentropy, probabilities, labels, gradient, batch, units, "M", "out");
        Assert.Equal(Reference(logits), loss, tolerance: 1e-6);
        const double step = 1e-5;
        for (int i = 0; i < logits.Length; i++)
        {
            var plus = (double[])logits.Clone(); plus[i] += step;
            var minus = (double[])logits.Clone(); minus[i] -= step;
            double numeric = (Reference(plus) - Reference(minus)) / (2 * step);
            Assert.True(Math.Abs(numeric - gradient[i]) <= 1e-6, $"element {i}: analytic {gradient[i]}, numeric {numeric}");
        }
    }

    [Fact]
    public void Sparse_labels_give_exactly_the_loss_and_gradient_of_their_one_hot_targets()
    {
        // The sparse path skips the zero terms of the one-hot sum; it must not change a single bit. Rows include a clipped
        // label probability (0) and unnormalised probabilities (Keras divides by their sum).
        const int batch = 5, units = 7;
        var random = new Random(11);
        var predictions = Enumerable.Range(0, batch * units).Select(_ => (float)random.NextDouble()).ToArray();
        predictions[3] = 0f;
        var labels = new float[] { 3, 0, 6, 2, 5 };
        var oneHot = new float[batch * units];
        for (int n = 0; n < batch; n++) oneHot[n * units + (int)labels[n]] = 1f;
        var sparseGradient = new float[batch * units];
        var denseGradient = new float[batch * units];
        float sparse = Losses.Compute(Loss.SparseCategoricalCrossentropy, predictions, labels, sparseGradient, batch, units, "M", "out");
        float dense = Losses.Compute(Loss.CategoricalCrossentropy, predictions, oneHot, denseGradient, batch, units, "M", "out");
        Assert.Equal(dense, sparse);
        Assert.Equal(denseGradient, sparseGradient);
    }

    [Fact]
    public void Accuracy_counts_a_label_as_predicted_only_where_argmax_lands()
    {
        // Ties go to the first maximum, as Keras' argmax; a NaN row falls back to ArgMax's own rule.
        var rows = new float[] { 0.2f, 0.5f, 0.3f, 0.4f, 0.4f, 0.2f, float.NaN, 0.1f, 0.2f, 0.1f, float.NaN, 0.2f };
        Assert.Equal(1.0, Metrics.CorrectCount(Loss.SparseCategoricalCrossentropy, rows.AsSpan(0, 3), new float[] { 1 }, 1, 3));
        Assert.Equal(0.0, Metrics.CorrectCount(Loss.SparseCategoricalCrossentropy, rows.AsSpan(0, 3), new float[] { 2 }, 1, 3));
        Assert.Equal(1.0, Metrics.CorrectCount(Loss.SparseCategoricalCrossentropy, rows.AsSpan(3, 3), new float[] { 0 }, 1, 3));
        Assert.Equal(0.0, Metrics.CorrectCount(Loss.SparseCategoricalCrossentropy, rows.AsSpan(3, 3), new float[] { 1 }, 1, 3));
        for (int start = 6; start <= 9; start += 3)
        {
            for (int label = 0; label < 3; label++) Assert.Equal(Metrics.ArgMax(rows.AsSpan(start, 3)) == label, Metrics.IsArgMax(rows.AsSpan(start, 3), label));
        }
        var random = new Random(3);
        // Rows of 1 to 13 values (IsArgMax compares four at a time, then one by one), small integers for many ties, a NaN in
        // some of them.
        for (int trial = 0; trial < 2000; trial++)
        {
            int length = 1 + random.Next(13);
            var row = Enumerable.Range(0, length).Select(_ => (float)random.Next(4)).ToArray();
            if (random.Next(8) == 0) row[random.Next(length)] = float.NaN;
            int label = random.Next(length);
            Assert.True(Metrics.ArgMax(row) == label == Metrics.IsArgMax(row, label), $"[{string.Join(", ", row)}], label {label}");
        }
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Binary_cross_entropy_matches_each_values_scalar_definition_on_every_path(SimdPath path)
    {
        var random = new Random(11);
        foreach (int count in new[] { 1, 3, 4, 5, 16, 17, 33, 1000 })
        {
            // Probabilities across the clip (0, 1 and values beyond 1e-7 of them) and fractional and binary targets.
            var edges = new[] { 0f, 1f, 1e-9f, 1 - 1e-9f, 1e-7f, 1 - 1e-7f, 2e-7f, 0.5f };
            var p = Enumerable.Range(0, count).Select(i => i % 5 == 0 ? edges[i / 5 % edges.Length] : (float)random.NextDouble()).ToArray();
            var y = Enumerable.Range(0, count).Select(i => i % 3 == 0 ? (float)random.NextDouble() : i % 3 - 1).ToArray();
            var (loss, gradient) = ComputeOnPath(Loss.BinaryCrossentropy, p, y, path);

            double exact = 0;
            float scale = 1f / count;
            for (int i = 0; i < count; i++)
            {
                float clipped = Math.Clamp(p[i], Losses.Epsilon, 1f - Losses.Epsilon);
                exact -= y[i] * Math.Log(clipped) + (1 - y[i]) * Math.Log(1 - clipped);
                bool inRange = p[i] > Losses.Epsilon && p[i] < 1f - Losses.Epsilon;
                Assert.Equal(inRange ? scale * (-y[i] / clipped + (1f - y[i]) / (1f - clipped)) : 0f, gradient[i]);
            }
            exact /= count;
            // Each term's two float logarithms within 1 ulp, its products and sum rounded once each: at most 2^-22 of the
            // term (the terms share a sign), then the mean rounded to float.
            Assert.True(Math.Abs(loss - exact) <= (Math.Pow(2, -22) + Math.Pow(2, -24)) * exact, $"{count} values: loss {loss:R}, exact {exact:R}");
        }
    }

    [Theory, MemberData(nameof(KernelSettings.EveryPath), MemberType = typeof(KernelSettings))]
    public void Mean_squared_error_matches_each_values_scalar_definition_on_every_path(SimdPath path)
    {
        var random = new Random(12);
        foreach (int count in new[] { 1, 3, 4, 5, 16, 17, 33, 1000, 100_352 })
        {
            var p = Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 6 - 3)).ToArray();
            var y = Enumerable.Range(0, count).Select(i => i % 7 == 0 ? p[i] : (float)(random.NextDouble() * 2 - 1)).ToArray();
            var (loss, gradient) = ComputeOnPath(Loss.MeanSquaredError, p, y, path);

            double exact = 0;
            float scale = 2f / count;
            for (int i = 0; i < count; i++)
            {
                float difference = p[i] - y[i];
                exact += (double)difference * difference;
                Assert.Equal(scale * difference, gradient[i]);
            }
            exact /= count;
            // Exact squares summed in double, in four sums rather than in order (~count·2^-53 of the sum apart, far below a float's
            // rounding), then the mean rounded to float once: the float nearest the mean (squares taken in float are not).
            Assert.True((float)exact == loss, $"{count} values: loss {loss:R}, exact {exact:R}");
        }
    }

    /// <summary>
    /// A value-by-value loss over <paramref name="p"/> on <paramref name="path"/>, and its gradient: the loss the same bits as the
    /// portable path's, and nothing written past the gradient (its buffer is one float longer, NaN).
    /// </summary>
    private static (float Loss, float[] Gradient) ComputeOnPath(Loss loss, float[] p, float[] y, SimdPath path)
    {
        int count = p.Length;
        var gradient = Enumerable.Repeat(float.NaN, count + 1).ToArray();
        float value;
        using (KernelSettings.OnSimd(path)) value = Losses.Compute(loss, p, y, gradient.AsSpan(0, count), count, 1, "M", "out");
        using (KernelSettings.OnSimd(SimdPath.Portable))
            Assert.Equal(Losses.Compute(loss, p, y, default, count, 1, "M", "out"), value); // the same bits on every path
        Assert.True(float.IsNaN(gradient[count]), $"{count} values: nothing past them is written");
        return (value, gradient);
    }

    [Fact]
    public void Binary_cross_entropy_of_a_nan_prediction_is_nan_with_no_gradient_there()
    {
        var p = Enumerable.Range(0, 20).Select(i => 0.05f * i + 0.01f).ToArray();
        var y = Enumerable.Range(0, 20).Select(i => (float)(i % 2)).ToArray();
        var clean = new float[20];
        Losses.Compute(Loss.BinaryCrossentropy, p, y, clean, 20, 1, "M", "out");
        p[17] = float.NaN;
        var gradient = new float[20];
        Assert.True(float.IsNaN(Losses.Compute(Loss.BinaryCrossentropy, p, y, gradient, 20, 1, "M", "out")));
        Assert.Equal(0f, gradient[17]);
        clean[17] = 0f;
        Assert.Equal(clean, gradient);
    }

    [Fact]
    public void Cross_entropy_clips_probabilities_like_keras()
    {
        // A zero probability on the true class costs -log(1e-7), not infinity.
        float loss = Losses.Compute(Loss.SparseCategoricalCrossentropy, new float[] { 1f, 0f }, new float[] { 1 }, default, 1, 2, "M", "out");
        Assert.Equal(-Math.Log(1e-7), loss, tolerance: 5e-5);
        float binary = Losses.Compute(Loss.BinaryCrossentropy, new float[] { 1f }, new float[] { 0 }, default, 1, 1, "M", "out");
        Assert.Equal(-Math.Log(1 - (1 - 1e-7f)), binary, 2);
    }

    /// <summary>Every activation the generator emits, so that one added to the enum is tested too.</summary>
    public static TheoryData<Activation> EveryActivation() => new(Enum.GetValues<Activation>());

    [Theory, MemberData(nameof(EveryActivation))]
    public void Activation_backward_matches_finite_differences(Activation activation)
    {
        const int rows = 2, columns = 5;
        var random = new Random(11);
        var x = Enumerable.Range(0, rows * columns).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        var weights = Enumerable.Range(0, rows * columns).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        // Scalar objective L = Σ w ⊙ f(x): dL/df = w.
        double Objective(float[] input)
        {
            var y = (float[])input.Clone();
            Activations.Forward(activation, y, rows, columns);
            return y.Select((v, i) => (double)v * weights[i]).Sum();
        }
        var output = (float[])x.Clone();
        Activations.Forward(activation, output, rows, columns);
        var gradient = (float[])weights.Clone();
        Activations.Backward(activation, output, gradient, rows, columns);

        const float step = 1e-3f;
        for (int i = 0; i < x.Length; i++)
        {
            if (activation == Activation.Relu && Math.Abs(x[i]) < 2 * step) continue; // the kink itself has no derivative
            var plus = (float[])x.Clone(); plus[i] += step;
            var minus = (float[])x.Clone(); minus[i] -= step;
            double numeric = (Objective(plus) - Objective(minus)) / (2 * step);
            Assert.True(Math.Abs(numeric - gradient[i]) <= 2e-3 * Math.Max(1, Math.Abs(numeric)), $"{activation} element {i}: analytic {gradient[i]}, numeric {numeric}");
        }
    }

    [Fact]
    public void Sparse_labels_outside_the_class_range_are_rejected_with_the_layer_and_shape()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
            Losses.Compute(Loss.SparseCategoricalCrossentropy, new float[6], new float[] { 0, 3 }, default, 2, 3, "Mnist", "predictions"));
        Assert.Contains("Mnist", error.Message);
        Assert.Contains("'predictions'", error.Message);
        Assert.Contains("[0, 3)", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            Losses.Compute(Loss.SparseCategoricalCrossentropy, new float[6], new float[] { 0.5f, 1 }, default, 2, 3, "Mnist", "predictions"));
    }

    [Theory]
    [InlineData(Loss.MeanSquaredError)]
    [InlineData(Loss.BinaryCrossentropy)]
    [InlineData(Loss.CategoricalCrossentropy)]
    [InlineData(Loss.SparseCategoricalCrossentropy)]
    public void Short_predictions_targets_or_gradients_are_refused_with_the_layer_and_shape(Loss loss)
    {
        const int rows = 5, units = 4;
        int labels = loss == Loss.SparseCategoricalCrossentropy ? rows : rows * units;
        var predictions = Enumerable.Repeat(0.25f, rows * units).ToArray();
        var targets = new float[labels];
        foreach (var (p, t, g) in new[] { (rows * units - 1, labels, rows * units), (rows * units, labels - 1, rows * units), (rows * units, labels, rows * units - 1) })
        {
            var error = Assert.Throws<ArgumentException>(() =>
                Losses.Compute(loss, predictions.AsSpan(0, p), targets.AsSpan(0, t), new float[g], rows, units, "Digits", "scores"));
            Assert.Contains("Digits", error.Message);
            Assert.Contains("'scores' (5 x 4)", error.Message);
        }
        // The gradient is optional: an empty one asks for the loss alone.
        Assert.True(float.IsFinite(Losses.Compute(loss, predictions, targets, default, rows, units, "Digits", "scores")));
    }

    [Fact]
    public void Dropout_keeps_about_one_minus_rate_and_scales_the_kept_values()
    {
        var random = new SeededRandom(3);
        var input = Enumerable.Repeat(1f, 10000).ToArray();
        var output = new float[input.Length];
        var mask = new float[input.Length];
        DropoutKernel.Forward(input, output, mask, input.Length, 0.3f, ref random);
        int kept = output.Count(v => v != 0);
        Assert.InRange(kept, 6800, 7200);
        Assert.All(output.Where(v => v != 0), v => Assert.Equal(1f / 0.7f, v, 5));
        var gradient = new float[input.Length];
        DropoutKernel.Backward(input, mask, gradient, input.Length);
        Assert.Equal(output, gradient);

        // The same generator state gives the same mask over any length (vector body or scalar tail alike); the next call a new one.
        var again = new SeededRandom(3);
        var shorter = new float[37];
        DropoutKernel.Forward(input, new float[37], shorter, 37, 0.3f, ref again);
        Assert.Equal(mask.Take(37), shorter);
        var next = new float[input.Length];
        DropoutKernel.Forward(input, new float[input.Length], next, input.Length, 0.3f, ref random);
        Assert.InRange(mask.Zip(next).Count(pair => pair.First != pair.Second), 3000, 5400); // independent masks differ in ~42%
    }

    public static IEnumerable<object[]> MaskShapes() => KernelSettings.OnEveryPath(new[]
    {
        new object[] { 37, 0 },       // one core: two whole vectors on AVX-512 and a partial last one
        new object[] { 4099, 1000 },  // shared (just above the share), a part's first index, an odd end
        new object[] { 40000, 0 },    // four parts, none starting on a vector of the whole mask
    });

    [Theory, MemberData(nameof(MaskShapes))]
    public void Dropout_draws_each_element_from_its_index_alone_on_every_path_and_thread_count(int length, int firstIndex, SimdPath path)
    {
        using var _ = KernelSettings.OnSimd(path);
        var key = new DropoutKey(0x9E3779B9u, 12345u);
        const float rate = 0.35f;
        var input = Enumerable.Range(0, length).Select(i => 0.5f + i % 97).ToArray();
        // The definition, element by element: murmur3's finaliser twice on the index, keyed; its top 24 bits a uniform in [0, 1).
        static uint Mix(uint x)
        {
            x ^= x >> 16; x *= 0x85EBCA6Bu;
            x ^= x >> 13; x *= 0xC2B2AE35u;
            return x ^ (x >> 16);
        }
        var expected = Enumerable.Range(0, length).Select(i =>
        {
            float uniform = (Mix(Mix((uint)(firstIndex + i) + key.Salt) ^ key.Key) >> 8) * (1f / 16777216f);
            return uniform >= rate ? 1f / (1f - rate) : 0f;
        }).ToArray();
        foreach (int threads in new[] { 1, 2 })
        {
            // One float past the end of each output, which nothing may write.
            var (output, mask) = (new float[length + 1], new float[length + 1]);
            output[length] = mask[length] = -7f;
            KernelSettings.OnThreads(threads, () => DropoutKernel.Forward(input, output, mask, length, rate, key, firstIndex));
            Assert.Equal(expected, mask.Take(length));
            Assert.Equal(input.Zip(expected, (x, factor) => x * factor), output.Take(length));
            Assert.Equal(-7f, mask[length]);
            Assert.Equal(-7f, output[length]);
        }
    }

    [Theory]
    [InlineData(1000, 0)]   // one part
    [InlineData(1000, 480)] // parts of whole vectors
    [InlineData(1000, 37)]  // a first part ending mid-vector: the second's vectors start off the whole mask's
    [InlineData(101, 100)]  // a second part of one element, a scalar tail
    public void Dropout_in_parts_draws_the_parts_of_the_whole_mask(int length, int firstPart)
    {
        // A step cut in parts (BatchParts) draws its key once; each part gives its first element's index in the batch.
        var random = new SeededRandom(11);
        var key = DropoutKey.Draw(ref random);
        var input = Enumerable.Range(0, length).Select(i => 1f + i).ToArray();
        var (whole, wholeMask) = (new float[length], new float[length]);
        DropoutKernel.Forward(input, whole, wholeMask, length, 0.4f, key, firstIndex: 0);
        var (parts, partsMask) = (new float[length], new float[length]);
        DropoutKernel.Forward(input, parts, partsMask, firstPart, 0.4f, key, firstIndex: 0);
        DropoutKernel.Forward(input.AsSpan(firstPart), parts.AsSpan(firstPart), partsMask.AsSpan(firstPart), length - firstPart, 0.4f, key, firstIndex: firstPart);
        Assert.Equal(wholeMask, partsMask);
        Assert.Equal(whole, parts);

        // The generator's overload draws the same key first: the same mask.
        var again = new SeededRandom(11);
        var drawn = new float[length];
        DropoutKernel.Forward(input, new float[length], drawn, length, 0.4f, ref again);
        Assert.Equal(wholeMask, drawn);
    }

    [Fact]
    public void Seeded_random_is_reproducible_and_glorot_stays_in_its_limit()
    {
        var a = new SeededRandom(42);
        var b = new SeededRandom(42);
        for (int i = 0; i < 100; i++) Assert.Equal(a.NextUInt(), b.NextUInt());
        var kernel = new float[784 * 256];
        var random = new SeededRandom(1);
        Initializers.GlorotUniform(kernel, 784, 256, ref random);
        float limit = MathF.Sqrt(6f / (784 + 256));
        Assert.All(kernel, v => Assert.InRange(v, -limit, limit));
        Assert.InRange(kernel.Average(), -0.001, 0.001);
        // Uniform variance is limit² / 3.
        Assert.InRange(kernel.Select(v => (double)v * v).Average(), 0.97 * limit * limit / 3, 1.03 * limit * limit / 3);
    }
}
