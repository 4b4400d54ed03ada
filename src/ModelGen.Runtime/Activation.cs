namespace ModelGen;

/// <summary>Element-wise activations, as Keras names them. Linked into the generator: never renumber.</summary>
public enum Activation
{
    Linear = 0,
    Relu = 1,
    Sigmoid = 2,
    Tanh = 3,
    Softmax = 4,
}
