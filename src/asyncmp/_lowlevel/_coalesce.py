"""Coalesced cross-thread wake-ups: one ``call_soon_threadsafe`` per batch, not per wake-up.

Design note. ``loop.call_soon_threadsafe(fn, *args)`` costs, per call, a handle object on
the loop and (on asyncio) a write to the loop's self-pipe, which the loop then reads back.
When a thread wakes many tasks of one loop in a row — a thread server answering 64 async
clients, a fan-out to receivers parked on one loop — each wake-up after the first adds
nothing but that cost: the loop is woken already. `post` batches them. Each loop has one
`WakeBatch`: a ``deque`` of ``(fn, args)`` and a flag, ``scheduled``, that says a drain is
on its way. A post appends, then looks at the flag: if it is clear, the post sets it and
schedules one drain with ``call_soon_threadsafe``; if it is set, the post only appended.
The drain, on the loop, clears the flag *first*, then runs the entries queued at that
moment, oldest first.

No lock, and no wake-up lost. ``deque.append`` and ``popleft`` are atomic, and under the GIL
every bytecode runs atomically in one global order. Take a post of entry E that appended,
then read the flag:

- it read the flag clear: it schedules a drain, which starts after that read and runs every
  entry queued when it starts, so E (unless an earlier drain ran it already);
- it read the flag set: the last write before that read set it, by a post that then
  scheduled drain D. Only a drain's start clears the flag, and D's did not come before the
  read, so D starts after E was appended — and runs it.

The race this rules out is the classic one: a post that lands while the drain is deciding
that the batch is empty. Here the drain decides nothing from emptiness: whatever it leaves
was posted after it cleared the flag, by posts that saw the flag clear and scheduled the
next drain (or saw it set by one that did). A drain runs only what was queued when it
started, so a stream of posts cannot keep the loop in one drain for ever; a drain may find
nothing left (its entries ran in an earlier one), which costs a call and nothing else.

A closed loop. A post to a loop that is closed raises ``RuntimeError``, as
``call_soon_threadsafe`` does, and queues nothing, so the caller can pass on what could not
arrive. The check comes before the append: a post that found the loop open may still be
lost if the loop closes before its drain runs — exactly what happens to a
``call_soon_threadsafe`` made just before ``close()``, whose handle ``close()`` drops.

What differs from ``call_soon_threadsafe``: the callbacks of one batch run in one handle,
in the context of the drain (a copy of the context of the post that scheduled it), not each
in a copy of its poster's ``contextvars`` context; they are for wake-ups (resolving a
future), not for user code. An exception from one is reported to the loop's exception
handler, as asyncio reports a callback's, and the rest of the batch still runs; a
``KeyboardInterrupt`` or ``SystemExit`` propagates after the rest of the batch is handed
to a new drain.

Where a loop's batch is kept: in a module-level ``dict`` under ``id(loop)``, removed by a
weak reference's callback when the loop is collected (which runs before its memory, hence
its id, can be reused). The batch holds no reference to its loop, so it keeps no loop alive.
Not on the loop object itself: an attribute added to an asyncio loop after it was made
turns its attributes from the class's shared layout into a dict of their own, and every
attribute read in asyncio's own loop code then takes the slow path (measured: a third more
instructions per wake-up). Any asyncio event loop works, asyncio's own and uvloop's; one
that cannot be weakly referenced gets no batching (`post` is then its
``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final, final

__all__ = ("WakeBatch", "attach", "batch_of", "lookup", "post", "resolve_soon")

# In an entry's first place: the entry is a call, (_CALL, fn, args), not a future to resolve.
_CALL: Final[Any] = object()


@final
class WakeBatch:
    """The coalesced wake-ups of one event loop (module doc): `resolve_soon` and `post`
    fill it, its `drain` empties it on the loop."""

    __slots__ = (
        "__weakref__",
        "_drain",
        "_loop_ref",
        "direct",
        "flag_closed",
        "pending",
        "scheduled",
    )

    def __init__(
        self, loop_ref: weakref.ref[asyncio.AbstractEventLoop], flag_closed: bool, direct: bool
    ) -> None:
        self._loop_ref = loop_ref  # weak: the batch keeps no loop alive (module doc)
        # True: posts to this loop go straight to its call_soon_threadsafe (module doc).
        self.direct = direct
        # True where ``loop._closed`` is what ``loop.is_closed()`` returns (asyncio's own
        # loops): a post reads the attribute instead of calling a Python method.
        self.flag_closed = flag_closed
        # Posted, not yet run, oldest first: (future, value, undelivered) to resolve, or
        # (_CALL, fn, args) to call. Posts append, only drains pop.
        self.pending: deque[tuple[Any, Any, Any]] = deque()
        # Set by the post that schedules a drain; cleared first thing by that drain.
        self.scheduled = False
        self._drain = self.drain  # bound once: each scheduling passes it

    def drain(self) -> None:
        """Run, on the loop, what was posted before this drain started (module doc)."""
        self.scheduled = False  # first: every later post schedules the next drain
        pending = self.pending
        left = len(pending)
        while left:
            left -= 1
            fut, value, undelivered = pending.popleft()
            try:
                if fut is _CALL:
                    value(*undelivered)
                elif not fut.done():
                    fut.set_result(value)
                elif undelivered is not None:
                    undelivered(value)  # cancelled meanwhile: nobody takes it there
            except (SystemExit, KeyboardInterrupt):
                if left:
                    self._again()
                raise
            except BaseException as exc:
                self._report(value if fut is _CALL else undelivered, exc)

    def _again(self) -> None:
        # On the loop: what this drain did not run goes to a new drain. Posts that see
        # the flag set from now on rely on that one, as on any drain.
        loop = self._loop_ref()
        if loop is not None:
            self.scheduled = True
            loop.call_soon(self._drain)

    def _report(self, what: object, exc: BaseException) -> None:
        # As asyncio reports a callback that raised; the rest of the batch still runs.
        loop = self._loop_ref()
        if loop is not None:
            loop.call_exception_handler(
                {"message": f"Exception in callback {what!r}", "exception": exc}
            )

    def __repr__(self) -> str:
        return f"<WakeBatch pending={len(self.pending)} scheduled={self.scheduled}>"


# id(loop) -> its batch, while the loop lives (module doc).
_batches: dict[int, WakeBatch] = {}
#: ``lookup(id(loop))``: the loop's batch if it has one yet. A caller that goes straight to
#: ``call_soon_threadsafe`` for a loop that is not batched (``batch.direct``) asks this
#: first, and spares such a loop the call of `resolve_soon`.
lookup = _batches.get
_base_is_closed = asyncio.BaseEventLoop.is_closed


def batch_of(loop: asyncio.AbstractEventLoop) -> WakeBatch | None:
    """The `WakeBatch` of *loop*, made on first use: one that batches for asyncio's own
    loops, one that does not (``direct``) for any other (module doc: uvloop's wake-ups are
    cheaper unbatched); ``None`` if the loop cannot be weakly referenced."""
    batch = _batches.get(id(loop))
    if batch is None:
        batch = _register(loop, direct=not isinstance(loop, asyncio.BaseEventLoop))
    return batch


def attach(loop: asyncio.AbstractEventLoop) -> WakeBatch | None:
    """Give *loop* a `WakeBatch` that batches, whatever the loop (how a test batches a loop
    that `batch_of` would not), before anything is posted to it; ``None`` if the loop
    cannot be weakly referenced."""
    return _register(loop, direct=False)


def _register(loop: asyncio.AbstractEventLoop, direct: bool) -> WakeBatch | None:
    key = id(loop)

    def forget(_: object) -> None:
        # The loop is being collected: its id is still its own until this returns.
        if _batches.get(key) is made:
            del _batches[key]

    try:
        ref = weakref.ref(loop, forget)
    except TypeError:
        return None
    made = WakeBatch(ref, type(loop).is_closed is _base_is_closed, direct)
    # setdefault is atomic: threads that register one loop at once all get the same
    # batch (a losing one and its weak reference are simply dropped).
    return _batches.setdefault(key, made)


def resolve_soon(
    loop: asyncio.AbstractEventLoop,
    fut: asyncio.Future[Any],
    value: object,
    undelivered: Callable[[Any], object] | None = None,
) -> None:
    """On *loop* (the loop of *fut*), soon: ``fut.set_result(value)``, or, if *fut* is
    done by then (cancelled), ``undelivered(value)`` when given. From any thread.

    The wake-up ``loop.call_soon_threadsafe`` would make, coalesced with the others that
    reach *loop* before it runs (module doc); it runs after what was posted to *loop*
    before it.

    Raises:
        RuntimeError: the loop is closed (nothing was queued), as
            ``call_soon_threadsafe`` raises.
    """
    batch = _batches.get(id(loop))
    if batch is None:
        batch = batch_of(loop)
    if batch is None or batch.direct:
        loop.call_soon_threadsafe(_run, fut, value, undelivered)
        return
    # Before the append: once appended, a drain may run the entry, and then it must not
    # be reported as not run.
    if loop._closed if batch.flag_closed else loop.is_closed():  # type: ignore[attr-defined]
        raise RuntimeError("Event loop is closed")
    batch.pending.append((fut, value, undelivered))
    # After the append (module doc): clear means no drain will see this entry.
    if not batch.scheduled:
        batch.scheduled = True
        try:
            loop.call_soon_threadsafe(batch._drain)
        except RuntimeError:
            # Closed since the check above: like a call_soon_threadsafe just before
            # close(), the entry is dropped with the loop (a drain running meanwhile may
            # have run it, so it cannot be reported as not run).
            pass


def post(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: Any) -> None:
    """``loop.call_soon_threadsafe(fn, *args)``, coalesced like `resolve_soon` (module
    doc): from any thread; ``fn(*args)`` runs on the loop, after what was posted to it
    before.

    Raises:
        RuntimeError: the loop is closed (nothing was queued).
    """
    # A call rides the same protocol: _CALL in the future's place marks it.
    resolve_soon(loop, _CALL, fn, args)  # type: ignore[arg-type]


def _run(fut: Any, value: Any, undelivered: Any) -> None:
    # One entry (as a drain runs it), for a loop without a batch.
    if fut is _CALL:
        value(*undelivered)
    elif not fut.done():
        fut.set_result(value)
    elif undelivered is not None:
        undelivered(value)
