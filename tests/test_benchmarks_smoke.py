"""The benchmark machinery runs and writes well-formed JSON (it measures; it asserts no timing).

Each test runs ``python -m benchmarks --smoke`` in a subprocess with a handful of requests
and checks the structure of what it wrote, never a rate or a ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

ROOT = Path(__file__).resolve().parent.parent

MODE_KEYS = {
    "id",
    "title",
    "loop",
    "kind",
    "unit",
    "clients",
    "floor",
    "floor_desc",
    "target",
    "target_met",
    "target_detail",
    "contestants",
}
CONTESTANT_KEYS = {"role", "n", "samples", "median", "value", "ratio", "skipped"}


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "bench.json"
    chart = tmp_path / "bench.png"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--loops", "asyncio", "--json", str(out)]
        + (["--chart", str(chart)] if "--chart" in args else [])
        + [a for a in args if a != "--chart"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert isinstance(doc, dict)
    return cast("dict[str, Any]", doc)


def _entry(doc: dict[str, Any], mode: str, loop: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [
        m for m in doc["modes"] if m["id"] == mode and m["loop"] == loop
    ]
    assert len(matches) == 1, [(m["id"], m["loop"]) for m in doc["modes"]]
    return matches[0]


def _measured(entry: dict[str, Any], name: str) -> dict[str, Any]:
    contestant: dict[str, Any] = entry["contestants"][name]
    assert contestant["skipped"] is None, contestant["skipped"]
    assert contestant["n"] > 0
    assert len(contestant["samples"]) == 1  # --smoke: one round
    assert contestant["value"] > 0
    return contestant


@pytest.mark.subprocess
def test_benchmarks_smoke_writes_the_documented_json(tmp_path: Path) -> None:
    """A smoke run of the channel modes measures asyncmp and the floor and writes every key."""
    doc = _run(
        tmp_path,
        "--modes",
        "async_async_1",
        "thread_async",
        "thread_thread",
        "memory",
        "--contestants",
        "asyncmp",
    )

    assert doc["schema"] == 1
    assert doc["meta"]["profile"] == "smoke"
    assert doc["meta"]["rounds"] == 1
    assert {"python", "platform", "cpus", "versions", "date", "loops"} <= set(doc["meta"])
    assert [(m["id"], m["loop"]) for m in doc["modes"]] == [
        ("async_async_1", "asyncio"),
        ("thread_async", "asyncio"),
        ("thread_thread", "threads"),
        ("memory", "asyncio"),
    ]
    for entry in doc["modes"]:
        assert set(entry) == MODE_KEYS
        assert set(entry["contestants"]) == {"asyncmp", "floor"}  # --contestants filters peers
        for contestant in entry["contestants"].values():
            assert set(contestant) == CONTESTANT_KEYS
        _measured(entry, "asyncmp")
        floor = _measured(entry, "floor")
        assert floor["ratio"] == 1.0
        assert entry["target_met"] in (True, False)  # each of these modes has a target
    memory = _entry(doc, "memory", "asyncio")
    assert memory["kind"] == "memory"
    assert memory["unit"] == "byte"


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("module", "peer", "mode"),
    [
        ("janus", "janus", "async_async_1"),
        ("culsans", "culsans", "async_async_1"),
        ("aiologic", "aiologic", "thread_async"),
        ("pykka", "pykka", "thread_thread"),
    ],
)
def test_benchmarks_smoke_measures_an_installed_peer(
    tmp_path: Path, module: str, peer: str, mode: str
) -> None:
    """A peer library that is installed is measured in the same run as asyncmp and the floor."""
    pytest.importorskip(module)
    doc = _run(tmp_path, "--modes", mode, "--contestants", "asyncmp", peer)

    entry = _entry(doc, mode, "threads" if mode == "thread_thread" else "asyncio")
    assert set(entry["contestants"]) == {"asyncmp", "floor", peer}
    for name in ("asyncmp", "floor", peer):
        _measured(entry, name)
    assert entry["contestants"][peer]["role"] == "peer"


@pytest.mark.subprocess
def test_benchmarks_smoke_draws_a_chart(tmp_path: Path) -> None:
    """With matplotlib installed, --chart writes a PNG file."""
    pytest.importorskip("matplotlib")
    _run(tmp_path, "--modes", "async_async_1", "--contestants", "asyncmp", "--chart")

    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.subprocess
def test_benchmarks_unavailable_mode_is_reported_not_fatal(tmp_path: Path) -> None:
    """A mode whose asyncmp API is missing or failing is reported in the JSON, and the run
    still succeeds (the calloop, Stage and Signaler modes rely on this while they are built)."""
    doc = _run(tmp_path, "--modes", "calloop_timers", "async_async_1", "--contestants", "asyncmp")

    calloop = _entry(doc, "calloop_timers", "threads")["contestants"]["asyncmp"]
    assert (calloop["skipped"] is None) == (calloop["value"] is not None)
    _measured(_entry(doc, "async_async_1", "asyncio"), "asyncmp")


@pytest.mark.subprocess
def test_benchmarks_anatomy_measures_every_rung(tmp_path: Path) -> None:
    """--anatomy runs the ladder from a bare design to asyncmp (1 and 64 clients): every rung,
    asyncmp and the floor are measured in the same run (each checks every reply), and the
    ladder claims no performance target."""
    doc = _run(tmp_path, "--anatomy")

    assert [(m["id"], m["loop"]) for m in doc["modes"]] == [
        ("anatomy_1", "asyncio"),
        ("anatomy_64", "asyncio"),
    ]
    rungs = {
        "1 bare",
        "2 + async API",
        "3 + lock",
        "4 + loop look-up",
        "5 + request object",
    }
    for entry in doc["modes"]:
        assert set(entry["contestants"]) == rungs | {"asyncmp", "floor"}
        for name in entry["contestants"]:
            _measured(entry, name)
        assert entry["target_met"] is None
