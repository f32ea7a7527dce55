"""Shared machinery of the gradient-descent estimators: parameters, validation, training."""

import math
import threading
import weakref
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils import assert_all_finite
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, check_random_state, validate_data

from fastgd import _contract as C
from fastgd import _solver, _step_size
from fastgd import distributed as _distributed
from fastgd._backends import get_backend
from fastgd.callbacks import TrainingMonitor
from fastgd._sparse_validation import check_csr_structure, validated_csr_chunk
from fastgd.linear_model._params import CachedParamValidation
from fastgd.exceptions import DivergenceError
from fastgd.losses import objective as _objective
from fastgd.optim import OPTIMIZER_NAMES, VARIANCE_REDUCED_NAMES, Optimizer, get_optimizer
from fastgd.schedules import SCHEDULE_NAMES, Schedule, get_schedule

_INITS = ("zeros", "random", "xavier")

# batch_size="auto": full-batch gradient descent up to AUTO_FULL_BATCH_MAX samples, mini-batches
# of AUTO_BATCH_SIZE above. Chosen by measurement (README, Defaults; bench/defaults_table.py):
# on small data full-batch steps at 1/L with Nesterov momentum reach scikit-learn's optimum in
# the fewest passes; on large data (and a partial_fit chunk or streamed block is large) one
# step per pass is too few, and mini-batches take many steps per pass, each averaging enough
# samples to allow a large step.
AUTO_FULL_BATCH_MAX = 10_000
AUTO_BATCH_SIZE = 256

# Features whose root-mean-square values (the intercept's column of ones included) differ by
# more than this factor make gradient descent slow; the warning then says to standardise.
SCALE_SPREAD_WARNING = 30.0


def scale_advice(X):
    """A sentence saying to standardise ``X`` when its columns' scales are far apart, else None.

    Gradient descent converges at a rate set by the condition number of the Gram matrix, and
    columns (the intercept's column of ones included) whose root-mean-square values differ by
    a factor ``r`` make it at least of order ``r^2``. One pass over X, no copy of a dense X.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond 1e154: an inf spread warns
        if sp.issparse(X):
            # Over each column's stored entries: a rare feature is not a badly scaled one (and
            # sparse columns are not standardised, which would fill them in). Each column's
            # value lies between the smallest and the largest magnitude of its stored entries:
            # when those (with the intercept's 1) are close enough, no column needs counting.
            magnitudes = np.abs(X.data)
            if X.nnz and magnitudes.min() > 0 and (
                    max(magnitudes.max(), 1.0) / min(magnitudes.min(), 1.0) <= SCALE_SPREAD_WARNING):
                return None
            sq, count = _column_sums_of_squares(X)
            rms = np.sqrt(sq / np.maximum(count, 1))
        else:
            sq = np.einsum("ij,ij->j", X, X, dtype=np.float64)
            rms = np.sqrt(sq / max(X.shape[0], 1))
        rms = np.append(rms[rms > 0], 1.0)  # constant-zero columns do not matter; 1 = intercept
        spread = float(rms.max() / rms.min())
    if spread <= SCALE_SPREAD_WARNING:
        return None
    scaler = "MaxAbsScaler()" if sp.issparse(X) else "StandardScaler()"
    return (f"standardise the features (their root-mean-square values, with the intercept's "
            f"1, span a factor of {spread:.3g}, which makes gradient descent slow), e.g. "
            f"make_pipeline({scaler}, estimator)")


def _column_sums_of_squares(X):
    """Per column of CSR ``X`` that has stored entries: the sum of their squares (float64)
    and their count. O(nnz log nnz) through a sort when the columns far outnumber the stored
    entries (hashed features), not the O(n_features) of a count over every column."""
    squares = np.square(X.data, dtype=np.float64)
    if X.nnz * 16 >= X.shape[1]:
        return np.bincount(X.indices, weights=squares, minlength=X.shape[1]), np.bincount(X.indices, minlength=X.shape[1])
    if X.nnz == 0:
        return np.zeros(0), np.zeros(0, dtype=np.intp)
    order = np.argsort(X.indices, kind="stable")
    columns = X.indices[order]
    starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
    return np.add.reduceat(squares[order], starts), np.diff(np.r_[starts, X.nnz])


# One lock per estimator instance, held by fit and partial_fit: an instance is not meant for
# concurrent training (as in scikit-learn), but two threads calling it at once must leave the
# state one of the calls produced. Kept outside the instance so that it pickles and clones.
_TRAINING_LOCKS = weakref.WeakKeyDictionary()
_TRAINING_LOCKS_GUARD = threading.Lock()


def _training_lock(estimator):
    with _TRAINING_LOCKS_GUARD:
        lock = _TRAINING_LOCKS.get(estimator)
        if lock is None:
            lock = _TRAINING_LOCKS[estimator] = threading.RLock()
        return lock


def make_rng(random_state):
    """A NumPy ``Generator`` from scikit-learn's ``random_state`` conventions."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, Integral):
        return np.random.default_rng(int(random_state))
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    return np.random.default_rng(seed)


def _no_bar(progress):
    # ``is``, not truthiness: a tqdm bar without a total refuses bool().
    return progress is None or (isinstance(progress, (bool, np.bool_)) and not progress)


def _optimizer_kind(optimizer):
    """What the optimizer state means: the optimizer's codes (kind, Nesterov, AMSGrad, ...)
    and its slot count. Hyper-parameters (betas, eps, momentum value) may change between
    ``partial_fit`` calls; the kind of state may not."""
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    optimizer.encode(codes, np.zeros(C.N_HP))
    return type(optimizer).__name__, tuple(codes.tolist()), optimizer.n_slots()


def _margins_rescaled(X, W, b):
    """``X @ W + b`` for rows whose plain product overflowed (finite X and W near the top of
    the float range): computed on rows and weights scaled into range, then scaled back, so
    each margin is finite or an infinity of the right sign, never the NaN of ``inf - inf``."""
    row_scale = np.asarray(abs(X).max(axis=1).todense() if sp.issparse(X) else np.abs(X).max(axis=1)).ravel()
    row_scale[row_scale == 0] = 1.0
    w_scale = max(float(np.max(np.abs(W), initial=0.0)), float(np.max(np.abs(b), initial=0.0))) or 1.0
    Xs = sp.diags(1.0 / row_scale) @ X if sp.issparse(X) else X / row_scale[:, None]
    z = np.asarray(Xs @ (W / w_scale) + (b / w_scale) / row_scale[:, None])
    return z * row_scale[:, None] * w_scale


class _PublicParameters:
    """``coef_`` and ``intercept_`` of a training state, computed when first read.

    Training on sparse input may keep the weights as a running scale times the stored
    vector (:meth:`fastgd._solver.TrainState.parameters`), and a ``partial_fit`` call costs
    O(nnz) only if it does not also copy (and fold) the whole model into ``coef_``: the
    copy is made here on the first read after a training call, then kept, so that reads
    are cheap and in-place edits of ``coef_`` stay (until the next training call, as before).
    A value assigned to ``coef_`` or ``intercept_`` replaces the computed one."""

    def __init__(self, ts):
        self.ts = ts
        self.version = None if ts is None else ts.version
        self.arrays = {}

    def get(self, estimator, name):
        if name in self.arrays:
            return self.arrays[name]
        if self.ts is None:
            raise AttributeError(f"'{type(estimator).__name__}' object has no attribute '{name}'")
        if self.ts.lazy is not None:  # the deferred catch-up done in a copy (the state stays as it is)
            coef, intercept = estimator._coef_views(self.ts.parameters())
            coef, intercept = np.ascontiguousarray(coef), intercept.copy()
        else:
            coef, intercept = estimator._coef_views(self.ts.coef)
            # (one pass: the scale is folded into the new array; the intercept row is unscaled)
            coef, intercept = coef * self.ts.scale if self.ts.scale != 1.0 else coef.copy(), intercept.copy()
        arrays = {"coef_": coef, "intercept_": intercept, **self.arrays}
        if self.ts.version == self.version:  # (a read in the middle of a training call is not kept)
            self.arrays = arrays
        return arrays[name]

    def set(self, estimator, name, value):
        if self.ts is not None:
            for other in ("coef_", "intercept_"):
                self.get(estimator, other)
        self.arrays = {**self.arrays, name: value}


def _public_parameter(name, doc):
    def get(self):
        public = self.__dict__.get("_public_parameters")
        if public is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return public.get(self, name)

    def set(self, value):
        if "_public_parameters" not in self.__dict__:
            self._public_parameters = _PublicParameters(None)
        self._public_parameters.set(self, name, value)

    return property(get, set, doc=doc)


class BaseGD(CachedParamValidation, BaseEstimator):
    """Base class of :class:`~fastgd.LinearRegression` and :class:`~fastgd.LogisticRegression`.

    Subclasses define the loss and targets (``_encode_targets``), how parameters map to
    ``coef_``/``intercept_`` (``_publish_coef``) and the early-stopping score.
    """

    _parameter_constraints = {
        "optimizer": [StrOptions(set(OPTIMIZER_NAMES) | set(VARIANCE_REDUCED_NAMES)), Optimizer],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "grad_tol": [Interval(Real, 0, None, closed="neither"), None],
        "schedule": [StrOptions(set(SCHEDULE_NAMES)), Schedule],
        "penalty": [StrOptions({"l2", "l1", "elasticnet"}), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "clip_norm": [Interval(Real, 0, None, closed="neither"), None],
        "init": [StrOptions(set(_INITS))],
        "shuffle": ["boolean", StrOptions({"block"})],
        "random_state": ["random_state"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "backend": [StrOptions({"auto", "numpy", "numba", "cython"})],
        "lazy_updates": ["boolean"],
        "callbacks": [list, tuple, callable, None],
        "progress": ["boolean", HasMethods(["update", "reset"]), None],
        "record_path": ["boolean", StrOptions({"epoch", "step"})],
    }

    _accept_sparse = True
    # The loss's own parameter (hp[H_LOSS_PARAM]: Huber's delta, the epsilon-insensitive
    # margin). Not a public parameter: LogisticRegression and LinearRegression train their one
    # loss; the scikit-learn drop-ins set it on the engines they train other losses with.
    _loss_param = 0.0

    coef_ = _public_parameter("coef_", "Weights, computed from the training state when first read.")
    intercept_ = _public_parameter("intercept_", "Intercepts, computed from the training state when first read.")

    # --- subclass hooks ----------------------------------------------------------------
    def _validate_targets(self, X, y, first, classes):
        """Validate and encode ``y``: returns ``(y2, class_sample_weight_or_None)`` and
        sets ``self._loss_code`` / ``self._n_outputs`` on the first call."""
        raise NotImplementedError

    def _coef_views(self, coef):
        """Views of kernel-layout parameters ``(n_features + 1, n_outputs)`` in the layout of
        ``coef_`` and ``intercept_``: by default scikit-learn's ``(n_outputs, n_features)`` and
        ``(n_outputs,)``."""
        return coef[:-1].T, coef[-1]

    def _publish_coef(self, ts):
        """``coef_`` and ``intercept_`` from ``ts``, computed when first read (see
        :class:`_PublicParameters`)."""
        self._public_parameters = _PublicParameters(ts)

    def _validation_loss(self, z, y2, sw):
        """Early-stopping signal: the weighted mean loss of margins ``z`` on held-out targets
        ``y2`` (the training loss without penalty: smooth, unlike a held-out accuracy)."""
        from fastgd.losses import evaluate

        value, _ = evaluate(self._loss_code, np.asarray(z, dtype=np.float64), y2, self._loss_param)
        return float(np.average(value, weights=sw))

    # --- configuration -------------------------------------------------------------------
    def _penalty_strengths(self):
        if self.penalty is None:
            return 0.0, 0.0
        if self.penalty == "l2":
            return float(self.alpha), 0.0
        if self.penalty == "l1":
            return 0.0, float(self.alpha)
        return float(self.alpha) * (1.0 - self.l1_ratio), float(self.alpha) * self.l1_ratio

    def _resolved_batch_size(self, n_train):
        if self.batch_size is None:
            return n_train
        if self.batch_size == "auto":
            return n_train if n_train <= AUTO_FULL_BATCH_MAX else AUTO_BATCH_SIZE
        return min(int(self.batch_size), n_train)

    def _settings(self, optimizer, n_train, loss_code, validation_score):
        """Kernel arrays and driver settings. With ``learning_rate="auto"`` the rate slot
        holds the step of the current fit (``learning_rate_``) or NaN before one."""
        batch_size = 1 if optimizer.code == C.OPT_SAGA else self._resolved_batch_size(n_train)
        schedule = get_schedule(self.schedule)
        if schedule.needs_horizon():
            per_epoch = math.ceil(n_train / batch_size) if schedule.unit == "step" else 1
            schedule = schedule.with_horizon(self.max_iter * per_epoch)
        codes = np.zeros(C.N_CODES, dtype=np.int64)
        hp = np.zeros(C.N_HP, dtype=np.float64)
        codes[C.C_LOSS] = loss_code
        codes[C.C_LAZY] = int(self.lazy_updates)
        auto = self.learning_rate == "auto"
        hp[C.H_LR] = getattr(self, "learning_rate_", np.nan) if auto else self.learning_rate
        hp[C.H_LR_SCALE] = 1.0
        optimizer.encode(codes, hp)
        schedule.encode(codes, hp)
        hp[C.H_L2], hp[C.H_L1] = self._penalty_strengths()
        hp[C.H_CLIP] = 0.0 if self.clip_norm is None else self.clip_norm
        hp[C.H_LOSS_PARAM] = self._loss_param
        return _solver.Settings(
            codes=codes, hp=hp, batch_size=batch_size, shuffle=self.shuffle if self.shuffle == "block" else bool(self.shuffle),
            schedule=schedule, tol=self.tol, n_iter_no_change=self.n_iter_no_change,
            grad_tol=self.grad_tol, validation_score=validation_score, verbose=self.verbose,
            n_jobs=getattr(self, "n_jobs", None) or 1,
            # SAGA's step 1/(3 L_max) converges without a line search, and its running epoch
            # loss is no descent test: a restored epoch would also leave its stored gradients stale
            backtrack=auto and optimizer.code != C.OPT_SAGA,
        )

    def _kernel_arrays(self, n_train=1):
        """``(codes, hp)`` the kernels receive for the current parameters (after a fit)."""
        settings = self._settings(get_optimizer(self.optimizer), n_train, self._loss_code, None)
        return settings.codes, settings.hp

    def _init_coef(self, n_features, K, dtype, rng):
        coef = np.zeros((n_features + 1, K), dtype=dtype)
        if self.init == "random":
            coef[:-1] = 0.01 * rng.standard_normal((n_features, K))
        elif self.init == "xavier":
            coef[:-1] = rng.standard_normal((n_features, K)) / np.sqrt(max(n_features, 1))
        return coef

    # --- validation ----------------------------------------------------------------------
    def _validate_X_y(self, X, y, first, check_finite=True):
        """X and y as training needs them. With ``check_finite=False`` X's finiteness is left
        to the caller (:meth:`_check_finite_X`)."""
        dtype = [np.float64, np.float32] if first else self._dtype
        accept_sparse = "csr" if self._accept_sparse else False
        # a later chunk of a partial_fit stream: what validate_data would return, when it
        # would find nothing to convert or reject (a third of such a call's time otherwise)
        checked = None if first or not accept_sparse else validated_csr_chunk(self, X, y, dtype, check_finite)
        if checked is not None:
            X, y = checked
        else:
            # scikit-learn's finiteness check sums X first: finite values near the top of the
            # float range overflow that sum (and warn) before the exact check runs.
            with np.errstate(over="ignore", invalid="ignore"):
                X, y = validate_data(
                    self, X, y, reset=first, accept_sparse=accept_sparse, dtype=dtype, order="C",
                    multi_output=self._multi_output, y_numeric=self._y_numeric,
                    ensure_all_finite=check_finite,
                )
        if sp.issparse(X):
            check_csr_structure(X)  # before anything (scipy included) indexes with it
        if sp.issparse(X) and not X.has_canonical_format:
            # The kernels need each column at most once per row; sum duplicates in a copy.
            X = X.copy()
            X.sum_duplicates()
        return X, y

    def _check_finite_X(self, X):
        """Raise scikit-learn's error (as validation would have) if X holds a NaN or an
        infinity."""
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # see _validate_X_y
                assert_all_finite(X, input_name="X", estimator_name=type(self).__name__)
        except ValueError as error:
            raise ValueError(str(error)) from None  # not "during handling of" the kernel's report

    def _raw_sample_weight(self, sample_weight, X, class_sw):
        """Sample weights times class weights, checked, in float64, before any scaling."""
        sw = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True, copy=True)
        with np.errstate(over="ignore"):  # reported just below
            if class_sw is not None:
                sw *= class_sw
        if not math.isfinite(float(np.max(sw, initial=0.0))):
            raise ValueError("sample_weight times the class weights overflows to inf; use smaller weights.")
        return sw

    def _sample_weight(self, sample_weight, X, class_sw, train_idx, val_idx):
        """Sample weights (times class weights) scaled to mean 1 over ``train_idx``, in X's
        dtype. Divided by their maximum first, so weights near the top or the bottom of the
        float range give the same model as any other constant weights instead of
        overflowing (or underflowing) to zero."""
        if sample_weight is None and class_sw is None:  # already mean 1: none of the passes below
            return np.ones(X.shape[0], dtype=X.dtype)
        sw = self._raw_sample_weight(sample_weight, X, class_sw)
        top = float(np.max(sw, initial=0.0))
        if top > 0:
            sw /= top
        if not np.sum(sw[train_idx]) > 0:
            raise ValueError("sample_weight sums to zero over the training samples; give some samples a positive weight.")
        with np.errstate(over="ignore", under="ignore"):
            sw *= len(train_idx) / np.sum(sw[train_idx])
            sw = sw.astype(X.dtype, copy=False)
        if not np.all(np.isfinite(sw)):
            raise ValueError(
                f"sample_weight spans too wide a range to be scaled to mean 1 in {X.dtype}: its largest and "
                "smallest positive values differ by more than the float range. Use less extreme weights."
            )
        if val_idx is not None and not np.sum(sw[val_idx], dtype=np.float64) > 0:
            raise ValueError(
                "sample_weight is zero (or negligible next to the training samples' weights) on every sample "
                "early_stopping held out for validation; give them weight, or use early_stopping=False."
            )
        return sw

    # --- training ------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, incremental, classes=None):
        """Train, transactionally: if anything but divergence goes wrong (bad input, an
        interrupt), the estimator is restored to exactly what it was before the call.
        Validation writes metadata (``n_features_in_``, ``classes_``, ...) as it goes, so
        the whole instance dictionary is the unit of rollback (its training state is copied,
        random generator included, before training touches it). Calls on one instance are
        serialised, so a rollback never undoes another thread's completed call."""
        with _training_lock(self):
            before = dict(self.__dict__)
            try:
                return self._fit_unguarded(X, y, sample_weight, incremental, classes)
            except DivergenceError:
                raise  # the estimator deliberately keeps its last finite epoch
            except BaseException:
                self.__dict__.clear()
                self.__dict__.update(before)
                raise

    def _fit_unguarded(self, X, y, sample_weight, incremental, classes):
        if _distributed.is_dask_collection(X, y, sample_weight):  # train where the blocks are
            if hasattr(self, "_train_state"):  # (a warm start there reads the plain weights)
                self._train_state.fold_scale()
            return _distributed.fit(self, X, y, sample_weight, incremental=incremental)
        fitted = hasattr(self, "_train_state")
        first = not (incremental and fitted)
        # A dense fit that trains on every row leaves X's finiteness to the kernels: a NaN or an
        # infinity makes the first epoch's loss non-finite, and only then is X checked (for
        # scikit-learn's error). Otherwise, one pass over X checks it before training.
        defer_finite = not incremental and not self.early_stopping and not sp.issparse(X)
        X, y = self._validate_X_y(X, y, first, check_finite=not defer_finite)
        if not first and self._accept_sparse and sp.issparse(X):
            X = X.astype(self._dtype, copy=False)
        with np.errstate(over="ignore"):  # a target beyond X's dtype is reported just below
            y2, class_sw = self._validate_targets(X, y, first, classes)
        if not np.all(np.isfinite(y2)):
            raise ValueError(
                f"y has values beyond the range of {X.dtype} (the dtype of X, which training uses): "
                f"|y| <= {np.finfo(X.dtype).max:.3g} is needed. Pass X as float64, or rescale y."
            )
        optimizer = get_optimizer(self.optimizer)
        if optimizer.code == C.OPT_SAGA:
            self._check_saga(incremental)
        n, p = X.shape
        K = self._n_outputs

        if first:
            rng = make_rng(self.random_state)
            warm = self.warm_start and fitted and not incremental and self._train_state.coef.shape == (p + 1, K)
            if warm:
                coef = self._train_state.parameters().astype(X.dtype, copy=True)
            else:
                coef = self._init_coef(p, K, X.dtype, rng)
            with np.errstate(over="ignore"):
                opt_state = optimizer.init_state(coef.shape, X.dtype)
            if not np.all(np.isfinite(opt_state)):
                raise ValueError(
                    f"The initial state of {optimizer!r} is not finite in {X.dtype} (the dtype of X); "
                    "use a smaller initial value or float64 X."
                )
            ts = _solver.TrainState(coef=coef, opt_state=opt_state, rng=rng)
            if self.init == "zeros" and not warm:
                # known without a pass over the (not yet touched) memory
                ts.sq_norm, ts.zero_coef = 0.0, True
            self._trained_optimizer = optimizer
        else:
            if _optimizer_kind(optimizer) != _optimizer_kind(self._trained_optimizer):
                raise ValueError(
                    "partial_fit cannot change the kind of optimizer of a model being trained (its state "
                    f"would be read as another optimizer's): it was trained with {self._trained_optimizer!r}, "
                    f"the optimizer parameter is now {optimizer!r}. Call fit to start again with the new optimizer."
                )
            # trained in place; a failed call is undone with a TrainingUndo taken below
            ts = self._train_state

        train_idx, val_idx = np.arange(n, dtype=np.int64), None
        if self.early_stopping and not incremental:
            train_idx, val_idx = self._split(n, y2, ts.rng)
        sw = self._sample_weight(sample_weight, X, class_sw, train_idx, val_idx)
        validation_score = None
        if val_idx is not None:
            Xv, yv, swv = X[val_idx], y2[val_idx], sw[val_idx]

            def validation_score(coef):
                # Extreme (finite) parameters may overflow the loss to inf: a poor score, not a warning.
                with np.errstate(over="ignore", invalid="ignore"):
                    return self._validation_loss(np.asarray(Xv @ coef[:-1] + coef[-1]), yv, swv)

        settings = self._settings(optimizer, len(train_idx), self._loss_code, validation_score)
        problem = _solver.Problem(X=X, y=y2, sw=sw, train_idx=train_idx)
        backend = get_backend(self.backend)

        def auto_step():
            try:
                return _step_size.auto_learning_rate(X, sw, train_idx, settings.codes, settings.hp,
                                                     settings.batch_size, backend, streaming=incremental)
            except ValueError:
                if defer_finite:  # a step not finite because X is not?
                    self._check_finite_X(X)
                raise

        if self.learning_rate == "auto":
            if ts.learning_rate is None:
                ts.learning_rate = auto_step()
                ts.lr_history.append((ts.n_iter, ts.learning_rate, "auto"))
            settings.hp[C.H_LR] = ts.learning_rate
        else:
            ts.learning_rate = float(self.learning_rate)
            if _step_size.has_auto_step(settings.codes):  # a suggestion in a warning, if there is one
                settings.suggest_learning_rate = auto_step
        if not incremental:  # a pass over X that only a warning needs: computed if one is issued
            settings.scale_advice = lambda: scale_advice(X)
        n_epochs = 1 if incremental else self.max_iter
        settings.monitor = self._monitor(ts, settings, n_epochs, len(train_idx), continued=not first)
        # Continuing a fitted model, the state is trained in place and the whole call undone on
        # any failure (O(nnz) on sparse input, see _solver.rollback_rows): on divergence the
        # estimator keeps the state it had before the call.
        rows = _solver.FIND_ROWS
        undo = None
        if not first:  # (the scale is settled first: folding it changes every row)
            _solver.settle_scale(backend, problem, ts, settings, check_convergence=not incremental,
                                 n_epochs=n_epochs)
            rows = _solver.rollback_rows(backend, problem, settings, K)
            undo = _solver.TrainingUndo(ts, rows)
        try:
            converged = _solver.train(backend, problem, ts, settings, n_epochs, check_convergence=not incremental,
                                      rollback=first, rows=rows)
            if not incremental:
                def objective(coef):
                    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is a rise (inf)
                        return _objective(X[train_idx] if len(train_idx) < n else X, y2[train_idx], sw[train_idx],
                                          coef, self._loss_code, settings.hp[C.H_L2], settings.hp[C.H_L1],
                                          settings.hp[C.H_LOSS_PARAM])

                _solver.finish(ts, settings, converged, self.max_iter, type(self).__name__, objective)
            self._publish(ts, X.dtype, settings)
        except DivergenceError:
            if defer_finite:
                self._check_finite_X(X)
            if undo is not None:
                undo.restore(ts)
            else:
                self._publish(ts, X.dtype, settings)
            raise
        except BaseException:
            if undo is not None:
                undo.restore(ts)
            raise
        finally:
            if settings.monitor is not None:
                settings.monitor.close()
        return self

    def _check_saga(self, incremental):
        """SAGA's requirements of the other parameters, as clear errors."""
        if incremental:
            raise ValueError("optimizer='saga' stores one gradient per sample of the training set, so every epoch "
                             "must see the same samples: partial_fit (new data each call) cannot use it. Use fit "
                             "with max_iter epochs, or a per-batch optimizer such as 'sgd' or 'adam' for streams.")
        if self.batch_size not in (1, "auto"):
            raise ValueError(f"optimizer='saga' takes per-sample steps; batch_size must be 1 or 'auto', got "
                             f"{self.batch_size!r}.")
        if self.clip_norm is not None:
            raise ValueError("optimizer='saga' does not clip gradients (its variance-reduced steps need the "
                             "unclipped gradients); use clip_norm=None.")

    def _monitor(self, ts, settings, n_epochs, n_train, continued):
        """The callbacks, progress bar and path recording of this call (None if none is asked).
        A subclass without these parameters trains unwatched."""
        callbacks = getattr(self, "callbacks", None)
        progress = getattr(self, "progress", False)
        record_path = getattr(self, "record_path", False)
        if callbacks is None and _no_bar(progress) and not record_path:
            return None
        previous_path = None
        if continued and record_path and hasattr(self, "coef_path_"):
            previous_path = (self.coef_path_, self.intercept_path_)
        return TrainingMonitor(
            ts.coef, self._coef_views, callbacks=callbacks, progress=progress, record_path=record_path,
            n_epochs=n_epochs,
            steps_per_epoch=math.ceil(n_train / settings.batch_size), previous_path=previous_path,
            desc=type(self).__name__, verbose=self.verbose,
        )

    def _split(self, n, y2, rng):
        # Imported here: only early stopping needs it, and it adds to every cold start.
        from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

        seed = int(rng.integers(np.iinfo(np.int32).max))
        stratify = self._loss_code not in C.REGRESSION_LOSSES
        cv = (StratifiedShuffleSplit if stratify else ShuffleSplit)(
            n_splits=1, test_size=self.validation_fraction, random_state=seed
        )
        try:
            train_idx, val_idx = next(cv.split(np.zeros((n, 1)), y2[:, 0] if stratify else None))
        except ValueError as exc:
            raise ValueError(
                f"early_stopping could not hold out validation_fraction={self.validation_fraction} of "
                f"{n} samples ({exc}); use more samples, a larger validation_fraction, or "
                "early_stopping=False."
            ) from exc
        if len(train_idx) == 0 or len(val_idx) == 0:
            raise ValueError(f"early_stopping needs samples on both sides of the split; got {n} samples.")
        return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)

    def _publish(self, ts, dtype, settings):
        """Copy a training state into the public fitted attributes."""
        self._train_state = ts
        self._dtype = dtype
        self._publish_coef(ts)
        self.n_iter_ = ts.n_iter
        self.t_ = int(ts.t[0])
        self.loss_curve_ = list(ts.loss_curve)
        self.learning_rate_ = ts.learning_rate
        self.learning_rate_history_ = list(ts.lr_history)
        self.batch_size_ = settings.batch_size
        if settings.validation_score is not None:
            self.validation_loss_curve_ = list(ts.validation_scores)
            self.best_validation_loss_ = ts.best_validation_loss
            self.best_loss_ = None
        else:
            self.best_loss_ = ts.best_loss
            for name in ("validation_loss_curve_", "best_validation_loss_"):
                if hasattr(self, name):
                    delattr(self, name)
        path = None if settings.monitor is None else settings.monitor.path_arrays()
        if path is not None:
            self.coef_path_, self.intercept_path_ = path
        else:
            for name in ("coef_path_", "intercept_path_"):
                if hasattr(self, name):
                    delattr(self, name)

    # --- prediction ----------------------------------------------------------------------
    def _margins(self, X):
        check_is_fitted(self)
        accept_sparse = "csr" if self._accept_sparse else False
        with np.errstate(over="ignore", invalid="ignore"):  # see _validate_X_y
            X = validate_data(self, X, reset=False, accept_sparse=accept_sparse, dtype=[np.float64, np.float32])
        if sp.issparse(X):
            check_csr_structure(X)
        # From the public attributes, as scikit-learn's linear models do: a user who edits
        # coef_ or intercept_ predicts with the edited model.
        W = np.reshape(self.coef_, (-1, X.shape[1])).T
        b = np.reshape(self.intercept_, -1)
        if X.dtype != W.dtype:
            X = X.astype(W.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            z = np.asarray(X @ W + b)
            overflowed = ~np.all(np.isfinite(z), axis=1)
            if overflowed.any():
                z[overflowed] = _margins_rescaled(X[overflowed], W, b)
        return z

    def __sklearn_clone__(self):
        # A tqdm bar given as ``progress`` is shared with the clone, not deep-copied (tqdm bars
        # cannot be), so GridSearchCV and cross_val_score work with one; each fit resets it.
        progress = getattr(self, "progress", False)
        if progress is None or isinstance(progress, (bool, np.bool_)):
            return super().__sklearn_clone__()
        self.progress = False
        try:
            twin = super().__sklearn_clone__()
        finally:
            self.progress = progress
        twin.progress = progress
        return twin

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self._accept_sparse
        return tags
