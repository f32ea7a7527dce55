"""The epoch driver: everything that happens once per epoch, in Python, around one kernel call.

``TrainState`` is the plain data a training run carries from epoch to epoch (and from one
``partial_fit`` to the next). :func:`train` draws each epoch's sample order, calls the
backend's epoch kernel, and applies the convergence tests of the reference notes: the change
of the epoch loss (``tol`` with ``n_iter_no_change`` patience), the gradient norm
(``grad_tol``), and early stopping on held-out data (its loss). After each epoch it hands the
epoch to the ``Settings.monitor`` (callbacks, progress bar, recorded path: :mod:`fastgd.callbacks`).

It also tells convergence from a step that is too large (:func:`_track_best_epoch`): every
epoch whose loss is the lowest so far is remembered with its parameters; a loss clearly
above that best is a *rise*. With ``learning_rate="auto"`` a rise is answered as a
backtracking line search would: back to the best epoch's parameters, half the step (momentum
methods first restart their velocity instead). With a
user-given rate training is left alone, and :func:`finish` restores the best epoch's
parameters if the last epoch ended above it and warns, once, naming the cause and the value
to try.
"""

import copy
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fastgd import _contract as C
from fastgd._backends import _fork_safety
from fastgd._lagging_norms import LaggingNorms, touched_rows
from fastgd.exceptions import DivergenceError
from fastgd.losses import penalty_value, vector_dot
from fastgd.schedules import ReduceLROnPlateau

# A loss counts as having risen when it exceeds the best by more than a fraction of it: for
# full-batch epochs (exact objectives) anything above rounding (1e-9 in float64, 100 ulp in
# float32); for mini-batch epochs (running means along the epoch) above their epoch-to-epoch
# noise near convergence.
RISE_RTOL_FULL_BATCH = 1e-9
RISE_RTOL_MINIBATCH = 1e-3


@dataclass
class TrainState:
    """Everything that evolves during training."""

    coef: np.ndarray  # (p + 1, K), intercept in the last row
    opt_state: np.ndarray  # (n_slots, p + 1, K)
    rng: np.random.Generator
    t: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    n_iter: int = 0
    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)  # validation loss per epoch (early stopping)
    best_loss: float = np.inf
    best_validation_loss: float = np.inf
    best_coef: np.ndarray = None
    no_improvement: int = 0
    plateau: list = field(default_factory=lambda: [np.inf, 0, 1.0])  # best, bad epochs, scale
    scratch: object = None  # SparseScratch kept between partial_fit calls (not state: not copied, not pickled)
    learning_rate: float = None  # the base step in use (halved by backtracking)
    lr_history: list = field(default_factory=list)  # (epoch, learning rate, why): "auto", "rise", "plateau"
    rises: list = field(default_factory=list)  # epochs whose loss rose clearly above the best
    best_epoch: int = 0  # 1-based epoch of the lowest training loss (0: none yet)
    best_epoch_loss: float = np.inf
    best_epoch_params: tuple = None  # (coef, opt_state) at the start of that epoch
    sample_memory: np.ndarray = None  # SAGA: the stored gradient scalar of each sample, (n, K)
    # The running scale of the CSR running-scale kernel, kept from one call to the next (see
    # settle_scale): the weights are ``scale * coef[:-1]``, the intercept row unscaled.
    # Folding it into ``coef`` costs O(n_features), so it is folded only when something needs
    # the plain weights (parameters(), fold_scale()).
    scale: float = 1.0
    sq_norm: float = None  # sum of squares of coef[:-1] as stored, in float64 (None: unknown)
    # coef is all zeros, as initialised and never trained: an undo needs no copy of it (on
    # wide data that copy, or the gather of the touched rows, cost up to a quarter of an epoch)
    zero_coef: bool = False
    version: int = 0  # training calls so far: what a cache of the public parameters is valid for
    # The CSR general kernel's deferred catch-up, kept from one call to the next (see
    # settle_scale and DeferredCatchUp): the coordinates it lists as behind are
    # brought up to date only when something reads the plain weights (parameters(),
    # fold_scale()). None: every coordinate is up to date.
    lazy: object = None

    def parameters(self):
        """The parameters with the running scale and the deferred catch-up folded in: ``coef``
        itself when neither is pending, else an up-to-date copy (O(n_features))."""
        if self.scale == 1.0 and self.lazy is None:
            return self.coef
        coef = self.coef.copy()
        if self.lazy is not None:
            self.lazy.catch_up(coef, None, self.t[0])
        if self.scale != 1.0:
            coef[:-1] *= self.scale
        return coef

    def fold_scale(self):
        """Bring ``coef`` (and the optimizer state) up to date in place: the running scale folded
        in and the deferred catch-up done (O(n_features), a no-op when neither is pending)."""
        self.fold_deferred()
        self.fold_running_scale()

    def fold_running_scale(self):
        """Fold the running scale into ``coef`` in place (O(n_features), a no-op at scale 1)."""
        if self.scale != 1.0:
            self.coef[:-1] *= self.scale
            self.scale = 1.0
            self.sq_norm = None

    def fold_deferred(self):
        """Do the deferred catch-up in place and drop its state (O(n_features))."""
        if self.lazy is not None:
            self.lazy.catch_up(self.coef, self.opt_state, self.t[0])
            self.lazy = None
            self.sq_norm = None

    def stored_sq_norm(self):
        """``sq_norm``, computed (O(n_features)) when unknown."""
        if self.sq_norm is None:
            w = self.coef[:-1].ravel().astype(np.float64, copy=False)
            self.sq_norm = vector_dot(w, w)
        return self.sq_norm

    def copy(self):
        """An independent copy: training the copy leaves this state (its random generator
        included) as it was, which is what makes a failed ``partial_fit`` roll back."""
        return TrainState(
            coef=self.coef.copy(), opt_state=self.opt_state.copy(), rng=copy.deepcopy(self.rng),
            t=self.t.copy(), n_iter=self.n_iter, loss_curve=list(self.loss_curve),
            validation_scores=list(self.validation_scores), best_loss=self.best_loss,
            best_validation_loss=self.best_validation_loss,
            best_coef=None if self.best_coef is None else self.best_coef.copy(),
            no_improvement=self.no_improvement, plateau=list(self.plateau),
            learning_rate=self.learning_rate, lr_history=list(self.lr_history), rises=list(self.rises),
            best_epoch=self.best_epoch, best_epoch_loss=self.best_epoch_loss,
            best_epoch_params=None if self.best_epoch_params is None else tuple(a.copy() for a in self.best_epoch_params),
            sample_memory=None if self.sample_memory is None else self.sample_memory.copy(),
            scale=self.scale, sq_norm=self.sq_norm, version=self.version, zero_coef=self.zero_coef,
            lazy=None if self.lazy is None else self.lazy.copy(),
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        state["scratch"] = None  # scratch memory, as large as the model: never saved
        if self.lazy is not None:  # saved up to date (its bookkeeping is 3 floats per feature)
            state["coef"] = self.coef.copy()
            state["opt_state"] = self.opt_state.copy()
            self.lazy.catch_up(state["coef"], state["opt_state"], self.t[0])
            state["lazy"], state["sq_norm"] = None, None
        return state


class DeferredCatchUp:
    """The CSR general kernel's deferred catch-up (fastgd._contract: the deferred catch-up),
    kept from one training call to the next: per coordinate the clock and the cumulative
    shrink map (A, B) it was last brought up to date at (``work``, the kernel's
    ``lazy_work``), the kernel's ``running`` state, and the kernel's zeroed gradient buffer
    and stamps (rebuilt, not pickled). ``signature`` is what the pending catch-up depends on
    beyond them (RMSprop and its rho, whether the kernel keeps the sum of squares, whether
    there is L1): a call with another folds it first. With L1, ``norms`` keeps the penalty's
    value (:class:`fastgd._lagging_norms.LaggingNorms`; None without L1)."""

    def __init__(self, work, running, signature, norms=None):
        self.work, self.running, self.signature, self.norms = work, running, signature, norms
        self._grad = self._index_work = None

    @classmethod
    def start(cls, ts, signature):
        """Every coordinate up to date at ``ts``'s clock (O(n_features), once)."""
        running = np.zeros(C.DEFERRED_FIELDS)
        running[C.D_STAMP] = -1.0
        lazy = cls(np.empty((ts.coef.shape[0] - 1, C.LAZY_FIELDS)), running, signature)
        lazy._start_map(ts)
        return lazy

    def _start_map(self, ts):
        """Every snapshot at ``ts``'s clock with ``A = 1, B = 0``, the map at (1, 0), the sum of
        squares (when the kernel keeps it) and the norms (with L1) of ``ts.coef``, which must be
        up to date. The stamps carry on."""
        self.work[:, 0], self.work[:, 1], self.work[:, 2] = float(ts.t[0]), 1.0, 0.0
        self.running[C.D_A], self.running[C.D_B] = 1.0, 0.0
        if self.signature[2]:  # the weights' sum of squares, kept by the kernel from here on
            self.running[C.D_SQ] = ts.stored_sq_norm()
        self.norms = LaggingNorms.start(ts.coef, self.work) if self.signature[3] else None

    def buffers(self, coef):
        """The kernel's ``grad`` (all zeros; the kernel leaves it so) and ``index_work`` (stamps
        at -1: older than any stamp the kernel uses), made on first use."""
        if self._grad is None or self._grad.shape != coef.shape or self._grad.dtype != coef.dtype:
            self._grad = np.zeros_like(coef)
        if self._index_work is None:
            self._index_work = np.full((2, coef.shape[0]), -1, dtype=np.int64)
        return self._grad, self._index_work

    def copy(self):
        return DeferredCatchUp(self.work.copy(), self.running.copy(), self.signature,
                               None if self.norms is None else self.norms.copy())

    def restart(self, ts):
        """Bring every coordinate of ``ts`` up to date in place and start the map again at
        ``A = 1, B = 0``, keeping this object and the kernel buffers it lends
        (O(n_features))."""
        self.catch_up(ts.coef, ts.opt_state, ts.t[0])
        ts.sq_norm = None
        self._start_map(ts)

    def catch_up(self, coef, opt_state, T):
        """Bring the coordinates that are behind up to clock ``T`` in ``coef`` (and RMSprop's
        accumulators in ``opt_state``, when given): the kernels' catch-up map, vectorised. The
        bookkeeping is left as it is: the caller drops it (a fold) or wrote into copies."""
        behind = np.flatnonzero(self.work[:, 0] != T)
        if len(behind) == 0:
            return
        A, B = self.running[C.D_A], self.running[C.D_B]
        ratio = A / self.work[behind, 1]
        shift = B - ratio * self.work[behind, 2]
        w = coef[behind].astype(np.float64)
        with np.errstate(invalid="ignore"):
            aw = np.abs(w) * ratio[:, None] - shift[:, None]
            coef[behind] = np.where(aw > 0, np.copysign(aw, w), np.where(aw == aw, 0.0, aw))
        rmsprop, rho = self.signature[:2]
        if rmsprop and opt_state is not None:
            f = np.power(rho, T - self.work[behind, 0])
            opt_state[C.S_SQUARE_AVG, behind] = opt_state[C.S_SQUARE_AVG, behind].astype(np.float64) * f[:, None]


class SparseScratch:
    """The CSR kernels' scratch arrays (gradient buffer, ``lazy_work``, ``index_work``), kept
    from one training call to the next.

    For hashed features they are several times the size of the model (5 * 8 bytes per
    feature); allocating them per ``partial_fit`` call made every call pay page faults and
    zeroing proportional to ``n_features``. Reuse changes no result: the kernels initialise
    every entry they read at the start of each epoch. So the arrays are allocated
    uninitialised: a path that does not use one (the running-scale kernel takes a gradient
    buffer of the model's shape and never touches it) then costs neither a zeroing nor a
    page fault for it.
    """

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype):
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = np.empty(shape, dtype=dtype)
            self._arrays[name] = array
        return array


@dataclass
class Problem:
    """The validated data of one training run, in the kernel's layout."""

    X: object  # C-contiguous ndarray or CSR matrix, float32/float64
    y: np.ndarray  # (n, n_targets), X.dtype
    sw: np.ndarray  # (n,), X.dtype, mean 1 over the training indices
    train_idx: np.ndarray  # int64 indices of the samples trained on

    def sparse_buffers(self, codes=None, hp=None, batch_size=None, n_outputs=None, scratch=None):
        """The CSR kernel's scratch: (lazy_work, index_work, counters), or None if dense.
        Empty when the kernel's path does not use them (see ``csr_needs_lazy_buffers``);
        taken from ``scratch`` (a :class:`SparseScratch`) when given."""
        if not sp.issparse(self.X):
            return None
        p = self.X.shape[1]
        if codes is not None and not C.csr_needs_lazy_buffers(codes, hp, batch_size, n_outputs):
            p = 0
        counters = np.zeros(C.N_COUNTERS, dtype=np.int64)
        if scratch is not None:
            return (scratch.get("lazy_work", (p, C.LAZY_FIELDS), np.float64),
                    scratch.get("index_work", (2, p + 1), np.int64), counters)
        return np.zeros((p, C.LAZY_FIELDS)), np.zeros((2, p + 1), dtype=np.int64), counters

    def chunked_buffers(self, backend, batch_size, coef):
        """Scratch of the multi-core dense epoch, or None when the serial kernel is used."""
        p1, K = coef.shape
        if sp.issparse(self.X) or not _multicore_kernel(backend, "epoch_dense_chunked"):
            return None
        if min(batch_size, len(self.train_idx)) * (p1 - 1) * K < C.CHUNKED_MIN_WORK:
            return None
        _fork_safety.note_multicore_run()
        return (np.zeros((C.N_CHUNKS, p1, K), dtype=coef.dtype),
                np.zeros((C.N_CHUNKS, C.WORK_ROWS, K), dtype=coef.dtype), np.zeros(C.N_CHUNKS))

    def full_gradient(self, backend, coef, codes, hp=None):
        """Mean weighted gradient of the loss over the training samples at ``coef``, and the
        weighted loss sum (penalty terms are the caller's)."""
        X = self.X[self.train_idx] if len(self.train_idx) != self.X.shape[0] else self.X
        y = self.y[self.train_idx]
        sw = self.sw[self.train_idx]
        grad = np.zeros_like(coef)
        work = np.zeros((C.WORK_ROWS, coef.shape[1]), dtype=coef.dtype)
        if sp.issparse(X) or not _multicore_kernel(backend, "full_gradient_dense"):
            from fastgd._backends import _reference

            loss_sum = _reference.full_gradient(X, y, sw, coef, codes, grad, work, hp)
        else:
            _fork_safety.note_multicore_run()
            loss_sum = backend.full_gradient_dense(np.ascontiguousarray(X), y, sw, coef, codes, grad, work, hp)
        return grad, loss_sum

    def epoch(self, backend, order, ts, codes, hp, batch_size, grad, work, sparse_buffers=None,
              chunked_buffers=None, running=None):
        if codes[C.C_OPTIMIZER] == C.OPT_SAGA:
            return self.saga_epoch(backend, order, ts, codes, hp, work)
        if chunked_buffers is not None:
            return backend.epoch_dense_chunked(self.X, self.y, self.sw, order, ts.coef, ts.opt_state, ts.t,
                                               codes, hp, batch_size, grad, work, *chunked_buffers)
        if sp.issparse(self.X):
            X = self.X
            if running is not None:  # the running-scale kernel's state kept between epochs (settle_scale)
                return backend.epoch_csr(X.data, X.indices, X.indptr, X.shape[1], self.y, self.sw, order,
                                         ts.coef, ts.opt_state, ts.t, codes, hp, batch_size, grad, work,
                                         *sparse_buffers, running=running)
            return backend.epoch_csr(X.data, X.indices, X.indptr, X.shape[1], self.y, self.sw, order,
                                     ts.coef, ts.opt_state, ts.t, codes, hp, batch_size, grad, work,
                                     *sparse_buffers)
        return backend.epoch_dense(self.X, self.y, self.sw, order, ts.coef, ts.opt_state, ts.t,
                                   codes, hp, batch_size, grad, work)


    def saga_epoch(self, backend, order, ts, codes, hp, work):
        """A SAGA epoch (see :mod:`fastgd._contract`); its stored gradients are kept in
        ``ts.sample_memory``, one row per sample of ``X``, the mean over the training samples."""
        if ts.sample_memory is None or ts.sample_memory.shape != (self.X.shape[0], ts.coef.shape[1]):
            ts.sample_memory = np.zeros((self.X.shape[0], ts.coef.shape[1]), dtype=ts.coef.dtype)
            ts.opt_state[C.S_SAGA_MEAN] = 0
        n_mean = len(self.train_idx)
        if sp.issparse(self.X):
            X = self.X
            return backend.epoch_saga_csr(X.data, X.indices, X.indptr, X.shape[1], self.y, self.sw, order,
                                          ts.coef, ts.opt_state, ts.t, codes, hp, work, ts.sample_memory, n_mean)
        return backend.epoch_saga_dense(self.X, self.y, self.sw, order, ts.coef, ts.opt_state, ts.t, codes, hp,
                                        work, ts.sample_memory, n_mean)


@dataclass
class Settings:
    """The per-fit constants the driver needs besides the kernel arrays."""

    codes: np.ndarray
    hp: np.ndarray
    batch_size: int
    shuffle: object  # True, False or "block" (see epoch_order)
    schedule: object
    tol: float = None
    n_iter_no_change: int = 5
    grad_tol: float = None
    validation_score: object = None  # callable coef -> score, when early stopping
    verbose: int = 0
    n_jobs: int = 1  # threads for independent outputs (see OutputThreads)
    monitor: object = None  # fastgd.callbacks.TrainingMonitor: callbacks, progress bar, recorded path
    backtrack: bool = False  # learning_rate="auto": halve the step on a rise
    suggest_learning_rate: object = None  # callable () -> the "auto" step, for warnings
    scale_advice: object = None  # why the features' scales slow gradient descent, if they do (or a
    # callable computing it, called when a warning needs it)
    rise_rtol: float = RISE_RTOL_MINIBATCH  # set by train() from the batch size


class OutputThreads:
    """Independent outputs trained in parallel threads.

    With the squared loss and no clipping (which would couple them through the global norm),
    the K outputs of a multi-output regression are K independent problems. Each epoch, each
    output runs as its own single-output kernel call, in a thread pool (the kernels release
    the GIL). Each output's arithmetic is then that of a single-output fit, so the result
    depends on whether outputs are split (``n_jobs > 1``), never on how many threads run.
    """

    def __init__(self, problem, ts, settings, n_jobs):
        from concurrent.futures import ThreadPoolExecutor

        K = ts.coef.shape[1]
        self.pool = ThreadPoolExecutor(max_workers=min(n_jobs, K))
        self.parts = []
        for k in range(K):
            part_problem = Problem(X=problem.X, y=np.ascontiguousarray(problem.y[:, k:k + 1]), sw=problem.sw,
                                   train_idx=problem.train_idx)
            part = TrainState(coef=np.empty((ts.coef.shape[0], 1), dtype=ts.coef.dtype),
                              opt_state=np.empty(ts.opt_state.shape[:2] + (1,), dtype=ts.coef.dtype), rng=ts.rng)
            self.parts.append((part_problem, part, np.empty_like(part.coef),
                               np.zeros((C.WORK_ROWS, 1), dtype=ts.coef.dtype),
                               part_problem.sparse_buffers(settings.codes, settings.hp, settings.batch_size, 1)))

    @staticmethod
    def applies(problem, settings, K, chunked_buffers):
        return (settings.n_jobs > 1 and K > 1 and settings.codes[C.C_LOSS] == C.LOSS_SQUARED
                and settings.hp[C.H_CLIP] == 0 and chunked_buffers is None
                and settings.codes[C.C_OPTIMIZER] != C.OPT_SAGA)

    def epoch(self, backend, order, ts, codes, hp, batch_size):
        def run(k):
            part_problem, part, grad, work, sparse_buffers = self.parts[k]
            part.coef[:, 0] = ts.coef[:, k]
            part.opt_state[..., 0] = ts.opt_state[..., k]
            part.t[:] = ts.t
            return part_problem.epoch(backend, order, part, codes, hp, batch_size, grad, work, sparse_buffers)

        results = list(self.pool.map(run, range(len(self.parts))))
        for k, (_, part, _, _, _) in enumerate(self.parts):
            ts.coef[:, k] = part.coef[:, 0]
            ts.opt_state[..., k] = part.opt_state[..., 0]
        ts.t[:] = self.parts[0][1].t
        status = max(r[0] for r in results)
        return status, float(sum(r[1] for r in results))

    def close(self):
        self.pool.shutdown()


# Hogwild! threads beyond this gain nothing on any machine fastgd targets (the Cython kernel's
# per-share flags are a fixed array of this size).
MAX_HOGWILD_THREADS = 64


class HogwildEpochs:
    """Hogwild! epochs (``n_jobs > 1`` on per-sample plain SGD over CSR rows; see
    :mod:`fastgd._contract`): ``n_jobs`` threads share each epoch's order and update the
    parameters without locks. Results vary from run to run (thread timing decides which
    update lands first); the objective is the serial fit's (the penalty is split over the
    samples that store each feature)."""

    def __init__(self, backend, problem, settings):
        if not hasattr(backend, "epoch_csr_hogwild"):
            raise ValueError(f"the {getattr(backend, 'name', backend)} backend has no Hogwild! kernel; use "
                             "n_jobs=None, or backend='numba'.")
        X, train_idx = problem.X, problem.train_idx
        counts = np.bincount((X[train_idx] if len(train_idx) != X.shape[0] else X).indices, minlength=X.shape[1])
        self.col_scale = np.where(counts > 0, len(train_idx) / np.maximum(counts, 1), 0.0)
        hp = settings.hp
        largest = max_learning_rate(settings.codes, hp) * hp[C.H_L2] * float(np.max(self.col_scale, initial=0.0))
        if not largest < 1:
            raise ValueError(
                f"with n_jobs > 1 (Hogwild!) a feature stored by few samples takes the L2 penalty of all samples "
                f"in its few steps: learning_rate * alpha * n / n_j reaches {largest:.3g} (it must stay below 1). "
                "Use a smaller learning_rate or alpha, or n_jobs=None.")
        self.n_shares = min(int(settings.n_jobs), MAX_HOGWILD_THREADS)
        self.losses = np.zeros(self.n_shares)
        self.problem = problem

    @staticmethod
    def applies(problem, settings, K):
        return C.hogwild_applies(settings.n_jobs, sp.issparse(problem.X), settings.codes, settings.hp,
                                 settings.batch_size, K)

    def epoch(self, backend, order, ts, codes, hp, batch_size):
        X = self.problem.X
        return backend.epoch_csr_hogwild(X.data, X.indices, X.indptr, X.shape[1], self.problem.y, self.problem.sw,
                                         order, ts.coef, ts.t, codes, hp, self.col_scale, self.n_shares,
                                         self.losses)

    def close(self):
        pass


def _multicore_kernel(backend, kernel):
    """Whether ``backend`` has the multi-core ``kernel`` and may run it in this process (see
    :mod:`fastgd._backends._fork_safety`)."""
    return hasattr(backend, kernel) and _fork_safety.multicore_allowed(backend.name)


def gradient_norm(backend, problem, coef, codes, hp):
    """Norm of the minimal-norm (sub)gradient of the training objective at ``coef``."""
    grad, _ = problem.full_gradient(backend, coef, codes, hp)
    g = grad.astype(np.float64)
    w = coef[:-1].astype(np.float64)
    g[:-1] += hp[C.H_L2] * w
    l1 = hp[C.H_L1]
    if l1 > 0:
        gw = g[:-1]
        on = w != 0
        gw[on] += l1 * np.sign(w[on])
        gw[~on] = np.sign(gw[~on]) * np.maximum(np.abs(gw[~on]) - l1, 0.0)
    return float(np.sqrt(np.sum(g * g)))


def nonfinite_epoch(status, loss, ts, learning_rate, rows=None):
    """None when an epoch ended finite, else what became non-finite and what to do about it.

    The kernels check the data loss and the parameters; the objective (which adds the
    penalty, in Python) and the optimizer state are checked here, once per epoch: an
    overflowing penalty or an optimizer state at inf would otherwise go unnoticed (the
    coefficients of Adam freeze when its second moment is inf)."""
    if status != C.STATUS_OK:
        return ("the loss or a parameter became non-finite (inf or NaN). Try a smaller learning_rate "
                f"(it is {learning_rate:g}), gradient clipping (clip_norm), standardised features, or an adaptive optimizer such as 'adam'.")
    if not np.isfinite(loss):
        return ("the objective (mean loss plus penalty) overflowed to inf. The penalty alpha * ||w|| is "
                "too large: use a smaller alpha, or standardised features.")
    # on sparse input only the rows the data touch can have changed (see rollback_rows)
    state = ts.opt_state if rows is None else ts.opt_state[:, rows]
    if not np.all(np.isfinite(state)):
        return ("the optimizer state became non-finite (the squared gradients overflowed). Use "
                "standardised features, gradient clipping (clip_norm), or float64 input.")
    return None


def _stop_on_loss(ts, loss, tol, patience):
    if loss > ts.best_loss - tol:
        ts.no_improvement += 1
    else:
        ts.no_improvement = 0
    ts.best_loss = min(ts.best_loss, loss)
    return ts.no_improvement >= patience


def _stop_on_validation_loss(ts, val_loss, tol, patience):
    """Early stopping: ``best_validation_loss`` holds the lowest validation loss, ``best_coef`` its
    parameters (restored by :func:`finish`)."""
    if val_loss > ts.best_validation_loss - tol:
        ts.no_improvement += 1
    else:
        ts.no_improvement = 0
    if val_loss < ts.best_validation_loss:
        ts.best_validation_loss = val_loss
        ts.best_coef = ts.coef.copy()
    return ts.no_improvement >= patience


# A block of rows this large stays in the core's cache while its rows are visited in random
# order, and is one sequential read from a file-backed memory map (see bench/bench_block_shuffle.py).
SHUFFLE_BLOCK_BYTES = 1 << 20


def shuffle_block_rows(X):
    """Rows per block of ``shuffle="block"``: about ``SHUFFLE_BLOCK_BYTES`` of ``X``."""
    n = max(X.shape[0], 1)
    if sp.issparse(X):
        row_bytes = X.nnz / n * (X.data.itemsize + X.indices.itemsize) + X.indptr.itemsize
    else:
        row_bytes = max(X.shape[1], 1) * X.dtype.itemsize
    return max(1, int(SHUFFLE_BLOCK_BYTES // max(row_bytes, 1)))


def epoch_order(rng, train_idx, shuffle, X):
    """The sample order of one epoch.

    ``shuffle=True``: a uniform permutation of ``train_idx``. ``shuffle="block"``: the
    training indices cut into contiguous blocks of :func:`shuffle_block_rows` rows, the
    blocks visited in random order and the rows within each block in random order. Every
    sample still comes exactly once per epoch, but memory (or a memory-mapped file) is read
    one block at a time instead of one random row at a time.
    """
    if shuffle != "block":
        return rng.permutation(train_idx)
    block = shuffle_block_rows(X)
    n = len(train_idx)
    order = np.empty_like(train_idx)
    pos = 0
    for b in rng.permutation(-(-n // block)):
        rows = train_idx[b * block:(b + 1) * block]
        order[pos:pos + len(rows)] = rng.permutation(rows)
        pos += len(rows)
    return order


# Backtracking gives up halving once the step is this small a fraction of where it started.
MIN_LR_FRACTION = 2.0 ** -30


def _rose(loss, reference, rtol):
    return loss > reference + rtol * abs(reference)


def _track_best_epoch(ts, s, loss, start_coef, start_state, hp):
    """Remember the best epoch; detect a rise above it and, with ``backtrack``, respond.

    The epoch loss is measured along the epoch from ``start_coef`` (exactly at it for
    full-batch steps), so the start parameters are what is kept. With ``s.backtrack`` a rise
    restores them and halves the learning rate: the step that produced the rise is undone,
    as in a backtracking line search, and the reduction is recorded in ``lr_history``.
    """
    if loss < ts.best_epoch_loss:
        ts.best_epoch, ts.best_epoch_loss = ts.n_iter, loss
        ts.best_epoch_params = (start_coef, start_state)
        return
    if not _rose(loss, ts.best_epoch_loss, s.rise_rtol):
        return
    ts.rises.append(ts.n_iter)
    if not s.backtrack or hp[C.H_LR] <= MIN_LR_FRACTION * ts.lr_history[0][1]:
        return
    coef, state = ts.best_epoch_params
    ts.coef[...] = coef
    if _has_velocity(s) and not (len(ts.rises) > 1 and ts.rises[-2] == ts.n_iter - 1):
        # Momentum methods do not decrease the loss monotonically even at a good step: the
        # first answer is a restart (velocity to zero, O'Donoghue and Candes 2015); the step
        # is halved only when the loss rises again right after one.
        ts.opt_state[...] = 0
        return
    ts.opt_state[...] = state
    hp[C.H_LR] *= 0.5
    ts.learning_rate = float(hp[C.H_LR])
    ts.lr_history.append((ts.n_iter, ts.learning_rate, "rise"))


# Mini-batch steps at a constant rate stall at a noise level proportional to the rate: with
# learning_rate="auto", a plateau of the loss test halves the step (as scikit-learn's
# "adaptive" rate divides it) this many times before it may stop training.
PLATEAU_HALVINGS = 4


def _anneal_on_plateau(ts, s, hp):
    """With ``backtrack`` and mini-batches: answer a plateau by halving the step (recorded in
    ``lr_history``) instead of stopping, up to :data:`PLATEAU_HALVINGS` times. Returns True
    when training should go on."""
    if not s.backtrack or s.rise_rtol < RISE_RTOL_MINIBATCH:
        return False
    if sum(1 for _, _, why in ts.lr_history if why == "plateau") >= PLATEAU_HALVINGS:
        return False
    hp[C.H_LR] *= 0.5
    ts.learning_rate = float(hp[C.H_LR])
    ts.lr_history.append((ts.n_iter, ts.learning_rate, "plateau"))
    ts.no_improvement = 0
    return True


def _non_monotone(settings):
    """True for optimizers with a momentum term, whose loss may rise between epochs at a
    step that converges."""
    return _has_velocity(settings) or settings.codes[C.C_OPTIMIZER] in (C.OPT_ADAM, C.OPT_ADAMAX, C.OPT_NADAM)


def _has_velocity(settings):
    """True for SGD with (Nesterov) momentum, whose state is a velocity."""
    return settings.codes[C.C_OPTIMIZER] == C.OPT_SGD and settings.hp[C.H_MOMENTUM] > 0


# ``train``'s default for ``rows``: find them with rollback_rows.
FIND_ROWS = "find"


def train(backend, problem, ts, settings, n_epochs, check_convergence=True, rollback=True, rows=FIND_ROWS):
    """Run up to ``n_epochs`` epochs on ``ts`` in place. Returns True if a convergence test
    stopped training. On divergence, restores the last finite epoch and raises
    (``rollback=False``: the caller undoes the whole call itself, with a :class:`TrainingUndo`
    taken before it, and the epochs need no snapshot of their own). ``rows``: what
    :func:`rollback_rows` returns for this call, when the caller has it already."""
    s = settings
    ts.version += 1
    running_scale = settle_scale(backend, problem, ts, s, check_convergence, n_epochs)
    codes, hp = s.codes, s.hp
    s.rise_rtol = (max(RISE_RTOL_FULL_BATCH, 100 * float(np.finfo(ts.coef.dtype).eps))
                   if s.batch_size >= len(problem.train_idx) else RISE_RTOL_MINIBATCH)
    K = ts.coef.shape[1]
    if ts.lazy is not None:  # the deferred catch-up's own buffers (kept between calls)
        grad, index_work = ts.lazy.buffers(ts.coef)
        sparse_buffers = (ts.lazy.work, index_work, np.zeros(C.N_COUNTERS, dtype=np.int64))
    else:
        if sp.issparse(problem.X):
            if ts.scratch is None:
                ts.scratch = SparseScratch()
            grad = ts.scratch.get("grad", ts.coef.shape, ts.coef.dtype)
        else:
            grad = np.empty_like(ts.coef)
        sparse_buffers = problem.sparse_buffers(codes, hp, s.batch_size, K, ts.scratch)
    work = np.zeros((C.WORK_ROWS, K), dtype=ts.coef.dtype)
    chunked_buffers = problem.chunked_buffers(backend, s.batch_size, ts.coef)
    threads = OutputThreads(problem, ts, s, s.n_jobs) if OutputThreads.applies(problem, s, K, chunked_buffers) else None
    if HogwildEpochs.applies(problem, s, K):
        threads = HogwildEpochs(backend, problem, s)
    try:
        if threads is not None:
            rows = None
        elif isinstance(rows, str) and rows == FIND_ROWS:
            rows = rollback_rows(backend, problem, s, K)
        return _train_epochs(backend, problem, ts, s, n_epochs, check_convergence, grad, work, sparse_buffers,
                             chunked_buffers, threads, rollback, rows, running_scale)
    finally:
        if threads is not None:
            threads.close()


def max_learning_rate(codes, hp):
    """An upper bound of every step's learning rate under these kernel arrays (inf when the
    schedule may grow: a decay factor above 1 or a negative inverse-scaling power)."""
    code = codes[C.C_SCHEDULE]
    eta0 = hp[C.H_LR]
    if code in (C.SCHED_STEP, C.SCHED_EXPONENTIAL) and hp[C.H_GAMMA] > 1:
        return np.inf
    if code == C.SCHED_INVSCALING and hp[C.H_POWER] < 0:
        return np.inf
    if code in (C.SCHED_POLYNOMIAL, C.SCHED_COSINE, C.SCHED_COSINE_RESTARTS):
        eta0 = max(eta0, hp[C.H_LR_MIN])
    if code == C.SCHED_ONE_CYCLE:  # (between its initial, peak and final rates)
        peak = hp[C.H_MAX_LR] if hp[C.H_MAX_LR] > 0 else eta0
        initial = peak / hp[C.H_DIV_FACTOR]
        eta0 = max(peak, initial, initial / hp[C.H_FINAL_DIV_FACTOR])
    return hp[C.H_LR_SCALE] * eta0


# Gathering the touched rows (at random places of the model) costs about this many times a
# plain copy, per non-zero.
ROWS_SNAPSHOT_COST = 16

# The running scale of plain SGD with L2 is folded into the weights (an O(n_features) pass)
# when it may fall below exp(-SCALE_FOLD_MARGIN) (about 3e-5) within an epoch: far above the
# kernels' own 1e-9 fold, which then never happens inside an epoch (so a diverged epoch has
# changed only the rows it touched).
SCALE_FOLD_MARGIN = 0.5 * math.log(1e9)

# Keeping the running scale costs the kernel a sum-of-squares update per non-zero (about a
# quarter of a pass over one coordinate); folding it costs two passes over every coordinate
# per epoch. It is kept only when an epoch's non-zeros are fewer than this many times the
# coordinates: wide hashed features, small partial_fit chunks. (Measured on the Cython
# kernel, 20,000 x 20,000 CSR with 50 nnz per row: keeping it made the epoch 7% slower.)
RUNNING_SCALE_NNZ_PER_FEATURE = 4


def _epoch_log_shrink(problem, settings):
    """An upper bound of ``-log`` of the product of the L2 shrink factors ``1 - lr * l2`` of
    one epoch's steps (inf when a factor may be non-positive)."""
    codes, hp = settings.codes, settings.hp
    shrink = float(max_learning_rate(codes, hp)) * float(hp[C.H_L2])  # (Python floats: inf, no warning, on overflow)
    if not shrink < 1:
        return math.inf
    n_steps = -(-len(problem.train_idx) // settings.batch_size)
    return n_steps * -math.log1p(-shrink)


def settle_scale(backend, problem, ts, settings, check_convergence, n_epochs=1):
    """Whether this call keeps the running scale of the CSR running-scale kernel (per-sample
    plain SGD, L2 only) in ``ts.scale`` from epoch to epoch and call to call, instead of
    folding it into every weight at the end of each epoch (an O(n_features) pass).

    It is kept when nothing during the call reads the plain weights: no callbacks, progress
    or path recording, no early stopping, no convergence test (they read or copy every
    weight each epoch anyway), and when the model is wide for the epoch's non-zeros
    (:data:`RUNNING_SCALE_NNZ_PER_FEATURE`). Otherwise, and when the scale may fall within
    :data:`SCALE_FOLD_MARGIN` of the kernels' own fold during the coming epoch, the scale
    is folded here. Call it before a :class:`TrainingUndo` of the call is taken: a fold
    changes every row. ``n_epochs``: the most epochs the call runs."""
    s = settings
    keep = (sp.issparse(problem.X) and getattr(backend, "CSR_RUNNING_SCALE", False)
            and C.csr_running_scale(s.codes, s.hp, s.batch_size, ts.coef.shape[1])
            and s.monitor is None and s.validation_score is None
            and not (check_convergence and (s.backtrack or _has_stopping_test(s)))
            # Hogwild! threads step the plain weights and keep no running state
            and not HogwildEpochs.applies(problem, s, ts.coef.shape[1])
            and _epoch_nnz(problem) < RUNNING_SCALE_NNZ_PER_FEATURE * problem.X.shape[1])
    if not keep or -math.log(ts.scale) + _epoch_log_shrink(problem, s) > SCALE_FOLD_MARGIN:
        ts.fold_running_scale()
    _settle_deferred(backend, problem, ts, s, check_convergence, n_epochs)
    return keep


# With L1 a deferred state also costs the driver the upkeep of the penalty's value
# (fastgd._lagging_norms: per touched coordinate two gathers, a place in a sort and in
# merges, about 0.1-0.2 us) where catching every coordinate up costs a few ns each; and
# per-sample SGD then runs in the general kernel instead of the fused one. It is kept only
# when an epoch's non-zeros are fewer than 1 / L1_DEFERRED_FEATURES_PER_NNZ of the
# coordinates. (Measured per 1,000-row chunk at 12 nnz per row, per-sample SGD with L1,
# deferred / caught up every call: 0.2x at 2^14 features, 0.9x at 2^16, 1.1x at 2^18, 3.5x
# at 2^21.)
L1_DEFERRED_FEATURES_PER_NNZ = 16

# The deferred catch-up's map is restarted (an O(n_features) fold) when its A may fall below
# exp(-DEFERRED_FOLD_MARGIN) within the coming epoch: well above the kernels' own restart
# (A < 1e-100), which then never happens inside an epoch (a diverged epoch changes only the
# rows it touched).
DEFERRED_FOLD_MARGIN = 0.5 * math.log(1e100)


def _settle_deferred(backend, problem, ts, settings, check_convergence, n_epochs):
    """Keep, start or fold ``ts.lazy``, the deferred catch-up of the CSR general kernel
    (:func:`fastgd._contract.csr_deferred_catch_up`): it is kept on the conditions of the
    running scale (nothing reads the plain weights during the call, the model is wide for the
    epoch's non-zeros), and the lagging coordinates are then caught up only when something
    reads them. After this, ``ts.lazy`` is not None exactly when the call defers.

    With L1 the penalty's value is kept outside the kernel (``ts.lazy.norms``), which a
    restart of the map inside the kernel would leave stale: the state is kept only when the
    call's ``n_epochs`` cannot take ``A`` within the kernels' restart and the model is wider
    still (:data:`L1_DEFERRED_FEATURES_PER_NNZ`), and folded (restarted) when the kept sums
    would lose precision to cancellation."""
    s = settings
    K = ts.coef.shape[1]
    codes, hp = s.codes, s.hp
    l1 = hp[C.H_L1] > 0
    shrink = _epoch_log_shrink(problem, s) * (n_epochs if l1 else 1)
    keep = (sp.issparse(problem.X) and getattr(backend, "CSR_DEFERRED_CATCH_UP", False)
            and C.csr_deferred_catch_up(codes, hp, s.batch_size, K)
            and s.monitor is None and s.validation_score is None
            and not (check_convergence and (s.backtrack or _has_stopping_test(s)))
            and not OutputThreads.applies(problem, s, K, None)
            # Hogwild! threads (per-sample SGD with L1 and n_jobs > 1) step the plain weights
            and not HogwildEpochs.applies(problem, s, K)
            and _epoch_nnz(problem) < RUNNING_SCALE_NNZ_PER_FEATURE * problem.X.shape[1]
            and not (l1 and (shrink > DEFERRED_FOLD_MARGIN
                             or _epoch_nnz(problem) * L1_DEFERRED_FEATURES_PER_NNZ > problem.X.shape[1])))
    signature = (bool(codes[C.C_OPTIMIZER] == C.OPT_RMSPROP), float(hp[C.H_RHO]),
                 bool(C.deferred_keeps_sum_of_squares(codes, hp)), bool(l1))
    lazy = ts.lazy
    precise = lazy is None or lazy.norms is None or lazy.norms.settle(lazy.running[C.D_A], lazy.running[C.D_B],
                                                                        lazy.work, hp[C.H_L2], hp[C.H_L1])
    if lazy is not None and (not keep or lazy.signature != signature or not precise
                             or -math.log(lazy.running[C.D_A]) + shrink > DEFERRED_FOLD_MARGIN):
        ts.fold_deferred()
    if keep and ts.lazy is None:
        ts.fold_running_scale()  # (no running scale with this kernel: 1 already, unless a fold was skipped)
        ts.lazy = DeferredCatchUp.start(ts, signature)


def _epoch_nnz(problem):
    """The non-zeros one epoch reads (the training rows' share of ``X.nnz``)."""
    n = problem.X.shape[0]
    return problem.X.nnz * len(problem.train_idx) / max(n, 1)


def rollback_rows(backend, problem, settings, n_outputs):
    """The rows of ``coef`` (and of the optimizer state) that a diverged epoch can have
    changed, when that is not all of them; None when a rollback must copy the whole model.

    On CSR input the compiled kernels update only the coordinates the rows touch (and the
    intercept) and defer everything else to an end-of-epoch catch-up, which they run only
    after checking that the weights are finite (``CSR_DIVERGENCE_TOUCHES_ONLY_ROWS``). A
    diverged epoch then changed only those rows, and saving them is O(nnz), not
    O(n_features). Two cases update other coordinates during the epoch: the exact dense
    path (``SPARSE_DENSE``), and plain SGD with L2 when the deferred shrink
    ``prod(1 - lr * l2)`` could fall below 1e-9 within the epoch (the kernels then fold it
    into every weight); both get a full copy.
    """
    if not (sp.issparse(problem.X) and getattr(backend, "CSR_DIVERGENCE_TOUCHES_ONLY_ROWS", False)):
        return None
    if problem.X.nnz * ROWS_SNAPSHOT_COST > problem.X.shape[1]:
        return None  # the rows touch much of the model: one plain copy is cheaper than sorting them
    if settings.n_jobs > 1 and n_outputs > 1:  # OutputThreads copies whole columns back
        return None
    if settings.codes[C.C_OPTIMIZER] == C.OPT_SAGA:  # every step moves every parameter
        return None
    codes, hp = settings.codes, settings.hp
    mode = C.sparse_mode(codes, hp)
    if mode == C.SPARSE_DENSE:
        return None
    if (mode == C.SPARSE_LAZY_EXACT and codes[C.C_OPTIMIZER] == C.OPT_SGD and hp[C.H_L2] > 0
            and _epoch_log_shrink(problem, settings) > SCALE_FOLD_MARGIN):
        return None
    # Repeated columns are harmless (a row saved twice is restored twice to the same value),
    # and a sort to remove them cost as much as the epoch itself on hashed features.
    return np.append(problem.X.indices, problem.X.shape[1]).astype(np.intp, copy=False)


class TrainingUndo:
    """What a training call changes in a :class:`TrainState`, saved before it, so that a
    failed call can be undone: the parameter and optimizer-state rows ``rows`` (all rows when
    None, see :func:`rollback_rows`), the step counter, the random generator's state, and the
    bookkeeping (epoch count, learning curve, convergence and plateau counters). A model
    still at its zeros initialisation is restored to zeros, not from a copy."""

    _FIELDS = ("n_iter", "best_loss", "best_validation_loss", "best_coef", "no_improvement")

    def __init__(self, ts, rows=None):
        self.rows = rows
        take = (lambda a: a.copy()) if rows is None else (lambda a: a[rows])
        self.coef = None if ts.zero_coef else take(ts.coef)
        self.state = ts.opt_state.copy() if rows is None else ts.opt_state[:, rows]
        self.scale_state = ts.scale, ts.sq_norm, ts.version, ts.zero_coef
        self.lazy = ts.lazy
        if ts.lazy is not None:  # (the stamps are not restored: they must never repeat)
            self.lazy_running = ts.lazy.running[[C.D_A, C.D_B, C.D_SQ]].copy()
            self.lazy_rows = None if rows is None else rows[rows < ts.lazy.work.shape[0]]
            self.lazy_work = ts.lazy.work.copy() if rows is None else ts.lazy.work[self.lazy_rows]
            self.lazy_norms = None if ts.lazy.norms is None else ts.lazy.norms.snapshot()
        self.t = ts.t.copy()
        self.sample_memory = None if ts.sample_memory is None else ts.sample_memory.copy()
        self.rng_state = ts.rng.bit_generator.state
        self.fields = {name: getattr(ts, name) for name in self._FIELDS}
        self.plateau = list(ts.plateau)
        # the curves are only appended to: their lengths are enough to undo
        self.lengths = len(ts.loss_curve), len(ts.validation_scores)

    def restore_parameters(self, ts):
        """Restore the parameters (running scale included), the step counter and the random
        generator."""
        coef = 0.0 if self.coef is None else self.coef
        if self.rows is None:
            ts.coef[...], ts.opt_state[...] = coef, self.state
        else:
            ts.coef[self.rows], ts.opt_state[:, self.rows] = coef, self.state
        ts.scale, ts.sq_norm, ts.version, ts.zero_coef = self.scale_state
        ts.lazy = self.lazy
        if self.lazy is not None:
            self.lazy.running[[C.D_A, C.D_B, C.D_SQ]] = self.lazy_running
            if self.lazy_rows is None:
                self.lazy.work[...] = self.lazy_work
            else:
                self.lazy.work[self.lazy_rows] = self.lazy_work
            if self.lazy_norms is not None:
                self.lazy.norms.restore(self.lazy_norms)
        ts.t[...] = self.t
        ts.sample_memory = self.sample_memory
        ts.rng.bit_generator.state = self.rng_state

    def restore(self, ts):
        self.restore_parameters(ts)
        for name, value in self.fields.items():
            setattr(ts, name, value)
        ts.plateau[:] = self.plateau
        del ts.loss_curve[self.lengths[0]:]
        del ts.validation_scores[self.lengths[1]:]


def _train_epochs(backend, problem, ts, s, n_epochs, check_convergence, grad, work, sparse_buffers,
                  chunked_buffers, threads, rollback, rows, running_scale):
    codes, hp = s.codes, s.hp
    # With the running scale kept (settle_scale) the penalty comes from the stored weights'
    # sum of squares, which the kernel keeps up to date from the coordinates it steps: O(nnz),
    # not a pass over every weight.
    running = np.empty(2) if running_scale else None
    norms = touched = None
    if ts.lazy is not None:  # the deferred catch-up's state, carried on by the kernel (settle_scale)
        running = ts.lazy.running
        norms = ts.lazy.norms
        if norms is not None:  # (L1) the coordinates each epoch brings up to date
            touched = touched_rows(problem.X, problem.train_idx)
    # Full-batch GD: the sample order only changes rounding, and data order reads memory
    # sequentially, so no permutation is drawn.
    shuffle = s.shuffle and s.batch_size < len(problem.train_idx)
    n_train = len(problem.train_idx)
    plateau = s.schedule if isinstance(s.schedule, ReduceLROnPlateau) else None
    # SAGA converges at its step without a line search, and its running epoch loss (which can
    # dip below the optimum's objective mid-run) is no test of a rise: no best epoch is kept
    track_best = (check_convergence and (s.backtrack or _has_stopping_test(s))
                  and codes[C.C_OPTIMIZER] != C.OPT_SAGA)

    def run_epoch(order):
        if threads is not None:
            return threads.epoch(backend, order, ts, codes, hp, s.batch_size)
        if running is None:  # (problems of other kinds, such as Dask shards, take no running state)
            return problem.epoch(backend, order, ts, codes, hp, s.batch_size, grad, work, sparse_buffers,
                                 chunked_buffers)
        return problem.epoch(backend, order, ts, codes, hp, s.batch_size, grad, work, sparse_buffers,
                             chunked_buffers, running=running)

    for _ in range(n_epochs):
        order = epoch_order(ts.rng, problem.train_idx, s.shuffle, problem.X) if shuffle else problem.train_idx
        hp[C.H_EPOCH] = ts.n_iter
        hp[C.H_LR_SCALE] = ts.plateau[2]
        if running_scale or ts.lazy is not None:
            # settle_scale bounds a call's first epoch: a later one can bring the running scale
            # or the deferred map to the kernels' own fold / restart, which changes every row
            # under this epoch's undo of the rows it touches (a warm-started fit on other data
            # leaves rows it never touches). So fold / restart here first, before the undo is
            # taken. (A continued call with the caller's undo is a partial_fit: one epoch.)
            shrink = _epoch_log_shrink(problem, s)
            if running_scale and -math.log(ts.scale) + shrink > SCALE_FOLD_MARGIN:
                ts.fold_running_scale()
            if ts.lazy is not None and -math.log(running[C.D_A]) + shrink > DEFERRED_FOLD_MARGIN:
                ts.lazy.restart(ts)
                norms = ts.lazy.norms
        undo = TrainingUndo(ts, rows) if rollback else None
        start_coef = start_state = None
        if track_best:  # the epoch's starting point, kept if it turns out the best
            if undo is not None and undo.rows is None and undo.coef is not None:
                start_coef, start_state = undo.coef, undo.state
            else:
                start_coef, start_state = ts.coef.copy(), ts.opt_state.copy()
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
            if running_scale:  # (the running-scale kernel has no L1)
                running[:] = ts.scale, ts.stored_sq_norm()
                penalty = 0.5 * hp[C.H_L2] * ts.scale * ts.scale * ts.sq_norm if hp[C.H_L2] > 0 else 0.0
            elif norms is not None:  # L1: from the lagging weights' norms (the touched ones are replaced after)
                A_start = running[C.D_A]
                if norms.settle(A_start, running[C.D_B], ts.lazy.work, hp[C.H_L2], hp[C.H_L1]):
                    penalty = norms.penalty(A_start, running[C.D_B], hp[C.H_L2], hp[C.H_L1])
                else:  # (a fit's later epoch: no restart mid-call; a full pass, this epoch only)
                    penalty = penalty_value(ts.parameters(), hp[C.H_L2], hp[C.H_L1])
                departing = norms.alive(touched, ts.coef, ts.lazy.work)
            elif ts.lazy is not None:  # (L2 only with SGD, whose sum of squares the kernel keeps)
                A = running[C.D_A]
                penalty = 0.5 * hp[C.H_L2] * A * A * running[C.D_SQ] if hp[C.H_L2] > 0 else 0.0
            else:
                penalty = penalty_value(ts.coef, hp[C.H_L2], hp[C.H_L1])  # at the epoch's start
        tic = time.perf_counter()
        ts.zero_coef = False
        if s.monitor is not None and s.monitor.records_steps:
            status, loss_sum = s.monitor.run_epoch_by_steps(run_epoch, order, s.batch_size, ts.coef)
        else:
            status, loss_sum = run_epoch(order)
        if running_scale:
            # rounding may leave a sum of squares built from differences a hair below zero
            ts.scale, ts.sq_norm = float(running[0]), max(float(running[1]), 0.0)
        elif ts.lazy is not None:
            running[C.D_SQ] = max(running[C.D_SQ], 0.0)
            ts.sq_norm = None
        if status in C.BAD_CODE_SLOTS:  # found before any work: nothing to restore
            what, slot = C.BAD_CODE_SLOTS[status]
            raise ValueError(f"the {getattr(backend, 'name', backend)} backend does not know {what} code "
                             f"{int(codes[slot])} (codes {codes.tolist()}): an optimizer, loss or schedule "
                             "missing from this backend, or a stale build of it.")
        with np.errstate(over="ignore", invalid="ignore"):
            loss = loss_sum / n_train + penalty
        problem_found = nonfinite_epoch(status, loss, ts, hp[C.H_LR], rows)
        if problem_found is not None:
            if undo is not None:
                undo.restore_parameters(ts)
            raise DivergenceError(
                f"Training diverged in epoch {ts.n_iter + 1}: {problem_found} The estimator keeps the "
                f"parameters after epoch {ts.n_iter}.",
                epoch=ts.n_iter + 1,
            )
        if norms is not None and running[C.D_A] > A_start:
            # the kernel restarted the map (a bound in _settle_deferred failed): u changed meaning
            norms = ts.lazy.norms = LaggingNorms.start(ts.coef, ts.lazy.work)
        elif norms is not None:  # the touched coordinates' entries, as the epoch left them
            norms.insert(touched, ts.coef, ts.lazy.work, departing)
        ts.loss_curve.append(loss)
        ts.n_iter += 1
        if plateau is not None:
            plateau.update_scale(ts.plateau, loss, hp[C.H_LR])
        if track_best:
            _track_best_epoch(ts, s, loss, start_coef, start_state, hp)
        stop = False
        if s.validation_score is not None:
            score = s.validation_score(ts.coef)
            ts.validation_scores.append(score)
            if check_convergence and s.tol is not None:
                stop = _stop_on_validation_loss(ts, score, s.tol, s.n_iter_no_change)
            elif score < ts.best_validation_loss:
                ts.best_validation_loss, ts.best_coef = score, ts.coef.copy()
        else:
            if check_convergence and s.tol is not None:
                stop = _stop_on_loss(ts, loss, s.tol, s.n_iter_no_change) and not _anneal_on_plateau(ts, s, hp)
            else:
                ts.best_loss = min(ts.best_loss, loss)
        gnorm = None
        if check_convergence and s.grad_tol is not None:
            gnorm = gradient_norm(backend, problem, ts.coef, codes, hp)
            stop = stop or gnorm < s.grad_tol
        if s.verbose:
            line = (f"Epoch {ts.n_iter}: loss {loss:.6g}, steps {int(ts.t[0])}, "
                    f"lr scale {ts.plateau[2]:g}, {time.perf_counter() - tic:.3g} s")
            if s.validation_score is not None:
                line += f", validation loss {ts.validation_scores[-1]:.6g}"
            if gnorm is not None:
                line += f", gradient norm {gnorm:.3g}"
            print(line, flush=True)
        if s.monitor is not None:
            stop = s.monitor.after_epoch(ts, s) or stop
        if stop:
            return True
    return False


def _has_stopping_test(settings):
    """Whether a convergence test decides when training ends (else the user fixed the number
    of epochs: ``tol=None`` and ``grad_tol=None``, and every epoch is kept as trained)."""
    return settings.tol is not None or settings.grad_tol is not None


def _scale_advice(s):
    """``s.scale_advice``, computed on first use when it is a callable (a pass over X that
    only a warning needs)."""
    if callable(s.scale_advice):
        s.scale_advice = s.scale_advice()
    return s.scale_advice


def finish(ts, settings, converged, max_iter, estimator_name, objective=None):
    """After ``fit``: restore the best parameters, and warn once if something is wrong.

    With early stopping the parameters of the lowest validation loss are restored. Otherwise,
    if the last epoch's loss rose above the best epoch's, that epoch's parameters are
    restored (training never ends silently on a loss worse than its best); for full-batch
    training ``objective`` (a callable of the parameters) also checks the parameters after the
    last step, whose loss no epoch has measured. At most one
    ``ConvergenceWarning`` is issued; it says what was observed and what to change.
    """
    s = settings
    observed, advice = [], []
    restored = False
    if not _has_stopping_test(s):
        if s.validation_score is not None and ts.best_coef is not None:
            ts.coef[...] = ts.best_coef
        return
    if s.validation_score is not None and ts.best_coef is not None:
        ts.coef[...] = ts.best_coef
    elif ts.best_epoch_params is not None and (
            _rose(ts.loss_curve[-1], ts.best_epoch_loss, s.rise_rtol)
            or (s.rise_rtol < RISE_RTOL_MINIBATCH and objective is not None
                and _rose(objective(ts.coef), ts.best_epoch_loss, s.rise_rtol))):
        ts.coef[...] = ts.best_epoch_params[0]
        ts.opt_state[...] = ts.best_epoch_params[1]
        restored = True
        if not s.backtrack:  # backtracking has recorded its own restores
            observed.append(f"training ended above its best loss ({ts.best_epoch_loss:.6g}, epoch "
                            f"{ts.best_epoch}; last epoch {ts.loss_curve[-1]:.6g}); the parameters "
                            "of that best epoch were restored")
    # Momentum methods (and Adam's first moment) do not decrease the loss monotonically even at
    # a good step: their rises are news only when training also failed to end at its best.
    expected_rises = _non_monotone(s) and converged and not restored
    if ts.rises and not s.backtrack and not expected_rises:
        first = ts.rises[0]
        observed.append(f"the training loss rose above its best in {len(ts.rises)} of {ts.n_iter} "
                        f"epochs (first in epoch {first}: {ts.loss_curve[first - 2]:.4g} -> "
                        f"{ts.loss_curve[first - 1]:.4g})")
        lr = s.hp[C.H_LR]
        suggestion = f"a smaller learning_rate (it is {lr:g})"
        if s.suggest_learning_rate is not None:
            auto = s.suggest_learning_rate()
            if auto < lr:
                suggestion = (f"learning_rate='auto' (the step derived from this data, {auto:.3g}; "
                              f"it is {lr:g})")
        advice.append("the step is likely too large: use " + suggestion)
    if not converged:
        observed.append(f"the maximum number of epochs (max_iter={max_iter}) was reached before "
                        "the convergence test stopped training")
        advice.append("increase max_iter" + ("" if s.backtrack else " or the learning_rate")
                      + " or tol")
    if not observed and converged and _scale_advice(s):
        observed.append("the convergence test stopped training, but on features at such different "
                        "scales gradient descent progresses so slowly that it looks converged: the "
                        "model may be far from the optimum")
    if not observed:
        return
    if _scale_advice(s):
        advice.insert(0, s.scale_advice)
    warnings.warn(f"{estimator_name}: " + "; ".join(observed) + ". To fix: " + "; ".join(advice) + ".",
                  ConvergenceWarning)
