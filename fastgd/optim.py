"""Optimizers: how one step turns a gradient into a parameter update.

Each optimizer is a small, immutable specification. Its update rule is written in its
docstring and, executable, in ``update`` (NumPy, used by the reference backend); the compiled
backends implement the same rule from the integer code and hyper-parameters the optimizer
writes into the kernel contract (:mod:`fastgd._contract`).

The rules follow PyTorch's ``torch.optim`` for the same hyper-parameters, so a
``torch.optim`` run on the same batches is reproduced exactly. Notation: ``g`` is the
mini-batch gradient (after clipping, plus the coupled L2 term ``l2 * w`` on the weights),
``eta`` the learning rate of this step (after the schedule), ``k = t + 1`` the 1-based index
of this step.

Strings name the defaults, for grid search: ``"sgd"``, ``"momentum"``, ``"nesterov"``,
``"adagrad"``, ``"rmsprop"``, ``"adam"``, ``"amsgrad"``, ``"adamw"``, ``"adamax"``, ``"nadam"``,
``"saga"``.

``eps`` must be positive: with ``eps = 0`` a parameter whose gradient has been 0 so far (the
weight of a constant feature, say) would divide 0 by 0.
"""

from dataclasses import dataclass
from numbers import Real

import numpy as np

from fastgd import _contract as C

__all__ = ["SGD", "AdaGrad", "RMSprop", "Adam", "AdamW", "Adamax", "NAdam", "SAGA", "Optimizer", "get_optimizer"]


def _check(name, value, low, high=None, low_open=False):
    ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and < {high}"
        raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")


def _check_eps(name, value):
    if isinstance(value, Real) and not isinstance(value, bool) and value == 0:
        raise ValueError(f"{name} must be > 0; got 0. With eps = 0 a parameter whose gradient has been 0 so "
                         "far (e.g. the weight of a constant feature) divides 0 by 0; use a small positive "
                         "eps such as 1e-8.")
    _check(name, value, 0.0, low_open=True)


class Optimizer:
    """Base class: what the estimators need from an optimizer specification."""

    code = None

    def n_slots(self):
        """Number of state arrays of the shape of the parameters."""
        return C.n_slots(self.code, getattr(self, "momentum", 0.0), getattr(self, "amsgrad", False))

    def init_state(self, shape, dtype):
        """Fresh optimizer state, shape ``(n_slots,) + shape``."""
        return np.zeros((self.n_slots(),) + tuple(shape), dtype=dtype)

    def encode(self, codes, hp):
        """Write this optimizer's code and hyper-parameters into the kernel arrays."""
        codes[C.C_OPTIMIZER] = self.code

    def update(self, w, g, state, lr, k, n_decay):
        """Apply one step in place (NumPy). ``n_decay`` leading rows are weights."""
        raise NotImplementedError


@dataclass(frozen=True)
class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    Without momentum: ``w <- w - eta * g``.

    With momentum ``mu`` (PyTorch's form, no dampening), velocity ``v`` starting at zero::

        v <- mu * v + g
        w <- w - eta * v               (classical momentum)
        w <- w - eta * (g + mu * v)    (nesterov=True)

    Parameters
    ----------
    momentum : float, default=0.0
        Momentum factor ``mu`` in ``[0, 1)``.
    nesterov : bool, default=False
        Use Nesterov's look-ahead form (requires ``momentum > 0``).
    """

    momentum: float = 0.0
    nesterov: bool = False
    code = C.OPT_SGD

    def __post_init__(self):
        _check("SGD momentum", self.momentum, 0.0, 1.0)
        if self.nesterov and self.momentum <= 0:
            raise ValueError("SGD(nesterov=True) requires momentum > 0, e.g. SGD(momentum=0.9, nesterov=True).")

    def encode(self, codes, hp):
        super().encode(codes, hp)
        codes[C.C_NESTEROV] = int(self.nesterov)
        hp[C.H_MOMENTUM] = self.momentum

    def update(self, w, g, state, lr, k, n_decay):
        if self.momentum > 0:
            v = state[C.S_VELOCITY]
            v *= self.momentum
            v += g
            w -= lr * (g + self.momentum * v) if self.nesterov else lr * v
        else:
            w -= lr * g


@dataclass(frozen=True)
class AdaGrad(Optimizer):
    r"""AdaGrad: per-parameter steps shrinking with the accumulated squared gradient::

        s <- s + g**2                  (s starts at initial_accumulator)
        w <- w - eta * g / (sqrt(s) + eps)

    Parameters
    ----------
    eps : float, default=1e-10
    initial_accumulator : float, default=0.0
    """

    eps: float = 1e-10
    initial_accumulator: float = 0.0
    code = C.OPT_ADAGRAD

    def __post_init__(self):
        _check_eps("AdaGrad eps", self.eps)
        _check("AdaGrad initial_accumulator", self.initial_accumulator, 0.0)

    def init_state(self, shape, dtype):
        return np.full((1,) + tuple(shape), self.initial_accumulator, dtype=dtype)

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_EPS] = self.eps

    def update(self, w, g, state, lr, k, n_decay):
        s = state[C.S_SUM]
        s += g * g
        w -= lr * g / (np.sqrt(s) + self.eps)


@dataclass(frozen=True)
class RMSprop(Optimizer):
    r"""RMSprop: steps scaled by a running root-mean-square of the gradient::

        a <- rho * a + (1 - rho) * g**2     (a starts at zero)
        w <- w - eta * g / (sqrt(a) + eps)

    Parameters
    ----------
    rho : float, default=0.99
        Decay of the running average (PyTorch calls it ``alpha``).
    eps : float, default=1e-8
    """

    rho: float = 0.99
    eps: float = 1e-8
    code = C.OPT_RMSPROP

    def __post_init__(self):
        _check("RMSprop rho", self.rho, 0.0, 1.0)
        _check_eps("RMSprop eps", self.eps)

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_RHO] = self.rho
        hp[C.H_EPS] = self.eps

    def update(self, w, g, state, lr, k, n_decay):
        a = state[C.S_SQUARE_AVG]
        a *= self.rho
        a += (1.0 - self.rho) * g * g
        w -= lr * g / (np.sqrt(a) + self.eps)


@dataclass(frozen=True)
class Adam(Optimizer):
    r"""Adam with bias correction, optionally AMSGrad::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g**2
        v_max <- max(v_max, v)                     (amsgrad only; use v_max for v below)
        w <- w - (eta / (1 - beta1**k)) * m / (sqrt(v) / sqrt(1 - beta2**k) + eps)

    Parameters
    ----------
    beta1 : float, default=0.9
    beta2 : float, default=0.999
    eps : float, default=1e-8
    amsgrad : bool, default=False
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    amsgrad: bool = False
    code = C.OPT_ADAM

    def __post_init__(self):
        _check("Adam beta1", self.beta1, 0.0, 1.0)
        _check("Adam beta2", self.beta2, 0.0, 1.0)
        _check_eps("Adam eps", self.eps)

    def _weight_decay(self):
        return 0.0

    def encode(self, codes, hp):
        super().encode(codes, hp)
        codes[C.C_AMSGRAD] = int(self.amsgrad)
        hp[C.H_BETA1] = self.beta1
        hp[C.H_BETA2] = self.beta2
        hp[C.H_EPS] = self.eps
        hp[C.H_WEIGHT_DECAY] = self._weight_decay()

    def update(self, w, g, state, lr, k, n_decay):
        wd = self._weight_decay()
        if wd > 0:
            w[:n_decay] *= 1.0 - lr * wd
        m, v = state[C.S_EXP_AVG], state[C.S_EXP_AVG_SQ]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * g * g
        if self.amsgrad:
            vmax = state[C.S_MAX_EXP_AVG_SQ]
            np.maximum(vmax, v, out=vmax)
            v = vmax
        bc1 = 1.0 - self.beta1**k
        bc2 = 1.0 - self.beta2**k
        w -= (lr / bc1) * m / (np.sqrt(v) / np.sqrt(bc2) + self.eps)


@dataclass(frozen=True)
class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter; PyTorch's ``AdamW``).

    Before the Adam step, the weights (never the intercept) shrink: ``w <- w * (1 - eta * wd)``.
    This is independent of ``penalty``/``alpha``, which add a coupled term to the gradient.

    Parameters
    ----------
    beta1, beta2, eps, amsgrad : as :class:`Adam`
    weight_decay : float, default=0.01
    """

    weight_decay: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        _check("AdamW weight_decay", self.weight_decay, 0.0)

    def _weight_decay(self):
        return self.weight_decay


@dataclass(frozen=True)
class Adamax(Optimizer):
    r"""Adamax (Kingma & Ba; PyTorch's ``Adamax``): Adam with the second moment replaced by an
    exponentially weighted infinity norm::

        m <- beta1 * m + (1 - beta1) * g
        u <- max(beta2 * u, |g| + eps)
        w <- w - (eta / (1 - beta1**k)) * m / u

    Parameters
    ----------
    beta1 : float, default=0.9
    beta2 : float, default=0.999
    eps : float, default=1e-8
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    code = C.OPT_ADAMAX

    def __post_init__(self):
        _check("Adamax beta1", self.beta1, 0.0, 1.0)
        _check("Adamax beta2", self.beta2, 0.0, 1.0)
        _check_eps("Adamax eps", self.eps)

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_BETA1] = self.beta1
        hp[C.H_BETA2] = self.beta2
        hp[C.H_EPS] = self.eps

    def update(self, w, g, state, lr, k, n_decay):
        m, u = state[C.S_EXP_AVG], state[C.S_EXP_INF]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        np.maximum(self.beta2 * u, np.abs(g) + self.eps, out=u)
        w -= (lr / (1.0 - self.beta1**k)) * m / u


@dataclass(frozen=True)
class NAdam(Optimizer):
    r"""NAdam: Adam with Nesterov momentum (Dozat; PyTorch's ``NAdam``). The momentum
    coefficient of step ``k`` is ``mu_k = beta1 * (1 - 0.5 * 0.96 ** (k * momentum_decay))``
    and ``P_k = mu_1 * ... * mu_k``::

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g**2
        d = sqrt(v / (1 - beta2**k)) + eps
        w <- w - eta * (1 - mu_k) / (1 - P_k) * g / d
        w <- w - eta * mu_{k+1} / (1 - P_k * mu_{k+1}) * m / d

    Parameters
    ----------
    beta1 : float, default=0.9
    beta2 : float, default=0.999
    eps : float, default=1e-8
    momentum_decay : float, default=0.004
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum_decay: float = 0.004
    code = C.OPT_NADAM

    def __post_init__(self):
        _check("NAdam beta1", self.beta1, 0.0, 1.0)
        _check("NAdam beta2", self.beta2, 0.0, 1.0)
        _check_eps("NAdam eps", self.eps)
        _check("NAdam momentum_decay", self.momentum_decay, 0.0)

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_BETA1] = self.beta1
        hp[C.H_BETA2] = self.beta2
        hp[C.H_EPS] = self.eps
        hp[C.H_MOMENTUM_DECAY] = self.momentum_decay

    def _mu(self, k):
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (k * self.momentum_decay))

    def _mu_product(self, k):
        """``P_k``, multiplied in step order (as torch keeps it), memoised."""
        products = _NADAM_PRODUCTS.setdefault((self.beta1, self.momentum_decay), [1.0])
        while len(products) <= k and products[-1] != 0.0:
            products.append(products[-1] * self._mu(len(products)))
        return products[k] if k < len(products) else 0.0  # (after it underflowed to 0)

    def update(self, w, g, state, lr, k, n_decay):
        m, v = state[C.S_EXP_AVG], state[C.S_EXP_AVG_SQ]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * g * g
        d = np.sqrt(v / (1.0 - self.beta2**k)) + self.eps
        mu, mu_next, prod = self._mu(k), self._mu(k + 1), self._mu_product(k)
        w -= (lr * (1.0 - mu) / (1.0 - prod)) * g / d
        w -= (lr * mu_next / (1.0 - prod * mu_next)) * m / d


@dataclass(frozen=True)
class SAGA(Optimizer):
    r"""SAGA (Defazio, Bach and Lacoste-Julien, 2014): per-sample steps with a variance-reduced
    gradient, converging linearly to the optimum at a constant step on strongly convex
    objectives (L2-regularised logistic and least squares), where plain SGD needs a decaying
    step and stalls at a noise floor.

    The model is linear, so sample ``i``'s gradient is ``d_i [x_i, 1]`` with one scalar
    ``d_i = s_i * dloss/dz`` per output: SAGA stores the last ``d_i`` of every sample
    (``n_samples * n_outputs`` numbers) and the mean ``m`` of the stored gradients. A step on
    sample ``i`` (shuffled order, each sample once per epoch)::

        delta = d_i(w) - d_i(stored)
        w <- prox_{eta l1}(w - eta * (delta * x_i + m + l2 * w))     (intercept: no penalty)
        m <- m + delta * x_i / n;   d_i(stored) <- d_i(w)

    The stored gradients start at zero. Steps are per sample (``batch_size`` 1 or
    ``"auto"``); every parameter moves every step (``m`` is dense), also on sparse input.
    ``learning_rate="auto"`` is ``1 / (3 L_max)`` with ``L_max`` the largest per-sample
    smoothness constant (the step of the SAGA paper); a constant schedule is the natural one.
    SAGA needs the same samples at every epoch: use ``fit`` (``partial_fit`` is refused).
    """

    code = C.OPT_SAGA

    def update(self, w, g, state, lr, k, n_decay):
        raise TypeError("SAGA is not a per-batch update rule: its epochs run in the SAGA kernels, which "
                        "keep one stored gradient per sample.")


# NAdam's momentum products by (beta1, momentum_decay): P_0 = 1, P_1, ... (the reference's cache)
_NADAM_PRODUCTS = {}


_BY_NAME = {
    "sgd": SGD(),
    "momentum": SGD(momentum=0.9),
    "nesterov": SGD(momentum=0.9, nesterov=True),
    "adagrad": AdaGrad(),
    "rmsprop": RMSprop(),
    "adam": Adam(),
    "amsgrad": Adam(amsgrad=True),
    "adamw": AdamW(),
    "adamax": Adamax(),
    "nadam": NAdam(),
}
# The per-batch update rules (every kernel takes them; torch.optim has each) ...
OPTIMIZER_NAMES = tuple(_BY_NAME)
# ... and the variance-reduced methods, which keep per-sample memory and run their own kernels.
_VARIANCE_REDUCED = {"saga": SAGA()}
VARIANCE_REDUCED_NAMES = tuple(_VARIANCE_REDUCED)


def get_optimizer(optimizer):
    """Resolve a name or an :class:`Optimizer` instance to an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer in _BY_NAME:
        return _BY_NAME[optimizer]
    if isinstance(optimizer, str) and optimizer in _VARIANCE_REDUCED:
        return _VARIANCE_REDUCED[optimizer]
    raise ValueError(
        f"optimizer must be one of {sorted(_BY_NAME) + list(_VARIANCE_REDUCED)} or an instance of fastgd.optim "
        f"(SGD, AdaGrad, RMSprop, Adam, AdamW, Adamax, NAdam, SAGA); got {optimizer!r}."
    )


def decode(codes, hp):
    """Rebuild the optimizer a pair of kernel arrays describes (used by the reference)."""
    code = int(codes[C.C_OPTIMIZER])
    if code == C.OPT_SGD:
        return SGD(momentum=float(hp[C.H_MOMENTUM]), nesterov=bool(codes[C.C_NESTEROV]))
    if code == C.OPT_ADAGRAD:
        return AdaGrad(eps=float(hp[C.H_EPS]))
    if code == C.OPT_RMSPROP:
        return RMSprop(rho=float(hp[C.H_RHO]), eps=float(hp[C.H_EPS]))
    if code == C.OPT_ADAM:
        kw = dict(beta1=float(hp[C.H_BETA1]), beta2=float(hp[C.H_BETA2]), eps=float(hp[C.H_EPS]),
                  amsgrad=bool(codes[C.C_AMSGRAD]))
        wd = float(hp[C.H_WEIGHT_DECAY])
        return AdamW(weight_decay=wd, **kw) if wd > 0 else Adam(**kw)
    if code == C.OPT_ADAMAX:
        return Adamax(beta1=float(hp[C.H_BETA1]), beta2=float(hp[C.H_BETA2]), eps=float(hp[C.H_EPS]))
    if code == C.OPT_NADAM:
        return NAdam(beta1=float(hp[C.H_BETA1]), beta2=float(hp[C.H_BETA2]), eps=float(hp[C.H_EPS]),
                     momentum_decay=float(hp[C.H_MOMENTUM_DECAY]))
    if code == C.OPT_SAGA:
        return SAGA()
    raise ValueError(f"unknown optimizer code {code}")
