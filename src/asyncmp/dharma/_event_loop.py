"""Event loops that host modules: dharma's EventLoop, EventLoopInfo and services.

An event loop owns one `Receiver`, subscribed on a
`Signaler` to the signals its modules ask for. It runs on a
thread of its own (`EventLoopInfo.start`) or as a
task of the running event loop
(`EventLoopInfo.run_async`), where module
methods may be ``async def``. Its life:

1. construct the modules, in the order they were added, each with the loop's context;
2. ask every module for its signals, register the receiver for control commands and
   subscribe it (once per signal id); `start()` returns here, so nothing emitted from now
   on is lost;
3. ``initialize()`` every module;
4. for each ``Defined(signal_id, payload)`` received, ``execute(signal_id, payload)`` on
   every module subscribed to it, in order; other messages are ignored;
5. on ``Special(TERMINATE)`` (`Signaler.terminate`), ``finalize()`` every module and end.

Modules always run in the order they were added (dharma runs them in reverse, an accident
of popping from a Vec), and the subscription is complete before `start()` returns
(dharma's tests sleep 100 ms to paper over the race).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar, final, runtime_checkable

import anyio
import anyio.abc

from .._lowlevel._linux import THREAD_SIGNALS, block
from ._bridge import Defined, Receiver, Special, SpecialCommand, _check_signal_id
from ._signaler import Signaler

__all__ = (
    "EventLoopInfo",
    "Module",
    "ModuleConstructor",
    "Service",
    "ServiceConstructor",
    "ServiceInfo",
)

C = TypeVar("C")


@runtime_checkable
class Module(Protocol):
    """An application component hosted by an event loop.

    Subclass it to inherit no-op `initialize` and `finalize`, or just write a class with
    the same methods. When the loop runs as a task (`EventLoopInfo.run_async`), any of
    `initialize`, `execute` and `finalize` may be ``async def``.
    """

    def get_signals(self) -> Iterable[int]:
        """The signal ids this module wants `execute` called for."""
        ...

    def initialize(self) -> Awaitable[None] | None:
        """Called once, after every module's `get_signals` and before any `execute`."""
        return None

    def execute(self, signal_id: int, payload: Any) -> Awaitable[None] | None:
        """Handle one emitted signal."""
        ...

    def finalize(self) -> Awaitable[None] | None:
        """Called once when the loop ends (terminated, or an exception left `execute`)."""
        return None


ModuleConstructor = Callable[[Any], Module]
"""Builds a module from the loop's context: ``constructor(context) -> Module``. A module
class whose ``__init__`` takes the context is one."""


@runtime_checkable
class Service(Protocol):
    """A user-written loop on a thread of its own; see `ServiceInfo`."""

    def run(self) -> None:
        """Do the service's work; the thread ends when this returns."""
        ...


ServiceConstructor = Callable[[], Service]
"""Builds a service on its thread: ``constructor() -> Service``."""


def _sync_call(module: Module, method: str, *args: Any) -> None:
    result = getattr(module, method)(*args)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()  # no "never awaited" warning: the error below says it all
        raise TypeError(
            f"{type(module).__name__}.{method}() returned an awaitable, but this event loop "
            "runs on a thread; run async modules with `await info.run_async()`"
        )


async def _async_call(module: Module, method: str, *args: Any) -> None:
    result = getattr(module, method)(*args)
    if inspect.isawaitable(result):
        await result


@final
class _Loop:
    """A set-up loop: modules built, receiver subscribed."""

    __slots__ = ("modules", "receiver", "subscriptions")

    def __init__(self, info: EventLoopInfo[Any]) -> None:
        context = info.context
        self.modules: list[Module] = []
        for constructor in info._constructors:
            self.modules.append(constructor(context))
        # signal id -> the modules subscribed to it, in the order they were added.
        self.subscriptions: dict[int, list[Module]] = {}
        for module in self.modules:
            for signal_id in module.get_signals():
                self.subscriptions.setdefault(_check_signal_id(signal_id), []).append(module)
        self.receiver: Receiver[Any] = Receiver()
        info.signaler.register(self.receiver)
        for signal_id in self.subscriptions:
            info.signaler.subscribe(signal_id, self.receiver)

    def run_sync(self) -> None:
        try:
            for module in self.modules:
                _sync_call(module, "initialize")
            recv = self.receiver.blocking.recv
            while True:
                msg = recv()
                if type(msg) is Defined:
                    for module in self.subscriptions.get(msg.signal_id, ()):
                        _sync_call(module, "execute", msg.signal_id, msg.value)
                elif type(msg) is Special and msg.command is SpecialCommand.TERMINATE:
                    break
        finally:
            _finalize_all(self.modules, lambda m: _sync_call(m, "finalize"))

    async def run_async(self) -> None:
        try:
            for module in self.modules:
                await _async_call(module, "initialize")
            recv = self.receiver.recv
            while True:
                msg = await recv()
                if type(msg) is Defined:
                    for module in self.subscriptions.get(msg.signal_id, ()):
                        await _async_call(module, "execute", msg.signal_id, msg.value)
                elif type(msg) is Special and msg.command is SpecialCommand.TERMINATE:
                    break
        finally:
            # Finalize even when cancelled: shield the awaits from the cancellation.
            with anyio.CancelScope(shield=True):
                errors: list[BaseException] = []
                for module in self.modules:
                    try:
                        await _async_call(module, "finalize")
                    except Exception as exc:
                        errors.append(exc)
                if errors:
                    raise errors[0]


def _finalize_all(modules: list[Module], finalize: Callable[[Module], None]) -> None:
    """Finalize every module, even if one raises; then raise the first error."""
    errors: list[BaseException] = []
    for module in modules:
        try:
            finalize(module)
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@final
class EventLoopInfo(Generic[C]):
    """The description of an event loop: its name, signaler, context and modules.

    Args:
        name: the name of the loop's thread.
        signaler: the signaler the loop subscribes to.
        context: passed to every module constructor (the same object to all of them, so a
            constructor sees what earlier ones put there).
    """

    __slots__ = ("_constructors", "_started", "context", "name", "signaler")

    def __init__(self, name: str, signaler: Signaler[Any], context: C = None) -> None:  # type: ignore[assignment]
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {name!r}")
        if not isinstance(signaler, Signaler):
            raise TypeError(f"signaler must be a Signaler, not {signaler!r}")
        self.name = name
        self.signaler = signaler
        self.context = context
        self._constructors: list[Callable[[C], Module]] = []
        self._started = False

    def add_module(self, constructor: Callable[[C], Module]) -> None:
        """Add a module, built by ``constructor(context)`` when the loop starts.

        Modules are constructed, initialized, executed and finalized in the order added.

        Raises:
            TypeError: *constructor* is not callable.
            RuntimeError: the loop was already started.
        """
        if not callable(constructor):
            raise TypeError(f"a module constructor must be callable, not {constructor!r}")
        if self._started:
            raise RuntimeError(f"event loop {self.name!r} already started")
        self._constructors.append(constructor)

    def _claim(self) -> None:
        if self._started:
            raise RuntimeError(f"event loop {self.name!r} already started")
        self._started = True

    def start(self) -> threading.Thread:
        """Run the loop on a new thread named after it, and return that thread.

        Returns once the loop has built its modules and subscribed its receiver: every
        signal emitted after this returns reaches it. The thread blocks SIGINT, SIGTERM,
        SIGUSR1 and SIGUSR2 (see `block_signals`) and ends after ``Signaler.terminate()``;
        join it. An exception from a module ends the loop (after finalizing every module)
        and goes to ``threading.excepthook``.

        Raises:
            Exception: whatever a module constructor or ``get_signals`` raised (the thread
                has ended then).
            RuntimeError: the loop was already started.
        """
        self._claim()
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            block(THREAD_SIGNALS)
            try:
                loop = _Loop(self)
            except BaseException as exc:
                failure.append(exc)
                return
            finally:
                ready.set()
            loop.run_sync()

        thread = threading.Thread(target=main, name=self.name)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        return thread

    async def run_async(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the loop as the calling task, until ``Signaler.terminate()``.

        Module methods may be ``async def``. Start it with ``await tg.start(info.run_async)``
        to continue only once the loop has subscribed. Cancelling the task finalizes every
        module (shielded) and ends the loop.

        Raises:
            Exception: whatever a module raised, after every module was finalized.
            RuntimeError: the loop was already started.
        """
        self._claim()
        loop = _Loop(self)
        task_status.started()
        await loop.run_async()

    def __repr__(self) -> str:
        state = "started" if self._started else "not started"
        return f"<EventLoopInfo {self.name!r} modules={len(self._constructors)} {state}>"


@final
class ServiceInfo:
    """A service: a user-written loop run on a thread of its own.

    A service has no receiver of its own and ignores `Signaler.terminate` unless it
    registers a receiver itself and acts on ``Special(TERMINATE)``.

    Args:
        name: the name of the service's thread.
        constructor: ``constructor() -> Service``, called on the new thread.
    """

    __slots__ = ("_started", "constructor", "name")

    def __init__(self, name: str, constructor: Callable[[], Service]) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {name!r}")
        if not callable(constructor):
            raise TypeError(f"a service constructor must be callable, not {constructor!r}")
        self.name = name
        self.constructor = constructor
        self._started = False

    def start(self) -> threading.Thread:
        """Start a thread (SIGINT, SIGTERM, SIGUSR1, SIGUSR2 blocked) that runs
        ``constructor().run()``, and return it.

        Raises:
            RuntimeError: the service was already started.
        """
        if self._started:
            raise RuntimeError(f"service {self.name!r} already started")
        self._started = True

        def main() -> None:
            block(THREAD_SIGNALS)
            self.constructor().run()

        thread = threading.Thread(target=main, name=self.name)
        thread.start()
        return thread

    def __repr__(self) -> str:
        return f"<ServiceInfo {self.name!r}>"
