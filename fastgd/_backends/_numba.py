"""The Numba backend: the kernel contract compiled just in time (cached on disk).

One call trains one epoch. Inside: no Python, no allocation, the GIL released (``nogil``),
branches on the integer codes taken outside the per-coordinate loops. Compiled lazily per
dtype on first use and cached on disk (``cache=True``), so a second process pays only the
cache load.
"""

import os
import tempfile


def _ensure_cache_dir():
    # Numba's on-disk cache raises at decoration time when neither the package folder nor a
    # user cache folder is writable; give it a writable one rather than fail to import.
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.access(os.path.join(here, "__pycache__") if os.path.isdir(os.path.join(here, "__pycache__")) else here, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), "fastgd-numba-cache")
        try:
            from numba.core import config

            config.reload_config()
        except ImportError:  # pragma: no cover - numba always has it
            pass


_ensure_cache_dir()

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from fastgd import _contract as C  # noqa: E402

name = "numba"

_C_LOSS, _C_OPT, _C_NEST, _C_AMS = C.C_LOSS, C.C_OPTIMIZER, C.C_NESTEROV, C.C_AMSGRAD
_C_SCHED, _C_UNIT = C.C_SCHEDULE, C.C_SCHEDULE_UNIT
_LOSS_SQUARED, _LOSS_LOG, _LOSS_SOFTMAX = C.LOSS_SQUARED, C.LOSS_LOG, C.LOSS_SOFTMAX
_OPT_SGD, _OPT_ADAGRAD, _OPT_RMSPROP, _OPT_ADAM = C.OPT_SGD, C.OPT_ADAGRAD, C.OPT_RMSPROP, C.OPT_ADAM
_S_CONST, _S_STEP, _S_EXP = C.SCHED_CONSTANT, C.SCHED_STEP, C.SCHED_EXPONENTIAL
_S_POLY, _S_COS, _S_INV = C.SCHED_POLYNOMIAL, C.SCHED_COSINE, C.SCHED_INVSCALING
_UNIT_STEP = C.UNIT_STEP
_H_LR, _H_SCALE, _H_MOM, _H_B1, _H_B2 = C.H_LR, C.H_LR_SCALE, C.H_MOMENTUM, C.H_BETA1, C.H_BETA2
_H_EPS, _H_RHO, _H_WD, _H_L2, _H_L1, _H_CLIP = C.H_EPS, C.H_RHO, C.H_WEIGHT_DECAY, C.H_L2, C.H_L1, C.H_CLIP
_H_GAMMA, _H_STEP, _H_POWER, _H_TMAX = C.H_GAMMA, C.H_STEP_SIZE, C.H_POWER, C.H_T_MAX
_H_LRMIN, _H_WARM, _H_EPOCH = C.H_LR_MIN, C.H_WARMUP, C.H_EPOCH
_OK, _NONFINITE = C.STATUS_OK, C.STATUS_NONFINITE


@njit(cache=True, nogil=True)
def learning_rate(codes, hp, t):
    """The schedule of :mod:`fastgd.schedules` at step clock ``t`` / epoch ``hp[H_EPOCH]``."""
    c = float(t) if codes[_C_UNIT] == _UNIT_STEP else hp[_H_EPOCH]
    eta0 = hp[_H_LR]
    warm = hp[_H_WARM]
    if warm > 0 and c < warm:
        return hp[_H_SCALE] * eta0 * (c + 1.0) / warm
    c -= warm
    code = codes[_C_SCHED]
    if code == _S_CONST:
        lr = eta0
    elif code == _S_STEP:
        lr = eta0 * hp[_H_GAMMA] ** np.floor(c / hp[_H_STEP])
    elif code == _S_EXP:
        lr = eta0 * hp[_H_GAMMA] ** c
    elif code == _S_POLY:
        f = min(c, hp[_H_TMAX]) / hp[_H_TMAX]
        lr = (eta0 - hp[_H_LRMIN]) * (1.0 - f) ** hp[_H_POWER] + hp[_H_LRMIN]
    elif code == _S_COS:
        f = min(c, hp[_H_TMAX]) / hp[_H_TMAX]
        lr = hp[_H_LRMIN] + (eta0 - hp[_H_LRMIN]) * 0.5 * (1.0 + np.cos(np.pi * f))
    else:
        lr = eta0 / (c + 1.0) ** hp[_H_POWER]
    return hp[_H_SCALE] * lr


@njit(cache=True, nogil=True, inline="always")
def sample_loss(loss_code, z, y, i, dz, K):
    """Loss of one sample from its margins ``z``; writes d loss / d z into ``dz``."""
    if loss_code == _LOSS_SQUARED:
        total = 0.0
        for k in range(K):
            r = z[k] - y[i, k]
            total += r * r
            dz[k] = 2.0 * r
        return total
    if loss_code == _LOSS_LOG:
        m = z[0]
        yi = y[i, 0]
        if m >= 0:
            e = np.exp(-m)
            dz[0] = 1.0 / (1.0 + e) - yi
            return m + np.log1p(e) - yi * m
        e = np.exp(m)
        dz[0] = e / (1.0 + e) - yi
        return np.log1p(e) - yi * m
    # softmax cross-entropy
    label = int(y[i, 0])
    zmax = z[0]
    for k in range(1, K):
        if z[k] > zmax:
            zmax = z[k]
    s = 0.0
    for k in range(K):
        e = np.exp(z[k] - zmax)
        dz[k] = e
        s += e
    for k in range(K):
        dz[k] /= s
    dz[label] -= 1.0
    return zmax + np.log(s) - z[label]


@njit(cache=True, nogil=True)
def apply_step(coef, grad, state, t, codes, hp, inv_b, rows, n_rows):
    """One optimizer step from ``grad`` (a sum over the batch, scaled by ``inv_b``), with
    clipping, coupled L2, decoupled decay and the L1 proximal step.

    ``n_rows < 0`` updates every row; otherwise only ``rows[:n_rows]`` (the rows a sparse
    batch touched, the intercept row included), the other rows' gradient being zero.
    Returns the learning rate used."""
    p1, K = coef.shape
    p = p1 - 1
    n = p1 if n_rows < 0 else n_rows
    every = n_rows < 0
    lr = learning_rate(codes, hp, t[0])
    step = t[0] + 1
    cs = inv_b
    clip = hp[_H_CLIP]
    if clip > 0:
        sq = 0.0
        for q in range(n):
            r = q if every else rows[q]
            for k in range(K):
                g = grad[r, k] * inv_b
                sq += g * g
        c = clip / (np.sqrt(sq) + 1e-6)
        if c < 1.0:
            cs = inv_b * c
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    opt = codes[_C_OPT]
    if opt == _OPT_SGD:
        mu = hp[_H_MOM]
        nesterov = codes[_C_NEST] != 0
        for q in range(n):
            r = q if every else rows[q]
            wl2 = l2 if r < p else 0.0
            for k in range(K):
                w = coef[r, k]
                g = grad[r, k] * cs + wl2 * w
                if mu > 0:
                    v = mu * state[0, r, k] + g
                    state[0, r, k] = v
                    if nesterov:
                        g = g + mu * v
                    else:
                        g = v
                coef[r, k] = w - lr * g
    elif opt == _OPT_ADAGRAD:
        eps = hp[_H_EPS]
        for q in range(n):
            r = q if every else rows[q]
            wl2 = l2 if r < p else 0.0
            for k in range(K):
                w = coef[r, k]
                g = grad[r, k] * cs + wl2 * w
                s = state[0, r, k] + g * g
                state[0, r, k] = s
                coef[r, k] = w - lr * g / (np.sqrt(s) + eps)
    elif opt == _OPT_RMSPROP:
        eps = hp[_H_EPS]
        rho = hp[_H_RHO]
        for q in range(n):
            r = q if every else rows[q]
            wl2 = l2 if r < p else 0.0
            for k in range(K):
                w = coef[r, k]
                g = grad[r, k] * cs + wl2 * w
                a = rho * state[0, r, k] + (1.0 - rho) * g * g
                state[0, r, k] = a
                coef[r, k] = w - lr * g / (np.sqrt(a) + eps)
    else:
        b1 = hp[_H_B1]
        b2 = hp[_H_B2]
        eps = hp[_H_EPS]
        wd = hp[_H_WD]
        amsgrad = codes[_C_AMS] != 0
        step_size = lr / (1.0 - b1**step)
        bc2_sqrt = np.sqrt(1.0 - b2**step)
        for q in range(n):
            r = q if every else rows[q]
            wl2 = l2 if r < p else 0.0
            shrink = 1.0 - lr * wd if r < p else 1.0
            for k in range(K):
                w0 = coef[r, k]
                g = grad[r, k] * cs + wl2 * w0
                w = w0 * shrink
                m = b1 * state[0, r, k] + (1.0 - b1) * g
                v = b2 * state[1, r, k] + (1.0 - b2) * g * g
                state[0, r, k] = m
                state[1, r, k] = v
                if amsgrad:
                    if v > state[2, r, k]:
                        state[2, r, k] = v
                    v = state[2, r, k]
                coef[r, k] = w - step_size * m / (np.sqrt(v) / bc2_sqrt + eps)
    if l1 > 0:
        thresh = lr * l1
        for q in range(n):
            r = q if every else rows[q]
            if r == p:
                continue
            for k in range(K):
                w = coef[r, k]
                if w > thresh:
                    coef[r, k] = w - thresh
                elif w < -thresh:
                    coef[r, k] = w + thresh
                else:
                    coef[r, k] = 0.0
    t[0] = step
    return lr


@njit(cache=True, nogil=True)
def _all_finite(a):
    for v in a.flat:
        if not np.isfinite(v):
            return False
    return True


@njit(cache=True, nogil=True)
def _accumulate_dense(X, y, sw, i, coef, grad, loss_code, z, dz):
    """Add sample ``i``'s weighted gradient to ``grad``; return its weighted loss."""
    p1, K = coef.shape
    p = p1 - 1
    if K == 1:
        acc = coef[p, 0]
        for f in range(p):
            acc += X[i, f] * coef[f, 0]
        z[0] = acc
    else:
        for k in range(K):
            z[k] = coef[p, k]
        for f in range(p):
            xf = X[i, f]
            for k in range(K):
                z[k] += xf * coef[f, k]
    loss = sample_loss(loss_code, z, y, i, dz, K)
    s = sw[i]
    if K == 1:
        d = dz[0] * s
        for f in range(p):
            grad[f, 0] += X[i, f] * d
        grad[p, 0] += d
    else:
        for k in range(K):
            dz[k] *= s
        for f in range(p):
            xf = X[i, f]
            for k in range(K):
                grad[f, k] += xf * dz[k]
        for k in range(K):
            grad[p, k] += dz[k]
    return s * loss


@njit(cache=True, nogil=True)
def epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work):
    """One epoch on dense ``X`` (the contract of :mod:`fastgd._contract`)."""
    n_steps = order.shape[0]
    loss_code = codes[_C_LOSS]
    z = work[0]
    dz = work[1]
    loss_sum = 0.0
    for start in range(0, n_steps, batch_size):
        end = min(start + batch_size, n_steps)
        grad[:, :] = 0.0
        batch_loss = 0.0
        for j in range(start, end):
            batch_loss += _accumulate_dense(X, y, sw, order[j], coef, grad, loss_code, z, dz)
        loss_sum += batch_loss
        if not np.isfinite(batch_loss):
            return _NONFINITE, loss_sum
        apply_step(coef, grad, state, t, codes, hp, 1.0 / (end - start), order, -1)
    if not _all_finite(coef):
        return _NONFINITE, loss_sum
    return _OK, loss_sum


@njit(cache=True, nogil=True)
def full_gradient_dense(X, y, sw, coef, codes, grad, work):
    """Sum over all samples of ``sw_i * grad loss_i`` into ``grad`` divided by n; returns the
    weighted loss sum."""
    n = X.shape[0]
    grad[:, :] = 0.0
    loss_code = codes[_C_LOSS]
    z = work[0]
    dz = work[1]
    loss_sum = 0.0
    for i in range(n):
        loss_sum += _accumulate_dense(X, y, sw, i, coef, grad, loss_code, z, dz)
    inv = 1.0 / n
    for r in range(grad.shape[0]):
        for k in range(grad.shape[1]):
            grad[r, k] *= inv
    return loss_sum


_SPARSE_DENSE, _SPARSE_LAZY_EXACT, _SPARSE_LAZY_APPROX = C.SPARSE_DENSE, C.SPARSE_LAZY_EXACT, C.SPARSE_LAZY_APPROX
_COUNT_UPDATES, _COUNT_CATCHUPS = C.COUNT_UPDATES, C.COUNT_CATCHUPS
_C_LAZY = C.C_LAZY
_RESCALE_BELOW = 1e-100  # bring every coordinate up to date before the shrink map underflows


@njit(cache=True, nogil=True)
def sparse_mode(codes, hp):
    """:func:`fastgd._contract.sparse_mode`, compiled."""
    opt = codes[_C_OPT]
    if (opt == _OPT_SGD and hp[_H_MOM] == 0) or ((opt == _OPT_ADAGRAD or opt == _OPT_RMSPROP) and hp[_H_L2] == 0):
        return _SPARSE_LAZY_EXACT
    return _SPARSE_LAZY_APPROX if codes[_C_LAZY] != 0 else _SPARSE_DENSE


@njit(cache=True, nogil=True, inline="always")
def _catch_up(coef, state, c, A, B, T, lazy_work, rmsprop, rho):
    """Apply to coordinate ``c`` the deferred per-step maps since it was last up to date:
    ``|w| <- max((A / A_u) * |w| - (B - (A / A_u) * B_u), 0)``; RMSprop's accumulator decays by
    ``rho`` per missed step. Returns 1 if anything was applied."""
    u = lazy_work[0, c]
    if u == T:
        return 0
    ratio = A / lazy_work[1, c]
    shift = B - ratio * lazy_work[2, c]
    for k in range(coef.shape[1]):
        w = coef[c, k]
        aw = abs(w) * ratio - shift
        if aw > 0:
            coef[c, k] = aw if w > 0 else -aw
        else:
            coef[c, k] = 0.0
    if rmsprop:
        f = rho ** (T - u)
        for k in range(coef.shape[1]):
            state[0, c, k] *= f
    lazy_work[0, c] = T
    lazy_work[1, c] = A
    lazy_work[2, c] = B
    return 1


@njit(cache=True, nogil=True)
def _catch_up_all(coef, state, A, B, T, lazy_work, rmsprop, rho, counters):
    p = coef.shape[0] - 1
    for c in range(p):
        counters[_COUNT_CATCHUPS] += _catch_up(coef, state, c, A, B, T, lazy_work, rmsprop, rho)


@njit(cache=True, nogil=True)
def epoch_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp,
              batch_size, grad, work, lazy_work, index_work, counters):
    """One epoch on CSR parts (the contract of :mod:`fastgd._contract`): the same mathematics
    as the dense epoch, at O(nnz) per step where :func:`sparse_mode` allows it."""
    n_steps = order.shape[0]
    p1, K = coef.shape
    p = p1 - 1
    loss_code = codes[_C_LOSS]
    mode = sparse_mode(codes, hp)
    rmsprop = codes[_C_OPT] == _OPT_RMSPROP
    rho = hp[_H_RHO]
    sgd = codes[_C_OPT] == _OPT_SGD
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    z = work[0]
    dz = work[1]
    mark = index_work[0]
    rows = index_work[1]
    grad[:, :] = 0.0
    A = 1.0
    B = 0.0
    for c in range(p):
        lazy_work[0, c] = t[0]
        lazy_work[1, c] = 1.0
        lazy_work[2, c] = 0.0
        mark[c] = -1
    loss_sum = 0.0
    for start in range(0, n_steps, batch_size):
        end = min(start + batch_size, n_steps)
        stamp = t[0] + 1
        T = float(t[0])
        nt = 0
        for j in range(start, end):
            i = order[j]
            for ptr in range(indptr[i], indptr[i + 1]):
                c = indices[ptr]
                if mark[c] != stamp:
                    mark[c] = stamp
                    rows[nt] = c
                    nt += 1
                    if mode == _SPARSE_LAZY_EXACT:
                        counters[_COUNT_CATCHUPS] += _catch_up(coef, state, c, A, B, T, lazy_work, rmsprop, rho)
        batch_loss = 0.0
        for j in range(start, end):
            i = order[j]
            for k in range(K):
                z[k] = coef[p, k]
            for ptr in range(indptr[i], indptr[i + 1]):
                c = indices[ptr]
                x = data[ptr]
                for k in range(K):
                    z[k] += x * coef[c, k]
            loss = sample_loss(loss_code, z, y, i, dz, K)
            s = sw[i]
            batch_loss += s * loss
            for k in range(K):
                dz[k] *= s
            for ptr in range(indptr[i], indptr[i + 1]):
                c = indices[ptr]
                x = data[ptr]
                for k in range(K):
                    grad[c, k] += x * dz[k]
            for k in range(K):
                grad[p, k] += dz[k]
        loss_sum += batch_loss
        if not np.isfinite(batch_loss):
            return _NONFINITE, loss_sum
        rows[nt] = p
        inv_b = 1.0 / (end - start)
        if mode == _SPARSE_DENSE:
            apply_step(coef, grad, state, t, codes, hp, inv_b, rows, -1)
            counters[_COUNT_UPDATES] += p1
        else:
            lr = apply_step(coef, grad, state, t, codes, hp, inv_b, rows, nt + 1)
            counters[_COUNT_UPDATES] += nt + 1
            if mode == _SPARSE_LAZY_EXACT:
                a = 1.0 - lr * l2 if sgd else 1.0
                b = lr * l1
                if a <= 0.0:
                    # Pathological shrink (lr * l2 >= 1): apply this step's map directly.
                    _catch_up_all(coef, state, A, B, T, lazy_work, rmsprop, rho, counters)
                    for c in range(p):
                        if mark[c] != stamp:
                            for k in range(K):
                                w = coef[c, k] * a
                                coef[c, k] = np.sign(w) * max(abs(w) - b, 0.0)
                    A = 1.0
                    B = 0.0
                    for c in range(p):
                        lazy_work[0, c] = T + 1.0
                        lazy_work[1, c] = 1.0
                        lazy_work[2, c] = 0.0
                else:
                    A *= a
                    B = a * B + b
                    for q in range(nt):
                        c = rows[q]
                        lazy_work[0, c] = T + 1.0
                        lazy_work[1, c] = A
                        lazy_work[2, c] = B
                    if A < _RESCALE_BELOW:
                        _catch_up_all(coef, state, A, B, T + 1.0, lazy_work, rmsprop, rho, counters)
                        A = 1.0
                        B = 0.0
                        for c in range(p):
                            lazy_work[1, c] = 1.0
                            lazy_work[2, c] = 0.0
        for q in range(nt + 1):
            for k in range(K):
                grad[rows[q], k] = 0.0
    if mode == _SPARSE_LAZY_EXACT:
        _catch_up_all(coef, state, A, B, float(t[0]), lazy_work, rmsprop, rho, counters)
    if not _all_finite(coef):
        return _NONFINITE, loss_sum
    return _OK, loss_sum
