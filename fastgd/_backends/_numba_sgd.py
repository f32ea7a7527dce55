"""Numba engine of the scikit-learn-semantics SGD epoch (``SGDClassifier`` / ``SGDRegressor``).

The scalar rules come from :mod:`fastgd._backends._sgd_rules` (shared with the Cython
engine), each wrapped with ``njit(inline="always")``; this module holds only the loops, which
mirror ``_cython/_sgd_kernels.pyx`` step for step. One call trains one epoch over ``order``;
the GIL is released, so the one-vs-rest problems of a multiclass fit run in parallel threads.

One epoch loop serves dense and CSR input: dense ``X`` is passed flat (row ``i`` is
``data[i * n_features:(i + 1) * n_features]``) with ``dense=True``, and only the row operations
(dot product, axpy, norms, L1 truncation) branch on the layout, once per row. The reductions
keep four partial sums, added in the Cython engine's order. Inside a call the weights are
``w = wscale * v`` and the average ``(aw + average_a * v) / average_b`` (see ``_sgd_rules``):
L2 decay is O(1), a step with a zero update costs only its margin, and a CSR step costs O(nnz
of the row). The plain vectors are restored on return. Rows are prefetched a few samples
ahead.
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


@intrinsic
def _prefetch(typingctx, array, index):
    """``llvm.prefetch`` (read, all cache levels) of element ``index`` of a C-contiguous 1-D
    array."""

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
_PREFETCH_AHEAD, _CACHE_LINE = R.PREFETCH_AHEAD, R.CACHE_LINE


# --- row operations: a row is its values ``x`` and, unless dense, its columns ``ix`` (views, so
# that every index is a non-negative loop counter: Numba then emits no wraparound branch)
@njit(nogil=True, cache=True, inline="always")
def _dot(x, ix, dense, w):
    """x . w in four partial sums (sum r takes the terms r, r + 4, ...; the tail goes to sum 0),
    added pairwise: not one chain of dependent additions, and the Cython engine's order."""
    n = x.shape[0]
    a0 = a1 = a2 = a3 = 0.0
    k = 0
    if dense:
        while k + 4 <= n:
            a0 += np.float64(x[k]) * w[k]
            a1 += np.float64(x[k + 1]) * w[k + 1]
            a2 += np.float64(x[k + 2]) * w[k + 2]
            a3 += np.float64(x[k + 3]) * w[k + 3]
            k += 4
        while k < n:
            a0 += np.float64(x[k]) * w[k]
            k += 1
    else:
        while k + 4 <= n:
            a0 += np.float64(x[k]) * w[ix[k]]
            a1 += np.float64(x[k + 1]) * w[ix[k + 1]]
            a2 += np.float64(x[k + 2]) * w[ix[k + 2]]
            a3 += np.float64(x[k + 3]) * w[ix[k + 3]]
            k += 4
        while k < n:
            a0 += np.float64(x[k]) * w[ix[k]]
            k += 1
    return (a0 + a1) + (a2 + a3)


@njit(nogil=True, cache=True, inline="always")
def _add(x, ix, dense, w, step, aw, averaging, shift):
    """w += step * x and, when averaging, aw += shift * x."""
    if dense:
        for k in range(x.shape[0]):
            w[k] = w[k] + x[k] * step
        if averaging:
            for k in range(x.shape[0]):
                aw[k] = aw[k] + x[k] * shift
    else:
        for k in range(x.shape[0]):
            w[ix[k]] = w[ix[k]] + x[k] * step
        if averaging:
            for k in range(x.shape[0]):
                aw[ix[k]] = aw[ix[k]] + x[k] * shift


@njit(nogil=True, cache=True, inline="always")
def _touched_sq_norm(ix, n, dense, w):
    """sum v_j^2 over the row's n columns: scikit-learn's running ||w||^2 of the stopping
    objective is, after a step, that of the columns the step touched (a dense row: all)."""
    if dense:
        return _dot(w, ix, True, w)
    total = 0.0
    for k in range(n):
        v = np.float64(w[ix[k]])
        total += v * v
    return total


@njit(nogil=True, cache=True, inline="always")
def _touched_l1_norm(ix, n, dense, w):
    """sum |v_j| over the row's n columns (as :func:`_touched_sq_norm`)."""
    a0 = a1 = a2 = a3 = 0.0
    k = 0
    if dense:
        while k + 4 <= n:
            a0 += abs(np.float64(w[k]))
            a1 += abs(np.float64(w[k + 1]))
            a2 += abs(np.float64(w[k + 2]))
            a3 += abs(np.float64(w[k + 3]))
            k += 4
        while k < n:
            a0 += abs(np.float64(w[k]))
            k += 1
    else:
        for k in range(n):
            a0 += abs(np.float64(w[ix[k]]))
    return (a0 + a1) + (a2 + a3)


@njit(nogil=True, cache=True, inline="always")
def _truncate(ix, n, dense, w, q, ws, u):
    """The cumulative L1 truncation of the row's n columns (every column of a dense row)."""
    for k in range(n):
        j = k if dense else ix[k]
        old = ws * w[j]
        new = l1_truncate(old, u, q[j])
        w[j] = new / ws
        q[j] += new - old


@njit(nogil=True, cache=True, inline="always")
def _prefetch_row(data, indices, lo, n, dense):
    """Ask for every cache line of the row data[lo:lo + n] (and its indices, if any)."""
    line = max(1, _CACHE_LINE // data.itemsize)
    for k in range(lo, lo + n, line):
        _prefetch(data, k)
        if not dense:
            _prefetch(indices, k)


@njit(nogil=True, cache=True)
def _all_finite(w, b):
    if not np.isfinite(b):
        return False
    for j in range(w.shape[0]):
        if not np.isfinite(w[j]):
            return False
    return True


@njit(nogil=True, cache=True)
def _to_lazy_form(w, aw, ws, a, bb, averages):
    """From plain vectors to v = w / wscale and aw = average_b * average - average_a * v."""
    for j in range(w.shape[0]):
        w[j] = w[j] / ws
        if averages:
            aw[j] = aw[j] * bb - a * w[j]


@njit(nogil=True, cache=True)
def _fold_scale(v, aw, ws, a, bb, averages):
    """w = ws * v and the plain average, from the lazy form (O(n_features))."""
    for j in range(v.shape[0]):
        if averages:
            aw[j] = (aw[j] + a * v[j]) / bb
        v[j] *= ws


@njit(nogil=True, cache=True, inline="always")
def _epoch(data, indices, indptr, dense, y, sw, order, w, aw, q, s, codes, hp):
    """The epoch of both layouts (see the module docstring), inlined into one entry point per
    layout with ``dense`` a constant, so that the row operations compile without the other
    layout's branch (the dense loops vectorise then: measured 1.8x faster per step). ``aw``
    is read only when averaging. Returns ``(status, loss_sum, objective_sum)``."""
    loss, penalty, lr = codes[_C_LOSS], codes[_C_PENALTY], codes[_C_LR]
    fit_intercept, average, sum_loss = codes[_C_FIT_INTERCEPT], codes[_C_AVERAGE], codes[_C_SUM_LOSS]
    alpha, l1_ratio, eta0, power_t = hp[_H_ALPHA], hp[_H_L1_RATIO], hp[_H_ETA0], hp[_H_POWER_T]
    par, decay, optimal_init, rescale_below = hp[_H_PAR], hp[_H_DECAY], hp[_H_OPT_INIT], hp[_H_RESCALE]
    weight_pos, weight_neg = hp[_H_POS], hp[_H_NEG]
    decays = penalty == _L2 or penalty == _EN
    truncates = penalty == _L1 or penalty == _EN
    averages = average > 0
    penalised = sum_loss != 0 and lr < _PA1 and penalty != _NONE
    # the objective's penalty reads ||w||^2 only if l1_ratio < 1 and ||w||_1 only if l1_ratio > 0
    need_sq = penalised and l1_ratio < 1.0
    need_l1 = penalised and l1_ratio > 0.0
    b, ab, t, u, eta = s[_S_B], s[_S_AB], s[_S_T], s[_S_U], s[_S_ETA]
    ws, a, bb, sq, l1n = s[_S_WS], s[_S_A], s[_S_BB], s[_S_SQ], s[_S_L1]
    n_features = w.shape[0]
    n_steps = order.shape[0]
    _to_lazy_form(w, aw, ws, a, bb, averages)
    loss_sum = 0.0
    objective_sum = 0.0
    for ii in range(n_steps):
        if ii + _PREFETCH_AHEAD < n_steps:
            i = order[ii + _PREFETCH_AHEAD]
            if dense:
                _prefetch_row(data, indices, i * n_features, n_features, dense)
            else:
                _prefetch_row(data, indices, indptr[i], indptr[i + 1] - indptr[i], dense)
        i = order[ii]
        if dense:
            lo, n = i * n_features, n_features
            ix = indices
        else:
            lo, n = np.int64(indptr[i]), np.int64(indptr[i + 1] - indptr[i])
            ix = indices[lo:lo + n]
        x = data[lo:lo + n]
        p = _dot(x, ix, dense, w) * ws + b
        eta = step_size(lr, eta, eta0, alpha, optimal_init, t, power_t)
        yi = np.float64(y[i])
        if sum_loss:
            value = sample_loss(loss, yi, p, par)
            loss_sum += value
            objective_sum += value
            if penalised:
                objective_sum += penalty_value(alpha, l1_ratio, sq, l1n)
        if lr >= _PA1:
            x_sq = _dot(x, ix, True, x)  # ||x||^2: the dot product of the values with themselves
            if lr == _PA1 and x_sq == 0.0:
                continue
            update = passive_aggressive_step(lr, sample_loss(loss, yi, p, par), x_sq, eta0)
            update *= passive_aggressive_sign(loss == _HINGE, yi, p)
        else:
            update = -eta * sample_dloss(loss, yi, p, par)
        update *= (weight_pos if yi > 0.0 else weight_neg) * sw[i]
        if decays:
            c = l2_decay(eta, alpha, l1_ratio)
            ws *= c
            sq *= c * c
            l1n *= c
            if ws < rescale_below:
                _fold_scale(w, aw, ws, a, bb, averages)
                ws = 1.0
                if averages:
                    a = 0.0
                    bb = 1.0
        averaging = averages and average <= t
        if update != 0.0:
            # the gradient step, and the matching shift of the lazy average
            step = update / ws
            _add(x, ix, dense, w, step, aw, averaging, -a * step)
            if need_sq:
                sq = _touched_sq_norm(ix, n, dense, w) * (ws * ws)
            if need_l1:
                l1n = _touched_l1_norm(ix, n, dense, w) * ws
            if fit_intercept:
                b += update * decay
        if averaging:
            k = t - average + 1.0
            ab += (b - ab) / k
            bb = average_b_next(bb, k)
            a = average_a_next(a, bb, k, ws)
        if truncates:
            u += l1_ratio * eta * alpha
            _truncate(ix, n, dense, w, q, ws, u)
        t += 1.0
    _fold_scale(w, aw, ws, a, bb, averages)
    s[_S_B], s[_S_AB], s[_S_T], s[_S_U], s[_S_ETA] = b, ab, t, u, eta
    s[_S_WS], s[_S_A], s[_S_BB], s[_S_SQ], s[_S_L1] = ws, a, bb, sq, l1n
    return (_OK if _all_finite(w, b) else _NONFINITE), loss_sum, objective_sum


@njit(nogil=True, cache=True)
def _epoch_dense(data, y, sw, order, w, aw, q, s, codes, hp):
    no_indices = np.zeros(0, dtype=np.uint32)
    return _epoch(data, no_indices, no_indices, True, y, sw, order, w, aw, q, s, codes, hp)


@njit(nogil=True, cache=True)
def _epoch_csr(data, indices, indptr, y, sw, order, w, aw, q, s, codes, hp):
    return _epoch(data, indices, indptr, False, y, sw, order, w, aw, q, s, codes, hp)


def sgd_epoch_dense(X, y, sw, order, w, aw, q, scalars, codes, hp):
    """One epoch over the rows ``order`` of dense ``X`` (see ``_reference_sgd``); ``w``,
    ``aw`` (read only when averaging), ``q`` and ``scalars`` are updated in place. Returns
    ``(status, loss_sum, objective_sum)``."""
    return _epoch_dense(X.reshape(-1), y, sw, order, w, aw, q, scalars, codes, hp)


def sgd_epoch_csr(data, indices, indptr, y, sw, order, w, aw, q, scalars, codes, hp):
    """As :func:`sgd_epoch_dense` for CSR input (int32 ``indices`` / ``indptr``, read as
    unsigned: Numba's signed 32-bit index arithmetic costs a sign extension per access)."""
    return _epoch_csr(data, indices.view(np.uint32), indptr.view(np.uint32), y, sw, order, w, aw, q, scalars,
                      codes, hp)
