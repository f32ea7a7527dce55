"""``shuffle="block"`` against a full shuffle (and no shuffle): speed and statistical cost.

    PYTHONPATH=. python -m bench.bench_block_shuffle [--rows N] [--memmap-gb G] [--epochs E]

Speed: one per-sample SGD ``fit`` epoch (user level, ``max_iter=1``), interleaved repeats, on
(1) dense float32 rows in memory, (2) CSR rows in memory (2^20 features, 12 nnz/row), and
(3) a file-backed ``np.memmap`` whose pages are dropped from the page cache before every
epoch (``posix_fadvise(DONTNEED)``), which is what a file larger than the page cache sees.
Statistical cost: final training loss and test accuracy after ``--epochs`` epochs, full
shuffle vs block shuffle, on rows stored in random order and on rows stored sorted by label
(the adversarial layout for a block shuffle: each block holds one class).
"""

import argparse
import os
import tempfile
import time
import warnings

import numpy as np

from fastgd import LogisticRegression
from fastgd.datasets import make_sparse_classification

MODES = (True, "block", False)


def _fit_epoch(X, y, shuffle, before=None):
    model = LogisticRegression(optimizer="sgd", learning_rate=0.01, batch_size=1, max_iter=1, tol=None,
                               shuffle=shuffle, random_state=0)
    if before is not None:
        before()
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return time.perf_counter() - tic


def _timed(label, X, y, repeats, before=None):
    times = {m: [] for m in MODES}
    _fit_epoch(X[:2000], y[:2000], True)  # compile / load kernels outside the timing
    for _ in range(repeats):
        for m in MODES:
            times[m].append(_fit_epoch(X, y, m, before))
    med = {m: float(np.median(t)) for m, t in times.items()}
    print(f"{label}: full shuffle {med[True]:.3g} s, block {med['block']:.3g} s, in order {med[False]:.3g} s; "
          f"block speed-up x{med[True] / med['block']:.2f}", flush=True)
    return med


def _dense_problem(n, d, rng):
    X = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal(d)
    y = (X @ w + rng.logistic(size=n) > 0).astype(int)
    return X, y


def statistical_cost(n, d, epochs, rng):
    X, y = _dense_problem(2 * n, d, rng)
    Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
    rows = []
    for layout in ("random order", "sorted by label"):
        if layout == "sorted by label":
            idx = np.argsort(ytr, kind="stable")
            Xtr, ytr = np.ascontiguousarray(Xtr[idx]), ytr[idx]
        for shuffle in (True, "block"):
            losses, accs = [], []
            for seed in range(3):
                model = LogisticRegression(optimizer="sgd", learning_rate=0.01, batch_size=1, max_iter=epochs,
                                           tol=None, shuffle=shuffle, random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(Xtr, ytr)
                losses.append(model.loss_curve_[-1])
                accs.append(model.score(Xte, yte))
            rows.append((layout, shuffle, np.mean(losses), np.mean(accs)))
            print(f"statistics, {layout}, shuffle={shuffle!r}: final loss {np.mean(losses):.5f}, "
                  f"test accuracy {np.mean(accs):.4f} (mean of 3 seeds, {epochs} epochs)", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--memmap-gb", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)

    X, y = _dense_problem(args.rows, 64, rng)
    _timed(f"dense in memory, {args.rows} x 64 float32 ({X.nbytes / 1e6:.0f} MB)", X, y, args.repeats)
    del X
    Xs, ys, _ = make_sparse_classification(args.rows, 1 << 20, 12, dtype=np.float32, random_state=0)
    _timed(f"CSR in memory, {args.rows} x 2^20, 12 nnz/row", Xs, ys, args.repeats)
    del Xs

    d = 64
    n = int(args.memmap_gb * 1e9 / (4 * d))
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = os.path.join(tmp, "X.npy")
        Xm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        for lo in range(0, n, 1 << 18):
            hi = min(n, lo + (1 << 18))
            Xm[lo:hi] = rng.standard_normal((hi - lo, d))
        ym = (Xm[:, 0] > 0).astype(int)
        Xm.flush()
        del Xm
        Xm = np.load(path, mmap_mode="r")

        def drop_cache():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)

        _timed(f"np.memmap from a cold page cache, {n} x {d} float32 ({n * d * 4 / 1e9:.2f} GB)", Xm, ym,
               max(1, args.repeats - 2), before=drop_cache)
        del Xm
    statistical_cost(min(args.rows, 200_000), 32, args.epochs, rng)


if __name__ == "__main__":
    main()
