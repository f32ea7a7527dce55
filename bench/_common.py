"""Shared pieces of the benchmarks: data, kernel arguments, backend discovery, timing.

Everything here prepares arrays *outside* the timed region; the timed region is one call of a
backend's epoch function (kernel level) or one estimator ``fit`` (user level).
"""

import os
import time

import numpy as np
import scipy.sparse as sp

from fastgd import _contract as C
from fastgd._solver import Problem

COMPILED_BACKENDS = ("numba", "cython")


# --- backends ---------------------------------------------------------------------------
def backend_status(names=COMPILED_BACKENDS):
    """``{name: (module or None, reason)}`` for each backend name, without raising."""
    from fastgd._backends import get_backend

    out = {}
    for name in names:
        try:
            out[name] = (get_backend(name), "")
        except Exception as exc:  # ImportError while the Cython extension is not built, ...
            out[name] = (None, f"{type(exc).__name__}: {exc}".splitlines()[0][:160])
    return out


def available_backends(names=COMPILED_BACKENDS):
    return {name: mod for name, (mod, _) in backend_status(names).items() if mod is not None}


# --- kernel settings, built exactly as the estimators build them -----------------------
def estimator_for(loss, **params):
    from fastgd import LinearRegression, LogisticRegression

    cls = LinearRegression if loss == "squared" else LogisticRegression
    return cls(**params)


def kernel_settings(loss_code, optimizer="sgd", learning_rate=0.01, batch_size=None, n_train=1000,
                    penalty="l2", alpha=1e-4, schedule="constant", max_iter=1):
    """``(codes, hp, batch_size)`` from the estimators' own ``_settings`` (the same code path a
    ``fit`` takes), for the given hyper-parameters."""
    from fastgd.optim import get_optimizer

    loss = "squared" if loss_code == C.LOSS_SQUARED else "log"
    est = estimator_for(loss, optimizer=optimizer, learning_rate=learning_rate, batch_size=batch_size,
                        penalty=penalty, alpha=alpha, schedule=schedule, max_iter=max_iter)
    settings = est._settings(get_optimizer(optimizer), n_train, loss_code, None)
    return settings.codes, settings.hp, settings.batch_size


def n_state_slots(optimizer):
    from fastgd.optim import get_optimizer

    return get_optimizer(optimizer).n_slots()


class KernelRun:
    """The arrays of one kernel-level training run: data in the kernel's layout plus the
    mutable parameters, which ``reset`` restores (outside any timed region)."""

    def __init__(self, backend, X, y2, optimizer, codes, hp, batch_size, K=1):
        self.backend = backend
        self.sparse = sp.issparse(X)
        self.X = X
        dtype = X.dtype
        n, p = X.shape
        self.n, self.p = n, p
        self.y = np.ascontiguousarray(y2, dtype=dtype).reshape(n, -1)
        self.sw = np.ones(n, dtype=dtype)
        self.codes, self.hp, self.batch_size = codes, hp, int(batch_size)
        self.coef = np.zeros((p + 1, K), dtype=dtype)
        self.state = np.zeros((n_state_slots(optimizer), p + 1, K), dtype=dtype)
        self.t = np.zeros(1, dtype=np.int64)
        self.grad = np.zeros((p + 1, K), dtype=dtype)
        self.work = np.zeros((C.WORK_ROWS, K), dtype=dtype)
        if self.sparse:
            self._csr_call = _csr_caller(backend, self)
        # the multi-core kernel where a fit would use it (large batches), as the driver decides
        problem = Problem(X=X, y=self.y, sw=self.sw, train_idx=np.arange(n, dtype=np.int64))
        self.chunked = problem.chunked_buffers(backend, self.batch_size, self.coef)
        self.reset()

    def reset(self):
        self.coef[...] = 0
        self.state[...] = 0
        self.t[...] = 0

    def epoch(self, order):
        if self.sparse:
            return self._csr_call(order)
        if self.chunked is not None:
            return self.backend.epoch_dense_chunked(self.X, self.y, self.sw, order, self.coef, self.state, self.t,
                                                    self.codes, self.hp, self.batch_size, self.grad, self.work,
                                                    *self.chunked)
        return self.backend.epoch_dense(self.X, self.y, self.sw, order, self.coef, self.state, self.t,
                                        self.codes, self.hp, self.batch_size, self.grad, self.work)


class CsrUnavailable(Exception):
    pass


def _csr_caller(backend, run):
    """A function ``order -> epoch_csr(...)`` for this backend, with the CSR scratch buffers
    made by the epoch driver itself (so their shapes follow the contract)."""
    fn = getattr(backend, "epoch_csr", None)
    if fn is None:
        raise CsrUnavailable(f"backend {backend.name!r} has no epoch_csr")
    X = run.X
    problem = Problem(X=X, y=run.y, sw=run.sw, train_idx=np.arange(X.shape[0], dtype=np.int64))
    lazy_work, index_work, counters = problem.sparse_buffers()

    def call(order):
        return fn(X.data, X.indices, X.indptr, X.shape[1], run.y, run.sw, order, run.coef, run.state, run.t,
                  run.codes, run.hp, run.batch_size, run.grad, run.work, lazy_work, index_work, counters)

    return call


# --- data -------------------------------------------------------------------------------
def dense_classification(n, p, dtype=np.float64, seed=0, n_classes=2):
    """make_classification data (standardised by construction), C-contiguous."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=p, n_informative=max(2, p // 2),
                               n_redundant=min(p // 10, p - max(2, p // 2)), n_classes=n_classes,
                               n_clusters_per_class=1 if n_classes > 4 else 2, random_state=seed)
    return np.ascontiguousarray(X, dtype=dtype), y.astype(np.int64)


def dense_regression(n, p, dtype=np.float64, seed=0):
    """make_regression data with the target standardised (so one learning rate suits all)."""
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=n, n_features=p, n_informative=max(1, p // 2), noise=10.0,
                           random_state=seed)
    y = (y - y.mean()) / y.std()
    return np.ascontiguousarray(X, dtype=dtype), y.astype(dtype)


def sparse_classification(n, p, nnz_per_row=50, dtype=np.float64, seed=0):
    """CSR (n, p) with about ``nnz_per_row`` standard-normal entries per row (random columns)
    and labels from a sparse linear model plus noise."""
    rng = np.random.default_rng(seed)
    k = min(nnz_per_row, p)
    cols = rng.integers(0, p, size=(n, k), dtype=np.int64)
    cols.sort(axis=1)
    data = rng.standard_normal(n * k).astype(dtype)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    X = sp.csr_matrix((data, cols.ravel().astype(np.int32), indptr), shape=(n, p))
    X.sum_duplicates()
    X = X.astype(dtype)
    w = rng.standard_normal(p) * (rng.random(p) < 0.2)
    z = X @ w
    y = (z + 0.5 * np.std(z) * rng.standard_normal(n) > 0).astype(np.int64)
    return X, y


def env_scale(name="FASTGD_BENCH_SCALE", default=1.0):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# --- timing -----------------------------------------------------------------------------
def timed(fn, clock=time.perf_counter):
    t0 = clock()
    fn()
    return clock() - t0


def alternate(fns, repeats, warmup=1, setup=None, clock=time.perf_counter):
    """Time each callable of ``fns`` (a dict name -> fn) ``repeats`` times, interleaved
    A B C A B C ... so slow drifts of a shared machine hit every tool alike. ``warmup`` calls
    of each come first and are not recorded (compilation, caches, page faults). ``setup``
    (name -> None), if given, runs before each call, untimed. ``clock`` is the wall clock
    unless given (``time.process_time`` leaves out waiting for a core on a loaded machine).
    Returns name -> list of seconds."""
    for name, fn in fns.items():
        for _ in range(warmup):
            if setup:
                setup(name)
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if setup:
                setup(name)
            times[name].append(timed(fn, clock))
    return times


def summary(ts):
    a = np.asarray(ts, dtype=float)
    return dict(median=float(np.median(a)), min=float(a.min()), max=float(a.max()), n=len(a))
