"""The compiled part of the package: the pgoutput decoder and its timestamps, the change assembler, the column
value loaders and the snapshot's COPY row reader (cdc_reader/*.pyx), the snapshot event ids (mappers/eventids.pyx), the
reference state's write loop (mappers/entitywrite.pyx), the snapshot pairing's counts (mappers/paircounts.pyx), and the
store's RowBinary encoder (query/rowbinary.pyx), Cython extension modules.

Everything else about the package is in pyproject.toml; pip (`pip install .`, `pip install -e .`)
runs Cython and the C compiler through the build requirements declared there.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension(module, [module.replace(".", "/") + ".pyx"])
         for module in ("cdc_reader.pgtime", "cdc_reader.pgoutput", "cdc_reader.loaders", "cdc_reader.assembler",
                        "cdc_reader.copyrows", "mappers.eventids", "mappers.entitywrite", "mappers.paircounts",
                        "query.rowbinary")],
        compiler_directives={"language_level": "3"},
    ),
)
