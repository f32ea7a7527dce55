# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Cython engine of the scikit-learn-semantics SGD epoch (``SGDClassifier`` / ``SGDRegressor``).

The scalar rules are not written here: ``_sgd_rules.py`` (Cython pure-Python mode) is
included below and compiles to inline ``nogil`` C functions, the same source the Numba engine
wraps with ``njit(inline="always")``. This file holds the loops, which mirror
``_numba_sgd.py`` step for step (the lazy ``w = wscale * v`` form inside a call, plain vectors
between calls, rows prefetched a few samples ahead). float32 and float64 through a fused
type; one call is one epoch, run with the GIL released.
"""

from libc.math cimport exp, fabs, isfinite, log, log1p, pow
from libc.stdint cimport int32_t, int64_t

cimport cython

import numpy as np

include "../_sgd_rules.py"

name = "cython"

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTGD_SGD_PREFETCH(addr) __builtin_prefetch((const void *)(addr), 0, 3)
    #else
    #define FASTGD_SGD_PREFETCH(addr) ((void)0)
    #endif
    """
    void FASTGD_SGD_PREFETCH(const void* addr) noexcept nogil

# a shuffled epoch waits on a cache miss per row: ask for the row this many samples ahead
DEF PREFETCH_AHEAD = 4

ctypedef fused floating:
    float
    double


cdef inline bint _all_finite(floating[::1] w, double b) noexcept nogil:
    cdef Py_ssize_t j
    if not isfinite(b):
        return False
    for j in range(w.shape[0]):
        if not isfinite(w[j]):
            return False
    return True


cdef void _to_lazy_form(floating[::1] w, floating[::1] aw, double ws, double a, double bb,
                        int64_t average) noexcept nogil:
    """From plain vectors to v = w / wscale and aw = average_b * average - average_a * v."""
    cdef Py_ssize_t j
    for j in range(w.shape[0]):
        w[j] = w[j] / ws
        if average > 0:
            aw[j] = aw[j] * bb - a * w[j]


cdef void _fold_scale(floating[::1] v, floating[::1] aw, double ws, double a, double bb,
                      int64_t average) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(v.shape[0]):
        if average > 0:
            aw[j] = (aw[j] + a * v[j]) / bb
        v[j] = v[j] * ws


def _check(n_rows, n_features, y, sw, w, aw, q, scalars, codes, hp, order):
    # bounds checking is compiled out: refuse mismatched buffers here, once per call
    if y.shape[0] != n_rows or sw.shape[0] != n_rows or w.shape[0] != n_features or q.shape[0] != n_features:
        raise ValueError("sgd kernel: y, sample_weight, w and q must match X")
    if codes[C_AVERAGE] > 0 and aw.shape[0] != n_features:
        raise ValueError("sgd kernel: the average buffer must match w when averaging")
    if scalars.shape[0] < N_SCALARS or codes.shape[0] < N_CODES or hp.shape[0] < N_HP:
        raise ValueError("sgd kernel: scalars, codes or hp too short")
    order = np.asarray(order)
    if order.shape[0] and (order.min() < 0 or order.max() >= n_rows):
        raise ValueError("sgd kernel: order holds a row index out of range")


def sgd_epoch_dense(const floating[:, ::1] X, const floating[::1] y, const floating[::1] sw,
                    const int64_t[::1] order, floating[::1] w, floating[::1] aw, floating[::1] q,
                    double[::1] s, const int64_t[::1] codes, const double[::1] hp):
    """One epoch over the rows ``order`` of dense ``X``; ``w``, ``aw``, ``q`` and the
    ``scalars`` ``s`` are updated in place. Returns ``(status, loss_sum, objective_sum)``."""
    _check(X.shape[0], X.shape[1], y, sw, w, aw, q, s, codes, hp, order)
    cdef int loss = <int>codes[C_LOSS]
    cdef int penalty = <int>codes[C_PENALTY]
    cdef int lr = <int>codes[C_LEARNING_RATE]
    cdef bint fit_intercept = codes[C_FIT_INTERCEPT] != 0
    cdef int64_t average = codes[C_AVERAGE]
    cdef bint sum_loss = codes[C_SUM_LOSS] != 0
    cdef double alpha = hp[H_ALPHA], l1_ratio = hp[H_L1_RATIO], eta0 = hp[H_ETA0], power_t = hp[H_POWER_T]
    cdef double par = hp[H_LOSS_PARAM], decay = hp[H_INTERCEPT_DECAY], optimal_init = hp[H_OPTIMAL_INIT]
    cdef double rescale_below = hp[H_RESCALE_BELOW], weight_pos = hp[H_WEIGHT_POS], weight_neg = hp[H_WEIGHT_NEG]
    cdef bint decays = penalty == PENALTY_L2 or penalty == PENALTY_ELASTICNET
    cdef bint truncates = penalty == PENALTY_L1 or penalty == PENALTY_ELASTICNET
    cdef double b = s[S_INTERCEPT], ab = s[S_AVERAGE_INTERCEPT], t = s[S_T], u = s[S_U], eta = s[S_ETA]
    cdef double ws = s[S_WSCALE], a = s[S_AVERAGE_A], bb = s[S_AVERAGE_B], sq = s[S_SQ_NORM], l1n = s[S_L1_NORM]
    cdef Py_ssize_t n_features = X.shape[1], n_steps = order.shape[0], ii, i, j
    cdef Py_ssize_t line = max(1, 64 // sizeof(floating))
    cdef double loss_sum = 0.0, objective_sum = 0.0, p, yi, value, class_weight, x_sq, update, c, k
    cdef double step, shift, acc_sq, acc_l1, wj, old, new
    cdef bint averaging
    cdef const floating* row
    cdef const floating* ahead
    with nogil:
        _to_lazy_form(w, aw, ws, a, bb, average)
        for ii in range(n_steps):
            i = order[ii]
            if ii + PREFETCH_AHEAD < n_steps:
                ahead = &X[order[ii + PREFETCH_AHEAD], 0]
                j = 0
                while j < n_features:  # every cache line of the row
                    FASTGD_SGD_PREFETCH(ahead + j)
                    j += line
            row = &X[i, 0]
            p = 0.0
            for j in range(n_features):
                p += <double>row[j] * w[j]
            p = p * ws + b
            eta = step_size(lr, eta, eta0, alpha, optimal_init, t, power_t)
            yi = y[i]
            if sum_loss:
                value = sample_loss(loss, yi, p, par)
                loss_sum += value
                objective_sum += value
                if lr < LR_PA1 and penalty != PENALTY_NONE:
                    objective_sum += penalty_value(alpha, l1_ratio, sq, l1n)
            class_weight = weight_pos if yi > 0.0 else weight_neg
            if lr >= LR_PA1:
                x_sq = 0.0
                for j in range(n_features):
                    x_sq += <double>row[j] * row[j]
                if lr == LR_PA1 and x_sq == 0.0:
                    continue
                update = passive_aggressive_step(lr, sample_loss(loss, yi, p, par), x_sq, eta0)
                update *= passive_aggressive_sign(loss == LOSS_HINGE, yi, p)
            else:
                update = -eta * sample_dloss(loss, yi, p, par)
            update *= class_weight * sw[i]
            if decays:
                c = l2_decay(eta, alpha, l1_ratio)
                ws *= c
                sq *= c * c
                l1n *= c
                if ws < rescale_below:
                    _fold_scale(w, aw, ws, a, bb, average)
                    ws = 1.0
                    if average > 0:
                        a = 0.0
                        bb = 1.0
            averaging = 0 < average and average <= t
            if update != 0.0:
                # the gradient step and the matching shift of the lazy average, in one pass
                step = update / ws
                shift = -a * step if averaging else 0.0
                acc_sq = 0.0
                acc_l1 = 0.0
                for j in range(n_features):
                    w[j] = w[j] + row[j] * step
                    acc_sq += <double>w[j] * w[j]
                    acc_l1 += fabs(w[j])
                    aw[j] += row[j] * shift
                sq = acc_sq * (ws * ws)
                l1n = acc_l1 * ws
                if fit_intercept:
                    b += update * decay
            if averaging:
                k = t - average + 1.0
                ab += (b - ab) / k
                bb = average_b_next(bb, k)
                a = average_a_next(a, bb, k, ws)
            if truncates:
                u += l1_ratio * eta * alpha
                for j in range(n_features):
                    old = ws * w[j]
                    new = l1_truncate(old, u, q[j])
                    w[j] = new / ws
                    q[j] += new - old
            t += 1.0
        _fold_scale(w, aw, ws, a, bb, average)
    s[S_INTERCEPT], s[S_AVERAGE_INTERCEPT], s[S_T], s[S_U], s[S_ETA] = b, ab, t, u, eta
    s[S_WSCALE], s[S_AVERAGE_A], s[S_AVERAGE_B], s[S_SQ_NORM], s[S_L1_NORM] = ws, a, bb, sq, l1n
    return (STATUS_OK if _all_finite(w, b) else STATUS_NONFINITE), loss_sum, objective_sum


def sgd_epoch_csr(const floating[::1] data, const int32_t[::1] indices, const int32_t[::1] indptr,
                  const floating[::1] y, const floating[::1] sw, const int64_t[::1] order, floating[::1] w,
                  floating[::1] aw, floating[::1] q, double[::1] s, const int64_t[::1] codes,
                  const double[::1] hp):
    """As :func:`sgd_epoch_dense` for CSR input (int32 ``indices`` / ``indptr``)."""
    _check(indptr.shape[0] - 1, w.shape[0], y, sw, w, aw, q, s, codes, hp, order)
    if indptr[indptr.shape[0] - 1] > data.shape[0] or data.shape[0] != indices.shape[0]:
        raise ValueError("sgd kernel: inconsistent CSR arrays")
    if indices.shape[0] and (np.asarray(indices).min() < 0 or np.asarray(indices).max() >= w.shape[0]):
        raise ValueError("sgd kernel: a column index is out of range")
    cdef int loss = <int>codes[C_LOSS]
    cdef int penalty = <int>codes[C_PENALTY]
    cdef int lr = <int>codes[C_LEARNING_RATE]
    cdef bint fit_intercept = codes[C_FIT_INTERCEPT] != 0
    cdef int64_t average = codes[C_AVERAGE]
    cdef bint sum_loss = codes[C_SUM_LOSS] != 0
    cdef double alpha = hp[H_ALPHA], l1_ratio = hp[H_L1_RATIO], eta0 = hp[H_ETA0], power_t = hp[H_POWER_T]
    cdef double par = hp[H_LOSS_PARAM], decay = hp[H_INTERCEPT_DECAY], optimal_init = hp[H_OPTIMAL_INIT]
    cdef double rescale_below = hp[H_RESCALE_BELOW], weight_pos = hp[H_WEIGHT_POS], weight_neg = hp[H_WEIGHT_NEG]
    cdef bint decays = penalty == PENALTY_L2 or penalty == PENALTY_ELASTICNET
    cdef bint truncates = penalty == PENALTY_L1 or penalty == PENALTY_ELASTICNET
    cdef double b = s[S_INTERCEPT], ab = s[S_AVERAGE_INTERCEPT], t = s[S_T], u = s[S_U], eta = s[S_ETA]
    cdef double ws = s[S_WSCALE], a = s[S_AVERAGE_A], bb = s[S_AVERAGE_B], sq = s[S_SQ_NORM], l1n = s[S_L1_NORM]
    cdef Py_ssize_t ii, i, j, jj, lo, hi
    cdef double loss_sum = 0.0, objective_sum = 0.0, p, yi, value, class_weight, x_sq, update, c, k
    cdef double step, acc_sq, acc_l1, shift, old, new
    cdef Py_ssize_t n_steps = order.shape[0], line = max(1, 64 // sizeof(floating)), ahead
    cdef bint averaging
    with nogil:
        _to_lazy_form(w, aw, ws, a, bb, average)
        for ii in range(n_steps):
            i = order[ii]
            if ii + PREFETCH_AHEAD < n_steps:
                ahead = order[ii + PREFETCH_AHEAD]
                jj = indptr[ahead]
                while jj < indptr[ahead + 1]:  # every cache line of the row's values and indices
                    FASTGD_SGD_PREFETCH(&data[jj])
                    FASTGD_SGD_PREFETCH(&indices[jj])
                    jj += line
            lo = indptr[i]
            hi = indptr[i + 1]
            p = 0.0
            for jj in range(lo, hi):
                p += <double>data[jj] * w[indices[jj]]
            p = p * ws + b
            eta = step_size(lr, eta, eta0, alpha, optimal_init, t, power_t)
            yi = y[i]
            if sum_loss:
                value = sample_loss(loss, yi, p, par)
                loss_sum += value
                objective_sum += value
                if lr < LR_PA1 and penalty != PENALTY_NONE:
                    objective_sum += penalty_value(alpha, l1_ratio, sq, l1n)
            class_weight = weight_pos if yi > 0.0 else weight_neg
            if lr >= LR_PA1:
                x_sq = 0.0
                for jj in range(lo, hi):
                    x_sq += <double>data[jj] * data[jj]
                if lr == LR_PA1 and x_sq == 0.0:
                    continue
                update = passive_aggressive_step(lr, sample_loss(loss, yi, p, par), x_sq, eta0)
                update *= passive_aggressive_sign(loss == LOSS_HINGE, yi, p)
            else:
                update = -eta * sample_dloss(loss, yi, p, par)
            update *= class_weight * sw[i]
            if decays:
                c = l2_decay(eta, alpha, l1_ratio)
                ws *= c
                sq *= c * c
                l1n *= c
                if ws < rescale_below:
                    _fold_scale(w, aw, ws, a, bb, average)
                    ws = 1.0
                    if average > 0:
                        a = 0.0
                        bb = 1.0
            averaging = 0 < average and average <= t
            if update != 0.0:
                # the gradient step and the matching shift of the lazy average, in one pass
                step = update / ws
                shift = -a * step if averaging else 0.0
                acc_sq = 0.0
                acc_l1 = 0.0
                for jj in range(lo, hi):
                    j = indices[jj]
                    w[j] = w[j] + data[jj] * step
                    acc_sq += <double>w[j] * w[j]
                    acc_l1 += fabs(w[j])
                    aw[j] += data[jj] * shift
                sq = acc_sq * (ws * ws)
                l1n = acc_l1 * ws
                if fit_intercept:
                    b += update * decay
            if averaging:
                k = t - average + 1.0
                ab += (b - ab) / k
                bb = average_b_next(bb, k)
                a = average_a_next(a, bb, k, ws)
            if truncates:
                u += l1_ratio * eta * alpha
                for jj in range(lo, hi):
                    j = indices[jj]
                    old = ws * w[j]
                    new = l1_truncate(old, u, q[j])
                    w[j] = new / ws
                    q[j] += new - old
            t += 1.0
        _fold_scale(w, aw, ws, a, bb, average)
    s[S_INTERCEPT], s[S_AVERAGE_INTERCEPT], s[S_T], s[S_U], s[S_ETA] = b, ab, t, u, eta
    s[S_WSCALE], s[S_AVERAGE_A], s[S_AVERAGE_B], s[S_SQ_NORM], s[S_L1_NORM] = ws, a, bb, sq, l1n
    return (STATUS_OK if _all_finite(w, b) else STATUS_NONFINITE), loss_sum, objective_sum
