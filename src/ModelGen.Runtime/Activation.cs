namespace ModelGen;

/// <summary>Element-wise activations, as Keras names them. Linked into the generator: never renumber.</summary>
#if MODELGEN_COMPILER
internal // the generator's and analyzers' linked copy must not clash with the runtime's public type
#else
public
#endif
enum Activation
{
    Linear = 0,
    Relu = 1,
    Sigmoid = 2,
    Tanh = 3,
    Softmax = 4,
}
