"""Pictures of training: learning curves, loss surfaces with optimizer paths, learning-rate
schedules and the benchmark's time-to-accuracy traces.

Every function draws into ``ax`` (a new figure when None) and returns what it drew on, as
scikit-learn's ``Display.plot`` does, so pictures compose: several calls on one Axes overlay.
matplotlib is the ``plot`` extra (``pip install fastgd[plot]``); it is imported when a function
is called, so ``import fastgd.plot`` works without it.
"""

import json
import math
import os
from numbers import Integral, Real

import numpy as np

from fastgd import _contract as C
from fastgd import losses
from fastgd.callbacks import History
from fastgd.schedules import get_schedule

__all__ = ["plot_learning_curves", "plot_loss_surface", "plot_schedule", "plot_time_to_accuracy"]

_FLOOR = 1e-12  # smallest sub-optimality drawn on a log axis (an exact optimum would be -inf)


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "fastgd.plot draws with matplotlib, which is not installed: pip install fastgd[plot] "
            "(or pip install matplotlib)."
        ) from exc
    return plt


def _new_axes(ax, **subplot_kw):
    if ax is not None:
        return ax
    return _pyplot().figure().add_subplot(**subplot_kw)


def _labelled(sources, labels, what):
    """``(sources, labels)`` as two lists from a list or a dict (whose keys are the labels);
    a missing label is None."""
    if isinstance(sources, dict):
        labels = list(sources) if labels is None else labels
        sources = sources.values()
    sources = list(sources)
    labels = [None] * len(sources) if labels is None else list(labels)
    if len(labels) != len(sources):
        raise ValueError(f"{len(labels)} labels for {len(sources)} {what}.")
    return sources, labels


def _describe(estimator):
    """A short label for a fitted estimator: optimizer, learning rate and batch size."""
    opt = estimator.optimizer if isinstance(estimator.optimizer, str) else repr(estimator.optimizer)
    lr = estimator.learning_rate
    lr = f"{lr:g}" if isinstance(lr, Real) else f"{lr} ({estimator.learning_rate_:.3g})"
    # one step per epoch is full-batch gradient descent, whatever batch_size asked for it
    full_batch = estimator.batch_size is None or estimator.t_ == estimator.n_iter_
    return f"{opt}, lr={lr}, " + ("full batch" if full_batch else f"batch {estimator.batch_size_}")


# --------------------------------------------------------------------------- learning curves
def _curves(obj, label, x):
    """``(label, xs, training losses, validation losses or None)`` of one curve source."""
    if isinstance(obj, History):
        scores = obj.validation_losses
        xs = obj.elapsed if x == "time" else obj.epochs
        return label or "history", xs, obj.losses, None if np.all(np.isnan(scores)) else scores
    if x == "time":
        raise ValueError("x='time' needs the elapsed times of a fastgd.callbacks.History; estimators and "
                         "plain curves only know epochs.")
    if hasattr(obj, "get_params"):
        if not hasattr(obj, "loss_curve_"):
            raise ValueError(f"{type(obj).__name__} is not fitted: it has no loss_curve_ to draw; "
                             "call fit first.")
        losses_ = np.asarray(obj.loss_curve_, dtype=np.float64)
        scores = getattr(obj, "validation_loss_curve_", None)
        return (label or _describe(obj), np.arange(1, len(losses_) + 1), losses_,
                None if scores is None else np.asarray(scores, dtype=np.float64))
    losses_ = np.asarray(obj, dtype=np.float64)
    if losses_.ndim != 1:
        raise ValueError(f"a learning curve is a 1-D sequence of losses; got shape {losses_.shape}.")
    return label or "training", np.arange(1, len(losses_) + 1), losses_, None


def _is_curve(obj):
    """True for one curve (a sequence of numbers), False for a collection of curve sources."""
    if isinstance(obj, np.ndarray):
        return obj.ndim == 1
    return len(obj) > 0 and all(isinstance(v, Real) for v in obj)


def plot_learning_curves(estimators_or_curves, *, labels=None, log_scale=False, validation=True, x="epoch",
                         ax=None):
    """The learning curve: training objective against the epoch, and the validation score.

    Parameters
    ----------
    estimators_or_curves : estimator, History, sequence of floats, or a list or dict of them
        Fitted fastgd estimators (their ``loss_curve_`` and, with early stopping,
        ``validation_loss_curve_``), :class:`fastgd.callbacks.History` objects, or plain sequences
        of losses. A dict maps labels to them.
    labels : list of str, optional
        One label per curve source (default: the dict keys, or the optimizer, learning rate
        and batch size of each estimator).
    log_scale : bool, default=False
        Logarithmic loss axis (the notes' curves fall over orders of magnitude).
    validation : bool, default=True
        Also draw the validation loss, when a source has one (early stopping), dashed, in
        the colour of its training curve.
    x : {"epoch", "time"}, default="epoch"
        Horizontal axis; ``"time"`` (seconds since the fit started) needs History sources.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        The Axes of the curves.

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import LinearRegression
    >>> from fastgd.plot import plot_learning_curves
    >>> X = np.array([[1.0], [2.0]]); y = np.array([2.0, 4.0])
    >>> reg = LinearRegression(optimizer="sgd", learning_rate=0.1, max_iter=20, tol=None).fit(X, y)
    >>> ax = plot_learning_curves(reg, log_scale=True)
    >>> ax.get_lines()[0].get_ydata()[:3].round(4).tolist()
    [10.0, 1.06, 0.1732]
    """
    if x not in ("epoch", "time"):
        raise ValueError(f"x must be 'epoch' or 'time'; got {x!r}.")
    sources = estimators_or_curves
    if not isinstance(sources, (dict, list, tuple)) or _is_curve(sources):
        sources = [sources]
    sources, labels = _labelled(sources, labels, "curves")
    curves = [_curves(obj, label, x) for obj, label in zip(sources, labels)]
    ax = _new_axes(ax)
    for label, xs, train, scores in curves:
        (line,) = ax.plot(xs, train, label=f"{label}: training loss")
        if validation and scores is not None:
            ax.plot(xs[:len(scores)], scores, linestyle="--", color=line.get_color(), label=f"{label}: validation loss")
    ax.set_xlabel("epoch" if x == "epoch" else "seconds since the start of the fit")
    ax.set_ylabel("loss (training: objective; validation: mean loss)")
    if log_scale:
        ax.set_yscale("log")
    ax.legend()
    ax.set_title("Learning curve")
    return ax


# --------------------------------------------------------------------------- loss surfaces
class _Objective:
    """The training objective of a single-output linear model as a function of the flat
    parameter vector ``theta = [w_0, ..., w_{p-1}, b]``."""

    def __init__(self, X, y, loss_code, l2, l1, sample_weight):
        self.X = np.asarray(X, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
        n = len(self.y)
        self.sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.code, self.l2, self.l1 = loss_code, l2, l1
        self.p = self.X.shape[1]

    def value_and_grad(self, theta):
        z = self.X @ theta[:-1] + theta[-1]
        value, dz = losses.BY_CODE[self.code](z[:, None], self.y)
        mean = np.dot(self.sw, value) / self.sw.sum()
        g = self.sw * dz[:, 0] / self.sw.sum()
        w = theta[:-1]
        grad = np.r_[self.X.T @ g + self.l2 * w + self.l1 * np.sign(w), g.sum()]
        return mean + 0.5 * self.l2 * (w @ w) + self.l1 * np.abs(w).sum(), grad

    def minimum(self):
        """The minimiser: least squares (ridge with an L2 penalty) in closed form, else L-BFGS."""
        if self.code == C.LOSS_SQUARED and self.l1 == 0:
            s = np.sqrt(self.sw / self.sw.mean())
            A = np.column_stack([self.X, np.ones(len(self.y))]) * s[:, None]
            rhs = self.y[:, 0] * s
            if self.l2 > 0:  # (1/n)||A t - y||^2 + l2/2 ||w||^2: rows sqrt(n l2 / 2) I, intercept free
                reg = np.sqrt(len(rhs) * self.l2 / 2) * np.eye(self.p, self.p + 1)
                A, rhs = np.vstack([A, reg]), np.r_[rhs, np.zeros(self.p)]
            return np.linalg.lstsq(A, rhs, rcond=None)[0]
        from scipy.optimize import minimize

        res = minimize(self.value_and_grad, np.zeros(self.p + 1), jac=True, method="L-BFGS-B",
                       options=dict(maxiter=10_000, gtol=1e-10))
        return res.x

    def on_plane(self, center, dims, A, B):
        """Objective at ``center`` with coordinates ``dims`` set to the grids ``A``, ``B``."""
        A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
        out = np.empty(A.shape)
        z0 = self.X @ center[:-1] + center[-1]
        cols = [self.X[:, d] if d < self.p else np.ones(len(self.y)) for d in dims]
        for i in range(A.shape[0]):  # one grid row at a time: n x resolution values in memory
            da, db = A[i] - center[dims[0]], B[i] - center[dims[1]]
            z = z0[:, None] + cols[0][:, None] * da + cols[1][:, None] * db
            value, _ = losses.BY_CODE[self.code](z.reshape(-1, 1), np.repeat(self.y, A.shape[1], axis=0))
            out[i] = self.sw @ value.reshape(z.shape) / self.sw.sum()
        # the penalty: the weights off the plane are constant, the ones on it vary
        fixed = center[:-1].copy()
        fixed[[d for d in dims if d < self.p]] = 0.0
        out += 0.5 * self.l2 * (fixed @ fixed) + self.l1 * np.abs(fixed).sum()
        for d, grid in zip(dims, (A, B)):
            if d < self.p:
                out += 0.5 * self.l2 * grid * grid + self.l1 * np.abs(grid)
        return out


def _path_coordinates(path, dims, p):
    if hasattr(path, "get_params"):
        if not hasattr(path, "coef_path_"):
            raise ValueError(f"{type(path).__name__} has no coef_path_: fit it with record_path=True (after "
                             "every epoch) or record_path='step' (after every step) to draw its path.")
        m = len(path.coef_path_)
        theta = np.column_stack([np.reshape(path.coef_path_, (m, -1)),
                                 np.reshape(path.intercept_path_, (m, -1))])
        if theta.shape[1] != p + 1:
            raise ValueError(f"the path has {theta.shape[1]} parameters; a loss surface is drawn for "
                             f"single-output models with {p} features and an intercept ({p + 1}).")
        return theta[:, list(dims)]
    xy = np.asarray(path, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"a path is a fitted estimator with coef_path_ or an array of shape (m, 2); "
                         f"got {xy.shape}.")
    return xy


def _loss_of(estimator, y):
    """Loss code, penalty strengths and encoded targets from an estimator's parameters."""
    l2, l1 = estimator._penalty_strengths()
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return C.LOSS_SQUARED, l2, l1, y
    if len(classes) != 2:
        raise ValueError("a loss surface is drawn for single-output models; this classifier has "
                         f"{len(classes)} classes (a multinomial model). Draw one class against the rest.")
    return C.LOSS_LOG, l2, l1, (np.asarray(y) == classes[1]).astype(np.float64)


def plot_loss_surface(X, y, *, paths=(), labels=None, loss=None, alpha=0.0, dims=None, center=None,
                      extent=None, resolution=80, levels=25, kind="contour", sample_weight=None, ax=None):
    """The loss surface J(w, b) with the paths optimizers took down it.

    For one feature this is the notes' picture: the objective of ``y = w x + b`` over the
    plane of ``(w, b)``. With more parameters it is a 2-D slice through ``center`` (by default
    the minimum): the two parameters ``dims`` vary, every other one stays at its value at the
    center, and paths are drawn projected onto the plane of ``dims``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    paths : list or dict of fitted estimators or arrays, default=()
        Estimators fitted with ``record_path`` (their ``coef_path_``/``intercept_path_``), or
        arrays of shape (m, 2) of coordinates in ``dims``. A dict maps labels to paths.
    labels : list of str, optional
        Path labels (default: the dict keys, or optimizer, learning rate and batch size).
    loss : {"squared", "log"} or None, default=None
        The objective; None takes loss and penalty from the first estimator in ``paths``
        (squared with no penalty when there is none). ``"log"`` needs 0/1 targets.
    alpha : float, default=0.0
        L2 strength of an explicit ``loss`` (``alpha/2 * ||w||^2``, as ``penalty="l2"``).
    dims : pair of int, optional
        Indices into ``[w_0, ..., w_{p-1}, b]`` of the two axes (``-1`` is the intercept).
        Default ``(0, -1)``: the first weight and the intercept, i.e. ``(w, b)``.
    center : array-like of shape (n_features + 1,), optional
        Where the slice goes through (``[w..., b]``). Default: the minimiser of the objective
        (least squares or ridge in closed form; L-BFGS for the log loss or an L1 penalty).
    extent : (xmin, xmax, ymin, ymax), optional
        Default: the center and every path point, with a margin.
    resolution : int, default=80
        Grid points per axis (the cost is ``resolution^2 * n_samples``).
    levels : int or array-like, default=25
        Contour levels: a number of levels spaced geometrically above the minimum (a bowl's
        level sets get close near the bottom), or the levels themselves.
    kind : {"contour", "surface"}, default="contour"
        Contour lines in the plane, or a 3-D surface with the paths lifted onto it (``ax``
        must then be a 3-D Axes).
    sample_weight : array-like of shape (n_samples,), optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from fastgd import LinearRegression
    >>> from fastgd.plot import plot_loss_surface
    >>> X = np.array([[1.0], [2.0]]); y = np.array([2.0, 4.0])
    >>> reg = LinearRegression(optimizer="sgd", learning_rate=0.1, max_iter=50, tol=None, record_path=True)
    >>> ax = plot_loss_surface(X, y, paths={"gradient descent": reg.fit(X, y)})
    >>> [line.get_label() for line in ax.get_lines()]
    ['minimum', 'gradient descent']
    >>> np.allclose(ax.get_lines()[0].get_xydata(), [[2.0, 0.0]])  # w = 2, b = 0: least squares
    True
    >>> ax.get_lines()[1].get_xydata()[:3].round(4).tolist()  # the notes' first iterations
    [[0.0, 0.0], [1.0, 0.6], [1.32, 0.78]]
    """
    if kind not in ("contour", "surface"):
        raise ValueError(f"kind must be 'contour' or 'surface'; got {kind!r}.")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or np.ndim(y) != 1 or len(y) != len(X):
        raise ValueError(f"X must be 2-D (n_samples, n_features) and y 1-D (n_samples,) (a surface is drawn "
                         f"for single-output models); got shapes {X.shape} and {np.shape(y)}.")
    p = X.shape[1]
    paths, labels = _labelled(paths, labels, "paths")
    estimators = [q for q in paths if hasattr(q, "get_params")]
    if loss is None and estimators:
        code, l2, l1, y2 = _loss_of(estimators[0], y)
    elif loss in (None, "squared", "log"):
        code, l2, l1 = (C.LOSS_LOG if loss == "log" else C.LOSS_SQUARED), float(alpha), 0.0
        y2 = np.asarray(y, dtype=np.float64)
        if code == C.LOSS_LOG and not np.all(np.isin(y2, (0.0, 1.0))):
            raise ValueError("loss='log' needs targets in {0, 1}.")
    else:
        raise ValueError(f"loss must be 'squared', 'log' or None; got {loss!r}.")
    objective = _Objective(X, y2, code, l2, l1, sample_weight)
    dims = (0, -1) if dims is None else tuple(dims)
    if len(dims) != 2 or not all(isinstance(d, Integral) and -(p + 1) <= d <= p for d in dims):
        raise ValueError(f"dims must be two parameter indices in [-{p + 1}, {p}]; got {dims!r}.")
    dims = tuple(int(d) % (p + 1) for d in dims)
    if dims[0] == dims[1]:
        raise ValueError(f"dims must name two different parameters; got {dims!r}.")
    at_minimum = center is None
    center = objective.minimum() if at_minimum else np.asarray(center, dtype=np.float64).copy()
    if center.shape != (p + 1,):
        raise ValueError(f"center must have n_features + 1 = {p + 1} values ([w..., b]); "
                         f"got shape {center.shape}.")
    coords = [_path_coordinates(q, dims, p) for q in paths]
    if extent is None:
        pts = np.vstack([center[list(dims)][None, :]] + coords)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pad = np.maximum(0.15 * (hi - lo), 0.5 * np.maximum(np.abs(center[list(dims)]), 1.0) * (hi == lo))
        extent = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    A, B = np.meshgrid(np.linspace(extent[0], extent[1], resolution),
                       np.linspace(extent[2], extent[3], resolution))
    Z = objective.on_plane(center, dims, A, B)
    z_min = objective.value_and_grad(center)[0]
    if isinstance(levels, Integral):
        top = Z.max() - z_min
        levels = z_min + np.geomspace(max(top * 1e-3, np.finfo(float).tiny), top, levels)
    names = ["b" if d == p else "w" if p == 1 else f"w[{d}]" for d in dims]
    if kind == "surface":
        ax = _new_axes(ax, projection="3d")
        if not hasattr(ax, "plot_surface"):
            raise ValueError("kind='surface' draws on a 3-D Axes: pass ax=fig.add_subplot(projection='3d').")
        ax.plot_surface(A, B, Z, cmap="viridis", alpha=0.55, linewidth=0)
        ax.plot([center[dims[0]]], [center[dims[1]]], [z_min], marker="*", color="k", markersize=12,
                linestyle="none", label="minimum" if at_minimum else "center")
        ax.set_zlabel("J")
    else:
        ax = _new_axes(ax)
        ax.contour(A, B, Z, levels=levels, cmap="viridis", linewidths=0.8)
        ax.plot(center[dims[0]], center[dims[1]], marker="*", color="k", markersize=12, linestyle="none",
                zorder=5, label="minimum" if at_minimum else "center")
    for q, xy, label in zip(paths, coords, labels):
        label = label or (_describe(q) if hasattr(q, "get_params") else None)
        if kind == "surface":
            zs = objective.on_plane(center, dims, xy[:, :1], xy[:, 1:])[:, 0]
            ax.plot(xy[:, 0], xy[:, 1], zs, marker="o", markersize=2, linewidth=1.2, label=label)
        else:
            ax.plot(xy[:, 0], xy[:, 1], marker="o", markersize=2, linewidth=1.2, label=label)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    where = "the minimum" if at_minimum else "center"
    ax.set_title("Loss surface J(w, b)" if p == 1
                 else f"Loss surface: slice through {where}, ({names[0]}, {names[1]})")
    ax.legend(fontsize="small")
    return ax


# --------------------------------------------------------------------------- schedules
def plot_schedule(schedule, n_steps, *, learning_rate=0.01, steps_per_epoch=1, label=None, ax=None):
    """The learning rate a schedule gives each step.

    Parameters
    ----------
    schedule : str or fastgd.schedules.Schedule
        A name (``"cosine"``, ...) or a schedule object; a horizon left to the fit is set to
        ``n_steps`` (in the schedule's unit). ``ReduceLROnPlateau`` is drawn without
        reductions (they depend on the losses of a fit; a :class:`fastgd.callbacks.History`
        records the rates a fit used).
    n_steps : int
        Steps to draw.
    learning_rate : float, default=0.01
        The base rate ``eta0`` (the estimators' ``learning_rate``).
    steps_per_epoch : int, default=1
        Steps in an epoch, for schedules counted in epochs (``unit="epoch"``).
    label : str, optional
        Default: the schedule's repr.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    schedule = get_schedule(schedule)
    if not (isinstance(n_steps, Integral) and n_steps > 0):
        raise ValueError(f"n_steps must be a positive integer; got {n_steps!r}.")
    if not (isinstance(steps_per_epoch, Integral) and steps_per_epoch > 0):
        raise ValueError(f"steps_per_epoch must be a positive integer; got {steps_per_epoch!r}.")
    if schedule.needs_horizon():
        per_unit = 1 if schedule.unit == "step" else steps_per_epoch
        schedule = schedule.with_horizon(math.ceil(n_steps / per_unit))
    steps = np.arange(n_steps)
    clock = steps if schedule.unit == "step" else steps // steps_per_epoch
    ax = _new_axes(ax)
    ax.plot(steps, schedule.lr(learning_rate, clock), label=label or repr(schedule))
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning-rate schedule")
    ax.legend(fontsize="small")
    return ax


# --------------------------------------------------------------------------- benchmarks
def plot_time_to_accuracy(results, *, thresholds=(1e-2, 1e-3, 1e-4), ax=None):
    """Relative sub-optimality against cumulative time, one panel per workload, as
    ``python -m bench.compare`` measures it.

    Parameters
    ----------
    results : dict or path
        ``compare.json`` (its path or its loaded content) or its ``traces`` part: for each
        workload, ``fastgd`` (configuration -> list of runs, each a list of ``(seconds,
        sub-optimality)``), ``peers`` (peer -> one such run), ``peer_fit_times`` (peer -> fit
        times of a default fit) and ``peer_suboptimality`` (peer -> its sub-optimality).
    thresholds : sequence of float, default=(1e-2, 1e-3, 1e-4)
        Sub-optimality levels drawn as grey lines.
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per workload; default a new figure with a row of panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(results, (str, os.PathLike)):
        with open(results) as f:
            results = json.load(f)
    traces = results.get("traces", results)
    names = list(traces)
    if not names:
        raise ValueError("no time-to-accuracy traces to draw (the benchmark's 'exact' section did not run).")
    if ax is None:
        _, axes = _pyplot().subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
        axes = axes[0]
    else:
        axes = np.atleast_1d(ax).ravel()
        if len(axes) != len(names):
            raise ValueError(f"{len(axes)} Axes for {len(names)} workloads ({', '.join(names)}).")
    for ax_, name in zip(axes, names):
        tr = traces[name]
        for cname, runs in tr.get("fastgd", {}).items():
            if runs:
                t, s = zip(*runs[0])
                ax_.plot(t, np.maximum(np.asarray(s, dtype=np.float64), _FLOOR), marker=".",
                         label=f"fastgd {cname}")
        for pname, run in tr.get("peers", {}).items():
            if run:
                t, s = zip(*run)
                ax_.plot(t, np.maximum(np.asarray(s, dtype=np.float64), _FLOOR), marker="x", linestyle="--",
                         label=pname)
        for pname, times in tr.get("peer_fit_times", {}).items():
            sub = tr.get("peer_suboptimality", {}).get(pname)
            if sub is not None:
                ax_.scatter([np.median(times)], [max(sub, _FLOOR)], marker="*", s=120,
                            label=f"{pname} (default fit)", zorder=5)
        for eps in thresholds:
            ax_.axhline(eps, color="grey", linewidth=0.5)
        ax_.set_xscale("log")
        ax_.set_yscale("log")
        ax_.set_xlabel("seconds (cumulative)")
        ax_.set_ylabel("relative sub-optimality (f - f*) / |f*|")
        ax_.set_title(name)
        ax_.legend(fontsize=6)
    fig = axes[0].figure
    fig.tight_layout()
    return fig
