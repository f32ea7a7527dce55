"""fastgd._lagging_norms against a brute-force catch-up of every coordinate: random touches,
random shrink maps, several outputs, many calls (so the runs merge over several levels)."""

import numpy as np
import pytest

from fastgd import _lagging_norms
from fastgd._lagging_norms import LaggingNorms, touched_rows

pytestmark = pytest.mark.pinned_backend  # (no engine runs here: Python and NumPy only)


def _brute_force(coef, work, A, B):
    """(alive entries, sum |w|, sum w**2) of every coordinate caught up to the map (A, B)."""
    u = (np.abs(coef[:-1]) + work[:, 2:3]) / work[:, 1:2]
    w = np.maximum(A * u - B, 0.0)
    return int(np.count_nonzero(w)), float(w.sum()), float((w * w).sum())


class _Model:
    """A model deferring a shrink map, as the kernels leave it between calls: ``coef`` as
    stored, ``work`` the snapshots (clock, A, B), the map (A, B) and the clock."""

    def __init__(self, rng, p, K):
        self.rng, self.p, self.K = rng, p, K
        self.coef = np.zeros((p + 1, K))
        self.work = np.zeros((p, 3))
        self.work[:, 1] = 1.0
        self.A, self.B, self.clock = 1.0, 0.0, 0.0

    def shrink(self):
        """One call's map: a few steps of |w| <- max(a |w| - b, 0)."""
        for _ in range(self.rng.integers(1, 5)):
            a, b = 1.0 - self.rng.uniform(0, 0.02), self.rng.uniform(0, 0.01)
            self.A, self.B = self.A * a, a * self.B + b
            self.clock += 1.0

    def touch(self, rows):
        """The rows brought up to date and stepped: new weights (a third of them at zero), and
        the snapshot of the current map."""
        w = self.rng.normal(0, 1, (len(rows), self.K)) * (self.rng.random((len(rows), self.K)) > 1 / 3)
        self.coef[rows] = w
        self.work[rows] = self.clock, self.A, self.B

    def touch_and_insert(self, norms, rows):
        """What the driver does around a call that touches ``rows``."""
        departing = norms.alive(rows, self.coef, self.work)
        self.touch(rows)
        norms.insert(rows, self.coef, self.work, departing)

    def call(self, norms, n_rows):
        """A call's shrink, then about ``n_rows`` random rows touched."""
        self.shrink()
        norms.advance(self.A, self.B, self.work)
        self.touch_and_insert(norms, np.unique(self.rng.integers(0, self.p, n_rows)))


@pytest.mark.parametrize("K", [1, 3])
def test_norms_equal_a_brute_force_catch_up_over_many_calls(K):
    rng = np.random.default_rng(K)
    p = 2000
    model = _Model(rng, p, K)
    model.touch(np.arange(p))
    norms = LaggingNorms.start(model.coef, model.work)
    levels = set()
    for _ in range(300):
        model.shrink()
        assert norms.settle(model.A, model.B, model.work, 0.0, 1.0)
        count, abs_sum, sq_sum = _brute_force(model.coef, model.work, model.A, model.B)
        assert norms.count == count
        np.testing.assert_allclose(norms.penalty(model.A, model.B, 0.0, 1.0), abs_sum, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(norms.penalty(model.A, model.B, 2.0, 0.0), sq_sum, rtol=1e-11, atol=1e-12)
        model.touch_and_insert(norms, np.unique(rng.integers(0, p, rng.integers(1, 60))))
        levels.update(run[4] for run in norms.runs)
        if model.B / model.A > 1.0:  # what the driver does before the sums cancel: a restart
            model.coef[:-1] = np.sign(model.coef[:-1]) * np.maximum(
                (np.abs(model.coef[:-1]) + model.work[:, 2:3]) / model.work[:, 1:2] * model.A - model.B, 0)
            model.work[:] = model.clock, 1.0, 0.0
            model.A, model.B = 1.0, 0.0
            norms = LaggingNorms.start(model.coef, model.work)
    assert max(levels) >= 2  # (merged over several levels)
    # the stale entries go when merged: the runs hold about the alive entries, not every touch
    assert sum(len(run[0]) - run[3] for run in norms.runs) < 3 * p * K


def test_snapshot_restores_the_norms_after_a_call_that_is_undone():
    rng = np.random.default_rng(0)
    model = _Model(rng, 500, 1)
    model.touch(np.arange(500))
    norms = LaggingNorms.start(model.coef, model.work)
    for _ in range(20):
        model.call(norms, 40)
    saved = (norms.snapshot(), model.coef.copy(), model.work.copy(), model.A, model.B, model.clock)
    expected = norms.penalty(model.A, model.B, 1.0, 1.0), norms.count
    for _ in range(12):  # calls that are then undone (three merges of level 0 among them)
        model.call(norms, 40)
    snapshot, model.coef, model.work, model.A, model.B, model.clock = saved
    norms.restore(snapshot)
    assert (norms.penalty(model.A, model.B, 1.0, 1.0), norms.count) == expected
    model.shrink()
    norms.advance(model.A, model.B, model.work)
    count, abs_sum, _ = _brute_force(model.coef, model.work, model.A, model.B)
    assert norms.count == count
    np.testing.assert_allclose(norms.penalty(model.A, model.B, 0.0, 1.0), abs_sum, rtol=1e-11)


def test_cancellation_beyond_the_precision_is_reported():
    coef = np.array([[1.0], [2.0], [0.0]])
    work = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    norms = LaggingNorms.start(coef, work)
    assert norms.settle(1.0, 0.0, work, 0.0, 1.0)
    assert norms.settle(1.0, 0.9999, work, 0.0, 1.0)  # |w| = 1e-4 and 1.0001: no cancellation to speak of
    # the first weight at zero; the second 2 - 1.9999 = 1e-4, from A S1 = 2 and B N = 2: the
    # bound 4 eps (A S1 + B N) = 3.6e-15 is 3.6e-11 of 1e-4, past PRECISION
    assert not norms.settle(1.0, 1.9999, work, 0.0, 1.0)
    assert norms.count == 1
    assert 4 * 2.2e-16 * 4.0 / 1e-4 > _lagging_norms.PRECISION


def test_resum_drops_the_rounding_that_many_calls_gathered():
    # entries of size B / A ~ 1e3 leave and come back call after call, each time with a
    # rounding of their size, while the weights themselves are ~1: the running sums' error
    # bound grows past PRECISION; a resum from the runs brings it back
    rng = np.random.default_rng(0)
    model = _Model(rng, 200, 1)
    model.touch(np.arange(200))
    norms = LaggingNorms.start(model.coef, model.work)
    model.A, model.B = 1.0, 1000.0  # (as if many steps of L1 had passed: B large, the weights ~1)
    model.work[:] = model.clock, 1.0, 1000.0
    norms = LaggingNorms.start(model.coef, model.work)
    worst_before_resum = 0.0
    for _ in range(400):
        model.clock += 1.0
        model.B += 1e-3
        norms.advance(model.A, model.B, model.work)
        abs_sum, _, abs_error, _ = norms._sums(model.A, model.B)
        worst_before_resum = max(worst_before_resum, abs_error / abs_sum)
        assert norms.settle(model.A, model.B, model.work, 0.0, 1.0)  # (L1 only: its cancellation is ~1e3)
        _, brute_abs, _ = _brute_force(model.coef, model.work, model.A, model.B)
        np.testing.assert_allclose(norms.penalty(model.A, model.B, 0.0, 1.0), brute_abs, rtol=1e-11)
        model.touch_and_insert(norms, np.unique(rng.integers(0, 200, 30)))
    assert worst_before_resum > _lagging_norms.PRECISION  # (so resum was needed, and done)


def test_touched_rows_are_the_stored_columns_of_the_rows_each_once():
    import scipy.sparse as sp

    X = sp.csr_matrix(np.array([[0, 1, 0, 2], [3, 0, 0, 4], [0, 0, 0, 0], [0, 5, 6, 0]], dtype=float))
    np.testing.assert_array_equal(touched_rows(X, np.arange(4)), [0, 1, 2, 3])
    np.testing.assert_array_equal(touched_rows(X, np.array([0, 2])), [1, 3])
    np.testing.assert_array_equal(touched_rows(X[1:], np.arange(3)), [0, 1, 2, 3])
    assert touched_rows(X[2:3], np.arange(1)).size == 0
