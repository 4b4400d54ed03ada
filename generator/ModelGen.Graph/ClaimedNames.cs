using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace ModelGen.Graph;

/// <summary>
/// The names a layer, input or output cannot take, since the generated code would not compile with them (MG0021 says so
/// where the name is written): names it declares in every model (the class's own members, and the parameters and locals of
/// the generated methods that also take the inputs and outputs by name), C# keywords (it writes names bare), and the
/// runtime's types (a member of that name would hide the type from it). The class's other members (a property, a nested
/// type, a method) meet only the generated members and the runtime's types (<see cref="MemberReason"/>). ClaimedNameTests
/// keeps the table complete (every other name the generated code declares or looks up compiles as a user's) and current
/// (every entry is such a name).
/// </summary>
internal static class ClaimedNames
{
    private static readonly Dictionary<string, string> Uses = Table(
        (MemberUse, new[]
        {
            "ParameterCount", "TrainableParameterCount", "NonTrainableParameterCount", "InputSize", "OutputSize", "TargetSize",
            "MaxBatchSize", "BufferBytes", "Name", "Layers", "Parameters", "Gradients", "Inputs", "Outputs", "LastTrainingOutputs",
            "SummaryText", "GradientFloats", "SeparateGradientFloats", "ValueFloats", "SeparateValueFloats",
            "parameters", "gradients", "layers", "replica", "lastTrainingBatch", "lastOutputs", "inferenceCores", "trainingCores",
            "dropoutRandom", "modelInputs", "modelOutputs",
        }),
        (MethodUse, new[] { "Predict", "ForInference", "TrainStep", "Summary", "Forward", "Backward", "Step", "TrainPart", "UpdateMovingStatistics" }),
        ("the batch size of its methods", new[] { "batch" }),
        ("its forward pass's training flag", new[] { "training" }),
        ("the first row of a part of the batch in its forward pass", new[] { "firstRow" }),
        ("the optimizer a training step takes", new[] { "optimizer" }),
        ("a training step's loss", new[] { "loss" }),
        ("its methods' discard", new[] { "_" }),
        ("its checks name their arguments with nameof(...)", new[] { "nameof" }),
        ("in its constructors", new[] { "maxBatchSize", "forTraining", "sharedParameters", "buffers", "replicaRows" }));

    private const string MemberUse = "a member of every model", MethodUse = "a method of every model";

    /// <summary>The namespaces the generated file imports from the runtime.</summary>
    private static readonly string[] RuntimeNamespaces = { "ModelGen", "ModelGen.Kernels", "ModelGen.Training" };

    /// <summary>The names of the table (not the keywords or types).</summary>
    public static IEnumerable<string> Declared => Uses.Keys;

    /// <summary>Why no layer, input or output may take the name, or null where one may.</summary>
    public static string? Reason(string name, IAssemblySymbol? runtime)
    {
        if (Uses.TryGetValue(name, out var use)) return $"the generated code declares it itself ({use})";
        if (SyntaxFacts.GetKeywordKind(name) != SyntaxKind.None) return "it is a C# keyword, which the generated code writes without the @";
        return TypeReason(name, runtime);
    }

    /// <summary>
    /// Why none of the class's other members (a property, a method, a nested type) may take the name, or null where one may:
    /// the generated members' names, but for a method's the generated methods' (an overload is the user's to write), and the
    /// runtime's types. The generated code names no other member of the class, so its parameters and locals do not count.
    /// </summary>
    public static string? MemberReason(string name, bool isMethod, IAssemblySymbol? runtime)
    {
        if (Uses.TryGetValue(name, out var use) && (use == MemberUse || (use == MethodUse && !isMethod))) return $"the generated code declares it itself ({use})";
        return TypeReason(name, runtime);
    }

    /// <summary>
    /// The public methods the generated code declares for a model of so many inputs and outputs and its sub-models, each
    /// as its name and its parameters' types (ModelEmitter's Predict, TrainStep, ForInference, Summary and a sub-model's
    /// inference; ClaimedNameTests keeps the list current): a user's method with one of these names and the same
    /// parameters would be declared twice.
    /// </summary>
    public static IEnumerable<(string Name, string[] Parameters)> PublicMethods(int inputs, int outputs, IEnumerable<(string Name, int Inputs, int Outputs)> subModels)
    {
        const string Values = "System.ReadOnlySpan<float>", Results = "System.Span<float>", Optimizer = "ModelGen.Training.Optimizer";
        yield return ("Summary", new string[0]);
        yield return ("ForInference", new string[0]);
        yield return ("Predict", new[] { Values, Results });
        yield return ("TrainStep", new[] { Values, Values, Optimizer });
        foreach (var sub in subModels) yield return (sub.Name, Enumerable.Repeat(Values, sub.Inputs).Concat(Enumerable.Repeat(Results, sub.Outputs)).ToArray());
        if (inputs == 1 && outputs == 1) yield break;
        // Several inputs or outputs: an overload with each in its own buffer.
        yield return ("Predict", Enumerable.Repeat(Values, inputs).Concat(Enumerable.Repeat(Results, outputs)).ToArray());
        yield return ("TrainStep", Enumerable.Repeat(Values, inputs + outputs).Append(Optimizer).ToArray());
    }

    /// <summary>The constant a sub-model's count of weights is declared as: EncodeParameterCount.</summary>
    public static string SubModelParameterCount(string subModel) => subModel + "ParameterCount";

    /// <summary>
    /// Why a member of the user's may not be declared beside what the generated code declares for the model's graph (one of
    /// <see cref="PublicMethods"/> again, or a sub-model's <see cref="SubModelParameterCount"/>), or null where it may.
    /// </summary>
    public static string? GraphMemberReason(ISymbol member, int inputs, int outputs, IReadOnlyList<(string Name, int Inputs, int Outputs)> subModels)
    {
        if (subModels.FirstOrDefault(s => member.Name == SubModelParameterCount(s.Name)) is { Name: not null } sub)
            return $"the generated code declares it itself (the '{sub.Name}' sub-model's parameter count)";
        if (member is not IMethodSymbol { MethodKind: MethodKind.Ordinary, TypeParameters.Length: 0 } method || method.Parameters.Any(p => p.RefKind != RefKind.None)) return null;
        var types = method.Parameters.Select(p => p.Type.ToDisplayString()).ToList();
        foreach (var (name, parameters) in PublicMethods(inputs, outputs, subModels))
        {
            if (name == method.Name && parameters.SequenceEqual(types))
                return $"the generated code declares {name}({string.Join(", ", parameters.Select(t => t.Substring(t.LastIndexOf('.') + 1)))}) itself";
        }
        return null;
    }

    private static string? TypeReason(string name, IAssemblySymbol? runtime)
    {
        foreach (var space in RuntimeNamespaces)
        {
            if (runtime?.GetTypeByMetadataName(space + "." + name) is { DeclaredAccessibility: Accessibility.Public })
                return $"it would hide ModelGen's type '{space}.{name}' from the generated code";
        }
        return null;
    }

    private static Dictionary<string, string> Table(params (string Use, string[] Names)[] groups)
    {
        var table = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (use, names) in groups)
            foreach (var name in names) table.Add(name, use);
        return table;
    }
}
