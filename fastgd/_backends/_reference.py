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


def apply_step(coef, grad, state, t, codes, hp, opt):
    """One optimizer step of every parameter from the batch gradient ``grad`` (modified)."""
    p = coef.shape[0] - 1
    lr = decode_lr(codes, hp, t[0], hp[C.H_EPOCH])
    if hp[C.H_CLIP] > 0:
        clip_by_global_norm(grad, hp[C.H_CLIP])
    if hp[C.H_L2] > 0:
        grad[:p] += grad.dtype.type(hp[C.H_L2]) * coef[:p]
    opt.update(coef, grad, state, coef.dtype.type(lr), t[0] + 1, p)
    if hp[C.H_L1] > 0:
        w = coef[:p]
        w[...] = np.sign(w) * np.maximum(np.abs(w) - coef.dtype.type(lr * hp[C.H_L1]), 0)
    t[0] += 1


def batch_gradient(X, y, sw, idx, coef, loss_code, grad):
    """Mean over the batch ``idx`` of ``sw_i * grad loss_i`` into ``grad``; returns
    ``sum_i sw_i * loss_i`` over the batch (float64)."""
    Xb = X[idx]
    z = Xb @ coef[:-1] + coef[-1]
    value, dz = losses.BY_CODE[loss_code](np.asarray(z, dtype=coef.dtype), y[idx])
    swb = sw[idx]
    dz = (dz * swb[:, None]).astype(coef.dtype, copy=False)
    b = len(idx)
    grad[:-1] = np.asarray(Xb.T @ dz) / coef.dtype.type(b)
    grad[-1] = dz.sum(axis=0) / coef.dtype.type(b)
    return float(np.dot(swb.astype(np.float64), value.astype(np.float64)))


def epoch(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work):
    opt = optim.decode(codes, hp)
    loss_sum = 0.0
    for start in range(0, order.shape[0], batch_size):
        idx = order[start:start + batch_size]
        batch_loss = batch_gradient(X, y, sw, idx, coef, int(codes[C.C_LOSS]), grad)
        loss_sum += batch_loss
        if not np.isfinite(batch_loss):
            return C.STATUS_NONFINITE, loss_sum
        apply_step(coef, grad, state, t, codes, hp, opt)
    if not np.all(np.isfinite(coef)):
        return C.STATUS_NONFINITE, loss_sum
    return C.STATUS_OK, loss_sum


def epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work):
    """One epoch on dense ``X`` (the contract of :mod:`fastgd._contract`)."""
    return epoch(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work)


def epoch_csr(data, indices, indptr, n_features, y, sw, order, coef, state, t, codes, hp,
              batch_size, grad, work):
    """One epoch on CSR parts: the same mathematics as the dense epoch."""
    X = sp.csr_matrix((data, indices, indptr), shape=(indptr.shape[0] - 1, n_features))
    return epoch(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work)


def full_gradient(X, y, sw, coef, codes, grad, work=None):
    """Gradient of the weighted mean loss over all samples into ``grad``; returns the
    weighted loss sum. (Penalty terms are the caller's.)"""
    idx = np.arange(X.shape[0])
    return batch_gradient(X, y, sw, idx, coef, int(codes[C.C_LOSS]), grad)


