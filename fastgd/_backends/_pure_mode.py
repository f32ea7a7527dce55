"""A stand-in for the ``cython`` module when Cython is not installed.

:mod:`fastgd._backends._rules` and :mod:`fastgd._backends._sgd_rules` are written in Cython's
pure-Python mode: the Cython extensions include them and compile their decorated functions to
inline C, while the Numba engines import them as ordinary Python. Their decorators and type names only need to exist
for that import; Cython is a build requirement, not a run-time one, so this module supplies them
as no-ops when Cython is absent.
"""


def _decorator(func=None, **_options):
    return func if func is not None else (lambda f: f)


class cython:  # noqa: N801 - it stands in for the module of that name
    compiled = False
    double = float
    float = float
    longlong = int
    long = int
    int = int
    Py_ssize_t = int
    void = None
    p_double = object

    @staticmethod
    def pointer(_type):
        return object

    @staticmethod
    def fused_type(*_types):
        return object
    cfunc = staticmethod(_decorator)
    inline = staticmethod(_decorator)
    nogil = staticmethod(_decorator)

    @staticmethod
    def declare(_type, value=None):
        return value

    @staticmethod
    def exceptval(*_args, **_options):
        return lambda f: f
