using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace ModelGen.Testing;

/// <summary>Builds in-memory compilations of user code against the real runtime, for generator and analyzer tests.</summary>
internal static class Compilations
{
    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Latest);

    public static readonly ImmutableArray<MetadataReference> References = LoadReferences();

    private static ImmutableArray<MetadataReference> LoadReferences()
    {
        var platform = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator);
        var runtime = typeof(ModelGen.IModel).Assembly.Location;
        var tensors = typeof(System.Numerics.Tensors.TensorPrimitives).Assembly.Location;
        return platform.Where(p => !Path.GetFileName(p).StartsWith("ModelGen.", StringComparison.Ordinal)).Append(runtime).Append(tensors).Distinct().Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToImmutableArray();
    }

    public static CSharpCompilation Create(params string[] sources) => CSharpCompilation.Create(
        "UserModels",
        sources.Select((s, i) => CSharpSyntaxTree.ParseText(s, ParseOptions, path: $"User{i}.cs")),
        References,
        new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
}
