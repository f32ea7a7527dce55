"""Kernel-level epoch times of the engines' main paths, and the same cases in other trees.

One epoch of the kernel (``bench._common.KernelRun``: no validation, the parameters reset
outside the timed region) for a fixed set of cases: dense per-sample and mini-batch epochs
of several optimizers (20,000 x 100), a full-batch epoch (100,000 x 50) and CSR epochs
(20,000 x 20,000, 50 non-zeros a row). It exists to compare two versions of the kernels on
one machine, side by side::

    git worktree add /tmp/before <commit> && (cd /tmp/before && python setup.py build_ext --inplace)
    python -m bench.kernel_cases --trees /tmp/before,. --rounds 2 --backends numba,cython

Each round runs every tree once, in turn, in its own process (``B A B A``): slow drifts of a
shared machine hit both alike. The table gives each tree's median over its rounds (each
round: the median of ``--repeats`` epochs after two untimed ones) and the ratio to the
first tree (> 1: faster than the first tree). Without ``--trees`` it times this tree once.
"""

import argparse
import functools
import json
import os
import subprocess
import sys
import time

import numpy as np

if not __package__:  # run as a file (as --trees does in each tree): import from the working directory
    sys.path.insert(0, os.getcwd())

CASES = {  # name: (data, optimizer, batch size or None for the full batch, learning rate, dtype)
    "dense momentum b1": ("dense", "momentum", 1, 0.01, "float32"),
    "dense sgd b1": ("dense", "sgd", 1, 0.01, "float32"),
    "dense adam b1": ("dense", "adam", 1, 1e-3, "float32"),
    "dense sgd b32": ("dense", "sgd", 32, 0.01, "float32"),
    "dense momentum b32": ("dense", "momentum", 32, 0.01, "float32"),
    "dense adam b256": ("dense", "adam", 256, 1e-3, "float32"),
    "dense momentum b1 f64": ("dense", "momentum", 1, 0.01, "float64"),
    "dense sgd b32 f64": ("dense", "sgd", 32, 0.01, "float64"),
    "full batch sgd f64": ("full", "sgd", None, 0.1, "float64"),
    "csr sgd b1": ("csr", "sgd", 1, 0.01, "float64"),
    "csr momentum b1": ("csr", "momentum", 1, 0.01, "float64"),
    "csr adam b32": ("csr", "adam", 32, 1e-3, "float64"),
    "csr rmsprop b32": ("csr", "rmsprop", 32, 1e-3, "float64"),
    "csr sgd b32": ("csr", "sgd", 32, 0.01, "float64"),
}


@functools.lru_cache(maxsize=None)  # (scipy's sp.random at this size takes minutes: built once per process)
def _data(kind, dtype):
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    if kind == "csr":
        X = sp.random(20000, 20000, density=50 / 20000, format="csr", random_state=0, dtype=np.float64)
        y = (rng.random(20000) > 0.5).astype(np.float64)
    else:
        n, p = (20000, 100) if kind == "dense" else (100000, 50)
        X = rng.standard_normal((n, p)).astype(dtype)
        y = (X[:, 0] > 0).astype(dtype)
    return X, y.reshape(-1, 1)


def time_cases(backends, names, repeats):
    """{backend: {case: median seconds}} in this process (this tree's fastgd)."""
    import importlib

    from bench import _common
    from fastgd import _contract as C

    out = {}
    for b in backends:
        mod = importlib.import_module(f"fastgd._backends._{b}")
        out[b] = {}
        for name in names:
            kind, opt, bs, lr, dtype = CASES[name]
            X, y = _data(kind, dtype)
            n = X.shape[0]
            codes, hp, bsz = _common.kernel_settings(C.LOSS_LOG, opt, lr, bs or n, n)
            run = _common.KernelRun(mod, X, y, opt, codes, hp, bsz)
            order = np.random.default_rng(1).permutation(n).astype(np.int64)
            ts = []
            for _ in range(repeats + 2):
                run.reset()
                t0 = time.perf_counter()
                run.epoch(order)
                ts.append(time.perf_counter() - t0)
            out[b][name] = float(np.median(ts[2:]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", default="", help="comma-separated source trees to compare (first = reference)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--backends", default="numba,cython")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names (default: all)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one tree's result, for --trees
    args = ap.parse_args(argv)
    backends = args.backends.split(",")
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}; known: {list(CASES)}")
    if not args.trees:
        res = time_cases(backends, names, args.repeats)
        if args.json:
            print(json.dumps(res))
            return
        for b in backends:
            for name in names:
                print(f"{b:7s} {name:24s} {1e3 * res[b][name]:8.3f} ms")
        return
    trees = [os.path.abspath(t) for t in args.trees.split(",")]
    runs = {t: [] for t in trees}
    for r in range(args.rounds):
        for t in trees:
            # this file run as a script, importing fastgd and bench._common from the tree
            cmd = [sys.executable, os.path.abspath(__file__), "--json", "--repeats", str(args.repeats),
                   "--backends", args.backends, "--cases", ",".join(names)]
            env = dict(os.environ, PYTHONPATH=t)  # (before the installed fastgd)
            out = subprocess.run(cmd, cwd=t, env=env, capture_output=True, text=True, check=True)
            runs[t].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: {t} done", file=sys.stderr, flush=True)
    ref = trees[0]
    head = "".join(f" | {os.path.basename(t) or t} ms" for t in trees)
    print(f"| backend | case{head} | " + " | ".join(f"{os.path.basename(t)} vs first" for t in trees[1:]) + " |")
    print("|---|---" + "|---" * (2 * len(trees) - 1) + "|")
    for b in backends:
        for name in names:
            med = {t: float(np.median([run[b][name] for run in runs[t]])) for t in trees}
            cells = " | ".join(f"{1e3 * med[t]:.3f}" for t in trees)
            ratios = " | ".join(f"{med[ref] / med[t]:.2f}x" for t in trees[1:])
            print(f"| {b} | {name} | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
