"""Every example under docs/examples/ runs, as a user would run it, and succeeds.

The examples check their own results (they assert what they print), so running them to a
zero exit status is the guarantee that the documented code works.
"""

from __future__ import annotations

import re
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


# -- the inline snippets of every page ----------------------------------------------------

ROOT = DOCS.parent
NOT_RUNNABLE = re.compile(r"<!-- snippet: not runnable \((?P<why>[^)]+)\) -->\s*$")
SNIPPET = re.compile(r"^```python[^\n]*\n(?P<code>.*?)^```", re.S | re.M)


def snippets(page: Path) -> list[tuple[int, str, str | None]]:
    """The inline ```python blocks of *page*: (line, code, why it is not runnable or None).

    A block that only includes a file (``--8<-- "docs/examples/…"``) is not inline: the file
    is tested on its own. A block is exempt only when the line before it says so, visibly,
    with a reason: ``<!-- snippet: not runnable (reason) -->``."""
    text = page.read_text()
    found = []
    for match in SNIPPET.finditer(text):
        code = match.group("code")
        if all(line.startswith("--8<--") for line in code.strip().splitlines()):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        exempt = NOT_RUNNABLE.match(before)
        line = text.count("\n", 0, match.start()) + 2
        found.append((line, code, exempt.group("why") if exempt else None))
    return found


SNIPPETS = [
    pytest.param(page, line, code, why, id=f"{page.name}:{line}")
    for page in [*PAGES, ROOT / "README.md"]
    for line, code, why in snippets(page)
]


@pytest.mark.subprocess
@pytest.mark.parametrize(("page", "line", "code", "why"), SNIPPETS)
def test_docs_inline_snippet_runs_as_printed(
    page: Path, line: int, code: str, why: str | None, tmp_path: Path
) -> None:
    """Every inline Python snippet of every page (and of the README) runs, exactly as
    printed, in a fresh interpreter, and exits with status 0 — unless it is marked, visibly
    and with its reason, as not runnable."""
    if why is not None:
        pytest.skip(f"marked not runnable: {why}")
    script = tmp_path / f"{page.stem}_{line}.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True, text=True, timeout=50, check=False, cwd=tmp_path,
    )  # fmt: skip

    assert proc.returncode == 0, f"{page.name}:{line} failed:\n{proc.stdout}\n{proc.stderr}"


def test_few_snippets_are_exempt() -> None:
    """Exemptions stay the exception: at most a few per page, and fewer than a fifth of all."""
    exempt = [p for p in SNIPPETS if p.values[3] is not None]
    per_page: dict[str, int] = {}
    for p in exempt:
        per_page[p.values[0].name] = per_page.get(p.values[0].name, 0) + 1  # type: ignore[union-attr]

    assert all(n <= 3 for n in per_page.values()), per_page
    assert len(exempt) * 5 < len(SNIPPETS), (len(exempt), len(SNIPPETS))
