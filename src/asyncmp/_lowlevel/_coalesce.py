"""Coalesced cross-thread wake-ups: one ``call_soon_threadsafe`` per batch, not per wake-up.

Design note. ``loop.call_soon_threadsafe(fn, *args)`` costs, per call, a handle object on
the loop and (on asyncio) a write to the loop's self-pipe, which the loop then reads back.
When a thread wakes many tasks of one loop in a row — a thread server answering 64 async
clients, a fan-out to receivers parked on one loop — each wake-up after the first adds
nothing but that cost: the loop is woken already. `resolve_soon` and `post` batch them.
Each loop has one `WakeBatch`: a ``deque`` of entries and a flag, ``scheduled``, that says a
drain is on its way. A post appends, then looks at the flag: if it is clear, the post sets
it and schedules one drain with ``call_soon_threadsafe``; if it is set, the post only
appended. The drain, on the loop, clears the flag *first*, then runs the entries queued at
that moment, oldest first.

A lone wake-up is not batched. Batching costs a little Python of its own on both sides
(about 2,500 instructions), which a single wake-up would pay for nothing, so a post to an
asyncio loop that has nothing ready to run (``loop._ready`` empty: it sleeps, or runs the
last callback of its turn) calls ``call_soon_threadsafe`` itself, exactly as before; the
posts that come while anything is ready there — that wake-up's handle among it — are
batched. Order holds: a thread's later post is batched only behind something the loop has
ready, which runs first, and a lone post goes behind everything ready, drains included.

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
``call_soon_threadsafe`` made just before ``close()``, whose handle ``close()`` drops. The
entries such a loop leaves are dropped too (a weak reference to the drain's handle sees
``close()`` drop it): they hold futures, which hold the loop, and the batch must keep no
loop alive.

What differs from ``call_soon_threadsafe``: the callbacks of one batch run in one handle,
in the context of the drain (a copy of the context of the post that scheduled it), not each
in a copy of its poster's ``contextvars`` context; they are for wake-ups (resolving a
future), not for user code. An exception from one is reported to the loop's exception
handler, as asyncio reports a callback's, and the rest of the batch still runs; a
``KeyboardInterrupt`` or ``SystemExit`` propagates after the rest of the batch is handed
to a new drain.

Which loops: asyncio's own (`asyncio.BaseEventLoop`) are batched. uvloop's
``call_soon_threadsafe`` is written in C and writes its wake-up fd once per batch already,
so a batch in Python would cost more than it saves: its posts go straight to it (the batch
is ``direct``); `attach` batches any loop all the same (for tests). A loop that cannot be
weakly referenced is not batched either.

Where a loop's batch is kept: in a module-level ``dict`` under ``id(loop)``, removed by a
weak reference's callback when the loop is collected (which runs before its memory, hence
its id, can be reused). The batch holds no reference to its loop, so it keeps no loop alive.
Not on the loop object itself: an attribute added to an asyncio loop after it was made
turns its attributes from the class's shared layout into a dict of their own, and every
attribute read in asyncio's own loop code then takes the slow path (measured: a third more
instructions per wake-up).
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final, final

__all__ = ("WakeBatch", "attach", "batch_of", "post", "resolve_soon")

# In an entry's first place: the entry is a call, (_CALL, fn, args), not a future to resolve.
_CALL: Final[Any] = object()


@final
class WakeBatch:
    """The coalesced wake-ups of one event loop (module doc): `resolve_soon` and `post`
    fill it, its `drain` empties it on the loop."""

    __slots__ = (
        "__weakref__",
        "_loop_ref",
        "_watch",
        "direct",
        "own",
        "pending",
        "scheduled",
    )

    def __init__(
        self, loop_ref: weakref.ref[asyncio.AbstractEventLoop], own: bool, direct: bool
    ) -> None:
        self._loop_ref = loop_ref  # weak: the batch keeps no loop alive (module doc)
        # True: posts to this loop go straight to its call_soon_threadsafe (module doc).
        self.direct = direct
        # True for asyncio's own loops (`asyncio.BaseEventLoop`, ``is_closed`` as there):
        # a post reads ``loop._closed`` instead of calling ``is_closed()``, and
        # ``loop._ready`` (the callbacks ready to run) to tell a lone wake-up.
        self.own = own
        # Posted, not yet run, oldest first: (future, value, undelivered) to resolve, or
        # (_CALL, fn, args) to call. Posts append, only drains pop.
        self.pending: deque[tuple[Any, Any, Any]] = deque()
        # Set by the post that schedules a drain; cleared first thing by that drain.
        self.scheduled = False
        # A weak reference to the handle of the drain scheduled last: if the loop is
        # closed with it unrun, close() drops it, and `_dropped` drops the entries with
        # it (they hold futures, which hold the loop: kept, they would keep it alive).
        self._watch: weakref.ref[asyncio.Handle] | None = None

    def scheduled_as(self, handle: asyncio.Handle) -> None:
        """Watch the handle of a drain just scheduled (see ``_watch``)."""
        self._watch = weakref.ref(handle, self._dropped)

    def _dropped(self, watch: weakref.ref[asyncio.Handle]) -> None:
        # The handle of a drain is gone: run (nothing to do), or dropped by close().
        if self._watch is not watch:
            return
        self._watch = None
        loop = self._loop_ref()
        if loop is None or loop.is_closed():
            self.pending.clear()  # nothing will run on that loop any more
            self.scheduled = False

    def drain(self) -> None:
        """Run, on the loop, what was posted before this drain started (module doc)."""
        self.scheduled = False  # first: every later post schedules the next drain
        self._watch = None  # it runs: its handle's going needs no look
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
            self.scheduled_as(loop.call_soon(self.drain))

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
_base_is_closed = asyncio.BaseEventLoop.is_closed
_weak = weakref.ref


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

    def forget(ref: object) -> None:
        # The loop is being collected: its id is still its own until this returns. (No
        # reference to the batch here: the batch holds this callback's weak reference.)
        batch = _batches.get(key)
        if batch is not None and batch._loop_ref is ref:
            del _batches[key]

    try:
        ref = weakref.ref(loop, forget)
    except TypeError:
        return None
    own = isinstance(loop, asyncio.BaseEventLoop) and type(loop).is_closed is _base_is_closed
    made = WakeBatch(ref, own, direct)
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
    if batch.own and not loop._ready:  # type: ignore[attr-defined]
        # Nothing is ready to run on the loop: a lone wake-up, a handle of its own, as
        # call_soon_threadsafe makes it (module doc); those that follow it are batched.
        loop.call_soon_threadsafe(_run, fut, value, undelivered)
        return
    # Before the append: once appended, a drain may run the entry, and then it must not
    # be reported as not run.
    if loop._closed if batch.own else loop.is_closed():  # type: ignore[attr-defined]
        raise RuntimeError("Event loop is closed")
    try:
        batch.pending.append((fut, value, undelivered))
    finally:
        # After the append (module doc): clear means no drain will see this entry. In a
        # `finally`: an interrupt (Ctrl-C) that strikes as the append returns must not
        # leave the entry with no drain coming.
        if not batch.scheduled:
            batch.scheduled = True
            try:
                handle = loop.call_soon_threadsafe(batch.drain)
            except RuntimeError:
                # Closed since the check above: like a call_soon_threadsafe just before
                # close(), the entry is dropped with the loop (a drain running meanwhile may
                # have run it, so it cannot be reported as not run), and so is every other.
                batch.pending.clear()
            except BaseException:
                # Interrupted maybe before the drain was scheduled: clear the flag, so that
                # the next post (the caller's own retry: see `_wake.deliver`) schedules one;
                # an extra drain, if this one was scheduled after all, finds nothing.
                batch.scheduled = False
                raise
            else:
                batch._watch = _weak(handle, batch._dropped)  # see WakeBatch._watch


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
