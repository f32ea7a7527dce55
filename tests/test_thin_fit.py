"""fit does no work proportional to X beyond the epochs: X's finiteness is left to the kernels'
own non-finite check (scikit-learn's error still raised, the model left as it was), the
features' scales are measured only when a warning needs them, and unweighted fits build no
weights beyond the kernels' array of ones."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from fastgd import LinearRegression, LogisticRegression
from fastgd.linear_model import _base


@pytest.fixture
def passes_over_X(monkeypatch):
    """Counts the calls of fit's whole-X checks (finiteness, feature scales)."""
    calls = []
    finite, scales = _base.assert_all_finite, _base.scale_advice
    monkeypatch.setattr(_base, "assert_all_finite", lambda *a, **k: calls.append("finite") or finite(*a, **k))
    monkeypatch.setattr(_base, "scale_advice", lambda *a, **k: calls.append("scales") or scales(*a, **k))
    return calls


def _data(n=300, p=6):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p))
    return X, X @ rng.standard_normal(p) + 0.1 * rng.standard_normal(n)


@pytest.mark.parametrize("batch_size", [1, 32, None])
def test_a_clean_dense_fit_makes_no_pass_over_X_of_its_own(passes_over_X, batch_size):
    X, y = _data()
    LogisticRegression(optimizer="adam", batch_size=batch_size, max_iter=1, tol=None).fit(X, y > 0)
    LinearRegression(batch_size=batch_size, max_iter=2, tol=None, learning_rate=0.01).fit(X, y)
    assert passes_over_X == []


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("est", [LinearRegression, LogisticRegression])
@pytest.mark.parametrize("batch_size", [1, 32, None])
def test_a_non_finite_X_is_reported_as_scikit_learn_does_and_the_model_is_kept(passes_over_X, value, est,
                                                                                batch_size):
    X, y = _data()
    target = y > 0 if est is LogisticRegression else y
    model = est(batch_size=batch_size, max_iter=2, tol=None).fit(X, target)
    coef, intercept, curve = model.coef_.copy(), model.intercept_.copy(), list(model.loss_curve_)
    bad = X.copy()
    bad[123, 4] = value
    sw = np.ones(len(y))
    sw[123] = 0.0  # a weightless sample is still checked
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        model.fit(bad, target, sample_weight=sw)
    assert passes_over_X == ["finite"]  # checked once, after the kernel found the loss not finite
    assert_array_equal(model.coef_, coef)
    assert_array_equal(model.intercept_, intercept)
    assert model.loss_curve_ == curve
    assert np.isfinite(bad).sum() == bad.size - 1  # the user's array is untouched


def test_finite_values_that_overflow_still_diverge(passes_over_X):
    # A finite X whose margins overflow is the divergence it was: the finiteness check passes.
    X, y = _data()
    X[5, 0] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as info:
            LinearRegression(max_iter=2, tol=None, learning_rate=0.01, batch_size=None).fit(X, y)
    assert "Input X contains" not in str(info.value)
    assert passes_over_X == ["finite"]


def test_scales_are_measured_when_a_warning_needs_them(passes_over_X):
    X, y = _data()
    X[:, 0] *= 1e4  # badly scaled: the warning names the remedy
    with pytest.warns(Warning, match="standardise the features"):
        LinearRegression(max_iter=3, tol=1e-12, n_iter_no_change=100, learning_rate=1e-9).fit(X, y)
    assert passes_over_X == ["scales"]


def test_early_stopping_checks_X_before_training():
    # Held-out rows never reach a training kernel: their finiteness is checked up front.
    X, y = _data()
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        LinearRegression(early_stopping=True, max_iter=2).fit(X, y)


@pytest.mark.parametrize("y", [
    np.array([True, False, True, True]), np.array([3, -2, 3, 7, -2], dtype=np.int8),
    np.array([0, 2**40, 5], dtype=np.int64),  # too wide a range to count: sorted
    np.array([5, 1, 5], dtype=np.uint64), np.array([2**64 - 1, 2**64 - 3], dtype=np.uint64),
    np.array(["b", "a", "c", "a"]), np.array([0.5, -1.0, 0.5]),
    np.array([1, 1, 1]), np.array([], dtype=np.int64)])
def test_labels_are_encoded_as_numpy_unique_does(y):
    from fastgd.linear_model._logistic import encode_labels

    classes, index = encode_labels(y)
    want_classes, want_index = np.unique(y, return_inverse=True)
    assert classes.dtype == want_classes.dtype
    assert_array_equal(classes, want_classes)
    assert_array_equal(index, want_index.ravel())
