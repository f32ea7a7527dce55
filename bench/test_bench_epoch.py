"""Kernel-level benchmarks: ONE epoch = one call of a backend's epoch function.

The data, the sample order, the kernel codes / hyper-parameters (built by the estimators' own
``_settings``) and every buffer are prepared outside the timed region, and the parameters and
optimizer state are reset before each round, so every round does the same work and the
estimator's validation and bookkeeping are excluded. Run with::

    PYTHONPATH=. python -m pytest bench/ --benchmark-only

Binary log loss, L2 alpha=1e-4, constant learning rate. The first call of each benchmark
(compilation for Numba) is made, and its status checked, before timing.
"""

import os

import pytest

from bench import _common
from fastgd import _contract as C

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam")
LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3}
BATCHES = (1, 32, 256, None)  # None: full batch, one step per epoch
LAYOUTS = ("dense64", "dense32", "csr64")
ROUNDS = int(os.environ.get("FASTGD_BENCH_ROUNDS", "5"))


def _backend_names():
    from bench.conftest import bench_backends

    return bench_backends()


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: "full" if b is None else f"b{b}")
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend_name", _backend_names())
def test_epoch(benchmark, backends, bench_data, backend_name, layout, optimizer, batch):
    module, reason = backends[backend_name]
    if module is None:
        pytest.skip(f"backend {backend_name!r} not importable: {reason}")
    X, y, order = bench_data(layout)
    n = X.shape[0]
    codes, hp, b = _common.kernel_settings(C.LOSS_LOG, optimizer, LEARNING_RATES[optimizer], batch, n)
    try:
        run = _common.KernelRun(module, X, y, optimizer, codes, hp, b)
    except _common.CsrUnavailable as exc:
        pytest.skip(f"CSR not available: {exc}")
    try:
        status, loss_sum = run.epoch(order)  # warm-up: compiles; not timed
    except Exception as exc:
        if run.sparse:
            pytest.skip(f"CSR epoch failed on {backend_name}: {type(exc).__name__}: {exc}")
        raise
    assert status == C.STATUS_OK, "warm-up epoch diverged; timings would be of an early return"

    benchmark.group = f"{layout} batch={'full' if batch is None else batch}"
    benchmark.extra_info.update(n=n, p=X.shape[1], dtype=str(X.dtype), batch_size=b,
                                steps=-(-n // b), backend=backend_name, optimizer=optimizer)

    def setup():
        run.reset()
        return (order,), {}

    result = benchmark.pedantic(run.epoch, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert result[0] == C.STATUS_OK
