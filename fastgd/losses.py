"""Loss functions of a linear model, as functions of the margins ``z = X @ W + b``.

Each loss gives the per-sample value and its derivative with respect to the margins, in
NumPy; the compiled kernels implement the same formulas per sample.

===========================  ================================================  =========================
loss                         per-sample value                                  d value / d z
===========================  ================================================  =========================
squared                      sum_k (z_k - y_k)^2                               2 (z - y)
log (binary)                 log(1 + exp(z)) - y z,  y in {0, 1}               sigmoid(z) - y
softmax                      logsumexp(z) - z_y,     y a class index           softmax(z) - onehot(y)
hinge                        max(0, 1 - s z)                                   -s where s z <= 1
squared_hinge                max(0, 1 - s z)^2                                 -2 s max(0, 1 - s z)
modified_huber               0 / (1 - s z)^2 / -4 s z  (s z >= 1 / >= -1 / <)  0 / -2 s (1 - s z) / -4 s
perceptron                   max(0, -s z)                                      -s where s z <= 0
huber (delta)                r^2/2 (|r| <= delta), delta (|r| - delta/2)       clip(r, -delta, delta)
epsilon_insensitive (eps)    max(0, |r| - eps)                                 sign(r) where |r| > eps
squared_epsilon_insensitive  max(0, |r| - eps)^2                               2 sign(r) max(0, |r| - eps)
===========================  ================================================  =========================

with ``r = z - y`` and, for the binary losses after log, the target ``y`` in {0, 1} read as
``s = 2 y - 1`` in {-1, 1}: the encoding the log loss uses, converted inside the loss, so every
binary loss takes the same targets. These are scikit-learn's ``SGDClassifier`` /
``SGDRegressor`` losses with its derivative at each kink (hinge and perceptron take ``-s`` on
the kink itself; note that fastgd's squared error has no factor 1/2, while Huber's quadratic
part has it, as in scikit-learn). ``delta`` and ``eps`` are the loss parameter
(``H_LOSS_PARAM`` of the kernel contract; ``epsilon`` of the scikit-learn estimators).

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


def _sign_target(y):
    """Binary targets in {0, 1} as signs in {-1, 1}."""
    return 2.0 * y[:, 0] - 1.0


def _one_margin(value, d):
    return value, d[:, None]


def hinge(z, y):
    """Hinge loss ``max(0, 1 - s z)`` (``s = 2 y - 1``), derivative ``-s`` where ``s z <= 1``."""
    s = _sign_target(y)
    active = s * z[:, 0] <= 1.0
    return _one_margin(np.where(active, 1.0 - s * z[:, 0], 0.0), np.where(active, -s, 0.0))


def perceptron(z, y):
    """Perceptron loss ``max(0, -s z)``, derivative ``-s`` where ``s z <= 0``."""
    s = _sign_target(y)
    active = s * z[:, 0] <= 0.0
    return _one_margin(np.where(active, -s * z[:, 0], 0.0), np.where(active, -s, 0.0))


def squared_hinge(z, y):
    """Squared hinge ``max(0, 1 - s z)^2``."""
    s = _sign_target(y)
    gap = np.maximum(1.0 - s * z[:, 0], 0.0)
    return _one_margin(gap * gap, -2.0 * s * gap)


def modified_huber(z, y):
    """Modified Huber (Zhang 2004): quadratically smoothed hinge, linear below ``s z = -1``."""
    s = _sign_target(y)
    sz = s * z[:, 0]
    inner = (sz >= -1.0) & (sz < 1.0)
    value = np.where(sz >= 1.0, 0.0, np.where(inner, (1.0 - sz) ** 2, -4.0 * sz))
    d = np.where(sz >= 1.0, 0.0, np.where(inner, -2.0 * s * (1.0 - sz), -4.0 * s))
    return _one_margin(value, d)


def huber(z, y, delta):
    """Huber loss of ``r = z - y``: quadratic ``r^2 / 2`` within ``delta``, linear beyond."""
    r = z[:, 0] - y[:, 0]
    inside = np.abs(r) <= delta
    value = np.where(inside, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    return _one_margin(value, np.clip(r, -delta, delta))


def epsilon_insensitive(z, y, epsilon):
    """``max(0, |z - y| - epsilon)``, derivative ``sign(z - y)`` outside the tube."""
    r = z[:, 0] - y[:, 0]
    excess = np.maximum(np.abs(r) - epsilon, 0.0)
    return _one_margin(excess, np.where(excess > 0, np.sign(r), 0.0))


def squared_epsilon_insensitive(z, y, epsilon):
    """``max(0, |z - y| - epsilon)^2``."""
    r = z[:, 0] - y[:, 0]
    excess = np.maximum(np.abs(r) - epsilon, 0.0)
    return _one_margin(excess * excess, 2.0 * np.sign(r) * excess)


BY_CODE = {C.LOSS_SQUARED: squared, C.LOSS_LOG: log_loss, C.LOSS_SOFTMAX: softmax_loss, C.LOSS_HINGE: hinge,
           C.LOSS_SQUARED_HINGE: squared_hinge, C.LOSS_MODIFIED_HUBER: modified_huber,
           C.LOSS_PERCEPTRON: perceptron, C.LOSS_HUBER: huber, C.LOSS_EPSILON_INSENSITIVE: epsilon_insensitive,
           C.LOSS_SQUARED_EPSILON_INSENSITIVE: squared_epsilon_insensitive}
# Losses whose function takes the loss parameter (``H_LOSS_PARAM``) as a third argument.
PARAMETRISED = (C.LOSS_HUBER, C.LOSS_EPSILON_INSENSITIVE, C.LOSS_SQUARED_EPSILON_INSENSITIVE)
# Losses without a Lipschitz-continuous gradient (a kink where the derivative jumps).
NON_SMOOTH = (C.LOSS_HINGE, C.LOSS_PERCEPTRON, C.LOSS_EPSILON_INSENSITIVE)
NAMES = {C.LOSS_SQUARED: "squared_error", C.LOSS_LOG: "log_loss", C.LOSS_SOFTMAX: "softmax",
         C.LOSS_HINGE: "hinge", C.LOSS_SQUARED_HINGE: "squared_hinge", C.LOSS_MODIFIED_HUBER: "modified_huber",
         C.LOSS_PERCEPTRON: "perceptron", C.LOSS_HUBER: "huber", C.LOSS_EPSILON_INSENSITIVE: "epsilon_insensitive",
         C.LOSS_SQUARED_EPSILON_INSENSITIVE: "squared_epsilon_insensitive"}


def evaluate(loss_code, z, y, param=0.0):
    """Per-sample values ``(n,)`` and derivatives ``(n, K)`` of loss ``loss_code`` at margins
    ``z`` (n, K), with the loss parameter ``param`` where the loss has one."""
    fn = BY_CODE[loss_code]
    return fn(z, y, param) if loss_code in PARAMETRISED else fn(z, y)


def vector_dot(a, b):
    """``sum(a * b)`` of two 1-D vectors as a Python float, without the BLAS. NumPy's ``dot``
    hands vectors of more than a few thousand entries to the BLAS's threads, which on a
    loaded machine wait for a core: measured at load average 2.8 on 2 cores, a median 12 ms
    for 12,000 float64 entries and 16 ms for 2^21, against 8 us and 2.3 ms for this (one
    thread; 2 us and 0.5 ms for ``dot`` on a quiet machine). Used for the per-epoch and
    per-call sums, where that wait would dwarf the work."""
    return float(np.einsum("i,i->", a, b))


def penalty_value(coef, l2, l1):
    """Penalty ``l1 * ||w||_1 + l2 / 2 * ||w||^2`` of the weights (the intercept row excluded)."""
    w = coef[:-1]
    value = 0.0
    if l1 > 0:
        value += l1 * float(np.abs(w).sum(dtype=np.float64))
    if l2 > 0:
        v = w.ravel().astype(np.float64, copy=False)
        value += 0.5 * l2 * vector_dot(v, v)
    return value


def objective(X, y, sw, coef, loss_code, l2, l1, loss_param=0.0):
    """Weighted mean loss plus penalty at ``coef``: the quantity gradient descent minimises."""
    z = X @ coef[:-1] + coef[-1]
    value, _ = evaluate(loss_code, np.asarray(z, dtype=np.float64), y, loss_param)
    return vector_dot(sw, value) / float(sw.sum()) + penalty_value(coef, l2, l1)
