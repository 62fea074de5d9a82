"""executor: coroutines run by a calloop loop, with timers and fd readiness to await.

A coroutine scheduled on a `Scheduler` is stepped by its `Executor` source inside
``dispatch``; its return value is the event given to the executor's callback. Such a
coroutine may only await calloop awaitables: `TimeoutFuture` and the ``readable()`` /
``writable()`` of an `Async` fd (``LoopHandle.adapt_io``). Each resolves through a source of
the same loop and then reschedules the coroutine (thread-safely, through the executor's fd).
At most 1024 coroutine steps run per dispatch.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from .._errors import Closed
from .._lowlevel._finalize import finalize
from .._lowlevel._public import NoPublicConstructor
from ._errors import ExecutorDestroyed
from ._fd_source import FdSource
from ._poll import Interest, Mode, Readiness, WakeFd, fd_of
from ._source import PostAction, callback_action
from ._timer import TimeoutAction, Timer
from ._token import RegistrationToken, Token
from ._wakefd_source import WakeFdSource

if TYPE_CHECKING:
    from ._loop import LoopHandle

__all__ = ("Async", "Executor", "Scheduler", "TimeoutFuture", "executor")

T = TypeVar("T")
MAX_PER_DISPATCH = 1024


@final
class _LoopFuture(Generic[T]):
    """A one-shot result that a calloop coroutine awaits; resolved from the loop's thread."""

    __slots__ = ("_callbacks", "_done", "_error", "_result")

    def __init__(self) -> None:
        self._done = False
        self._result: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[], None]] = []

    def _set(self, result: Any = None, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done, self._result, self._error = True, result, error
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb()

    def _on_done(self, cb: Callable[[], None]) -> None:
        if self._done:
            cb()
        else:
            self._callbacks.append(cb)

    def __await__(self) -> Generator[Any, None, T]:
        while not self._done:
            yield self
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[no-any-return]


@final
class _Task:
    __slots__ = ("coro", "scheduled", "throw")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.scheduled = False
        self.throw: BaseException | None = None


@final
class _ExecutorState:
    __slots__ = ("alive", "fd", "lock", "runnable", "tasks")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # finalizers defer their work while it is held
        self.fd = WakeFd()
        self.alive = True
        self.runnable: deque[_Task] = deque()
        self.tasks: set[_Task] = set()

    def schedule(self, task: _Task) -> None:
        # From any thread: a task is queued at most once until it is stepped.
        with self.lock:
            if not self.alive or task.scheduled or task not in self.tasks:
                return
            task.scheduled = True
            self.runnable.append(task)
            self.fd.add(1)


@final
class Scheduler(Generic[T], metaclass=NoPublicConstructor, made_by="calloop.executor()"):
    """Schedules coroutines on its `Executor`; usable from any thread."""

    __slots__ = ("_state",)
    _state: _ExecutorState

    @classmethod
    def _create(cls, state: _ExecutorState) -> Scheduler[Any]:
        self: Scheduler[Any] = object.__new__(cls)
        self._state = state
        return self

    def schedule(self, coro: Coroutine[Any, Any, T]) -> None:
        """Run *coro* on the executor's loop; its result goes to the executor's callback.

        Raises:
            ExecutorDestroyed: the executor was closed (the coroutine is closed unrun).
            TypeError: *coro* is not a coroutine object.
        """
        if not inspect.iscoroutine(coro):
            raise TypeError(f"schedule() takes a coroutine object, not {coro!r}")
        state = self._state
        task = _Task(coro)
        with state.lock:
            if not state.alive:
                coro.close()
                raise ExecutorDestroyed("the calloop Executor of this Scheduler is closed")
            state.tasks.add(task)
        state.schedule(task)


@final
class Executor(
    WakeFdSource, Generic[T], metaclass=NoPublicConstructor, made_by="calloop.executor()"
):
    """The event source that runs scheduled coroutines; callback gets ``(result, None, data)``.

    The callback returns a `PostAction` (``None`` is ``CONTINUE``); one other than
    ``CONTINUE`` ends this dispatch's steps and is applied, and the coroutines not stepped
    yet run when the executor is registered again.

    An exception escaping a coroutine propagates from ``dispatch``. Closing the executor
    (``close()`` or garbage collection) closes the coroutines that have not finished.
    """

    __slots__ = ("__weakref__", "_state")
    _state: _ExecutorState

    def _wake_fd(self) -> WakeFd:
        if not self._state.alive:
            raise Closed("this Executor is closed")
        return self._state.fd

    def _is_open(self) -> bool:
        return self._state.alive

    @classmethod
    def _create(cls, state: _ExecutorState) -> Executor[Any]:
        self: Executor[Any] = object.__new__(cls)
        self._state = state
        self._poll = None
        self._token = None
        return self

    def process_events(
        self, readiness: Readiness, token: Token, callback: Callable[[T, None], object]
    ) -> PostAction:
        if token != self._token:
            return PostAction.CONTINUE
        state = self._state
        state.fd.take()
        with state.lock:
            n = min(len(state.runnable), MAX_PER_DISPATCH)
            batch = [state.runnable.popleft() for _ in range(n)]
            if state.runnable:
                state.fd.add(1)  # the rest run at the next dispatch
            for task in batch:
                task.scheduled = False
        for i, task in enumerate(batch):
            try:
                action = self._step(task, callback)
            except BaseException:
                for rest in batch[i + 1 :]:
                    state.schedule(rest)  # nothing is lost: they run at the next dispatch
                raise
            if action is not PostAction.CONTINUE:
                # The callback asked to stop (disable, remove …): the rest of the batch runs
                # when the executor is registered again.
                for rest in batch[i + 1 :]:
                    state.schedule(rest)
                return action
        return PostAction.CONTINUE

    def _step(self, task: _Task, callback: Callable[[T, None], object]) -> PostAction:
        """Run *task* one step; what the callback returned if it finished, else CONTINUE."""
        state = self._state
        try:
            if task.throw is not None:
                exc, task.throw = task.throw, None
                yielded = task.coro.throw(exc)
            else:
                yielded = task.coro.send(None)
        except StopIteration as stop:
            state.tasks.discard(task)
            return callback_action(callback(stop.value, None), "Executor")
        except BaseException:
            state.tasks.discard(task)
            raise
        if isinstance(yielded, _LoopFuture):
            yielded._on_done(lambda: state.schedule(task))
        else:
            task.throw = TypeError(
                f"a calloop coroutine can only await calloop awaitables, not {yielded!r}"
            )
            state.schedule(task)
        return PostAction.CONTINUE

    def close(self) -> None:
        """Close every unfinished coroutine and the executor's fd (idempotent)."""
        state = self._state
        if self._poll is not None:
            self.unregister(self._poll)
        with state.lock:
            if not state.alive:
                return
            state.alive = False
            tasks = list(state.tasks)
            state.tasks.clear()
            state.runnable.clear()
            state.fd.close()
        for task in tasks:
            task.coro.close()

    def __del__(self) -> None:
        # `finalize` defers the close while this thread holds a lock it takes (a schedule
        # allocates under the executor's lock).
        if getattr(self, "_state", None) is not None and self._state.alive:
            poll = self._poll
            locks = (self._state.lock,) if poll is None else (self._state.lock, poll._lock)
            finalize(locks, self.close)


def executor() -> tuple[Executor[Any], Scheduler[Any]]:
    """An `Executor` source to insert in a loop and its `Scheduler`."""
    state = _ExecutorState()
    return Executor._create(state), Scheduler._create(state)


@final
class TimeoutFuture(
    metaclass=NoPublicConstructor,
    made_by="TimeoutFuture.from_duration() or TimeoutFuture.from_deadline()",
):
    """An awaitable that completes (with ``None``) at a deadline, for executor coroutines.

    It inserts a `Timer` in the loop of *handle*; ``close()`` removes it if it has not fired.
    """

    __slots__ = ("_fut", "_handle", "_token")
    _fut: _LoopFuture[None]
    _handle: LoopHandle[Any]
    _token: RegistrationToken

    @classmethod
    def _create(cls, handle: LoopHandle[Any], timer: Timer) -> TimeoutFuture:
        self = object.__new__(cls)
        fut: _LoopFuture[None] = _LoopFuture()

        def fire(deadline: float, meta: None, data: object) -> TimeoutAction:
            fut._set(None)
            return TimeoutAction.drop()

        self._fut = fut
        self._handle = handle
        self._token = handle.insert_source(timer, fire)
        return self

    @classmethod
    def from_duration(cls, handle: LoopHandle[Any], duration: float) -> TimeoutFuture:
        """Complete *duration* seconds from now."""
        return cls._create(handle, Timer.from_duration(duration))

    @classmethod
    def from_deadline(cls, handle: LoopHandle[Any], deadline: float) -> TimeoutFuture:
        """Complete at *deadline* (a ``time.monotonic()`` value)."""
        return cls._create(handle, Timer.from_deadline(deadline))

    def done(self) -> bool:
        """Whether the deadline has been reached (and processed by the loop)."""
        return self._fut._done and self._fut._error is None

    def close(self) -> None:
        """Remove the timer if it has not fired (idempotent)."""
        if not self._fut._done:
            self._handle.remove(self._token)
            self._fut._set(None, Closed("this TimeoutFuture was closed"))

    def __await__(self) -> Generator[Any, None, None]:
        return self._fut.__await__()


@final
class Async(metaclass=NoPublicConstructor, made_by="LoopHandle.adapt_io()"):
    """An fd adapted for executor coroutines by ``LoopHandle.adapt_io(fd)``.

    ``await a.readable()`` / ``await a.writable()`` resume when the loop sees the fd ready.
    The fd is made non-blocking while adapted; ``close()`` removes it from the loop and
    restores its blocking mode (the fd itself stays open).
    """

    __slots__ = ("_blocking", "_fd", "_generic", "_handle", "_readers", "_token", "_writers")
    _fd: int
    _blocking: bool
    _generic: FdSource[int]
    _handle: LoopHandle[Any] | None
    _token: RegistrationToken
    _readers: list[_LoopFuture[None]]
    _writers: list[_LoopFuture[None]]

    @classmethod
    def _create(cls, handle: LoopHandle[Any], fd: Any) -> Async:
        self = object.__new__(cls)
        self._fd = fd_of(fd)
        self._readers, self._writers = [], []
        self._generic = FdSource(self._fd, Interest.EMPTY, Mode.ONESHOT)
        self._token = handle.insert_source(self._generic, self._ready)
        self._handle = handle
        self._blocking = os.get_blocking(self._fd)
        os.set_blocking(self._fd, False)
        return self

    def fileno(self) -> int:
        """The adapted fd."""
        return self._fd

    def readable(self) -> _LoopFuture[None]:
        """An awaitable that completes when the fd is readable (or hung up)."""
        return self._wait(self._readers)

    def writable(self) -> _LoopFuture[None]:
        """An awaitable that completes when the fd is writable."""
        return self._wait(self._writers)

    def _wait(self, waiters: list[_LoopFuture[None]]) -> _LoopFuture[None]:
        if self._handle is None:
            raise Closed("this Async fd is closed")
        fut: _LoopFuture[None] = _LoopFuture()
        waiters.append(fut)
        self._generic.interest = self._interest()
        self._handle.update(self._token)
        return fut

    def _interest(self) -> Interest:
        interest = Interest.EMPTY
        if self._readers:
            interest |= Interest.READ
        if self._writers:
            interest |= Interest.WRITE
        return interest

    def _ready(self, readiness: Readiness, fd: int, data: object) -> PostAction:
        if readiness.readable or readiness.error:
            readers, self._readers = self._readers, []
            for fut in readers:
                fut._set(None)
        if readiness.writable or readiness.error:
            writers, self._writers = self._writers, []
            for fut in writers:
                fut._set(None)
        self._generic.interest = self._interest()
        return PostAction.REREGISTER  # re-arm the oneshot registration

    def close(self) -> None:
        """Remove the fd from the loop; pending waits raise ``asyncmp.Closed`` (idempotent)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        handle.remove(self._token)
        os.set_blocking(self._fd, self._blocking)
        for fut in self._readers + self._writers:
            fut._set(None, Closed("this Async fd was closed"))
        self._readers, self._writers = [], []
