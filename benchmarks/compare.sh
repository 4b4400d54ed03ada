#!/usr/bin/env bash
# ModelGen vs PyTorch, side by side on this machine, in one run of three rounds. Prints a table and writes
# benchmarks/RESULTS.md.
#   bash benchmarks/compare.sh                 (COMPARE_ROUNDS=1 for one pass)
#   COMPARE_VECTORS=avx2 bash benchmarks/compare.sh
#                                              both sides on 256-bit vectors, as on a machine without AVX-512: ModelGen with
#                                              DOTNET_EnableAVX512=0, PyTorch with OPENBLAS_CORETYPE=Haswell and
#                                              ATEN_CPU_CAPABILITY=avx2 (scikit-learn too on Haswell kernels); writes
#                                              benchmarks/RESULTS-avx2.md and scaling-avx2.svg instead
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
results=benchmarks/RESULTS.md
case "${COMPARE_VECTORS:-}" in
  "") ;;
  avx2) export COMPARE_VECTORS DOTNET_EnableAVX512=0 OPENBLAS_CORETYPE=Haswell ATEN_CPU_CAPABILITY=avx2; results=benchmarks/RESULTS-avx2.md ;;
  *) echo "COMPARE_VECTORS is avx2 or unset, not '$COMPARE_VECTORS'" >&2; exit 2 ;;
esac
# The peer as shared/peers measured it: Debian's torch on OpenBLAS. Without libopenblas0-pthread, python3-torch
# falls back to the reference BLAS (naive loops, 20-50x slower), which would make any comparison meaningless.
# (grep reads all of ldconfig's output: with -q it would stop at the first match, ldconfig would die of SIGPIPE, and under
# pipefail the check would fail and reinstall every time.)
if ! /usr/bin/python3 -c "import torch, sklearn" 2>/dev/null || ! ldconfig -p | grep libopenblas.so.0 >/dev/null; then
  echo "installing Debian's python3-torch, python3-sklearn and OpenBLAS for the peers..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-sklearn libopenblas0-pthread >/dev/null
fi
# Built first, and the compiler servers a build leaves running shut down, so no build work shares the cores with a timing
# (right after a `dotnet run`, the digits fit measured 0.15-0.16 s instead of 0.12-0.13).
echo "building ModelGen's side..."
dotnet build -c Release benchmarks/ModelGen.Benchmarks >/dev/null
dotnet build-server shutdown >/dev/null 2>&1 || true
# The single-core FMA peak and a micro-kernel's ceiling, the yardsticks for the one-thread GEMM, measured in each round at
# the widest vectors ModelGen uses on this machine (AVX-512, else AVX2 with FMA; skipped without either or a C compiler).
# The cores' round trip (a cache line there and back) is measured before and after every workload: the host changes it by
# 4-6x as it moves the vCPUs, and the table marks the rows whose rounds ran while it was slow.
probes=()
if command -v gcc >/dev/null; then
  if grep -q avx512f /proc/cpuinfo && [ -z "${COMPARE_VECTORS:-}" ]; then flags=(-mavx512f -mfma)
  elif grep -q avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then flags=(-mavx2 -mfma)
  else flags=()
  fi
  if [ ${#flags[@]} -gt 0 ]; then gcc -O2 "${flags[@]}" benchmarks/peer/peak_fma.c -o "$out/peak_fma" && probes+=(--peak "$out/peak_fma"); fi
  # COMPARE_PATIENCE: seconds the whole run may wait for the cores' round trip to come back from the host's slow placement.
  gcc -O2 -pthread benchmarks/peer/round_trip.c -o "$out/round_trip" && probes+=(--round-trip "$out/round_trip" --patience "${COMPARE_PATIENCE:-600}")
fi
# Rounds in which both sides stay up and take turns workload by workload (peer/interleave.py): this machine's speed drifts
# by 10-50% over minutes, and a side timed all at once and then the other could land in different phases (the CNN at batch 1
# read 4.2x in one session and 3.3x in the next with no CNN code changed). Every round yields its own ratios, and the table
# reports the median over rounds. Each side's turn is also watched for CPU time taken by anything else (another process, the
# host's steal: interleave.py's Load), and a workload that lost more than a tenth of a core to it takes its turns again.
# COMPARE_ROUNDS=1 gives a quick single pass.
export COMPARE_SAMPLES=${COMPARE_SAMPLES:-15}
if [ -n "${COMPARE_VECTORS:-}" ]; then
  echo "ModelGen and PyTorch on $COMPARE_VECTORS only (see the top of this script), and scikit-learn, in turns..."
else
  echo "ModelGen, PyTorch (OPENBLAS_CORETYPE unset so OpenBLAS picks its best kernels for this CPU, or set to its widest where it would"
  echo "fall back to narrower vectors than the CPU has: peer/torch_peer.py's best_coretype) and scikit-learn, in turns..."
fi
/usr/bin/python3 benchmarks/peer/interleave.py "$out" "${COMPARE_ROUNDS:-3}" benchmarks/ModelGen.Benchmarks/bin/Release/net10.0/ModelGen.Benchmarks.dll "${probes[@]}"
/usr/bin/python3 benchmarks/peer/make_table.py "$results" "$out"/round[0-9]*
