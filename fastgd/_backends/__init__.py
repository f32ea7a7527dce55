"""Backend registry: the implementations of the kernel contract (:mod:`fastgd._contract`).

``"numpy"`` is the reference (the executable specification), ``"numba"`` and ``"cython"`` the
compiled engines. ``"auto"`` picks the fastest compiled engine installed. Backends are
imported only when first asked for, so importing fastgd compiles nothing.

The environment variable ``FASTGD_BACKEND`` overrides ``"auto"`` (the test suite uses it to run
everything on each backend in turn).
"""

import importlib
import os

from fastgd._backends import _openmp_wait

BACKENDS = ("numpy", "numba", "cython")
_MODULES = {"numpy": "._reference", "numba": "._numba", "cython": "._cython"}
# Order of preference for "auto", from measurements side by side in one process (README,
# Performance; ``python -m bench.compare``): the two compiled engines are within about 20 % of
# each other on most workloads (Cython ahead on float64 mini-batch epochs and per-sample
# momentum and Adam, Numba on float32 per-sample SGD), and Cython compiles nothing at first
# use, so a first fit is as quick as scikit-learn's. Numba is the fallback when the extension is not built; the
# reference comes last.
_AUTO_ORDER = ("cython", "numba", "numpy")
_loaded = {}


def available(name):
    """True when backend ``name`` can be imported here."""
    try:
        get_backend(name)
    except ImportError:
        return False
    return True


def get_backend(name="auto"):
    """The backend module for ``name`` (one of :data:`BACKENDS` or ``"auto"``)."""
    if name == "auto":
        name = os.environ.get("FASTGD_BACKEND", "auto")
        if name == "auto":
            for candidate in _AUTO_ORDER:
                if available(candidate):
                    return get_backend(candidate)
    if name not in _MODULES:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}; got {name!r}.")
    if name not in _loaded:
        if name != "numpy":  # before the compiled kernels load the OpenMP runtime
            _openmp_wait.limit_spinning()
        _loaded[name] = importlib.import_module(_MODULES[name], __name__)
    return _loaded[name]
