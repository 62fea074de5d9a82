"""asyncmp.calloop: a callback-based event loop of event sources (calloop in Python).

Insert event sources with callbacks in an `EventLoop`; each dispatch calls them with their
events and the shared ``data``. Run it on a thread (``dispatch``/``run``) or nested in the
running asyncio or trio loop (``await loop.run_async(data)``).

This module only re-exports; the implementation lives in private modules.
"""

from __future__ import annotations

from .._lowlevel._public import publish
from ._channel import (
    CalloopChannelStatistics as CalloopChannelStatistics,
    Channel as Channel,
    ChannelClosed as ChannelClosed,
    ChannelSender as ChannelSender,
    Msg as Msg,
    SyncChannelSender as SyncChannelSender,
    channel as channel,
    sync_channel as sync_channel,
)
from ._errors import (
    ExecutorDestroyed as ExecutorDestroyed,
    InsertError as InsertError,
    InvalidToken as InvalidToken,
)
from ._executor import (
    Async as Async,
    Executor as Executor,
    Scheduler as Scheduler,
    TimeoutFuture as TimeoutFuture,
    executor as executor,
)
from ._fd_source import FdSource as FdSource
from ._loop import (
    EventLoop as EventLoop,
    Idle as Idle,
    LoopHandle as LoopHandle,
    LoopSignal as LoopSignal,
)
from ._ping import Ping as Ping, PingSource as PingSource, make_ping as make_ping
from ._poll import Interest as Interest, Mode as Mode, Poll as Poll, Readiness as Readiness
from ._signals import SignalEvent as SignalEvent, Signals as Signals
from ._source import EventSource as EventSource, PostAction as PostAction
from ._timer import TimeoutAction as TimeoutAction, Timer as Timer
from ._token import (
    RegistrationToken as RegistrationToken,
    Token as Token,
    TokenFactory as TokenFactory,
)

__all__ = (
    "Async",
    "CalloopChannelStatistics",
    "Channel",
    "ChannelClosed",
    "ChannelSender",
    "EventLoop",
    "EventSource",
    "Executor",
    "ExecutorDestroyed",
    "FdSource",
    "Idle",
    "InsertError",
    "Interest",
    "InvalidToken",
    "LoopHandle",
    "LoopSignal",
    "Mode",
    "Msg",
    "Ping",
    "PingSource",
    "Poll",
    "Readiness",
    "Scheduler",
    "SignalEvent",
    "Signals",
    "SyncChannelSender",
    "TimeoutAction",
    "TimeoutFuture",
    "Timer",
    "Token",
    "TokenFactory",
    "channel",
    "executor",
    "make_ping",
    "sync_channel",
)

# Tracebacks and docs name the public path (asyncmp.calloop.Timer), not the private module.
publish(globals(), __all__)
del publish
