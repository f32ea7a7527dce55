"""``fastgd train``, ``fastgd predict`` and ``fastgd evaluate``: training from files in a shell.

The Vowpal Wabbit workflow on fastgd's estimators::

    fastgd train data.svm.gz --model m.joblib --passes 5 --loss log --holdout 0.1
    fastgd predict test.svm --model m.joblib --out predictions.txt [--proba]
    fastgd evaluate test.svm --model m.joblib

DATA is svmlight / libsvm or CSV (optionally gzip- or bz2-compressed). Training streams the
file in chunks (:func:`fastgd.stream.fit`), so it need not fit in memory. The model file is the
fitted estimator itself (``joblib.load`` gives a ``fastgd.LogisticRegression`` or
``LinearRegression``), with two extra attributes: ``input_spec_``, how the file's rows became
features (svmlight width and index base; CSV columns, target and hashing), which ``predict``
and ``evaluate`` reuse so a file is encoded exactly as in training; and ``pass_history_``.

Errors in the data or the options are reported in one line on stderr, with exit status 2.
"""

import argparse
import sys

import numpy as np

LOSSES = ("log", "softmax", "squared")
EXIT_USAGE = 2


class CommandError(Exception):
    """A problem the user can fix (a bad file, option or model): one line, exit status 2."""


def register(subparsers):
    """Add the ``train``, ``predict`` and ``evaluate`` commands to the ``fastgd`` parser."""
    from fastgd.optim import OPTIMIZER_NAMES

    def add(name, help, func):
        parser = subparsers.add_parser(name, help=help, description=help,
                                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        parser.error = lambda message: _usage_error(parser, message)
        parser.set_defaults(func=lambda args: _run(func, args, name))
        parser.add_argument("data", metavar="DATA", help="svmlight/libsvm or CSV file, optionally .gz/.bz2")
        parser.add_argument("--model", "-m", required=True, metavar="M.joblib", help="model file")
        parser.add_argument("--chunk-size", type=_positive_int, default=100_000, help="rows read at a time "
                            "(memory grows with it)")
        return parser

    train = add("train", "train a model from a data file, streaming it in chunks", _train)
    train.add_argument("--format", choices=["auto", "svmlight", "csv"], default="auto",
                       help="file format ('auto': from the file name)")
    train.add_argument("--loss", choices=LOSSES, default="log",
                       help="log: binary logistic; softmax: multinomial logistic; squared: linear regression")
    train.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="adagrad",
                       help="update rule (with --l2, sgd keeps sparse steps O(nnz))")
    train.add_argument("--learning-rate", "-l", type=_positive_float, default=0.1, help="base step size")
    train.add_argument("--batch-size", type=_positive_int, default=1, help="rows per step (1: online)")
    train.add_argument("--passes", type=_positive_int, default=1, help="passes over the data file")
    train.add_argument("--l1", type=_non_negative_float, default=0.0, help="L1 penalty strength")
    train.add_argument("--l2", type=_non_negative_float, default=0.0, help="L2 penalty strength")
    train.add_argument("--holdout", type=_fraction, default=0.1,
                       help="fraction of rows held out and scored every pass (0 disables)")
    train.add_argument("--hash-bits", type=_hash_bits, default=18,
                       help="CSV: string columns are hashed into 2**bits columns")
    train.add_argument("--target", default="0", help="CSV: target column, a name or position")
    train.add_argument("--categorical", default="", help="CSV: comma-separated columns to hash even if numeric")
    train.add_argument("--n-features", type=_positive_int, default=None,
                       help="svmlight: number of features (None: read the file once to find it)")
    train.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="floating-point type of the model and the data")
    train.add_argument("--seed", type=int, default=0, help="seeds the chunk order, holdout and row shuffling")
    train.add_argument("--backend", choices=["auto", "numba", "cython", "numpy"], default="auto", help="fastgd kernel backend")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bar or per-pass lines")

    predict = add("predict", "write a model's predictions for a data file", _predict)
    predict.add_argument("--out", "-o", default=None, help="output file (None: standard output)")
    predict.add_argument("--proba", action="store_true",
                         help="class probabilities, comma-separated in the order of the model's classes")

    add("evaluate", "print a model's loss and score on a data file", _evaluate)


def _usage_error(parser, message):
    sys.stderr.write(f"{parser.prog}: error: {message}\n")
    sys.exit(EXIT_USAGE)


def _positive_int(text):
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def _positive_float(text):
    return _number(text, float, lambda v: v > 0 and np.isfinite(v), "a positive number")


def _non_negative_float(text):
    return _number(text, float, lambda v: v >= 0 and np.isfinite(v), "a non-negative number")


def _fraction(text):
    return _number(text, float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def _hash_bits(text):
    return _number(text, int, lambda v: 1 <= v <= 30, "an integer from 1 to 30")


def _number(text, kind, ok, what):
    import argparse

    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
    return value


def _run(func, args, name):
    from fastgd._file_readers import DataFileError
    from fastgd.exceptions import DivergenceError

    try:
        return func(args)
    except (CommandError, DataFileError, DivergenceError, ValueError, OSError, ImportError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        sys.stderr.write(f"fastgd {name}: error: {message}\n")
        return EXIT_USAGE


def _make_estimator(args):
    from fastgd import LinearRegression, LogisticRegression

    alpha = args.l1 + args.l2
    penalty = None if alpha == 0 else "elasticnet"
    params = dict(optimizer=args.optimizer, learning_rate=args.learning_rate, batch_size=args.batch_size,
                  penalty=penalty, alpha=alpha, l1_ratio=args.l1 / alpha if alpha else 0.0,
                  random_state=args.seed, backend=args.backend)
    return (LinearRegression if args.loss == "squared" else LogisticRegression)(**params)


def _open_training_file(args):
    from fastgd._file_readers import guess_format, open_file

    fmt = guess_format(args.data) if args.format == "auto" else args.format
    if fmt == "npy":
        raise CommandError(f"{args.data}: .npy files are trained from Python (fastgd.stream.fit); the command "
                           "line reads svmlight or CSV.")
    if fmt == "svmlight":
        return open_file(args.data, args.chunk_size, fmt, n_features=args.n_features, dtype=args.dtype)
    target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    categorical = [c for c in args.categorical.split(",") if c]
    return open_file(args.data, args.chunk_size, fmt, target=target, categorical=categorical,
                     hash_bits=args.hash_bits, dtype=args.dtype)


def _train(args):
    import joblib

    from fastgd import stream

    reader = _open_training_file(args)
    estimator = _make_estimator(args)
    classes = None
    if args.loss != "squared":
        classes = reader.scan().classes
        if args.loss == "log" and len(classes) != 2:
            raise CommandError(f"--loss log needs two classes; {args.data} has {len(classes)} "
                               f"({_preview(classes)}); use --loss softmax for more.")
    elif reader.format == "csv" and not reader.spec["target_is_numeric"]:
        raise CommandError(f"--loss squared needs a numeric target; column {reader.spec['target']!r} is not.")
    progress = not args.quiet and _tqdm_installed()
    stream.fit(estimator, reader, passes=args.passes, holdout=args.holdout or None, classes=classes,
               progress=progress, random_state=args.seed, verbose=0 if args.quiet else 1)
    estimator.input_spec_ = reader.spec
    joblib.dump(estimator, args.model)
    if not args.quiet:
        print(f"model written to {args.model}", flush=True)
    return 0


def _preview(values, limit=5):
    shown = ", ".join(map(str, values[:limit]))
    return shown + (", ..." if len(values) > limit else "")


def _tqdm_installed():
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _load_model(path):
    import joblib

    try:
        model = joblib.load(path)
    except FileNotFoundError:
        raise CommandError(f"{path}: no such model file.") from None
    except Exception as exc:  # joblib/pickle raise many types for a file that is not a model
        raise CommandError(f"{path}: not a model file written by fastgd train ({type(exc).__name__}).") from None
    if not hasattr(model, "input_spec_"):
        raise CommandError(f"{path}: not a model written by fastgd train (it has no input_spec_).")
    return model


def _model_chunks(args, model):
    from fastgd._file_readers import open_with_spec

    dtype = np.float32 if getattr(model, "_dtype", np.float64) == np.float32 else np.float64
    return open_with_spec(args.data, args.chunk_size, model.input_spec_, dtype=dtype).chunks()


def _format_value(v):
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() else f"{v:.9g}"
    return str(v)


def _predict(args):
    model = _load_model(args.model)
    if args.proba and not hasattr(model, "predict_proba"):
        raise CommandError("--proba needs a classifier; this model is a regression.")
    out = sys.stdout if args.out is None else open(args.out, "w")
    try:
        for X, _ in _model_chunks(args, model):
            if args.proba:
                np.savetxt(out, model.predict_proba(X), fmt="%.9g", delimiter=",")
            else:
                out.write("".join(_format_value(v) + "\n" for v in model.predict(X)))
        out.flush()
    except BrokenPipeError:
        # The reader stopped early (``fastgd predict ... | head``): not an error. Point stdout
        # at devnull so that the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _evaluate(args):
    from sklearn.base import is_classifier

    from fastgd.stream import chunk_loss

    model = _load_model(args.model)
    rows, loss, score = 0, 0.0, 0.0
    for X, y in _model_chunks(args, model):
        if y is None:
            raise CommandError(f"{args.data}: has no target column {model.input_spec_['target']!r} to evaluate on.")
        part, n = chunk_loss(model, X, y)
        if is_classifier(model):
            score += float(np.sum(model.predict(X) == y))
        else:
            score += float(np.sum((model.predict(X) - y) ** 2))
        loss += part
        rows += n
    if rows == 0:
        raise CommandError(f"{args.data}: no rows to evaluate.")
    if is_classifier(model):
        print(f"rows {rows}  log loss {loss / rows:.6g}  accuracy {score / rows:.6g}")
    else:
        print(f"rows {rows}  squared loss {loss / rows:.6g}  rmse {np.sqrt(score / rows):.6g}")
    return 0
