"""Loss functions of a linear model, as functions of the margins ``z = X @ W + b``.

Each loss gives the per-sample value and its derivative with respect to the margins, in
NumPy; the compiled kernels implement the same formulas per sample.

============  ===========================================  ============================
loss          per-sample value                             d value / d z
============  ===========================================  ============================
squared       sum_k (z_k - y_k)^2                          2 (z - y)
log (binary)  log(1 + exp(z)) - y z,  y in {0, 1}          sigmoid(z) - y
softmax       logsumexp(z) - z_y,     y a class index      softmax(z) - onehot(y)
============  ===========================================  ============================

The cost is the (sample-weighted) mean of the per-sample value: for the squared loss this is
the mean squared error ``(1/n) sum (y_hat - y)^2`` of the reference notes (summed over outputs,
so each output trains exactly as it would alone). Log and softmax losses are computed stably:
margins of +-1000 neither overflow nor lose the answer.
"""

import numpy as np
from scipy.special import expit, log_expit, logsumexp, softmax

from fastgd import _contract as C


def squared(z, y):
    """Per-sample squared error (summed over outputs) and its gradient in ``z``."""
    r = z - y
    return np.sum(r * r, axis=1), 2.0 * r


def log_loss(z, y):
    """Binary log loss for margins ``z`` (n, 1) and labels ``y`` (n, 1) in {0, 1}."""
    # log(1 + e^z) - y z = -log_expit(-z) - y z, stable for any |z|.
    value = -log_expit(-z[:, 0]) - y[:, 0] * z[:, 0]
    return value, expit(z) - y


def softmax_loss(z, y):
    """Multinomial cross-entropy for margins ``z`` (n, K) and class indices ``y`` (n, 1)."""
    idx = y[:, 0].astype(np.intp)
    lse = logsumexp(z, axis=1)
    value = lse - z[np.arange(z.shape[0]), idx]
    d = softmax(z, axis=1)
    d[np.arange(z.shape[0]), idx] -= 1.0
    return value, d


BY_CODE = {C.LOSS_SQUARED: squared, C.LOSS_LOG: log_loss, C.LOSS_SOFTMAX: softmax_loss}


def penalty_value(coef, l2, l1):
    """Penalty ``l1 * ||w||_1 + l2 / 2 * ||w||^2`` of the weights (the intercept row excluded)."""
    w = coef[:-1]
    value = 0.0
    if l1 > 0:
        value += l1 * float(np.abs(w).sum(dtype=np.float64))
    if l2 > 0:
        v = w.ravel().astype(np.float64, copy=False)
        value += 0.5 * l2 * float(np.dot(v, v))
    return value


def objective(X, y, sw, coef, loss_code, l2, l1):
    """Weighted mean loss plus penalty at ``coef``: the quantity gradient descent minimises."""
    z = X @ coef[:-1] + coef[-1]
    value, _ = BY_CODE[loss_code](np.asarray(z, dtype=np.float64), y)
    return float(np.dot(sw, value) / sw.sum()) + penalty_value(coef, l2, l1)
