using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using ModelGen.Generator;
using ModelGen.Testing;

namespace ModelGen.Generator.Tests;

internal static class GeneratorHarness
{
    public static (Compilation Output, GeneratorDriverRunResult Result) Run(params string[] sources)
    {
        var compilation = Compilations.Create(sources);
        var driver = CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() }, parseOptions: Compilations.ParseOptions);
        driver = (CSharpGeneratorDriver)driver.RunGeneratorsAndUpdateCompilation(compilation, out var output, out _);
        return (output, driver.GetRunResult());
    }

    /// <summary>A model's one generated file, checked to compile without warnings, and the text of one of its private methods.</summary>
    public static (string Code, string Method) RunAndFindMethod(string source, string method)
    {
        var (output, result) = Run(source);
        Assert.Empty(output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning));
        string code = Assert.Single(result.GeneratedTrees).ToString();
        return (code, FindMethod(code, method));
    }

    /// <summary>The text of a generated method, from its declaration to its closing brace (not included).</summary>
    public static string FindMethod(string code, string method)
    {
        int start = code.IndexOf($"private void {method}(", StringComparison.Ordinal);
        Assert.True(start >= 0, $"no method {method}");
        string text = code.Substring(start);
        return text.Substring(0, text.IndexOf("\n    }", StringComparison.Ordinal));
    }

    /// <summary>
    /// Compares text with Snapshots/&lt;name&gt;.verified.cs. On a mismatch it writes &lt;name&gt;.received.cs beside it
    /// and fails; MODELGEN_UPDATE_SNAPSHOTS=1 accepts the new text instead.
    /// </summary>
    public static void MatchesSnapshot(string name, string actual)
    {
        string directory = typeof(GeneratorHarness).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "SnapshotDirectory").Value!;
        string verified = Path.Combine(directory, name + ".verified.cs");
        string received = Path.Combine(directory, name + ".received.cs");
        actual = actual.Replace("\r\n", "\n");
        if (Environment.GetEnvironmentVariable("MODELGEN_UPDATE_SNAPSHOTS") == "1")
        {
            File.WriteAllText(verified, actual);
            if (File.Exists(received)) File.Delete(received);
            return;
        }
        string expected = File.Exists(verified) ? File.ReadAllText(verified).Replace("\r\n", "\n") : "";
        if (expected == actual)
        {
            if (File.Exists(received)) File.Delete(received);
            return;
        }
        File.WriteAllText(received, actual);
        Assert.Fail($"Generated code differs from {verified}. The new output is in {received}: review it, then rerun with MODELGEN_UPDATE_SNAPSHOTS=1 to accept.");
    }
}
