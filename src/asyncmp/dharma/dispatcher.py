"""File-descriptor events dispatched to handlers: dharma's Dispatcher (Linux: epoll).

The implementation lives in `asyncmp.dharma._dispatcher`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._dispatcher import (
    Dispatcher as Dispatcher,
    DispatcherController as DispatcherController,
    EventHandler as EventHandler,
    EventHandlerId as EventHandlerId,
    EventKind as EventKind,
    LocalDispatcher as LocalDispatcher,
)

__all__ = (
    "Dispatcher",
    "DispatcherController",
    "EventHandler",
    "EventHandlerId",
    "EventKind",
    "LocalDispatcher",
)
