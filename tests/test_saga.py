"""SAGA (``optimizer="saga"``): the variance-reduced per-sample method.

Specification:

* the compiled SAGA kernels (Numba, Cython; dense and CSR) reproduce the NumPy reference's
  trajectory to rtol 1e-10 (float64) / 1e-4 (float32): parameters, the mean of the stored
  gradients, the stored per-sample scalars, the loss sum and the step counter;
* a constant-step SAGA fit converges to the exact optimum (scikit-learn's tightly solved
  ``LogisticRegression``, the ridge normal equations), with sample weights, L2 and L1,
  dense and CSR alike, where constant-step SGD stalls at its noise floor;
* what SAGA cannot do is refused with a clear error (``partial_fit``, mini-batches, clipping).
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression as SkLogistic

from fastgd import LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd._backends import available, get_backend
from fastgd.losses import objective
from fastgd.optim import SAGA, get_optimizer

COMPILED_BACKENDS = ["numba"] + (["cython"] if available("cython") else [])
PROBLEMS = {  # name: (loss code, number of outputs)
    "log": (C.LOSS_LOG, 1),
    "softmax": (C.LOSS_SOFTMAX, 3),
    "squared2": (C.LOSS_SQUARED, 2),
}


def _kernel_run(backend_name, X, y, sw, loss, K, dtype, l2, l1, epochs=3, lr=0.02):
    """``epochs`` SAGA epochs through one backend's kernel; returns everything it updates."""
    backend = get_backend(backend_name)
    n, p = X.shape
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    hp = np.zeros(C.N_HP)
    codes[C.C_LOSS] = loss
    SAGA().encode(codes, hp)
    hp[C.H_LR], hp[C.H_LR_SCALE], hp[C.H_L2], hp[C.H_L1] = lr, 1.0, l2, l1
    coef = np.zeros((p + 1, K), dtype=dtype)
    state = np.zeros((1, p + 1, K), dtype=dtype)
    memory = np.zeros((n, K), dtype=dtype)
    work = np.zeros((C.WORK_ROWS, K), dtype=dtype)
    t = np.zeros(1, dtype=np.int64)
    rng = np.random.default_rng(1)
    loss_sums = []
    for _ in range(epochs):
        order = rng.permutation(n).astype(np.int64)
        if sp.issparse(X):
            status, loss_sum = backend.epoch_saga_csr(X.data, X.indices, X.indptr, p, y, sw, order, coef, state, t,
                                                      codes, hp, work, memory, n)
        else:
            status, loss_sum = backend.epoch_saga_dense(X, y, sw, order, coef, state, t, codes, hp, work, memory, n)
        assert status == C.STATUS_OK
        loss_sums.append(loss_sum)
    return coef, state, memory, np.array(loss_sums), int(t[0])


@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("penalty", [(0.0, 0.0), (0.01, 0.0), (0.01, 0.003)])
def test_kernels_reproduce_the_reference(backend, problem, dtype, sparse, penalty):
    loss, K = PROBLEMS[problem]
    rng = np.random.default_rng(0)
    n, p = 40, 6
    X = rng.standard_normal((n, p))
    X[rng.random((n, p)) < 0.5] = 0.0
    if loss == C.LOSS_SQUARED:
        y = rng.standard_normal((n, K))
    else:
        y = rng.integers(0, 2 if K == 1 else K, size=(n, 1)).astype(np.float64)
    X, y = X.astype(dtype), y.astype(dtype)
    sw = (rng.random(n) + 0.5).astype(dtype)
    Xin = sp.csr_matrix(X) if sparse else X
    expected = _kernel_run("numpy", Xin, y, sw, loss, K, dtype, *penalty)
    got = _kernel_run(backend, Xin, y, sw, loss, K, dtype, *penalty)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    atol = 1e-12 if dtype == np.float64 else 1e-5
    for name, e, g in zip(("coef", "mean", "memory", "loss sums"), expected[:4], got[:4]):
        assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=name)
    assert got[4] == expected[4] == 3 * n


def _logistic_data(n=300, p=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = (X @ rng.standard_normal(p) + 0.5 * rng.standard_normal(n) > 0).astype(int)
    return X, y


def _relative_gap(est, X, y2, sw, l2, l1, f_star):
    coef = np.vstack([est.coef_.reshape(-1, X.shape[1]).T, np.reshape(est.intercept_, (1, -1))])
    f = objective(X, y2, sw, coef, est._loss_code, l2, l1)
    return (f - f_star) / abs(f_star)


@pytest.mark.parametrize("sparse", [False, True])
def test_logistic_l2_with_sample_weights_reaches_the_lbfgs_optimum(sparse):
    X, y = _logistic_data()
    n = len(y)
    sw = np.random.default_rng(3).uniform(0.2, 3.0, n)
    alpha = 0.01
    # scikit-learn: sum_i s_i loss_i + ||w||^2 / (2C); fastgd: mean_i (s_i / mean s) loss_i + alpha/2 ||w||^2
    sk = SkLogistic(C=1.0 / (alpha * sw.sum()), tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=sw)
    sw_unit = sw / sw.mean()
    y2 = y.reshape(-1, 1).astype(float)
    f_star = objective(X, y2, sw_unit, np.vstack([sk.coef_.T, sk.intercept_]), C.LOSS_LOG, alpha, 0.0)
    Xin = sp.csr_matrix(X) if sparse else X
    est = LogisticRegression(optimizer="saga", penalty="l2", alpha=alpha, max_iter=60, tol=None,
                             random_state=0).fit(Xin, y, sample_weight=sw)
    assert _relative_gap(est, X, y2, sw_unit, alpha, 0.0, f_star) < 1e-9
    assert_allclose(est.coef_, sk.coef_, rtol=1e-4, atol=1e-5)


def test_constant_step_saga_beats_the_noise_floor_of_constant_step_sgd():
    X, y = _logistic_data(seed=1)
    alpha = 0.01
    y2 = y.reshape(-1, 1).astype(float)
    ones = np.ones(len(y))
    sk = SkLogistic(C=1.0 / (alpha * len(y)), tol=1e-12, max_iter=10_000).fit(X, y)
    f_star = objective(X, y2, ones, np.vstack([sk.coef_.T, sk.intercept_]), C.LOSS_LOG, alpha, 0.0)
    kw = dict(penalty="l2", alpha=alpha, max_iter=30, tol=None, random_state=0)
    saga = LogisticRegression(optimizer="saga", **kw).fit(X, y)
    sgd = LogisticRegression(optimizer="sgd", batch_size=1, learning_rate=saga.learning_rate_, **kw).fit(X, y)
    gap_saga = _relative_gap(saga, X, y2, ones, alpha, 0.0, f_star)
    gap_sgd = _relative_gap(sgd, X, y2, ones, alpha, 0.0, f_star)
    assert gap_saga < 1e-8 < gap_sgd


def test_multinomial_saga_reaches_the_lbfgs_optimum():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((240, 4))
    y = np.argmax(X @ rng.standard_normal((4, 3)) + 0.5 * rng.standard_normal((240, 3)), axis=1)
    alpha = 0.01
    sk = SkLogistic(C=1.0 / (alpha * len(y)), tol=1e-12, max_iter=10_000).fit(X, y)
    est = LogisticRegression(optimizer="saga", alpha=alpha, max_iter=80, tol=None, random_state=0).fit(X, y)
    assert_allclose(est.predict_proba(X), sk.predict_proba(X), atol=1e-6)


def test_ridge_by_saga_matches_the_normal_equations():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((200, 4))
    y = X @ rng.standard_normal(4) + 1.5 + 0.3 * rng.standard_normal(200)
    alpha = 0.05
    # mean squared error + alpha/2 ||w||^2: gradient 2/n Xc^T (Xc w - yc) + alpha w = 0
    Xc, yc = X - X.mean(0), y - y.mean()
    w = np.linalg.solve(2 * Xc.T @ Xc / len(y) + alpha * np.eye(4), 2 * Xc.T @ yc / len(y))
    b = y.mean() - X.mean(0) @ w
    est = LinearRegression(optimizer="saga", penalty="l2", alpha=alpha, max_iter=100, tol=None,
                           random_state=0).fit(X, y)
    assert_allclose(est.coef_, w, rtol=1e-7, atol=1e-9)
    assert_allclose(est.intercept_, b, rtol=1e-7)


def test_l1_saga_reaches_the_l1_optimum_with_exact_zeros():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((300, 8))
    y = (X[:, :3] @ np.array([2.0, -1.5, 1.0]) + 0.3 * rng.standard_normal(300) > 0).astype(int)
    l1 = 0.02
    sk = SkLogistic(l1_ratio=1.0, solver="saga", C=1.0 / (l1 * len(y)), tol=1e-12, max_iter=100_000).fit(X, y)
    est = LogisticRegression(optimizer="saga", penalty="l1", alpha=l1, max_iter=200, tol=None,
                             random_state=0).fit(X, y)
    y2, ones = y.reshape(-1, 1).astype(float), np.ones(len(y))
    f_star = objective(X, y2, ones, np.vstack([sk.coef_.T, sk.intercept_]), C.LOSS_LOG, 0.0, l1)
    assert _relative_gap(est, X, y2, ones, 0.0, l1, f_star) < 1e-7
    assert_allclose(est.coef_ == 0, sk.coef_ == 0)  # the same features are switched off
    assert np.sum(est.coef_ == 0) >= 3


def test_dense_and_csr_fits_give_the_same_model():
    X, y = _logistic_data(n=120, seed=7)
    X[np.abs(X) < 0.7] = 0.0
    kw = dict(optimizer="saga", alpha=0.01, max_iter=5, tol=None, random_state=0)
    dense = LogisticRegression(**kw).fit(X, y)
    csr = LogisticRegression(**kw).fit(sp.csr_matrix(X), y)
    assert_allclose(csr.coef_, dense.coef_, rtol=1e-10, atol=1e-13)
    assert_allclose(csr.loss_curve_, dense.loss_curve_, rtol=1e-10)


def test_auto_step_is_a_third_of_the_inverse_largest_sample_smoothness():
    X, y = _logistic_data(n=50, seed=8)
    alpha = 0.01
    est = LogisticRegression(optimizer="saga", alpha=alpha, max_iter=1, tol=None).fit(X, y)
    L_max = 0.25 * np.max(np.sum(X * X, axis=1) + 1.0) + alpha
    assert est.learning_rate_ == pytest.approx(1.0 / (3.0 * L_max))
    assert est.batch_size_ == 1


def test_strings_and_instances_name_the_same_optimizer():
    assert get_optimizer("saga") == SAGA()
    X, y = _logistic_data(n=60, seed=9)
    a = LogisticRegression(optimizer="saga", max_iter=3, tol=None, random_state=0).fit(X, y)
    b = LogisticRegression(optimizer=SAGA(), max_iter=3, tol=None, random_state=0).fit(X, y)
    assert_allclose(a.coef_, b.coef_, rtol=0, atol=0)


@pytest.mark.parametrize("params, call, message", [
    (dict(), "partial_fit", "partial_fit"),
    (dict(batch_size=32), "fit", "batch_size must be 1 or 'auto'"),
    (dict(clip_norm=1.0), "fit", "clip_norm=None"),
])
def test_what_saga_cannot_do_is_refused_clearly_and_leaves_the_model(params, call, message):
    X, y = _logistic_data(n=40, seed=10)
    est = LogisticRegression(optimizer="sgd", max_iter=2, tol=None, random_state=0).fit(X, y)
    before = est.coef_.copy()
    est.set_params(optimizer="saga", **params)
    with pytest.raises(ValueError, match=message):
        if call == "fit":
            est.fit(X, y)
        else:
            est.partial_fit(X, y)
    assert_allclose(est.coef_, before, rtol=0, atol=0)


def test_the_default_convergence_test_stops_saga_quietly_on_its_last_epoch():
    # SAGA's running epoch loss can dip below the optimum's objective mid-run: it is no sign
    # of a too-large step, and the last epoch (the most converged) is kept
    X, y = _logistic_data(n=500, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LogisticRegression(optimizer="saga", penalty="elasticnet", alpha=0.01, random_state=0,
                                 record_path="epoch").fit(X, y)
    assert est.n_iter_ < est.max_iter
    assert_allclose(est.coef_, est.coef_path_[-1], rtol=0, atol=0)
