"""Run by ``test_hardening.py`` in a subprocess: a multi-core fit in this process, then fits in
child processes started in the way named on the command line. Prints one line per check; a
hang is caught by the test's timeout."""

import os
import sys

import numpy as np

from fastgd import LinearRegression
from fastgd._backends import _fork_safety

# b * p = 3000 * 50 >= CHUNKED_MIN_WORK: the full-batch fit takes the multi-core kernel.
X = np.random.default_rng(0).random((3000, 50))
y = X.sum(1)


def fit_coef(backend):
    return LinearRegression(max_iter=2, tol=None, backend=backend).fit(X, y).coef_


def main(backend, *methods):
    parent = fit_coef(backend)
    assert _fork_safety._multicore_ran, "the parent's fit did not run the multi-core kernel"
    for method in methods:
        children = children_coefs(backend, method)
        for coef in children:
            # The Cython chunked kernel keeps its bits on one thread; Numba's forked child
            # takes the serial kernel, whose batch sum rounds differently in the last bits.
            np.testing.assert_allclose(coef, parent, rtol=1e-10)
        exact = all(np.array_equal(c, parent) for c in children)
        print(method, "children", len(children), "exact", exact, flush=True)


def children_coefs(backend, method):
    if method == "os.fork":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            with os.fdopen(w, "wb") as out:
                out.write(fit_coef(backend).tobytes())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as inp:
            children = [np.frombuffer(inp.read())]
        assert os.waitpid(pid, 0)[1] == 0
    elif method.startswith("joblib-"):
        from joblib import Parallel, delayed

        children = Parallel(n_jobs=2, backend=method[len("joblib-"):])(delayed(fit_coef)(backend) for _ in range(2))
    else:
        import multiprocessing as mp

        with mp.get_context(method).Pool(1) as pool:
            children = pool.map(fit_coef, [backend])
    return children


if __name__ == "__main__":
    main(*sys.argv[1:])
