"""fastgd on Dask (``fastgd.distributed``) against a local fit and against dask-ml, on one
``LocalCluster`` of 2 worker processes (1 thread each).

    PYTHONPATH=. python -m bench.dask_compare [--quick] [--big-gb G] [--out DIR]

Sections (each figure measured in this run, side by side):

1. time per full-batch iteration and per mini-batch epoch: Dask fit vs local fit of the same
   data (in the client process), plus the kernel-level time of one shard's gradient on a worker;
2. client (driver) memory while fitting a ``--big-gb`` GB Dask array generated on the workers;
3. time to 1e-3 relative sub-optimality of L2-logistic regression: fastgd full-batch GD on the
   cluster vs dask-ml's ``LogisticRegression`` (lbfgs, admm, gradient_descent) on the same
   cluster and data. Every method runs with ``max_iter`` = 1, 2, 4, ... until its coefficients
   reach the target on fastgd's objective; the figure is the wall time of that first fit;
4. the speed of one block of hashed features (CSR, 10^6 columns) through the kernels a worker
   runs (the input of the design note's projection, docs/distributed.md).

Writes ``dask_compare.md`` and ``dask_compare.json`` into ``--out`` (default bench/results/).
"""

import argparse
import json
import os
import platform
import threading
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_mb():
    """Resident memory of this process (MB), from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class PeakRSS:
    """Samples this process's resident memory every 10 ms while in the ``with`` block."""

    def __enter__(self):
        self.start = rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1e3
    return float("nan")


def timed(fn):
    tic = time.perf_counter()
    out = fn()
    return time.perf_counter() - tic, out


def generated_regression(da, n, p, rows, seed=0):
    """X, y generated on the workers (nothing passes through the client)."""
    rs = da.random.RandomState(seed)
    X = rs.standard_normal((n, p), chunks=(rows, p))
    w = np.random.default_rng(seed).standard_normal(p)
    y = X @ w + 0.1 * rs.standard_normal(n, chunks=rows)
    return X, y


def generated_classification(da, n, p, rows, seed=0):
    rs = da.random.RandomState(seed)
    X = rs.standard_normal((n, p), chunks=(rows, p))
    w = np.random.default_rng(seed).standard_normal(p) * 2 / np.sqrt(p)
    y = (X @ w + 0.3 + rs.logistic(size=n, chunks=rows) > 0).astype(np.int64)
    return X, y


# --- 1. iteration and epoch times ---------------------------------------------------------------
def epoch_seconds(estimator, X, y):
    """Median wall time of an epoch after the first, from the epoch driver's own ``verbose``
    timing (around the epoch call: for Dask input the whole round trip, without the set-up)."""
    import contextlib
    import io
    import re

    out = io.StringIO()
    estimator.set_params(verbose=1)
    with contextlib.redirect_stdout(out):
        estimator.fit(X, y)
    seconds = [float(m) for m in re.findall(r", ([0-9.e+-]+) s$", out.getvalue(), flags=re.M)]
    return float(np.median(seconds[1:]))


def per_iteration(client, da, n, p, rows):
    from fastgd import LinearRegression
    from fastgd.distributed import _shard_gradient

    X, y = generated_regression(da, n, p, rows)
    X, y = client.persist([X, y])
    Xl, yl = client.compute([X, y], sync=True)  # the same data, for the local fits
    rows_out = []
    for label, kw, k in (("full-batch GD iteration", dict(batch_size=None, optimizer="sgd", learning_rate=0.1), 30),
                         ("mini-batch epoch, batch 256 (averaged once per epoch)",
                          dict(batch_size=256, optimizer="adam", learning_rate=1e-3), 5),
                         ("per-sample SGD epoch (averaged once per epoch)",
                          dict(batch_size=1, optimizer="sgd", learning_rate=1e-3), 4)):
        local = epoch_seconds(LinearRegression(max_iter=k, tol=None, random_state=0, **kw), Xl, yl)
        remote = epoch_seconds(LinearRegression(max_iter=k, tol=None, random_state=0, **kw), X, y)
        rows_out.append(dict(what=label, local_s=local, dask_s=remote))

    # Kernel level: one shard's gradient (half the data) timed inside a worker.
    import fastgd._solver as S
    from fastgd import _contract as C
    from fastgd._backends import get_backend

    backend = get_backend("auto").name

    def kernel_time(half):  # data of a shard's shape, made on the worker
        rng = np.random.default_rng(0)
        prob = S.Problem(X=rng.standard_normal((half, p)), y=rng.standard_normal((half, 1)), sw=np.ones(half),
                         train_idx=np.arange(half))
        codes = np.zeros(C.N_CODES, dtype=np.int64)
        coef = np.zeros((p + 1, 1))
        _shard_gradient(prob, coef, codes, backend, 0.5)
        tic = time.perf_counter()
        for _ in range(5):
            _shard_gradient(prob, coef, codes, backend, 0.5)
        return (time.perf_counter() - tic) / 5

    on_worker = client.submit(kernel_time, n // 2, pure=False).result()
    rows_out.append(dict(what="kernel: one shard's gradient (n/2 rows) on a worker, 1 thread", local_s=None,
                         dask_s=float(on_worker)))
    return dict(n=n, p=p, rows_per_block=rows, backend=backend, rows=rows_out)


# --- 2. driver memory on a big array ------------------------------------------------------------
def driver_memory(client, da, gb, p=100):
    from fastgd import LinearRegression

    n = int(gb * 1e9 / (8 * p))
    rows = max(1, n // 16)
    X, y = generated_regression(da, n, p, rows, seed=1)
    with PeakRSS() as mem:
        t, reg = timed(lambda: LinearRegression(optimizer="sgd", learning_rate=0.1, max_iter=5, tol=None).fit(X, y))
    return dict(array_gb=n * p * 8 / 1e9, n=n, p=p, blocks=16, fit_s=t, client_rss_before_mb=mem.start,
                client_rss_peak_mb=mem.peak, client_growth_mb=mem.peak - mem.start, n_iter=reg.n_iter_,
                final_loss=reg.loss_curve_[-1])


# --- 3. time to 1e-3 relative sub-optimality ---------------------------------------------------
def objective(X, y, coef, intercept, alpha):
    z = X @ coef + intercept
    loss = np.mean(np.logaddexp(0.0, z) - y * z)
    return float(loss + 0.5 * alpha * coef @ coef)


def time_to_target(client, da, n, p, rows, target=1e-3, max_doublings=9):
    from sklearn.linear_model import LogisticRegression as SkLogistic

    from fastgd import LogisticRegression

    X, y = generated_classification(da, n, p, rows)
    X, y = client.persist([X, y])
    Xl, yl = client.compute([X, y], sync=True)  # for the reference optimum and the objective only
    alpha = 1e-4
    C = 1.0 / (alpha * n)  # dask-ml / scikit-learn: C * sum(loss) + ||w||^2 / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkLogistic(C=C, tol=1e-12, max_iter=10000).fit(Xl, yl)
    fstar = objective(Xl, yl, ref.coef_[0], ref.intercept_[0], alpha)

    def fastgd_fit(k, optimizer, lr):
        clf = LogisticRegression(optimizer=optimizer, learning_rate=lr, alpha=alpha, max_iter=k, tol=None)
        return clf.fit(X, y)

    def daskml_fit(k, solver):
        from dask_ml.linear_model import LogisticRegression as DmlLogistic

        kw = dict(penalty="l2", C=C, solver=solver, max_iter=k)
        return DmlLogistic(**kw).fit(X, y)

    methods = {
        "fastgd full-batch Nesterov (lr 1.0)": lambda k: fastgd_fit(k, "nesterov", 1.0),
        "fastgd full-batch SGD (lr 4.0)": lambda k: fastgd_fit(k, "sgd", 4.0),
        "dask-ml lbfgs": lambda k: daskml_fit(k, "lbfgs"),
        "dask-ml admm": lambda k: daskml_fit(k, "admm"),
        "dask-ml gradient_descent": lambda k: daskml_fit(k, "gradient_descent"),
    }
    averaging = []
    # sync: about 8 rounds a pass over a shard of n/2 rows
    for kw, sync_steps in ((dict(optimizer="adam", learning_rate=1e-3, batch_size=256), max(1, n // 4096)),
                           (dict(optimizer="sgd", learning_rate=0.01, batch_size=1), max(1, n // 16))):
        row = dict(kw, sync=sync_steps)
        local = LogisticRegression(alpha=alpha, max_iter=3, tol=None, random_state=0, **kw).fit(Xl, yl)
        row["local_gap"] = objective(Xl, yl, local.coef_[0], local.intercept_[0], alpha) / fstar - 1
        from fastgd.distributed import fit as dask_fit

        for key, sync in (("dask_gap_per_epoch", None), ("dask_gap_sync", sync_steps)):
            remote = dask_fit(LogisticRegression(alpha=alpha, max_iter=3, tol=None, random_state=0, **kw), X, y,
                              sync=sync)
            row[key] = objective(Xl, yl, remote.coef_[0], remote.intercept_[0], alpha) / fstar - 1
        averaging.append(row)
        print(row, flush=True)
    results = []
    for name, run in methods.items():
        reached = None
        for d in range(max_doublings + 1):
            k = 2**d
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t, model = timed(lambda: run(k))
            coef = np.asarray(model.coef_).ravel()
            gap = objective(Xl, yl, coef, float(np.ravel(model.intercept_)[0]), alpha) / fstar - 1
            if gap <= target:
                reached = dict(method=name, max_iter=k, seconds=t, rel_gap=gap)
                break
        results.append(reached or dict(method=name, max_iter=None, seconds=None, rel_gap=gap))
    return dict(n=n, p=p, rows_per_block=rows, alpha=alpha, fstar=fstar, target=target, results=results,
                averaging=averaging)


# --- 4. per-block kernel speed on hashed features (for the design note's projection) -----------
def hashed_block_speed(n=200_000, p=1_000_000, nnz=50, seed=0):
    """Rows per second of one block (CSR, ``nnz`` hashed features a row) through the kernels a
    worker runs: a per-sample SGD epoch and the full-batch gradient, in this process."""
    import scipy.sparse as sp

    from fastgd import _contract as C
    from fastgd import _solver
    from fastgd._backends import get_backend
    from fastgd.distributed import _worker_backend  # noqa: F401  (the same entry points the workers call)
    from fastgd.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    indices = rng.integers(0, p, size=n * nnz).astype(np.int32).reshape(n, nnz)
    indices.sort(axis=1)
    X = sp.csr_matrix((rng.standard_normal(n * nnz), indices.ravel(), np.arange(0, n * nnz + 1, nnz)), shape=(n, p))
    X.sum_duplicates()
    y = (rng.random(n) < 0.5).astype(np.float64)[:, None]
    backend = get_backend("auto")
    prob = _solver.Problem(X=X, y=y, sw=np.ones(n), train_idx=np.arange(n, dtype=np.int64))
    est = LogisticRegression(optimizer="sgd", learning_rate=0.01, batch_size=1, penalty="l2", alpha=1e-6)
    from fastgd.optim import get_optimizer

    settings = est._settings(get_optimizer("sgd"), n, C.LOSS_LOG, None)
    coef = np.zeros((p + 1, 1))
    ts = _solver.TrainState(coef=coef, opt_state=np.zeros((0, p + 1, 1)), rng=rng)
    order = rng.permutation(n).astype(np.int64)
    grad, work = np.empty_like(coef), np.zeros((C.WORK_ROWS, 1))
    buffers = prob.sparse_buffers(settings.codes, settings.hp, 1, 1)
    prob.epoch(backend, order, ts, settings.codes, settings.hp, 1, grad, work, buffers)  # warm
    t_epoch = min(timed(lambda: prob.epoch(backend, order, ts, settings.codes, settings.hp, 1, grad, work,
                                           buffers))[0] for _ in range(3))
    t_grad = min(timed(lambda: prob.full_gradient(backend, coef, settings.codes))[0] for _ in range(3))
    return dict(n=n, p=p, nnz_per_row=nnz, backend=backend.name, sgd_epoch_s=t_epoch, sgd_rows_per_s=n / t_epoch,
                gradient_s=t_grad, gradient_rows_per_s=n / t_grad)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--big-gb", type=float, default=4.0, help="size of the generated array of section 2")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--sections", default="iteration,driver_memory,time_to_target,hashed_block",
                    help="comma-separated subset of the sections to run")
    args = ap.parse_args(argv)
    sections = set(args.sections.split(","))

    import dask.array as da
    from distributed import Client, LocalCluster

    scale = 0.05 if args.quick else 1.0
    free = available_mb()
    big_gb = args.big_gb if not args.quick else 0.2
    note = ""
    # The workers hold the array once plus one block while concatenating their shards; keep
    # a margin for the other users of the machine.
    if 2.6 * big_gb * 1e3 > free:
        big_gb_new = round(free / 2.6 / 1e3, 1)
        note = f"sized down from {big_gb} GB: {free / 1e3:.1f} GB of memory available"
        big_gb = big_gb_new
    report = dict(when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine=platform.machine(),
                  cpus=os.cpu_count(), python=platform.python_version(),
                  load_average=os.getloadavg(), memory_available_gb=free / 1e3)
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        if "iteration" in sections:
            report["iteration"] = per_iteration(client, da, int(400_000 * scale), 50, int(50_000 * scale))
            print(json.dumps(report["iteration"], indent=1), flush=True)
        if "driver_memory" in sections:
            report["driver_memory"] = dict(driver_memory(client, da, big_gb), note=note)
            print(json.dumps(report["driver_memory"], indent=1), flush=True)
        if "time_to_target" in sections:
            report["time_to_target"] = time_to_target(client, da, int(400_000 * scale), 40, int(50_000 * scale))
            print(json.dumps(report["time_to_target"], indent=1), flush=True)
    if "hashed_block" in sections:
        report["hashed_block"] = hashed_block_speed(n=int(200_000 * scale))
        print(json.dumps(report["hashed_block"], indent=1), flush=True)
    report["load_average_after"] = os.getloadavg()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "dask_compare.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "dask_compare.md"), "w") as f:
        f.write(markdown(report))
    print(markdown(report))


def markdown(r):
    lines = [f"fastgd on Dask, LocalCluster of 2 worker processes x 1 thread, {r['when']}, "
             f"load average {r['load_average'][0]:.1f} on {r['cpus']} cores (a shared machine: figures under load).", ""]
    if "iteration" in r:
        lines += _markdown_iteration(r["iteration"])
    if "driver_memory" in r:
        m = r["driver_memory"]
        lines += ["", f"**Driver memory**: a {m['array_gb']:.2f} GB array ({m['n']:,} x {m['p']}, {m['blocks']} blocks) "
                  f"generated on the workers, {m['n_iter']} full-batch iterations in {m['fit_s']:.1f} s: the client "
                  f"process grew by {m['client_growth_mb']:.0f} MB (resident {m['client_rss_before_mb']:.0f} -> "
                  f"{m['client_rss_peak_mb']:.0f} MB). {m['note']}", ""]
    if "time_to_target" in r:
        lines += _markdown_target(r["time_to_target"])
    if "hashed_block" in r:
        h = r["hashed_block"]
        lines += ["", f"**One hashed-feature block** ({h['n']:,} rows x {h['p']:,} features, {h['nnz_per_row']} nonzeros "
                  f"a row, CSR, {h['backend']} kernels, one process): per-sample SGD epoch {h['sgd_epoch_s']:.3f} s "
                  f"({h['sgd_rows_per_s'] / 1e6:.2f} M rows/s); full gradient {h['gradient_s']:.3f} s "
                  f"({h['gradient_rows_per_s'] / 1e6:.2f} M rows/s)."]
    return "\n".join(lines) + "\n"


def _markdown_iteration(it):
    lines = [f"**Iteration and epoch times**, dense {it['n']:,} x {it['p']} float64 in blocks of "
             f"{it['rows_per_block']:,} rows ({it['backend']} kernels):", "",
             "| unit (median wall time, from the driver's verbose timing) | local fit (s) | Dask fit (s) | Dask / local |",
             "|---|---|---|---|"]
    for row in it["rows"]:
        if row["local_s"] is None:
            lines.append(f"| {row['what']} | | {row['dask_s']:.4f} | |")
        else:
            lines.append(f"| {row['what']} | {row['local_s']:.4f} | {row['dask_s']:.4f} | "
                         f"{row['dask_s'] / row['local_s']:.2f} |")
    full, kernel = it["rows"][0]["dask_s"], it["rows"][-1]["dask_s"]
    lines += ["", f"Per-iteration round trip (a Dask full-batch iteration minus one shard's kernel time): "
              f"{full - kernel:.4f} s, {100 * (full - kernel) / full:.0f} % of the iteration."]
    return lines


def _markdown_target(t):
    lines = [f"**Time to {t['target']:g} relative sub-optimality**, L2-logistic (alpha {t['alpha']:g}), dense "
             f"{t['n']:,} x {t['p']} in blocks of {t['rows_per_block']:,} rows (max_iter doubled until reached):", "",
             "| method | max_iter | seconds | relative gap |", "|---|---|---|---|"]
    for row in t["results"]:
        if row["seconds"] is None:
            lines.append(f"| {row['method']} | not reached | | {row['rel_gap']:.2e} |")
        else:
            lines.append(f"| {row['method']} | {row['max_iter']} | {row['seconds']:.2f} | {row['rel_gap']:.2e} |")
    lines += ["", "**Averaging (parameter mixing) vs a local fit**, same data, 3 epochs, relative gap to the optimum "
              "(f - f*) / f*:", "",
              "| optimizer, batch | local fit | Dask, average once per epoch | Dask, average every `sync` steps |",
              "|---|---|---|---|"]
    for a in t["averaging"]:
        lines.append(f"| {a['optimizer']} lr {a['learning_rate']:g}, batch {a['batch_size']} | {a['local_gap']:.2e} | "
                     f"{a['dask_gap_per_epoch']:.2e} | {a['dask_gap_sync']:.2e} (sync={a['sync']}) |")
    return lines

if __name__ == "__main__":
    main()
