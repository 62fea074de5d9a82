"""`finalize`: how a ``__del__`` that needs a lock runs its work, never deadlocking."""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable

__all__ = ("finalize",)


def finalize(
    locks: tuple[threading.Lock, ...], action: Callable[..., object], *args: object
) -> None:
    """Run ``action(*args)``, which takes *locks*, from a finalizer (``__del__``) without
    ever deadlocking, and without losing it.

    A finalizer runs wherever a garbage collection starts, which may be an allocation made
    while this very thread holds one of the *locks*; a plain lock waited for there would never
    be released. So each lock is only tried. All free: they are released again and *action*
    runs here, where its own acquires can only wait for other threads (a collection inside
    *action* finds the lock held and takes the other branch). One held — by another thread
    or by this one, a plain lock cannot tell — *action* runs on a new thread, which waits
    for the holder. This costs the finalizers one try per lock and the per-request paths
    nothing.
    """
    taken: list[threading.Lock] = []
    for lock in locks:
        if not lock.acquire(blocking=False):
            break
        taken.append(lock)
    for lock in taken:
        lock.release()
    if len(taken) == len(locks):
        action(*args)
        return
    try:
        # A bare thread: starting a threading.Thread takes the threading module's own locks,
        # which the collection may have interrupted too.
        _thread.start_new_thread(action, args)
    except RuntimeError:  # the interpreter is shutting down: nobody is left to tell
        pass
