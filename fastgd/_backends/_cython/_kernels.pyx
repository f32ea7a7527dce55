# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""The Cython backend: the kernel contract of :mod:`fastgd._contract` (dense and CSR).

The same mathematics as :mod:`fastgd._backends._numba`, in the same precision (per-sample
margins and gradient sums in ``X``'s dtype, optimizer updates in double), for float32 and
float64 through a fused type. Results agree with Numba's to rounding: the margin's dot
product is summed in four partial sums, and Numba may fuse multiply-adds. One call trains
one epoch with the GIL released; nothing is allocated and no Python object is touched inside
the loop. Rows a few samples ahead in the epoch's order are prefetched (a shuffled epoch
otherwise waits on a cache miss per sample).

The contract's integers are declared once, in the ``cdef enum`` below, and exported by
:func:`contract_constants` so the test suite can check them against ``fastgd._contract``
(the package ``__init__`` also refuses to load a build that disagrees).

Shapes are checked once per call (bounds checking is compiled out, so a mismatched buffer
would otherwise be read or written out of bounds); values are not validated.

``epoch_dense_chunked`` and ``full_gradient_dense`` sum a batch gradient over ``N_CHUNKS`` fixed
slices in parallel (OpenMP ``prange``; serial when the extension was built without OpenMP) and
add the slices in order, so results do not depend on the thread count. ``epoch_csr`` takes the
CSR parts with int32 or int64 ``indices`` / ``indptr`` (a fused type each: no copies) and
defers the closed-form part of untouched coordinates' updates (see the contract).
"""

from cython.parallel cimport prange, threadid
from libc.math cimport exp, expf, fabs, floor, isfinite, log, log1p, log1pf, pow, sqrt, cos, M_PI
from libc.stdint cimport int32_t, int64_t

import numpy as np

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTGD_PREFETCH(addr) __builtin_prefetch((const void *)(addr), 0, 3)
    #else
    #define FASTGD_PREFETCH(addr) ((void)0)
    #endif
    """
    void FASTGD_PREFETCH(const void* addr) noexcept nogil

ctypedef fused floating:
    float
    double

# CSR index arrays: scipy picks int32 or int64 for indices and indptr (independently).
ctypedef fused index_t:
    int32_t
    int64_t

ctypedef fused ptr_t:
    int32_t
    int64_t

# --- the kernel contract (must equal fastgd/_contract.py; see contract_constants) ----------
cdef enum:
    C_LOSS = 0
    C_OPTIMIZER = 1
    C_NESTEROV = 2
    C_AMSGRAD = 3
    C_SCHEDULE = 4
    C_SCHEDULE_UNIT = 5
    C_LAZY = 6
    N_CODES = 7

    LOSS_SQUARED = 0
    LOSS_LOG = 1
    LOSS_SOFTMAX = 2

    OPT_SGD = 0
    OPT_ADAGRAD = 1
    OPT_RMSPROP = 2
    OPT_ADAM = 3

    SCHED_CONSTANT = 0
    SCHED_STEP = 1
    SCHED_EXPONENTIAL = 2
    SCHED_POLYNOMIAL = 3
    SCHED_COSINE = 4
    SCHED_INVSCALING = 5

    UNIT_STEP = 0
    UNIT_EPOCH = 1

    H_LR = 0
    H_LR_SCALE = 1
    H_MOMENTUM = 2
    H_BETA1 = 3
    H_BETA2 = 4
    H_EPS = 5
    H_RHO = 6
    H_WEIGHT_DECAY = 7
    H_L2 = 8
    H_L1 = 9
    H_CLIP = 10
    H_GAMMA = 11
    H_STEP_SIZE = 12
    H_POWER = 13
    H_T_MAX = 14
    H_LR_MIN = 15
    H_WARMUP = 16
    H_EPOCH = 17
    N_HP = 18

    STATUS_OK = 0
    STATUS_NONFINITE = 1

    WORK_ROWS = 2

    N_CHUNKS = 8

    LAZY_FIELDS = 3
    COUNT_UPDATES = 0
    COUNT_CATCHUPS = 1
    N_COUNTERS = 2

    SPARSE_DENSE = 0
    SPARSE_LAZY_EXACT = 1
    SPARSE_LAZY_APPROX = 2


def contract_constants():
    """Every code, slot and status the compiled kernels use, by its ``fastgd._contract`` name."""
    return {
        "C_LOSS": C_LOSS, "C_OPTIMIZER": C_OPTIMIZER, "C_NESTEROV": C_NESTEROV,
        "C_AMSGRAD": C_AMSGRAD, "C_SCHEDULE": C_SCHEDULE, "C_SCHEDULE_UNIT": C_SCHEDULE_UNIT,
        "C_LAZY": C_LAZY, "N_CODES": N_CODES,
        "LOSS_SQUARED": LOSS_SQUARED, "LOSS_LOG": LOSS_LOG, "LOSS_SOFTMAX": LOSS_SOFTMAX,
        "OPT_SGD": OPT_SGD, "OPT_ADAGRAD": OPT_ADAGRAD, "OPT_RMSPROP": OPT_RMSPROP,
        "OPT_ADAM": OPT_ADAM,
        "SCHED_CONSTANT": SCHED_CONSTANT, "SCHED_STEP": SCHED_STEP,
        "SCHED_EXPONENTIAL": SCHED_EXPONENTIAL, "SCHED_POLYNOMIAL": SCHED_POLYNOMIAL,
        "SCHED_COSINE": SCHED_COSINE, "SCHED_INVSCALING": SCHED_INVSCALING,
        "UNIT_STEP": UNIT_STEP, "UNIT_EPOCH": UNIT_EPOCH,
        "H_LR": H_LR, "H_LR_SCALE": H_LR_SCALE, "H_MOMENTUM": H_MOMENTUM, "H_BETA1": H_BETA1,
        "H_BETA2": H_BETA2, "H_EPS": H_EPS, "H_RHO": H_RHO, "H_WEIGHT_DECAY": H_WEIGHT_DECAY,
        "H_L2": H_L2, "H_L1": H_L1, "H_CLIP": H_CLIP, "H_GAMMA": H_GAMMA,
        "H_STEP_SIZE": H_STEP_SIZE, "H_POWER": H_POWER, "H_T_MAX": H_T_MAX,
        "H_LR_MIN": H_LR_MIN, "H_WARMUP": H_WARMUP, "H_EPOCH": H_EPOCH, "N_HP": N_HP,
        "STATUS_OK": STATUS_OK, "STATUS_NONFINITE": STATUS_NONFINITE,
        "WORK_ROWS": WORK_ROWS, "N_CHUNKS": N_CHUNKS,
        "LAZY_FIELDS": LAZY_FIELDS, "COUNT_UPDATES": COUNT_UPDATES, "COUNT_CATCHUPS": COUNT_CATCHUPS,
        "N_COUNTERS": N_COUNTERS, "SPARSE_DENSE": SPARSE_DENSE,
        "SPARSE_LAZY_EXACT": SPARSE_LAZY_EXACT, "SPARSE_LAZY_APPROX": SPARSE_LAZY_APPROX,
    }


# The hyper-parameters of one call, read once from ``codes`` / ``hp`` (constant during a call).
cdef struct Params:
    int64_t loss
    int64_t opt
    int64_t nesterov
    int64_t amsgrad
    int64_t sched
    int64_t unit
    int64_t lazy
    double lr
    double lr_scale
    double momentum
    double beta1
    double beta2
    double eps
    double rho
    double weight_decay
    double l2
    double l1
    double clip
    double gamma
    double step_size
    double power
    double t_max
    double lr_min
    double warmup
    double epoch


cdef inline void _read_params(Params* P, const int64_t[:] codes, const double[:] hp) noexcept nogil:
    P.loss = codes[C_LOSS]
    P.opt = codes[C_OPTIMIZER]
    P.nesterov = codes[C_NESTEROV]
    P.amsgrad = codes[C_AMSGRAD]
    P.sched = codes[C_SCHEDULE]
    P.unit = codes[C_SCHEDULE_UNIT]
    P.lazy = codes[C_LAZY]
    P.lr = hp[H_LR]
    P.lr_scale = hp[H_LR_SCALE]
    P.momentum = hp[H_MOMENTUM]
    P.beta1 = hp[H_BETA1]
    P.beta2 = hp[H_BETA2]
    P.eps = hp[H_EPS]
    P.rho = hp[H_RHO]
    P.weight_decay = hp[H_WEIGHT_DECAY]
    P.l2 = hp[H_L2]
    P.l1 = hp[H_L1]
    P.clip = hp[H_CLIP]
    P.gamma = hp[H_GAMMA]
    P.step_size = hp[H_STEP_SIZE]
    P.power = hp[H_POWER]
    P.t_max = hp[H_T_MAX]
    P.lr_min = hp[H_LR_MIN]
    P.warmup = hp[H_WARMUP]
    P.epoch = hp[H_EPOCH]


cdef inline double _learning_rate(const Params* P, int64_t t) noexcept nogil:
    """The schedule of :mod:`fastgd.schedules` at step clock ``t`` / epoch ``P.epoch``."""
    cdef double c = <double>t if P.unit == UNIT_STEP else P.epoch
    cdef double eta0 = P.lr
    cdef double warm = P.warmup
    cdef double lr, f
    if warm > 0 and c < warm:
        return P.lr_scale * eta0 * (c + 1.0) / warm
    c -= warm
    if P.sched == SCHED_CONSTANT:
        lr = eta0
    elif P.sched == SCHED_STEP:
        lr = eta0 * pow(P.gamma, floor(c / P.step_size))
    elif P.sched == SCHED_EXPONENTIAL:
        lr = eta0 * pow(P.gamma, c)
    elif P.sched == SCHED_POLYNOMIAL:
        f = (c if c < P.t_max else P.t_max) / P.t_max
        lr = (eta0 - P.lr_min) * pow(1.0 - f, P.power) + P.lr_min
    elif P.sched == SCHED_COSINE:
        f = (c if c < P.t_max else P.t_max) / P.t_max
        lr = P.lr_min + (eta0 - P.lr_min) * 0.5 * (1.0 + cos(M_PI * f))
    else:
        lr = eta0 / pow(c + 1.0, P.power)
    return P.lr_scale * lr


# --- losses -------------------------------------------------------------------------------
cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline double _sample_loss(int64_t loss_code, floating* z, const char* yrow, Py_ssize_t ystride,
                                floating* dz, Py_ssize_t K) noexcept nogil:
    """Loss of one sample from its margins ``z``; writes d loss / d z into ``dz``. ``yrow``
    points at the sample's targets, ``ystride`` bytes apart."""
    cdef Py_ssize_t k, label
    cdef double total, s
    cdef floating r, m, yi, e, zmax
    if loss_code == LOSS_SQUARED:
        total = 0.0
        for k in range(K):
            r = z[k] - (<const floating*>(yrow + k * ystride))[0]
            total += r * r
            dz[k] = 2.0 * r
        return total
    if loss_code == LOSS_LOG:
        # log(1 + e^m) - y m, evaluated without overflow for any margin
        m = z[0]
        yi = (<const floating*>yrow)[0]
        if m >= 0:
            e = _exp(-m)
            dz[0] = 1.0 / (1.0 + e) - yi
            return m + _log1p(e) - yi * m
        e = _exp(m)
        dz[0] = e / (1.0 + e) - yi
        return _log1p(e) - yi * m
    # softmax cross-entropy: logsumexp(z) - z[label], shifted by max(z)
    label = <Py_ssize_t>((<const floating*>yrow)[0])
    zmax = z[0]
    for k in range(1, K):
        if z[k] > zmax:
            zmax = z[k]
    s = 0.0
    for k in range(K):
        e = _exp(z[k] - zmax)
        dz[k] = e
        s += e
    for k in range(K):
        dz[k] = dz[k] / s
    dz[label] = dz[label] - 1.0
    return zmax + log(s) - z[label]


cdef inline floating _dot(const floating* a, const floating* b, Py_ssize_t n) noexcept nogil:
    """``sum(a[:n] * b[:n])`` with four partial sums: the additions of one long dependency
    chain would bound the per-sample cost; the rounding differs from a left-to-right sum
    only by the order of the terms (as BLAS's does)."""
    cdef floating s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t f = 0
    while f + 4 <= n:
        s0 = s0 + a[f] * b[f]
        s1 = s1 + a[f + 1] * b[f + 1]
        s2 = s2 + a[f + 2] * b[f + 2]
        s3 = s3 + a[f + 3] * b[f + 3]
        f += 4
    while f < n:
        s0 = s0 + a[f] * b[f]
        f += 1
    return (s0 + s1) + (s2 + s3)


cdef inline double _accumulate(const floating* xi, const char* yrow, Py_ssize_t ystride, floating s,
                               const floating* cf, floating* g, floating* z, floating* dz,
                               Py_ssize_t p, Py_ssize_t K, int64_t loss_code) noexcept nogil:
    """Add one sample's weighted gradient (features ``xi``, weight ``s``) to ``g``; return its
    weighted loss. ``cf`` / ``g`` are the C-contiguous ``(p + 1, K)`` coefficient / gradient."""
    cdef Py_ssize_t f, k
    cdef floating xf, d
    cdef double loss
    if K == 1:
        z[0] = cf[p] + _dot(xi, cf, p)
    else:
        for k in range(K):
            z[k] = cf[p * K + k]
        for f in range(p):
            xf = xi[f]
            for k in range(K):
                z[k] = z[k] + xf * cf[f * K + k]
    loss = _sample_loss(loss_code, z, yrow, ystride, dz, K)
    if K == 1:
        d = dz[0] * s
        for f in range(p):
            g[f] = g[f] + xi[f] * d
        g[p] = g[p] + d
    else:
        for k in range(K):
            dz[k] = dz[k] * s
        for f in range(p):
            xf = xi[f]
            for k in range(K):
                g[f * K + k] = g[f * K + k] + xf * dz[k]
        for k in range(K):
            g[p * K + k] = g[p * K + k] + dz[k]
    return s * loss


# --- optimizer steps on a range [lo, hi) of the flattened parameters ----------------------
# ``wl2`` is the coupled L2 strength of the range (0 for the intercept row), ``cs`` the
# gradient scale (1 / batch size, times the clipping factor). ``st`` points at slot 0 of the
# optimizer state; slot j of parameter i is st[j * n + i].
cdef inline void _sgd(floating* cf, const floating* g, floating* st, Py_ssize_t n, Py_ssize_t lo,
                      Py_ssize_t hi, double wl2, double cs, double lr, double mu, bint nesterov) noexcept nogil:
    cdef Py_ssize_t i
    cdef double w, gi, v
    if mu > 0:
        for i in range(lo, hi):
            w = cf[i]
            gi = g[i] * cs + wl2 * w
            v = mu * st[i] + gi
            st[i] = <floating>v
            if nesterov:
                gi = gi + mu * v
            else:
                gi = v
            cf[i] = <floating>(w - lr * gi)
    else:
        for i in range(lo, hi):
            w = cf[i]
            gi = g[i] * cs + wl2 * w
            cf[i] = <floating>(w - lr * gi)


cdef inline void _adagrad(floating* cf, const floating* g, floating* st, Py_ssize_t lo, Py_ssize_t hi,
                          double wl2, double cs, double lr, double eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef double w, gi, s
    for i in range(lo, hi):
        w = cf[i]
        gi = g[i] * cs + wl2 * w
        s = st[i] + gi * gi
        st[i] = <floating>s
        cf[i] = <floating>(w - lr * gi / (sqrt(s) + eps))


cdef inline void _rmsprop(floating* cf, const floating* g, floating* st, Py_ssize_t lo, Py_ssize_t hi,
                          double wl2, double cs, double lr, double eps, double rho) noexcept nogil:
    cdef Py_ssize_t i
    cdef double w, gi, a
    for i in range(lo, hi):
        w = cf[i]
        gi = g[i] * cs + wl2 * w
        a = rho * st[i] + (1.0 - rho) * gi * gi
        st[i] = <floating>a
        cf[i] = <floating>(w - lr * gi / (sqrt(a) + eps))


cdef inline void _adam(floating* cf, const floating* g, floating* st, Py_ssize_t n, Py_ssize_t lo,
                       Py_ssize_t hi, double wl2, double shrink, double cs, double step_size,
                       double bc2_sqrt, double b1, double b2, double eps, bint amsgrad) noexcept nogil:
    cdef Py_ssize_t i
    cdef double w0, w, gi, m, v
    cdef floating* sm = st
    cdef floating* sv = st + n
    cdef floating* smax = st + 2 * n
    for i in range(lo, hi):
        w0 = cf[i]
        gi = g[i] * cs + wl2 * w0
        w = w0 * shrink
        m = b1 * sm[i] + (1.0 - b1) * gi
        v = b2 * sv[i] + (1.0 - b2) * gi * gi
        sm[i] = <floating>m
        sv[i] = <floating>v
        if amsgrad:
            if v > smax[i]:
                smax[i] = <floating>v
            v = smax[i]
        cf[i] = <floating>(w - step_size * m / (sqrt(v) / bc2_sqrt + eps))


cdef inline double _ipow(double a, int64_t b) noexcept nogil:
    """``a ** b`` for an integer ``b >= 0`` by repeated squaring, as Numba evaluates
    ``float ** int`` (so Adam's bias corrections agree with the Numba backend bit for bit)."""
    cdef double r = 1.0
    if b > 0x10000:
        return pow(a, <double>b)
    while b != 0:
        if b & 1:
            r *= a
        b >>= 1
        a *= a
    return r


cdef inline void _apply_step(floating* cf, const floating* g, floating* st, Py_ssize_t n_w,
                             Py_ssize_t n, const Params* P, int64_t t, double inv_b) noexcept nogil:
    """One optimizer step of all ``n`` parameters (the first ``n_w`` are weights, the rest the
    intercept) from ``g``, a sum over the batch scaled by ``inv_b``: global-norm clipping,
    coupled L2, the update rule, decoupled decay, the L1 proximal step."""
    cdef Py_ssize_t i
    cdef double lr = _learning_rate(P, t)
    cdef int64_t step = t + 1
    cdef double cs = inv_b
    cdef double sq, gi, c, w, thresh, step_size, bc2_sqrt
    if P.clip > 0:
        # torch.nn.utils.clip_grad_norm_: scale by min(1, clip / (||g|| + 1e-6))
        sq = 0.0
        for i in range(n):
            gi = g[i] * inv_b
            sq += gi * gi
        c = P.clip / (sqrt(sq) + 1e-6)
        if c < 1.0:
            cs = inv_b * c
    if P.opt == OPT_SGD:
        _sgd(cf, g, st, n, 0, n_w, P.l2, cs, lr, P.momentum, P.nesterov != 0)
        _sgd(cf, g, st, n, n_w, n, 0.0, cs, lr, P.momentum, P.nesterov != 0)
    elif P.opt == OPT_ADAGRAD:
        _adagrad(cf, g, st, 0, n_w, P.l2, cs, lr, P.eps)
        _adagrad(cf, g, st, n_w, n, 0.0, cs, lr, P.eps)
    elif P.opt == OPT_RMSPROP:
        _rmsprop(cf, g, st, 0, n_w, P.l2, cs, lr, P.eps, P.rho)
        _rmsprop(cf, g, st, n_w, n, 0.0, cs, lr, P.eps, P.rho)
    else:
        step_size = lr / (1.0 - _ipow(P.beta1, step))
        bc2_sqrt = sqrt(1.0 - _ipow(P.beta2, step))
        _adam(cf, g, st, n, 0, n_w, P.l2, 1.0 - lr * P.weight_decay, cs, step_size, bc2_sqrt,
              P.beta1, P.beta2, P.eps, P.amsgrad != 0)
        _adam(cf, g, st, n, n_w, n, 0.0, 1.0, cs, step_size, bc2_sqrt,
              P.beta1, P.beta2, P.eps, P.amsgrad != 0)
    if P.l1 > 0:
        thresh = lr * P.l1
        for i in range(n_w):
            w = cf[i]
            if w > thresh:
                cf[i] = <floating>(w - thresh)
            elif w < -thresh:
                cf[i] = <floating>(w + thresh)
            else:
                cf[i] = 0


cdef inline double _apply_step_rows(floating* cf, const floating* g, floating* st, Py_ssize_t n,
                                   Py_ssize_t p, Py_ssize_t K, const int64_t* rows, Py_ssize_t n_rows,
                                   const Params* P, int64_t t, double inv_b) noexcept nogil:
    """:func:`_apply_step` restricted to the coefficient rows ``rows[:n_rows]`` (the rows a
    sparse batch touched, the intercept row ``p`` last; every other row's gradient is zero and
    it is left alone). The optimizer is dispatched once; returns the learning rate used."""
    cdef Py_ssize_t j, i, lo, r
    cdef double lr = _learning_rate(P, t)
    cdef int64_t step = t + 1
    cdef double cs = inv_b
    cdef double sq, gi, c, w, thresh, step_size, bc2_sqrt, shrink
    cdef bint nesterov = P.nesterov != 0
    cdef bint amsgrad = P.amsgrad != 0
    if P.clip > 0:
        sq = 0.0
        for j in range(n_rows):
            lo = rows[j] * K
            for i in range(lo, lo + K):
                gi = g[i] * inv_b
                sq += gi * gi
        c = P.clip / (sqrt(sq) + 1e-6)
        if c < 1.0:
            cs = inv_b * c
    if P.opt == OPT_SGD:
        for j in range(n_rows):
            r = rows[j]
            _sgd(cf, g, st, n, r * K, r * K + K, P.l2 if r < p else 0.0, cs, lr, P.momentum, nesterov)
    elif P.opt == OPT_ADAGRAD:
        for j in range(n_rows):
            r = rows[j]
            _adagrad(cf, g, st, r * K, r * K + K, P.l2 if r < p else 0.0, cs, lr, P.eps)
    elif P.opt == OPT_RMSPROP:
        for j in range(n_rows):
            r = rows[j]
            _rmsprop(cf, g, st, r * K, r * K + K, P.l2 if r < p else 0.0, cs, lr, P.eps, P.rho)
    else:
        step_size = lr / (1.0 - _ipow(P.beta1, step))
        bc2_sqrt = sqrt(1.0 - _ipow(P.beta2, step))
        shrink = 1.0 - lr * P.weight_decay
        for j in range(n_rows):
            r = rows[j]
            if r < p:
                _adam(cf, g, st, n, r * K, r * K + K, P.l2, shrink, cs, step_size, bc2_sqrt,
                      P.beta1, P.beta2, P.eps, amsgrad)
            else:
                _adam(cf, g, st, n, r * K, r * K + K, 0.0, 1.0, cs, step_size, bc2_sqrt,
                      P.beta1, P.beta2, P.eps, amsgrad)
    if P.l1 > 0:
        thresh = lr * P.l1
        for j in range(n_rows):
            r = rows[j]
            if r < p:
                for i in range(r * K, r * K + K):
                    w = cf[i]
                    if w > thresh:
                        cf[i] = <floating>(w - thresh)
                    elif w < -thresh:
                        cf[i] = <floating>(w + thresh)
                    else:
                        cf[i] = 0
    return lr


cdef inline void _prefetch(const char* start, Py_ssize_t n_bytes) noexcept nogil:
    """Ask for the cache lines of ``n_bytes`` from ``start`` (a hint; no effect on results).
    In a shuffled epoch every sample's row is a cache miss; asking for the next rows while the
    current one is being processed overlaps the misses with the arithmetic."""
    cdef Py_ssize_t off = 0
    while off < n_bytes:
        FASTGD_PREFETCH(start + off)
        off += 64
    if n_bytes > 0:
        FASTGD_PREFETCH(start + n_bytes - 1)


cdef inline bint _all_finite(const floating* a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(a[i]):
            return False
    return True


cdef int _n_slots(const Params* P) noexcept nogil:
    if P.opt == OPT_SGD:
        return 1 if P.momentum > 0 else 0
    if P.opt == OPT_ADAGRAD or P.opt == OPT_RMSPROP:
        return 1
    return 3 if P.amsgrad else 2


cdef int _check_layout(Py_ssize_t n_rows, Py_ssize_t n_cols, Py_ssize_t y_rows, Py_ssize_t y_cols,
                       Py_ssize_t sw_len, Py_ssize_t p1, Py_ssize_t K, Py_ssize_t g_rows,
                       Py_ssize_t g_cols, Py_ssize_t w_rows, Py_ssize_t w_cols, int64_t loss) except -1:
    # O(1) shape checks before the loop: with bounds checking compiled out, a mismatched
    # buffer would otherwise read or write out of bounds. (Values are not validated.)
    if n_cols != p1 - 1 or y_rows != n_rows or sw_len != n_rows:
        raise ValueError(f"inconsistent shapes: X ({n_rows}, {n_cols}), y rows {y_rows}, "
                         f"sw {sw_len}, coef ({p1}, {K})")
    if y_cols < (K if loss == LOSS_SQUARED else 1):
        raise ValueError(f"y has {y_cols} columns; the loss needs {K if loss == LOSS_SQUARED else 1}")
    if g_rows != p1 or g_cols != K:
        raise ValueError(f"grad has shape ({g_rows}, {g_cols}); coef has ({p1}, {K})")
    if w_rows < WORK_ROWS or w_cols < K:
        raise ValueError(f"work has shape ({w_rows}, {w_cols}); need at least ({WORK_ROWS}, {K})")
    return 0


cdef int _check_params(Py_ssize_t n_codes, Py_ssize_t n_hp) except -1:
    if n_codes < N_CODES or n_hp < N_HP:
        raise ValueError(f"codes / hp have {n_codes} / {n_hp} entries; need {N_CODES} / {N_HP}")
    return 0


cdef enum:
    PREFETCH_AHEAD = 4  # samples ahead whose rows are requested early (a tuning constant)


cdef int _check_step_args(Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, const Params* P, Py_ssize_t p1,
                          Py_ssize_t K, Py_ssize_t batch_size, Py_ssize_t t_len) except -1:
    if s0 < _n_slots(P) or (s0 > 0 and (s1 != p1 or s2 != K)):
        raise ValueError(f"state has shape ({s0}, {s1}, {s2}); the optimizer needs "
                         f"({_n_slots(P)}, {p1}, {K})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if t_len < 1:
        raise ValueError("t must have one element")
    return 0


# --- the kernels ----------------------------------------------------------------------------
def epoch_dense(const floating[:, ::1] X, const floating[:, :] y, const floating[:] sw,
                const int64_t[:] order, floating[:, ::1] coef, floating[:, :, ::1] state,
                int64_t[:] t, const int64_t[:] codes, const double[:] hp, Py_ssize_t batch_size,
                floating[:, ::1] grad, floating[:, ::1] work):
    """One epoch on dense ``X`` (the contract of :mod:`fastgd._contract`).

    Returns ``(status, loss_sum)``.
    """
    cdef Params P
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t p1 = coef.shape[0]
    cdef Py_ssize_t K = coef.shape[1]
    cdef Py_ssize_t p = p1 - 1
    cdef Py_ssize_t n = p1 * K
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t start, end, j, i
    cdef int64_t step
    cdef int status = STATUS_OK
    cdef double loss_sum = 0.0
    cdef double batch_loss
    cdef floating* cf = &coef[0, 0]
    cdef floating* g = &grad[0, 0]
    cdef floating* z = &work[0, 0]
    cdef floating* dz = &work[1, 0]
    cdef floating* st = NULL
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    _check_layout(X.shape[0], X.shape[1], y.shape[0], y.shape[1], sw.shape[0], p1, K,
                  grad.shape[0], grad.shape[1], work.shape[0], work.shape[1], P.loss)
    _check_step_args(state.shape[0], state.shape[1], state.shape[2], &P, p1, K, batch_size, t.shape[0])
    if state.shape[0] > 0:
        st = &state[0, 0, 0]
    with nogil:
        step = t[0]
        start = 0
        while start < n_steps:
            end = start + batch_size
            if end > n_steps:
                end = n_steps
            for j in range(n):
                g[j] = 0
            batch_loss = 0.0
            for j in range(start, end):
                if j + PREFETCH_AHEAD < n_steps:
                    i = order[j + PREFETCH_AHEAD]
                    _prefetch(<const char*>&X[i, 0], p * <Py_ssize_t>sizeof(floating))
                    FASTGD_PREFETCH(&y[i, 0])
                    FASTGD_PREFETCH(&sw[i])
                i = order[j]
                batch_loss += _accumulate(&X[i, 0], <const char*>&y[i, 0], ystride, sw[i], cf, g,
                                          z, dz, p, K, P.loss)
            loss_sum += batch_loss
            if not isfinite(batch_loss):
                status = STATUS_NONFINITE
                break
            _apply_step(cf, g, st, p * K, n, &P, step, 1.0 / <double>(end - start))
            step += 1
            t[0] = step
            start = end
        if status == STATUS_OK and not _all_finite(cf, n):
            status = STATUS_NONFINITE
    return status, loss_sum


# --- multi-core gradient accumulation ---------------------------------------------------
# A batch is cut into N_CHUNKS fixed slices; each slice's gradient is summed into its own
# buffer (in parallel, one slice per prange iteration), then the buffers are added in slice
# order. The result depends on neither the number of threads nor their scheduling.
# Each thread takes a contiguous block of slices (static schedule, default chunk): with
# slices dealt round-robin, two threads work on neighbouring buffers at once and share the
# cache line between them on every sample (measured: 1.06x on two cores instead of 1.9x).
cdef enum:
    LOCAL_K = 16  # up to this many outputs, a slice keeps its margins on the thread's stack


cdef inline int64_t _read_i64(const char* base, Py_ssize_t stride, Py_ssize_t j) noexcept nogil:
    return (<const int64_t*>(base + j * stride))[0]


cdef double _slice_gradient(const floating* X, const char* yb, Py_ssize_t ys0, Py_ssize_t ys1,
                            const char* swb, Py_ssize_t sws, const char* ob, Py_ssize_t os,
                            Py_ssize_t n_order, Py_ssize_t lo, Py_ssize_t hi, const floating* cf,
                            floating* part, floating* z, floating* dz, Py_ssize_t p, Py_ssize_t K,
                            int64_t loss_code) noexcept nogil:
    """``part`` = sum over the samples ``order[lo:hi]`` (``lo:hi`` itself when ``ob`` is NULL)
    of the weighted sample gradients; returns their weighted loss sum."""
    cdef floating zl[2 * LOCAL_K]
    cdef Py_ssize_t j, i, q
    cdef double acc = 0.0
    if K <= LOCAL_K:
        # the shared scratch rows of neighbouring slices sit on one cache line: writing the
        # margins there from two threads on every sample would bounce the line between cores
        z = zl
        dz = zl + LOCAL_K
    for q in range((p + 1) * K):
        part[q] = 0
    for j in range(lo, hi):
        if ob != NULL:
            if j + PREFETCH_AHEAD < n_order:
                i = _read_i64(ob, os, j + PREFETCH_AHEAD)
                _prefetch(<const char*>(X + i * p), p * <Py_ssize_t>sizeof(floating))
            i = _read_i64(ob, os, j)
        else:
            i = j
        acc += _accumulate(X + i * p, yb + i * ys0, ys1, (<const floating*>(swb + i * sws))[0],
                           cf, part, z, dz, p, K, loss_code)
    return acc


cdef double _chunked_gradient(const floating* X, const char* yb, Py_ssize_t ys0, Py_ssize_t ys1,
                              const char* swb, Py_ssize_t sws, const char* ob, Py_ssize_t os,
                              Py_ssize_t n_order, Py_ssize_t start, Py_ssize_t end, const floating* cf,
                              floating* g, floating* partial, floating* pwork, Py_ssize_t pw_chunk,
                              Py_ssize_t pw_row, double* losses, Py_ssize_t p, Py_ssize_t K,
                              int64_t loss_code) noexcept nogil:
    """``g`` = sum over ``order[start:end]`` of the weighted sample gradients, accumulated in
    N_CHUNKS fixed slices in parallel and added in slice order; returns the weighted loss sum.
    ``partial`` is (N_CHUNKS, p + 1, K), ``pwork`` N_CHUNKS blocks of ``pw_chunk`` elements
    (margins, then d loss / d z ``pw_row`` elements later), ``losses`` (N_CHUNKS,)."""
    cdef Py_ssize_t b = end - start
    cdef Py_ssize_t n = (p + 1) * K
    cdef Py_ssize_t c, lo, hi, q
    cdef floating acc
    cdef double total = 0.0
    for c in prange(N_CHUNKS, schedule="static"):
        lo = start + (b * c) // N_CHUNKS
        hi = start + (b * (c + 1)) // N_CHUNKS
        losses[c] = _slice_gradient(X, yb, ys0, ys1, swb, sws, ob, os, n_order, lo, hi, cf,
                                    partial + c * n, pwork + c * pw_chunk,
                                    pwork + c * pw_chunk + pw_row, p, K, loss_code)
    for c in range(N_CHUNKS):
        total += losses[c]
    for q in range(n):
        acc = partial[q]
        for c in range(1, N_CHUNKS):
            acc = acc + partial[c * n + q]
        g[q] = acc
    return total


cdef int _check_chunk_buffers(tuple partial_shape, tuple pwork_shape, Py_ssize_t n_losses,
                              Py_ssize_t p1, Py_ssize_t K) except -1:
    if partial_shape != (N_CHUNKS, p1, K):
        raise ValueError(f"partial has shape {partial_shape}; need ({N_CHUNKS}, {p1}, {K})")
    if pwork_shape[0] != N_CHUNKS or pwork_shape[1] < WORK_ROWS or pwork_shape[2] < K:
        raise ValueError(f"pwork has shape {pwork_shape}; need ({N_CHUNKS}, {WORK_ROWS}, {K})")
    if n_losses < N_CHUNKS:
        raise ValueError(f"losses has {n_losses} entries; need {N_CHUNKS}")
    return 0


def epoch_dense_chunked(const floating[:, ::1] X, const floating[:, :] y, const floating[:] sw,
                        const int64_t[:] order, floating[:, ::1] coef, floating[:, :, ::1] state,
                        int64_t[:] t, const int64_t[:] codes, const double[:] hp, Py_ssize_t batch_size,
                        floating[:, ::1] grad, floating[:, ::1] work, floating[:, :, ::1] partial,
                        floating[:, :, ::1] pwork, double[::1] losses):
    """:func:`epoch_dense` for large batches: each batch gradient summed over N_CHUNKS fixed
    slices on all cores, then added in slice order (same mathematics; the result does not
    depend on the thread count). Returns ``(status, loss_sum)``."""
    cdef Params P
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t p1 = coef.shape[0]
    cdef Py_ssize_t K = coef.shape[1]
    cdef Py_ssize_t p = p1 - 1
    cdef Py_ssize_t n = p1 * K
    cdef Py_ssize_t start, end
    cdef int64_t step
    cdef int status = STATUS_OK
    cdef double loss_sum = 0.0
    cdef double batch_loss
    cdef floating* cf = &coef[0, 0]
    cdef floating* g = &grad[0, 0]
    cdef floating* st = NULL
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    _check_layout(X.shape[0], X.shape[1], y.shape[0], y.shape[1], sw.shape[0], p1, K,
                  grad.shape[0], grad.shape[1], work.shape[0], work.shape[1], P.loss)
    _check_chunk_buffers(tuple(partial.shape)[:3], tuple(pwork.shape)[:3], losses.shape[0], p1, K)
    _check_step_args(state.shape[0], state.shape[1], state.shape[2], &P, p1, K, batch_size, t.shape[0])
    if state.shape[0] > 0:
        st = &state[0, 0, 0]
    cdef Py_ssize_t pw_chunk = pwork.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t pw_row = pwork.strides[1] // <Py_ssize_t>sizeof(floating)
    with nogil:
        step = t[0]
        start = 0
        while start < n_steps:
            end = start + batch_size
            if end > n_steps:
                end = n_steps
            batch_loss = _chunked_gradient(&X[0, 0], <const char*>&y[0, 0], y.strides[0], y.strides[1],
                                           <const char*>&sw[0], sw.strides[0],
                                           <const char*>&order[0], order.strides[0], n_steps,
                                           start, end, cf, g, &partial[0, 0, 0], &pwork[0, 0, 0],
                                           pw_chunk, pw_row, &losses[0], p, K, P.loss)
            loss_sum += batch_loss
            if not isfinite(batch_loss):
                status = STATUS_NONFINITE
                break
            _apply_step(cf, g, st, p * K, n, &P, step, 1.0 / <double>(end - start))
            step += 1
            t[0] = step
            start = end
        if status == STATUS_OK and not _all_finite(cf, n):
            status = STATUS_NONFINITE
    return status, loss_sum


def full_gradient_dense(const floating[:, ::1] X, const floating[:, :] y, const floating[:] sw,
                        const floating[:, ::1] coef, const int64_t[:] codes, floating[:, ::1] grad,
                        floating[:, ::1] work):
    """Sum over all samples of ``sw_i * grad loss_i`` into ``grad`` divided by n (on all cores,
    in N_CHUNKS fixed slices added in order); returns the weighted loss sum."""
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t p1 = coef.shape[0]
    cdef Py_ssize_t K = coef.shape[1]
    cdef Py_ssize_t p = p1 - 1
    cdef Py_ssize_t n = p1 * K
    cdef Py_ssize_t j
    cdef int64_t loss_code
    cdef double loss_sum = 0.0
    cdef floating* g = &grad[0, 0]
    _check_params(codes.shape[0], N_HP)
    loss_code = codes[C_LOSS]
    _check_layout(X.shape[0], X.shape[1], y.shape[0], y.shape[1], sw.shape[0], p1, K,
                  grad.shape[0], grad.shape[1], work.shape[0], work.shape[1], loss_code)
    # the slices' scratch, allocated here (not per step, and never inside the parallel loop)
    dtype = np.float32 if floating is float else np.float64
    cdef floating[:, :, ::1] partial = np.empty((N_CHUNKS, p1, K), dtype=dtype)
    cdef floating[:, :, ::1] pwork = np.empty((N_CHUNKS, WORK_ROWS, K), dtype=dtype)
    cdef double[::1] losses = np.empty(N_CHUNKS)
    cdef floating dn = <floating>n_samples
    with nogil:
        loss_sum = _chunked_gradient(&X[0, 0], <const char*>&y[0, 0], y.strides[0], y.strides[1],
                                     <const char*>&sw[0], sw.strides[0], NULL, 0, n_samples,
                                     0, n_samples, &coef[0, 0], g, &partial[0, 0, 0], &pwork[0, 0, 0],
                                     WORK_ROWS * K, K, &losses[0], p, K, loss_code)
        for j in range(n):
            g[j] = g[j] / dn
    return loss_sum


cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTGD_OPENMP 1
    #else
    #define FASTGD_OPENMP 0
    #endif
    """
    int FASTGD_OPENMP


def _chunk_threads():
    """``(built_with_openmp, thread ids)``: the thread that ran each of the N_CHUNKS slices of
    a parallel loop like the gradient's (a diagnostic for the thread-count tests)."""
    cdef int ids[N_CHUNKS]
    cdef Py_ssize_t c
    for c in prange(N_CHUNKS, schedule="static", nogil=True):
        ids[c] = threadid()
    return FASTGD_OPENMP != 0, [ids[c] for c in range(N_CHUNKS)]


# --- sparse (CSR) epochs ---------------------------------------------------------------------
# Between steps, a coordinate no sample of the batch touches receives only the penalty /
# optimizer decay. Where that has a closed form (SPARSE_LAZY_EXACT) it is deferred: the
# per-step maps |w| <- max(a_s |w| - b_s, 0) are composed into one cumulative map x -> A x - B,
# and each coordinate records the step it was last brought up to date and (A, B) at that
# step (``lazy_work``); it is caught up when next touched and at the end of the epoch.
cdef double RESCALE_BELOW = 1e-100  # bring everything up to date before A underflows


cdef struct Lazy:
    # lazy_work is (p, LAZY_FIELDS): a coordinate's three fields share a cache line; each
    # pointer below starts at its field and steps by LAZY_FIELDS.
    double* last  # lazy_work[:, 0]: the step each coordinate was last brought up to date
    double* a  # lazy_work[:, 1]: A at that step
    double* b  # lazy_work[:, 2]: B at that step
    int64_t* mark  # index_work[0]: "touched by the step with this stamp"
    int64_t* counters
    bint rmsprop  # the accumulator decays by rho per missed step
    double rho


cdef inline int _sparse_mode(const Params* P) noexcept nogil:
    if ((P.opt == OPT_SGD and P.momentum == 0)
            or ((P.opt == OPT_ADAGRAD or P.opt == OPT_RMSPROP) and P.l2 == 0)):
        return SPARSE_LAZY_EXACT
    return SPARSE_LAZY_APPROX if P.lazy != 0 else SPARSE_DENSE


def sparse_mode(const int64_t[:] codes, const double[:] hp):
    """:func:`fastgd._contract.sparse_mode`, compiled."""
    cdef Params P
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    return _sparse_mode(&P)


cdef inline int _catch_up(floating* cf, floating* st, Py_ssize_t c, Py_ssize_t K, double A, double B,
                          double T, const Lazy* L) noexcept nogil:
    """Apply to coordinate row ``c`` the deferred maps since it was last up to date:
    ``|w| <- max((A / A_u) |w| - (B - (A / A_u) B_u), 0)``; RMSprop's accumulator (slot 0 at
    ``st``) decays by ``rho`` per missed step. Returns 1 if anything was applied."""
    cdef double u = L.last[LAZY_FIELDS * c]
    cdef double ratio, shift, w, aw, f
    cdef Py_ssize_t k
    if u == T:
        return 0
    ratio = A / L.a[LAZY_FIELDS * c]
    shift = B - ratio * L.b[LAZY_FIELDS * c]
    for k in range(c * K, c * K + K):
        w = cf[k]
        aw = fabs(w) * ratio - shift
        if aw > 0:
            cf[k] = <floating>(aw if w > 0 else -aw)
        else:
            cf[k] = 0
    if L.rmsprop:
        f = pow(L.rho, T - u)
        for k in range(c * K, c * K + K):
            st[k] = <floating>(st[k] * f)
    L.last[LAZY_FIELDS * c] = T
    L.a[LAZY_FIELDS * c] = A
    L.b[LAZY_FIELDS * c] = B
    return 1


cdef void _catch_up_all(floating* cf, floating* st, Py_ssize_t p, Py_ssize_t K, double A, double B,
                        double T, const Lazy* L) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(p):
        L.counters[COUNT_CATCHUPS] += _catch_up(cf, st, c, K, A, B, T, L)


cdef void _advance_map(floating* cf, floating* st, Py_ssize_t p, Py_ssize_t K, double* A, double* B,
                       double T, double a, double b, int64_t stamp, const Lazy* L) noexcept nogil:
    """After the step from clock ``T`` (its touched coordinates, ``mark == stamp``, already
    stepped in full), fold the step's map ``|w| <- max(a |w| - b, 0)`` into the cumulative map
    ``(A, B)`` of the untouched ones. The caller records ``(T + 1, A, B)`` as the touched
    coordinates' snapshot.

    Two cases bring every coordinate up to date instead and restart the map: a non-positive
    ``a`` (``lr * l2 >= 1``: the map flips signs and does not compose) and an ``A`` about to
    underflow."""
    cdef Py_ssize_t c, k
    cdef double w, m
    if a <= 0.0:
        for c in range(p):
            if L.mark[c] != stamp:
                # (touched coordinates were brought up to date before their step)
                L.counters[COUNT_CATCHUPS] += _catch_up(cf, st, c, K, A[0], B[0], T, L)
                for k in range(c * K, c * K + K):
                    w = cf[k] * a
                    m = fabs(w) - b
                    if m > 0:
                        cf[k] = <floating>(m if w > 0 else -m)
                    elif m <= 0:
                        cf[k] = 0
                    else:
                        cf[k] = <floating>m  # NaN stays NaN
        A[0] = 1.0
        B[0] = 0.0
    else:
        A[0] = A[0] * a
        B[0] = a * B[0] + b
        if A[0] >= RESCALE_BELOW:
            return
        for c in range(p):
            if L.mark[c] != stamp:
                L.counters[COUNT_CATCHUPS] += _catch_up(cf, st, c, K, A[0], B[0], T + 1.0, L)
        A[0] = 1.0
        B[0] = 0.0
    for c in range(p):
        L.last[LAZY_FIELDS * c] = T + 1.0
        L.a[LAZY_FIELDS * c] = 1.0
        L.b[LAZY_FIELDS * c] = 0.0


cdef inline void _prefetch_csr_sample(const floating[:] data, const index_t[:] indices,
                                      const ptr_t[:] indptr, const floating[:, :] y, const floating[:] sw,
                                      const int64_t[:] order, Py_ssize_t j) noexcept nogil:
    """Ask for what sample ``order[j + PREFETCH_AHEAD]`` will read: its row's values and
    column indices, its target and weight; and for the row pointers of the sample after it
    (reading them here would otherwise miss in cache)."""
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t i, lo, hi
    if j + 2 * PREFETCH_AHEAD < n_steps:
        FASTGD_PREFETCH(&indptr[order[j + 2 * PREFETCH_AHEAD]])
    if j + PREFETCH_AHEAD < n_steps:
        i = order[j + PREFETCH_AHEAD]
        lo = indptr[i]
        hi = indptr[i + 1]
        if hi > lo:
            _prefetch(<const char*>&data[lo], (hi - lo) * data.strides[0])
            _prefetch(<const char*>&indices[lo], (hi - lo) * indices.strides[0])
        FASTGD_PREFETCH(&y[i, 0])
        FASTGD_PREFETCH(&sw[i])


cdef double SCALE_BELOW = 1e-9  # fold the running scale into the weights before it loses precision


cdef int _epoch_csr_scaled_sgd(const floating* data, const index_t* indices, const ptr_t* indptr,
                               const floating[:, :] y, const floating[:] sw, const int64_t* order,
                               Py_ssize_t n_steps, floating* w, Py_ssize_t p, int64_t[:] t,
                               const Params* P, floating* z, floating* dz, int64_t* counters,
                               double* loss_sum) noexcept nogil:
    """Per-sample plain SGD with L2 and no L1, one output, on CSR rows: the untouched
    coordinates' shrinking is a running product, kept as one scalar ``S``. The weights are
    ``S * w`` during the epoch (the intercept unscaled); a step multiplies ``S`` by
    ``a = 1 - lr * l2`` and moves only the row's coordinates by ``lr * s * dloss * x_c / S``.
    ``S`` is folded into ``w`` below 1e-9, at a non-positive ``a`` and at the end of the epoch
    (Numba's ``_epoch_csr_scaled_sgd``, the same arithmetic). The CSR parts and the order are
    raw pointers to contiguous arrays: indexing through strided memoryviews in these two
    loops cost a third of the epoch (measured 72 ms against 55 ms for the same loop on
    pointers, 200,000 x 20,000 CSR)."""
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t j, i, q, lo, hi, ptr, c
    cdef int64_t step = t[0]
    cdef double S = 1.0
    cdef double lr, a, cg, loss
    cdef floating acc, acc1, f, stp
    for j in range(n_steps):
        if j + 2 * PREFETCH_AHEAD < n_steps:
            FASTGD_PREFETCH(&indptr[order[j + 2 * PREFETCH_AHEAD]])
        if j + PREFETCH_AHEAD < n_steps:
            q = order[j + PREFETCH_AHEAD]
            lo = indptr[q]
            hi = indptr[q + 1]
            _prefetch(<const char*>&data[lo], (hi - lo) * <Py_ssize_t>sizeof(floating))
            _prefetch(<const char*>&indices[lo], (hi - lo) * <Py_ssize_t>sizeof(index_t))
        i = order[j]
        lo = indptr[i]
        hi = indptr[i + 1]
        # two accumulators: the gathered products are independent, so two add chains hide
        # the floating-point add latency
        acc = 0
        acc1 = 0
        ptr = lo
        while ptr + 1 < hi:
            acc = acc + data[ptr] * w[indices[ptr]]
            acc1 = acc1 + data[ptr + 1] * w[indices[ptr + 1]]
            ptr += 2
        if ptr < hi:
            acc = acc + data[ptr] * w[indices[ptr]]
        z[0] = <floating>(S * (acc + acc1) + w[p])
        loss = sw[i] * _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, 1)
        loss_sum[0] += loss
        if not isfinite(loss):
            t[0] = step
            return STATUS_NONFINITE
        lr = _learning_rate(P, step)
        cg = lr * dz[0] * sw[i]
        a = 1.0 - lr * P.l2
        if a <= 0.0:  # lr * l2 >= 1 flips signs: apply the shrink to every weight now
            f = <floating>(S * a)
            for c in range(p):
                w[c] = w[c] * f
            counters[COUNT_CATCHUPS] += p
            S = 1.0
        else:
            S = S * a
        stp = <floating>(cg / S)
        for ptr in range(lo, hi):
            c = indices[ptr]
            w[c] = w[c] - stp * data[ptr]
        w[p] = w[p] - <floating>cg
        counters[COUNT_UPDATES] += hi - lo + 1
        if S < SCALE_BELOW:
            f = <floating>S
            for c in range(p):
                w[c] = w[c] * f
            counters[COUNT_CATCHUPS] += p
            S = 1.0
        step += 1
    t[0] = step
    if not _all_finite(w, p + 1):  # before the fold: a diverged epoch leaves untouched weights as they were
        return STATUS_NONFINITE
    if S != 1.0:
        f = <floating>S
        for c in range(p):
            w[c] = w[c] * f
        counters[COUNT_CATCHUPS] += p
    return STATUS_OK


cdef int _epoch_csr_plain_sgd(const floating[:] data, const index_t[:] indices, const ptr_t[:] indptr,
                              const floating[:, :] y, const floating[:] sw, const int64_t[:] order,
                              floating* w, Py_ssize_t p, int64_t[:] t, const Params* P, floating* z,
                              floating* dz, const Lazy* L, double* loss_sum) noexcept nogil:
    """Per-sample plain SGD with one output on canonical CSR rows, exact and lazy: each
    coordinate of the row is caught up inside the dot product, then stepped in full (the
    arithmetic of the dense path) and its snapshot recorded after the step."""
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t j, i, lo, hi, ptr, c
    cdef int64_t step = t[0]
    cdef double A = 1.0
    cdef double B = 0.0
    cdef double T, ratio, wc, lr, a, b, loss
    cdef floating acc, cg, ad, bd, v
    for j in range(n_steps):
        _prefetch_csr_sample(data, indices, indptr, y, sw, order, j)
        i = order[j]
        lo = indptr[i]
        hi = indptr[i + 1]
        T = <double>step
        acc = w[p]
        for ptr in range(lo, hi):
            c = indices[ptr]
            v = w[c]
            if L.last[LAZY_FIELDS * c] != T:
                # written without data-dependent branches (the signs of the weights are
                # unpredictable); equal to max(|w| r - s, 0) with w's sign, +0 when it vanishes
                ratio = A / L.a[LAZY_FIELDS * c]
                wc = fabs(v) * ratio - (B - ratio * L.b[LAZY_FIELDS * c])
                wc = wc if wc > 0 else 0.0
                v = <floating>(wc if v > 0 else 0.0 - wc)
                w[c] = v
            acc = acc + data[ptr] * v
        L.counters[COUNT_CATCHUPS] += hi - lo
        z[0] = acc
        loss = sw[i] * _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, 1)
        loss_sum[0] += loss
        if not isfinite(loss):
            return STATUS_NONFINITE
        lr = _learning_rate(P, step)
        cg = <floating>(lr * dz[0] * sw[i])
        a = 1.0 - lr * P.l2
        b = lr * P.l1
        ad = <floating>a
        bd = <floating>b
        for ptr in range(lo, hi):
            c = indices[ptr]
            v = ad * w[c] - cg * data[ptr]
            if b > 0:
                if v > bd:
                    v = v - bd
                elif v < -bd:
                    v = v + bd
                else:
                    v = 0
            w[c] = v
            L.mark[c] = j + 1
        w[p] = w[p] - cg
        L.counters[COUNT_UPDATES] += hi - lo + 1
        _advance_map(w, <floating*>NULL, p, 1, &A, &B, T, a, b, j + 1, L)
        for ptr in range(lo, hi):
            c = indices[ptr]
            L.last[LAZY_FIELDS * c] = T + 1.0
            L.a[LAZY_FIELDS * c] = A
            L.b[LAZY_FIELDS * c] = B
        step += 1
        t[0] = step
    if not _all_finite(w, p + 1):  # before the catch-up: a diverged epoch leaves untouched weights as they were
        return STATUS_NONFINITE
    T = <double>step
    for c in range(p):
        if L.last[LAZY_FIELDS * c] != T:
            ratio = A / L.a[LAZY_FIELDS * c]
            wc = fabs(w[c]) * ratio - (B - ratio * L.b[LAZY_FIELDS * c])
            if wc > 0:
                w[c] = <floating>(wc if w[c] > 0 else -wc)
            else:
                w[c] = 0
            L.counters[COUNT_CATCHUPS] += 1
    return STATUS_OK


def epoch_csr(const floating[:] data, const index_t[:] indices, const ptr_t[:] indptr,
              Py_ssize_t n_features, const floating[:, :] y, const floating[:] sw,
              const int64_t[:] order, floating[:, ::1] coef, floating[:, :, ::1] state,
              int64_t[:] t, const int64_t[:] codes, const double[:] hp, Py_ssize_t batch_size,
              floating[:, ::1] grad, floating[:, ::1] work, double[:, ::1] lazy_work,
              int64_t[:, ::1] index_work, int64_t[::1] counters):
    """One epoch on CSR parts (the contract of :mod:`fastgd._contract`): the mathematics of
    the dense epoch at O(nnz) per step where :func:`sparse_mode` allows it. ``indices`` and
    ``indptr`` may each be int32 or int64. Rows must be canonical (no duplicate column in a
    row; the estimators ensure it). Returns ``(status, loss_sum)``."""
    cdef Params P
    cdef Lazy L
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t p1 = coef.shape[0]
    cdef Py_ssize_t K = coef.shape[1]
    cdef Py_ssize_t p = p1 - 1
    cdef Py_ssize_t n = p1 * K
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t start, end, j, i, ptr, lo, hi, c, k, q, nt, r
    cdef int64_t step, stamp
    cdef int mode
    cdef int status = STATUS_OK
    cdef double loss_sum = 0.0
    cdef double batch_loss, loss, inv_b, lr, a, T
    cdef double A = 1.0
    cdef double B = 0.0
    cdef floating x, s
    cdef floating* cf = &coef[0, 0]
    cdef floating* g = &grad[0, 0]
    cdef floating* z = &work[0, 0]
    cdef floating* dz = &work[1, 0]
    cdef floating* st = NULL
    cdef int64_t* rows
    cdef bint scaled
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    if n_rows < 0:
        raise ValueError("indptr must have at least one element")
    _check_layout(n_rows, n_features, y.shape[0], y.shape[1], sw.shape[0], p1, K,
                  grad.shape[0], grad.shape[1], work.shape[0], work.shape[1], P.loss)
    if indices.shape[0] != data.shape[0] or indptr[n_rows] > data.shape[0]:
        raise ValueError(f"inconsistent CSR parts: {data.shape[0]} values, {indices.shape[0]} "
                         f"indices, indptr ends at {indptr[n_rows]}")
    # per-sample plain SGD with L2 only: the running-scale kernel, which needs no lazy buffers
    # (fastgd._contract.csr_needs_lazy_buffers)
    scaled = (batch_size == 1 and K == 1 and P.opt == OPT_SGD and P.momentum == 0 and P.clip == 0
              and P.l1 == 0)
    if not scaled and (lazy_work.shape[0] < p or lazy_work.shape[1] != LAZY_FIELDS):
        raise ValueError(f"lazy_work has shape ({lazy_work.shape[0]}, {lazy_work.shape[1]}); "
                         f"need ({p}, {LAZY_FIELDS})")
    if not scaled and (index_work.shape[0] < 2 or index_work.shape[1] < p + 1):
        raise ValueError(f"index_work has shape ({index_work.shape[0]}, {index_work.shape[1]}); "
                         f"need (2, {p + 1})")
    if counters.shape[0] < N_COUNTERS:
        raise ValueError(f"counters has {counters.shape[0]} entries; need {N_COUNTERS}")
    _check_step_args(state.shape[0], state.shape[1], state.shape[2], &P, p1, K, batch_size, t.shape[0])
    if state.shape[0] > 0:
        st = &state[0, 0, 0]
    L.counters = &counters[0]
    if scaled:
        # raw pointers need contiguous parts: views of the user's arrays as they come (scipy's
        # are contiguous), a contiguous copy only for the rare strided one
        data = np.ascontiguousarray(data)
        indices = np.ascontiguousarray(indices)
        indptr = np.ascontiguousarray(indptr)
        order = np.ascontiguousarray(order)
        with nogil:
            status = _epoch_csr_scaled_sgd(&data[0] if data.shape[0] > 0 else NULL,
                                           &indices[0] if indices.shape[0] > 0 else NULL, &indptr[0],
                                           y, sw, &order[0], n_steps, cf, p, t, &P, z, dz,
                                           L.counters, &loss_sum)
        return status, loss_sum
    L.last = &lazy_work[0, 0]
    L.a = &lazy_work[0, 1]
    L.b = &lazy_work[0, 2]
    L.mark = &index_work[0, 0]
    L.rmsprop = P.opt == OPT_RMSPROP
    L.rho = P.rho
    rows = &index_work[1, 0]
    mode = _sparse_mode(&P)
    with nogil:
        for q in range(n):
            g[q] = 0
        step = t[0]
        for c in range(p):
            L.last[LAZY_FIELDS * c] = <double>step
            L.a[LAZY_FIELDS * c] = 1.0
            L.b[LAZY_FIELDS * c] = 0.0
            L.mark[c] = -1
        if batch_size == 1 and K == 1 and P.opt == OPT_SGD and P.momentum == 0 and P.clip == 0:
            status = _epoch_csr_plain_sgd(data, indices, indptr, y, sw, order, cf, p, t, &P, z, dz, &L,
                                          &loss_sum)
        else:
            start = 0
            while start < n_steps:
                end = start + batch_size
                if end > n_steps:
                    end = n_steps
                stamp = step + 1
                T = <double>step
                # the batch's touched coordinates (each once), brought up to date
                nt = 0
                for j in range(start, end):
                    i = order[j]
                    for ptr in range(indptr[i], indptr[i + 1]):
                        c = indices[ptr]
                        if L.mark[c] != stamp:
                            L.mark[c] = stamp
                            rows[nt] = c
                            nt += 1
                            if mode == SPARSE_LAZY_EXACT:
                                L.counters[COUNT_CATCHUPS] += _catch_up(cf, st, c, K, A, B, T, &L)
                batch_loss = 0.0
                for j in range(start, end):
                    _prefetch_csr_sample(data, indices, indptr, y, sw, order, j)
                    i = order[j]
                    lo = indptr[i]
                    hi = indptr[i + 1]
                    for k in range(K):
                        z[k] = cf[p * K + k]
                    for ptr in range(lo, hi):
                        c = indices[ptr]
                        x = data[ptr]
                        for k in range(K):
                            z[k] = z[k] + x * cf[c * K + k]
                    loss = _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, K)
                    s = sw[i]
                    batch_loss += s * loss
                    for k in range(K):
                        dz[k] = dz[k] * s
                    for ptr in range(lo, hi):
                        c = indices[ptr]
                        x = data[ptr]
                        for k in range(K):
                            g[c * K + k] = g[c * K + k] + x * dz[k]
                    for k in range(K):
                        g[p * K + k] = g[p * K + k] + dz[k]
                loss_sum += batch_loss
                if not isfinite(batch_loss):
                    status = STATUS_NONFINITE
                    break
                rows[nt] = p
                inv_b = 1.0 / <double>(end - start)
                if mode == SPARSE_DENSE:
                    _apply_step(cf, g, st, p * K, n, &P, step, inv_b)
                    L.counters[COUNT_UPDATES] += p1
                else:
                    lr = _apply_step_rows(cf, g, st, n, p, K, rows, nt + 1, &P, step, inv_b)
                    L.counters[COUNT_UPDATES] += nt + 1
                    if mode == SPARSE_LAZY_EXACT:
                        a = 1.0 - lr * P.l2 if P.opt == OPT_SGD else 1.0
                        _advance_map(cf, st, p, K, &A, &B, T, a, lr * P.l1, stamp, &L)
                        for q in range(nt):
                            c = rows[q]
                            L.last[LAZY_FIELDS * c] = T + 1.0
                            L.a[LAZY_FIELDS * c] = A
                            L.b[LAZY_FIELDS * c] = B
                step += 1
                t[0] = step
                for q in range(nt + 1):
                    r = rows[q]
                    for k in range(r * K, r * K + K):
                        g[k] = 0
                start = end
            if status == STATUS_OK:
                # checked before the catch-up: a diverged epoch leaves untouched weights as they were
                if not _all_finite(cf, n):
                    status = STATUS_NONFINITE
                elif mode == SPARSE_LAZY_EXACT:
                    _catch_up_all(cf, st, p, K, A, B, <double>step, &L)
    return status, loss_sum


# Each CSR kernel checks the weights for non-finite values *before* its end-of-epoch fold or
# catch-up, and returns early on a non-finite loss: a diverged CSR epoch has changed only the
# coordinates its rows touch (and the intercept), so the driver may snapshot just those
# (fastgd._solver.rollback_rows). A build without this constant gets full snapshots.
CSR_DIVERGENCE_TOUCHES_ONLY_ROWS = True
