using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ModelGen.Graph;

/// <summary>
/// Reads a model class into a <see cref="ModelSpec"/>: validation and shape inference in one pass.
/// The generator calls it without a reporter and emits nothing when it returns null; the analyzers call it
/// with one and surface every problem at its exact location. One routine, so the two can never disagree.
/// Never throws on broken user code.
/// </summary>
internal static partial class ModelParser
{
    public const string SequentialAttribute = "ModelGen.SequentialAttribute";
    public const string FunctionalAttribute = "ModelGen.FunctionalAttribute";
    private const string GraphAttribute = "ModelGen.GraphAttribute";
    private const string ShapeAttribute = "ModelGen.ShapeAttribute";
    private const string OutputLossAttribute = "ModelGen.OutputLossAttribute";

    /// <summary>Folder of the generator's output trees; their members are ours, not the user's.</summary>
    public const string GeneratedPathMarker = "ModelGen.Generator.ModelGenerator";

    private static readonly Dictionary<string, (LayerKind Kind, string ShortName, string FieldType)> LayerAttributes = new()
    {
        ["ModelGen.InputAttribute"] = (LayerKind.Input, "Input", "ModelGen.Input"),
        ["ModelGen.DenseAttribute"] = (LayerKind.Dense, "Dense", "ModelGen.Dense"),
        ["ModelGen.DropoutAttribute"] = (LayerKind.Dropout, "Dropout", "ModelGen.Dropout"),
        ["ModelGen.ActivationAttribute"] = (LayerKind.Activation, "Activation", "ModelGen.ActivationLayer"),
        ["ModelGen.FlattenAttribute"] = (LayerKind.Flatten, "Flatten", "ModelGen.Flatten"),
        ["ModelGen.Conv2DAttribute"] = (LayerKind.Conv2D, "Conv2D", "ModelGen.Conv2D"),
        ["ModelGen.DepthwiseConv2DAttribute"] = (LayerKind.DepthwiseConv2D, "DepthwiseConv2D", "ModelGen.DepthwiseConv2D"),
        ["ModelGen.Conv2DTransposeAttribute"] = (LayerKind.Conv2DTranspose, "Conv2DTranspose", "ModelGen.Conv2DTranspose"),
        ["ModelGen.MaxPooling2DAttribute"] = (LayerKind.MaxPooling2D, "MaxPooling2D", "ModelGen.MaxPooling2D"),
        ["ModelGen.AveragePooling2DAttribute"] = (LayerKind.AveragePooling2D, "AveragePooling2D", "ModelGen.AveragePooling2D"),
        ["ModelGen.GlobalAveragePooling2DAttribute"] = (LayerKind.GlobalAveragePooling2D, "GlobalAveragePooling2D", "ModelGen.GlobalAveragePooling2D"),
        ["ModelGen.GlobalMaxPooling2DAttribute"] = (LayerKind.GlobalMaxPooling2D, "GlobalMaxPooling2D", "ModelGen.GlobalMaxPooling2D"),
        ["ModelGen.BatchNormalizationAttribute"] = (LayerKind.BatchNormalization, "BatchNormalization", "ModelGen.BatchNormalization"),
        ["ModelGen.LayerNormalizationAttribute"] = (LayerKind.LayerNormalization, "LayerNormalization", "ModelGen.LayerNormalization"),
        ["ModelGen.ReshapeAttribute"] = (LayerKind.Reshape, "Reshape", "ModelGen.Reshape"),
        ["ModelGen.ZeroPadding2DAttribute"] = (LayerKind.ZeroPadding2D, "ZeroPadding2D", "ModelGen.ZeroPadding2D"),
        ["ModelGen.UpSampling2DAttribute"] = (LayerKind.UpSampling2D, "UpSampling2D", "ModelGen.UpSampling2D"),
        ["ModelGen.EmbeddingAttribute"] = (LayerKind.Embedding, "Embedding", "ModelGen.Embedding"),
        ["ModelGen.MaskingAttribute"] = (LayerKind.Masking, "Masking", "ModelGen.Masking"),
        ["ModelGen.LSTMAttribute"] = (LayerKind.LSTM, "LSTM", "ModelGen.LSTM"),
        ["ModelGen.GRUAttribute"] = (LayerKind.GRU, "GRU", "ModelGen.GRU"),
        ["ModelGen.GlobalAveragePooling1DAttribute"] = (LayerKind.GlobalAveragePooling1D, "GlobalAveragePooling1D", "ModelGen.GlobalAveragePooling1D"),
        ["ModelGen.MultiHeadAttentionAttribute"] = (LayerKind.MultiHeadAttention, "MultiHeadAttention", "ModelGen.MultiHeadAttention"),
    };

    /// <summary>A layer field's declaration, validated, before shapes are known.</summary>
    private sealed record LayerField(IFieldSymbol Field, LayerKind Kind, ImmutableArray<int> Shape, int Units, Activation Activation, bool UseBias, double Rate,
        int KernelHeight = 0, int KernelWidth = 0, int Strides = 1, Padding Padding = Padding.Valid, bool Trainable = true, double Momentum = 0, double Epsilon = 0,
        ImmutableArray<int> Extents = default, int Dilation = 1, bool ReturnSequences = false, bool Bidirectional = false,
        int InputDim = 0, bool MaskZero = false, double MaskValue = 0, bool Causal = false)
    {
        public string Name => Field.Name;
    }

    public static ModelSpec? Parse(INamedTypeSymbol type, AttributeData modelAttribute, Action<Diagnostic>? report, CancellationToken cancellationToken)
    {
        var context = new Context(type.Name, report);
        bool functional = modelAttribute.AttributeClass?.ToDisplayString() == FunctionalAttribute;

        CheckClass(type, context);
        var loss = ReadLoss(modelAttribute, context);
        // Read once: the layers, the names checked against the generated code's, and those its members step aside for.
        var members = UserMembers(type);
        var fields = ReadFields(type, members, functional, context, cancellationToken);

        IMethodSymbol? graphMethod = null;
        var subModels = new List<SubModelSpec>();
        var graph = functional
            ? ReadGraph(type, fields, context, cancellationToken, out graphMethod, subModels)
            : BuildChain(type, fields, context);
        CheckNamesAreFree(type, members, fields, modelAttribute.AttributeClass?.ContainingAssembly, context);
        if (graph is not null) CheckGraphMembersAreFree(members, graph, subModels, context);
        if (!context.Ok || graph is null) return null;
        var outputs = ReadOutputLosses(graph, graphMethod, loss, context);
        if (!context.Ok) return null;
        CheckLossesFitOutputs(graph, outputs, graphMethod is null ? type.Locations.FirstOrDefault() : graphMethod.Locations.FirstOrDefault(), context);

        return new ModelSpec(
            type.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString() : "",
            type.Name,
            ContainingTypeDeclarations(type),
            functional,
            graph.Layers.ToImmutableArray(),
            graph.Nodes.ToImmutableArray(),
            graph.Inputs.ToImmutableArray(),
            outputs,
            subModels.ToImmutableArray(),
            members.Select(m => m.Name).Distinct().OrderBy(n => n, StringComparer.Ordinal).ToImmutableArray(),
            members.OfType<IMethodSymbol>().Select(m => (m.Name, Least: m.Parameters.Count(p => !p.IsOptional && !p.IsParams), Most: m.Parameters.Any(p => p.IsParams) ? int.MaxValue : m.Parameters.Length))
                .Distinct().OrderBy(m => m.Name, StringComparer.Ordinal).ThenBy(m => m.Least).ThenBy(m => m.Most).ToImmutableArray());
    }

    /// <summary>Layers and nodes under construction.</summary>
    private sealed class GraphBuilder
    {
        public List<LayerSpec> Layers { get; } = new();
        public List<NodeSpec> Nodes { get; } = new();
        public List<int> Inputs { get; } = new();
        public List<int> Outputs { get; } = new();
        /// <summary>Output names, parallel to <see cref="Outputs"/>.</summary>
        public List<string> OutputNames { get; } = new();

        public int Add(NodeSpec node)
        {
            Nodes.Add(node);
            return Nodes.Count - 1;
        }
    }

    // ---- The class and its fields -------------------------------------------------------------------

    private static void CheckClass(INamedTypeSymbol type, Context context)
    {
        var location = type.Locations.FirstOrDefault();
        for (var current = type; current is not null; current = current.ContainingType)
        {
            if (current.TypeParameters.Length > 0) { context.Report(Diagnostics.UnsupportedModelClass, location, type.Name, "generic, or nested in a generic type"); break; }
        }
        if (type.IsStatic) context.Report(Diagnostics.UnsupportedModelClass, location, type.Name, "static");
        else if (type.IsAbstract) context.Report(Diagnostics.UnsupportedModelClass, location, type.Name, "abstract");

        for (var current = type; current is not null; current = current.ContainingType)
        {
            foreach (var reference in current.DeclaringSyntaxReferences)
            {
                if (reference.GetSyntax() is TypeDeclarationSyntax declaration && !declaration.Modifiers.Any(SyntaxKind.PartialKeyword))
                {
                    context.Report(Diagnostics.NotPartial, declaration.Identifier.GetLocation(), current.Name);
                }
            }
        }
    }

    private static Loss ReadLoss(AttributeData attribute, Context context)
    {
        foreach (var argument in attribute.NamedArguments)
        {
            if (argument.Key == "Loss" && argument.Value.Value is int value)
            {
                if (Enum.IsDefined(typeof(Loss), value)) return (Loss)value;
                context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "Loss"), context.Model, context.Model, $"({value}) is not a Loss");
            }
        }
        return Loss.MeanSquaredError;
    }

    /// <summary>Each output's loss: the model attribute's Loss, unless an [OutputLoss] on the graph method names it.</summary>
    private static EquatableArray<OutputSpec> ReadOutputLosses(GraphBuilder graph, IMethodSymbol? method, Loss defaultLoss, Context context)
    {
        var outputs = graph.Outputs.Select((node, k) => OutputSpec.Of(graph.OutputNames[k], node, defaultLoss, graph.Nodes[node])).ToList();
        foreach (var attribute in method?.GetAttributes().Where(a => a.AttributeClass?.ToDisplayString() == OutputLossAttribute) ?? Enumerable.Empty<AttributeData>())
        {
            var arguments = attribute.ConstructorArguments;
            string? name = arguments.Length > 0 ? arguments[0].Value as string : null;
            int loss = arguments.Length > 1 && arguments[1].Value is int l ? l : -1;
            double weight = attribute.NamedArguments.FirstOrDefault(n => n.Key == "Weight").Value.Value is double w ? w : 1.0;
            int index = outputs.FindIndex(o => o.Name == name);
            var location = PositionalArgumentLocation(attribute, 0);
            if (index < 0)
            {
                context.Report(Diagnostics.InvalidLayerConfiguration, location, name ?? "?", context.Model,
                    $"[OutputLoss] names no output of '{method!.Name}' (its outputs are {string.Join(", ", outputs.Select(o => $"'{o.Name}'"))})");
                continue;
            }
            if (!Enum.IsDefined(typeof(Loss), loss))
            {
                context.Report(Diagnostics.InvalidLayerConfiguration, PositionalArgumentLocation(attribute, 1), name!, context.Model, $"({loss}) is not a Loss");
                continue;
            }
            if (!(weight >= 0) || double.IsInfinity(weight))
            {
                context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "Weight"), name!, context.Model, $"a loss weight must be a finite number >= 0, not {weight}");
                continue;
            }
            outputs[index] = outputs[index] with { Loss = (Loss)loss, Weight = weight };
        }
        return outputs.ToImmutableArray();
    }

    /// <summary>
    /// Warns where a loss cannot train its output as intended (Keras accepts these and trains badly): categorical
    /// cross-entropy expects a probability distribution (softmax), binary cross-entropy independent probabilities.
    /// </summary>
    private static void CheckLossesFitOutputs(GraphBuilder graph, EquatableArray<OutputSpec> outputs, Location? location, Context context)
    {
        foreach (var output in outputs)
        {
            var activation = FinalActivation(graph, output.Node);
            if (activation is null) continue; // a merge: nothing certain to say
            string? problem = output.Loss switch
            {
                Loss.CategoricalCrossentropy or Loss.SparseCategoricalCrossentropy when activation != Activation.Softmax =>
                    "categorical cross-entropy needs probabilities that sum to 1; use a softmax output",
                Loss.BinaryCrossentropy when activation == Activation.Softmax && output.Size > 1 =>
                    "a softmax couples the units, so they are not independent probabilities; use sigmoid, or categorical cross-entropy",
                Loss.BinaryCrossentropy when activation is not (Activation.Sigmoid or Activation.Softmax) =>
                    "binary cross-entropy needs probabilities in (0, 1); use a sigmoid output",
                _ => null,
            };
            if (problem is not null)
            {
                context.Report(Diagnostics.LossDoesNotFitOutput, location, output.Name, activation.Value.ToString().ToLowerInvariant(), Lower(output.Loss), problem);
            }
        }
    }

    /// <summary>The activation a tensor ends in, looking through dropout; null for merges.</summary>
    private static Activation? FinalActivation(GraphBuilder graph, int node)
    {
        var spec = graph.Nodes[node];
        switch (spec.Kind)
        {
            case NodeKind.Function: return spec.Activation;
            case NodeKind.Layer:
                var layer = graph.Layers[spec.Layer];
                return layer.Kind == LayerKind.Dropout ? FinalActivation(graph, spec.Inputs[0]) : layer.Activation;
            default: return null;
        }
    }

    private static string Lower(Loss loss) => loss switch
    {
        Loss.MeanSquaredError => "mean squared error",
        Loss.BinaryCrossentropy => "binary cross-entropy",
        Loss.CategoricalCrossentropy => "categorical cross-entropy",
        _ => "sparse categorical cross-entropy",
    };

    private static List<LayerField> ReadFields(INamedTypeSymbol type, IReadOnlyList<ISymbol> members, bool functional, Context context, CancellationToken cancellationToken)
    {
        var fields = new List<LayerField>();
        foreach (var member in members)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (member is IFieldSymbol field && !field.IsStatic && !field.IsConst)
            {
                var attributes = field.GetAttributes().Where(a => a.AttributeClass is { } c && LayerAttributes.ContainsKey(c.ToDisplayString())).ToList();
                if (attributes.Count == 0)
                {
                    context.Report(Diagnostics.UnsupportedMember, FieldLocation(field), field.Name, type.Name,
                        "instance fields of a model are its layers and need a layer attribute ([Input], [Dense], [Conv2D], [MaxPooling2D], [BatchNormalization], [Flatten], [Dropout], [Activation], ...)");
                    continue;
                }
                if (attributes.Count > 1)
                {
                    context.Report(Diagnostics.UnsupportedMember, AttributeLocation(attributes[1], field), field.Name, type.Name,
                        "a field is one layer and takes exactly one layer attribute");
                }
                var info = LayerAttributes[attributes[0].AttributeClass!.ToDisplayString()];
                if (functional && info.Kind == LayerKind.Input)
                {
                    context.Report(Diagnostics.UnsupportedMember, AttributeLocation(attributes[0], field), field.Name, type.Name,
                        "a Functional model's inputs are the [Graph] method's parameters, each with a [Shape(...)]");
                    continue;
                }
                CheckFieldType(field, info.ShortName, info.FieldType, context);
                bool trainable = !attributes[0].NamedArguments.Any(n => n.Key == "Trainable" && n.Value.Value is false);
                fields.Add(ReadField(field, attributes[0], info.Kind, context) with { Trainable = trainable });
            }
            else if (member is IMethodSymbol { MethodKind: MethodKind.Constructor, IsStatic: false } constructor)
            {
                context.Report(Diagnostics.UnsupportedMember, constructor.Locations.FirstOrDefault(), type.Name + "(...)", type.Name,
                    "the generated constructor (maxBatchSize, seed) builds the layers; create the model with it");
            }
        }
        return fields;
    }

    /// <summary>
    /// MG0021: layers, inputs and outputs (graph parameters, named tuple elements) named as the generated code cannot take
    /// (<see cref="ClaimedNames"/>). Checked apart from the graph, so every one is reported at once, whatever else fails.
    /// </summary>
    private static void CheckNamesAreFree(INamedTypeSymbol type, IReadOnlyList<ISymbol> members, List<LayerField> fields, IAssemblySymbol? runtime, Context context)
    {
        var names = fields.Select(f => (f.Name, FieldLocation(f.Field), f.Kind == LayerKind.Input ? "input" : "layer"));
        foreach (var method in GraphMethods(type))
        {
            names = names.Concat(method.Parameters.Select(p => (p.Name, p.Locations.FirstOrDefault(), "input")));
            if (method.ReturnType is INamedTypeSymbol { IsTupleType: true } tuple)
            {
                names = names.Concat(tuple.TupleElements.Where(IsNamedElement).Select(e => (e.Name, e.Locations.FirstOrDefault(), "output")));
            }
        }
        foreach (var (name, location, role) in names)
        {
            if (ClaimedNames.Reason(name, runtime) is { } reason) context.Report(Diagnostics.NameClaimedByGeneratedCode, location, name, role, context.Model, reason);
        }
        // The class's other members (its instance fields are its layers, or MG0004): only the generated members' names and the runtime's types clash.
        foreach (var member in members.Where(m => !IsLayerField(m) && m is not IMethodSymbol { MethodKind: not MethodKind.Ordinary }))
        {
            if (ClaimedNames.MemberReason(member.Name, member is IMethodSymbol, runtime) is { } reason)
                context.Report(Diagnostics.NameClaimedByGeneratedCode, member.Locations.FirstOrDefault(), member.Name, MemberRole(member), context.Model, reason);
        }
    }

    /// <summary>
    /// What the generated code declares for this model's graph: a method of the user's with the name and parameters of one
    /// of its methods (Summary(), Predict(ReadOnlySpan, Span), ...) would be declared twice (CS0111 in the generated file), as
    /// would a member named as a sub-model's parameter count (EncodeParameterCount, CS0102): MG0021 under the user's. A
    /// method's other overloads are the user's own.
    /// </summary>
    private static void CheckGraphMembersAreFree(IReadOnlyList<ISymbol> members, GraphBuilder graph, List<SubModelSpec> subModels, Context context)
    {
        var subs = subModels.Select(s => (s.Name, s.Inputs.Count, s.Outputs.Count)).ToList();
        foreach (var member in members)
        {
            if (ClaimedNames.GraphMemberReason(member, graph.Inputs.Count, graph.Outputs.Count, subs) is not { } reason) continue;
            context.Report(Diagnostics.NameClaimedByGeneratedCode, member.Locations.FirstOrDefault(), member.Name, MemberRole(member), context.Model, reason);
        }
    }

    /// <summary>The members the user declared (not the compiler, not ModelGen's generated file).</summary>
    private static List<ISymbol> UserMembers(INamedTypeSymbol type) => type.GetMembers().Where(m => !m.IsImplicitlyDeclared && !IsGenerated(m)).ToList();

    /// <summary>An instance field: a layer of the class (or MG0004).</summary>
    private static bool IsLayerField(ISymbol member) => member is IFieldSymbol { IsStatic: false, IsConst: false };

    /// <summary>What a member of the user's class is, as MG0021 names it.</summary>
    private static string MemberRole(ISymbol member) => member switch
    {
        _ when IsLayerField(member) => "layer",
        IMethodSymbol => "method",
        IPropertySymbol => "property",
        IEventSymbol => "event",
        INamedTypeSymbol => "type",
        _ => "field",
    };

    // ---- Sequential: a chain ------------------------------------------------------------------------

    private static GraphBuilder? BuildChain(INamedTypeSymbol type, List<LayerField> fields, Context context)
    {
        var inputs = fields.Where(f => f.Kind == LayerKind.Input).ToList();
        if (inputs.Count > 1)
        {
            context.Report(Diagnostics.SequentialNeedsGraph, type.Locations.FirstOrDefault(), type.Name, string.Join(", ", inputs.Select(i => i.Name)));
            return null;
        }
        if (fields.Count == 0 || fields[0].Kind != LayerKind.Input)
        {
            var firstInput = fields.FirstOrDefault(f => f.Kind == LayerKind.Input);
            if (firstInput is null)
                context.Report(Diagnostics.MissingInputShape, type.Locations.FirstOrDefault(), $"Sequential model '{type.Name}' has no input shape: declare an [Input(...)] field first");
            else context.Report(Diagnostics.MisplacedInput, FieldLocation(firstInput.Field), firstInput.Name, type.Name);
            return null;
        }
        if (fields.Count == 1)
        {
            context.Report(Diagnostics.NoLayers, type.Locations.FirstOrDefault(), type.Name);
            return null;
        }

        var graph = new GraphBuilder();
        var input = fields[0];
        graph.Layers.Add(new LayerSpec(input.Name, LayerKind.Input, input.Shape, 0));
        graph.Inputs.Add(graph.Add(new NodeSpec(input.Name, NodeKind.Input, ImmutableArray<int>.Empty, input.Shape, Layer: 0)));
        foreach (var field in fields.Skip(1))
        {
            if (field.Kind == LayerKind.Input) { context.Report(Diagnostics.MisplacedInput, FieldLocation(field.Field), field.Name, type.Name); return null; }
            if (field.Kind == LayerKind.MultiHeadAttention)
            {
                context.Report(Diagnostics.InvalidLayerConfiguration, FieldLocation(field.Field), field.Name, type.Name,
                    "MultiHeadAttention takes a query and a value: wire it in a [Functional] model's graph (attention.Apply(x, x) for self-attention)");
                return null;
            }
            var previous = graph.Nodes[graph.Nodes.Count - 1];
            var layer = Infer(field, previous.Shape.Items, previous.Name, FieldLocation(field.Field), context);
            graph.Layers.Add(layer);
            int mask = OutputMask(graph, layer, previous, graph.Nodes.Count, FieldLocation(field.Field), context);
            graph.Add(new NodeSpec(field.Name, NodeKind.Layer, ImmutableArray.Create(graph.Nodes.Count - 1), layer.OutputShape, Layer: graph.Layers.Count - 1, Mask: mask));
        }
        graph.Outputs.Add(graph.Nodes.Count - 1);
        graph.OutputNames.Add(graph.Nodes[graph.Nodes.Count - 1].Name);
        return graph;
    }

    // ---- Helpers ------------------------------------------------------------------------------------

    private static void CheckFieldType(IFieldSymbol field, string attributeName, string expected, Context context)
    {
        if (field.Type.ToDisplayString() == expected) return;
        var location = field.DeclaringSyntaxReferences.FirstOrDefault()?.GetSyntax() is VariableDeclaratorSyntax { Parent: VariableDeclarationSyntax declaration }
            ? declaration.Type.GetLocation()
            : FieldLocation(field);
        context.Report(Diagnostics.FieldTypeMismatch, location, field.Name, attributeName, expected.Substring("ModelGen.".Length), field.Type.ToDisplayString(SymbolDisplayFormat.MinimallyQualifiedFormat));
    }

    private static EquatableArray<string> ContainingTypeDeclarations(INamedTypeSymbol type)
    {
        var declarations = new List<string>();
        for (var current = type.ContainingType; current is not null; current = current.ContainingType)
        {
            string keyword = current.IsRecord ? (current.IsValueType ? "record struct" : "record") : current.TypeKind == TypeKind.Struct ? "struct" : current.TypeKind == TypeKind.Interface ? "interface" : "class";
            declarations.Insert(0, (current.IsStatic ? "static " : "") + "partial " + keyword + " " + current.Name);
        }
        return declarations.ToImmutableArray();
    }

    private static bool IsGenerated(ISymbol member) =>
        member.DeclaringSyntaxReferences.Length > 0 &&
        member.DeclaringSyntaxReferences.All(r => r.SyntaxTree.FilePath.Replace('\\', '/').Contains(GeneratedPathMarker));

    private static string ShapeText<T>(IEnumerable<T> shape) => "(None, " + string.Join(", ", shape) + ")";

    private static Location? FieldLocation(IFieldSymbol field) => field.Locations.FirstOrDefault();

    private static Location? AttributeLocation(AttributeData attribute, IFieldSymbol field) =>
        attribute.ApplicationSyntaxReference?.GetSyntax().GetLocation() ?? FieldLocation(field);

    /// <summary>The location of the i-th positional argument; for a params array, its i-th element.</summary>
    private static Location? ArgumentLocation(AttributeData attribute, int index, IFieldSymbol field) =>
        PositionalArgumentLocation(attribute, index) ?? AttributeLocation(attribute, field);

    private static Location? PositionalArgumentLocation(AttributeData attribute, int index)
    {
        if (attribute.ApplicationSyntaxReference?.GetSyntax() is AttributeSyntax { ArgumentList: { } list })
        {
            var positional = list.Arguments.Where(a => a.NameEquals is null && a.NameColon is null).ToList();
            if (index < positional.Count) return positional[index].GetLocation();
        }
        return attribute.ApplicationSyntaxReference?.GetSyntax().GetLocation();
    }

    private static Location? NamedArgumentLocation(AttributeData attribute, string name)
    {
        if (attribute.ApplicationSyntaxReference?.GetSyntax() is AttributeSyntax { ArgumentList: { } list })
        {
            var argument = list.Arguments.FirstOrDefault(a => a.NameEquals?.Name.Identifier.ValueText == name);
            if (argument is not null) return argument.GetLocation();
        }
        return attribute.ApplicationSyntaxReference?.GetSyntax().GetLocation();
    }

    private sealed class Context(string model, Action<Diagnostic>? report)
    {
        public string Model { get; } = model;
        /// <summary>False once any error is reported; warnings keep the model valid.</summary>
        public bool Ok { get; private set; } = true;

        /// <summary>While set, problems still invalidate the model but are not reported (they are reported where the code stands).</summary>
        public int Silenced { get; set; }

        private readonly HashSet<(string, Location?)> reported = new();

        /// <summary>Reports once per id and location; a cycle is reported even while silenced, since it is only ever found by following calls.</summary>
        public void Report(DiagnosticDescriptor descriptor, Location? location, params object[] arguments)
        {
            if (descriptor.DefaultSeverity == DiagnosticSeverity.Error) Ok = false;
            if ((Silenced == 0 || descriptor == Diagnostics.Cycle) && reported.Add((descriptor.Id, location)))
            {
                report?.Invoke(Diagnostic.Create(descriptor, location ?? Location.None, arguments));
            }
        }
    }
}
