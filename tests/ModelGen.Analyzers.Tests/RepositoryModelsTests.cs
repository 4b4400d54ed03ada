namespace ModelGen.Analyzers.Tests;

/// <summary>Every model the repository ships (samples, test models, benchmarks) compiles without a single ModelGen diagnostic.</summary>
public class RepositoryModelsTests
{
    public static TheoryData<string> ModelFiles()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "ModelGen.sln"))) root = root.Parent!;
        var data = new TheoryData<string>();
        foreach (var folder in new[] { "samples", "tests/ModelGen.Tests", "benchmarks" })
        {
            foreach (var file in Directory.EnumerateFiles(Path.Combine(root.FullName, folder), "*.cs", SearchOption.AllDirectories))
            {
                if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")) continue;
                string text = File.ReadAllText(file);
                if (text.Contains("[Sequential") || text.Contains("[Functional")) data.Add(Path.GetRelativePath(root.FullName, file));
            }
        }
        return data;
    }

    [Theory, MemberData(nameof(ModelFiles))]
    public void Shipped_models_raise_no_diagnostic(string file)
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "ModelGen.sln"))) root = root.Parent!;
        var diagnostics = AnalyzerHarness.Analyze(File.ReadAllText(Path.Combine(root.FullName, file)));
        Assert.Empty(diagnostics.Where(d => d.Id.StartsWith("MG") || d.Id == "AD0001"));
    }
}
