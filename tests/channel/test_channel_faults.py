"""Faults at the edges of the channel's promises: an interrupt (Ctrl-C) in a blocking call, a
send racing the last client's close, finalizers run while the channel lock is held, a cancel
scope landing while a reply is on its way, a loop moved to another thread, a send collected
after its loop closed.

Each race is made deterministic by widening its window: the channel's fault-injection hooks
(one mechanism for both cores: a wait that raises where Ctrl-C would, a hook run first in
`push`), a lock held on purpose, a thread that replies while the loop is blocked.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import operator
import signal
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import anyio
import pytest
import uvloop

import asyncmp
from asyncmp import ClientsDisappeared, Closed, NoReply, ServerDisappeared, thread
from asyncmp._lowlevel._outcome import OutcomeCell
from asyncmp._lowlevel._wake import ThreadWaiter
from bounds import WAIT
from interrupting import interrupt_on_call, interrupt_on_return

Interrupt = Callable[[Callable[[], object] | None], None]


class Hooks:
    """The channel's fault-injection hooks (``_set_hooks`` of the core in use): what a test
    puts in ``push`` runs once, first in the next push; ``on_wait`` runs right before each
    blocking wait of a channel parks its thread."""

    def __init__(self) -> None:
        self.push: list[Callable[[], object]] = []
        self.on_wait: Callable[[], object] | None = None

    def before_push(self, state: object) -> None:
        if self.push:
            self.push.pop()()

    def before_wait(self) -> None:
        if self.on_wait is not None:
            self.on_wait()


@pytest.fixture
def hooks(core: ModuleType) -> Iterator[Hooks]:
    """The hooks, installed in the core the test runs on."""
    installed = Hooks()
    core._set_hooks(installed)
    try:
        yield installed
    finally:
        core._set_hooks(None)


@pytest.fixture
def interrupt(monkeypatch: pytest.MonkeyPatch, hooks: Hooks) -> Iterator[Interrupt]:
    """``interrupt(hook)``: the next blocking wait first runs *hook* (what other threads do
    meanwhile), then raises KeyboardInterrupt — what Ctrl-C does to a thread blocked in a
    lock acquire. Later waits block as usual.

    A channel's blocking calls park on the core's parker, right after the channel's
    ``before_wait`` hook; pending replies and joins wait on a `ThreadWaiter`."""
    real_wait = ThreadWaiter.wait
    armed: list[Callable[[], object] | None] = []

    def fire() -> None:
        if armed:
            hook = armed.pop()
            if hook is not None:
                hook()
            raise KeyboardInterrupt

    def wait(self: ThreadWaiter, timeout: float | None) -> bool:
        fire()
        return real_wait(self, timeout)

    monkeypatch.setattr(ThreadWaiter, "wait", wait)
    hooks.on_wait = fire
    yield armed.append
    assert not armed, "the interrupt was never raised"


# -- an interrupt leaves exactly the state a timeout leaves --------------------------------

GIVE_UP = ["timeout", "interrupt"]


def give_up(how: str, interrupt: Interrupt, call: Callable[[float], object]) -> None:
    """Make a blocking *call* give up by a timeout or by an interrupt."""
    if how == "timeout":
        with pytest.raises(TimeoutError):
            call(0)
    else:
        interrupt(None)
        with pytest.raises(KeyboardInterrupt):
            call(WAIT)


@pytest.mark.parametrize("how", GIVE_UP)
def test_blocking_send_given_up_while_queued_is_withdrawn(how: str, interrupt: Interrupt) -> None:
    """A `client.blocking.send` that gives up (timeout or Ctrl-C) while its request is still
    queued withdraws it: the server never sees it."""
    server, client = asyncmp.channel()
    give_up(how, interrupt, lambda timeout: client.blocking.send(1, timeout=timeout))

    assert server.try_pop() is None
    assert server.statistics().queued == 0


def test_blocking_send_interrupted_after_pickup_makes_reply_return_false(
    interrupt: Interrupt,
) -> None:
    """A `client.blocking.send` interrupted after the server picked the request up orphans
    it, as a timeout does: the server's `reply()` returns False."""
    server, client = asyncmp.channel()
    taken: list[Any] = []
    interrupt(lambda: taken.append(server.try_pop()))
    with pytest.raises(KeyboardInterrupt):
        client.blocking.send(1, timeout=WAIT)

    msg, rctx = taken[0]
    assert msg == 1
    assert rctx.reply(2) is False


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGINT"),
    reason="signals reach the main thread only",
)
def test_real_sigint_in_blocking_send_orphans_the_request(hooks: Hooks) -> None:
    """A real SIGINT delivered to the main thread blocked in `client.blocking.send` raises
    KeyboardInterrupt there and orphans the request: `reply()` returns False.

    The server sends the signal once the main thread is at its wait (the `before_wait`
    hook), so whether it lands just before the thread blocks or while it is blocked, it is
    handled in the wait: the outcome does not depend on the machine's speed."""
    server, client = asyncmp.channel()
    at_wait = threading.Event()
    hooks.on_wait = at_wait.set
    main = threading.main_thread().ident
    assert main is not None
    armed = [True]
    taken: list[Any] = []

    def on_sigint(signum: int, frame: object) -> None:
        if armed:
            armed.clear()
            raise KeyboardInterrupt

    def serve() -> None:
        taken.append(server.blocking.wait(timeout=WAIT))
        assert at_wait.wait(WAIT)
        signal.pthread_kill(main, signal.SIGINT)

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        with pytest.raises(KeyboardInterrupt):
            client.blocking.send(1, timeout=WAIT)
        worker.join(WAIT)
    finally:
        signal.signal(signal.SIGINT, old)

    _, rctx = taken[0]
    assert rctx.reply(2) is False


@pytest.mark.parametrize("how", GIVE_UP)
def test_blocking_wait_given_up_leaves_no_dead_waiter(how: str, interrupt: Interrupt) -> None:
    """A `server.blocking.wait` that gives up (timeout or Ctrl-C) leaves nothing parked: the
    next request goes to the next wait, not to the wait that is gone."""
    server, client = asyncmp.channel()
    give_up(how, interrupt, lambda timeout: server.blocking.wait(timeout=timeout))

    pending = client.request(1)
    item = server.try_pop()
    assert item is not None
    msg, rctx = item
    assert msg == 1
    assert rctx.reply(2) is True
    assert pending.blocking.wait(timeout=WAIT) == 2


def test_interrupt_racing_a_handoff_passes_the_request_on(interrupt: Interrupt) -> None:
    """A request handed to a parked `server.blocking.wait` just as Ctrl-C interrupts it is
    not lost: the next wait receives it."""
    server, client = asyncmp.channel()
    sent: list[asyncmp.PendingReply[Any]] = []
    interrupt(lambda: sent.append(client.request("handed")))
    with pytest.raises(KeyboardInterrupt):
        server.blocking.wait(timeout=WAIT)

    msg, rctx = server.blocking.wait(timeout=WAIT)
    assert msg == "handed"
    assert rctx.reply("ok") is True
    assert sent[0].blocking.wait(timeout=WAIT) == "ok"


@pytest.mark.parametrize("how", GIVE_UP)
def test_pending_wait_given_up_gives_the_request_up(how: str, interrupt: Interrupt) -> None:
    """A `pending.blocking.wait` that gives up (timeout or Ctrl-C) gives the request up:
    it is withdrawn, and waiting again raises Closed rather than claiming that another
    waiter is still there."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    give_up(how, interrupt, lambda timeout: pending.blocking.wait(timeout=timeout))

    assert pending.done()
    with pytest.raises(Closed):
        pending.blocking.wait(timeout=WAIT)
    assert server.try_pop() is None


def test_pending_wait_interrupted_as_the_reply_arrives_keeps_the_reply(
    interrupt: Interrupt,
) -> None:
    """A reply that arrives as Ctrl-C interrupts `pending.blocking.wait` is kept: the server's
    `reply()` returned True, and waiting again returns it."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    replied: list[bool] = []

    def answer() -> None:
        item = server.try_pop()
        assert item is not None
        replied.append(item[1].reply(2))

    interrupt(answer)
    with pytest.raises(KeyboardInterrupt):
        pending.blocking.wait(timeout=WAIT)

    assert replied == [True]
    assert pending.blocking.wait(timeout=WAIT) == 2


class Echo:
    def proc_req(self, msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.reply(msg)


def test_join_interrupted_leaves_no_waiter_behind(interrupt: Interrupt) -> None:
    """A `handle.blocking.join` interrupted by Ctrl-C deregisters its waiter, as a timeout
    does, and joining again works."""
    client, handle = thread.spawn(lambda client: Echo())
    interrupt(None)
    with pytest.raises(KeyboardInterrupt):
        handle.blocking.join(timeout=WAIT)

    assert not handle._cell.waiters
    client.close()
    assert handle.blocking.join(timeout=WAIT) is None


# -- a send racing the last client's close -------------------------------------------------


@pytest.fixture
def close_during_push(hooks: Hooks) -> Callable[..., None]:
    """``close_during_push(client, server, seen)``: the next push first closes *client* (the
    last strong one) and, if *seen*, lets *server* see ClientsDisappeared — the close racing
    a send that has already checked that its client is open."""

    def arm(client: asyncmp.Client[Any, Any], server: asyncmp.Server[Any, Any], seen: bool) -> None:
        def close_first() -> None:
            client.close()
            if seen:
                with pytest.raises(ClientsDisappeared):
                    server.try_pop()

        hooks.push.append(close_first)

    return arm


async def test_send_racing_last_close_after_the_server_ended_fails(
    close_during_push: Callable[..., None],
) -> None:
    """A send whose client is closed (the last one) after its check, once the server has
    seen ClientsDisappeared, raises ServerDisappeared instead of waiting for ever."""
    server, client = asyncmp.channel()
    close_during_push(client, server, True)
    with anyio.fail_after(WAIT), pytest.raises(ServerDisappeared):
        await client.send(1)


def test_blocking_send_and_request_racing_last_close_after_the_server_ended_fail(
    close_during_push: Callable[..., None],
) -> None:
    """The same race for `blocking.send` and `request`: ServerDisappeared, never a request
    that nobody will take."""
    server, client = asyncmp.channel()
    close_during_push(client, server, True)
    with pytest.raises(ServerDisappeared):
        client.blocking.send(1, timeout=WAIT)

    server, client = asyncmp.channel()
    close_during_push(client, server, True)
    with pytest.raises(ServerDisappeared):
        client.request(1)


async def test_send_racing_last_close_before_the_server_looked_is_served(
    close_during_push: Callable[..., None],
) -> None:
    """A request that gets in after the last client closed but before the server saw
    ClientsDisappeared is still served: the server drains the queue first."""
    server, client = asyncmp.channel()
    close_during_push(client, server, False)
    pending = client.request(1)

    item = server.try_pop()
    assert item is not None
    assert item[1].reply(2) is True
    assert await pending == 2
    with pytest.raises(ClientsDisappeared):
        server.try_pop()


# -- finalizers never wait for the channel lock --------------------------------------------


def collect_with_lock_held(lock: threading.Lock) -> None:
    """Run a garbage collection on a thread that holds *lock*, as an allocation made under
    the channel lock may; fail if a finalizer deadlocks on it."""
    done = threading.Event()

    def body() -> None:
        with lock:
            gc.collect()
        done.set()

    threading.Thread(target=body, daemon=True).start()
    assert done.wait(WAIT), "a finalizer waited for the lock its own thread holds"


def in_a_cycle(obj: object) -> None:
    """Leave *obj* reachable only from a reference cycle, so only the collector frees it."""
    cycle: list[object] = [obj]
    cycle.append(cycle)


def test_client_collected_under_the_lock_still_counts_as_closed() -> None:
    """A Client finalized while its thread holds the channel lock neither deadlocks nor is
    lost: the server still sees ClientsDisappeared."""
    server, client = asyncmp.channel()
    in_a_cycle(client)
    del client
    collect_with_lock_held(server._channel.lock)

    with pytest.raises(ClientsDisappeared):
        server.blocking.wait(timeout=WAIT)


def test_weak_client_collected_under_the_lock_is_uncounted() -> None:
    """A WeakClient finalized under the channel lock neither deadlocks nor stays counted."""
    server, client = asyncmp.channel()
    in_a_cycle(client.weak())
    collect_with_lock_held(server._channel.lock)

    assert server.statistics().weak_clients == 0


def test_pending_reply_collected_under_the_lock_gives_the_request_up() -> None:
    """A PendingReply finalized under the channel lock neither deadlocks nor keeps its
    request: the request is given up."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    cell = pending._cell
    in_a_cycle(pending)
    del pending
    collect_with_lock_held(server._channel.lock)

    assert cell.wait_blocking(WAIT, give_up=True)  # at once: the request was given up
    with pytest.raises(Closed):
        cell.result()
    assert server.try_pop() is None


def test_reply_context_collected_under_the_lock_sends_no_reply() -> None:
    """An unanswered ReplyContext finalized under the channel lock neither deadlocks nor
    leaves its requester waiting: the requester gets NoReply."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    item = server.try_pop()
    assert item is not None
    in_a_cycle(item[1])
    del item
    collect_with_lock_held(server._channel.lock)

    with pytest.raises(NoReply):
        pending.blocking.wait(timeout=WAIT)


def test_server_collected_under_the_lock_fails_queued_requests() -> None:
    """A Server finalized under the channel lock neither deadlocks nor strands its queue:
    queued requests get ServerDisappeared."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    lock = server._channel.lock
    in_a_cycle(server)
    del server
    collect_with_lock_held(lock)

    with pytest.raises(ServerDisappeared):
        pending.blocking.wait(timeout=WAIT)


# -- a cancel scope landing while a reply is on its way ------------------------------------


async def test_reply_on_its_way_wins_over_a_cancel_scope() -> None:
    """Inside an anyio cancel scope the delivered reply wins: a reply from another thread
    that returned True reaches `send` even when the scope's cancellation lands before the
    event loop has run the reply's wake-up."""
    server, client = asyncmp.channel()
    got: list[object] = []
    replied: list[bool] = []
    scope = anyio.CancelScope()

    async def requester() -> None:
        with scope:
            got.append(await client.send(1))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(requester)
            await anyio.wait_all_tasks_blocked()
            item = server.try_pop()
            assert item is not None
            rctx = item[1]
            # The reply is sent while this loop is blocked, so its wake-up is still queued
            # when the scope is cancelled just after.
            replier = threading.Thread(target=lambda: replied.append(rctx.reply(42)))
            replier.start()
            replier.join(WAIT)
            scope.cancel()

    assert replied == [True]
    assert got == [42]


async def test_pending_reply_on_its_way_wins_over_a_cancel_scope() -> None:
    """The same for `await pending`: the reply that `reply()` reported delivered is what
    the awaiting task gets, although its scope was cancelled meanwhile."""
    server, client = asyncmp.channel()
    got: list[object] = []
    replied: list[bool] = []
    scope = anyio.CancelScope()
    pending = client.request(1)

    async def requester() -> None:
        with scope:
            got.append(await pending)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(requester)
            await anyio.wait_all_tasks_blocked()
            item = server.try_pop()
            assert item is not None
            rctx = item[1]
            replier = threading.Thread(target=lambda: replied.append(rctx.reply(42)))
            replier.start()
            replier.join(WAIT)
            scope.cancel()

    assert replied == [True]
    assert got == [42]


async def test_reply_after_the_scope_cancelled_the_send_returns_false() -> None:
    """A reply that comes after the cancel scope made `send` give up is reported as not
    delivered: `reply()` returns False."""
    server, client = asyncmp.channel()
    scope = anyio.CancelScope()
    replied: list[bool] = []

    async def requester() -> None:
        with scope:
            await client.send(1)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(requester)
            await anyio.wait_all_tasks_blocked()
            item = server.try_pop()
            assert item is not None
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            rctx = item[1]
            replier = threading.Thread(target=lambda: replied.append(rctx.reply(42)))
            replier.start()
            replier.join(WAIT)

    assert scope.cancelled_caught
    assert replied == [False]


# -- a loop that moves to another thread ---------------------------------------------------

LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="uvloop"),
]


@pytest.mark.parametrize("new_loop", LOOPS)
def test_reply_on_the_senders_old_thread_reaches_its_loop_on_a_new_thread(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A reply given on the thread that sent the request, after the requester's loop moved
    to another thread, wakes the loop where it runs now: the task gets the reply."""
    server, client = asyncmp.channel()
    loop = new_loop()
    loop.set_debug(True)  # makes a wake-up from the wrong thread raise, not just go unseen
    try:
        task = loop.create_task(client.send(1))
        loop.run_until_complete(asyncio.sleep(0))  # the request is sent from this thread
        item = server.try_pop()
        assert item is not None

        running = threading.Event()
        result: list[object] = []
        loop.call_soon(running.set)

        def run_elsewhere() -> None:
            try:
                result.append(loop.run_until_complete(task))
            except BaseException as exc:  # the loop was stopped: the wake-up never came
                result.append(exc)

        mover = threading.Thread(target=run_elsewhere, daemon=True)
        mover.start()
        assert running.wait(WAIT)

        replied = item[1].reply(2)  # on the thread that sent the request
        mover.join(WAIT)
        if mover.is_alive():  # the task was never woken: stop the loop, then fail
            loop.call_soon_threadsafe(loop.stop)
            mover.join(WAIT)
        assert replied is True
        assert result == [2]
    finally:
        loop.close()


# -- a send collected after its loop closed ------------------------------------------------


@pytest.mark.parametrize("new_loop", LOOPS)
def test_send_collected_after_its_loop_closed_reports_nothing(
    new_loop: Callable[[], asyncio.AbstractEventLoop], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `send` left waiting when its loop was closed, and then failed by the server closing,
    is collected quietly: no "Exception ignored … Event loop is closed"."""
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    server, client = asyncmp.channel()
    loop = new_loop()
    task = loop.create_task(client.send(1))
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    server.close()  # the request's ServerDisappeared cannot reach the closed loop
    del task
    gc.collect()

    assert [u.exc_value for u in unraisable] == []


# -- a signal whose handler runs as compiled code returns -------------------------------------
#
# Python runs a signal handler at its next check, which compiled code never reaches: a
# handler for a signal that arrived while a compiled call ran runs as the call returns, in the
# caller, whatever the call returned. So a blocking call runs pending handlers itself, before
# it changes anything and before it returns what it took. These tests leave a signal pending
# at those instants by calling from C code only (map, operator.methodcaller, functools.partial),
# so Python has no chance to run the handler in between; on the pure core the call's own frame
# runs it at once, which is what the compiled core now does.

# Calls its argument with no arguments, in C (operator.call, which does the same, is 3.11+).
invoke = operator.methodcaller("__call__")

needs_main_thread = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers run on the main thread only",
)


@pytest.fixture
def pending_interrupt() -> Iterator[Callable[[], None]]:
    """A C callable that leaves a SIGUSR1 pending whose handler raises KeyboardInterrupt
    (once), as Ctrl-C's does."""
    import _thread

    armed = [True]

    def on_signal(signum: int, frame: object) -> None:
        if armed:
            armed.clear()
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGUSR1, on_signal)
    try:
        yield functools.partial(_thread.interrupt_main, signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert not armed, "the handler never ran"


def call_from_c(*calls: Callable[[], object]) -> list[object]:
    """Run *calls* in turn from C code: no Python runs between them (see above)."""
    results: list[object] = []
    functools.partial(results.extend, map(invoke, calls))()
    return results


@needs_main_thread
def test_blocking_send_with_a_signal_pending_sends_nothing(
    pending_interrupt: Callable[[], None], core: ModuleType
) -> None:
    """A Ctrl-C that came before `client.blocking.send` raises before the request is sent:
    the server, parked in a thread and ready to answer, never sees it. (Before, the compiled
    core sent it, the server answered, and the interrupt, handled as the call returned,
    dropped the answer.)"""
    server, client = asyncmp.channel()
    seen: list[object] = []
    answered = threading.Lock()
    answered.acquire()

    def serve() -> None:
        for msg, rctx in server.blocking:
            seen.append(msg)
            rctx.reply(msg)
            answered.release()

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    # Were the request sent, the wait would find the answer there already: right before it
    # blocks, wait (in C: a lock's acquire runs no handler for a pending signal) until the
    # server has answered.
    core._set_hooks(
        types.SimpleNamespace(
            before_push=id, before_wait=functools.partial(answered.acquire, True, WAIT)
        )
    )
    try:
        with pytest.raises(KeyboardInterrupt):
            # No timeout: its check is Python code, which would run the handler first.
            call_from_c(pending_interrupt, functools.partial(client.blocking.send, 1))
    finally:
        core._set_hooks(None)
    client.close()
    serving.join(WAIT)
    assert not serving.is_alive()
    assert seen == []


@needs_main_thread
def test_blocking_wait_with_a_signal_pending_takes_nothing(
    pending_interrupt: Callable[[], None],
) -> None:
    """A Ctrl-C that came before `server.blocking.wait` raises before a queued request is
    taken: the next wait gets it. (Before, the compiled core returned it and the interrupt,
    handled in the caller, dropped it: the client got NoReply.)"""
    server, client = asyncmp.channel()
    pending = client.request("queued")
    with pytest.raises(KeyboardInterrupt):
        # No timeout: its check is Python code, which would run the handler first.
        call_from_c(pending_interrupt, server.blocking.wait)
    msg, rctx = server.blocking.wait(timeout=WAIT)
    assert msg == "queued"
    assert rctx.reply("ok") is True
    assert pending.blocking.wait(timeout=WAIT) == "ok"


@needs_main_thread
def test_blocking_wait_gives_back_a_request_taken_as_a_signal_came(
    pending_interrupt: Callable[[], None], core: ModuleType
) -> None:
    """A Ctrl-C that comes as a request is handed to a parked `server.blocking.wait` — the
    wait finds its wake-up there and would return the request — gives the request back: the
    next wait gets it."""
    server, client = asyncmp.channel()
    sent: list[Any] = []
    # Right before the wait blocks, and from C only (so that no handler runs in between):
    # a client hands a request to this very wait, then the signal comes.
    hand_over_then_signal = functools.partial(
        sent.extend,
        map(invoke, [functools.partial(client.request, "handed"), pending_interrupt]),
    )
    core._set_hooks(types.SimpleNamespace(before_push=id, before_wait=hand_over_then_signal))
    try:
        with pytest.raises(KeyboardInterrupt):
            server.blocking.wait(timeout=WAIT)
    finally:
        core._set_hooks(None)
    msg, rctx = server.blocking.wait(timeout=WAIT)
    assert msg == "handed"
    assert rctx.reply("ok") is True
    assert sent[0].blocking.wait(timeout=WAIT) == "ok"


@pytest.mark.parametrize("when", ["before", "after"])
def test_interrupt_scheduling_a_hand_off_loses_no_server(when: str) -> None:
    """A Ctrl-C inside the `call_soon_threadsafe` that hands a request to a server task on
    another thread's asyncio loop — before or after it queued the callback — never leaves the
    server parked on a wake-up that will not come: the hand-off is scheduled again (it runs
    once), and the server goes on serving. (Before, the server waited for ever.)"""
    server, client = asyncmp.channel()
    loop = asyncio.new_event_loop()
    parked = threading.Event()
    real = loop.call_soon_threadsafe
    armed = [True]

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        if armed:
            armed.clear()
            if when == "after":
                real(*args, **kwargs)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    async def serve() -> None:
        loop.call_soon(parked.set)
        async for msg, rctx in server:
            rctx.reply(msg)

    serving = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    serving.start()
    try:
        assert parked.wait(WAIT)  # set by the loop after the task's first step: it is parked
        loop.call_soon_threadsafe = interrupted  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            client.blocking.send("lost", timeout=WAIT)
        assert client.blocking.send("next", timeout=WAIT) == "next"
    finally:
        client.close()
        serving.join(WAIT)
        loop.close()
    assert not serving.is_alive()


def test_a_hand_off_to_a_loop_closed_before_it_ran_goes_back_to_the_queue() -> None:
    """A request handed to a server task parked on another loop, whose loop is then closed
    without running the hand-off, goes back to the queue (design.md: a handed-off request is
    never lost): the next server to look takes it, and its requester gets the reply.
    (Before, it ended in NoReply.)"""
    server, client = asyncmp.channel()
    loop = asyncio.new_event_loop()
    parked = loop.create_task(server.wait())
    loop.run_until_complete(asyncio.sleep(0))  # the task's first step parks it on `loop`
    with pytest.warns(RuntimeWarning, match="not running"):
        pending = client.request("handed")  # to the parked task: a callback on `loop`
    loop.close()  # its callbacks are dropped unrun
    del parked
    gc.collect()
    item = server.try_pop()
    assert item is not None
    msg, rctx = item
    assert msg == "handed"
    assert rctx.reply("ok") is True
    assert pending.blocking.wait(timeout=WAIT) == "ok"


class Message:
    """A message a weak reference can watch."""


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_reply_to_a_loop_closed_before_it_ran_keeps_nothing_alive(
    new_loop: Callable[[], asyncio.AbstractEventLoop], busy: bool
) -> None:
    """A reply made while its requester's loop is not running, to a loop then closed without
    running its callbacks (the requester's task never cancelled), is dropped harmlessly as
    docs/threads.md says: nothing is left in flight, and the task, its coroutine and the
    message are collected — also when the wake-up was batched with others. (Before, the
    in-flight entry kept them alive for good.)"""
    server, client = asyncmp.channel()
    loop = new_loop()
    message = Message()
    watch = weakref.ref(message)
    task = loop.create_task(client.send(message))
    task_watch = weakref.ref(task)
    loop.run_until_complete(asyncio.sleep(0))  # the request is queued, the task parked
    item = server.try_pop()
    assert item is not None
    msg, rctx = item
    assert msg is message
    del msg, item, message
    if busy:  # something ready on the loop: an asyncio loop's wake-up is batched (_coalesce)
        loop.call_soon(lambda: None)
    assert rctx.reply("late") is True  # from outside the loop: a callback queued on it
    loop.close()  # the callback is dropped unrun
    del task, rctx
    gc.collect()
    assert task_watch() is None
    assert watch() is None
    server.close()
    client.close()


# -- an answer interrupted on its way ------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(lambda rctx: rctx.reply("ok"), "ok", id="reply"),
        pytest.param(lambda rctx: rctx.fail(KeyError("no")), KeyError, id="fail"),
        pytest.param(lambda rctx: rctx.close(), NoReply, id="close"),
    ],
)
def test_an_answer_interrupted_before_it_arrives_still_arrives_once(
    answer: Callable[[Any], object], expected: object
) -> None:
    """A Ctrl-C on the main thread as an answer is being delivered — after the context was
    marked answered, before the requester had it (made certain: the interrupt strikes as the
    requester's cell starts to take it) — propagates, and the requester still gets the
    answer, once. (Before, it waited for ever: the context was answered, nobody delivered.)"""
    server, client = asyncmp.channel()
    with server, client:
        pending = client.request("q")
        item = server.try_pop()
        assert item is not None
        _msg, rctx = item
        with interrupt_on_call(OutcomeCell.set) as window, pytest.raises(KeyboardInterrupt):
            answer(rctx)
        assert window.tripped
        assert rctx.answered
        outcome: object
        try:
            outcome = pending.blocking.wait(timeout=WAIT)
        except (KeyError, NoReply) as exc:
            outcome = type(exc)
        assert outcome == expected
        assert server.statistics().in_flight == 0


# -- a client closed or cloned as an interrupt strikes ---------------------------------------------


def pure_core_only(core: ModuleType) -> None:
    if core.__name__ == "asyncmp._channel_c":
        pytest.skip("compiled: close() and clone() run no Python code in which to interrupt")


def test_a_close_interrupted_as_it_begins_leaves_the_client_open_and_counted(
    core: ModuleType,
) -> None:
    """Pure core: ``client.close()`` interrupted as the uncounting begins raises with the
    client still open and counted; closing it again ends the server's wait with
    ClientsDisappeared. (Before, the client was marked closed but still counted: a second
    close did nothing and the server waited for ever.)"""
    pure_core_only(core)
    server, client = asyncmp.channel()
    with server:
        with (
            interrupt_on_call(core.ChannelState.drop_client) as window,
            pytest.raises(KeyboardInterrupt),
        ):
            client.close()
        assert window.tripped
        assert not client.closed
        assert server.statistics().clients == 1
        client.close()
        assert client.closed
        with pytest.raises(ClientsDisappeared):
            server.blocking.wait(timeout=WAIT)


def test_a_clone_interrupted_as_it_is_counted_is_uncounted_when_collected(
    core: ModuleType,
) -> None:
    """Pure core: ``client.clone()`` interrupted just after the new client was counted loses
    the clone to the exception; collecting it uncounts it, so the server's wait still ends
    once the original closes. (Before, the count had no client left to drop it: the server
    waited for ever.)"""
    pure_core_only(core)
    server, client = asyncmp.channel()
    with server:
        with (
            interrupt_on_return(core.ChannelState.add_client) as window,
            pytest.raises(KeyboardInterrupt),
        ):
            client.clone()
        assert window.tripped
        gc.collect()
        client.close()
        assert server.statistics().clients == 0
        with pytest.raises(ClientsDisappeared):
            server.blocking.wait(timeout=WAIT)
