using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CodeActions;
using Microsoft.CodeAnalysis.CodeFixes;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Formatting;
using ModelGen.Analyzers;
using ModelGen.CodeFixes;
using ModelGen.Testing;

namespace ModelGen.Analyzers.Tests;

/// <summary>Each code fix applied through a real workspace: the fixed text, then that it is diagnostic-free and generates.</summary>
public class CodeFixTests
{
    [Fact]
    public void Sequential_with_two_inputs_becomes_functional()
    {
        string fixedText = ApplyFix(new ConvertToFunctionalCodeFix(), "MG0018", """
            using ModelGen;
            [Sequential(Loss = Loss.MeanSquaredError)]
            partial class Model
            {
                [Input(4)] Input x;
                [Dense(8, Activation.Relu)] Dense hidden;
                [Input(3)] Input extra;
                [Dense(1)] Dense output;
            }
            """);
        Assert.Equal("""
            using ModelGen;
            [Functional(Loss = Loss.MeanSquaredError)]
            partial class Model
            {
                [Dense(8, Activation.Relu)] Dense hidden;
                [Dense(1)] Dense output;

                [Graph]
                Tensor Forward([Shape(4)] Tensor x, [Shape(3)] Tensor extra)
                {
                    var h = x;
                    h = hidden.Apply(h);
                    h = output.Apply(h);
                    return h;
                }
            }
            """, fixedText.Replace("\r\n", "\n"));
        // The fixed model is valid: only the unused second input is left to wire (a warning).
        Assert.Equal(new[] { "MG0014" }, AnalyzerHarness.Analyze(fixedText).Select(d => d.Id));
        Assert.Single(AnalyzerHarness.Generate(fixedText));
    }

    [Fact]
    public void Twin_encoders_become_one_shared_layer()
    {
        const string source = """
            using ModelGen;
            [Functional]
            partial class Siamese
            {
                [Dense(64, Activation.Relu)] Dense leftEncoder;
                [Dense(64, Activation.Relu)] Dense rightEncoder;

                [Graph]
                Tensor Forward([Shape(100)] Tensor left, [Shape(100)] Tensor right) =>
                    Ops.Concatenate(leftEncoder.Apply(left), rightEncoder.Apply(right));
            }
            """;
        var diagnostic = Assert.Single(AnalyzerHarness.Analyze(source));
        Assert.Equal(DiagnosticSeverity.Info, diagnostic.Severity);
        Assert.Contains("12928 parameters instead of 6464", diagnostic.GetMessage());
        string fixedText = ApplyFix(new ShareLayerCodeFix(), "MG0019", source);
        Assert.Contains("Ops.Concatenate(leftEncoder.Apply(left), leftEncoder.Apply(right))", fixedText);
        Assert.DoesNotContain("rightEncoder", fixedText);
        Assert.Empty(AnalyzerHarness.Analyze(fixedText));
        Assert.Contains("ParameterCount = 6464", Assert.Single(AnalyzerHarness.Generate(fixedText)));
    }

    [Fact]
    public void Undeclared_tensor_becomes_a_graph_input()
    {
        string fixedText = ApplyFix(new AddGraphInputCodeFix(), "MG0010", """
            using ModelGen;
            [Functional]
            partial class Model
            {
                [Dense(4)] Dense d;
                [Graph] Tensor Forward([Shape(4)] Tensor x) => Ops.Add(d.Apply(x), d.Apply(y));
            }
            """);
        Assert.Contains("Tensor Forward([Shape(4)] Tensor x, [Shape(4)] Tensor y)", fixedText);
        AssertAnalyzesCleanAndGenerates(fixedText);
    }

    [Fact]
    public void Flatten_is_inserted_before_a_dense_layer_fed_an_image()
    {
        string fixedText = ApplyFix(new InsertFlattenCodeFix(), "MG0007", """
            using ModelGen;
            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            partial class Digits
            {
                [Input(8, 8, 1)] Input image;
                [Dense(10, Activation.Softmax)] Dense digit;
            }
            """);
        Assert.Contains("[Input(8, 8, 1)] Input image;\n    [Flatten] Flatten flatten;\n    [Dense(10, Activation.Softmax)] Dense digit;", fixedText.Replace("\r\n", "\n"));
        Assert.Empty(AnalyzerHarness.Analyze(fixedText));
        Assert.Contains("ParameterCount = 650", Assert.Single(AnalyzerHarness.Generate(fixedText)));
    }

    [Fact]
    public void Flatten_is_applied_in_a_graph()
    {
        string fixedText = ApplyFix(new InsertFlattenCodeFix(), "MG0007", """
            using ModelGen;
            [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
            partial class Digits
            {
                [Dense(10, Activation.Softmax)] Dense digit;
                [Graph] Tensor Forward([Shape(8, 8, 1)] Tensor image) => digit.Apply(image);
            }
            """);
        Assert.Contains("digit.Apply(flatten.Apply(image))", fixedText);
        AssertAnalyzesCleanAndGenerates(fixedText);
    }

    [Fact]
    public void A_real_field_is_not_offered_as_a_missing_input()
    {
        const string source = """
            using ModelGen;
            [Functional]
            partial class Model
            {
                static Tensor cached;
                [Dense(4)] Dense d;
                [Graph] Tensor Forward([Shape(4)] Tensor x) => d.Apply(cached);
            }
            """;
        Assert.Empty(Actions(new AddGraphInputCodeFix(), "MG0010", source).Actions);
    }

    [Fact]
    public void A_claimed_name_is_renamed_with_its_uses_and_its_output_loss()
    {
        string fixedText = Renamed("""
            using ModelGen;
            [Sequential(Loss = Loss.MeanSquaredError)]
            partial class Model
            {
                [Input(4)] Input batch;
                [Dense(1)] Dense output;
            }
            """);
        Assert.Contains("[Input(4)] Input batchInput;", fixedText);
        AssertAnalyzesCleanAndGenerates(fixedText);

        // A keyword, written @class.
        fixedText = Renamed("""
            using ModelGen;
            [Sequential(Loss = Loss.MeanSquaredError)]
            partial class Model
            {
                [Input(4)] Input x;
                [Dense(1)] Dense @class;
            }
            """);
        Assert.Contains("[Dense(1)] Dense classLayer;", fixedText);
        Assert.Single(AnalyzerHarness.Generate(fixedText));

        // A graph input and its uses; an output layer and the OutputLoss naming it, where 'parametersLayer' is taken.
        fixedText = Renamed("""
            using ModelGen;
            [Functional]
            partial class Model
            {
                [Dense(2)] Dense parametersLayer;
                [Dense(1)] Dense parameters;
                [Graph, OutputLoss("parameters", Loss.MeanSquaredError)]
                Tensor Forward([Shape(4)] Tensor x) => parameters.Apply(parametersLayer.Apply(x));
            }
            """);
        Assert.Contains("[Dense(1)] Dense parametersLayer2;", fixedText);
        Assert.Contains("[Graph, OutputLoss(\"parametersLayer2\", Loss.MeanSquaredError)]", fixedText);
        Assert.Contains("=> parametersLayer2.Apply(parametersLayer.Apply(x));", fixedText);
        Assert.Empty(AnalyzerHarness.Analyze(fixedText));

        fixedText = Renamed("""
            using ModelGen;
            [Functional(Loss = Loss.MeanSquaredError)]
            partial class Model
            {
                [Dense(1)] Dense head;
                [Graph] Tensor Forward([Shape(4)] Tensor training) => head.Apply(training);
            }
            """);
        Assert.Contains("Tensor Forward([Shape(4)] Tensor trainingInput) => head.Apply(trainingInput);", fixedText);
        Assert.Single(AnalyzerHarness.Generate(fixedText));

        fixedText = Renamed("""
            using ModelGen;
            [Functional]
            partial class Model
            {
                [Dense(1)] Dense head;
                [Dense(1)] Dense tail;
                [Graph, OutputLoss("loss", Loss.MeanSquaredError), OutputLoss("tail", Loss.MeanSquaredError)]
                (Tensor loss, Tensor tail) Forward([Shape(4)] Tensor x) => (head.Apply(x), tail.Apply(x));
            }
            """);
        Assert.Contains("[Graph, OutputLoss(\"lossOutput\", Loss.MeanSquaredError), OutputLoss(\"tail\", Loss.MeanSquaredError)]", fixedText);
        Assert.Contains("(Tensor lossOutput, Tensor tail) Forward(", fixedText);
        AssertAnalyzesCleanAndGenerates(fixedText);

        // A member beside the layers, and its uses.
        fixedText = Renamed("""
            using ModelGen;
            [Sequential(Loss = Loss.MeanSquaredError)]
            partial class Model
            {
                [Input(4)] Input x;
                [Dense(1)] Dense head;
                public string Name => "mine";
                public string Title => Name + "!";
            }
            """);
        Assert.Contains("public string NameProperty => \"mine\";", fixedText);
        Assert.Contains("public string Title => NameProperty + \"!\";", fixedText);
        AssertAnalyzesCleanAndGenerates(fixedText);

        // A method of a generated method's name and parameters, and its calls.
        fixedText = Renamed("""
            using ModelGen;
            [Sequential(Loss = Loss.MeanSquaredError)]
            partial class Model
            {
                [Input(4)] Input x;
                [Dense(1)] Dense head;
                public string Summary() => "mine";
                public string Title => Summary() + "!";
            }
            """);
        Assert.Contains("public string SummaryMethod() => \"mine\";", fixedText);
        Assert.Contains("public string Title => SummaryMethod() + \"!\";", fixedText);
        AssertAnalyzesCleanAndGenerates(fixedText);
    }

    /// <summary>The source with MG0021's rename applied.</summary>
    private static string Renamed(string source) => ApplyFix(new RenameClaimedNameCodeFix(), "MG0021", source);

    /// <summary>A fixed model: no diagnostic left, and its file generated.</summary>
    private static void AssertAnalyzesCleanAndGenerates(string fixedText)
    {
        Assert.Empty(AnalyzerHarness.Analyze(fixedText));
        Assert.Single(AnalyzerHarness.Generate(fixedText));
    }

    private static string ApplyFix(CodeFixProvider fixer, string id, string source)
    {
        var (document, actions) = Actions(fixer, id, source);
        var action = Assert.Single(actions);
        var operation = action.GetOperationsAsync(CancellationToken.None).GetAwaiter().GetResult().OfType<ApplyChangesOperation>().Single();
        var changed = operation.ChangedSolution.GetDocument(document.Id)!;
        changed = Formatter.FormatAsync(changed, Formatter.Annotation).GetAwaiter().GetResult();
        return changed.GetTextAsync().GetAwaiter().GetResult().ToString();
    }

    private static (Document Document, List<CodeAction> Actions) Actions(CodeFixProvider fixer, string id, string source)
    {
        var workspace = new AdhocWorkspace();
        var project = workspace.AddProject(ProjectInfo.Create(ProjectId.CreateNewId(), VersionStamp.Default, "User", "User", LanguageNames.CSharp,
            compilationOptions: new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable),
            parseOptions: Compilations.ParseOptions, metadataReferences: Compilations.References));
        var document = workspace.AddDocument(project.Id, "Model.cs", Microsoft.CodeAnalysis.Text.SourceText.From(source));
        var compilation = document.Project.GetCompilationAsync().GetAwaiter().GetResult()!;
        var diagnostics = compilation.WithAnalyzers(ImmutableArray.Create<DiagnosticAnalyzer>(new ModelAnalyzer()))
            .GetAnalyzerDiagnosticsAsync().GetAwaiter().GetResult().Where(d => d.Id == id).ToList();
        var diagnostic = Assert.Single(diagnostics);
        var actions = new List<CodeAction>();
        var context = new CodeFixContext(document, diagnostic, (action, _) => actions.Add(action), CancellationToken.None);
        fixer.RegisterCodeFixesAsync(context).GetAwaiter().GetResult();
        return (document, actions);
    }
}
