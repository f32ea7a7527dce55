"""Only the compiled extensions live here; all metadata is in pyproject.toml."""

from setuptools import setup

ext_modules = []  # the Cython backend's extension (fastgd/_backends/_cython) is listed here

setup(ext_modules=ext_modules)
