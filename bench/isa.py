"""The Cython kernels' builds side by side: baseline x86-64 against x86-64-v4, one epoch each.

``python -m bench.isa [--repeats 15] [--rows 20000]``

Both builds are imported in one process and called interleaved (baseline, v4, baseline, v4
...) on the same arrays, after one untimed warm-up call each; parameters are reset (untimed)
before every call. Reported per workload: the median time of each build and v4 / baseline
(< 1: the AVX-512 build is faster), and whether the two builds' coefficients are identical
(they must be). This is the measurement behind the choice in ``fastgd/_backends/_isa.py``.

``--clock thread`` times with the calling thread's CPU time instead of the wall clock (the
kernels timed here are single-threaded): on a loaded machine it leaves out the time the
process waited for a core, which otherwise swamps a 10 % difference.
"""

import argparse
import importlib
import time

import numpy as np

from bench import _common
from fastgd import _contract as C
from fastgd._backends import _isa, get_backend

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3}


def _builds():
    usable = [level for level in _isa.supported_levels(_isa.cpu_features())
              if level in _isa.built_levels()]
    return {level: importlib.import_module("fastgd._backends._cython" + _isa.module_name(level))
            for level in [_isa.BASELINE] + usable}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.isa", description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall")
    args = ap.parse_args(argv)
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    builds = _builds()
    cython = get_backend("cython")
    if len(builds) < 2:
        print("only the baseline build is available here (not built, or not supported by this CPU)")
        return 0
    print("| dtype | optimizer | batch | " + " | ".join(f"{b} ms" for b in builds)
          + " | ratio to baseline | identical |")
    print("|---|---|---|" + "---|" * len(builds) + "---|---|")
    for dtype in (np.float64, np.float32):
        X, y = _common.dense_classification(args.rows, 100, dtype, seed=0)
        y2 = y.astype(dtype).reshape(-1, 1)
        order = np.random.default_rng(0).permutation(args.rows).astype(np.int64)
        for opt in OPTIMIZERS:
            for batch in (int(b) for b in args.batches.split(",")):
                codes, hp, bs = _common.kernel_settings(C.LOSS_LOG, opt, LEARNING_RATES[opt], batch, args.rows)
                # (the package for the buffers' set-up; each build's own epoch_dense is timed)
                runs = {name: _common.KernelRun(cython, X, y2, opt, codes, hp, bs) for name in builds}

                def epoch(name):
                    run = runs[name]
                    return lambda: builds[name].epoch_dense(run.X, run.y, run.sw, order, run.coef, run.state,
                                                            run.t, run.codes, run.hp, run.batch_size, run.grad,
                                                            run.work)

                times = _common.alternate({name: epoch(name) for name in builds}, args.repeats,
                                          setup=lambda name: runs[name].reset(), clock=clock)
                med = {name: float(np.median(ts)) for name, ts in times.items()}
                coefs = [run.coef for run in runs.values()]
                same = all(np.array_equal(coefs[0], c) for c in coefs[1:])
                ratios = " / ".join(f"{med[name] / med[_isa.BASELINE]:.3f}" for name in builds if name != _isa.BASELINE)
                print(f"| {np.dtype(dtype).name} | {opt} | {batch} | "
                      + " | ".join(f"{med[name] * 1e3:.3g}" for name in builds) + f" | {ratios} | {same} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
