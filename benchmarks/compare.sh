#!/usr/bin/env bash
# ModelGen vs PyTorch, side by side on this machine, in one run of three rounds (about 9 min). Prints a table and writes
# benchmarks/RESULTS.md.
#   bash benchmarks/compare.sh                 (COMPARE_ROUNDS=1 for one pass, about 3 min)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
# The peer as shared/peers measured it: Debian's torch on OpenBLAS. Without libopenblas0-pthread, python3-torch
# falls back to the reference BLAS (naive loops, 20-50x slower), which would make any comparison meaningless.
if ! /usr/bin/python3 -c "import torch, sklearn" 2>/dev/null || ! ldconfig -p | grep -q libopenblas.so.0; then
  echo "installing Debian's python3-torch, python3-sklearn and OpenBLAS for the peers..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-sklearn libopenblas0-pthread >/dev/null
fi
# Built first, and the compiler servers a build leaves running shut down, so no build work shares the cores with a timing
# (right after a `dotnet run`, the digits fit measured 0.15-0.16 s instead of 0.12-0.13).
echo "building ModelGen's side..."
dotnet build -c Release benchmarks/ModelGen.Benchmarks >/dev/null
dotnet build-server shutdown >/dev/null 2>&1 || true
if grep -q avx512f /proc/cpuinfo && command -v gcc >/dev/null; then gcc -O2 -mavx512f -mfma benchmarks/peer/peak_fma.c -o "$out/peak_fma"; fi
# Rounds, each side's turn alternating: this machine's speed drifts by 10-50% over minutes (a whole run of one side could land
# in a slow phase and the other in a fast one), so every round yields its own ratios, from medians taken a minute or two apart,
# and the table reports the median over rounds. COMPARE_ROUNDS=1 gives a quick single pass.
rounds=${COMPARE_ROUNDS:-3}
export COMPARE_SAMPLES=${COMPARE_SAMPLES:-15}
modelgen() {
  echo "  ModelGen..."
  dotnet benchmarks/ModelGen.Benchmarks/bin/Release/net10.0/ModelGen.Benchmarks.dll --peer "$1/modelgen.json" >/dev/null
  # The digits fit in a process of its own, as scikit-learn's: after the workloads above (their large arrays on the heap) the
  # same fits measured 0.134-0.136 s instead of 0.122-0.128.
  dotnet benchmarks/ModelGen.Benchmarks/bin/Release/net10.0/ModelGen.Benchmarks.dll --digits > "$1/digits.json"
  # The single-core FMA peak and a micro-kernel's ceiling, the yardsticks for the one-thread GEMM, in the same round (AVX-512
  # machines with a C compiler; skipped otherwise).
  if [[ -x "$out/peak_fma" ]]; then "$out/peak_fma" > "$1/peak.txt"; fi
}
peers() {
  echo "  PyTorch peer (OPENBLAS_CORETYPE unset so OpenBLAS picks its best kernels for this CPU)..."
  env -u OPENBLAS_CORETYPE /usr/bin/python3 benchmarks/peer/torch_peer.py "$1/torch.json"
  echo "  scikit-learn peer (MLPClassifier on the digits)..."
  /usr/bin/python3 benchmarks/peer/sklearn_peer.py "$1/sklearn.json"
}
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds ($COMPARE_SAMPLES samples per workload)"
  mkdir -p "$out/round$round"
  if (( round % 2 )); then peers "$out/round$round"; modelgen "$out/round$round"
  else modelgen "$out/round$round"; peers "$out/round$round"; fi
done
/usr/bin/python3 benchmarks/peer/make_table.py benchmarks/RESULTS.md "$out"/round*
