using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using ModelGen.Generator;
using ModelGen.Testing;

namespace ModelGen.Generator.Tests;

public class GeneratorTests
{
    internal const string Mnist = """
        using ModelGen;

        namespace Samples.Mnist;

        [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class MnistClassifier
        {
            [Input(784)]                    Input image;
            [Dense(256, Activation.Relu)]   Dense hidden1;
            [Dropout(0.3)]                  Dropout drop1;
            [Dense(128, Activation.Relu)]   Dense hidden2;
            [Dropout(0.3)]                  Dropout drop2;
            [Dense(10, Activation.Softmax)] Dense predictions;
        }
        """;

    [Fact]
    public void Mnist_classifier_snapshot()
    {
        var (output, result) = GeneratorHarness.Run(Mnist);
        var file = Assert.Single(result.GeneratedTrees);
        Assert.Equal("Samples.Mnist.MnistClassifier.g.cs", Path.GetFileName(file.FilePath));
        Assert.Empty(output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning));
        GeneratorHarness.MatchesSnapshot("MnistClassifier", file.ToString());
    }

    /// <summary>Dense layers in a row, some paired (one through a dropout), one read twice by a skip connection.</summary>
    internal const string Pairs = """
        using ModelGen;

        [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class Pairs
        {
            [Dense(300, Activation.Relu)]   Dense a;
            [Dense(200, Activation.Tanh)]   Dense b;
            [Dense(100)]                    Dense c;
            [Dense(100, Activation.Relu)]   Dense d;
            [Dropout(0.5)]                  Dropout drop;
            [Dense(100, Activation.Relu)]   Dense e;
            [Dense(100, Activation.Relu)]   Dense f;
            [Dense(10, Activation.Softmax)] Dense head;

            [Graph]
            Tensor Forward([Shape(64)] Tensor x)
            {
                var ab = b.Apply(a.Apply(x));        // a then b: a pair, b's tanh after the product
                var cd = d.Apply(c.Apply(ab));       // b's tanh cannot sit mid-product: c and d pair instead
                var ef = f.Apply(e.Apply(drop.Apply(cd)));
                return head.Apply(Ops.Add(ef, cd));  // d is read twice: d and e stay apart, e and f pair
            }
        }
        """;

    internal const string TransformerBlock = """
        using ModelGen;

        [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class Block
        {
            [Embedding(100, 32)]                      Embedding embed;
            [MultiHeadAttention(2, 16)]               MultiHeadAttention attention;
            [LayerNormalization]                      LayerNormalization attended;
            [Dense(64, Activation.Relu)]              Dense expand;
            [Dense(32)]                               Dense project;
            [LayerNormalization]                      LayerNormalization encoded;
            [GlobalAveragePooling1D]                  GlobalAveragePooling1D mean;
            [Dense(4, Activation.Softmax)]            Dense label;

            [Graph]
            Tensor Forward([Shape(16)] Tensor tokens)
            {
                var x = embed.Apply(tokens);
                var a = attended.Apply(Ops.Add(x, attention.Apply(x, x)));
                var e = encoded.Apply(Ops.Add(a, project.Apply(expand.Apply(a))));
                return label.Apply(mean.Apply(e));
            }
        }
        """;

    [Fact]
    public void A_convolution_alone_reading_an_upsampling_sums_its_gradient_into_the_upsampling_input()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod(UpsampledDecoder(channels: 4, filters: 1), "Backward");
        Assert.Contains("Convolution.Transposed(imageGradient, ImageKernel, patchGradients, widenGradient, imageWindow, 1, batch, accumulate: false, upsampledRows: 2, upsampledColumns: 3);", backward);
        Assert.Contains("then up's (UpSampling2D: each block's sum, row by row)", backward);
        Assert.DoesNotContain("UpSampling.Backward", backward);
        Assert.DoesNotContain("upGradient", code);
        Assert.Contains("Convolution.TransposedScratch(imageWindow, 1, maxBatchSize, upsampled: true)", code);

        // Read by a convolution and by an Add, the upsampling keeps its gradient and its own backward block.
        (code, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional(Loss = Loss.MeanSquaredError)]
            public partial class Skipped
            {
                [Conv2D(4, 3, Activation.Relu, Padding = Padding.Same)] Conv2D widen;
                [UpSampling2D(2)]                                       UpSampling2D up;
                [Conv2D(4, 3, Padding = Padding.Same)]                  Conv2D mix;

                [Graph]
                Tensor Forward([Shape(4, 4, 2)] Tensor code)
                {
                    var wide = up.Apply(widen.Apply(code));
                    return Ops.Add(mix.Apply(wide), wide);
                }
            }
            """, "Backward");
        Assert.Contains("UpSampling.Backward(upGradient, widenGradient,", backward);
        Assert.DoesNotContain("upsampledRows", code);
    }

    [Theory]
    [InlineData(8, 1, true)]    // one filter over eight channels: planes laid out row by row, the kernel gradient from padded samples
    [InlineData(4, 1, false)]   // over four channels the kernel gradient reads patches of the upsampled image
    [InlineData(8, 8, false)]   // eight filters: the direct route reads the upsampled image
    public void A_planar_convolution_alone_reading_an_upsampling_reads_the_upsampling_input_in_its_place(int channels, int filters, bool inPlace)
    {
        var (code, forward) = GeneratorHarness.RunAndFindMethod(UpsampledDecoder(channels, filters), "Forward");
        string arguments = ", upsampledRows: 2, upsampledColumns: 3);";
        if (inPlace)
        {
            Assert.Contains($"Convolution.Forward(widenOutput, default, ImageKernel, imageOutput, imageWindow, {filters}, batch, bias: ImageBias, keepPatches: false, " +
                "upsampledRows: 2, upsampledColumns: 3, packedKernel: packedImageKernel);", forward);
            Assert.Contains("read by image from widen, each row and pixel repeated, so never written", forward);
            Assert.DoesNotContain("UpSampling.Forward", forward);
            Assert.Contains("upOutput = buffers.Unwritten;", code);
            Assert.Contains($"Convolution.KernelGradient(widenOutput, imageGradient, ImageKernelGradient, imageWindow, {filters}, batch{arguments}", code);
            Assert.Contains("kernel (from widen, upsampled as it is read)", code);
        }
        else
        {
            Assert.Contains("UpSampling.Forward(widenOutput, upOutput, 4, 4, " + channels + ", rows: 2, columns: 3, batch);", forward);
            Assert.Contains("Convolution.Forward(upOutput,", forward);
            Assert.DoesNotContain("Convolution.KernelGradient(widenOutput", code);
        }
    }

    /// <summary>A decoder whose UpSampling2D (2 x 3 blocks) is read by one Conv2D alone: <paramref name="channels"/> upsampled, <paramref name="filters"/> out.</summary>
    private static string UpsampledDecoder(int channels, int filters) => $$"""
        using ModelGen;

        [Sequential(Loss = Loss.MeanSquaredError)]
        public partial class Decoder
        {
            [Input(4, 4, 2)]                                                  Input code;
            [Conv2D({{channels}}, 3, Activation.Relu, Padding = Padding.Same)] Conv2D widen;
            [UpSampling2D(2, 3)]                                              UpSampling2D up;
            [Conv2D({{filters}}, 3, Padding = Padding.Same)]                   Conv2D image;
        }
        """;

    [Fact]
    public void A_row_run_may_start_at_the_model_input_which_each_part_slices()
    {
        // A Sequential MLP of width 32: all its layers go row by row from the input on, 2,368 multiply-adds a row.
        var (code, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Mlp
            {
                [Input(32)]                     Input pixels;
                [Dense(32, Activation.Relu)]    Dense hidden1;
                [Dense(32, Activation.Relu)]    Dense hidden2;
                [Dense(10, Activation.Softmax)] Dense output;
            }
            """, "Forward");
        Assert.Contains("RowParts.Run(this, pixels, batch, multiplyAddsPerRow: 2368, kernelFloats: 2368, training, static (model, pixels, first, rows) => model.ForwardHidden1ToOutput(pixels, first, rows));", forward);
        var run = GeneratorHarness.FindMethod(code, "ForwardHidden1ToOutput");
        Assert.Contains("private void ForwardHidden1ToOutput(ReadOnlySpan<float> pixels, int first, int rows)", run);
        Assert.Contains("pixels = pixels.Slice(first * 32, rows * 32);", run);
        Assert.Contains("Gemm.MultiplyTwice(pixels, Hidden1Kernel, hidden1Output, Hidden2Kernel, hidden2Output, rows, 32, 32, 32,", run);
        Assert.Contains("Activations.Forward(Activation.Softmax, outputOutput, rows, 10);", run);

        // An input named as one of the run's own parameters stays out of a run: the model still compiles.
        (_, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Named
            {
                [Input(32)]                     Input rows;
                [Dense(32, Activation.Relu)]    Dense hidden1;
                [Dense(32, Activation.Relu)]    Dense hidden2;
                [Dense(10, Activation.Softmax)] Dense output;
            }
            """, "Forward");
        Assert.Contains("Gemm.MultiplyTwice(rows, Hidden1Kernel, hidden1Output, Hidden2Kernel, hidden2Output, batch, 32, 32, 32,", forward);

        // Blocks reading two model inputs: RowParts hands a part one span, so they stay out of a run.
        (_, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class TwoInputs
            {
                [Dense(64, Activation.Relu)] Dense left;
                [Dense(64, Activation.Relu)] Dense right;
                [Dense(64)]                  Dense head;

                [Graph]
                Tensor Forward([Shape(64)] Tensor a, [Shape(64)] Tensor b) => head.Apply(Ops.Add(left.Apply(a), right.Apply(b)));
            }
            """, "Forward");
        Assert.DoesNotContain("RowParts.Run(", forward);
        Assert.Contains("Gemm.Multiply(a, LeftKernel, leftOutput, batch, 64, 64,", forward);

        // Five blocks from the input on, but 90 multiply-adds a row: too few to be cut at a batch of up to 256 rows (RowParts'
        // 32,768 in a prediction), so no run.
        (_, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Small
            {
                [Input(6)]                       Input x;
                [Dense(6)]                       Dense project;
                [Activation(Activation.Tanh)]    ActivationLayer squash;
                [Dense(6)]                       Dense mix;
                [Activation(Activation.Sigmoid)] ActivationLayer gate;
                [Dense(3, Activation.Softmax)]   Dense output;
            }
            """, "Forward");
        Assert.DoesNotContain("RowParts.Run(", forward);
    }

    [Fact]
    public void An_attention_opens_a_row_run_with_its_output_projection()
    {
        var (code, forward) = GeneratorHarness.RunAndFindMethod(TransformerBlock, "Forward");
        // The heads first, whole; then one run over batch x 16 rows from the output projection (32 x 32) through the
        // feed-forward pair (32 x 64, 64 x 32): 5,120 multiply-adds a row.
        Assert.Contains("Attention.Attend(attentionWorkspace, embedOutput, embedOutput, embedOutput, default, default, default,", forward);
        Assert.DoesNotContain("Attention.Forward(", forward);
        Assert.Contains("RowParts.Run(this, batch * 16, multiplyAddsPerRow: 5120, kernelFloats: 5120, training, static (model, first, rows) => model.ForwardAttentionToEncoded(first, rows));", forward);
        Assert.True(forward.IndexOf("Attention.Attend(", StringComparison.Ordinal) < forward.IndexOf("RowParts.Run(", StringComparison.Ordinal));
        var run = GeneratorHarness.FindMethod(code, "ForwardAttentionToEncoded");
        // The part's rows of the attention's output, written by its projection from the context the heads left, then read by
        // the Add (which the normalization after it makes).
        Assert.Contains("Span<float> attentionOutput = this.attentionOutput.AsSpan(first * 32, rows * 32);", run);
        int projection = run.IndexOf("Attention.ProjectOutput(attentionWorkspace, AttentionOutputKernel, AttentionOutputBias, attentionOutput, first, rows);", StringComparison.Ordinal);
        Assert.True(projection > 0 && projection < run.IndexOf("LayerNorm.Forward(embedOutput, attentionOutput, addOutput, attendedOutput,", StringComparison.Ordinal));

        // An attention after row-by-row blocks does not join their run: its heads need all their rows first.
        (_, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Mixed
            {
                [Embedding(100, 32)]          Embedding embed;
                [Dense(32, Activation.Tanh)]  Dense mix;
                [LayerNormalization]          LayerNormalization norm;
                [MultiHeadAttention(2, 16)]   MultiHeadAttention attention;
                [Dense(32)]                   Dense head;

                [Graph]
                Tensor Forward([Shape(16)] Tensor tokens)
                {
                    var x = norm.Apply(mix.Apply(embed.Apply(tokens)));
                    return head.Apply(Ops.Add(x, attention.Apply(x, x)));
                }
            }
            """, "Forward");
        var calls = Regex.Matches(forward, @"RowParts\.Run\(.*model\.(\w+)\(first, rows\)\);").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(new[] { "ForwardMixToNorm", "ForwardAttentionToHead" }, calls);
        int attend = forward.IndexOf("Attention.Attend(", StringComparison.Ordinal);
        Assert.True(forward.IndexOf("model.ForwardMixToNorm(", StringComparison.Ordinal) < attend && attend < forward.IndexOf("model.ForwardAttentionToHead(", StringComparison.Ordinal));

        // Cross-attention with a mask: the heads read the source of its own steps and the mask, the run only the target's rows.
        (code, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Decoder
            {
                [Dense(32)]                   Dense embed;
                [MultiHeadAttention(2, 16)]   MultiHeadAttention attention;
                [LayerNormalization]          LayerNormalization norm;
                [Dense(64, Activation.Relu)]  Dense expand;
                [Dense(32)]                   Dense project;

                [Graph]
                Tensor Forward([Shape(16, 32)] Tensor target, [Shape(24, 32)] Tensor source, [Shape(16, 24)] Tensor mask)
                {
                    var q = embed.Apply(target);
                    var a = norm.Apply(Ops.Add(q, attention.Apply(q, source, attentionMask: mask)));
                    return project.Apply(expand.Apply(a));
                }
            }
            """, "Forward");
        Assert.Contains("Attention.Attend(attentionWorkspace, embedOutput, source, source, default, default, mask,", forward);
        Assert.Contains("RowParts.Run(this, batch * 16, multiplyAddsPerRow: 5120, kernelFloats: 5120, training, static (model, first, rows) => model.ForwardAttentionToProject(first, rows));", forward);
        run = GeneratorHarness.FindMethod(code, "ForwardAttentionToProject");
        Assert.Contains("Attention.ProjectOutput(attentionWorkspace, AttentionOutputKernel, AttentionOutputBias, attentionOutput, first, rows);", run);
        Assert.DoesNotContain("source", run);
    }

    [Fact]
    public void An_Add_that_only_a_LayerNormalization_reads_is_made_by_its_pass()
    {
        // A Transformer's two residual connections: each normalization makes its Add's sum as it reads it, into the Add's
        // buffer (the backward pass reads it there), in the row run's part as in the whole batch.
        var (code, _) = GeneratorHarness.RunAndFindMethod(TransformerBlock, "Forward");
        var run = GeneratorHarness.FindMethod(code, "ForwardAttentionToEncoded");
        Assert.Contains("// add: Add(embed, attention), made by attended below as it normalizes it", run);
        Assert.Contains("LayerNorm.Forward(embedOutput, attentionOutput, addOutput, attendedOutput, AttendedGamma, AttendedBeta, attendedMean, attendedInverseStd, rows, 32, 0.001f);", run);
        Assert.Contains("// add_1: Add(attended, project), made by encoded below as it normalizes it", run);
        Assert.Contains("LayerNorm.Forward(attendedOutput, projectOutput, add_1Output, encodedOutput, EncodedGamma, EncodedBeta, encodedMean, encodedInverseStd, rows, 32, 0.001f);", run);
        Assert.DoesNotContain("Merges.Combine(", code);
        Assert.Contains("LayerNorm.Backward(attendedGradient, addOutput, AttendedGamma,", GeneratorHarness.FindMethod(code, "Backward"));

        // Not where the sum is read by another block too, is a model output, has three operands, or is made outside the row
        // run its normalization is in (an Add of a dropout, which joins no run): there the Add is a block of its own.
        // (readTwice, ofOutput and ofThree in one row run with their Adds.)
        (code, var forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Residuals
            {
                [Dense(32)]                   Dense mix;
                [Dropout(0.1)]                Dropout drop;
                [LayerNormalization]          LayerNormalization readTwice;
                [LayerNormalization]          LayerNormalization ofOutput;
                [LayerNormalization]          LayerNormalization ofThree;
                [LayerNormalization]          LayerNormalization acrossRuns;
                [Dense(64, Activation.Relu)]  Dense expand;
                [Dense(32)]                   Dense project;

                [Graph]
                (Tensor, Tensor, Tensor, Tensor, Tensor) Forward([Shape(16, 32)] Tensor x)
                {
                    var m = mix.Apply(x);
                    var twice = Ops.Add(x, m);
                    var shared = readTwice.Apply(twice);
                    var output = Ops.Add(shared, m);
                    var normalizedOutput = ofOutput.Apply(output);
                    var three = ofThree.Apply(Ops.Add(x, m, shared));
                    var ff = project.Apply(expand.Apply(acrossRuns.Apply(Ops.Add(drop.Apply(m), x))));
                    return (Ops.Add(twice, three), normalizedOutput, output, ff, shared);
                }
            }
            """, "Forward");
        var normalized = Regex.Matches(code, @"LayerNorm\.Forward\((\w+), ").Select(m => m.Groups[1].Value).Order();
        Assert.Equal(new[] { "addOutput", "add_1Output", "add_2Output", "add_3Output" }.Order(), normalized);
        var added = Regex.Matches(code, @"Merges\.Combine\(MergeOperation\.Add, \w+, \w+, (\w+),").Select(m => m.Groups[1].Value).Order();
        Assert.Equal(new[] { "addOutput", "add_1Output", "add_2Output", "add_2Output", "add_3Output", "add_4Output" }.Order(), added);
        Assert.DoesNotContain("made by", code);
        // The Add of the dropout is Forward's own block; the normalization after it opens a row run.
        Assert.Contains("Merges.Combine(MergeOperation.Add, drop, x, add_3Output, batch * 512);", forward);
        Assert.Contains("model.ForwardMixToOfThree(x, first, rows)", forward);
        Assert.Contains("model.ForwardAcrossRunsToAdd_4(first, rows)", forward);
    }

    [Fact]
    public void Dense_layers_in_a_row_run_as_pairs_only_where_nothing_else_reads_between()
    {
        var (code, forward) = GeneratorHarness.RunAndFindMethod(Pairs, "Forward");
        // The Add and head go row by row over the batch's rows: one method over a range of them (a row run).
        Assert.Contains("RowParts.Run(this, batch, multiplyAddsPerRow: 1000, kernelFloats: 1000, training, static (model, first, rows) => model.ForwardAddToHead(first, rows));", forward);
        forward += GeneratorHarness.FindMethod(code, "ForwardAddToHead");

        Assert.Contains("Gemm.MultiplyTwice(x, AKernel, aOutput, BKernel, bOutput, batch, 64, 300, 200, bias1: ABias, relu1: true, bias2: BBias, packedB1: packedAKernel, packedB2: packedBKernel);", forward);
        Assert.Contains("Activations.Forward(Activation.Tanh, bOutput, batch, 200);", forward);
        Assert.Contains("Gemm.MultiplyTwice(bOutput, CKernel, cOutput, DKernel, dOutput, batch, 200, 100, 100, bias1: CBias, bias2: DBias, relu2: true, packedB1: packedCKernel, packedB2: packedDKernel);", forward);
        // d is read by the dropout and by the Add, so e pairs with f instead, reading d's dropout in either mode.
        Assert.Contains("Gemm.MultiplyTwice(drop, EKernel, eOutput, FKernel, fOutput, batch, 100, 100, 100, bias1: EBias, relu1: true, bias2: FBias, relu2: true, packedB1: packedEKernel, packedB2: packedFKernel);", forward);
        // head reads the Add, not a dense layer: a product of its own.
        Assert.Contains("Gemm.Multiply(addOutput, HeadKernel, headOutput, rows, 100, 10, bias: HeadBias, packedB: packedHeadKernel);", forward);
        Assert.Equal(3, forward.Split("Gemm.MultiplyTwice(").Length - 1);
        Assert.Equal(4, forward.Split("Gemm.Multiply").Length - 1); // the three pairs and head: no layer computed twice
    }

    [Fact]
    public void Dense_layers_in_a_row_at_every_step_pair_over_the_rows_of_batch_and_steps()
    {
        var (_, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class FeedForward
            {
                [Dense(128, Activation.Relu)] Dense expand;
                [Dropout(0.1)] Dropout drop;
                [Dense(64)] Dense project;

                [Graph]
                Tensor Forward([Shape(16, 64)] Tensor tokens) => project.Apply(drop.Apply(expand.Apply(tokens)));
            }
            """, "Forward");

        // A feed-forward block over 16 tokens: one call over batch x 16 rows at inference; in training the dropout keeps them apart.
        Assert.Contains("if (training) Gemm.Multiply(tokens, ExpandKernel, expandOutput, batch * 16, 64, 128, bias: ExpandBias, relu: true);", forward);
        Assert.Contains("else Gemm.MultiplyTwice(tokens, ExpandKernel, expandOutput, ProjectKernel, projectOutput, batch * 16, 64, 128, 64, bias1: ExpandBias, relu1: true, bias2: ProjectBias, packedB1: packedExpandKernel, packedB2: packedProjectKernel);", forward);
    }

    [Fact]
    public void A_conv2d_read_only_by_a_max_pooling_runs_with_it_in_one_call()
    {
        var (code, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class ConvolutionsPooled
            {
                [Conv2D(4, 3, Activation.Relu)] Conv2D a;
                [MaxPooling2D(2)] MaxPooling2D poolA;
                [Conv2D(4, 3, UseBias = false)] Conv2D b;
                [MaxPooling2D(2)] MaxPooling2D poolB;
                [Conv2D(4, 3, Activation.Tanh)] Conv2D squashed;
                [MaxPooling2D(2)] MaxPooling2D poolSquashed;
                [Conv2D(4, 3, Activation.Relu)] Conv2D twiceRead;
                [MaxPooling2D(2)] MaxPooling2D poolTwiceRead;
                [AveragePooling2D(2)] AveragePooling2D meanTwiceRead;
                [Conv2D(4, 3, Activation.Relu)] Conv2D returned;
                [MaxPooling2D(2)] MaxPooling2D poolReturned;

                [Graph]
                [OutputLoss("p", Loss.MeanSquaredError)]
                [OutputLoss("q", Loss.MeanSquaredError)]
                [OutputLoss("r", Loss.MeanSquaredError)]
                [OutputLoss("s", Loss.MeanSquaredError)]
                [OutputLoss("t", Loss.MeanSquaredError)]
                [OutputLoss("u", Loss.MeanSquaredError)]
                (Tensor p, Tensor q, Tensor r, Tensor s, Tensor t, Tensor u) Forward([Shape(10, 10, 2)] Tensor x)
                {
                    var read = twiceRead.Apply(x);
                    var kept = returned.Apply(x);
                    return (poolB.Apply(b.Apply(poolA.Apply(a.Apply(x)))), poolSquashed.Apply(squashed.Apply(x)),
                        poolTwiceRead.Apply(read), meanTwiceRead.Apply(read), kept, poolReturned.Apply(kept));
                }
            }
            """, "Forward");

        Assert.Contains("// a: Conv2D(4, 3x3, strides 1, valid, relu), (None, 10, 10, 2) -> (None, 8, 8, 4), computed with poolA below\n", forward);
        Assert.Contains("Convolution.ForwardMaxPooled(x, aPatches, AKernel, aOutput, poolAOutput, poolAWinners, aWindow, poolAWindow, 4, batch, bias: ABias, relu: true, training: training, packedKernel: packedAKernel);", forward);
        // No bias and no activation: nothing in the epilogue.
        Assert.Contains("Convolution.ForwardMaxPooled(poolAOutput, bPatches, BKernel, bOutput, poolBOutput, poolBWinners, bWindow, poolBWindow, 4, batch, training: training, packedKernel: packedBKernel);", forward);
        // tanh comes after the convolution's kernel; twiceRead is read by the average pooling too; returned is a model output.
        Assert.Contains("Activations.Forward(Activation.Tanh, squashedOutput", forward);
        Assert.Contains("Pooling.MaxForward(squashedOutput, poolSquashedOutput", forward);
        Assert.Contains("Pooling.MaxForward(twiceReadOutput, poolTwiceReadOutput", forward);
        Assert.Contains("Pooling.MaxForward(returnedOutput, poolReturnedOutput", forward);
        Assert.Equal(2, forward.Split("Convolution.ForwardMaxPooled(").Length - 1);
        Assert.Equal(3, forward.Split("Convolution.Forward(").Length - 1);
        // An inference copy packs each kernel where its route multiplies patches, which the runtime judges from the windows:
        // a pooled convolution's with its pooling's too (where the two run in registers, none).
        Assert.Contains("copy.packedAKernel = Convolution.PackKernel(copy.AKernel, aWindow, 4, poolAWindow);", code);
        Assert.Contains("copy.packedReturnedKernel = Convolution.PackKernel(copy.ReturnedKernel, returnedWindow, 4);", code);
        Assert.Contains("// Convolution kernels packed once for the matrix kernel, in a copy that ForInference makes (a convolution's where it multiplies patches); null in a model that trains.", code);
        Assert.Contains("packedKernel: packedReturnedKernel);", forward);
    }

    [Fact]
    public void Recurrent_calls_name_the_output_row_they_write_and_read()
    {
        var (code, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential]
            public partial class Tagger
            {
                [Input(5, 3)] Input steps;
                [LSTM(4, ReturnSequences = true)] LSTM lstm;
                [GRU(6, Bidirectional = true)] GRU both;
                [Dense(2)] Dense head;
            }
            """, "Forward");
        // A layer's output rows are its own (offset 0); two directions share one row of twice the units.
        Assert.Contains("Recurrent.Forward(lstmWorkspace, steps, default, LstmKernel, LstmRecurrentKernel, LstmBias, lstmOutput, outputWidth: 4, outputOffset: 0, batch,", forward);
        Assert.Contains("bothOutput, outputWidth: 12, batch,", forward);
        Assert.Contains("Recurrent.Backward(lstmWorkspace, lstmGradient, outputWidth: 4, outputOffset: 0, LstmKernel,", code);
        Assert.Contains("Recurrent.BackwardBidirectional(bothForwardWorkspace, bothBackwardWorkspace, bothGradient, outputWidth: 12,", code);
        // An inference copy packs each direction's two kernels once (the fields are null in a model that trains) and hands them in.
        Assert.Contains("reverse: false, packedKernel: packedLstmKernel, packedRecurrentKernel: packedLstmRecurrentKernel);", forward);
        Assert.Contains("packedForwardKernel: packedBothForwardKernel, packedForwardRecurrentKernel: packedBothForwardRecurrentKernel, " +
            "packedBackwardKernel: packedBothBackwardKernel, packedBackwardRecurrentKernel: packedBothBackwardRecurrentKernel);", forward);
        Assert.Contains("copy.packedLstmRecurrentKernel = Gemm.Pack(copy.LstmRecurrentKernel, 4, 16);", code);
        Assert.Contains("units: 4, buffers.ForTraining, recurrentKernelPackedAhead: !buffers.ForTraining));", code);
        Assert.Contains("copy.packedBothBackwardKernel = Gemm.Pack(copy.BothBackwardKernel, 4, 18);", code);
        Assert.Contains("return new InferenceCopy(copy, copy.packedLstmKernel, copy.packedLstmRecurrentKernel, copy.packedBothForwardKernel, " +
            "copy.packedBothForwardRecurrentKernel, copy.packedBothBackwardKernel, copy.packedBothBackwardRecurrentKernel, copy.packedHeadKernel);", code);
    }

    [Fact]
    public void A_relu_convolution_takes_its_kernel_gradient_at_its_max_poolings_winners_where_they_are_few_enough_to_pay()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Pooled
            {
                [Conv2D(8, 3, Activation.Relu)] Conv2D a;
                [MaxPooling2D(2)] MaxPooling2D poolA;
                [Conv2D(8, 3, Activation.Relu)] Conv2D b;
                [MaxPooling2D(2)] MaxPooling2D poolB;
                [Conv2D(4, 1, Activation.Relu)] Conv2D narrow;
                [MaxPooling2D(2)] MaxPooling2D poolNarrow;
                [Conv2D(5, 3, Activation.Tanh)] Conv2D squashed;
                [MaxPooling2D(2)] MaxPooling2D poolSquashed;
                [Conv2D(4, 1, Activation.Relu)] Conv2D pointwise;
                [GlobalMaxPooling2D] GlobalMaxPooling2D poolAll;
                [Conv2D(5, 3, Activation.Relu)] Conv2D overlapped;
                [MaxPooling2D(2, Strides = 1)] MaxPooling2D poolOverlapped;
                [Conv2D(4, 3, Activation.Relu)] Conv2D deep;
                [GlobalMaxPooling2D] GlobalMaxPooling2D poolDeep;

                [Graph]
                [OutputLoss("p", Loss.MeanSquaredError)]
                [OutputLoss("q", Loss.MeanSquaredError)]
                [OutputLoss("r", Loss.MeanSquaredError)]
                [OutputLoss("s", Loss.MeanSquaredError)]
                [OutputLoss("t", Loss.MeanSquaredError)]
                [OutputLoss("u", Loss.MeanSquaredError)]
                (Tensor p, Tensor q, Tensor r, Tensor s, Tensor t, Tensor u) Forward([Shape(14, 14, 8)] Tensor x)
                {
                    var pooledA = poolA.Apply(a.Apply(x));
                    return (poolB.Apply(b.Apply(pooledA)), poolNarrow.Apply(narrow.Apply(x)), poolSquashed.Apply(squashed.Apply(x)),
                        poolAll.Apply(pointwise.Apply(x)), poolOverlapped.Apply(overlapped.Apply(x)), poolDeep.Apply(deep.Apply(pooledA)));
                }
            }
            """, "Backward");

        // Patches of 72 floats: both kernel gradients at the winners, their taps read from the inputs, so no patches kept;
        // a, on the model's input, needs no scattered gradient.
        Assert.Contains("Convolution.KernelGradientAtWinners(poolBGradient, poolBWinners, poolAOutput, BKernelGradient, bWindow, poolBWindow, 8, batch);", backward);
        Assert.Contains("Pooling.MaxBackward(poolBGradient, poolBWinners, bGradient, poolBWindow, batch, accumulate: false);", backward);
        Assert.Contains("Convolution.KernelGradientAtWinners(poolAGradient, poolAWinners, x, AKernelGradient, aWindow, poolAWindow, 8, batch);", backward);
        Assert.DoesNotContain("aPatches", code);
        Assert.DoesNotContain("bPatches", code);
        Assert.DoesNotContain("Pooling.MaxBackward(poolAGradient", backward);
        Assert.Contains("nothing scattered (a takes its kernel gradient at the winners and passes no gradient on)", backward);
        // So a's gradient is neither written nor read: it has no buffer, and b's (which passes its gradient on) has.
        Assert.DoesNotContain("aGradient", code);
        Assert.Contains("bGradient = buffers.Gradient(", code);
        // Eight-float patches under whole 2x2 windows: the narrow route at the winners, nothing scattered. A tanh the pooling
        // does not take: the dense product over the scattered gradient.
        Assert.Contains("Convolution.KernelGradientAtWinners(poolNarrowGradient, poolNarrowWinners, x, NarrowKernelGradient, narrowWindow, poolNarrowWindow, 4, batch);", backward);
        Assert.DoesNotContain("narrowPatches", code);
        Assert.Contains("Convolution.ForwardMaxPooled(x, default, NarrowKernel, narrowOutput, poolNarrowOutput, poolNarrowWinners, narrowWindow, poolNarrowWindow, 4, batch, bias: NarrowBias, relu: true, training: training, keepPatches: false, packedKernel: packedNarrowKernel);", code);
        Assert.DoesNotContain("Pooling.MaxBackward(poolNarrowGradient", backward);
        Assert.Contains("Pooling.MaxBackward(poolSquashedGradient, poolSquashedWinners, squashedGradient", backward);
        Assert.Contains("Convolution.KernelGradient(x, squashedGradient, SquashedKernelGradient, squashedWindow, 5, batch);", backward);
        // A global pooling keeps one pixel of 196: even eight-float patches pay. A pooling of stride 1 keeps 121 of 144.
        Assert.Contains("Convolution.KernelGradientAtWinners(poolAllGradient, poolAllWinners, x, PointwiseKernelGradient, pointwiseWindow, poolAllWindow, 4, batch);", backward);
        Assert.DoesNotContain("pointwisePatches", code);
        Assert.Contains("Pooling.MaxBackward(poolOverlappedGradient, poolOverlappedWinners, overlappedGradient", backward);
        Assert.Contains("Convolution.KernelGradient(x, overlappedGradient, OverlappedKernelGradient, overlappedWindow, 5, batch);", backward);
        Assert.DoesNotContain("squashedPatches", code);
        Assert.Equal(5, backward.Split("Convolution.KernelGradientAtWinners(").Length - 1);
        // deep's global pooling keeps one pixel of 16: its input gradient comes from the winners too, so its own is never
        // formed; b's 2x2 pooling keeps one of four: scattered, then the transposed convolution.
        Assert.Contains("Convolution.InputGradientAtWinners(poolDeepGradient, poolDeepWinners, DeepKernel, poolAGradient, deepWindow, poolDeepWindow, 4, batch, accumulate: ", backward);
        Assert.Contains("nothing scattered (deep takes its kernel gradient at the winners and its input gradient there too)", backward);
        Assert.DoesNotContain("deepGradient", code);
        Assert.Matches(@"Convolution.Transposed\(bGradient, BKernel, patchGradients, poolAGradient, bWindow, 8, batch, accumulate: (true|false), scattered: true\);", backward);
    }

    [Fact]
    public void A_convolution_takes_its_kernel_gradient_from_its_input_and_keeps_no_patches_unless_a_few_filters_read_a_few_channels()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Decoder
            {
                [Conv2D(16, 3, Activation.Relu, Padding = Padding.Same)] Conv2D widen;
                [Conv2D(1, 3, Activation.Sigmoid, Padding = Padding.Same)] Conv2D decoded;
                [Conv2D(4, 3, Activation.Tanh, Padding = Padding.Same)] Conv2D thin;
                [Conv2D(5, 3, Activation.Tanh, Padding = Padding.Same)] Conv2D many;
                [Conv2D(1400, 3, Padding = Padding.Same)] Conv2D broad;

                [Graph]
                [OutputLoss("image", Loss.BinaryCrossentropy)]
                [OutputLoss("thinned", Loss.MeanSquaredError)]
                [OutputLoss("more", Loss.MeanSquaredError)]
                [OutputLoss("broadened", Loss.MeanSquaredError)]
                (Tensor image, Tensor thinned, Tensor more, Tensor broadened) Forward([Shape(28, 28, 4)] Tensor x)
                {
                    var features = widen.Apply(x);
                    return (decoded.Apply(features), thin.Apply(x), many.Apply(features), broad.Apply(features));
                }
            }
            """, "Backward");

        // One filter over 16 channels: from the input, so the forward pass keeps no patches and none are allocated.
        Assert.Contains("Convolution.KernelGradient(widenOutput, decodedGradient, DecodedKernelGradient, decodedWindow, 1, batch);", backward);
        Assert.Contains("// decoded: sigmoid', then kernel (from its input), bias and input (summed in place, no patch gradients) gradients", backward);
        Assert.Contains("// many: tanh', then kernel (from its input), bias and input (through the patches) gradients", backward);
        Assert.DoesNotContain("decodedPatches", code);
        Assert.Matches(@"Convolution.Forward\(widenOutput, default, DecodedKernel, decodedOutput, decodedWindow, 1, batch[^;]*keepPatches: false, packedKernel: packedDecodedKernel\);", code);
        // Five filters over sixteen channels and sixteen over four, filters in the lanes: from the input too.
        Assert.Contains("Convolution.KernelGradient(widenOutput, manyGradient, ManyKernelGradient, manyWindow, 5, batch);", backward);
        Assert.Contains("Convolution.KernelGradient(x, widenGradient, WidenKernelGradient, widenWindow, 16, batch);", backward);
        Assert.DoesNotContain("manyPatches", code);
        // Four filters over four channels, too few for either's lanes, and a kernel past the lanes' limit (144 x 1400 floats): through the patches.
        Assert.Contains("Gemm.MultiplyTransposedA(thinPatches, thinGradient, ThinKernelGradient", backward);
        Assert.Contains("Gemm.MultiplyTransposedA(broadPatches, broadGradient, BroadKernelGradient", backward);
        Assert.Equal(3, backward.Split("Convolution.KernelGradient(").Length - 1);
    }

    [Fact]
    public void Nine_float_patches_take_the_narrow_kernel_gradient_only_under_whole_two_by_two_windows()
    {
        var (_, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Narrow
            {
                [Conv2D(4, 3, Activation.Relu)] Conv2D whole;
                [MaxPooling2D(2)] MaxPooling2D poolWhole;
                [Conv2D(4, 3, Activation.Relu)] Conv2D padded;
                [MaxPooling2D(2, Padding = Padding.Same)] MaxPooling2D poolPadded;

                [Graph]
                [OutputLoss("p", Loss.MeanSquaredError)]
                [OutputLoss("q", Loss.MeanSquaredError)]
                (Tensor p, Tensor q) Forward([Shape(7, 7, 1)] Tensor x) => (poolWhole.Apply(whole.Apply(x)), poolPadded.Apply(padded.Apply(x)));
            }
            """, "Backward");

        // 5x5 convolution outputs: a valid pooling drops the last row and column (whole windows), a 'same' one pads them.
        Assert.Contains("Convolution.KernelGradientAtWinners(poolWholeGradient, poolWholeWinners, x, WholeKernelGradient, wholeWindow, poolWholeWindow, 4, batch);", backward);
        Assert.Contains("Pooling.MaxBackward(poolPaddedGradient, poolPaddedWinners, paddedGradient, poolPaddedWindow, batch, accumulate: false);", backward);
        Assert.Contains("Gemm.MultiplyTransposedA(paddedPatches, paddedGradient, PaddedKernelGradient", backward);
    }

    [Fact]
    public void A_transposed_convolution_skips_the_zeros_of_a_gradient_that_a_max_pooling_scattered_to_few_pixels()
    {
        var (_, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Scattering
            {
                [Input(16, 16, 4)] Input image;
                [Conv2D(8, 3, Activation.Relu)] Conv2D first;
                [Conv2D(8, 3, Activation.Relu)] Conv2D second;
                [MaxPooling2D(2, Strides = 1)] MaxPooling2D overlapping;
                [Conv2D(8, 3, Activation.Relu)] Conv2D third;
                [MaxPooling2D(2)] MaxPooling2D halving;
                [Flatten] Flatten flatten;
                [Dense(10, Activation.Softmax)] Dense digits;
            }
            """, "Backward");

        // third's 9x9 pixels pool to 4x4: at most one value in five is nonzero. second's 12x12 pool to 11x11: nearly all.
        Assert.Contains("Convolution.Transposed(thirdGradient, ThirdKernel, patchGradients, overlappingGradient, thirdWindow, 8, batch, accumulate: false, scattered: true);", backward);
        Assert.Contains("// third: relu' and bias gradient taken with halving's gradient, then kernel (at halving's winners) and input (through the patches, from its nonzero gradients) gradients", backward);
        Assert.Contains("Convolution.Transposed(secondGradient, SecondKernel, patchGradients, firstGradient, secondWindow, 8, batch, accumulate: false);", backward);
        Assert.Single(backward.Split('\n'), line => line.Contains("scattered: true"));
    }

    [Fact]
    public void A_pooled_convolution_computes_only_the_outputs_its_valid_pooling_reads()
    {
        var (code, _) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Cropping
            {
                [Input(13, 12, 2)] Input image;
                [Conv2D(4, 3, Activation.Relu)] Conv2D odd;                        // (11, 10, 4)
                [MaxPooling2D(2)] MaxPooling2D halving;                             // (5, 5, 4): reads 10x10
                [Conv2D(4, 1, Activation.Tanh)] Conv2D curved;                      // (5, 5, 4)
                [MaxPooling2D(2)] MaxPooling2D dropping;                            // (2, 2, 4): reads 4x4, but a tanh is not pooled in one call
                [Conv2D(4, 1, Activation.Relu)] Conv2D last;                        // (2, 2, 4)
                [MaxPooling2D(3, Padding = Padding.Same)] MaxPooling2D padded;      // (1, 1, 4): 'same' reads every pixel
                [Flatten] Flatten flatten;
                [Dense(3, Activation.Softmax)] Dense classes;
            }
            """, "Backward");

        Assert.Contains("// halving reads 10x10 of odd's 11x10 outputs: the rest is never computed", code);
        Assert.Contains("private static readonly Window oddWindow = new Window(13, 12, 2, 3, 3, 1, 1, Same: false).CroppedTo(10, 10);", code);
        Assert.Contains("private static readonly Window halvingWindow = new(10, 10, 4, 2, 2, 2, 2, Same: false);", code);
        Assert.Contains("private static readonly Window curvedWindow = new(5, 5, 4, 1, 1, 1, 1, Same: false);", code);
        Assert.Contains("private static readonly Window droppingWindow = new(5, 5, 4, 2, 2, 2, 2, Same: false);", code);
        Assert.Contains("private static readonly Window lastWindow = new(2, 2, 4, 1, 1, 1, 1, Same: false);", code);
        Assert.Contains("private static readonly Window paddedWindow = new(2, 2, 4, 3, 3, 3, 3, Same: true);", code);
        Assert.Single(code.Split('\n'), line => line.Contains("CroppedTo"));
        // Its value and gradient hold what it computes: 10x10x4 floats a sample, not 11x10x4.
        Assert.Contains("oddOutput = buffers.PooledConvolution(oddWindow, halvingWindow, maxBatchSize * 400);", code);
        Assert.Matches(@"oddGradient = buffers\.Gradient\(maxBatchSize \* \d+, maxBatchSize \* 400\);", code);
    }

    [Fact]
    public void A_convolution_read_only_by_a_batch_normalization_applies_it_at_inference()
    {
        var (code, _) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Normalized
            {
                [Conv2D(8, 3, Activation.Relu, Padding = Padding.Same)] Conv2D first;
                [BatchNormalization] BatchNormalization firstNorm;
                [Conv2D(8, 3, Activation.Sigmoid, Padding = Padding.Same)] Conv2D curved;
                [BatchNormalization] BatchNormalization curvedNorm;
                [Conv2D(8, 1)] Conv2D shared;
                [BatchNormalization] BatchNormalization sharedNorm;
                [Conv2D(8, 1, Trainable = false)] Conv2D frozen;
                [BatchNormalization(Trainable = false, Epsilon = 0.01)] BatchNormalization frozenNorm;
                [DepthwiseConv2D(3, Padding = Padding.Same, UseBias = false, DepthMultiplier = 2)] DepthwiseConv2D depthwise;
                [BatchNormalization] BatchNormalization depthwiseNorm;
                [GlobalAveragePooling2D] GlobalAveragePooling2D pool;
                [Dense(3, Activation.Softmax)] Dense classes;

                [Graph]
                Tensor Forward([Shape(6, 6, 2)] Tensor image)
                {
                    var x = curvedNorm.Apply(curved.Apply(firstNorm.Apply(first.Apply(image))));
                    var s = shared.Apply(x);
                    var y = frozenNorm.Apply(frozen.Apply(Ops.Add(sharedNorm.Apply(s), s)));
                    return classes.Apply(pool.Apply(depthwiseNorm.Apply(depthwise.Apply(y))));
                }
            }
            """, "Backward");

        // first: training runs the two layers; inference the convolution alone, into the normalization's output.
        Assert.Contains("// first: Conv2D(8, 3x3, strides 1, same, relu), (None, 6, 6, 2) -> (None, 6, 6, 8), computed with firstNorm below", code);
        Assert.Contains("""
                    if (training)
                    {
                        Convolution.Forward(image, default, FirstKernel, firstOutput, firstWindow, 8, batch, bias: FirstBias, relu: true, keepPatches: false);
                        BatchNorm.TrainingForward(firstOutput, firstNormOutput, FirstNormGamma, FirstNormBeta, firstNormMean, firstNormVariance, firstNormInverseStd, batch * 36, 8, 0.001f);
                    }
                    else Convolution.Forward(image, default, FirstKernel, firstNormOutput, firstWindow, 8, batch, bias: FirstBias, relu: true, keepPatches: false, normalization: new BatchNormAtInference(FirstNormGamma, FirstNormBeta, FirstNormMovingMean, FirstNormMovingVariance, 0.001f), packedKernel: packedFirstKernel);
            """.Replace("\r\n", "\n"), code.Replace("\r\n", "\n"));
        Assert.Contains("firstOutput = buffers.TrainingFloats(maxBatchSize * 288); // only while training: at inference the convolution writes 'firstNorm' directly", code);
        // A frozen normalization runs with its moving statistics in both passes, after the convolution while training.
        Assert.Contains("""
                    if (training)
                    {
                        Convolution.Forward(addOutput, default, FrozenKernel, frozenOutput, frozenWindow, 8, batch, bias: FrozenBias, keepPatches: false);
                        BatchNorm.InferenceForward(frozenOutput, frozenNormOutput, FrozenNormGamma, FrozenNormBeta, FrozenNormMovingMean, FrozenNormMovingVariance, batch * 36, 8, 0.01f);
                    }
                    else Convolution.Forward(addOutput, default, FrozenKernel, frozenNormOutput, frozenWindow, 8, batch, bias: FrozenBias, keepPatches: false, normalization: new BatchNormAtInference(FrozenNormGamma, FrozenNormBeta, FrozenNormMovingMean, FrozenNormMovingVariance, 0.01f), packedKernel: packedFrozenKernel);
            """.Replace("\r\n", "\n"), code.Replace("\r\n", "\n"));
        // Not a sigmoid's (applied after the convolution's call), nor a convolution another layer reads too.
        Assert.Single(code.Split('\n'), line => line.Contains("Convolution.Forward(firstNormOutput, default, CurvedKernel, curvedOutput,"));
        Assert.Contains("else BatchNorm.InferenceForward(curvedOutput, curvedNormOutput,", code);
        Assert.Contains("else BatchNorm.InferenceForward(sharedOutput, sharedNormOutput,", code);
        // A DepthwiseConv2D the same way (MobileNet's every depthwise layer).
        Assert.Contains("// depthwise: DepthwiseConv2D(3x3, depth_multiplier 2, strides 1, same, linear), (None, 6, 6, 8) -> (None, 6, 6, 16), computed with depthwiseNorm below", code);
        Assert.Contains("""
                    if (training)
                    {
                        DepthwiseConvolution.Forward(frozenNormOutput, DepthwiseDepthwiseKernel, default, depthwiseOutput, depthwiseWindow, multiplier: 2, batch);
                        BatchNorm.TrainingForward(depthwiseOutput, depthwiseNormOutput, DepthwiseNormGamma, DepthwiseNormBeta, depthwiseNormMean, depthwiseNormVariance, depthwiseNormInverseStd, batch * 36, 16, 0.001f);
                    }
                    else DepthwiseConvolution.Forward(frozenNormOutput, DepthwiseDepthwiseKernel, default, depthwiseNormOutput, depthwiseWindow, multiplier: 2, batch, normalization: new BatchNormAtInference(DepthwiseNormGamma, DepthwiseNormBeta, DepthwiseNormMovingMean, DepthwiseNormMovingVariance, 0.001f));
            """.Replace("\r\n", "\n"), code.Replace("\r\n", "\n"));
        Assert.Contains("depthwiseOutput = buffers.TrainingFloats(maxBatchSize * 576); // only while training: at inference the convolution writes 'depthwiseNorm' directly", code);
        Assert.Equal(3, code.Split('\n').Count(line => line.Contains("new BatchNormAtInference(")));
    }

    [Fact]
    public void A_residual_add_of_a_normalized_convolution_is_made_by_the_normalizations_pass()
    {
        var (code, _) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Residual
            {
                [Conv2D(8, 3, Padding = Padding.Same)] Conv2D stem;
                [BatchNormalization] BatchNormalization stemNorm;
                [Conv2D(8, 3, Padding = Padding.Same)] Conv2D conv;
                [BatchNormalization] BatchNormalization norm;
                [Conv2D(8, 3, Padding = Padding.Same)] Conv2D late;
                [BatchNormalization] BatchNormalization lateNorm;
                [Conv2D(8, 1)] Conv2D projection;
                [Conv2D(8, 1)] Conv2D twice;
                [BatchNormalization] BatchNormalization twiceNorm;
                [GlobalAveragePooling2D] GlobalAveragePooling2D pool;
                [Dense(3, Activation.Softmax)] Dense classes;

                [Graph]
                Tensor Forward([Shape(6, 6, 2)] Tensor image)
                {
                    var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
                    x = Ops.Relu(Ops.Add(x, norm.Apply(conv.Apply(x))));
                    var y = lateNorm.Apply(late.Apply(x));
                    x = Ops.Add(y, projection.Apply(x));
                    var t = twiceNorm.Apply(twice.Apply(x));
                    return classes.Apply(pool.Apply(Ops.Add(t, Ops.Relu(t))));
                }

                [Graph]
                Tensor Block([Shape(6, 6, 2)] Tensor image)
                {
                    var x = Ops.Relu(stemNorm.Apply(stem.Apply(image)));
                    return Ops.Relu(Ops.Add(x, norm.Apply(conv.Apply(x))));
                }
            }
            """, "Backward");

        // The block's Add and ReLU, made by the normalization's pass, into the ReLU's buffer: while training BatchNorm's after the
        // convolution, at inference the convolution's as it stores each output. The Add's block is a comment; norm's output unwritten.
        Assert.Contains("// norm: BatchNormalization, with the batch's statistics after conv while training; at inference, with the moving ones, applied by conv to its outputs as it computes them; then added to relu as 'add', and then the ReLU, written as 'relu_1'", code);
        Assert.Contains("BatchNorm.TrainingForward(convOutput, relu_1Output, NormGamma, NormBeta, normMean, normVariance, normInverseStd, batch * 36, 8, 0.001f, relu: true, residual: reluOutput);", code);
        Assert.Contains("else Convolution.Forward(reluOutput, default, ConvKernel, relu_1Output, convWindow, 8, batch, bias: ConvBias, keepPatches: false, normalization: new BatchNormAtInference(NormGamma, NormBeta, NormMovingMean, NormMovingVariance, 0.001f, relu: true, residual: reluOutput), packedKernel: packedConvKernel);", code);
        Assert.Contains("""
                    // add: Add(relu, norm), and then the ReLU, written as 'relu_1': made by norm's pass above (by conv at inference)

            """.Replace("\r\n", "\n"), code.Replace("\r\n", "\n"));
        Assert.DoesNotContain("Merges.Combine(MergeOperation.Add, reluOutput, normOutput", code);
        Assert.Contains("normOutput = buffers.Unwritten; // its pass writes 'add', the Add made and the ReLU taken", code);
        // Not where the other operand comes after the normalization (a projection shortcut computed after it), nor where the
        // normalization is read twice.
        Assert.Contains("Merges.Combine(MergeOperation.Add, lateNormOutput, projectionOutput, add_1Output, batch * 288);", code);
        Assert.Contains("BatchNorm.TrainingForward(lateOutput, lateNormOutput, LateNormGamma", code);
        Assert.Contains("Merges.Combine(MergeOperation.Add, twiceNormOutput, relu_2Output, add_2Output, batch * 288);", code);
        // A sub-model's blocks the same way, inference only: its Add's block is a comment.
        Assert.Contains("residual: blockReluOutput", code);
        Assert.DoesNotContain("Merges.Combine(MergeOperation.Add, blockReluOutput", code);
        Assert.Contains("blockNormOutput = buffers.Unwritten;", code);
        Assert.Equal(3, code.Split('\n').Count(line => line.Contains("residual:")));
    }

    [Fact]
    public void A_batch_normalization_or_merge_read_only_by_a_relu_takes_it_in_its_own_pass()
    {
        var (code, _) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Rectified
            {
                [Conv2D(8, 3, Padding = Padding.Same)] Conv2D conv;
                [BatchNormalization] BatchNormalization convNorm;
                [Dense(6)] Dense hidden;
                [BatchNormalization] BatchNormalization hiddenNorm;
                [Activation(Activation.Relu)] ActivationLayer hiddenRelu;
                [Dense(6)] Dense frozenHidden;
                [BatchNormalization(Trainable = false)] BatchNormalization frozenNorm;
                [Dense(6)] Dense curved;
                [BatchNormalization] BatchNormalization curvedNorm;
                [Dense(6)] Dense twice;
                [BatchNormalization] BatchNormalization twiceNorm;
                [Dense(6)] Dense returned;
                [BatchNormalization] BatchNormalization returnedNorm;
                [GlobalAveragePooling2D] GlobalAveragePooling2D pool;

                [Graph]
                [OutputLoss("p", Loss.MeanSquaredError)]
                [OutputLoss("q", Loss.MeanSquaredError)]
                [OutputLoss("r", Loss.MeanSquaredError)]
                [OutputLoss("s", Loss.MeanSquaredError)]
                [OutputLoss("t", Loss.MeanSquaredError)]
                [OutputLoss("u", Loss.MeanSquaredError)]
                [OutputLoss("v", Loss.MeanSquaredError)]
                (Tensor p, Tensor q, Tensor r, Tensor s, Tensor t, Tensor u, Tensor v) Forward([Shape(6, 6, 2)] Tensor image)
                {
                    var x = pool.Apply(Ops.Relu(convNorm.Apply(conv.Apply(image))));
                    var n = twiceNorm.Apply(twice.Apply(x));
                    var kept = returnedNorm.Apply(returned.Apply(x));
                    return (hiddenRelu.Apply(hiddenNorm.Apply(hidden.Apply(x))), Ops.Relu(frozenNorm.Apply(frozenHidden.Apply(x))),
                        Ops.Tanh(curvedNorm.Apply(curved.Apply(x))), Ops.Relu(Ops.Add(Ops.Relu(n), n, n)), kept, Ops.Relu(kept), Ops.Relu(Ops.Average(n, n)));
                }
            }
            """, "Backward");

        // A convolution, its normalization and the ReLU: the normalization's pass, or the convolution's at inference, writes the ReLU's output.
        Assert.Contains("""
                    if (training)
                    {
                        Convolution.Forward(image, default, ConvKernel, convOutput, convWindow, 8, batch, bias: ConvBias, keepPatches: false);
                        BatchNorm.TrainingForward(convOutput, reluOutput, ConvNormGamma, ConvNormBeta, convNormMean, convNormVariance, convNormInverseStd, batch * 36, 8, 0.001f, relu: true);
                    }
                    else Convolution.Forward(image, default, ConvKernel, reluOutput, convWindow, 8, batch, bias: ConvBias, keepPatches: false, normalization: new BatchNormAtInference(ConvNormGamma, ConvNormBeta, ConvNormMovingMean, ConvNormMovingVariance, 0.001f, relu: true), packedKernel: packedConvKernel);
            """.Replace("\r\n", "\n"), code.Replace("\r\n", "\n"));
        Assert.Contains("// relu: Activation(relu), taken by convNorm's pass above as it wrote this output", code);
        Assert.Contains("convNormOutput = buffers.Unwritten; // its pass writes 'relu', the ReLU taken", code);
        // An Activation layer after a Dense layer's normalization, in training and at inference; a frozen one's moving statistics in both.
        Assert.Contains("if (training) BatchNorm.TrainingForward(hiddenOutput, hiddenReluOutput, HiddenNormGamma, HiddenNormBeta, hiddenNormMean, hiddenNormVariance, hiddenNormInverseStd, batch, 6, 0.001f, relu: true);", code);
        Assert.Contains("else BatchNorm.InferenceForward(hiddenOutput, hiddenReluOutput, HiddenNormGamma, HiddenNormBeta, HiddenNormMovingMean, HiddenNormMovingVariance, batch, 6, 0.001f, relu: true);", code);
        Assert.Contains("BatchNorm.InferenceForward(frozenHiddenOutput, relu_1Output, FrozenNormGamma, FrozenNormBeta, FrozenNormMovingMean, FrozenNormMovingVariance, batch, 6, 0.001f, relu: true);", code);
        // A merge read only by a ReLU takes it with its last operand.
        Assert.Contains("""
                    // add: Add(relu_2, twiceNorm, twiceNorm), and then the ReLU, written as 'relu_3'
                    Merges.Combine(MergeOperation.Add, relu_2Output, twiceNormOutput, relu_3Output, batch * 6);
                    Merges.Combine(MergeOperation.Add, relu_3Output, twiceNormOutput, relu_3Output, batch * 6, relu: true);

                    // relu_3: Activation(relu), taken by add's pass above as it wrote this output
            """.Replace("\r\n", "\n"), code.Replace("\r\n", "\n"));
        Assert.Equal(3, code.Split('\n').Count(line => line.Contains("Activations.Forward(Activation.Relu")));
        // Not a tanh, nor a normalization another block reads too (the Add) or that is an output itself, nor an Average (its scale comes after the sum).
        Assert.Contains("Activations.Forward(Activation.Tanh, curvedNormOutput", code);
        Assert.Contains("Activations.Forward(Activation.Relu, twiceNormOutput", code);
        Assert.Contains("Activations.Forward(Activation.Relu, returnedNormOutput", code);
        Assert.Contains("Activations.Forward(Activation.Relu, averageOutput", code);
        Assert.Equal(4, code.Split('\n').Count(line => line.Contains("= buffers.Unwritten;")));
    }

    [Fact]
    public void A_pointwise_convolution_keeps_no_patches_and_takes_its_kernel_gradient_from_its_input()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Separable
            {
                [Input(8, 8, 3)] Input image;
                [DepthwiseConv2D(3, Activation.Relu, Padding = Padding.Same)] DepthwiseConv2D depthwise;
                [Conv2D(16, 1, Activation.Relu)] Conv2D pointwise;                  // patch rows = depthwise's pixels
                [Conv2D(16, 1, Strides = 2)] Conv2D strided;                        // a patch row every other pixel
                [Flatten] Flatten flatten;
                [Dense(3, Activation.Softmax)] Dense classes;
            }
            """, "Backward");

        Assert.Contains("Convolution.Forward(depthwiseOutput, default, PointwiseKernel, pointwiseOutput, pointwiseWindow, 16, batch, bias: PointwiseBias, relu: true, keepPatches: false, packedKernel: packedPointwiseKernel);", code);
        Assert.Contains("Gemm.MultiplyTransposedA(depthwiseOutput, pointwiseGradient, PointwiseKernelGradient, pointwiseWindow.PatchSize, batch * pointwiseWindow.Positions, 16);", backward);
        Assert.DoesNotContain("pointwisePatches", code);
        // Its input gradient is one product, as a Dense layer's over every pixel; the patch-gradient scratch is sized for the strided one alone.
        Assert.Contains("Gemm.MultiplyTransposedB(pointwiseGradient, PointwiseKernel, depthwiseGradient, batch * pointwiseWindow.Positions, 16, pointwiseWindow.PatchSize);", backward);
        Assert.Contains("patchGradients = buffers.TrainingFloats(Convolution.TransposedScratch(stridedWindow, 16, maxBatchSize));", code);
        Assert.Contains("Convolution.Transposed(stridedGradient, StridedKernel, patchGradients, pointwiseGradient, stridedWindow, 16, batch, accumulate: false);", backward);
        // Strided, its patches are not its input: its kernel gradient is taken from its input, filters in the lanes.
        Assert.Contains("Convolution.KernelGradient(pointwiseOutput, stridedGradient, StridedKernelGradient, stridedWindow, 16, batch);", backward);
        Assert.DoesNotContain("stridedPatches", code);
    }

    [Fact]
    public void An_embedding_only_a_mean_reads_is_averaged_in_its_table_and_never_written()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Bags
            {
                [Embedding(50, 8, MaskZero = true)] Embedding words;
                [GlobalAveragePooling1D] GlobalAveragePooling1D mean;
                [Embedding(50, 8)] Embedding tags;
                [GlobalAveragePooling1D] GlobalAveragePooling1D tagMean;
                [Dense(8)] Dense perTag;
                [Flatten] Flatten flat;
                [Dense(3, Activation.Softmax)] Dense classes;

                [Graph]
                Tensor Forward([Shape(10)] Tensor text, [Shape(4)] Tensor labels)
                {
                    var looked = tags.Apply(labels);                                  // read twice: written
                    var both = Ops.Concatenate(mean.Apply(words.Apply(text)), tagMean.Apply(looked), flat.Apply(perTag.Apply(looked)));
                    return classes.Apply(both);
                }
            }
            """, "Backward");

        Assert.Contains("EmbeddingKernel.MeanForward(text, WordsEmbeddings, meanOutput, batch, 10, 50, 8, maskZero: true, \"Bags\", \"words\");", code);
        Assert.Contains("wordsOutput = buffers.Unwritten;", code);
        Assert.DoesNotContain("wordsGradient", code);
        Assert.DoesNotContain("wordsSequenceMask", code);
        Assert.Contains("EmbeddingKernel.MeanBackward(meanGradient, text, WordsEmbeddingsGradient, batch, 10, 50, 8, maskZero: true, accumulate: false);", backward);
        Assert.DoesNotContain("EmbeddingKernel.Backward(wordsGradient", backward);
        // The tags' lookups have a second reader: written, and their mean taken from them.
        Assert.Contains("EmbeddingKernel.Forward(labels, TagsEmbeddings, tagsOutput, default, batch * 4, 50, 8, \"Bags\", \"tags\");", code);
        Assert.Contains("SequencePooling.AverageForward(tagsOutput, default, tagMeanOutput, batch, 4, 8);", code);
        Assert.DoesNotContain("tagsOutput = buffers.Unwritten", code);
    }

    /// <summary>
    /// GlobalAveragePooling2D is Keras' ops.mean over the pixels, as GlobalAveragePooling1D is over the steps: one kernel
    /// for both, the image's pixels its steps, and no window for it.
    /// </summary>
    [Fact]
    public void A_global_average_of_an_image_is_the_mean_over_its_pixels_as_steps()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Images
            {
                [Input(6, 5, 3)] Input image;
                [Conv2D(7, 3)] Conv2D conv;
                [GlobalAveragePooling2D] GlobalAveragePooling2D pool;
                [Dense(2, Activation.Softmax)] Dense classes;
            }
            """, "Backward");

        Assert.Contains("// pool: GlobalAveragePooling2D, the mean over the pixels, (None, 4, 3, 7) -> (None, 7)", code);
        Assert.Contains("SequencePooling.AverageForward(convOutput, default, poolOutput, batch, 12, 7);", code);
        Assert.Contains("// pool: each pixel gets its share of the gradient", backward);
        Assert.Contains("SequencePooling.AverageBackward(poolGradient, default, convGradient, batch, 12, 7, accumulate: false);", backward);
        Assert.DoesNotContain("poolWindow", code);
    }

    /// <summary>
    /// A global average takes the relu' of a ReLU only it reads as it spreads each share (AverageBackward's rectified): a
    /// residual Add's ReLU, whose block then only hands its gradient on, and a convolution's own; not a ReLU that a max
    /// pooling reads too.
    /// </summary>
    [Fact]
    public void A_global_average_takes_the_relu_derivative_of_a_relu_only_it_reads()
    {
        var (_, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Averages
            {
                [Conv2D(4, 3, Activation.Relu, Padding = Padding.Same)] Conv2D conv1;
                [Conv2D(4, 3, Padding = Padding.Same)] Conv2D conv2;
                [Conv2D(5, 1, Activation.Relu)] Conv2D pointwise;
                [Conv2D(3, 1, Activation.Relu)] Conv2D shared;
                [GlobalAveragePooling2D] GlobalAveragePooling2D blockPool;
                [GlobalAveragePooling2D] GlobalAveragePooling2D pointwisePool;
                [GlobalAveragePooling2D] GlobalAveragePooling2D sharedPool;
                [GlobalMaxPooling2D] GlobalMaxPooling2D sharedMax;
                [Dense(3, Activation.Softmax)] Dense head;

                [Graph]
                Tensor Forward([Shape(6, 6, 2)] Tensor image)
                {
                    var x = conv1.Apply(image);
                    var block = Ops.Relu(Ops.Add(x, conv2.Apply(x)));
                    var s = shared.Apply(x);
                    return head.Apply(Ops.Concatenate(blockPool.Apply(block), pointwisePool.Apply(pointwise.Apply(x)), sharedPool.Apply(s), sharedMax.Apply(s)));
                }
            }
            """, "Backward");

        Assert.Contains("// blockPool: each pixel gets its share of the gradient, where relu's output is positive (its relu' taken here)", backward);
        Assert.Contains("SequencePooling.AverageBackward(blockPoolGradient, default, reluGradient, batch, 36, 4, accumulate: false, rectified: reluOutput);", backward);
        Assert.Contains("// relu: Activation(relu)', taken with blockPool's gradient (add takes its gradient's floats as its own: nothing to copy)", backward);
        Assert.Contains("SequencePooling.AverageBackward(pointwisePoolGradient, default, pointwiseGradient, batch, 36, 5, accumulate: false, rectified: pointwiseOutput);", backward);
        Assert.Contains("// pointwise: relu' taken with pointwisePool's gradient, then kernel, bias and input (one product: each patch is a pixel) gradients", backward);
        Assert.DoesNotContain("Activations.Backward(Activation.Relu, reluOutput", backward);
        Assert.DoesNotContain("Activations.Backward(Activation.Relu, pointwiseOutput", backward);
        // shared's ReLU has two readers: each pooling writes its part of the gradient, and shared's block takes the derivative.
        Assert.Contains("SequencePooling.AverageBackward(sharedPoolGradient, default, sharedGradient, batch, 36, 3, accumulate: ", backward);
        Assert.DoesNotContain("rectified: sharedOutput", backward);
        Assert.Contains("Activations.Backward(Activation.Relu, sharedOutput, sharedGradient, batch * 36, 3);", backward);
    }

    [Fact]
    public void The_loss_takes_the_softmax_only_of_a_cross_entropy_output_nothing_else_reads()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Heads
            {
                [Dense(4, Activation.Softmax)] Dense shared;
                [Dense(3, Activation.Softmax)] Dense classes;
                [Dense(2, Activation.Softmax)] Dense scores;
                [Dense(5, Activation.Softmax)] Dense steps;

                [Graph]
                [OutputLoss("a", Loss.CategoricalCrossentropy)]
                [OutputLoss("b", Loss.SparseCategoricalCrossentropy)]
                [OutputLoss("c", Loss.MeanSquaredError)]
                [OutputLoss("d", Loss.CategoricalCrossentropy)]
                (Tensor a, Tensor b, Tensor c, Tensor d) Forward([Shape(6)] Tensor x, [Shape(3, 6)] Tensor sequence)
                {
                    var s = shared.Apply(x);
                    return (s, classes.Apply(s), scores.Apply(s), steps.Apply(sequence));
                }
            }
            """, "Backward");

        // classes: a cross-entropy on a softmax nothing else reads, so the loss writes the gradient of its logits.
        Assert.Contains("Losses.ComputeThroughSoftmax(Loss.SparseCategoricalCrossentropy, classesOutput", code);
        Assert.DoesNotContain("Activations.Backward(Activation.Softmax, classesOutput", backward);
        // steps: the loss, like the softmax, goes over the last axis, one row per step (Keras' per-step cross-entropy).
        Assert.Contains("Losses.ComputeThroughSoftmax(Loss.CategoricalCrossentropy, stepsOutput.AsSpan(0, batch * 15), dTargets, stepsGradient, batch * 3, 5,", code);
        Assert.DoesNotContain("Activations.Backward(Activation.Softmax, stepsOutput", backward);
        // shared is read by the other heads, and scores has no cross-entropy.
        Assert.Contains("Losses.Compute(Loss.CategoricalCrossentropy, sharedOutput", code);
        Assert.Contains("Activations.Backward(Activation.Softmax, sharedOutput, sharedGradient, batch, 4);", backward);
        Assert.Contains("Losses.Compute(Loss.MeanSquaredError, scoresOutput", code);
        Assert.Contains("Activations.Backward(Activation.Softmax, scoresOutput, scoresGradient, batch, 2);", backward);
        Assert.Equal(2, code.Split("ComputeThroughSoftmax(").Length - 1);
    }

    [Fact]
    public void A_max_pooling_takes_the_relu_and_bias_gradient_of_a_layer_only_it_reads()
    {
        var (_, backward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Functional]
            public partial class Pools
            {
                [Conv2D(4, 3, Activation.Relu)] Conv2D alone;
                [MaxPooling2D(2)] MaxPooling2D pool;
                [Conv2D(4, 3, Activation.Relu)] Conv2D branching;
                [GlobalMaxPooling2D] GlobalMaxPooling2D maxOfBranch;
                [GlobalAveragePooling2D] GlobalAveragePooling2D meanOfBranch;
                [Conv2D(4, 3, Activation.Tanh)] Conv2D squashed;
                [GlobalMaxPooling2D] GlobalMaxPooling2D maxOfSquashed;
                [Conv2D(4, 3, Activation.Relu)] Conv2D twice;
                [GlobalMaxPooling2D] GlobalMaxPooling2D firstMax;
                [GlobalMaxPooling2D] GlobalMaxPooling2D secondMax;
                [Conv2DTranspose(4, 2, Activation.Relu, Strides = 2)] Conv2DTranspose upsampled;
                [GlobalMaxPooling2D] GlobalMaxPooling2D maxOfUpsampled;

                [Graph]
                [OutputLoss("a", Loss.MeanSquaredError)]
                [OutputLoss("b", Loss.MeanSquaredError)]
                [OutputLoss("c", Loss.MeanSquaredError)]
                [OutputLoss("d", Loss.MeanSquaredError)]
                [OutputLoss("e", Loss.MeanSquaredError)]
                (Tensor a, Tensor b, Tensor c, Tensor d, Tensor e) Forward([Shape(8, 8, 2)] Tensor x)
                {
                    var branch = branching.Apply(x);
                    return (pool.Apply(alone.Apply(x)), Ops.Add(maxOfBranch.Apply(branch), meanOfBranch.Apply(branch)),
                        maxOfSquashed.Apply(squashed.Apply(x)), Ops.Add(firstMax.Apply(twice.Apply(x)), secondMax.Apply(twice.Apply(x))),
                        maxOfUpsampled.Apply(upsampled.Apply(x)));
                }
            }
            """, "Backward");
        // alone and upsampled: only a max pooling reads them, so it takes their relu' and bias gradient on its own gradient.
        Assert.Contains("Activations.Backward(Activation.Relu, poolOutput, poolGradient, batch * 9, 4);\n        Reductions.SumRows(poolGradient, AloneBiasGradient, batch * 9, 4);\n        Pooling.MaxBackward(poolGradient", backward);
        Assert.Contains("Activations.Backward(Activation.Relu, maxOfUpsampledOutput, maxOfUpsampledGradient, batch, 4);\n        Reductions.SumRows(maxOfUpsampledGradient, UpsampledBiasGradient, batch, 4);", backward);
        Assert.DoesNotContain("aloneOutput", backward);
        Assert.DoesNotContain("Reductions.SumRows(aloneGradient", backward);
        Assert.DoesNotContain("upsampledOutput", backward);
        Assert.DoesNotContain("Reductions.SumRows(upsampledGradient", backward);
        // twice's weights are shared: each pooling takes its application's relu', the bias gradient stays with the layer's blocks.
        Assert.Contains("Activations.Backward(Activation.Relu, firstMaxOutput, firstMaxGradient, batch, 4);\n        Pooling.MaxBackward", backward);
        Assert.Contains("Activations.Backward(Activation.Relu, secondMaxOutput, secondMaxGradient, batch, 4);\n        Pooling.MaxBackward", backward);
        Assert.Contains("Reductions.SumRows(twiceGradient, TwiceBiasGradient, batch * twiceWindow.Positions, 4, accumulate: true);", backward);
        Assert.DoesNotContain("Activations.Backward(Activation.Relu, twice", backward);
        // branching is read by an average pooling too, and squashed ends in tanh: their blocks keep their own derivatives.
        Assert.Contains("Activations.Backward(Activation.Relu, branchingOutput, branchingGradient, batch * 36, 4);", backward);
        Assert.Contains("Reductions.SumRows(branchingGradient, BranchingBiasGradient", backward);
        Assert.Contains("Activations.Backward(Activation.Tanh, squashedOutput, squashedGradient, batch * 36, 4);", backward);
        Assert.DoesNotContain("maxOfBranchOutput", backward);
        Assert.DoesNotContain("maxOfSquashedOutput", backward);
    }


    [Fact]
    public void Standalone_activations_no_bias_and_nested_types_snapshot()
    {
        const string source = """
            using ModelGen;

            public partial class Outer
            {
                [Sequential(Loss = Loss.CategoricalCrossentropy)]
                internal partial class Tiny
                {
                    [Input(3)] Input features;
                    [Dense(4, UseBias = false)] Dense projection;
                    [Activation(Activation.Tanh)] ActivationLayer squash;
                    [Dense(2)] Dense logits;
                    [Activation(Activation.Softmax)] ActivationLayer probabilities;
                }
            }
            """;
        var (output, result) = GeneratorHarness.Run(source);
        var file = Assert.Single(result.GeneratedTrees);
        Assert.Equal("Outer.Tiny.g.cs", Path.GetFileName(file.FilePath));
        Assert.Empty(output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning));
        GeneratorHarness.MatchesSnapshot("Tiny", file.ToString());
        // Tensors of 4 and 2 floats a sample: shared by liveness, each would start a cache line a sample (32 floats against
        // 12), so every value and gradient keeps a buffer of its own, and the summary claims no saving.
        string text = file.ToString();
        Assert.Contains("new ModelBuffers(sharedGradientFloats: 0, sharedValueFloats: 0, forTraining)", text);
        Assert.Contains("projectionOutput = buffers.Floats(maxBatchSize * 4);", text);
        Assert.Contains("projectionGradient = buffers.TrainingFloats(maxBatchSize * 4);", text);
        Assert.DoesNotContain("buffers.Gradient(", text);
        Assert.DoesNotContain("buffers.Value(", text);
    }

    [Fact]
    public void Residual_functional_model_snapshot()
    {
        const string source = """
            using ModelGen;

            namespace Samples;

            [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class ResidualMlp
            {
                [Dense(64, Activation.Relu)]    Dense d1;
                [Dense(64)]                     Dense d2;
                [Dense(10, Activation.Softmax)] Dense head;

                [Graph]
                Tensor Forward([Shape(64)] Tensor x)
                {
                    var h = d2.Apply(d1.Apply(x));
                    var merged = Ops.Relu(Ops.Add(h, x));   // skip connection
                    return head.Apply(merged);
                }
            }
            """;
        var (output, result) = GeneratorHarness.Run(source);
        var file = Assert.Single(result.GeneratedTrees);
        Assert.Empty(output.GetDiagnostics().Where(d => d.Severity >= DiagnosticSeverity.Warning));
        GeneratorHarness.MatchesSnapshot("ResidualMlp", file.ToString());
    }

    [Fact]
    public void Generated_model_compiles_loads_and_runs()
    {
        var (output, _) = GeneratorHarness.Run(Mnist);
        using var stream = new MemoryStream();
        var emit = output.Emit(stream);
        Assert.True(emit.Success, string.Join("\n", emit.Diagnostics));
        var assembly = Assembly.Load(stream.ToArray());
        var model = (IModel)Activator.CreateInstance(assembly.GetType("Samples.Mnist.MnistClassifier")!, 2, 0)!;
        Assert.Equal(235_146, model.Parameters.Length);
        var outputs = new float[20];
        model.Predict(new float[2 * 784], outputs);
        Assert.Equal(2f, outputs.Sum(), tolerance: 5e-5); // two softmax rows
    }

    [Fact]
    public void Each_layer_block_reads_by_eye()
    {
        var (_, result) = GeneratorHarness.Run(Mnist);
        string code = result.GeneratedTrees[0].ToString();
        Assert.Contains("// hidden1: Dense(256, relu), (None, 784) -> (None, 256)", code);
        Assert.Contains("Gemm.Multiply(image, Hidden1Kernel, hidden1Output, batch, 784, 256, bias: Hidden1Bias, relu: true);", code);
        Assert.Contains("Gemm.MultiplyTransposedA(drop1Output, hidden2Gradient, Hidden2KernelGradient, 256, batch, 128);", code);
        // The first layer needs no input gradient: nothing before it learns.
        Assert.DoesNotContain("imageGradient", code);
        Assert.StartsWith("// <auto-generated/>", code);
    }

    public static TheoryData<string> BrokenSources() => new()
    {
        // Not partial, no input, bad arguments, wrong field types, syntax errors, unknown types: no output, no exception.
        "using ModelGen; [Sequential] class A { [Input(4)] Input i; [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class B { [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class C { [Input(0)] Input i; [Dense(-3)] Dense d; [Dropout(1.5)] Dropout p; }",
        "using ModelGen; [Sequential] partial class D { [Input(4)] Input i; [Dense(2)] Dropout d; }",
        "using ModelGen; [Sequential] partial class E { [Input(4)] Input i; [Dense(2, (Activation)99)] Dense d; }",
        "using ModelGen; [Sequential] partial class F { [Input(4)] Input i; [Dense(] Dense d; }",
        "using ModelGen; [Sequential] partial class G { [Input(4)] Input i; [Dense(2)] Missing d; int stray; }",
        "using ModelGen; [Sequential] partial class H<T> { [Input(4)] Input i; [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class I { [Input(2, 2, 1)] Input i; [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class J { [Input(4)] Input i; }",
        "using ModelGen; [Sequential] partial class K { [Input(4)] Input i; [Dense(\"x\")] Dense d; public K() { } }",
        "using ModelGen; [Sequential] partial class L { [Input(4)] Input i; [Dense(2)] Dense d; [Input(3)] Input j; }",
        "using ModelGen; [Sequential(Loss = (Loss)42)] partial class M { [Input(4)] Input i; [Dense(2)] Dense d; }",
        "using ModelGen; [Functional] partial class N { [Dense(2)] Dense d; }",
        "using ModelGen; [Functional] partial class O { [Dense(2)] Dense d; [Graph] Tensor F(Tensor x) => d.Apply(x); }",
        "using ModelGen; [Functional] partial class P { [Dense(2)] Dense d; [Graph] Tensor F([Shape(4)] Tensor x) { var h = d.Apply(y); return h; } }",
        "using ModelGen; [Functional] partial class Q { [Dense(2)] Dense d; [Graph] Tensor F([Shape(4)] Tensor x) { return Ops.Add(d.Apply(x), x); } }",
        "using ModelGen; [Functional] partial class R { [Dense(2)] Dense d; [Graph] Tensor F([Shape(4)] Tensor x) { while (true) { } } }",
        "using ModelGen; [Functional] partial class S { [Dense(2)] Dense d; [Graph] Tensor F([Shape(4)] Tensor x) { var h = d.Apply(x, x); return Ops.Relu(h, h); } }",
        "using ModelGen; [Functional] partial class T { [Dense(2)] Dense d; [Graph] Tensor F([Shape(4)] Tensor x) }",
        "using ModelGen; [Functional] partial class U { [Dense(2)] Dense d; [Graph] (Tensor, Tensor) F([Shape(4)] Tensor x) => (d.Apply(x), x); }",
        // The layers and graph forms added with layer breadth, misused.
        "using ModelGen; [Sequential] partial class V1 { [Input(4, 4, 1)] Input i; [ZeroPadding2D(1, 2, 3)] ZeroPadding2D z; [Flatten] Flatten f; [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class V2 { [Input(4, 4, 1)] Input i; [UpSampling2D(1, 2, 3)] UpSampling2D u; [Flatten] Flatten f; [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class V3 { [Input(12)] Input i; [Reshape()] Reshape r; [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class V4 { [Input(4, 4, 1)] Input i; [Conv2D(2, 3, 3, 3, 3)] Conv2D c; [Flatten] Flatten f; [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class V5 { [Input(6)] Input i; [Embedding(0, 0)] Embedding e; [LSTM(0)] LSTM l; [Dense(2)] Dense d; }",
        "using ModelGen; [Sequential] partial class V6 { [Input(6, 2)] Input i; [MultiHeadAttention(2, 2)] MultiHeadAttention a; [Dense(2)] Dense d; }",
        "using ModelGen; [Functional] partial class V7 { [LSTM(3)] LSTM l; [Graph] Tensor F([Shape(5, 2)] Tensor x) { var (a, b) = l.ApplyWithState(); return a; } }",
        "using ModelGen; [Functional] partial class V8 { [LSTM(3)] LSTM l; [Graph] Tensor F([Shape(5, 2)] Tensor x) { (var a, var b, var c, var e) = l.ApplyWithState(x); return a; } }",
        "using ModelGen; [Functional] partial class V9 { [MultiHeadAttention(1, 2)] MultiHeadAttention a; [Graph] Tensor F([Shape(5, 2)] Tensor x) => a.Apply(); }",
        "using ModelGen; [Functional] partial class W1 { [MultiHeadAttention(1, 2)] MultiHeadAttention a; [Graph] Tensor F([Shape(5, 2)] Tensor x) => a.Apply(x, x, attentionMask: x); }",
        "using ModelGen; [Functional] partial class W2 { [GRU(3)] GRU g; [Graph] Tensor F([Shape(5, 2)] Tensor x) { var (o, s) = g.ApplyWithState(x, x); return o; } }",
        "using ModelGen; [Functional] partial class W3 { [BatchNormalization(Momentum = 2)] BatchNormalization n; [Graph(Trainable = false)] Tensor F([Shape(5)] Tensor x) => n.Apply(x); }",
    };

    [Theory, MemberData(nameof(BrokenSources))]
    public void Invalid_models_generate_nothing_and_never_throw(string source)
    {
        var (_, result) = GeneratorHarness.Run(source);
        Assert.Empty(result.GeneratedTrees);
        Assert.Empty(result.Diagnostics); // an exception would surface here as CS8785
        Assert.All(result.Results, r => Assert.Null(r.Exception));
    }

    /// <summary>A layer named as another's buffer (encoderOutput beside encoder): that tensor's buffers move aside.</summary>
    [Fact]
    public void Buffers_named_after_a_tensor_step_aside_for_a_layer_of_that_name()
    {
        var (code, forward) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.MeanSquaredError)]
            public partial class Named
            {
                [Input(8)]                   Input features;
                [Dense(8, Activation.Tanh)]  Dense encoder;
                [Dense(4, Activation.Tanh)]  Dense encoderOutput;
                [Dense(1)]                   Dense head;
            }
            """, "Forward");
        Assert.Contains("private readonly AlignedBuffer encoderNodeOutput, encoderNodeGradient;", code);
        Assert.Contains("private readonly AlignedBuffer encoderOutputOutput, encoderOutputGradient;", code);
        Assert.Contains("encoderNodeOutput", forward);
        Assert.Contains("layers = new Layer[] { features, encoder, encoderOutput, head };", code); // the user's field, still the layer
    }

    /// <summary>
    /// The weights' members (HiddenKernel, HiddenKernelOffset, HiddenKernelGradient, packedHiddenKernel) step aside for the
    /// class's own names and each other's: layers 'hidden' and 'Hidden', a layer 'packedHeadKernel', a property HeadBias,
    /// a bidirectional LSTM 'lstm' beside a layer 'lstmForward' (both LstmForwardKernel), once compiled as CS0102.
    /// </summary>
    [Fact]
    public void Weight_members_step_aside_for_the_classs_names_and_each_others()
    {
        var (code, _) = GeneratorHarness.RunAndFindMethod("""
            using ModelGen;

            [Sequential(Loss = Loss.MeanSquaredError)]
            public partial class Named
            {
                [Input(6, 4)]                                  Input steps;
                [LSTM(4, ReturnSequences = true, Bidirectional = true)] LSTM lstm;
                [Dense(8)]                                     Dense lstmForward;
                [Flatten]                                      Flatten flat;
                [Dense(8, Activation.Tanh)]                    Dense hidden;
                [Dense(8, Activation.Tanh)]                    Dense Hidden;
                [Dense(4)]                                     Dense packedHeadKernel;
                [Dense(1)]                                     Dense head;
                public int HeadBias => 7;
            }
            """, "Forward");
        Assert.Contains("private Span<float> HiddenKernel => parameters.AsSpan(HiddenKernelOffset, HiddenKernelLength);", code);
        Assert.Contains("private Span<float> HiddenLayerKernel => parameters.AsSpan(HiddenLayerKernelOffset, HiddenLayerKernelLength);", code);
        Assert.Contains("private Span<float> LstmForwardKernel => ", code);
        Assert.Contains("private Span<float> LstmForwardLayerKernel => ", code);
        Assert.Contains("private Span<float> HeadLayerBias => ", code);
        Assert.Contains("private Span<float> HeadLayerKernel => ", code); // one stem for all of a layer's weights
        Assert.Contains("packedHeadLayerKernel", code);
        // The weights' names in the weights file and the layers are the user's.
        Assert.Contains("\"Hidden.kernel\"", code);
        Assert.Contains("\"head.bias\"", code);
    }

    /// <summary>An emitter bug on one model is reported as MG0022 naming it, not thrown: a throw drops every model's file.</summary>
    [Fact]
    public void An_emitter_failure_is_reported_as_MG0022_instead_of_thrown()
    {
        var type = Compilations.Create(Mnist).GetTypeByMetadataName("Samples.Mnist.MnistClassifier")!;
        var model = ModelGen.Graph.ModelParser.Parse(type, type.GetAttributes().Single(), report: null, CancellationToken.None)!;
        var (source, failure) = ModelGenerator.TryEmit(model, _ => throw new IndexOutOfRangeException("Index was outside the bounds of the array."));
        Assert.Null(source);
        Assert.Equal("MG0022", failure!.Id);
        Assert.Equal(DiagnosticSeverity.Error, failure.Severity);
        Assert.StartsWith("ModelGen failed to generate model 'MnistClassifier' (IndexOutOfRangeException: Index was outside the bounds of the array.)", failure.GetMessage());
        (source, failure) = ModelGenerator.TryEmit(model, ModelEmitter.Emit);
        Assert.Null(failure);
        Assert.Contains("partial class MnistClassifier", source);
    }

    [Fact]
    public void Pipeline_models_hold_no_symbols_syntax_or_locations()
    {
        var compilation = Compilations.Create(Mnist);
        var driver = CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() }, parseOptions: Compilations.ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));
        var result = driver.RunGenerators(compilation).GetRunResult().Results[0];
        foreach (var output in result.TrackedSteps[TrackingNames.ValidModels].SelectMany(s => s.Outputs))
        {
            AssertNoRoslynObjects(output.Value, new HashSet<object>(ReferenceEqualityComparer.Instance));
        }
    }

    private static void AssertNoRoslynObjects(object? value, HashSet<object> seen)
    {
        if (value is null || value is string || value.GetType().IsPrimitive || value.GetType().IsEnum || !seen.Add(value)) return;
        Assert.False(value is ISymbol or SyntaxNode or Compilation or Location or SemanticModel, $"pipeline holds a {value.GetType()}");
        if (value is System.Collections.IEnumerable items)
        {
            foreach (var item in items) AssertNoRoslynObjects(item, seen);
            return;
        }
        foreach (var field in value.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            AssertNoRoslynObjects(field.GetValue(value), seen);
        }
    }
}

public class FreezingGeneratorTests
{
    private const string Transfer = """
        using ModelGen;

        [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class Transfer
        {
            [Conv2D(4, 3, Padding = Padding.Same)] Conv2D conv1;
            [BatchNormalization] BatchNormalization norm1;
            [Conv2D(4, 3, Padding = Padding.Same)] Conv2D conv2;
            [BatchNormalization] BatchNormalization norm2;
            [GlobalAveragePooling2D] GlobalAveragePooling2D pool;
            [Dense(3, Activation.Softmax)] Dense head;

            [Graph]
            Tensor Forward([Shape(6, 6, 2)] Tensor image) => head.Apply(pool.Apply(Ops.Relu(norm2.Apply(conv2.Apply(Backbone(image))))));

            [Graph(Trainable = false)]
            Tensor Backbone([Shape(6, 6, 2)] Tensor image) => Ops.Relu(norm1.Apply(conv1.Apply(image)));
        }
        """;

    [Fact]
    public void A_frozen_prefix_gets_no_gradient_code_at_all()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod(Transfer, "Backward");

        // The trainable top: conv2 and norm2 in training mode, with weight gradients; norm2 takes its ReLU's derivative as it
        // reads that ReLU's gradient (no ReLU block, no gradient of norm2's own).
        Assert.Contains("BatchNorm.TrainingBackward(relu_1Gradient, conv2Output, Norm2Gamma", backward);
        Assert.Contains("relu: true, beta: Norm2Beta);", backward);
        Assert.DoesNotContain("Activations.Backward", backward);
        Assert.DoesNotContain("norm2Gradient", code);
        Assert.Contains("Conv2KernelGradient", backward);
        // The frozen backbone: no kernel, gamma or input gradients, no gradient views, batch statistics never computed.
        Assert.DoesNotContain("conv1", backward);
        Assert.DoesNotContain("norm1", backward);
        Assert.DoesNotContain("Conv2PatchGradient", backward); // conv2's input (the backbone's output) needs no gradient either
        Assert.DoesNotContain("Conv1KernelGradient", code);
        Assert.DoesNotContain("Norm1GammaGradient", code);
        Assert.DoesNotContain("BatchNorm.TrainingForward(conv1Output", code);
        // The frozen normalization takes the backbone's ReLU in its pass while training (its output is then never written).
        Assert.Contains("BatchNorm.InferenceForward(conv1Output, reluOutput, Norm1Gamma, Norm1Beta, Norm1MovingMean, Norm1MovingVariance, batch * 36, 4, 0.001f, relu: true);", code);
        // Keras' counts: conv 2*3*3*4 + 4 = 76 and 4*3*3*4 + 4 = 148, each BN 16 (8 trainable), head 15.
        Assert.Contains("public const int ParameterCount = 271;", code);
        Assert.Contains("public const int TrainableParameterCount = 171;", code); // conv2 148 + norm2 gamma, beta 8 + head 15
        Assert.Contains("public const int NonTrainableParameterCount = 100;", code);
        Assert.Contains("optimizer.Step(parameters.AsSpan(0, TrainableParameterCount), gradients.AsSpan(0, TrainableParameterCount));", code);
    }
}
