"""Logistic regression (binary log loss, multinomial softmax) trained by gradient descent."""

from numbers import Integral

import numpy as np
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from fastgd import _contract as C
from fastgd import distributed as _distributed
from fastgd.linear_model._base import BaseGD


def encode_labels(y):
    """``(classes, index)`` as ``np.unique(y, return_inverse=True)`` gives them. Integer and
    boolean labels within a range of at most ``2 * len(y)`` values are counted (one pass, no
    sort of y: the sort cost a fifth of a small epoch); other labels are sorted."""
    if y.dtype.kind in "biu" and len(y):
        lo, hi = int(y.min()), int(y.max())
        if hi - lo <= 2 * len(y) and -2**62 < lo and hi < 2**62:  # offsets computed in int64
            offset = y.astype(np.int64) - lo
            present = np.bincount(offset, minlength=hi - lo + 1) > 0
            classes = (np.flatnonzero(present) + lo).astype(y.dtype)
            return classes, (np.cumsum(present) - 1)[offset]
    return np.unique(y, return_inverse=True)


def _known_labels(classes, y):
    """``(index, None)``: the position of every label of ``y`` in the sorted ``classes``; or
    ``(None, unseen)``, the labels of ``y`` that are not classes (or all of them, when they
    cannot be compared with the classes)."""
    try:
        if len(classes) == 2 and classes.dtype.kind in "biuf" and y.dtype.kind in "biuf":
            # two numeric classes: two comparisons (a binary search per label cost 4x more)
            second = y == classes[1]
            unseen = ~(second | (y == classes[0]))
            if not np.any(unseen):
                return second.astype(np.intp), None
            return None, np.unique(y[unseen])
        idx = np.searchsorted(classes, y).clip(0, len(classes) - 1)
        unseen = classes[idx] != y
    except TypeError:  # e.g. strings against numbers
        return None, np.unique(np.asarray(y, dtype=object).astype(str))
    if np.any(unseen):
        return None, np.unique(y[unseen])
    return idx, None


class LogisticRegression(ClassifierMixin, BaseGD):
    """Logistic regression fitted by (stochastic, mini-batch or batch) gradient descent.

    Two classes: one weight vector, sigmoid and the binary log loss. More classes: one weight
    vector per class, softmax and the multinomial cross-entropy. The objective is::

        J(W, b) = (1/n) * sum_i s_i * loss(x_i W + b, y_i)
                  + alpha * (l1_ratio * ||W||_1 + (1 - l1_ratio) / 2 * ||W||^2)

    with sample weights ``s_i`` (times ``class_weight``) normalised to mean 1. The intercept is
    never penalised. Each epoch is one call into a compiled kernel.

    Parameters
    ----------
    optimizer : str or fastgd.optim.Optimizer, default="nesterov"
        ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``,
        ``"amsgrad"``, ``"adamw"`` or an optimizer object. Update rules follow ``torch.optim``.
    learning_rate : float or "auto", default="auto"
        ``"auto"`` derives the step from the data as in :class:`LinearRegression`, with the
        curvature bound of the log loss (1/4) or the softmax (1/2) and the L2 strength.
        The value used is ``learning_rate_``.
    batch_size : int, "auto" or None, default="auto"
        ``1``: stochastic GD; ``1 < b < n``: mini-batch; ``None``: full-batch GD; ``"auto"``:
        full batch up to 10,000 samples, 256 above.
    max_iter : int, default=1000
        Maximum number of epochs.
    tol : float or None, default=1e-4
        Stop when the epoch loss has not improved by ``tol`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=5
    grad_tol : float or None, default=None
        Also stop when the full objective gradient norm falls below ``grad_tol``.
    schedule : str or fastgd.schedules.Schedule, default="constant"
    penalty : {"l2", "l1", "elasticnet"} or None, default="l2"
    alpha : float, default=1e-4
    l1_ratio : float, default=0.15
    clip_norm : float or None, default=None
    init : {"zeros", "random", "xavier"}, default="zeros"
    shuffle : bool or "block", default=True
        Visit the samples in a new random order every epoch. ``"block"``: visit contiguous
        blocks of rows (about 1 MB of data each) in random order, and the rows of each block
        in random order; every sample still comes once per epoch, and memory (or a
        memory-mapped file) is read block by block instead of row by row. Measured cost and
        speed-up: README, "Large data".
    random_state : int, RandomState instance or None, default=None
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` and stop when the validation log loss
        has not improved by ``tol`` for ``n_iter_no_change`` epochs; keep the parameters of
        the epoch with the lowest validation loss.
    validation_fraction : float, default=0.1
    class_weight : dict, "balanced" or None, default=None
        Weights per class, multiplied into ``sample_weight``; ``"balanced"`` uses
        ``n_samples / (n_classes * bincount(y))``.
    warm_start : bool, default=False
    verbose : int, default=0
    backend : {"auto", "numba", "cython", "numpy"}, default="auto"
    lazy_updates : bool, default=False
        Sparse input only. A coordinate that no sample of a batch touches still receives the
        penalty and the optimizer's decay every step. For plain SGD (L1/L2), and AdaGrad or
        RMSprop without L2, fastgd defers this exactly in closed form (O(nnz) per step, the
        same model as dense input). For momentum, Adam/AMSGrad/AdamW, or AdaGrad/RMSprop with
        L2 no exact lazy form exists: by default every coordinate is updated every step
        (exact, O(n_features) per step); ``lazy_updates=True`` updates only the touched
        coordinates instead (O(nnz) per step, an approximation: untouched coordinates keep
        their value and optimizer state until touched).
    n_jobs : int or None, default=None
        Hogwild! (Niu et al., 2011), opt-in: with ``n_jobs > 1``, per-sample plain SGD
        (``optimizer="sgd"``, ``batch_size=1``, no ``clip_norm``) on sparse CSR input runs
        each epoch in ``n_jobs`` threads, each taking a contiguous share of the shuffled order
        and updating the shared weights without locks. **Non-deterministic**: the thread
        timing decides which update lands first, so two fits differ in the last digits (or
        more); convergence to the same objective is what holds. A step updates only the
        row's features and the intercept, each feature taking the L2 / L1 penalty in
        proportion ``n / n_j`` (``n_j`` samples store it), which sums over an epoch to the
        full penalty. ``None`` / 1: the serial, deterministic path. Other configurations
        ignore it.
    callbacks : callable, list of callables or None, default=None
        Called after every epoch with a read-only :class:`fastgd.callbacks.EpochRecord`
        (epoch, steps, training loss, validation score, learning rate, elapsed seconds, a
        view of the coefficients), in Python between two kernel calls. A callback returning
        ``True`` stops training, reported as a convergence stop; an exception raised by a
        callback fails the call and leaves the estimator as it was before it. See
        :mod:`fastgd.callbacks` (``History``, ``TimeLimit``).
    progress : bool or tqdm.tqdm, default=False
        Show a tqdm progress bar over the epochs, with the loss in its postfix (needs the
        ``progress`` extra: ``pip install fastgd[progress]``). A tqdm instance is reset and
        used instead of a new bar (and left open). ``verbose`` prints its lines either way.
    record_path : bool or {"epoch", "step"}, default=False
        Keep the parameters visited in ``coef_path_`` and ``intercept_path_``: ``True`` (or
        ``"epoch"``) after every epoch, ``"step"`` after every optimizer step. The first row
        is the starting point; ``partial_fit`` appends to the path. Memory: one row of
        ``n_outputs * (n_features + 1)`` values per epoch (per step with ``"step"``, i.e.
        ``ceil(n_samples / batch_size)`` rows per epoch; more than 1 GiB is refused). With
        ``"step"`` each step is its own kernel call (the same steps, in the same order, plus
        10-40 microseconds of Python per step): meant for small problems and pictures. With
        ``early_stopping`` the path runs to the last epoch, while ``coef_`` is the best one.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    n_iter_ : int
        Epochs run.
    t_ : int
        Optimizer steps taken.
    loss_curve_ : list of float
        The learning curve (objective per epoch).
    best_loss_ : float or None
    learning_rate_ : float
        The base learning rate in use at the end of training.
    learning_rate_history_ : list of (int, float, str)
        With ``learning_rate="auto"``: ``(0, initial rate, "auto")``, then ``(epoch, new rate,
        reason)`` per halving (``"rise"`` or ``"plateau"``, as in :class:`LinearRegression`).
    batch_size_ : int
    validation_loss_curve_ : list of float
        Validation log loss per epoch (early stopping only).
    best_validation_loss_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of str
    coef_path_ : ndarray of shape (n_records, *coef_.shape)
        The parameters after every epoch or step (``record_path``), starting point first.
    intercept_path_ : ndarray of shape (n_records, *np.shape(intercept_))

    See Also
    --------
    LinearRegression : the regression counterpart.
    sklearn.linear_model.LogisticRegression : exact solvers (lbfgs, ...).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fastgd import LogisticRegression
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(StandardScaler(), LogisticRegression(batch_size=16, random_state=0))
    >>> clf.fit(X, y).score(X, y) > 0.95
    True
    >>> clf[-1].predict_proba(X[:1]).shape
    (1, 3)
    """

    _parameter_constraints = {
        **BaseGD._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
    }
    _multi_output = False
    _y_numeric = False

    def __init__(self, *, optimizer="nesterov", learning_rate="auto", batch_size="auto", max_iter=1000,
                 tol=1e-4, n_iter_no_change=5, grad_tol=None, schedule="constant", penalty="l2",
                 alpha=1e-4, l1_ratio=0.15, clip_norm=None, init="zeros", shuffle=True,
                 random_state=None, early_stopping=False, validation_fraction=0.1,
                 class_weight=None, warm_start=False, verbose=0, backend="auto", lazy_updates=False,
                 n_jobs=None, callbacks=None, progress=False, record_path=False):
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.grad_tol = grad_tol
        self.schedule = schedule
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.clip_norm = clip_norm
        self.init = init
        self.shuffle = shuffle
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.verbose = verbose
        self.backend = backend
        self.lazy_updates = lazy_updates
        self.n_jobs = n_jobs
        self.callbacks = callbacks
        self.progress = progress
        self.record_path = record_path

    def fit(self, X, y, sample_weight=None):
        """Fit by gradient descent for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (integers, strings, ...).
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : LogisticRegression
        """
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch of gradient descent over ``(X, y)``, continuing the current model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All the classes the model will see; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : LogisticRegression
        """
        self._validate_params()  # on every call: parameters may have been set since the last
        if classes is not None and len(np.unique(np.asarray(classes))) < 2:
            raise ValueError(f"classes must list at least 2 distinct classes; got classes={classes!r}.")
        if not hasattr(self, "_train_state"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            if self.class_weight == "balanced":
                raise ValueError(
                    "class_weight='balanced' is not supported by partial_fit (the class "
                    "frequencies of the whole stream are unknown); pass explicit weights, e.g. "
                    "dict(zip(classes, compute_class_weight('balanced', classes=classes, y=y_sample)))."
                )
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={classes!r} differs from the classes of the first call, {self.classes_!r}.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def decision_function(self, X):
        """Margins: shape (n_samples,) for two classes, (n_samples, n_classes) otherwise."""
        if _distributed.is_dask_collection(X):  # a lazy result, computed block-wise
            return _distributed.predict_blockwise(self, "decision_function", X)
        z = self._margins(X)
        return z[:, 0] if z.shape[1] == 1 else z

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), in the order of ``classes_``."""
        if _distributed.is_dask_collection(X):  # a lazy result, computed block-wise
            return _distributed.predict_blockwise(self, "predict_proba", X)
        z = self._margins(X)
        if z.shape[1] == 1:
            p1 = expit(z[:, 0])
            return np.column_stack([1.0 - p1, p1])
        # Margins may be +-inf (never NaN, see _margins); softmax needs finite ones.
        top = np.finfo(z.dtype).max
        with np.errstate(over="ignore"):
            return softmax(np.clip(z, -top, top), axis=1)

    def predict_log_proba(self, X):
        """Log class probabilities, computed stably."""
        if _distributed.is_dask_collection(X):  # a lazy result, computed block-wise
            return _distributed.predict_blockwise(self, "predict_log_proba", X)
        z = self._margins(X)
        if z.shape[1] == 1:
            return np.column_stack([log_expit(-z[:, 0]), log_expit(z[:, 0])])
        top = np.finfo(z.dtype).max
        with np.errstate(over="ignore"):
            return log_softmax(np.clip(z, -top, top), axis=1)

    def predict(self, X):
        """Predicted class labels."""
        if _distributed.is_dask_collection(X):  # a lazy result, computed block-wise
            return _distributed.predict_blockwise(self, "predict", X)
        z = self._margins(X)
        idx = (z[:, 0] > 0).astype(np.intp) if z.shape[1] == 1 else np.argmax(z, axis=1)
        return self.classes_[idx]

    # --- hooks -----------------------------------------------------------------------------
    def _validate_targets(self, X, y, first, classes):
        y = column_or_1d(y, warn=True)
        if first and classes is None:
            check_classification_targets(y)
            classes_, idx = encode_labels(y)
        else:
            if first:
                # With classes given, they are what must be classification targets (scikit-learn's
                # partial_fit checks them so), and labels found among them are then too:
                # type_of_target runs on the few classes, not on every label (it was a third of the
                # validation of a first call on 50,000 rows).
                classes_ = np.unique(np.asarray(classes))
                check_classification_targets(classes_)
            else:
                classes_ = self.classes_
            idx, unseen = _known_labels(classes_, y)
            if unseen is not None:
                # A later partial_fit call needs no type_of_target (half of a small call's
                # validation): labels that are all among classes_ are classification
                # targets. Otherwise scikit-learn's message comes first, then ours.
                check_classification_targets(y)
                raise ValueError(
                    f"y contains labels {unseen!r} that are not in classes={classes_!r}"
                    + (" of the first partial_fit call." if not first else ".")
                )
        if first:
            if len(classes_) < 2:
                raise ValueError(
                    "LogisticRegression needs samples of at least 2 classes in the data; it "
                    f"contains only one class: {classes_[0]!r}."
                )
            self.classes_ = classes_
            self._n_outputs = 1 if len(classes_) == 2 else len(classes_)
            self._loss_code = C.LOSS_LOG if len(classes_) == 2 else C.LOSS_SOFTMAX
        y2 = idx.astype(X.dtype).reshape(-1, 1)
        class_sw = None
        if self.class_weight is not None:
            weights = compute_class_weight(self.class_weight, classes=classes_, y=y)
            class_sw = weights[idx].astype(X.dtype)
        return y2, class_sw

