"""Numba engine of the scikit-learn-semantics SGD epoch (``SGDClassifier`` / ``SGDRegressor``).

The scalar rules come from :mod:`fastgd._backends._sgd_rules` (shared with the Cython
engine), each wrapped with ``njit(inline="always")``; this module holds only the loops. One
call trains one epoch over ``order``; the GIL is released, so the one-vs-rest problems of a
multiclass fit run in parallel threads.

Dense input keeps ``w`` and the average as plain vectors and does each step in two passes
(the margin, then one fused pass: decay, gradient, average, L1 truncation, norms). CSR input
must not touch every coordinate per step, yet L2 decays every coordinate every step: inside
the call the weights are held as ``w = wscale * v`` and the average as
``(aw + average_a * v) / average_b`` (the lazy form of Bottou and Xu 2011), so a step costs
O(nnz of the row); the plain vectors are restored on return.
"""

import numpy as np
from numba import njit

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
running_average = _inline(_rules.running_average)
average_b_next = _inline(_rules.average_b_next)
average_a_next = _inline(_rules.average_a_next)

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
    loss_sum = 0.0
    objective_sum = 0.0
    for ii in range(order.shape[0]):
        i = order[ii]
        p = 0.0
        for j in range(n_features):
            p += np.float64(X[i, j]) * w[j]
        p += b
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
        c = 1.0
        if decays:
            c = l2_decay(eta, alpha, l1_ratio)
            ws *= c
            sq *= c * c
            l1n *= c
            if ws < rescale_below:
                ws = 1.0
                if average > 0:
                    a = 0.0
                    bb = 1.0
        if update != 0.0 and fit_intercept:
            b += update * decay
        averaging = 0 < average <= t
        k = t - average + 1.0
        if averaging:
            ab += (b - ab) / k
            bb = average_b_next(bb, k)
            a = average_a_next(a, bb, k, ws)
        l1_weight = 0.0
        if truncates:
            u += l1_ratio * eta * alpha
            if average > 0:
                l1_weight = a / (bb * ws)
        acc_sq = 0.0
        acc_l1 = 0.0
        for j in range(n_features):
            wj = np.float64(w[j])
            if decays:
                wj *= c
            if update != 0.0:
                wj += update * X[i, j]
                acc_sq += wj * wj
                acc_l1 += abs(wj)
            if averaging:
                aw[j] = running_average(aw[j], wj, k)
            if truncates:
                new = l1_truncate(wj, u, q[j])
                q[j] += new - wj
                if average > 0:
                    aw[j] += l1_weight * (new - wj)
                wj = new
            w[j] = wj
        if update != 0.0:
            sq = acc_sq
            l1n = acc_l1
        t += 1.0
    s[_S_B], s[_S_AB], s[_S_T], s[_S_U], s[_S_ETA] = b, ab, t, u, eta
    s[_S_WS], s[_S_A], s[_S_BB], s[_S_SQ], s[_S_L1] = ws, a, bb, sq, l1n
    return (_OK if _all_finite(w, b) else _NONFINITE), loss_sum, objective_sum


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
    # into the lazy form: w holds v = w / wscale, aw holds average_b * average - average_a * v
    for j in range(w.shape[0]):
        w[j] = w[j] / ws
        if average > 0:
            aw[j] = aw[j] * bb - a * w[j]
    loss_sum = 0.0
    objective_sum = 0.0
    for ii in range(order.shape[0]):
        i = order[ii]
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
        if update != 0.0:
            step = update / ws
            acc_sq = 0.0
            acc_l1 = 0.0
            for jj in range(lo, hi):
                j = indices[jj]
                w[j] += data[jj] * step
                acc_sq += np.float64(w[j]) * w[j]
                acc_l1 += abs(w[j])
            sq = acc_sq * (ws * ws)
            l1n = acc_l1 * ws
            if fit_intercept:
                b += update * decay
        if 0 < average <= t:
            k = t - average + 1.0
            shift = -a * update / ws
            for jj in range(lo, hi):
                aw[indices[jj]] += data[jj] * shift
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
