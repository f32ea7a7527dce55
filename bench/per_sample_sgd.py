"""Per-sample SGD against scikit-learn, at user level next to kernel level (issue 15, item 3).

``python -m bench.per_sample_sgd [--rows 100000] [--features 100] [--repeats 9]``

One shuffled epoch of per-sample SGD on dense binary data, float64 and float32:

- scikit-learn: ``SGDClassifier(loss="log_loss", penalty="l2", alpha, learning_rate="constant",
  eta0, max_iter=1, tol=None, shuffle=True).fit`` (it trains in float64 whatever X's dtype);
- fastgd, user level: ``LogisticRegression(optimizer="sgd", learning_rate=eta0, alpha,
  batch_size=1, max_iter=1, tol=None, shuffle=True, backend=...).fit`` (the same steps);
- fastgd, kernel level: one call of the backend's ``epoch_dense`` on a shuffled order, the
  arrays prepared beforehand (what ``fit`` adds on top is validation, set-up and the driver).

Everything is called interleaved (sklearn, fastgd fits, fastgd kernels, sklearn, ...) after
one untimed warm-up call each; the table gives medians and sklearn's time divided by each
(> 1: fastgd faster). Targets: 3x on float64, 4x on float32, at user level.
"""

import argparse
import time
import warnings

import numpy as np

from bench import _common
from fastgd import _contract as C

ETA0 = 0.01
ALPHA = 1e-4


def main(argv=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    from fastgd import LogisticRegression

    ap = argparse.ArgumentParser(prog="python -m bench.per_sample_sgd", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--backends", default=",".join(_common.COMPILED_BACKENDS))
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the process's CPU time (everything timed here is single-threaded), for a loaded machine")
    args = ap.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    warnings.simplefilter("ignore", ConvergenceWarning)
    backends = _common.available_backends(args.backends.split(","))
    print(f"| dtype | what | median ms | sklearn / this | target |")
    print("|---|---|---|---|---|")
    for dtype, target in ((np.float64, 3.0), (np.float32, 4.0)):
        X, y = _common.dense_classification(args.rows, args.features, dtype, seed=0)
        order = np.random.default_rng(0).permutation(args.rows).astype(np.int64)
        fns = {"sklearn SGDClassifier.fit": lambda: SGDClassifier(
            loss="log_loss", penalty="l2", alpha=ALPHA, learning_rate="constant", eta0=ETA0, max_iter=1,
            tol=None, shuffle=True, random_state=0).fit(X, y)}
        runs = {}
        for name, module in backends.items():
            fns[f"fastgd[{name}] fit"] = (lambda b=name: LogisticRegression(
                optimizer="sgd", learning_rate=ETA0, penalty="l2", alpha=ALPHA, batch_size=1, max_iter=1,
                tol=None, shuffle=True, random_state=0, backend=b).fit(X, y))
            codes, hp, bs = _common.kernel_settings(C.LOSS_LOG, "sgd", ETA0, 1, args.rows)
            runs[name] = _common.KernelRun(module, X, y.astype(dtype).reshape(-1, 1), "sgd", codes, hp, bs)
            fns[f"fastgd[{name}] kernel epoch"] = (lambda r=runs[name]: r.epoch(order))

        def setup(label):
            for name, run in runs.items():
                if label == f"fastgd[{name}] kernel epoch":
                    run.reset()

        times = _common.alternate(fns, args.repeats, warmup=1, setup=setup, clock=clock)
        med = {label: float(np.median(ts)) for label, ts in times.items()}
        sk = med["sklearn SGDClassifier.fit"]
        for label, t in med.items():
            ratio = sk / t
            goal = "" if label.startswith("sklearn") else (
                f"{target:g}x {'met' if ratio >= target else 'missed'}" if label.endswith("fit") else "(kernel)")
            print(f"| {np.dtype(dtype).name} | {label} | {t * 1e3:.3g} | {ratio:.2f} | {goal} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
