"""Multi-core gradient accumulation: same mathematics, same bits whatever the thread count."""

import warnings

import numba
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fastgd import LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd._backends import _numba, get_backend


@pytest.fixture(scope="module")
def big():
    # b * p * K = 3000 * 50 >= CHUNKED_MIN_WORK: full batches take the chunked kernel.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 50))
    y = X @ rng.standard_normal(50) + rng.standard_normal(3000)
    assert 3000 * 50 >= C.CHUNKED_MIN_WORK
    return X, y


def _fit(est, X, y, **kw):
    params = dict(max_iter=3, tol=None, random_state=0, penalty="l2", learning_rate=0.01)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est(**params).fit(X, y)


def test_large_batches_use_the_chunked_kernel(monkeypatch, big):
    calls = []
    original = _numba.epoch_dense_chunked
    monkeypatch.setattr(_numba, "epoch_dense_chunked", lambda *a: calls.append(a[9]) or original(*a))
    _fit(LinearRegression, *big, backend="numba", batch_size=None)
    assert calls == [3000] * 3
    calls.clear()
    _fit(LinearRegression, *big, backend="numba", batch_size=32)  # small batches stay serial
    assert calls == []


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
@pytest.mark.parametrize("batch_size", [None, 2900])
def test_chunked_kernel_equals_reference(big, optimizer, batch_size):
    X, y = big
    for est, target in [(LinearRegression, y), (LogisticRegression, y > 0), (LogisticRegression, np.digitize(y, [-2, 2]))]:
        kw = dict(optimizer=optimizer, batch_size=batch_size, clip_norm=5.0)
        ref = _fit(est, X, target, backend="numpy", **kw)
        got = _fit(est, X, target, backend="numba", **kw)
        assert_allclose(got.coef_, ref.coef_, rtol=1e-10, atol=1e-14)
        assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-10)


def test_results_do_not_depend_on_the_thread_count(big):
    X, y = big
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _fit(LogisticRegression, X, y > 0, backend="numba", optimizer="adam")
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = _fit(LogisticRegression, X, y > 0, backend="numba", optimizer="adam")
    finally:
        numba.set_num_threads(before)
    assert_array_equal(one.coef_, many.coef_)
    assert one.loss_curve_ == many.loss_curve_


def test_full_gradient_matches_numpy(big):
    X, y = big
    coef = np.random.default_rng(1).standard_normal((51, 1))
    grad = np.empty_like(coef)
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    loss = get_backend("numba").full_gradient_dense(X, y.reshape(-1, 1), np.ones(3000), coef, codes, grad,
                                                    np.zeros((C.WORK_ROWS, 1)))
    r = X @ coef[:-1, 0] + coef[-1, 0] - y
    assert_allclose(grad[:-1, 0], 2 * X.T @ r / 3000, rtol=1e-10)
    assert_allclose(grad[-1, 0], 2 * r.mean(), rtol=1e-10)
    assert_allclose(loss, r @ r, rtol=1e-12)
