using BenchmarkDotNet.Running;

// BenchmarkDotNet suites: dotnet run -c Release --project benchmarks/ModelGen.Benchmarks -- --filter '*' [--job short]
// Peer comparison: ... -- --serve (one workload at a time on stdin, for benchmarks/compare.sh)
// Only the digits training time (the scikit-learn comparison): ... -- --digits
if (args.Length == 1 && args[0] == "--serve")
{
    PeerHarness.Serve();
    return;
}
if (args.Length == 1 && args[0] == "--digits")
{
    Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(PeerHarness.DigitsFit()));
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(MlpBenchmarks).Assembly).Run(args);
