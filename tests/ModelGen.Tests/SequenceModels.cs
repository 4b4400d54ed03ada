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

/// <summary>A class per step: the softmax and the sparse categorical cross-entropy (one label per step) go over the last axis.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class StepTagger
{
    [Input(5, 3)] public Input steps;
    [GRU(4, ReturnSequences = true)] public GRU gru;
    [Dense(3, Activation.Softmax)] public Dense tags;
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

/// <summary>
/// BidirectionalStack's wiring at a size where the summary LSTM's batch is split between the cores (8 samples of 16 steps,
/// 32 units: Recurrent.SharesSamples) and the encoder's two directions each run whole on a core of their own, so the
/// parity tests hold both routes to PyTorch too.
/// </summary>
[Sequential(Loss = Loss.BinaryCrossentropy)]
public partial class SplitBatchRecurrent
{
    [Input(16, 2)] public Input steps;
    [Masking] public Masking padding;
    [LSTM(32, ReturnSequences = true, Bidirectional = true)] public LSTM encoder;
    [LSTM(32)] public LSTM summary;
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

/// <summary>
/// Recurrent layers wide enough that a few samples' steps stream their recurrent kernels' tiles (256 and 192 gates), on
/// real-valued steps: an inference copy packs both kernels of every direction once (InferenceCopyTests).
/// </summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class WideRecurrentStack
{
    [Input(12, 20)] public Input steps;
    [LSTM(64, ReturnSequences = true, Bidirectional = true)] public LSTM encoder;
    [GRU(64)] public GRU summary;
    [Dense(10, Activation.Softmax)] public Dense classes;
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

/// <summary>
/// An encoder-decoder: the encoder LSTM's final state (Keras' return_state; its output is not used) starts the decoder
/// (initial_state), which reads the target sequence and returns every step.
/// </summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class EncoderDecoder
{
    [LSTM(3)] public LSTM encoder;
    [LSTM(3, ReturnSequences = true)] public LSTM decoder;
    [Dense(2)] public Dense readout;

    [Graph]
    Tensor Forward([Shape(5, 2)] Tensor source, [Shape(4, 2)] Tensor target)
    {
        var (_, h, c) = encoder.ApplyWithState(source);
        return readout.Apply(decoder.Apply(target, h, c));
    }
}

/// <summary>A GRU started from a learned state (a Dense of a second input) whose final state is also an output of the model.</summary>
[Functional(Loss = Loss.MeanSquaredError)]
public partial class GruWithStates
{
    [Dense(3, Activation.Tanh)] public Dense start;
    [GRU(3, ReturnSequences = true)] public GRU gru;
    [Dense(1)] public Dense readout;

    [Graph]
    (Tensor steps, Tensor state) Forward([Shape(5, 2)] Tensor x, [Shape(4)] Tensor z)
    {
        var (sequence, state) = gru.ApplyWithState(x, start.Apply(z));
        return (readout.Apply(sequence), state);
    }
}

/// <summary>A bag of words: the mean of the unpadded ids' table rows, read where they lie (EmbeddingKernel.MeanForward), then a classifier.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class MaskedBag
{
    [Input(6)] public Input tokens;
    [Embedding(7, 4, MaskZero = true)] public Embedding embed;
    [GlobalAveragePooling1D] public GlobalAveragePooling1D mean;
    [Dense(3, Activation.Softmax)] public Dense head;
}

/// <summary><see cref="MaskedBag"/> with a linear Activation between lookups and mean, so the lookups are written and then averaged: the same weights from the same seed.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class MaskedBagApart
{
    [Input(6)] public Input tokens;
    [Embedding(7, 4, MaskZero = true)] public Embedding embed;
    [Activation(Activation.Linear)] public ActivationLayer same;
    [GlobalAveragePooling1D] public GlobalAveragePooling1D mean;
    [Dense(3, Activation.Softmax)] public Dense head;
}

/// <summary>A bag of embeddings: the mean of the unpadded tokens' vectors (Keras' GlobalAveragePooling1D honours the mask), then a classifier.</summary>
[Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
public partial class MaskedAverage
{
    [Input(6)] public Input tokens;
    [Embedding(7, 4, MaskZero = true)] public Embedding embed;
    [Dense(5, Activation.Tanh)] public Dense perStep;
    [GlobalAveragePooling1D] public GlobalAveragePooling1D mean;
    [Dense(3, Activation.Softmax)] public Dense head;
}
