"""The scalar rules of both compiled engines, written once.

Everything here is what one optimizer step, one loss evaluation or one learning-rate lookup
computes: the schedules, the losses and their derivatives, the optimizer update rules over a
range of parameters, the L1 soft-threshold and the lazy catch-up maps of sparse epochs. The
engines keep only what is theirs (loops over samples, data layouts, prefetching, threads).

The module is written in Cython's pure-Python mode and compiled twice:

- ``_cython/_kernels.pyx`` ``include``-s it: every function becomes a ``cdef inline ...
  noexcept nogil`` C function, the contract's names resolve to the ``.pyx``'s ``cdef enum``
  and the fused type ``real`` is specialised for float and double;
- ``_numba.py`` wraps each function with ``njit``, inlined at the level of Numba's IR where
  it is called for the rules in :data:`NUMBA_INLINE`, called otherwise; the names then come
  from :mod:`fastgd._contract` (imported below only when not compiled by Cython).

Arrays are indexed flat in both: Cython passes pointers, Numba 1-D arrays. Every rule works
in double precision whatever the storage type (a float32 value is widened when read and
rounded once when stored), so float32 results of the two engines round the same way. Values
read from a float32 array are multiplied by ``1.0`` where nothing else widens them: Numba
would otherwise evaluate the expression in float32.

An optimizer's state slot ``j`` of parameter ``q`` is ``st[j * n + q]`` (``n`` parameters).
Every dispatch on a code ends in an explicit error value (NaN, which a kernel reports as
non-finite); the engines reject unknown codes before any work with :func:`check_codes`.
The NumPy reference backend does not use this module: it is the independent check.
"""

try:
    import cython
except ImportError:  # Cython is needed to build the extension, not to run the Numba engine
    from fastgd._backends._pure_mode import cython

if not cython.compiled:  # compiled, the .pyx cimports these from libc.math
    from math import copysign, cos, exp, fabs, floor, log, log1p, pow, sqrt

if not cython.compiled:
    from fastgd._contract import (
        H_ANNEAL_LINEAR, H_BETA1, H_BETA2, H_CLIP, H_DIV_FACTOR, H_EPOCH, H_EPS, H_FINAL_DIV_FACTOR, H_GAMMA,
        H_L1, H_L2, H_LR, H_LR_MIN, H_LR_SCALE, H_MAX_LR, H_MOMENTUM, H_MOMENTUM_DECAY, H_PCT_START, H_POWER,
        H_RHO, H_STEP_SIZE, H_T_0, H_T_MAX, H_T_MULT, H_WARMUP, H_WEIGHT_DECAY, LOSS_LOG,
        LOSS_SOFTMAX, LOSS_SQUARED, N_LOSSES, N_OPTIMIZERS, N_SCHEDULES, N_UNITS, OPT_ADAGRAD,
        OPT_ADAM, OPT_ADAMAX, OPT_NADAM, OPT_RMSPROP, OPT_SGD, S_EXP_AVG, S_EXP_AVG_SQ,
        S_EXP_INF, S_MAX_EXP_AVG_SQ, S_SQUARE_AVG, S_SUM, S_VELOCITY, SCHED_CONSTANT,
        SCHED_COSINE, SCHED_COSINE_RESTARTS, SCHED_EXPONENTIAL, SCHED_INVSCALING,
        SCHED_ONE_CYCLE, SCHED_POLYNOMIAL, LAZY_FIELDS, SCHED_STEP, STATUS_BAD_LOSS, STATUS_BAD_OPTIMIZER,
        STATUS_BAD_SCHEDULE, STATUS_OK, UNIT_STEP,
    )
    from fastgd._contract import (  # scikit-learn's SGD losses and their parameter
        H_LOSS_PARAM, LOSS_EPSILON_INSENSITIVE, LOSS_HINGE, LOSS_HUBER, LOSS_MODIFIED_HUBER, LOSS_PERCEPTRON,
        LOSS_SQUARED_EPSILON_INSENSITIVE, LOSS_SQUARED_HINGE,
    )

real = cython.fused_type(cython.float, cython.double)
PI = cython.declare(cython.double, 3.141592653589793)
NAN = cython.declare(cython.double, float("nan"))
# Below this, 1 - x == 1 in double: NAdam's momentum product stops mattering (see nadam_mu_product).
NEGLIGIBLE = cython.declare(cython.double, 1e-17)

# The rules the Numba engine inlines where they are called (the others are calls; Cython
# inlines everything). Numba's inlining copies and re-types the callee's IR at every call
# site, so the set is kept to the update rules (gathered into apply_step and apply_step_rows,
# which the kernels call) and the small maps of the sparse loops: inlining every rule
# everywhere made a first fit compile 35 s (2,000 x 20 dense, mini-batch SGD, empty cache;
# about 6 s with this set), and calling the update rules instead of inlining them made
# per-sample momentum 1.25x and Adam 1.1x slower for 1 s less of compile. The set lives in
# this file because Numba's on-disk cache keys these rules on it: changing the set
# recompiles them.
NUMBA_INLINE = frozenset({
    "_sgd_span", "_momentum_span", "_adagrad_span", "_rmsprop_span", "_adam_span", "_adamax_span",
    "_nadam_span", "_update_span", "_update_rows", "apply_step", "apply_step_rows", "clip_scale", "step_factors",
    "lazy_shrink", "soft_threshold", "catch_up", "hogwild_coordinate", "plain_sgd_sample", "learning_rate",
})


# --- codes -----------------------------------------------------------------------------------
@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def check_codes(loss: cython.long, opt: cython.long, sched: cython.long, unit: cython.long) -> cython.int:
    """``STATUS_OK``, or the error status naming the first code out of range."""
    if loss < 0 or loss >= N_LOSSES:
        return STATUS_BAD_LOSS
    if opt < 0 or opt >= N_OPTIMIZERS:
        return STATUS_BAD_OPTIMIZER
    if sched < 0 or sched >= N_SCHEDULES or unit < 0 or unit >= N_UNITS:
        return STATUS_BAD_SCHEDULE
    return STATUS_OK


# --- learning-rate schedules (fastgd.schedules) -------------------------------------------
@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _anneal(start: cython.double, end: cython.double, pct: cython.double, linear: cython.double) -> cython.double:
    """torch's OneCycleLR annealing from ``start`` to ``end`` as ``pct`` goes from 0 to 1."""
    if linear != 0.0:
        return (end - start) * pct + start
    return end + (start - end) / 2.0 * (cos(PI * pct) + 1.0)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _one_cycle(eta0: cython.double, c: cython.double, hp: cython.p_double) -> cython.double:
    """torch's ``OneCycleLR`` (two phases, learning rate only) over ``hp[H_T_MAX]`` steps;
    after the horizon the rate stays at its final value."""
    total: cython.double = hp[H_T_MAX]
    peak: cython.double = hp[H_MAX_LR] if hp[H_MAX_LR] > 0.0 else eta0
    initial: cython.double = peak / hp[H_DIV_FACTOR]
    end_up: cython.double = hp[H_PCT_START] * total - 1.0
    if c > total - 1.0:
        c = total - 1.0
    if c <= end_up:  # (an empty rise, end_up <= 0, ends at the peak)
        return _anneal(initial, peak, c / end_up if end_up > 0.0 else 1.0, hp[H_ANNEAL_LINEAR])
    return _anneal(peak, initial / hp[H_FINAL_DIV_FACTOR], (c - end_up) / (total - 1.0 - end_up),
                   hp[H_ANNEAL_LINEAR])


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _cosine_restarts(eta0: cython.double, c: cython.double, hp: cython.p_double) -> cython.double:
    """torch's ``CosineAnnealingWarmRestarts`` stepped once per clock tick: cycle ``i`` lasts
    ``T_0 * T_mult ** i`` ticks (integers, so the cycle is found exactly)."""
    t_cur: cython.double = floor(c)
    t_i: cython.double = hp[H_T_0]
    if hp[H_T_MULT] == 1.0:
        t_cur = t_cur - t_i * floor(t_cur / t_i)
    else:
        while t_cur >= t_i:
            t_cur = t_cur - t_i
            t_i = t_i * hp[H_T_MULT]
    return hp[H_LR_MIN] + (eta0 - hp[H_LR_MIN]) * (1.0 + cos(PI * t_cur / t_i)) / 2.0


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def learning_rate(sched: cython.long, unit: cython.long, t: cython.double, hp: cython.p_double) -> cython.double:
    """The rate of the step at clock ``t`` (steps taken) in epoch ``hp[H_EPOCH]``. The constant
    rate without warm-up (what most fits use) is answered here, every other schedule by
    :func:`scheduled_rate`: Numba inlines this test into each kernel's step and calls the rest
    (a call per step cost per-sample SGD ~45 instructions a sample, 4-10 % of its time)."""
    if sched == SCHED_CONSTANT and not hp[H_WARMUP] > 0:
        return hp[H_LR_SCALE] * hp[H_LR]
    return scheduled_rate(sched, unit, t, hp)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def scheduled_rate(sched: cython.long, unit: cython.long, t: cython.double, hp: cython.p_double) -> cython.double:
    """:func:`learning_rate` of every schedule, warm-up included."""
    c: cython.double = t if unit == UNIT_STEP else hp[H_EPOCH]
    eta0: cython.double = hp[H_LR]
    warm: cython.double = hp[H_WARMUP]
    f: cython.double
    lr: cython.double
    if warm > 0 and c < warm:
        return hp[H_LR_SCALE] * eta0 * (c + 1.0) / warm
    c = c - warm
    if sched == SCHED_CONSTANT:
        lr = eta0
    elif sched == SCHED_STEP:
        lr = eta0 * pow(hp[H_GAMMA], floor(c / hp[H_STEP_SIZE]))
    elif sched == SCHED_EXPONENTIAL:
        lr = eta0 * pow(hp[H_GAMMA], c)
    elif sched == SCHED_POLYNOMIAL:
        f = (c if c < hp[H_T_MAX] else hp[H_T_MAX]) / hp[H_T_MAX]
        lr = (eta0 - hp[H_LR_MIN]) * pow(1.0 - f, hp[H_POWER]) + hp[H_LR_MIN]
    elif sched == SCHED_COSINE:
        f = (c if c < hp[H_T_MAX] else hp[H_T_MAX]) / hp[H_T_MAX]
        lr = hp[H_LR_MIN] + (eta0 - hp[H_LR_MIN]) * 0.5 * (1.0 + cos(PI * f))
    elif sched == SCHED_INVSCALING:
        lr = eta0 / pow(c + 1.0, hp[H_POWER])
    elif sched == SCHED_COSINE_RESTARTS:
        lr = _cosine_restarts(eta0, c, hp)
    elif sched == SCHED_ONE_CYCLE:
        lr = _one_cycle(eta0, c, hp)
    else:
        lr = NAN
    return hp[H_LR_SCALE] * lr


# --- losses (fastgd.losses) ----------------------------------------------------------------
@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def loss_1(loss: cython.long, m: cython.double, y: cython.double,
           hp: cython.p_double) -> tuple[cython.double, cython.double]:
    """Value and derivative in ``m`` of a loss of one margin (every loss but softmax); the
    log loss is evaluated without overflow for any margin.

    The binary losses other than log read their target ``y`` in {0, 1} as ``s = 2 y - 1``;
    at a kink the derivative is scikit-learn's choice (the hinge's ``-s`` at ``s m = 1``, the
    others' 0 or the inner branch). ``hp[H_LOSS_PARAM]`` is Huber's delta and the
    epsilon-insensitive margin."""
    e: cython.double
    r: cython.double
    s: cython.double
    if loss == LOSS_SQUARED:
        r = m - y
        return r * r, 2.0 * r
    if loss == LOSS_LOG:
        if m >= 0:
            e = exp(-m)
            return m + log1p(e) - y * m, 1.0 / (1.0 + e) - y
        e = exp(m)
        return log1p(e) - y * m, e / (1.0 + e) - y
    s = 2.0 * y - 1.0
    if loss == LOSS_HINGE or loss == LOSS_PERCEPTRON:
        e = 1.0 if loss == LOSS_HINGE else 0.0  # the threshold
        r = e - s * m
        if r >= 0.0:
            return r, -s
        return 0.0, 0.0
    if loss == LOSS_SQUARED_HINGE:
        r = 1.0 - s * m
        if r > 0.0:
            return r * r, -2.0 * s * r
        return 0.0, 0.0
    if loss == LOSS_MODIFIED_HUBER:
        r = s * m
        if r >= 1.0:
            return 0.0, 0.0
        if r >= -1.0:
            return (1.0 - r) * (1.0 - r), -2.0 * s * (1.0 - r)
        return -4.0 * r, -4.0 * s
    e = hp[H_LOSS_PARAM]
    r = m - y
    if loss == LOSS_HUBER:
        if fabs(r) <= e:
            return 0.5 * r * r, r
        return e * (fabs(r) - 0.5 * e), copysign(e, r)
    if loss == LOSS_EPSILON_INSENSITIVE:
        if r > e:
            return r - e, 1.0
        if r < -e:
            return -r - e, -1.0
        return 0.0, 0.0
    if loss == LOSS_SQUARED_EPSILON_INSENSITIVE:
        if r > e:
            return (r - e) * (r - e), 2.0 * (r - e)
        if r < -e:
            return (r + e) * (r + e), 2.0 * (r + e)
        return 0.0, 0.0
    return NAN, NAN


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def softmax_loss(z: cython.pointer(real), dz: cython.pointer(real), K: cython.Py_ssize_t,
                 label: cython.Py_ssize_t) -> cython.double:
    """Cross-entropy ``logsumexp(z) - z[label]`` (shifted by ``max(z)``); writes
    ``softmax(z) - onehot(label)`` into ``dz``."""
    k: cython.Py_ssize_t
    zmax: cython.double = 1.0 * z[0]
    s: cython.double = 0.0
    e: cython.double
    for k in range(1, K):
        if z[k] > zmax:
            zmax = 1.0 * z[k]
    for k in range(K):
        e = exp(z[k] - zmax)
        dz[k] = e
        s += e
    for k in range(K):
        dz[k] = dz[k] / s
    dz[label] = dz[label] - 1.0
    return zmax + log(s) - z[label]


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _at(q: cython.Py_ssize_t) -> cython.Py_ssize_t:
    """Index ``q`` (never negative) of the optimizer rules' loops. The Numba engine replaces it
    with an unsigned cast (``_numba._u``): a signed index gets a negative-index wraparound
    per access there, which kept LLVM from vectorising these loops (measured: RMSprop's
    100-element span 1.5x slower, square roots one at a time)."""
    return q


# --- optimizer updates over the parameters [lo, hi) (fastgd.optim) ------------------------
# ``g`` is a gradient sum scaled by ``cs``; ``l2`` the coupled L2 strength of the range (0 for
# the intercept). The loops carry no branch on a code, so the compilers can vectorise them.
@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _sgd_span(w: cython.pointer(real), g: cython.pointer(real), lo: cython.Py_ssize_t, hi: cython.Py_ssize_t,
              cs: cython.double, l2: cython.double, lr: cython.double) -> cython.void:
    q: cython.Py_ssize_t
    wq: cython.double
    for q in range(lo, hi):
        wq = w[_at(q)]
        w[_at(q)] = wq - lr * (g[_at(q)] * cs + l2 * wq)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _momentum_span(w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
                   n: cython.Py_ssize_t, lo: cython.Py_ssize_t, hi: cython.Py_ssize_t, cs: cython.double,
                   l2: cython.double, lr: cython.double, mu: cython.double, nesterov: cython.long) -> cython.void:
    q: cython.Py_ssize_t
    wq: cython.double
    gq: cython.double
    vq: cython.double
    o_v: cython.Py_ssize_t = S_VELOCITY * n
    if nesterov != 0:
        for q in range(lo, hi):
            wq = w[_at(q)]
            gq = g[_at(q)] * cs + l2 * wq
            vq = mu * st[_at(o_v + q)] + gq
            st[_at(o_v + q)] = vq
            w[_at(q)] = wq - lr * (gq + mu * vq)
    else:
        for q in range(lo, hi):
            wq = w[_at(q)]
            gq = g[_at(q)] * cs + l2 * wq
            vq = mu * st[_at(o_v + q)] + gq
            st[_at(o_v + q)] = vq
            w[_at(q)] = wq - lr * vq


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _adagrad_span(w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
                  n: cython.Py_ssize_t, lo: cython.Py_ssize_t, hi: cython.Py_ssize_t, cs: cython.double,
                  l2: cython.double, lr: cython.double, eps: cython.double) -> cython.void:
    q: cython.Py_ssize_t
    wq: cython.double
    gq: cython.double
    sq: cython.double
    o_s: cython.Py_ssize_t = S_SUM * n
    for q in range(lo, hi):
        wq = w[_at(q)]
        gq = g[_at(q)] * cs + l2 * wq
        sq = st[_at(o_s + q)] + gq * gq
        st[_at(o_s + q)] = sq
        w[_at(q)] = wq - lr * gq / (sqrt(sq) + eps)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _rmsprop_span(w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
                  n: cython.Py_ssize_t, lo: cython.Py_ssize_t, hi: cython.Py_ssize_t, cs: cython.double,
                  l2: cython.double, lr: cython.double, rho: cython.double, eps: cython.double) -> cython.void:
    q: cython.Py_ssize_t
    wq: cython.double
    gq: cython.double
    aq: cython.double
    o_a: cython.Py_ssize_t = S_SQUARE_AVG * n
    for q in range(lo, hi):
        wq = w[_at(q)]
        gq = g[_at(q)] * cs + l2 * wq
        aq = rho * st[_at(o_a + q)] + (1.0 - rho) * gq * gq
        st[_at(o_a + q)] = aq
        w[_at(q)] = wq - lr * gq / (sqrt(aq) + eps)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _adam_span(w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
               n: cython.Py_ssize_t, lo: cython.Py_ssize_t, hi: cython.Py_ssize_t, cs: cython.double,
               l2: cython.double, shrink: cython.double, b1: cython.double, b2: cython.double,
               step_size: cython.double, bc2_sqrt: cython.double, eps: cython.double,
               amsgrad: cython.long) -> cython.void:
    """Adam / AMSGrad with AdamW's decoupled ``shrink``."""
    q: cython.Py_ssize_t
    wq: cython.double
    gq: cython.double
    mq: cython.double
    vq: cython.double
    o_m: cython.Py_ssize_t = S_EXP_AVG * n
    o_v: cython.Py_ssize_t = S_EXP_AVG_SQ * n
    o_vmax: cython.Py_ssize_t = S_MAX_EXP_AVG_SQ * n
    if amsgrad != 0:
        for q in range(lo, hi):
            wq = w[_at(q)]
            gq = g[_at(q)] * cs + l2 * wq
            mq = b1 * st[_at(o_m + q)] + (1.0 - b1) * gq
            vq = b2 * st[_at(o_v + q)] + (1.0 - b2) * gq * gq
            st[_at(o_m + q)] = mq
            st[_at(o_v + q)] = vq
            if vq > st[_at(o_vmax + q)]:
                st[_at(o_vmax + q)] = vq
            vq = 1.0 * st[_at(o_vmax + q)]
            w[_at(q)] = wq * shrink - step_size * mq / (sqrt(vq) / bc2_sqrt + eps)
        return
    for q in range(lo, hi):  # (a second loop: a branch on amsgrad inside kept Numba from vectorising)
        wq = w[_at(q)]
        gq = g[_at(q)] * cs + l2 * wq
        mq = b1 * st[_at(o_m + q)] + (1.0 - b1) * gq
        vq = b2 * st[_at(o_v + q)] + (1.0 - b2) * gq * gq
        st[_at(o_m + q)] = mq
        st[_at(o_v + q)] = vq
        w[_at(q)] = wq * shrink - step_size * mq / (sqrt(vq) / bc2_sqrt + eps)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _adamax_span(w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
                 n: cython.Py_ssize_t, lo: cython.Py_ssize_t, hi: cython.Py_ssize_t, cs: cython.double,
                 l2: cython.double, b1: cython.double, b2: cython.double, clr: cython.double,
                 eps: cython.double) -> cython.void:
    """Adamax: the second moment replaced by an exponentially weighted infinity norm."""
    q: cython.Py_ssize_t
    wq: cython.double
    gq: cython.double
    mq: cython.double
    uq: cython.double
    nq: cython.double
    o_m: cython.Py_ssize_t = S_EXP_AVG * n
    o_u: cython.Py_ssize_t = S_EXP_INF * n
    for q in range(lo, hi):
        wq = w[_at(q)]
        gq = g[_at(q)] * cs + l2 * wq
        mq = b1 * st[_at(o_m + q)] + (1.0 - b1) * gq
        uq = b2 * st[_at(o_u + q)]
        nq = fabs(gq) + eps
        if nq > uq:
            uq = nq
        st[_at(o_m + q)] = mq
        st[_at(o_u + q)] = uq
        w[_at(q)] = wq - clr * mq / uq


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _nadam_span(w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
                n: cython.Py_ssize_t, lo: cython.Py_ssize_t, hi: cython.Py_ssize_t, cs: cython.double,
                l2: cython.double, b1: cython.double, b2: cython.double, c_grad: cython.double,
                c_avg: cython.double, bc2: cython.double, eps: cython.double) -> cython.void:
    """NAdam: the gradient and the first moment each take their own step (torch's two
    ``addcdiv_``), over ``sqrt(v / bc2) + eps``."""
    q: cython.Py_ssize_t
    wq: cython.double
    gq: cython.double
    mq: cython.double
    vq: cython.double
    d: cython.double
    o_m: cython.Py_ssize_t = S_EXP_AVG * n
    o_v: cython.Py_ssize_t = S_EXP_AVG_SQ * n
    for q in range(lo, hi):
        wq = w[_at(q)]
        gq = g[_at(q)] * cs + l2 * wq
        mq = b1 * st[_at(o_m + q)] + (1.0 - b1) * gq
        vq = b2 * st[_at(o_v + q)] + (1.0 - b2) * gq * gq
        st[_at(o_m + q)] = mq
        st[_at(o_v + q)] = vq
        d = sqrt(vq / bc2) + eps
        wq = wq - c_grad * gq / d
        w[_at(q)] = wq - c_avg * mq / d


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _update_span(opt: cython.long, w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
                 n: cython.Py_ssize_t, lo: cython.Py_ssize_t, hi: cython.Py_ssize_t, cs: cython.double,
                 l2: cython.double, shrink: cython.double, lr: cython.double, f0: cython.double,
                 f1: cython.double, f2: cython.double, flag: cython.long, hp: cython.p_double) -> cython.void:
    """One optimizer rule on ``[lo, hi)``; ``f0..f2`` are the step's factors from
    :func:`step_factors`, ``flag`` the rule's switch (Nesterov, AMSGrad)."""
    if opt == OPT_SGD:
        if hp[H_MOMENTUM] > 0:
            _momentum_span(w, g, st, n, lo, hi, cs, l2, lr, hp[H_MOMENTUM], flag)
        else:
            _sgd_span(w, g, lo, hi, cs, l2, lr)
    elif opt == OPT_ADAGRAD:
        _adagrad_span(w, g, st, n, lo, hi, cs, l2, lr, hp[H_EPS])
    elif opt == OPT_RMSPROP:
        _rmsprop_span(w, g, st, n, lo, hi, cs, l2, lr, hp[H_RHO], hp[H_EPS])
    elif opt == OPT_ADAM:
        _adam_span(w, g, st, n, lo, hi, cs, l2, shrink, hp[H_BETA1], hp[H_BETA2], f0, f1, hp[H_EPS], flag)
    elif opt == OPT_ADAMAX:
        _adamax_span(w, g, st, n, lo, hi, cs, l2, hp[H_BETA1], hp[H_BETA2], f0, hp[H_EPS])
    elif opt == OPT_NADAM:
        _nadam_span(w, g, st, n, lo, hi, cs, l2, hp[H_BETA1], hp[H_BETA2], f0, f1, f2, hp[H_EPS])
    else:
        for q in range(lo, hi):  # unreachable after check_codes; poisons the step if reached
            w[_at(q)] = NAN


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def plain_sgd_sample(w: cython.pointer(real), x: cython.pointer(real), off: cython.Py_ssize_t,
                     p: cython.Py_ssize_t, a: real, c: real, thresh: cython.double) -> cython.void:
    """Per-sample plain SGD with the gradient and the update fused into one pass over the row
    ``x[off:off + p]``: ``w <- a * w - c * x`` (``a = 1 - lr * l2``, ``c = lr * s * dloss``, in
    the storage type), the L1 step by ``thresh``, then the intercept ``w[p] <- w[p] - c``."""
    f: cython.Py_ssize_t
    for f in range(p):
        w[_at(f)] = a * w[_at(f)] - c * x[_at(off + f)]
    if thresh > 0:
        for f in range(p):
            w[_at(f)] = soft_threshold(w[_at(f)], thresh)
    w[p] = w[p] - c


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def nadam_mu(b1: cython.double, psi: cython.double, k: cython.double) -> cython.double:
    """NAdam's momentum coefficient of step ``k`` (1-based), ``psi`` the momentum decay."""
    return b1 * (1.0 - 0.5 * pow(0.96, k * psi))


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def nadam_mu_product(opt: cython.long, t: cython.double, hp: cython.p_double) -> cython.double:
    """NAdam's product of the momentum coefficients of steps 1..t (1 for other optimizers),
    multiplied in step order as torch does. Once below 1e-17 it no longer changes any
    update (``1 - x == 1``), so the loop stops there: the kernels compute this once per
    epoch and carry it from step to step."""
    prod: cython.double = 1.0
    k: cython.double = 1.0
    if opt != OPT_NADAM:
        return 1.0
    while k <= t and prod >= NEGLIGIBLE:
        prod = prod * nadam_mu(hp[H_BETA1], hp[H_MOMENTUM_DECAY], k)
        k += 1.0
    return prod


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def step_factors(opt: cython.long, lr: cython.double, k: cython.double, mu_prod: cython.double,
                 hp: cython.p_double) -> tuple[cython.double, cython.double, cython.double, cython.double]:
    """The per-step factors of step ``k`` (1-based) of the rules that have any, and NAdam's
    momentum product after it (``mu_prod`` before it, from :func:`nadam_mu_product`)."""
    b1: cython.double = hp[H_BETA1]
    b2: cython.double = hp[H_BETA2]
    mu: cython.double
    mu_next: cython.double
    if opt == OPT_ADAM:  # step size, sqrt of the second bias correction
        return lr / (1.0 - pow(b1, k)), sqrt(1.0 - pow(b2, k)), 0.0, mu_prod
    if opt == OPT_ADAMAX:  # step size
        return lr / (1.0 - pow(b1, k)), 0.0, 0.0, mu_prod
    if opt == OPT_NADAM:  # gradient and momentum step sizes, second bias correction
        mu = nadam_mu(b1, hp[H_MOMENTUM_DECAY], k)
        mu_next = nadam_mu(b1, hp[H_MOMENTUM_DECAY], k + 1.0)
        if mu_prod >= NEGLIGIBLE:
            mu_prod = mu_prod * mu
        return (lr * (1.0 - mu) / (1.0 - mu_prod), lr * mu_next / (1.0 - mu_prod * mu_next),
                1.0 - pow(b2, k), mu_prod)
    return 0.0, 0.0, 0.0, mu_prod


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def soft_threshold(v: cython.double, thresh: cython.double) -> cython.double:
    """The L1 proximal map: ``v`` moved ``thresh`` towards 0, and 0 within ``thresh`` of it
    (NaN stays NaN)."""
    if v > thresh:
        return v - thresh
    if v < -thresh:
        return v + thresh
    if v == v:
        return 0.0
    return v


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def clip_scale(sq: cython.double, inv_b: cython.double, clip: cython.double) -> cython.double:
    """The gradient's scale after global-norm clipping (torch's ``clip_grad_norm_``): ``inv_b``,
    times ``clip / (norm + 1e-6)`` when that is below 1; ``sq`` is the squared norm of the
    scaled gradient."""
    c: cython.double = clip / (sqrt(sq) + 1e-6)
    return inv_b * c if c < 1.0 else inv_b


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def apply_step(opt: cython.long, nesterov: cython.long, amsgrad: cython.long, sched: cython.long, unit: cython.long,
               w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
               n: cython.Py_ssize_t, K: cython.Py_ssize_t, t: cython.double, hp: cython.p_double,
               inv_b: cython.double, mu_prod: cython.double) -> tuple[cython.double, cython.double]:
    """One optimizer step of every parameter from ``g`` (a sum over the batch, scaled by
    ``inv_b``): global-norm clipping (torch's ``clip_grad_norm_``), the rule with coupled L2,
    AdamW's decoupled decay, and the L1 proximal step. ``w`` and ``g`` hold ``n`` parameters,
    ``(p + 1) * K`` flat with the intercept row last. The rule runs once per span, from one
    call site (every weight, then the intercept row): each span's loop vectorises on its own.
    :func:`apply_step_rows` is the same step on the rows a sparse batch touched.

    Returns the learning rate used and NAdam's momentum product after the step."""
    nw: cython.Py_ssize_t = n - K  # the weights; the intercept row is [nw, n) (no division per step)
    lr: cython.double = learning_rate(sched, unit, t, hp)
    cs: cython.double = inv_b
    sq: cython.double = 0.0
    gi: cython.double
    thresh: cython.double
    shrink: cython.double = 1.0 - lr * hp[H_WEIGHT_DECAY]
    f0: cython.double
    f1: cython.double
    f2: cython.double
    j: cython.Py_ssize_t
    q: cython.Py_ssize_t
    end: cython.Py_ssize_t
    flag: cython.long = nesterov if opt == OPT_SGD else amsgrad
    if hp[H_CLIP] > 0:
        for q in range(n):
            gi = g[q] * inv_b
            sq += gi * gi
        cs = clip_scale(sq, inv_b, hp[H_CLIP])
    f0, f1, f2, mu_prod = step_factors(opt, lr, t + 1.0, mu_prod, hp)
    # One call of _update_span, in a loop over the two spans: Numba inlines it (seven rules,
    # each a vectorised loop) at every call, and its compile time grows with them.
    for j in range(2):
        q = 0 if j == 0 else nw
        end = nw if j == 0 else n
        # the intercept takes no penalty
        _update_span(opt, w, g, st, n, q, end, cs, hp[H_L2] if j == 0 else 0.0, shrink if j == 0 else 1.0, lr,
                     f0, f1, f2, flag, hp)
    thresh = lr * hp[H_L1]
    if thresh > 0:
        for q in range(nw):
            w[q] = soft_threshold(w[q], thresh)
    return lr, mu_prod


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def apply_step_rows(opt: cython.long, nesterov: cython.long, amsgrad: cython.long, sched: cython.long,
                    unit: cython.long, w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
                    n: cython.Py_ssize_t, K: cython.Py_ssize_t, rows: cython.pointer(cython.Py_ssize_t),
                    n_rows: cython.Py_ssize_t, t: cython.double, hp: cython.p_double, inv_b: cython.double,
                    mu_prod: cython.double) -> tuple[cython.double, cython.double]:
    """:func:`apply_step` on the rows ``rows[:n_rows]`` only (the rows a sparse batch touched,
    the intercept row last; the others' gradient is zero), each row a span of ``K``."""
    nw: cython.Py_ssize_t = n - K
    lr: cython.double = learning_rate(sched, unit, t, hp)
    cs: cython.double = inv_b
    sq: cython.double = 0.0
    gi: cython.double
    thresh: cython.double
    f0: cython.double
    f1: cython.double
    f2: cython.double
    j: cython.Py_ssize_t
    q: cython.Py_ssize_t
    r: cython.Py_ssize_t
    if hp[H_CLIP] > 0:
        for j in range(n_rows):
            r = rows[j]
            for q in range(r * K, r * K + K):
                gi = g[q] * inv_b
                sq += gi * gi
        cs = clip_scale(sq, inv_b, hp[H_CLIP])
    f0, f1, f2, mu_prod = step_factors(opt, lr, t + 1.0, mu_prod, hp)
    _update_rows(opt, w, g, st, n, K, rows, n_rows, cs, hp[H_L2], 1.0 - lr * hp[H_WEIGHT_DECAY], lr, f0, f1, f2,
                 nesterov if opt == OPT_SGD else amsgrad, hp)
    thresh = lr * hp[H_L1]
    if thresh > 0:
        for j in range(n_rows):
            r = rows[j]
            if r * K < nw:
                for q in range(r * K, r * K + K):
                    w[q] = soft_threshold(w[q], thresh)
    return lr, mu_prod


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def _update_rows(opt: cython.long, w: cython.pointer(real), g: cython.pointer(real), st: cython.pointer(real),
                 n: cython.Py_ssize_t, K: cython.Py_ssize_t, rows: cython.pointer(cython.Py_ssize_t),
                 n_rows: cython.Py_ssize_t, cs: cython.double, l2: cython.double, shrink: cython.double,
                 lr: cython.double, f0: cython.double, f1: cython.double, f2: cython.double, flag: cython.long,
                 hp: cython.p_double) -> cython.void:
    """:func:`_update_span` on each row of ``rows[:n_rows]`` (the intercept row, ``[n - K, n)``,
    without penalty), the rule chosen once for all of them: a choice per row cost Numba's
    mini-batch CSR epochs a third of their time."""
    nw: cython.Py_ssize_t = n - K
    j: cython.Py_ssize_t
    q: cython.Py_ssize_t
    if opt == OPT_SGD and hp[H_MOMENTUM] > 0:
        for j in range(n_rows):
            q = rows[j] * K
            _momentum_span(w, g, st, n, q, q + K, cs, l2 if q < nw else 0.0, lr, hp[H_MOMENTUM], flag)
    elif opt == OPT_SGD:
        for j in range(n_rows):
            q = rows[j] * K
            _sgd_span(w, g, q, q + K, cs, l2 if q < nw else 0.0, lr)
    elif opt == OPT_ADAGRAD:
        for j in range(n_rows):
            q = rows[j] * K
            _adagrad_span(w, g, st, n, q, q + K, cs, l2 if q < nw else 0.0, lr, hp[H_EPS])
    elif opt == OPT_RMSPROP:
        for j in range(n_rows):
            q = rows[j] * K
            _rmsprop_span(w, g, st, n, q, q + K, cs, l2 if q < nw else 0.0, lr, hp[H_RHO], hp[H_EPS])
    else:  # the Adam family: their rules read the decoupled decay
        for j in range(n_rows):
            q = rows[j] * K
            _update_span(opt, w, g, st, n, q, q + K, cs, l2 if q < nw else 0.0, shrink if q < nw else 1.0, lr,
                         f0, f1, f2, flag, hp)


# --- sparse epochs: the deferred shrink maps of untouched coordinates (fastgd._contract) -----
@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def lazy_shrink(w: cython.double, ratio: cython.double, shift: cython.double) -> cython.double:
    """``sign(w) * max(|w| * ratio - shift, 0)``: the composed maps ``|w| <- max(a |w| - b, 0)``
    since a coordinate was last up to date (``ratio = A / A_u``, ``shift = B - ratio * B_u``)."""
    aw: cython.double = fabs(w) * ratio - shift
    if aw > 0:
        return copysign(aw, w)
    if aw == aw:
        return 0.0
    return aw  # NaN stays NaN (the kernel then reports the epoch non-finite)


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def catch_up(w: cython.pointer(real), st: cython.pointer(real), c: cython.Py_ssize_t, K: cython.Py_ssize_t,
             A: cython.double, B: cython.double, T: cython.double, lazy: cython.p_double,
             rmsprop: cython.long, rho: cython.double) -> cython.int:
    """Bring coordinate row ``c`` of ``w`` ((p + 1) * K flat) up to clock ``T``: its deferred
    shrink maps, and RMSprop's accumulator decayed by ``rho`` per missed step. ``lazy`` is
    ``lazy_work`` flat (LAZY_FIELDS per coordinate: last clock, A and B then). Returns 1 if
    anything was applied."""
    u: cython.double = lazy[LAZY_FIELDS * c]
    ratio: cython.double
    shift: cython.double
    f: cython.double
    k: cython.Py_ssize_t
    if u == T:
        return 0
    ratio = A / lazy[LAZY_FIELDS * c + 1]
    shift = B - ratio * lazy[LAZY_FIELDS * c + 2]
    for k in range(c * K, c * K + K):
        w[k] = lazy_shrink(w[k], ratio, shift)
    if rmsprop != 0:  # the accumulator is slot 0: row c's entries are st[c * K:(c + 1) * K]
        f = pow(rho, T - u)
        for k in range(c * K, c * K + K):
            st[k] = st[k] * f
    lazy[LAZY_FIELDS * c] = T
    lazy[LAZY_FIELDS * c + 1] = A
    lazy[LAZY_FIELDS * c + 2] = B
    return 1


# --- SAGA steps (fastgd._contract: SAGA epochs) ---------------------------------------------
@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def saga_remember(dz: cython.pointer(real), memory: cython.pointer(real), off: cython.Py_ssize_t,
                  K: cython.Py_ssize_t, s: cython.double) -> cython.void:
    """Swap a sample's new gradient scalars ``s * dz`` into its stored ones ``memory[off:off + K]``
    and leave in ``dz`` the change ``delta``, new minus stored (what the step and the mean need)."""
    k: cython.Py_ssize_t
    d: cython.double
    for k in range(K):
        d = s * dz[k]
        dz[k] = d - memory[off + k]
        memory[off + k] = d


@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def saga_row(w: cython.pointer(real), mean: cython.pointer(real), q: cython.Py_ssize_t, K: cython.Py_ssize_t,
             x: cython.double, delta: cython.pointer(real), inv_n: cython.double, lr: cython.double,
             l2: cython.double, l1: cython.double) -> cython.void:
    """The SAGA step of one parameter row ``w[q:q + K]`` whose feature value is ``x``:
    ``w <- prox_{lr l1}(w - lr (delta x + mean + l2 w))`` with the mean before the step, then
    ``mean += delta x / n`` (``inv_n = 1 / n``)."""
    k: cython.Py_ssize_t
    wq: cython.double
    mq: cython.double
    dx: cython.double
    for k in range(K):
        wq = 1.0 * w[q + k]
        mq = 1.0 * mean[q + k]
        dx = (1.0 * delta[k]) * (1.0 * x)
        wq = wq - lr * (dx + mq + l2 * wq)
        if l1 > 0:
            wq = soft_threshold(wq, lr * l1)
        w[q + k] = wq
        mean[q + k] = mq + dx * inv_n


# --- Hogwild! steps (fastgd._contract: Hogwild! epochs) -------------------------------------
@cython.cfunc
@cython.inline
@cython.nogil
@cython.exceptval(check=False)
def hogwild_coordinate(w: cython.double, x: cython.double, cg: cython.double, shrink: cython.double,
                       thresh: cython.double) -> cython.double:
    """One touched weight's step: ``w - (cg x + shrink w)``, then the L1 step by ``thresh``
    (``cg = lr * s * dloss``; ``shrink`` and ``thresh`` carry the feature's share of the
    penalty, ``lr * l2 * n / n_j`` and ``lr * l1 * n / n_j``)."""
    w = w - (cg * x + shrink * w)
    if thresh > 0:
        return soft_threshold(w, thresh)
    return w
