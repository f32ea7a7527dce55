"""Linear regression (mean squared error) trained by gradient descent."""

from numbers import Integral

import numpy as np
from sklearn.base import MultiOutputMixin, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions

from fastgd import _contract as C
from fastgd import distributed as _distributed
from fastgd.linear_model._base import BaseGD


class LinearRegression(MultiOutputMixin, RegressorMixin, BaseGD):
    """Linear least squares fitted by (stochastic, mini-batch or batch) gradient descent.

    Minimises the mean squared error of the reference notes plus an optional penalty::

        J(W, b) = (1/n) * sum_i s_i * ||x_i W + b - y_i||^2
                  + alpha * (l1_ratio * ||W||_1 + (1 - l1_ratio) / 2 * ||W||^2)

    with sample weights ``s_i`` normalised to mean 1 (so the objective is a weighted mean and
    ``sample_weight`` multiplies the step of its sample). The intercept is never penalised.
    Each epoch is one call into a compiled kernel.

    Parameters
    ----------
    optimizer : str or fastgd.optim.Optimizer, default="nesterov"
        ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``,
        ``"amsgrad"``, ``"adamw"`` (default hyper-parameters; momentum 0.9) or an optimizer
        object such as ``SGD(momentum=0.9, nesterov=True)``. Update rules follow ``torch.optim``.
    learning_rate : float or "auto", default="auto"
        Base step size ``eta0``; the schedule scales it. ``"auto"`` derives it from the data:
        ``1/L`` for full-batch steps, with ``L`` the smoothness of the objective (the largest
        eigenvalue of the weighted Gram matrix of ``[X, 1]`` times 2, plus the L2 strength),
        and ``(1 - momentum) / (2 L_b)`` for mini-batch steps, with ``L_b`` the expected
        smoothness of a batch (between ``L`` and the largest single-sample bound). Adaptive
        optimizers use ``torch.optim``'s defaults (Adam 1e-3, AdaGrad and RMSprop 1e-2). With
        ``"auto"`` a rising loss sends training back to the best epoch (momentum restarted, or
        the step halved), and a mini-batch plateau halves the step: see
        ``learning_rate_history_``. The value used is ``learning_rate_``.
    batch_size : int, "auto" or None, default="auto"
        Samples per step: ``1`` is stochastic gradient descent, ``1 < b < n`` mini-batch,
        ``None`` (or ``b >= n``) full-batch gradient descent (one step per epoch). ``"auto"`` is
        full batch up to 10,000 samples and 256 above (so a ``partial_fit`` chunk of a large
        stream takes many steps). The last batch of an epoch is smaller when ``b`` does not
        divide ``n``; no sample is dropped.
    max_iter : int, default=1000
        Maximum number of epochs (passes over the data).
    tol : float or None, default=1e-4
        Convergence test on the epoch loss: stop when it has not improved on the best loss by
        at least ``tol`` for ``n_iter_no_change`` epochs in a row. ``None`` disables it.
    n_iter_no_change : int, default=5
    grad_tol : float or None, default=None
        Also stop when the norm of the full objective gradient at the end of an epoch falls
        below ``grad_tol`` (costs one extra pass over the data per epoch).
    schedule : str or fastgd.schedules.Schedule, default="constant"
        Learning-rate schedule: ``"constant"``, ``"step"``, ``"exponential"``,
        ``"polynomial"``, ``"cosine"``, ``"invscaling"``, ``"plateau"`` or a schedule object
        (``Warmup(CosineAnnealing(), warmup=100)``, ...).
    penalty : {"l2", "l1", "elasticnet"} or None, default=None
        L2 is added to the gradient (coupled, like ``torch.optim``'s ``weight_decay``); L1 is
        applied by a proximal soft-threshold step after each update, so exact zeros appear.
    alpha : float, default=1e-4
        Penalty strength.
    l1_ratio : float, default=0.15
        Elastic-net mixing: 0 is L2, 1 is L1.
    clip_norm : float or None, default=None
        Clip each batch gradient to this global L2 norm (as ``torch.nn.utils.clip_grad_norm_``).
    init : {"zeros", "random", "xavier"}, default="zeros"
        Initial weights: zeros, ``N(0, 0.01^2)``, or Xavier ``N(0, 1/n_features)``; the
        intercept starts at zero.
    shuffle : bool or "block", default=True
        Visit the samples in a new random order every epoch. ``"block"``: visit contiguous
        blocks of rows (about 1 MB of data each) in random order, and the rows of each block
        in random order; every sample still comes once per epoch, and memory (or a
        memory-mapped file) is read block by block instead of row by row. Measured cost and
        speed-up: README, "Large data".
        Draw a new sample order every epoch from ``random_state``; ``False`` keeps the data
        order.
    random_state : int, RandomState instance or None, default=None
        Seeds shuffling, initialisation and the validation split; an int makes fits
        reproducible exactly.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data and stop when the validation mean squared
        error has not improved by ``tol`` for ``n_iter_no_change`` epochs; keep the parameters
        of the epoch with the lowest validation loss.
    validation_fraction : float, default=0.1
    warm_start : bool, default=False
        Start ``fit`` from the previous solution (a fresh optimizer and schedule).
    verbose : int, default=0
        Print one line per epoch.
    backend : {"auto", "numba", "cython", "numpy"}, default="auto"
        Kernel implementation; ``"numpy"`` is the slow reference.
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
        Threads for multi-output regression. Without ``clip_norm`` (which couples them
        through the global gradient norm) the outputs are independent problems; with
        ``n_jobs > 1`` each output is trained by its own kernel call in a thread pool (the
        kernels release the GIL). Each output then computes exactly as a single-output fit,
        whatever the number of threads; ``None`` means one kernel call for all outputs.
        Epochs whose batches already use every core (large batches) are not split.
        With one output, ``n_jobs > 1`` opts per-sample plain SGD on sparse CSR input into
        Hogwild! (lock-free threads, **non-deterministic**; see
        :class:`fastgd.LogisticRegression`'s ``n_jobs``).
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
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    n_iter_ : int
        Epochs run.
    t_ : int
        Optimizer steps taken (iterations, in the notes' vocabulary).
    loss_curve_ : list of float
        The learning curve: the objective of each epoch (the running mean training loss,
        each batch at the parameters before its step, plus the penalty at the epoch start).
    best_loss_ : float or None
        Lowest epoch objective (None when early stopping).
    learning_rate_ : float
        The base learning rate in use at the end of training (``"auto"``: derived from the
        data, after any reductions).
    learning_rate_history_ : list of (int, float, str)
        With ``learning_rate="auto"``: ``(0, initial rate, "auto")``, then ``(epoch, new rate,
        reason)`` for each halving: ``"rise"`` after a rising loss, ``"plateau"`` when the
        loss test would stop mini-batch training (at most 4 times; a constant mini-batch step
        stalls at a noise level proportional to it). Empty for a rate given as a number.
    batch_size_ : int
        The batch size used.
    validation_loss_curve_ : list of float
        Validation mean squared error per epoch (early stopping only).
    best_validation_loss_ : float
        (early stopping only).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        (only when X has string feature names).
    coef_path_ : ndarray of shape (n_records, *coef_.shape)
        The parameters after every epoch or step (``record_path``), starting point first.
    intercept_path_ : ndarray of shape (n_records, *np.shape(intercept_))

    See Also
    --------
    LogisticRegression : the classifier counterpart.
    sklearn.linear_model.SGDRegressor : per-sample SGD with a constant set of schedules.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import LinearRegression
    >>> X = np.array([[1.0], [2.0]]); y = np.array([2.0, 4.0])
    >>> reg = LinearRegression(optimizer="sgd", learning_rate=0.1, max_iter=4, tol=None)
    >>> reg.fit(X, y).coef_.round(4), round(float(reg.intercept_), 4)
    (array([1.4646]), 0.8346)
    >>> reg.loss_curve_[0]
    10.0
    """

    _parameter_constraints = {
        **BaseGD._parameter_constraints,
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
    }
    _multi_output = True
    _y_numeric = True

    def __init__(self, *, optimizer="nesterov", learning_rate="auto", batch_size="auto", max_iter=1000,
                 tol=1e-4, n_iter_no_change=5, grad_tol=None, schedule="constant", penalty=None,
                 alpha=1e-4, l1_ratio=0.15, clip_norm=None, init="zeros", shuffle=True,
                 random_state=None, early_stopping=False, validation_fraction=0.1,
                 warm_start=False, verbose=0, backend="auto", lazy_updates=False, n_jobs=None,
                 callbacks=None, progress=False, record_path=False):
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
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : LinearRegression
        """
        self._validate_params()
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch of gradient descent over ``(X, y)``, continuing the current model.

        The optimizer state, step counter and schedule carry over between calls.

        Returns
        -------
        self : LinearRegression
        """
        self._validate_params()  # on every call: parameters may have been set since the last
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted targets, shape (n_samples,) or (n_samples, n_targets)."""
        if _distributed.is_dask_collection(X):  # a lazy result, computed block-wise
            return _distributed.predict_blockwise(self, "predict", X)
        z = self._margins(X)
        return z[:, 0] if self._y_1d else z

    # --- hooks -----------------------------------------------------------------------------
    def _validate_targets(self, X, y, first, classes):
        y = np.asarray(y)
        y2 = (y.reshape(-1, 1) if y.ndim == 1 else y).astype(X.dtype, copy=True)
        if first:
            self._loss_code = C.LOSS_SQUARED
            self._n_outputs = y2.shape[1]
            self._y_1d = y.ndim == 1
        elif y2.shape[1] != self._n_outputs:
            raise ValueError(f"y has {y2.shape[1]} targets but the model was trained on {self._n_outputs}.")
        return y2, None

    def _coef_views(self, coef):
        if self._y_1d:
            return coef[:-1, 0], coef[-1, 0]
        return coef[:-1].T, coef[-1]
