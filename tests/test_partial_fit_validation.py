"""A later ``partial_fit`` call on a CSR chunk of the model's dtype skips scikit-learn's
``validate_data`` (fastgd._sparse_validation.validated_csr_chunk): the same model as with it,
and every input it would convert or reject still goes through it, with its errors."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import DataConversionWarning

import fastgd.linear_model._base as base
from fastgd import LinearRegression, LogisticRegression
from fastgd._sparse_validation import validated_csr_chunk


def _chunks(n_chunks=4, rows=60, p=40, seed=0, dtype=np.float64, csr=sp.csr_matrix):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_chunks):
        X = sp.random(rows, p, density=0.1, format="csr", random_state=rng, dtype=dtype)
        y = (np.asarray(X.sum(axis=1)).ravel() + 0.1 * rng.standard_normal(rows) > 0.2).astype(np.int64)
        out.append((csr(X), y))
    return out


def _model(**kw):
    return LogisticRegression(optimizer="sgd", batch_size=1, learning_rate=0.05, penalty="l2", alpha=1e-3,
                              random_state=0, **kw)


@pytest.fixture
def validate_calls(monkeypatch):
    """Counts the calls of scikit-learn's validate_data made by the estimators."""
    calls = []
    real = base.validate_data

    def counting(*args, **kwargs):
        calls.append(kwargs.get("reset"))
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "validate_data", counting)
    return calls


@pytest.mark.parametrize("csr", [sp.csr_matrix, sp.csr_array])
def test_later_csr_chunks_skip_validate_data_and_train_the_same_model(csr, validate_calls, monkeypatch):
    chunks = _chunks(csr=csr)
    fast = _model()
    for X, y in chunks:
        fast.partial_fit(X, y, classes=[0, 1])
    assert validate_calls == [True]  # only the first call validates through scikit-learn
    monkeypatch.setattr(base, "validated_csr_chunk", lambda *a, **k: None)  # every call through it
    slow = _model()
    for X, y in chunks:
        slow.partial_fit(X, y, classes=[0, 1])
    assert len(validate_calls) == 1 + len(chunks)
    np.testing.assert_array_equal(fast.coef_, slow.coef_)
    np.testing.assert_array_equal(fast.intercept_, slow.intercept_)
    np.testing.assert_array_equal(fast._train_state.t, slow._train_state.t)  # the step clock
    np.testing.assert_array_equal(fast.predict_proba(chunks[0][0]), slow.predict_proba(chunks[0][0]))


def test_inputs_it_would_convert_go_through_validate_data(validate_calls):
    (X0, y0), (X1, y1) = _chunks(2)
    model = _model().partial_fit(X0, y0, classes=[0, 1])
    model.partial_fit(X1.astype(np.float32), y1)  # converted to the model's float64
    model.partial_fit(X1.toarray(), y1)  # dense
    model.partial_fit(X1.tocsc(), y1)  # CSC
    with pytest.warns(DataConversionWarning):
        model.partial_fit(X1, y1.reshape(-1, 1))  # a column y: scikit-learn's warning
    model.partial_fit(X1, y1.astype(object))  # labels as Python objects
    assert validate_calls == [True, False, False, False, False, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.partial_fit(X1, y1)
    assert len(validate_calls) == 6


def test_bad_later_chunks_get_scikit_learn_errors_and_leave_the_model_unchanged():
    (X0, y0), (X1, y1) = _chunks(2)
    model = _model().partial_fit(X0, y0, classes=[0, 1])
    coef = model.coef_.copy()
    bad = X1.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.partial_fit(bad, y1)
    bad.data[3] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        model.partial_fit(bad, y1)
    with pytest.raises(ValueError, match="X has 39 features, but LogisticRegression is expecting 40"):
        model.partial_fit(X1[:, :39], y1)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.partial_fit(X1, y1[:-1])
    with pytest.raises(ValueError, match="0 sample"):
        model.partial_fit(X1[:0], y1[:0])
    np.testing.assert_array_equal(model.coef_, coef)
    assert not np.isnan(X1.data).any()


def test_regression_targets_are_checked_on_the_fast_path_too():
    rng = np.random.default_rng(1)
    X = sp.random(50, 10, density=0.3, format="csr", random_state=rng)
    y = rng.standard_normal(50)
    model = LinearRegression(optimizer="sgd", batch_size=1, learning_rate=0.01, random_state=0).partial_fit(X, y)
    y_nan = y.copy()
    y_nan[5] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        model.partial_fit(X, y_nan)
    model.partial_fit(X, y.astype(np.int64))  # integer targets: numeric, taken as they are


def test_fitted_with_feature_names_later_sparse_chunks_warn_as_scikit_learn_does():
    pd = pytest.importorskip("pandas")
    (X0, y0), (X1, y1) = _chunks(2)
    frame = pd.DataFrame(X0.toarray(), columns=[f"f{j}" for j in range(X0.shape[1])])
    model = _model().partial_fit(frame, y0, classes=[0, 1])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.partial_fit(X1, y1)


def test_the_helper_declines_what_it_does_not_check():
    (X, y), = _chunks(1)
    model = _model().partial_fit(X, y, classes=[0, 1])
    assert validated_csr_chunk(model, X, y, np.float64) == (X, y)
    assert validated_csr_chunk(model, X, y, np.float32) is None  # needs a conversion
    assert validated_csr_chunk(model, X, [0] * X.shape[0], np.float64) is None  # a list
    assert validated_csr_chunk(model, X, y.astype(np.complex128), np.float64) is None
    assert validated_csr_chunk(model, X[:0], y[:0], np.float64) is None
    assert validated_csr_chunk(_model(), X, y, np.float64) is None  # not fitted


def test_first_call_checks_the_classes_it_is_given_as_scikit_learn_does(monkeypatch):
    from sklearn.linear_model import SGDClassifier
    from sklearn.utils import multiclass

    import fastgd.linear_model._logistic as logistic

    X, y = _chunks(1)[0]
    # classes that are not classification targets: both refuse them, labels in {0, 1} or not
    for estimator in (SGDClassifier(), _model()):
        with pytest.raises(ValueError, match="Unknown label type"):
            estimator.partial_fit(X, y, classes=[0, 0.5, 1])
    # valid classes: labels outside them get scikit-learn's message for what they are, then ours
    with pytest.raises(ValueError, match="Unknown label type"):
        _model().partial_fit(X, y + 0.5, classes=[0, 1])
    with pytest.raises(ValueError, match=r"labels array\(\[2\]\) that are not in classes"):
        _model().partial_fit(X, np.where(y == 1, 2, 0), classes=[0, 1])
    # and labels among them are not passed through type_of_target (the same model as without the skip)
    seen = []
    real = multiclass.type_of_target
    monkeypatch.setattr(multiclass, "type_of_target", lambda a, *args, **kw: seen.append(len(a)) or real(a, *args, **kw))
    monkeypatch.setattr(logistic, "check_classification_targets",
                        lambda a: multiclass.check_classification_targets(a))
    model = _model().partial_fit(X, y, classes=[0, 1])
    assert seen and max(seen) == 2
    reference = _model().fit(X, y)  # (fit: classes from the labels, each label checked)
    assert max(seen) == len(y)
    np.testing.assert_array_equal(model.coef_, _model().partial_fit(X, y, classes=np.array([1, 0])).coef_)
    assert reference.classes_.tolist() == model.classes_.tolist() == [0, 1]


def test_two_numeric_classes_are_matched_as_by_the_general_search():
    from fastgd.linear_model._logistic import _known_labels

    y = np.random.default_rng(0).integers(0, 2, 1000)
    for classes, labels in [(np.array([0, 1]), y), (np.array([0, 1]), y.astype(np.float32)),
                            (np.array([-1.0, 3.0]), np.where(y == 1, 3, -1)), (np.array([False, True]), y == 1)]:
        idx, unseen = _known_labels(classes, labels)
        assert unseen is None and idx.dtype == np.intp
        np.testing.assert_array_equal(idx, np.searchsorted(classes, labels))
    idx, unseen = _known_labels(np.array([0, 1]), np.array([0, 2, 1, 2.5, np.nan]))
    assert idx is None and unseen[:2].tolist() == [2, 2.5] and np.isnan(unseen[2])
    idx, unseen = _known_labels(np.array(["a", "b"]), np.array(["a", "c"]))  # (strings: the general search)
    assert idx is None and unseen.tolist() == ["c"]
