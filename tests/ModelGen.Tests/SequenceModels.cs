namespace ModelGen.Tests;

/// <summary>An LSTM reading 5 steps of 3 features, its last state classified.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class LstmClassifier
{
    [Input(5, 3)] public Input steps;
    [LSTM(4)] public LSTM lstm;
    [Dense(3, Activation.Softmax)] public Dense head;
}

/// <summary>A GRU returning every step, then a Dense applied at every step (Keras' TimeDistributed(Dense)): a sequence regression.</summary>
[Sequential(Loss = Loss.MeanSquaredError)]
public partial class GruSequences
{
    [Input(5, 3)] public Input steps;
    [GRU(4, ReturnSequences = true)] public GRU gru;
    [Dense(2)] public Dense perStep;
}

/// <summary>Token ids with padding (id 0): Embedding(MaskZero) feeds the mask to the LSTM, which carries its state over the padding.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class MaskedLstm
{
    [Input(6)] public Input tokens;
    [Embedding(7, 3, MaskZero = true)] public Embedding embed;
    [LSTM(4)] public LSTM lstm;
    [Dense(3, Activation.Softmax)] public Dense head;
}

/// <summary>
/// Masking on real-valued steps (all-zero steps are padding), a bidirectional GRU returning sequences (its masked steps output
/// zeros, as Keras' Bidirectional sets it), a stacked LSTM that consumes the mask, and a sigmoid head.
/// </summary>
[Sequential(Loss = Loss.BinaryCrossentropy)]
public partial class BidirectionalStack
{
    [Input(5, 2)] public Input steps;
    [Masking] public Masking padding;
    [GRU(3, ReturnSequences = true, Bidirectional = true)] public GRU encoder;
    [LSTM(2)] public LSTM summary;
    [Dense(1, Activation.Sigmoid)] public Dense head;
}

/// <summary>A bidirectional LSTM whose every step (zeros where masked) feeds a per-step Dense: gradients reach the masked outputs too.</summary>
[Sequential(Loss = Loss.MeanSquaredError)]
public partial class BidirectionalSequences
{
    [Input(4, 2)] public Input steps;
    [Masking] public Masking padding;
    [LSTM(3, ReturnSequences = true, Bidirectional = true)] public LSTM encoder;
    [Dense(1)] public Dense perStep;
}

/// <summary>Keras-sized text models for the parameter counts.</summary>
[Sequential(Loss = Loss.BinaryCrossentropy)]
public partial class TextLstm
{
    [Input(100)] public Input tokens;
    [Embedding(10000, 128, MaskZero = true)] public Embedding embed;
    [LSTM(64, Bidirectional = true, ReturnSequences = true)] public LSTM encoder;
    [GRU(64)] public GRU summary;
    [Dense(1, Activation.Sigmoid)] public Dense head;
}
