# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""The Cython backend: the kernel contract of :mod:`fastgd._contract` (dense and CSR).

The scalar rules (schedules, losses, optimizer updates, soft-threshold, lazy catch-up) are
those of :mod:`fastgd._backends._rules`, included below and shared with the Numba backend.
Precision is that of Numba's: margins and gradient sums in ``X``'s dtype, losses, schedules
and optimizer updates in double (rounded once to ``X``'s dtype when stored), for float32 and
float64 through a fused type. Results agree with Numba's to rounding of the sums only: the
margin's dot product is summed in four partial sums here, and Numba reassociates its own.
One call trains one epoch with the GIL released; nothing is allocated and no Python object is
touched inside the loop. Rows a few samples ahead in the epoch's order are prefetched (a shuffled epoch
otherwise waits on a cache miss per sample).

The contract's integers are declared once, in the ``cdef enum`` below, and exported by
:func:`contract_constants` so the test suite can check them against ``fastgd._contract``
(the package ``__init__`` also refuses to load a build that disagrees).

Shapes and codes are checked once per call (bounds checking is compiled out, so a mismatched
buffer would otherwise be read or written out of bounds; an unknown code returns its
``STATUS_BAD_*``); values are not validated. The decisions of the contract (slot count, the
fused per-sample path, the sparse mode) are taken from :mod:`fastgd._contract` at entry.

``epoch_dense_chunked`` and ``full_gradient_dense`` sum a batch gradient over ``N_CHUNKS`` fixed
slices in parallel (OpenMP ``prange``; serial when the extension was built without OpenMP) and
add the slices in order, so results do not depend on the thread count. ``epoch_csr`` takes the
CSR parts with int32 or int64 ``indices`` / ``indptr`` (a fused type each: no copies) and
defers the closed-form part of untouched coordinates' updates (see the contract).
"""

from cython.parallel cimport prange, threadid
from libc.math cimport copysign, cos, exp, fabs, floor, isfinite, log, log1p, pow, sqrt
from libc.stdint cimport int32_t, int64_t

import numpy as np

from fastgd import _contract

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
    LOSS_HINGE = 3
    LOSS_SQUARED_HINGE = 4
    LOSS_MODIFIED_HUBER = 5
    LOSS_PERCEPTRON = 6
    LOSS_HUBER = 7
    LOSS_EPSILON_INSENSITIVE = 8
    LOSS_SQUARED_EPSILON_INSENSITIVE = 9
    N_LOSSES = 10

    OPT_SGD = 0
    OPT_ADAGRAD = 1
    OPT_RMSPROP = 2
    OPT_ADAM = 3
    OPT_ADAMAX = 4
    OPT_NADAM = 5
    N_OPTIMIZERS = 6
    OPT_SAGA = 6

    SCHED_CONSTANT = 0
    SCHED_STEP = 1
    SCHED_EXPONENTIAL = 2
    SCHED_POLYNOMIAL = 3
    SCHED_COSINE = 4
    SCHED_INVSCALING = 5
    SCHED_COSINE_RESTARTS = 6
    SCHED_ONE_CYCLE = 7
    N_SCHEDULES = 8

    UNIT_STEP = 0
    UNIT_EPOCH = 1
    N_UNITS = 2

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
    H_LOSS_PARAM = 18
    H_MOMENTUM_DECAY = 19
    H_T_0 = 20
    H_T_MULT = 21
    H_MAX_LR = 22
    H_PCT_START = 23
    H_DIV_FACTOR = 24
    H_FINAL_DIV_FACTOR = 25
    H_ANNEAL_LINEAR = 26
    N_HP = 27

    STATUS_OK = 0
    STATUS_NONFINITE = 1
    STATUS_BAD_LOSS = 2
    STATUS_BAD_OPTIMIZER = 3
    STATUS_BAD_SCHEDULE = 4

    S_VELOCITY = 0
    S_SUM = 0
    S_SQUARE_AVG = 0
    S_EXP_AVG = 0
    S_EXP_AVG_SQ = 1
    S_MAX_EXP_AVG_SQ = 2
    S_EXP_INF = 1
    S_SAGA_MEAN = 0

    WORK_ROWS = 2

    N_CHUNKS = 8

    LAZY_FIELDS = 3
    D_A = 0
    D_B = 1
    D_STAMP = 2
    D_SQ = 3
    DEFERRED_FIELDS = 4
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
        "LOSS_HINGE": LOSS_HINGE, "LOSS_SQUARED_HINGE": LOSS_SQUARED_HINGE,
        "LOSS_MODIFIED_HUBER": LOSS_MODIFIED_HUBER, "LOSS_PERCEPTRON": LOSS_PERCEPTRON, "LOSS_HUBER": LOSS_HUBER,
        "LOSS_EPSILON_INSENSITIVE": LOSS_EPSILON_INSENSITIVE,
        "LOSS_SQUARED_EPSILON_INSENSITIVE": LOSS_SQUARED_EPSILON_INSENSITIVE, "N_LOSSES": N_LOSSES,
        "OPT_SGD": OPT_SGD, "OPT_ADAGRAD": OPT_ADAGRAD, "OPT_RMSPROP": OPT_RMSPROP,
        "OPT_ADAM": OPT_ADAM, "OPT_ADAMAX": OPT_ADAMAX, "OPT_NADAM": OPT_NADAM,
        "N_OPTIMIZERS": N_OPTIMIZERS, "OPT_SAGA": OPT_SAGA, "S_SAGA_MEAN": S_SAGA_MEAN,
        "SCHED_CONSTANT": SCHED_CONSTANT, "SCHED_STEP": SCHED_STEP,
        "SCHED_EXPONENTIAL": SCHED_EXPONENTIAL, "SCHED_POLYNOMIAL": SCHED_POLYNOMIAL,
        "SCHED_COSINE": SCHED_COSINE, "SCHED_INVSCALING": SCHED_INVSCALING,
        "SCHED_COSINE_RESTARTS": SCHED_COSINE_RESTARTS, "SCHED_ONE_CYCLE": SCHED_ONE_CYCLE,
        "N_SCHEDULES": N_SCHEDULES,
        "UNIT_STEP": UNIT_STEP, "UNIT_EPOCH": UNIT_EPOCH, "N_UNITS": N_UNITS,
        "H_LR": H_LR, "H_LR_SCALE": H_LR_SCALE, "H_MOMENTUM": H_MOMENTUM, "H_BETA1": H_BETA1,
        "H_BETA2": H_BETA2, "H_EPS": H_EPS, "H_RHO": H_RHO, "H_WEIGHT_DECAY": H_WEIGHT_DECAY,
        "H_L2": H_L2, "H_L1": H_L1, "H_CLIP": H_CLIP, "H_GAMMA": H_GAMMA,
        "H_STEP_SIZE": H_STEP_SIZE, "H_POWER": H_POWER, "H_T_MAX": H_T_MAX,
        "H_LR_MIN": H_LR_MIN, "H_WARMUP": H_WARMUP, "H_EPOCH": H_EPOCH,
        "H_LOSS_PARAM": H_LOSS_PARAM, "H_MOMENTUM_DECAY": H_MOMENTUM_DECAY, "H_T_0": H_T_0,
        "H_T_MULT": H_T_MULT, "H_MAX_LR": H_MAX_LR, "H_PCT_START": H_PCT_START,
        "H_DIV_FACTOR": H_DIV_FACTOR, "H_FINAL_DIV_FACTOR": H_FINAL_DIV_FACTOR,
        "H_ANNEAL_LINEAR": H_ANNEAL_LINEAR, "N_HP": N_HP,
        "STATUS_OK": STATUS_OK, "STATUS_NONFINITE": STATUS_NONFINITE,
        "STATUS_BAD_LOSS": STATUS_BAD_LOSS, "STATUS_BAD_OPTIMIZER": STATUS_BAD_OPTIMIZER,
        "STATUS_BAD_SCHEDULE": STATUS_BAD_SCHEDULE,
        "S_VELOCITY": S_VELOCITY, "S_SUM": S_SUM, "S_SQUARE_AVG": S_SQUARE_AVG, "S_EXP_AVG": S_EXP_AVG,
        "S_EXP_AVG_SQ": S_EXP_AVG_SQ, "S_MAX_EXP_AVG_SQ": S_MAX_EXP_AVG_SQ, "S_EXP_INF": S_EXP_INF,
        "WORK_ROWS": WORK_ROWS, "N_CHUNKS": N_CHUNKS,
        "LAZY_FIELDS": LAZY_FIELDS, "D_A": D_A, "D_B": D_B, "D_STAMP": D_STAMP, "D_SQ": D_SQ,
        "DEFERRED_FIELDS": DEFERRED_FIELDS, "COUNT_UPDATES": COUNT_UPDATES, "COUNT_CATCHUPS": COUNT_CATCHUPS,
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
    double* hp  # the whole hp array, as the shared rules read it


# The scalar rules shared with the Numba backend (inline nogil C functions here).
include "../_rules.py"


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
    P.hp = <double*>&hp[0]


cdef inline double _learning_rate(const Params* P, int64_t t) noexcept nogil:
    """The schedule of :mod:`fastgd.schedules` at step clock ``t`` / epoch ``hp[H_EPOCH]``."""
    return learning_rate(P.sched, P.unit, <double>t, P.hp)


# --- losses -------------------------------------------------------------------------------
cdef inline double _sample_loss(int64_t loss_code, floating* z, const char* yrow, Py_ssize_t ystride,
                                floating* dz, Py_ssize_t K, double* hp) noexcept nogil:
    """Loss of one sample from its margins ``z``; writes d loss / d z into ``dz``. ``yrow``
    points at the sample's targets, ``ystride`` bytes apart."""
    cdef Py_ssize_t k
    cdef double total = 0.0
    cdef double value, d
    if loss_code == LOSS_SOFTMAX:
        return softmax_loss(z, dz, K, <Py_ssize_t>((<const floating*>yrow)[0]))
    if loss_code == LOSS_SQUARED:
        for k in range(K):
            value, d = loss_1(loss_code, z[k], (<const floating*>(yrow + k * ystride))[0], hp)
            dz[k] = <floating>d
            total += value
        return total
    value, d = loss_1(loss_code, z[0], (<const floating*>yrow)[0], hp)
    dz[0] = <floating>d
    return value


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
                               Py_ssize_t p, Py_ssize_t K, int64_t loss_code, double* hp) noexcept nogil:
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
    loss = _sample_loss(loss_code, z, yrow, ystride, dz, K, hp)
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


# --- optimizer steps (the shared rules' apply_step) -------------------------------------
cdef inline double _apply_step(floating* cf, const floating* g, floating* st, Py_ssize_t n, Py_ssize_t K,
                               const int64_t* rows, Py_ssize_t n_rows, const Params* P, int64_t t,
                               double inv_b, double* mu_prod) noexcept nogil:
    """One optimizer step of the ``n`` parameters ``(p + 1, K)`` (every row when ``n_rows < 0``,
    else the rows ``rows[:n_rows]``, the intercept row last) from ``g``, a sum over the batch
    scaled by ``inv_b``; NAdam's momentum product ``mu_prod`` is carried from step to step.
    Returns the learning rate used."""
    cdef double lr
    # (int64_t and Py_ssize_t are the same 64-bit integer on the platforms fastgd builds for)
    if n_rows < 0:
        lr, mu_prod[0] = apply_step(P.opt, P.nesterov, P.amsgrad, P.sched, P.unit, cf, <floating*>g, st, n, K,
                                    <double>t, P.hp, inv_b, mu_prod[0])
    else:
        lr, mu_prod[0] = apply_step_rows(P.opt, P.nesterov, P.amsgrad, P.sched, P.unit, cf, <floating*>g, st, n,
                                         K, <Py_ssize_t*>rows, n_rows, <double>t, P.hp, inv_b, mu_prod[0])
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
    if K != 1 and 0 <= loss < N_LOSSES and loss != LOSS_SQUARED and loss != LOSS_SOFTMAX:
        raise ValueError(f"coef has {K} outputs; loss code {loss} is defined on one margin (K = 1)")
    if g_rows != p1 or g_cols != K:
        raise ValueError(f"grad has shape ({g_rows}, {g_cols}); coef has ({p1}, {K})")
    if w_rows < WORK_ROWS or w_cols < K:
        raise ValueError(f"work has shape ({w_rows}, {w_cols}); need at least ({WORK_ROWS}, {K})")
    return 0


cdef int _check_params(Py_ssize_t n_codes, Py_ssize_t n_hp) except -1:
    if n_codes < N_CODES or n_hp < N_HP:
        raise ValueError(f"codes / hp have {n_codes} / {n_hp} entries; need {N_CODES} / {N_HP}")
    return 0


cdef inline int _check_codes(const Params* P) noexcept nogil:
    return check_codes(P.loss, P.opt, P.sched, P.unit)


cdef enum:
    PREFETCH_AHEAD = 4  # samples ahead whose rows are requested early (a tuning constant)
    # the per-sample CSR kernels prefetch each coming row's weights only when the weights do
    # not fit in one core's L2 (1 MiB per core here, and on most x86-64 of recent years):
    # below that each prefetch is pure cost (Numba's WEIGHT_PREFETCH_MIN_BYTES, the same)
    WEIGHT_PREFETCH_MIN_BYTES = 1 << 20


cdef int _check_step_args(Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, codes, hp, Py_ssize_t p1,
                          Py_ssize_t K, Py_ssize_t batch_size, Py_ssize_t t_len) except -1:
    # (called after the codes were found in range)
    cdef Py_ssize_t slots = _contract.state_slots(codes, hp)
    if s0 < slots or (s0 > 0 and (s1 != p1 or s2 != K)):
        raise ValueError(f"state has shape ({s0}, {s1}, {s2}); the optimizer needs ({slots}, {p1}, {K})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if t_len < 1:
        raise ValueError("t must have one element")
    return 0


# --- the kernels ----------------------------------------------------------------------------
cdef int _epoch_dense_plain_sgd(const floating* X0, const floating[:, :] y, const floating[:] sw,
                                const int64_t[:] order, floating* w, Py_ssize_t p, int64_t[:] t,
                                const Params* P, double* loss_sum) noexcept nogil:
    """Per-sample plain SGD with one output (the contract's ``plain_sgd_per_sample``): the
    margin, then the shared rules' fused ``plain_sgd_sample``, one pass over the row each. The
    batch loop would write the row's gradient into ``grad`` and read it back in the update (and
    zero it per sample): three more passes, most of a per-sample step."""
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t j, i
    cdef int64_t step = t[0]
    cdef double lr, loss, d
    cdef floating m
    for j in range(n_steps):
        if j + PREFETCH_AHEAD < n_steps:
            i = order[j + PREFETCH_AHEAD]
            _prefetch(<const char*>(X0 + i * p), p * <Py_ssize_t>sizeof(floating))
            FASTGD_PREFETCH(&y[i, 0])
            FASTGD_PREFETCH(&sw[i])
        i = order[j]
        m = w[p] + _dot(X0 + i * p, w, p)
        loss, d = loss_1(P.loss, m, y[i, 0], P.hp)
        loss = sw[i] * loss
        loss_sum[0] += loss
        if not isfinite(loss):
            t[0] = step
            return STATUS_NONFINITE
        lr = _learning_rate(P, step)
        plain_sgd_sample(w, <floating*>X0, i * p, p, <floating>(1.0 - lr * P.l2), <floating>(lr * d * sw[i]),
                         lr * P.l1)
        step += 1
    t[0] = step
    return STATUS_OK


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
    cdef double mu_prod
    cdef floating* cf = &coef[0, 0]
    cdef floating* g = &grad[0, 0]
    cdef floating* z
    cdef floating* dz
    cdef const floating* X0  # row i starts at X0 + i * p (no address into an empty X is formed)
    cdef floating* st = NULL
    cdef bint plain
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    _check_layout(X.shape[0], X.shape[1], y.shape[0], y.shape[1], sw.shape[0], p1, K,
                  grad.shape[0], grad.shape[1], work.shape[0], work.shape[1], P.loss)
    z = &work[0, 0]  # after the layout check: work has its two rows
    dz = &work[1, 0]
    X0 = &X[0, 0] if p > 0 and X.shape[0] > 0 else NULL
    status = _check_codes(&P)
    if status != STATUS_OK:
        return status, 0.0
    _check_step_args(state.shape[0], state.shape[1], state.shape[2], codes, hp, p1, K, batch_size, t.shape[0])
    if state.shape[0] > 0:
        st = &state[0, 0, 0]
    plain = _contract.plain_sgd_per_sample(codes, hp, batch_size, K)
    with nogil:
        if plain:
            status = _epoch_dense_plain_sgd(X0, y, sw, order, cf, p, t, &P, &loss_sum)
        else:
            step = t[0]
            mu_prod = nadam_mu_product(P.opt, <double>step, P.hp)
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
                        _prefetch(<const char*>(X0 + i * p), p * <Py_ssize_t>sizeof(floating))
                        FASTGD_PREFETCH(&y[i, 0])
                        FASTGD_PREFETCH(&sw[i])
                    i = order[j]
                    batch_loss += _accumulate(X0 + i * p, <const char*>&y[i, 0], ystride, sw[i], cf, g,
                                              z, dz, p, K, P.loss, P.hp)
                loss_sum += batch_loss
                if not isfinite(batch_loss):
                    status = STATUS_NONFINITE
                    break
                _apply_step(cf, g, st, n, K, NULL, -1, &P, step, 1.0 / <double>(end - start), &mu_prod)
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
# Slices are handed out one at a time to whichever thread is free (dynamic schedule): a
# thread that runs slow (its core shared with another library's spinning threads, or with
# another process) simply takes fewer slices, instead of the whole region waiting for it.
# Slices handed out one after another run at the same time on different threads, so their
# buffers are spread apart (_chunk_slot): neighbouring buffers share a cache line at their
# boundary, and writing it from two threads on every sample bounces the line between cores
# (measured with round-robin slices in neighbouring buffers: 1.06x on two cores, not 1.9x).
cdef enum:
    LOCAL_K = 16  # up to this many outputs, a slice keeps its margins on the thread's stack


cdef inline Py_ssize_t _chunk_slot(Py_ssize_t c) noexcept nogil:
    """The buffer of slice ``c``: its index with the bits reversed (N_CHUNKS is a power of
    two), so that slices handed out consecutively write buffers at least two apart."""
    cdef Py_ssize_t slot = 0, width = 1
    while width < N_CHUNKS:
        slot = (slot << 1) | (c & 1)
        c >>= 1
        width <<= 1
    return slot


cdef inline int64_t _read_i64(const char* base, Py_ssize_t stride, Py_ssize_t j) noexcept nogil:
    return (<const int64_t*>(base + j * stride))[0]


cdef double _slice_gradient(const floating* X, const char* yb, Py_ssize_t ys0, Py_ssize_t ys1,
                            const char* swb, Py_ssize_t sws, const char* ob, Py_ssize_t os,
                            Py_ssize_t n_order, Py_ssize_t lo, Py_ssize_t hi, const floating* cf,
                            floating* part, floating* z, floating* dz, Py_ssize_t p, Py_ssize_t K,
                            int64_t loss_code, double* hp) noexcept nogil:
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
                           cf, part, z, dz, p, K, loss_code, hp)
    return acc


cdef double _chunked_gradient(const floating* X, const char* yb, Py_ssize_t ys0, Py_ssize_t ys1,
                              const char* swb, Py_ssize_t sws, const char* ob, Py_ssize_t os,
                              Py_ssize_t n_order, Py_ssize_t start, Py_ssize_t end, const floating* cf,
                              floating* g, floating* partial, floating* pwork, Py_ssize_t pw_chunk,
                              Py_ssize_t pw_row, double* losses, Py_ssize_t p, Py_ssize_t K,
                              int64_t loss_code, double* hp) noexcept nogil:
    """``g`` = sum over ``order[start:end]`` of the weighted sample gradients, accumulated in
    N_CHUNKS fixed slices in parallel and added in slice order; returns the weighted loss sum.
    ``partial`` is (N_CHUNKS, p + 1, K), ``pwork`` N_CHUNKS blocks of ``pw_chunk`` elements
    (margins, then d loss / d z ``pw_row`` elements later), ``losses`` (N_CHUNKS,)."""
    cdef Py_ssize_t b = end - start
    cdef Py_ssize_t n = (p + 1) * K
    cdef Py_ssize_t c, lo, hi, q, slot
    cdef floating acc
    cdef double total = 0.0
    for c in prange(N_CHUNKS, schedule="dynamic", chunksize=1):
        lo = start + (b * c) // N_CHUNKS
        hi = start + (b * (c + 1)) // N_CHUNKS
        slot = _chunk_slot(c)
        losses[c] = _slice_gradient(X, yb, ys0, ys1, swb, sws, ob, os, n_order, lo, hi, cf,
                                    partial + slot * n, pwork + slot * pw_chunk,
                                    pwork + slot * pw_chunk + pw_row, p, K, loss_code, hp)
    for c in range(N_CHUNKS):
        total += losses[c]
    for q in range(n):
        acc = partial[q]  # slice 0's buffer is slot 0
        for c in range(1, N_CHUNKS):
            acc = acc + partial[_chunk_slot(c) * n + q]
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
    cdef double mu_prod
    cdef floating* cf = &coef[0, 0]
    cdef floating* g = &grad[0, 0]
    cdef floating* st = NULL
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    _check_layout(X.shape[0], X.shape[1], y.shape[0], y.shape[1], sw.shape[0], p1, K,
                  grad.shape[0], grad.shape[1], work.shape[0], work.shape[1], P.loss)
    _check_chunk_buffers(tuple(partial.shape)[:3], tuple(pwork.shape)[:3], losses.shape[0], p1, K)
    status = _check_codes(&P)
    if status != STATUS_OK:
        return status, 0.0
    _check_step_args(state.shape[0], state.shape[1], state.shape[2], codes, hp, p1, K, batch_size, t.shape[0])
    if state.shape[0] > 0:
        st = &state[0, 0, 0]
    cdef Py_ssize_t pw_chunk = pwork.strides[0] // <Py_ssize_t>sizeof(floating)
    cdef Py_ssize_t pw_row = pwork.strides[1] // <Py_ssize_t>sizeof(floating)
    with nogil:
        step = t[0]
        mu_prod = nadam_mu_product(P.opt, <double>step, P.hp)
        start = 0
        while start < n_steps:
            end = start + batch_size
            if end > n_steps:
                end = n_steps
            batch_loss = _chunked_gradient(&X[0, 0], <const char*>&y[0, 0], y.strides[0], y.strides[1],
                                           <const char*>&sw[0], sw.strides[0],
                                           <const char*>&order[0], order.strides[0], n_steps,
                                           start, end, cf, g, &partial[0, 0, 0], &pwork[0, 0, 0],
                                           pw_chunk, pw_row, &losses[0], p, K, P.loss, P.hp)
            loss_sum += batch_loss
            if not isfinite(batch_loss):
                status = STATUS_NONFINITE
                break
            _apply_step(cf, g, st, n, K, NULL, -1, &P, step, 1.0 / <double>(end - start), &mu_prod)
            step += 1
            t[0] = step
            start = end
        if status == STATUS_OK and not _all_finite(cf, n):
            status = STATUS_NONFINITE
    return status, loss_sum


def full_gradient_dense(const floating[:, ::1] X, const floating[:, :] y, const floating[:] sw,
                        const floating[:, ::1] coef, const int64_t[:] codes, floating[:, ::1] grad,
                        floating[:, ::1] work, hp=None):
    """Sum over all samples of ``sw_i * grad loss_i`` into ``grad`` divided by n (on all cores,
    in N_CHUNKS fixed slices added in order); returns the weighted loss sum. ``hp`` carries the
    loss's parameter (``H_LOSS_PARAM``), if any."""
    cdef Py_ssize_t n_samples = X.shape[0]
    cdef Py_ssize_t p1 = coef.shape[0]
    cdef Py_ssize_t K = coef.shape[1]
    cdef Py_ssize_t p = p1 - 1
    cdef Py_ssize_t n = p1 * K
    cdef Py_ssize_t j
    cdef int64_t loss_code
    cdef double loss_sum = 0.0
    cdef floating* g = &grad[0, 0]
    cdef double[::1] hpv = np.zeros(N_HP) if hp is None else np.ascontiguousarray(hp, dtype=np.float64)
    _check_params(codes.shape[0], hpv.shape[0])
    loss_code = codes[C_LOSS]
    if loss_code < 0 or loss_code >= N_LOSSES:
        raise ValueError(f"unknown loss code {loss_code}")
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
                                     WORK_ROWS * K, K, &losses[0], p, K, loss_code, &hpv[0])
        for j in range(n):
            g[j] = g[j] / dn
    return loss_sum


cdef extern from *:
    """
    #ifdef _WIN32
    #include <windows.h>
    static void fastgd_sleep_us(unsigned int us) { Sleep((us + 999) / 1000); }
    #else
    #include <unistd.h>
    static void fastgd_sleep_us(unsigned int us) { usleep(us); }
    #endif
    """
    void fastgd_sleep_us(unsigned int us) noexcept nogil


cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTGD_OPENMP 1
    #else
    #define FASTGD_OPENMP 0
    #endif
    """
    int FASTGD_OPENMP


def _chunk_threads(delays_us=None):
    """``(built_with_openmp, thread ids)``: the thread that ran each of the N_CHUNKS slices of
    a parallel loop scheduled as the gradient's (a diagnostic for the thread-count tests).
    Slice ``c`` first sleeps ``delays_us[c]`` microseconds (none by default): a stand-in for
    work, or for a thread slowed by other work on its core."""
    cdef unsigned int delays[N_CHUNKS]
    cdef int ids[N_CHUNKS]
    cdef Py_ssize_t c
    for c in range(N_CHUNKS):
        delays[c] = 0 if delays_us is None else delays_us[c]
    for c in prange(N_CHUNKS, schedule="dynamic", chunksize=1, nogil=True):
        if delays[c] > 0:
            fastgd_sleep_us(delays[c])
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


cdef inline int _catch_up(floating* cf, floating* st, Py_ssize_t c, Py_ssize_t K, double A, double B,
                          double T, const Lazy* L) noexcept nogil:
    """The shared rules' ``catch_up`` of coordinate row ``c``; returns 1 if anything was applied."""
    return catch_up(cf, st, c, K, A, B, T, L.last, L.rmsprop, L.rho)


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
    if a <= 0.0:
        for c in range(p):
            if L.mark[c] != stamp:
                # (touched coordinates were brought up to date before their step)
                L.counters[COUNT_CATCHUPS] += _catch_up(cf, st, c, K, A[0], B[0], T, L)
                for k in range(c * K, c * K + K):
                    cf[k] = <floating>lazy_shrink(cf[k] * a, 1.0, b)
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


cdef inline double _sum_sq_rows(const floating* cf, const int64_t* rows, Py_ssize_t n_rows, Py_ssize_t K,
                                double inv) noexcept nogil:
    """The sum of ``(cf[row] * inv)**2`` over the coordinate rows ``rows[:n_rows]``."""
    cdef double total = 0.0, v
    cdef Py_ssize_t q, k
    for q in range(n_rows):
        for k in range(rows[q] * K, rows[q] * K + K):
            v = <double>cf[k] * inv
            total += v * v
    return total


cdef inline bint _rows_finite(const floating* cf, const int64_t* rows, Py_ssize_t n_rows,
                              Py_ssize_t K) noexcept nogil:
    cdef Py_ssize_t q, k
    for q in range(n_rows):
        for k in range(rows[q] * K, rows[q] * K + K):
            if not isfinite(cf[k]):
                return False
    return True


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


cdef inline double _scaled_step_row(floating* w, const floating* data, const index_t* indices,
                                    Py_ssize_t lo, Py_ssize_t hi, floating stp, bint track) noexcept nogil:
    """Step the row's coordinates ``w[c] -= stp * x_c``; with ``track``, returns the change of
    their sum of squares, in two partial sums (even and odd positions) kept in registers. One sum carried
    across rows through memory made this loop wait on store-to-load forwarding every
    coordinate: the running-scale epoch ran 1.8x slower than the plain one before it
    (20,000 x 20,000 CSR, 50 nnz per row). Numba's ``_scaled_step_row`` adds in the same order."""
    cdef double d0 = 0.0
    cdef double d1 = 0.0
    cdef double old, new
    cdef Py_ssize_t ptr = lo
    cdef Py_ssize_t c
    if not track:  # (the sum is not kept: the epoch folds the scale at its end)
        for ptr in range(lo, hi):
            w[indices[ptr]] = w[indices[ptr]] - stp * data[ptr]
        return 0.0
    while ptr + 1 < hi:
        c = indices[ptr]
        old = w[c]
        w[c] = w[c] - stp * data[ptr]
        new = w[c]
        d0 += new * new - old * old
        c = indices[ptr + 1]
        old = w[c]
        w[c] = w[c] - stp * data[ptr + 1]
        new = w[c]
        d1 += new * new - old * old
        ptr += 2
    if ptr < hi:
        c = indices[ptr]
        old = w[c]
        w[c] = w[c] - stp * data[ptr]
        new = w[c]
        d0 += new * new - old * old
    return d0 + d1


cdef inline bint _row_finite(const floating* w, const index_t* indices, Py_ssize_t lo,
                             Py_ssize_t hi) noexcept nogil:
    """Whether the row's weights are all finite (asked only when a row's change of the sum of
    squares is not: that alone may be an overflow of finite squares)."""
    cdef Py_ssize_t ptr
    for ptr in range(lo, hi):
        if not isfinite(w[indices[ptr]]):
            return False
    return True


cdef int _epoch_csr_scaled_sgd(const floating* data, const index_t* indices, const ptr_t* indptr,
                               const floating[:, :] y, const floating[:] sw, const int64_t* order,
                               Py_ssize_t n_steps, floating* w, Py_ssize_t p, int64_t[:] t,
                               const Params* P, floating* z, floating* dz, int64_t* counters,
                               double* loss_sum, double* running) noexcept nogil:
    """Per-sample plain SGD with L2 and no L1, one output, on CSR rows: the untouched
    coordinates' shrinking is a running product, kept as one scalar ``S``. The weights are
    ``S * w`` during the epoch (the intercept unscaled); a step multiplies ``S`` by
    ``a = 1 - lr * l2`` and moves only the row's coordinates by ``lr * s * dloss * x_c / S``.
    ``S`` is folded into ``w`` below 1e-9, at a non-positive ``a`` and at the end of the epoch
    (Numba's ``_epoch_csr_scaled_sgd``, the same arithmetic).

    With ``running`` (not NULL: ``(S, sum of squares of the stored w)``) the epoch starts
    from that ``S`` and leaves its own there instead of the end-of-epoch fold, and keeps the
    sum of squares up to date from the coordinates it steps (the penalty's value at O(nnz));
    the weights' finiteness is then followed through the stepped values, not checked by a
    pass over all of them.

    The CSR parts and the order are raw pointers to contiguous arrays: indexing through
    strided memoryviews in these two loops cost a third of the epoch (measured 72 ms against
    55 ms for the same loop on pointers, 200,000 x 20,000 CSR)."""
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t j, i, q, lo, hi, ptr, c
    cdef int64_t step = t[0]
    cdef double S = 1.0 if running == NULL else running[0]
    cdef double sq = 0.0 if running == NULL else running[1]
    cdef double lr, a, cg, loss, d_sq
    cdef double probe = 0.0  # set to NaN by the first row that leaves a non-finite weight
    cdef bint prefetch_w = p * <Py_ssize_t>sizeof(floating) >= WEIGHT_PREFETCH_MIN_BYTES
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
        if prefetch_w and j + PREFETCH_AHEAD // 2 < n_steps:
            # the weights of the row half as far ahead (its column indices were asked for
            # PREFETCH_AHEAD // 2 samples ago): on wide hashed features each is a cache miss
            q = order[j + PREFETCH_AHEAD // 2]
            for ptr in range(indptr[q], indptr[q + 1]):
                FASTGD_PREFETCH(&w[indices[ptr]])
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
        loss = sw[i] * _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, 1, P.hp)
        loss_sum[0] += loss
        if not isfinite(loss):
            t[0] = step
            if running != NULL:
                running[0] = S
                running[1] = sq
            return STATUS_NONFINITE
        lr = _learning_rate(P, step)
        cg = lr * dz[0] * sw[i]
        a = 1.0 - lr * P.l2
        if a <= 0.0:  # lr * l2 >= 1 flips signs: apply the shrink to every weight now
            f = <floating>(S * a)
            sq = _scale_all(w, p, f)
            counters[COUNT_CATCHUPS] += p
            S = 1.0
        else:
            S = S * a
        stp = <floating>(cg / S)
        d_sq = _scaled_step_row(w, data, indices, lo, hi, stp, running != NULL)
        if not isfinite(d_sq) and not _row_finite(w, indices, lo, hi):
            probe = NAN
        sq += d_sq
        w[p] = w[p] - <floating>cg
        counters[COUNT_UPDATES] += hi - lo + 1
        if S < SCALE_BELOW:
            sq = _scale_all(w, p, <floating>S)
            counters[COUNT_CATCHUPS] += p
            S = 1.0
        step += 1
    t[0] = step
    if running != NULL:
        running[0] = S
        running[1] = sq
        return STATUS_OK if probe == 0.0 and isfinite(w[p]) else STATUS_NONFINITE
    if not _all_finite(w, p + 1):  # before the fold: a diverged epoch leaves untouched weights as they were
        return STATUS_NONFINITE
    if S != 1.0:
        _scale_all(w, p, <floating>S)
        counters[COUNT_CATCHUPS] += p
    return STATUS_OK


cdef double _scale_all(floating* w, Py_ssize_t p, floating f) noexcept nogil:
    """Multiply ``w[:p]`` by ``f`` (folding a running scale); returns their new sum of squares."""
    cdef Py_ssize_t c
    cdef double sq = 0.0
    for c in range(p):
        w[c] = w[c] * f
        sq += <double>w[c] * w[c]
    return sq


cdef int _epoch_csr_adagrad(const floating* data, const index_t* indices, const ptr_t* indptr,
                            const floating[:, :] y, const floating[:] sw, const int64_t* order,
                            Py_ssize_t n_steps, floating* w, floating* acc_sq, Py_ssize_t p, int64_t[:] t,
                            const Params* P, floating* z, floating* dz, int64_t* counters,
                            double* loss_sum) noexcept nogil:
    """Per-sample AdaGrad with one output and no penalty or clipping, on CSR rows: a
    coordinate the row does not touch has a zero gradient, so neither it nor its accumulator
    moves, and a step reads and writes only the row's weights and accumulators (``acc_sq``,
    the state's sum slot), with the rule of the shared ``_adagrad_span``. No buffer, no
    per-epoch pass over the coordinates: the weights' finiteness is followed through the
    stepped values."""
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t j, i, q, lo, hi, ptr, c
    cdef int64_t step = t[0]
    cdef double lr, loss, gq, sq, new
    cdef double eps = P.hp[H_EPS]
    cdef double probe = 0.0  # stays 0 while every stepped value is finite (inf - inf is NaN)
    cdef floating acc, acc1, d
    cdef bint prefetch_w = p * <Py_ssize_t>sizeof(floating) >= WEIGHT_PREFETCH_MIN_BYTES
    for j in range(n_steps):
        if j + 2 * PREFETCH_AHEAD < n_steps:
            FASTGD_PREFETCH(&indptr[order[j + 2 * PREFETCH_AHEAD]])
        if j + PREFETCH_AHEAD < n_steps:
            q = order[j + PREFETCH_AHEAD]
            lo = indptr[q]
            hi = indptr[q + 1]
            _prefetch(<const char*>&data[lo], (hi - lo) * <Py_ssize_t>sizeof(floating))
            _prefetch(<const char*>&indices[lo], (hi - lo) * <Py_ssize_t>sizeof(index_t))
        if prefetch_w and j + PREFETCH_AHEAD // 2 < n_steps:
            q = order[j + PREFETCH_AHEAD // 2]
            for ptr in range(indptr[q], indptr[q + 1]):
                FASTGD_PREFETCH(&w[indices[ptr]])
                FASTGD_PREFETCH(&acc_sq[indices[ptr]])
        i = order[j]
        lo = indptr[i]
        hi = indptr[i + 1]
        acc = 0
        acc1 = 0
        ptr = lo
        while ptr + 1 < hi:
            acc = acc + data[ptr] * w[indices[ptr]]
            acc1 = acc1 + data[ptr + 1] * w[indices[ptr + 1]]
            ptr += 2
        if ptr < hi:
            acc = acc + data[ptr] * w[indices[ptr]]
        z[0] = <floating>((acc + acc1) + w[p])
        loss = _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, 1, P.hp)
        loss_sum[0] += sw[i] * loss
        if not isfinite(sw[i] * loss):
            t[0] = step
            return STATUS_NONFINITE
        lr = _learning_rate(P, step)
        d = dz[0] * sw[i]  # (rounded as the general kernel's gradient buffer holds it)
        for ptr in range(lo, hi):
            c = indices[ptr]
            gq = <floating>(data[ptr] * d)
            sq = acc_sq[c] + gq * gq
            acc_sq[c] = <floating>sq
            new = w[c] - lr * gq / (sqrt(sq) + eps)
            w[c] = <floating>new
            probe += new - new
        gq = d
        sq = acc_sq[p] + gq * gq
        acc_sq[p] = <floating>sq
        w[p] = <floating>(w[p] - lr * gq / (sqrt(sq) + eps))
        counters[COUNT_UPDATES] += hi - lo + 1
        step += 1
    t[0] = step
    return STATUS_OK if probe == 0.0 and isfinite(w[p]) and isfinite(acc_sq[p]) else STATUS_NONFINITE


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
    cdef double T, ratio, lr, a, b, loss
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
                ratio = A / L.a[LAZY_FIELDS * c]
                v = <floating>lazy_shrink(v, ratio, B - ratio * L.b[LAZY_FIELDS * c])
                w[c] = v
            acc = acc + data[ptr] * v
        L.counters[COUNT_CATCHUPS] += hi - lo
        z[0] = acc
        loss = sw[i] * _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, 1, P.hp)
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
                v = <floating>soft_threshold(v, bd)
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
    _catch_up_all(w, <floating*>NULL, p, 1, A, B, <double>step, L)
    return STATUS_OK


def epoch_csr(const floating[:] data, const index_t[:] indices, const ptr_t[:] indptr,
              Py_ssize_t n_features, const floating[:, :] y, const floating[:] sw,
              const int64_t[:] order, floating[:, ::1] coef, floating[:, :, ::1] state,
              int64_t[:] t, const int64_t[:] codes, const double[:] hp, Py_ssize_t batch_size,
              floating[:, ::1] grad, floating[:, ::1] work, double[:, ::1] lazy_work,
              int64_t[:, ::1] index_work, int64_t[::1] counters, double[::1] running=None):
    """One epoch on CSR parts (the contract of :mod:`fastgd._contract`): the mathematics of
    the dense epoch at O(nnz) per step where :func:`sparse_mode` allows it. ``indices`` and
    ``indptr`` may each be int32 or int64. Rows must be canonical (no duplicate column in a
    row; the estimators ensure it). ``running``, for the running-scale kernel
    (``CSR_RUNNING_SCALE``): two float64, ``(S, sum of squares of coef[:-1])``; the weights are
    ``S * coef[:-1]`` on entry and on return, both values kept up to date at O(nnz). For the
    general loop (``CSR_DEFERRED_CATCH_UP``): the deferred catch-up's state
    (fastgd._contract), with which per-sample plain SGD with L1 takes the general loop too.
    Returns ``(status, loss_sum)``."""
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
    cdef int64_t step, stamp = 0
    cdef int mode
    cdef int status = STATUS_OK
    cdef double loss_sum = 0.0
    cdef double batch_loss, loss, inv_b, lr, a, T
    cdef double A = 1.0
    cdef double B = 0.0
    cdef floating x, s
    cdef floating* cf = &coef[0, 0]
    cdef floating* g = &grad[0, 0]
    cdef floating* z
    cdef floating* dz
    cdef floating* st = NULL
    cdef int64_t* rows
    cdef int64_t* mark
    cdef double* running_ptr = NULL
    cdef bint scaled, adagrad, plain, deferred, track_sq, restart
    cdef double sq = 0.0
    cdef double mu_prod
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    if n_rows < 0:
        raise ValueError("indptr must have at least one element")
    _check_layout(n_rows, n_features, y.shape[0], y.shape[1], sw.shape[0], p1, K,
                  grad.shape[0], grad.shape[1], work.shape[0], work.shape[1], P.loss)
    z = &work[0, 0]  # after the layout check: work has its two rows
    dz = &work[1, 0]
    if indices.shape[0] != data.shape[0] or indptr[n_rows] > data.shape[0]:
        raise ValueError(f"inconsistent CSR parts: {data.shape[0]} values, {indices.shape[0]} "
                         f"indices, indptr ends at {indptr[n_rows]}")
    # the contract's decisions, taken once per call: per-sample plain SGD with L2 only takes the
    # running-scale kernel, which needs no lazy buffers; other per-sample plain SGD the fused
    # lazy kernel, unless it carries a deferred state; everything else the general loop in the
    # contract's sparse mode
    scaled = _contract.csr_running_scale(codes, hp, batch_size, K)
    adagrad = _contract.csr_adagrad_per_sample(codes, hp, batch_size, K)
    plain = _contract.csr_fused_plain_sgd(codes, hp, batch_size, K, running is not None)
    mode = _contract.sparse_mode(codes, hp)
    if not (scaled or adagrad) and (lazy_work.shape[0] < p or lazy_work.shape[1] != LAZY_FIELDS):
        raise ValueError(f"lazy_work has shape ({lazy_work.shape[0]}, {lazy_work.shape[1]}); "
                         f"need ({p}, {LAZY_FIELDS})")
    if not (scaled or adagrad) and (index_work.shape[0] < 2 or index_work.shape[1] < p + 1):
        raise ValueError(f"index_work has shape ({index_work.shape[0]}, {index_work.shape[1]}); "
                         f"need (2, {p + 1})")
    if counters.shape[0] < N_COUNTERS:
        raise ValueError(f"counters has {counters.shape[0]} entries; need {N_COUNTERS}")
    if running is not None:
        _contract.check_running_state(np.asarray(running), codes, hp, batch_size, K)
    deferred = running is not None and not scaled  # (checked: only where the codes allow it)
    status = _check_codes(&P)
    if status != STATUS_OK:
        return status, 0.0
    _check_step_args(state.shape[0], state.shape[1], state.shape[2], codes, hp, p1, K, batch_size, t.shape[0])
    if state.shape[0] > 0:
        st = &state[0, 0, 0]
    L.counters = &counters[0]
    if scaled or adagrad:
        if running is not None:
            running_ptr = &running[0]
        # raw pointers need contiguous parts: views of the user's arrays as they come (scipy's
        # are contiguous), a contiguous copy only for the rare strided one
        data = np.ascontiguousarray(data)
        indices = np.ascontiguousarray(indices)
        indptr = np.ascontiguousarray(indptr)
        order = np.ascontiguousarray(order)
        with nogil:
            if scaled:
                status = _epoch_csr_scaled_sgd(&data[0] if data.shape[0] > 0 else NULL,
                                               &indices[0] if indices.shape[0] > 0 else NULL, &indptr[0],
                                               y, sw, &order[0], n_steps, cf, p, t, &P, z, dz,
                                               L.counters, &loss_sum, running_ptr)
            else:
                status = _epoch_csr_adagrad(&data[0] if data.shape[0] > 0 else NULL,
                                            &indices[0] if indices.shape[0] > 0 else NULL, &indptr[0],
                                            y, sw, &order[0], n_steps, cf, &st[S_SUM * n], p, t, &P, z, dz,
                                            L.counters, &loss_sum)
        return status, loss_sum
    L.last = &lazy_work[0, 0]
    L.a = &lazy_work[0, 1]
    L.b = &lazy_work[0, 2]
    L.mark = &index_work[0, 0]
    mark = L.mark
    L.rmsprop = P.opt == OPT_RMSPROP
    L.rho = P.rho
    rows = &index_work[1, 0]
    track_sq = deferred and _contract.deferred_keeps_sum_of_squares(codes, hp)
    if deferred:
        running_ptr = &running[0]
    with nogil:
        step = t[0]
        if deferred:  # (fastgd._contract: the deferred catch-up) grad is all zeros on entry
            A = running_ptr[D_A]
            B = running_ptr[D_B]
            stamp = <int64_t>running_ptr[D_STAMP]
            sq = running_ptr[D_SQ]
        else:
            for q in range(n):
                g[q] = 0
            for c in range(p):
                L.last[LAZY_FIELDS * c] = <double>step
                L.a[LAZY_FIELDS * c] = 1.0
                L.b[LAZY_FIELDS * c] = 0.0
                L.mark[c] = -1
        if plain:
            status = _epoch_csr_plain_sgd(data, indices, indptr, y, sw, order, cf, p, t, &P, z, dz, &L,
                                          &loss_sum)
        else:
            mu_prod = nadam_mu_product(P.opt, <double>step, P.hp)
            start = 0
            while start < n_steps:
                end = start + batch_size
                if end > n_steps:
                    end = n_steps
                if deferred:
                    stamp = stamp - 1
                else:
                    stamp = step + 1
                T = <double>step
                # the batch's touched coordinates (each once), brought up to date
                # (mark: L.mark in a local. L's address escapes to the catch-up call, which GCC no
                # longer inlines here (epoch_csr is too large), so each L.mark[c] reloaded L.mark.
                # The catch-up's own first test, "already at T", is made here: nearly every touched
                # coordinate of a mini-batch is up to date, and the call is the rare case.)
                nt = 0
                for j in range(start, end):
                    i = order[j]
                    for ptr in range(indptr[i], indptr[i + 1]):
                        c = indices[ptr]
                        if mark[c] != stamp:
                            mark[c] = stamp
                            rows[nt] = c
                            nt += 1
                            if mode == SPARSE_LAZY_EXACT and L.last[LAZY_FIELDS * c] != T:
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
                    loss = _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, K, P.hp)
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
                rows[nt] = p
                if not isfinite(batch_loss):
                    status = STATUS_NONFINITE
                    for q in range(nt + 1):  # (a deferred state keeps grad all zeros)
                        r = rows[q]
                        for k in range(r * K, r * K + K):
                            g[k] = 0
                    break
                if track_sq:  # the touched rows' terms leave the sum: they are up to date, at A
                    sq -= _sum_sq_rows(cf, rows, nt, K, 1.0 / A)
                inv_b = 1.0 / <double>(end - start)
                if mode == SPARSE_DENSE:
                    _apply_step(cf, g, st, n, K, NULL, -1, &P, step, inv_b, &mu_prod)
                    L.counters[COUNT_UPDATES] += p1
                else:
                    lr = _apply_step(cf, g, st, n, K, rows, nt + 1, &P, step, inv_b, &mu_prod)
                    L.counters[COUNT_UPDATES] += nt + 1
                    if mode == SPARSE_LAZY_EXACT:
                        a = 1.0 - lr * P.l2 if P.opt == OPT_SGD else 1.0
                        restart = a <= 0.0 or A * a < RESCALE_BELOW  # (what _advance_map tests)
                        _advance_map(cf, st, p, K, &A, &B, T, a, lr * P.l1, stamp, &L)
                        if track_sq:
                            if restart:  # every coordinate is up to date, the map starts again at A = 1
                                sq = 0.0
                                for q in range(p * K):
                                    sq += <double>cf[q] * <double>cf[q]
                            else:
                                sq += _sum_sq_rows(cf, rows, nt, K, 1.0 / A)
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
                if deferred and not _rows_finite(cf, rows, nt + 1, K):
                    status = STATUS_NONFINITE
                    break
            if deferred:
                running_ptr[D_A] = A
                running_ptr[D_B] = B
                running_ptr[D_STAMP] = <double>stamp
                running_ptr[D_SQ] = sq
            elif status == STATUS_OK:
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


# --- SAGA epochs (fastgd._contract: SAGA epochs) --------------------------------------------
cdef int _check_saga(const int64_t[:] codes, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t s2, Py_ssize_t p1,
                     Py_ssize_t K, Py_ssize_t m0, Py_ssize_t m1, Py_ssize_t n_rows, Py_ssize_t n_mean,
                     Py_ssize_t t_len) except -1:
    if codes[C_OPTIMIZER] != OPT_SAGA:
        raise ValueError(f"the SAGA kernels run optimizer code {OPT_SAGA}; got {codes[C_OPTIMIZER]}")
    if m0 != n_rows or m1 != K:
        raise ValueError(f"memory has shape ({m0}, {m1}); need ({n_rows}, {K})")
    if s0 < 1 or s1 != p1 or s2 != K:
        raise ValueError(f"state has shape ({s0}, {s1}, {s2}); SAGA needs (1, {p1}, {K})")
    if n_mean < 1:
        raise ValueError(f"n_mean must be >= 1; got {n_mean}")
    if t_len < 1:
        raise ValueError("t must have one element")
    return 0


def epoch_saga_dense(const floating[:, ::1] X, const floating[:, :] y, const floating[:] sw,
                     const int64_t[:] order, floating[:, ::1] coef, floating[:, :, ::1] state,
                     int64_t[:] t, const int64_t[:] codes, const double[:] hp, floating[:, ::1] work,
                     floating[:, ::1] memory, Py_ssize_t n_mean):
    """One epoch of SAGA steps on dense ``X`` (see :mod:`fastgd._contract`, SAGA epochs).
    Returns ``(status, loss_sum)``."""
    cdef Params P
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t p1 = coef.shape[0]
    cdef Py_ssize_t K = coef.shape[1]
    cdef Py_ssize_t p = p1 - 1
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t j, i, f, k
    cdef int64_t step
    cdef int status = STATUS_OK
    cdef double loss_sum = 0.0
    cdef double loss, lr, inv_n
    cdef floating* cf = &coef[0, 0]
    cdef floating* z
    cdef floating* dz
    cdef floating* mean
    cdef floating* mem = NULL
    cdef const floating* X0
    cdef const floating* xi
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    _check_layout(X.shape[0], X.shape[1], y.shape[0], y.shape[1], sw.shape[0], p1, K, p1, K,
                  work.shape[0], work.shape[1], P.loss)
    _check_saga(codes, state.shape[0], state.shape[1], state.shape[2], p1, K, memory.shape[0],
                memory.shape[1], X.shape[0], n_mean, t.shape[0])
    status = check_codes(P.loss, OPT_SGD, P.sched, P.unit)
    if status != STATUS_OK:
        return status, 0.0
    z = &work[0, 0]
    dz = &work[1, 0]
    mean = &state[0, 0, 0]
    if memory.shape[0] > 0:
        mem = &memory[0, 0]
    X0 = &X[0, 0] if p > 0 and X.shape[0] > 0 else NULL
    inv_n = 1.0 / <double>n_mean
    with nogil:
        step = t[0]
        for j in range(n_steps):
            if j + PREFETCH_AHEAD < n_steps:
                i = order[j + PREFETCH_AHEAD]
                _prefetch(<const char*>(X0 + i * p), p * <Py_ssize_t>sizeof(floating))
                FASTGD_PREFETCH(&y[i, 0])
                FASTGD_PREFETCH(&memory[i, 0])
            i = order[j]
            xi = X0 + i * p
            if K == 1:
                z[0] = cf[p] + _dot(xi, cf, p)
            else:
                for k in range(K):
                    z[k] = cf[p * K + k]
                for f in range(p):
                    for k in range(K):
                        z[k] = z[k] + xi[f] * cf[f * K + k]
            loss = sw[i] * _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, K, P.hp)
            loss_sum += loss
            if not isfinite(loss):
                status = STATUS_NONFINITE
                break
            lr = _learning_rate(&P, step)
            saga_remember(dz, mem, i * K, K, sw[i])
            for f in range(p):
                saga_row(cf, mean, f * K, K, xi[f], dz, inv_n, lr, P.l2, P.l1)
            saga_row(cf, mean, p * K, K, 1.0, dz, inv_n, lr, 0.0, 0.0)
            step += 1
        t[0] = step
        if status == STATUS_OK and not _all_finite(cf, p1 * K):
            status = STATUS_NONFINITE
    return status, loss_sum


def epoch_saga_csr(const floating[:] data, const index_t[:] indices, const ptr_t[:] indptr,
                   Py_ssize_t n_features, const floating[:, :] y, const floating[:] sw,
                   const int64_t[:] order, floating[:, ::1] coef, floating[:, :, ::1] state,
                   int64_t[:] t, const int64_t[:] codes, const double[:] hp, floating[:, ::1] work,
                   floating[:, ::1] memory, Py_ssize_t n_mean):
    """One epoch of SAGA steps on CSR parts (canonical rows: sorted, no duplicates). Every
    parameter steps every step (the mean of the stored gradients is dense): O(p K) a step.
    Returns ``(status, loss_sum)``."""
    cdef Params P
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t p1 = coef.shape[0]
    cdef Py_ssize_t K = coef.shape[1]
    cdef Py_ssize_t p = p1 - 1
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t ystride = y.strides[1]
    cdef Py_ssize_t j, i, f, k, e, lo, hi, c
    cdef int64_t step
    cdef int status = STATUS_OK
    cdef double loss_sum = 0.0
    cdef double loss, lr, inv_n, x
    cdef floating* cf = &coef[0, 0]
    cdef floating* z
    cdef floating* dz
    cdef floating* mean
    cdef floating* mem = NULL
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    if n_rows < 0:
        raise ValueError("indptr must have at least one element")
    _check_layout(n_rows, n_features, y.shape[0], y.shape[1], sw.shape[0], p1, K, p1, K,
                  work.shape[0], work.shape[1], P.loss)
    if indices.shape[0] != data.shape[0] or indptr[n_rows] > data.shape[0]:
        raise ValueError(f"inconsistent CSR parts: {data.shape[0]} values, {indices.shape[0]} "
                         f"indices, indptr ends at {indptr[n_rows]}")
    _check_saga(codes, state.shape[0], state.shape[1], state.shape[2], p1, K, memory.shape[0],
                memory.shape[1], n_rows, n_mean, t.shape[0])
    status = check_codes(P.loss, OPT_SGD, P.sched, P.unit)
    if status != STATUS_OK:
        return status, 0.0
    z = &work[0, 0]
    dz = &work[1, 0]
    mean = &state[0, 0, 0]
    if memory.shape[0] > 0:
        mem = &memory[0, 0]
    inv_n = 1.0 / <double>n_mean
    with nogil:
        step = t[0]
        for j in range(n_steps):
            _prefetch_csr_sample(data, indices, indptr, y, sw, order, j)
            i = order[j]
            lo = indptr[i]
            hi = indptr[i + 1]
            for k in range(K):
                z[k] = cf[p * K + k]
            for e in range(lo, hi):
                c = indices[e]
                for k in range(K):
                    z[k] = z[k] + data[e] * cf[c * K + k]
            loss = sw[i] * _sample_loss(P.loss, z, <const char*>&y[i, 0], ystride, dz, K, P.hp)
            loss_sum += loss
            if not isfinite(loss):
                status = STATUS_NONFINITE
                break
            lr = _learning_rate(&P, step)
            saga_remember(dz, mem, i * K, K, sw[i])
            # the mean is dense: every row steps, the row's stored columns (sorted) with their value
            e = lo
            for f in range(p):
                x = 0.0
                if e < hi and indices[e] == f:
                    x = data[e]
                    e += 1
                saga_row(cf, mean, f * K, K, x, dz, inv_n, lr, P.l2, P.l1)
            saga_row(cf, mean, p * K, K, 1.0, dz, inv_n, lr, 0.0, 0.0)
            step += 1
        t[0] = step
        if status == STATUS_OK and not _all_finite(cf, p1 * K):
            status = STATUS_NONFINITE
    return status, loss_sum


# --- Hogwild! epochs (fastgd._contract: Hogwild! epochs) ------------------------------------
cdef double _hogwild_share(const floating[:] data, const index_t[:] indices, const ptr_t[:] indptr,
                           const floating[:, :] y, const floating[:] sw, const int64_t[:] order,
                           Py_ssize_t lo_j, Py_ssize_t hi_j, int64_t clock, Py_ssize_t stride, floating* w,
                           Py_ssize_t p, const Params* P, const double* col_scale, bint* stopped) noexcept nogil:
    """Steps of the samples ``order[lo_j:hi_j]``, the s-th at step clock ``clock + s * stride``;
    returns the share's loss sum (``stopped`` set on a non-finite loss)."""
    cdef Py_ssize_t j, i, ptr, lo, hi, c
    cdef double loss, d, lr, cg, scale
    cdef double loss_sum = 0.0
    cdef floating m
    for j in range(lo_j, hi_j):
        if j + PREFETCH_AHEAD < hi_j:
            _prefetch_csr_sample(data, indices, indptr, y, sw, order, j)
        i = order[j]
        lo = indptr[i]
        hi = indptr[i + 1]
        m = 0
        for ptr in range(lo, hi):
            m = m + data[ptr] * w[indices[ptr]]
        loss, d = loss_1(P.loss, m + w[p], y[i, 0], P.hp)
        loss = loss * sw[i]
        loss_sum += loss
        if not isfinite(loss):
            stopped[0] = True
            return loss_sum
        lr = _learning_rate(P, clock + (j - lo_j) * stride)
        cg = lr * d * sw[i]
        for ptr in range(lo, hi):
            c = indices[ptr]
            scale = col_scale[c]
            w[c] = <floating>hogwild_coordinate(w[c], data[ptr], cg, lr * P.l2 * scale, lr * P.l1 * scale)
        w[p] = <floating>(w[p] - cg)
    return loss_sum


def epoch_csr_hogwild(const floating[:] data, const index_t[:] indices, const ptr_t[:] indptr,
                      Py_ssize_t n_features, const floating[:, :] y, const floating[:] sw,
                      const int64_t[:] order, floating[:, ::1] coef, int64_t[:] t, const int64_t[:] codes,
                      const double[:] hp, const double[::1] col_scale, Py_ssize_t n_shares, double[::1] losses):
    """One Hogwild! epoch on CSR parts (see :mod:`fastgd._contract`): ``n_shares`` OpenMP
    threads update ``coef`` without locks. Non-deterministic when ``n_shares > 1``."""
    from fastgd._backends import _fork_safety

    cdef Params P
    cdef Py_ssize_t n_steps = order.shape[0]
    cdef Py_ssize_t p = coef.shape[0] - 1
    cdef Py_ssize_t n_rows = indptr.shape[0] - 1
    cdef Py_ssize_t c
    cdef int64_t t0
    cdef int status
    cdef floating* w = &coef[0, 0]
    cdef bint stopped[64]
    cdef bint threads
    _check_params(codes.shape[0], hp.shape[0])
    _read_params(&P, codes, hp)
    if n_rows < 0:
        raise ValueError("indptr must have at least one element")
    _check_layout(n_rows, n_features, y.shape[0], y.shape[1], sw.shape[0], p + 1, coef.shape[1], p + 1,
                  coef.shape[1], WORK_ROWS, coef.shape[1], P.loss)
    if indices.shape[0] != data.shape[0] or indptr[n_rows] > data.shape[0]:
        raise ValueError(f"inconsistent CSR parts: {data.shape[0]} values, {indices.shape[0]} "
                         f"indices, indptr ends at {indptr[n_rows]}")
    if not _contract.plain_sgd_per_sample(codes, hp, 1, coef.shape[1]):
        raise ValueError("Hogwild! epochs run per-sample plain SGD with one output and no clipping")
    if col_scale.shape[0] != n_features or not 1 <= n_shares <= 64 or losses.shape[0] < n_shares:
        raise ValueError(f"col_scale has {col_scale.shape[0]} entries (need {n_features}); n_shares {n_shares} "
                         f"(need 1 to 64, losses has {losses.shape[0]})")
    if t.shape[0] < 1:
        raise ValueError("t must have one element")
    status = _check_codes(&P)
    if status != STATUS_OK:
        return status, 0.0
    threads = n_shares > 1 and _fork_safety.multicore_allowed("cython")
    if threads:
        _fork_safety.note_multicore_run()
    t0 = t[0]
    for c in range(n_shares):
        stopped[c] = False
        losses[c] = 0.0
    if threads:
        for c in prange(n_shares, schedule="static", chunksize=1, num_threads=n_shares, nogil=True):
            losses[c] = _hogwild_share(data, indices, indptr, y, sw, order, c * n_steps // n_shares,
                                       (c + 1) * n_steps // n_shares, t0 + c, n_shares, w, p, &P,
                                       &col_scale[0] if n_features > 0 else NULL, &stopped[c])
    else:
        with nogil:
            for c in range(n_shares):
                losses[c] = _hogwild_share(data, indices, indptr, y, sw, order, c * n_steps // n_shares,
                                           (c + 1) * n_steps // n_shares, t0 + c, n_shares, w, p, &P,
                                           &col_scale[0] if n_features > 0 else NULL, &stopped[c])
                if stopped[c]:
                    break
    loss_sum = 0.0
    for c in range(n_shares):
        loss_sum += losses[c]
        if stopped[c]:
            status = STATUS_NONFINITE
    if status == STATUS_OK and not _all_finite(w, p + 1):
        status = STATUS_NONFINITE
    if status == STATUS_OK:
        t[0] = t0 + n_steps
    return status, loss_sum
# epoch_csr takes ``running``: the running-scale kernel's scale (and the stored weights' sum of
# squares) kept between calls (fastgd._solver.settle_scale). A build without this constant
# folds the scale every epoch.
CSR_RUNNING_SCALE = True
# ... and the general loop's deferred catch-up state (fastgd._contract: csr_deferred_catch_up).
CSR_DEFERRED_CATCH_UP = True
