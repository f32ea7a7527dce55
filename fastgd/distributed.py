"""Training on Dask collections: the kernels run on the workers that hold the data.

``fit`` of the estimators delegates here when ``X`` (or ``y``) is a Dask array or DataFrame;
``predict`` and friends return lazy Dask arrays computed block by block. With an active
``distributed.Client`` the work runs on its cluster; without one, on Dask's local scheduler.

How a fit runs
--------------
1. **Shards.** Each block of ``(X, y, sample_weight)`` is validated on the worker that computes
   it, with the same checks (and error messages) as a local fit, and converted to the kernel's
   layout. The blocks a worker holds are then concatenated, on that worker, into one *shard*
   (a :class:`fastgd._solver.Problem`): the blocks are split into one contiguous run of about
   equal rows per worker, each concatenated on the worker holding most of it, so the model
   depends on the chunking and the number of workers, never on placement or timing. No data travels to the
   client: only shapes, sample-weight sums and the classes of ``y`` do. (The shard is a copy
   of the worker's blocks: while a fit runs, a worker holds its share of the data once more if
   the caller keeps ``X`` persisted.) Without a client, the data forms one shard.
2. **Full-batch gradient descent** (``batch_size=None``, or at least ``n_samples``) is exact:
   each iteration every shard computes its gradient and loss sums with the compiled full
   gradient kernel; the partial sums are added in shard order (a tree of fan-in
   :data:`REDUCE_FAN_IN`, its root on the client) and the optimizer step, learning-rate schedule
   and convergence tests run once, on the client, in the same epoch driver as a local fit
   (:func:`fastgd._solver.train`). The step is the NumPy reference backend's rule (the
   executable specification every compiled kernel is tested against), so the trajectory equals
   a local fit's to rounding (only the order of the gradient sum differs).
3. **Mini-batch and per-sample SGD** (``batch_size < n_samples``) is local SGD with model
   averaging: *parameter mixing* (McDonald et al., 2010, "Distributed training strategies for
   the structured perceptron"; Zinkevich et al., 2010, "Parallelized stochastic gradient
   descent"). From the current parameters, every shard runs the compiled epoch kernel over its
   own samples (shuffled with its own random stream) for ``sync`` optimizer steps, or a whole
   pass when ``sync`` is None; then the parameters *and* the optimizer state are averaged,
   weighted by the number of samples each shard processed, and the step counter advances by
   the longest run of steps. With one shard this is exactly a local fit (the first shard draws
   its sample orders from the estimator's own random stream); with several it is an
   approximation whose quality the README reports.

Faults: every task is a pure function of its inputs (parameters, random streams and sample
orders travel with the task), so when a worker dies Dask recomputes its shards from their
lineage on the remaining workers and the fit continues with exactly the same numbers; after
too many failures Dask raises ``KilledWorker``.

Unsupported with Dask input (a clear error): ``early_stopping=True`` and ``partial_fit``
(dask-ml's ``Incremental`` streams Dask blocks into ``partial_fit`` instead).
"""

import math
import operator
import os
import sys
import warnings
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from fastgd import _contract as C
from fastgd import _solver, optim
from fastgd._backends import _reference, get_backend
from fastgd.exceptions import DivergenceError

__all__ = ["fit", "is_dask_collection", "predict_blockwise", "REDUCE_FAN_IN"]

#: Partial sums added per task of the reduction tree; the last level (at most this many
#: parts) is added on the client.
REDUCE_FAN_IN = 8


def is_dask_collection(*objects):
    """True when any of ``objects`` is a Dask collection (array, DataFrame, Series).

    Costs nothing when Dask was never imported (then nothing can be a Dask collection)."""
    if "dask" not in sys.modules:
        return False
    from dask import is_dask_collection as _is_dask

    return any(_is_dask(obj) for obj in objects)


# --- what shards send back ---------------------------------------------------------------------
@dataclass
class _Sums:
    """A shard's contribution: float64 arrays and a loss that add across shards, plus the
    status (the worst wins) and the optimizer steps taken (the longest run wins)."""

    arrays: tuple
    loss_sum: float
    status: int = C.STATUS_OK
    steps: int = 0

    def __add__(self, other):
        return _Sums(tuple(a + b for a, b in zip(self.arrays, other.arrays)), self.loss_sum + other.loss_sum,
                     max(self.status, other.status), max(self.steps, other.steps))


def _add_in_order(*parts):
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


# --- worker-side tasks (module-level functions: they travel to the workers by name) ----------
def _worker_backend(name):
    """The backend ``name``, its kernels limited to the threads a task may use here.

    A Dask worker runs ``nthreads`` tasks at once, and its nanny sets ``OMP_NUM_THREADS``
    (to 1 by default) so that a task does not fight the others for the cores: the Cython
    kernels' OpenMP follows it by itself, Numba's thread pool is told here. (On the loaded
    2-core test machine, a small shard's Numba gradient took 29 ms with a pool of 2 threads
    against 0.15 ms on one: the parallel region waits for descheduled threads.)"""
    backend = get_backend(name)
    limit = os.environ.get("OMP_NUM_THREADS")
    if name == "numba" and limit and limit.isdigit():
        import numba

        numba.set_num_threads(max(1, min(int(limit), numba.config.NUMBA_NUM_THREADS)))
    return backend


def _prepare_block(estimator, dtype, X, y, sample_weight):
    """Validate one block as a local fit validates its input, in the kernel's layout."""
    from sklearn.utils.validation import check_X_y

    X, y = check_X_y(X, y, accept_sparse="csr" if estimator._accept_sparse else False, dtype=dtype, order="C",
                     multi_output=estimator._multi_output, y_numeric=estimator._y_numeric, estimator=estimator)
    if sp.issparse(X) and not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    y2, class_sw = estimator._validate_targets(X, y, False, None)
    # raw weights: the shards scale them to mean 1 over all blocks (_make_shard)
    sw = estimator._raw_sample_weight(sample_weight, X, class_sw).astype(X.dtype)
    return X, y2, sw


def _weight_sum(block):
    return float(np.sum(block[2], dtype=np.float64))


def _make_shard(scale, *blocks):
    """One worker's blocks as one training problem; sample weights scaled to mean 1 overall."""
    Xs, ys, sws = zip(*blocks)
    if len(blocks) == 1:
        X, y = Xs[0], ys[0]
    elif sp.issparse(Xs[0]):
        X, y = sp.vstack(Xs, format="csr"), np.concatenate(ys)
    else:
        X, y = np.concatenate(Xs), np.concatenate(ys)
    sw = np.concatenate(sws)
    sw *= sw.dtype.type(scale)
    return _solver.Problem(X=X, y=y, sw=sw, train_idx=np.arange(X.shape[0], dtype=np.int64))


def _shard_gradient(problem, coef, codes, backend_name, fraction):
    """``fraction`` times the shard's mean gradient (``fraction`` = its share of the samples)."""
    grad, loss_sum = problem.full_gradient(_worker_backend(backend_name), coef, codes)
    return _Sums((fraction * grad.astype(np.float64),), float(loss_sum))


def _shard_step(problem, codes, hp, batch_size, backend_name):
    """The ``learning_rate="auto"`` step of one shard (:mod:`fastgd._step_size`)."""
    from fastgd import _step_size

    return _step_size.auto_learning_rate(problem.X, problem.sw, problem.train_idx, codes, hp,
                                         min(batch_size, problem.X.shape[0]), _worker_backend(backend_name))


def _auto_step(shards, n, settings, backend_name):
    """``learning_rate="auto"`` on sharded data, computed where the shards are.

    The step is ``1 / L`` for a smoothness ``L`` (the Gram matrix's top eigenvalue, or the
    mini-batch bound) that is affine in the shards' own. The whole data's Gram matrix is the
    sample-weighted mean of the shards' Gram matrices, and the top eigenvalue is convex, so the
    weighted mean of the shards' ``L`` bounds the whole data's from above (up to the power
    iteration's 1 % tolerance): the step is the weighted harmonic mean of the shards' steps, a
    safe step, exactly the local one with a single shard."""
    parts = [shards.submit(_shard_step, i, settings.codes, settings.hp, settings.batch_size, backend_name)
             for i in range(len(shards.sizes))]
    steps = shards.values(parts)
    return 1.0 / math.fsum((n_i / n) / step for n_i, step in zip(shards.sizes, steps))


def _draw_order(n, rng, shuffle):
    """The shard's sample order for one epoch, as a local fit draws it, and the advanced stream."""
    order = np.arange(n, dtype=np.int64)
    return (rng.permutation(order) if shuffle else order), rng


def _local_steps(problem, order, lo, hi, coef, opt_state, t, codes, hp, batch_size, backend_name, fraction):
    """Run the compiled epoch kernel over ``order[lo:hi]`` from the given parameters; return them
    (and the optimizer state) times ``fraction``, the shard's weight in the average."""
    backend = _worker_backend(backend_name)
    ts = _solver.TrainState(coef=coef.copy(), opt_state=opt_state.copy(), rng=None, t=t.copy())
    K = coef.shape[1]
    grad = np.empty_like(coef)
    work = np.zeros((C.WORK_ROWS, K), dtype=coef.dtype)
    status, loss_sum = problem.epoch(backend, order[lo:hi], ts, codes, hp, batch_size, grad, work,
                                     problem.sparse_buffers(codes, hp, batch_size, K),
                                     problem.chunked_buffers(backend, batch_size, coef))
    return _Sums((fraction * ts.coef.astype(np.float64), fraction * ts.opt_state.astype(np.float64)),
                 float(loss_sum), int(status), int(ts.t[0] - t[0]))


def _predict_block(estimator, method, columns, X):
    if columns is not None:  # a DataFrame's block: give the estimator its feature names back
        import pandas as pd

        X = pd.DataFrame(X, columns=columns)
    return getattr(estimator, method)(X)


# --- where the shards live ---------------------------------------------------------------------
class _ClusterShards:
    """Shards held on the workers of a ``distributed.Client``; tasks go where the shards are.

    The blocks are split into one contiguous run of about equal rows per worker (so the model
    depends on the chunking and the number of workers, never on where blocks happened to be
    computed); each run is concatenated on the worker that already holds most of its rows."""

    def __init__(self, client, prepared):
        self.client = client
        blocks = client.compute(prepared)
        self._raise_errors(blocks)
        weights = client.gather([client.submit(_weight_sum, b, pure=False) for b in blocks])
        self.sw_total = math.fsum(weights)
        self._blocks = blocks
        self.sizes = None
        self.futures = []

    def build(self, scale, block_rows):
        workers = sorted(self.client.nthreads())
        groups = _contiguous_runs(block_rows, min(len(workers), len(block_rows)))
        holders = self.client.who_has(self._blocks)
        self.futures, taken = [], set()
        for idx in groups:
            rows_held = {w: 0 for w in workers}
            for i in idx:
                for w in holders[self._blocks[i].key]:
                    rows_held[w] = rows_held.get(w, 0) + block_rows[i]
            free = [w for w in rows_held if w not in taken] or list(rows_held)
            home = max(free, key=lambda w: (rows_held[w], w))
            taken.add(home)
            self.futures.append(self.client.submit(_make_shard, scale, *[self._blocks[i] for i in idx],
                                                   workers=[home], allow_other_workers=True, pure=False))
        self.sizes = [int(sum(block_rows[i] for i in idx)) for idx in groups]
        self._raise_errors(self.futures)
        self._blocks = None  # the shards now hold the data (the scheduler keeps their lineage)

    def _raise_errors(self, futures):
        from distributed import wait

        wait(futures)
        for f in futures:
            if f.status == "error":
                f.result()  # re-raises the worker's exception (e.g. a validation error)

    def submit(self, fn, i, *args):
        return self.client.submit(fn, self.futures[i], *args, pure=False)

    def draw_orders(self, rngs, shuffles):
        draws = [self.client.submit(_draw_order, n, rng, shuffle, pure=False)
                 for n, rng, shuffle in zip(self.sizes, rngs, shuffles)]
        orders = [self.client.submit(operator.getitem, d, 0, pure=False) for d in draws]
        streams = self.client.gather([self.client.submit(operator.getitem, d, 1, pure=False) for d in draws])
        return orders, streams

    def values(self, parts):
        return self.client.gather(parts)

    def total(self, parts):
        while len(parts) > REDUCE_FAN_IN:
            parts = [self.client.submit(_add_in_order, *parts[i:i + REDUCE_FAN_IN], pure=False)
                     for i in range(0, len(parts), REDUCE_FAN_IN)]
        return _add_in_order(*self.client.gather(parts))

    def close(self):
        self.futures = []  # released: the workers drop the shards


class _LocalShards:
    """Without a client: Dask's local scheduler computes the blocks, and they form one shard."""

    def __init__(self, prepared):
        import dask

        self._blocks = dask.compute(*prepared)
        self.sw_total = math.fsum(_weight_sum(b) for b in self._blocks)
        self.sizes = None
        self.shards = []

    def build(self, scale, block_rows):
        self.shards = [_make_shard(scale, *self._blocks)]
        self.sizes = [self.shards[0].X.shape[0]]
        self._blocks = None

    def submit(self, fn, i, *args):
        import dask

        return dask.delayed(fn, pure=False)(self.shards[i], *args)

    def draw_orders(self, rngs, shuffles):
        draws = [_draw_order(n, rng, s) for n, rng, s in zip(self.sizes, rngs, shuffles)]
        return [d[0] for d in draws], [d[1] for d in draws]

    def values(self, parts):
        import dask

        return list(dask.compute(*parts))

    def total(self, parts):
        import dask

        return _add_in_order(*dask.compute(*parts))

    def close(self):
        self.shards = []


def _contiguous_runs(block_rows, n_runs):
    """Block indices split into ``n_runs`` contiguous runs of about equal rows (none empty)."""
    total = float(sum(block_rows))
    runs = [[] for _ in range(n_runs)]
    start = 0
    for i, rows in enumerate(block_rows):
        runs[min(n_runs - 1, int((start + rows / 2) * n_runs / total))].append(i)
        start += rows
    return [run for run in runs if run]


def _active_client():
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:  # no client: Dask's local scheduler
        return None


# --- the driver's view of sharded data --------------------------------------------------------
class ShardedProblem:
    """Training data held in shards on Dask workers, as the epoch driver sees it.

    It offers what :func:`fastgd._solver.train` asks of a :class:`fastgd._solver.Problem`:
    ``train_idx`` (only its length is used: the samples are never indexed on the client), ``X``
    (None: no data on the client),
    ``epoch`` and ``full_gradient`` (run on the workers), and no kernel scratch buffers.

    Parameters
    ----------
    shards : the shards' placement (distributed or local)
    backend_name : str
        The backend every worker runs (resolved once on the client, so that workers whose
        environment differs still run the same kernels).
    shuffle : bool
        Shuffle each shard's samples every epoch (SGD with averaging).
    rngs : list of numpy.random.Generator
        One random stream per shard; the first is the estimator's own.
    sync : int or None
        Optimizer steps between two averages; None averages once per epoch.
    """

    # no data on the client: the driver's sparse scratch and O(nnz) rollback do not apply
    X = None

    def __init__(self, shards, backend_name, shuffle, rngs, sync):
        self.shards = shards
        self.n = int(sum(shards.sizes))
        self.train_idx = range(self.n)
        self.backend_name = backend_name
        self.shuffle = shuffle
        self.rngs = rngs
        self.sync = sync

    def sparse_buffers(self, *args, **kwargs):
        return None  # each worker makes its own

    def chunked_buffers(self, *args, **kwargs):
        return None

    def full_gradient(self, backend, coef, codes, hp=None):
        """Mean weighted gradient over all shards (a fixed-order sum of the shards' shares), and
        the weighted loss sum. The workers run ``backend_name``'s kernels (``backend`` is the
        client's, unused)."""
        parts = [self.shards.submit(_shard_gradient, i, coef, codes, self.backend_name, n_i / self.n)
                 for i, n_i in enumerate(self.shards.sizes)]
        total = self.shards.total(parts)
        return total.arrays[0].astype(coef.dtype), total.loss_sum

    def epoch(self, backend, order, ts, codes, hp, batch_size, grad, work, sparse_buffers=None,
              chunked_buffers=None):
        """One epoch: a full-batch step from the reduced gradient, or a pass of averaged local SGD.
        ``order`` and the scratch buffers of the local driver are not used."""
        if batch_size >= self.n:
            return self._gradient_step(ts, codes, hp)
        return self._averaged_pass(ts, codes, hp, batch_size)

    def _gradient_step(self, ts, codes, hp):
        grad, loss_sum = self.full_gradient(None, ts.coef, codes)
        if not np.isfinite(loss_sum):
            return C.STATUS_NONFINITE, loss_sum
        with np.errstate(over="ignore", invalid="ignore"):
            _reference.apply_step(ts.coef, grad, ts.opt_state, ts.t, codes, hp, optim.decode(codes, hp))
        if not np.all(np.isfinite(ts.coef)):
            return C.STATUS_NONFINITE, loss_sum
        return C.STATUS_OK, loss_sum

    def _averaged_pass(self, ts, codes, hp, batch_size):
        sizes = self.shards.sizes
        orders, streams = self.shards.draw_orders(self.rngs, [self.shuffle and batch_size < n for n in sizes])
        for rng, advanced in zip(self.rngs, streams):
            rng.bit_generator.state = advanced.bit_generator.state
        per_round = max(sizes) if self.sync is None else self.sync * batch_size
        loss_sum = 0.0
        for lo in range(0, max(sizes), per_round):
            counts = [max(0, min(n, lo + per_round) - lo) for n in sizes]
            n_round = sum(counts)
            parts = [self.shards.submit(_local_steps, i, orders[i], lo, lo + counts[i], ts.coef, ts.opt_state, ts.t,
                                        codes, hp, batch_size, self.backend_name, counts[i] / n_round)
                     for i in range(len(sizes)) if counts[i] > 0]
            total = self.shards.total(parts)
            loss_sum += total.loss_sum
            if total.status != C.STATUS_OK:
                return total.status, loss_sum
            ts.coef[...] = total.arrays[0]
            ts.opt_state[...] = total.arrays[1]
            ts.t[0] += total.steps
        return C.STATUS_OK, loss_sum


# --- fit -----------------------------------------------------------------------------------------
def _as_dask_array(obj, name):
    """A Dask array of known chunk sizes from a Dask array, DataFrame or Series."""
    import dask.array as da

    if hasattr(obj, "to_dask_array"):  # a Dask DataFrame or Series: the lengths take one pass
        obj = obj.to_dask_array(lengths=True)
    elif not isinstance(obj, da.Array):
        obj = da.asarray(obj)
    if any(math.isnan(c) for c in obj.chunks[0]):
        raise ValueError(
            f"{name} is a Dask array of unknown chunk sizes (for example the result of boolean indexing); "
            f"call {name}.compute_chunk_sizes() (or pass lengths=True to to_dask_array) before fitting."
        )
    return obj


def _dask_inputs(X, y, sample_weight):
    """Row-aligned Dask arrays: one chunk of columns; y and sample_weight chunked like X."""
    import dask.array as da

    X_is_frame = hasattr(X, "columns")
    X = _as_dask_array(X, "X")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array, got a {X.ndim}D Dask array instead; reshape X to (n_samples, n_features).")
    X = X.rechunk({1: -1})
    rows = X.chunks[0]
    arrays = [X]
    for name, value in (("y", y), ("sample_weight", sample_weight)):
        if value is None:
            arrays.append(None)
            continue
        if not is_dask_collection(value):
            value = np.asarray(value)
            if value.shape[:1] == (X.shape[0],):
                value = da.from_array(value, chunks=(rows,) + value.shape[1:])
        value = _as_dask_array(value, name)
        if value.shape[0] != X.shape[0]:
            lengths = [X.shape[0], value.shape[0]]
            raise ValueError(f"Found input variables with inconsistent numbers of samples: {lengths}")
        if value.chunks[0] != rows:  # the same rows, split differently: align the blocks with X's
            value = value.rechunk({0: rows})
        if value.ndim == 2:
            value = value.rechunk({1: -1})
        arrays.append(value)
    return (*arrays, X_is_frame)


def _target_metadata(estimator, y, dtype, p):
    """Let the estimator's target hook see the targets' metadata (the classes, the number of
    outputs) as a local fit would, computed on the workers; returns the attributes it set and
    the class weights resolved for the whole data set (``"balanced"`` needs global counts)."""
    import dask.array as da
    from sklearn.base import is_classifier

    before = dict(estimator.__dict__)
    class_weight = None
    if is_classifier(estimator):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"y should be a 1d array, got a Dask array of shape {y.shape} instead.")
        classes, counts = da.compute(*da.unique(y, return_counts=True))
        if classes.dtype.kind in "fc":  # NaN / inf labels: the local fit's message, before the label checks
            from sklearn.utils.validation import _assert_all_finite

            _assert_all_finite(classes, input_name="y", estimator_name=type(estimator).__name__)
        probe_y = classes
        if getattr(estimator, "class_weight", None) == "balanced":
            weights = y.shape[0] / (len(classes) * counts.astype(np.float64))
            class_weight = dict(zip(classes.tolist(), weights))
    else:
        probe_y = np.zeros((0,) + y.shape[1:], dtype=np.float64)
    estimator._validate_targets(np.zeros((0, p), dtype=dtype), probe_y, True, None)
    return {k: v for k, v in estimator.__dict__.items() if k not in before or before[k] is not v}, class_weight


def _block_estimator(estimator, metadata, class_weight):
    """A light copy of the estimator for the workers' validation: parameters and target
    metadata only (no fitted parameters travel with every block)."""
    from sklearn.base import clone

    worker = clone(estimator)
    worker.__dict__.update(metadata)
    if class_weight is not None:
        worker.class_weight = class_weight
    return worker


def fit(estimator, X, y, sample_weight=None, *, sync=None, incremental=False):
    """Fit ``estimator`` (a fastgd estimator) on Dask collections, on the active cluster.

    The estimators call this from ``fit`` when given Dask input; call it directly to choose
    ``sync``.

    Parameters
    ----------
    estimator : fastgd.LinearRegression, fastgd.LogisticRegression, or another ``BaseGD``
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
    y : dask.array.Array, dask.dataframe.Series or array-like of shape (n_samples,) or (n_samples, n_targets)
    sample_weight : dask.array.Array, dask.dataframe.Series or array-like of shape (n_samples,), default=None
    sync : int or None, default=None
        Mini-batch / per-sample SGD only: optimizer steps each worker takes between two
        averages of the parameters and optimizer state; None averages once per epoch.
    incremental : bool, default=False
        Set by ``partial_fit``: not supported on Dask input.

    Returns
    -------
    estimator : the fitted estimator
    """
    from sklearn.utils.validation import _check_feature_names

    name = type(estimator).__name__
    if incremental:
        raise ValueError(
            f"{name}.partial_fit does not take Dask collections; call fit, or stream the blocks with "
            "dask_ml.wrappers.Incremental (which calls partial_fit on one NumPy block at a time)."
        )
    if estimator.early_stopping:
        raise ValueError(f"{name}(early_stopping=True) is not supported on Dask input; use tol or grad_tol.")
    if sync is not None and (not isinstance(sync, int) or isinstance(sync, bool) or sync < 1):
        raise ValueError(f"sync must be a positive number of optimizer steps or None; got {sync!r}.")
    if y is None:
        raise ValueError(f"{name} requires y to be passed, but the target y is None.")

    Xd, yd, swd, X_is_frame = _dask_inputs(X, y, sample_weight)
    n, p = Xd.shape
    if X_is_frame:
        _check_feature_names(estimator, X._meta, reset=True)  # the (empty) pandas frame of its columns
    elif hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    dtype = np.dtype(np.float32) if Xd.dtype == np.float32 else np.dtype(np.float64)
    if n < 1 or p < 1:
        raise ValueError(f"Found array with {n} sample(s) and {p} feature(s) while a minimum of 1 is required.")
    metadata, class_weight = _target_metadata(estimator, yd, dtype, p)
    estimator.n_features_in_ = p
    worker_estimator = _block_estimator(estimator, metadata, class_weight)

    import dask

    x_blocks = Xd.to_delayed().ravel()
    y_blocks = yd.to_delayed().ravel()
    sw_blocks = swd.to_delayed().ravel() if swd is not None else [None] * len(x_blocks)
    prepare = dask.delayed(_prepare_block, pure=True)
    prepared = [prepare(worker_estimator, dtype, xb, yb, swb) for xb, yb, swb in zip(x_blocks, y_blocks, sw_blocks)]
    client = _active_client()
    shards = _ClusterShards(client, prepared) if client is not None else _LocalShards(prepared)
    try:
        if not shards.sw_total > 0:
            raise ValueError("sample_weight sums to zero over the training samples; give some samples a positive weight.")
        shards.build(n / shards.sw_total, Xd.chunks[0])
        return _train(estimator, shards, n, p, dtype, sync)
    finally:
        shards.close()


def _train(estimator, shards, n, p, dtype, sync):
    optimizer = optim.get_optimizer(estimator.optimizer)
    K = estimator._n_outputs
    from fastgd.linear_model._base import make_rng

    rng = make_rng(estimator.random_state)
    fitted = hasattr(estimator, "_train_state")
    if estimator.warm_start and fitted and estimator._train_state.coef.shape == (p + 1, K):
        coef = estimator._train_state.coef.astype(dtype, copy=True)
    else:
        coef = estimator._init_coef(p, K, dtype, rng)
    ts = _solver.TrainState(coef=coef, opt_state=optimizer.init_state(coef.shape, dtype), rng=rng)
    batch_size = estimator._resolved_batch_size(n)  # batch_size="auto" is decided on the whole data
    full_batch = batch_size >= n
    # The schedule's clock runs on the steps of one worker: a horizon (cosine, polynomial) is
    # set from the largest shard's steps per epoch, as a local fit sets it from its own.
    requested, estimator.batch_size = estimator.batch_size, (None if full_batch else batch_size)
    try:
        settings = estimator._settings(optimizer, n if full_batch else max(shards.sizes), estimator._loss_code,
                                       None)
    finally:
        estimator.batch_size = requested
    if estimator.learning_rate == "auto":
        ts.learning_rate = _auto_step(shards, n, settings, get_backend(estimator.backend).name)
        ts.lr_history.append((0, ts.learning_rate, "auto"))
        settings.hp[C.H_LR] = ts.learning_rate
    else:
        ts.learning_rate = float(estimator.learning_rate)
    if settings.n_jobs > 1:
        warnings.warn("n_jobs is ignored on Dask input: the workers train in parallel.", UserWarning, stacklevel=4)
    # The problem draws the sample orders itself (on the workers): the driver must not.
    problem = ShardedProblem(shards, get_backend(estimator.backend).name, settings.shuffle,
                             [ts.rng] + list(ts.rng.spawn(len(shards.sizes) - 1)), sync)
    settings = replace(settings, shuffle=False, n_jobs=1)
    backend = get_backend(estimator.backend)
    try:
        converged = _solver.train(backend, problem, ts, settings, estimator.max_iter)
    except DivergenceError:
        estimator._publish(ts, dtype, settings)
        raise
    _solver.finish(ts, settings, converged, estimator.max_iter, type(estimator).__name__)
    estimator._publish(ts, dtype, settings)
    return estimator


# --- prediction ---------------------------------------------------------------------------------
def predict_blockwise(estimator, method, X):
    """``estimator.<method>(X)`` for a Dask array or DataFrame ``X``: a lazy Dask array with X's
    row chunks, each block computed by the (local) method on the worker that holds it."""
    import functools

    columns = None
    if hasattr(X, "columns"):
        columns = list(X.columns) if hasattr(estimator, "feature_names_in_") else None
        X = X.to_dask_array()
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array, got a {X.ndim}D Dask array instead; reshape X to (n_samples, n_features).")
    X = X.rechunk({1: -1})
    # One row through the local method: checks the number of features (with the local error)
    # and gives the output's dtype and columns.
    probe = np.zeros((1, X.shape[1]), dtype=X.dtype if np.issubdtype(X.dtype, np.number) else np.float64)
    sample = _predict_block(estimator, method, columns, probe)
    fn = functools.partial(_predict_block, estimator, method, columns)
    if sample.ndim == 1:
        return X.map_blocks(fn, drop_axis=1, dtype=sample.dtype, meta=np.empty((0,), dtype=sample.dtype))
    return X.map_blocks(fn, chunks=(X.chunks[0], (sample.shape[1],)), dtype=sample.dtype,
                        meta=np.empty((0, 0), dtype=sample.dtype))
