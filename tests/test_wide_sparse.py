"""Wide sparse input (hashed features): per-call work and memory that do not grow with
n_features where fastgd avoids it, with the rollback guarantee kept."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from fastgd import DivergenceError, LogisticRegression
from fastgd import _contract as C
from fastgd._backends import get_backend
from fastgd._solver import Problem
from fastgd.datasets import make_sparse_classification

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
    dict(optimizer="adagrad", penalty=None, batch_size=4),  # general CSR kernel
])
def test_kernel_scratch_is_reused_across_partial_fit_calls_and_changes_nothing(wide, params):
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


def test_pickled_model_does_not_carry_the_scratch(wide):
    X, y = wide
    model = LogisticRegression(optimizer="adagrad", batch_size=4, penalty=None, random_state=0)
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
