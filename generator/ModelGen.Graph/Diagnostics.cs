using Microsoft.CodeAnalysis;

namespace ModelGen.Graph;

/// <summary>
/// Every diagnostic ModelGen reports, in one table (README.md lists the same IDs). The analyzers report
/// them with exact locations; the generator only skips models that have any error.
/// </summary>
internal static class Diagnostics
{
    private const string Category = "ModelGen";
    private const string HelpBase = "https://github.com/modelgen/modelgen/blob/main/README.md#";

    private static DiagnosticDescriptor Error(string id, string title, string message) => Describe(id, title, message, DiagnosticSeverity.Error);

    private static DiagnosticDescriptor Describe(string id, string title, string message, DiagnosticSeverity severity) =>
        new(id, title, message, Category, severity, isEnabledByDefault: true, helpLinkUri: HelpBase + id.ToLowerInvariant());

    public static readonly DiagnosticDescriptor NotPartial = Error("MG0001",
        "Model class must be partial",
        "Model class '{0}' must be declared partial (and so must every type containing it) so ModelGen can generate its forward and backward passes");

    public static readonly DiagnosticDescriptor MissingInputShape = Error("MG0002",
        "Model input has no shape",
        "{0} (Keras would only fail at run time with \"This model has not yet been built\")");

    public static readonly DiagnosticDescriptor InvalidLayerConfiguration = Error("MG0003",
        "Invalid layer configuration",
        "Layer '{0}' of model '{1}': {2}");

    public static readonly DiagnosticDescriptor UnsupportedMember = Error("MG0004",
        "Unsupported member in a model class",
        "'{0}' is not allowed in model class '{1}': {2}");

    public static readonly DiagnosticDescriptor FieldTypeMismatch = Error("MG0005",
        "Layer field has the wrong type",
        "Layer '{0}' is declared with [{1}] and must have type '{2}', not '{3}'");

    public static readonly DiagnosticDescriptor MisplacedInput = Error("MG0006",
        "Input out of place in a Sequential model",
        "Input '{0}' of Sequential model '{1}' must be its first and only [Input] field");

    public static readonly DiagnosticDescriptor IncompatibleInputShape = Error("MG0007",
        "Layer cannot take its input's shape",
        "Layer '{0}' ({1}) cannot take input of shape {2} from '{3}': it expects {4}");

    public static readonly DiagnosticDescriptor NoLayers = Error("MG0008",
        "Model has no layers",
        "Sequential model '{0}' has an input but no layers after it");

    public static readonly DiagnosticDescriptor UnsupportedModelClass = Error("MG0009",
        "Unsupported model class",
        "Model class '{0}' cannot be {1}");

    public static readonly DiagnosticDescriptor GraphDisconnected = Error("MG0010",
        "Graph disconnected",
        "'{0}' is not an input of graph method '{1}' and is not computed from one: every tensor must come from the method's parameters (Keras: \"Graph disconnected\")");

    public static readonly DiagnosticDescriptor IncompatibleShapes = Error("MG0011",
        "Incompatible shapes",
        "{0}");

    public static readonly DiagnosticDescriptor UnsupportedGraphCode = Error("MG0012",
        "Unsupported code in a graph method",
        "{0} is not allowed in graph method '{1}': use local declarations and assignments of tensors, layerField.Apply(x), Ops.Add/Subtract/Multiply/Average/Maximum/Minimum/Concatenate/Dot/Relu/Sigmoid/Tanh/Softmax(...), and return");

    public static readonly DiagnosticDescriptor UnusedLayer = Describe("MG0013",
        "Layer is never used",
        "Layer '{0}' is not used by graph method '{1}': it has no weights in the model and is not saved", DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor UnusedInput = Describe("MG0014",
        "Graph input is never used",
        "Input '{0}' of graph method '{1}' does not reach the output", DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor MissingGraph = Error("MG0015",
        "Functional model has no graph method",
        "{0}");

    public static readonly DiagnosticDescriptor Cycle = Error("MG0016",
        "Cycle in the graph",
        "Graph method '{0}' calls itself ({1}): a model's graph must not contain a cycle");

    public static readonly DiagnosticDescriptor LossDoesNotFitOutput = Describe("MG0017",
        "Loss does not fit its output",
        "Output '{0}' ends in {1} but is trained with {2}: {3}", DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor SequentialNeedsGraph = Error("MG0018",
        "Sequential model needs a graph",
        "Sequential model '{0}' has several inputs ({1}); a Sequential model is a single chain, so make it [Functional] (a code fix does)");

    public static readonly DiagnosticDescriptor LikelyUnsharedLayers = Describe("MG0019",
        "Identical layers on the two sides of a merge",
        "'{0}' and '{1}' have the same configuration and encode the two sides of '{2}' with separate weights ({3} parameters instead of {4}); if both sides should be encoded alike, as in a Siamese network, apply one field twice", DiagnosticSeverity.Info);

    public static readonly DiagnosticDescriptor MaskDestroyed = Describe("MG0020",
        "Layer drops the mask",
        "Layer '{0}' ({1}) does not support masking: the mask from '{2}' ends here, so the layers after it treat the padded steps as data", DiagnosticSeverity.Warning);

    public static readonly DiagnosticDescriptor NameClaimedByGeneratedCode = Error("MG0021",
        "Name the generated code cannot take",
        "'{0}' cannot name this {1} of '{2}': {3}; rename it (a code fix does)");

    /// <summary>Reported by the generator where its emitter fails on a valid model (a bug of ours); the analyzers never see it.</summary>
    public static readonly DiagnosticDescriptor GenerationFailed = Error("MG0022",
        "ModelGen could not generate a model",
        "ModelGen failed to generate model '{0}' ({1}: {2}); the other models are generated. This is a bug in ModelGen: please report it with the model's declaration.");

    /// <summary>The analyzers' diagnostics.</summary>
    public static readonly DiagnosticDescriptor[] All =
    {
        NotPartial, MissingInputShape, InvalidLayerConfiguration, UnsupportedMember, FieldTypeMismatch,
        MisplacedInput, IncompatibleInputShape, NoLayers, UnsupportedModelClass,
        GraphDisconnected, IncompatibleShapes, UnsupportedGraphCode, UnusedLayer, UnusedInput, MissingGraph, Cycle,
        LossDoesNotFitOutput, SequentialNeedsGraph, LikelyUnsharedLayers, MaskDestroyed, NameClaimedByGeneratedCode,
    };
}
