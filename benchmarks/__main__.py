"""``python -m benchmarks``: measure asyncmp's two cores against the floor and its peers.

python -m benchmarks                 # full run: 7 rounds, medians, both cores
python -m benchmarks --quick         # one fast round (for scripts/demo --bench)
python -m benchmarks --smoke         # a tiny run that checks the machinery works
python -m benchmarks --modes async_async_1 thread_async --loops asyncio
python -m benchmarks --cores pure    # one core only (the other runs in a child process)
python -m benchmarks --json out.json --chart out.png --markdown docs/performance.md
python -m benchmarks --anatomy       # where one request's time goes, step by step
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncmp

from ._anatomy import ANATOMY_MODES
from ._cores import CORES, merge_child, plan_cores, run_child
from ._harness import Core, LoopName, Settings, run
from ._modes import MODES, SMOKE_MODES
from ._report import SCHEMA, markdown_problem, table, to_json, write_markdown


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="asyncmp against the hand-written floor and peer libraries.",
    )
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--quick", action="store_true", help="one short round (< 1 minute)")
    profile.add_argument("--smoke", action="store_true", help="a tiny run of a few modes")
    parser.add_argument("--rounds", type=int, help="counted rounds (default 7; quick 1)")
    parser.add_argument("--budget", type=float, help="seconds per measurement")
    parser.add_argument(
        "--modes",
        nargs="+",
        metavar="MODE",
        help="modes to run: " + ", ".join(m.id for m in (*MODES, *ANATOMY_MODES)),
    )
    parser.add_argument(
        "--contestants",
        nargs="+",
        metavar="NAME",
        help="only these contestants (the floor always runs), e.g. asyncmp janus",
    )
    parser.add_argument(
        "--loops",
        nargs="+",
        choices=("asyncio", "uvloop"),
        help="event loops (default: both when uvloop is installed)",
    )
    parser.add_argument(
        "--cores",
        nargs="+",
        choices=CORES,
        help="asyncmp's cores to measure (default: both; --smoke: this process's own); "
        "this process measures its own core, a child process the other",
    )
    parser.add_argument(
        "--child",
        action="store_true",
        help=argparse.SUPPRESS,  # run by the parent: this process's core only, JSON, no table
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    parser.add_argument("--chart", type=Path, metavar="PATH", help="draw a PNG chart")
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="write the results table in Markdown between the markers in PATH "
        "(docs/performance.md), or to a new file",
    )
    parser.add_argument(
        "--replot",
        type=Path,
        metavar="JSON",
        help="measure nothing: redraw --chart and --markdown from a JSON file written by --json",
    )
    parser.add_argument(
        "--anatomy",
        action="store_true",
        help="run the anatomy modes instead: a ladder from a bare design to asyncmp",
    )
    parser.add_argument("--nats", action="store_true", help="also run benchmarks/nats_bench.py")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.markdown and markdown_problem(args.markdown):
        print(markdown_problem(args.markdown))
        return 2
    if args.replot:
        if not args.chart and not args.markdown:
            print("--replot needs --chart PATH or --markdown PATH")
            return 2
        doc = json.loads(args.replot.read_text())
        if doc.get("schema") != SCHEMA:
            print(f"{args.replot} has schema {doc.get('schema')}; this version reads {SCHEMA}")
            return 2
        if args.chart:
            from ._chart import draw

            draw(doc, args.chart)
            print(f"wrote {args.chart}")
        if args.markdown:
            write_markdown(doc, args.markdown)
            print(f"wrote the results table into {args.markdown}")
        return 0
    known = {m.id: m for m in (*MODES, *ANATOMY_MODES)}
    if args.modes:
        wanted = args.modes
    elif args.anatomy:
        wanted = [m.id for m in ANATOMY_MODES]
    else:
        wanted = list(SMOKE_MODES) if args.smoke else [m.id for m in MODES]
    unknown = [m for m in wanted if m not in known]
    if unknown:
        print(f"unknown modes: {', '.join(unknown)}; choose from {', '.join(known)}")
        return 2
    modes = [known[m] for m in wanted]

    loops: tuple[LoopName, ...] = tuple(args.loops or ("asyncio", "uvloop"))
    if "uvloop" in loops and importlib.util.find_spec("uvloop") is None:
        print("uvloop is not installed: measuring on asyncio only")
        loops = tuple(x for x in loops if x != "uvloop")
    if args.smoke:
        profile, rounds, budget, calibrate = "smoke", 1, 0.0, False
    elif args.quick:
        profile, rounds, budget, calibrate = "quick", 1, 0.04, True
    else:
        profile, rounds, budget, calibrate = "full", 7, 0.25, True
    active: Core = asyncmp.CORE
    wanted_cores: Sequence[Core] = args.cores or ([active] if args.smoke or args.child else CORES)
    cores = plan_cores([active] if args.child else wanted_cores)
    contestants = frozenset(args.contestants) if args.contestants else None
    # The other core is asyncmp's: no child when the contestants leave asyncmp out.
    child_core = cores.child if contestants is None or "asyncmp" in contestants else None
    settings = Settings(
        rounds=args.rounds or rounds,
        budget=args.budget or budget,
        calibrate=calibrate,
        loops=loops,
        core=cores.here,
        contestants=contestants,
    )

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    on = ", ".join(f"{core} in {where}" for core, where in cores.where.items())
    progress(
        f"asyncmp benchmarks ({profile}): {len(modes)} modes on {', '.join(loops)}, "
        f"{settings.rounds} round(s){' after a warm-up' if calibrate else ''}; cores: {on}"
    )
    t0 = time.perf_counter()
    runs = run(modes, settings, progress)
    if child_core is not None:
        progress(f"measuring the {child_core} core in a child process …")
        child_args = _child_args(args, [m.id for m in modes], loops)
        merge_child(runs, child_core, run_child(child_core, child_args, progress))
    extra: dict[str, Any] = {}
    if args.nats and not args.child:
        extra["nats"] = _run_nats(quick=args.quick or args.smoke, progress=progress)
    seconds = time.perf_counter() - t0

    doc = to_json(runs, settings, profile, seconds, cores.where, extra)
    if args.child:  # the parent prints the table of both cores
        if args.json:
            args.json.write_text(json.dumps(doc) + "\n")
        return 0
    print()
    for core, where in cores.where.items():
        if where.startswith("n/a"):
            print(f"{core} core: {where}")
    print(table(runs))
    if "nats" in extra:
        print("NATS:", json.dumps(extra["nats"], indent=None))
    print(f"measured in {seconds:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.markdown:
        write_markdown(doc, args.markdown)
        print(f"wrote the results table into {args.markdown}")
    if args.chart:
        try:
            from ._chart import draw

            draw(doc, args.chart)
        except ImportError as exc:
            print(f"no chart: {exc} (install the 'bench' extra for matplotlib)")
        else:
            print(f"wrote {args.chart}")
    return 0


def _child_args(
    args: argparse.Namespace, modes: list[str], loops: tuple[LoopName, ...]
) -> list[str]:
    """The command line of the child process: the same measurement, asyncmp and floor only."""
    out = ["--modes", *modes, "--contestants", "asyncmp"]
    if loops:
        out += ["--loops", *loops]
    if args.smoke:
        out.append("--smoke")
    elif args.quick:
        out.append("--quick")
    if args.rounds:
        out += ["--rounds", str(args.rounds)]
    if args.budget:
        out += ["--budget", str(args.budget)]
    if args.quiet:
        out.append("--quiet")
    return out


def _run_nats(quick: bool, progress: Any) -> dict[str, Any]:
    """Run ``benchmarks/nats_bench.py`` (owned by the NATS work) if it exists."""
    if importlib.util.find_spec("benchmarks.nats_bench") is None:
        progress("--nats: benchmarks/nats_bench.py does not exist yet; skipped")
        return {"skipped": "benchmarks/nats_bench.py not present"}
    progress("running the NATS benchmark …")
    try:
        from . import nats_bench

        result: dict[str, float] = nats_bench.run(quick)
    except Exception as exc:  # report, do not lose the rest of the run
        progress(f"--nats failed: {type(exc).__name__}: {exc}")
        return {"skipped": f"failed: {type(exc).__name__}: {exc}"}
    return dict(result)


if __name__ == "__main__":
    sys.exit(main())
