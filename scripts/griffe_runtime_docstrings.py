"""A griffe extension for the API pages: a function decorated with ``spawn_doc`` gets the
docstring its module completes when imported (``asyncmp._serving.spawn_doc``: the text both
``spawn`` functions share is written once), not only the first paragraphs in its source."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe


class RuntimeDocstrings(griffe.Extension):
    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        if not any("spawn_doc" in str(decorator.value) for decorator in func.decorators):
            return
        module = importlib.import_module(func.module.path)
        doc = inspect.getdoc(getattr(module, func.name))
        if doc:
            func.docstring = griffe.Docstring(doc, parent=func)
