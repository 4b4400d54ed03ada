#!/usr/bin/python3
"""The PyTorch side of benchmarks/compare.sh: the same models and workloads as ModelGen's PeerHarness.

Each configuration runs in its own process so thread pools are sized before torch starts:
  "1 thread"  torch.set_num_threads(1), OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1
  "default"   nothing set: what a user gets (torch 1 intra-op thread, OpenBLAS 2 threads here)
OPENBLAS_CORETYPE is unset so OpenBLAS picks its best kernels for this CPU, unless it would fall back to narrower vectors than
the CPU has (a release older than the CPU: see best_coretype); then it names the widest kernels the library has and the CPU
runs. With COMPARE_VECTORS=avx2, both OpenBLAS and ATen are held to their AVX2 kernels instead.
Timing matches the harness: after warm-up, each sample is the mean of back-to-back calls over >= 10 ms;
the median of COMPARE_SAMPLES samples (default 25) is reported. Inference takes the fastest of eager, jit.trace and
jit.trace+freeze+optimize_for_inference; training is zero_grad -> forward -> cross-entropy ->
backward -> Adam(lr=1e-3, eps=1e-7, foreach=True), the Keras-equivalent step.
Usage: torch_peer.py --serve 1|default        one workload at a time on stdin (peer/interleave.py starts both)
"""
import functools
import json
import os
import subprocess
import sys
import time

# Samples per workload: COMPARE_SAMPLES (compare.sh sets it for its rounds), 25 when unset.
SAMPLES = int(os.environ.get("COMPARE_SAMPLES", "25"))


def timed(fn, first_time=True, repeats=None, sample_s=0.01):
    """The median of `repeats` samples in ms, after a warm-up: 0.3 s the first time, 0.2 s after the other side's turn."""
    repeats = repeats or SAMPLES
    for _ in range(20 if first_time else 3):
        fn()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < (0.3 if first_time else 0.2):
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


def workloads(threads):
    """Every workload as "group/name" -> (builder, grad, repeats): the builder returns its variants (the fastest counts),
    built on first use under the workload's grad mode; in the order they are timed."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if threads == "1":
        torch.set_num_threads(1)
    torch.manual_seed(0)

    def mlp():
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 128), nn.ReLU(),
                             nn.Dropout(0.3), nn.Linear(128, 10))

    def inference(model, x, traced=True, head=lambda y: torch.softmax(y, -1)):
        """Eager, traced and frozen+optimized variants of head(model(x)) (a classifier's softmax); built under no_grad."""
        variants = [lambda: head(model(x))]
        if traced:
            traced_model = torch.jit.trace(model, x)
            variants.append(lambda: head(traced_model(x)))
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        variants.append(lambda: head(frozen(x)))
        return variants

    def training(model, x, y, loss=F.cross_entropy):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, foreach=True)

        def step():
            opt.zero_grad(set_to_none=True)
            loss(model(x), y).backward()
            opt.step()
        return [step]

    class Residual(nn.Module):
        """The seed's residual MLP: Dense 64 relu -> Dense 64 -> + input -> relu -> Dense 10."""
        def __init__(self):
            super().__init__()
            self.d1, self.d2, self.head = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

        def forward(self, x):
            return self.head(torch.relu(self.d2(torch.relu(self.d1(x))) + x))

    # The seed's small CNN: Conv 32 3x3 relu -> MaxPool 2 -> Conv 64 3x3 relu -> MaxPool 2 -> Dense 128 relu -> Dense 10.
    def cnn():
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))

    def image_inference(make, shape, classifies=True):
        """Inference variants of a convolutional model in both memory layouts (NCHW and channels-last); an autoencoder's
        (not classifies) output is its image, with no softmax."""
        variants = []
        for layout in (torch.contiguous_format, torch.channels_last):
            head = (lambda y: torch.softmax(y, -1)) if classifies else (lambda y: y)
            variants += inference(make().eval().to(memory_format=layout), torch.rand(*shape).to(memory_format=layout), traced=False, head=head)
        return variants

    def image_training(make, shape, classifies=True):
        """Training steps of a convolutional model in both memory layouts: a classifier against labels, an autoencoder
        against its input (binary cross-entropy on its sigmoid image)."""
        variants = []
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.rand(*shape).to(memory_format=layout)
            if classifies:
                variants += training(make().train().to(memory_format=layout), x, torch.randint(0, 10, (shape[0],)))
            else:
                variants += training(make().train().to(memory_format=layout), x, x, loss=F.binary_cross_entropy)
        return variants

    # The Keras blog's convolutional autoencoder (ModelGen's ConvAutoencoder): 'same' pooling is ceil_mode (7 -> 4), UpSampling2D
    # nearest.
    def autoencoder():
        def encode(inputs, filters):
            return [nn.Conv2d(inputs, filters, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]

        def decode(inputs, filters, padding=1):
            return [nn.Conv2d(inputs, filters, 3, padding=padding), nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest")]
        return nn.Sequential(*encode(1, 16), *encode(16, 8), *encode(8, 8), *decode(8, 8), *decode(8, 8), *decode(8, 16, padding=0),
                             nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid())

    # A MobileNet-style block (ModelGen's MobileBlock): a strided stem, two depthwise-separable pairs, batch normalization
    # (Keras' epsilon), global average pooling, Dense 10.
    def mobilenet():
        return nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU(),
                             nn.Conv2d(32, 64, 1), nn.ReLU(), nn.BatchNorm2d(64, eps=1e-3), nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64), nn.ReLU(),
                             nn.Conv2d(64, 128, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))

    class ResNetBlock(nn.Module):
        """A ResNet-style stem and basic block (ModelGen's ResNetBlock): conv -> batch norm (Keras' epsilon) -> relu, twice, the
        second's relu after the residual add; global average pooling, Dense 10."""
        def __init__(self):
            super().__init__()
            def normalized(inputs):
                return [nn.Conv2d(inputs, 32, 3, padding=1), nn.BatchNorm2d(32, eps=1e-3)]
            self.stem = nn.Sequential(*normalized(3), nn.ReLU())
            self.branch = nn.Sequential(*normalized(32), nn.ReLU(), *normalized(32))
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

        def forward(self, x):
            x = self.stem(x)
            return self.head(torch.relu(x + self.branch(x)))

    class RowRecurrent(nn.Module):
        """An LSTM or GRU of 64 units over MNIST's 28 rows of 28 pixels, its last state into Dense 10 (ModelGen's RowLstm, RowGru);
        with other sizes, 256 units over 100 steps of 32 features (ModelGen's WideLstm)."""
        def __init__(self, layer, features=28, units=64):
            super().__init__()
            self.recurrent, self.head = layer(features, units, batch_first=True), nn.Linear(units, 10)

        def forward(self, x):
            return self.head(self.recurrent(x)[0][:, -1])

    class RowBidirectional(nn.Module):
        """A bidirectional LSTM of 64 units over MNIST's 28 rows (ModelGen's RowBiLstm): each direction's final state, as Keras'
        Bidirectional returns them side by side, into Dense 10."""
        def __init__(self):
            super().__init__()
            self.recurrent, self.head = nn.LSTM(28, 64, batch_first=True, bidirectional=True), nn.Linear(128, 10)

        def forward(self, x):
            final = self.recurrent(x)[1][0]
            return self.head(torch.cat((final[0], final[1]), 1))

    class TokenTransformer(nn.Module):
        """A Transformer encoder block over 64 tokens (ModelGen's TokenTransformer): Embedding 1000 x 64, self-attention of 4
        heads of 16 and a feed-forward 64 -> 128 -> 64, each with a residual connection and LayerNormalization (Keras'
        epsilon), the mean over the tokens into Dense 10. PyTorch's own encoder layer, which has a fused inference path."""
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(1000, 64)
            self.block = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True, layer_norm_eps=1e-3)
            self.label = nn.Linear(64, 10)

        def forward(self, tokens):
            return self.label(self.block(self.embed(tokens)).mean(1))

    class BagOfWords(nn.Module):
        """200 word ids into Embedding 5000 x 64, their mean, Dense 64 relu, Dense 10 (ModelGen's BagOfWords); the mean through
        Embedding + mean or through PyTorch's fused EmbeddingBag, whichever is faster."""
        def __init__(self, fused):
            super().__init__()
            self.fused = fused
            self.embed = nn.EmbeddingBag(5000, 64, mode="mean") if fused else nn.Embedding(5000, 64)
            self.hidden, self.label = nn.Linear(64, 64), nn.Linear(64, 10)

        def forward(self, words):
            mean = self.embed(words) if self.fused else self.embed(words).mean(1)
            return self.label(torch.relu(self.hidden(mean)))

    def bag_inference(batch):
        words = torch.randint(0, 5000, (batch, 200))
        return [variant for fused in (False, True) for variant in inference(BagOfWords(fused).eval(), words)]

    def bag_training(batch):
        words, labels = torch.randint(0, 5000, (batch, 200)), torch.randint(0, 10, (batch,))
        return [variant for fused in (False, True) for variant in training(BagOfWords(fused).train(), words, labels)]

    def product(m, n, k):
        a, b = torch.rand(m, k), torch.rand(k, n)
        return [lambda: torch.mm(a, b)]

    def scaling(width, batch):
        model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)).eval()
        return inference(model, torch.rand(batch, width), traced=False)

    table = {}
    for batch in (1, 8, 32, 128):
        table[f"results/mlp predict b{batch}"] = (lambda batch=batch: inference(mlp().eval(), torch.rand(batch, 784)), False, None)
    for batch in (32, 128):
        table[f"results/mlp train step b{batch}"] = (lambda batch=batch: training(mlp().train(), torch.rand(batch, 784), torch.randint(0, 10, (batch,))), True, None)
    table["results/residual predict b1"] = (lambda: inference(Residual().eval(), torch.rand(1, 64), traced=False), False, None)
    table["results/residual train step b128"] = (lambda: training(Residual().train(), torch.rand(128, 64), torch.randint(0, 10, (128,))), True, None)
    table["results/cnn predict b1"] = (lambda: image_inference(cnn, (1, 1, 28, 28)), False, None)
    table["results/cnn train step b64"] = (lambda: image_training(cnn, (64, 1, 28, 28)), True, min(11, SAMPLES))
    for batch in (1, 32):
        table[f"results/mobilenet predict b{batch}"] = (lambda batch=batch: image_inference(mobilenet, (batch, 3, 32, 32)), False, None)
    table["results/mobilenet train step b32"] = (lambda: image_training(mobilenet, (32, 3, 32, 32)), True, None)
    for batch in (1, 32):
        table[f"results/resnet predict b{batch}"] = (lambda batch=batch: image_inference(ResNetBlock, (batch, 3, 32, 32)), False, None)
    table["results/resnet train step b32"] = (lambda: image_training(ResNetBlock, (32, 3, 32, 32)), True, None)
    table["results/autoencoder predict b1"] = (lambda: image_inference(autoencoder, (1, 1, 28, 28), classifies=False), False, None)
    table["results/autoencoder train step b128"] = (lambda: image_training(autoencoder, (128, 1, 28, 28), classifies=False), True, min(11, SAMPLES))
    for name, layer in (("lstm", nn.LSTM), ("gru", nn.GRU)):
        for batch in (1, 32):
            table[f"results/{name} predict b{batch}"] = (lambda layer=layer, batch=batch: inference(RowRecurrent(layer).eval(), torch.rand(batch, 28, 28)), False, None)
        table[f"results/{name} train step b32"] = (
            lambda layer=layer: training(RowRecurrent(layer).train(), torch.rand(32, 28, 28), torch.randint(0, 10, (32,))), True, None)
    table["results/wide lstm predict b32"] = (lambda: inference(RowRecurrent(nn.LSTM, 32, 256).eval(), torch.rand(32, 100, 32)), False, None)
    table["results/wide lstm train step b32"] = (
        lambda: training(RowRecurrent(nn.LSTM, 32, 256).train(), torch.rand(32, 100, 32), torch.randint(0, 10, (32,))), True, min(11, SAMPLES))
    table["results/bilstm predict b1"] = (lambda: inference(RowBidirectional().eval(), torch.rand(1, 28, 28)), False, None)
    for batch in (4, 32):
        table[f"results/bilstm train step b{batch}"] = (
            lambda batch=batch: training(RowBidirectional().train(), torch.rand(batch, 28, 28), torch.randint(0, 10, (batch,))), True, None)
    for batch in (1, 32):
        table[f"results/bag predict b{batch}"] = (lambda batch=batch: bag_inference(batch), False, None)
    table["results/bag train step b32"] = (lambda: bag_training(32), True, None)
    for batch in (1, 32):
        table[f"results/transformer predict b{batch}"] = (lambda batch=batch: inference(TokenTransformer().eval(), torch.randint(0, 1000, (batch, 64))), False, None)
    table["results/transformer train step b32"] = (
        lambda: training(TokenTransformer().train(), torch.randint(0, 1000, (32, 64)), torch.randint(0, 10, (32,))), True, None)
    for m, n, k in ((128, 256, 784), (128, 128, 256), (128, 10, 128), (1, 256, 784), (2048, 2048, 2048)):
        table[f"results/gemm {m}x{n}x{k}"] = (lambda m=m, n=n, k=k: product(m, n, k), False, None)
    for width in (8, 16, 32, 64, 128, 256, 512, 1024, 2048):
        for batch in (1, 128):
            table[f"scaling/{width} b{batch}"] = (lambda width=width, batch=batch: scaling(width, batch), False, None)

    info = {"openblas_core": openblas_core(), "openblas_unset_core": unset_core(), "torch": torch.__version__, "threads": torch.get_num_threads(), "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
            "aten_capability": os.environ.get("ATEN_CPU_CAPABILITY", "default")}

    built = {}

    def measure(name):
        """The workload's median in ms (the fastest variant's), built and fully warmed up the first time."""
        build, grad, repeats = table[name]
        with torch.set_grad_enabled(grad):
            first = name not in built
            if first:
                built[name] = build()
            return min(timed(fn, first, repeats) for fn in built[name])
    return list(table), measure, info


def serve(threads):
    """Answers requests on stdin, a line each: "list", "info", or a workload's name (its median in ms). An empty line ends it."""
    names, measure, info = workloads(threads)
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            break
        print(json.dumps(names if line == "list" else info if line == "info" else measure(line)), flush=True)


def openblas_core():
    """The kernels OpenBLAS took in this process (it reads OPENBLAS_CORETYPE once, when it loads)."""
    import ctypes
    openblas = ctypes.CDLL("libopenblas.so.0")
    openblas.openblas_get_corename.restype = ctypes.c_char_p
    return openblas.openblas_get_corename().decode()


def core_under(coretype):
    """The kernels OpenBLAS takes in a fresh process with OPENBLAS_CORETYPE set to coretype, or unset for None."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    return subprocess.run([sys.executable, "-c", "import torch_peer; print(torch_peer.openblas_core())"], env=env,
                          cwd=os.path.dirname(os.path.abspath(__file__)), capture_output=True, text=True, check=True).stdout.strip()


# OpenBLAS's x86 kernels by vector width, widest first, with the CPU flags each needs.
CORES_BY_WIDTH = (
    (512, (("Cooperlake", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"}),
           ("SkylakeX", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}))),
    (256, (("Haswell", {"avx2", "fma"}), ("Zen", {"avx2", "fma"}))),
)


@functools.cache
def unset_core():
    return core_under(None)


@functools.cache
def best_coretype():
    """None where OpenBLAS left to itself takes kernels as wide as this CPU's vectors; else the widest kernels the library
    accepts that this CPU runs (a narrower width where the library has none of the widest). A release older than the CPU
    falls back to Prescott's SSE3: Debian 12's 0.3.21 does so on an Intel Xeon of family 6, model 207, where it ran gemm
    2048^3 at 30 GFLOP/s a core against 159 on Cooperlake's kernels."""
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return None
    for _, cores in CORES_BY_WIDTH:
        runnable = [name for name, needs in cores if needs <= flags]
        if not runnable:
            continue
        if unset_core() in (name for name, _ in cores):
            return None
        accepted = next((name for name in runnable if core_under(name) == name), None)
        if accepted:
            return accepted
    return None


def environment(threads):
    """The process environment of a configuration: one thread everywhere, or what a user gets."""
    env = dict(os.environ)
    if not os.environ.get("COMPARE_VECTORS"):
        # Held to narrower kernels only by compare.sh's COMPARE_VECTORS, which sets OPENBLAS_CORETYPE and ATEN_CPU_CAPABILITY.
        env.pop("OPENBLAS_CORETYPE", None)
        coretype = best_coretype()
        if coretype:
            env["OPENBLAS_CORETYPE"] = coretype
    if threads == "1":
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def main():
    serve(sys.argv[2])


if __name__ == "__main__":
    main()
