"""Wide sparse input (hashed features): per-call work and memory that do not grow with
n_features where fastgd avoids it, with the rollback guarantee kept."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from fastgd import DivergenceError, LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd._backends import get_backend
from fastgd._solver import Problem
from fastgd.datasets import make_sparse_classification
from fastgd.optim import RMSprop
from fastgd.schedules import CosineWarmRestarts, OneCycle

P = 1 << 16


@pytest.fixture(scope="module")
def wide():
    X, y, _ = make_sparse_classification(600, P, 12, random_state=0)
    return X, y


def _chunks(X, y, size=100):
    return [(X[i:i + size], y[i:i + size]) for i in range(0, X.shape[0], size)]


@pytest.mark.parametrize("params", [
    dict(optimizer="sgd", penalty="l2"),  # running-scale kernel: no lazy buffers
    dict(optimizer="sgd", penalty="l1"),  # lazy shrink maps
    dict(optimizer="adagrad", penalty="l1", batch_size=4),  # general CSR kernel
])
def test_kernel_scratch_is_reused_across_partial_fit_calls_and_changes_nothing(wide, params, monkeypatch):
    from fastgd import _solver

    # as if the model were narrow for the chunks' non-zeros: no running state is kept between
    # calls, and every call takes the kernels' scratch (wide models keep a deferred state)
    monkeypatch.setattr(_solver, "RUNNING_SCALE_NNZ_PER_FEATURE", 0)
    X, y = wide
    kw = dict(learning_rate=0.05, batch_size=1, alpha=1e-4, random_state=0)
    kw.update(params)
    reused = LogisticRegression(**kw)
    fresh = LogisticRegression(**kw)
    seen = set()
    for Xc, yc in _chunks(X, y):
        reused.partial_fit(Xc, yc, classes=[0, 1])
        seen.update(id(a) for a in reused._train_state.scratch._arrays.values())
        # a pickle round trip drops the scratch: every call of `fresh` allocates anew
        fresh = pickle.loads(pickle.dumps(fresh.partial_fit(Xc, yc, classes=[0, 1])))
        assert fresh._train_state.scratch is None
    assert len(seen) == len(reused._train_state.scratch._arrays)  # the same arrays every call
    assert_array_equal(reused.coef_, fresh.coef_)
    assert_array_equal(reused.intercept_, fresh.intercept_)


def test_pickled_model_does_not_carry_the_scratch(wide, monkeypatch):
    from fastgd import _solver

    monkeypatch.setattr(_solver, "RUNNING_SCALE_NNZ_PER_FEATURE", 0)  # (see above: the scratch, not a deferred state)
    X, y = wide
    model = LogisticRegression(optimizer="adagrad", batch_size=4, penalty="l1", random_state=0)
    model.partial_fit(X, y, classes=[0, 1])
    scratch_bytes = sum(a.nbytes for a in model._train_state.scratch._arrays.values())
    assert scratch_bytes > 4 * 8 * P
    assert len(pickle.dumps(model)) < 4 * 8 * P  # coef_, the state's coef and the AdaGrad sums (3 * 8 * P)


def test_divergent_sparse_partial_fit_keeps_the_previous_model(wide):
    X, y = wide
    model = LogisticRegression(optimizer="sgd", learning_rate=0.01, batch_size=1, random_state=0)
    model.partial_fit(X[:300], y[:300], classes=[0, 1])
    coef, intercept, t = model.coef_.copy(), model.intercept_.copy(), model.t_
    state_coef = model._train_state.parameters().copy()
    model.set_params(learning_rate=1e300)
    with pytest.raises(DivergenceError):
        model.partial_fit(X[300:] * 1e300, y[300:])
    assert_array_equal(model.coef_, coef)
    assert_array_equal(model.intercept_, intercept)
    assert model.t_ == t
    assert_array_equal(model._train_state.parameters(), state_coef)
    model.set_params(learning_rate=0.01)
    model.partial_fit(X[300:], y[300:])  # continues from the kept state
    assert model.t_ == t + 300


def _counters(X, y, backend, **params):
    model = LogisticRegression(batch_size=1, random_state=0, **params).partial_fit(X[:10], y[:10], classes=[0, 1])
    codes, hp = model._kernel_arrays(X.shape[0])
    y2 = y.reshape(-1, 1).astype(np.float64)
    problem = Problem(X=X, y=y2, sw=np.ones(X.shape[0]), train_idx=np.arange(X.shape[0], dtype=np.int64))
    buffers = problem.sparse_buffers(codes, hp, 1, 1)
    coef, state = model._train_state.coef.copy(), model._train_state.opt_state.copy()
    get_backend(backend).epoch_csr(X.data, X.indices, X.indptr, X.shape[1], y2, problem.sw, problem.train_idx,
                                  coef, state, np.zeros(1, np.int64), codes, hp, 1, np.zeros_like(coef),
                                  np.zeros((C.WORK_ROWS, 1)), *buffers)
    return buffers[2]


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_unpenalised_per_sample_sgd_does_work_proportional_to_nnz_only(wide, backend):
    X, y = wide
    chunk_X, chunk_y = X[:100], y[:100]
    counters = _counters(chunk_X, chunk_y, backend, optimizer="sgd", penalty=None)
    assert counters[C.COUNT_UPDATES] == chunk_X.nnz + chunk_X.shape[0]
    assert counters[C.COUNT_CATCHUPS] == 0
    wider = sp.hstack([chunk_X, sp.csr_matrix((100, 3 * P))], format="csr")
    assert_array_equal(_counters(wider, chunk_y, backend, optimizer="sgd", penalty=None), counters)


def _settings(model, X):
    from fastgd.optim import get_optimizer

    return model._settings(get_optimizer(model.optimizer), X.shape[0], C.LOSS_LOG, None)


@pytest.mark.parametrize("params, touched_only", [
    (dict(optimizer="sgd", alpha=1e-4, learning_rate=0.01), True),  # running scale, far from a mid-epoch fold
    (dict(optimizer="sgd", penalty="l1"), True),
    (dict(optimizer="adagrad", penalty=None), True),
    (dict(optimizer="adam", lazy_updates=True), True),  # the opt-in approximation: touched rows only
    (dict(optimizer="adam"), False),  # exact: every coordinate every step
    (dict(optimizer="sgd", alpha=10.0, learning_rate=0.05), False),  # the deferred shrink would be folded
])
def test_rollback_copies_only_the_touched_rows_when_nothing_else_can_change(wide, params, touched_only):
    from fastgd._solver import Problem, rollback_rows

    X, y = wide
    chunk = X[:50]
    model = LogisticRegression(batch_size=1, **params)
    problem = Problem(X=chunk, y=y[:50, None].astype(float), sw=np.ones(50), train_idx=np.arange(50))
    for name in ("numba", "cython"):
        rows = rollback_rows(get_backend(name), problem, _settings(model, chunk), 1)
        if touched_only:
            assert_array_equal(np.unique(rows), np.append(np.unique(chunk.indices), P))
        else:
            assert rows is None
    assert rollback_rows(get_backend("numpy"), problem, _settings(model, chunk), 1) is None
    # rows touching much of the model: a plain copy is cheaper than finding them
    everything = Problem(X=X, y=y[:, None].astype(float), sw=np.ones(len(y)), train_idx=np.arange(len(y)))
    assert X.nnz * 16 > P and rollback_rows(get_backend("numba"), everything, _settings(model, X), 1) is None
    dense = Problem(X=chunk.toarray(), y=problem.y, sw=problem.sw, train_idx=problem.train_idx)
    assert rollback_rows(get_backend("numba"), dense, _settings(model, chunk), 1) is None


@pytest.mark.parametrize("params", [dict(optimizer="sgd", alpha=1e-12),  # lr * l2 = 0.01: a touched-rows rollback
                                    dict(optimizer="sgd", penalty="l1", alpha=1e-8),
                                    dict(optimizer="adagrad", penalty=None)])
def test_divergence_in_the_last_step_leaves_every_untouched_weight_exactly(wide, params):
    # The last row's step overflows a weight while every loss of the epoch was finite: the
    # kernel finds it in its final check, which must come before the end-of-epoch fold or
    # catch-up of the untouched weights (a touched-rows rollback would miss those).
    X, y = wide
    model = LogisticRegression(learning_rate=0.5, batch_size=1, random_state=0, **params)
    model.partial_fit(X, y, classes=[0, 1])
    before = model._train_state.parameters().copy(), model._train_state.opt_state.copy(), model.t_
    col = int(X.indices[0])
    bad = sp.csr_matrix(([1e300], [col], [0, 1]), shape=(1, P))
    model.set_params(learning_rate=1e10)
    with pytest.raises(DivergenceError):
        model.partial_fit(bad, [1 - int(model.predict(bad)[0])])
    assert_array_equal(model._train_state.parameters(), before[0])
    assert_array_equal(model._train_state.opt_state, before[1])
    assert model.t_ == before[2]


# --- the running scale kept across partial_fit calls (plain per-sample SGD with L2) ----------

def _spy_on_kernel_counters(monkeypatch):
    """The work counters of every CSR kernel call the driver makes, as a growing list."""
    from fastgd import _solver

    seen = []
    original = _solver.Problem.epoch

    def epoch(self, backend, order, ts, codes, hp, batch_size, grad, work, sparse_buffers=None,
              chunked_buffers=None, running=None):
        result = original(self, backend, order, ts, codes, hp, batch_size, grad, work, sparse_buffers,
                          chunked_buffers, running)
        seen.append(sparse_buffers[2].copy())
        return result

    monkeypatch.setattr(_solver.Problem, "epoch", epoch)
    return seen


def _l2_sgd(backend, **params):
    kw = dict(optimizer="sgd", learning_rate=0.05, batch_size=1, penalty="l2", alpha=1e-3, random_state=0,
              backend=backend)
    kw.update(params)
    return LogisticRegression(**kw)


# the two per-sample paths that touch only the rows' coordinates: plain SGD with L2 (its
# shrink a running scale) and AdaGrad without a penalty (untouched coordinates do not move)
PER_ROW_PATHS = [dict(), dict(optimizer="adagrad", penalty=None)]

# the paths of the general kernel whose untouched coordinates have a closed-form catch-up:
# mini-batch SGD (with L2 or none), RMSprop and AdaGrad without penalty, per-sample SGD with
# clipping, and with L1 (the penalty's value kept by fastgd._lagging_norms): per-sample SGD
# (the fused kernel's path when it is not deferred), mini-batch SGD with the elastic net,
# AdaGrad and RMSprop
DEFERRED_PATHS = [dict(optimizer="sgd", batch_size=4, alpha=1e-3),
                  dict(optimizer="sgd", batch_size=8, penalty=None),
                  dict(optimizer="rmsprop", batch_size=4, penalty=None, learning_rate=0.01),
                  dict(optimizer="adagrad", batch_size=4, penalty=None),
                  dict(optimizer="sgd", batch_size=1, alpha=1e-3, clip_norm=1.0)]
L1_PATHS = [dict(optimizer="sgd", batch_size=1, penalty="l1", alpha=3e-3),
            dict(optimizer="sgd", batch_size=4, penalty="elasticnet", alpha=1e-2, learning_rate=0.2),
            dict(optimizer="adagrad", batch_size=4, penalty="l1", alpha=3e-3),
            dict(optimizer="rmsprop", batch_size=4, penalty="l1", alpha=3e-2, learning_rate=0.01)]
DEFERRED_PATHS += L1_PATHS


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("params", PER_ROW_PATHS)
def test_partial_fit_does_work_proportional_to_nnz_only(wide, backend, params, monkeypatch):
    X, y = wide
    wider = sp.hstack([X, sp.csr_matrix((X.shape[0], 3 * P))], format="csr")
    seen = _spy_on_kernel_counters(monkeypatch)
    for data in (X, wider):
        model = _l2_sgd(backend, **params)
        for Xc, yc in _chunks(data, y):
            model.partial_fit(Xc, yc, classes=[0, 1])
            assert list(seen[-1]) == [Xc.nnz + Xc.shape[0], 0]  # (updates, catch-ups): no fold, no catch-up
        if model.optimizer == "sgd":
            assert model._train_state.scale < 0.99  # the L2 shrink is still pending: never folded
    n_calls = len(_chunks(X, y))
    assert_array_equal(seen[:n_calls], seen[n_calls:])


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("params", PER_ROW_PATHS + [DEFERRED_PATHS[0], DEFERRED_PATHS[2], L1_PATHS[0]])
def test_partial_fit_allocates_nothing_the_size_of_the_model(backend, params):
    import tracemalloc

    p = 1 << 20  # an 8 MB model
    X, y, _ = make_sparse_classification(400, p, 12, random_state=1)
    model = _l2_sgd(backend, **params).partial_fit(X[:200], y[:200], classes=[0, 1])
    tracemalloc.start()
    try:
        for Xc, yc in _chunks(X[200:], y[200:]):
            model.partial_fit(Xc, yc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < p * 8 / 16  # a copy or scratch array of the weights would be 8 MB
    assert (model._train_state.lazy is not None) == (params in DEFERRED_PATHS)  # (the deferred ones kept it)
    assert model.coef_.shape == (1, p)  # (read after the measurement: computed on first read)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("alpha", [1e-4, 1.0])  # 1.0: the scale is folded every other call
def test_running_scale_across_calls_matches_the_reference_backend(wide, backend, alpha):
    X, y = wide
    ours, reference = _l2_sgd(backend, alpha=alpha), _l2_sgd("numpy", alpha=alpha)
    scales = []
    for Xc, yc in _chunks(X, y):
        ours.partial_fit(Xc, yc, classes=[0, 1])
        reference.partial_fit(Xc, yc, classes=[0, 1])
        scales.append(ours._train_state.scale)
    if alpha > 0.1:
        assert any(b > a for a, b in zip(scales, scales[1:]))  # folded at least once between calls
    assert scales[-1] < 1.0
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.intercept_, reference.intercept_, rtol=1e-10)
    # the penalty from the kernel's running sum of squares, against a full pass in the reference
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("backend", ["numba", "cython"])  # (the engines that keep a running scale)
def test_coef_is_computed_on_first_read_and_then_behaves_as_an_attribute(wide, backend):
    from sklearn.exceptions import NotFittedError

    X, y = wide
    model = _l2_sgd(backend, alpha=0.1)
    assert not hasattr(model, "coef_") and not hasattr(model, "intercept_")
    with pytest.raises(NotFittedError):
        model.predict(X[:3])
    model.partial_fit(X[:200], y[:200], classes=[0, 1])
    ts = model._train_state
    assert ts.scale < 0.5  # stored weights and model weights differ
    assert_array_equal(model.coef_, (ts.coef[:-1] * ts.scale).T)
    assert model.coef_ is model.coef_ and "coef_" not in vars(model)
    model.coef_[0, :] *= 2.0  # in-place edits stay and predict with the edited model
    np.testing.assert_allclose(model.decision_function(X[:50]),
                               X[:50] @ (2.0 * ts.coef[:-1, 0] * ts.scale) + model.intercept_, rtol=1e-12)
    model.intercept_ = np.array([5.0])
    assert model.intercept_[0] == 5.0 and model.coef_[0, 0] == 2.0 * ts.coef[0, 0] * ts.scale
    model.partial_fit(X[200:300], y[200:300])  # training publishes its own parameters again
    assert_array_equal(model.coef_, (ts.coef[:-1] * ts.scale).T)
    assert model.intercept_[0] == ts.coef[-1, 0]


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_warm_start_fit_continues_from_the_scaled_weights(wide, backend):
    X, y = wide
    model = _l2_sgd(backend, alpha=0.1).partial_fit(X[:200], y[:200], classes=[0, 1])
    assert model._train_state.scale < 0.5
    coef = model.coef_.copy()
    model.set_params(warm_start=True, learning_rate=1e-300, max_iter=1, tol=None)  # a step that changes nothing
    model.fit(X[:200], y[:200])
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_kernel_refuses_a_running_state_it_cannot_use(wide, backend):
    X, y = wide
    chunk = X[:10]
    y2 = y[:10].reshape(-1, 1).astype(np.float64)
    for params, running, match in [
        # per-sample SGD with L1 carries a deferred state (in the general kernel), not a scale
        (dict(penalty="l1"), np.array([1.0, 0.0]), "deferred catch-up, is 4 float64"),
        (dict(), np.array([0.0, 0.0]), "scale in"),
        (dict(), np.array([1.0]), "two float64"),
        (dict(optimizer="adam"), np.array([1.0, 0.0, -1.0, 0.0]), "take neither"),  # every coordinate, every step
        (dict(clip_norm=1.0), np.array([1.0, 0.0]), "deferred catch-up, is 4 float64"),
        (dict(clip_norm=1.0), np.array([1.0, 0.0, 0.0, 0.0]), "a stamp <= -1"),
        (dict(clip_norm=1.0), np.array([2.0, 0.0, -1.0, 0.0]), r"A in \(0, 1\]"),
    ]:
        model = _l2_sgd(backend, **params).partial_fit(chunk, y[:10], classes=[0, 1])
        codes, hp = model._kernel_arrays(10)
        problem = Problem(X=chunk, y=y2, sw=np.ones(10), train_idx=np.arange(10, dtype=np.int64))
        coef = model._train_state.coef.copy()
        with pytest.raises(ValueError, match=match):
            get_backend(backend).epoch_csr(
                chunk.data, chunk.indices, chunk.indptr, P, y2, problem.sw, problem.train_idx, coef,
                model._train_state.opt_state, np.zeros(1, np.int64), codes, hp, 1, np.zeros_like(coef),
                np.zeros((C.WORK_ROWS, 1)), *problem.sparse_buffers(codes, hp, 1, 1), running=running)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_per_sample_adagrad_matches_the_reference_backend(wide, backend, dtype, rtol):
    X, y = wide
    X = X.astype(dtype)
    ours, reference = (_l2_sgd(b, optimizer="adagrad", penalty=None, learning_rate=0.1) for b in (backend, "numpy"))
    for Xc, yc in _chunks(X, y):
        ours.partial_fit(Xc, yc, classes=[0, 1])
        reference.partial_fit(Xc, yc, classes=[0, 1])
    # (float32: rounding differences are relative to the largest values, not to each entry)
    scale = np.abs(reference.coef_).max() if dtype == np.float32 else 0.0
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(ours.intercept_, reference.intercept_, rtol=rtol)
    state = reference._train_state.opt_state
    np.testing.assert_allclose(ours._train_state.opt_state, state, rtol=rtol,
                               atol=rtol * np.abs(state).max() if dtype == np.float32 else 0.0)
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=rtol)


@pytest.mark.parametrize("params", [dict(), dict(optimizer="adagrad", penalty=None)])
def test_first_epoch_diverging_leaves_the_zero_initialisation_without_having_copied_it(wide, params):
    from fastgd._solver import TrainingUndo

    X, y = wide
    model = _l2_sgd("auto", learning_rate=1e300, **params)
    with pytest.raises(DivergenceError):
        model.fit(X * 1e300, y)
    assert model.n_iter_ == 0 and model.t_ == 0
    assert not np.any(model.coef_) and not np.any(model.intercept_)
    assert_array_equal(model._train_state.parameters(), 0.0)
    # the undo of a model still at its zeros keeps no copy of the weights, and one trained does
    from fastgd._solver import TrainState

    ts = TrainState(coef=np.zeros((P + 1, 1)), opt_state=np.zeros((0, P + 1, 1)), rng=np.random.default_rng(0),
                    zero_coef=True)
    undo = TrainingUndo(ts, np.array([5, P]))
    assert undo.coef is None
    ts.coef[[5, P]], ts.zero_coef = 3.0, False
    undo.restore(ts)
    assert not np.any(ts.coef) and ts.zero_coef
    fresh = _l2_sgd("auto", max_iter=1, tol=None)
    fresh.fit(X[:10], y[:10])
    assert fresh._train_state.zero_coef is False and TrainingUndo(fresh._train_state).coef is not None


@pytest.mark.parametrize("n_stored", [0, 1, 40])
def test_scale_advice_on_wide_input_counts_only_the_stored_columns(n_stored):
    from fastgd.linear_model._base import _column_sums_of_squares, scale_advice

    rng = np.random.default_rng(0)
    X = sp.random(20, P, density=n_stored / (20 * P), format="csr", random_state=0)
    X.data = rng.choice([1e-3, 1.0, 50.0], size=X.nnz)  # spread 5e4: needs the per-column pass
    sq, count = _column_sums_of_squares(X)
    present = np.unique(X.indices)
    np.testing.assert_allclose(sq, np.bincount(X.indices, weights=X.data ** 2, minlength=P)[present])
    assert_array_equal(count, np.bincount(X.indices, minlength=P)[present])
    rms = np.sqrt(sq / count)
    expected_spread = max(rms.max(initial=1.0), 1.0) / min(rms.min(initial=1.0), 1.0)
    assert (scale_advice(X) is None) == (expected_spread <= 30)


# --- the deferred catch-up kept across partial_fit calls (the general CSR kernel) -----------

@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("params", DEFERRED_PATHS)
def test_deferred_catch_up_does_work_proportional_to_nnz_only(wide, backend, params, monkeypatch):
    X, y = wide
    wider = sp.hstack([X, sp.csr_matrix((X.shape[0], 3 * P))], format="csr")
    seen = _spy_on_kernel_counters(monkeypatch)
    for data in (X, wider):
        model = _l2_sgd(backend, **params)
        for Xc, yc in _chunks(data, y):
            model.partial_fit(Xc, yc, classes=[0, 1])
            assert model._train_state.lazy is not None  # kept between calls, never folded
            updates, catch_ups = seen[-1]
            assert updates <= Xc.nnz + Xc.shape[0] and catch_ups <= Xc.nnz
    n_calls = len(_chunks(X, y))
    # the same work, whatever the number of columns no row stores
    assert_array_equal(seen[:n_calls], seen[n_calls:])


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("params", DEFERRED_PATHS)
def test_deferred_catch_up_matches_the_reference_backend(wide, backend, params):
    X, y = wide
    ours, reference = _l2_sgd(backend, **params), _l2_sgd("numpy", **params)
    for n, (Xc, yc) in enumerate(_chunks(X, y)):
        if n == 3:  # a pickle round trip in the middle: saved up to date, continued from there
            ours = pickle.loads(pickle.dumps(ours))
            assert ours._train_state.lazy is None
        ours.partial_fit(Xc, yc, classes=[0, 1])
        reference.partial_fit(Xc, yc, classes=[0, 1])
        # reading the parameters catches up a copy: the pending state is left as it was
        np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10, atol=1e-14)
        assert ours._train_state.lazy is not None
    lagging = ours._train_state.lazy.work[:, 0] != ours.t_
    assert lagging.any()  # (some coordinates are still behind the clock)
    np.testing.assert_allclose(ours.intercept_, reference.intercept_, rtol=1e-10)
    # the penalty from the kernel's sum of squares, against a full pass in the reference
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)
    # the optimizer state (RMSprop's decayed accumulators), brought up to date
    ours._train_state.fold_scale()
    np.testing.assert_allclose(ours._train_state.opt_state, reference._train_state.opt_state, rtol=1e-10,
                               atol=1e-300)


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_deferred_catch_up_is_folded_when_a_call_cannot_keep_it(wide, backend):
    # another rho, a dense chunk, a convergence test: each brings every coordinate up to date
    # first, and the model equals one that was never deferred
    X, y = wide
    kw = dict(optimizer="rmsprop", batch_size=4, penalty=None, learning_rate=0.01)
    ours, reference = _l2_sgd(backend, **kw), _l2_sgd("numpy", **kw)
    steps = [(X[:100], {}), (X[100:200], dict(optimizer=RMSprop(rho=0.9))),
             (X[200:300], {}), (X[300:400].toarray(), {}), (X[400:500], {})]
    for n, (Xc, change) in enumerate(steps):
        for model in (ours, reference):
            model.set_params(**change)
            model.partial_fit(Xc, y[100 * n:100 * (n + 1)], classes=[0, 1])
        np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("params", [DEFERRED_PATHS[0], DEFERRED_PATHS[2], L1_PATHS[0]])
def test_divergent_deferred_call_keeps_the_previous_model_and_its_pending_catch_up(wide, backend, params):
    X, y = wide
    model, twin = _l2_sgd(backend, **params), _l2_sgd(backend, **params)
    for m in (model, twin):
        m.partial_fit(X[:300], y[:300], classes=[0, 1])
    lazy = model._train_state.lazy
    before = (model._train_state.coef.copy(), model._train_state.opt_state.copy(), lazy.work.copy(),
              lazy.running[[C.D_A, C.D_B, C.D_SQ]].copy(), model.t_)
    with pytest.raises(DivergenceError):  # (at the same step: a larger one would fold the pending shrink first)
        model.partial_fit(X[300:] * 1e300, y[300:])
    ts = model._train_state
    assert_array_equal(ts.coef, before[0])
    assert_array_equal(ts.opt_state, before[1])
    assert ts.lazy is lazy
    assert_array_equal(lazy.work, before[2])
    assert_array_equal(lazy.running[[C.D_A, C.D_B, C.D_SQ]], before[3])
    assert model.t_ == before[4]
    # and it trains on as if the failed call had not happened (its stamps are not reused)
    for m in (model, twin):
        m.partial_fit(X[300:], y[300:])
    assert_array_equal(model.coef_, twin.coef_)
    assert_array_equal(model.loss_curve_, twin.loss_curve_)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("params", [DEFERRED_PATHS[0], DEFERRED_PATHS[2], L1_PATHS[1]])
def test_deferred_catch_up_with_several_outputs_matches_the_reference_backend(wide, backend, params):
    X, _ = wide
    y3 = np.random.default_rng(0).integers(0, 3, X.shape[0])  # softmax over three classes: K = 3 columns
    ours, reference = _l2_sgd(backend, **params), _l2_sgd("numpy", **params)
    for Xc, yc in _chunks(X, y3):
        ours.partial_fit(Xc, yc, classes=[0, 1, 2])
        reference.partial_fit(Xc, yc, classes=[0, 1, 2])
    assert ours._train_state.lazy is not None and ours.coef_.shape == (3, P)
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.intercept_, reference.intercept_, rtol=1e-10)
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)


# --- L1 deferred across calls: the penalty's value from the lagging weights' norms ----------

def _caught_up_norms(model):
    """(alive entries, penalty) of the model's LaggingNorms advanced to the current map (in a
    copy), and the same two from a full pass over the caught-up weights."""
    from fastgd.losses import penalty_value

    ts = model._train_state
    lazy = ts.lazy
    norms = lazy.norms.copy()
    A, B = lazy.running[C.D_A], lazy.running[C.D_B]
    norms.advance(A, B, lazy.work)
    codes, hp = model._kernel_arrays(1)
    coef = ts.parameters()
    return (norms.count, norms.penalty(A, B, hp[C.H_L2], hp[C.H_L1]),
            int(np.count_nonzero(coef[:-1])), penalty_value(coef, hp[C.H_L2], hp[C.H_L1]))


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("params", L1_PATHS)
def test_lagging_norms_equal_a_full_pass_over_the_caught_up_weights(wide, backend, params):
    X, y = wide
    model = _l2_sgd(backend, **params)
    zeroed_while_lagging = 0
    clocks = alive = np.zeros(0)
    for Xc, yc in _chunks(X, y, size=50):
        ts = getattr(model, "_train_state", None)
        if ts is not None and ts.lazy is not None:
            clocks = ts.lazy.work[:, 0].copy()
            alive = ts.parameters()[:-1, 0] != 0
        model.partial_fit(Xc, yc, classes=[0, 1])
        ts = model._train_state
        assert ts.lazy is not None and ts.lazy.norms is not None
        count, penalty, nonzero, full_penalty = _caught_up_norms(model)
        assert count == nonzero
        np.testing.assert_allclose(penalty, full_penalty, rtol=1e-11)
        if len(clocks) == ts.lazy.work.shape[0]:
            untouched = ts.lazy.work[:, 0] == clocks  # no step of this call touched them
            zeroed_while_lagging += np.count_nonzero(untouched & alive & (ts.parameters()[:-1, 0] == 0))
    assert zeroed_while_lagging > 0  # (so the runs' pointers did pass entries at zero)


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_lagging_norms_restart_the_map_when_they_cannot_keep_the_precision(wide, backend, monkeypatch):
    from fastgd import _lagging_norms

    # with the precision asked at 1e-16 the kept sums never meet it: every call folds the
    # pending catch-up (every coordinate brought up to date) and starts a new state, and the
    # model equals one that never deferred
    monkeypatch.setattr(_lagging_norms, "PRECISION", 1e-16)
    X, y = wide
    params = L1_PATHS[0]
    ours, reference = _l2_sgd(backend, **params), _l2_sgd("numpy", **params)
    states = []
    for Xc, yc in _chunks(X, y, size=50):
        ours.partial_fit(Xc, yc, classes=[0, 1])
        reference.partial_fit(Xc, yc, classes=[0, 1])
        states.append(ours._train_state.lazy)
    assert len({id(state) for state in states}) > 2  # restarted along the way
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)
    # and a fit's epochs, which cannot restart mid-call, take the penalty from a full pass
    ours = _l2_sgd(backend, **params, max_iter=4, tol=None).fit(X[:200], y[:200])
    reference = _l2_sgd("numpy", **params, max_iter=4, tol=None).fit(X[:200], y[:200])
    assert ours._train_state.lazy is not None
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_long_l1_stream_keeps_the_loss_curve_to_the_reference(backend):
    # 40 rows, two columns in every row and one of 20,000 each: the L1 shrink B grows large
    # against the alive weights, and each call removes and adds entries of B's size, whose
    # rounding the running sums gather (found by a helper session: 3e-9 after 1,500 calls
    # before the sums were recomputed when their error bound passed PRECISION)
    rng = np.random.default_rng(0)
    n, p = 40, 20000
    rows = np.repeat(np.arange(n), 3)
    cols = np.c_[np.zeros(n, int), 1 + (np.arange(n) % 2), rng.integers(3, p, n)].ravel()
    vals = np.c_[np.ones(n), np.ones(n), rng.random(n) + 0.5].ravel()
    X = sp.csr_matrix((vals, (rows, cols)), shape=(n, p))
    y = 1.0 + 0.3 * (np.arange(n) % 2) + 0.01 * rng.standard_normal(n)
    kw = dict(optimizer="sgd", batch_size=1, penalty="l1", alpha=0.05, learning_rate=0.3, shuffle=False,
              random_state=0)
    ours, reference = LinearRegression(backend=backend, **kw), LinearRegression(backend="numpy", **kw)
    for _ in range(500):
        ours.partial_fit(X, y)
        reference.partial_fit(X, y)
    assert ours._train_state.lazy is not None
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("schedule", [CosineWarmRestarts(T_0=1000, lr_min=0.45, unit="step"),
                                      OneCycle(max_lr=0.45, div_factor=1e4, pct_start=0.2, total_steps=5000)])
def test_schedules_above_the_base_rate_bound_the_deferred_shrink(backend, schedule):
    # (found by a helper session) their rate rises above learning_rate: the driver's bound of
    # an epoch's shrink must see it, or the kernel restarts the map mid-call under the norms
    X, y, _ = make_sparse_classification(1200, 20000, 8, random_state=0)
    kw = dict(optimizer="sgd", batch_size=1, penalty="elasticnet", alpha=2.0, l1_ratio=0.001, learning_rate=1e-4,
              schedule=schedule, random_state=0)
    ours, reference = LogisticRegression(backend=backend, **kw), LogisticRegression(backend="numpy", **kw)
    for i in range(0, 1200, 100):
        ours.partial_fit(X[i:i + 100], y[i:i + 100], classes=[0, 1])
        reference.partial_fit(X[i:i + 100], y[i:i + 100], classes=[0, 1])
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)


def _spy_on_running_states(monkeypatch):
    """Whether each CSR epoch the driver runs carries a running state, as a growing list."""
    from fastgd import _solver

    seen = []
    original = _solver.Problem.epoch

    def epoch(self, *args, running=None, **kwargs):
        seen.append(running is not None)
        return original(self, *args, running=running, **kwargs)

    monkeypatch.setattr(_solver.Problem, "epoch", epoch)
    return seen


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("max_iter, deferred", [(5, True), (30, False)])
def test_fit_with_l1_defers_across_its_epochs_when_the_map_cannot_restart(wide, backend, max_iter, deferred,
                                                                          monkeypatch):
    # 30 epochs of this elastic net shrink A by more than exp(-115), the margin the kernels'
    # own restart keeps (which the lagging norms could not follow): that fit catches every
    # coordinate up each epoch instead; 5 epochs keep one deferred state throughout
    X, y = wide
    X, y = X[:200], y[:200]
    params = dict(L1_PATHS[1], alpha=0.5, max_iter=max_iter, tol=None)  # (lr * l2 = 0.085, 50 steps an epoch)
    seen = _spy_on_running_states(monkeypatch)
    ours = _l2_sgd(backend, **params).fit(X, y)
    assert len(seen) == max_iter and set(seen) == {deferred}
    reference = _l2_sgd("numpy", **params).fit(X, y)
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_l1_defers_only_when_the_model_is_much_wider_than_a_call(wide, backend, monkeypatch):
    # (fastgd._solver.L1_DEFERRED_FEATURES_PER_NNZ = 16) 100 rows store about 1,200 entries of
    # the 65,536 columns: deferred; 500 rows about 6,000: the pending catch-up is folded and
    # the call catches every coordinate up at its end, in the fused per-sample kernel
    from fastgd import _solver

    X, y = wide
    seen = _spy_on_running_states(monkeypatch)
    ours, reference = _l2_sgd(backend, **L1_PATHS[0]), _l2_sgd("numpy", **L1_PATHS[0])
    for rows in (slice(0, 100), slice(100, 600), slice(0, 100)):
        ours.partial_fit(X[rows], y[rows], classes=[0, 1])
    for rows in (slice(0, 100), slice(100, 600), slice(0, 100)):
        reference.partial_fit(X[rows], y[rows], classes=[0, 1])
    assert X[100:600].nnz * _solver.L1_DEFERRED_FEATURES_PER_NNZ > P > X[:100].nnz * _solver.L1_DEFERRED_FEATURES_PER_NNZ
    assert seen[:3] == [True, False, True]
    np.testing.assert_allclose(ours.coef_, reference.coef_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(ours.loss_curve_, reference.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_hogwild_with_l1_keeps_no_deferred_state(wide, backend, monkeypatch):
    # Hogwild! threads step the plain weights: a pending catch-up would leave them stale
    X, y = wide
    seen = _spy_on_running_states(monkeypatch)
    model = _l2_sgd(backend, n_jobs=2, **L1_PATHS[0])
    for Xc, yc in _chunks(X, y):
        model.partial_fit(Xc, yc, classes=[0, 1])
        assert model._train_state.lazy is None
    assert not any(seen)  # (and no CSR epoch of the driver's carried one)
    assert np.isfinite(model.coef_).all() and np.count_nonzero(model.coef_) > 0


@pytest.mark.parametrize("schedule, peak", [(CosineWarmRestarts(T_0=10, lr_min=0.45), 0.45),
                                            (OneCycle(max_lr=0.45, total_steps=100), 0.45),
                                            (OneCycle(total_steps=100), 1e-4),
                                            (OneCycle(div_factor=1e-2, final_div_factor=1e-3, total_steps=100), 10.0)])
def test_max_learning_rate_bounds_the_schedules_that_rise(wide, schedule, peak):
    from fastgd._solver import max_learning_rate

    X, y = wide
    model = LogisticRegression(learning_rate=1e-4, schedule=schedule).partial_fit(X[:10], y[:10], classes=[0, 1])
    codes, hp = model._kernel_arrays(10)
    assert max_learning_rate(codes, hp) == pytest.approx(peak)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("params, fail_at", [
    # per-sample SGD with L2: the running scale shrinks by ~e^-2 an epoch and reaches the
    # kernels' own fold (1e-9, every row folded) during epoch 11
    (dict(alpha=0.2, learning_rate=0.05), 11),
    # mini-batch SGD with L2: the deferred map's A shrinks by ~e^-11 an epoch and reaches the
    # kernels' restart (1e-100, every row caught up) during epoch 21
    (dict(optimizer="sgd", batch_size=4, alpha=0.4, learning_rate=0.5), 21),
])
def test_a_warm_started_fit_failing_where_the_kernels_would_fold_keeps_the_epoch_before(
        wide, backend, params, fail_at, monkeypatch):
    # settle_scale bounds a call's first epoch only; a later epoch's undo of the rows it touches
    # would miss the rows a fold in it changed that this fit's data never touch (the columns
    # only the first fit's data store): the driver folds / restarts before that epoch's undo
    from fastgd import _solver

    X, y = wide
    kw = dict(params, max_iter=2, tol=None, warm_start=True)
    model, twin = _l2_sgd(backend, **kw).fit(X[:100], y[:100]), _l2_sgd(backend, **kw).fit(X[:100], y[:100])
    only_first = np.setdiff1d(X[:100].indices, X[100:300].indices)
    assert np.count_nonzero(model._train_state.parameters()[only_first]) > 0  # (rows the second fit never touches)
    twin.set_params(max_iter=fail_at - 1).fit(X[100:300], y[100:300])
    original = _solver.Problem.epoch
    calls = []

    def epoch(self, *args, **kwargs):
        status, loss_sum = original(self, *args, **kwargs)
        calls.append(1)
        return (C.STATUS_NONFINITE, np.nan) if len(calls) == fail_at else (status, loss_sum)

    monkeypatch.setattr(_solver.Problem, "epoch", epoch)
    model.set_params(max_iter=fail_at + 3)
    with pytest.raises(DivergenceError):
        model.fit(X[100:300], y[100:300])
    assert len(calls) == fail_at and model.n_iter_ == twin.n_iter_ == fail_at - 1
    np.testing.assert_allclose(model._train_state.parameters(), twin._train_state.parameters(), rtol=1e-12,
                               atol=1e-300)
