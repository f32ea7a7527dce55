"""The Cython backend (dense and CSR input) against the NumPy reference, at the kernel level.

The extension is imported unconditionally: a missing or broken build is a test failure, not
a skip (CI builds it with ``pip install .``).
"""

import importlib
import itertools
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from fastgd import LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd._backends import _reference, available, get_backend
from fastgd._backends import _cython as cy
from fastgd._backends._cython import _kernels
from fastgd.optim import OPTIMIZER_NAMES, get_optimizer
from fastgd.schedules import (
    Constant, CosineAnnealing, ExponentialDecay, InverseScaling, PolynomialDecay,
    ReduceLROnPlateau, StepDecay, Warmup,
)

# Every test calls the kernels directly or names the backend of each fit: FASTGD_BACKEND
# cannot change them (.ci/run's forced-backend runs skip them).
pytestmark = pytest.mark.pinned_backend

RTOL = {np.float64: 1e-10, np.float32: 1e-4}
N, P, K_MULTI, N_EPOCHS = 12, 5, 3, 3  # P = 5: the unrolled dot product and its tail

# Every schedule class, with parameters that make it move within three short epochs; both
# clock units and a warm-up are represented. The plateau multiplier is set by the driver
# between epochs, so the kernel test feeds it the scales a plateau would produce.
SCHEDULES = {
    "constant": Constant(),
    "step-epoch": StepDecay(step_size=1, gamma=0.5),
    "exponential-step": ExponentialDecay(gamma=0.97, unit="step"),
    "polynomial": PolynomialDecay(power=2.0, lr_min=1e-3),
    "cosine-epoch": CosineAnnealing(unit="epoch", lr_min=1e-3),
    "invscaling": InverseScaling(power_t=0.5),
    "plateau": ReduceLROnPlateau(),
    "warmup-step": Warmup(CosineAnnealing(), warmup=5),
    "warmup-epoch": Warmup(StepDecay(step_size=1, gamma=0.5), warmup=1),
}
PLATEAU_SCALES = [1.0, 0.5, 0.25]
PENALTIES = [None, "l2", "l1", "elasticnet"]
BATCH_SIZES = [1, 7, N]
CLIPS = [None, 0.5]
LOSSES = ["squared", "squared-multi", "log", "softmax"]
LOSS_CODE = {"squared": C.LOSS_SQUARED, "squared-multi": C.LOSS_SQUARED, "log": C.LOSS_LOG,
             "softmax": C.LOSS_SOFTMAX}


def make_problem(loss, dtype, n=N, p=P, seed=0):
    """Dense data, targets in the kernel layout, non-uniform weights (mean 1), initial coef."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    K = K_MULTI if loss in ("squared-multi", "softmax") else 1
    if loss == "squared":
        y = (X @ rng.standard_normal(p) + 0.3 + 0.1 * rng.standard_normal(n))[:, None]
    elif loss == "squared-multi":
        y = X @ rng.standard_normal((p, K)) + 0.1 * rng.standard_normal((n, K))
    elif loss == "log":
        y = ((X[:, 0] if p else 0.0) + 0.5 * rng.standard_normal(n) > 0).astype(float)[:, None]
    else:
        y = rng.integers(0, K, n).astype(float)[:, None]
        y[:K, 0] = np.arange(K)
    sw = rng.uniform(0.5, 1.5, n)
    sw *= n / sw.sum()
    coef = 0.1 * rng.standard_normal((p + 1, K))
    orders = [rng.permutation(n).astype(np.int64) for _ in range(N_EPOCHS)]
    cast = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    return cast(X), cast(y), cast(sw), cast(coef), orders


def kernel_arrays(optimizer, schedule, penalty, batch_size, clip, loss_code, n=N):
    """codes / hp exactly as the estimators build them (``BaseGD._settings``)."""
    est = LinearRegression(optimizer=optimizer, learning_rate=0.05, batch_size=batch_size,
                           max_iter=N_EPOCHS, schedule=schedule, penalty=penalty, alpha=0.05,
                           l1_ratio=0.5, clip_norm=clip)
    s = est._settings(get_optimizer(optimizer), n, loss_code, None)
    return s.codes, s.hp, s.batch_size


def run_epochs(backend, X, y, sw, orders, coef0, optimizer, codes, hp, batch_size, scales):
    """A minimal driver: N_EPOCHS kernel calls, returning everything the kernel touched."""
    coef = coef0.copy()
    state = get_optimizer(optimizer).init_state(coef.shape, coef.dtype)
    t = np.zeros(1, dtype=np.int64)
    grad = np.empty_like(coef)
    work = np.zeros((C.WORK_ROWS, coef.shape[1]), dtype=coef.dtype)
    hp = hp.copy()
    losses = []
    for epoch, order in enumerate(orders):
        hp[C.H_EPOCH] = epoch
        hp[C.H_LR_SCALE] = scales[epoch]
        status, loss_sum = backend.epoch_dense(X, y, sw, order, coef, state, t, codes, hp,
                                               batch_size, grad, work)
        assert status == C.STATUS_OK
        losses.append(loss_sum)
    return coef, state, int(t[0]), np.array(losses)


def assert_close(actual, desired, rtol, what):
    # rtol element-wise, with an absolute floor at rtol times the array's scale for entries
    # that are (near) zero, e.g. weights the L1 step has just set to 0.
    scale = max(float(np.max(np.abs(desired), initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=what)


# --- parity with the reference ----------------------------------------------------------
# Penalty, batch size and clipping select branches inside the step and interact there: their
# full product, at the constant rate. A schedule reaches the step only as its learning rate,
# whose clock depends on the batch size: every schedule with every batch size, once without
# penalty or clipping and once with both (the L1 threshold and the decay scale with the rate).
DENSE_GRID = [(("constant", SCHEDULES["constant"]), penalty, batch_size, clip)
              for penalty, batch_size, clip in itertools.product(PENALTIES, BATCH_SIZES, CLIPS)] + [
    (item, penalty, batch_size, clip)
    for item in SCHEDULES.items() if item[0] != "constant"
    for batch_size in BATCH_SIZES for penalty, clip in [(None, None), ("elasticnet", CLIPS[-1])]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
@pytest.mark.parametrize("loss", LOSSES)
def test_epoch_dense_matches_reference(loss, optimizer, dtype):
    X, y, sw, coef0, orders = make_problem(loss, dtype)
    rtol = RTOL[dtype]
    failures = []
    for (sched_name, schedule), penalty, batch_size, clip in DENSE_GRID:
        codes, hp, b = kernel_arrays(optimizer, schedule, penalty, batch_size, clip, LOSS_CODE[loss])
        scales = PLATEAU_SCALES if sched_name == "plateau" else [1.0] * N_EPOCHS
        args = (X, y, sw, orders, coef0, optimizer, codes, hp, b, scales)
        ref = run_epochs(_reference, *args)
        got = run_epochs(cy, *args)
        label = f"schedule={sched_name} penalty={penalty} batch_size={batch_size} clip={clip}"
        try:
            assert got[2] == ref[2], f"{label}: t {got[2]} != {ref[2]}"
            assert_close(got[0], ref[0], rtol, f"{label}: coef")
            assert_close(got[1], ref[1], rtol, f"{label}: optimizer state")
            assert_close(got[3], ref[3], rtol, f"{label}: epoch losses")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, f"{len(failures)} configurations differ; first:\n{failures[0]}"


# --- the estimators end to end ------------------------------------------------------------
ESTIMATOR_CASES = [
    (LinearRegression, "squared", dict(optimizer="sgd", batch_size=1, penalty="l2", alpha=0.01)),
    (LinearRegression, "squared-multi", dict(optimizer="adamw", batch_size=5, clip_norm=1.0,
                                             schedule=Warmup(CosineAnnealing(), warmup=4))),
    (LinearRegression, "squared", dict(optimizer="nesterov", batch_size=4, penalty="elasticnet",
                                       schedule=ReduceLROnPlateau(patience=0, factor=0.5))),
    (LogisticRegression, "log", dict(optimizer="amsgrad", batch_size=3, penalty="l1", alpha=0.01,
                                     schedule=StepDecay(step_size=1))),
    (LogisticRegression, "softmax", dict(optimizer="rmsprop", batch_size=None, penalty="l2",
                                         schedule="invscaling")),
    (LogisticRegression, "softmax", dict(optimizer="adagrad", batch_size=2, early_stopping=True,
                                         validation_fraction=0.25, tol=None)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("Est, loss, params", ESTIMATOR_CASES)
def test_estimator_backends_agree(Est, loss, params, dtype):
    X, y, sw, _, _ = make_problem(loss, dtype, n=40, p=4, seed=1)
    target = y[:, 0] if loss != "squared-multi" else y
    if loss in ("log", "softmax"):
        target = target.astype(int)
    fitted = {}
    for backend in ("numpy", "numba", "cython"):
        kw = dict(tol=None, max_iter=3, random_state=0, learning_rate=0.05)
        kw.update(params)
        fitted[backend] = Est(backend=backend, **kw).fit(X, target, sample_weight=sw)
    ref, got, nb = fitted["numpy"], fitted["cython"], fitted["numba"]
    rtol = RTOL[dtype]
    assert got.coef_.dtype == dtype
    assert_close(got.coef_, ref.coef_, rtol, "coef_")
    assert_close(got.intercept_, ref.intercept_, rtol, "intercept_")
    assert_close(got.loss_curve_, ref.loss_curve_, rtol, "loss_curve_")
    assert got.t_ == ref.t_
    # and the two compiled engines agree as closely (they differ only in rounding: the order
    # of a dot product's terms, Numba's fused multiply-adds)
    assert_close(got.coef_, nb.coef_, rtol, "coef_ vs numba")
    assert_close(got.loss_curve_, nb.loss_curve_, rtol, "loss_curve_ vs numba")


# --- other kernel properties -------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
def test_full_gradient_matches_reference(loss, dtype):
    X, y, sw, coef, _ = make_problem(loss, dtype, n=30, seed=2)
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    codes[C.C_LOSS] = LOSS_CODE[loss]
    work = np.zeros((C.WORK_ROWS, coef.shape[1]), dtype=dtype)
    g_ref, g_cy = np.empty_like(coef), np.full_like(coef, np.nan)
    for a in (X, y, sw, coef, codes):  # the full gradient only reads these
        a.flags.writeable = False
    v_ref = _reference.full_gradient(X, y, sw, coef, codes, g_ref, work)
    v_cy = cy.full_gradient_dense(X, y, sw, coef, codes, g_cy, work)
    assert isinstance(v_cy, float)
    assert_close(g_cy, g_ref, RTOL[dtype], "gradient")
    assert_close(v_cy, v_ref, RTOL[dtype], "loss")


def test_contract_constants_match_contract():
    got = _kernels.contract_constants()
    # every value the Cython side compiled in equals the contract's
    assert got == {name: getattr(C, name, None) for name in got}
    # and it covers the whole contract: all codes, schedules, slots, statuses, the sparse
    # modes, counters and lazy rows, the chunk count, so a new constant cannot be missed.
    # (CHUNKED_MIN_WORK is the driver's threshold; no kernel uses it.)
    every = {name for name in dir(C) if isinstance(getattr(C, name), int) and name.isupper()}
    assert set(got) == every - {"CHUNKED_MIN_WORK"}
    assert {"C_LAZY", "LAZY_FIELDS", "COUNT_UPDATES", "COUNT_CATCHUPS", "N_COUNTERS", "SPARSE_DENSE",
            "SPARSE_LAZY_EXACT", "SPARSE_LAZY_APPROX", "N_CHUNKS"} <= set(got)
    assert cy.contract_constants is _kernels.contract_constants


def test_stale_build_is_refused(monkeypatch):
    # a build whose compiled-in sparse constants disagree with the contract is not loaded
    real = _kernels.contract_constants()
    monkeypatch.setattr(_kernels, "contract_constants", lambda: {**real, "SPARSE_LAZY_APPROX": 7})
    monkeypatch.delitem(sys.modules, "fastgd._backends._cython")
    with pytest.raises(ImportError, match="SPARSE_LAZY_APPROX"):
        importlib.import_module("fastgd._backends._cython")


def test_registry_and_module():
    assert available("cython")
    assert get_backend("cython") is cy
    assert cy.name == "cython"
    assert callable(cy.epoch_dense) and callable(cy.full_gradient_dense)
    assert callable(cy.epoch_csr) and callable(cy.epoch_dense_chunked)


def test_unbuilt_extension_raises_import_error(monkeypatch):
    # What a checkout without build_ext looks like: the package must raise ImportError so the
    # registry reports the backend as unavailable instead of failing later.
    monkeypatch.setitem(sys.modules, "fastgd._backends._cython._kernels", None)
    monkeypatch.delitem(sys.modules, "fastgd._backends._cython")
    with pytest.raises(ImportError, match="not built"):
        importlib.import_module("fastgd._backends._cython")


def _single_run(X, y, sw, order, codes, hp, coef0, batch_size=4):
    coef = coef0.copy()
    state = np.zeros((2,) + coef.shape, dtype=coef.dtype)
    t = np.zeros(1, dtype=np.int64)
    status, loss = cy.epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size,
                                  np.empty_like(coef), np.zeros((C.WORK_ROWS, coef.shape[1]), coef.dtype))
    return status, loss, coef, state, t


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_read_only_inputs(dtype, tmp_path):
    X, y, sw, coef0, orders = make_problem("squared-multi", dtype)
    codes, hp, _ = kernel_arrays("adam", "constant", "elasticnet", 4, 1.0, C.LOSS_SQUARED)
    expected = _single_run(X, y, sw, orders[0], codes, hp, coef0)
    frozen = [a.copy() for a in (X, y, sw, orders[0], codes, hp)]
    for a in frozen:
        a.flags.writeable = False
    got = _single_run(*frozen, coef0)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)
    # read-only memory maps of X and y
    Xm = np.memmap(tmp_path / "X.dat", dtype=dtype, mode="w+", shape=X.shape)
    Xm[:] = X
    Xm.flush()
    ym = np.memmap(tmp_path / "y.dat", dtype=dtype, mode="w+", shape=y.shape)
    ym[:] = y
    ym.flush()
    Xr = np.memmap(tmp_path / "X.dat", dtype=dtype, mode="r", shape=X.shape)
    yr = np.memmap(tmp_path / "y.dat", dtype=dtype, mode="r", shape=y.shape)
    got = _single_run(Xr, yr, sw, orders[0], codes, hp, coef0)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


def test_strided_targets_weights_and_order():
    # Only X (and the driver's own buffers) must be C-contiguous; y, sw and order may be views.
    X, y, sw, coef0, orders = make_problem("squared-multi", np.float64)
    codes, hp, _ = kernel_arrays("momentum", "constant", "l2", 4, None, C.LOSS_SQUARED)
    expected = _single_run(X, y, sw, orders[0], codes, hp, coef0)
    order_view = np.stack([orders[0], orders[1]], axis=1)[:, 0]
    sw_view = np.stack([sw, sw], axis=1)[:, 0]
    got = _single_run(X, np.asfortranarray(y), sw_view, order_view, codes, hp, coef0)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_nonfinite_status(dtype):
    X, y, sw, coef0, orders = make_problem("squared", dtype)
    codes, hp, _ = kernel_arrays("sgd", "constant", None, 4, None, C.LOSS_SQUARED)
    # a NaN feature: the first batch's loss is NaN, the kernel stops before any step
    Xn = X.copy()
    Xn[orders[0][0], 0] = np.nan
    status, loss, coef, _, t = _single_run(Xn, y, sw, orders[0], codes, hp, coef0)
    assert status == C.STATUS_NONFINITE and not np.isfinite(loss)
    assert t[0] == 0 and np.array_equal(coef, coef0)
    # a learning rate that blows up: NONFINITE, like the reference and Numba
    hp = hp.copy()
    hp[C.H_LR] = 1e30
    with np.errstate(all="ignore"):  # the reference overflows on the way, as it should
        statuses = [b.epoch_dense(X, y, sw, orders[0], coef0.copy(), np.zeros((0, P + 1, 1), dtype),
                                  np.zeros(1, np.int64), codes, hp, 1, np.empty_like(coef0),
                                  np.zeros((C.WORK_ROWS, 1), dtype))[0]
                    for b in (cy, _reference, get_backend("numba"))]
    assert statuses == [C.STATUS_NONFINITE] * 3


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("loss", ["log", "softmax"])
def test_extreme_margins_are_stable(loss, dtype):
    # margins of +-1000: no overflow, losses of about 1000 or 0, gradients in range
    X, y, sw, coef, _ = make_problem(loss, dtype, n=30)
    coef = coef * 1e4
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    codes[C.C_LOSS] = LOSS_CODE[loss]
    work = np.zeros((C.WORK_ROWS, coef.shape[1]), dtype=dtype)
    g_ref, g_cy = np.empty_like(coef), np.empty_like(coef)
    with np.errstate(all="raise"):
        v_cy = cy.full_gradient_dense(X, y, sw, coef, codes, g_cy, work)
    v_ref = _reference.full_gradient(X, y, sw, coef, codes, g_ref, work)
    assert np.isfinite(v_cy) and np.all(np.isfinite(g_cy))
    assert_close(v_cy, v_ref, RTOL[dtype], "loss")
    assert_close(g_cy, g_ref, RTOL[dtype], "gradient")


def test_bad_buffers_are_refused():
    X, y, sw, coef, orders = make_problem("squared", np.float64)
    codes, hp, _ = kernel_arrays("adam", "constant", None, 4, None, C.LOSS_SQUARED)
    t = np.zeros(1, np.int64)
    work = np.zeros((C.WORK_ROWS, 1))
    state = np.zeros((2,) + coef.shape)
    with pytest.raises(ValueError, match="state"):  # Adam needs two slots
        cy.epoch_dense(X, y, sw, orders[0], coef, state[:1], t, codes, hp, 4, np.empty_like(coef), work)
    with pytest.raises(ValueError, match="batch_size"):
        cy.epoch_dense(X, y, sw, orders[0], coef, state, t, codes, hp, 0, np.empty_like(coef), work)
    with pytest.raises(ValueError, match="inconsistent"):
        cy.epoch_dense(X[:, :2].copy(), y, sw, orders[0], coef, state, t, codes, hp, 4,
                       np.empty_like(coef), work)
    with pytest.raises((ValueError, TypeError)):  # mixed dtypes
        cy.epoch_dense(X, y.astype(np.float32), sw, orders[0], coef, state, t, codes, hp, 4,
                       np.empty_like(coef), work)
    with pytest.raises(ValueError):  # X must be C-contiguous
        cy.epoch_dense(np.asfortranarray(X), y, sw, orders[0], coef, state, t, codes, hp, 4,
                       np.empty_like(coef), work)


@pytest.mark.parametrize("p", [0, 1, 4, 9])
def test_feature_counts(p):
    # no features (intercept only), fewer than / exactly / not a multiple of the dot product's
    # unrolling, on a longer shuffled epoch (the rows further ahead are prefetched)
    X, y, sw, coef0, orders = make_problem("log", np.float64, n=40, p=p, seed=3)
    codes, hp, b = kernel_arrays("adam", "constant", "l2", 3, None, C.LOSS_LOG, n=40)
    ref = run_epochs(_reference, X, y, sw, orders, coef0, "adam", codes, hp, b, [1.0] * N_EPOCHS)
    got = run_epochs(cy, X, y, sw, orders, coef0, "adam", codes, hp, b, [1.0] * N_EPOCHS)
    assert got[2] == ref[2]
    for g, r, what in zip(got[:2] + got[3:], ref[:2] + ref[3:], ("coef", "state", "losses")):
        assert_close(g, r, 1e-10, what)


# --- CSR epochs ---------------------------------------------------------------------------
# One configuration per update path: (optimizer, penalty, lazy_updates, expected mode).
CSR_CASES = [
    ("sgd", "elasticnet", False, C.SPARSE_LAZY_EXACT),
    ("sgd", None, False, C.SPARSE_LAZY_EXACT),
    ("adagrad", "l1", False, C.SPARSE_LAZY_EXACT),
    ("rmsprop", "l1", False, C.SPARSE_LAZY_EXACT),
    ("rmsprop", "l2", False, C.SPARSE_DENSE),
    ("momentum", "elasticnet", False, C.SPARSE_DENSE),
    ("adam", "l2", False, C.SPARSE_DENSE),
    ("adamw", "l1", False, C.SPARSE_DENSE),
    ("nesterov", "l2", True, C.SPARSE_LAZY_APPROX),
    ("amsgrad", "elasticnet", True, C.SPARSE_LAZY_APPROX),
    ("rmsprop", "l2", True, C.SPARSE_LAZY_APPROX),
]


def make_csr_problem(loss, dtype, n=40, p=15, density=0.25, seed=4):
    X, y, sw, coef, orders = make_problem(loss, dtype, n=n, p=p, seed=seed)
    mask = np.random.default_rng(seed + 1).random(X.shape) < density
    mask[:, -1] = False  # a feature no sample touches: it only ever decays
    return sp.csr_matrix(X * mask), y, sw, coef, orders


def run_csr_epochs(backend, Xs, y, sw, orders, coef0, optimizer, codes, hp, batch_size, index_dtypes):
    coef = coef0.copy()
    state = get_optimizer(optimizer).init_state(coef.shape, coef.dtype)
    t = np.zeros(1, dtype=np.int64)
    p = Xs.shape[1]
    counters = np.zeros(C.N_COUNTERS, dtype=np.int64)
    indices, indptr = Xs.indices.astype(index_dtypes[0]), Xs.indptr.astype(index_dtypes[1])
    losses = []
    for epoch, order in enumerate(orders):
        hp = hp.copy()
        hp[C.H_EPOCH] = epoch
        status, loss_sum = backend.epoch_csr(
            Xs.data, indices, indptr, p, y, sw, order, coef, state, t, codes, hp, batch_size,
            np.empty_like(coef), np.zeros((C.WORK_ROWS, coef.shape[1]), coef.dtype),
            np.zeros((p, C.LAZY_FIELDS)), np.zeros((2, p + 1), dtype=np.int64), counters)
        assert status == C.STATUS_OK
        losses.append(loss_sum)
    return coef, state, int(t[0]), np.array(losses), counters


_CSR_REFERENCE = {}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("index_dtypes", [(np.int32, np.int32), (np.int64, np.int64), (np.int32, np.int64)],
                         ids=["i32", "i64", "mixed"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("optimizer, penalty, lazy, mode", CSR_CASES)
def test_epoch_csr_matches_reference(optimizer, penalty, lazy, mode, loss, index_dtypes, dtype):
    Xs, y, sw, coef0, orders = make_csr_problem(loss, dtype)
    failures = []
    for batch_size, schedule, clip in [(1, "constant", None), (1, Warmup(StepDecay(step_size=5, unit="step"), warmup=3), None),
                                       (6, "invscaling", None), (6, "constant", 0.5), (40, "constant", None)]:
        codes, hp, b = kernel_arrays(optimizer, schedule, penalty, batch_size, clip, LOSS_CODE[loss], n=40)
        codes = codes.copy()
        codes[C.C_LAZY] = int(lazy)
        assert C.sparse_mode(codes, hp) == mode
        args = (Xs, y, sw, orders, coef0, optimizer, codes, hp, b, index_dtypes)
        # the reference's result does not depend on the index dtypes: computed once for the three
        key = (optimizer, penalty, lazy, loss, np.dtype(dtype).name, batch_size, repr(schedule), clip)
        if key not in _CSR_REFERENCE:
            _CSR_REFERENCE[key] = run_csr_epochs(_reference, *args)
        ref = _CSR_REFERENCE[key]
        got = run_csr_epochs(cy, *args)
        nb = run_csr_epochs(get_backend("numba"), *args)
        label = f"batch_size={batch_size} schedule={schedule} clip={clip}"
        try:
            assert got[2] == ref[2], f"{label}: t {got[2]} != {ref[2]}"
            assert_close(got[0], ref[0], RTOL[dtype], f"{label}: coef")
            assert_close(got[1], ref[1], RTOL[dtype], f"{label}: optimizer state")
            assert_close(got[3], ref[3], RTOL[dtype], f"{label}: epoch losses")
            # the work counters count what Numba's count
            np.testing.assert_array_equal(got[4], nb[4], err_msg=f"{label}: counters")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, f"{len(failures)} configurations differ; first:\n{failures[0]}"


def test_epoch_csr_counts_only_touched_work():
    # lazy exact per-sample SGD: updates = nnz + one intercept per step; catch-ups at most one
    # per nonzero plus one per coordinate at the end of the epoch (Numba counts the same)
    Xs, y, sw, coef0, orders = make_csr_problem("log", np.float64, n=40, p=200, density=0.02)
    codes, hp, b = kernel_arrays("sgd", "constant", "elasticnet", 1, None, C.LOSS_LOG, n=40)
    got = run_csr_epochs(cy, Xs, y, sw, orders[:1], coef0, "sgd", codes, hp, b, (np.int32, np.int32))
    assert got[4][C.COUNT_UPDATES] == Xs.nnz + 40
    assert got[4][C.COUNT_CATCHUPS] <= Xs.nnz + 200


def test_epoch_csr_read_only_and_strided_inputs():
    Xs, y, sw, coef0, orders = make_csr_problem("squared-multi", np.float64)
    codes, hp, b = kernel_arrays("rmsprop", "constant", "l1", 4, None, C.LOSS_SQUARED, n=40)
    expected = run_csr_epochs(cy, Xs, y, sw, orders, coef0, "rmsprop", codes, hp, b, (np.int32, np.int32))
    # read-only CSR parts, targets, weights and order; values / indices as strided views
    data = np.repeat(Xs.data, 2)[::2]
    indices = np.repeat(Xs.indices, 2)[::2]
    Xv = sp.csr_matrix(Xs.shape)
    Xv.data, Xv.indices, Xv.indptr = data, indices, Xs.indptr.copy()
    assert not Xv.data.flags.c_contiguous
    frozen = [a.copy() for a in (y, sw)] + [[o.copy() for o in orders]]
    for a in (Xv.data, Xv.indices, Xv.indptr, frozen[0], frozen[1], *frozen[2]):
        a.flags.writeable = False
    got = run_csr_epochs(cy, Xv, frozen[0], frozen[1], frozen[2], coef0, "rmsprop", codes, hp, b,
                         (np.int32, np.int32))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


def test_epoch_csr_nonfinite_status():
    Xs, y, sw, coef0, orders = make_csr_problem("squared", np.float64)
    for optimizer, batch_size in [("sgd", 1), ("adam", 4)]:
        codes, hp, b = kernel_arrays(optimizer, "constant", None, batch_size, None, C.LOSS_SQUARED, n=40)
        p = Xs.shape[1]
        bad = Xs.copy()
        bad.data[bad.indptr[orders[0][0]]] = np.nan  # the first sample's first value
        coef = coef0.copy()
        t = np.zeros(1, np.int64)
        status, loss = cy.epoch_csr(bad.data, bad.indices, bad.indptr, p, y, sw, orders[0], coef,
                                    get_optimizer(optimizer).init_state(coef.shape, coef.dtype), t, codes, hp, b,
                                    np.empty_like(coef), np.zeros((C.WORK_ROWS, 1)), np.zeros((p, C.LAZY_FIELDS)),
                                    np.zeros((2, p + 1), np.int64), np.zeros(C.N_COUNTERS, np.int64))
        assert status == C.STATUS_NONFINITE and not np.isfinite(loss)
        assert t[0] == 0


def test_epoch_csr_bad_buffers_are_refused():
    Xs, y, sw, coef, orders = make_csr_problem("squared", np.float64)
    codes, hp, _ = kernel_arrays("adam", "constant", None, 4, None, C.LOSS_SQUARED, n=40)
    p = Xs.shape[1]

    def call(**over):
        kw = dict(data=Xs.data, indices=Xs.indices, indptr=Xs.indptr, n_features=p, y=y, sw=sw,
                  order=orders[0], coef=coef.copy(), state=np.zeros((2,) + coef.shape), t=np.zeros(1, np.int64),
                  codes=codes, hp=hp, batch_size=4, grad=np.empty_like(coef), work=np.zeros((C.WORK_ROWS, 1)),
                  lazy_work=np.zeros((p, C.LAZY_FIELDS)), index_work=np.zeros((2, p + 1), np.int64),
                  counters=np.zeros(C.N_COUNTERS, np.int64))
        kw.update(over)
        return cy.epoch_csr(*kw.values())

    assert call()[0] == C.STATUS_OK
    with pytest.raises(ValueError, match="inconsistent shapes"):
        call(n_features=p - 1)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        call(indptr=Xs.indptr[:-1])
    with pytest.raises(ValueError, match="CSR"):
        call(indices=Xs.indices[:-1])
    with pytest.raises(ValueError, match="lazy_work"):
        call(lazy_work=np.zeros((p, C.LAZY_FIELDS - 1)))
    with pytest.raises(ValueError, match="index_work"):
        call(index_work=np.zeros((2, p), np.int64))
    with pytest.raises(ValueError, match="counters"):
        call(counters=np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="state"):
        call(state=np.zeros((1,) + coef.shape))
    with pytest.raises(ValueError, match="batch_size"):
        call(batch_size=0)
    with pytest.raises(ValueError, match="work"):
        call(work=np.zeros((1, 1)))
    with pytest.raises((ValueError, TypeError)):  # mixed dtypes
        call(y=y.astype(np.float32))


def test_epoch_dense_chunked_bad_buffers_are_refused():
    X, y, sw, coef, orders = make_problem("squared", np.float64)
    codes, hp, _ = kernel_arrays("sgd", "constant", None, 4, None, C.LOSS_SQUARED)
    p1, K = coef.shape

    def call(partial=None, pwork=None, losses=None):
        return cy.epoch_dense_chunked(
            X, y, sw, orders[0], coef.copy(), np.zeros((0, p1, K)), np.zeros(1, np.int64), codes, hp, 4,
            np.empty_like(coef), np.zeros((C.WORK_ROWS, K)),
            np.zeros((C.N_CHUNKS, p1, K)) if partial is None else partial,
            np.zeros((C.N_CHUNKS, C.WORK_ROWS, K)) if pwork is None else pwork,
            np.zeros(C.N_CHUNKS) if losses is None else losses)

    assert call()[0] == C.STATUS_OK
    with pytest.raises(ValueError, match="partial"):
        call(partial=np.zeros((C.N_CHUNKS - 1, p1, K)))
    with pytest.raises(ValueError, match="pwork"):
        call(pwork=np.zeros((C.N_CHUNKS, 1, K)))
    with pytest.raises(ValueError, match="losses"):
        call(losses=np.zeros(C.N_CHUNKS - 1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
def test_epoch_dense_chunked_matches_reference(loss, dtype):
    # small problems through the chunked kernel (slices of 0 or 1 samples included)
    X, y, sw, coef0, orders = make_problem(loss, dtype)
    for optimizer, batch_size, clip in [("adam", N, 0.5), ("nesterov", 7, None), ("rmsprop", 3, None)]:
        codes, hp, b = kernel_arrays(optimizer, "constant", "elasticnet", batch_size, clip, LOSS_CODE[loss])
        ref = run_epochs(_reference, X, y, sw, orders, coef0, optimizer, codes, hp, b, [1.0] * N_EPOCHS)
        chunked = _ChunkedOnly(coef0)
        got = run_epochs(chunked, X, y, sw, orders, coef0, optimizer, codes, hp, b, [1.0] * N_EPOCHS)
        assert got[2] == ref[2]
        for g, r, what in zip(got[:2] + got[3:], ref[:2] + ref[3:], ("coef", "state", "losses")):
            assert_close(g, r, RTOL[dtype], f"{optimizer}: {what}")


class _ChunkedOnly:
    """``epoch_dense`` served by ``epoch_dense_chunked`` (for :func:`run_epochs`)."""

    def __init__(self, coef):
        p1, K = coef.shape
        self.buffers = (np.zeros((C.N_CHUNKS, p1, K), coef.dtype), np.zeros((C.N_CHUNKS, C.WORK_ROWS, K), coef.dtype),
                        np.zeros(C.N_CHUNKS))

    def epoch_dense(self, *args):
        return cy.epoch_dense_chunked(*args, *self.buffers)
