"""What `Stage.enter` returns: one of three small frozen records.

They are plain dataclasses so that ``match`` works on them and tests can build and compare
them: ``case Finished(value):``, ``case Notified():``, ``case TimedOut():``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, final

__all__ = ("Finished", "Notified", "TimedOut")

Ret = TypeVar("Ret")


@final
@dataclass(frozen=True, slots=True)
class Finished(Generic[Ret]):
    """This caller headed the stage; ``value`` is what its head function returned.

    Unlike `Notified`, the caller did the reading itself: whatever it
    found for its own token is in ``value``, not in the buffer.
    """

    value: Ret
    """The head function's return value."""


@final
@dataclass(frozen=True, slots=True)
class Notified:
    """A head notified this caller's token: what it routed here is in the buffer.

    The notification was consumed by this return; the ticket is still held, so a later
    notification is recorded again.
    """


@final
@dataclass(frozen=True, slots=True)
class TimedOut:
    """The timeout passed before this caller was notified or got to head the stage.

    A notification that arrived as the timeout fired stays marked on the ticket (the next
    ``enter`` returns `Notified` at once), and a promotion to head that
    arrived as it fired was handed on to the next waiter: nothing is lost.
    """
