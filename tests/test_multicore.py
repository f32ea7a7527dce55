"""Multi-core gradient accumulation: same mathematics, same bits whatever the thread count."""

import contextlib
import os
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from fastgd import LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd._backends import available, get_backend

COMPILED = ["numba"] + (["cython"] if available("cython") else [])


@pytest.fixture(scope="module")
def big():
    # b * p * K = 3000 * 50 >= CHUNKED_MIN_WORK: full batches take the chunked kernel.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 50))
    y = X @ rng.standard_normal(50) + rng.standard_normal(3000)
    assert 3000 * 50 >= C.CHUNKED_MIN_WORK
    return X, y


def _fit(est, X, y, **kw):
    params = dict(max_iter=3, tol=None, random_state=0, penalty="l2", learning_rate=0.01)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est(**params).fit(X, y)


@pytest.mark.parametrize("backend", COMPILED)
def test_large_batches_use_the_chunked_kernel(monkeypatch, big, backend):
    # The driver looks the kernel up on the backend module the registry returns (for Cython,
    # the package that re-exports the extension's functions).
    module = get_backend(backend)
    calls = []
    original = module.epoch_dense_chunked
    monkeypatch.setattr(module, "epoch_dense_chunked", lambda *a: calls.append(a[9]) or original(*a))
    _fit(LinearRegression, *big, backend=backend, batch_size=None)
    assert calls == [3000] * 3
    calls.clear()
    _fit(LinearRegression, *big, backend=backend, batch_size=32)  # small batches stay serial
    assert calls == []


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
@pytest.mark.parametrize("batch_size", [None, 2900])
def test_chunked_kernel_equals_reference(big, optimizer, batch_size, backend):
    X, y = big
    for est, target in [(LinearRegression, y), (LogisticRegression, y > 0), (LogisticRegression, np.digitize(y, [-2, 2]))]:
        kw = dict(optimizer=optimizer, batch_size=batch_size, clip_norm=5.0)
        ref = _fit(est, X, target, backend="numpy", **kw)
        got = _fit(est, X, target, backend=backend, **kw)
        assert_allclose(got.coef_, ref.coef_, rtol=1e-10, atol=1e-14)
        assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-10)


def _chunk_threads(backend):
    return get_backend(backend)._chunk_threads if backend == "numba" else _cython_kernels()._chunk_threads


def _cython_kernels():
    from fastgd._backends._cython import _kernels

    return _kernels


def _max_threads(backend):
    if backend == "numba":
        import numba

        return numba.config.NUMBA_NUM_THREADS
    return 4  # OpenMP runs more threads than cores when asked: oversubscribed, some run slow


def _run_with_threads(backend, n, fn):
    """``fn()`` with the backend's parallel loops limited to ``n`` threads."""
    if backend == "numba":
        import numba

        before = numba.get_num_threads()
        try:
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            return fn()
        finally:
            numba.set_num_threads(before)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="openmp"):
        openmp, _ = _cython_kernels()._chunk_threads()
        if not openmp:
            pytest.skip("the Cython extension was built without OpenMP")
        return fn()


@pytest.mark.parametrize("backend", COMPILED)
def test_every_thread_takes_slices(backend):
    # Each slice takes 20 ms: the n threads asked for all take part, and no others.
    for n in sorted({1, 2, _max_threads(backend)}):
        _, ids = _run_with_threads(backend, n, lambda: _chunk_threads(backend)([20_000] * C.N_CHUNKS))
        assert sorted(set(ids)) == list(range(min(n, C.N_CHUNKS)))


@pytest.mark.parametrize("backend", COMPILED)
def test_a_slow_thread_takes_fewer_slices(backend):
    # Slice 0 stands for a thread slowed down (200 ms); the others take 1 ms. A fixed, equal
    # share would leave N_CHUNKS / 2 slices to that thread; handed out as threads are free,
    # the other thread takes the rest while the slow one is busy.
    if _max_threads(backend) < 2:
        pytest.skip("one thread only")
    _, ids = _run_with_threads(backend, 2, lambda: _chunk_threads(backend)([200_000] + [1_000] * (C.N_CHUNKS - 1)))
    assert ids.count(ids[0]) < C.N_CHUNKS // 2
    assert set(ids) == {0, 1}


@contextlib.contextmanager
def _numpy_busy_in_another_thread():
    """A thread calling NumPy's BLAS in a loop (its own worker threads spin between calls)
    while the block runs: fastgd's threads share their cores and some run slow."""
    import threading

    stop = threading.Event()
    A = np.random.default_rng(3).standard_normal((400, 400))

    def work():
        while not stop.is_set():
            A @ A

    thread = threading.Thread(target=work)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("backend", COMPILED)
def test_results_do_not_depend_on_the_thread_count(big, backend):
    X, y = big
    fit = lambda: _fit(LogisticRegression, X, y > 0, backend=backend, optimizer="adam")  # noqa: E731
    coef = np.random.default_rng(1).standard_normal((51, 1))
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    codes[C.C_LOSS] = C.LOSS_LOG

    def gradient():
        grad = np.empty_like(coef)
        loss = get_backend(backend).full_gradient_dense(X, (y > 0).astype(float).reshape(-1, 1), np.ones(3000),
                                                        coef, codes, grad, np.zeros((C.WORK_ROWS, 1)))
        return grad, loss

    one, (g1, l1) = _run_with_threads(backend, 1, fit), _run_with_threads(backend, 1, gradient)
    runs = [(n, False) for n in sorted({2, _max_threads(backend)})] + [(2, True)]
    for n, slowed in runs:
        with _numpy_busy_in_another_thread() if slowed else contextlib.nullcontext():
            other, (g, loss) = _run_with_threads(backend, n, fit), _run_with_threads(backend, n, gradient)
        # the fit and the full-batch gradient, bit for bit
        assert_array_equal(other.coef_, one.coef_)
        assert other.loss_curve_ == one.loss_curve_
        assert_array_equal(g, g1)
        assert loss == l1


@pytest.mark.parametrize("backend", COMPILED)
def test_full_gradient_matches_numpy(big, backend):
    X, y = big
    coef = np.random.default_rng(1).standard_normal((51, 1))
    grad = np.empty_like(coef)
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    loss = get_backend(backend).full_gradient_dense(X, y.reshape(-1, 1), np.ones(3000), coef, codes, grad,
                                                    np.zeros((C.WORK_ROWS, 1)))
    r = X @ coef[:-1, 0] + coef[-1, 0] - y
    assert_allclose(grad[:-1, 0], 2 * X.T @ r / 3000, rtol=1e-10)
    assert_allclose(grad[-1, 0], 2 * r.mean(), rtol=1e-10)
    assert_allclose(loss, r @ r, rtol=1e-12)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chunked_epoch_equals_serial_epoch(big, backend, dtype):
    # The same epoch through both kernels: only the order of the gradient sum differs.
    X, y = big
    X, Y = X.astype(dtype), np.stack([y, -y, 0.5 * y], axis=1).astype(dtype)
    n, p = X.shape
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    codes[C.C_OPTIMIZER] = C.OPT_ADAM
    hp = np.zeros(C.N_HP)
    hp[[C.H_LR, C.H_LR_SCALE, C.H_BETA1, C.H_BETA2, C.H_EPS, C.H_L2]] = [0.01, 1.0, 0.9, 0.999, 1e-8, 1e-3]
    order = np.random.default_rng(2).permutation(n).astype(np.int64)
    kernels = get_backend(backend)
    out = []
    for chunked in (False, True):
        coef = np.zeros((p + 1, 3), dtype)
        state = np.zeros((2, p + 1, 3), dtype)
        t = np.zeros(1, np.int64)
        args = (X, Y, np.ones(n, dtype), order, coef, state, t, codes, hp, 1000, np.empty_like(coef),
                np.zeros((C.WORK_ROWS, 3), dtype))
        if chunked:
            status, loss = kernels.epoch_dense_chunked(
                *args, np.zeros((C.N_CHUNKS, p + 1, 3), dtype), np.zeros((C.N_CHUNKS, C.WORK_ROWS, 3), dtype),
                np.zeros(C.N_CHUNKS))
        else:
            status, loss = kernels.epoch_dense(*args)
        assert status == C.STATUS_OK and t[0] == 3
        out.append((coef, loss))
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    assert_allclose(out[1][0], out[0][0], rtol=rtol, atol=rtol * 1e-2)
    assert_allclose(out[1][1], out[0][1], rtol=rtol)


# --- independent outputs in parallel threads (LinearRegression(n_jobs=...)) ------------------
@pytest.fixture(scope="module")
def multi_output():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((120, 6))
    Y = np.column_stack([X @ rng.standard_normal(6) + 0.1 * rng.standard_normal(120) for _ in range(3)])
    return X, Y, rng.random(120) + 0.5


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam", "rmsprop"])
@pytest.mark.parametrize("batch_size", [1, 7, None])
@pytest.mark.parametrize("sparse", [False, True])
def test_split_outputs_equal_single_output_fits_bit_for_bit(multi_output, backend, optimizer, batch_size, sparse):
    X, Y, sw = multi_output
    Xin = sp.csr_matrix(X * (np.abs(X) > 0.5)) if sparse else X
    kw = dict(optimizer=optimizer, batch_size=batch_size, penalty="elasticnet", alpha=0.01, backend=backend,
              max_iter=3, tol=None, random_state=0, learning_rate=0.01)
    split = LinearRegression(n_jobs=2, **kw).fit(Xin, Y, sample_weight=sw)
    joint = LinearRegression(**kw).fit(Xin, Y, sample_weight=sw)
    for k in range(Y.shape[1]):
        # each output computes exactly as a single-output fit on its column
        alone = LinearRegression(**kw).fit(Xin, Y[:, k], sample_weight=sw)
        assert_array_equal(split.coef_[k], alone.coef_)
        assert split.intercept_[k] == alone.intercept_
    # and the one-call multi-output kernel agrees up to rounding
    assert_allclose(split.coef_, joint.coef_, rtol=1e-10, atol=1e-14)
    assert_allclose(split.loss_curve_, joint.loss_curve_, rtol=1e-10)
    assert split.t_ == joint.t_


def _spy_on_epochs(monkeypatch, backend_name, barrier=None):
    """Record (thread, n_outputs) of every dense epoch call; optionally make each call wait
    at ``barrier`` first (so the test fails unless calls are in flight at the same time)."""
    import threading

    backend = get_backend(backend_name)
    calls = []
    original = backend.epoch_dense

    def spy(*args):
        calls.append((threading.get_ident(), args[4].shape[1]))
        if barrier is not None:
            barrier.wait()
        return original(*args)

    monkeypatch.setattr(backend, "epoch_dense", spy)
    return calls


@pytest.mark.parametrize("backend", ["numpy"] + COMPILED)
def test_outputs_run_as_single_output_kernels_in_parallel_threads(monkeypatch, multi_output, backend):
    import threading

    X, Y, _ = multi_output
    # Each epoch's two output calls must meet at the barrier: they can only if two threads
    # run them at the same time (one thread would wait forever; the timeout fails the test).
    calls = _spy_on_epochs(monkeypatch, backend, threading.Barrier(2, timeout=30))
    LinearRegression(n_jobs=2, backend=backend, max_iter=2, tol=None, batch_size=4).fit(X, Y[:, :2])
    assert len(calls) == 2 * 2 and all(K == 1 for _, K in calls)
    assert len({ident for ident, _ in calls}) == 2


@pytest.mark.parametrize("kw", [dict(clip_norm=1.0), dict(n_jobs=None), dict(n_jobs=1)])
def test_outputs_stay_in_one_kernel_call_when_coupled_or_not_asked(monkeypatch, multi_output, kw):
    X, Y, _ = multi_output
    calls = _spy_on_epochs(monkeypatch, "numba")
    params = dict(n_jobs=2, backend="numba", max_iter=2, tol=None, batch_size=4)
    params.update(kw)
    LinearRegression(**params).fit(X, Y)
    assert [K for _, K in calls] == [3, 3]


def test_n_jobs_is_validated(multi_output):
    X, Y, _ = multi_output
    with pytest.raises(ValueError, match="n_jobs"):
        LinearRegression(n_jobs=0).fit(X, Y)


# --- idle OpenMP threads spin briefly (fastgd._backends._openmp_wait) -------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LOAD_BACKEND = """
import os, sys
from fastgd._backends import _openmp_wait, get_backend
get_backend(sys.argv[1])
print(_openmp_wait.outcome)
print(os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"))
"""


def _load_backend_in_fresh_process(backend, **env_extra):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(PYTHONPATH=ROOT, OMP_DISPLAY_ENV="verbose", **env_extra)
    out = subprocess.run([sys.executable, "-c", _LOAD_BACKEND, backend], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    outcome, env_after = out.stdout.split("\n")[:2]
    if outcome == "no libgomp":
        pytest.skip("no GNU OpenMP runtime here")
    return outcome, env_after, out.stderr  # libgomp prints its settings on stderr as it loads


@pytest.mark.parametrize("backend", COMPILED)
def test_fastgd_threads_spin_briefly_without_changing_the_environment(backend):
    outcome, env_after, settings = _load_backend_in_fresh_process(backend)
    assert outcome == "limited"
    # the OpenMP runtime was initialised with the short spin ...
    from fastgd._backends._openmp_wait import SPIN_COUNT

    assert f"GOMP_SPINCOUNT = '{SPIN_COUNT}'" in settings
    # ... and the environment the process (and its children) sees is the user's
    assert env_after == "None None"


@pytest.mark.parametrize("setting", [dict(OMP_WAIT_POLICY="active"), dict(GOMP_SPINCOUNT="123")])
def test_a_users_wait_policy_is_left_alone(setting):
    outcome, env_after, settings = _load_backend_in_fresh_process(COMPILED[-1], **setting)
    assert outcome == "user setting"
    assert env_after == f"{setting.get('GOMP_SPINCOUNT')} {setting.get('OMP_WAIT_POLICY')}"
    assert "GOMP_SPINCOUNT = '10000'" not in settings
    if "GOMP_SPINCOUNT" in setting:
        assert "GOMP_SPINCOUNT = '123'" in settings


_FIRST_FIT_IS_FULL_BATCH = """
import sys
import numpy as np
from fastgd import LinearRegression
rng = np.random.default_rng(0)
X = rng.standard_normal((20_000, 50))
y = X @ rng.standard_normal(50)
m = LinearRegression(optimizer="sgd", learning_rate=0.01, batch_size=None, max_iter=2, tol=None,
                     backend=sys.argv[1]).fit(X, y)
print(m.n_iter_)
"""


@pytest.mark.parametrize("backend", COMPILED)
def test_a_new_process_whose_first_fit_runs_the_multi_core_epoch(backend):
    """The first fastgd call of a fresh process is a full-batch epoch on all cores (kernels
    from the on-disk cache where the suite filled it): Numba's epoch is not a parallel kernel
    itself but runs one inside, and once called address 0 when no parallel kernel had started
    the threading layer yet (a segfault)."""
    import subprocess
    import sys

    assert 20_000 * 51 >= C.CHUNKED_MIN_WORK  # the multi-core path
    out = subprocess.run([sys.executable, "-c", _FIRST_FIT_IS_FULL_BATCH, backend], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=ROOT), cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["2"]
