"""Builds asyncmp's optional compiled core next to the pure-Python package that
pyproject.toml describes: the channel's one source, ``src/asyncmp/_channel_py.py``, compiled by
Cython into ``asyncmp._channel_c`` (typed by ``_channel_c.pxd``), and the hand-written
primitives it uses, ``asyncmp._speedups``.

- Set ASYNCMP_NO_EXTENSIONS=1 to build the pure-Python wheel (py3-none-any).
- Without a C compiler the extension is skipped (`optional=True`) and asyncmp runs on its
  pure-Python core; nothing else changes.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("ASYNCMP_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    # Cython does not see the augmenting .pxd (nor the primitives' declarations) as a
    # dependency of the channel's C file: after a change to one of them alone it would compile
    # the C file of the old declarations. Such a C file is removed, to be generated again.
    generated = "src/asyncmp/_channel_py.c"
    declarations = ("src/asyncmp/_channel_c.pxd", "src/asyncmp/_speedups.pxd")
    if os.path.exists(generated) and any(
        os.path.getmtime(path) > os.path.getmtime(generated) for path in declarations
    ):
        os.remove(generated)

    ext_modules = cythonize(
        [
            Extension("asyncmp._speedups", ["src/asyncmp/_speedups.pyx"]),
            Extension("asyncmp._channel_c", ["src/asyncmp/_channel_py.py"]),
        ],
        compiler_directives={
            "language_level": "3",
            "binding": True,  # functions with __code__, signatures, docstrings: as in Python
            "embedsignature": False,
            "auto_pickle": False,  # nothing of the channel is picklable
            # Annotations are for type checkers: C types come from the .pxd and
            # @cython.locals, so that arguments are checked alike on both cores.
            "annotation_typing": False,
        },
    )
    for extension in ext_modules:
        extension.optional = True  # (cythonize does not carry the flag over)

setup(ext_modules=ext_modules)
