"""Every third-party module asyncmp imports unconditionally is a declared dependency.

A fast guard inside the suite; `scripts/dist/check.py` (run by scripts/test) proves the same
by installing the wheel into bare venvs. Imports nested in functions, ``try`` blocks or
``if TYPE_CHECKING:`` are optional by construction and not counted; `asyncmp.nats` belongs to
the ``nats`` extra and must name it when nats-py is missing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs its backport there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "asyncmp"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def _top_level_imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.parse(path.read_text()).body:  # module level only
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"asyncmp"}


def test_unconditional_imports_are_declared_dependencies() -> None:
    """A bare `pip install asyncmp` brings every module that `import asyncmp.<x>` needs."""
    declared = _names(PROJECT["dependencies"])
    extras = set(PROJECT["optional-dependencies"])
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in extras:
            continue  # a subpackage named after its extra (asyncmp.nats)
        for module in _top_level_imports(path):
            dists = {d.lower() for d in distributions.get(module, [module])}
            if not dists & declared:
                undeclared.append(f"{path.relative_to(ROOT)} imports {module}")
    assert undeclared == []


def test_the_guard_sees_an_undeclared_import(tmp_path: Path) -> None:
    """The scan above does find a module-level third-party import (it is not vacuous)."""
    module = tmp_path / "m.py"
    module.write_text(
        "import os\nimport sniffio\ntry:\n    import trio\nexcept ImportError:\n    pass\n"
    )

    assert _top_level_imports(module) == {"sniffio"}


def test_nats_without_nats_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing asyncmp.nats where nats-py is missing raises ImportError naming the extra."""
    for name in [m for m in sys.modules if m == "nats" or m.startswith(("nats.", "asyncmp.nats"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nats", None)  # what an absent package looks like

    with pytest.raises(ImportError, match=re.escape("pip install 'asyncmp[nats]'")):
        import asyncmp.nats  # noqa: F401
