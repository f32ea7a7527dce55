"""Learning-rate schedules: the step size ``eta`` as a function of a clock.

The clock ``c`` counts from 0 and is either the number of optimizer steps taken before the
current step (``unit="step"``) or the index of the current epoch (``unit="epoch"``: the rate
is then constant within an epoch). Every schedule is a documented formula of ``eta0`` (the
estimator's ``learning_rate``) and ``c``, evaluable in Python with :meth:`Schedule.lr` (for
plots and tests) and compiled into the kernels from the codes it writes into the kernel
contract.

Strings name the defaults, for grid search: ``"constant"``, ``"step"``, ``"exponential"``,
``"polynomial"``, ``"cosine"``, ``"invscaling"``, ``"cosine_restarts"``, ``"one_cycle"``,
``"plateau"``.

Linear warm-up goes in front of any schedule with :class:`Warmup`.
"""

import math
from dataclasses import dataclass, field, replace
from numbers import Integral, Real

import numpy as np

from fastgd import _contract as C

__all__ = [
    "Schedule", "Constant", "StepDecay", "ExponentialDecay", "PolynomialDecay",
    "CosineAnnealing", "InverseScaling", "CosineWarmRestarts", "OneCycle", "Warmup", "ReduceLROnPlateau",
    "get_schedule",
]

_UNITS = {"step": C.UNIT_STEP, "epoch": C.UNIT_EPOCH}


def _check_positive(name, value, allow_zero=False, integer=False):
    kind = Integral if integer else Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        sign = ">= 0" if allow_zero else "> 0"
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} {sign}; got {value!r}.")


class Schedule:
    """Base class. ``lr(eta0, c)`` is the learning rate at clock ``c``."""

    code = C.SCHED_CONSTANT
    unit = "step"

    def __post_init__(self):
        if self.unit not in _UNITS:
            raise ValueError(f"{type(self).__name__} unit must be 'step' or 'epoch'; got {self.unit!r}.")

    def needs_horizon(self):
        """True when the schedule's horizon ``T_max`` is still to be set from ``max_iter``."""
        return False

    def with_horizon(self, total):
        """This schedule with an unset horizon resolved to ``total`` clock ticks."""
        return self

    def _base(self, eta0, c):
        return eta0

    def lr(self, eta0, c):
        """Learning rate at clock ``c`` (a number or an array of clocks)."""
        c = np.asarray(c, dtype=np.float64)
        return self._base(eta0, c) * np.ones_like(c)

    def encode(self, codes, hp):
        codes[C.C_SCHEDULE] = self.code
        codes[C.C_SCHEDULE_UNIT] = _UNITS[self.unit]


@dataclass(frozen=True)
class Constant(Schedule):
    """``eta = eta0``."""

    unit: str = "step"


@dataclass(frozen=True)
class StepDecay(Schedule):
    """Step decay: ``eta = eta0 * gamma ** floor(c / step_size)``.

    Parameters
    ----------
    step_size : int, default=10
        Clock ticks between two drops.
    gamma : float, default=0.5
    unit : {"epoch", "step"}, default="epoch"
    """

    step_size: int = 10
    gamma: float = 0.5
    unit: str = "epoch"
    code = C.SCHED_STEP

    def __post_init__(self):
        super().__post_init__()
        _check_positive("StepDecay step_size", self.step_size, integer=True)
        _check_positive("StepDecay gamma", self.gamma)

    def _base(self, eta0, c):
        return eta0 * self.gamma ** np.floor(c / self.step_size)

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_STEP_SIZE] = self.step_size
        hp[C.H_GAMMA] = self.gamma


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """Exponential decay: ``eta = eta0 * gamma ** c`` (``gamma = exp(-lambda)`` gives
    the notes' ``eta0 * exp(-lambda * c)``).

    Parameters
    ----------
    gamma : float, default=0.95
    unit : {"epoch", "step"}, default="epoch"
    """

    gamma: float = 0.95
    unit: str = "epoch"
    code = C.SCHED_EXPONENTIAL

    def __post_init__(self):
        super().__post_init__()
        _check_positive("ExponentialDecay gamma", self.gamma)

    def _base(self, eta0, c):
        return eta0 * self.gamma**c

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_GAMMA] = self.gamma


class _Horizon:
    """Mixin for schedules that run over a horizon ``T_max`` (None: the whole fit)."""

    def needs_horizon(self):
        return self.T_max is None

    def with_horizon(self, total):
        return replace(self, T_max=max(int(total), 1)) if self.T_max is None else self

    def _check_horizon(self):
        if self.T_max is not None:
            _check_positive(f"{type(self).__name__} T_max", self.T_max, integer=True)
        _check_positive(f"{type(self).__name__} lr_min", self.lr_min, allow_zero=True)

    def _fraction(self, c):
        T = self.T_max if self.T_max is not None else np.inf
        return np.minimum(c, T) / T

    def encode(self, codes, hp):
        Schedule.encode(self, codes, hp)
        if self.T_max is None:
            raise RuntimeError("the schedule horizon must be resolved before encoding")
        hp[C.H_T_MAX] = self.T_max
        hp[C.H_LR_MIN] = self.lr_min


@dataclass(frozen=True)
class PolynomialDecay(_Horizon, Schedule):
    """Polynomial decay to ``lr_min`` over ``T_max`` ticks, then constant::

        eta = (eta0 - lr_min) * (1 - min(c, T_max) / T_max) ** power + lr_min

    Parameters
    ----------
    power : float, default=1.0
    T_max : int or None, default=None
        Horizon; None means the whole fit (``max_iter`` epochs, in the schedule's unit).
    lr_min : float, default=0.0
    unit : {"step", "epoch"}, default="step"
    """

    power: float = 1.0
    T_max: int = None
    lr_min: float = 0.0
    unit: str = "step"
    code = C.SCHED_POLYNOMIAL

    def __post_init__(self):
        super().__post_init__()
        _check_positive("PolynomialDecay power", self.power)
        self._check_horizon()

    def _base(self, eta0, c):
        return (eta0 - self.lr_min) * (1.0 - self._fraction(c)) ** self.power + self.lr_min

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_POWER] = self.power


@dataclass(frozen=True)
class CosineAnnealing(_Horizon, Schedule):
    """Cosine annealing from ``eta0`` to ``lr_min`` over ``T_max`` ticks, then constant::

        eta = lr_min + (eta0 - lr_min) * (1 + cos(pi * min(c, T_max) / T_max)) / 2

    Parameters
    ----------
    T_max : int or None, default=None
        Horizon; None means the whole fit (``max_iter`` epochs, in the schedule's unit).
    lr_min : float, default=0.0
    unit : {"step", "epoch"}, default="step"
    """

    T_max: int = None
    lr_min: float = 0.0
    unit: str = "step"
    code = C.SCHED_COSINE

    def __post_init__(self):
        super().__post_init__()
        self._check_horizon()

    def _base(self, eta0, c):
        return self.lr_min + (eta0 - self.lr_min) * 0.5 * (1.0 + np.cos(np.pi * self._fraction(c)))


@dataclass(frozen=True)
class InverseScaling(Schedule):
    """Inverse scaling (scikit-learn's ``"invscaling"``): ``eta = eta0 / (c + 1) ** power_t``.

    Parameters
    ----------
    power_t : float, default=0.5
    unit : {"step", "epoch"}, default="step"
    """

    power_t: float = 0.5
    unit: str = "step"
    code = C.SCHED_INVSCALING

    def __post_init__(self):
        super().__post_init__()
        _check_positive("InverseScaling power_t", self.power_t, allow_zero=True)

    def _base(self, eta0, c):
        return eta0 / (c + 1.0) ** self.power_t

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_POWER] = self.power_t


@dataclass(frozen=True)
class CosineWarmRestarts(Schedule):
    """Cosine annealing with warm restarts (SGDR; PyTorch's ``CosineAnnealingWarmRestarts``
    stepped once per clock tick). Cycle ``i`` lasts ``T_i = T_0 * T_mult ** i`` ticks; at tick
    ``T_cur`` of its cycle::

        eta = lr_min + (eta0 - lr_min) * (1 + cos(pi * T_cur / T_i)) / 2

    Parameters
    ----------
    T_0 : int, default=10
        Length of the first cycle.
    T_mult : int, default=1
        Factor by which each cycle is longer than the previous one.
    lr_min : float, default=0.0
    unit : {"step", "epoch"}, default="epoch"
    """

    T_0: int = 10
    T_mult: int = 1
    lr_min: float = 0.0
    unit: str = "epoch"
    code = C.SCHED_COSINE_RESTARTS

    def __post_init__(self):
        super().__post_init__()
        _check_positive("CosineWarmRestarts T_0", self.T_0, integer=True)
        _check_positive("CosineWarmRestarts T_mult", self.T_mult, integer=True)
        _check_positive("CosineWarmRestarts lr_min", self.lr_min, allow_zero=True)

    def _position(self, c):
        """``(T_cur, T_i)`` of each clock value in ``c``: the restarts walked in O(log c)."""
        t_cur = np.floor(np.asarray(c, dtype=np.float64))
        t_i = np.full_like(t_cur, float(self.T_0))
        if self.T_mult == 1:
            return np.mod(t_cur, self.T_0), t_i
        over = t_cur >= t_i
        while np.any(over):
            t_cur = np.where(over, t_cur - t_i, t_cur)
            t_i = np.where(over, t_i * self.T_mult, t_i)
            over = t_cur >= t_i
        return t_cur, t_i

    def _base(self, eta0, c):
        t_cur, t_i = self._position(c)
        return self.lr_min + (eta0 - self.lr_min) * (1.0 + np.cos(np.pi * t_cur / t_i)) / 2.0

    def encode(self, codes, hp):
        super().encode(codes, hp)
        hp[C.H_T_0] = self.T_0
        hp[C.H_T_MULT] = self.T_mult
        hp[C.H_LR_MIN] = self.lr_min


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The one-cycle policy (Smith; PyTorch's ``OneCycleLR`` with two phases, learning rate
    only) over ``total_steps`` ticks: from ``max_lr / div_factor`` up to ``max_lr`` during the
    first ``pct_start * total_steps - 1`` ticks, then down to ``max_lr / (div_factor *
    final_div_factor)`` at tick ``total_steps - 1``, by cosine (``anneal="cos"``) or linear
    annealing; the rate stays there afterwards. (With ``pct_start * total_steps <= 1`` the
    rise is empty, as in torch, which however fails when it is exactly 1.)

    Parameters
    ----------
    max_lr : float or None, default=None
        The peak rate; None means the estimator's ``learning_rate``.
    pct_start : float, default=0.3
    anneal : {"cos", "linear"}, default="cos"
    div_factor : float, default=25.0
    final_div_factor : float, default=1e4
    total_steps : int or None, default=None
        Horizon; None means the whole fit (``max_iter`` epochs of optimizer steps).
    """

    max_lr: float = None
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    total_steps: int = None
    unit: str = "step"
    code = C.SCHED_ONE_CYCLE

    def __post_init__(self):
        super().__post_init__()
        if self.max_lr is not None:
            _check_positive("OneCycle max_lr", self.max_lr)
        if not (isinstance(self.pct_start, Real) and 0 < self.pct_start < 1):
            raise ValueError(f"OneCycle pct_start must be a number in (0, 1); got {self.pct_start!r}.")
        if self.anneal not in ("cos", "linear"):
            raise ValueError(f"OneCycle anneal must be 'cos' or 'linear'; got {self.anneal!r}.")
        _check_positive("OneCycle div_factor", self.div_factor)
        _check_positive("OneCycle final_div_factor", self.final_div_factor)
        if self.total_steps is not None:
            _check_positive("OneCycle total_steps", self.total_steps, integer=True)

    def needs_horizon(self):
        return self.total_steps is None

    def with_horizon(self, total):
        return replace(self, total_steps=max(int(total), 1)) if self.total_steps is None else self

    def _base(self, eta0, c):
        if self.total_steps is None:
            raise RuntimeError("the schedule horizon must be resolved before use")
        peak = eta0 if self.max_lr is None else self.max_lr
        initial = peak / self.div_factor
        total = float(self.total_steps)
        up = self.pct_start * total - 1.0
        c = np.minimum(np.asarray(c, dtype=np.float64), total - 1.0)
        rising = c <= up
        with np.errstate(divide="ignore", invalid="ignore"):
            pct = np.where(rising, np.where(up > 0, c / up, 1.0), (c - up) / (total - 1.0 - up))
        start = np.where(rising, initial, peak)
        end = np.where(rising, peak, initial / self.final_div_factor)
        if self.anneal == "linear":
            return (end - start) * pct + start
        return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1.0)

    def encode(self, codes, hp):
        super().encode(codes, hp)
        if self.total_steps is None:
            raise RuntimeError("the schedule horizon must be resolved before encoding")
        hp[C.H_T_MAX] = self.total_steps
        hp[C.H_MAX_LR] = 0.0 if self.max_lr is None else self.max_lr
        hp[C.H_PCT_START] = self.pct_start
        hp[C.H_DIV_FACTOR] = self.div_factor
        hp[C.H_FINAL_DIV_FACTOR] = self.final_div_factor
        hp[C.H_ANNEAL_LINEAR] = 1.0 if self.anneal == "linear" else 0.0


@dataclass(frozen=True)
class Warmup(Schedule):
    """Linear warm-up in front of another schedule, in that schedule's unit::

        eta = eta0 * (c + 1) / warmup          for c < warmup
        eta = base.lr(eta0, c - warmup)        afterwards

    The first step already moves (``eta0 / warmup``); the base schedule starts at its own
    clock 0 when the warm-up ends, and a horizon left to the fit is what remains after it.

    Parameters
    ----------
    base : Schedule or str, default=Constant()
    warmup : int, default=100
    """

    base: Schedule = field(default_factory=Constant)
    warmup: int = 100

    def __post_init__(self):
        object.__setattr__(self, "base", get_schedule(self.base))
        if isinstance(self.base, (Warmup, ReduceLROnPlateau)):
            raise ValueError("Warmup's base must be a plain schedule (not Warmup or ReduceLROnPlateau).")
        _check_positive("Warmup warmup", self.warmup, integer=True)

    @property
    def unit(self):
        return self.base.unit

    @property
    def code(self):
        return self.base.code

    def needs_horizon(self):
        return self.base.needs_horizon()

    def with_horizon(self, total):
        return replace(self, base=self.base.with_horizon(max(int(total) - self.warmup, 1)))

    def lr(self, eta0, c):
        c = np.asarray(c, dtype=np.float64)
        warm = eta0 * (c + 1.0) / self.warmup
        after = self.base.lr(eta0, np.maximum(c - self.warmup, 0.0))
        return np.where(c < self.warmup, warm, after)

    def encode(self, codes, hp):
        self.base.encode(codes, hp)
        hp[C.H_WARMUP] = self.warmup


@dataclass(frozen=True)
class ReduceLROnPlateau(Schedule):
    """Reduce the rate when the epoch loss stops improving (PyTorch's relative mode).

    After each epoch, the loss ``L`` improves on the best so far if
    ``L < best * (1 - threshold)``; after ``patience`` epochs in a row without improvement the
    multiplier ``s`` becomes ``max(s * factor, lr_min / eta0)`` and the count restarts. The rate
    is ``s * base.lr(eta0, c)``. The monitored loss is the training objective of the epoch.

    Parameters
    ----------
    factor : float, default=0.1
    patience : int, default=10
    threshold : float, default=1e-4
    lr_min : float, default=0.0
    base : Schedule or str, default=Constant()
    """

    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    lr_min: float = 0.0
    base: Schedule = field(default_factory=Constant)

    def __post_init__(self):
        object.__setattr__(self, "base", get_schedule(self.base))
        if isinstance(self.base, ReduceLROnPlateau):
            raise ValueError("ReduceLROnPlateau cannot wrap another ReduceLROnPlateau.")
        _check_positive("ReduceLROnPlateau factor", self.factor)
        if self.factor >= 1:
            raise ValueError(f"ReduceLROnPlateau factor must be < 1; got {self.factor!r}.")
        _check_positive("ReduceLROnPlateau patience", self.patience, allow_zero=True, integer=True)
        _check_positive("ReduceLROnPlateau threshold", self.threshold, allow_zero=True)
        _check_positive("ReduceLROnPlateau lr_min", self.lr_min, allow_zero=True)

    @property
    def unit(self):
        return self.base.unit

    @property
    def code(self):
        return self.base.code

    def needs_horizon(self):
        return self.base.needs_horizon()

    def with_horizon(self, total):
        return replace(self, base=self.base.with_horizon(total))

    def lr(self, eta0, c):
        """The rate before any reduction (the multiplier depends on the losses seen)."""
        return self.base.lr(eta0, c)

    def encode(self, codes, hp):
        self.base.encode(codes, hp)

    def update_scale(self, plateau, loss, eta0):
        """Advance the plateau tracker ``plateau = [best, bad_epochs, scale]`` by one epoch."""
        best, bad, scale = plateau
        if loss < best * (1.0 - self.threshold) if best > 0 else loss < best - abs(best) * self.threshold:
            best, bad = loss, 0
        else:
            bad += 1
        if bad > self.patience:
            scale = max(scale * self.factor, self.lr_min / eta0 if eta0 > 0 else 0.0)
            bad = 0
        plateau[:] = [best, bad, scale]


def get_schedule(schedule):
    """Resolve a name or a :class:`Schedule` instance to an instance."""
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str) and schedule in _BY_NAME:
        return _BY_NAME[schedule]
    raise ValueError(
        f"schedule must be one of {sorted(_BY_NAME)} or an instance of fastgd.schedules; got {schedule!r}."
    )


_BY_NAME = {
    "constant": Constant(),
    "step": StepDecay(),
    "exponential": ExponentialDecay(),
    "polynomial": PolynomialDecay(),
    "cosine": CosineAnnealing(),
    "invscaling": InverseScaling(),
    "cosine_restarts": CosineWarmRestarts(),
    "one_cycle": OneCycle(),
    "plateau": ReduceLROnPlateau(),
}
SCHEDULE_NAMES = tuple(_BY_NAME)


def decode_lr(codes, hp, t, epoch):
    """Learning rate of the step at clock ``t`` (steps) in ``epoch`` from the kernel arrays.

    The reference backend's reading of the contract; the compiled kernels implement the same
    formula. Kept next to the classes so the two cannot drift apart unnoticed.
    """
    c = float(t) if codes[C.C_SCHEDULE_UNIT] == C.UNIT_STEP else float(epoch)
    eta0 = hp[C.H_LR]
    warm = hp[C.H_WARMUP]
    if warm > 0 and c < warm:
        return hp[C.H_LR_SCALE] * eta0 * (c + 1.0) / warm
    c -= warm
    code = codes[C.C_SCHEDULE]
    if code == C.SCHED_CONSTANT:
        lr = eta0
    elif code == C.SCHED_STEP:
        lr = eta0 * hp[C.H_GAMMA] ** math.floor(c / hp[C.H_STEP_SIZE])
    elif code == C.SCHED_EXPONENTIAL:
        lr = eta0 * hp[C.H_GAMMA] ** c
    elif code == C.SCHED_POLYNOMIAL:
        f = min(c, hp[C.H_T_MAX]) / hp[C.H_T_MAX]
        lr = (eta0 - hp[C.H_LR_MIN]) * (1.0 - f) ** hp[C.H_POWER] + hp[C.H_LR_MIN]
    elif code == C.SCHED_COSINE:
        f = min(c, hp[C.H_T_MAX]) / hp[C.H_T_MAX]
        lr = hp[C.H_LR_MIN] + (eta0 - hp[C.H_LR_MIN]) * 0.5 * (1.0 + math.cos(math.pi * f))
    elif code == C.SCHED_INVSCALING:
        lr = eta0 / (c + 1.0) ** hp[C.H_POWER]
    elif code == C.SCHED_COSINE_RESTARTS:
        # walk the cycles as torch's scheduler does, one restart at a time
        t_cur, t_i = math.floor(c), hp[C.H_T_0]
        if hp[C.H_T_MULT] == 1:
            t_cur %= t_i
        while t_cur >= t_i:
            t_cur, t_i = t_cur - t_i, t_i * hp[C.H_T_MULT]
        lr = hp[C.H_LR_MIN] + (eta0 - hp[C.H_LR_MIN]) * (1.0 + math.cos(math.pi * t_cur / t_i)) / 2.0
    elif code == C.SCHED_ONE_CYCLE:
        total = hp[C.H_T_MAX]
        peak = hp[C.H_MAX_LR] if hp[C.H_MAX_LR] > 0 else eta0
        up_end = hp[C.H_PCT_START] * total - 1.0  # torch's phase boundaries: 0, up_end, total - 1
        initial = peak / hp[C.H_DIV_FACTOR]
        c = min(c, total - 1.0)
        if c <= up_end:
            start, end, pct = initial, peak, (c / up_end if up_end > 0 else 1.0)
        else:
            start, end = peak, initial / hp[C.H_FINAL_DIV_FACTOR]
            pct = (c - up_end) / (total - 1.0 - up_end)
        if hp[C.H_ANNEAL_LINEAR]:
            lr = (end - start) * pct + start
        else:
            lr = end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)
    else:
        raise ValueError(f"unknown schedule code {code}")
    return hp[C.H_LR_SCALE] * lr
