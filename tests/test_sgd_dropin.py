"""fastgd.SGDClassifier / SGDRegressor are drop-ins for scikit-learn's: same signature, same
numbers (shuffle=False), same behaviour where the order of samples is random."""

import inspect
import os
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import linear_model as sk
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import fastgd
from fastgd.linear_model._sgd import get_sgd_backend

def _backend_available(name):
    try:
        get_sgd_backend(name)
    except ImportError:
        return False
    return True


CLASSIFIER_LOSSES = ["hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron"]
REGRESSION_LOSSES = ["squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive"]
PENALTIES = ["l2", "l1", "elasticnet", None]
LEARNING_RATES = ["constant", "optimal", "invscaling", "adaptive", "pa1", "pa2"]
AVERAGES = [False, True, 7]


# The statistical comparisons with scikit-learn (full fits on real datasets, several seeds) run
# on a compiled engine whatever FASTGD_BACKEND says: they are about semantics, and the NumPy
# reference would take minutes. The engines are compared with the reference in test_sgd_kernels.
STATISTICS_BACKEND = "cython" if _backend_available("cython") else "numba"


def _data(seed=0, n=40, p=5):
    rng = np.random.default_rng(seed)
    # small features keep every learning rate (optimal starts at alpha^-1/4) in its stable
    # range: on a diverging fit, equal rules still give numbers that differ after rounding
    X = 0.2 * rng.standard_normal((n, p))
    X[rng.random((n, p)) < 0.4] = 0.0
    score = X[:, 0] + X[:, 1] + 0.05 * rng.standard_normal(n)
    y_binary = (score > 0).astype(int)
    y_multi = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    y_reg = 5 * X @ rng.standard_normal(p) + 0.1 * rng.standard_normal(n)
    sw = rng.uniform(0.5, 2.0, n)
    return X, y_binary, y_multi, y_reg, sw


def _coefs(est):
    coef = est.coef_.toarray() if sp.issparse(est.coef_) else est.coef_
    return np.r_[np.ravel(coef), np.ravel(est.intercept_)]


def _assert_same_model(ours, theirs, rtol=1e-8):
    a, b = _coefs(ours), _coefs(theirs)
    # relative to the size of the model: L1 leaves exact zeros next to large weights
    assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)))
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_


def _grid():
    for task, losses in (("binary", CLASSIFIER_LOSSES + REGRESSION_LOSSES), ("multiclass", CLASSIFIER_LOSSES),
                         ("regression", REGRESSION_LOSSES)):
        pa_loss = "epsilon_insensitive" if task == "regression" else "hinge"
        for loss in losses:
            for lr in LEARNING_RATES:
                if lr.startswith("pa") and loss != pa_loss:
                    continue
                for penalty in PENALTIES:
                    yield task, loss, penalty, lr


def _fit_pair(task, params, X, data, fit_params):
    _, y_binary, y_multi, y_reg, sw = data
    if task == "regression":
        return (fastgd.SGDRegressor(**params).fit(X, y_reg, sample_weight=sw, **fit_params),
                sk.SGDRegressor(**params).fit(X, y_reg, sample_weight=sw, **fit_params))
    y = y_binary if task == "binary" else y_multi
    params = dict(params, class_weight={0: 2.0, 1: 0.7, 2: 1.3} if task == "multiclass" else {0: 2.0, 1: 0.7})
    return (fastgd.SGDClassifier(**params).fit(X, y, sample_weight=sw, **fit_params),
            sk.SGDClassifier(**params).fit(X, y, sample_weight=sw, **fit_params))


# (slow_on_reference: the NumPy engine of the drop-ins equals the compiled ones, tests/test_sgd_kernels.py,
# which this test holds to scikit-learn)
@pytest.mark.slow_on_reference
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("average", AVERAGES, ids=lambda a: f"average={a}")
@pytest.mark.parametrize("task,loss,penalty,lr", list(_grid()))
def test_equals_scikit_learn_without_shuffling(task, loss, penalty, lr, average, sparse):
    data = _data()
    X = sp.csr_matrix(data[0]) if sparse else data[0]
    params = dict(loss=loss, penalty=penalty, learning_rate=lr, average=average, shuffle=False, max_iter=4,
                  tol=None, eta0=0.1, alpha=0.05, epsilon=0.05)
    ours, theirs = _fit_pair(task, params, X, data, {})
    _assert_same_model(ours, theirs)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("lr", ["optimal", "adaptive"])
@pytest.mark.parametrize("early_stopping", [False, True])
def test_stopping_rule_equals_scikit_learn(task, lr, early_stopping):
    """tol on the epoch objective, n_iter_no_change, adaptive's divide-by-5, the validation
    split and score: the same number of epochs and the same model."""
    data = _data(n=80)
    loss = "squared_error" if task == "regression" else "log_loss"
    params = dict(loss=loss, learning_rate=lr, eta0=0.1, alpha=0.01, penalty="elasticnet", average=5, shuffle=False,
                  max_iter=200, tol=1e-3, n_iter_no_change=3, early_stopping=early_stopping,
                  validation_fraction=0.2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours, theirs = _fit_pair(task, params, data[0], data, {})
    assert ours.n_iter_ > 3
    _assert_same_model(ours, theirs)


def test_warm_start_and_init_equal_scikit_learn():
    X, y, _, y_reg, sw = _data()
    params = dict(shuffle=False, max_iter=4, tol=None, warm_start=True, average=3, learning_rate="invscaling",
                  eta0=0.1)
    ours, theirs = fastgd.SGDClassifier(**params), sk.SGDClassifier(**params)
    for est in (ours, theirs):
        est.fit(X, y, coef_init=np.ones((1, X.shape[1])), intercept_init=[0.5])
        est.fit(X, y)
    _assert_same_model(ours, theirs)
    reg, sk_reg = fastgd.SGDRegressor(**params), sk.SGDRegressor(**params)
    for est in (reg, sk_reg):
        est.fit(X, y_reg, sample_weight=sw)
        est.set_params(penalty="l1").fit(X, y_reg)
    _assert_same_model(reg, sk_reg)


def _partial_fit_pair(task, params):
    X, y_binary, y_multi, y_reg, sw = _data()
    if task == "regression":
        return fastgd.SGDRegressor(**params), sk.SGDRegressor(**params), X, y_reg, sw, {}
    params = dict(params, loss="modified_huber", alpha=0.01)
    y = y_binary if task == "binary" else y_multi
    return fastgd.SGDClassifier(**params), sk.SGDClassifier(**params), X, y, sw, {"classes": np.unique(y)}


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("penalty", PENALTIES)
def test_partial_fit_equals_scikit_learn_epoch_for_epoch(task, penalty):
    ours, theirs, X, y, sw, kw = _partial_fit_pair(task, dict(penalty=penalty, shuffle=False))
    for _ in range(4):
        ours.partial_fit(X, y, sample_weight=sw, **kw)
        theirs.partial_fit(X, y, sample_weight=sw, **kw)
        _assert_same_model(ours, theirs)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("average", [True, 4])
def test_averaged_partial_fit_keeps_the_plain_intercept(task, average):
    """The first averaged partial_fit equals scikit-learn's. scikit-learn 1.9 then drops the
    non-averaged intercept of a classifier (binary: the next call restarts from the stale
    one; multiclass: it is written over the averaged intercepts); fastgd keeps both, so
    every further call equals the matching fit (test_partial_fit_equals_fit_epoch_for_epoch)."""
    ours, theirs, X, y, sw, kw = _partial_fit_pair(task, dict(average=average, shuffle=False))
    ours.partial_fit(X, y, sample_weight=sw, **kw)
    theirs.partial_fit(X, y, sample_weight=sw, **kw)
    _assert_same_model(ours, theirs)
    ours.partial_fit(X, y, sample_weight=sw, **kw)
    theirs.partial_fit(X, y, sample_weight=sw, **kw)
    if task == "regression":
        _assert_same_model(ours, theirs)
    else:
        assert_allclose(ours._standard_intercept, np.ravel(ours._standard_intercept))
        assert not np.allclose(ours._standard_intercept, theirs._standard_intercept)


@pytest.mark.parametrize("lr", ["constant", "optimal", "invscaling"])
@pytest.mark.parametrize("average", [False, True])
def test_partial_fit_equals_fit_epoch_for_epoch(lr, average):
    """k calls of partial_fit train the model fit(max_iter=k) trains. (Where a fit carries
    state across epochs that scikit-learn's partial_fit restarts -- the L1 penalty's running
    totals, adaptive's current eta -- the two differ in scikit-learn too.)"""
    X, _, y, _, sw = _data()
    params = dict(loss="hinge", learning_rate=lr, eta0=0.1, average=average, shuffle=False, tol=None)
    stream = fastgd.SGDClassifier(**params)
    for k in range(1, 4):
        stream.partial_fit(X, y, classes=np.unique(y), sample_weight=sw)
        fitted = fastgd.SGDClassifier(max_iter=k, **params).fit(X, y, sample_weight=sw)
        assert_allclose(_coefs(stream), _coefs(fitted), rtol=1e-12, atol=1e-14)
        assert stream.t_ == fitted.t_


def test_signatures_match_scikit_learn():
    for ours, theirs in ((fastgd.SGDClassifier, sk.SGDClassifier), (fastgd.SGDRegressor, sk.SGDRegressor)):
        mine = inspect.signature(ours.__init__).parameters
        reference = inspect.signature(theirs.__init__).parameters
        assert list(mine)[: len(reference)] == list(reference)
        assert list(mine)[len(reference):] == ["backend", "optimizer"]
        for name, param in reference.items():
            assert mine[name].default == param.default, name
            assert mine[name].kind == param.kind, name
        for method in ("fit", "partial_fit", "predict", "score", "sparsify", "densify"):
            assert list(inspect.signature(getattr(ours, method)).parameters) == \
                list(inspect.signature(getattr(theirs, method)).parameters), method


@pytest.mark.parametrize("loss", CLASSIFIER_LOSSES)
def test_probabilities_only_where_scikit_learn_has_them(loss):
    X, _, y, _, _ = _data()
    params = dict(loss=loss, shuffle=False, max_iter=5, tol=None, alpha=0.01)
    ours, theirs = fastgd.SGDClassifier(**params).fit(X, y), sk.SGDClassifier(**params).fit(X, y)
    assert hasattr(ours, "predict_proba") == hasattr(theirs, "predict_proba") == (loss in ("log_loss",
                                                                                           "modified_huber"))
    assert not hasattr(ours, "loss_function_") and not hasattr(theirs, "loss_function_")
    assert_array_equal(ours.predict(X), theirs.predict(X))
    assert_allclose(ours.decision_function(X), theirs.decision_function(X), rtol=1e-8, atol=1e-12)
    if hasattr(theirs, "predict_proba"):
        assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8, atol=1e-12)
        with np.errstate(divide="ignore"):
            assert_allclose(ours.predict_log_proba(X), theirs.predict_log_proba(X), rtol=1e-8, atol=1e-12)


def test_shapes_sparsify_and_pickle():
    X, y, y_multi, y_reg, _ = _data()
    clf = fastgd.SGDClassifier(random_state=0).fit(X, y)
    assert clf.coef_.shape == (1, X.shape[1]) and clf.intercept_.shape == (1,)
    multi = fastgd.SGDClassifier(random_state=0).fit(X, y_multi)
    assert multi.coef_.shape == (3, X.shape[1]) and multi.intercept_.shape == (3,)
    reg = fastgd.SGDRegressor(random_state=0).fit(X, y_reg)
    assert reg.coef_.shape == (X.shape[1],) and reg.intercept_.shape == (1,)
    before = multi.decision_function(X)
    assert sp.issparse(multi.sparsify().coef_)
    assert_allclose(multi.decision_function(X), before)
    assert isinstance(multi.densify().coef_, np.ndarray)
    for est in (clf, multi, reg):
        clone = pickle.loads(pickle.dumps(est))
        assert_array_equal(clone.predict(X), est.predict(X))
        clone.partial_fit(X, y_reg if est is reg else (y if est is clf else y_multi))  # training continues


def test_multiclass_threads_give_the_same_model():
    X, _, y, _, sw = _data(n=200, p=20)
    serial = fastgd.SGDClassifier(loss="log_loss", random_state=3, n_jobs=1).fit(X, y, sample_weight=sw)
    threaded = fastgd.SGDClassifier(loss="log_loss", random_state=3, n_jobs=2).fit(X, y, sample_weight=sw)
    assert_array_equal(serial.coef_, threaded.coef_)
    assert_array_equal(serial.intercept_, threaded.intercept_)


def _scaled_split(X, y):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


# digits (10 classes, 64 features) is the slowest: the default loss only
@pytest.mark.parametrize("dataset,loss", [(d, loss) for d in ("iris", "breast_cancer", "make_classification")
                                          for loss in ("hinge", "log_loss", "modified_huber")] + [("digits", "hinge")])
def test_shuffled_test_score_equals_scikit_learn_within_noise(dataset, loss):
    """With shuffle=True the epochs see another random order than scikit-learn's; over seeds,
    the mean test accuracy is the same within the spread of either."""
    if dataset == "make_classification":
        X, y = make_classification(n_samples=600, n_features=20, n_informative=8, n_classes=3, random_state=0)
    else:
        X, y = {"iris": load_iris, "digits": load_digits, "breast_cancer": load_breast_cancer}[dataset](
            return_X_y=True)
    X_train, X_test, y_train, y_test = _scaled_split(X, y)
    ours, theirs = [], []
    for seed in range(5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ours.append(fastgd.SGDClassifier(loss=loss, random_state=seed, backend=STATISTICS_BACKEND)
                        .fit(X_train, y_train).score(X_test, y_test))
            theirs.append(sk.SGDClassifier(loss=loss, random_state=seed).fit(X_train, y_train).score(X_test, y_test))
    spread = max(np.std(ours), np.std(theirs), 1.0 / len(y_test))
    assert abs(np.mean(ours) - np.mean(theirs)) <= 3 * spread + 0.01


def test_shuffled_regression_score_equals_scikit_learn_within_noise():
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = _scaled_split(X, y)
    ours = [fastgd.SGDRegressor(random_state=s, backend=STATISTICS_BACKEND).fit(X_train, y_train).score(X_test, y_test)
            for s in range(5)]
    theirs = [sk.SGDRegressor(random_state=s).fit(X_train, y_train).score(X_test, y_test) for s in range(5)]
    assert abs(np.mean(ours) - np.mean(theirs)) <= 3 * max(np.std(ours), np.std(theirs)) + 0.01


def test_convergence_warning_as_scikit_learn():
    X, y, _, _, _ = _data()
    with pytest.warns(ConvergenceWarning, match="Maximum number of iteration"):
        fastgd.SGDClassifier(max_iter=2).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fastgd.SGDClassifier(max_iter=2, tol=None).fit(X, y)


def test_invalid_combinations_raise_like_scikit_learn():
    X, y, _, _, _ = _data()
    for params in ({"learning_rate": "optimal", "alpha": 0}, {"learning_rate": "pa1", "loss": "log_loss"}):
        with pytest.raises(ValueError):
            fastgd.SGDClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="early_stopping should be False"):
        fastgd.SGDClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1])


def test_failed_partial_fit_leaves_the_model_unchanged():
    X, y, _, _, _ = _data()
    clf = fastgd.SGDClassifier(random_state=0).fit(X, y)
    coef, t = clf.coef_.copy(), clf.t_
    with pytest.raises(ValueError):
        clf.partial_fit(X[:, :3], y)
    with pytest.raises(ValueError):
        clf.partial_fit(np.full_like(X, np.nan), y)
    assert_array_equal(clf.coef_, coef)
    assert clf.t_ == t
    user_X = X.copy()
    fastgd.SGDClassifier(random_state=0).fit(user_X, y)
    assert_array_equal(user_X, X)


@pytest.mark.parametrize("estimator", [fastgd.SGDClassifier, fastgd.SGDRegressor])
def test_malformed_csr_is_refused_before_training(estimator):
    """A column index past n_features would make the kernels write outside the weights: the
    structure is checked once per fit and partial_fit, and the fitted model stays as it was."""
    X, y, _, y_reg, _ = _data()
    target = y if estimator is fastgd.SGDClassifier else y_reg
    est = estimator(random_state=0).fit(sp.csr_matrix(X), target)
    coef = np.array(est.coef_, copy=True)
    bad = sp.csr_matrix(X)
    bad.indices[3] = X.shape[1] + 1000
    with pytest.raises(ValueError, match="column indices must lie in"):
        est.partial_fit(bad, target)
    assert_array_equal(est.coef_, coef)
    with pytest.raises(ValueError, match="column indices must lie in"):
        estimator(random_state=0).fit(bad, target)


def test_overflow_raises_scikit_learns_error():
    X, _, _, y, _ = _data()
    params = dict(learning_rate="constant", eta0=1.0, penalty=None, shuffle=False)
    for est in (fastgd.SGDRegressor(**params), sk.SGDRegressor(**params)):
        with pytest.raises(ValueError, match="Floating-point under-/overflow occurred at epoch #1"):
            est.fit(1e200 * X, 1e200 * y)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_other_optimizers_use_the_main_engine(task):
    X, y, _, y_reg, _ = _data(n=200)
    if task == "binary":
        est = fastgd.SGDClassifier(loss="log_loss", optimizer="adam", eta0=0.01, random_state=0).fit(X, y)
        assert all(isinstance(e, fastgd.LogisticRegression) and e.optimizer == "adam" for e in est._engines)
        assert est.score(X, y) > 0.8 and est.coef_.shape == (1, X.shape[1])
        est.partial_fit(X, y)
    else:
        est = fastgd.SGDRegressor(optimizer="adam", eta0=0.01, random_state=0).fit(X, y_reg)
        assert all(isinstance(e, fastgd.LinearRegression) for e in est._engines)
        assert est.score(X, y_reg) > 0.9 and est.coef_.shape == (X.shape[1],)


def test_backend_selection_honours_the_environment(monkeypatch):
    monkeypatch.setenv("FASTGD_BACKEND", "numpy")
    assert get_sgd_backend("auto").name == "numpy"
    with pytest.raises(ValueError):
        fastgd.SGDClassifier(backend="fortran").fit(*_data()[:2])


def test_float32_stays_float32_and_near_float64():
    X, y, _, y_reg, _ = _data()
    for est, target in ((fastgd.SGDClassifier, y), (fastgd.SGDRegressor, y_reg)):
        params = dict(shuffle=False, max_iter=5, tol=None)
        m32 = est(**params).fit(X.astype(np.float32), target)
        m64 = est(**params).fit(X, target)
        assert m32.coef_.dtype == np.float32
        assert_allclose(_coefs(m32), _coefs(m64), rtol=1e-4, atol=1e-5 * np.max(np.abs(_coefs(m64))))


def test_importing_fastgd_loads_the_dropins_only_when_used():
    """`import fastgd` stays as quick as before: the drop-ins (and scikit-learn's
    linear_model they build on) load on first use."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys, fastgd; assert 'fastgd.linear_model._sgd' not in sys.modules; "
            "from fastgd import SGDRegressor; assert SGDRegressor is fastgd.linear_model._sgd.SGDRegressor")
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
