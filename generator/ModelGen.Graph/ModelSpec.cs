using System.Linq;

namespace ModelGen.Graph;

internal enum LayerKind { Input, Dense, Dropout, Activation }

/// <summary>
/// One layer after parsing and shape inference: plain values only (no symbols, syntax or locations),
/// so two parses of unchanged code compare equal and the generator's output is cached.
/// </summary>
/// <param name="Name">The user's field name: the layer name in weights, summaries and generated code.</param>
/// <param name="OutputShape">Shape without the batch dimension.</param>
internal sealed record LayerSpec(
    string Name,
    LayerKind Kind,
    EquatableArray<int> OutputShape,
    int InputSize,
    Activation Activation = Activation.Linear,
    bool UseBias = true,
    double Rate = 0)
{
    /// <summary>Floats per sample in this layer's output.</summary>
    public int OutputSize => OutputShape.Items.Aggregate(1, (a, b) => a * b);
    public int KernelLength => Kind == LayerKind.Dense ? InputSize * OutputSize : 0;
    public int BiasLength => Kind == LayerKind.Dense && UseBias ? OutputSize : 0;
    public int ParameterCount => KernelLength + BiasLength;

    /// <summary>The Keras class name shown in summaries.</summary>
    public string TypeName => Kind switch
    {
        LayerKind.Input => "InputLayer",
        LayerKind.Dense => "Dense",
        LayerKind.Dropout => "Dropout",
        _ => "Activation",
    };
}

/// <summary>A valid model, ready to emit.</summary>
/// <param name="ContainingTypes">Declarations of enclosing types, outermost first, e.g. "partial class Outer".</param>
internal sealed record ModelSpec(
    string Namespace,
    string ClassName,
    EquatableArray<string> ContainingTypes,
    Loss Loss,
    EquatableArray<LayerSpec> Layers)
{
    public LayerSpec Input => Layers[0];
    public LayerSpec Output => Layers[Layers.Count - 1];
    public int ParameterCount => Layers.Sum(l => l.ParameterCount);
    public int TargetSize => Loss == Loss.SparseCategoricalCrossentropy ? 1 : Output.OutputSize;

    /// <summary>Generated file name: &lt;Namespace&gt;.&lt;Outer&gt;.&lt;Model&gt;.g.cs.</summary>
    public string HintName
    {
        get
        {
            var parts = ContainingTypes.Select(d => d.Substring(d.LastIndexOf(' ') + 1)).Concat(new[] { ClassName });
            string name = string.Join(".", parts);
            return (Namespace.Length == 0 ? name : Namespace + "." + name) + ".g.cs";
        }
    }
}
