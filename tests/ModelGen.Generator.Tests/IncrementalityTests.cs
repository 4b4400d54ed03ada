using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using ModelGen.Generator;
using ModelGen.Testing;

namespace ModelGen.Generator.Tests;

/// <summary>Edits that do not change a model must leave every step Cached or Unchanged; edits that do must regenerate.</summary>
public class IncrementalityTests
{
    private const string Constants = "static class Sizes { public const int Hidden = 256; }";
    private const string Model = """
        using ModelGen;
        [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
        partial class Classifier
        {
            [Input(784)] Input image;
            [Dense(Sizes.Hidden, Activation.Relu)] Dense hidden;
            [Dense(10, Activation.Softmax)] Dense predictions;
            public int Helper() => 1;
        }
        """;

    private static (GeneratorDriver Driver, CSharpCompilation Compilation) Start(params string[] sources)
    {
        var compilation = Compilations.Create(sources);
        GeneratorDriver driver = CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() }, parseOptions: Compilations.ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));
        return (driver.RunGenerators(compilation), compilation);
    }

    private static GeneratorRunResult Rerun(GeneratorDriver driver, Compilation compilation) => driver.RunGenerators(compilation).GetRunResult().Results[0];

    private static IncrementalStepRunReason[] Reasons(GeneratorRunResult result, string step) =>
        result.TrackedSteps[step].SelectMany(s => s.Outputs).Select(o => o.Reason).ToArray();

    private static SyntaxTree Tree(string text, int index) => CSharpSyntaxTree.ParseText(text, Compilations.ParseOptions, path: $"User{index}.cs");

    [Fact]
    public void Unrelated_new_file_leaves_every_step_cached()
    {
        var (driver, compilation) = Start(Constants, Model);
        var result = Rerun(driver, compilation.AddSyntaxTrees(Tree("class Unrelated { void M() { } }", 9)));
        Assert.All(Reasons(result, TrackingNames.Parse), r => Assert.True(r is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, r.ToString()));
        Assert.All(Reasons(result, TrackingNames.ValidModels), r => Assert.True(r is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, r.ToString()));
    }

    [Fact]
    public void Edit_to_a_method_body_in_the_model_file_is_unchanged()
    {
        var (driver, compilation) = Start(Constants, Model);
        var edited = compilation.ReplaceSyntaxTree(compilation.SyntaxTrees.ElementAt(1), Tree(Model.Replace("=> 1;", "=> 2; // edited"), 1));
        var result = Rerun(driver, edited);
        Assert.All(Reasons(result, TrackingNames.Parse), r => Assert.Equal(IncrementalStepRunReason.Unchanged, r));
        Assert.All(Reasons(result, TrackingNames.ValidModels), r => Assert.True(r is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, r.ToString()));
    }

    [Fact]
    public void Changing_a_layer_size_regenerates()
    {
        var (driver, compilation) = Start(Constants, Model);
        var edited = compilation.ReplaceSyntaxTree(compilation.SyntaxTrees.ElementAt(1), Tree(Model.Replace("Dense(10,", "Dense(12,"), 1));
        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(Rerun(driver, edited), TrackingNames.Parse));
    }

    [Fact]
    public void Changing_a_constant_in_another_file_regenerates()
    {
        // The stale-cache trap: the model's file is untouched, but a layer size it uses changed.
        var (driver, compilation) = Start(Constants, Model);
        var edited = compilation.ReplaceSyntaxTree(compilation.SyntaxTrees.ElementAt(0), Tree(Constants.Replace("256", "300"), 0));
        Assert.Contains(IncrementalStepRunReason.Modified, Reasons(Rerun(driver, edited), TrackingNames.Parse));
    }
}
