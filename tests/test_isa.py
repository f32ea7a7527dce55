"""The Cython kernels' instruction-set builds: which one runs, and that they agree bit for bit."""

import os
import subprocess
import sys

import numpy as np
import pytest

from fastgd import _contract as C
from fastgd._backends import _isa, available
from fastgd.optim import OPTIMIZER_NAMES

# The Cython builds, called directly: FASTGD_BACKEND cannot change these tests.
pytestmark = pytest.mark.pinned_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V4 = "x86_64_v4"
ALL_V4 = {f: True for f in _isa.LEVELS[V4]}


# --- the choice, from a feature table -----------------------------------------------------
def test_auto_takes_the_best_level_the_cpu_supports_and_that_was_built():
    assert _isa.choose(ALL_V4, [V4]) == V4
    assert _isa.choose(ALL_V4, []) == _isa.BASELINE  # not built: the baseline serves
    assert _isa.choose({}, [V4]) == _isa.BASELINE  # features unknown: never guess


@pytest.mark.parametrize("missing", _isa.LEVELS[V4])
def test_a_level_needs_every_feature_of_its_definition(missing):
    features = dict(ALL_V4, **{missing: False})
    assert _isa.supported_levels(features) == []
    assert _isa.choose(features, [V4]) == _isa.BASELINE


def test_a_forced_level_is_checked_against_the_cpu_and_the_build():
    assert _isa.choose(ALL_V4, [V4], "baseline") == _isa.BASELINE
    assert _isa.choose(ALL_V4, [V4], V4) == V4
    with pytest.raises(ImportError, match="not supported by this CPU"):
        _isa.choose(dict(ALL_V4, AVX512F=False), [V4], V4)
    with pytest.raises(ImportError, match="was not built"):
        _isa.choose(ALL_V4, [], V4)
    with pytest.raises(ImportError, match="expected one of auto, baseline, x86_64_v4"):
        _isa.choose(ALL_V4, [V4], "avx9000")


def test_features_are_numpys_run_time_detection():
    from numpy._core._multiarray_umath import __cpu_features__

    assert _isa.cpu_features() == dict(__cpu_features__)


# --- the builds -----------------------------------------------------------------------------
needs_cython = pytest.mark.skipif(not available("cython"), reason="the Cython extension is not built")


def _usable_levels():
    return [lvl for lvl in _isa.supported_levels(_isa.cpu_features()) if lvl in _isa.built_levels()]


def _builds():
    import importlib

    levels = _usable_levels()
    if not levels:
        pytest.skip("no instruction-set build both built and supported by this CPU")
    return {lvl: importlib.import_module("fastgd._backends._cython" + _isa.module_name(lvl))
            for lvl in [_isa.BASELINE] + levels}


def _settings(optimizer, **extra):
    from fastgd import LogisticRegression
    from fastgd.optim import get_optimizer

    est = LogisticRegression(optimizer=optimizer, learning_rate=0.05, penalty="elasticnet", alpha=1e-3,
                             clip_norm=extra.get("clip_norm"), schedule="cosine", max_iter=3)
    s = est._settings(get_optimizer(optimizer), 60, C.LOSS_LOG, None)
    return s.codes, s.hp


@needs_cython
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_every_build_trains_bit_identically(optimizer, batch_size, dtype):
    # compiled without contraction or reassociation: wider vectors, the same rounding
    builds = _builds()
    rng = np.random.default_rng(3)
    n, p = 60, 13  # (13: vector loops with a remainder)
    X = rng.standard_normal((n, p)).astype(dtype)
    y = (X[:, 0] + 0.3 * rng.standard_normal(n) > 0).astype(dtype).reshape(-1, 1)
    sw = rng.uniform(0.5, 2.0, n).astype(dtype)
    codes, hp = _settings(optimizer, clip_norm=1.0 if batch_size == 4 else None)
    slots = C.state_slots(codes, hp)
    out = {}
    for level, kernels in builds.items():
        coef = np.zeros((p + 1, 1), dtype)
        state = np.zeros((slots, p + 1, 1), dtype)
        t = np.zeros(1, np.int64)
        for epoch in range(3):
            order = np.random.default_rng(epoch).permutation(n).astype(np.int64)
            status, loss = kernels.epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size,
                                               np.zeros_like(coef), np.zeros((C.WORK_ROWS, 1), dtype))
            assert status == C.STATUS_OK
        out[level] = (coef, state, loss)
    base_coef, base_state, base_loss = out[_isa.BASELINE]
    assert np.any(base_coef != 0)
    for level, (coef, state, loss) in out.items():
        np.testing.assert_array_equal(coef, base_coef, err_msg=level)
        np.testing.assert_array_equal(state, base_state, err_msg=level)
        assert loss == base_loss, level


@needs_cython
def test_auto_runs_the_per_sample_epochs_but_plain_sgd_on_the_best_build(monkeypatch):
    # the measured policy (fastgd/_backends/_isa.py): per-sample epochs on the best level but
    # the fused plain-SGD one (one output, no momentum), every other epoch on the baseline build
    from fastgd._backends import _cython as cy

    if os.environ.get(_isa.ENV, "auto") != "auto":
        pytest.skip(f"{_isa.ENV} forces one build for every epoch")
    calls = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def epoch_dense(self, *args):
            calls.append(self.name)
            return C.STATUS_OK, 0.0

    monkeypatch.setattr(cy, "_chosen", Recorder("best"))
    monkeypatch.setattr(cy, "_rest", Recorder("baseline"))
    for optimizer, batch_size, n_outputs in [("adam", 1, 1), ("rmsprop", 1, 1), ("adagrad", 1, 1), ("sgd", 1, 1),
                                             ("momentum", 1, 1), ("sgd", 1, 3), ("adam", 32, 1), ("momentum", 32, 1)]:
        codes, hp = _settings(optimizer)
        coef = np.zeros((4, n_outputs))
        cy.epoch_dense(None, None, None, None, coef, None, None, codes, hp, batch_size, None, None)
    assert calls == ["best", "best", "best", "baseline", "best", "best", "baseline", "baseline"]


def _import_cython_with(value):
    env = dict(os.environ, PYTHONPATH=ROOT, **{_isa.ENV: value})
    code = "import fastgd._backends._cython as cy; print(cy.isa, cy.epoch_csr.__module__)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@needs_cython
def test_the_environment_forces_a_build_or_names_what_is_wrong():
    result = _import_cython_with("baseline")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["baseline", "fastgd._backends._cython._kernels"]
    result = _import_cython_with("avx9000")
    assert result.returncode != 0
    assert "FASTGD_CYTHON_ISA='avx9000': expected one of" in result.stderr
    if _usable_levels():
        result = _import_cython_with(V4)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [V4, f"fastgd._backends._cython._kernels_{V4}"]
