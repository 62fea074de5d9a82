"""`Poller` and `WakeFd`: readiness under tokens, reported once per event; stale readiness of a
removed registration never reported with the token of a newer one on the same fd number; a
wake-up from another thread ends a blocked poll; registrations from other threads take effect
at once.

What other threads do *during* a poll is placed exactly there: the poller's epoll set is
wrapped so that a hook runs just before ``epoll_wait`` or just after it returned.
"""

from __future__ import annotations

import math
import os
import select
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asyncmp import Closed
from asyncmp._lowlevel._check import check_timeout
from asyncmp._lowlevel._poller import (
    EPOLLET,
    EPOLLIN,
    EPOLLONESHOT,
    MAX_WAIT,
    Poller,
    WakeFd,
)

from ._support import WAIT

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux only")


class Fds:
    """Pipes made for a test; whatever is still open is closed at the end."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def pipe(self) -> tuple[int, int]:
        r, w = os.pipe()
        self.open |= {r, w}
        return r, w

    def readable_pipe(self) -> tuple[int, int]:
        r, w = self.pipe()
        os.write(w, b"x")
        return r, w

    def close(self, fd: int) -> None:
        self.open.remove(fd)
        os.close(fd)

    def close_all(self) -> None:
        for fd in self.open:
            os.close(fd)
        self.open.clear()


@pytest.fixture
def fds() -> Iterator[Fds]:
    made = Fds()
    yield made
    made.close_all()


@pytest.fixture
def poller() -> Iterator[Poller[Any]]:
    made: Poller[Any] = Poller()
    yield made
    made.close()


class HookedEpoll:
    """Wraps a poller's epoll set: ``before`` runs just before the next ``epoll_wait`` and
    ``after`` just after it returned (once each), as another thread's work would."""

    def __init__(self, poller: Poller[Any]) -> None:
        self.real = poller._epoll
        self.before: Callable[[], object] | None = None
        self.after: Callable[[], object] | None = None
        poller._epoll = self  # type: ignore[assignment]

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        before, self.before = self.before, None
        if before is not None:
            before()
        polled: list[tuple[int, int]] = self.real.poll(timeout)
        after, self.after = self.after, None
        if after is not None:
            after()
        return polled

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


# -- readiness ------------------------------------------------------------------------------


def test_readiness_is_reported_under_the_token(poller: Poller[Any], fds: Fds) -> None:
    """A registered fd is reported with its token while it is ready (level-triggered), and
    not at all before or after."""
    r, w = fds.pipe()
    poller.register(r, EPOLLIN, "token")
    assert poller.poll(0) == ([], False)
    os.write(w, b"x")
    assert poller.poll(0) == ([("token", EPOLLIN)], False)
    assert poller.poll(0) == ([("token", EPOLLIN)], False)  # still ready
    os.read(r, 1)
    assert poller.poll(0) == ([], False)


def test_edge_triggered_readiness_is_reported_once_per_event(poller: Poller[Any], fds: Fds) -> None:
    """An edge-triggered fd is reported once per event, not again while it stays ready."""
    r, w = fds.pipe()
    poller.register(r, EPOLLIN | EPOLLET, "token")
    os.write(w, b"x")
    assert poller.poll(0) == ([("token", EPOLLIN)], False)
    assert poller.poll(0) == ([], False)
    os.write(w, b"y")
    assert poller.poll(0) == ([("token", EPOLLIN)], False)


def test_modify_rearms_a_one_shot_fd_under_its_new_token(poller: Poller[Any], fds: Fds) -> None:
    """A one-shot fd is reported once; `modify` re-arms it, and its events then carry the new
    token."""
    r, _ = fds.readable_pipe()
    poller.register(r, EPOLLIN | EPOLLONESHOT, "old")
    assert poller.poll(0) == ([("old", EPOLLIN)], False)
    assert poller.poll(0) == ([], False)
    poller.modify(r, EPOLLIN | EPOLLONESHOT, "new")
    assert poller.poll(0) == ([("new", EPOLLIN)], False)


def test_the_epoll_fd_is_readable_while_something_is_pending(poller: Poller[Any], fds: Fds) -> None:
    """`fileno` is readable while an event or a wake-up is pending: how a poller nests in
    another event loop."""

    def pending() -> bool:
        return bool(select.select([poller.fileno()], [], [], 0)[0])

    r, w = fds.pipe()
    poller.register(r, EPOLLIN, "token")
    assert not pending()
    os.write(w, b"x")
    assert pending()
    os.read(r, 1)
    assert not pending()
    poller.wakeup()
    assert pending()


# -- stale readiness ------------------------------------------------------------------------


def reuse_number(poller: Poller[Any], fds: Fds, fd: int, unregister: bool, ready: bool) -> None:
    """What another thread may do during a poll: stop watching *fd* (by `unregister`, or
    just by closing it), and give its number to a new pipe's read end (ready or not), which
    is registered under the token ``"new"``."""
    if unregister:
        assert poller.unregister(fd, "old")
    new_r, _ = fds.readable_pipe() if ready else fds.pipe()
    os.dup2(new_r, fd)  # closes the old fd, which leaves the epoll set; same number, new pipe
    fds.close(new_r)
    poller.register(fd, EPOLLIN, "new")


@pytest.mark.parametrize("unregister", [True, False], ids=["unregistered", "closed"])
def test_stale_readiness_is_never_reported_with_a_new_token(
    poller: Poller[Any], fds: Fds, unregister: bool
) -> None:
    """Readiness polled for a registration that was then removed (unregistered, or its fd
    closed) while a new one took the same fd number is dropped: the new token's handler is
    never called for an fd that is not ready."""
    r, _ = fds.readable_pipe()
    poller.register(r, EPOLLIN, "old")
    hooked = HookedEpoll(poller)
    hooked.after = lambda: reuse_number(poller, fds, r, unregister, ready=False)
    assert poller.poll(WAIT) == ([], False)


@pytest.mark.parametrize("unregister", [True, False], ids=["unregistered", "closed"])
def test_a_ready_new_registration_on_a_reused_number_is_reported_once(
    poller: Poller[Any], fds: Fds, unregister: bool
) -> None:
    """If the new registration on the reused number is ready, the same poll reports it once,
    under the new token; the other fds' events are reported as usual."""
    r, _ = fds.readable_pipe()
    other, _ = fds.readable_pipe()
    poller.register(r, EPOLLIN, "old")
    poller.register(other, EPOLLIN, "other")
    hooked = HookedEpoll(poller)
    hooked.after = lambda: reuse_number(poller, fds, r, unregister, ready=True)
    events, woken = poller.poll(WAIT)
    assert sorted(events) == [("new", EPOLLIN), ("other", EPOLLIN)]
    assert not woken


@pytest.mark.parametrize(
    "mask", [EPOLLIN | EPOLLET, EPOLLIN | EPOLLONESHOT], ids=["edge", "oneshot"]
)
def test_an_event_between_the_poll_and_its_second_look_is_kept(
    poller: Poller[Any], fds: Fds, mask: int
) -> None:
    """When a poll looks again because it dropped an ambiguous event, what that second look
    reports for the other fds is kept: an edge-triggered or one-shot fd that became ready in
    between is reported once, not consumed and lost (the kernel would not report it again)."""
    r, _ = fds.readable_pipe()
    edge_r, edge_w = fds.pipe()
    poller.register(r, EPOLLIN, "old")
    poller.register(edge_r, mask, "edge")

    def meanwhile() -> None:
        reuse_number(poller, fds, r, unregister=True, ready=False)
        os.write(edge_w, b"x")

    hooked = HookedEpoll(poller)
    hooked.after = meanwhile
    assert poller.poll(WAIT) == ([("edge", EPOLLIN)], False)
    assert poller.poll(0) == ([], False)


def test_an_fd_unregistered_during_a_poll_is_not_reported(poller: Poller[Any], fds: Fds) -> None:
    """Readiness of an fd whose registration is gone when the poll maps events to tokens is
    not reported (its handler may be gone too)."""
    r, _ = fds.readable_pipe()
    poller.register(r, EPOLLIN, "old")
    hooked = HookedEpoll(poller)
    hooked.after = lambda: poller.unregister(r)
    assert poller.poll(WAIT) == ([], False)


# -- other threads --------------------------------------------------------------------------


def poll_in_thread(poller: Poller[Any]) -> tuple[threading.Thread, list[Any]]:
    """Start a thread that polls (up to `WAIT` seconds); the event is set as it enters
    ``epoll_wait``."""
    entering = threading.Event()
    HookedEpoll(poller).before = entering.set
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(poller.poll(WAIT)), daemon=True)
    thread.start()
    assert entering.wait(WAIT)
    return thread, result


def test_wakeup_from_another_thread_ends_a_blocked_poll(poller: Poller[Any]) -> None:
    """`wakeup` from another thread ends a poll that waits, reporting no event and
    ``woken``; the wake-up is consumed, so the next poll does not see it again. Wake-ups
    that come before a poll end it at once."""
    thread, result = poll_in_thread(poller)
    poller.wakeup()
    thread.join(WAIT)
    assert result == [([], True)]
    assert poller.poll(0) == ([], False)
    poller.wakeup()  # before the poll: not lost, the next poll returns at once
    poller.wakeup()
    assert poller.poll(WAIT) == ([], True)
    assert poller.poll(0) == ([], False)


class ChunkedEpoll:
    """Stands in for a poller's epoll set: records each wait's timeout and returns at once,
    empty (as a wait that ran out) until the third wait, which a wake-up ends."""

    def __init__(self, poller: Poller[Any]) -> None:
        self.poller = poller
        self.real = poller._epoll
        self.timeouts: list[float] = []
        poller._epoll = self  # type: ignore[assignment]

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        self.timeouts.append(timeout)
        if len(self.timeouts) < 3:
            return []
        self.poller.wakeup()
        polled: list[tuple[int, int]] = self.real.poll(0)
        return polled

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_timeout_longer_than_epoll_takes_is_waited_out_in_max_waits(
    poller: Poller[Any],
) -> None:
    """A timeout as `check_timeout` makes it (``inf`` is ``threading.TIMEOUT_MAX``, which
    epoll refuses with OverflowError) is waited out in waits of at most `MAX_WAIT`; one that
    ends empty does not end the poll, whose timeout has not passed."""
    timeout = check_timeout(math.inf)
    assert timeout is not None
    epoll = ChunkedEpoll(poller)
    assert poller.poll(timeout) == ([], True)
    assert epoll.timeouts == [MAX_WAIT, MAX_WAIT, MAX_WAIT]


def test_a_registration_from_another_thread_reaches_a_blocked_poll(
    poller: Poller[Any], fds: Fds
) -> None:
    """An fd registered by another thread while one polls is watched at once: its readiness
    ends the poll that is already waiting."""
    thread, result = poll_in_thread(poller)
    r, _ = fds.readable_pipe()
    poller.register(r, EPOLLIN, "token")
    thread.join(WAIT)
    assert result == [([("token", EPOLLIN)], False)]


def test_poll_owned_reports_what_poll_reports(poller: Poller[Any], fds: Fds) -> None:
    """`poll_owned` (for an owner that registers only on the polling thread, as calloop
    does) reports the same as `poll`: readiness under its token, level-triggered; a
    wake-up as ``woken``, consumed; nothing for an fd no longer registered; and a closed
    poller raises Closed."""
    r, w = fds.pipe()
    poller.register(r, EPOLLIN, "token")
    assert poller.poll_owned(0) == ([], False)
    os.write(w, b"x")
    assert poller.poll_owned(0) == ([("token", EPOLLIN)], False)
    assert poller.poll_owned(0) == poller.poll(0)
    poller.wakeup()
    poller.wakeup()
    assert poller.poll_owned(WAIT) == ([("token", EPOLLIN)], True)
    assert poller.poll_owned(0) == ([("token", EPOLLIN)], False)  # the wake-up was taken
    poller.unregister(r)
    assert poller.poll_owned(0) == ([], False)
    poller.close()
    with pytest.raises(Closed):
        poller.poll_owned(0)


# -- registrations --------------------------------------------------------------------------


def test_unregister_removes_once_and_only_under_its_token(poller: Poller[Any], fds: Fds) -> None:
    """`unregister` with another token leaves the registration (the number may belong to a
    newer one); with its token, or none, it removes it once, also after the fd was closed;
    its readiness is no longer reported."""
    r, _ = fds.readable_pipe()
    poller.register(r, EPOLLIN, "mine")
    assert poller.unregister(r, "someone else's") is False
    assert poller.poll(0) == ([("mine", EPOLLIN)], False)
    assert poller.unregister(r, "mine") is True
    assert poller.unregister(r) is False
    assert poller.poll(0) == ([], False)
    poller.register(r, EPOLLIN, "again")  # the fd may be registered anew
    fds.close(r)  # closed first: epoll dropped it already, and unregister does not mind
    assert poller.unregister(r, "again") is True


def test_bad_registrations_raise(poller: Poller[Any], fds: Fds) -> None:
    """Registering an fd twice is FileExistsError; modifying one that is not registered is
    FileNotFoundError; a closed fd is refused by the kernel (OSError). None is half-done."""
    r, _ = fds.pipe()
    poller.register(r, EPOLLIN, "token")
    with pytest.raises(FileExistsError):
        poller.register(r, EPOLLIN, "again")
    other, _ = fds.pipe()
    with pytest.raises(FileNotFoundError, match="not registered"):
        poller.modify(other, EPOLLIN, "token")
    fds.close(other)
    with pytest.raises(OSError):
        poller.register(other, EPOLLIN, "closed")
    assert poller.unregister(other) is False
    assert poller.unregister(r, "token") is True


def test_a_closed_poller_refuses_work(poller: Poller[Any], fds: Fds) -> None:
    """A closed poller raises Closed on register, modify and poll; close is idempotent, and
    wakeup and unregister do nothing."""
    r, _ = fds.pipe()
    poller.register(r, EPOLLIN, "token")
    poller.close()
    poller.close()
    assert poller.closed
    with pytest.raises(Closed):
        poller.register(r, EPOLLIN, "token")
    with pytest.raises(Closed):
        poller.modify(r, EPOLLIN, "token")
    with pytest.raises(Closed):
        poller.poll(0)
    poller.wakeup()
    assert poller.unregister(r) is False


# -- WakeFd ---------------------------------------------------------------------------------


def test_wake_fd_counts_what_is_added_until_taken() -> None:
    """`WakeFd.take` returns the sum added since the last take (0 if none), and the fd is
    readable exactly while something is there to take."""
    wake = WakeFd()
    try:

        def readable() -> bool:
            return bool(select.select([wake], [], [], 0)[0])

        assert wake.take() == 0
        assert not readable()
        wake.add(2)
        wake.add(3)
        assert readable()
        assert wake.take() == 5
        assert not readable()
        assert wake.take() == 0
    finally:
        wake.close()
    assert wake.closed
    wake.close()  # idempotent
