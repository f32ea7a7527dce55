"""Only the compiled extensions live here; all metadata is in pyproject.toml."""

import os
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# the cores this process may run on: the three extensions are translated and compiled side by side
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

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


# Every build of the kernels: no fused multiply-add the source does not write (GCC contracts
# by default, clang within expressions) and no errno from sqrt (which keeps GCC from
# vectorising it). With these, the baseline and the ISA builds round identically.
FLOAT_FLAGS = ["-ffp-contract=off", "-fno-math-errno"]
# The kernels again for a newer x86-64 level, chosen at run time (fastgd/_backends/_isa.py).
ISA_BUILDS = {"x86_64_v4": ["-march=x86-64-v4"]}
# Code layout of the kernels (GCC; other compilers fail the accepts() probe and build without).
# Every loop head on a 32-byte boundary (the params make GCC align inner loops too, whatever its
# guess of their trip count): otherwise a hot loop's placement follows the size of all the code
# before it, and the same loop (identical instructions) ran ~5-10 % slower straddling a 64-byte
# line than within one (Intel family 6 model 207, bench.same_process). A 32-byte boundary keeps
# the hot loops of up to 32 bytes inside one line with half the executed padding of a 64-byte
# one: with 64, the CSR full-batch epochs ran 3-12 % slower than before the rules were shared
# (5-6 of 40 Cython workloads flagged in two runs; 0 of 40 with 32). And no inlining of the
# once-called per-epoch kernels (_epoch_csr_scaled_sgd, ...) into the large epoch functions,
# where register pressure put inner-loop bounds on the stack.
LAYOUT_FLAGS = ["-falign-loops=32", "--param=align-loop-iterations=1", "--param=align-threshold=65536",
                "-fno-inline-functions-called-once"]


def accepts(compiler, flags):
    """True when ``compiler`` compiles a C file with ``flags`` (ISA levels: GCC >= 11, clang >= 12,
    x86-64 targets only; MSVC ignores unknown flags with a warning, so it is never asked)."""
    if compiler.compiler_type == "msvc":
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "flags_test.c")
        with open(src, "w") as f:
            f.write("int main(void) { return 0; }\n")
        try:
            compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        except Exception:  # CompileError: an unknown flag or target
            return False
    return True


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:  # the three extensions compile side by side (``--parallel N`` still rules)
            self.parallel = CORES

    def build_extensions(self):
        compile_args, link_args = openmp_flags(self.compiler)
        float_flags = FLOAT_FLAGS if accepts(self.compiler, FLOAT_FLAGS) else []
        if accepts(self.compiler, float_flags + LAYOUT_FLAGS):
            float_flags = float_flags + LAYOUT_FLAGS
        kept = []
        for ext in self.extensions:
            level = ext.name.rsplit("_kernels_", 1)[-1] if "._kernels_" in ext.name else None
            if level is not None:
                if not accepts(self.compiler, ISA_BUILDS[level] + float_flags):
                    print(f"fastgd: the compiler cannot build for {level}; the baseline kernels serve every CPU")
                    continue
                ext.extra_compile_args += ISA_BUILDS[level]
            if ext.name.startswith("fastgd._backends._cython._kernels"):
                ext.extra_compile_args += float_flags
            ext.extra_compile_args += compile_args
            ext.extra_link_args += link_args
            kept.append(ext)
        self.extensions = kept
        super().build_extensions()


def kernels_extension(suffix=""):
    return Extension(
        f"fastgd._backends._cython._kernels{suffix}",
        [f"fastgd/_backends/_cython/_kernels{suffix}.pyx"],
        include_dirs=[np.get_include()],
        extra_compile_args=["-O3"],
    )


ext_modules = cythonize(
    [
        kernels_extension(),
        *(kernels_extension(f"_{level}") for level in ISA_BUILDS),
        Extension(
            "fastgd._backends._cython._sgd_kernels",
            ["fastgd/_backends/_cython/_sgd_kernels.pyx"],
            extra_compile_args=["-O3"],
        ),
    ],
    compiler_directives={"language_level": 3},
    nthreads=CORES,  # Cython translates the three sources side by side
)

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
