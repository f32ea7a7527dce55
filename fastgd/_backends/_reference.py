"""The NumPy reference backend: the executable specification of the kernel contract.

Slow and obvious on purpose: one vectorised NumPy expression per batch, the loss and the
optimizer taken from :mod:`fastgd.losses` and :mod:`fastgd.optim` (where the formulas are
documented), the learning rate from :func:`fastgd.schedules.decode_lr`. The compiled backends
must agree with it to rounding error. It accepts dense arrays and CSR matrices alike.
"""

import numpy as np
import scipy.sparse as sp

from fastgd import _contract as C
from fastgd import losses, optim
from fastgd.schedules import decode_lr

name = "numpy"


def clip_by_global_norm(grad, max_norm):
    """PyTorch's ``clip_grad_norm_``: scale by ``min(1, max_norm / (||g|| + 1e-6))``."""
    norm = np.sqrt(np.sum(np.square(grad, dtype=np.float64)))
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        grad *= grad.dtype.type(coef)


def apply_step(coef, grad, state, t, codes, hp, opt, rows=None):
    """One optimizer step of every parameter (or of ``rows`` only, the intercept row last)
    from the batch gradient ``grad`` (modified)."""
    p = coef.shape[0] - 1
    lr = decode_lr(codes, hp, t[0], hp[C.H_EPOCH])
    if hp[C.H_CLIP] > 0:
        clip_by_global_norm(grad, hp[C.H_CLIP])
    if rows is None:
        w, g, st, n_decay = coef, grad, state, p
    else:
        w, g, st, n_decay = coef[rows], grad[rows], state[:, rows], len(rows) - 1
    if hp[C.H_L2] > 0:
        g[:n_decay] += g.dtype.type(hp[C.H_L2]) * w[:n_decay]
    opt.update(w, g, st, coef.dtype.type(lr), t[0] + 1, n_decay)
    if hp[C.H_L1] > 0:
        v = w[:n_decay]
        v[...] = np.sign(v) * np.maximum(np.abs(v) - coef.dtype.type(lr * hp[C.H_L1]), 0)
    if rows is not None:
        coef[rows] = w
        state[:, rows] = st
    t[0] += 1


# Rows gathered per block: a large batch (a full batch of a memory-mapped X) is read block by
# block, so the reference never copies more than this many rows of X at once.
ROW_BLOCK = 8192


def batch_gradient(X, y, sw, idx, coef, loss_code, grad, loss_param=0.0):
    """Mean over the batch ``idx`` of ``sw_i * grad loss_i`` into ``grad``; returns
    ``sum_i sw_i * loss_i`` over the batch (float64). ``loss_param``: ``hp[H_LOSS_PARAM]``."""
    b = len(idx)
    total, grad[...] = 0.0, 0
    for start in range(0, b, ROW_BLOCK):
        block = idx[start:start + ROW_BLOCK]
        Xb = X[block]
        z = Xb @ coef[:-1] + coef[-1]
        value, dz = losses.evaluate(loss_code, np.asarray(z, dtype=coef.dtype), y[block], loss_param)
        swb = sw[block]
        dz = (dz * swb[:, None]).astype(coef.dtype, copy=False)
        grad[:-1] += np.asarray(Xb.T @ dz)
        grad[-1] += dz.sum(axis=0)
        total += float(np.dot(swb.astype(np.float64), value.astype(np.float64)))
    grad /= coef.dtype.type(b)
    return total


def epoch(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, touched_only=False):
    # Overflow on the way to divergence is reported as a status, like the compiled kernels do.
    with np.errstate(over="ignore", invalid="ignore"):
        return _epoch(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, touched_only)


def bad_code_status(codes):
    """The ``STATUS_BAD_*`` of the first code out of range, or ``STATUS_OK``."""
    if codes[C.C_LOSS] not in losses.BY_CODE:
        return C.STATUS_BAD_LOSS
    if not 0 <= codes[C.C_OPTIMIZER] < C.N_OPTIMIZERS:
        return C.STATUS_BAD_OPTIMIZER
    if not (0 <= codes[C.C_SCHEDULE] < C.N_SCHEDULES and 0 <= codes[C.C_SCHEDULE_UNIT] < C.N_UNITS):
        return C.STATUS_BAD_SCHEDULE
    return C.STATUS_OK


def _epoch(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, touched_only):
    status = bad_code_status(codes)
    if status != C.STATUS_OK:
        return status, 0.0
    opt = optim.decode(codes, hp)
    loss_sum = 0.0
    p = coef.shape[0] - 1
    for start in range(0, order.shape[0], batch_size):
        idx = order[start:start + batch_size]
        batch_loss = batch_gradient(X, y, sw, idx, coef, int(codes[C.C_LOSS]), grad, hp[C.H_LOSS_PARAM])
        loss_sum += batch_loss
        if not np.isfinite(batch_loss):
            return C.STATUS_NONFINITE, loss_sum
        rows = np.append(np.unique(X[idx].indices), p) if touched_only else None
        apply_step(coef, grad, state, t, codes, hp, opt, rows)
    if not np.all(np.isfinite(coef)):
        return C.STATUS_NONFINITE, loss_sum
    return C.STATUS_OK, loss_sum


def epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work):
    """One epoch on dense ``X`` (the contract of :mod:`fastgd._contract`)."""
    C.check_buffers(X.shape[0], X.shape[1], y, sw, coef, state, t, codes, hp, batch_size, grad, work)
    return epoch(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad)


def epoch_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp,
              batch_size, grad, work, lazy_work, index_work, counters):
    """One epoch on CSR parts: the dense mathematics, every coordinate every step; with the
    opt-in approximation (``SPARSE_LAZY_APPROX``) only the touched rows are stepped. (The
    lazy exact path of the compiled kernels equals the dense mathematics, so the reference
    needs no lazy bookkeeping; ``lazy_work`` and ``index_work`` are unused.)"""
    C.check_buffers(indptr.shape[0] - 1, n_features, y, sw, coef, state, t, codes, hp, batch_size, grad, work)
    C.check_csr_buffers(data, indices, indptr, n_features, lazy_work, index_work, counters,
                        C.csr_needs_lazy_buffers(codes, hp, batch_size, coef.shape[1]))
    X = sp.csr_matrix((data, indices, indptr), shape=(indptr.shape[0] - 1, n_features))
    approx = C.sparse_mode(codes, hp) == C.SPARSE_LAZY_APPROX
    status, loss_sum = epoch(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, approx)
    counters[C.COUNT_UPDATES] += coef.shape[0] * -(-order.shape[0] // batch_size)
    return status, loss_sum


def full_gradient(X, y, sw, coef, codes, grad, work=None, hp=None):
    """Gradient of the weighted mean loss over all samples into ``grad``; returns the
    weighted loss sum. (Penalty terms are the caller's; ``hp`` carries the loss parameter.)"""
    idx = np.arange(X.shape[0])
    param = 0.0 if hp is None else hp[C.H_LOSS_PARAM]
    return batch_gradient(X, y, sw, idx, coef, int(codes[C.C_LOSS]), grad, param)




def _saga_epoch(X, y, sw, order, coef, state, t, codes, hp, memory, n_mean):
    """SAGA steps, one sample at a time, in NumPy (the mathematics of the contract's SAGA
    epochs, written out; a CSR row is densified)."""
    if codes[C.C_LOSS] not in losses.BY_CODE:
        return C.STATUS_BAD_LOSS, 0.0
    if not (0 <= codes[C.C_SCHEDULE] < C.N_SCHEDULES and 0 <= codes[C.C_SCHEDULE_UNIT] < C.N_UNITS):
        return C.STATUS_BAD_SCHEDULE, 0.0
    loss_fn = losses.BY_CODE[int(codes[C.C_LOSS])]
    dt = coef.dtype.type
    mean = state[C.S_SAGA_MEAN]
    l2, l1 = hp[C.H_L2], hp[C.H_L1]
    loss_sum = 0.0
    for i in order:
        xi = X[i].toarray().ravel() if sp.issparse(X) else X[i]
        z = xi @ coef[:-1] + coef[-1]
        value, dz = loss_fn(z[None, :], y[i:i + 1])
        loss = float(sw[i]) * float(value[0])
        loss_sum += loss
        if not np.isfinite(loss):
            return C.STATUS_NONFINITE, loss_sum
        lr = dt(decode_lr(codes, hp, t[0], hp[C.H_EPOCH]))
        d = (sw[i] * dz[0]).astype(coef.dtype)
        delta = d - memory[i]
        memory[i] = d
        step = np.outer(xi, delta)  # the change of sample i's gradient, feature rows
        w = coef[:-1]
        w -= lr * (step + mean[:-1] + dt(l2) * w)
        if l1 > 0:
            w[...] = np.sign(w) * np.maximum(np.abs(w) - lr * dt(l1), 0)
        coef[-1] -= lr * (delta + mean[-1])
        mean[:-1] += step / dt(n_mean)
        mean[-1] += delta / dt(n_mean)
        t[0] += 1
    if not np.all(np.isfinite(coef)):
        return C.STATUS_NONFINITE, loss_sum
    return C.STATUS_OK, loss_sum


def epoch_saga_dense(X, y, sw, order, coef, state, t, codes, hp, work, memory, n_mean):
    """One epoch of SAGA steps on dense ``X`` (see :mod:`fastgd._contract`, SAGA epochs)."""
    C.check_buffers(X.shape[0], X.shape[1], y, sw, coef, state, t, codes, hp, 1, coef, work)
    C.check_saga_buffers(X.shape[0], codes, coef, state, memory, n_mean)
    with np.errstate(over="ignore", invalid="ignore"):
        return _saga_epoch(X, y, sw, order, coef, state, t, codes, hp, memory, n_mean)


def epoch_saga_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp, work, memory,
                   n_mean):
    """One epoch of SAGA steps on CSR parts (the dense mathematics)."""
    n_rows = indptr.shape[0] - 1
    C.check_buffers(n_rows, n_features, y, sw, coef, state, t, codes, hp, 1, coef, work)
    C.check_saga_buffers(n_rows, codes, coef, state, memory, n_mean)
    X = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_features))
    with np.errstate(over="ignore", invalid="ignore"):
        return _saga_epoch(X, y, sw, order, coef, state, t, codes, hp, memory, n_mean)


# (the Hogwild! kernel's ``losses`` argument shadows the module's name)
_LOSS_FUNCTIONS = losses.BY_CODE


def epoch_csr_hogwild(data, indices, indptr, n_features, y, sw, order, coef, t, codes, hp, col_scale, n_shares,
                      losses):
    """A Hogwild! epoch's mathematics (see :mod:`fastgd._contract`) with its shares run one
    after the other: the deterministic reading of what the threads of a compiled engine do
    at once (with one share, the two agree to rounding)."""
    n_rows = indptr.shape[0] - 1
    C.check_buffers(n_rows, n_features, y, sw, coef, np.zeros((0, 0, 0), coef.dtype), t, codes, hp, 1, coef,
                    np.zeros((C.WORK_ROWS, 1), coef.dtype))
    if not C.plain_sgd_per_sample(codes, hp, 1, coef.shape[1]):
        raise ValueError("Hogwild! epochs run per-sample plain SGD with one output and no clipping")
    status = bad_code_status(codes)
    if status != C.STATUS_OK:
        return status, 0.0
    loss_fn = _LOSS_FUNCTIONS[int(codes[C.C_LOSS])]
    dt = coef.dtype.type
    w, p = coef[:, 0], n_features
    n_steps = order.shape[0]
    l2, l1 = hp[C.H_L2], hp[C.H_L1]
    losses[:n_shares] = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for c in range(n_shares):
            share = order[c * n_steps // n_shares:(c + 1) * n_steps // n_shares]
            for s, i in enumerate(share):
                cols, x = indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]]
                z = np.dot(x, w[cols]) + w[p]
                value, dz = loss_fn(np.array([[z]], dtype=coef.dtype), y[i:i + 1])
                loss = float(sw[i]) * float(value[0])
                losses[c] += loss
                if not np.isfinite(loss):
                    return C.STATUS_NONFINITE, float(np.sum(losses[:n_shares]))
                lr = decode_lr(codes, hp, t[0] + c + s * n_shares, hp[C.H_EPOCH])
                cg = lr * float(dz[0, 0]) * float(sw[i])
                scale = col_scale[cols]
                new = w[cols] - (cg * x + lr * l2 * scale * w[cols])
                if l1 > 0:
                    thresh = lr * l1 * scale
                    new = np.sign(new) * np.maximum(np.abs(new) - thresh, 0)
                w[cols] = new
                w[p] -= dt(cg)
    if not np.all(np.isfinite(coef)):
        return C.STATUS_NONFINITE, float(np.sum(losses[:n_shares]))
    t[0] += n_steps
    return C.STATUS_OK, float(np.sum(losses[:n_shares]))
