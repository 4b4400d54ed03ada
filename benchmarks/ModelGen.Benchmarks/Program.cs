using BenchmarkDotNet.Running;

// dotnet run -c Release --project benchmarks/ModelGen.Benchmarks -- --filter '*' [--job short]
BenchmarkSwitcher.FromAssembly(typeof(MlpBenchmarks).Assembly).Run(args);
