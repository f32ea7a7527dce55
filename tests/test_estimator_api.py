"""What a scikit-learn user expects from the estimators' public API."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastgd import LinearRegression, LogisticRegression
from fastgd.optim import SGD, Adam
from fastgd.schedules import CosineAnnealing, StepDecay, Warmup


def reg_data(n=120, p=5, n_targets=1, seed=0, noise=1.0):
    X, y = make_regression(n_samples=n, n_features=p, n_informative=p, n_targets=n_targets,
                           noise=noise, random_state=seed)
    return X, y


def clf_data(n=150, p=5, n_classes=2, seed=0):
    X, y = make_classification(n_samples=n, n_features=p, n_informative=3, n_redundant=0,
                               n_classes=n_classes, n_clusters_per_class=1, class_sep=2.0,
                               random_state=seed)
    return X, y


# --------------------------------------------------------------------------- composition
def test_pipeline_with_standard_scaler():
    X, y = reg_data()
    X = X * np.array([1e3, 1e-2, 1.0, 50.0, 1e2]) + 100.0  # badly scaled, off-centre
    pipe = make_pipeline(StandardScaler(), LinearRegression(optimizer="sgd", learning_rate=0.1, random_state=0, max_iter=300))
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.99
    assert pipe[-1].n_features_in_ == 5

    Xc, yc = clf_data()
    Xc = Xc * 1e3 + 7.0
    pipe = make_pipeline(StandardScaler(), LogisticRegression(learning_rate=0.05, random_state=0, max_iter=200))
    pipe.fit(Xc, yc)
    assert pipe.score(Xc, yc) > 0.95
    assert_array_equal(pipe.predict(Xc), pipe[-1].predict(pipe[0].transform(Xc)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_over_optimizer_names_and_batch_sizes():
    X, y = clf_data(n=120)
    X = StandardScaler().fit_transform(X)
    grid = {"optimizer": ["sgd", "momentum", "adam"], "batch_size": [1, 32, None]}
    gs = GridSearchCV(LogisticRegression(max_iter=15, tol=None, random_state=0, learning_rate=0.01),
                      grid, cv=StratifiedKFold(3))
    gs.fit(X, y)
    assert len(gs.cv_results_["params"]) == 9
    scores = gs.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores))
    assert gs.best_score_ > 0.85
    # the parameters really were applied: they lead to different models
    assert len(np.unique(np.round(scores, 12))) > 1
    best = gs.best_estimator_
    assert best.optimizer == gs.best_params_["optimizer"]
    assert best.batch_size == gs.best_params_["batch_size"]
    # steps per epoch follow the batch size of the refitted model
    n = len(y)
    b = n if best.batch_size is None else best.batch_size
    assert best.t_ == best.n_iter_ * int(np.ceil(n / b))


def test_grid_search_over_optimizer_objects():
    X, y = reg_data(n=90)
    opts = [SGD(momentum=0.9, nesterov=True), SGD(), Adam(beta1=0.5)]
    gs = GridSearchCV(LinearRegression(max_iter=20, tol=None, shuffle=False, learning_rate=0.01),
                      {"optimizer": opts}, cv=KFold(3))
    gs.fit(X, y)
    assert [p["optimizer"] for p in gs.cv_results_["params"]] == opts
    scores = gs.cv_results_["mean_test_score"]
    assert len(np.unique(np.round(scores, 12))) == 3
    best = gs.best_estimator_
    assert best.optimizer == opts[int(np.argmax(scores))]
    # the refit model equals a direct fit with that optimizer object
    direct = LinearRegression(max_iter=20, tol=None, shuffle=False, learning_rate=0.01,
                              optimizer=best.optimizer).fit(X, y)
    assert_allclose(best.coef_, direct.coef_, rtol=1e-12)


def test_cross_val_score():
    X, y = reg_data(n=150)
    s = cross_val_score(LinearRegression(optimizer="sgd", learning_rate=0.1, max_iter=300, random_state=0), X, y, cv=5)
    assert s.shape == (5,) and np.all(s > 0.99)
    Xc, yc = clf_data(n=150, n_classes=3)
    s = cross_val_score(LogisticRegression(learning_rate=0.05, max_iter=200, random_state=0), Xc, yc, cv=3)
    assert s.shape == (3,) and np.all(s > 0.8)


# --------------------------------------------------------------------------- clone / pickle
def test_clone_keeps_optimizer_and_schedule_objects():
    opt = SGD(momentum=0.9, nesterov=True)
    sched = Warmup(CosineAnnealing(lr_min=1e-4), warmup=5)
    est = LinearRegression(optimizer=opt, schedule=sched, batch_size=8, max_iter=10, tol=None,
                           random_state=3, learning_rate=0.01)
    X, y = reg_data()
    est.fit(X, y)
    c = clone(est)
    assert c.get_params()["optimizer"] == opt
    assert c.get_params()["schedule"] == sched
    assert c.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        c.predict(X)
    c.fit(X, y)
    assert_array_equal(c.coef_, est.coef_)
    assert c.intercept_ == est.intercept_
    assert c.loss_curve_ == est.loss_curve_

    clf = LogisticRegression(optimizer=Adam(amsgrad=True), schedule=StepDecay(step_size=2), class_weight={0: 2.0, 1: 1.0})
    c = clone(clf)
    assert c.get_params() == clf.get_params()


@pytest.mark.parametrize("kind", ["reg", "clf"])
def test_pickle_round_trip_and_partial_fit_continues_identically(kind):
    if kind == "reg":
        X, y = reg_data()
        est = LinearRegression(optimizer="adam", batch_size=16, max_iter=5, tol=None, random_state=0)
        extra = {}
    else:
        X, y = clf_data(n_classes=3)
        est = LogisticRegression(optimizer="momentum", batch_size=16, max_iter=5, tol=None, random_state=0)
        extra = {}
    est.fit(X, y)
    est2 = pickle.loads(pickle.dumps(est))
    assert_array_equal(est2.predict(X), est.predict(X))
    if kind == "clf":
        assert_array_equal(est2.predict_proba(X), est.predict_proba(X))
    for _ in range(3):  # shuffle=True: the random generator state must survive pickling too
        est.partial_fit(X, y, **extra)
        est2.partial_fit(X, y, **extra)
    assert_array_equal(est2.coef_, est.coef_)
    assert_array_equal(est2.intercept_, est.intercept_)
    assert est2.t_ == est.t_ and est2.n_iter_ == est.n_iter_ == 8
    assert est2.loss_curve_ == est.loss_curve_


# --------------------------------------------------------------------------- classifier API
def _fit_separable(labels, seed=0, **kw):
    X, y = clf_data(n=150, n_classes=len(labels), seed=seed)
    y_lab = np.asarray(labels)[y]
    clf = LogisticRegression(learning_rate=0.1, max_iter=200, random_state=0, **kw).fit(X, y_lab)
    return clf, X, y_lab


@pytest.mark.parametrize("labels", [["spam", "ham"], ["dog", "cat", "eel"], [7, -3], [10, 2, 5, 1]])
def test_string_and_integer_labels_and_classes_order(labels):
    clf, X, y = _fit_separable(labels)
    assert_array_equal(clf.classes_, np.unique(labels))
    pred = clf.predict(X)
    assert pred.dtype == np.asarray(labels).dtype
    assert set(np.unique(pred)) <= set(labels)
    assert np.mean(pred == y) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (len(y), len(labels))
    # column j is the probability of classes_[j]
    for j, c in enumerate(clf.classes_):
        assert proba[y == c, j].mean() > 0.6
    assert_array_equal(clf.classes_[np.argmax(proba, axis=1)], pred)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_predict_proba_rows_sum_to_one_and_log_proba(n_classes):
    X, y = clf_data(n_classes=n_classes)
    clf = LogisticRegression(max_iter=50, tol=None, random_state=0, learning_rate=0.05).fit(X, y)
    proba = clf.predict_proba(X)
    assert np.all(proba >= 0) and np.all(proba <= 1)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_array_equal(clf.classes_[np.argmax(proba, axis=1)], clf.predict(X))
    assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-10, atol=1e-12)

    # huge margins: log-probabilities stay finite and exact where log(proba) underflows
    Xh = X * 1e5
    logp = clf.predict_log_proba(Xh)
    assert np.all(np.isfinite(logp))
    assert np.all(logp <= 0)
    z = clf.decision_function(Xh)
    if n_classes == 2:
        z = np.column_stack([np.zeros_like(z), z])
    zmax = z.max(axis=1, keepdims=True)
    expected = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
    assert_allclose(logp, expected, rtol=1e-9, atol=1e-9)
    assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=1e-12)


def test_decision_function_and_coef_shapes_classifier():
    X, y = clf_data(p=4, n_classes=2)
    clf = LogisticRegression(max_iter=5, tol=None).fit(X, y)
    assert clf.decision_function(X).shape == (len(y),)
    assert clf.coef_.shape == (1, 4) and clf.intercept_.shape == (1,)
    assert_allclose(clf.decision_function(X), X @ clf.coef_[0] + clf.intercept_[0], rtol=1e-12)
    assert_array_equal(clf.predict(X), clf.classes_[(clf.decision_function(X) > 0).astype(int)])

    X3, y3 = clf_data(p=4, n_classes=3)
    clf = LogisticRegression(max_iter=5, tol=None).fit(X3, y3)
    assert clf.decision_function(X3).shape == (len(y3), 3)
    assert clf.coef_.shape == (3, 4) and clf.intercept_.shape == (3,)
    assert_allclose(clf.decision_function(X3), X3 @ clf.coef_.T + clf.intercept_, rtol=1e-12)


def test_coef_shapes_regression():
    X, y = reg_data(p=4)
    reg = LinearRegression(max_iter=5, tol=None).fit(X, y)
    assert reg.coef_.shape == (4,)
    assert np.ndim(reg.intercept_) == 0
    assert isinstance(reg.intercept_, (float, np.floating)) and np.isfinite(reg.intercept_)
    assert reg.predict(X).shape == (len(y),)
    assert_allclose(reg.predict(X), X @ reg.coef_ + reg.intercept_, rtol=1e-12)

    X2, Y2 = reg_data(p=4, n_targets=3)
    reg = LinearRegression(max_iter=5, tol=None).fit(X2, Y2)
    assert reg.coef_.shape == (3, 4) and reg.intercept_.shape == (3,)
    assert reg.predict(X2).shape == (len(Y2), 3)
    assert_allclose(reg.predict(X2), X2 @ reg.coef_.T + reg.intercept_, rtol=1e-12)

    # a single target given as a column keeps the 2-D conventions
    reg = LinearRegression(max_iter=5, tol=None).fit(X, y.reshape(-1, 1))
    assert reg.coef_.shape == (1, 4) and reg.intercept_.shape == (1,)
    assert reg.predict(X).shape == (len(y), 1)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad", "rmsprop", SGD(momentum=0.9, nesterov=True)])
@pytest.mark.parametrize("batch_size", [None, 8])
def test_multi_output_equals_separate_fits(optimizer, batch_size):
    X, Y = reg_data(n=60, p=4, n_targets=3)
    kw = dict(optimizer=optimizer, batch_size=batch_size, max_iter=15, tol=None, learning_rate=0.01,
              shuffle=True, random_state=1, clip_norm=None)
    multi = LinearRegression(**kw).fit(X, Y)
    singles = [LinearRegression(**kw).fit(X, Y[:, k]) for k in range(3)]
    for k, s in enumerate(singles):
        assert_allclose(multi.coef_[k], s.coef_, rtol=1e-9, atol=1e-12)
        assert_allclose(multi.intercept_[k], s.intercept_, rtol=1e-9, atol=1e-12)
    # the loss is summed over outputs
    assert_allclose(multi.loss_curve_, np.sum([s.loss_curve_ for s in singles], axis=0), rtol=1e-9)


# --------------------------------------------------------------------------- feature bookkeeping
def test_feature_names_in_with_dataframe():
    X, y = reg_data(p=3)
    df = pd.DataFrame(X, columns=["alpha", "beta", "gamma"])
    reg = LinearRegression(max_iter=5, tol=None).fit(df, y)
    assert_array_equal(reg.feature_names_in_, ["alpha", "beta", "gamma"])
    assert reg.n_features_in_ == 3
    with pytest.warns(UserWarning, match="valid feature names"):
        pred_plain = reg.predict(X)
    assert_allclose(reg.predict(df), pred_plain, rtol=1e-12)
    with pytest.raises(ValueError, match="feature names"):
        reg.predict(df.set_axis(["zeta", "beta", "gamma"], axis=1))
    # a later fit on a plain array drops the names
    reg.fit(X, y)
    assert not hasattr(reg, "feature_names_in_")

    Xc, yc = clf_data(p=3)
    clf = LogisticRegression(max_iter=5, tol=None).fit(pd.DataFrame(Xc, columns=["a", "b", "c"]), pd.Series(yc))
    assert_array_equal(clf.feature_names_in_, ["a", "b", "c"])


def test_n_features_in_and_feature_count_mismatch():
    X, y = reg_data(p=6)
    reg = LinearRegression(max_iter=3, tol=None).fit(X, y)
    assert reg.n_features_in_ == 6
    assert not hasattr(reg, "feature_names_in_")
    with pytest.raises(ValueError, match="features"):
        reg.predict(X[:, :5])
    Xc, yc = clf_data(p=4)
    clf = LogisticRegression(max_iter=3, tol=None).fit(Xc, yc)
    assert clf.n_features_in_ == 4
    with pytest.raises(ValueError, match="features"):
        clf.predict_proba(np.hstack([Xc, Xc]))


def test_predictions_follow_edited_public_coefficients():
    # As with scikit-learn's linear models, predictions come from coef_ and intercept_.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    reg = LinearRegression(max_iter=3, tol=None).fit(X, X @ [1.0, 2.0, 3.0])
    reg.coef_ = np.array([1.0, 0.0, -1.0])
    reg.intercept_ = 0.5
    np.testing.assert_allclose(reg.predict(X), X @ [1.0, 0.0, -1.0] + 0.5)
    clf = LogisticRegression(max_iter=3, tol=None).fit(X, np.arange(30) % 3)
    clf.coef_ = np.eye(3)
    clf.intercept_ = np.zeros(3)
    np.testing.assert_allclose(clf.decision_function(X), X)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[np.argmax(X, axis=1)])
