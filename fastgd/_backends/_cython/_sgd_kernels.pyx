# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Cython engine of the scikit-learn-semantics SGD epoch (``SGDClassifier`` / ``SGDRegressor``).

The scalar rules are not written here: ``_sgd_rules.py`` (Cython pure-Python mode) is
included below and compiles to inline ``nogil`` C functions, the same source the Numba engine
wraps with ``njit(inline="always")``. This file holds the loops, which mirror
``_numba_sgd.py`` step for step.

One epoch loop serves dense and CSR input: a row is its values, its column indices (``NULL``
for a dense row, whose columns are 0 .. n_features - 1) and its length, and only the row
operations (dot product, axpy, norms, L1 truncation) branch on the layout, once per row. The
dense branches are contiguous loops the compiler vectorises; the reductions keep four partial
sums, so that they are not one chain of dependent additions. Inside a call
the weights are held in the lazy ``w = wscale * v`` form (plain vectors between calls), rows are
prefetched a few samples ahead, and float32 and float64 come through a fused type; one call is
one epoch, run with the GIL released.
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

ctypedef fused floating:
    float
    double


# --- row operations: ``idx == NULL`` is a dense row (columns 0 .. n - 1) ------------------
cdef inline double _dot(const floating* x, const int32_t* idx, Py_ssize_t n, const floating* w) noexcept nogil:
    """x . w in four partial sums (sum r takes the terms r, r + 4, ...; the tail goes to sum 0),
    added pairwise: not one chain of dependent additions, and the order the Numba engine uses."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef double acc[4]
    cdef Py_ssize_t k = 0, r
    if idx == NULL:
        # the four sums as one small array: the shape the compiler turns into vector lanes
        for r in range(4):
            acc[r] = 0.0
        while k + 4 <= n:
            for r in range(4):
                acc[r] += <double>x[k + r] * <double>w[k + r]
            k += 4
        while k < n:
            acc[0] += <double>x[k] * w[k]
            k += 1
        return (acc[0] + acc[1]) + (acc[2] + acc[3])
    else:
        while k + 4 <= n:
            a0 += <double>x[k] * w[idx[k]]
            a1 += <double>x[k + 1] * w[idx[k + 1]]
            a2 += <double>x[k + 2] * w[idx[k + 2]]
            a3 += <double>x[k + 3] * w[idx[k + 3]]
            k += 4
        while k < n:
            a0 += <double>x[k] * w[idx[k]]
            k += 1
    return (a0 + a1) + (a2 + a3)


cdef inline void _add(const floating* x, const int32_t* idx, Py_ssize_t n, floating* w, double step,
                      floating* aw, double shift) noexcept nogil:
    """w += step * x and, when averaging (``aw`` not NULL), aw += shift * x."""
    cdef Py_ssize_t k
    if idx == NULL:
        for k in range(n):
            w[k] = w[k] + x[k] * step
        if aw != NULL:
            for k in range(n):
                aw[k] = aw[k] + x[k] * shift
    else:
        for k in range(n):
            w[idx[k]] = w[idx[k]] + x[k] * step
        if aw != NULL:
            for k in range(n):
                aw[idx[k]] = aw[idx[k]] + x[k] * shift


cdef inline double _touched_sq_norm(const int32_t* idx, Py_ssize_t n, const floating* w) noexcept nogil:
    """sum v_j^2 over the row's columns: scikit-learn's running ||w||^2 of the stopping
    objective is, after a step, that of the columns the step touched (a dense row: all)."""
    cdef double total = 0.0, v
    cdef Py_ssize_t k
    if idx == NULL:
        return _dot(w, NULL, n, w)
    for k in range(n):
        v = w[idx[k]]
        total += v * v
    return total


cdef inline double _touched_l1_norm(const int32_t* idx, Py_ssize_t n, const floating* w) noexcept nogil:
    """sum |v_j| over the row's columns (as :func:`_touched_sq_norm`)."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef Py_ssize_t k = 0
    if idx == NULL:
        while k + 4 <= n:
            a0 += fabs(w[k])
            a1 += fabs(w[k + 1])
            a2 += fabs(w[k + 2])
            a3 += fabs(w[k + 3])
            k += 4
        while k < n:
            a0 += fabs(w[k])
            k += 1
    else:
        for k in range(n):
            a0 += fabs(w[idx[k]])
    return (a0 + a1) + (a2 + a3)


cdef inline void _truncate(const int32_t* idx, Py_ssize_t n, floating* w, floating* q, double ws,
                           double u) noexcept nogil:
    """The cumulative L1 truncation of the row's columns (every column of a dense row)."""
    cdef Py_ssize_t k, j
    cdef double old, new
    for k in range(n):
        j = k if idx == NULL else idx[k]
        old = ws * w[j]
        new = l1_truncate(old, u, q[j])
        w[j] = new / ws
        q[j] += new - old


cdef inline void _prefetch(const floating* x, const int32_t* idx, Py_ssize_t n) noexcept nogil:
    """Ask for every cache line of a row (values, and indices if any)."""
    cdef Py_ssize_t k = 0
    cdef Py_ssize_t line = max(1, CACHE_LINE // <Py_ssize_t>sizeof(floating))
    while k < n:
        FASTGD_SGD_PREFETCH(x + k)
        if idx != NULL:
            FASTGD_SGD_PREFETCH(idx + k)
        k += line


cdef inline bint _all_finite(const floating* w, Py_ssize_t n, double b) noexcept nogil:
    cdef Py_ssize_t j
    if not isfinite(b):
        return False
    for j in range(n):
        if not isfinite(w[j]):
            return False
    return True


cdef void _to_lazy_form(floating* w, floating* aw, Py_ssize_t n, double ws, double a, double bb) noexcept nogil:
    """From plain vectors to v = w / wscale and aw = average_b * average - average_a * v."""
    cdef Py_ssize_t j
    for j in range(n):
        w[j] = w[j] / ws
        if aw != NULL:
            aw[j] = aw[j] * bb - a * w[j]


cdef void _fold_scale(floating* v, floating* aw, Py_ssize_t n, double ws, double a, double bb) noexcept nogil:
    """w = ws * v and the plain average, from the lazy form (O(n_features))."""
    cdef Py_ssize_t j
    for j in range(n):
        if aw != NULL:
            aw[j] = (aw[j] + a * v[j]) / bb
        v[j] = v[j] * ws


cdef int _epoch(const floating* data, const int32_t* indices, const int32_t* indptr, Py_ssize_t n_features,
                const floating* y, const floating* sw, const int64_t* order, Py_ssize_t n_steps,
                floating* w, floating* aw, floating* q, double* s, const int64_t* codes, const double* hp,
                double* sums) noexcept nogil:
    """The epoch of both layouts: ``indptr == NULL`` is dense ``data`` (row-major, n_features a
    row), otherwise CSR. ``aw`` is NULL unless averaging. ``sums`` receives the loss and
    objective sums; returns the status."""
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
    cdef bint penalised = sum_loss and lr < LR_PA1 and penalty != PENALTY_NONE
    # the objective's penalty reads ||w||^2 only if l1_ratio < 1 and ||w||_1 only if l1_ratio > 0
    cdef bint need_sq = penalised and l1_ratio < 1.0, need_l1 = penalised and l1_ratio > 0.0
    cdef double b = s[S_INTERCEPT], ab = s[S_AVERAGE_INTERCEPT], t = s[S_T], u = s[S_U], eta = s[S_ETA]
    cdef double ws = s[S_WSCALE], a = s[S_AVERAGE_A], bb = s[S_AVERAGE_B], sq = s[S_SQ_NORM], l1n = s[S_L1_NORM]
    cdef double loss_sum = 0.0, objective_sum = 0.0, p, yi, value, update, c, k, step
    cdef Py_ssize_t ii, i, n, lo
    cdef const floating* x
    cdef const int32_t* idx = NULL
    cdef bint averaging
    _to_lazy_form(w, aw, n_features, ws, a, bb)
    for ii in range(n_steps):
        if ii + PREFETCH_AHEAD < n_steps:
            i = order[ii + PREFETCH_AHEAD]
            if indptr == NULL:
                _prefetch(data + i * n_features, NULL, n_features)
            else:
                _prefetch(data + indptr[i], indices + indptr[i], indptr[i + 1] - indptr[i])
        i = order[ii]
        if indptr == NULL:
            lo, n = i * n_features, n_features
        else:
            lo, n = indptr[i], indptr[i + 1] - indptr[i]
            idx = indices + lo
        x = data + lo if n > 0 else data  # no address past an empty X
        p = _dot(x, idx, n, w) * ws + b
        eta = step_size(lr, eta, eta0, alpha, optimal_init, t, power_t)
        yi = y[i]
        if sum_loss:
            value = sample_loss(loss, yi, p, par)
            loss_sum += value
            objective_sum += value
            if penalised:
                objective_sum += penalty_value(alpha, l1_ratio, sq, l1n)
        if lr >= LR_PA1:
            value = _dot(x, NULL, n, x)  # ||x||^2: the dot product of the values with themselves
            if lr == LR_PA1 and value == 0.0:
                continue
            update = passive_aggressive_step(lr, sample_loss(loss, yi, p, par), value, eta0)
            update *= passive_aggressive_sign(loss == LOSS_HINGE, yi, p)
        else:
            update = -eta * sample_dloss(loss, yi, p, par)
        update *= (weight_pos if yi > 0.0 else weight_neg) * sw[i]
        if decays:
            c = l2_decay(eta, alpha, l1_ratio)
            ws *= c
            sq *= c * c
            l1n *= c
            if ws < rescale_below:
                _fold_scale(w, aw, n_features, ws, a, bb)
                ws = 1.0
                if aw != NULL:
                    a = 0.0
                    bb = 1.0
        averaging = aw != NULL and average <= t
        if update != 0.0:
            # the gradient step, and the matching shift of the lazy average
            step = update / ws
            _add(x, idx, n, w, step, aw if averaging else NULL, -a * step)
            if need_sq:
                sq = _touched_sq_norm(idx, n, w) * (ws * ws)
            if need_l1:
                l1n = _touched_l1_norm(idx, n, w) * ws
            if fit_intercept:
                b += update * decay
        if averaging:
            k = t - average + 1.0
            ab += (b - ab) / k
            bb = average_b_next(bb, k)
            a = average_a_next(a, bb, k, ws)
        if truncates:
            u += l1_ratio * eta * alpha
            _truncate(idx, n, w, q, ws, u)
        t += 1.0
    _fold_scale(w, aw, n_features, ws, a, bb)
    s[S_INTERCEPT], s[S_AVERAGE_INTERCEPT], s[S_T], s[S_U], s[S_ETA] = b, ab, t, u, eta
    s[S_WSCALE], s[S_AVERAGE_A], s[S_AVERAGE_B], s[S_SQ_NORM], s[S_L1_NORM] = ws, a, bb, sq, l1n
    sums[0], sums[1] = loss_sum, objective_sum
    return STATUS_OK if _all_finite(w, n_features, b) else STATUS_NONFINITE


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


cdef inline floating* _address(floating[::1] a) noexcept nogil:
    """The first element of ``a``, or NULL for an empty ``a`` (no address is formed past it)."""
    return &a[0] if a.shape[0] > 0 else NULL


def sgd_epoch_dense(const floating[:, ::1] X, const floating[::1] y, const floating[::1] sw,
                    const int64_t[::1] order, floating[::1] w, floating[::1] aw, floating[::1] q,
                    double[::1] s, const int64_t[::1] codes, const double[::1] hp):
    """One epoch over the rows ``order`` of dense ``X``; ``w``, ``aw`` (read only when
    averaging), ``q`` and the ``scalars`` ``s`` are updated in place. Returns
    ``(status, loss_sum, objective_sum)``."""
    _check(X.shape[0], X.shape[1], y, sw, w, aw, q, s, codes, hp, order)
    cdef double sums[2]
    cdef int status
    cdef const floating* data = &X[0, 0] if X.shape[0] > 0 and X.shape[1] > 0 else NULL
    with nogil:
        status = _epoch(data, NULL, NULL, X.shape[1], &y[0] if y.shape[0] else NULL,
                        &sw[0] if sw.shape[0] else NULL, &order[0] if order.shape[0] else NULL, order.shape[0],
                        _address(w), _address(aw) if codes[C_AVERAGE] > 0 else NULL, _address(q), &s[0],
                        &codes[0], &hp[0], sums)
    return status, sums[0], sums[1]


def sgd_epoch_csr(const floating[::1] data, const int32_t[::1] indices, const int32_t[::1] indptr,
                  const floating[::1] y, const floating[::1] sw, const int64_t[::1] order, floating[::1] w,
                  floating[::1] aw, floating[::1] q, double[::1] s, const int64_t[::1] codes,
                  const double[::1] hp):
    """As :func:`sgd_epoch_dense` for CSR input (int32 ``indices`` / ``indptr``)."""
    _check(indptr.shape[0] - 1, w.shape[0], y, sw, w, aw, q, s, codes, hp, order)
    # the O(nnz) structure (column indices in range, indptr not decreasing) is checked once per
    # fit by the estimator (fastgd._sparse_validation), not on every epoch
    if indptr[indptr.shape[0] - 1] > data.shape[0] or data.shape[0] != indices.shape[0]:
        raise ValueError("sgd kernel: inconsistent CSR arrays")
    cdef double sums[2]
    cdef int status
    with nogil:
        status = _epoch(&data[0] if data.shape[0] else NULL, &indices[0] if indices.shape[0] else NULL,
                        &indptr[0], w.shape[0], &y[0] if y.shape[0] else NULL, &sw[0] if sw.shape[0] else NULL,
                        &order[0] if order.shape[0] else NULL, order.shape[0], _address(w),
                        _address(aw) if codes[C_AVERAGE] > 0 else NULL, _address(q), &s[0], &codes[0], &hp[0],
                        sums)
    return status, sums[0], sums[1]
