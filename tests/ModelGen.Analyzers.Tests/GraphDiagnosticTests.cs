using Microsoft.CodeAnalysis;

namespace ModelGen.Analyzers.Tests;

/// <summary>The [Functional] graph diagnostics: id and exact span of each, severity where it matters.</summary>
public class GraphDiagnosticTests
{
    [Fact]
    public void MG0002_graph_input_without_shape()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(2)] Dense d;
                [Graph] Tensor Forward(Tensor {|MG0002:x|}) => d.Apply(x);
            }
            """);
    }

    [Fact]
    public void MG0010_graph_disconnected()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(4)] Dense d;
                [Dense(4)] Dense e;
                static Tensor cached;
                [Graph]
                Tensor Forward([Shape(4)] Tensor x)
                {
                    var h = d.Apply({|MG0010:cached|});
                    return e.Apply(h);
                }
            }
            """);
    }

    [Fact]
    public void MG0011_add_of_different_shapes_names_both_operands()
    {
        const string source = """
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(32)] Dense d;
                [Dense(2)] Dense head;
                [Graph]
                Tensor Forward([Shape(64)] Tensor x)
                {
                    var h = d.Apply(x);
                    return head.Apply({|MG0011:Ops.Add(h, x)|});
                }
            }
            """;
        AnalyzerHarness.Verify(source);
        var diagnostic = Assert.Single(AnalyzerHarness.Analyze(source.Replace("{|MG0011:", "").Replace("|}", "")));
        Assert.Contains("'h' is (None, 32) and 'x' is (None, 64)", diagnostic.GetMessage());
    }

    [Fact]
    public void MG0011_concatenate_with_mismatched_dimensions_or_a_missing_axis()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Flatten] Flatten flatten;
                [Graph]
                Tensor Forward([Shape(4, 4, 2)] Tensor a, [Shape(4, 5, 2)] Tensor b)
                {
                    var bad = {|MG0011:Ops.Concatenate(a, b)|};
                    var worse = Ops.Concatenate({|MG0011:4|}, a, a);
                    return flatten.Apply(Ops.Concatenate(2, a, b));
                }
            }
            """);
    }

    [Fact]
    public void MG0011_shared_layer_applied_to_another_shape()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(8)] Dense shared;
                [Dense(16)] Dense widen;
                [Graph]
                Tensor Forward([Shape(4)] Tensor x)
                {
                    var a = shared.Apply(x);
                    var b = widen.Apply(a);
                    return {|MG0011:shared.Apply(b)|};
                }
            }
            """);
    }

    [Fact]
    public void MG0012_unsupported_statements_and_expressions()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(4)] Dense d;
                [Graph]
                Tensor Forward([Shape(4)] Tensor x)
                {
                    {|MG0012:if (x == null) return x;|}
                    var h = {|MG0012:Helper(x)|};
                    var k = {|MG0012:Ops.Add(x)|};
                    return d.Apply(x);
                }
                static Tensor Helper(Tensor t) => t;
            }
            """);
    }

    [Fact]
    public void MG0013_and_MG0014_unused_layer_and_input_are_warnings_and_the_model_still_generates()
    {
        const string source = """
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(4)] Dense used;
                [Dense(4)] Dense {|MG0013:spare|};
                [Graph]
                Tensor Forward([Shape(4)] Tensor x)
                {
                    var ignored = spare.Apply(x); // computed but never reaches the output
                    return used.Apply(x);
                }
            }
            """;
        AnalyzerHarness.Verify(source);
        var diagnostic = Assert.Single(AnalyzerHarness.Analyze(source.Replace("{|MG0013:", "").Replace("|}", "")));
        Assert.Equal(DiagnosticSeverity.Warning, diagnostic.Severity);
        Assert.Contains(AnalyzerHarness.Generate(source.Replace("{|MG0013:", "").Replace("|}", "")), file => file.Contains("partial class Model"));
    }

    [Fact]
    public void MG0012_sub_model_applying_a_layer_the_model_does_not_use()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(4)] Dense used;
                [Dense(4)] Dense {|MG0013:spare|};
                [Graph] Tensor Forward([Shape(4)] Tensor x) => used.Apply(x);
                [Graph] Tensor Other([Shape(4)] Tensor x) => {|MG0012:spare.Apply(x)|};
            }
            """);
    }

    [Fact]
    public void MG0016_a_graph_that_calls_itself_is_a_cycle()
    {
        // Reported once, at the call that closes the cycle (Forward -> Loop -> Forward).
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(4)] Dense d;
                [Graph] Tensor Forward([Shape(4)] Tensor x) => d.Apply(Loop(x));
                [Graph] Tensor Loop([Shape(4)] Tensor x) => d.Apply({|MG0016:Forward(x)|});
            }
            """);
    }

    [Fact]
    public void MG0011_calling_a_graph_with_a_tensor_of_another_shape()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(8)] Dense wide;
                [Dense(4)] Dense d;
                [Graph] Tensor Forward([Shape(4)] Tensor x) => Head({|MG0011:wide.Apply(x)|});
                [Graph] Tensor Head([Shape(4)] Tensor h) => d.Apply(h);
            }
            """);
    }

    [Fact]
    public void MG0014_graph_input_never_used()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(4)] Dense d;
                [Graph] Tensor Forward([Shape(4)] Tensor x, [Shape(3)] Tensor {|MG0014:unused|}) => d.Apply(x);
            }
            """);
    }

    [Fact]
    public void MG0019_twin_layers_on_the_two_sides_of_a_merge()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [Dense(8, Activation.Relu)] Dense left;
                [Dense(8, Activation.Relu)] Dense {|MG0019:right|};
                [Dense(8, Activation.Tanh)] Dense other;
                [Graph]
                Tensor Forward([Shape(4)] Tensor a, [Shape(4)] Tensor b) =>
                    Ops.Add(Ops.Subtract(left.Apply(a), right.Apply(b)), other.Apply(a)); // 'other' differs: no twin
            }
            """);
    }

    [Fact]
    public void MG0015_functional_model_without_graph_method()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class {|MG0015:Model|} { [Dense(4)] Dense d; }
            """);
    }

    [Fact]
    public void MG0004_input_field_in_a_functional_model()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Model
            {
                [{|MG0004:Input(4)|}] Input x;
                [Dense(4)] Dense d;
                [Graph] Tensor Forward([Shape(4)] Tensor input) => d.Apply(input);
            }
            """);
    }

    [Fact]
    public void Valid_functional_models_raise_nothing_even_with_their_generated_code()
    {
        const string source = """
            using ModelGen;
            [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
            partial class ResidualMlp
            {
                [Dense(64, Activation.Relu)] Dense d1;
                [Dense(64)] Dense d2;
                [Dropout(0.1)] Dropout drop;
                [Dense(10, Activation.Softmax)] Dense head;
                [Graph]
                Tensor Forward([Shape(64)] Tensor x)
                {
                    var h = d2.Apply(d1.Apply(x));
                    h = drop.Apply(h);
                    var merged = Ops.Relu(Ops.Add(h, x));
                    return head.Apply(Ops.Concatenate(merged, Ops.Maximum(h, x)));
                }
            }
            """;
        Assert.Empty(AnalyzerHarness.Analyze(source));
        Assert.Empty(AnalyzerHarness.Analyze(source, withGeneratedCode: true));
    }
}

public class LossDiagnosticTests
{
    [Theory]
    [InlineData("Loss.CategoricalCrossentropy", "Activation.Sigmoid", 3)]
    [InlineData("Loss.SparseCategoricalCrossentropy", "Activation.Linear", 3)]
    [InlineData("Loss.BinaryCrossentropy", "Activation.Softmax", 3)]
    [InlineData("Loss.BinaryCrossentropy", "Activation.Relu", 1)]
    public void MG0017_loss_that_does_not_fit_its_output_is_a_warning(string loss, string activation, int units)
    {
        var diagnostic = Assert.Single(AnalyzerHarness.Analyze($$"""
            using ModelGen;
            [Sequential(Loss = {{loss}})] partial class Model { [Input(4)] Input x; [Dense({{units}}, {{activation}})] Dense d; }
            """));
        Assert.Equal("MG0017", diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Warning, diagnostic.Severity);
    }

    [Theory]
    [InlineData("Loss.CategoricalCrossentropy", "Activation.Softmax", 3)]
    [InlineData("Loss.SparseCategoricalCrossentropy", "Activation.Softmax", 3)]
    [InlineData("Loss.BinaryCrossentropy", "Activation.Sigmoid", 3)]
    [InlineData("Loss.BinaryCrossentropy", "Activation.Softmax", 1)]
    [InlineData("Loss.MeanSquaredError", "Activation.Linear", 1)]
    public void Fitting_losses_raise_nothing(string loss, string activation, int units)
    {
        Assert.Empty(AnalyzerHarness.Analyze($$"""
            using ModelGen;
            [Sequential(Loss = {{loss}})] partial class Model { [Input(4)] Input x; [Dense({{units}}, {{activation}})] Dense d; [Dropout(0.1)] Dropout p; }
            """));
    }

    [Fact]
    public void MG0017_names_the_output_of_a_multi_output_model()
    {
        var diagnostic = Assert.Single(AnalyzerHarness.Analyze("""
            using ModelGen;
            [Functional(Loss = Loss.MeanSquaredError)] partial class Model
            {
                [Dense(3)] Dense logits;
                [Dense(1)] Dense value;
                [Graph]
                [OutputLoss("logits", Loss.SparseCategoricalCrossentropy)]
                (Tensor, Tensor) Forward([Shape(4)] Tensor x) => (logits.Apply(x), value.Apply(x));
            }
            """));
        Assert.Contains("Output 'logits' ends in linear", diagnostic.GetMessage());
    }
}
