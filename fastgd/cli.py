"""The ``fastgd`` command line: ``fastgd demo`` trains every optimizer on bundled data."""

import argparse
import sys
import time
import warnings


def _demo(args):
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_diabetes
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from fastgd import LinearRegression, LogisticRegression
    from fastgd.optim import OPTIMIZER_NAMES

    tasks = [
        ("breast_cancer (binary logistic)", load_breast_cancer, LogisticRegression, "accuracy"),
        ("diabetes (linear regression)", load_diabetes, LinearRegression, "R^2"),
    ]
    for title, loader, estimator, metric in tasks:
        X, y = loader(return_X_y=True)
        if estimator is LinearRegression:
            y = (y - y.mean()) / y.std()
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=args.seed)
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
        print(f"\n{title}: {Xtr.shape[0]} train / {Xte.shape[0]} test samples, {X.shape[1]} features, "
              f"batch_size={args.batch_size}, {args.epochs} epochs max, backend={args.backend}")
        header = f"{'optimizer':<10} {'epochs':>6} {'steps':>7} {'final loss':>11} {'train ' + metric:>14} {'test ' + metric:>13} {'fit s':>7}"
        print(header)
        print("-" * len(header))
        for name in OPTIMIZER_NAMES:
            # momentum 0.9 multiplies the effective step by 10: give it a tenth of SGD's rate
            lr = 0.1 if name in ("sgd", "adagrad") else 0.01
            model = estimator(optimizer=name, learning_rate=lr, batch_size=args.batch_size,
                              max_iter=args.epochs, random_state=args.seed, backend=args.backend)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                tic = time.perf_counter()
                model.fit(Xtr, ytr)
                seconds = time.perf_counter() - tic
            print(f"{name:<10} {model.n_iter_:>6} {model.t_:>7} {model.loss_curve_[-1]:>11.5f} "
                  f"{model.score(Xtr, ytr):>14.4f} {model.score(Xte, yte):>13.4f} {seconds:>7.3f}")
    print("\n(the first fit of each dtype includes the kernel's compile or cache load)")
    if args.plot:
        return _write_gallery(args.plot)
    return 0


def _write_gallery(out_dir):
    """Run the gallery (the ``plot_*.py`` scripts of the source tree's ``examples/``), each
    writing its PNG into ``out_dir``."""
    import glob
    import os
    import runpy

    import fastgd
    from fastgd.plot import _pyplot

    try:
        _pyplot()
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 1
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(fastgd.__file__))), "examples")
    scripts = sorted(glob.glob(os.path.join(examples, "plot_*.py")))
    if not scripts:
        print(f"--plot runs the gallery scripts of the source tree's examples/ folder, and there is none next to "
              f"this installation of fastgd ({examples}): run it from a checkout of the source "
              "(pip install -e .), or run the scripts of examples/ directly.", file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    print(f"\ngallery: {len(scripts)} pictures into {out_dir}")
    for script in scripts:
        print(f"\n{os.path.basename(script)}")
        print(f"wrote {runpy.run_path(script)['main'](out_dir)}")
    return 0


def _demo_sparse(args):
    import os
    import tempfile

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    from fastgd import LogisticRegression
    from fastgd._contract import SPARSE_DENSE, SPARSE_LAZY_APPROX, sparse_mode
    from fastgd.datasets import dump_svmlight, load_svmlight, make_sparse_classification
    from fastgd.optim import OPTIMIZER_NAMES

    X, y, _ = make_sparse_classification(args.samples, args.features, args.nnz, random_state=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.svm")
        dump_svmlight(X, y, path)
        size_mb = os.path.getsize(path) / 1e6
        tic = time.perf_counter()
        X, y = load_svmlight(path, n_features=args.features)
        load_s = time.perf_counter() - tic
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=args.seed)
    print(f"sparse logistic regression: {X.shape[0]} x {X.shape[1]} CSR, {X.nnz / X.shape[0]:.1f} "
          f"non-zeros per row; svmlight file {size_mb:.1f} MB loaded in {load_s:.2f} s; "
          f"batch_size={args.batch_size}, {args.epochs} epochs, backend={args.backend}")
    header = f"{'optimizer':<10} {'lazy':<5} {'update path':<22} {'final loss':>11} {'train acc':>10} {'test acc':>9} {'fit s':>7}"
    print(header)
    print("-" * len(header))
    for name in OPTIMIZER_NAMES:
        for lazy in (False, True):
            lr = 0.1 if name in ("sgd", "momentum", "nesterov", "adagrad") else 0.01
            model = LogisticRegression(optimizer=name, learning_rate=lr, batch_size=args.batch_size,
                                       max_iter=args.epochs, tol=None, alpha=1e-5, random_state=args.seed,
                                       backend=args.backend, lazy_updates=lazy)
            model.fit(Xtr[:50], ytr[:50])  # compile / load the kernel outside the timing
            codes, hp = model._kernel_arrays()
            mode = {SPARSE_DENSE: "exact, every coordinate", SPARSE_LAZY_APPROX: "lazy (approximate)"}.get(
                sparse_mode(codes, hp), "lazy, exact")
            if lazy and mode == "lazy, exact":
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                tic = time.perf_counter()
                model.fit(Xtr, ytr)
                seconds = time.perf_counter() - tic
            print(f"{name:<10} {str(lazy):<5} {mode:<22} {model.loss_curve_[-1]:>11.5f} "
                  f"{model.score(Xtr, ytr):>10.4f} {model.score(Xte, yte):>9.4f} {seconds:>7.3f}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastgd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train each optimizer on bundled scikit-learn data and compare")
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--epochs", type=int, default=200)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--backend", default="auto", choices=["auto", "numba", "cython", "numpy"])
    demo.add_argument("--plot", metavar="DIR", help="also write the gallery's pictures (learning curves, loss "
                      "surfaces with optimizer paths, learning rates, schedules) as PNG files into DIR")
    demo.set_defaults(func=_demo)
    sparse = sub.add_parser("demo-sparse", help="train each optimizer on a generated sparse problem read "
                            "back from the svmlight format")
    sparse.add_argument("--samples", type=int, default=20_000)
    sparse.add_argument("--features", type=int, default=100_000)
    sparse.add_argument("--nnz", type=int, default=20, help="non-zeros per row")
    sparse.add_argument("--batch-size", type=int, default=32)
    sparse.add_argument("--epochs", type=int, default=5)
    sparse.add_argument("--seed", type=int, default=0)
    sparse.add_argument("--backend", default="auto", choices=["auto", "numba", "cython", "numpy"])
    sparse.set_defaults(func=_demo_sparse)
    from fastgd._cli_train import register as register_train_commands

    register_train_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
