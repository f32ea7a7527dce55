"""The scalar rules of scikit-learn-semantics SGD, written once for both compiled engines.

This module is the single source of the per-sample rules that :class:`fastgd.SGDClassifier`
and :class:`fastgd.SGDRegressor` follow (scikit-learn's ``SGDClassifier`` / ``SGDRegressor``
conventions): the losses and their derivatives, the learning-rate rules, the
passive-aggressive step, the L2 decay factor, the cumulative L1 truncation of Tsuruoka et al.
(2009), the penalty term of the stopping objective and the bookkeeping of the lazily averaged
weights. It is written in Cython's pure-Python mode:

- ``_cython/_sgd_kernels.pyx`` ``include``\\ s this file, so every rule becomes an inline
  ``nogil`` C function of the Cython engine;
- ``_numba_sgd.py`` imports it and wraps every rule with ``njit(inline="always")``.

The epoch loops that call these rules are written per engine; the rules cannot drift apart.
The NumPy reference (``_reference_sgd.py``) is deliberately an independent implementation.

Integer codes
-------------
``codes`` (int64) and ``hp`` (float64) arrays carry the configuration into a kernel, and the
float64 ``scalars`` array carries the running scalar state from one epoch call to the next;
the ``C_*``, ``H_*`` and ``S_*`` names below are their slots.
"""

try:
    import cython
except ImportError:  # Cython is needed to build, not to run the Numba engine
    from fastgd._backends._pure_mode import cython

if not cython.compiled:
    from math import exp, fabs, log, log1p, pow

# --- losses (``codes[C_LOSS]``); ``hp[H_LOSS_PARAM]`` is the threshold / epsilon -----------
LOSS_HINGE = cython.declare(cython.int, 0)  # max(0, thr - y p), y in {-1, 1}; thr 0: perceptron
LOSS_SQUARED_HINGE = cython.declare(cython.int, 1)  # max(0, thr - y p)^2
LOSS_LOG = cython.declare(cython.int, 2)  # log(1 + exp(p)) - y p, y in {0, 1}
LOSS_MODIFIED_HUBER = cython.declare(cython.int, 3)  # smoothed hinge (Zhang 2004)
LOSS_SQUARED = cython.declare(cython.int, 4)  # (p - y)^2 / 2
LOSS_HUBER = cython.declare(cython.int, 5)  # quadratic within epsilon, linear beyond
LOSS_EPSILON_INSENSITIVE = cython.declare(cython.int, 6)  # max(0, |y - p| - epsilon)
LOSS_SQUARED_EPSILON_INSENSITIVE = cython.declare(cython.int, 7)  # max(0, |y - p| - epsilon)^2

# --- penalties (``codes[C_PENALTY]``), ordered as scikit-learn's: L2 and elastic net decay ----
PENALTY_NONE = cython.declare(cython.int, 0)
PENALTY_L1 = cython.declare(cython.int, 1)
PENALTY_L2 = cython.declare(cython.int, 2)
PENALTY_ELASTICNET = cython.declare(cython.int, 3)

# --- learning-rate rules (``codes[C_LEARNING_RATE]``); the PA rules come last -------------
LR_CONSTANT = cython.declare(cython.int, 1)
LR_OPTIMAL = cython.declare(cython.int, 2)
LR_INVSCALING = cython.declare(cython.int, 3)
LR_ADAPTIVE = cython.declare(cython.int, 4)
LR_PA1 = cython.declare(cython.int, 5)
LR_PA2 = cython.declare(cython.int, 6)

# --- slots ------------------------------------------------------------------------------
C_LOSS = cython.declare(cython.int, 0)
C_PENALTY = cython.declare(cython.int, 1)
C_LEARNING_RATE = cython.declare(cython.int, 2)
C_FIT_INTERCEPT = cython.declare(cython.int, 3)
C_AVERAGE = cython.declare(cython.int, 4)  # averaging starts at step t == this (0: off)
C_SUM_LOSS = cython.declare(cython.int, 5)  # 1: sum the loss and objective of the epoch
N_CODES = 6

H_ALPHA = cython.declare(cython.int, 0)
H_L1_RATIO = cython.declare(cython.int, 1)  # 0 for L2, 1 for L1 (as scikit-learn sets it)
H_ETA0 = cython.declare(cython.int, 2)  # also the PA aggressiveness C
H_POWER_T = cython.declare(cython.int, 3)
H_LOSS_PARAM = cython.declare(cython.int, 4)
H_WEIGHT_POS = cython.declare(cython.int, 5)  # class weight of samples with y > 0
H_WEIGHT_NEG = cython.declare(cython.int, 6)
H_INTERCEPT_DECAY = cython.declare(cython.int, 7)  # 1 dense, 0.01 sparse
H_OPTIMAL_INIT = cython.declare(cython.int, 8)  # t0 of the 'optimal' rule
H_RESCALE_BELOW = cython.declare(cython.int, 9)  # weight scale at which it is folded back in
N_HP = 10

S_INTERCEPT = cython.declare(cython.int, 0)
S_AVERAGE_INTERCEPT = cython.declare(cython.int, 1)
S_T = cython.declare(cython.int, 2)  # step counter, starts at 1 (a float, as scikit-learn's t_)
S_U = cython.declare(cython.int, 3)  # cumulative L1 penalty applied so far
S_ETA = cython.declare(cython.int, 4)  # the current step size ('adaptive' divides it by 5)
S_WSCALE = cython.declare(cython.int, 5)  # weight scale (see below)
S_AVERAGE_A = cython.declare(cython.int, 6)
S_AVERAGE_B = cython.declare(cython.int, 7)
S_SQ_NORM = cython.declare(cython.int, 8)  # running ||w||^2 of the stopping objective
S_L1_NORM = cython.declare(cython.int, 9)  # running ||w||_1 of the stopping objective
N_SCALARS = 10

STATUS_OK = cython.declare(cython.int, 0)
STATUS_NONFINITE = cython.declare(cython.int, 1)

MAX_DLOSS = cython.declare(cython.double, 1e12)

# A shuffled epoch waits on a cache miss per row: both engines ask for the row this many
# samples ahead in the epoch's order, every cache line of it.
PREFETCH_AHEAD = cython.declare(cython.int, 8)
CACHE_LINE = cython.declare(cython.int, 64)

# Weight scale and averaging scalars. Inside a call the compiled kernels store w = wscale * v
# and the average as (aw + average_a * v) / average_b (the lazy form of Bottou and of Xu 2011):
# the L2 decay of every weight is one multiplication of wscale, and a step that leaves w
# unchanged (a hinge margin already met) costs only the margin. Between calls the weights are
# plain vectors again, and wscale, average_a, average_b carry on in ``scalars``, because they
# are part of scikit-learn's semantics: its L1 truncation changes v without the matching change
# to aw, so the average moves by average_a / (average_b * wscale) times the L1 change of w, and
# the first averaged step of a call adds w to the stored average (average_a is 0 then). The
# reference reproduces both on plain vectors.


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def sample_loss(loss: cython.int, y: cython.double, p: cython.double, par: cython.double) -> cython.double:
    """The loss of one sample with target ``y`` and prediction (margin) ``p``."""
    z: cython.double
    if loss == LOSS_HINGE:
        z = p * y
        return par - z if z <= par else 0.0
    if loss == LOSS_SQUARED_HINGE:
        z = par - p * y
        return z * z if z > 0.0 else 0.0
    if loss == LOSS_LOG:
        # log(1 + exp(p)) without overflow, with scikit-learn's branch points
        if p <= -37.0:
            z = exp(p)
        elif p <= -2.0:
            z = log1p(exp(p))
        elif p <= 18.0:
            z = log(1.0 + exp(p))
        elif p <= 33.3:
            z = p + exp(-p)
        else:
            z = p
        return z - y * p
    if loss == LOSS_MODIFIED_HUBER:
        z = p * y
        if z >= 1.0:
            return 0.0
        if z >= -1.0:
            return (1.0 - z) * (1.0 - z)
        return -4.0 * z
    if loss == LOSS_SQUARED:
        return 0.5 * (p - y) * (p - y)
    if loss == LOSS_HUBER:
        z = fabs(y - p)
        if z <= par:
            return 0.5 * z * z
        return par * (z - 0.5 * par)
    z = fabs(y - p) - par
    if loss == LOSS_EPSILON_INSENSITIVE:
        return z if z > 0.0 else 0.0
    return z * z if z > 0.0 else 0.0  # LOSS_SQUARED_EPSILON_INSENSITIVE


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def sample_dloss(loss: cython.int, y: cython.double, p: cython.double, par: cython.double) -> cython.double:
    """d loss / d p of one sample, clipped to +-1e12 as scikit-learn clips it."""
    d: cython.double
    z: cython.double
    e: cython.double
    if loss == LOSS_HINGE:
        d = -y if p * y <= par else 0.0
    elif loss == LOSS_SQUARED_HINGE:
        z = par - p * y
        d = -2.0 * y * z if z > 0.0 else 0.0
    elif loss == LOSS_LOG:
        # sigmoid(p) - y, in the form that is exact for p > -37 and cannot overflow
        if p > -37.0:
            e = exp(-p)
            d = ((1.0 - y) - y * e) / (1.0 + e)
        else:
            d = exp(p) - y
    elif loss == LOSS_MODIFIED_HUBER:
        z = p * y
        if z >= 1.0:
            d = 0.0
        elif z >= -1.0:
            d = 2.0 * (1.0 - z) * -y
        else:
            d = -4.0 * y
    elif loss == LOSS_SQUARED:
        d = p - y
    elif loss == LOSS_HUBER:
        z = p - y
        if fabs(z) <= par:
            d = z
        else:
            d = par if z >= 0.0 else -par
    elif loss == LOSS_EPSILON_INSENSITIVE:
        if y - p > par:
            d = -1.0
        elif p - y > par:
            d = 1.0
        else:
            d = 0.0
    else:  # LOSS_SQUARED_EPSILON_INSENSITIVE
        z = y - p
        if z > par:
            d = -2.0 * (z - par)
        elif z < -par:
            d = 2.0 * (-z - par)
        else:
            d = 0.0
    if d < -MAX_DLOSS:
        return -MAX_DLOSS
    if d > MAX_DLOSS:
        return MAX_DLOSS
    return d


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def step_size(lr: cython.int, eta: cython.double, eta0: cython.double, alpha: cython.double,
              optimal_init: cython.double, t: cython.double, power_t: cython.double) -> cython.double:
    """The step size of step ``t`` (counted from 1).

    ``optimal``: 1 / (alpha (t0 + t - 1)), Bottou's rule, with t0 chosen so that the first
    step is the heuristic initial rate. ``invscaling``: eta0 / t^power_t. ``constant`` and
    ``adaptive``: the current ``eta`` (adaptive divides it by 5 between epochs on a stall).
    """
    if lr == LR_OPTIMAL:
        return 1.0 / (alpha * (optimal_init + t - 1.0))
    if lr == LR_INVSCALING:
        return eta0 / pow(t, power_t)
    return eta


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def passive_aggressive_step(lr: cython.int, loss_value: cython.double, x_sq_norm: cython.double,
                            aggressiveness: cython.double) -> cython.double:
    """Magnitude of the passive-aggressive update (Crammer et al. 2006): PA-I caps
    loss / ||x||^2 at C, PA-II uses loss / (||x||^2 + 1 / (2 C)). A PA-I step on an all-zero
    sample is skipped by the caller."""
    if lr == LR_PA1:
        v: cython.double = loss_value / x_sq_norm
        return aggressiveness if aggressiveness < v else v
    return loss_value / (x_sq_norm + 0.5 / aggressiveness)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def passive_aggressive_sign(classify: cython.int, y: cython.double, p: cython.double) -> cython.double:
    """Direction of a passive-aggressive step: towards y's side for the hinge loss, towards
    the target for regression."""
    if classify:
        return y
    return -1.0 if y - p < 0.0 else 1.0


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def l2_decay(eta: cython.double, alpha: cython.double, l1_ratio: cython.double) -> cython.double:
    """The factor every weight is multiplied by in a step of L2 / elastic-net SGD, floored at
    0 so that a too large eta * alpha zeroes the weights instead of flipping their sign."""
    c: cython.double = 1.0 - (1.0 - l1_ratio) * eta * alpha
    return c if c > 0.0 else 0.0


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def l1_truncate(w: cython.double, u: cython.double, q: cython.double) -> cython.double:
    """Cumulative L1 truncation (Tsuruoka, Tsujii and Ananiadou 2009).

    ``u`` is the total L1 penalty any weight could have received so far, ``q`` what this
    weight actually received; the weight moves towards zero by the difference and stops at
    zero. The caller adds the change of ``w`` to ``q``.
    """
    if w > 0.0:
        w = w - (u + q)
        return w if w > 0.0 else 0.0
    if w < 0.0:
        w = w + (u - q)
        return w if w < 0.0 else 0.0
    return w


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def penalty_value(alpha: cython.double, l1_ratio: cython.double, sq_norm: cython.double,
                  l1_norm: cython.double) -> cython.double:
    """The penalty term of the stopping objective: alpha ((1 - l1_ratio) ||w||^2 / 2 +
    l1_ratio ||w||_1)."""
    return alpha * ((1.0 - l1_ratio) * 0.5 * sq_norm + l1_ratio * l1_norm)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def average_b_next(average_b: cython.double, k: cython.double) -> cython.double:
    """``average_b`` after the k-th averaged step (k counted from 1)."""
    if k > 1.0:
        return average_b / (1.0 - 1.0 / k)
    return average_b


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def average_a_next(average_a: cython.double, average_b: cython.double, k: cython.double,
                   wscale: cython.double) -> cython.double:
    """``average_a`` after the k-th averaged step, given ``average_b`` after it."""
    return average_a + (1.0 / k) * average_b * wscale
