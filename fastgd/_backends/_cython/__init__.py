"""The Cython backend: the kernel contract compiled ahead of time (dense and CSR input).

The kernels live in the extension module ``_kernels`` built from ``_kernels.pyx`` by
``pip install`` (see ``setup.py``). When the extension is not built, importing this package
raises ImportError, so the registry reports the backend as unavailable. A build whose
compiled-in contract integers disagree with :mod:`fastgd._contract` (a stale build) is refused
the same way.
"""

from fastgd import _contract

try:
    from fastgd._backends._cython._kernels import (
        contract_constants, epoch_csr, epoch_dense, epoch_dense_chunked, full_gradient_dense,
    )
except ImportError as exc:  # not built (e.g. a source checkout without build_ext), or too old
    raise ImportError(
        "the Cython backend of fastgd is not built (or was built from older sources); reinstall with 'pip install .' (or run "
        "'python setup.py build_ext --inplace' in a source checkout)."
    ) from exc

name = "cython"

from fastgd._backends._cython import _kernels  # noqa: E402

# (absent from builds of older sources: the driver then takes full rollback snapshots)
CSR_DIVERGENCE_TOUCHES_ONLY_ROWS = getattr(_kernels, "CSR_DIVERGENCE_TOUCHES_ONLY_ROWS", False)
# (absent from builds of older sources: the driver then folds the running scale every epoch)
CSR_RUNNING_SCALE = getattr(_kernels, "CSR_RUNNING_SCALE", False)
del _kernels

_stale = {k: v for k, v in contract_constants().items() if getattr(_contract, k, None) != v}
if _stale:
    raise ImportError(
        f"the compiled Cython backend disagrees with fastgd._contract on {sorted(_stale)}; "
        "rebuild it ('pip install .' or 'python setup.py build_ext --inplace')."
    )
del _stale

__all__ = ["name", "epoch_dense", "epoch_dense_chunked", "epoch_csr", "full_gradient_dense", "contract_constants"]
