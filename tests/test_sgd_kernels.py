"""The compiled epochs of the SGD drop-ins equal the NumPy reference (the executable
specification in fastgd._backends._reference_sgd) to rounding, dense and CSR, float64 and
float32, over losses x penalties x learning rates x averaging."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose

import fastgd
from fastgd.linear_model._sgd import get_sgd_backend

COMPILED = []
for _name in ("numba", "cython"):
    try:
        get_sgd_backend(_name)
        COMPILED.append(_name)
    except ImportError:  # the Cython extension is not built in this checkout
        pass

CASES = [
    # (estimator, loss, penalty, learning_rate, average)
    (fastgd.SGDClassifier, "hinge", "l2", "optimal", False),
    (fastgd.SGDClassifier, "log_loss", "elasticnet", "invscaling", True),
    (fastgd.SGDClassifier, "modified_huber", "l1", "constant", 5),
    (fastgd.SGDClassifier, "squared_hinge", None, "adaptive", True),
    (fastgd.SGDClassifier, "perceptron", "elasticnet", "optimal", 3),
    (fastgd.SGDClassifier, "hinge", "l1", "pa1", True),
    (fastgd.SGDClassifier, "hinge", "elasticnet", "pa2", False),
    (fastgd.SGDRegressor, "squared_error", "elasticnet", "invscaling", True),
    (fastgd.SGDRegressor, "huber", "l2", "optimal", 4),
    (fastgd.SGDRegressor, "epsilon_insensitive", "l1", "pa1", False),
    (fastgd.SGDRegressor, "squared_epsilon_insensitive", None, "adaptive", True),
]


# losses with a continuous derivative
SMOOTH_LOSSES = ("log_loss", "modified_huber", "squared_error", "huber")


def _data(dtype, sparse):
    rng = np.random.default_rng(1)
    X = 0.3 * rng.standard_normal((120, 15))
    X[rng.random(X.shape) < 0.6] = 0.0
    X[7] = 0.0  # an all-zero row: PA-I skips it
    y_class = np.digitize(X[:, 0] - X[:, 1] + 0.1 * rng.standard_normal(120), [-0.2, 0.2])
    y_reg = 3 * X @ rng.standard_normal(15) + 0.1 * rng.standard_normal(120)
    sw = rng.uniform(0.2, 3.0, 120)
    X = X.astype(dtype)
    return (sp.csr_matrix(X) if sparse else X), y_class, y_reg, sw


def _model(est):
    return np.r_[np.ravel(est.coef_), np.ravel(est.intercept_)]


# float32 over the smooth losses only: where the derivative jumps (hinge, epsilon-insensitive)
# a float32 rounding difference that moves a margin across the kink changes a whole step
PRECISIONS = [(case, np.float64) for case in CASES] + [(case, np.float32) for case in CASES if case[1] in SMOOTH_LOSSES]


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("case,dtype", PRECISIONS, ids=lambda c: "-".join(map(str, c[1:])) if isinstance(c, tuple)
                         else np.dtype(c).name)
def test_compiled_engine_equals_reference(case, dtype, sparse, backend):
    cls, loss, penalty, lr, average = case
    X, y_class, y_reg, sw = _data(dtype, sparse)
    y = y_reg if cls is fastgd.SGDRegressor else y_class
    params = dict(loss=loss, penalty=penalty, learning_rate=lr, average=average, alpha=0.01, eta0=0.05,
                  shuffle=True, random_state=0, max_iter=5, tol=None)
    reference = cls(backend="numpy", **params).fit(X, y, sample_weight=sw)
    compiled = cls(backend=backend, **params).fit(X, y, sample_weight=sw)
    a, b = _model(compiled), _model(reference)
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)))
    assert compiled.coef_.dtype == dtype
    assert compiled.t_ == reference.t_


@pytest.mark.parametrize("backend", COMPILED)
def test_dense_and_csr_engines_agree(backend):
    """The plain-vector (dense) and lazily scaled (CSR) epochs train the same model where
    scikit-learn's semantics agree: without an intercept (damped on sparse input) and
    without L1 (truncated on a row's stored coordinates only)."""
    X, y, _, sw = _data(np.float64, False)
    params = dict(loss="log_loss", penalty="l2", average=True, learning_rate="optimal", alpha=0.01,
                  fit_intercept=False, shuffle=False, max_iter=5, tol=None, backend=backend)
    dense = fastgd.SGDClassifier(**params).fit(X, y, sample_weight=sw)
    csr = fastgd.SGDClassifier(**params).fit(sp.csr_matrix(X), y, sample_weight=sw)
    assert_allclose(dense.coef_, csr.coef_, rtol=1e-10, atol=1e-12)


def test_numba_engine_compiles_the_shared_rules():
    """One source for the scalar rules: the Numba engine's rules are the functions of
    _sgd_rules (the Cython engine includes the same file at build time)."""
    from fastgd._backends import _sgd_rules

    numba_sgd = pytest.importorskip("fastgd._backends._numba_sgd")
    for name in ("sample_loss", "sample_dloss", "step_size", "passive_aggressive_step", "passive_aggressive_sign",
                 "l2_decay", "l1_truncate", "penalty_value", "average_b_next", "average_a_next"):
        assert getattr(numba_sgd, name).py_func is getattr(_sgd_rules, name), name
