"""The epoch driver: everything that happens once per epoch, in Python, around one kernel call.

``TrainState`` is the plain data a training run carries from epoch to epoch (and from one
``partial_fit`` to the next). :func:`train` draws each epoch's sample order, calls the
backend's epoch kernel, and applies the convergence tests of the reference notes: the change
of the epoch loss (``tol`` with ``n_iter_no_change`` patience), the gradient norm
(``grad_tol``), and early stopping on held-out data.
"""

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fastgd import _contract as C
from fastgd.exceptions import DivergenceError
from fastgd.losses import penalty_value
from fastgd.schedules import ReduceLROnPlateau


@dataclass
class TrainState:
    """Everything that evolves during training."""

    coef: np.ndarray  # (p + 1, K), intercept in the last row
    opt_state: np.ndarray  # (n_slots, p + 1, K)
    rng: np.random.Generator
    t: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    n_iter: int = 0
    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = np.inf
    best_score: float = -np.inf
    best_coef: np.ndarray = None
    no_improvement: int = 0
    plateau: list = field(default_factory=lambda: [np.inf, 0, 1.0])  # best, bad epochs, scale

    def copy(self):
        return TrainState(
            coef=self.coef.copy(), opt_state=self.opt_state.copy(), rng=self.rng,
            t=self.t.copy(), n_iter=self.n_iter, loss_curve=list(self.loss_curve),
            validation_scores=list(self.validation_scores), best_loss=self.best_loss,
            best_score=self.best_score,
            best_coef=None if self.best_coef is None else self.best_coef.copy(),
            no_improvement=self.no_improvement, plateau=list(self.plateau),
        )


@dataclass
class Problem:
    """The validated data of one training run, in the kernel's layout."""

    X: object  # C-contiguous ndarray or CSR matrix, float32/float64
    y: np.ndarray  # (n, n_targets), X.dtype
    sw: np.ndarray  # (n,), X.dtype, mean 1 over the training indices
    train_idx: np.ndarray  # int64 indices of the samples trained on

    def sparse_buffers(self, codes=None, hp=None, batch_size=None, n_outputs=None):
        """The CSR kernel's scratch: (lazy_work, index_work, counters), or None if dense.
        Empty when the kernel's path does not use them (see ``csr_needs_lazy_buffers``)."""
        if not sp.issparse(self.X):
            return None
        p = self.X.shape[1]
        if codes is not None and not C.csr_needs_lazy_buffers(codes, hp, batch_size, n_outputs):
            p = 0
        return (np.zeros((p, C.LAZY_FIELDS)), np.zeros((2, p + 1), dtype=np.int64),
                np.zeros(C.N_COUNTERS, dtype=np.int64))

    def chunked_buffers(self, backend, batch_size, coef):
        """Scratch of the multi-core dense epoch, or None when the serial kernel is used."""
        p1, K = coef.shape
        if sp.issparse(self.X) or not hasattr(backend, "epoch_dense_chunked"):
            return None
        if min(batch_size, len(self.train_idx)) * (p1 - 1) * K < C.CHUNKED_MIN_WORK:
            return None
        return (np.zeros((C.N_CHUNKS, p1, K), dtype=coef.dtype),
                np.zeros((C.N_CHUNKS, C.WORK_ROWS, K), dtype=coef.dtype), np.zeros(C.N_CHUNKS))

    def epoch(self, backend, order, ts, codes, hp, batch_size, grad, work, sparse_buffers=None,
              chunked_buffers=None):
        if chunked_buffers is not None:
            return backend.epoch_dense_chunked(self.X, self.y, self.sw, order, ts.coef, ts.opt_state, ts.t,
                                               codes, hp, batch_size, grad, work, *chunked_buffers)
        if sp.issparse(self.X):
            X = self.X
            return backend.epoch_csr(X.data, X.indices, X.indptr, X.shape[1], self.y, self.sw, order,
                                     ts.coef, ts.opt_state, ts.t, codes, hp, batch_size, grad, work,
                                     *sparse_buffers)
        return backend.epoch_dense(self.X, self.y, self.sw, order, ts.coef, ts.opt_state, ts.t,
                                   codes, hp, batch_size, grad, work)


@dataclass
class Settings:
    """The per-fit constants the driver needs besides the kernel arrays."""

    codes: np.ndarray
    hp: np.ndarray
    batch_size: int
    shuffle: bool
    schedule: object
    tol: float = None
    n_iter_no_change: int = 5
    grad_tol: float = None
    validation_score: object = None  # callable coef -> score, when early stopping
    verbose: int = 0
    n_jobs: int = 1  # threads for independent outputs (see OutputThreads)


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
                and settings.hp[C.H_CLIP] == 0 and chunked_buffers is None)

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


def gradient_norm(backend, problem, coef, codes, hp):
    """Norm of the minimal-norm (sub)gradient of the training objective at ``coef``."""
    X = problem.X[problem.train_idx] if len(problem.train_idx) != problem.X.shape[0] else problem.X
    y = problem.y[problem.train_idx]
    sw = problem.sw[problem.train_idx]
    grad = np.zeros_like(coef)
    work = np.zeros((C.WORK_ROWS, coef.shape[1]), dtype=coef.dtype)
    if sp.issparse(X) or not hasattr(backend, "full_gradient_dense"):
        from fastgd._backends import _reference

        _reference.full_gradient(X, y, sw, coef, codes, grad, work)
    else:
        backend.full_gradient_dense(np.ascontiguousarray(X), y, sw, coef, codes, grad, work, hp)
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


def _stop_on_loss(ts, loss, tol, patience):
    if loss > ts.best_loss - tol:
        ts.no_improvement += 1
    else:
        ts.no_improvement = 0
    ts.best_loss = min(ts.best_loss, loss)
    return ts.no_improvement >= patience


def _stop_on_score(ts, score, tol, patience):
    if score < ts.best_score + tol:
        ts.no_improvement += 1
    else:
        ts.no_improvement = 0
    if score > ts.best_score:
        ts.best_score = score
        ts.best_coef = ts.coef.copy()
    return ts.no_improvement >= patience


def train(backend, problem, ts, settings, n_epochs, check_convergence=True):
    """Run up to ``n_epochs`` epochs on ``ts`` in place. Returns True if a convergence test
    stopped training. On divergence, restores the last finite epoch and raises."""
    s = settings
    codes, hp = s.codes, s.hp
    K = ts.coef.shape[1]
    grad = np.empty_like(ts.coef)
    work = np.zeros((C.WORK_ROWS, K), dtype=ts.coef.dtype)
    sparse_buffers = problem.sparse_buffers(codes, hp, s.batch_size, K)
    chunked_buffers = problem.chunked_buffers(backend, s.batch_size, ts.coef)
    threads = OutputThreads(problem, ts, s, s.n_jobs) if OutputThreads.applies(problem, s, K, chunked_buffers) else None
    try:
        return _train_epochs(backend, problem, ts, s, n_epochs, check_convergence, grad, work, sparse_buffers,
                             chunked_buffers, threads)
    finally:
        if threads is not None:
            threads.close()


def _train_epochs(backend, problem, ts, s, n_epochs, check_convergence, grad, work, sparse_buffers,
                  chunked_buffers, threads):
    codes, hp = s.codes, s.hp
    # Full-batch GD: the sample order only changes rounding, and data order reads memory
    # sequentially, so no permutation is drawn.
    shuffle = s.shuffle and s.batch_size < len(problem.train_idx)
    n_train = len(problem.train_idx)
    plateau = s.schedule if isinstance(s.schedule, ReduceLROnPlateau) else None
    for _ in range(n_epochs):
        order = ts.rng.permutation(problem.train_idx) if shuffle else problem.train_idx
        hp[C.H_EPOCH] = ts.n_iter
        hp[C.H_LR_SCALE] = ts.plateau[2]
        start_coef, start_state, start_t = ts.coef.copy(), ts.opt_state.copy(), ts.t.copy()
        tic = time.perf_counter()
        if threads is not None:
            status, loss_sum = threads.epoch(backend, order, ts, codes, hp, s.batch_size)
        else:
            status, loss_sum = problem.epoch(backend, order, ts, codes, hp, s.batch_size, grad, work,
                                             sparse_buffers, chunked_buffers)
        if status in C.BAD_CODE_SLOTS:  # found before any work: nothing to restore
            what, slot = C.BAD_CODE_SLOTS[status]
            raise ValueError(f"the {getattr(backend, 'name', backend)} backend does not know {what} code "
                             f"{int(codes[slot])} (codes {codes.tolist()}): an optimizer, loss or schedule "
                             "missing from this backend, or a stale build of it.")
        if status != C.STATUS_OK:
            ts.coef[...] = start_coef
            ts.opt_state[...] = start_state
            ts.t[...] = start_t
            raise DivergenceError(
                f"Training diverged in epoch {ts.n_iter + 1}: the loss or a parameter became "
                f"non-finite (inf or NaN). Try a smaller learning_rate (it is {hp[C.H_LR]:g}), "
                "gradient clipping (clip_norm), standardised features, or an adaptive optimizer "
                f"such as 'adam'. The estimator keeps the parameters after epoch {ts.n_iter}.",
                epoch=ts.n_iter + 1,
            )
        loss = loss_sum / n_train + penalty_value(start_coef, hp[C.H_L2], hp[C.H_L1])
        ts.loss_curve.append(loss)
        ts.n_iter += 1
        if plateau is not None:
            plateau.update_scale(ts.plateau, loss, hp[C.H_LR])
        stop = False
        if s.validation_score is not None:
            score = s.validation_score(ts.coef)
            ts.validation_scores.append(score)
            if check_convergence and s.tol is not None:
                stop = _stop_on_score(ts, score, s.tol, s.n_iter_no_change)
            elif score > ts.best_score:
                ts.best_score, ts.best_coef = score, ts.coef.copy()
        else:
            if check_convergence and s.tol is not None:
                stop = _stop_on_loss(ts, loss, s.tol, s.n_iter_no_change)
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
                line += f", validation score {ts.validation_scores[-1]:.6g}"
            if gnorm is not None:
                line += f", gradient norm {gnorm:.3g}"
            print(line, flush=True)
        if stop:
            return True
    return False


def finish(ts, settings, converged, max_iter, estimator_name):
    """After ``fit``: restore the best validated parameters and warn if not converged."""
    if settings.validation_score is not None and ts.best_coef is not None:
        ts.coef[...] = ts.best_coef
    tests = settings.tol is not None or settings.grad_tol is not None
    if tests and not converged:
        warnings.warn(
            f"{estimator_name}: maximum number of epochs (max_iter={max_iter}) reached and the "
            "convergence test did not stop training; consider increasing max_iter, the "
            "learning_rate, or tol.",
            ConvergenceWarning,
        )
