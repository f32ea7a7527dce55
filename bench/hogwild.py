"""Hogwild! speed-up and final-loss gap against the serial fit (``python -m bench.hogwild``).

The workload is bench.compare's ``sparse_cls`` (CSR 200,000 x 20,000, 50 non-zeros a row,
float64), per-sample plain SGD on the log loss with L2 (alpha 1e-4, constant rate 0.01).

* kernel level: one epoch of the Hogwild! kernel with 1 share (one thread) and with
  ``--threads`` shares, and the serial path's own kernel, arrays prepared outside the timing;
* user level: whole ``fit`` calls (``--epochs`` epochs) with ``n_jobs=None`` and
  ``n_jobs=--threads``, and the final objective of each (the gap is what lock-free updates
  cost in accuracy; they vary from run to run).

Timings are interleaved (A B A B ...), medians of ``--repeats``; the load average is printed
with them, because a loaded machine has no idle core for the second thread.
"""

import argparse
import os
import time

import numpy as np

from bench import _common
from fastgd import LogisticRegression
from fastgd import _contract as C
from fastgd._backends import get_backend
from fastgd.losses import objective

ALPHA = 1e-4
LEARNING_RATE = 0.01


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.hogwild", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="numba", choices=("numba", "cython"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args(argv)
    X, y = _common.sparse_classification(args.rows, 20_000, 50, np.float64, seed=2)
    n, p = X.shape
    y2 = y.reshape(-1, 1).astype(np.float64)
    sw = np.ones(n)
    backend = get_backend(args.backend)

    codes = np.zeros(C.N_CODES, dtype=np.int64)
    hp = np.zeros(C.N_HP)
    codes[C.C_LOSS] = C.LOSS_LOG
    hp[C.H_LR], hp[C.H_LR_SCALE], hp[C.H_L2] = LEARNING_RATE, 1.0, ALPHA
    counts = np.bincount(X.indices, minlength=p)
    col_scale = np.where(counts > 0, n / np.maximum(counts, 1), 0.0)
    order = np.random.default_rng(0).permutation(n).astype(np.int64)
    coef, t = np.zeros((p + 1, 1)), np.zeros(1, dtype=np.int64)
    losses = np.zeros(args.threads)
    work = np.zeros((C.WORK_ROWS, 1))
    empty_lazy, empty_index = np.zeros((0, C.LAZY_FIELDS)), np.zeros((2, 1), dtype=np.int64)
    counters = np.zeros(C.N_COUNTERS, dtype=np.int64)

    def hogwild(shares):
        return lambda: backend.epoch_csr_hogwild(X.data, X.indices, X.indptr, p, y2, sw, order, coef, t, codes, hp,
                                                 col_scale, shares, losses)

    def serial_kernel():
        return backend.epoch_csr(X.data, X.indices, X.indptr, p, y2, sw, order, coef, np.zeros((0, p + 1, 1)), t,
                                 codes, hp, 1, coef.copy(), work, empty_lazy, empty_index, counters)

    def load():
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())

    print(f"{args.backend}, {n} x {p} CSR, {X.nnz} non-zeros; {load()}")
    kernel = _common.alternate({"hogwild 1 share": hogwild(1), f"hogwild {args.threads} shares": hogwild(args.threads),
                                "serial kernel (n_jobs=None)": serial_kernel}, args.repeats, warmup=1)
    base = np.median(kernel["hogwild 1 share"])
    for label, ts in kernel.items():
        print(f"  kernel epoch, {label}: {np.median(ts) * 1e3:.1f} ms (speed-up over 1 share {base / np.median(ts):.2f}x)")

    fits, models = {}, {}
    for jobs in (None, args.threads):
        def fit(jobs=jobs):
            models[jobs] = LogisticRegression(optimizer="sgd", batch_size=1, learning_rate=LEARNING_RATE, alpha=ALPHA,
                                              max_iter=args.epochs, tol=None, random_state=0, backend=args.backend,
                                              n_jobs=jobs).fit(X, y)
        fits[f"fit n_jobs={jobs}"] = fit
    user = _common.alternate(fits, args.repeats, warmup=1)
    serial_time = np.median(user["fit n_jobs=None"])
    f = {}
    for jobs, est in models.items():
        W = np.vstack([est.coef_.T, [est.intercept_]])
        f[jobs] = objective(X, y2, sw, W, C.LOSS_LOG, ALPHA, 0.0)
    for label, ts in user.items():
        print(f"  {label}, {args.epochs} epochs: {np.median(ts):.3f} s (speed-up over n_jobs=None "
              f"{serial_time / np.median(ts):.2f}x)")
    print(f"  final objective: n_jobs=None {f[None]:.8f}, n_jobs={args.threads} {f[args.threads]:.8f} "
          f"(relative gap {(f[args.threads] - f[None]) / f[None]:+.2e}); {load()}")
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    status = main()
    print(f"({time.perf_counter() - t0:.0f} s)")
    raise SystemExit(status)
