"""Cost of the structural CSR check (fastgd._sparse_validation) next to one training epoch.

    python -m bench.csr_validation [n_samples n_features nnz_per_row]

Prints the check's time, the time of one per-sample SGD epoch on the same matrix (a whole
``fit`` with ``max_iter=1``, minus nothing: an upper bound on the epoch), and their ratio.
"""

import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp

from fastgd import LinearRegression
from fastgd._sparse_validation import check_csr_structure


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def main(n=200_000, p=20_000, per_row=20):
    # per_row distinct, sorted columns in each row (canonical CSR, so fit makes no copy)
    rows = np.arange(n)[:, None]
    indices = np.sort((rows * 7919 + np.arange(per_row) * (p // per_row)) % p, axis=1).astype(np.int32)
    data = np.random.default_rng(0).standard_normal(n * per_row)
    X = sp.csr_matrix((data, indices.ravel(), np.arange(0, n * per_row + 1, per_row)), shape=(n, p))
    y = np.asarray(X.sum(axis=1)).ravel()
    check = best_of(lambda: check_csr_structure(X), 5)
    reg = LinearRegression(batch_size=1, max_iter=1, tol=None, optimizer="sgd", learning_rate=0.01, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)  # warm-up (Numba compiles here)
        epoch = best_of(lambda: reg.fit(X, y), 3)
    print(f"{n} x {p} CSR, nnz {X.nnz}: check {check * 1e3:.2f} ms, one-epoch fit {epoch * 1e3:.1f} ms, "
          f"ratio {check / epoch:.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
