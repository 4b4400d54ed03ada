using System.Diagnostics;
using System.IO.Compression;

namespace ModelGen.Package.Tests;

/// <summary>
/// Packs the ModelGen package and installs it into a fresh project from a local folder feed, as a newcomer
/// installing from NuGet would: the generator must run from the package, the model must train and predict.
/// </summary>
public sealed class PackageTests : IDisposable
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif
    private readonly string work = Directory.CreateTempSubdirectory("modelgen-package-").FullName;

    public void Dispose() => Directory.Delete(work, recursive: true);

    [Fact]
    public void A_fresh_project_consumes_the_package_and_trains_a_model()
    {
        string root = FindRoot();
        string feed = Directory.CreateDirectory(Path.Combine(work, "feed")).FullName;
        // A version of its own, so NuGet's global cache can never serve a package from an earlier run.
        string version = "0.1.0-test" + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff");
        // --no-build: pack the binaries this test run was built from; rebuilding would overwrite assemblies other test processes have loaded.
        Run(root, "pack", Path.Combine(root, "src", "ModelGen.Runtime", "ModelGen.Runtime.csproj"), "-c", Configuration, "--no-build", "--no-restore", "-o", feed, $"-p:Version={version}");

        string package = Assert.Single(Directory.GetFiles(feed, "*.nupkg"));
        using (var zip = ZipFile.OpenRead(package))
        {
            var entries = zip.Entries.Select(e => e.FullName).ToList();
            Assert.Contains("lib/net10.0/ModelGen.Runtime.dll", entries);
            Assert.Contains("analyzers/dotnet/cs/ModelGen.Generator.dll", entries);
            Assert.Contains("analyzers/dotnet/cs/ModelGen.Analyzers.dll", entries);
            Assert.Contains("analyzers/dotnet/cs/ModelGen.CodeFixes.dll", entries);
        }

        string app = Directory.CreateDirectory(Path.Combine(work, "app")).FullName;
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="modelgen-local" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="ModelGen" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), """
            using System;
            using System.Linq;
            using ModelGen;
            using ModelGen.Training;

            var model = new Xor(maxBatchSize: 4, seed: 1);
            var x = new float[] { 0, 0, 0, 1, 1, 0, 1, 1 };
            var y = new float[] { 0, 1, 1, 0 };
            var optimizer = new Adam(0.05f);
            float first = model.TrainStep(x, y, optimizer), last = first;
            for (int i = 0; i < 300; i++) last = model.TrainStep(x, y, optimizer);
            var predictions = model.Predict(x);
            Console.WriteLine($"parameters: {Xor.ParameterCount}");
            Console.WriteLine($"loss fell: {last < first / 4}");
            Console.WriteLine("predictions: " + string.Join(" ", predictions.Select(p => p > 0.5f ? 1 : 0)));

            [Sequential(Loss = Loss.BinaryCrossentropy)]
            partial class Xor
            {
                [Input(2)] Input point;
                [Dense(8, Activation.Tanh)] Dense hidden;
                [Dense(1, Activation.Sigmoid)] Dense output;
            }
            """);
        string output = Run(app, "run", "-c", "Release");
        Assert.Contains("parameters: 33", output);
        Assert.Contains("loss fell: True", output);
        Assert.Contains("predictions: 0 1 1 0", output);
    }

    private static string Run(string directory, params string[] arguments)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        // The test host's MSBuild variables would point the child build at the wrong SDK pieces.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(key);
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(8)), "dotnet " + string.Join(' ', arguments) + " timed out");
        string text = stdout.Result + stderr.Result;
        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(' ', arguments)} failed:\n{text}");
        return text;
    }

    private static string FindRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(directory.FullName, "ModelGen.sln"))) directory = directory.Parent!;
        return directory.FullName;
    }
}
