namespace ModelGen;

/// <summary>Keras' merge layers. Linked into the generator: never renumber.</summary>
#if MODELGEN_COMPILER
internal // the generator's and analyzers' linked copy must not clash with the runtime's public type
#else
public
#endif
enum MergeOperation
{
    Add = 0,
    Subtract = 1,
    Multiply = 2,
    Average = 3,
    Maximum = 4,
    Minimum = 5,
    Concatenate = 6,
    /// <summary>Per-sample dot product of two flat tensors (Keras' Dot(axes=1)): shape (None, 1).</summary>
    Dot = 7,
}
