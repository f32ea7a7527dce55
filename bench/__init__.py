"""fastgd benchmarks: kernel-level pytest-benchmark suite and the side-by-side comparison.

Not part of the installed package and not collected by ``python -m pytest`` at the repository
root (``testpaths`` names ``tests`` and ``fastgd`` only). See ``bench/README.md``.
"""
