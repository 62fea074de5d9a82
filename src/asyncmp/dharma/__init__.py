"""asyncmp.dharma: the port of dharma — senders and receivers wired many-to-many, a Signaler
for application signals, event loops that host modules on threads, an fd dispatcher, OS signal
handling and a periodic timer.

Every name has one public path, here (`asyncmp.dharma.Signaler`): this module only
re-exports, the implementation lives in private modules, and tracebacks and the docs name
``asyncmp.dharma``, as for `asyncmp.calloop` and `asyncmp` itself. The dispatcher, the timer
and the system signal handler are Linux-only (epoll, timerfd), as in dharma.
"""

from __future__ import annotations

from .._lowlevel._public import publish
from ._bridge import (
    EMPTY as EMPTY,
    TIMEOUT as TIMEOUT,
    Custom as Custom,
    Defined as Defined,
    DirectSender as DirectSender,
    NoMessage as NoMessage,
    Plain as Plain,
    Receiver as Receiver,
    ReceiveResult as ReceiveResult,
    ReceiverStatistics as ReceiverStatistics,
    Sender as Sender,
    SignalId as SignalId,
    Special as Special,
    SpecialCommand as SpecialCommand,
    connect as connect,
    direct_connect as direct_connect,
)
from ._dispatcher import (
    Dispatcher as Dispatcher,
    DispatcherController as DispatcherController,
    EventHandler as EventHandler,
    EventHandlerId as EventHandlerId,
    EventKind as EventKind,
    LocalDispatcher as LocalDispatcher,
)
from ._event_loop import (
    EventLoopInfo as EventLoopInfo,
    Module as Module,
    ModuleConstructor as ModuleConstructor,
    Service as Service,
    ServiceConstructor as ServiceConstructor,
    ServiceInfo as ServiceInfo,
)
from ._signaler import (
    Signaler as Signaler,
    SignalerStatistics as SignalerStatistics,
)
from ._system import (
    SignalEventHandler as SignalEventHandler,
    block_signals as block_signals,
    unblock_signals as unblock_signals,
)
from ._timer import (
    PeriodicTimer as PeriodicTimer,
)

__all__ = (
    "EMPTY",
    "TIMEOUT",
    "Custom",
    "Defined",
    "DirectSender",
    "Dispatcher",
    "DispatcherController",
    "EventHandler",
    "EventHandlerId",
    "EventKind",
    "EventLoopInfo",
    "LocalDispatcher",
    "Module",
    "ModuleConstructor",
    "NoMessage",
    "PeriodicTimer",
    "Plain",
    "ReceiveResult",
    "Receiver",
    "ReceiverStatistics",
    "Sender",
    "Service",
    "ServiceConstructor",
    "ServiceInfo",
    "SignalEventHandler",
    "SignalId",
    "Signaler",
    "SignalerStatistics",
    "Special",
    "SpecialCommand",
    "block_signals",
    "connect",
    "direct_connect",
    "unblock_signals",
)

# Tracebacks and docs name the public path (asyncmp.dharma.Signaler), not the private module.
publish(globals(), __all__)
del publish
