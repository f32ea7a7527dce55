"""Backend parity: every compiled backend reproduces the NumPy reference backend.

After 3 epochs (``tol=None``, ``random_state=0``, so both backends see the same shuffled
orders) ``coef_``, ``intercept_``, ``loss_curve_`` and ``t_`` must agree to rtol 1e-10
(float64) / 1e-4 (float32).

Design of the grid (8 factors: optimizer 8 x schedule 11 x penalty 4 x batch size 3 x
dtype 2 x problem 4 x clip 2 x sample weight 2 = 67,584 combinations, too many for the
~3 minute budget once each is fitted twice):

* ``test_kernel_branches`` -- FULL cross-product of every factor that selects a branch or
  changes the arithmetic inside the kernel's step: optimizer x penalty x problem (which
  fixes the loss and the number of outputs) x dtype x batch size x clip_norm x
  sample_weight (3,072 cases, constant schedule). These interact inside one loop nest
  (e.g. clipping scales the data gradient before the coupled L2 term and the proximal L1
  step; the multi-output path of the gradient accumulation differs from the single-output
  one), so all their combinations are run.
* ``test_schedules`` -- the schedule enters a kernel only through the scalar learning rate
  of each step (``learning_rate(codes, hp, t)``) and its clock depends on the step counter
  and epoch index, i.e. on the batch size; it is crossed in full with batch size x dtype x
  problem (264 cases, Adam, which uses the step index also for its bias correction).
* ``test_all_pairs`` -- an all-pairs covering array over all 8 factors (every pair of values
  of any two factors occurs in at least one case; checked by
  ``test_covering_array_covers_every_pair``), catching any two-factor interaction the two
  grids above leave out (e.g. a schedule with AdaGrad and L1 and clipping).

The list of compiled backends is module level: a backend added to fastgd (Cython) is
picked up by the same tests as soon as it is importable.
"""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastgd import LinearRegression, LogisticRegression
from fastgd._backends import available
from fastgd.optim import OPTIMIZER_NAMES
from fastgd.schedules import (
    SCHEDULE_NAMES, CosineAnnealing, CosineWarmRestarts, OneCycle, ReduceLROnPlateau, StepDecay, Warmup,
)

COMPILED_BACKENDS = ["numba"] + (["cython"] if available("cython") else [])
# Every test here names its backends (FASTGD_BACKEND changes only "auto"), so a run with a
# forced backend would repeat them exactly: .ci/run deselects them there.
pytestmark = pytest.mark.pinned_backend

OPTIMIZERS = list(OPTIMIZER_NAMES)
# Every schedule string, plus objects. Warm-up is 5 steps (the default 100 would cover the
# whole 3-epoch run and never reach the cosine part); the step-unit StepDecay drops every 2
# steps so that even full-batch runs (3 steps) see a drop. The aggressive plateau schedule
# makes the between-epoch multiplier H_LR_SCALE actually change within 3 epochs (the
# "plateau" string, patience 10, never fires in 3 epochs).
# Restarts every 2 and then 4 steps, so that a run of a few steps sees a restart; the linear
# one-cycle with its peak above the base rate.
SCHEDULES = list(SCHEDULE_NAMES) + [
    Warmup(CosineAnnealing(), warmup=5),
    StepDecay(step_size=2, unit="step"),
    StepDecay(step_size=1, gamma=0.7),  # epoch unit, drops every epoch
    ReduceLROnPlateau(factor=0.5, patience=0, threshold=0.9),
    CosineWarmRestarts(T_0=2, T_mult=2, lr_min=0.01, unit="step"),
    OneCycle(max_lr=0.2, pct_start=0.4, anneal="linear", div_factor=5.0, final_div_factor=10.0),
]
PENALTIES = [None, "l2", "l1", "elasticnet"]


def _sched_id(schedule):
    return schedule if isinstance(schedule, str) else repr(schedule).replace(" ", "").replace("'", "")


BATCH_SIZES = [1, 7, None]
DTYPES = [np.float32, np.float64]
PROBLEMS = ["regression_1d", "regression_2d", "binary", "multiclass"]
CLIPS = [None, 0.5]
WEIGHTED = [False, True]

N_SAMPLES, N_FEATURES = 20, 5
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


def _data(problem, dtype):
    rng = np.random.default_rng(42)
    X = rng.standard_normal((N_SAMPLES, N_FEATURES))
    w = rng.standard_normal((N_FEATURES, 3))
    if problem == "regression_1d":
        y = X @ w[:, 0] + 0.5 + 0.1 * rng.standard_normal(N_SAMPLES)
    elif problem == "regression_2d":
        y = X @ w + np.array([0.5, -1.0, 2.0]) + 0.1 * rng.standard_normal((N_SAMPLES, 3))
    elif problem == "binary":
        y = (X @ w[:, 0] + 0.3 * rng.standard_normal(N_SAMPLES) > 0).astype(int)
    else:
        y = np.argmax(X @ w + 0.3 * rng.standard_normal((N_SAMPLES, 3)), axis=1)
        assert set(y) == {0, 1, 2}
    sw = rng.uniform(0.2, 3.0, N_SAMPLES)
    sw[3] = 0.0  # a zero weight too
    return X.astype(dtype), y, sw


def _fit(backend, problem, dtype, optimizer, schedule, penalty, batch_size, clip_norm, weighted):
    X, y, sw = _data(problem, dtype)
    Est = LinearRegression if problem.startswith("regression") else LogisticRegression
    est = Est(optimizer=optimizer, learning_rate=0.05, batch_size=batch_size, max_iter=3, tol=None,
              schedule=schedule, penalty=penalty, alpha=0.1, l1_ratio=0.5, clip_norm=clip_norm,
              random_state=0, backend=backend)
    return est.fit(X, y, sample_weight=sw if weighted else None)


def _assert_parity(backend, problem, dtype, optimizer, schedule, penalty, batch_size, clip_norm,
                   weighted):
    args = (problem, dtype, optimizer, schedule, penalty, batch_size, clip_norm, weighted)
    ref = _fit("numpy", *args)
    got = _fit(backend, *args)
    rtol = RTOL[dtype]
    assert got.t_ == ref.t_
    assert got.coef_.dtype == ref.coef_.dtype == dtype  # float32 runs really are float32
    assert got.n_iter_ == ref.n_iter_ == 3
    assert len(got.loss_curve_) == len(ref.loss_curve_) == 3
    assert np.all(np.isfinite(ref.loss_curve_))
    # Tolerances are relative to the scale of the whole parameter vector (weights and
    # intercepts together): rounding error is relative to the magnitude of the quantities a
    # parameter is accumulated from, so an entry that ends up small by cancellation (an
    # intercept near 0; a weight the L1 step set to exactly 0 in one backend and to ~1e-17
    # in the other) carries the absolute error of that scale, which an elementwise rtol
    # would reject although both backends are right to rounding.
    scale = max(np.max(np.abs(np.asarray(ref.coef_, dtype=np.float64))),
                np.max(np.abs(np.asarray(ref.intercept_, dtype=np.float64))))
    for name in ("coef_", "intercept_"):
        r = np.asarray(getattr(ref, name), dtype=np.float64)
        g = np.asarray(getattr(got, name), dtype=np.float64)
        assert g.shape == r.shape, name
        assert_allclose(g, r, rtol=rtol, atol=rtol * scale, err_msg=name)
    assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=rtol, atol=0, err_msg="loss_curve_")


# --- 1. full cross-product of the kernel-branch factors ---------------------------------
@pytest.mark.parametrize("weighted", WEIGHTED, ids=["unweighted", "weighted"])
@pytest.mark.parametrize("clip_norm", CLIPS, ids=["noclip", "clip"])
@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=["b1", "b7", "bfull"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("penalty", PENALTIES, ids=str)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_kernel_branches(backend, problem, optimizer, penalty, dtype, batch_size, clip_norm, weighted):
    _assert_parity(backend, problem, dtype, optimizer, "constant", penalty, batch_size, clip_norm,
                   weighted)


# --- 2. schedules x batch size x dtype x problem ----------------------------------------
@pytest.mark.parametrize("batch_size", BATCH_SIZES, ids=["b1", "b7", "bfull"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("schedule", SCHEDULES, ids=_sched_id)
@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_schedules(backend, schedule, problem, dtype, batch_size):
    _assert_parity(backend, problem, dtype, "adam", schedule, "l2", batch_size, None, False)


# --- 3. all pairs over all factors -------------------------------------------------------
FACTORS = {
    "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "penalty": PENALTIES,
    "batch_size": BATCH_SIZES, "dtype": DTYPES, "problem": PROBLEMS,
    "clip_norm": CLIPS, "weighted": WEIGHTED,
}


def _uncovered_pairs(rows):
    names = list(FACTORS)
    todo = set()
    for a, b in itertools.combinations(range(len(names)), 2):
        for i in range(len(FACTORS[names[a]])):
            for j in range(len(FACTORS[names[b]])):
                todo.add((a, i, b, j))
    for row in rows:
        for a, b in itertools.combinations(range(len(names)), 2):
            todo.discard((a, row[a], b, row[b]))
    return todo


def _all_pairs():
    """Deterministic greedy all-pairs covering array, as lists of level indices."""
    names = list(FACTORS)
    sizes = [len(FACTORS[n]) for n in names]
    order = sorted(range(len(names)), key=lambda f: -sizes[f])  # largest factors first
    todo = _uncovered_pairs([])
    rows = []

    def complete(row, k):
        for f in order:
            if row[f] is not None:
                continue
            best, best_gain = None, -1
            for off in range(sizes[f]):
                v = (off + k) % sizes[f]  # rotate ties so levels spread evenly
                gain = sum(
                    ((min(f, g), v if f < g else row[g], max(f, g), row[g] if f < g else v) in todo)
                    for g in range(len(names)) if row[g] is not None
                )
                if gain > best_gain:
                    best, best_gain = v, gain
            row[f] = best
        return row

    def add(row):
        rows.append(row)
        for a, b in itertools.combinations(range(len(names)), 2):
            todo.discard((a, row[a], b, row[b]))

    a, b = order[0], order[1]
    for k, (i, j) in enumerate(itertools.product(range(sizes[a]), range(sizes[b]))):
        row = [None] * len(names)
        row[a], row[b] = i, j
        add(complete(row, k))
    while todo:
        fa, i, fb, j = min(todo)
        row = [None] * len(names)
        row[fa], row[fb] = i, j
        add(complete(row, len(rows)))
    return rows


PAIRWISE_ROWS = _all_pairs()


def _row_values(row):
    return {name: FACTORS[name][level] for name, level in zip(FACTORS, row)}


def _row_id(row):
    v = _row_values(row)
    return "-".join([v["optimizer"], _sched_id(v["schedule"]), str(v["penalty"]), f"b{v['batch_size']}",
                     np.dtype(v["dtype"]).name, v["problem"], f"clip{v['clip_norm']}", f"w{v['weighted']}"])


def test_covering_array_covers_every_pair():
    assert not _uncovered_pairs(PAIRWISE_ROWS)
    assert len(PAIRWISE_ROWS) < 200  # stays a small subset of the full product


@pytest.mark.parametrize("row", PAIRWISE_ROWS, ids=[_row_id(r) for r in PAIRWISE_ROWS])
@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_all_pairs(backend, row):
    v = _row_values(row)
    _assert_parity(backend, v["problem"], v["dtype"], v["optimizer"], v["schedule"], v["penalty"],
                   v["batch_size"], v["clip_norm"], v["weighted"])


# --- the data the grid runs on really exercises the features -------------------------------
def test_features_change_the_trajectory():
    """Guard against a vacuous grid: clipping, weights, penalties, schedules all matter here."""
    base = dict(problem="regression_2d", dtype=np.float64, optimizer="momentum", schedule="constant",
                penalty=None, batch_size=7, clip_norm=None, weighted=False)
    ref = _fit("numpy", **base).coef_
    for change in [dict(clip_norm=0.5), dict(weighted=True), dict(penalty="l2"), dict(penalty="l1"),
                   *[dict(schedule=s) for s in SCHEDULES if not isinstance(s, str)]]:
        other = _fit("numpy", **{**base, **change}).coef_
        assert not np.allclose(other, ref, rtol=1e-6, atol=0), change


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("backend", COMPILED_BACKENDS)
def test_l1_exact_zeros_agree(backend, optimizer, dtype):
    """A strong L1 penalty zeroes some weights exactly; the zero pattern must be the same."""
    X, y, _ = _data("regression_2d", dtype)
    # per optimizer, an alpha that zeroes some but not all of the 15 weights in 3 epochs
    alpha = {"sgd": 0.7, "momentum": 3.0, "nesterov": 3.0, "adagrad": 0.3, "rmsprop": 3.0}.get(optimizer, 0.5)
    fits = [LinearRegression(optimizer=optimizer, learning_rate=0.05, batch_size=7, max_iter=3, tol=None,
                             penalty="l1", alpha=alpha, random_state=0, backend=b).fit(X, y)
            for b in ("numpy", backend)]
    zeros = fits[0].coef_ == 0.0
    assert zeros.any() and not zeros.all()
    assert_array_equal(fits[1].coef_ == 0.0, zeros)
    assert_allclose(fits[1].coef_, fits[0].coef_, rtol=RTOL[dtype], atol=0)
