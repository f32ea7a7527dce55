"""NumPy reference of the scikit-learn-semantics SGD epoch: the executable specification.

Slow and obvious on purpose: one sample at a time, every weight a plain vector updated in full
at every step (for CSR input too), the losses and step rules written out again here rather
than imported from :mod:`fastgd._backends._sgd_rules`, so that the compiled engines are
checked against an independent implementation.

One step on sample ``i`` with features ``x``, target ``y``, weight ``s`` (scikit-learn's
``_plain_sgd`` order):

1. ``p = x.w + b``; ``eta`` from the learning-rate rule at step ``t``;
2. the loss of the sample (and the penalty of the current ``w``) enter the epoch's sums;
3. ``update = -eta * dloss/dp`` (passive-aggressive: the PA step towards the target),
   times the class weight and ``s``;
4. L2 / elastic net: ``w *= max(0, 1 - (1 - l1_ratio) eta alpha)``;
5. ``w += update x`` on the coordinates ``x`` stores (dense: all); ``b += update * decay``
   (decay 0.01 for sparse input);
6. averaging (from step ``average`` on): the running mean of ``w`` and ``b``;
7. L1 / elastic net: cumulative truncation of the coordinates ``x`` stores;
8. ``t += 1``.
"""

import numpy as np

from fastgd._backends import _sgd_rules as R

name = "numpy"


def _loss(code, y, p, par):
    if code == R.LOSS_HINGE:
        return max(par - p * y, 0.0) if p * y <= par else 0.0
    if code == R.LOSS_SQUARED_HINGE:
        return max(par - p * y, 0.0) ** 2
    if code == R.LOSS_LOG:
        return float(np.logaddexp(0.0, p) - y * p)
    if code == R.LOSS_MODIFIED_HUBER:
        z = p * y
        return 0.0 if z >= 1 else ((1 - z) ** 2 if z >= -1 else -4 * z)
    if code == R.LOSS_SQUARED:
        return 0.5 * (p - y) ** 2
    if code == R.LOSS_HUBER:
        r = abs(y - p)
        return 0.5 * r * r if r <= par else par * (r - 0.5 * par)
    r = max(abs(y - p) - par, 0.0)
    return r if code == R.LOSS_EPSILON_INSENSITIVE else r * r


def _dloss(code, y, p, par):
    if code == R.LOSS_HINGE:
        d = -y if p * y <= par else 0.0
    elif code == R.LOSS_SQUARED_HINGE:
        d = -2.0 * y * max(par - p * y, 0.0)
    elif code == R.LOSS_LOG:
        d = float(0.5 * (1.0 + np.tanh(0.5 * p))) - y if p > -37 else float(np.exp(p)) - y
    elif code == R.LOSS_MODIFIED_HUBER:
        z = p * y
        d = 0.0 if z >= 1 else (-2.0 * (1 - z) * y if z >= -1 else -4.0 * y)
    elif code == R.LOSS_SQUARED:
        d = p - y
    elif code == R.LOSS_HUBER:
        d = float(np.clip(p - y, -par, par))
    elif code == R.LOSS_EPSILON_INSENSITIVE:
        d = float(np.sign(p - y)) if abs(p - y) > par else 0.0
    else:
        d = float(np.sign(p - y)) * 2.0 * max(abs(p - y) - par, 0.0)
    return float(np.clip(d, -1e12, 1e12))


def _epoch(rows, y, sw, order, w, aw, q, scalars, codes, hp):
    # a diverging fit is reported by the status, as the compiled engines report it
    with np.errstate(over="ignore", invalid="ignore"):
        return _epoch_steps(rows, y, sw, order, w, aw, q, scalars, codes, hp)


def _epoch_steps(rows, y, sw, order, w, aw, q, scalars, codes, hp):
    loss_code, penalty, lr = int(codes[R.C_LOSS]), int(codes[R.C_PENALTY]), int(codes[R.C_LEARNING_RATE])
    average, sum_loss = int(codes[R.C_AVERAGE]), bool(codes[R.C_SUM_LOSS])
    alpha, l1_ratio, eta0, power_t = hp[R.H_ALPHA], hp[R.H_L1_RATIO], hp[R.H_ETA0], hp[R.H_POWER_T]
    par, decay = hp[R.H_LOSS_PARAM], hp[R.H_INTERCEPT_DECAY]
    s = scalars
    b, t, eta = s[R.S_INTERCEPT], s[R.S_T], s[R.S_ETA]
    sumloss = objective = 0.0
    for i in order:
        idx, x = rows(i)
        # summed term by term (not a BLAS dot): on overflow, +inf and -inf terms give NaN as in
        # the compiled engines, where a BLAS kernel may return an infinity
        p = float(np.sum(x * w[idx])) + b
        if lr == R.LR_OPTIMAL:
            eta = 1.0 / (alpha * (hp[R.H_OPTIMAL_INIT] + t - 1.0))
        elif lr == R.LR_INVSCALING:
            eta = eta0 / t**power_t
        yi = float(y[i])
        if sum_loss:
            value = _loss(loss_code, yi, p, par)
            sumloss += value
            objective += value
            if lr < R.LR_PA1 and penalty != R.PENALTY_NONE:
                objective += alpha * ((1 - l1_ratio) * 0.5 * s[R.S_SQ_NORM] + l1_ratio * s[R.S_L1_NORM])
        class_weight = hp[R.H_WEIGHT_POS] if yi > 0 else hp[R.H_WEIGHT_NEG]
        if lr >= R.LR_PA1:
            x_sq = float(np.sum(x * x))
            if lr == R.LR_PA1 and x_sq == 0:
                continue
            value = _loss(loss_code, yi, p, par)
            update = min(eta0, value / x_sq) if lr == R.LR_PA1 else value / (x_sq + 0.5 / eta0)
            if loss_code == R.LOSS_HINGE:
                update *= yi
            elif yi - p < 0:
                update = -update
        else:
            update = -eta * _dloss(loss_code, yi, p, par)
        update *= class_weight * sw[i]
        if penalty in (R.PENALTY_L2, R.PENALTY_ELASTICNET):
            c = max(0.0, 1.0 - (1.0 - l1_ratio) * eta * alpha)
            w *= c
            s[R.S_WSCALE] *= c
            s[R.S_SQ_NORM] *= c * c
            s[R.S_L1_NORM] *= c
            if s[R.S_WSCALE] < hp[R.H_RESCALE_BELOW]:
                s[R.S_WSCALE] = 1.0
                if average > 0:
                    s[R.S_AVERAGE_A], s[R.S_AVERAGE_B] = 0.0, 1.0
        if update != 0.0:
            w[idx] += update * x
            s[R.S_SQ_NORM] = float(w[idx] @ w[idx])
            s[R.S_L1_NORM] = float(np.abs(w[idx]).sum())
            if codes[R.C_FIT_INTERCEPT]:
                b += update * decay
        if 0 < average <= t:
            k = t - average + 1
            # the first averaged step of a call adds w to the stored average (see _sgd_rules)
            if k == 1:
                aw += w
            else:
                aw += (w - aw) / k
            s[R.S_AVERAGE_INTERCEPT] += (b - s[R.S_AVERAGE_INTERCEPT]) / k
            if k > 1:
                s[R.S_AVERAGE_B] /= 1.0 - 1.0 / k
            s[R.S_AVERAGE_A] += s[R.S_AVERAGE_B] * s[R.S_WSCALE] / k
        if penalty in (R.PENALTY_L1, R.PENALTY_ELASTICNET):
            s[R.S_U] += l1_ratio * eta * alpha
            u = s[R.S_U]
            old = w[idx].copy()
            new = np.where(old > 0, np.maximum(0.0, old - (u + q[idx])),
                           np.where(old < 0, np.minimum(0.0, old + (u - q[idx])), old))
            w[idx] = new
            q[idx] += new - old
            if average > 0:
                # scikit-learn's lazy average sees the truncation at this weight (see _sgd_rules)
                aw[idx] += s[R.S_AVERAGE_A] / (s[R.S_AVERAGE_B] * s[R.S_WSCALE]) * (new - old)
        t += 1.0
    s[R.S_INTERCEPT], s[R.S_T], s[R.S_ETA] = b, t, eta
    finite = np.isfinite(b) and np.all(np.isfinite(w))
    return (R.STATUS_OK if finite else R.STATUS_NONFINITE), sumloss, objective


def sgd_epoch_dense(X, y, sw, order, w, aw, q, scalars, codes, hp):
    """One epoch over the rows ``order`` of dense ``X``; updates ``w``, ``aw`` (None when not
    averaging), ``q`` and ``scalars`` in place. Returns ``(status, loss_sum, objective_sum)``."""
    every = np.arange(X.shape[1])
    return _epoch(lambda i: (every, X[i].astype(np.float64)), y, sw, order, w, aw, q, scalars, codes, hp)


def sgd_epoch_csr(data, indices, indptr, y, sw, order, w, aw, q, scalars, codes, hp):
    """As :func:`sgd_epoch_dense` for CSR input (only the stored coordinates of a row are
    updated by the gradient and the L1 truncation)."""

    def rows(i):
        lo, hi = indptr[i], indptr[i + 1]
        return indices[lo:hi], data[lo:hi].astype(np.float64)

    return _epoch(rows, y, sw, order, w, aw, q, scalars, codes, hp)
