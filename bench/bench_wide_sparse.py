"""Wide hashed features: one ``fit`` epoch and ``partial_fit`` on 1,000-row chunks, fastgd vs
``SGDClassifier``, at 2^21 and 2^24 features with 12 non-zeros per row.

    PYTHONPATH=. python -m bench.bench_wide_sparse [--rows 20000] [--bits 21,24] [--repeats 5] [--fit-only]

User level (the estimator calls, validation included) next to kernel level (one call of the
backend's ``epoch_csr`` on the same chunk, no driver, with the running state the driver
keeps between calls). Same steps on both sides: per-sample SGD on the log loss, L2
``alpha=1e-4``, constant learning rate 0.01. Interleaved repeats; medians. fastgd computes
``coef_`` when it is first read (scikit-learn writes it during ``fit``): "fit + read coef_"
times that too. Also prints the work counters of one partial_fit chunk: the coordinate
updates and catch-ups (per-coordinate folds) done, against nnz and n_features.

A ``fit`` allocates a model-sized array on both sides, and what that costs depends on what
the allocator holds: memory it just got back from a model of the same size is reused, memory
it returned to the system is faulted in again (on a VM with transparent huge pages, a fault
may also wait for the kernel to compact memory). ``--fit-only`` times the fits alone, which
allocate one model each; the default also times "fit + read coef_", whose second
model-sized array changes what the next fit finds.
"""

import argparse
import time
import warnings

import numpy as np

from bench import _common
from fastgd import LogisticRegression
from fastgd.datasets import make_sparse_classification

ALPHA, ETA0, CHUNK = 1e-4, 0.01, 1000


def _ours(backend):
    return LogisticRegression(optimizer="sgd", learning_rate=ETA0, batch_size=1, max_iter=1, tol=None,
                              penalty="l2", alpha=ALPHA, random_state=0, backend=backend)


def _theirs():
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="log_loss", penalty="l2", alpha=ALPHA, learning_rate="constant", eta0=ETA0,
                         max_iter=1, tol=None, random_state=0)


def _partial_fit_per_chunk(make, X, y, repeats):
    model = make()
    model.partial_fit(X[:CHUNK], y[:CHUNK], classes=[0, 1])  # allocation and compilation untimed
    chunks = [(X[i:i + CHUNK], y[i:i + CHUNK]) for i in range(CHUNK, X.shape[0] - CHUNK + 1, CHUNK)]
    times = []
    for _ in range(repeats):
        for Xc, yc in chunks:
            tic = time.perf_counter()
            model.partial_fit(Xc, yc)
            times.append(time.perf_counter() - tic)
    return float(np.median(times))


def _kernel_epoch(backend_name, model, X, y):
    """One ``epoch_csr`` call on ``X`` with the driver's arrays (the running scale and sum of
    squares it keeps between ``partial_fit`` calls included), timed alone."""
    from fastgd import _contract as C
    from fastgd._backends import get_backend
    from fastgd._solver import Problem

    backend = get_backend(backend_name)
    codes, hp = model._kernel_arrays(X.shape[0])
    ts = model._train_state
    coef, state, t = ts.coef.copy(), ts.opt_state.copy(), ts.t.copy()
    y2 = y.astype(np.float64).reshape(-1, 1)
    sw = np.ones(X.shape[0])
    problem = Problem(X=X, y=y2, sw=sw, train_idx=np.arange(X.shape[0], dtype=np.int64))
    bufs = problem.sparse_buffers(codes, hp, 1, 1)
    order = np.random.default_rng(0).permutation(X.shape[0])
    grad = np.empty_like(coef)
    work = np.zeros((C.WORK_ROWS, 1))
    running = np.array([ts.scale, ts.stored_sq_norm()])
    tic = time.perf_counter()
    backend.epoch_csr(X.data, X.indices, X.indptr, X.shape[1], y2, sw, order, coef, state, t, codes, hp, 1,
                      grad, work, *bufs, running=running)
    return time.perf_counter() - tic, bufs[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--bits", default="21,24")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backends", default="cython,numba")
    ap.add_argument("--fit-only", action="store_true",
                    help="time the fits alone (no 'fit + read coef_' rows between them): fewer fresh "
                         "model-sized allocations, so fewer page faults of memory the allocator returned")
    args = ap.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b in _common.available_backends()]
    warnings.simplefilter("ignore")
    for bits in map(int, args.bits.split(",")):
        p = 1 << bits
        X, y, _ = make_sparse_classification(args.rows, p, 12, random_state=0)
        print(f"\n2^{bits} = {p} features, {args.rows} rows, {X.nnz / args.rows:.1f} nnz/row, "
              f"coef {p * 8 / 1e6:.0f} MB", flush=True)
        fns = {f"fastgd[{b}]": (lambda b=b: _ours(b).fit(X, y)) for b in backends}
        fns["SGDClassifier"] = lambda: _theirs().fit(X, y)
        if not args.fit_only:
            fns.update({f"fastgd[{b}] fit + read coef_": (lambda b=b: _ours(b).fit(X, y).coef_) for b in backends})
        times = _common.alternate(fns, args.repeats, warmup=1)
        sk = np.median(times["SGDClassifier"])
        for name, ts in times.items():
            print(f"  fit, one epoch: {name:<16} {np.median(ts) * 1e3:8.2f} ms  (SGDClassifier / this: "
                  f"x{sk / np.median(ts):.2f})", flush=True)
        times = {name: ts for name, ts in times.items() if not name.endswith("coef_")}
        per_chunk = {name: _partial_fit_per_chunk((lambda b=name[7:-1]: _ours(b)) if name != "SGDClassifier"
                                                  else _theirs, X, y, 1) for name in times}
        sk = per_chunk["SGDClassifier"]
        for name, s in per_chunk.items():
            print(f"  partial_fit per {CHUNK}-row chunk: {name:<16} {s * 1e3:8.3f} ms  (SGDClassifier / this: "
                  f"x{sk / s:.2f})", flush=True)
        for b in backends:
            model = _ours(b).partial_fit(X[:CHUNK], y[:CHUNK], classes=[0, 1])
            seconds, counters = _kernel_epoch(b, model, X[CHUNK:2 * CHUNK], y[CHUNK:2 * CHUNK])
            nnz = X[CHUNK:2 * CHUNK].nnz
            print(f"  kernel only, one {CHUNK}-row chunk [{b}]: {seconds * 1e3:.3f} ms; counters: "
                  f"{counters[0]} updates, {counters[1]} catch-ups (nnz {nnz}, n_features {p})", flush=True)


if __name__ == "__main__":
    main()
