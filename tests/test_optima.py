"""Full-batch gradient descent reaches the exact optimum computed by independent solvers.

* Least squares: ``numpy.linalg.lstsq`` with an explicit intercept column (weighted: rows
  scaled by sqrt(weight)).
* L2 logistic regression: scikit-learn's lbfgs. Its objective is
  ``C * sum_i s_i loss_i + 1/2 ||W||^2``; divided by ``C * sum_i s_i`` it is ours,
  ``weighted mean loss + alpha/2 ||W||^2``, with ``alpha = 1 / (C * sum_i s_i)``.
* L1 least squares: scikit-learn's Lasso, whose objective ``1/(2n) ||y - Xw - b||^2 +
  a ||w||_1`` is half of ours ``1/n ||y - Xw - b||^2 + alpha ||w||_1`` with ``a = alpha / 2``.

Objectives are computed here, independently of fastgd, with scipy.special.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import log_expit, logsumexp
from sklearn.linear_model import Lasso
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

from fastgd import LinearRegression, LogisticRegression


def _standard_normal(n, p, seed, corr=0.3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X[:, 1:] += corr * X[:, :1]  # some correlation, still well conditioned
    X = (X - X.mean(0)) / X.std(0)
    return X, rng


# --- independent objectives ------------------------------------------------------------------
def _weighted_mean(values, sw):
    sw = np.ones(len(values)) if sw is None else np.asarray(sw, dtype=np.float64)
    return float(np.sum(sw * values) / np.sum(sw))


def squared_objective(X, Y, W, b, sw=None, l1=0.0):
    R = X @ W + b - Y
    return _weighted_mean(np.sum(R.reshape(len(X), -1) ** 2, axis=1), sw) + l1 * np.abs(W).sum()


def binary_objective(X, y, w, b, alpha, sw=None):
    z = X @ w + b
    # -log p(y | z): -log sigmoid(z) if y = 1, -log sigmoid(-z) if y = 0
    nll = -np.where(y == 1, log_expit(z), log_expit(-z))
    return _weighted_mean(nll, sw) + 0.5 * alpha * np.sum(w * w)


def multinomial_objective(X, y, W, b, alpha, sw=None):
    Z = X @ W + b  # (n, K)
    nll = logsumexp(Z, axis=1) - Z[np.arange(len(y)), y]
    return _weighted_mean(nll, sw) + 0.5 * alpha * np.sum(W * W)


# --- least squares ---------------------------------------------------------------------------
def _lstsq(X, Y, sw=None):
    A = np.column_stack([X, np.ones(len(X))])
    if sw is not None:
        r = np.sqrt(sw)
        A, Y = A * r[:, None], (Y.T * r).T
    sol = np.linalg.lstsq(A, Y, rcond=None)[0]
    return sol[:-1], sol[-1]


def _gd_linear(**kw):
    # Heavy-ball GD on standardized data: the Hessian 2/n [X 1]^T [X 1] has eigenvalues in
    # about [0.9, 3.5]; lr 0.1 with momentum 0.9 converges at rate ~sqrt(0.9) per epoch.
    params = dict(optimizer="momentum", learning_rate=0.1, batch_size=None, max_iter=1500, tol=None,
                  penalty=None, shuffle=False)
    params.update(kw)
    return LinearRegression(**params)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("n_outputs", [1, 3], ids=["single", "multi"])
def test_least_squares_equals_lstsq(n_outputs, weighted):
    X, rng = _standard_normal(80, 4, seed=n_outputs)
    W_true = rng.standard_normal((4, n_outputs))
    Y = X @ W_true + rng.standard_normal(n_outputs) + 0.5 * rng.standard_normal((80, n_outputs))
    if n_outputs == 1:
        Y = Y[:, 0]
    sw = rng.uniform(0.1, 5.0, 80) if weighted else None
    W_ref, b_ref = _lstsq(X, Y, sw)
    reg = _gd_linear().fit(X, Y, sample_weight=sw)
    coef = reg.coef_.T if n_outputs > 1 else reg.coef_
    assert_allclose(coef, W_ref, rtol=1e-9, atol=1e-10)
    assert_allclose(reg.intercept_, b_ref, rtol=1e-9, atol=1e-10)
    # the learning curve ends at the optimal objective
    assert reg.loss_curve_[-1] == pytest.approx(squared_objective(X, Y, W_ref, b_ref, sw), rel=1e-9)


def test_weighted_least_squares_differs_from_unweighted():
    """The weighted case is not vacuous: weights move the optimum, and GD follows them."""
    X, rng = _standard_normal(80, 4, seed=1)
    y = X @ rng.standard_normal(4) + 0.5 * rng.standard_normal(80)
    sw = rng.uniform(0.1, 5.0, 80)
    assert not np.allclose(_lstsq(X, y, sw)[0], _lstsq(X, y)[0], rtol=1e-3)
    assert_allclose(_gd_linear().fit(X, y, sample_weight=sw).coef_, _lstsq(X, y, sw)[0], rtol=1e-9)


def test_integer_weights_equal_repeated_samples():
    X, rng = _standard_normal(40, 3, seed=5)
    y = X @ rng.standard_normal(3) + rng.standard_normal(40)
    counts = rng.integers(0, 4, 40)
    a = _gd_linear(max_iter=200).fit(X, y, sample_weight=counts)
    b = _gd_linear(max_iter=200).fit(np.repeat(X, counts, axis=0), np.repeat(y, counts))
    assert_allclose(a.coef_, b.coef_, rtol=1e-10)
    assert_allclose(a.intercept_, b.intercept_, rtol=1e-10)


def test_grad_tol_stops_at_the_optimum():
    X, rng = _standard_normal(60, 3, seed=2)
    y = X @ rng.standard_normal(3) + 1.0 + rng.standard_normal(60)
    reg = _gd_linear(max_iter=5000, grad_tol=1e-10).fit(X, y)
    assert reg.n_iter_ < 5000
    W_ref, b_ref = _lstsq(X, y)
    assert_allclose(reg.coef_, W_ref, rtol=1e-8)
    assert_allclose(reg.intercept_, b_ref, rtol=1e-8)


# --- L2 logistic regression vs lbfgs --------------------------------------------------------
def _sklearn_l2(X, y, C, sw):
    clf = SkLogisticRegression(C=C, tol=1e-12, max_iter=10000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. lbfgs' "ABNORMAL" line search at tol=1e-12
        clf.fit(X, y, sample_weight=sw)
    return clf


def _classification(n_classes, seed):
    X, rng = _standard_normal(120, 4, seed=seed)
    W = rng.standard_normal((4, n_classes))
    y = np.argmax(X @ W + rng.gumbel(size=(120, n_classes)), axis=1)
    if n_classes == 2:
        y = (X @ W[:, 0] + rng.logistic(size=120) > 0).astype(int)
    return X, y, rng


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("n_classes", [2, 3], ids=["binary", "multinomial"])
def test_l2_logistic_equals_lbfgs(n_classes, weighted):
    X, y, rng = _classification(n_classes, seed=10 + n_classes)
    sw = rng.uniform(0.2, 3.0, len(y)) if weighted else None
    C = 0.5
    alpha = 1.0 / (C * (len(y) if sw is None else np.sum(sw)))
    ref = _sklearn_l2(X, y, C, sw)
    clf = LogisticRegression(optimizer="momentum", learning_rate=0.5, batch_size=None, max_iter=3000,
                             tol=None, grad_tol=1e-10, penalty="l2", alpha=alpha, shuffle=False)
    clf.fit(X, y, sample_weight=sw)
    if n_classes == 2:
        obj = binary_objective(X, y, clf.coef_[0], clf.intercept_[0], alpha, sw)
        obj_ref = binary_objective(X, y, ref.coef_[0], ref.intercept_[0], alpha, sw)
    else:
        obj = multinomial_objective(X, y, clf.coef_.T, clf.intercept_, alpha, sw)
        obj_ref = multinomial_objective(X, y, ref.coef_.T, ref.intercept_, alpha, sw)
    assert abs(obj - obj_ref) / obj_ref < 1e-6
    # strongly convex: the minimiser is unique, so the parameters agree too
    assert_allclose(clf.coef_, ref.coef_, rtol=1e-4, atol=1e-5)
    assert_allclose(clf.intercept_, ref.intercept_, rtol=1e-4, atol=1e-5)
    # and the learning curve's last value is (up to one step) that objective
    assert clf.loss_curve_[-1] == pytest.approx(obj, rel=1e-6)


# --- L1 least squares vs Lasso ---------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.1, 0.4])
def test_l1_proximal_gd_equals_lasso(alpha):
    X, rng = _standard_normal(100, 8, seed=7)
    w_true = np.array([2.0, -1.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.3])
    y = X @ w_true + 0.7 + 0.5 * rng.standard_normal(100)
    ref = Lasso(alpha=alpha / 2, tol=1e-14, max_iter=100000).fit(X, y)
    # Proximal (ISTA) steps, lr below 1/L with L = 2 * lambda_max([X 1]^T [X 1] / n).
    reg = LinearRegression(optimizer="sgd", learning_rate=0.2, batch_size=None, max_iter=3000, tol=None,
                           penalty="l1", alpha=alpha, shuffle=False).fit(X, y)
    obj = squared_objective(X, y, reg.coef_, reg.intercept_, l1=alpha)
    obj_ref = squared_objective(X, y, ref.coef_, ref.intercept_, l1=alpha)
    assert abs(obj - obj_ref) / obj_ref < 1e-6
    zeros = ref.coef_ == 0.0
    assert zeros.any() and not zeros.all()  # the case is informative
    assert_array_equal(reg.coef_ == 0.0, zeros)
    assert_allclose(reg.coef_, ref.coef_, rtol=1e-6, atol=1e-8)
