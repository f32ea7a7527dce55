"""Drop-in replacements for scikit-learn's ``SGDClassifier`` and ``SGDRegressor``.

Same parameters, defaults and meanings as scikit-learn 1.9, the same fitted numbers (with
``shuffle=False``, the coefficients equal scikit-learn's to rounding), and every epoch one
compiled call: ``from fastgd import SGDClassifier`` is the whole migration.

Layout of the implementation:

- this module: the estimators and the epoch driver (stopping rule, early stopping, the
  ``adaptive`` rule's stall handling, one-vs-rest in threads);
- :mod:`fastgd._backends._sgd_rules`: the per-sample rules, one source for both compiled
  engines, and the integer codes of the kernel arguments;
- :mod:`fastgd._backends._numba_sgd` and ``_cython/_sgd_kernels.pyx``: the compiled epochs;
- :mod:`fastgd._backends._reference_sgd`: the NumPy reference the engines are tested against.
"""

import importlib
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier as _SkSGDClassifier
from sklearn.linear_model import SGDRegressor as _SkSGDRegressor
from sklearn.linear_model._base import LinearClassifierMixin, SparseCoefMixin
from sklearn.metrics import r2_score
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, check_random_state, validate_data

from fastgd._backends import _sgd_rules as R
from fastgd._sparse_validation import check_csr_structure
from fastgd.linear_model._params import CachedParamValidation
from fastgd.losses import vector_dot
from fastgd.optim import OPTIMIZER_NAMES

_MAX_INT = np.iinfo(np.int32).max
# scikit-learn's intercept step is damped to 1 % on sparse input (many steps see few features)
_SPARSE_INTERCEPT_DECAY = 0.01
_CLASSIFICATION_LOSSES = {
    # name: (kernel code, loss parameter, targets in {0, 1} instead of {-1, 1})
    "hinge": (R.LOSS_HINGE, 1.0, False),
    "squared_hinge": (R.LOSS_SQUARED_HINGE, 1.0, False),
    "perceptron": (R.LOSS_HINGE, 0.0, False),
    "log_loss": (R.LOSS_LOG, 0.0, True),
    "modified_huber": (R.LOSS_MODIFIED_HUBER, 0.0, False),
}
_REGRESSION_LOSSES = {
    "squared_error": (R.LOSS_SQUARED, 0.0, False),
    "huber": (R.LOSS_HUBER, None, False),
    "epsilon_insensitive": (R.LOSS_EPSILON_INSENSITIVE, None, False),
    "squared_epsilon_insensitive": (R.LOSS_SQUARED_EPSILON_INSENSITIVE, None, False),
}
_PENALTIES = {None: R.PENALTY_NONE, "l2": R.PENALTY_L2, "l1": R.PENALTY_L1, "elasticnet": R.PENALTY_ELASTICNET}
_LEARNING_RATES = {
    "constant": R.LR_CONSTANT, "optimal": R.LR_OPTIMAL, "invscaling": R.LR_INVSCALING,
    "adaptive": R.LR_ADAPTIVE, "pa1": R.LR_PA1, "pa2": R.LR_PA2,
}
_SGD_BACKENDS = {"numpy": "fastgd._backends._reference_sgd", "numba": "fastgd._backends._numba_sgd",
                 "cython": "fastgd._backends._cython._sgd_kernels"}


def get_sgd_backend(name="auto"):
    """The module implementing the scikit-learn-semantics epoch for backend ``name``
    (``FASTGD_BACKEND`` is honoured for ``"auto"``, as for the other estimators)."""
    if name == "auto":
        name = os.environ.get("FASTGD_BACKEND", "auto")
    candidates = ("cython", "numba", "numpy") if name == "auto" else (name,)
    for candidate in candidates:
        try:
            return importlib.import_module(_SGD_BACKENDS[candidate])
        except ImportError:
            if name != "auto":
                raise
    raise ImportError("no backend for SGDClassifier / SGDRegressor could be imported")


def _loss_table(estimator):
    return {**_CLASSIFICATION_LOSSES, **_REGRESSION_LOSSES} if is_classifier(estimator) else _REGRESSION_LOSSES


class _Problem:
    """One binary (or regression) problem: the data, encoded targets, weights and the
    kernel configuration, trained by :func:`_train` for up to ``max_iter`` epochs."""

    def __init__(self, est, X, y, sw, validation_mask, pos_weight, neg_weight):
        self.X, self.y, self.sw = X, y, sw
        code, par, _ = _loss_table(est)[est.loss]
        self.codes = np.zeros(R.N_CODES, dtype=np.int64)
        self.hp = np.zeros(R.N_HP, dtype=np.float64)
        penalty = _PENALTIES[est.penalty]
        lr = _LEARNING_RATES[est.learning_rate]
        self.codes[R.C_LOSS] = code
        self.codes[R.C_PENALTY] = penalty
        self.codes[R.C_LEARNING_RATE] = lr
        self.codes[R.C_FIT_INTERCEPT] = int(est.fit_intercept)
        self.codes[R.C_AVERAGE] = int(est.average)
        # the epoch's loss and objective sums are read by verbose output and by the stopping
        # rule on the training objective (not by early stopping, nor with tol=None)
        stops_on_objective = not est.early_stopping and est.tol is not None and est.tol > -np.inf
        self.codes[R.C_SUM_LOSS] = int(bool(est.verbose) or stops_on_objective)
        l1_ratio = {R.PENALTY_L2: 0.0, R.PENALTY_L1: 1.0}.get(penalty, est.l1_ratio if est.l1_ratio is not None else 0.0)
        self.hp[R.H_ALPHA] = est.alpha
        self.hp[R.H_L1_RATIO] = l1_ratio
        self.hp[R.H_ETA0] = est.eta0
        self.hp[R.H_POWER_T] = est.power_t
        self.hp[R.H_LOSS_PARAM] = est.epsilon if par is None else par
        self.hp[R.H_WEIGHT_POS] = pos_weight
        self.hp[R.H_WEIGHT_NEG] = neg_weight
        self.hp[R.H_INTERCEPT_DECAY] = _SPARSE_INTERCEPT_DECAY if sp.issparse(X) else 1.0
        # scikit-learn folds its weight scale back in below 1e-9 (float64) / 1e-6 (float32)
        self.hp[R.H_RESCALE_BELOW] = 1e-9 if X.dtype == np.float64 else 1e-6
        if lr == R.LR_OPTIMAL:
            # Bottou's heuristic: the first step is the one a weight of typical size
            # 1/sqrt(alpha) would take, eta = typw / max(1, dloss(-typw; y=1)).
            typw = math.sqrt(1.0 / math.sqrt(est.alpha))
            dloss = R.sample_dloss(code, 1.0, -typw, self.hp[R.H_LOSS_PARAM])  # the shared rule, in Python
            self.hp[R.H_OPTIMAL_INIT] = 1.0 / (typw / max(1.0, dloss) * est.alpha)
        if sp.issparse(X):
            # the kernels take int32 CSR indices (accept_large_sparse=False keeps them in range)
            self.indices = X.indices.astype(np.int32, copy=False)
            self.indptr = X.indptr.astype(np.int32, copy=False)
        self.lr = lr
        self.validation_mask = validation_mask
        self.train_idx = np.flatnonzero(~validation_mask).astype(np.int64)


def _validation_scorer(est, problem, classes):
    """scikit-learn's early-stopping score: accuracy (labels -1 / 1 against the encoded
    targets, as scikit-learn compares them) or R^2 on the held-out samples."""
    mask = problem.validation_mask
    Xv, yv, swv = problem.X[mask], problem.y[mask], problem.sw[mask]

    def score(w, intercept):
        z = np.asarray(safe_sparse_dot(Xv, w.astype(Xv.dtype, copy=False))).ravel() + intercept
        if classes is None:
            return r2_score(yv, z, sample_weight=swv)
        pred = np.where(z > 0, classes[1], classes[0])
        return float(np.average(pred == yv, weights=swv))

    return score


def _train(est, backend, problem, w, aw, intercept, average_intercept, t, max_iter, rng, score, label):
    """scikit-learn's ``_plain_sgd`` outer loop around one compiled epoch per iteration.

    Stops when the epoch objective (mean loss plus penalty over the training samples) has not
    improved by ``tol`` for ``n_iter_no_change`` epochs (with early stopping: the validation
    score), where ``adaptive`` divides eta by 5 instead while eta > 1e-6. ``w`` and ``aw`` are
    updated in place. Returns ``(intercept, average_intercept, n_iter)``.
    """
    scalars = np.zeros(R.N_SCALARS, dtype=np.float64)
    scalars[R.S_INTERCEPT] = intercept
    scalars[R.S_AVERAGE_INTERCEPT] = average_intercept
    scalars[R.S_T] = t
    scalars[R.S_ETA] = est.eta0
    scalars[R.S_WSCALE] = 1.0
    scalars[R.S_AVERAGE_B] = 1.0
    scalars[R.S_SQ_NORM] = vector_dot(w, w)
    scalars[R.S_L1_NORM] = float(np.abs(w).sum())
    q = np.zeros(len(w), dtype=w.dtype)
    aw_arg = aw if aw is not None else np.zeros(1, dtype=w.dtype)
    X, y, sw = problem.X, problem.y, problem.sw
    tol = -np.inf if est.tol is None else est.tol
    train_count = len(problem.train_idx)
    best_objective, best_score, no_improvement = np.inf, -np.inf, 0
    for epoch in range(max_iter):
        if est.verbose > 0:
            print(f"-- Epoch {epoch + 1}{label}")
        order = rng.permutation(problem.train_idx) if est.shuffle else problem.train_idx
        if sp.issparse(X):
            status, loss_sum, objective_sum = backend.sgd_epoch_csr(
                X.data, problem.indices, problem.indptr, y, sw, order, w, aw_arg, q, scalars, problem.codes, problem.hp)
        else:
            status, loss_sum, objective_sum = backend.sgd_epoch_dense(
                X, y, sw, order, w, aw_arg, q, scalars, problem.codes, problem.hp)
        if status != R.STATUS_OK:
            raise ValueError(
                f"Floating-point under-/overflow occurred at epoch #{epoch + 1}. Scaling input data "
                "with StandardScaler or MinMaxScaler might help."
            )
        value = None
        if score is not None:
            # scikit-learn scores the unscaled vector of its w = wscale * v form
            value = score(w / scalars[R.S_WSCALE], scalars[R.S_INTERCEPT])
            no_improvement = no_improvement + 1 if tol > -np.inf and value < best_score + tol else 0
            best_score = max(best_score, value)
        else:
            objective = objective_sum / train_count
            no_improvement = no_improvement + 1 if tol > -np.inf and objective > best_objective - tol else 0
            best_objective = min(best_objective, objective)
        if est.verbose > 0:
            print(f"Norm: {np.linalg.norm(w):.2f}, NNZs: {np.count_nonzero(w)}, Bias: {scalars[R.S_INTERCEPT]:.6f}, "
                  f"T: {(epoch + 1) * train_count}, Avg. loss: {loss_sum / train_count:f}, "
                  f"Objective: {objective_sum / train_count:f}"
                  + ("" if value is None else f", Validation score: {value:f}"))
        if no_improvement >= est.n_iter_no_change:
            if problem.lr == R.LR_ADAPTIVE and scalars[R.S_ETA] > 1e-6:
                scalars[R.S_ETA] /= 5.0
                no_improvement = 0
            else:
                if est.verbose:
                    print(f"Convergence after {epoch + 1} epochs{label}")
                break
    return scalars[R.S_INTERCEPT], scalars[R.S_AVERAGE_INTERCEPT], epoch + 1


class _BaseSGD(CachedParamValidation, SparseCoefMixin, BaseEstimator):
    """What :class:`SGDClassifier` and :class:`SGDRegressor` share: validation, parameter
    memory, the split for early stopping and the transactional fit."""

    def _more_validate_params(self, for_partial_fit=False):
        if self.early_stopping and for_partial_fit:
            raise ValueError("early_stopping should be False with partial_fit")
        if self.learning_rate == "optimal" and self.alpha == 0:
            raise ValueError("alpha must be > 0 since learning_rate is 'optimal'. alpha is used to compute "
                             "the optimal learning rate.")
        if self.learning_rate in ("pa1", "pa2"):
            needed = "hinge" if is_classifier(self) else "epsilon_insensitive"
            if self.loss != needed:
                raise ValueError(f"Learning rate '{self.learning_rate}' only works with loss '{needed}'.")
        if self.penalty == "elasticnet" and self.l1_ratio is None:
            raise ValueError("l1_ratio must be set when penalty is 'elasticnet'")

    def _allocate(self, n_rows, n_features, dtype, coef_init=None, intercept_init=None):
        if coef_init is not None:
            coef_init = np.array(coef_init, dtype=dtype, order="C")
            shape = (n_rows, n_features) if n_rows > 1 else (n_features,)
            if n_rows == 1:
                coef_init = coef_init.ravel()
            if coef_init.shape != shape:
                raise ValueError(f"Provided coef_init has shape {coef_init.shape}; the data needs {shape}.")
            coef = coef_init.reshape(n_rows, n_features)
        else:
            coef = np.zeros((n_rows, n_features), dtype=dtype)
        if intercept_init is not None:
            intercept_init = np.array(intercept_init, dtype=dtype).reshape(-1)
            if intercept_init.shape != (n_rows,):
                raise ValueError(f"Provided intercept_init has shape {intercept_init.shape}; the data needs ({n_rows},).")
            intercept = intercept_init
        else:
            intercept = np.zeros(n_rows, dtype=dtype)
        self._standard_coef = coef
        self._standard_intercept = intercept
        self._average_coef = np.zeros_like(coef)
        self._average_intercept = np.zeros_like(intercept)

    def _validation_mask(self, y, sample_weight):
        mask = np.zeros(y.shape[0], dtype=bool)
        if not self.early_stopping:
            return mask
        splitter = StratifiedShuffleSplit if is_classifier(self) else ShuffleSplit
        cv = splitter(test_size=self.validation_fraction, random_state=self.random_state)
        idx_train, idx_val = next(cv.split(np.zeros((y.shape[0], 1)), y))
        if not np.any(sample_weight[idx_val] > 0):
            raise ValueError("The sample weights for validation set are all zero, consider using a different "
                             "random state.")
        if idx_train.shape[0] == 0 or idx_val.shape[0] == 0:
            raise ValueError(
                f"Splitting {y.shape[0]} samples into a train set and a validation set with validation_fraction="
                f"{self.validation_fraction!r} led to an empty set ({idx_train.shape[0]} and {idx_val.shape[0]} "
                "samples). Please either change validation_fraction, increase number of samples, or disable "
                "early_stopping."
            )
        mask[idx_val] = True
        return mask

    def _transaction(self, step, *args):
        """Run ``step``; if it raises, restore every attribute as it was (a failed fit or
        partial_fit leaves a previously fitted model unchanged)."""
        before = dict(self.__dict__)
        try:
            return step(*args)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _publish(self, n_rows):
        averaged = self.average > 0 and self.average <= self.t_ - 1
        coef = self._average_coef if averaged else self._standard_coef
        intercept = self._average_intercept if averaged else self._standard_intercept
        self.coef_ = coef if (n_rows > 1 or is_classifier(self)) else coef.ravel()
        self.intercept_ = intercept

    def _warn_unconverged(self):
        if self.tol is not None and self.tol > -np.inf and self.n_iter_ == self.max_iter:
            warnings.warn("Maximum number of iteration reached before convergence. Consider increasing max_iter "
                          "to improve the fit.", ConvergenceWarning)
        if self.power_t < 0:
            warnings.warn("Negative values for `power_t` are deprecated in version 1.8 and will raise an error in "
                          "1.10. Use values in the range [0.0, inf) instead.", FutureWarning)

    def _backend(self):
        return get_sgd_backend(self.backend)

    def _main_engine_fit(self, X, y, sample_weight, incremental, classes=None):
        """``optimizer`` other than "sgd": fastgd's main engine trains the model (see
        :mod:`fastgd.linear_model._sgd_main_engine`)."""
        from fastgd.linear_model import _sgd_main_engine

        return _sgd_main_engine.fit(self, X, y, sample_weight, incremental, classes)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_EXTRA_CONSTRAINTS = {
    "backend": [StrOptions({"auto", "numpy", "numba", "cython"})],
    "optimizer": [StrOptions(set(OPTIMIZER_NAMES))],
}


class SGDClassifier(LinearClassifierMixin, _BaseSGD):
    """Linear classifiers (SVM, logistic regression, ...) trained by SGD: a drop-in for
    :class:`sklearn.linear_model.SGDClassifier`.

    The parameters, their defaults and meanings, the fitted attributes and the numbers are
    scikit-learn 1.9's: with ``shuffle=False`` the coefficients equal scikit-learn's to
    rounding; with ``shuffle=True`` the epochs visit the samples in another (equally random)
    order. Each epoch of each binary problem is one call into a compiled kernel that releases
    the GIL, so the one-vs-rest problems of a multiclass fit train in parallel threads under
    ``n_jobs``.

    Parameters
    ----------
    loss : {"hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron", \
            "squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive"}, \
            default="hinge"
    penalty : {"l2", "l1", "elasticnet", None}, default="l2"
    alpha : float, default=0.0001
        Regularisation strength; also sets the ``optimal`` learning rate.
    l1_ratio : float, default=0.15
    fit_intercept : bool, default=True
    max_iter : int, default=1000
        Maximum number of epochs.
    tol : float or None, default=1e-3
        Stop when the epoch objective has not improved by ``tol`` for ``n_iter_no_change``
        epochs (or, with early stopping, the validation score).
    shuffle : bool, default=True
    verbose : int, default=0
    epsilon : float, default=0.1
        Threshold of the huber and epsilon-insensitive losses.
    n_jobs : int or None, default=None
        Threads for the one-vs-rest problems of a multiclass fit.
    random_state : int, RandomState instance or None, default=None
    learning_rate : {"constant", "optimal", "invscaling", "adaptive", "pa1", "pa2"}, \
            default="optimal"
        ``constant``: eta0; ``optimal``: 1 / (alpha (t0 + t)); ``invscaling``:
        eta0 / t^power_t; ``adaptive``: eta0, divided by 5 after each stall;
        ``pa1`` / ``pa2``: passive-aggressive steps with aggressiveness ``eta0``.
    eta0 : float, default=0.01
    power_t : float, default=0.5
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    class_weight : dict, "balanced" or None, default=None
    warm_start : bool, default=False
    average : bool or int, default=False
        Averaged SGD: ``True`` averages from the first step, ``k`` from the k-th.
    backend : {"auto", "numba", "cython", "numpy"}, default="auto"
        fastgd's engine (``FASTGD_BACKEND`` overrides ``"auto"``).
    optimizer : str, default="sgd"
        ``"sgd"``: scikit-learn's semantics. Any other fastgd optimizer (``"adam"``, ...)
        trains the same loss, penalty and weights with fastgd's main engine (the one of
        :class:`~fastgd.LogisticRegression`): one sample per step, learning rate ``eta0``,
        one-vs-rest for multiclass (classes in parallel threads under ``n_jobs``); the
        ``learning_rate`` rule, ``power_t`` and ``average`` are those of ``"sgd"`` only.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    n_iter_ : int
        Epochs run (the maximum over the one-vs-rest problems).
    t_ : float
        Weight updates made, plus one (``n_iter_ * n_samples + 1`` after a fit).
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    sklearn.linear_model.SGDClassifier : the estimator this one replaces.
    SGDRegressor : the regression counterpart.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastgd import SGDClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), SGDClassifier(random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.8
    True
    """

    _parameter_constraints = {**_SkSGDClassifier._parameter_constraints, **_EXTRA_CONSTRAINTS}

    def __init__(self, loss="hinge", *, penalty="l2", alpha=0.0001, l1_ratio=0.15, fit_intercept=True,
                 max_iter=1000, tol=1e-3, shuffle=True, verbose=0, epsilon=0.1, n_jobs=None,
                 random_state=None, learning_rate="optimal", eta0=0.01, power_t=0.5, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, class_weight=None, warm_start=False,
                 average=False, backend="auto", optimizer="sgd"):
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.epsilon = epsilon
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.average = average
        self.backend = backend
        self.optimizer = optimizer

    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        """Fit the linear model by SGD for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        coef_init : ndarray of shape (n_classes, n_features), default=None
            Initial coefficients (warm start).
        intercept_init : ndarray of shape (n_classes,), default=None
        sample_weight : array-like of shape (n_samples,), default=None
            Multiplied with ``class_weight``.

        Returns
        -------
        self : SGDClassifier
        """
        self._validate_params()
        self._more_validate_params()
        if self.optimizer != "sgd":
            if coef_init is not None or intercept_init is not None:
                raise ValueError("coef_init and intercept_init are supported with optimizer='sgd' only; use "
                                 "warm_start=True to continue from a fitted model.")
            return self._transaction(self._main_engine_fit, X, y, sample_weight, False)
        return self._transaction(self._fit, X, y, coef_init, intercept_init, sample_weight)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch of SGD over ``(X, y)``, continuing the current model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every class of the stream; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : SGDClassifier
        """
        if not hasattr(self, "classes_"):
            self._validate_params()
            self._more_validate_params(for_partial_fit=True)
            if self.class_weight == "balanced":
                raise ValueError(
                    "class_weight 'balanced' is not supported for partial_fit. In order to use 'balanced' weights, "
                    "use compute_class_weight('balanced', classes=classes, y=y). In place of y you can use a large "
                    "enough sample of the full training set target to properly estimate the class frequency "
                    "distributions. Pass the resulting weights as the class_weight parameter."
                )
        if self.optimizer != "sgd":
            return self._transaction(self._main_engine_fit, X, y, sample_weight, True, classes)
        return self._transaction(self._partial_fit, X, y, 1, classes, sample_weight, None, None)

    def _fit(self, X, y, coef_init, intercept_init, sample_weight):
        warm = self.warm_start and getattr(self, "coef_", None) is not None
        if warm:
            coef_init = self.coef_ if coef_init is None else coef_init
            intercept_init = self.intercept_ if intercept_init is None else intercept_init
        for name in ("classes_", "coef_", "intercept_", "_standard_coef"):
            self.__dict__.pop(name, None)
        y = validate_data(self, y=y)
        self.t_ = 1.0
        self._partial_fit(X, y, self.max_iter, np.unique(y), sample_weight, coef_init, intercept_init)
        self._warn_unconverged()
        return self

    def _partial_fit(self, X, y, max_iter, classes, sample_weight, coef_init, intercept_init):
        first_call = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32], order="C",
                             accept_large_sparse=False, reset=first_call)
        if sp.issparse(X):
            check_csr_structure(X)  # once per call: the kernels index w with X's column indices unchecked
        _check_partial_fit_first_call(self, classes)
        n_classes = self.classes_.shape[0]
        if n_classes < 2:
            raise ValueError(f"The number of classes has to be greater than one; got {n_classes} class")
        self._expanded_class_weight = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                             allow_all_zero_weights=self.early_stopping)
        n_rows = 1 if n_classes == 2 else n_classes
        if getattr(self, "_standard_coef", None) is None or coef_init is not None:
            self._allocate(n_rows, X.shape[1], X.dtype, coef_init, intercept_init)
        elif X.shape[1] != self._standard_coef.shape[-1]:
            raise ValueError(f"Number of features {X.shape[1]} does not match previous data "
                             f"{self._standard_coef.shape[-1]}.")
        if not hasattr(self, "t_"):
            self.t_ = 1.0
        if X.dtype != self._standard_coef.dtype:
            X = X.astype(self._standard_coef.dtype)
        self._fit_ovr(X, y, sample_weight, max_iter, n_rows)
        return self

    def _fit_ovr(self, X, y, sample_weight, max_iter, n_rows):
        """Train the binary problem, or each one-vs-rest problem (in threads under n_jobs),
        from copies of the current parameters; publish only when every problem succeeded."""
        random_state = check_random_state(self.random_state)
        backend = self._backend()
        label_encode = _CLASSIFICATION_LOSSES.get(self.loss, (None, None, False))[2]
        coef, intercept = self._standard_coef.copy(), self._standard_intercept.copy()
        average_coef, average_intercept = self._average_coef.copy(), self._average_intercept.copy()
        if n_rows == 1:
            validation_mask = None
            seeds = [None]
            positives = [1]
        else:
            validation_mask = self._validation_mask(y, sample_weight > 0)
            seeds = random_state.randint(_MAX_INT, size=n_rows)
            positives = range(n_rows)

        def fit_one(row, positive, seed):
            rs = random_state if seed is None else check_random_state(seed)
            y_i = np.where(y == self.classes_[positive], 1.0, 0.0 if label_encode else -1.0).astype(X.dtype)
            mask = validation_mask if validation_mask is not None else self._validation_mask(y_i, sample_weight > 0)
            if n_rows == 1:
                pos_w, neg_w = self._expanded_class_weight[1], self._expanded_class_weight[0]
            else:
                pos_w, neg_w = self._expanded_class_weight[positive], 1.0
            problem = _Problem(self, X, y_i, sample_weight, mask, pos_w, neg_w)
            score = None
            if self.early_stopping:
                score = _validation_scorer(self, problem, np.array([-1.0, 1.0]))
            rng = np.random.default_rng(rs.randint(_MAX_INT))
            w = coef[row]
            aw = average_coef[row] if self.average else None
            b, ab, n_iter = _train(self, backend, problem, w, aw, float(intercept[row]),
                                   float(average_intercept[row]), self.t_, max_iter, rng, score,
                                   "" if n_rows == 1 else f" (class {self.classes_[positive]})")
            intercept[row] = b
            average_intercept[row] = ab
            return n_iter

        n_jobs = min(effective_n_jobs(self.n_jobs), n_rows)
        if n_jobs > 1:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                n_iters = list(pool.map(fit_one, range(n_rows), positives, seeds))
        else:
            n_iters = [fit_one(row, positive, seed) for row, positive, seed in zip(range(n_rows), positives, seeds)]
        n_iter = max(n_iters)
        self._standard_coef, self._standard_intercept = coef, intercept
        self._average_coef, self._average_intercept = average_coef, average_intercept
        self.t_ += n_iter * X.shape[0]
        self.n_iter_ = n_iter
        self._publish(n_rows)

    def _check_proba(self):
        if self.loss not in ("log_loss", "modified_huber"):
            raise AttributeError(f"probability estimates are not available for loss={self.loss!r}")
        return True

    @available_if(_check_proba)
    def predict_proba(self, X):
        """Probability estimates (``log_loss``: the logistic function of the margin;
        ``modified_huber``: (clip(margin, -1, 1) + 1) / 2). Multiclass estimates normalise
        the one-vs-rest estimates (Zadrozny and Elkan 2002), as scikit-learn does.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        if self.loss == "log_loss":
            return self._predict_proba_lr(X)
        scores = self.decision_function(X)
        if len(self.classes_) == 2:
            p1 = (np.clip(scores, -1.0, 1.0) + 1.0) / 2.0
            return np.column_stack([1.0 - p1, p1])
        prob = (np.clip(scores, -1.0, 1.0) + 1.0) / 2.0
        total = prob.sum(axis=1)
        zero = total == 0
        # every class at -1 or below: uniform, as scikit-learn answers
        prob[zero, :] = 1.0
        total[zero] = len(self.classes_)
        return prob / total[:, None]

    @available_if(_check_proba)
    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba` (``-inf`` where modified huber gives a hard zero).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


class SGDRegressor(RegressorMixin, _BaseSGD):
    """Linear regression trained by SGD: a drop-in for
    :class:`sklearn.linear_model.SGDRegressor`.

    The parameters, their defaults and meanings, the fitted attributes and the numbers are
    scikit-learn 1.9's (see :class:`SGDClassifier` for the shared parameters); every epoch is
    one compiled call.

    Parameters
    ----------
    loss : {"squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive"}, \
            default="squared_error"
    penalty : {"l2", "l1", "elasticnet", None}, default="l2"
    alpha : float, default=0.0001
    l1_ratio : float, default=0.15
    fit_intercept : bool, default=True
    max_iter : int, default=1000
    tol : float or None, default=1e-3
    shuffle : bool, default=True
    verbose : int, default=0
    epsilon : float, default=0.1
    random_state : int, RandomState instance or None, default=None
    learning_rate : {"constant", "optimal", "invscaling", "adaptive", "pa1", "pa2"}, \
            default="invscaling"
    eta0 : float, default=0.01
    power_t : float, default=0.25
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=5
    warm_start : bool, default=False
    average : bool or int, default=False
    backend : {"auto", "numba", "cython", "numpy"}, default="auto"
    optimizer : str, default="sgd"
        Any other fastgd optimizer trains the same loss and penalty with fastgd's
        :class:`~fastgd.LinearRegression` engine (one sample per step, learning rate
        ``eta0``; the ``learning_rate`` rule, ``power_t`` and ``average`` are those of
        ``"sgd"`` only).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : ndarray of shape (1,)
    n_iter_ : int
    t_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    See Also
    --------
    sklearn.linear_model.SGDRegressor : the estimator this one replaces.
    SGDClassifier : the classification counterpart.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastgd import SGDRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = make_pipeline(StandardScaler(), SGDRegressor(random_state=0))
    >>> reg.fit(X, y).score(X, y) > 0.4
    True
    """

    _parameter_constraints = {**_SkSGDRegressor._parameter_constraints, **_EXTRA_CONSTRAINTS}

    def __init__(self, loss="squared_error", *, penalty="l2", alpha=0.0001, l1_ratio=0.15, fit_intercept=True,
                 max_iter=1000, tol=1e-3, shuffle=True, verbose=0, epsilon=0.1, random_state=None,
                 learning_rate="invscaling", eta0=0.01, power_t=0.25, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, warm_start=False, average=False,
                 backend="auto", optimizer="sgd"):
        self.loss = loss
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.epsilon = epsilon
        self.random_state = random_state
        self.learning_rate = learning_rate
        self.eta0 = eta0
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.average = average
        self.backend = backend
        self.optimizer = optimizer

    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        """Fit the linear model by SGD for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        coef_init : ndarray of shape (n_features,), default=None
        intercept_init : ndarray of shape (1,), default=None
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : SGDRegressor
        """
        self._validate_params()
        self._more_validate_params()
        if self.optimizer != "sgd":
            if coef_init is not None or intercept_init is not None:
                raise ValueError("coef_init and intercept_init are supported with optimizer='sgd' only; use "
                                 "warm_start=True to continue from a fitted model.")
            return self._transaction(self._main_engine_fit, X, y, sample_weight, False)
        return self._transaction(self._fit, X, y, coef_init, intercept_init, sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch of SGD over ``(X, y)``, continuing the current model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : SGDRegressor
        """
        if not hasattr(self, "coef_"):
            self._validate_params()
            self._more_validate_params(for_partial_fit=True)
        if self.optimizer != "sgd":
            return self._transaction(self._main_engine_fit, X, y, sample_weight, True)
        return self._transaction(self._partial_fit, X, y, 1, sample_weight, None, None)

    def _fit(self, X, y, coef_init, intercept_init, sample_weight):
        if not (self.warm_start and getattr(self, "coef_", None) is not None):
            for name in ("coef_", "intercept_", "_standard_coef"):
                self.__dict__.pop(name, None)
        # A warm start continues from the current (not the averaged) weights and average, as
        # scikit-learn's regressor does; coef_init and intercept_init then go unused.
        self.t_ = 1.0
        self._partial_fit(X, y, self.max_iter, sample_weight, coef_init, intercept_init)
        self._warn_unconverged()
        return self

    def _partial_fit(self, X, y, max_iter, sample_weight, coef_init, intercept_init):
        first_call = getattr(self, "_standard_coef", None) is None
        X, y = validate_data(self, X, y, accept_sparse="csr", copy=False, order="C",
                             dtype=[np.float64, np.float32], accept_large_sparse=False, reset=first_call)
        if sp.issparse(X):
            check_csr_structure(X)  # once per call: the kernels index w with X's column indices unchecked
        y = y.astype(X.dtype, copy=False)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        if first_call:
            self._allocate(1, X.shape[1], X.dtype, coef_init, intercept_init)
        elif X.shape[1] != self._standard_coef.shape[-1]:
            raise ValueError(f"Number of features {X.shape[1]} does not match previous data "
                             f"{self._standard_coef.shape[-1]}.")
        if X.dtype != self._standard_coef.dtype:
            X, y = X.astype(self._standard_coef.dtype), y.astype(self._standard_coef.dtype)
        if not hasattr(self, "t_"):
            self.t_ = 1.0
        mask = self._validation_mask(y, sample_weight > 0)
        problem = _Problem(self, X, y, sample_weight, mask, 1.0, 1.0)
        score = _validation_scorer(self, problem, None) if self.early_stopping else None
        random_state = check_random_state(self.random_state)
        rng = np.random.default_rng(random_state.randint(0, _MAX_INT))
        coef, intercept = self._standard_coef.copy(), self._standard_intercept.copy()
        average_coef, average_intercept = self._average_coef.copy(), self._average_intercept.copy()
        b, ab, n_iter = _train(self, self._backend(), problem, coef[0], average_coef[0] if self.average else None,
                               float(intercept[0]), float(average_intercept[0]), self.t_, max_iter, rng, score, "")
        intercept[0], average_intercept[0] = b, ab
        self._standard_coef, self._standard_intercept = coef, intercept
        self._average_coef, self._average_intercept = average_coef, average_intercept
        self.n_iter_ = n_iter
        self.t_ += n_iter * X.shape[0]
        self._publish(1)
        return self

    def _decision_function(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        return (safe_sparse_dot(X, self.coef_.T, dense_output=True) + self.intercept_).ravel()

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self._decision_function(X)


__all__ = ["SGDClassifier", "SGDRegressor", "get_sgd_backend"]
