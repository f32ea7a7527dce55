"""learning_rate="auto": the step size derived from the data, against numpy.linalg."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_classification, make_regression

from fastgd import LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd import _step_size
from fastgd._backends import BACKENDS, available, get_backend
from fastgd.linear_model import _base
from fastgd.optim import SGD, get_optimizer

DENSE_BACKENDS = [None] + [b for b in BACKENDS if available(b)]


def gram(X, sw):
    """(1/n) X~^T diag(sw) X~ with the intercept column, computed directly."""
    Xt = np.column_stack([np.asarray(X.todense()) if sp.issparse(X) else X, np.ones(X.shape[0])])
    return Xt.T @ (sw[:, None] * Xt) / X.shape[0]


def problem(n=80, p=6, seed=0, scales=None, weighted=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + rng.standard_normal(p)  # uncentred: the intercept couples
    if scales is not None:
        X = X * scales
    sw = rng.uniform(0.2, 3.0, n) if weighted else np.ones(n)
    sw *= n / sw.sum()
    return np.ascontiguousarray(X), sw


@pytest.mark.parametrize("backend", DENSE_BACKENDS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("scales", [None, np.array([1e-2, 0.1, 1.0, 10.0, 100.0, 1e3])])
def test_power_iteration_matches_the_largest_eigenvalue(backend, weighted, scales):
    X, sw = problem(weighted=weighted, scales=scales)
    exact = np.linalg.eigvalsh(gram(X, sw))[-1]
    estimate = _step_size.gram_top_eigenvalue(X, sw, None if backend is None else get_backend(backend))
    # a Rayleigh quotient: from below, and close
    assert estimate <= exact * (1 + 1e-12)
    assert estimate == pytest.approx(exact, rel=1e-2)


def test_power_iteration_on_csr_and_float32():
    X, sw = problem(n=120, p=10, seed=3, weighted=True)
    X[np.abs(X) < 0.8] = 0.0
    exact = np.linalg.eigvalsh(gram(X, sw))[-1]
    assert _step_size.gram_top_eigenvalue(sp.csr_matrix(X), sw) == pytest.approx(exact, rel=1e-2)
    X32, sw32 = X.astype(np.float32), sw.astype(np.float32)
    assert _step_size.gram_top_eigenvalue(X32, sw32, get_backend("auto")) == pytest.approx(exact, rel=1e-2)


def test_max_row_norm_and_expected_smoothness():
    X, sw = problem(weighted=True)
    expected = np.max(sw * (np.sum(X * X, axis=1) + 1.0))
    assert _step_size.max_row_norm_squared(X, sw) == pytest.approx(expected, rel=1e-12)
    assert _step_size.max_row_norm_squared(sp.csr_matrix(X), sw) == pytest.approx(expected, rel=1e-12)
    # the largest single-sample Gram eigenvalue bounds the full one
    assert expected >= np.linalg.eigvalsh(gram(X, sw))[-1]
    # b = 1: one sample's smoothness; b = n: the full objective's; in between, monotone
    L, L_max, n = 2.0, 50.0, 100
    assert _step_size.expected_smoothness(L, L_max, n, 1) == pytest.approx(L_max)
    assert _step_size.expected_smoothness(L, L_max, n, n) == L
    values = [_step_size.expected_smoothness(L, L_max, n, b) for b in (1, 2, 8, 32, 99, 100)]
    assert all(a > b for a, b in zip(values, values[1:]))
    # an unbounded stream: sampling with replacement, never below L
    assert _step_size.expected_smoothness(L, L_max, None, 1) == pytest.approx(L_max)
    assert _step_size.expected_smoothness(L, L_max, None, 10 ** 9) == pytest.approx(L, rel=1e-6)


def kernel_arrays(loss_code, optimizer="sgd", l2=0.0):
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    hp = np.zeros(C.N_HP)
    codes[C.C_LOSS] = loss_code
    get_optimizer(optimizer).encode(codes, hp)
    hp[C.H_L2] = l2
    return codes, hp


@pytest.mark.parametrize("loss_code, curvature", [(C.LOSS_SQUARED, 2.0), (C.LOSS_LOG, 0.25), (C.LOSS_SOFTMAX, 0.5)])
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_full_batch_step_is_one_over_the_smoothness(loss_code, curvature, l2):
    X, sw = problem(weighted=True)
    n = X.shape[0]
    codes, hp = kernel_arrays(loss_code, l2=l2)
    L = curvature * np.linalg.eigvalsh(gram(X, sw))[-1] + l2
    step = _step_size.auto_learning_rate(X, sw, np.arange(n), codes, hp, n, get_backend("auto"))
    assert step == pytest.approx(1.0 / L, rel=1e-2)


def test_minibatch_step_uses_expected_smoothness_and_momentum():
    X, sw = problem()
    n = X.shape[0]
    codes, hp = kernel_arrays(C.LOSS_SQUARED, optimizer=SGD(momentum=0.9))
    L = 2 * np.linalg.eigvalsh(gram(X, sw))[-1]
    L_max = 2 * np.max(np.sum(X * X, axis=1) + 1.0)
    b = 8
    L_b = (n * (b - 1) * L + (n - b) * L_max) / (b * (n - 1))
    step = _step_size.auto_learning_rate(X, sw, np.arange(n), codes, hp, b)
    assert step == pytest.approx((1 - 0.9) * 0.5 / L_b, rel=1e-2)


def test_held_out_samples_do_not_enter_the_step():
    X, sw = problem(n=100)
    train = np.arange(0, 100, 2)
    codes, hp = kernel_arrays(C.LOSS_SQUARED)
    sw_train = np.ones(100)
    step = _step_size.auto_learning_rate(X, sw_train, train, codes, hp, len(train), get_backend("auto"))
    L = 2 * np.linalg.eigvalsh(gram(X[train], np.ones(len(train))))[-1]
    assert step == pytest.approx(1.0 / L, rel=1e-2)


def test_estimators_expose_the_step_they_used():
    X, y = make_regression(n_samples=90, n_features=5, noise=1.0, random_state=0)
    X = X * np.array([1.0, 2.0, 5.0, 0.5, 3.0]) + 4.0
    reg = LinearRegression(max_iter=3, tol=None).fit(X, y)
    lam = np.linalg.eigvalsh(gram(X, np.ones(len(y))))[-1]
    assert reg.batch_size_ == 90  # "auto" is full batch on small data
    assert reg.learning_rate_ == pytest.approx(1.0 / (2 * lam), rel=1e-2)
    assert reg.learning_rate_history_ == [(0, reg.learning_rate_, "auto")]
    # a number is used as given
    assert LinearRegression(learning_rate=0.003, max_iter=2, tol=None).fit(X, y).learning_rate_ == 0.003
    # adaptive optimizers: torch.optim's defaults
    Xc, yc = make_classification(n_samples=60, n_features=4, random_state=0)
    for name, expected in [("adam", 1e-3), ("amsgrad", 1e-3), ("adamw", 1e-3), ("adagrad", 1e-2), ("rmsprop", 1e-2)]:
        clf = LogisticRegression(optimizer=name, max_iter=2, tol=None).fit(Xc, yc)
        assert clf.learning_rate_ == expected


def test_full_batch_auto_step_decreases_the_loss_every_epoch():
    # the descent lemma: at 1/L plain gradient descent is monotone, even on badly scaled data
    X, sw = problem(n=200, p=6, scales=np.array([1e-2, 0.1, 1.0, 10.0, 100.0, 1e3]))
    y = X @ np.linspace(-1, 1, 6) + 1.0
    reg = LinearRegression(optimizer="sgd", batch_size=None, max_iter=50, tol=None).fit(X, y)
    assert np.all(np.diff(reg.loss_curve_) <= 0)
    clf = LogisticRegression(optimizer="sgd", batch_size=None, max_iter=50, tol=None).fit(X, y > np.median(y))
    assert np.all(np.diff(clf.loss_curve_) <= 1e-15)


def test_auto_batch_size_is_minibatch_on_large_data(monkeypatch):
    monkeypatch.setattr(_base, "AUTO_FULL_BATCH_MAX", 100)
    monkeypatch.setattr(_base, "AUTO_BATCH_SIZE", 16)
    X, y = make_regression(n_samples=160, n_features=4, noise=1.0, random_state=0)
    reg = LinearRegression(max_iter=2, tol=None).fit(X, y)
    assert reg.batch_size_ == 16 and reg.t_ == 2 * 10
    # a partial_fit chunk of a large stream takes many steps, not one
    inc = LinearRegression().partial_fit(X, y)
    assert inc.t_ == 10
    # the first chunk's step treats it as a sample of the stream: never above fit's
    assert inc.learning_rate_ <= reg.learning_rate_


def test_the_gram_sample_of_mini_batch_steps_is_bounded_in_bytes():
    """The rows the mini-batch step's Gram estimate samples are a copy: at most
    GRAM_SAMPLE_BYTES of them (at least GRAM_SAMPLE_MIN_ROWS rows, at most GRAM_SAMPLE_ROWS)."""
    from fastgd._step_size import (GRAM_SAMPLE_BYTES, GRAM_SAMPLE_MIN_ROWS, GRAM_SAMPLE_ROWS,
                                   _gram_sample_rows)

    for p, dtype in [(100, np.float64), (100, np.float32), (3, np.float64), (10**5, np.float64)]:
        X = np.empty((1, p), dtype=dtype)  # only the row size matters
        rows = _gram_sample_rows(X)
        assert GRAM_SAMPLE_MIN_ROWS <= rows <= GRAM_SAMPLE_ROWS
        assert rows * X.itemsize * p <= GRAM_SAMPLE_BYTES or rows == GRAM_SAMPLE_MIN_ROWS
    assert _gram_sample_rows(np.empty((1, 100))) == GRAM_SAMPLE_BYTES // 800
    assert _gram_sample_rows(np.empty((1, 3))) == GRAM_SAMPLE_ROWS
    assert _gram_sample_rows(np.empty((1, 10**5))) == GRAM_SAMPLE_MIN_ROWS
