"""Only the compiled extensions live here; all metadata is in pyproject.toml."""

import os
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_TEST = "#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def openmp_flags(compiler):
    """Compile and link flags for OpenMP, or none when this compiler cannot build with it
    (the kernels' parallel loops then run serially)."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_test.c")
        with open(src, "w") as f:
            f.write(OPENMP_TEST)
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, os.path.join(tmp, "omp_test"), extra_postargs=["-fopenmp"])
        except Exception:  # CompileError / LinkError: e.g. Apple clang without libomp
            print("fastgd: OpenMP not available; building the Cython kernels without it (serial)")
            return [], []
    return ["-fopenmp"], ["-fopenmp"]


class BuildExt(build_ext):
    def build_extensions(self):
        compile_args, link_args = openmp_flags(self.compiler)
        for ext in self.extensions:
            ext.extra_compile_args += compile_args
            ext.extra_link_args += link_args
        super().build_extensions()


ext_modules = cythonize(
    [
        Extension(
            "fastgd._backends._cython._kernels",
            ["fastgd/_backends/_cython/_kernels.pyx"],
            include_dirs=[np.get_include()],
            extra_compile_args=["-O3"],
        ),
        Extension(
            "fastgd._backends._cython._sgd_kernels",
            ["fastgd/_backends/_cython/_sgd_kernels.pyx"],
            extra_compile_args=["-O3"],
        ),
    ],
    compiler_directives={"language_level": 3},
)

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
