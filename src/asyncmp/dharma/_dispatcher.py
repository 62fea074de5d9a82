"""File-descriptor events dispatched to handlers: dharma's Dispatcher (an epoll wrapper).

A `Dispatcher` watches the file descriptors of its
`EventHandler`s and calls ``process_event(kind)`` when
one is ready, level-triggered: a handler that does not consume its readiness is called
again. Run it on a thread of its own with `run()`, or as a task with
``await dispatcher.run_async()``, which watches the same handlers through the running
event loop's fd watching (asyncio, uvloop or trio), without any extra thread.

Design note. The handlers live in one epoll set, the `asyncmp._lowlevel._poller.Poller`
that calloop polls through too, under their ids: adding or deleting a source from any
thread takes effect in the kernel at once, even while another thread waits, and `stop()`
wakes the wait at once. Readiness polled for a deleted registration never reaches a handler
that reused its fd number (the poller's module doc says how). The table of handlers is
guarded by ``lock``, but handlers are called *without* it, so a handler may add and delete
sources (its own included) or stop the dispatcher: dharma deadlocks there. Invariant (under
``lock``): ``handlers`` maps each live id to its handler and fd; ids count up from 1 and
are never reused. An event whose id is no longer in ``handlers`` when its turn comes is
dropped.

Linux only, like dharma (epoll): the module imports anywhere, and creating a `Dispatcher`
elsewhere raises `NotImplementedError`. Python has no ``Send`` bound, so there is one class:
`LocalDispatcher` is another name for `Dispatcher`.
"""

from __future__ import annotations

import enum
import threading
from typing import Protocol, final, runtime_checkable

import anyio

from .._closing import Closing
from .._errors import Closed
from .._lowlevel._check import check_int, check_timeout, is_int
from .._lowlevel._finalize import finalize
from .._lowlevel._linux import THREAD_SIGNALS, blocking
from .._lowlevel._poller import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLPRI, Poller
from .._lowlevel._public import NoPublicConstructor

__all__ = (
    "Dispatcher",
    "DispatcherController",
    "EventHandler",
    "EventHandlerId",
    "EventKind",
    "LocalDispatcher",
)

EventHandlerId = int
"""The id `add_source` returns: 1, 2, 3 … per dispatcher, never reused."""


class EventKind(enum.IntFlag):
    """What a handler is ready for; bits combine (``READ | WRITE``)."""

    READ = 1
    WRITE = 2
    HANGUP = 4
    """The other end hung up or the fd is in error; always watched, whatever was asked."""


_ALL = EventKind.READ | EventKind.WRITE | EventKind.HANGUP
_IN = EPOLLIN | EPOLLPRI
_HUP = EPOLLHUP | EPOLLERR


def _kind(events: int) -> EventKind:
    kind = EventKind(0)
    if events & _IN:
        kind |= EventKind.READ
    if events & EPOLLOUT:
        kind |= EventKind.WRITE
    if events & _HUP:
        kind |= EventKind.HANGUP
    return kind


@runtime_checkable
class EventHandler(Protocol):
    """What a dispatcher watches: an object with a file descriptor.

    It may also define ``set_id(id)``: the dispatcher calls it with the handler's id before
    it starts watching the fd.
    """

    def fileno(self) -> int:
        """The file descriptor to watch."""
        ...

    def process_event(self, kind: EventKind) -> None:
        """Handle readiness. If *kind* is exactly ``HANGUP``, the handler is deleted after
        this call returns."""
        ...


@final
class _DispatcherState:
    """The dispatcher's state; `Dispatcher` and `DispatcherController` both hold it."""

    def __init__(self) -> None:
        self.poller: Poller[int] = Poller()
        self.lock = threading.Lock()
        self.handlers: dict[int, tuple[EventHandler, int]] = {}
        self.next_id = 1
        self.stop_requested = False
        self.running = False
        self.closed = False

    def add_source(self, handler: EventHandler, kind: EventKind) -> EventHandlerId:
        if not callable(getattr(handler, "fileno", None)) or not callable(
            getattr(handler, "process_event", None)
        ):
            raise TypeError(f"an event handler needs fileno() and process_event(), not {handler!r}")
        if not is_int(kind):
            raise TypeError(f"kind must be an EventKind, not {kind!r}")
        if int(kind) & ~int(_ALL):
            raise ValueError(f"kind has unknown bits: {kind!r}")
        fd = check_int(handler.fileno(), f"the fileno() of {handler!r}")
        with self.lock:
            self._check_open()
            handler_id = self.next_id
            self.next_id += 1
        # Outside the lock: set_id may call back into the dispatcher.
        set_id = getattr(handler, "set_id", None)
        if set_id is not None:
            set_id(handler_id)
        mask = (_IN if kind & EventKind.READ else 0) | (EPOLLOUT if kind & EventKind.WRITE else 0)
        with self.lock:
            self._check_open()
            # In the table first, then in the poller: whatever instant an interrupt (Ctrl-C)
            # strikes, the poller never watches an fd the table does not know (its events
            # would be dropped at every poll, level-triggered: a busy loop).
            self.handlers[handler_id] = (handler, fd)
            try:
                self.poller.register(fd, mask, handler_id)
            except BaseException as exc:
                if not self.poller.holds(fd, handler_id):  # refused, or interrupted before
                    del self.handlers[handler_id]
                if isinstance(exc, FileExistsError):
                    raise ValueError(f"fd {fd} is already watched by this dispatcher") from None
                if isinstance(exc, OSError):
                    raise ValueError(f"cannot watch fd {fd}: {exc.strerror}") from exc
                raise
        return handler_id

    def delete_source(self, handler_id: EventHandlerId) -> EventHandler | None:
        with self.lock:
            entry = self.handlers.get(handler_id)
            if entry is None:
                return None
            handler, fd = entry
            # Only if the fd's number did not pass to a newer handler since. Out of the poller
            # first, then out of the table (as in `add_source`).
            self.poller.unregister(fd, handler_id)
            del self.handlers[handler_id]
        return handler

    def stop(self) -> None:
        with self.lock:
            self.stop_requested = True
            if not self.closed:
                self.poller.wakeup()

    def _check_open(self) -> None:
        if self.closed:
            raise Closed("this dispatcher is closed")

    def enter_run(self) -> bool:
        """Mark a run as started; ``False`` if a `stop()` was pending (consumed now)."""
        with self.lock:
            self._check_open()
            if self.running:
                raise RuntimeError("this dispatcher is already running")
            if self.stop_requested:
                self.stop_requested = False
                return False
            self.running = True
            return True

    def leave_run(self) -> None:
        with self.lock:
            self.running = False
            self.stop_requested = False

    def dispatch(self, timeout: float | None) -> int:
        """Wait up to *timeout* for events and process them; return the handlers called."""
        called = 0
        polled, _ = self.poller.poll(-1 if timeout is None else timeout)
        for handler_id, events in polled:
            with self.lock:
                if self.stop_requested and self.running:
                    break
                entry = self.handlers.get(handler_id)
            if entry is None:
                continue  # deleted after the poll, maybe by an earlier handler
            kind = _kind(events)
            entry[0].process_event(kind)
            called += 1
            if kind == EventKind.HANGUP:
                with self.lock:
                    still_ours = self.handlers.get(handler_id) is entry
                if still_ours:
                    self.delete_source(handler_id)
        return called

    def should_stop(self) -> bool:
        with self.lock:
            return self.stop_requested

    def __del__(self) -> None:
        # Neither the Dispatcher nor any controller is left: release the fds. The collection
        # may have started while this thread holds the poller's lock: `finalize` then defers.
        if not getattr(self, "closed", True):
            finalize((self.lock, self.poller._lock), self._collected)

    def _collected(self) -> None:
        self.running = False  # a run cut short by an exception cannot be running any more
        self.close()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            if self.running:
                raise RuntimeError("cannot close a running dispatcher; stop() it first")
            self.closed = True
            self.handlers.clear()
            self.poller.close()


@final
class Dispatcher(Closing):
    """Watches event handlers' file descriptors and calls them when ready.

    Use it from one thread that runs it (`run` or `run_async`); add and delete sources and
    stop it from anywhere, directly or through a
    `DispatcherController`. Close it with
    `close()` (or `with`) to release its epoll set and wake-up pipe; garbage collection
    does it too once no controller is left. Handlers' own fds are never closed.
    """

    __slots__ = ("__weakref__", "_state")

    def __init__(self) -> None:
        self._state = _DispatcherState()

    def get_controller(self) -> DispatcherController:
        """A handle for other threads: add and delete sources, stop the dispatcher."""
        return DispatcherController._create(self._state)

    def add_source(self, handler: EventHandler, kind: EventKind) -> EventHandlerId:
        """Start watching *handler*'s fd for *kind*, level-triggered; return its id.

        ``HANGUP`` is always watched. Takes effect at once, also from another thread or
        from a handler while the dispatcher runs.

        Raises:
            TypeError: *handler* lacks ``fileno()``/``process_event()``, or *kind* is not an
                EventKind.
            ValueError: the fd is not open, or already watched by this dispatcher.
            Closed: the dispatcher is closed.
        """
        return self._state.add_source(handler, kind)

    def delete_source(self, handler_id: EventHandlerId) -> EventHandler | None:
        """Stop watching the handler with *handler_id* and return it; ``None`` if unknown.

        Once this returns, the handler is not called again (unless a call to it was already
        under way on the dispatching thread).
        """
        return self._state.delete_source(handler_id)

    def run(self) -> None:
        """Dispatch events on the calling thread until `stop()`.

        A `stop()` made before `run()` makes it return at once; each `stop()` ends one run.
        The dispatcher may be run again afterwards. An exception from a handler ends the
        run and propagates.

        Raises:
            RuntimeError: it is already running.
            Closed: it is closed.
        """
        state = self._state
        if not state.enter_run():
            return
        # The signal handlers of SignalEventHandler run on the main thread; off it, block the
        # signals so that the kernel delivers them to the main thread (restored on return).
        off_main = threading.current_thread() is not threading.main_thread()
        try:
            with blocking(THREAD_SIGNALS, off_main):
                while not state.should_stop():
                    state.dispatch(None)
        finally:
            state.leave_run()

    async def run_async(self) -> None:
        """Dispatch events as a task of the running event loop until `stop()`.

        The dispatcher's epoll set is watched with the loop's own fd watching (asyncio,
        uvloop or trio), so no thread is involved; handlers run on the loop's thread.
        Cancelling the task ends the run. Otherwise as `run`.
        """
        state = self._state
        if not state.enter_run():
            await anyio.lowlevel.checkpoint()
            return
        try:
            while not state.should_stop():
                await anyio.wait_readable(state.poller.fileno())
                state.dispatch(0)
        finally:
            state.leave_run()

    def wait_and_process(self, timeout: float | None = None) -> int:
        """Wait up to *timeout* seconds (``0`` polls, ``None`` waits without limit) for
        events, process them, and return how many handlers were called. dharma's
        ``LocalDispatcher`` method, in seconds.

        Raises:
            Closed: it is closed.
            TypeError, ValueError: *timeout* is not ``None`` or a number of seconds ≥ 0.
        """
        timeout = check_timeout(timeout)
        state = self._state
        with state.lock:
            state._check_open()
        return state.dispatch(timeout)

    def stop(self) -> None:
        """Make the current run return at once (after the handler now running, if any), or
        the next run if none is under way. Any thread."""
        self._state.stop()

    def close(self) -> None:
        """Release the epoll set and the wake-up pipe. Idempotent.

        Raises:
            RuntimeError: it is running.
        """
        self._state.close()

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._state.closed

    def __repr__(self) -> str:
        state = self._state
        phase = "closed" if state.closed else "running" if state.running else "idle"
        return f"<Dispatcher {phase} sources={len(state.handlers)}>"


LocalDispatcher = Dispatcher
"""dharma's dispatcher for handlers that are not ``Send``; in Python the same class."""


@final
class DispatcherController(metaclass=NoPublicConstructor, made_by="Dispatcher.get_controller()"):
    """A dispatcher's remote control, from `Dispatcher.get_controller()`; any thread."""

    __slots__ = ("_state",)
    _state: _DispatcherState

    @classmethod
    def _create(cls, state: _DispatcherState) -> DispatcherController:
        self = object.__new__(cls)
        self._state = state
        return self

    def add_source(self, handler: EventHandler, kind: EventKind) -> EventHandlerId:
        """As `Dispatcher.add_source`."""
        return self._state.add_source(handler, kind)

    def delete_source(self, handler_id: EventHandlerId) -> EventHandler | None:
        """As `Dispatcher.delete_source`."""
        return self._state.delete_source(handler_id)

    def stop(self) -> None:
        """As `Dispatcher.stop`."""
        self._state.stop()

    def __repr__(self) -> str:
        return "<DispatcherController>"
