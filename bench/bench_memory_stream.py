"""Memory stays bounded when training from files larger than memory: a measurement.

    PYTHONPATH=. python -m bench.bench_memory_stream [--gb 3] [--dir /tmp] [--keep]

1. Writes an svmlight file of about ``--gb`` GB (12 non-zeros per row, 2^20 hashed columns)
   and trains ``LogisticRegression`` on it with :func:`fastgd.stream.fit` at the default
   chunk size (one pass): reports the child process's peak resident memory (``ru_maxrss``).
   Target: below 1 GB.
2. Writes a float32 ``.npy`` file of about ``--gb`` GB and trains on its memory map: reports
   the peak anonymous memory (``RssAnon``, sampled every 20 ms; page-cache pages of the file
   are not anonymous) and the peak RSS. Target: ``RssAnon`` below 10% of the file.

Each training runs in a fresh child process, so the peaks are those of training alone
(Python, NumPy, SciPy, scikit-learn and the compiled kernels included). Files are deleted at
the end unless ``--keep``.
"""

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_FEATURES = 1 << 20
NPY_COLUMNS = 64


def write_svmlight(path, gb, rows_per_block=200_000):
    """Repeat one generated block of rows until the file holds about ``gb`` GB."""
    from sklearn.datasets import dump_svmlight_file

    from fastgd.datasets import make_sparse_classification

    X, y, _ = make_sparse_classification(rows_per_block, N_FEATURES, 12, random_state=0)
    X.data = np.round(X.data, 4)  # values as text data usually hold them (not 17 digits)
    block = io.BytesIO()
    dump_svmlight_file(X, y, block, zero_based=True)
    block = block.getvalue()
    with open(path, "wb") as f:
        while f.tell() < gb * 1e9:
            f.write(block)
    return os.path.getsize(path)


def write_npy(path, gb, rng):
    n = int(gb * 1e9 / (4 * NPY_COLUMNS))
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, NPY_COLUMNS))
    w = rng.standard_normal(NPY_COLUMNS)
    y = np.lib.format.open_memmap(path[:-4] + ".y.npy", mode="w+", dtype=np.float32, shape=(n,))
    step = 1 << 18
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        block = rng.standard_normal((hi - lo, NPY_COLUMNS)).astype(np.float32)
        X[lo:hi] = block
        y[lo:hi] = block @ w > 0
    X.flush()
    y.flush()
    del X, y
    return os.path.getsize(path), n


def _rss_anon_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def child(fmt, path):
    """Train on ``path`` and print a JSON line with the peaks (runs in its own process)."""
    from fastgd import LogisticRegression, stream

    peak = {"anon_kb": _rss_anon_kb()}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["anon_kb"] = max(peak["anon_kb"], _rss_anon_kb())
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    model = LogisticRegression(optimizer="sgd", learning_rate=0.01, batch_size=1, penalty=None, random_state=0)
    tic = time.perf_counter()
    if fmt == "svmlight":
        stream.fit(model, path, classes=[0, 1], n_features=N_FEATURES, zero_based=True, dtype=np.float32)
    else:
        stream.fit(model, path, classes=[0, 1], target=path[:-4] + ".y.npy")
    seconds = time.perf_counter() - tic
    done.set()
    peak["anon_kb"] = max(peak["anon_kb"], _rss_anon_kb())
    print(json.dumps({"seconds": seconds, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "peak_anon_kb": peak["anon_kb"], "rows": model.t_}))


def _run_child(fmt, path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "bench.bench_memory_stream", "--child", fmt, path], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=3.0)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("FORMAT", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(*args.child)
    free = shutil.disk_usage(args.dir).free
    if free < 2.5 * args.gb * 1e9:
        sys.exit(f"{args.dir} has {free / 1e9:.1f} GB free; need about {2.5 * args.gb:.1f} GB.")
    tmp = tempfile.mkdtemp(prefix="fastgd-memory-", dir=args.dir)
    try:
        svm = os.path.join(tmp, "train.svm")
        tic = time.perf_counter()
        size = write_svmlight(svm, args.gb)
        print(f"svmlight file: {size / 1e9:.2f} GB written in {time.perf_counter() - tic:.0f} s", flush=True)
        r = _run_child("svmlight", svm)
        print(f"  stream.fit, one pass, default chunk size: {r['rows']} rows in {r['seconds']:.0f} s; "
              f"peak RSS {r['maxrss_kb'] / 1e6:.3f} GB (target < 1 GB), peak RssAnon "
              f"{r['peak_anon_kb'] / 1e6:.3f} GB", flush=True)
        os.remove(svm)
        npy = os.path.join(tmp, "train.npy")
        tic = time.perf_counter()
        size, n = write_npy(npy, args.gb, np.random.default_rng(0))
        print(f".npy file: {n} x {NPY_COLUMNS} float32, {size / 1e9:.2f} GB written in "
              f"{time.perf_counter() - tic:.0f} s", flush=True)
        r = _run_child("npy", npy)
        print(f"  stream.fit on the memory map, one pass: {r['rows']} rows in {r['seconds']:.0f} s; peak RssAnon "
              f"{r['peak_anon_kb'] / 1e6:.3f} GB = {r['peak_anon_kb'] * 1e3 / size:.1%} of the file "
              f"(target < 10%); peak RSS {r['maxrss_kb'] / 1e6:.3f} GB (file pages included)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
