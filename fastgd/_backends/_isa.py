"""Which build of the Cython kernels runs an epoch: baseline x86-64, or x86-64-v4 (AVX-512).

``setup.py`` compiles ``_kernels.pyx`` once for the baseline instruction set (every x86-64
CPU, and every other architecture) and, where the compiler accepts the flags, again as
``_kernels_x86_64_v4``. The builds compute bit-identical results: they are compiled with
``-ffp-contract=off`` (no fused multiply-adds the source does not write) and without
``-ffast-math`` (no reassociation), so wider vectors change the speed of the element-wise
loops, never their rounding.

Which build serves which epoch is a measured choice (``python -m bench.isa --clock thread``,
20,000 x 100). On Zen 4 the AVX-512 build ran per-sample epochs of the adaptive optimizers
1.25-1.4x faster (their ``sqrt`` and division loops run 8 wide), per-sample SGD and momentum
2-7 % slower, and mini-batch float32 epochs 10-40 % slower (GCC vectorises the
four-accumulator dot product with lane shuffles). On an Intel Xeon (the CI machines' kind,
2026-12-02) it ran per-sample momentum 1.25x faster, the adaptive optimizers per-sample
within 5 % either way, plain per-sample SGD within 6 % and mini-batch float32 epochs
20-50 % slower. So ``"auto"`` gives every per-sample dense epoch but plain SGD's fused one
(:func:`fastgd._contract.plain_sgd_per_sample`) to the best level the CPU supports, and
every other epoch to the baseline build. (An x86-64-v3 build measured slower than the
baseline on every workload but those, so none is built.)

A build may only be imported on a CPU (and an operating system) that supports its
instructions: otherwise the first vector instruction kills the process. The features are
those NumPy detected at start-up (``__cpu_features__``: CPUID and the OS's saved-register
support), and each level requires every feature of its definition.

The environment variable ``FASTGD_CYTHON_ISA`` (``auto``, ``baseline``, ``x86_64_v4``)
overrides the choice, for every epoch: to compare builds, or to rule one out. Asking for a
level this CPU lacks, or one that was not built, is an ``ImportError`` naming the level.
"""

import importlib
import importlib.util
import os

ENV = "FASTGD_CYTHON_ISA"
BASELINE = "baseline"
# The psABI's micro-architecture levels, best first, as NumPy names their features.
LEVELS = {
    "x86_64_v4": ("AVX", "AVX2", "BMI", "BMI2", "F16C", "FMA3", "LZCNT", "MOVBE",
                  "AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"),
}
CHOICES = ("auto", BASELINE) + tuple(LEVELS)


def cpu_features():
    """NumPy's run-time CPU feature table (name -> bool); empty if it cannot be read."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        try:  # NumPy < 2
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return {}
    return dict(__cpu_features__)


def supported_levels(features):
    """The levels of :data:`LEVELS` whose every feature is in ``features``, best first."""
    return [level for level, needed in LEVELS.items() if all(features.get(f, False) for f in needed)]


def choose(features, built, requested="auto"):
    """The best build for per-sample epochs: ``requested`` if it is a level (checked against
    ``features`` and ``built``, the levels whose module exists), else the best supported
    built level, else :data:`BASELINE`."""
    if requested not in CHOICES:
        raise ImportError(f"{ENV}={requested!r}: expected one of {', '.join(CHOICES)}")
    usable = [level for level in supported_levels(features) if level in built]
    if requested == "auto":
        return usable[0] if usable else BASELINE
    if requested != BASELINE and requested not in usable:
        why = "was not built" if requested not in built else "is not supported by this CPU"
        raise ImportError(f"{ENV}={requested!r}: the {requested} build of the Cython kernels {why}")
    return requested


def module_name(level):
    """The extension module of a build, relative to ``fastgd._backends._cython``."""
    return "._kernels" if level == BASELINE else f"._kernels_{level}"


def built_levels(package="fastgd._backends._cython"):
    """The levels whose extension module is present (found, not imported)."""
    found = []
    for level in LEVELS:
        try:
            if importlib.util.find_spec(package + module_name(level)) is not None:
                found.append(level)
        except ImportError:
            pass
    return found


def import_kernels(package="fastgd._backends._cython"):
    """``(requested, level, module)``: ``FASTGD_CYTHON_ISA`` (or ``"auto"``) and the best
    build of the kernels for this CPU, imported."""
    requested = os.environ.get(ENV, "auto")
    level = choose(cpu_features(), built_levels(package), requested)
    return requested, level, importlib.import_module(module_name(level), package)
