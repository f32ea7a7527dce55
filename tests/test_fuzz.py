"""Fuzzing the estimators: whatever the input, a clear error or a finite model.

Hypothesis draws shapes, dtypes, memory layouts, sparse formats, extreme values (from 1e-300
to 1e308, with the odd inf or NaN), sample weights, labels and hyper-parameters, and trains
on the backend chosen by ``FASTGD_BACKEND`` (the suite runs once per backend). The
invariant: ``fit``/``partial_fit`` either raise ``ValueError``, ``TypeError`` or
``DivergenceError`` (a divergence leaves a finite model), or return a model whose
coefficients, loss curve, optimizer state and predictions are finite; the inputs are never
modified, and no RuntimeWarning escapes from fastgd (pytest turns those into errors). A crash
or a hang fails the run.

Profiles (tests/conftest.py): ``ci`` runs a fixed set of 2,000 examples;
``--hypothesis-profile=long`` many more, freshly drawn.
"""

import warnings

import numpy as np
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastgd import LinearRegression, LogisticRegression
from fastgd.exceptions import DivergenceError
from fastgd.optim import OPTIMIZER_NAMES
from fastgd.schedules import SCHEDULE_NAMES

SCALES = [0.0, 1e-300, 1e-30, 1e-3, 1.0, 1e3, 1e30, 1e150, 1e300, 1e308]
LAYOUTS = ["C", "F", "strided", "csr", "csr_unsorted", "csc", "coo", "int"]


@st.composite
def matrices(draw, n, p):
    """An (n, p) matrix in a drawn dtype, layout and scale, sometimes with an inf or NaN."""
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    scale = draw(st.sampled_from(SCALES))
    unit = draw(arrays(np.float64, (n, p), elements=st.floats(-1, 1, allow_subnormal=False)))
    sparsity = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    keep = draw(arrays(np.float64, (n, p), elements=st.floats(0, 1))) >= sparsity
    with np.errstate(over="ignore"):
        dense = (unit * scale * keep).astype(dtype)
    if draw(st.integers(0, 19)) == 0:  # the odd non-finite entry
        dense[draw(st.integers(0, n - 1)), draw(st.integers(0, p - 1))] = draw(st.sampled_from([np.inf, -np.inf, np.nan]))
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "F":
        return np.asfortranarray(dense)
    if layout == "strided":
        wide = np.zeros((n, 2 * p), dtype=dtype)
        wide[:, ::2] = dense
        return wide[:, ::2]
    if layout == "int":
        return np.clip(np.nan_to_num(dense), -1e6, 1e6).astype(np.int64)
    if layout == "csr_unsorted":  # duplicates and unsorted indices: valid, not canonical
        coo = sp.coo_matrix(dense)
        rows = np.concatenate([coo.row, coo.row])[::-1]
        cols = np.concatenate([coo.col, coo.col])[::-1]
        vals = np.concatenate([coo.data / 2, coo.data / 2])[::-1].astype(dtype)
        return sp.csr_matrix((vals, (rows, cols)), shape=(n, p))
    if layout in ("csr", "csc", "coo"):
        return sp.coo_matrix(dense).asformat(layout)
    return dense


@st.composite
def hyper_parameters(draw, n):
    params = dict(
        optimizer=draw(st.sampled_from(OPTIMIZER_NAMES)),
        learning_rate=draw(st.sampled_from([1e-300, 1e-6, 1e-3, 0.01, 0.1, 1.0, 10.0, 1e10])),
        batch_size=draw(st.one_of(st.none(), st.integers(1, n + 3))),
        max_iter=draw(st.integers(1, 3)),
        tol=draw(st.sampled_from([None, 0.0, 1e-4])),
        schedule=draw(st.sampled_from(SCHEDULE_NAMES)),
        penalty=draw(st.sampled_from([None, "l2", "l1", "elasticnet"])),
        alpha=draw(st.sampled_from([0.0, 1e-4, 1.0, 1e10, 1e300])),
        clip_norm=draw(st.sampled_from([None, 1e-8, 1.0, 1e300])),
        init=draw(st.sampled_from(["zeros", "random", "xavier"])),
        shuffle=draw(st.booleans()),
        random_state=draw(st.integers(0, 3)),
        lazy_updates=draw(st.booleans()),
    )
    if n >= 10 and draw(st.integers(0, 4)) == 0:
        params.update(early_stopping=True, validation_fraction=0.2)
    return params


@st.composite
def problems(draw):
    n = draw(st.integers(1, 30))
    p = draw(st.integers(1, 6))
    X = draw(matrices(n, p))
    classifier = draw(st.booleans())
    if classifier:
        n_classes = draw(st.integers(1, 4))
        labels = draw(st.sampled_from([np.arange(n_classes), np.array(["a", "b", "c", "d"][:n_classes]),
                                       np.array([-1.5, 0.0, 2.0, 7.0][:n_classes])]))
        y = labels[draw(arrays(np.int64, n, elements=st.integers(0, n_classes - 1)))]
    else:
        y = draw(arrays(np.float64, draw(st.sampled_from([(n,), (n, 2)])), elements=st.floats(-1, 1)))
        y = y * draw(st.sampled_from(SCALES))
    weights = draw(st.sampled_from([None, "uniform", "random", "zeros", "negative"]))
    if weights is None:
        sw = None
    else:
        scale = draw(st.sampled_from(SCALES))
        sw = {"uniform": np.full(n, scale), "zeros": np.zeros(n), "negative": -np.ones(n),
              "random": draw(arrays(np.float64, n, elements=st.floats(0, 1))) * scale}[weights]
    mode = draw(st.sampled_from(["fit", "partial_fit", "warm_start"]))
    return X, y, sw, classifier, draw(hyper_parameters(n)), mode


def _copies(*arrays_):
    out = []
    for a in arrays_:
        if a is None:
            out.append(None)
        elif sp.issparse(a):
            out.append(a.copy())
        else:
            out.append(np.array(a, copy=True))
    return out


def _assert_unchanged(before, after):
    for b, a in zip(before, after):
        if b is None:
            continue
        if sp.issparse(b):
            assert (b != a).nnz == 0 or np.array_equal(b.toarray(), a.toarray(), equal_nan=True)
        else:
            assert np.array_equal(np.asarray(b), np.asarray(a), equal_nan=b.dtype.kind == "f")


def _assert_finite_model(est, X, classifier):
    assert np.all(np.isfinite(est.coef_)) and np.all(np.isfinite(est.intercept_))
    assert all(np.isfinite(est.loss_curve_))
    state = est._train_state
    assert np.all(np.isfinite(state.coef)) and np.all(np.isfinite(state.opt_state))
    try:
        pred = est.decision_function(X) if classifier else est.predict(X)
    except ValueError:  # X itself holds an inf or NaN
        return
    assert not np.isnan(pred).any()
    if classifier:
        proba = est.predict_proba(X)
        assert np.all(np.isfinite(proba))


@given(problems())
def test_fuzz_fit_gives_clear_error_or_finite_model(problem):
    X, y, sw, classifier, params, mode = problem
    est = (LogisticRegression if classifier else LinearRegression)(**params)
    before = _copies(X, y, sw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ConvergenceWarning, sklearn's data warnings
        # scikit-learn's own finiteness check of an X holding inf warns from inside NumPy.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
        try:
            if mode == "partial_fit":
                kwargs = {"classes": np.unique(y)} if classifier else {}
                est.partial_fit(X, y, sample_weight=sw, **kwargs)
                est.partial_fit(X, y, sample_weight=sw)
            else:
                est.set_params(warm_start=mode == "warm_start")
                est.fit(X, y, sample_weight=sw)
                if mode == "warm_start":
                    est.fit(X, y, sample_weight=sw)
        except DivergenceError:
            if hasattr(est, "coef_"):  # it keeps its last finite epoch
                _assert_finite_model(est, X, classifier)
        except (ValueError, TypeError) as exc:
            assert str(exc)  # a message saying what is wrong
        else:
            _assert_finite_model(est, X, classifier)
    _assert_unchanged(before, (X, y, sw))
