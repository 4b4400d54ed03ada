using System.Collections.Generic;
using System.Collections.Immutable;
using System.Composition;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace ModelGen.CodeFixes;

/// <summary>A code fix for one ModelGen diagnostic, one model at a time (each rewrites its model its own way: no fix-all).</summary>
public abstract class ModelCodeFix(string diagnosticId) : CodeFixProvider
{
    public sealed override ImmutableArray<string> FixableDiagnosticIds { get; } = ImmutableArray.Create(diagnosticId);
    public sealed override FixAllProvider? GetFixAllProvider() => null;

    /// <summary>An attribute's name as written, without namespace or "Attribute": [ModelGen.OutputLossAttribute] is OutputLoss.</summary>
    protected static string AttributeName(AttributeSyntax attribute)
    {
        string name = attribute.Name switch
        {
            QualifiedNameSyntax qualified => qualified.Right.Identifier.ValueText,
            SimpleNameSyntax simple => simple.Identifier.ValueText,
            _ => attribute.Name.ToString(),
        };
        return name.EndsWith("Attribute") ? name.Substring(0, name.Length - "Attribute".Length) : name;
    }
}

/// <summary>MG0018: rewrites a Sequential model with several inputs as a [Functional] model with an equivalent graph method.</summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(ConvertToFunctionalCodeFix)), Shared]
public sealed class ConvertToFunctionalCodeFix() : ModelCodeFix("MG0018")
{
    public override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        if (root?.FindToken(context.Span.Start).Parent?.AncestorsAndSelf().OfType<ClassDeclarationSyntax>().FirstOrDefault() is not { } model) return;
        context.RegisterCodeFix(
            CodeAction.Create("Convert to a [Functional] model", token => Convert(context.Document, root, model, token), nameof(ConvertToFunctionalCodeFix)),
            context.Diagnostics);
    }

    /// <summary>
    /// Each [Input(...)] field becomes a [Shape(...)] parameter; the other layer fields keep their order and are
    /// applied as a chain from the first input, exactly what the Sequential model computed. Further inputs are left for
    /// the user to wire (MG0014 points at them).
    /// </summary>
    private static Task<Document> Convert(Document document, SyntaxNode root, ClassDeclarationSyntax model, CancellationToken cancellationToken)
    {
        var inputs = new List<(FieldDeclarationSyntax Field, AttributeSyntax Attribute, string Name)>();
        var layers = new List<string>();
        foreach (var field in model.Members.OfType<FieldDeclarationSyntax>())
        {
            var attribute = field.AttributeLists.SelectMany(l => l.Attributes).FirstOrDefault(a => AttributeName(a) is "Input" or "Dense" or "Dropout" or "Activation");
            if (attribute is null) continue;
            string name = field.Declaration.Variables.First().Identifier.ValueText;
            if (AttributeName(attribute) == "Input") inputs.Add((field, attribute, name));
            else layers.Add(name);
        }

        string parameters = string.Join(", ", inputs.Select(i => $"[Shape{i.Attribute.ArgumentList?.ToString() ?? "()"}] Tensor {i.Name}"));
        var body = new List<string>();
        string current = inputs.Count > 0 ? inputs[0].Name : "x";
        body.Add($"var h = {current};");
        foreach (var layer in layers) body.Add($"h = {layer}.Apply(h);");
        body.Add("return h;");
        var method = (MethodDeclarationSyntax)SyntaxFactory.ParseMemberDeclaration(
            $"\n[Graph]\nTensor Forward({parameters})\n{{\n{string.Join("\n", body)}\n}}\n")!;

        var updated = model.RemoveNodes(inputs.Select(i => (SyntaxNode)i.Field), SyntaxRemoveOptions.KeepNoTrivia)!;
        updated = updated.AddMembers(method.WithAdditionalAnnotations(Microsoft.CodeAnalysis.Formatting.Formatter.Annotation));
        updated = updated.ReplaceNodes(
            updated.AttributeLists.SelectMany(l => l.Attributes).Where(a => AttributeName(a) == "Sequential"),
            (original, _) => original.WithName(SyntaxFactory.IdentifierName("Functional").WithTriviaFrom(original.Name)));
        return Task.FromResult(document.WithSyntaxRoot(root.ReplaceNode(model, updated)));
    }
}

/// <summary>MG0019: makes twin layers one shared field: the second field's uses apply the first, and the second field goes.</summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(ShareLayerCodeFix)), Shared]
public sealed class ShareLayerCodeFix() : ModelCodeFix("MG0019")
{
    public override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        var diagnostic = context.Diagnostics[0];
        if (root?.FindToken(diagnostic.Location.SourceSpan.Start).Parent?.AncestorsAndSelf().OfType<VariableDeclaratorSyntax>().FirstOrDefault() is not { } twin) return;
        if (twin.Parent?.Parent is not FieldDeclarationSyntax twinField || twinField.Parent is not ClassDeclarationSyntax model) return;
        // The message names the kept field first: "'left' and 'right' have the same configuration ..."
        string message = diagnostic.GetMessage();
        string keep = message.Substring(1, message.IndexOf('\'', 1) - 1);
        string drop = twin.Identifier.ValueText;
        context.RegisterCodeFix(
            CodeAction.Create($"Share '{keep}' instead of '{drop}'", _ =>
            {
                var uses = model.DescendantNodes().OfType<IdentifierNameSyntax>().Where(i => i.Identifier.ValueText == drop).ToList();
                var updated = model.ReplaceNodes(uses, (original, _) => SyntaxFactory.IdentifierName(keep).WithTriviaFrom(original));
                var field = updated.Members.OfType<FieldDeclarationSyntax>().First(f => f.Declaration.Variables.Any(v => v.Identifier.ValueText == drop));
                updated = updated.RemoveNode(field, SyntaxRemoveOptions.KeepNoTrivia)!;
                return Task.FromResult(context.Document.WithSyntaxRoot(root.ReplaceNode(model, updated)));
            }, nameof(ShareLayerCodeFix)),
            diagnostic);
    }
}

/// <summary>
/// MG0010 on an undeclared name: adds it as an input of the graph method. Its [Shape] is copied from the method's
/// first input (the common case is a second input of the same kind, as in a Siamese network); adjust it if not.
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(AddGraphInputCodeFix)), Shared]
public sealed class AddGraphInputCodeFix() : ModelCodeFix("MG0010")
{
    public override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        var semanticModel = await context.Document.GetSemanticModelAsync(context.CancellationToken).ConfigureAwait(false);
        if (root?.FindNode(context.Span, getInnermostNodeForTie: true) is not IdentifierNameSyntax identifier || semanticModel is null) return;
        if (semanticModel.GetSymbolInfo(identifier, context.CancellationToken).Symbol is not null) return; // a real field or property: not a missing input
        if (identifier.AncestorsAndSelf().OfType<MethodDeclarationSyntax>().FirstOrDefault() is not { } method) return;
        string name = identifier.Identifier.ValueText;
        context.RegisterCodeFix(
            CodeAction.Create($"Add '{name}' as an input of '{method.Identifier.ValueText}'", _ =>
            {
                var shape = method.ParameterList.Parameters.FirstOrDefault()?.AttributeLists.FirstOrDefault()?.ToString() ?? "[Shape(1)]";
                var parameter = SyntaxFactory.ParseParameterList($"({shape} Tensor {name})").Parameters[0];
                var updated = method.WithParameterList(method.ParameterList.AddParameters(parameter));
                return Task.FromResult(context.Document.WithSyntaxRoot(root.ReplaceNode(method, updated)));
            }, nameof(AddGraphInputCodeFix)),
            context.Diagnostics);
    }
}

/// <summary>MG0007 on a Dense fed an image: inserts a [Flatten] layer in front of it, as Keras models do.</summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(InsertFlattenCodeFix)), Shared]
public sealed class InsertFlattenCodeFix() : ModelCodeFix("MG0007")
{
    public override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        var node = root?.FindNode(context.Span, getInnermostNodeForTie: true);
        if (root is null || node?.AncestorsAndSelf().OfType<ClassDeclarationSyntax>().FirstOrDefault() is not { } model) return;
        var existing = new HashSet<string>(model.Members.OfType<FieldDeclarationSyntax>().SelectMany(f => f.Declaration.Variables).Select(v => v.Identifier.ValueText));
        string name = "flatten";
        for (int i = 2; existing.Contains(name); i++) name = "flatten" + i;
        var flatten = (FieldDeclarationSyntax)SyntaxFactory.ParseMemberDeclaration($"[Flatten] Flatten {name};\n")!;

        if (node.AncestorsAndSelf().OfType<FieldDeclarationSyntax>().FirstOrDefault() is { } dense)
        {
            // Sequential: the Dense field is the diagnostic's location; the new layer goes right before it.
            context.RegisterCodeFix(CodeAction.Create($"Insert a Flatten layer before '{dense.Declaration.Variables[0].Identifier.ValueText}'", _ =>
            {
                var updated = model.InsertNodesBefore(dense, new[] { flatten.WithLeadingTrivia(dense.GetLeadingTrivia()) });
                return Task.FromResult(context.Document.WithSyntaxRoot(root.ReplaceNode(model, updated)));
            }, nameof(InsertFlattenCodeFix)), context.Diagnostics);
        }
        else if (node.AncestorsAndSelf().OfType<InvocationExpressionSyntax>().FirstOrDefault() is { ArgumentList.Arguments.Count: 1 } apply)
        {
            // A graph: d.Apply(x) becomes d.Apply(flatten.Apply(x)), with the new field declared first.
            context.RegisterCodeFix(CodeAction.Create("Flatten the input first", _ =>
            {
                var argument = apply.ArgumentList.Arguments[0];
                var wrapped = SyntaxFactory.ParseExpression($"{name}.Apply({argument.Expression})");
                var updated = model.ReplaceNode(argument, argument.WithExpression(wrapped));
                var first = updated.Members.First();
                updated = updated.InsertNodesBefore(first, new[] { flatten.WithLeadingTrivia(first.GetLeadingTrivia()) });
                return Task.FromResult(context.Document.WithSyntaxRoot(root.ReplaceNode(model, updated)));
            }, nameof(InsertFlattenCodeFix)), context.Diagnostics);
        }
    }
}

/// <summary>
/// MG0021: renames a layer, input or output that the generated code's own name would clash with: 'batch' becomes
/// 'batchInput', a layer 'parameters' becomes 'parametersLayer', and the OutputLoss attributes naming it follow.
/// </summary>
[ExportCodeFixProvider(LanguageNames.CSharp, Name = nameof(RenameClaimedNameCodeFix)), Shared]
public sealed class RenameClaimedNameCodeFix() : ModelCodeFix("MG0021")
{
    public override async Task RegisterCodeFixesAsync(CodeFixContext context)
    {
        var root = await context.Document.GetSyntaxRootAsync(context.CancellationToken).ConfigureAwait(false);
        var semanticModel = await context.Document.GetSemanticModelAsync(context.CancellationToken).ConfigureAwait(false);
        var node = root?.FindToken(context.Span.Start).Parent;
        if (root is null || semanticModel is null || node?.AncestorsAndSelf().OfType<ClassDeclarationSyntax>().FirstOrDefault() is not { } model) return;
        var symbol = semanticModel.GetDeclaredSymbol(node, context.CancellationToken);
        if (symbol is null) return;
        string name = symbol.Name;
        string suffix = symbol switch
        {
            IFieldSymbol { ContainingType.IsTupleType: true } => "Output",
            IParameterSymbol => "Input",
            IFieldSymbol field when field.GetAttributes().Any(a => a.AttributeClass?.Name == "InputAttribute") => "Input",
            IFieldSymbol { IsStatic: false } => "Layer",
            // The class's other members: Name -> NameProperty, a nested Layer -> LayerType.
            IFieldSymbol => "Field",
            IPropertySymbol => "Property",
            IMethodSymbol => "Method",
            IEventSymbol => "Event",
            _ => "Type",
        };
        var taken = new HashSet<string>(semanticModel.LookupSymbols(context.Span.Start).Select(s => s.Name).Concat(symbol.ContainingType.GetMembers().Select(m => m.Name)));
        string newName = name + suffix;
        for (int i = 2; taken.Contains(newName); i++) newName = name + suffix + i;
        context.RegisterCodeFix(
            CodeAction.Create($"Rename '{name}' to '{newName}'", token => Rename(context.Document, symbol, node, newName, token), nameof(RenameClaimedNameCodeFix)),
            context.Diagnostics);
    }

    private static async Task<Solution> Rename(Document document, ISymbol symbol, SyntaxNode declaration, string newName, CancellationToken cancellationToken)
    {
        string oldName = symbol.Name;
        Solution solution;
        if (symbol is IFieldSymbol { ContainingType.IsTupleType: true } && declaration is TupleElementSyntax element)
        {
            // A tuple element's name is written once, in the graph method's return type.
            var root = await document.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
            solution = document.WithSyntaxRoot(root!.ReplaceToken(element.Identifier, SyntaxFactory.Identifier(newName).WithTriviaFrom(element.Identifier))).Project.Solution;
        }
        else
        {
            solution = await Microsoft.CodeAnalysis.Rename.Renamer.RenameSymbolAsync(document.Project.Solution, symbol, new Microsoft.CodeAnalysis.Rename.SymbolRenameOptions(), newName, cancellationToken).ConfigureAwait(false);
        }

        // [OutputLoss("name", ...)] names an output by its layer or tuple element: it follows the rename.
        var renamed = solution.GetDocument(document.Id)!;
        var renamedRoot = await renamed.GetSyntaxRootAsync(cancellationToken).ConfigureAwait(false);
        var arguments = renamedRoot!.DescendantNodes().OfType<AttributeSyntax>()
            .Where(a => AttributeName(a) == "OutputLoss" && a.ArgumentList?.Arguments.Count > 0)
            .Select(a => a.ArgumentList!.Arguments[0].Expression)
            .OfType<LiteralExpressionSyntax>()
            .Where(l => l.IsKind(SyntaxKind.StringLiteralExpression) && l.Token.ValueText == oldName)
            .ToList();
        if (arguments.Count == 0) return solution;
        var fixedRoot = renamedRoot.ReplaceNodes(arguments, (original, _) =>
            SyntaxFactory.LiteralExpression(SyntaxKind.StringLiteralExpression, SyntaxFactory.Literal(newName)).WithTriviaFrom(original));
        return renamed.WithSyntaxRoot(fixedRoot).Project.Solution;
    }
}
