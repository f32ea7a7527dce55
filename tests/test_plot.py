"""fastgd.plot, drawn headless (Agg): what was drawn comes from the estimators' own records."""

import json
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression as SkLogistic

from fastgd import LinearRegression, LogisticRegression
from fastgd import _contract as C
from fastgd.callbacks import History
from fastgd.schedules import SCHEDULE_NAMES, CosineAnnealing, StepDecay, Warmup, decode_lr, get_schedule

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fastgd import plot  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def one_feature_data(n=40, seed=0):
    """The notes' y = w x + b with an off-centre x: w and b are coupled (an elongated bowl)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 0.5, size=(n, 1))
    return x, 2.0 * x[:, 0] + rng.normal(0.0, 0.3, n)


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


# --------------------------------------------------------------------------- learning curves
def test_learning_curves_draw_loss_curve_and_validation_loss():
    X, y = make_classification(n_samples=120, n_features=4, random_state=0)
    clf = LogisticRegression(batch_size=8, max_iter=12, tol=None, early_stopping=True, random_state=0).fit(X, y)
    reg = LinearRegression(max_iter=5, tol=None).fit(*make_regression(n_samples=30, n_features=2, random_state=0))
    ax = plot.plot_learning_curves({"classifier": clf, "regressor": reg}, log_scale=True)
    lines = lines_by_label(ax)
    assert set(lines) == {"classifier: training loss", "regressor: training loss", "classifier: validation loss"}
    assert_array_equal(lines["classifier: training loss"].get_ydata(), clf.loss_curve_)
    assert_array_equal(lines["classifier: training loss"].get_xdata(), np.arange(1, 13))
    assert_array_equal(lines["regressor: training loss"].get_ydata(), reg.loss_curve_)
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    val = lines["classifier: validation loss"]
    assert val.get_linestyle() == "--" and val.get_color() == lines["classifier: training loss"].get_color()
    assert_array_equal(val.get_ydata(), clf.validation_loss_curve_)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["classifier: training loss", "classifier: validation loss", "regressor: training loss"]


def test_learning_curves_default_labels_and_sources():
    X, y = one_feature_data()
    history = History()
    sgd = LinearRegression(optimizer="sgd", learning_rate=0.05, batch_size=4, max_iter=6, tol=None,
                           callbacks=history).fit(X, y)
    fig, ax = plt.subplots()
    assert plot.plot_learning_curves([sgd, [3.0, 2.0, 1.0]], ax=ax, validation=False) is ax
    lines = lines_by_label(ax)
    assert set(lines) == {"sgd, lr=0.05, batch 4: training loss", "training: training loss"}
    assert_array_equal(lines["training: training loss"].get_ydata(), [3.0, 2.0, 1.0])
    # a History on the time axis: x is the elapsed time of each epoch
    ax = plot.plot_learning_curves(history, x="time")
    (line,) = ax.get_lines()
    assert_array_equal(line.get_xdata(), history.elapsed)
    assert_array_equal(line.get_ydata(), sgd.loss_curve_)


def test_learning_curves_of_a_model_trained_in_pieces_start_at_epoch_one():
    X, y = one_feature_data()
    reg = LinearRegression(max_iter=1)
    for _ in range(3):
        reg.partial_fit(X, y)
    (line,) = plot.plot_learning_curves(reg).get_lines()
    assert_array_equal(line.get_xdata(), [1, 2, 3])


def test_learning_curves_refuse_what_they_cannot_draw():
    with pytest.raises(ValueError, match="not fitted"):
        plot.plot_learning_curves(LinearRegression())
    X, y = one_feature_data()
    with pytest.raises(ValueError, match="History"):
        plot.plot_learning_curves(LinearRegression(max_iter=2, tol=None).fit(X, y), x="time")
    with pytest.raises(ValueError, match="labels"):
        plot.plot_learning_curves([[1.0, 2.0], [1.0]], labels=["one"])


# --------------------------------------------------------------------------- loss surface
def mse(X, y, w, b):
    return float(np.mean((X @ np.atleast_1d(w) + b - y) ** 2))


def test_loss_surface_of_w_and_b_has_its_minimum_at_least_squares_and_draws_the_paths():
    X, y = one_feature_data()
    sgd = LinearRegression(optimizer="sgd", learning_rate=0.05, max_iter=40, tol=None, record_path=True).fit(X, y)
    adam = LinearRegression(optimizer="adam", learning_rate=0.2, batch_size=8, max_iter=10, tol=None,
                            random_state=0, record_path="step").fit(X, y)
    ax = plot.plot_loss_surface(X, y, paths={"batch GD": sgd, "Adam": adam}, resolution=101)
    w_star, b_star = np.linalg.lstsq(np.column_stack([X, np.ones(len(y))]), y, rcond=None)[0]
    lines = lines_by_label(ax)
    assert_allclose([lines["minimum"].get_xdata()[0], lines["minimum"].get_ydata()[0]], [w_star, b_star], rtol=1e-10)
    assert_array_equal(lines["batch GD"].get_xdata(), sgd.coef_path_[:, 0])
    assert_array_equal(lines["batch GD"].get_ydata(), sgd.intercept_path_)
    assert_array_equal(lines["Adam"].get_xdata(), adam.coef_path_[:, 0])
    assert len(lines["Adam"].get_xdata()) == adam.t_ + 1
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("w", "b")
    # the contoured values: nothing on the grid is below the least-squares loss, and the lowest
    # grid value is the least-squares loss up to the grid's resolution
    (contours,) = ax.collections
    j_star = mse(X, y, w_star, b_star)
    assert j_star <= contours.zmin <= j_star * 1.01
    assert contours.levels[0] > j_star
    # every path point lies inside the drawn extent
    for line in (lines["batch GD"], lines["Adam"]):
        assert ax.get_xlim()[0] < line.get_xdata().min() and line.get_xdata().max() < ax.get_xlim()[1]
        assert ax.get_ylim()[0] < line.get_ydata().min() and line.get_ydata().max() < ax.get_ylim()[1]


def test_loss_surface_slice_through_the_optimum_of_a_larger_model():
    X, y = make_regression(n_samples=50, n_features=3, noise=5.0, bias=3.0, random_state=1)
    reg = LinearRegression(optimizer="momentum", learning_rate=0.01, max_iter=30, tol=None,
                           record_path=True).fit(X, y)
    ax = plot.plot_loss_surface(X, y, paths=[reg], dims=(2, -1), resolution=41)
    theta_star = np.linalg.lstsq(np.column_stack([X, np.ones(len(y))]), y, rcond=None)[0]
    lines = lines_by_label(ax)
    assert_allclose(lines["minimum"].get_xydata()[0], theta_star[[2, 3]], rtol=1e-10)
    label = "momentum, lr=0.01, full batch"
    assert_array_equal(lines[label].get_xdata(), reg.coef_path_[:, 2])
    assert_array_equal(lines[label].get_ydata(), reg.intercept_path_)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("w[2]", "b")
    (contours,) = ax.collections
    assert mse(X, y, theta_star[:3], theta_star[3]) <= contours.zmin


def test_loss_surface_of_a_logistic_model_centres_on_the_regularised_optimum():
    X, y = make_classification(n_samples=80, n_features=1, n_informative=1, n_redundant=0, n_clusters_per_class=1,
                               flip_y=0.1, random_state=0)
    alpha = 0.05
    clf = LogisticRegression(optimizer="adam", learning_rate=0.1, alpha=alpha, max_iter=30, tol=None,
                             record_path=True).fit(X, y)
    ax = plot.plot_loss_surface(X, y, paths=[clf])
    ref = SkLogistic(C=1.0 / (len(y) * alpha), tol=1e-12, max_iter=10_000).fit(X, y)
    marker = lines_by_label(ax)["minimum"].get_xydata()[0]
    assert_allclose(marker, [ref.coef_[0, 0], ref.intercept_[0]], rtol=1e-5)


def test_loss_surface_in_3d_lifts_the_paths_onto_the_surface():
    X, y = one_feature_data()
    reg = LinearRegression(optimizer="sgd", learning_rate=0.05, max_iter=10, tol=None, record_path=True).fit(X, y)
    ax = plot.plot_loss_surface(X, y, paths=[reg], kind="surface", resolution=30)
    assert ax.name == "3d"
    line = lines_by_label(ax)["sgd, lr=0.05, full batch"]
    xs, ys, zs = line.get_data_3d()
    assert_array_equal(xs, reg.coef_path_[:, 0])
    assert_allclose(zs, [mse(X, y, w, b) for w, b in zip(xs, ys)], rtol=1e-12)
    # the first ten heights are the learning curve (loss_curve_[k] is the loss where epoch k starts)
    assert_allclose(zs[:10], reg.loss_curve_, rtol=1e-12)


def test_loss_surface_refuses_what_it_cannot_draw():
    X, y = one_feature_data()
    with pytest.raises(ValueError, match="record_path"):
        plot.plot_loss_surface(X, y, paths=[LinearRegression(max_iter=2, tol=None).fit(X, y)])
    with pytest.raises(ValueError, match="dims"):
        plot.plot_loss_surface(X, y, dims=(0, 0))
    with pytest.raises(ValueError, match="3-D"):
        plot.plot_loss_surface(X, y, kind="surface", ax=plt.figure().add_subplot())
    Xc, yc = make_classification(n_samples=60, n_features=3, n_informative=3, n_redundant=0, n_classes=3,
                                 random_state=0)
    clf = LogisticRegression(max_iter=2, tol=None, record_path=True).fit(Xc, yc)
    with pytest.raises(ValueError, match="3 classes"):
        plot.plot_loss_surface(Xc, yc, paths=[clf])


# --------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("schedule", list(SCHEDULE_NAMES) + [Warmup(CosineAnnealing(), warmup=10),
                                                             StepDecay(step_size=30, unit="step")])
def test_schedule_curve_is_the_rate_the_kernels_use(schedule):
    """The drawn rates equal the kernel contract's reading of the encoded schedule."""
    n_steps, per_epoch, eta0 = 200, 7, 0.3
    ax = plot.plot_schedule(schedule, n_steps, learning_rate=eta0, steps_per_epoch=per_epoch)
    (line,) = ax.get_lines()
    resolved = get_schedule(schedule)
    horizon = n_steps if resolved.unit == "step" else -(-n_steps // per_epoch)
    if resolved.needs_horizon():
        resolved = resolved.with_horizon(horizon)
    codes, hp = np.zeros(C.N_CODES, dtype=np.int64), np.zeros(C.N_HP)
    hp[C.H_LR], hp[C.H_LR_SCALE] = eta0, 1.0
    resolved.encode(codes, hp)
    expected = [decode_lr(codes, hp, t, t // per_epoch) for t in range(n_steps)]
    assert_array_equal(line.get_xdata(), np.arange(n_steps))
    assert_allclose(line.get_ydata(), expected, rtol=1e-12)
    assert line.get_label() == repr(resolved) and ax.get_ylabel() == "learning rate"


# --------------------------------------------------------------------------- benchmark traces
def bench_results():
    return {"dense_cls": dict(
        f_star=0.3,
        fastgd={"adam b256": [[(0.1, 0.5), (0.2, 0.01), (0.3, 1e-4)]], "sgd b1": [[(0.2, 0.1), (0.4, 0.0)]]},
        peers={"sklearn lbfgs": [(0.05, 0.2), (0.1, 1e-3)]},
        peer_fit_times={"sklearn lbfgs": [0.3, 0.2, 0.4]},
        peer_suboptimality={"sklearn lbfgs": 1e-7},
    ), "dense_reg": dict(f_star=1.0, fastgd={"sgd b32": [[(0.1, 0.3)]]}, peers={}, peer_fit_times={},
                         peer_suboptimality={})}


def test_time_to_accuracy_draws_every_trace_from_the_benchmark_json(tmp_path):
    path = tmp_path / "compare.json"
    path.write_text(json.dumps({"meta": {}, "traces": bench_results()}))
    fig = plot.plot_time_to_accuracy(path)
    left, right = fig.axes
    lines = lines_by_label(left)
    assert_array_equal(lines["fastgd adam b256"].get_xdata(), [0.1, 0.2, 0.3])
    assert_array_equal(lines["fastgd adam b256"].get_ydata(), [0.5, 0.01, 1e-4])
    assert_array_equal(lines["fastgd sgd b1"].get_ydata(), [0.1, 1e-12])  # an exact optimum on the log axis
    assert_array_equal(lines["sklearn lbfgs"].get_ydata(), [0.2, 1e-3])
    (star,) = left.collections
    assert_allclose(star.get_offsets(), [[0.3, 1e-7]])
    assert [line.get_ydata()[0] for line in left.get_lines() if line.get_label().startswith("_")] == [1e-2, 1e-3, 1e-4]
    assert (left.get_title(), right.get_title()) == ("dense_cls", "dense_reg")
    assert left.get_xscale() == left.get_yscale() == "log"


def test_time_to_accuracy_on_given_axes():
    fig, axes = plt.subplots(2, 1)
    assert plot.plot_time_to_accuracy(bench_results(), ax=axes) is fig
    with pytest.raises(ValueError, match="2 workloads"):
        plot.plot_time_to_accuracy(bench_results(), ax=axes[0])


def test_the_benchmark_draws_with_fastgd_plot(tmp_path, monkeypatch):
    compare = pytest.importorskip("bench.compare")
    calls = []
    monkeypatch.setattr(plot, "plot_time_to_accuracy",
                        lambda traces, **kw: calls.append(traces) or plt.figure())
    rep = compare.Report({})
    rep.traces = bench_results()
    png = compare.plot(rep, str(tmp_path))
    assert calls == [rep.traces] and (tmp_path / "time_to_accuracy.png").exists() and png.endswith(".png")


# --------------------------------------------------------------------------- without matplotlib
def test_without_matplotlib_plots_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    for call in (lambda: plot.plot_learning_curves([1.0, 0.5]), lambda: plot.plot_schedule("cosine", 10),
                 lambda: plot.plot_loss_surface(*one_feature_data()),
                 lambda: plot.plot_time_to_accuracy(bench_results())):
        with pytest.raises(ImportError, match=r"pip install fastgd\[plot\]"):
            call()
