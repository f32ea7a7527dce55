# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
# The kernels of _kernels.pyx, compiled for x86-64-v4 (setup.py; chosen at import by
# fastgd._backends._isa). Only the instruction set differs: results are bit-identical.
include "_kernels.pyx"
