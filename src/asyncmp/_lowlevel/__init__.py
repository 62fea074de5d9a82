"""asyncmp's low-level layer: what every part of the package stands on.

- `_backend`: which async library runs the caller (asyncio, uvloop, trio), resolved cheaply;
  the one module that asks sniffio or asyncio.
- `_check`: argument checks (ints, numbers of seconds, timeouts), one meaning each.
- `_linux`: libc through ctypes, timerfd, signalfd, and per-thread signal masks.
- `_wake`: the one protocol by which a parked task or thread is woken from any thread or loop.
- `_coalesce`: cross-thread wake-ups of one asyncio loop batched into one ``call_soon_threadsafe``.
- `_waitqueue`: the one queue of parked waiters.
- `_outcome`: the one cell behind every pending result.
- `_poller`: the one epoll set with a wake-up fd (the dharma dispatcher and calloop), and
  `MAX_WAIT`, the longest single epoll wait.
- `_finalize`: how every ``__del__`` does its work without waiting for a lock.
- `_format`: numbers of seconds in messages.
- `_public`: handles without a public constructor; public module names on re-exports.

Nothing here is public API. The modules are imported by their full private path
(``from .._lowlevel._wake import park``), so this package's ``__init__`` stays empty of imports
and importing one piece never imports the others.
"""
