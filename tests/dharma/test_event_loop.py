"""asyncmp.dharma's event loops: modules hosted by event loops on threads or as tasks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncmp.dharma import EventLoopInfo, Module, ServiceInfo, Signaler


class Recorder(Module):
    """A module that logs every call, tagged with its name, into the context's list."""

    def __init__(self, context: dict[str, Any], name: str, signals: Iterable[int]) -> None:
        self.log: list[Any] = context["log"]
        self.name = name
        self.signals = list(signals)
        self.log.append((name, "construct", threading.current_thread().name))

    def get_signals(self) -> list[int]:
        self.log.append((self.name, "get_signals"))
        return self.signals

    def initialize(self) -> None:
        self.log.append((self.name, "initialize"))

    def execute(self, signal_id: int, payload: Any) -> None:
        self.log.append((self.name, "execute", signal_id, payload))

    def finalize(self) -> None:
        self.log.append((self.name, "finalize"))


def recorder(name: str, signals: Iterable[int]) -> Any:
    return lambda context: Recorder(context, name, signals)


def start_loop(name: str, signaler: Signaler[Any], *modules: Any) -> tuple[threading.Thread, list]:
    log: list[Any] = []
    info: EventLoopInfo[dict[str, Any]] = EventLoopInfo(name, signaler, {"log": log})
    for module in modules:
        info.add_module(module)
    return info.start(), log


def calls(log: list[Any], name: str, kind: str) -> list[Any]:
    return [entry[2:] for entry in log if entry[:2] == (name, kind)]


def test_event_loop_executes_subscribed_signals_then_finalizes() -> None:
    """A module on [1,2,3] sees 2,1,3 of emits 2,4,1,3; init/finalize once; thread ends."""
    signaler: Signaler[str] = Signaler()
    thread, log = start_loop("loop", signaler, recorder("m", [1, 2, 3]))

    for signal_id in (2, 4, 1, 3):
        signaler.emit(signal_id, str(signal_id))
    signaler.terminate()
    thread.join(5)

    assert not thread.is_alive()
    assert calls(log, "m", "execute") == [(2, "2"), (1, "1"), (3, "3")]
    assert len(calls(log, "m", "initialize")) == 1
    assert len(calls(log, "m", "finalize")) == 1
    assert log[-1] == ("m", "finalize")


def test_event_loop_routes_each_signal_to_its_modules_once() -> None:
    """M1 on [1,2], M2 on [2,3]: emits 2,4,1,3,2 give M1 2,1,2 and M2 2,3,2 (one copy each)."""
    signaler: Signaler[int] = Signaler()
    thread, log = start_loop("loop", signaler, recorder("m1", [1, 2]), recorder("m2", [2, 3]))

    for signal_id in (2, 4, 1, 3, 2):
        signaler.emit(signal_id, signal_id)
    signaler.terminate()
    thread.join(5)

    assert [c[0] for c in calls(log, "m1", "execute")] == [2, 1, 2]
    assert [c[0] for c in calls(log, "m2", "execute")] == [2, 3, 2]


def test_event_loop_runs_modules_in_the_order_added() -> None:
    """Construct, initialize, execute and finalize all run A before B when A was added first."""
    signaler: Signaler[int] = Signaler()
    thread, log = start_loop("loop", signaler, recorder("A", [1]), recorder("B", [1]))

    signaler.emit(1, 0)
    signaler.terminate()
    thread.join(5)

    for kind in ("construct", "initialize", "execute", "finalize"):
        order = [entry[0] for entry in log if entry[1] == kind]
        assert order == ["A", "B"], kind


def test_event_loop_asks_every_module_for_signals_before_initializing_any() -> None:
    """All get_signals calls come before the first initialize."""
    signaler: Signaler[int] = Signaler()
    thread, log = start_loop("loop", signaler, recorder("A", [1]), recorder("B", [2]))
    signaler.terminate()
    thread.join(5)

    kinds = [entry[1] for entry in log]
    assert kinds.index("initialize") > max(i for i, k in enumerate(kinds) if k == "get_signals")


def test_event_loop_builds_modules_on_its_thread_with_one_shared_context() -> None:
    """Constructors run on the loop's thread (named after it) and see one context object."""
    signaler: Signaler[int] = Signaler()
    seen: list[Any] = []

    class Counting(Module):
        def __init__(self, context: dict[str, Any]) -> None:
            context["n"] = context.get("n", 0) + 1
            seen.append((context["n"], threading.current_thread().name))

        def get_signals(self) -> list[int]:
            return []

        def execute(self, signal_id: int, payload: Any) -> None:
            pass

    info: EventLoopInfo[dict[str, Any]] = EventLoopInfo("worker-7", signaler, {})
    info.add_module(Counting)
    info.add_module(Counting)
    thread = info.start()
    signaler.terminate()
    thread.join(5)

    assert thread.name == "worker-7"
    assert seen == [(1, "worker-7"), (2, "worker-7")]
    assert info.context == {"n": 2}


def test_event_loop_start_returns_after_subscribing() -> None:
    """A signal emitted right after start() returns is executed (no 100 ms sleep needed)."""
    signaler: Signaler[str] = Signaler()

    class Slow(Recorder):
        def get_signals(self) -> list[int]:
            # Widen the window in which a start() that returned early would lose the emit.
            time.sleep(0.05)
            return super().get_signals()

    thread, log = start_loop("loop", signaler, lambda ctx: Slow(ctx, "slow", [1]))
    signaler.emit(1, "first")
    signaler.terminate()
    thread.join(5)

    assert calls(log, "slow", "execute") == [(1, "first")]
    assert calls(log, "slow", "finalize") == [()]


def test_event_loop_executes_every_earlier_emit_before_finalizing() -> None:
    """Emits E1..En then terminate(): each of two loops executes all of them, then finalizes."""
    signaler: Signaler[int] = Signaler()
    t1, log1 = start_loop("one", signaler, recorder("m", [1]))
    t2, log2 = start_loop("two", signaler, recorder("m", [1]))

    for i in range(200):
        signaler.emit(1, i)
    signaler.terminate()
    t1.join(5)
    t2.join(5)

    for log in (log1, log2):
        assert [c[1] for c in calls(log, "m", "execute")] == list(range(200))
        assert log[-1] == ("m", "finalize")


def test_event_loop_start_reports_constructor_errors() -> None:
    """An exception from a module constructor is raised by start(); the thread has ended."""
    signaler: Signaler[int] = Signaler()
    info: EventLoopInfo[None] = EventLoopInfo("bad", signaler)

    def broken(context: None) -> Module:
        raise LookupError("no such module")

    info.add_module(broken)
    with pytest.raises(LookupError, match="no such module"):
        info.start()
    assert not any(t.name == "bad" for t in threading.enumerate())


def test_event_loop_cannot_start_twice_or_grow_after_start() -> None:
    """A second start() and add_module() after start() raise RuntimeError."""
    signaler: Signaler[int] = Signaler()
    info: EventLoopInfo[None] = EventLoopInfo("once", signaler)
    thread = info.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            info.start()
        with pytest.raises(RuntimeError, match="already started"):
            info.add_module(recorder("late", []))
    finally:
        signaler.terminate()
        thread.join(5)
    assert not thread.is_alive()


def test_event_loop_rejects_bad_input() -> None:
    """Wrong names, signalers and constructors raise TypeError."""
    signaler: Signaler[int] = Signaler()
    with pytest.raises(TypeError, match="name"):
        EventLoopInfo(3, signaler)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Signaler"):
        EventLoopInfo("x", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        EventLoopInfo("x", signaler).add_module(42)  # type: ignore[arg-type]


def test_event_loop_thread_refuses_async_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``async def execute`` on a thread loop is a TypeError; modules are still finalized."""
    signaler: Signaler[int] = Signaler()
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    log: list[Any] = []

    class AsyncModule(Recorder):
        async def execute(self, signal_id: int, payload: Any) -> None:  # type: ignore[override]
            pass

    info: EventLoopInfo[dict[str, Any]] = EventLoopInfo("loop", signaler, {"log": log})
    info.add_module(lambda ctx: AsyncModule(ctx, "a", [1]))
    thread = info.start()
    signaler.emit(1, 1)
    thread.join(5)

    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], TypeError)
    assert "run_async" in str(errors[0])
    assert log[-1] == ("a", "finalize")


async def test_event_loop_runs_as_a_task_with_async_modules() -> None:
    """run_async() hosts ``async def`` modules; an emit from a thread is executed, then
    terminate() finalizes them and the task returns."""
    signaler: Signaler[str] = Signaler()
    log: list[Any] = []

    class AsyncRecorder(Module):
        def __init__(self, context: list[Any]) -> None:
            self.log = context

        def get_signals(self) -> list[int]:
            return [1]

        async def initialize(self) -> None:
            await anyio.lowlevel.checkpoint()
            self.log.append("initialize")

        async def execute(self, signal_id: int, payload: Any) -> None:
            await anyio.lowlevel.checkpoint()
            self.log.append(("execute", signal_id, payload))

        async def finalize(self) -> None:
            await anyio.lowlevel.checkpoint()
            self.log.append("finalize")

    info: EventLoopInfo[list[Any]] = EventLoopInfo("task-loop", signaler, log)
    info.add_module(AsyncRecorder)
    info.add_module(recorder_sync_into(log))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(info.run_async)
            signaler.emit(1, "now")  # right after start: subscribed already
            await anyio.to_thread.run_sync(signaler.emit, 1, "from a thread")
            signaler.terminate()

    assert log == [
        "initialize",
        "sync-initialize",
        ("execute", 1, "now"),
        ("sync-execute", 1, "now"),
        ("execute", 1, "from a thread"),
        ("sync-execute", 1, "from a thread"),
        "finalize",
        "sync-finalize",
    ]


def recorder_sync_into(log: list[Any]) -> Any:
    class SyncModule(Module):
        def __init__(self, context: object) -> None:
            pass

        def get_signals(self) -> list[int]:
            return [1]

        def initialize(self) -> None:
            log.append("sync-initialize")

        def execute(self, signal_id: int, payload: Any) -> None:
            log.append(("sync-execute", signal_id, payload))

        def finalize(self) -> None:
            log.append("sync-finalize")

    return SyncModule


async def test_event_loop_task_finalizes_when_cancelled() -> None:
    """Cancelling a run_async() task finalizes its modules (even async ones) and ends it."""
    signaler: Signaler[int] = Signaler()
    log: list[Any] = []

    class AsyncFinal(Module):
        def __init__(self, context: object) -> None:
            pass

        def get_signals(self) -> list[int]:
            return [1]

        def execute(self, signal_id: int, payload: Any) -> None:
            log.append(payload)

        async def finalize(self) -> None:
            await anyio.lowlevel.checkpoint()
            log.append("finalize")

    info: EventLoopInfo[None] = EventLoopInfo("cancelled", signaler)
    info.add_module(AsyncFinal)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(info.run_async)
            signaler.emit(1, "x")
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()

    assert log == ["x", "finalize"]


async def test_event_loop_task_propagates_module_errors_after_finalizing() -> None:
    """An exception from execute ends run_async() with that exception, after finalize."""
    signaler: Signaler[int] = Signaler()
    log: list[Any] = []
    info: EventLoopInfo[dict[str, Any]] = EventLoopInfo("failing", signaler, {"log": log})

    class Failing(Recorder):
        def execute(self, signal_id: int, payload: Any) -> None:
            raise ZeroDivisionError(payload)

    info.add_module(lambda ctx: Failing(ctx, "f", [2]))
    with anyio.fail_after(5):
        with pytest.RaisesGroup(pytest.RaisesExc(ZeroDivisionError, match="boom")):
            async with anyio.create_task_group() as tg:
                await tg.start(info.run_async)
                signaler.emit(2, "boom")
    assert log[-1] == ("f", "finalize")


def test_service_runs_on_its_own_named_thread() -> None:
    """ServiceInfo.start() builds the service on a new thread named after it and runs it."""
    ran: list[str] = []

    class Service:
        def run(self) -> None:
            ran.append(threading.current_thread().name)

    thread = ServiceInfo("svc", Service).start()
    thread.join(5)

    assert ran == ["svc"]
    with pytest.raises(TypeError, match="callable"):
        ServiceInfo("svc", None)  # type: ignore[arg-type]
