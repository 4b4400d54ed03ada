#!/usr/bin/python3
"""The scikit-learn side of benchmarks/compare.sh: MLPClassifier on the digits, as shared/peers/sklearn_bench.py measures it.

MLPClassifier(hidden_layer_sizes=(64,), random_state=0), sklearn's defaults otherwise (relu, adam lr 1e-3, batch 200,
max_iter 200, tol 1e-4, L2 alpha 1e-4); digits scaled to [0, 1], train_test_split(test_size=0.2, random_state=0).
Median wall time of fit() over 5 runs, in one process per thread setting (1 thread, and OpenBLAS' default).
Usage: sklearn_peer.py OUT.json
"""
import json
import os
import subprocess
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import environment  # noqa: E402  the same two thread configurations as the PyTorch peer


def worker():
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.2, random_state=0)
    times = []
    for _ in range(5):
        model = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            model.fit(x_train, y_train)
            times.append(time.perf_counter() - start)
    times.sort()
    return {"fit_s": times[len(times) // 2], "epochs": int(model.n_iter_), "test_accuracy": float((model.predict(x_test) == y_test).mean())}


def main():
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(worker()))
        return
    out = {}
    for threads in ("1", "default"):
        result = subprocess.run([sys.executable, __file__, "--worker"], env=environment(threads), capture_output=True, text=True, check=True)
        out[threads] = json.loads(result.stdout)
    json.dump(out, open(sys.argv[1], "w"), indent=1)


if __name__ == "__main__":
    main()
