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
/// Each layer kind's configuration (read and checked at its attribute's arguments) and shape rule (inferred where it is
/// applied), and how masks flow through layers: the one table of layer semantics the generator and the analyzers share.
/// </summary>
internal static partial class ModelParser
{
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
            case LayerKind.GlobalAveragePooling1D:
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
                bool upsampling = kind == LayerKind.UpSampling2D;
                if (!(values.Count is 1 or 2 || (!upsampling && values.Count == 4)))
                {
                    // Code that does not compile (no such constructor) still reaches here: report it, and carry on with the defaults.
                    context.Report(Diagnostics.InvalidLayerConfiguration, AttributeLocation(attribute, field), field.Name, context.Model,
                        upsampling ? "UpSampling2D takes a size, or rows and columns" : "ZeroPadding2D takes one padding, (vertical, horizontal), or (top, bottom, left, right)");
                    values = new List<int> { upsampling ? 2 : 1 };
                }
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
            case LayerKind.GlobalAveragePooling1D:
                if (input.Length != 2)
                {
                    context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, "GlobalAveragePooling1D", ShapeText(input), inputName, "a sequence of shape (None, steps, features)");
                    input = ImmutableArray.Create(1, inputSize);
                }
                return new LayerSpec(field.Name, field.Kind, ImmutableArray.Create(input[1]), inputSize, InputShape: input);
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
            case LayerKind.GlobalAveragePooling1D:
                return -1; // consumed: the mean is over the steps that count
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
}
