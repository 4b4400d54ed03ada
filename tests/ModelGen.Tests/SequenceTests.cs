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
    public void Keras_initialisers_orthogonal_recurrent_kernel_and_forget_bias_one()
    {
        var model = new LstmClassifier(1, seed: 3);
        var bias = model.lstm.Parameters.Single(p => p.Name == "lstm.bias").Values.ToArray();
        Assert.Equal(Enumerable.Repeat(0f, 4).Concat(Enumerable.Repeat(1f, 4)).Concat(Enumerable.Repeat(0f, 8)), bias);
        // The (4, 16) recurrent kernel has orthonormal rows.
        var u = model.lstm.Parameters.Single(p => p.Name == "lstm.recurrent_kernel").Values.ToArray();
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                Assert.Equal(a == b ? 1.0 : 0.0, Enumerable.Range(0, 16).Sum(c => (double)u[a * 16 + c] * u[b * 16 + c]), 5);
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
        var before = (float[])model.Parameters.Clone();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => model.TrainStep(new float[] { 1, 2, 3, 7, 0, 0, 1, 1, 1, 1, 1, 1 }, new float[] { 0, 1 }, new Adam()));
        Assert.Contains("MaskedLstm: layer 'embed' (Embedding) expects integer ids in [0, 7)", error.Message);
        Assert.Equal(before, model.Parameters);
    }
}
