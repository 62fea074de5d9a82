"""What the two dispatch loops share: the loop's state machine, the control-flow values,
the join handle, the watchdog.

Design note. A dispatch loop (`asyncmp.task.spawn`, `asyncmp.thread.spawn`) owns the
`Server` end of a fresh channel and feeds its requests, one at a time, to a handler. Its
decisions — building the handler inside ``spawn``, what to call when, what ``proc_req``'s
result means, what a failure does under ``on_error``, how the loop ends and what its handle
yields — are one state machine that does no I/O, `DispatchLoop`, written once here. Two thin
faces drive it: ``task.py`` awaits (the loop is a task), ``thread.py`` blocks (the loop is a
thread); each waits for requests, calls the handler and awaits — or, blocking, refuses — what
it returns, and asks the state machine everything else. The same split serves the Stage
(``_stage.py``'s ``_begin`` / ``_resume`` behind ``enter`` and ``blocking.enter``).

Invariants:
- A request whose ``proc_req`` failed — raised, or returned something that is not a flow
  value — is answered with `NoReply` (cause: the exception) before anything else happens,
  unless it was answered already. Then ``on_error`` decides: ``"stop"`` ends the loop with
  the exception (ump-server's rule), ``"continue"`` logs it and goes on, a callable is
  called and the loop goes on unless it raises. Only an ``Exception`` is a handler error:
  cancellation, KeyboardInterrupt and SystemExit always end the loop.
- The loop holds the `Server` and a `WeakClient`, never a strong `Client`: only the
  application's clients keep the loop alive (ump-server's rule).
- The server is closed the moment the loop ends, for any reason, before ``term`` runs, so
  requests queued behind a ``Break`` or a raise fail with `ServerDisappeared` at once.
- A loop that ends by an exception (not a cancellation) logs it at ERROR, with its
  traceback, at that moment, and closes the server *with a reason*: every
  `ServerDisappeared` its callers get from then on says which loop stopped and why, with
  the exception as its ``__cause__``. Nothing about a failure waits for a join.
- A `JoinHandle` is finished exactly once, after the server was closed; its outcome is
  stored before any joiner is woken, so a woken joiner reads it without the lock.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar, final

import anyio

from ._channel import Client, ReplyContext, Server, WeakClient, new_channel
from ._lowlevel._check import check_period, check_timeout
from ._lowlevel._finalize import finalize
from ._lowlevel._format import seconds
from ._lowlevel._outcome import Failure, OutcomeCell
from ._lowlevel._public import NoPublicConstructor
from ._lowlevel._wake import ensure_blocking_allowed

__all__ = ("Break", "Continue", "JoinHandle")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

logger = logging.getLogger("asyncmp")


@final
@dataclass(frozen=True)
class Break(Generic[T_co]):
    """Returned by a handler's ``proc_req`` to end the dispatch loop with *value*.

    The loop stops taking requests, closes the server (requests still queued get
    `ServerDisappeared`), calls ``term(value)`` if the handler
    has one, and the `JoinHandle` yields what ``term`` returned
    (*value* itself without ``term``). ump-server's ``ControlFlow::Break(rv)``.
    """

    value: T_co
    """What the loop ends with."""


@final
class Continue:
    """Returned by a handler's ``proc_req`` to go on with the next request.

    Returning ``None`` (falling off the end of ``proc_req``) means the same. ``Continue`` is
    a singleton: ``Continue()`` returns it, and returning the class ``Continue`` itself is
    accepted too. ump-server's ``ControlFlow::Continue(())``.
    """

    __slots__ = ()
    _instance: ClassVar[Continue]

    def __new__(cls) -> Continue:
        return cls._instance

    def __repr__(self) -> str:
        return "Continue()"


Continue._instance = object.__new__(Continue)


def check_flow(flow: object) -> Break[Any] | None:
    """Read what ``proc_req`` returned: a `Break` to stop, ``None`` to go on."""
    if flow is None or flow is Continue or type(flow) is Continue:
        return None
    if type(flow) is Break:
        return flow
    raise TypeError(
        f"proc_req must return None, Continue or Break(value), not {flow!r}; "
        "send replies with rctx.reply(...)"
    )


def abort_request(rctx: ReplyContext[Any], exc: BaseException) -> None:
    """``proc_req`` raised *exc*: the request in hand gets `NoReply` (cause *exc*) unless it
    was answered — the same as leaving a ``with rctx:`` block by that exception."""
    rctx.__exit__(type(exc), exc, exc.__traceback__)


# The docstring of both spawns but their first paragraphs: `spawn_doc` fills it in.
_SPAWN_DOC = """\
The loop calls the handler's ``init``, then ``proc_req(msg, rctx)`` for each request, one
at a time, in the order they were sent; requests withdrawn by their sender (cancelled,
timed out) are skipped. It ends when ``proc_req`` returns ``Break(value)`` or when every
strong client is closed and the queue is drained; then the server is closed (anything
still queued fails with `ServerDisappeared`), ``term`` is called, and the handle yields
its result.

If ``proc_req`` raises (or returns something other than ``None``, ``Continue`` or a
``Break``), the request in hand gets `NoReply` whose ``__cause__`` is the exception,
unless it was answered; then *on_error* decides. By default the exception is logged at
once (ERROR, with its traceback, on the ``asyncmp`` logger), the server is closed (later
callers' `ServerDisappeared` names the exception), the loop ends, and joining the handle
raises that exception. An exception from ``init`` or ``term`` always ends the loop so.

{ending}

Args:
    make_handler: Builds the handler: ``make_handler(client)`` with the server's first
        client, the one ``spawn`` returns (a ``lambda client: Handler()``, or a class
        whose ``__init__`` takes the client; not the handler class itself). The handler
        should not keep *client* or a clone of it: a client it keeps keeps the loop
        running. A handler that must reach its own server keeps the weak client that its
        ``init`` receives.
    max_queued: Bound of the channel (see `channel`).
    name: {name}
    watchdog: If set, a ``proc_req`` that runs longer than this many seconds logs a
        warning on the ``asyncmp`` logger (the request still completes).{arguments}
    on_error: What a failing ``proc_req`` does to the loop (its request has had
        ``NoReply`` either way). ``"stop"`` (the default, ump-server's rule): the loop ends
        with the exception. ``"continue"``: the exception is logged on the ``asyncmp``
        logger and the loop goes on with the next request. A callable:
        ``on_error(exc, msg)`` runs {on_error_runs}, and the loop goes on unless it
        raises, in which case the loop ends with what it raised. Only an ``Exception``
        counts: {always_ends} always end the loop.

Returns:
    The application's client and the loop's `JoinHandle`.

Raises:
    TypeError: bad arguments; {type_error}.
    ValueError: *on_error* is a string other than ``"stop"`` or ``"continue"``.{raises}
    Exception: whatever ``make_handler`` raised (then no loop runs).
"""

F = TypeVar("F", bound=Callable[..., Any])


def spawn_doc(**face: str) -> Callable[[F], F]:
    """Complete a ``spawn``'s docstring — its own first paragraphs, which tools that read
    the source show — with what the two share, written once: the life of the loop, its
    failures, the arguments, what it returns and raises. *face* fills in each face's own
    words: ``ending`` (a paragraph), ``name``, ``arguments`` (more ``Args`` entries),
    ``on_error_runs``, ``always_ends``, ``type_error`` and ``raises`` (more ``Raises``
    entries)."""

    def document(spawn: F) -> F:
        own = inspect.cleandoc(spawn.__doc__ or "")
        spawn.__doc__ = f"{own}\n\n{_refill(_SPAWN_DOC.format(**face))}"
        return spawn

    return document


def _refill(doc: str, width: int = 88) -> str:
    """Wrap a Google-style docstring anew at *width*, once a face's words are in: each
    paragraph, and each section entry with its continuation lines (indented 4 more), is one
    run of words; blank lines and section headers (``Args:``) stay as they are."""
    out: list[str] = []
    words: list[str] = []
    first = rest = ""

    def flush() -> None:
        if words:
            out.extend(
                textwrap.wrap(
                    " ".join(words),
                    width,
                    initial_indent=first,
                    subsequent_indent=rest,
                    break_on_hyphens=False,
                )
            )
            words.clear()

    for line in doc.splitlines():
        text = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if not text or (not indent and text.endswith(":") and " " not in text):
            flush()
            out.append(text)  # a blank line, or a section header
        elif indent == "    " or (not indent and not words):
            flush()  # a paragraph, or a section entry, begins
            first, rest = indent, indent + "    " if indent else ""
            words.extend(text.split())
        else:
            words.extend(text.split())  # the unit goes on
    flush()
    return "\n".join(out) + "\n"


def check_factory(make_handler: Callable[..., object]) -> None:
    """Refuse, with what to write instead, a *make_handler* that cannot take the client:
    typically the handler class itself, ``spawn(Adder)``, whose ``__init__`` takes nothing.

    Only the signature is checked (no call), so a ``TypeError`` raised inside a good
    factory still comes out of ``spawn`` as it is."""
    try:
        signature = inspect.signature(make_handler)
    except (TypeError, ValueError):
        return  # no signature to read (some builtins): the call will tell
    try:
        signature.bind(None)
    except TypeError:
        pass
    else:
        return
    if isinstance(make_handler, type):
        what = f"the class {make_handler.__qualname__}, whose constructor"
        example = f"lambda client: {make_handler.__qualname__}()"
    else:
        what = f"{getattr(make_handler, '__qualname__', repr(make_handler))}, which"
        example = "lambda client: MyHandler(client.weak())"
    raise TypeError(
        f"make_handler is {what} does not take the client: spawn() calls "
        f"make_handler(client) to build the handler, so pass a factory, e.g. {example}"
    )


def _short(exc: BaseException) -> str:
    """``repr(exc)``, cut to a length that suits a one-line message."""
    text = repr(exc)
    return text if len(text) <= 200 else text[:197] + "..."


def close_server(server: Server[Any, Any], reason: str | None, cause: BaseException | None) -> None:
    """Close *server*; with a *reason*, every `ServerDisappeared` the channel raises from
    now on — to the requests queued now and to every later send — says *reason* and has
    *cause* as its ``__cause__`` (``Server._close_with``)."""
    if reason is None:
        server.close()
    else:
        server._close_with(reason, cause)


def loop_failed(server: Server[Any, Any], name: str, exc: BaseException, where: str) -> None:
    """The loop *name* ends because *exc* was raised in *where* (``proc_req(Get)``,
    ``init()`` …): log it now, with its traceback, and close the server with the reason."""
    reason = f"dispatch loop {name!r} stopped: {_short(exc)}"
    logger.error(
        "%s, raised in %s; requests still queued and every later one get ServerDisappeared, "
        "and joining the loop's handle raises the exception",
        reason,
        where,
        exc_info=exc,
    )
    close_server(server, reason, exc)


def loop_cancelled(server: Server[Any, Any], name: str) -> None:
    """The loop's task was cancelled: close the server, telling later callers why."""
    close_server(
        server,
        f"dispatch loop {name!r} was cancelled: a task.spawn server ends with its task "
        "group, or with its event loop (asyncio.run() cancels every task when it returns); "
        "use asyncmp.thread.spawn for a server that outlives event loops",
        None,
    )


# -- the loop's state machine ---------------------------------------------------------


@final
class DispatchLoop:
    """The decisions of one dispatch loop, with no I/O; a face (``task.py``, ``thread.py``)
    drives it.

    The face waits for the requests, calls what this object hands it, and awaits — or, the
    blocking face, refuses — what that returns. Its steps, in order::

        init = dispatch.starting()      # the handler's init, or None: init(weak)
        proc_req = dispatch.serving()   # then for each request: proc_req(msg, rctx)
        recover = dispatch.failed(msg, rctx, exc)  # it failed: None ends the loop (the
        dispatch.went_on()              #   face re-raises), else recover() and this
        term = dispatch.ended()         # Break, or all clients gone: term(rv) unless None
        dispatch.finish(value)          # the handle yields value
        dispatch.raised(exc)            # or the loop (or term) raised: re-raise if true

    Per request the face calls nothing here (a method call costs about 1 % of a task
    server's request): it reads the result of ``proc_req`` with `check_flow`, and a
    watchdog watches by wrapping ``proc_req`` (`serving`), so the loop has no watchdog
    branch.

    *awaits*: the face awaits (a task, whose cancellation, KeyboardInterrupt and SystemExit
    propagate into its event loop), or blocks (a thread, which has nobody to raise to: every
    exception is the loop's failure, logged and kept for the joiners).
    """

    __slots__ = (
        "_awaits",
        "_dog",
        "_handler",
        "_limit",
        "_on_error",
        "_waiting",
        "_where",
        "handle",
        "server",
    )

    def __init__(
        self,
        server: Server[Any, Any],
        handle: JoinHandle[Any],
        handler: Any,
        limit: float | None,
        on_error: Literal["stop", "continue"] | Callable[[Exception, Any], object],
        awaits: bool,
    ) -> None:
        self.server = server
        self.handle = handle
        self._handler = handler
        self._awaits = awaits
        self._limit = limit
        self._dog: Watchdog | None = None  # started with the loop (`starting`)
        # What a failed proc_req calls before the loop goes on: None ends the loop instead.
        self._on_error: Callable[[Exception, Any], object] | None = None
        if on_error == "continue":
            self._on_error = self._log_failure
        elif not isinstance(on_error, str):
            self._on_error = on_error
        self._waiting = "server.wait()" if awaits else "server.blocking.wait()"
        # Where the loop is, for the log line of a failure: None while it waits for a request.
        # Written when the loop changes step, never per request.
        self._where: str | None = "init()"

    @staticmethod
    def check_options(name: object, watchdog: object, on_error: object) -> float | None:
        """Validate ``spawn``'s ``name=``, ``watchdog=`` and ``on_error=``; return the
        watchdog limit as a float."""
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {name!r}")
        if isinstance(on_error, str):
            if on_error not in ("stop", "continue"):
                raise ValueError(
                    f'on_error must be "stop", "continue" or a callable, not {on_error!r}'
                )
        elif not callable(on_error):
            raise TypeError(f'on_error must be "stop", "continue" or a callable, not {on_error!r}')
        return None if watchdog is None else check_period(watchdog, "watchdog")

    @classmethod
    def build(
        cls,
        make_handler: Callable[[Client[Any, Any]], object],
        max_queued: int | None,
        name: str | None,
        limit: float | None,
        on_error: Literal["stop", "continue"] | Callable[[Exception, Any], object],
        awaits: bool,
        check: Callable[[Any], None] | None = None,
    ) -> tuple[DispatchLoop, Client[Any, Any], WeakClient[Any, Any]]:
        """Make the channel and run ``make_handler(client)`` in the caller, as ``spawn``
        must; then the loop's handle — named *name*, or after the handler's class — and
        its state. Returns the state, the application's client and the loop's weak one.

        If ``make_handler`` raises, or builds no handler (or one that *check* rejects), both
        ends are closed, so nothing could ever wait on this channel, and the exception
        propagates to ``spawn``'s caller.
        """
        if not callable(make_handler):
            raise TypeError(f"make_handler must be callable, not {make_handler!r}")
        check_factory(make_handler)
        server, client = new_channel(max_queued)
        try:
            handler = make_handler(client)
            if not callable(getattr(handler, "proc_req", None)):
                raise TypeError(
                    f"make_handler returned {handler!r}, which has no proc_req() method"
                )
            if check is not None:
                check(handler)
            weak = client.weak()
            handle = JoinHandle._create(
                name if name is not None else type(handler).__qualname__, server
            )
        except BaseException:
            server.close()
            client.close()
            raise
        return cls(server, handle, handler, limit, on_error, awaits), client, weak

    def starting(self) -> Callable[[WeakClient[Any, Any]], object] | None:
        """The loop starts (its watchdog too, if it has a limit): the handler's ``init`` to
        call with the weak client, if any."""
        if self._limit is not None:
            self._dog = Watchdog(self._limit, self.handle._name)
        return getattr(self._handler, "init", None)

    def serving(self) -> Callable[[Any, ReplyContext[Any]], object]:
        """``init`` is done: what to call for each request — the handler's ``proc_req``, or
        with a watchdog, ``proc_req`` watched."""
        self._where = None
        proc_req: Callable[[Any, ReplyContext[Any]], object] = self._handler.proc_req
        dog = self._dog
        return proc_req if dog is None else dog.watch(proc_req, self._awaits)

    def failed(
        self, msg: object, rctx: ReplyContext[Any], exc: BaseException
    ) -> Callable[[], object] | None:
        """``proc_req(msg, rctx)`` raised *exc*, or returned no flow value: the request gets
        `NoReply` (cause *exc*) unless it was answered. Returns ``None`` if the loop ends
        with *exc* (``on_error="stop"``, or no ``Exception``: the face re-raises it), else
        what to call before the loop goes on (then `went_on`): ``on_error(exc, msg)``."""
        abort_request(rctx, exc)
        self._where = f"proc_req({type(msg).__qualname__})"
        on_error = self._on_error
        if on_error is None or not isinstance(exc, Exception):
            return None
        self._where = "on_error()"
        return functools.partial(on_error, exc, msg)

    def went_on(self) -> None:
        """``on_error`` returned: the loop waits for the next request."""
        self._where = None

    def ended(self) -> Callable[[Any], object] | None:
        """The loop ended by a `Break`, or because every client had gone: the server is
        closed now (what is still queued gets `ServerDisappeared`). Returns the handler's
        ``term``, to call with the loop's value, or ``None``: the handle yields the value."""
        self._close()
        self._where = "term()"
        return getattr(self._handler, "term", None)

    def finish(self, value: object) -> None:
        """The handle yields *value*: what ``term`` returned, or the loop's value."""
        self.handle._finish(value, None)

    def raised(self, exc: BaseException, cancelled: bool = False) -> bool:
        """The loop, or its ``term``, raised *exc* (*cancelled*: the cancellation of the
        loop's task). Close the server telling later callers why, log the failure, finish
        the handle; return whether the face re-raises *exc*: a task does for a cancellation,
        KeyboardInterrupt and SystemExit, which belong to its event loop."""
        name = self.handle._name
        failure = isinstance(exc, Exception) or not self._awaits  # the handler's, to report
        try:
            if self._where == "term()":
                if failure:
                    logger.error(
                        "dispatch loop %r: term() raised %r; joining the loop's handle raises it",
                        name,
                        exc,
                        exc_info=exc,
                    )
            elif cancelled:
                loop_cancelled(self.server, name)
            elif failure:
                loop_failed(self.server, name, exc, self._where or self._waiting)
            # A KeyboardInterrupt or SystemExit in a task propagates into the event loop,
            # which reports it; the server is closed plainly.
        finally:
            self._close()  # idempotent: closed already if term raised
        if cancelled:
            error = RuntimeError(f"dispatch loop {name!r} was cancelled")
            self.handle._finish(None, error, quiet=True)
            return True
        # A failure was logged already: the handle needs no log line of its own if nobody
        # joins.
        self.handle._finish(None, exc, quiet=failure)
        return not failure

    def _close(self) -> None:
        self.server.close()
        if self._dog is not None:
            self._dog.stop()

    def _log_failure(self, exc: Exception, msg: object) -> None:
        """``on_error="continue"``: log the failure (its request has had `NoReply`)."""
        logger.error(
            "dispatch loop %r: proc_req(%s) failed; its request got NoReply unless it was "
            "answered, and the loop goes on",
            self.handle._name,
            type(msg).__qualname__,
            exc_info=exc,
        )


# -- the join handle -------------------------------------------------------------------


@final
class JoinHandle(
    Generic[T_co], metaclass=NoPublicConstructor, made_by="task.spawn() and thread.spawn()"
):
    """Waits for a dispatch loop to end and gives back its result.

    Returned by `task.spawn` and
    `thread.spawn`. The result is what the handler's ``term``
    returned, or without ``term`` the value of the `Break` that ended the loop (``None`` if
    the loop ended because every client had gone). If ``proc_req``, ``init`` or ``term``
    raised, joining raises that exception.

    Join from anywhere, any number of times: ``await handle`` or ``await handle.join()``
    in a task on any event loop (not only the server's), ``handle.blocking.join(timeout)``
    from a plain thread. Cancelling a join only stops that wait; the server runs on.
    """

    __slots__ = ("__weakref__", "_cell", "_name", "_retrieved", "_server", "_task")
    _cell: OutcomeCell
    _retrieved: bool
    _name: str
    _server: Callable[[], Server[Any, Any] | None]
    _task: object

    @classmethod
    def _create(cls, name: str, server: Server[Any, Any] | None = None) -> JoinHandle[Any]:
        self: JoinHandle[Any] = object.__new__(cls)
        # The loop's outcome: its result, or a Failure with the exception it died of.
        self._cell = OutcomeCell()
        self._retrieved = False
        self._name = name
        # The loop's server, weakly: what repr() and the join hint report while it runs.
        self._server = _no_server if server is None else weakref.ref(server)
        self._task = None  # the asyncio task, when spawn created one: keeps it alive
        return self

    def _finish(self, value: object, error: BaseException | None, quiet: bool = False) -> None:
        """Publish the outcome and wake every joiner. *quiet*: an *error* that needs no
        log line if nobody joins (the loop was cancelled: not the handler's failure)."""
        self._retrieved = quiet
        finished = self._cell.set(value if error is None else Failure(error))
        assert finished, "a JoinHandle is finished once"

    def _outcome(self) -> T_co:
        value = self._cell.value
        if type(value) is Failure:
            self._retrieved = True
            raise value.error
        return value  # type: ignore[no-any-return]

    def done(self) -> bool:
        """Whether the loop has ended (joining would not wait)."""
        return self._cell.done()

    async def join(self) -> T_co:
        """Wait until the loop ends and return its result (or raise its exception)."""
        if _dev_mode() and not self._cell.done():
            # Python's development mode: a join that waits long says what the loop waits for.
            with anyio.move_on_after(JOIN_HINT_AFTER):
                await self._cell.wait(give_up=False)
            if not self._cell.done():
                logger.warning(self._join_hint())
        await self._cell.wait(give_up=False)
        return self._outcome()

    def _state(self) -> str:
        """``running [clients: 1, queued: 0, in flight: 0]`` (while the server is known)."""
        server = self._server()
        if server is None or server.closed:
            return "running"
        s = server.statistics()
        return f"running [clients: {s.clients}, queued: {s.queued}, in flight: {s.in_flight}]"

    def _join_hint(self) -> str:
        server = self._server()
        clients = ""
        if server is not None:
            clients = f" with {_plural(server.statistics().clients, 'client')} open"
        return (
            f"dispatch loop {self._name!r}: a join has waited {JOIN_HINT_AFTER:.3g} s; the "
            f"loop still runs{clients}. A dispatch loop ends when every client is closed "
            "(client.close(), `with client:`, `async with client:`) or when proc_req "
            "returns Break(value); a clone or an upgraded weak client that the handler keeps "
            "is a client too"
        )

    def __await__(self) -> Generator[Any, None, T_co]:
        result: T_co = yield from self.join().__await__()
        return result

    @property
    def blocking(self) -> _BlockingJoinHandle[T_co]:
        """The blocking face, for plain threads: ``handle.blocking.join(timeout=None)``."""
        return _BlockingJoinHandle(self)

    def __del__(self) -> None:
        # Nothing is lost silently: a loop that died of an exception nobody joined to see.
        # No lock of asyncmp's (logging's own are reentrant): `finalize` runs it here.
        value = self._cell.value
        if type(value) is Failure and not self._retrieved and not sys.is_finalizing():
            finalize((), _log_unjoined, self._name, value.error)

    def __repr__(self) -> str:
        value = self._cell.value
        if not self._cell.done():
            state = self._state()
        elif type(value) is Failure:
            state = f"failed: {value.error!r}"
        else:
            state = "done"
        return f"<JoinHandle {self._name!r} {state}>"


def _log_unjoined(name: str, error: BaseException) -> None:
    logger.error(
        "dispatch loop %r failed and its JoinHandle was never joined", name, exc_info=error
    )


@final
class _BlockingJoinHandle(Generic[T_co]):
    """``handle.blocking``: join a dispatch loop from a plain thread."""

    __slots__ = ("_handle",)

    def __init__(self, handle: JoinHandle[T_co]) -> None:
        self._handle = handle

    def join(self, timeout: float | None = None) -> T_co:
        """Block until the loop ends and return its result (or raise its exception).

        Raises:
            TimeoutError: the loop was still running after *timeout* seconds.
            RuntimeError: called on a thread that runs an event loop (``await handle``).
        """
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("handle.blocking.join()")
        handle = self._handle
        cell = handle._cell
        # An interrupt (Ctrl-C) in the wait leaves no waiter behind, as a timeout.
        done = True
        if _dev_mode() and not cell.done() and (timeout is None or timeout > JOIN_HINT_AFTER):
            # Python's development mode: a join that waits long says what the loop waits for.
            if not cell.wait_blocking(JOIN_HINT_AFTER, give_up=False):
                logger.warning(handle._join_hint())
                left = None if timeout is None else timeout - JOIN_HINT_AFTER
                done = cell.wait_blocking(left, give_up=False)
        else:
            done = cell.wait_blocking(timeout, give_up=False)
        if not done:
            name = handle._name
            raise TimeoutError(f"dispatch loop {name!r} still running after {seconds(timeout)} s")
        return handle._outcome()


JOIN_HINT_AFTER = 10.0
"""In Python's development mode, seconds a join waits before it logs what the loop waits for."""


def _dev_mode() -> bool:
    """Python's development mode (``python -X dev``, ``PYTHONDEVMODE=1``): asyncmp's debug aids
    are on."""
    return sys.flags.dev_mode


def _no_server() -> None:
    return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- the watchdog ----------------------------------------------------------------------


@final
class Watchdog:
    """Logs a warning when one ``proc_req`` runs longer than *limit* seconds.

    A monitor thread, so it also sees a handler that blocks its event loop. The loop only
    stores ``(start, msg_type)`` in ``_current`` (one atomic attribute write, no lock, no
    wake-up) before each ``proc_req`` and ``None`` after; the monitor polls every *limit*
    seconds while idle, which still warns on time: a call that starts within one poll
    interval is at most *limit* old at the next poll, and the monitor then sleeps exactly
    until its deadline.
    """

    __slots__ = ("_current", "_limit", "_name", "_stop")

    def __init__(self, limit: float, name: str) -> None:
        self._limit = limit
        self._name = name
        self._current: tuple[float, str] | None = None
        self._stop = threading.Event()
        threading.Thread(target=self._run, name=f"{name}-watchdog", daemon=True).start()

    def begin(self, msg: object) -> None:
        self._current = (time.monotonic(), type(msg).__qualname__)

    def end(self) -> None:
        self._current = None

    def stop(self) -> None:
        self._stop.set()

    def watch(
        self, proc_req: Callable[[Any, ReplyContext[Any]], object], awaits: bool
    ) -> Callable[[Any, ReplyContext[Any]], object]:
        """*proc_req*, watched: each call begins and ends the watch — for a face that
        *awaits*, once the awaitable it returned has completed."""
        begin, end = self.begin, self.end

        def watched(msg: object, rctx: ReplyContext[Any]) -> object:
            begin(msg)
            try:
                return proc_req(msg, rctx)
            finally:
                end()

        async def watched_async(msg: object, rctx: ReplyContext[Any]) -> object:
            begin(msg)
            try:
                flow = proc_req(msg, rctx)
                return await flow if inspect.isawaitable(flow) else flow
            finally:
                end()

        return watched_async if awaits else watched

    def _run(self) -> None:
        warned: tuple[float, str] | None = None
        while True:
            current = self._current
            if current is None or current is warned:
                delay = self._limit
            else:
                delay = current[0] + self._limit - time.monotonic()
                if delay <= 0:
                    warned = current
                    logger.warning(
                        "dispatch loop %r: proc_req(%s) has been running for more than %s s",
                        self._name,
                        current[1],
                        seconds(self._limit),
                    )
                    continue
            if self._stop.wait(delay):
                return
