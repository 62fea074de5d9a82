"""The errors asyncmp.nats adds, and how a failure travels in a reply.

A failed request's reply carries the header ``Asyncmp-Status: fail`` and a JSON payload
``{"type": "<module>.<qualname>", "message": str(exc), "args": [...]}`` (``args`` only when
JSON can carry them). The client raises the original type only when that type was
registered with the client (``errors=``) or belongs to asyncmp; any other failure becomes a
[`RemoteError`][asyncmp.nats.RemoteError], because constructing arbitrary named classes
from network data is how deserialisation attacks start.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .._errors import (
    AlreadyReplied,
    ClientsDisappeared,
    Closed,
    Disconnected,
    Error,
    NoReply,
    ServerDisappeared,
    WouldBlock,
)

__all__ = ("MalformedMessage", "PayloadTooLarge", "Registry", "RemoteError")


class RemoteError(Error):
    """The server failed the request with an exception whose type is not registered here.

    Unlike a registered type, which is re-raised as itself, this keeps only what travelled:
    the exception's type name and message.
    """

    type_name: str
    """The remote exception's type as ``module.QualName`` (just ``QualName`` for builtins)."""
    message: str
    """``str()`` of the remote exception."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message


class MalformedMessage(Error, ValueError):
    """A payload could not be decoded: a malformed request (the server answers with this
    error and keeps serving) or a malformed reply (raised by the client's `send`).

    Also a `ValueError`. Unlike [`RemoteError`][asyncmp.nats.RemoteError] no handler ran.
    """


class PayloadTooLarge(Error, ValueError):
    """An encoded message is bigger than the NATS server's ``max_payload``.

    Raised by the client before anything is sent; a reply that is too large reaches the
    client as this error instead of the reply. Also a `ValueError`.
    """


def type_name(cls: type[BaseException]) -> str:
    """``module.QualName`` of an exception class, the key of the registry."""
    return f"{cls.__module__}.{cls.__qualname__}"


_BUILTIN_TYPES: tuple[type[BaseException], ...] = (
    AlreadyReplied,
    ClientsDisappeared,
    Closed,
    Disconnected,
    Error,
    NoReply,
    ServerDisappeared,
    WouldBlock,
    MalformedMessage,
    PayloadTooLarge,
)


def _public_name(cls: type[BaseException]) -> str:
    # asyncmp re-exports its errors from the package, so name them by the public path
    # whatever module they were defined in.
    if cls in (MalformedMessage, PayloadTooLarge, RemoteError):
        return f"asyncmp.nats.{cls.__qualname__}"
    if cls.__module__.startswith("asyncmp."):
        return f"asyncmp.{cls.__qualname__}"
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return type_name(cls)


class Registry:
    """Exception types a client re-raises as themselves (its ``errors=`` argument)."""

    __slots__ = ("_types",)

    def __init__(self, types: Iterable[type[BaseException]]) -> None:
        self._types: dict[str, type[BaseException]] = {}
        for cls in (*_BUILTIN_TYPES, *types):
            if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                raise TypeError(f"errors= takes exception classes, not {cls!r}")
            self._types[_public_name(cls)] = cls

    def rebuild(self, data: bytes) -> BaseException:
        """The exception a failure payload stands for."""
        try:
            record = json.loads(data)
            name = record["type"]
            message = record["message"]
            args = record.get("args")
            if not isinstance(name, str) or not isinstance(message, str):
                raise TypeError("bad types")
        except Exception as exc:
            return MalformedMessage(f"the server sent a failure that cannot be decoded: {exc}")
        cls = self._types.get(name)
        if cls is not None:
            for attempt in (args, [message]):
                if isinstance(attempt, list):
                    try:
                        return cls(*attempt)
                    except Exception:
                        continue
        return RemoteError(name, message)


def encode_failure(exc: BaseException) -> bytes:
    """The payload of a failure reply for *exc*."""
    record: dict[str, Any] = {"type": _public_name(type(exc)), "message": str(exc)}
    try:
        return json.dumps({**record, "args": list(exc.args)}).encode()
    except (TypeError, ValueError):
        return json.dumps(record).encode()


_TRUNCATED = "..."


def encode_bounded_failure(exc: BaseException, limit: int) -> bytes | None:
    """The payload of a failure reply for *exc* in at most *limit* bytes, or None if not even
    an empty `PayloadTooLarge` record fits.

    A record over *limit* is replaced by a `PayloadTooLarge` record that names the original
    type and message, the message cut (and marked ``...``) to fit: the requester learns
    what happened, and the NATS server never sees a message over its ``max_payload``.
    """
    data = encode_failure(exc)
    if len(data) <= limit:
        return data
    original = f"{_public_name(type(exc))}: {exc}"
    message = (
        f"the failure reply is {len(data)} bytes, over the {limit} its NATS server's "
        f"max_payload leaves for it; the failure was {original}"
    )
    name = _public_name(PayloadTooLarge)
    while True:
        # No "args": the client rebuilds PayloadTooLarge from the message alone.
        data = json.dumps({"type": name, "message": message}).encode()
        over = len(data) - limit
        if over <= 0:
            return data
        if not message:
            return None
        # Each character cut saves at least one byte (escapes save more), so one cut is
        # enough unless the marker itself no longer fits.
        keep = len(message) - over - len(_TRUNCATED)
        message = message[:keep] + _TRUNCATED if keep > 0 else ""
