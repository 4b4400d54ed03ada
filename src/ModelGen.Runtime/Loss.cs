namespace ModelGen;

/// <summary>Training losses with Keras' reductions (mean over the batch). Linked into the generator: never renumber.</summary>
#if MODELGEN_COMPILER
internal // the generator's and analyzers' linked copy must not clash with the runtime's public type
#else
public
#endif
enum Loss
{
    /// <summary>Keras "mse": mean over the last axis, then over the batch.</summary>
    MeanSquaredError = 0,
    /// <summary>Keras "binary_crossentropy" on probabilities, clipped to [1e-7, 1 - 1e-7].</summary>
    BinaryCrossentropy = 1,
    /// <summary>Keras "categorical_crossentropy" on probabilities with one-hot targets.</summary>
    CategoricalCrossentropy = 2,
    /// <summary>Keras "sparse_categorical_crossentropy": targets are class indices, one per row of the last axis (a sample, or a step of a sequence).</summary>
    SparseCategoricalCrossentropy = 3,
}
