"""Plain NumPy gradient descent: the vectorised baseline the comparison times fastgd against,
and the exact objective / optimum used to measure sub-optimality.

Conventions are fastgd's (README, "Conventions"): squared loss ``(y_hat - y)^2`` summed over
outputs, binary log loss, softmax cross-entropy; objective = mean loss + ``alpha/2 * ||W||^2``
(intercept not penalised). Parameters are one ``(p + 1, K)`` matrix, intercept last.
"""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import expit, log_expit, logsumexp, softmax


def _margins(X, W):
    return np.asarray(X @ W[:-1]) + W[-1]


def loss_and_dz(z, y, loss):
    """Per-sample loss values and d loss / d z (``y``: (n, 1) targets or class indices)."""
    if loss == "squared":
        r = z - y
        return np.sum(r * r, axis=1), 2.0 * r
    if loss == "log":
        value = -log_expit(-z[:, 0]) - y[:, 0] * z[:, 0]
        return value, expit(z) - y
    idx = y[:, 0].astype(np.intp)
    rows = np.arange(z.shape[0])
    value = logsumexp(z, axis=1) - z[rows, idx]
    d = softmax(z, axis=1)
    d[rows, idx] -= 1.0
    return value, d


def objective(X, y, W, loss, alpha):
    """Mean loss + alpha/2 ||W[:-1]||^2, in float64."""
    W = np.asarray(W, dtype=np.float64)
    z = _margins(X, W).astype(np.float64, copy=False)
    value, _ = loss_and_dz(z, np.asarray(y, dtype=np.float64), loss)
    return float(value.mean() + 0.5 * alpha * np.sum(W[:-1] ** 2))


def objective_and_grad(X, y, W, loss, alpha):
    z = _margins(X, W)
    value, dz = loss_and_dz(z, y, loss)
    n = X.shape[0]
    g = np.empty_like(W)
    g[:-1] = np.asarray(X.T @ dz) / n + alpha * W[:-1]
    g[-1] = dz.sum(axis=0) / n
    return float(value.mean() + 0.5 * alpha * np.sum(W[:-1] ** 2)), g


def optimum(X, y, loss, alpha, K=1, W0=None):
    """The minimiser of the objective to (near) machine precision, float64.

    Squared loss: the normal equations (centred, so the intercept is free). Otherwise L-BFGS
    with very tight tolerances, from ``W0`` if given.
    """
    X64 = X.astype(np.float64) if X.dtype != np.float64 else X
    y64 = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
    n, p = X.shape
    if loss == "squared" and not sp.issparse(X64):
        mx = X64.mean(axis=0)
        my = y64.mean(axis=0)
        Xc = X64 - mx
        A = Xc.T @ Xc + 0.5 * n * alpha * np.eye(p)
        w = np.linalg.solve(A, Xc.T @ (y64 - my))
        return np.vstack([w, my - mx @ w])
    shape = (p + 1, K)
    x0 = np.zeros(shape).ravel() if W0 is None else np.asarray(W0, dtype=np.float64).ravel()

    def fg(x):
        f, g = objective_and_grad(X64, y64, x.reshape(shape), loss, alpha)
        return f, g.ravel()

    res = minimize(fg, x0, jac=True, method="L-BFGS-B",
                   options=dict(maxiter=20000, maxcor=30, ftol=1e-16, gtol=1e-12))
    return res.x.reshape(shape)


def epoch(X, y, order, W, lr, alpha, batch_size, loss):
    """One epoch of plain mini-batch SGD, vectorised per batch, in place on ``W``:
    ``W <- W - lr * (mean batch gradient + alpha * [w; 0])``. ``batch_size=None``: full
    batch (one step, no gather)."""
    n = X.shape[0]
    dt = W.dtype.type
    lr_, alpha_ = dt(lr), dt(alpha)
    if batch_size is None or batch_size >= n:
        z = X @ W[:-1] + W[-1]
        _, dz = loss_and_dz(z, y, loss)
        g_w = X.T @ dz
        g_w *= dt(1.0 / n)
        g_w += alpha_ * W[:-1]
        W[-1] -= lr_ * dz.mean(axis=0, dtype=W.dtype)
        W[:-1] -= lr_ * g_w
        return
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        Xb = X[idx]
        z = Xb @ W[:-1] + W[-1]
        _, dz = loss_and_dz(z, y[idx], loss)
        g_w = Xb.T @ dz
        g_w *= dt(1.0 / len(idx))
        g_w += alpha_ * W[:-1]
        W[-1] -= lr_ * dz.mean(axis=0, dtype=W.dtype)
        W[:-1] -= lr_ * g_w


def full_gradient_lstsq(X, w, y):
    """The textbook least-squares gradient ``X.T @ (X @ w - y)`` (two passes over X)."""
    return X.T @ (X @ w - y)
