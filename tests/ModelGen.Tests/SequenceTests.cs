using ModelGen.Training;

namespace ModelGen.Tests;

/// <summary>Counts, weight names, masks and bad ids of the sequence layers (their numbers are checked by the parity and gradient tests).</summary>
public class SequenceTests
{
    [Fact]
    public void Counts_are_keras_counts()
    {
        // Embedding 10,000 x 128; Bidirectional(LSTM(64)) on 128 features: 2 x 4·64·(128 + 64 + 1) = 98,816;
        // GRU(64) on 128 (Keras 3's reset_after: two bias rows): 3·64·(128 + 64) + 2·3·64 = 37,248; Dense 65.
        Assert.Equal(1_280_000 + 98_816 + 37_248 + 65, TextLstm.ParameterCount);
        string summary = new TextLstm(1).Summary();
        Assert.Contains("│ encoder (Bidirectional)              │ (None, 100, 128)            │          98,816 │", summary);
        Assert.Contains("│ summary (GRU)                        │ (None, 64)                  │          37,248 │", summary);
        var names = new TextLstm(1).encoder.Parameters.Select(p => p.Name + p.ShapeText);
        Assert.Equal(new[]
        {
            "encoder.forward.kernel(128, 256)", "encoder.forward.recurrent_kernel(64, 256)", "encoder.forward.bias(256,)",
            "encoder.backward.kernel(128, 256)", "encoder.backward.recurrent_kernel(64, 256)", "encoder.backward.bias(256,)",
        }, names);
    }

    [Fact]
    public void A_dense_layer_at_every_step_reports_its_sequence_shape()
    {
        var model = new GruSequences(1);
        Assert.Equal(new[] { 5, 2 }, model.perStep.OutputShape);
        Assert.Equal(new[] { 5, 4 }, model.gru.OutputShape);
    }

    [Fact]
    public void Keras_initialisers_orthogonal_recurrent_kernel_and_forget_bias_one()
    {
        var model = new LstmClassifier(1, seed: 3);
        var bias = model.lstm.Parameters.Single(p => p.Name == "lstm.bias").Values.ToArray();
        Assert.Equal(Enumerable.Repeat(0f, 4).Concat(Enumerable.Repeat(1f, 4)).Concat(Enumerable.Repeat(0f, 8)), bias);
        // The (4, 16) recurrent kernel has orthonormal rows.
        var u = model.lstm.Parameters.Single(p => p.Name == "lstm.recurrent_kernel").Values.ToArray();
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                Assert.Equal(a == b ? 1.0 : 0.0, Enumerable.Range(0, 16).Sum(c => (double)u[a * 16 + c] * u[b * 16 + c]), tolerance: 5e-6);
    }

    [Fact]
    public void Padding_after_the_last_token_does_not_change_the_prediction()
    {
        // With mask_zero the LSTM carries its state over padding: "3 5 2" predicts the same however much padding follows,
        // and differs from "3 5 2 4" (the padding is not read as data).
        var model = new MaskedLstm(3, seed: 4);
        var ids = new float[] { 3, 5, 2, 0, 0, 0, 3, 5, 2, 0, 0, 0, 3, 5, 2, 4, 0, 0 };
        var outputs = new float[9];
        model.Predict(ids, outputs);
        Assert.Equal(outputs.AsSpan(0, 3).ToArray(), outputs.AsSpan(3, 3).ToArray());
        Assert.NotEqual(outputs.AsSpan(0, 3).ToArray(), outputs.AsSpan(6, 3).ToArray());
        var leading = new float[] { 0, 0, 0, 3, 5, 2 };
        var shifted = new float[3];
        model.Predict(leading, shifted);
        Assert.Equal(outputs.AsSpan(0, 3).ToArray(), shifted); // padding before the tokens leaves the zero state untouched
    }

    [Fact]
    public void An_id_outside_the_table_names_the_layer_and_changes_nothing()
    {
        var model = new MaskedLstm(2, seed: 5);
        var before = model.Parameters.ToArray();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => model.TrainStep(new float[] { 1, 2, 3, 7, 0, 0, 1, 1, 1, 1, 1, 1 }, new float[] { 0, 1 }, new Adam()));
        Assert.Contains("MaskedLstm: layer 'embed' (Embedding) expects integer ids in [0, 7)", error.Message);
        Assert.Equal(before, model.Parameters);
    }
}

public class AttentionTests
{
    [Fact]
    public void Counts_and_weight_names_follow_keras()
    {
        // Keras: MultiHeadAttention(num_heads=2, key_dim=3) on (5, 4) self-attention: query, key, value kernels 4·2·3 = 24 and
        // biases 2·3 = 6 each, attention_output kernel 2·3·4 = 24 and bias 4: 3·30 + 28 = 118.
        string summary = new SelfAttentionBlock(1).Summary();
        Assert.Contains("│ attention (MultiHeadAttention) │ (None, 5, 4)               │           118 │ x[0][0], x[0][0], x[0][0]", summary);
        Assert.Equal(new[] { "attention.query.kernel(4, 2, 3)", "attention.query.bias(2, 3)", "attention.key.kernel(4, 2, 3)", "attention.key.bias(2, 3)",
            "attention.value.kernel(4, 2, 3)", "attention.value.bias(2, 3)", "attention.attention_output.kernel(2, 3, 4)", "attention.attention_output.bias(4,)" },
            new SelfAttentionBlock(1).attention.Parameters.Select(p => p.Name + p.ShapeText));
    }

    [Fact]
    public void A_causal_layer_cannot_see_later_steps_and_padding_is_not_attended()
    {
        var model = new CausalAttention(2, seed: 9);
        var first = new float[6 * 4];
        var second = new float[6 * 4];
        model.Attend(new float[] { 3, 1, 4, 1, 5, 6 }, first);
        model.Attend(new float[] { 3, 1, 4, 2, 2, 2 }, second);
        // Steps 0-2 see only tokens 0-2, which agree; step 3 sees the token that differs.
        Assert.Equal(first.AsSpan(0, 12).ToArray(), second.AsSpan(0, 12).ToArray());
        Assert.NotEqual(first.AsSpan(12, 4).ToArray(), second.AsSpan(12, 4).ToArray());

        // Padding is masked as a key: attention has no notion of position, so the token 4 at step 3 of "0 3 1 4" attends to
        // exactly what the 4 at step 2 of "3 1 4" does, provided the leading padding is not attended.
        var padded = new float[6 * 4];
        model.Attend(new float[] { 0, 3, 1, 4, 0, 0 }, padded);
        var expected = first.AsSpan(8, 4).ToArray();
        var actual = padded.AsSpan(12, 4).ToArray();
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], actual[i], tolerance: 5e-6);
    }
}
