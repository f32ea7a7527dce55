"""Sparse (CSR) input: same model as dense, O(nnz) work per step, no copies, lazy options."""

import io
import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from fastgd import LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd._backends import available, get_backend
from fastgd.datasets import dump_svmlight, load_svmlight, make_sparse_classification
from fastgd.optim import OPTIMIZER_NAMES
from fastgd.schedules import StepDecay, Warmup

COMPILED = ["numba"] + (["cython"] if available("cython") else [])
BACKENDS = ["numpy"] + COMPILED
OPTIMIZERS = list(OPTIMIZER_NAMES)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 12)) * (rng.random((30, 12)) < 0.3)
    y = X @ rng.standard_normal(12) + 0.1 * rng.standard_normal(30)
    return X, y, (y > 0).astype(int), np.digitize(y, [-1, 0, 1])


def _fit(est, X, y, **kw):
    params = dict(max_iter=3, tol=None, random_state=0, learning_rate=0.05, alpha=0.05)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est(**params).fit(X, y)


def _targets(data):
    X, yr, yb, ym = data
    return [(LinearRegression, yr), (LogisticRegression, yb), (LogisticRegression, ym)]


# Every optimizer x penalty x batch size on each backend (the exact and lazy-exact paths
# both appear: sgd / adagrad / rmsprop without L2 are lazy, the others step every coordinate).
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_csr_equals_dense(data, backend, optimizer):
    X = data[0]
    for (est, y), penalty, bs in itertools.product(_targets(data), [None, "l2", "l1", "elasticnet"], [1, 7, None]):
        kw = dict(optimizer=optimizer, penalty=penalty, batch_size=bs, backend=backend,
                  schedule=Warmup(StepDecay(step_size=3, unit="step"), warmup=4))
        dense = _fit(est, X, y, **kw)
        csr = _fit(est, sp.csr_matrix(X), y, **kw)
        assert_allclose(csr.coef_, dense.coef_, rtol=1e-10, atol=1e-13)
        assert_allclose(csr.intercept_, dense.intercept_, rtol=1e-10, atol=1e-13)
        assert_allclose(csr.loss_curve_, dense.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_compiled_csr_equals_reference(data, backend, lazy, dtype, rtol):
    Xs = sp.csr_matrix(data[0].astype(dtype))
    for (est, y), optimizer, bs in itertools.product(_targets(data), OPTIMIZERS, [1, 7]):
        kw = dict(optimizer=optimizer, penalty="elasticnet", batch_size=bs, lazy_updates=lazy, clip_norm=2.0)
        ref = _fit(est, Xs, y, backend="numpy", **kw)
        got = _fit(est, Xs, y, backend=backend, **kw)
        assert got.coef_.dtype == dtype
        assert_allclose(got.coef_, ref.coef_, rtol=rtol, atol=rtol * 1e-3)
        assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=rtol)


def test_lazy_option_is_exact_where_a_closed_form_exists(data):
    Xs = sp.csr_matrix(data[0])
    y = data[2]
    for optimizer, penalty in [("sgd", "elasticnet"), ("adagrad", "l1"), ("rmsprop", "l1"), ("rmsprop", None)]:
        a = _fit(LogisticRegression, Xs, y, optimizer=optimizer, penalty=penalty, batch_size=1, lazy_updates=False)
        b = _fit(LogisticRegression, Xs, y, optimizer=optimizer, penalty=penalty, batch_size=1, lazy_updates=True)
        assert_array_equal(a.coef_, b.coef_)


def test_lazy_approximation_freezes_untouched_coordinates():
    # Feature 1 appears only in the first sample: with momentum, the exact path keeps moving it
    # along the decaying velocity after that sample, the lazy approximation does not.
    X = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]))
    y = np.array([1.0, 0.0, 0.0, 0.0])
    kw = dict(optimizer="momentum", batch_size=1, shuffle=False, penalty=None, max_iter=1)
    exact = _fit(LinearRegression, X, y, lazy_updates=False, **kw)
    lazy = _fit(LinearRegression, X, y, lazy_updates=True, **kw)
    first = _fit(LinearRegression, X[:1], y[:1], lazy_updates=True, **kw)
    assert lazy.coef_[1] == first.coef_[1]  # untouched after sample 0: frozen
    assert exact.coef_[1] != first.coef_[1]  # the exact path kept moving it
    v = 2 * (0.0 - 1.0)  # velocity after step 1 (the gradient of sample 0 for feature 1)
    moved = -0.05 * v * (0.9 + 0.9**2 + 0.9**3)
    assert_allclose(exact.coef_[1] - first.coef_[1], moved, rtol=1e-12)


def _kernel_args(est, X, y):
    """Kernel arrays for one epoch of ``est`` (already configured) on CSR ``X``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = [int(np.argmax(y == 0)), int(np.argmax(y == 1))]
        est.set_params(max_iter=1).fit(X[both], y[both])
    codes, hp = est._kernel_arrays(X.shape[0])
    p = X.shape[1]
    coef = np.zeros((p + 1, 1))
    state = np.zeros((C.n_slots(codes[C.C_OPTIMIZER], hp[C.H_MOMENTUM], codes[C.C_AMSGRAD]), p + 1, 1))
    y2 = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    return dict(coef=coef, state=state, codes=codes, hp=hp, y=y2)


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("optimizer,penalty,lazy", [
    ("sgd", "l2", False),  # the running-scale kernel
    ("sgd", "elasticnet", False),  # per-coordinate shrink maps
    ("rmsprop", "l1", False),  # the general kernel, lazy and exact
    ("adam", "elasticnet", True),  # the general kernel, lazy approximation
])
def test_per_sample_work_scales_with_nnz(backend, optimizer, penalty, lazy):
    n, p, nnz = 2000, 1_000_000, 20
    X, y, _ = make_sparse_classification(n, p, nnz, random_state=0)
    est = LogisticRegression(optimizer=optimizer, batch_size=1, penalty=penalty, alpha=1e-4,
                             backend=backend, lazy_updates=lazy)
    a = _kernel_args(est, X, y)
    counters = np.zeros(C.N_COUNTERS, dtype=np.int64)
    order = np.arange(n, dtype=np.int64)
    status, loss = get_backend(backend).epoch_csr(
        X.data, X.indices, X.indptr, p, a["y"], np.ones(n), order, a["coef"], a["state"],
        np.zeros(1, dtype=np.int64), a["codes"], a["hp"], 1, np.zeros_like(a["coef"]),
        np.zeros((C.WORK_ROWS, 1)), np.zeros((p, C.LAZY_FIELDS)), np.zeros((2, p + 1), dtype=np.int64), counters)
    assert status == C.STATUS_OK and np.isfinite(loss)
    # Each step updates the row's coordinates and the intercept; a dense step would touch all
    # p + 1 = 1,000,001 of them (2e9 updates for the epoch).
    assert counters[C.COUNT_UPDATES] <= n * (nnz + 1)
    # Catching up happens at most once per touched coordinate per step, plus once per
    # coordinate at the end of the epoch.
    assert counters[C.COUNT_CATCHUPS] <= n * nnz + p
    assert np.count_nonzero(a["coef"]) > 0


@pytest.mark.parametrize("backend", COMPILED)
def test_exact_dense_path_does_touch_every_coordinate(backend):
    # The contrast that makes the test above meaningful: Adam without lazy_updates is O(p).
    n, p = 50, 10_000
    X, y, _ = make_sparse_classification(n, p, 5, random_state=0)
    est = LogisticRegression(optimizer="adam", batch_size=1, backend=backend)
    a = _kernel_args(est, X, y)
    counters = np.zeros(C.N_COUNTERS, dtype=np.int64)
    get_backend(backend).epoch_csr(
        X.data, X.indices, X.indptr, p, a["y"], np.ones(n), np.arange(n, dtype=np.int64), a["coef"],
        a["state"], np.zeros(1, dtype=np.int64), a["codes"], a["hp"], 1, np.zeros_like(a["coef"]),
        np.zeros((C.WORK_ROWS, 1)), np.zeros((p, C.LAZY_FIELDS)), np.zeros((2, p + 1), dtype=np.int64), counters)
    assert counters[C.COUNT_UPDATES] == n * (p + 1)


@pytest.mark.parametrize("fmt", ["csc", "coo", "csr_array", "lil"])
def test_other_sparse_formats_are_accepted(data, fmt):
    X, y = data[0], data[2]
    Xs = sp.csr_array(X) if fmt == "csr_array" else sp.csr_matrix(X).asformat(fmt)
    ref = _fit(LogisticRegression, sp.csr_matrix(X), y)
    got = _fit(LogisticRegression, Xs, y)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-12)
    assert_allclose(got.predict_proba(Xs), ref.predict_proba(X), rtol=1e-12)
    assert_allclose(got.decision_function(Xs), ref.decision_function(X), rtol=1e-12)


@pytest.mark.parametrize("name", COMPILED)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csr_is_passed_to_the_kernel_without_copy(monkeypatch, data, dtype, index_dtype, name):
    backend = get_backend(name)
    seen = []
    original = backend.epoch_csr

    def spy(data_, indices, indptr, *args):
        seen.append((data_, indices, indptr))
        return original(data_, indices, indptr, *args)

    monkeypatch.setattr(backend, "epoch_csr", spy)
    Xs = sp.csr_matrix(data[0].astype(dtype))
    Xs.indices, Xs.indptr = Xs.indices.astype(index_dtype), Xs.indptr.astype(index_dtype)
    model = _fit(LogisticRegression, Xs, data[2], backend=name)
    assert model.coef_.dtype == dtype
    assert seen and all(i.dtype == index_dtype for _, i, _ in seen)
    assert seen and all(np.shares_memory(d, Xs.data) for d, _, _ in seen)
    assert all(np.shares_memory(i, Xs.indices) for _, i, _ in seen)


def test_user_sparse_matrix_is_not_modified(data):
    Xs = sp.csr_matrix(data[0])
    before = (Xs.data.copy(), Xs.indices.copy(), Xs.indptr.copy())
    _fit(LinearRegression, Xs, data[1], optimizer="adam", penalty="l1")
    for a, b in zip(before, (Xs.data, Xs.indices, Xs.indptr)):
        assert_array_equal(a, b)


def test_partial_fit_on_sparse_chunks_equals_fit(data):
    Xs = sp.csr_matrix(data[0])
    y = data[3]
    kw = dict(optimizer="rmsprop", batch_size=4, shuffle=False, penalty="l1", tol=None,
              learning_rate=0.05, alpha=0.05)
    full = LogisticRegression(max_iter=3, **kw).fit(Xs, y)
    inc = LogisticRegression(max_iter=3, **kw)
    for _ in range(3):
        inc.partial_fit(Xs, y, classes=np.unique(y))
    assert_allclose(inc.coef_, full.coef_, rtol=1e-12)


def test_svmlight_round_trip(tmp_path):
    X, y, _ = make_sparse_classification(200, 5000, 8, random_state=1)
    path = tmp_path / "train.svm"
    dump_svmlight(X, y, str(path))
    for dtype in (np.float32, np.float64):
        X2, y2 = load_svmlight(str(path), n_features=5000, dtype=dtype)
        assert sp.isspmatrix_csr(X2) and X2.dtype == dtype and X2.has_sorted_indices
        assert_allclose(X2.toarray(), X.toarray(), rtol=1e-6)
        assert_array_equal(y2, y)
    with pytest.raises(ValueError, match="float32 or float64"):
        load_svmlight(io.BytesIO(b"1 1:1\n"), dtype=np.int64)


def test_sparse_model_learns_the_generated_problem():
    X, y, _ = make_sparse_classification(4000, 20_000, 15, random_state=0)
    model = LogisticRegression(optimizer="adagrad", learning_rate=0.1, batch_size=16, max_iter=10,
                               penalty=None, random_state=0).fit(X[:3000], y[:3000])
    assert model.score(X[3000:], y[3000:]) > 0.8


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("lr_l2", [0.5, 1.5])
def test_lazy_map_rescaling_and_sign_flipping_shrink(backend, batch_size, lr_l2):
    # lr * l2 = 0.5 halves the cumulative shrink map every step: after ~330 steps it would
    # underflow, so the kernel must bring every coordinate up to date and restart it.
    # lr * l2 = 1.5 makes the per-step map flip signs (a = -0.5): it cannot be composed
    # lazily and is applied directly. Both must still equal the dense computation.
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 30)) * (rng.random((400, 30)) < 0.1)
    y = rng.standard_normal(400)
    kw = dict(optimizer="sgd", penalty="elasticnet", alpha=lr_l2 / 0.5 / 0.85, l1_ratio=0.15,
              learning_rate=0.5, batch_size=batch_size, max_iter=1, backend=backend)
    dense = _fit(LinearRegression, X, y, **kw)
    csr = _fit(LinearRegression, sp.csr_matrix(X), y, **kw)
    assert np.all(np.isfinite(dense.coef_))
    assert_allclose(csr.coef_, dense.coef_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shrink_map_turning_sign_flipping_within_an_epoch(backend):
    # A warm-up raises lr * l2 from 5/6 to 5/3 on the second step: the first step's shrink map
    # is deferred for feature 1, the second one flips signs and brings everything up to date
    # while stepping feature 1 (stale since the start of the epoch).
    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    y = np.ones((3, 1))
    codes = np.zeros(C.N_CODES, np.int64)
    hp = np.zeros(C.N_HP)
    hp[[C.H_LR, C.H_LR_SCALE, C.H_WARMUP, C.H_L2]] = [0.5, 1.0, 3.0, 5.0]
    coef = np.zeros((3, 1))
    get_backend(backend).epoch_csr(
        X.data, X.indices, X.indptr, 2, y, np.ones(3), np.arange(3, dtype=np.int64), coef, np.zeros((0, 3, 1)),
        np.zeros(1, np.int64), codes, hp, 1, np.zeros_like(coef), np.zeros((C.WORK_ROWS, 1)),
        np.zeros((2, C.LAZY_FIELDS)), np.zeros((2, 3), np.int64), np.zeros(C.N_COUNTERS, np.int64))
    dense = np.zeros((3, 1))
    get_backend("numpy").epoch_dense(X.toarray(), y, np.ones(3), np.arange(3, dtype=np.int64), dense,
                                     np.zeros((0, 3, 1)), np.zeros(1, np.int64), codes, hp, 1,
                                     np.zeros_like(dense), np.zeros((C.WORK_ROWS, 1)))
    assert_allclose(coef, dense, rtol=1e-12)


def test_duplicate_entries_are_summed_without_touching_the_user_matrix(data):
    X = data[0]
    csr = sp.csr_matrix(X)
    # Store every value as two entries of the same (row, column): 0.25 * v and 0.75 * v.
    indptr = 2 * csr.indptr
    indices = np.repeat(csr.indices, 2)
    values = np.repeat(csr.data, 2) * np.tile([0.25, 0.75], csr.nnz)
    dup = sp.csr_matrix((values, indices, indptr), shape=X.shape)
    assert dup.nnz == 2 * csr.nnz and not dup.has_canonical_format
    raw = (dup.data.copy(), dup.indices.copy())
    kw = dict(optimizer="sgd", penalty="l2", batch_size=1)
    assert_allclose(_fit(LinearRegression, dup, data[1], **kw).coef_,
                    _fit(LinearRegression, X, data[1], **kw).coef_, rtol=1e-10)
    assert_array_equal(dup.data, raw[0])
    assert_array_equal(dup.indices, raw[1])


SCHEDULES = ["constant", "step", "exponential", "polynomial", "cosine", "invscaling", "plateau",
             Warmup(StepDecay(step_size=3, unit="step"), warmup=4), StepDecay(step_size=1, gamma=0.7)]


# Every schedule on CSR: a schedule reaches a kernel only as the learning rate of each step,
# which the lazy paths also fold into their deferred shrink maps (lr * l2, lr * l1) and the
# running-scale kernel into its scale: each path is crossed with every schedule.
@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_every_schedule_on_csr_equals_reference(data, backend, schedule, dtype, rtol):
    Xs = sp.csr_matrix(data[0].astype(dtype))
    cases = [("sgd", "l2", 1), ("sgd", "elasticnet", 1), ("rmsprop", "l1", 1), ("adam", "l2", 7),
             ("momentum", None, None)]
    for (est, y), (optimizer, penalty, bs) in itertools.product(_targets(data), cases):
        kw = dict(optimizer=optimizer, penalty=penalty, batch_size=bs, schedule=schedule)
        ref = _fit(est, Xs, y, backend="numpy", **kw)
        got = _fit(est, Xs, y, backend=backend, **kw)
        scale = np.max(np.abs(ref.coef_)) + np.max(np.abs(ref.intercept_))
        assert_allclose(got.coef_, ref.coef_, rtol=rtol, atol=rtol * scale)
        assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=rtol)
