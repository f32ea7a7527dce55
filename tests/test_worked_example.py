"""The reference notes' worked example (003), with the corrections listed in the notes' README.

Linear regression on x = [1, 2], y = [2, 4], starting from w = b = 0, learning rate 0.1,
loss (1/N) * sum (y_hat - y)^2, full-batch gradient descent with plain SGD updates.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fastgd import LinearRegression

X = np.array([[1.0], [2.0]])
Y = np.array([2.0, 4.0])

# (w, b) after iterations 1..5. Iterations 1-4 are the notes' values; the 5th is the exact
# value (the notes print a wrong one).
PARAMS = [(1.0, 0.6), (1.32, 0.78), (1.426, 0.828), (1.4646, 0.8346), (1.48192, 0.8283)]
# loss_curve_[k] is the objective at the start of epoch k+1 (full batch): the loss at
# w = b = 0, then the loss after each of iterations 1..4.
LOSSES = [10.0, 1.06, 0.1732, 0.083458, 0.07265554]


def _model(max_iter=1):
    return LinearRegression(optimizer="sgd", learning_rate=0.1, batch_size=None, max_iter=max_iter,
                            tol=None, shuffle=False, penalty=None)


def _by_hand(n_iter):
    """The same iterations written out: dJ/dw = (2/N) sum r x, dJ/db = (2/N) sum r."""
    w = b = 0.0
    losses = []
    for _ in range(n_iter):
        r = w * X[:, 0] + b - Y
        losses.append(np.mean(r * r))
        w, b = w - 0.1 * 2 * np.mean(r * X[:, 0]), b - 0.1 * 2 * np.mean(r)
    return (w, b), losses


def test_expected_values_are_the_mathematics():
    """The constants of this file are what gradient descent computes (no transcription slip)."""
    for k in range(1, 6):
        (w, b), losses = _by_hand(k)
        assert_allclose((w, b), PARAMS[k - 1], rtol=0, atol=1e-12)
        assert_allclose(losses, LOSSES[:k], rtol=0, atol=1e-12)


def test_partial_fit_iterations_1_to_5():
    reg = _model()
    for k in range(1, 6):
        reg.partial_fit(X, Y)
        w, b = PARAMS[k - 1]
        assert reg.t_ == k and reg.n_iter_ == k
        assert_allclose(reg.coef_, [w], rtol=0, atol=1e-12)
        assert_allclose(reg.intercept_, b, rtol=0, atol=1e-12)
        assert_allclose(reg.loss_curve_, LOSSES[:k], rtol=0, atol=1e-12)
    assert reg.predict(np.array([[3.0]]))[0] == pytest.approx(3 * 1.48192 + 0.8283, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_fit_max_iter_k(k):
    reg = _model(max_iter=k).fit(X, Y)
    w, b = PARAMS[k - 1]
    assert reg.t_ == k and reg.n_iter_ == k
    assert_allclose(reg.coef_, [w], rtol=0, atol=1e-12)
    assert_allclose(reg.intercept_, b, rtol=0, atol=1e-12)
    assert_allclose(reg.loss_curve_, LOSSES[:k], rtol=0, atol=1e-12)


def test_notes_slips_are_not_reproduced():
    """The notes print w = 1.4787, b = 0.8423 for iteration 5 and a loss of 0.039 after
    iteration 4; the mathematics gives (1.48192, 0.8283) and 0.07265554."""
    reg = _model(max_iter=5).fit(X, Y)
    assert abs(reg.coef_[0] - 1.4787) > 1e-3 and abs(reg.intercept_ - 0.8423) > 1e-3
    assert abs(reg.loss_curve_[4] - 0.039) > 0.03


def test_converges_to_least_squares_solution():
    """The exact least-squares solution of the example is w = 2, b = 0."""
    reg = LinearRegression(optimizer="sgd", learning_rate=0.1, batch_size=None, max_iter=2000,
                           tol=None, shuffle=False).fit(X, Y)
    assert_allclose(reg.coef_, [2.0], atol=1e-9)
    assert_allclose(reg.intercept_, 0.0, atol=1e-9)
