"""Telling "converged" from "the step is too large": rises, backtracking, one helpful warning."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_diabetes, load_iris, load_wine, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from fastgd import LinearRegression, LogisticRegression, _step_size
from fastgd.linear_model import _base
from fastgd.losses import objective


def fit_recording(est, X, y):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X, y)
    return [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]


def lsq_problem(n=100, p=4, seed=0):
    X, y = make_regression(n_samples=n, n_features=p, noise=0.5, random_state=seed)
    return X, y


def test_auto_halves_the_step_after_a_rise_and_still_converges(monkeypatch):
    X, y = lsq_problem()
    safe = LinearRegression(optimizer="sgd", max_iter=1, tol=None).fit(X, y).learning_rate_
    # a step 8x the safe one (4x past the stability limit 2/L) makes the loss rise
    monkeypatch.setattr(_step_size, "auto_learning_rate", lambda *a, **k: 8 * safe)
    reg = LinearRegression(optimizer="sgd", max_iter=3000, tol=1e-10)
    messages = fit_recording(reg, X, y)
    history = reg.learning_rate_history_
    assert history[0] == (0, 8 * safe, "auto")
    # each reduction halves the step and is recorded with its epoch; the loss rose first
    assert [lr for _, lr, _ in history[1:]] == [8 * safe / 2 ** k for k in range(1, len(history))]
    assert {why for _, _, why in history[1:]} == {"rise"}  # full batch: no plateau halvings
    assert len(history) >= 3 and reg.learning_rate_ == history[-1][1] <= 2 * safe
    for epoch, _, _ in history[1:]:
        assert reg.loss_curve_[epoch - 1] > min(reg.loss_curve_[:epoch - 1])
    assert messages == []  # backtracking is the documented behaviour of "auto", not a failure
    A = np.column_stack([X, np.ones(len(y))])
    exact = np.linalg.lstsq(A, y, rcond=None)[0]
    assert_allclose(np.append(reg.coef_, reg.intercept_), exact, rtol=1e-4, atol=1e-4)


def test_minibatch_plateau_halves_the_step_before_stopping(monkeypatch):
    monkeypatch.setattr(_base, "AUTO_FULL_BATCH_MAX", 16)
    monkeypatch.setattr(_base, "AUTO_BATCH_SIZE", 16)
    X, y = make_regression(n_samples=400, n_features=5, noise=5.0, random_state=0)
    reg = LinearRegression(random_state=0, tol=1e-3)
    messages = fit_recording(reg, X, y)
    plateaus = [(epoch, lr) for epoch, lr, why in reg.learning_rate_history_ if why == "plateau"]
    assert len(plateaus) == 4 and reg.n_iter_ < reg.max_iter and messages == []
    start = reg.learning_rate_history_[0][1]
    assert reg.learning_rate_ <= start / 2 ** 4
    # without the halvings (a rate given as a number) the same run stops at the first plateau
    fixed = LinearRegression(random_state=0, tol=1e-3, learning_rate=start)
    fixed_messages = fit_recording(fixed, X, y)
    assert fixed.n_iter_ <= plateaus[0][0]
    assert len(fixed_messages) <= 1
    # ... at a loss the annealed run improves on
    assert min(reg.loss_curve_) < min(fixed.loss_curve_)


def test_momentum_restarts_before_halving(monkeypatch):
    X, y = lsq_problem()
    reg = LinearRegression(optimizer="nesterov", max_iter=400, tol=1e-8)
    messages = fit_recording(reg, X, y)
    assert messages == []
    # Nesterov's loss is not monotone at 1/L: its rises are answered by restarts, which
    # suffice here (a plain gradient step follows each), so the step is never halved
    rises = reg._train_state.rises
    assert len(rises) >= 2 and all(b > a + 1 for a, b in zip(rises, rises[1:]))
    assert len(reg.learning_rate_history_) == 1
    A = np.column_stack([X, np.ones(len(y))])
    exact = np.linalg.lstsq(A, y, rcond=None)[0]
    assert_allclose(np.append(reg.coef_, reg.intercept_), exact, rtol=1e-4, atol=1e-4)


def test_user_rate_too_large_warns_once_and_restores_the_best_epoch():
    X, y = lsq_problem()
    safe = LinearRegression(optimizer="sgd", max_iter=1, tol=None).fit(X, y).learning_rate_
    lr = 2.2 * safe  # just past 2/L: the loss grows slowly, epoch after epoch
    reg = LinearRegression(optimizer="sgd", learning_rate=lr, max_iter=100, tol=1e-4, n_iter_no_change=5)
    messages = fit_recording(reg, X, y)
    assert len(messages) == 1
    message = messages[0]
    assert "rose above its best" in message and "too large" in message
    assert f"learning_rate='auto' (the step derived from this data, {safe:.3g}" in message
    assert "restored" in message
    best = int(np.argmin(reg.loss_curve_))
    assert reg.loss_curve_[-1] > reg.loss_curve_[best]
    assert reg.learning_rate_ == lr and reg.learning_rate_history_ == []
    # the parameters are those the best epoch started from: after `best` epochs
    ref = LinearRegression(optimizer="sgd", learning_rate=lr, max_iter=best, tol=None).fit(X, y) if best else None
    if ref is not None:
        assert_array_equal(reg.coef_, ref.coef_)
        assert reg.intercept_ == ref.intercept_
    final_objective = objective(X, y.reshape(-1, 1), np.ones(len(y)), np.append(reg.coef_, reg.intercept_)[:, None], 0,
                                0.0, 0.0)
    assert final_objective == pytest.approx(min(reg.loss_curve_), rel=1e-9)


def test_oscillation_with_a_user_rate_is_reported():
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    X = X * np.array([1.0, 5.0, 20.0, 1.0, 2.0])
    clf = LogisticRegression(optimizer="sgd", learning_rate=5.0, max_iter=60, tol=1e-4)
    messages = fit_recording(clf, X, y)
    assert len(messages) == 1 and "rose above its best" in messages[0] and "learning_rate='auto'" in messages[0]


def test_one_warning_names_every_observation_and_the_fixes():
    X, y = load_wine(return_X_y=True)  # raw: proline in the thousands, hue around 1
    clf = LogisticRegression(optimizer="sgd", learning_rate=1e-4, max_iter=5)
    messages = fit_recording(clf, X, y)
    assert len(messages) == 1
    m = messages[0]
    assert "max_iter=5" in m and "rose above its best" in m
    assert "standardise the features" in m and "StandardScaler" in m


def test_ill_scaled_data_warns_even_when_the_loss_test_stops():
    X, y = load_wine(return_X_y=True)
    clf = LogisticRegression()
    messages = fit_recording(clf, X, y)
    assert clf.n_iter_ < clf.max_iter
    assert len(messages) == 1 and "standardise the features" in messages[0]
    # standardised, the same defaults converge without a word
    Xs = StandardScaler().fit_transform(X)
    assert fit_recording(LogisticRegression(), Xs, y) == []


def test_scale_advice_reads_sparse_columns_by_their_stored_values():
    import scipy.sparse as sp

    from fastgd.datasets import make_sparse_classification

    X, _, _ = make_sparse_classification(2000, 1000, 10, random_state=0)  # many rare features
    assert _base.scale_advice(X) is None
    D = np.random.default_rng(0).standard_normal((50, 4)) * [1, 10, 100, 1000]
    assert "StandardScaler()" in _base.scale_advice(D)
    assert "MaxAbsScaler()" in _base.scale_advice(sp.csr_matrix(D))
    assert _base.scale_advice(D / [1, 10, 100, 1000]) is None


def test_no_warning_without_a_stopping_test_or_a_problem():
    X, y = lsq_problem()
    assert fit_recording(LinearRegression(max_iter=3, tol=None), X, y) == []
    assert fit_recording(LinearRegression(optimizer="sgd", learning_rate=1e-6, max_iter=3, tol=None), X, y) == []


def default_fits():
    """Small problems at default settings, full-batch and (forced) mini-batch."""
    iris = load_iris(return_X_y=True)
    wine = load_wine(return_X_y=True)
    diabetes = load_diabetes(return_X_y=True)
    noisy = make_classification(n_samples=300, n_features=8, flip_y=0.3, random_state=0)
    reg = make_regression(n_samples=300, n_features=6, noise=20.0, random_state=0)
    std = StandardScaler().fit_transform
    return [
        ("iris", LogisticRegression, iris[0], iris[1]),
        ("iris std", LogisticRegression, std(iris[0]), iris[1]),
        ("wine", LogisticRegression, wine[0], wine[1]),
        ("wine std", LogisticRegression, std(wine[0]), wine[1]),
        ("diabetes", LinearRegression, diabetes[0], diabetes[1]),
        ("noisy", LogisticRegression, noisy[0], noisy[1]),
        ("regression", LinearRegression, reg[0], reg[1] * 100),
    ]


@pytest.mark.parametrize("minibatch", [False, True])
@pytest.mark.parametrize("case", default_fits(), ids=lambda c: c[0])
def test_no_default_fit_ends_above_its_best_silently(monkeypatch, case, minibatch):
    name, Est, X, y = case
    if minibatch:  # the defaults of large data, on small data: mini-batches of 32
        monkeypatch.setattr(_base, "AUTO_FULL_BATCH_MAX", 16)
        monkeypatch.setattr(_base, "AUTO_BATCH_SIZE", 32)
    est = Est(random_state=0)
    messages = fit_recording(est, X, y)
    assert len(messages) <= 1
    assert np.isfinite(est.learning_rate_) and est.learning_rate_ > 0
    # the objective at the returned parameters, exactly
    coef = np.vstack([np.atleast_2d(est.coef_).T, np.atleast_1d(est.intercept_)])
    if Est is LogisticRegression:
        y2 = np.searchsorted(est.classes_, y).reshape(-1, 1).astype(float)
        code = 1 if len(est.classes_) == 2 else 2
        l2 = est.alpha
    else:
        y2, code, l2 = y.reshape(-1, 1).astype(float), 0, 0.0
    final = objective(X, y2, np.ones(len(y)), coef, code, l2, 0.0)
    best = min(est.loss_curve_)
    # full batch: the curve holds exact objectives; mini-batch: running means along the epoch
    slack = 1e-9 if not minibatch else 0.05
    if final > best * (1 + slack) + 1e-12:
        assert messages, f"{name}: ended at {final} above its best {best} without a warning"


def test_partial_fit_over_ten_chunks_reaches_fit():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    X, y = X[idx], y[idx]
    fit = LogisticRegression(random_state=0).fit(X, y)
    inc = LogisticRegression(random_state=0)
    chunks = np.array_split(np.arange(len(y)), 10)
    for _ in range(fit.n_iter_):
        for c in chunks:
            inc.partial_fit(X[c], y[c], classes=np.unique(y))
    assert inc.score(X, y) >= fit.score(X, y) - 0.01
