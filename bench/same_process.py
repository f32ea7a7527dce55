"""Before/after kernel epochs of two source trees, timed side by side in one process.

``python -m bench.same_process --before DIR [--backends numba,cython] [--layouts ...]
[--optimizers ...] [--batches ...] [--repeats 20] [--work DIR]``

Run from the *after* tree (its ``fastgd`` and ``bench`` are the ones imported as usual). The
before tree is copied into a work folder as the packages ``fastgd_before`` and
``bench_before`` (every ``fastgd`` / ``bench`` module path rewritten), and its Cython
extensions are rebuilt there by its **own** ``setup.py`` under the renamed package (same
flags, same ISA builds; two extension modules of one name cannot share a process). Each
workload's kernel arguments come from each tree's own ``kernel_settings`` / ``KernelRun``,
as in :mod:`bench.before_after`, on the same data (``bench.before_after._worker_data``); the
two kernels are then called alternately, before / after / after / before ..., ``--repeats``
times each, parameters reset (untimed) before every call.

Why a second tool: :mod:`bench.before_after` pairs whole processes, and on the shared 2-core
machines a process's speed varies by 10-30 % from one process to the next (page placement,
which core, the neighbours), more than the few per cent a change must be judged by. In one
process both trees meet the same conditions; the remaining noise shows as the gap between
the min and median ratios printed per row. ``after/before > 1`` means the after tree is slower.

The work folder (default ``DIR/.same_process``) is kept: a second run reuses the build when
the before tree's commit is the same.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

from bench.before_after import BACKENDS, BATCHES, LAYOUTS, LEARNING_RATES, OPTIMIZERS, WORSE_THAN

_MODULE_PATH = re.compile(r"\b(fastgd|bench)\b(?=[./ ])")


def _rewrite(text):
    """``fastgd`` / ``bench`` module paths (``fastgd.x``, ``fastgd/x``, ``from fastgd import``)
    to ``fastgd_before`` / ``bench_before``."""
    return _MODULE_PATH.sub(lambda m: m.group(1) + "_before", text)


def _commit(tree):
    out = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def prepare(before, work):
    """Copy and rewrite the before tree into ``work`` and build its extensions there."""
    stamp = os.path.join(work, "COMMIT")
    commit = _commit(before)
    if commit != "unknown" and os.path.exists(stamp) and open(stamp).read() == commit:
        return work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "build")
    for name in ("fastgd", "bench"):
        shutil.copytree(os.path.join(before, name), os.path.join(work, name + "_before"), ignore=ignore)
    shutil.copy(os.path.join(before, "setup.py"), os.path.join(work, "setup.py"))
    for root, _, files in os.walk(work):
        for f in files:
            if f.endswith((".py", ".pyx", ".pxd", ".pxi")):
                path = os.path.join(root, f)
                with open(path) as fh:
                    text = fh.read()
                with open(path, "w") as fh:
                    fh.write(_rewrite(text))
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"], cwd=work, check=True)
    with open(stamp, "w") as fh:
        fh.write(commit)
    return work


def _run(common, contract, backend, X, y2, order, opt, batch):
    b = None if batch == "full" else int(batch)
    codes, hp, bs = common.kernel_settings(contract.LOSS_LOG, opt, LEARNING_RATES[opt], b, X.shape[0])
    module, why = common.backend_status([backend])[backend]
    if module is None:
        raise RuntimeError(f"backend {backend}: {why}")
    run = common.KernelRun(module, X, y2, opt, codes, hp, bs)
    status, _ = run.epoch(order)
    if status != contract.STATUS_OK:
        raise RuntimeError(f"{backend} {opt} b={batch}: status {status}")
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.same_process", description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="root of the tree to compare this one against")
    ap.add_argument("--work", default=None, help="where the renamed copy is built (default BEFORE/.same_process)")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    ap.add_argument("--batches", default=",".join(BATCHES))
    ap.add_argument("--repeats", type=int, default=20, help="timed calls of each kernel per workload")
    args = ap.parse_args(argv)
    work = prepare(os.path.abspath(args.before), os.path.abspath(args.work or os.path.join(args.before, ".same_process")))
    sys.path.insert(0, work)
    import bench._common as after_common
    import bench_before._common as before_common
    import fastgd._contract as after_contract
    import fastgd_before._contract as before_contract

    from bench.before_after import _worker_data

    print(f"before: {args.before} ({_commit(args.before)[:7]}), after: {os.getcwd()} ({_commit(os.getcwd())[:7]}); "
          f"{args.repeats} alternating calls each, wall clock")
    print("| backend | layout | optimizer | batch | before ms (min) | after ms (min) | after/before min | median | |")
    print("|---|---|---|---|---|---|---|---|---|")
    n_worse = n_rows = 0
    for layout in args.layouts.split(","):
        X, y, order = _worker_data(layout)
        y2 = y.astype(X.dtype).reshape(-1, 1)
        for backend in args.backends.split(","):
            for opt in args.optimizers.split(","):
                for batch in args.batches.split(","):
                    runs = (_run(before_common, before_contract, backend, X, y2, order, opt, batch),
                            _run(after_common, after_contract, backend, X, y2, order, opt, batch))
                    times = ([], [])
                    for k in range(args.repeats):
                        for side in ((0, 1) if k % 2 == 0 else (1, 0)):
                            runs[side].reset()
                            t0 = time.perf_counter()
                            runs[side].epoch(order)
                            times[side].append(time.perf_counter() - t0)
                    lo = min(times[1]) / min(times[0])
                    med = statistics.median(times[1]) / statistics.median(times[0])
                    worse = lo > WORSE_THAN and med > WORSE_THAN
                    n_worse += worse
                    n_rows += 1
                    print(f"| {backend} | {layout} | {opt} | {batch} | {min(times[0]) * 1e3:.3g} | "
                          f"{min(times[1]) * 1e3:.3g} | {lo:.3f} | {med:.3f} | {'**worse**' if worse else ''} |",
                          flush=True)
    print(f"\n{n_worse} of {n_rows} workloads more than {WORSE_THAN - 1:.0%} slower after by both the min and "
          "the median ratio.")


if __name__ == "__main__":
    main()
