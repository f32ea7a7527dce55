"""fastgd side by side with the tools a user would otherwise pick, on the same data, in the
same process, with interleaved (A B A B ...) repeats.

    PYTHONPATH=. python -m bench.compare [--quick] [--scale S] [--out DIR] [--threads T]

Writes ``compare.md`` and ``compare.json`` (and ``time_to_accuracy.png`` when matplotlib is
importable) into ``--out`` (default ``bench/results/``) and prints the Markdown tables.
Every number is measured in this run; ratios are ``peer time / fastgd time`` (> 1: fastgd is
faster). See ``bench/README.md`` for what each figure means and the caveats.
"""

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import numpy as np
import scipy.sparse as sp

from bench import _common
from bench import numpy_gd as G
from fastgd import _contract as C

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ALPHA = 1e-4  # L2 strength in fastgd's convention (objective + alpha/2 ||w||^2)
ETA0_LOG = 0.01  # scikit-learn eta0 for the per-sample SGD epoch, classification
ETA0_SQ = 0.001  # scikit-learn eta0 for the per-sample SGD epoch, regression
THRESHOLDS = (1e-2, 1e-3, 1e-4, 1e-6)
EQUIV_ROWS = 200


# --- reporting ----------------------------------------------------------------------------
def fmt_t(s):
    if s is None or not np.isfinite(s):
        return "n/a"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_summary(ts):
    if not ts:
        return "n/a"
    s = _common.summary(ts)
    if s["n"] == 1:
        return fmt_t(s["median"])
    return f"{fmt_t(s['median'])} ({fmt_t(s['min'])}–{fmt_t(s['max'])})"


class Report:
    def __init__(self, meta):
        self.meta = meta
        self.rows = []  # comparison rows
        self.facts = []  # single measurements (bandwidth, memory, ...)
        self.skips = []
        self.notes = []
        self.traces = {}

    def pair(self, section, workload, fastgd_label, fastgd_times, peer_label, peer_times, note="", level=""):
        """One comparison row. ``level``: "user" (whole estimator fits, validation included) or
        "kernel" (one kernel call on prepared arrays); the README quotes both where both exist."""
        fm = float(np.median(fastgd_times)) if len(fastgd_times) else np.nan
        pm = float(np.median(peer_times)) if len(peer_times) else np.nan
        ratio = pm / fm if fm > 0 else np.nan
        row = dict(section=section, workload=workload, fastgd=fastgd_label, peer=peer_label,
                   fastgd_times=list(map(float, fastgd_times)), peer_times=list(map(float, peer_times)),
                   fastgd_summary=_common.summary(fastgd_times) if len(fastgd_times) else None,
                   peer_summary=_common.summary(peer_times) if len(peer_times) else None,
                   ratio=ratio, note=note, level=level)
        self.rows.append(row)
        print(f"  [{section}] {workload}: {fastgd_label} {fmt_summary(fastgd_times)} | {peer_label} "
              f"{fmt_summary(peer_times)} | peer/fastgd {ratio:.3g}" + (f"  ({note})" if note else ""),
              flush=True)
        return row

    def fact(self, section, name, value, unit, note=""):
        self.facts.append(dict(section=section, name=name, value=value, unit=unit, note=note))
        v = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"  [{section}] {name}: {v} {unit}" + (f"  ({note})" if note else ""), flush=True)

    def skip(self, msg):
        self.skips.append(msg)
        print(msg, flush=True)

    def note(self, msg):
        self.notes.append(msg)

    # --- output
    def markdown(self):
        out = ["# fastgd comparison", ""]
        m = self.meta
        out.append(f"Run {m['date']} on {m['machine']} ({m['cpus']} CPUs), Python {m['python']}, "
                   f"numpy {m['numpy']}, scikit-learn {m['sklearn']}, numba {m['numba']}, torch {m['torch']}. "
                   f"Mode: {'quick' if m['quick'] else 'full'}, scale {m['scale']}, {m['repeats']} interleaved "
                   f"repeats per timing (after {m['warmup']} untimed warm-up call), BLAS/torch threads = "
                   f"{m['threads']} (fastgd: per-sample and small mini-batch kernels are single-threaded; large batches and "
                   f"the full gradient use all cores). Backends: {m['backends']}.")
        out.append("")
        out.append("Times are median (min–max) over the repeats; **ratio = peer time / fastgd time** "
                   "(> 1: fastgd faster). Measured on a shared machine: read ratios, not absolute "
                   "times. Nothing in this file is hard-coded; it is all this run's measurement.")
        out.append("")
        sections = []
        for r in self.rows + self.facts:
            if r["section"] not in sections:
                sections.append(r["section"])
        for sec in sections:
            out.append(f"## {SECTION_TITLES.get(sec, sec)}")
            out.append("")
            rows = [r for r in self.rows if r["section"] == sec]
            if rows:
                out.append("| workload | level | fastgd | fastgd time | peer | peer time | peer / fastgd | note |")
                out.append("|---|---|---|---|---|---|---|---|")
                for r in rows:
                    out.append(f"| {r['workload']} | {r['level']} | {r['fastgd']} | {fmt_summary(r['fastgd_times'])} | "
                               f"{r['peer']} | {fmt_summary(r['peer_times'])} | "
                               f"{'n/a' if not np.isfinite(r['ratio']) else format(r['ratio'], '.3g')} | {r['note']} |")
                out.append("")
            facts = [f for f in self.facts if f["section"] == sec]
            if facts:
                out.append("| measurement | value | unit | note |")
                out.append("|---|---|---|---|")
                for f in facts:
                    v = f"{f['value']:.4g}" if isinstance(f["value"], float) else str(f["value"])
                    out.append(f"| {f['name']} | {v} | {f['unit']} | {f['note']} |")
                out.append("")
        if self.notes:
            out.append("## Notes")
            out.append("")
            out.extend(f"- {n}" for n in self.notes)
            out.append("")
        if self.skips:
            out.append("## Skipped")
            out.append("")
            out.extend(f"- {s}" for s in self.skips)
            out.append("")
        return "\n".join(out)

    def to_json(self):
        def clean(o):
            if isinstance(o, dict):
                return {k: clean(v) for k, v in o.items()}
            if isinstance(o, (list, tuple)):
                return [clean(v) for v in o]
            if isinstance(o, (np.floating, float)):
                return None if not np.isfinite(o) else float(o)
            if isinstance(o, np.integer):
                return int(o)
            return o

        return clean(dict(meta=self.meta, rows=self.rows, facts=self.facts, skips=self.skips,
                          notes=self.notes, traces=self.traces))


SECTION_TITLES = {
    "sgd_epoch": "Per-sample SGD, one epoch: scikit-learn SGDClassifier / SGDRegressor vs fastgd (estimator fit, max_iter=1)",
    "dropin": ("Drop-in SGDClassifier / SGDRegressor vs scikit-learn's, same parameters, time per epoch (process CPU "
               "time, robust to a loaded machine; wall time for the n_jobs=2 rows)"),
    "exact": "Time to accuracy vs exact solvers (relative sub-optimality of the regularised objective)",
    "torch": "PyTorch CPU training loop vs fastgd kernel, one epoch, same batches",
    "numpy": "Plain NumPy vectorised GD vs fastgd kernel, one epoch, same batches",
    "bandwidth": "Full-batch gradient vs memory bandwidth (tall workload)",
    "adam_vs_sgd": "Cost of Adam vs plain SGD per mini-batch epoch (batch 32)",
    "contention": "fastgd next to NumPy in one program (BLAS on every core), and the cost of fit around its epoch",
    "cold": "Cold start: fresh interpreter, import + first small fit",
    "memory": "Memory: peak during fit relative to the size of X (fresh subprocess)",
}


# --- workloads ----------------------------------------------------------------------------
def workloads(scale):
    n = max(2000, int(200_000 * scale))
    return dict(
        dense_cls=dict(kind="log", n=n, p=100),
        dense_reg=dict(kind="squared", n=n, p=100),
        sparse_cls=dict(kind="log", n=n, p=20_000, nnz=50),
        tall=dict(kind="squared", n=max(10_000, int(1_000_000 * scale)), p=50),
        multiclass=dict(kind="softmax", n=n, p=100, K=10),
    )


class Data:
    """Lazily generated workloads, cached by (name, dtype)."""

    def __init__(self, specs):
        self.specs = specs
        self.cache = {}

    def get(self, name, dtype=np.float64):
        key = (name, np.dtype(dtype).name)
        if key in self.cache:
            return self.cache[key]
        s = self.specs[name]
        base = self.cache.get((name, "float64"))
        if base is not None:
            X64, y = base
            X = X64.astype(dtype)
        elif name == "sparse_cls":
            X, y = _common.sparse_classification(s["n"], s["p"], s["nnz"], np.float64, seed=2)
        elif s["kind"] == "squared":
            X, y = _common.dense_regression(s["n"], s["p"], np.float64, seed=1 if name == "tall" else 0)
        else:
            X, y = _common.dense_classification(s["n"], s["p"], np.float64, seed=0, n_classes=s.get("K", 2))
        if X.dtype != dtype:
            X = X.astype(dtype)
        self.cache[key] = (X, y)
        if (name, "float64") not in self.cache and dtype != np.float64:
            pass
        return X, y

    def y2(self, name, dtype=np.float64):
        X, y = self.get(name, dtype)
        return np.asarray(y, dtype=dtype).reshape(-1, 1)


def layout_name(X):
    return f"{'CSR' if sp.issparse(X) else 'dense'} {X.dtype.name}"


def silence():
    from sklearn.exceptions import ConvergenceWarning

    warnings.simplefilter("ignore", ConvergenceWarning)


def _W_from_estimator(est, p):
    coef = np.asarray(est.coef_, dtype=np.float64)
    coef = coef.reshape(-1, p)  # (K, p)
    b = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    return np.vstack([coef.T, b.reshape(1, -1)])


# --- 1. per-sample SGD epoch vs scikit-learn ---------------------------------------------
def section_sgd_epoch(rep, data, backends, args):
    from sklearn.linear_model import SGDClassifier, SGDRegressor

    from fastgd import LinearRegression, LogisticRegression

    print("\n== per-sample SGD epoch vs scikit-learn ==", flush=True)
    cases = [("dense_cls", np.float64), ("dense_cls", np.float32), ("dense_reg", np.float64),
             ("dense_reg", np.float32), ("sparse_cls", np.float64), ("sparse_cls", np.float32),
             ("multiclass", np.float64)]
    for name, dtype in cases:
        kind = data.specs[name]["kind"]
        X, y = data.get(name, dtype)
        if kind == "squared":
            # sklearn: 1/2 (y - yhat)^2 and w *= (1 - eta0 alpha_sk); fastgd: (y - yhat)^2.
            # Equal steps: fastgd lr = eta0 / 2 and fastgd alpha = 2 * alpha_sk.
            def peer():
                return SGDRegressor(loss="squared_error", penalty="l2", alpha=ALPHA, learning_rate="constant",
                                    eta0=ETA0_SQ, max_iter=1, tol=None, shuffle=True, random_state=0)

            def ours(b):
                return LinearRegression(optimizer="sgd", learning_rate=ETA0_SQ / 2, batch_size=1, max_iter=1,
                                        tol=None, penalty="l2", alpha=2 * ALPHA, shuffle=True, random_state=0,
                                        backend=b)
            peer_label = f"SGDRegressor(eta0={ETA0_SQ})"
            ours_label = f"LinearRegression(sgd, lr={ETA0_SQ / 2:g}, alpha={2 * ALPHA:g})"
        else:
            def peer():
                return SGDClassifier(loss="log_loss", penalty="l2", alpha=ALPHA, learning_rate="constant",
                                     eta0=ETA0_LOG, max_iter=1, tol=None, shuffle=True, random_state=0)

            def ours(b):
                return LogisticRegression(optimizer="sgd", learning_rate=ETA0_LOG, batch_size=1, max_iter=1,
                                          tol=None, penalty="l2", alpha=ALPHA, shuffle=True, random_state=0,
                                          backend=b)
            peer_label = f"SGDClassifier(eta0={ETA0_LOG})"
            ours_label = f"LogisticRegression(sgd, lr={ETA0_LOG:g})"
        fns = {}
        for bname in backends:
            try:
                ours(bname).fit(X[:200], y[:200])
            except Exception as exc:
                rep.skip(f"{name} {layout_name(X)} fastgd[{bname}]: fitting raised {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120]} -- skipped")
                continue
            fns[f"fastgd[{bname}]"] = (lambda b=bname: ours(b).fit(X, y))
        if not fns:
            continue
        fns["sklearn"] = lambda: peer().fit(X, y)
        times = _common.alternate(fns, args.repeats, warmup=1)
        sk = peer().fit(X[:100], y[:100])
        sk_dtype = np.asarray(sk.coef_).dtype.name
        note = f"sklearn coef dtype {sk_dtype}"
        if kind == "softmax":
            note += "; sklearn trains 10 one-vs-rest binary models, fastgd one softmax model (different objective)"
        if sp.issparse(X):
            note += "; sklearn damps sparse intercept steps by 0.01"
        if kind == "squared":
            note += f"; fastgd lr = eta0/2, alpha = 2*alpha_sk (equal steps)"
        for label in fns:
            if label != "sklearn":
                rep.pair("sgd_epoch", f"{name} {layout_name(X)} {X.shape[0]}x{X.shape[1]}",
                         f"{label} {ours_label}", times[label], peer_label, times["sklearn"], note, level="user")
    # check the step equivalence on a subset, without shuffling: identical sequences of steps
    for name in ("dense_cls", "dense_reg"):
        X, y = data.get(name, np.float64)
        Xs, ys = X[:EQUIV_ROWS], y[:EQUIV_ROWS]
        if data.specs[name]["kind"] == "squared":
            a = SGDRegressor(loss="squared_error", penalty="l2", alpha=ALPHA, learning_rate="constant",
                             eta0=ETA0_SQ, max_iter=1, tol=None, shuffle=False).fit(Xs, ys)
            b = LinearRegression(optimizer="sgd", learning_rate=ETA0_SQ / 2, batch_size=1, max_iter=1, tol=None,
                                 penalty="l2", alpha=2 * ALPHA, shuffle=False).fit(Xs, ys)
        else:
            a = SGDClassifier(loss="log_loss", penalty="l2", alpha=ALPHA, learning_rate="constant", eta0=ETA0_LOG,
                              max_iter=1, tol=None, shuffle=False).fit(Xs, ys)
            b = LogisticRegression(optimizer="sgd", learning_rate=ETA0_LOG, batch_size=1, max_iter=1, tol=None,
                                   penalty="l2", alpha=ALPHA, shuffle=False).fit(Xs, ys)
        diff = np.max(np.abs(np.ravel(a.coef_) - np.ravel(b.coef_))) / max(np.max(np.abs(a.coef_)), 1e-300)
        rep.fact("sgd_epoch", f"step equivalence check, {name}: max |coef_sk - coef_fastgd| / max |coef_sk| "
                 f"after one unshuffled epoch on the first {EQUIV_ROWS} rows", float(diff), "",
                 "rounding-level = the two tools take the same steps. Over many more steps at this eta the "
                 "rounding differences grow (steps on the largest-norm rows are expansive), so the check is kept short")


# --- 1b. drop-in SGDClassifier / SGDRegressor vs scikit-learn's ---------------------------------
DROPIN_CLASSIFIER_LOSSES = ("hinge", "log_loss", "modified_huber", "squared_hinge", "perceptron")
DROPIN_REGRESSION_LOSSES = ("squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive")
DROPIN_EPOCHS = 5


def _dropin_kernel_epoch(est, X, y, backend_name):
    """One compiled epoch of fastgd's drop-in, arguments prepared outside the timed call (the
    kernel-level figure next to the whole-fit one)."""
    from fastgd.linear_model._sgd import _Problem, get_sgd_backend
    from fastgd._backends import _sgd_rules as R

    backend = get_sgd_backend(backend_name)
    y_enc = np.where(y == np.unique(y)[-1], 1.0, -1.0).astype(X.dtype)
    sw = np.ones(X.shape[0], dtype=X.dtype)
    problem = _Problem(est, X, y_enc, sw, np.zeros(X.shape[0], dtype=bool), 1.0, 1.0)
    order = np.random.default_rng(0).permutation(X.shape[0]).astype(np.int64)
    w = np.zeros(X.shape[1], dtype=X.dtype)
    aw, q = np.zeros_like(w), np.zeros_like(w)
    scalars = np.zeros(R.N_SCALARS)

    def run():
        w[:] = 0.0
        scalars[:] = 0.0
        scalars[R.S_T], scalars[R.S_ETA], scalars[R.S_WSCALE], scalars[R.S_AVERAGE_B] = 1.0, est.eta0, 1.0, 1.0
        if sp.issparse(X):
            backend.sgd_epoch_csr(X.data, problem.indices, problem.indptr, y_enc, sw, order, w, aw, q, scalars,
                                  problem.codes, problem.hp)
        else:
            backend.sgd_epoch_dense(X, y_enc, sw, order, w, aw, q, scalars, problem.codes, problem.hp)

    return run


def _shuffled_row_read(X, order):
    """The memory floor of a shuffled epoch: read every row of ``X`` in ``order`` (dense, or
    CSR values and indices), the next rows prefetched as the engines prefetch them, and
    nothing else (summed with reassociation, so that the arithmetic is not the limit). A
    per-sample epoch over X cannot take less."""
    from numba import njit

    from fastgd._backends import _numba_sgd as engine

    @njit(nogil=True, fastmath=True)
    def read_dense(X, order):
        total = 0.0
        n = order.shape[0]
        flat = X.reshape(-1)
        for ii in range(n):
            if ii + engine._PREFETCH_AHEAD < n:
                engine._prefetch_row(flat, flat, order[ii + engine._PREFETCH_AHEAD] * X.shape[1], X.shape[1], True)
            total += np.sum(X[order[ii]])
        return total

    @njit(nogil=True, fastmath=True)
    def read_csr(data, indices, indptr, order):
        total = 0.0
        n = order.shape[0]
        for ii in range(n):
            if ii + engine._PREFETCH_AHEAD < n:
                i = order[ii + engine._PREFETCH_AHEAD]
                engine._prefetch_row(data, indices, np.int64(indptr[i]), np.int64(indptr[i + 1] - indptr[i]), False)
            i = order[ii]
            total += np.sum(data[indptr[i]:indptr[i + 1]]) + np.sum(indices[indptr[i]:indptr[i + 1]])
        return total

    if sp.issparse(X):
        return lambda: read_csr(X.data, X.indices.view(np.uint32), X.indptr.view(np.uint32), order)
    return lambda: read_dense(X, order)


def _alternate(fns, repeats, clock):
    """``_common.alternate`` on the given clock: the process's CPU time for single-threaded
    fits (the time a shared machine's other jobs keep this one waiting is not counted, a
    cache miss is), wall time where threads run in parallel."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def section_dropin(rep, data, backends, args):
    """fastgd.SGDClassifier / SGDRegressor against scikit-learn's with the same parameters
    (DROPIN_EPOCHS epochs: tol=None, shuffle=True; and scikit-learn's default stopping rule),
    every loss, averaged SGD, multiclass one-vs-rest with n_jobs=2 on both sides, dense
    float64 / float32 and CSR; for hinge, the kernel-level epoch and the memory floor of a
    shuffled epoch (reading the rows alone) next to the whole fit."""
    from sklearn import linear_model as sk

    import fastgd

    print("\n== drop-in SGDClassifier / SGDRegressor vs scikit-learn ==", flush=True)
    # several epochs per fit, so that the per-fit validation (which both tools do) is amortised
    # as in real use; times are reported per epoch (fit time / n_iter_)
    common = dict(max_iter=DROPIN_EPOCHS, tol=None, shuffle=True, random_state=0, alpha=ALPHA)
    cases = []  # (workload, dtype, estimator name, params)
    for dtype in (np.float64, np.float32):
        for loss in DROPIN_CLASSIFIER_LOSSES:
            cases.append(("dense_cls", dtype, "SGDClassifier", dict(loss=loss)))
        for loss in DROPIN_REGRESSION_LOSSES:
            cases.append(("dense_reg", dtype, "SGDRegressor", dict(loss=loss, eta0=ETA0_SQ)))
        cases.append(("dense_cls", dtype, "SGDClassifier", dict(loss="hinge", average=True)))
        cases.append(("sparse_cls", dtype, "SGDClassifier", dict(loss="hinge")))
        cases.append(("sparse_cls", dtype, "SGDClassifier", dict(loss="log_loss")))
        cases.append(("sparse_cls", dtype, "SGDClassifier", dict(loss="hinge", average=True)))
    cases.append(("multiclass", np.float64, "SGDClassifier", dict(loss="hinge", n_jobs=2)))
    cases.append(("multiclass", np.float64, "SGDClassifier", dict(loss="log_loss", average=True, n_jobs=2)))
    # scikit-learn's default stopping rule (tol=1e-3 on the training objective, which sums the
    # loss and the penalty at every step): each fit runs until it stops, time / n_iter_
    for name in ("dense_cls", "sparse_cls"):
        cases.append((name, np.float64, "SGDClassifier", dict(loss="hinge", tol=1e-3, max_iter=1000)))
    plain_vs_averaged = {}
    for name, dtype, cls_name, params in cases:
        X, y = data.get(name, dtype)
        params = dict(common, **params)
        peer_cls, our_cls = getattr(sk, cls_name), getattr(fastgd, cls_name)
        n_iter = {}

        def fit(est, key):
            n_iter[key] = est.fit(X, y).n_iter_

        fns = {f"fastgd[{b}]": (lambda b=b: fit(our_cls(backend=b, **params), f"fastgd[{b}]")) for b in backends}
        fns["sklearn"] = lambda: fit(peer_cls(**params), "sklearn")
        clock = time.perf_counter if "n_jobs" in params else time.process_time
        times = {k: [t / n_iter[k] for t in v] for k, v in _alternate(fns, args.repeats, clock).items()}
        label = f"{cls_name}({', '.join(f'{k}={v!r}' for k, v in params.items() if k not in common or v != common[k])})"
        for b in backends:
            note = (f"per epoch of a whole {DROPIN_EPOCHS}-epoch fit, same parameters" if params["tol"] is None else
                    f"per epoch of a whole fit to the stopping rule ({n_iter[f'fastgd[{b}]']} epochs; "
                    f"scikit-learn {n_iter['sklearn']})")
            note += ", wall time (threads)" if "n_jobs" in params else ", CPU time"
            rep.pair("dropin", f"{name} {layout_name(X)} {X.shape[0]}x{X.shape[1]}", f"fastgd[{b}] {label}",
                     times[f"fastgd[{b}]"], f"sklearn {label}", times["sklearn"], note)
            key = (name, np.dtype(dtype).name, b)
            if params.get("loss") == "hinge" and "n_jobs" not in params and params["tol"] is None:
                plain_vs_averaged.setdefault(key, {})["averaged" if params.get("average") else "plain"] = \
                    float(np.median(times[f"fastgd[{b}]"]))
        if params.get("loss") == "hinge" and name != "multiclass" and not params.get("average") \
                and params["tol"] is None:
            est = our_cls(**params)
            kernel = {f"fastgd[{b}] kernel": _dropin_kernel_epoch(est, X, y, b) for b in backends}
            order = np.random.default_rng(0).permutation(X.shape[0]).astype(np.int64)
            kernel["row read"] = _shuffled_row_read(X, order)
            ktimes = _alternate(kernel, args.repeats, time.process_time)
            workload = f"{name} {layout_name(X)} {X.shape[0]}x{X.shape[1]}"
            for b in backends:
                rep.pair("dropin", workload, f"fastgd[{b}] kernel epoch (hinge)", ktimes[f"fastgd[{b}] kernel"],
                         "sklearn SGDClassifier(loss='hinge'), per epoch of a whole fit", times["sklearn"],
                         "kernel level: one compiled epoch from w = 0, arguments prepared outside the timing, "
                         "CPU time")
            rep.pair("dropin", workload, "memory floor: reading the rows in a shuffled order, nothing else",
                     ktimes["row read"], "sklearn SGDClassifier(loss='hinge'), per epoch of a whole fit",
                     times["sklearn"], "the largest ratio any per-sample epoch over this X could reach; CPU time")
    for (name, dtype_name, b), t in plain_vs_averaged.items():
        if "plain" in t and "averaged" in t:
            rep.fact("dropin", f"averaged / plain SGD epoch cost, fastgd[{b}], {name} {dtype_name} (hinge)",
                     t["averaged"] / t["plain"], "x", "target <= 1.3")


# --- 2. time to accuracy vs exact solvers -----------------------------------------------------
def fastgd_configs(kind):
    """The few fastgd configurations tried for time-to-accuracy (the best is reported)."""
    from fastgd.schedules import ExponentialDecay

    s = 0.1 if kind == "squared" else 1.0  # squared loss: gradient 2(yhat - y), larger steps diverge
    return {
        "adam b256 lr=0.01 exp(0.8)/epoch": dict(optimizer="adam", batch_size=256, learning_rate=0.01,
                                                  schedule=ExponentialDecay(gamma=0.8)),
        f"sgd b32 lr={0.3 * s:g} exp(0.8)/epoch": dict(optimizer="sgd", batch_size=32, learning_rate=0.3 * s,
                                                       schedule=ExponentialDecay(gamma=0.8)),
        f"sgd b1 lr={0.01 * s:g} exp(0.8)/epoch": dict(optimizer="sgd", batch_size=1, learning_rate=0.01 * s,
                                                       schedule=ExponentialDecay(gamma=0.8)),
        f"momentum b32 lr={0.03 * s:g} cosine": dict(optimizer="momentum", batch_size=32, learning_rate=0.03 * s,
                                                     schedule="cosine"),
        # variance-reduced: a constant step converges linearly to the optimum
        "saga b1 lr=auto (1/(3 L_max)) constant": dict(optimizer="saga", learning_rate="auto"),
    }


def _trace_fastgd_fit(make, X, y, y2, kind, f_star, time_cap):
    """The trace of one ``fit`` (SAGA needs the same samples every epoch, so no ``partial_fit``):
    a callback records each epoch's sub-optimality, and the time it spends doing so is taken
    out of the fit's elapsed time."""
    p = X.shape[1]
    trace, spent = [], [0.0]

    def record(epoch):
        t0 = time.perf_counter()
        W = np.vstack([np.asarray(epoch.coef, dtype=np.float64).reshape(-1, p).T,
                       np.reshape(np.asarray(epoch.intercept, dtype=np.float64), (1, -1))])
        trace.append((epoch.elapsed - spent[0], (G.objective(X, y2, W, kind, ALPHA) - f_star) / abs(f_star)))
        spent[0] += time.perf_counter() - t0
        return trace[-1][1] <= min(THRESHOLDS) or trace[-1][0] > time_cap or not np.isfinite(trace[-1][1])

    make(callbacks=[record]).fit(X, y)
    return trace


def _trace_fastgd(make, X, y, y2, kind, K, f_star, epochs, classes, time_cap):
    if make().optimizer == "saga":
        return _trace_fastgd_fit(make, X, y, y2, kind, f_star, time_cap)
    est = make()
    t = 0.0
    trace = []
    p = X.shape[1]
    for _ in range(epochs):
        t0 = time.perf_counter()
        if classes is not None:
            est.partial_fit(X, y, classes=classes)
        else:
            est.partial_fit(X, y)
        t += time.perf_counter() - t0
        W = _W_from_estimator(est, p)
        trace.append((t, (G.objective(X, y2, W, kind, ALPHA) - f_star) / abs(f_star)))
        if trace[-1][1] <= min(THRESHOLDS) or t > time_cap or not np.isfinite(trace[-1][1]):
            break
    return trace


def time_to(trace, eps):
    for t, s in trace:
        if s <= eps:
            return t
    return None


def section_exact(rep, data, backend_name, args):
    from sklearn.linear_model import LinearRegression as SkLinear
    from sklearn.linear_model import LogisticRegression as SkLogistic
    from sklearn.linear_model import Ridge, SGDClassifier

    from fastgd import LinearRegression, LogisticRegression

    print("\n== time to accuracy vs exact solvers ==", flush=True)
    for name in ("dense_cls", "dense_reg", "multiclass"):
        spec = data.specs[name]
        kind = spec["kind"]
        K = spec.get("K", 1)
        X, y = data.get(name, np.float64)
        n, p = X.shape
        y2 = np.asarray(y, dtype=np.float64).reshape(-1, 1)
        classes = np.unique(y) if kind != "squared" else None
        # peers: exact solvers with the same objective
        if kind == "squared":
            peers = {"Ridge(alpha=n*alpha/2)": lambda: Ridge(alpha=n * ALPHA / 2).fit(X, y),
                     "LinearRegression (no penalty)": lambda: SkLinear().fit(X, y)}
        else:
            peers = {"LogisticRegression(lbfgs, C=1/(n*alpha))": lambda: SkLogistic(C=1.0 / (n * ALPHA), max_iter=1000).fit(X, y)}
        t_opt = time.perf_counter()
        W0 = None
        if kind != "squared":
            W0 = _W_from_estimator(SkLogistic(C=1.0 / (n * ALPHA), max_iter=1000).fit(X, y), p)
        W_star = G.optimum(X, y2, kind, ALPHA, K=K, W0=W0)
        f_star = G.objective(X, y2, W_star, kind, ALPHA)
        rep.note(f"{name}: optimum f* = {f_star:.10g} computed once by "
                 f"{'the normal equations' if kind == 'squared' else 'tight L-BFGS (gtol 1e-12)'} "
                 f"in {time.perf_counter() - t_opt:.2f} s (not part of any timing).")
        peer_times = _common.alternate(peers, args.repeats, warmup=1)
        peer_sub = {}
        for label, fn in peers.items():
            est = fn()
            peer_sub[label] = (G.objective(X, y2, _W_from_estimator(est, p), kind, ALPHA) - f_star) / abs(f_star)
        # fastgd traces, interleaved over configurations
        Est = LinearRegression if kind == "squared" else LogisticRegression
        cfgs = fastgd_configs(kind)
        traces = {c: [] for c in cfgs}
        for rep_i in range(args.trace_repeats):
            for cname, cfg in cfgs.items():
                def make(cfg=cfg, rep_i=rep_i, **extra):
                    return Est(penalty="l2", alpha=ALPHA, max_iter=args.epochs, tol=None, random_state=rep_i,
                               backend=backend_name, **cfg, **extra)
                # warm-up (compilation) on a few rows, untimed
                with contextlib.suppress(Exception):
                    w = make()
                    if w.optimizer == "saga":
                        w.set_params(max_iter=1).fit(X[:64], y[:64])
                    else:
                        (w.partial_fit(X[:64], y[:64], classes=classes) if classes is not None else w.partial_fit(X[:64], y[:64]))
                try:
                    traces[cname].append(_trace_fastgd(make, X, y, y2, kind, K, f_star, args.epochs, classes,
                                                       args.time_cap))
                except Exception as exc:
                    rep.skip(f"{name} fastgd {cname}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        # peer traces for the plot: lbfgs with growing max_iter; sklearn SGD partial_fit
        peer_traces = {}
        if kind != "squared":
            tr = []
            for it in (1, 2, 4, 8, 16, 32, 64, 128, 256):
                t0 = time.perf_counter()
                est = SkLogistic(C=1.0 / (n * ALPHA), max_iter=it).fit(X, y)
                dt = time.perf_counter() - t0
                tr.append((dt, (G.objective(X, y2, _W_from_estimator(est, p), kind, ALPHA) - f_star) / abs(f_star)))
                if est.n_iter_.max() < it:
                    break
            peer_traces["sklearn lbfgs (refit with max_iter=1,2,4,...)"] = tr
            tr = []
            for it in (1, 2, 4, 8, 16, 32, 64):
                t0 = time.perf_counter()
                est = SkLogistic(solver="saga", C=1.0 / (n * ALPHA), max_iter=it, tol=1e-12).fit(X, y)
                dt = time.perf_counter() - t0
                tr.append((dt, (G.objective(X, y2, _W_from_estimator(est, p), kind, ALPHA) - f_star) / abs(f_star)))
                if est.n_iter_.max() < it or tr[-1][1] <= min(THRESHOLDS) or dt > args.time_cap:
                    break
            peer_traces["sklearn saga (refit with max_iter=1,2,4,...)"] = tr
            if K == 1:
                sgd = SGDClassifier(loss="log_loss", penalty="l2", alpha=ALPHA, random_state=0)
                sgd.partial_fit(X[:64], y[:64], classes=classes)
                sgd = SGDClassifier(loss="log_loss", penalty="l2", alpha=ALPHA, random_state=0)
                tr, t = [], 0.0
                for _ in range(args.epochs):
                    t0 = time.perf_counter()
                    sgd.partial_fit(X, y, classes=classes)
                    t += time.perf_counter() - t0
                    tr.append((t, (G.objective(X, y2, _W_from_estimator(sgd, p), kind, ALPHA) - f_star) / abs(f_star)))
                    if t > args.time_cap:
                        break
                peer_traces["sklearn SGDClassifier (default 'optimal' lr) partial_fit"] = tr
        rep.traces[name] = dict(f_star=f_star, fastgd={c: v for c, v in traces.items()}, peers=peer_traces,
                                peer_fit_times={k: v for k, v in peer_times.items()},
                                peer_suboptimality=peer_sub)
        wl = f"{name} dense float64 {n}x{p}" + (f", K={K}" if K > 1 else "")
        main_peer = next(iter(peers))
        for eps in THRESHOLDS:
            best, best_ts = None, None
            for cname, trs in traces.items():
                ts = [time_to(tr, eps) for tr in trs]
                if trs and all(v is not None for v in ts) and (best is None or np.median(ts) < np.median(best_ts)):
                    best, best_ts = cname, ts
            if best is None:
                closest = min((min(s for _, s in tr) for trs in traces.values() for tr in trs), default=np.nan)
                rep.pair("exact", wl, f"fastgd: no configuration reached {eps:g} within {args.epochs} epochs "
                         f"(best sub-optimality {closest:.2g})", [], f"{main_peer} to its optimum",
                         peer_times[main_peer], f"peer's own sub-optimality {peer_sub[main_peer]:.1e}")
            else:
                rep.pair("exact", wl, f"fastgd[{backend_name}] to {eps:g}: {best}", best_ts,
                         f"{main_peer} to its optimum", peer_times[main_peer],
                         f"peer's own sub-optimality {peer_sub[main_peer]:.1e}; fastgd cumulative training time "
                         "(partial_fit epochs; SAGA: one fit, its callback's time taken out)")
        for label, tr in peer_traces.items():
            rep.fact("exact", f"{wl}: {label}", ", ".join(
                f"{e:g}: {fmt_t(time_to(tr, e)) if time_to(tr, e) is not None else 'not reached'}" for e in THRESHOLDS),
                "", "time to each relative sub-optimality (peer, user level: whole fits)")
        if kind == "log" and K == 1:
            _saga_kernel_vs_fit(rep, wl, X, y, backend_name, args)
        for label in list(peers)[1:]:
            rep.fact("exact", f"{wl}: {label} fit time (median)", float(np.median(peer_times[label])), "s",
                     f"sub-optimality on the ridge objective {peer_sub[label]:.1e}")
        for cname, trs in traces.items():
            reached = [time_to(trs[0], e) for e in THRESHOLDS] if trs else []
            if trs:
                final = trs[0][-1]
                rep.fact("exact", f"{wl}: fastgd {cname}", f"{len(trs[0])} epochs, {final[0]:.3g} s, sub-opt {final[1]:.2g}",
                         "", "time to " + ", ".join(f"{e:g}: {fmt_t(r) if r is not None else 'not reached'}"
                                                    for e, r in zip(THRESHOLDS, reached)))


def _saga_kernel_vs_fit(rep, wl, X, y, backend_name, args):
    """SAGA's cost per epoch at kernel level (one compiled epoch, arrays prepared outside the
    timing) next to user level (a whole one-epoch ``fit``, validation and step size included)."""
    from fastgd import LogisticRegression
    from fastgd._backends import get_backend
    from fastgd.optim import SAGA

    backend = get_backend(backend_name)
    n, p = X.shape
    est = LogisticRegression(optimizer="saga", alpha=ALPHA, max_iter=1, tol=None, backend=backend_name,
                             random_state=0)
    codes = np.zeros(C.N_CODES, dtype=np.int64)
    hp = np.zeros(C.N_HP)
    codes[C.C_LOSS] = C.LOSS_LOG
    SAGA().encode(codes, hp)
    hp[C.H_LR], hp[C.H_LR_SCALE], hp[C.H_L2] = 1e-5, 1.0, ALPHA
    y2 = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    sw = np.ones(n)
    coef, state = np.zeros((p + 1, 1)), np.zeros((1, p + 1, 1))
    memory, work, t = np.zeros((n, 1)), np.zeros((C.WORK_ROWS, 1)), np.zeros(1, dtype=np.int64)
    order = np.random.default_rng(0).permutation(n).astype(np.int64)
    times = _common.alternate({
        "kernel": lambda: backend.epoch_saga_dense(X, y2, sw, order, coef, state, t, codes, hp, work, memory, n),
        "fit": lambda: est.fit(X, y),
    }, args.repeats, warmup=1)
    rep.pair("exact", f"{wl}, SAGA one epoch", f"fastgd[{backend_name}] SAGA kernel epoch", times["kernel"],
             "the same as a one-epoch fit (user level)", times["fit"],
             "ratio < 1: the fit's overhead over its kernel (validation, auto step, set-up)")


# --- 3. PyTorch ------------------------------------------------------------------------------
def section_torch(rep, data, backends, args):
    print("\n== PyTorch CPU loop ==", flush=True)
    try:
        import torch
    except ImportError:
        rep.skip("torch not installed: skipped")
        return
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        _torch_loops(rep, data, backends, args, torch)
    finally:
        # torch sets the OpenMP thread count process-wide (it reaches the OpenMP runtime of
        # fastgd's Cython kernels too): restore it for the sections that follow
        torch.set_num_threads(threads_before)


def _torch_loops(rep, data, backends, args, torch):
    X64, y = data.get("dense_cls", np.float64)
    n, p = X64.shape
    order = np.random.default_rng(0).permutation(n).astype(np.int64)
    opts = {"sgd": (0.01, lambda ps, lr: torch.optim.SGD(ps, lr=lr)),
            "momentum": (0.01, lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9)),
            "adam": (1e-3, lambda ps, lr: torch.optim.Adam(ps, lr=lr))}
    sub = min(n, args.torch_b1_steps)
    for dtype in (np.float32,) if args.quick else (np.float32, np.float64):
        X, _ = data.get("dense_cls", dtype)
        y2 = np.asarray(y, dtype=dtype).reshape(-1, 1)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y2)
        tdt = Xt.dtype
        for batch in (32, 256, 1):
            steps_samples = sub if batch == 1 else n
            order_t = torch.from_numpy(order[:steps_samples])
            for oname, (lr, make_opt) in opts.items():
                def torch_epoch(lr=lr, make_opt=make_opt, batch=batch, order_t=order_t, m=steps_samples):
                    w = torch.zeros(p, 1, dtype=tdt, requires_grad=True)
                    b = torch.zeros(1, dtype=tdt, requires_grad=True)
                    opt = make_opt([{"params": [w], "weight_decay": ALPHA}, {"params": [b], "weight_decay": 0.0}], lr)
                    for s in range(0, m, batch):
                        idx = order_t[s:s + batch]
                        z = Xt[idx] @ w + b
                        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt[idx])
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                fns, runs = {}, {}
                for bname, mod in backends.items():
                    codes, hp, bs = _common.kernel_settings(C.LOSS_LOG, oname, lr, batch, n, alpha=ALPHA)
                    run = _common.KernelRun(mod, X, y2, oname, codes, hp, bs)
                    runs[f"fastgd[{bname}]"] = run
                    fns[f"fastgd[{bname}]"] = (lambda run=run: run.epoch(order))
                fns["torch"] = torch_epoch

                def setup(label, runs=runs):
                    if label in runs:
                        runs[label].reset()
                times = _common.alternate(fns, args.repeats, warmup=1, setup=setup)
                note = "kernel-level fastgd epoch (no validation); torch: index, forward, backward, step"
                torch_times = times["torch"]
                if batch == 1:
                    torch_times = [t * n / sub for t in torch_times]
                    note = (f"torch batch 1 timed on {sub} of {n} samples and EXTRAPOLATED x{n / sub:.4g} to "
                            "the full epoch; fastgd ran the full epoch")
                for label in fns:
                    if label != "torch":
                        rep.pair("torch", f"dense_cls {np.dtype(dtype).name} {n}x{p}, batch {batch}",
                                 f"{label} {oname}", times[label], f"torch.optim {oname}", torch_times, note,
                                 level="kernel")
                if batch == 32 and oname == "adam":
                    _torch_user_level(rep, X, y, backends, args, torch_epoch, dtype)


# --- 4. NumPy baseline, 5. bandwidth, 6. Adam vs SGD ----------------------------------------
def _torch_user_level(rep, X, y, backends, args, torch_epoch, dtype):
    """The same epoch as a user runs it: a whole ``LogisticRegression.fit`` (validation, target
    encoding, set-up) against the torch loop, next to the kernel-level rows."""
    from fastgd import LogisticRegression

    n, p = X.shape
    fns = {f"fastgd[{b}]": (lambda b=b: LogisticRegression(
        optimizer="adam", learning_rate=1e-3, batch_size=32, max_iter=1, tol=None, penalty="l2", alpha=ALPHA,
        random_state=0, backend=b).fit(X, y)) for b in backends}
    fns["torch"] = torch_epoch
    times = _common.alternate(fns, args.repeats, warmup=1)
    for label in fns:
        if label != "torch":
            rep.pair("torch", f"dense_cls {np.dtype(dtype).name} {n}x{p}, batch 32",
                     f"{label} LogisticRegression(adam).fit, max_iter=1", times[label], "torch.optim adam",
                     times["torch"], "user level: the whole estimator fit against the torch loop", level="user")


def section_numpy(rep, data, backends, args):
    print("\n== plain NumPy vectorised GD ==", flush=True)
    cases = [("dense_cls", np.float64), ("dense_cls", np.float32), ("tall", np.float64)]
    if args.quick:
        cases.remove(("dense_cls", np.float32))
    for name, dtype in cases:
        X, y = data.get(name, dtype)
        kind = data.specs[name]["kind"]
        n, p = X.shape
        y2 = np.asarray(y, dtype=dtype).reshape(-1, 1)
        shuffled = np.random.default_rng(0).permutation(n).astype(np.int64)
        lr = 0.01
        batches = (None,) if name == "tall" else (32, 256, None)
        for batch in batches:
            # a full-batch epoch in a fit reads the data in order (the order cannot change the
            # step); mini-batch epochs are shuffled
            order = np.arange(n, dtype=np.int64) if batch is None else shuffled
            W = np.zeros((p + 1, 1), dtype=dtype)
            fns, runs = {}, {}
            for bname, mod in backends.items():
                codes, hp, bs = _common.kernel_settings(C.LOSS_LOG if kind == "log" else C.LOSS_SQUARED, "sgd", lr,
                                                        batch, n, alpha=ALPHA)
                run = _common.KernelRun(mod, X, y2, "sgd", codes, hp, bs)
                runs[f"fastgd[{bname}]"] = run
                fns[f"fastgd[{bname}]"] = (lambda run=run: run.epoch(order))
            fns["numpy"] = lambda batch=batch, W=W: G.epoch(X, y2, order, W, lr, ALPHA, batch, kind)

            def setup(label, runs=runs, W=W):
                if label in runs:
                    runs[label].reset()
                else:
                    W[...] = 0

            times = _common.alternate(fns, args.repeats, warmup=1, setup=setup)
            for label in fns:
                if label != "numpy":
                    rep.pair("numpy", f"{name} {np.dtype(dtype).name} {n}x{p}, batch {'full' if batch is None else batch}",
                             f"{label} sgd", times[label], "NumPy (bench/numpy_gd.py)", times["numpy"],
                             "same order, same steps; NumPy gathers X[idx] per batch" if batch
                             else "one full-batch step, data order (as in a fit); large batches use the multi-core kernel",
                             level="kernel")
            if batch is None and name == "tall":
                _numpy_user_level(rep, X, y, y2, backends, args, kind, lr, dtype)


FULL_BATCH_ITERATIONS = 10


def _numpy_user_level(rep, X, y, y2, backends, args, kind, lr, dtype):
    """Full-batch training as a user runs it: ``LinearRegression.fit`` for
    FULL_BATCH_ITERATIONS iterations against the same iterations written in NumPy."""
    from fastgd import LinearRegression

    n, p = X.shape
    order = np.arange(n, dtype=np.int64)
    W = np.zeros((p + 1, 1), dtype=dtype)

    def numpy_fit():
        W[...] = 0
        for _ in range(FULL_BATCH_ITERATIONS):
            G.epoch(X, y2, order, W, lr, ALPHA, None, kind)

    fns = {f"fastgd[{b}]": (lambda b=b: LinearRegression(
        optimizer="sgd", learning_rate=lr, batch_size=None, max_iter=FULL_BATCH_ITERATIONS, tol=None, penalty="l2",
        alpha=ALPHA, backend=b).fit(X, y)) for b in backends}
    fns["numpy"] = numpy_fit
    times = _common.alternate(fns, args.repeats, warmup=1)
    for label in fns:
        if label != "numpy":
            rep.pair("numpy", f"tall {np.dtype(dtype).name} {n}x{p}, batch full, {FULL_BATCH_ITERATIONS} iterations",
                     f"{label} LinearRegression(sgd).fit", times[label], "NumPy, the same iterations", times["numpy"],
                     "user level: the whole estimator fit against a NumPy loop", level="user")


def measure_bandwidth(nbytes, repeats=7, threads=1):
    """Read bandwidth (GB/s): the best of ``repeats`` sums of a large float64 array, split
    over ``threads`` threads (NumPy releases the GIL inside the reduction)."""
    from concurrent.futures import ThreadPoolExecutor

    a = np.ones(nbytes // 8, dtype=np.float64)
    parts = np.array_split(a, threads)
    with ThreadPoolExecutor(threads) as pool:
        def read_all():
            return sum(pool.map(np.sum, parts))

        read_all()
        best = min(_common.timed(read_all) for _ in range(repeats))
    return a.nbytes / best / 1e9, a.nbytes


def section_bandwidth(rep, data, backends, args):
    print("\n== bandwidth and full-batch gradient ==", flush=True)
    cores = os.cpu_count() or 1
    bw1, nb = measure_bandwidth(args.bandwidth_bytes)
    rep.fact("bandwidth", "read bandwidth, one thread: numpy float64 sum, best of 7", bw1, "GB/s",
             f"{nb / 1e6:.0f} MB array")
    bw, _ = measure_bandwidth(args.bandwidth_bytes, threads=cores)
    rep.fact("bandwidth", f"read bandwidth, {cores} threads: the same sum split over the cores", bw, "GB/s",
             "the reference for the multi-core full gradient below")
    X, y = data.get("tall", np.float64)
    n, p = X.shape
    y2 = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    w = np.full((p, 1), 0.01)
    coef = np.vstack([w, [[0.0]]])
    codes, _, _ = _common.kernel_settings(C.LOSS_SQUARED, "sgd", 0.01, None, n, alpha=ALPHA)
    sw = np.ones(n)
    fns = {}
    for bname, mod in backends.items():
        if not hasattr(mod, "full_gradient_dense"):
            rep.skip(f"fastgd[{bname}] has no full_gradient_dense: skipped")
            continue
        grad = np.zeros_like(coef)
        work = np.zeros((C.WORK_ROWS, 1))
        fns[f"fastgd[{bname}]"] = (lambda mod=mod, grad=grad, work=work:
                                   mod.full_gradient_dense(X, y2, sw, coef, codes, grad, work))
    fns["numpy"] = lambda: G.full_gradient_lstsq(X, w, y2)
    times = _common.alternate(fns, args.repeats, warmup=1)
    for label, ts in times.items():
        m = float(np.median(ts))
        gbs = X.nbytes / m / 1e9
        rep.fact("bandwidth", f"{label} full gradient on tall {n}x{p} float64 ({X.nbytes / 1e6:.0f} MB)",
                 gbs, "GB/s of X", f"median {fmt_t(m)}; {gbs / bw:.0%} of the measured {cores}-thread bandwidth"
                 + ("; X.T @ (X @ w - y) reads X twice" if label == "numpy" else "; one pass over X"))
    for label in times:
        if label != "numpy":
            rep.pair("bandwidth", f"tall {n}x{p} float64", f"{label} full_gradient_dense", times[label],
                     "NumPy X.T @ (X @ w - y)", times["numpy"], "squared-loss gradient, BLAS threads as set",
                     level="kernel")
    # the multi-core speed-up of the full gradient: the same kernel on one thread
    for bname, mod in backends.items():
        if not hasattr(mod, "full_gradient_dense"):
            continue
        grad = np.zeros_like(coef)
        work = np.zeros((C.WORK_ROWS, 1))
        with _one_thread(bname):
            one = _common.alternate({"one": lambda: mod.full_gradient_dense(X, y2, sw, coef, codes, grad, work)},
                                    args.repeats, warmup=1)["one"]
        all_cores = times[f"fastgd[{bname}]"]
        rep.pair("bandwidth", f"tall {n}x{p} float64, {cores} threads vs 1", f"fastgd[{bname}] full gradient, "
                 f"{cores} threads", all_cores, f"fastgd[{bname}] full gradient, 1 thread", one,
                 "multi-core speed-up (ratio = 1-thread time / all-cores time); the kernel is memory-bound")
    if X.nbytes < 4 * 32e6:
        rep.note("bandwidth: in quick mode the tall X is small enough to sit partly in cache; the GB/s "
                 "fraction can then exceed what DRAM allows.")


@contextlib.contextmanager
def _one_thread(backend_name):
    """Run a fastgd kernel on one thread: Numba's pool or Cython's OpenMP runtime."""
    if backend_name == "numba":
        import numba

        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(before)
    else:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            yield


def section_adam(rep, data, backends, args):
    print("\n== Adam vs SGD mini-batch epoch ==", flush=True)
    X, y = data.get("dense_cls", np.float64)
    n, p = X.shape
    y2 = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    order = np.random.default_rng(0).permutation(n).astype(np.int64)
    for bname, mod in backends.items():
        runs = {}
        for oname, lr in (("sgd", 0.01), ("adam", 1e-3)):
            codes, hp, bs = _common.kernel_settings(C.LOSS_LOG, oname, lr, 32, n, alpha=ALPHA)
            runs[oname] = _common.KernelRun(mod, X, y2, oname, codes, hp, bs)
        fns = {k: (lambda r=r: r.epoch(order)) for k, r in runs.items()}
        times = _common.alternate(fns, args.repeats, warmup=1, setup=lambda k: runs[k].reset())
        rep.pair("adam_vs_sgd", f"dense_cls float64 {n}x{p}, batch 32", f"fastgd[{bname}] sgd", times["sgd"],
                 f"fastgd[{bname}] adam", times["adam"], "ratio = Adam epoch / SGD epoch")


# --- 6b. fastgd inside a program that also calls NumPy; fit overhead ------------------------
IDLE_SECONDS = 0.3  # longer than OpenBLAS's and libgomp's idle threads spin after a call


def section_contention(rep, data, backends, args):
    """User-level figures of a program that mixes fastgd and NumPy, BLAS on every core (as a
    user's NumPy runs by default): a full-batch fit alone and right after a BLAS call
    (``X.T @ r``, whose threads keep spinning after it returns); the same BLAS call alone and
    right after a fit; and a one-epoch mini-batch fit against its epoch kernel."""
    from threadpoolctl import threadpool_limits

    from fastgd import LinearRegression, LogisticRegression

    print("\n== fastgd next to NumPy in one program; fit overhead ==", flush=True)
    cores = os.cpu_count() or 1
    n = max(60_000, int(600_000 * args.scale))
    X, y = _common.dense_regression(n, 50, np.float64, seed=3)
    r = np.random.default_rng(4).standard_normal(n)

    def blas_call():
        return X.T @ r

    with threadpool_limits(limits=cores, user_api="blas"):
        for b in backends:
            def fit(b=b):
                return LinearRegression(optimizer="sgd", learning_rate=0.01, batch_size=None,
                                        max_iter=FULL_BATCH_ITERATIONS, tol=None, backend=b).fit(X, y)

            fit()
            before = {"alone": lambda: time.sleep(IDLE_SECONDS), "after": lambda: (time.sleep(IDLE_SECONDS), blas_call())}
            times = _common.alternate({"alone": fit, "after": fit}, args.repeats, warmup=1,
                                      setup=lambda k: before[k]())
            rep.pair("contention", f"tall float64 {n}x50, batch full, {FULL_BATCH_ITERATIONS} iterations",
                     f"fastgd[{b}] LinearRegression.fit alone", times["alone"],
                     "the same fit right after X.T @ r", times["after"],
                     f"ratio = after / alone (target <= 1.15); BLAS on {cores} threads", level="user")
            before = {"alone": lambda: time.sleep(IDLE_SECONDS), "after": lambda: (time.sleep(IDLE_SECONDS), fit())}
            times = _common.alternate({"alone": blas_call, "after": blas_call}, args.repeats, warmup=1,
                                      setup=lambda k: before[k]())
            rep.pair("contention", f"NumPy X.T @ r, X {n}x50 float64",
                     "X.T @ r alone", times["alone"], f"X.T @ r right after a fastgd[{b}] fit", times["after"],
                     "ratio = after / alone: what fastgd's idle threads cost the user's NumPy", level="user")
    # one-epoch fit against its epoch kernel (the kernel's order permutation drawn in the timing too)
    n1, p1 = 40_000, 120
    X1, y1 = _common.dense_classification(n1, p1, np.float64, seed=5)
    y1 = np.asarray(y1)
    rng = np.random.default_rng(0)
    for b, mod in backends.items():
        est = dict(optimizer="adam", learning_rate=1e-3, batch_size=32, max_iter=1, tol=None, penalty="l2",
                   alpha=ALPHA, backend=b)
        codes, hp, bs = _common.kernel_settings(C.LOSS_LOG, "adam", 1e-3, 32, n1, alpha=ALPHA)
        run = _common.KernelRun(mod, X1, y1.reshape(-1, 1), "adam", codes, hp, bs)
        fns = {"fit": lambda: LogisticRegression(**est).fit(X1, y1),
               "kernel": lambda: run.epoch(rng.permutation(n1))}
        times = _common.alternate(fns, args.repeats, warmup=1, setup=lambda k: run.reset())
        rep.pair("contention", f"dense float64 {n1}x{p1}, adam, batch 32, one epoch",
                 f"fastgd[{b}] epoch kernel", times["kernel"], "LogisticRegression.fit, max_iter=1", times["fit"],
                 "ratio = fit / kernel: the cost of fit around its epoch (target <= 1.3)", level="user vs kernel")


# --- 7. cold start, 8. memory (fresh subprocesses) -----------------------------------------
COLD_FIT = textwrap.dedent("""
    import time, warnings
    t0 = time.perf_counter()
    import numpy as np
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 20)); y = (X[:, 0] + 0.5 * rng.standard_normal(2000) > 0).astype(int)
    {fit}
    print(time.perf_counter() - t0)
    try:  # Numba's own account of the cache, for the numba runs
        import sys
        nb = sys.modules.get("fastgd._backends._numba")
        if nb is not None:
            stats = [kernel.stats for kernel in nb.COMPILED_KERNELS]
            print("numba-cache", sum(sum(st.cache_hits.values()) for st in stats),
                  sum(sum(st.cache_misses.values()) for st in stats))
    except Exception:
        pass
""")
COLD_TOOLS = {
    "sklearn SGDClassifier": "from sklearn.linear_model import SGDClassifier; SGDClassifier(max_iter=5, tol=None).fit(X, y)",
    "fastgd": "from fastgd import LogisticRegression; LogisticRegression(optimizer='sgd', batch_size=32, "
              "max_iter=5, tol=None, backend='{backend}').fit(X, y)",
}


def _subprocess_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def _run_cold(fit, env):
    code = COLD_FIT.format(fit=fit)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
    lines = out.stdout.strip().splitlines()
    cache = None
    if lines and lines[-1].startswith("numba-cache"):
        _, hits, misses = lines.pop().split()
        cache = (int(hits), int(misses))
    return wall, float(lines[-1]), cache


def section_cold(rep, backends, args):
    print("\n== cold start ==", flush=True)
    kinds = {"sklearn SGDClassifier": [], "fastgd numba, empty cache": [], "fastgd numba, warm cache": []}
    if "cython" in backends:
        kinds["fastgd cython"] = []
    inner = {k: [] for k in kinds}
    caches = {k: [] for k in kinds}
    tmpdirs = []
    try:
        for _ in range(args.cold_repeats):  # interleaved A B C D
            for k in kinds:
                if k == "sklearn SGDClassifier":
                    fit, env = COLD_TOOLS[k], _subprocess_env()
                elif k.startswith("fastgd numba"):
                    fit = COLD_TOOLS["fastgd"].format(backend="numba")
                    if k.endswith("warm cache"):
                        env = _subprocess_env({"NUMBA_CACHE_DIR": args.numba_cache})
                        _run_cold(fit, env)  # make sure the cache is filled, untimed
                    else:
                        d = tempfile.mkdtemp(prefix="fastgd-bench-numba-")
                        tmpdirs.append(d)
                        env = _subprocess_env({"NUMBA_CACHE_DIR": d})
                else:
                    fit, env = COLD_TOOLS["fastgd"].format(backend="cython"), _subprocess_env()
                try:
                    wall, ins, cache = _run_cold(fit, env)
                except Exception as exc:
                    rep.skip(f"cold start {k}: {exc}")
                    continue
                kinds[k].append(wall)
                inner[k].append(ins)
                if cache is not None:
                    caches[k].append(cache)
    finally:
        import shutil

        for d in tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
    base = kinds["sklearn SGDClassifier"]
    for k, ts in kinds.items():
        if k == "sklearn SGDClassifier" or not ts:
            continue
        rep.pair("cold", "new process: interpreter + import + fit 2000x20, 5 epochs", k, ts,
                 "sklearn SGDClassifier", base,
                 f"in-process import+fit part: fastgd {fmt_summary(inner[k])}, sklearn {fmt_summary(inner['sklearn SGDClassifier'])}"
                 + (f"; Numba kernel cache (hits, misses) per run: {caches[k]}" if caches[k] else ""))
        if k.endswith("warm cache") and any(h == 0 for h, _ in caches[k]):
            rep.note("cold start: a 'warm cache' run had no Numba cache hit (the cache was invalidated between "
                     "the filling run and the timed run, e.g. _numba.py changed on disk): that row is a cold compile.")


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time, tracemalloc, warnings
    import numpy as np
    warnings.simplefilter("ignore")
    n, p, dtype, tool = {n}, {p}, np.dtype("{dtype}"), "{tool}"
    if tool == "fastgd":
        from fastgd import LogisticRegression
        make = lambda: LogisticRegression(optimizer="sgd", batch_size=256, max_iter=2, tol=None, backend="{backend}")
    else:
        from sklearn.linear_model import SGDClassifier
        make = lambda: SGDClassifier(max_iter=2, tol=None)
    rng = np.random.default_rng(0)
    Xs = rng.standard_normal((500, p), dtype=dtype); ys = (Xs[:, 0] > 0).astype(np.int64)
    make().fit(Xs, ys)  # compile / warm up outside the measurement
    X = np.empty((n, p), dtype=dtype)
    for s in range(0, n, 65536):
        X[s:s + 65536] = rng.standard_normal((min(65536, n - s), p), dtype=dtype)
    y = (X[:, 0] > 0).astype(np.int64)
    def status_kb(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    try:  # reset the kernel's peak-RSS mark (VmHWM) so it measures the fit alone
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM after the fit (peak reset by /proc/self/clear_refs) - VmRSS before"
    except OSError:
        method = None
    before = status_kb("VmRSS")
    samples = [before]
    stop = threading.Event()
    def poll():  # fallback when the peak cannot be reset: sample RSS (kernels release the GIL)
        while not stop.is_set():
            samples.append(status_kb("VmRSS"))
            time.sleep(0.0005)
    poller = threading.Thread(target=poll, daemon=True)
    if method is None:
        method = "max sampled VmRSS during the fit - VmRSS before"
        poller.start()
    tracemalloc.start()
    make().fit(X, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stop.set()
    if poller.is_alive():
        poller.join()
        after = max(samples)
    else:
        after = status_kb("VmHWM")
    rss_before, rss_after = before, after
    print(json.dumps(dict(x_bytes=X.nbytes, rss_before=rss_before, rss_after=rss_after, traced_peak=peak,
                          method=method)))
""")


def section_memory(rep, backends, args):
    print("\n== memory ==", flush=True)
    n, p = args.memory_rows, 100
    backend = "numba" if "numba" in backends else next(iter(backends), "numpy")
    for dtype in ("float64", "float32"):
        for tool in ("fastgd", "sklearn"):
            code = MEMORY_SCRIPT.format(n=n, p=p, dtype=dtype, tool=tool, backend=backend)
            env = _subprocess_env({"NUMBA_CACHE_DIR": args.numba_cache})
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                 timeout=600)
            if out.returncode != 0:
                rep.skip(f"memory {tool} {dtype}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'failed'}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            xb = r["x_bytes"]
            extra = (r["rss_after"] - r["rss_before"]) / xb
            label = f"fastgd[{backend}]" if tool == "fastgd" else "sklearn SGDClassifier"
            rep.fact("memory", f"{label}, C-contiguous {dtype} X {n}x{p} ({xb / 1e6:.0f} MB): extra peak RSS during fit / X",
                     float(extra), "x size of X",
                     f"tracemalloc peak of Python/NumPy allocations during fit = {r['traced_peak'] / xb:.3f} x X; "
                     f"RSS: {r['method']}")
    rep.note("memory: 'extra peak RSS' is the peak RSS during the fit minus the RSS just before it (method "
             "in each row), with X built and the kernels compiled on a small fit first; about 0 "
             "means the fit made no copy of X (1 = one full copy). tracemalloc sees NumPy allocations "
             "only, not Numba's or Cython's own.")


# --- plot -------------------------------------------------------------------------------------
def plot(rep, out_dir):
    """Draw the time-to-accuracy traces with ``fastgd.plot`` (the same picture a user draws
    from ``compare.json``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        rep.skip("matplotlib not importable (pip install matplotlib, or the 'bench' extra): no plot")
        return None
    from fastgd import plot as fastgd_plot

    if not rep.traces:
        return None
    fig = fastgd_plot.plot_time_to_accuracy(rep.traces, thresholds=THRESHOLDS)
    path = os.path.join(out_dir, "time_to_accuracy.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- main -------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats (< 2 minutes)")
    ap.add_argument("--scale", type=float, default=None,
                    help="multiplies the row counts (default 1; 0.1 with --quick)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="output directory")
    ap.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (fastgd's multi-core kernels are not limited)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved repeats per timing")
    ap.add_argument("--sections", default="sgd_epoch,dropin,exact,torch,numpy,bandwidth,adam_vs_sgd,contention,cold,"
                    "memory,file",
                    help="comma-separated subset of the sections to run")
    args = ap.parse_args(argv)
    if args.scale is None:
        args.scale = 0.1 if args.quick else 1.0
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    args.trace_repeats = 1 if args.quick else 3
    args.epochs = 15 if args.quick else 40
    args.time_cap = 10.0 if args.quick else 120.0
    args.cold_repeats = 1 if args.quick else 3
    args.torch_b1_steps = 500 if args.quick else 5000
    args.bandwidth_bytes = int(256e6 if args.quick else 1e9)
    args.memory_rows = max(20_000, int(500_000 * args.scale))
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    silence()
    import numba
    import sklearn
    from threadpoolctl import threadpool_limits

    # the version only: importing torch would load its OpenMP runtime before fastgd's kernels
    # load theirs (see fastgd/_backends/_openmp_wait.py), unlike a program that never uses torch
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    status = _common.backend_status()
    backends = {k: m for k, (m, _) in status.items() if m is not None}
    for k, (m, reason) in status.items():
        if m is None:
            print(f"backend {k} not available: {reason}")
    if not backends:
        print("no compiled fastgd backend importable; nothing to compare")
        return 1
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M:%S"), machine=platform.processor() or platform.machine(),
                cpus=os.cpu_count(), python=platform.python_version(), numpy=np.__version__,
                sklearn=sklearn.__version__, numba=numba.__version__, torch=torch_version, quick=args.quick,
                scale=args.scale, repeats=args.repeats, warmup=1, threads=args.threads,
                backends=", ".join(f"{k}: {'yes' if m else 'no (' + r + ')'}" for k, (m, r) in status.items()))
    rep = Report(meta)
    data = Data(workloads(args.scale))
    sections = [s.strip() for s in args.sections.split(",")]
    t_start = time.perf_counter()
    main_backend = "numba" if "numba" in backends else next(iter(backends))
    args.numba_cache = tempfile.mkdtemp(prefix="fastgd-bench-numba-warm-")
    rep.meta["section_seconds"] = {}

    def run(name, fn, *a):
        if name not in sections:
            return
        t0 = time.perf_counter()
        fn(rep, *a)
        rep.meta["section_seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"  ({name}: {time.perf_counter() - t0:.1f} s, data generation included)", flush=True)

    try:
        # BLAS only: fastgd's multi-core kernels (Numba's pool, Cython's OpenMP) keep all cores
        with threadpool_limits(limits=args.threads, user_api="blas"):
            run("sgd_epoch", section_sgd_epoch, data, backends, args)
            run("dropin", section_dropin, data, backends, args)
            run("exact", section_exact, data, main_backend, args)
            run("torch", section_torch, data, backends, args)
            run("numpy", section_numpy, data, backends, args)
            run("bandwidth", section_bandwidth, data, backends, args)
            run("adam_vs_sgd", section_adam, data, backends, args)
            run("contention", section_contention, data, backends, args)
        run("cold", section_cold, backends, args)
        run("memory", section_memory, backends, args)
        from bench.file_training import section_file

        run("file", section_file, backends, args)
    finally:
        import shutil

        shutil.rmtree(args.numba_cache, ignore_errors=True)
    png = plot(rep, args.out)
    rep.meta["elapsed_s"] = time.perf_counter() - t_start
    md = rep.markdown()
    if png:
        md += f"\nTime-to-accuracy plot: `{os.path.relpath(png, args.out)}`\n"
    md += f"\nTotal run time {rep.meta['elapsed_s']:.0f} s.\n"
    with open(os.path.join(args.out, "compare.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "compare.json"), "w") as f:
        json.dump(rep.to_json(), f, indent=1)
    print("\n" + md)
    print(f"wrote {os.path.join(args.out, 'compare.md')}, compare.json" + (f", {os.path.basename(png)}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
