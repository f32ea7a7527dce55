"""Only the compiled extensions live here; all metadata is in pyproject.toml."""

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

ext_modules = cythonize(
    [
        Extension(
            "fastgd._backends._cython._kernels",
            ["fastgd/_backends/_cython/_kernels.pyx"],
            include_dirs=[np.get_include()],
            extra_compile_args=["-O3"],
        )
    ],
    compiler_directives={"language_level": 3},
)

setup(ext_modules=ext_modules)
