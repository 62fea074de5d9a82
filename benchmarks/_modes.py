"""The benchmark modes, their contestants, and the targets of each of asyncmp's two cores.

The targets (`TARGETS`, listed on the docs' performance page) are ratios to the floor measured
in the same process run, each on asyncio and on uvloop; a contestant measured in a child
process (the other core) is compared with the floor of that child.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from . import _asyncmp_modes as amp, _floor as floor
from ._harness import Contestant, Core, LoopName, Mode, ModeRun, Result
from ._peers import PEERS_ASYNC_ASYNC, PEERS_ASYNC_THREAD, PEERS_THREAD_ASYNC, PEERS_THREAD_THREAD

__all__ = ("MODES", "SMOKE_MODES", "TARGETS", "Target", "Verdict", "evaluate", "rate", "ratio")

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
        smoke_n=200,
    ),
    Mode(
        "async_async_64",
        "async → async, 64 clients",
        LOOPS,
        (_amp(amp.async_async), _floor(floor.async_async), *PEERS_ASYNC_ASYNC),
        clients=64,
        smoke_n=256,
    ),
    Mode(
        "async_async_10k",
        "async → async, 10,000 clients",
        LOOPS,
        (_amp(amp.async_async), _floor(floor.async_async), *PEERS_ASYNC_ASYNC),
        clients=10_000,
        smoke_n=10_000,
        budget_scale=2.0,
    ),
    Mode(
        "thread_async",
        "thread → async",
        LOOPS,
        (_amp(amp.thread_async), _floor(floor.thread_async), _FAST_T2A, *PEERS_THREAD_ASYNC),
        floor_desc="call_soon_threadsafe + threading.Event",
    ),
    Mode(
        "async_thread",
        "async → thread",
        LOOPS,
        (_amp(amp.async_thread), _floor(floor.async_thread), *PEERS_ASYNC_THREAD),
        floor_desc="SimpleQueue + call_soon_threadsafe(fut.set_result)",
    ),
    Mode(
        "async64_thread",
        "64 async clients → one thread server",
        LOOPS,
        (_amp(amp.async_thread), _floor(floor.async_thread), *PEERS_ASYNC_THREAD),
        clients=64,
        floor_desc="SimpleQueue + call_soon_threadsafe(fut.set_result)",
        smoke_n=256,
    ),
    Mode(
        "thread_thread",
        "thread → thread",
        ("threads",),
        (_amp(amp.thread_thread), _floor(floor.thread_thread), _FAST_T2T, *PEERS_THREAD_THREAD),
        floor_desc="SimpleQueue + threading.Event",
    ),
    Mode(
        "threads8_async",
        "8 threads → one async server",
        LOOPS,
        (_amp(amp.thread_async), _floor(floor.thread_async), _FAST_T2A, *PEERS_THREAD_ASYNC),
        clients=8,
        floor_desc="call_soon_threadsafe + threading.Event",
        smoke_n=64,
    ),
    Mode(
        "task_spawn",
        "task.spawn server, 1 client",
        LOOPS,
        (_amp(amp.task_spawn), _floor(floor.async_async)),
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
        "nats_scale",
        "NATS: 64 requesters, 2 server processes",
        ("asyncio",),
        (
            Contestant("asyncmp", "asyncmp", amp.nats_scale, ("nats",)),
            Contestant("floor", "floor", floor.nats_scale, ("nats",)),
        ),
        clients=64,
        floor_desc="2 plain nats-py responder processes, nc.request()",
        smoke_n=256,
        max_n=200_000,
    ),
    Mode(
        "memory",
        "memory per queued request",
        ("asyncio",),
        (_amp(amp.memory_per_request), _floor(floor.memory_per_request)),
        unit="byte",
        kind="memory",
        floor_desc="(payload, Future) in an asyncio.Queue",
        smoke_n=1_000,
        max_n=20_000,
    ),
)

#: What ``--smoke`` runs unless ``--modes`` says otherwise: fast, and needs only asyncmp's
#: channel, the floor and the standard library.
SMOKE_MODES = ("async_async_1", "thread_async", "memory")


# -- targets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What one core must reach in one mode (each condition that is set must hold)."""

    #: At least this × the floor's rate, per loop (a mode on "threads" uses that key).
    min_ratio: Mapping[LoopName, float] | None = None
    #: At least this × every peer's ratio; 1.0 means "ahead of" (strictly greater).
    peer_factor: float | None = None
    #: The peers that *peer_factor* applies to, where measured; None: every peer of the mode.
    peers: tuple[str, ...] | None = None
    #: At least this × the same core's rate with 64 clients on the same loop (10,000 clients).
    of_64_clients: float | None = None
    #: At most this many bytes per queued request (memory).
    max_bytes: float | None = None

    def describe(self, loop: LoopName) -> str:
        """The target in words, for the table, the JSON and the docs."""
        parts = []
        if self.min_ratio is not None and loop in self.min_ratio:
            parts.append(f"≥ {self.min_ratio[loop]:g} × floor")
        if self.peer_factor is not None:
            who = "every peer" if self.peers is None else ", ".join(self.peers)
            if self.peer_factor == 1.0:
                parts.append(f"ahead of {who}")
            else:
                parts.append(f"≥ {self.peer_factor:g} × {who}")
        if self.of_64_clients is not None:
            parts.append(f"≥ {self.of_64_clients:g} × the 64-client rate")
        if self.max_bytes is not None:
            parts.append(f"≤ {self.max_bytes:g} B per queued request")
        return "; ".join(parts)


def _loops(asyncio: float, uvloop: float | None = None) -> dict[LoopName, float]:
    both = asyncio if uvloop is None else uvloop
    return {"asyncio": asyncio, "uvloop": both, "threads": asyncio}


#: The peers the compiled core's cross-thread targets name: janus and anyio's to_thread are
#: measured too, but the targets leave them out.
_THREAD_PEERS = ("aiologic", "culsans", "BlockingPortal", "pykka")
_PURE_THREAD = Target(min_ratio=_loops(1.0))
_FANOUT = Target(min_ratio=_loops(0.8))
_TIMERS = Target(min_ratio=_loops(0.8))
_PINGS = Target(min_ratio=_loops(0.9))
_COMPILED_THREAD = Target(min_ratio=_loops(1.2), peer_factor=1.0, peers=_THREAD_PEERS)

#: Per mode, per core (docs/performance.md lists them). The pure core's 64- and 10,000-client
#: targets are "no slower than before the compiled core": 0.64 / 0.55 as the project recorded
#: the pure-Python design, and 0.65 / 0.59 from its last full run.
TARGETS: Mapping[str, Mapping[Core, Target]] = {
    "async_async_1": {
        "compiled": Target(min_ratio=_loops(1.0), peer_factor=1.5),
        "pure": Target(min_ratio=_loops(0.8), peer_factor=1.0),
    },
    "async_async_64": {
        "compiled": Target(min_ratio=_loops(1.0), peer_factor=1.5),
        "pure": Target(min_ratio=_loops(0.64, 0.55)),
    },
    "async_async_10k": {
        "compiled": Target(min_ratio=_loops(0.9), of_64_clients=0.8),
        "pure": Target(min_ratio=_loops(0.65, 0.59)),
    },
    "thread_async": {"compiled": _COMPILED_THREAD, "pure": _PURE_THREAD},
    "async_thread": {"compiled": _COMPILED_THREAD, "pure": _PURE_THREAD},
    "thread_thread": {"compiled": _COMPILED_THREAD, "pure": _PURE_THREAD},
    # Many replies from one thread to one loop: they can share the loop's wake-ups.
    "async64_thread": {
        "compiled": Target(min_ratio=_loops(1.5)),
        "pure": Target(min_ratio=_loops(1.0)),
    },
    "task_spawn": {
        "compiled": Target(min_ratio=_loops(0.95)),
        "pure": Target(min_ratio=_loops(0.75)),
    },
    "memory": {"compiled": Target(max_bytes=150), "pure": Target(max_bytes=500)},
    # Beyond the channel both cores run the same code: one target for both.
    "signaler_fanout": {"compiled": _FANOUT, "pure": _FANOUT},
    "calloop_timers": {"compiled": _TIMERS, "pure": _TIMERS},
    "calloop_pings": {"compiled": _PINGS, "pure": _PINGS},
    # Two asyncmp service processes (statistics on) against two plain nats-py responders.
    "nats_scale": {
        "compiled": Target(min_ratio=_loops(1.0)),
        "pure": Target(min_ratio=_loops(1.0)),
    },
}


@dataclass(frozen=True)
class Verdict:
    """Whether one core met its target: ``met`` is None when undecided (no data)."""

    met: bool | None
    detail: str


def _value(result: Result, kind: str) -> float | None:
    """The median as operations per second (or bytes per operation for memory modes)."""
    median = result.median
    if median is None:
        return None
    return median if kind == "memory" else result.n / median


def rate(run: ModeRun, name: str) -> float | None:
    """Operations per second (or bytes per request for memory modes)."""
    result = run.results.get(name)
    return None if result is None else _value(result, run.mode.kind)


def ratio(run: ModeRun, name: str) -> float | None:
    """*name*'s rate over the rate of the floor measured in the same process (for memory
    modes: bytes over the floor's bytes).

    The median of the per-round ratios: both were measured in the same round, moments apart,
    so a round in which the machine was busy (which on 2 shared cores can change a
    cross-thread wake-up from microseconds to a scheduler tick) cancels out of the ratio.
    """
    mine = run.results.get(name)
    if mine is None:
        return None
    base = mine.own_floor or run.results.get(run.mode.floor)
    if base is None or not mine.samples or not base.samples:
        return None
    kind = run.mode.kind
    if len(mine.samples) != len(base.samples):
        a, b = _value(mine, kind), _value(base, kind)
        return None if a is None or not b else a / b
    ratios = []
    for m, b in zip(mine.samples, base.samples, strict=True):
        if kind == "memory":
            ratios.append(m / b)
        else:  # samples are seconds for n operations
            ratios.append((mine.n / m) / (base.n / b))
    return statistics.median(ratios)


def _below(value: float, limit: float) -> str:
    """*value* (which is below *limit*) with enough digits to show that it is."""
    digits = 2
    while round(value, digits) >= limit and digits < 6:
        digits += 1
    return f"{value:.{digits}f}"


def target_of(run: ModeRun, name: str) -> Target | None:
    """The target of contestant *name* in *run*: asyncmp's, for the core it ran on."""
    result = run.results.get(name)
    if result is None or result.role != "asyncmp" or result.core is None:
        return None
    return TARGETS.get(run.mode.id, {}).get(result.core)


def evaluate(run: ModeRun, runs: Sequence[ModeRun], name: str) -> Verdict | None:
    """The verdict on contestant *name*'s target in *run*, or None if it has none. The
    10,000-client target also reads the same core's 64-client run on the same loop."""
    target = target_of(run, name)
    if target is None:
        return None
    result = run.results[name]
    if run.mode.kind == "memory":
        value = rate(run, name)
        if value is None:
            return Verdict(None, "no data")
        assert target.max_bytes is not None
        met = value <= target.max_bytes
        over = "" if met else f" > {target.max_bytes:g}"
        return Verdict(met, f"{value:.0f} B per request{over}")
    mine = ratio(run, name)
    if mine is None:
        return Verdict(None, "no data")
    problems = []
    undecided = []
    if target.min_ratio is not None:
        minimum = target.min_ratio[run.loop]
        if mine < minimum:
            problems.append(f"{_below(mine, minimum)} × floor < {minimum:g}")
    if target.peer_factor is not None:
        factor = target.peer_factor
        peers = [
            r.name
            for r in run.results.values()
            if r.role == "peer" and (target.peers is None or r.name in target.peers)
        ]
        behind = []
        for peer in peers:
            theirs = ratio(run, peer)
            if theirs is None:
                continue  # not installed or not measured: "where measured"
            if factor == 1.0 and mine <= theirs:
                behind.append(peer)
            elif factor != 1.0 and mine < factor * theirs:
                problems.append(f"{_below(mine / theirs, factor)} × {peer} < {factor:g}")
        if behind:
            problems.append("behind " + ", ".join(behind))
    if target.of_64_clients is not None:
        base = next(
            (
                other
                for x in runs
                if x.mode.id == "async_async_64" and x.loop == run.loop
                for other in x.results.values()
                if other.role == "asyncmp" and other.core == result.core
            ),
            None,
        )
        here, there = rate(run, name), base and _value(base, "rate")
        if here is not None and there:
            if here < target.of_64_clients * there:
                problems.append(
                    f"{_below(here / there, target.of_64_clients)} × the 64-client rate "
                    f"< {target.of_64_clients:g}"
                )
        else:
            undecided.append("64-client rate not measured")
    if problems:
        return Verdict(False, "; ".join(problems + undecided))
    if undecided:
        return Verdict(None, f"{mine:.2f} × floor; " + "; ".join(undecided))
    return Verdict(True, f"{mine:.2f} × floor")
