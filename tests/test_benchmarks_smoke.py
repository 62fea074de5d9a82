"""The benchmark machinery runs and writes well-formed JSON (it measures; it asserts no timing).

Most tests run ``python -m benchmarks --smoke`` in a subprocess with a handful of requests and
check the structure of what it wrote, never a rate or a ratio measured. The last ones check
the arithmetic of ratios and target verdicts on made-up samples, in this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

import asyncmp

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
    "targets",
    "contestants",
}
CONTESTANT_KEYS = {
    "role",
    "core",
    "n",
    "samples",
    "median",
    "value",
    "ratio",
    "own_floor",
    "skipped",
    "target",
    "target_met",
    "target_detail",
}

COMPILED_BUILT = importlib.util.find_spec("asyncmp._speedups") is not None


def _run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """Run a smoke benchmark; its JSON document and what it printed."""
    out = tmp_path / "bench.json"
    chart = tmp_path / "bench.png"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--loops", "asyncio", "--json", str(out)]
        + (["--chart", str(chart)] if "--chart" in args else [])
        + [a for a in args if a != "--chart"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert isinstance(doc, dict)
    return cast("dict[str, Any]", doc), proc.stdout


def _compiled_parent_env() -> dict[str, str]:
    """The environment of a parent process on the compiled core."""
    if not COMPILED_BUILT:
        pytest.skip("the compiled core is not built: there is no other core to measure")
    env = dict(os.environ)
    env.pop("ASYNCMP_NO_EXTENSIONS", None)
    return env


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
    assert contestant["ratio"] > 0
    return contestant


@pytest.mark.subprocess
def test_benchmarks_smoke_writes_the_documented_json(tmp_path: Path) -> None:
    """A smoke run of the channel modes measures asyncmp (on this process's core: --smoke
    measures one core) and the floor, writes every key, and gives asyncmp's core a verdict on
    its target in each of these modes."""
    doc, _ = _run(
        tmp_path,
        "--modes",
        "async_async_1",
        "thread_async",
        "thread_thread",
        "memory",
        "--contestants",
        "asyncmp",
    )

    assert doc["schema"] == 2
    assert doc["meta"]["profile"] == "smoke"
    assert doc["meta"]["rounds"] == 1
    assert doc["meta"]["core"] == asyncmp.CORE  # the child inherits this process's core
    assert doc["meta"]["cores"] == {asyncmp.CORE: "this process"}
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
        mine = _measured(entry, "asyncmp")
        floor = _measured(entry, "floor")
        assert floor["ratio"] == 1.0
        assert (mine["core"], floor["core"]) == (asyncmp.CORE, None)
        assert mine["own_floor"] is None  # measured here: against this process's floor
        assert set(entry["targets"]) == {"compiled", "pure"}  # each of these modes has one
        assert mine["target"] == entry["targets"][asyncmp.CORE]["text"]
        assert mine["target_met"] in (True, False)
        assert floor["target"] is floor["target_met"] is None
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
    doc, _ = _run(tmp_path, "--modes", mode, "--contestants", "asyncmp", peer)

    entry = _entry(doc, mode, "threads" if mode == "thread_thread" else "asyncio")
    assert set(entry["contestants"]) == {"asyncmp", "floor", peer}
    for name in ("asyncmp", "floor", peer):
        _measured(entry, name)
    assert entry["contestants"][peer]["role"] == "peer"


@pytest.mark.subprocess
def test_benchmarks_smoke_draws_a_chart(tmp_path: Path) -> None:
    """With matplotlib installed, --chart writes a PNG file (rate and memory panels)."""
    pytest.importorskip("matplotlib")
    _run(tmp_path, "--modes", "async_async_1", "memory", "--contestants", "asyncmp", "--chart")

    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.subprocess
def test_benchmarks_unavailable_mode_is_reported_not_fatal(tmp_path: Path) -> None:
    """A mode whose asyncmp API is missing or failing is reported in the JSON, and the run
    still succeeds (the calloop, Stage and Signaler modes rely on this while they are built)."""
    doc, _ = _run(
        tmp_path, "--modes", "calloop_timers", "async_async_1", "--contestants", "asyncmp"
    )

    calloop = _entry(doc, "calloop_timers", "threads")["contestants"]["asyncmp"]
    assert (calloop["skipped"] is None) == (calloop["value"] is not None)
    _measured(_entry(doc, "async_async_1", "asyncio"), "asyncmp")


@pytest.mark.subprocess
def test_benchmarks_anatomy_measures_every_rung(tmp_path: Path) -> None:
    """--anatomy runs the ladder from a bare design to asyncmp (1 and 64 clients): every rung,
    asyncmp and the floor are measured in the same run (each checks every reply), and the
    ladder claims no performance target."""
    doc, _ = _run(tmp_path, "--anatomy")

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
            assert _measured(entry, name)["target_met"] is None
        assert entry["targets"] == {}


@pytest.mark.subprocess
def test_benchmarks_measure_both_cores_in_one_run(tmp_path: Path) -> None:
    """--cores compiled pure: this process measures the compiled core as "asyncmp", a child
    process the pure core as "asyncmp (pure)", each against the floor of its own process,
    each with its own core's verdict, in one table and one JSON document."""
    doc, printed = _run(
        tmp_path,
        "--cores",
        "compiled",
        "pure",
        "--modes",
        "async_async_1",
        "memory",
        "--contestants",
        "asyncmp",
        env=_compiled_parent_env(),
    )

    assert doc["meta"]["core"] == "compiled"
    assert doc["meta"]["cores"] == {"compiled": "this process", "pure": "child process"}
    for entry in doc["modes"]:
        assert list(entry["contestants"]) == ["asyncmp", "asyncmp (pure)", "floor"]
        compiled, pure = _measured(entry, "asyncmp"), _measured(entry, "asyncmp (pure)")
        assert (compiled["core"], pure["core"]) == ("compiled", "pure")
        assert compiled["own_floor"] is None
        own = pure["own_floor"]
        assert own["n"] > 0
        assert len(own["samples"]) == 1
        if entry["kind"] == "rate":
            expected = (pure["n"] / pure["samples"][0]) / (own["n"] / own["samples"][0])
        else:
            expected = pure["samples"][0] / own["samples"][0]
        assert pure["ratio"] == pytest.approx(expected)
        for core, contestant in (("compiled", compiled), ("pure", pure)):
            assert contestant["target"] == entry["targets"][core]["text"]
            assert contestant["target_met"] in (True, False)
    assert "asyncmp (compiled)" in printed
    assert "asyncmp (pure)" in printed
    assert "compiled core: " in printed
    assert "pure core: " in printed


@pytest.mark.subprocess
def test_benchmarks_measure_the_other_core_alone_in_a_child(tmp_path: Path) -> None:
    """--cores pure from a process on the compiled core measures asyncmp only in the child
    process (ASYNCMP_NO_EXTENSIONS=1), and the floor in both."""
    doc, _ = _run(
        tmp_path,
        "--cores",
        "pure",
        "--modes",
        "async_async_1",
        "thread_async",
        "--contestants",
        "asyncmp",
        env=_compiled_parent_env(),
    )

    assert doc["meta"]["core"] == "compiled"
    assert doc["meta"]["cores"] == {"pure": "child process"}
    for entry in doc["modes"]:
        assert list(entry["contestants"]) == ["asyncmp (pure)", "floor"]
        pure = _measured(entry, "asyncmp (pure)")
        assert pure["core"] == "pure"
        assert pure["own_floor"]["samples"]
        assert pure["target_met"] in (True, False)
        _measured(entry, "floor")


BEGIN = "<!-- results table: generated by python -m benchmarks --markdown; do not edit -->"
END = "<!-- end of results table -->"


@pytest.mark.subprocess
def test_benchmarks_markdown_fills_the_docs_results_table(tmp_path: Path) -> None:
    """--markdown replaces what lies between the page's two markers with the run's table (one
    row per mode and loop) and leaves the rest of the page alone; --replot writes the same
    table from the JSON."""
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nbefore\n\n{BEGIN}\nthe old table\n{END}\n\nafter\n")

    doc, _ = _run(
        tmp_path,
        "--modes",
        "async_async_1",
        "memory",
        "--contestants",
        "asyncmp",
        "--markdown",
        str(page),
    )

    text = page.read_text()
    assert text.startswith(f"# Title\n\nbefore\n\n{BEGIN}\n")
    assert text.endswith(f"\n{END}\n\nafter\n")
    assert "the old table" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| mode | loop | floor | compiled | pure |")
    assert [r.split(" | ")[0:2] for r in rows[1:]] == [
        ["| " + m["title"], m["loop"]] for m in doc["modes"]
    ]
    again = tmp_path / "again.md"
    command = [sys.executable, "-m", "benchmarks", "--replot", str(tmp_path / "bench.json")]
    replot = subprocess.run(
        [*command, "--markdown", str(again)],
        cwd=ROOT, capture_output=True, text=True, timeout=50, check=False,
    )  # fmt: skip
    assert replot.returncode == 0, replot.stdout + replot.stderr
    assert again.read_text() == text[text.index(BEGIN) : text.index(END) + len(END)] + "\n"


@pytest.mark.subprocess
def test_benchmarks_markdown_into_a_page_without_markers_is_refused_first(
    tmp_path: Path,
) -> None:
    """--markdown into an existing file without the markers fails before measuring anything
    (not after a run of minutes), and leaves the file as it was."""
    page = tmp_path / "page.md"
    page.write_text("# A page without the markers\n")

    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--markdown", str(page)],
        cwd=ROOT, capture_output=True, text=True, timeout=50, check=False,
    )  # fmt: skip

    assert proc.returncode == 2
    assert "has no results table markers" in proc.stdout
    assert "round 1" not in proc.stdout
    assert page.read_text() == "# A page without the markers\n"


# -- the arithmetic, on made-up samples ----------------------------------------------------------


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ``benchmarks`` package (it is not installed: it lives beside ``tests``)."""
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks._anatomy
    import benchmarks._cores
    import benchmarks._harness
    import benchmarks._modes

    return benchmarks


def _mode_run(bench: Any, mode_id: str, loop: str, **results: Any) -> Any:
    """A ModeRun of *mode_id* with the given Results (one per keyword, in order)."""
    mode = next(m for m in bench._modes.MODES if m.id == mode_id)
    return bench._harness.ModeRun(mode, loop, dict(results))


def _result(bench: Any, name: str, role: str, per_second: float, core: Any = None) -> Any:
    """A Result of one round: 1,000 operations at *per_second*."""
    return bench._harness.Result(name, role, n=1_000, samples=[1_000 / per_second], core=core)


def test_ratio_of_a_child_contestant_is_against_its_own_floor(bench: Any) -> None:
    """A contestant measured in the child process is divided by the child's floor, never by
    this process's floor (which ran at another moment, maybe under another load)."""
    child = _result(bench, "asyncmp (pure)", "asyncmp", 50_000, core="pure")
    child.own_floor = _result(bench, "floor", "floor", 25_000)
    run = _mode_run(
        bench,
        "async_async_1",
        "asyncio",
        asyncmp=_result(bench, "asyncmp", "asyncmp", 100_000, core="compiled"),
        floor=_result(bench, "floor", "floor", 100_000),
        **{"asyncmp (pure)": child},
    )

    assert bench._modes.ratio(run, "asyncmp") == pytest.approx(1.0)
    assert bench._modes.ratio(run, "asyncmp (pure)") == pytest.approx(2.0)


def test_targets_are_judged_per_core(bench: Any) -> None:
    """In one run, each core is held to its own target: with 1 client the compiled core must
    reach 1.0 × floor and 1.5 × every peer, the pure core 0.8 × floor and be ahead of every
    peer — so 1.2 × floor with a peer at 0.9 is short for the first and met for the second."""
    pure = _result(bench, "asyncmp (pure)", "asyncmp", 120_000, core="pure")
    pure.own_floor = _result(bench, "floor", "floor", 100_000)
    run = _mode_run(
        bench,
        "async_async_1",
        "uvloop",
        asyncmp=_result(bench, "asyncmp", "asyncmp", 120_000, core="compiled"),
        floor=_result(bench, "floor", "floor", 100_000),
        aiologic=_result(bench, "aiologic", "peer", 90_000),
        **{"asyncmp (pure)": pure},
    )

    compiled_verdict = bench._modes.evaluate(run, [run], "asyncmp")
    pure_verdict = bench._modes.evaluate(run, [run], "asyncmp (pure)")

    assert compiled_verdict.met is False
    assert "aiologic" in compiled_verdict.detail
    assert pure_verdict.met is True
    assert bench._modes.evaluate(run, [run], "aiologic") is None  # peers have no target


def test_ten_thousand_clients_compare_with_the_same_cores_64_client_rate(bench: Any) -> None:
    """The compiled core's 10,000-client target reads the compiled core's own 64-client rate
    on the same loop (not the pure core's, nor another loop's); without a 64-client run the
    verdict is undecided, not met."""

    def pair(mode_id: str, loop: str, compiled: float, pure: float) -> Any:
        child = _result(bench, "asyncmp (pure)", "asyncmp", pure, core="pure")
        child.own_floor = _result(bench, "floor", "floor", 100_000)
        return _mode_run(
            bench,
            mode_id,
            loop,
            asyncmp=_result(bench, "asyncmp", "asyncmp", compiled, core="compiled"),
            floor=_result(bench, "floor", "floor", 100_000),
            **{"asyncmp (pure)": child},
        )

    # 10,000 clients at 0.95 × floor; the compiled core made 200,000/s with 64 clients on
    # asyncio (0.5 × of that: short) and 100,000/s on uvloop (0.95 ×: met).
    big = pair("async_async_10k", "asyncio", 95_000, 95_000)
    runs = [
        pair("async_async_64", "asyncio", 200_000, 100_000),
        pair("async_async_64", "uvloop", 100_000, 400_000),
        big,
    ]
    short = bench._modes.evaluate(big, runs, "asyncmp")
    assert short.met is False
    assert "64-client rate" in short.detail
    on_uvloop = pair("async_async_10k", "uvloop", 95_000, 95_000)
    runs.append(on_uvloop)
    assert bench._modes.evaluate(on_uvloop, runs, "asyncmp").met is True

    alone = pair("async_async_10k", "asyncio", 95_000, 95_000)
    undecided = bench._modes.evaluate(alone, [alone], "asyncmp")
    assert undecided.met is None
    assert "not measured" in undecided.detail


def test_a_failed_child_is_reported_in_every_mode_it_owed(bench: Any) -> None:
    """When the child process fails, each mode that has an asyncmp contestant reports the
    other core as skipped with the reason; the modes without asyncmp are left alone."""
    run = _mode_run(bench, "async_async_1", "asyncio")
    anatomy = next(m for m in bench._anatomy.ANATOMY_MODES if m.id == "anatomy_1")
    without = bench._harness.ModeRun(
        bench._harness.Mode("none", "no asyncmp", ("asyncio",), anatomy.contestants[:1]),
        "asyncio",
        {},
    )

    bench._cores.merge_child([run, without], "pure", "failed: the child process exited with 1")

    skipped = run.results["asyncmp (pure)"]
    assert (skipped.core, skipped.skipped) == ("pure", "failed: the child process exited with 1")
    assert without.results == {}


@pytest.mark.subprocess
def test_a_child_that_fails_says_why(bench: Any) -> None:
    """A child process that exits with an error gives its exit status and its last output
    lines, which the parent reports instead of that core's results."""
    lines: list[str] = []

    outcome = bench._cores.run_child("pure", ["--modes", "no_such_mode"], lines.append)

    assert isinstance(outcome, str)
    assert outcome.startswith("failed: the child process exited with 2")
    assert "no_such_mode" in outcome
    assert any(line.startswith("[pure core] ") for line in lines)


def test_the_compiled_core_is_measured_only_where_it_is_built(bench: Any) -> None:
    """Without asyncmp._speedups, asking for both cores measures the pure one here and says
    why the compiled one is missing; asking for the compiled one alone measures the pure one
    rather than nothing. With it, the process's own core is measured here, the other in a
    child."""
    plan = bench._cores.plan_cores
    missing = plan(["compiled", "pure"], active="pure", built=False)
    assert (missing.here, missing.child) == ("pure", None)
    assert missing.where["compiled"].startswith("n/a (")
    alone = plan(["compiled"], active="pure", built=False)
    assert (alone.here, alone.child) == ("pure", None)
    both = plan(["compiled", "pure"], active="compiled", built=True)
    assert (both.here, both.child) == ("compiled", "pure")
    other = plan(["compiled"], active="pure", built=True)
    assert (other.here, other.child) == (None, "compiled")
