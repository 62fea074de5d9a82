"""Every example under docs/examples/ runs, as a user would run it, and succeeds.

The examples check their own results (they assert what they print), so running them to a
zero exit status is the guarantee that the documented code works.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "docs" / "examples").glob("*.py"))


@pytest.mark.subprocess
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_docs_example_runs_to_success(path: Path) -> None:
    """The documented example exits with status 0 within its time bound."""
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=50, check=False
    )

    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout}\n{proc.stderr}"


DOCS = Path(__file__).resolve().parent.parent / "docs"


def directives(page: Path) -> list[tuple[str, str]]:
    """The ``::: object`` directives of *page*, each with its indented options block."""
    found = []
    lines = page.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("::: "):
            options = []
            for following in lines[i + 1 :]:
                if not following.startswith("    "):
                    break
                options.append(following.strip())
            found.append((line[4:].strip(), "\n".join(options)))
    return found


PAGES = sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_docs_page_shows_no_private_object_as_api(page: Path) -> None:
    """A private object (its own name starts with ``_``) is never rendered as API: no
    heading, no table-of-contents entry, no constructor signature. It may only lend its
    members to a public heading (``show_root_heading: false`` and
    ``show_root_toc_entry: false``), as the blocking faces do."""
    for target, options in directives(page):
        if target.rsplit(".", 1)[-1].startswith("_"):
            assert "show_root_heading: false" in options, f"{page.name}: ::: {target}"
            assert "show_root_toc_entry: false" in options, f"{page.name}: ::: {target}"
