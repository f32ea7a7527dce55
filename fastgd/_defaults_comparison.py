"""The estimators at their defaults against scikit-learn's exact solvers, on the same split.

Used by ``fastgd demo`` and ``bench/defaults_table.py`` (which writes the README's "Defaults"
table): for each data set (scikit-learn's bundled sets, raw and
standardised, and generated problems at 200,000 rows with features at mixed scales) the test
score and fit time of ``fastgd.LogisticRegression()`` / ``fastgd.LinearRegression()`` at their
defaults, next to ``sklearn.linear_model.LogisticRegression()`` (lbfgs) and
``LinearRegression()``, whether fastgd warned, and whether it is within 0.01 of scikit-learn's
score. A row that is not within 0.01 must carry a warning (the criterion of issue 10).

It also checks that ``partial_fit`` over 10 chunks, for as many passes as ``fit`` took epochs,
ends within 0.01 of ``fit``'s score. Fit times depend on the machine and its load; read them
side by side within one run.
"""

import time
import warnings

import numpy as np

TOLERANCE = 0.01
N_CHUNKS = 10


def _bundled(name):
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
              "iris": datasets.load_iris, "digits": datasets.load_digits,
              "diabetes": datasets.load_diabetes}[name]
    X, y = loader(return_X_y=True)
    if name == "diabetes":
        # scikit-learn ships diabetes pre-scaled (each column centred, unit norm); "raw" is
        # the original measurements (age in years, bmi, blood pressure, serum values).
        X = datasets.load_diabetes(scaled=False).data
    return X, y, name == "diabetes"


def _mixed_scales(n_features, rng):
    return np.logspace(-2, 3, n_features)[rng.permutation(n_features)]


def _generated(name, n_samples, seed=0):
    from sklearn import datasets

    rng = np.random.default_rng(seed)
    if name == "make_classification":
        X, y = datasets.make_classification(n_samples=n_samples, n_features=20, n_informative=10,
                                            random_state=seed)
        return X * _mixed_scales(20, rng), y, False
    if name == "make_regression":
        X, y = datasets.make_regression(n_samples=n_samples, n_features=20, n_informative=10,
                                        noise=10.0, random_state=seed)
        return X * _mixed_scales(20, rng), y / y.std() * 1e3, True
    X, y = datasets.make_regression(n_samples=n_samples, n_features=50, n_informative=20, n_targets=5,
                                    noise=10.0, random_state=seed)
    return X, y, True


def _timed_fit(estimator, X, y):
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tic = time.perf_counter()
        estimator.fit(X, y)
        seconds = time.perf_counter() - tic
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    return seconds, messages


BUNDLED = ("breast_cancer", "wine", "iris", "digits", "diabetes")


def compare(X, y, regression, *, standardise, seed=0, check_partial_fit=False, backend="auto"):
    """One row: scores and fit times of the defaults and of scikit-learn on one split."""
    import sklearn.linear_model as sk
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    import fastgd

    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed,
                                          stratify=None if regression else y)
    if standardise:
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    ours = (fastgd.LinearRegression if regression else fastgd.LogisticRegression)(random_state=seed, backend=backend)
    theirs = sk.LinearRegression() if regression else sk.LogisticRegression(max_iter=1000)
    their_s, _ = _timed_fit(theirs, Xtr, ytr)
    our_s, messages = _timed_fit(ours, Xtr, ytr)
    row = dict(score=ours.score(Xte, yte), seconds=our_s, sk_score=theirs.score(Xte, yte), sk_seconds=their_s,
               epochs=ours.n_iter_, learning_rate=ours.learning_rate_,
               reductions=len(ours.learning_rate_history_) - 1, warnings=messages)
    row["within"] = row["score"] >= row["sk_score"] - TOLERANCE
    if check_partial_fit:
        inc = (fastgd.LinearRegression if regression else fastgd.LogisticRegression)(random_state=seed, backend=backend)
        chunks = np.array_split(np.arange(len(ytr)), N_CHUNKS)
        classes = None if regression else np.unique(ytr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(ours.n_iter_):
                for idx in chunks:
                    if regression:
                        inc.partial_fit(Xtr[idx], ytr[idx])
                    else:
                        inc.partial_fit(Xtr[idx], ytr[idx], classes=classes)
        row["partial_fit_score"] = inc.score(Xte, yte)
    return row


def rows(datasets=BUNDLED, generated=True, n_generated=200_000, check_partial_fit=True, seed=0, backend="auto"):
    """Yield ``(label, row)`` for every row of the table: each of ``datasets`` raw and
    standardised, then (with ``generated``) the generated large and multi-output problems."""
    kw = dict(seed=seed, check_partial_fit=check_partial_fit, backend=backend)
    for name in datasets:
        X, y, regression = _bundled(name)
        for standardise in (False, True):
            label = f"{name}, {'standardised' if standardise else 'raw'}"
            yield label, compare(X, y, regression, standardise=standardise, **kw)
    if not generated:
        return
    for name in ("make_classification", "make_regression"):
        X, y, regression = _generated(name, n_generated, seed)
        for standardise in (False, True):
            label = (f"{name} {n_generated:,} x 20, features at scales 1e-2..1e3"
                     + (", target at scale 1e3" if regression else "")
                     + (", standardised" if standardise else ", raw"))
            yield label, compare(X, y, regression, standardise=standardise, **kw)
    X, y, regression = _generated("multi_output", 20_000, seed)
    yield "make_regression 20,000 x 50, 5 targets", compare(X, y, True, standardise=False, **kw)


def progress_line(label, r):
    """One line per row while the table is being measured."""
    partial = f", partial_fit {r['partial_fit_score']:.4f}" if "partial_fit_score" in r else ""
    return (f"{label}: fastgd {r['score']:.4f} in {r['seconds']:.3f} s ({r['epochs']} epochs, learning_rate_ "
            f"{r['learning_rate']:.3g}, {r['reductions']} reductions){partial}; scikit-learn "
            f"{r['sk_score']:.4f} in {r['sk_seconds']:.3f} s; "
            + (f"warning: {r['warnings'][0]}" if r["warnings"] else "no warning"))


def measure_and_print(row_iter):
    """Measure each row (printing a line as it comes), then print the Markdown table and the
    rows that miss the criterion unexplained; returns ``(table, those labels)``."""
    table = []
    for label, row in row_iter:
        table.append((label, row))
        print(progress_line(label, row), flush=True)
    print()
    print(markdown(table))
    failing = unexplained(table)
    if failing:
        print("\nrows more than 0.01 below scikit-learn's score without a warning: " + "; ".join(failing))
    return table, failing


def unexplained(table):
    """Labels of rows more than 0.01 below scikit-learn's score without a warning."""
    return [label for label, r in table if not r["within"] and not r["warnings"]]


def markdown(table):
    """The rows as a Markdown table (the partial_fit column only when it was measured)."""
    partial = any("partial_fit_score" in r for _, r in table)
    lines = ["| data (test split, 25 %) | fastgd default | fit s | scikit-learn | fit s | within 0.01 | warning |"
             + (" partial_fit, 10 chunks |" if partial else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if partial else "")]
    for label, r in table:
        warning = _summary(r["warnings"][0]) if r["warnings"] else "none"
        line = (f"| {label} | {r['score']:.4f} ({r['epochs']} epochs) | {r['seconds']:.3f} | "
                f"{r['sk_score']:.4f} | {r['sk_seconds']:.3f} | {'yes' if r['within'] else 'no'} | {warning} |")
        if partial:
            line += f" {r['partial_fit_score']:.4f} |" if "partial_fit_score" in r else " |"
        lines.append(line)
    return "\n".join(lines)


def _summary(message):
    if "standardise" in message:
        return "standardise"
    if "max_iter" in message:
        return "max_iter reached"
    return message.split(":", 1)[-1].strip()[:60]
