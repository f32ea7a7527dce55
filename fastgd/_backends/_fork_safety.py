"""Fork safety of the multi-core kernels.

GNU OpenMP (libgomp) keeps a pool of worker threads for each thread that opened a parallel
region. ``fork()`` copies only the calling thread, so in the child that pool names threads
which no longer exist: the next parallel region opened from the forking thread waits for them
for ever (the Cython kernels), and Numba's ``omp`` threading layer detects the situation and
kills the child ("fork() called from a process already using GNU OpenMP"). Python 3.11's
default start method on Linux is ``fork``, and joblib's ``multiprocessing`` backend forks too,
so a parallel fit followed by a pool of workers is an everyday pattern.

The design, all in Python and decided once per fit by the epoch driver:

- the driver calls :func:`note_multicore_run` whenever it runs a multi-core kernel;
- an at-fork handler marks the child of such a process (and its own children) as having
  inherited an OpenMP pool, and tells libgomp to run parallel regions opened from the forking
  thread on that one thread (``omp_set_num_threads(1)``: a team of one never touches the stale
  pool). The Cython kernels then still run the chunked kernel, on one core, with the same bits
  as in the parent (the slices are summed in a fixed order whatever the thread count);
- in such a child, :func:`multicore_allowed` is False for Numba, whose launcher would abort
  whatever the thread count: the driver takes the serial kernel (the same mathematics; the
  rounding of the batch sum differs in the last bits).

Processes started with ``spawn`` or ``forkserver``, and joblib's ``loky`` workers, start
fresh: they use every core. Threads started in a forked child also have no stale pool.
"""

import ctypes
import os

_multicore_ran = False  # a multi-core kernel ran in this process (or in a forking ancestor)
_inherited_openmp = False  # this process was forked after a multi-core kernel ran


def note_multicore_run():
    """Record that a multi-core kernel is about to run in this process."""
    global _multicore_ran
    _multicore_ran = True


def multicore_allowed(backend_name):
    """Whether the driver may call ``backend_name``'s multi-core kernels in this process."""
    return not (_inherited_openmp and backend_name == "numba")


def inherited_openmp():
    """True in a process forked (directly or not) after a multi-core kernel ran."""
    return _inherited_openmp


def _limit_libgomp_to_calling_thread():
    # Only when libgomp is already loaded (RTLD_NOLOAD): a process that never loaded it has no
    # stale pool, and other OpenMP runtimes (LLVM libomp, Intel) handle fork themselves.
    try:
        libgomp = ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD)
    except OSError:
        return
    libgomp.omp_set_num_threads(1)


def _after_fork_in_child():
    global _inherited_openmp
    if _multicore_ran:
        _inherited_openmp = True
        _limit_libgomp_to_calling_thread()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
