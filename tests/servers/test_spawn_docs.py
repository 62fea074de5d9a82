"""Both ``spawn`` functions document themselves in full, from one text: what they share —
the life of the loop, its failures, the arguments, what they return and raise — is written
once (``_serving.spawn_doc``), and ``help()`` and the Servers page show each one whole."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from asyncmp import task, thread

SPAWN_FUNCS = (task.spawn, thread.spawn)
SPAWNS = [pytest.param(task.spawn, id="task"), pytest.param(thread.spawn, id="thread")]


def _section(doc: str, title: str) -> str:
    return doc.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]


@pytest.mark.parametrize("spawn", SPAWNS)
def test_spawn_docstring_documents_every_parameter_in_order(spawn: Callable[..., Any]) -> None:
    """Each parameter of the signature has its ``Args`` entry, in the signature's order, and
    nothing else has one: the shared entries and the face's own are merged right."""
    doc = inspect.getdoc(spawn)
    assert doc is not None

    documented = re.findall(r"^    (\w+): ", _section(doc, "Args"), re.MULTILINE)

    assert documented == list(inspect.signature(spawn).parameters)


@pytest.mark.parametrize("spawn", SPAWNS)
def test_spawn_docstring_holds_its_own_words_and_the_shared_ones(
    spawn: Callable[..., Any],
) -> None:
    """The first paragraphs are the face's own (what tools that read the source show), the
    shared life cycle and failures follow, then Returns and Raises; no line is wider than
    the text was wrapped to."""
    doc = inspect.getdoc(spawn)
    assert doc is not None
    own = doc.split("\n\n", 1)[0]

    assert own.startswith("Start a server whose dispatch loop runs ")
    assert "The loop calls the handler's ``init``" in doc
    assert "then *on_error* decides" in doc
    assert _section(doc, "Returns").strip()
    assert "Exception: whatever ``make_handler`` raised" in _section(doc, "Raises")
    assert max(len(line) for line in doc.splitlines()) <= 88


def test_each_spawn_says_what_is_its_own() -> None:
    """What differs stays with its face: the task group and cancellation for a task, the
    daemon thread and the thread's name for a thread."""
    task_doc, thread_doc = (" ".join((inspect.getdoc(s) or "").split()) for s in SPAWN_FUNCS)

    assert "task_group" in task_doc
    assert "task_group" not in thread_doc
    assert "daemon thread" in thread_doc
    assert "asyncmp-server-N" in thread_doc
    assert "cancellation, ``KeyboardInterrupt``" in task_doc
    assert "cancellation" not in thread_doc.split("Only an ``Exception`` counts")[1]
