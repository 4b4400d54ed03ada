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
        var fields = ReadFields(type, functional, context, cancellationToken);

        IMethodSymbol? graphMethod = null;
        var subModels = new List<SubModelSpec>();
        var graph = functional
            ? ReadGraph(type, fields, context, cancellationToken, out graphMethod, subModels)
            : BuildChain(type, fields, context);
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
            subModels.ToImmutableArray());
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
        var outputs = graph.Outputs.Select((node, k) => new OutputSpec(graph.OutputNames[k], node, defaultLoss, 1.0, graph.Nodes[node].Size)).ToList();
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

    private static List<LayerField> ReadFields(INamedTypeSymbol type, bool functional, Context context, CancellationToken cancellationToken)
    {
        var fields = new List<LayerField>();
        foreach (var member in type.GetMembers())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (member.IsImplicitlyDeclared || IsGenerated(member)) continue;
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

    /// <summary>Reads and checks one layer attribute's arguments; each problem is reported at its argument.</summary>
    private static LayerField ReadField(IFieldSymbol field, AttributeData attribute, LayerKind kind, Context context)
    {
        var arguments = attribute.ConstructorArguments;
        switch (kind)
        {
            case LayerKind.Input:
                var shape = ReadShape(attribute, field.Name, AttributeLocation(attribute, field), i => ArgumentLocation(attribute, i, field), context);
                return new LayerField(field, kind, shape, 0, Activation.Linear, true, 0);
            case LayerKind.Dense:
                int units = arguments.Length > 0 && arguments[0].Value is int u ? u : 0;
                int activation = arguments.Length > 1 && arguments[1].Value is int a ? a : 0;
                if (units <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"Dense needs a positive number of units, not {units}");
                if (!Enum.IsDefined(typeof(Activation), activation)) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 1, field), field.Name, context.Model, $"({activation}) is not an Activation");
                bool useBias = !attribute.NamedArguments.Any(n => n.Key == "UseBias" && n.Value.Value is false);
                return new LayerField(field, kind, default, Math.Max(units, 1), (Activation)activation, useBias, 0);
            case LayerKind.Flatten:
                return new LayerField(field, kind, default, 0, Activation.Linear, true, 0);
            case LayerKind.DepthwiseConv2D:
            {
                int size = arguments.Length > 0 && arguments[0].Value is int k0 ? k0 : 0;
                int depthwiseActivation = arguments.Length > 1 && arguments[1].Value is int a0 ? a0 : 0;
                int multiplier = attribute.NamedArguments.FirstOrDefault(n => n.Key == "DepthMultiplier").Value.Value is int m ? m : 1;
                if (size <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"DepthwiseConv2D needs a positive kernel size, not {size}");
                if (!Enum.IsDefined(typeof(Activation), depthwiseActivation)) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 1, field), field.Name, context.Model, $"({depthwiseActivation}) is not an Activation");
                if (multiplier <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "DepthMultiplier"), field.Name, context.Model, $"the depth multiplier must be positive, not {multiplier}");
                var (strides, padding) = ReadWindowOptions(attribute, field, defaultStrides: 1, context);
                bool bias = !attribute.NamedArguments.Any(n => n.Key == "UseBias" && n.Value.Value is false);
                return new LayerField(field, kind, default, Math.Max(multiplier, 1), (Activation)depthwiseActivation, bias, 0, Math.Max(size, 1), Math.Max(size, 1), strides, padding);
            }
            case LayerKind.Conv2DTranspose:
            case LayerKind.Conv2D:
            {
                // (filters, kernelSize, activation) or (filters, kernelHeight, kernelWidth, activation).
                int Argument(int i, int fallback) => arguments.Length > i && arguments[i].Value is int value ? value : fallback;
                bool rectangular = kind == LayerKind.Conv2D && arguments.Length == 4;
                int filters = Argument(0, 0), height = Argument(1, 0), width = rectangular ? Argument(2, 0) : height;
                int activationIndex = rectangular ? 3 : 2;
                int convActivation = Argument(activationIndex, 0);
                if (filters <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"Conv2D needs a positive number of filters, not {filters}");
                if (height <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 1, field), field.Name, context.Model, $"Conv2D needs a positive kernel size, not {height}");
                if (rectangular && width <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 2, field), field.Name, context.Model, $"Conv2D needs a positive kernel width, not {width}");
                if (!Enum.IsDefined(typeof(Activation), convActivation)) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, activationIndex, field), field.Name, context.Model, $"({convActivation}) is not an Activation");
                var (strides, padding) = ReadWindowOptions(attribute, field, defaultStrides: 1, context);
                int dilation = attribute.NamedArguments.FirstOrDefault(n => n.Key == "DilationRate").Value.Value is int d ? d : 1;
                if (dilation < 1) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "DilationRate"), field.Name, context.Model, $"the dilation rate must be at least 1, not {dilation}");
                else if (dilation > 1 && strides > 1) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "DilationRate"), field.Name, context.Model, "a dilation rate above 1 needs strides 1 (as in Keras)");
                bool bias = !attribute.NamedArguments.Any(n => n.Key == "UseBias" && n.Value.Value is false);
                return new LayerField(field, kind, default, Math.Max(filters, 1), (Activation)convActivation, bias, 0, Math.Max(height, 1), Math.Max(width, 1), strides, padding, Dilation: Math.Max(dilation, 1));
            }
            case LayerKind.GlobalAveragePooling2D:
            case LayerKind.GlobalMaxPooling2D:
                return new LayerField(field, kind, default, 0, Activation.Linear, true, 0);
            case LayerKind.MaxPooling2D:
            case LayerKind.AveragePooling2D:
            {
                int pool = arguments.Length > 0 && arguments[0].Value is int p0 ? p0 : 2;
                if (pool <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"the pool size must be positive, not {pool}");
                var (strides, padding) = ReadWindowOptions(attribute, field, defaultStrides: Math.Max(pool, 1), context);
                return new LayerField(field, kind, default, 0, Activation.Linear, true, 0, Math.Max(pool, 1), Math.Max(pool, 1), strides, padding);
            }
            case LayerKind.BatchNormalization:
            {
                double momentum = attribute.NamedArguments.FirstOrDefault(n => n.Key == "Momentum").Value.Value is double m ? m : 0.99;
                double epsilon = attribute.NamedArguments.FirstOrDefault(n => n.Key == "Epsilon").Value.Value is double e ? e : 1e-3;
                if (!(momentum >= 0 && momentum <= 1)) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "Momentum"), field.Name, context.Model, $"the momentum must be in [0, 1], not {momentum}");
                if (!(epsilon > 0) || double.IsInfinity(epsilon)) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "Epsilon"), field.Name, context.Model, $"epsilon must be a positive number, not {epsilon}");
                return new LayerField(field, kind, default, 0, Activation.Linear, true, 0, Momentum: momentum, Epsilon: epsilon);
            }
            case LayerKind.LayerNormalization:
            {
                double epsilon = attribute.NamedArguments.FirstOrDefault(n => n.Key == "Epsilon").Value.Value is double e ? e : 1e-3;
                if (!(epsilon > 0) || double.IsInfinity(epsilon)) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "Epsilon"), field.Name, context.Model, $"epsilon must be a positive number, not {epsilon}");
                return new LayerField(field, kind, default, 0, Activation.Linear, true, 0, Epsilon: epsilon);
            }
            case LayerKind.Reshape:
            {
                var target = arguments.Length == 1 && arguments[0].Kind == TypedConstantKind.Array
                    ? arguments[0].Values.Select(v => v.Value is int d ? d : 0).ToImmutableArray() : ImmutableArray<int>.Empty;
                if (target.Length == 0) context.Report(Diagnostics.InvalidLayerConfiguration, AttributeLocation(attribute, field), field.Name, context.Model, "Reshape needs a target shape, e.g. [Reshape(7, 7, 1)]");
                bool valid = true;
                for (int i = 0; i < target.Length; i++)
                {
                    if (target[i] == 0 || target[i] < -1 || (target[i] == -1 && target.Take(i).Contains(-1)))
                    {
                        context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, i, field), field.Name, context.Model, $"dimension {i} of the target shape is {target[i]}; each must be positive, or -1 once (inferred)");
                        valid = false;
                    }
                }
                // An invalid target is reported once, here; shapes downstream carry on as if it flattened.
                return new LayerField(field, kind, valid ? target : ImmutableArray<int>.Empty, 0, Activation.Linear, true, 0);
            }
            case LayerKind.ZeroPadding2D:
            case LayerKind.UpSampling2D:
            {
                // ZeroPadding2D(all), (vertical, horizontal) or (top, bottom, left, right); UpSampling2D(size) or (rows, columns).
                var values = arguments.Select(a => a.Value is int v ? v : -1).ToList();
                var extents = kind == LayerKind.UpSampling2D
                    ? (values.Count == 1 ? new[] { values[0], values[0] } : values.ToArray())
                    : values.Count switch { 1 => new[] { values[0], values[0], values[0], values[0] }, 2 => new[] { values[0], values[0], values[1], values[1] }, _ => values.ToArray() };
                int smallest = kind == LayerKind.UpSampling2D ? 1 : 0;
                for (int i = 0; i < values.Count; i++)
                {
                    if (values[i] < smallest)
                        context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, i, field), field.Name, context.Model,
                            kind == LayerKind.UpSampling2D ? $"the upsampling factor must be at least 1, not {values[i]}" : $"the padding must not be negative, not {values[i]}");
                }
                return new LayerField(field, kind, default, 0, Activation.Linear, true, 0, Extents: extents.Select(v => Math.Max(v, smallest)).ToImmutableArray());
            }
            case LayerKind.Embedding:
            {
                int inputDim = arguments.Length > 0 && arguments[0].Value is int i0 ? i0 : 0;
                int outputDim = arguments.Length > 1 && arguments[1].Value is int o0 ? o0 : 0;
                if (inputDim <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"Embedding needs a positive number of ids (input_dim), not {inputDim}");
                if (outputDim <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 1, field), field.Name, context.Model, $"Embedding needs a positive vector size (output_dim), not {outputDim}");
                bool maskZero = attribute.NamedArguments.Any(n => n.Key == "MaskZero" && n.Value.Value is true);
                return new LayerField(field, kind, default, Math.Max(outputDim, 1), Activation.Linear, true, 0, InputDim: Math.Max(inputDim, 1), MaskZero: maskZero);
            }
            case LayerKind.Masking:
            {
                double maskValue = attribute.NamedArguments.FirstOrDefault(n => n.Key == "MaskValue").Value.Value is double v ? v : 0;
                return new LayerField(field, kind, default, 0, Activation.Linear, true, 0, MaskValue: maskValue);
            }
            case LayerKind.LSTM:
            case LayerKind.GRU:
            {
                int cells = arguments.Length > 0 && arguments[0].Value is int u0 ? u0 : 0;
                if (cells <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"{kind} needs a positive number of units, not {cells}");
                bool sequences = attribute.NamedArguments.Any(n => n.Key == "ReturnSequences" && n.Value.Value is true);
                bool bidirectional = attribute.NamedArguments.Any(n => n.Key == "Bidirectional" && n.Value.Value is true);
                return new LayerField(field, kind, default, Math.Max(cells, 1), Activation.Tanh, true, 0, ReturnSequences: sequences, Bidirectional: bidirectional);
            }
            case LayerKind.MultiHeadAttention:
            {
                int heads = arguments.Length > 0 && arguments[0].Value is int h0 ? h0 : 0;
                int keyDim = arguments.Length > 1 && arguments[1].Value is int k0 ? k0 : 0;
                int valueDim = attribute.NamedArguments.FirstOrDefault(n => n.Key == "ValueDim").Value.Value is int v0 && v0 != 0 ? v0 : keyDim;
                if (heads <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"MultiHeadAttention needs a positive number of heads, not {heads}");
                if (keyDim <= 0) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 1, field), field.Name, context.Model, $"MultiHeadAttention needs a positive key_dim, not {keyDim}");
                if (valueDim < 0) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "ValueDim"), field.Name, context.Model, $"value_dim must be positive, not {valueDim}");
                bool attentionBias = !attribute.NamedArguments.Any(n => n.Key == "UseBias" && n.Value.Value is false);
                bool causal = attribute.NamedArguments.Any(n => n.Key == "UseCausalMask" && n.Value.Value is true);
                return new LayerField(field, kind, default, 0, Activation.Linear, attentionBias, 0,
                    Extents: ImmutableArray.Create(Math.Max(heads, 1), Math.Max(keyDim, 1), Math.Max(valueDim, 1)), Causal: causal);
            }
            case LayerKind.Dropout:
                double rate = arguments.Length > 0 && arguments[0].Value is double r ? r : double.NaN;
                if (!(rate >= 0 && rate < 1)) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"the dropout rate must be in [0, 1), not {rate}");
                return new LayerField(field, kind, default, 0, Activation.Linear, true, rate);
            default:
                int function = arguments.Length > 0 && arguments[0].Value is int f ? f : -1;
                if (!Enum.IsDefined(typeof(Activation), function)) context.Report(Diagnostics.InvalidLayerConfiguration, ArgumentLocation(attribute, 0, field), field.Name, context.Model, $"({function}) is not an Activation");
                return new LayerField(field, kind, default, 0, (Activation)function, true, 0);
        }
    }

    /// <summary>Strides (0 or absent: the default) and Padding of a convolution or pooling attribute.</summary>
    private static (int Strides, Padding Padding) ReadWindowOptions(AttributeData attribute, IFieldSymbol field, int defaultStrides, Context context)
    {
        int strides = attribute.NamedArguments.FirstOrDefault(n => n.Key == "Strides").Value.Value is int s && s != 0 ? s : defaultStrides;
        int padding = attribute.NamedArguments.FirstOrDefault(n => n.Key == "Padding").Value.Value is int p ? p : 0;
        if (strides < 0) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "Strides"), field.Name, context.Model, $"strides must be positive, not {strides}");
        if (!Enum.IsDefined(typeof(Padding), padding)) context.Report(Diagnostics.InvalidLayerConfiguration, NamedArgumentLocation(attribute, "Padding"), field.Name, context.Model, $"({padding}) is not a Padding");
        return (Math.Max(strides, 1), (Padding)padding);
    }

    /// <summary>Reads an [Input(...)] or [Shape(...)] attribute: a non-empty list of positive dimensions.</summary>
    private static ImmutableArray<int> ReadShape(AttributeData attribute, string name, Location? location, Func<int, Location?> argumentLocation, Context context)
    {
        var arguments = attribute.ConstructorArguments;
        var dimensions = arguments.Length == 1 && arguments[0].Kind == TypedConstantKind.Array
            ? arguments[0].Values.Select(v => v.Value is int d ? d : 0).ToImmutableArray()
            : ImmutableArray<int>.Empty;
        if (dimensions.Length == 0) context.Report(Diagnostics.InvalidLayerConfiguration, location, name, context.Model, "an input needs a shape, e.g. [Input(784)]");
        for (int i = 0; i < dimensions.Length; i++)
        {
            if (dimensions[i] <= 0)
                context.Report(Diagnostics.InvalidLayerConfiguration, argumentLocation(i), name, context.Model, $"dimension {i} of the input shape is {dimensions[i]}; every dimension must be positive");
        }
        return dimensions.Select(d => Math.Max(d, 1)).ToImmutableArray();
    }

    /// <summary>
    /// The shape rule of every layer kind, shared by both model kinds: the output shape of <paramref name="field"/>
    /// applied to <paramref name="input"/>, or an MG0007 at <paramref name="location"/>.
    /// </summary>
    private static LayerSpec Infer(LayerField field, ImmutableArray<int> input, string inputName, Location? location, Context context)
    {
        int inputSize = input.Aggregate(1, (a, b) => a * b);
        switch (field.Kind)
        {
            case LayerKind.Dense:
                // Keras' Dense acts on the last axis: on a sequence (None, steps, features) it is applied at every step, as
                // TimeDistributed(Dense). On an image that is almost always a forgotten Flatten, so it is reported.
                if (input.Length > 2)
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, "Dense", ShapeText(input), inputName,
                        "a flat input of shape (None, features) or a sequence (None, steps, features): put a [Flatten] layer before it");
                    input = ImmutableArray.Create(inputSize);
                }
                return new LayerSpec(field.Name, field.Kind, input.SetItem(input.Length - 1, field.Units), input[input.Length - 1], field.Activation, field.UseBias,
                    InputShape: input, Trainable: field.Trainable);
            case LayerKind.BatchNormalization:
                return new LayerSpec(field.Name, field.Kind, input, inputSize, InputShape: input, Trainable: field.Trainable, Momentum: field.Momentum, Epsilon: field.Epsilon);
            case LayerKind.LayerNormalization:
                return new LayerSpec(field.Name, field.Kind, input, inputSize, InputShape: input, Trainable: field.Trainable, Epsilon: field.Epsilon);
            case LayerKind.Reshape:
            {
                var target = field.Shape.IsDefaultOrEmpty ? ImmutableArray.Create(inputSize) : field.Shape;
                int known = target.Where(d => d > 0).Aggregate(1, (a, b) => a * b);
                bool inferred = target.Contains(-1);
                if (inferred && known > 0 && inputSize % known == 0) target = target.Select(d => d == -1 ? inputSize / known : d).ToImmutableArray();
                if ((inferred && target.Contains(-1)) || (!inferred && known != inputSize))
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, "Reshape", ShapeText(input), inputName,
                        $"{inputSize} values to fill {ShapeText(field.Shape.Select(d => d == -1 ? (object)"-1" : d))}, which {(inferred ? $"needs a multiple of {known}" : $"holds {known}")}");
                    target = ImmutableArray.Create(inputSize);
                }
                return new LayerSpec(field.Name, field.Kind, target, inputSize, InputShape: input);
            }
            case LayerKind.ZeroPadding2D:
            case LayerKind.UpSampling2D:
            {
                if (input.Length != 3)
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, field.Kind.ToString(), ShapeText(input), inputName, "an image of shape (None, height, width, channels)");
                    // Reported once; later layers see the input's shape, as if this layer were not there.
                    return new LayerSpec(field.Name, field.Kind, input, inputSize, InputShape: ImmutableArray.Create(1, 1, 1), Extents: field.Extents);
                }
                var e = field.Extents;
                var shape = field.Kind == LayerKind.ZeroPadding2D
                    ? ImmutableArray.Create(input[0] + e[0] + e[1], input[1] + e[2] + e[3], input[2])
                    : ImmutableArray.Create(input[0] * e[0], input[1] * e[1], input[2]);
                return new LayerSpec(field.Name, field.Kind, shape, inputSize, InputShape: input, Extents: field.Extents);
            }
            case LayerKind.Embedding:
                if (input.Length != 1)
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, "Embedding", ShapeText(input), inputName, "integer ids of shape (None, steps)");
                    input = ImmutableArray.Create(inputSize);
                }
                return new LayerSpec(field.Name, field.Kind, ImmutableArray.Create(input[0], field.Units), inputSize, InputShape: input, Trainable: field.Trainable,
                    InputDim: field.InputDim, MaskZero: field.MaskZero);
            case LayerKind.Masking:
            case LayerKind.LSTM:
            case LayerKind.GRU:
            {
                if (input.Length != 2)
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, field.Kind.ToString(), ShapeText(input), inputName, "a sequence of shape (None, steps, features)");
                    input = ImmutableArray.Create(1, inputSize);
                }
                if (field.Kind == LayerKind.Masking) return new LayerSpec(field.Name, field.Kind, input, inputSize, InputShape: input, MaskValue: field.MaskValue);
                int width = field.Bidirectional ? 2 * field.Units : field.Units;
                var shape = field.ReturnSequences ? ImmutableArray.Create(input[0], width) : ImmutableArray.Create(width);
                return new LayerSpec(field.Name, field.Kind, shape, inputSize, field.Activation, InputShape: input, Trainable: field.Trainable,
                    ReturnSequences: field.ReturnSequences, Bidirectional: field.Bidirectional);
            }
            case LayerKind.Dropout:
                return new LayerSpec(field.Name, field.Kind, input, inputSize, Rate: field.Rate);
            case LayerKind.Flatten:
                return new LayerSpec(field.Name, field.Kind, ImmutableArray.Create(inputSize), inputSize);
            case LayerKind.GlobalAveragePooling2D:
            case LayerKind.GlobalMaxPooling2D:
                if (input.Length != 3)
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, field.Kind.ToString(), ShapeText(input), inputName, "an image of shape (None, height, width, channels)");
                    return new LayerSpec(field.Name, field.Kind, ImmutableArray.Create(1), inputSize, InputShape: ImmutableArray.Create(1, 1, 1));
                }
                return new LayerSpec(field.Name, field.Kind, ImmutableArray.Create(input[2]), inputSize, InputShape: input);
            case LayerKind.Conv2DTranspose:
            {
                if (input.Length != 3)
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, "Conv2DTranspose", ShapeText(input), inputName, "an image of shape (None, height, width, channels)");
                    input = ImmutableArray.Create(1, 1, Math.Max(inputSize, 1));
                }
                // The inverse of a convolution's arithmetic: 'valid' grows the image by kernel - strides, 'same' by the strides' factor.
                int Out(int size) => field.Padding == Padding.Same ? size * field.Strides : (size - 1) * field.Strides + field.KernelHeight;
                return new LayerSpec(field.Name, field.Kind, ImmutableArray.Create(Out(input[0]), Out(input[1]), field.Units), inputSize, field.Activation, field.UseBias,
                    InputShape: input, KernelHeight: field.KernelHeight, KernelWidth: field.KernelWidth, Strides: field.Strides, Padding: field.Padding, Trainable: field.Trainable);
            }
            case LayerKind.DepthwiseConv2D:
            case LayerKind.Conv2D:
            case LayerKind.MaxPooling2D:
            case LayerKind.AveragePooling2D:
            {
                string type = field.Kind.ToString();
                if (input.Length != 3)
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, type, ShapeText(input), inputName, "an image of shape (None, height, width, channels)");
                    return new LayerSpec(field.Name, field.Kind, ImmutableArray.Create(1, 1, Math.Max(field.Units, 1)), inputSize, field.Activation, field.UseBias,
                        InputShape: ImmutableArray.Create(1, 1, 1), KernelHeight: field.KernelHeight, KernelWidth: field.KernelWidth, Strides: field.Strides, Padding: field.Padding, Dilation: field.Dilation);
                }
                bool same = field.Padding == Padding.Same;
                // A dilated kernel spans (k - 1)·dilation + 1 pixels.
                int spanHeight = (field.KernelHeight - 1) * field.Dilation + 1, spanWidth = (field.KernelWidth - 1) * field.Dilation + 1;
                int height = same ? (input[0] + field.Strides - 1) / field.Strides : (input[0] - spanHeight) / field.Strides + 1;
                int width = same ? (input[1] + field.Strides - 1) / field.Strides : (input[1] - spanWidth) / field.Strides + 1;
                if (height <= 0 || width <= 0 || (!same && (input[0] < spanHeight || input[1] < spanWidth)))
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, type, ShapeText(input), inputName,
                        $"an image of at least {spanHeight}x{spanWidth} for a {spanHeight}x{spanWidth} window with 'valid' padding");
                    height = width = 1;
                }
                int channels = field.Kind == LayerKind.Conv2D ? field.Units : field.Kind == LayerKind.DepthwiseConv2D ? input[2] * field.Units : input[2];
                return new LayerSpec(field.Name, field.Kind, ImmutableArray.Create(height, width, channels), inputSize, field.Activation, field.UseBias,
                    InputShape: input, KernelHeight: field.KernelHeight, KernelWidth: field.KernelWidth, Strides: field.Strides, Padding: field.Padding, Trainable: field.Trainable, Dilation: field.Dilation);
            }
            default:
                return new LayerSpec(field.Name, field.Kind, input, inputSize, field.Activation);
        }
    }

    // ---- Masks ---------------------------------------------------------------------------------------

    /// <summary>
    /// The mask a layer's output carries (a node index, -1 for none), as Keras propagates it: Embedding(MaskZero) and Masking
    /// create one; element-wise and per-step layers pass theirs on; a recurrent layer consumes it (and passes it on when it
    /// returns sequences); any other layer drops it, which is reported, as Keras warns at run time.
    /// </summary>
    private static int OutputMask(GraphBuilder graph, LayerSpec layer, NodeSpec input, int self, Location? location, Context context)
    {
        if (layer.Kind == LayerKind.Masking || (layer.Kind == LayerKind.Embedding && layer.MaskZero)) return self;
        if (input.Mask < 0) return -1;
        switch (layer.Kind)
        {
            case LayerKind.LSTM:
            case LayerKind.GRU:
                return layer.ReturnSequences ? input.Mask : -1;
            case LayerKind.Dense:
            case LayerKind.Dropout:
            case LayerKind.Activation:
            case LayerKind.LayerNormalization:
            case LayerKind.BatchNormalization:
                return input.Mask;
            default:
                context.Report(Diagnostics.MaskDestroyed, location, layer.Name, layer.TypeName, graph.Nodes[input.Mask].Name);
                return -1;
        }
    }

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
