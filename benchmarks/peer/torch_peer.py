#!/usr/bin/python3
"""The PyTorch side of benchmarks/compare.sh: the same models and workloads as ModelGen's PeerHarness.

Each configuration runs in its own process so thread pools are sized before torch starts:
  "1 thread"  torch.set_num_threads(1), OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1
  "default"   nothing set: what a user gets (torch 1 intra-op thread, OpenBLAS 2 threads here)
OPENBLAS_CORETYPE is unset by compare.sh so OpenBLAS picks its best kernels for this CPU.
Timing matches the harness: after warm-up, each sample is the mean of back-to-back calls over >= 10 ms;
the median of COMPARE_SAMPLES samples (default 25) is reported. Inference takes the fastest of eager, jit.trace and
jit.trace+freeze+optimize_for_inference; training is zero_grad -> forward -> cross-entropy ->
backward -> Adam(lr=1e-3, eps=1e-7, foreach=True), the Keras-equivalent step.
Usage: torch_peer.py OUT.json
"""
import json
import os
import subprocess
import sys
import time


# Samples per workload: COMPARE_SAMPLES (compare.sh sets it for each of its rounds), 25 when unset.
SAMPLES = int(os.environ.get("COMPARE_SAMPLES", "25"))


def timed(fn, repeats=None, sample_s=0.01):
    repeats = repeats or SAMPLES
    for _ in range(20):
        fn()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < 0.3:
        fn(); calls += 1
    per_call = (time.perf_counter() - start) / calls
    inner = max(1, int(sample_s / per_call))
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t) / inner)
    samples.sort()
    return samples[len(samples) // 2] * 1e3  # ms


def worker(threads):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if threads == "1":
        torch.set_num_threads(1)
    torch.manual_seed(0)

    def mlp():
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 128), nn.ReLU(),
                             nn.Dropout(0.3), nn.Linear(128, 10))

    results = {}
    for batch in (1, 32, 128):
        model = mlp().eval()
        x = torch.rand(batch, 784)
        with torch.no_grad():
            eager = lambda: torch.softmax(model(x), -1)
            traced = torch.jit.trace(model, x)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
            best = min(timed(eager), timed(lambda: torch.softmax(traced(x), -1)), timed(lambda: torch.softmax(frozen(x), -1)))
        results[f"mlp predict b{batch}"] = best

    for batch in (32, 128):
        model = mlp().train()
        x = torch.rand(batch, 784)
        y = torch.randint(0, 10, (batch,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, foreach=True)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        results[f"mlp train step b{batch}"] = timed(step)

    class Residual(nn.Module):
        """The seed's residual MLP: Dense 64 relu -> Dense 64 -> + input -> relu -> Dense 10."""
        def __init__(self):
            super().__init__()
            self.d1, self.d2, self.head = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

        def forward(self, x):
            return self.head(torch.relu(self.d2(torch.relu(self.d1(x))) + x))

    model = Residual().eval()
    x = torch.rand(1, 64)
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        results["residual predict b1"] = min(timed(lambda: torch.softmax(model(x), -1)), timed(lambda: torch.softmax(frozen(x), -1)))
    model = Residual().train()
    x, y = torch.rand(128, 64), torch.randint(0, 10, (128,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, foreach=True)

    def residual_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    results["residual train step b128"] = timed(residual_step)

    # The seed's small CNN: Conv 32 3x3 relu -> MaxPool 2 -> Conv 64 3x3 relu -> MaxPool 2 -> Dense 128 relu -> Dense 10.
    def cnn():
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))
    best = float("inf")
    for layout in (torch.contiguous_format, torch.channels_last):
        model = cnn().eval().to(memory_format=layout)
        x = torch.rand(1, 1, 28, 28).to(memory_format=layout)
        with torch.no_grad():
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
            best = min(best, timed(lambda: torch.softmax(model(x), -1)), timed(lambda: torch.softmax(frozen(x), -1)))
    results["cnn predict b1"] = best
    best = float("inf")
    for layout in (torch.contiguous_format, torch.channels_last):
        model = cnn().train().to(memory_format=layout)
        x, y = torch.rand(64, 1, 28, 28).to(memory_format=layout), torch.randint(0, 10, (64,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, foreach=True)

        def cnn_step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        best = min(best, timed(cnn_step, repeats=11))
    results["cnn train step b64"] = best

    for shape in ((128, 256, 784), (128, 128, 256), (128, 10, 128), (1, 256, 784), (2048, 2048, 2048)):
        m, n, k = shape
        a, b = torch.rand(m, k), torch.rand(k, n)
        results[f"gemm {m}x{n}x{k}"] = timed(lambda: torch.mm(a, b))
    scaling = {}
    for width in (8, 16, 32, 64, 128, 256, 512, 1024, 2048):
        model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)).eval()
        for batch in (1, 128):
            x = torch.rand(batch, width)
            with torch.no_grad():
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
                scaling[f"{width} b{batch}"] = min(timed(lambda: torch.softmax(model(x), -1)), timed(lambda: torch.softmax(frozen(x), -1)))

    import ctypes
    openblas = ctypes.CDLL("libopenblas.so.0")
    openblas.openblas_get_corename.restype = ctypes.c_char_p
    info = {"openblas_core": openblas.openblas_get_corename().decode(), "torch": torch.__version__, "threads": torch.get_num_threads(), "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    print(json.dumps({"results": results, "scaling": scaling, "info": info}))


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
        return
    out = sys.argv[1]
    configs = {}
    for threads in ("1", "default"):
        env = dict(os.environ)
        if threads == "1":
            env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        text = subprocess.run([sys.executable, __file__, "--worker", threads], env=env, check=True, capture_output=True, text=True).stdout
        configs[threads] = json.loads(text.strip().splitlines()[-1])
    with open(out, "w") as f:
        json.dump(configs, f, indent=1)


if __name__ == "__main__":
    main()
