"""Numba engine of the scikit-learn-semantics SGD epoch (``SGDClassifier`` / ``SGDRegressor``).

The scalar rules come from :mod:`fastgd._backends._sgd_rules` (shared with the Cython
engine), each wrapped with ``njit(inline="always")``; this module holds only the loops. One
call trains one epoch over ``order``; the GIL is released, so the one-vs-rest problems of a
multiclass fit run in parallel threads.

Inside a call the weights are ``w = wscale * v`` and the average
``(aw + average_a * v) / average_b`` (see ``_sgd_rules``): L2 decay is O(1), a step with a
zero update costs only its margin, the gradient step and the average's shift share one pass
over the row, and a CSR step costs O(nnz of the row). The plain vectors are restored on
return. Rows a few samples ahead in the epoch's order are prefetched.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from fastgd._backends import _numba  # noqa: F401  (sets up a writable Numba cache folder first)
from fastgd._backends import _sgd_rules as _rules

name = "numba"


def _inline(func):
    return njit(inline="always", nogil=True, cache=True)(func)


sample_loss = _inline(_rules.sample_loss)
sample_dloss = _inline(_rules.sample_dloss)
step_size = _inline(_rules.step_size)
passive_aggressive_step = _inline(_rules.passive_aggressive_step)
passive_aggressive_sign = _inline(_rules.passive_aggressive_sign)
l2_decay = _inline(_rules.l2_decay)
l1_truncate = _inline(_rules.l1_truncate)
penalty_value = _inline(_rules.penalty_value)
average_b_next = _inline(_rules.average_b_next)
average_a_next = _inline(_rules.average_a_next)

# A shuffled epoch waits on a cache miss per row: ask for the row PREFETCH_AHEAD samples ahead
PREFETCH_AHEAD = 4
_CACHE_LINE = 64


@intrinsic
def _prefetch(typingctx, array, index):
    """``llvm.prefetch`` (read, all cache levels) of element ``index`` of a C-contiguous array
    (a flat index for a 2-D one)."""

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), i32, i32, i32]),
            "llvm.prefetch.p0i8")
        builder.call(fn, [address, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


R = _rules
_C_LOSS, _C_PENALTY, _C_LR, _C_FIT_INTERCEPT = R.C_LOSS, R.C_PENALTY, R.C_LEARNING_RATE, R.C_FIT_INTERCEPT
_C_AVERAGE, _C_SUM_LOSS = R.C_AVERAGE, R.C_SUM_LOSS
_H_ALPHA, _H_L1_RATIO, _H_ETA0, _H_POWER_T = R.H_ALPHA, R.H_L1_RATIO, R.H_ETA0, R.H_POWER_T
_H_PAR, _H_POS, _H_NEG, _H_DECAY = R.H_LOSS_PARAM, R.H_WEIGHT_POS, R.H_WEIGHT_NEG, R.H_INTERCEPT_DECAY
_H_OPT_INIT, _H_RESCALE = R.H_OPTIMAL_INIT, R.H_RESCALE_BELOW
_S_B, _S_AB, _S_T, _S_U, _S_ETA = R.S_INTERCEPT, R.S_AVERAGE_INTERCEPT, R.S_T, R.S_U, R.S_ETA
_S_WS, _S_A, _S_BB, _S_SQ, _S_L1 = R.S_WSCALE, R.S_AVERAGE_A, R.S_AVERAGE_B, R.S_SQ_NORM, R.S_L1_NORM
_L1, _L2, _EN, _NONE = R.PENALTY_L1, R.PENALTY_L2, R.PENALTY_ELASTICNET, R.PENALTY_NONE
_PA1, _HINGE = R.LR_PA1, R.LOSS_HINGE
_OK, _NONFINITE = R.STATUS_OK, R.STATUS_NONFINITE


@njit(nogil=True, cache=True)
def _all_finite(w, b):
    if not np.isfinite(b):
        return False
    for j in range(w.shape[0]):
        if not np.isfinite(w[j]):
            return False
    return True


@njit(nogil=True, cache=True)
def _epoch_dense(X, y, sw, order, w, aw, q, s, codes, hp):
    loss, penalty, lr = codes[_C_LOSS], codes[_C_PENALTY], codes[_C_LR]
    fit_intercept, average, sum_loss = codes[_C_FIT_INTERCEPT], codes[_C_AVERAGE], codes[_C_SUM_LOSS]
    alpha, l1_ratio, eta0, power_t = hp[_H_ALPHA], hp[_H_L1_RATIO], hp[_H_ETA0], hp[_H_POWER_T]
    par, decay, optimal_init, rescale_below = hp[_H_PAR], hp[_H_DECAY], hp[_H_OPT_INIT], hp[_H_RESCALE]
    decays = penalty == _L2 or penalty == _EN
    truncates = penalty == _L1 or penalty == _EN
    b, ab, t, u, eta = s[_S_B], s[_S_AB], s[_S_T], s[_S_U], s[_S_ETA]
    ws, a, bb, sq, l1n = s[_S_WS], s[_S_A], s[_S_BB], s[_S_SQ], s[_S_L1]
    n_features = X.shape[1]
    n_steps = order.shape[0]
    line = max(1, _CACHE_LINE // X.itemsize)
    _to_lazy_form(w, aw, ws, a, bb, average)
    loss_sum = 0.0
    objective_sum = 0.0
    for ii in range(n_steps):
        i = order[ii]
        if ii + PREFETCH_AHEAD < n_steps:
            ahead = order[ii + PREFETCH_AHEAD] * n_features
            for j in range(0, n_features, line):
                _prefetch(X, ahead + j)
        p = 0.0
        for j in range(n_features):
            p += np.float64(X[i, j]) * w[j]
        p = p * ws + b
        eta = step_size(lr, eta, eta0, alpha, optimal_init, t, power_t)
        yi = np.float64(y[i])
        if sum_loss:
            value = sample_loss(loss, yi, p, par)
            loss_sum += value
            objective_sum += value
            if lr < _PA1 and penalty != _NONE:
                objective_sum += penalty_value(alpha, l1_ratio, sq, l1n)
        class_weight = hp[_H_POS] if yi > 0.0 else hp[_H_NEG]
        if lr >= _PA1:
            x_sq = 0.0
            for j in range(n_features):
                x_sq += np.float64(X[i, j]) * X[i, j]
            if lr == _PA1 and x_sq == 0.0:
                continue
            update = passive_aggressive_step(lr, sample_loss(loss, yi, p, par), x_sq, eta0)
            update *= passive_aggressive_sign(loss == _HINGE, yi, p)
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
        averaging = 0 < average <= t
        if update != 0.0:
            # the gradient step and the matching shift of the lazy average, in one pass
            step = update / ws
            shift = -a * step if averaging else 0.0
            acc_sq = 0.0
            acc_l1 = 0.0
            for j in range(n_features):
                wj = w[j] + X[i, j] * step
                w[j] = wj
                acc_sq += np.float64(wj) * wj
                acc_l1 += abs(wj)
                aw[j] += X[i, j] * shift
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
    s[_S_B], s[_S_AB], s[_S_T], s[_S_U], s[_S_ETA] = b, ab, t, u, eta
    s[_S_WS], s[_S_A], s[_S_BB], s[_S_SQ], s[_S_L1] = ws, a, bb, sq, l1n
    return (_OK if _all_finite(w, b) else _NONFINITE), loss_sum, objective_sum


@njit(nogil=True, cache=True)
def _to_lazy_form(w, aw, ws, a, bb, average):
    """From plain vectors to v = w / wscale and aw = average_b * average - average_a * v."""
    for j in range(w.shape[0]):
        w[j] = w[j] / ws
        if average > 0:
            aw[j] = aw[j] * bb - a * w[j]


@njit(nogil=True, cache=True)
def _fold_scale(v, aw, ws, a, bb, average):
    """w = ws * v and the plain average, from the lazy form (O(n_features))."""
    for j in range(v.shape[0]):
        if average > 0:
            aw[j] = (aw[j] + a * v[j]) / bb
        v[j] *= ws


@njit(nogil=True, cache=True)
def _epoch_csr(data, indices, indptr, y, sw, order, w, aw, q, s, codes, hp):
    loss, penalty, lr = codes[_C_LOSS], codes[_C_PENALTY], codes[_C_LR]
    fit_intercept, average, sum_loss = codes[_C_FIT_INTERCEPT], codes[_C_AVERAGE], codes[_C_SUM_LOSS]
    alpha, l1_ratio, eta0, power_t = hp[_H_ALPHA], hp[_H_L1_RATIO], hp[_H_ETA0], hp[_H_POWER_T]
    par, decay, optimal_init, rescale_below = hp[_H_PAR], hp[_H_DECAY], hp[_H_OPT_INIT], hp[_H_RESCALE]
    decays = penalty == _L2 or penalty == _EN
    truncates = penalty == _L1 or penalty == _EN
    b, ab, t, u, eta = s[_S_B], s[_S_AB], s[_S_T], s[_S_U], s[_S_ETA]
    ws, a, bb, sq, l1n = s[_S_WS], s[_S_A], s[_S_BB], s[_S_SQ], s[_S_L1]
    _to_lazy_form(w, aw, ws, a, bb, average)
    n_steps = order.shape[0]
    line = max(1, _CACHE_LINE // data.itemsize)
    loss_sum = 0.0
    objective_sum = 0.0
    for ii in range(order.shape[0]):
        i = order[ii]
        if ii + PREFETCH_AHEAD < n_steps:
            ahead = order[ii + PREFETCH_AHEAD]
            for jj in range(indptr[ahead], indptr[ahead + 1], line):
                _prefetch(data, jj)
                _prefetch(indices, jj)
        lo, hi = indptr[i], indptr[i + 1]
        p = 0.0
        for jj in range(lo, hi):
            p += np.float64(data[jj]) * w[indices[jj]]
        p = p * ws + b
        eta = step_size(lr, eta, eta0, alpha, optimal_init, t, power_t)
        yi = np.float64(y[i])
        if sum_loss:
            value = sample_loss(loss, yi, p, par)
            loss_sum += value
            objective_sum += value
            if lr < _PA1 and penalty != _NONE:
                objective_sum += penalty_value(alpha, l1_ratio, sq, l1n)
        class_weight = hp[_H_POS] if yi > 0.0 else hp[_H_NEG]
        if lr >= _PA1:
            x_sq = 0.0
            for jj in range(lo, hi):
                x_sq += np.float64(data[jj]) * data[jj]
            if lr == _PA1 and x_sq == 0.0:
                continue
            update = passive_aggressive_step(lr, sample_loss(loss, yi, p, par), x_sq, eta0)
            update *= passive_aggressive_sign(loss == _HINGE, yi, p)
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
        averaging = 0 < average <= t
        if update != 0.0:
            # the gradient step and the matching shift of the lazy average, in one pass
            step = update / ws
            shift = -a * step if averaging else 0.0
            acc_sq = 0.0
            acc_l1 = 0.0
            for jj in range(lo, hi):
                j = indices[jj]
                wj = w[j] + data[jj] * step
                w[j] = wj
                acc_sq += np.float64(wj) * wj
                acc_l1 += abs(wj)
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
    s[_S_B], s[_S_AB], s[_S_T], s[_S_U], s[_S_ETA] = b, ab, t, u, eta
    s[_S_WS], s[_S_A], s[_S_BB], s[_S_SQ], s[_S_L1] = ws, a, bb, sq, l1n
    return (_OK if _all_finite(w, b) else _NONFINITE), loss_sum, objective_sum


def sgd_epoch_dense(X, y, sw, order, w, aw, q, scalars, codes, hp):
    """One epoch over the rows ``order`` of dense ``X`` (see ``_reference_sgd``); ``w``,
    ``aw``, ``q`` and ``scalars`` are updated in place. Returns
    ``(status, loss_sum, objective_sum)``."""
    return _epoch_dense(X, y, sw, order, w, aw, q, scalars, codes, hp)


def sgd_epoch_csr(data, indices, indptr, y, sw, order, w, aw, q, scalars, codes, hp):
    """As :func:`sgd_epoch_dense` for CSR input."""
    return _epoch_csr(data, indices, indptr, y, sw, order, w, aw, q, scalars, codes, hp)
