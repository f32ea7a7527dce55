"""The drop-ins' ``optimizer`` other than ``"sgd"``: scikit-learn's losses trained by fastgd's
main engine (the engine of :class:`~fastgd.LogisticRegression` / :class:`~fastgd.LinearRegression`).

As scikit-learn does, a classifier trains one binary problem per class, one-vs-rest (one
problem for two classes), each with the drop-in's loss, penalty, class and sample weights; the
problems run in parallel threads under ``n_jobs`` (the kernels release the GIL). A regressor
trains one problem. Each problem is one private engine estimator:

- a binary loss (``log_loss``, ``hinge``, ``squared_hinge``, ``modified_huber``,
  ``perceptron``) trains :class:`_BinaryLossEngine`, a LogisticRegression on the targets
  {0, 1} (``1`` = the positive class), the encoding every binary loss of the kernel contract
  takes;
- a regression loss (``squared_error``, ``huber``, ``epsilon_insensitive``,
  ``squared_epsilon_insensitive``) trains :class:`_RegressionLossEngine`, a LinearRegression;
  in a classifier its targets are +-1, as scikit-learn's ``SGDClassifier`` sets them.

Why private engines and no public ``loss=`` on LogisticRegression / LinearRegression: those
two estimators are named after their loss (a "LogisticRegression" with the hinge loss would be
a linear SVM under a wrong name), and the drop-ins are the public face of scikit-learn's
losses. The engines differ from their public parents only in the loss code and parameter they
train with, set by this module on the instance.

The step is the main engine's (one sample per step, learning rate ``eta0``, the chosen
optimizer), its objective fastgd's: the sample-weighted mean loss (weights scaled to mean 1)
plus the penalty. Each call trains copies of the engines and publishes only when every problem
succeeded, so a failed ``fit`` / ``partial_fit`` leaves the model as it was.
"""

import copy
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import _check_partial_fit_first_call, check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_random_state, validate_data

from fastgd import _contract as C
from fastgd import losses
from fastgd.linear_model._linear import LinearRegression
from fastgd.linear_model._logistic import LogisticRegression

LOSS_CODES = {
    "log_loss": C.LOSS_LOG, "hinge": C.LOSS_HINGE, "squared_hinge": C.LOSS_SQUARED_HINGE,
    "modified_huber": C.LOSS_MODIFIED_HUBER, "perceptron": C.LOSS_PERCEPTRON,
    "squared_error": C.LOSS_SQUARED, "huber": C.LOSS_HUBER, "epsilon_insensitive": C.LOSS_EPSILON_INSENSITIVE,
    "squared_epsilon_insensitive": C.LOSS_SQUARED_EPSILON_INSENSITIVE,
}
_MAX_INT = np.iinfo(np.int32).max


class _BinaryLossEngine(LogisticRegression):
    """LogisticRegression's engine on one binary problem (targets 0 / 1) with the binary loss
    ``_engine_loss_code`` (set on the instance by the drop-in)."""

    _engine_loss_code = C.LOSS_LOG

    def _validate_targets(self, X, y, first, classes):
        y2, class_sw = super()._validate_targets(X, y, first, classes)
        if first:
            self._loss_code = self._engine_loss_code
        return y2, class_sw


class _RegressionLossEngine(LinearRegression):
    """LinearRegression's engine with the regression loss ``_engine_loss_code`` and its
    parameter ``_loss_param`` (set on the instance by the drop-in)."""

    _engine_loss_code = C.LOSS_SQUARED

    def _validate_targets(self, X, y, first, classes):
        y2, class_sw = super()._validate_targets(X, y, first, classes)
        if first:
            self._loss_code = self._engine_loss_code
        return y2, class_sw


def _engine_params(est):
    return dict(
        optimizer=est.optimizer, learning_rate=est.eta0, batch_size=1, max_iter=est.max_iter, tol=est.tol,
        n_iter_no_change=est.n_iter_no_change, penalty=est.penalty, alpha=est.alpha,
        l1_ratio=0.15 if est.l1_ratio is None else est.l1_ratio, shuffle=est.shuffle,
        early_stopping=est.early_stopping, validation_fraction=est.validation_fraction,
        warm_start=est.warm_start, verbose=est.verbose, backend=est.backend,
    )


def _new_engine(est, seed):
    code = LOSS_CODES[est.loss]
    engine_cls = _BinaryLossEngine if code in C.BINARY_LOSSES else _RegressionLossEngine
    engine = engine_cls(**_engine_params(est), random_state=seed)
    engine._engine_loss_code = code
    engine._loss_param = float(est.epsilon) if code in losses.PARAMETRISED else 0.0
    return engine


def _problems(est, y, sample_weight):
    """Per problem: its targets and sample weights (times the class weights)."""
    if not is_classifier(est):
        return [(y, sample_weight)]
    binary_loss = LOSS_CODES[est.loss] in C.BINARY_LOSSES
    class_weight = compute_class_weight(est.class_weight, classes=est.classes_, y=y)
    n_classes = len(est.classes_)
    positives = [1] if n_classes == 2 else range(n_classes)
    problems = []
    for positive in positives:
        is_pos = y == est.classes_[positive]
        # scikit-learn's one-vs-rest weights: the binary problem's two class weights; a
        # multiclass problem weighs its positive class only
        pos_w, neg_w = (class_weight[1], class_weight[0]) if n_classes == 2 else (class_weight[positive], 1.0)
        target = np.where(is_pos, 1.0, 0.0 if binary_loss else -1.0)
        problems.append((target, sample_weight * np.where(is_pos, pos_w, neg_w)))
    return problems


def _check_labels(est, y, incremental):
    check_classification_targets(y)
    if not incremental:
        est.classes_ = np.unique(y)
    unseen = ~np.isin(y, est.classes_)
    if unseen.any():
        raise ValueError(f"y contains labels {np.unique(y[unseen])!r} that are not in classes={est.classes_!r}.")
    if len(est.classes_) < 2:
        raise ValueError(f"The number of classes has to be greater than one; got {len(est.classes_)} class")


def fit(est, X, y, sample_weight, incremental, classes=None):
    """Train ``est`` (an SGDClassifier / SGDRegressor with ``optimizer != "sgd"``) with the
    main engine: ``fit`` (``incremental=False``) or one ``partial_fit`` epoch; publishes
    ``coef_``, ``intercept_``, ``n_iter_``, ``t_`` (and ``classes_``)."""
    continuing = incremental and getattr(est, "_engines", None) is not None
    X, y = validate_data(est, X, y, accept_sparse="csr", dtype=[np.float64, np.float32], order="C",
                         y_numeric=not is_classifier(est), reset=not continuing)
    if is_classifier(est):
        if incremental:
            _check_partial_fit_first_call(est, classes)
        _check_labels(est, y, incremental)
    sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
    problems = _problems(est, y, sample_weight)
    previous = getattr(est, "_engines", None)
    reuse = previous is not None and len(previous) == len(problems) and (continuing or est.warm_start)
    if reuse:
        # copies: the fitted engines stay as they were until every problem has succeeded
        engines = [copy.deepcopy(engine).set_params(**_engine_params(est)) for engine in previous]
    else:
        seeds = check_random_state(est.random_state).randint(_MAX_INT, size=len(problems))
        engines = [_new_engine(est, int(seed)) for seed in seeds]

    def train(engine, problem):
        target, weights = problem
        if not incremental:
            engine.fit(X, target, sample_weight=weights)
        elif isinstance(engine, _BinaryLossEngine):
            engine.partial_fit(X, target, classes=[0.0, 1.0], sample_weight=weights)
        else:
            engine.partial_fit(X, target, sample_weight=weights)

    n_jobs = min(effective_n_jobs(getattr(est, "n_jobs", None)), len(engines))
    # The engines' convergence advice names their own parameters (learning_rate, ...), not the
    # drop-in's: it is replaced by scikit-learn's warning below; other warnings pass through.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if n_jobs > 1:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                list(pool.map(train, engines, problems))  # list(): re-raises a problem's error
        else:
            for engine, problem in zip(engines, problems):
                train(engine, problem)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    est._engines = engines
    coef = np.stack([np.ravel(engine.coef_) for engine in engines]).astype(X.dtype, copy=False)
    intercept = np.concatenate([np.ravel(engine.intercept_) for engine in engines]).astype(X.dtype, copy=False)
    est.coef_ = coef if is_classifier(est) else coef[0]
    est.intercept_ = intercept
    est.n_iter_ = max(engine.n_iter_ for engine in engines)
    est.t_ = float(max(engine.t_ for engine in engines) + 1)
    if not incremental and est.tol is not None and est.n_iter_ == est.max_iter:
        warnings.warn("Maximum number of iteration reached before convergence. Consider increasing max_iter to "
                      "improve the fit.", ConvergenceWarning)
    return est
