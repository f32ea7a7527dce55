"""``partial_fit`` on 1,000-row chunks of wide hashed features, on the paths of the general CSR
kernel: the deferred catch-up kept between calls against every coordinate caught up at the
end of every call (what each call cost before), side by side in one process.

    PYTHONPATH=. python -m bench.bench_deferred [--rows 20000] [--bits 21,24] [--repeats 3] [--backends cython,numba]

Paths (log loss, learning rate 0.01 / RMSprop 0.001, ``alpha=1e-4``): mini-batch SGD with L2
(batch 32), RMSprop and AdaGrad without penalty (batch 32), per-sample SGD with L2 and
``clip_norm=1`` (batch 1); with L1: per-sample SGD, mini-batch SGD with the elastic net and
AdaGrad (batch 32). "caught up every call" is the same code with the backend's
``CSR_DEFERRED_CATCH_UP`` switched off in this process: the driver then passes no deferred
state and the kernel resets its bookkeeping, zeroes the gradient buffer, checks every weight
and catches every coordinate up in each call, O(n_features); per-sample SGD with L1 then
takes the fused lazy kernel, with the state the general one. The deferred L1 paths include
the driver's upkeep of the penalty's value (fastgd._lagging_norms). ``SGDClassifier.partial_fit``
(per-sample SGD with L2 and with L1, its own algorithm) is printed as a point of reference
only. The repeats interleave the variants; each figure is the median per chunk.
"""

import argparse
import time
import warnings

import numpy as np

from bench import _common
from fastgd import LogisticRegression
from fastgd._backends import get_backend
from fastgd.datasets import make_sparse_classification

CHUNK = 1000
PATHS = {
    "SGD b=32 L2": dict(optimizer="sgd", batch_size=32, penalty="l2", alpha=1e-4, learning_rate=0.01),
    "RMSprop b=32": dict(optimizer="rmsprop", batch_size=32, penalty=None, learning_rate=1e-3),
    "AdaGrad b=32": dict(optimizer="adagrad", batch_size=32, penalty=None, learning_rate=0.01),
    "SGD b=1 L2 clip": dict(optimizer="sgd", batch_size=1, penalty="l2", alpha=1e-4, learning_rate=0.01,
                            clip_norm=1.0),
    "SGD b=1 L1": dict(optimizer="sgd", batch_size=1, penalty="l1", alpha=1e-4, learning_rate=0.01),
    "SGD b=32 elastic-net": dict(optimizer="sgd", batch_size=32, penalty="elasticnet", alpha=1e-4,
                                 learning_rate=0.01),
    "AdaGrad b=32 L1": dict(optimizer="adagrad", batch_size=32, penalty="l1", alpha=1e-4, learning_rate=0.01),
}


def _per_chunk(make, X, y, deferred, backend):
    """Median seconds of ``partial_fit`` per chunk (the first chunk, which allocates, untimed)."""
    module = get_backend(backend) if backend else None
    saved = getattr(module, "CSR_DEFERRED_CATCH_UP", None)
    if module is not None:
        module.CSR_DEFERRED_CATCH_UP = deferred
    try:
        model = make()
        model.partial_fit(X[:CHUNK], y[:CHUNK], classes=[0, 1])
        times = []
        for i in range(CHUNK, X.shape[0] - CHUNK + 1, CHUNK):
            tic = time.perf_counter()
            model.partial_fit(X[i:i + CHUNK], y[i:i + CHUNK])
            times.append(time.perf_counter() - tic)
        if module is not None:
            assert (model._train_state.lazy is not None) == deferred
        return float(np.median(times))
    finally:
        if module is not None:
            module.CSR_DEFERRED_CATCH_UP = saved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--bits", default="21,24")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default="cython,numba")
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated names from PATHS")
    args = ap.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b in _common.available_backends()]
    warnings.simplefilter("ignore")
    from sklearn.linear_model import SGDClassifier

    print("| features | path | backend | deferred (ms/chunk) | caught up every call (ms/chunk) | ratio |")
    print("|---|---|---|---|---|---|")
    for bits in map(int, args.bits.split(",")):
        p = 1 << bits
        X, y, _ = make_sparse_classification(args.rows, p, 12, random_state=0)
        for name in args.paths.split(","):
            params = PATHS[name]
            for b in backends:
                make = lambda: LogisticRegression(random_state=0, backend=b, **params)  # noqa: E731
                runs = {True: [], False: []}
                for _ in range(args.repeats):
                    for deferred in (True, False):
                        runs[deferred].append(_per_chunk(make, X, y, deferred, b))
                on, off = np.median(runs[True]), np.median(runs[False])
                print(f"| 2^{bits} | {name} | {b} | {on * 1e3:.3f} | {off * 1e3:.3f} | {off / on:.1f}x |", flush=True)
        for penalty in ("l2", "l1"):
            sk = _per_chunk(lambda: SGDClassifier(loss="log_loss", penalty=penalty, alpha=1e-4,  # noqa: B023
                                                  learning_rate="constant", eta0=0.01, random_state=0),
                            X, y, None, None)
            print(f"| 2^{bits} | SGDClassifier.partial_fit (per-sample SGD, {penalty.upper()}; reference) | - | "
                  f"{sk * 1e3:.3f} | | |", flush=True)


if __name__ == "__main__":
    main()
