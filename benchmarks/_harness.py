"""The measuring machinery: modes, contestants, event loops, rounds and medians.

A *mode* is one shape of traffic (say "one async client, one async server"). Each mode has
*contestants*: asyncmp, the hand-written floor and peer libraries, each a function that does
``n`` operations and returns the seconds its timed section took (or, for a ``memory`` mode,
the bytes per operation). The runner measures every contestant of every mode in every round,
rotating their order, so that drift on a shared machine (other processes, thermal) falls on
all of them alike; the result per contestant is the median over the rounds.

Round 0 is a warm-up and a calibration: each contestant runs a small ``n`` once and its
measured rate sets the ``n`` of the counted rounds, so that every measurement lasts about
``budget`` seconds whatever the contestant's speed.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = (
    "Contestant",
    "Core",
    "LoopName",
    "Mode",
    "ModeRun",
    "NotAvailable",
    "Result",
    "Settings",
    "gather_clients",
    "gather_threads",
    "gather_threads_async",
    "run",
    "run_in_loop",
)

Role = Literal["asyncmp", "floor", "hand-written", "peer"]
Kind = Literal["rate", "memory"]
LoopName = Literal["asyncio", "uvloop", "threads"]
#: asyncmp's two cores: ``asyncmp._speedups`` (Cython) and pure Python (``asyncmp.CORE``).
Core = Literal["compiled", "pure"]

#: ``fn(n, clients)`` → seconds (rate modes) or bytes per op (memory modes); async
#: contestants run on a fresh event loop of the mode's loop kind.
Bench = Callable[[int, int], "float | Awaitable[float]"]


class NotAvailable(Exception):
    """Raised by a contestant whose library or API is missing; it is reported as n/a."""


@dataclass(frozen=True)
class Contestant:
    """One implementation of a mode."""

    name: str
    role: Role
    fn: Bench
    #: Import names it needs; a missing one makes it "n/a (not installed)".
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mode:
    """One benchmark shape, measured for each of its contestants on each of its loops."""

    id: str
    title: str
    loops: tuple[LoopName, ...]
    contestants: tuple[Contestant, ...]
    clients: int = 1
    #: What one operation is, for the table ("req", "delivery", "timer", …).
    unit: str = "req"
    kind: Kind = "rate"
    #: The name of the contestant that ratios are taken against, and what it is.
    floor: str = "floor"
    floor_desc: str = "asyncio.Queue + Future"
    #: Operations per measurement in --smoke and for the calibration run.
    smoke_n: int = 64
    #: Scales the measurement budget (slow set-ups such as 10,000 tasks get more).
    budget_scale: float = 1.0
    #: Upper bound of n (memory modes use a fixed n).
    max_n: int = 5_000_000


@dataclass
class Result:
    """What one contestant measured in one mode on one loop."""

    name: str
    role: Role
    n: int = 0
    samples: list[float] = field(default_factory=list)
    skipped: str = ""
    #: For asyncmp: the core it ran on.
    core: Core | None = None
    #: Measured in a child process (the other core), with its own floor ``own_floor``: the
    #: ratio of a contestant is always taken against the floor of its own process.
    own_floor: Result | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


@dataclass(frozen=True)
class Settings:
    """How much to measure."""

    rounds: int
    budget: float  # seconds per measurement
    calibrate: bool  # False: every contestant runs exactly mode.smoke_n operations
    loops: tuple[LoopName, ...]
    #: The core of the contestant "asyncmp" (this process's ``asyncmp.CORE``), or None to
    #: leave asyncmp out of this process (``--cores`` wants only the other core, which a
    #: child process measures).
    core: Core | None
    contestants: frozenset[str] | None = None  # None = all


# -- running one contestant ------------------------------------------------------------------


def _new_loop(loop: LoopName) -> asyncio.AbstractEventLoop:
    if loop == "uvloop":
        import uvloop

        new: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return new
    return asyncio.new_event_loop()


def run_in_loop(loop: LoopName, main: Callable[[], Coroutine[Any, Any, float]]) -> float:
    """Run ``main()`` on a fresh event loop of kind *loop* and return what it returns."""
    # asyncio.Runner(loop_factory=...) would do, but it needs Python 3.11.
    event_loop = _new_loop(loop)
    try:
        return event_loop.run_until_complete(main())
    finally:
        try:
            event_loop.run_until_complete(event_loop.shutdown_asyncgens())
            event_loop.run_until_complete(event_loop.shutdown_default_executor())
        finally:
            event_loop.close()


def measure_once(mode: Mode, contestant: Contestant, loop: LoopName, n: int) -> float:
    """One measurement: seconds for *n* operations, or bytes per operation."""
    gc.collect()
    fn = contestant.fn
    if inspect.iscoroutinefunction(fn):
        coro_fn: Callable[[int, int], Coroutine[Any, Any, float]] = fn
        return run_in_loop(loop, lambda: coro_fn(n, mode.clients))
    value = fn(n, mode.clients)
    assert isinstance(value, float)
    return value


def missing_requirement(contestant: Contestant) -> str:
    """Why *contestant* cannot run here, or "" if its imports are present."""
    import importlib.util

    for module in contestant.requires:
        if importlib.util.find_spec(module) is None:
            return f"n/a ({module} not installed)"
    return ""


def round_n(n: float, clients: int) -> int:
    """*n* rounded up to a whole number of operations per client (at least one each)."""
    per_client = max(1, int(-(-n // clients)))
    return per_client * clients


# -- helpers the contestants share ------------------------------------------------------------


async def gather_clients(
    client: Callable[[int], Awaitable[None]], clients: int, per_client: int
) -> float:
    """Start *clients* tasks, each running ``client(per_client)``, and time them from a common
    start signal to the last one done (task creation is not timed)."""
    start = asyncio.Event()
    ready = 0
    all_ready = asyncio.Event()

    async def one() -> None:
        nonlocal ready
        ready += 1
        if ready == clients:
            all_ready.set()
        await start.wait()
        await client(per_client)

    tasks = [asyncio.create_task(one()) for _ in range(clients)]
    await all_ready.wait()
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0


def gather_threads(client: Callable[[int], None], clients: int, per_client: int) -> float:
    """Run ``client(per_client)`` on *clients* new threads and time them from a common start
    signal to the last one done (thread start-up is not timed). Re-raises a client's error."""
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def one() -> None:
        barrier.wait()
        try:
            client(per_client)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


async def gather_threads_async(
    client: Callable[[int], None], clients: int, per_client: int
) -> float:
    """`gather_threads` from a task: the event loop keeps running while the threads work."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()

    def finish(elapsed: float, error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(elapsed)
        else:
            done.set_exception(error)

    def run() -> None:
        try:
            elapsed = gather_threads(client, clients, per_client)
        except BaseException as exc:
            loop.call_soon_threadsafe(finish, 0.0, exc)
        else:
            loop.call_soon_threadsafe(finish, elapsed, None)

    threading.Thread(target=run, daemon=True).start()
    return await done


# -- the runner ---------------------------------------------------------------------------------


Progress = Callable[[str], None]


@dataclass
class ModeRun:
    """The results of one mode on one loop."""

    mode: Mode
    loop: LoopName
    results: dict[str, Result]


def plan(modes: Sequence[Mode], settings: Settings) -> list[ModeRun]:
    runs: list[ModeRun] = []
    for mode in modes:
        for loop in mode.loops:
            if loop != "threads" and loop not in settings.loops:
                continue
            results: dict[str, Result] = {}
            for c in mode.contestants:
                wanted = settings.contestants
                if wanted is not None and c.name not in wanted and c.name != mode.floor:
                    continue
                if c.role == "asyncmp" and settings.core is None:
                    continue
                core = settings.core if c.role == "asyncmp" else None
                results[c.name] = Result(c.name, c.role, skipped=missing_requirement(c), core=core)
            runs.append(ModeRun(mode, loop, results))
    return runs


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (ImportError, NotAvailable)):
        return f"n/a (not available: {exc})"
    if isinstance(exc, (AttributeError, TypeError)):
        return f"n/a (API does not match yet: {type(exc).__name__}: {exc})"
    return f"failed: {type(exc).__name__}: {exc}"


def _format_value(mode: Mode, value: float, n: int) -> str:
    if mode.kind == "memory":
        return f"{value:,.0f} B"
    return f"{n / value:,.0f}/s"


def run(modes: Sequence[Mode], settings: Settings, progress: Progress) -> list[ModeRun]:
    """Measure every contestant of every mode, interleaved per round."""
    runs = plan(modes, settings)
    contestant_of = {(m.id, c.name): c for m in modes for c in m.contestants}
    total_rounds = settings.rounds + (1 if settings.calibrate else 0)
    for round_no in range(total_rounds):
        warmup = settings.calibrate and round_no == 0
        label = "warm-up" if warmup else f"round {round_no + (0 if settings.calibrate else 1)}"
        for index, mrun in enumerate(runs):
            mode = mrun.mode
            live = [r for r in mrun.results.values() if not r.skipped]
            # Rotate the order each round so no contestant always runs first (or last).
            if live:
                shift = round_no % len(live)
                live = live[shift:] + live[:shift]
            parts: list[str] = []
            for result in live:
                contestant = contestant_of[(mode.id, result.name)]
                if not settings.calibrate:
                    n = mode.smoke_n
                elif mode.kind == "memory":
                    n = mode.max_n
                else:
                    n = result.n or mode.smoke_n * 4
                n = round_n(n, mode.clients)
                try:
                    value = measure_once(mode, contestant, mrun.loop, n)
                except Exception as exc:
                    result.skipped = _describe(exc)
                    result.samples.clear()
                    parts.append(f"{result.name}: {result.skipped}")
                    continue
                if warmup:
                    if mode.kind == "rate":
                        rate = n / max(value, 1e-9)
                        wanted = rate * settings.budget * mode.budget_scale
                        result.n = round_n(min(max(wanted, n), mode.max_n), mode.clients)
                    else:
                        result.n = n
                else:
                    result.n = n
                    result.samples.append(value)
                parts.append(f"{result.name} {_format_value(mode, value, n)}")
            progress(
                f"[{label} {index + 1}/{len(runs)}] {mode.id} · {mrun.loop}: "
                + (", ".join(parts) if parts else "nothing to run")
            )
    return runs
