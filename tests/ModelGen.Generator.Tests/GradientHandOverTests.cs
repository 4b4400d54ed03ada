using System.Text.RegularExpressions;

namespace ModelGen.Generator.Tests;

/// <summary>
/// A block that would copy its gradient unchanged into an input's, as that gradient's first write (an Add's operands), hands
/// its floats over instead: the two share one offset and backward copies nothing. Only where no block changes one of the
/// sharing gradients while another is still to be read (the finite-difference check runs the same model: HandedGradients).
/// </summary>
public class GradientHandOverTests
{
    private const string Source = """
        using ModelGen;

        [Functional(Loss = Loss.MeanSquaredError)]
        public partial class HandedGradients
        {
            [Dense(6, Activation.Tanh)] Dense stem;
            [Dense(6)] Dense inner;
            [BatchNormalization] BatchNormalization norm;
            [Dense(6, Activation.Tanh)] Dense bent;
            [Dense(2)] Dense head;

            [Graph]
            Tensor Forward([Shape(4)] Tensor x)
            {
                var s = stem.Apply(x);
                var sum = Ops.Add(s, norm.Apply(inner.Apply(s)));
                return head.Apply(Ops.Add(sum, bent.Apply(sum)));
            }
        }
        """;

    [Fact]
    public void An_add_hands_its_gradient_to_the_operands_whose_values_no_block_changes_while_another_is_read()
    {
        var (code, backward) = GeneratorHarness.RunAndFindMethod(Source, "Backward");
        var offsets = Regex.Matches(code, @"(\w+)Gradient = buffers\.Gradient\(maxBatchSize \* (\d+), maxBatchSize \* (\d+)\);")
            .ToDictionary(m => m.Groups[1].Value, m => int.Parse(m.Groups[2].Value));

        // The first Add: the normalization only reads its gradient, and the stem's is added to (by inner's block) after that read.
        Assert.Contains("// add: Add' (stem and norm take its gradient's floats as theirs: nothing to copy)", backward);
        Assert.DoesNotContain("Merges.Pass(addGradient", backward);
        // The second: bent's block takes tanh' in its own gradient while add's (the floats add_1 hands it) is still to be read.
        Assert.Contains("// add_1: Add' (add takes its gradient's floats as its own: nothing to copy)", backward);
        Assert.Contains("Merges.Pass(add_1Gradient, bentGradient, batch * 6, accumulate: false);", backward);
        Assert.Equal(1, backward.Split("Merges.Pass(").Length - 1);
        Assert.Contains("Gemm.MultiplyTransposedB(bentGradient, BentKernel, addGradient, batch, 6, 6, accumulate: true);", backward);

        Assert.All(new[] { "add", "stem", "norm" }, name => Assert.Equal(offsets["add_1"], offsets[name]));
        Assert.NotEqual(offsets["add_1"], offsets["bent"]);
        Assert.NotEqual(offsets["add_1"], offsets["inner"]); // live while norm's floats are: inner's block reads its own as it adds to stem's
    }
}
