using BenchmarkDotNet.Running;

// BenchmarkDotNet suites: dotnet run -c Release --project benchmarks/ModelGen.Benchmarks -- --filter '*' [--job short]
// Peer comparison (used by benchmarks/compare.sh): ... -- --peer OUT.json
if (args.Length == 2 && args[0] == "--peer")
{
    PeerHarness.Run(args[1]);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(MlpBenchmarks).Assembly).Run(args);
