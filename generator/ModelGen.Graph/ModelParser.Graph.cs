using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ModelGen.Graph;

internal static partial class ModelParser
{
    private static readonly Dictionary<string, MergeOperation> MergeMethods = new()
    {
        ["Add"] = MergeOperation.Add, ["Subtract"] = MergeOperation.Subtract, ["Multiply"] = MergeOperation.Multiply,
        ["Average"] = MergeOperation.Average, ["Maximum"] = MergeOperation.Maximum, ["Minimum"] = MergeOperation.Minimum,
        ["Concatenate"] = MergeOperation.Concatenate, ["Dot"] = MergeOperation.Dot,
    };

    private static readonly Dictionary<string, Activation> ActivationMethods = new()
    {
        ["Relu"] = Activation.Relu, ["Sigmoid"] = Activation.Sigmoid, ["Tanh"] = Activation.Tanh, ["Softmax"] = Activation.Softmax,
    };

    /// <summary>A tuple element named where it is written ((Tensor energy, Tensor vacuum)), not Item1.</summary>
    private static bool IsNamedElement(IFieldSymbol element) => !SymbolEqualityComparer.Default.Equals(element, element.CorrespondingTupleField);

    private static IEnumerable<IMethodSymbol> GraphMethods(INamedTypeSymbol type) =>
        type.GetMembers().OfType<IMethodSymbol>().Where(m => m.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == GraphAttribute));

    /// <summary>
    /// Reads the model's graph method (the first marked [Graph]) and any later ones as sub-models that share its layers.
    /// </summary>
    private static GraphBuilder? ReadGraph(INamedTypeSymbol type, List<LayerField> fields, Context context, CancellationToken cancellationToken,
        out IMethodSymbol? graphMethod, List<SubModelSpec> subModels)
    {
        graphMethod = null;
        var methods = GraphMethods(type).ToList();
        if (methods.Count == 0)
        {
            context.Report(Diagnostics.MissingGraph, type.Locations.FirstOrDefault(),
                $"Functional model '{type.Name}' has no method marked [Graph]: add one whose parameters are the inputs and whose return value is the output");
            return null;
        }
        var method = graphMethod = methods[0];
        if (Syntax(method, cancellationToken) is not { } syntax) return null;
        var callable = methods.Select(m => (Method: m, Syntax: Syntax(m, cancellationToken))).Where(m => m.Syntax is not null)
            .GroupBy(m => m.Method.Name).ToDictionary(g => g.Key, g => (g.First().Method, g.First().Syntax!));
        var graph = new GraphReader(method, syntax, fields, context, model: null, callable).Read(cancellationToken);
        if (graph is null) return null;

        // Field -> layer index in the final (pruned) model, which sub-models must use.
        var layerOfField = graph.Layers.Select((layer, index) => (layer, index)).Where(l => l.layer.Kind != LayerKind.Input)
            .ToDictionary(l => l.layer.Name, l => l.index);
        foreach (var subMethod in methods.Skip(1))
        {
            if (Syntax(subMethod, cancellationToken) is not { } subSyntax) continue;
            var sub = new GraphReader(subMethod, subSyntax, fields, context, model: (graph, layerOfField), callable).Read(cancellationToken);
            if (sub is null) continue;
            var layersUsed = sub.Nodes.Where(n => n.Kind == NodeKind.Layer).Select(n => n.Layer).Distinct();
            subModels.Add(new SubModelSpec(subMethod.Name, sub.Nodes.ToImmutableArray(), sub.Inputs.ToImmutableArray(),
                sub.Outputs.Select((node, k) => OutputSpec.Of(sub.OutputNames[k], node, Loss.MeanSquaredError, sub.Nodes[node])).ToImmutableArray(),
                layersUsed.Sum(l => graph.Layers[l].ParameterCount)));
        }
        return graph;
    }

    private static MethodDeclarationSyntax? Syntax(IMethodSymbol method, CancellationToken cancellationToken) =>
        method.DeclaringSyntaxReferences.Select(r => r.GetSyntax(cancellationToken)).OfType<MethodDeclarationSyntax>().FirstOrDefault();

    /// <summary>
    /// Reads a graph method's body as a straight-line program over tensors. Statements run in order, so the
    /// nodes come out in topological order and a cycle cannot be written.
    /// </summary>
    /// <param name="model">For a sub-model: the model's graph and field-to-layer map, whose layers (and weights) it must reuse.</param>
    /// <param name="callable">Every graph method by name: calling one from another inlines it, as a Keras model used as a layer.</param>
    private sealed class GraphReader(IMethodSymbol method, MethodDeclarationSyntax syntax, List<LayerField> fields, Context context,
        (GraphBuilder Graph, Dictionary<string, int> LayerOfField)? model,
        Dictionary<string, (IMethodSymbol Method, MethodDeclarationSyntax Syntax)> callable)
    {
        private readonly List<string> callStack = new() { method.Name };
        private readonly GraphBuilder graph = Start(model?.Graph);
        private readonly Dictionary<string, int> tensors = new();           // locals and parameters -> node, or Failed
        /// <summary>A name whose definition already failed (and was reported): its uses report nothing more.</summary>
        private const int Failed = -1;
        private readonly Dictionary<string, LayerField> fieldsByName = fields.ToDictionary(f => f.Name);
        private readonly Dictionary<string, int> layerOfField = model is { } m ? new(m.LayerOfField) : new(); // field -> index in graph.Layers, from its first use

        /// <summary>A sub-model starts from the model's layers so its layer indices are the model's.</summary>
        private static GraphBuilder Start(GraphBuilder? model)
        {
            var builder = new GraphBuilder();
            if (model is not null) builder.Layers.AddRange(model.Layers);
            return builder;
        }
        private readonly Dictionary<string, int> uses = new();              // naming: how often a name was taken
        /// <summary>How many graph methods marked [Graph(Trainable = false)] the reader is inside; their layers freeze.</summary>
        private int frozenDepth = IsFrozen(method) ? 1 : 0;
        private readonly HashSet<string> frozenFields = new();

        private static bool IsFrozen(IMethodSymbol graphMethod) => graphMethod.GetAttributes()
            .Any(a => a.AttributeClass?.ToDisplayString() == GraphAttribute && a.NamedArguments.Any(n => n.Key == "Trainable" && n.Value.Value is false));
        private readonly Dictionary<int, Location> nodeLocations = new();

        public GraphBuilder? Read(CancellationToken cancellationToken)
        {
            ReadInputs();
            List<int>? output = null;
            if (syntax.ExpressionBody is { } arrow) output = ReadReturn(arrow.Expression);
            foreach (var statement in syntax.Body?.Statements ?? default)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (output is not null)
                {
                    context.Report(Diagnostics.UnsupportedGraphCode, statement.GetLocation(), "Code after the return statement", method.Name);
                    break;
                }
                output = ReadStatement(statement);
            }
            if (output is null)
            {
                if (context.Ok) context.Report(Diagnostics.UnsupportedGraphCode, syntax.Identifier.GetLocation(), "A graph method without 'return output;'", method.Name);
                return null;
            }
            if (!context.Ok) return null;
            for (int i = 0; i < graph.Layers.Count && model is null; i++)
            {
                if (frozenFields.Contains(graph.Layers[i].Name)) graph.Layers[i] = graph.Layers[i] with { Trainable = false };
            }
            graph.Outputs.AddRange(output);
            graph.OutputNames.AddRange(OutputNames(output));
            return model is null ? Prune() : graph;
        }

        /// <summary>
        /// The value of a return: one tensor, or a tuple of them for several outputs. Returns null (after reporting)
        /// when any part fails.
        /// </summary>
        private List<int>? ReadReturn(ExpressionSyntax value)
        {
            var parts = value is TupleExpressionSyntax tuple ? tuple.Arguments.Select(a => a.Expression).ToList() : new List<ExpressionSyntax> { value };
            var nodes = new List<int>();
            foreach (var part in parts)
            {
                if (Evaluate(part) is not int node) return null;
                if (graph.Nodes[node].Kind == NodeKind.Input)
                {
                    context.Report(Diagnostics.UnsupportedGraphCode, part.GetLocation(), $"Returning the input '{part}' unchanged", method.Name);
                    return null;
                }
                if (nodes.Contains(node))
                {
                    context.Report(Diagnostics.UnsupportedGraphCode, part.GetLocation(), $"Returning '{part}' twice", method.Name);
                    return null;
                }
                nodes.Add(node);
            }
            return nodes;
        }

        /// <summary>Keras names outputs after their layers; a named tuple element (energy: ...) names it instead.</summary>
        private IEnumerable<string> OutputNames(List<int> outputs)
        {
            var elements = method.ReturnType is INamedTypeSymbol { IsTupleType: true } tuple ? tuple.TupleElements : ImmutableArray<IFieldSymbol>.Empty;
            for (int k = 0; k < outputs.Count; k++)
            {
                var element = k < elements.Length ? elements[k] : null;
                bool named = element is not null && IsNamedElement(element);
                var node = graph.Nodes[outputs[k]];
                yield return named ? element!.Name : node.Layer >= 0 ? graph.Layers[node.Layer].Name : node.Name;
            }
        }

        private void ReadInputs()
        {
            if (method.Parameters.Length == 0)
            {
                context.Report(Diagnostics.MissingInputShape, syntax.Identifier.GetLocation(), $"Graph method '{method.Name}' has no inputs: add a parameter such as [Shape(784)] Tensor x");
            }
            foreach (var parameter in method.Parameters)
            {
                var location = parameter.Locations.FirstOrDefault();
                if (parameter.Type.ToDisplayString() != "ModelGen.Tensor")
                {
                    context.Report(Diagnostics.UnsupportedGraphCode, location, $"Parameter '{parameter.Name}' of type '{parameter.Type.ToDisplayString(SymbolDisplayFormat.MinimallyQualifiedFormat)}' (graph inputs are Tensor)", method.Name);
                    tensors[parameter.Name] = Failed;
                    continue;
                }
                var shapeAttribute = parameter.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == ShapeAttribute);
                if (shapeAttribute is null)
                {
                    context.Report(Diagnostics.MissingInputShape, location, $"Input '{parameter.Name}' of graph method '{method.Name}' has no shape: add [Shape(...)]");
                    tensors[parameter.Name] = Failed;
                    continue;
                }
                var shape = ReadShape(shapeAttribute, parameter.Name, shapeAttribute.ApplicationSyntaxReference?.GetSyntax().GetLocation(), i => PositionalArgumentLocation(shapeAttribute, i), context);
                graph.Layers.Add(new LayerSpec(parameter.Name, LayerKind.Input, shape, 0));
                int node = graph.Add(new NodeSpec(Unique(parameter.Name), NodeKind.Input, ImmutableArray<int>.Empty, shape, Layer: graph.Layers.Count - 1));
                graph.Inputs.Add(node);
                tensors[parameter.Name] = node;
                if (location is not null) nodeLocations[node] = location;
            }
        }

        /// <summary>Returns the output nodes for a return statement, null otherwise.</summary>
        private List<int>? ReadStatement(StatementSyntax statement)
        {
            switch (statement)
            {
                case LocalDeclarationStatementSyntax declaration:
                    foreach (var variable in declaration.Declaration.Variables)
                    {
                        if (variable.Initializer is null)
                        {
                            context.Report(Diagnostics.UnsupportedGraphCode, variable.GetLocation(), $"A tensor declared without a value ('{variable.Identifier.ValueText}')", method.Name);
                            tensors[variable.Identifier.ValueText] = Failed;
                            continue;
                        }
                        tensors[variable.Identifier.ValueText] = Evaluate(variable.Initializer.Value) ?? Failed;
                    }
                    return null;
                case ExpressionStatementSyntax { Expression: AssignmentExpressionSyntax { Left: IdentifierNameSyntax target, OperatorToken.ValueText: "=" } assignment }:
                    tensors[target.Identifier.ValueText] = Evaluate(assignment.Right) ?? Failed;
                    return null;
                case ExpressionStatementSyntax { Expression: AssignmentExpressionSyntax { Left: DeclarationExpressionSyntax or TupleExpressionSyntax, Right: var right } assignment }:
                {
                    // var (output, h, c) = lstm.ApplyWithState(x): Keras' return_state.
                    var names = DeconstructedNames(assignment.Left);
                    var nodes = right is InvocationExpressionSyntax { Expression: MemberAccessExpressionSyntax { Name.Identifier.ValueText: "ApplyWithState", Expression: IdentifierNameSyntax receiver } } call
                        && fieldsByName.TryGetValue(receiver.Identifier.ValueText, out var recurrent) && recurrent.Kind is LayerKind.LSTM or LayerKind.GRU
                        ? ApplyRecurrent(recurrent, call, withState: true)
                        : null;
                    if (nodes is null && !(right is InvocationExpressionSyntax { Expression: MemberAccessExpressionSyntax { Name.Identifier.ValueText: "ApplyWithState" } }))
                    {
                        context.Report(Diagnostics.UnsupportedGraphCode, statement.GetLocation(), $"The statement '{FirstLine(statement)}' (only a recurrent layer's ApplyWithState deconstructs)", method.Name);
                    }
                    else if (nodes is not null && nodes.Count != names.Count)
                    {
                        context.Report(Diagnostics.UnsupportedGraphCode, assignment.Left.GetLocation(), $"Deconstructing {nodes.Count} tensors into {names.Count} names", method.Name);
                        nodes = null;
                    }
                    for (int i = 0; i < names.Count; i++)
                    {
                        if (names[i] is { } name) tensors[name] = nodes is null ? Failed : nodes[i];
                    }
                    return null;
                }
                case ReturnStatementSyntax { Expression: { } value }:
                    return ReadReturn(value) ?? new List<int>(); // a failed return still ends the method
                default:
                    context.Report(Diagnostics.UnsupportedGraphCode, statement.GetLocation(), $"The statement '{FirstLine(statement)}'", method.Name);
                    return null;
            }
        }

        private int? Evaluate(ExpressionSyntax expression)
        {
            switch (expression)
            {
                case ParenthesizedExpressionSyntax parenthesized:
                    return Evaluate(parenthesized.Expression);
                case IdentifierNameSyntax identifier:
                    if (tensors.TryGetValue(identifier.Identifier.ValueText, out int node)) return node == Failed ? null : node;
                    context.Report(Diagnostics.GraphDisconnected, identifier.GetLocation(), identifier.Identifier.ValueText, method.Name);
                    return null;
                case InvocationExpressionSyntax { Expression: IdentifierNameSyntax callee } call when callable.ContainsKey(callee.Identifier.ValueText):
                    return Inline(callable[callee.Identifier.ValueText], call);
                case InvocationExpressionSyntax { Expression: MemberAccessExpressionSyntax access } invocation:
                    string? receiver = access.Expression switch
                    {
                        IdentifierNameSyntax name => name.Identifier.ValueText,
                        MemberAccessExpressionSyntax { Expression: ThisExpressionSyntax, Name: var name } => name.Identifier.ValueText,
                        _ => null,
                    };
                    string member = access.Name.Identifier.ValueText;
                    if (member == "Apply" && receiver is not null && fieldsByName.TryGetValue(receiver, out var field))
                    {
                        return field.Kind is LayerKind.LSTM or LayerKind.GRU ? ApplyRecurrent(field, invocation, withState: false)?[0] : Apply(field, invocation);
                    }
                    if (member == "ApplyWithState" && receiver is not null && fieldsByName.ContainsKey(receiver))
                    {
                        context.Report(Diagnostics.UnsupportedGraphCode, invocation.GetLocation(), $"'{receiver}.ApplyWithState' as one tensor (it returns the output and the state: var (output, state) = {receiver}.ApplyWithState(x))", method.Name);
                        return null;
                    }
                    if (receiver == "Ops" && !tensors.ContainsKey("Ops"))
                    {
                        if (MergeMethods.TryGetValue(member, out var operation)) return Merge(operation, member, invocation);
                        if (ActivationMethods.TryGetValue(member, out var activation)) return Function(activation, member, invocation);
                    }
                    break;
                case MemberAccessExpressionSyntax or ElementAccessExpressionSyntax when !(expression is InvocationExpressionSyntax):
                    // A tensor held anywhere but in this method's locals and parameters: a field, a property, another graph.
                    context.Report(Diagnostics.GraphDisconnected, expression.GetLocation(), expression.ToString(), method.Name);
                    return null;
            }
            context.Report(Diagnostics.UnsupportedGraphCode, expression.GetLocation(), $"The expression '{FirstLine(expression)}'", method.Name);
            return null;
        }

        /// <summary>
        /// Another graph method called like a layer: its body is read in place, with its parameters bound to the
        /// arguments, so the model's graph stays flat and straight-line. Problems inside it are reported where it is
        /// declared, not again here.
        /// </summary>
        private int? Inline((IMethodSymbol Method, MethodDeclarationSyntax Syntax) callee, InvocationExpressionSyntax call)
        {
            string name = callee.Method.Name;
            if (callStack.Contains(name))
            {
                context.Report(Diagnostics.Cycle, call.GetLocation(), name, string.Join(" -> ", callStack.Concat(new[] { name })));
                return null;
            }
            var arguments = call.ArgumentList.Arguments.Select(a => a.Expression).ToList();
            if (arguments.Count != callee.Method.Parameters.Length)
            {
                context.Report(Diagnostics.UnsupportedGraphCode, call.GetLocation(), $"Calling '{name}' with {arguments.Count} tensors (it takes {callee.Method.Parameters.Length})", method.Name);
                return null;
            }
            var bound = new Dictionary<string, int>();
            for (int i = 0; i < arguments.Count; i++)
            {
                if (Evaluate(arguments[i]) is not int node) return null;
                var parameter = callee.Method.Parameters[i];
                var declared = parameter.GetAttributes().FirstOrDefault(a => a.AttributeClass?.ToDisplayString() == ShapeAttribute)?
                    .ConstructorArguments.FirstOrDefault().Values.Select(v => v.Value is int d ? d : 0).ToArray();
                if (declared is not null && !declared.SequenceEqual(graph.Nodes[node].Shape))
                {
                    context.Report(Diagnostics.IncompatibleShapes, arguments[i].GetLocation(),
                        $"'{name}' expects {ShapeText(declared)} for '{parameter.Name}', but '{arguments[i]}' is {ShapeText(graph.Nodes[node].Shape)}");
                    return null;
                }
                bound[parameter.Name] = node;
            }

            var saved = new Dictionary<string, int>(tensors);
            tensors.Clear();
            foreach (var pair in bound) tensors[pair.Key] = pair.Value;
            callStack.Add(name);
            context.Silenced++;
            bool frozen = IsFrozen(callee.Method);
            if (frozen) frozenDepth++;
            List<int>? result = null;
            try
            {
                if (callee.Syntax.ExpressionBody is { } arrow) result = ReadReturn(arrow.Expression);
                foreach (var statement in callee.Syntax.Body?.Statements ?? default)
                {
                    if (result is not null) break;
                    result = ReadStatement(statement);
                }
            }
            finally
            {
                if (frozen) frozenDepth--;
                context.Silenced--;
                callStack.RemoveAt(callStack.Count - 1);
                tensors.Clear();
                foreach (var pair in saved) tensors[pair.Key] = pair.Value;
            }
            if (result is { Count: > 1 })
            {
                context.Report(Diagnostics.UnsupportedGraphCode, call.GetLocation(), $"Calling '{name}', which has several outputs, as one tensor", method.Name);
                return null;
            }
            if (result is not { Count: 1 }) return null; // the callee's own errors are reported where it is declared
            return result[0];
        }

        /// <summary>
        /// lstm.Apply(x[, h0, c0]) and lstm.ApplyWithState(x[, h0, c0]): the layer's node takes the initial states as extra
        /// inputs (Keras' initial_state); with the state returned, State nodes follow it (h, then an LSTM's c).
        /// </summary>
        private List<int>? ApplyRecurrent(LayerField field, InvocationExpressionSyntax invocation, bool withState)
        {
            var arguments = invocation.ArgumentList.Arguments;
            int stateCount = field.Kind == LayerKind.LSTM ? 2 : 1;
            var location = invocation.GetLocation();
            if (arguments.Count != 1 && arguments.Count != 1 + stateCount)
            {
                context.Report(Diagnostics.UnsupportedGraphCode, location, $"'{field.Name}.{(withState ? "ApplyWithState" : "Apply")}' with {arguments.Count} arguments (it takes the input and, optionally, {(stateCount == 2 ? "the initial h and c" : "the initial state")})", method.Name);
                return null;
            }
            if (field.Bidirectional && (withState || arguments.Count > 1))
            {
                context.Report(Diagnostics.UnsupportedGraphCode, location, $"Initial or returned states of the Bidirectional layer '{field.Name}' (not supported yet)", method.Name);
                return null;
            }
            var initial = new List<int>();
            foreach (var argument in arguments.Skip(1))
            {
                if (Evaluate(argument.Expression) is not int state) return null;
                if (!graph.Nodes[state].Shape.Equals(ImmutableArray.Create(field.Units)))
                {
                    context.Report(Diagnostics.IncompatibleShapes, argument.GetLocation(), $"An initial state of '{field.Name}' must be (None, {field.Units}), but '{argument}' is {ShapeText(graph.Nodes[state].Shape)}");
                    return null;
                }
                initial.Add(state);
            }
            if (Apply(field, invocation, arguments[0].Expression) is not int node) return null;
            if (initial.Count > 0) graph.Nodes[node] = graph.Nodes[node] with { Inputs = graph.Nodes[node].Inputs.Items.AddRange(initial) };
            var result = new List<int> { node };
            for (int k = 0; withState && k < stateCount; k++)
            {
                string suffix = stateCount == 1 ? "State" : k == 0 ? "StateH" : "StateC";
                result.Add(Remember(graph.Add(new NodeSpec(Unique(field.Name + suffix), NodeKind.State, ImmutableArray.Create(node), ImmutableArray.Create(field.Units), Axis: k)), location));
            }
            return result;
        }

        /// <summary>The names of <c>var (a, b, _)</c> or <c>(var a, var b)</c>; null for a discard.</summary>
        private static List<string?> DeconstructedNames(ExpressionSyntax left) => left switch
        {
            DeclarationExpressionSyntax { Designation: ParenthesizedVariableDesignationSyntax designation } =>
                designation.Variables.Select(v => v is SingleVariableDesignationSyntax single ? single.Identifier.ValueText : null).ToList(),
            TupleExpressionSyntax tuple => tuple.Arguments.Select(a => a.Expression switch
            {
                DeclarationExpressionSyntax { Designation: SingleVariableDesignationSyntax single } => single.Identifier.ValueText,
                IdentifierNameSyntax { Identifier.ValueText: not "_" } name => name.Identifier.ValueText,
                _ => null,
            }).ToList(),
            _ => new List<string?>(),
        };

        /// <summary>
        /// attention.Apply(query, value[, key][, attentionMask: mask]): the node's inputs are query, value, key (the value when
        /// not given) and, when given, the attention mask, which must be a graph input (it gets no gradient).
        /// </summary>
        private int? ApplyAttention(LayerField field, InvocationExpressionSyntax invocation)
        {
            var location = invocation.GetLocation();
            var arguments = invocation.ArgumentList.Arguments;
            ExpressionSyntax? Named(string name) => arguments.FirstOrDefault(a => a.NameColon?.Name.Identifier.ValueText == name)?.Expression;
            var positional = arguments.Where(a => a.NameColon is null).Select(a => a.Expression).ToList();
            var queryExpression = positional.ElementAtOrDefault(0) ?? Named("query");
            var valueExpression = positional.ElementAtOrDefault(1) ?? Named("value");
            var keyExpression = positional.ElementAtOrDefault(2) ?? Named("key");
            var maskExpression = positional.ElementAtOrDefault(3) ?? Named("attentionMask");
            if (queryExpression is null || valueExpression is null)
            {
                context.Report(Diagnostics.UnsupportedGraphCode, location, $"'{field.Name}.Apply' without a query and a value (self-attention is {field.Name}.Apply(x, x))", method.Name);
                return null;
            }
            if (Evaluate(queryExpression) is not int query || Evaluate(valueExpression) is not int value) return null;
            int key = value;
            if (keyExpression is not null)
            {
                if (Evaluate(keyExpression) is not int k) return null;
                key = k;
            }
            int? mask = null;
            if (maskExpression is not null)
            {
                if (Evaluate(maskExpression) is not int m) return null;
                if (graph.Nodes[m].Kind != NodeKind.Input)
                {
                    context.Report(Diagnostics.UnsupportedGraphCode, maskExpression.GetLocation(), $"An attention mask computed in the graph ('{maskExpression}'); pass it as a graph input", method.Name);
                    return null;
                }
                mask = m;
            }
            var (q, v, kk) = (graph.Nodes[query].Shape, graph.Nodes[value].Shape, graph.Nodes[key].Shape);
            string? problem = q.Count != 2 ? $"the query '{queryExpression}' is {ShapeText(q)}, not a sequence (None, steps, features)"
                : v.Count != 2 ? $"the value '{valueExpression}' is {ShapeText(v)}, not a sequence (None, steps, features)"
                : kk.Count != 2 || kk[0] != v[0] ? $"the key '{keyExpression}' is {ShapeText(kk)}, but it needs the value's {v[0]} steps"
                : mask is int mm && !graph.Nodes[mm].Shape.Equals(ImmutableArray.Create(q[0], v[0])) ? $"the attention mask '{maskExpression}' is {ShapeText(graph.Nodes[mm].Shape)}, but it needs (None, {q[0]}, {v[0]}): one row per query step, one column per value step"
                : null;
            if (problem is not null)
            {
                context.Report(Diagnostics.IncompatibleShapes, location, $"MultiHeadAttention '{field.Name}': {problem}");
                return null;
            }
            var e = field.Extents;
            var layer = new LayerSpec(field.Name, LayerKind.MultiHeadAttention, q.Items, q.Items.Aggregate(1, (a, b) => a * b), UseBias: field.UseBias, InputShape: q.Items,
                Trainable: field.Trainable, Causal: field.Causal, Extents: ImmutableArray.Create(e[0], e[1], e[2], q[1], kk[1], v[1], q[0], v[0]));
            if (layerOfField.TryGetValue(field.Name, out int index))
            {
                if (graph.Layers[index] with { Trainable = layer.Trainable } != layer with { Trainable = layer.Trainable })
                {
                    context.Report(Diagnostics.IncompatibleShapes, location, $"Layer '{field.Name}' is shared: every use must see the shapes of its first ({ShapeText(graph.Layers[index].InputShape.Items)} queries)");
                    return null;
                }
            }
            else if (model is not null)
            {
                context.Report(Diagnostics.UnsupportedGraphCode, location, $"Applying '{field.Name}', which the model's graph does not use (a sub-model shares the model's layers and weights)", method.Name);
                return null;
            }
            else
            {
                graph.Layers.Add(layer);
                index = layerOfField[field.Name] = graph.Layers.Count - 1;
            }
            if (frozenDepth > 0) frozenFields.Add(field.Name);
            var inputs = mask is int maskNode ? ImmutableArray.Create(query, value, key, maskNode) : ImmutableArray.Create(query, value, key);
            // Keras' MultiHeadAttention passes the query's mask on.
            return Remember(graph.Add(new NodeSpec(Unique(field.Name), NodeKind.Layer, inputs, q, Layer: index, Mask: graph.Nodes[query].Mask)), location);
        }

        private int? Apply(LayerField field, InvocationExpressionSyntax invocation)
        {
            if (field.Kind == LayerKind.MultiHeadAttention) return ApplyAttention(field, invocation);
            if (invocation.ArgumentList.Arguments.Count != 1)
            {
                context.Report(Diagnostics.UnsupportedGraphCode, invocation.GetLocation(), $"'{field.Name}.Apply' with {invocation.ArgumentList.Arguments.Count} arguments (it takes one tensor)", method.Name);
                return null;
            }
            return Apply(field, invocation, invocation.ArgumentList.Arguments[0].Expression);
        }

        /// <summary>Applies a one-input layer to <paramref name="argument"/>: a new layer on first use, the shared one after.</summary>
        private int? Apply(LayerField field, InvocationExpressionSyntax invocation, ExpressionSyntax argument)
        {
            if (Evaluate(argument) is not int input) return null;
            var inputNode = graph.Nodes[input];
            var location = invocation.GetLocation();
            LayerSpec layer;
            if (layerOfField.TryGetValue(field.Name, out int index))
            {
                // A shared layer: every use has the weights, so every use needs the first use's input shape.
                layer = graph.Layers[index];
                // Normalizations need only the same channels; every other layer with weights the same input shape.
                bool normalization = field.Kind is LayerKind.BatchNormalization or LayerKind.LayerNormalization;
                if (layer.HasWeights && (normalization ? inputNode.Shape[inputNode.Shape.Count - 1] != layer.Channels : !inputNode.Shape.Equals(layer.InputShape)))
                {
                    context.Report(Diagnostics.IncompatibleShapes, location,
                        $"Layer '{field.Name}' is shared: its first use takes {ShapeText(layer.InputShape.Items)}, but here it is applied to {ShapeText(inputNode.Shape)} from '{argument}'; a shared layer takes one input shape");
                    return null;
                }
            }
            else if (model is not null)
            {
                context.Report(Diagnostics.UnsupportedGraphCode, location,
                    $"Applying '{field.Name}', which the model's graph does not use (a sub-model shares the model's layers and weights)", method.Name);
                return null;
            }
            else
            {
                layer = Infer(field, inputNode.Shape.Items, argument.ToString(), location, context);
                graph.Layers.Add(layer);
                index = graph.Layers.Count - 1;
                layerOfField[field.Name] = index;
            }
            if (frozenDepth > 0) frozenFields.Add(field.Name);
            // A weighted layer's output shape is fixed by its weights (its input was checked above); any other layer's follows the input.
            var shape = field.Kind is LayerKind.Dense or LayerKind.Conv2D ? layer.OutputShape
                : Infer(field, inputNode.Shape.Items, argument.ToString(), location, context).OutputShape;
            if (field.Kind == LayerKind.Embedding && inputNode.Kind != NodeKind.Input)
            {
                context.Report(Diagnostics.IncompatibleInputShape, location, field.Name, "Embedding", ShapeText(inputNode.Shape), argument.ToString(), "integer ids straight from a graph input");
                return null;
            }
            int mask = OutputMask(graph, graph.Layers[index] with { OutputShape = shape }, inputNode, graph.Nodes.Count, location, context);
            return Remember(graph.Add(new NodeSpec(Unique(field.Name), NodeKind.Layer, ImmutableArray.Create(input), shape, Layer: index, Mask: mask)), location);
        }

        private int? Merge(MergeOperation operation, string name, InvocationExpressionSyntax invocation)
        {
            var arguments = invocation.ArgumentList.Arguments.Select(a => a.Expression).ToList();
            var location = invocation.GetLocation();
            int? kerasAxis = null;
            if (operation == MergeOperation.Concatenate && arguments.Count > 0 && AxisLiteral(arguments[0]) is int literal)
            {
                kerasAxis = literal;
                arguments.RemoveAt(0);
            }
            bool binary = operation is MergeOperation.Subtract or MergeOperation.Dot;
            if (arguments.Count < 2 || (binary && arguments.Count != 2))
            {
                context.Report(Diagnostics.UnsupportedGraphCode, location,
                    $"Ops.{name} with {arguments.Count} operand{(arguments.Count == 1 ? "" : "s")} ({(binary ? $"{name} takes exactly two" : "a merge takes at least two")})", method.Name);
                return null;
            }
            var inputs = new List<int>();
            foreach (var argument in arguments)
            {
                if (Evaluate(argument) is int node) inputs.Add(node);
            }
            if (inputs.Count != arguments.Count) return null;

            var shapes = inputs.Select(i => graph.Nodes[i].Shape).ToList();
            ImmutableArray<int> shape;
            int axis = -1;
            if (operation == MergeOperation.Concatenate)
            {
                int rank = shapes[0].Count;
                // Keras counts the batch as axis 0; within a sample the axes are 0..rank-1.
                axis = kerasAxis is null or -1 ? rank - 1 : kerasAxis < 0 ? rank + kerasAxis.Value : kerasAxis.Value - 1;
                if (axis < 0 || axis >= rank)
                {
                    context.Report(Diagnostics.IncompatibleShapes, invocation.ArgumentList.Arguments[0].GetLocation(),
                        $"Concatenate axis {kerasAxis} does not exist for {ShapeText(shapes[0])} (the batch is axis 0, so use 1..{rank} or -1..-{rank})");
                    return null;
                }
                for (int i = 1; i < shapes.Count; i++)
                {
                    bool fits = shapes[i].Count == rank && Enumerable.Range(0, rank).All(d => d == axis || shapes[i][d] == shapes[0][d]);
                    if (!fits)
                    {
                        context.Report(Diagnostics.IncompatibleShapes, location,
                            $"Concatenate along axis {axis + 1} needs every other dimension equal, but '{arguments[0]}' is {ShapeText(shapes[0])} and '{arguments[i]}' is {ShapeText(shapes[i])} (Keras: \"A Concatenate layer requires inputs with matching shapes except for the concatenation axis\")");
                        return null;
                    }
                }
                shape = shapes[0].Items.SetItem(axis, shapes.Sum(s => s[axis]));
            }
            else
            {
                for (int i = 1; i < shapes.Count; i++)
                {
                    if (!shapes[i].Equals(shapes[0]))
                    {
                        context.Report(Diagnostics.IncompatibleShapes, location,
                            $"{name} needs operands of one shape, but '{arguments[0]}' is {ShapeText(shapes[0])} and '{arguments[i]}' is {ShapeText(shapes[i])} (Keras: \"Inputs have incompatible shapes\")");
                        return null;
                    }
                }
                shape = operation == MergeOperation.Dot ? ImmutableArray.Create(1) : shapes[0].Items;
                if (operation == MergeOperation.Dot && shapes[0].Count != 1)
                {
                    context.Report(Diagnostics.IncompatibleShapes, location, $"Dot of '{arguments[0]}' with shape {ShapeText(shapes[0])}: only flat tensors (None, features) so far");
                    return null;
                }
            }
            // Keras merges combine their operands' masks; here the first operand's mask carries on (a Dot, which has no steps, drops it).
            int mask = inputs.Select(i => graph.Nodes[i].Mask).Where(m => m >= 0).DefaultIfEmpty(-1).First();
            if (mask >= 0 && (operation == MergeOperation.Dot || (operation == MergeOperation.Concatenate && axis != shape.Length - 1)))
            {
                context.Report(Diagnostics.MaskDestroyed, location, name.ToLowerInvariant(), name, graph.Nodes[mask].Name);
                mask = -1;
            }
            return Remember(graph.Add(new NodeSpec(Unique(name.ToLowerInvariant()), NodeKind.Merge, inputs.ToImmutableArray(), shape, Merge: operation, Axis: axis, Mask: mask)), location);
        }

        private int? Function(Activation activation, string name, InvocationExpressionSyntax invocation)
        {
            if (invocation.ArgumentList.Arguments.Count != 1)
            {
                context.Report(Diagnostics.UnsupportedGraphCode, invocation.GetLocation(), $"Ops.{name} with {invocation.ArgumentList.Arguments.Count} arguments (it takes one tensor)", method.Name);
                return null;
            }
            if (Evaluate(invocation.ArgumentList.Arguments[0].Expression) is not int input) return null;
            return Remember(graph.Add(new NodeSpec(Unique(name.ToLowerInvariant()), NodeKind.Function, ImmutableArray.Create(input), graph.Nodes[input].Shape, Activation: activation, Mask: graph.Nodes[input].Mask)),
                invocation.GetLocation());
        }

        /// <summary>An integer literal (possibly negative) as Concatenate's leading axis argument.</summary>
        private static int? AxisLiteral(ExpressionSyntax expression) => expression switch
        {
            LiteralExpressionSyntax { Token.Value: int value } => value,
            PrefixUnaryExpressionSyntax { OperatorToken.ValueText: "-", Operand: LiteralExpressionSyntax { Token.Value: int value } } => -value,
            _ => null,
        };

        private int Remember(int node, Location location)
        {
            nodeLocations[node] = location;
            return node;
        }

        /// <summary>Keras-style unique names: hidden, hidden_1, hidden_2 for later uses.</summary>
        private string Unique(string name)
        {
            uses.TryGetValue(name, out int count);
            uses[name] = count + 1;
            return count == 0 ? name : name + "_" + count;
        }

        /// <summary>Drops what does not reach the output (Keras builds only what the outputs need) and warns about it.</summary>
        private GraphBuilder Prune()
        {
            var reachable = new bool[graph.Nodes.Count];
            var pending = new Stack<int>(graph.Outputs);
            while (pending.Count > 0)
            {
                int node = pending.Pop();
                if (reachable[node]) continue;
                reachable[node] = true;
                foreach (var input in graph.Nodes[node].Inputs) pending.Push(input);
            }
            foreach (var field in fields)
            {
                bool used = graph.Nodes.Where((n, i) => reachable[i] && n.Kind == NodeKind.Layer).Any(n => graph.Layers[n.Layer].Name == field.Name);
                if (!used) context.Report(Diagnostics.UnusedLayer, FieldLocation(field.Field), field.Name, method.Name);
            }
            ReportUnsharedTwins(reachable);
            foreach (int input in graph.Inputs.Where(i => !reachable[i]))
            {
                context.Report(Diagnostics.UnusedInput, nodeLocations.TryGetValue(input, out var location) ? location : null, graph.Nodes[input].Name, method.Name);
                reachable[input] = true; // still an input of the model
            }

            var pruned = new GraphBuilder();
            var layerMap = new Dictionary<int, int>();
            var nodeMap = new Dictionary<int, int>();
            for (int i = 0; i < graph.Nodes.Count; i++)
            {
                if (!reachable[i]) continue;
                var node = graph.Nodes[i];
                int layer = -1;
                if (node.Layer >= 0 && !layerMap.TryGetValue(node.Layer, out layer))
                {
                    pruned.Layers.Add(graph.Layers[node.Layer]);
                    layer = layerMap[node.Layer] = pruned.Layers.Count - 1;
                }
                nodeMap[i] = pruned.Add(node with { Layer = layer, Inputs = node.Inputs.Select(n => nodeMap[n]).ToImmutableArray() });
            }
            pruned.Inputs.AddRange(graph.Inputs.Select(i => nodeMap[i]));
            pruned.Outputs.AddRange(graph.Outputs.Select(i => nodeMap[i]));
            pruned.OutputNames.AddRange(graph.OutputNames);
            return pruned;
        }

        /// <summary>
        /// The seed's Siamese bug: a merge whose operands come from two different fields of identical configuration,
        /// each applied once to an input of the same shape. Keras shows it only as a doubled parameter count.
        /// </summary>
        private void ReportUnsharedTwins(bool[] reachable)
        {
            for (int n = 0; n < graph.Nodes.Count; n++)
            {
                var merge = graph.Nodes[n];
                if (!reachable[n] || merge.Kind != NodeKind.Merge || merge.Inputs.Count != 2) continue;
                var a = graph.Nodes[merge.Inputs[0]];
                var b = graph.Nodes[merge.Inputs[1]];
                if (a.Kind != NodeKind.Layer || b.Kind != NodeKind.Layer || a.Layer == b.Layer) continue;
                var first = graph.Layers[a.Layer];
                var second = graph.Layers[b.Layer];
                bool twins = first.Kind == LayerKind.Dense && first with { Name = second.Name } == second
                    && graph.Nodes[a.Inputs[0]].Shape.Equals(graph.Nodes[b.Inputs[0]].Shape)
                    && a.Inputs[0] != b.Inputs[0]
                    && graph.Nodes.Count(x => x.Layer == a.Layer) == 1 && graph.Nodes.Count(x => x.Layer == b.Layer) == 1;
                if (!twins || !fieldsByName.TryGetValue(second.Name, out var field)) continue;
                context.Report(Diagnostics.LikelyUnsharedLayers, FieldLocation(field.Field), first.Name, second.Name, merge.Name,
                    2 * first.ParameterCount, first.ParameterCount);
            }
        }

        private static string FirstLine(SyntaxNode node)
        {
            string text = node.ToString();
            int end = text.IndexOfAny(new[] { '\r', '\n' });
            return end < 0 ? text : text.Substring(0, end) + " ...";
        }
    }
}
