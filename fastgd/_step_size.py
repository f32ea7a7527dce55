"""The step size derived from the data (``learning_rate="auto"``).

Gradient descent with step ``eta`` decreases an ``L``-smooth objective at every step when
``eta <= 1/L`` (the descent lemma). For fastgd's objective::

    J(w) = (1/n) sum_i s_i loss(x~_i . w, y_i) + l2/2 ||w||^2,     x~_i = [x_i, 1]

the Hessian is bounded by ``L = c * lambda_max(G) + l2`` where ``G = (1/n) X~^T S X~`` is the
sample-weighted Gram matrix of the data with its intercept column of ones, and ``c`` bounds
the loss's second derivative in the margin: 2 for the squared error ``(y_hat - y)^2`` of the
reference notes, 1/4 for the binary log loss, 1/2 for the softmax cross-entropy (the largest
eigenvalue of ``diag(p) - p p^T``), 2 for the squared hinge, modified Huber and squared
epsilon-insensitive losses, 1 for Huber's. The hinge, perceptron and epsilon-insensitive
losses have no such bound (their derivative jumps at a kink, so no constant step makes every
step a descent): for them ``learning_rate="auto"`` with SGD or momentum is refused with an
error that says to give a number (or to use an adaptive optimizer, whose step does not depend
on ``c``). ``lambda_max(G)`` is estimated by power iteration, each iteration one pass of the
backend's compiled full-gradient kernel (the gradient of the squared loss at ``y = 0`` is ``2 G v``); CSR data uses SciPy's sparse products.

A step on a batch of ``b`` samples drawn without replacement sees the *expected smoothness*
(Gower et al., "SGD: General Analysis and Improved Rates", ICML 2019, b-nice sampling)::

    L_b = n (b - 1) / (b (n - 1)) * L + (n - b) / (b (n - 1)) * L_max

between ``L_max = c * max_i s_i ||x~_i||^2 + l2`` (one sample, the bound SAG-type solvers use)
and ``L`` (the full batch). The step is ``1/L`` for full-batch gradient descent and ``1/(2 L_b)``
for stochastic and mini-batch steps (the constant step of that analysis). Momentum ``mu``
multiplies the long-run step by ``1/(1 - mu)``; stochastic momentum steps are scaled by
``1 - mu`` so that their noise is that of plain SGD at the same rate, while full-batch heavy
ball and Nesterov are stable at ``1/L``.

Adaptive optimizers normalise the gradient per coordinate, so a curvature bound does not
give their step: they use the defaults of ``torch.optim`` (:data:`ADAPTIVE_DEFAULTS`).
"""

import numpy as np
import scipy.sparse as sp

from fastgd import _contract as C
from fastgd import losses
from fastgd._backends import _fork_safety
from fastgd._solver import _multicore_kernel

# Bound on d^2 loss / d z^2 per loss (see the module docstring).
CURVATURE = {C.LOSS_SQUARED: 2.0, C.LOSS_LOG: 0.25, C.LOSS_SOFTMAX: 0.5, C.LOSS_SQUARED_HINGE: 2.0,
             C.LOSS_MODIFIED_HUBER: 2.0, C.LOSS_HUBER: 1.0, C.LOSS_SQUARED_EPSILON_INSENSITIVE: 2.0}

# learning_rate="auto" for the adaptive optimizers: torch.optim's defaults.
ADAPTIVE_DEFAULTS = {C.OPT_ADAGRAD: 1e-2, C.OPT_RMSPROP: 1e-2, C.OPT_ADAM: 1e-3, C.OPT_ADAMAX: 2e-3,
                     C.OPT_NADAM: 2e-3}

# Power iteration stops when successive estimates agree to POWER_RTOL: a step from an estimate
# a few per cent low is still well inside gradient descent's stability limit 2/L, and a rise
# it might cause is caught by the epoch driver's backtracking.
POWER_ITERATIONS = 20
POWER_RTOL = 1e-2
# Mini-batch steps estimate L on at most this many rows drawn at random: L enters L_b next to
# the exact L_max and a safety factor of 2, and a full pass per iteration over a large data
# set would cost several epochs.
GRAM_SAMPLE_ROWS = 50_000
# ... and on a sample of at most this many bytes (at least GRAM_SAMPLE_MIN_ROWS rows): the
# sample is a copy. 50,000 rows of a 500,000 x 100 float64 X were 40 MB, a tenth of X, the
# largest allocation of a default fit.
GRAM_SAMPLE_BYTES = 8 << 20
GRAM_SAMPLE_MIN_ROWS = 1_000


def gram_top_eigenvalue(X, sw, backend=None, n_iter=POWER_ITERATIONS, rtol=POWER_RTOL, seed=0):
    """Largest eigenvalue of ``(1/n) X~^T diag(sw) X~`` with ``X~ = [X, 1]``, by power iteration.

    Parameters
    ----------
    X : ndarray (C-contiguous, float32/float64) or CSR matrix of shape (n, p)
    sw : ndarray of shape (n,)
        Non-negative sample weights (in X's dtype).
    backend : module or None
        A backend with ``full_gradient_dense``; its compiled kernel does the dense products.
        ``None`` (or CSR data) uses NumPy / SciPy products.
    n_iter : int
        Maximum number of power iterations (each one pass over X).
    rtol : float
        Stop when successive estimates agree to this relative tolerance.

    Returns
    -------
    float
        The estimate, from below (a Rayleigh quotient); power iteration converges to the top
        eigenvalue at the rate of the gap to the second, and the step rule's safety margins
        (and the backtracking of the epoch driver) absorb the remainder.
    """
    n, p = X.shape
    dtype = X.dtype
    v = np.random.default_rng(seed).random(p + 1) + 0.5  # positive start: overlaps the top eigenvector
    v /= np.linalg.norm(v)
    # NumPy's two products on data below the chunked kernels' threshold: as fast, and a first
    # fit on small data compiles no multi-core kernel (Numba: 4 s of a cold fit's 11)
    if (sp.issparse(X) or backend is None or not _multicore_kernel(backend, "full_gradient_dense")
            or n * (p + 1) < C.CHUNKED_MIN_WORK):
        def gram_times(u):
            z = X @ u[:-1] + u[-1]
            wz = sw * z
            return np.concatenate([X.T @ wz, [wz.sum()]]) / n
    else:
        y0 = np.zeros((n, 1), dtype=dtype)
        coef = np.empty((p + 1, 1), dtype=dtype)
        grad = np.empty_like(coef)
        work = np.zeros((C.WORK_ROWS, 1), dtype=dtype)
        codes = np.zeros(C.N_CODES, dtype=np.int64)
        codes[C.C_LOSS] = C.LOSS_SQUARED

        _fork_safety.note_multicore_run()

        def gram_times(u):
            coef[:, 0] = u
            backend.full_gradient_dense(X, y0, sw, coef, codes, grad, work)
            return 0.5 * grad[:, 0].astype(np.float64)

    estimate = 0.0
    for _ in range(n_iter):
        with np.errstate(over="ignore", invalid="ignore"):  # huge features: reported by the caller
            w = np.asarray(gram_times(v), dtype=np.float64)
            new = losses.vector_dot(v, w)  # Rayleigh quotient of the unit vector v
            top = float(np.max(np.abs(w), initial=0.0))
            if not np.isfinite(top) or not np.isfinite(new):
                return np.inf
            if top == 0.0:
                return 0.0
            v = w / top  # scaled first: the norm of w itself can overflow
            v /= np.linalg.norm(v)
        if abs(new - estimate) <= rtol * new:
            return new
        estimate = new
    return estimate


def max_row_norm_squared(X, sw):
    """``max_i sw_i * (||x_i||^2 + 1)``: the largest single-sample Gram eigenvalue (intercept
    column included)."""
    if sp.issparse(X):
        sq = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
    else:
        sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    return float(np.max(sw.astype(np.float64) * (sq + 1.0))) if len(sq) else 0.0


def expected_smoothness(L, L_max, n, b):
    """Smoothness seen by a step on ``b`` of ``n`` samples drawn without replacement
    (``n=None``: from an unbounded stream, i.e. with replacement)."""
    if n is None:
        return ((b - 1) * L + L_max) / b
    if b >= n or n <= 1:
        return L
    return (n * (b - 1) * L + (n - b) * L_max) / (b * (n - 1))


def saga_learning_rate(X, sw, train_idx, codes, hp):
    """SAGA's step ``1 / (3 L_max)``, ``L_max = c * max_i s_i ||x~_i||^2 + l2`` over the training
    samples (Defazio, Bach and Lacoste-Julien 2014, Theorem 1: linear convergence at this step
    for strongly convex objectives, and convergence without strong convexity)."""
    rows = train_idx if len(train_idx) != X.shape[0] else slice(None)
    with np.errstate(over="ignore"):
        L_max = (CURVATURE[int(codes[C.C_LOSS])] * max_row_norm_squared(X[rows], np.asarray(sw)[rows])
                 + float(hp[C.H_L2]))
    if not np.isfinite(L_max):
        raise ValueError("learning_rate='auto' cannot size a step for these features: a row's squared norm "
                         "overflows float64. Standardise the features, e.g. make_pipeline(StandardScaler(), "
                         "estimator).")
    return 1.0 / (3.0 * L_max) if L_max > 0 else 1.0


def has_auto_step(codes):
    """Whether ``learning_rate="auto"`` has a step for the optimizer and loss in ``codes``
    (every adaptive optimizer; SGD, momentum and SAGA on a loss with a curvature bound)."""
    return int(codes[C.C_OPTIMIZER]) not in (C.OPT_SGD, C.OPT_SAGA) or int(codes[C.C_LOSS]) in CURVATURE


def _gram_sample_rows(X):
    """How many rows of ``X`` the mini-batch step's Gram estimate samples (see
    :data:`GRAM_SAMPLE_ROWS`, :data:`GRAM_SAMPLE_BYTES`)."""
    if sp.issparse(X):
        row_bytes = X.nnz / max(X.shape[0], 1) * (X.data.itemsize + X.indices.itemsize)
    else:
        row_bytes = X.shape[1] * X.dtype.itemsize
    by_bytes = int(GRAM_SAMPLE_BYTES // max(row_bytes, 1))
    return min(GRAM_SAMPLE_ROWS, max(GRAM_SAMPLE_MIN_ROWS, by_bytes))


def auto_learning_rate(X, sw, train_idx, codes, hp, batch_size, backend=None, streaming=False):
    """The step size ``learning_rate="auto"`` stands for, for this data and configuration.

    ``streaming=True`` (the first ``partial_fit`` call) treats the data as one chunk of a
    longer stream: every step, even on the whole chunk, is a stochastic step on the stream's
    objective, so the mini-batch rule applies with ``n`` unbounded.

    ``codes`` / ``hp`` are the kernel arrays (loss, optimizer, momentum and L2 strength are
    read from them); ``sw`` are the sample weights as the kernels see them (mean 1 over
    ``train_idx``, the samples trained on; the others, held out, do not count).
    """
    optimizer = int(codes[C.C_OPTIMIZER])
    loss_code = int(codes[C.C_LOSS])
    if not has_auto_step(codes):
        kind = "SAGA" if optimizer == C.OPT_SAGA else "SGD"
        raise ValueError(
            f"learning_rate='auto' cannot size {kind} steps for the {losses.NAMES.get(loss_code, loss_code)} loss: "
            "its gradient jumps at a kink, so no curvature bound gives a step that always descends. Give "
            "learning_rate a number (e.g. 0.01 and a decaying schedule), or use an adaptive optimizer "
            "('adam', 'adagrad', ...), whose 'auto' step does not depend on the loss."
        )
    if optimizer == C.OPT_SAGA:
        return saga_learning_rate(X, sw, train_idx, codes, hp)
    if optimizer != C.OPT_SGD:
        if optimizer not in ADAPTIVE_DEFAULTS:
            raise ValueError(f"learning_rate='auto' has no step for optimizer code {optimizer}: an optimizer "
                             "missing from fastgd._step_size.ADAPTIVE_DEFAULTS; give learning_rate a number.")
        return ADAPTIVE_DEFAULTS[optimizer]
    n = len(train_idx)
    if n != X.shape[0]:
        # Held-out samples get weight 0; the Gram matrix is a mean over the trained ones.
        held = np.ones(X.shape[0], dtype=bool)
        held[train_idx] = False
        sw = sw.copy()
        sw[held] = 0
        sw *= sw.dtype.type(X.shape[0] / n)
    c = CURVATURE[int(loss_code)]
    l2 = float(hp[C.H_L2])
    full = batch_size >= n and not streaming
    sample = _gram_sample_rows(X)
    if not full and X.shape[0] > sample:
        rows = np.sort(np.random.default_rng(0).choice(X.shape[0], sample, replace=False))
        L = c * gram_top_eigenvalue(X[rows], np.ascontiguousarray(sw[rows]), backend) + l2
    else:
        L = c * gram_top_eigenvalue(X, sw, backend) + l2
    if not np.isfinite(L):
        raise ValueError("learning_rate='auto' cannot size a step for these features: their Gram matrix "
                         "overflows float64 (feature values near 1e154 or above). Standardise the features, "
                         "e.g. make_pipeline(StandardScaler(), estimator).")
    if full:
        step = 1.0 / L if L > 0 else 1.0
    else:
        with np.errstate(over="ignore"):
            L_max = c * max_row_norm_squared(X, sw * sw.dtype.type(n / X.shape[0])) + l2
        if not np.isfinite(L_max):
            raise ValueError("learning_rate='auto' cannot size a step for these features: a row's squared "
                             "norm overflows float64. Standardise the features, e.g. "
                             "make_pipeline(StandardScaler(), estimator).")
        L_b = expected_smoothness(L, L_max, None if streaming else n, min(batch_size, n))
        step = 0.5 / L_b if L_b > 0 else 1.0
        step *= 1.0 - float(hp[C.H_MOMENTUM])
    return step
