"""``shuffle="block"``: blocks of contiguous rows in random order, rows in random order within."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

from fastgd import LinearRegression, LogisticRegression
from fastgd._solver import epoch_order, shuffle_block_rows


def test_block_order_is_a_permutation_made_of_shuffled_contiguous_blocks():
    X = np.zeros((1000, 1024))  # 8 KiB rows: 128 rows per 1 MiB block
    block = shuffle_block_rows(X)
    assert block == 128
    idx = np.arange(1000, dtype=np.int64)
    order = epoch_order(np.random.default_rng(0), idx, "block", X)
    assert_array_equal(np.sort(order), idx)
    blocks = order // block
    # Each block's rows come together, once; the last block is the short remainder.
    changes = np.flatnonzero(np.diff(blocks)) + 1
    runs = np.split(blocks, changes)
    assert sorted(r[0] for r in runs) == list(range(8)) and all(len(set(r)) == 1 for r in runs)
    assert [r[0] for r in runs] != list(range(8))  # blocks are shuffled
    assert not np.array_equal(order[:block], np.sort(order[:block]))  # and rows within them


def test_block_size_follows_the_bytes_of_a_sparse_row():
    X = sp.random(100, 1000, density=0.01, format="csr", random_state=0)  # 10 nnz/row: 128 bytes
    assert shuffle_block_rows(X) == (1 << 20) // (10 * 12 + 4)


def test_training_indices_only_are_ordered():
    idx = np.array([3, 4, 5, 9, 10], dtype=np.int64)
    order = epoch_order(np.random.default_rng(1), idx, "block", np.zeros((11, 1)))
    assert_array_equal(np.sort(order), idx)


def _data(n=300, p=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    return X, X @ rng.standard_normal(p) + 0.1 * rng.standard_normal(n)


def test_fit_with_block_shuffle_is_sgd_in_the_drawn_block_order():
    X, y = _data()
    model = LinearRegression(optimizer="sgd", learning_rate=0.01, batch_size=1, max_iter=2, tol=None,
                             penalty=None, shuffle="block", random_state=5).fit(X, y)
    # Independent re-computation: per-sample SGD on the mean squared error in that order.
    rng = np.random.default_rng(5)
    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(2):
        for i in epoch_order(rng, np.arange(len(y), dtype=np.int64), "block", X):
            r = 2 * (X[i] @ w + b - y[i])
            w, b = w - 0.01 * r * X[i], b - 0.01 * r
    assert_allclose(model.coef_, w, rtol=1e-10)
    assert_allclose(model.intercept_, b, rtol=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
def test_block_shuffle_is_reproducible_with_random_state(sparse):
    X, y = _data(n=2000, p=300)
    y = (y > 0).astype(int)
    X = sp.csr_matrix(np.where(np.abs(X) > 1.5, X, 0)) if sparse else X

    def fit(seed):
        return LogisticRegression(optimizer="sgd", batch_size=1, max_iter=2, tol=None, shuffle="block",
                                  random_state=seed).fit(X, y).coef_

    assert_array_equal(fit(0), fit(0))
    assert not np.array_equal(fit(0), fit(1))


def test_block_shuffle_differs_from_full_shuffle_and_from_no_shuffle():
    X, y = _data(n=2000, p=200)
    coefs = [LinearRegression(optimizer="sgd", learning_rate=0.001, batch_size=1, max_iter=1, tol=None,
                              shuffle=s, random_state=0).fit(X, y).coef_ for s in (True, False, "block")]
    assert not np.array_equal(coefs[2], coefs[0]) and not np.array_equal(coefs[2], coefs[1])


def test_bad_shuffle_value_is_rejected():
    X, y = _data()
    with pytest.raises(ValueError, match="shuffle"):
        LinearRegression(shuffle="blocks").fit(X, y)
