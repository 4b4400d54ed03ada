using Microsoft.CodeAnalysis;

namespace ModelGen.Analyzers.Tests;

/// <summary>One test per diagnostic: its id and its exact span. Severity and message are checked where they carry the point.</summary>
public class DiagnosticTests
{
    [Fact]
    public void MG0001_class_not_partial()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] class {|MG0001:Model|} { [Input(4)] Input x; [Dense(2)] Dense d; }
            """);
    }

    [Fact]
    public void MG0001_containing_type_not_partial()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            class {|MG0001:Outer|} { [Sequential] partial class Model { [Input(4)] Input x; [Dense(2)] Dense d; } }
            """);
    }

    [Fact]
    public void MG0002_sequential_without_input_shape()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class {|MG0002:Model|} { [Dense(8)] Dense d; [Dense(2)] Dense e; }
            """);
        var diagnostic = Assert.Single(AnalyzerHarness.Analyze("using ModelGen; [Sequential] partial class Model { [Dense(8)] Dense d; }"));
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        Assert.Contains("has not yet been built", diagnostic.GetMessage());
    }

    [Fact]
    public void MG0003_invalid_layer_configuration_points_at_the_argument()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Model
            {
                [Input({|MG0003:0|})] Input x;
                [Dense({|MG0003:0|}, Activation.Relu)] Dense d;
                [Dropout({|MG0003:1.5|})] Dropout p;
                [Dense(2, {|MG0003:(Activation)99|})] Dense e;
            }
            """);
    }

    [Fact]
    public void MG0003_invalid_loss()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential({|MG0003:Loss = (Loss)42|})] partial class Model { [Input(4)] Input x; [Dense(2)] Dense d; }
            """);
    }

    [Fact]
    public void MG0004_unsupported_members()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Model
            {
                [Input(4)] Input x;
                int {|MG0004:counter|};
                [Dense(2)] [{|MG0004:Dropout(0.1)|}] Dense d;
                public {|MG0004:Model|}() { }
                static int shared;       // static fields are fine
                const int Units = 2;     // so are constants
                public int Helper() => 1; // and methods
            }
            """);
    }

    [Fact]
    public void MG0005_field_type_does_not_match_its_attribute()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Model { [Input(4)] Input x; [Dense(2)] {|MG0005:Dropout|} d; }
            """);
    }

    [Fact]
    public void MG0006_input_not_first_and_MG0018_several_inputs()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class First { [Dense(2)] Dense d; [Input(4)] Input {|MG0006:x|}; }
            [Sequential] partial class {|MG0018:Twice|} { [Input(4)] Input x; [Dense(2)] Dense d; [Input(3)] Input y; }
            """);
    }

    [Fact]
    public void MG0007_dense_fed_an_image()
    {
        var diagnostics = AnalyzerHarness.Analyze("using ModelGen; [Sequential] partial class Model { [Input(28, 28, 1)] Input image; [Dense(10)] Dense d; }");
        var diagnostic = Assert.Single(diagnostics);
        Assert.Equal("MG0007", diagnostic.Id);
        Assert.Contains("(None, 28, 28, 1)", diagnostic.GetMessage());
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Model { [Input(28, 28, 1)] Input image; [Dense(10)] Dense {|MG0007:d|}; }
            """);
    }

    [Fact]
    public void MG0008_input_without_layers()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class {|MG0008:Model|} { [Input(4)] Input x; }
            """);
    }

    [Fact]
    public void MG0009_generic_static_or_abstract_model()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class {|MG0009:Generic|}<T> { [Input(4)] Input x; [Dense(2)] Dense d; }
            [Sequential] abstract partial class {|MG0009:Base|} { [Input(4)] Input x; [Dense(2)] Dense d; }
            """);
    }

    [Fact]
    public void Valid_models_raise_nothing_even_with_their_generated_code_present()
    {
        const string source = """
            using ModelGen;
            namespace App;
            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class MnistClassifier
            {
                [Input(784)] Input image;
                [Dense(256, Activation.Relu)] Dense hidden1;
                [Dropout(0.3)] Dropout drop1;
                [Dense(128, Activation.Relu)] Dense hidden2;
                [Dropout(0.3)] Dropout drop2;
                [Dense(10, Activation.Softmax)] Dense predictions;
            }
            public partial class Outer
            {
                [Sequential(Loss = Loss.BinaryCrossentropy)]
                internal partial class Inner { [Input(3)] Input x; [Dense(4, UseBias = false)] Dense p; [Activation(Activation.Tanh)] ActivationLayer a; [Dense(1, Activation.Sigmoid)] Dense y; }
            }
            """;
        Assert.Empty(AnalyzerHarness.Analyze(source));
        Assert.Empty(AnalyzerHarness.Analyze(source, withGeneratedCode: true));
    }

    [Fact]
    public void Analyzer_never_throws_on_broken_code()
    {
        foreach (var source in new[]
        {
            "using ModelGen; [Sequential] partial class A { [Input(] Input x; }",
            "using ModelGen; [Sequential] partial class B { [Dense(\"x\")] Dense d; [Input(4)] Missing i; }",
            "using ModelGen; [Sequential(Loss = )] partial class C : { }",
            "using ModelGen; [Sequential] partial record D { [Input(4)] Input x; }",
        })
        {
            // An analyzer exception is reported as diagnostic AD0001.
            Assert.DoesNotContain(AnalyzerHarness.Analyze(source), d => d.Id == "AD0001");
        }
    }

    [Fact]
    public void Every_diagnostic_has_a_help_link_to_its_readme_entry()
    {
        var analyzer = new ModelAnalyzer();
        var readme = File.ReadAllText(Path.Combine(FindRoot(), "README.md"));
        foreach (var descriptor in analyzer.SupportedDiagnostics)
        {
            Assert.EndsWith("#" + descriptor.Id.ToLowerInvariant(), descriptor.HelpLinkUri);
            Assert.Contains($"| {descriptor.Id} |", readme);
        }
    }

    private static string FindRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(directory.FullName, "ModelGen.sln"))) directory = directory.Parent!;
        return directory.FullName;
    }
}

public class ConvolutionDiagnosticTests
{
    [Fact]
    public void Convolution_diagnostics_point_at_the_layer_or_argument()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Flat { [Input(64)] Input x; [Conv2D(8, 3)] Conv2D {|MG0007:conv|}; [Flatten] Flatten f; [Dense(2)] Dense d; }
            [Sequential] partial class Small { [Input(2, 2, 1)] Input x; [Conv2D(8, 3)] Conv2D {|MG0007:conv|}; [Flatten] Flatten f; [Dense(2)] Dense d; }
            [Sequential] partial class Bad { [Input(8, 8, 1)] Input x; [Conv2D({|MG0003:0|}, {|MG0003:-1|})] Conv2D conv; [MaxPooling2D({|MG0003:0|})] MaxPooling2D pool; [Flatten] Flatten f; [Dense(2)] Dense d; }
            """);
    }

    [Fact]
    public void Same_padding_keeps_a_small_image_valid()
    {
        Assert.Empty(AnalyzerHarness.Analyze("""
            using ModelGen;
            [Sequential] partial class Small { [Input(2, 2, 1)] Input x; [Conv2D(8, 3, Padding = Padding.Same)] Conv2D conv; [MaxPooling2D(2, Padding = Padding.Same)] MaxPooling2D pool; [Flatten] Flatten f; [Dense(2)] Dense d; }
            """));
    }
}

public class NormalizationDiagnosticTests
{
    [Fact]
    public void Batch_normalization_options_are_checked_at_their_argument()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Bad
            {
                [Input(4)] Input x;
                [BatchNormalization({|MG0003:Momentum = 1.5|}, {|MG0003:Epsilon = 0|})] BatchNormalization norm;
                [Dense(2)] Dense d;
            }
            """);
    }

    [Fact]
    public void A_shared_batch_normalization_needs_one_channel_count()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class Shared
            {
                [Dense(4)] Dense a;
                [Dense(3)] Dense b;
                [BatchNormalization] BatchNormalization norm;
                [Graph] Tensor Forward([Shape(5)] Tensor x) => Ops.Concatenate(norm.Apply(a.Apply(x)), {|MG0011:norm.Apply(b.Apply(x))|});
            }
            """);
    }

    [Fact]
    public void Frozen_layers_and_blocks_are_valid_models()
    {
        Assert.Empty(AnalyzerHarness.Analyze("""
            using ModelGen;
            [Functional] partial class Transfer
            {
                [Conv2D(4, 3, Trainable = false)] Conv2D conv;
                [BatchNormalization] BatchNormalization norm;
                [Flatten] Flatten flat;
                [Dense(2)] Dense head;
                [Graph] Tensor Forward([Shape(5, 5, 1)] Tensor x) => head.Apply(flat.Apply(Backbone(x)));
                [Graph(Trainable = false)] Tensor Backbone([Shape(5, 5, 1)] Tensor x) => norm.Apply(conv.Apply(x));
            }
            """));
    }
}

public class ReshapingDiagnosticTests
{
    [Fact]
    public void Reshape_padding_and_upsampling_problems_point_at_the_layer_or_argument()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Sizes { [Input(4, 4, 2)] Input x; [Reshape(5, 6)] Reshape {|MG0007:r|}; [Reshape(-1)] Reshape flat; [Dense(2)] Dense d; }
            [Sequential] partial class Inferred { [Input(10)] Input x; [Reshape(-1, 3)] Reshape {|MG0007:r|}; [Reshape(-1)] Reshape flat; [Dense(2)] Dense d; }
            [Sequential] partial class Dims { [Input(12)] Input x; [Reshape({|MG0003:0|}, 3)] Reshape a; [Reshape(-1)] Reshape b; [Reshape(-1, {|MG0003:-1|})] Reshape c; [Dense(2)] Dense d; }
            [Sequential] partial class Flat { [Input(12)] Input x; [ZeroPadding2D] ZeroPadding2D {|MG0007:pad|}; [UpSampling2D] UpSampling2D {|MG0007:up|}; [Dense(2)] Dense d; }
            [Sequential] partial class Negative { [Input(4, 4, 1)] Input x; [ZeroPadding2D({|MG0003:-1|}, 2)] ZeroPadding2D pad; [UpSampling2D(2, {|MG0003:0|})] UpSampling2D up; [Flatten] Flatten f; [Dense(2)] Dense d; }
            """);
    }
}

public class DilationDiagnosticTests
{
    [Fact]
    public void Dilation_is_checked_and_widens_the_window()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Bad { [Input(9, 9, 1)] Input x; [Conv2D(2, 3, {|MG0003:DilationRate = 0|})] Conv2D a; [Conv2D(2, 3, Strides = 2, {|MG0003:DilationRate = 2|})] Conv2D b; [Flatten] Flatten f; [Dense(2)] Dense d; }
            [Sequential] partial class Span { [Input(4, 9, 1)] Input x; [Conv2D(2, 3, DilationRate = 2)] Conv2D {|MG0007:c|}; [Flatten] Flatten f; [Dense(2)] Dense d; }
            [Sequential] partial class Wide { [Input(4, 4, 1)] Input x; [Conv2D(2, 1, {|MG0003:0|})] Conv2D c; [Flatten] Flatten f; [Dense(2)] Dense d; }
            """);
    }
}

public class SequenceDiagnosticTests
{
    [Fact]
    public void A_layer_that_cannot_carry_a_mask_is_warned_where_it_drops_it()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)] partial class Flattened
            {
                [Input(8)] Input tokens;
                [Embedding(100, 4, MaskZero = true)] Embedding embed;
                [Dense(4)] Dense perStep;
                [Flatten] Flatten {|MG0020:flat|};
                [Dense(2, Activation.Softmax)] Dense head;
            }
            [Functional] partial class Dotted
            {
                [Embedding(100, 3, MaskZero = true)] Embedding embed;
                [LSTM(3, ReturnSequences = true)] LSTM lstm;
                [Flatten] Flatten flat;
                [Graph] Tensor Forward([Shape(8)] Tensor a, [Shape(8, 3)] Tensor b) => Ops.Dot({|MG0020:flat.Apply(Ops.Add(lstm.Apply(embed.Apply(a)), b))|}, flat.Apply(b));
            }
            """);
    }

    [Fact]
    public void MG0021_a_name_the_generated_code_declares_itself()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Model
            {
                [Input(4)] Input {|MG0021:batch|};
                [Dense(8)] Dense {|MG0021:parameters|};
                [Dropout(0.5)] Dropout {|MG0021:training|};
                [Dense(8)] Dense {|MG0021:@class|};   // written bare in the generated code
                [Dense(8)] Dense {|MG0021:Gemm|};     // would hide ModelGen.Kernels.Gemm from it
                [Dense(2)] Dense rows; // the generated code names its parts' rows so too, but never beside a layer's
            }
            """);
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional(Loss = Loss.MeanSquaredError)] partial class Model
            {
                [Dense(1)] Dense head;
                [Dense(1)] Dense tail;
                [Graph] (Tensor {|MG0021:loss|}, Tensor second) Forward([Shape(4)] Tensor {|MG0021:optimizer|}) => (head.Apply(optimizer), tail.Apply(optimizer));
                [Graph] Tensor Encode([Shape(4)] Tensor {|MG0021:firstRow|}) => head.Apply(firstRow);
            }
            """);
        var diagnostic = AnalyzerHarness.Analyze("using ModelGen; [Sequential] partial class Model { [Input(4)] Input batch; [Dense(2)] Dense d; }").Single();
        Assert.Equal("'batch' cannot name this input of 'Model': the generated code declares it itself (the batch size of its methods); rename it (a code fix does)", diagnostic.GetMessage());
        Assert.Empty(AnalyzerHarness.Generate("using ModelGen; [Sequential] partial class Model { [Input(4)] Input batch; [Dense(2)] Dense d; }"));
        Assert.Equal("'Gemm' cannot name this layer of 'Model': it would hide ModelGen's type 'ModelGen.Kernels.Gemm' from the generated code; rename it (a code fix does)",
            AnalyzerHarness.Analyze("using ModelGen; [Sequential] partial class Model { [Input(4)] Input x; [Dense(2)] Dense Gemm; }").Single().GetMessage());
    }

    /// <summary>
    /// The class's other members clash only with the generated members and the runtime's types: a property, a nested type,
    /// a static field, a constant or an event of such a name is reported, a method too where the generated member of its
    /// name is no method; an overload of a generated method, or a property named as a generated method's parameter, compiles.
    /// </summary>
    [Fact]
    public async Task MG0021_a_member_beside_the_layers_named_as_a_generated_member()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Model
            {
                [Input(4)] Input x;
                [Dense(2)] Dense d;
                public string {|MG0021:Name|} => "mine";
                static int {|MG0021:parameters|};
                const string {|MG0021:SummaryText|} = "";
                public event System.Action? {|MG0021:Inputs|};
                int {|MG0021:Layers|}() => 0;     // a method named as a generated property
                int {|MG0021:Gemm|}() => 0;       // would hide ModelGen.Kernels.Gemm
                int {|MG0021:Predict|} => 0;      // a property named as a generated method
                class {|MG0021:Layer|} { }        // would hide ModelGen.Layer
            }
            """);
        // A method of a generated method's name and parameters would be declared twice; its return type does not tell them apart.
        AnalyzerHarness.Verify("""
            using System;
            using ModelGen;
            using ModelGen.Training;
            [Functional(Loss = Loss.MeanSquaredError)] partial class Model
            {
                [Dense(2)] Dense left;
                [Dense(1)] Dense right;
                [Graph] (Tensor l, Tensor r) Forward([Shape(4)] Tensor x) => (left.Apply(x), right.Apply(x));
                [Graph] Tensor Encode([Shape(4)] Tensor x) => left.Apply(x);
                public string {|MG0021:Summary|}() => "mine";
                public object {|MG0021:ForInference|}() => this;
                public void {|MG0021:Predict|}(ReadOnlySpan<float> inputs, Span<float> outputs) { }
                public void {|MG0021:Predict|}(ReadOnlySpan<float> x, Span<float> l, Span<float> r) { }      // each output in its own buffer
                public float {|MG0021:TrainStep|}(ReadOnlySpan<float> x, ReadOnlySpan<float> l, ReadOnlySpan<float> r, Optimizer o) => 0;
                public void {|MG0021:Encode|}(ReadOnlySpan<float> x, Span<float> encoded) { }           // the sub-model's inference
                public void Encode(ReadOnlySpan<float> x, Span<float> encoded, int rows) { }             // an overload of it
                public void Predict(in ReadOnlySpan<float> inputs, Span<float> outputs) { }              // by reference: an overload
                public string Summary<T>() => "";                                                        // generic: an overload
                public int {|MG0021:EncodeParameterCount|} => 3;                                         // the sub-model's constant
            }
            """);
        Assert.Equal("'Summary' cannot name this method of 'Model': the generated code declares Summary() itself; rename it (a code fix does)",
            AnalyzerHarness.Analyze("using ModelGen; [Sequential] partial class Model { [Input(4)] Input x; [Dense(2)] Dense d; public string Summary() => \"mine\"; }").Single().GetMessage());
        Assert.Empty(AnalyzerHarness.Generate("using ModelGen; [Sequential] partial class Model { [Input(4)] Input x; [Dense(2)] Dense d; public string Summary() => \"mine\"; }"));
        Assert.Equal("'Name' cannot name this property of 'Model': the generated code declares it itself (a member of every model); rename it (a code fix does)",
            AnalyzerHarness.Analyze("using ModelGen; [Sequential] partial class Model { [Input(4)] Input x; [Dense(2)] Dense d; public string Name => \"mine\"; }").Single().GetMessage());
        var (_, generatorDiagnostics, models) = await AnalyzerHarness.GenerateEach(new[] { """
            [Sequential(Loss = Loss.MeanSquaredError)] partial class Free
            {
                [Input(4)] Input x;
                [Dense(2)] Dense d;
                int batch => 3;                                        // the generated methods' parameter hides it there
                public float[] Predict(float[] features) => new float[2]; // an overload of the generated Predict
                public string Summary(int width) => "";
                public int XKernel => 1;                                 // no layer is named x
            }
            """ }, new[] { "Free" });
        Assert.Empty(generatorDiagnostics);
        Assert.Empty(models[0].ErrorIds);
        Assert.True(models[0].Generated);
        Assert.Null(models[0].FirstCompileError);
    }

    [Fact]
    public void A_recurrent_layer_consumes_the_mask_and_nothing_is_reported()
    {
        Assert.Empty(AnalyzerHarness.Analyze("""
            using ModelGen;
            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)] partial class Text
            {
                [Input(8)] Input tokens;
                [Embedding(100, 4, MaskZero = true)] Embedding embed;
                [Dropout(0.1)] Dropout dropout;
                [LSTM(3, ReturnSequences = true, Bidirectional = true)] LSTM lstm;
                [GRU(3)] GRU gru;
                [Dense(2, Activation.Softmax)] Dense head;
            }
            """));
    }

    [Fact]
    public void Global_average_pooling_over_steps_consumes_the_mask()
    {
        Assert.Empty(AnalyzerHarness.Analyze("""
            using ModelGen;
            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)] partial class Bag
            {
                [Input(8)] Input tokens;
                [Embedding(100, 4, MaskZero = true)] Embedding embed;
                [GlobalAveragePooling1D] GlobalAveragePooling1D mean;
                [Dense(2, Activation.Softmax)] Dense head;
            }
            """));
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Image { [Input(4, 4, 2)] Input x; [GlobalAveragePooling1D] GlobalAveragePooling1D {|MG0007:mean|}; [Dense(2)] Dense d; }
            """);
    }

    [Fact]
    public void Sequence_layers_check_their_input_and_configuration()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Flat { [Input(8)] Input x; [LSTM(3)] LSTM {|MG0007:lstm|}; [Dense(2)] Dense d; }
            [Sequential] partial class Image { [Input(4, 4, 1)] Input x; [Embedding(5, 2)] Embedding {|MG0007:embed|}; [LSTM(3)] LSTM lstm; [Dense(2)] Dense d; }
            [Sequential] partial class Zero { [Input(8, 2)] Input x; [GRU({|MG0003:0|})] GRU gru; [Dense(2)] Dense d; }
            [Functional] partial class Computed
            {
                [Dense(8)] Dense ids;
                [Embedding(5, 2)] Embedding embed;
                [LSTM(3)] LSTM lstm;
                [Graph] Tensor Forward([Shape(4)] Tensor x) => lstm.Apply({|MG0007:embed.Apply(ids.Apply(x))|});
            }
            """);
    }
}

public class AttentionDiagnosticTests
{
    [Fact]
    public void Attention_checks_its_operands_shapes_and_wiring()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Chain { [Input(4, 3)] Input x; [MultiHeadAttention(2, 4)] MultiHeadAttention {|MG0003:attention|}; [Flatten] Flatten f; [Dense(2)] Dense d; }
            [Functional] partial class Shapes
            {
                [MultiHeadAttention(2, 4)] MultiHeadAttention attention;
                [Flatten] Flatten flat;
                [Graph] Tensor Forward([Shape(4, 3)] Tensor q, [Shape(6, 5)] Tensor v, [Shape(5, 2)] Tensor k, [Shape(4, 5)] Tensor m) =>
                    Ops.Concatenate(flat.Apply({|MG0011:attention.Apply(q, v, k)|}), flat.Apply({|MG0011:attention.Apply(q, v, attentionMask: m)|}));
            }
            [Functional] partial class Flat
            {
                [MultiHeadAttention({|MG0003:0|}, 4)] MultiHeadAttention attention;
                [Graph] Tensor Forward([Shape(12)] Tensor q) => {|MG0011:attention.Apply(q, q)|};
            }
            [Functional] partial class OneOperand
            {
                [MultiHeadAttention(1, 4)] MultiHeadAttention attention;
                [Graph] Tensor Forward([Shape(4, 3)] Tensor q) => {|MG0012:attention.Apply(q)|};
            }
            """);
    }
}

public class DecoderDiagnosticTests
{
    [Fact]
    public void Depthwise_and_transposed_convolutions_check_their_configuration_and_input()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Sequential] partial class Bad { [Input(4, 4, 2)] Input x; [DepthwiseConv2D({|MG0003:0|}, {|MG0003:DepthMultiplier = 0|})] DepthwiseConv2D d; [Conv2DTranspose({|MG0003:0|}, 2)] Conv2DTranspose t; [Flatten] Flatten f; [Dense(2)] Dense o; }
            [Sequential] partial class Flat { [Input(16)] Input x; [Conv2DTranspose(2, 2)] Conv2DTranspose {|MG0007:t|}; [Flatten] Flatten f; [Dense(2)] Dense o; }
            """);
        Assert.Empty(AnalyzerHarness.Analyze("""
            using ModelGen;
            [Sequential] partial class Decoder { [Input(3, 3, 8)] Input x; [Conv2DTranspose(4, 3, Strides = 2, Padding = Padding.Same)] Conv2DTranspose up; [DepthwiseConv2D(3)] DepthwiseConv2D d; [Flatten] Flatten f; [Dense(2)] Dense o; }
            """));
    }
}

public class RecurrentStateDiagnosticTests
{
    [Fact]
    public void Returned_and_initial_states_are_checked()
    {
        AnalyzerHarness.Verify("""
            using ModelGen;
            [Functional] partial class NotDeconstructed
            {
                [LSTM(3)] LSTM lstm;
                [Dense(2)] Dense d;
                [Graph] Tensor Forward([Shape(5, 2)] Tensor x) => d.Apply({|MG0012:lstm.ApplyWithState(x)|});
            }
            [Functional] partial class WrongState
            {
                [GRU(3)] GRU gru;
                [Graph] Tensor Forward([Shape(5, 2)] Tensor x, [Shape(4)] Tensor h) => gru.Apply(x, {|MG0011:h|});
            }
            [Functional] partial class TooMany
            {
                [GRU(3)] GRU gru;
                [Graph] Tensor Forward([Shape(5, 2)] Tensor x)
                {
                    {|MG0012:var (a, b, c)|} = gru.ApplyWithState(x);
                    return a;
                }
            }
            [Functional] partial class Both
            {
                [LSTM(3, Bidirectional = true)] LSTM lstm;
                [Graph] Tensor Forward([Shape(5, 2)] Tensor x)
                {
                    var (a, h, c) = {|MG0012:lstm.ApplyWithState(x)|};
                    return a;
                }
            }
            """);
    }
}

public class BrokenCodeTests
{
    /// <summary>Misused layers and graph forms: the analyzer reports what it can and never fails (a failure would be AD0001).</summary>
    [Theory]
    [InlineData("[Sequential] partial class A { [Input(4, 4, 1)] Input i; [ZeroPadding2D(1, 2, 3)] ZeroPadding2D z; [Flatten] Flatten f; [Dense(2)] Dense d; }")]
    [InlineData("[Sequential] partial class A { [Input(12)] Input i; [Reshape()] Reshape r; [Dense(2)] Dense d; }")]
    [InlineData("[Sequential] partial class A { [Input(6)] Input i; [Embedding(0, 0)] Embedding e; [LSTM(0)] LSTM l; [Dense(2)] Dense d; }")]
    [InlineData("[Functional] partial class A { [LSTM(3)] LSTM l; [Graph] Tensor F([Shape(5, 2)] Tensor x) { var (a, b) = l.ApplyWithState(); return a; } }")]
    [InlineData("[Functional] partial class A { [LSTM(3)] LSTM l; [Graph] Tensor F([Shape(5, 2)] Tensor x) { (var a, var b, var c, var e) = l.ApplyWithState(x); return a; } }")]
    [InlineData("[Functional] partial class A { [MultiHeadAttention(1, 2)] MultiHeadAttention a; [Graph] Tensor F([Shape(5, 2)] Tensor x) => a.Apply(); }")]
    [InlineData("[Functional] partial class A { [MultiHeadAttention(1, 2)] MultiHeadAttention a; [Graph] Tensor F([Shape(5, 2)] Tensor x) => a.Apply(x, x, attentionMask: x); }")]
    [InlineData("[Functional] partial class A { [GRU(3)] GRU g; [Graph] Tensor F([Shape(5, 2)] Tensor x) { var (o, s) = g.ApplyWithState(x, x); return o; } }")]
    [InlineData("[Functional] partial class A { [BatchNormalization(Momentum = 2)] BatchNormalization n; [Graph(Trainable = false)] Tensor F([Shape(5)] Tensor x) => n.Apply(x); }")]
    public void The_analyzer_never_fails_on_broken_models(string model)
    {
        var diagnostics = AnalyzerHarness.Analyze("using ModelGen;\n" + model);
        Assert.DoesNotContain(diagnostics, d => d.Id == "AD0001");
        Assert.Contains(diagnostics, d => d.Id.StartsWith("MG", StringComparison.Ordinal) && d.Severity == DiagnosticSeverity.Error);
    }
}
