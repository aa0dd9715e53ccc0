"""The compiled part of the package: the pgoutput decoder, a Cython extension module.

Everything else about the package is in pyproject.toml; pip (`pip install .`, `pip install -e .`)
runs Cython and the C compiler through the build requirements declared there.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("cdc_reader.pgoutput", ["cdc_reader/pgoutput.pyx"])],
        compiler_directives={"language_level": "3"},
    ),
)
