using System;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelGen.Graph;

namespace ModelGen.Generator;

/// <summary>
/// Finds [Sequential] and [Functional] partial classes and emits, per model, one file with its shapes, buffers, forward and
/// backward passes. The pipeline carries only <see cref="ModelSpec"/> records (strings, numbers, equatable
/// arrays), so an edit that does not change a model leaves its output cached.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class ModelGenerator : IIncrementalGenerator
{
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        foreach (var attribute in new[] { ModelParser.SequentialAttribute, ModelParser.FunctionalAttribute })
        {
            var models = context.SyntaxProvider
                .ForAttributeWithMetadataName(
                    attribute,
                    static (node, _) => node is ClassDeclarationSyntax,
                    static (target, cancellationToken) => target.TargetSymbol is INamedTypeSymbol type
                        ? TryParse(type, target.Attributes[0], cancellationToken)
                        : null)
                .WithTrackingName(TrackingNames.Parse)
                .Where(static model => model is not null)
                .Select(static (model, _) => model!)
                .WithTrackingName(TrackingNames.ValidModels);

            context.RegisterSourceOutput(models, static (output, model) =>
            {
                var (source, failure) = TryEmit(model, ModelEmitter.Emit);
                if (source is not null) output.AddSource(model.HintName, source);
                if (failure is not null) output.ReportDiagnostic(failure);
            });
        }
    }

    /// <summary>
    /// One model's file, or MG0022 where our emitter fails on it: an exception would drop every model's file in the
    /// compilation (the generator's output is all or nothing), where this loses only the one model's.
    /// </summary>
    internal static (string? Source, Diagnostic? Failure) TryEmit(ModelSpec model, Func<ModelSpec, string> emit)
    {
        try
        {
            return (emit(model), null);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return (null, Diagnostic.Create(Diagnostics.GenerationFailed, Location.None, model.ClassName, e.GetType().Name, e.Message));
        }
    }

    /// <summary>Invalid models produce nothing here (the analyzers explain why); a bug of ours must not break the user's build either.</summary>
    private static ModelSpec? TryParse(INamedTypeSymbol type, AttributeData attribute, System.Threading.CancellationToken cancellationToken)
    {
        try
        {
            return ModelParser.Parse(type, attribute, report: null, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return null;
        }
    }
}

/// <summary>Names of the pipeline steps, for caching tests.</summary>
public static class TrackingNames
{
    public const string Parse = nameof(Parse);
    public const string ValidModels = nameof(ValidModels);
}
