"""Fixtures of the kernel-level benchmarks (``pytest bench/ --benchmark-only``).

Sizes: ``FASTGD_BENCH_SCALE`` (default 1) multiplies the number of rows of the default
20,000 x 100 dense problem (and the 20,000 x 2,000 CSR one, ~50 non-zeros per row).
``FASTGD_BENCH_ROUNDS`` (default 5) sets the timed rounds per benchmark.
``FASTGD_BENCH_BACKENDS`` (default ``numba,cython``) lists the backends to try; unavailable
ones are skipped with the import error as the reason (``numpy`` can be added, slowly).
"""

import os

import numpy as np
import pytest

from bench import _common

N_ROWS = 20_000
N_FEATURES = 100
N_FEATURES_CSR = 2_000
NNZ_PER_ROW = 50


def bench_backends():
    names = os.environ.get("FASTGD_BENCH_BACKENDS", ",".join(_common.COMPILED_BACKENDS))
    return tuple(n.strip() for n in names.split(",") if n.strip())


def bench_rows():
    return max(1000, int(N_ROWS * _common.env_scale()))


def pytest_report_header(config):
    status = _common.backend_status(bench_backends())
    lines = [f"fastgd bench: {bench_rows()} rows x {N_FEATURES} features (dense), "
             f"x {N_FEATURES_CSR} (CSR, ~{NNZ_PER_ROW} nnz/row); "
             f"FASTGD_BENCH_SCALE={_common.env_scale()}"]
    for name, (mod, reason) in status.items():
        lines.append(f"backend {name}: {'available' if mod is not None else 'SKIPPED (' + reason + ')'}")
    return lines


@pytest.fixture(scope="session")
def backends():
    return _common.backend_status(bench_backends())


@pytest.fixture(scope="session")
def bench_data():
    """Lazily built data sets by layout name: (X, y as float column, order)."""
    cache = {}
    n = bench_rows()

    def get(layout):
        if layout not in cache:
            if layout == "csr64":
                X, y = _common.sparse_classification(n, N_FEATURES_CSR, NNZ_PER_ROW, np.float64, seed=1)
            else:
                dtype = np.float64 if layout == "dense64" else np.float32
                X, y = _common.dense_classification(n, N_FEATURES, dtype, seed=0)
            order = np.random.default_rng(0).permutation(n).astype(np.int64)
            cache[layout] = (X, y.astype(X.dtype).reshape(-1, 1), order)
        return cache[layout]

    return get
