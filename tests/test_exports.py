"""The public surface: `__all__` matches what the package exports, handles users should not
construct are final, and every public name has one public path, the one tracebacks name."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from typing import Any

import pytest

import asyncmp

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs its backport there
    import tomli as tomllib

PUBLIC_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(asyncmp.__path__, "asyncmp.")
    if not any(part.startswith("_") for part in m.name.split("."))
)


def _isort_key(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_lists_exactly_the_public_names_of_asyncmp() -> None:
    """`asyncmp.__all__` is a sorted tuple naming every public attribute that is not a module
    (sorted as ruff sorts it: constants, then classes, then functions)."""
    public = {
        name
        for name, value in vars(asyncmp).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }

    assert isinstance(asyncmp.__all__, tuple)
    assert set(asyncmp.__all__) == public
    assert list(asyncmp.__all__) == sorted(asyncmp.__all__, key=_isort_key)


def test_dir_shows_only_the_public_names() -> None:
    """`dir(asyncmp)` (and so tab completion) shows the public names, the public submodules
    and `__version__`: no helper, no `annotations`, nothing private."""
    submodules = {m.split(".")[1] for m in PUBLIC_MODULES}

    assert set(dir(asyncmp)) == {*asyncmp.__all__, *submodules, "__version__"}
    assert "annotations" not in vars(asyncmp)


def test_version_comes_from_the_package_metadata() -> None:
    """`asyncmp.__version__` is the installed distribution's version, which is the one in
    pyproject.toml (read from the metadata, so it cannot drift from a copy)."""
    import importlib.metadata
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["version"]

    assert asyncmp.__version__ == importlib.metadata.version("asyncmp") == declared


def test_the_public_modules_are_flat_namespaces() -> None:
    """One shape for the whole package: `asyncmp` and five public submodules, each a flat
    namespace with no public submodule of its own (dharma's `bridge.py` … `timer.py` once
    published every `asyncmp.dharma` name a second time)."""
    assert PUBLIC_MODULES == [
        "asyncmp.calloop",
        "asyncmp.dharma",
        "asyncmp.nats",
        "asyncmp.task",
        "asyncmp.thread",
    ]


def _published(module_name: str) -> dict[str, Any]:
    """The classes, functions and other asyncmp-made objects *module_name* lists in its
    `__all__`, by name (type aliases, ints and strings have no module of their own)."""
    module = importlib.import_module(module_name)
    published = {}
    for name in module.__all__:
        obj = getattr(module, name)
        defined_in = getattr(obj, "__module__", None)
        if isinstance(defined_in, str) and defined_in.startswith("asyncmp"):
            published[name] = obj
    return published


@pytest.mark.parametrize("module_name", ["asyncmp", *PUBLIC_MODULES])
def test_every_public_name_reports_the_module_that_publishes_it(module_name: str) -> None:
    """One public path per name: what a public module lists in `__all__` names that module
    as its `__module__` (so tracebacks, reprs and the docs show the path users import, not
    a private module), and no other public module lists the same object."""
    try:
        published = _published(module_name)
    except ImportError as exc:  # an optional extra that is not installed
        pytest.skip(f"{module_name}: {exc}")
    others: dict[int, str] = {}
    for other in ["asyncmp", *PUBLIC_MODULES]:
        if other != module_name:
            try:
                others.update({id(obj): f"{other}.{n}" for n, obj in _published(other).items()})
            except ImportError:
                continue
    for name, obj in published.items():
        assert obj.__module__ == module_name, name
        assert id(obj) not in others, (name, others.get(id(obj)))


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_module_all_names_exist(module_name: str) -> None:
    """Every public module has an `__all__` and every name in it exists."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # an optional extra that is not installed
        pytest.skip(f"{module_name}: {exc}")

    names: Any = getattr(module, "__all__", None)

    assert names is not None, f"{module_name} has no __all__"
    for name in names:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name}"


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="typing.final marks a class at run time (__final__) from Python 3.11 on; "
    "on 3.10 the mark is for type checkers only",
)
def test_channel_handles_are_final() -> None:
    """Library-made handles cannot be subclassed (they are @final at runtime too)."""
    for cls in (asyncmp.Client, asyncmp.Server, asyncmp.ReplyContext, asyncmp.PendingReply):
        assert getattr(cls, "__final__", False), cls
