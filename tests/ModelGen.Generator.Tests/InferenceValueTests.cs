using System.Text.RegularExpressions;

namespace ModelGen.Generator.Tests;

/// <summary>
/// An inference copy's values share one buffer by liveness. The check here is independent of the plan that places them: it
/// reads the generated Forward as an inference copy runs it (no training branches), takes each value's live lines from the
/// first that names it to the last (a dropout's local names its input's buffer; an output lives to the end, where Predict
/// copies it out), and holds that any two values whose floats overlap are never named in a line span they share.
/// </summary>
public class InferenceValueTests
{
    public static TheoryData<string, string> Models() => new()
    {
        // Pairs of dense layers (one reading a value, not the input), a dropout between, a skip connection read late.
        { GeneratorTests.Pairs, "headOutput" },
        // Pooled convolutions (their outputs buffers of their own), the second reading a value, BatchNormalization, Flatten read in place, a dropout.
        { """
            using ModelGen;

            [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
            public partial class Cnn
            {
                [Input(16, 16, 1)]                 Input image;
                [Conv2D(8, 3, Activation.Relu)]    Conv2D conv1;
                [MaxPooling2D(2)]                  MaxPooling2D pool1;
                [Conv2D(16, 3, Activation.Relu)]   Conv2D conv2;
                [MaxPooling2D(2)]                  MaxPooling2D pool2;
                [BatchNormalization]               BatchNormalization norm;
                [Flatten]                          Flatten flat;
                [Dropout(0.25)]                    Dropout drop;
                [Dense(32, Activation.Relu)]       Dense hidden;
                [Dense(10, Activation.Softmax)]    Dense predictions;
            }
            """, "predictionsOutput" },
        // An encoder (reading a value) returns states that start a decoder, the final state an output the caller reads after
        // later blocks ran; a residual of the decoder's steps.
        { """
            using ModelGen;

            [Functional(Loss = Loss.MeanSquaredError)]
            public partial class Sequences
            {
                [Dense(8, Activation.Tanh)]        Dense embed;
                [LSTM(6)]                          LSTM encoder;
                [LSTM(6, ReturnSequences = true)]  LSTM decoder;
                [Dense(6, Activation.Tanh)]        Dense mix;
                [Dense(2)]                         Dense readout;

                [Graph]
                (Tensor steps, Tensor state) Forward([Shape(5, 3)] Tensor source, [Shape(4, 3)] Tensor target)
                {
                    var (_, h, c) = encoder.ApplyWithState(embed.Apply(source));
                    var steps = decoder.Apply(target, h, c);
                    return (readout.Apply(Ops.Add(mix.Apply(steps), steps)), h);
                }
            }
            """, "readoutOutput encoderStateHOutput" },
        // A Transformer block: the attention's output projection and the blocks after it go in two parts of the rows at once
        // (a row run), each over its own rows of every value they name, so those values may share floats only row for row.
        { GeneratorTests.TransformerBlock, "labelOutput" },
    };

    [Theory, MemberData(nameof(Models))]
    public void Values_that_share_floats_are_never_live_at_once(string source, string outputs)
    {
        var (code, forward) = GeneratorHarness.RunAndFindMethod(source, "Forward");
        var floats = Regex.Matches(code, @"(\w+Output) = buffers\.Value\(maxBatchSize \* (\d+), maxBatchSize \* (\d+)\);")
            .ToDictionary(m => m.Groups[1].Value, m => (Start: int.Parse(m.Groups[2].Value), End: int.Parse(m.Groups[2].Value) + int.Parse(m.Groups[3].Value)));
        var runs = RowRuns(code, forward);
        var live = LiveLines(runs.Aggregate(forward, (text, run) => text.Replace(run.Call, run.Blocks)));
        foreach (var output in outputs.Split(' '))
        {
            Assert.Contains(output, floats.Keys);
            live[output] = (live[output].First, int.MaxValue);
        }
        var names = floats.Keys.ToList();
        int shared = 0;
        foreach (var x in names)
        {
            foreach (var y in names.Where(y => string.CompareOrdinal(x, y) < 0))
            {
                if (floats[x].Start >= floats[y].End || floats[y].Start >= floats[x].End) continue;
                shared++;
                Assert.True(live[x].Last < live[y].First || live[y].Last < live[x].First,
                    $"{x} (floats {floats[x]}, lines {live[x]}) and {y} (floats {floats[y]}, lines {live[y]}) overlap while both live");
                foreach (var run in runs.Where(r => r.Names.Contains(x) && r.Names.Contains(y)))
                    Assert.True(floats[x] == floats[y], $"{x} (floats {floats[x]}) and {y} (floats {floats[y]}) share floats in {run.Call.Trim()} but not row for row");
            }
        }
        Assert.True(shared > 0, "no two values share floats");
        var constants = Regex.Match(code, @"ValueFloats = (\d+), SeparateValueFloats = (\d+);");
        Assert.True(int.Parse(constants.Groups[1].Value) < int.Parse(constants.Groups[2].Value));
    }

    /// <summary>
    /// Each row run's call in Forward (RowParts.Run), the blocks of its method (without the lines that take each tensor's
    /// rows, which name them all at once) and the values it names. The parts go through the blocks at once, each over its
    /// own rows, so two of those values may share floats only at the same floats (then row r of each is the same floats,
    /// and only one part touches it); in order, the blocks keep each value's live lines as one part sees them.
    /// </summary>
    private static List<(string Call, string Blocks, HashSet<string> Names)> RowRuns(string code, string forward) =>
        Regex.Matches(forward, @"^.*\bmodel\.(\w+)\(first, rows\)\);$", RegexOptions.Multiline).Select(call =>
        {
            var lines = GeneratorHarness.FindMethod(code, call.Groups[1].Value).Split('\n').Skip(1);
            var names = new HashSet<string>();
            var blocks = new List<string>();
            foreach (var line in lines)
            {
                if (Regex.Match(line, @"^\s*(?:ReadOnly)?Span<float> (\w+) = this\.\1\.AsSpan\(") is { Success: true } rows) names.Add(rows.Groups[1].Value);
                else blocks.Add(line);
            }
            return (call.Value, string.Join("\n", blocks), names);
        }).ToList();

    /// <summary>Each buffer's first and last line in an inference pass, a dropout's local counted as its input's buffer.</summary>
    private static Dictionary<string, (int First, int Last)> LiveLines(string forward)
    {
        var live = new Dictionary<string, (int First, int Last)>();
        var locals = new Dictionary<string, string>();
        var lines = forward.Split('\n').Select(l => l.Trim()).ToList();
        for (int i = 1; i < lines.Count; i++)
        {
            string line = lines[i];
            if (line.StartsWith("//") || line.StartsWith("if (training) ")) continue;
            if (line == "if (training)")
            {
                while (lines[i] != "}") i++; // a training-only block: dropout masks, never run by a copy that only predicts
                continue;
            }
            if (Regex.Match(line, @"^ReadOnlySpan<float> (\w+) = (\w+);$") is { Success: true } local)
            {
                locals[local.Groups[1].Value] = local.Groups[2].Value;
                continue;
            }
            foreach (Match name in Regex.Matches(line, @"\b\w+\b"))
            {
                string buffer = locals.TryGetValue(name.Value, out var owner) ? owner : name.Value;
                if (!buffer.EndsWith("Output")) continue;
                live[buffer] = live.TryGetValue(buffer, out var span) ? (span.First, i) : (i, i);
            }
        }
        return live;
    }
}
