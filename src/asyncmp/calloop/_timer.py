"""Timer: an event at a deadline, driven by the poller's timer heap (no OS timer).

The event is the *scheduled* deadline (a ``time.monotonic()`` value), not the firing time,
so a callback returning ``TimeoutAction.to_instant(deadline + period)`` makes a drift-free
periodic timer; ``to_duration(d)`` rearms at now + d, measured after the callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import final

from .._lowlevel._check import check_seconds
from .._lowlevel._public import NoPublicConstructor
from ._poll import Poll, Readiness
from ._source import PostAction
from ._token import Token, TokenFactory

__all__ = ("TimeoutAction", "Timer")


@final
class TimeoutAction(
    metaclass=NoPublicConstructor, made_by="TimeoutAction.drop(), .to_instant(t) or .to_duration(d)"
):
    """What a timer callback returns: `drop` it, or
    rearm it `to_instant` or
    `to_duration`. ``None`` means drop.
    """

    __slots__ = ("_at", "_kind")
    _kind: str
    _at: float

    @classmethod
    def _create(cls, kind: str, at: float) -> TimeoutAction:
        self = object.__new__(cls)
        self._kind = kind
        self._at = at
        return self

    @classmethod
    def drop(cls) -> TimeoutAction:
        """Remove the timer from the loop."""
        return _DROP

    @classmethod
    def to_instant(cls, deadline: float) -> TimeoutAction:
        """Fire again at *deadline* (``time.monotonic()`` seconds); a past one fires at once."""
        return cls._create("instant", check_seconds(deadline, "deadline"))

    @classmethod
    def to_duration(cls, duration: float) -> TimeoutAction:
        """Fire again *duration* seconds after the callback returns (``inf``: remove it)."""
        d = check_seconds(duration, "duration")
        if d < 0:
            raise ValueError(f"duration must be >= 0, not {d}")
        self = object.__new__(cls)  # _create, inlined: a periodic timer makes one per period
        self._kind = "duration"
        self._at = d
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeoutAction):
            return NotImplemented
        return (self._kind, self._at) == (other._kind, other._at)

    def __hash__(self) -> int:
        return hash((self._kind, self._at))

    def __repr__(self) -> str:
        if self._kind == "drop":
            return "TimeoutAction.drop()"
        return f"TimeoutAction.to_{self._kind}({self._at!r})"


_DROP = TimeoutAction._create("drop", 0.0)


@final
class Timer(
    metaclass=NoPublicConstructor,
    made_by="Timer.immediate(), Timer.from_duration(d) or Timer.from_deadline(t)",
):
    """An event source that fires once at a deadline; its callback returns a `TimeoutAction`.

    The callback gets ``(deadline, None, data)``. Make one with
    `immediate`,
    `from_duration` or
    `from_deadline`. A deadline that has passed when
    the timer is inserted (or enabled) fires at the next dispatch. An infinite duration
    never fires.
    """

    __slots__ = ("_deadline", "_poll", "_timer_id", "_token")
    _deadline: float | None
    _poll: Poll | None
    _timer_id: int | None
    _token: Token | None

    @classmethod
    def _create(cls, deadline: float | None) -> Timer:
        self = object.__new__(cls)
        self._deadline = deadline
        self._poll = None
        self._timer_id = None
        self._token = None
        return self

    @classmethod
    def immediate(cls) -> Timer:
        """A timer due now: it fires at the next dispatch."""
        return cls._create(time.monotonic())

    @classmethod
    def from_duration(cls, duration: float) -> Timer:
        """A timer due *duration* seconds from now (``math.inf``: never)."""
        return cls._create(_deadline_after(duration))

    @classmethod
    def from_deadline(cls, deadline: float) -> Timer:
        """A timer due at *deadline*, a ``time.monotonic()`` value."""
        return cls._create(check_seconds(deadline, "deadline"))

    def set_deadline(self, deadline: float) -> None:
        """Change the deadline; takes effect at the next (re)registration."""
        self._deadline = check_seconds(deadline, "deadline")

    def set_duration(self, duration: float) -> None:
        """Change the deadline to now + *duration*; takes effect at the next (re)registration."""
        self._deadline = _deadline_after(duration)

    def current_deadline(self) -> float | None:
        """The deadline, or ``None`` if it is infinitely far (the timer never fires)."""
        return self._deadline

    def register(self, poll: Poll, token_factory: TokenFactory) -> None:
        token = token_factory.token()
        self._poll, self._token = poll, token
        if self._deadline is not None:
            self._timer_id = poll.insert_timer(self._deadline, token)

    def reregister(self, poll: Poll, token_factory: TokenFactory) -> None:
        # unregister() then register(), in one step: a periodic timer does this per period.
        if self._timer_id is not None:
            poll.cancel_timer(self._timer_id)
        token = self._token
        if (
            token is None
            or token_factory._next
            or token._sub
            or token_factory._slot != token._slot
            or token_factory._version != token._version
        ):
            token = token_factory.token()
        else:
            # The factory's first token would equal the one this timer holds (tokens are
            # values): keep it, and count it as made.
            token_factory._next = 1
        self._poll, self._token = poll, token
        deadline = self._deadline
        self._timer_id = None if deadline is None else poll.insert_timer(deadline, token)

    def _rearm(self, poll: Poll) -> bool:
        # The loop's REREGISTER after this timer's event (see _Slot.rearm): `reregister`
        # with the token it holds; False if it holds none (not registered).
        token = self._token
        if token is None or poll is not self._poll:
            return False
        if self._timer_id is not None:
            poll.cancel_timer(self._timer_id)
        deadline = self._deadline
        self._timer_id = None if deadline is None else poll.insert_timer(deadline, token)
        return True

    def unregister(self, poll: Poll) -> None:
        if self._timer_id is not None:
            poll.cancel_timer(self._timer_id)
        # Clearing the token drops an event already polled for this timer.
        self._poll = self._timer_id = self._token = None

    def process_events(
        self,
        readiness: Readiness,
        token: Token,
        callback: Callable[[float, None], TimeoutAction | None],
    ) -> PostAction:
        mine = self._token
        if (token is not mine and token != mine) or self._deadline is None:
            return PostAction.CONTINUE
        self._timer_id = None  # the poller popped it
        action: object = callback(self._deadline, None)
        if action is None or action is _DROP:
            return PostAction.REMOVE
        if not isinstance(action, TimeoutAction):
            hint = (
                " (a timer's callback says what to do with a TimeoutAction: "
                "TimeoutAction.drop() removes it)"
                if isinstance(action, PostAction)
                else ""
            )
            raise TypeError(f"a timer callback must return a TimeoutAction, not {action!r}{hint}")
        if action._kind == "instant":
            self._deadline = action._at
        else:
            at = action._at  # checked by to_duration(): a number >= 0
            if at == _INF:
                self._deadline = None
                return PostAction.REMOVE  # it would never fire
            self._deadline = _monotonic() + at
        return _REREGISTER

    def __repr__(self) -> str:
        return f"<calloop.Timer deadline={self._deadline!r}>"


_INF = math.inf
_REREGISTER = PostAction.REREGISTER
_monotonic = time.monotonic


def _deadline_after(duration: float) -> float | None:
    d = check_seconds(duration, "duration")
    if d < 0:
        raise ValueError(f"duration must be >= 0, not {d}")
    return None if math.isinf(d) else time.monotonic() + d
