#!/usr/bin/python3
"""Merges the peer and ModelGen medians into one table (stdout) and RESULTS.md."""
import datetime
import json
import platform
import subprocess
import sys

torch_runs, modelgen, out = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
rows = ["| workload | ModelGen ms (1 thread) | PyTorch ms, 1 thread | PyTorch ms, default threads | speedup vs best PyTorch |", "|---|---|---|---|---|"]
for name, ours in modelgen["results"].items():
    one, default = torch_runs["1"]["results"][name], torch_runs["default"]["results"][name]
    best = min(one, default)
    rows.append(f"| {name} | {ours:.4f} | {one:.4f} | {default:.4f} | {best / ours:.2f}x |")
table = "\n".join(rows)
header = (f"Machine: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores. "
          f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
          f"PyTorch {torch_runs['1']['info']['torch']} on OpenBLAS (OPENBLAS_CORETYPE unset: it chose {torch_runs['1']['info']['openblas_core']}); ModelGen {modelgen['info']['simd']}, .NET {modelgen['info']['runtime']}.\n"
          "Medians of 25 samples (each >= 10 ms of back-to-back calls). Speedup = best PyTorch median / ModelGen median (above 1: ModelGen faster).\n")
print(header)
print(table)
with open(out, "w") as f:
    f.write("# ModelGen vs PyTorch on this machine\n\nProduced by `bash benchmarks/compare.sh`.\n\n" + header + "\n" + table + "\n")
