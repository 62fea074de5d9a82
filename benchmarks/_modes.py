"""The benchmark modes, their contestants and their targets (listed in docs/design.md)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import _asyncmp_modes as amp, _floor as floor
from ._harness import Contestant, LoopName, Mode, ModeRun
from ._peers import PEERS_ASYNC_ASYNC, PEERS_ASYNC_THREAD, PEERS_THREAD_ASYNC, PEERS_THREAD_THREAD

__all__ = ("MODES", "SMOKE_MODES", "Verdict", "evaluate")

LOOPS: tuple[LoopName, ...] = ("asyncio", "uvloop")


def _amp(fn: Callable[..., object]) -> Contestant:
    return Contestant("asyncmp", "asyncmp", fn)  # type: ignore[arg-type]


def _floor(fn: Callable[..., object]) -> Contestant:
    return Contestant("floor", "floor", fn)  # type: ignore[arg-type]


_FAST_T2A = Contestant("SimpleQueue reply", "hand-written", floor.thread_async_fast)
_FAST_T2T = Contestant("SimpleQueue reply", "hand-written", floor.thread_thread_fast)

MODES: tuple[Mode, ...] = (
    Mode(
        "async_async_1",
        "async → async, 1 client",
        LOOPS,
        (_amp(amp.async_async), _floor(floor.async_async), *PEERS_ASYNC_ASYNC),
        target="≥ 0.8 × floor; ahead of janus, culsans, aiologic, anyio streams",
        smoke_n=200,
    ),
    Mode(
        "async_async_64",
        "async → async, 64 clients",
        LOOPS,
        (_amp(amp.async_async), _floor(floor.async_async), *PEERS_ASYNC_ASYNC),
        clients=64,
        target="≥ 0.9 × floor",
        smoke_n=256,
    ),
    Mode(
        "async_async_10k",
        "async → async, 10,000 clients",
        LOOPS,
        (_amp(amp.async_async), _floor(floor.async_async), *PEERS_ASYNC_ASYNC),
        clients=10_000,
        target="≥ 0.9 × floor; ≥ 0.8 × the 64-client rate",
        smoke_n=10_000,
        budget_scale=2.0,
    ),
    Mode(
        "thread_async",
        "thread → async",
        LOOPS,
        (_amp(amp.thread_async), _floor(floor.thread_async), _FAST_T2A, *PEERS_THREAD_ASYNC),
        floor_desc="call_soon_threadsafe + threading.Event",
        target="≥ 1.0 × floor; ahead of culsans, aiologic, BlockingPortal",
    ),
    Mode(
        "async_thread",
        "async → thread",
        LOOPS,
        (_amp(amp.async_thread), _floor(floor.async_thread), *PEERS_ASYNC_THREAD),
        floor_desc="SimpleQueue + call_soon_threadsafe(fut.set_result)",
        target="≥ 1.0 × floor; ahead of culsans, aiologic",
    ),
    Mode(
        "thread_thread",
        "thread → thread",
        ("threads",),
        (_amp(amp.thread_thread), _floor(floor.thread_thread), _FAST_T2T, *PEERS_THREAD_THREAD),
        floor_desc="SimpleQueue + threading.Event",
        target="≥ 1.0 × floor; ahead of culsans, aiologic, pykka",
    ),
    Mode(
        "threads8_async",
        "8 threads → one async server",
        LOOPS,
        (
            _amp(amp.thread_async),
            _floor(floor.thread_async),
            _FAST_T2A,
            *(p for p in PEERS_THREAD_ASYNC if p.name != "janus"),
        ),
        clients=8,
        floor_desc="call_soon_threadsafe + threading.Event",
        smoke_n=64,
    ),
    Mode(
        "task_spawn",
        "task.spawn server, 1 client",
        LOOPS,
        (_amp(amp.task_spawn), _floor(floor.async_async)),
        target="≥ 0.75 × floor",
    ),
    Mode(
        "thread_spawn",
        "thread.spawn server, 1 async client",
        LOOPS,
        (_amp(amp.thread_spawn), _floor(floor.async_thread)),
        floor_desc="SimpleQueue + call_soon_threadsafe(fut.set_result)",
    ),
    Mode(
        "signaler_fanout",
        "Signaler fan-out to 100 receivers",
        ("threads",),
        (_amp(amp.signaler_fanout), _floor(floor.signaler_fanout)),
        unit="delivery",
        floor_desc="100 SimpleQueues under one lock",
        smoke_n=1_000,
    ),
    Mode(
        "stage_handoff",
        "Stage hand-off, 8 tokens",
        LOOPS,
        (_amp(amp.stage_handoff), _floor(floor.stage_handoff)),
        unit="event",
        floor_desc="a router task + one asyncio.Queue per token",
    ),
    Mode(
        "calloop_timers",
        "calloop timers",
        ("threads",),
        (_amp(amp.calloop_timers), _floor(floor.loop_timers)),
        unit="timer",
        floor_desc="asyncio loop.call_at chain",
    ),
    Mode(
        "calloop_pings",
        "calloop pings",
        ("threads",),
        (_amp(amp.calloop_pings), _floor(floor.loop_pings)),
        unit="ping",
        floor_desc="asyncio call_soon_threadsafe chain",
    ),
    Mode(
        "calloop_channel",
        "calloop channel messages",
        ("threads",),
        (_amp(amp.calloop_channel), _floor(floor.loop_channel)),
        unit="msg",
        floor_desc="asyncio call_soon_threadsafe per message",
        smoke_n=1_000,
    ),
    Mode(
        "memory",
        "memory per queued request",
        ("asyncio",),
        (_amp(amp.memory_per_request), _floor(floor.memory_per_request)),
        unit="byte",
        kind="memory",
        floor_desc="(payload, Future) in an asyncio.Queue",
        target="≤ 500 bytes per queued request, payload excluded",
        smoke_n=1_000,
        max_n=20_000,
    ),
)

#: What ``--smoke`` runs unless ``--modes`` says otherwise: fast, and needs only asyncmp's
#: channel, the floor and the standard library.
SMOKE_MODES = ("async_async_1", "thread_async", "memory")


# -- targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether a mode met its target: ``met`` is None when there is none (or no data)."""

    met: bool | None
    detail: str


def _median(run: ModeRun, name: str) -> float | None:
    result = run.results.get(name)
    if result is None or result.median is None:
        return None
    if run.mode.kind == "memory":
        return result.median
    return result.n / result.median


def ratio(run: ModeRun, name: str) -> float | None:
    """*name*'s rate over the floor's rate (for memory modes: bytes over the floor's bytes).

    The median of the per-round ratios: both were measured in the same round, moments apart,
    so a round in which the machine was busy (which on 2 shared cores can change a
    cross-thread wake-up from microseconds to a scheduler tick) cancels out of the ratio.
    """
    mine, base = run.results.get(name), run.results.get(run.mode.floor)
    if mine is None or base is None or not mine.samples or not base.samples:
        return None
    if len(mine.samples) != len(base.samples):
        a, b = _median(run, name), _median(run, run.mode.floor)
        return None if a is None or not b else a / b
    ratios = []
    for m, b in zip(mine.samples, base.samples, strict=True):
        if run.mode.kind == "memory":
            ratios.append(m / b)
        else:  # samples are seconds for n operations
            ratios.append((mine.n / m) / (base.n / b))
    return statistics.median(ratios)


def rate(run: ModeRun, name: str) -> float | None:
    """Operations per second (or bytes per request for memory modes)."""
    return _median(run, name)


def _ahead_of(run: ModeRun, names: Sequence[str]) -> list[str]:
    """The peers among *names* that asyncmp is not ahead of (compared by paired ratios)."""
    mine = ratio(run, "asyncmp")
    assert mine is not None
    behind = []
    for name in names:
        theirs = ratio(run, name)
        if theirs is not None and theirs >= mine:
            behind.append(name)
    return behind


def evaluate(run: ModeRun, runs: Sequence[ModeRun]) -> Verdict:
    """The verdict on *run*'s target (the 10,000-client target also reads the 64-client
    run on the same loop)."""
    mode = run.mode
    if not mode.target:
        return Verdict(None, "")
    if mode.kind == "memory":
        value = _median(run, "asyncmp")
        if value is None:
            return Verdict(None, "no data")
        return Verdict(value <= 500, f"{value:.0f} B per request")
    r = ratio(run, "asyncmp")
    if r is None:
        return Verdict(None, "no data")
    minimum = {
        "async_async_1": 0.8,
        "async_async_64": 0.9,
        "async_async_10k": 0.9,
        "task_spawn": 0.75,
    }.get(mode.id, 1.0)
    problems = []
    if r < minimum:
        problems.append(f"{r:.2f} × floor < {minimum}")
    peers = [c.name for c in mode.contestants if c.role == "peer"]
    if mode.id in ("thread_async", "async_thread", "thread_thread"):
        peers = [p for p in peers if p not in ("janus", "anyio to_thread")]
    behind = _ahead_of(run, peers)
    if behind:
        problems.append("behind " + ", ".join(behind))
    if mode.id == "async_async_10k":
        other = next(
            (x for x in runs if x.mode.id == "async_async_64" and x.loop == run.loop), None
        )
        mine, base = _median(run, "asyncmp"), other and _median(other, "asyncmp")
        if mine is not None and base:
            if mine < 0.8 * base:
                problems.append(f"{mine / base:.2f} × the 64-client rate < 0.8")
        else:
            problems.append("64-client rate not measured")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, f"{r:.2f} × floor")
