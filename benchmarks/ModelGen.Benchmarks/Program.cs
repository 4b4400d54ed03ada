using BenchmarkDotNet.Running;

// BenchmarkDotNet suites: dotnet run -c Release --project benchmarks/ModelGen.Benchmarks -- --filter '*' [--job short]
// Peer comparison: ... -- --serve (one workload at a time on stdin, for benchmarks/compare.sh)
// Only the digits training time (the scikit-learn comparison): ... -- --digits
// A workload's first calls in a fresh process (build, first call, first N calls against N warm ones): ... -- --cold NAME [N]
// Every call's start and length for a while: ... -- --trace NAME SECONDS
// Every workload built and called once (CI): ... -- --check
if (args.Length == 1 && args[0] == "--serve")
{
    PeerHarness.Serve();
    return;
}
if (args.Length is 2 or 3 && args[0] == "--cold")
{
    int calls = args.Length == 3 ? int.Parse(args[2]) : 50;
    Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(PeerHarness.Cold(args[1], calls)));
    return;
}
if (args.Length == 3 && args[0] == "--trace")
{
    PeerHarness.Trace(args[1], double.Parse(args[2]));
    return;
}
if (args.Length == 1 && args[0] == "--check")
{
    int failed = PeerHarness.Check();
    Console.WriteLine(failed == 0 ? "every workload builds and runs" : $"{failed} workloads failed");
    Environment.Exit(failed == 0 ? 0 : 1);
}
if (args.Length == 1 && args[0] == "--digits")
{
    Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(PeerHarness.DigitsFit()));
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(MlpBenchmarks).Assembly).Run(args);
