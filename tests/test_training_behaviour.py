"""Training behaviour a user relies on: partial_fit, randomness, batches, dtypes, weights,
warm start, convergence, penalties, divergence, input validation, compilation."""

import copy
import math
import pickle
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import log_loss, r2_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight

import fastgd
from fastgd import DivergenceError, LinearRegression, LogisticRegression
from fastgd._backends import _numba
from fastgd.optim import SGD, Adam
from fastgd.schedules import (CosineAnnealing, ExponentialDecay, PolynomialDecay, ReduceLROnPlateau,
                              StepDecay, Warmup)


# --------------------------------------------------------------------------- helpers
def reg_data(n=60, p=4, seed=0, n_targets=1, noise=1.0):
    X, y = make_regression(n_samples=n, n_features=p, n_informative=p, n_targets=n_targets, noise=noise,
                           random_state=seed)
    return X, y


def clf_data(n=60, p=4, n_classes=2, seed=0, flip_y=0.01):
    X, y = make_classification(n_samples=n, n_features=p, n_informative=min(p, 3), n_redundant=0,
                               n_classes=n_classes, n_clusters_per_class=1, flip_y=flip_y, random_state=seed)
    return X, y


class KernelSpy:
    """Wraps the Numba epoch kernel to record what it receives (estimators use backend="numba")."""

    def __init__(self, monkeypatch):
        self.calls = []
        self._orig = _numba.epoch_dense
        monkeypatch.setattr(_numba, "epoch_dense", self)

    def __call__(self, X, y, sw, order, *rest):
        self.calls.append(dict(X=X, y=y, sw=sw.copy(), order=order.copy(), batch_size=rest[-3]))
        return self._orig(X, y, sw, order, *rest)


def snapshot(est):
    keys = ("coef_", "intercept_", "n_iter_", "t_", "loss_curve_", "classes_", "n_features_in_")
    return {k: copy.deepcopy(getattr(est, k)) for k in keys if hasattr(est, k)}


def assert_same_snapshot(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


def mse_objective(X, y, coef, intercept):
    return float(np.mean((X @ coef + intercept - y) ** 2))


def mse_gradient_norm(X, y, coef, intercept):
    r = X @ coef + intercept - y
    g = np.concatenate([2.0 * X.T @ r / len(y), [2.0 * r.mean()]])
    return float(np.linalg.norm(g))


# --------------------------------------------------------------------------- partial_fit
SCHEDULES = {"constant": "constant", "cosine": "cosine", "cosine_obj": CosineAnnealing(lr_min=1e-4),
             "warmup_cosine": Warmup(CosineAnnealing(), warmup=3)}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("batch_size", [1, 7, None])
@pytest.mark.parametrize("kind", ["reg", "clf"])
def test_partial_fit_equals_fit_epoch_for_epoch(optimizer, schedule, batch_size, kind):
    n_epochs = 6
    if kind == "reg":
        X, y = reg_data(n=40)
        Est, extra = LinearRegression, {}
    else:
        X, y = clf_data(n=40, n_classes=3)
        Est, extra = LogisticRegression, {"classes": np.unique(y)}
    kw = dict(optimizer=optimizer, schedule=SCHEDULES[schedule], batch_size=batch_size, shuffle=False,
              tol=None, learning_rate=0.01, max_iter=n_epochs)
    full = Est(**kw).fit(X, y)
    inc = Est(**kw)
    for k in range(1, n_epochs + 1):
        inc.partial_fit(X, y, **extra)
        assert inc.n_iter_ == k
        assert inc.loss_curve_ == full.loss_curve_[:k]
        if schedule == "constant":  # the horizon does not matter: compare with a k-epoch fit
            short = Est(**{**kw, "max_iter": k}).fit(X, y)
            assert_array_equal(inc.coef_, short.coef_)
            assert inc.t_ == short.t_
    assert_array_equal(inc.coef_, full.coef_)
    assert_array_equal(inc.intercept_, full.intercept_)
    assert inc.t_ == full.t_
    assert inc.loss_curve_ == full.loss_curve_


def test_partial_fit_requires_classes_on_first_call():
    X, y = clf_data()
    clf = LogisticRegression()
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    assert not hasattr(clf, "coef_")
    clf.partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X, y)  # later calls need not repeat them
    assert clf.n_iter_ == 2
    # classes may include labels absent from the first batch
    clf = LogisticRegression().partial_fit(X[y == 0], y[y == 0], classes=[0, 1, 2])
    assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.coef_.shape == (3, X.shape[1])


def test_parameters_changed_between_partial_fit_calls_are_validated_again():
    """Parameters are checked again after set_params or a plain assignment (validation is
    skipped only while no parameter changed). (The SGD drop-ins validate on the first
    partial_fit call only, as scikit-learn's do.)"""
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = clf_data()
    clf = LogisticRegression(learning_rate=0.01).partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X, y)
    with pytest.raises(InvalidParameterError, match="alpha"):
        clf.set_params(alpha=-1.0).partial_fit(X, y)
    clf.alpha = 1e-4
    clf.partial_fit(X, y)
    clf.alpha = "big"
    with pytest.raises(InvalidParameterError, match="alpha"):
        clf.partial_fit(X, y)
    clf.alpha = np.float64(-2.0)
    with pytest.raises(InvalidParameterError, match="alpha"):
        clf.partial_fit(X, y)


def test_later_partial_fit_calls_check_labels_against_the_classes():
    """A later call checks y only against classes_ (no type_of_target); bad labels still get
    scikit-learn's error for a non-classification y, or ours naming the unseen labels."""
    X, y = clf_data()
    clf = LogisticRegression(learning_rate=0.01).partial_fit(X, y, classes=[0, 1])
    before = snapshot(clf)
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.partial_fit(X, y + 0.5)  # continuous
    with pytest.raises(ValueError, match=r"not in classes.*first partial_fit"):
        clf.partial_fit(X, np.where(y == 1, "b", "a").astype(object))  # strings against ints
    with pytest.raises(ValueError, match="NaN"):
        clf.partial_fit(X, np.where(y == 1, np.nan, 0.0))
    assert_same_snapshot(before, snapshot(clf))
    # labels of another dtype but equal values are the same classes
    again = clf.partial_fit(X, y.astype(np.float64)).coef_.copy()
    ref = LogisticRegression(learning_rate=0.01).partial_fit(X, y, classes=[0, 1]).partial_fit(X, y)
    np.testing.assert_array_equal(again, ref.coef_)


def test_partial_fit_unseen_classes_and_feature_mismatch_raise():
    X, y = clf_data()
    clf = LogisticRegression().partial_fit(X, y, classes=[0, 1])
    before = snapshot(clf)
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, np.where(y == 1, 2, y))
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :3], y)
    assert_same_snapshot(before, snapshot(clf))
    with pytest.raises(ValueError, match="not in classes"):
        LogisticRegression().partial_fit(X, np.where(y == 1, 5, y), classes=[0, 1])

    Xr, yr = reg_data()
    reg = LinearRegression().partial_fit(Xr, yr)
    with pytest.raises(ValueError, match="features"):
        reg.partial_fit(np.hstack([Xr, Xr]), yr)
    with pytest.raises(ValueError, match="targets"):
        reg.partial_fit(Xr, np.column_stack([yr, yr]))


def test_partial_fit_balanced_class_weight_raises():
    X, y = clf_data()
    with pytest.raises(ValueError, match="balanced"):
        LogisticRegression(class_weight="balanced").partial_fit(X, y, classes=[0, 1])


# --------------------------------------------------------------------------- randomness
@pytest.mark.parametrize("Est, data", [(LinearRegression, reg_data), (LogisticRegression, clf_data)])
def test_random_state_reproducible_and_seed_dependent(Est, data):
    X, y = data(n=50)
    kw = dict(shuffle=True, batch_size=7, init="xavier", max_iter=5, tol=None, optimizer="sgd", learning_rate=0.01)
    a = Est(random_state=42, **kw).fit(X, y)
    b = Est(random_state=42, **kw).fit(X, y)
    c = Est(random_state=43, **kw).fit(X, y)
    assert_array_equal(a.coef_, b.coef_)
    assert_array_equal(a.intercept_, b.intercept_)
    assert a.loss_curve_ == b.loss_curve_
    assert not np.allclose(a.coef_, c.coef_, rtol=1e-6, atol=0)
    # xavier initialisation alone depends on the seed
    i1 = Est(random_state=1, init="xavier", max_iter=1, tol=None, learning_rate=1e-12, optimizer="sgd").fit(X, y)
    i2 = Est(random_state=2, init="xavier", max_iter=1, tol=None, learning_rate=1e-12, optimizer="sgd").fit(X, y)
    assert not np.allclose(i1.coef_, i2.coef_)
    # a RandomState instance in the same state also reproduces the fit
    r1 = Est(random_state=np.random.RandomState(5), **kw).fit(X, y)
    r2 = Est(random_state=np.random.RandomState(5), **kw).fit(X, y)
    assert_array_equal(r1.coef_, r2.coef_)


def test_shuffle_draws_a_new_order_every_epoch(monkeypatch):
    X, y = reg_data(n=30)
    spy = KernelSpy(monkeypatch)
    LinearRegression(backend="numba", shuffle=True, random_state=0, max_iter=3, tol=None, batch_size=1).fit(X, y)
    orders = [c["order"] for c in spy.calls]
    assert len(orders) == 3
    for o in orders:
        assert_array_equal(np.sort(o), np.arange(30))
    assert not np.array_equal(orders[0], orders[1])
    assert not np.array_equal(orders[1], orders[2])
    assert not np.array_equal(orders[0], np.arange(30))
    spy.calls.clear()
    LinearRegression(backend="numba", shuffle=False, random_state=0, max_iter=3, tol=None, batch_size=1).fit(X, y)
    for c in spy.calls:
        assert_array_equal(c["order"], np.arange(30))


def test_shuffle_changes_the_result_and_shuffle_false_uses_data_order():
    X, y = reg_data(n=30)
    kw = dict(optimizer="sgd", learning_rate=0.01, max_iter=2, tol=None, batch_size=1, random_state=0)
    shuffled = LinearRegression(shuffle=True, **kw).fit(X, y)
    ordered = LinearRegression(shuffle=False, **kw).fit(X, y)
    assert not np.allclose(shuffled.coef_, ordered.coef_, rtol=1e-8, atol=0)

    # shuffle=False follows the row order: a manual SGD loop over the rows in order
    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(2):
        for i in range(len(y)):
            r = X[i] @ w + b - y[i]
            w, b = w - 0.01 * 2 * r * X[i], b - 0.01 * 2 * r
    assert_allclose(ordered.coef_, w, rtol=1e-10)
    assert_allclose(ordered.intercept_, b, rtol=1e-10)

    perm = np.random.default_rng(0).permutation(len(y))
    permuted = LinearRegression(shuffle=False, **kw).fit(X[perm], y[perm])
    assert not np.allclose(permuted.coef_, ordered.coef_, rtol=1e-8, atol=0)
    # full-batch gradient descent does not depend on the order (up to rounding)
    kw_full = {**kw, "batch_size": None, "max_iter": 20}
    f1 = LinearRegression(shuffle=False, **kw_full).fit(X, y)
    f2 = LinearRegression(shuffle=False, **kw_full).fit(X[perm], y[perm])
    f3 = LinearRegression(shuffle=True, **kw_full).fit(X, y)
    assert_allclose(f1.coef_, f2.coef_, rtol=1e-10)
    assert_allclose(f1.coef_, f3.coef_, rtol=1e-10)


# --------------------------------------------------------------------------- batches
@pytest.mark.parametrize("batch_size", [1, 7, 50, None, 80])
def test_steps_per_epoch(batch_size):
    n = 50
    X, y = reg_data(n=n)
    reg = LinearRegression(batch_size=batch_size, max_iter=3, tol=None, random_state=0).fit(X, y)
    b = n if batch_size is None else min(batch_size, n)
    assert reg.n_iter_ == 3
    assert reg.t_ == 3 * math.ceil(n / b)
    clf = LogisticRegression(batch_size=batch_size, max_iter=2, tol=None, random_state=0).fit(*clf_data(n=n))
    assert clf.t_ == 2 * math.ceil(n / b)


def test_last_smaller_batch_is_kept():
    n = 50  # 7 batches of 7 and one of 1
    X, y = reg_data(n=n)
    kw = dict(optimizer="sgd", learning_rate=0.01, batch_size=7, shuffle=False, max_iter=1, tol=None)
    a = LinearRegression(**kw).fit(X, y)
    assert a.t_ == 8
    y2 = y.copy()
    y2[-1] += 100.0  # the last sample is only in the last batch
    b = LinearRegression(**kw).fit(X, y2)
    assert not np.allclose(a.coef_, b.coef_)
    # manual mini-batch loop, last batch of one sample, mean gradient per batch
    w, c = np.zeros(X.shape[1]), 0.0
    for start in range(0, n, 7):
        Xb, yb = X[start:start + 7], y[start:start + 7]
        r = Xb @ w + c - yb
        w, c = w - 0.01 * 2 * Xb.T @ r / len(yb), c - 0.01 * 2 * r.mean()
    assert_allclose(a.coef_, w, rtol=1e-10)
    assert_allclose(a.intercept_, c, rtol=1e-10)
    # batch sizes >= n are full batch
    full = LinearRegression(**{**kw, "batch_size": None}).fit(X, y)
    for bs in (n, n + 30):
        assert_array_equal(LinearRegression(**{**kw, "batch_size": bs}).fit(X, y).coef_, full.coef_)


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("Est, data", [(LinearRegression, reg_data), (LogisticRegression, clf_data)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_preserved_and_input_not_copied(monkeypatch, Est, data, dtype):
    X, y = data(n=40)
    X = np.ascontiguousarray(X, dtype=dtype)
    spy = KernelSpy(monkeypatch)
    est = Est(backend="numba", max_iter=3, tol=None, batch_size=8, random_state=0).fit(X, y)
    assert len(spy.calls) == 3
    for c in spy.calls:
        assert c["X"].dtype == dtype
        assert np.shares_memory(c["X"], X), "the C-contiguous input was copied"
        assert c["y"].dtype == dtype and c["sw"].dtype == dtype
    assert est.coef_.dtype == dtype
    assert np.asarray(est.intercept_).dtype == dtype
    if Est is LinearRegression:
        assert est.predict(X).dtype == dtype
    else:
        assert est.decision_function(X).dtype == dtype
        assert est.predict_proba(X).dtype == dtype
    spy.calls.clear()
    est.partial_fit(X, y)
    assert np.shares_memory(spy.calls[0]["X"], X)
    assert est.coef_.dtype == dtype


def test_float32_and_float64_agree_roughly():
    X, y = reg_data(n=40)
    a = LinearRegression(max_iter=50, tol=None, shuffle=False, optimizer="sgd", learning_rate=0.05).fit(X, y)
    b = LinearRegression(max_iter=50, tol=None, shuffle=False, optimizer="sgd", learning_rate=0.05).fit(
        X.astype(np.float32), y.astype(np.float32))
    assert b.coef_.dtype == np.float32 and a.coef_.dtype == np.float64
    assert_allclose(b.coef_, a.coef_, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------- sample weights
@pytest.mark.parametrize("Est, data, optimizer", [(LinearRegression, reg_data, "sgd"),
                                                  (LinearRegression, reg_data, "momentum"),
                                                  (LogisticRegression, clf_data, "sgd")])
def test_integer_weights_equal_repeated_rows_full_batch(Est, data, optimizer):
    X, y = data(n=30)
    w = np.random.default_rng(0).integers(1, 4, size=len(y))
    kw = dict(optimizer=optimizer, learning_rate=0.05, batch_size=None, shuffle=False, max_iter=30, tol=None)
    weighted = Est(**kw).fit(X, y, sample_weight=w)
    repeated = Est(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-10, atol=1e-12)
    assert_allclose(weighted.intercept_, repeated.intercept_, rtol=1e-10, atol=1e-12)
    assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("Est, data", [(LinearRegression, reg_data), (LogisticRegression, clf_data)])
def test_zero_weights_equal_removing_rows_full_batch(Est, data):
    X, y = data(n=40)
    keep = np.ones(len(y), dtype=bool)
    keep[::3] = False
    kw = dict(optimizer="sgd", learning_rate=0.05, batch_size=None, shuffle=False, max_iter=30, tol=None)
    zeroed = Est(**kw).fit(X, y, sample_weight=keep.astype(float))
    removed = Est(**kw).fit(X[keep], y[keep])
    assert_allclose(zeroed.coef_, removed.coef_, rtol=1e-10, atol=1e-12)
    assert_allclose(zeroed.loss_curve_, removed.loss_curve_, rtol=1e-10)


def test_negative_and_all_zero_sample_weight_raise():
    X, y = reg_data()
    sw = np.ones(len(y))
    sw[3] = -1.0
    with pytest.raises(ValueError, match="[Nn]egative"):
        LinearRegression().fit(X, y, sample_weight=sw)
    with pytest.raises(ValueError, match="[Nn]egative"):
        LogisticRegression().fit(*clf_data(), sample_weight=sw)
    with pytest.raises(ValueError):
        LinearRegression().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError):
        LinearRegression().fit(X, y, sample_weight=np.ones(len(y) - 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_user_arrays_never_modified(dtype):
    Xr, yr = reg_data(n=40)
    Xc, yc = clf_data(n=40, n_classes=3)
    rng = np.random.default_rng(0)
    for est, X, y, pf in [
        (LinearRegression(max_iter=3, tol=None, batch_size=7, random_state=0), Xr, yr, {}),
        (LinearRegression(max_iter=3, tol=None, early_stopping=True, random_state=0), Xr, yr, {}),
        (LogisticRegression(max_iter=3, tol=None, batch_size=7, random_state=0, class_weight={0: 2.0, 1: 1.0, 2: 0.5}),
         Xc, yc, {"classes": [0, 1, 2]}),
        (LogisticRegression(max_iter=3, tol=None, random_state=0, class_weight="balanced"), Xc, yc, None),
    ]:
        X = np.ascontiguousarray(X, dtype=dtype)
        y = y.astype(dtype) if isinstance(est, LinearRegression) else y.copy()
        sw = rng.uniform(0.5, 3.0, size=len(y)).astype(dtype)
        X0, y0, sw0 = X.copy(), y.copy(), sw.copy()
        est.fit(X, y, sample_weight=sw)
        assert_array_equal(X, X0)
        assert_array_equal(y, y0)
        assert_array_equal(sw, sw0)
        if pf is not None:
            est.partial_fit(X, y, sample_weight=sw)
            type(est)(**est.get_params()).partial_fit(X, y, sample_weight=sw, **pf)
            assert_array_equal(X, X0)
            assert_array_equal(y, y0)
            assert_array_equal(sw, sw0)


def test_class_weight_equals_sample_weight():
    X, y = clf_data(n=60, n_classes=3, flip_y=0.1)
    kw = dict(optimizer="sgd", learning_rate=0.05, batch_size=8, shuffle=True, random_state=0, max_iter=5, tol=None)
    cw = {0: 3.0, 1: 0.5, 2: 1.0}
    a = LogisticRegression(class_weight=cw, **kw).fit(X, y)
    b = LogisticRegression(**kw).fit(X, y, sample_weight=np.array([cw[v] for v in y]))
    assert_allclose(a.coef_, b.coef_, rtol=1e-12, atol=1e-15)
    assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)

    y_unbal = y.copy()
    y_unbal[:25] = 0
    bal = LogisticRegression(class_weight="balanced", **kw).fit(X, y_unbal)
    counts = np.bincount(y_unbal)
    sw = (len(y_unbal) / (3 * counts))[y_unbal]
    b = LogisticRegression(**kw).fit(X, y_unbal, sample_weight=sw)
    assert_allclose(bal.coef_, b.coef_, rtol=1e-12, atol=1e-15)
    # combined with sample_weight: multiplied
    extra = np.random.default_rng(1).uniform(0.5, 2, len(y))
    c = LogisticRegression(class_weight=cw, **kw).fit(X, y, sample_weight=extra)
    d = LogisticRegression(**kw).fit(X, y, sample_weight=extra * np.array([cw[v] for v in y]))
    assert_allclose(c.coef_, d.coef_, rtol=1e-12, atol=1e-15)
    # string labels: dict keys are the labels
    labels = np.array(["a", "b", "c"])[y]
    s = LogisticRegression(class_weight={"a": 3.0, "b": 0.5, "c": 1.0}, **kw).fit(X, labels)
    assert_allclose(s.coef_, a.coef_, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- warm start
def test_warm_start_continues_from_previous_coefficients():
    X, y = reg_data(n=50)
    kw = dict(optimizer="sgd", learning_rate=0.05, batch_size=None, shuffle=False, tol=None)
    reg = LinearRegression(max_iter=5, **kw).fit(X, y)
    prev_coef, prev_int = reg.coef_.copy(), float(reg.intercept_)
    reg.set_params(warm_start=True, max_iter=1)
    reg.fit(X, y)
    # full batch: the first epoch loss is the objective at the starting parameters
    assert reg.loss_curve_[0] == pytest.approx(mse_objective(X, y, prev_coef, prev_int), rel=1e-10)
    assert reg.n_iter_ == 1
    # equals 6 epochs in one go for plain full-batch SGD (no optimizer state)
    assert_allclose(reg.coef_, LinearRegression(max_iter=6, **kw).fit(X, y).coef_, rtol=1e-12)
    cold = LinearRegression(max_iter=1, **kw).fit(X, y)
    assert cold.loss_curve_[0] == pytest.approx(float(np.mean(y**2)), rel=1e-12)

    # warm start reaches convergence in fewer epochs
    kw_tol = dict(optimizer="sgd", learning_rate=0.05, tol=1e-6, max_iter=2000, random_state=0)
    first = LinearRegression(**kw_tol).fit(X, y)
    again = LinearRegression(warm_start=True, **kw_tol).fit(X, y)
    again.fit(X, y)
    assert again.n_iter_ < first.n_iter_
    # without warm_start, fit starts again
    fresh = LinearRegression(**kw_tol).fit(X, y)
    fresh.fit(X, y)
    assert fresh.n_iter_ == first.n_iter_


def test_warm_start_classifier():
    X, y = clf_data(n=50)
    clf = LogisticRegression(max_iter=20, tol=None, warm_start=True, shuffle=False, optimizer="sgd",
                             learning_rate=0.1).fit(X, y)
    c1 = clf.coef_.copy()
    clf.set_params(max_iter=1)
    clf.fit(X, y)
    assert clf.loss_curve_[0] < LogisticRegression(max_iter=1, tol=None).fit(X, y).loss_curve_[0]
    assert np.linalg.norm(clf.coef_ - c1) < 0.1 * np.linalg.norm(c1)


# --------------------------------------------------------------------------- convergence
def test_tol_stops_training_and_convergence_warning():
    X, y = reg_data(n=50)
    X = StandardScaler().fit_transform(X)
    kw = dict(optimizer="sgd", learning_rate=0.1, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg = LinearRegression(tol=1e-4, n_iter_no_change=5, max_iter=1000, **kw).fit(X, y)
    assert reg.n_iter_ < 1000
    L = reg.loss_curve_
    assert len(L) == reg.n_iter_
    assert reg.best_loss_ == min(L)
    # replay the documented test: stop when the loss has not improved on the best loss by tol
    # for n_iter_no_change epochs in a row -- first reached at the last epoch run
    best, bad, stopped_at = np.inf, 0, None
    for k, v in enumerate(L, 1):
        bad = bad + 1 if v > best - 1e-4 else 0
        best = min(best, v)
        if bad >= 5:
            stopped_at = k
            break
    assert stopped_at == reg.n_iter_

    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        LinearRegression(tol=1e-4, max_iter=3, **kw).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        LogisticRegression(tol=1e-4, max_iter=2).fit(*clf_data())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = LinearRegression(tol=None, max_iter=3, **kw).fit(X, y)
        assert r.n_iter_ == 3
        r.partial_fit(X, y)  # partial_fit never warns
        LinearRegression(tol=1e-4, max_iter=1).partial_fit(X, y)


def test_grad_tol_stops_when_gradient_small():
    X, y = reg_data(n=50)
    X = StandardScaler().fit_transform(X)
    kw = dict(optimizer="sgd", learning_rate=0.1, shuffle=False, batch_size=None, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        reg = LinearRegression(tol=None, grad_tol=1e-3, **kw).fit(X, y)
    assert 2 < reg.n_iter_ < 2000
    assert mse_gradient_norm(X, y, reg.coef_, reg.intercept_) < 1e-3
    earlier = LinearRegression(tol=None, **{**kw, "max_iter": reg.n_iter_ - 1}).fit(X, y)
    assert mse_gradient_norm(X, y, earlier.coef_, earlier.intercept_) >= 1e-3
    with pytest.warns(ConvergenceWarning):
        LinearRegression(tol=None, grad_tol=1e-12, **{**kw, "max_iter": 3}).fit(X, y)


def _early_stopping_split(spy, n):
    train = np.unique(spy.calls[0]["order"])
    for c in spy.calls:
        assert_array_equal(np.unique(c["order"]), train)
    val = np.setdiff1d(np.arange(n), train)
    return train, val


@pytest.mark.parametrize("kind", ["reg", "clf"])
def test_early_stopping(monkeypatch, kind):
    n = 200
    if kind == "reg":
        X, y = make_regression(n_samples=n, n_features=5, noise=30, random_state=0)
        est = LinearRegression(optimizer="sgd", learning_rate=0.05, batch_size=1)
    else:
        X, y = make_classification(n_samples=n, n_features=8, n_informative=3, flip_y=0.3, class_sep=0.5,
                                   random_state=0)
        X = X * 3
        est = LogisticRegression(optimizer="sgd", learning_rate=0.5, batch_size=1, penalty=None)
    est.set_params(backend="numba", early_stopping=True, validation_fraction=0.2, tol=1e-3, n_iter_no_change=5,
                   max_iter=200, random_state=0, shuffle=True)
    spy = KernelSpy(monkeypatch)
    est.fit(X, y)
    train, val = _early_stopping_split(spy, n)
    assert len(val) == math.ceil(0.2 * n) and len(train) == n - len(val)
    assert est.t_ == est.n_iter_ * len(train)
    # the signal is the held-out loss (smooth), not a held-out accuracy
    losses = est.validation_loss_curve_
    assert len(losses) == est.n_iter_ < 200
    assert est.best_validation_loss_ == min(losses)
    assert est.best_loss_ is None
    best = int(np.argmin(losses))
    assert losses[-1] > min(losses) and best + 1 < est.n_iter_, "test precondition: best epoch is not the last"
    # the restored parameters are those of the best epoch: their held-out loss is the best
    if kind == "reg":
        held_out = np.mean((est.predict(X[val]) - y[val]) ** 2)
    else:
        held_out = log_loss(y[val], est.predict_proba(X[val]))
    assert held_out == pytest.approx(est.best_validation_loss_, rel=1e-12)
    # ... and a run stopped right after the best epoch ends with the same parameters
    monkeypatch.undo()
    short = type(est)(**{**est.get_params(), "max_iter": best + 1, "tol": None}).fit(X, y)
    assert_array_equal(short.coef_, est.coef_)
    assert short.validation_loss_curve_ == losses[:best + 1]
    # without early stopping the attributes are absent and best_loss_ is set
    est.set_params(early_stopping=False, max_iter=3, tol=None).fit(X, y)
    assert not hasattr(est, "validation_loss_curve_") and not hasattr(est, "best_validation_loss_")
    assert est.best_loss_ == min(est.loss_curve_)


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = reg_data()
    reg = LinearRegression(verbose=1, max_iter=4, tol=None).fit(X, y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == reg.n_iter_ == 4
    for k, ln in enumerate(lines, 1):
        assert ln.startswith(f"Epoch {k}:")
        assert "loss" in ln
    LinearRegression(verbose=0, max_iter=4, tol=None).fit(X, y)
    assert capsys.readouterr().out == ""
    clf = LogisticRegression(verbose=1, max_iter=30, early_stopping=True, random_state=0).fit(*clf_data(n=100))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Epoch")]
    assert len(lines) == clf.n_iter_
    assert all("validation loss" in ln for ln in lines)


# --------------------------------------------------------------------------- penalties
def _sparse_problem():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 10))
    y = X[:, :3] @ np.array([3.0, -2.0, 1.5]) + 0.1 * rng.standard_normal(200)
    return X, y


def test_penalties():
    X, y = _sparse_problem()
    kw = dict(optimizer="sgd", learning_rate=0.05, alpha=0.2, max_iter=500, tol=None, shuffle=False)
    none = LinearRegression(penalty=None, **kw).fit(X, y)
    l2 = LinearRegression(penalty="l2", **kw).fit(X, y)
    l1 = LinearRegression(penalty="l1", **kw).fit(X, y)
    en = LinearRegression(penalty="elasticnet", l1_ratio=0.5, **kw).fit(X, y)
    assert np.all(l1.coef_[3:] == 0.0), "L1 must give exact zeros on irrelevant features"
    assert np.all(l1.coef_[:3] != 0.0)
    assert np.all(none.coef_ != 0.0) and np.all(l2.coef_ != 0.0)
    assert np.linalg.norm(l2.coef_) < np.linalg.norm(none.coef_)
    assert np.all(en.coef_[3:] == 0.0) and np.all(en.coef_[:3] != 0.0)
    assert np.abs(l2.coef_).sum() < np.abs(en.coef_).sum() < np.abs(l1.coef_).sum()
    # the limits of the elastic net are L2 and L1 exactly
    en0 = LinearRegression(penalty="elasticnet", l1_ratio=0.0, **kw).fit(X, y)
    en1 = LinearRegression(penalty="elasticnet", l1_ratio=1.0, **kw).fit(X, y)
    assert_array_equal(en0.coef_, l2.coef_)
    assert_array_equal(en1.coef_, l1.coef_)
    # alpha=0 is no penalty
    for pen in ("l2", "l1", "elasticnet"):
        assert_array_equal(LinearRegression(penalty=pen, **{**kw, "alpha": 0.0}).fit(X, y).coef_, none.coef_)
    # the intercept is not penalised: a large L2 keeps the intercept at the mean of y
    big = LinearRegression(penalty="l2", batch_size=None, **{**kw, "alpha": 10.0}).fit(X, y + 10.0)
    assert np.linalg.norm(big.coef_) < 0.5 * np.linalg.norm(none.coef_)
    assert float(big.intercept_) == pytest.approx(np.mean(y + 10.0) - X.mean(axis=0) @ big.coef_, rel=1e-8)
    assert float(big.intercept_) == pytest.approx(10.0, abs=0.5)
    # loss_curve_ includes the penalty at the epoch start (full batch: the objective)
    l2b = LinearRegression(penalty="l2", batch_size=None, **{**kw, "max_iter": 2}).fit(X, y)
    l2a = LinearRegression(penalty="l2", batch_size=None, **{**kw, "max_iter": 1}).fit(X, y)
    expected = mse_objective(X, y, l2a.coef_, float(l2a.intercept_)) + 0.2 / 2 * np.sum(l2a.coef_**2)
    assert l2b.loss_curve_[1] == pytest.approx(expected, rel=1e-10)


def test_l1_zeros_classifier():
    X, y = _sparse_problem()
    yc = (y > 0).astype(int)
    clf = LogisticRegression(optimizer="sgd", learning_rate=0.1, penalty="l1", alpha=0.05, max_iter=300, tol=None,
                             shuffle=False).fit(X, yc)
    assert np.sum(clf.coef_ == 0.0) >= 5
    assert np.all(clf.coef_[0, :3] != 0.0)


# --------------------------------------------------------------------------- divergence
def _unscaled():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 4)) * 100
    y = X @ np.array([1.0, -2.0, 3.0, 0.5]) + 5
    return X, y


def test_divergence_error_keeps_last_good_epoch():
    X, y = _unscaled()
    kw = dict(optimizer="sgd", learning_rate=1e-3, shuffle=False, tol=None, max_iter=2000)
    reg = LinearRegression(**kw)
    with pytest.raises(DivergenceError) as info:
        reg.fit(X, y)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.epoch is not None and err.epoch > 1
    msg = str(err)
    assert f"epoch {err.epoch}" in msg
    assert "smaller learning_rate" in msg
    assert reg.n_iter_ == err.epoch - 1
    assert len(reg.loss_curve_) == reg.n_iter_
    assert np.all(np.isfinite(reg.coef_)) and np.isfinite(reg.intercept_)
    assert np.all(np.isfinite(reg.loss_curve_))
    assert np.all(np.isfinite(reg.predict(X)))
    last_good = LinearRegression(**{**kw, "max_iter": err.epoch - 1}).fit(X, y)
    assert_array_equal(reg.coef_, last_good.coef_)
    assert reg.t_ == last_good.t_


@pytest.mark.parametrize("Est, data", [(LinearRegression, _unscaled), (LogisticRegression, None)])
def test_divergent_partial_fit_keeps_previous_model(Est, data):
    if data is None:
        X, y = clf_data(n=40)
        X = X * 1e150
        extra = {}
    else:
        X, y = data()
        extra = {}
    est = Est(optimizer="sgd", learning_rate=1e-6, batch_size=1, shuffle=False, tol=None, max_iter=3).fit(X, y)
    before = snapshot(est)
    est.set_params(learning_rate=1e30)
    with pytest.raises(DivergenceError) as info:
        est.partial_fit(X, y, **extra)
    assert info.value.epoch == before["n_iter_"] + 1
    assert_same_snapshot(before, snapshot(est))
    # and the model continues normally afterwards from the same point
    est.set_params(learning_rate=1e-6)
    ref = pickle.loads(pickle.dumps(est))
    est.partial_fit(X, y)
    assert est.n_iter_ == before["n_iter_"] + 1
    assert np.all(np.isfinite(est.coef_))
    ref2 = Est(optimizer="sgd", learning_rate=1e-6, batch_size=1, shuffle=False, tol=None, max_iter=4).fit(X, y)
    assert_allclose(est.coef_, ref2.coef_, rtol=1e-12)
    assert ref.n_iter_ == before["n_iter_"]


# --------------------------------------------------------------------------- bad input
X_OK, Y_OK = reg_data(n=20)
XC_OK, YC_OK = clf_data(n=20)


def _with(a, idx, value):
    a = np.array(a, dtype=float)
    a[idx] = value
    return a


BAD_FITS = {
    "nan_X": lambda: LinearRegression().fit(_with(X_OK, (0, 0), np.nan), Y_OK),
    "inf_X": lambda: LinearRegression().fit(_with(X_OK, (1, 1), np.inf), Y_OK),
    "nan_y": lambda: LinearRegression().fit(X_OK, _with(Y_OK, 2, np.nan)),
    "inf_y": lambda: LinearRegression().fit(X_OK, _with(Y_OK, 2, -np.inf)),
    "nan_X_clf": lambda: LogisticRegression().fit(_with(XC_OK, (0, 0), np.nan), YC_OK),
    "nan_y_clf": lambda: LogisticRegression().fit(XC_OK, _with(YC_OK, 0, np.nan)),
    "X_1d": lambda: LinearRegression().fit(X_OK[:, 0], Y_OK),
    "X_3d": lambda: LinearRegression().fit(X_OK.reshape(20, 2, 2), Y_OK),
    "y_3d": lambda: LinearRegression().fit(X_OK, np.zeros((20, 2, 2))),
    "y_2d_clf": lambda: LogisticRegression().fit(XC_OK, np.column_stack([YC_OK, YC_OK])),
    "lengths": lambda: LinearRegression().fit(X_OK, Y_OK[:-1]),
    "lengths_clf": lambda: LogisticRegression().fit(XC_OK[:-2], YC_OK),
    "sw_length": lambda: LinearRegression().fit(X_OK, Y_OK, sample_weight=np.ones(5)),
    "strings_X": lambda: LinearRegression().fit(np.array([["a", "b"]] * 20), Y_OK),
    "object_X": lambda: LogisticRegression().fit(np.array([[1.0, "x"]] * 20, dtype=object), YC_OK),
    "string_y_reg": lambda: LinearRegression().fit(X_OK, np.array(["a"] * 20)),
    "empty": lambda: LinearRegression().fit(np.empty((0, 3)), np.empty(0)),
    "no_features": lambda: LinearRegression().fit(np.empty((20, 0)), Y_OK),
    "empty_clf": lambda: LogisticRegression().fit(np.empty((0, 3)), np.empty(0)),
    "single_class": lambda: LogisticRegression().fit(XC_OK, np.zeros(20)),
    "continuous_y_clf": lambda: LogisticRegression().fit(XC_OK, np.linspace(0, 1, 20)),
    "negative_sw": lambda: LinearRegression().fit(X_OK, Y_OK, sample_weight=_with(np.ones(20), 0, -1)),
    "nan_sw": lambda: LinearRegression().fit(X_OK, Y_OK, sample_weight=_with(np.ones(20), 0, np.nan)),
    "learning_rate_0": lambda: LinearRegression(learning_rate=0).fit(X_OK, Y_OK),
    "learning_rate_neg": lambda: LogisticRegression(learning_rate=-1.0).fit(XC_OK, YC_OK),
    "batch_size_0": lambda: LinearRegression(batch_size=0).fit(X_OK, Y_OK),
    "batch_size_float": lambda: LinearRegression(batch_size=2.5).fit(X_OK, Y_OK),
    "max_iter_0": lambda: LinearRegression(max_iter=0).fit(X_OK, Y_OK),
    "optimizer_foo": lambda: LinearRegression(optimizer="foo").fit(X_OK, Y_OK),
    "schedule_foo": lambda: LinearRegression(schedule="foo").fit(X_OK, Y_OK),
    "penalty_foo": lambda: LinearRegression(penalty="l3").fit(X_OK, Y_OK),
    "alpha_neg": lambda: LinearRegression(alpha=-1).fit(X_OK, Y_OK),
    "l1_ratio_2": lambda: LinearRegression(l1_ratio=2.0).fit(X_OK, Y_OK),
    "clip_0": lambda: LinearRegression(clip_norm=0.0).fit(X_OK, Y_OK),
    "validation_fraction_1": lambda: LinearRegression(validation_fraction=1.0, early_stopping=True).fit(X_OK, Y_OK),
    "init_foo": lambda: LinearRegression(init="ones").fit(X_OK, Y_OK),
    "backend_foo": lambda: LinearRegression(backend="gpu").fit(X_OK, Y_OK),
    "class_weight_foo": lambda: LogisticRegression(class_weight="auto").fit(XC_OK, YC_OK),
    "class_weight_unknown_label": lambda: LogisticRegression(class_weight={0: 1.0, 7: 2.0}).fit(XC_OK, YC_OK),
    "optimizer_class_not_instance": lambda: LinearRegression(optimizer=SGD).fit(X_OK, Y_OK),
    "early_stopping_too_few": lambda: LogisticRegression(early_stopping=True).fit(XC_OK[:3], [0, 1, 0]),
}


@pytest.mark.parametrize("case", list(BAD_FITS))
def test_bad_input_raises_before_the_kernel(monkeypatch, case):
    spy = KernelSpy(monkeypatch)
    monkeypatch.setenv("FASTGD_BACKEND", "numba")
    LinearRegression(max_iter=1, tol=None).fit(X_OK, Y_OK)  # positive control: the spy sees "auto" fits
    assert len(spy.calls) == 1
    spy.calls.clear()
    with pytest.raises((ValueError, TypeError)):
        BAD_FITS[case]()
    assert spy.calls == [], "the kernel must not be reached with invalid input"


@pytest.mark.parametrize("make", [
    lambda: SGD(momentum=1.5),
    lambda: SGD(momentum=-0.1),
    lambda: SGD(momentum=float("nan")),
    lambda: SGD(nesterov=True),
    lambda: Adam(beta1=1.0),
    lambda: Adam(eps=-1e-8),
    lambda: CosineAnnealing(T_max=0),
    lambda: CosineAnnealing(lr_min=-1.0),
    lambda: PolynomialDecay(power=0.0),
    lambda: StepDecay(step_size=0),
    lambda: StepDecay(step_size=2.5),
    lambda: StepDecay(gamma=-0.5),
    lambda: ExponentialDecay(gamma=float("inf")),
    lambda: ExponentialDecay(unit="minute"),
    lambda: Warmup(CosineAnnealing(), warmup=0),
    lambda: Warmup("foo"),
    lambda: ReduceLROnPlateau(factor=1.5),
    lambda: ReduceLROnPlateau(patience=-1),
])
def test_invalid_optimizer_and_schedule_objects_raise(make):
    with pytest.raises(ValueError):
        make()


def test_predict_before_fit_raises_not_fitted():
    for method in ("predict",):
        with pytest.raises(NotFittedError):
            getattr(LinearRegression(), method)(X_OK)
    for method in ("predict", "predict_proba", "predict_log_proba", "decision_function", "score"):
        args = (XC_OK, YC_OK) if method == "score" else (XC_OK,)
        with pytest.raises(NotFittedError):
            getattr(LogisticRegression(), method)(*args)


@pytest.mark.parametrize("kind", ["reg", "clf"])
def test_failed_partial_fit_leaves_model_unchanged(kind):
    if kind == "reg":
        est = LinearRegression(max_iter=4, tol=None, random_state=0, batch_size=5).fit(X_OK, Y_OK)
        X, y = X_OK, Y_OK
    else:
        est = LogisticRegression(max_iter=4, tol=None, random_state=0, batch_size=5).fit(XC_OK, YC_OK)
        X, y = XC_OK, YC_OK
    before = snapshot(est)
    pred = est.predict(X)
    bad_calls = [
        lambda: est.partial_fit(_with(X, (0, 0), np.nan), y),
        lambda: est.partial_fit(X[:, :2], y),
        lambda: est.partial_fit(X, y[:-1]),
        lambda: est.partial_fit(X, y, sample_weight=_with(np.ones(len(y)), 1, -2.0)),
        lambda: est.partial_fit(X, y, sample_weight=np.zeros(len(y))),
    ]
    if kind == "clf":
        bad_calls.append(lambda: est.partial_fit(X, np.where(y == 0, 9, y)))
    else:
        bad_calls.append(lambda: est.partial_fit(X, _with(y, 0, np.inf)))
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()
        assert_same_snapshot(before, snapshot(est))
    assert_array_equal(est.predict(X), pred)


@pytest.mark.parametrize("kind", ["reg", "clf"])
def test_failed_fit_leaves_model_unchanged(kind):
    if kind == "reg":
        est = LinearRegression(max_iter=4, tol=None, random_state=0, batch_size=5).fit(X_OK, Y_OK)
        X, y = X_OK, Y_OK
        other_y = np.column_stack([Y_OK, Y_OK])  # a valid target of another shape
    else:
        est = LogisticRegression(max_iter=4, tol=None, random_state=0, batch_size=5).fit(XC_OK, YC_OK)
        X, y = XC_OK, YC_OK
        other_y = np.arange(len(YC_OK)) % 3  # valid labels, other classes
    before = snapshot(est)
    pred = est.predict(X)
    neg = _with(np.ones(len(y)), 1, -2.0)
    bad_calls = [
        lambda: est.fit(_with(X, (0, 0), np.inf), y),
        lambda: est.fit(X, y[:-1]),
        lambda: est.fit(X, y, sample_weight=neg),
        lambda: est.fit(X, other_y, sample_weight=neg),
        lambda: est.fit(X, other_y, sample_weight=np.zeros(len(y))),
    ]
    for i, call in enumerate(bad_calls):
        with pytest.raises(ValueError):
            call()
        assert_same_snapshot(before, snapshot(est))
        assert_array_equal(est.predict(X), pred, err_msg=f"bad call {i} changed predictions")
    # the model still trains incrementally from where it was, exactly like an untouched twin
    twin = type(est)(**est.get_params()).fit(X, y)
    est.partial_fit(X, y)
    twin.partial_fit(X, y)
    assert est.n_iter_ == before["n_iter_"] + 1
    assert_array_equal(est.coef_, twin.coef_)
    assert est.loss_curve_ == twin.loss_curve_


# --------------------------------------------------------------------------- compilation
def test_second_fit_adds_no_numba_signature():
    X, y = reg_data(n=30)
    Xc, yc = clf_data(n=30, n_classes=3)
    for dt in (np.float64, np.float32):
        LinearRegression(backend="numba", max_iter=2, tol=None).fit(X.astype(dt), y)
        LogisticRegression(backend="numba", max_iter=2, tol=None).fit(Xc.astype(dt), yc)
    def n_signatures():
        return sum(len(kernel.signatures) for kernel in _numba.COMPILED_KERNELS)

    n_sigs = n_signatures()
    assert n_sigs >= 2
    for dt in (np.float64, np.float32):
        for opt in ("sgd", "adam", "nesterov"):
            LinearRegression(backend="numba", max_iter=2, tol=None, optimizer=opt, batch_size=3,
                             schedule="cosine", penalty="elasticnet").fit(X.astype(dt), y)
            LinearRegression(backend="numba", max_iter=2, tol=None, optimizer=opt).fit(X.astype(dt), np.column_stack([y, y]))
            clf = LogisticRegression(backend="numba", max_iter=2, tol=None, optimizer=opt).fit(Xc.astype(dt), yc)
            clf.partial_fit(Xc.astype(dt), yc)
    # integer, F-ordered and list input are converted to the same kernel types
    LinearRegression(backend="numba", max_iter=2, tol=None).fit(np.asfortranarray(X), y)
    LinearRegression(backend="numba", max_iter=2, tol=None).fit((X * 10).astype(np.int64), y)
    LinearRegression(backend="numba", max_iter=2, tol=None).fit(X.tolist(), y.tolist())
    assert n_signatures() == n_sigs
