namespace ModelGen;

/// <summary>Keras' padding modes for convolution and pooling windows. Linked into the generator: never renumber.</summary>
#if MODELGEN_COMPILER
internal // the generator's and analyzers' linked copy must not clash with the runtime's public type
#else
public
#endif
enum Padding
{
    /// <summary>Only whole windows: the output shrinks by kernel - 1.</summary>
    Valid = 0,
    /// <summary>Zero-padded so that output = ceil(input / stride).</summary>
    Same = 1,
}
