"""The exceptions of asyncmp, in one flat module.

The tree is::

    Error
    ├── Disconnected
    │   ├── ServerDisappeared   (client side: the server is gone)
    │   ├── ClientsDisappeared  (server side: no strong client left, queue drained)
    │   └── NoReply             (client side: the reply context closed unanswered)
    ├── AlreadyReplied          (also a RuntimeError)
    ├── Closed                  (also a RuntimeError: you used a handle you closed)
    └── WouldBlock              (a non-waiting operation could not proceed)

Application errors are not wrapped: the exception object a server passes to
``rctx.fail(exc)`` is the very object the client's ``send`` raises.
"""

from __future__ import annotations

__all__ = (
    "AlreadyReplied",
    "ClientsDisappeared",
    "Closed",
    "Disconnected",
    "Error",
    "NoReply",
    "ServerDisappeared",
    "WouldBlock",
)


class Error(Exception):
    """Base class of every exception asyncmp raises on its own account.

    Exceptions that a server passes to ``ReplyContext.fail`` are raised as they are and
    do not derive from this class.
    """


class Disconnected(Error):
    """The other end of a channel went away.

    Catch this to treat "the server is gone", "every client is gone" and "nobody
    answered" alike, as most users of ump do.
    """


class ServerDisappeared(Disconnected):
    """Client side: the server was closed (or collected) before it picked the request up.

    Raised by a send on a channel whose server is gone, and to every request still queued
    when the server closes. Also raised by a send that races the close of the last strong
    client (its own) and loses: once the server has seen
    `ClientsDisappeared` it takes no more requests. Unlike
    `NoReply`, the server never saw the request, so it is always safe to
    retry elsewhere.
    """


class ClientsDisappeared(Disconnected):
    """Server side: every strong client is closed and the queue is drained.

    Unlike `ServerDisappeared` this is raised to the
    *server*, only after it has received every request that was queued. Weak clients
    do not count.
    """


class NoReply(Disconnected):
    """Client side: the server picked the request up but closed its reply context
    without answering.

    Unlike `ServerDisappeared`, the server *did* see the
    request, so it may have acted on it. If the reply context was closed by leaving a
    ``with`` block through an exception, that exception is this error's ``__cause__``.
    """


class AlreadyReplied(Error, RuntimeError):
    """A reply context was answered (or closed) once already.

    A programming error on the server side, hence also a ``RuntimeError``; unlike the
    ``Disconnected`` family it never reaches a client.
    """


class Closed(Error, RuntimeError):
    """You used a handle that your own code has already closed.

    Unlike `Disconnected`, nothing went wrong at the other end:
    this handle (a client, a server, a ticket …) was closed here and cannot be used again.
    """


class WouldBlock(Error):
    """A non-waiting operation (``request`` on a full bounded channel, a ``try_*``
    method) could not proceed without waiting.

    Unlike the ``Disconnected`` family the channel is fine: try again later, or use the
    waiting form.
    """
