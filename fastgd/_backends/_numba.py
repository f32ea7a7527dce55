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
def apply_step(coef, grad, state, t, codes, hp, inv_b):
    """One optimizer step of every parameter from ``grad`` (a sum over the batch, scaled by
    ``inv_b``), with clipping, coupled L2, decoupled decay and the L1 proximal step."""
    p1, K = coef.shape
    p = p1 - 1
    lr = learning_rate(codes, hp, t[0])
    step = t[0] + 1
    cs = inv_b
    clip = hp[_H_CLIP]
    if clip > 0:
        sq = 0.0
        for r in range(p1):
            for k in range(K):
                g = grad[r, k] * inv_b
                sq += g * g
        c = clip / (np.sqrt(sq) + 1e-6)
        if c < 1.0:
            cs = inv_b * c
    l2 = hp[_H_L2]
    l1 = hp[_H_L1]
    thresh = lr * l1
    opt = codes[_C_OPT]
    if opt == _OPT_SGD:
        mu = hp[_H_MOM]
        nesterov = codes[_C_NEST] != 0
        for r in range(p1):
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
        for r in range(p1):
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
        for r in range(p1):
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
        for r in range(p1):
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
        for r in range(p):
            for k in range(K):
                w = coef[r, k]
                if w > thresh:
                    coef[r, k] = w - thresh
                elif w < -thresh:
                    coef[r, k] = w + thresh
                else:
                    coef[r, k] = 0.0
    t[0] = step


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
        apply_step(coef, grad, state, t, codes, hp, 1.0 / (end - start))
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
