"""Before/after timing of two source trees of fastgd: kernel-level epochs and one-epoch fits.

``python -m bench.before_after --before DIR --after DIR [--rounds 5] [--repeats 3] [--out FILE]``

Each tree is timed by its **own** code, in its own process: the worker imports the tree's
``fastgd`` and ``bench._common`` (``PYTHONPATH`` and the working directory are the tree, and
the worker script runs with ``python -P`` so this file's folder is not on the path), builds the
kernel arguments with that tree's ``kernel_settings`` / ``KernelRun`` (the estimators' own
``_settings``, so the codes and buffers are what that tree's ``fit`` would pass, whatever its
kernel signatures) and times that tree's kernels. The data are generated the same way in both
(the same generators of ``bench._common``, the same seeds), and the workloads are those of
``bench/test_bench_epoch.py``:

- kernel level: backend (numba, cython) x layout (dense float64, dense float32, CSR float64) x
  optimizer (sgd, momentum, adagrad, rmsprop, adam) x batch (1, 32, 256, full), binary log
  loss, L2 ``alpha=1e-4``, one epoch over a fixed shuffled order, parameters reset between
  calls (untimed);
- user level: a whole one-epoch ``LogisticRegression.fit`` with every parameter given
  explicitly (so changed defaults between the trees do not change the work).

The trees are run in alternating processes, before / after / before / after ..., ``--rounds``
times; each process reports, per workload, the fastest of ``--repeats`` calls after one
untimed warm-up call. The ratio of a workload is the median over the rounds of the round's
after / before (paired, so a slow phase of a shared machine hits both sides of a ratio); the
spread (min-max over rounds) is printed next to it as the noise. ``> 1`` means the after tree
is slower. ``--clock cpu`` times the process's CPU time instead of the wall clock: on a loaded
machine it leaves out the time spent waiting for a core (the multi-core full-batch kernels
then count the CPU time of all their threads, i.e. work, not elapsed time).

Process-paired ratios carry the process-to-process variation of a shared machine (10-30 % on
the 2-core machines here, 2026-12-02: 42 of 150 rows flagged with min-max spreads of
0.6-1.8). To judge a change of a few per cent, time both trees in one process with
:mod:`bench.same_process` and run it once as A/A for the noise floor.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3}
BATCHES = ("1", "32", "256", "full")
LAYOUTS = ("dense64", "dense32", "csr64")
BACKENDS = ("numba", "cython")
# user level: (optimizer, batch) pairs of a one-epoch fit, on every layout and backend
USER_FITS = (("sgd", "1"), ("momentum", "1"), ("adam", "1"), ("adam", "32"), ("sgd", "256"))
WORSE_THAN = 1.03  # the criterion: no ratio more than 3% worse


# --- worker: runs inside the tree being measured --------------------------------------------
def _worker_data(layout):
    """``(X, y_labels, order)`` as ``bench/conftest.py``'s ``bench_data`` builds them."""
    import numpy as np

    from bench import _common
    from bench.conftest import N_FEATURES, N_FEATURES_CSR, NNZ_PER_ROW, bench_rows

    n = bench_rows()
    if layout == "csr64":
        X, y = _common.sparse_classification(n, N_FEATURES_CSR, NNZ_PER_ROW, np.float64, seed=1)
    else:
        dtype = np.float64 if layout == "dense64" else np.float32
        X, y = _common.dense_classification(n, N_FEATURES, dtype, seed=0)
    order = np.random.default_rng(0).permutation(n).astype(np.int64)
    return X, y, order


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _best_of(fn, repeats, clock, setup=None):
    best = float("inf")
    for call in range(repeats + 1):  # call 0 is the untimed warm-up
        if setup is not None:
            setup()
        t0 = clock()
        fn()
        elapsed = clock() - t0
        if call > 0:
            best = min(best, elapsed)
    return best


def _kernel_timings(spec, data):
    from bench import _common
    from fastgd import _contract as C

    out = {}
    status = _common.backend_status(spec["backends"])
    for backend in spec["backends"]:
        module, _ = status[backend]
        if module is None:
            continue
        for layout in spec["layouts"]:
            X, y, order = data[layout]
            n = X.shape[0]
            y2 = y.astype(X.dtype).reshape(-1, 1)
            for opt in spec["optimizers"]:
                for batch in spec["batches"]:
                    b = None if batch == "full" else int(batch)
                    codes, hp, bs = _common.kernel_settings(C.LOSS_LOG, opt, LEARNING_RATES[opt], b, n)
                    run = _common.KernelRun(module, X, y2, opt, codes, hp, bs)
                    status_code, _ = run.epoch(order)
                    if status_code != C.STATUS_OK:
                        raise RuntimeError(f"{backend} {layout} {opt} b={batch}: status {status_code}")
                    key = f"kernel|{backend}|{layout}|{opt}|{batch}"
                    out[key] = _best_of(lambda: run.epoch(order), spec["repeats"], CLOCKS[spec["clock"]],
                                        setup=run.reset)
    return out


def _user_timings(spec, data):
    import warnings

    from fastgd import LogisticRegression

    out = {}
    for backend in spec["backends"]:
        for layout in spec["layouts"]:
            X, y, _ = data[layout]
            for opt, batch in USER_FITS:
                params = dict(
                    optimizer=opt, learning_rate=LEARNING_RATES[opt],
                    batch_size=X.shape[0] if batch == "full" else int(batch),
                    max_iter=1, tol=None, alpha=1e-4, penalty="l2", l1_ratio=0.15,
                    schedule="constant", shuffle=True, random_state=0, early_stopping=False,
                    validation_fraction=0.1, n_iter_no_change=5, clip_norm=None, class_weight=None,
                    grad_tol=None, init="zeros", lazy_updates=False, warm_start=False, verbose=0,
                    backend=backend,
                )
                est = LogisticRegression(**params)

                def fit():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # one epoch does not converge, by design
                        est.fit(X, y)

                out[f"user|{backend}|{layout}|{opt}|{batch}"] = _best_of(fit, spec["repeats"], CLOCKS[spec["clock"]])
    return out


def worker(spec):
    """Time this process's tree (the ``fastgd`` on ``sys.path``); returns workload -> seconds."""
    data = {layout: _worker_data(layout) for layout in spec["layouts"]}
    out = _kernel_timings(spec, data)
    if spec["user"]:
        out.update(_user_timings(spec, data))
    return out


# --- driver -----------------------------------------------------------------------------
def _run_tree(tree, spec):
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = ["nice", "-n", str(spec["nice"]), sys.executable, "-P", os.path.abspath(__file__),
           "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker in {tree} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_ms(s):
    return f"{s * 1e3:.3g}"


def report(before, after, rounds, spec, started):
    """Markdown: one row per workload with both trees' median times and the paired ratio."""
    keys = [k for k in before[0] if all(k in r for r in before + after)]
    lines = [
        "# fastgd before / after",
        "",
        f"before: `{spec['trees'][0]}` ({spec['revs'][0]}), after: `{spec['trees'][1]}` ({spec['revs'][1]})",
        f"{rounds} rounds (before, after alternating, one process each), best of {spec['repeats']} calls "
        f"per round after a warm-up, {spec['clock']} clock; started {started}, load average at start / end: "
        f"{spec['load'][0]} / {spec['load'][1]}.",
        "ratio = median over rounds of (after / before) of the same round; > 1: after is slower; "
        f"rows above {WORSE_THAN} are marked **worse**.",
        "",
        "| level | backend | layout | optimizer | batch | before ms | after ms | after / before | range | |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    worse = []
    for key in keys:
        level, backend, layout, opt, batch = key.split("|")
        b = [r[key] for r in before]
        a = [r[key] for r in after]
        ratios = [ai / bi for ai, bi in zip(a, b)]
        ratio = statistics.median(ratios)
        flag = "**worse**" if ratio > WORSE_THAN else ""
        if flag:
            worse.append(key)
        lines.append(f"| {level} | {backend} | {layout} | {opt} | {batch} | {_fmt_ms(statistics.median(b))} | "
                     f"{_fmt_ms(statistics.median(a))} | {ratio:.3f} | {min(ratios):.2f}-{max(ratios):.2f} | {flag} |")
    lines += ["", f"{len(worse)} of {len(keys)} workloads more than {100 * (WORSE_THAN - 1):.0f}% slower after."]
    return "\n".join(lines) + "\n", worse


def _rev(tree):
    proc = subprocess.run(["git", "-C", tree, "log", "-1", "--format=%h"], capture_output=True, text=True)
    return proc.stdout.strip() or "not a git tree"


def _load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.before_after", description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="root of the tree timed first in each round (required)")
    ap.add_argument("--after", help="root of the tree compared against it (required)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating process pairs (at least 5)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per workload in each process")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    ap.add_argument("--batches", default=",".join(BATCHES))
    ap.add_argument("--no-user", action="store_true", help="kernel level only (no one-epoch fits)")
    ap.add_argument("--nice", type=int, default=0, help="niceness of the timed processes")
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                    help="wall: elapsed time; cpu: the process's CPU time (leaves out waiting for a core on a "
                         "loaded machine; multi-core kernels then count the work of every thread)")
    ap.add_argument("--out", default=None, help="also write the markdown table (and FILE.json, raw times) here")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.before is None or args.after is None:
        ap.error("--before and --after are both required")
    if args.rounds < 5:
        ap.error("--rounds must be at least 5: fewer paired rounds do not show the noise")
    trees = [os.path.abspath(args.before), os.path.abspath(args.after)]
    spec = dict(backends=args.backends.split(","), layouts=args.layouts.split(","),
                optimizers=args.optimizers.split(","), batches=args.batches.split(","),
                repeats=args.repeats, user=not args.no_user, nice=args.nice, clock=args.clock)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_start = _load()
    before, after = [], []
    for r in range(args.rounds):
        before.append(_run_tree(trees[0], spec))
        after.append(_run_tree(trees[1], spec))
        print(f"round {r + 1}/{args.rounds} done ({_load()})", file=sys.stderr)
    spec.update(trees=trees, revs=[_rev(t) for t in trees], load=[load_start, _load()])
    text, worse = report(before, after, args.rounds, spec, started)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        with open(args.out + ".json", "w") as f:
            json.dump(dict(spec=spec, before=before, after=after), f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
