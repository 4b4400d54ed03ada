#!/usr/bin/python3
"""Merges the peer and ModelGen medians of every round into one table (stdout) and RESULTS.md."""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

# Usage: make_table.py RESULTS.md ROUND_DIR... where each round's folder (interleave.py's) holds torch.json and modelgen.json,
# and where measured sklearn.json, digits.json, peak.txt and round_trip.json. The table reports medians over rounds, and
# each speedup as the median of the rounds' own speedups with their range.
out, round_dirs = sys.argv[1], sys.argv[2:]


def load(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    return open(path).read().split() if name.endswith(".txt") else json.load(open(path))


rounds = [{name: load(folder, name + ext) for name, ext in
           (("torch", ".json"), ("modelgen", ".json"), ("sklearn", ".json"), ("digits", ".json"), ("peak", ".txt"),
            ("round_trip", ".json"), ("shared_core", ".json"), ("other_load", ".json"))}
          for folder in round_dirs]
first = rounds[0]
median = statistics.median


def best_torch(r, group, name):
    """The faster PyTorch configuration's (one thread or its default) time in round r."""
    return min(r["torch"]["1"][group][name], r["torch"]["default"][group][name])


def speedup(ratios):
    """The median of the rounds' own speedups, with their range when there are several rounds."""
    spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
    return f"{median(ratios):.2f}x{spread}"


# The cores' round trip before and after each workload (round_trip.c): a round counts as slow for a workload where either
# was more than twice the run's floor on cores of their own (Cores.floor), the host having moved the vCPUs apart, and as shared where
# either probe found the two vCPUs on one physical core's hyperthreads (each kept under Cores.SharedCore of its multiply-add
# rate beside the other; older runs did not probe it). The rows say in how many of their rounds each happened; the host can
# also move them and back between two probes, so a row without a mark may have met it too.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interleave import Cores, Load  # noqa: E402  the thresholds the run waited on
SHARED_CORE, BUSY = Cores.SharedCore, Load.Busy
trips = [t for r in rounds if r["round_trip"] for pair in r["round_trip"].values() for t in pair]
own_core_trips = [t for r in rounds if r["round_trip"] for name, pair in r["round_trip"].items()
                  for t, share in zip(pair, (r["shared_core"] or {}).get(name, [1, 1])) if share >= SHARED_CORE]
slow_above = 2 * Cores.floor(own_core_trips) if own_core_trips else None
shares = [s for r in rounds if r["shared_core"] for pair in r["shared_core"].values() for s in pair]
# Each workload's largest share of a core taken by anything but the side timed in one of its turns (Load), a round each.
loads = {}
for r in rounds:
    for name, by_side in (r["other_load"] or {}).items():
        loads.setdefault(name, []).append(max(by_side.values()))


def marked(name, key):
    """The row's label, with †n where n of its rounds ran while the round trip was slow, ‡n where n shared one core, §n where
    in n a turn lost more than BUSY of a core to others."""
    busy = sum(1 for share in loads.get(key, []) if share > BUSY)
    slow = shared = 0
    if slow_above is not None:
        slow = sum(1 for r in rounds if r["round_trip"] and max(r["round_trip"].get(key, [0])) > slow_above)
        shared = sum(1 for r in rounds if r["shared_core"] and min(r["shared_core"].get(key, [1])) < SHARED_CORE)
    return name + "".join(f" {mark}{n}" for mark, n in (("†", slow), ("‡", shared), ("§", busy)) if n)


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
threads = first["modelgen"]["info"]["threads"]
label = "products of 1M+ multiply-adds shared by 2 threads" if threads > 1 else "1 thread"
rows = [f"| workload | ModelGen ms ({label}) | PyTorch ms, 1 thread | PyTorch ms, default threads | speedup vs best PyTorch |", "|---|---|---|---|---|"]
for name in first["modelgen"]["results"]:
    ours = [r["modelgen"]["results"][name] for r in rounds]
    one = [r["torch"]["1"]["results"][name] for r in rounds]
    default = [r["torch"]["default"]["results"][name] for r in rounds]
    ratios = [best_torch(r, "results", name) / m for r, m in zip(rounds, ours)]
    gflops = ""
    if name.startswith("gemm"):
        m, n, k = (int(v) for v in name.split()[1].split("x"))
        gflops = f"; {2 * m * n * k / median(ours) / 1e6:.0f} vs {2 * m * n * k / min(median(one), median(default)) / 1e6:.0f} GFLOP/s"
    rows.append(f"| {marked(name, 'results/' + name)} | {median(ours):.4f} | {median(one):.4f} | {median(default):.4f} | {speedup(ratios)}{gflops} |")
table = "\n".join(rows)
samples = os.environ.get("COMPARE_SAMPLES", "25")
core = first['torch']['1']['info']['openblas_core']
avx2 = os.environ.get("COMPARE_VECTORS") == "avx2"
unset_core = first['torch']['1']['info'].get('openblas_unset_core', core)
blas = (f"OPENBLAS_CORETYPE={core} and ATEN_CPU_CAPABILITY={first['torch']['1']['info']['aten_capability']}: both sides on 256-bit vectors as on a machine without AVX-512"
        if avx2 else f"OPENBLAS_CORETYPE unset: it chose {core}" if core == unset_core
        else f"OPENBLAS_CORETYPE={core}: left unset, this OpenBLAS, older than the CPU, took {unset_core}'s narrower vectors; {core} "
             f"is the widest kernels it has that this CPU runs, torch_peer.best_coretype")
header = (f"Machine: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores. "
          f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
          f"PyTorch {first['torch']['1']['info']['torch']} on OpenBLAS ({blas}); ModelGen {first['modelgen']['info']['simd']}, .NET {first['modelgen']['info']['runtime']}.\n"
          f"{len(rounds)} rounds; in each, every workload timed on both sides seconds apart (benchmarks/peer/interleave.py), its median of {samples} "
          "samples (each >= 10 ms of back-to-back calls). Times are medians over the rounds. Speedup = best PyTorch median / ModelGen "
          "median within a round (above 1: ModelGen faster): the median over rounds, the rounds' range in brackets.\n")
if trips:
    header += (f"The cores' round trip, measured before and after each workload (benchmarks/peer/round_trip.c): median "
               f"{median(trips):.0f} ns, {min(trips):.0f}-{max(trips):.0f}. †n: in n of the row's rounds it was above "
               f"{slow_above:.0f} ns (twice their tenth percentile on cores of their own), "
               "the host having moved the two vCPUs apart (it does so within seconds): workloads that hand work between the cores "
               "many times per call slow down there, large products barely. A workload that met it waited for the trip to come "
               "back and took its turns again once, while the run's patience lasted (interleave.py); †n counts the rounds where "
               "it was slow all the same.\n")
if shares:
    header += (f"‡n: in n of the row's rounds a probe found the two vCPUs on one physical core's two hyperthreads (round_trip.c: "
               f"each thread kept under {SHARED_CORE} of its multiply-add rate while the other ran too; "
               f"{sum(1 for s in shares if s < SHARED_CORE)} of {len(shares)} probes): work shared by two threads gains little "
               "there while one thread runs at full speed, so ModelGen's two threads lose ground to a one-thread peer; such a "
               "workload waited and took its turns again as for a slow trip, and ‡n counts the rounds where it was shared all "
               "the same.\n")
if loads:
    turns = [share for shares_of in loads.values() for share in shares_of]
    header += (f"§n: in n of the row's rounds a side's turn lost more than {BUSY} of a core to CPU time it did not take (another "
               "process, the other sides' servers, the kernel or the host's steal: /proc/stat, interleave.py's Load), after "
               "waiting for a quiet second and taking its turns again once, or with the patience spent. The largest such share "
               f"in a workload's turns: median {median(turns):.3f} of a core, at most {max(turns):.3f}; "
               f"{sum(1 for t in turns if t > BUSY)} of {len(turns)} above {BUSY}.\n")
# Scaling: MLP width -> parameters, ModelGen vs the best PyTorch configuration, at batch 1 and 128.
def params(w):
    return 2 * w * w + 2 * w + 10 * w + 10
widths = sorted({int(k.split()[0]) for k in first["modelgen"]["scaling"]})
scaling_rows = ["| width | parameters | batch | ModelGen ms | best PyTorch ms | speedup |", "|---|---|---|---|---|---|"]
series = {}
for batch in (1, 128):
    for w in widths:
        key = f"{w} b{batch}"
        ours = [r["modelgen"]["scaling"][key] for r in rounds]
        theirs = [best_torch(r, "scaling", key) for r in rounds]
        scaling_rows.append(f"| {marked(str(w), 'scaling/' + key)} | {params(w):,} | {batch} | {median(ours):.4f} | {median(theirs):.4f} | {speedup([t / o for t, o in zip(theirs, ours)])} |")
        series.setdefault(f"ModelGen b{batch}", []).append((params(w), median(ours)))
        series.setdefault(f"PyTorch b{batch}", []).append((params(w), median(theirs)))
scaling_table = "\n".join(scaling_rows)

def svg(series, path):
    """A log-log plot, drawn by hand so no plotting library is needed."""
    import math
    W, H, L, R, T, B = 720, 440, 70, 170, 30, 50
    xs = [p for s in series.values() for p, _ in s]
    ys = [t for s in series.values() for _, t in s]
    x0, x1 = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    px = lambda v: L + (math.log10(v) - x0) / (x1 - x0) * (W - L - R)
    py = lambda v: H - B - (math.log10(v) - y0) / (y1 - y0) * (H - T - B)
    colors = {"ModelGen b1": "#1f77b4", "PyTorch b1": "#ff7f0e", "ModelGen b128": "#2ca02c", "PyTorch b128": "#d62728"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{L}" y="18" font-size="14">MLP inference time vs parameters (log-log), {cpu}</text>']
    for e in range(x0, x1 + 1):
        parts.append(f'<line x1="{px(10**e):.1f}" y1="{T}" x2="{px(10**e):.1f}" y2="{H-B}" stroke="#ddd"/><text x="{px(10**e):.1f}" y="{H-B+16}" text-anchor="middle">1e{e}</text>')
    for e in range(y0, y1 + 1):
        parts.append(f'<line x1="{L}" y1="{py(10**e):.1f}" x2="{W-R}" y2="{py(10**e):.1f}" stroke="#ddd"/><text x="{L-6}" y="{py(10**e)+4:.1f}" text-anchor="end">1e{e} ms</text>')
    parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">parameters</text>')
    for i, (name, points) in enumerate(series.items()):
        color = colors.get(name, "black")
        dash = ' stroke-dasharray="6 3"' if name.startswith("PyTorch") else ""
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="' + " ".join(f"{px(p):.1f},{py(t):.1f}" for p, t in points) + '"/>')
        parts.append(f'<line x1="{W-R+10}" y1="{T+20*i+6}" x2="{W-R+40}" y2="{T+20*i+6}" stroke="{color}" stroke-width="2"{dash}/><text x="{W-R+46}" y="{T+20*i+10}">{name}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))

# Training on the digits: scikit-learn's MLPClassifier(64) against the same configuration trained by ModelGen's Fit.
digits_table = ""
digit_rounds = [r for r in rounds if r["sklearn"] and r["digits"]]
if digit_rounds:
    sk1 = [r["sklearn"]["1"]["fit_s"] for r in digit_rounds]
    skd = [r["sklearn"]["default"]["fit_s"] for r in digit_rounds]
    ours = [r["digits"]["fit_s"] for r in digit_rounds]
    last_sk, last_ours = digit_rounds[-1]["sklearn"], digit_rounds[-1]["digits"]
    digits_table = "\n".join([
        "| trainer | fit s (median of 5 fits, then over rounds) | epochs | test accuracy |", "|---|---|---|---|",
        f"| scikit-learn MLPClassifier(64), 1 thread | {median(sk1):.4f} | {last_sk['1']['epochs']} | {last_sk['1']['test_accuracy']:.4f} |",
        f"| scikit-learn MLPClassifier(64), default threads | {median(skd):.4f} | {last_sk['default']['epochs']} | {last_sk['default']['test_accuracy']:.4f} |",
        f"| ModelGen Fit, 64-64-10, Adam 1e-3, batch 200 | {median(ours):.4f} | {last_ours['epochs']} | {last_ours['test_accuracy']:.4f} |",
        "", f"Speedup vs the faster scikit-learn run: {speedup([min(a, b) / o for a, b, o in zip(sk1, skd, ours)])}."])

# One core: the 2048^3 product with ModelGen's second thread off, against OpenBLAS on one thread and the FMA peak.
single_text = ""
if "single_thread" in first["modelgen"]:
    name = "gemm 2048x2048x2048"
    flops = 2 * 2048 ** 3
    ours = [r["modelgen"]["single_thread"][name] for r in rounds]
    theirs = [r["torch"]["1"]["results"][name] for r in rounds]
    # peak_fma prints the core's FMA peak and the ceiling of the packed micro-kernel ModelGen runs there (12x32 on AVX-512,
    # 6x16 on AVX2) with its operands in L1, in the round's ModelGen turn.
    share = ""
    peaked = [(float(r["peak"][0]), float(r["peak"][1]), r["modelgen"]["single_thread"][name]) for r in rounds if r["peak"] and len(r["peak"]) == 2]
    if peaked:
        peak, ceiling = median(p for p, _, _ in peaked), median(c for _, c, _ in peaked)
        of_peak = median(flops / t / 1e6 / p for p, _, t in peaked)
        of_ceiling = median(flops / t / 1e6 / c for _, c, t in peaked)
        share = (f", {of_peak:.0%} of this core's FMA peak ({peak:.0f} GFLOP/s) and {of_ceiling:.0%} of a micro-kernel's "
                 f"ceiling on it ({ceiling:.0f} GFLOP/s, operands in L1; benchmarks/peer/peak_fma.c, best of 5 each; shares are "
                 "medians of each round's own)")
    single_text = (f"One core, {name}: ModelGen {median(ours):.1f} ms = {flops / median(ours) / 1e6:.0f} GFLOP/s{share}; "
                   f"OpenBLAS on one thread {median(theirs):.1f} ms = {flops / median(theirs) / 1e6:.0f} GFLOP/s.")

# Two cores, the MLP at batch 128: its target, 1.6x the best PyTorch, asks more multiply-adds a second than the two cores'
# FMA units can do (twice one core's peak is their ceiling), so the run states both shares.
mlp_text = ""
name = "mlp predict b128"
probed = [r for r in rounds if r["peak"] and len(r["peak"]) == 2]
if probed and name in first["modelgen"]["results"]:
    flops = 2 * 128 * (784 * 256 + 256 * 128 + 128 * 10)
    ceilings = [2 * float(r["peak"][0]) for r in probed]
    ours = [flops / r["modelgen"]["results"][name] / 1e6 for r in probed]
    asked = [1.6 * flops / best_torch(r, "results", name) / 1e6 for r in probed]
    mlp_text = (f"Two cores, {name} ({flops / 1e6:.1f} MFLOP a call in its three products): ModelGen {median(ours):.0f} GFLOP/s, "
                f"{median(o / c for o, c in zip(ours, ceilings)):.0%} of twice this core's FMA peak ({median(ceilings):.0f} GFLOP/s, "
                f"the most two cores can do); 1.6x the best PyTorch would take {median(asked):.0f} GFLOP/s, "
                f"{median(a / c for a, c in zip(asked, ceilings)):.0%} of it (shares are medians of each round's own).")
    # Half the batch on one core alone: what two cores that split the work evenly, losing nothing to it, would take.
    half = "mlp predict b64"
    if half in first["modelgen"].get("single_thread", {}):
        halves = [r["modelgen"]["single_thread"][half] for r in rounds]
        floor = speedup([best_torch(r, "results", name) / h for r, h in zip(rounds, halves)])
        longer = median(r["modelgen"]["results"][name] / h - 1 for r, h in zip(rounds, halves))
        mlp_text += (f" Half the batch (64 rows) on one core alone takes {median(halves):.4f} ms: two cores that split the work "
                     f"evenly and lost nothing to it would take as long, {floor} the best PyTorch; ModelGen's two take "
                     f"{longer:.1%} longer than that.")

plot = "scaling-avx2.svg" if avx2 else "scaling.svg"
svg(series, os.path.join(os.path.dirname(out), plot))
print(header)
print(table)
print()
print(single_text)
print()
print(mlp_text)
print()
print(scaling_table)
print()
print(digits_table)
with open(out, "w") as f:
    f.write("# ModelGen vs PyTorch on this machine" + (", AVX2 on both sides" if avx2 else "") + "\n\nProduced by `"
            + ("COMPARE_VECTORS=avx2 " if avx2 else "") + "bash benchmarks/compare.sh`.\n\n" + header + "\n" + table + "\n\n"
            + "".join(text + "\n\n" for text in (single_text, mlp_text) if text) +
            "## Scaling: MLPs of growing width (input w, two hidden layers of w, 10 outputs), inference\n\n"
            f"![scaling curve]({plot})\n\n" + scaling_table + "\n")
    if digits_table:
        f.write("\n## Training on the digits: scikit-learn's MLPClassifier vs Fit\n\n"
                "The same configuration (64 relu units, Adam 1e-3, batches of 200, 200 epochs, scaled digits, 80/20 split); "
                "scikit-learn also applies its L2 penalty (1e-4) and its own split (random_state=0).\n\n" + digits_table + "\n")
