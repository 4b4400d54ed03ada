using System.Collections.Immutable;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Text;
using ModelGen.Analyzers;
using ModelGen.Generator;
using ModelGen.Testing;

namespace ModelGen.Analyzers.Tests;

/// <summary>
/// Diagnostic tests without Microsoft.CodeAnalysis.Testing: sources mark each expected diagnostic as
/// <c>{|MG0003:text|}</c>; the harness strips the markup and compares (id, span) sets exactly, and checks each
/// diagnostic's severity against the specified one.
/// </summary>
internal static class AnalyzerHarness
{
    /// <summary>The severity each diagnostic is specified to have (README's table); every verified diagnostic is checked against it.</summary>
    private static DiagnosticSeverity SpecifiedSeverity(string id) => id switch
    {
        "MG0013" or "MG0014" or "MG0017" or "MG0020" => DiagnosticSeverity.Warning,
        "MG0019" => DiagnosticSeverity.Info,
        _ => DiagnosticSeverity.Error,
    };

    public static void Verify(string markedSource)
    {
        var (source, expected) = Parse(markedSource);
        var diagnostics = Analyze(source);
        Assert.All(diagnostics, d => Assert.Equal(SpecifiedSeverity(d.Id), d.Severity));
        var actual = diagnostics.Select(d => (d.Id, d.Location.SourceSpan)).OrderBy(d => d.SourceSpan.Start).ToList();
        Assert.Equal(expected.OrderBy(d => d.Span.Start).Select(d => $"{d.Id} {d.Span} '{source.Substring(d.Span.Start, d.Span.Length)}'"),
            actual.Select(d => $"{d.Id} {d.SourceSpan} '{source.Substring(d.SourceSpan.Start, d.SourceSpan.Length)}'"));
    }

    public static ImmutableArray<Diagnostic> Analyze(string source, bool withGeneratedCode = false)
    {
        Compilation compilation = Compilations.Create(source);
        if (withGeneratedCode)
        {
            CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() }, parseOptions: Compilations.ParseOptions)
                .RunGeneratorsAndUpdateCompilation(compilation, out compilation, out _);
        }
        return compilation.WithAnalyzers(ImmutableArray.Create<DiagnosticAnalyzer>(new ModelAnalyzer()))
            .GetAnalyzerDiagnosticsAsync().GetAwaiter().GetResult();
    }

    /// <summary>What became of one model class among many (<see cref="GenerateEach"/>).</summary>
    public sealed record ModelOutcome(IReadOnlySet<string> ErrorIds, bool Generated, Diagnostic? FirstCompileError);

    /// <summary>
    /// Many model classes in one compilation, generated and analyzed at once; for each class name, the ids of the errors the
    /// analyzers report in it, whether its file was generated, and the first compile error in that file.
    /// </summary>
    public static async Task<(Compilation Output, ImmutableArray<Diagnostic> GeneratorDiagnostics, IReadOnlyList<ModelOutcome> Models)> GenerateEach(
        IReadOnlyList<string> classes, IReadOnlyList<string> classNames)
    {
        Compilation compilation = Compilations.Create("using ModelGen;\n" + string.Join("\n", classes));
        CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() }, parseOptions: Compilations.ParseOptions)
            .RunGeneratorsAndUpdateCompilation(compilation, out var output, out var generatorDiagnostics);
        var errorIds = (await compilation.WithAnalyzers(ImmutableArray.Create<DiagnosticAnalyzer>(new ModelAnalyzer())).GetAnalyzerDiagnosticsAsync())
            .Where(d => d.Severity == DiagnosticSeverity.Error)
            .ToLookup(d => d.Location.SourceTree!.GetRoot().FindToken(d.Location.SourceSpan.Start).Parent!.AncestorsAndSelf()
                .OfType<Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax>().First().Identifier.ValueText, d => d.Id);
        var files = output.SyntaxTrees.Select(t => Path.GetFileName(t.FilePath)).ToHashSet();
        var compileErrors = output.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToLookup(d => Path.GetFileName(d.Location.SourceTree?.FilePath ?? ""));
        var models = classNames.Select(name => new ModelOutcome(errorIds[name].ToHashSet(), files.Contains(name + ".g.cs"), compileErrors[name + ".g.cs"].FirstOrDefault())).ToList();
        return (output, generatorDiagnostics, models);
    }

    /// <summary>The generator's output files for a source (empty when it skips the model).</summary>
    public static IReadOnlyList<string> Generate(string source)
    {
        var driver = CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() }, parseOptions: Compilations.ParseOptions)
            .RunGenerators(Compilations.Create(source));
        return driver.GetRunResult().GeneratedTrees.Select(t => t.ToString()).ToList();
    }

    private static (string Source, List<(string Id, TextSpan Span)> Expected) Parse(string marked)
    {
        var text = new StringBuilder();
        var expected = new List<(string, TextSpan)>();
        int i = 0;
        while (i < marked.Length)
        {
            if (marked.AsSpan(i).StartsWith("{|"))
            {
                int colon = marked.IndexOf(':', i);
                int end = marked.IndexOf("|}", colon, StringComparison.Ordinal);
                string id = marked.Substring(i + 2, colon - i - 2);
                string content = marked.Substring(colon + 1, end - colon - 1);
                expected.Add((id, new TextSpan(text.Length, content.Length)));
                text.Append(content);
                i = end + 2;
            }
            else text.Append(marked[i++]);
        }
        return (text.ToString(), expected);
    }
}
