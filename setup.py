"""Builds asyncmp's optional compiled core, asyncmp._speedups (Cython), next to the pure-Python
package that pyproject.toml describes.

- Set ASYNCMP_NO_EXTENSIONS=1 to build the pure-Python wheel (py3-none-any).
- Without a C compiler the extension is skipped (`optional=True`) and asyncmp runs on its
  pure-Python core; nothing else changes.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if not os.environ.get("ASYNCMP_NO_EXTENSIONS"):
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [Extension("asyncmp._speedups", ["src/asyncmp/_speedups.pyx"])],
        compiler_directives={"language_level": "3"},
    )
    for extension in ext_modules:
        extension.optional = True  # (cythonize does not carry the flag over)

setup(ext_modules=ext_modules)
