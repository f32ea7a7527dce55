"""How long the idle threads of fastgd's multi-core kernels spin before they sleep.

After a parallel region, GNU OpenMP (libgomp) keeps its worker threads spinning, waiting for
the next region: 300,000 turns of a busy loop by default, milliseconds on today's CPUs. A
NumPy call right after a fit then shares its cores with those spinning threads (OpenBLAS's
own threads do the same to fastgd after a NumPy call; the kernels' dynamic hand-out of
slices absorbs that side). A short spin still covers the gap between the parallel regions of
one epoch (an optimizer step, microseconds), so threads are woken only between fits or
epochs.

libgomp reads ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT`` once, when it is loaded, and offers
no call to change them later. So before the first compiled backend is imported,
:func:`limit_spinning` loads libgomp itself with ``GOMP_SPINCOUNT`` set to
:data:`SPIN_COUNT`, then restores the environment: child processes and other libraries see
the user's environment unchanged. It does nothing when the user set either variable (their
choice stands), when libgomp is already loaded (too late), or where there is no libgomp
(other OpenMP runtimes, or none).
"""

import ctypes
import os

SPIN_COUNT = 10_000
USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
LIBGOMP = "libgomp.so.1"

# What limit_spinning did, for diagnostics and tests: None before it ran, else one of
# "limited", "user setting", "already loaded", "no libgomp".
outcome = None
_library = None  # the handle that keeps libgomp loaded


def limit_spinning():
    """Load libgomp with idle threads spinning :data:`SPIN_COUNT` turns (see the module
    docstring); runs once per process. Returns :data:`outcome`."""
    global outcome, _library
    if outcome is not None:
        return outcome
    if any(name in os.environ for name in USER_SETTINGS):
        outcome = "user setting"
        return outcome
    try:
        ctypes.CDLL(LIBGOMP, mode=os.RTLD_NOLOAD)
        outcome = "already loaded"
        return outcome
    except (OSError, AttributeError):  # not loaded (or no RTLD_NOLOAD: not a glibc system)
        pass
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    try:
        _library = ctypes.CDLL(LIBGOMP)
        outcome = "limited"
    except OSError:
        outcome = "no libgomp"
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    return outcome
