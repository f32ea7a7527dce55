"""Watching training: callbacks after every epoch, the progress bar and the recorded path."""

import copy
import io
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning

from fastgd import DivergenceError, LinearRegression, LogisticRegression
from fastgd._progress import make_bar
from fastgd.callbacks import STEP_PATH_MAX_BYTES, EpochRecord, History, TimeLimit
from fastgd.schedules import StepDecay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The worked example of the reference notes (003): full-batch GD, learning rate 0.1, from w = b = 0.
X_NOTES = np.array([[1.0], [2.0]])
Y_NOTES = np.array([2.0, 4.0])
NOTES_PATH = [(0.0, 0.0), (1.0, 0.6), (1.32, 0.78), (1.426, 0.828), (1.4646, 0.8346)]
NOTES_LOSSES = [10.0, 1.06, 0.1732, 0.083458]


def notes_model(**kw):
    return LinearRegression(**{"optimizer": "sgd", "learning_rate": 0.1, "tol": None, **kw})


def reg_data(n=40, p=3, seed=0):
    return make_regression(n_samples=n, n_features=p, noise=1.0, random_state=seed)


def clf_data(n=60, p=4, n_classes=2, seed=0):
    return make_classification(n_samples=n, n_features=p, n_informative=3, n_redundant=0, n_classes=n_classes,
                               n_clusters_per_class=1, random_state=seed)


class Boom(Exception):
    pass


def raise_at(epoch):
    def callback(record):
        if record.epoch == epoch:
            raise Boom(f"callback failed at epoch {epoch}")
    return callback


def fitted_state(est):
    """Everything a user can see of an estimator (and the training state partial_fit continues)."""
    state = {k: copy.deepcopy(v) for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}
    if hasattr(est, "_train_state"):
        state["_train_state.coef"] = est._train_state.coef.copy()
        state["_train_state.t"] = est._train_state.t.copy()
    return state


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


# --------------------------------------------------------------------------- the record
def test_record_holds_the_epoch_the_estimator_reports():
    history = History(keep_coef=True)
    reg = notes_model(max_iter=4, record_path=True, callbacks=[history]).fit(X_NOTES, Y_NOTES)
    assert_array_equal(history.epochs, [1, 2, 3, 4])
    assert [r.steps for r in history.records] == [1, 2, 3, 4]  # full batch: one step per epoch
    assert_allclose(history.losses, reg.loss_curve_, rtol=0, atol=0)
    assert_allclose(history.losses, NOTES_LOSSES, rtol=1e-12)
    assert_array_equal(history.learning_rates, [0.1] * 4)
    assert all(r.validation_loss is None for r in history.records)
    assert np.all(np.diff(history.elapsed) >= 0) and history.elapsed[0] >= 0
    for k, r in enumerate(history.records, start=1):
        assert_allclose([r.coef[0], r.intercept], NOTES_PATH[k], rtol=1e-12)
        assert_array_equal(r.coef, reg.coef_path_[k])


def test_record_learning_rate_is_the_schedule_in_force():
    X, y = reg_data()
    history = History()
    schedule = StepDecay(step_size=2, gamma=0.5)
    LinearRegression(optimizer="sgd", learning_rate=0.01, batch_size=8, schedule=schedule, max_iter=6, tol=None,
                     random_state=0, callbacks=history).fit(X, y)
    assert_allclose(history.learning_rates, schedule.lr(0.01, np.arange(6)), rtol=1e-15)
    assert [r.steps for r in history.records] == [5 * k for k in range(1, 7)]  # ceil(40 / 8) per epoch


def test_record_carries_the_validation_loss_with_early_stopping():
    X, y = clf_data(n=100)
    history = History()
    clf = LogisticRegression(batch_size=10, max_iter=8, tol=None, early_stopping=True, random_state=0,
                             callbacks=[history]).fit(X, y)
    assert_array_equal(history.validation_losses, clf.validation_loss_curve_)


def test_record_coefficients_are_a_read_only_view_in_the_public_layout():
    seen = []

    def callback(record):
        seen.append(record)
        with pytest.raises(ValueError, match="read-only"):
            record.coef[...] = 0.0
        with pytest.raises(ValueError, match="read-only"):
            record.intercept[...] = 0.0
        with pytest.raises(AttributeError):
            record.loss = 0.0  # the record itself is frozen

    X, y = clf_data(n_classes=3)
    clf = LogisticRegression(max_iter=3, tol=None, callbacks=[callback]).fit(X, y)
    assert isinstance(seen[-1], EpochRecord)
    assert seen[-1].coef.shape == clf.coef_.shape and seen[-1].intercept.shape == clf.intercept_.shape
    assert_array_equal(seen[-1].coef, clf.coef_)


def test_every_callback_sees_every_epoch_even_after_one_asked_to_stop():
    late = History()
    reg = notes_model(max_iter=50, callbacks=[lambda r: r.epoch == 2, late]).fit(X_NOTES, Y_NOTES)
    assert reg.n_iter_ == 2 and list(late.epochs) == [1, 2]


# --------------------------------------------------------------------------- stopping
def test_a_callback_stops_training_like_a_convergence_test():
    X, y = reg_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a stop is not a failure to converge
        stopped = LinearRegression(batch_size=4, max_iter=100, tol=1e-12, random_state=0,
                                   callbacks=[lambda r: r.epoch == 7]).fit(X, y)
    assert stopped.n_iter_ == 7 and len(stopped.loss_curve_) == 7
    # the same model as a fit that ran exactly those 7 epochs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        seven = LinearRegression(batch_size=4, max_iter=7, tol=1e-12, random_state=0).fit(X, y)
    assert_array_equal(stopped.coef_, seven.coef_)
    assert stopped.loss_curve_ == seven.loss_curve_


def test_a_callback_stopping_on_the_loss():
    reg = notes_model(max_iter=1000, callbacks=lambda r: r.loss < 0.1).fit(X_NOTES, Y_NOTES)
    assert reg.n_iter_ == 4 and reg.loss_curve_[-1] < 0.1 <= reg.loss_curve_[-2]


def test_time_limit_stops_after_the_epoch_that_crosses_it():
    reg = notes_model(max_iter=1000, callbacks=[TimeLimit(1e-9)]).fit(X_NOTES, Y_NOTES)
    assert reg.n_iter_ == 1
    with pytest.raises(ValueError, match="positive"):
        TimeLimit(0)


def test_verbose_says_which_callback_stopped(capsys):
    notes_model(max_iter=10, verbose=1, callbacks=[TimeLimit(1e-9)]).fit(X_NOTES, Y_NOTES)
    out = capsys.readouterr().out
    assert "Epoch 1: loss 10" in out and "stopped by callback TimeLimit(seconds=1e-09)" in out


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize("Est, data", [(LinearRegression, reg_data), (LogisticRegression, clf_data)])
def test_a_raising_callback_leaves_a_fitted_model_as_it_was(Est, data):
    X, y = data()
    est = Est(batch_size=8, max_iter=5, tol=None, random_state=0, record_path=True).fit(X, y)
    before = fitted_state(est)
    est.set_params(callbacks=[raise_at(3)], max_iter=10, record_path="step")
    with pytest.raises(Boom, match="epoch 3"):
        est.fit(X[::-1], y[::-1])
    assert_same_state(fitted_state(est), before)
    with pytest.raises(Boom):
        est.set_params(callbacks=[raise_at(6)]).partial_fit(X, y)  # partial_fit's epoch is epoch 6
    assert_same_state(fitted_state(est), before)
    # and it trains on as if nothing had happened
    est.set_params(callbacks=None, record_path=True).partial_fit(X, y)
    assert est.n_iter_ == 6 and len(est.coef_path_) == 7


def test_a_raising_callback_leaves_an_unfitted_model_unfitted():
    est = notes_model(max_iter=5, callbacks=[raise_at(1)], progress=False, record_path=True)
    with pytest.raises(Boom):
        est.fit(X_NOTES, Y_NOTES)
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(est))


def test_callbacks_must_be_callables():
    with pytest.raises(TypeError, match="callables"):
        notes_model(callbacks=[print, "not callable"]).fit(X_NOTES, Y_NOTES)
    with pytest.raises(ValueError, match="callbacks"):
        notes_model(callbacks="print").fit(X_NOTES, Y_NOTES)


# --------------------------------------------------------------------------- the path
@pytest.mark.parametrize("Est, data, kw", [
    (LinearRegression, reg_data, dict(batch_size=4, optimizer="adam")),
    (LogisticRegression, clf_data, dict(batch_size=5, optimizer="nesterov", schedule="cosine")),
    (LogisticRegression, lambda: clf_data(n_classes=3), dict(batch_size=None, init="random")),
])
def test_epoch_path_equals_repeated_one_epoch_partial_fits(Est, data, kw):
    X, y = data()
    classes = np.unique(y) if Est is LogisticRegression else None
    kw = dict(learning_rate=0.05, **kw)  # a given rate: "auto" sizes fit's step from all the data
    est = Est(max_iter=6, tol=None, random_state=3, record_path=True, **kw).fit(X, y)
    assert est.coef_path_.shape == (7,) + est.coef_.shape
    assert est.intercept_path_.shape == (7,) + np.shape(est.intercept_)
    stepwise = Est(max_iter=6, tol=None, random_state=3, **kw)
    for k in range(1, 7):
        stepwise.partial_fit(X, y, classes=classes) if classes is not None else stepwise.partial_fit(X, y)
        assert_array_equal(est.coef_path_[k], stepwise.coef_)
        assert_array_equal(est.intercept_path_[k], stepwise.intercept_)
    # the first row is where training started: zeros, or the seeded random start
    if kw.get("init", "zeros") == "zeros":
        assert not np.any(est.coef_path_[0]) and not np.any(est.intercept_path_[0])
    else:
        again = Est(max_iter=1, tol=None, random_state=3, record_path=True, **kw).fit(X, y)
        assert_array_equal(again.coef_path_[0], est.coef_path_[0])
        assert np.all(est.coef_path_[0] != 0) and not np.any(est.intercept_path_[0])
    assert_array_equal(est.coef_path_[-1], est.coef_)


def test_step_path_of_the_worked_example_is_the_notes_path():
    reg = notes_model(max_iter=4, record_path="step").fit(X_NOTES, Y_NOTES)
    assert_allclose(np.column_stack([reg.coef_path_[:, 0], reg.intercept_path_]), NOTES_PATH, rtol=1e-12)


def test_step_path_of_sgd_follows_every_sample():
    """Per-sample SGD written out in NumPy, with the estimator's own sample order."""
    X, y = reg_data(n=12, p=2)
    lr = 0.01
    reg = LinearRegression(optimizer="sgd", learning_rate=lr, batch_size=1, max_iter=3, tol=None, random_state=5,
                           record_path="step").fit(X, y)
    assert reg.coef_path_.shape == (3 * 12 + 1, 2)
    rng = np.random.default_rng(5)
    w, b, rows = np.zeros(2), 0.0, [np.zeros(3)]
    for _ in range(3):
        for i in rng.permutation(12):
            r = X[i] @ w + b - y[i]
            w, b = w - lr * 2 * r * X[i], b - lr * 2 * r
            rows.append(np.r_[w, b])
    assert_allclose(np.column_stack([reg.coef_path_, reg.intercept_path_]), rows, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("batch_size", [1, 7, None])
def test_recording_steps_trains_the_same_model(sparse, batch_size):
    X, y = clf_data(n=50)
    X = sp.csr_matrix(X * (np.abs(X) > 0.5)) if sparse else X
    kw = dict(optimizer="adam", batch_size=batch_size, max_iter=4, tol=None, random_state=1)
    steps = LogisticRegression(record_path="step", **kw).fit(X, y)
    epochs = LogisticRegression(record_path=True, **kw).fit(X, y)
    plain = LogisticRegression(**kw).fit(X, y)
    per_epoch = 1 if batch_size is None else -(-50 // batch_size)
    assert len(steps.coef_path_) == 4 * per_epoch + 1 == steps.t_ + 1
    # the rows at the epoch boundaries are the per-epoch path
    assert_allclose(steps.coef_path_[::per_epoch], epochs.coef_path_, rtol=1e-12, atol=1e-14)
    assert_allclose(steps.coef_, plain.coef_, rtol=1e-12, atol=1e-14)
    assert_allclose(steps.loss_curve_, plain.loss_curve_, rtol=1e-12)


def test_partial_fit_appends_to_the_path():
    reg = notes_model(max_iter=1, record_path=True)
    for _ in range(3):
        reg.partial_fit(X_NOTES, Y_NOTES)
    reg.set_params(record_path="step").partial_fit(X_NOTES, Y_NOTES)
    assert_allclose(np.column_stack([reg.coef_path_[:, 0], reg.intercept_path_]), NOTES_PATH, rtol=1e-12)
    reg.set_params(record_path=False).partial_fit(X_NOTES, Y_NOTES)
    assert not hasattr(reg, "coef_path_") and not hasattr(reg, "intercept_path_")  # never a stale path


def test_multi_output_path_layout():
    X, y = make_regression(n_samples=30, n_features=3, n_targets=2, random_state=0)
    reg = LinearRegression(max_iter=3, tol=None, record_path=True, n_jobs=2).fit(X, y)
    assert reg.coef_path_.shape == (4, 2, 3) and reg.intercept_path_.shape == (4, 2)
    assert_array_equal(reg.coef_path_[-1], reg.coef_)
    # per step, with the outputs trained in threads: the same model as without recording
    kw = dict(max_iter=3, tol=None, batch_size=4, random_state=0, n_jobs=2)
    steps = LinearRegression(record_path="step", **kw).fit(X, y)
    assert steps.coef_path_.shape == (3 * 8 + 1, 2, 3)
    assert_array_equal(steps.coef_, LinearRegression(**kw).fit(X, y).coef_)


def test_divergence_keeps_the_path_up_to_the_last_finite_epoch():
    reg = notes_model(learning_rate=10.0, max_iter=1000, record_path="step")
    with pytest.raises(DivergenceError) as info:
        reg.fit(X_NOTES, Y_NOTES)
    assert len(reg.coef_path_) == reg.n_iter_ + 1 == info.value.epoch
    assert np.all(np.isfinite(reg.coef_path_))
    assert_array_equal(reg.coef_path_[-1], reg.coef_)


def test_a_step_path_too_large_for_memory_is_refused_before_training():
    X = np.zeros((10, 1))
    reg = LinearRegression(batch_size=1, max_iter=STEP_PATH_MAX_BYTES // (10 * 2 * 8) + 1, record_path="step")
    with pytest.raises(ValueError, match="record_path=True"):
        reg.fit(X, np.zeros(10))
    assert not hasattr(reg, "coef_")


# --------------------------------------------------------------------------- progress
def test_progress_bar_renders_into_a_stream():
    tqdm = pytest.importorskip("tqdm")
    stream = io.StringIO()
    bar = tqdm.tqdm(file=stream, mininterval=0)
    reg = notes_model(max_iter=4, progress=bar).fit(X_NOTES, Y_NOTES)
    text = stream.getvalue()
    assert "4/4" in text and f"loss={reg.loss_curve_[-1]:.4g}" in text
    assert bar.n == 4 and bar.total == 4 and not bar.disable  # the user's bar is reset, used, left open
    notes_model(max_iter=2, progress=bar).fit(X_NOTES, Y_NOTES)
    assert bar.n == 2 and "2/2" in stream.getvalue()
    bar.close()


def test_progress_true_draws_on_stderr_with_the_validation_loss(capsys):
    pytest.importorskip("tqdm")
    X, y = clf_data(n=100)
    LogisticRegression(max_iter=3, tol=None, early_stopping=True, random_state=0, verbose=1,
                       progress=True).fit(X, y)
    captured = capsys.readouterr()
    assert "LogisticRegression" in captured.err and "3/3" in captured.err and "validation=" in captured.err
    assert captured.out.count("Epoch ") == 3  # verbose keeps its plain lines


def test_progress_bar_stops_early_with_the_fit():
    tqdm = pytest.importorskip("tqdm")
    bar = tqdm.tqdm(file=io.StringIO())
    notes_model(max_iter=100, progress=bar, callbacks=lambda r: r.epoch == 3).fit(X_NOTES, Y_NOTES)
    assert (bar.n, bar.total) == (3, 100)


def test_a_progress_bar_is_shared_by_clones_so_model_selection_works():
    tqdm = pytest.importorskip("tqdm")
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    bar = tqdm.tqdm(file=io.StringIO())
    reg = LinearRegression(max_iter=3, tol=None, progress=bar)
    twin = clone(reg)
    assert twin.progress is bar and reg.progress is bar and twin is not reg
    X, y = reg_data()
    assert len(cross_val_score(reg, X, y, cv=2)) == 2
    assert (bar.n, bar.total) == (3, 3)
    bar.close()


def test_make_bar():
    tqdm = pytest.importorskip("tqdm")
    assert make_bar(False) is None and make_bar(None) is None
    bar = make_bar(True, total=5, desc="fit", unit="chunk")
    assert isinstance(bar, tqdm.tqdm) and (bar.total, bar.desc, bar.unit) == (5, "fit", "chunk")
    bar.close()
    mine = tqdm.tqdm(total=3, file=io.StringIO())
    mine.update(2)
    assert make_bar(mine, total=7) is mine and (mine.n, mine.total) == (0, 7)
    with pytest.raises(TypeError, match="tqdm"):
        make_bar("yes")


def test_without_tqdm_only_the_bar_asks_for_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # "import tqdm" now raises ImportError
    with pytest.raises(ImportError, match=r"pip install fastgd\[progress\]"):
        make_bar(True)
    reg = notes_model(max_iter=3).fit(X_NOTES, Y_NOTES)
    before = fitted_state(reg)
    with pytest.raises(ImportError, match=r"pip install fastgd\[progress\]"):
        reg.set_params(progress=True).fit(X_NOTES, Y_NOTES)
    assert_same_state(fitted_state(reg), before)
    reg.set_params(progress=False, callbacks=History(), record_path=True).fit(X_NOTES, Y_NOTES)


def test_core_package_works_without_matplotlib_and_tqdm():
    """In a fresh interpreter where both imports fail: fastgd imports and fits (with callbacks
    and a recorded path); only the bar and the plots say what to install."""
    code = textwrap.dedent("""
        import sys
        sys.modules["matplotlib"] = None
        sys.modules["tqdm"] = None
        import numpy as np
        import fastgd, fastgd.plot, fastgd.callbacks
        reg = fastgd.LinearRegression(max_iter=3, record_path="step", callbacks=fastgd.callbacks.History())
        reg.fit(np.array([[1.0], [2.0]]), np.array([2.0, 4.0]))
        assert reg.coef_path_.shape == (4, 1)
        for call in (lambda: reg.set_params(progress=True).fit([[1.0], [2.0]], [2.0, 4.0]),
                     lambda: fastgd.plot.plot_learning_curves(reg)):
            try:
                call()
            except ImportError as exc:
                print(exc)
            else:
                raise SystemExit("no ImportError")
        assert "matplotlib" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
    """)
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "pip install fastgd[progress]" in lines[0] and "pip install fastgd[plot]" in lines[1]
