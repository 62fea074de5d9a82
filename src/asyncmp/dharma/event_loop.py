"""Event loops that host modules, and services: dharma's EventLoop and Service.

The implementation lives in `asyncmp.dharma._event_loop`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._event_loop import (
    EventLoopInfo as EventLoopInfo,
    Module as Module,
    ModuleConstructor as ModuleConstructor,
    Service as Service,
    ServiceConstructor as ServiceConstructor,
    ServiceInfo as ServiceInfo,
)

__all__ = (
    "EventLoopInfo",
    "Module",
    "ModuleConstructor",
    "Service",
    "ServiceConstructor",
    "ServiceInfo",
)
