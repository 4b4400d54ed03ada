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
internal static class ModelParser
{
    public const string SequentialAttribute = "ModelGen.SequentialAttribute";
    private const string InputAttribute = "ModelGen.InputAttribute";
    private const string DenseAttribute = "ModelGen.DenseAttribute";
    private const string DropoutAttribute = "ModelGen.DropoutAttribute";
    private const string ActivationAttribute = "ModelGen.ActivationAttribute";

    /// <summary>Folder of the generator's output trees; their members are ours, not the user's.</summary>
    public const string GeneratedPathMarker = "ModelGen.Generator.ModelGenerator";

    private static readonly Dictionary<string, (LayerKind Kind, string ShortName, string FieldType)> LayerAttributes = new()
    {
        [InputAttribute] = (LayerKind.Input, "Input", "ModelGen.Input"),
        [DenseAttribute] = (LayerKind.Dense, "Dense", "ModelGen.Dense"),
        [DropoutAttribute] = (LayerKind.Dropout, "Dropout", "ModelGen.Dropout"),
        [ActivationAttribute] = (LayerKind.Activation, "Activation", "ModelGen.ActivationLayer"),
    };

    public static ModelSpec? Parse(INamedTypeSymbol type, AttributeData modelAttribute, Action<Diagnostic>? report, CancellationToken cancellationToken)
    {
        var context = new Context(type.Name, report);

        CheckClass(type, context);
        var loss = ReadLoss(modelAttribute, context);

        var fields = new List<(IFieldSymbol Field, AttributeData Attribute, LayerKind Kind)>();
        foreach (var member in type.GetMembers())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (member.IsImplicitlyDeclared || IsGenerated(member)) continue;
            if (member is IFieldSymbol field && !field.IsStatic && !field.IsConst)
            {
                var layerAttributes = field.GetAttributes().Where(a => a.AttributeClass is { } c && LayerAttributes.ContainsKey(c.ToDisplayString())).ToList();
                if (layerAttributes.Count == 0)
                {
                    context.Report(Diagnostics.UnsupportedMember, FieldLocation(field), field.Name, type.Name,
                        "instance fields of a model are its layers and need a layer attribute ([Input], [Dense], [Dropout] or [Activation])");
                }
                else if (layerAttributes.Count > 1)
                {
                    context.Report(Diagnostics.UnsupportedMember, AttributeLocation(layerAttributes[1], field), field.Name, type.Name,
                        "a field is one layer and takes exactly one layer attribute");
                }
                if (layerAttributes.Count > 0)
                {
                    var info = LayerAttributes[layerAttributes[0].AttributeClass!.ToDisplayString()];
                    CheckFieldType(field, layerAttributes[0], info.ShortName, info.FieldType, context);
                    fields.Add((field, layerAttributes[0], info.Kind));
                }
            }
            else if (member is IMethodSymbol { MethodKind: MethodKind.Constructor, IsStatic: false } constructor)
            {
                context.Report(Diagnostics.UnsupportedMember, constructor.Locations.FirstOrDefault(), type.Name + "(...)", type.Name,
                    "the generated constructor (maxBatchSize, seed) builds the layers; create the model with it");
            }
        }

        var layers = ReadSequentialLayers(type, fields, context, cancellationToken);
        if (!context.Ok || layers is null) return null;

        return new ModelSpec(
            type.ContainingNamespace is { IsGlobalNamespace: false } ns ? ns.ToDisplayString() : "",
            type.Name,
            ContainingTypeDeclarations(type),
            loss,
            layers.ToImmutableArray());
    }

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

    private static List<LayerSpec>? ReadSequentialLayers(INamedTypeSymbol type, List<(IFieldSymbol Field, AttributeData Attribute, LayerKind Kind)> fields,
        Context context, CancellationToken cancellationToken)
    {
        if (fields.Count == 0 || fields[0].Kind != LayerKind.Input)
        {
            var firstInput = fields.FirstOrDefault(f => f.Kind == LayerKind.Input);
            if (firstInput.Field is null) context.Report(Diagnostics.MissingInputShape, type.Locations.FirstOrDefault(), type.Name);
            else context.Report(Diagnostics.MisplacedInput, FieldLocation(firstInput.Field), firstInput.Field.Name, type.Name);
            return null;
        }
        if (fields.Count == 1)
        {
            context.Report(Diagnostics.NoLayers, type.Locations.FirstOrDefault(), type.Name);
            return null;
        }

        var layers = new List<LayerSpec>();
        ImmutableArray<int> shape = default;
        string previous = "";
        foreach (var (field, attribute, kind) in fields)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var arguments = attribute.ConstructorArguments;
            int inputSize = shape.IsDefault ? 0 : shape.Aggregate(1, (a, b) => a * b);
            LayerSpec? layer = null;
            switch (kind)
            {
                case LayerKind.Input:
                    if (layers.Count > 0) { context.Report(Diagnostics.MisplacedInput, FieldLocation(field), field.Name, type.Name); return null; }
                    var dimensions = arguments.Length == 1 && arguments[0].Kind == TypedConstantKind.Array
                        ? arguments[0].Values.Select(v => v.Value is int d ? d : 0).ToImmutableArray()
                        : ImmutableArray<int>.Empty;
                    if (dimensions.Length == 0) context.Report(Diagnostics.InvalidLayerConfiguration, AttributeLocation(attribute, field), field.Name, type.Name, "an input needs a shape, e.g. [Input(784)]");
                    for (int i = 0; i < dimensions.Length; i++)
                    {
                        if (dimensions[i] <= 0)
                            context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, i, field), field.Name, type.Name, $"dimension {i} of the input shape is {dimensions[i]}; every dimension must be positive");
                    }
                    layer = new LayerSpec(field.Name, kind, dimensions, 0);
                    break;

                case LayerKind.Dense:
                    int units = arguments.Length > 0 && arguments[0].Value is int u ? u : 0;
                    int activation = arguments.Length > 1 && arguments[1].Value is int a ? a : 0;
                    if (units <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, type.Name, $"Dense needs a positive number of units, not {units}");
                    if (!Enum.IsDefined(typeof(Activation), activation)) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 1, field), field.Name, type.Name, $"({activation}) is not an Activation");
                    bool useBias = !attribute.NamedArguments.Any(n => n.Key == "UseBias" && n.Value.Value is false);
                    if (shape.Length != 1 && !shape.IsDefault)
                    {
                        context.Report(Diagnostics.IncompatibleInputShape, FieldLocation(field), field.Name, "Dense", ShapeText(shape), previous,
                            "a flat input of shape (None, features); Flatten is not available yet, so declare the input flat");
                    }
                    layer = new LayerSpec(field.Name, kind, ImmutableArray.Create(Math.Max(units, 1)), inputSize, (Activation)activation, useBias);
                    break;

                case LayerKind.Dropout:
                    double rate = arguments.Length > 0 && arguments[0].Value is double r ? r : double.NaN;
                    if (!(rate >= 0 && rate < 1)) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, type.Name, $"the dropout rate must be in [0, 1), not {rate}");
                    layer = new LayerSpec(field.Name, kind, shape, inputSize, Rate: rate);
                    break;

                case LayerKind.Activation:
                    int function = arguments.Length > 0 && arguments[0].Value is int f ? f : -1;
                    if (!Enum.IsDefined(typeof(Activation), function)) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, type.Name, $"({function}) is not an Activation");
                    layer = new LayerSpec(field.Name, kind, shape, inputSize, (Activation)function);
                    break;
            }
            layers.Add(layer!);
            shape = layer!.OutputShape.Items;
            previous = field.Name;
        }
        return layers;
    }

    private static void CheckFieldType(IFieldSymbol field, AttributeData attribute, string attributeName, string expected, Context context)
    {
        string actual = field.Type.ToDisplayString();
        if (actual == expected) return;
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

    private static string ShapeText(ImmutableArray<int> shape) => "(None, " + string.Join(", ", shape) + ")";

    private static Location? FieldLocation(IFieldSymbol field) => field.Locations.FirstOrDefault();

    private static Location? AttributeLocation(AttributeData attribute, IFieldSymbol field) =>
        attribute.ApplicationSyntaxReference?.GetSyntax().GetLocation() ?? FieldLocation(field);

    /// <summary>The location of the i-th positional argument; for a params array, its i-th element.</summary>
    private static Location? ArgumentLocation(AttributeData attribute, int index, IFieldSymbol field)
    {
        if (attribute.ApplicationSyntaxReference?.GetSyntax() is AttributeSyntax { ArgumentList: { } list })
        {
            var positional = list.Arguments.Where(a => a.NameEquals is null && a.NameColon is null).ToList();
            if (index < positional.Count) return positional[index].GetLocation();
        }
        return AttributeLocation(attribute, field);
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
        public bool Ok { get; private set; } = true;

        public void Report(DiagnosticDescriptor descriptor, Location? location, params object[] arguments)
        {
            Ok = false;
            report?.Invoke(Diagnostic.Create(descriptor, location ?? Location.None, arguments));
        }
    }
}
