namespace ModelGen.Tests;

/// <summary>Self-attention with a residual connection and LayerNormalization, as in a Transformer encoder block.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class SelfAttentionBlock
{
    [MultiHeadAttention(2, 3)] public MultiHeadAttention attention;
    [LayerNormalization] public LayerNormalization norm;
    [Flatten] public Flatten flatten;
    [Dense(3, Activation.Softmax)] public Dense head;

    [Graph]
    Tensor Forward([Shape(5, 4)] Tensor x) => head.Apply(flatten.Apply(norm.Apply(Ops.Add(x, attention.Apply(x, x)))));
}

/// <summary>Cross-attention with a separate key, a value_dim of its own, no biases, and an explicit attention mask input.</summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class CrossAttention
{
    [MultiHeadAttention(2, 3, ValueDim = 2, UseBias = false)] public MultiHeadAttention attention;
    [Flatten] public Flatten flatten;
    [Dense(2)] public Dense head;

    [Graph]
    Tensor Forward([Shape(4, 3)] Tensor query, [Shape(6, 5)] Tensor value, [Shape(6, 2)] Tensor key, [Shape(4, 6)] Tensor mask) =>
        head.Apply(flatten.Apply(attention.Apply(query, value, key, attentionMask: mask)));
}

/// <summary>Causal self-attention over padded tokens: the Embedding's mask hides padding as keys and queries, then an LSTM reads the result.</summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class CausalAttention
{
    [Embedding(7, 4, MaskZero = true)] public Embedding embed;
    [MultiHeadAttention(2, 2, UseCausalMask = true)] public MultiHeadAttention attention;
    [LSTM(3)] public LSTM lstm;
    [Dense(3, Activation.Softmax)] public Dense head;

    [Graph]
    Tensor Forward([Shape(6)] Tensor tokens)
    {
        var x = embed.Apply(tokens);
        return head.Apply(lstm.Apply(attention.Apply(x, x)));
    }

    /// <summary>A sub-model exposing the attention's output, to check what each step can see.</summary>
    [Graph]
    Tensor Attend([Shape(6)] Tensor tokens)
    {
        var x = embed.Apply(tokens);
        return attention.Apply(x, x);
    }
}

/// <summary>
/// A Transformer encoder block over 32 tokens of 64 features: the attention's output projection and the add, normalization,
/// feed-forward pair, add and normalization after it go row by row over the tokens, so Forward runs them as a row run, in two
/// parts of the rows at batch 1 already (32 rows of 20,480 multiply-adds).
/// </summary>
[Functional(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class TransformerBlock
{
    [Embedding(50, 64)] public Embedding embed;
    [MultiHeadAttention(4, 16)] public MultiHeadAttention attention;
    [LayerNormalization] public LayerNormalization attended;
    [Dense(128, Activation.Relu)] public Dense expand;
    [Dense(64)] public Dense project;
    [LayerNormalization] public LayerNormalization encoded;
    [GlobalAveragePooling1D] public GlobalAveragePooling1D mean;
    [Dense(3, Activation.Softmax)] public Dense label;

    [Graph]
    Tensor Forward([Shape(32)] Tensor tokens)
    {
        var x = embed.Apply(tokens);
        var a = attended.Apply(Ops.Add(x, attention.Apply(x, x)));
        var e = encoded.Apply(Ops.Add(a, project.Apply(expand.Apply(a))));
        return label.Apply(mean.Apply(e));
    }
}
