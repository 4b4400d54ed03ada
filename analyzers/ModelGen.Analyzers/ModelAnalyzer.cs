using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;
using ModelGen.Graph;

namespace ModelGen.Analyzers;

/// <summary>
/// Reports every problem in a model class where it is written, by running the same parser the generator
/// uses (shared source in generator/ModelGen.Graph) with a reporter attached.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class ModelAnalyzer : DiagnosticAnalyzer
{
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics { get; } = ImmutableArray.Create(Diagnostics.All);

    public override void Initialize(AnalysisContext context)
    {
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.EnableConcurrentExecution();
        context.RegisterCompilationStartAction(start =>
        {
            var sequential = start.Compilation.GetTypeByMetadataName(ModelParser.SequentialAttribute);
            var functional = start.Compilation.GetTypeByMetadataName(ModelParser.FunctionalAttribute);
            if (sequential is null || functional is null) return; // ModelGen is not referenced
            start.RegisterSymbolAction(symbolContext =>
            {
                var type = (INamedTypeSymbol)symbolContext.Symbol;
                var attribute = type.GetAttributes().FirstOrDefault(a =>
                    SymbolEqualityComparer.Default.Equals(a.AttributeClass, sequential) || SymbolEqualityComparer.Default.Equals(a.AttributeClass, functional));
                if (attribute is null) return;
                ModelParser.Parse(type, attribute, symbolContext.ReportDiagnostic, symbolContext.CancellationToken);
            }, SymbolKind.NamedType);
        });
    }
}
