"""The Cython backend: the kernel contract compiled ahead of time (dense and CSR input).

The kernels live in the extension module ``_kernels`` built from ``_kernels.pyx`` by
``pip install`` (see ``setup.py``), and in the same kernels built for x86-64-v4
(``_kernels_x86_64_v4``, where the compiler could): :mod:`fastgd._backends._isa` says which
build runs which epoch (``isa`` names the one per-sample dense epochs use; bit-identical
results either way). When the baseline extension is not built,
importing this package raises ImportError, so the registry reports the backend as
unavailable. A build whose compiled-in contract integers disagree with
:mod:`fastgd._contract` (a stale build) is refused the same way.
"""

from fastgd import _contract
from fastgd._backends import _isa

try:
    from fastgd._backends._cython import _kernels as _baseline
    from fastgd._backends._cython._kernels import contract_constants
except ImportError as exc:  # not built (e.g. a source checkout without build_ext), or too old
    raise ImportError(
        "the Cython backend of fastgd is not built (or was built from older sources); reinstall with 'pip install .' (or run "
        "'python setup.py build_ext --inplace' in a source checkout)."
    ) from exc

name = "cython"
# (an ImportError of its own when FASTGD_CYTHON_ISA asks for a build this CPU cannot run)
_requested, isa, _chosen = _isa.import_kernels(__name__)
# "auto": the chosen build for the per-sample dense epochs other than plain SGD's fused one
# (see _isa); a forced level: every epoch
_rest = _baseline if _requested == "auto" else _chosen
epoch_dense_chunked = _rest.epoch_dense_chunked
epoch_csr = _rest.epoch_csr
full_gradient_dense = _rest.full_gradient_dense
epoch_saga_dense = _rest.epoch_saga_dense
epoch_saga_csr = _rest.epoch_saga_csr
epoch_csr_hogwild = _rest.epoch_csr_hogwild


def epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work):
    """The kernels' ``epoch_dense`` of the build that runs this epoch fastest (see ``isa``)."""
    per_sample = batch_size == 1 and not _contract.plain_sgd_per_sample(codes, hp, batch_size, coef.shape[1])
    kernels = _chosen if per_sample else _rest
    return kernels.epoch_dense(X, y, sw, order, coef, state, t, codes, hp, batch_size, grad, work)


# (absent from builds of older sources: the driver then takes full rollback snapshots)
CSR_DIVERGENCE_TOUCHES_ONLY_ROWS = getattr(_rest, "CSR_DIVERGENCE_TOUCHES_ONLY_ROWS", False)
# (absent from builds of older sources: the driver then folds the running scale every epoch)
CSR_RUNNING_SCALE = getattr(_rest, "CSR_RUNNING_SCALE", False)
# (absent from builds of older sources: the driver then catches up every coordinate every epoch)
CSR_DEFERRED_CATCH_UP = getattr(_rest, "CSR_DEFERRED_CATCH_UP", False)

_stale = {k: v for constants in (contract_constants(), _chosen.contract_constants())
          for k, v in constants.items() if getattr(_contract, k, None) != v}
if _stale:
    raise ImportError(
        f"the compiled Cython backend disagrees with fastgd._contract on {sorted(_stale)}; "
        "rebuild it ('pip install .' or 'python setup.py build_ext --inplace')."
    )
del _stale

__all__ = ["name", "isa", "epoch_dense", "epoch_dense_chunked", "epoch_csr", "epoch_saga_dense", "epoch_saga_csr",
           "epoch_csr_hogwild", "full_gradient_dense", "contract_constants"]
