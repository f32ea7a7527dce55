"""Learning-rate schedules: the Python formula, the kernels' reading of it, and the estimator.

For every schedule, ``Schedule.lr(eta0, c)`` must equal the formula of its docstring written
out independently here, and so must the rate the kernels compute from the encoded contract
arrays: ``fastgd.schedules.decode_lr`` (reference backend) and
``fastgd._backends._numba.learning_rate`` (compiled), for step and epoch clocks, with
warm-up and with the reduce-on-plateau multiplier ``H_LR_SCALE``.
"""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastgd import LinearRegression
from fastgd import _contract as C
from fastgd._backends import _numba
from fastgd.schedules import (
    SCHEDULE_NAMES, Constant, CosineAnnealing, CosineWarmRestarts, ExponentialDecay, InverseScaling, OneCycle,
    PolynomialDecay, ReduceLROnPlateau, StepDecay, Warmup, decode_lr, get_schedule,
)

ETA0 = 0.3
CLOCKS = list(range(0, 40))


# --- the docstring formulas, written out independently ---------------------------------------
def formula(schedule, eta0, c):
    """The documented rate at clock c, from the schedule's parameters (plain math)."""
    if isinstance(schedule, Warmup):
        w = schedule.warmup
        return eta0 * (c + 1) / w if c < w else formula(schedule.base, eta0, c - w)
    if isinstance(schedule, ReduceLROnPlateau):
        return formula(schedule.base, eta0, c)
    if isinstance(schedule, Constant):
        return eta0
    if isinstance(schedule, StepDecay):
        return eta0 * schedule.gamma ** (c // schedule.step_size)
    if isinstance(schedule, ExponentialDecay):
        return eta0 * schedule.gamma ** c
    if isinstance(schedule, PolynomialDecay):
        frac = min(c, schedule.T_max) / schedule.T_max
        return (eta0 - schedule.lr_min) * (1 - frac) ** schedule.power + schedule.lr_min
    if isinstance(schedule, CosineAnnealing):
        frac = min(c, schedule.T_max) / schedule.T_max
        return schedule.lr_min + (eta0 - schedule.lr_min) * (1 + math.cos(math.pi * frac)) / 2
    if isinstance(schedule, InverseScaling):
        return eta0 / (c + 1) ** schedule.power_t
    if isinstance(schedule, CosineWarmRestarts):
        start, length = 0, schedule.T_0  # cycle i: [start, start + T_0 * T_mult**i)
        while c >= start + length:
            start, length = start + length, length * schedule.T_mult
        return schedule.lr_min + (eta0 - schedule.lr_min) * (1 + math.cos(math.pi * (c - start) / length)) / 2
    if isinstance(schedule, OneCycle):
        peak = eta0 if schedule.max_lr is None else schedule.max_lr
        low, end = peak / schedule.div_factor, peak / schedule.div_factor / schedule.final_div_factor
        top, last = schedule.pct_start * schedule.total_steps - 1, schedule.total_steps - 1
        c = min(c, last)
        a, b, frac = (low, peak, c / top) if c <= top else (peak, end, (c - top) / (last - top))
        if schedule.anneal == "linear":
            return a + (b - a) * frac
        return b + (a - b) * (1 + math.cos(math.pi * frac)) / 2
    raise AssertionError(f"no formula for {schedule!r}")


def _bases(unit):
    return [
        Constant(unit=unit),
        StepDecay(step_size=3, gamma=0.4, unit=unit),
        ExponentialDecay(gamma=0.9, unit=unit),
        PolynomialDecay(power=2.0, T_max=10, lr_min=0.01, unit=unit),
        PolynomialDecay(power=0.5, T_max=25, unit=unit),
        CosineAnnealing(T_max=10, lr_min=0.001, unit=unit),
        CosineAnnealing(T_max=17, unit=unit),
        InverseScaling(power_t=0.7, unit=unit),
        InverseScaling(power_t=0.0, unit=unit),
    ]


SCHEDULES = [
    s
    for unit in ("step", "epoch")
    for base in _bases(unit)
    for s in (base, Warmup(base, warmup=4), Warmup(base, warmup=1),
              ReduceLROnPlateau(base=base), ReduceLROnPlateau(base=Warmup(base, warmup=5)))
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_python_lr_is_the_documented_formula(schedule):
    expected = [formula(schedule, ETA0, c) for c in CLOCKS]
    assert_allclose([float(schedule.lr(ETA0, c)) for c in CLOCKS], expected, rtol=1e-13, atol=0)
    # vectorised over an array of clocks, too
    assert_allclose(schedule.lr(ETA0, np.array(CLOCKS)), expected, rtol=1e-13, atol=0)


def _encoded(schedule, eta0=ETA0, scale=1.0):
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    hp = np.zeros(C.N_HP, dtype=np.float64)
    hp[C.H_LR] = eta0
    hp[C.H_LR_SCALE] = scale
    schedule.encode(codes, hp)
    return codes, hp


def _kernel_rates(schedule, scale=1.0):
    """Rates at each clock from decode_lr and from the Numba kernel. The other clock (epoch
    for a step schedule, step for an epoch schedule) is set to unrelated values to show it
    is ignored."""
    codes, hp = _encoded(schedule, scale=scale)
    ref, nb = [], []
    for c in CLOCKS:
        if schedule.unit == "step":
            t, epoch = c, 1000 + 7 * c
        else:
            t, epoch = 1000 + 7 * c, c
        ref.append(decode_lr(codes, hp, t, epoch))
        hp[C.H_EPOCH] = epoch
        nb.append(_numba.learning_rate(codes, hp, t))
    return np.array(ref), np.array(nb)


@pytest.mark.parametrize("scale", [1.0, 0.25])
@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_kernels_use_the_documented_formula(schedule, scale):
    expected = scale * np.array([formula(schedule, ETA0, c) for c in CLOCKS])
    ref, nb = _kernel_rates(schedule, scale)
    assert_allclose(ref, expected, rtol=1e-13, atol=0)
    assert_allclose(nb, expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("unit", ["step", "epoch"])
def test_encoding_sets_unit_and_warmup(unit):
    codes, hp = _encoded(Warmup(StepDecay(step_size=2, unit=unit), warmup=6))
    assert codes[C.C_SCHEDULE] == C.SCHED_STEP
    assert codes[C.C_SCHEDULE_UNIT] == (C.UNIT_STEP if unit == "step" else C.UNIT_EPOCH)
    assert hp[C.H_WARMUP] == 6


def test_schedules_are_not_all_the_same():
    """Guard against a vacuous formula check: the chosen parameters give distinct curves."""
    curves = {repr(s): tuple(np.round(formula(s, ETA0, c), 12) for c in CLOCKS) for s in _bases("step")}
    assert len(set(curves.values())) == len(curves) - 1  # InverseScaling(power_t=0) == Constant


# --- string names and horizons --------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_named_schedules(name):
    s = get_schedule(name).with_horizon(30)
    expected = [formula(s, ETA0, c) for c in CLOCKS]
    assert_allclose(s.lr(ETA0, CLOCKS), expected, rtol=1e-13)
    ref, nb = _kernel_rates(s)
    assert_allclose(ref, expected, rtol=1e-13)
    assert_allclose(nb, expected, rtol=1e-13)


def test_horizon_resolution():
    assert CosineAnnealing().with_horizon(30).T_max == 30
    assert CosineAnnealing(T_max=7).with_horizon(30).T_max == 7
    assert PolynomialDecay().with_horizon(12).T_max == 12
    # a warm-up's base gets what remains after the warm-up
    assert Warmup(CosineAnnealing(), warmup=10).with_horizon(30).base.T_max == 20
    with pytest.raises(RuntimeError):
        _encoded(CosineAnnealing())


# --- what the estimator does with a schedule: an independent training loop -------------------
N_SAMPLES, BATCH = 20, 7  # 3 steps per epoch (7, 7, 6)


def _regression():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((N_SAMPLES, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 1.0 + 0.1 * rng.standard_normal(N_SAMPLES)
    return X, y


def _hand_sgd(X, y, lr_of_step, epochs, batch):
    """Plain mini-batch SGD on the mean squared error, batches in data order."""
    w, b = np.zeros(X.shape[1]), 0.0
    t = 0
    for epoch in range(epochs):
        for start in range(0, len(y), batch):
            Xb, yb = X[start:start + batch], y[start:start + batch]
            r = Xb @ w + b - yb
            lr = lr_of_step(t, epoch)
            w, b = w - lr * 2 * Xb.T @ r / len(yb), b - lr * 2 * np.mean(r)
            t += 1
    return w, b


ESTIMATOR_SCHEDULES = [
    # (schedule, its formula with the horizon the estimator resolves: 4 epochs x 3 steps)
    (StepDecay(step_size=2, gamma=0.5, unit="step"), None),
    (StepDecay(step_size=1, gamma=0.5), None),  # epoch unit
    (ExponentialDecay(gamma=0.7), None),
    (ExponentialDecay(gamma=0.9, unit="step"), None),
    (InverseScaling(power_t=0.6), None),
    ("cosine", CosineAnnealing(T_max=12)),
    ("polynomial", PolynomialDecay(T_max=12)),
    (CosineAnnealing(unit="epoch"), CosineAnnealing(T_max=4, unit="epoch")),
    (Warmup(CosineAnnealing(), warmup=5), Warmup(CosineAnnealing(T_max=7), warmup=5)),
    (Warmup(ExponentialDecay(gamma=0.5), warmup=2), None),  # epoch unit warm-up
]


@pytest.mark.parametrize("schedule, resolved", ESTIMATOR_SCHEDULES, ids=lambda v: repr(v))
def test_estimator_follows_the_schedule(schedule, resolved):
    X, y = _regression()
    s = resolved if resolved is not None else schedule
    eta0, epochs = 0.1, 4

    def lr_of_step(t, epoch):
        return formula(s, eta0, t if s.unit == "step" else epoch)

    w, b = _hand_sgd(X, y, lr_of_step, epochs, BATCH)
    reg = LinearRegression(optimizer="sgd", learning_rate=eta0, batch_size=BATCH, max_iter=epochs, tol=None,
                           schedule=schedule, shuffle=False).fit(X, y)
    assert_allclose(reg.coef_, w, rtol=1e-12)
    assert_allclose(reg.intercept_, b, rtol=1e-12)
    # and the schedule matters on this problem
    const = LinearRegression(optimizer="sgd", learning_rate=eta0, batch_size=BATCH, max_iter=epochs, tol=None,
                             shuffle=False).fit(X, y)
    assert not np.allclose(const.coef_, reg.coef_, rtol=1e-6)


# --- reduce on plateau ------------------------------------------------------------------------
def plateau_scales(losses, factor, patience, threshold, lr_min, eta0):
    """PyTorch's relative-threshold ReduceLROnPlateau (mode min, no cooldown), as documented."""
    best, bad, scale, out = math.inf, 0, 1.0, []
    for loss in losses:
        if loss < best * (1 - threshold):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > patience:
            scale = max(scale * factor, lr_min / eta0)
            bad = 0
        out.append(scale)
    return out


def _run_update_scale(schedule, losses, eta0):
    plateau = [math.inf, 0, 1.0]
    out = []
    for loss in losses:
        schedule.update_scale(plateau, loss, eta0)
        out.append(plateau[2])
    return out


def test_plateau_update_rule_hand_made_sequence():
    s = ReduceLROnPlateau(factor=0.5, patience=2, threshold=0.1)
    losses = [10.0, 9.5, 9.2, 9.1, 8.0, 8.0, 7.9, 7.3, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]
    # 10 best; 9.5, 9.2, 9.1 not below 9.0 -> 3 bad > 2: halve; 8.0 best; 8.0, 7.9, 7.3 not
    # below 7.2 -> halve; 6.0 best; six more 6.0 -> halve after the 3rd and after the 6th.
    expected = [1, 1, 1, .5, .5, .5, .5, .25, .25, .25, .25, .125, .125, .125, .0625]
    assert _run_update_scale(s, losses, ETA0) == expected
    assert expected == plateau_scales(losses, 0.5, 2, 0.1, 0.0, ETA0)


@pytest.mark.parametrize("factor, patience, threshold, lr_min", [
    (0.1, 0, 1e-4, 0.0), (0.5, 1, 0.0, 0.0), (0.1, 0, 0.3, 0.006), (0.7, 3, 0.05, 0.0),
])
def test_plateau_update_rule_random_sequences(factor, patience, threshold, lr_min):
    rng = np.random.default_rng(0)
    s = ReduceLROnPlateau(factor=factor, patience=patience, threshold=threshold, lr_min=lr_min)
    for _ in range(20):
        losses = list(np.cumsum(rng.normal(-0.05, 0.3, 40)) + 20)
        got = _run_update_scale(s, losses, ETA0)
        assert_allclose(got, plateau_scales(losses, factor, patience, threshold, lr_min, ETA0), rtol=1e-15)
    if lr_min:
        assert min(got) == pytest.approx(lr_min / ETA0)  # the floor is reached and kept


X_EX, Y_EX = np.array([[1.0], [2.0]]), np.array([2.0, 4.0])  # the notes' worked example


def test_plateau_reduces_the_rate_in_the_estimator():
    """Worked example, full batch, lr 0.1: the objectives are 10, 1.06, 0.1732, 0.083458,
    0.07265554. With threshold 0.5 and patience 0, epochs 1-4 improve by more than half
    (0.083458 < 0.0866), epoch 5 does not: the rate is halved from epoch 6 on. So 6 epochs
    with the plateau schedule equal 5 epochs at lr 0.1 followed by 1 epoch at lr 0.05."""
    sched = ReduceLROnPlateau(factor=0.5, patience=0, threshold=0.5)
    kw = dict(optimizer="sgd", batch_size=None, tol=None, shuffle=False)
    plateau = LinearRegression(learning_rate=0.1, max_iter=6, schedule=sched, **kw).fit(X_EX, Y_EX)

    two_stage = LinearRegression(learning_rate=0.1, max_iter=5, warm_start=True, **kw).fit(X_EX, Y_EX)
    two_stage.set_params(learning_rate=0.05, max_iter=1).fit(X_EX, Y_EX)  # plain SGD: no state
    assert_allclose(plateau.coef_, two_stage.coef_, rtol=1e-13)
    assert_allclose(plateau.intercept_, two_stage.intercept_, rtol=1e-13)

    constant = LinearRegression(learning_rate=0.1, max_iter=6, **kw).fit(X_EX, Y_EX)
    assert_allclose(plateau.loss_curve_, constant.loss_curve_, rtol=1e-13)  # same up to epoch 6's start
    assert not np.allclose(plateau.coef_, constant.coef_, rtol=1e-6)  # the reduction is observable
    assert_allclose(plateau.loss_curve_[:5], [10, 1.06, 0.1732, 0.083458, 0.07265554], rtol=1e-12)


@pytest.mark.parametrize("batch_size", [None, 7])
def test_plateau_estimator_matches_independent_loop(batch_size):
    """Mini-batch SGD with reduce-on-plateau over 12 epochs, against a hand loop that applies
    the documented rule to the epoch objective (running training loss of the epoch)."""
    X, y = _regression()
    eta0, epochs = 0.02, 12
    sched = ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.5)
    reg = LinearRegression(optimizer="sgd", learning_rate=eta0, batch_size=batch_size, max_iter=epochs,
                           tol=None, schedule=sched, shuffle=False).fit(X, y)
    bs = N_SAMPLES if batch_size is None else batch_size
    w, b = np.zeros(3), 0.0
    scale, curve, scales = 1.0, [], []
    for _ in range(epochs):
        loss_sum = 0.0
        for start in range(0, N_SAMPLES, bs):
            Xb, yb = X[start:start + bs], y[start:start + bs]
            r = Xb @ w + b - yb
            loss_sum += np.sum(r * r)
            lr = eta0 * scale
            w, b = w - lr * 2 * Xb.T @ r / len(yb), b - lr * 2 * np.mean(r)
        curve.append(loss_sum / N_SAMPLES)
        scale = plateau_scales(curve, 0.5, 1, 0.5, 0.0, eta0)[-1]
        scales.append(scale)
    assert scales[-1] < 1.0 and scales[0] == 1.0  # the rate was reduced during the run
    assert_allclose(reg.loss_curve_, curve, rtol=1e-12)
    assert_allclose(reg.coef_, w, rtol=1e-12)
    assert_allclose(reg.intercept_, b, rtol=1e-12)


# --- schedules defined by PyTorch's schedulers: their trajectories, stepped once per tick ------
def _torch_rates(make_scheduler, n, eta0=ETA0):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=eta0)
    scheduler = make_scheduler(torch, opt)
    rates = []
    for k in range(n):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if k < n - 1:
            scheduler.step()
    return np.array(rates)


TORCH_SCHEDULES = [
    (CosineWarmRestarts(T_0=3, T_mult=1, lr_min=0.01, unit="step"),
     lambda torch, opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=1, eta_min=0.01)),
    (CosineWarmRestarts(T_0=2, T_mult=2, unit="step"),
     lambda torch, opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)),
    (CosineWarmRestarts(T_0=1, T_mult=3, lr_min=0.05, unit="epoch"),
     lambda torch, opt: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=3, eta_min=0.05)),
    (OneCycle(total_steps=40),
     lambda torch, opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=ETA0, total_steps=40, cycle_momentum=False)),
    (OneCycle(max_lr=0.5, pct_start=0.25, anneal="linear", div_factor=10.0, final_div_factor=100.0, total_steps=40),
     lambda torch, opt: torch.optim.lr_scheduler.OneCycleLR(
         opt, max_lr=0.5, total_steps=40, pct_start=0.25, anneal_strategy="linear", div_factor=10.0,
         final_div_factor=100.0, cycle_momentum=False)),
    (OneCycle(pct_start=0.5, total_steps=7),  # a short horizon: 3 ticks up, 3 down
     lambda torch, opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=ETA0, total_steps=7, pct_start=0.5,
                                                            cycle_momentum=False)),
]


@pytest.mark.parametrize("scale", [1.0, 0.25])
@pytest.mark.parametrize("schedule, make_scheduler", TORCH_SCHEDULES, ids=[repr(s) for s, _ in TORCH_SCHEDULES])
def test_torch_defined_schedules_follow_torch(schedule, make_scheduler, scale):
    """Python formula, reference decoding and compiled kernel each reproduce torch's rates."""
    n = min(len(CLOCKS), getattr(schedule, "total_steps", None) or len(CLOCKS))
    want = _torch_rates(make_scheduler, n)
    assert_allclose(schedule.lr(ETA0, np.arange(n)), want, rtol=1e-13, atol=0)
    ref, nb = _kernel_rates(schedule, scale)
    assert_allclose(ref[:n], scale * want, rtol=1e-13, atol=0)
    assert_allclose(nb[:n], scale * want, rtol=1e-13, atol=0)


def test_one_cycle_stays_at_its_final_rate_after_the_horizon():
    sched = OneCycle(total_steps=10)
    ref, nb = _kernel_rates(sched)
    final = ETA0 / sched.div_factor / sched.final_div_factor
    assert_allclose(ref[9:], final, rtol=1e-13)
    assert_allclose(nb[9:], final, rtol=1e-13)


def test_new_schedules_resolve_their_horizon_from_the_fit():
    X, y = _regression()
    reg = LinearRegression(optimizer="sgd", learning_rate=0.1, batch_size=BATCH, max_iter=4, tol=None,
                           schedule="one_cycle", shuffle=False).fit(X, y)
    steps = reg.t_
    w, b = _hand_sgd(X, y, lambda t, epoch: float(OneCycle(total_steps=steps).lr(0.1, t)), 4, BATCH)
    assert_allclose(reg.coef_, w, rtol=1e-12)
    assert_allclose(reg.intercept_, b, rtol=1e-12)
    restarts = LinearRegression(optimizer="sgd", learning_rate=0.1, batch_size=BATCH, max_iter=4, tol=None,
                                schedule=CosineWarmRestarts(T_0=1, T_mult=2), shuffle=False).fit(X, y)
    w, b = _hand_sgd(X, y, lambda t, epoch: float(CosineWarmRestarts(T_0=1, T_mult=2).lr(0.1, epoch)), 4, BATCH)
    assert_allclose(restarts.coef_, w, rtol=1e-12)
