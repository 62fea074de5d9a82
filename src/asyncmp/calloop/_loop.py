"""EventLoop, LoopHandle, LoopSignal and Idle: calloop's ``loop_logic.rs``.

One dispatch runs the steps of calloop's ``dispatch_events`` in order (the dispatch steps of
docs/design.md):

1. ``before_sleep()`` of each lifecycle source, in insertion order; a synthetic event makes
   the poll timeout zero.
2. Poll for min(timeout, time to the earliest timer); due timers follow the fd events.
3. ``before_handle_events(events)`` of each lifecycle source, with its own polled events.
4. Each event (synthetic first) goes to its source's ``process_events``, unless the token
   is stale or the source was disabled meanwhile; then the resulting `PostAction` is applied.
5. The idle callbacks queued before this step run, in insertion order.

The loop is single-threaded: only `LoopSignal`, pings and channel senders are for other threads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from .._lowlevel._check import check_timeout
from .._lowlevel._public import NoPublicConstructor
from ._errors import InsertError, InvalidToken
from ._poll import Poll, Readiness
from ._source import EventSource, PostAction
from ._token import RegistrationToken, Token, TokenFactory

if TYPE_CHECKING:
    from ._executor import Async

__all__ = ("EventLoop", "Idle", "LoopHandle", "LoopSignal")

Data = TypeVar("Data")
E = TypeVar("E")
M = TypeVar("M")
R = TypeVar("R")

_log = logging.getLogger("asyncmp.calloop")
_CONTINUE = PostAction.CONTINUE
_REREGISTER = PostAction.REREGISTER
_NO_EVENTS: list[tuple[Readiness, Token]] = []  # never appended to: shared, read only


@final
class _Slot:
    __slots__ = ("callback", "enabled", "lifecycle", "rearm", "source", "token")

    def __init__(self, source: Any, callback: Any, token: RegistrationToken) -> None:
        self.source = source
        self.callback = callback
        self.token = token
        self.enabled = True
        self.lifecycle = hasattr(source, "before_sleep") or hasattr(source, "before_handle_events")
        # A built-in source's `reregister` after its own event, without a TokenFactory
        # (`Timer._rearm`): it keeps the token it holds, which equals the first one a fresh
        # factory would make. Returns False when it cannot (then `reregister` runs).
        self.rearm: Callable[[Poll], bool] | None = getattr(source, "_rearm", None)


@final
class Idle(metaclass=NoPublicConstructor, made_by="LoopHandle.insert_idle()"):
    """An idle callback queued by `LoopHandle.insert_idle`; it runs after the next events.

    Dropping an ``Idle`` does not cancel it (as in calloop); call
    `cancel`.
    """

    __slots__ = ("_callback", "_cancelled")
    _callback: Callable[[Any], object]
    _cancelled: bool

    @classmethod
    def _create(cls, callback: Callable[[Any], object]) -> Idle:
        self = object.__new__(cls)
        self._callback = callback
        self._cancelled = False
        return self

    def cancel(self) -> None:
        """Prevent the callback from running, if it has not run yet (idempotent)."""
        self._cancelled = True


@final
class _Stop:
    # A plain attribute: setting a bool is atomic under the GIL, and run() re-reads it
    # after every dispatch; the wake-up ping ends a poll that is already waiting.
    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False


@final
class _Inner:
    """State shared by the EventLoop and its handles; single-threaded."""

    __slots__ = (
        "closed",
        "current",
        "current_removed",
        "dispatching",
        "idles",
        "lifecycles",
        "pending_action",
        "poll",
        "slots",
        "stop",
        "versions",
    )

    def __init__(self) -> None:
        self.poll = Poll._create()
        # Invariant: slots[i] is None exactly when slot i is free; versions[i] is the version
        # a live token of slot i carries, bumped each time the slot is freed.
        self.slots: list[_Slot | None] = []
        self.versions: list[int] = []
        self.idles: list[Idle] = []
        # How many live slots hold a source with lifecycle hooks: while none does, a
        # dispatch skips steps 1 and 3 without looking at every slot.
        self.lifecycles = 0
        self.stop = _Stop()
        self.dispatching = False
        self.closed = False
        # The slot whose process_events is running, and what its callback asked for itself.
        self.current: int | None = None
        self.current_removed = False
        self.pending_action: PostAction | None = None

    def lookup(self, token: RegistrationToken) -> _Slot:
        if not isinstance(token, RegistrationToken):
            raise TypeError(f"expected a RegistrationToken, not {token!r}")
        slot_id = token._slot
        if slot_id < len(self.slots):
            slot = self.slots[slot_id]
            if slot is not None and slot.token == token:
                return slot
        raise InvalidToken(f"{token!r} names no source of this loop (it was removed)")

    def factory(self, token: RegistrationToken) -> TokenFactory:
        return TokenFactory._create(token._slot, token._version)

    def free(self, slot_id: int) -> None:
        slot = self.slots[slot_id]
        if slot is not None and slot.lifecycle:
            self.lifecycles -= 1
        self.slots[slot_id] = None
        self.versions[slot_id] += 1

    def check_open(self) -> None:
        if self.closed:
            from .._errors import Closed

            raise Closed("this calloop EventLoop is closed")


@final
class LoopHandle(Generic[Data], metaclass=NoPublicConstructor, made_by="EventLoop.handle()"):
    """Inserts, enables, disables, updates and removes the sources of one `EventLoop`.

    Get one with `EventLoop.handle`; it may be used inside callbacks. Like calloop's handle
    it is for the loop's own thread (use a `LoopSignal`, a ping or a channel from others).
    """

    __slots__ = ("_inner",)
    _inner: _Inner

    @classmethod
    def _create(cls, inner: _Inner) -> LoopHandle[Any]:
        self: LoopHandle[Any] = object.__new__(cls)
        self._inner = inner
        return self

    def insert_source(
        self, source: EventSource[E, M, R], callback: Callable[[E, M, Data], R]
    ) -> RegistrationToken:
        """Insert *source*; *callback(event, metadata, data)* gets its events.

        A source inserted inside a callback gets its events from the next dispatch.

        Raises:
            InsertError: registering failed; the source is in ``.source``, the cause in
                ``__cause__``.
            TypeError: *source* lacks the `EventSource` methods or *callback* is not callable.
        """
        inner = self._inner
        inner.check_open()
        for name in ("register", "reregister", "unregister", "process_events"):
            if not callable(getattr(source, name, None)):
                raise TypeError(f"{source!r} is not an EventSource: it has no {name}() method")
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        slot_id = next((i for i, s in enumerate(inner.slots) if s is None), len(inner.slots))
        if slot_id == len(inner.slots):
            inner.slots.append(None)
            inner.versions.append(0)
        token = RegistrationToken._create(slot_id, inner.versions[slot_id])
        try:
            source.register(inner.poll, inner.factory(token))
        except Exception as exc:
            inner.versions[slot_id] += 1  # tokens the source made must stay invalid
            raise InsertError(source, f"could not insert {source!r}: {exc}") from exc
        slot = inner.slots[slot_id] = _Slot(source, callback, token)
        if slot.lifecycle:
            inner.lifecycles += 1
        return token

    def insert_idle(self, callback: Callable[[Data], object]) -> Idle:
        """Queue *callback(data)* to run once, after the events of the next dispatch.

        Idles inserted while idles run wait for the next dispatch.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        self._inner.check_open()
        idle = Idle._create(callback)
        self._inner.idles.append(idle)
        return idle

    def adapt_io(self, fd: Any) -> Async:
        """Adapt *fd* for executor coroutines: ``await a.readable()`` / ``a.writable()``.

        See `Async`; the fd is non-blocking until ``a.close()``.
        """
        from ._executor import Async

        self._inner.check_open()
        return Async._create(self, fd)

    def enable(self, token: RegistrationToken) -> None:
        """Re-register a disabled source (a no-op if it is enabled).

        Raises:
            InvalidToken: the source was removed.
            RuntimeError: called from the source's own callback (return
                ``PostAction.REREGISTER`` instead).
        """
        inner = self._inner
        slot = inner.lookup(token)
        if inner.current == token._slot:
            raise RuntimeError("a source cannot enable itself from its own callback")
        if not slot.enabled:
            slot.source.register(inner.poll, inner.factory(token))
            slot.enabled = True

    def update(self, token: RegistrationToken) -> None:
        """Re-register an enabled source so changed settings take effect.

        From the source's own callback this is applied after the callback returns
        ``CONTINUE``. A disabled source picks up its settings when enabled.

        Raises:
            InvalidToken: the source was removed.
        """
        inner = self._inner
        slot = inner.lookup(token)
        if inner.current == token._slot:
            inner.pending_action = PostAction.REREGISTER
        elif slot.enabled:
            slot.source.reregister(inner.poll, inner.factory(token))

    def disable(self, token: RegistrationToken) -> None:
        """Unregister a source but keep its token valid (a no-op if already disabled).

        An event of it already polled in this dispatch is dropped. From the source's own
        callback it is applied after the callback returns ``CONTINUE``.

        Raises:
            InvalidToken: the source was removed.
        """
        inner = self._inner
        slot = inner.lookup(token)
        if inner.current == token._slot:
            inner.pending_action = PostAction.DISABLE
        elif slot.enabled:
            slot.source.unregister(inner.poll)
            slot.enabled = False

    def remove(self, token: RegistrationToken) -> None:
        """Remove a source and free its token; a stale token is a no-op (as in calloop).

        From the source's own callback the callback is never called again and the source
        is unregistered once it returns.
        """
        inner = self._inner
        try:
            slot = inner.lookup(token)
        except InvalidToken:
            return
        inner.free(token._slot)
        if inner.current == token._slot:
            inner.current_removed = True
        elif slot.enabled:
            slot.source.unregister(inner.poll)


@final
class LoopSignal(metaclass=NoPublicConstructor, made_by="EventLoop.get_signal()"):
    """Stops or wakes an `EventLoop` from any thread (calloop's ``LoopSignal``)."""

    __slots__ = ("_poll", "_stop")
    _stop: _Stop
    _poll: Poll

    @classmethod
    def _create(cls, stop: _Stop, poll: Poll) -> LoopSignal:
        self = object.__new__(cls)
        self._stop = stop
        self._poll = poll
        return self

    def stop(self) -> None:
        """Make ``run``/``run_async`` return after the current dispatch.

        It does not end a poll that is waiting; call `wakeup`
        too. A stop issued before ``run`` starts is discarded (as in calloop).
        """
        self._stop.requested = True

    def wakeup(self) -> None:
        """Make the current (or next) poll return at once, from any thread."""
        self._poll._wakeup()


@final
class EventLoop(Generic[Data]):
    """A callback-based event loop of event sources (calloop's ``EventLoop``).

    Insert sources through `handle`, then step it with
    `dispatch`, loop with
    `run` on a thread, or nest it in the running asyncio or
    trio loop with `run_async`. ``data`` is any object,
    passed to every callback as its last argument.

    Single-threaded: one thread (or one task) dispatches at a time; a dispatch from inside
    a callback raises ``RuntimeError``. Close it with ``close()`` or ``with``.
    """

    __slots__ = ("__weakref__", "_inner")

    def __init__(self) -> None:
        self._inner = _Inner()

    def handle(self) -> LoopHandle[Data]:
        """A handle to insert and manage sources."""
        return LoopHandle._create(self._inner)

    def get_signal(self) -> LoopSignal:
        """A thread-safe `LoopSignal` to stop or wake this loop."""
        return LoopSignal._create(self._inner.stop, self._inner.poll)

    def fileno(self) -> int:
        """The poller's fd, readable while an event is pending: watch it to nest this loop.

        Timers do not make it readable: also wake for the next deadline (``run_async`` does).
        """
        return self._inner.poll.fileno()

    def dispatch(self, timeout: float | None, data: Data) -> None:
        """Wait up to *timeout* seconds (``None``: no limit) for events, then process them.

        Runs the five steps of the module doc once. An exception raised by a callback or a
        source aborts the rest of this dispatch (no idles run) and propagates.
        """
        inner = self._inner
        if inner.closed or inner.dispatching:
            self._enter()  # raises the error that says which
        inner.dispatching = True
        try:
            t = check_timeout(timeout)
            synthetic = self._before_sleep() if inner.lifecycles else _NO_EVENTS
            self._process(synthetic, 0.0 if synthetic else t, data)
        finally:
            inner.dispatching = False

    def run(
        self, timeout: float | None, data: Data, cb: Callable[[Data], object] | None = None
    ) -> None:
        """Dispatch until a `LoopSignal` stops the loop; ``cb(data)`` runs after each dispatch.

        A ``stop()`` issued before ``run`` is discarded; after ``stop()`` the current
        dispatch finishes and *cb* runs once more.
        """
        stop = self._inner.stop
        stop.requested = False
        while not stop.requested:
            self.dispatch(timeout, data)
            if cb is not None:
                cb(data)

    async def run_async(self, data: Data, cb: Callable[[Data], object] | None = None) -> None:
        """Run this loop nested in the running asyncio (or trio) event loop until stopped.

        Waits for the poller's fd with the host loop's fd watching, or for the next timer,
        then dispatches without blocking; ``cb(data)`` runs after each dispatch. Returns
        when a `LoopSignal` stops it; cancelling the awaiting task ends it too.
        """
        import anyio
        import anyio.lowlevel

        inner = self._inner
        inner.stop.requested = False
        while not inner.stop.requested:
            self._enter()
            try:
                synthetic = self._before_sleep() if inner.lifecycles else _NO_EVENTS
            finally:
                inner.dispatching = False
            wait = 0.0 if synthetic or inner.idles else inner.poll._time_to_next_timer()
            if wait is None or wait > 0:
                with anyio.move_on_after(math.inf if wait is None else wait):
                    await anyio.wait_readable(inner.poll.fileno())
            else:
                await anyio.lowlevel.checkpoint()
            self._enter()
            try:
                self._process(synthetic, 0.0, data)
            finally:
                inner.dispatching = False
            if cb is not None:
                cb(data)

    def close(self) -> None:
        """Unregister every source, drop pending idles and close the poller (idempotent)."""
        inner = self._inner
        if inner.closed:
            return
        if inner.dispatching:
            raise RuntimeError("cannot close an EventLoop while it dispatches")
        inner.closed = True
        for i, slot in enumerate(inner.slots):
            if slot is not None:
                inner.free(i)
                if slot.enabled:
                    try:
                        slot.source.unregister(inner.poll)
                    except Exception:  # closing must not stop half-way
                        _log.exception("unregistering %r failed while closing", slot.source)
        inner.idles.clear()
        inner.poll._close()

    def __enter__(self) -> EventLoop[Data]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        inner = self._inner
        n = sum(s is not None for s in inner.slots)
        state = "closed" if inner.closed else f"sources: {n}, idles: {len(inner.idles)}"
        return f"<calloop.EventLoop [{state}]>"

    # -- the steps of one dispatch ------------------------------------------------------

    def _enter(self) -> _Inner:
        inner = self._inner
        inner.check_open()
        if inner.dispatching:
            raise RuntimeError("this EventLoop is already dispatching (called from a callback?)")
        inner.dispatching = True
        return inner

    def _before_sleep(self) -> list[tuple[Readiness, Token]]:
        # Step 1: lifecycle sources may ask not to sleep by returning a synthetic event.
        synthetic: list[tuple[Readiness, Token]] = []
        for slot in self._lifecycle():
            hook = getattr(slot.source, "before_sleep", None)
            if hook is not None:
                got = hook()
                if got is not None:
                    readiness, token = got
                    synthetic.append((readiness, token))
        return synthetic

    def _lifecycle(self) -> list[_Slot]:
        return [s for s in self._inner.slots if s is not None and s.lifecycle and s.enabled]

    def _process(
        self, synthetic: list[tuple[Readiness, Token]], timeout: float | None, data: Data
    ) -> None:
        inner = self._inner
        # Step 2: poll; due timers come after fd events.
        events = inner.poll._poll(timeout)
        # Step 3: each lifecycle source sees its own real events (maybe none).
        if inner.lifecycles:
            for lifecycle in self._lifecycle():
                hook = getattr(lifecycle.source, "before_handle_events", None)
                if hook is not None:
                    mine = [(r, t) for r, t in events if t._slot == lifecycle.token._slot]
                    hook(mine)
        # Step 4: synthetic events first, then the polled ones (`_process_one`, inlined:
        # this runs per event).
        if synthetic:
            events = synthetic + events
        slots = inner.slots
        for readiness, token in events:
            slot_id = token._slot
            slot = slots[slot_id] if slot_id < len(slots) else None
            if slot is None or slot.token._version != token._version:
                _log.debug("dropping an event for a removed source (%r)", token)
                continue
            if not slot.enabled:
                continue  # disabled earlier in this dispatch: its polled event is dropped
            self._process_one(slot, slot_id, readiness, token, data)
        # Step 5: only the idles queued before this point.
        if not inner.idles:
            return
        idles, inner.idles = inner.idles, []
        for i, idle in enumerate(idles):
            if idle._cancelled:
                continue
            idle._cancelled = True  # ran: a later cancel() is a no-op
            try:
                idle._callback(data)
            except BaseException:
                inner.idles[:0] = idles[i + 1 :]  # the rest still run, at the next dispatch
                raise

    def _process_one(
        self, slot: _Slot, slot_id: int, readiness: Readiness, token: Token, data: Data
    ) -> None:
        inner = self._inner
        user_cb = slot.callback

        def callback(event: Any, metadata: Any) -> Any:
            return user_cb(event, metadata, data)

        # Invariant between events: current is None, current_removed False and
        # pending_action None (the finally below restores them).
        inner.current = slot_id
        try:
            ret = slot.source.process_events(readiness, token, callback)
        finally:
            removed, pending = inner.current_removed, inner.pending_action
            inner.current = None
            if removed or pending is not None:
                inner.current_removed = False
                inner.pending_action = None
                if removed and slot.enabled:
                    slot.source.unregister(inner.poll)  # removed itself via handle.remove()
        if removed:
            return
        if ret is None or ret is _CONTINUE:
            if pending is not None:
                self._apply(slot, slot_id, pending)
            return
        if ret is _REREGISTER:  # `_apply`'s, inlined: every periodic timer's, each period
            if slot.enabled:
                rearm = slot.rearm
                if rearm is None or not rearm(inner.poll):
                    tok = slot.token
                    factory = TokenFactory._create(tok._slot, tok._version)
                    slot.source.reregister(inner.poll, factory)
            return
        if not isinstance(ret, PostAction):
            raise TypeError(f"{slot.source!r}.process_events returned {ret!r}, not a PostAction")
        self._apply(slot, slot_id, ret)

    def _reregister(self, slot: _Slot) -> None:
        token = slot.token
        slot.source.reregister(self._inner.poll, TokenFactory._create(token._slot, token._version))

    def _apply(self, slot: _Slot, slot_id: int, action: PostAction) -> None:
        inner = self._inner
        if action is _CONTINUE:
            return
        if action is _REREGISTER:
            if slot.enabled:
                self._reregister(slot)
        elif action is PostAction.DISABLE:
            if slot.enabled:
                slot.source.unregister(inner.poll)
                slot.enabled = False
        else:  # REMOVE
            inner.free(slot_id)
            if slot.enabled:
                slot.source.unregister(inner.poll)
