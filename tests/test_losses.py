"""scikit-learn's SGD losses in fastgd's main engine.

Specification:

- each loss's per-sample value and derivative (the NumPy reference in ``fastgd.losses`` and
  the compiled rule ``_rules.loss_1``) equal scikit-learn's definitions, written out here
  independently and, where scikit-learn exposes them, its own ``_sgd_fast`` loss objects; the
  derivative passes a finite-difference check away from the kinks;
- every compiled entry point (dense per-sample, mini-batch, full batch, multi-core chunked,
  CSR lazy and running-scale paths, the full gradient) equals the NumPy reference to rtol
  1e-10 in float64 for every new loss;
- ``learning_rate="auto"`` refuses the non-smooth losses with plain SGD and sizes a step from
  the curvature bound for the smooth ones;
- the drop-ins train every loss with any fastgd optimizer, one-vs-rest, with class and sample
  weights, in threads under ``n_jobs``, transactionally, and pass scikit-learn's checks.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification, make_regression
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastgd
from fastgd import _contract as C
from fastgd import _step_size, losses
from fastgd._backends import available, get_backend
from fastgd.linear_model import _sgd_main_engine

COMPILED = [b for b in ("numba", "cython") if available(b)]
BINARY = [C.LOSS_HINGE, C.LOSS_SQUARED_HINGE, C.LOSS_MODIFIED_HUBER, C.LOSS_PERCEPTRON]
REGRESSION = [C.LOSS_HUBER, C.LOSS_EPSILON_INSENSITIVE, C.LOSS_SQUARED_EPSILON_INSENSITIVE]
NEW_LOSSES = BINARY + REGRESSION
PARAM = 0.3  # Huber's delta / the epsilon-insensitive margin in these tests


def _sklearn_definition(code, p, y, par):
    """scikit-learn's per-sample loss and d loss / d p (``sklearn/linear_model/_sgd_fast``),
    classification targets in {-1, 1}."""
    if code in (C.LOSS_HINGE, C.LOSS_PERCEPTRON):
        threshold = 1.0 if code == C.LOSS_HINGE else 0.0
        return (threshold - p * y, -y) if p * y <= threshold else (0.0, 0.0)
    if code == C.LOSS_SQUARED_HINGE:
        z = 1.0 - p * y
        return (z * z, -2.0 * y * z) if z > 0 else (0.0, 0.0)
    if code == C.LOSS_MODIFIED_HUBER:
        z = p * y
        if z >= 1.0:
            return 0.0, 0.0
        return ((1.0 - z) ** 2, -2.0 * (1.0 - z) * y) if z >= -1.0 else (-4.0 * z, -4.0 * y)
    if code == C.LOSS_HUBER:
        r = p - y
        return (0.5 * r * r, r) if abs(r) <= par else (par * abs(r) - 0.5 * par * par, par if r > 0 else -par)
    if code == C.LOSS_EPSILON_INSENSITIVE:
        value = max(0.0, abs(y - p) - par)
        return value, (-1.0 if y - p > par else (1.0 if p - y > par else 0.0))
    value = max(0.0, abs(y - p) - par) ** 2
    z = y - p
    return value, (-2.0 * (z - par) if z > par else (2.0 * (-z - par) if z < -par else 0.0))


def _points(code):
    """Margins and targets covering every branch, the kinks themselves included (targets in
    the contract's encoding: {0, 1} for the binary losses)."""
    margins = np.array([-3.0, -1.2, -1.0, -0.4, 0.0, 0.3, 0.7, 1.0, 1.5, 4.0])
    targets = [0.0, 1.0] if code in BINARY else [-0.5, 0.0, 0.7]
    z = np.repeat(margins, len(targets))
    y = np.tile(targets, len(margins))
    return z, y


def _sign(code, y):
    return 2.0 * y - 1.0 if code in BINARY else y


@pytest.mark.parametrize("code", NEW_LOSSES, ids=lambda c: losses.NAMES[c])
def test_numpy_loss_equals_scikit_learn_definition(code):
    z, y = _points(code)
    value, d = losses.evaluate(code, z[:, None], y[:, None], PARAM)
    expected = np.array([_sklearn_definition(code, zi, _sign(code, yi), PARAM) for zi, yi in zip(z, y)])
    assert_allclose(value, expected[:, 0], rtol=1e-15, atol=0)
    assert_allclose(d[:, 0], expected[:, 1], rtol=1e-15, atol=0)


@pytest.mark.parametrize("code", NEW_LOSSES, ids=lambda c: losses.NAMES[c])
def test_compiled_rule_equals_scikit_learn_definition(code):
    from fastgd._backends import _numba, _rules  # noqa: F401  (importing _numba compiles the rules)

    hp = np.zeros(C.N_HP)
    hp[C.H_LOSS_PARAM] = PARAM
    z, y = _points(code)
    for zi, yi in zip(z, y):
        got = _rules.loss_1(code, zi, yi, hp)
        assert got == pytest.approx(_sklearn_definition(code, zi, _sign(code, yi), PARAM), rel=1e-15, abs=0)


_SKLEARN_OBJECTS = {
    C.LOSS_HINGE: ("Hinge", (1.0,)), C.LOSS_PERCEPTRON: ("Hinge", (0.0,)),
    C.LOSS_SQUARED_HINGE: ("SquaredHinge", (1.0,)), C.LOSS_MODIFIED_HUBER: ("ModifiedHuber", ()),
    C.LOSS_EPSILON_INSENSITIVE: ("EpsilonInsensitive", (PARAM,)),
    C.LOSS_SQUARED_EPSILON_INSENSITIVE: ("SquaredEpsilonInsensitive", (PARAM,)),
}


@pytest.mark.parametrize("code", list(_SKLEARN_OBJECTS), ids=lambda c: losses.NAMES[c])
def test_numpy_loss_equals_scikit_learns_own_loss_objects(code):
    """scikit-learn's private loss objects, where this version has them (Huber lives in its
    common loss module without per-sample Python access: the definition above covers it)."""
    sgd_fast = pytest.importorskip("sklearn.linear_model._sgd_fast")
    name, args = _SKLEARN_OBJECTS[code]
    if not hasattr(getattr(sgd_fast, name, None), "py_dloss"):
        pytest.skip(f"this scikit-learn has no sgd_fast.{name}.py_dloss")
    loss = getattr(sgd_fast, name)(*args)
    z, y = _points(code)
    value, d = losses.evaluate(code, z[:, None], y[:, None], PARAM)
    sy = _sign(code, y)
    assert_allclose(value, [loss.py_loss(zi, yi) for zi, yi in zip(z, sy)], rtol=1e-15, atol=0)
    assert_allclose(d[:, 0], [loss.py_dloss(zi, yi) for zi, yi in zip(z, sy)], rtol=1e-15, atol=0)


@pytest.mark.parametrize("code", NEW_LOSSES, ids=lambda c: losses.NAMES[c])
def test_derivative_passes_finite_differences_away_from_kinks(code):
    rng = np.random.default_rng(0)
    z = rng.uniform(-3, 3, 200)
    y = rng.integers(0, 2, 200).astype(float) if code in BINARY else rng.uniform(-1, 1, 200)
    # a kink within h of z would make the central difference meaningless: keep the others
    kinks = {C.LOSS_HINGE: [1.0], C.LOSS_PERCEPTRON: [0.0], C.LOSS_SQUARED_HINGE: [1.0],
             C.LOSS_MODIFIED_HUBER: [1.0, -1.0]}.get(code, [PARAM, -PARAM])
    gap = np.min([np.abs(_sign(code, y) * z - k) if code in BINARY else np.abs(z - y - k) for k in kinks], axis=0)
    z, y = z[gap > 1e-3], y[gap > 1e-3]
    h = 1e-6
    plus, _ = losses.evaluate(code, (z + h)[:, None], y[:, None], PARAM)
    minus, _ = losses.evaluate(code, (z - h)[:, None], y[:, None], PARAM)
    _, d = losses.evaluate(code, z[:, None], y[:, None], PARAM)
    assert len(z) > 150
    assert_allclose(d[:, 0], (plus - minus) / (2 * h), rtol=1e-6, atol=1e-8)


# --- every compiled entry point against the reference ----------------------------------------
N, P = 40, 6


def _kernel_problem(code, dtype=np.float64):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, P)).astype(dtype)
    X[rng.random((N, P)) < 0.4] = 0.0  # the same values dense and CSR
    if code in BINARY:
        y = rng.integers(0, 2, (N, 1)).astype(dtype)
    else:
        y = rng.standard_normal((N, 1)).astype(dtype)
    sw = rng.uniform(0.5, 1.5, N).astype(dtype)
    coef = (0.5 * rng.standard_normal((P + 1, 1))).astype(dtype)  # margins on every branch
    return X, y, sw, coef, rng.permutation(N).astype(np.int64)


def _kernel_arrays(code, optimizer, l1=0.0):
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    hp = np.zeros(C.N_HP)
    codes[C.C_LOSS] = code
    codes[C.C_OPTIMIZER] = optimizer
    hp[C.H_LR], hp[C.H_LR_SCALE] = 0.05, 1.0
    hp[C.H_BETA1], hp[C.H_BETA2], hp[C.H_EPS] = 0.9, 0.999, 1e-8
    hp[C.H_L2], hp[C.H_L1] = 0.01, l1
    hp[C.H_LOSS_PARAM] = PARAM
    return codes, hp


def _run(backend_name, kind, code, optimizer, batch_size, l1=0.0):
    X, y, sw, coef, order = _kernel_problem(code)
    codes, hp = _kernel_arrays(code, optimizer, l1)
    backend = get_backend(backend_name)
    slots = C.state_slots(codes, hp)
    state = np.zeros((slots,) + coef.shape)
    t = np.zeros(1, np.int64)
    grad, work = np.empty_like(coef), np.zeros((C.WORK_ROWS, 1))
    results = []
    for _ in range(2):  # two epochs: the second starts from a trained point
        if kind == "dense":
            out = backend.epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work)
        elif kind == "chunked":
            out = backend.epoch_dense_chunked(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work,
                                              np.zeros((C.N_CHUNKS,) + coef.shape),
                                              np.zeros((C.N_CHUNKS, C.WORK_ROWS, 1)), np.zeros(C.N_CHUNKS))
        else:
            Xs = sp.csr_matrix(X)
            out = backend.epoch_csr(Xs.data, Xs.indices, Xs.indptr, P, y, sw, order, coef, state, t, codes, hp,
                                    batch_size, grad, work, np.zeros((P, C.LAZY_FIELDS)),
                                    np.zeros((2, P + 1), np.int64), np.zeros(C.N_COUNTERS, np.int64))
        results.append(out)
    return results, coef


# (kind, optimizer, batch size, L1): the fused per-sample SGD kernels (dense; CSR running
# scale with L2 only, lazy exact with L1), mini-batch and full-batch steps, Adam (every
# coordinate every step on CSR), and the multi-core chunked batch sum.
PATHS = [
    ("dense", C.OPT_SGD, 1, 0.0), ("dense", C.OPT_SGD, 7, 0.0), ("dense", C.OPT_ADAM, N, 0.0),
    ("dense", C.OPT_ADAM, 1, 0.001), ("csr", C.OPT_SGD, 1, 0.0), ("csr", C.OPT_SGD, 1, 0.001),
    ("csr", C.OPT_SGD, 7, 0.001), ("csr", C.OPT_ADAM, 7, 0.0), ("chunked", C.OPT_SGD, N, 0.0),
    ("chunked", C.OPT_ADAM, 16, 0.0),
]


@pytest.mark.parametrize("kind, optimizer, batch_size, l1", PATHS, ids=lambda v: str(v))
@pytest.mark.parametrize("code", NEW_LOSSES, ids=lambda c: losses.NAMES[c])
@pytest.mark.parametrize("engine", COMPILED)
def test_compiled_epochs_equal_the_reference(engine, code, kind, optimizer, batch_size, l1):
    if kind == "chunked" and not hasattr(get_backend(engine), "epoch_dense_chunked"):
        pytest.skip(f"the {engine} engine has no multi-core entry point")
    ref, ref_coef = _run("numpy", "dense" if kind == "chunked" else kind, code, optimizer, batch_size, l1)
    got, coef = _run(engine, kind, code, optimizer, batch_size, l1)
    assert [status for status, _ in got] == [C.STATUS_OK, C.STATUS_OK]
    assert_allclose([loss for _, loss in got], [loss for _, loss in ref], rtol=1e-10)
    assert_allclose(coef, ref_coef, rtol=1e-10, atol=1e-14)
    start = _kernel_problem(code)[3]
    assert not np.allclose(coef, start)  # the epochs trained


@pytest.mark.parametrize("code", NEW_LOSSES, ids=lambda c: losses.NAMES[c])
@pytest.mark.parametrize("engine", COMPILED)
def test_full_gradient_equals_the_reference(engine, code):
    X, y, sw, coef, _ = _kernel_problem(code)
    codes, hp = _kernel_arrays(code, C.OPT_SGD)
    expected, got = np.empty_like(coef), np.empty_like(coef)
    ref_sum = get_backend("numpy").full_gradient(X, y, sw, coef, codes, expected, None, hp)
    got_sum = get_backend(engine).full_gradient_dense(X, y, sw, coef, codes, got, np.zeros((C.WORK_ROWS, 1)), hp)
    assert_allclose(got, expected, rtol=1e-10, atol=1e-15)
    assert got_sum == pytest.approx(ref_sum, rel=1e-10)
    # and the reference is the mean of the per-sample derivatives times x~
    _, d = losses.evaluate(code, X @ coef[:-1] + coef[-1], y, PARAM)
    Xt = np.hstack([X, np.ones((N, 1))])
    assert_allclose(expected[:, 0], Xt.T @ (sw * d[:, 0]) / N, rtol=1e-12)


@pytest.mark.parametrize("engine", ["numpy"] + COMPILED)
def test_a_single_margin_loss_refuses_several_outputs(engine):
    X, y, sw, coef, order = _kernel_problem(C.LOSS_HUBER)
    coef2 = np.hstack([coef, coef])
    codes, hp = _kernel_arrays(C.LOSS_HUBER, C.OPT_SGD)
    with pytest.raises(ValueError, match="one margin"):
        get_backend(engine).epoch_dense(X, np.hstack([y, y]), sw, order, coef2, np.zeros((0,) + coef2.shape),
                                        np.zeros(1, np.int64), codes, hp, 4, np.empty_like(coef2),
                                        np.zeros((C.WORK_ROWS, 2)))


# --- learning_rate="auto" ---------------------------------------------------------------------
def _auto(code, optimizer):
    X, y, sw, _, _ = _kernel_problem(code)
    codes, hp = _kernel_arrays(code, optimizer)
    return _step_size.auto_learning_rate(X, np.ones(N), np.arange(N), codes, hp, 1)


@pytest.mark.parametrize("code", [C.LOSS_HINGE, C.LOSS_PERCEPTRON, C.LOSS_EPSILON_INSENSITIVE],
                         ids=lambda c: losses.NAMES[c])
def test_auto_step_refuses_non_smooth_losses_with_sgd(code):
    with pytest.raises(ValueError, match=f"{losses.NAMES[code]} loss: its gradient jumps at a kink"):
        _auto(code, C.OPT_SGD)
    assert _auto(code, C.OPT_ADAM) == _step_size.ADAPTIVE_DEFAULTS[C.OPT_ADAM]  # adaptive: unaffected


@pytest.mark.parametrize("code", [C.LOSS_SQUARED_HINGE, C.LOSS_MODIFIED_HUBER, C.LOSS_HUBER,
                                  C.LOSS_SQUARED_EPSILON_INSENSITIVE], ids=lambda c: losses.NAMES[c])
def test_auto_step_scales_with_the_smooth_losses_curvature(code):
    # the step is 1 / (2 L_b) with L_b = c * (a data term) + l2: inversely proportional to the
    # curvature bound c but for the small L2 term. The squared error's c is 2.
    assert _step_size.CURVATURE[code] == {C.LOSS_HUBER: 1.0}.get(code, 2.0)
    ratio = _auto(C.LOSS_SQUARED, C.OPT_SGD) / _auto(code, C.OPT_SGD)
    assert ratio == pytest.approx(_step_size.CURVATURE[code] / 2.0, rel=0.01)


def test_auto_step_on_an_estimator_with_a_non_smooth_loss_is_a_clear_error():
    X, y = make_classification(60, 4, random_state=0)
    engine = _sgd_main_engine._BinaryLossEngine(optimizer="sgd", learning_rate="auto", batch_size=1, max_iter=2)
    engine._engine_loss_code = C.LOSS_HINGE
    with pytest.raises(ValueError, match="give learning_rate a number|Give learning_rate a number"):
        engine.fit(X, y)
    assert not hasattr(engine, "coef_")


def test_a_rising_loss_with_a_non_smooth_loss_advises_a_smaller_step():
    """The convergence warning suggests the 'auto' step where there is one; for the hinge loss
    with SGD there is none, and the advice is a smaller learning rate (not an error)."""
    from sklearn.exceptions import ConvergenceWarning

    X, y = make_classification(200, 4, flip_y=0.3, random_state=0)
    engine = _sgd_main_engine._BinaryLossEngine(optimizer="sgd", learning_rate=1.0, batch_size=1, max_iter=8,
                                                n_iter_no_change=100, alpha=0.1, random_state=0)
    engine._engine_loss_code = C.LOSS_HINGE
    with pytest.warns(ConvergenceWarning, match=r"use a smaller learning_rate \(it is 1\)"):
        engine.fit(X, y)
    assert np.all(np.isfinite(engine.coef_))


# --- the drop-ins with another optimizer --------------------------------------------------
CLASSIFICATION = ["hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron"]
REGRESSION_NAMES = ["squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive"]


def _classification(n_classes=2, n=300):
    return make_classification(n, 6, n_informative=4, n_redundant=0, n_classes=n_classes, random_state=0)


@pytest.mark.parametrize("loss", CLASSIFICATION + REGRESSION_NAMES)
def test_classifier_with_adam_reaches_a_sensible_model_for_every_loss(loss):
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    X, y = make_classification(300, 6, n_informative=4, n_redundant=0, class_sep=2.0, flip_y=0.02, random_state=1)
    est = fastgd.SGDClassifier(loss=loss, optimizer="adam", eta0=0.01, max_iter=30, random_state=0).fit(X, y)
    # within 2 % of the accuracy of scikit-learn's exact logistic regression (98.7 % here)
    assert est.score(X, y) >= SkLogisticRegression().fit(X, y).score(X, y) - 0.02
    engine = est._engines[0]
    assert engine._loss_code == _sgd_main_engine.LOSS_CODES[loss] and engine.optimizer == "adam"


@pytest.mark.parametrize("loss", REGRESSION_NAMES)
def test_regressor_with_adam_reaches_a_sensible_model_for_every_loss(loss):
    X, y = make_regression(300, 6, noise=1.0, random_state=0)
    y = y / y.std()
    est = fastgd.SGDRegressor(loss=loss, optimizer="adam", eta0=0.01, epsilon=0.05, max_iter=30,
                              random_state=0).fit(X, y)
    assert est.score(X, y) > 0.98
    assert est._engines[0]._loss_param == (0.05 if loss != "squared_error" else 0.0)


def test_epsilon_is_the_losses_parameter():
    """A wide epsilon-insensitive tube ignores every residual: the model stays at zero."""
    X, y = make_regression(100, 4, random_state=0)
    y = y / np.abs(y).max()
    est = fastgd.SGDRegressor(loss="epsilon_insensitive", epsilon=2.0, penalty=None, optimizer="adam",
                              max_iter=3, tol=None).fit(X, y)
    assert_array_equal(est.coef_, 0.0)
    narrow = fastgd.SGDRegressor(loss="epsilon_insensitive", epsilon=0.01, penalty=None, optimizer="adam",
                                 max_iter=3, tol=None).fit(X, y)
    assert np.any(narrow.coef_ != 0)


def test_multiclass_is_one_vs_rest_with_scikit_learns_weights():
    X, y = _classification(n_classes=3)
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    params = dict(loss="hinge", optimizer="adam", eta0=0.01, max_iter=4, tol=None, random_state=0,
                  class_weight={0: 2.0, 1: 1.0, 2: 0.5})
    est = fastgd.SGDClassifier(**params).fit(X, y, sample_weight=sample_weight)
    assert est.coef_.shape == (3, X.shape[1]) and est.intercept_.shape == (3,)
    seeds = np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=3)
    for k in range(3):
        # problem k: class k against the rest, labels 1 / 0, the positive class weighed by
        # its class weight and the rest by 1 (scikit-learn's one-vs-rest weights)
        engine = _sgd_main_engine._BinaryLossEngine(optimizer="adam", learning_rate=0.01, batch_size=1,
                                                    max_iter=4, tol=None, random_state=int(seeds[k]))
        engine._engine_loss_code = C.LOSS_HINGE
        weights = sample_weight * np.where(y == k, params["class_weight"][k], 1.0)
        engine.fit(X, (y == k).astype(float), sample_weight=weights)
        assert_allclose(est.coef_[k], engine.coef_[0], rtol=1e-12)
        assert_allclose(est.intercept_[k], engine.intercept_[0], rtol=1e-12)


def test_binary_problem_uses_both_class_weights():
    X, y = _classification()
    params = dict(loss="modified_huber", optimizer="adam", eta0=0.01, max_iter=3, tol=None, random_state=0)
    weighted = fastgd.SGDClassifier(**params, class_weight={0: 1.0, 1: 3.0}).fit(X, y)
    by_samples = fastgd.SGDClassifier(**params).fit(X, y, sample_weight=np.where(y == 1, 3.0, 1.0))
    assert_allclose(weighted.coef_, by_samples.coef_, rtol=1e-12)
    assert weighted.coef_.shape == (1, X.shape[1])
    assert not np.allclose(weighted.coef_, fastgd.SGDClassifier(**params).fit(X, y).coef_)


def test_threads_give_the_same_model():
    X, y = _classification(n_classes=4, n=200)
    params = dict(loss="squared_hinge", optimizer="rmsprop", eta0=0.01, max_iter=3, tol=None, random_state=0)
    one = fastgd.SGDClassifier(**params, n_jobs=1).fit(X, y)
    two = fastgd.SGDClassifier(**params, n_jobs=2).fit(X, y)
    assert_array_equal(one.coef_, two.coef_)
    assert_array_equal(one.intercept_, two.intercept_)


@pytest.mark.parametrize("loss", ["log_loss", "modified_huber"])
def test_probabilities_follow_scikit_learns_definitions(loss):
    from scipy.special import expit

    X, y = _classification(n_classes=3)
    est = fastgd.SGDClassifier(loss=loss, optimizer="adam", eta0=0.01, max_iter=5, tol=None, random_state=0)
    est.fit(X, y)
    scores = est.decision_function(X)
    raw = expit(scores) if loss == "log_loss" else (np.clip(scores, -1, 1) + 1) / 2
    total = raw.sum(axis=1, keepdims=True)
    expected = np.where(total > 0, raw / np.where(total > 0, total, 1), 1 / 3)
    assert_allclose(est.predict_proba(X), expected, rtol=1e-12)
    assert not hasattr(fastgd.SGDClassifier(loss="hinge", optimizer="adam"), "predict_proba")


def test_sparse_input_gives_the_dense_model():
    X, y = _classification(n_classes=3, n=150)
    X[np.abs(X) < 0.8] = 0.0
    params = dict(loss="perceptron", optimizer="adagrad", max_iter=2, tol=None, random_state=0)
    dense = fastgd.SGDClassifier(**params).fit(X, y)
    sparse = fastgd.SGDClassifier(**params).fit(sp.csr_matrix(X), y)
    assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10, atol=1e-14)


def test_partial_fit_continues_every_problem_and_a_failure_changes_nothing():
    X, y = _classification(n_classes=3)
    est = fastgd.SGDClassifier(loss="hinge", optimizer="adam", eta0=0.01, random_state=0)
    est.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    t1, coef1 = est.t_, est.coef_.copy()
    est.partial_fit(X[100:], y[100:])
    assert est.t_ == t1 + 200 and not np.allclose(est.coef_, coef1)
    coef2, engines = est.coef_.copy(), est._engines
    with pytest.raises(ValueError):
        est.partial_fit(X[:, :3], y)
    bad_y = y.copy()
    bad_y[0] = 7
    with pytest.raises(ValueError, match="not in classes"):
        est.partial_fit(X, bad_y)
    assert_array_equal(est.coef_, coef2)
    assert est._engines is engines and est.t_ == t1 + 200


def test_warm_start_continues_from_the_fitted_engines():
    X, y = make_regression(200, 4, noise=1.0, random_state=0)
    y = y / y.std()
    params = dict(loss="huber", optimizer="adam", penalty=None, max_iter=2, tol=None, random_state=0)
    for warm_start in (False, True):
        est = fastgd.SGDRegressor(**params, eta0=0.01, warm_start=warm_start).fit(X, y)
        first = est.coef_.copy()
        est.set_params(eta0=1e-12).fit(X, y)  # a second fit that cannot move the weights
        if warm_start:
            assert_allclose(est.coef_, first, rtol=1e-8)
        else:
            assert_allclose(est.coef_, 0.0, atol=1e-9)
        assert np.any(first != 0)


def test_unconverged_fit_warns_as_scikit_learn_does():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    X, y = _classification(n_classes=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastgd.SGDClassifier(loss="hinge", optimizer="adam", max_iter=2, random_state=0, n_jobs=2).fit(X, y)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert messages == ["Maximum number of iteration reached before convergence. Consider increasing max_iter to "
                        "improve the fit."]


# One sample per step is not invariant to replacing a weight-k sample by k copies of it (the
# copies are k steps): the expected failures scikit-learn lists for its own SGD estimators.
_PER_SAMPLE_STEP_CHECKS = {
    f"check_sample_weight_equivalence_on_{kind}_data": "sample_weight is not equivalent to removing/repeating samples."
    for kind in ("dense", "sparse")
}


# (slow_on_reference: per-sample Adam through scikit-learn's whole check suite; the estimators' engine
# passes the suite on the NumPy reference in tests/test_sklearn_checks.py)
@pytest.mark.slow_on_reference
@parametrize_with_checks([fastgd.SGDClassifier(loss="hinge", optimizer="adam"),
                          fastgd.SGDRegressor(loss="huber", optimizer="adam")],
                         expected_failed_checks=lambda estimator: _PER_SAMPLE_STEP_CHECKS)
def test_dropins_with_another_optimizer_pass_scikit_learns_checks(estimator, check):
    check(estimator)
