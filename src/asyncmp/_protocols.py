"""What every asyncmp client offers, as protocols: for code that takes "a client".

A local `Client` and an `asyncmp.nats.Client`
(and their pending replies) satisfy these structurally, so a function annotated with
``AnyClient[Req, Rep]`` accepts either, and type checkers check the message and reply
types as they do for the concrete classes::

    async def total(client: asyncmp.AnyClient[Add, int]) -> int:
        return await client.send(Add(1, 2))

Only what both kinds share is here: a local client's `weak()` and a NATS client's
`subject` are not.
"""

from __future__ import annotations

from collections.abc import Generator
from types import TracebackType
from typing import Any, Protocol, TypeVar

__all__ = ("AnyBlockingClient", "AnyBlockingPendingReply", "AnyClient", "AnyPendingReply")

Req_contra = TypeVar("Req_contra", contravariant=True)
Rep_co = TypeVar("Rep_co", covariant=True)
C = TypeVar("C")


class AnyBlockingPendingReply(Protocol[Rep_co]):
    """``pending.blocking`` of any pending reply: wait for it from a plain thread."""

    def wait(self, timeout: float | None = None) -> Rep_co:
        """Block until the reply arrives and return it (or raise the error)."""
        ...


class AnyPendingReply(Protocol[Rep_co]):
    """A request sent with ``client.request(msg)`` whose reply is collected later:
    ``await pending`` or ``pending.blocking.wait(timeout)``."""

    def __await__(self) -> Generator[Any, None, Rep_co]: ...

    def done(self) -> bool:
        """Whether the outcome has arrived (or the request was given up)."""
        ...

    def cancel(self) -> bool:
        """Give up on the reply; ``True`` if it had not arrived."""
        ...

    @property
    def blocking(self) -> AnyBlockingPendingReply[Rep_co]:
        """The blocking face, for plain threads."""
        ...


class AnyBlockingClient(Protocol[Req_contra, Rep_co]):
    """``client.blocking`` of any client: send from a plain thread."""

    def send(self, msg: Req_contra, timeout: float | None = None) -> Rep_co:
        """Send *msg* and block until the reply arrives."""
        ...


class AnyClient(Protocol[Req_contra, Rep_co]):
    """Any asyncmp client: a local `Client` or an
    `asyncmp.nats.Client`.

    Annotate a parameter with it to accept either; the methods behave as documented on
    each class.
    """

    async def send(self, msg: Req_contra) -> Rep_co:
        """Send *msg* and wait for the reply."""
        ...

    def request(self, msg: Req_contra) -> AnyPendingReply[Rep_co]:
        """Send *msg* now, without waiting; collect the reply later."""
        ...

    @property
    def blocking(self) -> AnyBlockingClient[Req_contra, Rep_co]:
        """The blocking face, for plain threads."""
        ...

    def clone(self) -> AnyClient[Req_contra, Rep_co]:
        """Another client of the same server(s)."""
        ...

    def close(self) -> None:
        """Close this client. Idempotent."""
        ...

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        ...

    def __enter__(self: C) -> C: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def __aenter__(self: C) -> C: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
