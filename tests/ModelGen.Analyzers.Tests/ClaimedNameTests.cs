using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using ModelGen.Graph;

namespace ModelGen.Analyzers.Tests;

/// <summary>
/// MG0021 against the generator itself: every name the generated code declares or looks up, given to a layer, an input or
/// an output, is either reported where it is written or compiles.
/// </summary>
public class ClaimedNameTests
{
    /// <summary>
    /// Models with one name, NAME, in one role each: a Sequential input, a first hidden layer, a dropout, an output of a
    /// two-output graph, a graph input also read by a sub-model, a convolution's input and the convolution itself, an
    /// LSTM's input, an attention model's input. Their other names start with "qq", so the names the generated code makes
    /// from them (qqHiddenOutput, QqHiddenKernel) are told apart from its own.
    /// </summary>
    private static readonly string[] Templates =
    {
        """
        [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class CLASS { [Input(32)] Input NAME; [Dense(32, Activation.Relu)] Dense qqHidden1; [Dropout(0.2)] Dropout qqDrop; [Dense(32, Activation.Relu)] Dense qqHidden2; [Dense(10, Activation.Softmax)] Dense qqHead; }
        """,
        """
        [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class CLASS { [Input(32)] Input qqPixels; [Dense(32, Activation.Relu)] Dense NAME; [Dropout(0.2)] Dropout qqDrop; [Dense(32, Activation.Relu)] Dense qqHidden2; [Dense(10, Activation.Softmax)] Dense qqHead; }
        """,
        """
        [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class CLASS { [Input(32)] Input qqPixels; [Dense(32, Activation.Relu)] Dense qqHidden1; [Dropout(0.2)] Dropout NAME; [Dense(32, Activation.Relu)] Dense qqHidden2; [Dense(10, Activation.Softmax)] Dense qqHead; }
        """,
        """
        [Functional]
        public partial class CLASS
        {
            [Dense(8, Activation.Relu)] Dense qqLeft; [Dense(8, Activation.Relu)] Dense qqRight; [Dense(3, Activation.Softmax)] Dense NAME; [Dense(1)] Dense qqPrice;
            [Graph, OutputLoss("LABEL", Loss.SparseCategoricalCrossentropy), OutputLoss("qqPrice", Loss.MeanSquaredError)]
            (Tensor NAME, Tensor qqPrice) Forward([Shape(4)] Tensor qqA, [Shape(3)] Tensor qqB)
            {
                var joined = Ops.Concatenate(qqLeft.Apply(qqA), qqRight.Apply(qqB));
                return (NAME.Apply(joined), qqPrice.Apply(joined));
            }
        }
        """,
        """
        [Functional(Loss = Loss.MeanSquaredError)]
        public partial class CLASS
        {
            [Dense(8, Activation.Relu)] Dense qqLeft; [Dense(8, Activation.Relu)] Dense qqRight; [Dense(1)] Dense qqHead;
            [Graph] Tensor Forward([Shape(4)] Tensor NAME, [Shape(3)] Tensor qqOther) => qqHead.Apply(Ops.Concatenate(qqLeft.Apply(NAME), qqRight.Apply(qqOther)));
            [Graph] Tensor QqEncode([Shape(4)] Tensor NAME) => qqLeft.Apply(NAME);
        }
        """,
        """
        [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class CLASS { [Input(12, 12, 1)] Input NAME; [Conv2D(8, 3, Activation.Relu)] Conv2D qqConv; [BatchNormalization] BatchNormalization qqNorm; [MaxPooling2D(2)] MaxPooling2D qqPool; [Flatten] Flatten qqFlatten; [Dense(3, Activation.Softmax)] Dense qqHead; }
        """,
        """
        [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class CLASS { [Input(28, 28, 1)] Input qqPixels; [Conv2D(32, 3, Activation.Relu)] Conv2D NAME; [MaxPooling2D(2)] MaxPooling2D qqPool; [Flatten] Flatten qqFlatten; [Dense(10, Activation.Softmax)] Dense qqHead; }
        """,
        """
        [Sequential(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class CLASS { [Input(8, 4)] Input NAME; [LSTM(16)] LSTM qqLstm; [Dense(3, Activation.Softmax)] Dense qqHead; }
        """,
        """
        [Functional(Loss = Loss.SparseCategoricalCrossentropy)]
        public partial class CLASS
        {
            [Embedding(50, 16)] Embedding qqEmbed; [MultiHeadAttention(2, 8)] MultiHeadAttention qqAttention; [LayerNormalization] LayerNormalization qqNorm;
            [GlobalAveragePooling1D] GlobalAveragePooling1D qqPool; [Dense(3, Activation.Softmax)] Dense qqHead;
            [Graph] Tensor Forward([Shape(6)] Tensor NAME)
            {
                var qqX = qqEmbed.Apply(NAME);
                return qqHead.Apply(qqPool.Apply(qqNorm.Apply(Ops.Add(qqX, qqAttention.Apply(qqX, qqX)))));
            }
        }
        """,
    };

    /// <summary>The names the templates write themselves.</summary>
    private static readonly HashSet<string> TemplateNames = Templates.SelectMany(t => System.Text.RegularExpressions.Regex.Matches(t, @"\b[qQ]q\w*").Select(m => m.Value)).ToHashSet();

    /// <summary>Names of the generator's own making, and ones that once broke it (an all-underscore layer name).</summary>
    private static SortedSet<string> Candidates()
    {
        var names = new SortedSet<string>(StringComparer.Ordinal)
        {
            "__", "_qq", "class", "int", "this", "default", "event", "object", "string", "out", "new", "return",
            "var", "nameof", "global", "value", "dynamic",
        };
        foreach (var template in Templates)
        {
            string code = Assert.Single(AnalyzerHarness.Generate("using ModelGen;\n" + Instance(template, "Neutral", "qqName")));
            foreach (var name in Declared(code))
            {
                // The names made from the templates' own are given too: the tensors', inputs' and outputs' buffers
                // (qqHidden1Output, qqAStaging, qqPriceTargets; an operation's addGradient likewise) and the weights' members
                // (QqHidden1Kernel, QqHidden1KernelOffset, packedQqHidden1Kernel), which the generator moves aside
                // (qqHidden1NodeOutput, QqHidden1LayerKernel); not the templates' names themselves.
                if (!TemplateNames.Contains(name)) names.Add(name);
            }
        }
        return names;
    }

    [Fact]
    public async Task Every_name_the_generated_code_declares_is_reported_or_compiles_as_a_layer_input_or_output()
    {
        var candidates = Candidates().ToList();
        Assert.Contains("batch", candidates);
        Assert.Contains("Predict", candidates);
        var failures = new List<string>();
        for (int t = 0; t < Templates.Length; t++)
        {
            // One compilation per template, a class per name: C0 named candidates[0], and so on.
            var names = candidates.Select((_, i) => $"C{i}").ToList();
            var (_, generatorDiagnostics, models) = await AnalyzerHarness.GenerateEach(candidates.Select((name, i) => Instance(Templates[t], names[i], name)).ToList(), names);
            failures.AddRange(generatorDiagnostics.Select(d => $"template {t}: {d.GetMessage()}"));
            for (int i = 0; i < candidates.Count; i++)
            {
                var model = models[i];
                if (model.ErrorIds.Contains("MG0021"))
                {
                    if (model.Generated) failures.Add($"template {t}, '{candidates[i]}': reported by MG0021, yet generated");
                }
                else if (!model.Generated) failures.Add($"template {t}, '{candidates[i]}': not generated, nothing reported");
                else if (model.FirstCompileError is { } error) failures.Add($"template {t}, '{candidates[i]}': not reported, and the generated code does not compile: {error.GetMessage()}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void Every_claimed_name_is_one_the_generated_code_declares()
    {
        var candidates = Candidates();
        Assert.All(ClaimedNames.Declared, name => Assert.Contains(name, candidates));
    }

    /// <summary>
    /// Beside each method the generated code declares in each template, a method of the user's of the same name and
    /// parameters (the names too), of its required parameters alone (so that it could take our calls), of one parameter
    /// more, and of two optional parameters or a params array more: the first two of a public method are MG0021 under the
    /// user's method and nothing is generated (it would be declared twice); of a private one (Forward, Step, a row run's)
    /// the generated method steps aside (ModelForward) and the model compiles, for the optional and params ones too (they
    /// take our calls); an overload of one parameter more is the user's own, reported nowhere, stepped aside from by none,
    /// as are the others beside a public method.
    /// </summary>
    [Fact]
    public async Task A_users_method_beside_a_generated_one_is_reported_where_public_and_stepped_aside_from_where_private()
    {
        var failures = new List<string>();
        int publics = 0, privates = 0;
        for (int t = 0; t < Templates.Length; t++)
        {
            string code = Assert.Single(AnalyzerHarness.Generate("using ModelGen;\n" + Instance(Templates[t], "Neutral", "qqName")));
            var model = CSharpSyntaxTree.ParseText(code).GetRoot().DescendantNodes().OfType<ClassDeclarationSyntax>().First(c => c.Identifier.ValueText == "Neutral");
            var cases = new List<(string Method, bool Public, string Variant, string Declaration)>();
            foreach (var method in model.Members.OfType<MethodDeclarationSyntax>())
            {
                string name = method.Identifier.ValueText;
                bool isPublic = method.Modifiers.Any(m => m.IsKind(SyntaxKind.PublicKeyword));
                // The types as the user's file names them (it has no using for System or ModelGen.Training).
                string AsWritten(ParameterSyntax p) => System.Text.RegularExpressions.Regex.Replace(p.Type!.ToString(), @"\b(ReadOnlySpan|Span)<", "System.$1<")
                    .Replace("Optimizer", "ModelGen.Training.Optimizer") + " " + p.Identifier.ValueText;
                var parameters = method.ParameterList.Parameters.Select(AsWritten).ToList();
                var required = method.ParameterList.Parameters.Where(p => p.Default is null).Select(AsWritten).ToList();
                cases.Add((name, isPublic, "same", $"public int {name}({string.Join(", ", parameters)}) => 0;"));
                if (required.Count < parameters.Count) cases.Add((name, isPublic, "required", $"public int {name}({string.Join(", ", required)}) => 0;"));
                cases.Add((name, isPublic, "one more", $"public int {name}({string.Join(", ", parameters.Append("string qqExtra"))}) => 0;"));
                // Optional parameters and a params array take our calls too (C# prefers ours where the user's leaves more out,
                // and calls the two ambiguous where both leave some out: the rule steps aside from any that could take them).
                cases.Add((name, isPublic, "optional more", $"public int {name}({string.Join(", ", parameters.Append("long qqA = 0").Append("long qqB = 0"))}) => 0;"));
                cases.Add((name, isPublic, "params more", $"public int {name}({string.Join(", ", parameters.Append("params long[] qqRest"))}) => 0;"));
                if (isPublic) publics++; else privates++;
            }
            var names = cases.Select((_, i) => $"C{i}").ToList();
            var sources = cases.Select((c, i) => { string body = Instance(Templates[t], names[i], "qqName").TrimEnd(); return body.Substring(0, body.Length - 1) + c.Declaration + " }"; }).ToList();
            var (output, generatorDiagnostics, models) = await AnalyzerHarness.GenerateEach(sources, names);
            failures.AddRange(generatorDiagnostics.Select(d => $"template {t}: {d.GetMessage()}"));
            for (int i = 0; i < cases.Count; i++)
            {
                var (method, isPublic, variant, _) = cases[i];
                string what = $"template {t}, {(isPublic ? "public" : "private")} {method}, {variant}";
                bool reported = models[i].ErrorIds.Contains("MG0021");
                bool sameSignature = variant is "same" or "required";
                if (isPublic && sameSignature)
                {
                    if (!reported || models[i].Generated) failures.Add($"{what}: {(reported ? "reported, yet generated" : "not reported")}");
                    continue;
                }
                if (reported || !models[i].Generated) { failures.Add($"{what}: {(reported ? "reported" : "not generated")}"); continue; }
                if (models[i].FirstCompileError is { } error) { failures.Add($"{what}: the generated code does not compile: {error.GetMessage()}"); continue; }
                string generated = output.SyntaxTrees.Single(tree => System.IO.Path.GetFileName(tree.FilePath) == names[i] + ".g.cs").ToString();
                bool aside = generated.Contains($" Model{method}(");
                if (aside != (!isPublic && variant != "one more")) failures.Add($"{what}: the generated method {(aside ? "stepped aside" : "kept its name")}");
            }
        }
        Assert.True(publics >= 4 * Templates.Length && privates >= 3 * Templates.Length, $"{publics} public and {privates} private methods");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>A template with its class name and NAME (written @class where it is a keyword; LABEL as a string).</summary>
    private static string Instance(string template, string className, string name) => template.Replace("CLASS", className)
        .Replace("NAME", SyntaxFacts.GetKeywordKind(name) == SyntaxKind.None ? name : "@" + name).Replace("LABEL", name);

    /// <summary>
    /// The names a generated file declares (members, parameters, locals) or looks up from inside the class (the runtime's
    /// types, Gemm in Gemm.Pack): a member of the same name would be found first.
    /// </summary>
    private static IEnumerable<string> Declared(string code)
    {
        foreach (var node in CSharpSyntaxTree.ParseText(code).GetRoot().DescendantNodes())
        {
            switch (node)
            {
                case IdentifierNameSyntax i when !(i.Parent is MemberAccessExpressionSyntax m && m.Name == i) && !(i.Parent is QualifiedNameSyntax q && q.Right == i):
                    yield return i.Identifier.ValueText;
                    break;
                case ParameterSyntax p: yield return p.Identifier.ValueText; break;
                case VariableDeclaratorSyntax v: yield return v.Identifier.ValueText; break;
                case PropertyDeclarationSyntax p: yield return p.Identifier.ValueText; break;
                case MethodDeclarationSyntax m: yield return m.Identifier.ValueText; break;
                case SingleVariableDesignationSyntax s: yield return s.Identifier.ValueText; break;
                case ForEachStatementSyntax f: yield return f.Identifier.ValueText; break;
            }
        }
    }
}
