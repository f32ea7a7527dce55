"""Finite-difference checks of the analytic gradients, and numerical stability of the losses.

``full_gradient`` (NumPy reference) and ``full_gradient_dense`` (Numba) return
``(1/n) sum_i s_i grad loss_i``; with weights normalised to mean 1 (the kernel contract) that
is the gradient of ``fastgd.losses.objective`` (weighted mean loss), which is differentiated
here by central differences. The objective itself is first checked against formulas written
out here with scipy.special.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import expit, log_expit, logsumexp, softmax

from fastgd import _contract as C
from fastgd import losses
from fastgd._backends import _numba, _reference

N, P = 15, 4
LOSS_CASES = {
    # name: (loss code, number of outputs)
    "squared_1": (C.LOSS_SQUARED, 1),
    "squared_3": (C.LOSS_SQUARED, 3),
    "log": (C.LOSS_LOG, 1),
    "softmax": (C.LOSS_SOFTMAX, 3),
}


def _problem(case, seed=0, dtype=np.float64):
    code, K = LOSS_CASES[case]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, P))
    if code == C.LOSS_SQUARED:
        y = rng.standard_normal((N, K))
    elif code == C.LOSS_LOG:
        y = rng.integers(0, 2, (N, 1)).astype(np.float64)
    else:
        y = rng.integers(0, 3, (N, 1)).astype(np.float64)
    sw = rng.uniform(0.1, 3.0, N)
    sw[2] = 0.0
    sw *= N / sw.sum()  # mean 1, as the kernels receive them
    coef = rng.standard_normal((P + 1, K))
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    codes[C.C_LOSS] = code
    return (X.astype(dtype), y.astype(dtype), sw.astype(dtype), coef.astype(dtype), codes)


def _independent_objective(X, y, sw, coef, code):
    Z = X @ coef[:-1] + coef[-1]
    if code == C.LOSS_SQUARED:
        per = np.sum((Z - y) ** 2, axis=1)
    elif code == C.LOSS_LOG:
        z, t = Z[:, 0], y[:, 0]
        per = -(t * log_expit(z) + (1 - t) * log_expit(-z))
    else:
        idx = y[:, 0].astype(int)
        per = logsumexp(Z, axis=1) - Z[np.arange(len(idx)), idx]
    return np.sum(sw * per) / np.sum(sw)


def _central_differences(X, y, sw, coef, code, h=1e-6):
    g = np.zeros_like(coef)
    for idx in np.ndindex(*coef.shape):
        up, down = coef.copy(), coef.copy()
        up[idx] += h
        down[idx] -= h
        g[idx] = (losses.objective(X, y, sw, up, code, 0.0, 0.0)
                  - losses.objective(X, y, sw, down, code, 0.0, 0.0)) / (2 * h)
    return g


def _reference_gradient(X, y, sw, coef, codes):
    grad = np.zeros_like(coef)
    loss_sum = _reference.full_gradient(X, y, sw, coef, codes, grad)
    return grad, loss_sum


def _numba_gradient(X, y, sw, coef, codes):
    grad = np.full_like(coef, np.nan)  # the kernel must overwrite, not accumulate into, grad
    work = np.zeros((C.WORK_ROWS, coef.shape[1]), dtype=coef.dtype)
    loss_sum = _numba.full_gradient_dense(X, y, sw, coef, codes, grad, work)
    return grad, loss_sum


GRADIENTS = {"numpy": _reference_gradient, "numba": _numba_gradient}


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_objective_matches_independent_formula(case):
    X, y, sw, coef, codes = _problem(case)
    got = losses.objective(X, y, sw, coef, int(codes[C.C_LOSS]), 0.0, 0.0)
    assert got == pytest.approx(_independent_objective(X, y, sw, coef, int(codes[C.C_LOSS])), rel=1e-13)
    # with the penalty: l1 ||W||_1 + l2/2 ||W||^2, intercept row excluded
    pen = losses.objective(X, y, sw, coef, int(codes[C.C_LOSS]), 0.3, 0.2) - got
    W = coef[:-1]
    assert pen == pytest.approx(0.2 * np.abs(W).sum() + 0.15 * np.sum(W * W), rel=1e-13)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case", list(LOSS_CASES))
@pytest.mark.parametrize("implementation", list(GRADIENTS))
def test_gradient_matches_finite_differences(implementation, case, seed):
    X, y, sw, coef, codes = _problem(case, seed)
    code = int(codes[C.C_LOSS])
    grad, loss_sum = GRADIENTS[implementation](X, y, sw, coef, codes)
    fd = _central_differences(X, y, sw, coef, code)
    assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)
    # the returned weighted loss sum is n times the objective (weights have mean 1)
    assert loss_sum == pytest.approx(N * _independent_objective(X, y, sw, coef, code), rel=1e-12)


@pytest.mark.parametrize("case", list(LOSS_CASES))
def test_gradient_float32_close_to_float64(case):
    X, y, sw, coef, codes = _problem(case)
    g64, _ = _numba_gradient(X, y, sw, coef, codes)
    args32 = [a.astype(np.float32) for a in (X, y, sw, coef)]
    for fn in GRADIENTS.values():
        g32, _ = fn(*args32, codes)
        assert g32.dtype == np.float32
        assert_allclose(g32, g64, rtol=1e-4, atol=1e-5)


def test_sample_weights_enter_the_gradient():
    """Zero weight removes a sample from the gradient; weight 2 counts it twice."""
    X, y, sw, coef, codes = _problem("squared_3")
    ones = np.ones(N)
    base, _ = _reference_gradient(X, y, ones, coef, codes)
    w = ones.copy()
    w[0] = 0.0
    w[1] = 2.0
    for fn in GRADIENTS.values():
        g, _ = fn(X, y, w, coef, codes)
        r0 = X[0] @ coef[:-1] + coef[-1] - y[0]
        r1 = X[1] @ coef[:-1] + coef[-1] - y[1]
        xi0, xi1 = np.append(X[0], 1.0), np.append(X[1], 1.0)
        expected = base + (-np.outer(xi0, 2 * r0) + np.outer(xi1, 2 * r1)) / N
        assert_allclose(g, expected, rtol=1e-12, atol=1e-14)


# --- stability at extreme margins -----------------------------------------------------------
# (margin z, label, loss, d loss / d z), exact to double precision
LOG_CASES = [
    (1000.0, 1.0, 0.0, 0.0),
    (1000.0, 0.0, 1000.0, 1.0),
    (-1000.0, 1.0, 1000.0, -1.0),
    (-1000.0, 0.0, 0.0, 0.0),
    (0.0, 1.0, np.log(2.0), -0.5),
]
SOFTMAX_CASES = [
    ([1000.0, -1000.0, 0.0], 0, 0.0, [0.0, 0.0, 0.0]),
    ([1000.0, -1000.0, 0.0], 1, 2000.0, [1.0, -1.0, 0.0]),
    ([1000.0, -1000.0, 0.0], 2, 1000.0, [1.0, 0.0, -1.0]),
    ([1000.0, 1000.0, -1000.0], 0, np.log(2.0), [-0.5, 0.5, 0.0]),
    ([-1000.0, -1000.0, -1000.0], 2, np.log(3.0), [1 / 3, 1 / 3, -2 / 3]),
]


# Absolute tolerance of a loss value at margins of size 1000: in float32 the margins (and a
# log-sum-exp near them) carry an ulp of 6.1e-5, so a loss of order 1 obtained by cancelling
# two such numbers is good to a few ulps of 1000 only.
VALUE_ATOL = {np.float64: 1e-10, np.float32: 4 * 1000 * float(np.finfo(np.float32).eps)}  # plain floats: pytest.approx refuses numpy scalars


def _margin_problem(Z, labels, code, dtype):
    """X = 0 so the margins are the intercepts: one sample per row of Z."""
    Z = np.atleast_2d(np.asarray(Z, dtype=np.float64))
    n, K = Z.shape
    X = np.zeros((1, 2), dtype=dtype)
    y = np.array([[labels]], dtype=dtype)
    coef = np.zeros((3, K), dtype=dtype)
    coef[-1] = Z[0]
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    codes[C.C_LOSS] = code
    return X, y, np.ones(1, dtype=dtype), coef, codes


@pytest.mark.parametrize("z, label, value, dz", LOG_CASES)
def test_log_loss_extreme_margins(z, label, value, dz):
    v, d = losses.log_loss(np.array([[z]]), np.array([[label]]))
    assert np.isfinite(v).all() and np.isfinite(d).all()
    assert_allclose(v, [value], atol=1e-12)
    assert_allclose(d, [[dz]], atol=1e-12)
    # agrees with the numerically naive formula wherever that is representable
    if abs(z) < 30:
        assert_allclose(v, [np.log1p(np.exp(z)) - label * z], rtol=1e-12)
        assert_allclose(d, [[expit(z) - label]], rtol=1e-12)
    for dtype in (np.float64, np.float32):
        X, y, sw, coef, codes = _margin_problem([z], label, C.LOSS_LOG, dtype)
        atol = VALUE_ATOL[dtype]
        assert losses.objective(X, y, sw, coef, C.LOSS_LOG, 0, 0) == pytest.approx(value, abs=atol)
        for fn in GRADIENTS.values():
            grad, loss_sum = fn(X, y, sw, coef, codes)
            assert np.isfinite(loss_sum) and np.isfinite(grad).all()
            assert loss_sum == pytest.approx(value, abs=atol)
            assert_allclose(grad[-1], [dz], atol=1e-6)
            assert_allclose(grad[:-1], 0.0, atol=0)  # X = 0


@pytest.mark.parametrize("z, label, value, dz", SOFTMAX_CASES)
def test_softmax_loss_extreme_margins(z, label, value, dz):
    v, d = losses.softmax_loss(np.array([z]), np.array([[float(label)]]))
    assert np.isfinite(v).all() and np.isfinite(d).all()
    assert_allclose(v, [value], atol=1e-12)
    assert_allclose(d, [dz], atol=1e-12)
    z_small = np.array(z) / 1000.0  # same structure at moderate margins: naive formula
    v_small, d_small = losses.softmax_loss(np.array([z_small]), np.array([[float(label)]]))
    onehot = np.eye(3)[label]
    assert_allclose(v_small, [-np.log(softmax(z_small)[label])], rtol=1e-12)
    assert_allclose(d_small, [softmax(z_small) - onehot], rtol=1e-12, atol=1e-15)
    for dtype in (np.float64, np.float32):
        X, y, sw, coef, codes = _margin_problem(z, float(label), C.LOSS_SOFTMAX, dtype)
        atol = VALUE_ATOL[dtype]
        assert losses.objective(X, y, sw, coef, C.LOSS_SOFTMAX, 0, 0) == pytest.approx(value, abs=atol)
        for fn in GRADIENTS.values():
            grad, loss_sum = fn(X, y, sw, coef, codes)
            assert np.isfinite(loss_sum) and np.isfinite(grad).all()
            assert loss_sum == pytest.approx(value, abs=atol)
            assert_allclose(grad[-1], dz, atol=1e-6)
