"""The ``fastgd`` command line.

Subcommands register themselves in :data:`COMMANDS` (a name, a one-line help and a function
that adds the subcommand's options and its handler); :func:`main` builds the parser from it and
turns bad input into a one-line error with exit status 2, never a traceback.
"""

import argparse
import sys
import time
import warnings

DESCRIPTION = ("fastgd: linear and logistic regression trained by compiled gradient-descent kernels. "
               "Run 'fastgd COMMAND --help' for a command's options.")
BACKENDS = ["auto", "numba", "cython", "numpy"]


class UsageError(Exception):
    """Bad command-line input found after parsing (reported in one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), without the usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(minimum, kind):
    """An argparse type: an integer not below ``minimum`` (``kind`` names it in the error)."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
        return value

    parse.__name__ = f"{kind} integer"
    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def _demo(args):
    from fastgd._defaults_comparison import measure_and_print, rows

    datasets = args.data
    print("fastgd at its defaults against scikit-learn (LogisticRegression(lbfgs) / LinearRegression) on "
          f"the same 75/25 split, raw and standardised features, backend={args.backend}. Scores are test "
          "accuracy or R^2; no learning rate is set by hand.\n", flush=True)
    measure_and_print(rows(datasets, generated=args.large, n_generated=args.rows, check_partial_fit=False,
                           seed=args.seed, backend=args.backend))
    print("\n(the first fit of a kernel variant includes its compile or cache load; times are of one "
          "run on this machine)")
    if args.plot:
        return _write_gallery(args.plot)
    return 0


def _write_gallery(out_dir):
    """Run the gallery (the ``plot_*.py`` scripts of ``examples/``, installed as
    ``fastgd.examples``), each writing its PNG into ``out_dir``."""
    import glob
    import os
    import runpy

    from fastgd.plot import _pyplot

    try:
        _pyplot()
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        import fastgd.examples as gallery

        examples = os.path.dirname(os.path.abspath(gallery.__file__))
    except ImportError:  # a source checkout used without installing it
        import fastgd

        examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(fastgd.__file__))), "examples")
    scripts = sorted(glob.glob(os.path.join(examples, "plot_*.py")))
    if not scripts:
        print(f"--plot runs the gallery scripts of examples/, and there are none in {examples}: reinstall "
              "fastgd (pip install .) or run the scripts of the source tree's examples/ directly.", file=sys.stderr)
        return 1
    os.makedirs(out_dir, exist_ok=True)
    print(f"\ngallery: {len(scripts)} pictures into {out_dir}")
    for script in scripts:
        print(f"\n{os.path.basename(script)}")
        print(f"wrote {runpy.run_path(script)['main'](out_dir)}")
    return 0


def _register_demo(sub):
    from fastgd._defaults_comparison import BUNDLED

    demo = sub.add_parser("demo", help="compare the defaults with scikit-learn on bundled data",
                          description="Fit fastgd's LogisticRegression / LinearRegression at their defaults "
                          "and scikit-learn's LogisticRegression(lbfgs) / LinearRegression on the same split "
                          "of scikit-learn's bundled data sets, raw and standardised; print score and fit time.",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--data", nargs="+", choices=BUNDLED, metavar="NAME", default=list(BUNDLED),
                      help="bundled data sets to use")
    demo.add_argument("--large", action="store_true",
                      help="also the generated problems at --rows samples with features at mixed scales, "
                      "and a multi-output regression")
    demo.add_argument("--rows", type=_positive_int, default=200_000, help="samples of the generated problems")
    demo.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the split and of the estimators")
    demo.add_argument("--backend", default="auto", choices=BACKENDS, help="fastgd kernel backend")
    demo.add_argument("--plot", metavar="DIR", help="also write the gallery's pictures (learning curves, loss "
                      "surfaces with optimizer paths, learning rates, schedules) as PNG files into DIR")
    demo.set_defaults(func=_demo)


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
            model = LogisticRegression(optimizer=name, batch_size=args.batch_size,
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


def _register_demo_sparse(sub):
    sparse = sub.add_parser("demo-sparse", help="train each optimizer on a generated sparse problem read back "
                            "from the svmlight format",
                            description="Generate a sparse binary classification problem, write it in the "
                            "svmlight format, read it back and train every optimizer on it.",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sparse.add_argument("--samples", type=_positive_int, default=20_000, help="rows of the generated problem")
    sparse.add_argument("--features", type=_positive_int, default=100_000, help="columns of the generated problem")
    sparse.add_argument("--nnz", type=_positive_int, default=20, help="non-zeros per row")
    sparse.add_argument("--batch-size", type=_positive_int, default=32, help="samples per step")
    sparse.add_argument("--epochs", type=_positive_int, default=5, help="passes over the data")
    sparse.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the data and the estimators")
    sparse.add_argument("--backend", default="auto", choices=BACKENDS, help="fastgd kernel backend")
    sparse.set_defaults(func=_demo_sparse)


# (name, register function): each function adds one subcommand to the subparsers object.
def _register_train_commands(sub):
    from fastgd._cli_train import register

    register(sub)


COMMANDS = [
    ("demo", _register_demo),
    ("demo-sparse", _register_demo_sparse),
    ("train, predict, evaluate", _register_train_commands),
]


def build_parser():
    """The ``fastgd`` argument parser, with every subcommand of :data:`COMMANDS`."""
    from fastgd import __version__

    parser = _Parser(prog="fastgd", description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastgd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for _, register in COMMANDS:
        register(sub)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (2 for bad input, with a one-line error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare "fastgd" / "python -m fastgd": say what there is
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except (UsageError, ValueError, OSError) as exc:
        # Input the options could not check (a file that does not exist, data the estimators
        # refuse): the user's to fix, so one line, not a traceback.
        message = " ".join(str(exc).split())
        print(f"fastgd {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastgd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
